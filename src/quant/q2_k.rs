//! `Q2_K`: super-blocks of 256 values, `{ scales: [u8; 16], qs: [u8; 64], d: f16, dmin: f16 }`
//! (84 bytes). Sixteen groups of 16 values each have a 4-bit scale (low nibble of
//! `scales[g]`) and a 4-bit min (high nibble). Each value is 2 bits, as ggml's
//! `dequantize_row_q2_K` reads them: value `i` is bits `2·((i % 128) / 32)` of
//! `qs[32·(i / 128) + i % 32]`, in group `i / 16`. `x = d · sc · q − dmin · m`.
//!
//! Reference quantizer: ggml's `quantize_row_q2_K_ref`: per group, `make_qkx2_quants` (nmax 3,
//! weights |x|, a search over 16 scales minimising the weighted absolute error) gives a scale
//! and a min; scales and mins are quantized to 4 bits against `d = max scale / 15` and
//! `dmin = max min / 15`, then the values against the quantized scale and min. Round trip:
//! bounded by [`ROUNDTRIP_BOUND`] of the super-block's range.

use super::{f16_at, nearest_int, put_f16};

pub const BLOCK: usize = 256;
pub const BYTES: usize = BLOCK / 16 + BLOCK / 4 + 2 + 2;
const _: () = assert!(BYTES == 84);

/// Round-trip bound as a fraction of the super-block's range (`max − min`): with 4 levels a
/// value step is a third of a group's range, so half a step is 1/6; the 4-bit scale can round
/// down by half a step of `d` = max scale / 15 (a third of a level per unit of q) and the
/// 4-bit min by half of max min / 15. Measured on the test data: about 0.17–0.2.
pub const ROUNDTRIP_BOUND: f32 = 0.3;

pub fn dequantize_block(b: &[u8], out: &mut [f32]) {
    let (d, min) = (f16_at(b, 80), f16_at(b, 82));
    let scales = &b[0..16];
    let qs = &b[16..80];
    for (i, o) in out.iter_mut().enumerate().take(BLOCK) {
        let sc = scales[i / 16];
        let (dl, ml) = (d * (sc & 0xF) as f32, min * (sc >> 4) as f32);
        let q = (qs[32 * (i / 128) + i % 32] >> (2 * ((i % 128) / 32))) & 3;
        *o = dl * q as f32 - ml;
    }
}

/// ggml's `make_qkx2_quants`: a scale and a min (returned as `−min ≥ 0`) for `x` with levels
/// `0..=nmax`, searching `nstep + 1` scales around `nmax / (max − min)` for the smallest
/// weighted error (absolute with `use_mad`, squared otherwise). `l` gets the levels.
#[allow(clippy::too_many_arguments)]
pub(crate) fn make_qkx2_quants(nmax: i32, x: &[f32], weights: &[f32], l: &mut [u8], rmin: f32, rdelta: f32, nstep: i32, use_mad: bool) -> (f32, f32) {
    let n = x.len();
    let mut laux = [0u8; 32];
    let (mut min, mut max) = (x[0], x[0]);
    let mut sum_w = weights[0];
    let mut sum_x = sum_w * x[0];
    for i in 1..n {
        if x[i] < min {
            min = x[i];
        }
        if x[i] > max {
            max = x[i];
        }
        sum_w += weights[i];
        sum_x += weights[i] * x[i];
    }
    if min > 0.0 {
        min = 0.0;
    }
    if max == min {
        l[..n].fill(0);
        return (0.0, -min);
    }
    let err = |diff: f32| if use_mad { diff.abs() } else { diff * diff };
    let mut iscale = nmax as f32 / (max - min);
    let mut scale = 1.0 / iscale;
    let mut best_error = 0f32;
    for i in 0..n {
        l[i] = nearest_int(iscale * (x[i] - min)).clamp(0, nmax) as u8;
        best_error += weights[i] * err(scale * l[i] as f32 + min - x[i]);
    }
    if nstep < 1 {
        return (scale, -min);
    }
    for is in 0..=nstep {
        iscale = (rmin + rdelta * is as f32 + nmax as f32) / (max - min);
        let (mut sum_l, mut sum_l2, mut sum_xl) = (0f32, 0f32, 0f32);
        for i in 0..n {
            let li = nearest_int(iscale * (x[i] - min)).clamp(0, nmax);
            laux[i] = li as u8;
            let (w, lf) = (weights[i], li as f32);
            sum_l += w * lf;
            sum_l2 += w * lf * lf;
            sum_xl += w * lf * x[i];
        }
        let det = sum_w * sum_l2 - sum_l * sum_l;
        if det > 0.0 {
            let mut this_scale = (sum_w * sum_xl - sum_x * sum_l) / det;
            let mut this_min = (sum_l2 * sum_x - sum_l * sum_xl) / det;
            if this_min > 0.0 {
                this_min = 0.0;
                this_scale = sum_xl / sum_l2;
            }
            let mut cur_error = 0f32;
            for i in 0..n {
                cur_error += weights[i] * err(this_scale * laux[i] as f32 + this_min - x[i]);
            }
            if cur_error < best_error {
                l[..n].copy_from_slice(&laux[..n]);
                best_error = cur_error;
                scale = this_scale;
                min = this_min;
            }
        }
    }
    (scale, -min)
}

pub fn quantize_block(x: &[f32], b: &mut [u8]) {
    const Q4SCALE: f32 = 15.0;
    let mut l = [0u8; BLOCK];
    let mut scales = [0f32; 16];
    let mut mins = [0f32; 16];
    let (mut max_scale, mut max_min) = (0f32, 0f32);
    for j in 0..16 {
        let xs = &x[16 * j..16 * j + 16];
        let mut w = [0f32; 16];
        for (w, v) in w.iter_mut().zip(xs) {
            *w = v.abs();
        }
        (scales[j], mins[j]) = make_qkx2_quants(3, xs, &w, &mut l[16 * j..16 * j + 16], -0.5, 0.1, 15, true);
        max_scale = max_scale.max(scales[j]);
        max_min = max_min.max(mins[j]);
    }
    let sc = &mut b[0..16];
    if max_scale > 0.0 {
        let iscale = Q4SCALE / max_scale;
        for j in 0..16 {
            sc[j] = nearest_int(iscale * scales[j]) as u8;
        }
        put_f16(b, 80, max_scale / Q4SCALE);
    } else {
        sc.fill(0);
        put_f16(b, 80, 0.0);
    }
    if max_min > 0.0 {
        let iscale = Q4SCALE / max_min;
        for j in 0..16 {
            b[j] |= (nearest_int(iscale * mins[j]) << 4) as u8;
        }
        put_f16(b, 82, max_min / Q4SCALE);
    } else {
        put_f16(b, 82, 0.0);
    }
    let (d, dmin) = (f16_at(b, 80), f16_at(b, 82));
    for j in 0..16 {
        let dl = d * (b[j] & 0xF) as f32;
        if dl == 0.0 {
            continue;
        }
        let dm = dmin * (b[j] >> 4) as f32;
        for ii in 0..16 {
            l[16 * j + ii] = nearest_int((x[16 * j + ii] + dm) / dl).clamp(0, 3) as u8;
        }
    }
    let qs = &mut b[16..80];
    for h in 0..2 {
        for k in 0..32 {
            let j = 128 * h;
            qs[32 * h + k] = l[j + k] | l[j + k + 32] << 2 | l[j + k + 64] << 4 | l[j + k + 96] << 6;
        }
    }
}
