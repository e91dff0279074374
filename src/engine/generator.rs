//! Text generation with a Llama-family or Gemma 3 decoder ([`CausalLm`]), sampling on the GPU.
//!
//! Per call: the prompt (raw text, or chat messages rendered with the model's template) is
//! tokenized and uploaded once; one submission runs the prefill over the whole prompt,
//! fills the KV cache and samples the first token on the GPU. Each further token is one
//! replay of a decode step recorded once per KV-cache size ([`Recording`]): it embeds the
//! token the previous step left in `state[0]`, runs every layer over the cache, samples and
//! writes the next id back into `state[0]`. Only that id crosses to the CPU (4 bytes per
//! token), for stop conditions and streaming. See `SPEC/generation.md`.

use std::cell::RefCell;

use serde::Deserialize;

use crate::error::{Error, Result};
use crate::gpu::{Gpu, GpuTensor, Recording, U32Slot};
use crate::kernels::sample::{sample, SamplingConfig};
use crate::kernels::speculative::verify;
use crate::engine::LoadOptions;
use crate::loader::{read_json, read_json_optional, read_whole, Progress, Source, Weights};
use crate::models::llama::{KvCache, KvDType};
use crate::models::{CausalLm, CausalLmConfig};
use crate::nn::{load_weights, LoadDType, VarBuilder};
use crate::tokenizer::gguf::GgufTokenizer;
use crate::tokenizer::chat::{render_chat, ChatMessage as Message};
use crate::tokenizer::{DecodeStream, Tokenizer};

/// KV-cache sizes are rounded up to this many positions, so calls of similar length share
/// one recorded decode step.
const CACHE_STEP: usize = 256;

/// Load options.
#[derive(Debug, Clone, Default)]
pub struct GeneratorOptions {
    /// Storage of the weights (`dtype`: default `auto` for a GGUF file, keeping its blocks,
    /// and `f16` for safetensors), streaming and the weights file. Activations are f32.
    pub load: LoadOptions,
    /// Element type of the KV cache. Default: f16 where the device has `shader-f16`, else
    /// f32 ([`KvDType::default_for`]). The f16 cache is stored packed, two halves per word,
    /// and works with or without `shader-f16`; greedy tokens match the f32 cache's except
    /// where the top two logits are within about 0.05 (`SPEC/generation.md`).
    pub kv_dtype: Option<KvDType>,
}

impl GeneratorOptions {
    pub fn with_dtype(dtype: LoadDType) -> Self {
        Self { load: LoadOptions::with_dtype(dtype), kv_dtype: None }
    }
}

/// Attention sinks a context shift keeps by default ([`GenerateOptions::sink_tokens`];
/// StreamingLLM uses 4).
pub const DEFAULT_SINK_TOKENS: usize = 4;

/// Options of one generate call.
#[derive(Debug, Clone)]
pub struct GenerateOptions {
    pub max_new_tokens: usize,
    pub sampling: SamplingConfig,
    /// Generation stops when the text contains one of these; the text ends before it.
    pub stop: Vec<String>,
    /// Keep going past EOS ids (benchmarks).
    pub ignore_eos: bool,
    /// Reuse the KV cache of the previous call for the longest common prefix of its tokens
    /// and this prompt, so a chat's next turn prefills only its new tokens (default true;
    /// benchmarks of prefill turn it off).
    pub prefix_cache: bool,
    /// Speculative decoding with drafts looked up in the prompt and the output so far (none
    /// by default). Greedy decoding only (temperature 0, no repetition penalty): the output is
    /// the plain greedy output; with sampling settings it is ignored.
    pub speculative: Option<Speculative>,
    /// Tokens the KV cache holds at most (default, and at most: the model's context,
    /// `max_position_embeddings`).
    pub cache_tokens: Option<usize>,
    /// When a conversation outgrows the cache (default true): keep its first
    /// [`Self::sink_tokens`] tokens (attention sinks) and the most recent ones, dropping the
    /// oldest in between (StreamingLLM, Xiao et al. 2023, <https://arxiv.org/abs/2309.17453>).
    /// A prompt longer than the cache loses its middle; a cache that fills during generation
    /// drops half of its tokens after the sinks, the keys of those it keeps rotated to their
    /// new positions ([`crate::kernels::rope::kv_shift`]). [`Generation::evicted`] counts what
    /// was dropped. False: a prompt that does not fit is an error, and generation stops at
    /// the cache's end (`FinishReason::Length`).
    pub context_shift: bool,
    /// The attention sinks a context shift keeps (default 4, as StreamingLLM).
    pub sink_tokens: usize,
}

impl Default for GenerateOptions {
    fn default() -> Self {
        Self {
            max_new_tokens: 256,
            sampling: SamplingConfig::default(),
            stop: Vec::new(),
            ignore_eos: false,
            prefix_cache: true,
            speculative: None,
            cache_tokens: None,
            context_shift: true,
            sink_tokens: DEFAULT_SINK_TOKENS,
        }
    }
}

