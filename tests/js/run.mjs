// Runs tests/js/api.html in headless Chromium (SwiftShader WebGPU): the JS API's
// concurrency, lifetime, device-loss, no-WebGPU and worker-mode tests.
//   node tests/js/run.mjs ORIGIN      (a server of the repository root, with models/ and
//                                      target/npm/package from scripts/pack.sh)
import { chromium } from "playwright-core";

const origin = process.argv[2];
const quiet = ["--no-sandbox", "--disable-quic", "--no-first-run", "--disable-background-networking", "--disable-component-update", "--disable-sync"];
const launch = (webgpu) => chromium.launch({
  executablePath: process.env.CHROMIUM ?? "/usr/bin/chromium",
  args: webgpu ? [...quiet, "--enable-unsafe-webgpu", "--enable-unsafe-swiftshader", "--use-webgpu-adapter=swiftshader"] : quiet,
});
const all = [];
for (const suite of ["nogpu", "main"]) {
  // The no-WebGPU suite gets a browser without the WebGPU flags (and navigator.gpu hidden).
  const browser = await launch(suite === "main");
  try {
    const page = await browser.newPage();
    page.on("console", (m) => console.log(`[${suite}] ${m.text()}`));
    page.on("pageerror", (e) => console.error(`[${suite}] page error: ${e.message}`));
    if (suite === "nogpu") {
      await page.addInitScript(() => Object.defineProperty(Navigator.prototype, "gpu", { get: () => undefined, configurable: true }));
    }
    await page.goto(`${origin}/tests/js/api.html?suite=${suite}`);
    await page.waitForFunction(() => window.__results, null, { timeout: 20 * 60 * 1000 });
    all.push(...await page.evaluate(() => window.__results));
  } finally {
    await browser.close();
  }
}
const failed = all.filter((r) => !r.ok).length;
console.log(`js api: ${all.length - failed} passed, ${failed} failed`);
process.exit(failed || all.length === 0 ? 1 : 0);
