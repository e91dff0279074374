// The demo page: load the embedder with a progress bar, embed query + sentences on the GPU,
// rank sentences by cosine similarity (embeddings are L2-normalised, so a dot product).
// URL parameters: ?model=<base url>&q=<query>&auto=1 (run the search once loaded).
import init, { Embedder } from "../pkg/gllm_web.js";

const $ = (id) => document.getElementById(id);
const params = new URLSearchParams(location.search);
const modelUrl = params.get("model") ?? new URL("../models/all-MiniLM-L6-v2", location.href).href;
if (params.has("q")) $("query").value = params.get("q");

function fail(e) {
  $("error").textContent = String(e?.message ?? e);
  $("results").dataset.done = "error";
}

async function search(embedder) {
  const docs = $("docs").value.split("\n").map((s) => s.trim()).filter(Boolean);
  const query = $("query").value;
  const t0 = performance.now();
  const { data, dims } = await embedder.embed([query, ...docs]);
  const ms = performance.now() - t0;
  const d = dims[1];
  const q = data.subarray(0, d);
  const ranked = docs
    .map((text, i) => {
      const v = data.subarray((i + 1) * d, (i + 2) * d);
      let dot = 0;
      for (let j = 0; j < d; j++) dot += q[j] * v[j];
      return { text, score: dot };
    })
    .sort((a, b) => b.score - a.score);
  $("results").innerHTML = "";
  for (const r of ranked) {
    const li = document.createElement("li");
    li.innerHTML = `<span class="score">${r.score.toFixed(4)}</span>`;
    li.append(r.text);
    $("results").append(li);
  }
  $("status").textContent = `Embedded ${docs.length + 1} texts in ${ms.toFixed(0)} ms.`;
  $("results").dataset.ranked = JSON.stringify(ranked);
  $("results").dataset.done = "ok";
}

try {
  await init();
  const embedder = await Embedder.load(modelUrl, {
    progress_callback: (e) => {
      if (e.status === "progress") $("progress").value = e.progress;
      if (e.status === "ready") {
        $("progress").value = 100;
        $("status").textContent = "Model ready.";
      }
    },
  });
  $("search").disabled = false;
  $("search").onclick = () => search(embedder).catch(fail);
  if (params.get("auto") === "1") await search(embedder);
} catch (e) {
  fail(e);
}
