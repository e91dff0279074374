// Row normalisations: LayerNorm, RMSNorm and L2 normalisation.
// One workgroup of 256 threads per row; rows split over x/y (grid()). LayerNorm also has a
// barrier-free entry for CPU adapters (layer_norm_direct).

struct Params {
    rows: u32,  // number of rows
    n: u32,     // row length
    eps: f32,   // LayerNorm/RMSNorm: added to the variance; L2: lower bound of the norm
    _pad: u32,
}

const WG: u32 = 256u;

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> x: array<f32>;              // x: [rows, n] f32
@group(0) @binding(2) var<storage, read_write> out: array<f32>;      // out: [rows, n] f32
#ifdef AFFINE
@group(0) @binding(3) var<storage, read> gamma: array<f32>;          // gamma: [n] f32
#endif
#ifdef BIAS
@group(0) @binding(4) var<storage, read> beta: array<f32>;           // beta: [n] f32
#endif
#ifdef RESIDUAL
@group(0) @binding(4) var<storage, read> r: array<f32>;              // r: [rows, n] f32, added to x first
@group(0) @binding(5) var<storage, read_write> sum: array<f32>;      // sum: [rows, n] f32 = x + r
#endif

var<workgroup> red: array<f32, WG>;

fn block_sum(v: f32, lid: u32) -> f32 {
    red[lid] = v;
    workgroupBarrier();
    for (var s = WG / 2u; s > 0u; s = s >> 1u) {
        if (lid < s) {
            red[lid] = red[lid] + red[lid + s];
        }
        workgroupBarrier();
    }
    let r = red[0];
    workgroupBarrier();
    return r;
}

fn sum_sq(base: u32, lid: u32) -> f32 {
    var s = 0.0;
    for (var i = lid; i < p.n; i = i + WG) {
        let v = x[base + i];
        s = s + v * v;
    }
    return block_sum(s, lid);
}

// out[base + i] = (x[base + i] - mean) * inv, times gamma[i] (AFFINE), plus beta[i] (BIAS).
fn store_normed(base: u32, i: u32, mean: f32, inv: f32) {
    var y = (x[base + i] - mean) * inv;
#ifdef AFFINE
    y = y * gamma[i];
#endif
#ifdef BIAS
    y = y + beta[i];
#endif
    out[base + i] = y;
}

// (x - mean) / sqrt(var + eps) * gamma + beta, two-pass for accuracy.
@compute @workgroup_size(256)
fn layer_norm(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
              @builtin(local_invocation_index) lid: u32) {
    let row = wid.x + wid.y * nwg.x;
    if (row >= p.rows) {
        return;
    }
    let base = row * p.n;
    var s = 0.0;
    for (var i = lid; i < p.n; i = i + WG) {
        s = s + x[base + i];
    }
    let mean = block_sum(s, lid) / f32(p.n);
    var v = 0.0;
    for (var i = lid; i < p.n; i = i + WG) {
        let d = x[base + i] - mean;
        v = v + d * d;
    }
    let inv = inverseSqrt(block_sum(v, lid) / f32(p.n) + p.eps);
    for (var i = lid; i < p.n; i = i + WG) {
        store_normed(base, i, mean, inv);
    }
}

// LayerNorm for CPU adapters (SwiftShader, lavapipe), which emulate workgroup barriers at a
// high cost: one invocation per row, the same two passes without a reduction tree.
// Dispatch grid(ceil(rows / 64)).
@compute @workgroup_size(64)
fn layer_norm_direct(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let row = gid.x + gid.y * nwg.x * 64u;
    if (row >= p.rows) {
        return;
    }
    let base = row * p.n;
    var s = 0.0;
    for (var i = 0u; i < p.n; i = i + 1u) {
        s = s + x[base + i];
    }
    let mean = s / f32(p.n);
    var v = 0.0;
    for (var i = 0u; i < p.n; i = i + 1u) {
        let d = x[base + i] - mean;
        v = v + d * d;
    }
    let inv = inverseSqrt(v / f32(p.n) + p.eps);
    for (var i = 0u; i < p.n; i = i + 1u) {
        store_normed(base, i, mean, inv);
    }
}

// x / sqrt(mean(x^2) + eps) * gamma
@compute @workgroup_size(256)
fn rms_norm(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
            @builtin(local_invocation_index) lid: u32) {
    let row = wid.x + wid.y * nwg.x;
    if (row >= p.rows) {
        return;
    }
    let base = row * p.n;
    let inv = inverseSqrt(sum_sq(base, lid) / f32(p.n) + p.eps);
    for (var i = lid; i < p.n; i = i + WG) {
        store_normed(base, i, 0.0, inv);
    }
}

// x / max(||x||_2, eps)  (sentence-transformers' Normalize)
@compute @workgroup_size(256)
fn l2_norm(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
           @builtin(local_invocation_index) lid: u32) {
    let row = wid.x + wid.y * nwg.x;
    if (row >= p.rows) {
        return;
    }
    let base = row * p.n;
    let inv = 1.0 / max(sqrt(sum_sq(base, lid)), p.eps);
    for (var i = lid; i < p.n; i = i + WG) {
        out[base + i] = x[base + i] * inv;
    }
}

#ifdef RESIDUAL
// Pre-norm decoder residual step in one pass: sum = x + r, out = rms_norm(sum) * gamma
// (RESIDUAL with AFFINE). Saves the separate add dispatch of every sublayer.
@compute @workgroup_size(256)
fn add_rms_norm(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
                @builtin(local_invocation_index) lid: u32) {
    let row = wid.x + wid.y * nwg.x;
    if (row >= p.rows) {
        return;
    }
    let base = row * p.n;
    var s = 0.0;
    for (var i = lid; i < p.n; i = i + WG) {
        let v = x[base + i] + r[base + i];
        sum[base + i] = v;
        s = s + v * v;
    }
    let inv = inverseSqrt(block_sum(s, lid) / f32(p.n) + p.eps);
    for (var i = lid; i < p.n; i = i + WG) {
        out[base + i] = (x[base + i] + r[base + i]) * inv * gamma[i];
    }
}
#endif
