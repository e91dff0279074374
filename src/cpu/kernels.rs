//! Single-threaded CPU kernels for the CPU backend (BERT-style encoders).
//!
//! Every public kernel has two implementations selected at compile time:
//! - `wasm32` with `simd128` enabled: explicit `core::arch::wasm32` intrinsics (stable SIMD128
//!   only, no relaxed-simd);
//! - every other target: portable Rust written so that LLVM auto-vectorises it.
//!
//! Both paths use the same algorithms and, for the linear layers, the same summation order, so
//! they agree within float rounding. Lengths are asserted at entry (callers guarantee them; a
//! panic is a caller bug); slices may be longer than needed.
//!
//! # Linear layers
//! `y = x · wᵀ (+ bias)` with `w` a PyTorch `Linear` weight `[n, k]`. The kernels work on
//! panels of [`PANEL`] output columns: a panel of `w` is laid out k-major
//! (`panel[t * PANEL + c] = w[(j0 + c) * k + t]`), and a 4-row × 8-column register tile
//! broadcasts one `x` value against two 4-lane weight vectors per step (8 accumulators, which
//! fits V8's 16 xmm registers without spills; 4×12, 3×16 and 6×8 tiles spill and run at
//! 25–28 GFLOP/s, dot-product tiles at 18–22, against ≈ 40 for this one under Node 20).
//! Unpacked weights (`f32`, `f16`, `q8_0`) are converted into a stack panel of at most
//! [`PANEL`] × 512 floats (16 KiB) on the fly and reused for all `m` rows, so the whole matrix
//! is never expanded. [`pack_f32`] produces the whole-matrix packed layout once at load time
//! for [`linear_f32_packed`], which skips that per-call packing (≈ 15 % faster at m = 31).

#[cfg(all(target_arch = "wasm32", target_feature = "simd128"))]
use core::arch::wasm32::*;

/// Output columns per weight panel (and per register tile).
pub const PANEL: usize = 8;
/// Rows of `x` per register tile.
const MR: usize = 4;
/// k-block of the on-the-fly panels (a multiple of 32, so q8_0 blocks never straddle it).
const KB: usize = 512;

// ---------------------------------------------------------------------------------------------
// Linear: shared driver
// ---------------------------------------------------------------------------------------------

fn check_linear(x: &[f32], bias: Option<&[f32]>, y: &[f32], m: usize, n: usize, k: usize) {
    assert!(x.len() >= m * k, "linear: x too short");
    assert!(y.len() >= m * n, "linear: y too short");
    if let Some(b) = bias {
        assert!(b.len() >= n, "linear: bias too short");
    }
}

/// Runs every (panel, k-block) of the product; `fill` writes the k-major panel for output
/// columns `j0..j0+PANEL` (zero past `n`) and k range `k0..k0+kl` into its buffer.
fn linear_with_fill<F: FnMut(&mut [f32], usize, usize, usize)>(
    x: &[f32],
    bias: Option<&[f32]>,
    y: &mut [f32],
    m: usize,
    n: usize,
    k: usize,
    mut fill: F,
) {
    if m == 0 || n == 0 {
        return;
    }
    let mut buf = [0.0f32; PANEL * KB];
    let mut j0 = 0;
    while j0 < n {
        if k == 0 {
            panel_rows(x, &[], bias, y, m, n, k, j0, 0, 0);
        }
        let mut k0 = 0;
        while k0 < k {
            let kl = KB.min(k - k0);
            let panel = &mut buf[..kl * PANEL];
            fill(panel, j0, k0, kl);
            panel_rows(x, panel, bias, y, m, n, k, j0, k0, kl);
            k0 += kl;
        }
        j0 += PANEL;
    }
}

/// Accumulates `x[:, k0..k0+kl] · panel` into `y[:, j0..j0+PANEL]` for all rows (initialising
/// from the bias when `k0 == 0`).
#[allow(clippy::too_many_arguments)]
fn panel_rows(x: &[f32], panel: &[f32], bias: Option<&[f32]>, y: &mut [f32], m: usize, n: usize, k: usize, j0: usize, k0: usize, kl: usize) {
    assert!(j0 < n && k0 + kl <= k);
    let cols = PANEL.min(n - j0);
    let init = if k0 == 0 {
        let mut init = [0.0f32; PANEL];
        if let Some(b) = bias {
            init[..cols].copy_from_slice(&b[j0..j0 + cols]);
        }
        Some(init)
    } else {
        None
    };
    let g = Gemm { xs: k, ps: PANEL, ys: n, kl, cols, init };
    gemm_panel(&x[k0..], panel, &mut y[j0..], m, &g);
}

/// Strides and shape of one panel product (see [`gemm_panel`]).
struct Gemm {
    /// Row stride of `x`.
    xs: usize,
    /// Row stride of the panel (`PANEL` for packed panels).
    ps: usize,
    /// Row stride of `y`.
    ys: usize,
    /// Reduction length.
    kl: usize,
    /// Valid output columns (1..=PANEL).
    cols: usize,
    /// Initial accumulator (bias) or `None` to accumulate onto `y`.
    init: Option<[f32; PANEL]>,
}

/// `y[i*ys + c] (=|+=) sum_{t<kl} x[i*xs + t] * panel[t*ps + c]` for `i < m`, `c < cols`.
/// Every bound the register tiles rely on is asserted here.
fn gemm_panel(x: &[f32], panel: &[f32], y: &mut [f32], m: usize, g: &Gemm) {
    if m == 0 {
        return;
    }
    assert!(g.cols >= 1 && g.cols <= PANEL);
    assert!(g.kl == 0 || x.len() >= (m - 1) * g.xs + g.kl, "gemm_panel: x too short");
    assert!(g.kl == 0 || panel.len() >= (g.kl - 1) * g.ps + PANEL, "gemm_panel: panel too short");
    assert!(y.len() >= (m - 1) * g.ys + g.cols, "gemm_panel: y too short");
    let mut i0 = 0;
    while i0 + MR <= m {
        tile::<MR>(x, panel, y, g, i0);
        i0 += MR;
    }
    match m - i0 {
        1 => tile::<1>(x, panel, y, g, i0),
        2 => tile::<2>(x, panel, y, g, i0),
        3 => tile::<3>(x, panel, y, g, i0),
        _ => {}
    }
}

/// Register tile: rows `i0..i0+R` × `PANEL` columns, k-loop of broadcast `x` × two 4-lane
/// panel vectors. Bounds were asserted in [`gemm_panel`] (i0 + R <= m).
#[cfg(all(target_arch = "wasm32", target_feature = "simd128"))]
#[inline(always)]
fn tile<const R: usize>(x: &[f32], panel: &[f32], y: &mut [f32], g: &Gemm, i0: usize) {
    let (xs, ys, ps) = (g.xs, g.ys, g.ps);
    let xp = x[i0 * xs..].as_ptr();
    let yrow = &mut y[i0 * ys..];
    let yp = yrow.as_mut_ptr();
    let pp = panel.as_ptr();
    let full = g.cols == PANEL;
    // SAFETY: x rows hold kl floats at stride xs, the panel kl rows of PANEL floats at stride
    // ps, y rows `cols` floats at stride ys (PANEL when `full`), see the asserts in gemm_panel.
    unsafe {
        let mut acc = [[f32x4_splat(0.0); 2]; R];
        for (r, a) in acc.iter_mut().enumerate() {
            if let Some(init) = &g.init {
                a[0] = v128_load(init.as_ptr() as *const v128);
                a[1] = v128_load(init.as_ptr().add(4) as *const v128);
            } else if full {
                a[0] = v128_load(yp.add(r * ys) as *const v128);
                a[1] = v128_load(yp.add(r * ys + 4) as *const v128);
            } else {
                let mut tmp = [0.0f32; PANEL];
                tmp[..g.cols].copy_from_slice(&yrow[r * ys..r * ys + g.cols]);
                a[0] = v128_load(tmp.as_ptr() as *const v128);
                a[1] = v128_load(tmp.as_ptr().add(4) as *const v128);
            }
        }
        for t in 0..g.kl {
            let b0 = v128_load(pp.add(t * ps) as *const v128);
            let b1 = v128_load(pp.add(t * ps + 4) as *const v128);
            for (r, a) in acc.iter_mut().enumerate() {
                let av = v128_load32_splat(xp.add(r * xs + t) as *const u32);
                a[0] = f32x4_add(a[0], f32x4_mul(av, b0));
                a[1] = f32x4_add(a[1], f32x4_mul(av, b1));
            }
        }
        for (r, a) in acc.iter().enumerate() {
            if full {
                v128_store(yp.add(r * ys) as *mut v128, a[0]);
                v128_store(yp.add(r * ys + 4) as *mut v128, a[1]);
            } else {
                let mut tmp = [0.0f32; PANEL];
                v128_store(tmp.as_mut_ptr() as *mut v128, a[0]);
                v128_store(tmp.as_mut_ptr().add(4) as *mut v128, a[1]);
                yrow[r * ys..r * ys + g.cols].copy_from_slice(&tmp[..g.cols]);
            }
        }
    }
}

