//! The JS boundary (wasm32 only): thin wasm-bindgen wrappers over [`crate::engine`].
//!
//! Style follows transformers.js: async factories (`await Embedder.load(url, options)`),
//! progress events discriminated by `status`, an options object, `dispose()`. Errors become
//! JS `Error`s carrying the crate error's message. Results cross as typed arrays.

mod lane;
mod generator;

use std::cell::RefCell;
use std::rc::Rc;

use js_sys::{Function, Object, Reflect};
use wasm_bindgen::prelude::*;

use crate::engine::{EmbedOptions, Embedder as RsEmbedder, RerankOptions, Reranker as RsReranker, SearchIndex as RsIndex, SearchMode};
use crate::error::Error;
use crate::gpu::Gpu;
use crate::loader::{HttpSource, Progress, StreamOptions, WebSource};
pub(crate) use lane::Slot;

#[wasm_bindgen(typescript_custom_section)]
const TS_TYPES: &'static str = r#"
/** A load progress event, in transformers.js style. A sharded checkpoint
 *  (model.safetensors.index.json) reports each shard as a file and, after each "progress"
 *  of a shard, "progress_total": bytes over all shards, with `file` the index's name. */
export interface ProgressEvent {
  status: "initiate" | "download" | "progress" | "progress_total" | "done" | "ready";
  /** File being read (absent for "ready"; the index for "progress_total"). */
  file?: string;
  /** Bytes read so far ("progress": of the file; "progress_total": of all shards). */
  loaded?: number;
  /** Bytes to read ("download", "progress", "progress_total"). */
  total?: number;
  /** loaded / total × 100 ("progress", "progress_total"). */
  progress?: number;
}

export interface EmbedderLoadOptions {
  /** Default: the model's sentence-transformers config, else "mean". */
  pooling?: "mean" | "cls";
  /** L2-normalise each embedding. Default: the model's config, else true. */
  normalize?: boolean;
  /** Longest input in tokens (special tokens included); longer texts are truncated.
   *  Default: sentence_bert_config.json's max_seq_length, else the model's maximum. */
  max_length?: number;
  /** Texts per forward pass. Default 32. */
  batch_size?: number;
  progress_callback?: (event: ProgressEvent) => void;
  /** Browser cache for the weights (Cache API): true (default, cache "gllm-web"), false, or a
   *  cache name. A second load of the same model then makes no network request. */
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
  /** Longest (query, document) pair in tokens; documents are truncated to fit. Default: the model maximum. */
  max_length?: number;
  /** Pairs per forward pass. Default 64. */
  batch_size?: number;
  progress_callback?: (event: ProgressEvent) => void;
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
  document?: string;
}

export interface SearchOptions {
  /** Number of hits, 1..=256. Default 10. */
  k?: number;
  /** "exact" (default): brute force over every vector. "binary": sign-bit Hamming
   *  candidates, then exact rescoring. "int8": Hamming candidates, int8 scoring keeping
   *  `rescore` of them, exact rescoring of those (binary → int8 → exact). */
  mode?: "exact" | "binary" | "int8";
  /** Binary and int8 modes: Hamming candidates (k..=256). Default 200. */
  candidates?: number;
  /** int8 mode: candidates kept for exact rescoring (k..=candidates). Default 40. */
  rescore?: number;
}

export interface IndexOptions {
  /** Element type of the stored vectors: "f32" (default) or "f16" (half the memory,
   *  scores within 1e-3; the dimension must be even). */
  storage?: "f32" | "f16";
}

/** Hits, best first: ids[i] (insertion order) with cosine similarity scores[i]. */
export interface SearchResult {
  ids: Uint32Array;
  scores: Float32Array;
}

/** Row-major embeddings: row i is data.subarray(i * dims[1], (i + 1) * dims[1]). */
export interface EmbedResult {
  data: Float32Array;
  dims: [number, number];
}
"#;

#[wasm_bindgen(start)]
fn start() {
    console_error_panic_hook::set_once();
}

pub(crate) fn js_err(e: Error) -> JsValue {
    JsError::new(&e.to_string()).into()
}

thread_local! {
    static GPU: RefCell<Option<Gpu>> = const { RefCell::new(None) };
}

