// Vector search: sign-bit codes, Hamming similarity, candidate rescoring and top-k.
//
//   binarize   x [n, d] f32 -> bits [n, W] u32, W = ceil(d / 32); bit j of word w is
//              x[32w + j] > 0. One thread per word. Dispatch grid(ceil(n·W / 256)).
//   hamming    q_bits [W], bits [n, W] -> sim [n] f32 = d - 2·popcount(q ^ b): the number of
//              agreeing signs minus disagreeing ones. One thread per row. grid(ceil(n / 256)).
//   rescore    q [d] f32, x [N, d] f32, ids [c] u32 -> sim [c] f32 = q · x[ids[i]]
//              (-inf-like for ids >= N). One workgroup of 64 per candidate. grid(c).
//   topk       scores [n] f32 (+ ids [n] u32 with IDS, else ids are positions) -> the k best
//              (score desc, id asc) of each block of 1024, as out_scores/out_ids [blocks, k].
//              Repeated until one block remains. k <= 256. Dispatch grid(ceil(n / 1024)).

struct Params {
    n: u32,      // rows (binarize, hamming), candidates (rescore), scores (topk)
    d: u32,      // vector width
    words: u32,  // W
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
@group(0) @binding(2) var<storage, read> vecs: array<f32>;           // vecs: [N, d] f32 (N = p.k)
@group(0) @binding(3) var<storage, read> cand: array<u32>;           // cand: [n] u32
@group(0) @binding(4) var<storage, read_write> out: array<f32>;      // out: [n] f32

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
        for (var c = lid; c < p.d; c = c + 64u) {
            s = s + q[c] * vecs[id * p.d + c];
        }
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
        out[i] = select(NEG, part[0], id < p.k);
    }
}
#endif

#ifdef TOPK
@group(0) @binding(1) var<storage, read> scores: array<f32>;         // scores: [n] f32
@group(0) @binding(2) var<storage, read_write> out_scores: array<f32>;  // out_scores: [blocks, k] f32
@group(0) @binding(3) var<storage, read_write> out_ids: array<u32>;  // out_ids: [blocks, k] u32
#ifdef IDS
@group(0) @binding(4) var<storage, read> ids: array<u32>;            // ids: [n] u32
#endif

const BLOCK: u32 = 1024u;
var<workgroup> s_val: array<f32, 1024>;
var<workgroup> s_id: array<u32, 1024>;
var<workgroup> r_val: array<f32, 256>;
var<workgroup> r_slot: array<u32, 256>;

// (va, ia) ranks before (vb, ib): higher score, then lower id.
fn better(va: f32, ia: u32, vb: f32, ib: u32) -> bool {
    return va > vb || (va == vb && ia < ib);
}

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
