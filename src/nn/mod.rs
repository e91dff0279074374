//! Layers over kernels, and the prefix builder that loads their weights by checkpoint name.
//!
//! `Linear` holds its weight as a [`LinearWeight`]: a dense `GpuTensor` (F32 / F16) or a
//! quantized [`QMatrix`] (GGUF block formats, AWQ), so model code never branches on the
//! weight format.

use crate::error::{Error, Result};
use crate::gpu::{Encoder, Gpu, GpuTensor};
use crate::kernels::quant::{self, QMatrix};
use crate::kernels::quantize::{gpu_quantizable, quantize_raw, quantize_rows, SrcKind};
use crate::kernels::{embed, matmul, norm};
use crate::loader::{safetensors, Checkpoint, GgufModel, Progress, SafetensorsFile, Source, StDType, StreamedWeights, TensorInfo};
use crate::loader::prequant::{self, QBODY, QSCALE};
use crate::quant::QuantFormat;

/// How weights are stored on the GPU (the load option `dtype`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum LoadDType {
    /// Keep the file's format where a kernel can run it: GGUF block matrices whose rows are
    /// in HF order become quantized [`Linear`] weights (decoded inside the matmul kernels);
    /// everything else is F32.
    #[default]
    Auto,
    /// Everything F32.
    F32,
    /// Matrices ([`VarBuilder::get_weight`], used by [`Linear`]) F16 on the GPU; vectors and
    /// embedding tables F32.
    F16,
    /// [`Linear`] weights quantized on load to this block format, per tensor: q8_0 and q4_0
    /// on the GPU from the file's raw bytes (`kernels::quantize`, bit-identical to the CPU
    /// reference), the other formats with the CPU reference quantizer; matrices whose rows
    /// are not a whole number of blocks stay F32.
    Quant(QuantFormat),
}

impl std::str::FromStr for LoadDType {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        match s {
            "auto" => Ok(Self::Auto),
            "f32" => Ok(Self::F32),
            "f16" => Ok(Self::F16),
            _ => match QuantFormat::parse(s) {
                Some(f) => Ok(Self::Quant(f)),
                None => Err(Error::Input(format!("dtype `{s}`: expected auto, f32, f16, {}", QuantFormat::names()))),
            },
        }
    }
}

