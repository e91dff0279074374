//! Multi-head attention with padding mask, optional causal mask and grouped-query heads,
//! online softmax, see `attention.wgsl`.

use super::{f, u, KernelKey, Variant};
use crate::error::{Error, Result};
use crate::gpu::{grid, DType, Encoder, GpuTensor};

/// Largest head dimension the kernel supports.
pub const MAX_HEAD_DIM: usize = 256;

#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct AttentionKey {
    /// Keys and values from a KV cache whose length is read on the GPU (`CACHE`).
    pub cache: bool,
    /// Which entry point: the one-pass kernel or a split-K decode stage.
    pub stage: AttentionStage,
    /// The cache holds IEEE halves two per word (`KV_F16`; with `cache` only).
    pub kv_f16: bool,
}

/// Entry points of `attention.wgsl`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum AttentionStage {
    /// `attention`: one workgroup per (batch, head, query) walks all keys.
    OnePass,
    /// `attention_direct`: one invocation per (batch, head, query), no barriers (CPU adapters).
    Direct,
    /// `decode_partial`: one workgroup per (head, split of [`DECODE_SPLIT`] keys).
    DecodePartial,
    /// `decode_combine`: merges the splits of each head.
    DecodeCombine,
}

/// Largest head_dim of the barrier-free kernel (`attention_direct`, whose private query and
/// output arrays have this size). With 256-float arrays, lavapipe (Mesa 22.3, llvmpipe)
/// returned wrong rows for head_dim 192 and 256 once a call had more than about 130 queries
/// (normalised MSE 3e-4 to 3e-2 against the CPU reference; head_dim ≤ 130 was exact at 402
/// queries), so Gemma's 256-wide heads take the one-pass kernel on every adapter.
pub const DIRECT_MAX_HEAD_DIM: usize = 128;

/// Keys per workgroup of the split-K decode (`decode_partial`).
pub const DECODE_SPLIT: usize = 32;

impl Variant for AttentionKey {
    const FAMILY: &'static str = "attention";
    const SOURCE: &'static str = include_str!("attention.wgsl");
    fn entry(&self) -> &'static str {
        match self.stage {
            AttentionStage::OnePass => "attention",
            AttentionStage::Direct => "attention_direct",
            AttentionStage::DecodePartial => "decode_partial",
            AttentionStage::DecodeCombine => "decode_combine",
        }
    }
    fn defines(&self) -> Vec<&'static str> {
        let mut d = match (self.stage, self.cache) {
            (AttentionStage::DecodePartial, _) => vec!["DECODE", "DECODE_PARTIAL"],
            (AttentionStage::DecodeCombine, _) => return vec!["DECODE", "DECODE_COMBINE"],
            (_, true) => vec!["CACHE"],
            (_, false) => return vec![],
        };
        if self.kv_f16 {
            d.push("KV_F16");
        }
        d
    }
}

/// Kernel choices for [`attention_with`] / [`attention_cached_with`] that tests and
/// benchmarks force.
#[derive(Clone, Copy, Debug, Default)]
pub struct AttentionOptions {
    /// One invocation per query without barriers or shared memory (`attention_direct`) for
    /// every call but split-K decode. `None`: on CPU adapters only (`Capabilities::is_cpu`).
    pub barrier_free: Option<bool>,
}

impl AttentionOptions {
    /// The barrier-free kernel serves head_dim up to [`DIRECT_MAX_HEAD_DIM`]; larger heads
    /// always take the one-pass kernel.
    fn stage(&self, enc: &Encoder, head_dim: usize) -> AttentionStage {
        if head_dim <= DIRECT_MAX_HEAD_DIM && self.barrier_free.unwrap_or(enc.gpu().caps().is_cpu) {
            AttentionStage::Direct
        } else {
            AttentionStage::OnePass
        }
    }

    /// Workgroups for `n` = batch · heads · q_len queries in the chosen stage.
    fn groups(stage: AttentionStage, n: u32) -> [u32; 3] {
        grid(if stage == AttentionStage::Direct { n.div_ceil(64) } else { n })
    }
}

/// Shape of one attention call.
#[derive(Clone, Copy, Debug)]
pub struct AttentionShape {
    pub heads: usize,
    pub kv_heads: usize,
    pub head_dim: usize,
    /// Query `i` sees keys `j <= kv_len - q_len + i` (decoders).
    pub causal: bool,
    /// Score scale, usually `1 / sqrt(head_dim)`.
    pub scale: f32,
    /// 0: none. Else a sliding window: the query at position `p` (`kv_len - q_len + i`) sees
    /// keys `j` with `|p - j| < window`; two-sided without `causal` (Gemma 3's bidirectional
    /// sliding layers), one-sided with it. Over a KV cache the position is `state[1] + i`.
    pub window: usize,
}

