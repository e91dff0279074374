//! `Q4_0`: blocks of 32 values, `{ d: f16, qs: [u8; 16] }` (18 bytes); byte `j` holds value
//! `j` in its low nibble and value `j + 16` in its high nibble; `x = d · (q − 8)`.
//!
//! Reference quantizer (ggml `quantize_row_q4_0_ref`): `d = m / −8` where `m` is the value of
//! largest magnitude, `q = min(15, trunc(x / d + 8.5))`. Round trip: |error| ≤ d/2 except at
//! the clipped end, where it is ≤ d, i.e. ≤ max|x| / 8.

use super::{f16_at, put_f16};

pub const BLOCK: usize = 32;
pub const BYTES: usize = 2 + BLOCK / 2;
const _: () = assert!(BYTES == 18);

pub fn dequantize_block(b: &[u8], out: &mut [f32]) {
    let d = f16_at(b, 0);
    for j in 0..BLOCK / 2 {
        let q = b[2 + j];
        out[j] = d * ((q & 0xF) as i32 - 8) as f32;
        out[j + 16] = d * ((q >> 4) as i32 - 8) as f32;
    }
}

pub fn quantize_block(x: &[f32], b: &mut [u8]) {
    let (mut amax, mut max) = (0f32, 0f32);
    for &v in x {
        if v.abs() > amax {
            amax = v.abs();
            max = v;
        }
    }
    let d = max / -8.0;
    let id = if d != 0.0 { 1.0 / d } else { 0.0 };
    put_f16(b, 0, d);
    for j in 0..BLOCK / 2 {
        let q0 = ((x[j] * id + 8.5) as i32).clamp(0, 15) as u8;
        let q1 = ((x[j + 16] * id + 8.5) as i32).clamp(0, 15) as u8;
        b[2 + j] = q0 | q1 << 4;
    }
}
