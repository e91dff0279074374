//! Streaming a weights file into GPU buffers: the data region is planned as byte-range
//! requests of at most `chunk_size`, `concurrency` of them are in flight at once, and each
//! piece of a tensor is written into the tensor's GPU buffers at its offset as soon as its
//! request returns. Nothing larger than one request is ever held in wasm memory, so the
//! peak heap during a load is about `concurrency × chunk_size` whatever the model size.
//!
//! The file is a [`WeightFile`] (safetensors or GGUF, [`super::weights`]). The plan splits
//! every tensor at tensor-relative multiples of `chunk_size` rounded down to the tensor's
//! [`Entry::unit`] (16 bytes of floats, two blocks, or whole heads of a permuted tensor), then
//! packs consecutive small pieces into one request while it stays under `chunk_size`. A
//! request that fails is retried; after `retries` more failures the load fails with an error
//! that names the file and the byte range. `should_abort` is polled before every request: an
//! aborted load returns `Error::Aborted` and drops (frees) everything uploaded so far.
//!
//! What each tensor becomes is the caller's choice ([`Targets`]): F32 or F16 values (F16 /
//! BF16 / F32 converted piece by piece, GGUF blocks decoded piece by piece on the host), GGUF
//! blocks in the GPU layout ([`crate::quant::relayout`], block-local, so piece by piece), raw
//! words, or an F32 staging copy handed to a `finish` step once whole (quantize-on-load on
//! the GPU, which the caller provides: the loader itself runs no kernel).
//!
//! With a manifest entry the whole file is hashed in file order while it streams (SHA-256,
//! [`super::sha256`]): the plan then covers every byte after the header ([`plan_file`]),
//! completed requests wait in a bounded reorder window until the ones before them are
//! hashed, and a size or digest mismatch is `Error::Integrity`.

use std::cell::{Cell, RefCell};
use std::collections::{BTreeMap, HashMap};
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll, Waker};

use super::checkpoint::FileDigest;
use super::safetensors::{SafetensorsFile, StDType};
use super::source::Chunk;
use super::sha256::{to_hex, Sha256};
use super::weights::{unpermute_heads, Entry, Stored, WeightFile};
use super::{Progress, Source};
use crate::error::{Error, Result};
use crate::gpu::{DType, Gpu, GpuTensor};
use crate::quant::QuantFormat;

/// Options for [`stream_file`].
#[derive(Debug, Clone, Copy)]
pub struct StreamOptions {
    /// Largest byte range of one request (default 8 MiB; rounded down to a multiple of 16).
    pub chunk_size: u64,
    /// Requests in flight at once (default 6).
    pub concurrency: usize,
    /// Extra attempts for a request that fails (default 3).
    pub retries: u32,
}

impl Default for StreamOptions {
    fn default() -> Self {
        Self { chunk_size: 8 << 20, concurrency: 6, retries: 3 }
    }
}

/// What a streamed tensor becomes on the GPU.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Target {
    /// Not uploaded.
    Skip,
    /// `[shape]` F32 (floats converted, blocks decoded, piece by piece on the host).
    F32,
    /// `[shape]` F16, two values per word.
    F16,
    /// GGUF blocks kept, in the GPU layout (a [`BlockTensor`]); `Stored::Blocks` only.
    Blocks,
    /// Raw words of a pre-quantized file, `[bytes / 4]` U32; `Stored::Raw` only.
    Raw,
    /// An F32 staging copy that [`Targets::finish`] turns into blocks once its last byte is
    /// written (then the copy is freed).
    Finish,
}

/// A matrix in a block format on the GPU: body words and split-off f16 scales
/// ([`crate::quant::relayout`]); what `kernels::quant::QMatrix` is made of.
#[derive(Debug, Clone)]
pub struct BlockTensor {
    pub format: QuantFormat,
    pub rows: usize,
    pub cols: usize,
    pub body: GpuTensor,
    pub scales: GpuTensor,
}

