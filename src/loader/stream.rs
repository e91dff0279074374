//! Streaming a safetensors file into GPU buffers: the data region is planned as byte-range
//! requests of at most `chunk_size`, `concurrency` of them are in flight at once, and each
//! piece of a tensor is written into the tensor's GPU buffer at its offset as soon as its
//! request returns. Nothing larger than one request is ever held in wasm memory, so the
//! peak heap during a load is about `concurrency × chunk_size` whatever the model size.
//!
//! The plan splits every tensor at tensor-relative multiples of `chunk_size` (a multiple of
//! 16, so pieces start on whole elements and on WebGPU's 4-byte copy alignment), then packs
//! consecutive small pieces into one request while it stays under `chunk_size`. A request
//! that fails is retried; after `retries` more failures the load fails with an error that
//! names the file and the byte range. `should_abort` is polled before every request: an
//! aborted load returns `Error::Aborted` and drops (frees) everything uploaded so far.
//!
//! BF16 / F16 tensors are converted to F32 piece by piece as they stream; other dtypes
//! (integer buffers such as BERT's `position_ids`) are not uploaded.
//!
//! With a manifest entry ([`stream_safetensors_verified`]) the whole file is hashed in file
//! order while it streams (SHA-256, [`super::sha256`]): the plan then covers every byte after
//! the header ([`plan_file`]), completed requests wait in a bounded reorder window until the
//! ones before them are hashed, and a size or digest mismatch is `Error::Integrity`.

use std::cell::{Cell, RefCell};
use std::collections::{BTreeMap, HashMap};
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll, Waker};

use super::checkpoint::FileDigest;
use super::safetensors::{SafetensorsFile, StDType};
use super::source::Chunk;
use super::sha256::{to_hex, Sha256};
use super::{Progress, Source};
use crate::error::{Error, Result};
use crate::gpu::{DType, Gpu, GpuTensor};
use crate::kernels::quant::QMatrix;
use crate::kernels::quantize::{gpu_quantizable, quantize_rows, SrcKind};
use crate::quant::QuantFormat;

/// Options for [`stream_safetensors`].
#[derive(Debug, Clone, Copy)]
pub struct StreamOptions {
    /// Largest byte range of one request (default 8 MiB; rounded down to a multiple of 16).
    pub chunk_size: u64,
    /// Requests in flight at once (default 6).
    pub concurrency: usize,
    /// Extra attempts for a request that fails (default 3).
    pub retries: u32,
    /// Quantize-on-load while streaming (default none): see [`StreamQuantize`].
    pub quantize: Option<StreamQuantize>,
}

impl Default for StreamOptions {
    fn default() -> Self {
        Self { chunk_size: 8 << 20, concurrency: 6, retries: 3, quantize: None }
    }
}

/// Quantize-on-load during the stream: each selected matrix is quantized on the GPU as soon
/// as its last byte is written, and its F32 buffer is freed then, so the F32 copies alive at
/// once are those of the tensors still arriving (about `concurrency` requests' worth, plus
/// the largest tensor) rather than the whole model. Selected: `select(name)` (a model's
/// linear weights, e.g. `models::bert::is_linear_weight`), 2-D F32/F16/BF16 tensors whose
/// row length is a multiple of the block and whose F32 copy fits one binding; the others
/// stream as F32 and are handled by `VarBuilder` as before.
#[derive(Debug, Clone, Copy)]
pub struct StreamQuantize {
    /// q8_0 or q4_0 ([`gpu_quantizable`]).
    pub format: QuantFormat,
    pub select: fn(&str) -> bool,
}

/// One tensor's bytes inside a request.
#[derive(Debug, Clone, PartialEq)]
pub struct Piece {
    pub tensor: String,
    /// Byte offset of the piece in the file's data as stored (source dtype).
    pub src_offset_in_tensor: u64,
    /// Offset of the piece inside the request's bytes.
    pub offset_in_request: u64,
    pub len: u64,
}