/// The page's (or worker's) one GPU device, acquired on first use and again after a
/// device loss (models loaded before the loss must be loaded again).
pub(crate) async fn shared_gpu() -> Result<Gpu, Error> {
    if let Some(g) = GPU.with(|g| g.borrow().clone()) {
        if !g.is_lost() {
            return Ok(g);
        }
    }
    let has_webgpu = Reflect::get(&js_sys::global(), &"navigator".into())
        .ok()
        .and_then(|n| Reflect::get(&n, &"gpu".into()).ok())
        .is_some_and(|g| !g.is_undefined() && !g.is_null());
    if !has_webgpu {
        return Err(Error::NoAdapter(
            "WebGPU is unavailable (navigator.gpu is missing). WebGPU needs a secure context \
             (https:// or http://localhost) and a browser that has it on: Chrome/Edge 113+ on \
             Windows, macOS and ChromeOS (on Linux start Chrome with --enable-unsafe-webgpu \
             --enable-features=Vulkan, or enable chrome://flags/#enable-unsafe-webgpu), \
             Safari 26+, Firefox 141+ on Windows (dom.webgpu.enabled in about:config elsewhere)"
                .into(),
        ));
    }
    let g = Gpu::new().await?;
    GPU.with(|slot| *slot.borrow_mut() = Some(g.clone()));
    Ok(g)
}

fn get(o: &JsValue, key: &str) -> Option<JsValue> {
    Reflect::get(o, &key.into()).ok().filter(|v| !v.is_undefined() && !v.is_null())
}

fn progress_event(p: &Progress) -> Object {
    let o = Object::new();
    let set = |k: &str, v: JsValue| {
        let _ = Reflect::set(&o, &k.into(), &v);
    };
    match p {
        Progress::Initiate { file } => {
            set("status", "initiate".into());
            set("file", file.into());
        }
        Progress::Download { file, total } => {
            set("status", "download".into());
            set("file", file.into());
            set("total", (*total as f64).into());
        }
        Progress::Progress { file, loaded, total } => {
            set("status", "progress".into());
            set("file", file.into());
            set("loaded", (*loaded as f64).into());
            set("total", (*total as f64).into());
            set("progress", (*loaded as f64 / (*total).max(1) as f64 * 100.0).into());
        }
        Progress::Done { file } => {
            set("status", "done".into());
            set("file", file.into());
        }
        Progress::Total { file, loaded, total } => {
            set("status", "progress_total".into());
            set("file", file.into());
            set("loaded", (*loaded as f64).into());
            set("total", (*total as f64).into());
            set("progress", (*loaded as f64 / (*total).max(1) as f64 * 100.0).into());
        }
        Progress::Ready => set("status", "ready".into()),
    }
    o
}

/// The model source for a load: the Cache API in front of `fetch` unless `cache: false`
/// (`cache: "name"` picks the cache; default "gllm-web").
fn web_source(base_url: &str, options: &JsValue) -> Result<WebSource, Error> {
    let cache = match get(options, "cache") {
        None => Some("gllm-web".to_string()),
        Some(v) if v.as_bool() == Some(false) => None,
        Some(v) if v.as_bool() == Some(true) => Some("gllm-web".to_string()),
        Some(v) => Some(v.as_string().ok_or_else(|| Error::Input("option `cache`: expected a boolean or a cache name".into()))?),
    };
    Ok(WebSource::new(base_url, cache.as_deref()))
}

/// `chunk_size` (bytes) and `concurrency` of the streaming loader.
fn stream_options(options: &JsValue) -> Result<StreamOptions, Error> {
    let d = StreamOptions::default();
    Ok(StreamOptions {
        chunk_size: count(options, "chunk_size")?.map_or(d.chunk_size, |v| v as u64),
        concurrency: count(options, "concurrency")?.unwrap_or(d.concurrency),
        ..d
    })
}

/// A positive integer option, if present.
fn count(options: &JsValue, key: &str) -> Result<Option<usize>, Error> {
    get(options, key)
        .map(|v| {
            v.as_f64()
                .filter(|n| n.fract() == 0.0 && *n >= 1.0 && *n < 1e9)
                .map(|n| n as usize)
                .ok_or_else(|| Error::Input(format!("{key} must be a positive integer")))
        })
        .transpose()
}

