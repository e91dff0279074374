// The semantic-search demo. Loads the embedder (progress bar), embeds the corpus into a GPU
// SearchIndex in batches (progress bar; the index is cached in the Cache API so a later
// visit skips re-embedding), answers queries with GPU top-k, and optionally reranks the top
// hits with a cross-encoder (?reranker=URL).
// URL parameters: model=<url> reranker=<url> q=<query> auto=1 (search once ready)
// worker=1 (the engine runs in a Web Worker: "gllm-web/worker", the same API)
// limit=<n> (index only the first n passages). A model with task prompts (EmbeddingGemma:
// model=../models/embeddinggemma-300m) embeds passages with its "document" prompt and
// queries with its "query" prompt (SearchIndex.useEmbedder's defaults); a multilingual model
// answers queries in other languages than the (English) corpus.
// chat=<url> (the chat panel's model, default ../models/smollm2-135m-instruct, loaded on the
// first message; answers stream through the Generator's callback).
// For tests: window.demo = { ready: Promise, search(query, mode) → results,
// chat(question, options) → { text, pieces, finish_reason, tokens } }.
// Uses the npm package as scripts/pack.sh assembles it (target/npm/package).
const $ = (id) => document.getElementById(id);
const params = new URLSearchParams(location.search);
const inWorker = params.get("worker") === "1";
const { Embedder, Reranker, SearchIndex, Generator } = await import(inWorker ? "../target/npm/package/worker.js" : "../target/npm/package/index.js");
const modelUrl = params.get("model") ?? new URL("../models/all-MiniLM-L6-v2", location.href).href;
const rerankerUrl = params.get("reranker");
if (params.has("q")) $("query").value = params.get("q");
const ms = (t) => `${t < 10 ? t.toFixed(1) : t.toFixed(0)} ms`;
const docText = (d) => `${d.title}: ${d.text}`;

function fail(e) {
  $("error").textContent = String(e?.message ?? e);
  document.body.dataset.state = "error";
}

async function openIndex(embedder, docs) {
  const key = `gllm-demo-index-v2-${docs.length}-${encodeURIComponent(modelUrl)}`;
  const cache = "caches" in self ? await caches.open("gllm-web-demo") : null;
  const t0 = performance.now();
  const hit = cache && !params.has("nocache") ? await cache.match(key) : null;
  if (hit) {
    const index = await SearchIndex.import(new Uint8Array(await hit.arrayBuffer()), embedder.dim, { device: embedder.device });
    await index.useEmbedder(embedder); // a Promise in worker mode, void on the page
    $("p-index").value = 100;
    $("t-index").textContent = `${ms(performance.now() - t0)} (cached)`;
    return index;
  }
  const index = await SearchIndex.create(embedder.dim, { device: embedder.device });
  await index.useEmbedder(embedder);
  const batch = 32;
  for (let i = 0; i < docs.length; i += batch) {
    await index.add(docs.slice(i, i + batch).map(docText));
    $("p-index").value = (100 * Math.min(docs.length, i + batch)) / docs.length;
    $("t-index").textContent = `${Math.min(docs.length, i + batch)}/${docs.length}`;
  }
  const bytes = await index.export();
  $("t-index").textContent = ms(performance.now() - t0);
  if (cache) await cache.put(key, new Response(bytes));
  return index;
}

// Main-thread responsiveness: the worst gap between animation frames over the last second.
function frameMeter() {
  let last = performance.now(), worst = 0, shown = last;
  const tick = (t) => {
    worst = Math.max(worst, t - last);
    last = t;
    if (t - shown > 1000) {
      $("frames").textContent = `main thread: worst frame gap ${worst.toFixed(0)} ms in the last second`;
      worst = 0;
      shown = t;
    }
    requestAnimationFrame(tick);
  };
  requestAnimationFrame(tick);
}

