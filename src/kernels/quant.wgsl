// Quantized linear layer: y[m, n] = sum_k x[m, k] * W[n, k] (+ bias[n]), W stored in a
// block format and decoded in registers (never expanded in memory).
//
// W is re-laid for 4-byte reads (src/quant/mod.rs `relayout`, SPEC/quant.md):
//   body:   per block, its bytes without a split-off f16 scale, as u32 words
//           (q8_0 8, q4_0 4, q4_1 5, q5_0 5, q5_1 6, q2_K 21, q3_K 27, q4_K 36, q5_K 44,
//           q6_K 52, iq4_nl 4, awq 16 per 128-value group)
//   scales: the split-off f16 `d` of each block, two per word (q8_0, q4_0, q5_0, q3_K, q6_K,
//           iq4_nl);
//           for awq one word per group: f16 scale | zero << 16; unused otherwise.
// Every format exposes one decoder, dq8(s, q): the 8 values 8q .. 8q+7 of 32-value unit s
// (unit s covers row s / SB, columns 32 (s % SB) ..), so both kernels are format-agnostic,
// and dot8(s, q, xa, xb, xs): their dot product with x (xs = the sum of the 8 x values), with
// the block's scale and offset applied once per octet instead of once per value.
//
// Two entry points:
//   qmatvec  decode, M = 1: T threads per group of R output rows (R = 2, or 4 with ROWS4;
//            R * 256 / T rows per workgroup); each thread walks the rows' work items (8-value
//            octets, or 16 values for NIB16) with stride T (neighbouring lanes take
//            neighbouring items, so x and W loads coalesce) and uses every x load for all R
//            rows; the partial sums are reduced with subgroup operations (SUBGROUPS: shuffle-xor
//            steps for T < SG, subgroupAdd for T = SG, subgroupAdd + shared memory for T > SG)
//            or a shared-memory tree. (R, T) come from `quant::matvec_shape`.
//            Dispatch grid(ceil(N / (R * 256 / T))).
//   qmatmul  prefill / batches: 64x64 output tile per workgroup of 256 threads, each a 4x4
//            register block; K walked one 32-value unit at a time: every thread decodes one
//            octet of W and loads one octet of x into shared memory.
//            Dispatch (ceil(N/64), ceil(M/64)).
//   qmatmul_direct, qmatvec_direct  the same products on CPU adapters, without shared memory
//            or barriers.
//
// Variants (defines): one of Q8_0 Q4_0 Q4_1 Q5_0 Q5_1 Q2_K Q3_K Q4_K Q5_K Q6_K IQ4_NL AWQ, or
// DENSE with F32W / F16W
// (plain weights, k % 32 == 0: the matvec serves dense decode too); X_F16 (x and y are f16,
// accumulation stays f32); BIAS; SUBGROUPS (+ ENABLE_SUBGROUPS on the web); ROWS4; NIB16.
//
// Fusions of the matrix-vector kernel (a decoder layer's one-token products; SPEC/kernels.md):
//   NORM      prologue: x is RMS-normalised first, x / sqrt(mean(x²) + eps) * gamma; every
//             workgroup reduces the row's sum of squares itself (k values from L2) and keeps
//             the normalised row in shared memory (k <= 2048), so the norm needs no dispatch
//             of its own. `aux` is gamma [k].
//   RESIDUAL  epilogue: y = res + x · Wᵀ (+ bias); `aux` is res [n] (the residual stream).
//   GLU       epilogue of a packed gate/up product: W is [2h, k] (gate rows, then up rows),
//             y[j] = act(gate_j) * up_j for j < h, act SiLU, or the tanh GELU with GLU_GELU.
//             A group of T threads owns R / 2 outputs: slots 0 .. R/2 are gate rows, R/2 .. R
//             the matching up rows, so each x load still serves R rows.
// NORM and RESIDUAL share the `aux` binding (AUX), so they do not combine; GLU takes no bias.
#ifdef X_F16
enable f16;
#endif
// Browsers need the extension enabled; Naga (native) rejects the directive.
#ifdef ENABLE_SUBGROUPS
enable subgroups;
#endif

struct Params {
    m: u32,   // rows of x (tokens)
    n: u32,   // output features (rows of W; GLU: 2 × outputs)
    k: u32,   // input features
    sb: u32,  // 32-value units per row: k / 32
    eps: f32, // NORM: the RMSNorm epsilon
    _p0: u32,
    _p1: u32,
    _p2: u32,
}

@group(0) @binding(0) var<uniform> p: Params;
#ifdef X_F16
@group(0) @binding(1) var<storage, read> x: array<vec4<f16>>;      // [m, k]
#else
@group(0) @binding(1) var<storage, read> x: array<vec4<f32>>;      // [m, k]
#endif
#ifdef DENSE
@group(0) @binding(2) var<storage, read> body: array<vec4<u32>>;  // F32W / F16W weights as is
#else
@group(0) @binding(2) var<storage, read> body: array<u32>;
#endif
@group(0) @binding(3) var<storage, read> scales: array<u32>;
#ifdef X_F16
@group(0) @binding(4) var<storage, read_write> y: array<f16>;      // [m, n]
#else
@group(0) @binding(4) var<storage, read_write> y: array<f32>;      // [m, n]
#endif
#ifdef BIAS
@group(0) @binding(5) var<storage, read> bias: array<f32>;         // [n]
#ifdef AUX
@group(0) @binding(6) var<storage, read> aux: array<f32>;          // NORM: gamma [k]; RESIDUAL: res [n]
#endif
#else
#ifdef AUX
@group(0) @binding(5) var<storage, read> aux: array<f32>;          // NORM: gamma [k]; RESIDUAL: res [n]
#endif
#endif

