//! Vector-search kernels: sign-bit codes, Hamming similarity, int8 codes, f16 packing,
//! full scans and candidate rescoring (f32, f16 or int8 rows) and two top-k algorithms
//! (block-wise for GPUs, thread-local for CPU adapters), see `search.wgsl`.

use super::{u, KernelKey, Variant};
use crate::error::{Error, Result};
use crate::gpu::{grid, DType, Encoder, GpuTensor};

/// Largest k of one top-k.
pub const MAX_K: usize = 256;
/// Largest k of the thread-local top-k (its private list). With 256-entry private lists,
/// lavapipe returned wrong results for k = 200; larger k uses the block-wise top-k.
pub const MAX_LOCAL_K: usize = 32;
/// Elements per top-k workgroup.
const BLOCK: usize = 1024;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum SearchKey {
    Binarize,
    Hamming,
    QuantizeI8,
    ToF16,
    /// Thread-per-row scan of f32 (`vec4` when d % 4 == 0) or f16 rows.
    Score { f16: bool, vec4: bool },
    Rescore(Rows),
    /// `ids`: candidates carry their own ids (later top-k passes, rescored candidates).
    TopK { ids: bool },
    /// The barrier-free thread-per-segment top-k.
    TopKLocal { ids: bool },
}

/// How the rows of a rescored tensor are stored.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Rows {
    F32,
    F16,
    /// Packed int8 codes with a per-row scale (`quantize_i8`).
    I8,
}

impl Variant for SearchKey {
    const FAMILY: &'static str = "search";
    const SOURCE: &'static str = include_str!("search.wgsl");
    fn entry(&self) -> &'static str {
        match self {
            SearchKey::Binarize => "binarize",
            SearchKey::Hamming => "hamming",
            SearchKey::QuantizeI8 => "quantize_i8",
            SearchKey::ToF16 => "to_f16",
            SearchKey::Score { .. } => "score",
            SearchKey::Rescore(_) => "rescore",
            SearchKey::TopK { .. } => "topk",
            SearchKey::TopKLocal { .. } => "topk_local",
        }
    }
    fn defines(&self) -> Vec<&'static str> {
        match self {
            SearchKey::Binarize => vec!["BINARIZE"],
            SearchKey::Hamming => vec!["HAMMING"],
            SearchKey::QuantizeI8 => vec!["QUANTIZE_I8"],
            SearchKey::ToF16 => vec!["TO_F16"],
            SearchKey::Score { f16: true, .. } => vec!["SCORE", "F16"],
            SearchKey::Score { f16: false, vec4 } => if *vec4 { vec!["SCORE", "VEC4"] } else { vec!["SCORE"] },
            SearchKey::Rescore(Rows::F32) => vec!["RESCORE"],
            SearchKey::Rescore(Rows::F16) => vec!["RESCORE", "F16"],
            SearchKey::Rescore(Rows::I8) => vec!["RESCORE", "I8"],
            SearchKey::TopK { ids: false } => vec!["TOPK_ANY"],
            SearchKey::TopK { ids: true } => vec!["TOPK_ANY", "IDS"],
            SearchKey::TopKLocal { ids: false } => vec!["TOPK_ANY", "TOPK_LOCAL"],
            SearchKey::TopKLocal { ids: true } => vec!["TOPK_ANY", "TOPK_LOCAL", "IDS"],
        }
    }
}

/// Words per sign-bit code of a `d`-wide vector.
pub fn code_words(d: usize) -> usize {
    d.div_ceil(32)
}

/// Sign bits of each row: `x` `[n, d]` f32 → `[n, ceil(d/32)]` u32.
pub fn binarize(enc: &mut Encoder, x: &GpuTensor) -> Result<GpuTensor> {
    const OP: &str = "binarize";
    x.expect_dtype(OP, "x", &[DType::F32])?;
    x.expect_rank(OP, "x", 2)?;
    let (n, d) = (x.shape()[0], x.shape()[1]);
    let w = code_words(d);
    let out = enc.gpu().alloc(&[n, w], DType::U32)?;
    if enc.host() {
        crate::cpu::binarize(x, &out)?;
        return Ok(out);
    }
    let params = [u(OP, "n", n)?, u(OP, "d", d)?, u(OP, "words", w)?, 0];
    enc.dispatch(KernelKey::Search(SearchKey::Binarize), &params, &[x, &out], grid(u(OP, "n·W", n * w)?.div_ceil(256)))?;
    Ok(out)
}

