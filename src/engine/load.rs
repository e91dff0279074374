//! What every engine's `load` shares: the options ([`LoadOptions`]) and the weights part of
//! the recipe (find the checkpoint, stream it, [`crate::nn::load_weights`]).

use crate::error::{Error, Result};
use crate::gpu::Gpu;
use crate::loader::StreamOptions;
use crate::nn::LoadDType;

/// Where a model runs (the load option `device`; CLI `--device`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum DeviceChoice {
    /// WebGPU when an adapter exists and is not a CPU emulating a GPU
    /// ([`crate::gpu::Capabilities::is_cpu`]: SwiftShader, lavapipe), else the CPU backend
    /// ([`Gpu::cpu`]). Engines the CPU backend does not cover (`Generator`, an `Embedder` or
    /// `Reranker` of a decoder folder: [`cpu_backend_covers`]) take the adapter whatever it is.
    #[default]
    Auto,
    /// wgpu (WebGPU in the browser, Vulkan / Metal / DX12 natively); an error without one.
    WebGpu,
    /// The CPU backend (embed, rerank, search).
    Cpu,
}

impl std::str::FromStr for DeviceChoice {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        match s {
            "auto" => Ok(Self::Auto),
            "webgpu" | "gpu" => Ok(Self::WebGpu),
            "cpu" => Ok(Self::Cpu),
            _ => Err(Error::Input(format!("device `{s}`: expected \"auto\", \"webgpu\" or \"cpu\""))),
        }
    }
}

impl DeviceChoice {
    /// The rule of `auto`, given the adapter (or why there is none): `Ok(Some(gpu))` to use
    /// it, `Ok(None)` for the CPU backend. `cpu_covers` says whether the engine runs on the
    /// CPU backend at all.
    pub fn pick(self, adapter: Result<Gpu>, cpu_covers: bool) -> Result<Option<Gpu>> {
        match self {
            DeviceChoice::Cpu if cpu_covers => Ok(None),
            DeviceChoice::Cpu => Err(Error::Unsupported { op: "this engine" }),
            DeviceChoice::WebGpu => adapter.map(Some),
            DeviceChoice::Auto if !cpu_covers => adapter.map(Some),
            DeviceChoice::Auto => match adapter {
                Ok(g) if !g.caps().is_cpu => Ok(Some(g)),
                Ok(_) | Err(Error::NoAdapter(_) | Error::DeviceRequest(_)) => Ok(None),
                Err(e) => Err(e),
            },
        }
    }

    /// Natively: the device this choice gives (a new wgpu device, or [`Gpu::cpu`]).
    #[cfg(not(target_arch = "wasm32"))]
    pub async fn device(self, cpu_covers: bool) -> Result<Gpu> {
        let adapter = if self == DeviceChoice::Cpu { Err(Error::NoAdapter("not asked for".into())) } else { Gpu::new().await };
        Ok(self.pick(adapter, cpu_covers)?.unwrap_or_else(Gpu::cpu))
    }
}

/// Whether the CPU backend can run the `Embedder` / `Reranker` of the folder `src`: not for a
/// Llama-family decoder (`config.json`'s `model_type` `llama`, `qwen2`, `qwen3`, `mistral`:
/// decoders stay on WebGPU, see `Embedder::load`), so that `auto` gives such a folder the
/// adapter whatever it is, as for a `Generator`. A folder whose `config.json` cannot be read counts as covered (the load
/// then reports the real error).
pub async fn cpu_backend_covers<S: crate::loader::Source>(src: &S) -> bool {
    match super::embedder::model_type(src).await {
        Ok(m) => !super::embedder::is_decoder(&m),
        Err(_) => true,
    }
}

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
    /// Where the model runs. The Rust engines take their [`Gpu`] from the caller, so this
    /// serves the JS boundary and the CLI, which create the device ([`DeviceChoice::pick`]).
    pub device: DeviceChoice,
}

impl LoadOptions {
    pub fn with_dtype(dtype: LoadDType) -> Self {
        Self { dtype: Some(dtype), ..Default::default() }
    }
}
