//! Llama-family decoders (Touvron et al., 2023, <https://arxiv.org/abs/2302.13971>),
//! following Hugging Face transformers' `models/llama/modeling_llama.py`, with the
//! variants of `models/qwen2/modeling_qwen2.py` (q/k/v bias) and
//! `models/qwen3/modeling_qwen3.py` (RMSNorm of each query and key head) as config flags:
//! `LlamaRMSNorm`, `LlamaRotaryEmbedding` (`rotate_half` form, `rope_theta`, `linear` and
//! `llama3` scaling), `LlamaAttention` (grouped-query heads), `LlamaMLP` (SwiGLU),
//! `LlamaDecoderLayer` (pre-norm residual blocks), `LlamaModel` and the LM head of
//! `LlamaForCausalLM` (tied to the embeddings or separate).
//!
//! Two ways through the same layers: [`LlamaModel::forward`] continues one sequence over a
//! [`KvCache`] (generation), and [`LlamaModel::forward_hidden`] runs a batch of right-padded
//! sequences without a cache and returns the final-normed hidden states (the decoder
//! embedders and rerankers of `engine/`, Qwen3-Embedding and Qwen3-Reranker).
//!
//! Weights are looked up under HF checkpoint names (`model.embed_tokens.weight`,
//! `model.layers.N.self_attn.q_proj.weight`, ..., `lm_head.weight`). Activations are f32;
//! projection weights are F32 or F16 (`nn::Linear` picks the kernel, so quantized formats
//! slot in without changes here). The KV cache lives on the GPU ([`KvCache`]) and the
//! position of the next token is read on the GPU from a `state` buffer (see
//! `SPEC/generation.md`), so a recorded decode step replays unchanged.

use serde::Deserialize;

use crate::error::{Error, Result};
use crate::gpu::{DType, Encoder, Gpu, GpuTensor};
use crate::kernels::attention::{attention, attention_cached, AttentionShape, MAX_HEAD_DIM};
use crate::kernels::matmul;
use crate::kernels::quant::Fusion;
use crate::kernels::rope::{rope_append, rope_append_packed, rope_batched};
use crate::nn::{Embedding, GateActivation, GatedMlp, Linear, RmsNorm, VarBuilder};

fn default_theta() -> f64 {
    10000.0
}
fn default_eps() -> f64 {
    1e-6
}
fn default_act() -> String {
    "silu".into()
}
fn default_max_pos() -> usize {
    2048
}

/// `rope_scaling` of `config.json` (the forms supported models use).
#[derive(Debug, Clone, Deserialize)]
pub struct RopeScaling {
    #[serde(alias = "type")]
    pub rope_type: String,
    #[serde(default)]
    pub factor: Option<f64>,
    #[serde(default)]
    pub low_freq_factor: Option<f64>,
    #[serde(default)]
    pub high_freq_factor: Option<f64>,
    #[serde(default)]
    pub original_max_position_embeddings: Option<usize>,
}

/// `config.json` of a Llama, Qwen2 or Qwen3 checkpoint (the fields inference needs).
#[derive(Debug, Clone, Deserialize)]
pub struct LlamaConfig {
    /// `llama`, `qwen2` or `qwen3`: selects the q/k/v bias and q/k norm defaults.
    #[serde(default)]
    pub model_type: String,
    pub vocab_size: usize,
    pub hidden_size: usize,
    pub intermediate_size: usize,
    pub num_hidden_layers: usize,
    pub num_attention_heads: usize,
    #[serde(default)]
    pub num_key_value_heads: Option<usize>,
    #[serde(default)]
    pub head_dim: Option<usize>,
    #[serde(default = "default_act")]
    pub hidden_act: String,
    #[serde(default = "default_eps")]
    pub rms_norm_eps: f64,
    #[serde(default = "default_theta")]
    pub rope_theta: f64,
    #[serde(default)]
    pub rope_scaling: Option<RopeScaling>,
    #[serde(default = "default_max_pos")]
    pub max_position_embeddings: usize,
    #[serde(default)]
    pub tie_word_embeddings: bool,
    /// Llama's `attention_bias` (q/k/v/o bias). Qwen2 always has q/k/v bias.
    #[serde(default)]
    pub attention_bias: bool,
    #[serde(default)]
    pub mlp_bias: bool,
}

