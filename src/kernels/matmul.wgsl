// Linear layer: y[m, n] = sum_k x[m, k] * w[n, k] (+ bias[n]), PyTorch's weight layout.
// x is batched over tokens: every leading dim of x is flattened into m.
//
// Two entry points:
//   matmul_tiled  prefill / batches: 64x64 output tile per workgroup of 256 threads,
//                 each thread a 4x4 block in vec4 registers; K walked in slices of 16
//                 through shared memory.
//                 Dispatch (ceil(N/64), ceil(M/64)).
//   matmul_direct the same product on CPU adapters: no shared memory, no barriers (below).
//                 Dispatch (ceil(N/64), ceil(M/16)).
//   matvec        decode, M <= 8: one workgroup of 256 threads per output column n, every
//                 thread strides over K for all M rows, tree reduction. M is an override
//                 constant (one pipeline per M). Dispatch grid(N).
//
// Variants (defines): W_F16 (weights stored as f16), SHADER_F16 (read them as `f16`;
// otherwise as packed u32 words through unpack2x16float), BIAS, VEC4 (matvec and matmul_direct:
// K % 4 == 0 for f32, K % 8 == 0 for f16, weights read 16 bytes at a time).
#ifdef SHADER_F16
enable f16;
#endif

struct Params {
    m: u32,  // rows of x (tokens)
    n: u32,  // output features
    k: u32,  // input features
    _pad: u32,
}

@group(0) @binding(0) var<uniform> p: Params;
#ifdef VEC4
@group(0) @binding(1) var<storage, read> x4: array<vec4<f32>>;      // x: [m, k] f32
#else
@group(0) @binding(1) var<storage, read> x: array<f32>;             // x: [m, k] f32
#endif
#ifdef W_F16
#ifdef VEC4
@group(0) @binding(2) var<storage, read> w4: array<vec4<u32>>;      // w: [n, k] f16, 8 per load
#else
#ifdef SHADER_F16
@group(0) @binding(2) var<storage, read> w: array<f16>;             // w: [n, k] f16
#else
@group(0) @binding(2) var<storage, read> w: array<u32>;             // w: [n, k] f16, 2 per word
#endif
#endif
#else
#ifdef VEC4
@group(0) @binding(2) var<storage, read> w4: array<vec4<f32>>;      // w: [n, k] f32
#else
@group(0) @binding(2) var<storage, read> w: array<f32>;             // w: [n, k] f32
#endif
#endif
@group(0) @binding(3) var<storage, read_write> y: array<f32>;       // y: [m, n] f32
#ifdef BIAS
@group(0) @binding(4) var<storage, read> bias: array<f32>;          // bias: [n] f32
#endif

fn epilogue(v: f32, col: u32) -> f32 {
#ifdef BIAS
    return v + bias[col];
#else
    return v;
#endif
}

#ifndef VEC4
fn load_w(i: u32) -> f32 {
#ifdef W_F16
#ifdef SHADER_F16
    return f32(w[i]);
#else
    let pair = unpack2x16float(w[i >> 1u]);
    return select(pair.x, pair.y, (i & 1u) == 1u);
#endif
#else
    return w[i];
#endif
}

const BM: u32 = 64u;
const BN: u32 = 64u;
const BK: u32 = 16u;

// Shared tiles stored k-major as vec4 so the inner loop reads 4 rows (4 columns) per load:
// xs[kk * 16 + r / 4][r % 4] = x[m0 + r, k0 + kk], ws likewise for w.
var<workgroup> xs: array<vec4<f32>, 256>;  // [BK][BM / 4]
var<workgroup> ws: array<vec4<f32>, 256>;  // [BK][BN / 4]

