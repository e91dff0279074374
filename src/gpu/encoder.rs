//! Recording a list of ops and submitting them together.
//!
//! Kernel wrappers push [`Op`]s; [`Encoder::submit`] writes all their parameters into one
//! uniform buffer, builds the bind groups, encodes every dispatch into one compute pass
//! (copies split passes) and submits one command buffer. WebGPU orders dispatches inside
//! a pass, so an op sees the writes of the ops recorded before it.

use std::sync::Arc;

use super::{Gpu, GpuTensor};
use crate::error::{Error, Result};
use crate::kernels::KernelKey;

/// Uniform parameter blocks are placed at this alignment (WebGPU's
/// `minUniformBufferOffsetAlignment` default).
const PARAM_ALIGN: usize = 256;

enum Op {
    Dispatch {
        pipeline: Arc<wgpu::ComputePipeline>,
        label: String,
        param_offset: usize,
        param_len: usize,
        /// Held until submission: a buffer must not return to the pool (and be filled by
        /// a host upload, which the queue runs before this submission) while an op that
        /// is not yet submitted still uses it.
        tensors: Vec<GpuTensor>,
        workgroups: [u32; 3],
    },
    Copy { src: GpuTensor, src_offset: u64, dst: GpuTensor, dst_offset: u64, bytes: u64 },
}

/// A list of GPU ops recorded for one submission.
pub struct Encoder<'g> {
    gpu: &'g Gpu,
    ops: Vec<Op>,
    params: Vec<u8>,
    /// CPU backend: ops run as they are recorded; this counts the kernels run.
    host_ops: usize,
}

impl<'g> Encoder<'g> {
    pub(crate) fn new(gpu: &'g Gpu) -> Self {
        Self { gpu, ops: Vec::new(), params: Vec::new(), host_ops: 0 }
    }

