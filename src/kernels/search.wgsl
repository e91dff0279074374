// Vector search: sign-bit codes, Hamming similarity, int8 codes, candidate rescoring and top-k.
//
//   binarize   x [n, d] f32 -> bits [n, W] u32, W = ceil(d / 32); bit j of word w is
//              x[32w + j] > 0. One thread per word. Dispatch grid(ceil(n·W / 256)).
//   hamming    q_bits [W], bits [n, W] -> sim [n] f32 = d - 2·popcount(q ^ b): the number of
//              agreeing signs minus disagreeing ones. One thread per row. grid(ceil(n / 256)).
//   quantize_i8 x [n, d] f32 -> q8 [n, W8] u32, W8 = ceil(d / 4), scale [n] f32: symmetric
//              per-row int8, scale = max|x| / 127, byte j of word w = round(x[4w + j] / scale)
//              (two's complement). One thread per row. grid(ceil(n / 256)).
//   to_f16     x [m] f32 (m even) -> h [m / 2] u32, two f16 per word (pack2x16float).
//              One thread per word. grid(ceil(m / 2 / 256)).
//   score      q [d] f32, x [N, d] f32 (VEC4: d % 4 == 0) or f16 (F16: d even) -> sim [n] f32
//              = q · x[i] for the first n rows. One thread per row, no barriers (the
//              exact scan for CPU adapters and f16 storage). grid(ceil(n / 256)).
//   rescore    q [d] f32, x [N, d] f32 (or F16: f16 pairs; I8: q8 [N, W8] u32 + scale [N]),
//              ids [c] u32 -> sim [c] f32 = q · x[ids[i]] (-inf-like for ids >= N).
//              One workgroup of 64 per candidate. grid(c).
//   topk       scores [n] f32 (+ ids [n] u32 with IDS, else ids are positions) -> the k best
//              (score desc, id asc) of each block of 1024, as out_scores/out_ids [blocks, k].
//              Repeated until one block remains. k <= 256. Dispatch grid(ceil(n / 1024)).
//   topk_local same contract with segments of p.d scores, one thread per segment keeping a
//              sorted private list (insertion), no barriers: for CPU adapters, where the k
//              barrier rounds of `topk` are slow. k <= 32. grid(ceil(segments / 64)).

struct Params {
    n: u32,      // rows (binarize, hamming, score, quantize_i8), candidates (rescore),
                 // scores (topk), words (to_f16)
    d: u32,      // vector width; topk_local: segment length
    words: u32,  // W (binarize, hamming) or W8 (quantize_i8, rescore I8)
    k: u32,      // topk: results per block; rescore: rows of x (N)
}

const NEG: f32 = -3.0e38;
const NONE: u32 = 0xffffffffu;

@group(0) @binding(0) var<uniform> p: Params;

#ifdef BINARIZE
@group(0) @binding(1) var<storage, read> x: array<f32>;              // x: [n, d] f32
@group(0) @binding(2) var<storage, read_write> bits: array<u32>;     // bits: [n, W] u32

@compute @workgroup_size(256)
fn binarize(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = gid.x + gid.y * nwg.x * 256u;
    if (i >= p.n * p.words) {
        return;
    }
    let row = i / p.words;
    let w = i % p.words;
    var word = 0u;
    for (var j = 0u; j < 32u; j = j + 1u) {
        let c = w * 32u + j;
        if (c < p.d && x[row * p.d + c] > 0.0) {
            word = word | (1u << j);
        }
    }
    bits[i] = word;
}
#endif

#ifdef HAMMING
@group(0) @binding(1) var<storage, read> q_bits: array<u32>;         // q_bits: [W] u32
@group(0) @binding(2) var<storage, read> codes: array<u32>;          // codes: [n, W] u32
@group(0) @binding(3) var<storage, read_write> sim: array<f32>;      // sim: [n] f32

@compute @workgroup_size(256)
fn hamming(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = gid.x + gid.y * nwg.x * 256u;
    if (i >= p.n) {
        return;
    }
    var ham = 0u;
    for (var w = 0u; w < p.words; w = w + 1u) {
        ham = ham + countOneBits(q_bits[w] ^ codes[i * p.words + w]);
    }
    sim[i] = f32(p.d) - 2.0 * f32(ham);
}
#endif

#ifdef RESCORE
@group(0) @binding(1) var<storage, read> q: array<f32>;              // q: [d] f32
#ifdef F16
@group(0) @binding(2) var<storage, read> vecs: array<u32>;           // vecs: [N, d] f16 pairs (N = p.k)
#else
#ifdef I8
@group(0) @binding(2) var<storage, read> vecs: array<u32>;           // vecs: [N, W8] u32, 4 int8 each
#else
@group(0) @binding(2) var<storage, read> vecs: array<f32>;           // vecs: [N, d] f32 (N = p.k)
#endif
#endif
@group(0) @binding(3) var<storage, read> cand: array<u32>;           // cand: [n] u32
@group(0) @binding(4) var<storage, read_write> out: array<f32>;      // out: [n] f32
#ifdef I8
@group(0) @binding(5) var<storage, read> scale: array<f32>;          // scale: [N] f32
#endif

