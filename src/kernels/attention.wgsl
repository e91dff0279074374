// Multi-head scaled dot-product attention with a key padding mask, optional causal
// masking and grouped-query heads, computed with an online (streaming) softmax.
//
// One workgroup of 64 threads per (batch, head, query). The query row (pre-scaled) sits in
// shared memory. Keys are walked in tiles of 64: thread t scores key t of the tile, the
// tile maximum updates the running max m, the running sum l and the output accumulator
// are rescaled by exp(m_old - m_new), and each thread accumulates the weighted values for
// the head dims it owns (d = t, t + 64, ..., so head_dim <= 256).
// Dispatch: grid(batch * heads * q_len). CPU adapters run `attention_direct` (below) for
// head_dim <= 128.
//
// Variant CACHE (decoders with a KV cache, batch 1): k and v are the cache buffers
// [cache_rows, kv_heads * head_dim]; the keys in use are rows 0 .. state[1] + q_len
// (state[1] = tokens cached before this call, read on the GPU so a recorded decode step
// replays unchanged); query i sees keys j <= state[1] + i; there is no padding mask. With a
// window w (Gemma 3's sliding layers) query i, at position state[1] + i, sees only keys with
// state[1] + i - j < w; the decode stages skip the splits before the window.
//
// Variant KV_F16 (with CACHE or DECODE_PARTIAL): the cache holds IEEE halves, two per u32
// word (element 2w in the low half of word w), read with unpack2x16float (no shader-f16
// needed); arithmetic stays f32.

struct Params {
    batch: u32,
    q_len: u32,      // queries per sequence
    kv_len: u32,     // keys per sequence
    heads: u32,      // query heads
    kv_heads: u32,   // key/value heads (heads % kv_heads == 0)
    head_dim: u32,
    q_stride: u32,   // elements between consecutive query rows (heads * head_dim)
    kv_stride: u32,  // elements between consecutive key/value rows (kv_heads * head_dim)
    scale: f32,      // usually 1 / sqrt(head_dim)
    causal: u32,     // 1: query i sees keys j <= kv_len - q_len + i
    window: u32,     // 0: none; else query i (at position kv_len - q_len + i, CACHE: state[1] + i) sees keys j with |pos - j| < window (two-sided sliding window; one-sided with causal)
    _p1: u32,
}

const WG: u32 = 64u;
const NEG: f32 = -1.0e30;  // "minus infinity" that stays finite (WGSL may not honour inf)

@group(0) @binding(0) var<uniform> p: Params;
#ifndef DECODE
@group(0) @binding(1) var<storage, read> q: array<f32>;              // q: [batch, q_len, heads * head_dim] f32
#ifdef KV_F16
@group(0) @binding(2) var<storage, read> k: array<u32>;              // k: [1, cache_rows, kv_heads * head_dim] f16, two per word (CACHE only)
@group(0) @binding(3) var<storage, read> v: array<u32>;              // v: as k
#else
@group(0) @binding(2) var<storage, read> k: array<f32>;              // k: [batch, kv_len, kv_heads * head_dim] f32
@group(0) @binding(3) var<storage, read> v: array<f32>;              // v: [batch, kv_len, kv_heads * head_dim] f32
#endif
#ifdef CACHE
@group(0) @binding(4) var<storage, read> state: array<u32>;          // state: [4] u32, state[1] = cached tokens before this call
#else
@group(0) @binding(4) var<storage, read> mask: array<u32>;           // mask: [batch, kv_len] u32, 0 = padding
#endif
@group(0) @binding(5) var<storage, read_write> out: array<f32>;      // out: [batch, q_len, heads * head_dim] f32

struct Query {
    b: u32,    // sequence
    h: u32,    // query head
    i: u32,    // query position
    kvh: u32,  // its key/value head
}

// Key / value element e (an element index of k / v).
fn k_at(e: u32) -> f32 {
#ifdef KV_F16
    return unpack2x16float(k[e >> 1u])[e & 1u];
#else
    return k[e];
#endif
}

