// The dedicated worker behind "gllm-web/worker": runs the engine (./index.js) off the
// page's main thread. Generic over the classes (FACTORIES). Protocol, one message each way
// per call:
//   page → worker  { id, op: "static", cls, method, args } | { id, op: "call", handle, method, args }
//                  | { id, op: "function", name, args }
//                  { op: "abort", target, signal }   (an AbortSignal of request `target` fired; no reply)
//   worker → page  { id, cb, args }   (a function argument called: progress events, generate's
//                                      streamed pieces; 0..n)
//                  { id, ok: true, value, props } | { id, ok: false, error: { name, message } }
// Arguments arrive marshalled: { $fn: i } is a function that posts { id, cb: i, args },
// { $signal: i } the signal of an AbortController that `abort` fires, { $obj: h } an object
// of this worker. An object a call returns stays here under a handle ({ $obj, cls } goes
// back); `props` carries the getters (dim, size) of the objects involved. Typed-array
// results are transferred, not copied. Calls on one object keep their order (each object
// queues its calls), calls on different objects overlap as on the page.
import * as gllm from "./index.js";
import { FACTORIES } from "./factories.js";

const objects = new Map();
const handles = new WeakMap();
let nextHandle = 1;
/** AbortControllers of the requests in flight that the page gave signals, by request id. */
const aborts = new Map();
const GETTERS = ["dim", "size", "device", "kv_dtype"];

function keep(obj) {
  let h = handles.get(obj);
  if (h === undefined) {
    h = nextHandle++;
    objects.set(h, obj);
    handles.set(obj, h);
  }
  return h;
}

function object(handle) {
  const obj = objects.get(handle);
  if (!obj) throw new Error(`no object ${handle} in this worker`);
  return obj;
}

function unmarshal(v, msg, controllers) {
  if (v && typeof v === "object" && !ArrayBuffer.isView(v)) {
    if ("$fn" in v) return (...args) => self.postMessage({ id: msg.id, cb: v.$fn, args });
    if ("$signal" in v) return controllers[v.$signal].signal;
    if ("$obj" in v) return object(v.$obj);
    if (Array.isArray(v)) return v.map((x) => unmarshal(x, msg, controllers));
    return Object.fromEntries(Object.entries(v).map(([k, x]) => [k, unmarshal(x, msg, controllers)]));
  }
  return v;
}

/** The getters of `obj` (a snapshot the page's proxy reads synchronously). */
function snapshot(obj) {
  const out = {};
  for (const g of GETTERS) {
    try {
      if (g in obj) out[g] = obj[g];
    } catch {
      // a disposed object's getters throw; its methods reject on their own
    }
  }
  return out;
}

function classOf(v) {
  return Object.keys(FACTORIES).find((name) => v instanceof gllm[name]);
}

function transferables(value) {
  const out = [];
  const visit = (v) => {
    if (ArrayBuffer.isView(v)) out.push(v.buffer);
    else if (Array.isArray(v)) v.forEach(visit);
    else if (v && typeof v === "object") Object.values(v).forEach(visit);
  };
  visit(value);
  return [...new Set(out)];
}

async function handle(msg) {
  const controllers = msg.aborted.map((aborted) => {
    const c = new AbortController();
    if (aborted) c.abort();
    return c;
  });
  if (controllers.length) aborts.set(msg.id, controllers);
  try {
    const args = unmarshal(msg.args, msg, controllers);
    let value;
    if (msg.op === "static") {
      if (!FACTORIES[msg.cls]?.includes(msg.method)) throw new TypeError(`${msg.cls}.${msg.method} is not a factory`);
      value = await gllm[msg.cls][msg.method](...args);
    } else if (msg.op === "call") {
      const obj = object(msg.handle);
      if (typeof obj[msg.method] !== "function") throw new TypeError(`${msg.method} is not a method`);
      value = await obj[msg.method](...args);
    } else if (msg.op === "function" && ["streamWeights", "__loseDeviceForTesting"].includes(msg.name)) {
      value = await gllm[msg.name](...args);
    } else {
      throw new Error(`unknown operation ${msg.op}`);
    }
    const props = {};
    if (msg.op === "call") props[msg.handle] = snapshot(object(msg.handle));
    const cls = classOf(value);
    if (cls) {
      const h = keep(value);
      props[h] = snapshot(value);
      value = { $obj: h, cls };
    }
    return { value, props };
  } finally {
    aborts.delete(msg.id);
  }
}

self.onmessage = async ({ data: msg }) => {
  if (msg.op === "abort") return aborts.get(msg.target)?.[msg.signal]?.abort();
  try {
    const { value, props } = await handle(msg);
    self.postMessage({ id: msg.id, ok: true, value, props }, transferables(value));
  } catch (e) {
    self.postMessage({ id: msg.id, ok: false, error: { name: e?.name ?? "Error", message: e?.message ?? String(e) } });
  }
};
