/// Sign bits of each `d`-wide row, 32 per u32 word (bit j of word w: x[32w + j] > 0).
pub fn binarize(x: &[f32], d: usize) -> Vec<u32> {
    let w = d.div_ceil(32);
    x.chunks_exact(d)
        .flat_map(|row| (0..w).map(move |i| (0..32).filter(|&j| i * 32 + j < d && row[i * 32 + j] > 0.0).fold(0u32, |a, j| a | 1 << j)))
        .collect()
}

/// `d − 2·popcount(q ^ code)` per row of `codes`.
pub fn hamming(q: &[u32], codes: &[u32], d: usize) -> Vec<f32> {
    codes
        .chunks_exact(q.len())
        .map(|c| d as f32 - 2.0 * c.iter().zip(q).map(|(a, b)| (a ^ b).count_ones()).sum::<u32>() as f32)
        .collect()
}

/// The `k` best (score desc, id asc) of `scores` with their ids (positions if `None`).
pub fn topk(scores: &[f32], ids: Option<&[u32]>, k: usize) -> Vec<(u32, f32)> {
    let mut v: Vec<(u32, f32)> = scores.iter().enumerate().map(|(i, &s)| (ids.map_or(i as u32, |ids| ids[i]), s)).collect();
    v.sort_by(|a, b| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0)));
    v.truncate(k);
    v
}
