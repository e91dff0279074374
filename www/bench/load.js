// Load benchmark (issue 15): one weights file loaded into GPU buffers several ways in one page.
//   parallel     streamWeights, `concurrency` Range requests in flight (fills the Cache API)
//   cached       the same again, now served from the Cache API (the server counts requests)
//   sequential   streamWeights with 1 Range request in flight (?sequential=ranged, default), or
//                one fetch of the whole file from a server without Range (?sequential=norange)
//   (?stream=0 skips the three streamWeights rows)
//   generator    (?generator=1) Generator.load of the same GGUF (dtype ?dtype=, default "auto"):
//                parallel, cached, then sequential (1 in flight; MB/s over the whole file)
//   fetch        (?fetch=1) the network alone, no gllm-web: the loader's byte ranges fetched
//                with `concurrency` and with 1 in flight, bodies read and dropped
// Each row reports seconds, MB/s, the server's request count (scripts/serve.mjs /_stats) and
// the wasm heap (the module's WebAssembly.Memory) before and after. Results: #out[data-json].
// ?pkg=PATH loads another build of the package (default the npm package target/npm/package/).
const params = new URLSearchParams(location.search);
const origin = location.origin;
const abs = (u) => (u.startsWith("/") ? origin + u : u);
const base = abs(params.get("base") ?? "/_slow/target/bench");
const file = params.get("file") ?? "big.safetensors";
const concurrency = Number(params.get("concurrency") ?? 6);
const chunk = Number(params.get("chunk") ?? 8) * (1 << 20);
const sequential = params.get("sequential") ?? "ranged";
const dtype = params.get("dtype") ?? "auto";
const out = document.getElementById("out");
const MiB = 1 << 20;

let mod, wasm;
const heap = () => wasm.memory.buffer.byteLength;
const stats = async (what) => (await fetch(`${origin}/_stats${what}`, { cache: "no-store" })).json();

// Runs `load` (resolving to { bytes, requests?, max_in_flight? }) and times it, with the
// server's counts and the heap around it.
async function row(name, load) {
  await stats("/reset");
  const heap_before = heap();
  const t0 = performance.now();
  const r = await load();
  const seconds = (performance.now() - t0) / 1000;
  const s = await stats("");
  const result = {
    name, seconds: +seconds.toFixed(2), MBps: +(r.bytes / seconds / 1e6).toFixed(1), bytes: r.bytes,
    loader_requests: r.requests, max_in_flight: r.max_in_flight ?? s.maxInFlight,
    server_requests: s.all, server_range_requests: s.requests,
    heap_before_MiB: +(heap_before / MiB).toFixed(1), heap_after_MiB: +(heap() / MiB).toFixed(1),
  };
  console.log(`row ${JSON.stringify(result)}`);
  return result;
}

// The file's length, from a one-byte Range request.
async function fileSize(url) {
  const head = await fetch(url, { headers: { Range: "bytes=0-0" }, cache: "no-store" });
  await head.arrayBuffer();
  return Number(head.headers.get("Content-Range").split("/")[1]);
}

// The whole file in `chunk`-sized Range requests, `inFlight` at a time, bodies dropped.
async function fetchAll(url, inFlight) {
  const size = await fileSize(url);
  let next = 0, bytes = 0;
  const worker = async () => {
    while (next < size) {
      const start = next;
      next = Math.min(size, next + chunk);
      const res = await fetch(url, { headers: { Range: `bytes=${start}-${next - 1}` }, cache: "no-store" });
      const n = (await res.arrayBuffer()).byteLength;
      bytes += n;
    }
  };
  await Promise.all(Array.from({ length: inFlight }, worker));
  return { bytes, requests: Math.ceil(size / chunk) + 1 };
}

