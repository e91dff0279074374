// Sequence pooling under an attention mask: mean over unmasked tokens, the first ([CLS])
// token, or the last unmasked token (decoder embedders). One thread per (batch, dim) output, 256 per workgroup, grid() split.

struct Params {
    batch: u32,
    seq: u32,
    dim: u32,
    _pad: u32,
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> x: array<f32>;              // x: [batch, seq, dim] f32
@group(0) @binding(2) var<storage, read_write> out: array<f32>;      // out: [batch, dim] f32
#ifdef MASK
@group(0) @binding(3) var<storage, read> mask: array<u32>;           // mask: [batch, seq] u32, 0 = padding
#endif

fn index(gid: vec3<u32>, nwg: vec3<u32>) -> u32 {
    return gid.x + gid.y * nwg.x * 256u;
}

#ifdef MASK
// sum_s mask * x / max(sum_s mask, 1e-9)  (sentence-transformers' mean pooling)
@compute @workgroup_size(256)
fn mean_pool(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = index(gid, nwg);
    if (i >= p.batch * p.dim) {
        return;
    }
    let b = i / p.dim;
    let d = i % p.dim;
    var s = 0.0;
    var c = 0.0;
    for (var t = 0u; t < p.seq; t = t + 1u) {
        if (mask[b * p.seq + t] != 0u) {
            s = s + x[(b * p.seq + t) * p.dim + d];
            c = c + 1.0;
        }
    }
    out[i] = s / max(c, 1e-9);
}

// x[b, t, :] for the last t with mask[b, t] != 0 (zeros for a row with no tokens): the
// last-token pooling of decoder embedders over right-padded rows.
@compute @workgroup_size(256)
fn last_pool(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = index(gid, nwg);
    if (i >= p.batch * p.dim) {
        return;
    }
    let b = i / p.dim;
    let d = i % p.dim;
    var v = 0.0;
    for (var t = 0u; t < p.seq; t = t + 1u) {
        if (mask[b * p.seq + t] != 0u) {
            v = x[(b * p.seq + t) * p.dim + d];
        }
    }
    out[i] = v;
}
#endif

// x[b, 0, :]
@compute @workgroup_size(256)
fn cls_pool(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = index(gid, nwg);
    if (i >= p.batch * p.dim) {
        return;
    }
    let b = i / p.dim;
    let d = i % p.dim;
    out[i] = x[b * p.seq * p.dim + d];
}