/// Sign agreement `d − 2·hamming(q, code_i)` of `q_bits` `[W]` with each of the first `n`
/// rows of `codes` `[≥n, W]` → `[n]` f32.
pub fn hamming(enc: &mut Encoder, q_bits: &GpuTensor, codes: &GpuTensor, n: usize, d: usize) -> Result<GpuTensor> {
    const OP: &str = "hamming";
    q_bits.expect_dtype(OP, "q_bits", &[DType::U32])?;
    codes.expect_dtype(OP, "codes", &[DType::U32])?;
    let w = code_words(d);
    if q_bits.numel() != w {
        return Err(Error::shape(OP, "q_bits", format!("[{w}]"), q_bits.shape()));
    }
    if codes.rank() != 2 || codes.shape()[1] != w || codes.shape()[0] < n || n == 0 {
        return Err(Error::shape(OP, "codes", format!("[>= {n}, {w}]"), codes.shape()));
    }
    let out = enc.gpu().alloc(&[n], DType::F32)?;
    if enc.host() {
        crate::cpu::hamming(q_bits, codes, n, d, &out)?;
        return Ok(out);
    }
    let params = [u(OP, "n", n)?, u(OP, "d", d)?, u(OP, "words", w)?, 0];
    enc.dispatch(KernelKey::Search(SearchKey::Hamming), &params, &[q_bits, codes, &out], grid(u(OP, "n", n)?.div_ceil(256)))?;
    Ok(out)
}

/// Words per int8 code of a `d`-wide vector (4 values per u32).
pub fn i8_words(d: usize) -> usize {
    d.div_ceil(4)
}

/// Symmetric per-row int8 codes of `x` `[n, d]` f32 → (`[n, ceil(d/4)]` u32, 4 two's
/// complement bytes per word, value c in byte c % 4 of word c / 4; `[n]` f32 scales
/// `max|x_row| / 127`). Dequantised `x ≈ scale · code`.
pub fn quantize_i8(enc: &mut Encoder, x: &GpuTensor) -> Result<(GpuTensor, GpuTensor)> {
    const OP: &str = "quantize_i8";
    x.expect_dtype(OP, "x", &[DType::F32])?;
    x.expect_rank(OP, "x", 2)?;
    let (n, d) = (x.shape()[0], x.shape()[1]);
    let w = i8_words(d);
    let codes = enc.gpu().alloc(&[n, w], DType::U32)?;
    let scales = enc.gpu().alloc(&[n], DType::F32)?;
    if enc.host() {
        crate::cpu::quantize_i8(x, &codes, &scales)?;
        return Ok((codes, scales));
    }
    let params = [u(OP, "n", n)?, u(OP, "d", d)?, u(OP, "words", w)?, 0];
    enc.dispatch(KernelKey::Search(SearchKey::QuantizeI8), &params, &[x, &codes, &scales], grid(u(OP, "n", n)?.div_ceil(256)))?;
    Ok((codes, scales))
}

/// `x` f32 (an even number of elements) → the same shape in f16 (`pack2x16float`).
pub fn to_f16(enc: &mut Encoder, x: &GpuTensor) -> Result<GpuTensor> {
    const OP: &str = "to_f16";
    x.expect_dtype(OP, "x", &[DType::F32])?;
    if x.numel() % 2 != 0 || x.numel() == 0 {
        return Err(Error::shape(OP, "x", "an even, non-zero number of elements", x.shape()));
    }
    let out = enc.gpu().alloc(x.shape(), DType::F16)?;
    if enc.host() {
        crate::cpu::to_f16(x, &out)?;
        return Ok(out);
    }
    let words = x.numel() / 2;
    let params = [u(OP, "words", words)?, 0, 0, 0];
    enc.dispatch(KernelKey::Search(SearchKey::ToF16), &params, &[x, &out], grid(u(OP, "words", words)?.div_ceil(256)))?;
    Ok(out)
}

