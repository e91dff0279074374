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

/// Symmetric per-row int8 codes as `quantize_i8`: per `d`-wide row, scale = max|x| / 127
/// and code = round_ties_even(x · 127 / max|x|) (0 for an all-zero row), packed 4 per u32
/// (value c in byte c % 4 of word c / 4). Returns (codes `[n, ceil(d/4)]`, scales `[n]`).
pub fn quantize_i8(x: &[f32], d: usize) -> (Vec<u32>, Vec<f32>) {
    let w = d.div_ceil(4);
    let (mut codes, mut scales) = (Vec::with_capacity(x.len() / d * w), Vec::with_capacity(x.len() / d));
    for row in x.chunks_exact(d) {
        let m = row.iter().fold(0f32, |a, v| a.max(v.abs()));
        let inv = if m > 0.0 { 127.0 / m } else { 0.0 };
        for i in 0..w {
            let word = (0..4).filter(|j| i * 4 + j < d).fold(0u32, |a, j| {
                let v = (row[i * 4 + j] * inv).round_ties_even().clamp(-127.0, 127.0) as i32;
                a | ((v as u32 & 0xff) << (8 * j))
            });
            codes.push(word);
        }
        scales.push(m / 127.0);
    }
    (codes, scales)
}

/// The int8 values of one packed row of `d` values.
pub fn unpack_i8(words: &[u32], d: usize) -> Vec<i8> {
    (0..d).map(|c| (words[c / 4] >> (8 * (c % 4))) as u8 as i8).collect()
}

/// `scale · (q · code)` for each of `ids` (the int8 stage's score).
pub fn rescore_i8(q: &[f32], codes: &[u32], scales: &[f32], ids: &[u32]) -> Vec<f32> {
    let w = q.len().div_ceil(4);
    ids.iter()
        .map(|&i| {
            let row = unpack_i8(&codes[i as usize * w..(i as usize + 1) * w], q.len());
            scales[i as usize] * row.iter().zip(q).map(|(&c, &q)| c as f64 * q as f64).sum::<f64>() as f32
        })
        .collect()
}

/// `q · x[id]` for each of `ids` (`x` row-major, `q.len()` wide), summed in f64.
pub fn rescore(q: &[f32], x: &[f32], ids: &[u32]) -> Vec<f32> {
    let d = q.len();
    ids.iter().map(|&i| x[i as usize * d..(i as usize + 1) * d].iter().zip(q).map(|(a, b)| *a as f64 * *b as f64).sum::<f64>() as f32).collect()
}

/// Binary → int8 → exact search of a unit query over unit rows `x`, as
/// `SearchMode::BinaryInt8`: the `candidates` best by Hamming, the `keep` best of those by
/// int8 score, the `k` best of those exactly.
pub fn binary_int8_search(q: &[f32], x: &[f32], candidates: usize, keep: usize, k: usize) -> Vec<(u32, f32)> {
    let d = q.len();
    let codes = binarize(x, d);
    let qb = binarize(q, d);
    let cand: Vec<u32> = topk(&hamming(&qb, &codes, d), None, candidates).into_iter().map(|c| c.0).collect();
    let (q8, scales) = quantize_i8(x, d);
    let kept: Vec<u32> = topk(&rescore_i8(q, &q8, &scales, &cand), Some(&cand), keep).into_iter().map(|c| c.0).collect();
    topk(&rescore(q, x, &kept), Some(&kept), k)
}