    pub fn gpu(&self) -> &'g Gpu {
        self.gpu
    }

    /// Number of dispatches recorded so far.
    pub fn dispatch_count(&self) -> usize {
        self.ops.iter().filter(|o| matches!(o, Op::Dispatch { .. })).count() + self.host_ops
    }

    /// Whether ops run on the CPU backend as they are recorded ([`Gpu::cpu`]): kernel
    /// wrappers then call `crate::cpu` after their checks instead of [`Self::dispatch`].
    pub(crate) fn host(&mut self) -> bool {
        if self.gpu.is_host() {
            self.host_ops += 1;
            true
        } else {
            false
        }
    }

    /// Records one dispatch. Binding 0 is the kernel's uniform `Params` (`params`, as u32
    /// words; f32 values go in as their bits), bindings 1.. are `tensors` in order.
    pub(crate) fn dispatch(
        &mut self,
        key: KernelKey,
        params: &[u32],
        tensors: &[&GpuTensor],
        workgroups: [u32; 3],
    ) -> Result<()> {
        if self.gpu.is_host() {
            return Err(Error::Unsupported { op: key.family() });
        }
        if tensors.iter().any(|t| t.is_host()) {
            return Err(Error::param(key.family(), MIXED));
        }
        let max = 65535;
        if workgroups.iter().any(|&w| w > max) {
            return Err(Error::param(key.family(), format!("dispatch {workgroups:?} exceeds {max} workgroups per dimension")));
        }
        let limit = self.gpu.caps().max_storage_buffer_binding_size;
        if let Some(t) = tensors.iter().find(|t| t.byte_len() > limit) {
            return Err(Error::BufferTooLarge { what: "binding", requested: t.byte_len(), limit });
        }
        let pipeline = self.gpu.pipeline(&key)?;
        let param_offset = self.params.len();
        self.params.extend(params.iter().flat_map(|w| w.to_le_bytes()));
        // Uniform blocks are sized in 16-byte units.
        let param_len = (params.len() * 4).next_multiple_of(16).max(16);
        self.params.resize(param_offset + param_len, 0);
        self.params.resize(self.params.len().next_multiple_of(PARAM_ALIGN), 0);
        self.ops.push(Op::Dispatch {
            pipeline,
            label: format!("{key:?}"),
            param_offset,
            param_len,
            tensors: tensors.iter().map(|&t| t.clone()).collect(),
            workgroups,
        });
        Ok(())
    }

    /// Records a copy of all of `src` into `dst` starting at element `dst_offset`. Same
    /// dtype; the byte offset and length must be multiples of 4 (WebGPU's copy alignment).
    pub fn copy_into(&mut self, src: &GpuTensor, dst: &GpuTensor, dst_offset: usize) -> Result<()> {
        const OP: &str = "copy_into";
        src.expect_dtype(OP, "dst", &[dst.dtype()])?;
        let size = dst.dtype().size() as u64;
        let (offset, bytes) = (dst_offset as u64 * size, src.byte_len());
        if offset + bytes > dst.byte_len() {
            return Err(Error::param(OP, format!("{bytes} bytes at byte {offset} overflow a {}-byte tensor", dst.byte_len())));
        }
        if offset % 4 != 0 || bytes % 4 != 0 {
            return Err(Error::param(OP, "offset and length must be multiples of 4 bytes"));
        }
        if self.gpu.is_host() {
            return host_copy(src, 0, dst, offset, bytes);
        }
        if src.is_host() || dst.is_host() {
            return Err(Error::param(OP, MIXED));
        }
        self.ops.push(Op::Copy { src: src.clone(), src_offset: 0, dst: dst.clone(), dst_offset: offset, bytes });
        Ok(())
    }

    /// Records a copy of `len` elements of `src` from element `src_offset` into `dst` at
    /// element `dst_offset` (same dtype; byte offsets and length multiples of 4).
    pub fn copy_slice(&mut self, src: &GpuTensor, src_offset: usize, dst: &GpuTensor, dst_offset: usize, len: usize) -> Result<()> {
        const OP: &str = "copy_slice";
        src.expect_dtype(OP, "dst", &[dst.dtype()])?;
        let size = dst.dtype().size() as u64;
        let (so, d_o, bytes) = (src_offset as u64 * size, dst_offset as u64 * size, len as u64 * size);
        if so + bytes > src.byte_len() || d_o + bytes > dst.byte_len() {
            return Err(Error::param(OP, format!("{len} elements at {src_offset} -> {dst_offset} overflow the tensors")));
        }
        if so % 4 != 0 || d_o % 4 != 0 || bytes % 4 != 0 {
            return Err(Error::param(OP, "offsets and length must be multiples of 4 bytes"));
        }
        if self.gpu.is_host() {
            return host_copy(src, so, dst, d_o, bytes);
        }
        if src.is_host() || dst.is_host() {
            return Err(Error::param(OP, MIXED));
        }
        self.ops.push(Op::Copy { src: src.clone(), src_offset: so, dst: dst.clone(), dst_offset: d_o, bytes });
        Ok(())
    }

    /// Encodes every recorded op into one command buffer and submits it.
    pub fn submit(self) -> Result<()> {
        if self.gpu.is_host() {
            // Every op already ran.
            return Ok(());
        }
        self.encode()?.submit();
        Ok(())
    }

    /// Encodes every recorded op into one command buffer (bind groups, passes) without
    /// submitting it, so a benchmark can time the GPU work apart from the host's encoding.
    pub fn encode(self) -> Result<Encoded> {
        if self.gpu.is_host() {
            return Err(Error::Unsupported { op: "recorded command buffers" });
        }
        let steps = self.build();
        let mut enc = self.gpu.device().create_command_encoder(&wgpu::CommandEncoderDescriptor { label: Some("gllm") });
        encode_steps(&mut enc, &steps);
        Ok(Encoded { gpu: self.gpu.clone(), cmd: enc.finish(), _ops: self.ops })
    }

    /// Submits every recorded op followed by a copy of `src`'s first u32 into `slot`, and
    /// reads that value back (4 bytes, one readback).
    pub async fn submit_read_u32(self, src: &GpuTensor, slot: &U32Slot) -> Result<u32> {
        let gpu = self.gpu;
        self.submit_start_u32(src, slot)?.finish(gpu).await
    }

    /// [`Self::submit_read_u32`] without waiting: the read in flight is returned.
    pub fn submit_start_u32<'s>(self, src: &GpuTensor, slot: &'s U32Slot) -> Result<PendingU32<'s>> {
        if self.gpu.is_host() {
            return Err(Error::Unsupported { op: "recorded command buffers" });
        }
        let steps = self.build();
        let mut enc = self.gpu.device().create_command_encoder(&wgpu::CommandEncoderDescriptor { label: Some("gllm") });
        encode_steps(&mut enc, &steps);
        slot.start(self.gpu, enc, src)
    }

    /// Builds the parameter buffer and every bind group once and keeps them, with the
    /// tensors they bind, in a [`Recording`] that can be submitted any number of times.
    /// What changes between replays must live in GPU buffers the kernels read (a decode
    /// step's position and input token), not in the uniform parameters.
    pub fn record(self) -> Result<Recording> {
        if self.gpu.is_host() {
            return Err(Error::Unsupported { op: "recorded command buffers" });
        }
        let steps = self.build();
        let dispatches = self.dispatch_count();
        let mut tensors = Vec::new();
        for op in self.ops {
            match op {
                Op::Dispatch { tensors: t, .. } => tensors.extend(t),
                Op::Copy { src, dst, .. } => tensors.extend([src, dst]),
            }
        }
        Ok(Recording { gpu: self.gpu.clone(), steps, dispatches, _tensors: tensors })
    }

    /// The parameter buffer and bind groups of every op.
    fn build(&self) -> Vec<Step> {
        let device = self.gpu.device();
        let param_buf = (!self.params.is_empty()).then(|| {
            let buf = device.create_buffer(&wgpu::BufferDescriptor {
                label: Some("params"),
                size: self.params.len() as u64,
                usage: wgpu::BufferUsages::UNIFORM | wgpu::BufferUsages::COPY_DST,
                mapped_at_creation: false,
            });
            self.gpu.queue().write_buffer(&buf, 0, &self.params);
            buf
        });
        self.ops
            .iter()
            .map(|op| match op {
                Op::Copy { src, src_offset, dst, dst_offset, bytes } => Step::Copy {
                    src: src.buffer().clone(),
                    src_offset: src.byte_offset() + *src_offset,
                    dst: dst.buffer().clone(),
                    dst_offset: dst.byte_offset() + *dst_offset,
                    bytes: *bytes,
                },
                Op::Dispatch { pipeline, label, param_offset, param_len, tensors, workgroups } => {
                    let params = param_buf.as_ref().expect("dispatch implies params");
                    let mut entries = vec![wgpu::BindGroupEntry {
                        binding: 0,
                        resource: wgpu::BindingResource::Buffer(wgpu::BufferBinding {
                            buffer: params,
                            offset: *param_offset as u64,
                            size: wgpu::BufferSize::new(*param_len as u64),
                        }),
                    }];
                    let limit = self.gpu.caps().max_storage_buffer_binding_size;
                    for (j, t) in tensors.iter().enumerate() {
                        // Windows, and pooled buffers bigger than a binding may be, bind
                        // exactly their bytes.
                        let resource = if t.byte_offset() == 0 && t.buffer().size() <= limit {
                            t.buffer().as_entire_binding()
                        } else {
                            wgpu::BindingResource::Buffer(wgpu::BufferBinding {
                                buffer: t.buffer(),
                                offset: t.byte_offset(),
                                size: wgpu::BufferSize::new(t.byte_len().next_multiple_of(4).max(4)),
                            })
                        };
                        entries.push(wgpu::BindGroupEntry { binding: j as u32 + 1, resource });
                    }
                    let bind_group = device.create_bind_group(&wgpu::BindGroupDescriptor {
                        label: Some(label),
                        layout: &pipeline.get_bind_group_layout(0),
                        entries: &entries,
                    });
                    Step::Dispatch { pipeline: pipeline.clone(), bind_group, workgroups: *workgroups, label: label.clone() }
                }
            })
            .collect()
    }
}

