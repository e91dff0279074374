//! Quantize-on-load on the GPU (`quantize.wgsl`): raw f32 / f16 / bf16 weight bytes, uploaded
//! as they come from the file, become q8_0 or q4_0 blocks in the GPU layout of
//! [`QMatrix`](super::quant::QMatrix), bit-identical to the CPU reference quantizers
//! ([`crate::quant::quantize`]). The host never converts or quantizes a value.

use super::quant::{QFormat, QMatrix};
use super::{u, KernelKey, Variant};
use crate::error::{Error, Result};
use crate::gpu::{grid, DType, Encoder, Gpu, GpuTensor};
use crate::quant::QuantFormat;

/// How the source words hold the values.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum SrcKind {
    /// One f32 per word.
    F32,
    /// Two IEEE halves per word (low half first).
    F16,
    /// Two bfloat16 per word (low half first).
    BF16,
}

impl SrcKind {
    /// Bytes per value.
    pub fn size(self) -> usize {
        match self {
            SrcKind::F32 => 4,
            SrcKind::F16 | SrcKind::BF16 => 2,
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct QuantizeKey {
    pub format: QuantFormat,
    pub src: SrcKind,
}

impl Variant for QuantizeKey {
    const FAMILY: &'static str = "quantize";
    const SOURCE: &'static str = include_str!("quantize.wgsl");
    fn entry(&self) -> &'static str {
        "quantize"
    }
    fn defines(&self) -> Vec<&'static str> {
        let mut d = vec![if self.format == QuantFormat::Q8_0 { "Q8_0" } else { "Q4_0" }];
        match self.src {
            SrcKind::F32 => {}
            SrcKind::F16 => d.push("SRC_F16"),
            SrcKind::BF16 => d.push("SRC_BF16"),
        }
        d
    }
}

/// Whether [`quantize_rows`] can produce `format` (q8_0 and q4_0).
pub fn gpu_quantizable(format: QuantFormat) -> bool {
    matches!(format, QuantFormat::Q8_0 | QuantFormat::Q4_0)
}

/// Quantizes rows `row0 .. row0 + rows` of `dst` from `src`, which holds exactly those rows'
/// values (`rows × dst.cols`) as `kind` in u32 words (a `U32` tensor of the raw file bytes, or
/// an `F32` tensor for `SrcKind::F32`). `row0 × blocks per row` must be even (two blocks share
/// one scale word): start slices at even rows.
pub fn quantize_rows(enc: &mut Encoder, src: &GpuTensor, kind: SrcKind, dst: &QMatrix, row0: usize, rows: usize) -> Result<()> {
    const OP: &str = "quantize";
    let QFormat::Gguf(format) = dst.format else {
        return Err(Error::param(OP, format!("quantize-on-load writes q8_0 or q4_0, not {}", dst.format.name())));
    };
    if !gpu_quantizable(format) {
        return Err(Error::param(OP, format!("quantize-on-load on the GPU writes q8_0 or q4_0, not {}", format.name())));
    }
    src.expect_dtype(OP, "src", &[DType::U32, DType::F32])?;
    if kind != SrcKind::F32 && src.dtype() != DType::U32 {
        return Err(Error::param(OP, "f16 / bf16 sources are raw u32 words".to_string()));
    }
    let per_row = dst.cols / format.block_elems();
    let block0 = row0 * per_row;
    if block0 % 2 != 0 {
        return Err(Error::param(OP, format!("slice starts at block {block0}: must be even (start at an even row)")));
    }
    if row0 + rows > dst.rows {
        return Err(Error::param(OP, format!("rows {row0}..{} past the matrix's {}", row0 + rows, dst.rows)));
    }
    let values = rows * dst.cols;
    if src.byte_len() as usize != values * kind.size() {
        return Err(Error::param(OP, format!("{} source bytes for {values} values of {kind:?}", src.byte_len())));
    }
    if rows == 0 {
        return Ok(());
    }
    let blocks = rows * per_row;
    if enc.host() {
        return crate::cpu::quantize_rows(src, kind, dst, format, block0);
    }
    let pairs = blocks.div_ceil(2);
    let params = [u(OP, "block0", block0)?, u(OP, "blocks", blocks)?, u(OP, "pairs", pairs)?, 0];
    let key = QuantizeKey { format, src: kind };
    enc.dispatch(KernelKey::Quantize(key), &params, &[src, dst.body(), dst.scales()], grid(u(OP, "pairs", pairs.div_ceil(64))?))
}

/// Quantizes a `[rows, cols]` matrix given as the raw bytes of its file tensor (`kind`) on the
/// GPU: the bytes are uploaded in slices of whole rows (an even count, each within the device's
/// binding limit and 64 MiB), each slice is quantized by one dispatch, and the slices' staging
/// buffers go back to the pool. Returns the matrix as the matmul kernels read it.
pub fn quantize_raw(gpu: &Gpu, format: QuantFormat, rows: usize, cols: usize, bytes: &[u8], kind: SrcKind) -> Result<QMatrix> {
    const OP: &str = "quantize";
    let dst = QMatrix::alloc(gpu, format, rows, cols)?;
    let want = (rows * cols).checked_mul(kind.size()); // rows × cols: checked by `alloc`
    if want != Some(bytes.len()) {
        return Err(Error::param(OP, format!("[{rows}, {cols}] of {kind:?} needs {} bytes, got {}", want.map_or("too many".to_string(), |w| w.to_string()), bytes.len())));
    }
    let row_bytes = cols * kind.size();
    let limit = (gpu.caps().max_storage_buffer_binding_size as usize).min(64 << 20);
    let mut slice_rows = (limit / row_bytes.max(1)) & !1;
    if slice_rows == 0 {
        return Err(Error::param(OP, format!("two rows of {row_bytes} bytes exceed the binding limit of {limit} bytes")));
    }
    slice_rows = slice_rows.min(rows.next_multiple_of(2));
    let mut enc = gpu.encoder();
    let mut staging = Vec::new();
    let mut row0 = 0;
    while row0 < rows {
        let n = slice_rows.min(rows - row0);
        // cols is a multiple of 32 (checked by `QMatrix::alloc`), so a slice is whole words.
        let piece = &bytes[row0 * row_bytes..(row0 + n) * row_bytes];
        let src = gpu.upload_bytes(piece, &[piece.len() / 4], DType::U32)?;
        quantize_rows(&mut enc, &src, kind, &dst, row0, n)?;
        staging.push(src);
        row0 += n;
    }
    enc.submit()?;
    drop(staging);
    Ok(dst)
}
