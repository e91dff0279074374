//! `Q4_1`: blocks of 32 values, `{ d: f16, m: f16, qs: [u8; 16] }` (20 bytes); nibbles as in
//! `Q4_0`; `x = d · q + m`.
//!
//! Reference quantizer (ggml `quantize_row_q4_1_ref`): `m = min`, `d = (max − min) / 15`,
//! `q = min(15, trunc((x − m) / d + 0.5))`. Round trip: |error| ≤ d/2 plus f16 rounding of d
//! and m, about 0.5/15 of the block's range.

use super::{f16_at, put_f16};

pub const BLOCK: usize = 32;
pub const BYTES: usize = 4 + BLOCK / 2;
const _: () = assert!(BYTES == 20);

pub fn dequantize_block(b: &[u8], out: &mut [f32]) {
    let (d, m) = (f16_at(b, 0), f16_at(b, 2));
    for j in 0..BLOCK / 2 {
        let q = b[4 + j];
        out[j] = d * (q & 0xF) as f32 + m;
        out[j + 16] = d * (q >> 4) as f32 + m;
    }
}

pub fn quantize_block(x: &[f32], b: &mut [u8]) {
    let min = x.iter().copied().fold(f32::INFINITY, f32::min);
    let max = x.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    let d = (max - min) / 15.0;
    let id = if d != 0.0 { 1.0 / d } else { 0.0 };
    put_f16(b, 0, d);
    put_f16(b, 2, min);
    for j in 0..BLOCK / 2 {
        let q0 = (((x[j] - min) * id + 0.5) as i32).clamp(0, 15) as u8;
        let q1 = (((x[j + 16] - min) * id + 0.5) as i32).clamp(0, 15) as u8;
        b[4 + j] = q0 | q1 << 4;
    }
}
