//! Sentence embeddings with a BERT encoder, a Gemma 3 trunk (EmbeddingGemma) or a
//! Llama-family decoder (Qwen3-Embedding, Qwen2, Llama: last-token pooling), pooled,
//! projected by sentence-transformers' `Dense` modules when the folder has them, and
//! normalised on the GPU, as the folder's `modules.json` says.
//!
//! Decoder embedders follow the Qwen3-Embedding recipe
//! (<https://huggingface.co/Qwen/Qwen3-Embedding-0.6B>, `last_token_pool` of its README):
//! causal attention over the text, the final-normed hidden state of the last token, which is
//! the `<|endoftext|>` that Qwen3-Embedding's tokenizer appends (appended here when the
//! tokenizer does not), L2-normalised. Queries take the instruction prefix
//! `Instruct: {task}\nQuery:` through the task prompts (`prompt` / `prompt_name`,
//! `config_sentence_transformers.json`). HF pads on the left; here rows are right-padded and
//! the pooling kernel picks each row's last real token, which is the same vector because
//! attention is causal.
//!
//! Per call: texts are tokenized on the CPU; ids, token types, positions and the attention
//! mask are uploaded once; the forward pass, pooling and L2 normalisation of each chunk of
//! `batch_size` texts are one submission; the pooled rows of every chunk are copied into one
//! `[n, dim]` GPU tensor, which is the call's only readback.

use serde::Deserialize;

use crate::error::{Error, Result};
use crate::gpu::{DType, Gpu, GpuTensor};
use crate::kernels::{norm, pool};
use crate::engine::LoadOptions;
use crate::loader::{read_json, read_json_optional, read_whole, Progress, Source, Weights};
use crate::models::bert::{BertConfig, BertInput, BertModel};
use crate::models::gemma3::{Gemma3Config, Gemma3TextModel};
use crate::models::llama::{LlamaConfig, LlamaModel};
use crate::nn::{load_weights, Linear, VarBuilder};
use crate::tokenizer::Tokenizer;

/// How token states become one vector.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Pooling {
    /// Mean over the tokens of the text (padding excluded), `[CLS]` and `[SEP]` included.
    Mean,
    /// The first (`[CLS]`) token.
    Cls,
    /// The last token of the text (padding excluded): decoder embedders (Qwen3-Embedding),
    /// sentence-transformers' `pooling_mode_lasttoken`.
    LastToken,
}

impl std::str::FromStr for Pooling {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        match s {
            "mean" => Ok(Self::Mean),
            "cls" => Ok(Self::Cls),
            "last_token" | "lasttoken" => Ok(Self::LastToken),
            other => Err(Error::Input(format!("pooling `{other}`: expected `mean`, `cls` or `last_token`"))),
        }
    }
}

/// Load options. `None` means: what the model's sentence-transformers config says, else the
/// default (mean pooling for encoders, last-token for decoders, normalised, max length from
/// the model config).
#[derive(Debug, Clone, Default)]
pub struct EmbedOptions {
    pub pooling: Option<Pooling>,
    pub normalize: Option<bool>,
    /// Longest input in tokens, special tokens included; longer texts are truncated.
    pub max_length: Option<usize>,
    /// Texts per forward pass (bounds activation memory). Default 32.
    pub batch_size: Option<usize>,
    /// Weights storage (default `auto`: as in the file, f32 for MiniLM; `Quant(q8_0)` etc.
    /// quantizes the linear layers on load), streaming and the weights file.
    pub load: LoadOptions,
}

/// Options of one [`Embedder::embed_with`] call.
#[derive(Debug, Clone, Default)]
pub struct EmbedCallOptions {
    /// A prompt of the model's `config_sentence_transformers.json` (`prompts`: `query`,
    /// `document`, ...), prepended to every text. `None`: the model's `default_prompt_name`,
    /// if any.
    pub prompt_name: Option<String>,
    /// A literal prompt prepended to every text; it wins over `prompt_name` (as in
    /// sentence-transformers' `encode`).
    pub prompt: Option<String>,
    /// Matryoshka truncation: keep the first `dimensions` components, renormalised when the
    /// model normalises (sentence-transformers' `truncate_dim` followed by normalisation).
    pub dimensions: Option<usize>,
}

