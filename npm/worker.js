// "gllm-web/worker": the same API as "gllm-web", with the engine in a dedicated module
// worker (./engine-worker.js), so loading and inference never block the page. One worker
// per page is started on first use and shared by every object (an index and its embedder
// live in the same worker, on the same GPU device). Generic over the classes: every static
// factory of FACTORIES and every method is forwarded as a message; the objects live in the
// worker and the page holds proxies. Arguments cross by structured clone, except that a
// function (progress_callback, callback) is called back through messages, an AbortSignal's
// abort is forwarded, and a proxy crosses as its handle. Results arrive as transferred
// typed arrays. Synchronous getters (`dim`, `size`) read a snapshot the worker sends with
// every reply.
import { FACTORIES } from "./factories.js";

let worker = null;
let nextId = 1;
const pending = new Map();
const HANDLE = Symbol("gllm-web handle");
/** Per handle: the getter snapshot the worker sent last. */
const props = new Map();

function start() {
  if (worker) return worker;
  worker = new Worker(new URL("./engine-worker.js", import.meta.url), { type: "module", name: "gllm-web" });
  worker.onmessage = ({ data }) => {
    const p = pending.get(data.id);
    if (!p) return;
    if ("cb" in data) return p.fns[data.cb]?.(...data.args);
    pending.delete(data.id);
    p.settle();
    if (data.ok) p.resolve(revive(data.value, data.props));
    else {
      const e = data.error.name === "TypeError" ? new TypeError(data.error.message) : new Error(data.error.message);
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

/** Arguments for the worker: functions and signals replaced by markers, proxies by handles. */
function marshal(v, fns, signals) {
  if (typeof v === "function") return { $fn: fns.push(v) - 1 };
  if (v && typeof v === "object") {
    if (v[HANDLE] !== undefined) return { $obj: v[HANDLE] };
    if (typeof AbortSignal !== "undefined" && v instanceof AbortSignal) return { $signal: signals.push(v) - 1 };
    if (Array.isArray(v)) return v.map((x) => marshal(x, fns, signals));
    if (Object.getPrototypeOf(v) === Object.prototype) {
      return Object.fromEntries(Object.entries(v).map(([k, x]) => [k, marshal(x, fns, signals)]));
    }
  }
  return v;
}

/** A reply: an object the worker created (`{ $obj, cls }`) becomes a proxy. */
function revive(v, snapshot) {
  if (snapshot) for (const [h, p] of Object.entries(snapshot)) props.set(Number(h), p);
  if (v && typeof v === "object" && "$obj" in v) return proxy(v.$obj, v.cls);
  return v;
}

function request(msg, args) {
  const id = nextId++;
  const fns = [];
  const signals = [];
  const marshalled = marshal(args, fns, signals);
  return new Promise((resolve, reject) => {
    const offs = signals.map((s, i) => {
      const onAbort = () => worker?.postMessage({ op: "abort", target: id, signal: i });
      s.addEventListener("abort", onAbort, { once: true });
      return () => s.removeEventListener("abort", onAbort);
    });
    pending.set(id, { resolve, reject, fns, settle: () => offs.forEach((off) => off()) });
    start().postMessage({ id, ...msg, args: marshalled, aborted: signals.map((s) => s.aborted) });
  });
}

const classes = {};

function proxy(handle, cls) {
  const target = Object.create(classes[cls].prototype);
  return new Proxy(target, {
    get(t, key) {
      if (key === HANDLE) return handle;
      if (typeof key === "symbol" || key === "then") return undefined;
      const snapshot = props.get(handle);
      if (snapshot && key in snapshot) return snapshot[key];
      return (...args) => request({ op: "call", handle, method: key }, args);
    },
  });
}

for (const [name, statics] of Object.entries(FACTORIES)) {
  const cls = class {
    constructor() {
      throw new TypeError(`${name} objects come from ${name}.${statics[0]}()`);
    }
  };
  Object.defineProperty(cls, "name", { value: name });
  for (const s of statics) cls[s] = (...args) => request({ op: "static", cls: name, method: s }, args);
  classes[name] = cls;
}

export const { Embedder, Reranker, Generator, SearchIndex } = classes;

/** Streams a weights file into GPU buffers in the worker (a cache prefetch there). */
export function streamWeights(...args) {
  return request({ op: "function", name: "streamWeights" }, args);
}

/** The worker's `isWebGPUAvailable` is asked through `load`; this checks the page. */
export function isWebGPUAvailable() {
  return typeof navigator !== "undefined" && !!navigator.gpu;
}

/** Testing hook: destroys the worker's GPU device (see the main entry's). */
export function __loseDeviceForTesting() {
  return request({ op: "function", name: "__loseDeviceForTesting" }, []);
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
