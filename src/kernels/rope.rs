//! Rotary position embeddings (HF `rotate_half` form) and the fused RoPE + KV-cache append
//! of a decoder layer, see `rope.wgsl`.
//!
//! Positions come from a GPU `state` buffer (`[4]` u32, `state[1]` = tokens already in the
//! cache), so a recorded decode step needs no new parameters per token.

use super::{u, KernelKey, Variant};
use crate::error::{Error, Result};
use crate::gpu::{grid, DType, Encoder, GpuTensor};

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum RopeKey {
    /// `rope`: rotate in place.
    Rotate,
    /// `rope_append`: q in place, k and v into the cache (`KV_F16`: an f16 cache); `packed`:
    /// q, k and v are parts of one product, the rotated q goes to its own tensor (`PACKED`).
    Append { kv_f16: bool, packed: bool },
    /// `kv_shift`: cache rows out, keys rotated back (`KV_F16`: an f16 cache).
    Shift { kv_f16: bool },
}

impl Variant for RopeKey {
    const FAMILY: &'static str = "rope";
    const SOURCE: &'static str = include_str!("rope.wgsl");
    fn entry(&self) -> &'static str {
        match self {
            Self::Rotate => "rope",
            Self::Append { .. } => "rope_append",
            Self::Shift { .. } => "kv_shift",
        }
    }
    fn defines(&self) -> Vec<&'static str> {
        match self {
            Self::Rotate => vec![],
            Self::Append { kv_f16, packed } => {
                let mut d = vec!["APPEND"];
                if *kv_f16 {
                    d.push("KV_F16");
                }
                if *packed {
                    d.push("PACKED");
                }
                d
            }
            Self::Shift { kv_f16 } => if *kv_f16 { vec!["SHIFT", "KV_F16"] } else { vec!["SHIFT"] },
        }
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

/// Checks a KV-cache pair: rank 2, both F32 or both F16. Returns whether it is F16.
pub(crate) fn check_cache(op: &'static str, k_cache: &GpuTensor, v_cache: &GpuTensor) -> Result<bool> {
    k_cache.expect_dtype(op, "k_cache", &[DType::F32, DType::F16])?;
    v_cache.expect_dtype(op, "v_cache", &[k_cache.dtype()])?;
    k_cache.expect_rank(op, "k_cache", 2)?;
    v_cache.expect_rank(op, "v_cache", 2)?;
    Ok(k_cache.dtype() == DType::F16)
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
    if enc.host() {
        return crate::cpu::rope(x, inv_freq, state, heads, head_dim, seq);
    }
    let params = [u(OP, "rows", rows)?, u(OP, "heads", heads)?, 0, u(OP, "head_dim", head_dim)?, 0, u(OP, "seq", seq)?, 0, 0];
    let n = u(OP, "threads", rows * heads * head_dim / 2)?;
    enc.dispatch(KernelKey::Rope(RopeKey::Rotate), &params, &[x, inv_freq, state], grid(n.div_ceil(256)))
}

/// Rotates `q` in place and appends the rotated `k` and `v` to the cache at rows
/// `state[1] .. state[1] + rows` (rows past the cache are dropped; the caller sizes it).
/// - `q`: `[rows, heads * head_dim]` f32
/// - `k`, `v`: `[rows, kv_heads * head_dim]` f32
/// - `k_cache`, `v_cache`: `[cache_rows, kv_heads * head_dim]` f32, or both f16 (IEEE
///   halves two per word, written with `pack2x16float`: no `shader-f16` needed)
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
    for (name, t) in [("q", q), ("k", k), ("v", v)] {
        t.expect_dtype(OP, name, &[DType::F32])?;
        t.expect_rank(OP, name, 2)?;
    }
    let kv_f16 = check_cache(OP, k_cache, v_cache)?;
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
        KernelKey::Rope(RopeKey::Append { kv_f16, packed: false }),
        &params,
        &[q, k, v, inv_freq, state, k_cache, v_cache],
        grid(n.div_ceil(256)),
    )
}

