//! BERT encoder (Devlin et al., 2018, <https://arxiv.org/abs/1810.04805>), following
//! Hugging Face transformers' `models/bert/modeling_bert.py`: `BertEmbeddings`,
//! `BertSelfAttention` + `BertSelfOutput`, `BertIntermediate` + `BertOutput`, stacked in
//! `BertEncoder`. Weights are looked up under HF checkpoint names (`embeddings.*`,
//! `encoder.layer.N.*`), optionally below a `bert.` prefix (sequence-classification
//! checkpoints).

use serde::Deserialize;

use crate::error::{Error, Result};
use crate::gpu::{Encoder, Gpu, GpuTensor};
use crate::kernels::activation::{add, gelu, tanh};
use crate::kernels::pool::cls_pool;
use crate::kernels::attention::{attention, AttentionShape, MAX_HEAD_DIM};
use crate::nn::{Embedding, LayerNorm, Linear, VarBuilder};

fn default_act() -> String {
    "gelu".into()
}
fn default_type_vocab() -> usize {
    2
}
fn default_eps() -> f64 {
    1e-12
}

/// `config.json` of a BERT checkpoint (the fields inference needs).
#[derive(Debug, Clone, Deserialize)]
pub struct BertConfig {
    pub vocab_size: usize,
    pub hidden_size: usize,
    pub num_hidden_layers: usize,
    pub num_attention_heads: usize,
    pub intermediate_size: usize,
    #[serde(default = "default_act")]
    pub hidden_act: String,
    pub max_position_embeddings: usize,
    #[serde(default = "default_type_vocab")]
    pub type_vocab_size: usize,
    #[serde(default = "default_eps")]
    pub layer_norm_eps: f64,
    #[serde(default)]
    pub pad_token_id: u32,
}

impl BertConfig {
    /// Rejects configurations this implementation cannot run.
    pub fn validate(&self, file: &str) -> Result<()> {
        let bad = |msg: String| Err(Error::Config { file: file.to_string(), msg });
        let dims = [
            ("vocab_size", self.vocab_size),
            ("hidden_size", self.hidden_size),
            ("num_hidden_layers", self.num_hidden_layers),
            ("num_attention_heads", self.num_attention_heads),
            ("intermediate_size", self.intermediate_size),
            ("max_position_embeddings", self.max_position_embeddings),
            ("type_vocab_size", self.type_vocab_size),
        ];
        for (name, v) in dims {
            if v == 0 || v > 1 << 24 {
                return bad(format!("{name} = {v} is out of range"));
            }
        }
        if self.num_hidden_layers > 256 {
            return bad(format!("num_hidden_layers = {} is out of range", self.num_hidden_layers));
        }
        if self.hidden_size % self.num_attention_heads != 0 {
            return bad(format!("hidden_size {} is not a multiple of num_attention_heads {}", self.hidden_size, self.num_attention_heads));
        }
        if self.head_dim() > MAX_HEAD_DIM {
            return bad(format!("head dim {} exceeds {MAX_HEAD_DIM}", self.head_dim()));
        }
        if self.hidden_act != "gelu" {
            return bad(format!("hidden_act `{}` is not supported (only the erf `gelu`)", self.hidden_act));
        }
        if !(self.layer_norm_eps > 0.0 && self.layer_norm_eps < 1.0) {
            return bad(format!("layer_norm_eps {} is out of range", self.layer_norm_eps));
        }
        Ok(())
    }
    pub fn head_dim(&self) -> usize {
        self.hidden_size / self.num_attention_heads
    }
}

/// The tensors the load dtype applies to ([`crate::nn::WeightRoles`]).
pub const WEIGHT_ROLES: crate::nn::WeightRoles = crate::nn::WeightRoles { linear: is_linear_weight, table: |_| false };

