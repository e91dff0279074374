//! Test harness: one GPU test body runs natively (`cargo test`, on lavapipe in CI) and in
//! headless Chrome (`wasm-pack test`, on SwiftShader WebGPU in CI).
//!
//! A missing adapter is a loud failure. Only an explicit `GLLM_SKIP_GPU_TESTS=1` at build
//! time turns it into a skip, and the test then prints that it skipped.
#![allow(dead_code)]

use gllm_web::Gpu;

/// Defines GPU tests that run on both targets. Each body is an
/// `async fn(gpu: Gpu) -> Result<(), String>`.
#[macro_export]
macro_rules! gpu_tests {
    ($($name:ident => $body:ident),* $(,)?) => {
        mod gpu {
        #[allow(unused_imports)]
        use super::*;
        $(
            #[cfg(not(target_arch = "wasm32"))]
            #[test]
            fn $name() {
                let Some(gpu) = super::common::native_gpu() else { return };
                if let Err(e) = pollster::block_on(super::$body(gpu)) {
                    panic!("{}: {e}", stringify!($name));
                }
            }
            #[cfg(target_arch = "wasm32")]
            #[wasm_bindgen_test::wasm_bindgen_test]
            async fn $name() {
                let Some(gpu) = super::common::web_gpu().await else { return };
                if let Err(e) = super::$body(gpu).await {
                    panic!("{}: {e}", stringify!($name));
                }
            }
        )*
        }
    };
}

/// The same bodies as [`gpu_tests!`] on the CPU backend ([`Gpu::cpu`]), natively and in
/// the browser, in a `cpu_backend` module (`cpu_backend::NAME`). They need no adapter.
#[macro_export]
macro_rules! cpu_tests {
    ($($name:ident => $body:ident),* $(,)?) => {
        mod cpu_backend {
        #[allow(unused_imports)]
        use super::*;
        $(
            #[cfg(not(target_arch = "wasm32"))]
            #[test]
            fn $name() {
                if let Err(e) = pollster::block_on(super::$body(gllm_web::Gpu::cpu())) {
                    panic!("cpu_backend::{}: {e}", stringify!($name));
                }
            }
            #[cfg(target_arch = "wasm32")]
            #[wasm_bindgen_test::wasm_bindgen_test]
            async fn $name() {
                if let Err(e) = super::$body(gllm_web::Gpu::cpu()).await {
                    panic!("cpu_backend::{}: {e}", stringify!($name));
                }
            }
        )*
        }
    };
}

/// A device of the same kind as `gpu` of its own (a test whose readback count must not
/// include tests running beside it).
pub async fn own_device(gpu: &Gpu) -> Result<Gpu, gllm_web::Error> {
    if gpu.is_host() { Ok(Gpu::cpu()) } else { Gpu::new().await }
}

fn no_adapter(e: gllm_web::Error) -> Option<Gpu> {
    if option_env!("GLLM_SKIP_GPU_TESTS") == Some("1") {
        eprintln!("SKIPPED: no GPU adapter ({e}) and GLLM_SKIP_GPU_TESTS=1");
        None
    } else {
        panic!("no GPU adapter: {e}. Install mesa-vulkan-drivers (lavapipe) or run in a WebGPU browser; GLLM_SKIP_GPU_TESTS=1 at build time skips GPU tests");
    }
}

/// The process-wide device, acquired once.
#[cfg(not(target_arch = "wasm32"))]
pub fn native_gpu() -> Option<Gpu> {
    use std::sync::OnceLock;
    static GPU: OnceLock<Result<Gpu, String>> = OnceLock::new();
    let r = GPU.get_or_init(|| pollster::block_on(Gpu::new()).map_err(|e| e.to_string()));
    match r {
        Ok(g) => Some(g.clone()),
        Err(e) => no_adapter(gllm_web::Error::NoAdapter(e.clone())),
    }
}

#[cfg(target_arch = "wasm32")]
thread_local! {
    static WEB_GPU: std::cell::RefCell<Option<Gpu>> = const { std::cell::RefCell::new(None) };
}

/// The page's device, acquired by the first test that needs it.
#[cfg(target_arch = "wasm32")]
pub async fn web_gpu() -> Option<Gpu> {
    if let Some(g) = WEB_GPU.with(|c| c.borrow().clone()) {
        return Some(g);
    }
    match Gpu::new().await {
        Ok(g) => {
            WEB_GPU.with(|c| *c.borrow_mut() = Some(g.clone()));
            Some(g)
        }
        Err(e) => no_adapter(e),
    }
}

