//! Quantized linear layers: `y = x · Wᵀ (+ bias)` with `W` in a GGUF block format or AWQ
//! int4, decoded inside the kernel (`quant.wgsl`). No f32 copy of `W` is ever made.
//!
//! `x` is `[.., k]` f32, or f16 when the device has `shader-f16` (then `y` is f16 too;
//! accumulation is f32 either way). One token runs the matrix-vector kernel, more run the
//! tiled matrix-matrix kernel.

use super::{u, KernelKey, Variant};
use crate::error::{Error, Result};
use crate::gpu::{grid, DType, Encoder, Gpu, GpuTensor};
use crate::quant::{self, awq::AwqWeight, QuantFormat};

/// A weight format the quantized kernels decode.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum QFormat {
    Gguf(QuantFormat),
    Awq,
    /// Plain f32 / f16 weights run by the same matrix-vector kernel ([`dense_matvec`]).
    DenseF32,
    DenseF16,
}

impl QFormat {
    pub fn name(self) -> &'static str {
        match self {
            QFormat::Gguf(f) => f.name(),
            QFormat::Awq => "awq",
            QFormat::DenseF32 => "f32",
            QFormat::DenseF16 => "f16",
        }
    }
    fn define(self) -> &'static str {
        match self {
            QFormat::Gguf(QuantFormat::Q8_0) => "Q8_0",
            QFormat::Gguf(QuantFormat::Q4_0) => "Q4_0",
            QFormat::Gguf(QuantFormat::Q4_1) => "Q4_1",
            QFormat::Gguf(QuantFormat::Q5_0) => "Q5_0",
            QFormat::Gguf(QuantFormat::Q4K) => "Q4_K",
            QFormat::Gguf(QuantFormat::Q6K) => "Q6_K",
            QFormat::Gguf(QuantFormat::Q5_1) => "Q5_1",
            QFormat::Gguf(QuantFormat::Q5K) => "Q5_K",
            QFormat::Gguf(QuantFormat::Q3K) => "Q3_K",
            QFormat::Gguf(QuantFormat::Q2K) => "Q2_K",
            QFormat::Gguf(QuantFormat::IQ4NL) => "IQ4_NL",
            QFormat::Awq => "AWQ",
            QFormat::DenseF32 => "F32W",
            QFormat::DenseF16 => "F16W",
        }
    }
    /// Values per block along a row (the row length must be a multiple).
    pub fn block_elems(self) -> usize {
        match self {
            QFormat::Gguf(f) => f.block_elems(),
            QFormat::Awq => quant::awq::GROUP,
            QFormat::DenseF32 | QFormat::DenseF16 => 32,
        }
    }
}

/// A `[rows, cols]` weight matrix resident on the GPU in a quantized format, re-laid for
/// 4-byte reads (`quant::relayout`).
#[derive(Clone, Debug)]
pub struct QMatrix {
    pub format: QFormat,
    pub rows: usize,
    pub cols: usize,
    body: GpuTensor,
    scales: GpuTensor,
}

impl QMatrix {
    /// Uploads a `[rows, cols]` matrix given as GGUF blocks (row-major, `cols / block` blocks
    /// per row).
    pub fn from_gguf_blocks(gpu: &Gpu, format: QuantFormat, rows: usize, cols: usize, bytes: &[u8]) -> Result<Self> {
        let op = format.name();
        check_shape(QFormat::Gguf(format), rows, cols)?;
        let want = format.byte_len(rows * cols)?;
        if bytes.len() != want {
            return Err(Error::param(op, format!("[{rows}, {cols}] needs {want} bytes of blocks, got {}", bytes.len())));
        }
        let r = quant::relayout(format, bytes)?;
        let body = gpu.upload_u32(&r.body, &[r.body.len()])?;
        let scales = if r.scales.is_empty() { gpu.upload_u32(&[0], &[1])? } else { gpu.upload_u32(&r.scales, &[r.scales.len()])? };
        Ok(Self { format: QFormat::Gguf(format), rows, cols, body, scales })
    }

