//! The GPU runtime: one [`Gpu`] object owns the adapter, device and queue, the pipeline
//! cache, the buffer pool and the error sink. Everything else borrows it.
//!
//! Data-flow rules (SPEC/dataflow.md): inputs are uploaded once per call, a whole forward
//! pass is recorded into one [`Encoder`] and submitted together, and one small result is
//! read back with a typed readback ([`Gpu::readback_f32`], [`Gpu::readback_u32`], ...).

mod encoder;
mod pool;
mod readback;
mod tensor;

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

pub use encoder::{Encoded, Encoder, PendingU32, Recording, U32Slot};
pub(crate) use encoder::grid;
pub use tensor::{DType, GpuTensor};

use crate::error::{Error, Result};
use crate::kernels::KernelKey;
use pool::BufferPool;
use tensor::Storage;

/// What the acquired device can do. Kernels pick variants from this.
#[derive(Debug, Clone)]
pub struct Capabilities {
    /// `shader-f16` is enabled: WGSL `enable f16;` modules may be used.
    pub shader_f16: bool,
    /// `subgroups` is enabled.
    pub subgroups: bool,
    /// The subgroup size when `subgroups` is enabled and the adapter has one fixed size
    /// (min == max); kernels that reduce a row within one subgroup need it.
    pub subgroup_size: Option<u32>,
    pub max_storage_buffer_binding_size: u64,
    pub max_buffer_size: u64,
    /// `minStorageBufferOffsetAlignment`: byte offsets of bound windows are multiples of it.
    pub storage_offset_alignment: u64,
    pub max_workgroup_storage_size: u32,
    /// Adapter description (name, driver, backend), for logs and benchmark names.
    pub adapter: String,
    /// True for CPU adapters (lavapipe, SwiftShader): tests and benches keep shapes small.
    pub is_cpu: bool,
}

/// Options for acquiring the device.
#[derive(Debug, Clone, Default)]
pub struct GpuOptions {
    /// Do not enable `shader-f16` even if offered (to test the fallback path).
    pub disable_f16: bool,
    /// Do not enable `subgroups` even if offered.
    pub disable_subgroups: bool,
    /// Treat bindings above this many bytes as too large (tests of the chunked paths for
    /// tables and weights larger than `maxStorageBufferBindingSize`). 0: the device's limit.
    pub max_binding_bytes: u64,
    /// Treat a CPU adapter (lavapipe, SwiftShader) as a GPU (`Capabilities::is_cpu` false):
    /// the kernels and fusions chosen for GPUs run there, so tests cover them.
    pub gpu_kernels: bool,
}

struct Inner {
    /// The wgpu device and queue; `None` on the CPU backend ([`Gpu::cpu`]).
    wgpu: Option<(wgpu::Device, wgpu::Queue)>,
    caps: Capabilities,
    pipelines: Mutex<HashMap<KernelKey, Arc<wgpu::ComputePipeline>>>,
    pool: Arc<Mutex<BufferPool>>,
    /// First uncaptured GPU error since the last check, reported at the next readback.
    error: Arc<Mutex<Option<String>>>,
    lost: Arc<Mutex<Option<String>>>,
    buffers_created: AtomicUsize,
    readbacks: AtomicUsize,
    readback_bytes: AtomicUsize,
}

/// Counters of the runtime's caches, for tests and diagnostics.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct GpuStats {
    /// Storage buffers created since the device was acquired (pool misses).
    pub buffers_created: usize,
    /// Compiled pipelines in the cache.
    pub pipelines: usize,
    /// Bytes held by free buffers in the pool.
    pub pooled_free_bytes: u64,
    /// Bytes of the storage buffers live tensors hold (weights, caches, activations).
    pub live_bytes: u64,
    /// Readbacks (GPU→CPU transfers) since the device was acquired.
    pub readbacks: usize,
    /// Payload bytes read back since the device was acquired.
    pub readback_bytes: usize,
}

