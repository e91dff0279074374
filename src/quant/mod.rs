//! Quantized weight formats: GGUF's block formats and AWQ int4, with CPU references.
//!
//! Each format module documents its byte layout, asserts its block size at compile time and
//! has a CPU `quantize_block` / `dequantize_block` reference. The block layouts of
//! [`QuantFormat`] are exactly GGUF's (ggml-common.h), so real GGUF files load unchanged.
//!
//! On the GPU a matrix is stored **re-laid** ([`relayout`]): WebGPU storage buffers are read
//! in 4-byte words and GGUF's 18-, 22-, 34-, 110- and 210-byte blocks are not 4-byte aligned, so the
//! f16 scale that breaks the alignment moves to a separate array and the rest of the block
//! (its "body") is kept byte for byte. Every body is then a whole number of u32 words and the
//! kernels read it with aligned word loads. The choice and its reasons: `SPEC/quant.md`.

pub mod awq;
pub mod iq4_nl;
pub mod q2_k;
pub mod q3_k;
pub mod q4_0;
pub mod q4_1;
pub mod q4_k;
pub mod q5_0;
pub mod q5_1;
pub mod q5_k;
pub mod q6_k;
pub mod q8_0;

use crate::error::{Error, Result};
use half::f16;

/// A GGUF block format. Values are grouped in blocks of [`block_elems`](Self::block_elems)
/// along the input dimension (a row of the weight); each block is
/// [`block_bytes`](Self::block_bytes) bytes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum QuantFormat {
    Q8_0,
    Q4_0,
    Q4_1,
    Q5_0,
    Q4K,
    Q6K,
    Q5_1,
    Q5K,
    Q3K,
    Q2K,
    IQ4NL,
}

impl QuantFormat {
    pub const ALL: [QuantFormat; 11] = [
        Self::Q8_0,
        Self::Q4_0,
        Self::Q4_1,
        Self::Q5_0,
        Self::Q4K,
        Self::Q6K,
        Self::Q5_1,
        Self::Q5K,
        Self::Q3K,
        Self::Q2K,
        Self::IQ4NL,
    ];

    pub const fn block_elems(self) -> usize {
        match self {
            Self::Q8_0 => q8_0::BLOCK,
            Self::Q4_0 => q4_0::BLOCK,
            Self::Q4_1 => q4_1::BLOCK,
            Self::Q5_0 => q5_0::BLOCK,
            Self::Q4K => q4_k::BLOCK,
            Self::Q6K => q6_k::BLOCK,
            Self::Q5_1 => q5_1::BLOCK,
            Self::Q5K => q5_k::BLOCK,
            Self::Q3K => q3_k::BLOCK,
            Self::Q2K => q2_k::BLOCK,
            Self::IQ4NL => iq4_nl::BLOCK,
        }
    }

    pub const fn block_bytes(self) -> usize {
        match self {
            Self::Q8_0 => q8_0::BYTES,
            Self::Q4_0 => q4_0::BYTES,
            Self::Q4_1 => q4_1::BYTES,
            Self::Q5_0 => q5_0::BYTES,
            Self::Q4K => q4_k::BYTES,
            Self::Q6K => q6_k::BYTES,
            Self::Q5_1 => q5_1::BYTES,
            Self::Q5K => q5_k::BYTES,
            Self::Q3K => q3_k::BYTES,
            Self::Q2K => q2_k::BYTES,
            Self::IQ4NL => iq4_nl::BYTES,
        }
    }