fn progress_callback(options: &JsValue) -> Result<Option<Function>, Error> {
    match get(options, "progress_callback") {
        Some(f) => Ok(Some(f.dyn_into::<Function>().map_err(|_| Error::Input("progress_callback must be a function".into()))?)),
        None => Ok(None),
    }
}

/// Adapts a JS progress callback to the loader's `Progress` events.
fn reporter(callback: Option<Function>) -> impl Fn(Progress) {
    move |p: Progress| {
        if let Some(cb) = &callback {
            let _ = cb.call1(&JsValue::NULL, &progress_event(&p));
        }
    }
}

fn parse_embed_options(options: &JsValue) -> Result<(EmbedOptions, Option<Function>), Error> {
    let mut opts = EmbedOptions::default();
    if options.is_undefined() || options.is_null() {
        return Ok((opts, None));
    }
    if let Some(p) = get(options, "pooling") {
        opts.pooling = Some(p.as_string().ok_or_else(|| Error::Input("pooling must be a string".into()))?.parse()?);
    }
    if let Some(n) = get(options, "normalize") {
        opts.normalize = Some(n.as_bool().ok_or_else(|| Error::Input("normalize must be a boolean".into()))?);
    }
    opts.max_length = count(options, "max_length")?;
    opts.batch_size = count(options, "batch_size")?;
    Ok((opts, progress_callback(options)?))
}

/// Streams a safetensors file under `base_url` into GPU buffers with the streaming loader
/// and releases them: a prefetch (it fills the browser cache) and the load benchmark's
/// probe. Options: `file` (default "model.safetensors"), `cache`, `chunk_size`,
/// `concurrency`, `signal`, `progress_callback`. Resolves to
/// `{ bytes, seconds, requests, max_in_flight, tensors }`.
#[wasm_bindgen(js_name = streamWeights, unchecked_return_type = "Promise<StreamWeightsResult>")]
pub fn stream_weights(
    base_url: String,
    #[wasm_bindgen(unchecked_optional_param_type = "StreamWeightsOptions")] options: Option<JsValue>,
) -> js_sys::Promise {
    wasm_bindgen_futures::future_to_promise(async move {
        let options = options.unwrap_or(JsValue::UNDEFINED);
        let file = get(&options, "file").and_then(|v| v.as_string()).unwrap_or_else(|| "model.safetensors".into());
        let opts = stream_options(&options).map_err(js_err)?;
        let src = web_source(&base_url, &options).map_err(js_err)?;
        let callback = progress_callback(&options).map_err(js_err)?;
        let signal = get(&options, "signal");
        let aborted = || signal.as_ref().is_some_and(|s| Reflect::get(s, &"aborted".into()).ok().and_then(|v| v.as_bool()) == Some(true));
        let gpu = shared_gpu().await.map_err(js_err)?;
        let t0 = js_sys::Date::now();
        let st = crate::loader::SafetensorsFile::read(&src, &file).await.map_err(js_err)?;
        let w = crate::loader::stream_safetensors(&gpu, &src, &st, opts, &reporter(callback), &aborted).await.map_err(js_err)?;
        gpu.sync().await.map_err(js_err)?;
        let seconds = (js_sys::Date::now() - t0) / 1000.0;
        let bytes: u64 = st.tensors.values().map(|t| t.end - t.start).sum();
        let out = Object::new();
        let set = |k: &str, v: JsValue| Reflect::set(&out, &k.into(), &v);
        set("bytes", (bytes as f64).into())?;
        set("seconds", seconds.into())?;
        set("requests", (w.requests_sent as u32).into())?;
        set("max_in_flight", (w.max_in_flight as u32).into())?;
        set("tensors", (w.tensors.len() as u32).into())?;
        drop(w);
        gpu.trim();
        Ok(out.into())
    })
}

/// Sentence embeddings on the GPU.
#[wasm_bindgen]
pub struct Embedder {
    slot: Rc<Slot<RsEmbedder>>,
}