/// The one object that owns the GPU. Cheap to clone (shared handle).
#[derive(Clone)]
pub struct Gpu {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for Gpu {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Gpu({})", self.inner.caps.adapter)
    }
}

impl Gpu {
    /// Acquires a high-performance adapter and a device with the adapter's own buffer
    /// limits, enabling `shader-f16` and `subgroups` when offered.
    pub async fn new() -> Result<Self> {
        Self::with_options(GpuOptions::default()).await
    }

    pub async fn with_options(opts: GpuOptions) -> Result<Self> {
        let instance = wgpu::Instance::new(wgpu::InstanceDescriptor::new_without_display_handle_from_env());
        let adapter = instance
            .request_adapter(&wgpu::RequestAdapterOptions {
                power_preference: wgpu::PowerPreference::HighPerformance,
                ..Default::default()
            })
            .await
            .map_err(|e| Error::NoAdapter(e.to_string()))?;
        let info = adapter.get_info();
        let have = adapter.features();
        let mut features = wgpu::Features::empty();
        if have.contains(wgpu::Features::SHADER_F16) && !opts.disable_f16 {
            features |= wgpu::Features::SHADER_F16;
        }
        #[cfg(not(target_arch = "wasm32"))]
        if have.contains(wgpu::Features::TIMESTAMP_QUERY) {
            // Only `Recording::profile` (benchmarks) writes timestamps.
            features |= wgpu::Features::TIMESTAMP_QUERY;
        }
        if have.contains(wgpu::Features::SUBGROUP) && !opts.disable_subgroups {
            features |= wgpu::Features::SUBGROUP;
        }
        let al = adapter.limits();
        // Start from the WebGPU defaults and raise what inference needs to the adapter's
        // own values: big weights need big bindings.
        let limits = wgpu::Limits {
            max_storage_buffer_binding_size: al.max_storage_buffer_binding_size,
            max_buffer_size: al.max_buffer_size,
            max_compute_workgroup_storage_size: al.max_compute_workgroup_storage_size,
            max_compute_invocations_per_workgroup: al.max_compute_invocations_per_workgroup,
            max_compute_workgroup_size_x: al.max_compute_workgroup_size_x,
            max_compute_workgroup_size_y: al.max_compute_workgroup_size_y,
            max_storage_buffers_per_shader_stage: al.max_storage_buffers_per_shader_stage,
            ..wgpu::Limits::default()
        };
        let (device, queue) = adapter
            .request_device(&wgpu::DeviceDescriptor {
                label: Some("gllm-web"),
                required_features: features,
                required_limits: limits.clone(),
                memory_hints: wgpu::MemoryHints::Performance,
                ..Default::default()
            })
            .await
            .map_err(|e| Error::DeviceRequest(e.to_string()))?;

        let error = Arc::new(Mutex::new(None::<String>));
        let sink = error.clone();
        device.on_uncaptured_error(Arc::new(move |e: wgpu::Error| {
            if let Ok(mut slot) = sink.lock() {
                slot.get_or_insert_with(|| e.to_string());
            }
        }));
        let lost = Arc::new(Mutex::new(None::<String>));
        let lost_sink = lost.clone();
        device.set_device_lost_callback(move |reason, msg| {
            if let Ok(mut slot) = lost_sink.lock() {
                *slot = Some(format!("{reason:?}: {msg}"));
            }
        });

        let caps = Capabilities {
            shader_f16: features.contains(wgpu::Features::SHADER_F16),
            subgroups: features.contains(wgpu::Features::SUBGROUP),
            subgroup_size: (features.contains(wgpu::Features::SUBGROUP)
                && info.subgroup_min_size == info.subgroup_max_size)
                .then_some(info.subgroup_min_size),
            max_storage_buffer_binding_size: match opts.max_binding_bytes {
                0 => limits.max_storage_buffer_binding_size as u64,
                n => n.min(limits.max_storage_buffer_binding_size as u64),
            },
            max_buffer_size: limits.max_buffer_size,
            storage_offset_alignment: limits.min_storage_buffer_offset_alignment as u64,
            max_workgroup_storage_size: limits.max_compute_workgroup_storage_size,
            adapter: format!(
                "{} ({:?}, {:?}, driver {} {})",
                info.name, info.backend, info.device_type, info.driver, info.driver_info
            ),
            is_cpu: !opts.gpu_kernels
                && (matches!(info.device_type, wgpu::DeviceType::Cpu) || format!("{info:?}").to_lowercase().contains("swiftshader")),
        };
        Ok(Self {
            inner: Arc::new(Inner {
                wgpu: Some((device, queue)),
                caps,
                pipelines: Mutex::new(HashMap::new()),
                pool: Arc::new(Mutex::new(BufferPool::new(1 << 30))),
                error,
                lost,
                buffers_created: AtomicUsize::new(0),
                readbacks: AtomicUsize::new(0),
                readback_bytes: AtomicUsize::new(0),
            }),
        })
    }

