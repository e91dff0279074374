//! Typed readbacks. Each reads a tensor of exactly the matching dtype: integer tensors
//! are never read through f32 bits. 64-bit values travel as (lo, hi) u32 pairs because
//! WGSL has no u64.

use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, Waker};

use super::{DType, Gpu, GpuTensor};
use crate::error::{Error, Result};

struct Slot<T> {
    value: Option<T>,
    waker: Option<Waker>,
    closed: bool,
}

/// Sending half of a minimal one-shot channel (no extra dependency).
pub(crate) struct Sender<T>(Arc<Mutex<Slot<T>>>);
/// Receiving half: a future resolving to `Some(value)`, or `None` if the sender dropped.
pub(crate) struct Receiver<T>(Arc<Mutex<Slot<T>>>);

pub(crate) fn oneshot<T>() -> (Sender<T>, Receiver<T>) {
    let slot = Arc::new(Mutex::new(Slot { value: None, waker: None, closed: false }));
    (Sender(slot.clone()), Receiver(slot))
}

impl<T> Sender<T> {
    pub(crate) fn send(self, v: T) {
        if let Ok(mut s) = self.0.lock() {
            s.value = Some(v);
        }
    }
}

impl<T> Drop for Sender<T> {
    fn drop(&mut self) {
        if let Ok(mut s) = self.0.lock() {
            s.closed = true;
            if let Some(w) = s.waker.take() {
                w.wake();
            }
        }
    }
}

impl<T> Future for Receiver<T> {
    type Output = Option<T>;
    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<T>> {
        let Ok(mut s) = self.0.lock() else { return Poll::Ready(None) };
        if let Some(v) = s.value.take() {
            Poll::Ready(Some(v))
        } else if s.closed {
            Poll::Ready(None)
        } else {
            s.waker = Some(cx.waker().clone());
            Poll::Pending
        }
    }
}

impl Gpu {
    /// Copies a tensor's payload to a mappable buffer and returns its bytes. Native:
    /// drives `map_async` with `device.poll`; web: awaits the browser's callback.
    async fn read_bytes(&self, t: &GpuTensor) -> Result<Vec<u8>> {
        Ok(self.read_many(&[t]).await?.pop().expect("one tensor"))
    }

    /// One transfer for several tensors: each is copied into one staging buffer, which is
    /// mapped once. Returns each tensor's payload bytes.
    async fn read_many(&self, tensors: &[&GpuTensor]) -> Result<Vec<Vec<u8>>> {
        self.check_errors()?;
        self.count_readback(tensors.iter().map(|t| t.byte_len() as usize).sum());
        if self.is_host() {
            return tensors.iter().map(|t| Ok(t.host_read()?.bytes().to_vec())).collect();
        }
        if tensors.iter().any(|t| t.is_host()) {
            return Err(Error::param("readback", super::encoder::MIXED));
        }
        let mut offsets = Vec::with_capacity(tensors.len());
        let mut size = 0u64;
        for t in tensors {
            offsets.push(size);
            size += t.byte_len().next_multiple_of(4).max(4);
        }
        let staging = self.device().create_buffer(&wgpu::BufferDescriptor {
            label: Some("readback"),
            size,
            usage: wgpu::BufferUsages::MAP_READ | wgpu::BufferUsages::COPY_DST,
            mapped_at_creation: false,
        });
        let mut enc = self.device().create_command_encoder(&Default::default());
        for (t, &off) in tensors.iter().zip(&offsets) {
            enc.copy_buffer_to_buffer(t.buffer(), t.byte_offset(), &staging, off, t.byte_len().next_multiple_of(4).max(4));
        }
        self.queue().submit([enc.finish()]);
        let (tx, rx) = oneshot();
        staging.map_async(wgpu::MapMode::Read, .., move |r| tx.send(r));
        #[cfg(not(target_arch = "wasm32"))]
        self.device()
            .poll(wgpu::PollType::wait_indefinitely())
            .map_err(|e| Error::Readback(e.to_string()))?;
        match rx.await {
            Some(Ok(())) => {}
            Some(Err(e)) => return Err(Error::Readback(e.to_string())),
            None => return Err(Error::Readback("map callback dropped".into())),
        }
        let out = {
            let view = staging.get_mapped_range(..).map_err(|e| Error::Readback(e.to_string()))?;
            tensors
                .iter()
                .zip(&offsets)
                .map(|(t, &off)| view[off as usize..(off + t.byte_len()) as usize].to_vec())
                .collect()
        };
        staging.unmap();
        self.check_errors()?;
        Ok(out)
    }

    async fn read_words(&self, t: &GpuTensor, op: &'static str, want: DType) -> Result<Vec<u32>> {
        t.expect_dtype(op, "tensor", &[want])?;
        let bytes = self.read_bytes(t).await?;
        Ok(bytes.chunks_exact(4).map(|c| u32::from_le_bytes([c[0], c[1], c[2], c[3]])).collect())
    }

    /// Reads an F32 tensor.
    pub async fn readback_f32(&self, t: &GpuTensor) -> Result<Vec<f32>> {
        Ok(self.read_words(t, "readback_f32", DType::F32).await?.into_iter().map(f32::from_bits).collect())
    }
    /// Reads a U32 tensor.
    pub async fn readback_u32(&self, t: &GpuTensor) -> Result<Vec<u32>> {
        self.read_words(t, "readback_u32", DType::U32).await
    }
    /// Reads an I32 tensor.
    pub async fn readback_i32(&self, t: &GpuTensor) -> Result<Vec<i32>> {
        Ok(self.read_words(t, "readback_i32", DType::I32).await?.into_iter().map(|w| w as i32).collect())
    }
    /// Reads an F16 tensor.
    pub async fn readback_f16(&self, t: &GpuTensor) -> Result<Vec<half::f16>> {
        t.expect_dtype("readback_f16", "tensor", &[DType::F16])?;
        let bytes = self.read_bytes(t).await?;
        Ok(bytes.chunks_exact(2).map(|c| half::f16::from_le_bytes([c[0], c[1]])).collect())
    }
    /// Reads a U32 tensor and an F32 tensor (ids and their scores) in one transfer, each
    /// with its own type.
    pub async fn readback_u32_f32(&self, ids: &GpuTensor, scores: &GpuTensor) -> Result<(Vec<u32>, Vec<f32>)> {
        ids.expect_dtype("readback_u32_f32", "ids", &[DType::U32])?;
        scores.expect_dtype("readback_u32_f32", "scores", &[DType::F32])?;
        let mut parts = self.read_many(&[ids, scores]).await?;
        let words = |b: Vec<u8>| -> Vec<u32> { b.chunks_exact(4).map(|c| u32::from_le_bytes([c[0], c[1], c[2], c[3]])).collect() };
        let s = words(parts.pop().expect("two parts")).into_iter().map(f32::from_bits).collect();
        let i = words(parts.pop().expect("two parts"));
        Ok((i, s))
    }

    /// Reads a U32 tensor of shape `[.., 2]` holding (lo, hi) pairs as u64 values.
    pub async fn readback_u64_pairs(&self, t: &GpuTensor) -> Result<Vec<u64>> {
        if t.last_dim() != 2 {
            return Err(Error::shape("readback_u64_pairs", "tensor", "[.., 2] (lo, hi) pairs", t.shape()));
        }
        let w = self.read_words(t, "readback_u64_pairs", DType::U32).await?;
        Ok(w.chunks_exact(2).map(|p| p[0] as u64 | (p[1] as u64) << 32).collect())
    }
}
