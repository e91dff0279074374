//! A vector index resident on the GPU, with exact and binary (sign-bit) search.
//!
//! Vectors are L2-normalised on the GPU as they are added and kept as f32 rows of a
//! `[capacity, dim]` tensor that grows by doubling; each row's sign-bit code (`dim / 32`
//! u32 words, 32× smaller) is kept beside it. A search never reads vectors back:
//! - exact: one matrix-vector product over all rows, then a GPU top-k;
//! - binary: Hamming similarity of the codes, a GPU top-`candidates`, exact rescoring of
//!   those candidates against the f32 rows, and a GPU top-k.
//! Only the k (id, score) pairs are read back, in one transfer. Ids are insertion order.
//! Cloning is cheap (shared GPU tensors): a clone is a snapshot that later `add`s to the
//! original do not change, so a search can run while the JS side keeps adding.

use crate::error::{Error, Result};
use crate::gpu::{DType, Gpu, GpuTensor};
use crate::kernels::search::{self, MAX_K};
use crate::kernels::{matmul, norm};

/// How to search.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SearchMode {
    /// Brute-force inner product over every vector.
    Exact,
    /// Hamming over sign bits for `candidates` rows (≥ k, ≤ 256), then exact rescoring.
    Binary { candidates: usize },
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
    vectors: GpuTensor,
    codes: GpuTensor,
}

const MIN_CAPACITY: usize = 1024;

impl SearchIndex {
    pub fn new(gpu: &Gpu, dim: usize) -> Result<Self> {
        if dim == 0 || dim > 1 << 16 {
            return Err(Error::Input(format!("dimension {dim} out of range")));
        }
        Ok(Self {
            gpu: gpu.clone(),
            dim,
            count: 0,
            vectors: gpu.alloc(&[MIN_CAPACITY, dim], DType::F32)?,
            codes: gpu.alloc(&[MIN_CAPACITY, search::code_words(dim)], DType::U32)?,
        })
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
            let vectors = self.gpu.alloc(&[cap, self.dim], DType::F32)?;
            let codes = self.gpu.alloc(&[cap, search::code_words(self.dim)], DType::U32)?;
            if first > 0 {
                enc.copy_into(&self.vectors.narrow_rows(first)?, &vectors, 0)?;
                enc.copy_into(&self.codes.narrow_rows(first)?, &codes, 0)?;
            }
            self.vectors = vectors;
            self.codes = codes;
        }
        let unit = norm::l2_normalize(&mut enc, x, 1e-12)?;
        let bits = search::binarize(&mut enc, &unit)?;
        enc.copy_into(&unit, &self.vectors, first * self.dim)?;
        enc.copy_into(&bits, &self.codes, first * search::code_words(self.dim))?;
        enc.submit()?;
        self.count = need;
        Ok(first as u32)
    }

    /// Adds host vectors, row-major `[n, dim]`.
    pub fn add(&mut self, data: &[f32]) -> Result<u32> {
        if data.len() % self.dim != 0 {
            return Err(Error::Input(format!("{} values are not a whole number of {}-wide vectors", data.len(), self.dim)));
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
        let (scores, ids) = match mode {
            SearchMode::Exact => {
                let sims = matmul::linear(&mut enc, &q, &self.vectors.narrow_rows(self.count)?, None)?;
                search::topk(&mut enc, &sims.reshape(&[self.count])?, None, k)?
            }
            SearchMode::Binary { candidates } => {
                if candidates < k || candidates > MAX_K {
                    return Err(Error::Input(format!("candidates = {candidates} must be in {k}..={MAX_K}")));
                }
                let c = candidates.min(self.count);
                let q_bits = search::binarize(&mut enc, &q)?;
                let ham = search::hamming(&mut enc, &q_bits.reshape(&[search::code_words(self.dim)])?, &self.codes, self.count, self.dim)?;
                let (_, cand) = search::topk(&mut enc, &ham, None, c)?;
                let exact = search::rescore(&mut enc, &q.reshape(&[self.dim])?, &self.vectors, self.count, &cand)?;
                search::topk(&mut enc, &exact, Some(&cand), k)?
            }
        };
        enc.submit()?;
        let (ids, scores) = self.gpu.readback_u32_f32(&ids, &scores).await?;
        Ok(ids.into_iter().zip(scores).map(|(id, score)| Hit { id, score }).collect())
    }

    /// Searches with a host vector.
    pub async fn search(&self, query: &[f32], k: usize, mode: SearchMode) -> Result<Vec<Hit>> {
        if query.len() != self.dim {
            return Err(Error::Input(format!("query of length {} does not match the index dimension {}", query.len(), self.dim)));
        }
        let q = self.gpu.upload_f32(query, &[self.dim])?;
        self.search_tensor(&q, k, mode).await
    }

    /// The normalised vectors as little-endian f32 bytes, `[len, dim]` row-major: save them
    /// and [`SearchIndex::import`] them later instead of re-embedding a corpus.
    pub async fn export(&self) -> Result<Vec<u8>> {
        if self.count == 0 {
            return Ok(Vec::new());
        }
        let v = self.gpu.readback_f32(&self.vectors.narrow_rows(self.count)?).await?;
        Ok(v.iter().flat_map(|x| x.to_le_bytes()).collect())
    }

    /// An index rebuilt from [`SearchIndex::export`] bytes.
    pub fn import(gpu: &Gpu, dim: usize, bytes: &[u8]) -> Result<Self> {
        if bytes.len() % (4 * dim.max(1)) != 0 {
            return Err(Error::Input(format!("{} bytes are not whole {dim}-wide f32 vectors", bytes.len())));
        }
        let mut index = Self::new(gpu, dim)?;
        let data: Vec<f32> = bytes.chunks_exact(4).map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]])).collect();
        index.add(&data)?;
        Ok(index)
    }
}
