// Type declarations for "gllm-web" (the main-thread entry). "gllm-web/worker" has the same
// classes (worker.d.ts); only SearchIndex.useEmbedder differs (it returns a Promise there).

/** A load progress event, in transformers.js style, discriminated by `status`. */
export type ProgressEvent =
  | { status: "initiate"; file: string }
  | { status: "download"; file: string; total: number }
  | { status: "progress"; file: string; loaded: number; total: number; progress: number }
  /** A sharded checkpoint (model.safetensors.index.json): bytes read over all its shards,
   *  after each shard's "progress"; `file` is the index's name. */
  | { status: "progress_total"; file: string; loaded: number; total: number; progress: number }
  | { status: "done"; file: string }
  | { status: "ready" };

export interface EmbedderLoadOptions {
  /** Default: the model's sentence-transformers config, else "mean". */
  pooling?: "mean" | "cls";
  /** L2-normalise each embedding. Default: the model's config, else true. */
  normalize?: boolean;
  /** Longest input in tokens (special tokens included); longer texts are truncated from the
   *  end, keeping [SEP]. Default: sentence_bert_config.json's max_seq_length, else the
   *  model's maximum. */
  max_length?: number;
  /** Texts per forward pass. Default 32. */
  batch_size?: number;
  /** Called for each load progress event. */
  progress_callback?: (event: ProgressEvent) => void;
  /** Browser cache for the weights (Cache API): true (default, cache "gllm-web"), false, or
   *  a cache name. A second load of the same model then makes no network request. */
  cache?: boolean | string;
  /** Bytes per HTTP Range request of the streaming loader. Default 8 MiB. */
  chunk_size?: number;
  /** Range requests in flight at once. Default 6. */
  concurrency?: number;
  /** Cancels the load; what was uploaded is freed and the promise rejects with "aborted". */
  signal?: AbortSignal;
}

export interface StreamWeightsOptions {
  /** Default "model.safetensors". */
  file?: string;
  cache?: boolean | string;
  chunk_size?: number;
  concurrency?: number;
  signal?: AbortSignal;
  progress_callback?: (event: ProgressEvent) => void;
}

export interface StreamWeightsResult {
  bytes: number;
  seconds: number;
  requests: number;
  max_in_flight: number;
  tensors: number;
}

export interface RerankerLoadOptions {
  /** Longest (query, document) pair in tokens; documents are truncated to fit. Default: the
   *  model's maximum. */
  max_length?: number;
  /** Pairs per forward pass. Default 64. */
  batch_size?: number;
  progress_callback?: (event: ProgressEvent) => void;
}

/** Row-major embeddings: row i is `data.subarray(i * dims[1], (i + 1) * dims[1])`. */
export interface EmbedResult {
  data: Float32Array;
  /** [number of texts, embedding width] */
  dims: [number, number];
}

export interface RerankOptions {
  /** Keep only the best n results. Default: all. */
  top_n?: number;
  /** Include each document's text in its result. Default false. */
  return_documents?: boolean;
}

export interface RerankResult {
  /** Position of the document in the input list. */
  index: number;
  /** sigmoid(logit): relevance probability in (0, 1). */
  score: number;
  /** The classifier's raw output. */
  logit: number;
  /** The document text, with `return_documents: true`. */
  document?: string;
}

export interface SearchOptions {
  /** Number of hits, 1..=256. Default 10. */
  k?: number;
  /** "exact" (default): every vector is scored. "binary": sign-bit Hamming candidates, then
   *  exact rescoring of `candidates` of them. "int8": Hamming candidates, int8 scoring
   *  keeping `rescore` of them, then exact rescoring. */
  mode?: "exact" | "binary" | "int8";
  /** Binary and int8 modes: Hamming candidates (k..=256). Default 200. */
  candidates?: number;
  /** Int8 mode: candidates rescored exactly (k..=candidates). Default 40. */
  rescore?: number;
}

export interface IndexOptions {
  /** Storage of the exact vectors on the GPU: "f32" (default) or "f16" (half the memory). */
  storage?: "f32" | "f16";
}

export interface GeneratorLoadOptions {
  /** Storage of the weights on the GPU; activations are f32. Default "f16". "auto" keeps a
   *  GGUF file's blocks quantized; "q8_0", "q4_0", ... quantize on load. */
  dtype?: "f32" | "f16" | "auto" | "q8_0" | "q4_0" | "q4_1" | "q5_0" | "q5_1" | "q2_K" | "q3_K" | "q4_K" | "q5_K" | "q6_K" | "iq4_nl";
  progress_callback?: (event: ProgressEvent) => void;
}

export interface ChatMessage {
  role: "system" | "user" | "assistant" | string;
  content: string;
}

export interface GenerateOptions {
  /** Default 256. */
  max_new_tokens?: number;
  /** 0 (default) is greedy. */
  temperature?: number;
  /** 0 (default) disables top-k. */
  top_k?: number;
  /** 1 (default) disables top-p. */
  top_p?: number;
  /** 1 (default) disables the penalty. */
  repetition_penalty?: number;
  /** Seed of the GPU sampler (default 0): same seed, same tokens. */
  seed?: number;
  /** Stop when the text contains one of these (the text ends before it). */
  stop?: string[];
  /** Aborting stops generation after the current token; the generator stays usable. */
  signal?: AbortSignal;
  /** Called after each new token with the text it completes (may be empty while a UTF-8
   *  character or a possible stop string is incomplete) and the token id. */
  callback?: (text: string, token: number) => void;
}

