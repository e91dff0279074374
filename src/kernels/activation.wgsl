// Elementwise activations (GELU, SiLU, tanh), the residual add, SwiGLU (silu(a) * b) and
// GeGLU with the tanh GELU (gelu_tanh(a) * b), and both over one packed product a whose rows
// are [gate | up] (`*_packed`: out[r, j] = act(a[r, j]) * a[r, h + j]). One thread per element, 256 per
// workgroup, workgroups split over x/y (grid()).

struct Params {
    n: u32,  // number of elements (of out)
    s: f32,  // scale: the factor (f32 bits)
    h: u32,  // *_packed: the gate (and up) width of a packed [gate | up] row
    _p2: u32,
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> a: array<f32>;              // a: [n] f32 (any shape, flat)
@group(0) @binding(2) var<storage, read_write> out: array<f32>;      // out: [n] f32
#ifdef BINARY
@group(0) @binding(3) var<storage, read> b: array<f32>;              // b: [n] f32
#endif

fn index(gid: vec3<u32>, nwg: vec3<u32>) -> u32 {
    return gid.x + gid.y * nwg.x * 256u;
}

// erf by Abramowitz & Stegun 7.1.26 (|error| < 1.5e-7); WGSL has no erf builtin.
fn erf(v: f32) -> f32 {
    let s = sign(v);
    let z = abs(v);
    let t = 1.0 / (1.0 + 0.3275911 * z);
    let poly = t * (0.254829592 + t * (-0.284496736 + t * (1.421413741 + t * (-1.453152027 + t * 1.061405429))));
    return s * (1.0 - poly * exp(-z * z));
}

// GELU, erf form (BERT's "gelu"): 0.5 x (1 + erf(x / sqrt 2)).
@compute @workgroup_size(256)
fn gelu(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = index(gid, nwg);
    if (i >= p.n) {
        return;
    }
    let v = a[i];
    out[i] = 0.5 * v * (1.0 + erf(v * 0.70710678118654752));
}

// SiLU: x * sigmoid(x).
@compute @workgroup_size(256)
fn silu(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = index(gid, nwg);
    if (i >= p.n) {
        return;
    }
    let v = a[i];
    out[i] = v / (1.0 + exp(-v));
}

// tanh (BERT pooler).
@compute @workgroup_size(256)
fn tanh_(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = index(gid, nwg);
    if (i >= p.n) {
        return;
    }
    out[i] = tanh(a[i]);
}

// x * s (Gemma's embeddings times sqrt(hidden_size)).
@compute @workgroup_size(256)
fn scale(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = index(gid, nwg);
    if (i >= p.n) {
        return;
    }
    out[i] = a[i] * p.s;
}

#ifdef BINARY
// Residual add: a + b.
@compute @workgroup_size(256)
fn add(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = index(gid, nwg);
    if (i >= p.n) {
        return;
    }
    out[i] = a[i] + b[i];
}
#endif

#ifdef BINARY
// SwiGLU gate of Llama's MLP: silu(gate) * up, with a = gate, b = up.
@compute @workgroup_size(256)
fn swiglu(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = index(gid, nwg);
    if (i >= p.n) {
        return;
    }
    let g = a[i];
    out[i] = g / (1.0 + exp(-g)) * b[i];
}
#endif

#ifdef BINARY
// GeGLU of Gemma's MLP (`gelu_pytorch_tanh`): gelu_tanh(gate) * up, with a = gate, b = up,
// gelu_tanh(x) = 0.5 x (1 + tanh(sqrt(2/pi) (x + 0.044715 x^3))). The tanh argument is
// clamped to [-15, 15] (tanh is +-1 in f32 there) so a driver's exp-based tanh cannot
// overflow to inf / inf.
@compute @workgroup_size(256)
fn geglu_tanh(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = index(gid, nwg);
    if (i >= p.n) {
        return;
    }
    let g = a[i];
    let t = tanh(clamp(0.7978845608028654 * (g + 0.044715 * g * g * g), -15.0, 15.0));
    out[i] = 0.5 * g * (1.0 + t) * b[i];
}
#endif

fn silu_mul(g: f32, u: f32) -> f32 {
    return g / (1.0 + exp(-g)) * u;
}

fn gelu_tanh_mul(g: f32, u: f32) -> f32 {
    let t = tanh(clamp(0.7978845608028654 * (g + 0.044715 * g * g * g), -15.0, 15.0));
    return 0.5 * g * (1.0 + t) * u;
}

// SwiGLU of a packed gate/up product: a [rows, 2h] -> out [rows, h].
@compute @workgroup_size(256)
fn swiglu_packed(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = index(gid, nwg);
    if (i >= p.n) {
        return;
    }
    let at = (i / p.h) * 2u * p.h + i % p.h;
    out[i] = silu_mul(a[at], a[at + p.h]);
}

// GeGLU (tanh GELU) of a packed gate/up product: a [rows, 2h] -> out [rows, h].
@compute @workgroup_size(256)
fn geglu_tanh_packed(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = index(gid, nwg);
    if (i >= p.n) {
        return;
    }
    let at = (i / p.h) * 2u * p.h + i % p.h;
    out[i] = gelu_tanh_mul(a[at], a[at + p.h]);
}
