//! The one weight source behind every load: a model's checkpoint seen as weights files of
//! tensors under their Hugging Face names, whatever the container.
//!
//! - safetensors, one file or the shards of an index ([`Checkpoint`]), F32 / F16 / BF16
//!   tensors and the `.qbody` / `.qscale` blocks of a pre-quantized file ([`super::prequant`]);
//! - GGUF ([`GgufModel`]): F32 / F16 / BF16 tensors and every block format [`crate::quant`]
//!   has a kernel for, under HF names ([`super::gguf_hf`]). Llama's `attn_q` / `attn_k` rows
//!   are stored permuted for GGML's RoPE; the loader puts them back in HF order as bytes, head
//!   by head, while they stream (blocks never span rows, so no value is decoded for this).
//!
//! [`super::stream`] plans and streams the [`WeightFile`]s; what each tensor becomes on the
//! GPU is the caller's choice ([`Target`]), made per tensor from its [`Entry`].

use super::checkpoint::{evict_manifest, Checkpoint, Manifest, ShardProgress};
use super::gguf::{GgmlType, GgufFile};
use super::gguf_hf::{quant_format, GgufModel};
use super::safetensors::{SafetensorsFile, StDType};
use super::sha256::Sha256;
use super::stream::{planned_bytes, stream_file, StreamOptions, StreamedWeights, Targets};
use super::{Progress, Source};
use crate::error::{Error, Result};
use crate::gpu::Gpu;
use crate::quant::QuantFormat;

/// How a tensor's bytes are stored in its file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stored {
    /// F32, F16 or BF16 values.
    Float(StDType),
    /// GGUF blocks of a format with kernels, rows of `shape[1]` values.
    Blocks(QuantFormat),
    /// Words of a pre-quantized safetensors checkpoint (`.qbody` / `.qscale`), copied as
    /// they are.
    Raw,
    /// Anything else (integer tensors such as BERT's `position_ids`): never uploaded.
    Skip,
}

/// One tensor of a weights file.
#[derive(Debug, Clone, PartialEq)]
pub struct Entry {
    /// HF name.
    pub name: String,
    pub stored: Stored,
    /// HF (row-major) shape.
    pub shape: Vec<usize>,
    /// Absolute byte range `[start, end)` in the file.
    pub start: u64,
    pub end: u64,
    /// Rows per head when the rows are stored permuted within each head (llama q/k in GGUF).
    pub head_rows: Option<usize>,
}

impl Entry {
    pub fn len(&self) -> u64 {
        self.end - self.start
    }
    pub fn is_empty(&self) -> bool {
        self.end == self.start
    }
    pub fn numel(&self) -> usize {
        self.shape.iter().product()
    }
    /// Bytes of one stored row (the last dimension).
    pub fn row_bytes(&self) -> u64 {
        let rows: usize = self.shape.iter().rev().skip(1).product();
        if rows == 0 { 0 } else { self.len() / rows as u64 }
    }
    /// The smallest run of bytes a piece of a streamed request may hold, and the multiple
    /// every piece starts at: 16 bytes of floats (whole elements, 4-byte GPU offsets), two
    /// blocks (so each piece's split-off f16 scales fill whole words), or whole heads of a
    /// permuted tensor (so rows are reordered within one piece).
    pub fn unit(&self) -> u64 {
        match (self.stored, self.head_rows) {
            (_, Some(h)) => (self.row_bytes() * h as u64).max(1),
            (Stored::Blocks(f), None) => 2 * f.block_bytes() as u64,
            _ => 16,
        }
    }
}

/// One file of weights, its tensors in file order.
#[derive(Debug, Clone)]
pub struct WeightFile {
    pub file: String,
    pub file_len: u64,
    /// The first byte not yet hashed into [`Self::header_sha256`] (the data region of a
    /// safetensors file; for GGUF, the end of the header prefix that was read).
    pub hashed_len: u64,
    /// SHA-256 state after the file's first `hashed_len` bytes, so a manifest check goes on
    /// from there and never reads the header twice.
    pub header_sha256: Sha256,
    pub entries: Vec<Entry>,
    /// The block format of a pre-quantized safetensors file.
    pub quant: Option<QuantFormat>,
}