/// `[n, dim]` row-major embeddings and the token ids each row came from.
#[derive(Debug, Clone)]
pub struct Embeddings {
    pub data: Vec<f32>,
    pub dims: [usize; 2],
    pub token_ids: Vec<Vec<u32>>,
}

impl Embeddings {
    pub fn row(&self, i: usize) -> &[f32] {
        &self.data[i * self.dims[1]..(i + 1) * self.dims[1]]
    }
    pub fn rows(&self) -> impl Iterator<Item = &[f32]> {
        self.data.chunks_exact(self.dims[1].max(1))
    }
}

#[derive(Deserialize)]
struct StModule {
    #[serde(rename = "type")]
    kind: String,
    #[serde(default)]
    path: String,
}

#[derive(Deserialize)]
struct StPooling {
    #[serde(default)]
    pooling_mode_cls_token: bool,
    #[serde(default)]
    pooling_mode_mean_tokens: bool,
    #[serde(default)]
    pooling_mode_max_tokens: bool,
    #[serde(default)]
    pooling_mode_mean_sqrt_len_tokens: bool,
    #[serde(default)]
    pooling_mode_lasttoken: bool,
    #[serde(default)]
    pooling_mode_weightedmean_tokens: bool,
    /// Whether a prompt's tokens count in the pooled mean (sentence-transformers' default).
    #[serde(default = "yes")]
    include_prompt: bool,
}

#[derive(Deserialize)]
struct StConfig {
    max_seq_length: Option<usize>,
}

/// `config_sentence_transformers.json` (the task prompts).
#[derive(Deserialize, Default)]
struct StPrompts {
    #[serde(default)]
    prompts: std::collections::BTreeMap<String, String>,
    #[serde(default)]
    default_prompt_name: Option<String>,
}

/// A sentence-transformers `Dense` module's `config.json`.
#[derive(Deserialize)]
struct StDense {
    in_features: usize,
    out_features: usize,
    #[serde(default = "yes")]
    bias: bool,
    #[serde(default)]
    activation_function: String,
}

fn yes() -> bool {
    true
}

#[derive(Deserialize)]
struct ModelType {
    #[serde(default)]
    model_type: String,
}

/// `config.json`'s `model_type` ("" when absent): what the embedder, the reranker and the
/// device choice branch on.
pub(crate) async fn model_type<S: Source>(src: &S) -> Result<String> {
    Ok(read_json::<_, ModelType>(src, "config.json").await?.model_type)
}

/// Whether `model_type` names a Llama-family decoder ([`LlamaModel`]).
pub(crate) fn is_decoder(model_type: &str) -> bool {
    matches!(model_type, "llama" | "qwen2" | "qwen3" | "mistral")
}

/// `eos_token_id` of `config.json`: one id or a list (the first is taken).
#[derive(Deserialize)]
struct EosId {
    #[serde(default)]
    eos_token_id: Option<serde_json::Value>,
}

impl EosId {
    fn first(&self) -> Option<u32> {
        let v = self.eos_token_id.as_ref()?;
        let v = v.as_array().and_then(|a| a.first()).unwrap_or(v);
        v.as_u64().and_then(|id| u32::try_from(id).ok())
    }
}

/// The transformer of the pipeline (sentence-transformers' `Transformer` module).
enum Trunk {
    Bert(BertModel),
    Gemma3(Gemma3TextModel),
    /// A Llama / Qwen2 / Qwen3 decoder without its LM head (causal attention, no cache).
    Decoder(LlamaModel),
}

pub struct Embedder {
    gpu: Gpu,
    model: Trunk,
    /// sentence-transformers `Dense` modules after pooling, in order (identity activation).
    dense: Vec<Linear>,
    tokenizer: Tokenizer,
    pooling: Pooling,
    normalize: bool,
    batch_size: usize,
    prompts: StPrompts,
    dim: usize,
    /// Decoders: the EOS id appended to every text when the tokenizer does not add it
    /// (Qwen3-Embedding's last token is `<|endoftext|>`).
    append_eos: Option<u32>,
}