/// The checkpoint behind a [`VarBuilder`].
#[derive(Clone, Copy)]
pub enum Weights<'a> {
    Safetensors(&'a SafetensorsFile),
    /// The shards of a sharded safetensors checkpoint (each tensor in one of them).
    Sharded(&'a Checkpoint),
    /// A GGUF decoder, addressed by HF names (`gguf_hf` maps them).
    Gguf(&'a GgufModel),
    /// Tensors already streamed into GPU buffers (F32), see [`crate::loader::stream`].
    Streamed(&'a StreamedWeights),
}

/// A tensor's GGUF blocks as stored, for kernels that run the block format directly.
pub struct QuantBlocks {
    pub format: QuantFormat,
    /// Whole blocks, row-major (`shape[0]` rows of `shape[1] / block_elems` blocks).
    pub bytes: Vec<u8>,
    /// HF (row-major) shape: `[out, in]`.
    pub shape: Vec<usize>,
}

/// Loads tensors by HF checkpoint name under a prefix (`encoder.layer.3.attention`),
/// reading one byte range per tensor and uploading it to the GPU. The checkpoint is a
/// safetensors file or a GGUF file; model code does not see which.
pub struct VarBuilder<'a, S: Source> {
    gpu: &'a Gpu,
    src: &'a S,
    weights: Weights<'a>,
    prefix: String,
    progress: &'a dyn Fn(Progress),
    loaded: &'a std::cell::Cell<u64>,
    total: u64,
    dtype: LoadDType,
}

impl<'a, S: Source> VarBuilder<'a, S> {
    /// Over a safetensors file.
    pub fn new(
        gpu: &'a Gpu,
        src: &'a S,
        st: &'a SafetensorsFile,
        progress: &'a dyn Fn(Progress),
        loaded: &'a std::cell::Cell<u64>,
    ) -> Self {
        let total = st.tensors.values().map(|t| t.end - t.start).sum();
        let weights = Weights::Safetensors(st);
        Self { gpu, src, weights, prefix: String::new(), progress, loaded, total, dtype: LoadDType::Auto }
    }

    /// Over a safetensors checkpoint, one file or sharded. Progress events count bytes over
    /// all its files ([`crate::loader::ShardProgress::per_tensor`] splits them by file).
    pub fn from_checkpoint(
        gpu: &'a Gpu,
        src: &'a S,
        ck: &'a Checkpoint,
        progress: &'a dyn Fn(Progress),
        loaded: &'a std::cell::Cell<u64>,
    ) -> Self {
        match ck.shards.as_slice() {
            [st] if !ck.is_sharded() => Self::new(gpu, src, st, progress, loaded),
            _ => {
                let total = ck.tensor_bytes();
                let weights = Weights::Sharded(ck);
                Self { gpu, src, weights, prefix: String::new(), progress, loaded, total, dtype: LoadDType::Auto }
            }
        }
    }

    /// Over a GGUF file (names are HF names; llama q/k rows come out in HF order).
    pub fn from_gguf(
        gpu: &'a Gpu,
        src: &'a S,
        model: &'a GgufModel,
        progress: &'a dyn Fn(Progress),
        loaded: &'a std::cell::Cell<u64>,
    ) -> Self {
        let total = model.gguf.tensors.iter().map(|t| t.n_bytes).sum();
        let weights = Weights::Gguf(model);
        Self { gpu, src, weights, prefix: String::new(), progress, loaded, total, dtype: LoadDType::Auto }
    }

    /// Over tensors already on the GPU ([`crate::loader::stream_safetensors`]).
    pub fn from_streamed(
        gpu: &'a Gpu,
        src: &'a S,
        w: &'a StreamedWeights,
        progress: &'a dyn Fn(Progress),
        loaded: &'a std::cell::Cell<u64>,
    ) -> Self {
        let weights = Weights::Streamed(w);
        Self { gpu, src, weights, prefix: String::new(), progress, loaded, total: 0, dtype: LoadDType::Auto }
    }

    /// The same builder with the load option `dtype`.
    pub fn with_dtype(self, dtype: LoadDType) -> Self {
        Self { dtype, ..self }
    }

    pub fn dtype(&self) -> LoadDType {
        self.dtype
    }

    pub fn weights(&self) -> Weights<'a> {
        self.weights
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
        let full = self.name(name);
        let has = |n: &str| match self.weights {
            Weights::Safetensors(st) => st.tensors.contains_key(n),
            Weights::Sharded(ck) => ck.contains(n),
            Weights::Gguf(m) => m.contains(n),
            Weights::Streamed(w) => w.tensors.contains_key(n) || w.quantized.contains_key(n),
        };
        has(&full) || has(&format!("{full}{QBODY}"))
    }

    fn name(&self, name: &str) -> String {
        if self.prefix.is_empty() { name.to_string() } else { format!("{}.{name}", self.prefix) }
    }

    fn mismatch(full: String, shape: &[usize], got: &[usize]) -> Error {
        Error::TensorMismatch { name: full, expected: format!("{shape:?}"), got: format!("{got:?}") }
    }

    fn report(&self, file: &str, n: u64) {
        self.loaded.set(self.loaded.get() + n);
        (self.progress)(Progress::Progress { file: file.to_string(), loaded: self.loaded.get(), total: self.total });
    }

    /// The safetensors file holding `full` and its entry (single-file or sharded).
    fn safetensors_tensor(&self, full: &str) -> Result<(&'a SafetensorsFile, &'a TensorInfo)> {
        match self.weights {
            Weights::Safetensors(st) => Ok((st, st.get(full)?)),
            Weights::Sharded(ck) => ck.get(full),
            _ => Err(Error::Input(format!("{full}: not a safetensors checkpoint"))),
        }
    }

    /// The tensor `name` as F32 values on the host, checked against `shape`.
    async fn read_f32(&self, full: &str, shape: &[usize]) -> Result<Vec<f32>> {
        match self.weights {
            Weights::Safetensors(_) | Weights::Sharded(_) => {
                let (st, info) = self.safetensors_tensor(full)?;
                if info.shape != shape {
                    return Err(Self::mismatch(full.to_string(), shape, &info.shape));
                }
                let bytes = self.src.read_range(&st.file, info.start, info.end - info.start).await?;
                let v = safetensors::to_f32(full, info.dtype, &bytes)?;
                self.report(&st.file, bytes.len() as u64);
                Ok(v)
            }
            Weights::Gguf(m) => {
                let info = m.tensor(full)?;
                if info.shape() != shape {
                    return Err(Self::mismatch(full.to_string(), shape, &info.shape()));
                }
                let bytes = self.src.read_range(&m.gguf.file, info.start, info.n_bytes).await?;
                let v = m.to_f32(info, &bytes)?;
                self.report(&m.gguf.file, bytes.len() as u64);
                Ok(v)
            }
            // Already on the GPU: only dtype / quantize options that need host values get here.
            Weights::Streamed(_) => {
                let t = self.streamed(full, shape)?;
                self.gpu.readback_f32(&t).await
            }
        }
    }

    fn streamed(&self, full: &str, shape: &[usize]) -> Result<GpuTensor> {
        let Weights::Streamed(w) = self.weights else {
            return Err(Error::Input(format!("{full}: not a streamed checkpoint")));
        };
        if w.quantized.contains_key(full) {
            return Err(Error::Input(format!("{full} was quantized while it streamed: load it as a linear weight")));
        }
        let t = w.tensors.get(full).ok_or_else(|| Error::MissingTensor { name: full.to_string() })?;
        if t.shape() != shape {
            return Err(Self::mismatch(full.to_string(), shape, t.shape()));
        }
        Ok(t.clone())
    }

    /// The tensor `name` as F32 on the GPU, checked against `shape`.
    pub async fn get(&self, name: &str, shape: &[usize]) -> Result<GpuTensor> {
        let full = self.name(name);
        if let Weights::Streamed(_) = self.weights {
            return self.streamed(&full, shape);
        }
        if let Weights::Safetensors(_) | Weights::Sharded(_) = self.weights {
            let (st, info) = self.safetensors_tensor(&full)?;
            if info.dtype == StDType::F32 {
                if info.shape != shape {
                    return Err(Self::mismatch(full, shape, &info.shape));
                }
                let bytes = self.src.read_range(&st.file, info.start, info.end - info.start).await?;
                let t = self.gpu.upload_bytes(&bytes, shape, crate::DType::F32)?;
                self.report(&st.file, bytes.len() as u64);
                return Ok(t);
            }
        }
        let v = self.read_f32(&full, shape).await?;
        self.gpu.upload_f32(&v, shape)
    }

    /// A weight matrix for a matmul: F16 on the GPU under [`LoadDType::F16`], else F32.
    pub async fn get_weight(&self, name: &str, shape: &[usize]) -> Result<GpuTensor> {
        match self.dtype {
            LoadDType::F16 => {
                let full = self.name(name);
                let v = self.read_f32(&full, shape).await?;
                self.gpu.upload_f32_as_f16(&v, shape)
            }
            LoadDType::Auto | LoadDType::F32 | LoadDType::Quant(_) => self.get(name, shape).await,
        }
    }

    /// The weight `name` of a pre-quantized checkpoint (`name.qbody` / `name.qscale`, see
    /// [`crate::loader::prequant`]), its blocks uploaded (or, streamed, already on the GPU) as
    /// they are; `None` when the checkpoint stores `name` otherwise. The load dtype must be
    /// `auto` or the file's own format.
    async fn prequantized(&self, name: &str, rows: usize, cols: usize) -> Result<Option<QMatrix>> {
        let full = self.name(name);
        let (body_name, scale_name) = (format!("{full}{QBODY}"), format!("{full}{QSCALE}"));
        // The two tensors' byte lengths must be what `fmt` gives the shape.
        let check = |fmt: QuantFormat, got: (u64, u64)| -> Result<(usize, usize)> {
            let (bn, sn) = prequant::part_bytes(fmt, rows, cols)?;
            if got != (bn as u64, sn as u64) {
                return Err(Error::TensorMismatch {
                    name: full.clone(),
                    expected: format!("{} [{rows}, {cols}]: {bn} + {sn} bytes", fmt.name()),
                    got: format!("{} + {} bytes", got.0, got.1),
                });
            }
            Ok((bn, sn))
        };
        let (fmt, body, scales) = match self.weights {
            Weights::Safetensors(_) | Weights::Sharded(_) => {
                if !self.contains(name) || self.safetensors_tensor(&full).is_ok() {
                    return Ok(None);
                }
                let (st, b) = self.safetensors_tensor(&body_name)?;
                let (sst, sc) = self.safetensors_tensor(&scale_name)?;
                let fmt = self.prequant_format(st.quant.or(sst.quant), &st.file)?;
                let (bn, sn) = check(fmt, (b.end - b.start, sc.end - sc.start))?;
                let bb = self.src.read_range(&st.file, b.start, bn as u64).await?;
                let body = self.gpu.upload_bytes(&bb, &[bn / 4], crate::DType::U32)?;
                self.report(&st.file, bn as u64);
                let sb = self.src.read_range(&sst.file, sc.start, sn as u64).await?;
                let scales = self.gpu.upload_bytes(&sb, &[sn / 4], crate::DType::U32)?;
                self.report(&sst.file, sn as u64);
                (fmt, body, scales)
            }
            Weights::Streamed(w) => {
                let (Some(body), Some(scales)) = (w.tensors.get(&body_name), w.tensors.get(&scale_name)) else {
                    return Ok(None);
                };
                let fmt = self.prequant_format(w.quant, &w.file)?;
                check(fmt, (body.byte_len(), scales.byte_len()))?;
                (fmt, body.clone(), scales.clone())
            }
            Weights::Gguf(_) => return Ok(None),
        };
        Ok(Some(QMatrix::from_parts(fmt, rows, cols, body, scales)?))
    }

    fn prequant_format(&self, quant: Option<QuantFormat>, file: &str) -> Result<QuantFormat> {
        let fmt = quant.ok_or_else(|| Error::Format {
            format: "safetensors",
            file: file.to_string(),
            msg: format!("has {QBODY} tensors but no {} metadata", prequant::META_FORMAT),
        })?;
        match self.dtype {
            LoadDType::Auto => Ok(fmt),
            LoadDType::Quant(f) if f == fmt => Ok(fmt),
            other => Err(Error::Input(format!("{file} is pre-quantized to {}: load it with dtype auto (asked for {other:?})", fmt.name()))),
        }
    }

    /// Quantize-on-load on the GPU (q8_0 / q4_0): the tensor's raw file bytes are uploaded as
    /// they are (f32, f16 or bf16; no conversion on the host) and a kernel writes the blocks
    /// ([`quantize_raw`]); a streamed tensor, already f32 on the GPU, is quantized in place of
    /// a readback. Other sources (GGUF, other dtypes) are converted to f32 first.
    async fn quantize_on_gpu(&self, name: &str, fmt: QuantFormat, rows: usize, cols: usize) -> Result<QMatrix> {
        let full = self.name(name);
        let shape = [rows, cols];
        match self.weights {
            Weights::Safetensors(_) | Weights::Sharded(_) => {
                let (st, info) = self.safetensors_tensor(&full)?;
                if info.shape != shape {
                    return Err(Self::mismatch(full, &shape, &info.shape));
                }
                let kind = match info.dtype {
                    StDType::F32 => Some(SrcKind::F32),
                    StDType::F16 => Some(SrcKind::F16),
                    StDType::BF16 => Some(SrcKind::BF16),
                    _ => None,
                };
                if let Some(kind) = kind {
                    let bytes = self.src.read_range(&st.file, info.start, info.end - info.start).await?;
                    let q = quantize_raw(self.gpu, fmt, rows, cols, &bytes, kind)?;
                    self.report(&st.file, bytes.len() as u64);
                    return Ok(q);
                }
            }
            Weights::Streamed(w) => {
                // Quantized while it streamed (`StreamQuantize`).
                if let Some(q) = w.quantized.get(&full) {
                    if [q.rows, q.cols] != shape || q.format != crate::kernels::quant::QFormat::Gguf(fmt) {
                        return Err(Self::mismatch(full, &shape, &[q.rows, q.cols]));
                    }
                    return Ok(q.clone());
                }
                let t = self.streamed(&full, &shape)?;
                if t.byte_len() <= self.gpu.caps().max_storage_buffer_binding_size {
                    let q = QMatrix::alloc(self.gpu, fmt, rows, cols)?;
                    let mut enc = self.gpu.encoder();
                    quantize_rows(&mut enc, &t, SrcKind::F32, &q, 0, rows)?;
                    enc.submit()?;
                    return Ok(q);
                }
            }
            Weights::Gguf(_) => {}
        }
        let v = self.read_f32(&full, &shape).await?;
        let bytes: Vec<u8> = v.iter().flat_map(|x| x.to_le_bytes()).collect();
        drop(v);
        quantize_raw(self.gpu, fmt, rows, cols, &bytes, SrcKind::F32)
    }

    /// A `[out, in]` matrix for [`Linear`] in the form the load option asks for: GGUF blocks
    /// kept as they are (`Auto`), quantized on load (`Quant`), or dense (F32 / F16).
    pub async fn get_linear_weight(&self, name: &str, shape: &[usize]) -> Result<LinearWeight> {
        let &[rows, cols] = shape else {
            return Err(Error::Input(format!("{}: a linear weight is 2-D, got {shape:?}", self.name(name))));
        };
        if let Some(q) = self.prequantized(name, rows, cols).await? {
            return Ok(LinearWeight::Quant(q));
        }
        match self.dtype {
            LoadDType::Auto => match self.get_blocks(name, shape).await? {
                Some(b) => Ok(LinearWeight::Quant(QMatrix::from_gguf_blocks(self.gpu, b.format, rows, cols, &b.bytes)?)),
                None => Ok(LinearWeight::Dense(self.get_weight(name, shape).await?)),
            },
            LoadDType::Quant(fmt) if cols % fmt.block_elems() == 0 && gpu_quantizable(fmt) => {
                Ok(LinearWeight::Quant(self.quantize_on_gpu(name, fmt, rows, cols).await?))
            }
            LoadDType::Quant(fmt) if cols % fmt.block_elems() == 0 => {
                let v = self.read_f32(&self.name(name), shape).await?;
                Ok(LinearWeight::Quant(QMatrix::quantize(self.gpu, fmt, rows, cols, &v)?))
            }
            _ => Ok(LinearWeight::Dense(self.get_weight(name, shape).await?)),
        }
    }

    /// The GGUF blocks of `name` as stored, when it is a matrix in a block format that
    /// [`crate::quant`] handles and its rows are already in HF order (llama `q_proj`/`k_proj`
    /// are not: their rows are interleaved for GGML's RoPE). `Ok(None)` otherwise (a
    /// safetensors checkpoint, an F32/F16 tensor): the caller falls back to [`Self::get_weight`].
    pub async fn get_blocks(&self, name: &str, shape: &[usize]) -> Result<Option<QuantBlocks>> {
        let Weights::Gguf(m) = self.weights else { return Ok(None) };
        let full = self.name(name);
        let info = m.tensor(&full)?;
        if info.shape() != shape {
            return Err(Self::mismatch(full, shape, &info.shape()));
        }
        let Some(format) = crate::loader::gguf_hf::quant_format(info.ggml_type) else { return Ok(None) };
        if !m.rows_in_hf_order(info) {
            return Ok(None);
        }
        let bytes = self.src.read_range(&m.gguf.file, info.start, info.n_bytes).await?;
        self.report(&m.gguf.file, bytes.len() as u64);
        Ok(Some(QuantBlocks { format, bytes, shape: shape.to_vec() }))
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
    /// The dense tensor, if the weight is not quantized.
    pub fn dense(&self) -> Option<&GpuTensor> {
        match self {
            LinearWeight::Dense(t) => Some(t),
            LinearWeight::Quant(_) => None,
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
        let weight = vb.get_linear_weight("weight", &[out_dim, in_dim]).await?;
        let bias = if bias { Some(vb.get("bias", &[out_dim]).await?) } else { None };
        Ok(Self { weight, bias })
    }
    /// `x` `[.., in]` → `[.., out]`. Dense weights take f32 `x`; quantized ones f32 or f16.
    pub fn forward(&self, enc: &mut Encoder, x: &GpuTensor) -> Result<GpuTensor> {
        match &self.weight {
            LinearWeight::Dense(w) => matmul::linear(enc, x, w, self.bias.as_ref()),
            LinearWeight::Quant(w) => quant::qlinear(enc, x, w, self.bias.as_ref()),
        }
    }
}

/// `RMSNorm` over the last dimension (Llama: `x * rsqrt(mean(x²) + eps) * weight`).
pub struct RmsNorm {
    pub weight: GpuTensor,
    pub eps: f32,
}

impl RmsNorm {
    pub async fn load<S: Source>(vb: &VarBuilder<'_, S>, dim: usize, eps: f32) -> Result<Self> {
        Ok(Self { weight: vb.get("weight", &[dim]).await?, eps })
    }
    pub fn forward(&self, enc: &mut Encoder, x: &GpuTensor) -> Result<GpuTensor> {
        norm::rms_norm(enc, x, &self.weight, self.eps)
    }
    /// `(x + r, rms_norm(x + r))` in one dispatch (the pre-norm residual step).
    pub fn forward_residual(&self, enc: &mut Encoder, x: &GpuTensor, r: &GpuTensor) -> Result<(GpuTensor, GpuTensor)> {
        norm::add_rms_norm(enc, x, r, &self.weight, self.eps)
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
