/// `out[r] = table[ids[r]]` (zeros for ids outside the table). `table`: `[vocab, dim]`.
pub fn embedding(ids: &[u32], table: &[f32], dim: usize) -> Vec<f32> {
    let vocab = table.len() / dim;
    ids.iter()
        .flat_map(|&id| {
            let id = id as usize;
            if id < vocab { table[id * dim..(id + 1) * dim].to_vec() } else { vec![0.0; dim] }
        })
        .collect()
}