/// Whether `name` is the weight of one of the encoder's [`Linear`] layers (what quantized loads
/// and `gllm quantize` store in a block format).
pub fn is_linear_weight(name: &str) -> bool {
    const LINEARS: [&str; 5] =
        ["attention.self.query.weight", "attention.self.key.weight", "attention.self.value.weight", "intermediate.dense.weight", "output.dense.weight"];
    name.contains("encoder.layer.") && LINEARS.iter().any(|l| name.ends_with(l))
}

/// Every tensor of a `BertModel` checkpoint (HF names, no prefix) with its shape. Used to
/// build random-weight checkpoints of a real config for benchmarks.
pub fn checkpoint_shapes(c: &BertConfig) -> Vec<(String, Vec<usize>)> {
    let (h, i) = (c.hidden_size, c.intermediate_size);
    let mut v = vec![
        ("embeddings.word_embeddings.weight".to_string(), vec![c.vocab_size, h]),
        ("embeddings.position_embeddings.weight".into(), vec![c.max_position_embeddings, h]),
        ("embeddings.token_type_embeddings.weight".into(), vec![c.type_vocab_size, h]),
        ("embeddings.LayerNorm.weight".into(), vec![h]),
        ("embeddings.LayerNorm.bias".into(), vec![h]),
    ];
    for l in 0..c.num_hidden_layers {
        let p = format!("encoder.layer.{l}");
        for (name, out, inp) in [
            ("attention.self.query", h, h),
            ("attention.self.key", h, h),
            ("attention.self.value", h, h),
            ("attention.output.dense", h, h),
            ("intermediate.dense", i, h),
            ("output.dense", h, i),
        ] {
            v.push((format!("{p}.{name}.weight"), vec![out, inp]));
            v.push((format!("{p}.{name}.bias"), vec![out]));
        }
        for ln in ["attention.output.LayerNorm", "output.LayerNorm"] {
            v.push((format!("{p}.{ln}.weight"), vec![h]));
            v.push((format!("{p}.{ln}.bias"), vec![h]));
        }
    }
    v
}

/// Inputs of one forward pass, already on the GPU. `batch × seq` tokens, right-padded.
pub struct BertInput {
    /// `[batch * seq]` u32
    pub input_ids: GpuTensor,
    /// `[batch * seq]` u32
    pub token_type_ids: GpuTensor,
    /// `[batch * seq]` u32, 0..seq per row
    pub position_ids: GpuTensor,
    /// `[batch, seq]` u32, 0 marks padding
    pub attention_mask: GpuTensor,
    pub batch: usize,
    pub seq: usize,
}

impl BertInput {
    /// Right-pads `ids` (and `type_ids`, zeros when `None`) to the longest row and uploads
    /// ids, token types, positions and the attention mask.
    pub fn upload(gpu: &Gpu, ids: &[Vec<u32>], type_ids: Option<&[Vec<u32>]>, pad_id: u32) -> Result<Self> {
        let batch = ids.len();
        let seq = ids.iter().map(Vec::len).max().unwrap_or(0).max(1);
        let mut flat = vec![pad_id; batch * seq];
        let mut types = vec![0u32; batch * seq];
        let mut mask = vec![0u32; batch * seq];
        for (b, row) in ids.iter().enumerate() {
            flat[b * seq..b * seq + row.len()].copy_from_slice(row);
            mask[b * seq..b * seq + row.len()].fill(1);
            if let Some(t) = type_ids {
                let t = &t[b];
                if t.len() != row.len() {
                    return Err(Error::Input(format!("row {b}: {} type ids for {} ids", t.len(), row.len())));
                }
                types[b * seq..b * seq + t.len()].copy_from_slice(t);
            }
        }
        let positions: Vec<u32> = (0..batch * seq).map(|i| (i % seq) as u32).collect();
        Ok(Self {
            input_ids: gpu.upload_u32(&flat, &[batch * seq])?,
            token_type_ids: gpu.upload_u32(&types, &[batch * seq])?,
            position_ids: gpu.upload_u32(&positions, &[batch * seq])?,
            attention_mask: gpu.upload_u32(&mask, &[batch, seq])?,
            batch,
            seq,
        })
    }
}

