// gllm-web/node: the same classes as the main entry, in Node ≥ 20 on Dawn (the `webgpu` npm
// package, Chrome's WebGPU engine). Before the first factory runs, this entry
//   1. installs Dawn as `navigator.gpu` (the `webgpu` package's globals, and the `Window`
//      global that wgpu's web backend looks for) and checks that Dawn finds an adapter;
//   2. instantiates the .wasm from the file next to the JS (fs read, bytes to `init`);
//   3. lets the loader read local models: `fetch` answers `file:` URLs from the file system
//      (Range requests included), and a path or `file://` URL given to `load` becomes one;
//   4. gives the Cache API (`cache: true`, the default) a file-system CacheStorage, in
//      $GLLM_CACHE_DIR or ~/.cache/gllm-web.
// The classes are those of the main entry (one class per kind whichever entry imports it),
// with their static factories wrapped once more by the steps above.
import fs from "node:fs";
import fsp from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import crypto from "node:crypto";
import { Readable } from "node:stream";
import { fileURLToPath, pathToFileURL } from "node:url";

import * as main from "./index.js";
import { FACTORIES } from "./factories.js";

export { FACTORIES, isWebGPUAvailable, initSync } from "./index.js";

let ready = null;

/**
 * Installs Dawn, checks for an adapter and instantiates the WebAssembly module. Called by
 * every factory; rejects with an Error naming the fix when the `webgpu` package is missing or
 * Dawn finds no adapter.
 */
export function init() {
  ready ??= setup().catch((e) => {
    ready = null;
    throw e;
  });
  return ready;
}

async function setup() {
  if (!globalThis.navigator?.gpu) {
    let webgpu;
    try {
      webgpu = await import("webgpu");
    } catch (e) {
      if (e?.code !== "ERR_MODULE_NOT_FOUND") throw e;
      throw noAdapter("gllm-web/node runs on Dawn, Chrome's WebGPU engine, from the `webgpu` package: npm install webgpu");
    }
    Object.assign(globalThis, webgpu.globals);
    // Node ≥ 21 has a read-only `navigator` getter; define the property over it.
    const nav = globalThis.navigator ?? {};
    Object.defineProperty(globalThis, "navigator", { value: nav, writable: true, configurable: true });
    Object.defineProperty(nav, "gpu", { value: webgpu.create([]), writable: true, configurable: true });
  }
  // wgpu's web backend takes the window path when a `Window` global exists.
  globalThis.Window ??= class Window {};
  const adapter = await navigator.gpu.requestAdapter();
  if (!adapter) {
    throw noAdapter("Dawn found no GPU adapter (no Vulkan, Metal or D3D12 driver it accepts). "
      + "Without a GPU, Chromium's SwiftShader Vulkan driver works: "
      + "VK_DRIVER_FILES=/usr/lib/chromium/vk_swiftshader_icd.json");
  }
  installFileFetch();
  if (!globalThis.caches) {
    globalThis.Cache = Cache;
    globalThis.CacheStorage = CacheStorage;
    globalThis.caches = new CacheStorage();
  }
  const wasm = await fsp.readFile(new URL("./wasm/gllm_web_bg.wasm", import.meta.url));
  await main.init({ wasm });
}

/** An Error named as the engine names its own adapter errors. */
function noAdapter(message) {
  const e = new Error(message);
  e.name = "NoAdapterError";
  return e;
}

/** A model given as a local path (absolute, relative or `file://`) as a `file:` URL string. */
function modelUrl(model) {
  // Not a general URL-scheme test: `C:\models` is a Windows path.
  if (typeof model !== "string" || /^(https?|file|blob|data):/i.test(model)) return model;
  return pathToFileURL(path.resolve(model)).href;
}

/** Wraps `cls`'s static factories: `init()` first, and local models as `file:` URLs. */
function withNode(cls, statics) {
  for (const name of statics) {
    const factory = cls[name];
    Object.defineProperty(cls, name, {
      value: async (...args) => {
        await init();
        if (name === "load") args = loadArgs(args);
        return factory.apply(cls, args);
      },
      writable: true,
      configurable: true,
    });
  }
  return cls;
}

/**
 * `load(model, options)` arguments with a local model as a `file:` URL. A local model is not
 * cached unless `cache` asks for it: the cache would copy the file it reads from.
 */
function loadArgs([model, options, ...rest]) {
  const url = modelUrl(model);
  const plain = options === undefined || (typeof options === "object" && options !== null && options.cache === undefined);
  if (typeof url === "string" && url.startsWith("file:") && plain) {
    options = { ...options, cache: false };
  }
  return [url, options, ...rest];
}

export const Embedder = withNode(main.Embedder, FACTORIES.Embedder);
export const Reranker = withNode(main.Reranker, FACTORIES.Reranker);
export const Generator = withNode(main.Generator, FACTORIES.Generator);
export const SearchIndex = withNode(main.SearchIndex, FACTORIES.SearchIndex);

/** Streams a weights file into GPU buffers and releases them (a cache prefetch). */
export async function streamWeights(model, options) {
  await init();
  const [url, opts] = loadArgs([model, options]);
  return main.streamWeights(url, opts);
}