    /// A `[rows, cols]` matrix in `format` whose words a kernel fills
    /// ([`quantize_rows`](super::quantize::quantize_rows) writes every one); the buffers come
    /// from the pool uninitialised.
    pub fn alloc(gpu: &Gpu, format: QuantFormat, rows: usize, cols: usize) -> Result<Self> {
        check_shape(QFormat::Gguf(format), rows, cols)?;
        let n = rows.checked_mul(cols).ok_or_else(|| Error::param(format.name(), format!("[{rows}, {cols}] overflows")))?;
        let blocks = format.byte_len(n)? / format.block_bytes();
        let body = gpu.alloc(&[blocks * format.body_words()], DType::U32)?;
        let words = if format.split_scale() { blocks.div_ceil(2) } else { 1 };
        let scales = gpu.alloc(&[words], DType::U32)?;
        Ok(Self { format: QFormat::Gguf(format), rows, cols, body, scales })
    }

    /// A matrix from body and scale words already on the GPU (a pre-quantized checkpoint),
    /// checked against the shape.
    pub fn from_parts(format: QuantFormat, rows: usize, cols: usize, body: GpuTensor, scales: GpuTensor) -> Result<Self> {
        check_shape(QFormat::Gguf(format), rows, cols)?;
        let blocks = format.byte_len(rows * cols)? / format.block_bytes();
        let words = if format.split_scale() { blocks.div_ceil(2) } else { 1 };
        body.expect_dtype(format.name(), "body", &[DType::U32])?;
        scales.expect_dtype(format.name(), "scales", &[DType::U32])?;
        if body.numel() != blocks * format.body_words() || scales.numel() != words {
            return Err(Error::param(
                format.name(),
                format!("[{rows}, {cols}] needs {} body and {words} scale words, got {} and {}", blocks * format.body_words(), body.numel(), scales.numel()),
            ));
        }
        Ok(Self { format: QFormat::Gguf(format), rows, cols, body, scales })
    }

    /// The body words (see [`crate::quant::relayout`]).
    pub fn body(&self) -> &GpuTensor {
        &self.body
    }

    /// The packed f16 scales (one unused word for formats that keep them in the body).
    pub fn scales(&self) -> &GpuTensor {
        &self.scales
    }

    /// Quantizes `w` (`[rows, cols]` f32) on the CPU with the reference quantizer and uploads it.
    pub fn quantize(gpu: &Gpu, format: QuantFormat, rows: usize, cols: usize, w: &[f32]) -> Result<Self> {
        if w.len() != rows * cols {
            return Err(Error::param(format.name(), format!("{} values for shape [{rows}, {cols}]", w.len())));
        }
        check_shape(QFormat::Gguf(format), rows, cols)?;
        Self::from_gguf_blocks(gpu, format, rows, cols, &quant::quantize(format, w)?)
    }

    /// Uploads an AWQ checkpoint's `qweight` / `qzeros` / `scales`.
    pub fn from_awq(gpu: &Gpu, w: &AwqWeight) -> Result<Self> {
        check_shape(QFormat::Awq, w.out_features, w.in_features)?;
        let (body, meta) = w.relayout()?;
        Ok(Self {
            format: QFormat::Awq,
            rows: w.out_features,
            cols: w.in_features,
            body: gpu.upload_u32(&body, &[body.len()])?,
            scales: gpu.upload_u32(&meta, &[meta.len()])?,
        })
    }

    /// GPU bytes of the matrix (body and scales).
    pub fn byte_size(&self) -> u64 {
        self.body.byte_len() + self.scales.byte_len()
    }
}