impl AttentionShape {
    /// Heads a positive multiple of kv_heads, head_dim in 1..=[`MAX_HEAD_DIM`].
    fn check(&self, op: &'static str) -> Result<()> {
        if self.heads == 0 || self.kv_heads == 0 || self.heads % self.kv_heads != 0 {
            return Err(Error::param(op, format!("heads {} must be a positive multiple of kv_heads {}", self.heads, self.kv_heads)));
        }
        if self.head_dim == 0 || self.head_dim > MAX_HEAD_DIM {
            return Err(Error::param(op, format!("head_dim {} outside 1..={MAX_HEAD_DIM}", self.head_dim)));
        }
        Ok(())
    }

    /// Encoder self-attention: `heads` heads of `head_dim`, no causal mask.
    pub fn bidirectional(heads: usize, head_dim: usize) -> Self {
        Self { heads, kv_heads: heads, head_dim, causal: false, scale: 1.0 / (head_dim as f32).sqrt(), window: 0 }
    }
}

/// `softmax(q kᵀ · scale + mask) v` per head.
/// - `q`: `[batch, q_len, heads * head_dim]` f32
/// - `k`, `v`: `[batch, kv_len, kv_heads * head_dim]` f32
/// - `mask`: `[batch, kv_len]` u32, 0 marks a padding key
/// - returns `[batch, q_len, heads * head_dim]` f32
pub fn attention(
    enc: &mut Encoder,
    q: &GpuTensor,
    k: &GpuTensor,
    v: &GpuTensor,
    mask: &GpuTensor,
    s: AttentionShape,
) -> Result<GpuTensor> {
    attention_with(enc, q, k, v, mask, s, AttentionOptions::default())
}

/// [`attention`] with forced kernel choices.
pub fn attention_with(
    enc: &mut Encoder,
    q: &GpuTensor,
    k: &GpuTensor,
    v: &GpuTensor,
    mask: &GpuTensor,
    s: AttentionShape,
    opts: AttentionOptions,
) -> Result<GpuTensor> {
    const OP: &str = "attention";
    s.check(OP)?;
    for (name, t) in [("q", q), ("k", k), ("v", v)] {
        t.expect_dtype(OP, name, &[DType::F32])?;
        t.expect_rank(OP, name, 3)?;
    }
    mask.expect_dtype(OP, "mask", &[DType::U32])?;
    let (batch, q_len) = (q.shape()[0], q.shape()[1]);
    let kv_len = k.shape()[1];
    let (qw, kvw) = (s.heads * s.head_dim, s.kv_heads * s.head_dim);
    if q.shape()[2] != qw {
        return Err(Error::shape(OP, "q", format!("[batch, q_len, {qw}]"), q.shape()));
    }
    if k.shape() != [batch, kv_len, kvw] {
        return Err(Error::shape(OP, "k", format!("[{batch}, kv_len, {kvw}]"), k.shape()));
    }
    if v.shape() != k.shape() {
        return Err(Error::shape(OP, "v", format!("{:?}", k.shape()), v.shape()));
    }
    if mask.shape() != [batch, kv_len] {
        return Err(Error::shape(OP, "mask", format!("[{batch}, {kv_len}]"), mask.shape()));
    }
    if s.causal && q_len > kv_len {
        return Err(Error::param(OP, format!("causal attention needs q_len {q_len} <= kv_len {kv_len}")));
    }
    let out = enc.gpu().alloc(q.shape(), DType::F32)?;
    if enc.host() {
        crate::cpu::attention(q, k, v, mask, &out, s)?;
        return Ok(out);
    }
    let params = [
        u(OP, "batch", batch)?,
        u(OP, "q_len", q_len)?,
        u(OP, "kv_len", kv_len)?,
        u(OP, "heads", s.heads)?,
        u(OP, "kv_heads", s.kv_heads)?,
        u(OP, "head_dim", s.head_dim)?,
        u(OP, "q_stride", qw)?,
        u(OP, "kv_stride", kvw)?,
        f(s.scale),
        s.causal as u32,
        u(OP, "window", s.window)?,
        0,
    ];
    let groups = u(OP, "batch * heads * q_len", batch * s.heads * q_len)?;
    let stage = opts.stage(enc, s.head_dim);
    enc.dispatch(KernelKey::Attention(AttentionKey { cache: false, stage, kv_f16: false }), &params, &[q, k, v, mask, &out], AttentionOptions::groups(stage, groups))?;
    Ok(out)
}

