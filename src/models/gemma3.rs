//! Gemma 3 text trunk (Gemma Team, 2025, <https://arxiv.org/abs/2503.19786>), following
//! Hugging Face transformers' `models/gemma3/modeling_gemma3.py`
//! (<https://github.com/huggingface/transformers/blob/v4.57.3/src/transformers/models/gemma3/modeling_gemma3.py>):
//! `Gemma3TextScaledWordEmbedding` (rows times `sqrt(hidden_size)` in the table's dtype),
//! `Gemma3RMSNorm` (`x / rms(x) · (1 + w)` in f32), `Gemma3Attention` (grouped-query heads,
//! RMSNorm of every query and key head, scale `query_pre_attn_scalar^-0.5`, a RoPE base per
//! layer type: `rope_local_base_freq` on sliding layers, `rope_theta` on global ones),
//! `Gemma3MLP` (GeGLU with the tanh GELU), `Gemma3DecoderLayer` (norms before and after
//! attention and the MLP) and `Gemma3TextModel`.
//!
//! The trunk runs two ways: as an encoder over a padded batch ([`Gemma3TextModel::forward`];
//! EmbeddingGemma: `use_bidirectional_attention`, where a sliding layer's window is
//! two-sided), and as `Gemma3ForCausalLM` over a KV cache ([`Gemma3ForCausalLM::forward`],
//! the same contract as `llama.rs`'s `LlamaModel::forward`, so the generator's decode loop
//! drives either: causal attention, a one-sided window of `sliding_window` keys on sliding
//! layers, the tied LM head). Gemma's structure differs from `llama.rs` in five places
//! (scaled embeddings, `(1 + w)` norms, four norms per layer, GeGLU, per-layer RoPE base and
//! window), so it is its own file rather than five more flags there (see `SPEC/gemma.md`).
//!
//! Weights are looked up under HF checkpoint names, with or without the `model.` prefix of
//! `Gemma3ForCausalLM` (`embed_tokens.weight`, `layers.N.self_attn.q_proj.weight`, ...).

use serde::Deserialize;

use crate::error::{Error, Result};
use crate::gpu::{Encoder, GpuTensor};
use crate::kernels::activation::scale;
use crate::gpu::DType;
use crate::kernels::attention::{attention, attention_cached, AttentionShape, MAX_HEAD_DIM};
use crate::kernels::matmul;
use crate::kernels::rope::{rope_append, rope_batched};
use crate::models::llama::KvCache;
use crate::nn::{Embedding, GateActivation, GatedMlp, Linear, RmsNorm, VarBuilder};

fn default_head_dim() -> usize {
    256
}
fn default_act() -> String {
    "gelu_pytorch_tanh".into()
}
fn default_eps() -> f64 {
    1e-6
}
fn default_theta() -> f64 {
    1_000_000.0
}
fn default_local_theta() -> f64 {
    10_000.0
}
fn default_max_pos() -> usize {
    131_072
}
fn default_pre_attn() -> f64 {
    256.0
}
fn default_window() -> usize {
    4096
}
fn default_pattern() -> usize {
    6
}
fn default_true() -> bool {
    true
}

