// Load benchmark (issue: streaming loader): the same file three ways in one page,
//   parallel     concurrent HTTP Range requests through the streaming loader,
//   sequential   one fetch of the whole file (a server without Range: /_norange/),
//   cached       the parallel load again, now served from the Cache API.
// Each writes the tensors into GPU buffers and frees them. Results: #out[data-json].
// ?pkg=PATH loads another build of the package (to compare two builds in one session);
// ?sequential=0 skips the sequential load.
const params = new URLSearchParams(location.search);
const { default: init, streamWeights } = await import(params.get("pkg") ?? "../../pkg/gllm_web.js");
const origin = location.origin;
const base = params.get("base") ?? `${origin}/_slow/target/bench`;
const file = params.get("file") ?? "big.safetensors";
const concurrency = Number(params.get("concurrency") ?? 6);
const chunk = Number(params.get("chunk") ?? 8) * (1 << 20);
const out = document.getElementById("out");

function row(name, r) {
  return { name, seconds: +r.seconds.toFixed(2), MBps: +(r.bytes / r.seconds / 1e6).toFixed(1),
    requests: r.requests, max_in_flight: r.max_in_flight, bytes: r.bytes };
}

try {
  await init();
  const cacheName = `gllm-load-bench-${Date.now()}`;
  await caches.delete(cacheName);
  const norange = base.replace(`${origin}/`, `${origin}/_norange/`);
  const rows = [];
  if (params.get("sequential") !== "0") {
    rows.push(row("sequential: one fetch of the whole file", await streamWeights(norange, { file, cache: false, chunk_size: chunk })));
  }
  rows.push(row(`parallel: ${concurrency} Range requests in flight`, await streamWeights(base, { file, cache: cacheName, concurrency, chunk_size: chunk })));
  rows.push(row("cached: second load from the Cache API", await streamWeights(base, { file, cache: cacheName, concurrency, chunk_size: chunk })));
  await caches.delete(cacheName);
  const result = { base, file, chunk_size: chunk, rows };
  if (rows.length === 3) result.parallel_over_sequential = +(rows[0].seconds / rows[1].seconds).toFixed(2);
  out.textContent = JSON.stringify(result, null, 2);
  out.dataset.json = JSON.stringify(result);
} catch (e) {
  out.textContent = `error: ${e}`;
  out.dataset.json = JSON.stringify({ error: String(e) });
}
