// Type declarations for "gllm-web/worker": the API of "gllm-web" with the engine in a
// dedicated worker. Results are the same types (typed arrays are transferred to the page).
import type { Embedder as PageEmbedder, SearchIndex as PageSearchIndex } from "./index.js";

export type {
  ProgressEvent,
  EmbedderLoadOptions,
  RerankerLoadOptions,
  EmbedResult,
  RerankOptions,
  RerankResult,
  SearchOptions,
  SearchResult,
  IndexOptions,
  GeneratorLoadOptions,
  ChatMessage,
  GenerateOptions,
  GenerateResult,
} from "./index.js";
// Same API in the worker: the callback and the AbortSignal of `generate` are forwarded.
export { Reranker, Generator, isWebGPUAvailable, __loseDeviceForTesting } from "./index.js";

export class Embedder {
  #private;
  private constructor();
  static load(model: string, options?: import("./index.js").EmbedderLoadOptions): Promise<Embedder>;
  embed(texts: string | string[]): ReturnType<PageEmbedder["embed"]>;
  readonly dim: number;
  dispose(): Promise<void>;
}

export class SearchIndex {
  #private;
  private constructor();
  static create(dim: number, options?: import("./index.js").IndexOptions): Promise<SearchIndex>;
  static import(bytes: Uint8Array, dim: number): Promise<SearchIndex>;
  /** Resolves once the worker attached the embedder; calls made after it queue behind it. */
  useEmbedder(embedder: Embedder): Promise<void>;
  add(items: string | string[] | Float32Array): ReturnType<PageSearchIndex["add"]>;
  search(query: string | Float32Array, options?: import("./index.js").SearchOptions): ReturnType<PageSearchIndex["search"]>;
  export(): Promise<Uint8Array>;
  /** Number of vectors, as of the last `add` that finished. */
  readonly size: number;
  readonly dim: number;
  dispose(): Promise<void>;
}

/** Stops the worker: every object created through this module becomes unusable. */
export function terminateWorker(): void;
