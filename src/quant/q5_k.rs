//! `Q5_K`: super-blocks of 256 values, `{ d: f16, dmin: f16, scales: [u8; 12], qh: [u8; 32],
//! qs: [u8; 128] }` (176 bytes). Eight sub-blocks of 32 values each have a 6-bit scale `sc`
//! and a 6-bit min `m` packed as in `Q4_K` (ggml's `get_scale_min_k4`). Value `l` of
//! sub-block `j` has its low 4 bits in `qs[32·(j / 2) + l]` (low nibble for even `j`, high for
//! odd) and its 5th bit in bit `j` of `qh[l]`. `x = d · sc · q − dmin · m`.
//!
//! Reference quantizer: ggml's `quantize_row_q5_K_ref`: per sub-block, `make_qkx2_quants`
//! (nmax 31, weights `rms(x) + |x|`, a search over 16 scales minimising the weighted squared
//! error) gives a scale and a min; both are quantized to 6 bits against `d = max scale / 63`
//! and `dmin = max min / 63`, then the values against the quantized scale and min. Round
//! trip: bounded by [`ROUNDTRIP_BOUND`] of the super-block's range.

use super::q2_k::make_qkx2_quants;
use super::q4_k::{pack_scale_min, scale_min};
use super::{f16_at, nearest_int, put_f16};

pub const BLOCK: usize = 256;
pub const BYTES: usize = 2 + 2 + 12 + BLOCK / 8 + BLOCK / 2;
const _: () = assert!(BYTES == 176);

/// Round-trip bound as a fraction of the super-block's range: half a step of 1/31 of a
/// sub-block's range, plus the 6-bit scale's rounding (up to half a step of `d` = max
/// scale / 63 per unit of q) and the 6-bit min's (half of max min / 63). Measured on the test
/// data: about 0.02–0.03.
pub const ROUNDTRIP_BOUND: f32 = 0.5 / 31.0 + 1.0 / 63.0 + 2e-3;

pub fn dequantize_block(b: &[u8], out: &mut [f32]) {
    let (d, min) = (f16_at(b, 0), f16_at(b, 2));
    let (scales, qh, qs) = (&b[4..16], &b[16..48], &b[48..BYTES]);
    for j in 0..8 {
        let (sc, m) = scale_min(j, scales);
        let (dl, ml) = (d * sc as f32, min * m as f32);
        let q = &qs[32 * (j / 2)..32 * (j / 2) + 32];
        for l in 0..32 {
            let low = if j % 2 == 0 { q[l] & 0xF } else { q[l] >> 4 };
            let high = if qh[l] & (1 << j) != 0 { 16 } else { 0 };
            out[32 * j + l] = dl * (low + high) as f32 - ml;
        }
    }
}

pub fn quantize_block(x: &[f32], b: &mut [u8]) {
    let mut l = [0u8; BLOCK];
    let mut scales = [0f32; 8];
    let mut mins = [0f32; 8];
    let (mut max_scale, mut max_min) = (0f32, 0f32);
    for j in 0..8 {
        let xs = &x[32 * j..32 * j + 32];
        let sum_x2: f32 = xs.iter().map(|v| v * v).sum();
        let av_x = (sum_x2 / 32.0).sqrt();
        let mut w = [0f32; 32];
        for (w, v) in w.iter_mut().zip(xs) {
            *w = av_x + v.abs();
        }
        (scales[j], mins[j]) = make_qkx2_quants(31, xs, &w, &mut l[32 * j..32 * j + 32], -0.5, 0.1, 15, false);
        max_scale = max_scale.max(scales[j]);
        max_min = max_min.max(mins[j]);
    }
    let inv_scale = if max_scale > 0.0 { 63.0 / max_scale } else { 0.0 };
    let inv_min = if max_min > 0.0 { 63.0 / max_min } else { 0.0 };
    let mut ls = [0u8; 8];
    let mut lm = [0u8; 8];
    for j in 0..8 {
        ls[j] = (nearest_int(inv_scale * scales[j]) as u8).min(63);
        lm[j] = (nearest_int(inv_min * mins[j]) as u8).min(63);
    }
    pack_scale_min(&ls, &lm, &mut b[4..16]);
    put_f16(b, 0, max_scale / 63.0);
    put_f16(b, 2, max_min / 63.0);
    let (d, dmin) = (f16_at(b, 0), f16_at(b, 2));
    for j in 0..8 {
        let (sc, m) = scale_min(j, &b[4..16]);
        let dl = d * sc as f32;
        if dl == 0.0 {
            continue;
        }
        let dm = dmin * m as f32;
        for ii in 0..32 {
            l[32 * j + ii] = nearest_int((x[32 * j + ii] + dm) / dl).clamp(0, 31) as u8;
        }
    }
    b[16..48].fill(0);
    for c in 0..4 {
        for k in 0..32 {
            let (mut l1, mut l2) = (l[64 * c + k], l[64 * c + k + 32]);
            if l1 > 15 {
                l1 -= 16;
                b[16 + k] |= 1 << (2 * c);
            }
            if l2 > 15 {
                l2 -= 16;
                b[16 + k] |= 2 << (2 * c);
            }
            b[48 + 32 * c + k] = l1 | l2 << 4;
        }
    }
}
