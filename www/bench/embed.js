// Side-by-side: gllm-web (the npm package as built by scripts/pack.sh) and transformers.js
// (@huggingface/transformers with its WebGPU device) embedding the same ~30-token sentences
// with the same all-MiniLM-L6-v2 weights (transformers.js reads an ONNX export of the same
// model.safetensors, scripts/export_onnx.py), mean pooling + L2 normalisation on both sides.
// Each side: one warm-up call per batch size, then the median of `runs` timed calls (the two
// sides alternate), each a full embed call that ends with the embeddings on the CPU. Result: #out[data-json].
import { Embedder } from "/target/npm/package/index.js";
import { env, pipeline } from "/benches/web/node_modules/@huggingface/transformers/dist/transformers.js";

const params = new URLSearchParams(location.search);
const runs = Number(params.get("runs") ?? 5);
const batches = (params.get("batches") ?? "1,32").split(",").map(Number);
const model = params.get("model") ?? `${location.origin}/models/all-MiniLM-L6-v2`;
// A path, not a full URL: transformers.js 4 probes local files only for non-URL paths.
const onnxRoot = params.get("onnx") ?? "/target/bench-models/";
const out = document.getElementById("out");
const median = (a) => [...a].sort((x, y) => x - y)[Math.floor(a.length / 2)];
// The sentences of benches/embed.rs and benches/embed_torch.py (31 tokens each).
const sentence = (i) => `Sentence number ${i} talks about GPUs, browsers and the quick brown fox that jumps over the lazy dog today, as it does every morning.`;

/** Medians of `runs` timed calls of each function, alternating between them so both sides
 *  see the same machine load; one warm-up call each first. */
async function timeBoth(fa, fb) {
  await fa(); // warm-up: pipeline compilation, buffer allocation
  await fb();
  const ta = [], tb = [];
  for (let r = 0; r < runs; r++) {
    for (const [f, t] of [[fa, ta], [fb, tb]]) {
      const t0 = performance.now();
      await f();
      t.push(performance.now() - t0);
    }
  }
  return [median(ta), median(tb)];
}

async function main() {
  const result = { model: "all-MiniLM-L6-v2 (same safetensors weights, fp32)", tokens_per_sentence: 31, runs, userAgent: navigator.userAgent };
  const info = (await navigator.gpu.requestAdapter())?.info;
  result.adapter = info ? `${info.vendor} ${info.architecture} ${info.description}`.trim() : "unknown";

  const gllm = await Embedder.load(model);
  env.allowRemoteModels = false;
  env.allowLocalModels = true;
  env.localModelPath = onnxRoot;
  env.backends.onnx.wasm.wasmPaths = `${location.origin}/benches/web/node_modules/onnxruntime-web/dist/`;
  const extractor = await pipeline("feature-extraction", "all-MiniLM-L6-v2", { device: "webgpu", dtype: "fp32" });
  // ORT's WebGPU execution provider sets this device when it initialises (no silent
  // fallback to the wasm CPU backend).
  const ortDevice = await env.backends.onnx.webgpu?.device;
  result.transformers_js_backend = ortDevice ? "onnxruntime-web WebGPU EP" : "not WebGPU";
  const tjs = async (texts) => {
    const t = await extractor(texts, { pooling: "mean", normalize: true });
    return { data: t.data, dims: t.dims };
  };

  // Same numbers on both sides (cosine of each pair of rows).
  const probe = Array.from({ length: 4 }, (_, i) => sentence(i));
  const a = await gllm.embed(probe), b = await tjs(probe);
  const d = a.dims[1];
  let worstCos = 1;
  for (let i = 0; i < probe.length; i++) {
    let c = 0;
    for (let j = 0; j < d; j++) c += a.data[i * d + j] * b.data[i * d + j];
    worstCos = Math.min(worstCos, c);
  }
  result.agreement_min_cosine = worstCos;

  result.rows = [];
  for (const batch of batches) {
    const texts = Array.from({ length: batch }, (_, i) => sentence(i));
    const [g, t] = await timeBoth(() => gllm.embed(texts), () => tjs(texts));
    const row = {
      batch,
      gllm_web: { median_ms: +g.toFixed(2), embeddings_per_s: +(batch / g * 1000).toFixed(2) },
      transformers_js: { median_ms: +t.toFixed(2), embeddings_per_s: +(batch / t * 1000).toFixed(2) },
      ratio_gllm_over_transformers_js: +(t / g).toFixed(3),
    };
    result.rows.push(row);
    console.log(`row ${JSON.stringify(row)}`);
    out.textContent = JSON.stringify(result, null, 2);
  }
  await gllm.dispose();
  await extractor.dispose();
  out.textContent = JSON.stringify(result, null, 2);
  out.dataset.json = JSON.stringify(result);
}

main().catch((e) => {
  out.textContent = `error: ${e?.stack ?? e}`;
  out.dataset.json = JSON.stringify({ error: String(e?.message ?? e) });
});
