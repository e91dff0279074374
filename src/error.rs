//! The crate's one error type. Variants are grouped by domain (GPU, kernel, input) and
//! carry the context needed to act on them. `src/web/` converts them to JS errors.

/// Result alias used across the crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    // ---- GPU -------------------------------------------------------------------------
    /// No WebGPU/Vulkan adapter could be acquired.
    #[error("no GPU adapter available: {0}")]
    NoAdapter(String),
    /// The adapter refused the device request.
    #[error("GPU device request failed: {0}")]
    DeviceRequest(String),
    /// A validation or out-of-memory error reported by the GPU API.
    #[error("GPU error: {0}")]
    Gpu(String),
    /// The device was lost; the engine must be loaded again.
    #[error("GPU device lost: {0}")]
    DeviceLost(String),
    /// Mapping a buffer for readback failed.
    #[error("GPU readback failed: {0}")]
    Readback(String),
    /// A buffer larger than the device allows was requested.
    #[error("buffer of {requested} bytes exceeds the device limit of {limit} bytes ({what})")]
    BufferTooLarge { what: &'static str, requested: u64, limit: u64 },

    // ---- kernels ---------------------------------------------------------------------
    /// A tensor handed to a kernel wrapper has the wrong shape.
    #[error("{op}: tensor `{tensor}` has shape {got:?}, expected {expected}")]
    Shape { op: &'static str, tensor: &'static str, expected: String, got: Vec<usize> },
    /// A tensor handed to a kernel wrapper has the wrong dtype.
    #[error("{op}: tensor `{tensor}` has dtype {got:?}, expected {expected}")]
    DType { op: &'static str, tensor: &'static str, expected: String, got: crate::gpu::DType },
    /// A kernel parameter is out of its supported range.
    #[error("{op}: {msg}")]
    Param { op: &'static str, msg: String },
    /// The CPU backend has no kernel for this op family (it covers the BERT encoder, pooling,
    /// normalisation and the vector index).
    #[error("{op} is not available on the CPU backend; load on WebGPU (device \"webgpu\")")]
    Unsupported { op: &'static str },
    /// The device lacks a feature the requested variant needs.
    #[error("{op}: device lacks feature {feature}")]
    MissingFeature { op: &'static str, feature: &'static str },

    // ---- loader ----------------------------------------------------------------------
    /// A file does not exist (a missing file on disk, or HTTP 404).
    #[error("file not found: {file}")]
    NotFound { file: String },
    /// Reading a file failed (I/O or network).
    #[error("reading {file} failed: {msg}")]
    Io { file: String, msg: String },
    /// A weights file is malformed or inconsistent (untrusted input).
    #[error("invalid {format} file {file}: {msg}")]
    Format { format: &'static str, file: String, msg: String },
    /// A JSON configuration file is malformed or has unsupported values.
    #[error("invalid config {file}: {msg}")]
    Config { file: String, msg: String },
    /// A tensor the model needs is absent from the checkpoint.
    #[error("tensor {name} missing from the checkpoint")]
    MissingTensor { name: String },
    /// A checkpoint tensor has an unexpected shape or dtype.
    #[error("tensor {name}: expected {expected}, got {got}")]
    TensorMismatch { name: String, expected: String, got: String },
    /// A weights file does not match `gllm-manifest.json` (its size or its sha256): the
    /// download is corrupt or the file changed. Cached copies of it were evicted, so loading
    /// again fetches it anew.
    #[error("integrity check of {file} failed: expected {expected}, got {got}")]
    Integrity { file: String, expected: String, got: String },

    // ---- tokenizer -------------------------------------------------------------------
    #[error("tokenizer: {0}")]
    Tokenizer(String),

    // ---- input -----------------------------------------------------------------------
    /// A request argument is invalid.
    #[error("invalid input: {0}")]
    Input(String),
    /// A JS argument has the wrong type (`TypeError` in JS), named in the message.
    #[error("{0}")]
    Type(String),
    /// The engine was disposed.
    #[error("this {0} was disposed; load it again")]
    Disposed(&'static str),
    /// The caller aborted the operation (an `AbortSignal`); what it had allocated is freed.
    #[error("aborted")]
    Aborted,
    /// Host data does not match the shape it was declared with.
    #[error("host data of {got} elements does not match shape {shape:?} ({expected} elements)")]
    HostData { shape: Vec<usize>, expected: usize, got: usize },
    /// Raw bytes do not match the shape and dtype they were declared with.
    #[error("{got} bytes do not match shape {shape:?} of {dtype:?} ({expected} bytes)")]
    HostBytes { shape: Vec<usize>, dtype: crate::gpu::DType, expected: usize, got: usize },
}

impl Error {
    /// The `name` a JS error of this kind carries (`src/web/` sets it), so JS can tell
    /// kinds apart without parsing messages. The TypeScript union `GllmErrorName` lists them.
    pub fn js_name(&self) -> &'static str {
        match self {
            Error::NoAdapter(_) | Error::DeviceRequest(_) => "NoAdapterError",
            Error::DeviceLost(_) => "DeviceLostError",
            Error::Gpu(_) | Error::Readback(_) | Error::BufferTooLarge { .. } => "GPUError",
            Error::Shape { .. } | Error::DType { .. } | Error::Param { .. } | Error::MissingFeature { .. } => "GPUError",
            Error::Unsupported { .. } => "UnsupportedError",
            Error::NotFound { .. } => "NotFoundError",
            Error::Io { .. } => "NetworkError",
            Error::Integrity { .. } => "IntegrityError",
            Error::Format { .. } | Error::Config { .. } | Error::MissingTensor { .. } | Error::TensorMismatch { .. } | Error::Tokenizer(_) => {
                "ModelError"
            }
            Error::Input(_) | Error::HostData { .. } | Error::HostBytes { .. } => "InputError",
            Error::Type(_) => "TypeError",
            Error::Disposed(_) => "DisposedError",
            Error::Aborted => "AbortError",
        }
    }

    pub(crate) fn shape(op: &'static str, tensor: &'static str, expected: impl Into<String>, got: &[usize]) -> Self {
        Error::Shape { op, tensor, expected: expected.into(), got: got.to_vec() }
    }
    pub(crate) fn param(op: &'static str, msg: impl Into<String>) -> Self {
        Error::Param { op, msg: msg.into() }
    }
}
