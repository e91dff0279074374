// Next-token selection on the GPU: repetition penalty, then greedy argmax or sampling with
// temperature, top-k and top-p and a seeded counter-based RNG. Writes the chosen id into
// state[0] (the next decode step's input and the one value the host reads back), advances
// the cache position state[1] by p.advance and the step counter state[2] by 1, and marks
// the token in `seen` (for the repetition penalty of later steps).
//
// Order of operations as in transformers' generate: repetition penalty (CTRL, Keskar et
// al. 2019: a seen token's logit l becomes l / r if l > 0, else l * r), temperature,
// top-k (keeps every token whose score ties the k-th largest), top-p (keeps the smallest
// set of highest-probability tokens whose mass reaches top_p; at least one).
// Thresholds are found by bisection on the order-preserving u32 key of the f32 score
// (32 counting passes), so no sort is needed. The sample is the first token, in vocabulary
// order, whose running mass over the kept set exceeds u * total, u uniform in [0, 1) from
// hash(seed, state[2]).
//
// Two dispatches, so the vocabulary walk is spread over the GPU (one workgroup over a
// 151936-entry vocabulary took hundreds of µs per greedy token and ~10 ms per sampled one):
// - `block_partial`, grid(n_blocks): block b of BLOCK = 2048 scores writes a record of
//   STRIDE words to part[STRIDE * b ..]: its max score bits and the lowest index of the max
//   (greedy); when sampling also sum exp((s - max_b) / T) over the block, and its CAND
//   highest-scoring tokens (index order; index and score bits) with the largest key it left
//   out (`excl`; 0 when it kept every token). Ties at the cut are all left out, so every
//   token whose key exceeds `excl` is a candidate.
// - `sample`, one workgroup: greedy reduces the block maxima; sampling runs the thresholds and
//   the draw over the n_blocks * CAND candidates. That is exact whenever the kept set lies
//   above E = max excl (top-k with k <= CAND, or top-p over a peaked distribution: counts and
//   masses above E are the same over the candidates as over the vocabulary, so the bisection
//   finds the same threshold); otherwise (pure temperature sampling, a flat distribution, a
//   large k) the same code runs again over the whole vocabulary.
// The temperature is only known on the GPU, so a recorded step replays for any setting.
// state[3] tells how the token was chosen: 0 greedy, 1 from the candidates, 2 over the whole
// vocabulary (tests and profiling read it; nothing else does).

struct Params {
    vocab: u32,     // logits in the row
    advance: u32,   // tokens this step appended to the cache (prompt length or 1)
    n_blocks: u32,  // ceil(vocab / BLOCK): entries of `part`
    _p1: u32,
}

// Per-call sampling settings, written by the host once per generate call.
struct Config {
    temperature: f32,   // <= 0: greedy
    top_k: u32,         // 0: off
    top_p: f32,         // >= 1: off
    rep_penalty: f32,   // 1: off
    seed_lo: u32,
    seed_hi: u32,
    _p0: u32,
    _p1: u32,
}

const WG: u32 = 256u;
const BLOCK: u32 = 2048u;       // scores per block (ARGMAX_BLOCK)
const PER: u32 = BLOCK / WG;    // scores per thread of a block, contiguous
const CAND: u32 = 64u;          // sampling candidates per block (SAMPLE_CANDIDATES)
const STRIDE: u32 = 4u + 2u * CAND;
const NONE: u32 = 0xFFFFFFFFu;

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> logits: array<f32>;         // logits: [vocab] f32
@group(0) @binding(2) var<storage, read> cfg: Config;                // cfg: [8] u32 words
@group(0) @binding(3) var<storage, read_write> seen: array<u32>;     // seen: [vocab] u32, 1 = in prompt or output
@group(0) @binding(4) var<storage, read_write> part: array<u32>;     // part: [n_blocks, STRIDE] u32 block records (above)
@group(0) @binding(5) var<storage, read_write> state: array<u32>;    // state: [4] u32: token, position, step, how (`sample` only)

var<workgroup> rf: array<f32, WG>;
var<workgroup> ru: array<u32, WG>;
var<workgroup> pick: u32;
var<workgroup> res_f: f32;
var<workgroup> res_u: u32;
var<workgroup> wcfg: Config;

fn score(i: u32) -> f32 {
    var l = logits[i];
    if (cfg.rep_penalty != 1.0 && seen[i] != 0u) {
        l = select(l * cfg.rep_penalty, l / cfg.rep_penalty, l > 0.0);
    }
    return l;
}