impl LlamaConfig {
    pub fn kv_heads(&self) -> usize {
        self.num_key_value_heads.unwrap_or(self.num_attention_heads)
    }
    pub fn head_dim(&self) -> usize {
        self.head_dim.unwrap_or(self.hidden_size / self.num_attention_heads.max(1))
    }
    /// q/k/v projections carry a bias (Qwen2, or Llama with `attention_bias`).
    pub fn qkv_bias(&self) -> bool {
        self.model_type == "qwen2" || self.attention_bias
    }
    /// o_proj carries a bias (Llama with `attention_bias`; Qwen2's o_proj has none).
    pub fn o_bias(&self) -> bool {
        self.model_type != "qwen2" && self.attention_bias
    }
    /// Each query and key head is RMS-normalised before RoPE (Qwen3).
    pub fn qk_norm(&self) -> bool {
        self.model_type == "qwen3"
    }

    /// Rejects configurations this implementation cannot run.
    pub fn validate(&self, file: &str) -> Result<()> {
        let bad = |msg: String| Err(Error::Config { file: file.to_string(), msg });
        if !matches!(self.model_type.as_str(), "llama" | "qwen2" | "qwen3" | "mistral" | "") {
            return bad(format!("model_type `{}` is not a Llama-family decoder", self.model_type));
        }
        for (name, v) in [
            ("vocab_size", self.vocab_size),
            ("hidden_size", self.hidden_size),
            ("intermediate_size", self.intermediate_size),
            ("num_hidden_layers", self.num_hidden_layers),
            ("num_attention_heads", self.num_attention_heads),
            ("num_key_value_heads", self.kv_heads()),
            ("max_position_embeddings", self.max_position_embeddings),
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
        let d = self.head_dim();
        if d == 0 || d % 2 != 0 || d > MAX_HEAD_DIM {
            return bad(format!("head_dim {d} must be even and at most {MAX_HEAD_DIM}"));
        }
        if self.hidden_act != "silu" {
            return bad(format!("hidden_act `{}` is not supported (only `silu`)", self.hidden_act));
        }
        if self.mlp_bias {
            return bad("mlp_bias is not supported".into());
        }
        if !(self.rms_norm_eps > 0.0 && self.rms_norm_eps < 1.0) {
            return bad(format!("rms_norm_eps {} is out of range", self.rms_norm_eps));
        }
        if !(self.rope_theta > 1.0 && self.rope_theta.is_finite()) {
            return bad(format!("rope_theta {} is out of range", self.rope_theta));
        }
        self.rope_inv_freq().map_err(|msg| Error::Config { file: file.to_string(), msg })?;
        Ok(())
    }

    /// `inv_freq` of `LlamaRotaryEmbedding`: `1 / theta^(2i / d)` in f32 as transformers
    /// computes it, with `linear` or `llama3` scaling applied.
    pub fn rope_inv_freq(&self) -> std::result::Result<Vec<f32>, String> {
        let d = self.head_dim();
        let base = self.rope_theta as f32;
        let mut inv: Vec<f32> = (0..d / 2).map(|i| 1.0 / base.powf((2 * i) as f32 / d as f32)).collect();
        let Some(s) = &self.rope_scaling else { return Ok(inv) };
        // A factor of 0, a negative or non-finite one, or equal low/high frequency factors
        // would give infinite or NaN frequencies (NaN logits).
        let positive = |name: &str, v: Option<f64>| match v {
            Some(v) if !(v > 0.0 && v.is_finite()) => Err(format!("rope_scaling {name} {v} must be positive and finite")),
            _ => Ok(()),
        };
        positive("factor", s.factor)?;
        positive("low_freq_factor", s.low_freq_factor)?;
        positive("high_freq_factor", s.high_freq_factor)?;
        if s.original_max_position_embeddings == Some(0) {
            return Err("rope_scaling original_max_position_embeddings must be positive".into());
        }
        match s.rope_type.as_str() {
            "default" => {}
            "linear" => {
                let f = s.factor.ok_or("rope_scaling linear needs `factor`")? as f32;
                inv.iter_mut().for_each(|v| *v /= f);
            }
            "llama3" => {
                // transformers' `_compute_llama3_parameters`.
                let f = s.factor.ok_or("rope_scaling llama3 needs `factor`")?;
                let lo = s.low_freq_factor.unwrap_or(1.0);
                let hi = s.high_freq_factor.unwrap_or(4.0);
                let old = s.original_max_position_embeddings.unwrap_or(8192) as f64;
                if hi <= lo {
                    return Err(format!("rope_scaling high_freq_factor {hi} must exceed low_freq_factor {lo}"));
                }
                let (lo_wl, hi_wl) = (old / lo, old / hi);
                for v in inv.iter_mut() {
                    let wl = 2.0 * std::f64::consts::PI / *v as f64;
                    let x = *v as f64;
                    *v = if wl < hi_wl {
                        x
                    } else if wl > lo_wl {
                        x / f
                    } else {
                        let smooth = (old / wl - lo) / (hi - lo);
                        (1.0 - smooth) * x / f + smooth * x
                    } as f32;
                }
            }
            other => return Err(format!("rope_scaling type `{other}` is not supported (default, linear, llama3)")),
        }
        if let Some(v) = inv.iter().find(|v| !(v.is_finite() && **v > 0.0)) {
            return Err(format!("rope frequencies are not positive and finite ({v}); check rope_theta and rope_scaling"));
        }
        Ok(inv)
    }
}

/// The tensors the load dtype applies to ([`crate::nn::WeightRoles`]).
/// Names are matched with or without the `model.` prefix (a `Qwen3Model` checkpoint such as
/// Qwen3-Embedding's stores `embed_tokens.weight`, `layers.N...`).
pub const WEIGHT_ROLES: crate::nn::WeightRoles =
    crate::nn::WeightRoles { linear: is_linear_weight, table: |n| n.strip_prefix("model.").unwrap_or(n) == "embed_tokens.weight" };

/// Whether `name` is the weight of one of the model's [`Linear`] layers: the attention and MLP
/// projections and a separate LM head (what quantized loads and `gllm quantize` store in a
/// block format).
pub fn is_linear_weight(name: &str) -> bool {
    let trunk = name.strip_prefix("model.").unwrap_or(name);
    (trunk.starts_with("layers.") && name.ends_with("_proj.weight")) || name == "lm_head.weight"
}

/// Every tensor of a checkpoint of `c` (HF names) with its shape. Used to build
/// random-weight checkpoints of a real config for tests and benchmarks.
pub fn checkpoint_shapes(c: &LlamaConfig) -> Vec<(String, Vec<usize>)> {
    let (h, i, d) = (c.hidden_size, c.intermediate_size, c.head_dim());
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
        if c.qkv_bias() {
            for (name, out) in [("q_proj", qw), ("k_proj", kvw), ("v_proj", kvw)] {
                v.push((format!("{p}.self_attn.{name}.bias"), vec![out]));
            }
        }
        if c.o_bias() {
            v.push((format!("{p}.self_attn.o_proj.bias"), vec![h]));
        }
        if c.qk_norm() {
            v.push((format!("{p}.self_attn.q_norm.weight"), vec![d]));
            v.push((format!("{p}.self_attn.k_norm.weight"), vec![d]));
        }
        v.push((format!("{p}.input_layernorm.weight"), vec![h]));
        v.push((format!("{p}.post_attention_layernorm.weight"), vec![h]));
    }
    v.push(("model.norm.weight".into(), vec![h]));
    if !c.tie_word_embeddings {
        v.push(("lm_head.weight".into(), vec![c.vocab_size, h]));
    }
    v
}

