// Next-token selection on the GPU: repetition penalty, then greedy argmax or sampling with
// temperature, top-k and top-p and a seeded counter-based RNG. Writes the chosen id into
// state[0] (the next decode step's input and the one value the host reads back), advances
// the cache position state[1] by p.advance and the step counter state[2] by 1, and marks
// the token in `seen` (for the repetition penalty of later steps).
//
// One workgroup of 256 threads walks the vocabulary (thread t takes i = t, t + 256, ...).
// Order of operations as in transformers' generate: repetition penalty (CTRL, Keskar et
// al. 2019: a seen token's logit l becomes l / r if l > 0, else l * r), temperature,
// top-k (keeps every token whose score ties the k-th largest), top-p (keeps the smallest
// set of highest-probability tokens whose mass reaches top_p; at least one).
// Thresholds are found by bisection on the order-preserving u32 key of the f32 score
// (32 counting passes), so no sort is needed. The sample is the first token, in vocabulary
// order, whose running mass over the kept set exceeds u * total, u uniform in [0, 1) from
// hash(seed, state[2]).
// Dispatch: (1, 1, 1), after `argmax_partial`.
//
// Greedy runs in two dispatches so the vocabulary walk is spread over the GPU (one
// workgroup over a 151936-entry vocabulary took hundreds of µs per token):
// `argmax_partial`, grid(n_blocks), takes blocks of BLOCK = 2048 scores and writes each
// block's (max score bits, lowest index of the max) to part[2 * block ..]; the greedy branch
// of `sample` reduces those n_blocks = p._p0 pairs. `argmax_partial` always runs (the
// temperature is only known on the GPU, so a recorded step replays for any setting).

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
const BLOCK: u32 = 2048u;

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> logits: array<f32>;         // logits: [vocab] f32
@group(0) @binding(2) var<storage, read> cfg: Config;                // cfg: [8] u32 words
@group(0) @binding(3) var<storage, read_write> seen: array<u32>;     // seen: [vocab] u32, 1 = in prompt or output
@group(0) @binding(4) var<storage, read_write> part: array<u32>;     // part: [n_blocks, 2] u32: max score bits, its index
@group(0) @binding(5) var<storage, read_write> state: array<u32>;    // state: [4] u32: token, position, step, 0 (`sample` only)

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

fn sum_u(lid: u32, v: u32) -> u32 {
    ru[lid] = v;
    workgroupBarrier();
    for (var s = WG / 2u; s > 0u; s = s >> 1u) {
        if (lid < s) {
            ru[lid] = ru[lid] + ru[lid + s];
        }
        workgroupBarrier();
    }
    if (lid == 0u) {
        res_u = ru[0];
    }
    return workgroupUniformLoad(&res_u);
}