/// Portable register tile (same arithmetic order as the SIMD one).
#[cfg(not(all(target_arch = "wasm32", target_feature = "simd128")))]
#[inline(always)]
fn tile<const R: usize>(x: &[f32], panel: &[f32], y: &mut [f32], g: &Gemm, i0: usize) {
    let (xs, ys, ps, kl, cols) = (g.xs, g.ys, g.ps, g.kl, g.cols);
    let mut acc = [[0.0f32; PANEL]; R];
    let mut xr: [&[f32]; R] = [&[]; R];
    for r in 0..R {
        let o = (i0 + r) * ys;
        match &g.init {
            Some(init) => acc[r] = *init,
            None => acc[r][..cols].copy_from_slice(&y[o..o + cols]),
        }
        let o = (i0 + r) * xs;
        xr[r] = &x[o..o + kl];
    }
    for t in 0..kl {
        let b: &[f32; PANEL] = panel[t * ps..t * ps + PANEL].try_into().expect("panel row");
        for r in 0..R {
            let av = xr[r][t];
            for c in 0..PANEL {
                acc[r][c] += av * b[c];
            }
        }
    }
    for (r, a) in acc.iter().enumerate() {
        let o = (i0 + r) * ys;
        y[o..o + cols].copy_from_slice(&a[..cols]);
    }
}

/// Fills a k-major panel from row loaders: `load4(row, t)` returns `w[row][t..t+4]` as f32
/// and `load1(row, t)` one value (rows `< n`, `t + 4 <= k` resp. `t < k` guaranteed).
#[cfg(all(target_arch = "wasm32", target_feature = "simd128"))]
#[inline(always)]
fn fill_panel<L4: Fn(usize, usize) -> v128, L1: Fn(usize, usize) -> f32>(panel: &mut [f32], n: usize, j0: usize, k0: usize, kl: usize, load4: L4, load1: L1) {
    assert!(panel.len() >= kl * PANEL);
    let zero = f32x4_splat(0.0);
    let kl4 = kl & !3;
    let mut t = 0;
    while t < kl4 {
        for g in 0..PANEL / 4 {
            let mut v = [zero; 4];
            for (r, vr) in v.iter_mut().enumerate() {
                let row = j0 + 4 * g + r;
                if row < n {
                    *vr = load4(row, k0 + t);
                }
            }
            let t0 = i32x4_shuffle::<0, 4, 1, 5>(v[0], v[1]);
            let t1 = i32x4_shuffle::<2, 6, 3, 7>(v[0], v[1]);
            let t2 = i32x4_shuffle::<0, 4, 1, 5>(v[2], v[3]);
            let t3 = i32x4_shuffle::<2, 6, 3, 7>(v[2], v[3]);
            let o = [
                i32x4_shuffle::<0, 1, 4, 5>(t0, t2),
                i32x4_shuffle::<2, 3, 6, 7>(t0, t2),
                i32x4_shuffle::<0, 1, 4, 5>(t1, t3),
                i32x4_shuffle::<2, 3, 6, 7>(t1, t3),
            ];
            for (i, oi) in o.iter().enumerate() {
                let dst = &mut panel[(t + i) * PANEL + 4 * g..(t + i) * PANEL + 4 * g + 4];
                // SAFETY: dst is exactly 4 floats.
                unsafe { v128_store(dst.as_mut_ptr() as *mut v128, *oi) };
            }
        }
        t += 4;
    }
    for t in kl4..kl {
        for c in 0..PANEL {
            let row = j0 + c;
            panel[t * PANEL + c] = if row < n { load1(row, k0 + t) } else { 0.0 };
        }
    }
}

/// Portable panel fill from a scalar loader `load1(row, t)`.
#[cfg(not(all(target_arch = "wasm32", target_feature = "simd128")))]
#[inline(always)]
fn fill_panel_scalar<L1: Fn(usize, usize) -> f32>(panel: &mut [f32], n: usize, j0: usize, k0: usize, kl: usize, load1: L1) {
    for c in 0..PANEL {
        let row = j0 + c;
        for t in 0..kl {
            panel[t * PANEL + c] = if row < n { load1(row, k0 + t) } else { 0.0 };
        }
    }
}

/// Loads 4 f32 from a slice of at least 4 values.
#[cfg(all(target_arch = "wasm32", target_feature = "simd128"))]
#[inline(always)]
fn load4_f32(s: &[f32]) -> v128 {
    let s = &s[..4];
    // SAFETY: s holds 4 floats.
    unsafe { v128_load(s.as_ptr() as *const v128) }
}

// ---------------------------------------------------------------------------------------------
// Linear: public entry points
// ---------------------------------------------------------------------------------------------

/// `y[i*n + j] = sum_t x[i*k + t] * w[j*k + t] (+ bias[j])` for `i < m`, `j < n`
/// (`w` is a PyTorch `Linear` weight `[out = n, in = k]`).
pub fn linear_f32(x: &[f32], w: &[f32], bias: Option<&[f32]>, y: &mut [f32], m: usize, n: usize, k: usize) {
    check_linear(x, bias, y, m, n, k);
    assert!(w.len() >= n * k, "linear_f32: w too short");
    #[cfg(all(target_arch = "wasm32", target_feature = "simd128"))]
    let fill = |p: &mut [f32], j0: usize, k0: usize, kl: usize| {
        fill_panel(p, n, j0, k0, kl, |r, t| load4_f32(&w[r * k + t..]), |r, t| w[r * k + t])
    };
    #[cfg(not(all(target_arch = "wasm32", target_feature = "simd128")))]
    let fill = |p: &mut [f32], j0: usize, k0: usize, kl: usize| fill_panel_scalar(p, n, j0, k0, kl, |r, t| w[r * k + t]);
    linear_with_fill(x, bias, y, m, n, k, fill);
}

/// Packs a `[n, k]` f32 weight for [`linear_f32_packed`].
///
/// Layout: `ceil(n / PANEL)` panels of `PANEL` (= 8) output columns, each `k * PANEL` floats,
/// k-major: `packed[p * k * PANEL + t * PANEL + c] = w[(p * PANEL + c) * k + t]`, zero for
/// columns `>= n`. Length `ceil(n / PANEL) * PANEL * k`.
pub fn pack_f32(w: &[f32], n: usize, k: usize) -> Vec<f32> {
    assert!(w.len() >= n * k, "pack_f32: w too short");
    let np = n.div_ceil(PANEL);
    let mut out = vec![0.0f32; np * PANEL * k];
    for j in 0..n {
        let (p, c) = (j / PANEL, j % PANEL);
        for t in 0..k {
            out[p * k * PANEL + t * PANEL + c] = w[j * k + t];
        }
    }
    out
}

/// [`linear_f32`] with the weight pre-packed by [`pack_f32`] (same `n`, `k`).
pub fn linear_f32_packed(x: &[f32], packed: &[f32], bias: Option<&[f32]>, y: &mut [f32], m: usize, n: usize, k: usize) {
    check_linear(x, bias, y, m, n, k);
    let np = n.div_ceil(PANEL);
    assert!(packed.len() >= np * PANEL * k, "linear_f32_packed: packed too short");
    if m == 0 {
        return;
    }
    for p in 0..np {
        let j0 = p * PANEL;
        if k == 0 {
            panel_rows(x, &[], bias, y, m, n, k, j0, 0, 0);
        }
        let mut k0 = 0;
        while k0 < k {
            let kl = KB.min(k - k0);
            let base = p * k * PANEL + k0 * PANEL;
            panel_rows(x, &packed[base..base + kl * PANEL], bias, y, m, n, k, j0, k0, kl);
            k0 += kl;
        }
    }
}

