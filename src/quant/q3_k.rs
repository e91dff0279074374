//! `Q3_K`: super-blocks of 256 values, `{ hmask: [u8; 32], qs: [u8; 64], scales: [u8; 12],
//! d: f16 }` (110 bytes). Each value is 3 bits: 2 low bits in `qs` (value `i` is bits
//! `2·((i % 128) / 32)` of `qs[32·(i / 128) + i % 32]`, as in `Q2_K`) and a high bit in
//! `hmask` (bit `4·(i / 128) + (i % 128) / 32` of `hmask[i % 32]`). Sixteen groups of 16
//! values each have a 6-bit scale `sc` stored with a +32 offset: group `g`'s low 4 bits are
//! the low nibble of `scales[g]` for `g < 8`, the high nibble of `scales[g − 8]` otherwise; its
//! high 2 bits are bits `2·(g / 4)` of `scales[8 + g % 4]`.
//! `x = d · (sc − 32) · (q − 4)`, where `q − 4 = low bits − (high bit ? 0 : 4)`.
//!
//! Reference quantizer: ggml's `quantize_row_q3_K_ref`: per group, `make_q3_quants` (levels
//! −4..3, an iterative weighted least-squares refinement of the scale), scales quantized to
//! 6 bits against `d = max scale / −32`, then the values against the quantized scales. Round
//! trip: bounded by [`ROUNDTRIP_BOUND`] of the super-block's range.

use super::{f16_at, nearest_int, put_f16};

pub const BLOCK: usize = 256;
pub const BYTES: usize = BLOCK / 8 + BLOCK / 4 + 12 + 2;
const _: () = assert!(BYTES == 110);

/// Byte offset of `d` (split off on the GPU: the other 108 bytes are 27 words).
pub const D_OFFSET: usize = 108;

/// Round-trip bound as a fraction of the super-block's range: 8 signed levels put a step at
/// about max|x| / 4 of a group, half a step is 1/8 of max|x| (≤ the range), plus the 6-bit
/// scale's rounding and the clipping of the positive end at level 3. Measured on the test
/// data: about 0.1–0.13.
pub const ROUNDTRIP_BOUND: f32 = 0.2;

/// The signed 6-bit scale of group `g` (−32..31).
pub fn scale(g: usize, sc: &[u8]) -> i32 {
    let lo = if g < 8 { sc[g] & 0xF } else { sc[g - 8] >> 4 };
    let hi = (sc[8 + g % 4] >> (2 * (g / 4))) & 3;
    (lo | hi << 4) as i32 - 32
}

pub fn dequantize_block(b: &[u8], out: &mut [f32]) {
    let d = f16_at(b, D_OFFSET);
    let (hmask, qs, sc) = (&b[0..32], &b[32..96], &b[96..108]);
    for (i, o) in out.iter_mut().enumerate().take(BLOCK) {
        let (n, j, l) = (i / 128, (i % 128) / 32, i % 32);
        let low = ((qs[32 * n + l] >> (2 * j)) & 3) as i32;
        let high = hmask[l] & (1 << (4 * n + j)) != 0;
        let dl = d * scale(i / 16, sc) as f32;
        *o = dl * (low - if high { 0 } else { 4 }) as f32;
    }
}

/// ggml's `make_q3_quants` with `do_rmse`: levels `−nmax..nmax−1` (stored `+ nmax` in `l`)
/// and a scale refined by weighted least squares (weights x²).
fn make_q3_quants(nmax: i32, x: &[f32], l: &mut [i8]) -> f32 {
    let n = x.len();
    let (mut max, mut amax) = (0f32, 0f32);
    for &v in x {
        if v.abs() > amax {
            amax = v.abs();
            max = v;
        }
    }
    if amax < 1e-15 {
        l[..n].fill(0);
        return 0.0;
    }
    let iscale = -(nmax as f32) / max;
    let (mut sumlx, mut suml2) = (0f32, 0f32);
    for i in 0..n {
        let li = nearest_int(iscale * x[i]).clamp(-nmax, nmax - 1);
        l[i] = li as i8;
        let w = x[i] * x[i];
        sumlx += w * x[i] * li as f32;
        suml2 += w * li as f32 * li as f32;
    }
    for _ in 0..5 {
        let mut changed = 0;
        for i in 0..n {
            let w = x[i] * x[i];
            let li = l[i] as f32;
            let mut slx = sumlx - w * x[i] * li;
            if slx > 0.0 {
                let mut sl2 = suml2 - w * li * li;
                let new_l = nearest_int(x[i] * sl2 / slx).clamp(-nmax, nmax - 1);
                if new_l != l[i] as i32 {
                    slx += w * x[i] * new_l as f32;
                    sl2 += w * new_l as f32 * new_l as f32;
                    if sl2 > 0.0 && slx * slx * suml2 > sumlx * sumlx * sl2 {
                        l[i] = new_l as i8;
                        sumlx = slx;
                        suml2 = sl2;
                        changed += 1;
                    }
                }
            }
        }
        if changed == 0 {
            break;
        }
    }
    for v in l[..n].iter_mut() {
        *v += nmax as i8;
    }
    if suml2 > 0.0 { sumlx / suml2 } else { 0.0 }
}

pub fn quantize_block(x: &[f32], b: &mut [u8]) {
    let mut l = [0i8; BLOCK];
    let mut scales = [0f32; 16];
    let (mut max_scale, mut amax) = (0f32, 0f32);
    for j in 0..16 {
        scales[j] = make_q3_quants(4, &x[16 * j..16 * j + 16], &mut l[16 * j..16 * j + 16]);
        if scales[j].abs() > amax {
            amax = scales[j].abs();
            max_scale = scales[j];
        }
    }
    b[96..108].fill(0);
    if max_scale != 0.0 {
        let iscale = -32.0 / max_scale;
        for j in 0..16 {
            // ggml stores nearest_int in an int8_t before clamping.
            let lv = (nearest_int(iscale * scales[j]) as i8).clamp(-32, 31) as i32 + 32;
            if j < 8 {
                b[96 + j] = (lv & 0xF) as u8;
            } else {
                b[96 + j - 8] |= ((lv & 0xF) << 4) as u8;
            }
            b[96 + 8 + j % 4] |= ((lv >> 4) << (2 * (j / 4))) as u8;
        }
        put_f16(b, D_OFFSET, 1.0 / iscale);
    } else {
        put_f16(b, D_OFFSET, 0.0);
    }
    let d = f16_at(b, D_OFFSET);
    for j in 0..16 {
        let dl = d * scale(j, &b[96..108]) as f32;
        if dl == 0.0 {
            continue;
        }
        for ii in 0..16 {
            l[16 * j + ii] = (nearest_int(x[16 * j + ii] / dl).clamp(-4, 3) + 4) as i8;
        }
    }
    b[0..32].fill(0);
    for (j, v) in l.iter_mut().enumerate() {
        if *v > 3 {
            b[j % 32] |= 1 << (j / 32);
            *v -= 4;
        }
    }
    for h in 0..2 {
        for k in 0..32 {
            let j = 128 * h;
            let q = |i: usize| l[i] as u8;
            b[32 + 32 * h + k] = q(j + k) | q(j + k + 32) << 2 | q(j + k + 64) << 4 | q(j + k + 96) << 6;
        }
    }
}
