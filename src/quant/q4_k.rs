//! `Q4_K`: super-blocks of 256 values, `{ d: f16, dmin: f16, scales: [u8; 12], qs: [u8; 128] }`
//! (144 bytes). Eight sub-blocks of 32 values each have a 6-bit scale `sc` and a 6-bit min
//! `m`, packed into `scales` as ggml's `get_scale_min_k4` reads them. Sub-blocks `2i` and
//! `2i + 1` share `qs[32i .. 32i + 32]`: low nibbles for `2i`, high nibbles for `2i + 1`.
//! `x = d · sc · q − dmin · m`.
//!
//! Reference quantizer: a direct (non-iterative) form of ggml's: per sub-block
//! `min = min(0, min x)`, `scale = (max − min) / 15`; scales and mins are quantized to 6 bits
//! against `d = max scale / 63` and `dmin = max(−min) / 63`, then the values against the
//! quantized scale and min. ggml's `make_qkx2_quants` searches scales for a smaller error; the
//! block layout and the decoder are the same. Round trip: half a step for the value, plus the
//! step error from rounding `sc` (≤ d/2 per unit of q) and `m` (≤ dmin/2), bounded by
//! [`ROUNDTRIP_BOUND`] of the super-block's range.

use super::{f16_at, put_f16};

pub const BLOCK: usize = 256;
pub const BYTES: usize = 2 + 2 + 12 + BLOCK / 2;
const _: () = assert!(BYTES == 144);

/// Round-trip bound as a fraction of the super-block's range (`max − min`): one value step
/// (the 6-bit scale can round down by up to half a step of `d`) plus the 6-bit min error.
pub const ROUNDTRIP_BOUND: f32 = 1.0 / 15.0 + 1.0 / 63.0 + 2e-3;

/// ggml's `get_scale_min_k4`: (scale, min) of sub-block `j`.
pub fn scale_min(j: usize, q: &[u8]) -> (u8, u8) {
    if j < 4 {
        (q[j] & 63, q[j + 4] & 63)
    } else {
        ((q[j + 4] & 0xF) | ((q[j - 4] >> 6) << 4), (q[j + 4] >> 4) | ((q[j] >> 6) << 4))
    }
}

/// Packs eight 6-bit scales and mins into 12 bytes, the inverse of [`scale_min`].
pub fn pack_scale_min(ls: &[u8; 8], lm: &[u8; 8], sc: &mut [u8]) {
    sc[..12].fill(0);
    for j in 0..8 {
        if j < 4 {
            sc[j] = ls[j];
            sc[j + 4] = lm[j];
        } else {
            sc[j + 4] = (ls[j] & 0xF) | (lm[j] & 0xF) << 4;
            sc[j - 4] |= (ls[j] >> 4) << 6;
            sc[j] |= (lm[j] >> 4) << 6;
        }
    }
}

pub fn dequantize_block(b: &[u8], out: &mut [f32]) {
    let (d, dmin) = (f16_at(b, 0), f16_at(b, 2));
    let scales = &b[4..16];
    let qs = &b[16..BYTES];
    for j in 0..8 {
        let (sc, m) = scale_min(j, scales);
        let (dl, ml) = (d * sc as f32, dmin * m as f32);
        let q = &qs[32 * (j / 2)..32 * (j / 2) + 32];
        for l in 0..32 {
            let v = if j % 2 == 0 { q[l] & 0xF } else { q[l] >> 4 };
            out[32 * j + l] = dl * v as f32 - ml;
        }
    }
}

pub fn quantize_block(x: &[f32], b: &mut [u8]) {
    let mut scale = [0f32; 8];
    let mut negmin = [0f32; 8];
    for j in 0..8 {
        let s = &x[32 * j..32 * j + 32];
        let min = s.iter().copied().fold(0f32, f32::min);
        let max = s.iter().copied().fold(f32::NEG_INFINITY, f32::max);
        scale[j] = (max - min) / 15.0;
        negmin[j] = -min;
    }
    let max_scale = scale.iter().copied().fold(0f32, f32::max);
    let max_min = negmin.iter().copied().fold(0f32, f32::max);
    let d = max_scale / 63.0;
    let dmin = max_min / 63.0;
    put_f16(b, 0, d);
    put_f16(b, 2, dmin);
    // Quantize against the f16-rounded super scales, as the decoder will see them.
    let (d, dmin) = (f16_at(b, 0), f16_at(b, 2));
    let mut ls = [0u8; 8];
    let mut lm = [0u8; 8];
    for j in 0..8 {
        ls[j] = if d > 0.0 { (scale[j] / d).round().clamp(0.0, 63.0) as u8 } else { 0 };
        lm[j] = if dmin > 0.0 { (negmin[j] / dmin).round().clamp(0.0, 63.0) as u8 } else { 0 };
    }
    pack_scale_min(&ls, &lm, &mut b[4..16]);
    let mut q = [0u8; BLOCK];
    for j in 0..8 {
        let (dl, ml) = (d * ls[j] as f32, dmin * lm[j] as f32);
        for l in 0..32 {
            q[32 * j + l] = if dl > 0.0 { ((x[32 * j + l] + ml) / dl).round().clamp(0.0, 15.0) as u8 } else { 0 };
        }
    }
    let qs = &mut b[16..BYTES];
    for i in 0..4 {
        for l in 0..32 {
            qs[32 * i + l] = q[64 * i + l] | q[64 * i + 32 + l] << 4;
        }
    }
}