/// Prompt-lookup speculative decoding (Saxena 2023): each step drafts up to `k` tokens, the
/// continuation of the latest earlier occurrence of the sequence's last `ngram` tokens
/// (shorter n-grams tried next), and the model checks them all in one pass
/// ([`crate::kernels::speculative::verify`]); a step with no draft is a plain decode step.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Speculative {
    /// Drafted tokens per verify pass, 1..=32.
    pub k: usize,
    /// Longest n-gram looked up, 1..=8.
    pub ngram: usize,
}

impl Default for Speculative {
    fn default() -> Self {
        Self { k: 8, ngram: 3 }
    }
}

/// What speculative decoding did in one call.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SpeculativeStats {
    /// Verify passes (each one readback).
    pub verify_steps: usize,
    /// Plain decode steps (no draft found).
    pub plain_steps: usize,
    /// Tokens drafted and checked.
    pub drafted: usize,
    /// Drafted tokens the model agreed with.
    pub accepted: usize,
    /// Verify passes that accepted some of their drafts but not all (the cache rolled back
    /// past the first rejection, mid-draft).
    pub partial: usize,
}

/// Prompt lookup: the continuation (at most `k` tokens) of the latest earlier occurrence of
/// the last `n` tokens of `seq`, `n` from `ngram` down to 1; empty when none occurs.
pub fn prompt_lookup(seq: &[u32], ngram: usize, k: usize) -> Vec<u32> {
    let len = seq.len();
    for n in (1..=ngram.min(len.saturating_sub(1))).rev() {
        let tail = &seq[len - n..];
        if let Some(i) = (0..len - n).rev().find(|&i| &seq[i..i + n] == tail) {
            return seq[i + n..(i + n + k).min(len)].to_vec();
        }
    }
    Vec::new()
}

/// What to continue.
#[derive(Debug, Clone, Copy)]
pub enum Prompt<'a> {
    /// Raw text, tokenized as is; BOS is prepended when the tokenizer config says
    /// `add_bos_token` (as transformers' `tokenizer(text)` does; Gemma's GGUF says so).
    Text(&'a str),
    /// Chat messages, rendered with the model's chat template and the generation prompt.
    Messages(&'a [Message]),
    /// Token ids, used as they are.
    Ids(&'a [u32]),
}

/// Why generation stopped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FinishReason {
    /// An EOS id of `generation_config.json` was produced (it is the last of `tokens`).
    Eos,
    /// A stop string appeared.
    Stop,
    /// `max_new_tokens` were produced (or the context is full).
    Length,
    /// The caller aborted.
    Abort,
}

impl FinishReason {
    pub fn as_str(self) -> &'static str {
        match self {
            FinishReason::Eos => "eos",
            FinishReason::Stop => "stop",
            FinishReason::Length => "length",
            FinishReason::Abort => "abort",
        }
    }
}

/// The result of a generate call.
#[derive(Debug, Clone)]
pub struct Generation {
    pub prompt_ids: Vec<u32>,
    /// New token ids, including a final EOS id.
    pub tokens: Vec<u32>,
    /// Text of the new tokens (special tokens skipped, cut before a stop string).
    pub text: String,
    pub finish_reason: FinishReason,
    /// Speculative decoding's counters, when it ran.
    pub speculative: Option<SpeculativeStats>,
    /// Tokens this call dropped from what the model sees ([`GenerateOptions::context_shift`]):
    /// the middle of a prompt longer than the cache, and those a full cache shifted out.
    pub evicted: usize,
}

#[derive(Deserialize)]
struct GenerationConfig {
    #[serde(default)]
    eos_token_id: Option<serde_json::Value>,
}

#[derive(Deserialize, Default)]
struct TokenizerConfig {
    #[serde(default)]
    chat_template: Option<serde_json::Value>,
    #[serde(default)]
    bos_token: Option<serde_json::Value>,
    #[serde(default)]
    eos_token: Option<serde_json::Value>,
    #[serde(default)]
    add_bos_token: Option<bool>,
}

/// A token string of `tokenizer_config.json`: `"<s>"` or `{ "content": "<s>", ... }`.
fn token_str(v: &Option<serde_json::Value>) -> String {
    match v {
        Some(serde_json::Value::String(s)) => s.clone(),
        Some(serde_json::Value::Object(o)) => o.get("content").and_then(|c| c.as_str()).unwrap_or_default().to_string(),
        _ => String::new(),
    }
}

fn ids_of(v: &serde_json::Value) -> Vec<u32> {
    match v {
        serde_json::Value::Number(n) => n.as_u64().map(|n| vec![n as u32]).unwrap_or_default(),
        serde_json::Value::Array(a) => a.iter().filter_map(|x| x.as_u64()).map(|n| n as u32).collect(),
        _ => Vec::new(),
    }
}

/// Tokens a cache keeps at least after its sinks ([`GenerateOptions::context_shift`]).
pub const MIN_WINDOW: usize = 16;

/// The cache rows one generate call uses: `used` of `rows`, and the context shifts made when
/// they ran out ([`GenerateOptions::context_shift`]).
struct Window {
    rows: usize,
    sinks: Option<usize>,
    used: usize,
    /// Rows dropped after the sinks, per shift.
    shifts: Vec<usize>,
}

