//! Speculative decoding's verify step on the GPU (`speculative.wgsl`): the argmax of every
//! row of a verify pass's logits, then greedy acceptance of the drafted tokens, the next
//! input token and the cache position written into `state`. One small result (`out`) is what
//! the host reads back per verify step.

use super::{u, KernelKey, Variant};
use crate::error::{Error, Result};
use crate::gpu::{grid, DType, Encoder, GpuTensor};

#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct SpeculativeKey {
    /// `argmax_rows` instead of `accept`.
    pub argmax: bool,
}

impl Variant for SpeculativeKey {
    const FAMILY: &'static str = "speculative";
    const SOURCE: &'static str = include_str!("speculative.wgsl");
    fn entry(&self) -> &'static str {
        if self.argmax { "argmax_rows" } else { "accept" }
    }
    fn defines(&self) -> Vec<&'static str> {
        if self.argmax { vec!["ARGMAX"] } else { vec![] }
    }
}

/// Accepts the longest prefix of `drafts` that greedy decoding would have produced.
/// - `logits`: `[k + 1, vocab]` f32, row i the model's scores after the last token and the
///   first i drafts
/// - `drafts`: `[k]` u32 (`k` ≥ 0; a one-word tensor when `k` = 0)
/// - `state`: `[4]` u32: `[0]` ← the next token, `[1]` += accepted + 1, `[2]` += 1
/// - `out`: `[k + 2]` u32 ← `[accepted, argmax of each row]`
pub fn verify(enc: &mut Encoder, logits: &GpuTensor, drafts: &GpuTensor, k: usize, state: &GpuTensor, out: &GpuTensor) -> Result<()> {
    const OP: &str = "speculative";
    logits.expect_dtype(OP, "logits", &[DType::F32])?;
    let vocab = logits.last_dim();
    let rows = k + 1;
    if logits.numel() != rows * vocab || vocab == 0 {
        return Err(Error::shape(OP, "logits", format!("[{rows}, vocab]"), logits.shape()));
    }
    drafts.expect_dtype(OP, "drafts", &[DType::U32])?;
    if drafts.numel() != k.max(1) {
        return Err(Error::shape(OP, "drafts", format!("[{}]", k.max(1)), drafts.shape()));
    }
    state.expect_dtype(OP, "state", &[DType::U32])?;
    if state.numel() < 4 {
        return Err(Error::shape(OP, "state", "[4]", state.shape()));
    }
    out.expect_dtype(OP, "out", &[DType::U32])?;
    if out.numel() != rows + 1 {
        return Err(Error::shape(OP, "out", format!("[{}]", rows + 1), out.shape()));
    }
    let params = [u(OP, "rows", rows)?, u(OP, "vocab", vocab)?, 0, 0];
    let best = enc.gpu().alloc(&[rows], DType::U32)?;
    enc.dispatch(KernelKey::Speculative(SpeculativeKey { argmax: true }), &params, &[logits, &best], grid(params[0]))?;
    enc.dispatch(KernelKey::Speculative(SpeculativeKey { argmax: false }), &params, &[&best, drafts, out, state], [1, 1, 1])
}