/// Converts an IEEE-754 half bit pattern to f32 (exact, including subnormals, inf and NaN).
#[inline(always)]
pub fn f16_to_f32(h: u16) -> f32 {
    let h = h as u32;
    let em = (h & 0x7fff) << 13;
    let mut bits = (f32::from_bits(em) * f32::from_bits(0x7780_0000)).to_bits();
    if em >= 0x0f80_0000 {
        bits |= 0x7f80_0000;
    }
    f32::from_bits(bits | ((h & 0x8000) << 16))
}

/// Four halves (zero-extended into u32 lanes) to f32, same bit trick as [`f16_to_f32`].
#[cfg(all(target_arch = "wasm32", target_feature = "simd128"))]
#[inline(always)]
fn f16x4_to_f32(h: v128) -> v128 {
    let em = i32x4_shl(v128_and(h, i32x4_splat(0x7fff)), 13);
    let f = f32x4_mul(em, f32x4_splat(f32::from_bits(0x7780_0000)));
    let infnan = v128_and(i32x4_ge(em, i32x4_splat(0x0f80_0000)), i32x4_splat(0x7f80_0000));
    let sign = i32x4_shl(v128_and(h, i32x4_splat(0x8000)), 16);
    v128_or(v128_or(f, infnan), sign)
}

/// Same as [`linear_f32`] with `w` given as IEEE-754 half bit patterns; converted panel by
/// panel (at most `PANEL × 512` values at a time).
pub fn linear_f16(x: &[f32], w: &[u16], bias: Option<&[f32]>, y: &mut [f32], m: usize, n: usize, k: usize) {
    check_linear(x, bias, y, m, n, k);
    assert!(w.len() >= n * k, "linear_f16: w too short");
    #[cfg(all(target_arch = "wasm32", target_feature = "simd128"))]
    let fill = |p: &mut [f32], j0: usize, k0: usize, kl: usize| {
        fill_panel(
            p,
            n,
            j0,
            k0,
            kl,
            |r, t| {
                let s = &w[r * k + t..r * k + t + 4];
                // SAFETY: s holds 4 u16 (8 bytes).
                f16x4_to_f32(unsafe { u32x4_load_extend_u16x4(s.as_ptr()) })
            },
            |r, t| f16_to_f32(w[r * k + t]),
        )
    };
    #[cfg(not(all(target_arch = "wasm32", target_feature = "simd128")))]
    let fill = |p: &mut [f32], j0: usize, k0: usize, kl: usize| fill_panel_scalar(p, n, j0, k0, kl, |r, t| f16_to_f32(w[r * k + t]));
    linear_with_fill(x, bias, y, m, n, k, fill);
}

/// Same as [`linear_f32`] with `w` in GGUF q8_0: `k % 32 == 0`, `qs[j*k + t]` the int8 quant,
/// `d[(j*k + t) / 32]` the f16 bit pattern of the block scale, `w = d * q`. Dequantised panel
/// by panel (exactly: `d * q` is representable in f32).
#[allow(clippy::too_many_arguments)]
pub fn linear_q8_0(x: &[f32], qs: &[i8], d: &[u16], bias: Option<&[f32]>, y: &mut [f32], m: usize, n: usize, k: usize) {
    check_linear(x, bias, y, m, n, k);
    assert!(k % 32 == 0, "linear_q8_0: k must be a multiple of 32");
    assert!(qs.len() >= n * k && d.len() >= n * k / 32, "linear_q8_0: weights too short");
    // Block scales of the panel's rows for the current k-block, converted once per block.
    let scales = |j0: usize, k0: usize, kl: usize| {
        let mut sc = [[0.0f32; KB / 32]; PANEL];
        for (c, row) in sc.iter_mut().enumerate().take(n.saturating_sub(j0)) {
            let b0 = ((j0 + c) * k + k0) / 32;
            for (dst, &h) in row.iter_mut().zip(&d[b0..b0 + kl / 32]) {
                *dst = f16_to_f32(h);
            }
        }
        sc
    };
    #[cfg(all(target_arch = "wasm32", target_feature = "simd128"))]
    let fill = |p: &mut [f32], j0: usize, k0: usize, kl: usize| {
        let sc = scales(j0, k0, kl);
        fill_panel(
            p,
            n,
            j0,
            k0,
            kl,
            |r, t| {
                let i = r * k + t;
                let s = &qs[i..i + 4];
                // SAFETY: s holds 4 bytes.
                let b = unsafe { v128_load32_zero(s.as_ptr() as *const u32) };
                let q = f32x4_convert_i32x4(i32x4_extend_low_i16x8(i16x8_extend_low_i8x16(b)));
                f32x4_mul(q, f32x4_splat(sc[r - j0][(t - k0) / 32]))
            },
            |r, t| qs[r * k + t] as f32 * sc[r - j0][(t - k0) / 32],
        )
    };
    #[cfg(not(all(target_arch = "wasm32", target_feature = "simd128")))]
    let fill = |p: &mut [f32], j0: usize, k0: usize, kl: usize| {
        let sc = scales(j0, k0, kl);
        fill_panel_scalar(p, n, j0, k0, kl, |r, t| qs[r * k + t] as f32 * sc[r - j0][(t - k0) / 32])
    };
    linear_with_fill(x, bias, y, m, n, k, fill);
}

// ---------------------------------------------------------------------------------------------
// Elementwise math (same polynomial in both paths)
// ---------------------------------------------------------------------------------------------

// erf split at |x| = 0.921875 (njuffa's faithfully rounded erff, as in ONNX Runtime MLAS):
// small |x|: erf = x + x·P(x²); large: erf = sign(x)·(1 - exp(-(t + t·Q(t)))), t = min(|x|, 3.925).
const ERF_SPLIT: f32 = 0.921_875;
const ERF_UPPER: f32 = 3.925;
const ERF_SMALL: [f32; 6] = [-5.991_049_7e-4, 4.993_396e-3, -2.676_673_4e-2, 0.112_818_025, -0.376_124_86, 0.128_379_15];
const ERF_BIG: [f32; 7] = [1.729_489_3e-5, -3.832_086_8e-4, 3.883_934_3e-3, -2.425_456e-2, 0.106_777_85, 0.634_846_7, 0.128_717_51];

// tanh(x) ≈ x·P(x²)/Q(x²) on [-7.9, 7.9] (Eigen `generic_fast_tanh_float`, also MLAS).
const TANH_A: [f32; 7] = [-2.760_768_4e-16, 2.000_188e-13, -8.604_672e-11, 5.122_297_3e-8, 1.485_722_4e-5, 6.372_619_5e-4, 4.893_524_6e-3];
const TANH_B: [f32; 4] = [1.198_258_4e-6, 1.185_347_1e-4, 2.268_434_7e-3, 4.893_525e-3];
const TANH_CLAMP: f32 = 7.905_311;

/// `1 + erf(z)`, computed without cancellation for negative `z` (max abs error ≈ 1e-7).
/// Branch-free (both halves evaluated, then selected) so loops over it auto-vectorise.
#[inline(always)]
fn one_plus_erf_scalar(z: f32) -> f32 {
    let t = z.abs();
    let ps = poly5(t * t, &ERF_SMALL);
    let small = 1.0 + (ps * z + z);
    let tc = if t < ERF_UPPER { t } else { ERF_UPPER };
    let pb = poly6(tc, &ERF_BIG);
    let e = exp_scalar(-(pb * tc + tc));
    let e = if t > ERF_UPPER { 0.0 } else { e };
    let big = if z < 0.0 { e } else { 2.0 - e };
    if t > ERF_SPLIT {
        big
    } else {
        small
    }
}