fn v_at(e: u32) -> f32 {
#ifdef KV_F16
    return unpack2x16float(v[e >> 1u])[e & 1u];
#else
    return v[e];
#endif
}

// Query `idx` of the flat (batch, head, position) order.
fn query_of(idx: u32) -> Query {
    let i = idx % p.q_len;
    let bh = idx / p.q_len;
    let h = bh % p.heads;
    return Query(bh / p.heads, h, i, h / (p.heads / p.kv_heads));
}

// One past the last key query position `i` sees.
fn keys_end(i: u32) -> u32 {
#ifdef CACHE
    // p.kv_len is the cache's row count here; the rows in use end at state[1] + q_len.
    let kv_len = state[1] + p.q_len;
#else
    let kv_len = p.kv_len;
#endif
    var end = min(kv_len, p.kv_len);
    if (p.causal != 0u) {
        end = min(end, kv_len - p.q_len + i + 1u);
    }
    return end;
}

// Whether key `j` is inside query `i`'s sliding window (always, without one).
fn in_window(i: u32, j: u32) -> bool {
    if (p.window == 0u) {
        return true;
    }
#ifdef CACHE
    let pos = state[1] + i;
#else
    let pos = p.kv_len - p.q_len + i;
#endif
    return max(pos, j) - min(pos, j) < p.window;
}

var<workgroup> qs: array<f32, 256>;
var<workgroup> sc: array<f32, WG>;
var<workgroup> red: array<f32, WG>;