impl Embedder {
    /// Loads `config.json`, `tokenizer.json`, the sentence-transformers files when present
    /// (`modules.json`, the pooling config, `sentence_bert_config.json`) and
    /// `model.safetensors` (or the shards of `model.safetensors.index.json`) from `src`,
    /// checking the weights against `gllm-manifest.json` when present
    /// ([`crate::loader::checkpoint`]).
    pub async fn load<S: Source>(gpu: &Gpu, src: &S, opts: EmbedOptions, progress: &dyn Fn(Progress)) -> Result<Self> {
        Self::load_with_abort(gpu, src, opts, progress, &|| false).await
    }

    /// [`Self::load`], stopping with `Error::Aborted` (and freeing what was uploaded) once
    /// `should_abort` returns true.
    pub async fn load_with_abort<S: Source>(
        gpu: &Gpu,
        src: &S,
        opts: EmbedOptions,
        progress: &dyn Fn(Progress),
        should_abort: &dyn Fn() -> bool,
    ) -> Result<Self> {
        let model_type = model_type(src).await?;
        let gemma = model_type == "gemma3_text";
        let decoder = is_decoder(&model_type);
        if decoder && gpu.is_host() {
            // Decoders stay on WebGPU: on the CPU backend causal and grouped-query attention would
            // run the f64 reference, and the KV-cache kernels have no CPU version.
            return Err(Error::Unsupported { op: "a decoder embedder" });
        }
        let (mut bert_config, mut gemma_config, mut llama_config) = (None, None, None);
        if gemma {
            let c: Gemma3Config = read_json(src, "config.json").await?;
            c.validate("config.json")?;
            gemma_config = Some(c);
        } else if decoder {
            let c: LlamaConfig = read_json(src, "config.json").await?;
            c.validate("config.json")?;
            llama_config = Some(c);
        } else {
            let c: BertConfig = read_json(src, "config.json").await?;
            c.validate("config.json")?;
            bert_config = Some(c);
        }
        let (vocab_size, max_positions, hidden) = match (&bert_config, &gemma_config, &llama_config) {
            (Some(c), _, _) => (c.vocab_size, c.max_position_embeddings, c.hidden_size),
            (_, Some(c), _) => (c.vocab_size, c.max_position_embeddings, c.hidden_size),
            (_, _, Some(c)) => (c.vocab_size, c.max_position_embeddings, c.hidden_size),
            _ => return Err(Error::Config { file: "config.json".into(), msg: "no model config".into() }),
        };

        // sentence-transformers pipeline description, if the folder has one.
        let modules: Option<Vec<StModule>> = read_json_optional(src, "modules.json").await?;
        let mut pooling = if decoder { Pooling::LastToken } else { Pooling::Mean };
        let mut normalize = true;
        let mut dense_modules = Vec::new();
        if let Some(modules) = &modules {
            // Dense projections come after pooling and before normalisation, in file order.
            let pool_at = modules.iter().position(|m| m.kind.ends_with(".Pooling"));
            for (i, m) in modules.iter().enumerate() {
                if m.kind.ends_with(".Dense") {
                    if pool_at.map_or(true, |p| i < p) {
                        return Err(Error::Config { file: "modules.json".into(), msg: "a Dense module before pooling is not supported".into() });
                    }
                    let file = crate::loader::module_file(&m.path, "config.json")?;
                    let d: StDense = read_json(src, &file).await?;
                    if !(d.activation_function.is_empty() || d.activation_function.ends_with(".Identity")) {
                        return Err(Error::Config { file, msg: format!("Dense activation `{}` is not supported (only Identity)", d.activation_function) });
                    }
                    dense_modules.push((m.path.clone(), d));
                }
            }
            let mut width = hidden;
            for (path, d) in &dense_modules {
                if d.in_features != width || d.out_features == 0 || d.out_features > 1 << 20 {
                    return Err(Error::Config { file: format!("{path}/config.json"), msg: format!("Dense {} -> {} does not follow width {width}", d.in_features, d.out_features) });
                }
                width = d.out_features;
            }
            normalize = modules.iter().any(|m| m.kind.ends_with(".Normalize"));
            if let Some(m) = modules.iter().find(|m| m.kind.ends_with(".Pooling")) {
                let file = crate::loader::module_file(&m.path, "config.json")?;
                let p: StPooling = read_json(src, &file).await?;
                pooling = match (p.pooling_mode_mean_tokens, p.pooling_mode_cls_token, p.pooling_mode_lasttoken) {
                    (true, false, false) => Pooling::Mean,
                    (false, true, false) => Pooling::Cls,
                    (false, false, true) => Pooling::LastToken,
                    _ => {
                        return Err(Error::Config { file, msg: "exactly one of mean, CLS or last-token pooling is supported".into() });
                    }
                };
                if !p.include_prompt {
                    return Err(Error::Config { file, msg: "include_prompt false (pooling without the prompt's tokens) is not supported".into() });
                }
                if p.pooling_mode_max_tokens || p.pooling_mode_mean_sqrt_len_tokens || p.pooling_mode_weightedmean_tokens {
                    return Err(Error::Config { file, msg: "max, mean-sqrt-len and weighted-mean pooling are not supported".into() });
                }
            }
        }
        let st: Option<StConfig> = read_json_optional(src, "sentence_bert_config.json").await?;
        let prompts: StPrompts = read_json_optional(src, "config_sentence_transformers.json").await?.unwrap_or_default();
        if let Some(name) = &prompts.default_prompt_name {
            if !prompts.prompts.contains_key(name) {
                return Err(Error::Config { file: "config_sentence_transformers.json".into(), msg: format!("default_prompt_name `{name}` is not in prompts") });
            }
        }
        let max_length = opts
            .max_length
            .or(st.and_then(|s| s.max_seq_length))
            .unwrap_or(max_positions)
            .min(max_positions);
        if max_length < 2 {
            return Err(Error::Input(format!("max_length {max_length} leaves no room for text")));
        }

        progress(Progress::Initiate { file: "tokenizer.json".into() });
        let mut tokenizer = Tokenizer::from_bytes(&read_whole(src, "tokenizer.json").await?, max_length)?;
        tokenizer.check_ids(vocab_size, None)?;
        let append_eos = if decoder { decoder_eos(src, &mut tokenizer, vocab_size).await? } else { None };
        progress(Progress::Done { file: "tokenizer.json".into() });

        // `model.safetensors`, or the shards of `model.safetensors.index.json`, streamed in
        // parallel chunks straight into GPU buffers and checked against `gllm-manifest.json`
        // when the folder has one; q8_0 / q4_0 linear weights are quantized on the GPU as each
        // arrives.
        let weights = Weights::open(src, opts.load.weights.as_deref()).await?;
        let dtype = opts.load.dtype.unwrap_or_default();
        let roles = if gemma {
            crate::models::gemma3::WEIGHT_ROLES
        } else if decoder {
            crate::models::llama::WEIGHT_ROLES
        } else {
            crate::models::bert::WEIGHT_ROLES
        };
        let w = load_weights(gpu, src, &weights, dtype, roles, opts.load.stream, progress, should_abort).await?;
        let root = VarBuilder::new(gpu, &w, dtype);
        let model = match (bert_config, gemma_config, llama_config) {
            (Some(config), _, _) => {
                // Sequence-classification checkpoints keep the encoder under `bert.`.
                let vb = if root.contains("bert.embeddings.word_embeddings.weight") { root.pp("bert") } else { root };
                Trunk::Bert(BertModel::load(&vb, config).await?)
            }
            (_, Some(config), _) => Trunk::Gemma3(Gemma3TextModel::load(&root, config).await?),
            (_, _, Some(config)) => Trunk::Decoder(LlamaModel::load_trunk(&root, config).await?),
            _ => return Err(Error::Config { file: "config.json".into(), msg: "no model config".into() }),
        };
        drop(w);
        // The Dense modules' own `model.safetensors` (weight `linear.weight` [out, in]).
        const DENSE_ROLES: crate::nn::WeightRoles = crate::nn::WeightRoles { linear: |n| n == "linear.weight", table: |_| false };
        let mut dense = Vec::with_capacity(dense_modules.len());
        let mut dim = hidden;
        for (path, d) in &dense_modules {
            let file = crate::loader::module_file(path, "model.safetensors")?;
            let weights = Weights::open(src, Some(&file)).await?;
            let w = load_weights(gpu, src, &weights, dtype, DENSE_ROLES, opts.load.stream, progress, should_abort).await?;
            let vb = VarBuilder::new(gpu, &w, dtype);
            dense.push(Linear::load(&vb.pp("linear"), d.in_features, d.out_features, d.bias).await?);
            dim = d.out_features;
        }
        gpu.sync().await?;
        progress(Progress::Ready);

        Ok(Self {
            gpu: gpu.clone(),
            model,
            dense,
            tokenizer,
            pooling: opts.pooling.unwrap_or(pooling),
            normalize: opts.normalize.unwrap_or(normalize),
            batch_size: opts.batch_size.unwrap_or(32).max(1),
            prompts,
            dim,
            append_eos,
        })
    }