/// `config.json` of a Gemma 3 text checkpoint (`Gemma3TextConfig`; the fields inference needs).
#[derive(Debug, Clone, Deserialize)]
pub struct Gemma3Config {
    /// `gemma3_text`.
    #[serde(default)]
    pub model_type: String,
    pub vocab_size: usize,
    pub hidden_size: usize,
    pub intermediate_size: usize,
    pub num_hidden_layers: usize,
    pub num_attention_heads: usize,
    #[serde(default)]
    pub num_key_value_heads: Option<usize>,
    #[serde(default = "default_head_dim")]
    pub head_dim: usize,
    #[serde(default = "default_act")]
    pub hidden_activation: String,
    #[serde(default = "default_eps")]
    pub rms_norm_eps: f64,
    /// RoPE base of the global (`full_attention`) layers.
    #[serde(default = "default_theta")]
    pub rope_theta: f64,
    /// RoPE base of the sliding layers.
    #[serde(default = "default_local_theta")]
    pub rope_local_base_freq: f64,
    #[serde(default)]
    pub rope_scaling: Option<serde_json::Value>,
    #[serde(default = "default_max_pos")]
    pub max_position_embeddings: usize,
    #[serde(default = "default_pre_attn")]
    pub query_pre_attn_scalar: f64,
    #[serde(default = "default_window")]
    pub sliding_window: usize,
    /// `sliding_attention` / `full_attention` per layer; when absent every
    /// `sliding_window_pattern`-th layer is global.
    #[serde(default)]
    pub layer_types: Option<Vec<String>>,
    #[serde(default = "default_pattern", alias = "_sliding_window_pattern")]
    pub sliding_window_pattern: usize,
    /// EmbeddingGemma: no causal mask, and a two-sided window on sliding layers.
    #[serde(default)]
    pub use_bidirectional_attention: bool,
    #[serde(default)]
    pub attn_logit_softcapping: Option<f64>,
    /// `tanh` capping of the final logits (Gemma 2); Gemma 3 checkpoints have none.
    #[serde(default)]
    pub final_logit_softcapping: Option<f64>,
    /// What the checkpoint adds to every RMSNorm weight: 0 for HF checkpoints; 1 for GGUF
    /// files, whose norms llama.cpp's converter stores as `1 + w` (set by
    /// `GgufModel::config`; the norm then forms `1 + (stored - 1)` in f32, as transformers'
    /// GGUF loader and `Gemma3RMSNorm` do).
    #[serde(default, rename = "_gguf_norm_shift")]
    pub gguf_norm_shift: f64,
    #[serde(default)]
    pub attention_bias: bool,
    #[serde(default = "default_true")]
    pub tie_word_embeddings: bool,
    #[serde(default)]
    pub pad_token_id: u32,
}

impl Gemma3Config {
    pub fn kv_heads(&self) -> usize {
        self.num_key_value_heads.unwrap_or(self.num_attention_heads)
    }

    /// Whether layer `l` is a sliding-window layer (`layer_types`, else the pattern of
    /// `Gemma3TextConfig.__init__`: `(l + 1) % pattern != 0`).
    pub fn is_sliding(&self, l: usize) -> bool {
        match &self.layer_types {
            Some(t) => t.get(l).map(String::as_str) == Some("sliding_attention"),
            None => (l + 1) % self.sliding_window_pattern.max(1) != 0,
        }
    }

    /// The window the attention mask applies on sliding layers: `sliding_window`, or under
    /// `use_bidirectional_attention` `sliding_window / 2 + 1` (what `Gemma3TextConfig.__init__`
    /// stores), a key `j` being visible from query `i` when `|i - j| < window`.
    pub fn attention_window(&self) -> usize {
        if self.use_bidirectional_attention { self.sliding_window / 2 + 1 } else { self.sliding_window }
    }

    /// Rejects configurations this implementation cannot run.
    pub fn validate(&self, file: &str) -> Result<()> {
        let bad = |msg: String| Err(Error::Config { file: file.to_string(), msg });
        if !matches!(self.model_type.as_str(), "gemma3_text" | "") {
            return bad(format!("model_type `{}` is not a Gemma 3 text model", self.model_type));
        }
        for (name, v) in [
            ("vocab_size", self.vocab_size),
            ("hidden_size", self.hidden_size),
            ("intermediate_size", self.intermediate_size),
            ("num_hidden_layers", self.num_hidden_layers),
            ("num_attention_heads", self.num_attention_heads),
            ("num_key_value_heads", self.kv_heads()),
            ("sliding_window", self.sliding_window),
        ] {
            if v == 0 || v > 1 << 24 {
                return bad(format!("{name} = {v} is out of range"));
            }
        }
        if self.num_hidden_layers > 512 {
            return bad(format!("num_hidden_layers = {} is out of range", self.num_hidden_layers));
        }
        if self.num_attention_heads % self.kv_heads() != 0 {
            return bad(format!("num_attention_heads {} is not a multiple of num_key_value_heads {}", self.num_attention_heads, self.kv_heads()));
        }
        let d = self.head_dim;
        if d == 0 || d % 2 != 0 || d > MAX_HEAD_DIM {
            return bad(format!("head_dim {d} must be even and at most {MAX_HEAD_DIM}"));
        }
        if self.hidden_activation != "gelu_pytorch_tanh" {
            return bad(format!("hidden_activation `{}` is not supported (only `gelu_pytorch_tanh`)", self.hidden_activation));
        }
        if self.attn_logit_softcapping.is_some() {
            return bad("attn_logit_softcapping is not supported".into());
        }
        if self.final_logit_softcapping.is_some() {
            return bad("final_logit_softcapping is not supported".into());
        }
        if !(self.gguf_norm_shift == 0.0 || self.gguf_norm_shift == 1.0) {
            return bad(format!("_gguf_norm_shift {} must be 0 or 1", self.gguf_norm_shift));
        }
        if self.attention_bias {
            return bad("attention_bias is not supported".into());
        }
        if self.rope_scaling.as_ref().is_some_and(|v| !v.is_null()) {
            return bad("rope_scaling is not supported".into());
        }
        if let Some(t) = &self.layer_types {
            if t.len() != self.num_hidden_layers {
                return bad(format!("layer_types has {} entries for {} layers", t.len(), self.num_hidden_layers));
            }
            if let Some(x) = t.iter().find(|x| !matches!(x.as_str(), "sliding_attention" | "full_attention")) {
                return bad(format!("layer type `{x}` is not supported"));
            }
        }
        for (name, v) in [("rope_theta", self.rope_theta), ("rope_local_base_freq", self.rope_local_base_freq)] {
            if !(v > 1.0 && v.is_finite()) {
                return bad(format!("{name} {v} is out of range"));
            }
        }
        if !(self.rms_norm_eps > 0.0 && self.rms_norm_eps < 1.0) {
            return bad(format!("rms_norm_eps {} is out of range", self.rms_norm_eps));
        }
        if !(self.query_pre_attn_scalar > 0.0 && self.query_pre_attn_scalar.is_finite()) {
            return bad(format!("query_pre_attn_scalar {} is out of range", self.query_pre_attn_scalar));
        }
        Ok(())
    }