/// One byte-range request and the tensor pieces it carries.
#[derive(Debug, Clone, PartialEq)]
pub struct Request {
    pub start: u64,
    pub len: u64,
    pub pieces: Vec<Piece>,
}

/// Float tensors (converted to F32 as they stream) and the U8 block tensors of a
/// pre-quantized checkpoint (copied raw into U32 buffers: [`super::prequant`]).
fn streamable(name: &str, dtype: StDType) -> bool {
    matches!(dtype, StDType::F32 | StDType::F16 | StDType::BF16) || raw(name, dtype)
}

fn raw(name: &str, dtype: StDType) -> bool {
    dtype == StDType::U8 && (name.ends_with(super::prequant::QBODY) || name.ends_with(super::prequant::QSCALE))
}

/// Plans the requests for the float tensors of `st` (in file order).
pub fn plan(st: &SafetensorsFile, chunk_size: u64) -> Result<Vec<Request>> {
    plan_requests(st, chunk_size, false)
}

/// Like [`plan`], but the requests cover the whole data region `[data_start, file_len)`
/// without a gap: integer tensors, padding and unused bytes ride along as request bytes that
/// no piece uses. Hashing the requests' bytes in order then hashes the file after its header
/// (what a manifest check needs).
pub fn plan_file(st: &SafetensorsFile, chunk_size: u64) -> Result<Vec<Request>> {
    plan_requests(st, chunk_size, true)
}

fn plan_requests(st: &SafetensorsFile, chunk_size: u64, whole_file: bool) -> Result<Vec<Request>> {
    let chunk = chunk_size / 16 * 16;
    if chunk == 0 {
        return Err(Error::Input(format!("chunk size {chunk_size} is below 16 bytes")));
    }
    let mut tensors: Vec<(&String, &super::TensorInfo)> =
        st.tensors.iter().filter(|(n, t)| whole_file || streamable(n, t.dtype)).collect();
    tensors.sort_by_key(|(_, t)| t.start);
    let mut requests: Vec<Request> = Vec::new();
    // End of the bytes planned so far (whole-file plans only).
    let mut at = st.data_start;
    for (name, t) in tensors {
        if whole_file && t.start > at {
            unused_bytes(&mut requests, at, t.start - at, chunk);
        }
        at = at.max(t.end);
        if !streamable(name, t.dtype) {
            unused_bytes(&mut requests, t.start, t.end - t.start, chunk);
            continue;
        }
        let mut off = 0;
        let size = t.end - t.start;
        while off < size {
            let len = chunk.min(size - off);
            let start = t.start + off;
            // Join the previous request when contiguous and the sum stays within a chunk.
            match requests.last_mut() {
                Some(r) if r.start + r.len == start && r.len + len <= chunk => {
                    r.pieces.push(Piece { tensor: name.clone(), src_offset_in_tensor: off, offset_in_request: r.len, len });
                    r.len += len;
                }
                _ => requests.push(Request {
                    start,
                    len,
                    pieces: vec![Piece { tensor: name.clone(), src_offset_in_tensor: off, offset_in_request: 0, len }],
                }),
            }
            off += len;
        }
    }
    if whole_file && st.file_len > at {
        unused_bytes(&mut requests, at, st.file_len - at, chunk);
    }
    Ok(requests)
}

/// Bytes the requests of [`plan`] cover, or of [`plan_file`] when `whole_file`.
pub fn planned_bytes(st: &SafetensorsFile, whole_file: bool) -> u64 {
    if whole_file {
        st.file_len.saturating_sub(st.data_start)
    } else {
        st.tensors.iter().filter(|(n, t)| streamable(n, t.dtype)).map(|(_, t)| t.end - t.start).sum()
    }
}

