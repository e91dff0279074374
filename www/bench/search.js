// Query latency of the GPU SearchIndex (exact, binary + rescoring, binary -> int8 -> exact,
// f32 and f16 storage) against a plain JavaScript brute force in the same page, on n
// clustered random unit vectors of width 384, plus (optionally) embed-query + search and
// reranker pairs/s. `search=0` skips the index (reranker only). Results: #out[data-json].
import init, { Embedder, Reranker, SearchIndex } from "../../pkg/gllm_web.js";

const params = new URLSearchParams(location.search);
const n = Number(params.get("n") ?? 100000);
const runs = Number(params.get("runs") ?? 10);
const dim = 384;
const out = document.getElementById("out");
const median = (a) => [...a].sort((x, y) => x - y)[Math.floor(a.length / 2)];

// Seeded generator (mulberry32) and clustered unit vectors.
let seed = 42;
const rand = () => { seed |= 0; seed = (seed + 0x6d2b79f5) | 0; let t = Math.imul(seed ^ (seed >>> 15), 1 | seed);
  t = (t + Math.imul(t ^ (t >>> 7), 61 | t)) ^ t; return ((t ^ (t >>> 14)) >>> 0) / 4294967296; };
function vectors(count) {
  const centres = Array.from({ length: 100 }, () => Float32Array.from({ length: dim }, () => rand() * 2 - 1));
  const data = new Float32Array(count * dim);
  for (let i = 0; i < count; i++) {
    let norm = 0;
    for (let j = 0; j < dim; j++) { const v = centres[i % 100][j] + (rand() * 2 - 1) * 1.2; data[i * dim + j] = v; norm += v * v; }
    norm = Math.sqrt(norm);
    for (let j = 0; j < dim; j++) data[i * dim + j] /= norm;
  }
  return data;
}

function bruteForce(data, q, k) {
  const count = data.length / dim;
  const best = []; // [score, id], ascending, length <= k
  for (let i = 0; i < count; i++) {
    let s = 0;
    const o = i * dim;
    for (let j = 0; j < dim; j++) s += data[o + j] * q[j];
    if (best.length < k || s > best[0][0]) {
      best.push([s, i]);
      best.sort((a, b) => a[0] - b[0]);
      if (best.length > k) best.shift();
    }
  }
  return best.reverse();
}

async function time(fn, count) {
  const t = [];
  await fn(); // warm-up (pipeline compilation)
  for (let r = 0; r < count; r++) { const t0 = performance.now(); await fn(); t.push(performance.now() - t0); }
  return median(t);
}

async function main() {
  await init();
  const result = { n, dim, k: 10, adapter: "navigator.gpu", userAgent: navigator.userAgent };
  const info = (await navigator.gpu.requestAdapter())?.info;
  if (info) result.adapter = `${info.vendor} ${info.architecture} ${info.description}`.trim();
  const skipSearch = params.get("search") === "0";
  const data = skipSearch ? null : vectors(n);
  const index = skipSearch ? null : await SearchIndex.create(dim);
  if (!skipSearch) {
    let t0 = performance.now();
    for (let i = 0; i < n; i += 8192) await index.add(data.subarray(i * dim, Math.min(n, i + 8192) * dim));
    await index.search(data.subarray(0, dim), { k: 10 });
    result.index_build_ms = performance.now() - t0;
    const q = data.slice(7 * dim, 8 * dim);
    const gpu = await index.search(q, { k: 10 });
    const cpu = bruteForce(data, q, 10);
    result.top10_agree = cpu.every(([, id], i) => id === gpu.ids[i]);
    result.gpu_exact_ms = await time(() => index.search(q, { k: 10, mode: "exact" }), runs);
    result.gpu_binary_rescore200_ms = await time(() => index.search(q, { k: 10, mode: "binary", candidates: 200 }), runs);
    result.gpu_binary200_int8_40_exact_ms = await time(() => index.search(q, { k: 10, mode: "int8", candidates: 200, rescore: 40 }), runs);
    result.js_brute_force_ms = await time(async () => bruteForce(data, q, 10), Math.min(runs, 5));
    result.speedup_exact_vs_js = result.js_brute_force_ms / result.gpu_exact_ms;
    if (params.get("f16") !== "0") {
      const half = await SearchIndex.create(dim, { storage: "f16" });
      for (let i = 0; i < n; i += 8192) await half.add(data.subarray(i * dim, Math.min(n, i + 8192) * dim));
      const h = await half.search(q, { k: 10 });
      result.f16_top10_overlap = [...h.ids].filter((id) => cpu.some(([, c]) => c === id)).length / 10;
      result.gpu_exact_f16_ms = await time(() => half.search(q, { k: 10, mode: "exact" }), runs);
      await half.dispose();
    }
  }
  if (params.get("model") && index) {
    const embedder = await Embedder.load(params.get("model"));
    index.useEmbedder(embedder);
    result.embed_query_and_exact_search_ms = await time(() => index.search("how do I pause a program for a few seconds?", { k: 10 }), Math.min(runs, 5));
  }
  if (params.get("reranker")) {
    const reranker = await Reranker.load(params.get("reranker"));
    const doc = "The standard library offers modules for files, processes, networking, text processing, numbers, dates and times, compression, data formats and much more, and this sentence keeps going so that the document is roughly one hundred tokens long when it is tokenized with the WordPiece vocabulary of the model, including punctuation, numbers like 3.14159 and 2026, and a few rarer words such as serialization, subprocess and memoization.";
    const ms = await time(() => reranker.rerank("how do I pause a program?", Array(32).fill(doc)), 2);
    result.rerank_32x107_ms = ms;
    result.rerank_pairs_per_s = 32000 / ms;
  }
  out.textContent = JSON.stringify(result, null, 2);
  out.dataset.json = JSON.stringify(result);
}
main().catch((e) => { out.textContent = `error: ${e?.message ?? e}`; out.dataset.json = JSON.stringify({ error: String(e?.message ?? e) }); });
