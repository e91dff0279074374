// Opens the consumer test's built page in headless Chromium (SwiftShader WebGPU) and checks
// what each README example logged.
//   node tests/consumer/check.mjs URL
import { chromium } from "playwright-core";

const url = process.argv[2];
const browser = await chromium.launch({
  executablePath: process.env.CHROMIUM ?? "/usr/bin/chromium",
  args: ["--no-sandbox", "--enable-unsafe-webgpu", "--enable-unsafe-swiftshader", "--use-webgpu-adapter=swiftshader",
    "--disable-quic", "--no-first-run", "--disable-background-networking", "--disable-component-update", "--disable-sync"],
});
let passed = 0, failed = 0;
const check = (name, ok, what) => {
  console.log(`${ok ? "ok  " : "FAIL"} ${name}: ${what}`);
  ok ? passed++ : failed++;
};
try {
  const page = await browser.newPage();
  page.on("console", (m) => { if (m.type() === "error") console.error("page:", m.text()); });
  page.on("pageerror", (e) => console.error("page error:", e.message));
  await page.goto(url);
  await page.waitForFunction(() => window.__examples, null, { timeout: 15 * 60 * 1000 });
  const ex = await page.evaluate(() => window.__examples);
  for (const [name, r] of Object.entries(ex)) {
    console.log(`${name} (${r.ms} ms): ${r.error ? "error: " + r.error : JSON.stringify(r.logs).slice(0, 300)}`);
  }
  const last = (name) => ex[name]?.logs.at(-1) ?? [];
  for (const name of ["embed", "search", "rerank", "worker", "generate"]) check(name, ex[name] && !ex[name].error, "ran without error");

  // embed: progress lines, then n, d and two cosines (paraphrase high, unrelated low).
  const [n, d, para, other] = last("embed");
  check("embed", ex.embed.logs.some((l) => /model\.safetensors \d+%/.test(l[0])), "progress events logged");
  check("embed", n === 3 && d === 384, `dims ${n} × ${d}`);
  check("embed", para > 0.4 && other < 0.2 && para - other > 0.3, `cosine(paraphrase) ${para?.toFixed(3)} ≫ cosine(unrelated) ${other?.toFixed(3)}`);

  // search: the sleep passage first, with a sensible score; export size.
  const [top, score] = ex.search.logs[0] ?? [];
  check("search", top === 0 && score > 0.3 && score <= 1.0001, `top hit ${top} with cosine ${score}`);
  const [size, bytes] = last("search");
  check("search", size === 3 && bytes === 3 * 384 * 4, `size ${size}, export ${bytes} bytes`);

  // rerank (the synthetic cross-encoder: structure, order and ranges, not relevance).
  const rows = ex.rerank.logs;
  const docs = ["Paris is the capital of France.", "Berlin is in Germany.", "The Eiffel Tower is in Paris."];
  const scores = rows.map((r) => Number(r[1]));
  check("rerank", rows.length === 2 && rows.every(([i, s, doc]) => Number.isInteger(i) && docs[i] === doc && Number(s) > 0 && Number(s) < 1)
    && scores[0] >= scores[1] && rows[0][0] !== rows[1][0], `top 2 of 3, best first: ${JSON.stringify(rows)}`);

  // worker: progress crossed back, search and a single-text embed from the worker.
  check("worker", ex.worker.logs.some((l) => l[0] === "loaded model.safetensors"), "progress events crossed back from the worker");
  const [wtop, wdims, isF32] = last("worker");
  check("worker", wtop === 0 && JSON.stringify(wdims) === "[1,384]" && isF32 === true, `top hit ${wtop}, dims ${JSON.stringify(wdims)}, Float32Array ${isF32}`);
  // generate: SmolLM2's golden greedy continuation, streamed pieces joining to the text.
  const [gtext, reason, joined] = last("generate");
  check("generate", gtext === JSON.stringify(" Paris.\n") && reason === "length" && joined === true, `${gtext} ${reason}, streamed pieces join to the text: ${joined}`);
} finally {
  await browser.close();
}
console.log(`consumer: ${passed} passed, ${failed} failed`);
process.exit(failed || !passed ? 1 : 0);