    /// `inv_freq` of the default RoPE with base `theta`: `1 / theta^(2i / d)` in f32, as
    /// transformers computes it.
    pub fn rope_inv_freq(&self, theta: f64) -> Vec<f32> {
        let d = self.head_dim;
        (0..d / 2).map(|i| 1.0 / (theta as f32).powf((2 * i) as f32 / d as f32)).collect()
    }
}

/// Every tensor of a `Gemma3TextModel` checkpoint of `c` (HF names, with the `model.` prefix
/// of `Gemma3ForCausalLM`; tied LM head) with its shape. Used to build random-weight
/// checkpoints of a real config for benchmarks.
pub fn checkpoint_shapes(c: &Gemma3Config) -> Vec<(String, Vec<usize>)> {
    let (h, i, d) = (c.hidden_size, c.intermediate_size, c.head_dim);
    let (qw, kvw) = (c.num_attention_heads * d, c.kv_heads() * d);
    let mut v = vec![("model.embed_tokens.weight".to_string(), vec![c.vocab_size, h])];
    for l in 0..c.num_hidden_layers {
        let p = format!("model.layers.{l}");
        for (name, out, inp) in [
            ("self_attn.q_proj", qw, h),
            ("self_attn.k_proj", kvw, h),
            ("self_attn.v_proj", kvw, h),
            ("self_attn.o_proj", h, qw),
            ("mlp.gate_proj", i, h),
            ("mlp.up_proj", i, h),
            ("mlp.down_proj", h, i),
        ] {
            v.push((format!("{p}.{name}.weight"), vec![out, inp]));
        }
        for (name, dim) in [("self_attn.q_norm", d), ("self_attn.k_norm", d)] {
            v.push((format!("{p}.{name}.weight"), vec![dim]));
        }
        for name in ["input_layernorm", "post_attention_layernorm", "pre_feedforward_layernorm", "post_feedforward_layernorm"] {
            v.push((format!("{p}.{name}.weight"), vec![h]));
        }
    }
    v.push(("model.norm.weight".into(), vec![h]));
    v
}

/// The tensors the load dtype applies to ([`crate::nn::WeightRoles`]).
pub const WEIGHT_ROLES: crate::nn::WeightRoles = crate::nn::WeightRoles {
    linear: is_linear_weight,
    table: |n| n == "embed_tokens.weight" || n == "model.embed_tokens.weight",
};

/// Whether `name` is the weight of one of the trunk's [`Linear`] layers.
pub fn is_linear_weight(name: &str) -> bool {
    name.contains("layers.") && name.ends_with("_proj.weight")
}

