//! The JS boundary (wasm32 only): thin wasm-bindgen wrappers over [`crate::engine`].
//!
//! Style follows transformers.js: async factories (`await Embedder.load(url, options)`),
//! progress events discriminated by `status`, an options object, `dispose()`. Errors become
//! JS `Error`s carrying the crate error's message. Results cross as typed arrays.

use std::cell::RefCell;
use std::rc::Rc;

use js_sys::{Function, Object, Reflect};
use wasm_bindgen::prelude::*;

use crate::engine::{EmbedOptions, Embedder as RsEmbedder, RerankOptions, Reranker as RsReranker};
use crate::error::Error;
use crate::gpu::Gpu;
use crate::loader::{HttpSource, Progress};

#[wasm_bindgen(typescript_custom_section)]
const TS_TYPES: &'static str = r#"
/** A load progress event, in transformers.js style. */
export interface ProgressEvent {
  status: "initiate" | "progress" | "done" | "ready";
  /** File being read (absent for "ready"). */
  file?: string;
  /** Bytes read so far ("progress"). */
  loaded?: number;
  /** Bytes to read ("progress"). */
  total?: number;
  /** loaded / total × 100 ("progress"). */
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

fn js_err(e: Error) -> JsValue {
    JsError::new(&e.to_string()).into()
}

thread_local! {
    static GPU: RefCell<Option<Gpu>> = const { RefCell::new(None) };
}

/// The page's (or worker's) one GPU device, acquired on first use.
async fn shared_gpu() -> Result<Gpu, Error> {
    if let Some(g) = GPU.with(|g| g.borrow().clone()) {
        if g.check_errors().is_ok() {
            return Ok(g);
        }
    }
    let has_webgpu = Reflect::get(&js_sys::global(), &"navigator".into())
        .ok()
        .and_then(|n| Reflect::get(&n, &"gpu".into()).ok())
        .is_some_and(|g| !g.is_undefined() && !g.is_null());
    if !has_webgpu {
        return Err(Error::NoAdapter(
            "WebGPU is unavailable (navigator.gpu is missing): use a browser with WebGPU enabled \
             (Chrome/Edge 113+, or enable it in chrome://flags / about:config)"
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
        Progress::Ready => set("status", "ready".into()),
    }
    o
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

/// Sentence embeddings on the GPU.
#[wasm_bindgen]
pub struct Embedder {
    inner: Option<Rc<RsEmbedder>>,
}

#[wasm_bindgen]
impl Embedder {
    /// Loads a model folder served at `base_url` (`config.json`, `tokenizer.json`,
    /// `model.safetensors`, sentence-transformers files).
    #[wasm_bindgen(unchecked_return_type = "Promise<Embedder>")]
    pub fn load(
        base_url: String,
        #[wasm_bindgen(unchecked_param_type = "EmbedderLoadOptions")] options: Option<JsValue>,
    ) -> js_sys::Promise {
        wasm_bindgen_futures::future_to_promise(async move {
            let options = options.unwrap_or(JsValue::UNDEFINED);
            let (opts, callback) = parse_embed_options(&options).map_err(js_err)?;
            let gpu = shared_gpu().await.map_err(js_err)?;
            let inner = RsEmbedder::load(&gpu, &HttpSource::new(&base_url), opts, &reporter(callback)).await.map_err(js_err)?;
            Ok(Embedder { inner: Some(Rc::new(inner)) }.into())
        })
    }

    /// Embeds `texts`; resolves to `{ data: Float32Array, dims: [n, d] }`. One GPU readback
    /// per call.
    #[wasm_bindgen(unchecked_return_type = "Promise<EmbedResult>")]
    pub fn embed(&self, texts: Vec<String>) -> js_sys::Promise {
        let inner = self.inner.clone();
        wasm_bindgen_futures::future_to_promise(async move {
            let inner = inner.ok_or_else(|| js_err(Error::Disposed("Embedder")))?;
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
        self.inner.as_ref().map(|e| e.dim()).ok_or_else(|| JsError::new(&Error::Disposed("Embedder").to_string()))
    }

    /// Frees the model's GPU memory. Later calls fail with a clear error.
    pub fn dispose(&mut self) {
        self.inner = None;
        GPU.with(|g| {
            if let Some(g) = g.borrow().as_ref() {
                g.trim();
            }
        });
    }
}

/// Cross-encoder reranker (`BertForSequenceClassification` with one label).
#[wasm_bindgen]
pub struct Reranker {
    inner: Option<Rc<RsReranker>>,
}

#[wasm_bindgen]
impl Reranker {
    /// Loads a cross-encoder folder served at `base_url` (`config.json`, `tokenizer.json`,
    /// `model.safetensors`).
    #[wasm_bindgen(unchecked_return_type = "Promise<Reranker>")]
    pub fn load(
        base_url: String,
        #[wasm_bindgen(unchecked_param_type = "RerankerLoadOptions")] options: Option<JsValue>,
    ) -> js_sys::Promise {
        wasm_bindgen_futures::future_to_promise(async move {
            let options = options.unwrap_or(JsValue::UNDEFINED);
            let opts = RerankOptions { max_length: count(&options, "max_length").map_err(js_err)?, batch_size: count(&options, "batch_size").map_err(js_err)? };
            let callback = progress_callback(&options).map_err(js_err)?;
            let gpu = shared_gpu().await.map_err(js_err)?;
            let inner = RsReranker::load(&gpu, &HttpSource::new(&base_url), opts, &reporter(callback)).await.map_err(js_err)?;
            Ok(Reranker { inner: Some(Rc::new(inner)) }.into())
        })
    }

    /// Scores `docs` against `query`, all pairs in one batch; resolves to results sorted
    /// by score, highest first. An empty `docs` resolves to `[]`.
    #[wasm_bindgen(unchecked_return_type = "Promise<RerankResult[]>")]
    pub fn rerank(
        &self,
        query: String,
        docs: Vec<String>,
        #[wasm_bindgen(unchecked_param_type = "RerankOptions")] options: Option<JsValue>,
    ) -> js_sys::Promise {
        let inner = self.inner.clone();
        wasm_bindgen_futures::future_to_promise(async move {
            let inner = inner.ok_or_else(|| js_err(Error::Disposed("Reranker")))?;
            let options = options.unwrap_or(JsValue::UNDEFINED);
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

    /// Frees the model's GPU memory. Later calls fail with a clear error.
    pub fn dispose(&mut self) {
        self.inner = None;
        GPU.with(|g| {
            if let Some(g) = g.borrow().as_ref() {
                g.trim();
            }
        });
    }
}