fn check_shape(format: QFormat, rows: usize, cols: usize) -> Result<()> {
    let be = format.block_elems();
    if rows == 0 || cols == 0 || cols % be != 0 {
        return Err(Error::param(
            format.name(),
            format!("a [{rows}, {cols}] matrix needs a row length that is a non-zero multiple of the {be}-value block"),
        ));
    }
    if format == QFormat::Awq && rows % 8 != 0 {
        return Err(Error::param("awq", format!("{rows} output features are not a multiple of 8")));
    }
    Ok(())
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum QuantEntry {
    Matvec,
    Matmul,
    /// `qmatmul_direct`: barrier-free batched product (CPU adapters).
    MatmulDirect,
    /// `qmatvec_direct`: barrier-free single-token product (CPU adapters).
    MatvecDirect,
}

#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct QuantKey {
    pub format: QFormat,
    pub entry: QuantEntry,
    pub x_f16: bool,
    pub bias: bool,
    /// Reduce each row in one subgroup; `threads` is then the subgroup size.
    pub subgroups: bool,
    /// Threads per row group of the matrix-vector kernel (its `override T`).
    pub threads: u16,
    /// The device's fixed subgroup size with `subgroups` (its `override SG`), else 0.
    pub sg_size: u8,
    /// Rows per thread group of the matrix-vector kernel (2 or 4).
    pub rows: u8,
    /// Matrix-vector only: the RMSNorm prologue (`NORM`).
    pub norm: bool,
    /// Matrix-vector only: the epilogue.
    pub epilogue: Epilogue,
}

/// What the matrix-vector kernel does with a row's sum before storing it (`quant.wgsl`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum Epilogue {
    /// `y = x · Wᵀ (+ bias)`.
    #[default]
    Store,
    /// `y = res + x · Wᵀ (+ bias)`: the residual add (`RESIDUAL`).
    Residual,
    /// `y[j] = act(g_j) · u_j` over a packed `[gate; up]` weight (`GLU`).
    Glu(GluAct),
}

/// The gate activation of a GLU epilogue.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum GluAct {
    /// SwiGLU (Llama, Qwen).
    Silu,
    /// GeGLU with the tanh GELU (Gemma).
    GeluTanh,
}

impl Variant for QuantKey {
    const FAMILY: &'static str = "quant";
    const SOURCE: &'static str = include_str!("quant.wgsl");
    fn entry(&self) -> &'static str {
        match self.entry {
            QuantEntry::Matvec => "qmatvec",
            QuantEntry::Matmul => "qmatmul",
            QuantEntry::MatmulDirect => "qmatmul_direct",
            QuantEntry::MatvecDirect => "qmatvec_direct",
        }
    }
    fn defines(&self) -> Vec<&'static str> {
        let mut d = vec![self.format.define()];
        if matches!(self.format, QFormat::DenseF32 | QFormat::DenseF16) {
            d.push("DENSE");
        }
        if self.entry == QuantEntry::Matvec && matches!(self.format, QFormat::Gguf(QuantFormat::Q4_0 | QuantFormat::Q4_1)) {
            // 16-value matvec items: both nibbles of each loaded word (see `dot16`).
            d.push("NIB16");
        }
        for (on, name) in [(self.x_f16, "X_F16"), (self.bias, "BIAS"), (self.subgroups, "SUBGROUPS"), (self.rows == 4, "ROWS4")] {
            if on {
                d.push(name);
            }
        }
        if self.norm {
            d.extend(["NORM", "AUX"]);
        }
        match self.epilogue {
            Epilogue::Store => {}
            Epilogue::Residual => d.extend(["RESIDUAL", "AUX"]),
            Epilogue::Glu(GluAct::Silu) => d.push("GLU"),
            Epilogue::Glu(GluAct::GeluTanh) => d.extend(["GLU", "GLU_GELU"]),
        }
        if self.subgroups && cfg!(target_arch = "wasm32") {
            d.push("ENABLE_SUBGROUPS");
        }
        d
    }
    fn needs_shader_f16(&self) -> bool {
        self.x_f16
    }
    fn constants(&self) -> Vec<(&'static str, f64)> {
        match (self.entry, self.subgroups) {
            (QuantEntry::Matvec, true) => vec![("T", self.threads as f64), ("SG", self.sg_size as f64)],
            (QuantEntry::Matvec, false) => vec![("T", self.threads as f64)],
            _ => vec![],
        }
    }
}

