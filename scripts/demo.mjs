// Drives the demo page in headless Chromium (Debian's, through playwright-core).
//   node scripts/demo.mjs URL [--test] [--screenshot FILE] [query...]
// Prints the ranked results of each query. With --test, checks queries with known answers
// (an expected passage must rank in the top 3) and the chat panel (a greedy answer that
// streams in pieces and names Paris), and exits non-zero if one fails. With --multilingual
// (for a multilingual embedder: the page URL carries model=…/embeddinggemma-300m), --test
// checks queries in six other languages against the English passages instead (top 3, exact
// search; their answers are among the first 64 passages, so &limit=64 also works), without
// the chat.
import { chromium } from "playwright-core";

const args = process.argv.slice(2);
const url = args.shift();
const test = args.includes("--test");
// --no-webgpu: a browser without WebGPU (no flags, navigator.gpu hidden): search runs on the
// CPU backend, and the chat (a Generator needs WebGPU) must fail with a clear error.
const noWebGPU = args.includes("--no-webgpu");
const multilingual = args.includes("--multilingual");
const shotAt = args.indexOf("--screenshot");
const shot = shotAt >= 0 ? args[shotAt + 1] : null;
const queries = args.filter((a, i) => !a.startsWith("--") && i !== shotAt + 1);
// [query, passages that answer it]
const known = [
  ["pause the program for a few seconds", ["time.sleep"]],
  ["square root of a number", ["math.sqrt", "math.isqrt"]],
  ["turn a JSON string into Python objects", ["json.loads", "json.load"]],
  ["combine parts of a file path", ["os.path.join"]],
  ["randomly reorder the items of a list", ["random.shuffle"]],
  ["encode binary data as base64 text", ["base64.b64encode", "base64.encodebytes", "base64.standard_b64encode"]],
];

// Queries in German, French, Spanish, Italian, Japanese and Portuguese whose answers are
// among the first 64 (English) passages.
const crossLanguage = [
  ["Quadratwurzel einer Zahl berechnen", ["math.sqrt"]],
  ["vérifier si un fichier existe", ["os.path.exists", "os.path.isfile"]],
  ["borrar un directorio de forma recursiva", ["shutil.rmtree"]],
  ["calcolare il massimo comune divisore", ["math.gcd"]],
  ["ランダムなUUIDを生成する", ["uuid.uuid4"]],
  ["converter um ângulo de radianos para graus", ["math.degrees"]],
];

const webgpuFlags = ["--enable-unsafe-webgpu", "--enable-unsafe-swiftshader", "--use-webgpu-adapter=swiftshader"];
const browser = await chromium.launch({
  executablePath: process.env.CHROMIUM ?? "/usr/bin/chromium",
  args: ["--no-sandbox", ...(noWebGPU ? [] : webgpuFlags),
    "--disable-quic", "--no-first-run", "--disable-background-networking", "--disable-component-update", "--disable-sync"],
});
let failed = 0;
try {
  const page = await browser.newPage({ viewport: { width: 1000, height: 1100 } });
  page.on("console", (m) => { if (m.type() === "error") console.error("page:", m.text()); });
  page.setDefaultTimeout(20 * 60 * 1000);
  if (noWebGPU) {
    await page.addInitScript(() => Object.defineProperty(Navigator.prototype, "gpu", { get: () => undefined, configurable: true }));
  }
  await page.goto(url);
  await page.waitForFunction(() => document.body.dataset.state);
  if (await page.evaluate(() => document.body.dataset.state) !== "ready") {
    throw new Error(await page.$eval("#error", (el) => el.textContent));
  }
  const stages = await page.$$eval(".stage:not([hidden])", (els) => els.map((e) => e.innerText.replace(/\s+/g, " ")));
  console.log(stages.join("\n"));
  const device = await page.evaluate(() => document.body.dataset.device);
  if (noWebGPU) {
    const ok = device === "cpu";
    failed += ok ? 0 : 1;
    console.log(`${ok ? "ok  " : "FAIL"} [no WebGPU] the search runs on the ${device} backend`);
  }
  const run = async (q, mode = "exact") => page.evaluate(([q, mode]) => window.demo.search(q, mode), [q, mode]);
  for (const q of queries.length ? queries : test ? [] : [await page.$eval("#query", (el) => el.value)]) {
    const { results, timing } = await run(q);
    console.log(`\nquery: ${q}\n${timing}`);
    results.forEach((r, i) => console.log(`${String(i + 1).padStart(2)}. ${r.score.toFixed(4)}  ${r.title}: ${r.text.slice(0, 80)}`));
  }
  if (test && multilingual) {
    for (const [q, want] of crossLanguage) {
      const { results, timing } = await run(q, "exact");
      const rank = results.findIndex((r) => want.includes(r.title)) + 1;
      const ok = rank >= 1 && rank <= 3;
      failed += ok ? 0 : 1;
      console.log(`${ok ? "ok  " : "FAIL"} [cross-language] "${q}" → ${want.join(" | ")} at rank ${rank || "-"} (top: ${results[0].title} ${results[0].score.toFixed(3)}; ${timing})`);
    }
  } else if (test) {
    for (const mode of ["exact", "binary"]) {
      for (const [q, want] of known) {
        const { results, timing } = await run(q, mode);
        const rank = results.findIndex((r) => want.includes(r.title)) + 1;
        const ok = rank >= 1 && rank <= 3;
        failed += ok ? 0 : 1;
        console.log(`${ok ? "ok  " : "FAIL"} [${mode}] "${q}" → ${want.join(" | ")} at rank ${rank || "-"} (top: ${results[0].title}; ${timing})`);
      }
    }
  }
  if (test && noWebGPU) {
    const e = await page.evaluate(() => window.demo.chat("What is the capital of France?").then(() => null, (e) => `${e.name}: ${e.message}`));
    const ok = /^NoAdapterError: .*WebGPU is unavailable/.test(e ?? "");
    failed += ok ? 0 : 1;
    console.log(`${ok ? "ok  " : "FAIL"} [no WebGPU] the chat panel fails clearly: ${e}`);
  } else if (test && !multilingual) {
    // Chat panel: SmolLM2-135M-Instruct, greedy, so the answer is the golden's.
    const t = Date.now();
    const r = await page.evaluate(() => window.demo.chat("What is the capital of France?", { temperature: 0, max_new_tokens: 16 }));
    const shown = await page.$eval("#chat-log .msg.assistant:last-child", (el) => el.textContent);
    const ok = /Paris/.test(r.text) && r.pieces.length >= 2 && r.pieces.join("") === r.text && shown === r.text && r.finish_reason === "eos";
    failed += ok ? 0 : 1;
    console.log(`${ok ? "ok  " : "FAIL"} [chat] ${JSON.stringify(r.text)} streamed in ${r.pieces.length} pieces, ${r.finish_reason} (${((Date.now() - t) / 1000).toFixed(0)} s with the model load)`);
  }
  if (shot) {
    await run(known[0][0]);
    await page.screenshot({ path: shot, fullPage: true });
    console.log(`screenshot: ${shot}`);
  }
} finally {
  await browser.close();
}
process.exit(failed ? 1 : 0);
