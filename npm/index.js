// gllm-web: the package entry. Thin wrappers over the wasm-bindgen classes in ./wasm/ that
// instantiate the WebAssembly module on first use (no `init()` call needed) and keep the
// same API as the classes they wrap. See README.md and index.d.ts.
import initWasm, * as wasm from "./wasm/gllm_web.js";

let ready = null;

/**
 * Instantiates the WebAssembly module. Called by every factory, so users rarely need it;
 * pass `{ wasm: url | Response | BufferSource | WebAssembly.Module }` to load the .wasm
 * from somewhere other than next to this file.
 */
export function init(options = {}) {
  ready ??= initWasm(options.wasm === undefined ? undefined : { module_or_path: options.wasm }).catch((e) => {
    ready = null;
    throw e;
  });
  return ready;
}

/** Whether this page or worker exposes WebGPU (`navigator.gpu`). */
export function isWebGPUAvailable() {
  return typeof navigator !== "undefined" && !!navigator.gpu;
}

const texts = (t) => (typeof t === "string" ? [t] : t);

export class Embedder {
  #e;
  /** @internal */
  constructor(inner) {
    this.#e = inner;
  }
  static async load(model, options) {
    await init();
    return new Embedder(await wasm.Embedder.load(model, options));
  }
  embed(input) {
    return this.#e.embed(texts(input));
  }
  get dim() {
    return this.#e.dim;
  }
  dispose() {
    return this.#e.dispose();
  }
  /** @internal the wasm object, for SearchIndex.useEmbedder */
  static _inner(e) {
    if (!(e instanceof Object && #e in e)) throw new TypeError("useEmbedder takes an Embedder from \"gllm-web\" (the same module as the index)");
    return e.#e;
  }
}

export class Reranker {
  #r;
  /** @internal */
  constructor(inner) {
    this.#r = inner;
  }
  static async load(model, options) {
    await init();
    return new Reranker(await wasm.Reranker.load(model, options));
  }
  rerank(query, documents, options) {
    return this.#r.rerank(query, documents, options);
  }
  dispose() {
    return this.#r.dispose();
  }
}

export class SearchIndex {
  #i;
  /** @internal */
  constructor(inner) {
    this.#i = inner;
  }
  static async create(dim, options) {
    await init();
    return new SearchIndex(await wasm.SearchIndex.create(dim, options));
  }
  static async import(bytes, dim) {
    await init();
    return new SearchIndex(await wasm.SearchIndex.import(bytes, dim));
  }
  useEmbedder(embedder) {
    this.#i.useEmbedder(Embedder._inner(embedder));
  }
  add(items) {
    return this.#i.add(items);
  }
  search(query, options) {
    return this.#i.search(query, options);
  }
  export() {
    return this.#i.export();
  }
  get size() {
    return this.#i.size;
  }
  get dim() {
    return this.#i.dim;
  }
  dispose() {
    return this.#i.dispose();
  }
}

export class Generator {
  #g;
  /** @internal */
  constructor(inner) {
    this.#g = inner;
  }
  static async load(model, options) {
    await init();
    return new Generator(await wasm.Generator.load(model, options));
  }
  generate(prompt, options) {
    return this.#g.generate(prompt, options);
  }
  dispose() {
    return this.#g.dispose();
  }
}

/** Streams a safetensors file into GPU buffers and releases them (a cache prefetch). */
export async function streamWeights(model, options) {
  await init();
  return wasm.streamWeights(model, options);
}

/**
 * Testing hook: destroys the GPU device (`GPUDevice.destroy()`), as a driver reset would.
 * Objects loaded on it reject their next call with a "GPU device lost" error; the next
 * `load`/`create` acquires a new device. Resolves to false when no device was acquired yet.
 */
export async function __loseDeviceForTesting() {
  await init();
  return wasm.__loseDeviceForTesting();
}