/// `Gemma3RMSNorm`: `x / sqrt(mean(x²) + eps) · (1 + w)`, computed in f32. The `1 + w` is
/// formed once on load (in f32, as the forward pass forms it), so the plain RMSNorm kernels
/// run it. `shift` is what the checkpoint added to `w` ([`Gemma3Config::gguf_norm_shift`]):
/// `w = stored - shift` in f32 first, as transformers' GGUF loader computes it.
async fn gemma_rms_norm(vb: &VarBuilder<'_>, dim: usize, eps: f32, shift: f32) -> Result<RmsNorm> {
    let w = vb.get("weight", &[dim]).await?;
    let gpu = vb.gpu();
    let one_plus: Vec<f32> = gpu.readback_f32(&w).await?.iter().map(|v| 1.0 + (v - shift)).collect();
    Ok(RmsNorm { weight: gpu.upload_f32(&one_plus, &[dim])?, eps })
}

/// `Gemma3Attention`.
pub struct Gemma3Attention {
    q_proj: Linear,
    k_proj: Linear,
    v_proj: Linear,
    o_proj: Linear,
    q_norm: RmsNorm,
    k_norm: RmsNorm,
    shape: AttentionShape,
    sliding: bool,
}

impl Gemma3Attention {
    async fn load(vb: &VarBuilder<'_>, c: &Gemma3Config, layer: usize) -> Result<Self> {
        let (h, d) = (c.hidden_size, c.head_dim);
        let (qw, kvw) = (c.num_attention_heads * d, c.kv_heads() * d);
        let (eps, shift) = (c.rms_norm_eps as f32, c.gguf_norm_shift as f32);
        let sliding = c.is_sliding(layer);
        Ok(Self {
            q_proj: Linear::load(&vb.pp("q_proj"), h, qw, false).await?,
            k_proj: Linear::load(&vb.pp("k_proj"), h, kvw, false).await?,
            v_proj: Linear::load(&vb.pp("v_proj"), h, kvw, false).await?,
            o_proj: Linear::load(&vb.pp("o_proj"), qw, h, false).await?,
            q_norm: gemma_rms_norm(&vb.pp("q_norm"), d, eps, shift).await?,
            k_norm: gemma_rms_norm(&vb.pp("k_norm"), d, eps, shift).await?,
            shape: AttentionShape {
                heads: c.num_attention_heads,
                kv_heads: c.kv_heads(),
                head_dim: d,
                causal: !c.use_bidirectional_attention,
                scale: c.query_pre_attn_scalar.powf(-0.5) as f32,
                window: if sliding { c.attention_window() } else { 0 },
            },
            sliding,
        })
    }

    /// `x`: `[batch * seq, hidden]` → `[batch * seq, hidden]`; `mask`: `[batch, seq]` u32.
    fn forward(&self, enc: &mut Encoder, x: &GpuTensor, mask: &GpuTensor, rope: (&GpuTensor, &GpuTensor), batch: usize, seq: usize) -> Result<GpuTensor> {
        let s = self.shape;
        let n = x.shape()[0];
        let (qw, kvw) = (s.heads * s.head_dim, s.kv_heads * s.head_dim);
        let q = self.q_proj.forward(enc, x)?;
        let k = self.k_proj.forward(enc, x)?;
        let v = self.v_proj.forward(enc, x)?;
        let q = self.q_norm.forward(enc, &q.reshape(&[n * s.heads, s.head_dim])?)?.reshape(&[n, qw])?;
        let k = self.k_norm.forward(enc, &k.reshape(&[n * s.kv_heads, s.head_dim])?)?.reshape(&[n, kvw])?;
        let (inv_freq, state) = rope;
        rope_batched(enc, &q, inv_freq, state, s.heads, s.head_dim, seq)?;
        rope_batched(enc, &k, inv_freq, state, s.kv_heads, s.head_dim, seq)?;
        let o = attention(enc, &q.reshape(&[batch, seq, qw])?, &k.reshape(&[batch, seq, kvw])?, &v.reshape(&[batch, seq, kvw])?, mask, s)?;
        self.o_proj.forward(enc, &o.reshape(&[n, qw])?)
    }