#[inline(always)]
fn tanh_scalar(x: f32) -> f32 {
    let small = x.abs() < 4e-4;
    let xc = x.clamp(-TANH_CLAMP, TANH_CLAMP);
    let x2 = xc * xc;
    let mut p = TANH_A[0];
    for &a in &TANH_A[1..] {
        p = p * x2 + a;
    }
    let mut q = TANH_B[0];
    for &b in &TANH_B[1..] {
        q = q * x2 + b;
    }
    if small {
        x
    } else {
        xc * p / q
    }
}

const EXP_HI: f32 = 88.376_26;
const EXP_LO: f32 = -87.336_55;
const LOG2E: f32 = std::f32::consts::LOG2_E;
const LN2_HI: f32 = 0.693_359_4;
const LN2_LO: f32 = -2.121_944_4e-4;
/// 1.5 · 2²³: `(v + ROUND) - ROUND` rounds `v` (|v| < 2²²) to the nearest integer, ties to
/// even, with two adds that vectorise everywhere (no `floor`/`round` libcall on SSE2).
const ROUND: f32 = 12_582_912.0;
const EXP_P: [f32; 6] = [1.987_569_1e-4, 1.398_199_9e-3, 8.333_452e-3, 4.166_579_6e-2, 0.166_666_66, 0.5];

/// `c[0]·x⁶ + c[1]·x⁵ + … + c[6]` by Estrin's scheme (short dependency chain).
#[inline(always)]
fn poly6(x: f32, c: &[f32; 7]) -> f32 {
    let x2 = x * x;
    let x4 = x2 * x2;
    let q0 = c[5] * x + c[6];
    let q1 = c[3] * x + c[4];
    let q2 = c[1] * x + c[2];
    (q0 + q1 * x2) + (q2 + c[0] * x2) * x4
}

/// `c[0]·x⁵ + … + c[5]` by Estrin's scheme.
#[inline(always)]
fn poly5(x: f32, c: &[f32; 6]) -> f32 {
    let x2 = x * x;
    let x4 = x2 * x2;
    let q0 = c[4] * x + c[5];
    let q1 = c[2] * x + c[3];
    let q2 = c[0] * x + c[1];
    (q0 + q1 * x2) + q2 * x4
}

/// exp(x) (Cephes-style, ≈ 1 ulp); inputs clamped to the finite normal range.
#[inline(always)]
fn exp_scalar(x: f32) -> f32 {
    let x = x.clamp(EXP_LO, EXP_HI);
    let big = x * LOG2E + ROUND;
    let fx = big - ROUND;
    let r = x - fx * LN2_HI - fx * LN2_LO;
    let p = poly5(r, &EXP_P);
    let e = p * (r * r) + r + 1.0;
    // The low mantissa bits of `big` hold the integer fx: 2^fx = (bits - ROUND bits + 127) << 23.
    e * f32::from_bits(big.to_bits().wrapping_add(127u32.wrapping_sub(ROUND.to_bits())) << 23)
}

/// Four lanes of [`poly6`].
#[cfg(all(target_arch = "wasm32", target_feature = "simd128"))]
#[inline(always)]
fn poly6_v(x: v128, c: &[f32; 7]) -> v128 {
    let k = |i: usize| f32x4_splat(c[i]);
    let fma = |a: v128, b: v128, d: v128| f32x4_add(f32x4_mul(a, b), d);
    let x2 = f32x4_mul(x, x);
    let x4 = f32x4_mul(x2, x2);
    let q0 = fma(k(5), x, k(6));
    let q1 = fma(k(3), x, k(4));
    let q2 = fma(k(1), x, k(2));
    f32x4_add(fma(q1, x2, q0), f32x4_mul(fma(k(0), x2, q2), x4))
}

/// Four lanes of [`poly5`].
#[cfg(all(target_arch = "wasm32", target_feature = "simd128"))]
#[inline(always)]
fn poly5_v(x: v128, c: &[f32; 6]) -> v128 {
    let k = |i: usize| f32x4_splat(c[i]);
    let fma = |a: v128, b: v128, d: v128| f32x4_add(f32x4_mul(a, b), d);
    let x2 = f32x4_mul(x, x);
    let x4 = f32x4_mul(x2, x2);
    let q0 = fma(k(4), x, k(5));
    let q1 = fma(k(2), x, k(3));
    let q2 = fma(k(0), x, k(1));
    f32x4_add(fma(q1, x2, q0), f32x4_mul(q2, x4))
}

#[cfg(all(target_arch = "wasm32", target_feature = "simd128"))]
#[inline(always)]
fn horner(x2: v128, c: &[f32]) -> v128 {
    let mut p = f32x4_splat(c[0]);
    for &a in &c[1..] {
        p = f32x4_add(f32x4_mul(p, x2), f32x4_splat(a));
    }
    p
}

/// Four lanes of [`one_plus_erf_scalar`] (both halves evaluated, then selected: branching on
/// the lanes made V8's code slower even when the branch was predictable).
#[cfg(all(target_arch = "wasm32", target_feature = "simd128"))]
#[inline(always)]
fn one_plus_erf_v(z: v128) -> v128 {
    let t = f32x4_abs(z);
    let big = f32x4_gt(t, f32x4_splat(ERF_SPLIT));
    let r_small = || {
        let ps = poly5_v(f32x4_mul(t, t), &ERF_SMALL);
        f32x4_add(f32x4_splat(1.0), f32x4_add(f32x4_mul(ps, z), z))
    };
    let r_big = || {
        let tc = f32x4_pmin(t, f32x4_splat(ERF_UPPER));
        let pb = poly6_v(tc, &ERF_BIG);
        let e = exp_v(f32x4_neg(f32x4_add(f32x4_mul(pb, tc), tc)));
        let e = v128_andnot(e, f32x4_gt(t, f32x4_splat(ERF_UPPER)));
        v128_bitselect(e, f32x4_sub(f32x4_splat(2.0), e), f32x4_lt(z, f32x4_splat(0.0)))
    };
    v128_bitselect(r_big(), r_small(), big)
}

#[cfg(all(target_arch = "wasm32", target_feature = "simd128"))]
#[inline(always)]
fn tanh_v(x: v128) -> v128 {
    let small = f32x4_lt(f32x4_abs(x), f32x4_splat(4e-4));
    let xc = f32x4_pmax(f32x4_splat(-TANH_CLAMP), f32x4_pmin(f32x4_splat(TANH_CLAMP), x));
    let x2 = f32x4_mul(xc, xc);
    let r = f32x4_div(f32x4_mul(xc, horner(x2, &TANH_A)), horner(x2, &TANH_B));
    v128_bitselect(x, r, small)
}

#[cfg(all(target_arch = "wasm32", target_feature = "simd128"))]
#[inline(always)]
fn exp_v(x: v128) -> v128 {
    let x = f32x4_pmax(f32x4_splat(EXP_LO), f32x4_pmin(f32x4_splat(EXP_HI), x));
    let big = f32x4_add(f32x4_mul(x, f32x4_splat(LOG2E)), f32x4_splat(ROUND));
    let fx = f32x4_sub(big, f32x4_splat(ROUND));
    let r = f32x4_sub(f32x4_sub(x, f32x4_mul(fx, f32x4_splat(LN2_HI))), f32x4_mul(fx, f32x4_splat(LN2_LO)));
    let p = poly5_v(r, &EXP_P);
    let e = f32x4_add(f32x4_add(f32x4_mul(p, f32x4_mul(r, r)), r), f32x4_splat(1.0));
    let pow = i32x4_shl(i32x4_add(big, i32x4_splat(127u32.wrapping_sub(ROUND.to_bits()) as i32)), 23);
    f32x4_mul(e, pow)
}

/// Applies `fv` to 4-lane chunks (SIMD) and `fs` to the tail.
#[cfg(all(target_arch = "wasm32", target_feature = "simd128"))]
#[inline(always)]
fn map_inplace<FV: Fn(v128) -> v128, FS: Fn(f32) -> f32>(x: &mut [f32], fv: FV, fs: FS) {
    let mut chunks = x.chunks_exact_mut(4);
    for c in &mut chunks {
        // SAFETY: c holds 4 floats.
        unsafe {
            let v = v128_load(c.as_ptr() as *const v128);
            v128_store(c.as_mut_ptr() as *mut v128, fv(v));
        }
    }
    for v in chunks.into_remainder() {
        *v = fs(*v);
    }
}