    /// Width of an embedding (the last Dense module's output, else the hidden size).
    pub fn dim(&self) -> usize {
        self.dim
    }
    /// The task prompts of `config_sentence_transformers.json`, by name.
    pub fn prompts(&self) -> &std::collections::BTreeMap<String, String> {
        &self.prompts.prompts
    }
    /// Longest input in tokens, special tokens included (and a decoder's appended EOS).
    pub fn max_length(&self) -> usize {
        self.tokenizer.max_length() + self.append_eos.is_some() as usize
    }
    pub fn pooling(&self) -> Pooling {
        self.pooling
    }
    pub fn normalize(&self) -> bool {
        self.normalize
    }
    pub fn gpu(&self) -> &Gpu {
        &self.gpu
    }

    /// Embeds `texts`. An empty list gives an empty `[0, dim]` result. An empty string is
    /// embedded like any text: its tokens are just `[CLS] [SEP]` (what sentence-transformers
    /// does). Texts longer than `max_length` tokens are truncated from the end.
    /// The BERT encoder (`None` for another trunk).
    pub fn model(&self) -> Option<&BertModel> {
        match &self.model {
            Trunk::Bert(m) => Some(m),
            Trunk::Gemma3(_) | Trunk::Decoder(_) => None,
        }
    }

    pub async fn embed(&self, texts: &[&str]) -> Result<Embeddings> {
        self.embed_with(texts, &EmbedCallOptions::default()).await
    }