impl WeightFile {
    pub fn from_safetensors(st: &SafetensorsFile) -> Self {
        let mut entries: Vec<Entry> = st
            .tensors
            .iter()
            .map(|(name, t)| {
                let stored = match t.dtype {
                    StDType::F32 | StDType::F16 | StDType::BF16 => Stored::Float(t.dtype),
                    StDType::U8 if name.ends_with(super::prequant::QBODY) || name.ends_with(super::prequant::QSCALE) => Stored::Raw,
                    _ => Stored::Skip,
                };
                Entry { name: name.clone(), stored, shape: t.shape.clone(), start: t.start, end: t.end, head_rows: None }
            })
            .collect();
        entries.sort_by_key(|e| e.start);
        Self { file: st.file.clone(), file_len: st.file_len, hashed_len: st.data_start, header_sha256: st.header_sha256.clone(), entries, quant: st.quant }
    }

    /// The tensors of a GGUF decoder under HF names. A tensor whose type no kernel runs is
    /// an error naming the tensor and the type.
    pub fn from_gguf(m: &GgufModel) -> Result<Self> {
        let g = &m.gguf;
        let mut entries = Vec::with_capacity(m.names.len());
        for (hf, i) in &m.names {
            let t = &g.tensors[*i];
            let stored = match t.ggml_type {
                GgmlType::F32 => Stored::Float(StDType::F32),
                GgmlType::F16 => Stored::Float(StDType::F16),
                GgmlType::BF16 => Stored::Float(StDType::BF16),
                ty => match quant_format(ty) {
                    Some(f) => Stored::Blocks(f),
                    None => {
                        return Err(Error::Format {
                            format: "gguf",
                            file: g.file.clone(),
                            msg: format!("tensor {} ({hf}) is stored as {}, which no kernel here runs", t.name, ty.name()),
                        })
                    }
                },
            };
            let shape = t.shape();
            if let Stored::Blocks(f) = stored {
                if shape.len() > 2 || shape.last().is_some_and(|&c| c % f.block_elems() != 0) {
                    return Err(Error::Format {
                        format: "gguf",
                        file: g.file.clone(),
                        msg: format!("tensor {} {shape:?} is not whole rows of {} blocks", t.name, f.name()),
                    });
                }
            }
            let head_rows = match m.permuted_heads(t) {
                Some(heads) => {
                    let rows = shape.first().copied().unwrap_or(0);
                    if heads == 0 || rows % (2 * heads) != 0 {
                        return Err(Error::Format {
                            format: "gguf",
                            file: g.file.clone(),
                            msg: format!("tensor {} has {rows} rows, not a whole number of {heads} heads of even size", t.name),
                        });
                    }
                    Some(rows / heads)
                }
                None => None,
            };
            entries.push(Entry { name: hf.clone(), stored, shape, start: t.start, end: t.start + t.n_bytes, head_rows });
        }
        entries.sort_by_key(|e| e.start);
        Ok(Self { file: g.file.clone(), file_len: g.file_len, hashed_len: g.hashed_len, header_sha256: g.header_sha256.clone(), entries, quant: None })
    }

    pub fn get(&self, name: &str) -> Option<&Entry> {
        self.entries.iter().find(|e| e.name == name)
    }
}

/// A model's weights: a safetensors checkpoint or a GGUF file.
#[derive(Debug, Clone)]
pub enum Weights {
    Safetensors(Checkpoint),
    Gguf(GgufModel),
}

impl Weights {
    /// Finds the weights under `src`: `file` when given (a `.gguf` or `.safetensors` file
    /// name), else `model.safetensors`, the index `model.safetensors.index.json`, or
    /// [`GGUF_WEIGHTS`].
    /// A GGUF whose tensors no kernel can run is refused here, before anything is read.
    pub async fn open<S: Source>(src: &S, file: Option<&str>) -> Result<Self> {
        let w = Self::find(src, file).await?;
        if let Self::Gguf(m) = &w {
            WeightFile::from_gguf(m)?;
        }
        Ok(w)
    }

