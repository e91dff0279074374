// Static file server for tests and the demo: CORS, HTTP Range (single range), 404s.
//   node scripts/serve.mjs ROOT [PORT]      (default port 8777; 0: any free port, printed)
// No dependencies. Serves ROOT read-only; paths escaping ROOT get 404.
// Test hooks for the streaming loader (tests/stream.rs):
//   /_norange/PATH  serves PATH ignoring Range (200 with the whole body), like a plain CDN
//   /_flaky/PATH    the first request for each byte range of PATH of 1 MiB or more (a data
//                   chunk, not a header read) is cut off mid-body
//   /_slow/PATH     caps each response at 50 MB/s (a CDN connection); combines with the others
//   /_truncated/PATH serves PATH (if over 1 MiB: the weights, not configs) as if its last
//                    4096 bytes were missing
//   /_stats         JSON {requests, inFlight, maxInFlight} of ranged GETs, and `all`: every
//                   request other than /_stats itself (404s and whole-file GETs included); /_stats/reset
import http from "node:http";
import fs from "node:fs";
import path from "node:path";

const root = path.resolve(process.argv[2] ?? ".");
const port = Number(process.argv[3] ?? 8777);
const types = { ".html": "text/html", ".js": "text/javascript", ".mjs": "text/javascript", ".wasm": "application/wasm",
  ".json": "application/json", ".css": "text/css", ".ts": "text/plain" };

const stats = { requests: 0, inFlight: 0, maxInFlight: 0, all: 0 };
const RATE = 50e6; // bytes/s per connection for /_slow/

// Pipes `body` into `res`, at most RATE bytes/s when `slow`.
function send(body, res, slow) {
  if (!slow) return body.pipe(res);
  const t0 = Date.now();
  let sent = 0;
  body.on("data", (d) => {
    sent += d.length;
    res.write(d);
    const ahead = sent / RATE * 1000 - (Date.now() - t0);
    if (ahead > 0) { body.pause(); setTimeout(() => body.resume(), ahead); }
  });
  body.on("end", () => res.end());
  res.on("close", () => body.destroy());
}
const flakySeen = new Set();

const server = http.createServer((req, res) => {
  res.setHeader("Access-Control-Allow-Origin", "*");
  res.setHeader("Access-Control-Allow-Headers", "Range");
  res.setHeader("Access-Control-Expose-Headers", "Content-Range, Content-Length, Accept-Ranges");
  res.setHeader("Accept-Ranges", "bytes");
  let rel = decodeURIComponent(new URL(req.url, "http://x").pathname);
  if (rel !== "/_stats" && rel !== "/_stats/reset") stats.all++;
  if (req.method === "OPTIONS") { res.writeHead(204); return res.end(); }
  if (rel === "/_stats" || rel === "/_stats/reset") {
    if (rel.endsWith("reset")) Object.assign(stats, { requests: 0, inFlight: 0, maxInFlight: 0, all: 0 });
    res.writeHead(200, { "Content-Type": "application/json", "Cache-Control": "no-store" });
    return res.end(JSON.stringify(stats));
  }
  let noRange = false, flaky = false, cut = 0, slow = false;
  // Test-hook prefixes, in any order.
  for (let hit = true; hit;) {
    hit = false;
    for (const [p, set] of [["/_slow/", () => { slow = true; }], ["/_norange/", () => { noRange = true; }],
      ["/_flaky/", () => { flaky = true; }], ["/_truncated/", () => { cut = 4096; }]]) {
      if (rel.startsWith(p)) { set(); rel = rel.slice(p.length - 1); hit = true; }
    }
  }
  let file = path.join(root, rel);
  if (!file.startsWith(root)) { res.writeHead(404); return res.end(); }
  if (fs.existsSync(file) && fs.statSync(file).isDirectory()) file = path.join(file, "index.html");
  if (!fs.existsSync(file) || !fs.statSync(file).isFile()) { res.writeHead(404); return res.end("not found"); }
  const full = fs.statSync(file).size;
  const size = full > (1 << 20) ? full - cut : full;
  const type = types[path.extname(file)] ?? "application/octet-stream";
  const m = noRange ? null : /^bytes=(\d*)-(\d*)$/.exec(req.headers.range ?? "");
  if (m && (m[1] !== "" || m[2] !== "")) {
    let start = m[1] === "" ? Math.max(0, size - Number(m[2])) : Number(m[1]);
    let end = m[1] === "" || m[2] === "" ? size - 1 : Math.min(Number(m[2]), size - 1);
    if (start > end || start >= size) {
      res.writeHead(416, { "Content-Range": `bytes */${size}` });
      return res.end();
    }
    res.writeHead(206, { "Content-Type": type, "Content-Length": end - start + 1, "Content-Range": `bytes ${start}-${end}/${size}` });
    if (req.method === "HEAD") return res.end();
    const key = `${file}:${start}-${end}`;
    if (flaky && end - start + 1 >= (1 << 20) && !flakySeen.has(key)) {
      flakySeen.add(key);  // send half the range, then drop the connection
      const half = fs.createReadStream(file, { start, end: start + Math.floor((end - start + 1) / 2) - 1 });
      half.on("data", (d) => res.write(d));
      half.on("end", () => setTimeout(() => res.destroy(), 20));
      return;
    }
    stats.requests++; stats.inFlight++; stats.maxInFlight = Math.max(stats.maxInFlight, stats.inFlight);
    res.on("close", () => { stats.inFlight--; });
    const body = fs.createReadStream(file, { start, end });
    // Hold each ranged response briefly, as a network would, so overlap is observable.
    return setTimeout(() => send(body, res, slow), 30);
  }
  res.writeHead(200, { "Content-Type": type, "Content-Length": size });
  if (req.method === "HEAD" || size === 0) return res.end();
  send(fs.createReadStream(file, { start: 0, end: size - 1 }), res, slow);
}).listen(port, "127.0.0.1", () => console.log(`serving ${root} on http://127.0.0.1:${server.address().port}`));