#ifdef NORM
// The normalised x row (k <= 4 * 512), written once by the matvec's prologue: every group's
// x loads then hit shared memory instead of x and gamma in global memory.
var<workgroup> xn: array<vec4<f32>, 512>;
#endif

fn xv(i: u32) -> vec4<f32> {
#ifdef NORM
    return xn[i];
#else
    return vec4<f32>(x[i]);
#endif
}

fn store(i: u32, col: u32, v: f32) {
    var o = v;
#ifdef BIAS
    o = o + bias[col];
#endif
#ifdef RESIDUAL
    o = o + aux[i];
#endif
#ifdef X_F16
    y[i] = f16(o);
#else
    y[i] = o;
#endif
}

struct Oct {
    a: vec4<f32>,
    b: vec4<f32>,
}

// f16 number `i` of the packed scale array.
fn half_at(i: u32) -> f32 {
    let v = unpack2x16float(scales[i >> 1u]);
    return select(v.x, v.y, (i & 1u) == 1u);
}

// Small integers to f32 without an int-to-float conversion (on NVIDIA the conversion runs
// at a quarter of the FP32 rate and bounded the 4-bit matvecs). An unsigned field at bit b
// of a word (b + width <= 23), ANDed out in place and ORed with the exponent of 2^(23-b),
// is the float 2^(23-b) + field exactly; subtracting 2^(23-b) leaves the field. One
// AND+OR and one add per value, mostly without a shift. E(b): the bits of 2^(23-b).
const E0 = 0x4B000000u;   // 2^23
const E4 = 0x49000000u;   // 2^19
const E8 = 0x47000000u;   // 2^15
const E12 = 0x45000000u;  // 2^11
fn fields(v: vec4<u32>, mask: vec4<u32>, e: vec4<u32>, off: vec4<f32>) -> vec4<f32> {
    return bitcast<vec4<f32>>((v & mask) | e) - off;
}
// Already isolated values v < 2^23, minus `sub`.
fn u2f(v: vec4<u32>, sub: f32) -> vec4<f32> {
    return bitcast<vec4<f32>>(v | vec4<u32>(E0)) - (8388608.0 + sub);
}
// Low nibbles of the 4 bytes of w (bytes 0..3), and the high nibbles.
fn lo4(w: u32) -> vec4<f32> {
    return fields(vec4<u32>(w, w, w >> 16u, w >> 16u), vec4<u32>(0xFu, 0xF00u, 0xFu, 0xF00u),
                  vec4<u32>(E0, E8, E0, E8), vec4<f32>(8388608.0, 32768.0, 8388608.0, 32768.0));
}
fn hi4(w: u32) -> vec4<f32> {
    return fields(vec4<u32>(w, w, w >> 16u, w >> 16u), vec4<u32>(0xF0u, 0xF000u, 0xF0u, 0xF000u),
                  vec4<u32>(E4, E12, E4, E12), vec4<f32>(524288.0, 2048.0, 524288.0, 2048.0));
}
// Nibble words w0, w1 (bytes 8h .. 8h+7 of a 4-bit block): low nibbles are values 8h ..
// 8h+7 (x), high nibbles values 16+8h .. 16+8h+7 (xh).
fn nib_dot(w0: u32, w1: u32, x: Oct, xh: Oct) -> f32 {
    return dot(lo4(w0), x.a) + dot(lo4(w1), x.b) + dot(hi4(w0), xh.a) + dot(hi4(w1), xh.b);
}
// The 4 bytes of w as signed 8-bit values (flipping the sign bits makes them u + 128).
fn i8x4(w: u32) -> vec4<f32> {
    let u = w ^ 0x80808080u;
    return fields(vec4<u32>(u, u, u >> 16u, u >> 16u), vec4<u32>(0xFFu, 0xFF00u, 0xFFu, 0xFF00u),
                  vec4<u32>(E0, E8, E0, E8), vec4<f32>(8388736.0, 32896.0, 8388736.0, 32896.0));
}
// Bits b .. b+3 of h as 0/1 values.
fn bits4(h: u32, b: u32) -> vec4<f32> {
    return u2f((vec4<u32>(h) >> (vec4<u32>(b) + vec4<u32>(0u, 1u, 2u, 3u))) & vec4<u32>(1u), 0.0);
}
// The 8 nibbles of w in order (nibble 0 lowest).
fn nib8(w: u32) -> Oct {
    let m = vec4<u32>(0xFu, 0xF0u, 0xF00u, 0xF000u);
    let e = vec4<u32>(E0, E4, E8, E12);
    let o = vec4<f32>(8388608.0, 524288.0, 32768.0, 2048.0);
    return Oct(fields(vec4<u32>(w), m, e, o), fields(vec4<u32>(w >> 16u), m, e, o));
}
// Octet q (values 8q .. 8q+7) of a 32-value block whose 16 nibble bytes start at word w0:
// values 0..15 are the low nibbles of bytes 0..15, values 16..31 the high nibbles.
#ifndef DENSE
fn nibble_octet(w0: u32, q: u32) -> Oct {
    let w = w0 + 2u * (q & 1u);
    let sh = 4u * (q >> 1u);  // branch-free: lanes of one warp take different octets
    return Oct(lo4(body[w] >> sh), lo4(body[w + 1u] >> sh));
}
// Bits 0..1 of each of the 4 bytes of w, and bit 0 of each byte.
fn lo2(w: u32) -> vec4<f32> {
    return fields(vec4<u32>(w, w, w >> 16u, w >> 16u), vec4<u32>(3u, 0x300u, 3u, 0x300u),
                  vec4<u32>(E0, E8, E0, E8), vec4<f32>(8388608.0, 32768.0, 8388608.0, 32768.0));
}
fn lo1(w: u32) -> vec4<f32> {
    return fields(vec4<u32>(w, w, w >> 16u, w >> 16u), vec4<u32>(1u, 0x100u, 1u, 0x100u),
                  vec4<u32>(E0, E8, E0, E8), vec4<f32>(8388608.0, 32768.0, 8388608.0, 32768.0));
}
// Byte i of a block body starting at word base.
fn body_byte(base: u32, i: u32) -> u32 {
    return (body[base + i / 4u] >> (8u * (i % 4u))) & 0xFFu;
}
// q4_K / q5_K: (d · sc, dmin · m) of sub-block j, from the super-block at word base (word 0:
// d | dmin, words 1..3: the 12 scale bytes). ggml get_scale_min_k4, branch-free
// (neighbouring lanes decode different sub-blocks).
fn k4_scale_min(base: u32, j: u32) -> vec2<f32> {
    let dd = unpack2x16float(body[base]);
    let lo = j < 4u;
    let a = body_byte(base + 1u, j + 4u);
    let b = body_byte(base + 1u, j % 4u);  // j for j < 4, j - 4 otherwise
    let c = body_byte(base + 1u, j);
    let sc = select((a & 0xFu) | ((b >> 6u) << 4u), b & 63u, lo);
    let mn = select((a >> 4u) | ((c >> 6u) << 4u), a & 63u, lo);
    return vec2<f32>(dd.x * f32(sc), dd.y * f32(mn));
}
#endif

