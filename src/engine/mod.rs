//! The public async Rust API: [`Embedder`], [`Reranker`], [`Generator`], [`SearchIndex`]. Every
//! engine loads through the same options ([`LoadOptions`]) and the same weights recipe
//! ([`crate::nn::load_weights`]).

mod embedder;
mod generator;
mod load;
mod reranker;
mod search;

pub use embedder::{EmbedCallOptions, EmbedOptions, Embedder, Embeddings, Pooling};
pub use load::{cpu_backend_covers, DeviceChoice, LoadOptions};
pub use generator::{prompt_lookup, FinishReason, DEFAULT_SINK_TOKENS, MIN_WINDOW, GenerateOptions, Generation, Generator, GeneratorOptions, Prompt, Speculative, SpeculativeStats};
pub use crate::models::llama::KvDType;
pub use reranker::{RerankOptions, RerankResult, Reranker};
pub use search::{Hit, IndexOptions, IndexStorage, SearchIndex, SearchMode};