@compute @workgroup_size(256)
fn matmul_tiled(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
    let m0 = wid.y * BM;
    let n0 = wid.x * BN;
    // Thread (tx, ty) owns rows m0 + 4ty .. +3 and columns n0 + 4tx .. +3, in registers.
    let tx = lid % 16u;
    let ty = lid / 16u;
    var c0 = vec4<f32>(0.0);
    var c1 = vec4<f32>(0.0);
    var c2 = vec4<f32>(0.0);
    var c3 = vec4<f32>(0.0);
    for (var k0 = 0u; k0 < p.k; k0 = k0 + BK) {
        for (var i = 0u; i < 4u; i = i + 1u) {
            let e = lid + i * 256u;
            let r = e / BK;
            let c = e % BK;
            let gk = k0 + c;
            var xv = 0.0;
            if (m0 + r < p.m && gk < p.k) {
                xv = x[(m0 + r) * p.k + gk];
            }
            xs[c * 16u + r / 4u][r % 4u] = xv;
            var wv = 0.0;
            if (n0 + r < p.n && gk < p.k) {
                wv = load_w((n0 + r) * p.k + gk);
            }
            ws[c * 16u + r / 4u][r % 4u] = wv;
        }
        workgroupBarrier();
        for (var kk = 0u; kk < BK; kk = kk + 1u) {
            let a = xs[kk * 16u + ty];
            let b = ws[kk * 16u + tx];
            c0 = c0 + a.x * b;
            c1 = c1 + a.y * b;
            c2 = c2 + a.z * b;
            c3 = c3 + a.w * b;
        }
        workgroupBarrier();
    }
    store_row(m0 + 4u * ty, n0 + 4u * tx, c0);
    store_row(m0 + 4u * ty + 1u, n0 + 4u * tx, c1);
    store_row(m0 + 4u * ty + 2u, n0 + 4u * tx, c2);
    store_row(m0 + 4u * ty + 3u, n0 + 4u * tx, c3);
}

#endif

fn store_row(gm: u32, gn: u32, v: vec4<f32>) {
    if (gm >= p.m) {
        return;
    }
    for (var j = 0u; j < 4u; j = j + 1u) {
        if (gn + j < p.n) {
            y[gm * p.n + gn + j] = epilogue(v[j], gn + j);
        }
    }
}

#ifdef VEC4
#ifdef W_F16
// Eight f16 weights of one 16-byte load as two vec4 (columns of the matrix).
fn w8(i: u32) -> mat2x4<f32> {
    let q = w4[i];
    return mat2x4<f32>(vec4<f32>(unpack2x16float(q.x), unpack2x16float(q.y)), vec4<f32>(unpack2x16float(q.z), unpack2x16float(q.w)));
}

fn x8(i: u32) -> mat2x4<f32> {
    return mat2x4<f32>(x4[2u * i], x4[2u * i + 1u]);
}

fn dot8(a: mat2x4<f32>, b: mat2x4<f32>) -> f32 {
    return dot(a[0], b[0]) + dot(a[1], b[1]);
}
#endif
#endif

