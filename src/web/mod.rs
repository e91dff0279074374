//! The JS boundary (wasm32 only): thin wasm-bindgen wrappers over [`crate::engine`].
//!
//! Style follows transformers.js: async factories (`await Embedder.load(url, options)`),
//! progress events discriminated by `status`, an options object, `dispose()`. Options are
//! declared once in [`options`] (serde struct and TypeScript interface from the same lines)
//! and every class's `load` shares [`options::LoadOptionsJs`] and one front
//! ([`begin_load`]). Arguments are checked inside the returned Promise: a wrong type rejects
//! it with a `TypeError` naming the argument, never a synchronous throw. Errors carry a
//! `name` per kind ([`Error::js_name`]). Results cross as typed arrays.

mod generator;
mod lane;
mod options;

use std::cell::RefCell;
use std::rc::Rc;

use js_sys::{Function, Object, Reflect};
use wasm_bindgen::prelude::*;

use crate::engine::{DeviceChoice, EmbedOptions, Embedder as RsEmbedder, RerankOptions, Reranker as RsReranker, SearchIndex as RsIndex, SearchMode};
use crate::error::Error;
use crate::gpu::Gpu;
use crate::loader::Progress;
pub(crate) use lane::Slot;
use options::{
    EmbedOptionsJs, EmbedderLoadOptionsJs, IndexOptionsJs, LoadContext, LoadOptionsJs, RerankOptionsJs, RerankerLoadOptionsJs, SearchOptionsJs,
    StreamWeightsOptionsJs,
};

#[wasm_bindgen(typescript_custom_section)]
const TS_TYPES: &'static str = r#"
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

/** The `name` of every error a gllm-web Promise rejects with: "AbortError" (an
 *  AbortSignal fired; what was uploaded is freed), "InputError" (a bad argument value),
 *  "TypeError" (an argument of the wrong type), "ModelError" (a malformed or unsupported
 *  model file), "NotFoundError", "NetworkError", "IntegrityError" (a file does not match
 *  gllm-manifest.json), "DisposedError", "DeviceLostError" (load again), "NoAdapterError"
 *  (no WebGPU), "UnsupportedError" (the CPU backend does not run this: `device: "webgpu"`),
 *  "GPUError". */
export type GllmErrorName =
  | "AbortError" | "InputError" | "TypeError" | "ModelError" | "NotFoundError" | "NetworkError"
  | "IntegrityError" | "DisposedError" | "DeviceLostError" | "NoAdapterError" | "UnsupportedError" | "GPUError";

