//! Placeholder scalar kernels (replaced by the SIMD128 kernels).

pub fn linear_f32(x: &[f32], w: &[f32], bias: Option<&[f32]>, y: &mut [f32], m: usize, n: usize, k: usize) {
    for i in 0..m {
        for j in 0..n {
            let s: f32 = x[i * k..(i + 1) * k].iter().zip(&w[j * k..(j + 1) * k]).map(|(a, b)| a * b).sum();
            y[i * n + j] = s + bias.map_or(0.0, |b| b[j]);
        }
    }
}
pub fn linear_f16(x: &[f32], w: &[u16], bias: Option<&[f32]>, y: &mut [f32], m: usize, n: usize, k: usize) {
    let w: Vec<f32> = w.iter().map(|&h| half::f16::from_bits(h).to_f32()).collect();
    linear_f32(x, &w, bias, y, m, n, k)
}
pub fn linear_q8_0(x: &[f32], qs: &[i8], d: &[u16], bias: Option<&[f32]>, y: &mut [f32], m: usize, n: usize, k: usize) {
    let w: Vec<f32> = qs.iter().enumerate().map(|(i, &q)| q as f32 * half::f16::from_bits(d[i / 32]).to_f32()).collect();
    linear_f32(x, &w, bias, y, m, n, k)
}
pub fn layer_norm(x: &[f32], gamma: &[f32], beta: &[f32], out: &mut [f32], n: usize, eps: f32) {
    for (r, o) in x.chunks_exact(n).zip(out.chunks_exact_mut(n)) {
        let mean = r.iter().sum::<f32>() / n as f32;
        let var = r.iter().map(|v| (v - mean) * (v - mean)).sum::<f32>() / n as f32;
        let inv = 1.0 / (var + eps).sqrt();
        for i in 0..n {
            o[i] = (r[i] - mean) * inv * gamma[i] + beta[i];
        }
    }
}
pub fn gelu_inplace(x: &mut [f32]) {
    for v in x {
        *v = 0.5 * *v * (1.0 + crate::reference::activation::erf(*v as f64 / std::f64::consts::SQRT_2) as f32);
    }
}
pub fn tanh_inplace(x: &mut [f32]) {
    for v in x {
        *v = v.tanh();
    }
}
pub fn attention(q: &[f32], k: &[f32], v: &[f32], mask: &[u32], out: &mut [f32], batch: usize, seq: usize, heads: usize, head_dim: usize) {
    let s = crate::kernels::attention::AttentionShape::bidirectional(heads, head_dim);
    out.copy_from_slice(&crate::reference::attention::attention(q, k, v, mask, batch, s));
    let _ = seq;
}
pub fn dot_rows(q: &[f32], x: &[f32], scores: &mut [f32], d: usize) {
    for (s, r) in scores.iter_mut().zip(x.chunks_exact(d)) {
        *s = r.iter().zip(q).map(|(a, b)| a * b).sum();
    }
}
