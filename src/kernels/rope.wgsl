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
//                copy v into v_cache row state[1] + r. One thread per (row, q head or kv
//                head, i < h). Dispatch: grid(ceil(rows * (heads + kv_heads) * h / 256)).
//   kv_shift     the first half of dropping cache rows (a context shift): rows
//                first + r (r < rows) of k_cache and v_cache into k_out / v_out row r, the keys
//                rotated back by `delta` positions (a rotation by -a_i composed with the one
//                by position p gives exactly the one by p - delta). The caller copies them
//                back over the dropped rows. One thread per (row, kv head, i < h).

struct Params {
    rows: u32,      // tokens in this call
    heads: u32,     // heads of x (rope) or q (rope_append)
    kv_heads: u32,  // heads of k and v (rope_append)
    head_dim: u32,  // even
    cache_rows: u32, // rows of k_cache / v_cache (rope_append); positions past it are dropped
    period: u32,    // rope: rows per sequence of a [batch * seq] input (row r at state[1] + r % seq); 0: one sequence
    first: u32,     // kv_shift: first row moved
    delta: u32,     // kv_shift: positions the moved keys go back
}

@group(0) @binding(0) var<uniform> p: Params;
#ifdef APPEND
@group(0) @binding(1) var<storage, read_write> q: array<f32>;        // q: [rows, heads * head_dim] f32, rotated in place
@group(0) @binding(2) var<storage, read> k: array<f32>;              // k: [rows, kv_heads * head_dim] f32
@group(0) @binding(3) var<storage, read> v: array<f32>;              // v: [rows, kv_heads * head_dim] f32
@group(0) @binding(4) var<storage, read> inv_freq: array<f32>;       // inv_freq: [head_dim / 2] f32
@group(0) @binding(5) var<storage, read> state: array<u32>;          // state: [4] u32, state[1] = position of row 0
@group(0) @binding(6) var<storage, read_write> k_cache: array<f32>;  // k_cache: [cache_rows, kv_heads * head_dim] f32
@group(0) @binding(7) var<storage, read_write> v_cache: array<f32>;  // v_cache: [cache_rows, kv_heads * head_dim] f32
#else
#ifdef SHIFT
@group(0) @binding(1) var<storage, read> k_cache: array<f32>;        // k_cache: [cache_rows, kv_heads * head_dim] f32
@group(0) @binding(2) var<storage, read> v_cache: array<f32>;        // v_cache: [cache_rows, kv_heads * head_dim] f32
@group(0) @binding(3) var<storage, read> inv_freq: array<f32>;       // inv_freq: [head_dim / 2] f32
@group(0) @binding(4) var<storage, read_write> k_out: array<f32>;    // k_out: [rows, kv_heads * head_dim] f32
@group(0) @binding(5) var<storage, read_write> v_out: array<f32>;    // v_out: [rows, kv_heads * head_dim] f32
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

#ifdef SHIFT
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
    let cs = angle(p.delta, i);     // rotate by -a: cos(a), -sin(a)
    let x0 = k_cache[src + i];
    let x1 = k_cache[src + i + h];
    k_out[dst + i] = x0 * cs.x + x1 * cs.y;
    k_out[dst + i + h] = x1 * cs.x - x0 * cs.y;
    v_out[dst + i] = v_cache[src + i];
    v_out[dst + i + h] = v_cache[src + i + h];
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
        let x0 = q[base + i];
        let x1 = q[base + i + h];
        q[base + i] = x0 * cs.x - x1 * cs.y;
        q[base + i + h] = x1 * cs.x + x0 * cs.y;
    } else {
        if (pos >= p.cache_rows) {
            return;
        }
        let kvh = slot - p.heads;
        let src = (r * p.kv_heads + kvh) * p.head_dim;
        let dst = (pos * p.kv_heads + kvh) * p.head_dim;
        let x0 = k[src + i];
        let x1 = k[src + i + h];
        k_cache[dst + i] = x0 * cs.x - x1 * cs.y;
        k_cache[dst + i + h] = x1 * cs.x + x0 * cs.y;
        v_cache[dst + i] = v[src + i];
        v_cache[dst + i + h] = v[src + i + h];
    }
}
#endif