#ifdef F32W
// Dense f32 weights (no block format): octet q of unit s is two 16-byte loads.
fn dq8(s: u32, q: u32) -> Oct {
    let w = s * 8u + 2u * q;
    return Oct(bitcast<vec4<f32>>(body[w]), bitcast<vec4<f32>>(body[w + 1u]));
}
fn dot8(s: u32, q: u32, xa: vec4<f32>, xb: vec4<f32>, xs: f32) -> f32 {
    let o = dq8(s, q);
    return dot(o.a, xa) + dot(o.b, xb);
}
#endif

#ifdef F16W
// Dense f16 weights: octet q of unit s is one 16-byte load of 8 halves.
fn dq8(s: u32, q: u32) -> Oct {
    let w = body[s * 4u + q];
    return Oct(vec4<f32>(unpack2x16float(w.x), unpack2x16float(w.y)),
               vec4<f32>(unpack2x16float(w.z), unpack2x16float(w.w)));
}
fn dot8(s: u32, q: u32, xa: vec4<f32>, xb: vec4<f32>, xs: f32) -> f32 {
    let o = dq8(s, q);
    return dot(o.a, xa) + dot(o.b, xb);
}
#endif

#ifdef Q8_0
fn dq8(s: u32, q: u32) -> Oct {
    let d = half_at(s);
    let w = s * 8u + 2u * q;
    return Oct(d * i8x4(body[w]), d * i8x4(body[w + 1u]));
}
fn dot8(s: u32, q: u32, xa: vec4<f32>, xb: vec4<f32>, xs: f32) -> f32 {
    let w = s * 8u + 2u * q;
    return half_at(s) * (dot(i8x4(body[w]), xa) + dot(i8x4(body[w + 1u]), xb));
}
#endif

#ifdef Q4_0
fn dq8(s: u32, q: u32) -> Oct {
    let d = half_at(s);
    let o = nibble_octet(s * 4u, q);
    return Oct(d * (o.a - 8.0), d * (o.b - 8.0));
}
fn dot8(s: u32, q: u32, xa: vec4<f32>, xb: vec4<f32>, xs: f32) -> f32 {
    let o = nibble_octet(s * 4u, q);
    return half_at(s) * (dot(o.a, xa) + dot(o.b, xb) - 8.0 * xs);
}
// Matvec item of 16 values (NIB16): half h of block s, both nibbles of its two words.
fn dot16(s: u32, h: u32, x: Oct, xh: Oct, xs: f32) -> f32 {
    let w = s * 4u + 2u * h;
    return half_at(s) * (nib_dot(body[w], body[w + 1u], x, xh) - 8.0 * xs);
}
#endif

#ifdef Q4_1
fn dq8(s: u32, q: u32) -> Oct {
    let dm = unpack2x16float(body[s * 5u]);
    let o = nibble_octet(s * 5u + 1u, q);
    return Oct(dm.x * o.a + dm.y, dm.x * o.b + dm.y);
}
fn dot8(s: u32, q: u32, xa: vec4<f32>, xb: vec4<f32>, xs: f32) -> f32 {
    let dm = unpack2x16float(body[s * 5u]);
    let o = nibble_octet(s * 5u + 1u, q);
    return dm.x * (dot(o.a, xa) + dot(o.b, xb)) + dm.y * xs;
}
fn dot16(s: u32, h: u32, x: Oct, xh: Oct, xs: f32) -> f32 {
    let dm = unpack2x16float(body[s * 5u]);
    let w = s * 5u + 1u + 2u * h;
    return dm.x * nib_dot(body[w], body[w + 1u], x, xh) + dm.y * xs;
}
#endif