/// Element type of the KV cache.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum KvDType {
    /// IEEE half, two per u32 word (`DType::F16`): half the memory of f32, each stored key
    /// and value rounded to f16 (relative error ≤ 2⁻¹¹). Kernels pack and unpack it with
    /// `pack2x16float` / `unpack2x16float`, so it needs no `shader-f16`.
    F16,
    F32,
}

impl KvDType {
    /// The default: f16 where the device has `shader-f16` (a GPU that handles halves
    /// natively), else f32. The f16 cache is the packed one either way.
    pub fn default_for(gpu: &Gpu) -> Self {
        if gpu.caps().shader_f16 { Self::F16 } else { Self::F32 }
    }

    /// The tensor dtype of the cache buffers.
    pub fn dtype(self) -> DType {
        match self {
            Self::F16 => DType::F16,
            Self::F32 => DType::F32,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Self::F16 => "f16",
            Self::F32 => "f32",
        }
    }
}

impl std::str::FromStr for KvDType {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        match s {
            "f16" => Ok(Self::F16),
            "f32" => Ok(Self::F32),
            _ => Err(Error::Input(format!("kv_dtype `{s}`: expected f16 or f32"))),
        }
    }
}

/// Keys and values of every layer, preallocated for `rows` positions, on the GPU.
pub struct KvCache {
    pub k: Vec<GpuTensor>,
    pub v: Vec<GpuTensor>,
    pub rows: usize,
    pub dtype: KvDType,
}