/// Why a CPU-backend tensor cannot meet a GPU encoder.
pub(crate) const MIXED: &str = "a tensor of the CPU backend was passed to a GPU device (load both on one device)";

/// A copy on the CPU backend, run at once (ranges checked by the caller).
fn host_copy(src: &GpuTensor, src_offset: u64, dst: &GpuTensor, dst_offset: u64, bytes: u64) -> Result<()> {
    let (so, d_o, n) = (src_offset as usize, dst_offset as usize, bytes as usize);
    if std::sync::Arc::ptr_eq(&src.storage, &dst.storage) {
        let tmp = src.host_read()?.bytes()[so..so + n].to_vec();
        dst.host_write()?.bytes()[d_o..d_o + n].copy_from_slice(&tmp);
    } else {
        dst.host_write()?.bytes()[d_o..d_o + n].copy_from_slice(&src.host_read()?.bytes()[so..so + n]);
    }
    Ok(())
}

/// A recorded command buffer, from [`Encoder::encode`].
pub struct Encoded {
    gpu: Gpu,
    cmd: wgpu::CommandBuffer,
    /// Keeps the ops' tensors out of the pool until the submission.
    _ops: Vec<Op>,
}

impl Encoded {
    pub fn submit(self) {
        self.gpu.queue().submit([self.cmd]);
        // Dropping the ops now returns released buffers to the pool; anything written into
        // them later is queued after this submission.
    }
}

