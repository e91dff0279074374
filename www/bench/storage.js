// Bounds for the cached load (SPEC/loader.md): each step moves n pieces of 8 MiB with 6 in
// flight and reports seconds and GB/s. Result: #out[data-json].
const params = new URLSearchParams(location.search);
const PIECE = 8 << 20, N = Number(params.get("n") ?? 64), CONCURRENCY = 6, only = params.get("only");
const out = document.getElementById("out");
const result = { piece_bytes: PIECE, pieces: N, rows: {} };

async function inFlight(f) {
  let next = 0;
  await Promise.all(Array.from({ length: CONCURRENCY }, async () => {
    while (next < N) await f(next++);
  }));
}

async function time(name, f) {
  const t0 = performance.now();
  await f();
  const s = (performance.now() - t0) / 1000;
  result.rows[name] = { seconds: +s.toFixed(3), GBps: +(N * PIECE / s / 1e9).toFixed(2) };
}

try {
  const adapter = await navigator.gpu.requestAdapter();
  const device = await adapter.requestDevice();
  result.adapter = `${adapter.info?.vendor ?? ""} ${adapter.info?.architecture ?? ""}`.trim();
  const fresh = () => Array.from({ length: N }, () => device.createBuffer({ size: PIECE, usage: GPUBufferUsage.STORAGE | GPUBufferUsage.COPY_DST }));
  let buffers = fresh();
  const bytes = new Uint8Array(PIECE);
  for (let i = 0; i < PIECE; i += 4096) bytes[i] = i & 255;
  const writeAll = async () => {
    for (const b of buffers) device.queue.writeBuffer(b, 0, bytes);
    await device.queue.onSubmittedWorkDone();
  };
  await time("writeBuffer into fresh buffers", writeAll);
  await time("writeBuffer into written buffers", writeAll);
  if (only !== "opfs") {
    const name = `gllm-storage-bench-${Date.now()}`;
    const cache = await caches.open(name);
    const url = (i) => `https://gllm-web.local/storage-bench/${i}`;
    await time("Cache API put", () => inFlight((i) => cache.put(url(i), new Response(bytes))));
    await time("Cache API read", () => inFlight(async (i) => { await (await cache.match(url(i))).arrayBuffer(); }));
    const readWrite = async () => {
      await inFlight(async (i) => device.queue.writeBuffer(buffers[i], 0, new Uint8Array(await (await cache.match(url(i))).arrayBuffer())));
      await device.queue.onSubmittedWorkDone();
    };
    await time("Cache API read + writeBuffer into written buffers", readWrite);
    for (const b of buffers) b.destroy();
    buffers = fresh();
    await time("Cache API read + writeBuffer into fresh buffers (a cached model load)", readWrite);
    await caches.delete(name);
  }
  if (only !== "cache") {
    const root = await navigator.storage.getDirectory();
    const handle = await root.getFileHandle("gllm-storage-bench.bin", { create: true });
    await time("OPFS write", async () => {
      const w = await handle.createWritable();
      for (let i = 0; i < N; i++) await w.write(bytes);
      await w.close();
    });
    const file = await handle.getFile();
    const piece = (i) => file.slice(i * PIECE, (i + 1) * PIECE).arrayBuffer();
    await time("OPFS read", () => inFlight(async (i) => { await piece(i); }));
    const readWrite = async () => {
      await inFlight(async (i) => device.queue.writeBuffer(buffers[i], 0, new Uint8Array(await piece(i))));
      await device.queue.onSubmittedWorkDone();
    };
    await time("OPFS read + writeBuffer into written buffers", readWrite);
    for (const b of buffers) b.destroy();
    buffers = fresh();
    await time("OPFS read + writeBuffer into fresh buffers", readWrite);
    await root.removeEntry("gllm-storage-bench.bin");
  }
  for (const b of buffers) b.destroy();
} catch (e) {
  result.error = String(e);
}
out.textContent = JSON.stringify(result, null, 2);
out.dataset.json = JSON.stringify(result);