/// Exact-erf GELU, elementwise in place: `0.5 * x * (1 + erf(x / sqrt(2)))`.
pub fn gelu_inplace(x: &mut [f32]) {
    const S: f32 = std::f32::consts::FRAC_1_SQRT_2;
    #[cfg(all(target_arch = "wasm32", target_feature = "simd128"))]
    map_inplace(
        x,
        |v| {
            let e = one_plus_erf_v(f32x4_mul(v, f32x4_splat(S)));
            f32x4_mul(f32x4_mul(f32x4_splat(0.5), v), e)
        },
        |v| 0.5 * v * one_plus_erf_scalar(v * S),
    );
    #[cfg(not(all(target_arch = "wasm32", target_feature = "simd128")))]
    for v in x.iter_mut() {
        *v = 0.5 * *v * one_plus_erf_scalar(*v * S);
    }
}

/// tanh, elementwise in place (rational approximation, ≈ 1e-7 absolute error).
pub fn tanh_inplace(x: &mut [f32]) {
    #[cfg(all(target_arch = "wasm32", target_feature = "simd128"))]
    map_inplace(x, tanh_v, tanh_scalar);
    #[cfg(not(all(target_arch = "wasm32", target_feature = "simd128")))]
    for v in x.iter_mut() {
        *v = tanh_scalar(*v);
    }
}

// ---------------------------------------------------------------------------------------------
// Reductions
// ---------------------------------------------------------------------------------------------

#[cfg(all(target_arch = "wasm32", target_feature = "simd128"))]
#[inline(always)]
fn hsum(v: v128) -> f32 {
    (f32x4_extract_lane::<0>(v) + f32x4_extract_lane::<1>(v)) + (f32x4_extract_lane::<2>(v) + f32x4_extract_lane::<3>(v))
}

/// Sum of `f(a[i], b[i])`-style products: dot product of two equal-length slices.
#[inline(always)]
fn dot(a: &[f32], b: &[f32]) -> f32 {
    let n = a.len().min(b.len());
    let (a, b) = (&a[..n], &b[..n]);
    #[cfg(all(target_arch = "wasm32", target_feature = "simd128"))]
    {
        let n8 = n & !7;
        let (mut s0, mut s1) = (f32x4_splat(0.0), f32x4_splat(0.0));
        let mut i = 0;
        while i < n8 {
            // SAFETY: i + 8 <= n for both slices.
            unsafe {
                let (pa, pb) = (a.as_ptr().add(i), b.as_ptr().add(i));
                s0 = f32x4_add(s0, f32x4_mul(v128_load(pa as *const v128), v128_load(pb as *const v128)));
                s1 = f32x4_add(s1, f32x4_mul(v128_load(pa.add(4) as *const v128), v128_load(pb.add(4) as *const v128)));
            }
            i += 8;
        }
        let mut s = hsum(f32x4_add(s0, s1));
        for t in n8..n {
            s += a[t] * b[t];
        }
        s
    }
    #[cfg(not(all(target_arch = "wasm32", target_feature = "simd128")))]
    {
        let mut acc = [0.0f32; 8];
        let mut ca = a.chunks_exact(8);
        let mut cb = b.chunks_exact(8);
        for (x, y) in (&mut ca).zip(&mut cb) {
            for l in 0..8 {
                acc[l] += x[l] * y[l];
            }
        }
        let mut s = ((acc[0] + acc[4]) + (acc[2] + acc[6])) + ((acc[1] + acc[5]) + (acc[3] + acc[7]));
        for (x, y) in ca.remainder().iter().zip(cb.remainder()) {
            s += x * y;
        }
        s
    }
}

/// Sum and sum of squared deviations from `mean` of a row.
#[inline(always)]
fn sum_sq_dev(x: &[f32], mean: f32) -> f32 {
    #[cfg(all(target_arch = "wasm32", target_feature = "simd128"))]
    {
        let mv = f32x4_splat(mean);
        let mut acc = [f32x4_splat(0.0); 2];
        let mut c = x.chunks_exact(8);
        for ch in &mut c {
            // SAFETY: ch holds 8 floats.
            unsafe {
                let a = f32x4_sub(v128_load(ch.as_ptr() as *const v128), mv);
                let b = f32x4_sub(v128_load(ch.as_ptr().add(4) as *const v128), mv);
                acc[0] = f32x4_add(acc[0], f32x4_mul(a, a));
                acc[1] = f32x4_add(acc[1], f32x4_mul(b, b));
            }
        }
        let mut s = hsum(f32x4_add(acc[0], acc[1]));
        for v in c.remainder() {
            s += (v - mean) * (v - mean);
        }
        s
    }
    #[cfg(not(all(target_arch = "wasm32", target_feature = "simd128")))]
    {
        let mut acc = [0.0f32; 8];
        let mut c = x.chunks_exact(8);
        for ch in &mut c {
            for l in 0..8 {
                let d = ch[l] - mean;
                acc[l] += d * d;
            }
        }
        let mut s = acc.iter().sum::<f32>();
        for v in c.remainder() {
            s += (v - mean) * (v - mean);
        }
        s
    }
}

#[inline(always)]
fn sum(x: &[f32]) -> f32 {
    #[cfg(all(target_arch = "wasm32", target_feature = "simd128"))]
    {
        let mut acc = [f32x4_splat(0.0); 2];
        let mut c = x.chunks_exact(8);
        for ch in &mut c {
            // SAFETY: ch holds 8 floats.
            unsafe {
                acc[0] = f32x4_add(acc[0], v128_load(ch.as_ptr() as *const v128));
                acc[1] = f32x4_add(acc[1], v128_load(ch.as_ptr().add(4) as *const v128));
            }
        }
        hsum(f32x4_add(acc[0], acc[1])) + c.remainder().iter().sum::<f32>()
    }
    #[cfg(not(all(target_arch = "wasm32", target_feature = "simd128")))]
    {
        let mut acc = [0.0f32; 8];
        let mut c = x.chunks_exact(8);
        for ch in &mut c {
            for l in 0..8 {
                acc[l] += ch[l];
            }
        }
        acc.iter().sum::<f32>() + c.remainder().iter().sum::<f32>()
    }
}

/// LayerNorm over each row of `n`: `(x - mean) / sqrt(var + eps) * gamma + beta` with the
/// biased variance; rows = `x.len() / n`, results in `out` (same length as `x`).
pub fn layer_norm(x: &[f32], gamma: &[f32], beta: &[f32], out: &mut [f32], n: usize, eps: f32) {
    if n == 0 {
        return;
    }
    assert!(x.len() % n == 0 && out.len() >= x.len(), "layer_norm: bad lengths");
    assert!(gamma.len() >= n && beta.len() >= n, "layer_norm: gamma/beta too short");
    let (gamma, beta) = (&gamma[..n], &beta[..n]);
    for (xr, or) in x.chunks_exact(n).zip(out.chunks_exact_mut(n)) {
        let mean = sum(xr) / n as f32;
        let var = sum_sq_dev(xr, mean) / n as f32;
        let rstd = 1.0 / (var + eps).sqrt();
        #[cfg(all(target_arch = "wasm32", target_feature = "simd128"))]
        {
            let (mv, rv) = (f32x4_splat(mean), f32x4_splat(rstd));
            let n4 = n & !3;
            let mut i = 0;
            while i < n4 {
                // SAFETY: i + 4 <= n for xr, or, gamma and beta.
                unsafe {
                    let v = f32x4_mul(f32x4_sub(v128_load(xr.as_ptr().add(i) as *const v128), mv), rv);
                    let g = v128_load(gamma.as_ptr().add(i) as *const v128);
                    let b = v128_load(beta.as_ptr().add(i) as *const v128);
                    v128_store(or.as_mut_ptr().add(i) as *mut v128, f32x4_add(f32x4_mul(v, g), b));
                }
                i += 4;
            }
            for i in n4..n {
                or[i] = (xr[i] - mean) * rstd * gamma[i] + beta[i];
            }
        }
        #[cfg(not(all(target_arch = "wasm32", target_feature = "simd128")))]
        for i in 0..n {
            or[i] = (xr[i] - mean) * rstd * gamma[i] + beta[i];
        }
    }
}

