//! Next-token selection on the GPU (greedy, temperature, top-k, top-p, repetition penalty,
//! seeded RNG), see `sample.wgsl`. Only the chosen id leaves the GPU: it is written into
//! `state[0]`, which the next decode step embeds and the host reads (4 bytes).

use super::{u, KernelKey, Variant};
use crate::error::{Error, Result};
use crate::gpu::{grid, DType, Encoder, Gpu, GpuTensor};

#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct SampleKey {
    /// `block_partial` (the pre-pass over blocks of the vocabulary: maxima, and when sampling
    /// each block's mass and candidates) instead of `sample`.
    pub partial: bool,
}

/// Scores per workgroup of `block_partial`.
pub const ARGMAX_BLOCK: usize = 2048;
/// Sampling candidates kept per block by `block_partial` (`CAND` in `sample.wgsl`): top-k up
/// to this many, and top-p sets above every block's cut, are drawn from the candidates alone.
pub const SAMPLE_CANDIDATES: usize = 64;
/// Words of a block record: max bits, argmax, mass, cut key, then the candidates' indices and
/// score bits.
const PART_STRIDE: usize = 4 + 2 * SAMPLE_CANDIDATES;

impl Variant for SampleKey {
    const FAMILY: &'static str = "sample";
    const SOURCE: &'static str = include_str!("sample.wgsl");
    fn entry(&self) -> &'static str {
        if self.partial { "block_partial" } else { "sample" }
    }
}

/// Sampling settings of one generate call. `temperature <= 0` is greedy argmax.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct SamplingConfig {
    pub temperature: f32,
    /// 0 disables top-k.
    pub top_k: u32,
    /// 1 disables top-p.
    pub top_p: f32,
    /// 1 disables the repetition penalty.
    pub repetition_penalty: f32,
    pub seed: u64,
}

impl Default for SamplingConfig {
    fn default() -> Self {
        Self { temperature: 0.0, top_k: 0, top_p: 1.0, repetition_penalty: 1.0, seed: 0 }
    }
}

/// Smallest nonzero temperature: below it `logit / temperature` overflows f32 (a
/// subnormal temperature made every score infinite and picked token 0).
pub const MIN_TEMPERATURE: f32 = 1e-3;
/// Smallest repetition penalty, for the same reason (the kernel divides by it).
pub const MIN_REPETITION_PENALTY: f32 = 1e-3;

impl SamplingConfig {
    /// Rejects values with no meaning (NaN or infinite values, a temperature that is neither
    /// 0 nor at least [`MIN_TEMPERATURE`], top_p outside (0, 1], a penalty below
    /// [`MIN_REPETITION_PENALTY`]).
    pub fn validate(&self) -> Result<()> {
        let bad = |m: String| Err(Error::Input(m));
        if !(self.temperature == 0.0 || (self.temperature.is_finite() && self.temperature >= MIN_TEMPERATURE)) {
            return bad(format!("temperature {} must be 0 (greedy) or a finite value >= {MIN_TEMPERATURE}", self.temperature));
        }
        if !(self.top_p > 0.0 && self.top_p <= 1.0) {
            return bad(format!("top_p {} must be in (0, 1]", self.top_p));
        }
        if !(self.repetition_penalty.is_finite() && self.repetition_penalty >= MIN_REPETITION_PENALTY) {
            return bad(format!("repetition_penalty {} must be finite and >= {MIN_REPETITION_PENALTY}", self.repetition_penalty));
        }
        Ok(())
    }

    /// The `[8]` u32 words of the kernel's `Config`.
    pub fn words(&self) -> [u32; 8] {
        [
            self.temperature.to_bits(),
            self.top_k,
            self.top_p.to_bits(),
            self.repetition_penalty.to_bits(),
            self.seed as u32,
            (self.seed >> 32) as u32,
            0,
            0,
        ]
    }

    /// Writes the settings into a `[8]` u32 config tensor (once per generate call).
    pub fn write(&self, gpu: &Gpu, cfg: &GpuTensor) -> Result<()> {
        self.validate()?;
        cfg.expect_dtype("sample", "cfg", &[DType::U32])?;
        if cfg.numel() != 8 {
            return Err(Error::shape("sample", "cfg", "[8]", cfg.shape()));
        }
        let bytes: Vec<u8> = self.words().iter().flat_map(|w| w.to_le_bytes()).collect();
        gpu.write(cfg, 0, &bytes);
        Ok(())
    }
}

/// Chooses the next token from the last row of `logits` and records it on the GPU.
/// - `logits`: `[.., vocab]` f32 (the last row is used)
/// - `cfg`: `[8]` u32 ([`SamplingConfig::write`])
/// - `seen`: `[vocab]` u32, 1 for tokens already in the sequence (updated)
/// - `state`: `[4]` u32: `[0]` ← token, `[1]` += `advance`, `[2]` += 1
pub fn sample(
    enc: &mut Encoder,
    logits: &GpuTensor,
    cfg: &GpuTensor,
    seen: &GpuTensor,
    state: &GpuTensor,
    advance: usize,
) -> Result<()> {
    const OP: &str = "sample";
    logits.expect_dtype(OP, "logits", &[DType::F32])?;
    let vocab = logits.last_dim();
    if logits.numel() == 0 {
        return Err(Error::shape(OP, "logits", "[.., vocab]", logits.shape()));
    }
    let last = if logits.rows() > 1 {
        // The kernel reads from element 0; a multi-row input is a caller error here.
        return Err(Error::shape(OP, "logits", format!("[1, {vocab}] (last row only)"), logits.shape()));
    } else {
        logits
    };
    cfg.expect_dtype(OP, "cfg", &[DType::U32])?;
    if cfg.numel() != 8 {
        return Err(Error::shape(OP, "cfg", "[8]", cfg.shape()));
    }
    seen.expect_dtype(OP, "seen", &[DType::U32])?;
    if seen.numel() != vocab {
        return Err(Error::shape(OP, "seen", format!("[{vocab}]"), seen.shape()));
    }
    state.expect_dtype(OP, "state", &[DType::U32])?;
    if state.numel() < 4 {
        return Err(Error::shape(OP, "state", "[4]", state.shape()));
    }
    let n_blocks = vocab.div_ceil(ARGMAX_BLOCK);
    let params = [u(OP, "vocab", vocab)?, u(OP, "advance", advance)?, u(OP, "n_blocks", n_blocks)?, 0];
    let part = enc.gpu().alloc(&[n_blocks, PART_STRIDE], DType::U32)?;
    enc.dispatch(KernelKey::Sample(SampleKey { partial: true }), &params, &[last, cfg, seen, &part], grid(params[2]))?;
    enc.dispatch(KernelKey::Sample(SampleKey { partial: false }), &params, &[last, cfg, seen, &part, state], [1, 1, 1])
}