impl KvCache {
    pub fn new(gpu: &Gpu, c: &LlamaConfig, rows: usize, dtype: KvDType) -> Result<Self> {
        Self::with_shape(gpu, c.num_hidden_layers, c.kv_heads() * c.head_dim(), rows, dtype)
    }

    /// `layers` pairs of `[rows, kvw]` buffers (`kvw` = kv heads × head dim), f32 or f16.
    pub fn with_shape(gpu: &Gpu, layers: usize, kvw: usize, rows: usize, dtype: KvDType) -> Result<Self> {
        let mut k = Vec::with_capacity(layers);
        let mut v = Vec::with_capacity(layers);
        for _ in 0..layers {
            k.push(gpu.alloc(&[rows, kvw], dtype.dtype())?);
            v.push(gpu.alloc(&[rows, kvw], dtype.dtype())?);
        }
        Ok(Self { k, v, rows, dtype })
    }
}

/// `LlamaAttention` (+ Qwen2 bias, Qwen3 q/k norm).
pub struct LlamaAttention {
    /// `[q_proj, k_proj, v_proj]`, or the three stacked into one product at load when their
    /// weights allow ([`Linear::concat`]; generation only, and not with Qwen3's q/k norms).
    qkv: Vec<Linear>,
    o_proj: Linear,
    q_norm: Option<RmsNorm>,
    k_norm: Option<RmsNorm>,
    shape: AttentionShape,
}

impl LlamaAttention {
    async fn load(vb: &VarBuilder<'_>, c: &LlamaConfig, pack: bool) -> Result<Self> {
        let (h, d) = (c.hidden_size, c.head_dim());
        let (qw, kvw) = (c.num_attention_heads * d, c.kv_heads() * d);
        let bias = c.qkv_bias();
        let q = Linear::load(&vb.pp("q_proj"), h, qw, bias).await?;
        let k = Linear::load(&vb.pp("k_proj"), h, kvw, bias).await?;
        let v = Linear::load(&vb.pp("v_proj"), h, kvw, bias).await?;
        let packed = if pack && !c.qk_norm() { Linear::concat(vb.gpu(), &[&q, &k, &v])? } else { None };
        let qkv = match packed {
            Some(p) => vec![p],
            None => vec![q, k, v],
        };
        let (q_norm, k_norm) = if c.qk_norm() {
            let eps = c.rms_norm_eps as f32;
            (Some(RmsNorm::load(&vb.pp("q_norm"), d, eps).await?), Some(RmsNorm::load(&vb.pp("k_norm"), d, eps).await?))
        } else {
            (None, None)
        };
        Ok(Self {
            qkv,
            o_proj: Linear::load(&vb.pp("o_proj"), qw, h, c.o_bias()).await?,
            q_norm,
            k_norm,
            shape: AttentionShape {
                heads: c.num_attention_heads,
                kv_heads: c.kv_heads(),
                head_dim: d,
                causal: true,
                scale: 1.0 / (d as f32).sqrt(),
                window: 0,
            },
        })
    }

    /// `h` (`[n, hidden]`, normed) → `[n, hidden]`; appends this call's keys and values to
    /// the layer's cache rows `state[1] ..`.
    fn forward(&self, enc: &mut Encoder, h: &GpuTensor, inv_freq: &GpuTensor, state: &GpuTensor, k_cache: &GpuTensor, v_cache: &GpuTensor) -> Result<GpuTensor> {
        let s = self.shape;
        let q = match self.qkv.as_slice() {
            [qkv] => {
                let y = qkv.forward(enc, h)?;
                rope_append_packed(enc, &y, inv_freq, state, k_cache, v_cache, s.heads, s.kv_heads, s.head_dim)?
            }
            [q, k, v] => {
                let (q, k, v) = (q.forward(enc, h)?, k.forward(enc, h)?, v.forward(enc, h)?);
                self.append(enc, q, k, v, inv_freq, state, k_cache, v_cache)?
            }
            _ => return Err(Error::Input("attention: one packed or three q/k/v projections".into())),
        };
        let o = attention_cached(enc, &q, k_cache, v_cache, state, s)?;
        self.o_proj.forward(enc, &o)
    }