export interface GenerateResult {
  /** The new text (special tokens skipped). */
  text: string;
  /** New token ids (an EOS id is the last when finish_reason is "eos"). */
  tokens: Uint32Array;
  prompt_ids: Uint32Array;
  finish_reason: "eos" | "stop" | "length" | "abort";
}

/** Hits, best first: `ids[i]` (insertion order) with cosine similarity `scores[i]`. */
export interface SearchResult {
  ids: Uint32Array;
  scores: Float32Array;
}

export interface InitOptions {
  /** Where to load gllm_web_bg.wasm from (default: next to the package's JS, which Vite and
   *  webpack resolve and copy on their own). */
  wasm?: string | URL | Response | BufferSource | WebAssembly.Module;
}

/** Instantiates the WebAssembly module; every factory calls it, so it is optional. */
export function init(options?: InitOptions): Promise<unknown>;

/** Whether this page or worker exposes WebGPU (`navigator.gpu`). */
export function isWebGPUAvailable(): boolean;

/**
 * Sentence embeddings on the GPU (BERT family, e.g. all-MiniLM-L6-v2).
 * Calls on one object run one at a time in call order; errors are `Error`s with a clear
 * message (disposed object, lost GPU device, bad input, missing file).
 */
export class Embedder {
  #private;
  private constructor();
  /** Loads a model folder served at `model` (config.json, tokenizer.json,
   *  model.safetensors, sentence-transformers files). Fails with "WebGPU is unavailable…"
   *  when `navigator.gpu` is missing. */
  static load(model: string, options?: EmbedderLoadOptions): Promise<Embedder>;
  /** Embeds one text or a list; one GPU readback per call. */
  embed(texts: string | string[]): Promise<EmbedResult>;
  /** Embedding width. */
  readonly dim: number;
  /** Frees the model's GPU memory once the calls already made have finished; later calls
   *  reject with "this Embedder was disposed". */
  dispose(): Promise<void>;
}

/** Cross-encoder reranker (`BertForSequenceClassification` with one label). */
export class Reranker {
  #private;
  private constructor();
  static load(model: string, options?: RerankerLoadOptions): Promise<Reranker>;
  /** Scores every document against `query` on the GPU; results best first. */
  rerank(query: string, documents: string[], options?: RerankOptions): Promise<RerankResult[]>;
  dispose(): Promise<void>;
}

/** A vector index resident on the GPU (exact or binary + rescoring search, GPU top-k). */
export class SearchIndex {
  #private;
  private constructor();
  /** An empty index for `dim`-wide vectors. */
  static create(dim: number, options?: IndexOptions): Promise<SearchIndex>;
  /** An index restored from `export()` bytes. */
  static import(bytes: Uint8Array, dim: number): Promise<SearchIndex>;
  /** Lets `add` and `search` take text, embedded on the GPU with `embedder`. */
  useEmbedder(embedder: Embedder): void;
  /** Adds texts or a Float32Array of n × dim values; resolves to the new ids. */
  add(items: string | string[] | Float32Array): Promise<Uint32Array>;
  /** The best `k` hits for a text or a Float32Array of dim values. */
  search(query: string | Float32Array, options?: SearchOptions): Promise<SearchResult>;
  /** The normalised vectors as little-endian f32 bytes, for `SearchIndex.import`. */
  export(): Promise<Uint8Array>;
  /** Number of vectors. */
  readonly size: number;
  /** Vector width. */
  readonly dim: number;
  dispose(): Promise<void>;
}

/**
 * Text generation with a Llama-family decoder (Llama, SmolLM2, Qwen2/2.5, Qwen3): the
 * forward pass and the sampling run on the GPU, one 4-byte readback per token. Calls on one
 * generator run one after another; other objects run between its token steps.
 */
export class Generator {
  #private;
  private constructor();
  /** Loads a model folder served at `model` (config.json, generation_config.json,
   *  tokenizer.json, tokenizer_config.json, model.safetensors). */
  static load(model: string, options?: GeneratorLoadOptions): Promise<Generator>;
  /** Continues a text (tokenized as is) or answers chat messages (through the model's chat
   *  template); `options.callback` streams the text as it is generated. */
  generate(prompt: string | ChatMessage[], options?: GenerateOptions): Promise<GenerateResult>;
  /** Frees the weights and KV cache once the calls already made have finished. */
  dispose(): Promise<void>;
}

/** Streams a safetensors file under `model` into GPU buffers and releases them: a prefetch
 *  that fills the browser cache, and the load benchmark's probe. */
export function streamWeights(model: string, options?: StreamWeightsOptions): Promise<StreamWeightsResult>;

/** Testing hook: destroys the GPU device as a driver reset would. */
export function __loseDeviceForTesting(): Promise<boolean>;