/// How the matrix-vector kernel reduces a row: `Some(size)` with one subgroup per row, when
/// the device has subgroups of one fixed size that divides the workgroup.
pub fn subgroup_rows(gpu: &Gpu) -> Option<u32> {
    let caps = gpu.caps();
    caps.subgroup_size.filter(|&s| caps.subgroups && (4..=128).contains(&s) && s.is_power_of_two())
}

/// Options for [`qlinear_with`]: kernel choices the tests and benchmarks force.
#[derive(Clone, Copy, Debug, Default)]
pub struct QLinearOptions {
    /// Never use the subgroup reduction.
    pub no_subgroups: bool,
    /// Use the matrix-matrix kernel even for one token.
    pub force_matmul: bool,
    /// Rows per thread group of the matrix-vector kernel (2 or 4); `None` picks
    /// [`matvec_shape`].
    pub rows: Option<u8>,
    /// Threads per row group of the matrix-vector kernel (a power of two ≤ 256; `u16` so
    /// 256 fits); `None` picks [`matvec_shape`].
    pub threads: Option<u16>,
    /// Products without workgroup barriers or shared memory (`qmatmul_direct`, and
    /// `qmatvec_direct` for one token, which ignores `rows` / `threads` / subgroups);
    /// `None`: on CPU adapters only (`Capabilities::is_cpu`).
    pub barrier_free: Option<bool>,
}

/// The matrix-vector kernel's shape for an `n × k` matrix: `(rows, threads)` per thread group.
///
/// - Rows: 4 for the 4-bit formats (their weight bytes per x byte are lowest, so sharing each
///   x load over more rows pays), 2 otherwise; back to 2 if 4 would leave fewer than
///   [`MATVEC_MIN_GROUPS`] workgroups.
/// - Threads: start at `sg` (the subgroup size, or 32). Tall matrices with short rows (an LM
///   head's k = 896) halve it while a lane would get fewer than 6 work items of a row *and* the
///   dispatch keeps at least [`MATVEC_MANY_GROUPS`] workgroups, so every lane has several
///   independent loads. Short matrices with long rows (a down projection, n = 1536, k = 8960)
///   double it, up to 256, while there are fewer than [`MATVEC_MIN_GROUPS`] workgroups and a
///   lane keeps at least 2 items, so the dispatch still fills the GPU.
///
/// Measured on an H100: `SPEC/quant.md`.
pub fn matvec_shape(format: QFormat, n: usize, k: usize, sg: u32) -> (u8, u32) {
    let (mut rows, per_unit) = match format {
        QFormat::DenseF32 | QFormat::DenseF16 => (2u32, 4),
        QFormat::Gguf(QuantFormat::Q4_0 | QuantFormat::Q4_1) => (4, 2),
        _ => (2, 4),
    };
    let items = (k / 32 * per_unit) as u32;
    let groups = |rows: u32, t: u32| n.div_ceil((rows * 256 / t) as usize);
    let mut t = sg;
    if !matches!(format, QFormat::DenseF32 | QFormat::DenseF16) {
        while t > 4 && items < 6 * t && groups(rows, t / 2) >= MATVEC_MANY_GROUPS {
            t /= 2;
        }
    }
    if rows > 2 && groups(rows, t) < MATVEC_MIN_GROUPS {
        rows = 2;
    }
    while t < 256 && groups(rows, t) < MATVEC_MIN_GROUPS && items >= 4 * t {
        t *= 2;
    }
    (rows as u8, t)
}

/// Fewest workgroups [`matvec_shape`] aims for (an H100 has 132 SMs).
pub const MATVEC_MIN_GROUPS: usize = 128;
/// Fewest workgroups [`matvec_shape`] accepts fewer threads per row with.
pub const MATVEC_MANY_GROUPS: usize = 512;

