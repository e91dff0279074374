// Rotary position embeddings (Su et al., 2021, https://arxiv.org/abs/2104.09864) in the
// Hugging Face `rotate_half` form: dimension i of a head is paired with i + head_dim / 2,
//   out[i]       = x[i] * cos(a_i) - x[i + h] * sin(a_i)
//   out[i + h]   = x[i + h] * cos(a_i) + x[i] * sin(a_i),   h = head_dim / 2,
// with a_i = position * inv_freq[i] computed in f32 as transformers does. inv_freq comes
// from the host (rope_theta and any rope scaling are applied there).
// The position of row r is state[1] + r: the KV-cache length before this call lives in a
// GPU buffer, so a recorded decode step replays without new parameters.
//
// Entries:
//   rope         rotate x in place.                    One thread per (row, head, i < h).
//   rope_append  rotate q in place; rotate k and write it into k_cache row state[1] + r;
//                copy v into v_cache row state[1] + r. PACKED: q, k and v are the parts of
//                one [rows, period] product (a packed q/k/v projection, `period` its row
//                width); the rotated q goes to its own [rows, heads * head_dim] tensor. One thread per (row, q head or kv
//                head, i < h): a q thread rotates the pair (i, i + h) in place; a kv thread
//                writes elements 2i and 2i + 1 of the head (one whole word of an f16
//                cache, so no two threads write halves of one word), reading each element's
//                rotate-half partner from k. Dispatch: grid(ceil(rows * (heads + kv_heads) * h / 256)).
//   kv_shift     the first half of dropping cache rows (a context shift): rows
//                first + r (r < rows) of k_cache and v_cache into k_out / v_out row r, the keys
//                rotated back by `delta` positions (a rotation by -a_i composed with the one
//                by position p gives exactly the one by p - delta). The caller copies them
//                back over the dropped rows. One thread per (row, kv head, i < h), writing
//                elements 2i and 2i + 1 as rope_append's kv threads.
//
// Variant KV_F16 (with APPEND or SHIFT): the cache (and k_out / v_out) hold IEEE halves, two
// per u32 word (element 2w in the low half of word w), written with pack2x16float (values
// clamped to the finite f16 range) and read with unpack2x16float, so it needs no
// shader-f16. Arithmetic stays f32.

struct Params {
    rows: u32,      // tokens in this call
    heads: u32,     // heads of x (rope) or q (rope_append)
    kv_heads: u32,  // heads of k and v (rope_append)
    head_dim: u32,  // even
    cache_rows: u32, // rows of k_cache / v_cache (rope_append); positions past it are dropped
    period: u32,    // rope: rows per sequence of a [batch * seq] input (row r at state[1] + r % seq); 0: one sequence;
                    // rope_append PACKED: the row width of qkv
    first: u32,     // kv_shift: first row moved
    delta: u32,     // kv_shift: positions the moved keys go back
}

@group(0) @binding(0) var<uniform> p: Params;
#ifdef APPEND
#ifdef PACKED
@group(0) @binding(1) var<storage, read_write> q: array<f32>;        // q: [rows, heads * head_dim] f32, the rotated q
@group(0) @binding(2) var<storage, read> qkv: array<f32>;            // qkv: [rows, period] f32, q | k | v per row
@group(0) @binding(3) var<storage, read> inv_freq: array<f32>;       // inv_freq: [head_dim / 2] f32
@group(0) @binding(4) var<storage, read> state: array<u32>;          // state: [4] u32, state[1] = position of row 0
#ifdef KV_F16
@group(0) @binding(5) var<storage, read_write> k_cache: array<u32>;  // k_cache: [cache_rows, kv_heads * head_dim] f16, two per word
@group(0) @binding(6) var<storage, read_write> v_cache: array<u32>;  // v_cache: [cache_rows, kv_heads * head_dim] f16, two per word
#else
@group(0) @binding(5) var<storage, read_write> k_cache: array<f32>;  // k_cache: [cache_rows, kv_heads * head_dim] f32
@group(0) @binding(6) var<storage, read_write> v_cache: array<f32>;  // v_cache: [cache_rows, kv_heads * head_dim] f32
#endif
#else
@group(0) @binding(1) var<storage, read_write> q: array<f32>;        // q: [rows, heads * head_dim] f32, rotated in place
@group(0) @binding(2) var<storage, read> k: array<f32>;              // k: [rows, kv_heads * head_dim] f32
@group(0) @binding(3) var<storage, read> v: array<f32>;              // v: [rows, kv_heads * head_dim] f32
@group(0) @binding(4) var<storage, read> inv_freq: array<f32>;       // inv_freq: [head_dim / 2] f32
@group(0) @binding(5) var<storage, read> state: array<u32>;          // state: [4] u32, state[1] = position of row 0
#ifdef KV_F16
@group(0) @binding(6) var<storage, read_write> k_cache: array<u32>;  // k_cache: [cache_rows, kv_heads * head_dim] f16, two per word
@group(0) @binding(7) var<storage, read_write> v_cache: array<u32>;  // v_cache: [cache_rows, kv_heads * head_dim] f16, two per word
#else
@group(0) @binding(6) var<storage, read_write> k_cache: array<f32>;  // k_cache: [cache_rows, kv_heads * head_dim] f32
@group(0) @binding(7) var<storage, read_write> v_cache: array<f32>;  // v_cache: [cache_rows, kv_heads * head_dim] f32
#endif
#endif
#else
#ifdef SHIFT
#ifdef KV_F16
@group(0) @binding(1) var<storage, read> k_cache: array<u32>;        // k_cache: [cache_rows, kv_heads * head_dim] f16, two per word
@group(0) @binding(2) var<storage, read> v_cache: array<u32>;        // v_cache: [cache_rows, kv_heads * head_dim] f16, two per word
@group(0) @binding(3) var<storage, read> inv_freq: array<f32>;       // inv_freq: [head_dim / 2] f32
@group(0) @binding(4) var<storage, read_write> k_out: array<u32>;    // k_out: [rows, kv_heads * head_dim] f16, two per word
@group(0) @binding(5) var<storage, read_write> v_out: array<u32>;    // v_out: [rows, kv_heads * head_dim] f16, two per word
#else
@group(0) @binding(1) var<storage, read> k_cache: array<f32>;        // k_cache: [cache_rows, kv_heads * head_dim] f32
@group(0) @binding(2) var<storage, read> v_cache: array<f32>;        // v_cache: [cache_rows, kv_heads * head_dim] f32
@group(0) @binding(3) var<storage, read> inv_freq: array<f32>;       // inv_freq: [head_dim / 2] f32
@group(0) @binding(4) var<storage, read_write> k_out: array<f32>;    // k_out: [rows, kv_heads * head_dim] f32
@group(0) @binding(5) var<storage, read_write> v_out: array<f32>;    // v_out: [rows, kv_heads * head_dim] f32
#endif
#else
@group(0) @binding(1) var<storage, read_write> x: array<f32>;        // x: [rows, heads * head_dim] f32, rotated in place
@group(0) @binding(2) var<storage, read> inv_freq: array<f32>;       // inv_freq: [head_dim / 2] f32
@group(0) @binding(3) var<storage, read> state: array<u32>;          // state: [4] u32, state[1] = position of row 0
#endif
#endif