    /// `x`: `[n, hidden]` → `[n, hidden]` over the KV cache: the `n` tokens continue the
    /// `state[1]` already cached; their keys and values are appended to the layer's cache
    /// (`rope_append`), and the causal attention (one-sided window on sliding layers) reads it.
    fn forward_cached(&self, enc: &mut Encoder, x: &GpuTensor, inv_freq: &GpuTensor, state: &GpuTensor, k_cache: &GpuTensor, v_cache: &GpuTensor) -> Result<GpuTensor> {
        let s = self.shape;
        let n = x.shape()[0];
        let (qw, kvw) = (s.heads * s.head_dim, s.kv_heads * s.head_dim);
        let q = self.q_proj.forward(enc, x)?;
        let k = self.k_proj.forward(enc, x)?;
        let v = self.v_proj.forward(enc, x)?;
        let q = self.q_norm.forward(enc, &q.reshape(&[n * s.heads, s.head_dim])?)?.reshape(&[n, qw])?;
        let k = self.k_norm.forward(enc, &k.reshape(&[n * s.kv_heads, s.head_dim])?)?.reshape(&[n, kvw])?;
        rope_append(enc, &q, &k, &v, inv_freq, state, k_cache, v_cache, s.heads, s.kv_heads, s.head_dim)?;
        let o = attention_cached(enc, &q, k_cache, v_cache, state, s)?;
        self.o_proj.forward(enc, &o)
    }
}

/// `Gemma3DecoderLayer`: `x + post_attention_layernorm(attn(input_layernorm(x)))`, then
/// `x + post_feedforward_layernorm(mlp(pre_feedforward_layernorm(x)))`.
pub struct Gemma3DecoderLayer {
    input_layernorm: RmsNorm,
    self_attn: Gemma3Attention,
    post_attention_layernorm: RmsNorm,
    pre_feedforward_layernorm: RmsNorm,
    /// HF `Gemma3MLP`: `down(gelu_tanh(gate(x)) * up(x))`.
    mlp: GatedMlp,
    post_feedforward_layernorm: RmsNorm,
}

impl Gemma3DecoderLayer {
    async fn load(vb: &VarBuilder<'_>, c: &Gemma3Config, layer: usize) -> Result<Self> {
        let (h, eps, sh) = (c.hidden_size, c.rms_norm_eps as f32, c.gguf_norm_shift as f32);
        Ok(Self {
            input_layernorm: gemma_rms_norm(&vb.pp("input_layernorm"), h, eps, sh).await?,
            self_attn: Gemma3Attention::load(&vb.pp("self_attn"), c, layer).await?,
            post_attention_layernorm: gemma_rms_norm(&vb.pp("post_attention_layernorm"), h, eps, sh).await?,
            pre_feedforward_layernorm: gemma_rms_norm(&vb.pp("pre_feedforward_layernorm"), h, eps, sh).await?,
            // gate and up stacked into one product where their weights allow (the GeGLU then
            // rides on it for one token: `GatedMlp::forward`).
            mlp: GatedMlp::load_packed(&vb.pp("mlp"), c.hidden_size, c.intermediate_size, GateActivation::GeluTanh).await?,
            post_feedforward_layernorm: gemma_rms_norm(&vb.pp("post_feedforward_layernorm"), h, eps, sh).await?,
        })
    }
}

/// `Gemma3TextModel`: returns the last hidden state (after the final norm).
pub struct Gemma3TextModel {
    pub config: Gemma3Config,
    embed_tokens: Embedding,
    /// `sqrt(hidden_size)` rounded to f32 (the table's dtype; an F16-stored table is
    /// widened to f32 by the gather, and f32 is what the scale is applied in).
    embed_scale: f32,
    layers: Vec<Gemma3DecoderLayer>,
    norm: RmsNorm,
    /// `inv_freq` of the sliding (local) and global layers.
    inv_freq_local: GpuTensor,
    inv_freq_global: GpuTensor,
    /// `[4]` u32 zeros: RoPE positions start at 0 (`rope_batched`'s `state[1]`).
    rope_state: GpuTensor,
}

impl Gemma3TextModel {
    /// Loads from a checkpoint whose tensors live under `vb` (`embed_tokens.*`, `layers.*`,
    /// `norm.*`), or under `vb.pp("model")` when the checkpoint has that prefix.
    pub async fn load(vb: &VarBuilder<'_>, config: Gemma3Config) -> Result<Self> {
        config.validate("config.json")?;
        let m = if vb.contains("model.embed_tokens.weight") { vb.pp("model") } else { vb.clone() };
        let embed_tokens =
            Embedding { weight: m.pp("embed_tokens").get_weight("weight", &[config.vocab_size, config.hidden_size]).await? };
        let mut layers = Vec::with_capacity(config.num_hidden_layers);
        for l in 0..config.num_hidden_layers {
            layers.push(Gemma3DecoderLayer::load(&m.pp(format!("layers.{l}")), &config, l).await?);
        }
        let norm = gemma_rms_norm(&m.pp("norm"), config.hidden_size, config.rms_norm_eps as f32, config.gguf_norm_shift as f32).await?;
        let gpu = vb.gpu();
        let (local, global) = (config.rope_inv_freq(config.rope_local_base_freq), config.rope_inv_freq(config.rope_theta));
        Ok(Self {
            embed_scale: (config.hidden_size as f64).sqrt() as f32,
            inv_freq_local: gpu.upload_f32(&local, &[local.len()])?,
            inv_freq_global: gpu.upload_f32(&global, &[global.len()])?,
            rope_state: gpu.upload_u32(&[0; 4], &[4])?,
            config,
            embed_tokens,
            layers,
            norm,
        })
    }