/// `y[.., n] = x[.., k] · W[n, k]ᵀ + bias[n]` with `W` quantized.
/// - `x`: `[.., k]` f32, or f16 (needs `shader-f16`)
/// - `bias`: `[n]` f32, optional
/// - returns `[.., n]` in `x`'s dtype
pub fn qlinear(enc: &mut Encoder, x: &GpuTensor, w: &QMatrix, bias: Option<&GpuTensor>) -> Result<GpuTensor> {
    qlinear_with(enc, x, w, bias, QLinearOptions::default())
}

pub fn qlinear_with(
    enc: &mut Encoder,
    x: &GpuTensor,
    w: &QMatrix,
    bias: Option<&GpuTensor>,
    opts: QLinearOptions,
) -> Result<GpuTensor> {
    const OP: &str = "qlinear";
    x.expect_dtype(OP, "x", &[DType::F32, DType::F16])?;
    let x_f16 = x.dtype() == DType::F16;
    if x_f16 && !enc.gpu().caps().shader_f16 {
        return Err(Error::MissingFeature { op: OP, feature: "shader-f16" });
    }
    let (n, k) = (w.rows, w.cols);
    if x.rank() == 0 || x.numel() == 0 || x.last_dim() != k {
        return Err(Error::shape(OP, "x", format!("[.., {k}]"), x.shape()));
    }
    if let Some(b) = bias {
        b.expect_dtype(OP, "bias", &[DType::F32])?;
        if b.shape() != [n] {
            return Err(Error::shape(OP, "bias", format!("[{n}]"), b.shape()));
        }
    }
    if enc.host() {
        return crate::cpu::qlinear(enc.gpu(), x, w, bias);
    }
    let m = x.rows();
    let mut out_shape = x.shape().to_vec();
    *out_shape.last_mut().expect("rank checked") = n;
    let y = enc.gpu().alloc(&out_shape, x.dtype())?;
    let matvec = m == 1 && !opts.force_matmul;
    let sg = if opts.no_subgroups { None } else { subgroup_rows(enc.gpu()) };
    let sg_threads = sg.unwrap_or(32).min(32);
    let (auto_rows, auto_threads) = matvec_shape(w.format, n, k, sg_threads);
    let threads = if matvec { opts.threads.map_or(auto_threads, u32::from) } else { 0 };
    if matvec && (!threads.is_power_of_two() || threads > 256) {
        return Err(Error::param(OP, format!("{threads} threads per row group: a power of two ≤ 256 is needed")));
    }
    let rows = if matvec { opts.rows.unwrap_or(auto_rows) } else { 0 };
    if matvec && rows != 2 && rows != 4 {
        return Err(Error::param(OP, format!("{rows} rows per thread group: the kernel has 2 or 4")));
    }
    let barrier_free = opts.barrier_free.unwrap_or(enc.gpu().caps().is_cpu);
    let entry = match (matvec, barrier_free) {
        (true, false) => QuantEntry::Matvec,
        (true, true) => QuantEntry::MatvecDirect,
        (false, false) => QuantEntry::Matmul,
        (false, true) => QuantEntry::MatmulDirect,
    };
    let matvec = entry == QuantEntry::Matvec;
    let key = QuantKey {
        format: w.format,
        entry,
        x_f16,
        bias: bias.is_some(),
        subgroups: matvec && sg.is_some(),
        threads: if matvec { threads as u16 } else { 0 },
        sg_size: if matvec { sg.unwrap_or(0).min(128) as u8 } else { 0 },
        rows: if matvec { rows } else { 0 },
        norm: false,
        epilogue: Epilogue::Store,
    };
    let params = [u(OP, "m", m)?, u(OP, "n", n)?, u(OP, "k", k)?, u(OP, "k", k / 32)?, 0, 0, 0, 0];
    let workgroups = match entry {
        QuantEntry::Matvec => grid(u(OP, "n", n.div_ceil(rows as usize * 256 / threads as usize))?),
        QuantEntry::MatmulDirect => [u(OP, "n", n.div_ceil(64))?, u(OP, "m", m.div_ceil(16))?, 1],
        QuantEntry::MatvecDirect => grid(u(OP, "n", n.div_ceil(256))?),
        QuantEntry::Matmul => [u(OP, "n", n.div_ceil(64))?, u(OP, "m", m.div_ceil(64))?, 1],
    };
    let mut tensors = vec![x, &w.body, &w.scales, &y];
    tensors.extend(bias);
    enc.dispatch(KernelKey::Quant(key), &params, &tensors, workgroups)?;
    Ok(y)
}