/// Appends `len` bytes at `start` that no tensor piece uses (they are only hashed), filling
/// the previous request up to `chunk` when contiguous.
fn unused_bytes(requests: &mut Vec<Request>, mut start: u64, mut len: u64, chunk: u64) {
    while len > 0 {
        let n = match requests.last_mut() {
            Some(r) if r.start + r.len == start && r.len < chunk => {
                let n = (chunk - r.len).min(len);
                r.len += n;
                n
            }
            _ => {
                let n = chunk.min(len);
                requests.push(Request { start, len: n, pieces: Vec::new() });
                n
            }
        };
        start += n;
        len -= n;
    }
}

/// Runs futures concurrently on the current task and waits for all (a minimal `join_all`
/// that needs no executor: every child is polled with the parent's waker).
struct JoinAll<'f> {
    futs: Vec<Option<Pin<Box<dyn Future<Output = Result<()>> + 'f>>>>,
}

impl Future for JoinAll<'_> {
    type Output = Result<()>;
    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Result<()>> {
        let mut pending = false;
        for slot in self.futs.iter_mut() {
            if let Some(f) = slot {
                match f.as_mut().poll(cx) {
                    Poll::Ready(Ok(())) => *slot = None,
                    Poll::Ready(Err(e)) => return Poll::Ready(Err(e)),
                    Poll::Pending => pending = true,
                }
            }
        }
        if pending { Poll::Pending } else { Poll::Ready(Ok(())) }
    }
}

/// The bytes of one request as `write` gets them: in wasm memory, or still in the JS array
/// `fetch` / the Cache API returned (browser, no manifest to hash).
#[derive(Clone, Copy)]
pub(crate) enum Bytes<'a> {
    Host(&'a [u8]),
    #[cfg(target_arch = "wasm32")]
    Js(&'a js_sys::Uint8Array),
}

/// Writes the pieces of `req` (its bytes) into their tensors, converting to F32. F32 and raw
/// pieces of a JS array go to the GPU straight from it (`Gpu::write_tensor_js`), with no copy
/// into wasm memory; F16 / BF16 pieces are copied in to be converted.
fn write_request(
    gpu: &Gpu,
    st: &SafetensorsFile,
    tensor: &dyn Fn(&str) -> Result<GpuTensor>,
    req: &Request,
    bytes: Bytes<'_>,
) -> Result<()> {
    for p in &req.pieces {
        let missing = || Error::MissingTensor { name: p.tensor.clone() };
        let info = st.tensors.get(&p.tensor).ok_or_else(missing)?;
        let t = &tensor(&p.tensor)?;
        let (from, to) = (p.offset_in_request as usize, (p.offset_in_request + p.len) as usize);
        let dst_offset = if info.dtype == StDType::U8 { p.src_offset_in_tensor } else { p.src_offset_in_tensor / info.dtype.size() * 4 };
        let copy_as_is = matches!(info.dtype, StDType::F32 | StDType::U8);
        let data: std::borrow::Cow<'_, [u8]> = match bytes {
            Bytes::Host(b) => std::borrow::Cow::Borrowed(&b[from..to]),
            #[cfg(target_arch = "wasm32")]
            Bytes::Js(a) => {
                let piece = a.subarray(from as u32, to as u32);
                if copy_as_is {
                    gpu.write_tensor_js(t, dst_offset, &piece)?;
                    continue;
                }
                std::borrow::Cow::Owned(piece.to_vec())
            }
        };
        if copy_as_is {
            gpu.write_tensor_bytes(t, dst_offset, &data)?;
        } else {
            let v = super::safetensors::to_f32(&p.tensor, info.dtype, &data)?;
            let f32_bytes: Vec<u8> = v.iter().flat_map(|x| x.to_le_bytes()).collect();
            gpu.write_tensor_bytes(t, dst_offset, &f32_bytes)?;
        }
    }
    Ok(())
}