    pub fn caps(&self) -> &Capabilities {
        &self.inner.caps
    }
    /// The CPU backend: the same tensors, encoder and kernel wrappers, with every kernel run
    /// on the host (`crate::cpu`, SIMD128 in wasm) as it is recorded. It covers the BERT
    /// encoder (embed, rerank) and the vector index; other kernels return
    /// [`Error::Unsupported`]. Used where WebGPU is missing or is a CPU emulating a GPU
    /// (`device: "auto"`).
    pub fn cpu() -> Self {
        let caps = Capabilities {
            shader_f16: false,
            subgroups: false,
            subgroup_size: None,
            // Host memory: one allocation is bounded by the address space, not a binding.
            max_storage_buffer_binding_size: isize::MAX as u64,
            max_buffer_size: isize::MAX as u64,
            storage_offset_alignment: 4,
            max_workgroup_storage_size: 0,
            adapter: crate::cpu::DESCRIPTION.to_string(),
            is_cpu: true,
        };
        Self {
            inner: Arc::new(Inner {
                wgpu: None,
                caps,
                pipelines: Mutex::new(HashMap::new()),
                pool: Arc::new(Mutex::new(BufferPool::new(0))),
                error: Arc::new(Mutex::new(None)),
                lost: Arc::new(Mutex::new(None)),
                buffers_created: AtomicUsize::new(0),
                readbacks: AtomicUsize::new(0),
                readback_bytes: AtomicUsize::new(0),
            }),
        }
    }

    /// Whether this is the CPU backend ([`Gpu::cpu`]).
    pub fn is_host(&self) -> bool {
        self.inner.wgpu.is_none()
    }

