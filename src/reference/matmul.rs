/// `y[m, n] = Σ_k x[m, k] · w[n, k] + bias[n]`, accumulated in f64.
pub fn linear(x: &[f32], w: &[f32], bias: Option<&[f32]>, k: usize) -> Vec<f32> {
    let n = w.len() / k;
    x.chunks_exact(k)
        .flat_map(|xr| {
            (0..n).map(move |j| {
                let wr = &w[j * k..(j + 1) * k];
                let s: f64 = xr.iter().zip(wr).map(|(a, b)| *a as f64 * *b as f64).sum();
                (s + bias.map_or(0.0, |b| b[j] as f64)) as f32
            })
        })
        .collect()
}