try {
  mod = await import(params.get("pkg") ?? "../../target/npm/package/index.js");
  // The package's `init` (the npm entry) or wasm-bindgen's default export (a raw pkg/ build)
  // resolves to the module's exports, whose `memory` is the wasm heap.
  wasm = await (mod.init ?? mod.default)();
  const info = (await navigator.gpu?.requestAdapter())?.info;
  const result = {
    date: new Date().toISOString(), userAgent: navigator.userAgent,
    adapter: info ? `${info.vendor} ${info.architecture} ${info.description}`.trim() : "none",
    base, file, chunk_size: chunk, concurrency, heap_start_MiB: +(heap() / MiB).toFixed(1), rows: [],
  };
  const rows = result.rows;
  const stamp = Date.now();
  const cacheName = `gllm-load-bench-${stamp}`;
  const url = `${base}/${file}`;
  if (params.get("fetch") === "1") {
    rows.push(await row(`fetch alone: ${concurrency} Range requests in flight`, () => fetchAll(url, concurrency)));
    rows.push(await row("fetch alone: 1 Range request in flight", () => fetchAll(url, 1)));
  }
  let parallel = null;
  if (params.get("stream") !== "0") {
    const stream = (opts) => mod.streamWeights(base, { file, chunk_size: chunk, ...opts });
    parallel = await row(`streamWeights parallel: ${concurrency} Range requests in flight`,
      () => stream({ cache: cacheName, concurrency }));
    const cached = await row("streamWeights cached: second load from the Cache API", () => stream({ cache: cacheName, concurrency }));
    rows.push(parallel, cached);
    await caches.delete(cacheName);
    let seq = null;
    if (sequential === "ranged") {
      seq = await row("streamWeights sequential: 1 Range request in flight", () => stream({ cache: false, concurrency: 1 }));
    } else if (sequential === "norange") {
      const norange = base.replace(`${origin}/`, `${origin}/_norange/`);
      seq = await row("streamWeights sequential: one fetch of the whole file (no Range)",
        () => mod.streamWeights(norange, { file, cache: false, chunk_size: chunk }));
    }
    if (seq) {
      rows.push(seq);
      result.parallel_over_sequential = +(seq.seconds / parallel.seconds).toFixed(2);
    }
  }
  if (params.get("generator") === "1") {
    const genCache = `gllm-load-bench-gen-${stamp}`;
    const model = file.endsWith(".gguf") ? url : base;
    const bytes = await fileSize(file.endsWith(".gguf") ? url : `${base}/model.safetensors`);
    const load = (opts) => async () => {
      const gen = await mod.Generator.load(model, { dtype, chunk_size: chunk, ...opts });
      await gen.dispose();
      return { bytes };
    };
    // Where the heap grows: its size at each progress event where it changed or the status did.
    const trace = [];
    const progress_callback = (e) => {
      const at = { status: e.status, file: e.file, loaded: e.loaded, heap_MiB: +(heap() / MiB).toFixed(1) };
      const last = trace.at(-1);
      if (!last || last.status !== at.status || last.heap_MiB !== at.heap_MiB) trace.push(at);
    };
    const p = await row(`Generator.load dtype ${dtype} parallel: ${concurrency} in flight`,
      load({ cache: genCache, concurrency, progress_callback }));
    result.generator_heap_trace = trace;
    rows.push(p, await row(`Generator.load dtype ${dtype} cached`, load({ cache: genCache, concurrency })));
    await caches.delete(genCache);
    if (sequential === "ranged") {
      const s = await row(`Generator.load dtype ${dtype} sequential: 1 in flight`, load({ cache: false, concurrency: 1 }));
      rows.push(s);
      result.generator_parallel_over_sequential = +(s.seconds / p.seconds).toFixed(2);
    }
  }
  result.heap_end_MiB = +(heap() / MiB).toFixed(1);
  out.textContent = JSON.stringify(result, null, 2);
  out.dataset.json = JSON.stringify(result);
} catch (e) {
  console.error(e?.stack ?? String(e));
  out.textContent = `error: ${e}`;
  out.dataset.json = JSON.stringify({ error: `${e?.name}: ${e?.message ?? e}` });
}