@compute @workgroup_size(64)
fn attention(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
             @builtin(local_invocation_index) lid: u32) {
    let idx = wid.x + wid.y * nwg.x;
    if (idx >= p.batch * p.heads * p.q_len) {
        return;
    }
    let qr = query_of(idx);
    let i = qr.i;
    let h = qr.h;
    let b = qr.b;
    let kvh = qr.kvh;
    let d_n = p.head_dim;

    let q_base = (b * p.q_len + i) * p.q_stride + h * d_n;
    for (var d = lid; d < d_n; d = d + WG) {
        qs[d] = q[q_base + d] * p.scale;
    }
    workgroupBarrier();

    let end = keys_end(i);
    var m = NEG;
    var l = 0.0;
    var acc = array<f32, 4>(0.0, 0.0, 0.0, 0.0);
    for (var t0 = 0u; t0 < end; t0 = t0 + WG) {
        let j = t0 + lid;
        var s = NEG;
#ifdef CACHE
        let visible = j < end && in_window(i, j);
#else
        let visible = j < end && mask[b * p.kv_len + j] != 0u && in_window(i, j);
#endif
        if (visible) {
            // Four independent sums, so a thread's key loads are not one dependent chain.
            let k_base = (b * p.kv_len + j) * p.kv_stride + kvh * d_n;
            var d0 = 0.0;
            var d1 = 0.0;
            var d2 = 0.0;
            var d3 = 0.0;
            var d = 0u;
            for (; d + 4u <= d_n; d = d + 4u) {
                let k0 = k_at(k_base + d);
                let k1 = k_at(k_base + d + 1u);
                let k2 = k_at(k_base + d + 2u);
                let k3 = k_at(k_base + d + 3u);
                d0 = d0 + qs[d] * k0;
                d1 = d1 + qs[d + 1u] * k1;
                d2 = d2 + qs[d + 2u] * k2;
                d3 = d3 + qs[d + 3u] * k3;
            }
            for (; d < d_n; d = d + 1u) {
                d0 = d0 + qs[d] * k_at(k_base + d);
            }
            s = (d0 + d1) + (d2 + d3);
        }
        sc[lid] = s;
        red[lid] = s;
        workgroupBarrier();
        for (var st = WG / 2u; st > 0u; st = st >> 1u) {
            if (lid < st) {
                red[lid] = max(red[lid], red[lid + st]);
            }
            workgroupBarrier();
        }
        let tile_max = red[0];
        if (tile_max > NEG) {
            let m_new = max(m, tile_max);
            let corr = exp(m - m_new);
            l = l * corr;
            for (var r = 0u; r < 4u; r = r + 1u) {
                acc[r] = acc[r] * corr;
            }
            let count = min(WG, end - t0);
            // Four keys per step with independent value loads (a hidden key weighs 0; its
            // row is inside the cache / sequence, so the load is in bounds).
            var jj = 0u;
            for (; jj + 4u <= count; jj = jj + 4u) {
                let p0 = select(0.0, exp(sc[jj] - m_new), sc[jj] > NEG);
                let p1 = select(0.0, exp(sc[jj + 1u] - m_new), sc[jj + 1u] > NEG);
                let p2 = select(0.0, exp(sc[jj + 2u] - m_new), sc[jj + 2u] > NEG);
                let p3 = select(0.0, exp(sc[jj + 3u] - m_new), sc[jj + 3u] > NEG);
                l = l + ((p0 + p1) + (p2 + p3));
                let vb = (b * p.kv_len + t0 + jj) * p.kv_stride + kvh * d_n;
                let vs = p.kv_stride;
                for (var r = 0u; r < 4u; r = r + 1u) {
                    let d = lid + r * WG;
                    if (d < d_n) {
                        let v0 = v_at(vb + d);
                        let v1 = v_at(vb + vs + d);
                        let v2 = v_at(vb + 2u * vs + d);
                        let v3 = v_at(vb + 3u * vs + d);
                        acc[r] = acc[r] + ((p0 * v0 + p1 * v1) + (p2 * v2 + p3 * v3));
                    }
                }
            }
            for (; jj < count; jj = jj + 1u) {
                let sj = sc[jj];
                if (sj > NEG) {
                    let pj = exp(sj - m_new);
                    l = l + pj;
                    let v_base = (b * p.kv_len + t0 + jj) * p.kv_stride + kvh * d_n;
                    for (var r = 0u; r < 4u; r = r + 1u) {
                        let d = lid + r * WG;
                        if (d < d_n) {
                            acc[r] = acc[r] + pj * v_at(v_base + d);
                        }
                    }
                }
            }
            m = m_new;
        }
        workgroupBarrier();
    }
    // A query whose keys are all padding gets zeros, not NaN.
    var inv = 0.0;
    if (l > 0.0) {
        inv = 1.0 / l;
    }
    let o_base = (b * p.q_len + i) * p.q_stride + h * d_n;
    for (var r = 0u; r < 4u; r = r + 1u) {
        let d = lid + r * WG;
        if (d < d_n) {
            out[o_base + d] = acc[r] * inv;
        }
    }
}

// The same attention for CPU adapters (SwiftShader, lavapipe), which emulate barriers and
// shared memory at a high cost: one invocation per (batch, head, query), no shared memory,
// no barrier. It walks the keys one at a time with the online softmax and keeps the query
// and the output row in private arrays (head_dim <= 256).
// Dispatch: grid(ceil(batch * heads * q_len / 64)).
@compute @workgroup_size(64)
fn attention_direct(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let idx = gid.x + gid.y * nwg.x * WG;
    if (idx >= p.batch * p.heads * p.q_len) {
        return;
    }
    let qr = query_of(idx);
    let i = qr.i;
    let h = qr.h;
    let b = qr.b;
    let kvh = qr.kvh;
    let d_n = p.head_dim;
    let q_base = (b * p.q_len + i) * p.q_stride + h * d_n;
    var qp: array<f32, 128>;   // head_dim <= 128 (DIRECT_MAX_HEAD_DIM); larger heads take `attention`
    var acc: array<f32, 128>;  // zero-initialised
    for (var d = 0u; d < d_n; d = d + 1u) {
        qp[d] = q[q_base + d] * p.scale;
    }
    let end = keys_end(i);
    var m = NEG;
    var l = 0.0;
    for (var j = 0u; j < end; j = j + 1u) {
#ifdef CACHE
        if (!in_window(i, j)) {
            continue;
        }
#else
        if (mask[b * p.kv_len + j] == 0u || !in_window(i, j)) {
            continue;
        }
#endif
        let base = (b * p.kv_len + j) * p.kv_stride + kvh * d_n;
        var s = 0.0;
        for (var d = 0u; d < d_n; d = d + 1u) {
            s = s + qp[d] * k_at(base + d);
        }
        let m_new = max(m, s);
        let corr = exp(m - m_new);
        let pj = exp(s - m_new);
        l = l * corr + pj;
        for (var d = 0u; d < d_n; d = d + 1u) {
            acc[d] = acc[d] * corr + pj * v_at(base + d);
        }
        m = m_new;
    }
    // A query whose keys are all padding gets zeros, not NaN.
    var inv = 0.0;
    if (l > 0.0) {
        inv = 1.0 / l;
    }
    for (var d = 0u; d < d_n; d = d + 1u) {
        out[q_base + d] = acc[d] * inv;
    }
}

