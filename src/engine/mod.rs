//! The public async Rust API: [`Embedder`], [`Reranker`] (generation and search join later).

mod embedder;
mod generator;
mod reranker;
mod search;

pub use embedder::{EmbedOptions, Embedder, Embeddings, Pooling};
pub use generator::{FinishReason, GenerateOptions, Generation, Generator, GeneratorOptions, Prompt};
pub use reranker::{RerankOptions, RerankResult, Reranker};
pub use search::{Hit, IndexOptions, IndexStorage, SearchIndex, SearchMode};