/// What a streamed load produced: every float tensor, F32 on the GPU (and the blocks of a
/// pre-quantized checkpoint, raw), or quantized while streaming ([`StreamQuantize`]).
pub struct StreamedWeights {
    pub file: String,
    /// The block format of a pre-quantized checkpoint, whose `.qbody` / `.qscale` tensors
    /// are here as raw U32 words.
    pub quant: Option<crate::quant::QuantFormat>,
    pub tensors: HashMap<String, GpuTensor>,
    /// The matrices quantized while streaming (not in `tensors`).
    pub quantized: HashMap<String, QMatrix>,
    /// Most bytes of F32 copies of to-be-quantized matrices alive at one time.
    pub max_staging_bytes: u64,
    /// Most requests that were in flight at one time.
    pub max_in_flight: usize,
    /// Requests sent, retries included.
    pub requests_sent: usize,
    /// Most completed requests held at one time until an earlier one was hashed (manifest
    /// checks only; fewer than 2 × concurrency).
    pub max_held: usize,
}

/// Streams the float tensors of `st` from `src` into new F32 GPU tensors.
pub async fn stream_safetensors<S: Source>(
    gpu: &Gpu,
    src: &S,
    st: &SafetensorsFile,
    opts: StreamOptions,
    progress: &dyn Fn(Progress),
    should_abort: &dyn Fn() -> bool,
) -> Result<StreamedWeights> {
    stream_safetensors_verified(gpu, src, st, None, opts, progress, should_abort).await
}

/// [`stream_safetensors`], and with `expected` (the file's manifest entry) the whole file is
/// checked while it streams: its length first, then the SHA-256 of the header (hashed when
/// it was parsed) followed by every data byte in file order. The plan then covers the whole
/// data region ([`plan_file`]), and a request that completes before an earlier one is held
/// until that one is hashed; workers do not start request `i + 2 × concurrency` before
/// request `i` is hashed, so at most that many requests are held. A mismatch is
/// `Error::Integrity`, and the source's cached copies of the file are evicted
/// ([`Source::evict`]).
pub async fn stream_safetensors_verified<S: Source>(
    gpu: &Gpu,
    src: &S,
    st: &SafetensorsFile,
    expected: Option<&FileDigest>,
    opts: StreamOptions,
    progress: &dyn Fn(Progress),
    should_abort: &dyn Fn() -> bool,
) -> Result<StreamedWeights> {
    let limit = gpu.caps().max_storage_buffer_binding_size;
    // Tensors to quantize while streaming, with their source bytes still to arrive; their
    // F32 buffers are allocated at their first piece and freed once quantized.
    let mut pending: HashMap<String, u64> = HashMap::new();
    let mut tensors = HashMap::new();
    for (name, t) in &st.tensors {
        if raw(name, t.dtype) {
            let words = (t.end - t.start).div_ceil(4) as usize;
            tensors.insert(name.clone(), gpu.alloc(&[words], DType::U32)?);
        } else if streamable(name, t.dtype) {
            let q = opts.quantize.filter(|q| {
                gpu_quantizable(q.format)
                    && (q.select)(name)
                    && t.shape.len() == 2
                    && t.shape[1] % q.format.block_elems() == 0
                    && t.shape[0] * t.shape[1] > 0
                    && (t.shape[0] * t.shape[1] * 4) as u64 <= limit
            });
            if q.is_some() {
                pending.insert(name.clone(), t.end - t.start);
            } else {
                tensors.insert(name.clone(), gpu.alloc(&t.shape, DType::F32)?);
            }
        }
    }
    let tensors = RefCell::new(tensors);
    let pending = RefCell::new(pending);
    let quantized = RefCell::new(HashMap::new());
    let (staging, max_staging) = (Cell::new(0u64), Cell::new(0u64));
    let tensor = |name: &str| -> Result<GpuTensor> {
        if let Some(t) = tensors.borrow().get(name) {
            return Ok(t.clone());
        }
        let info = st.tensors.get(name).filter(|_| pending.borrow().contains_key(name));
        let info = info.ok_or_else(|| Error::MissingTensor { name: name.to_string() })?;
        let t = gpu.alloc(&info.shape, DType::F32)?;
        staging.set(staging.get() + t.byte_len());
        max_staging.set(max_staging.get().max(staging.get()));
        tensors.borrow_mut().insert(name.to_string(), t.clone());
        Ok(t)
    };
    let write = |req: &Request, bytes: Bytes<'_>| -> Result<()> {
        write_request(gpu, st, &tensor, req, bytes)?;
        for p in &req.pieces {
            let done = match pending.borrow_mut().get_mut(&p.tensor) {
                Some(left) => {
                    *left -= p.len.min(*left);
                    *left == 0
                }
                None => false,
            };
            if done {
                // Its last piece is queued: quantize it (the queue runs the writes first) and
                // let its F32 buffer go.
                let (Some(q), Some(t)) = (opts.quantize, tensors.borrow_mut().remove(&p.tensor)) else { continue };
                pending.borrow_mut().remove(&p.tensor);
                let [rows, cols] = [t.shape()[0], t.shape()[1]];
                let m = QMatrix::alloc(gpu, q.format, rows, cols)?;
                let mut enc = gpu.encoder();
                quantize_rows(&mut enc, &t, SrcKind::F32, &m, 0, rows)?;
                enc.submit()?;
                staging.set(staging.get() - t.byte_len());
                quantized.borrow_mut().insert(p.tensor.clone(), m);
            }
        }
        // Hand the queued writes to the GPU now, so staging memory does not pile up until
        // the first compute submission.
        gpu.flush_writes();
        Ok(())
    };
    let stats = fetch(src, st, expected, opts, &write, progress, should_abort).await?;
    if let Some(name) = pending.borrow().keys().next() {
        return Err(Error::Format { format: "safetensors", file: st.file.clone(), msg: format!("tensor {name} did not arrive whole") });
    }
    let (tensors, quantized) = (tensors.into_inner(), quantized.into_inner());
    Ok(StreamedWeights {
        file: st.file.clone(),
        quant: st.quant,
        tensors,
        quantized,
        max_staging_bytes: max_staging.get(),
        max_in_flight: stats.max_in_flight,
        requests_sent: stats.requests_sent,
        max_held: stats.max_held,
    })
}