    /// Every linear layer of the trunk, in order (for inspection: dtypes, bytes).
    pub fn linears(&self) -> impl Iterator<Item = &Linear> {
        self.layers.iter().flat_map(|l| {
            let a = &l.self_attn;
            [&a.q_proj, &a.k_proj, &a.v_proj, &a.o_proj].into_iter().chain(l.mlp.linears())
        })
    }

    /// Records the forward pass of `batch` right-padded sequences of `seq` tokens (positions
    /// `0..seq` in every row, so a padded row equals the same text unpadded).
    /// - `ids`: `[batch * seq]` u32
    /// - `mask`: `[batch, seq]` u32, 0 marks padding
    /// - returns the last hidden state `[batch, seq, hidden]` f32
    pub fn forward(&self, enc: &mut Encoder, ids: &GpuTensor, mask: &GpuTensor, batch: usize, seq: usize) -> Result<GpuTensor> {
        let hid = self.config.hidden_size;
        if ids.numel() != batch * seq || mask.shape() != [batch, seq] {
            return Err(Error::shape("gemma3", "ids / mask", format!("[{}] / [{batch}, {seq}]", batch * seq), ids.shape()));
        }
        let Some(first) = self.layers.first() else {
            return Err(Error::Input("model has no layers".into()));
        };
        let e = self.embed_tokens.forward(enc, ids)?;
        let mut x = scale(enc, &e, self.embed_scale)?;
        drop(e);
        let mut h = first.input_layernorm.forward(enc, &x)?;
        for (l, layer) in self.layers.iter().enumerate() {
            let a = &layer.self_attn;
            let inv_freq = if a.sliding { &self.inv_freq_local } else { &self.inv_freq_global };
            let att = a.forward(enc, &h, mask, (inv_freq, &self.rope_state), batch, seq)?;
            let att = layer.post_attention_layernorm.forward(enc, &att)?;
            (x, h) = layer.pre_feedforward_layernorm.forward_residual(enc, &x, &att)?;
            let m = layer.mlp.forward(enc, &h)?;
            let m = layer.post_feedforward_layernorm.forward(enc, &m)?;
            let next_norm = self.layers.get(l + 1).map_or(&self.norm, |n| &n.input_layernorm);
            (x, h) = next_norm.forward_residual(enc, &x, &m)?;
        }
        h.reshape(&[batch, seq, hid])
    }
}

impl Gemma3TextModel {
    /// The decoder stack over a KV cache: `ids` (`[n]` u32) continue the `state[1]` tokens in
    /// `cache`; returns the final-normed hidden state `[n, hidden]`.
    fn forward_cached(&self, enc: &mut Encoder, ids: &GpuTensor, cache: &KvCache, state: &GpuTensor) -> Result<GpuTensor> {
        let n = ids.numel();
        if cache.k.len() != self.layers.len() {
            return Err(Error::Input("KV cache was built for another model".into()));
        }
        if n > cache.rows {
            return Err(Error::Input(format!("{n} tokens exceed the KV cache of {} rows", cache.rows)));
        }
        let Some(first) = self.layers.first() else {
            return Err(Error::Input("model has no layers".into()));
        };
        let e = self.embed_tokens.forward(enc, ids)?;
        let mut x = scale(enc, &e, self.embed_scale)?;
        drop(e);
        let mut h = first.input_layernorm.forward(enc, &x)?;
        for (l, layer) in self.layers.iter().enumerate() {
            let a = &layer.self_attn;
            let inv_freq = if a.sliding { &self.inv_freq_local } else { &self.inv_freq_global };
            let att = a.forward_cached(enc, &h, inv_freq, state, &cache.k[l], &cache.v[l])?;
            let att = layer.post_attention_layernorm.forward(enc, &att)?;
            (x, h) = layer.pre_feedforward_layernorm.forward_residual(enc, &x, &att)?;
            let m = layer.mlp.forward(enc, &h)?;
            let m = layer.post_feedforward_layernorm.forward(enc, &m)?;
            let next_norm = self.layers.get(l + 1).map_or(&self.norm, |n| &n.input_layernorm);
            (x, h) = next_norm.forward_residual(enc, &x, &m)?;
        }
        Ok(h)
    }
}