#ifdef Q5_0
fn dq8(s: u32, q: u32) -> Oct {
    let d = half_at(s);
    let qh = body[s * 5u];
    let o = nibble_octet(s * 5u + 1u, q);
    let a = o.a + 16.0 * bits4(qh, 8u * q) - 16.0;
    let b = o.b + 16.0 * bits4(qh, 8u * q + 4u) - 16.0;
    return Oct(d * a, d * b);
}
fn dot8(s: u32, q: u32, xa: vec4<f32>, xb: vec4<f32>, xs: f32) -> f32 {
    let qh = body[s * 5u];
    let o = nibble_octet(s * 5u + 1u, q);
    let a = o.a + 16.0 * bits4(qh, 8u * q);
    let b = o.b + 16.0 * bits4(qh, 8u * q + 4u);
    return half_at(s) * (dot(a, xa) + dot(b, xb) - 16.0 * xs);
}
#endif

#ifdef Q4_K
fn dq8(s: u32, q: u32) -> Oct {
    let base = (s / 8u) * 36u;
    let j = s % 8u;
    let dm = k4_scale_min(base, j);
    let d = dm.x;
    let m = dm.y;
    // Sub-blocks 2i, 2i+1 share 32 bytes: low nibbles for 2i, high for 2i+1.
    let w = base + 4u + 8u * (j / 2u) + 2u * q;
    let sh = 4u * (j & 1u);
    return Oct(d * lo4(body[w] >> sh) - m, d * lo4(body[w + 1u] >> sh) - m);
}
fn dot8(s: u32, q: u32, xa: vec4<f32>, xb: vec4<f32>, xs: f32) -> f32 {
    let o = dq8(s, q);
    return dot(o.a, xa) + dot(o.b, xb);
}
#endif

#ifdef Q5_1
// Body: word 0 d | m, word 1 qh (5th bits), words 2..5 the nibbles.
fn q5_1_octet(s: u32, q: u32) -> Oct {
    let qh = body[s * 6u + 1u];
    let o = nibble_octet(s * 6u + 2u, q);
    return Oct(o.a + 16.0 * bits4(qh, 8u * q), o.b + 16.0 * bits4(qh, 8u * q + 4u));
}
fn dq8(s: u32, q: u32) -> Oct {
    let dm = unpack2x16float(body[s * 6u]);
    let o = q5_1_octet(s, q);
    return Oct(dm.x * o.a + dm.y, dm.x * o.b + dm.y);
}
fn dot8(s: u32, q: u32, xa: vec4<f32>, xb: vec4<f32>, xs: f32) -> f32 {
    let dm = unpack2x16float(body[s * 6u]);
    let o = q5_1_octet(s, q);
    return dm.x * (dot(o.a, xa) + dot(o.b, xb)) + dm.y * xs;
}
#endif

#ifdef IQ4_NL
// ggml kvalues_iq4nl.
var<private> IQ4NL_VALUES: array<f32, 16> = array<f32, 16>(
    -127.0, -104.0, -83.0, -65.0, -49.0, -35.0, -22.0, -10.0, 1.0, 13.0, 25.0, 38.0, 53.0, 69.0, 89.0, 113.0);
// Table values of the 4 nibbles of w at bits 0, 8, 16, 24.
fn iq4nl4(w: u32) -> vec4<f32> {
    return vec4<f32>(IQ4NL_VALUES[w & 0xFu], IQ4NL_VALUES[(w >> 8u) & 0xFu],
                     IQ4NL_VALUES[(w >> 16u) & 0xFu], IQ4NL_VALUES[(w >> 24u) & 0xFu]);
}
// Octet q of block s as table values: nibbles placed as in q4_0.
fn iq4nl_octet(s: u32, q: u32) -> Oct {
    let w = s * 4u + 2u * (q & 1u);
    let sh = 4u * (q >> 1u);
    return Oct(iq4nl4(body[w] >> sh), iq4nl4(body[w + 1u] >> sh));
}
fn dq8(s: u32, q: u32) -> Oct {
    let d = half_at(s);
    let o = iq4nl_octet(s, q);
    return Oct(d * o.a, d * o.b);
}
fn dot8(s: u32, q: u32, xa: vec4<f32>, xb: vec4<f32>, xs: f32) -> f32 {
    let o = iq4nl_octet(s, q);
    return half_at(s) * (dot(o.a, xa) + dot(o.b, xb));
}
#endif

#ifdef Q2_K
// Super-block body (21 words): words 0..3 the 16 scale bytes (low nibble scale, high min),
// words 4..19 qs, word 20 d | dmin. Unit j = s % 8 of a super-block: half j / 4, bit pair
// j % 4 of qs bytes 32 (j / 4) + l; octet q covers l = 8q .. 8q+7, group 2j + q / 2.
fn dq8(s: u32, q: u32) -> Oct {
    let base = (s / 8u) * 21u;
    let j = s % 8u;
    let dd = unpack2x16float(body[base + 20u]);
    let sc = body_byte(base, 2u * j + q / 2u);
    let d = dd.x * f32(sc & 0xFu);
    let m = dd.y * f32(sc >> 4u);
    let w = base + 4u + 8u * (j / 4u) + 2u * q;
    let sh = 2u * (j % 4u);
    return Oct(d * lo2(body[w] >> sh) - m, d * lo2(body[w + 1u] >> sh) - m);
}
fn dot8(s: u32, q: u32, xa: vec4<f32>, xb: vec4<f32>, xs: f32) -> f32 {
    let base = (s / 8u) * 21u;
    let j = s % 8u;
    let dd = unpack2x16float(body[base + 20u]);
    let sc = body_byte(base, 2u * j + q / 2u);
    let w = base + 4u + 8u * (j / 4u) + 2u * q;
    let sh = 2u * (j % 4u);
    let t = dot(lo2(body[w] >> sh), xa) + dot(lo2(body[w + 1u] >> sh), xb);
    return dd.x * f32(sc & 0xFu) * t - dd.y * f32(sc >> 4u) * xs;
}
#endif

