// The load benchmark of issue 15 (www/bench/load.html) in headless Chromium (Debian's, WebGPU
// on SwiftShader unless CHROMIUM_ARGS says otherwise): serves the repository with
// scripts/serve.mjs, loads the Qwen2.5-Coder-0.5B GGUF through the server's 50 MB/s-per-connection
// /_slow/ prefix, and prints the page's JSON and a markdown table.
//   bash scripts/pack.sh                       (once: the npm package in target/npm/package/)
//   node scripts/bench-load.mjs [QUERY...]
// Each QUERY is the page's query string, run in a fresh browser context (so each page's wasm
// heap starts anew). The default is two pages on the GGUF: the network alone and streamWeights
// (`GGUF&fetch=1`), then Generator.load (`GGUF&stream=0&generator=1`), where GGUF is
// base=/_slow/models/gguf&file=qwen2.5-coder-0.5b-instruct.gguf
// PORT picks the server's port (default: any free one). Opt-in: the GGUF is 491 MB, not in CI.
import { spawn } from "node:child_process";
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { chromium } from "playwright-core";

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "..");
const GGUF = "base=/_slow/models/gguf&file=qwen2.5-coder-0.5b-instruct.gguf";
const queries = process.argv.length > 2 ? process.argv.slice(2) : [`${GGUF}&fetch=1`, `${GGUF}&stream=0&generator=1`];
let port = Number(process.env.PORT ?? 0);
for (const query of queries) {
  const q = new URLSearchParams(query);
  const base = q.get("base") ?? "/_slow/target/bench";
  const local = path.join(root, base.replace(/^\/(_\w+\/)*/, ""), q.get("file") ?? "big.safetensors");
  if (base.startsWith("/") && !fs.existsSync(local)) throw new Error(`${local} is missing (GLLM_FETCH_QWEN=1 bash scripts/fetch-models.sh fetches the GGUF into models/)`);
  if (!q.has("pkg") && !fs.existsSync(path.join(root, "target/npm/package/index.js"))) {
    throw new Error("target/npm/package/ is missing: run `bash scripts/pack.sh` first");
  }
}

const server = spawn(process.execPath, [path.join(root, "scripts/serve.mjs"), root, String(port)], { stdio: ["ignore", "pipe", "inherit"] });
await new Promise((resolve, reject) => {
  server.stdout.once("data", (line) => {
    port = Number(/:(\d+)\s*$/.exec(String(line))[1]);
    resolve();
  });
  server.once("exit", (code) => reject(new Error(`serve.mjs exited with ${code}`)));
});
const args = process.env.CHROMIUM_ARGS?.split(" ") ?? ["--no-sandbox", "--enable-unsafe-webgpu", "--enable-unsafe-swiftshader",
  "--use-webgpu-adapter=swiftshader", "--disable-quic", "--no-first-run", "--disable-background-networking",
  "--disable-component-update", "--disable-sync"];
const load0 = os.loadavg()[0];
const browser = await chromium.launch({ executablePath: process.env.CHROMIUM ?? "/usr/bin/chromium", args });
const results = [];
try {
  for (const query of queries) {
    const context = await browser.newContext();
    const page = await context.newPage();
    page.setDefaultTimeout(60 * 60 * 1000);
    page.on("console", (m) => {
      if (m.type() === "error" || m.text().startsWith("row ")) console.error(`page: ${m.text()}`);
    });
    await page.goto(`http://127.0.0.1:${port}/www/bench/load.html?${query}`);
    await page.waitForSelector("#out[data-json]");
    results.push({ query, ...JSON.parse(await page.$eval("#out", (el) => el.dataset.json)) });
    await context.close();
  }
} finally {
  await browser.close();
  server.kill();
}
const loadavg = [load0, os.loadavg()[0]].map((l) => +l.toFixed(1));
console.log(JSON.stringify({ loadavg, cpus: os.cpus().length, results }, null, 2));
if (results.some((r) => r.error)) process.exit(1);

const first = results[0];
console.log(`\n${first.date.slice(0, 10)} · ${first.adapter} · ${first.file} · ${first.chunk_size / (1 << 20)} MiB chunks · ` +
  `${os.cpus().length} CPUs, load average ${loadavg[0]} before, ${loadavg[1]} after\n`);
console.log("| page | load | seconds | MB/s | server requests | max in flight | wasm heap before → after (MiB) |");
console.log("|---|---|---|---|---|---|---|");
results.forEach((result, i) => {
  for (const r of result.rows) {
    console.log(`| ${i + 1} | ${r.name} | ${r.seconds} | ${r.MBps} | ${r.server_requests} | ${r.max_in_flight} | ${r.heap_before_MiB} → ${r.heap_after_MiB} |`);
  }
});
for (const [i, r] of results.entries()) {
  if (r.parallel_over_sequential) console.log(`\npage ${i + 1}: streamWeights parallel over sequential ${r.parallel_over_sequential}×`);
  if (r.generator_parallel_over_sequential) console.log(`\npage ${i + 1}: Generator.load parallel over sequential ${r.generator_parallel_over_sequential}×`);
}