/// Adapter description for the adapter test. Natively it is wgpu's; in the browser
/// wgpu only maps `description`, so the WebGPU `GPUAdapterInfo` (vendor, architecture,
/// description) is read from `navigator.gpu` as well.
pub async fn adapter_description(gpu: &Gpu) -> String {
    #[cfg(target_arch = "wasm32")]
    {
        use wasm_bindgen::JsCast;
        let get = |o: &wasm_bindgen::JsValue, k: &str| js_sys::Reflect::get(o, &k.into()).unwrap_or_default();
        let nav = get(&js_sys::global(), "navigator");
        let gpu_obj = get(&nav, "gpu");
        let req: js_sys::Function = get(&gpu_obj, "requestAdapter").unchecked_into();
        let promise: js_sys::Promise = req.call0(&gpu_obj).unwrap().unchecked_into();
        let adapter = wasm_bindgen_futures::JsFuture::from(promise).await.unwrap();
        let info = get(&adapter, "info");
        let field = |k: &str| get(&info, k).as_string().unwrap_or_default();
        return format!(
            "{} | vendor={} architecture={} description={}",
            gpu.caps().adapter,
            field("vendor"),
            field("architecture"),
            field("description")
        );
    }
    #[cfg(not(target_arch = "wasm32"))]
    gpu.caps().adapter.clone()
}

/// Prints a line from a test, natively or in the browser.
#[macro_export]
macro_rules! log {
    ($($t:tt)*) => {{
        #[cfg(target_arch = "wasm32")]
        wasm_bindgen_test::console_log!($($t)*);
        #[cfg(not(target_arch = "wasm32"))]
        println!($($t)*);
    }};
}

pub type R = Result<(), Box<dyn std::error::Error>>;

/// Where test models live: `models/<name>` natively, `$GLLM_MODEL_URL/<name>` (default
/// `http://127.0.0.1:8777`, served by `scripts/serve.mjs`) in the browser.
#[cfg(not(target_arch = "wasm32"))]
pub fn model_source(name: &str) -> gllm_web::loader::FileSource {
    gllm_web::loader::FileSource::new(format!("{}/models/{name}", env!("CARGO_MANIFEST_DIR")))
}

#[cfg(target_arch = "wasm32")]
pub fn model_source(name: &str) -> gllm_web::loader::HttpSource {
    let base = option_env!("GLLM_MODEL_URL").unwrap_or("http://127.0.0.1:8777");
    gllm_web::loader::HttpSource::new(&format!("{base}/{name}"))
}

/// Serves `gllm-manifest.json` from memory and every other file from `inner`.
pub struct WithManifest<S: gllm_web::loader::Source> {
    pub inner: S,
    pub manifest: Vec<u8>,
}

const MANIFEST: &str = "gllm-manifest.json";

impl<S: gllm_web::loader::Source> gllm_web::loader::Source for WithManifest<S> {
    async fn read(&self, f: &str) -> gllm_web::Result<Vec<u8>> {
        if f == MANIFEST { Ok(self.manifest.clone()) } else { self.inner.read(f).await }
    }
    async fn read_range(&self, f: &str, offset: u64, len: u64) -> gllm_web::Result<Vec<u8>> {
        if f == MANIFEST {
            return gllm_web::loader::MemSource::new().with(MANIFEST, self.manifest.clone()).read_range(f, offset, len).await;
        }
        self.inner.read_range(f, offset, len).await
    }
    async fn len(&self, f: &str) -> gllm_web::Result<u64> {
        if f == MANIFEST { Ok(self.manifest.len() as u64) } else { self.inner.len(f).await }
    }
    fn describe(&self) -> String {
        self.inner.describe()
    }
    async fn ranged(&self, f: &str) -> gllm_web::Result<bool> {
        self.inner.ranged(f).await
    }
    async fn evict(&self, f: &str) -> gllm_web::Result<()> {
        self.inner.evict(f).await
    }
}

/// A server that stopped: every request fails.
pub struct Offline(pub String);

impl gllm_web::loader::Source for Offline {
    async fn read(&self, f: &str) -> gllm_web::Result<Vec<u8>> {
        Err(gllm_web::Error::Io { file: f.into(), msg: "server stopped".into() })
    }
    async fn read_range(&self, f: &str, _: u64, _: u64) -> gllm_web::Result<Vec<u8>> {
        Err(gllm_web::Error::Io { file: f.into(), msg: "server stopped".into() })
    }
    async fn len(&self, f: &str) -> gllm_web::Result<u64> {
        Err(gllm_web::Error::Io { file: f.into(), msg: "server stopped".into() })
    }
    fn describe(&self) -> String {
        self.0.clone()
    }
    async fn ranged(&self, f: &str) -> gllm_web::Result<bool> {
        Err(gllm_web::Error::Io { file: f.into(), msg: "server stopped".into() })
    }
}