/// One op with its GPU objects built.
enum Step {
    Dispatch {
        pipeline: Arc<wgpu::ComputePipeline>,
        bind_group: wgpu::BindGroup,
        workgroups: [u32; 3],
        /// Kernel name for `Recording::profile` (native only).
        #[cfg_attr(target_arch = "wasm32", allow(dead_code))]
        label: String,
    },
    Copy { src: wgpu::Buffer, src_offset: u64, dst: wgpu::Buffer, dst_offset: u64, bytes: u64 },
}

/// Encodes steps: consecutive dispatches share one compute pass, copies split passes.
fn encode_steps(enc: &mut wgpu::CommandEncoder, steps: &[Step]) {
    let mut i = 0;
    while i < steps.len() {
        match &steps[i] {
            Step::Copy { src, src_offset, dst, dst_offset, bytes } => {
                enc.copy_buffer_to_buffer(src, *src_offset, dst, *dst_offset, *bytes);
                i += 1;
            }
            Step::Dispatch { .. } => {
                let mut pass = enc.begin_compute_pass(&wgpu::ComputePassDescriptor { label: None, timestamp_writes: None });
                // A pipeline already set is not set again (consecutive dispatches of one
                // kernel: q/k/v, gate/up): in the browser every call is a crossing into JS.
                let mut current: Option<&wgpu::ComputePipeline> = None;
                while let Some(Step::Dispatch { pipeline, bind_group, workgroups, .. }) = steps.get(i) {
                    if current != Some(pipeline) {
                        pass.set_pipeline(pipeline);
                        current = Some(pipeline);
                    }
                    pass.set_bind_group(0, bind_group, &[]);
                    pass.dispatch_workgroups(workgroups[0], workgroups[1], workgroups[2]);
                    i += 1;
                }
            }
        }
    }
}

/// A command sequence whose bind groups and parameters were built once (see
/// [`Encoder::record`]). Replaying it creates no buffer, bind group or pipeline: the host
/// work per replay is encoding `dispatch_count` dispatches into one command buffer.
pub struct Recording {
    gpu: Gpu,
    steps: Vec<Step>,
    dispatches: usize,
    /// Keeps every bound buffer out of the pool while the recording lives.
    _tensors: Vec<GpuTensor>,
}

impl Recording {
    /// Dispatches per replay.
    pub fn dispatch_count(&self) -> usize {
        self.dispatches
    }

    /// Submits the sequence once.
    pub fn submit(&self) {
        let mut enc = self.gpu.device().create_command_encoder(&wgpu::CommandEncoderDescriptor { label: Some("gllm replay") });
        encode_steps(&mut enc, &self.steps);
        self.gpu.queue().submit([enc.finish()]);
    }