    /// Qwen3's q/k norms, then RoPE of q and k with k and v appended to the cache; returns q.
    #[allow(clippy::too_many_arguments)]
    fn append(&self, enc: &mut Encoder, mut q: GpuTensor, mut k: GpuTensor, v: GpuTensor, inv_freq: &GpuTensor, state: &GpuTensor, k_cache: &GpuTensor, v_cache: &GpuTensor) -> Result<GpuTensor> {
        let s = self.shape;
        let n = q.shape()[0];
        if let (Some(qn), Some(kn)) = (&self.q_norm, &self.k_norm) {
            // Qwen3: RMSNorm over head_dim of every head.
            q = qn.forward(enc, &q.reshape(&[n * s.heads, s.head_dim])?)?.reshape(&[n, s.heads * s.head_dim])?;
            k = kn.forward(enc, &k.reshape(&[n * s.kv_heads, s.head_dim])?)?.reshape(&[n, s.kv_heads * s.head_dim])?;
        }
        rope_append(enc, &q, &k, &v, inv_freq, state, k_cache, v_cache, s.heads, s.kv_heads, s.head_dim)?;
        Ok(q)
    }

    /// The pre-norm attention block over the residual stream `x` (`[1, hidden]`, one token
    /// on a GPU: `quant::fuses`): `x + attn(norm(x))`, appending the token's key and value to
    /// the layer's cache row `state[1]`. `norm` is the layer's `input_layernorm`, run as the
    /// projections' prologue, and the residual add is the output projection's epilogue
    /// (`Fusion`): with packed q/k/v, four dispatches and the two of the attention.
    #[allow(clippy::too_many_arguments)]
    fn forward_fused(
        &self,
        enc: &mut Encoder,
        x: &GpuTensor,
        norm: &RmsNorm,
        inv_freq: &GpuTensor,
        state: &GpuTensor,
        k_cache: &GpuTensor,
        v_cache: &GpuTensor,
    ) -> Result<GpuTensor> {
        let s = self.shape;
        let pre = Fusion { norm: Some((&norm.weight, norm.eps)), ..Default::default() };
        let q = match self.qkv.as_slice() {
            [qkv] => {
                let y = qkv.forward_fused(enc, x, pre)?;
                rope_append_packed(enc, &y, inv_freq, state, k_cache, v_cache, s.heads, s.kv_heads, s.head_dim)?
            }
            [q, k, v] => {
                let (q, k, v) = (q.forward_fused(enc, x, pre)?, k.forward_fused(enc, x, pre)?, v.forward_fused(enc, x, pre)?);
                self.append(enc, q, k, v, inv_freq, state, k_cache, v_cache)?
            }
            _ => return Err(Error::Input("attention: one packed or three q/k/v projections".into())),
        };
        let o = attention_cached(enc, &q, k_cache, v_cache, state, s)?;
        self.o_proj.forward_fused(enc, &o, Fusion { residual: Some(x), ..Default::default() })
    }

    /// `x`: `[batch * seq, hidden]` → `[batch * seq, hidden]`: `batch` right-padded sequences
    /// of `seq` tokens, positions `0..seq` in every row (`rope_state` is zeros), causal
    /// attention under the padding `mask` (`[batch, seq]` u32). No cache.
    fn forward_batched(&self, enc: &mut Encoder, x: &GpuTensor, inv_freq: &GpuTensor, rope_state: &GpuTensor, mask: &GpuTensor, batch: usize, seq: usize) -> Result<GpuTensor> {
        let s = self.shape;
        let n = x.shape()[0];
        let (qw, kvw) = (s.heads * s.head_dim, s.kv_heads * s.head_dim);
        let [q, k, v] = self.qkv.as_slice() else {
            return Err(Error::Input("a decoder loaded for generation (packed q/k/v) has no batched forward pass".into()));
        };
        let mut q = q.forward(enc, x)?;
        let mut k = k.forward(enc, x)?;
        let v = v.forward(enc, x)?;
        if let (Some(qn), Some(kn)) = (&self.q_norm, &self.k_norm) {
            q = qn.forward(enc, &q.reshape(&[n * s.heads, s.head_dim])?)?.reshape(&[n, qw])?;
            k = kn.forward(enc, &k.reshape(&[n * s.kv_heads, s.head_dim])?)?.reshape(&[n, kvw])?;
        }
        rope_batched(enc, &q, inv_freq, rope_state, s.heads, s.head_dim, seq)?;
        rope_batched(enc, &k, inv_freq, rope_state, s.kv_heads, s.head_dim, seq)?;
        let o = attention(enc, &q.reshape(&[batch, seq, qw])?, &k.reshape(&[batch, seq, kvw])?, &v.reshape(&[batch, seq, kvw])?, mask, s)?;
        self.o_proj.forward(enc, &o.reshape(&[n, qw])?)
    }
}

