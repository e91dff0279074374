//! One file per architecture family, written the way HF's modeling files read.

pub mod bert;
pub mod llama;
pub mod gemma3;

use crate::error::{Error, Result};
use crate::gpu::{Encoder, Gpu, GpuTensor};
use crate::nn::{VarBuilder, WeightRoles};
use gemma3::{Gemma3Config, Gemma3ForCausalLM};
use llama::{KvCache, KvDType, LlamaConfig, LlamaModel};

/// The config of a causal LM the generator runs: a Llama-family decoder (`llama`, `qwen2`,
/// `qwen3`, `mistral`) or Gemma 3 (`gemma3_text`), chosen by `model_type`.
#[derive(Debug, Clone)]
pub enum CausalLmConfig {
    Llama(LlamaConfig),
    Gemma3(Gemma3Config),
}

impl CausalLmConfig {
    /// Parses and validates `config.json` (or a GGUF's derived config); `file` names it in
    /// errors.
    pub fn from_json(v: serde_json::Value, file: &str) -> Result<Self> {
        let bad = |e: serde_json::Error| Error::Config { file: file.to_string(), msg: e.to_string() };
        let c = match v.get("model_type").and_then(|t| t.as_str()) {
            Some("gemma3_text" | "gemma3") => {
                let mut c: Gemma3Config = serde_json::from_value(v).map_err(bad)?;
                c.model_type = "gemma3_text".into();
                c.validate(file)?;
                Self::Gemma3(c)
            }
            _ => {
                let c: LlamaConfig = serde_json::from_value(v).map_err(bad)?;
                c.validate(file)?;
                Self::Llama(c)
            }
        };
        Ok(c)
    }

    pub fn vocab_size(&self) -> usize {
        match self {
            Self::Llama(c) => c.vocab_size,
            Self::Gemma3(c) => c.vocab_size,
        }
    }

    pub fn max_position_embeddings(&self) -> usize {
        match self {
            Self::Llama(c) => c.max_position_embeddings,
            Self::Gemma3(c) => c.max_position_embeddings,
        }
    }

    /// The tensors the load dtype applies to.
    pub fn weight_roles(&self) -> WeightRoles {
        match self {
            Self::Llama(_) => llama::WEIGHT_ROLES,
            Self::Gemma3(_) => gemma3::WEIGHT_ROLES,
        }
    }
}

/// A causal LM over a KV cache: the one seam between the generator's decode loop and the
/// model families. Both implement `forward(enc, ids, cache, state, all_logits)` with the same
/// contract (`state[1]` cached positions read on the GPU, so a recorded step replays).
pub enum CausalLm {
    Llama(LlamaModel),
    Gemma3(Gemma3ForCausalLM),
}

impl CausalLm {
    pub async fn load(vb: &VarBuilder<'_>, config: CausalLmConfig) -> Result<Self> {
        Ok(match config {
            CausalLmConfig::Llama(c) => Self::Llama(LlamaModel::load_for_generation(vb, c).await?),
            CausalLmConfig::Gemma3(c) => Self::Gemma3(Gemma3ForCausalLM::load(vb, c).await?),
        })
    }

    pub fn vocab_size(&self) -> usize {
        match self {
            Self::Llama(m) => m.config.vocab_size,
            Self::Gemma3(m) => m.config().vocab_size,
        }
    }

    pub fn max_position_embeddings(&self) -> usize {
        match self {
            Self::Llama(m) => m.config.max_position_embeddings,
            Self::Gemma3(m) => m.config().max_position_embeddings,
        }
    }

    /// An empty KV cache of `rows` positions for every layer.
    pub fn new_cache(&self, gpu: &Gpu, rows: usize, dtype: KvDType) -> Result<KvCache> {
        match self {
            Self::Llama(m) => KvCache::new(gpu, &m.config, rows, dtype),
            Self::Gemma3(m) => {
                let c = m.config();
                KvCache::with_shape(gpu, c.num_hidden_layers, c.kv_heads() * c.head_dim, rows, dtype)
            }
        }
    }

    /// Weight bytes read per decoded token (for bandwidth figures).
    pub fn weight_bytes_per_token(&self) -> u64 {
        match self {
            Self::Llama(m) => m.weight_bytes_per_token(),
            Self::Gemma3(m) => m.weight_bytes_per_token(),
        }
    }

    /// Records a context shift of `cache` (see `LlamaModel::shift_cache`).
    pub fn shift_cache(&self, enc: &mut Encoder, cache: &KvCache, keep: usize, drop: usize, used: usize) -> Result<()> {
        match self {
            Self::Llama(m) => m.shift_cache(enc, cache, keep, drop, used),
            Self::Gemma3(m) => m.shift_cache(enc, cache, keep, drop, used),
        }
    }

    /// Records the forward pass of `ids` over `cache` (see `LlamaModel::forward`).
    pub fn forward(&self, enc: &mut Encoder, ids: &GpuTensor, cache: &KvCache, state: &GpuTensor, all_logits: bool) -> Result<GpuTensor> {
        match self {
            Self::Llama(m) => m.forward(enc, ids, cache, state, all_logits),
            Self::Gemma3(m) => m.forward(enc, ids, cache, state, all_logits),
        }
    }
}