/// Vector-search scan: `scores[i] = x[i*d..(i+1)*d] · q` for every row of `x`
/// (`rows = x.len() / d`, `x.len()` a multiple of `d`); `scores` may be longer (the rest is left
/// untouched).
pub fn dot_rows(q: &[f32], x: &[f32], scores: &mut [f32], d: usize) {
    if d == 0 {
        return;
    }
    let rows = x.len() / d;
    assert!(x.len() % d == 0 && q.len() >= d && scores.len() >= rows, "dot_rows: bad lengths");
    let q = &q[..d];
    for (s, row) in scores.iter_mut().zip(x.chunks_exact(d)) {
        *s = dot(q, row);
    }
}

// ---------------------------------------------------------------------------------------------
// Attention
// ---------------------------------------------------------------------------------------------

/// Bidirectional multi-head attention with a key padding mask.
///
/// `q`, `k`, `v`, `out`: `[batch, seq, heads * head_dim]`; `mask`: `[batch, seq]`, 0 = padded
/// key (ignored); scale = `1 / sqrt(head_dim)`.
/// `out[b, i, h*hd + d] = sum_j softmax_j(q_i · k_j * scale) v_j[d]` over unmasked keys; a row
/// with no unmasked key gets zeros. Padded keys get probability exactly 0 (their `v` rows must
/// be finite, as they always are for real hidden states).
///
/// Per (batch, head) it runs `S = Q Kᵀ` and `O = P V` through the linear register tile, so it
/// allocates one scratch buffer per call (not per row): `Kᵀ` panels (`ceil8(seq) * head_dim`),
/// the score block (`seq * ceil8(seq)`) and a `seq * 8` panel for a ragged head_dim tail.
#[allow(clippy::too_many_arguments)]
pub fn attention(q: &[f32], k: &[f32], v: &[f32], mask: &[u32], out: &mut [f32], batch: usize, seq: usize, heads: usize, head_dim: usize) {
    let hidden = heads * head_dim;
    let len = batch * seq * hidden;
    assert!(q.len() >= len && k.len() >= len && v.len() >= len && out.len() >= len, "attention: bad lengths");
    assert!(mask.len() >= batch * seq, "attention: mask too short");
    if len == 0 {
        return;
    }
    let hd = head_dim;
    let scale = 1.0 / (hd as f32).sqrt();
    let sp = seq.div_ceil(PANEL) * PANEL;
    let mut scratch = vec![0.0f32; sp * hd + seq * sp + seq * PANEL];
    let (kt, rest) = scratch.split_at_mut(sp * hd);
    let (s, vt) = rest.split_at_mut(seq * sp);
    let zero = Some([0.0f32; PANEL]);
    for b in 0..batch {
        let mrow = &mask[b * seq..(b + 1) * seq];
        let rows = b * seq * hidden..(b + 1) * seq * hidden;
        if mrow.iter().all(|&m| m == 0) {
            out[rows].fill(0.0);
            continue;
        }
        for h in 0..heads {
            let base = b * seq * hidden + h * hd;
            // Kᵀ panels: kt[p*hd*8 + d*8 + c] = k[key p*8 + c][d].
            for p in 0..sp / PANEL {
                let panel = &mut kt[p * hd * PANEL..(p + 1) * hd * PANEL];
                #[cfg(all(target_arch = "wasm32", target_feature = "simd128"))]
                fill_panel(panel, seq, p * PANEL, 0, hd, |r, t| load4_f32(&k[base + r * hidden + t..]), |r, t| k[base + r * hidden + t]);
                #[cfg(not(all(target_arch = "wasm32", target_feature = "simd128")))]
                fill_panel_scalar(panel, seq, p * PANEL, 0, hd, |r, t| k[base + r * hidden + t]);
            }
            // S = Q Kᵀ (all PANEL columns of each panel are written; padding keys give 0).
            for p in 0..sp / PANEL {
                let g = Gemm { xs: hidden, ps: PANEL, ys: sp, kl: hd, cols: PANEL, init: zero };
                gemm_panel(&q[base..], &kt[p * hd * PANEL..], &mut s[p * PANEL..], seq, &g);
            }
            // Row softmax, normalised in place.
            for i in 0..seq {
                softmax_row(&mut s[i * sp..i * sp + seq], mrow, scale);
            }
            // O = P V, eight output columns at a time; V rows serve directly as the panel.
            let mut d0 = 0;
            while d0 < hd {
                let cols = PANEL.min(hd - d0);
                let g = Gemm { xs: sp, ps: hidden, ys: hidden, kl: seq, cols, init: zero };
                if cols == PANEL {
                    gemm_panel(s, &v[base + d0..], &mut out[base + d0..], seq, &g);
                } else {
                    for t in 0..seq {
                        for c in 0..PANEL {
                            vt[t * PANEL + c] = if c < cols { v[base + t * hidden + d0 + c] } else { 0.0 };
                        }
                    }
                    let g = Gemm { ps: PANEL, ..g };
                    gemm_panel(s, vt, &mut out[base + d0..], seq, &g);
                }
                d0 += cols;
            }
        }
    }
}

/// In place: `row[j] = softmax_j(row[j] * scale)` over keys with `mask[j] != 0`, exactly 0
/// for masked keys (the caller guarantees at least one unmasked key).
#[inline(always)]
fn softmax_row(row: &mut [f32], mask: &[u32], scale: f32) {
    let n = row.len();
    let mask = &mask[..n];
    #[cfg(all(target_arch = "wasm32", target_feature = "simd128"))]
    {
        let n4 = n & !3;
        let (sv, ninf) = (f32x4_splat(scale), f32x4_splat(f32::NEG_INFINITY));
        let mut mxv = ninf;
        let mut i = 0;
        while i < n4 {
            // SAFETY: i + 4 <= n for row and mask.
            unsafe {
                let p = row.as_mut_ptr().add(i) as *mut v128;
                let keep = i32x4_ne(v128_load(mask.as_ptr().add(i) as *const v128), i32x4_splat(0));
                let x = v128_bitselect(f32x4_mul(v128_load(p), sv), ninf, keep);
                mxv = f32x4_pmax(mxv, x);
                v128_store(p, x);
            }
            i += 4;
        }
        let mut mx = f32x4_extract_lane::<0>(mxv)
            .max(f32x4_extract_lane::<1>(mxv))
            .max(f32x4_extract_lane::<2>(mxv).max(f32x4_extract_lane::<3>(mxv)));
        for j in n4..n {
            row[j] = if mask[j] != 0 { row[j] * scale } else { f32::NEG_INFINITY };
            mx = mx.max(row[j]);
        }
        let inv = f32x4_splat(1.0 / softmax_exp(row, mx));
        let mut c = row.chunks_exact_mut(4);
        for ch in &mut c {
            // SAFETY: ch holds 4 floats.
            unsafe { v128_store(ch.as_mut_ptr() as *mut v128, f32x4_mul(v128_load(ch.as_ptr() as *const v128), inv)) };
        }
        let inv = f32x4_extract_lane::<0>(inv);
        for x in c.into_remainder() {
            *x *= inv;
        }
    }
    #[cfg(not(all(target_arch = "wasm32", target_feature = "simd128")))]
    {
        let mut mx = f32::NEG_INFINITY;
        for (x, &m) in row.iter_mut().zip(mask) {
            *x = if m != 0 { *x * scale } else { f32::NEG_INFINITY };
            mx = mx.max(*x);
        }
        let inv = 1.0 / softmax_exp(row, mx);
        for x in row.iter_mut() {
            *x *= inv;
        }
    }
}