impl Window {
    fn room(&self) -> usize {
        self.rows.saturating_sub(self.used)
    }

    /// Makes room for `need` more rows: with sinks, a shift that drops half the rows after
    /// them (at least `need`), submitted before the step that needs them; without, an error
    /// (the call sized the cache for its tokens).
    fn make_room(&mut self, need: usize, gpu: &Gpu, model: &CausalLm, s: &Session) -> Result<()> {
        if self.used + need <= self.rows {
            return Ok(());
        }
        let Some(keep) = self.sinks else {
            return Err(Error::Input(format!("internal: {need} more rows past a full cache of {}", self.rows)));
        };
        let drop = ((self.rows - keep) / 2).max(self.used + need - self.rows);
        if keep + drop > self.used {
            return Err(Error::Input(format!("a step of {need} rows does not fit a cache of {} rows after {keep} sinks", self.rows)));
        }
        let mut enc = gpu.encoder();
        model.shift_cache(&mut enc, &s.cache, keep, drop, self.used)?;
        enc.submit()?;
        self.used -= drop;
        gpu.write(&s.state, 4, &(self.used as u32).to_le_bytes());
        self.shifts.push(drop);
        Ok(())
    }
}

/// A recorded speculative verify pass of `k` drafts: write `ids` (the last token and the
/// drafts) and `drafts`, replay `rec`, read `verdict` ([`verify`]).
struct VerifyStep {
    ids: GpuTensor,
    drafts: GpuTensor,
    verdict: GpuTensor,
    rec: Recording,
}

/// GPU state of one KV-cache size: the cache, the per-call buffers and the recorded
/// decode step that reads and writes them.
struct Session {
    cache: KvCache,
    /// `[4]` u32: next input token / sampled token, cached positions, sampling step, 0.
    state: GpuTensor,
    /// `[8]` u32 sampling settings.
    cfg: GpuTensor,
    /// `[vocab]` u32: 1 for tokens in the prompt or output (repetition penalty).
    seen: GpuTensor,
    decode: Recording,
    /// Verify passes recorded so far, by draft length (speculative decoding).
    verify: RefCell<Vec<Option<std::sync::Arc<VerifyStep>>>>,
}

impl Session {
    /// The recorded verify pass of `k` drafts over this session's cache, recorded on first use.
    fn verify_step(&self, gpu: &Gpu, model: &CausalLm, k: usize) -> Result<std::sync::Arc<VerifyStep>> {
        if let Some(Some(step)) = self.verify.borrow().get(k) {
            return Ok(step.clone());
        }
        let ids = gpu.alloc(&[k + 1], crate::gpu::DType::U32)?;
        let drafts = gpu.alloc(&[k], crate::gpu::DType::U32)?;
        let verdict = gpu.alloc(&[k + 2], crate::gpu::DType::U32)?;
        let mut enc = gpu.encoder();
        let logits = model.forward(&mut enc, &ids, &self.cache, &self.state, true)?;
        verify(&mut enc, &logits, &drafts, k, &self.state, &verdict)?;
        let step = std::sync::Arc::new(VerifyStep { ids, drafts, verdict, rec: enc.record()? });
        let mut all = self.verify.borrow_mut();
        if all.len() <= k {
            all.resize(k + 1, None);
        }
        all[k] = Some(step.clone());
        Ok(step)
    }
}

pub struct Generator {
    gpu: Gpu,
    model: CausalLm,
    tokenizer: Tokenizer,
    chat_template: Option<String>,
    bos_token: String,
    eos_token: String,
    eos_ids: Vec<u32>,
    /// BOS id prepended to a plain-text prompt (`add_bos_token`).
    add_bos: Option<u32>,
    session: Option<Session>,
    /// Two readback slots, used in turn by the pipelined decode loop.
    slots: [U32Slot; 2],
    /// The token ids whose keys and values the session's cache holds, from position 0: the
    /// last call's prompt and its new tokens but the last (the prefix cache).
    cached: Vec<u32>,
    /// Tokens the last call prefilled (its prompt minus the reused prefix).
    last_prefill: usize,
    /// Element type of the KV cache.
    kv_dtype: KvDType,
}

impl Generator {
    /// Loads a decoder from `src`: a GGUF file (`model.gguf`, or the file named by
    /// `opts.load.weights`), whose metadata gives the config, tokenizer, chat template and EOS
    /// ids; or a safetensors folder with `config.json`, `generation_config.json` (EOS ids),
    /// `tokenizer.json`, `tokenizer_config.json` (chat template) and `model.safetensors` (or
    /// the shards of `model.safetensors.index.json`). Weights stream in parallel into the GPU
    /// ([`crate::nn::load_weights`]), checked against `gllm-manifest.json` when present.
    pub async fn load<S: Source>(gpu: &Gpu, src: &S, opts: GeneratorOptions, progress: &dyn Fn(Progress)) -> Result<Self> {
        Self::load_with_abort(gpu, src, opts, progress, &|| false).await
    }

