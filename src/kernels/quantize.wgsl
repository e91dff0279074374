// Quantize-on-load: f32 / f16 / bf16 weights -> q8_0 or q4_0 blocks in the GPU layout of
// quant.wgsl (body words + packed f16 scales), bit-identical to the CPU reference quantizers
// (src/quant/q8_0.rs, q4_0.rs = ggml's quantize_row_*_ref).
//
// Bit-identical means the same f32 roundings as the CPU. WGSL's division is only accurate to
// 2.5 ulp, f32 -> f16 packing has no specified rounding, and devices may flush subnormals or
// fuse a multiply into a following add. So every rounding step that decides a bit is done in
// integer arithmetic on f32 bit patterns (a small soft-float: `div_rn`, `mul_rn`, `f16_rne`,
// all round-to-nearest-even with subnormals), and the only native float operations left are
// ones that are exact or correctly rounded on every implementation and cannot be contracted:
// the q4_0 `p + 8.5` (p comes from integer ops through a bitcast; a flushed subnormal p
// truncates to the same integer) and q8_0's round-half-away (`v - trunc(v)` is exact).
// Infinite weights quantize as on the CPU; NaN weights are out of scope (their blocks may
// differ: the CPU's f32::max skips NaN).
//
// One invocation per pair of blocks (64 values): it writes both blocks' body words and the
// one scale word that holds their two f16 scales. Blocks are numbered row-major over the
// whole matrix; a dispatch covers `p.pairs` pairs starting at block `p.block0` (even) of the
// destination, reading the source from its start (the caller binds the slice).
//
// Defines: Q8_0 | Q4_0 (the format); SRC_F16 | SRC_BF16 (source words hold two halves; else
// one f32 per word).