/// `LlamaDecoderLayer`: pre-norm attention and MLP blocks with residuals.
pub struct LlamaDecoderLayer {
    input_layernorm: RmsNorm,
    self_attn: LlamaAttention,
    post_attention_layernorm: RmsNorm,
    /// HF `LlamaMLP`: `down(silu(gate(x)) * up(x))`.
    mlp: GatedMlp,
}

impl LlamaDecoderLayer {
    /// `pack`: stack q/k/v and gate/up into one product each where the weights allow
    /// (generation; the batched trunk path needs them apart).
    async fn load(vb: &VarBuilder<'_>, c: &LlamaConfig, pack: bool) -> Result<Self> {
        let eps = c.rms_norm_eps as f32;
        let (mlp, h, i) = (vb.pp("mlp"), c.hidden_size, c.intermediate_size);
        Ok(Self {
            input_layernorm: RmsNorm::load(&vb.pp("input_layernorm"), c.hidden_size, eps).await?,
            self_attn: LlamaAttention::load(&vb.pp("self_attn"), c, pack).await?,
            post_attention_layernorm: RmsNorm::load(&vb.pp("post_attention_layernorm"), c.hidden_size, eps).await?,
            mlp: if pack {
                GatedMlp::load_packed(&mlp, h, i, GateActivation::Silu).await?
            } else {
                GatedMlp::load(&mlp, h, i, GateActivation::Silu).await?
            },
        })
    }
}

/// `LlamaForCausalLM` for inference: embeddings, decoder layers, final norm, LM head.
pub struct LlamaModel {
    pub config: LlamaConfig,
    embed_tokens: Embedding,
    layers: Vec<LlamaDecoderLayer>,
    norm: RmsNorm,
    /// `None`: tied to `embed_tokens`.
    lm_head: Option<Linear>,
    inv_freq: GpuTensor,
    /// `[4]` u32 zeros: positions of [`Self::forward_hidden`] start at 0 (`rope_batched`).
    rope_state: GpuTensor,
    /// Loaded by [`Self::load_trunk`]: no LM head, so no logits.
    trunk_only: bool,
}

impl LlamaModel {
    /// Loads the model from a safetensors or GGUF checkpoint; the builder's load dtype
    /// (`auto`, `f32`, `f16`, a quantized format) decides how projections are stored
    /// (`nn::Linear`). The embedding table is F16 under `f16`, else F32; norms and biases
    /// are F32; activations are f32.
    pub async fn load(vb: &VarBuilder<'_>, config: LlamaConfig) -> Result<Self> {
        Self::load_parts(vb, config, true, false).await
    }

    /// [`Self::load`] for generation: q/k/v and gate/up stacked into one product each where
    /// the weights allow ([`Linear::concat`]), so a decode step runs the fused products of
    /// [`Self::forward`]. Such a model has no [`Self::forward_hidden`].
    pub async fn load_for_generation(vb: &VarBuilder<'_>, config: LlamaConfig) -> Result<Self> {
        Self::load_parts(vb, config, true, true).await
    }

    /// The decoder stack without the LM head (an embedder's trunk: Qwen3-Embedding ships
    /// none), from a checkpoint whose tensors live under `model.` or at the root (a saved
    /// `Qwen3Model`). Only [`Self::forward_hidden`] is meaningful on it.
    pub async fn load_trunk(vb: &VarBuilder<'_>, config: LlamaConfig) -> Result<Self> {
        Self::load_parts(vb, config, false, false).await
    }