    async fn find<S: Source>(src: &S, file: Option<&str>) -> Result<Self> {
        match file {
            Some(f) if f.ends_with(".gguf") => Ok(Self::Gguf(GgufModel::new(GgufFile::read(src, f).await?)?)),
            Some(f) => Ok(Self::Safetensors(Checkpoint::single(SafetensorsFile::read(src, f).await?))),
            None => match Checkpoint::read(src).await {
                Ok(ck) => Ok(Self::Safetensors(ck)),
                Err(missing @ Error::NotFound { .. }) => match GgufFile::read(src, GGUF_WEIGHTS).await {
                    Ok(g) => Ok(Self::Gguf(GgufModel::new(g)?)),
                    Err(Error::NotFound { .. }) => Err(missing),
                    Err(e) => Err(e),
                },
                Err(e) => Err(e),
            },
        }
    }

    /// The name progress events give the whole checkpoint: the index of a sharded one, else
    /// its one file.
    pub fn name(&self) -> &str {
        match self {
            Self::Safetensors(ck) => &ck.file,
            Self::Gguf(m) => &m.gguf.file,
        }
    }

    pub fn is_sharded(&self) -> bool {
        matches!(self, Self::Safetensors(ck) if ck.is_sharded())
    }

    pub fn gguf(&self) -> Option<&GgufModel> {
        match self {
            Self::Gguf(m) => Some(m),
            Self::Safetensors(_) => None,
        }
    }

    /// The weights files, each with its tensors.
    pub fn files(&self) -> Result<Vec<WeightFile>> {
        match self {
            Self::Safetensors(ck) => Ok(ck.shards.iter().map(WeightFile::from_safetensors).collect()),
            Self::Gguf(m) => Ok(vec![WeightFile::from_gguf(m)?]),
        }
    }
}

/// Streams every file of `weights` into the GPU buffers `targets` asks for
/// ([`stream_file`], one file after another, each with `opts.concurrency` requests in
/// flight), checking each file against `manifest` while it streams (every weights file
/// must be listed then; [`crate::nn::load_weights`] passes `src`'s `gllm-manifest.json`). Reports `Initiate` / `Download` /
/// `Progress` / `Done` per file and, for a sharded checkpoint, `Total` over all files. This
/// is the one way weights reach the GPU, for every model class.
#[allow(clippy::too_many_arguments)]
pub async fn stream_weights<S: Source>(
    gpu: &Gpu,
    src: &S,
    weights: &Weights,
    manifest: Option<&Manifest>,
    opts: StreamOptions,
    targets: &Targets<'_>,
    progress: &dyn Fn(Progress),
    should_abort: &dyn Fn() -> bool,
) -> Result<StreamedWeights> {
    let files = weights.files()?;
    let digests = files.iter().map(|f| manifest.map(|m| m.digest(&f.file)).transpose()).collect::<Result<Vec<_>>>()?;
    let sizes = files.iter().zip(&digests).map(|(f, d)| (f.file.clone(), planned_bytes(f, targets.target, d.is_some()))).collect();
    let agg = ShardProgress::new(weights.name(), weights.is_sharded(), sizes, progress);
    let forward = |p: Progress| agg.streamed(p);
    let mut out = StreamedWeights::empty(weights.name());
    for (f, digest) in files.iter().zip(digests) {
        progress(Progress::Initiate { file: f.file.clone() });
        let r = stream_file(gpu, src, f, digest, opts, targets, &forward, should_abort).await;
        out.extend(evict_manifest(src, r).await?)?;
    }
    Ok(out)
}

/// The GGUF file a model folder may hold instead of safetensors.
pub const GGUF_WEIGHTS: &str = "model.gguf";

/// Reorders the rows of whole heads from GGUF's interleaved order back to HF's: within each
/// head of `head_rows` rows, stored row `2i + j` is HF row `j·head_rows/2 + i` (undoing
/// `convert_hf_to_gguf.py`'s `permute`). `data` holds whole heads of `row_len` elements each.
pub fn unpermute_heads<T: Copy>(data: &[T], row_len: usize, head_rows: usize) -> Vec<T> {
    let half = head_rows / 2;
    let head = row_len * head_rows;
    let mut out = data.to_vec();
    if head == 0 {
        return out;
    }
    for (h, src) in data.chunks_exact(head).enumerate() {
        let dst = &mut out[h * head..(h + 1) * head];
        for i in 0..half {
            for j in 0..2 {
                let (s, d) = ((2 * i + j) * row_len, (j * half + i) * row_len);
                dst[d..d + row_len].copy_from_slice(&src[s..s + row_len]);
            }
        }
    }
    out
}