/// [`rope_append`] over a packed q/k/v product: `qkv` `[rows, (heads + 2 kv_heads) ·
/// head_dim]` f32 (each row q | k | v, as a packed projection writes it); the rotated keys
/// and the values go into the cache at rows `state[1] ..`, and the rotated q is returned
/// `[rows, heads · head_dim]` f32.
#[allow(clippy::too_many_arguments)]
pub fn rope_append_packed(
    enc: &mut Encoder,
    qkv: &GpuTensor,
    inv_freq: &GpuTensor,
    state: &GpuTensor,
    k_cache: &GpuTensor,
    v_cache: &GpuTensor,
    heads: usize,
    kv_heads: usize,
    head_dim: usize,
) -> Result<GpuTensor> {
    const OP: &str = "rope_append_packed";
    check_common(OP, inv_freq, state, head_dim)?;
    qkv.expect_dtype(OP, "qkv", &[DType::F32])?;
    qkv.expect_rank(OP, "qkv", 2)?;
    let kv_f16 = check_cache(OP, k_cache, v_cache)?;
    let (rows, width) = (qkv.shape()[0], qkv.shape()[1]);
    let (qw, kvw) = (heads * head_dim, kv_heads * head_dim);
    if width != qw + 2 * kvw || rows == 0 {
        return Err(Error::shape(OP, "qkv", format!("[rows, {}]", qw + 2 * kvw), qkv.shape()));
    }
    let cache_rows = k_cache.shape()[0];
    if k_cache.shape() != [cache_rows, kvw] || v_cache.shape() != k_cache.shape() {
        return Err(Error::shape(OP, "k_cache", format!("[cache_rows, {kvw}]"), k_cache.shape()));
    }
    let q = enc.gpu().alloc(&[rows, qw], DType::F32)?;
    let params = [
        u(OP, "rows", rows)?,
        u(OP, "heads", heads)?,
        u(OP, "kv_heads", kv_heads)?,
        u(OP, "head_dim", head_dim)?,
        u(OP, "cache_rows", cache_rows)?,
        u(OP, "width", width)?,
        0,
        0,
    ];
    let n = u(OP, "threads", rows * (heads + kv_heads) * head_dim / 2)?;
    enc.dispatch(
        KernelKey::Rope(RopeKey::Append { kv_f16, packed: true }),
        &params,
        &[&q, qkv, inv_freq, state, k_cache, v_cache],
        grid(n.div_ceil(256)),
    )?;
    Ok(q)
}

/// Drops cache rows `[keep, keep + drop)` of one layer (a context shift, as StreamingLLM keeps
/// its attention sinks): rows `[keep + drop, used)` move down by `drop`, their keys rotated
/// back by `drop` positions, so the cache's first `used - drop` rows hold the kept tokens in
/// order at the positions they now occupy (a key rotated for position p, then by −drop, is
/// the key of position p − drop; values do not depend on the position). The caller sets
/// `state[1]` to `used - drop`.
/// - `k_cache`, `v_cache`: `[cache_rows, kv_heads * head_dim]` f32 or both f16, `used <= cache_rows`
/// - `inv_freq`: `[head_dim / 2]` f32
#[allow(clippy::too_many_arguments)]
pub fn kv_shift(
    enc: &mut Encoder,
    k_cache: &GpuTensor,
    v_cache: &GpuTensor,
    inv_freq: &GpuTensor,
    kv_heads: usize,
    head_dim: usize,
    keep: usize,
    drop: usize,
    used: usize,
) -> Result<()> {
    const OP: &str = "kv_shift";
    if head_dim == 0 || head_dim % 2 != 0 {
        return Err(Error::param(OP, format!("head_dim {head_dim} must be even and positive")));
    }
    inv_freq.expect_dtype(OP, "inv_freq", &[DType::F32])?;
    if inv_freq.shape() != [head_dim / 2] {
        return Err(Error::shape(OP, "inv_freq", format!("[{}]", head_dim / 2), inv_freq.shape()));
    }
    let kvw = kv_heads * head_dim;
    let kv_f16 = check_cache(OP, k_cache, v_cache)?;
    let cache_rows = k_cache.shape()[0];
    if k_cache.shape() != [cache_rows, kvw] || v_cache.shape() != k_cache.shape() {
        return Err(Error::shape(OP, "k_cache", format!("[cache_rows, {kvw}]"), k_cache.shape()));
    }
    if drop == 0 || keep + drop > used || used > cache_rows {
        return Err(Error::param(OP, format!("dropping rows {keep}..{} of {used} used ({cache_rows} in the cache)", keep + drop)));
    }
    let rows = used - keep - drop;
    if rows == 0 {
        return Ok(());
    }
    let gpu = enc.gpu();
    let dtype = k_cache.dtype();
    let (k_out, v_out) = (gpu.alloc(&[rows, kvw], dtype)?, gpu.alloc(&[rows, kvw], dtype)?);
    let params = [u(OP, "rows", rows)?, 0, u(OP, "kv_heads", kv_heads)?, u(OP, "head_dim", head_dim)?, 0, 0, u(OP, "from", keep + drop)?, u(OP, "delta", drop)?];
    let n = u(OP, "threads", rows * kvw / 2)?;
    enc.dispatch(KernelKey::Rope(RopeKey::Shift { kv_f16 }), &params, &[k_cache, v_cache, inv_freq, &k_out, &v_out], grid(n.div_ceil(256)))?;
    enc.copy_slice(&k_out, 0, k_cache, keep * kvw, rows * kvw)?;
    enc.copy_slice(&v_out, 0, v_cache, keep * kvw, rows * kvw)
}
