//! The JS option objects, each declared once. [`js_options!`] turns one list of fields into
//! the serde struct the boundary deserializes and the TypeScript interface of the package's
//! `.d.ts` (a `typescript_custom_section`), so the two cannot drift. Every class's `load`
//! takes [`LoadOptionsJs`] plus its own keys; an unknown key is an error naming the keys
//! that exist.

use js_sys::{Array, Function, Object, Reflect};
use serde::Deserialize;
use wasm_bindgen::prelude::*;
use wasm_bindgen::JsCast;

use crate::engine::LoadOptions;
use crate::error::Error;
use crate::loader::{StreamOptions, WebSource};

/// Declares a JS options object: `Name, TS_CONST, "TsName" [: "Parent"] { field: RustType =
/// "ts type", .. }`. Doc comments become the TypeScript doc comments. Every field is
/// optional (`Option<RustType>`); `KEYS` lists the field names.
macro_rules! js_options {
    (
        $(#[doc = $doc:literal])*
        $name:ident, $ts_const:ident, $ts_name:literal $(: $parent:literal)? {
            $( $(#[doc = $fdoc:literal])* $field:ident : $ty:ty = $ts:literal, )*
        }
    ) => {
        $(#[doc = $doc])*
        #[derive(Debug, Default, serde::Deserialize)]
        #[allow(dead_code)] // `JsOnly` placeholders: the values are read from the JS object
        pub struct $name {
            $( $(#[doc = $fdoc])* #[serde(default)] pub $field: Option<$ty>, )*
        }

        impl $name {
            /// The JS keys this object takes.
            pub const KEYS: &'static [&'static str] = &[$(stringify!($field)),*];
        }

        #[wasm_bindgen(typescript_custom_section)]
        const $ts_const: &'static str = concat!(
            "\n/**", $($doc, "\n *",)* "/\nexport interface ", $ts_name, $(" extends ", $parent,)? " {\n",
            $( "  /**", $($fdoc, "\n   *",)* "/\n  ", stringify!($field), "?: ", $ts, ";\n", )*
            "}\n"
        );
    };
}


/// A value only JS can hold (a function, an `AbortSignal`): the boundary reads it from the
/// options object itself; in the parsed struct it is a placeholder.
#[derive(Debug, Default, Deserialize)]
pub struct JsOnly {}

js_options! {
    /// Options every `load` takes (`Embedder`, `Reranker`, `Generator`, `streamWeights`).
    LoadOptionsJs, TS_LOAD_OPTIONS, "LoadOptions" {
        /// How weights are stored on the GPU. "auto" (default; a safetensors decoder
        /// defaults to "f16"): as in the file, GGUF blocks kept quantized; "f32"; "f16";
        /// or a block format to quantize the linear layers to on load ("q8_0" and "q4_0"
        /// on the GPU as they stream).
        dtype: String = "\"auto\" | \"f32\" | \"f16\" | \"q8_0\" | \"q4_0\" | \"q4_1\" | \"q5_0\" | \"q5_1\" | \"q2_K\" | \"q3_K\" | \"q4_K\" | \"q5_K\" | \"q6_K\" | \"iq4_nl\"",
        /// Browser cache for the weights (Cache API): true (default, cache "gllm-web"),
        /// false, or a cache name. A second load of the same model then makes no network
        /// request.
        cache: serde_json::Value = "boolean | string",
        /// Bytes per HTTP Range request of the streaming loader. Default 8 MiB.
        chunk_size: u64 = "number",
        /// Range requests in flight at once. Default 6.
        concurrency: usize = "number",
        /// Extra attempts for a failed request. Default 3.
        retries: u32 = "number",
        /// Cancels the load; what was uploaded is freed and the promise rejects with an
        /// `AbortError`.
        signal: JsOnly = "AbortSignal",
        /// Called for each load progress event.
        progress_callback: JsOnly = "(event: ProgressEvent) => void",
        /// Where the model runs: "auto" (default) takes WebGPU when the adapter is a real
        /// GPU and otherwise the CPU backend (wasm SIMD; no WebGPU, or a CPU emulating one
        /// such as SwiftShader); "webgpu"; "cpu". The CPU backend runs `Embedder`,
        /// `Reranker` and `SearchIndex`; a `Generator` under "auto" takes any adapter. The
        /// loaded object's `device` says which it got.
        device: String = "\"auto\" | \"webgpu\" | \"cpu\"",
    }
}

js_options! {
    /// `Embedder.load` options.
    EmbedderLoadOptionsJs, TS_EMBEDDER_LOAD_OPTIONS, "EmbedderLoadOptions": "LoadOptions" {
        /// Default: the model's sentence-transformers config, else "last_token" for a
        /// decoder (Qwen3, Qwen2, Llama) and "mean" for an encoder.
        pooling: String = "\"mean\" | \"cls\" | \"last_token\"",
        /// L2-normalise each embedding. Default: the model's config, else true.
        normalize: bool = "boolean",
        /// Longest input in tokens (special tokens included); longer texts are truncated
        /// from the end, keeping [SEP]. Default: sentence_bert_config.json's
        /// max_seq_length, else the model's maximum.
        max_length: usize = "number",
        /// Texts per forward pass. Default 32.
        batch_size: usize = "number",
    }
}

js_options! {
    /// `embed` options.
    EmbedOptionsJs, TS_EMBED_OPTIONS, "EmbedOptions" {
        /// A task prompt of the model's config_sentence_transformers.json ("query",
        /// "document", ... for EmbeddingGemma), prepended to every text. Default: the
        /// model's default_prompt_name, if any.
        prompt_name: String = "string",
        /// A literal prompt prepended to every text; wins over prompt_name.
        prompt: String = "string",
        /// Matryoshka truncation: keep the first n dimensions (renormalised when the model
        /// normalises). Default: all.
        dimensions: usize = "number",
    }
}

js_options! {
    /// `Reranker.load` options.
    RerankerLoadOptionsJs, TS_RERANKER_LOAD_OPTIONS, "RerankerLoadOptions": "LoadOptions" {
        /// Longest (query, document) pair in tokens; documents are truncated to fit.
        /// Default: the model's maximum.
        max_length: usize = "number",
        /// Pairs per forward pass. Default 64.
        batch_size: usize = "number",
        /// A decoder reranker's task instruction (Qwen3-Reranker's `<Instruct>`). Default:
        /// "Given a web search query, retrieve relevant passages that answer the query".
        /// A cross-encoder has none: setting it there is an error.
        instruction: String = "string",
    }
}

js_options! {
    /// `Generator.load` options (the weights file may be named in the URL: a `.gguf` URL
    /// loads that file, its config, tokenizer and chat template from its metadata).
    GeneratorLoadOptionsJs, TS_GENERATOR_LOAD_OPTIONS, "GeneratorLoadOptions": "LoadOptions" {
        /// Element type of the KV cache. Default "f16" where the adapter has `shader-f16`,
        /// else "f32". The f16 cache (half the memory) is stored packed, two halves per
        /// 32-bit word, so it works on any adapter; greedy output matches the f32 cache's
        /// except where the top two logits are within about 0.05. The loaded generator's
        /// `kv_dtype` says which it got.
        kv_dtype: String = "\"f16\" | \"f32\"",
    }
}

js_options! {
    /// `streamWeights` options.
    StreamWeightsOptionsJs, TS_STREAM_WEIGHTS_OPTIONS, "StreamWeightsOptions": "LoadOptions" {
        /// The weights file. Default "model.safetensors".
        file: String = "string",
    }
}

js_options! {
    /// `rerank` options.
    RerankOptionsJs, TS_RERANK_OPTIONS, "RerankOptions" {
        /// Keep only the best n results. Default: all.
        top_n: usize = "number",
        /// Include each document's text in its result. Default false.
        return_documents: bool = "boolean",
    }
}

js_options! {
    /// `SearchIndex.useEmbedder` options: the task prompts (the model's
    /// config_sentence_transformers.json `prompts`) for the texts `add` embeds and for the
    /// query `search` embeds. "" means no prompt.
    IndexEmbedOptionsJs, TS_INDEX_EMBED_OPTIONS, "IndexEmbedOptions" {
        /// Prompt for queries. Default "query" when the model defines it (EmbeddingGemma),
        /// else the model's default prompt.
        query_prompt_name: String = "string",
        /// Prompt for documents. Default "document" when the model defines it, else the
        /// model's default prompt.
        document_prompt_name: String = "string",
    }
}

js_options! {
    /// `SearchIndex.search` options.
    SearchOptionsJs, TS_SEARCH_OPTIONS, "SearchOptions" {
        /// Number of hits, 1..=256. Default 10.
        k: usize = "number",
        /// "exact" (default): every vector is scored. "binary": sign-bit Hamming
        /// candidates, then exact rescoring of `candidates` of them. "int8": Hamming
        /// candidates, int8 scoring keeping `rescore` of them, then exact rescoring.
        mode: String = "\"exact\" | \"binary\" | \"int8\"",
        /// Binary and int8 modes: Hamming candidates (k..=256). Default 200.
        candidates: usize = "number",
        /// Int8 mode: candidates rescored exactly (k..=candidates). Default 40.
        rescore: usize = "number",
    }
}

js_options! {
    /// `SearchIndex.create` / `SearchIndex.import` options.
    IndexOptionsJs, TS_INDEX_OPTIONS, "IndexOptions" {
        /// Storage of the exact vectors on the GPU: "f32" (default) or "f16" (half the
        /// memory, scores within 1e-3; the dimension must be even).
        storage: String = "\"f32\" | \"f16\"",
        /// Where the index lives: "auto" (default, chosen as `LoadOptions.device`),
        /// "webgpu" or "cpu". An index searches text only with an embedder on the same device.
        device: String = "\"auto\" | \"webgpu\" | \"cpu\"",
    }
}

js_options! {
    /// `generate` options.
    GenerateOptionsJs, TS_GENERATE_OPTIONS, "GenerateOptions" {
        /// Default 256.
        max_new_tokens: usize = "number",
        /// 0 (default) is greedy.
        temperature: f32 = "number",
        /// 0 (default) disables top-k.
        top_k: u32 = "number",
        /// 1 (default) disables top-p.
        top_p: f32 = "number",
        /// 1 (default) disables the penalty.
        repetition_penalty: f32 = "number",
        /// Seed of the GPU sampler (default 0): same seed, same tokens.
        seed: u64 = "number",
        /// Stop when the text contains one of these (the text ends before it).
        stop: Vec<String> = "string[]",
        /// Reuse the KV cache of this generator's previous call for the longest common
        /// prefix of its tokens and this prompt, so a chat's next turn prefills only the new
        /// tokens. Default true.
        prefix_cache: bool = "boolean",
        /// Speculative decoding with drafts looked up in the prompt and the output so far
        /// (prompt lookup): up to `k` drafted tokens (default 8) per pass, matched on the last
        /// `ngram` tokens (default 3), all checked by the model in one pass. Greedy decoding
        /// only (temperature 0, no repetition penalty), where the output equals plain greedy
        /// decoding; ignored with sampling settings.
        speculative: SpeculativeJs = "{ mode: \"prompt_lookup\"; k?: number; ngram?: number }",
        /// Tokens the KV cache holds at most (default, and at most: the model's context).
        cache_tokens: usize = "number",
        /// When a conversation outgrows the cache (default true): keep its first
        /// `sink_tokens` tokens and the most recent ones, dropping the oldest in between
        /// (StreamingLLM). A prompt longer than the cache loses its middle; a full cache drops
        /// half of its tokens after the sinks. The result's `evicted` counts what was dropped.
        /// False: a prompt that does not fit is an error, and generation stops at the cache's
        /// end (`finish_reason: "length"`).
        context_shift: bool = "boolean",
        /// Attention sinks a context shift keeps (default 4).
        sink_tokens: usize = "number",
        /// Aborting stops generation after the current token; the generator stays usable.
        signal: JsOnly = "AbortSignal",
        /// Called after each new token with the text it completes (may be empty while a
        /// UTF-8 character or a possible stop string is incomplete) and the token id.
        callback: JsOnly = "(text: string, token: number) => void",
    }
}

/// `GenerateOptions.speculative`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SpeculativeJs {
    pub mode: String,
    #[serde(default)]
    pub k: Option<usize>,
    #[serde(default)]
    pub ngram: Option<usize>,
}

/// An options object as JSON for serde: plain values converted, JS-only values (`JsOnly`
/// keys: functions, signals) type-checked and left to the caller. `undefined` or `null`
/// options are `{}`. Keys not in `keys` are an error naming the known ones.
pub(crate) fn parse<T: serde::de::DeserializeOwned>(options: &JsValue, what: &str, keys: &[&[&str]]) -> Result<T, Error> {
    let json = if options.is_undefined() || options.is_null() {
        serde_json::Value::Object(Default::default())
    } else {
        if !options.is_object() || Array::is_array(options) {
            return Err(Error::Input(format!("{what}: options must be an object")));
        }
        let mut map = serde_json::Map::new();
        for key in Object::keys::<JsValue>(options.unchecked_ref()).iter() {
            let key = key.as_string().unwrap_or_default();
            if !keys.iter().any(|k| k.contains(&key.as_str())) {
                let known: Vec<&str> = keys.iter().flat_map(|k| k.iter().copied()).collect();
                return Err(Error::Input(format!("{what}: unknown option `{key}` (known: {})", known.join(", "))));
            }
            let v = Reflect::get(options, &key.as_str().into()).unwrap_or(JsValue::UNDEFINED);
            if v.is_undefined() {
                continue;
            }
            let value = match key.as_str() {
                "progress_callback" | "callback" => {
                    if !v.is_function() {
                        return Err(Error::Input(format!("{what}: {key} must be a function")));
                    }
                    serde_json::json!({})
                }
                "signal" => {
                    if Reflect::get(&v, &"aborted".into()).map(|a| a.as_bool().is_none()).unwrap_or(true) {
                        return Err(Error::Input(format!("{what}: signal must be an AbortSignal")));
                    }
                    serde_json::json!({})
                }
                _ => to_json(&v).map_err(|m| Error::Input(format!("{what}: option `{key}`: {m}")))?,
            };
            map.insert(key, value);
        }
        serde_json::Value::Object(map)
    };
    serde_json::from_value(json.clone()).map_err(|e| {
        // serde does not say which field failed: find the first key that fails on its own.
        let key = json.as_object().and_then(|m| {
            m.iter().find(|(k, v)| serde_json::from_value::<T>(serde_json::json!({ k.as_str(): v })).is_err()).map(|(k, _)| k.clone())
        });
        match key {
            Some(k) => Error::Input(format!("{what}: option `{k}`: {e}")),
            None => Error::Input(format!("{what}: {e}")),
        }
    })
}

/// A plain JS value as JSON: numbers (whole numbers as integers), strings, booleans, null,
/// arrays and plain objects of those.
fn to_json(v: &JsValue) -> Result<serde_json::Value, String> {
    if v.is_null() {
        return Ok(serde_json::Value::Null);
    }
    if let Some(b) = v.as_bool() {
        return Ok(b.into());
    }
    if let Some(n) = v.as_f64() {
        if !n.is_finite() {
            return Err(format!("{n} is not a finite number"));
        }
        if n.fract() == 0.0 && n.abs() < 9007199254740992.0 {
            return Ok((n as i64).into());
        }
        return Ok(serde_json::Number::from_f64(n).map(serde_json::Value::Number).unwrap_or(serde_json::Value::Null));
    }
    if let Some(s) = v.as_string() {
        return Ok(s.into());
    }
    if Array::is_array(v) {
        return Array::from(v).iter().map(|x| to_json(&x)).collect::<Result<Vec<_>, _>>().map(serde_json::Value::Array);
    }
    if v.is_function() {
        return Err("a function is not allowed here".into());
    }
    let plain = || {
        let proto: JsValue = Object::get_prototype_of(v).into();
        proto.is_null() || proto == JsValue::from(Object::get_prototype_of(&Object::new().into()))
    };
    if v.is_object() && plain() {
        let mut map = serde_json::Map::new();
        for key in Object::keys::<JsValue>(v.unchecked_ref()).iter() {
            let x = Reflect::get(v, &key).unwrap_or(JsValue::UNDEFINED);
            if !x.is_undefined() {
                map.insert(key.as_string().unwrap_or_default(), to_json(&x)?);
            }
        }
        return Ok(serde_json::Value::Object(map));
    }
    Err("expected a number, string, boolean, array or plain object".into())
}

/// What every `load` needs from its options: the engine's [`LoadOptions`], the model
/// source (Cache API in front of `fetch` unless `cache: false`), the progress callback and
/// the abort signal.
pub(crate) struct LoadContext {
    pub load: LoadOptions,
    pub src: WebSource,
    pub callback: Option<Function>,
    pub signal: Option<JsValue>,
}

impl LoadContext {
    /// `url` is a model folder, or a weights file (`….gguf`, `….safetensors`), whose folder
    /// is then the root.
    pub fn new(url: &str, raw: &JsValue, o: LoadOptionsJs) -> Result<Self, Error> {
        let (base, weights) = split_weights_url(url);
        let dtype = o.dtype.as_deref().map(str::parse).transpose()?;
        let device = o.device.as_deref().map(str::parse).transpose()?.unwrap_or_default();
        let d = StreamOptions::default();
        let positive = |k: &str, v: Option<u64>| match v {
            Some(0) => Err(Error::Input(format!("{k} must be a positive integer"))),
            v => Ok(v),
        };
        let stream = StreamOptions {
            chunk_size: positive("chunk_size", o.chunk_size)?.unwrap_or(d.chunk_size),
            concurrency: positive("concurrency", o.concurrency.map(|c| c as u64))?.map_or(d.concurrency, |c| c as usize),
            retries: o.retries.unwrap_or(d.retries),
        };
        let cache = match &o.cache {
            None | Some(serde_json::Value::Bool(true)) => Some("gllm-web".to_string()),
            Some(serde_json::Value::Bool(false)) => None,
            Some(serde_json::Value::String(s)) if !s.is_empty() => Some(s.clone()),
            Some(_) => return Err(Error::Input("option `cache`: expected a boolean or a cache name".into())),
        };
        let get = |k: &str| Reflect::get(raw, &k.into()).ok().filter(|v| !v.is_undefined() && !v.is_null());
        Ok(Self {
            load: LoadOptions { dtype, stream, weights, device },
            src: WebSource::new(&base, cache.as_deref()),
            callback: get("progress_callback").and_then(|f| f.dyn_into::<Function>().ok()),
            signal: get("signal"),
        })
    }

    /// Whether the load's `AbortSignal` has fired.
    pub fn aborted(&self) -> bool {
        self.signal.as_ref().is_some_and(|s| Reflect::get(s, &"aborted".into()).ok().and_then(|v| v.as_bool()) == Some(true))
    }
}

/// `https://h/m/x.gguf` → (`https://h/m`, `Some("x.gguf")`); a folder URL is kept whole.
fn split_weights_url(url: &str) -> (String, Option<String>) {
    let path = url.split(['?', '#']).next().unwrap_or(url);
    if path.ends_with(".gguf") || path.ends_with(".safetensors") {
        if let Some(i) = path.rfind('/') {
            return (url[..i].to_string(), Some(path[i + 1..].to_string()));
        }
    }
    (url.trim_end_matches('/').to_string(), None)
}
