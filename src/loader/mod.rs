//! Loading weights and configs from untrusted files.
//!
//! Bytes reach the models through one [`Source`] trait: a folder on disk natively
//! ([`FileSource`]), `fetch` of a base URL in the browser ([`HttpSource`]) and an in-memory
//! map for tests ([`MemSource`]). Model code never branches on the platform. The
//! safetensors header is parsed and validated by our own code ([`safetensors`]); tensors are
//! then read one byte range at a time, so a load never holds the whole file in memory, or
//! streamed in parallel Range requests straight into GPU buffers ([`stream`]). A checkpoint
//! is one file or the shards of an index, optionally checked against a SHA-256 manifest
//! ([`checkpoint`]).

pub mod checkpoint;
pub mod gguf;
pub mod gguf_hf;
pub mod prequant;
#[cfg(target_arch = "wasm32")]
pub mod cache;
pub mod safetensors;
pub mod sha256;
pub mod stream;
mod source;
pub mod weights;

pub use checkpoint::{Checkpoint, FileDigest, Manifest, ShardProgress};
pub use gguf::{GgmlType, GgufArray, GgufFile, GgufStrings, GgufTensorInfo, GgufValue};
pub use gguf_hf::GgufModel;
pub use safetensors::{SafetensorsFile, StDType, TensorInfo};
pub use source::{Chunk, FileSource, MemSource, Source};
pub use stream::{stream_file, stream_safetensors, BlockTensor, StreamOptions, StreamedWeights, Target, Targets};
pub use weights::{stream_weights, Entry, Stored, WeightFile, Weights};
#[cfg(target_arch = "wasm32")]
pub use source::HttpSource;
#[cfg(target_arch = "wasm32")]
pub use cache::{CachedSource, WebSource};

use crate::error::{Error, Result};

/// Largest `tokenizer.json` read (real ones: 0.5–20 MB; Gemma's is ~33 MB).
pub const MAX_TOKENIZER_BYTES: u64 = 64 << 20;
/// Largest `tokenizer_config.json` read (it may hold added tokens and chat templates).
pub const MAX_TOKENIZER_CONFIG_BYTES: u64 = 16 << 20;
/// Largest other side file read whole: `config.json`, `generation_config.json`,
/// `modules.json`, the sentence-transformers configs (real ones: under 10 KB).
pub const MAX_CONFIG_BYTES: u64 = 1 << 20;

/// The cap on a file read whole, by its name: [`MAX_TOKENIZER_BYTES`],
/// [`MAX_TOKENIZER_CONFIG_BYTES`], else [`MAX_CONFIG_BYTES`].
pub fn max_whole_file_bytes(file: &str) -> u64 {
    match file.rsplit('/').next().unwrap_or(file) {
        "tokenizer.json" => MAX_TOKENIZER_BYTES,
        "tokenizer_config.json" => MAX_TOKENIZER_CONFIG_BYTES,
        _ => MAX_CONFIG_BYTES,
    }
}

/// Reads a side file whole, refusing one over [`max_whole_file_bytes`] (by its reported
/// length before reading, and by what arrives) with [`Error::Config`].
pub async fn read_whole<S: Source>(src: &S, file: &str) -> Result<Vec<u8>> {
    let cap = max_whole_file_bytes(file);
    checkpoint::read_capped(src, file, cap, |msg| Error::Config { file: file.to_string(), msg }).await
}

/// Reads and parses a JSON file from a source (capped by [`read_whole`]).
pub async fn read_json<S: Source, T: serde::de::DeserializeOwned>(src: &S, file: &str) -> Result<T> {
    let bytes = read_whole(src, file).await?;
    serde_json::from_slice(&bytes).map_err(|e| Error::Config { file: file.to_string(), msg: e.to_string() })
}

/// Like [`read_json`], but `Ok(None)` when the file does not exist.
pub async fn read_json_optional<S: Source, T: serde::de::DeserializeOwned>(src: &S, file: &str) -> Result<Option<T>> {
    match read_json(src, file).await {
        Ok(v) => Ok(Some(v)),
        Err(Error::NotFound { .. }) => Ok(None),
        Err(e) => Err(e),
    }
}

/// `<dir>/<name>` for a folder named in `modules.json`, confined to the model folder: `dir`
/// must be a plain file name ([`checkpoint`]'s rule: no `/`, `\`, `..`, leading `.`,
/// absolute path or URL), else [`Error::Config`] on `modules.json`.
pub fn module_file(dir: &str, name: &str) -> Result<String> {
    if !checkpoint::plain_file_name(dir) {
        return Err(Error::Config {
            file: "modules.json".into(),
            msg: format!("module path {dir:?} is not a plain folder name inside the model folder"),
        });
    }
    Ok(format!("{dir}/{name}"))
}

/// Progress of a load, reported to the caller's callback.
#[derive(Debug, Clone, PartialEq)]
pub enum Progress {
    /// A file is about to be read.
    Initiate { file: String },
    /// The download of a file's `total` bytes has started (the streaming loader's first
    /// requests are out).
    Download { file: String, total: u64 },
    /// Bytes of a file read so far.
    Progress { file: String, loaded: u64, total: u64 },
    /// A file is fully read.
    Done { file: String },
    /// Bytes read so far over all the files of a sharded checkpoint (`file` is its index,
    /// `model.safetensors.index.json`), after each of their `Progress` events. An unsharded
    /// checkpoint's own `Progress` events are its total.
    Total { file: String, loaded: u64, total: u64 },
    /// The model is on the GPU and ready.
    Ready,
}