#[wasm_bindgen]
impl Embedder {
    /// Loads a model folder served at `base_url` (`config.json`, `tokenizer.json`,
    /// `model.safetensors`, sentence-transformers files).
    #[wasm_bindgen(unchecked_return_type = "Promise<Embedder>")]
    pub fn load(
        base_url: String,
        #[wasm_bindgen(unchecked_optional_param_type = "EmbedderLoadOptions")] options: Option<JsValue>,
    ) -> js_sys::Promise {
        wasm_bindgen_futures::future_to_promise(async move {
            let options = options.unwrap_or(JsValue::UNDEFINED);
            let (mut opts, callback) = parse_embed_options(&options).map_err(js_err)?;
            opts.stream = Some(stream_options(&options).map_err(js_err)?);
            let src = web_source(&base_url, &options).map_err(js_err)?;
            let signal = get(&options, "signal");
            let aborted = || signal.as_ref().is_some_and(|s| Reflect::get(s, &"aborted".into()).ok().and_then(|v| v.as_bool()) == Some(true));
            let gpu = shared_gpu().await.map_err(js_err)?;
            let inner = RsEmbedder::load_with_abort(&gpu, &src, opts, &reporter(callback), &aborted).await.map_err(js_err)?;
            Ok(Embedder { slot: Slot::new("Embedder", gpu, inner) }.into())
        })
    }

    /// Embeds `texts`; resolves to `{ data: Float32Array, dims: [n, d] }`. One GPU readback
    /// per call. Calls on one embedder run one at a time, in call order.
    #[wasm_bindgen(unchecked_return_type = "Promise<EmbedResult>")]
    pub fn embed(&self, texts: Vec<String>) -> js_sys::Promise {
        self.slot.call(move |inner| async move {
            let refs: Vec<&str> = texts.iter().map(String::as_str).collect();
            let e = inner.embed(&refs).await.map_err(js_err)?;
            let out = Object::new();
            Reflect::set(&out, &"data".into(), &js_sys::Float32Array::from(&e.data[..]))?;
            let dims = js_sys::Array::of2(&(e.dims[0] as u32).into(), &(e.dims[1] as u32).into());
            Reflect::set(&out, &"dims".into(), &dims)?;
            Ok(out.into())
        })
    }

    /// Embedding width.
    #[wasm_bindgen(getter)]
    pub fn dim(&self) -> Result<usize, JsError> {
        self.slot.get().map(|e| e.dim()).map_err(|e| JsError::new(&e.to_string()))
    }

    /// Releases the model once the calls already made have finished: its GPU memory is
    /// freed then, unless a `SearchIndex` using it still holds it. Calls made after
    /// `dispose()` reject with a clear error. Resolves when the memory is released.
    #[wasm_bindgen(unchecked_return_type = "Promise<void>")]
    pub fn dispose(&self) -> js_sys::Promise {
        self.slot.dispose()
    }
}

/// Cross-encoder reranker (`BertForSequenceClassification` with one label).
#[wasm_bindgen]
pub struct Reranker {
    slot: Rc<Slot<RsReranker>>,
}

#[wasm_bindgen]
impl Reranker {
    /// Loads a cross-encoder folder served at `base_url` (`config.json`, `tokenizer.json`,
    /// `model.safetensors`).
    #[wasm_bindgen(unchecked_return_type = "Promise<Reranker>")]
    pub fn load(
        base_url: String,
        #[wasm_bindgen(unchecked_optional_param_type = "RerankerLoadOptions")] options: Option<JsValue>,
    ) -> js_sys::Promise {
        wasm_bindgen_futures::future_to_promise(async move {
            let options = options.unwrap_or(JsValue::UNDEFINED);
            let opts = RerankOptions { max_length: count(&options, "max_length").map_err(js_err)?, batch_size: count(&options, "batch_size").map_err(js_err)? };
            let callback = progress_callback(&options).map_err(js_err)?;
            let gpu = shared_gpu().await.map_err(js_err)?;
            let inner = RsReranker::load(&gpu, &HttpSource::new(&base_url), opts, &reporter(callback)).await.map_err(js_err)?;
            Ok(Reranker { slot: Slot::new("Reranker", gpu, inner) }.into())
        })
    }

