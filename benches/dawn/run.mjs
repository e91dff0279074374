// The browser's WebGPU engine, Dawn (the `webgpu` npm package, via gllm-web/node), on the
// workloads of the native benches, with the same random-weight models: the native benches
// write them out with GLLM_BENCH_WRITE=DIR (benches/common: `write_out`), and this runner
// loads those folders. So the two columns differ only in the WebGPU implementation (wgpu's
// Vulkan backend vs Dawn) and the host (native Rust vs wasm in Node).
//   node benches/dawn/run.mjs DIR [--decode-models a,b] [--dtypes f32,f16,q4_0] [--new 128] [--prompt 512]
// DIR holds embed/ (MiniLM shapes) and one folder per decoder (SmolLM2, Qwen2.5…) as written
// by `cargo bench --bench embed` / `--bench generate` with GLLM_BENCH_WRITE=DIR.
// Prints markdown rows; the same figures as JSON on the last line.
import { performance } from "node:perf_hooks";
import fs from "node:fs";
import path from "node:path";

const args = process.argv.slice(2);
const dir = path.resolve(args[0] ?? "target/bench-models");
const opt = (name, d) => {
  const i = args.indexOf(`--${name}`);
  return i >= 0 ? args[i + 1] : d;
};
const dtypes = opt("dtypes", "f32,f16,q4_0").split(",");
const newTokens = Number(opt("new", "128"));
const promptTokens = Number(opt("prompt", "512"));
const median = (v) => [...v].sort((a, b) => a - b)[Math.floor(v.length / 2)];
const out = { rows: [] };
const row = (r) => {
  out.rows.push(r);
  console.log(`| ${r.bench} | ${r.value.toFixed(r.digits ?? 1)} ${r.unit} |`);
};

const gllm = await import("gllm-web/node");
await gllm.init();
const adapter = await navigator.gpu.requestAdapter();
const info = adapter.info ?? {};
out.adapter = `Dawn ${info.vendor ?? "?"} ${info.architecture ?? ""} ${info.description ?? ""}`.trim();
out.features = [...adapter.features].sort();
console.log(`adapter: ${out.adapter}; features: ${out.features.join(", ")}`);
console.log("| bench (Dawn) | figure |\n|---|---|");

// Raw WebGPU on Dawn: one trivial dispatch, many in one pass; and a submit + 4-byte readback.
{
  const device = await adapter.requestDevice();
  const module = device.createShaderModule({ code: "@group(0) @binding(0) var<storage, read_write> b: array<u32>; @compute @workgroup_size(64) fn main(@builtin(global_invocation_id) g: vec3<u32>) { if (g.x == 0u) { b[0] = b[0] + 1u; } }" });
  const pipeline = device.createComputePipeline({ layout: "auto", compute: { module, entryPoint: "main" } });
  const buf = device.createBuffer({ size: 256, usage: GPUBufferUsage.STORAGE | GPUBufferUsage.COPY_SRC });
  const read = device.createBuffer({ size: 4, usage: GPUBufferUsage.MAP_READ | GPUBufferUsage.COPY_DST });
  const bind = device.createBindGroup({ layout: pipeline.getBindGroupLayout(0), entries: [{ binding: 0, resource: { buffer: buf } }] });
  const run = async (n) => {
    const enc = device.createCommandEncoder();
    const pass = enc.beginComputePass();
    pass.setPipeline(pipeline);
    pass.setBindGroup(0, bind);
    for (let i = 0; i < n; i++) pass.dispatchWorkgroups(1);
    pass.end();
    enc.copyBufferToBuffer(buf, 0, read, 0, 4);
    device.queue.submit([enc.finish()]);
    await read.mapAsync(GPUMapMode.READ);
    read.unmap();
  };
  const per = [];
  for (let r = 0; r < 8; r++) {
    const t0 = performance.now();
    await run(2000);
    if (r >= 2) per.push((performance.now() - t0) / 2000);
  }
  const rt = [];
  for (let r = 0; r < 30; r++) {
    const t0 = performance.now();
    await run(1);
    if (r >= 5) rt.push(performance.now() - t0);
  }
  row({ bench: "raw WebGPU: one dispatch of 2000 in a pass (encode + run)", value: median(per) * 1000, unit: "µs", digits: 2 });
  row({ bench: "raw WebGPU: submit + 4-byte readback round trip", value: median(rt) * 1000, unit: "µs" });
  device.destroy();
}