/// `q` `[d]` f32 against each of the first `n` rows of `x` `[≥n, d]` (f32, or f16 with d
/// even) → `[n]` f32, one thread per row and no barriers.
pub fn score(enc: &mut Encoder, q: &GpuTensor, x: &GpuTensor, n: usize) -> Result<GpuTensor> {
    const OP: &str = "score";
    q.expect_dtype(OP, "q", &[DType::F32])?;
    x.expect_dtype(OP, "x", &[DType::F32, DType::F16])?;
    x.expect_rank(OP, "x", 2)?;
    let d = x.shape()[1];
    let f16 = x.dtype() == DType::F16;
    if q.numel() != d {
        return Err(Error::shape(OP, "q", format!("[{d}]"), q.shape()));
    }
    if n == 0 || n > x.shape()[0] || (f16 && d % 2 != 0) {
        return Err(Error::shape(OP, "x", format!("[>= {n}, d] (d even for f16)"), x.shape()));
    }
    let out = enc.gpu().alloc(&[n], DType::F32)?;
    if enc.host() {
        crate::cpu::score(q, x, n, &out)?;
        return Ok(out);
    }
    let params = [u(OP, "n", n)?, u(OP, "d", d)?, 0, 0];
    let key = SearchKey::Score { f16, vec4: !f16 && d % 4 == 0 };
    enc.dispatch(KernelKey::Search(key), &params, &[q, x, &out], grid(u(OP, "n", n)?.div_ceil(256)))?;
    Ok(out)
}

/// Exact similarity of `q` `[d]` with the rows `ids` `[c]` of `x` (first `rows` rows of a
/// `[≥rows, d]` f32 or f16 tensor are valid; f16 needs d even) → `[c]` f32; ids outside
/// `rows` score as -3e38.
pub fn rescore(enc: &mut Encoder, q: &GpuTensor, x: &GpuTensor, rows: usize, ids: &GpuTensor) -> Result<GpuTensor> {
    const OP: &str = "rescore";
    x.expect_dtype(OP, "x", &[DType::F32, DType::F16])?;
    x.expect_rank(OP, "x", 2)?;
    let d = x.shape()[1];
    let kind = if x.dtype() == DType::F16 { Rows::F16 } else { Rows::F32 };
    if kind == Rows::F16 && d % 2 != 0 {
        return Err(Error::shape(OP, "x", "[N, d] with d even for f16", x.shape()));
    }
    rescore_rows(enc, q, x, None, d, rows, ids, kind)
}

/// Approximate similarity of `q` `[d]` with the rows `ids` `[c]` of int8 codes `q8`
/// `[≥rows, ceil(d/4)]` u32 and `scales` `[≥rows]` f32 (`quantize_i8`): `scale · (q · code)`
/// → `[c]` f32; ids outside `rows` score as -3e38.
pub fn rescore_i8(enc: &mut Encoder, q: &GpuTensor, q8: &GpuTensor, scales: &GpuTensor, rows: usize, ids: &GpuTensor) -> Result<GpuTensor> {
    const OP: &str = "rescore_i8";
    q8.expect_dtype(OP, "q8", &[DType::U32])?;
    scales.expect_dtype(OP, "scales", &[DType::F32])?;
    q8.expect_rank(OP, "q8", 2)?;
    let d = q.numel();
    if q8.shape()[1] != i8_words(d) {
        return Err(Error::shape(OP, "q8", format!("[N, {}]", i8_words(d)), q8.shape()));
    }
    if scales.numel() < q8.shape()[0] {
        return Err(Error::shape(OP, "scales", format!("[{}]", q8.shape()[0]), scales.shape()));
    }
    rescore_rows(enc, q, q8, Some(scales), d, rows, ids, Rows::I8)
}

#[allow(clippy::too_many_arguments)]
fn rescore_rows(
    enc: &mut Encoder,
    q: &GpuTensor,
    x: &GpuTensor,
    scales: Option<&GpuTensor>,
    d: usize,
    rows: usize,
    ids: &GpuTensor,
    kind: Rows,
) -> Result<GpuTensor> {
    const OP: &str = "rescore";
    q.expect_dtype(OP, "q", &[DType::F32])?;
    ids.expect_dtype(OP, "ids", &[DType::U32])?;
    if q.numel() != d {
        return Err(Error::shape(OP, "q", format!("[{d}]"), q.shape()));
    }
    if rows > x.shape()[0] || rows == 0 {
        return Err(Error::param(OP, format!("rows {rows} not in 1..={}", x.shape()[0])));
    }
    let c = ids.numel();
    if c == 0 {
        return Err(Error::shape(OP, "ids", "a non-empty tensor", ids.shape()));
    }
    let out = enc.gpu().alloc(&[c], DType::F32)?;
    if enc.host() {
        let rows_of = match scales {
            Some(scales) => crate::cpu::RescoreRows::I8 { codes: x, scales },
            None => crate::cpu::RescoreRows::Exact(x),
        };
        crate::cpu::rescore(q, rows_of, rows, ids, &out)?;
        return Ok(out);
    }
    let params = [u(OP, "c", c)?, u(OP, "d", d)?, u(OP, "words", i8_words(d))?, u(OP, "rows", rows)?];
    let key = KernelKey::Search(SearchKey::Rescore(kind));
    match scales {
        Some(s) => enc.dispatch(key, &params, &[q, x, ids, &out, s], grid(u(OP, "c", c)?))?,
        None => enc.dispatch(key, &params, &[q, x, ids, &out], grid(u(OP, "c", c)?))?,
    }
    Ok(out)
}