    /// Scores `docs` against `query`, all pairs in one batch; resolves to results sorted
    /// by score, highest first. An empty `docs` resolves to `[]`.
    #[wasm_bindgen(unchecked_return_type = "Promise<RerankResult[]>")]
    pub fn rerank(
        &self,
        query: String,
        docs: Vec<String>,
        #[wasm_bindgen(unchecked_optional_param_type = "RerankOptions")] options: Option<JsValue>,
    ) -> js_sys::Promise {
        let options = options.unwrap_or(JsValue::UNDEFINED);
        self.slot.call(move |inner| async move {
            let top_n = count(&options, "top_n").map_err(js_err)?;
            let return_documents = get(&options, "return_documents").and_then(|v| v.as_bool()).unwrap_or(false);
            let refs: Vec<&str> = docs.iter().map(String::as_str).collect();
            let results = inner.rerank(&query, &refs, top_n).await.map_err(js_err)?;
            let out = js_sys::Array::new();
            for r in results {
                let o = Object::new();
                Reflect::set(&o, &"index".into(), &(r.index as u32).into())?;
                Reflect::set(&o, &"score".into(), &r.score.into())?;
                Reflect::set(&o, &"logit".into(), &r.logit.into())?;
                if return_documents {
                    Reflect::set(&o, &"document".into(), &docs[r.index].as_str().into())?;
                }
                out.push(&o);
            }
            Ok(out.into())
        })
    }

    /// Releases the model once the calls already made have finished (see
    /// `Embedder.dispose`).
    #[wasm_bindgen(unchecked_return_type = "Promise<void>")]
    pub fn dispose(&self) -> js_sys::Promise {
        self.slot.dispose()
    }
}

/// What a `SearchIndex` slot holds: the vectors and, optionally, the embedder for text.
struct IndexState {
    index: RefCell<RsIndex>,
    embedder: RefCell<Option<Rc<RsEmbedder>>>,
}

/// A vector index resident on the GPU (exact or binary + rescoring search, GPU top-k).
#[wasm_bindgen]
pub struct SearchIndex {
    slot: Rc<Slot<IndexState>>,
}

impl SearchIndex {
    fn new(gpu: Gpu, index: RsIndex) -> Self {
        SearchIndex { slot: Slot::new("SearchIndex", gpu, IndexState { index: RefCell::new(index), embedder: RefCell::new(None) }) }
    }
}

/// A query or items: strings (embedded with the index's embedder) or a Float32Array.
enum Items {
    Texts(Vec<String>),
    Vectors(Vec<f32>),
}

fn items(v: &JsValue, what: &str) -> Result<Items, Error> {
    if let Some(s) = v.as_string() {
        return Ok(Items::Texts(vec![s]));
    }
    if let Some(a) = v.dyn_ref::<js_sys::Float32Array>() {
        return Ok(Items::Vectors(a.to_vec()));
    }
    if let Some(a) = v.dyn_ref::<js_sys::Array>() {
        return a
            .iter()
            .map(|x| x.as_string().ok_or_else(|| Error::Input(format!("{what}: arrays must hold strings"))))
            .collect::<Result<Vec<_>, _>>()
            .map(Items::Texts);
    }
    Err(Error::Input(format!("{what} must be a string, an array of strings or a Float32Array")))
}

/// `IndexOptions` from JS (`{ storage: "f32" | "f16" }`).
fn index_options(options: &JsValue) -> Result<crate::engine::IndexOptions, Error> {
    use crate::engine::{IndexOptions, IndexStorage};
    let storage = match get(options, "storage").and_then(|m| m.as_string()).as_deref() {
        None | Some("f32") => IndexStorage::F32,
        Some("f16") => IndexStorage::F16,
        Some(other) => return Err(Error::Input(format!("storage `{other}`: expected \"f32\" or \"f16\""))),
    };
    Ok(IndexOptions { storage, barrier_free: None })
}

/// Embeds texts to a GPU tensor with the index's embedder.
fn embed_texts(embedder: &Option<Rc<RsEmbedder>>, texts: &[String]) -> Result<Option<crate::gpu::GpuTensor>, Error> {
    let e = embedder.as_ref().ok_or_else(|| Error::Input("this index has no embedder: pass vectors, or create it with one".into()))?;
    let refs: Vec<&str> = texts.iter().map(String::as_str).collect();
    Ok(e.embed_tensor(&refs)?.0)
}