    /// `"webgpu"` (wgpu on WebGPU, Vulkan, Metal or DX12) or `"cpu"` (the CPU backend).
    pub fn device_name(&self) -> &'static str {
        if self.is_host() { "cpu" } else { "webgpu" }
    }

    pub(crate) fn device(&self) -> &wgpu::Device {
        &self.inner.wgpu.as_ref().expect("wgpu paths are not taken on the CPU backend").0
    }
    pub(crate) fn queue(&self) -> &wgpu::Queue {
        &self.inner.wgpu.as_ref().expect("wgpu paths are not taken on the CPU backend").1
    }
    pub(crate) fn count_readback(&self, bytes: usize) {
        self.inner.readbacks.fetch_add(1, Ordering::Relaxed);
        self.inner.readback_bytes.fetch_add(bytes, Ordering::Relaxed);
    }

    /// Whether the device was lost (the engine must be loaded again on a new device).
    pub fn is_lost(&self) -> bool {
        self.inner.lost.lock().map(|s| s.is_some()).unwrap_or(true)
    }

    /// Returns (and clears) the first GPU error reported since the last check, and any
    /// device loss.
    pub fn check_errors(&self) -> Result<()> {
        if let Some(msg) = self.inner.lost.lock().ok().and_then(|s| s.clone()) {
            return Err(Error::DeviceLost(msg));
        }
        if let Some(msg) = self.inner.error.lock().ok().and_then(|mut s| s.take()) {
            return Err(Error::Gpu(msg));
        }
        Ok(())
    }

    // ---- buffers ---------------------------------------------------------------------

    /// Allocates an uninitialised tensor from the pool.
    pub fn alloc(&self, shape: &[usize], dtype: DType) -> Result<GpuTensor> {
        // Checked: in wasm32 a shape from a hostile config could overflow `usize`.
        let bytes = shape
            .iter()
            .try_fold(dtype.size() as u64, |a, &d| a.checked_mul(d as u64))
            .filter(|&b| usize::try_from(b).is_ok())
            .ok_or(Error::BufferTooLarge { what: "tensor (its size overflows)", requested: u64::MAX, limit: self.inner.caps.max_buffer_size })?;
        if self.is_host() {
            let limit = self.inner.caps.max_buffer_size;
            let refused = || Error::BufferTooLarge { what: "host memory: the heap refused it", requested: bytes, limit };
            if bytes > limit {
                return Err(refused());
            }
            let storage = usize::try_from(bytes.div_ceil(4)).ok().and_then(Storage::host).ok_or_else(refused)?;
            self.inner.buffers_created.fetch_add(1, Ordering::Relaxed);
            return Ok(GpuTensor::new(Arc::new(storage), shape.to_vec(), dtype));
        }
        let storage = self.storage(bytes)?;
        Ok(GpuTensor::new(storage, shape.to_vec(), dtype))
    }

    fn storage(&self, bytes: u64) -> Result<Arc<Storage>> {
        let size = pool::bucket(bytes);
        // A buffer may exceed the binding limit: kernels then bind row windows of it
        // (`GpuTensor::rows_view`; embedding tables and dense weights do that on their own).
        let limit = self.inner.caps.max_buffer_size;
        if size > limit {
            return Err(Error::BufferTooLarge { what: "storage", requested: bytes, limit });
        }
        let recycled = self.inner.pool.lock().ok().and_then(|mut p| {
            p.lend(size);
            p.take(size)
        });
        let buffer = recycled.unwrap_or_else(|| {
            self.inner.buffers_created.fetch_add(1, Ordering::Relaxed);
            self.device().create_buffer(&wgpu::BufferDescriptor {
                label: None,
                size,
                usage: wgpu::BufferUsages::STORAGE | wgpu::BufferUsages::COPY_DST | wgpu::BufferUsages::COPY_SRC,
                mapped_at_creation: false,
            })
        });
        Ok(Arc::new(Storage::new(buffer, Arc::downgrade(&self.inner.pool))))
    }

    /// Uploads raw little-endian bytes as a tensor of `shape` and `dtype`.
    pub fn upload_bytes(&self, bytes: &[u8], shape: &[usize], dtype: DType) -> Result<GpuTensor> {
        let expected = shape.iter().product::<usize>() * dtype.size();
        if bytes.len() != expected {
            return Err(Error::HostBytes { shape: shape.to_vec(), dtype, expected, got: bytes.len() });
        }
        let t = self.alloc(shape, dtype)?;
        self.write(&t, 0, bytes);
        Ok(t)
    }

    /// Writes bytes into a tensor's buffer at a byte offset (padded to 4 bytes).
    pub(crate) fn write(&self, t: &GpuTensor, offset: u64, bytes: &[u8]) {
        if t.is_host() {
            // Callers checked the range against the tensor (`upload_bytes`, stream targets).
            if let Ok(mut w) = t.host_write() {
                let dst = w.bytes();
                let o = (offset as usize).min(dst.len());
                let n = bytes.len().min(dst.len() - o);
                dst[o..o + n].copy_from_slice(&bytes[..n]);
            }
            return;
        }
        if bytes.len() % 4 == 0 {
            self.queue().write_buffer(t.buffer(), t.byte_offset() + offset, bytes);
        } else {
            let mut padded = bytes.to_vec();
            padded.resize(bytes.len().next_multiple_of(4), 0);
            self.queue().write_buffer(t.buffer(), t.byte_offset() + offset, &padded);
        }
    }

    fn check_len(len: usize, shape: &[usize]) -> Result<()> {
        let expected = shape.iter().product::<usize>();
        if len != expected {
            return Err(Error::HostData { shape: shape.to_vec(), expected, got: len });
        }
        Ok(())
    }

    /// Submits the queued buffer writes (an empty submission), releasing their staging memory.
    pub fn flush_writes(&self) {
        if !self.is_host() {
            self.queue().submit([]);
        }
    }

    /// Writes `bytes` into `t` at byte `offset` (queued before the next submission). The
    /// offset must be a multiple of 4; a length that is not is padded with zeros (the
    /// tensor's buffer is sized in whole words).
    pub fn write_tensor_bytes(&self, t: &GpuTensor, offset: u64, bytes: &[u8]) -> Result<()> {
        let end = offset + bytes.len() as u64;
        if offset % 4 != 0 || end > t.byte_len().next_multiple_of(4) {
            return Err(Error::param(
                "write_tensor_bytes",
                format!("{} bytes at byte {offset} do not fit a {}-byte tensor on 4-byte alignment", bytes.len(), t.byte_len()),
            ));
        }
        if bytes.is_empty() {
            return Ok(());
        }
        if t.is_host() {
            let mut w = t.host_write()?;
            let dst = w.bytes();
            let o = (offset as usize).min(dst.len());
            let n = bytes.len().min(dst.len() - o);
            dst[o..o + n].copy_from_slice(&bytes[..n]);
            return Ok(());
        }
        self.write(t, offset, bytes);
        Ok(())
    }

    /// [`Self::write_tensor_bytes`] from a JS byte array (browser): `GPUQueue.writeBuffer`
    /// reads it directly, so streamed weights are not copied into wasm memory on their way
    /// to the GPU. A length that is not a multiple of 4 goes through wasm memory (padded).
    #[cfg(target_arch = "wasm32")]
    pub fn write_tensor_js(&self, t: &GpuTensor, offset: u64, data: &js_sys::Uint8Array) -> Result<()> {
        let len = data.length() as u64;
        if t.is_host() {
            if offset % 4 != 0 || offset + len > t.byte_len().next_multiple_of(4) {
                return self.write_tensor_bytes(t, offset, &data.to_vec());
            }
            // Straight from the JS array into the tensor's host memory.
            let mut w = t.host_write()?;
            let dst = w.bytes();
            let o = (offset as usize).min(dst.len());
            let n = (len as usize).min(dst.len() - o);
            data.subarray(0, n as u32).copy_to(&mut dst[o..o + n]);
            return Ok(());
        }
        let (Some(queue), Some(buffer)) = (self.queue().as_webgpu(), t.buffer().as_webgpu()) else {
            return self.write_tensor_bytes(t, offset, &data.to_vec());
        };
        if len % 4 != 0 || offset % 4 != 0 || offset + len > t.byte_len() {
            return self.write_tensor_bytes(t, offset, &data.to_vec());
        }
        if len == 0 {
            return Ok(());
        }
        queue
            .write_buffer_with_f64_and_buffer_source(buffer, (t.byte_offset() + offset) as f64, data)
            .map_err(|e| Error::Gpu(format!("writeBuffer: {e:?}")))
    }

    pub fn upload_f32(&self, data: &[f32], shape: &[usize]) -> Result<GpuTensor> {
        self.upload_words(data.iter().map(|v| v.to_bits()), data.len(), shape, DType::F32)
    }
    pub fn upload_u32(&self, data: &[u32], shape: &[usize]) -> Result<GpuTensor> {
        self.upload_words(data.iter().copied(), data.len(), shape, DType::U32)
    }
    pub fn upload_i32(&self, data: &[i32], shape: &[usize]) -> Result<GpuTensor> {
        self.upload_words(data.iter().map(|v| *v as u32), data.len(), shape, DType::I32)
    }
    pub fn upload_f16(&self, data: &[half::f16], shape: &[usize]) -> Result<GpuTensor> {
        Self::check_len(data.len(), shape)?;
        let bytes: Vec<u8> = data.iter().flat_map(|v| v.to_le_bytes()).collect();
        self.upload_bytes(&bytes, shape, DType::F16)
    }
    /// Uploads f32 host data converted to f16 on the way.
    pub fn upload_f32_as_f16(&self, data: &[f32], shape: &[usize]) -> Result<GpuTensor> {
        let h: Vec<half::f16> = data.iter().map(|&v| half::f16::from_f32(v)).collect();
        self.upload_f16(&h, shape)
    }
    fn upload_words(
        &self,
        words: impl Iterator<Item = u32>,
        len: usize,
        shape: &[usize],
        dtype: DType,
    ) -> Result<GpuTensor> {
        Self::check_len(len, shape)?;
        let bytes: Vec<u8> = words.flat_map(|w| w.to_le_bytes()).collect();
        self.upload_bytes(&bytes, shape, dtype)
    }

    // ---- recording -------------------------------------------------------------------

    /// Starts recording a list of ops that will be submitted together.
    pub fn encoder(&self) -> Encoder<'_> {
        Encoder::new(self)
    }

    /// The compiled pipeline for a kernel variant, compiled on first use and cached.
    pub(crate) fn pipeline(&self, key: &KernelKey) -> Result<Arc<wgpu::ComputePipeline>> {
        let mut cache = self.inner.pipelines.lock().map_err(|_| Error::Gpu("pipeline cache poisoned".into()))?;
        if let Some(p) = cache.get(key) {
            return Ok(p.clone());
        }
        if key.needs_shader_f16() && !self.inner.caps.shader_f16 {
            return Err(Error::MissingFeature { op: key.family(), feature: "shader-f16" });
        }
        let label = format!("{key:?}");
        let source = crate::kernels::preprocess(key.source(), &key.defines());
        if self.is_host() {
            return Err(Error::Unsupported { op: key.family() });
        }
        let device = self.device();
        let module = device.create_shader_module(wgpu::ShaderModuleDescriptor {
            label: Some(&label),
            source: wgpu::ShaderSource::Wgsl(source.into()),
        });
        let constants = key.constants();
        let pipeline = device.create_compute_pipeline(&wgpu::ComputePipelineDescriptor {
            label: Some(&label),
            layout: None,
            module: &module,
            entry_point: Some(key.entry()),
            compilation_options: wgpu::PipelineCompilationOptions { constants: &constants, ..Default::default() },
            cache: None,
        });
        let pipeline = Arc::new(pipeline);
        cache.insert(key.clone(), pipeline.clone());
        Ok(pipeline)
    }

    pub fn stats(&self) -> GpuStats {
        GpuStats {
            buffers_created: self.inner.buffers_created.load(Ordering::Relaxed),
            pipelines: self.inner.pipelines.lock().map(|c| c.len()).unwrap_or(0),
            pooled_free_bytes: self.inner.pool.lock().map(|p| p.free_bytes).unwrap_or(0),
            live_bytes: self.inner.pool.lock().map(|p| p.live_bytes).unwrap_or(0),
            readbacks: self.inner.readbacks.load(Ordering::Relaxed),
            readback_bytes: self.inner.readback_bytes.load(Ordering::Relaxed),
        }
    }

    /// Frees pooled buffers that are not in use.
    pub fn trim(&self) {
        if let Ok(mut p) = self.inner.pool.lock() {
            p.clear();
        }
    }

    /// Waits until all submitted work has finished (native: polls the device; web:
    /// awaits `onSubmittedWorkDone`).
    pub async fn sync(&self) -> Result<()> {
        if self.is_host() {
            return Ok(());
        }
        let (tx, rx) = readback::oneshot::<()>();
        self.queue().on_submitted_work_done(move || tx.send(()));
        #[cfg(not(target_arch = "wasm32"))]
        self.device()
            .poll(wgpu::PollType::wait_indefinitely())
            .map_err(|e| Error::Gpu(e.to_string()))?;
        rx.await.ok_or_else(|| Error::Gpu("submitted-work callback dropped".into()))?;
        self.check_errors()
    }
}