    /// [`Self::load`], stopping with `Error::Aborted` (and freeing what was uploaded) once
    /// `should_abort` returns true.
    pub async fn load_with_abort<S: Source>(
        gpu: &Gpu,
        src: &S,
        opts: GeneratorOptions,
        progress: &dyn Fn(Progress),
        should_abort: &dyn Fn() -> bool,
    ) -> Result<Self> {
        let weights = Weights::open(src, opts.load.weights.as_deref()).await?;
        let (config, mut tokenizer, tok_cfg, mut eos_ids) = match weights.gguf() {
            Some(m) => {
                let config = CausalLmConfig::from_json(m.config("float32")?, &m.gguf.file)?;
                progress(Progress::Initiate { file: "tokenizer".into() });
                let tok = GgufTokenizer::from_gguf(&m.gguf)?;
                let tok_cfg: TokenizerConfig = serde_json::from_value(tok.tokenizer_config(&m.gguf))
                    .map_err(|e| Error::Config { file: m.gguf.file.clone(), msg: e.to_string() })?;
                let tokenizer = Tokenizer::from_tokenizer(tok.into_tokenizer()?, config.max_position_embeddings())?;
                progress(Progress::Done { file: "tokenizer".into() });
                let eos_ids = m.eos_token_ids().into_iter().filter_map(|i| u32::try_from(i).ok()).collect();
                (config, tokenizer, tok_cfg, eos_ids)
            }
            None => {
                let config = CausalLmConfig::from_json(read_json(src, "config.json").await?, "config.json")?;
                let gen_cfg: Option<GenerationConfig> = read_json_optional(src, "generation_config.json").await?;
                let tok_cfg: TokenizerConfig = read_json_optional(src, "tokenizer_config.json").await?.unwrap_or_default();
                let eos_ids = gen_cfg.and_then(|g| g.eos_token_id).map(|v| ids_of(&v)).unwrap_or_default();
                progress(Progress::Initiate { file: "tokenizer.json".into() });
                let tokenizer = Tokenizer::from_bytes(&read_whole(src, "tokenizer.json").await?, config.max_position_embeddings())?;
                progress(Progress::Done { file: "tokenizer.json".into() });
                (config, tokenizer, tok_cfg, eos_ids)
            }
        };
        tokenizer.check_ids(config.vocab_size(), None)?;
        let eos_token = token_str(&tok_cfg.eos_token);
        let bos_token = token_str(&tok_cfg.bos_token);
        let add_bos = match tok_cfg.add_bos_token {
            Some(true) => Some(
                tokenizer.token_to_id(&bos_token).ok_or_else(|| Error::Tokenizer(format!("add_bos_token, but the BOS token {bos_token:?} is not in the vocabulary")))?,
            ),
            _ => None,
        };
        if eos_ids.is_empty() {
            eos_ids.extend(tokenizer.token_to_id(&eos_token));
        }
        let chat_template = match tok_cfg.chat_template {
            Some(serde_json::Value::String(s)) => Some(s),
            // A list of named templates: take "default".
            Some(serde_json::Value::Array(a)) => a
                .iter()
                .find(|t| t.get("name").and_then(|n| n.as_str()) == Some("default"))
                .and_then(|t| t.get("template"))
                .and_then(|t| t.as_str())
                .map(String::from),
            _ => None,
        };

        let default = if weights.gguf().is_some() { LoadDType::Auto } else { LoadDType::F16 };
        let dtype = opts.load.dtype.unwrap_or(default);
        let w = load_weights(gpu, src, &weights, dtype, config.weight_roles(), opts.load.stream, progress, should_abort).await?;
        let model = CausalLm::load(&VarBuilder::new(gpu, &w, dtype), config).await?;
        drop(w);
        gpu.sync().await?;
        progress(Progress::Ready);
        Ok(Self {
            gpu: gpu.clone(),
            model,
            tokenizer,
            chat_template,
            bos_token,
            eos_token,
            eos_ids,
            add_bos,
            session: None,
            slots: [U32Slot::new(gpu), U32Slot::new(gpu)],
            cached: Vec::new(),
            last_prefill: 0,
            kv_dtype: opts.kv_dtype.unwrap_or_else(|| KvDType::default_for(gpu)),
        })
    }

    /// Element type of the KV cache ([`GeneratorOptions::kv_dtype`] or its default).
    pub fn kv_dtype(&self) -> KvDType {
        self.kv_dtype
    }

    /// The model (its family and config).
    pub fn model(&self) -> &CausalLm {
        &self.model
    }
    pub fn vocab_size(&self) -> usize {
        self.model.vocab_size()
    }
    pub fn tokenizer(&self) -> &Tokenizer {
        &self.tokenizer
    }
    pub fn eos_ids(&self) -> &[u32] {
        &self.eos_ids
    }
    pub fn gpu(&self) -> &Gpu {
        &self.gpu
    }
    /// Weight bytes read per decoded token (for bandwidth figures).
    pub fn weight_bytes_per_token(&self) -> u64 {
        self.model.weight_bytes_per_token()
    }
    /// The token ids whose keys and values the KV cache holds, in cache order: what the model
    /// sees of the conversation so far (after a context shift, its sinks and recent tokens).
    pub fn cached_ids(&self) -> &[u32] {
        &self.cached
    }