pub struct BertEmbeddings {
    word_embeddings: Embedding,
    position_embeddings: Embedding,
    token_type_embeddings: Embedding,
    layer_norm: LayerNorm,
}

impl BertEmbeddings {
    async fn load(vb: &VarBuilder<'_>, c: &BertConfig) -> Result<Self> {
        let eps = c.layer_norm_eps as f32;
        Ok(Self {
            word_embeddings: Embedding::load(&vb.pp("word_embeddings"), c.vocab_size, c.hidden_size).await?,
            position_embeddings: Embedding::load(&vb.pp("position_embeddings"), c.max_position_embeddings, c.hidden_size).await?,
            token_type_embeddings: Embedding::load(&vb.pp("token_type_embeddings"), c.type_vocab_size, c.hidden_size).await?,
            layer_norm: LayerNorm::load(&vb.pp("LayerNorm"), c.hidden_size, eps).await?,
        })
    }

    /// `LayerNorm(word[ids] + position[pos] + token_type[types])` → `[batch * seq, hidden]`.
    fn forward(&self, enc: &mut Encoder, x: &BertInput) -> Result<GpuTensor> {
        let e = self.word_embeddings.forward(enc, &x.input_ids)?;
        self.position_embeddings.forward_add(enc, &x.position_ids, &e)?;
        self.token_type_embeddings.forward_add(enc, &x.token_type_ids, &e)?;
        self.layer_norm.forward(enc, &e)
    }
}

pub struct BertSelfAttention {
    query: Linear,
    key: Linear,
    value: Linear,
    shape: AttentionShape,
}

impl BertSelfAttention {
    async fn load(vb: &VarBuilder<'_>, c: &BertConfig) -> Result<Self> {
        let h = c.hidden_size;
        Ok(Self {
            query: Linear::load(&vb.pp("query"), h, h, true).await?,
            key: Linear::load(&vb.pp("key"), h, h, true).await?,
            value: Linear::load(&vb.pp("value"), h, h, true).await?,
            shape: AttentionShape::bidirectional(c.num_attention_heads, c.head_dim()),
        })
    }

    /// `[batch, seq, hidden]` → context `[batch, seq, hidden]` (heads concatenated).
    fn forward(&self, enc: &mut Encoder, x: &GpuTensor, mask: &GpuTensor) -> Result<GpuTensor> {
        let q = self.query.forward(enc, x)?;
        let k = self.key.forward(enc, x)?;
        let v = self.value.forward(enc, x)?;
        attention(enc, &q, &k, &v, mask, self.shape)
    }
}

/// `LayerNorm(dense(x) + residual)`: HF's `BertSelfOutput` and `BertOutput`.
pub struct BertResidualOutput {
    dense: Linear,
    layer_norm: LayerNorm,
}

impl BertResidualOutput {
    async fn load(vb: &VarBuilder<'_>, in_dim: usize, c: &BertConfig) -> Result<Self> {
        Ok(Self {
            dense: Linear::load(&vb.pp("dense"), in_dim, c.hidden_size, true).await?,
            layer_norm: LayerNorm::load(&vb.pp("LayerNorm"), c.hidden_size, c.layer_norm_eps as f32).await?,
        })
    }
    fn forward(&self, enc: &mut Encoder, x: &GpuTensor, residual: &GpuTensor) -> Result<GpuTensor> {
        let h = self.dense.forward(enc, x)?;
        let h = add(enc, &h, residual)?;
        self.layer_norm.forward(enc, &h)
    }
}

pub struct BertLayer {
    attention: BertSelfAttention,
    attention_output: BertResidualOutput,
    intermediate: Linear,
    output: BertResidualOutput,
}