#endif

#ifdef DECODE
// The first key the decode query (at position kv_len - 1) sees: kv_len - window under a
// sliding window, else 0.
fn first_key(kv_len: u32) -> u32 {
    if (p.window == 0u || kv_len <= p.window) {
        return 0u;
    }
    return kv_len - p.window;
}
#endif

#ifdef DECODE_PARTIAL
@group(0) @binding(1) var<storage, read> q4: array<vec4<f32>>;       // q: [1, heads * head_dim] f32 as vec4
#ifdef KV_F16
@group(0) @binding(2) var<storage, read> k4h: array<vec2<u32>>;      // k_cache: [cache_rows, kv_heads * head_dim] f16, four halves per vec2<u32>
@group(0) @binding(3) var<storage, read> v4h: array<vec2<u32>>;      // v_cache: as k_cache
#else
@group(0) @binding(2) var<storage, read> k4: array<vec4<f32>>;       // k_cache: [cache_rows, kv_heads * head_dim] f32 as vec4
@group(0) @binding(3) var<storage, read> v4: array<vec4<f32>>;       // v_cache: as k_cache
#endif
@group(0) @binding(4) var<storage, read> state: array<u32>;          // state: [4] u32, state[1] = cached tokens before this token
@group(0) @binding(5) var<storage, read_write> part: array<f32>;     // part: acc [heads, n_splits, head_dim] then (m, l) [heads, n_splits, 2] f32

const SPLIT: u32 = 32u;       // keys per workgroup (p._p0)
const DWG: u32 = 128u;        // threads of the decode stages
const TPK: u32 = DWG / SPLIT; // threads per key when scoring

var<workgroup> qv: array<vec4<f32>, 64>;
var<workgroup> sc: array<f32, DWG>;
var<workgroup> pw: array<f32, SPLIT>;
var<workgroup> accs: array<vec4<f32>, DWG>;

// head_dim % 4 == 0, head_dim <= 256 (d4 = head_dim / 4 vec4 columns). Decode is a chain of
// small dependent kernels, so this one is written for latency: every thread has at most a
// few loads in flight at once and no loop waits on the previous iteration's load.
// Scores: TPK = 4 neighbouring threads per key, each summing the vec4 columns c ≡ t (mod 4)
// of its key (coalesced 64-byte pieces of the row); the 4 parts meet in shared memory.
// Weighted values: thread t takes vec4 column t % d4 of keys t / d4, t / d4 + G, ...
// (G = 128 / d4 key groups), four keys per step; the G groups meet in shared memory.
// Four keys / values elements from vec4 column c (c = element / 4) of the cache.
fn k4_at(c: u32) -> vec4<f32> {
#ifdef KV_F16
    let w = k4h[c];
    return vec4<f32>(unpack2x16float(w.x), unpack2x16float(w.y));
#else
    return k4[c];
#endif
}

fn v4_at(c: u32) -> vec4<f32> {
#ifdef KV_F16
    let w = v4h[c];
    return vec4<f32>(unpack2x16float(w.x), unpack2x16float(w.y));
#else
    return v4[c];
#endif
}