// CPU adapters (SwiftShader, lavapipe) emulate workgroup barriers and shared memory at a
// high cost, so there the batched product runs without either: each invocation computes a
// 4x4 block of y straight from x and w in global memory and the CPU's caches do the tiling.
// Workgroup 16x4 invocations = 64 columns x 16 rows. Dispatch (ceil(N/64), ceil(M/16)).
// Rows and columns past the edge read the last valid one; store_row drops their results.
@compute @workgroup_size(16, 4)
fn matmul_direct(@builtin(global_invocation_id) gid: vec3<u32>) {
    let n0 = gid.x * 4u;
    let m0 = gid.y * 4u;
    if (n0 >= p.n || m0 >= p.m) {
        return;
    }
    let r = vec4<u32>(m0, min(m0 + 1u, p.m - 1u), min(m0 + 2u, p.m - 1u), min(m0 + 3u, p.m - 1u));
    let c = vec4<u32>(n0, min(n0 + 1u, p.n - 1u), min(n0 + 2u, p.n - 1u), min(n0 + 3u, p.n - 1u));
    var acc: array<vec4<f32>, 4>;  // acc[row][column], zero-initialised
#ifdef VEC4
#ifdef W_F16
    let kw = p.k / 8u;
    for (var kk = 0u; kk < kw; kk = kk + 1u) {
        let b0 = w8(c.x * kw + kk);
        let b1 = w8(c.y * kw + kk);
        let b2 = w8(c.z * kw + kk);
        let b3 = w8(c.w * kw + kk);
        for (var i = 0u; i < 4u; i = i + 1u) {
            let a = x8(r[i] * kw + kk);
            acc[i] = acc[i] + vec4<f32>(dot8(a, b0), dot8(a, b1), dot8(a, b2), dot8(a, b3));
        }
    }
#else
    let kw = p.k / 4u;
    for (var kk = 0u; kk < kw; kk = kk + 1u) {
        let b0 = w4[c.x * kw + kk];
        let b1 = w4[c.y * kw + kk];
        let b2 = w4[c.z * kw + kk];
        let b3 = w4[c.w * kw + kk];
        for (var i = 0u; i < 4u; i = i + 1u) {
            let a = x4[r[i] * kw + kk];
            acc[i] = acc[i] + vec4<f32>(dot(a, b0), dot(a, b1), dot(a, b2), dot(a, b3));
        }
    }
#endif
#else
    for (var kk = 0u; kk < p.k; kk = kk + 1u) {
        let b = vec4<f32>(load_w(c.x * p.k + kk), load_w(c.y * p.k + kk), load_w(c.z * p.k + kk), load_w(c.w * p.k + kk));
        for (var i = 0u; i < 4u; i = i + 1u) {
            acc[i] = acc[i] + x[r[i] * p.k + kk] * b;
        }
    }
#endif
    for (var i = 0u; i < 4u; i = i + 1u) {
        store_row(m0 + i, n0, acc[i]);
    }
}

// Rows of x for matvec, fixed when the pipeline is created (1..=8), so the loops over
// rows unroll and the accumulators stay in registers.
override M: u32 = 1u;
const MAXM: u32 = 8u;
const WG: u32 = 256u;
var<workgroup> red: array<f32, 2048>;  // [M][WG]

@compute @workgroup_size(256)
fn matvec(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
          @builtin(local_invocation_index) lid: u32) {
    let col = wid.x + wid.y * nwg.x;
    if (col >= p.n) {
        return;
    }
    var acc: array<f32, MAXM>;
    for (var m = 0u; m < M; m = m + 1u) {
        acc[m] = 0.0;
    }
#ifdef VEC4
#ifdef W_F16
    // 8 halves per 16-byte load; x read as two vec4 per load.
    let kw = p.k / 8u;
    for (var i = lid; i < kw; i = i + WG) {
        let q = w4[col * kw + i];
        let w0 = vec4<f32>(unpack2x16float(q.x), unpack2x16float(q.y));
        let w1 = vec4<f32>(unpack2x16float(q.z), unpack2x16float(q.w));
        for (var m = 0u; m < M; m = m + 1u) {
            let xb = m * (p.k / 4u) + 2u * i;
            acc[m] = acc[m] + dot(w0, x4[xb]) + dot(w1, x4[xb + 1u]);
        }
    }
#else
    let kw = p.k / 4u;
    for (var i = lid; i < kw; i = i + WG) {
        let wv = w4[col * kw + i];
        for (var m = 0u; m < M; m = m + 1u) {
            acc[m] = acc[m] + dot(wv, x4[m * kw + i]);
        }
    }
#endif
#else
    for (var i = lid; i < p.k; i = i + WG) {
        let wv = load_w(col * p.k + i);
        for (var m = 0u; m < M; m = m + 1u) {
            acc[m] = acc[m] + wv * x[m * p.k + i];
        }
    }
#endif
    for (var m = 0u; m < M; m = m + 1u) {
        red[m * WG + lid] = acc[m];
    }
    workgroupBarrier();
    for (var s = WG / 2u; s > 0u; s = s >> 1u) {
        if (lid < s) {
            for (var m = 0u; m < M; m = m + 1u) {
                red[m * WG + lid] = red[m * WG + lid] + red[m * WG + lid + s];
            }
        }
        workgroupBarrier();
    }
    if (lid < M) {
        y[lid * p.n + col] = epilogue(red[lid * WG], col);
    }
}
