//! JS wrapper of [`crate::engine::Generator`]: `await Generator.load(url, options)` (a
//! `.gguf` URL or a model folder; the common `LoadOptions`), `await generator.generate(prompt
//! | messages, options)` with a per-token `callback` for streaming and an `AbortSignal`.

use std::cell::RefCell;
use std::rc::Rc;

use js_sys::{Array, Function, Object, Reflect};
use wasm_bindgen::prelude::*;

use super::options::{GenerateOptionsJs, GeneratorLoadOptionsJs};
use super::{begin_load, get, js_err, reporter, Slot};
use crate::engine::{GenerateOptions, Generator as RsGenerator, GeneratorOptions, Prompt};
use crate::error::Error;
use crate::kernels::sample::SamplingConfig;
use crate::tokenizer::chat::ChatMessage as Message;

#[wasm_bindgen(typescript_custom_section)]
const TS_GENERATOR: &'static str = r#"
export interface ChatMessage {
  role: "system" | "user" | "assistant" | string;
  content: string;
}

export interface GenerateResult {
  /** The new text (special tokens skipped). */
  text: string;
  /** New token ids (an EOS id is the last when finish_reason is "eos"). */
  tokens: Uint32Array;
  prompt_ids: Uint32Array;
  finish_reason: "eos" | "stop" | "length" | "abort";
  /** With `speculative`: verify passes, plain decode steps (no draft found), tokens drafted,
   *  drafted tokens the model accepted, and passes that accepted only part of their drafts. */
  speculative?: { verify_steps: number; plain_steps: number; drafted: number; accepted: number; partial: number };
  /** Tokens dropped from what the model sees (`context_shift`): the middle of a prompt
   *  longer than the cache, and those a full cache shifted out. */
  evicted: number;
}
"#;

/// `GenerateOptions` from JS ([`GenerateOptionsJs`]), with its signal and callback.
fn parse_options(options: &JsValue) -> Result<(GenerateOptions, Option<JsValue>, Option<Function>), Error> {
    let o: GenerateOptionsJs = super::options::parse(options, "generate", &[GenerateOptionsJs::KEYS])?;
    let d = SamplingConfig::default();
    let sampling = SamplingConfig {
        temperature: o.temperature.unwrap_or(d.temperature),
        top_k: o.top_k.unwrap_or(d.top_k),
        top_p: o.top_p.unwrap_or(d.top_p),
        repetition_penalty: o.repetition_penalty.unwrap_or(d.repetition_penalty),
        seed: o.seed.unwrap_or(d.seed),
    };
    let opts = GenerateOptions {
        max_new_tokens: o.max_new_tokens.unwrap_or(GenerateOptions::default().max_new_tokens),
        sampling,
        stop: o.stop.unwrap_or_default(),
        ignore_eos: false,
        prefix_cache: o.prefix_cache.unwrap_or(true),
        speculative: match o.speculative {
            None => None,
            Some(sp) if sp.mode == "prompt_lookup" => {
                let d = crate::engine::Speculative::default();
                Some(crate::engine::Speculative { k: sp.k.unwrap_or(d.k), ngram: sp.ngram.unwrap_or(d.ngram) })
            }
            Some(sp) => return Err(Error::Input(format!("speculative mode `{}`: expected \"prompt_lookup\"", sp.mode))),
        },
        cache_tokens: o.cache_tokens,
        context_shift: o.context_shift.unwrap_or(true),
        sink_tokens: o.sink_tokens.unwrap_or(crate::engine::DEFAULT_SINK_TOKENS),
    };
    let callback = get(options, "callback").and_then(|f| f.dyn_into::<Function>().ok());
    Ok((opts, get(options, "signal"), callback))
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
    /// Element type of the KV cache, fixed at load.
    kv_dtype: crate::engine::KvDType,
}