/** Row-major embeddings: row i is `data.subarray(i * dims[1], (i + 1) * dims[1])`. */
export interface EmbedResult {
  data: Float32Array;
  /** [number of texts, embedding width] */
  dims: [number, number];
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

/** Hits, best first: `ids[i]` (insertion order) with cosine similarity `scores[i]`. */
export interface SearchResult {
  ids: Uint32Array;
  scores: Float32Array;
}

export interface StreamWeightsResult {
  bytes: number;
  seconds: number;
  requests: number;
  max_in_flight: number;
  tensors: number;
}
"#;

#[wasm_bindgen(start)]
fn start() {
    console_error_panic_hook::set_once();
}

/// The JS error of `e`: a `TypeError` for [`Error::Type`], else an `Error`; its `name` is
/// [`Error::js_name`].
pub(crate) fn js_err(e: Error) -> JsValue {
    let msg = e.to_string();
    let err: js_sys::Error = match e {
        Error::Type(_) => js_sys::TypeError::new(&msg).into(),
        _ => js_sys::Error::new(&msg),
    };
    err.set_name(e.js_name());
    err.into()
}

thread_local! {
    static GPU: RefCell<Option<Gpu>> = const { RefCell::new(None) };
    static CPU: RefCell<Option<Gpu>> = const { RefCell::new(None) };
}

/// The device `choice` gives an engine (`cpu_covers`: whether the CPU backend runs it):
/// the shared WebGPU device or the shared CPU backend ([`DeviceChoice::pick`]).
pub(crate) async fn device_for(choice: DeviceChoice, cpu_covers: bool) -> Result<Gpu, Error> {
    let adapter = if choice == DeviceChoice::Cpu { Err(Error::NoAdapter("not asked for".into())) } else { shared_gpu().await };
    match choice.pick(adapter, cpu_covers)? {
        Some(g) => Ok(g),
        None => Ok(CPU.with(|c| c.borrow_mut().get_or_insert_with(Gpu::cpu).clone())),
    }
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

pub(crate) fn get(o: &JsValue, key: &str) -> Option<JsValue> {
    Reflect::get(o, &key.into()).ok().filter(|v| !v.is_undefined() && !v.is_null())
}

/// A JS type name for error messages.
fn type_name(v: &JsValue) -> String {
    if v.is_null() {
        "null".into()
    } else if js_sys::Array::is_array(v) {
        "an array".into()
    } else {
        v.js_typeof().as_string().unwrap_or_default()
    }
}

/// A string argument.
pub(crate) fn string_arg(v: &JsValue, name: &str) -> Result<String, Error> {
    v.as_string().ok_or_else(|| Error::Type(format!("{name} must be a string, got {}", type_name(v))))
}

/// One string or an array of strings.
pub(crate) fn strings_arg(v: &JsValue, name: &str) -> Result<Vec<String>, Error> {
    if let Some(s) = v.as_string() {
        return Ok(vec![s]);
    }
    if !js_sys::Array::is_array(v) {
        return Err(Error::Type(format!("{name} must be a string or an array of strings, got {}", type_name(v))));
    }
    js_sys::Array::from(v)
        .iter()
        .enumerate()
        .map(|(i, x)| x.as_string().ok_or_else(|| Error::Type(format!("{name}[{i}] must be a string, got {}", type_name(&x)))))
        .collect()
}

/// A whole number in `min..=max`.
pub(crate) fn count_arg(v: &JsValue, name: &str, min: usize, max: usize) -> Result<usize, Error> {
    let n = v.as_f64().ok_or_else(|| Error::Type(format!("{name} must be a number, got {}", type_name(v))))?;
    if n.fract() != 0.0 || n < min as f64 || n > max as f64 {
        return Err(Error::Input(format!("{name} must be a whole number in {min}..={max}, got {n}")));
    }
    Ok(n as usize)
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

/// Adapts a JS progress callback to the loader's `Progress` events.
fn reporter(callback: Option<Function>) -> impl Fn(Progress) {
    move |p: Progress| {
        if let Some(cb) = &callback {
            let _ = cb.call1(&JsValue::NULL, &progress_event(&p));
        }
    }
}

/// The front every `load` shares: the model URL and options checked (the common keys and
/// the class's own `own_keys`), the load context (source, dtype, streaming, progress,
/// abort) and the shared device.
pub(crate) async fn begin_load(model: &JsValue, options: &JsValue, what: &str, own_keys: &[&str], cpu_covers: bool) -> Result<(LoadContext, Gpu), Error> {
    let url = string_arg(model, "model")?;
    let common: LoadOptionsJs = options::parse(options, what, &[LoadOptionsJs::KEYS, own_keys])?;
    let ctx = LoadContext::new(&url, options, common)?;
    // A decoder folder (decoder embedder / reranker) needs the adapter under `auto`.
    let cpu_covers = cpu_covers && crate::engine::cpu_backend_covers(&ctx.src).await;
    let gpu = device_for(ctx.load.device, cpu_covers).await?;
    Ok((ctx, gpu))
}

/// Streams a weights file under `model` into GPU buffers with the streaming loader and
/// releases them: a prefetch (it fills the browser cache) and the load benchmark's probe.
/// It always takes the WebGPU adapter (`device: "auto"` does not pick the CPU backend, whose
/// weights would fill the wasm heap).
/// Resolves to `{ bytes, seconds, requests, max_in_flight, tensors }`.
#[wasm_bindgen(js_name = streamWeights, unchecked_return_type = "Promise<StreamWeightsResult>")]
pub fn stream_weights(
    #[wasm_bindgen(unchecked_param_type = "string")] model: JsValue,
    #[wasm_bindgen(unchecked_optional_param_type = "StreamWeightsOptions")] options: Option<JsValue>,
) -> js_sys::Promise {
    wasm_bindgen_futures::future_to_promise(async move {
        let options = options.unwrap_or(JsValue::UNDEFINED);
        let run = async {
            let o: StreamWeightsOptionsJs = options::parse(&options, "streamWeights", &[StreamWeightsOptionsJs::KEYS, LoadOptionsJs::KEYS])?;
            let (ctx, gpu) = begin_load(&model, &options, "streamWeights", StreamWeightsOptionsJs::KEYS, false).await?;
            let file = o.file.or(ctx.load.weights.clone());
            let t0 = js_sys::Date::now();
            let weights = crate::loader::Weights::open(&ctx.src, file.as_deref()).await?;
            let plain = crate::loader::Targets::as_stored();
            let w = crate::loader::stream_weights(&gpu, &ctx.src, &weights, None, ctx.load.stream, &plain, &reporter(ctx.callback.clone()), &|| ctx.aborted()).await?;
            gpu.sync().await?;
            let seconds = (js_sys::Date::now() - t0) / 1000.0;
            let bytes: u64 = weights.files()?.iter().flat_map(|f| f.entries.iter()).map(|e| e.len()).sum();
            let out = Object::new();
            let set = |k: &str, v: JsValue| Reflect::set(&out, &k.into(), &v);
            let _ = set("bytes", (bytes as f64).into());
            let _ = set("seconds", seconds.into());
            let _ = set("requests", (w.requests_sent as u32).into());
            let _ = set("max_in_flight", (w.max_in_flight as u32).into());
            let _ = set("tensors", ((w.tensors.len() + w.blocks.len()) as u32).into());
            drop(w);
            gpu.trim();
            Ok::<JsValue, Error>(out.into())
        };
        run.await.map_err(js_err)
    })
}

/// Sentence embeddings on the GPU.
#[wasm_bindgen]
pub struct Embedder {
    slot: Rc<Slot<RsEmbedder>>,
}

#[wasm_bindgen]
impl Embedder {
    /// Loads a model folder served at `model` (`config.json`, `tokenizer.json`,
    /// `model.safetensors` or shards, sentence-transformers files), its weights streamed in
    /// parallel Range requests straight into GPU buffers.
    #[wasm_bindgen(unchecked_return_type = "Promise<Embedder>")]
    pub fn load(
        #[wasm_bindgen(unchecked_param_type = "string")] model: JsValue,
        #[wasm_bindgen(unchecked_optional_param_type = "EmbedderLoadOptions")] options: Option<JsValue>,
    ) -> js_sys::Promise {
        wasm_bindgen_futures::future_to_promise(async move {
            let options = options.unwrap_or(JsValue::UNDEFINED);
            let run = async {
                const WHAT: &str = "Embedder.load";
                let o: EmbedderLoadOptionsJs = options::parse(&options, WHAT, &[EmbedderLoadOptionsJs::KEYS, LoadOptionsJs::KEYS])?;
                let (ctx, gpu) = begin_load(&model, &options, WHAT, EmbedderLoadOptionsJs::KEYS, true).await?;
                let opts = EmbedOptions {
                    pooling: o.pooling.as_deref().map(str::parse).transpose()?,
                    normalize: o.normalize,
                    max_length: o.max_length,
                    batch_size: o.batch_size,
                    load: ctx.load.clone(),
                };
                let inner = RsEmbedder::load_with_abort(&gpu, &ctx.src, opts, &reporter(ctx.callback.clone()), &|| ctx.aborted()).await?;
                Ok::<JsValue, Error>(Embedder { slot: Slot::new("Embedder", gpu, inner) }.into())
            };
            run.await.map_err(js_err)
        })
    }

    /// Embeds one text or a list; resolves to `{ data: Float32Array, dims: [n, d] }`. One GPU
    /// readback per call. Calls on one embedder run one at a time, in call order. Options:
    /// a task prompt (`prompt_name` / `prompt`) and Matryoshka `dimensions`.
    #[wasm_bindgen(unchecked_return_type = "Promise<EmbedResult>")]
    pub fn embed(
        &self,
        #[wasm_bindgen(unchecked_param_type = "string | string[]")] texts: JsValue,
        #[wasm_bindgen(unchecked_optional_param_type = "EmbedOptions")] options: Option<JsValue>,
    ) -> js_sys::Promise {
        let options = options.unwrap_or(JsValue::UNDEFINED);
        self.slot.call(move |inner| async move {
            let texts = strings_arg(&texts, "texts").map_err(js_err)?;
            let o: EmbedOptionsJs = options::parse(&options, "embed", &[EmbedOptionsJs::KEYS]).map_err(js_err)?;
            let call = crate::engine::EmbedCallOptions { prompt_name: o.prompt_name, prompt: o.prompt, dimensions: o.dimensions };
            let refs: Vec<&str> = texts.iter().map(String::as_str).collect();
            let e = inner.embed_with(&refs, &call).await.map_err(js_err)?;
            let out = Object::new();
            Reflect::set(&out, &"data".into(), &js_sys::Float32Array::from(&e.data[..]))?;
            let dims = js_sys::Array::of2(&(e.dims[0] as u32).into(), &(e.dims[1] as u32).into());
            Reflect::set(&out, &"dims".into(), &dims)?;
            Ok(out.into())
        })
    }

    /// Embedding width.
    #[wasm_bindgen(getter)]
    pub fn dim(&self) -> Result<usize, JsValue> {
        self.slot.get().map(|e| e.dim()).map_err(js_err)
    }

    /// Where the model runs: "webgpu" or "cpu" (see `LoadOptions.device`).
    #[wasm_bindgen(getter, unchecked_return_type = "\"webgpu\" | \"cpu\"")]
    pub fn device(&self) -> String {
        self.slot.device().into()
    }

    /// Releases the model once the calls already made have finished: its GPU memory is
    /// freed then, unless a `SearchIndex` using it still holds it. Calls made after
    /// `dispose()` reject with a `DisposedError`. Resolves when the memory is released.
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
    /// Loads a cross-encoder folder served at `model` (`config.json`, `tokenizer.json`,
    /// `model.safetensors` or shards), streamed like `Embedder.load`.
    #[wasm_bindgen(unchecked_return_type = "Promise<Reranker>")]
    pub fn load(
        #[wasm_bindgen(unchecked_param_type = "string")] model: JsValue,
        #[wasm_bindgen(unchecked_optional_param_type = "RerankerLoadOptions")] options: Option<JsValue>,
    ) -> js_sys::Promise {
        wasm_bindgen_futures::future_to_promise(async move {
            let options = options.unwrap_or(JsValue::UNDEFINED);
            let run = async {
                const WHAT: &str = "Reranker.load";
                let o: RerankerLoadOptionsJs = options::parse(&options, WHAT, &[RerankerLoadOptionsJs::KEYS, LoadOptionsJs::KEYS])?;
                let (ctx, gpu) = begin_load(&model, &options, WHAT, RerankerLoadOptionsJs::KEYS, true).await?;
                let opts = RerankOptions { max_length: o.max_length, batch_size: o.batch_size, instruction: o.instruction, load: ctx.load.clone() };
                let inner = RsReranker::load_with_abort(&gpu, &ctx.src, opts, &reporter(ctx.callback.clone()), &|| ctx.aborted()).await?;
                Ok::<JsValue, Error>(Reranker { slot: Slot::new("Reranker", gpu, inner) }.into())
            };
            run.await.map_err(js_err)
        })
    }

    /// Scores `documents` against `query`, all pairs in one batch; resolves to results
    /// sorted by score, highest first. An empty `documents` resolves to `[]`.
    #[wasm_bindgen(unchecked_return_type = "Promise<RerankResult[]>")]
    pub fn rerank(
        &self,
        #[wasm_bindgen(unchecked_param_type = "string")] query: JsValue,
        #[wasm_bindgen(unchecked_param_type = "string[]")] documents: JsValue,
        #[wasm_bindgen(unchecked_optional_param_type = "RerankOptions")] options: Option<JsValue>,
    ) -> js_sys::Promise {
        let options = options.unwrap_or(JsValue::UNDEFINED);
        self.slot.call(move |inner| async move {
            let query = string_arg(&query, "query").map_err(js_err)?;
            if !js_sys::Array::is_array(&documents) {
                return Err(js_err(Error::Type(format!("documents must be an array of strings, got {}", type_name(&documents)))));
            }
            let docs = strings_arg(&documents, "documents").map_err(js_err)?;
            let o: RerankOptionsJs = options::parse(&options, "rerank", &[RerankOptionsJs::KEYS]).map_err(js_err)?;
            let refs: Vec<&str> = docs.iter().map(String::as_str).collect();
            let results = inner.rerank(&query, &refs, o.top_n).await.map_err(js_err)?;
            let out = js_sys::Array::new();
            for r in results {
                let o2 = Object::new();
                Reflect::set(&o2, &"index".into(), &(r.index as u32).into())?;
                Reflect::set(&o2, &"score".into(), &r.score.into())?;
                Reflect::set(&o2, &"logit".into(), &r.logit.into())?;
                if o.return_documents == Some(true) {
                    Reflect::set(&o2, &"document".into(), &docs[r.index].as_str().into())?;
                }
                out.push(&o2);
            }
            Ok(out.into())
        })
    }

    /// Where the model runs: "webgpu" or "cpu" (see `LoadOptions.device`).
    #[wasm_bindgen(getter, unchecked_return_type = "\"webgpu\" | \"cpu\"")]
    pub fn device(&self) -> String {
        self.slot.device().into()
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
    embedder: RefCell<Option<IndexEmbedder>>,
}

/// The embedder of an index and the call options of its documents and queries.
#[derive(Clone)]
struct IndexEmbedder {
    embedder: Rc<RsEmbedder>,
    document: crate::engine::EmbedCallOptions,
    query: crate::engine::EmbedCallOptions,
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
    if js_sys::Array::is_array(v) {
        return strings_arg(v, what).map(Items::Texts);
    }
    Err(Error::Type(format!("{what} must be a string, an array of strings or a Float32Array, got {}", type_name(v))))
}

/// `IndexOptions` from JS (`{ storage: "f32" | "f16", device }`), and the index's device.
async fn index_options(options: &JsValue, what: &str) -> Result<(crate::engine::IndexOptions, Gpu), Error> {
    use crate::engine::{IndexOptions, IndexStorage};
    let o: IndexOptionsJs = options::parse(options, what, &[IndexOptionsJs::KEYS])?;
    let device: DeviceChoice = o.device.as_deref().map(str::parse).transpose()?.unwrap_or_default();
    let storage = match o.storage.as_deref() {
        None | Some("f32") => IndexStorage::F32,
        Some("f16") => IndexStorage::F16,
        Some(other) => return Err(Error::Input(format!("storage `{other}`: expected \"f32\" or \"f16\""))),
    };
    Ok((IndexOptions { storage, barrier_free: None }, device_for(device, true).await?))
}

/// Embeds texts to a GPU tensor with the index's embedder.
fn embed_texts(embedder: &Option<IndexEmbedder>, texts: &[String], query: bool) -> Result<Option<crate::gpu::GpuTensor>, Error> {
    let e = embedder.as_ref().ok_or_else(|| Error::Input("this index has no embedder: pass vectors, or create it with one".into()))?;
    let refs: Vec<&str> = texts.iter().map(String::as_str).collect();
    Ok(e.embedder.embed_tensor_with(&refs, if query { &e.query } else { &e.document })?.0)
}

#[wasm_bindgen]
impl SearchIndex {
    /// An empty index for `dim`-wide vectors. Call `useEmbedder` to add and search text.
    #[wasm_bindgen(unchecked_return_type = "Promise<SearchIndex>")]
    pub fn create(
        #[wasm_bindgen(unchecked_param_type = "number")] dim: JsValue,
        #[wasm_bindgen(unchecked_optional_param_type = "IndexOptions")] options: Option<JsValue>,
    ) -> js_sys::Promise {
        let options = options.unwrap_or(JsValue::UNDEFINED);
        wasm_bindgen_futures::future_to_promise(async move {
            let dim = count_arg(&dim, "dim", 1, 1 << 16).map_err(js_err)?;
            let (opts, gpu) = index_options(&options, "SearchIndex.create").await.map_err(js_err)?;
            let index = RsIndex::with_options(&gpu, dim, opts).map_err(js_err)?;
            Ok(SearchIndex::new(gpu, index).into())
        })
    }

    /// Lets `add` and `search` take text, embedded on the GPU with `embedder` (whose width
    /// must match the index), with the model's task prompts for documents and queries when it
    /// has them (`IndexEmbedOptions`). The embedder stays usable on its own.
    #[wasm_bindgen(js_name = useEmbedder)]
    pub fn use_embedder(
        &self,
        embedder: &Embedder,
        #[wasm_bindgen(unchecked_optional_param_type = "IndexEmbedOptions")] options: Option<JsValue>,
    ) -> Result<(), JsValue> {
        let o: options::IndexEmbedOptionsJs =
            options::parse(&options.unwrap_or(JsValue::UNDEFINED), "useEmbedder", &[options::IndexEmbedOptionsJs::KEYS]).map_err(js_err)?;
        let e = embedder.slot.get().map_err(js_err)?;
        // An explicit name must be one of the model's prompts; "" is none; absent is the
        // role's own prompt when the model has one, else the model's default.
        let call = |given: Option<String>, role: &str| -> Result<crate::engine::EmbedCallOptions, Error> {
            let (prompt_name, prompt) = match given {
                // A literal empty prompt: none, not even the model's default.
                Some(n) if n.is_empty() => (None, Some(String::new())),
                Some(n) if !e.prompts().contains_key(&n) => {
                    let known: Vec<&String> = e.prompts().keys().collect();
                    return Err(Error::Input(format!("prompt `{n}` is not one of the model's prompts {known:?}")));
                }
                Some(n) => (Some(n), None),
                None => (e.prompts().contains_key(role).then(|| role.to_string()), None),
            };
            Ok(crate::engine::EmbedCallOptions { prompt_name, prompt, dimensions: None })
        };
        let (document, query) = (call(o.document_prompt_name, "document").map_err(js_err)?, call(o.query_prompt_name, "query").map_err(js_err)?);
        let state = self.slot.get().map_err(js_err)?;
        let dim = state.index.borrow().dim();
        if e.dim() != dim {
            return Err(js_err(Error::Input(format!("embedder width {} does not match the index dimension {dim}", e.dim()))));
        }
        if e.gpu().device_name() != self.slot.device() {
            return Err(js_err(Error::Input(format!(
                "the embedder runs on {} and the index on {}: create the index with {{ device: \"{}\" }}",
                e.gpu().device_name(),
                self.slot.device(),
                e.gpu().device_name()
            ))));
        }
        *state.embedder.borrow_mut() = Some(IndexEmbedder { embedder: e, document, query });
        Ok(())
    }

    /// Adds texts (embedded on the GPU, never read back) or a Float32Array of `n × dim`
    /// values. Resolves to the new ids.
    #[wasm_bindgen(unchecked_return_type = "Promise<Uint32Array>")]
    pub fn add(&self, #[wasm_bindgen(unchecked_param_type = "string | string[] | Float32Array")] items_: JsValue) -> js_sys::Promise {
        self.slot.call(move |state| async move {
            let embedder = state.embedder.borrow().clone();
            let first = match items(&items_, "items").map_err(js_err)? {
                Items::Texts(t) => match embed_texts(&embedder, &t, false).map_err(js_err)? {
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
            let o: SearchOptionsJs = options::parse(&options, "search", &[SearchOptionsJs::KEYS]).map_err(js_err)?;
            let k = o.k.unwrap_or(10);
            let mode = match o.mode.as_deref() {
                None | Some("exact") => SearchMode::Exact,
                Some("binary") => SearchMode::Binary { candidates: o.candidates.unwrap_or(200) },
                Some("int8") => SearchMode::BinaryInt8 { candidates: o.candidates.unwrap_or(200), rescore: o.rescore.unwrap_or(40) },
                Some(other) => return Err(js_err(Error::Input(format!("mode `{other}`: expected \"exact\", \"binary\" or \"int8\"")))),
            };
            // A snapshot, so no RefCell borrow is held across the await below.
            let snapshot = state.index.borrow().clone();
            let embedder = state.embedder.borrow().clone();
            let hits = match items(&query, "query").map_err(js_err)? {
                Items::Texts(t) if t.len() == 1 => {
                    let q = embed_texts(&embedder, &t, true).map_err(js_err)?.ok_or_else(|| js_err(Error::Input("empty query".into())))?;
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
    pub fn size(&self) -> Result<usize, JsValue> {
        self.slot.get().map(|s| s.index.borrow().len()).map_err(js_err)
    }

    /// Vector width.
    #[wasm_bindgen(getter)]
    pub fn dim(&self) -> Result<usize, JsValue> {
        self.slot.get().map(|s| s.index.borrow().dim()).map_err(js_err)
    }

    /// Where the index runs: "webgpu" or "cpu" (see `IndexOptions.device`).
    #[wasm_bindgen(getter, unchecked_return_type = "\"webgpu\" | \"cpu\"")]
    pub fn device(&self) -> String {
        self.slot.device().into()
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
        #[wasm_bindgen(unchecked_param_type = "Uint8Array")] bytes: JsValue,
        #[wasm_bindgen(unchecked_param_type = "number")] dim: JsValue,
        #[wasm_bindgen(unchecked_optional_param_type = "IndexOptions")] options: Option<JsValue>,
    ) -> js_sys::Promise {
        let options = options.unwrap_or(JsValue::UNDEFINED);
        wasm_bindgen_futures::future_to_promise(async move {
            let bytes = bytes
                .dyn_ref::<js_sys::Uint8Array>()
                .map(|a| a.to_vec())
                .ok_or_else(|| js_err(Error::Type(format!("bytes must be a Uint8Array, got {}", type_name(&bytes)))))?;
            let dim = count_arg(&dim, "dim", 1, 1 << 16).map_err(js_err)?;
            let (opts, gpu) = index_options(&options, "SearchIndex.import").await.map_err(js_err)?;
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