// Order-preserving map of an f32 to a u32 (larger float -> larger key).
fn key(v: f32) -> u32 {
    let b = bitcast<u32>(v);
    return select(b | 0x80000000u, ~b, (b & 0x80000000u) != 0u);
}

fn pcg(v: u32) -> u32 {
    let s = v * 747796405u + 2891336930u;
    let w = ((s >> ((s >> 28u) + 4u)) ^ s) * 277803737u;
    return (w >> 22u) ^ w;
}

fn sum_f(lid: u32, v: f32) -> f32 {
    rf[lid] = v;
    workgroupBarrier();
    for (var s = WG / 2u; s > 0u; s = s >> 1u) {
        if (lid < s) {
            rf[lid] = rf[lid] + rf[lid + s];
        }
        workgroupBarrier();
    }
    if (lid == 0u) {
        res_f = rf[0];
    }
    // A uniform value: loops and branches that contain barriers may depend on it.
    return workgroupUniformLoad(&res_f);
}

// Workgroup sum (or, with `take_max`, maximum) of a u32 per thread, as a uniform value.
fn reduce_u(lid: u32, v: u32, take_max: bool) -> u32 {
    ru[lid] = v;
    workgroupBarrier();
    for (var s = WG / 2u; s > 0u; s = s >> 1u) {
        if (lid < s) {
            let o = ru[lid + s];
            ru[lid] = select(ru[lid] + o, max(ru[lid], o), take_max);
        }
        workgroupBarrier();
    }
    if (lid == 0u) {
        res_u = ru[0];
    }
    return workgroupUniformLoad(&res_u);
}
fn sum_u(lid: u32, v: u32) -> u32 {
    return reduce_u(lid, v, false);
}
fn max_u(lid: u32, v: u32) -> u32 {
    return reduce_u(lid, v, true);
}

// Exclusive prefix sum of v over the workgroup's threads (and the total in res_u).
fn scan_u(lid: u32, v: u32) -> u32 {
    ru[lid] = v;
    workgroupBarrier();
    for (var off = 1u; off < WG; off = off << 1u) {
        let o = select(0u, ru[max(lid, off) - off], lid >= off);
        workgroupBarrier();
        ru[lid] = ru[lid] + o;
        workgroupBarrier();
    }
    let incl = ru[lid];
    if (lid == WG - 1u) {
        res_u = incl;
    }
    workgroupBarrier();
    return incl - v;
}

// Workgroup argmax of (v, i) per thread into rf[0], ru[0]: larger value, then lower index.
fn argmax_reduce(lid: u32, v: f32, i: u32) {
    rf[lid] = v;
    ru[lid] = i;
    workgroupBarrier();
    for (var st = WG / 2u; st > 0u; st = st >> 1u) {
        if (lid < st) {
            let o = lid + st;
            if (rf[o] > rf[lid] || (rf[o] == rf[lid] && ru[o] < ru[lid])) {
                rf[lid] = rf[o];
                ru[lid] = ru[o];
            }
        }
        workgroupBarrier();
    }
}

