// Embedding gather: out[r, :] (+)= table[ids[r], :].
// Ids outside [0, vocab) produce zero rows (the GPU cannot raise an error; the tokenizer
// never emits such ids, and the wrapper documents it).
// Dispatch: ceil(rows * dim / 256) workgroups of 256, split over x/y (grid()).

struct Params {
    rows: u32,        // number of ids
    dim: u32,         // hidden size
    vocab: u32,       // rows of the whole table
    accumulate: u32,  // 1: out += row, 0: out = row
    row0: u32,        // first table row bound in `table` (a window of a table too big to bind)
    count: u32,       // table rows bound
    _p0: u32,
    _p1: u32,
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> ids: array<u32>;            // ids: [rows] u32 (or i32 bits)
#ifdef TABLE_F16
@group(0) @binding(2) var<storage, read> table: array<u32>;          // table: [vocab, dim] f16, two per word
#else
@group(0) @binding(2) var<storage, read> table: array<f32>;          // table: [vocab, dim] f32
#endif
@group(0) @binding(3) var<storage, read_write> out: array<f32>;      // out: [rows, dim] f32

fn load(i: u32) -> f32 {
#ifdef TABLE_F16
    let pair = unpack2x16float(table[i >> 1u]);
    return select(pair.x, pair.y, (i & 1u) == 1u);
#else
    return table[i];
#endif
}

@compute @workgroup_size(256)
fn gather(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = gid.x + gid.y * nwg.x * 256u;
    if (i >= p.rows * p.dim) {
        return;
    }
    let r = i / p.dim;
    let c = i % p.dim;
    let id = ids[r];
    let here = id >= p.row0 && id - p.row0 < p.count;
    // Ids in another window are written by that window's dispatch; an id past the table
    // reads as zeros, written by the first window's.
    if (!here && !(id >= p.vocab && p.row0 == 0u)) {
        return;
    }
    var v = 0.0;
    if (here) {
        v = load((id - p.row0) * p.dim + c);
    }
    if (p.accumulate != 0u) {
        out[i] = out[i] + v;
    } else {
        out[i] = v;
    }
}