#ifdef Q3_K
// Super-block body (27 words, d split off): words 0..7 hmask, 8..23 qs, 24..26 the 12 scale
// bytes. Unit j = s % 8: half j / 4, bit pair j % 4 of qs bytes 32 (j / 4) + l, high bit j of
// hmask byte l (set: +0, clear: -4); octet q covers l = 8q .. 8q+7, group g = 2j + q / 2 with
// its 6-bit scale (low nibble of byte g % 8 (high for g >= 8), bits 2 (g / 4) of byte
// 8 + g % 4), stored + 32.
fn q3_k_octet(s: u32, q: u32) -> Oct {
    let base = (s / 8u) * 27u;
    let j = s % 8u;
    let w = base + 8u + 8u * (j / 4u) + 2u * q;
    let sh = 2u * (j % 4u);
    let hw = base + 2u * q;
    let a = lo2(body[w] >> sh) + 4.0 * lo1(body[hw] >> j) - 4.0;
    let b = lo2(body[w + 1u] >> sh) + 4.0 * lo1(body[hw + 1u] >> j) - 4.0;
    return Oct(a, b);
}
fn q3_k_scale(s: u32, q: u32) -> f32 {
    let base = (s / 8u) * 27u + 24u;
    let g = 2u * (s % 8u) + q / 2u;
    let lo = (body_byte(base, g % 8u) >> (4u * (g / 8u))) & 0xFu;
    let hi = (body_byte(base, 8u + g % 4u) >> (2u * (g / 4u))) & 3u;
    return half_at(s / 8u) * (f32(lo | (hi << 4u)) - 32.0);
}
fn dq8(s: u32, q: u32) -> Oct {
    let d = q3_k_scale(s, q);
    let o = q3_k_octet(s, q);
    return Oct(d * o.a, d * o.b);
}
fn dot8(s: u32, q: u32, xa: vec4<f32>, xb: vec4<f32>, xs: f32) -> f32 {
    let o = q3_k_octet(s, q);
    return q3_k_scale(s, q) * (dot(o.a, xa) + dot(o.b, xb));
}
#endif

#ifdef Q5_K
// Super-block body (44 words): word 0 d | dmin, words 1..3 the scale bytes (as q4_K), words
// 4..11 qh, 12..43 qs. Sub-block j = s % 8: nibbles of qs bytes 32 (j / 2) + l (low for even
// j), 5th bit = bit j of qh byte l; octet q covers l = 8q .. 8q+7.
fn q5_k_octet(s: u32, q: u32) -> Oct {
    let base = (s / 8u) * 44u;
    let j = s % 8u;
    let w = base + 12u + 8u * (j / 2u) + 2u * q;
    let sh = 4u * (j & 1u);
    let hw = base + 4u + 2u * q;
    return Oct(lo4(body[w] >> sh) + 16.0 * lo1(body[hw] >> j), lo4(body[w + 1u] >> sh) + 16.0 * lo1(body[hw + 1u] >> j));
}
fn dq8(s: u32, q: u32) -> Oct {
    let dm = k4_scale_min((s / 8u) * 44u, s % 8u);
    let o = q5_k_octet(s, q);
    return Oct(dm.x * o.a - dm.y, dm.x * o.b - dm.y);
}
fn dot8(s: u32, q: u32, xa: vec4<f32>, xb: vec4<f32>, xs: f32) -> f32 {
    let dm = k4_scale_min((s / 8u) * 44u, s % 8u);
    let o = q5_k_octet(s, q);
    return dm.x * (dot(o.a, xa) + dot(o.b, xb)) - dm.y * xs;
}
#endif

#ifdef Q6_K
fn dq8(s: u32, q: u32) -> Oct {
    let sbk = s / 8u;
    let base = sbk * 52u;
    let j = s % 8u;
    let hlf = j / 4u;
    let quarter = j % 4u;
    let d = half_at(sbk);
    // values l = 8q .. 8q+7 of this quarter: ql bytes 64 half + 32 (quarter & 1) + l,
    // shifted by 4 for quarters 2, 3; qh bytes 128 + 32 half + l, bit pair `quarter`.
    let wl = base + (64u * hlf + 32u * (quarter & 1u) + 8u * q) / 4u;
    let wh = base + (128u + 32u * hlf + 8u * q) / 4u;
    let ls = 4u * (quarter / 2u);
    let hs = 2u * quarter;
    let sci = 8u * hlf + q / 2u + 2u * quarter;
    let sc = f32(extractBits(i32(body[base + 48u + sci / 4u]), 8u * (sci % 4u), 8u));
    let m4 = vec4<u32>(0xFu);
    let m2 = vec4<u32>(3u);
    let sh = vec4<u32>(0u, 8u, 16u, 24u);
    let la = (vec4<u32>(body[wl]) >> (sh + vec4<u32>(ls))) & m4;
    let lb = (vec4<u32>(body[wl + 1u]) >> (sh + vec4<u32>(ls))) & m4;
    let ha = (vec4<u32>(body[wh]) >> (sh + vec4<u32>(hs))) & m2;
    let hb = (vec4<u32>(body[wh + 1u]) >> (sh + vec4<u32>(hs))) & m2;
    let ds = d * sc;
    return Oct(ds * u2f(la | (ha << vec4<u32>(4u)), 32.0), ds * u2f(lb | (hb << vec4<u32>(4u)), 32.0));
}
fn dot8(s: u32, q: u32, xa: vec4<f32>, xb: vec4<f32>, xs: f32) -> f32 {
    let o = dq8(s, q);
    return dot(o.a, xa) + dot(o.b, xb);
}
#endif

