//! Layers over kernels, and the prefix builder that loads their weights by checkpoint name.
//!
//! `Linear` holds its weight as a [`LinearWeight`]: a dense `GpuTensor` (F32 / F16) or a
//! quantized [`QMatrix`] (GGUF block formats, AWQ), so model code never branches on the
//! weight format.

use crate::error::{Error, Result};
use crate::gpu::{Encoder, Gpu, GpuTensor};
use crate::kernels::quant::{self, QMatrix};
use crate::kernels::quantize::{gpu_quantizable, quantize_raw, quantize_rows, SrcKind};
use crate::kernels::{activation, embed, matmul, norm};
use crate::loader::prequant::{self, QBODY, QSCALE};
use crate::loader::{stream_weights, BlockTensor, Entry, Manifest, Progress, Source, Stored, StreamOptions, StreamedWeights, Target, Targets, Weights};
use crate::quant::QuantFormat;

/// How weights are stored on the GPU (the load option `dtype`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum LoadDType {
    /// Keep the file's format where a kernel can run it: GGUF block matrices become
    /// quantized [`Linear`] weights (decoded inside the matmul kernels; llama's permuted q/k
    /// rows are reordered as bytes while they stream); everything else is F32.
    #[default]
    Auto,
    /// Everything F32.
    F32,
    /// Linear weights and the tables a model names ([`WeightRoles`]) F16 on the GPU;
    /// vectors and other tables F32.
    F16,
    /// [`Linear`] weights quantized on load to this block format: q8_0 and q4_0 on the GPU
    /// as each matrix arrives (`kernels::quantize`, bit-identical to the CPU reference), the
    /// other formats with the CPU reference quantizer after the stream; GGUF blocks already
    /// in this format are kept; matrices whose rows are not a whole number of blocks stay F32.
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

/// What a model says about its tensors, so that the load dtype applies to the right ones.
#[derive(Clone, Copy)]
pub struct WeightRoles {
    /// The weights of [`Linear`] layers: blocks kept, quantized on load, F16 or F32.
    pub linear: fn(&str) -> bool,
    /// Other matrices that follow an `f16` load (a decoder's embedding table, which a tied
    /// head also reads); F32 otherwise.
    pub table: fn(&str) -> bool,
}

/// What tensor `e` becomes on the GPU under `dtype`:
/// - GGUF blocks of a linear weight stay blocks under `auto` (or the file's own format),
///   unless their body exceeds one binding (then F16);
///   anything else stored in blocks is decoded piece by piece (F16 under `f16` for linear
///   weights and tables, and for tables under `auto`; else F32), or quantized anew (`q8_0` /
///   `q4_0`);
/// - floats: F16 under `f16` for linear weights and tables; `q8_0` / `q4_0` linear weights
///   are quantized on the GPU as each arrives ([`Target::Finish`]); the rest is F32 (other
///   quantize-on-load formats are quantized after the stream, see [`VarBuilder::get_linear_weight`]);
/// - pre-quantized words stay raw.
pub fn target(gpu: &Gpu, e: &Entry, dtype: LoadDType, roles: &WeightRoles) -> Target {
    let linear = (roles.linear)(&e.name) && e.shape.len() == 2;
    let table = (roles.table)(&e.name);
    // A table stored in blocks is decoded as it streams; under `auto` to F16 (half the GPU
    // memory of F32, and what an F16 conversion of the file holds).
    let blocks_table = matches!(e.stored, Stored::Blocks(_)) && table && dtype == LoadDType::Auto;
    let f16 = (dtype == LoadDType::F16 && (linear || table)) || blocks_table;
    // Quantized while it streams: a matrix of whole blocks whose F32 copy fits one binding.
    let finish = match dtype {
        LoadDType::Quant(q) if linear && gpu_quantizable(q) => {
            let (rows, cols) = (e.shape[0], e.shape[1]);
            cols % q.block_elems() == 0 && rows * cols > 0 && (rows * cols * 4) as u64 <= gpu.caps().max_storage_buffer_binding_size
        }
        _ => false,
    };
    // The quantized kernels bind a matrix's body whole; one larger than a binding (a big LM
    // head on an adapter with the 128 MiB default) is decoded to F16, which the dense kernels
    // run window by window.
    let body_fits = |f: QuantFormat| {
        let blocks = e.shape.iter().product::<usize>() / f.block_elems();
        (blocks * f.body_words() * 4) as u64 <= gpu.caps().max_storage_buffer_binding_size
    };
    match e.stored {
        Stored::Skip => Target::Skip,
        Stored::Raw => Target::Raw,
        Stored::Blocks(f) if linear && (dtype == LoadDType::Auto || dtype == LoadDType::Quant(f)) => {
            if body_fits(f) { Target::Blocks } else { Target::F16 }
        }
        Stored::Blocks(_) | Stored::Float(_) if f16 => Target::F16,
        Stored::Blocks(_) | Stored::Float(_) if finish => Target::Finish,
        Stored::Blocks(_) | Stored::Float(_) => Target::F32,
    }
}

