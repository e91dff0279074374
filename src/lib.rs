//! gllm-web: transformer inference on the GPU, in the browser through WebGPU and natively
//! through wgpu (Vulkan/Metal/DX12).
//!
//! The architecture follows the folders:
//! - [`gpu`]: the one runtime object (device, pipeline cache, buffer pool, encoder, typed
//!   readbacks);
//! - [`kernels`]: one WGSL file and one Rust wrapper per op family;
//! - [`reference`]: plain CPU versions of every kernel, for tests and benches.
//!
//! Design documents live in `SPEC/`.

pub mod error;
pub mod gpu;
pub mod kernels;
pub mod reference;

pub use error::{Error, Result};
pub use gpu::{DType, Encoder, Gpu, GpuOptions, GpuStats, GpuTensor};
