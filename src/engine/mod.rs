//! The public async Rust API: [`Embedder`] (more engines join: rerank, generate, search).

mod embedder;

pub use embedder::{EmbedOptions, Embedder, Embeddings, Pooling};
