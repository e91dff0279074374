//! Linear layers: `y = x · wᵀ (+ bias)` with f32 or f16 weights, see `matmul.wgsl`.
//!
//! `x` is `[.., k]`: all leading dims are the token batch `m`. One token with `k % 32 == 0`
//! (decode) runs `quant::dense_matvec` (the quantized matrix-vector kernel with a plain-weight
//! decoder); other single tokens the matrix-vector kernel here; more tokens the tiled kernel,
//! or on CPU adapters (`Capabilities::is_cpu`) the barrier-free direct kernel.

use super::{u, KernelKey, Variant};
use crate::error::{Error, Result};
use crate::gpu::{grid, DType, Encoder, GpuTensor};

/// Largest token count served by the matrix-vector kernel. The kernel handles up to 8 rows
/// (`override M`), but for 2..=8 rows its accumulators spill (≈120 GB/s on the H100, and
/// seconds per call on SwiftShader), so only single-token decode uses it for now.
pub const MATVEC_MAX_M: usize = 1;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum MatmulEntry {
    Tiled,
    /// Barrier-free, no shared memory: for CPU adapters.
    Direct,
    Matvec,
}

/// Kernel choices for [`linear_with`] that tests and benchmarks force.
#[derive(Clone, Copy, Debug, Default)]
pub struct LinearOptions {
    /// Batched products without workgroup barriers or shared memory (`matmul_direct`).
    /// `None`: on CPU adapters only, where barriers are emulated (SwiftShader, lavapipe).
    pub barrier_free: Option<bool>,
}

#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct MatmulKey {
    pub entry: MatmulEntry,
    pub w_f16: bool,
    /// Read f16 weights as WGSL `f16` (needs `shader-f16`) instead of unpacking words.
    pub shader_f16: bool,
    pub bias: bool,
    pub vec4: bool,
    /// Rows for the matrix-vector kernel (its `override M`); 0 for the tiled kernel.
    pub m: u8,
}

impl Variant for MatmulKey {
    const FAMILY: &'static str = "matmul";
    const SOURCE: &'static str = include_str!("matmul.wgsl");
    fn entry(&self) -> &'static str {
        match self.entry {
            MatmulEntry::Tiled => "matmul_tiled",
            MatmulEntry::Direct => "matmul_direct",
            MatmulEntry::Matvec => "matvec",
        }
    }
    fn defines(&self) -> Vec<&'static str> {
        let mut d = vec![];
        for (on, name) in [(self.w_f16, "W_F16"), (self.shader_f16, "SHADER_F16"), (self.bias, "BIAS"), (self.vec4, "VEC4")] {
            if on {
                d.push(name);
            }
        }
        d
    }
    fn needs_shader_f16(&self) -> bool {
        self.shader_f16
    }
    fn constants(&self) -> Vec<(&'static str, f64)> {
        if self.entry == MatmulEntry::Matvec { vec![("M", self.m as f64)] } else { vec![] }
    }
}

/// `y[.., n] = x[.., k] · w[n, k]ᵀ + bias[n]`.
/// - `x`: `[.., k]` f32 (leading dims flattened into m tokens)
/// - `w`: `[n, k]` f32 or f16
/// - `bias`: `[n]` f32, optional
/// - returns `[.., n]` f32
pub fn linear(enc: &mut Encoder, x: &GpuTensor, w: &GpuTensor, bias: Option<&GpuTensor>) -> Result<GpuTensor> {
    linear_with(enc, x, w, bias, LinearOptions::default())
}

/// [`linear`] with forced kernel choices.
pub fn linear_with(enc: &mut Encoder, x: &GpuTensor, w: &GpuTensor, bias: Option<&GpuTensor>, opts: LinearOptions) -> Result<GpuTensor> {
    const OP: &str = "linear";
    x.expect_dtype(OP, "x", &[DType::F32])?;
    w.expect_dtype(OP, "w", &[DType::F32, DType::F16])?;
    w.expect_rank(OP, "w", 2)?;
    let (n, k) = (w.shape()[0], w.shape()[1]);
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
        return crate::cpu::linear(enc.gpu(), x, w, bias);
    }
    let m = x.rows();
    let (binding_limit, align) = (enc.gpu().caps().max_storage_buffer_binding_size, enc.gpu().caps().storage_offset_alignment);
    let windows = w.row_windows(binding_limit, align)?;
    if windows.len() > 1 {
        // A weight bigger than one binding (a large vocabulary's LM head on an adapter with
        // a 128 MiB limit): one product per window of rows, copied into its output columns.
        if bias.is_some() {
            return Err(Error::param(OP, "a weight larger than one binding cannot have a bias"));
        }
        let mut out_shape = x.shape().to_vec();
        *out_shape.last_mut().expect("rank checked") = n;
        let y = enc.gpu().alloc(&out_shape, DType::F32)?;
        for (r0, rows) in windows {
            let part = linear_with(enc, x, &w.rows_view(r0, rows, align)?, None, opts)?;
            for i in 0..m {
                enc.copy_slice(&part, i * rows, &y, i * n + r0, rows)?;
            }
        }
        return Ok(y);
    }
    if m == 1 && k % 32 == 0 {
        // Decode: the row-pair / coalesced-octet matrix-vector kernel of `quant.wgsl`.
        return super::quant::dense_matvec(enc, x, w, bias, Default::default());
    }
    let mut out_shape = x.shape().to_vec();
    *out_shape.last_mut().expect("rank checked") = n;
    let y = enc.gpu().alloc(&out_shape, DType::F32)?;
    let w_f16 = w.dtype() == DType::F16;
    let entry = if m <= MATVEC_MAX_M {
        MatmulEntry::Matvec
    } else if opts.barrier_free.unwrap_or(enc.gpu().caps().is_cpu) {
        MatmulEntry::Direct
    } else {
        MatmulEntry::Tiled
    };
    let matvec = entry == MatmulEntry::Matvec;
    let key = MatmulKey {
        entry,
        w_f16,
        shader_f16: w_f16 && enc.gpu().caps().shader_f16,
        bias: bias.is_some(),
        vec4: entry != MatmulEntry::Tiled && k % if w_f16 { 8 } else { 4 } == 0,
        m: if matvec { m as u8 } else { 0 },
    };
    let params = [u(OP, "m", m)?, u(OP, "n", n)?, u(OP, "k", k)?, 0];
    let workgroups = match entry {
        MatmulEntry::Matvec => grid(u(OP, "n", n)?),
        MatmulEntry::Direct => [u(OP, "n", n.div_ceil(64))?, u(OP, "m", m.div_ceil(16))?, 1],
        MatmulEntry::Tiled => [u(OP, "n", n.div_ceil(64))?, u(OP, "m", m.div_ceil(64))?, 1],
    };
    let mut tensors = vec![x, w, &y];
    tensors.extend(bias);
    enc.dispatch(KernelKey::Matmul(key), &params, &tensors, workgroups)?;
    Ok(y)
}