// Embed at batch 1 and 32: the sentences of benches/embed.rs.
if (fs.existsSync(path.join(dir, "embed"))) {
  const sentence = (i) => `Sentence number ${i} talks about GPUs, browsers and the quick brown fox that jumps over the lazy dog today, as it does every morning.`;
  const e = await gllm.Embedder.load(path.join(dir, "embed"), { cache: false });
  for (const batch of [1, 32]) {
    const texts = Array.from({ length: batch }, (_, i) => sentence(i));
    const t = [];
    for (let r = 0; r < 35; r++) {
      const t0 = performance.now();
      await e.embed(texts);
      if (r >= 5) t.push(performance.now() - t0);
    }
    row({ bench: `embed f32 batch=${batch}: embeddings/s`, value: batch / (median(t) / 1000), unit: "/s", digits: 0 });
  }
  await e.dispose();
}

// Search: 100k × 384 exact, k = 10.
{
  const n = 100_000, d = 384;
  const index = await gllm.SearchIndex.create(d);
  const v = new Float32Array(n * d);
  let s = 12345;
  for (let i = 0; i < v.length; i++) {
    s = (s * 1103515245 + 12345) >>> 0;
    v[i] = s / 4294967296 - 0.5;
  }
  for (let i = 0; i < n; i += 10_000) await index.add(v.subarray(i * d, (i + 10_000) * d));
  const q = v.subarray(0, d);
  const t = [];
  for (let r = 0; r < 35; r++) {
    const t0 = performance.now();
    await index.search(q, { k: 10 });
    if (r >= 5) t.push(performance.now() - t0);
  }
  row({ bench: `search exact ${n} × ${d}, k=10: ms/query`, value: median(t), unit: "ms", digits: 3 });
  await index.dispose();
}

// Decoders: prefill of a ~512-token prompt and decode of 128 tokens, per dtype.
const models = opt("decode-models", fs.readdirSync(dir).filter((m) => m !== "embed").join(",")).split(",").filter(Boolean);
for (const m of models) {
  for (const dtype of dtypes) {
    const g = await gllm.Generator.load(path.join(dir, m), { dtype, cache: false });
    const prompt = "hello world ".repeat(Math.ceil(promptTokens / 2));
    const first = await g.generate(prompt, { max_new_tokens: 1, prefix_cache: false });
    const n = first.prompt_ids.length;
    const pre = [];
    for (let r = 0; r < 5; r++) {
      const t0 = performance.now();
      await g.generate(prompt, { max_new_tokens: 1, prefix_cache: false });
      pre.push(performance.now() - t0);
    }
    const dec = [];
    for (let r = 0; r < 3; r++) {
      const stamps = [];
      const res = await g.generate(prompt, { max_new_tokens: newTokens, prefix_cache: false, callback: () => stamps.push(performance.now()) });
      if (stamps.length >= 8) dec.push((stamps.at(-1) - stamps[0]) / (stamps.length - 1));
      if (r === 0 && res.tokens.length < newTokens) console.log(`  (${m} ${dtype}: stopped at ${res.tokens.length} tokens on EOS)`);
    }
    row({ bench: `${m} ${dtype} prefill ${n} tok: tok/s`, value: n / (median(pre) / 1000), unit: "tok/s", digits: 0 });
    row({ bench: `${m} ${dtype} decode: tok/s`, value: 1000 / median(dec), unit: "tok/s", digits: 1 });
    await g.dispose();
  }
}
console.log(JSON.stringify(out));