// cos and sin of a to f32 accuracy (about 3e-7 absolute) on every adapter: a is reduced to
// [-pi, pi] with a two-part 2*pi (Cody-Waite), then to [-pi/4, pi/4] and a quadrant with a
// two-part pi/2, and sin/cos of the remainder come from Cephes' `sinf`/`cosf` minimax
// polynomials. The built-in sin/cos are not used: WGSL (like Vulkan) only bounds their
// absolute error by 2^-11 on [-pi, pi], and SwiftShader's were off by up to 2e-4, which
// moved a 2-layer decoder's logits by 5e-4 against transformers (lavapipe's were exact).
fn cos_sin(a: f32) -> vec2<f32> {
    let k = round(a * 0.15915494309189535);
    let r = (a - k * 6.28125) - k * 0.0019353071795864769;
    let q = round(r * 0.6366197723675814);                       // quadrant, -2..=2
    let y = (r - q * 1.5703125) - q * 4.8382679e-4;               // pi/2 = 1.5703125 + 4.8382679e-4
    let z = y * y;
    let sn = ((-1.9515295891e-4 * z + 8.3321608736e-3) * z - 1.6666654611e-1) * z * y + y;
    let cs = ((2.443315711809948e-5 * z - 1.388731625493765e-3) * z + 4.166664568298827e-2) * z * z - 0.5 * z + 1.0;
    let quadrant = (i32(q) + 4) % 4;
    if (quadrant == 0) {
        return vec2<f32>(cs, sn);
    } else if (quadrant == 1) {
        return vec2<f32>(-sn, cs);
    } else if (quadrant == 2) {
        return vec2<f32>(-cs, -sn);
    }
    return vec2<f32>(sn, -cs);
}

fn angle(pos: u32, i: u32) -> vec2<f32> {
    return cos_sin(f32(pos) * inv_freq[i]);
}

#ifdef KV_F16
// Two values as one word of halves, clamped to the finite f16 range (pack2x16float of a
// value past it is undefined).
const F16_MAX: f32 = 65504.0;
fn pack_half(a: f32, b: f32) -> u32 {
    return pack2x16float(clamp(vec2<f32>(a, b), vec2<f32>(-F16_MAX), vec2<f32>(F16_MAX)));
}
#endif

#ifdef SHIFT
// Element e of k_cache / v_cache (an element index).
fn k_at(e: u32) -> f32 {
#ifdef KV_F16
    return unpack2x16float(k_cache[e >> 1u])[e & 1u];
#else
    return k_cache[e];
#endif
}

fn v_at(e: u32) -> f32 {
#ifdef KV_F16
    return unpack2x16float(v_cache[e >> 1u])[e & 1u];
#else
    return v_cache[e];
#endif
}

