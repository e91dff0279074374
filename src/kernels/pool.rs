//! Mean, CLS and last-token pooling over the sequence under an attention mask, see
//! `pool.wgsl`.

use super::{u, KernelKey, Variant};
use crate::error::{Error, Result};
use crate::gpu::{grid, DType, Encoder, GpuTensor};

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum PoolKey {
    Mean,
    Cls,
    /// The last unmasked token of each row.
    Last,
}

impl Variant for PoolKey {
    const FAMILY: &'static str = "pool";
    const SOURCE: &'static str = include_str!("pool.wgsl");
    fn entry(&self) -> &'static str {
        match self {
            PoolKey::Mean => "mean_pool",
            PoolKey::Cls => "cls_pool",
            PoolKey::Last => "last_pool",
        }
    }
    fn defines(&self) -> Vec<&'static str> {
        if *self == PoolKey::Cls { vec![] } else { vec!["MASK"] }
    }
}

/// Mean of `x` over unmasked tokens: `x` `[batch, seq, dim]` f32, `mask` `[batch, seq]`
/// u32 (0 = padding); returns `[batch, dim]` f32. A row with no tokens gives zeros.
pub fn mean_pool(enc: &mut Encoder, x: &GpuTensor, mask: &GpuTensor) -> Result<GpuTensor> {
    run(enc, PoolKey::Mean, x, Some(mask))
}

/// The first token of each sequence: `x` `[batch, seq, dim]` → `[batch, dim]`.
pub fn cls_pool(enc: &mut Encoder, x: &GpuTensor) -> Result<GpuTensor> {
    run(enc, PoolKey::Cls, x, None)
}

/// The last unmasked token of each sequence (decoder embedders' last-token pooling over
/// right-padded rows): `x` `[batch, seq, dim]` f32, `mask` `[batch, seq]` u32 (0 = padding);
/// returns `[batch, dim]` f32. A row with no tokens gives zeros.
pub fn last_pool(enc: &mut Encoder, x: &GpuTensor, mask: &GpuTensor) -> Result<GpuTensor> {
    run(enc, PoolKey::Last, x, Some(mask))
}

fn run(enc: &mut Encoder, key: PoolKey, x: &GpuTensor, mask: Option<&GpuTensor>) -> Result<GpuTensor> {
    let op = key.entry();
    x.expect_dtype(op, "x", &[DType::F32])?;
    x.expect_rank(op, "x", 3)?;
    let (batch, seq, dim) = (x.shape()[0], x.shape()[1], x.shape()[2]);
    if let Some(mask) = mask {
        mask.expect_dtype(op, "mask", &[DType::U32])?;
        if mask.shape() != [batch, seq] {
            return Err(Error::shape(op, "mask", format!("[{batch}, {seq}]"), mask.shape()));
        }
    }
    let out = enc.gpu().alloc(&[batch, dim], DType::F32)?;
    if enc.host() {
        crate::cpu::pool(x, mask, key == PoolKey::Last, &out)?;
        return Ok(out);
    }
    let params = [u(op, "batch", batch)?, u(op, "seq", seq)?, u(op, "dim", dim)?, 0];
    let mut tensors = vec![x, &out];
    tensors.extend(mask);
    let n = u(op, "batch * dim", batch * dim)?;
    enc.dispatch(KernelKey::Pool(key), &params, &tensors, grid(n.div_ceil(256)))?;
    Ok(out)
}
