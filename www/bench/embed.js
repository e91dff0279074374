// Side-by-side: gllm-web (the npm package as built by scripts/pack.sh) and transformers.js
// (@huggingface/transformers with its WebGPU device) embedding the same ~30-token sentences
// with the same all-MiniLM-L6-v2 weights (transformers.js reads an ONNX export of the same
// model.safetensors, scripts/export_onnx.py), mean pooling + L2 normalisation on both sides.
// Each side: one warm-up call per batch size, then the median of `runs` timed calls (the two
// sides alternate), each a full embed call that ends with the embeddings on the CPU. Result: #out[data-json].
// `?mode=cpu`: the CPU comparison instead (mainCpu): gllm-web `device: "cpu"` (wasm SIMD128)
// against transformers.js `device: "wasm"` (ORT's wasm CPU EP, single-threaded) with the fp32
// export and with its q8 export (onnx/model_quantized.onnx), three contestants alternating.
import { Embedder } from "/target/npm/package/index.js";
import { env, pipeline } from "/benches/web/node_modules/@huggingface/transformers/dist/transformers.js";

const params = new URLSearchParams(location.search);
const mode = params.get("mode") ?? "webgpu";
const runs = Number(params.get("runs") ?? 5);
const batches = (params.get("batches") ?? "1,32").split(",").map(Number);
const model = params.get("model") ?? `${location.origin}/models/all-MiniLM-L6-v2`;
// A path, not a full URL: transformers.js 4 probes local files only for non-URL paths.
const onnxRoot = params.get("onnx") ?? "/target/bench-models/";
const out = document.getElementById("out");
const median = (a) => [...a].sort((x, y) => x - y)[Math.floor(a.length / 2)];
// The sentences of benches/embed.rs and benches/embed_torch.py (31 tokens each).
const sentence = (i) => `Sentence number ${i} talks about GPUs, browsers and the quick brown fox that jumps over the lazy dog today, as it does every morning.`;

/** Medians of `runs` timed calls of each function, alternating between them call by call so
 *  all sides see the same machine load; one warm-up call each first. */
async function timeAll(fs) {
  for (const f of fs) await f(); // warm-up: pipeline compilation, buffer allocation
  const ts = fs.map(() => []);
  for (let r = 0; r < runs; r++) {
    for (let i = 0; i < fs.length; i++) {
      const t0 = performance.now();
      await fs[i]();
      ts[i].push(performance.now() - t0);
    }
  }
  return ts.map(median);
}
const timeBoth = (fa, fb) => timeAll([fa, fb]);