#[wasm_bindgen]
impl Generator {
    /// Loads a decoder served at `model`: a GGUF file URL (`….gguf`: config, tokenizer,
    /// chat template and EOS from its metadata, its blocks kept by default), or a folder
    /// (`model.gguf`, or `config.json`, `generation_config.json`, `tokenizer.json`,
    /// `tokenizer_config.json` and `model.safetensors` or shards), streamed in parallel
    /// Range requests straight into GPU buffers.
    #[wasm_bindgen(unchecked_return_type = "Promise<Generator>")]
    pub fn load(
        #[wasm_bindgen(unchecked_param_type = "string")] model: JsValue,
        #[wasm_bindgen(unchecked_optional_param_type = "GeneratorLoadOptions")] options: Option<JsValue>,
    ) -> js_sys::Promise {
        wasm_bindgen_futures::future_to_promise(async move {
            let options = options.unwrap_or(JsValue::UNDEFINED);
            let run = async {
                let o: GeneratorLoadOptionsJs = super::options::parse(&options, "Generator.load", &[GeneratorLoadOptionsJs::KEYS, super::options::LoadOptionsJs::KEYS])?;
                let kv_dtype = o.kv_dtype.as_deref().map(str::parse).transpose()?;
                let (ctx, gpu) = begin_load(&model, &options, "Generator.load", GeneratorLoadOptionsJs::KEYS, false).await?;
                let opts = GeneratorOptions { load: ctx.load.clone(), kv_dtype };
                let inner = RsGenerator::load_with_abort(&gpu, &ctx.src, opts, &reporter(ctx.callback.clone()), &|| ctx.aborted()).await?;
                let kv_dtype = inner.kv_dtype();
                Ok::<JsValue, Error>(Generator { slot: Slot::new("Generator", gpu, RefCell::new(inner)), kv_dtype }.into())
            };
            run.await.map_err(js_err)
        })
    }

    /// Continues `prompt` (a string, tokenized as is) or answers `messages` (rendered with
    /// the model's chat template). Calls on one generator run one after another, in order.
    #[wasm_bindgen(unchecked_return_type = "Promise<GenerateResult>")]
    pub fn generate(
        &self,
        #[wasm_bindgen(unchecked_param_type = "string | ChatMessage[]")] prompt: JsValue,
        #[wasm_bindgen(unchecked_optional_param_type = "GenerateOptions")] options: Option<JsValue>,
    ) -> js_sys::Promise {
        // The lane runs one call of this generator at a time, so the `RefCell` borrow held
        // across the stream's awaits never meets another.
        #[allow(clippy::await_holding_refcell_ref)]
        self.slot.call(move |inner| async move {
            let options = options.unwrap_or(JsValue::UNDEFINED);
            let (opts, signal, callback) = parse_options(&options).map_err(js_err)?;
            let text = prompt.as_string();
            let messages: Vec<Message> = if text.is_none() {
                let arr: Array = prompt.dyn_into().map_err(|_| js_err(Error::Type("prompt must be a string or an array of messages".into())))?;
                arr.iter()
                    .map(|m| {
                        let field = |k: &str| get(&m, k).and_then(|v| v.as_string());
                        match (field("role"), field("content")) {
                            (Some(role), Some(content)) => Ok(Message { role, content }),
                            _ => Err(js_err(Error::Type("each message needs string `role` and `content`".into()))),
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
                    speculative: None,
                    evicted: 0,
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
            Reflect::set(&o, &"evicted".into(), &(out.evicted as u32).into())?;
            if let Some(st) = out.speculative {
                let sp = Object::new();
                Reflect::set(&sp, &"verify_steps".into(), &(st.verify_steps as u32).into())?;
                Reflect::set(&sp, &"plain_steps".into(), &(st.plain_steps as u32).into())?;
                Reflect::set(&sp, &"drafted".into(), &(st.drafted as u32).into())?;
                Reflect::set(&sp, &"accepted".into(), &(st.accepted as u32).into())?;
                Reflect::set(&sp, &"partial".into(), &(st.partial as u32).into())?;
                Reflect::set(&o, &"speculative".into(), &sp)?;
            }
            Ok(o.into())
        })
    }

    /// Where the model runs: "webgpu" or "cpu" (see `LoadOptions.device`).
    #[wasm_bindgen(getter, unchecked_return_type = "\"webgpu\" | \"cpu\"")]
    pub fn device(&self) -> String {
        self.slot.device().into()
    }

    /// Element type of the KV cache: "f16" or "f32" (see `GeneratorLoadOptions.kv_dtype`).
    #[wasm_bindgen(getter, unchecked_return_type = "\"f16\" | \"f32\"")]
    pub fn kv_dtype(&self) -> String {
        self.kv_dtype.as_str().into()
    }

    /// Releases the model and its KV cache once the calls already made have finished; later
    /// calls reject with "this Generator was disposed". Resolves when the memory is freed.
    #[wasm_bindgen(unchecked_return_type = "Promise<void>")]
    pub fn dispose(&self) -> js_sys::Promise {
        self.slot.dispose()
    }
}