    pub const fn name(self) -> &'static str {
        match self {
            Self::Q8_0 => "q8_0",
            Self::Q4_0 => "q4_0",
            Self::Q4_1 => "q4_1",
            Self::Q5_0 => "q5_0",
            Self::Q4K => "q4_K",
            Self::Q6K => "q6_K",
            Self::Q5_1 => "q5_1",
            Self::Q5K => "q5_K",
            Self::Q3K => "q3_K",
            Self::Q2K => "q2_K",
            Self::IQ4NL => "iq4_nl",
        }
    }

    pub fn parse(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|f| f.name().eq_ignore_ascii_case(name))
    }

    /// Every format's name, for messages: `"q8_0, q4_0, …, q2_K or iq4_nl"`.
    pub fn names() -> String {
        let names: Vec<&str> = Self::ALL.iter().map(|f| f.name()).collect();
        let (last, rest) = names.split_last().expect("ALL is not empty");
        format!("{} or {last}", rest.join(", "))
    }

    /// The `ggml_type` id GGUF uses for this format.
    pub const fn ggml_type(self) -> u32 {
        match self {
            Self::Q4_0 => 2,
            Self::Q4_1 => 3,
            Self::Q5_0 => 6,
            Self::Q5_1 => 7,
            Self::Q8_0 => 8,
            Self::Q2K => 10,
            Self::Q3K => 11,
            Self::Q4K => 12,
            Self::Q5K => 13,
            Self::Q6K => 14,
            Self::IQ4NL => 20,
        }
    }

    pub fn from_ggml_type(t: u32) -> Option<Self> {
        Self::ALL.into_iter().find(|f| f.ggml_type() == t)
    }

    /// Bytes of `n` values: an error unless `n` is a whole number of blocks.
    pub fn byte_len(self, n: usize) -> Result<usize> {
        if n % self.block_elems() != 0 {
            return Err(Error::param(self.name(), format!("{n} values are not a whole number of {}-value blocks", self.block_elems())));
        }
        Ok(n / self.block_elems() * self.block_bytes())
    }

    /// Words of one block's body on the GPU (see [`relayout`]).
    pub const fn body_words(self) -> usize {
        match self {
            Self::Q8_0 => 8,
            Self::Q4_0 => 4,
            Self::Q4_1 => 5,
            Self::Q5_0 => 5,
            Self::Q4K => 36,
            Self::Q6K => 52,
            Self::Q5_1 => 6,
            Self::Q5K => 44,
            Self::Q3K => 27,
            Self::Q2K => 21,
            Self::IQ4NL => 4,
        }
    }

    /// Whether the block's f16 scale `d` moves to the separate scale array on the GPU.
    pub const fn split_scale(self) -> bool {
        matches!(self, Self::Q8_0 | Self::Q4_0 | Self::Q5_0 | Self::Q6K | Self::Q3K | Self::IQ4NL)
    }

    /// Byte offset of `d` inside a GGUF block (for the formats with a split scale).
    pub const fn scale_offset(self) -> usize {
        match self {
            Self::Q6K => 208,
            Self::Q3K => q3_k::D_OFFSET,
            _ => 0,
        }
    }

    /// Largest relative round-trip error of the reference quantizer, as a fraction of a
    /// block's value range (`max - min`), that the round-trip tests accept. The bounds follow
    /// from the step size (range / levels), half a step for rounding plus the error of the
    /// f16 / 6-bit / 8-bit scales; see each module.
    pub const fn roundtrip_bound(self) -> f32 {
        match self {
            Self::Q8_0 => 0.5 / 127.0 * 1.01 + 1e-3,
            Self::Q4_0 => 1.0 / 8.0 * 1.01 + 1e-3,
            Self::Q4_1 => 0.5 / 15.0 * 1.01 + 1e-3,
            Self::Q5_0 => 1.0 / 16.0 * 1.01 + 1e-3,
            Self::Q4K => q4_k::ROUNDTRIP_BOUND,
            Self::Q6K => q6_k::ROUNDTRIP_BOUND,
            Self::Q5_1 => q5_1::ROUNDTRIP_BOUND,
            Self::Q5K => q5_k::ROUNDTRIP_BOUND,
            Self::Q3K => q3_k::ROUNDTRIP_BOUND,
            Self::Q2K => q2_k::ROUNDTRIP_BOUND,
            Self::IQ4NL => iq4_nl::ROUNDTRIP_BOUND,
        }
    }
}

/// Decodes `n` values stored as `fmt` blocks.
pub fn dequantize(fmt: QuantFormat, bytes: &[u8], n: usize) -> Result<Vec<f32>> {
    let want = fmt.byte_len(n)?;
    if bytes.len() != want {
        return Err(Error::param(fmt.name(), format!("{n} values need {want} bytes, got {}", bytes.len())));
    }
    let mut out = vec![0f32; n];
    let (be, bb) = (fmt.block_elems(), fmt.block_bytes());
    for (blk, o) in bytes.chunks_exact(bb).zip(out.chunks_exact_mut(be)) {
        match fmt {
            QuantFormat::Q8_0 => q8_0::dequantize_block(blk, o),
            QuantFormat::Q4_0 => q4_0::dequantize_block(blk, o),
            QuantFormat::Q4_1 => q4_1::dequantize_block(blk, o),
            QuantFormat::Q5_0 => q5_0::dequantize_block(blk, o),
            QuantFormat::Q4K => q4_k::dequantize_block(blk, o),
            QuantFormat::Q6K => q6_k::dequantize_block(blk, o),
            QuantFormat::Q5_1 => q5_1::dequantize_block(blk, o),
            QuantFormat::Q5K => q5_k::dequantize_block(blk, o),
            QuantFormat::Q3K => q3_k::dequantize_block(blk, o),
            QuantFormat::Q2K => q2_k::dequantize_block(blk, o),
            QuantFormat::IQ4NL => iq4_nl::dequantize_block(blk, o),
        }
    }
    Ok(out)
}