/// The one load recipe of every engine: streams `weights` from `src` in parallel Range
/// requests straight into GPU buffers ([`stream_weights`]: manifest checked while streaming,
/// progress, abort, retries), each tensor stored as [`target`] says for `dtype`, with
/// quantize-on-load run on the GPU as matrices arrive. The result serves a [`VarBuilder`].
#[allow(clippy::too_many_arguments)]
pub async fn load_weights<S: Source>(
    gpu: &Gpu,
    src: &S,
    weights: &Weights,
    dtype: LoadDType,
    roles: WeightRoles,
    opts: StreamOptions,
    progress: &dyn Fn(Progress),
    should_abort: &dyn Fn() -> bool,
) -> Result<StreamedWeights> {
    let target = |e: &Entry| target(gpu, e, dtype, &roles);
    let finish = |e: &Entry, t: &GpuTensor| -> Result<BlockTensor> {
        let LoadDType::Quant(fmt) = dtype else {
            return Err(Error::Input(format!("{}: nothing to finish under dtype {dtype:?}", e.name)));
        };
        let rows = e.shape[0];
        let q = QMatrix::alloc(gpu, fmt, rows, e.shape[1])?;
        let mut enc = gpu.encoder();
        quantize_rows(&mut enc, t, SrcKind::F32, &q, 0, rows)?;
        enc.submit()?;
        Ok(BlockTensor { format: fmt, rows, cols: q.cols, body: q.body().clone(), scales: q.scales().clone() })
    };
    let manifest = Manifest::read_optional(src).await?;
    let targets = Targets { target: &target, finish: &finish };
    stream_weights(gpu, src, weights, manifest.as_ref(), opts, &targets, progress, should_abort).await
}

/// Loads tensors by HF checkpoint name under a prefix (`encoder.layer.3.attention`) from
/// weights already streamed into GPU buffers ([`load_weights`]); model code does not see
/// the file format or the load dtype.
#[derive(Clone)]
pub struct VarBuilder<'a> {
    gpu: &'a Gpu,
    weights: &'a StreamedWeights,
    prefix: String,
    dtype: LoadDType,
}

impl<'a> VarBuilder<'a> {
    /// Over streamed weights, loaded for `dtype`.
    pub fn new(gpu: &'a Gpu, weights: &'a StreamedWeights, dtype: LoadDType) -> Self {
        Self { gpu, weights, prefix: String::new(), dtype }
    }

    pub fn dtype(&self) -> LoadDType {
        self.dtype
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
        let w = self.weights;
        w.tensors.contains_key(&full) || w.blocks.contains_key(&full) || w.tensors.contains_key(&format!("{full}{QBODY}"))
    }

    fn name(&self, name: &str) -> String {
        if self.prefix.is_empty() { name.to_string() } else { format!("{}.{name}", self.prefix) }
    }

    fn mismatch(full: String, shape: &[usize], got: &[usize]) -> Error {
        Error::TensorMismatch { name: full, expected: format!("{shape:?}"), got: format!("{got:?}") }
    }

    /// The tensor `full` as streamed (F32 or F16), checked against `shape`.
    fn tensor(&self, full: &str, shape: &[usize]) -> Result<GpuTensor> {
        if let Some(b) = self.weights.blocks.get(full) {
            return Err(Error::Input(format!("{full} is stored as {} blocks: load it as a linear weight", b.format.name())));
        }
        let t = self.weights.tensors.get(full).ok_or_else(|| Error::MissingTensor { name: full.to_string() })?;
        if t.shape() != shape {
            return Err(Self::mismatch(full.to_string(), shape, t.shape()));
        }
        Ok(t.clone())
    }