/// `y = x · wᵀ + bias` for one token with dense f32 / f16 weights `[n, k]`, `k % 32 == 0`:
/// the quantized matrix-vector kernel with a plain-weight decoder (row pairs, coalesced
/// octets, subgroup reduction), reading `w` in place. `x` `[1, k]` f32 (or f16 with
/// `shader-f16`); returns `[1, n]` in `x`'s dtype.
pub fn dense_matvec(enc: &mut Encoder, x: &GpuTensor, w: &GpuTensor, bias: Option<&GpuTensor>, opts: QLinearOptions) -> Result<GpuTensor> {
    const OP: &str = "dense_matvec";
    w.expect_dtype(OP, "w", &[DType::F32, DType::F16])?;
    w.expect_rank(OP, "w", 2)?;
    let (n, k) = (w.shape()[0], w.shape()[1]);
    if k % 32 != 0 {
        return Err(Error::param(OP, format!("k = {k} is not a multiple of 32")));
    }
    if x.rows() != 1 {
        return Err(Error::shape(OP, "x", format!("[1, {k}]"), x.shape()));
    }
    let format = if w.dtype() == DType::F16 { QFormat::DenseF16 } else { QFormat::DenseF32 };
    // The weights are the body; the scale binding is unused (the weights stand in for it).
    let m = QMatrix { format, rows: n, cols: k, body: w.clone(), scales: w.clone() };
    qlinear_with(enc, x, &m, bias, QLinearOptions { force_matmul: false, ..opts })
}

/// The prologue and epilogue of a fused one-token product ([`qlinear_fused`],
/// [`dense_fused`]): a decoder layer's RMSNorm, residual add and gated activation ride on
/// the matrix-vector kernel instead of running as dispatches of their own.
#[derive(Clone, Copy, Debug, Default)]
pub struct Fusion<'a> {
    /// RMS-normalise `x` first: `(gamma [k], eps)`.
    pub norm: Option<(&'a GpuTensor, f32)>,
    /// Add this residual (`[.., n]` f32, `x`'s rows) to the product.
    pub residual: Option<&'a GpuTensor>,
    /// The weight is a packed `[gate; up]` `[2h, k]` matrix: return `act(gate) · up` `[.., h]`.
    pub glu: Option<GluAct>,
}

/// Longest row the norm prologue takes: it keeps the normalised row in shared memory
/// (2048 f32 = 8 KiB beside the 4 KiB reduction buffer, within WebGPU's default 16 KiB).
pub const NORM_MAX_K: usize = 2048;

/// Whether [`qlinear_fused`] / [`dense_fused`] run one fused dispatch for `m` rows on this
/// encoder's device: one token on a GPU. CPU adapters (lavapipe, SwiftShader; unless
/// `GpuOptions::gpu_kernels`) keep their barrier-free kernels, and the CPU backend its
/// twins: there, and for more rows (prefill), the same ops run unfused. Models ask once per
/// forward pass and take the fused or the unfused layer (`LlamaModel::forward`).
pub fn fuses(enc: &mut Encoder, m: usize) -> bool {
    m == 1 && !enc.host() && !enc.gpu().caps().is_cpu
}

