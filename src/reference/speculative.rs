//! The verify step of speculative decoding (`kernels::speculative`) on the CPU: the argmax
//! of each row (lowest index on ties, NaN never wins) and greedy acceptance.

/// Argmax of each `vocab`-wide row of `logits`.
pub fn argmax_rows(logits: &[f32], vocab: usize) -> Vec<u32> {
    logits
        .chunks_exact(vocab)
        .map(|r| {
            let mut best: Option<(f32, usize)> = None;
            for (j, &v) in r.iter().enumerate() {
                if v.is_nan() {
                    continue;
                }
                if best.is_none_or(|(b, _)| v > b) {
                    best = Some((v, j));
                }
            }
            best.map_or(0, |(_, j)| j as u32)
        })
        .collect()
}

/// `(accepted, next)`: how many leading drafts equal the argmax of the row before them, and
/// the token after them (`best[accepted]`).
pub fn accept(best: &[u32], drafts: &[u32]) -> (usize, u32) {
    let a = drafts.iter().zip(best).take_while(|(d, b)| d == b).count();
    (a, best[a])
}
