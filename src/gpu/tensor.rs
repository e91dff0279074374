//! `GpuTensor`: a shaped, typed view of a pooled GPU storage buffer.
//!
//! Tensors are row-major and contiguous. Cloning a tensor shares its storage; the buffer
//! goes back to the pool when the last clone is dropped.

use std::sync::{Arc, Mutex, RwLock, RwLockReadGuard, RwLockWriteGuard, Weak};

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

/// The memory behind one or more tensors: a wgpu buffer (returned to its pool on drop), or
/// on the CPU backend ([`super::Gpu::cpu`]) host words.
pub(crate) struct Storage {
    pub(crate) buffer: Option<wgpu::Buffer>,
    /// The CPU backend's memory: little-endian words (f32 / u32 / i32 one per word, f16 two).
    pub(crate) host: Option<RwLock<Vec<u32>>>,
    pool: Weak<Mutex<BufferPool>>,
}

impl Storage {
    pub(crate) fn new(buffer: wgpu::Buffer, pool: Weak<Mutex<BufferPool>>) -> Self {
        Self { buffer: Some(buffer), host: None, pool }
    }
    /// Zeroed host memory of `words` words; `None` when the heap cannot give it (the caller
    /// returns an error: in wasm an aborted allocation would kill the page's engine).
    pub(crate) fn host(words: usize) -> Option<Self> {
        let mut v: Vec<u32> = Vec::new();
        v.try_reserve_exact(words).ok()?;
        v.resize(words, 0);
        Some(Self { buffer: None, host: Some(RwLock::new(v)), pool: Weak::new() })
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
    /// Byte offset into the storage: non-zero only for row windows (`rows_view`).
    offset: u64,
}

impl std::fmt::Debug for GpuTensor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "GpuTensor({:?}, {:?})", self.shape, self.dtype)
    }
}

impl GpuTensor {
    pub(crate) fn new(storage: Arc<Storage>, shape: Vec<usize>, dtype: DType) -> Self {
        Self { storage, shape, dtype, offset: 0 }
    }
    /// Byte offset of the first element in the buffer (0 except for `rows_view` windows).
    pub(crate) fn byte_offset(&self) -> u64 {
        self.offset
    }
    /// How to cover a rank-2 tensor with row windows of at most `limit` bytes whose byte
    /// offsets are multiples of `align`: `(start, rows)` pairs; one pair when it fits.
    pub(crate) fn row_windows(&self, limit: u64, align: u64) -> Result<Vec<(usize, usize)>> {
        let (n, cols) = match self.shape[..] {
            [n, cols] => (n, cols),
            _ => return Err(Error::shape("row_windows", "tensor", "[rows, cols]", &self.shape)),
        };
        if self.byte_len() <= limit {
            return Ok(vec![(0, n)]);
        }
        let row_bytes = (cols * self.dtype.size()) as u64;
        let (mut a, mut b) = (row_bytes, align.max(4));
        while b != 0 {
            (a, b) = (b, a % b);
        }
        let step = align.max(4) / a; // rows per aligned offset
        let rows = (limit / row_bytes.max(1)) / step * step;
        if rows == 0 {
            return Err(Error::BufferTooLarge { what: "binding (one aligned group of rows)", requested: row_bytes * step, limit });
        }
        Ok((0..n).step_by(rows as usize).map(|s| (s, (rows as usize).min(n - s))).collect())
    }