    /// [`Embedder::embed`] with a task prompt and Matryoshka truncation.
    pub async fn embed_with(&self, texts: &[&str], opts: &EmbedCallOptions) -> Result<Embeddings> {
        let (out, token_ids) = self.embed_tensor_with(texts, opts)?;
        let dim = self.out_dim(opts)?;
        let data = match out {
            Some(out) => self.gpu.readback_f32(&out).await?,
            None => Vec::new(),
        };
        Ok(Embeddings { data, dims: [texts.len(), dim], token_ids })
    }

    /// Like [`Embedder::embed`] but leaves the `[n, dim]` result on the GPU (`None` for an
    /// empty list), for GPU consumers such as [`crate::SearchIndex::add_tensor`]. Returns
    /// the token ids too.
    pub fn embed_tensor(&self, texts: &[&str]) -> Result<(Option<GpuTensor>, Vec<Vec<u32>>)> {
        self.embed_tensor_with(texts, &EmbedCallOptions::default())
    }

    /// The prompt a call prepends: `prompt`, else the named one, else the model's default.
    fn prompt<'a>(&'a self, opts: &'a EmbedCallOptions) -> Result<Option<&'a str>> {
        if let Some(p) = &opts.prompt {
            return Ok(Some(p));
        }
        let Some(name) = opts.prompt_name.as_ref().or(self.prompts.default_prompt_name.as_ref()) else {
            return Ok(None);
        };
        match self.prompts.prompts.get(name) {
            Some(p) => Ok(Some(p)),
            None => {
                let known: Vec<&str> = self.prompts.prompts.keys().map(String::as_str).collect();
                Err(Error::Input(format!("prompt_name `{name}`: the model has {}", if known.is_empty() { "no prompts".into() } else { known.join(", ") })))
            }
        }
    }

    fn out_dim(&self, opts: &EmbedCallOptions) -> Result<usize> {
        match opts.dimensions {
            None => Ok(self.dim),
            Some(d) if d >= 1 && d <= self.dim => Ok(d),
            Some(d) => Err(Error::Input(format!("dimensions {d}: expected 1..={}", self.dim))),
        }
    }

