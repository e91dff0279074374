// Type declarations for "gllm-web/worker": the API of "gllm-web" with the engine in a
// dedicated worker, derived from the main entry's declarations: every method resolves
// asynchronously (a synchronous one, such as `SearchIndex.useEmbedder`, returns a Promise
// here), getters read a snapshot the worker sends with each reply, and results are the
// same types (typed arrays are transferred to the page).
import type * as Page from "./index.js";

export type * from "./index.js";

declare const remote: unique symbol;

/** Page objects in a method's arguments become their worker counterparts. */
type RemoteArgs<A extends unknown[]> = { [I in keyof A]: A[I] extends Page.Embedder ? Remote<Page.Embedder> : A[I] };

/** An object living in the worker, seen from the page (not interchangeable with a page
 *  object: the brand keeps the two apart). */
export type Remote<T> = {
  readonly [K in keyof T as K extends symbol ? never : K]: T[K] extends (...args: infer A) => infer R
    ? (...args: RemoteArgs<A>) => Promise<Awaited<R>>
    : T[K];
} & { readonly [remote]: true };

type Factories<C, T> = {
  [K in keyof C as C[K] extends (...args: any[]) => Promise<T> ? K : never]: C[K] extends (...args: infer A) => Promise<T>
    ? (...args: A) => Promise<Remote<T>>
    : never;
};

export type Embedder = Remote<Page.Embedder>;
export declare const Embedder: Factories<typeof Page.Embedder, Page.Embedder>;
export type Reranker = Remote<Page.Reranker>;
export declare const Reranker: Factories<typeof Page.Reranker, Page.Reranker>;
export type Generator = Remote<Page.Generator>;
export declare const Generator: Factories<typeof Page.Generator, Page.Generator>;
export type SearchIndex = Remote<Page.SearchIndex>;
export declare const SearchIndex: Factories<typeof Page.SearchIndex, Page.SearchIndex>;

export { isWebGPUAvailable } from "./index.js";
export declare function streamWeights(...args: Parameters<typeof Page.streamWeights>): ReturnType<typeof Page.streamWeights>;
export declare function __loseDeviceForTesting(): Promise<boolean>;

/** Stops the worker: every object created through this module becomes unusable. */
export function terminateWorker(): void;
