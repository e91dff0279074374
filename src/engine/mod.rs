//! The public async Rust API: [`Embedder`], [`Reranker`] (generation and search join later).

mod embedder;
mod reranker;
mod search;

pub use embedder::{EmbedOptions, Embedder, Embeddings, Pooling};
pub use reranker::{RerankOptions, RerankResult, Reranker};
pub use search::{Hit, IndexOptions, IndexStorage, SearchIndex, SearchMode};
