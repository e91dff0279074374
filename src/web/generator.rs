//! JS wrapper of [`crate::engine::Generator`]: `await Generator.load(url, { dtype,
//! progress_callback })`, `await generator.generate(prompt | messages, options)` with a
//! per-token `callback` for streaming and an `AbortSignal`.

use std::cell::RefCell;
use std::rc::Rc;

use js_sys::{Array, Function, Object, Reflect};
use wasm_bindgen::prelude::*;

use super::{get, js_err, progress_callback, reporter, shared_gpu, Slot};
use crate::engine::{GenerateOptions, Generator as RsGenerator, GeneratorOptions, Prompt};
use crate::error::Error;
use crate::nn::LoadDType;
use crate::kernels::sample::SamplingConfig;
use crate::loader::HttpSource;
use crate::tokenizer::chat::ChatMessage as Message;

#[wasm_bindgen(typescript_custom_section)]
const TS_GENERATOR: &'static str = r#"
export interface GeneratorLoadOptions {
  /** Storage of the weights on the GPU; activations are f32. Default "f16". "auto" keeps
   *  GGUF blocks quantized; "q8_0", "q4_0", ... quantize on load. */
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
"#;

fn number(options: &JsValue, key: &str) -> Result<Option<f64>, Error> {
    get(options, key)
        .map(|v| v.as_f64().filter(|n| n.is_finite()).ok_or_else(|| Error::Input(format!("{key} must be a number"))))
        .transpose()
}

fn whole(options: &JsValue, key: &str, max: f64) -> Result<Option<u64>, Error> {
    match number(options, key)? {
        Some(n) if n.fract() == 0.0 && n >= 0.0 && n <= max => Ok(Some(n as u64)),
        Some(_) => Err(Error::Input(format!("{key} must be an integer in 0..={max}"))),
        None => Ok(None),
    }
}

fn parse_options(options: &JsValue) -> Result<(GenerateOptions, Option<JsValue>, Option<Function>), Error> {
    let mut o = GenerateOptions::default();
    if options.is_undefined() || options.is_null() {
        return Ok((o, None, None));
    }
    let mut s = SamplingConfig::default();
    if let Some(n) = whole(options, "max_new_tokens", 1e7)? {
        o.max_new_tokens = n as usize;
    }
    if let Some(t) = number(options, "temperature")? {
        s.temperature = t as f32;
    }
    if let Some(k) = whole(options, "top_k", u32::MAX as f64)? {
        s.top_k = k as u32;
    }
    if let Some(p) = number(options, "top_p")? {
        s.top_p = p as f32;
    }
    if let Some(r) = number(options, "repetition_penalty")? {
        s.repetition_penalty = r as f32;
    }
    if let Some(seed) = whole(options, "seed", 9007199254740991.0)? {
        s.seed = seed;
    }
    o.sampling = s;
    if let Some(stop) = get(options, "stop") {
        let arr: Array = stop.dyn_into().map_err(|_| Error::Input("stop must be an array of strings".into()))?;
        o.stop = arr
            .iter()
            .map(|v| v.as_string().ok_or_else(|| Error::Input("stop must be an array of strings".into())))
            .collect::<Result<_, _>>()?;
    }
    let callback = match get(options, "callback") {
        Some(f) => Some(f.dyn_into::<Function>().map_err(|_| Error::Input("callback must be a function".into()))?),
        None => None,
    };
    Ok((o, get(options, "signal"), callback))
}

fn aborted(signal: &Option<JsValue>) -> bool {
    signal.as_ref().and_then(|s| get(s, "aborted")).and_then(|v| v.as_bool()).unwrap_or(false)
}

/// Text generation with a Llama-family decoder (sampling on the GPU).
#[wasm_bindgen]
pub struct Generator {
    /// The call lane (`super::lane`): one generate stream at a time per generator, while
    /// other objects (a reranker, an index) run between its token steps.
    slot: Rc<Slot<RefCell<RsGenerator>>>,
}

#[wasm_bindgen]
impl Generator {
    /// Loads a model folder served at `base_url` (`config.json`, `generation_config.json`,
    /// `tokenizer.json`, `tokenizer_config.json`, `model.safetensors`).
    #[wasm_bindgen(unchecked_return_type = "Promise<Generator>")]
    pub fn load(
        base_url: String,
        #[wasm_bindgen(unchecked_param_type = "GeneratorLoadOptions")] options: Option<JsValue>,
    ) -> js_sys::Promise {
        wasm_bindgen_futures::future_to_promise(async move {
            let options = options.unwrap_or(JsValue::UNDEFINED);
            let dtype: LoadDType = match get(&options, "dtype").and_then(|v| v.as_string()) {
                None => LoadDType::F16,
                Some(d) => d.parse().map_err(js_err)?,
            };
            let callback = progress_callback(&options).map_err(js_err)?;
            let gpu = shared_gpu().await.map_err(js_err)?;
            let inner = RsGenerator::load(&gpu, &HttpSource::new(&base_url), GeneratorOptions { dtype }, &reporter(callback))
                .await
                .map_err(js_err)?;
            Ok(Generator { slot: Slot::new("Generator", gpu, RefCell::new(inner)) }.into())
        })
    }