pub fn u32s(v: &serde_json::Value) -> Vec<u32> {
    v.as_array().map(|a| a.iter().filter_map(|x| x.as_u64()).map(|x| x as u32).collect()).unwrap_or_default()
}
pub fn f32s(v: &serde_json::Value) -> Vec<f32> {
    v.as_array().map(|a| a.iter().filter_map(|x| x.as_f64()).map(|x| x as f32).collect()).unwrap_or_default()
}

/// The GGUF `file` of `models/gguf` loaded with `dtype: auto`, checked against `golden`.
pub async fn check_gguf_goldens(gpu: &Gpu, file: &str, golden: &str, greedy: usize, kv_dtype: gllm_web::KvDType) -> R {
    let opts = gllm_web::GeneratorOptions { load: gllm_web::LoadOptions { weights: Some(file.into()), ..Default::default() }, kv_dtype: Some(kv_dtype) };
    let mut g = gllm_web::Generator::load(gpu, &model_source("gguf"), opts, &|_| {}).await?;
    check_goldens_within_margins(&mut g, &format!("{file} kv {}", kv_dtype.as_str()), golden, greedy, 0.25).await
}

/// Checks a loaded generator against `golden` with the margin rule: prompt ids exact;
/// prefill top-1 equal and the top-5 logits within `logit_tol` of the golden's; greedy
/// tokens equal except at a step whose golden top-1/top-2 margin is under 0.05, where the
/// continuations may part.
pub async fn check_goldens_within_margins(g: &mut gllm_web::Generator, file: &str, golden: &str, greedy: usize, logit_tol: f32) -> R {
    let golden: serde_json::Value = serde_json::from_str(golden)?;
    let sorted = |mut v: Vec<u32>| {
        v.sort_unstable();
        v
    };
    let eos = sorted(g.eos_ids().to_vec());
    if eos != sorted(u32s(&golden["eos_token_ids"])) {
        return Err(format!("eos ids {eos:?} != golden {}", golden["eos_token_ids"]).into());
    }
    let vocab = g.vocab_size();
    for case in golden["cases"].as_array().ok_or("no cases")? {
        let name = case["name"].as_str().unwrap_or("?");
        let messages: Vec<gllm_web::ChatMessage> = match case.get("messages") {
            Some(m) => serde_json::from_value(m.clone())?,
            None => vec![],
        };
        let text = case["prompt"].as_str().unwrap_or_default().to_string();
        let prompt = if messages.is_empty() { gllm_web::Prompt::Text(&text) } else { gllm_web::Prompt::Messages(&messages) };
        let ids = g.prompt_ids(prompt)?;
        if ids != u32s(&case["input_ids"]) {
            return Err(format!("{file} {name}: prompt ids {ids:?} != golden {}", case["input_ids"]).into());
        }
        let last = g.last_logits(&ids).await?;
        let top1 = (0..vocab).max_by(|&a, &b| last[a].total_cmp(&last[b])).unwrap_or(0) as u32;
        let mut worst = 0f32;
        for (id, w) in u32s(&case["last_logits_top5_ids"]).iter().zip(f32s(&case["last_logits_top5_values"])) {
            worst = worst.max((last[*id as usize] - w).abs());
        }
        if top1 != u32s(&case["last_logits_top5_ids"])[0] || worst > logit_tol {
            return Err(format!("{file} {name}: top-1 {top1}, top-5 logits within {worst} of the golden").into());
        }
        let want = u32s(&case["greedy_new_ids"]);
        let margins = f32s(&case["greedy_top1_minus_top2_logit_per_step"]);
        let k = want.len().min(greedy);
        let out = g.generate(prompt, &gllm_web::GenerateOptions { max_new_tokens: k, ..Default::default() }).await?;
        let same = out.tokens.iter().zip(&want).take_while(|(a, b)| a == b).count();
        if same < k.min(out.tokens.len()) && margins.get(same).is_none_or(|&m| m >= 0.05) {
            return Err(format!("{file} {name}: greedy {:?} != golden {:?} at step {same} (margin {:?})", out.tokens, &want[..k], margins.get(same)).into());
        }
        let exempt: Vec<String> = margins.iter().take(k).enumerate().filter(|(_, &m)| m < 0.05).map(|(i, m)| format!("{i}: {m:.4}")).collect();
        log!(
            "{file} {name}: {} prompt ids equal, prefill top-5 within {worst:.4}, {same} of {k} greedy tokens equal the golden (steps under the 0.05 margin: [{}]): {:?}",
            ids.len(),
            exempt.join(", "),
            out.text
        );
    }
    Ok(())
}

