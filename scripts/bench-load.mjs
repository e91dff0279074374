// The load benchmark of issue 15 (www/bench/load.html) in headless Chromium (Debian's, WebGPU
// on SwiftShader unless CHROMIUM_ARGS says otherwise): serves the repository with
// scripts/serve.mjs, loads the Qwen2.5-Coder-0.5B GGUF through the server's 50 MB/s-per-connection
// /_slow/ prefix, and prints the page's JSON and a markdown table.
//   bash scripts/pack.sh                       (once: the npm package in target/npm/package/)
//   node scripts/bench-load.mjs [QUERY]
// QUERY is the page's query string; the default is the GGUF with the network-only rows and a
// full Generator.load: base=/_slow/models/gguf&file=qwen2.5-coder-0.5b-instruct.gguf&fetch=1&generator=1
// PORT (default 8791) picks the server's port. Opt-in: the GGUF is 491 MB, not in CI.
import { spawn } from "node:child_process";
import fs from "node:fs";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { chromium } from "playwright-core";

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "..");
const query = process.argv[2] ?? "base=/_slow/models/gguf&file=qwen2.5-coder-0.5b-instruct.gguf&fetch=1&generator=1";
const port = Number(process.env.PORT ?? 8791);
const q = new URLSearchParams(query);
const base = q.get("base") ?? "/_slow/target/bench";
const local = path.join(root, base.replace(/^\/(_\w+\/)*/, ""), q.get("file") ?? "big.safetensors");
if (base.startsWith("/") && !fs.existsSync(local)) throw new Error(`${local} is missing (scripts/fetch-models.sh fetches the GGUF into models/)`);
if (!q.has("pkg") && !fs.existsSync(path.join(root, "target/npm/package/index.js"))) {
  throw new Error("target/npm/package/ is missing: run `bash scripts/pack.sh` first");
}

const server = spawn(process.execPath, [path.join(root, "scripts/serve.mjs"), root, String(port)], { stdio: ["ignore", "pipe", "inherit"] });
await new Promise((resolve, reject) => {
  server.stdout.once("data", resolve);
  server.once("exit", (code) => reject(new Error(`serve.mjs exited with ${code}`)));
});
const args = process.env.CHROMIUM_ARGS?.split(" ") ?? ["--no-sandbox", "--enable-unsafe-webgpu", "--enable-unsafe-swiftshader",
  "--use-webgpu-adapter=swiftshader", "--disable-quic", "--no-first-run", "--disable-background-networking",
  "--disable-component-update", "--disable-sync"];
const browser = await chromium.launch({ executablePath: process.env.CHROMIUM ?? "/usr/bin/chromium", args });
let result;
try {
  const page = await browser.newPage();
  page.setDefaultTimeout(60 * 60 * 1000);
  page.on("console", (m) => {
    if (m.type() === "error" || m.text().startsWith("row ")) console.error(`page: ${m.text()}`);
  });
  await page.goto(`http://127.0.0.1:${port}/www/bench/load.html?${query}`);
  await page.waitForSelector("#out[data-json]");
  result = JSON.parse(await page.$eval("#out", (el) => el.dataset.json));
} finally {
  await browser.close();
  server.kill();
}
console.log(JSON.stringify(result, null, 2));
if (result.error) process.exit(1);

const MB = (b) => (b / 1e6).toFixed(1);
console.log(`\n${result.date.slice(0, 10)} · ${result.adapter} · ${result.file} (${MB(result.rows.find((r) => r.name.startsWith("streamWeights")).bytes)} MB of tensors) · ` +
  `${result.chunk_size / (1 << 20)} MiB chunks · wasm heap at start ${result.heap_start_MiB} MiB\n`);
console.log("| load | seconds | MB/s | server requests | max in flight | wasm heap before → after (MiB) |");
console.log("|---|---|---|---|---|---|");
for (const r of result.rows) {
  console.log(`| ${r.name} | ${r.seconds} | ${r.MBps} | ${r.server_requests} | ${r.max_in_flight} | ${r.heap_before_MiB} → ${r.heap_after_MiB} |`);
}
if (result.parallel_over_sequential) console.log(`\nparallel over sequential: ${result.parallel_over_sequential}×`);
