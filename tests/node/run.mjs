// The Node runtime test: the packed package's `gllm-web/node` entry on Dawn (the `webgpu`
// npm package), in CI over Chromium's SwiftShader Vulkan driver. Run by scripts/node-test.sh
// from a temporary project where the tarball and webgpu are installed and `models` links to
// the repository's models:
//   node run.mjs REPO [README_EXAMPLES_DIR]
// Checks embed parity with the MiniLM goldens (models loaded from a local path), the first
// greedy tokens of SmolLM2 Q4_1 (a GGUF by relative path), a SearchIndex search, the
// file-system cache (an HTTP load, then a second one with the server stopped), the errors for
// a missing model and a missing driver, and each Node example of the package README.
import fs from "node:fs";
import os from "node:os";
import { once } from "node:events";
import net from "node:net";
import { spawn, spawnSync } from "node:child_process";
import path from "node:path";

import { Embedder, Generator, SearchIndex } from "gllm-web/node";

const [repo, examples] = process.argv.slice(2);
const golden = (name) => JSON.parse(fs.readFileSync(path.join(repo, "tests/goldens", name), "utf8"));
let passed = 0, failed = 0;
const check = (name, ok, what) => {
  console.log(`${ok ? "ok  " : "FAIL"} ${name}: ${what}`);
  ok ? passed++ : failed++;
};
const time = async (name, f) => {
  const t0 = performance.now();
  try {
    return await f();
  } finally {
    console.log(`     ${name}: ${((performance.now() - t0) / 1000).toFixed(1)} s`);
  }
};
const cosine = (a, b) => {
  let ab = 0, aa = 0, bb = 0;
  for (let i = 0; i < a.length; i++) (ab += a[i] * b[i]), (aa += a[i] * a[i]), (bb += b[i] * b[i]);
  return ab / Math.sqrt(aa * bb);
};

/** A TCP port free on 127.0.0.1 now. */
const freePort = () => new Promise((resolve) => {
  const srv = net.createServer().listen(0, "127.0.0.1", () => {
    const { port } = srv.address();
    srv.close(() => resolve(port));
  });
});

