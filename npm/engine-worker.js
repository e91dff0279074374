// The dedicated worker behind "gllm-web/worker": runs the engine (./index.js) off the
// page's main thread. Protocol, one message each way per call:
//   page → worker  { id, op: "load" | "create" | "import" | "call" | "loseDevice", ... }
//                  { op: "abort", target }   (a load's or a generate's AbortSignal fired; no reply)
//   worker → page  { id, progress }     (load progress events, or generate's streamed
//                                        { text, token } pieces, 0..n)
//                  { id, ok: true, value } | { id, ok: false, error: { name, message } }
// Objects live here in a table and the page holds their numbers. Typed-array results are
// transferred, not copied. Calls on one object keep their order (messages arrive in order
// and each object queues its calls), calls on different objects overlap as on the page.
import { Embedder, Reranker, SearchIndex, Generator, __loseDeviceForTesting } from "./index.js";

const objects = new Map();
let nextHandle = 1;
const classes = { Embedder, Reranker, Generator };
/** AbortControllers of the loads and generate calls in flight that the page gave a signal, by request id. */
const aborts = new Map();

function keep(obj) {
  const handle = nextHandle++;
  objects.set(handle, obj);
  return handle;
}

function object(handle) {
  const obj = objects.get(handle);
  if (!obj) throw new Error(`no object ${handle} in this worker`);
  return obj;
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

/** Runs `work` with `options.signal` from an AbortController that `{ op: "abort" }` fires,
 *  when the page gave a signal (`msg.abortable`). */
async function withAbort(msg, options, work) {
  if (!msg.abortable) return work();
  const controller = new AbortController();
  if (msg.aborted) controller.abort();
  aborts.set(msg.id, controller);
  options.signal = controller.signal;
  try {
    return await work();
  } finally {
    aborts.delete(msg.id);
  }
}

async function handle(msg) {
  switch (msg.op) {
    case "load": {
      const options = { ...msg.options };
      if (msg.progress) options.progress_callback = (progress) => self.postMessage({ id: msg.id, progress });
      const obj = await withAbort(msg, options, () => classes[msg.cls].load(msg.model, options));
      return { handle: keep(obj), dim: obj.dim };
    }
    case "create":
    case "import": {
      const index = msg.op === "create" ? await SearchIndex.create(msg.dim, msg.options) : await SearchIndex.import(msg.bytes, msg.dim);
      return { handle: keep(index), dim: index.dim, size: index.size };
    }
    case "call": {
      const obj = object(msg.handle);
      if (msg.method === "useEmbedder") return obj.useEmbedder(object(msg.args[0]));
      if (msg.method === "generate") {
        const [prompt, rest] = msg.args;
        const options = { ...rest };
        if (msg.stream) options.callback = (text, token) => self.postMessage({ id: msg.id, progress: { text, token } });
        return withAbort(msg, options, () => obj.generate(prompt, options));
      }
      // A disposed object stays in the table (a few bytes): its own methods then reject
      // with "this Embedder was disposed", as on the page, and dispose stays idempotent.
      const value = await obj[msg.method](...msg.args);
      return msg.method === "add" ? { ids: value, size: obj.size } : value;
    }
    case "abort":
      aborts.get(msg.target)?.abort();
      return undefined;
    case "loseDevice":
      return __loseDeviceForTesting();
    default:
      throw new Error(`unknown operation ${msg.op}`);
  }
}

self.onmessage = async ({ data: msg }) => {
  if (msg.op === "abort") return handle(msg);
  try {
    const value = await handle(msg);
    self.postMessage({ id: msg.id, ok: true, value }, transferables(value));
  } catch (e) {
    self.postMessage({ id: msg.id, ok: false, error: { name: e?.name ?? "Error", message: e?.message ?? String(e) } });
  }
};
