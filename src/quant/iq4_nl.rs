//! `IQ4_NL`: blocks of 32 values, `{ d: f16, qs: [u8; 16] }` (18 bytes), nibbles placed as in
//! `Q4_0` (byte `j`: value `j` low, value `j + 16` high), each an index into the non-linear
//! table [`KVALUES`] (ggml's `kvalues_iq4nl`): `x = d · KVALUES[q]`.
//!
//! Reference quantizer: ggml's `quantize_row_iq4_nl_ref` (`quantize_row_iq4_nl_impl` with one
//! 32-value block, no importance weights, no scale search): levels picked for
//! `d₀ = max / −127` (`max` the value of largest magnitude) by nearest table entry (ties to
//! the upper entry, ggml's `best_index_int8`), then `d` = the least-squares scale for those
//! levels with weights x². Round trip: bounded by [`ROUNDTRIP_BOUND`] of max|x|.

use super::{f16_at, put_f16};

pub const BLOCK: usize = 32;
pub const BYTES: usize = 2 + BLOCK / 2;
const _: () = assert!(BYTES == 18);

/// ggml's `kvalues_iq4nl`.
pub const KVALUES: [i8; 16] = [-127, -104, -83, -65, -49, -35, -22, -10, 1, 13, 25, 38, 53, 69, 89, 113];

/// Round-trip bound as a fraction of the block's max|x|: the widest table gap (−127 → −104,
/// 23 of 127) halved, about 0.09; the least-squares `d` moves the levels by a few percent
/// and can stretch the outermost one (−127 vs 113 on the other side). Measured on the test
/// data: about 0.06–0.08.
pub const ROUNDTRIP_BOUND: f32 = 0.13;

pub fn dequantize_block(b: &[u8], out: &mut [f32]) {
    let d = f16_at(b, 0);
    for j in 0..BLOCK / 2 {
        let q = b[2 + j];
        out[j] = d * KVALUES[(q & 0xF) as usize] as f32;
        out[j + 16] = d * KVALUES[(q >> 4) as usize] as f32;
    }
}

/// ggml's `best_index_int8`: the index of the sorted table entry nearest `x` (ties to the
/// upper entry), by a branch-free binary search on midpoints (scaled by 2 to stay exact).
fn best_index(x: f32) -> usize {
    let x2 = x + x;
    let mut idx = 0;
    let mut step = KVALUES.len() >> 1;
    while step > 0 {
        let j = idx + step;
        if x2 >= (KVALUES[j - 1] as i32 + KVALUES[j] as i32) as f32 {
            idx = j;
        }
        step >>= 1;
    }
    idx
}

pub fn quantize_block(x: &[f32], b: &mut [u8]) {
    b[..BYTES].fill(0);
    let (mut amax, mut max) = (0f32, 0f32);
    for &v in x {
        if v.abs() > amax {
            amax = v.abs();
            max = v;
        }
    }
    let mut l = [0u8; BLOCK];
    let mut d = 0f32;
    if amax >= 1e-15 {
        let id = 1.0 / (max / KVALUES[0] as f32);
        let (mut sumqx, mut sumq2) = (0f32, 0f32);
        for (lj, &v) in l.iter_mut().zip(x) {
            let i = best_index(id * v);
            *lj = i as u8;
            let (q, w) = (KVALUES[i] as f32, v * v);
            sumqx += w * q * v;
            sumq2 += w * q * q;
        }
        d = if sumq2 > 0.0 { sumqx / sumq2 } else { 0.0 };
    }
    put_f16(b, 0, d);
    for j in 0..BLOCK / 2 {
        b[2 + j] = l[j] | l[j + 16] << 4;
    }
}
