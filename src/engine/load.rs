//! What every engine's `load` shares: the options ([`LoadOptions`]) and the weights part of
//! the recipe (find the checkpoint, stream it, [`crate::nn::load_weights`]).

use crate::loader::StreamOptions;
use crate::nn::LoadDType;

/// Load options every engine takes (JS: the same keys on every class's `load`).
#[derive(Debug, Clone, Default)]
pub struct LoadOptions {
    /// How weights are stored on the GPU; `None`: the engine's default (`auto` for
    /// embedders, rerankers and GGUF decoders, `f16` for a safetensors decoder).
    pub dtype: Option<LoadDType>,
    /// Chunk size, requests in flight and retries of the streaming loader.
    pub stream: StreamOptions,
    /// The weights file under the model root, when it is not `model.safetensors`, its index
    /// or `model.gguf` (e.g. `SmolLM2-135M-Instruct.Q4_1.gguf`).
    pub weights: Option<String>,
}

impl LoadOptions {
    pub fn with_dtype(dtype: LoadDType) -> Self {
        Self { dtype: Some(dtype), ..Default::default() }
    }
}