    /// Prompt tokens the last generate call prefilled: all of them, or those after the prefix
    /// it found in the KV cache of the call before ([`GenerateOptions::prefix_cache`]).
    pub fn last_prefill_tokens(&self) -> usize {
        self.last_prefill
    }

    /// Dispatches of one recorded decode step (after a generate call), `None` before.
    pub fn decode_dispatches(&self) -> Option<usize> {
        self.session.as_ref().map(|s| s.decode.dispatch_count())
    }

    /// GPU time of each dispatch of one replay of the recorded decode step (native, with
    /// timestamp queries; benchmarks only). `None` before the first generate call.
    #[cfg(not(target_arch = "wasm32"))]
    pub fn profile_decode(&self) -> Option<Result<Vec<(String, f64)>>> {
        self.session.as_ref().map(|s| s.decode.profile())
    }

    /// The prompt's token ids: raw text as is, messages through the chat template.
    pub fn prompt_ids(&self, prompt: Prompt<'_>) -> Result<Vec<u32>> {
        match prompt {
            Prompt::Text(t) => {
                let ids = self.tokenizer.encode_raw(t)?;
                Ok(self.add_bos.into_iter().chain(ids).collect())
            }
            Prompt::Ids(ids) => {
                let vocab = self.model.vocab_size() as u32;
                match ids.iter().find(|&&i| i >= vocab) {
                    Some(bad) => Err(Error::Input(format!("token id {bad} is outside the vocabulary of {vocab}"))),
                    None => Ok(ids.to_vec()),
                }
            }
            Prompt::Messages(m) => {
                let tmpl = self
                    .chat_template
                    .as_deref()
                    .ok_or_else(|| Error::Input("this model has no chat template (tokenizer_config.json)".into()))?;
                let text = render_chat(tmpl, m, true, Some(&self.bos_token), Some(&self.eos_token))?;
                self.tokenizer.encode_raw(&text)
            }
        }
    }

    /// Generates without streaming.
    pub async fn generate(&mut self, prompt: Prompt<'_>, opts: &GenerateOptions) -> Result<Generation> {
        self.generate_stream(prompt, opts, &mut |_, _| true).await
    }