impl BlockTensor {
    /// Uninitialised buffers for `[rows, cols]` in `format`.
    pub fn alloc(gpu: &Gpu, format: QuantFormat, rows: usize, cols: usize) -> Result<Self> {
        let n = rows.checked_mul(cols).ok_or_else(|| Error::param(format.name(), format!("[{rows}, {cols}] overflows")))?;
        let blocks = format.byte_len(n)? / format.block_bytes();
        let body = gpu.alloc(&[(blocks * format.body_words()).max(1)], DType::U32)?;
        let words = if format.split_scale() { blocks.div_ceil(2) } else { 1 };
        let scales = gpu.alloc(&[words.max(1)], DType::U32)?;
        Ok(Self { format, rows, cols, body, scales })
    }
}

/// The caller's choices for a streamed load.
pub struct Targets<'a> {
    /// What each tensor becomes.
    pub target: &'a dyn Fn(&Entry) -> Target,
    /// For [`Target::Finish`]: the whole F32 tensor in, its blocks out.
    pub finish: &'a dyn Fn(&Entry, &GpuTensor) -> Result<BlockTensor>,
}

impl Targets<'static> {
    /// Everything as stored: floats F32, blocks kept, raw words raw.
    pub fn as_stored() -> Self {
        Targets {
            target: &|e: &Entry| match e.stored {
                Stored::Float(_) => Target::F32,
                Stored::Blocks(_) => Target::Blocks,
                Stored::Raw => Target::Raw,
                Stored::Skip => Target::Skip,
            },
            finish: &|e: &Entry, _: &GpuTensor| Err(Error::Input(format!("{}: no finishing step", e.name))),
        }
    }
}

