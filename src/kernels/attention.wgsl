// Multi-head scaled dot-product attention with a key padding mask, optional causal
// masking and grouped-query heads, computed with an online (streaming) softmax.
//
// One workgroup of 64 threads per (batch, head, query). The query row (pre-scaled) sits in
// shared memory. Keys are walked in tiles of 64: thread t scores key t of the tile, the
// tile maximum updates the running max m, the running sum l and the output accumulator
// are rescaled by exp(m_old - m_new), and each thread accumulates the weighted values for
// the head dims it owns (d = t, t + 64, ..., so head_dim <= 256).
// Dispatch: grid(batch * heads * q_len).
//
// Variant CACHE (decoders with a KV cache, batch 1): k and v are the cache buffers
// [cache_rows, kv_heads * head_dim]; the keys in use are rows 0 .. state[1] + q_len
// (state[1] = tokens cached before this call, read on the GPU so a recorded decode step
// replays unchanged); query i sees keys j <= state[1] + i; there is no padding mask.

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
    _p0: u32,
    _p1: u32,
}

const WG: u32 = 64u;
const NEG: f32 = -1.0e30;  // "minus infinity" that stays finite (WGSL may not honour inf)

@group(0) @binding(0) var<uniform> p: Params;
#ifndef DECODE_COMBINE
@group(0) @binding(1) var<storage, read> q: array<f32>;              // q: [batch, q_len, heads * head_dim] f32
@group(0) @binding(2) var<storage, read> k: array<f32>;              // k: [batch, kv_len, kv_heads * head_dim] f32
@group(0) @binding(3) var<storage, read> v: array<f32>;              // v: [batch, kv_len, kv_heads * head_dim] f32
#ifdef CACHE
@group(0) @binding(4) var<storage, read> state: array<u32>;          // state: [4] u32, state[1] = cached tokens before this call
#else
@group(0) @binding(4) var<storage, read> mask: array<u32>;           // mask: [batch, kv_len] u32, 0 = padding
#endif
@group(0) @binding(5) var<storage, read_write> out: array<f32>;      // out: [batch, q_len, heads * head_dim] f32

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
    let i = idx % p.q_len;
    let bh = idx / p.q_len;
    let h = bh % p.heads;
    let b = bh / p.heads;
    let kvh = h / (p.heads / p.kv_heads);
    let d_n = p.head_dim;

    let q_base = (b * p.q_len + i) * p.q_stride + h * d_n;
    for (var d = lid; d < d_n; d = d + WG) {
        qs[d] = q[q_base + d] * p.scale;
    }
    workgroupBarrier();

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
    var m = NEG;
    var l = 0.0;
    var acc = array<f32, 4>(0.0, 0.0, 0.0, 0.0);
    for (var t0 = 0u; t0 < end; t0 = t0 + WG) {
        let j = t0 + lid;
        var s = NEG;
#ifdef CACHE
        let visible = j < end;
#else
        let visible = j < end && mask[b * p.kv_len + j] != 0u;
#endif
        if (visible) {
            let k_base = (b * p.kv_len + j) * p.kv_stride + kvh * d_n;
            var dot_ = 0.0;
            for (var d = 0u; d < d_n; d = d + 1u) {
                dot_ = dot_ + qs[d] * k[k_base + d];
            }
            s = dot_;
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
            for (var jj = 0u; jj < count; jj = jj + 1u) {
                let sj = sc[jj];
                if (sj > NEG) {
                    let pj = exp(sj - m_new);
                    l = l + pj;
                    let v_base = (b * p.kv_len + t0 + jj) * p.kv_stride + kvh * d_n;
                    for (var r = 0u; r < 4u; r = r + 1u) {
                        let d = lid + r * WG;
                        if (d < d_n) {
                            acc[r] = acc[r] + pj * v[v_base + d];
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

#ifdef CACHE
@compute @workgroup_size(64)
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
    let part_base = (h * n_splits + split) * (d_n + 2u);
    let kv_len = min(state[1] + 1u, p.kv_len);
    let start = split * p._p0;
    if (start >= kv_len) {
        if (lid == 0u) {
            out[part_base + d_n] = NEG;
            out[part_base + d_n + 1u] = 0.0;
        }
        return;
    }
    let count = min(p._p0, kv_len - start);
    for (var d = lid; d < d_n; d = d + WG) {
        qs[d] = q[h * d_n + d] * p.scale;
    }
    workgroupBarrier();

    var s = NEG;
    if (lid < count) {
        let k_base = (start + lid) * p.kv_stride + kvh * d_n;
        // Four independent sums so the loads of a row overlap.
        var a = vec4<f32>(0.0);
        var d = 0u;
        for (; d + 4u <= d_n; d = d + 4u) {
            a = a + vec4<f32>(qs[d], qs[d + 1u], qs[d + 2u], qs[d + 3u]) *
                    vec4<f32>(k[k_base + d], k[k_base + d + 1u], k[k_base + d + 2u], k[k_base + d + 3u]);
        }
        for (; d < d_n; d = d + 1u) {
            a.x = a.x + qs[d] * k[k_base + d];
        }
        s = (a.x + a.y) + (a.z + a.w);
    }
    red[lid] = s;
    workgroupBarrier();
    for (var st = WG / 2u; st > 0u; st = st >> 1u) {
        if (lid < st) {
            red[lid] = max(red[lid], red[lid + st]);
        }
        workgroupBarrier();
    }
    let m = red[0];
    var pw = 0.0;
    if (lid < count) {
        pw = exp(s - m);
    }
    sc[lid] = pw;
    workgroupBarrier();

    var l = 0.0;
    var acc = array<f32, 4>(0.0, 0.0, 0.0, 0.0);
    for (var jj = 0u; jj < count; jj = jj + 1u) {
        let pj = sc[jj];
        l = l + pj;
        let v_base = (start + jj) * p.kv_stride + kvh * d_n;
        for (var r = 0u; r < 4u; r = r + 1u) {
            let d = lid + r * WG;
            if (d < d_n) {
                acc[r] = acc[r] + pj * v[v_base + d];
            }
        }
    }
    for (var r = 0u; r < 4u; r = r + 1u) {
        let d = lid + r * WG;
        if (d < d_n) {
            out[part_base + d] = acc[r];
        }
    }
    if (lid == 0u) {
        out[part_base + d_n] = m;
        out[part_base + d_n + 1u] = l;
    }
}
#endif
#endif

#ifdef DECODE_COMBINE
@group(0) @binding(1) var<storage, read> part: array<f32>;           // part: [heads, n_splits, head_dim + 2] f32
@group(0) @binding(2) var<storage, read_write> out: array<f32>;      // out: [1, heads * head_dim] f32

@compute @workgroup_size(64)
fn decode_combine(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
                  @builtin(local_invocation_index) lid: u32) {
    let h = wid.x + wid.y * nwg.x;
    if (h >= p.heads) {
        return;
    }
    let n_splits = p._p1;
    let d_n = p.head_dim;
    let row = d_n + 2u;
    let base = h * n_splits * row;
    var mx = NEG;
    for (var s = 0u; s < n_splits; s = s + 1u) {
        mx = max(mx, part[base + s * row + d_n]);
    }
    var l = 0.0;
    var acc = array<f32, 4>(0.0, 0.0, 0.0, 0.0);
    for (var s = 0u; s < n_splits; s = s + 1u) {
        let ms = part[base + s * row + d_n];
        if (ms > NEG) {
            let w = exp(ms - mx);
            l = l + w * part[base + s * row + d_n + 1u];
            for (var r = 0u; r < 4u; r = r + 1u) {
                let d = lid + r * WG;
                if (d < d_n) {
                    acc[r] = acc[r] + w * part[base + s * row + d];
                }
            }
        }
    }
    var inv = 0.0;
    if (l > 0.0) {
        inv = 1.0 / l;
    }
    for (var r = 0u; r < 4u; r = r + 1u) {
        let d = lid + r * WG;
        if (d < d_n) {
            out[h * d_n + d] = acc[r] * inv;
        }
    }
}
#endif