    /// Generates, calling `on_token(text_piece, id)` after every new token. The pieces
    /// concatenate to the final text: a piece is held back while it ends inside a UTF-8
    /// character or could be the start of a stop string. Returning `false` aborts
    /// (`FinishReason::Abort`); the generator stays usable.
    pub async fn generate_stream(
        &mut self,
        prompt: Prompt<'_>,
        opts: &GenerateOptions,
        on_token: &mut dyn FnMut(&str, u32) -> bool,
    ) -> Result<Generation> {
        opts.sampling.validate()?;
        if opts.stop.iter().any(|s| s.is_empty()) {
            return Err(Error::Input("stop strings must not be empty".into()));
        }
        let prompt_ids = self.prompt_ids(prompt)?;
        let n = prompt_ids.len();
        if n == 0 {
            return Err(Error::Input("the prompt is empty".into()));
        }
        let ctx = self.model.max_position_embeddings();
        let cap = opts.cache_tokens.unwrap_or(ctx).min(ctx);
        let sink_tokens = opts.context_shift.then_some(opts.sink_tokens);
        if let Some(sinks) = sink_tokens {
            if cap < sinks + MIN_WINDOW {
                return Err(Error::Input(format!("a cache of {cap} tokens leaves no window after {sinks} sink tokens (at least {MIN_WINDOW} needed)")));
            }
        } else if n >= cap {
            return Err(Error::Input(format!("the prompt has {n} tokens; the cache holds {cap} (the model's context is {ctx})")));
        }
        if opts.max_new_tokens == 0 {
            return Ok(Generation { prompt_ids, tokens: vec![], text: String::new(), finish_reason: FinishReason::Length, speculative: None, evicted: 0 });
        }
        let max_new = match sink_tokens {
            Some(_) => opts.max_new_tokens,
            None => opts.max_new_tokens.min(cap - n),
        };
        // Speculative decoding runs for greedy settings only (its acceptance is greedy).
        let speculative = opts.speculative.filter(|_| opts.sampling.temperature == 0.0 && opts.sampling.repetition_penalty == 1.0);
        if let Some(sp) = speculative {
            if !(1..=32).contains(&sp.k) || !(1..=8).contains(&sp.ngram) {
                return Err(Error::Input(format!("speculative: k {} must be in 1..=32 and ngram {} in 1..=8", sp.k, sp.ngram)));
            }
        }
        // A verify pass writes k rows past the last token.
        let spare = speculative.map_or(0, |sp| sp.k);
        // What the model sees of the prompt: all of it, or (sinks) its first tokens and as
        // many of its last as leave room to generate (half the window, or what is asked for).
        let kept: Vec<u32> = match sink_tokens {
            Some(sinks) if n + 1 + spare > cap => {
                let room = (max_new + spare).clamp(1, (cap - sinks) / 2);
                let tail = cap - room - sinks;
                if n > sinks + tail {
                    prompt_ids[..sinks].iter().chain(&prompt_ids[n - tail..]).copied().collect()
                } else {
                    prompt_ids.clone()
                }
            }
            _ => prompt_ids.clone(),
        };
        let evicted_prompt = n - kept.len();
        let n = kept.len();
        let rows = (n + max_new + spare).next_multiple_of(CACHE_STEP).min(cap);
        self.ensure_session(rows)?;
        // The prefix cache: the cache rows of the longest common prefix of the last call's
        // tokens and this prompt are reused (at least one prompt token is prefilled, for its
        // logits); the rows after it are overwritten.
        let reuse = if opts.prefix_cache {
            self.cached.iter().zip(&kept).take_while(|(a, b)| a == b).count().min(n - 1)
        } else {
            0
        };
        // Until this call ends well, the cache holds only the reused prefix.
        self.cached.truncate(reuse);
        self.last_prefill = n - reuse;
        let gpu = self.gpu.clone();
        let s = self.session.as_ref().expect("session ensured");

        // Per-call state: the reused positions, the sampling settings, the prompt's tokens as
        // seen (`state`: next token, cached positions, sampling step, 0).
        let state: Vec<u8> = [0u32, reuse as u32, 0, 0].iter().flat_map(|w| w.to_le_bytes()).collect();
        gpu.write(&s.state, 0, &state);
        opts.sampling.write(&gpu, &s.cfg)?;
        let vocab = self.model.vocab_size();
        let mut seen = vec![0u32; vocab];
        for &id in &prompt_ids {
            if (id as usize) < vocab {
                seen[id as usize] = 1;
            }
        }
        let seen_bytes: Vec<u8> = seen.iter().flat_map(|w| w.to_le_bytes()).collect();
        gpu.write(&s.seen, 0, &seen_bytes);

        // Prefill: the prompt after the reused prefix in one submission, then the first
        // token's id.
        let ids = gpu.upload_u32(&kept[reuse..], &[n - reuse])?;
        let mut enc = gpu.encoder();
        let logits = self.model.forward(&mut enc, &ids, &s.cache, &s.state, false)?;
        sample(&mut enc, &logits, &s.cfg, &s.seen, &s.state, n - reuse)?;
        let mut out = Emission::new(opts, max_new);
        let mut stats = SpeculativeStats::default();
        // Cache rows in use (the prompt's now), and the shifts made when they ran out.
        let window = RefCell::new(Window { rows, sinks: sink_tokens, used: n, shifts: Vec::new() });
        let make_room = |need: usize| -> Result<()> { window.borrow_mut().make_room(need, &gpu, &self.model, s) };
        let finish = if let Some(sp) = speculative {
            let first = enc.submit_start_u32(&s.state, &self.slots[0])?;
            let run = async {
                let mut next = vec![first.finish(&gpu).await?];
                let mut seq = prompt_ids.clone();
                loop {
                    for &t in &next {
                        if let Some(f) = out.take(&self.tokenizer, &self.eos_ids, t, on_token)? {
                            return Ok(f);
                        }
                        if let Some(f) = out.flush(t, on_token) {
                            return Ok(f);
                        }
                        seq.push(t);
                    }
                    // Draft from the sequence so far; the last token is not in the cache yet.
                    let last = *seq.last().unwrap_or(&0);
                    let draft = prompt_lookup(&seq, sp.ngram, sp.k.min(max_new - out.tokens.len()));
                    // A verify pass needs k + 1 rows: what is left of the cache, or with sinks
                    // what one shift frees (half the rows after the sinks).
                    let limit = match sink_tokens {
                        Some(sinks) => (rows - sinks) / 2,
                        None => window.borrow().room(),
                    };
                    let draft = if draft.len() < limit { draft } else { draft[..limit.saturating_sub(1)].to_vec() };
                    if draft.is_empty() {
                        stats.plain_steps += 1;
                        make_room(1)?;
                        next = vec![s.decode.submit_start_u32(&s.state, &self.slots[0])?.finish(&gpu).await?];
                        window.borrow_mut().used += 1;
                        continue;
                    }
                    let k = draft.len();
                    make_room(k + 1)?;
                    let mut input = vec![last];
                    input.extend(&draft);
                    // The verify pass of k drafts is recorded once per session and replayed
                    // with new ids (like the decode step): no encoding per step.
                    let step = s.verify_step(&gpu, &self.model, k)?;
                    let words = |v: &[u32]| -> Vec<u8> { v.iter().flat_map(|w| w.to_le_bytes()).collect() };
                    gpu.write(&step.ids, 0, &words(&input));
                    gpu.write(&step.drafts, 0, &words(&draft));
                    step.rec.submit();
                    // The one readback of the step: [accepted, argmax of each row].
                    let r = gpu.readback_u32(&step.verdict).await?;
                    let a = (r[0] as usize).min(k);
                    window.borrow_mut().used += a + 1;
                    stats.verify_steps += 1;
                    stats.drafted += k;
                    stats.accepted += a;
                    stats.partial += usize::from(a > 0 && a < k);
                    next = draft[..a].to_vec();
                    next.push(r[1 + a]);
                }
            };
            run.await
        } else {
            // The GPU runs one decode step ahead of the host: step t+1 reads token t from
            // `state` on the GPU, so it is submitted before token t reaches the host, and the
            // round trip and the host's work per token overlap the next step. Two slots take
            // the reads in turn. Stopping early (EOS, a stop string, an abort) leaves one
            // step's work unused; its read is awaited below so the slots are free for the
            // next call.
            let mut pending = Some((enc.submit_start_u32(&s.state, &self.slots[0])?, 0usize));
            let mut ahead = None;
            // Each decode step writes the cache row of the token it reads.
            let step = |slot: usize| -> Result<_> {
                make_room(1)?;
                let read = s.decode.submit_start_u32(&s.state, &self.slots[slot])?;
                window.borrow_mut().used += 1;
                Ok((read, slot))
            };
            let run = async {
                if max_new >= 2 {
                    ahead = Some(step(1)?);
                }
                loop {
                    let Some((read, free)) = pending.take() else {
                        return Err(Error::Input("internal: no token in flight".into()));
                    };
                    let next = read.finish(&gpu).await?;
                    if let Some(f) = out.take(&self.tokenizer, &self.eos_ids, next, on_token)? {
                        return Ok(f);
                    }
                    // Keep one step ahead: token t+1 is in flight; submit t+2 into the freed slot.
                    pending = ahead.take();
                    if out.tokens.len() + 2 <= max_new {
                        ahead = Some(step(free)?);
                    }
                    if let Some(f) = out.flush(next, on_token) {
                        return Ok(f);
                    }
                }
            };
            let finish = run.await;
            // Reads still in flight (an early stop, or an error): finish them so both slots
            // are unmapped; their tokens are not used.
            for (read, _) in [pending.take(), ahead.take()].into_iter().flatten() {
                let _ = read.finish(&gpu).await;
            }
            finish
        };
        let finish = finish?;
        let Emission { tokens, mut text, emitted, .. } = out;
        // Every new token but the last has its keys and values in the cache now, less what
        // the shifts dropped (each dropped rows just after the sinks).
        let Window { shifts, sinks, .. } = window.into_inner();
        self.cached = kept;
        self.cached.extend(&tokens[..tokens.len().saturating_sub(1)]);
        for &drop in &shifts {
            let keep = sinks.unwrap_or(0);
            self.cached.drain(keep..(keep + drop).min(self.cached.len()));
        }
        let evicted = evicted_prompt + shifts.iter().sum::<usize>();
        if finish != FinishReason::Stop && text.len() > emitted && finish != FinishReason::Abort {
            on_token(&text[emitted..], *tokens.last().unwrap_or(&0));
        }
        if finish == FinishReason::Abort {
            text.truncate(emitted);
        }
        Ok(Generation { prompt_ids, tokens, text, finish_reason: finish, speculative: speculative.map(|_| stats), evicted })
    }