/// `Gemma3ForCausalLM` for generation: the text model over a KV cache and the LM head (tied to
/// the embedding table, or a separate `lm_head.weight`). No final-logit softcapping (Gemma 3
/// has none; a config that asks for it is refused).
/// HF: <https://github.com/huggingface/transformers/blob/v4.57.3/src/transformers/models/gemma3/modeling_gemma3.py>
pub struct Gemma3ForCausalLM {
    pub model: Gemma3TextModel,
    /// `None`: tied to `model.embed_tokens`.
    lm_head: Option<Linear>,
}

impl Gemma3ForCausalLM {
    pub async fn load(vb: &VarBuilder<'_>, config: Gemma3Config) -> Result<Self> {
        if config.use_bidirectional_attention {
            return Err(Error::Config { file: "config.json".into(), msg: "use_bidirectional_attention: an encoder, not a causal LM".into() });
        }
        let lm_head = if config.tie_word_embeddings || !vb.contains("lm_head.weight") {
            None
        } else {
            Some(Linear::load(&vb.pp("lm_head"), config.hidden_size, config.vocab_size, false).await?)
        };
        Ok(Self { model: Gemma3TextModel::load(vb, config).await?, lm_head })
    }

    pub fn config(&self) -> &Gemma3Config {
        &self.model.config
    }

    /// Bytes of weights read per decoded token (every projection, the LM head; norms
    /// ignored), for bandwidth figures.
    pub fn weight_bytes_per_token(&self) -> u64 {
        let lin: u64 = self.model.linears().map(|l| l.weight.byte_size()).sum();
        lin + match &self.lm_head {
            Some(h) => h.weight.byte_size(),
            None => self.model.embed_tokens.weight.byte_len(),
        }
    }

    /// Records a context shift of `cache` (as `LlamaModel::shift_cache`): rows `[keep, keep +
    /// drop)` of every layer dropped, the `used - keep - drop` rows after them moved down with
    /// their keys rotated back by the layer's own RoPE base (local or global). The caller sets
    /// `state[1]` to `used - drop`; sliding layers then apply their window to the new positions.
    pub fn shift_cache(&self, enc: &mut Encoder, cache: &KvCache, keep: usize, drop: usize, used: usize) -> Result<()> {
        let m = &self.model;
        let c = &m.config;
        if cache.k.len() != m.layers.len() {
            return Err(Error::Input("KV cache was built for another model".into()));
        }
        for ((k, v), layer) in cache.k.iter().zip(&cache.v).zip(&m.layers) {
            let inv_freq = if layer.self_attn.sliding { &m.inv_freq_local } else { &m.inv_freq_global };
            crate::kernels::rope::kv_shift(enc, k, v, inv_freq, c.kv_heads(), c.head_dim, keep, drop, used)?;
        }
        Ok(())
    }

    /// Records the forward pass of `ids` (`[n]` u32), which continue a sequence of `state[1]`
    /// tokens already in `cache`, and returns the logits of the last token (`[1, vocab]`), or
    /// of every token when `all_logits` (as `LlamaModel::forward`).
    pub fn forward(&self, enc: &mut Encoder, ids: &GpuTensor, cache: &KvCache, state: &GpuTensor, all_logits: bool) -> Result<GpuTensor> {
        let n = ids.numel();
        let mut h = self.model.forward_cached(enc, ids, cache, state)?;
        if !all_logits && n > 1 {
            let hid = self.model.config.hidden_size;
            let last = enc.gpu().alloc(&[1, hid], DType::F32)?;
            enc.copy_slice(&h, (n - 1) * hid, &last, 0, hid)?;
            h = last;
        }
        match &self.lm_head {
            Some(head) => head.forward(enc, &h),
            None => matmul::linear(enc, &h, &self.model.embed_tokens.weight, None),
        }
    }
}