    /// The tensor `name` as F32 on the GPU, checked against `shape`.
    pub async fn get(&self, name: &str, shape: &[usize]) -> Result<GpuTensor> {
        let full = self.name(name);
        let t = self.tensor(&full, shape)?;
        if t.dtype() != crate::DType::F32 {
            return Err(Error::TensorMismatch { name: full, expected: "F32".into(), got: format!("{:?}", t.dtype()) });
        }
        Ok(t)
    }

    /// A weight matrix for a matmul or an embedding table: F16 under [`LoadDType::F16`]
    /// (when the model's [`WeightRoles`] name it), else F32.
    pub async fn get_weight(&self, name: &str, shape: &[usize]) -> Result<GpuTensor> {
        let full = self.name(name);
        let t = self.tensor(&full, shape)?;
        if !matches!(t.dtype(), crate::DType::F32 | crate::DType::F16) {
            return Err(Error::TensorMismatch { name: full, expected: "F32 or F16".into(), got: format!("{:?}", t.dtype()) });
        }
        Ok(t)
    }

    /// The weight `name` of a pre-quantized checkpoint (`name.qbody` / `name.qscale`, see
    /// [`crate::loader::prequant`]), its blocks streamed as they are; `None` when the
    /// checkpoint stores `name` otherwise. The load dtype must be `auto` or the file's own
    /// format.
    fn prequantized(&self, name: &str, rows: usize, cols: usize) -> Result<Option<QMatrix>> {
        let full = self.name(name);
        let w = self.weights;
        let (Some(body), Some(scales)) = (w.tensors.get(&format!("{full}{QBODY}")), w.tensors.get(&format!("{full}{QSCALE}"))) else {
            return Ok(None);
        };
        let fmt = w.quant.ok_or_else(|| Error::Format {
            format: "safetensors",
            file: w.file.clone(),
            msg: format!("has {QBODY} tensors but no {} metadata", prequant::META_FORMAT),
        })?;
        match self.dtype {
            LoadDType::Auto => {}
            LoadDType::Quant(f) if f == fmt => {}
            other => {
                return Err(Error::Input(format!("{} is pre-quantized to {}: load it with dtype auto (asked for {other:?})", w.file, fmt.name())))
            }
        }
        let (bn, sn) = prequant::part_bytes(fmt, rows, cols)?;
        let got = (body.byte_len(), scales.byte_len());
        if got != (bn as u64, sn as u64) {
            return Err(Error::TensorMismatch {
                name: full,
                expected: format!("{} [{rows}, {cols}]: {bn} + {sn} bytes", fmt.name()),
                got: format!("{} + {} bytes", got.0, got.1),
            });
        }
        Ok(Some(QMatrix::from_parts(fmt, rows, cols, body.clone(), scales.clone())?))
    }