    /// Rows `start .. start + rows` of a rank-2 tensor, sharing its buffer: a window that a
    /// kernel can bind when the whole tensor exceeds `maxStorageBufferBindingSize`. The
    /// window's byte offset must be a multiple of `align` (the device's
    /// `minStorageBufferOffsetAlignment`).
    pub(crate) fn rows_view(&self, start: usize, rows: usize, align: u64) -> Result<GpuTensor> {
        let (n, cols) = match self.shape[..] {
            [n, cols] => (n, cols),
            _ => return Err(Error::shape("rows_view", "tensor", "[rows, cols]", &self.shape)),
        };
        let row_bytes = (cols * self.dtype.size()) as u64;
        let offset = self.offset + start as u64 * row_bytes;
        if start + rows > n || rows == 0 || (row_bytes * rows as u64) % 4 != 0 || offset % align.max(4) != 0 {
            return Err(Error::param("rows_view", format!("rows {start}..{} of {n} (offset {offset}, alignment {align})", start + rows)));
        }
        Ok(GpuTensor { storage: self.storage.clone(), shape: vec![rows, cols], dtype: self.dtype, offset })
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
        self.storage.buffer.as_ref().expect("a wgpu tensor's buffer is only taken on drop (CPU tensors never reach wgpu)")
    }
    /// Whether this tensor lives in host memory (the CPU backend).
    pub fn is_host(&self) -> bool {
        self.storage.host.is_some()
    }
    fn host_lock(&self) -> Result<&RwLock<Vec<u32>>> {
        self.storage.host.as_ref().ok_or_else(|| Error::param("cpu", "a GPU tensor was passed to the CPU backend"))
    }
    /// The payload for reading (CPU backend). A tensor another op holds for writing is an
    /// error, never a wait.
    pub(crate) fn host_read(&self) -> Result<HostRead<'_>> {
        let guard = self.host_lock()?.try_read().map_err(|_| Error::param("cpu", "a tensor is bound for writing and reading at once"))?;
        Ok(HostRead { guard, start: self.offset as usize, len: self.byte_len() as usize })
    }
    /// The payload for writing (CPU backend).
    pub(crate) fn host_write(&self) -> Result<HostWrite<'_>> {
        let guard = self.host_lock()?.try_write().map_err(|_| Error::param("cpu", "a tensor is bound for writing and reading at once"))?;
        Ok(HostWrite { guard, start: self.offset as usize, len: self.byte_len() as usize })
    }
    /// A view with a new shape over the same storage. Errors if the element count differs.
    pub fn reshape(&self, shape: &[usize]) -> Result<GpuTensor> {
        let n: usize = shape.iter().product();
        if n != self.numel() {
            return Err(Error::shape("reshape", "input", format!("{} elements", n), &self.shape));
        }
        Ok(Self { storage: self.storage.clone(), shape: shape.to_vec(), dtype: self.dtype, offset: self.offset })
    }
    /// A view of the first `rows` rows (along dim 0) over the same storage.
    pub fn narrow_rows(&self, rows: usize) -> Result<GpuTensor> {
        if self.shape.is_empty() || rows > self.shape[0] {
            return Err(Error::shape("narrow_rows", "input", format!("at least {rows} rows"), &self.shape));
        }
        let mut shape = self.shape.clone();
        shape[0] = rows;
        Ok(Self { storage: self.storage.clone(), shape, dtype: self.dtype, offset: self.offset })
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

/// A CPU-backend tensor's payload, borrowed for reading, viewed as bytes or typed words.
pub(crate) struct HostRead<'a> {
    guard: RwLockReadGuard<'a, Vec<u32>>,
    /// Byte range of the tensor in its storage.
    start: usize,
    len: usize,
}

/// A CPU-backend tensor's payload, borrowed for writing.
pub(crate) struct HostWrite<'a> {
    guard: RwLockWriteGuard<'a, Vec<u32>>,
    start: usize,
    len: usize,
}

impl HostRead<'_> {
    pub(crate) fn bytes(&self) -> &[u8] {
        &bytemuck::cast_slice::<u32, u8>(&self.guard)[self.start..self.start + self.len]
    }
    /// F32 payload (the offset of an F32 view is a whole number of words).
    pub(crate) fn f32(&self) -> &[f32] {
        bytemuck::cast_slice(&self.guard[self.start / 4..(self.start + self.len) / 4])
    }
    pub(crate) fn u32(&self) -> &[u32] {
        &self.guard[self.start / 4..(self.start + self.len) / 4]
    }
    /// F16 payload as bit patterns.
    pub(crate) fn u16(&self) -> &[u16] {
        bytemuck::cast_slice(&bytemuck::cast_slice::<u32, u8>(&self.guard)[self.start..self.start + self.len - self.len % 2])
    }
}

impl HostWrite<'_> {
    pub(crate) fn bytes(&mut self) -> &mut [u8] {
        let (s, l) = (self.start, self.len);
        &mut bytemuck::cast_slice_mut::<u32, u8>(&mut self.guard)[s..s + l]
    }
    pub(crate) fn f32(&mut self) -> &mut [f32] {
        let (s, l) = (self.start, self.len);
        bytemuck::cast_slice_mut(&mut self.guard[s / 4..(s + l) / 4])
    }
    pub(crate) fn u32(&mut self) -> &mut [u32] {
        let (s, l) = (self.start, self.len);
        &mut self.guard[s / 4..(s + l) / 4]
    }
}
