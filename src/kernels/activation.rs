//! GELU (erf form), SiLU, tanh, the residual add, SwiGLU and GeGLU (tanh GELU), see
//! `activation.wgsl`.

use super::{u, KernelKey, Variant};
use crate::error::{Error, Result};
use crate::gpu::{grid, DType, Encoder, GpuTensor};

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ActivationKey {
    Gelu,
    Silu,
    Tanh,
    Add,
    SwiGlu,
    GegluTanh,
    Scale,
    /// `swiglu` over a packed `[gate | up]` product.
    SwiGluPacked,
    /// `geglu_tanh` over a packed `[gate | up]` product.
    GegluTanhPacked,
}

impl Variant for ActivationKey {
    const FAMILY: &'static str = "activation";
    const SOURCE: &'static str = include_str!("activation.wgsl");
    fn entry(&self) -> &'static str {
        match self {
            ActivationKey::Gelu => "gelu",
            ActivationKey::Silu => "silu",
            ActivationKey::Tanh => "tanh_",
            ActivationKey::Add => "add",
            ActivationKey::SwiGlu => "swiglu",
            ActivationKey::GegluTanh => "geglu_tanh",
            ActivationKey::Scale => "scale",
            ActivationKey::SwiGluPacked => "swiglu_packed",
            ActivationKey::GegluTanhPacked => "geglu_tanh_packed",
        }
    }
    fn defines(&self) -> Vec<&'static str> {
        if matches!(self, ActivationKey::Add | ActivationKey::SwiGlu | ActivationKey::GegluTanh) { vec!["BINARY"] } else { vec![] }
    }
}

/// GELU, erf form. `x`: any shape, f32.
pub fn gelu(enc: &mut Encoder, x: &GpuTensor) -> Result<GpuTensor> {
    run(enc, ActivationKey::Gelu, x, None)
}

/// SiLU (`x · sigmoid(x)`). `x`: any shape, f32.
pub fn silu(enc: &mut Encoder, x: &GpuTensor) -> Result<GpuTensor> {
    run(enc, ActivationKey::Silu, x, None)
}

/// tanh. `x`: any shape, f32.
pub fn tanh(enc: &mut Encoder, x: &GpuTensor) -> Result<GpuTensor> {
    run(enc, ActivationKey::Tanh, x, None)
}

/// Residual add `a + b`; `a` and `b` have the same shape, f32.
pub fn add(enc: &mut Encoder, a: &GpuTensor, b: &GpuTensor) -> Result<GpuTensor> {
    if a.shape() != b.shape() {
        return Err(Error::shape("add", "b", format!("{:?}", a.shape()), b.shape()));
    }
    run(enc, ActivationKey::Add, a, Some(b))
}

/// SwiGLU: `silu(gate) * up` (Llama MLP); same shapes, f32.
pub fn swiglu(enc: &mut Encoder, gate: &GpuTensor, up: &GpuTensor) -> Result<GpuTensor> {
    if gate.shape() != up.shape() {
        return Err(Error::shape("swiglu", "up", format!("{:?}", gate.shape()), up.shape()));
    }
    run(enc, ActivationKey::SwiGlu, gate, Some(up))
}

/// GeGLU with the tanh GELU (`gelu_pytorch_tanh`, Gemma's MLP): `gelu_tanh(gate) * up`,
/// `gelu_tanh(x) = 0.5 x (1 + tanh(sqrt(2/pi) (x + 0.044715 x³)))`; same shapes, f32.
pub fn geglu_tanh(enc: &mut Encoder, gate: &GpuTensor, up: &GpuTensor) -> Result<GpuTensor> {
    if gate.shape() != up.shape() {
        return Err(Error::shape("geglu_tanh", "up", format!("{:?}", gate.shape()), up.shape()));
    }
    run(enc, ActivationKey::GegluTanh, gate, Some(up))
}

/// The gated activation of a packed gate/up product (one matrix of `[gate; up]` rows, see
/// `quant::Fusion`): `a` `[.., 2h]` f32 → `act(a[.., ..h]) · a[.., h..]` `[.., h]`.
pub fn glu_packed(enc: &mut Encoder, a: &GpuTensor, act: super::quant::GluAct) -> Result<GpuTensor> {
    let key = match act {
        super::quant::GluAct::Silu => ActivationKey::SwiGluPacked,
        super::quant::GluAct::GeluTanh => ActivationKey::GegluTanhPacked,
    };
    let op = key.entry();
    a.expect_dtype(op, "a", &[DType::F32])?;
    let two_h = a.last_dim();
    if a.rank() == 0 || a.numel() == 0 || two_h % 2 != 0 {
        return Err(Error::shape(op, "a", "[.., 2h], non-empty", a.shape()));
    }
    let mut shape = a.shape().to_vec();
    *shape.last_mut().expect("rank checked") = two_h / 2;
    let out = enc.gpu().alloc(&shape, DType::F32)?;
    if enc.host() {
        crate::cpu::glu_packed(key, a, &out)?;
        return Ok(out);
    }
    let n = u(op, "n", out.numel())?;
    enc.dispatch(KernelKey::Activation(key), &[n, 0, u(op, "h", two_h / 2)?, 0], &[a, &out], grid(n.div_ceil(256)))?;
    Ok(out)
}

/// `x · s` with `s` an f32 scalar (Gemma's scaled embeddings). `x`: any shape, f32.
pub fn scale(enc: &mut Encoder, x: &GpuTensor, s: f32) -> Result<GpuTensor> {
    run_with(enc, ActivationKey::Scale, x, None, s.to_bits())
}

fn run(enc: &mut Encoder, key: ActivationKey, a: &GpuTensor, b: Option<&GpuTensor>) -> Result<GpuTensor> {
    run_with(enc, key, a, b, 0)
}

fn run_with(enc: &mut Encoder, key: ActivationKey, a: &GpuTensor, b: Option<&GpuTensor>, arg: u32) -> Result<GpuTensor> {
    let op = key.entry();
    a.expect_dtype(op, "a", &[DType::F32])?;
    if let Some(b) = b {
        b.expect_dtype(op, "b", &[DType::F32])?;
    }
    if a.numel() == 0 {
        return Err(Error::shape(op, "a", "a non-empty tensor", a.shape()));
    }
    let out = enc.gpu().alloc(a.shape(), DType::F32)?;
    let n = u(op, "n", a.numel())?;
    if enc.host() {
        if b.is_some_and(|b| b.numel() != a.numel()) {
            return Err(Error::shape(op, "b", format!("{:?}", a.shape()), b.map_or(&[][..], |b| b.shape())));
        }
        crate::cpu::elementwise(key, arg, a, b, &out)?;
        return Ok(out);
    }
    let mut tensors = vec![a, &out];
    tensors.extend(b);
    enc.dispatch(KernelKey::Activation(key), &[n, arg, 0, 0], &tensors, grid(n.div_ceil(256)))?;
    Ok(out)
}