fn max_f(lid: u32, v: f32) -> f32 {
    rf[lid] = v;
    workgroupBarrier();
    for (var s = WG / 2u; s > 0u; s = s >> 1u) {
        if (lid < s) {
            rf[lid] = max(rf[lid], rf[lid + s]);
        }
        workgroupBarrier();
    }
    if (lid == 0u) {
        res_f = rf[0];
    }
    // A uniform value: loops and branches that contain barriers may depend on it.
    return workgroupUniformLoad(&res_f);
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
fn argmax_partial(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
                  @builtin(local_invocation_index) lid: u32) {
    let b = wid.x + wid.y * nwg.x;
    if (b >= p.n_blocks) {
        return;
    }
    let end = min(p.vocab, (b + 1u) * BLOCK);
    var best = -3.4e38;
    var best_i = 0xFFFFFFFFu;
    for (var i = b * BLOCK + lid; i < end; i = i + WG) {
        let s = score(i);
        if (s > best) {
            best = s;
            best_i = i;
        }
    }
    argmax_reduce(lid, best, best_i);
    if (lid == 0u) {
        part[2u * b] = bitcast<u32>(rf[0]);
        part[2u * b + 1u] = ru[0];
    }
}

@compute @workgroup_size(256)
fn sample(@builtin(local_invocation_index) lid: u32) {
    let n = p.vocab;
    var token = 0u;
    if (lid == 0u) {
        wcfg = cfg;
    }
    let c = workgroupUniformLoad(&wcfg);
    if (c.temperature <= 0.0) {
        // Greedy: the largest score, the lowest index among ties (torch.argmax), from the
        // per-block maxima of `argmax_partial`.
        var best = -3.4e38;
        var best_i = 0xFFFFFFFFu;
        for (var b = lid; b < p.n_blocks; b = b + WG) {
            let s = bitcast<f32>(part[2u * b]);
            let i = part[2u * b + 1u];
            if (s > best || (s == best && i < best_i)) {
                best = s;
                best_i = i;
            }
        }
        argmax_reduce(lid, best, best_i);
        token = min(ru[0], n - 1u);
    } else {
        let inv_t = 1.0 / c.temperature;
        var m = -3.4e38;
        for (var i = lid; i < n; i = i + WG) {
            m = max(m, score(i));
        }
        m = max_f(lid, m);
        // Top-k: the largest key K with count(key >= K) >= k.
        var kmin = 0u;
        if (c.top_k > 0u && c.top_k < n) {
            for (var bit = 31i; bit >= 0i; bit = bit - 1i) {
                let cand = kmin | (1u << u32(bit));
                var cnt = 0u;
                for (var i = lid; i < n; i = i + WG) {
                    cnt = cnt + select(0u, 1u, key(score(i)) >= cand);
                }
                if (sum_u(lid, cnt) >= c.top_k) {
                    kmin = cand;
                }
            }
        }
        // Top-p over the top-k set: the largest key K with mass(key >= K) >= top_p * Z.
        if (c.top_p < 1.0) {
            var z = 0.0;
            for (var i = lid; i < n; i = i + WG) {
                let s = score(i);
                if (key(s) >= kmin) {
                    z = z + exp((s - m) * inv_t);
                }
            }
            let goal = sum_f(lid, z) * c.top_p;
            // mass(key >= max(K, kmin)) falls as K grows: build K bit by bit.
            var pmin = 0u;
            for (var bit = 31i; bit >= 0i; bit = bit - 1i) {
                let cand = pmin | (1u << u32(bit));
                let th = max(cand, kmin);
                var mass = 0.0;
                for (var i = lid; i < n; i = i + WG) {
                    let s = score(i);
                    if (key(s) >= th) {
                        mass = mass + exp((s - m) * inv_t);
                    }
                }
                if (sum_f(lid, mass) >= goal) {
                    pmin = cand;
                }
            }
            kmin = max(pmin, kmin);
        }
        // Sample: per-thread chunk sums in vocabulary order, then thread 0 walks.
        let chunk = (n + WG - 1u) / WG;
        let lo = min(lid * chunk, n);
        let hi = min(lo + chunk, n);
        var part = 0.0;
        for (var i = lo; i < hi; i = i + 1u) {
            let s = score(i);
            if (key(s) >= kmin) {
                part = part + exp((s - m) * inv_t);
            }
        }
        rf[lid] = part;
        workgroupBarrier();
        if (lid == 0u) {
            var total = 0.0;
            for (var t = 0u; t < WG; t = t + 1u) {
                total = total + rf[t];
            }
            let h = pcg(c.seed_lo ^ pcg(c.seed_hi ^ pcg(state[2])));
            let u = f32(h >> 8u) / 16777216.0;
            var r = u * total;
            var chosen = 0xFFFFFFFFu;
            var last = 0u;
            for (var t = 0u; t < WG && chosen == 0xFFFFFFFFu; t = t + 1u) {
                if (r < rf[t]) {
                    let tlo = min(t * chunk, n);
                    let thi = min(tlo + chunk, n);
                    for (var i = tlo; i < thi; i = i + 1u) {
                        let s = score(i);
                        if (key(s) >= kmin) {
                            last = i;
                            r = r - exp((s - m) * inv_t);
                            if (r < 0.0) {
                                chosen = i;
                                break;
                            }
                        }
                    }
                } else {
                    r = r - rf[t];
                }
                if (rf[t] > 0.0 && chosen == 0xFFFFFFFFu) {
                    // Remember the last kept token so rounding can never leave us without one.
                    let tlo = min(t * chunk, n);
                    let thi = min(tlo + chunk, n);
                    for (var i = thi; i > tlo; i = i - 1u) {
                        if (key(score(i - 1u)) >= kmin) {
                            last = i - 1u;
                            break;
                        }
                    }
                }
            }
            if (chosen == 0xFFFFFFFFu) {
                chosen = last;
            }
            pick = chosen;
        }
        workgroupBarrier();
        token = pick;
    }
    if (lid == 0u) {
        state[0] = token;
        state[1] = state[1] + p.advance;
        state[2] = state[2] + 1u;
        seen[token] = 1u;
    }
}
