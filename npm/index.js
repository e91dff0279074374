// gllm-web: the package entry. The classes are the wasm-bindgen classes of ./wasm/ as they
// are (their TypeScript comes from the same Rust declarations, see index.d.ts); the only
// addition is that each static factory first instantiates the WebAssembly module, so no
// `init()` call is needed.
import initWasm, * as wasm from "./wasm/gllm_web.js";

import { FACTORIES } from "./factories.js";

export { initSync } from "./wasm/gllm_web.js";

let ready = null;

/**
 * Instantiates the WebAssembly module. Called by every factory, so users rarely need it;
 * pass `{ wasm: url | Response | BufferSource | WebAssembly.Module }` to load the .wasm
 * from somewhere other than next to this file.
 */
export function init(options = {}) {
  ready ??= initWasm(options.wasm === undefined ? undefined : { module_or_path: options.wasm }).catch((e) => {
    ready = null;
    throw e;
  });
  return ready;
}

/** Whether this page or worker exposes WebGPU (`navigator.gpu`). */
export function isWebGPUAvailable() {
  return typeof navigator !== "undefined" && !!navigator.gpu;
}

/** `cls` with each of its static factories `statics` awaiting `init()` first. */
function withInit(cls, statics) {
  for (const name of statics) {
    const factory = cls[name];
    Object.defineProperty(cls, name, {
      value: async (...args) => {
        await init();
        return factory.apply(cls, args);
      },
      writable: true,
      configurable: true,
    });
  }
  return cls;
}

export { FACTORIES };

export const Embedder = withInit(wasm.Embedder, FACTORIES.Embedder);
export const Reranker = withInit(wasm.Reranker, FACTORIES.Reranker);
export const Generator = withInit(wasm.Generator, FACTORIES.Generator);
export const SearchIndex = withInit(wasm.SearchIndex, FACTORIES.SearchIndex);

/** Streams a weights file into GPU buffers and releases them (a cache prefetch). */
export async function streamWeights(model, options) {
  await init();
  return wasm.streamWeights(model, options);
}

/**
 * Testing hook: destroys the GPU device (`GPUDevice.destroy()`), as a driver reset would.
 * Objects loaded on it reject their next call with a `DeviceLostError`; the next
 * `load`/`create` acquires a new device. Resolves to false when no device was acquired yet.
 */
export async function __loseDeviceForTesting() {
  await init();
  return wasm.__loseDeviceForTesting();
}
