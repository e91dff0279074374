// Type declarations for "gllm-web/node": the main entry's classes, options and results as
// they are (the same declarations), with the Node entry's own `init`.
export * from "./index.js";

/** Installs Dawn (the `webgpu` package) as `navigator.gpu`, checks for an adapter and
 *  instantiates the WebAssembly module from the file next to the package's JS. Every factory
 *  calls it, so it is optional. */
export function init(): Promise<void>;
