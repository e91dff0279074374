// Browser tests of the npm package's JS API (the assembled package in target/npm/package,
// built by scripts/pack.sh): concurrency, dispose, device loss, missing WebGPU, worker mode
// and main-thread responsiveness. Driven by tests/js/run.mjs; ?suite=main|nogpu.
// Sets window.__results = [{ name, ok, detail }] when done.
import * as page from "/target/npm/package/index.js";
import * as worker from "/target/npm/package/worker.js";

const params = new URLSearchParams(location.search);
const origin = location.origin;
const MODEL = `${origin}/models/all-MiniLM-L6-v2`;
const RERANKER = `${origin}/models/reranker-synthetic-minilm`;
const GENERATOR = `${origin}/models/smollm2-135m-instruct`;
const results = [];
const log = (s) => { document.getElementById("log").textContent += s + "\n"; console.log(s); };
function check(name, ok, detail = "") {
  results.push({ name, ok: !!ok, detail: String(detail) });
  log(`${ok ? "ok  " : "FAIL"} ${name} ${detail}`);
}
async function rejects(promise) {
  try { await promise; return null; } catch (e) { return e; }
}
const maxDiff = (a, b) => a.length !== b.length ? Infinity : a.reduce((m, x, i) => Math.max(m, Math.abs(x - b[i])), 0);
// Sentences of different lengths, so queued calls have different shapes.
const TEXTS = Array.from({ length: 20 }, (_, i) =>
  `Sentence number ${i} talks about ${["cats", "the weather", "stock markets", "python lists", "GPUs"][i % 5]}` + " and more".repeat(i % 4));

/** Frame gaps while `work` runs: requestAnimationFrame keeps ticking iff the main thread is free. */
async function frames(work) {
  let n = 0, last = performance.now(), worst = 0, on = true;
  const tick = (t) => { worst = Math.max(worst, t - last); last = t; n++; if (on) requestAnimationFrame(tick); };
  requestAnimationFrame(tick);
  const t0 = performance.now();
  const value = await work();
  on = false;
  const ms = performance.now() - t0;
  worst = Math.max(worst, performance.now() - last);
  return { value, frames: n, ms, worstGap: worst };
}