    /// Logits of every prompt position (`[n, vocab]`), for tests and parity checks; a
    /// debugging path with a large readback, not used by generation.
    pub async fn prompt_logits(&mut self, ids: &[u32]) -> Result<Vec<f32>> {
        self.logits_of(ids, true).await
    }

    /// Logits of the last prompt position (`[vocab]`): [`Self::prompt_logits`] without the
    /// `[n, vocab]` readback (Gemma's 262,144-entry vocabulary makes that 1 MiB per token).
    pub async fn last_logits(&mut self, ids: &[u32]) -> Result<Vec<f32>> {
        self.logits_of(ids, false).await
    }

    async fn logits_of(&mut self, ids: &[u32], all: bool) -> Result<Vec<f32>> {
        let n = ids.len();
        if n == 0 || n >= self.model.max_position_embeddings() {
            return Err(Error::Input(format!("{n} prompt tokens")));
        }
        self.ensure_session(n.next_multiple_of(CACHE_STEP).min(self.model.max_position_embeddings()))?;
        self.cached.clear();
        let s = self.session.as_ref().expect("session ensured");
        self.gpu.write(&s.state, 0, &[0u8; 16]);
        let t = self.gpu.upload_u32(ids, &[n])?;
        let mut enc = self.gpu.encoder();
        let logits = self.model.forward(&mut enc, &t, &s.cache, &s.state, all)?;
        enc.submit()?;
        self.gpu.readback_f32(&logits).await
    }

    /// Builds the KV cache and records the decode step, unless a big enough one exists.
    fn ensure_session(&mut self, rows: usize) -> Result<()> {
        if self.session.as_ref().is_some_and(|s| s.cache.rows >= rows) {
            return Ok(());
        }
        self.session = None;
        self.cached.clear();
        let gpu = &self.gpu;
        let vocab = self.model.vocab_size();
        let cache = self.model.new_cache(gpu, rows, self.kv_dtype)?;
        let state = gpu.upload_u32(&[0; 4], &[4])?;
        let cfg = gpu.upload_u32(&SamplingConfig::default().words(), &[8])?;
        let seen = gpu.upload_u32(&vec![0; vocab], &[vocab])?;
        let mut enc = gpu.encoder();
        // The decode step's input id is state[0], which the previous step's sample wrote.
        let input = state.narrow_rows(1)?;
        let logits = self.model.forward(&mut enc, &input, &cache, &state, false)?;
        sample(&mut enc, &logits, &cfg, &seen, &state, 1)?;
        let decode = enc.record()?;
        self.session = Some(Session { cache, state, cfg, seen, decode, verify: RefCell::new(Vec::new()) });
        Ok(())
    }
}