    /// [`Embedder::embed_tensor`] with a task prompt and Matryoshka truncation.
    pub fn embed_tensor_with(&self, texts: &[&str], opts: &EmbedCallOptions) -> Result<(Option<GpuTensor>, Vec<Vec<u32>>)> {
        let full = self.dim;
        let dim = self.out_dim(opts)?;
        let mut token_ids = match self.prompt(opts)? {
            Some(p) => {
                let prompted: Vec<String> = texts.iter().map(|t| format!("{p}{t}")).collect();
                self.tokenizer.encode_batch(&prompted.iter().map(String::as_str).collect::<Vec<_>>())?
            }
            None => self.tokenizer.encode_batch(texts)?,
        };
        if let Some(eos) = self.append_eos {
            token_ids.iter_mut().for_each(|ids| ids.push(eos));
        }
        if texts.is_empty() {
            return Ok((None, token_ids));
        }
        let gpu = &self.gpu;
        let out = gpu.alloc(&[texts.len(), dim], DType::F32)?;
        for (chunk_index, chunk) in token_ids.chunks(self.batch_size).enumerate() {
            let pad = match &self.model {
                Trunk::Bert(m) => m.config.pad_token_id,
                Trunk::Gemma3(m) => m.config.pad_token_id,
                // Any id with a row: padding is masked out and, attention being causal,
                // never seen by a real token.
                Trunk::Decoder(_) => 0,
            };
            let input = BertInput::upload(gpu, chunk, None, pad)?;
            let mut enc = gpu.encoder();
            let hidden = match &self.model {
                Trunk::Bert(m) => m.forward(&mut enc, &input)?,
                Trunk::Gemma3(m) => m.forward(&mut enc, &input.input_ids, &input.attention_mask, input.batch, input.seq)?,
                Trunk::Decoder(m) => m.forward_hidden(&mut enc, &input.input_ids, &input.attention_mask, input.batch, input.seq)?,
            };
            let mut pooled = match self.pooling {
                Pooling::Mean => pool::mean_pool(&mut enc, &hidden, &input.attention_mask)?,
                Pooling::Cls => pool::cls_pool(&mut enc, &hidden)?,
                Pooling::LastToken => pool::last_pool(&mut enc, &hidden, &input.attention_mask)?,
            };
            drop(hidden);
            for d in &self.dense {
                pooled = d.forward(&mut enc, &pooled)?;
            }
            if dim < full {
                // Matryoshka: the first `dim` components of each row.
                let rows = chunk.len();
                let cut = gpu.alloc(&[rows, dim], DType::F32)?;
                for r in 0..rows {
                    enc.copy_slice(&pooled, r * full, &cut, r * dim, dim)?;
                }
                pooled = cut;
            }
            if self.normalize {
                pooled = norm::l2_normalize(&mut enc, &pooled, 1e-12)?;
            }
            enc.copy_into(&pooled, &out, chunk_index * self.batch_size * dim)?;
            enc.submit()?;
        }
        Ok((Some(out), token_ids))
    }
}

/// The EOS id a decoder embedder appends to every text, `None` when the tokenizer's
/// post-processor already ends each text with it (Qwen3-Embedding's `tokenizer.json` appends
/// `<|endoftext|>`, id 151643, with a `TemplateProcessing` added after release, not
/// `tokenizer_config.json`'s `eos_token` `<|im_end|>`: QwenLM/Qwen3-Embedding issues 54 and
/// 122, llama.cpp PR 14314; a base Qwen2/Qwen3 tokenizer adds nothing). The token is the vocabulary's
/// `<|endoftext|>`, else `config.json`'s (first) `eos_token_id`, else none is appended. When
/// one is appended, the tokenizer's truncation leaves room for it.
async fn decoder_eos<S: Source>(src: &S, tokenizer: &mut Tokenizer, vocab_size: usize) -> Result<Option<u32>> {
    let eos = match tokenizer.token_to_id("<|endoftext|>") {
        Some(id) => Some(id),
        None => read_json::<_, EosId>(src, "config.json").await?.first(),
    };
    let Some(eos) = eos else { return Ok(None) };
    if eos as usize >= vocab_size {
        return Err(Error::Config { file: "config.json".into(), msg: format!("eos token id {eos} is outside the vocabulary of {vocab_size}") });
    }
    let probe = tokenizer.encode_batch(&["a"])?;
    if probe[0].last() == Some(&eos) {
        return Ok(None);
    }
    let max = tokenizer.max_length();
    tokenizer.set_max_length(max - 1)?;
    Ok(Some(eos))
}