/// Encodes `values` (a whole number of blocks) with the reference quantizer.
pub fn quantize(fmt: QuantFormat, values: &[f32]) -> Result<Vec<u8>> {
    let mut out = vec![0u8; fmt.byte_len(values.len())?];
    let (be, bb) = (fmt.block_elems(), fmt.block_bytes());
    for (x, blk) in values.chunks_exact(be).zip(out.chunks_exact_mut(bb)) {
        match fmt {
            QuantFormat::Q8_0 => q8_0::quantize_block(x, blk),
            QuantFormat::Q4_0 => q4_0::quantize_block(x, blk),
            QuantFormat::Q4_1 => q4_1::quantize_block(x, blk),
            QuantFormat::Q5_0 => q5_0::quantize_block(x, blk),
            QuantFormat::Q4K => q4_k::quantize_block(x, blk),
            QuantFormat::Q6K => q6_k::quantize_block(x, blk),
            QuantFormat::Q5_1 => q5_1::quantize_block(x, blk),
            QuantFormat::Q5K => q5_k::quantize_block(x, blk),
            QuantFormat::Q3K => q3_k::quantize_block(x, blk),
            QuantFormat::Q2K => q2_k::quantize_block(x, blk),
            QuantFormat::IQ4NL => iq4_nl::quantize_block(x, blk),
        }
    }
    Ok(out)
}

/// A matrix re-laid for the GPU: `body` holds [`QuantFormat::body_words`] little-endian words
/// per block, blocks in GGUF order (row-major, along each row); `scales` holds the split-off f16
/// `d` of each block, two per word (empty for formats that keep it in the body).
pub struct Relaid {
    pub body: Vec<u32>,
    pub scales: Vec<u32>,
}

/// Splits GGUF blocks into the GPU layout. `bytes` must be whole blocks. Block-local, so a
/// streamed tensor can be re-laid chunk by chunk at block boundaries.
pub fn relayout(fmt: QuantFormat, bytes: &[u8]) -> Result<Relaid> {
    let bb = fmt.block_bytes();
    if bytes.len() % bb != 0 {
        return Err(Error::param(fmt.name(), format!("{} bytes are not a whole number of {bb}-byte blocks", bytes.len())));
    }
    let nb = bytes.len() / bb;
    let words = fmt.body_words();
    let mut body = Vec::with_capacity(nb * words);
    let mut halves = Vec::with_capacity(if fmt.split_scale() { nb } else { 0 });
    for blk in bytes.chunks_exact(bb) {
        let body_bytes: &[u8] = if fmt.split_scale() {
            let so = fmt.scale_offset();
            halves.push(u16::from_le_bytes([blk[so], blk[so + 1]]));
            if so == 0 { &blk[2..] } else { &blk[..so] }
        } else {
            blk
        };
        debug_assert_eq!(body_bytes.len(), words * 4);
        body.extend(body_bytes.chunks_exact(4).map(|w| u32::from_le_bytes([w[0], w[1], w[2], w[3]])));
    }
    Ok(Relaid { body, scales: pack_halves(&halves) })
}

/// Packs f16 bit patterns two per word (low half first), padding with zero.
pub fn pack_halves(h: &[u16]) -> Vec<u32> {
    h.chunks(2).map(|c| c[0] as u32 | (c.get(1).copied().unwrap_or(0) as u32) << 16).collect()
}

pub(crate) fn f16_at(b: &[u8], at: usize) -> f32 {
    f16::from_bits(u16::from_le_bytes([b[at], b[at + 1]])).to_f32()
}

pub(crate) fn put_f16(b: &mut [u8], at: usize, v: f32) {
    b[at..at + 2].copy_from_slice(&f16::from_f32(v).to_bits().to_le_bytes());
}

/// ggml's `nearest_int`: round to nearest, ties to even (the k-quant quantizers use it; valid
/// for |x| ≤ 2²²).
pub(crate) fn nearest_int(x: f32) -> i32 {
    let v = x + 12582912.0;
    (v.to_bits() & 0x007f_ffff) as i32 - 0x0040_0000
}

/// C's `roundf`: half away from zero (what ggml's reference quantizers use).
pub(crate) fn round_away(x: f32) -> f32 {
    x.round()
}