    /// Profiles one replay (native only; needs the adapter's `TIMESTAMP_QUERY`): each dispatch
    /// runs in its own compute pass with begin/end timestamps, so the sequence is the
    /// replayed one but the per-pass barriers add a little. Returns (kernel label, µs) per
    /// dispatch in order. Used by `benches/generate.rs` (`GLLM_GEN_PROFILE=1`).
    #[cfg(not(target_arch = "wasm32"))]
    pub fn profile(&self) -> Result<Vec<(String, f64)>> {
        let device = self.gpu.device();
        if !device.features().contains(wgpu::Features::TIMESTAMP_QUERY) {
            return Err(Error::Gpu("profiling needs timestamp queries (TIMESTAMP_QUERY), which this adapter lacks".into()));
        }
        let n = self.dispatches.min(2048);
        let queries = device.create_query_set(&wgpu::QuerySetDescriptor { label: Some("profile"), ty: wgpu::QueryType::Timestamp, count: 2 * n as u32 });
        let bytes = 16 * n as u64;
        let resolve = device.create_buffer(&wgpu::BufferDescriptor { label: Some("profile resolve"), size: bytes, usage: wgpu::BufferUsages::QUERY_RESOLVE | wgpu::BufferUsages::COPY_SRC, mapped_at_creation: false });
        let staging = device.create_buffer(&wgpu::BufferDescriptor { label: Some("profile staging"), size: bytes, usage: wgpu::BufferUsages::MAP_READ | wgpu::BufferUsages::COPY_DST, mapped_at_creation: false });
        let mut enc = device.create_command_encoder(&wgpu::CommandEncoderDescriptor { label: Some("gllm profile") });
        let mut labels = Vec::with_capacity(n);
        for step in &self.steps {
            match step {
                Step::Copy { src, src_offset, dst, dst_offset, bytes } => enc.copy_buffer_to_buffer(src, *src_offset, dst, *dst_offset, *bytes),
                Step::Dispatch { pipeline, bind_group, workgroups, label } => {
                    let j = labels.len() as u32;
                    let timestamp_writes = (labels.len() < n).then_some(wgpu::ComputePassTimestampWrites {
                        query_set: &queries,
                        beginning_of_pass_write_index: Some(2 * j),
                        end_of_pass_write_index: Some(2 * j + 1),
                    });
                    let mut pass = enc.begin_compute_pass(&wgpu::ComputePassDescriptor { label: None, timestamp_writes });
                    pass.set_pipeline(pipeline);
                    pass.set_bind_group(0, bind_group, &[]);
                    pass.dispatch_workgroups(workgroups[0], workgroups[1], workgroups[2]);
                    drop(pass);
                    if labels.len() < n {
                        labels.push(label.clone());
                    }
                }
            }
        }
        enc.resolve_query_set(&queries, 0..2 * n as u32, &resolve, 0);
        enc.copy_buffer_to_buffer(&resolve, 0, &staging, 0, bytes);
        self.gpu.queue().submit([enc.finish()]);
        staging.map_async(wgpu::MapMode::Read, .., |_| {});
        device.poll(wgpu::PollType::wait_indefinitely()).map_err(|e| Error::Readback(e.to_string()))?;
        let period = self.gpu.queue().get_timestamp_period() as f64;
        let ticks: Vec<u64> = {
            let view = staging.get_mapped_range(..).map_err(|e| Error::Readback(e.to_string()))?;
            view.chunks_exact(8).map(|c| u64::from_le_bytes(c.try_into().unwrap_or([0; 8]))).collect()
        };
        staging.unmap();
        Ok(labels.into_iter().enumerate().map(|(j, l)| (l, ticks[2 * j + 1].saturating_sub(ticks[2 * j]) as f64 * period / 1000.0)).collect())
    }

    /// Submits the sequence followed by a copy of `src`'s first u32 into `slot`, and reads
    /// that one value back (4 bytes, counted as one readback).
    pub async fn submit_read_u32(&self, src: &GpuTensor, slot: &U32Slot) -> Result<u32> {
        self.submit_start_u32(src, slot)?.finish(&self.gpu).await
    }