/** Testing hook: destroys the GPU device (see the main entry). */
export async function __loseDeviceForTesting() {
  await init();
  return main.__loseDeviceForTesting();
}

// --- fetch of file: URLs -----------------------------------------------------------------
// Node's fetch rejects `file:` URLs. The loader sends GET requests, with `Range: bytes=A-B`
// for chunks and lengths; these answers follow an HTTP server's: 206 with Content-Range for a
// range, 200 with the file streamed otherwise, 404 for a missing file.

function installFileFetch() {
  if (globalThis.fetch.gllmFiles) return;
  const netFetch = globalThis.fetch;
  const fileFetch = (input, init) => {
    const request = input instanceof Request ? input : new Request(input, init);
    return request.url.startsWith("file:") ? readFile(request) : netFetch(input, init);
  };
  fileFetch.gllmFiles = true;
  globalThis.fetch = fileFetch;
}

async function readFile(request) {
  const file = fileURLToPath(request.url);
  let handle;
  try {
    handle = await fsp.open(file, "r");
  } catch (e) {
    if (e.code === "ENOENT" || e.code === "ENOTDIR") return new Response(null, { status: 404 });
    throw new TypeError(`fetch ${request.url}: ${e.message}`);
  }
  const { size, isFile } = await handle.stat().then((s) => ({ size: s.size, isFile: s.isFile() }));
  if (!isFile) {
    await handle.close();
    return new Response(null, { status: 404 });
  }
  const range = /^bytes=(\d+)-(\d*)$/.exec(request.headers.get("Range") ?? "");
  if (range) {
    const start = Number(range[1]);
    const end = Math.min(range[2] === "" ? size - 1 : Number(range[2]), size - 1);
    if (start >= size || end < start) {
      await handle.close();
      return new Response(null, { status: 416, headers: { "Content-Range": `bytes */${size}` } });
    }
    const body = new Uint8Array(end - start + 1);
    try {
      await handle.read(body, 0, body.length, start);
    } finally {
      await handle.close();
    }
    return new Response(body, {
      status: 206,
      headers: { "Content-Range": `bytes ${start}-${end}/${size}`, "Content-Length": String(body.length) },
    });
  }
  await handle.close();
  return new Response(Readable.toWeb(fs.createReadStream(file)), { status: 200, headers: { "Content-Length": String(size) } });
}

// --- a file-system CacheStorage ----------------------------------------------------------
// The loader's cache (src/loader/cache.rs) calls `caches.open(name)`, `caches.delete(name)`,
// and on a cache `match(url)`, `put(url, response)`, `keys()` and `delete(request)`; these
// are what is here. One folder per cache name, one `<sha256 of the URL>.bin` per entry with
// its URL in `<sha256>.url` (for `keys()`). Writes go to a temporary file renamed into place,
// so a reader never sees half an entry.

function cacheRoot() {
  const base = process.env.XDG_CACHE_HOME || path.join(os.homedir(), ".cache");
  return process.env.GLLM_CACHE_DIR || path.join(base, "gllm-web");
}

const hash = (s) => crypto.createHash("sha256").update(s).digest("hex");
const requestUrl = (r) => (r instanceof Request ? r.url : new Request(r).url);

class Cache {
  #dir;
  constructor(dir) {
    this.#dir = dir;
  }
  async match(request) {
    try {
      return new Response(await fsp.readFile(path.join(this.#dir, `${hash(requestUrl(request))}.bin`)));
    } catch (e) {
      if (e.code === "ENOENT") return undefined;
      throw e;
    }
  }
  async put(request, response) {
    const url = requestUrl(request);
    const name = path.join(this.#dir, hash(url));
    const bytes = new Uint8Array(await response.arrayBuffer());
    const tmp = `${name}.${process.pid}.${crypto.randomBytes(4).toString("hex")}.tmp`;
    await fsp.mkdir(this.#dir, { recursive: true });
    await fsp.writeFile(tmp, bytes);
    await fsp.writeFile(`${name}.url`, url);
    await fsp.rename(tmp, `${name}.bin`);
  }
  async delete(request) {
    const name = path.join(this.#dir, hash(requestUrl(request)));
    const found = await fsp.rm(`${name}.bin`).then(() => true, () => false);
    await fsp.rm(`${name}.url`, { force: true });
    return found;
  }
  async keys() {
    const names = await fsp.readdir(this.#dir).catch(() => []);
    const urls = await Promise.all(names.filter((n) => n.endsWith(".url")).map((n) => fsp.readFile(path.join(this.#dir, n), "utf8")));
    return urls.map((u) => new Request(u));
  }
}

class CacheStorage {
  #dir(name) {
    return path.join(cacheRoot(), encodeURIComponent(name));
  }
  async open(name) {
    await fsp.mkdir(this.#dir(name), { recursive: true });
    return new Cache(this.#dir(name));
  }
  async delete(name) {
    const dir = this.#dir(name);
    const found = fs.existsSync(dir);
    await fsp.rm(dir, { recursive: true, force: true });
    return found;
  }
}