fn check_fusion(op: &'static str, x: &GpuTensor, n: usize, k: usize, bias: bool, f: &Fusion) -> Result<()> {
    if f.norm.is_some() && f.residual.is_some() {
        return Err(Error::param(op, "a norm prologue and a residual epilogue do not combine (they share a binding)"));
    }
    if f.glu.is_some() && (f.residual.is_some() || bias) {
        return Err(Error::param(op, "a GLU epilogue takes no bias or residual"));
    }
    if f.glu.is_some() && n % 2 != 0 {
        return Err(Error::param(op, format!("a packed gate/up weight has an even number of rows, got {n}")));
    }
    if let Some((g, _)) = f.norm {
        g.expect_dtype(op, "gamma", &[DType::F32])?;
        if g.shape() != [k] {
            return Err(Error::shape(op, "gamma", format!("[{k}]"), g.shape()));
        }
    }
    if let Some(r) = f.residual {
        r.expect_dtype(op, "residual", &[DType::F32])?;
        if r.rows() != x.rows() || r.last_dim() != n {
            return Err(Error::shape(op, "residual", format!("[{}, {n}]", x.rows()), r.shape()));
        }
    }
    Ok(())
}

/// The unfused ops of a [`Fusion`] around `product` (prefill, CPU adapters, the CPU backend).
fn unfused(enc: &mut Encoder, x: &GpuTensor, f: Fusion, product: impl FnOnce(&mut Encoder, &GpuTensor) -> Result<GpuTensor>) -> Result<GpuTensor> {
    let y = match f.norm {
        Some((gamma, eps)) => {
            let h = super::norm::rms_norm(enc, x, gamma, eps)?;
            product(enc, &h)?
        }
        None => product(enc, x)?,
    };
    let y = match f.glu {
        Some(act) => super::activation::glu_packed(enc, &y, act)?,
        None => y,
    };
    match f.residual {
        Some(r) => super::activation::add(enc, &r.reshape(y.shape())?, &y),
        None => Ok(y),
    }
}

/// `y = x · Wᵀ + bias` with the [`Fusion`]'s prologue and epilogue, `W` quantized: one
/// matrix-vector dispatch for one token on a GPU ([`fuses`]; a norm prologue needs `k <=`
/// [`NORM_MAX_K`]), else the unfused ops.
/// - `x`: `[.., k]` f32; returns `[.., n]` f32 (`[.., n / 2]` with `glu`)
pub fn qlinear_fused(enc: &mut Encoder, x: &GpuTensor, w: &QMatrix, bias: Option<&GpuTensor>, f: Fusion) -> Result<GpuTensor> {
    const OP: &str = "qlinear_fused";
    x.expect_dtype(OP, "x", &[DType::F32])?;
    check_fusion(OP, x, w.rows, w.cols, bias.is_some(), &f)?;
    if !fuses(enc, x.rows()) || w.format == QFormat::Awq || x.last_dim() != w.cols || (f.norm.is_some() && w.cols > NORM_MAX_K) {
        return unfused(enc, x, f, |enc, h| qlinear(enc, h, w, bias));
    }
    fused_matvec(enc, x, w, bias, f)
}

/// [`qlinear_fused`] with a dense f32 / f16 weight `[n, k]`; fused for `k % 32 == 0` within
/// one binding, else the unfused ops around `matmul::linear`.
pub fn dense_fused(enc: &mut Encoder, x: &GpuTensor, w: &GpuTensor, bias: Option<&GpuTensor>, f: Fusion) -> Result<GpuTensor> {
    const OP: &str = "dense_fused";
    x.expect_dtype(OP, "x", &[DType::F32])?;
    w.expect_dtype(OP, "w", &[DType::F32, DType::F16])?;
    w.expect_rank(OP, "w", 2)?;
    let (n, k) = (w.shape()[0], w.shape()[1]);
    check_fusion(OP, x, n, k, bias.is_some(), &f)?;
    let one_binding = w.byte_len() <= enc.gpu().caps().max_storage_buffer_binding_size;
    if !fuses(enc, x.rows()) || k % 32 != 0 || !one_binding || x.last_dim() != k || (f.norm.is_some() && k > NORM_MAX_K) {
        return unfused(enc, x, f, |enc, h| super::matmul::linear(enc, h, w, bias));
    }
    let format = if w.dtype() == DType::F16 { QFormat::DenseF16 } else { QFormat::DenseF32 };
    // As `dense_matvec`: the weights are the body; the scale binding is unused.
    let m = QMatrix { format, rows: n, cols: k, body: w.clone(), scales: w.clone() };
    fused_matvec(enc, x, &m, bias, f)
}

