//! LayerNorm, RMSNorm and L2 normalisation over the last dimension, see `norm.wgsl`.

use super::{f, u, KernelKey, Variant};
use crate::error::{Error, Result};
use crate::gpu::{grid, DType, Encoder, GpuTensor};

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum NormKind {
    Layer,
    Rms,
    L2,
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
            NormKind::Rms => "rms_norm",
            NormKind::L2 => "l2_norm",
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
        d
    }
}

/// LayerNorm over the last dim.
/// - `x`: `[.., n]` f32; `gamma`, `beta`: `[n]` f32; returns the shape of `x`.
pub fn layer_norm(enc: &mut Encoder, x: &GpuTensor, gamma: &GpuTensor, beta: &GpuTensor, eps: f32) -> Result<GpuTensor> {
    run(enc, NormKind::Layer, x, Some(gamma), Some(beta), eps)
}

/// RMSNorm over the last dim (Llama: `x * rsqrt(mean(x²) + eps) * gamma`).
/// - `x`: `[.., n]` f32; `gamma`: `[n]` f32.
pub fn rms_norm(enc: &mut Encoder, x: &GpuTensor, gamma: &GpuTensor, eps: f32) -> Result<GpuTensor> {
    run(enc, NormKind::Rms, x, Some(gamma), None, eps)
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
    let key = KernelKey::Norm(NormKey { kind, affine: gamma.is_some(), bias: beta.is_some() });
    let params = [u(OP, "rows", x.rows())?, u(OP, "n", n)?, f(eps), 0];
    let mut tensors = vec![x, &out];
    tensors.extend(gamma);
    tensors.extend(beta);
    enc.dispatch(key, &params, &tensors, grid(u(OP, "rows", x.rows())?))?;
    Ok(out)
}