const cacheDir = fs.mkdtempSync(path.join(os.tmpdir(), "gllm-cache-"));
process.env.GLLM_CACHE_DIR = cacheDir;
try {
  // Embed: a relative local path, the goldens' sentences, cosine against sentence-transformers.
  const g = golden("all-minilm-l6-v2.json");
  const embedder = await time("load MiniLM", () => Embedder.load("./models/all-MiniLM-L6-v2"));
  const { data, dims } = await time("embed 4", () => embedder.embed(g.sentences.map((s) => s.text)));
  check("embed", dims[0] === 4 && dims[1] === 384, `dims ${JSON.stringify(dims)}`);
  const cos = g.sentences.map((s, i) => cosine(data.subarray(i * 384, (i + 1) * 384), s.embedding));
  check("embed", cos.every((c) => c >= 0.9999), `cosine with the goldens ${cos.map((c) => c.toFixed(6)).join(", ")} (≥ 0.9999)`);

  // Search over the goldens' sentences: each sentence finds itself, a paraphrase its pair.
  const index = await SearchIndex.create(embedder.dim);
  index.useEmbedder(embedder);
  await index.add(g.sentences.map((s) => s.text));
  const { ids, scores } = await time("search", () => index.search("a speedy fox jumped over a tired dog", { k: 2 }));
  check("search", ids.length === 2 && [0, 1].includes(ids[0]) && [0, 1].includes(ids[1]) && scores[0] > 0.5,
    `top hits ${Array.from(ids)} (the two fox sentences), scores ${Array.from(scores).map((s) => s.toFixed(3))}`);
  await index.dispose();
  await embedder.dispose();

  // The file-system cache (`cache` default on) over HTTP: a first load stores every read in
  // GLLM_CACHE_DIR; with the server stopped, a second load is served from there alone and
  // gives the same vector. The local loads above stored nothing (local models skip the cache).
  const local = fs.readdirSync(cacheDir).length;
  const port = await freePort();
  const server = spawn(process.execPath, [path.join(repo, "scripts/serve.mjs"), "models", String(port)], { stdio: ["ignore", "pipe", "inherit"] });
  try {
    await new Promise((resolve, reject) => {
      server.stdout.on("data", (d) => /^serving/m.test(String(d)) && resolve());
      server.on("exit", () => reject(new Error("scripts/serve.mjs exited")));
    });
    const vectors = [];
    for (const warm of [false, true]) {
      if (warm) {
        server.kill();
        await once(server, "exit");
      }
      const e = await time(`load MiniLM over HTTP, cache ${warm ? "warm, server stopped" : "cold"}`,
        () => Embedder.load(`http://127.0.0.1:${port}/all-MiniLM-L6-v2`));
      vectors.push((await e.embed(g.sentences[0].text)).data);
      await e.dispose();
    }
    const entries = fs.readdirSync(path.join(cacheDir, "gllm-web")).filter((f) => f.endsWith(".bin")).length;
    const [cold, warm] = vectors.map((v) => cosine(v, g.sentences[0].embedding));
    check("cache", local === 0 && entries > 3 && cold >= 0.9999 && warm >= 0.9999,
      `${local} entries after the local loads, ${entries} after the HTTP load; cosine with the golden cold ${cold.toFixed(6)}, warm ${warm.toFixed(6)}`);
  } finally {
    server.kill();
    fs.rmSync(cacheDir, { recursive: true, force: true });
  }

  // Generate: the first 3 greedy tokens of the golden case "capital".
  const sg = golden("smollm2-135m-instruct-q4_1.json");
  const c = sg.cases.find((c) => c.name === "capital");
  const want = c.greedy_new_ids.slice(0, 3);
  const generator = await time("load SmolLM2 Q4_1 GGUF", () => Generator.load("./models/gguf/SmolLM2-135M-Instruct.Q4_1.gguf"));
  const out = await time("generate 3", () => generator.generate(c.prompt, { max_new_tokens: 3 }));
  check("generate", JSON.stringify(Array.from(out.tokens)) === JSON.stringify(want),
    `tokens ${JSON.stringify(Array.from(out.tokens))} (golden ${JSON.stringify(want)}), text ${JSON.stringify(out.text)}`);
  await generator.dispose();

  // A clear error for a missing local model.
  const missing = await Embedder.load("./models/no-such-model").then(() => null, (e) => e);
  check("errors", missing && /no-such-model/.test(missing.message), `missing local model: ${missing?.name}: ${missing?.message}`);

  // No adapter (a Vulkan driver list naming no driver): a clear NoAdapterError.
  const child = spawnSync(process.execPath, ["--input-type=module", "-e",
    `import { Embedder } from "gllm-web/node"; await Embedder.load("./models/all-MiniLM-L6-v2").catch((e) => console.log(e.name + ": " + e.message));`],
    { env: { ...process.env, VK_DRIVER_FILES: "/nonexistent/icd.json" }, encoding: "utf8", timeout: 60000 });
  check("errors", /^NoAdapterError: Dawn found no GPU adapter/m.test(child.stdout), `without a driver: ${child.stdout.trim()}`);

  // The package README's Node examples, as written (tests/consumer/extract.mjs --node).
  for (const file of examples ? fs.readdirSync(examples).filter((f) => f.endsWith(".mjs")) : []) {
    const logs = [];
    let error = null;
    await time(`README example ${file}`, async () => {
      const log = console.log;
      console.log = (...args) => logs.push(args);
      await import(path.resolve(examples, file)).catch((e) => { error = e; }).finally(() => { console.log = log; });
    });
    check(`README ${file}`, !error, error ? String(error?.stack ?? error) : `logged ${JSON.stringify(logs)}`);
    if (file === "node.mjs" && !error) {
      const [d, text] = logs.at(-1) ?? [];
      check("README node.mjs", JSON.stringify(d) === "[1,384]" && text === JSON.stringify(" Paris.\n"), `dims ${JSON.stringify(d)}, text ${text}`);
    }
  }
} catch (e) {
  check("run", false, e?.stack ?? String(e));
}
console.log(`node: ${passed} passed, ${failed} failed`);
process.exit(failed || !passed ? 1 : 0);
