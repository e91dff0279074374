//! Vector-search kernels: sign-bit codes, Hamming similarity, candidate rescoring and a
//! block-wise top-k, see `search.wgsl`.

use super::{u, KernelKey, Variant};
use crate::error::{Error, Result};
use crate::gpu::{grid, DType, Encoder, GpuTensor};

/// Largest k of one top-k.
pub const MAX_K: usize = 256;
/// Elements per top-k workgroup.
const BLOCK: usize = 1024;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum SearchKey {
    Binarize,
    Hamming,
    Rescore,
    /// `ids`: candidates carry their own ids (later top-k passes, rescored candidates).
    TopK { ids: bool },
}

impl Variant for SearchKey {
    const FAMILY: &'static str = "search";
    const SOURCE: &'static str = include_str!("search.wgsl");
    fn entry(&self) -> &'static str {
        match self {
            SearchKey::Binarize => "binarize",
            SearchKey::Hamming => "hamming",
            SearchKey::Rescore => "rescore",
            SearchKey::TopK { .. } => "topk",
        }
    }
    fn defines(&self) -> Vec<&'static str> {
        match self {
            SearchKey::Binarize => vec!["BINARIZE"],
            SearchKey::Hamming => vec!["HAMMING"],
            SearchKey::Rescore => vec!["RESCORE"],
            SearchKey::TopK { ids: false } => vec!["TOPK"],
            SearchKey::TopK { ids: true } => vec!["TOPK", "IDS"],
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
    let params = [u(OP, "n", n)?, u(OP, "d", d)?, u(OP, "words", w)?, 0];
    enc.dispatch(KernelKey::Search(SearchKey::Hamming), &params, &[q_bits, codes, &out], grid(u(OP, "n", n)?.div_ceil(256)))?;
    Ok(out)
}

/// Exact similarity of `q` `[d]` with the rows `ids` `[c]` of `x` (first `rows` rows of a
/// `[≥rows, d]` tensor are valid) → `[c]` f32; ids outside `rows` score as -3e38.
pub fn rescore(enc: &mut Encoder, q: &GpuTensor, x: &GpuTensor, rows: usize, ids: &GpuTensor) -> Result<GpuTensor> {
    const OP: &str = "rescore";
    q.expect_dtype(OP, "q", &[DType::F32])?;
    x.expect_dtype(OP, "x", &[DType::F32])?;
    ids.expect_dtype(OP, "ids", &[DType::U32])?;
    x.expect_rank(OP, "x", 2)?;
    let d = x.shape()[1];
    if q.numel() != d {
        return Err(Error::shape(OP, "q", format!("[{d}]"), q.shape()));
    }
    if rows > x.shape()[0] {
        return Err(Error::param(OP, format!("rows {rows} > {}", x.shape()[0])));
    }
    let c = ids.numel();
    let out = enc.gpu().alloc(&[c], DType::F32)?;
    let params = [u(OP, "c", c)?, u(OP, "d", d)?, 0, u(OP, "rows", rows)?];
    enc.dispatch(KernelKey::Search(SearchKey::Rescore), &params, &[q, x, ids, &out], grid(u(OP, "c", c)?))?;
    Ok(out)
}

/// The `k` best `(score, id)` of `scores` `[n]` (ids are positions, or `ids` `[n]`),
/// ordered by score descending then id ascending → (`[k]` f32 scores, `[k]` u32 ids).
/// Entries past the end (k > n) come back as id `u32::MAX`, score -3e38.
pub fn topk(enc: &mut Encoder, scores: &GpuTensor, ids: Option<&GpuTensor>, k: usize) -> Result<(GpuTensor, GpuTensor)> {
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
    let gpu = enc.gpu();
    let (mut s, mut i) = (scores.clone(), ids.cloned());
    loop {
        let n = s.numel();
        let blocks = n.div_ceil(BLOCK);
        let (os, oi) = (gpu.alloc(&[blocks * k], DType::F32)?, gpu.alloc(&[blocks * k], DType::U32)?);
        let params = [u(OP, "n", n)?, 0, 0, u(OP, "k", k)?];
        let key = KernelKey::Search(SearchKey::TopK { ids: i.is_some() });
        match &i {
            Some(ids) => enc.dispatch(key, &params, &[&s, &os, &oi, ids], grid(u(OP, "blocks", blocks)?))?,
            None => enc.dispatch(key, &params, &[&s, &os, &oi], grid(u(OP, "blocks", blocks)?))?,
        }
        (s, i) = (os, Some(oi));
        if blocks == 1 {
            break;
        }
    }
    Ok((s, i.expect("at least one pass")))
}