async function concurrency(api, tag) {
  // An aborted signal cancels the load (in worker mode the abort crosses as a message).
  const controller = new AbortController();
  controller.abort();
  const aborted = await rejects(api.Embedder.load(MODEL, { signal: controller.signal }));
  check(`${tag}: a load with an aborted signal rejects`, aborted && /abort/i.test(aborted.message), aborted?.message);

  // "auto" (the default) on SwiftShader, a CPU emulating a GPU: the CPU backend.
  const embedder = await api.Embedder.load(MODEL);
  check(`${tag}: device "auto" on a CPU adapter picks the CPU backend`, embedder.device === "cpu", embedder.device);
  const seq = [];
  for (const t of TEXTS) seq.push((await embedder.embed([t])).data);
  const par = await Promise.all(TEXTS.map((t) => embedder.embed([t])));
  const worst = Math.max(...par.map((r, i) => maxDiff(r.data, seq[i])));
  check(`${tag}: 20 concurrent embeds == 20 sequential`, worst <= 1e-6 && par.every((r) => r.dims[0] === 1 && r.dims[1] === 384), `max |diff| ${worst}`);

  // Different objects overlap: a rerank while an index search (which embeds) and an embed run.
  // The reranker on WebGPU (the device-loss check below needs a GPU object).
  const reranker = await api.Reranker.load(RERANKER, { device: "webgpu" });
  check(`${tag}: device "webgpu" is honoured`, reranker.device === "webgpu", reranker.device);
  const gpuIndex = await api.SearchIndex.create(embedder.dim, { device: "webgpu" });
  const mixed = await rejects(Promise.resolve().then(() => gpuIndex.useEmbedder(embedder)));
  check(`${tag}: an index on WebGPU refuses an embedder on the CPU`, mixed?.name === "InputError" && /create the index with/.test(mixed.message), `${mixed?.name}: ${mixed?.message}`);
  await gpuIndex.dispose();
  const index = await api.SearchIndex.create(embedder.dim);
  // Task prompts for documents and queries: MiniLM defines none, so naming one is an
  // InputError, and "" (no prompt) is what the defaults give it.
  const noPrompt = await rejects(Promise.resolve().then(() => index.useEmbedder(embedder, { query_prompt_name: "query" })));
  check(`${tag}: useEmbedder refuses a prompt the model lacks`, noPrompt?.name === "InputError" && /not one of the model's prompts/.test(noPrompt.message), `${noPrompt?.name}: ${noPrompt?.message}`);
  await index.useEmbedder(embedder, { query_prompt_name: "", document_prompt_name: "" });
  await index.add(TEXTS.slice(0, 10));
  const docs = TEXTS.slice(0, 8);
  const want = { hits: await index.search("weather today", { k: 5 }), ranked: await reranker.rerank("weather today", docs), emb: await embedder.embed(TEXTS.slice(0, 4)) };
  const [hits, ranked, emb, hits2, ranked2] = await Promise.all([
    index.search("weather today", { k: 5 }), reranker.rerank("weather today", docs), embedder.embed(TEXTS.slice(0, 4)),
    index.search("weather today", { k: 5 }), reranker.rerank("weather today", docs),
  ]);
  const same = (a, b) => JSON.stringify(Array.from(a)) === JSON.stringify(Array.from(b));
  check(`${tag}: rerank during search and embed gives the sequential results`,
    same(hits.ids, want.hits.ids) && same(hits2.ids, want.hits.ids) && maxDiff(hits.scores, want.hits.scores) <= 1e-6
      && JSON.stringify(ranked) === JSON.stringify(want.ranked) && JSON.stringify(ranked2) === JSON.stringify(want.ranked)
      && maxDiff(emb.data, want.emb.data) <= 1e-6,
    `hits ${Array.from(hits.ids)}, rerank order ${ranked.map((r) => r.index)}`);

  // A rerank while a generate stream runs on another object: both finish correctly. The
  // continuation is the golden's greedy one (tests/goldens/smollm2-135m-instruct-q4_1.json).
  const gen = await api.Generator.load(GENERATOR, { dtype: "f16" });
  const prompt = "The capital of France is";
  const pieces = [];
  let rerankDoneAfter = -1;
  const [out, ranked3] = await Promise.all([
    gen.generate(prompt, { max_new_tokens: 3, callback: (text) => pieces.push(text) }),
    reranker.rerank("weather today", docs).then((r) => { rerankDoneAfter = pieces.length; return r; }),
  ]);
  check(`${tag}: a rerank during a generate stream: both finish correctly`,
    same(out.tokens, [7042, 30, 198]) && pieces.length === 3 && pieces.join("") === out.text && out.finish_reason === "length"
      && JSON.stringify(ranked3) === JSON.stringify(want.ranked),
    `tokens ${Array.from(out.tokens)} ${JSON.stringify(out.text)}, rerank done after ${rerankDoneAfter} of ${pieces.length} streamed pieces`);
  const stopper = new AbortController();
  const stopped = await gen.generate(prompt, { max_new_tokens: 8, signal: stopper.signal, callback: () => stopper.abort() });
  check(`${tag}: generate stops on abort and the generator stays usable`,
    stopped.finish_reason === "abort" && stopped.tokens.length < 8 && same((await gen.generate(prompt, { max_new_tokens: 1 })).tokens, [7042]),
    `${stopped.finish_reason} after ${stopped.tokens.length} tokens`);
  // A prompt longer than the cache: its middle is dropped (context_shift, default on; 4 sinks
  // and its last 26 tokens, leaving 2 rows to generate), the result says how much; without
  // context_shift it is an InputError.
  const longPrompt = "The quick brown fox jumps over the lazy dog. ".repeat(8) + prompt;
  const shifted = await gen.generate(longPrompt, { max_new_tokens: 2, cache_tokens: 32 });
  const strict = await rejects(gen.generate(longPrompt, { max_new_tokens: 2, cache_tokens: 32, context_shift: false }));
  check(`${tag}: cache_tokens, context_shift and evicted are honoured`,
    shifted.tokens.length === 2 && shifted.evicted === shifted.prompt_ids.length - 30 && strict?.name === "InputError"
      && (await gen.generate(prompt, { max_new_tokens: 1 })).tokens[0] === 7042,
    `evicted ${shifted.evicted} of ${shifted.prompt_ids.length}, strict ${strict?.name}: ${strict?.message}`);
  await gen.dispose();

  // dispose: calls already made finish; later calls reject clearly; idempotent.
  const pending = embedder.embed(TEXTS.slice(0, 2));
  const disposed = embedder.dispose();
  const early = await rejects(pending);
  await disposed;
  const late = await rejects(embedder.embed(["after dispose"]));
  await embedder.dispose();
  check(`${tag}: dispose lets queued calls finish, later calls reject clearly`,
    early === null && late && /disposed/.test(late.message), `later call: ${late?.message}`);
  // The index keeps its own reference to the embedder's model.
  const still = await index.search("weather today", { k: 5 });
  check(`${tag}: an index keeps working after its embedder is disposed`, same(still.ids, want.hits.ids));
  await index.dispose();
  const idxErr = await rejects(index.search("weather today"));
  check(`${tag}: a disposed index rejects clearly`, idxErr && /SearchIndex was disposed/.test(idxErr.message), idxErr?.message);

  // Device loss: the next call rejects with a device-lost error; loading again works.
  const lost = await api.__loseDeviceForTesting();
  const afterLoss = await rejects(reranker.rerank("q", ["d"]));
  check(`${tag}: device loss surfaces on the next call`, lost === true && afterLoss && /device lost/i.test(afterLoss.message) && /load it again/.test(afterLoss.message), afterLoss?.message);
  const again = await api.Embedder.load(MODEL, { device: "webgpu" });
  const r = await again.embed([TEXTS[3]]);
  check(`${tag}: after a device loss the engine loads again and gives the same vectors`, maxDiff(r.data, seq[3]) <= 1e-5, `max |diff| ${maxDiff(r.data, seq[3])}`);
  await again.dispose();
  return seq;
}

/** The JS boundary: wrong argument types reject (never throw) with a TypeError naming the
 *  argument; bad values and unknown options are InputErrors; every error has its kind's
 *  name; the same objects work afterwards. Then every load option of every class has its
 *  effect (each class loads through the one load path). */
async function boundary(api, tag) {
  const settle = (f) => { try { return rejects(f()); } catch (e) { return Promise.resolve({ sync: e }); } };
  const cases = [
    ["Embedder.load(42)", () => api.Embedder.load(42), "TypeError", /model must be a string/],
    ["Embedder.load(url, 7)", () => api.Embedder.load(MODEL, 7), "InputError", /options must be an object/],
    ["Embedder.load(url, { polling })", () => api.Embedder.load(MODEL, { polling: "mean" }), "InputError", /unknown option `polling`.*pooling/],
    ["Embedder.load(url, { chunk_size: 0 })", () => api.Embedder.load(MODEL, { chunk_size: 0 }), "InputError", /chunk_size/],
    ["Embedder.load(url, { dtype: \"q3\" })", () => api.Embedder.load(MODEL, { dtype: "q3" }), "InputError", /dtype `q3`/],
    ["Reranker.load(url, { batch_size: 2.5 })", () => api.Reranker.load(RERANKER, { batch_size: 2.5 }), "InputError", /batch_size/],
    ["Generator.load(missing)", () => api.Generator.load(`${origin}/models/nowhere`), "NotFoundError", /not found/],
    ["SearchIndex.create(383.5)", () => api.SearchIndex.create(383.5), "InputError", /whole number/],
    ["SearchIndex.create(\"384\")", () => api.SearchIndex.create("384"), "TypeError", /dim must be a number/],
    ["SearchIndex.import([1,2], 384)", () => api.SearchIndex.import([1, 2], 384), "TypeError", /Uint8Array/],
  ];
  for (const [what, f, name, re] of cases) {
    const e = await settle(f);
    check(`${tag}: ${what} rejects with ${name}`, e && !e.sync && e.name === name && re.test(e.message), e?.sync ? `threw synchronously: ${e.sync}` : `${e?.name}: ${e?.message}`);
  }
  const aborted = new AbortController();
  aborted.abort();
  for (const cls of ["Embedder", "Reranker", "Generator"]) {
    const url = { Embedder: MODEL, Reranker: RERANKER, Generator: `${origin}/models/gguf/SmolLM2-135M-Instruct.Q4_1.gguf` }[cls];
    const e = await settle(() => api[cls].load(url, { signal: aborted.signal, cache: false }));
    check(`${tag}: ${cls}.load with an aborted signal rejects with AbortError`, e?.name === "AbortError", `${e?.name}: ${e?.message}`);
  }
  const embedder = await api.Embedder.load(MODEL, { batch_size: 2, cache: false, chunk_size: 1 << 20, concurrency: 3, retries: 1 });
  for (const [what, f, name] of [
    ["embed(42)", () => embedder.embed(42), "TypeError"],
    ["embed(null)", () => embedder.embed(null), "TypeError"],
    ["embed([\"a\", 1])", () => embedder.embed(["a", 1]), "TypeError"],
  ]) {
    const e = await settle(f);
    check(`${tag}: ${what} rejects with ${name}`, e && !e.sync && e.name === name, e?.sync ? `threw synchronously: ${e.sync}` : `${e?.name}: ${e?.message}`);
  }
  const one = await embedder.embed("hello");
  const listed = await embedder.embed(["hello"]);
  check(`${tag}: embed("hello") embeds one text`, one.dims[0] === 1 && maxDiff(one.data, listed.data) === 0, `dims ${one.dims}`);
  const reranker = await api.Reranker.load(RERANKER, { max_length: 32 });
  const e = await settle(() => reranker.rerank("q", "doc"));
  check(`${tag}: rerank("q", "doc") rejects with TypeError`, e?.name === "TypeError" && /documents must be an array/.test(e.message), `${e?.name}: ${e?.message}`);
  const eo = await settle(() => reranker.rerank("q", ["doc"], { topn: 1 }));
  check(`${tag}: an unknown rerank option rejects with InputError`, eo?.name === "InputError" && /top_n/.test(eo.message), eo?.message);
  check(`${tag}: the reranker works after the errors`, (await reranker.rerank("q", ["a", "b"], { top_n: 1 })).length === 1);
  await embedder.dispose();
  const d = await settle(() => embedder.embed(["x"]));
  check(`${tag}: a disposed embedder rejects with DisposedError`, d?.name === "DisposedError", d?.name);
  await reranker.dispose();
  // dtype honoured by every class: q8_0 linear weights give embeddings close to, not equal
  // to, the f32 ones; a GGUF decoder loads with its blocks (auto) and with f16.
  const f32 = await api.Embedder.load(MODEL);
  const q8 = await api.Embedder.load(MODEL, { dtype: "q8_0" });
  const [a, b] = [await f32.embed(TEXTS[0]), await q8.embed(TEXTS[0])];
  const dq = maxDiff(a.data, b.data);
  check(`${tag}: dtype "q8_0" is honoured by Embedder.load`, dq > 0 && dq < 0.05, `max |diff| ${dq}`);
  await Promise.all([f32.dispose(), q8.dispose()]);
  const events = [];
  const gguf = await api.Generator.load(`${origin}/models/gguf/SmolLM2-135M-Instruct.Q4_1.gguf`, { progress_callback: (ev) => events.push(ev.status) });
  const g = await gguf.generate("The capital of France is", { max_new_tokens: 2 });
  check(`${tag}: Generator.load of a .gguf URL (blocks kept) generates the golden tokens`,
    JSON.stringify(Array.from(g.tokens)) === "[7042,30]" && events.includes("progress") && events.at(-1) === "ready", `tokens ${Array.from(g.tokens)}, events ${[...new Set(events)]}`);
  await gguf.dispose();
}

/** Without WebGPU (run.mjs starts this page's browser without the WebGPU flags and hides
 *  navigator.gpu): embed, rerank and search run on the CPU backend, matching the goldens. */
async function noWebGPU() {
  const cos = (a, b) => {
    let d = 0, na = 0, nb = 0;
    for (let i = 0; i < a.length; i++) { d += a[i] * b[i]; na += a[i] * a[i]; nb += b[i] * b[i]; }
    return d / Math.sqrt(na * nb);
  };
  const golden = await (await fetch(`${origin}/tests/goldens/all-minilm-l6-v2.json`)).json();
  for (const [api, tag] of [[page, "page"], [worker, "worker"]]) {
    const e = await api.Embedder.load(MODEL);
    const texts = golden.sentences.map((s) => s.text);
    const got = await e.embed(texts);
    const worst = Math.min(...golden.sentences.map((s, i) => cos(got.data.subarray(i * 384, (i + 1) * 384), s.embedding)));
    check(`no WebGPU, ${tag}: Embedder.load (device "auto") runs on the CPU and matches the goldens`,
      e.device === "cpu" && got.dims[1] === 384 && worst >= 0.9999, `device ${e.device}, min cosine ${worst}`);
    const index = await api.SearchIndex.create(384);
    await index.useEmbedder(e);
    await index.add(TEXTS);
    const hits = await index.search(TEXTS[7], { k: 3 });
    check(`no WebGPU, ${tag}: a SearchIndex on the CPU finds a text's own entry first`, index.device === "cpu" && hits.ids[0] === 7, `device ${index.device}, ids ${Array.from(hits.ids)}`);
    await index.dispose();
    await e.dispose();
  }
  const rg = await (await fetch(`${origin}/tests/goldens/reranker-synthetic-minilm.json`)).json();
  const r = await page.Reranker.load(RERANKER);
  const docs = rg.pairs.map((p) => p.document);
  const ranked = await r.rerank(rg.query, docs);
  const dl = Math.max(...ranked.map((x) => Math.abs(x.logit - rg.pairs[x.index].logit)));
  check("no WebGPU: Reranker on the CPU matches the golden logits", r.device === "cpu" && dl < 1e-3 && ranked[0].index === rg.ranking_by_logit[0], `device ${r.device}, max |dlogit| ${dl}`);
  await r.dispose();
  const e = await rejects(page.Embedder.load(MODEL, { device: "webgpu" }));
  check("no WebGPU: device \"webgpu\" fails with how to enable it", page.isWebGPUAvailable() === false && e && e.name === "NoAdapterError" && /WebGPU is unavailable/.test(e.message) && /enable/.test(e.message), `${e?.name}: ${e?.message}`);
  const g = await rejects(page.Generator.load(`${origin}/models/gguf/SmolLM2-135M-Instruct.Q4_1.gguf`));
  check("no WebGPU: a Generator (no CPU backend) fails with NoAdapterError", g?.name === "NoAdapterError", `${g?.name}: ${g?.message}`);
  const c = await rejects(page.Generator.load(`${origin}/models/gguf/SmolLM2-135M-Instruct.Q4_1.gguf`, { device: "cpu" }));
  check("no WebGPU: Generator with device \"cpu\" is an UnsupportedError", c?.name === "UnsupportedError", `${c?.name}: ${c?.message}`);
}

async function main() {
  if (params.get("suite") === "nogpu") {
    await noWebGPU();
    return;
  }
  check("WebGPU available", page.isWebGPUAvailable());
  // Responsiveness first (fresh module state): the worker loads the model while frames tick.
  const w = await frames(() => worker.Embedder.load(MODEL));
  const wEmbed = await frames(() => w.value.embed(TEXTS.slice(0, 8)));
  log(`worker: load ${w.ms.toFixed(0)} ms, ${w.frames} frames, worst gap ${w.worstGap.toFixed(0)} ms; embed 8: ${wEmbed.ms.toFixed(0)} ms, ${wEmbed.frames} frames, worst gap ${wEmbed.worstGap.toFixed(0)} ms`);
  const m = await frames(() => page.Embedder.load(MODEL));
  const mEmbed = await frames(() => m.value.embed(TEXTS.slice(0, 8)));
  log(`page:   load ${m.ms.toFixed(0)} ms, ${m.frames} frames, worst gap ${m.worstGap.toFixed(0)} ms; embed 8: ${mEmbed.ms.toFixed(0)} ms, ${mEmbed.frames} frames, worst gap ${mEmbed.worstGap.toFixed(0)} ms`);
  // requestAnimationFrame keeps ticking while the worker loads and embeds: at least one frame
  // per 250 ms on average and no gap over 1 s (2 shared CPU cores also run SwiftShader).
  const fine = (x) => x.frames >= x.ms / 250 && x.worstGap < 1000;
  check("worker mode: the page keeps rendering during load and embed", fine(w) && fine(wEmbed),
    `load: ${w.frames} frames in ${w.ms.toFixed(0)} ms (worst gap ${w.worstGap.toFixed(0)} ms, page mode ${m.worstGap.toFixed(0)} ms); embed: worst gap ${wEmbed.worstGap.toFixed(0)} ms (page mode ${mEmbed.worstGap.toFixed(0)} ms)`);
  check("worker mode: same vectors as the page, transferred Float32Array",
    wEmbed.value.data instanceof Float32Array && maxDiff(wEmbed.value.data, mEmbed.value.data) <= 1e-6, `max |diff| ${maxDiff(wEmbed.value.data, mEmbed.value.data)}`);
  await w.value.dispose();
  await m.value.dispose();
  await boundary(page, "page");
  await boundary(worker, "worker");
  await concurrency(page, "page");
  await concurrency(worker, "worker");
  worker.terminateWorker();
}

try {
  await main();
} catch (e) {
  check("suite ran to the end", false, e?.stack ?? e);
}
window.__results = results;
