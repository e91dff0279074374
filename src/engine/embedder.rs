//! Sentence embeddings with a BERT-family encoder, pooled and normalised on the GPU.
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
use crate::nn::{load_weights, VarBuilder};
use crate::tokenizer::Tokenizer;

/// How token states become one vector.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Pooling {
    /// Mean over the tokens of the text (padding excluded), `[CLS]` and `[SEP]` included.
    Mean,
    /// The first (`[CLS]`) token.
    Cls,
}

impl std::str::FromStr for Pooling {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        match s {
            "mean" => Ok(Self::Mean),
            "cls" => Ok(Self::Cls),
            other => Err(Error::Input(format!("pooling `{other}`: expected `mean` or `cls`"))),
        }
    }
}

/// Load options. `None` means: what the model's sentence-transformers config says, else the
/// default (mean pooling, normalised, max length from the model config).
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
}

#[derive(Deserialize)]
struct StConfig {
    max_seq_length: Option<usize>,
}

pub struct Embedder {
    gpu: Gpu,
    model: BertModel,
    tokenizer: Tokenizer,
    pooling: Pooling,
    normalize: bool,
    batch_size: usize,
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
        let config: BertConfig = read_json(src, "config.json").await?;
        config.validate("config.json")?;

        // sentence-transformers pipeline description, if the folder has one.
        let modules: Option<Vec<StModule>> = read_json_optional(src, "modules.json").await?;
        let mut pooling = Pooling::Mean;
        let mut normalize = true;
        if let Some(modules) = &modules {
            normalize = modules.iter().any(|m| m.kind.ends_with(".Normalize"));
            if let Some(m) = modules.iter().find(|m| m.kind.ends_with(".Pooling")) {
                let file = crate::loader::module_file(&m.path, "config.json")?;
                let p: StPooling = read_json(src, &file).await?;
                pooling = match (p.pooling_mode_mean_tokens, p.pooling_mode_cls_token) {
                    (true, false) => Pooling::Mean,
                    (false, true) => Pooling::Cls,
                    _ => {
                        return Err(Error::Config { file, msg: "only one of mean or CLS pooling is supported".into() });
                    }
                };
                if p.pooling_mode_max_tokens || p.pooling_mode_mean_sqrt_len_tokens {
                    return Err(Error::Config { file, msg: "max and mean-sqrt-len pooling are not supported".into() });
                }
            }
        }
        let st: Option<StConfig> = read_json_optional(src, "sentence_bert_config.json").await?;
        let max_length = opts
            .max_length
            .or(st.and_then(|s| s.max_seq_length))
            .unwrap_or(config.max_position_embeddings)
            .min(config.max_position_embeddings);
        if max_length < 2 {
            return Err(Error::Input(format!("max_length {max_length} leaves no room for text")));
        }

        progress(Progress::Initiate { file: "tokenizer.json".into() });
        let tokenizer = Tokenizer::from_bytes(&read_whole(src, "tokenizer.json").await?, max_length)?;
        tokenizer.check_ids(config.vocab_size, None)?;
        progress(Progress::Done { file: "tokenizer.json".into() });

        // `model.safetensors`, or the shards of `model.safetensors.index.json`, streamed in
        // parallel chunks straight into GPU buffers and checked against `gllm-manifest.json`
        // when the folder has one; q8_0 / q4_0 linear weights are quantized on the GPU as each
        // arrives.
        let weights = Weights::open(src, opts.load.weights.as_deref()).await?;
        let dtype = opts.load.dtype.unwrap_or_default();
        let w = load_weights(gpu, src, &weights, dtype, crate::models::bert::WEIGHT_ROLES, opts.load.stream, progress, should_abort).await?;
        let root = VarBuilder::new(gpu, &w, dtype);
        // Sequence-classification checkpoints keep the encoder under `bert.`.
        let vb = if root.contains("bert.embeddings.word_embeddings.weight") { root.pp("bert") } else { root };
        let model = BertModel::load(&vb, config).await?;
        drop(w);
        gpu.sync().await?;
        progress(Progress::Ready);

        Ok(Self {
            gpu: gpu.clone(),
            model,
            tokenizer,
            pooling: opts.pooling.unwrap_or(pooling),
            normalize: opts.normalize.unwrap_or(normalize),
            batch_size: opts.batch_size.unwrap_or(32).max(1),
        })
    }

    pub fn dim(&self) -> usize {
        self.model.config.hidden_size
    }
    pub fn max_length(&self) -> usize {
        self.tokenizer.max_length()
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
    /// The encoder.
    pub fn model(&self) -> &BertModel {
        &self.model
    }

    pub async fn embed(&self, texts: &[&str]) -> Result<Embeddings> {
        let dim = self.dim();
        let (out, token_ids) = self.embed_tensor(texts)?;
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
        let dim = self.dim();
        let token_ids = self.tokenizer.encode_batch(texts)?;
        if texts.is_empty() {
            return Ok((None, token_ids));
        }
        let gpu = &self.gpu;
        let out = gpu.alloc(&[texts.len(), dim], DType::F32)?;
        for (chunk_index, chunk) in token_ids.chunks(self.batch_size).enumerate() {
            let input = BertInput::upload(gpu, chunk, None, self.model.config.pad_token_id)?;
            let mut enc = gpu.encoder();
            let hidden = self.model.forward(&mut enc, &input)?;
            let mut pooled = match self.pooling {
                Pooling::Mean => pool::mean_pool(&mut enc, &hidden, &input.attention_mask)?,
                Pooling::Cls => pool::cls_pool(&mut enc, &hidden)?,
            };
            if self.normalize {
                pooled = norm::l2_normalize(&mut enc, &pooled, 1e-12)?;
            }
            enc.copy_into(&pooled, &out, chunk_index * self.batch_size * dim)?;
            enc.submit()?;
        }
        Ok((Some(out), token_ids))
    }
}
