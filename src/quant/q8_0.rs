//! `Q8_0`: blocks of 32 values, `{ d: f16, qs: [i8; 32] }` (34 bytes); `x = d · q`.
//!
//! Reference quantizer (ggml `quantize_row_q8_0_ref`): `d = max|x| / 127`, `q = round(x / d)`.
//! Round trip: |error| ≤ d/2 plus the f16 rounding of d (≤ 2⁻¹¹·127·d), i.e. about
//! 0.5/127 of max|x|.

use super::{f16_at, put_f16, round_away};

pub const BLOCK: usize = 32;
pub const BYTES: usize = 2 + BLOCK;
const _: () = assert!(BYTES == 34);

pub fn dequantize_block(b: &[u8], out: &mut [f32]) {
    let d = f16_at(b, 0);
    for (o, &q) in out.iter_mut().zip(&b[2..BYTES]) {
        *o = d * (q as i8) as f32;
    }
}

pub fn quantize_block(x: &[f32], b: &mut [u8]) {
    let amax = x.iter().fold(0f32, |m, v| m.max(v.abs()));
    let d = amax / 127.0;
    let id = if d != 0.0 { 1.0 / d } else { 0.0 };
    put_f16(b, 0, d);
    for (q, &v) in b[2..BYTES].iter_mut().zip(x) {
        *q = round_away(v * id) as i8 as u8;
    }
}