/** Minimum over rows of the cosine of each pair of rows (both sides L2-normalised). */
function minCosine(a, b, rows) {
  const d = a.dims[1];
  let worst = 1;
  for (let i = 0; i < rows; i++) {
    let c = 0;
    for (let j = 0; j < d; j++) c += a.data[i * d + j] * b.data[i * d + j];
    worst = Math.min(worst, c);
  }
  return worst;
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

/** ?mode=cpu: gllm-web's CPU backend vs transformers.js on ORT's wasm EP, fp32 and q8, one
 *  thread each (gllm-web's CPU backend is single-threaded; ORT gets numThreads = 1, and the
 *  page is not cross-origin isolated, so it could not use more anyway). */
async function mainCpu() {
  const result = {
    mode: "cpu",
    model: "all-MiniLM-L6-v2 (same safetensors weights; transformers.js: fp32 ONNX export and its q8 quantisation)",
    tokens_per_sentence: 31, runs, userAgent: navigator.userAgent,
    crossOriginIsolated: self.crossOriginIsolated, hardwareConcurrency: navigator.hardwareConcurrency,
    navigator_gpu: "gpu" in navigator,
  };
  // Only asks for an adapter (no device): null in a browser without the WebGPU flags.
  const info = navigator.gpu ? (await navigator.gpu.requestAdapter())?.info : undefined;
  result.webgpu_adapter = info ? `${info.vendor} ${info.architecture} ${info.description}`.trim() : null;

  const gllm = await Embedder.load(model, { device: "cpu" });
  result.gllm_web_device = gllm.device;
  if (gllm.device !== "cpu") throw new Error(`gllm-web loaded on ${gllm.device}, not cpu`);

  env.allowRemoteModels = false;
  env.allowLocalModels = true;
  env.localModelPath = onnxRoot;
  const ortEnv = env.backends.onnx; // a copy of ORT's env whose wasm/webgpu objects are ORT's own
  ortEnv.wasm.wasmPaths = `${location.origin}/benches/web/node_modules/onnxruntime-web/dist/`;
  ortEnv.wasm.numThreads = 1;

  // Proof of the execution provider: one throwaway session per file created with ORT's verbose
  // session log, whose "All nodes placed on [...]" / "Node placements" lines name the EP every
  // node was assigned to (collected from the console while the session is created), then the
  // timed pipelines without it (verbose logging could slow the runs).
  // ORT's wasm module keeps the console functions it finds when it is instantiated (during the
  // first session), so the capture is one wrapper installed now, forwarding unless `sink` is set.
  let sink = null;
  for (const k of ["log", "info", "warn", "error", "debug"]) {
    const orig = console[k].bind(console);
    console[k] = (...a) => (sink ? sink(a.map(String).join(" ")) : orig(...a));
  }
  const placement = {};
  for (const dtype of ["fp32", "q8"]) {
    const lines = [];
    let seen = 0;
    sink = (t) => {
      seen++;
      if (/placed on|Node placements/i.test(t)) lines.push(t.trim().replace(/^\S+ \S+ /, "").slice(0, 200));
    };
    try {
      const probe = await pipeline("feature-extraction", "all-MiniLM-L6-v2",
        { device: "wasm", dtype, session_options: { logSeverityLevel: 0, logVerbosityLevel: 0 } });
      await probe.dispose();
    } finally {
      sink = null;
    }
    placement[dtype] = lines.length ? [...new Set(lines)] : `no placement lines among ${seen} console lines`;
  }

  const load = async (dtype) => {
    const p = await pipeline("feature-extraction", "all-MiniLM-L6-v2", { device: "wasm", dtype });
    return {
      p,
      session: p.model.sessions.model,
      embed: async (texts) => {
        const t = await p(texts, { pooling: "mean", normalize: true });
        return { data: t.data, dims: t.dims };
      },
    };
  };
  const fp32 = await load("fp32");
  const q8 = await load("q8");
  result.transformers_js = {
    device: "wasm",
    dtypes: { fp32: "onnx/model.onnx", q8: "onnx/model_quantized.onnx (quantize_dynamic: QInt8 weights, per-tensor; scripts/export_onnx.py)" },
    // Read back after the sessions exist: ORT clamps numThreads when it initialises.
    ort_wasm_numThreads: ortEnv.wasm.numThreads,
    ort_wasm_proxy: ortEnv.wasm.proxy,
    ort_version: ortEnv.versions?.web ?? ortEnv.versions?.common,
    // The WebGPU EP sets env.webgpu.device when it initialises: undefined = it never ran.
    ort_webgpu_device_created: ortEnv.webgpu?.device !== undefined,
    ort_webgpu_adapter_set: ortEnv.webgpu?.adapter !== undefined,
    session_input_names: fp32.session.inputNames,
    node_placement_log: placement,
    ort_files_fetched: performance.getEntriesByType("resource").map((e) => e.name)
      .filter((n) => /ort-wasm|\.onnx$/.test(n)).map((n) => n.replace(location.origin, "")),
  };

  // Same numbers: the cosine of each pair of rows.
  const probe = Array.from({ length: 4 }, (_, i) => sentence(i));
  const a = await gllm.embed(probe), bf = await fp32.embed(probe), bq = await q8.embed(probe);
  result.agreement_min_cosine = {
    gllm_web_vs_transformers_js_fp32: minCosine(a, bf, probe.length),
    gllm_web_vs_transformers_js_q8: minCosine(a, bq, probe.length),
    transformers_js_fp32_vs_q8: minCosine(bf, bq, probe.length),
  };

  const rate = (batch, ms) => ({ median_ms: +ms.toFixed(2), embeddings_per_s: +(batch / ms * 1000).toFixed(2) });
  result.rows = [];
  for (const batch of batches) {
    const texts = Array.from({ length: batch }, (_, i) => sentence(i));
    const [g, f, q] = await timeAll([() => gllm.embed(texts), () => fp32.embed(texts), () => q8.embed(texts)]);
    const row = {
      batch,
      gllm_web_cpu: rate(batch, g),
      transformers_js_wasm_fp32: rate(batch, f),
      transformers_js_wasm_q8: rate(batch, q),
      ratio_gllm_over_transformers_js_fp32: +(f / g).toFixed(3),
      ratio_gllm_over_transformers_js_q8: +(q / g).toFixed(3),
    };
    result.rows.push(row);
    console.log(`row ${JSON.stringify(row)}`);
    out.textContent = JSON.stringify(result, null, 2);
  }
  result.transformers_js.ort_wasm_numThreads_after = ortEnv.wasm.numThreads;
  result.transformers_js.ort_webgpu_device_created_after = ortEnv.webgpu?.device !== undefined;
  await gllm.dispose();
  await fp32.p.dispose();
  await q8.p.dispose();
  out.textContent = JSON.stringify(result, null, 2);
  out.dataset.json = JSON.stringify(result);
}

(mode === "cpu" ? mainCpu() : main()).catch((e) => {
  out.textContent = `error: ${e?.stack ?? e}`;
  out.dataset.json = JSON.stringify({ error: String(e?.message ?? e) });
});