    /// Continues `prompt` (a string, tokenized as is) or answers `messages` (rendered with
    /// the model's chat template). Calls on one generator run one after another, in order.
    #[wasm_bindgen(unchecked_return_type = "Promise<GenerateResult>")]
    pub fn generate(
        &self,
        #[wasm_bindgen(unchecked_param_type = "string | ChatMessage[]")] prompt: JsValue,
        #[wasm_bindgen(unchecked_param_type = "GenerateOptions")] options: Option<JsValue>,
    ) -> js_sys::Promise {
        // The lane runs one call of this generator at a time, so the `RefCell` borrow held
        // across the stream's awaits never meets another.
        #[allow(clippy::await_holding_refcell_ref)]
        self.slot.call(move |inner| async move {
            let options = options.unwrap_or(JsValue::UNDEFINED);
            let (opts, signal, callback) = parse_options(&options).map_err(js_err)?;
            let text = prompt.as_string();
            let messages: Vec<Message> = if text.is_none() {
                let arr: Array = prompt.dyn_into().map_err(|_| js_err(Error::Input("prompt must be a string or an array of messages".into())))?;
                arr.iter()
                    .map(|m| {
                        let field = |k: &str| get(&m, k).and_then(|v| v.as_string());
                        match (field("role"), field("content")) {
                            (Some(role), Some(content)) => Ok(Message { role, content }),
                            _ => Err(js_err(Error::Input("each message needs string `role` and `content`".into()))),
                        }
                    })
                    .collect::<Result<_, _>>()?
            } else {
                Vec::new()
            };
            let prompt = match &text {
                Some(t) => Prompt::Text(t),
                None => Prompt::Messages(&messages),
            };
            let mut g = inner.try_borrow_mut().map_err(|_| js_err(Error::Input("this Generator is busy with another generate call".into())))?;
            let out = if aborted(&signal) {
                crate::engine::Generation {
                    prompt_ids: g.prompt_ids(prompt).map_err(js_err)?,
                    tokens: vec![],
                    text: String::new(),
                    finish_reason: crate::engine::FinishReason::Abort,
                }
            } else {
                g.generate_stream(prompt, &opts, &mut |piece, id| {
                    if let Some(cb) = &callback {
                        let _ = cb.call2(&JsValue::NULL, &piece.into(), &id.into());
                    }
                    !aborted(&signal)
                })
                .await
                .map_err(js_err)?
            };
            let o = Object::new();
            Reflect::set(&o, &"text".into(), &out.text.as_str().into())?;
            Reflect::set(&o, &"tokens".into(), &js_sys::Uint32Array::from(&out.tokens[..]))?;
            Reflect::set(&o, &"prompt_ids".into(), &js_sys::Uint32Array::from(&out.prompt_ids[..]))?;
            Reflect::set(&o, &"finish_reason".into(), &out.finish_reason.as_str().into())?;
            Ok(o.into())
        })
    }

    /// Releases the model and its KV cache once the calls already made have finished; later
    /// calls reject with "this Generator was disposed". Resolves when the memory is freed.
    #[wasm_bindgen(unchecked_return_type = "Promise<void>")]
    pub fn dispose(&self) -> js_sys::Promise {
        self.slot.dispose()
    }
}
