// Speculative decoding, the target model's verdict on drafted tokens, on the GPU
// (Leviathan et al. 2023, "Fast Inference from Transformers via Speculative Decoding";
// greedy acceptance). A verify pass runs the model over [last token, d_0 .. d_{k-1}] with
// causal attention over the cache, so logits row i is the model's next token after d_{i-1}.
// Two dispatches:
// - `argmax_rows` (grid(rows), ARGMAX defined): one workgroup per row of `logits` writes the
//   row's argmax into best[row]; ties go to the lowest index, NaN never wins (as the
//   sampler's greedy path);
// - `accept` (one invocation): drafts are accepted while d_i == best[i]; with a accepted, the
//   next token is best[a] (the correction of the first rejected draft, or the bonus token
//   after the last). Writes out = [a, best[0] .. best[k]], state[0] = best[a] (the next
//   step's input), state[1] += a + 1 (the cache keeps the last token and the accepted
//   drafts; the rows written for rejected drafts are overwritten later) and state[2] += 1.

struct Params {
    rows: u32,   // k + 1
    vocab: u32,
    _p0: u32,
    _p1: u32,
}

@group(0) @binding(0) var<uniform> p: Params;
#ifdef ARGMAX
@group(0) @binding(1) var<storage, read> logits: array<f32>;      // logits: [rows, vocab] f32
@group(0) @binding(2) var<storage, read_write> best: array<u32>;  // best: [rows] u32
#else
@group(0) @binding(1) var<storage, read> best: array<u32>;        // best: [rows] u32
@group(0) @binding(2) var<storage, read> drafts: array<u32>;      // drafts: [rows - 1] u32 (one word when none)
@group(0) @binding(3) var<storage, read_write> out: array<u32>;   // out: [rows + 1] u32
@group(0) @binding(4) var<storage, read_write> state: array<u32>; // state: [4] u32
#endif

const WG: u32 = 256u;

#ifdef ARGMAX
var<workgroup> vals: array<f32, WG>;
var<workgroup> idxs: array<u32, WG>;

// NaN by its bits (drivers may fold `x != x` away under fast-math float controls).
fn is_nan(v: f32) -> bool {
    return (bitcast<u32>(v) & 0x7fffffffu) > 0x7f800000u;
}

// Whether (va, ia) beats (vb, ib): ib == NONE (nothing yet) loses to any value but NaN; then
// the larger value, then the lower index; NaN never wins.
const NONE: u32 = 0xffffffffu;
fn beats(va: f32, ia: u32, vb: f32, ib: u32) -> bool {
    if (ia == NONE || is_nan(va)) {
        return false;
    }
    if (ib == NONE) {
        return true;
    }
    return va > vb || (va == vb && ia < ib);
}

@compute @workgroup_size(256)
fn argmax_rows(@builtin(workgroup_id) wg: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>) {
    let row = wg.x;
    let base = row * p.vocab;
    var bv = 0.0;
    var bi = NONE;
    for (var j = lid.x; j < p.vocab; j = j + WG) {
        let v = logits[base + j];
        if (beats(v, j, bv, bi)) {
            bv = v;
            bi = j;
        }
    }
    vals[lid.x] = bv;
    idxs[lid.x] = bi;
    workgroupBarrier();
    for (var s = WG / 2u; s > 0u; s = s >> 1u) {
        if (lid.x < s && beats(vals[lid.x + s], idxs[lid.x + s], vals[lid.x], idxs[lid.x])) {
            vals[lid.x] = vals[lid.x + s];
            idxs[lid.x] = idxs[lid.x + s];
        }
        workgroupBarrier();
    }
    if (lid.x == 0u) {
        // A row of NaN only: token 0, as the sampler.
        best[row] = select(idxs[0], 0u, idxs[0] == NONE);
    }
}
#else
@compute @workgroup_size(1)
fn accept() {
    let k = p.rows - 1u;
    var a = 0u;
    loop {
        if (a >= k || drafts[a] != best[a]) {
            break;
        }
        a = a + 1u;
    }
    out[0] = a;
    for (var i = 0u; i < p.rows; i = i + 1u) {
        out[i + 1u] = best[i];
    }
    state[0] = best[a];
    state[1] = state[1] + a + 1u;
    state[2] = state[2] + 1u;
}
#endif