/// The text side of one generate call: the new tokens, their text, how much of it was
/// streamed, and the stop rules.
struct Emission<'a> {
    opts: &'a GenerateOptions,
    max_new: usize,
    tokens: Vec<u32>,
    text: String,
    emitted: usize,
    stream: DecodeStream,
    max_stop: usize,
}

impl<'a> Emission<'a> {
    fn new(opts: &'a GenerateOptions, max_new: usize) -> Self {
        let max_stop = opts.stop.iter().map(|s| s.len()).max().unwrap_or(0);
        Self { opts, max_new, tokens: Vec::new(), text: String::new(), emitted: 0, stream: DecodeStream::new(), max_stop }
    }

    /// Takes the new token `next`: `Some` when generation ends with it (an EOS id, or a stop
    /// string it completes, whose text before the stop string is streamed).
    fn take(&mut self, tok: &Tokenizer, eos: &[u32], next: u32, on_token: &mut dyn FnMut(&str, u32) -> bool) -> Result<Option<FinishReason>> {
        self.tokens.push(next);
        if !self.opts.ignore_eos && eos.contains(&next) {
            return Ok(Some(FinishReason::Eos));
        }
        self.text.push_str(&self.stream.step(tok, next)?);
        // Stop strings: search the region new text can complete.
        let from = floor_boundary(&self.text, self.emitted.saturating_sub(self.max_stop));
        let stop = self.opts.stop.iter().filter_map(|st| self.text[from..].find(st.as_str()).map(|i| from + i)).min();
        if let Some(at) = stop {
            self.text.truncate(at);
            if self.text.len() > self.emitted {
                on_token(&self.text[self.emitted..], next);
                self.emitted = self.text.len();
            }
            return Ok(Some(FinishReason::Stop));
        }
        Ok(None)
    }

    /// Streams the text that can no longer change (`on_token`): `Some` when the caller aborts
    /// or `max_new` tokens are reached.
    fn flush(&mut self, next: u32, on_token: &mut dyn FnMut(&str, u32) -> bool) -> Option<FinishReason> {
        let safe = safe_end(&self.text, &self.opts.stop);
        let piece = if safe > self.emitted { &self.text[self.emitted..safe] } else { "" };
        let go_on = on_token(piece, next);
        self.emitted = self.emitted.max(safe);
        if !go_on {
            return Some(FinishReason::Abort);
        }
        (self.tokens.len() >= self.max_new).then_some(FinishReason::Length)
    }
}

fn floor_boundary(s: &str, mut i: usize) -> usize {
    while i > 0 && !s.is_char_boundary(i) {
        i -= 1;
    }
    i
}

/// End of the text that may be streamed: before a trailing U+FFFD (an incomplete UTF-8
/// character) and before the longest suffix that is a proper prefix of a stop string.
fn safe_end(text: &str, stop: &[String]) -> usize {
    let mut end = text.len();
    if text.ends_with('\u{FFFD}') {
        end -= '\u{FFFD}'.len_utf8();
    }
    let t = &text[..end];
    let mut hold = 0;
    for st in stop {
        for k in (1..st.len()).rev() {
            if k <= t.len() && st.is_char_boundary(k) && t.ends_with(&st[..k]) {
                hold = hold.max(k);
                break;
            }
        }
    }
    end - hold
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prompt_lookup_drafts_the_latest_continuation() {
        // "a b c" occurred twice before: the latest occurrence's continuation is drafted.
        let seq = [1, 2, 3, 9, 1, 2, 3, 7, 8, 5, 1, 2, 3];
        assert_eq!(prompt_lookup(&seq, 3, 4), [7, 8, 5, 1]);
        assert_eq!(prompt_lookup(&seq, 3, 2), [7, 8]);
        // Shorter n-grams are tried when the longest does not occur; none: no draft.
        assert_eq!(prompt_lookup(&[4, 5, 6, 9, 6], 3, 3), [9, 6]);
        assert!(prompt_lookup(&[1, 2, 3, 4], 3, 4).is_empty());
        assert!(prompt_lookup(&[7], 3, 4).is_empty());
        // The continuation may run into the tail itself and stops at the end.
        assert_eq!(prompt_lookup(&[5, 5, 5], 1, 4), [5]);
    }

    #[test]
    fn stop_prefixes_are_held_back() {
        let stop = vec!["</s>".to_string(), "END".to_string()];
        assert_eq!(safe_end("hello <", &stop), 6);
        assert_eq!(safe_end("hello </", &stop), 6);
        assert_eq!(safe_end("hello EN", &stop), 6);
        assert_eq!(safe_end("hello", &stop), 5);
        assert_eq!(safe_end("caf\u{FFFD}", &[]), 3);
    }
}