@compute @workgroup_size(256)
fn block_partial(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
                 @builtin(local_invocation_index) lid: u32) {
    let b = wid.x + wid.y * nwg.x;
    if (b >= p.n_blocks) {
        return;
    }
    let start = b * BLOCK;
    let end = min(p.vocab, start + BLOCK);
    // Thread t holds scores start + PER t .. + PER - 1 (index order within the thread).
    var sv: array<f32, PER>;
    var best = -3.4e38;
    var best_i = NONE;
    for (var j = 0u; j < PER; j = j + 1u) {
        let i = start + PER * lid + j;
        sv[j] = -3.4e38;
        if (i < end) {
            sv[j] = score(i);
            if (sv[j] > best) {
                best = sv[j];
                best_i = i;
            }
        }
    }
    argmax_reduce(lid, best, best_i);
    let bmax = rf[0];
    let rec = STRIDE * b;
    if (lid == 0u) {
        part[rec] = bitcast<u32>(bmax);
        part[rec + 1u] = ru[0];
    }
    workgroupBarrier();
    if (cfg.temperature <= 0.0) {
        return;
    }
    let inv_t = 1.0 / cfg.temperature;
    var z = 0.0;
    var kv: array<u32, PER>;
    for (var j = 0u; j < PER; j = j + 1u) {
        let ok = start + PER * lid + j < end;
        kv[j] = select(0u, key(sv[j]), ok);  // 0: no token (every real key is larger)
        if (ok) {
            z = z + exp((sv[j] - bmax) * inv_t);
        }
    }
    let zb = sum_f(lid, z);
    // The CAND-th largest key K: the largest K with count(key >= K) >= CAND (0 when the
    // block holds fewer tokens).
    var kth = 0u;
    for (var bit = 31i; bit >= 0i; bit = bit - 1i) {
        let c = kth | (1u << u32(bit));
        var cnt = 0u;
        for (var j = 0u; j < PER; j = j + 1u) {
            cnt = cnt + select(0u, 1u, kv[j] >= c);
        }
        if (sum_u(lid, cnt) >= CAND) {
            kth = c;
        }
    }
    var n_ge = 0u;
    var below = 0u;  // the largest key under K
    for (var j = 0u; j < PER; j = j + 1u) {
        n_ge = n_ge + select(0u, 1u, kv[j] >= max(kth, 1u));
        if (kv[j] < kth) {
            below = max(below, kv[j]);
        }
    }
    n_ge = sum_u(lid, n_ge);
    below = max_u(lid, below);
    // Exactly CAND at or above K (or fewer tokens): keep them, leaving out keys <= below.
    // More (ties at K): keep the keys above K, leaving out K itself.
    let ties = n_ge > CAND;
    let cut = select(max(kth, 1u), kth + 1u, ties);
    let excl = select(below, kth, ties);
    var mine = 0u;
    for (var j = 0u; j < PER; j = j + 1u) {
        mine = mine + select(0u, 1u, kv[j] >= cut);
    }
    var at = scan_u(lid, mine);
    let total = workgroupUniformLoad(&res_u);
    for (var j = 0u; j < PER; j = j + 1u) {
        if (kv[j] >= cut) {
            part[rec + 4u + at] = start + PER * lid + j;
            part[rec + 4u + CAND + at] = bitcast<u32>(sv[j]);
            at = at + 1u;
        }
    }
    for (var slot = total + lid; slot < CAND; slot = slot + WG) {
        part[rec + 4u + slot] = NONE;
    }
    if (lid == 0u) {
        part[rec + 2u] = bitcast<u32>(zb);
        part[rec + 3u] = excl;
    }
}

// The items a sampling pass walks: the candidates of every block (CAND slots per block, in
// vocabulary order; empty slots are skipped), or the whole vocabulary.
fn n_items(cand: bool) -> u32 {
    return select(p.vocab, p.n_blocks * CAND, cand);
}
// Whether item i is a token (empty candidate slots are not).
fn item_ok(cand: bool, i: u32) -> bool {
    return !cand || part[STRIDE * (i / CAND) + 4u + i % CAND] != NONE;
}
fn item_score(cand: bool, i: u32) -> f32 {
    if (cand) {
        return bitcast<f32>(part[STRIDE * (i / CAND) + 4u + CAND + i % CAND]);
    }
    return score(i);
}
fn item_token(cand: bool, i: u32) -> u32 {
    if (cand) {
        return part[STRIDE * (i / CAND) + 4u + i % CAND];
    }
    return i;
}
// Whether item i is kept by the threshold key kmin.
fn kept(cand: bool, i: u32, kmin: u32) -> bool {
    return item_ok(cand, i) && key(item_score(cand, i)) >= kmin;
}

