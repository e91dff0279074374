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
    Copy { src: GpuTensor, dst: GpuTensor, dst_offset: u64, bytes: u64 },
}

/// A list of GPU ops recorded for one submission.
pub struct Encoder<'g> {
    gpu: &'g Gpu,
    ops: Vec<Op>,
    params: Vec<u8>,
}

impl<'g> Encoder<'g> {
    pub(crate) fn new(gpu: &'g Gpu) -> Self {
        Self { gpu, ops: Vec::new(), params: Vec::new() }
    }

    pub fn gpu(&self) -> &'g Gpu {
        self.gpu
    }

    /// Number of dispatches recorded so far.
    pub fn dispatch_count(&self) -> usize {
        self.ops.iter().filter(|o| matches!(o, Op::Dispatch { .. })).count()
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
        let max = 65535;
        if workgroups.iter().any(|&w| w > max) {
            return Err(Error::param(key.family(), format!("dispatch {workgroups:?} exceeds {max} workgroups per dimension")));
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
        self.ops.push(Op::Copy { src: src.clone(), dst: dst.clone(), dst_offset: offset, bytes });
        Ok(())
    }

    /// Encodes every recorded op into one command buffer and submits it.
    pub fn submit(self) -> Result<()> {
        self.encode()?.submit();
        Ok(())
    }

    /// Encodes every recorded op into one command buffer (bind groups, passes) without
    /// submitting it, so a benchmark can time the GPU work apart from the host's encoding.
    pub fn encode(self) -> Result<Encoded> {
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
        let mut enc = device.create_command_encoder(&wgpu::CommandEncoderDescriptor { label: Some("gllm") });
        let mut i = 0;
        while i < self.ops.len() {
            match &self.ops[i] {
                Op::Copy { src, dst, dst_offset, bytes } => {
                    enc.copy_buffer_to_buffer(src.buffer(), 0, dst.buffer(), *dst_offset, *bytes);
                    i += 1;
                }
                Op::Dispatch { .. } => {
                    let mut pass = enc.begin_compute_pass(&wgpu::ComputePassDescriptor { label: None, timestamp_writes: None });
                    while let Some(Op::Dispatch { pipeline, label, param_offset, param_len, tensors, workgroups }) = self.ops.get(i) {
                        let params = param_buf.as_ref().expect("dispatch implies params");
                        let mut entries = vec![wgpu::BindGroupEntry {
                            binding: 0,
                            resource: wgpu::BindingResource::Buffer(wgpu::BufferBinding {
                                buffer: params,
                                offset: *param_offset as u64,
                                size: wgpu::BufferSize::new(*param_len as u64),
                            }),
                        }];
                        for (j, t) in tensors.iter().enumerate() {
                            entries.push(wgpu::BindGroupEntry { binding: j as u32 + 1, resource: t.buffer().as_entire_binding() });
                        }
                        let bg = device.create_bind_group(&wgpu::BindGroupDescriptor {
                            label: Some(label),
                            layout: &pipeline.get_bind_group_layout(0),
                            entries: &entries,
                        });
                        pass.set_pipeline(pipeline);
                        pass.set_bind_group(0, &bg, &[]);
                        pass.dispatch_workgroups(workgroups[0], workgroups[1], workgroups[2]);
                        i += 1;
                    }
                }
            }
        }
        Ok(Encoded { gpu: self.gpu.clone(), cmd: enc.finish(), _ops: self.ops })
    }
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
