//! Rotary position embeddings (HF `rotate_half` form) and the fused RoPE + KV-cache append
//! of a decoder layer, see `rope.wgsl`.
//!
//! Positions come from a GPU `state` buffer (`[4]` u32, `state[1]` = tokens already in the
//! cache), so a recorded decode step needs no new parameters per token.

use super::{u, KernelKey, Variant};
use crate::error::{Error, Result};
use crate::gpu::{grid, DType, Encoder, GpuTensor};

#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct RopeKey {
    /// `rope_append` (q in place, k and v into the cache) instead of `rope`.
    pub append: bool,
}

impl Variant for RopeKey {
    const FAMILY: &'static str = "rope";
    const SOURCE: &'static str = include_str!("rope.wgsl");
    fn entry(&self) -> &'static str {
        if self.append { "rope_append" } else { "rope" }
    }
    fn defines(&self) -> Vec<&'static str> {
        if self.append { vec!["APPEND"] } else { vec![] }
    }
}

fn check_common(op: &'static str, inv_freq: &GpuTensor, state: &GpuTensor, head_dim: usize) -> Result<()> {
    if head_dim == 0 || head_dim % 2 != 0 {
        return Err(Error::param(op, format!("head_dim {head_dim} must be even and positive")));
    }
    inv_freq.expect_dtype(op, "inv_freq", &[DType::F32])?;
    if inv_freq.shape() != [head_dim / 2] {
        return Err(Error::shape(op, "inv_freq", format!("[{}]", head_dim / 2), inv_freq.shape()));
    }
    state.expect_dtype(op, "state", &[DType::U32])?;
    if state.numel() < 4 {
        return Err(Error::shape(op, "state", "[4]", state.shape()));
    }
    Ok(())
}

/// Rotates `x` in place; row `r` is at position `state[1] + r`.
/// - `x`: `[rows, heads * head_dim]` f32
/// - `inv_freq`: `[head_dim / 2]` f32
/// - `state`: `[4]` u32
pub fn rope(enc: &mut Encoder, x: &GpuTensor, inv_freq: &GpuTensor, state: &GpuTensor, heads: usize, head_dim: usize) -> Result<()> {
    rope_batched(enc, x, inv_freq, state, heads, head_dim, 0)
}

/// [`rope`] over `batch` right-padded sequences of `seq` rows each (an encoder's input):
/// row `r` is at position `state[1] + r % seq`. `seq` 0 means one sequence.
/// - `x`: `[batch * seq, heads * head_dim]` f32
pub fn rope_batched(enc: &mut Encoder, x: &GpuTensor, inv_freq: &GpuTensor, state: &GpuTensor, heads: usize, head_dim: usize, seq: usize) -> Result<()> {
    const OP: &str = "rope";
    check_common(OP, inv_freq, state, head_dim)?;
    x.expect_dtype(OP, "x", &[DType::F32])?;
    if x.rank() != 2 || x.shape()[1] != heads * head_dim || x.numel() == 0 {
        return Err(Error::shape(OP, "x", format!("[rows, {}]", heads * head_dim), x.shape()));
    }
    let rows = x.shape()[0];
    if seq != 0 && rows % seq != 0 {
        return Err(Error::param(OP, format!("{rows} rows are not whole sequences of {seq}")));
    }
    let params = [u(OP, "rows", rows)?, u(OP, "heads", heads)?, 0, u(OP, "head_dim", head_dim)?, 0, u(OP, "seq", seq)?, 0, 0];
    let n = u(OP, "threads", rows * heads * head_dim / 2)?;
    enc.dispatch(KernelKey::Rope(RopeKey { append: false }), &params, &[x, inv_freq, state], grid(n.div_ceil(256)))
}

/// Rotates `q` in place and appends the rotated `k` and `v` to the cache at rows
/// `state[1] .. state[1] + rows` (rows past the cache are dropped; the caller sizes it).
/// - `q`: `[rows, heads * head_dim]` f32
/// - `k`, `v`: `[rows, kv_heads * head_dim]` f32
/// - `k_cache`, `v_cache`: `[cache_rows, kv_heads * head_dim]` f32
#[allow(clippy::too_many_arguments)]
pub fn rope_append(
    enc: &mut Encoder,
    q: &GpuTensor,
    k: &GpuTensor,
    v: &GpuTensor,
    inv_freq: &GpuTensor,
    state: &GpuTensor,
    k_cache: &GpuTensor,
    v_cache: &GpuTensor,
    heads: usize,
    kv_heads: usize,
    head_dim: usize,
) -> Result<()> {
    const OP: &str = "rope_append";
    check_common(OP, inv_freq, state, head_dim)?;
    for (name, t) in [("q", q), ("k", k), ("v", v), ("k_cache", k_cache), ("v_cache", v_cache)] {
        t.expect_dtype(OP, name, &[DType::F32])?;
        t.expect_rank(OP, name, 2)?;
    }
    let rows = q.shape()[0];
    let kvw = kv_heads * head_dim;
    if q.shape() != [rows, heads * head_dim] {
        return Err(Error::shape(OP, "q", format!("[rows, {}]", heads * head_dim), q.shape()));
    }
    if k.shape() != [rows, kvw] || v.shape() != k.shape() {
        return Err(Error::shape(OP, "k", format!("[{rows}, {kvw}]"), k.shape()));
    }
    let cache_rows = k_cache.shape()[0];
    if k_cache.shape() != [cache_rows, kvw] || v_cache.shape() != k_cache.shape() {
        return Err(Error::shape(OP, "k_cache", format!("[cache_rows, {kvw}]"), k_cache.shape()));
    }
    let params = [
        u(OP, "rows", rows)?,
        u(OP, "heads", heads)?,
        u(OP, "kv_heads", kv_heads)?,
        u(OP, "head_dim", head_dim)?,
        u(OP, "cache_rows", cache_rows)?,
        0,
        0,
        0,
    ];
    let n = u(OP, "threads", rows * (heads + kv_heads) * head_dim / 2)?;
    enc.dispatch(
        KernelKey::Rope(RopeKey { append: true }),
        &params,
        &[q, k, v, inv_freq, state, k_cache, v_cache],
        grid(n.div_ceil(256)),
    )
}
