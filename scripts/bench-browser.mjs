// Runs a benchmark page in headless Chromium (Debian's, WebGPU on SwiftShader; with
// BENCH_WEBGPU=0 without the WebGPU flags, a browser with no WebGPU adapter, for the CPU
// comparison) and prints its JSON result (#out[data-json]).
//   [BENCH_WEBGPU=0] node scripts/bench-browser.mjs URL
import { chromium } from "playwright-core";

const webgpu = process.env.BENCH_WEBGPU !== "0";
const browser = await chromium.launch({
  executablePath: process.env.CHROMIUM ?? "/usr/bin/chromium",
  args: ["--no-sandbox",
    ...(webgpu ? ["--enable-unsafe-webgpu", "--enable-unsafe-swiftshader", "--use-webgpu-adapter=swiftshader"] : []),
    "--disable-quic", "--no-first-run", "--disable-background-networking", "--disable-component-update", "--disable-sync"],
});
try {
  const page = await browser.newPage();
  page.setDefaultTimeout(60 * 60 * 1000);
  page.on("console", (m) => { if (m.type() === "error") console.error("page:", m.text()); });
  await page.goto(process.argv[2]);
  await page.waitForSelector("#out[data-json]");
  console.log(JSON.stringify(JSON.parse(await page.$eval("#out", (el) => el.dataset.json)), null, 2));
} finally {
  await browser.close();
}
