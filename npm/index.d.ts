/// <reference lib="esnext.disposable" />
// Type declarations for "gllm-web" (the main-thread entry). The classes, their options and
// results are wasm-bindgen's declarations, generated from the Rust code that parses the
// options (src/web/options.rs), so they cannot drift from what the code reads.
// (The reference above: wasm-bindgen's classes declare `[Symbol.dispose]()`, which a project
// whose `lib` stops at es2022 would not know; with it such a project type-checks.)
export * from "./wasm/gllm_web.js";

export interface InitOptions {
  /** Where to load gllm_web_bg.wasm from (default: next to the package's JS, which Vite and
   *  webpack resolve and copy on their own). */
  wasm?: string | URL | Response | BufferSource | WebAssembly.Module;
}

/** Instantiates the WebAssembly module; every factory calls it, so it is optional. */
export function init(options?: InitOptions): Promise<unknown>;

/** Whether this page or worker exposes WebGPU (`navigator.gpu`). */
export function isWebGPUAvailable(): boolean;

/** Every class and its static factories. */
export const FACTORIES: { readonly [cls: string]: readonly string[] };

/** Testing hook: destroys the GPU device as a driver reset would. */
export function __loseDeviceForTesting(): Promise<boolean>;
