//! The one load path, engine by engine: `Embedder` (all-MiniLM-L6-v2), `Reranker` (the
//! synthetic cross-encoder) and `Generator` (the SmolLM2 Q4_1 GGUF, blocks kept) all load
//! through `nn::load_weights`, so each one must
//! - free every GPU byte it allocated when aborted mid-load, and load afterwards;
//! - refuse a `gllm-manifest.json` whose sha256 does not match, and load with the right one;
//! - in the browser, load a second time from the Cache API with no network request.
//! Natively and in headless Chromium.

mod common;

use std::cell::Cell;

use common::R;
use gllm_web::loader::sha256::{to_hex, Sha256};
use gllm_web::loader::Source;
use gllm_web::{EmbedOptions, Embedder, Error, Generator, GeneratorOptions, Gpu, LoadOptions, RerankOptions, Reranker};

#[cfg(target_arch = "wasm32")]
wasm_bindgen_test::wasm_bindgen_test_configure!(run_in_browser);

gpu_tests! {
    every_engine_frees_an_aborted_load => every_engine_frees_an_aborted_load,
    every_engine_refuses_a_wrong_manifest => every_engine_refuses_a_wrong_manifest,
}

/// Browser only (the Cache API): see [`cache_offline`].
#[cfg(target_arch = "wasm32")]
#[wasm_bindgen_test::wasm_bindgen_test]
async fn every_engine_loads_from_the_cache_offline() {
    let Some(gpu) = common::web_gpu().await else { return };
    if let Err(e) = cache_offline(gpu).await {
        panic!("every_engine_loads_from_the_cache_offline: {e}");
    }
}

const GGUF: &str = "SmolLM2-135M-Instruct.Q4_1.gguf";

#[derive(Clone, Copy, Debug)]
enum Engine {
    Embedder,
    Reranker,
    Generator,
}

const ENGINES: [Engine; 3] = [Engine::Embedder, Engine::Reranker, Engine::Generator];

impl Engine {
    /// The model folder under `models/` (or the test server).
    fn folder(self) -> &'static str {
        match self {
            Engine::Embedder => "all-MiniLM-L6-v2",
            Engine::Reranker => "reranker-synthetic-minilm",
            Engine::Generator => "gguf",
        }
    }
    fn weights(self) -> &'static str {
        match self {
            Engine::Generator => GGUF,
            _ => "model.safetensors",
        }
    }

    /// Loads the engine from `src` (1 MiB requests, so an abort lands mid-load) and checks
    /// it answers; returns the error of a failed load.
    async fn load<S: Source>(self, gpu: &Gpu, src: &S, abort: &dyn Fn() -> bool) -> Result<(), Error> {
        let mut load = LoadOptions { weights: Some(self.weights().into()), ..Default::default() };
        load.stream.chunk_size = 1 << 20;
        match self {
            Engine::Embedder => {
                let e = Embedder::load_with_abort(gpu, src, EmbedOptions { load, ..Default::default() }, &|_| {}, abort).await?;
                let v = e.embed(&["a loaded embedder"]).await?;
                assert_eq!(v.dims, [1, 384]);
            }
            Engine::Reranker => {
                let r = Reranker::load_with_abort(gpu, src, RerankOptions { load, ..Default::default() }, &|_| {}, abort).await?;
                assert_eq!(r.rerank("query", &["doc one", "doc two"], None).await?.len(), 2);
            }
            Engine::Generator => {
                let g = Generator::load_with_abort(gpu, src, GeneratorOptions { load, kv_dtype: None }, &|_| {}, abort).await?;
                let ids = g.prompt_ids(gllm_web::Prompt::Text("The capital of France is"))?;
                assert_eq!(ids, [504, 3575, 282, 4649, 314]);
            }
        }
        Ok(())
    }
}

/// Aborted after a few requests: `Error::Aborted`, and the device's live GPU bytes are back
/// to where they were before the load; the next load on the same device works.
async fn every_engine_frees_an_aborted_load(_shared: Gpu) -> R {
    // Its own device, so its live bytes are this test's alone.
    let gpu = Gpu::new().await?;
    for engine in ENGINES {
        let src = common::model_source(engine.folder());
        let before = gpu.stats().live_bytes;
        let polls = Cell::new(0);
        let abort = || {
            polls.set(polls.get() + 1);
            polls.get() > 4
        };
        match engine.load(&gpu, &src, &abort).await {
            Err(Error::Aborted) => {}
            other => return Err(format!("{engine:?}: an aborted load gave {other:?}").into()),
        }
        let after = gpu.stats().live_bytes;
        log!("{engine:?}: aborted after {} polls; live GPU bytes {before} -> {after}", polls.get());
        if after != before {
            return Err(format!("{engine:?}: {} bytes still live after the aborted load", after as i64 - before as i64).into());
        }
        engine.load(&gpu, &src, &|| false).await?;
    }
    Ok(())
}

/// A manifest listing `file` with its true size and the SHA-256 of its bytes, or (`flip`)
/// that digest with one bit changed.
async fn manifest<S: Source>(src: &S, file: &str, flip: bool) -> Result<Vec<u8>, Error> {
    let len = src.len(file).await?;
    let mut h = Sha256::new();
    let mut at = 0;
    while at < len {
        let n = (len - at).min(16 << 20);
        h.update(&src.read_range(file, at, n).await?);
        at += n;
    }
    let mut d = h.finalize();
    if flip {
        d[7] ^= 0x10;
    }
    Ok(serde_json::to_vec(&serde_json::json!({ "files": { file: { "sha256": to_hex(&d), "size": len } } })).expect("json"))
}

/// A wrong digest in the manifest is `Error::Integrity` naming the file, for every engine;
/// the right one loads.
async fn every_engine_refuses_a_wrong_manifest(gpu: Gpu) -> R {
    for engine in ENGINES {
        let inner = common::model_source(engine.folder());
        let bad = common::WithManifest { manifest: manifest(&inner, engine.weights(), true).await?, inner };
        match engine.load(&gpu, &bad, &|| false).await {
            Err(Error::Integrity { file, .. }) if file == engine.weights() => log!("{engine:?}: wrong sha256 refused"),
            other => return Err(format!("{engine:?}: a wrong manifest gave {other:?}").into()),
        }
        let good = common::WithManifest { manifest: manifest(&bad.inner, engine.weights(), false).await?, inner: bad.inner };
        engine.load(&gpu, &good, &|| false).await?;
    }
    Ok(())
}

/// A first load through the Cache API fills it; a second load whose network fails every
/// request (the server "stopped") succeeds from the cache alone, with no miss.
#[cfg(target_arch = "wasm32")]
async fn cache_offline(gpu: Gpu) -> R {
    use gllm_web::loader::{CachedSource, HttpSource};
    let base = option_env!("GLLM_MODEL_URL").unwrap_or("http://127.0.0.1:8777");
    for engine in ENGINES {
        let url = format!("{base}/{}", engine.folder());
        let name = "gllm-load-test";
        let online = CachedSource::new(HttpSource::new(&url), name);
        online.clear().await?;
        engine.load(&gpu, &online, &|| false).await?;
        let offline = CachedSource::new(common::Offline(url), name);
        engine.load(&gpu, &offline, &|| false).await?;
        log!("{engine:?}: first load {} misses, offline load {} hits / {} misses", online.misses.get(), offline.hits.get(), offline.misses.get());
        if offline.misses.get() != 0 || offline.hits.get() == 0 {
            return Err(format!("{engine:?}: the offline load missed the cache {} times", offline.misses.get()).into());
        }
        online.clear().await?;
    }
    Ok(())
}
