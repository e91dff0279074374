// Drives the demo page in headless Chromium (Debian's, through playwright-core) and prints
// the ranked results.   node scripts/demo.mjs URL
import { chromium } from "playwright-core";

const url = process.argv[2];
const browser = await chromium.launch({
  executablePath: process.env.CHROMIUM ?? "/usr/bin/chromium",
  args: ["--no-sandbox", "--enable-unsafe-webgpu", "--enable-unsafe-swiftshader", "--use-webgpu-adapter=swiftshader",
    "--disable-quic", "--no-first-run", "--disable-background-networking", "--disable-component-update", "--disable-sync"],
});
try {
  const page = await browser.newPage();
  page.on("console", (m) => { if (m.type() === "error") console.error("page:", m.text()); });
  await page.goto(url);
  await page.waitForSelector("#results[data-done]", { timeout: 15 * 60 * 1000 });
  const done = await page.$eval("#results", (el) => el.dataset.done);
  if (done !== "ok") throw new Error(await page.$eval("#error", (el) => el.textContent));
  const query = await page.$eval("#query", (el) => el.value);
  const status = await page.$eval("#status", (el) => el.textContent);
  const ranked = JSON.parse(await page.$eval("#results", (el) => el.dataset.ranked));
  console.log(`query: ${query}`);
  ranked.forEach((r, i) => console.log(`${String(i + 1).padStart(2)}. ${r.score.toFixed(4)}  ${r.text}`));
  console.log(status);
} finally {
  await browser.close();
}
