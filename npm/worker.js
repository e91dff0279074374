// "gllm-web/worker": the same API as "gllm-web", with the engine in a dedicated module
// worker (./engine-worker.js), so loading and inference never block the page. One worker
// per page is started on first use and shared by every object (an index and its embedder
// live in the same worker, on the same GPU device). Results arrive as transferred typed
// arrays; `progress_callback` events are forwarded from the worker.

let worker = null;
let nextId = 1;
const pending = new Map();

function start() {
  if (worker) return worker;
  worker = new Worker(new URL("./engine-worker.js", import.meta.url), { type: "module", name: "gllm-web" });
  worker.onmessage = ({ data }) => {
    const p = pending.get(data.id);
    if (!p) return;
    if ("progress" in data) return p.progress?.(data.progress);
    pending.delete(data.id);
    if (data.ok) p.resolve(data.value);
    else {
      const e = new Error(data.error.message);
      e.name = data.error.name;
      p.reject(e);
    }
  };
  worker.onerror = (e) => {
    const err = new Error(`gllm-web worker failed: ${e.message ?? "could not start the worker script"}`);
    for (const p of pending.values()) p.reject(err);
    pending.clear();
  };
  return worker;
}

function request(msg, progress, transfer = []) {
  const id = nextId++;
  return new Promise((resolve, reject) => {
    pending.set(id, { resolve, reject, progress });
    start().postMessage({ id, ...msg }, transfer);
  });
}

async function load(cls, model, options = {}) {
  const { progress_callback, signal, ...rest } = options ?? {};
  if (progress_callback !== undefined && typeof progress_callback !== "function") {
    throw new Error("invalid input: progress_callback must be a function");
  }
  return abortable(signal, { op: "load", cls, model, options: rest, progress: !!progress_callback }, progress_callback);
}

/** `request(msg)` whose `signal` (which cannot cross to the worker) is forwarded as
 *  `{ op: "abort", target: id }` when it fires. */
async function abortable(signal, msg, progress) {
  const id = nextId;
  const onAbort = () => worker?.postMessage({ op: "abort", target: id });
  signal?.addEventListener("abort", onAbort, { once: true });
  try {
    return await request({ ...msg, abortable: !!signal, aborted: !!signal?.aborted }, progress);
  } finally {
    signal?.removeEventListener("abort", onAbort);
  }
}

const call = (handle, method, ...args) => request({ op: "call", handle, method, args });

export class Embedder {
  #h;
  #dim;
  /** @internal */
  constructor({ handle, dim }) {
    this.#h = handle;
    this.#dim = dim;
  }
  static async load(model, options) {
    return new Embedder(await load("Embedder", model, options));
  }
  embed(input) {
    return call(this.#h, "embed", input);
  }
  get dim() {
    return this.#dim;
  }
  dispose() {
    return call(this.#h, "dispose");
  }
  /** @internal */
  static _handle(e) {
    if (!(e instanceof Object && #h in e)) throw new TypeError("useEmbedder takes an Embedder from \"gllm-web/worker\" (the same module as the index)");
    return e.#h;
  }
}

export class Reranker {
  #h;
  /** @internal */
  constructor({ handle }) {
    this.#h = handle;
  }
  static async load(model, options) {
    return new Reranker(await load("Reranker", model, options));
  }
  rerank(query, documents, options) {
    return call(this.#h, "rerank", query, documents, options);
  }
  dispose() {
    return call(this.#h, "dispose");
  }
}

export class SearchIndex {
  #h;
  #dim;
  #size;
  /** @internal */
  constructor({ handle, dim, size }) {
    this.#h = handle;
    this.#dim = dim;
    this.#size = size;
  }
  static async create(dim, options) {
    return new SearchIndex(await request({ op: "create", dim, options }));
  }
  static async import(bytes, dim) {
    return new SearchIndex(await request({ op: "import", bytes, dim }));
  }
  /** Resolves once the worker has attached the embedder (calls after it queue behind it). */
  async useEmbedder(embedder) {
    return call(this.#h, "useEmbedder", Embedder._handle(embedder));
  }
  async add(items) {
    const { ids, size } = await call(this.#h, "add", items);
    this.#size = size;
    return ids;
  }
  search(query, options) {
    return call(this.#h, "search", query, options);
  }
  export() {
    return call(this.#h, "export");
  }
  /** Number of vectors, as of the last add that finished. */
  get size() {
    return this.#size;
  }
  get dim() {
    return this.#dim;
  }
  dispose() {
    return call(this.#h, "dispose");
  }
}

export class Generator {
  #h;
  /** @internal */
  constructor({ handle }) {
    this.#h = handle;
  }
  static async load(model, options) {
    return new Generator(await load("Generator", model, options));
  }
  /** The streamed pieces come back as messages; the AbortSignal's abort is forwarded. */
  async generate(prompt, options = {}) {
    const { callback, signal, ...rest } = options ?? {};
    if (callback !== undefined && typeof callback !== "function") {
      throw new Error("invalid input: callback must be a function");
    }
    const msg = { op: "call", handle: this.#h, method: "generate", args: [prompt, rest], stream: !!callback };
    return abortable(signal, msg, callback && ((p) => callback(p.text, p.token)));
  }
  dispose() {
    return call(this.#h, "dispose");
  }
}

/** The worker's `isWebGPUAvailable` is asked through `load`; this checks the page. */
export function isWebGPUAvailable() {
  return typeof navigator !== "undefined" && !!navigator.gpu;
}

/** Testing hook: destroys the worker's GPU device (see the main entry's). */
export function __loseDeviceForTesting() {
  return request({ op: "loseDevice" });
}

/** Stops the worker: every object created through this module becomes unusable. */
export function terminateWorker() {
  if (!worker) return;
  worker.terminate();
  worker = null;
  const err = new Error("the gllm-web worker was terminated");
  for (const p of pending.values()) p.reject(err);
  pending.clear();
}
