//! A vector index resident on the GPU, with exact, binary (sign-bit) and binary → int8 →
//! exact search.
//!
//! Vectors are L2-normalised on the GPU as they are added and kept as f32 (or f16) rows of
//! a `[capacity, dim]` tensor that grows by doubling; beside each row are its sign-bit code
//! (`dim / 32` u32 words, 32× smaller than f32) and its symmetric int8 code (`dim` bytes and
//! an f32 scale, 4× smaller). A search never reads vectors back:
//! - exact: one matrix-vector product over all rows, then a GPU top-k;
//! - binary: Hamming similarity of the codes, a GPU top-`candidates`, exact rescoring of
//!   those candidates against the stored rows, and a GPU top-k;
//! - binary → int8 → exact: the Hamming candidates are scored with their int8 codes, the
//!   best `rescore` of them are rescored exactly, then the top-k.
//! On CPU adapters (SwiftShader, lavapipe), where workgroup barriers are emulated, the exact
//! scan is one thread per row and the top-k the thread-local one (no barriers).
//! Only the k (id, score) pairs are read back, in one transfer. Ids are insertion order.
//! Cloning is cheap (shared GPU tensors): a clone is a snapshot that later `add`s to the
//! original do not change, so a search can run while the JS side keeps adding.

use crate::error::{Error, Result};
use crate::gpu::{DType, Gpu, GpuTensor};
use crate::gpu::Encoder;
use crate::kernels::search::{self, MAX_K};
use crate::kernels::{matmul, norm};

/// How to search.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SearchMode {
    /// Brute-force inner product over every vector.
    Exact,
    /// Hamming over sign bits for `candidates` rows (≥ k, ≤ 256), then exact rescoring.
    Binary { candidates: usize },
    /// Hamming for `candidates` rows, int8 scoring of those keeping `rescore` (k ≤ rescore ≤
    /// candidates ≤ 256), exact rescoring of those.
    BinaryInt8 { candidates: usize, rescore: usize },
}

/// Element type of the stored rows (the exact stage).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum IndexStorage {
    /// 4 bytes per value.
    #[default]
    F32,
    /// 2 bytes per value (`dim` must be even); scores within about 1e-3 of f32.
    F16,
}

/// Options of a new index.
#[derive(Debug, Clone, Copy, Default)]
pub struct IndexOptions {
    pub storage: IndexStorage,
    /// Barrier-free kernels (thread-per-row scan, thread-local top-k). `None`: on CPU
    /// adapters only.
    pub barrier_free: Option<bool>,
}

/// One hit: the vector's id (insertion order) and its cosine similarity to the query.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Hit {
    pub id: u32,
    pub score: f32,
}

#[derive(Clone)]
pub struct SearchIndex {
    gpu: Gpu,
    dim: usize,
    count: usize,
    storage: IndexStorage,
    barrier_free: bool,
    /// `[capacity, dim]` f32 or f16, unit rows.
    vectors: GpuTensor,
    /// `[capacity, ceil(dim/32)]` u32 sign bits.
    codes: GpuTensor,
    /// `[capacity, ceil(dim/4)]` u32, 4 int8 per word, and `[capacity]` f32 scales.
    q8: GpuTensor,
    scales: GpuTensor,
}

const MIN_CAPACITY: usize = 1024;

impl SearchIndex {
    pub fn new(gpu: &Gpu, dim: usize) -> Result<Self> {
        Self::with_options(gpu, dim, IndexOptions::default())
    }

    pub fn with_options(gpu: &Gpu, dim: usize, options: IndexOptions) -> Result<Self> {
        if dim == 0 || dim > 1 << 16 {
            return Err(Error::Input(format!("dimension {dim} out of range")));
        }
        if options.storage == IndexStorage::F16 && dim % 2 != 0 {
            return Err(Error::Input(format!("f16 storage needs an even dimension, got {dim}")));
        }
        let [vectors, codes, q8, scales] = Self::alloc(gpu, dim, options.storage, MIN_CAPACITY)?;
        Ok(Self {
            gpu: gpu.clone(),
            dim,
            count: 0,
            storage: options.storage,
            barrier_free: options.barrier_free.unwrap_or(gpu.caps().is_cpu),
            vectors,
            codes,
            q8,
            scales,
        })
    }

    fn alloc(gpu: &Gpu, dim: usize, storage: IndexStorage, cap: usize) -> Result<[GpuTensor; 4]> {
        let dtype = if storage == IndexStorage::F16 { DType::F16 } else { DType::F32 };
        Ok([
            gpu.alloc(&[cap, dim], dtype)?,
            gpu.alloc(&[cap, search::code_words(dim)], DType::U32)?,
            gpu.alloc(&[cap, search::i8_words(dim)], DType::U32)?,
            gpu.alloc(&[cap], DType::F32)?,
        ])
    }

