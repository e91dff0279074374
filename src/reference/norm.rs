fn rows(x: &[f32], n: usize) -> impl Iterator<Item = &[f32]> {
    x.chunks_exact(n)
}

/// LayerNorm over rows of length `n`.
pub fn layer_norm(x: &[f32], gamma: &[f32], beta: &[f32], n: usize, eps: f32) -> Vec<f32> {
    rows(x, n)
        .flat_map(|r| {
            let mean = r.iter().map(|&v| v as f64).sum::<f64>() / n as f64;
            let var = r.iter().map(|&v| (v as f64 - mean).powi(2)).sum::<f64>() / n as f64;
            let inv = 1.0 / (var + eps as f64).sqrt();
            r.iter().enumerate().map(move |(i, &v)| ((v as f64 - mean) * inv * gamma[i] as f64 + beta[i] as f64) as f32)
        })
        .collect()
}

/// RMSNorm over rows of length `n`.
pub fn rms_norm(x: &[f32], gamma: &[f32], n: usize, eps: f32) -> Vec<f32> {
    rows(x, n)
        .flat_map(|r| {
            let ms = r.iter().map(|&v| (v as f64).powi(2)).sum::<f64>() / n as f64;
            let inv = 1.0 / (ms + eps as f64).sqrt();
            r.iter().enumerate().map(move |(i, &v)| (v as f64 * inv * gamma[i] as f64) as f32)
        })
        .collect()
}

/// `x / max(‖x‖₂, eps)` per row of length `n`.
pub fn l2_normalize(x: &[f32], n: usize, eps: f32) -> Vec<f32> {
    rows(x, n)
        .flat_map(|r| {
            let norm = r.iter().map(|&v| (v as f64).powi(2)).sum::<f64>().sqrt().max(eps as f64);
            r.iter().map(move |&v| (v as f64 / norm) as f32)
        })
        .collect()
}