@compute @workgroup_size(256)
fn sample(@builtin(local_invocation_index) lid: u32) {
    let n = p.vocab;
    var token = 0u;
    var how = 0u;
    if (lid == 0u) {
        wcfg = cfg;
    }
    let c = workgroupUniformLoad(&wcfg);
    // The block maxima give the max score (and greedy its token).
    var best = -3.4e38;
    var best_i = NONE;
    for (var b = lid; b < p.n_blocks; b = b + WG) {
        let s = bitcast<f32>(part[STRIDE * b]);
        let i = part[STRIDE * b + 1u];
        if (s > best || (s == best && i < best_i)) {
            best = s;
            best_i = i;
        }
    }
    argmax_reduce(lid, best, best_i);
    if (c.temperature <= 0.0) {
        // Greedy: the largest score, the lowest index among ties (torch.argmax).
        token = min(ru[0], n - 1u);
    } else {
        let m = rf[0];
        workgroupBarrier();
        let inv_t = 1.0 / c.temperature;
        // Mass of the whole vocabulary, from the block sums; E, the largest key left out of
        // the candidates (0: none was).
        var zp = 0.0;
        var e = 0u;
        for (var b = lid; b < p.n_blocks; b = b + WG) {
            zp = zp + exp((bitcast<f32>(part[STRIDE * b]) - m) * inv_t) * bitcast<f32>(part[STRIDE * b + 2u]);
            e = max(e, part[STRIDE * b + 3u]);
        }
        let z_all = sum_f(lid, zp);
        e = max_u(lid, e);
        var kmin = 0u;
        var cand = true;
        // Round 0 over the candidates; round 1 over the vocabulary when the kept set reaches
        // below E (then the candidates' counts and masses are not the vocabulary's).
        for (var round = 0u; round < 2u; round = round + 1u) {
            cand = round == 0u;
            let items = n_items(cand);
            kmin = 0u;
            // Top-k: the largest key K with count(key >= K) >= k.
            let topk_on = c.top_k > 0u && c.top_k < n;
            if (topk_on) {
                for (var bit = 31i; bit >= 0i; bit = bit - 1i) {
                    let cnd = kmin | (1u << u32(bit));
                    var cnt = 0u;
                    for (var i = lid; i < items; i = i + WG) {
                        cnt = cnt + select(0u, 1u, kept(cand, i, cnd));
                    }
                    if (sum_u(lid, cnt) >= c.top_k) {
                        kmin = cnd;
                    }
                }
            }
            if (cand && topk_on && e != 0u && kmin <= e) {
                continue;  // the top-k set reaches below E: over the vocabulary
            }
            // Top-p over the top-k set: the largest key K with mass(key >= K) >= top_p * Z.
            if (c.top_p < 1.0) {
                var z = z_all;
                if (kmin > 0u) {
                    var zk = 0.0;
                    for (var i = lid; i < items; i = i + WG) {
                        if (kept(cand, i, kmin)) {
                            zk = zk + exp((item_score(cand, i) - m) * inv_t);
                        }
                    }
                    z = sum_f(lid, zk);
                }
                let goal = z * c.top_p;
                // mass(key >= max(K, kmin)) falls as K grows: build K bit by bit.
                var pmin = 0u;
                for (var bit = 31i; bit >= 0i; bit = bit - 1i) {
                    let cnd = pmin | (1u << u32(bit));
                    let th = max(cnd, kmin);
                    var mass = 0.0;
                    for (var i = lid; i < items; i = i + WG) {
                        if (kept(cand, i, th)) {
                            mass = mass + exp((item_score(cand, i) - m) * inv_t);
                        }
                    }
                    if (sum_f(lid, mass) >= goal) {
                        pmin = cnd;
                    }
                }
                kmin = max(pmin, kmin);
            }
            if (!cand || e == 0u || kmin > e) {
                break;
            }
        }
        // Sample: per-thread chunk sums in item order, then thread 0 walks.
        let items = n_items(cand);
        let chunk = (items + WG - 1u) / WG;
        let lo = min(lid * chunk, items);
        let hi = min(lo + chunk, items);
        var part_sum = 0.0;
        for (var i = lo; i < hi; i = i + 1u) {
            if (kept(cand, i, kmin)) {
                part_sum = part_sum + exp((item_score(cand, i) - m) * inv_t);
            }
        }
        rf[lid] = part_sum;
        workgroupBarrier();
        if (lid == 0u) {
            var total = 0.0;
            for (var t = 0u; t < WG; t = t + 1u) {
                total = total + rf[t];
            }
            let h = pcg(c.seed_lo ^ pcg(c.seed_hi ^ pcg(state[2])));
            let u = f32(h >> 8u) / 16777216.0;
            var r = u * total;
            var chosen = NONE;
            var last = 0u;
            for (var t = 0u; t < WG && chosen == NONE; t = t + 1u) {
                if (r < rf[t]) {
                    let tlo = min(t * chunk, items);
                    let thi = min(tlo + chunk, items);
                    for (var i = tlo; i < thi; i = i + 1u) {
                        if (kept(cand, i, kmin)) {
                            last = item_token(cand, i);
                            r = r - exp((item_score(cand, i) - m) * inv_t);
                            if (r < 0.0) {
                                chosen = last;
                                break;
                            }
                        }
                    }
                } else {
                    r = r - rf[t];
                }
                if (rf[t] > 0.0 && chosen == NONE) {
                    // Remember the last kept token so rounding can never leave us without one.
                    let tlo = min(t * chunk, items);
                    let thi = min(tlo + chunk, items);
                    for (var i = thi; i > tlo; i = i - 1u) {
                        if (kept(cand, i - 1u, kmin)) {
                            last = item_token(cand, i - 1u);
                            break;
                        }
                    }
                }
            }
            if (chosen == NONE) {
                chosen = last;
            }
            pick = chosen;
        }
        workgroupBarrier();
        token = min(pick, n - 1u);
        how = select(2u, 1u, cand);
    }
    if (lid == 0u) {
        state[0] = token;
        state[1] = state[1] + p.advance;
        state[2] = state[2] + 1u;
        state[3] = how;
        seen[token] = 1u;
    }
}