#[wasm_bindgen]
impl SearchIndex {
    /// An empty index for `dim`-wide vectors. Call `useEmbedder` to add and search text.
    #[wasm_bindgen(unchecked_return_type = "Promise<SearchIndex>")]
    pub fn create(dim: usize, #[wasm_bindgen(unchecked_optional_param_type = "IndexOptions")] options: Option<JsValue>) -> js_sys::Promise {
        let options = options.unwrap_or(JsValue::UNDEFINED);
        wasm_bindgen_futures::future_to_promise(async move {
            let opts = index_options(&options).map_err(js_err)?;
            let gpu = shared_gpu().await.map_err(js_err)?;
            let index = RsIndex::with_options(&gpu, dim, opts).map_err(js_err)?;
            Ok(SearchIndex::new(gpu, index).into())
        })
    }

    /// Lets `add` and `search` take text, embedded on the GPU with `embedder` (whose width
    /// must match the index). The embedder stays usable on its own.
    #[wasm_bindgen(js_name = useEmbedder)]
    pub fn use_embedder(&self, embedder: &Embedder) -> Result<(), JsError> {
        let e = embedder.slot.get().map_err(|e| JsError::new(&e.to_string()))?;
        let state = self.slot.get().map_err(|e| JsError::new(&e.to_string()))?;
        let dim = state.index.borrow().dim();
        if e.dim() != dim {
            return Err(JsError::new(&format!("embedder width {} does not match the index dimension {dim}", e.dim())));
        }
        *state.embedder.borrow_mut() = Some(e);
        Ok(())
    }

    /// Adds texts (embedded on the GPU, never read back) or a Float32Array of `n × dim`
    /// values. Resolves to the new ids.
    #[wasm_bindgen(unchecked_return_type = "Promise<Uint32Array>")]
    pub fn add(&self, #[wasm_bindgen(unchecked_param_type = "string | string[] | Float32Array")] items_: JsValue) -> js_sys::Promise {
        self.slot.call(move |state| async move {
            let embedder = state.embedder.borrow().clone();
            let first = match items(&items_, "items").map_err(js_err)? {
                Items::Texts(t) => match embed_texts(&embedder, &t).map_err(js_err)? {
                    Some(x) => state.index.borrow_mut().add_tensor(&x).map_err(js_err)?,
                    None => state.index.borrow().len() as u32,
                },
                Items::Vectors(v) => state.index.borrow_mut().add(&v).map_err(js_err)?,
            };
            let end = state.index.borrow().len() as u32;
            let ids: Vec<u32> = (first..end).collect();
            Ok(js_sys::Uint32Array::from(&ids[..]).into())
        })
    }

    /// The best hits for a text (embedded on the GPU) or a Float32Array of `dim` values.
    /// One readback of k (id, score) pairs. An empty index resolves to empty arrays.
    #[wasm_bindgen(unchecked_return_type = "Promise<SearchResult>")]
    pub fn search(
        &self,
        #[wasm_bindgen(unchecked_param_type = "string | Float32Array")] query: JsValue,
        #[wasm_bindgen(unchecked_optional_param_type = "SearchOptions")] options: Option<JsValue>,
    ) -> js_sys::Promise {
        let options = options.unwrap_or(JsValue::UNDEFINED);
        self.slot.call(move |state| async move {
            let k = count(&options, "k").map_err(js_err)?.unwrap_or(10);
            let mode = match get(&options, "mode").and_then(|m| m.as_string()).as_deref() {
                None | Some("exact") => SearchMode::Exact,
                Some("binary") => SearchMode::Binary { candidates: count(&options, "candidates").map_err(js_err)?.unwrap_or(200) },
                Some("int8") => SearchMode::BinaryInt8 {
                    candidates: count(&options, "candidates").map_err(js_err)?.unwrap_or(200),
                    rescore: count(&options, "rescore").map_err(js_err)?.unwrap_or(40),
                },
                Some(other) => return Err(js_err(Error::Input(format!("mode `{other}`: expected \"exact\", \"binary\" or \"int8\"")))),
            };
            // A snapshot, so no RefCell borrow is held across the await below.
            let snapshot = state.index.borrow().clone();
            let embedder = state.embedder.borrow().clone();
            let hits = match items(&query, "query").map_err(js_err)? {
                Items::Texts(t) if t.len() == 1 => {
                    let q = embed_texts(&embedder, &t).map_err(js_err)?.ok_or_else(|| js_err(Error::Input("empty query".into())))?;
                    snapshot.search_tensor(&q, k, mode).await
                }
                Items::Texts(_) => Err(Error::Input("search takes one query".into())),
                Items::Vectors(v) => snapshot.search(&v, k, mode).await,
            }
            .map_err(js_err)?;
            let out = Object::new();
            let ids: Vec<u32> = hits.iter().map(|h| h.id).collect();
            let scores: Vec<f32> = hits.iter().map(|h| h.score).collect();
            Reflect::set(&out, &"ids".into(), &js_sys::Uint32Array::from(&ids[..]))?;
            Reflect::set(&out, &"scores".into(), &js_sys::Float32Array::from(&scores[..]))?;
            Ok(out.into())
        })
    }