/// `p[j] = exp(p[j] - mx)` (0 where `p[j]` is -inf); returns the sum.
#[inline(always)]
fn softmax_exp(p: &mut [f32], mx: f32) -> f32 {
    #[cfg(all(target_arch = "wasm32", target_feature = "simd128"))]
    {
        let mv = f32x4_splat(mx);
        let ninf = f32x4_splat(f32::NEG_INFINITY);
        let mut acc = f32x4_splat(0.0);
        let mut c = p.chunks_exact_mut(4);
        for ch in &mut c {
            // SAFETY: ch holds 4 floats.
            unsafe {
                let s = v128_load(ch.as_ptr() as *const v128);
                let e = exp_v(f32x4_sub(s, mv));
                let e = v128_andnot(e, f32x4_eq(s, ninf));
                acc = f32x4_add(acc, e);
                v128_store(ch.as_mut_ptr() as *mut v128, e);
            }
        }
        let mut total = hsum(acc);
        for s in c.into_remainder() {
            *s = if *s == f32::NEG_INFINITY { 0.0 } else { exp_scalar(*s - mx) };
            total += *s;
        }
        total
    }
    #[cfg(not(all(target_arch = "wasm32", target_feature = "simd128")))]
    {
        for s in p.iter_mut() {
            let e = exp_scalar(*s - mx);
            *s = if *s == f32::NEG_INFINITY { 0.0 } else { e };
        }
        sum(p)
    }
}

#[cfg(test)]
mod tests {
    //! Every kernel against a naive f64 reference on seeded random data with ragged sizes.
    use super::*;

    struct Rng(u64);
    impl Rng {
        fn next_u64(&mut self) -> u64 {
            let mut x = self.0;
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            self.0 = x;
            x
        }
        /// Uniform in [-1, 1).
        fn f(&mut self) -> f32 {
            ((self.next_u64() >> 40) as f32 / (1u64 << 24) as f32) * 2.0 - 1.0
        }
        fn vec(&mut self, n: usize) -> Vec<f32> {
            (0..n).map(|_| self.f()).collect()
        }
    }

    fn f16_ref(h: u16) -> f64 {
        let s = if h & 0x8000 != 0 { -1.0 } else { 1.0 };
        let e = ((h >> 10) & 0x1f) as i32;
        let m = (h & 0x3ff) as f64;
        s * match e {
            0 => m * 2f64.powi(-24),
            31 if m == 0.0 => f64::INFINITY,
            31 => f64::NAN,
            _ => (1.0 + m / 1024.0) * 2f64.powi(e - 15),
        }
    }

    fn f16_bits(v: f32) -> u16 {
        // Nearest half by search over the 31744 finite positive patterns is too slow; round
        // through the exponent instead (normals and subnormals, test data only).
        let s: u16 = if v < 0.0 { 0x8000 } else { 0 };
        let a = (v as f64).abs();
        if a < 2f64.powi(-14) {
            return s | (a / 2f64.powi(-24)).round() as u16;
        }
        let e = a.log2().floor() as i32;
        let mant = ((a / 2f64.powi(e) - 1.0) * 1024.0).round() as u32;
        let (e, mant) = if mant == 1024 { (e + 1, 0) } else { (e, mant) };
        s | (((e + 15) as u16) << 10) | mant as u16
    }

    /// Relative-ish error |got - want| / (1 + |want|), max over the slice (NaN counts as inf).
    fn max_err(got: &[f32], want: &[f64]) -> f64 {
        assert_eq!(got.len(), want.len());
        got.iter().zip(want).fold(0.0f64, |e, (g, w)| {
            let d = (*g as f64 - w).abs() / (1.0 + w.abs());
            if d.is_nan() {
                f64::INFINITY
            } else {
                e.max(d)
            }
        })
    }

    fn linear_ref(x: &[f32], w: &dyn Fn(usize) -> f64, bias: Option<&[f32]>, m: usize, n: usize, k: usize) -> Vec<f64> {
        let mut y = vec![0.0f64; m * n];
        for i in 0..m {
            for j in 0..n {
                let mut s = bias.map_or(0.0, |b| b[j] as f64);
                for t in 0..k {
                    s += x[i * k + t] as f64 * w(j * k + t);
                }
                y[i * n + j] = s;
            }
        }
        y
    }

    const MS: [usize; 7] = [1, 2, 3, 4, 5, 31, 33];
    const NS: [usize; 6] = [1, 3, 7, 8, 9, 65];
    const KS: [usize; 8] = [1, 3, 4, 31, 32, 33, 100, 1100];

    /// Max error of linear_f32 and linear_f32_packed over ragged shapes.
    fn check_linear_f32() -> f64 {
        let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
        let mut e = 0.0f64;
        for &m in &MS {
            for &n in &NS {
                for &k in &KS {
                    let x = rng.vec(m * k);
                    let w = rng.vec(n * k);
                    let b = rng.vec(n);
                    for bias in [None, Some(&b[..])] {
                        let want = linear_ref(&x, &|i| w[i] as f64, bias, m, n, k);
                        let mut y = vec![f32::NAN; m * n];
                        linear_f32(&x, &w, bias, &mut y, m, n, k);
                        e = e.max(max_err(&y, &want));
                        let p = pack_f32(&w, n, k);
                        let mut y = vec![f32::NAN; m * n];
                        linear_f32_packed(&x, &p, bias, &mut y, m, n, k);
                        e = e.max(max_err(&y, &want));
                    }
                }
            }
        }
        e
    }

    /// Max error of linear_f16 (reference on the exact half values).
    fn check_linear_f16() -> f64 {
        let mut rng = Rng(0x1234_5678_9abc_def1);
        let mut e = 0.0f64;
        for &m in &MS {
            for &n in &NS {
                for &k in &KS {
                    let x = rng.vec(m * k);
                    let w: Vec<u16> = rng.vec(n * k).iter().map(|&v| f16_bits(v * 2.0)).collect();
                    let b = rng.vec(n);
                    let want = linear_ref(&x, &|i| f16_ref(w[i]), Some(&b), m, n, k);
                    let mut y = vec![f32::NAN; m * n];
                    linear_f16(&x, &w, Some(&b), &mut y, m, n, k);
                    e = e.max(max_err(&y, &want));
                }
            }
        }
        e
    }

    /// Max error of linear_q8_0 (k multiples of 32).
    fn check_linear_q8_0() -> f64 {
        let mut rng = Rng(0x0bad_cafe_dead_beef);
        let mut e = 0.0f64;
        for &m in &MS {
            for &n in &NS {
                for &k in &[32usize, 64, 96, 1056] {
                    let x = rng.vec(m * k);
                    let qs: Vec<i8> = (0..n * k).map(|_| (rng.next_u64() >> 56) as u8 as i8).collect();
                    let d: Vec<u16> = (0..n * k / 32).map(|_| f16_bits(rng.f().abs() * 0.05 + 1e-3)).collect();
                    let b = rng.vec(n);
                    let want = linear_ref(&x, &|i| qs[i] as f64 * f16_ref(d[i / 32]), Some(&b), m, n, k);
                    let mut y = vec![f32::NAN; m * n];
                    linear_q8_0(&x, &qs, &d, Some(&b), &mut y, m, n, k);
                    e = e.max(max_err(&y, &want));
                }
            }
        }
        e
    }

    /// Number of half patterns whose conversion differs from the reference (NaN payload aside).
    fn check_f16_exhaustive() -> f64 {
        let mut bad = 0;
        for h in 0..=u16::MAX {
            let (g, w) = (f16_to_f32(h) as f64, f16_ref(h));
            if !(g == w || (g.is_nan() && w.is_nan())) {
                bad += 1;
            }
        }
        // Also through linear_f16 (SIMD conversion): x = 1, n = 1, k = all finite patterns.
        let hs: Vec<u16> = (0..=u16::MAX).filter(|h| h & 0x7c00 != 0x7c00).collect();
        for &h in &hs {
            let mut y = [0.0f32];
            linear_f16(&[1.0, 1.0, 1.0, 1.0], &[h, 0, 0, 0], None, &mut y, 1, 1, 4);
            if y[0] as f64 != f16_ref(h) {
                bad += 1;
            }
        }
        bad as f64
    }

    fn erf_ref(x: f64) -> f64 {
        let a = x.abs();
        let r = if a < 3.0 {
            let (mut t, mut s, mut n) = (a, a, 0.0f64);
            loop {
                n += 1.0;
                t *= -a * a / n;
                let term = t / (2.0 * n + 1.0);
                s += term;
                if term.abs() < 1e-17 {
                    break;
                }
            }
            s * 2.0 / std::f64::consts::PI.sqrt()
        } else {
            let mut f = a;
            for n in (1..80).rev() {
                f = a + (n as f64 / 2.0) / f;
            }
            1.0 - (-a * a).exp() / std::f64::consts::PI.sqrt() / f
        };
        if x < 0.0 {
            -r
        } else {
            r
        }
    }

