//! `Q5_0`: blocks of 32 values, `{ d: f16, qh: [u8; 4], qs: [u8; 16] }` (22 bytes). The low
//! 4 bits of value `j` are nibbles as in `Q4_0`; its 5th bit is bit `j` of the little-endian
//! u32 `qh`; `x = d · (q − 16)`.
//!
//! Reference quantizer (ggml `quantize_row_q5_0_ref`): `d = m / −16` (`m` the value of largest
//! magnitude), `q = min(31, trunc(x / d + 16.5))`. Round trip: |error| ≤ d, i.e. ≤ max|x| / 16.

use super::{f16_at, put_f16};

pub const BLOCK: usize = 32;
pub const BYTES: usize = 2 + 4 + BLOCK / 2;
const _: () = assert!(BYTES == 22);

pub fn dequantize_block(b: &[u8], out: &mut [f32]) {
    let d = f16_at(b, 0);
    let qh = u32::from_le_bytes([b[2], b[3], b[4], b[5]]);
    for j in 0..BLOCK / 2 {
        let q = b[6 + j];
        let h0 = ((qh >> j) & 1) << 4;
        let h1 = ((qh >> (j + 16)) & 1) << 4;
        out[j] = d * (((q & 0xF) as u32 | h0) as i32 - 16) as f32;
        out[j + 16] = d * (((q >> 4) as u32 | h1) as i32 - 16) as f32;
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
    let d = max / -16.0;
    let id = if d != 0.0 { 1.0 / d } else { 0.0 };
    put_f16(b, 0, d);
    let mut qh = 0u32;
    for j in 0..BLOCK / 2 {
        let q0 = ((x[j] * id + 16.5) as i32).clamp(0, 31) as u32;
        let q1 = ((x[j + 16] * id + 16.5) as i32).clamp(0, 31) as u32;
        b[6 + j] = ((q0 & 0xF) | (q1 & 0xF) << 4) as u8;
        qh |= ((q0 >> 4) & 1) << j | ((q1 >> 4) & 1) << (j + 16);
    }
    b[2..6].copy_from_slice(&qh.to_le_bytes());
}
