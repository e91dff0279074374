//! `GpuTensor`: a shaped, typed view of a pooled GPU storage buffer.
//!
//! Tensors are row-major and contiguous. Cloning a tensor shares its storage; the buffer
//! goes back to the pool when the last clone is dropped.

use std::sync::{Arc, Mutex, Weak};

use super::pool::BufferPool;
use crate::error::{Error, Result};

/// Element type of a GPU tensor. Quantized block types join this enum later.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum DType {
    F32,
    /// IEEE half. Stored two per u32 word; kernels read it with `unpack2x16float`, or as
    /// `f16` when the device has `shader-f16`.
    F16,
    U32,
    I32,
}

impl DType {
    /// Size of one element in bytes.
    pub const fn size(self) -> usize {
        match self {
            DType::F16 => 2,
            DType::F32 | DType::U32 | DType::I32 => 4,
        }
    }
}

/// The wgpu buffer behind one or more tensors. Returned to its pool on drop.
pub(crate) struct Storage {
    pub(crate) buffer: Option<wgpu::Buffer>,
    pool: Weak<Mutex<BufferPool>>,
}

impl Storage {
    pub(crate) fn new(buffer: wgpu::Buffer, pool: Weak<Mutex<BufferPool>>) -> Self {
        Self { buffer: Some(buffer), pool }
    }
}

impl Drop for Storage {
    fn drop(&mut self) {
        if let (Some(buf), Some(pool)) = (self.buffer.take(), self.pool.upgrade()) {
            if let Ok(mut pool) = pool.lock() {
                pool.put(buf);
            }
        }
    }
}

/// A tensor resident on the GPU.
#[derive(Clone)]
pub struct GpuTensor {
    pub(crate) storage: Arc<Storage>,
    shape: Vec<usize>,
    dtype: DType,
}

impl std::fmt::Debug for GpuTensor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "GpuTensor({:?}, {:?})", self.shape, self.dtype)
    }
}

impl GpuTensor {
    pub(crate) fn new(storage: Arc<Storage>, shape: Vec<usize>, dtype: DType) -> Self {
        Self { storage, shape, dtype }
    }
    pub fn shape(&self) -> &[usize] {
        &self.shape
    }
    pub fn dtype(&self) -> DType {
        self.dtype
    }
    /// Number of elements.
    pub fn numel(&self) -> usize {
        self.shape.iter().product()
    }
    /// Bytes of payload (not the padded buffer size).
    pub fn byte_len(&self) -> u64 {
        (self.numel() * self.dtype.size()) as u64
    }
    pub fn rank(&self) -> usize {
        self.shape.len()
    }
    /// Size of the last dimension (1 for a scalar).
    pub fn last_dim(&self) -> usize {
        self.shape.last().copied().unwrap_or(1)
    }
    /// Product of all but the last dimension: the number of rows of a row-major matrix.
    pub fn rows(&self) -> usize {
        self.numel() / self.last_dim().max(1)
    }
    pub(crate) fn buffer(&self) -> &wgpu::Buffer {
        self.storage.buffer.as_ref().expect("storage buffer is only taken on drop")
    }
    /// A view with a new shape over the same storage. Errors if the element count differs.
    pub fn reshape(&self, shape: &[usize]) -> Result<GpuTensor> {
        let n: usize = shape.iter().product();
        if n != self.numel() {
            return Err(Error::shape("reshape", "input", format!("{} elements", n), &self.shape));
        }
        Ok(Self { storage: self.storage.clone(), shape: shape.to_vec(), dtype: self.dtype })
    }
    /// A view of the first `rows` rows (along dim 0) over the same storage.
    pub fn narrow_rows(&self, rows: usize) -> Result<GpuTensor> {
        if self.shape.is_empty() || rows > self.shape[0] {
            return Err(Error::shape("narrow_rows", "input", format!("at least {rows} rows"), &self.shape));
        }
        let mut shape = self.shape.clone();
        shape[0] = rows;
        Ok(Self { storage: self.storage.clone(), shape, dtype: self.dtype })
    }
    /// Returns a typed error unless the dtype is `want`.
    pub(crate) fn expect_dtype(&self, op: &'static str, tensor: &'static str, want: &[DType]) -> Result<()> {
        if want.contains(&self.dtype) {
            Ok(())
        } else {
            Err(Error::DType { op, tensor, expected: format!("{want:?}"), got: self.dtype })
        }
    }
    /// Returns a typed error unless the shape has `rank` dims.
    pub(crate) fn expect_rank(&self, op: &'static str, tensor: &'static str, rank: usize) -> Result<()> {
        if self.shape.len() == rank && self.numel() > 0 {
            Ok(())
        } else {
            Err(Error::shape(op, tensor, format!("a non-empty rank-{rank} tensor"), &self.shape))
        }
    }
}