struct Params {
    block0: u32,  // first destination block of this dispatch (even)
    blocks: u32,  // blocks in this dispatch
    pairs: u32,   // ceil(blocks / 2)
    _pad: u32,
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> src: array<u32>;
@group(0) @binding(2) var<storage, read_write> body: array<u32>;
@group(0) @binding(3) var<storage, read_write> scales: array<u32>;

// ---- the source value i as f32 bits (exact conversions) -------------------------------

fn f16_to_f32_bits(h: u32) -> u32 {
    let s = (h & 0x8000u) << 16u;
    let e = (h >> 10u) & 0x1Fu;
    let m = h & 0x3FFu;
    if (e == 0u) {
        if (m == 0u) {
            return s;
        }
        // Subnormal half m * 2^-24: normalise into an f32.
        let lz = countLeadingZeros(m) - 21u;  // shifts that bring bit 10 to the top of m
        let mm = (m << lz) & 0x3FFu;
        return s | ((113u - lz) << 23u) | (mm << 13u);
    }
    if (e == 31u) {
        return s | 0x7F800000u | (m << 13u);
    }
    return s | ((e + 112u) << 23u) | (m << 13u);
}

fn value_bits(i: u32) -> u32 {
#ifdef SRC_F16
    return f16_to_f32_bits((src[i / 2u] >> (16u * (i % 2u))) & 0xFFFFu);
#else
#ifdef SRC_BF16
    return ((src[i / 2u] >> (16u * (i % 2u))) & 0xFFFFu) << 16u;
#else
    return src[i];
#endif
#endif
}

// ---- soft-float, round to nearest even ------------------------------------------------

// A finite non-zero f32 as sign | mantissa m (bit 23 set, subnormals normalised) | e, with
// value m * 2^(e - 23).
struct Unpacked {
    s: u32,
    e: i32,
    m: u32,
}

fn unpack(b: u32) -> Unpacked {
    let s = b & 0x80000000u;
    let ex = (b >> 23u) & 0xFFu;
    let m = b & 0x7FFFFFu;
    if (ex == 0u) {
        let lz = countLeadingZeros(m) - 8u;
        return Unpacked(s, -126 - i32(lz), m << lz);
    }
    return Unpacked(s, i32(ex) - 127, m | 0x800000u);
}

fn is_zero(b: u32) -> bool {
    return (b & 0x7FFFFFFFu) == 0u;
}

fn is_inf(b: u32) -> bool {
    return (b & 0x7FFFFFFFu) == 0x7F800000u;
}

// Rounds sign s, value (m + sticky) * 2^(e - 25) with m's leading 1 at bit 25 to f32 bits.
fn round_pack(s: u32, e: i32, m: u32, sticky: bool) -> u32 {
    if (e >= -126) {
        var q = m >> 2u;
        let rem = m & 3u;
        if (rem > 2u || (rem == 2u && (sticky || (q & 1u) == 1u))) {
            q = q + 1u;
        }
        var ee = e;
        if (q == 0x1000000u) {
            q = q >> 1u;
            ee = ee + 1;
        }
        if (ee > 127) {
            return s | 0x7F800000u;
        }
        return s | (u32(ee + 127) << 23u) | (q & 0x7FFFFFu);
    }
    // Subnormal result: units of 2^-149, i.e. m >> (2 + (-126 - e)).
    let sh = u32(-126 - e) + 2u;
    if (sh >= 27u) {
        return s;  // below half the smallest subnormal
    }
    var q = m >> sh;
    let rem = m & ((1u << sh) - 1u);
    let half = 1u << (sh - 1u);
    if (rem > half || (rem == half && (sticky || (q & 1u) == 1u))) {
        q = q + 1u;
    }
    return s | q;  // q = 2^23 is the smallest normal's encoding
}

// a / b, correctly rounded; b != 0, neither NaN.
fn div_rn(a: u32, b: u32) -> u32 {
    let s = (a ^ b) & 0x80000000u;
    if (is_zero(a) || is_inf(b)) {
        return s;
    }
    if (is_inf(a)) {
        return s | 0x7F800000u;
    }
    let ua = unpack(a);
    let ub = unpack(b);
    var rem = ua.m;
    var e = ua.e - ub.e;
    if (rem < ub.m) {
        rem = rem << 1u;
        e = e - 1;
    }
    // 26 quotient bits (the leading 1 lands on bit 25), then the remainder is the sticky bit.
    var q = 0u;
    for (var i = 0u; i < 26u; i = i + 1u) {
        q = q << 1u;
        if (rem >= ub.m) {
            rem = rem - ub.m;
            q = q | 1u;
        }
        rem = rem << 1u;
    }
    return round_pack(s, e, q, rem != 0u);
}

fn is_nan(b: u32) -> bool {
    return (b & 0x7FFFFFFFu) > 0x7F800000u;
}

// a * b, correctly rounded; neither NaN (0 · inf is NaN).
fn mul_rn(a: u32, b: u32) -> u32 {
    let s = (a ^ b) & 0x80000000u;
    if (is_inf(a) || is_inf(b)) {
        return select(s | 0x7F800000u, 0x7FC00000u, is_zero(a) || is_zero(b));
    }
    if (is_zero(a) || is_zero(b)) {
        return s;
    }
    let ua = unpack(a);
    let ub = unpack(b);
    // 48-bit product hi:lo of the 24-bit mantissas, from 16-bit limbs.
    let a0 = ua.m & 0xFFFFu;
    let a1 = ua.m >> 16u;
    let b0 = ub.m & 0xFFFFu;
    let b1 = ub.m >> 16u;
    let ll = a0 * b0;
    let mid = a0 * b1 + a1 * b0;
    let lo = ll + ((mid & 0xFFFFu) << 16u);
    let hi = a1 * b1 + (mid >> 16u) + select(0u, 1u, lo < ll);
    // Leading 1 at bit 47 or 46: shift it to bit 25.
    let top = hi >= 0x8000u;
    let sh = select(21u, 22u, top);
    let m = (hi << (32u - sh)) | (lo >> sh);
    let sticky = (lo & ((1u << sh) - 1u)) != 0u;
    return round_pack(s, ua.e + ub.e + select(0, 1, top), m, sticky);
}

// f32 bits -> f16 bits, round to nearest even (what `half::f16::from_f32` does).
fn f16_rne(b: u32) -> u32 {
    let s = (b >> 16u) & 0x8000u;
    let ex = (b >> 23u) & 0xFFu;
    let m = b & 0x7FFFFFu;
    if (ex == 0xFFu) {
        return s | 0x7C00u | select(0u, 0x200u | (m >> 13u), m != 0u);
    }
    let e = i32(ex) - 112;  // the f16 biased exponent
    if (e >= 31) {
        return s | 0x7C00u;
    }
    if (e <= 0) {
        if (e < -10) {
            return s;
        }
        let mm = m | 0x800000u;
        let sh = u32(14 - e);
        var q = mm >> sh;
        let rem = mm & ((1u << sh) - 1u);
        let half = 1u << (sh - 1u);
        if (rem > half || (rem == half && (q & 1u) == 1u)) {
            q = q + 1u;
        }
        return s | q;
    }
    var q = (u32(e) << 10u) | (m >> 13u);
    let rem = m & 0x1FFFu;
    if (rem > 0x1000u || (rem == 0x1000u && (q & 1u) == 1u)) {
        q = q + 1u;  // a carry into the exponent is right, up to infinity
    }
    return s | q;
}

// ---- the formats ------------------------------------------------------------------------

#ifdef Q8_0
// q8_0: d = amax / 127, id = 1 / d, q = round-half-away(x * id). Body: 8 words of i8.
fn block(blk: u32) -> u32 {
    let base = blk * 32u;
    var amax = 0u;  // |x| bits: unsigned order = magnitude order for finite values
    for (var j = 0u; j < 32u; j = j + 1u) {
        amax = max(amax, value_bits(base + j) & 0x7FFFFFFFu);
    }
    let d = div_rn(amax, bitcast<u32>(127.0));
    var id = 0u;
    if (!is_zero(d)) {
        id = div_rn(bitcast<u32>(1.0), d);
    }
    for (var w = 0u; w < 8u; w = w + 1u) {
        var word = 0u;
        for (var b = 0u; b < 4u; b = b + 1u) {
            let vb = mul_rn(value_bits(base + 4u * w + b), id);
            let v = bitcast<f32>(vb);
            let t = trunc(v);
            let r = t + select(0.0, sign(v), abs(v - t) >= 0.5);
            // Rust's saturating `as i8`: ±inf -> 127 / -128, NaN -> 0.
            var q = clamp(i32(r), -128, 127);
            if (is_inf(vb)) {
                q = select(127, -128, vb >> 31u == 1u);
            }
            if (is_nan(vb)) {
                q = 0;
            }
            word = word | ((u32(q) & 0xFFu) << (8u * b));
        }
        body[(p.block0 + blk) * 8u + w] = word;
    }
    return f16_rne(d);
}
#endif

#ifdef Q4_0
// min(15, max(0, trunc(p + 8.5))) with Rust's saturating `as i32` (+inf -> 15, -inf and
// NaN -> 0).
fn q4(pb: u32) -> u32 {
    if (is_inf(pb)) {
        return select(15u, 0u, pb >> 31u == 1u);
    }
    if (is_nan(pb)) {
        return 0u;
    }
    return u32(clamp(i32(bitcast<f32>(pb) + 8.5), 0, 15));
}

// q4_0: m = the value of largest magnitude (first on ties), d = m / -8, id = 1 / d,
// q = min(15, trunc(x * id + 8.5)). Body: 4 words; byte j = q[j] | q[j + 16] << 4.
fn block(blk: u32) -> u32 {
    let base = blk * 32u;
    var amax = 0u;
    var mx = 0u;
    for (var j = 0u; j < 32u; j = j + 1u) {
        let v = value_bits(base + j);
        if ((v & 0x7FFFFFFFu) > amax) {
            amax = v & 0x7FFFFFFFu;
            mx = v;
        }
    }
    let d = div_rn(mx, bitcast<u32>(-8.0));
    var id = 0u;
    if (!is_zero(d)) {
        id = div_rn(bitcast<u32>(1.0), d);
    }
    for (var w = 0u; w < 4u; w = w + 1u) {
        var word = 0u;
        for (var b = 0u; b < 4u; b = b + 1u) {
            let j = 4u * w + b;
            let lo = q4(mul_rn(value_bits(base + j), id));
            let hi = q4(mul_rn(value_bits(base + j + 16u), id));
            word = word | ((lo | (hi << 4u)) << (8u * b));
        }
        body[(p.block0 + blk) * 4u + w] = word;
    }
    return f16_rne(d);
}
#endif

@compute @workgroup_size(64)
fn quantize(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let pair = gid.x + gid.y * nwg.x * 64u;
    if (pair >= p.pairs) {
        return;
    }
    let b0 = 2u * pair;
    let lo = block(b0);
    var hi = 0u;
    if (b0 + 1u < p.blocks) {
        hi = block(b0 + 1u);
    }
    scales[(p.block0 + b0) / 2u] = lo | (hi << 16u);
}