    async fn load_parts(vb: &VarBuilder<'_>, config: LlamaConfig, head: bool, pack: bool) -> Result<Self> {
        config.validate("config.json")?;
        let m = if head || vb.contains("model.embed_tokens.weight") { vb.pp("model") } else { vb.clone() };
        let embed_tokens =
            Embedding { weight: m.pp("embed_tokens").get_weight("weight", &[config.vocab_size, config.hidden_size]).await? };
        let mut layers = Vec::with_capacity(config.num_hidden_layers);
        for l in 0..config.num_hidden_layers {
            layers.push(LlamaDecoderLayer::load(&m.pp(format!("layers.{l}")), &config, pack).await?);
        }
        let norm = RmsNorm::load(&m.pp("norm"), config.hidden_size, config.rms_norm_eps as f32).await?;
        // Tied when the config says so, or when the checkpoint has no separate head.
        let lm_head = if !head || config.tie_word_embeddings || !vb.contains("lm_head.weight") {
            None
        } else {
            Some(Linear::load(&vb.pp("lm_head"), config.hidden_size, config.vocab_size, false).await?)
        };
        let inv = config.rope_inv_freq().map_err(|msg| Error::Config { file: "config.json".into(), msg })?;
        let inv_freq = vb.gpu().upload_f32(&inv, &[inv.len()])?;
        let rope_state = vb.gpu().upload_u32(&[0; 4], &[4])?;
        Ok(Self { config, embed_tokens, layers, norm, lm_head, inv_freq, rope_state, trunk_only: !head })
    }

    /// Bytes of weights read per decoded token (every projection, the LM head and one
    /// embedding row; norms ignored), for bandwidth figures.
    pub fn weight_bytes_per_token(&self) -> u64 {
        let mut b = 0u64;
        let lin = |l: &Linear| l.weight.byte_size() + l.bias.as_ref().map_or(0, |t| t.byte_len());
        for l in &self.layers {
            let a = &l.self_attn;
            b += a.qkv.iter().map(lin).sum::<u64>() + lin(&a.o_proj);
            b += l.mlp.linears().map(lin).sum::<u64>();
        }
        b += match &self.lm_head {
            Some(h) => lin(h),
            None => self.embed_tokens.weight.byte_len(),
        };
        b
    }

    /// Records a context shift of `cache`: rows `[keep, keep + drop)` of every layer dropped,
    /// the `used - keep - drop` rows after them moved down with their keys rotated back
    /// ([`crate::kernels::rope::kv_shift`]). The caller sets `state[1]` to `used - drop`.
    pub fn shift_cache(&self, enc: &mut Encoder, cache: &KvCache, keep: usize, drop: usize, used: usize) -> Result<()> {
        let c = &self.config;
        for (k, v) in cache.k.iter().zip(&cache.v) {
            crate::kernels::rope::kv_shift(enc, k, v, &self.inv_freq, c.kv_heads(), c.head_dim(), keep, drop, used)?;
        }
        Ok(())
    }

    /// Records the forward pass of `ids` (`[n]` u32), which continue a sequence of
    /// `state[1]` tokens already in `cache`, and returns the logits: of the last token
    /// (`[1, vocab]`), or of every token when `all_logits`.
    pub fn forward(
        &self,
        enc: &mut Encoder,
        ids: &GpuTensor,
        cache: &KvCache,
        state: &GpuTensor,
        all_logits: bool,
    ) -> Result<GpuTensor> {
        let n = ids.numel();
        if cache.k.len() != self.layers.len() {
            return Err(Error::Input("KV cache was built for another model".into()));
        }
        if n > cache.rows {
            return Err(Error::Input(format!("{n} tokens exceed the KV cache of {} rows", cache.rows)));
        }
        let h = if crate::kernels::quant::fuses(enc, n) {
            // One token on a GPU: the residual stream through the layers, each block's norm
            // a prologue of its products and its residual add an epilogue
            // (SPEC/generation.md), 7 dispatches a layer with packed q/k/v and gate/up.
            let mut x = self.embed_tokens.forward(enc, ids)?;
            for (l, layer) in self.layers.iter().enumerate() {
                x = layer.self_attn.forward_fused(enc, &x, &layer.input_layernorm, &self.inv_freq, state, &cache.k[l], &cache.v[l])?;
                x = layer.mlp.forward_fused(enc, &x, &layer.post_attention_layernorm)?;
            }
            self.norm.forward(enc, &x)?
        } else {
            self.stack(enc, ids, |enc, l, a, h| a.forward(enc, h, &self.inv_freq, state, &cache.k[l], &cache.v[l]))?
        };
        let h = if !all_logits && n > 1 {
            let hid = self.config.hidden_size;
            let last = enc.gpu().alloc(&[1, hid], DType::F32)?;
            enc.copy_slice(&h, (n - 1) * hid, &last, 0, hid)?;
            last
        } else {
            h
        };
        self.head(enc, &h)
    }

