//! Embedding gather (token, position and token-type tables), see `embed.wgsl`.

use super::{u, KernelKey, Variant};
use crate::error::{Error, Result};
use crate::gpu::{grid, DType, Encoder, GpuTensor};

#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct EmbedKey {
    pub table_f16: bool,
}

impl Variant for EmbedKey {
    const FAMILY: &'static str = "embed";
    const SOURCE: &'static str = include_str!("embed.wgsl");
    fn entry(&self) -> &'static str {
        "gather"
    }
    fn defines(&self) -> Vec<&'static str> {
        if self.table_f16 { vec!["TABLE_F16"] } else { vec![] }
    }
}

/// `out[r] = table[ids[r]]`.
/// - `ids`: `[n]` u32 or i32 (ids outside the table give zero rows)
/// - `table`: `[vocab, dim]` f32 or f16
/// - returns `[n, dim]` f32
pub fn embedding(enc: &mut Encoder, ids: &GpuTensor, table: &GpuTensor) -> Result<GpuTensor> {
    let out = enc.gpu().alloc(&[ids.numel(), table.last_dim()], DType::F32)?;
    gather(enc, ids, table, &out, false)?;
    Ok(out)
}

/// `out[r] += table[ids[r]]`, in place (position and token-type embeddings).
/// - `out`: `[n, dim]` f32
pub fn embedding_add(enc: &mut Encoder, ids: &GpuTensor, table: &GpuTensor, out: &GpuTensor) -> Result<()> {
    gather(enc, ids, table, out, true)
}

fn gather(enc: &mut Encoder, ids: &GpuTensor, table: &GpuTensor, out: &GpuTensor, accumulate: bool) -> Result<()> {
    const OP: &str = "embedding";
    ids.expect_rank(OP, "ids", 1)?;
    ids.expect_dtype(OP, "ids", &[DType::U32, DType::I32])?;
    table.expect_rank(OP, "table", 2)?;
    table.expect_dtype(OP, "table", &[DType::F32, DType::F16])?;
    out.expect_dtype(OP, "out", &[DType::F32])?;
    let (n, vocab, dim) = (ids.numel(), table.shape()[0], table.shape()[1]);
    if out.shape() != [n, dim] {
        return Err(Error::shape(OP, "out", format!("[{n}, {dim}]"), out.shape()));
    }
    let total = u(OP, "ids * dim", n * dim)?;
    if enc.host() {
        return crate::cpu::gather(ids, table, out, accumulate);
    }
    let key = KernelKey::Embed(EmbedKey { table_f16: table.dtype() == DType::F16 });
    // A table bigger than one binding is gathered window by window (each dispatch writes
    // the rows whose ids fall in its window).
    let (binding_limit, align) = (enc.gpu().caps().max_storage_buffer_binding_size, enc.gpu().caps().storage_offset_alignment);
    for (row0, count) in table.row_windows(binding_limit, align)? {
        let window = if count == vocab { table.clone() } else { table.rows_view(row0, count, align)? };
        let params = [u(OP, "n", n)?, u(OP, "dim", dim)?, u(OP, "vocab", vocab)?, accumulate as u32, u(OP, "row0", row0)?, u(OP, "count", count)?, 0, 0];
        enc.dispatch(key.clone(), &params, &[ids, &window, out], grid(total.div_ceil(256)))?;
    }
    Ok(())
}