@compute @workgroup_size(128)
fn decode_partial(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
                  @builtin(local_invocation_index) lid: u32) {
    let n_splits = p._p1;
    let idx = wid.x + wid.y * nwg.x;
    if (idx >= p.heads * n_splits) {
        return;
    }
    let h = idx % p.heads;
    let split = idx / p.heads;
    let kvh = h / (p.heads / p.kv_heads);
    let d_n = p.head_dim;
    let d4 = d_n / 4u;
    let stride4 = p.kv_stride / 4u;
    let hs = h * n_splits + split;
    let ml = p.heads * n_splits * d_n + 2u * hs;
    let kv_len = min(state[1] + 1u, p.kv_len);
    let lo = first_key(kv_len);
    let start = split * SPLIT;
    if (start >= kv_len || start + SPLIT <= lo) {
        if (lid == 0u) {
            part[ml] = NEG;
            part[ml + 1u] = 0.0;
        }
        return;
    }
    let count = min(SPLIT, kv_len - start);
    if (lid < d4) {
        qv[lid] = q4[h * d4 + lid] * p.scale;
    }
    workgroupBarrier();

    // Keys past `count` re-read the last key; their scores are dropped.
    let key = lid / TPK;
    let krow = (start + min(key, count - 1u)) * stride4 + kvh * d4;
    var a0 = vec4<f32>(0.0);
    var a1 = vec4<f32>(0.0);
    var c = lid % TPK;
    for (; c + 3u * TPK < d4; c = c + 4u * TPK) {
        let k0 = k4_at(krow + c);
        let k1 = k4_at(krow + c + TPK);
        let k2 = k4_at(krow + c + 2u * TPK);
        let k3 = k4_at(krow + c + 3u * TPK);
        a0 = a0 + qv[c] * k0 + qv[c + TPK] * k1;
        a1 = a1 + qv[c + 2u * TPK] * k2 + qv[c + 3u * TPK] * k3;
    }
    for (; c < d4; c = c + TPK) {
        a0 = a0 + qv[c] * k4_at(krow + c);
    }
    sc[lid] = dot(a0 + a1, vec4<f32>(1.0));
    workgroupBarrier();
    if (lid < SPLIT) {
        var s = NEG;
        if (lid < count && start + lid >= lo) {
            s = (sc[TPK * lid] + sc[TPK * lid + 1u]) + (sc[TPK * lid + 2u] + sc[TPK * lid + 3u]);
        }
        pw[lid] = s;
    }
    workgroupBarrier();
    var m = NEG;
    for (var j = 0u; j < SPLIT; j = j + 1u) {
        m = max(m, pw[j]);
    }
    workgroupBarrier();
    if (lid < SPLIT) {
        pw[lid] = select(0.0, exp(pw[lid] - m), lid < count && start + lid >= lo);
    }
    workgroupBarrier();

    let groups = DWG / d4;
    let col = lid % d4;
    let g = lid / d4;
    let vcol = kvh * d4 + col;
    var acc0 = vec4<f32>(0.0);
    var acc1 = vec4<f32>(0.0);
    if (g < groups) {
        var j = g;
        for (; j + 3u * groups < count; j = j + 4u * groups) {
            let v0 = v4_at((start + j) * stride4 + vcol);
            let v1 = v4_at((start + j + groups) * stride4 + vcol);
            let v2 = v4_at((start + j + 2u * groups) * stride4 + vcol);
            let v3 = v4_at((start + j + 3u * groups) * stride4 + vcol);
            acc0 = acc0 + pw[j] * v0 + pw[j + groups] * v1;
            acc1 = acc1 + pw[j + 2u * groups] * v2 + pw[j + 3u * groups] * v3;
        }
        for (; j < count; j = j + groups) {
            acc0 = acc0 + pw[j] * v4_at((start + j) * stride4 + vcol);
        }
    }
    accs[lid] = acc0 + acc1;
    workgroupBarrier();
    if (lid < d4) {
        var o = vec4<f32>(0.0);
        for (var gg = 0u; gg < groups; gg = gg + 1u) {
            o = o + accs[gg * d4 + lid];
        }
        let at = hs * d_n + 4u * lid;
        part[at] = o.x;
        part[at + 1u] = o.y;
        part[at + 2u] = o.z;
        part[at + 3u] = o.w;
    }
    if (lid == 0u) {
        var l = 0.0;
        for (var j = 0u; j < count; j = j + 1u) {
            l = l + pw[j];
        }
        part[ml] = m;
        part[ml + 1u] = l;
    }
}
#endif