    /// The LM head: `h` `[n, hidden]` → logits `[n, vocab]`.
    pub fn head(&self, enc: &mut Encoder, h: &GpuTensor) -> Result<GpuTensor> {
        if self.trunk_only {
            return Err(Error::Input("this decoder was loaded without its LM head (an embedder's trunk): it gives no logits".into()));
        }
        match &self.lm_head {
            Some(head) => head.forward(enc, h),
            None => matmul::linear(enc, h, &self.embed_tokens.weight, None),
        }
    }

    /// Rows `ids` (`[k]` u32) of the LM head as a dense `[k, hidden]` f32 matrix, so that a
    /// caller needing k logits (a yes/no reranker) multiplies by k rows instead of the whole
    /// vocabulary; `None` when the head is stored in a quantized block format (then use
    /// [`Self::head`] on the rows that need it).
    pub fn head_rows(&self, enc: &mut Encoder, ids: &GpuTensor) -> Result<Option<GpuTensor>> {
        if self.trunk_only {
            return Err(Error::Input("this decoder was loaded without its LM head (an embedder's trunk): it gives no logits".into()));
        }
        let table = match &self.lm_head {
            Some(head) => match head.weight.dense() {
                Some(t) => t,
                None => return Ok(None),
            },
            None => &self.embed_tokens.weight,
        };
        Ok(Some(crate::kernels::embed::embedding(enc, ids, table)?))
    }

    /// Records the forward pass of `batch` right-padded sequences of `seq` tokens (positions
    /// `0..seq` in every row; causal attention, so padding after a row's tokens does not
    /// change them) and returns the last hidden state after the final norm.
    /// - `ids`: `[batch * seq]` u32
    /// - `mask`: `[batch, seq]` u32, 0 marks padding
    /// - returns `[batch, seq, hidden]` f32
    pub fn forward_hidden(&self, enc: &mut Encoder, ids: &GpuTensor, mask: &GpuTensor, batch: usize, seq: usize) -> Result<GpuTensor> {
        if ids.numel() != batch * seq || mask.shape() != [batch, seq] {
            return Err(Error::shape("llama", "ids / mask", format!("[{}] / [{batch}, {seq}]", batch * seq), ids.shape()));
        }
        let h = self.stack(enc, ids, |enc, _, a, h| a.forward_batched(enc, h, &self.inv_freq, &self.rope_state, mask, batch, seq))?;
        h.reshape(&[batch, seq, self.config.hidden_size])
    }

    /// Embeddings, the decoder layers with `attn` as each layer's attention, and the final
    /// norm: `ids` `[n]` → `[n, hidden]`. Pre-norm residual stream: each residual add is fused
    /// with the norm that follows it (the next sublayer's, or the final `norm`), as
    /// `x = x + f(h); h = norm(x)`.
    fn stack(
        &self,
        enc: &mut Encoder,
        ids: &GpuTensor,
        attn: impl Fn(&mut Encoder, usize, &LlamaAttention, &GpuTensor) -> Result<GpuTensor>,
    ) -> Result<GpuTensor> {
        let Some(first) = self.layers.first() else {
            return Err(Error::Input("model has no layers".into()));
        };
        let mut x = self.embed_tokens.forward(enc, ids)?;
        let mut h = first.input_layernorm.forward(enc, &x)?;
        for (l, layer) in self.layers.iter().enumerate() {
            let a = attn(enc, l, &layer.self_attn, &h)?;
            (x, h) = layer.post_attention_layernorm.forward_residual(enc, &x, &a)?;
            let m = layer.mlp.forward(enc, &h)?;
            let next_norm = self.layers.get(l + 1).map_or(&self.norm, |n| &n.input_layernorm);
            (x, h) = next_norm.forward_residual(enc, &x, &m)?;
        }
        Ok(h)
    }
}