/// Checks `st`'s file against its manifest entry without uploading anything (for loads that
/// read tensor by tensor): the same requests, hashing and eviction as
/// [`stream_safetensors_verified`], so it costs one more read of the file.
pub async fn verify_safetensors<S: Source>(
    src: &S,
    st: &SafetensorsFile,
    expected: &FileDigest,
    opts: StreamOptions,
    progress: &dyn Fn(Progress),
    should_abort: &dyn Fn() -> bool,
) -> Result<()> {
    fetch(src, st, Some(expected), opts, &|_, _| Ok(()), progress, should_abort).await.map(|_| ())
}

struct FetchStats {
    max_in_flight: usize,
    requests_sent: usize,
    max_held: usize,
}

/// Waits until `ready()`; the task is woken through `waiters` (every worker shares the
/// task's waker, so one entry is kept).
struct WaitUntil<'a, F: Fn() -> bool> {
    ready: F,
    waiters: &'a RefCell<Vec<Waker>>,
}

impl<F: Fn() -> bool> Future for WaitUntil<'_, F> {
    type Output = ();
    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        if (self.ready)() {
            return Poll::Ready(());
        }
        let mut w = self.waiters.borrow_mut();
        if !w.iter().any(|x| x.will_wake(cx.waker())) {
            w.push(cx.waker().clone());
        }
        Poll::Pending
    }
}