fn fused_matvec(enc: &mut Encoder, x: &GpuTensor, w: &QMatrix, bias: Option<&GpuTensor>, f: Fusion) -> Result<GpuTensor> {
    const OP: &str = "qlinear_fused";
    let (n, k) = (w.rows, w.cols);
    if x.numel() != k {
        return Err(Error::shape(OP, "x", format!("[1, {k}]"), x.shape()));
    }
    if let Some(b) = bias {
        b.expect_dtype(OP, "bias", &[DType::F32])?;
        if b.shape() != [n] {
            return Err(Error::shape(OP, "bias", format!("[{n}]"), b.shape()));
        }
    }
    let outputs = if f.glu.is_some() { n / 2 } else { n };
    let mut out_shape = x.shape().to_vec();
    *out_shape.last_mut().expect("rank checked") = outputs;
    let y = enc.gpu().alloc(&out_shape, DType::F32)?;
    let sg = subgroup_rows(enc.gpu());
    let (rows, threads) = matvec_shape(w.format, n, k, sg.unwrap_or(32).min(32));
    let key = QuantKey {
        format: w.format,
        entry: QuantEntry::Matvec,
        x_f16: false,
        bias: bias.is_some(),
        subgroups: sg.is_some(),
        threads: threads as u16,
        sg_size: sg.unwrap_or(0).min(128) as u8,
        rows,
        norm: f.norm.is_some(),
        epilogue: match (f.residual, f.glu) {
            (Some(_), _) => Epilogue::Residual,
            (None, Some(act)) => Epilogue::Glu(act),
            (None, None) => Epilogue::Store,
        },
    };
    let eps = f.norm.map_or(0.0, |(_, e)| e);
    let params = [u(OP, "m", 1)?, u(OP, "n", n)?, u(OP, "k", k)?, u(OP, "k", k / 32)?, eps.to_bits(), 0, 0, 0];
    let workgroups = grid(u(OP, "n", n.div_ceil(rows as usize * 256 / threads as usize))?);
    let mut tensors = vec![x, &w.body, &w.scales, &y];
    tensors.extend(bias);
    if let Some((gamma, _)) = f.norm {
        tensors.push(gamma);
    }
    tensors.extend(f.residual);
    enc.dispatch(KernelKey::Quant(key), &params, &tensors, workgroups)?;
    Ok(y)
}

impl QMatrix {
    /// The rows of `parts` (one format, one row length) stacked into one matrix, copied on
    /// the GPU: load-time packing of q/k/v or gate/up into one product. `None` when they
    /// cannot be stacked: formats or row lengths differ, AWQ, or a part whose block count is
    /// odd in a format with split-off scales (two f16 scales per word would straddle parts).
    pub fn concat_rows(gpu: &Gpu, parts: &[&QMatrix]) -> Result<Option<QMatrix>> {
        let Some(first) = parts.first() else { return Ok(None) };
        let QFormat::Gguf(format) = first.format else { return Ok(None) };
        if parts.iter().any(|p| p.format != first.format || p.cols != first.cols) {
            return Ok(None);
        }
        let blocks = |q: &QMatrix| q.rows * q.cols / format.block_elems();
        if format.split_scale() && parts.iter().any(|p| blocks(p) % 2 != 0) {
            return Ok(None);
        }
        let rows: usize = parts.iter().map(|p| p.rows).sum();
        let out = QMatrix::alloc(gpu, format, rows, first.cols)?;
        let mut enc = gpu.encoder();
        let (mut body_at, mut scale_at) = (0, 0);
        for p in parts {
            enc.copy_slice(&p.body, 0, &out.body, body_at, p.body.numel())?;
            body_at += p.body.numel();
            if format.split_scale() {
                let words = blocks(p) / 2;
                enc.copy_slice(&p.scales, 0, &out.scales, scale_at, words)?;
                scale_at += words;
            }
        }
        enc.submit()?;
        Ok(Some(out))
    }
}