    /// Submits the sequence followed by a copy of `src`'s first u32 into `slot`, and returns
    /// the read in flight ([`PendingU32::finish`] gives the value).
    pub fn submit_start_u32<'s>(&self, src: &GpuTensor, slot: &'s U32Slot) -> Result<PendingU32<'s>> {
        let mut enc = self.gpu.device().create_command_encoder(&wgpu::CommandEncoderDescriptor { label: Some("gllm replay") });
        encode_steps(&mut enc, &self.steps);
        slot.start(&self.gpu, enc, src)
    }
}

/// A persistent 4-byte staging buffer for reading one u32 (a sampled token id) per step
/// without creating a buffer per read.
pub struct U32Slot {
    staging: wgpu::Buffer,
}

impl U32Slot {
    pub fn new(gpu: &Gpu) -> Self {
        let staging = gpu.device().create_buffer(&wgpu::BufferDescriptor {
            label: Some("u32 readback slot"),
            size: 4,
            usage: wgpu::BufferUsages::MAP_READ | wgpu::BufferUsages::COPY_DST,
            mapped_at_creation: false,
        });
        Self { staging }
    }

    /// Finishes `enc` with a copy of `src`'s first element into the slot and submits it; the
    /// value is read by [`PendingU32::finish`], so the caller can submit more work first (the
    /// next decode step while this token travels). One pending read per slot at a time.
    pub(crate) fn start(&self, gpu: &Gpu, mut enc: wgpu::CommandEncoder, src: &GpuTensor) -> Result<PendingU32<'_>> {
        src.expect_dtype("readback_u32", "src", &[super::DType::U32])?;
        gpu.check_errors()?;
        enc.copy_buffer_to_buffer(src.buffer(), src.byte_offset(), &self.staging, 0, 4);
        let index = gpu.queue().submit([enc.finish()]);
        let (tx, rx) = super::readback::oneshot();
        self.staging.map_async(wgpu::MapMode::Read, .., move |r| tx.send(r));
        Ok(PendingU32 { slot: self, rx, index })
    }
}

/// A 4-byte read in flight from a [`U32Slot`] (see [`U32Slot::start`]). Dropping it without
/// [`Self::finish`] leaves the slot mapped or mapping: finish every read that was started.
pub struct PendingU32<'s> {
    slot: &'s U32Slot,
    rx: super::readback::Receiver<std::result::Result<(), wgpu::BufferAsyncError>>,
    #[cfg_attr(target_arch = "wasm32", allow(dead_code))]
    index: wgpu::SubmissionIndex,
}

impl PendingU32<'_> {
    /// Waits for the submission that carries the value (natively: for it alone, not for work
    /// submitted after it) and reads it (counted as one readback of 4 bytes, here).
    pub async fn finish(self, gpu: &Gpu) -> Result<u32> {
        gpu.count_readback(4);
        #[cfg(not(target_arch = "wasm32"))]
        gpu.device()
            .poll(wgpu::PollType::Wait { submission_index: Some(self.index.clone()), timeout: None })
            .map_err(|e| Error::Readback(e.to_string()))?;
        match self.rx.await {
            Some(Ok(())) => {}
            Some(Err(e)) => return Err(Error::Readback(e.to_string())),
            None => return Err(Error::Readback("map callback dropped".into())),
        }
        let staging = &self.slot.staging;
        let v = {
            let view = staging.get_mapped_range(..).map_err(|e| Error::Readback(e.to_string()))?;
            u32::from_le_bytes([view[0], view[1], view[2], view[3]])
        };
        staging.unmap();
        gpu.check_errors()?;
        Ok(v)
    }
}

/// Splits `n` workgroups over x and y so neither exceeds 65535. Shaders rebuild the
/// linear index as `wid.x + wid.y * nwg.x` and skip indices `>= n`.
pub(crate) fn grid(n: u32) -> [u32; 3] {
    const MAX: u32 = 65535;
    if n <= MAX {
        [n.max(1), 1, 1]
    } else {
        let y = n.div_ceil(MAX);
        [n.div_ceil(y), y, 1]
    }
}
