/// Mean over unmasked tokens. `x`: `[batch, seq, dim]`, `mask`: `[batch, seq]`.
pub fn mean_pool(x: &[f32], mask: &[u32], batch: usize, dim: usize) -> Vec<f32> {
    let seq = mask.len() / batch;
    let mut out = vec![0.0; batch * dim];
    for b in 0..batch {
        let count = mask[b * seq..(b + 1) * seq].iter().filter(|&&m| m != 0).count() as f64;
        for d in 0..dim {
            let s: f64 = (0..seq).filter(|&t| mask[b * seq + t] != 0).map(|t| x[(b * seq + t) * dim + d] as f64).sum();
            out[b * dim + d] = (s / count.max(1e-9)) as f32;
        }
    }
    out
}

/// The first token of each sequence.
pub fn cls_pool(x: &[f32], batch: usize, dim: usize) -> Vec<f32> {
    let seq = x.len() / (batch * dim);
    (0..batch).flat_map(|b| x[b * seq * dim..b * seq * dim + dim].to_vec()).collect()
}

/// The last unmasked token of each sequence (zeros for a row with none).
pub fn last_pool(x: &[f32], mask: &[u32], batch: usize, dim: usize) -> Vec<f32> {
    let seq = mask.len() / batch;
    (0..batch)
        .flat_map(|b| match mask[b * seq..(b + 1) * seq].iter().rposition(|&m| m != 0) {
            Some(t) => x[(b * seq + t) * dim..(b * seq + t + 1) * dim].to_vec(),
            None => vec![0.0; dim],
        })
        .collect()
}