/// Causal attention of `q_len` new queries over a KV cache (batch 1): the cache holds
/// `state[1]` earlier tokens followed by the `q_len` just appended (`rope_append`), and
/// query `i` sees keys `0 ..= state[1] + i`. One call serves prefill (`q_len` = prompt)
/// and decode (`q_len` = 1); the key count is read on the GPU. Decode (head_dim % 4 == 0) runs split-K: a
/// partial pass over splits of [`DECODE_SPLIT`] keys (as many as the cache has rows for,
/// so a recorded step replays at any length) and a combine pass per head.
/// - `q`: `[q_len, heads * head_dim]` f32
/// - `k_cache`, `v_cache`: `[cache_rows, kv_heads * head_dim]` f32, or both f16 (IEEE
///   halves two per word, read with `unpack2x16float`: no `shader-f16` needed)
/// - `state`: `[4]` u32
/// - returns `[q_len, heads * head_dim]` f32
pub fn attention_cached(
    enc: &mut Encoder,
    q: &GpuTensor,
    k_cache: &GpuTensor,
    v_cache: &GpuTensor,
    state: &GpuTensor,
    s: AttentionShape,
) -> Result<GpuTensor> {
    attention_cached_with(enc, q, k_cache, v_cache, state, s, AttentionOptions::default())
}

/// [`attention_cached`] with forced kernel choices.
pub fn attention_cached_with(
    enc: &mut Encoder,
    q: &GpuTensor,
    k_cache: &GpuTensor,
    v_cache: &GpuTensor,
    state: &GpuTensor,
    s: AttentionShape,
    opts: AttentionOptions,
) -> Result<GpuTensor> {
    const OP: &str = "attention_cached";
    s.check(OP)?;
    q.expect_dtype(OP, "q", &[DType::F32])?;
    q.expect_rank(OP, "q", 2)?;
    let kv_f16 = super::rope::check_cache(OP, k_cache, v_cache)?;
    state.expect_dtype(OP, "state", &[DType::U32])?;
    if state.numel() < 4 {
        return Err(Error::shape(OP, "state", "[4]", state.shape()));
    }
    let (qw, kvw) = (s.heads * s.head_dim, s.kv_heads * s.head_dim);
    let q_len = q.shape()[0];
    if q.shape()[1] != qw {
        return Err(Error::shape(OP, "q", format!("[q_len, {qw}]"), q.shape()));
    }
    let cache_rows = k_cache.shape()[0];
    if k_cache.shape()[1] != kvw || v_cache.shape() != k_cache.shape() {
        return Err(Error::shape(OP, "k_cache", format!("[cache_rows, {kvw}]"), k_cache.shape()));
    }
    if q_len > cache_rows {
        return Err(Error::param(OP, format!("{q_len} queries exceed the cache of {cache_rows} rows")));
    }
    let out = enc.gpu().alloc(q.shape(), DType::F32)?;
    let n_splits = cache_rows.div_ceil(DECODE_SPLIT);
    // The split kernels read vec4 rows; other head sizes take the one-pass kernel.
    let decode = q_len == 1 && s.head_dim % 4 == 0;
    let params = [
        1,
        u(OP, "q_len", q_len)?,
        u(OP, "cache_rows", cache_rows)?,
        u(OP, "heads", s.heads)?,
        u(OP, "kv_heads", s.kv_heads)?,
        u(OP, "head_dim", s.head_dim)?,
        u(OP, "q_stride", qw)?,
        u(OP, "kv_stride", kvw)?,
        f(s.scale),
        1,
        u(OP, "window", s.window)?,
        if decode { u(OP, "n_splits", n_splits)? } else { 0 },
    ];
    if decode {
        // Accumulators [heads, n_splits, head_dim], then (m, l) [heads, n_splits, 2].
        let part = enc.gpu().alloc(&[s.heads * n_splits * (s.head_dim + 2)], DType::F32)?;
        let key = |stage| KernelKey::Attention(AttentionKey { cache: true, stage, kv_f16: kv_f16 && stage == AttentionStage::DecodePartial });
        let groups = u(OP, "heads * n_splits", s.heads * n_splits)?;
        enc.dispatch(key(AttentionStage::DecodePartial), &params, &[q, k_cache, v_cache, state, &part], grid(groups))?;
        enc.dispatch(key(AttentionStage::DecodeCombine), &params, &[&part, &part, state, &out], grid(params[3]))?;
        return Ok(out);
    }
    let groups = u(OP, "heads * q_len", s.heads * q_len)?;
    let stage = opts.stage(enc, s.head_dim);
    enc.dispatch(KernelKey::Attention(AttentionKey { cache: true, stage, kv_f16 }), &params, &[q, k_cache, v_cache, state, &out], AttentionOptions::groups(stage, groups))?;
    Ok(out)
}
