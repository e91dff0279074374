//! Layers over kernels, and the prefix builder that loads their weights by checkpoint name.
//!
//! `Linear` holds its weight as a [`LinearWeight`]: a dense `GpuTensor` (F32 / F16) or a
//! quantized [`QMatrix`] (GGUF block formats, AWQ), so model code never branches on the
//! weight format.

use crate::error::{Error, Result};
use crate::gpu::{Encoder, Gpu, GpuTensor};
use crate::kernels::quant::{self, QMatrix};
use crate::kernels::{embed, matmul, norm};
use crate::loader::{safetensors, Progress, SafetensorsFile, Source, StDType};

/// Loads tensors by HF checkpoint name under a prefix (`encoder.layer.3.attention`),
/// reading one byte range per tensor and uploading it to the GPU.
pub struct VarBuilder<'a, S: Source> {
    gpu: &'a Gpu,
    src: &'a S,
    st: &'a SafetensorsFile,
    prefix: String,
    progress: &'a dyn Fn(Progress),
    loaded: &'a std::cell::Cell<u64>,
    total: u64,
}

impl<'a, S: Source> VarBuilder<'a, S> {
    pub fn new(
        gpu: &'a Gpu,
        src: &'a S,
        st: &'a SafetensorsFile,
        progress: &'a dyn Fn(Progress),
        loaded: &'a std::cell::Cell<u64>,
    ) -> Self {
        let total = st.tensors.values().map(|t| t.end - t.start).sum();
        Self { gpu, src, st, prefix: String::new(), progress, loaded, total }
    }

    /// A builder for the sub-module `name`.
    pub fn pp(&self, name: impl std::fmt::Display) -> Self {
        let prefix = if self.prefix.is_empty() { name.to_string() } else { format!("{}.{name}", self.prefix) };
        Self { prefix, ..*self }
    }

    pub fn gpu(&self) -> &'a Gpu {
        self.gpu
    }

    /// Whether the checkpoint has `name` under this prefix.
    pub fn contains(&self, name: &str) -> bool {
        self.st.tensors.contains_key(&self.name(name))
    }

    fn name(&self, name: &str) -> String {
        if self.prefix.is_empty() { name.to_string() } else { format!("{}.{name}", self.prefix) }
    }

    /// The tensor `name` as F32 on the GPU, checked against `shape`.
    pub async fn get(&self, name: &str, shape: &[usize]) -> Result<GpuTensor> {
        let full = self.name(name);
        let info = self.st.get(&full)?;
        if info.shape != shape {
            return Err(Error::TensorMismatch { name: full, expected: format!("{shape:?}"), got: format!("{:?}", info.shape) });
        }
        let bytes = self.src.read_range(&self.st.file, info.start, info.end - info.start).await?;
        let t = match info.dtype {
            StDType::F32 => self.gpu.upload_bytes(&bytes, shape, crate::DType::F32)?,
            dt => self.gpu.upload_f32(&safetensors::to_f32(&full, dt, &bytes)?, shape)?,
        };
        self.loaded.set(self.loaded.get() + bytes.len() as u64);
        (self.progress)(Progress::Progress { file: self.st.file.clone(), loaded: self.loaded.get(), total: self.total });
        Ok(t)
    }
}

/// A linear layer's weight `[out, in]`: dense (f32 / f16) or in a quantized block format
/// that the kernels decode in registers. Model code does not branch on it.
#[derive(Clone, Debug)]
pub enum LinearWeight {
    Dense(GpuTensor),
    Quant(QMatrix),
}

impl LinearWeight {
    /// `[out, in]`
    pub fn shape(&self) -> [usize; 2] {
        match self {
            LinearWeight::Dense(t) => [t.shape()[0], t.shape()[1]],
            LinearWeight::Quant(q) => [q.rows, q.cols],
        }
    }
    /// GPU bytes of the weight.
    pub fn byte_size(&self) -> u64 {
        match self {
            LinearWeight::Dense(t) => t.byte_len(),
            LinearWeight::Quant(q) => q.byte_size(),
        }
    }
}

/// `y = x · Wᵀ + b` (PyTorch `nn.Linear`; weight `[out, in]`).
pub struct Linear {
    pub weight: LinearWeight,
    pub bias: Option<GpuTensor>,
}

impl Linear {
    pub fn new(weight: LinearWeight, bias: Option<GpuTensor>) -> Self {
        Self { weight, bias }
    }
    pub async fn load<S: Source>(vb: &VarBuilder<'_, S>, in_dim: usize, out_dim: usize, bias: bool) -> Result<Self> {
        let weight = vb.get("weight", &[out_dim, in_dim]).await?;
        let bias = if bias { Some(vb.get("bias", &[out_dim]).await?) } else { None };
        Ok(Self { weight: LinearWeight::Dense(weight), bias })
    }
    /// `x` `[.., in]` → `[.., out]`. Dense weights take f32 `x`; quantized ones f32 or f16.
    pub fn forward(&self, enc: &mut Encoder, x: &GpuTensor) -> Result<GpuTensor> {
        match &self.weight {
            LinearWeight::Dense(w) => matmul::linear(enc, x, w, self.bias.as_ref()),
            LinearWeight::Quant(w) => quant::qlinear(enc, x, w, self.bias.as_ref()),
        }
    }
}

/// `nn.LayerNorm` over the last dimension.
pub struct LayerNorm {
    pub weight: GpuTensor,
    pub bias: GpuTensor,
    pub eps: f32,
}

impl LayerNorm {
    pub async fn load<S: Source>(vb: &VarBuilder<'_, S>, dim: usize, eps: f32) -> Result<Self> {
        Ok(Self { weight: vb.get("weight", &[dim]).await?, bias: vb.get("bias", &[dim]).await?, eps })
    }
    pub fn forward(&self, enc: &mut Encoder, x: &GpuTensor) -> Result<GpuTensor> {
        norm::layer_norm(enc, x, &self.weight, &self.bias, self.eps)
    }
}

/// `nn.Embedding`: a `[num, dim]` table.
pub struct Embedding {
    pub weight: GpuTensor,
}

impl Embedding {
    pub async fn load<S: Source>(vb: &VarBuilder<'_, S>, num: usize, dim: usize) -> Result<Self> {
        Ok(Self { weight: vb.get("weight", &[num, dim]).await? })
    }
    /// `ids` `[n]` → `[n, dim]`.
    pub fn forward(&self, enc: &mut Encoder, ids: &GpuTensor) -> Result<GpuTensor> {
        embed::embedding(enc, ids, &self.weight)
    }
    /// `out += table[ids]`.
    pub fn forward_add(&self, enc: &mut Encoder, ids: &GpuTensor, out: &GpuTensor) -> Result<()> {
        embed::embedding_add(enc, ids, &self.weight, out)
    }
}