impl BertLayer {
    async fn load(vb: &VarBuilder<'_>, c: &BertConfig) -> Result<Self> {
        let att = vb.pp("attention");
        Ok(Self {
            attention: BertSelfAttention::load(&att.pp("self"), c).await?,
            attention_output: BertResidualOutput::load(&att.pp("output"), c.hidden_size, c).await?,
            intermediate: Linear::load(&vb.pp("intermediate").pp("dense"), c.hidden_size, c.intermediate_size, true).await?,
            output: BertResidualOutput::load(&vb.pp("output"), c.intermediate_size, c).await?,
        })
    }

    fn forward(&self, enc: &mut Encoder, x: &GpuTensor, mask: &GpuTensor) -> Result<GpuTensor> {
        let ctx = self.attention.forward(enc, x, mask)?;
        let x = self.attention_output.forward(enc, &ctx, x)?;
        let inter = self.intermediate.forward(enc, &x)?;
        let inter = gelu(enc, &inter)?;
        self.output.forward(enc, &inter, &x)
    }
}

/// `BertModel` without the pooler: returns the last hidden state.
pub struct BertModel {
    pub config: BertConfig,
    embeddings: BertEmbeddings,
    layers: Vec<BertLayer>,
}

impl BertModel {
    /// Every linear layer of the encoder, in order (for inspection: dtypes, bytes).
    pub fn encoder_linears(&self) -> impl Iterator<Item = &Linear> {
        self.layers.iter().flat_map(|l| {
            [
                &l.attention.query,
                &l.attention.key,
                &l.attention.value,
                &l.attention_output.dense,
                &l.intermediate,
                &l.output.dense,
            ]
        })
    }

    /// Loads from a checkpoint whose tensors live under `vb` (`embeddings.*`, `encoder.*`).
    pub async fn load(vb: &VarBuilder<'_>, config: BertConfig) -> Result<Self> {
        let embeddings = BertEmbeddings::load(&vb.pp("embeddings"), &config).await?;
        let mut layers = Vec::with_capacity(config.num_hidden_layers);
        for i in 0..config.num_hidden_layers {
            layers.push(BertLayer::load(&vb.pp("encoder").pp("layer").pp(i), &config).await?);
        }
        Ok(Self { config, embeddings, layers })
    }

    /// Records the forward pass; returns the last hidden state `[batch, seq, hidden]`.
    pub fn forward(&self, enc: &mut Encoder, x: &BertInput) -> Result<GpuTensor> {
        let mut h = self.embeddings.forward(enc, x)?.reshape(&[x.batch, x.seq, self.config.hidden_size])?;
        for layer in &self.layers {
            h = layer.forward(enc, &h, &x.attention_mask)?;
        }
        Ok(h)
    }
}

/// `BertForSequenceClassification`: the encoder, the pooler (`tanh(dense(h_[CLS]))`) and a
/// linear classifier (`num_labels` outputs). Cross-encoders (rerankers) have `num_labels` 1.
pub struct BertForSequenceClassification {
    pub bert: BertModel,
    pooler: Linear,
    classifier: Linear,
    pub num_labels: usize,
}

impl BertForSequenceClassification {
    /// `vb` is the checkpoint root: `bert.*`, `classifier.*`.
    pub async fn load(vb: &VarBuilder<'_>, config: BertConfig, num_labels: usize) -> Result<Self> {
        let h = config.hidden_size;
        let bert_vb = vb.pp("bert");
        let pooler = Linear::load(&bert_vb.pp("pooler").pp("dense"), h, h, true).await?;
        let bert = BertModel::load(&bert_vb, config).await?;
        let classifier = Linear::load(&vb.pp("classifier"), h, num_labels, true).await?;
        Ok(Self { bert, pooler, classifier, num_labels })
    }

    /// Records the forward pass; returns logits `[batch, num_labels]`.
    pub fn forward(&self, enc: &mut Encoder, x: &BertInput) -> Result<GpuTensor> {
        let h = self.bert.forward(enc, x)?;
        let cls = cls_pool(enc, &h)?;
        let pooled = self.pooler.forward(enc, &cls)?;
        let pooled = tanh(enc, &pooled)?;
        self.classifier.forward(enc, &pooled)
    }
}