    /// Number of vectors.
    #[wasm_bindgen(getter)]
    pub fn size(&self) -> Result<usize, JsError> {
        self.slot.get().map(|s| s.index.borrow().len()).map_err(|e| JsError::new(&e.to_string()))
    }

    /// Vector width.
    #[wasm_bindgen(getter)]
    pub fn dim(&self) -> Result<usize, JsError> {
        self.slot.get().map(|s| s.index.borrow().dim()).map_err(|e| JsError::new(&e.to_string()))
    }

    /// The normalised vectors as bytes (`size × dim` little-endian f32), to store and
    /// `SearchIndex.import` on a later visit instead of re-embedding.
    #[wasm_bindgen(js_name = export, unchecked_return_type = "Promise<Uint8Array>")]
    pub fn export_bytes(&self) -> js_sys::Promise {
        self.slot.call(move |state| async move {
            let snapshot = state.index.borrow().clone();
            let bytes = snapshot.export().await.map_err(js_err)?;
            Ok(js_sys::Uint8Array::from(&bytes[..]).into())
        })
    }

    /// An index restored from `export` bytes.
    #[wasm_bindgen(js_name = import, unchecked_return_type = "Promise<SearchIndex>")]
    pub fn import_bytes(
        bytes: Vec<u8>,
        dim: usize,
        #[wasm_bindgen(unchecked_optional_param_type = "IndexOptions")] options: Option<JsValue>,
    ) -> js_sys::Promise {
        let options = options.unwrap_or(JsValue::UNDEFINED);
        wasm_bindgen_futures::future_to_promise(async move {
            let opts = index_options(&options).map_err(js_err)?;
            let gpu = shared_gpu().await.map_err(js_err)?;
            let index = RsIndex::import_with_options(&gpu, dim, &bytes, opts).map_err(js_err)?;
            Ok(SearchIndex::new(gpu, index).into())
        })
    }

    /// Frees the index's GPU memory once the calls already made have finished (see
    /// `Embedder.dispose`).
    #[wasm_bindgen(unchecked_return_type = "Promise<void>")]
    pub fn dispose(&self) -> js_sys::Promise {
        self.slot.dispose()
    }
}

/// Testing hook: destroys the shared GPU device (`GPUDevice.destroy()`), as a driver reset
/// would lose it, and resolves once the loss has been observed. Objects loaded on it then
/// reject their calls with a device-lost error; the next `load` acquires a new device.
#[wasm_bindgen(js_name = __loseDeviceForTesting, skip_typescript)]
pub fn lose_device_for_testing() -> js_sys::Promise {
    wasm_bindgen_futures::future_to_promise(async move {
        let Some(gpu) = GPU.with(|g| g.borrow().clone()) else {
            return Ok(JsValue::FALSE);
        };
        gpu.device().destroy();
        // `GPUDevice.lost` resolves asynchronously; wait for it (bounded).
        for _ in 0..200 {
            if gpu.is_lost() {
                return Ok(JsValue::TRUE);
            }
            sleep_ms(10).await;
        }
        Err(js_err(Error::Gpu("device.destroy() did not resolve GPUDevice.lost within 2 s".into())))
    })
}

async fn sleep_ms(ms: i32) {
    let p = js_sys::Promise::new(&mut |resolve, _| {
        let set_timeout = Reflect::get(&js_sys::global(), &"setTimeout".into()).ok().and_then(|f| f.dyn_into::<Function>().ok());
        if let Some(f) = set_timeout {
            let _ = f.call2(&JsValue::NULL, &resolve, &ms.into());
        } else {
            let _ = resolve.call0(&JsValue::NULL);
        }
    });
    let _ = wasm_bindgen_futures::JsFuture::from(p).await;
}