    /// Bytes of GPU memory per vector: (stored row, sign bits, int8 code + scale).
    pub fn bytes_per_vector(&self) -> (usize, usize, usize) {
        let row = self.dim * if self.storage == IndexStorage::F16 { 2 } else { 4 };
        (row, 4 * search::code_words(self.dim), 4 * search::i8_words(self.dim) + 4)
    }

    pub fn storage(&self) -> IndexStorage {
        self.storage
    }

    pub fn len(&self) -> usize {
        self.count
    }
    pub fn is_empty(&self) -> bool {
        self.count == 0
    }
    pub fn dim(&self) -> usize {
        self.dim
    }

    fn check_vectors(&self, x: &GpuTensor) -> Result<usize> {
        x.expect_dtype("SearchIndex::add", "vectors", &[DType::F32])?;
        if x.rank() != 2 || x.shape()[1] != self.dim {
            return Err(Error::Input(format!("vectors of shape {:?} do not match the index dimension {}", x.shape(), self.dim)));
        }
        Ok(x.shape()[0])
    }

    /// Adds `[n, dim]` vectors that are already on the GPU (e.g. `Embedder::embed_tensor`),
    /// normalising them. Returns the first new id; the new ids are `first..first + n`.
    pub fn add_tensor(&mut self, x: &GpuTensor) -> Result<u32> {
        let n = self.check_vectors(x)?;
        let first = self.count;
        if n == 0 {
            return Ok(first as u32);
        }
        let need = first + n;
        if need > u32::MAX as usize {
            return Err(Error::Input("index full".into()));
        }
        let mut enc = self.gpu.encoder();
        if need > self.vectors.shape()[0] {
            let cap = need.next_power_of_two().max(MIN_CAPACITY);
            let grown = Self::alloc(&self.gpu, self.dim, self.storage, cap)?;
            let old = [&self.vectors, &self.codes, &self.q8, &self.scales];
            if first > 0 {
                for (o, g) in old.iter().zip(&grown) {
                    enc.copy_into(&o.narrow_rows(first)?, g, 0)?;
                }
            }
            [self.vectors, self.codes, self.q8, self.scales] = grown;
        }
        let unit = norm::l2_normalize(&mut enc, x, 1e-12)?;
        let bits = search::binarize(&mut enc, &unit)?;
        let (q8, scales) = search::quantize_i8(&mut enc, &unit)?;
        let rows = match self.storage {
            IndexStorage::F32 => unit,
            IndexStorage::F16 => search::to_f16(&mut enc, &unit)?,
        };
        enc.copy_into(&rows, &self.vectors, first * self.dim)?;
        enc.copy_into(&bits, &self.codes, first * search::code_words(self.dim))?;
        enc.copy_into(&q8, &self.q8, first * search::i8_words(self.dim))?;
        enc.copy_into(&scales, &self.scales, first)?;
        enc.submit()?;
        self.count = need;
        Ok(first as u32)
    }

    /// Adds host vectors, row-major `[n, dim]`. Each must be finite, with a squared norm
    /// that f32 can hold ([`Error::Input`] naming the row otherwise; the index is unchanged).
    pub fn add(&mut self, data: &[f32]) -> Result<u32> {
        if data.len() % self.dim != 0 {
            return Err(Error::Input(format!("{} values are not a whole number of {}-wide vectors", data.len(), self.dim)));
        }
        for (i, row) in data.chunks_exact(self.dim).enumerate() {
            check_finite(row).map_err(|m| Error::Input(format!("vector {i}: {m}")))?;
        }
        let n = data.len() / self.dim;
        if n == 0 {
            return Ok(self.count as u32);
        }
        let x = self.gpu.upload_f32(data, &[n, self.dim])?;
        self.add_tensor(&x)
    }

