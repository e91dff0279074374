/// RoPE, `rotate_half` form, on `x` `[rows, heads·d]`; row `r` at position `pos0 + r`.
/// Angles in f32 as transformers computes them (`position · inv_freq`), cos/sin in f64.
pub fn rope(x: &[f32], inv_freq: &[f32], pos0: usize, heads: usize, head_dim: usize) -> Vec<f32> {
    let h = head_dim / 2;
    let mut out = x.to_vec();
    for (r, row) in out.chunks_exact_mut(heads * head_dim).enumerate() {
        for head in row.chunks_exact_mut(head_dim) {
            for i in 0..h {
                let a = ((pos0 + r) as f32 * inv_freq[i]) as f64;
                let (s, c) = a.sin_cos();
                let (x0, x1) = (head[i] as f64, head[i + h] as f64);
                head[i] = (x0 * c - x1 * s) as f32;
                head[i + h] = (x1 * c + x0 * s) as f32;
            }
        }
    }
    out
}