#ifdef AWQ
fn dq8(s: u32, q: u32) -> Oct {
    // One word per octet, nibbles in k order; one meta word per 128-value group (4 units).
    let mw = scales[s / 4u];
    let sc = unpack2x16float(mw).x;
    let z = f32((mw >> 16u) & 0xFu);
    let o = nib8(body[s * 4u + q]);
    return Oct(sc * (o.a - z), sc * (o.b - z));
}
fn dot8(s: u32, q: u32, xa: vec4<f32>, xb: vec4<f32>, xs: f32) -> f32 {
    let mw = scales[s / 4u];
    let o = nib8(body[s * 4u + q]);
    return unpack2x16float(mw).x * (dot(o.a, xa) + dot(o.b, xb) - f32((mw >> 16u) & 0xFu) * xs);
}
#endif

// ---------------------------------------------------------------------------------------
// Matrix-vector (decode).

// Threads per row group, fixed at pipeline creation: a power of two ≤ 256.
override T: u32 = 32u;
// The device's fixed subgroup size (SUBGROUPS only).
override SG: u32 = 32u;
const WG: u32 = 256u;
// Rows per group of T threads: every x load serves R rows (ROWS4: 4, else 2).
#ifdef ROWS4
const R: u32 = 4u;
#else
const R: u32 = 2u;
#endif
var<workgroup> red: array<f32, 1024>;  // [R][WG] partial sums (shared-memory reduction)

// One work item of the row walk: its x values are loaded once and used for every row.
#ifdef NIB16
// 4-bit formats: items of 16 values (half h of a block: both nibbles of two words), so
// each weight word is loaded once, by one lane.
struct Item { u: u32, h: u32, xl: Oct, xh: Oct, xs: f32 }
fn item(i: u32) -> Item {
    let u = i / 2u;
    let h = i % 2u;
    let xl = Oct(xv(8u * u + 2u * h), xv(8u * u + 2u * h + 1u));
    let xh = Oct(xv(8u * u + 4u + 2u * h), xv(8u * u + 5u + 2u * h));
    return Item(u, h, xl, xh, dot((xl.a + xl.b) + (xh.a + xh.b), vec4<f32>(1.0)));
}
fn item_dot(s: u32, it: Item) -> f32 {
    return dot16(s + it.u, it.h, it.xl, it.xh, it.xs);
}
const ITEMS_PER_UNIT: u32 = 2u;
#else
// Item i = octet i % 4 of unit i / 4: neighbouring lanes read neighbouring octets, so the
// loads of x (32 bytes a lane) and of W are coalesced.
struct Item { u: u32, q: u32, xa: vec4<f32>, xb: vec4<f32>, xs: f32 }
fn item(i: u32) -> Item {
    let xa = xv(2u * i);
    let xb = xv(2u * i + 1u);
    return Item(i / 4u, i % 4u, xa, xb, dot(xa + xb, vec4<f32>(1.0)));
}
fn item_dot(s: u32, it: Item) -> f32 {
    return dot8(s + it.u, it.q, it.xa, it.xb, it.xs);
}
const ITEMS_PER_UNIT: u32 = 4u;
#endif

