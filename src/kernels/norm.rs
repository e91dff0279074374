//! LayerNorm, RMSNorm and L2 normalisation over the last dimension, see `norm.wgsl`.

use super::{f, u, KernelKey, Variant};
use crate::error::{Error, Result};
use crate::gpu::{grid, DType, Encoder, GpuTensor};

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum NormKind {
    Layer,
    /// `layer_norm_direct`: one invocation per row, no barriers (CPU adapters).
    LayerDirect,
    Rms,
    L2,
    /// `add_rms_norm`: residual add, then RMSNorm (RESIDUAL).
    AddRms,
}

#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct NormKey {
    pub kind: NormKind,
    pub affine: bool,
    pub bias: bool,
}

impl Variant for NormKey {
    const FAMILY: &'static str = "norm";
    const SOURCE: &'static str = include_str!("norm.wgsl");
    fn entry(&self) -> &'static str {
        match self.kind {
            NormKind::Layer => "layer_norm",
            NormKind::LayerDirect => "layer_norm_direct",
            NormKind::Rms => "rms_norm",
            NormKind::L2 => "l2_norm",
            NormKind::AddRms => "add_rms_norm",
        }
    }
    fn defines(&self) -> Vec<&'static str> {
        let mut d = vec![];
        if self.affine {
            d.push("AFFINE");
        }
        if self.bias {
            d.push("BIAS");
        }
        if self.kind == NormKind::AddRms {
            d.push("RESIDUAL");
        }
        d
    }
}

/// LayerNorm over the last dim.
/// - `x`: `[.., n]` f32; `gamma`, `beta`: `[n]` f32; returns the shape of `x`.
pub fn layer_norm(enc: &mut Encoder, x: &GpuTensor, gamma: &GpuTensor, beta: &GpuTensor, eps: f32) -> Result<GpuTensor> {
    layer_norm_with(enc, x, gamma, beta, eps, None)
}

/// [`layer_norm`] with a forced kernel: `barrier_free` picks the one-invocation-per-row
/// entry (`None`: on CPU adapters only, where barriers are emulated).
pub fn layer_norm_with(enc: &mut Encoder, x: &GpuTensor, gamma: &GpuTensor, beta: &GpuTensor, eps: f32, barrier_free: Option<bool>) -> Result<GpuTensor> {
    let kind = if barrier_free.unwrap_or(enc.gpu().caps().is_cpu) { NormKind::LayerDirect } else { NormKind::Layer };
    run(enc, kind, x, Some(gamma), Some(beta), eps)
}

/// RMSNorm over the last dim (Llama: `x * rsqrt(mean(x²) + eps) * gamma`).
/// - `x`: `[.., n]` f32; `gamma`: `[n]` f32.
pub fn rms_norm(enc: &mut Encoder, x: &GpuTensor, gamma: &GpuTensor, eps: f32) -> Result<GpuTensor> {
    run(enc, NormKind::Rms, x, Some(gamma), None, eps)
}

/// The pre-norm residual step: `sum = x + r`, `out = rms_norm(sum) * gamma`, one dispatch.
/// - `x`, `r`: `[.., n]` f32 of one shape; `gamma`: `[n]` f32; returns `(sum, out)`.
pub fn add_rms_norm(enc: &mut Encoder, x: &GpuTensor, r: &GpuTensor, gamma: &GpuTensor, eps: f32) -> Result<(GpuTensor, GpuTensor)> {
    const OP: &str = "add_rms_norm";
    r.expect_dtype(OP, "r", &[DType::F32])?;
    if r.shape() != x.shape() {
        return Err(Error::shape(OP, "r", format!("{:?} (the shape of x)", x.shape()), r.shape()));
    }
    let sum = enc.gpu().alloc(x.shape(), DType::F32)?;
    let out = run_with(enc, NormKind::AddRms, x, Some(gamma), None, eps, &[r, &sum])?;
    Ok((sum, out))
}

/// L2 normalisation of each row: `x / max(‖x‖₂, eps)`.
/// - `x`: `[.., n]` f32.
pub fn l2_normalize(enc: &mut Encoder, x: &GpuTensor, eps: f32) -> Result<GpuTensor> {
    run(enc, NormKind::L2, x, None, None, eps)
}

fn run(
    enc: &mut Encoder,
    kind: NormKind,
    x: &GpuTensor,
    gamma: Option<&GpuTensor>,
    beta: Option<&GpuTensor>,
    eps: f32,
) -> Result<GpuTensor> {
    run_with(enc, kind, x, gamma, beta, eps, &[])
}

/// `run` with `extra` tensors bound after gamma/beta (RESIDUAL: r, sum).
fn run_with(
    enc: &mut Encoder,
    kind: NormKind,
    x: &GpuTensor,
    gamma: Option<&GpuTensor>,
    beta: Option<&GpuTensor>,
    eps: f32,
    extra: &[&GpuTensor],
) -> Result<GpuTensor> {
    const OP: &str = "norm";
    x.expect_dtype(OP, "x", &[DType::F32])?;
    if x.rank() == 0 || x.numel() == 0 {
        return Err(Error::shape(OP, "x", "[.., n] with n > 0", x.shape()));
    }
    let n = x.last_dim();
    for (name, t) in [("gamma", gamma), ("beta", beta)] {
        if let Some(t) = t {
            t.expect_dtype(OP, name, &[DType::F32])?;
            if t.shape() != [n] {
                return Err(Error::shape(OP, if name == "gamma" { "gamma" } else { "beta" }, format!("[{n}]"), t.shape()));
            }
        }
    }
    let out = enc.gpu().alloc(x.shape(), DType::F32)?;
    if enc.host() {
        let host = match (kind, gamma, beta, extra) {
            (NormKind::Layer | NormKind::LayerDirect, Some(gamma), Some(beta), _) => crate::cpu::Norm::Layer { gamma, beta },
            (NormKind::Rms, Some(gamma), None, _) => crate::cpu::Norm::Rms { gamma },
            (NormKind::AddRms, Some(gamma), None, &[r, sum]) => crate::cpu::Norm::AddRms { gamma, r, sum },
            (NormKind::L2, None, None, _) => crate::cpu::Norm::L2,
            _ => return Err(Error::Unsupported { op: "norm (this variant)" }),
        };
        crate::cpu::norm(host, x, &out, eps)?;
        return Ok(out);
    }
    let key = KernelKey::Norm(NormKey { kind, affine: gamma.is_some(), bias: beta.is_some() });
    let params = [u(OP, "rows", x.rows())?, u(OP, "n", n)?, f(eps), 0];
    let mut tensors = vec![x, &out];
    tensors.extend(gamma);
    tensors.extend(beta);
    tensors.extend(extra);
    let rows = u(OP, "rows", x.rows())?;
    let groups = if kind == NormKind::LayerDirect { rows.div_ceil(64) } else { rows };
    enc.dispatch(key, &params, &tensors, grid(groups))?;
    Ok(out)
}