#ifdef DECODE_COMBINE
@group(0) @binding(1) var<storage, read> acc4: array<vec4<f32>>;     // part: acc [heads, n_splits, head_dim] f32 as vec4, then (m, l)
@group(0) @binding(2) var<storage, read> ml: array<f32>;             // the same buffer as f32 (its (m, l) pairs)
@group(0) @binding(3) var<storage, read> state: array<u32>;          // state: [4] u32, state[1] = cached tokens before this token
@group(0) @binding(4) var<storage, read_write> out: array<f32>;      // out: [1, heads * head_dim] f32

const SPLIT: u32 = 32u;
const DWG: u32 = 128u;

var<workgroup> smax: array<f32, DWG>;
var<workgroup> sl: array<f32, DWG>;
var<workgroup> sacc: array<vec4<f32>, DWG>;

// Two passes with independent loads (no rescaling chain): the splits in use (a prefix,
// from state[1]) give the head's maximum m, then thread t sums vec4 column t % d4 of splits
// t / d4, t / d4 + G, ... (G = 128 / d4) weighted by exp(m_s - m), and the G groups meet
// in shared memory.
@compute @workgroup_size(128)
fn decode_combine(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
                  @builtin(local_invocation_index) lid: u32) {
    let h = wid.x + wid.y * nwg.x;
    if (h >= p.heads) {
        return;
    }
    let n_splits = p._p1;
    let kv_len = min(state[1] + 1u, p.kv_len);
    let used = min((kv_len + SPLIT - 1u) / SPLIT, n_splits);
    // Splits wholly before the window wrote no accumulator: start after them.
    let first = first_key(kv_len) / SPLIT;
    let d4 = p.head_dim / 4u;
    let ml_base = p.heads * n_splits * p.head_dim + 2u * h * n_splits;
    var mx = NEG;
    for (var s = first + lid; s < used; s = s + DWG) {
        mx = max(mx, ml[ml_base + 2u * s]);
    }
    smax[lid] = mx;
    workgroupBarrier();
    var m = NEG;
    for (var i = 0u; i < min(used - first, DWG); i = i + 1u) {
        m = max(m, smax[i]);
    }
    let groups = DWG / d4;
    let col = lid % d4;
    let g = lid / d4;
    var l = 0.0;
    var acc = vec4<f32>(0.0);
    if (g < groups) {
        for (var s = first + g; s < used; s = s + groups) {
            let w = exp(ml[ml_base + 2u * s] - m);
            acc = acc + acc4[(h * n_splits + s) * d4 + col] * w;
            l = l + ml[ml_base + 2u * s + 1u] * w;
        }
    }
    sl[lid] = l;
    sacc[lid] = acc;
    workgroupBarrier();
    if (lid < d4) {
        var total = 0.0;
        var o = vec4<f32>(0.0);
        for (var gg = 0u; gg < groups; gg = gg + 1u) {
            total = total + sl[gg * d4 + lid];
            o = o + sacc[gg * d4 + lid];
        }
        var inv = 0.0;
        if (total > 0.0) {
            inv = 1.0 / total;
        }
        o = o * inv;
        let at = h * p.head_dim + 4u * lid;
        out[at] = o.x;
        out[at + 1u] = o.y;
        out[at + 2u] = o.z;
        out[at + 3u] = o.w;
    }
}
#endif
