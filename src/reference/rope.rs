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

/// [`crate::kernels::rope::kv_shift`]: rows `[keep, keep + drop)` of a `[rows, kv_heads·d]`
/// cache dropped, the rows after them moved down with their keys rotated back by `drop`
/// positions; returns the first `used - drop` rows of (k, v).
#[allow(clippy::too_many_arguments)]
pub fn kv_shift(k: &[f32], v: &[f32], inv_freq: &[f32], kv_heads: usize, head_dim: usize, keep: usize, drop: usize, used: usize) -> (Vec<f32>, Vec<f32>) {
    let (w, h) = (kv_heads * head_dim, head_dim / 2);
    let mut ko = k[..keep * w].to_vec();
    let mut vo = v[..keep * w].to_vec();
    for r in keep + drop..used {
        let row = &k[r * w..(r + 1) * w];
        for head in row.chunks_exact(head_dim) {
            let mut out = head.to_vec();
            for i in 0..h {
                let a = (drop as f32 * inv_freq[i]) as f64;
                let (s, c) = a.sin_cos();
                let (x0, x1) = (head[i] as f64, head[i + h] as f64);
                out[i] = (x0 * c + x1 * s) as f32;
                out[i + h] = (x1 * c - x0 * s) as f32;
            }
            ko.extend(out);
        }
        vo.extend_from_slice(&v[r * w..(r + 1) * w]);
    }
    (ko, vo)
}
