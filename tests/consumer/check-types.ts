// Type-level test of the package's declarations (run by scripts/consumer-test.sh with tsc
// --noEmit, beside the README examples checked as JS). Each @ts-expect-error must fail to
// type-check; if a declaration degraded to `any`, the directive itself would be an error.
import { Embedder, Generator, Reranker, SearchIndex, isWebGPUAvailable, type EmbedResult, type GllmErrorName, type LoadOptions, type ProgressEvent, type RerankResult, type SearchResult } from "gllm-web";
import * as W from "gllm-web/worker";
import * as N from "gllm-web/node";

export async function typed(url: string): Promise<void> {
  const onProgress = (e: ProgressEvent) => {
    if (e.status === "progress") {
      const pct: number = e.progress; // narrowed by the discriminant
      void pct;
    }
    if (e.status === "download") void (e.total satisfies number);
    // @ts-expect-error: "ready" events carry no file
    if (e.status === "ready") void e.file.length;
  };
  const embedder: Embedder = await Embedder.load(url, { pooling: "mean", normalize: true, max_length: 128, batch_size: 16, progress_callback: onProgress });
  const r: EmbedResult = await embedder.embed(["a", "b"]);
  const one: Float32Array = (await embedder.embed("a")).data;
  const [n, d]: [number, number] = r.dims;
  void [one, n, d, embedder.dim satisfies number, isWebGPUAvailable() satisfies boolean];
  const where: "webgpu" | "cpu" = embedder.device;
  void [where, await Embedder.load("/models/m", { device: "cpu" })];
  // @ts-expect-error: not a device
  void Embedder.load("/models/m", { device: "gpu" });
  await Embedder.load(url, { cache: false, chunk_size: 1 << 20, concurrency: 4, signal: new AbortController().signal });
  await W.Embedder.load(url, { cache: "models", signal: AbortSignal.timeout(60_000) });
  // @ts-expect-error: pooling is "mean" | "cls" | "last_token"
  await Embedder.load(url, { pooling: "max" });
  await Embedder.load(url, { pooling: "last_token" });
  // @ts-expect-error: embed takes strings
  await embedder.embed([1, 2]);
  // @ts-expect-error: dim is read-only
  embedder.dim = 3;

  // One LoadOptions for every class: the same keys type-check on each load.
  const common: LoadOptions = { dtype: "q4_K", cache: "models", chunk_size: 1 << 20, concurrency: 4, retries: 1, signal: new AbortController().signal, progress_callback: onProgress };
  await Reranker.load(url, common);
  await Reranker.load(url, { ...common, instruction: "Given a web search query, retrieve relevant passages that answer the query" });
  const gen = await Generator.load(`${url}/model.Q4_K_M.gguf`, { ...common, dtype: "auto" });
  const out = await gen.generate("Hi", { max_new_tokens: 2, callback: (text: string, token: number) => void [text, token] });
  void (out.finish_reason satisfies "eos" | "stop" | "length" | "abort");
  const fast = await gen.generate("Hi", { max_new_tokens: 4, prefix_cache: false, speculative: { mode: "prompt_lookup", k: 4 } });
  void (fast.speculative?.accepted satisfies number | undefined);
  const long = await gen.generate("Hi", { cache_tokens: 512, context_shift: true, sink_tokens: 4 });
  void (long.evicted satisfies number);
  // @ts-expect-error: context_shift is a boolean
  await gen.generate("Hi", { context_shift: "sinks" });
  // @ts-expect-error: only prompt lookup drafts here
  await gen.generate("Hi", { speculative: { mode: "draft" } });
  // @ts-expect-error: dtype is one of the declared formats
  await Generator.load(url, { dtype: "q3" });
  try {
    await embedder.embed(["a"]);
  } catch (e) {
    const name = (e as Error).name as GllmErrorName;
    if (name === "AbortError" || name === "DisposedError") void name;
    // @ts-expect-error: not an error name of the package
    if (name === "OopsError") void name;
  }

  const reranker = await Reranker.load(url);
  const ranked: RerankResult[] = await reranker.rerank("q", ["a"], { top_n: 1, return_documents: true });
  const doc: string | undefined = ranked[0].document;
  void doc;
  // @ts-expect-error: top_n is a number
  await reranker.rerank("q", ["a"], { top_n: "1" });

  const index = await SearchIndex.create(embedder.dim);
  index.useEmbedder(embedder);
  const ids: Uint32Array = await index.add(["x", "y"]);
  const hits: SearchResult = await index.search("x", { k: 2, mode: "binary", candidates: 50 });
  const bytes: Uint8Array = await index.export();
  const again: SearchIndex = await SearchIndex.import(bytes, index.dim);
  void [ids, hits.ids satisfies Uint32Array, hits.scores satisfies Float32Array, again.size satisfies number];
  // @ts-expect-error: mode is "exact" | "binary"
  await index.search("x", { mode: "hnsw" });
  await Promise.all([embedder.dispose(), reranker.dispose(), index.dispose()]) satisfies void[];

  // Worker mode: the same shapes; useEmbedder returns a Promise there.
  const we = await W.Embedder.load(url, { progress_callback: onProgress });
  const wr: EmbedResult = await we.embed(["a"]);
  const wi = await W.SearchIndex.create(we.dim);
  await wi.useEmbedder(we) satisfies void;
  const wh: SearchResult = await wi.search("a");
  void [wr, wh];
  // @ts-expect-error: a page Embedder is not a worker Embedder
  await wi.useEmbedder(embedder);
  W.terminateWorker();

  // gllm-web/node: the same classes and types, its own init.
  const ne: Embedder = await N.Embedder.load("./models/all-MiniLM-L6-v2", { cache: "models" });
  const ng = await N.Generator.load("file:///models/SmolLM2-135M-Instruct.Q4_1.gguf");
  const tokens: Uint32Array = (await ng.generate("a", { max_new_tokens: 1 })).tokens;
  await N.init() satisfies void;
  void [ne, tokens];
  // @ts-expect-error: Node's init reads the .wasm itself and takes no options
  await N.init({ wasm: "x.wasm" });
}