// Element e < head_dim of the key head at `src`, rotated back by `delta` positions.
fn unrotated(src: u32, e: u32) -> f32 {
    let h = p.head_dim / 2u;
    if (e < h) {
        let cs = angle(p.delta, e);     // rotate by -a: cos(a), -sin(a)
        return k_at(src + e) * cs.x + k_at(src + e + h) * cs.y;
    }
    let j = e - h;
    let cs = angle(p.delta, j);
    return k_at(src + e) * cs.x - k_at(src + j) * cs.y;
}

@compute @workgroup_size(256)
fn kv_shift(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let idx = gid.x + gid.y * nwg.x * 256u;
    let h = p.head_dim / 2u;
    if (idx >= p.rows * p.kv_heads * h) {
        return;
    }
    let i = idx % h;
    let rh = idx / h;               // row * kv_heads + head
    let dst = rh * p.head_dim;
    let src = (p.first * p.kv_heads) * p.head_dim + dst;
    let e = 2u * i;
    let k0 = unrotated(src, e);
    let k1 = unrotated(src, e + 1u);
#ifdef KV_F16
    k_out[(dst + e) >> 1u] = pack_half(k0, k1);
    v_out[(dst + e) >> 1u] = v_cache[(src + e) >> 1u];
#else
    k_out[dst + e] = k0;
    k_out[dst + e + 1u] = k1;
    v_out[dst + e] = v_at(src + e);
    v_out[dst + e + 1u] = v_at(src + e + 1u);
#endif
}
#endif

#ifndef APPEND
#ifndef SHIFT
@compute @workgroup_size(256)
fn rope(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let idx = gid.x + gid.y * nwg.x * 256u;
    let h = p.head_dim / 2u;
    if (idx >= p.rows * p.heads * h) {
        return;
    }
    let i = idx % h;
    let rh = idx / h;               // row * heads + head
    var r = rh / p.heads;
    if (p.period != 0u) {
        r = r % p.period;
    }
    let cs = angle(state[1] + r, i);
    let base = rh * p.head_dim;
    let x0 = x[base + i];
    let x1 = x[base + i + h];
    x[base + i] = x0 * cs.x - x1 * cs.y;
    x[base + i + h] = x1 * cs.x + x0 * cs.y;
}
#endif
#endif

#ifdef APPEND
// Element `at` of row r's q, k and v (PACKED: parts of one [rows, period] product).
fn q_in(r: u32, at: u32) -> f32 {
#ifdef PACKED
    return qkv[r * p.period + at];
#else
    return q[r * p.heads * p.head_dim + at];
#endif
}
fn k_in(r: u32, at: u32) -> f32 {
#ifdef PACKED
    return qkv[r * p.period + p.heads * p.head_dim + at];
#else
    return k[r * p.kv_heads * p.head_dim + at];
#endif
}
fn v_in(r: u32, at: u32) -> f32 {
#ifdef PACKED
    return qkv[r * p.period + (p.heads + p.kv_heads) * p.head_dim + at];
#else
    return v[r * p.kv_heads * p.head_dim + at];
#endif
}

// Element e < head_dim of row r's key head starting at `hb`, rotated for position `pos`.
fn rotated(r: u32, hb: u32, e: u32, pos: u32) -> f32 {
    let h = p.head_dim / 2u;
    if (e < h) {
        let cs = angle(pos, e);
        return k_in(r, hb + e) * cs.x - k_in(r, hb + e + h) * cs.y;
    }
    let j = e - h;
    let cs = angle(pos, j);
    return k_in(r, hb + e) * cs.x + k_in(r, hb + j) * cs.y;
}

@compute @workgroup_size(256)
fn rope_append(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let idx = gid.x + gid.y * nwg.x * 256u;
    let h = p.head_dim / 2u;
    let all = p.heads + p.kv_heads;
    if (idx >= p.rows * all * h) {
        return;
    }
    let i = idx % h;
    let slot = (idx / h) % all;
    let r = idx / (h * all);
    let pos = state[1] + r;
    let cs = angle(pos, i);
    if (slot < p.heads) {
        let base = (r * p.heads + slot) * p.head_dim;
        let x0 = q_in(r, slot * p.head_dim + i);
        let x1 = q_in(r, slot * p.head_dim + i + h);
        q[base + i] = x0 * cs.x - x1 * cs.y;
        q[base + i + h] = x1 * cs.x + x0 * cs.y;
    } else {
        if (pos >= p.cache_rows) {
            return;
        }
        let kvh = slot - p.heads;
        let hb = kvh * p.head_dim;
        let dst = (pos * p.kv_heads + kvh) * p.head_dim;
        // Elements e and e + 1 (one word of an f16 cache), each with its rotate-half partner.
        let e = 2u * i;
        let k0 = rotated(r, hb, e, pos);
        let k1 = rotated(r, hb, e + 1u, pos);
#ifdef KV_F16
        k_cache[(dst + e) >> 1u] = pack_half(k0, k1);
        v_cache[(dst + e) >> 1u] = pack_half(v_in(r, hb + e), v_in(r, hb + e + 1u));
#else
        k_cache[dst + e] = k0;
        k_cache[dst + e + 1u] = k1;
        v_cache[dst + e] = v_in(r, hb + e);
        v_cache[dst + e + 1u] = v_in(r, hb + e + 1u);
#endif
    }
}
#endif