/// Reads the planned requests of `st`'s file and hands each to `write`; with `expected`,
/// hashes the file in order and checks it, evicting cached copies on a mismatch.
async fn fetch<S: Source>(
    src: &S,
    st: &SafetensorsFile,
    expected: Option<&FileDigest>,
    opts: StreamOptions,
    write: &dyn Fn(&Request, Bytes<'_>) -> Result<()>,
    progress: &dyn Fn(Progress),
    should_abort: &dyn Fn() -> bool,
) -> Result<FetchStats> {
    let r = fetch_checked(src, st, expected, opts, write, progress, should_abort).await;
    if let Err(Error::Integrity { .. }) = &r {
        // Whatever a cache holds of the file is suspect: the next load fetches it anew. The
        // integrity error is the one to report, even if the cache cannot delete.
        let _ = src.evict(&st.file).await;
    }
    r
}

async fn fetch_checked<S: Source>(
    src: &S,
    st: &SafetensorsFile,
    expected: Option<&FileDigest>,
    opts: StreamOptions,
    write: &dyn Fn(&Request, Bytes<'_>) -> Result<()>,
    progress: &dyn Fn(Progress),
    should_abort: &dyn Fn() -> bool,
) -> Result<FetchStats> {
    let file = st.file.as_str();
    if let Some(exp) = expected {
        if exp.size != st.file_len {
            return Err(Error::Integrity {
                file: file.to_string(),
                expected: format!("{} bytes", exp.size),
                got: format!("{} bytes", st.file_len),
            });
        }
    }
    let requests = if expected.is_some() { plan_file(st, opts.chunk_size)? } else { plan(st, opts.chunk_size)? };
    // The running hash, after the header (hashed when it was parsed).
    let hasher = RefCell::new(expected.map(|_| st.header_sha256.clone()));
    let total: u64 = requests.iter().map(|r| r.len).sum();
    let next = Cell::new(0usize);
    let loaded = Cell::new(0u64);
    let in_flight = Cell::new(0usize);
    let max_in_flight = Cell::new(0usize);
    let sent = Cell::new(0usize);
    let failed = Cell::new(false);
    progress(Progress::Download { file: file.to_string(), total });

    let check = |hasher: Option<Sha256>| -> Result<()> {
        if let (Some(exp), Some(h)) = (expected, hasher) {
            let got = h.finalize();
            if got != exp.sha256 {
                return Err(Error::Integrity {
                    file: file.to_string(),
                    expected: format!("sha256 {}", to_hex(&exp.sha256)),
                    got: format!("sha256 {}", to_hex(&got)),
                });
            }
        }
        Ok(())
    };

    if !requests.is_empty() && !src.ranged(file).await? {
        // The server ignores Range: read the file once, in order, keeping at most one
        // request's bytes (plus one network piece) in memory.
        let mut buf: Vec<u8> = Vec::new();
        let first = requests[0].start;
        let mut buf_start = first;
        let mut r = 0;
        let mut sink = |piece: &[u8]| -> Result<bool> {
            if should_abort() {
                return Err(Error::Aborted);
            }
            buf.extend_from_slice(piece);
            while let Some(req) = requests.get(r) {
                let end = req.start + req.len;
                if buf_start + (buf.len() as u64) < end {
                    break;
                }
                let from = (req.start - buf_start) as usize;
                let bytes = &buf[from..from + req.len as usize];
                write(req, Bytes::Host(bytes))?;
                if let Some(h) = hasher.borrow_mut().as_mut() {
                    h.update(bytes);
                }
                buf.drain(..(end - buf_start) as usize);
                buf_start = end;
                loaded.set(loaded.get() + req.len);
                progress(Progress::Progress { file: file.to_string(), loaded: loaded.get(), total });
                r += 1;
            }
            Ok(r < requests.len())
        };
        src.read_sequential(file, first, &mut sink).await?;
        drop(sink);
        if r < requests.len() {
            let req = &requests[r];
            return Err(Error::Io {
                file: file.to_string(),
                msg: format!("the file ended before bytes {}-{}", req.start, req.start + req.len - 1),
            });
        }
        check(hasher.into_inner())?;
        progress(Progress::Done { file: file.to_string() });
        return Ok(FetchStats { max_in_flight: 1, requests_sent: 1, max_held: 0 });
    }

    let n = opts.concurrency.max(1).min(requests.len().max(1));
    // Hash-ordering window: request i + window waits until request i is hashed.
    let window = 2 * n;
    let hashed = Cell::new(0usize);
    let held: RefCell<BTreeMap<usize, Vec<u8>>> = RefCell::new(BTreeMap::new());
    let max_held = Cell::new(0usize);
    let waiters: RefCell<Vec<Waker>> = RefCell::new(Vec::new());
    let hashing = expected.is_some();

    let worker = || async {
        loop {
            if failed.get() {
                return Ok(());
            }
            let i = next.get();
            let Some(req) = requests.get(i) else { return Ok(()) };
            next.set(i + 1);
            if should_abort() {
                return Err(Error::Aborted);
            }
            if hashing {
                WaitUntil { ready: || failed.get() || i < hashed.get() + window, waiters: &waiters }.await;
                if failed.get() {
                    return Ok(());
                }
            }
            let mut attempt = 0;
            let chunk = loop {
                in_flight.set(in_flight.get() + 1);
                max_in_flight.set(max_in_flight.get().max(in_flight.get()));
                sent.set(sent.get() + 1);
                // Hashing needs the bytes in wasm memory; otherwise a browser source may
                // leave them in a JS array for the GPU write.
                let r = if hashing {
                    src.read_range(file, req.start, req.len).await.map(Chunk::Host)
                } else {
                    src.read_chunk(file, req.start, req.len).await
                };
                in_flight.set(in_flight.get() - 1);
                match r {
                    Ok(b) if b.len() == req.len => break b,
                    Ok(b) if attempt >= opts.retries => {
                        return Err(Error::Io {
                            file: file.to_string(),
                            msg: format!("bytes {}-{}: got {} of {} bytes", req.start, req.start + req.len - 1, b.len(), req.len),
                        })
                    }
                    Err(e) if attempt >= opts.retries => {
                        return Err(Error::Io {
                            file: file.to_string(),
                            msg: format!(
                                "bytes {}-{} failed after {} attempts: {e}",
                                req.start,
                                req.start + req.len - 1,
                                attempt + 1
                            ),
                        })
                    }
                    _ => attempt += 1,
                }
                if should_abort() {
                    return Err(Error::Aborted);
                }
            };
            match &chunk {
                Chunk::Host(b) => write(req, Bytes::Host(b))?,
                #[cfg(target_arch = "wasm32")]
                Chunk::Js(a) => write(req, Bytes::Js(a))?,
            }
            if hashing {
                let bytes = chunk.into_host();
                // Hash this request if it is next in file order, then any held ones that
                // follow it; otherwise hold it.
                let mut h = hasher.borrow_mut();
                let mut held = held.borrow_mut();
                if let Some(h) = h.as_mut() {
                    if i == hashed.get() {
                        h.update(&bytes);
                        hashed.set(i + 1);
                        while let Some(b) = held.remove(&hashed.get()) {
                            h.update(&b);
                            hashed.set(hashed.get() + 1);
                        }
                        for w in waiters.borrow_mut().drain(..) {
                            w.wake();
                        }
                    } else {
                        held.insert(i, bytes);
                        max_held.set(max_held.get().max(held.len()));
                    }
                }
            }
            loaded.set(loaded.get() + req.len);
            progress(Progress::Progress { file: file.to_string(), loaded: loaded.get(), total });
        }
    };
    let mut futs: Vec<Option<Pin<Box<dyn Future<Output = Result<()>> + '_>>>> = Vec::with_capacity(n);
    for _ in 0..n {
        let w = worker();
        let failed = &failed;
        futs.push(Some(Box::pin(async move {
            let r = w.await;
            if r.is_err() {
                failed.set(true); // the other workers stop at their next request
            }
            r
        })));
    }
    JoinAll { futs }.await?;
    if hashing && hashed.get() != requests.len() {
        return Err(Error::Io { file: file.to_string(), msg: format!("hashed {} of {} requests", hashed.get(), requests.len()) });
    }
    check(hasher.into_inner())?;
    progress(Progress::Done { file: file.to_string() });
    Ok(FetchStats { max_in_flight: max_in_flight.get(), requests_sent: sent.get(), max_held: max_held.get() })
}
