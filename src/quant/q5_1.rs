//! `Q5_1`: blocks of 32 values, `{ d: f16, m: f16, qh: [u8; 4], qs: [u8; 16] }` (24 bytes).
//! The low 4 bits of value `j` are nibbles as in `Q4_0` (byte `j` low for `j < 16`, byte
//! `j − 16` high otherwise); its 5th bit is bit `j` of the little-endian u32 `qh`;
//! `x = d · q + m`.
//!
//! Reference quantizer (ggml `quantize_row_q5_1_ref`): `m = min`, `d = (max − min) / 31`,
//! `q = trunc((x − m) / d + 0.5)`. Round trip: |error| ≤ d/2 plus the f16 rounding of d and m,
//! about 0.5/31 of the block's range ([`ROUNDTRIP_BOUND`]).

use super::{f16_at, put_f16};

pub const BLOCK: usize = 32;
pub const BYTES: usize = 4 + 4 + BLOCK / 2;
const _: () = assert!(BYTES == 24);

/// Round-trip bound as a fraction of the block's range: half a step of range / 31, plus the
/// f16 rounding of `d` (≤ 2⁻¹¹ relative, times up to 31 steps) and of `m`.
pub const ROUNDTRIP_BOUND: f32 = 0.5 / 31.0 * 1.01 + 2e-3;

pub fn dequantize_block(b: &[u8], out: &mut [f32]) {
    let (d, m) = (f16_at(b, 0), f16_at(b, 2));
    let qh = u32::from_le_bytes([b[4], b[5], b[6], b[7]]);
    for j in 0..BLOCK / 2 {
        let q = b[8 + j];
        let h0 = ((qh >> j) & 1) << 4;
        let h1 = ((qh >> (j + 16)) & 1) << 4;
        out[j] = ((q & 0xF) as u32 | h0) as f32 * d + m;
        out[j + 16] = ((q >> 4) as u32 | h1) as f32 * d + m;
    }
}

pub fn quantize_block(x: &[f32], b: &mut [u8]) {
    let min = x.iter().copied().fold(f32::MAX, f32::min);
    let max = x.iter().copied().fold(-f32::MAX, f32::max);
    let d = (max - min) / 31.0;
    let id = if d != 0.0 { 1.0 / d } else { 0.0 };
    put_f16(b, 0, d);
    put_f16(b, 2, min);
    let mut qh = 0u32;
    for j in 0..BLOCK / 2 {
        // ggml truncates to u8 without a clamp; (max − min)·id + 0.5 stays below 32.
        let q0 = (((x[j] - min) * id + 0.5) as u32).min(31);
        let q1 = (((x[j + 16] - min) * id + 0.5) as u32).min(31);
        b[8 + j] = ((q0 & 0xF) | (q1 & 0xF) << 4) as u8;
        qh |= (q0 >> 4) << j | (q1 >> 4) << (j + 16);
    }
    b[4..8].copy_from_slice(&qh.to_le_bytes());
}