    /// Max absolute error of gelu_inplace and tanh_inplace over [-12, 12].
    fn check_gelu_tanh() -> (f64, f64) {
        let xs: Vec<f32> = (0..24001).map(|i| -12.0 + i as f32 * 0.001).chain([0.0, -0.0, 1e-5, -3e-4, 1e-30, 30.0, -30.0]).collect();
        let mut g = xs.clone();
        gelu_inplace(&mut g);
        let mut t = xs.clone();
        tanh_inplace(&mut t);
        let (mut eg, mut et) = (0.0f64, 0.0f64);
        for i in 0..xs.len() {
            let x = xs[i] as f64;
            let gw = 0.5 * x * (1.0 + erf_ref(x / std::f64::consts::SQRT_2));
            eg = eg.max((g[i] as f64 - gw).abs() / (1.0 + gw.abs()));
            et = et.max((t[i] as f64 - x.tanh()).abs());
        }
        (eg, et)
    }

    /// Max error of layer_norm.
    fn check_layer_norm() -> f64 {
        let mut rng = Rng(77);
        let mut e = 0.0f64;
        for &n in &[1usize, 3, 7, 8, 31, 384, 385] {
            let rows = 5;
            let x: Vec<f32> = rng.vec(rows * n).iter().map(|v| v * 3.0 + 0.5).collect();
            let g = rng.vec(n);
            let b = rng.vec(n);
            let mut out = vec![f32::NAN; rows * n];
            layer_norm(&x, &g, &b, &mut out, n, 1e-12);
            let mut want = vec![0.0f64; rows * n];
            for r in 0..rows {
                let row = &x[r * n..(r + 1) * n];
                let mean = row.iter().map(|&v| v as f64).sum::<f64>() / n as f64;
                let var = row.iter().map(|&v| (v as f64 - mean).powi(2)).sum::<f64>() / n as f64;
                for i in 0..n {
                    want[r * n + i] = (row[i] as f64 - mean) / (var + 1e-12).sqrt() * g[i] as f64 + b[i] as f64;
                }
            }
            // n = 1: the variance is 0, output = beta (exactly, both sides).
            e = e.max(max_err(&out, &want));
        }
        e
    }

    /// Max error of attention (ragged seq / head_dim, partially and fully masked rows).
    fn check_attention() -> f64 {
        let mut rng = Rng(4242);
        let mut e = 0.0f64;
        for &(batch, seq, heads, hd) in &[(1usize, 1usize, 1usize, 1usize), (2, 5, 3, 7), (3, 31, 2, 32), (2, 9, 2, 20), (1, 17, 1, 64)] {
            let len = batch * seq * heads * hd;
            let q: Vec<f32> = rng.vec(len).iter().map(|v| v * 3.0).collect();
            let k: Vec<f32> = rng.vec(len).iter().map(|v| v * 3.0).collect();
            let v = rng.vec(len);
            let mut mask = vec![1u32; batch * seq];
            for b in 0..batch {
                for j in 0..seq {
                    if b == 1 {
                        mask[b * seq + j] = (j < seq / 2 + 1) as u32;
                    }
                    if b == 2 {
                        mask[b * seq + j] = 0;
                    }
                }
            }
            let mut out = vec![f32::NAN; len];
            attention(&q, &k, &v, &mask, &mut out, batch, seq, heads, hd);
            let hidden = heads * hd;
            let scale = 1.0 / (hd as f64).sqrt();
            let mut want = vec![0.0f64; len];
            for b in 0..batch {
                for h in 0..heads {
                    for i in 0..seq {
                        let o = (b * seq + i) * hidden + h * hd;
                        let mut s = vec![f64::NEG_INFINITY; seq];
                        for j in 0..seq {
                            if mask[b * seq + j] != 0 {
                                let kj = (b * seq + j) * hidden + h * hd;
                                s[j] = (0..hd).map(|d| q[o + d] as f64 * k[kj + d] as f64).sum::<f64>() * scale;
                            }
                        }
                        let mx = s.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
                        if mx == f64::NEG_INFINITY {
                            continue;
                        }
                        let p: Vec<f64> = s.iter().map(|&x| (x - mx).exp()).collect();
                        let tot: f64 = p.iter().sum();
                        for d in 0..hd {
                            want[o + d] = (0..seq).map(|j| p[j] * v[(b * seq + j) * hidden + h * hd + d] as f64).sum::<f64>() / tot;
                        }
                    }
                }
            }
            e = e.max(max_err(&out, &want));
        }
        e
    }

    /// Max error of dot_rows.
    fn check_dot_rows() -> f64 {
        let mut rng = Rng(99);
        let mut e = 0.0f64;
        for &d in &[1usize, 3, 8, 31, 384, 385] {
            for &n in &[0usize, 1, 5, 17] {
                let q = rng.vec(d);
                let x = rng.vec(n * d);
                let mut s = vec![f32::NAN; n];
                dot_rows(&q, &x, &mut s, d);
                let want: Vec<f64> = (0..n).map(|i| (0..d).map(|t| q[t] as f64 * x[i * d + t] as f64).sum()).collect();
                e = e.max(max_err(&s, &want));
            }
        }
        e
    }


    /// Degenerate shapes: k = 0 (y = bias), m = 0, n = 0, empty attention / dot_rows.
    fn check_edges() -> f64 {
        let mut e = 0.0f64;
        let b = [1.0f32, 2.0, 3.0];
        let mut y = [f32::NAN; 6];
        linear_f32(&[], &[], Some(&b), &mut y, 2, 3, 0);
        e = e.max(max_err(&y, &[1.0, 2.0, 3.0, 1.0, 2.0, 3.0]));
        let mut y = [f32::NAN; 6];
        linear_f32_packed(&[], &pack_f32(&[], 3, 0), None, &mut y, 2, 3, 0);
        e = e.max(max_err(&y, &[0.0; 6]));
        let mut y = [f32::NAN; 3];
        linear_f16(&[], &[], Some(&b), &mut y, 1, 3, 0);
        e = e.max(max_err(&y, &[1.0, 2.0, 3.0]));
        linear_f32(&[], &[1.0; 4], None, &mut [], 0, 2, 2);
        linear_q8_0(&[1.0; 32], &[], &[], None, &mut [], 1, 0, 32);
        attention(&[], &[], &[], &[], &mut [], 0, 5, 2, 4);
        dot_rows(&[1.0], &[], &mut [], 1);
        let mut s = [f32::NAN, 7.0];
        dot_rows(&[1.0, 2.0], &[3.0, 4.0], &mut s, 2);
        e = e.max(max_err(&s, &[11.0, 7.0]));
        e
    }

    #[test]
    fn linear_f32_matches() {
        let e = check_linear_f32();
        assert!(e <= 1e-4, "{e}");
    }
    #[test]
    fn linear_f16_matches() {
        let e = check_linear_f16();
        assert!(e <= 1e-4, "{e}");
    }
    #[test]
    fn linear_q8_0_matches() {
        let e = check_linear_q8_0();
        assert!(e <= 1e-4, "{e}");
    }
    #[test]
    fn f16_exhaustive() {
        assert_eq!(check_f16_exhaustive(), 0.0);
    }
    #[test]
    fn gelu_tanh_accurate() {
        let (g, t) = check_gelu_tanh();
        println!("gelu {g:e} tanh {t:e}");
        assert!(g <= 1e-6 && t <= 1e-6, "gelu {g} tanh {t}");
    }
    #[test]
    fn layer_norm_matches() {
        let e = check_layer_norm();
        assert!(e <= 1e-4, "{e}");
    }
    #[test]
    fn attention_matches() {
        let e = check_attention();
        assert!(e <= 1e-4, "{e}");
    }
    #[test]
    fn degenerate_shapes() {
        let e = check_edges();
        assert!(e == 0.0, "{e}");
    }
    #[test]
    fn dot_rows_matches() {
        let e = check_dot_rows();
        assert!(e <= 1e-4, "{e}");
    }
}