    /// A `[out, in]` matrix for [`Linear`] in the form the load dtype asked for: blocks
    /// (kept from the file, pre-quantized, or quantized while streaming), or dense F32 / F16.
    /// Quantize-on-load that could not run while streaming (formats without a GPU quantizer,
    /// matrices larger than one binding) runs here from the streamed F32 copy.
    pub async fn get_linear_weight(&self, name: &str, shape: &[usize]) -> Result<LinearWeight> {
        let full = self.name(name);
        let &[rows, cols] = shape else {
            return Err(Error::Input(format!("{full}: a linear weight is 2-D, got {shape:?}")));
        };
        if let Some(q) = self.prequantized(name, rows, cols)? {
            return Ok(LinearWeight::Quant(q));
        }
        if let Some(b) = self.weights.blocks.get(&full) {
            if [b.rows, b.cols] != [rows, cols] {
                return Err(Self::mismatch(full, shape, &[b.rows, b.cols]));
            }
            return Ok(LinearWeight::Quant(QMatrix::from_parts(b.format, rows, cols, b.body.clone(), b.scales.clone())?));
        }
        let t = self.get_weight(name, shape).await?;
        match self.dtype {
            LoadDType::Quant(fmt) if cols % fmt.block_elems() == 0 && t.dtype() == crate::DType::F32 => {
                let v = self.gpu.readback_f32(&t).await?;
                drop(t);
                if gpu_quantizable(fmt) {
                    let bytes: Vec<u8> = v.iter().flat_map(|x| x.to_le_bytes()).collect();
                    drop(v);
                    Ok(LinearWeight::Quant(quantize_raw(self.gpu, fmt, rows, cols, &bytes, SrcKind::F32)?))
                } else {
                    Ok(LinearWeight::Quant(QMatrix::quantize(self.gpu, fmt, rows, cols, &v)?))
                }
            }
            _ => Ok(LinearWeight::Dense(t)),
        }
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
    pub async fn load(vb: &VarBuilder<'_>, in_dim: usize, out_dim: usize, bias: bool) -> Result<Self> {
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
    /// [`Self::forward`] with a norm prologue, a residual or a GLU epilogue
    /// ([`quant::Fusion`]): one dispatch for one token on a GPU, the same ops unfused
    /// elsewhere. `x` f32.
    pub fn forward_fused(&self, enc: &mut Encoder, x: &GpuTensor, f: quant::Fusion) -> Result<GpuTensor> {
        match &self.weight {
            LinearWeight::Dense(w) => quant::dense_fused(enc, x, w, self.bias.as_ref(), f),
            LinearWeight::Quant(w) => quant::qlinear_fused(enc, x, w, self.bias.as_ref(), f),
        }
    }
    /// The layers `parts` (one input) stacked into one whose output rows are theirs in
    /// order — load-time packing of q/k/v or gate/up into one product. The weights are
    /// copied on the GPU (the parts can be dropped). `None` when they cannot be stacked:
    /// different weight formats or dtypes, biases on some parts only, or a block layout that
    /// does not concatenate ([`QMatrix::concat_rows`]).
    pub fn concat(gpu: &Gpu, parts: &[&Linear]) -> Result<Option<Linear>> {
        let Some(first) = parts.first() else { return Ok(None) };
        let cols = first.weight.shape()[1];
        if parts.iter().any(|p| p.weight.shape()[1] != cols || p.bias.is_some() != first.bias.is_some()) {
            return Ok(None);
        }
        let rows: usize = parts.iter().map(|p| p.weight.shape()[0]).sum();
        let weight = match &first.weight {
            LinearWeight::Quant(_) => {
                let qs: Option<Vec<&QMatrix>> = parts.iter().map(|p| if let LinearWeight::Quant(q) = &p.weight { Some(q) } else { None }).collect();
                let Some(qs) = qs else { return Ok(None) };
                match QMatrix::concat_rows(gpu, &qs)? {
                    Some(q) => LinearWeight::Quant(q),
                    None => return Ok(None),
                }
            }
            LinearWeight::Dense(t) => {
                let dtype = t.dtype();
                let ds: Option<Vec<&GpuTensor>> = parts.iter().map(|p| p.weight.dense().filter(|d| d.dtype() == dtype)).collect();
                let Some(ds) = ds else { return Ok(None) };
                // copy_slice moves whole words: f16 parts need an even element count.
                if ds.iter().any(|d| (d.numel() * dtype.size()) % 4 != 0) {
                    return Ok(None);
                }
                LinearWeight::Dense(stack_rows(gpu, &ds, &[rows, cols])?)
            }
        };
        let bias = match first.bias {
            Some(_) => {
                let bs: Vec<&GpuTensor> = parts.iter().filter_map(|p| p.bias.as_ref()).collect();
                Some(stack_rows(gpu, &bs, &[rows])?)
            }
            None => None,
        };
        Ok(Some(Linear { weight, bias }))
    }
}

/// `parts` (one dtype) copied one after another into a new tensor of `shape`.
fn stack_rows(gpu: &Gpu, parts: &[&GpuTensor], shape: &[usize]) -> Result<GpuTensor> {
    let out = gpu.alloc(shape, parts[0].dtype())?;
    let mut enc = gpu.encoder();
    let mut at = 0;
    for p in parts {
        enc.copy_slice(p, 0, &out, at, p.numel())?;
        at += p.numel();
    }
    enc.submit()?;
    Ok(out)
}

/// The activation of a gated MLP's gate.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GateActivation {
    /// SwiGLU: `silu(gate) * up` (Llama, Qwen).
    Silu,
    /// GeGLU with tanh GELU: `gelu_tanh(gate) * up` (Gemma).
    GeluTanh,
}

/// A gated MLP, `down(act(gate(x)) * up(x))`: HF `LlamaMLP` (SiLU) and `Gemma3MLP` (tanh
/// GELU), weights `gate_proj`, `up_proj` `[intermediate, hidden]`, `down_proj`
/// `[hidden, intermediate]`, no biases.
pub struct GatedMlp {
    /// `[gate_proj, up_proj]`, or one `[gate; up]` product stacked at load
    /// ([`Self::load_packed`], [`Linear::concat`]).
    pub gate_up: Vec<Linear>,
    pub down_proj: Linear,
    pub act: GateActivation,
}

impl GatedMlp {
    pub async fn load(vb: &VarBuilder<'_>, hidden: usize, intermediate: usize, act: GateActivation) -> Result<Self> {
        Ok(Self {
            gate_up: vec![
                Linear::load(&vb.pp("gate_proj"), hidden, intermediate, false).await?,
                Linear::load(&vb.pp("up_proj"), hidden, intermediate, false).await?,
            ],
            down_proj: Linear::load(&vb.pp("down_proj"), intermediate, hidden, false).await?,
            act,
        })
    }
    /// [`Self::load`] with gate and up stacked into one product when their weights allow
    /// ([`Linear::concat`]), so the activation rides on it ([`Self::forward_fused`]).
    pub async fn load_packed(vb: &VarBuilder<'_>, hidden: usize, intermediate: usize, act: GateActivation) -> Result<Self> {
        let mut m = Self::load(vb, hidden, intermediate, act).await?;
        if let Some(p) = Linear::concat(vb.gpu(), &[&m.gate_up[0], &m.gate_up[1]])? {
            m.gate_up = vec![p];
        }
        Ok(m)
    }
    fn glu(&self) -> quant::GluAct {
        match self.act {
            GateActivation::Silu => quant::GluAct::Silu,
            GateActivation::GeluTanh => quant::GluAct::GeluTanh,
        }
    }
    /// The gate and up projections' layers (one when packed).
    pub fn linears(&self) -> impl Iterator<Item = &Linear> {
        self.gate_up.iter().chain([&self.down_proj])
    }
    pub fn forward(&self, enc: &mut Encoder, x: &GpuTensor) -> Result<GpuTensor> {
        let a = match self.gate_up.as_slice() {
            // One token on a GPU: the activation as the product's epilogue; else `glu_packed`.
            [gu] => gu.forward_fused(enc, x, quant::Fusion { glu: Some(self.glu()), ..Default::default() })?,
            [g, u] => {
                let (g, u) = (g.forward(enc, x)?, u.forward(enc, x)?);
                match self.act {
                    GateActivation::Silu => activation::swiglu(enc, &g, &u)?,
                    GateActivation::GeluTanh => activation::geglu_tanh(enc, &g, &u)?,
                }
            }
            _ => return Err(Error::Input("gated MLP: one packed or two gate/up projections".into())),
        };
        self.down_proj.forward(enc, &a)
    }
    /// The pre-norm MLP block on the residual stream `x`: `x + mlp(norm(x))`, the norm as
    /// each product's prologue, the gate activation as the packed product's epilogue and
    /// the residual add as the down projection's (three dispatches for one token, packed).
    pub fn forward_fused(&self, enc: &mut Encoder, x: &GpuTensor, norm: &RmsNorm) -> Result<GpuTensor> {
        let pre = quant::Fusion { norm: Some((&norm.weight, norm.eps)), ..Default::default() };
        let a = match self.gate_up.as_slice() {
            [gu] => gu.forward_fused(enc, x, quant::Fusion { glu: Some(self.glu()), ..pre })?,
            [g, u] => {
                let (g, u) = (g.forward_fused(enc, x, pre)?, u.forward_fused(enc, x, pre)?);
                match self.act {
                    GateActivation::Silu => activation::swiglu(enc, &g, &u)?,
                    GateActivation::GeluTanh => activation::geglu_tanh(enc, &g, &u)?,
                }
            }
            _ => return Err(Error::Input("gated MLP: one packed or two gate/up projections".into())),
        };
        self.down_proj.forward_fused(enc, &a, quant::Fusion { residual: Some(x), ..Default::default() })
    }
}

/// `RMSNorm` over the last dimension (Llama: `x * rsqrt(mean(x²) + eps) * weight`).
pub struct RmsNorm {
    pub weight: GpuTensor,
    pub eps: f32,
}

impl RmsNorm {
    pub async fn load(vb: &VarBuilder<'_>, dim: usize, eps: f32) -> Result<Self> {
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
    pub async fn load(vb: &VarBuilder<'_>, dim: usize, eps: f32) -> Result<Self> {
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
    pub async fn load(vb: &VarBuilder<'_>, num: usize, dim: usize) -> Result<Self> {
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
