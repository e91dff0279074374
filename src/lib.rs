//! gllm-web: transformer inference on the GPU, in the browser through WebGPU and natively
//! through wgpu (Vulkan/Metal/DX12).
//!
//! The architecture follows the folders:
//! - [`gpu`]: the one runtime object (device, pipeline cache, buffer pool, encoder, typed
//!   readbacks);
//! - [`kernels`]: one WGSL file and one Rust wrapper per op family;
//! - [`reference`]: plain CPU versions of every kernel, for tests and benches;
//! - [`loader`]: validated safetensors parsing and the [`loader::Source`] of file bytes;
//! - [`tokenizer`]: `tokenizer.json` with our padding/truncation policy;
//! - [`nn`]: layers over kernels; [`models`]: one file per architecture;
//! - [`engine`]: the public async API ([`engine::Embedder`]); [`web`]: the JS boundary.
//!
//! Design documents live in `SPEC/`.

pub mod cpu;
pub mod engine;
pub mod error;
pub mod gpu;
pub mod kernels;
pub mod loader;
pub mod models;
pub mod nn;
pub mod quant;
pub mod reference;
pub mod tokenizer;
#[cfg(target_arch = "wasm32")]
pub mod web;

pub use error::{Error, Result};
pub use engine::{EmbedCallOptions, EmbedOptions, Embedder, Embeddings, Hit, Pooling, RerankOptions, RerankResult, Reranker, SearchIndex, SearchMode};
pub use engine::{FinishReason, GenerateOptions, Generation, Generator, GeneratorOptions, KvDType, Prompt, Speculative, SpeculativeStats};
pub use engine::{DeviceChoice, IndexOptions, IndexStorage, LoadOptions};
pub use gpu::{DType, Encoder, Gpu, GpuOptions, GpuStats, GpuTensor, Recording, U32Slot};
pub use kernels::sample::SamplingConfig;
pub use nn::LoadDType;
pub use tokenizer::chat::ChatMessage;