@compute @workgroup_size(256)
fn qmatvec(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
           @builtin(local_invocation_index) lid: u32
           ) {
    _ = scales[0];  // keep the binding in the layout for formats that do not read it
#ifdef NORM
    // Prologue: the workgroup's own sum of squares of the x row (as norm.wgsl's rms_norm).
    var ss = 0.0;
    for (var i = lid; i < p.k / 4u; i = i + WG) {
        let v = vec4<f32>(x[i]);
        ss = ss + dot(v, v);
    }
    red[lid] = ss;
    workgroupBarrier();
    for (var st = WG / 2u; st > 0u; st = st >> 1u) {
        if (lid < st) {
            red[lid] = red[lid] + red[lid + st];
        }
        workgroupBarrier();
    }
    let inv_rms = inverseSqrt(red[0] / f32(p.k) + p.eps);
    for (var i = lid; i < p.k / 4u; i = i + WG) {
        let g = vec4<f32>(aux[4u * i], aux[4u * i + 1u], aux[4u * i + 2u], aux[4u * i + 3u]);
        xn[i] = vec4<f32>(x[i]) * inv_rms * g;
    }
    workgroupBarrier();  // xn is complete, and `red` is reused below
#endif
    let grp = (wid.x + wid.y * nwg.x) * (WG / T) + lid / T;
    let lane = lid % T;
    var acc = vec4<f32>(0.0);
#ifdef GLU
    // R / 2 outputs per group: W rows row0 + j (gate) and half + row0 + j (up).
    let half = p.n / 2u;
    let row0 = grp * (R / 2u);
    let live = row0 < half;
    let last = half - 1u;
#ifdef ROWS4
    let s0 = row0 * p.sb;
    let s1 = min(row0 + 1u, last) * p.sb;
    let s2 = (half + row0) * p.sb;
    let s3 = (half + min(row0 + 1u, last)) * p.sb;
#else
    let s0 = row0 * p.sb;
    let s1 = (half + row0) * p.sb;
#endif
#else
    // Each group of T threads owns R neighbouring rows, so every x load serves all R.
    let row0 = grp * R;
    let live = row0 < p.n;
    // Missing last rows re-read row n - 1; their sums are not stored.
    let s0 = row0 * p.sb;
    let s1 = min(row0 + 1u, p.n - 1u) * p.sb;
#ifdef ROWS4
    let s2 = min(row0 + 2u, p.n - 1u) * p.sb;
    let s3 = min(row0 + 3u, p.n - 1u) * p.sb;
#endif
#endif
    if (live) {
        let items = p.sb * ITEMS_PER_UNIT;
        for (var i = lane; i < items; i = i + T) {
            let it = item(i);
            acc.x = acc.x + item_dot(s0, it);
            acc.y = acc.y + item_dot(s1, it);
#ifdef ROWS4
            acc.z = acc.z + item_dot(s2, it);
            acc.w = acc.w + item_dot(s3, it);
#endif
        }
    }
#ifdef SUBGROUPS
    // A group's T threads are an aligned segment of one subgroup (T < SG: shuffle-xor
    // steps), one subgroup (T = SG: subgroupAdd), or T / SG whole subgroups (T > SG: each
    // subgroup's sum goes through shared memory). Subgroups are consecutive, SG-aligned
    // ranges of the linear invocation index.
    var t = acc;
    if (T >= SG) {
        t = subgroupAdd(acc);
    } else {
        for (var o = T / 2u; o > 0u; o = o >> 1u) {
            t = t + subgroupShuffleXor(t, o);
        }
    }
    if (T > SG) {
        let per = T / SG;
        let slot = (lid / T) * per + lane / SG;
        if (lid % SG == 0u) {
            for (var r = 0u; r < R; r = r + 1u) {
                red[r * WG + slot] = t[r];
            }
        }
        workgroupBarrier();
        if (lane == 0u) {
            for (var r = 0u; r < R; r = r + 1u) {
                var sum = 0.0;
                for (var i = 0u; i < per; i = i + 1u) {
                    sum = sum + red[r * WG + slot + i];
                }
                t[r] = sum;
            }
        }
    }
    if (lane == 0u) {
        finish(row0, t);
    }
#else
    for (var r = 0u; r < R; r = r + 1u) {
        red[r * WG + lid] = acc[r];
    }
    workgroupBarrier();
    for (var st = T / 2u; st > 0u; st = st >> 1u) {
        if (lane < st) {
            for (var r = 0u; r < R; r = r + 1u) {
                red[r * WG + lid] = red[r * WG + lid] + red[r * WG + lid + st];
            }
        }
        workgroupBarrier();
    }
    if (lane == 0u) {
        var t = vec4<f32>(0.0);
        for (var r = 0u; r < R; r = r + 1u) {
            t[r] = red[r * WG + lid];
        }
        finish(row0, t);
    }
#endif
}

// Stores a group's row sums `t` (slot r = W row row0 + r; GLU: see qmatvec).
fn finish(row0: u32, sums: vec4<f32>) {
    var t = sums;
#ifdef GLU
    for (var j = 0u; j < R / 2u; j = j + 1u) {
        if (row0 + j < p.n / 2u) {
            let g = t[j];
            let u = t[j + R / 2u];
#ifdef GLU_GELU
            let th = tanh(clamp(0.7978845608028654 * (g + 0.044715 * g * g * g), -15.0, 15.0));
            let o = 0.5 * g * (1.0 + th) * u;
#else
            let o = g / (1.0 + exp(-g)) * u;
#endif
#ifdef X_F16
            y[row0 + j] = f16(o);
#else
            y[row0 + j] = o;
#endif
        }
    }
#else
    for (var r = 0u; r < R; r = r + 1u) {
        if (row0 + r < p.n) {
            store(row0 + r, row0 + r, t[r]);
        }
    }
#endif
}

// ---------------------------------------------------------------------------------------
// Matrix-matrix (prefill, batches).

// Shared tiles k-major as vec4 over 4 rows: xs[kk * 16 + r / 4][r % 4] = x[m0 + r, k0 + kk].
var<workgroup> xs: array<vec4<f32>, 512>;  // [32][64 / 4]
var<workgroup> ws: array<vec4<f32>, 512>;  // [32][64 / 4]