var<workgroup> part: array<f32, 64>;

@compute @workgroup_size(64)
fn rescore(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
           @builtin(local_invocation_index) lid: u32) {
    let i = wid.x + wid.y * nwg.x;
    if (i >= p.n) {
        return;
    }
    let id = cand[i];
    var s = 0.0;
    if (id < p.k) {
#ifdef F16
        let hw = p.d / 2u;
        for (var w = lid; w < hw; w = w + 64u) {
            let v = unpack2x16float(vecs[id * hw + w]);
            s = s + q[2u * w] * v.x + q[2u * w + 1u] * v.y;
        }
#else
#ifdef I8
        for (var w = lid; w < p.words; w = w + 64u) {
            let word = bitcast<i32>(vecs[id * p.words + w]);
            for (var j = 0u; j < 4u; j = j + 1u) {
                let c = 4u * w + j;
                if (c < p.d) {
                    s = s + q[c] * f32(extractBits(word, 8u * j, 8u));
                }
            }
        }
#else
        for (var c = lid; c < p.d; c = c + 64u) {
            s = s + q[c] * vecs[id * p.d + c];
        }
#endif
#endif
    }
    part[lid] = s;
    workgroupBarrier();
    for (var st = 32u; st > 0u; st = st >> 1u) {
        if (lid < st) {
            part[lid] = part[lid] + part[lid + st];
        }
        workgroupBarrier();
    }
    if (lid == 0u) {
#ifdef I8
        let sc = select(0.0, scale[min(id, p.k - 1u)], id < p.k);
        out[i] = select(NEG, part[0] * sc, id < p.k);
#else
        out[i] = select(NEG, part[0], id < p.k);
#endif
    }
}
#endif

#ifdef QUANTIZE_I8
@group(0) @binding(1) var<storage, read> x: array<f32>;              // x: [n, d] f32
@group(0) @binding(2) var<storage, read_write> q8: array<u32>;       // q8: [n, W8] u32
@group(0) @binding(3) var<storage, read_write> scale: array<f32>;    // scale: [n] f32

@compute @workgroup_size(256)
fn quantize_i8(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let row = gid.x + gid.y * nwg.x * 256u;
    if (row >= p.n) {
        return;
    }
    let base = row * p.d;
    var m = 0.0;
    for (var c = 0u; c < p.d; c = c + 1u) {
        m = max(m, abs(x[base + c]));
    }
    let inv = select(0.0, 127.0 / m, m > 0.0);
    for (var w = 0u; w < p.words; w = w + 1u) {
        var word = 0u;
        for (var j = 0u; j < 4u; j = j + 1u) {
            let c = 4u * w + j;
            if (c < p.d) {
                let v = i32(clamp(round(x[base + c] * inv), -127.0, 127.0));
                word = word | ((bitcast<u32>(v) & 0xffu) << (8u * j));
            }
        }
        q8[row * p.words + w] = word;
    }
    scale[row] = m / 127.0;
}
#endif

#ifdef TO_F16
@group(0) @binding(1) var<storage, read> x: array<f32>;              // x: [2n] f32
@group(0) @binding(2) var<storage, read_write> h: array<u32>;        // h: [n] u32, f16 pairs

@compute @workgroup_size(256)
fn to_f16(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = gid.x + gid.y * nwg.x * 256u;
    if (i >= p.n) {
        return;
    }
    h[i] = pack2x16float(vec2<f32>(x[2u * i], x[2u * i + 1u]));
}
#endif

#ifdef SCORE
@group(0) @binding(1) var<storage, read> q: array<f32>;              // q: [d] f32
#ifdef F16
@group(0) @binding(2) var<storage, read> vecs: array<u32>;           // vecs: [N, d] f16 pairs
#else
#ifdef VEC4
@group(0) @binding(2) var<storage, read> vecs: array<vec4<f32>>;     // vecs: [N, d / 4] vec4<f32>
#else
@group(0) @binding(2) var<storage, read> vecs: array<f32>;           // vecs: [N, d] f32
#endif
#endif
@group(0) @binding(3) var<storage, read_write> out: array<f32>;      // out: [n] f32

@compute @workgroup_size(256)
fn score(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = gid.x + gid.y * nwg.x * 256u;
    if (i >= p.n) {
        return;
    }
    var s = 0.0;
#ifdef F16
    let hw = p.d / 2u;
    let base = i * hw;
    for (var w = 0u; w < hw; w = w + 1u) {
        let v = unpack2x16float(vecs[base + w]);
        s = s + q[2u * w] * v.x + q[2u * w + 1u] * v.y;
    }
#else
#ifdef VEC4
    let quarter = p.d / 4u;
    let base = i * quarter;
    for (var w = 0u; w < quarter; w = w + 1u) {
        let c = 4u * w;
        s = s + dot(vecs[base + w], vec4<f32>(q[c], q[c + 1u], q[c + 2u], q[c + 3u]));
    }
#else
    let base = i * p.d;
    for (var c = 0u; c < p.d; c = c + 1u) {
        s = s + q[c] * vecs[base + c];
    }
#endif
#endif
    out[i] = s;
}
#endif