/// One tensor's bytes inside a request.
#[derive(Debug, Clone, PartialEq)]
pub struct Piece {
    pub tensor: String,
    /// Byte offset of the piece in the tensor's data as stored.
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

/// Plans the requests for the uploaded tensors of `st` (in file order).
pub fn plan(st: &SafetensorsFile, chunk_size: u64) -> Result<Vec<Request>> {
    let wf = WeightFile::from_safetensors(st);
    plan_requests(&wf, &|e| (Targets::as_stored().target)(e), chunk_size, false)
}

/// Like [`plan`], but the requests cover the whole data region `[data_start, file_len)`
/// without a gap: integer tensors, padding and unused bytes ride along as request bytes that
/// no piece uses. Hashing the requests' bytes in order then hashes the file after its header
/// (what a manifest check needs).
pub fn plan_file(st: &SafetensorsFile, chunk_size: u64) -> Result<Vec<Request>> {
    let wf = WeightFile::from_safetensors(st);
    plan_requests(&wf, &|e| (Targets::as_stored().target)(e), chunk_size, true)
}

/// The requests for the tensors of `wf` whose target is not `Skip`; with `whole_file`, every
/// byte from `wf.hashed_len` to the end.
pub fn plan_requests(wf: &WeightFile, target: &dyn Fn(&Entry) -> Target, chunk_size: u64, whole_file: bool) -> Result<Vec<Request>> {
    let chunk = chunk_size / 16 * 16;
    if chunk == 0 {
        return Err(Error::Input(format!("chunk size {chunk_size} is below 16 bytes")));
    }
    let mut requests: Vec<Request> = Vec::new();
    // End of the bytes planned so far (whole-file plans only).
    let mut at = wf.hashed_len;
    for e in &wf.entries {
        let upload = target(e) != Target::Skip;
        if !whole_file && !upload {
            continue;
        }
        if whole_file && e.start > at {
            unused_bytes(&mut requests, at, e.start - at, chunk);
        }
        if whole_file && e.end <= at {
            continue;
        }
        at = at.max(e.end);
        if !upload {
            unused_bytes(&mut requests, e.start, e.len(), chunk);
            continue;
        }
        let unit = e.unit();
        let step = (chunk / unit * unit).max(unit);
        let mut off = 0;
        let size = e.len();
        while off < size {
            let len = step.min(size - off);
            let start = e.start + off;
            // Join the previous request when contiguous and the sum stays within a chunk.
            match requests.last_mut() {
                Some(r) if r.start + r.len == start && r.len + len <= chunk => {
                    r.pieces.push(Piece { tensor: e.name.clone(), src_offset_in_tensor: off, offset_in_request: r.len, len });
                    r.len += len;
                }
                _ => requests.push(Request {
                    start,
                    len,
                    pieces: vec![Piece { tensor: e.name.clone(), src_offset_in_tensor: off, offset_in_request: 0, len }],
                }),
            }
            off += len;
        }
    }
    if whole_file && wf.file_len > at {
        unused_bytes(&mut requests, at, wf.file_len - at, chunk);
    }
    Ok(requests)
}

/// Bytes the requests of a plan cover (`whole_file`: from `hashed_len` to the end).
pub fn planned_bytes(wf: &WeightFile, target: &dyn Fn(&Entry) -> Target, whole_file: bool) -> u64 {
    if whole_file {
        wf.file_len.saturating_sub(wf.hashed_len)
    } else {
        wf.entries.iter().filter(|e| target(e) != Target::Skip).map(|e| e.len()).sum()
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

/// Where a tensor's pieces go.
enum Dest {
    Tensor(GpuTensor),
    Blocks(BlockTensor),
}

fn f32_bytes(v: &[f32]) -> Vec<u8> {
    v.iter().flat_map(|x| x.to_le_bytes()).collect()
}

fn f16_bytes(v: &[f32]) -> Vec<u8> {
    v.iter().flat_map(|&x| half::f16::from_f32(x).to_le_bytes()).collect()
}

/// Output bytes one host-side conversion step makes at most (the piece is converted and
/// written slice by slice, so a decoded GGUF table or an F16 → F32 piece costs the heap this
/// much, not the piece's decoded size).
const CONVERT_SLICE: usize = 2 << 20;

/// Writes one piece (`data`: whole units of `e` as stored, starting at byte `off` of the
/// tensor) into `dest` as `target` says.
fn write_piece(gpu: &Gpu, e: &Entry, target: Target, dest: &Dest, off: u64, data: &[u8]) -> Result<()> {
    let permuted;
    let data = match e.head_rows {
        Some(h) => {
            permuted = unpermute_heads(data, e.row_bytes() as usize, h);
            &permuted[..]
        }
        None => data,
    };
    // Input bytes per conversion slice: whole elements or block pairs, at most
    // CONVERT_SLICE bytes of output.
    let slices = |unit: usize, out_per_unit: usize| data.chunks((CONVERT_SLICE / out_per_unit).max(1) * unit).scan(0u64, |at, c| {
        let start = *at;
        *at += c.len() as u64;
        Some((off + start, c))
    });
    match (e.stored, target, dest) {
        (Stored::Float(dt), Target::F32 | Target::Finish, Dest::Tensor(t)) => {
            if dt == StDType::F32 {
                return gpu.write_tensor_bytes(t, off, data);
            }
            let n = dt.size() as usize;
            for (at, c) in slices(8 * n, 32) {
                gpu.write_tensor_bytes(t, at / n as u64 * 4, &f32_bytes(&super::safetensors::to_f32(&e.name, dt, c)?))?;
            }
            Ok(())
        }
        (Stored::Float(dt), Target::F16, Dest::Tensor(t)) => {
            if dt == StDType::F16 {
                return gpu.write_tensor_bytes(t, off, data);
            }
            let n = dt.size() as usize;
            for (at, c) in slices(8 * n, 16) {
                gpu.write_tensor_bytes(t, at / n as u64 * 2, &f16_bytes(&super::safetensors::to_f32(&e.name, dt, c)?))?;
            }
            Ok(())
        }
        (Stored::Raw, Target::Raw, Dest::Tensor(t)) => gpu.write_tensor_bytes(t, off, data),
        (Stored::Blocks(f), Target::F32 | Target::F16 | Target::Finish, Dest::Tensor(t)) => {
            let (bb, be) = (f.block_bytes(), f.block_elems());
            let size = if target == Target::F16 { 2 } else { 4 };
            for (at, c) in slices(2 * bb, 2 * be * size) {
                let v = crate::quant::dequantize(f, c, c.len() / bb * be)?;
                let e0 = at / bb as u64 * be as u64;
                if target == Target::F16 {
                    gpu.write_tensor_bytes(t, e0 * 2, &f16_bytes(&v))?;
                } else {
                    gpu.write_tensor_bytes(t, e0 * 4, &f32_bytes(&v))?;
                }
            }
            Ok(())
        }
        (Stored::Blocks(f), Target::Blocks, Dest::Blocks(b)) => {
            let block0 = off / f.block_bytes() as u64;
            let r = crate::quant::relayout(f, data)?;
            let body: Vec<u8> = r.body.iter().flat_map(|w| w.to_le_bytes()).collect();
            gpu.write_tensor_bytes(&b.body, block0 * f.body_words() as u64 * 4, &body)?;
            if f.split_scale() {
                let scales: Vec<u8> = r.scales.iter().flat_map(|w| w.to_le_bytes()).collect();
                gpu.write_tensor_bytes(&b.scales, block0 / 2 * 4, &scales)?;
            }
            Ok(())
        }
        (stored, target, _) => Err(Error::Input(format!("{}: a tensor stored as {stored:?} cannot be loaded as {target:?}", e.name))),
    }
}

/// What a streamed load produced.
pub struct StreamedWeights {
    pub file: String,
    /// The block format of a pre-quantized checkpoint, whose `.qbody` / `.qscale` tensors
    /// are here as raw U32 words.
    pub quant: Option<QuantFormat>,
    /// F32 / F16 tensors and raw words.
    pub tensors: HashMap<String, GpuTensor>,
    /// Matrices in a block format: GGUF blocks kept, or quantized while streaming.
    pub blocks: HashMap<String, BlockTensor>,
    /// Most bytes of F32 staging copies (of to-be-quantized matrices) alive at one time.
    pub max_staging_bytes: u64,
    /// Most requests that were in flight at one time.
    pub max_in_flight: usize,
    /// Requests sent, retries included.
    pub requests_sent: usize,
    /// Most completed requests held at one time until an earlier one was hashed (manifest
    /// checks only; fewer than 2 × concurrency).
    pub max_held: usize,
}

impl StreamedWeights {
    pub fn empty(file: &str) -> Self {
        Self {
            file: file.to_string(),
            quant: None,
            tensors: HashMap::new(),
            blocks: HashMap::new(),
            max_staging_bytes: 0,
            max_in_flight: 0,
            requests_sent: 0,
            max_held: 0,
        }
    }

    /// Takes in the tensors of another file of the same checkpoint.
    pub fn extend(&mut self, w: StreamedWeights) -> Result<()> {
        if self.quant.is_some() && w.quant.is_some() && self.quant != w.quant {
            return Err(Error::Format { format: "safetensors", file: w.file.clone(), msg: "shards are pre-quantized to different formats".into() });
        }
        self.quant = self.quant.or(w.quant);
        self.tensors.extend(w.tensors);
        self.blocks.extend(w.blocks);
        self.max_staging_bytes = self.max_staging_bytes.max(w.max_staging_bytes);
        self.max_in_flight = self.max_in_flight.max(w.max_in_flight);
        self.requests_sent += w.requests_sent;
        self.max_held = self.max_held.max(w.max_held);
        Ok(())
    }
}

/// Streams the float tensors of `st` from `src` into new F32 GPU tensors (pre-quantized
/// blocks as raw words).
pub async fn stream_safetensors<S: Source>(
    gpu: &Gpu,
    src: &S,
    st: &SafetensorsFile,
    opts: StreamOptions,
    progress: &dyn Fn(Progress),
    should_abort: &dyn Fn() -> bool,
) -> Result<StreamedWeights> {
    let wf = WeightFile::from_safetensors(st);
    stream_file(gpu, src, &wf, None, opts, &Targets::as_stored(), progress, should_abort).await
}

/// Streams the tensors of `wf` into the GPU buffers `targets` asks for, and with `expected`
/// (the file's manifest entry) checks the whole file while it streams: its length first, then
/// the SHA-256 of the header (hashed when it was parsed) followed by every data byte in file
/// order. The plan then covers the whole data region, and a request that completes before an
/// earlier one is held until that one is hashed; workers do not start request
/// `i + 2 × concurrency` before request `i` is hashed, so at most that many requests are
/// held. A mismatch is `Error::Integrity`, and the source's cached copies of the file are
/// evicted ([`Source::evict`]).
#[allow(clippy::too_many_arguments)]
pub async fn stream_file<S: Source>(
    gpu: &Gpu,
    src: &S,
    wf: &WeightFile,
    expected: Option<&FileDigest>,
    opts: StreamOptions,
    targets: &Targets<'_>,
    progress: &dyn Fn(Progress),
    should_abort: &dyn Fn() -> bool,
) -> Result<StreamedWeights> {
    let entries: HashMap<&str, (&Entry, Target)> = wf.entries.iter().map(|e| (e.name.as_str(), (e, (targets.target)(e)))).collect();
    // Staged tensors (`Target::Finish`) with their bytes still to arrive; their F32 buffers
    // are allocated at their first piece and freed once finished.
    let mut pending: HashMap<String, u64> = HashMap::new();
    let mut dests: HashMap<String, Dest> = HashMap::new();
    for e in &wf.entries {
        let target = entries[e.name.as_str()].1;
        let dest = match (target, e.stored) {
            (Target::Skip, _) => continue,
            (Target::Finish, Stored::Float(_) | Stored::Blocks(_)) => {
                pending.insert(e.name.clone(), e.len());
                continue;
            }
            (Target::F32, Stored::Float(_) | Stored::Blocks(_)) => Dest::Tensor(gpu.alloc(&e.shape, DType::F32)?),
            (Target::F16, Stored::Float(_) | Stored::Blocks(_)) => Dest::Tensor(gpu.alloc(&e.shape, DType::F16)?),
            (Target::Raw, Stored::Raw) => Dest::Tensor(gpu.alloc(&[e.len().div_ceil(4) as usize], DType::U32)?),
            (Target::Blocks, Stored::Blocks(f)) => {
                let (rows, cols) = match e.shape.as_slice() {
                    [r, c] => (*r, *c),
                    [c] => (1, *c),
                    s => return Err(Error::Input(format!("{}: blocks of shape {s:?}", e.name))),
                };
                Dest::Blocks(BlockTensor::alloc(gpu, f, rows, cols)?)
            }
            (t, s) => return Err(Error::Input(format!("{}: a tensor stored as {s:?} cannot be loaded as {t:?}", e.name))),
        };
        dests.insert(e.name.clone(), dest);
    }
    let dests = RefCell::new(dests);
    let pending = RefCell::new(pending);
    let (staging, max_staging) = (Cell::new(0u64), Cell::new(0u64));
    let finished: RefCell<HashMap<String, BlockTensor>> = RefCell::new(HashMap::new());
    // The destination of a piece of `e`: a staged tensor's buffer is made at its first piece.
    let dest = |e: &Entry| -> Result<()> {
        if dests.borrow().contains_key(&e.name) {
            return Ok(());
        }
        if !pending.borrow().contains_key(&e.name) {
            return Err(Error::MissingTensor { name: e.name.clone() });
        }
        let t = gpu.alloc(&e.shape, DType::F32)?;
        staging.set(staging.get() + t.byte_len());
        max_staging.set(max_staging.get().max(staging.get()));
        dests.borrow_mut().insert(e.name.clone(), Dest::Tensor(t));
        Ok(())
    };
    let write = |req: &Request, bytes: Bytes<'_>| -> Result<()> {
        for p in &req.pieces {
            let &(e, target) = entries.get(p.tensor.as_str()).ok_or_else(|| Error::MissingTensor { name: p.tensor.clone() })?;
            dest(e)?;
            let (from, to) = (p.offset_in_request as usize, (p.offset_in_request + p.len) as usize);
            {
                let dests = dests.borrow();
                let d = &dests[&e.name];
                // A piece that is converted or relaid on the host goes through in slices of
                // whole units of at most CONVERT_SLICE bytes, so the host memory it takes
                // (the bytes copied out of a JS array, the converted output) is bounded by the
                // slice, not by the request's size.
                let step = (CONVERT_SLICE / e.unit() as usize).max(1) * e.unit() as usize;
                let sliced = |write: &mut dyn FnMut(u64, usize, usize) -> Result<()>| -> Result<()> {
                    let mut k = from;
                    while k < to {
                        let end = (k + step).min(to);
                        write(p.src_offset_in_tensor + (k - from) as u64, k, end)?;
                        k = end;
                    }
                    Ok(())
                };
                match bytes {
                    Bytes::Host(b) => sliced(&mut |off, a, z| write_piece(gpu, e, target, d, off, &b[a..z]))?,
                    #[cfg(target_arch = "wasm32")]
                    Bytes::Js(a) => {
                        // As-is copies go to the GPU straight from the JS array.
                        let as_is = e.head_rows.is_none()
                            && matches!((e.stored, target), (Stored::Float(StDType::F32), Target::F32 | Target::Finish) | (Stored::Raw, Target::Raw));
                        match d {
                            Dest::Tensor(t) if as_is => gpu.write_tensor_js(t, p.src_offset_in_tensor, &a.subarray(from as u32, to as u32))?,
                            _ => sliced(&mut |off, x, z| write_piece(gpu, e, target, d, off, &a.subarray(x as u32, z as u32).to_vec()))?,
                        }
                    }
                }
            }
            let done = match pending.borrow_mut().get_mut(&p.tensor) {
                Some(left) => {
                    *left -= p.len.min(*left);
                    *left == 0
                }
                None => false,
            };
            if done {
                // Its last piece is queued: finish it (the queue runs the writes first) and
                // let its F32 buffer go.
                pending.borrow_mut().remove(&p.tensor);
                if let Some(Dest::Tensor(t)) = dests.borrow_mut().remove(&p.tensor) {
                    let b = (targets.finish)(e, &t)?;
                    staging.set(staging.get() - t.byte_len());
                    finished.borrow_mut().insert(p.tensor.clone(), b);
                }
            }
        }
        // Hand the queued writes to the GPU now, so staging memory does not pile up until
        // the first compute submission.
        gpu.flush_writes();
        Ok(())
    };
    let stats = fetch(src, wf, &|e| entries[e.name.as_str()].1, expected, opts, &write, progress, should_abort).await?;
    if let Some(name) = pending.borrow().keys().next() {
        return Err(Error::Format { format: "weights", file: wf.file.clone(), msg: format!("tensor {name} did not arrive whole") });
    }
    let mut out = StreamedWeights::empty(&wf.file);
    out.quant = wf.quant;
    for (name, d) in dests.into_inner() {
        match d {
            Dest::Tensor(t) => out.tensors.insert(name, t).map(|_| ()),
            Dest::Blocks(b) => out.blocks.insert(name, b).map(|_| ()),
        };
    }
    out.blocks.extend(finished.into_inner());
    out.max_staging_bytes = max_staging.get();
    out.max_in_flight = stats.max_in_flight;
    out.requests_sent = stats.requests_sent;
    out.max_held = stats.max_held;
    Ok(out)
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

/// Reads the planned requests of `wf`'s file and hands each to `write`; with `expected`,
/// hashes the file in order and checks it, evicting cached copies on a mismatch.
#[allow(clippy::too_many_arguments)]
async fn fetch<S: Source>(
    src: &S,
    wf: &WeightFile,
    target: &dyn Fn(&Entry) -> Target,
    expected: Option<&FileDigest>,
    opts: StreamOptions,
    write: &dyn Fn(&Request, Bytes<'_>) -> Result<()>,
    progress: &dyn Fn(Progress),
    should_abort: &dyn Fn() -> bool,
) -> Result<FetchStats> {
    let r = fetch_checked(src, wf, target, expected, opts, write, progress, should_abort).await;
    if let Err(Error::Integrity { .. }) = &r {
        // Whatever a cache holds of the file is suspect: the next load fetches it anew. The
        // integrity error is the one to report, even if the cache cannot delete.
        let _ = src.evict(&wf.file).await;
    }
    r
}

#[allow(clippy::too_many_arguments)]
async fn fetch_checked<S: Source>(
    src: &S,
    wf: &WeightFile,
    target: &dyn Fn(&Entry) -> Target,
    expected: Option<&FileDigest>,
    opts: StreamOptions,
    write: &dyn Fn(&Request, Bytes<'_>) -> Result<()>,
    progress: &dyn Fn(Progress),
    should_abort: &dyn Fn() -> bool,
) -> Result<FetchStats> {
    let file = wf.file.as_str();
    if let Some(exp) = expected {
        if exp.size != wf.file_len {
            return Err(Error::Integrity {
                file: file.to_string(),
                expected: format!("{} bytes", exp.size),
                got: format!("{} bytes", wf.file_len),
            });
        }
    }
    let requests = plan_requests(wf, target, opts.chunk_size, expected.is_some())?;
    // The running hash, after the header (hashed when it was parsed).
    let hasher = RefCell::new(expected.map(|_| wf.header_sha256.clone()));
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