    /// The best `k` vectors for a query already on the GPU (`[dim]` or `[1, dim]`).
    /// `k` larger than the index gives all of it. An empty index gives no hits.
    pub async fn search_tensor(&self, query: &GpuTensor, k: usize, mode: SearchMode) -> Result<Vec<Hit>> {
        query.expect_dtype("SearchIndex::search", "query", &[DType::F32])?;
        if query.numel() != self.dim {
            return Err(Error::Input(format!("query of shape {:?} does not match the index dimension {}", query.shape(), self.dim)));
        }
        if k == 0 || k > MAX_K {
            return Err(Error::Input(format!("k = {k} outside 1..={MAX_K}")));
        }
        if self.count == 0 {
            return Ok(Vec::new());
        }
        let k = k.min(self.count);
        let mut enc = self.gpu.encoder();
        let q = norm::l2_normalize(&mut enc, &query.reshape(&[1, self.dim])?, 1e-12)?;
        let q = q.reshape(&[self.dim])?;
        let local = self.barrier_free;
        let topk = |enc: &mut Encoder, s: &GpuTensor, ids: Option<&GpuTensor>, k: usize| search::topk_with(enc, s, ids, k, local);
        let (scores, ids) = match mode {
            SearchMode::Exact => {
                let sims = if local {
                    search::score(&mut enc, &q, &self.vectors, self.count)?
                } else {
                    let sims = matmul::linear(&mut enc, &q.reshape(&[1, self.dim])?, &self.vectors.narrow_rows(self.count)?, None)?;
                    sims.reshape(&[self.count])?
                };
                topk(&mut enc, &sims, None, k)?
            }
            SearchMode::Binary { candidates } => {
                if candidates < k || candidates > MAX_K {
                    return Err(Error::Input(format!("candidates = {candidates} must be in {k}..={MAX_K}")));
                }
                let cand = self.hamming_candidates(&mut enc, &q, candidates.min(self.count))?;
                let exact = search::rescore(&mut enc, &q, &self.vectors, self.count, &cand)?;
                topk(&mut enc, &exact, Some(&cand), k)?
            }
            SearchMode::BinaryInt8 { candidates, rescore } => {
                if rescore < k || candidates < rescore || candidates > MAX_K {
                    return Err(Error::Input(format!(
                        "need k ({k}) <= rescore ({rescore}) <= candidates ({candidates}) <= {MAX_K}"
                    )));
                }
                let cand = self.hamming_candidates(&mut enc, &q, candidates.min(self.count))?;
                let approx = search::rescore_i8(&mut enc, &q, &self.q8, &self.scales, self.count, &cand)?;
                let (_, kept) = topk(&mut enc, &approx, Some(&cand), rescore.min(self.count))?;
                let exact = search::rescore(&mut enc, &q, &self.vectors, self.count, &kept)?;
                topk(&mut enc, &exact, Some(&kept), k)?
            }
        };
        enc.submit()?;
        let (ids, scores) = self.gpu.readback_u32_f32(&ids, &scores).await?;
        Ok(ids.into_iter().zip(scores).map(|(id, score)| Hit { id, score }).collect())
    }

    /// The ids of the `c` best rows by Hamming similarity to the unit query `q` `[dim]`.
    fn hamming_candidates(&self, enc: &mut Encoder, q: &GpuTensor, c: usize) -> Result<GpuTensor> {
        let q_bits = search::binarize(enc, &q.reshape(&[1, self.dim])?)?;
        let ham = search::hamming(enc, &q_bits.reshape(&[search::code_words(self.dim)])?, &self.codes, self.count, self.dim)?;
        Ok(search::topk_with(enc, &ham, None, c, self.barrier_free)?.1)
    }

    /// Searches with a host vector.
    pub async fn search(&self, query: &[f32], k: usize, mode: SearchMode) -> Result<Vec<Hit>> {
        if query.len() != self.dim {
            return Err(Error::Input(format!("query of length {} does not match the index dimension {}", query.len(), self.dim)));
        }
        check_finite(query).map_err(|m| Error::Input(format!("query: {m}")))?;
        let q = self.gpu.upload_f32(query, &[self.dim])?;
        self.search_tensor(&q, k, mode).await
    }

    /// The normalised vectors as little-endian f32 bytes, `[len, dim]` row-major: save them
    /// and [`SearchIndex::import`] them later instead of re-embedding a corpus.
    pub async fn export(&self) -> Result<Vec<u8>> {
        if self.count == 0 {
            return Ok(Vec::new());
        }
        let rows = self.vectors.narrow_rows(self.count)?;
        let v = match self.storage {
            IndexStorage::F32 => self.gpu.readback_f32(&rows).await?,
            IndexStorage::F16 => self.gpu.readback_f16(&rows).await?.into_iter().map(f32::from).collect(),
        };
        Ok(v.iter().flat_map(|x| x.to_le_bytes()).collect())
    }

    /// An index rebuilt from [`SearchIndex::export`] bytes.
    pub fn import(gpu: &Gpu, dim: usize, bytes: &[u8]) -> Result<Self> {
        Self::import_with_options(gpu, dim, bytes, IndexOptions::default())
    }

    /// [`SearchIndex::import`] into an index with `options` (e.g. f16 storage).
    pub fn import_with_options(gpu: &Gpu, dim: usize, bytes: &[u8], options: IndexOptions) -> Result<Self> {
        if bytes.len() % (4 * dim.max(1)) != 0 {
            return Err(Error::Input(format!("{} bytes are not whole {dim}-wide f32 vectors", bytes.len())));
        }
        let mut index = Self::with_options(gpu, dim, options)?;
        let data: Vec<f32> = bytes.chunks_exact(4).map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]])).collect();
        index.add(&data)?;
        Ok(index)
    }
}

/// Why a host vector cannot be normalised meaningfully: a NaN or infinite element (it would
/// outrank every real hit, or give NaN scores), or a squared norm past f32's range (it would
/// normalise to zeros).
fn check_finite(v: &[f32]) -> std::result::Result<(), String> {
    if let Some(j) = v.iter().position(|x| !x.is_finite()) {
        return Err(format!("element {j} is {}; vectors must be finite", v[j]));
    }
    let sq: f64 = v.iter().map(|&x| x as f64 * x as f64).sum();
    if sq > f32::MAX as f64 {
        return Err(format!("squared norm {sq:e} exceeds the f32 range"));
    }
    Ok(())
}