#ifdef TOPK_ANY
@group(0) @binding(1) var<storage, read> scores: array<f32>;         // scores: [n] f32
@group(0) @binding(2) var<storage, read_write> out_scores: array<f32>;  // out_scores: [blocks, k] f32
@group(0) @binding(3) var<storage, read_write> out_ids: array<u32>;  // out_ids: [blocks, k] u32
#ifdef IDS
@group(0) @binding(4) var<storage, read> ids: array<u32>;            // ids: [n] u32
#endif

// (va, ia) ranks before (vb, ib): higher score, then lower id.
fn better(va: f32, ia: u32, vb: f32, ib: u32) -> bool {
    return va > vb || (va == vb && ia < ib);
}

#ifdef TOPK_LOCAL
// One thread per segment of p.d scores: a private list sorted best first, grown by
// insertion. Only scores that beat the current k-th move anything.
@compute @workgroup_size(64)
fn topk_local(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let t = gid.x + gid.y * nwg.x * 64u;
    let base = t * p.d;
    if (base >= p.n) {
        return;
    }
    var bv: array<f32, 32>;
    var bi: array<u32, 32>;
    var m = 0u;
    let end = min(base + p.d, p.n);
    for (var e = base; e < end; e = e + 1u) {
        let v = scores[e];
#ifdef IDS
        let id = ids[e];
#else
        let id = e;
#endif
        if (id == NONE || (m == p.k && !better(v, id, bv[p.k - 1u], bi[p.k - 1u]))) {
            continue;
        }
        var j = m;
        if (m == p.k) {
            j = p.k - 1u;
        } else {
            m = m + 1u;
        }
        loop {
            if (j == 0u || !better(v, id, bv[j - 1u], bi[j - 1u])) {
                break;
            }
            bv[j] = bv[j - 1u];
            bi[j] = bi[j - 1u];
            j = j - 1u;
        }
        bv[j] = v;
        bi[j] = id;
    }
    for (var r = 0u; r < p.k; r = r + 1u) {
        let o = t * p.k + r;
        if (r < m) {
            out_scores[o] = bv[r];
            out_ids[o] = bi[r];
        } else {
            out_scores[o] = NEG;
            out_ids[o] = NONE;
        }
    }
}
#else
const BLOCK: u32 = 1024u;
var<workgroup> s_val: array<f32, 1024>;
var<workgroup> s_id: array<u32, 1024>;
var<workgroup> r_val: array<f32, 256>;
var<workgroup> r_slot: array<u32, 256>;

@compute @workgroup_size(256)
fn topk(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
        @builtin(local_invocation_index) lid: u32) {
    let block = wid.x + wid.y * nwg.x;
    let base = block * BLOCK;
    if (base >= p.n) {
        return;
    }
    for (var e = lid; e < BLOCK; e = e + 256u) {
        let i = base + e;
        if (i < p.n) {
            s_val[e] = scores[i];
#ifdef IDS
            s_id[e] = ids[i];
#else
            s_id[e] = i;
#endif
        } else {
            s_val[e] = NEG;
            s_id[e] = NONE;
        }
    }
    workgroupBarrier();
    for (var r = 0u; r < p.k; r = r + 1u) {
        // Each thread's best of its 4 slots, then a tree over the 256 threads.
        var bv = NEG;
        var bi = NONE;
        var bs = lid;
        for (var e = lid; e < BLOCK; e = e + 256u) {
            if (s_id[e] != NONE && better(s_val[e], s_id[e], bv, bi)) {
                bv = s_val[e];
                bi = s_id[e];
                bs = e;
            }
        }
        r_val[lid] = bv;
        r_slot[lid] = select(NONE, bs, bi != NONE);
        workgroupBarrier();
        for (var st = 128u; st > 0u; st = st >> 1u) {
            if (lid < st) {
                let a = r_slot[lid];
                let b = r_slot[lid + st];
                if (b != NONE && (a == NONE || better(r_val[lid + st], s_id[b], r_val[lid], s_id[a]))) {
                    r_val[lid] = r_val[lid + st];
                    r_slot[lid] = b;
                }
            }
            workgroupBarrier();
        }
        let slot = r_slot[0];
        if (lid == 0u) {
            let o = block * p.k + r;
            if (slot != NONE) {
                out_scores[o] = s_val[slot];
                out_ids[o] = s_id[slot];
                s_id[slot] = NONE;
            } else {
                out_scores[o] = NEG;
                out_ids[o] = NONE;
            }
        }
        workgroupBarrier();
    }
}
#endif
#endif
