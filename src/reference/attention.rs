use crate::kernels::attention::AttentionShape;

/// Attention with an ordinary (two-pass) softmax in f64.
/// `q`: `[batch, q_len, heads·d]`, `k`/`v`: `[batch, kv_len, kv_heads·d]`,
/// `mask`: `[batch, kv_len]` (0 = padding). Rows with no visible key are zeros.
pub fn attention(q: &[f32], k: &[f32], v: &[f32], mask: &[u32], batch: usize, s: AttentionShape) -> Vec<f32> {
    let d = s.head_dim;
    let (qw, kvw) = (s.heads * d, s.kv_heads * d);
    let q_len = q.len() / (batch * qw);
    let kv_len = k.len() / (batch * kvw);
    let group = s.heads / s.kv_heads;
    let mut out = vec![0.0f32; q.len()];
    for b in 0..batch {
        for h in 0..s.heads {
            let kvh = h / group;
            for i in 0..q_len {
                let qo = (b * q_len + i) * qw + h * d;
                let end = if s.causal { kv_len - q_len + i + 1 } else { kv_len };
                let scores: Vec<Option<f64>> = (0..kv_len)
                    .map(|j| {
                        let pos = kv_len - q_len + i;
                        let in_window = s.window == 0 || pos.abs_diff(j) < s.window;
                        (j < end && mask[b * kv_len + j] != 0 && in_window).then(|| {
                            let ko = (b * kv_len + j) * kvw + kvh * d;
                            (0..d).map(|t| q[qo + t] as f64 * k[ko + t] as f64).sum::<f64>() * s.scale as f64
                        })
                    })
                    .collect();
                let max = scores.iter().flatten().cloned().fold(f64::NEG_INFINITY, f64::max);
                if max == f64::NEG_INFINITY {
                    continue;
                }
                let weights: Vec<f64> = scores.iter().map(|s| s.map_or(0.0, |s| (s - max).exp())).collect();
                let total: f64 = weights.iter().sum();
                for t in 0..d {
                    let acc: f64 = (0..kv_len)
                        .map(|j| weights[j] * v[(b * kv_len + j) * kvw + kvh * d + t] as f64)
                        .sum();
                    out[qo + t] = (acc / total) as f32;
                }
            }
        }
    }
    out
}