/// The `k` best `(score, id)` of `scores` `[n]` (ids are positions, or `ids` `[n]`),
/// ordered by score descending then id ascending → (`[k]` f32 scores, `[k]` u32 ids).
/// Entries past the end (k > n) come back as id `u32::MAX`, score -3e38.
/// Block-wise (k barrier rounds per block of 1024): the GPU algorithm.
pub fn topk(enc: &mut Encoder, scores: &GpuTensor, ids: Option<&GpuTensor>, k: usize) -> Result<(GpuTensor, GpuTensor)> {
    topk_with(enc, scores, ids, k, false)
}

/// [`topk`] by the barrier-free thread-local algorithm: each thread keeps a sorted list of
/// the best k of its segment (max(256, 4k) scores); passes repeat on the survivors. Same
/// results; the fast one on CPU adapters, where barriers are emulated. For k above
/// [`MAX_LOCAL_K`] it runs the block-wise [`topk`].
pub fn topk_local(enc: &mut Encoder, scores: &GpuTensor, ids: Option<&GpuTensor>, k: usize) -> Result<(GpuTensor, GpuTensor)> {
    topk_with(enc, scores, ids, k, true)
}

/// [`topk`] or [`topk_local`].
pub fn topk_with(enc: &mut Encoder, scores: &GpuTensor, ids: Option<&GpuTensor>, k: usize, local: bool) -> Result<(GpuTensor, GpuTensor)> {
    const OP: &str = "topk";
    scores.expect_dtype(OP, "scores", &[DType::F32])?;
    if k == 0 || k > MAX_K {
        return Err(Error::param(OP, format!("k = {k} outside 1..={MAX_K}")));
    }
    if scores.numel() == 0 {
        return Err(Error::shape(OP, "scores", "a non-empty tensor", scores.shape()));
    }
    if let Some(ids) = ids {
        ids.expect_dtype(OP, "ids", &[DType::U32])?;
        if ids.numel() != scores.numel() {
            return Err(Error::shape(OP, "ids", format!("[{}]", scores.numel()), ids.shape()));
        }
    }
    let local = local && k <= MAX_LOCAL_K;
    let gpu = enc.gpu();
    if enc.host() {
        let (os, oi) = (gpu.alloc(&[k], DType::F32)?, gpu.alloc(&[k], DType::U32)?);
        crate::cpu::topk(scores, ids, k, &os, &oi)?;
        return Ok((os, oi));
    }
    let (mut s, mut i) = (scores.clone(), ids.cloned());
    loop {
        let n = s.numel();
        let seg = if local { (4 * k).max(256) } else { BLOCK };
        let blocks = n.div_ceil(seg);
        let (os, oi) = (gpu.alloc(&[blocks * k], DType::F32)?, gpu.alloc(&[blocks * k], DType::U32)?);
        let params = [u(OP, "n", n)?, u(OP, "seg", seg)?, 0, u(OP, "k", k)?];
        let (key, groups) = if local {
            (SearchKey::TopKLocal { ids: i.is_some() }, blocks.div_ceil(64))
        } else {
            (SearchKey::TopK { ids: i.is_some() }, blocks)
        };
        let (key, groups) = (KernelKey::Search(key), grid(u(OP, "blocks", groups)?));
        match &i {
            Some(ids) => enc.dispatch(key, &params, &[&s, &os, &oi, ids], groups)?,
            None => enc.dispatch(key, &params, &[&s, &os, &oi], groups)?,
        }
        (s, i) = (os, Some(oi));
        if blocks == 1 {
            break;
        }
    }
    Ok((s, i.expect("at least one pass")))
}