@compute @workgroup_size(256)
fn qmatmul(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
    _ = scales[0];  // keep the binding in the layout for formats that do not read it
    let m0 = wid.y * 64u;
    let n0 = wid.x * 64u;
    let tx = lid % 16u;
    let ty = lid / 16u;
    // Loader role: row r of the tile, octet q of the unit.
    let r = lid / 4u;
    let q = lid % 4u;
    var c0 = vec4<f32>(0.0);
    var c1 = vec4<f32>(0.0);
    var c2 = vec4<f32>(0.0);
    var c3 = vec4<f32>(0.0);
    for (var u = 0u; u < p.sb; u = u + 1u) {
        var o = Oct(vec4<f32>(0.0), vec4<f32>(0.0));
        if (n0 + r < p.n) {
            o = dq8((n0 + r) * p.sb + u, q);
        }
        var xa = vec4<f32>(0.0);
        var xb = vec4<f32>(0.0);
        if (m0 + r < p.m) {
            let base = ((m0 + r) * p.k + u * 32u + 8u * q) / 4u;
            xa = xv(base);
            xb = xv(base + 1u);
        }
        for (var i = 0u; i < 4u; i = i + 1u) {
            ws[(8u * q + i) * 16u + r / 4u][r % 4u] = o.a[i];
            ws[(8u * q + 4u + i) * 16u + r / 4u][r % 4u] = o.b[i];
            xs[(8u * q + i) * 16u + r / 4u][r % 4u] = xa[i];
            xs[(8u * q + 4u + i) * 16u + r / 4u][r % 4u] = xb[i];
        }
        workgroupBarrier();
        for (var kk = 0u; kk < 32u; kk = kk + 1u) {
            let a = xs[kk * 16u + ty];
            let b = ws[kk * 16u + tx];
            c0 = c0 + a.x * b;
            c1 = c1 + a.y * b;
            c2 = c2 + a.z * b;
            c3 = c3 + a.w * b;
        }
        workgroupBarrier();
    }
    store_row(m0 + 4u * ty, n0 + 4u * tx, c0);
    store_row(m0 + 4u * ty + 1u, n0 + 4u * tx, c1);
    store_row(m0 + 4u * ty + 2u, n0 + 4u * tx, c2);
    store_row(m0 + 4u * ty + 3u, n0 + 4u * tx, c3);
}

// qmatmul for CPU adapters (SwiftShader, lavapipe), which emulate workgroup barriers and
// shared memory at a high cost: no shared memory, no barrier. Each invocation computes a 4x4
// block of y, decoding each octet of its 4 weight rows once for its 4 rows of x. Rows and
// columns past the edge read the last valid one; store_row drops their results.
// Workgroup 16x4 invocations = 64 columns x 16 rows. Dispatch (ceil(N/64), ceil(M/16)).
@compute @workgroup_size(16, 4)
fn qmatmul_direct(@builtin(global_invocation_id) gid: vec3<u32>) {
    _ = scales[0];  // keep the binding in the layout for formats that do not read it
    let n0 = gid.x * 4u;
    let m0 = gid.y * 4u;
    if (n0 >= p.n || m0 >= p.m) {
        return;
    }
    let r = vec4<u32>(m0, min(m0 + 1u, p.m - 1u), min(m0 + 2u, p.m - 1u), min(m0 + 3u, p.m - 1u));
    let c = vec4<u32>(n0, min(n0 + 1u, p.n - 1u), min(n0 + 2u, p.n - 1u), min(n0 + 3u, p.n - 1u));
    var acc: array<vec4<f32>, 4>;  // acc[row][column], zero-initialised
    for (var u = 0u; u < p.sb; u = u + 1u) {
        for (var q = 0u; q < 4u; q = q + 1u) {
            let w0 = dq8(c.x * p.sb + u, q);
            let w1 = dq8(c.y * p.sb + u, q);
            let w2 = dq8(c.z * p.sb + u, q);
            let w3 = dq8(c.w * p.sb + u, q);
            for (var i = 0u; i < 4u; i = i + 1u) {
                let base = (r[i] * p.k + u * 32u + 8u * q) / 4u;
                let xa = xv(base);
                let xb = xv(base + 1u);
                acc[i] = acc[i] + vec4<f32>(dot(xa, w0.a) + dot(xb, w0.b), dot(xa, w1.a) + dot(xb, w1.b),
                                            dot(xa, w2.a) + dot(xb, w2.b), dot(xa, w3.a) + dot(xb, w3.b));
            }
        }
    }
    for (var i = 0u; i < 4u; i = i + 1u) {
        store_row(m0 + i, n0, acc[i]);
    }
}

// qmatvec for CPU adapters (m = 1): one invocation per 4 output rows, no shared memory, no
// barrier; each x octet is loaded once for the 4 rows. Dispatch grid(ceil(N / 256)) x 64.
@compute @workgroup_size(64)
fn qmatvec_direct(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    _ = scales[0];  // keep the binding in the layout for formats that do not read it
    let n0 = (gid.x + gid.y * nwg.x * 64u) * 4u;
    if (n0 >= p.n) {
        return;
    }
    let c = vec4<u32>(n0, min(n0 + 1u, p.n - 1u), min(n0 + 2u, p.n - 1u), min(n0 + 3u, p.n - 1u));
    var acc = vec4<f32>(0.0);
    for (var u = 0u; u < p.sb; u = u + 1u) {
        for (var q = 0u; q < 4u; q = q + 1u) {
            let base = (u * 32u + 8u * q) / 4u;
            let xa = xv(base);
            let xb = xv(base + 1u);
            let xs = dot(xa, vec4<f32>(1.0)) + dot(xb, vec4<f32>(1.0));
            acc = acc + vec4<f32>(dot8(c.x * p.sb + u, q, xa, xb, xs), dot8(c.y * p.sb + u, q, xa, xb, xs),
                                  dot8(c.z * p.sb + u, q, xa, xb, xs), dot8(c.w * p.sb + u, q, xa, xb, xs));
        }
    }
    store_row(0u, n0, acc);
}

fn store_row(gm: u32, gn: u32, v: vec4<f32>) {
    if (gm >= p.m) {
        return;
    }
    for (var j = 0u; j < 4u; j = j + 1u) {
        if (gn + j < p.n) {
            store(gm * p.n + gn + j, gn + j, v[j]);
        }
    }
}