async function main() {
  frameMeter();
  $("worker").checked = inWorker;
  $("worker").onchange = () => {
    const u = new URL(location.href);
    u.searchParams.set("worker", $("worker").checked ? "1" : "0");
    location.href = u.href;
  };
  const corpus = await (await fetch("./corpus.json")).json();
  const limit = Number(params.get("limit") ?? corpus.documents.length);
  const docs = corpus.documents.slice(0, limit > 0 ? limit : corpus.documents.length);
  $("corpus-src").textContent = `${docs.length} passages · ${corpus.source}`;

  let t0 = performance.now();
  const embedder = await Embedder.load(modelUrl, {
    progress_callback: (e) => { if (e.status === "progress") $("p-model").value = e.progress; },
  });
  $("p-model").value = 100;
  // "cpu": no WebGPU here, or only a CPU emulating a GPU; the CPU backend runs the search.
  $("t-model").textContent = `${ms(performance.now() - t0)} · ${embedder.device}`;
  document.body.dataset.device = embedder.device;

  let reranker = null;
  if (rerankerUrl) {
    $("stage-rr").hidden = false;
    t0 = performance.now();
    reranker = await Reranker.load(rerankerUrl, {
      progress_callback: (e) => { if (e.status === "progress") $("p-rr").value = e.progress; },
    });
    $("p-rr").value = 100;
    $("t-rr").textContent = ms(performance.now() - t0);
    $("rr-opt").hidden = false;
    if (/synthetic/i.test(rerankerUrl)) {
      $("rr-note").textContent = " — this is the synthetic test head: its scores carry no relevance meaning.";
    }
  }

  const index = await openIndex(embedder, docs);

  async function search(query, mode = $("mode").value, rerank = $("use-rr").checked && reranker) {
    const t = performance.now();
    const { ids, scores } = await index.search(query, { k: 10, mode });
    const tSearch = performance.now() - t;
    let results = Array.from(ids, (id, i) => ({ id, title: docs[id].title, text: docs[id].text, score: scores[i] }));
    let timing = `embed query + ${mode} search over ${index.size} vectors: ${ms(tSearch)}`;
    if (rerank) {
      const t2 = performance.now();
      const rr = await reranker.rerank(query, results.map((r) => docText(r)));
      results = rr.map((r) => ({ ...results[r.index], rerank: r.score }));
      timing += ` · rerank ${results.length}: ${ms(performance.now() - t2)}`;
    }
    $("timing").textContent = timing;
    $("results").innerHTML = "";
    for (const r of results) {
      const li = document.createElement("li");
      li.innerHTML = `<span class="score"></span><span class="title"></span><span class="text"></span>`;
      li.querySelector(".score").textContent = r.score.toFixed(3);
      li.querySelector(".title").textContent = r.title;
      li.querySelector(".text").textContent = r.text;
      if (r.rerank !== undefined) {
        const s = document.createElement("span");
        s.className = "rr";
        s.textContent = `cross-encoder score ${r.rerank.toFixed(3)}`;
        li.append(s);
      }
      $("results").append(li);
    }
    $("results").dataset.ranked = JSON.stringify(results);
    return { results, ms: tSearch, timing };
  }

  $("form").onsubmit = (ev) => { ev.preventDefault(); search($("query").value).catch(fail); };
  $("go").disabled = false;
  document.body.dataset.state = "ready";
  if (params.get("auto") === "1") await search($("query").value);
  return { search };
}

// ---- chat panel: independent of the search engine above (its own object and call lane).
const chatUrl = params.get("chat") ?? new URL("../models/smollm2-135m-instruct", location.href).href;
const history = [];
let generator = null;
let stopper = null;

function bubble(role, text) {
  const div = document.createElement("div");
  div.className = `msg ${role}`;
  div.textContent = text;
  $("chat-log").append(div);
  return div;
}

async function loadChat() {
  if (generator) return generator;
  $("stage-chat").hidden = false;
  const t0 = performance.now();
  generator = Generator.load(chatUrl, {
    dtype: "f16",
    progress_callback: (e) => { if (e.status === "progress") $("p-chat").value = e.progress; },
  }).then((g) => {
    $("p-chat").value = 100;
    $("t-chat").textContent = ms(performance.now() - t0);
    return g;
  }, (e) => { generator = null; throw e; });
  return generator;
}

async function chat(question, options = {}) {
  $("chat-error").textContent = "";
  $("chat-send").disabled = true;
  try {
    const g = await loadChat();
    history.push({ role: "user", content: question });
    bubble("user", question);
    const answer = bubble("assistant", "");
    stopper = new AbortController();
    $("chat-stop").disabled = false;
    const pieces = [];
    const t0 = performance.now();
    let first = null;
    const out = await g.generate(history, {
      max_new_tokens: 128, temperature: 0.7, top_p: 0.9, repetition_penalty: 1.1, seed: history.length,
      ...options,
      signal: stopper.signal,
      callback: (text) => {
        first ??= performance.now();
        pieces.push(text);
        answer.textContent += text;
      },
    });
    const n = out.tokens.length;
    const decode = n > 1 && first ? ((n - 1) * 1000) / (performance.now() - first) : 0;
    $("chat-stats").textContent = `${n} tokens (${out.finish_reason}) · first token after ${ms((first ?? performance.now()) - t0)} · ${decode.toFixed(1)} tok/s after it`;
    history.push({ role: "assistant", content: out.text });
    return { text: out.text, pieces, finish_reason: out.finish_reason, tokens: Array.from(out.tokens) };
  } finally {
    $("chat-send").disabled = false;
    $("chat-stop").disabled = true;
  }
}

$("chat-form").onsubmit = (ev) => {
  ev.preventDefault();
  const q = $("chat-input").value.trim();
  if (!q) return;
  $("chat-input").value = "";
  chat(q).catch((e) => { $("chat-error").textContent = String(e?.message ?? e); });
};
$("chat-stop").onclick = () => stopper?.abort();

const ready = main().catch((e) => { fail(e); throw e; });
window.demo = { ready, search: async (q, mode) => (await ready).search(q, mode), chat };
