//! `Q6_K`: super-blocks of 256 values, `{ ql: [u8; 128], qh: [u8; 64], scales: [i8; 16], d: f16 }`
//! (210 bytes). Each value is 6 bits: 4 low bits in `ql`, 2 high bits in `qh`, as ggml's
//! `dequantize_row_q6_K` reads them (two halves of 128 values; in a half, `l ∈ 0..32` gives
//! values `l`, `l + 32`, `l + 64`, `l + 96` from `ql[l]` low, `ql[l + 32]` low, `ql[l]` high,
//! `ql[l + 32]` high and bit pairs 0, 2, 4, 6 of `qh[l]`). Every 16 values share an 8-bit
//! scale. `x = d · scale · (q − 32)`.
//!
//! Reference quantizer: a direct form of ggml's: per 16 values `s = m / −32` (`m` the value
//! of largest magnitude), scales quantized to i8 against `d = max|s| / 127`, then the values.
//! Round trip: half a step of the quantized scale plus the scale's own rounding, bounded by
//! [`ROUNDTRIP_BOUND`] of the super-block's range.

use super::{f16_at, put_f16};

pub const BLOCK: usize = 256;
pub const BYTES: usize = BLOCK / 2 + BLOCK / 4 + BLOCK / 16 + 2;
const _: () = assert!(BYTES == 210);

/// Round-trip bound as a fraction of the super-block's range: about one step of 1/64 of a
/// group's range plus the 8-bit scale error.
pub const ROUNDTRIP_BOUND: f32 = 1.0 / 32.0 + 1.0 / 127.0 + 2e-3;

/// (byte of `ql`, shift, byte of `qh`, shift, scale index) of value `i` in a super-block.
pub fn index(i: usize) -> (usize, u32, usize, u32, usize) {
    let (n, r) = (i / 128, i % 128);
    let (quarter, l) = (r / 32, r % 32);
    let ql = 64 * n + l + if quarter % 2 == 1 { 32 } else { 0 };
    let ql_shift = if quarter >= 2 { 4 } else { 0 };
    let qh = 32 * n + l;
    let qh_shift = 2 * quarter as u32;
    let sc = 8 * n + l / 16 + 2 * quarter;
    (ql, ql_shift, qh, qh_shift, sc)
}

pub fn dequantize_block(b: &[u8], out: &mut [f32]) {
    let d = f16_at(b, 208);
    for (i, o) in out.iter_mut().enumerate().take(BLOCK) {
        let (ql, qs, qh, hs, sc) = index(i);
        let q = ((b[ql] >> qs) & 0xF) as i32 | (((b[128 + qh] >> hs) & 3) as i32) << 4;
        *o = d * (b[192 + sc] as i8) as f32 * (q - 32) as f32;
    }
}

pub fn quantize_block(x: &[f32], b: &mut [u8]) {
    let mut group = [0f32; 16];
    for (g, s) in group.iter_mut().enumerate() {
        let (mut amax, mut max) = (0f32, 0f32);
        for i in 0..16 {
            // Value i of group g: groups follow the scale index of `index`.
            let v = x[group_value(g, i)];
            if v.abs() > amax {
                amax = v.abs();
                max = v;
            }
        }
        *s = max / -32.0;
    }
    let amax = group.iter().fold(0f32, |m, v| m.max(v.abs()));
    let d = amax / 127.0;
    put_f16(b, 208, d);
    let d = f16_at(b, 208);
    let mut sc = [0i8; 16];
    for g in 0..16 {
        sc[g] = if d > 0.0 { (group[g] / d).round().clamp(-128.0, 127.0) as i8 } else { 0 };
        b[192 + g] = sc[g] as u8;
    }
    b[..192].fill(0);
    for (i, &v) in x.iter().enumerate().take(BLOCK) {
        let (ql, qs, qh, hs, s) = index(i);
        let step = d * sc[s] as f32;
        let q = if step != 0.0 { ((v / step).round() + 32.0).clamp(0.0, 63.0) as u8 } else { 32 };
        b[ql] |= (q & 0xF) << qs;
        b[128 + qh] |= (q >> 4) << hs;
    }
}

/// Index in the super-block of value `i` (0..16) of scale group `g`.
fn group_value(g: usize, i: usize) -> usize {
    let (n, r) = (g / 8, g % 8);
    let (quarter, half16) = (r / 2, r % 2);
    128 * n + 32 * quarter + 16 * half16 + i
}
