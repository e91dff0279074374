//! The streaming loader: planning, concurrency, conversion while streaming, retries,
//! servers without Range, truncated files and abort. Sources are wrapped so every read
//! yields once (as a network read would), which lets the loader's concurrent requests
//! overlap on both targets.

mod common;

use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

use gllm_web::loader::safetensors::{serialize, to_f32, StDType};
use gllm_web::loader::stream::plan;
use gllm_web::loader::{stream_safetensors, MemSource, SafetensorsFile, Source, StreamOptions};
use gllm_web::reference::rng::Rng;
use gllm_web::{Error, Gpu};

#[cfg(target_arch = "wasm32")]
wasm_bindgen_test::wasm_bindgen_test_configure!(run_in_browser);

gpu_tests! {
    stream_real_checkpoint_concurrently => stream_real_checkpoint_concurrently,
    stream_converts_and_splits => stream_converts_and_splits,
    stream_retries_failed_chunks => stream_retries_failed_chunks,
    stream_reports_range_after_retries => stream_reports_range_after_retries,
    stream_without_range_support => stream_without_range_support,
    stream_truncated_file_is_an_error => stream_truncated_file_is_an_error,
    stream_abort_frees_uploads => stream_abort_frees_uploads,
}

type R = Result<(), String>;

/// Returns `Pending` once (waking itself), like a read that completes later.
struct YieldOnce(bool);
impl Future for YieldOnce {
    type Output = ();
    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        if self.0 {
            Poll::Ready(())
        } else {
            self.0 = true;
            cx.waker().wake_by_ref();
            Poll::Pending
        }
    }
}

/// A source wrapper with observable concurrency and injectable faults.
struct TestSource<S: Source> {
    inner: S,
    in_flight: Cell<usize>,
    max_in_flight: Cell<usize>,
    reads: Cell<usize>,
    /// Range starts whose first read fails.
    fail_once: RefCell<Vec<u64>>,
    /// A range start whose reads always fail.
    fail_always: Option<u64>,
    /// Reports `ranged() == false` (a server that ignores Range).
    no_ranges: bool,
    /// Bytes past this offset do not exist (a truncated file whose length is still reported whole).
    truncate_at: Option<u64>,
}

impl<S: Source> TestSource<S> {
    fn new(inner: S) -> Self {
        Self {
            inner,
            in_flight: Cell::new(0),
            max_in_flight: Cell::new(0),
            reads: Cell::new(0),
            fail_once: RefCell::new(Vec::new()),
            fail_always: None,
            no_ranges: false,
            truncate_at: None,
        }
    }
}

impl<S: Source> Source for TestSource<S> {
    async fn read(&self, file: &str) -> gllm_web::Result<Vec<u8>> {
        self.inner.read(file).await
    }
    async fn read_range(&self, file: &str, offset: u64, len: u64) -> gllm_web::Result<Vec<u8>> {
        self.reads.set(self.reads.get() + 1);
        self.in_flight.set(self.in_flight.get() + 1);
        self.max_in_flight.set(self.max_in_flight.get().max(self.in_flight.get()));
        YieldOnce(false).await;
        self.in_flight.set(self.in_flight.get() - 1);
        let injected = |msg: &str| Error::Io { file: file.into(), msg: format!("injected: {msg}") };
        if self.fail_always == Some(offset) {
            return Err(injected("connection reset"));
        }
        let dropped = {
            let mut once = self.fail_once.borrow_mut();
            once.iter().position(|&o| o == offset).map(|i| once.remove(i)).is_some()
        };
        if dropped {
            return Err(injected("dropped connection"));
        }
        if let Some(t) = self.truncate_at {
            if offset + len > t {
                let keep = t.saturating_sub(offset);
                return Ok(self.inner.read_range(file, offset, keep).await?);
            }
        }
        self.inner.read_range(file, offset, len).await
    }
    async fn len(&self, file: &str) -> gllm_web::Result<u64> {
        self.inner.len(file).await
    }
    fn describe(&self) -> String {
        format!("test({})", self.inner.describe())
    }
    async fn ranged(&self, _file: &str) -> gllm_web::Result<bool> {
        Ok(!self.no_ranges)
    }
    async fn read_sequential(
        &self,
        file: &str,
        offset: u64,
        sink: &mut dyn FnMut(&[u8]) -> gllm_web::Result<bool>,
    ) -> gllm_web::Result<()> {
        // One "response": the file from `offset`, arriving in 1000-byte pieces.
        self.reads.set(self.reads.get() + 1);
        let len = self.truncate_at.unwrap_or(self.inner.len(file).await?);
        let body = self.inner.read_range(file, offset, len - offset).await?;
        for piece in body.chunks(1000) {
            YieldOnce(false).await;
            if !sink(piece)? {
                break;
            }
        }
        Ok(())
    }
}

fn e(e: Error) -> String {
    e.to_string()
}

/// A small checkpoint with every float dtype, odd sizes (tensors start at 2 mod 4) and an
/// integer tensor that is not uploaded.
fn synthetic() -> (MemSource, Vec<(String, StDType, Vec<usize>, Vec<u8>)>) {
    let mut rng = Rng::new(9);
    let mut t: Vec<(String, StDType, Vec<usize>, Vec<u8>)> = Vec::new();
    let f32s = |v: Vec<f32>| v.iter().flat_map(|x| x.to_le_bytes()).collect::<Vec<u8>>();
    t.push(("a.f16".into(), StDType::F16, vec![7], rng.vec(7, 2.0).iter().flat_map(|x| half::f16::from_f32(*x).to_le_bytes()).collect()));
    t.push(("b.bf16".into(), StDType::BF16, vec![3, 11], rng.vec(33, 2.0).iter().flat_map(|x| half::bf16::from_f32(*x).to_le_bytes()).collect()));
    t.push(("c.ids".into(), StDType::I64, vec![2], [5i64, 6].iter().flat_map(|x| x.to_le_bytes()).collect()));
    t.push(("d.f32".into(), StDType::F32, vec![5, 13], f32s(rng.vec(65, 1.0))));
    t.push(("e.f32".into(), StDType::F32, vec![1], f32s(vec![0.25])));
    let refs: Vec<(&str, StDType, &[usize], &[u8])> = t.iter().map(|(n, d, s, b)| (n.as_str(), *d, s.as_slice(), b.as_slice())).collect();
    (MemSource::new().with("model.safetensors", serialize(&refs)), t)
}

/// Every float tensor of `want` read back equals its bytes converted on the CPU.
async fn check_tensors(gpu: &Gpu, got: &HashMap<String, gllm_web::GpuTensor>, want: &[(String, StDType, Vec<usize>, Vec<u8>)]) -> R {
    for (name, dtype, shape, bytes) in want {
        if *dtype == StDType::I64 {
            if got.contains_key(name) {
                return Err(format!("{name}: integer tensor uploaded"));
            }
            continue;
        }
        let t = got.get(name).ok_or(format!("{name} missing"))?;
        if t.shape() != shape.as_slice() {
            return Err(format!("{name}: shape {:?}", t.shape()));
        }
        let g = gpu.readback_f32(t).await.map_err(e)?;
        if g != to_f32(name, *dtype, bytes).map_err(e)? {
            return Err(format!("{name}: streamed values differ from the file"));
        }
    }
    Ok(())
}

#[cfg(not(target_arch = "wasm32"))]
#[test]
fn plan_covers_every_byte_once() {
    let (src, tensors) = synthetic();
    let st = pollster::block_on(SafetensorsFile::read(&src, "model.safetensors")).unwrap();
    for chunk in [16, 32, 48, 1 << 20] {
        let reqs = plan(&st, chunk).unwrap();
        let mut covered: HashMap<&str, Vec<(u64, u64)>> = HashMap::new();
        for r in &reqs {
            assert!(r.len <= chunk.max(16), "request of {} bytes > chunk {chunk}", r.len);
            let mut at = 0;
            for p in &r.pieces {
                assert_eq!(p.offset_in_request, at, "pieces are contiguous in the request");
                assert_eq!(p.src_offset_in_tensor % 16, 0, "pieces start on 16-byte multiples");
                at += p.len;
                covered.entry(p.tensor.as_str()).or_default().push((p.src_offset_in_tensor, p.len));
            }
            assert_eq!(at, r.len);
        }
        for (name, dtype, _, bytes) in &tensors {
            let got = covered.remove(name.as_str()).unwrap_or_default();
            if *dtype == StDType::I64 {
                assert!(got.is_empty(), "{name} planned");
                continue;
            }
            let mut at = 0;
            for (off, len) in got {
                assert_eq!(off, at, "{name}: gap or overlap at {off}");
                at += len;
            }
            assert_eq!(at, bytes.len() as u64, "{name}: covered {at} of {} bytes", bytes.len());
        }
    }
    assert!(plan(&st, 8).is_err(), "a chunk below 16 bytes is an error");
}

async fn stream_real_checkpoint_concurrently(gpu: Gpu) -> R {
    let src = TestSource::new(common::model_source("all-MiniLM-L6-v2"));
    let st = SafetensorsFile::read(&src.inner, "model.safetensors").await.map_err(e)?;
    let opts = StreamOptions { chunk_size: 4 << 20, concurrency: 4, retries: 0 };
    let w = stream_safetensors(&gpu, &src, &st, opts, &|_| {}, &|| false).await.map_err(e)?;
    log!(
        "stream all-MiniLM-L6-v2: {} tensors, {} requests, max in flight {} (source saw {})",
        w.tensors.len(),
        w.requests_sent,
        w.max_in_flight,
        src.max_in_flight.get()
    );
    if w.max_in_flight != 4 || src.max_in_flight.get() != 4 {
        return Err(format!("expected 4 requests in flight, loader saw {}, source {}", w.max_in_flight, src.max_in_flight.get()));
    }
    // Bit-identical to the file, tensor by tensor (a few large and small ones).
    for name in ["embeddings.word_embeddings.weight", "encoder.layer.5.output.dense.weight", "encoder.layer.0.attention.self.query.bias", "pooler.dense.bias"] {
        let info = st.get(name).map_err(e)?;
        let bytes = src.inner.read_range("model.safetensors", info.start, info.end - info.start).await.map_err(e)?;
        let got = gpu.readback_f32(&w.tensors[name]).await.map_err(e)?;
        if got != to_f32(name, info.dtype, &bytes).map_err(e)? {
            return Err(format!("{name} differs"));
        }
    }
    if w.tensors.contains_key("embeddings.position_ids") {
        return Err("integer position_ids uploaded".into());
    }
    Ok(())
}

async fn stream_converts_and_splits(gpu: Gpu) -> R {
    let (mem, want) = synthetic();
    let src = TestSource::new(mem);
    let st = SafetensorsFile::read(&src, "model.safetensors").await.map_err(e)?;
    let opts = StreamOptions { chunk_size: 32, concurrency: 3, retries: 0 };
    let w = stream_safetensors(&gpu, &src, &st, opts, &|_| {}, &|| false).await.map_err(e)?;
    check_tensors(&gpu, &w.tensors, &want).await?;
    if w.max_in_flight != 3 {
        return Err(format!("max in flight {}", w.max_in_flight));
    }
    Ok(())
}

async fn stream_retries_failed_chunks(gpu: Gpu) -> R {
    let (mem, want) = synthetic();
    let src = TestSource::new(mem);
    let st = SafetensorsFile::read(&src, "model.safetensors").await.map_err(e)?;
    let reqs = plan(&st, 32).map_err(e)?;
    // Drop the connection of two chunks once each.
    *src.fail_once.borrow_mut() = vec![reqs[1].start, reqs[reqs.len() - 1].start];
    let opts = StreamOptions { chunk_size: 32, concurrency: 2, retries: 2 };
    let w = stream_safetensors(&gpu, &src, &st, opts, &|_| {}, &|| false).await.map_err(e)?;
    check_tensors(&gpu, &w.tensors, &want).await?;
    if w.requests_sent != reqs.len() + 2 {
        return Err(format!("{} requests for {} chunks and 2 failures", w.requests_sent, reqs.len()));
    }
    Ok(())
}

async fn stream_reports_range_after_retries(gpu: Gpu) -> R {
    let (mem, _) = synthetic();
    let mut src = TestSource::new(mem);
    let st = SafetensorsFile::read(&src, "model.safetensors").await.map_err(e)?;
    let reqs = plan(&st, 32).map_err(e)?;
    let bad = &reqs[2];
    src.fail_always = Some(bad.start);
    let opts = StreamOptions { chunk_size: 32, concurrency: 2, retries: 2 };
    match stream_safetensors(&gpu, &src, &st, opts, &|_| {}, &|| false).await {
        Ok(_) => Err("a chunk that always fails did not fail the load".into()),
        Err(err) => {
            let msg = err.to_string();
            log!("failing chunk: {msg}");
            let range = format!("bytes {}-{}", bad.start, bad.start + bad.len - 1);
            if msg.contains("model.safetensors") && msg.contains(&range) && msg.contains("3 attempts") {
                Ok(())
            } else {
                Err(format!("error does not name the file, {range} and the attempts: {msg}"))
            }
        }
    }
}

async fn stream_without_range_support(gpu: Gpu) -> R {
    let (mem, want) = synthetic();
    let mut src = TestSource::new(mem);
    src.no_ranges = true;
    let st = SafetensorsFile::read(&src, "model.safetensors").await.map_err(e)?;
    src.reads.set(0); // the header's two reads are not the stream's
    let opts = StreamOptions { chunk_size: 32, concurrency: 4, retries: 0 };
    let w = stream_safetensors(&gpu, &src, &st, opts, &|_| {}, &|| false).await.map_err(e)?;
    check_tensors(&gpu, &w.tensors, &want).await?;
    if src.reads.get() != 1 {
        return Err(format!("{} reads; a server without Range must be read once", src.reads.get()));
    }
    Ok(())
}

async fn stream_truncated_file_is_an_error(gpu: Gpu) -> R {
    let (mem, _) = synthetic();
    let len = mem.len("model.safetensors").await.map_err(e)?;
    for no_ranges in [false, true] {
        let mut src = TestSource::new(mem.clone());
        src.truncate_at = Some(len - 10);
        src.no_ranges = no_ranges;
        let st = SafetensorsFile::read(&src, "model.safetensors").await.map_err(e)?;
        let opts = StreamOptions { chunk_size: 32, concurrency: 2, retries: 1 };
        match stream_safetensors(&gpu, &src, &st, opts, &|_| {}, &|| false).await {
            Ok(_) => return Err(format!("truncated file loaded (no_ranges {no_ranges})")),
            Err(err @ Error::Io { .. }) => log!("truncated (no_ranges {no_ranges}): {err}"),
            Err(other) => return Err(format!("unexpected error {other}")),
        }
    }
    Ok(())
}

async fn stream_abort_frees_uploads(_shared: Gpu) -> R {
    // Its own device, so the pool's free bytes are this test's alone.
    let gpu = Gpu::new().await.map_err(e)?;
    let (mem, _) = synthetic();
    let src = TestSource::new(mem);
    let st = SafetensorsFile::read(&src, "model.safetensors").await.map_err(e)?;
    let before = gpu.stats().pooled_free_bytes;
    let opts = StreamOptions { chunk_size: 32, concurrency: 2, retries: 0 };
    let n = Cell::new(0);
    let abort = || {
        n.set(n.get() + 1);
        n.get() > 3
    };
    match stream_safetensors(&gpu, &src, &st, opts, &|_| {}, &abort).await {
        Err(Error::Aborted) => {}
        Err(other) => return Err(format!("expected Aborted, got {other}")),
        Ok(_) => return Err("abort ignored".into()),
    }
    let after = gpu.stats().pooled_free_bytes;
    log!("abort: pooled free bytes {before} -> {after}");
    if after <= before {
        return Err("the aborted load's tensors were not released".into());
    }
    // The loader is usable afterwards.
    let w = stream_safetensors(&gpu, &src, &st, opts, &|_| {}, &|| false).await.map_err(e)?;
    if w.tensors.len() != 4 {
        return Err(format!("{} tensors after abort", w.tensors.len()));
    }
    Ok(())
}

/// Browser only: the real `HttpSource` against `scripts/serve.mjs` and its test hooks.
#[cfg(target_arch = "wasm32")]
#[wasm_bindgen_test::wasm_bindgen_test]
async fn http_streaming_against_the_test_server() {
    if let Err(msg) = http_streaming().await {
        panic!("http_streaming_against_the_test_server: {msg}");
    }
}

#[cfg(target_arch = "wasm32")]
async fn http_streaming() -> R {
    use gllm_web::engine::{EmbedOptions, Embedder};
    use gllm_web::loader::HttpSource;
    let Some(gpu) = common::web_gpu().await else { return Ok(()) };
    let base = option_env!("GLLM_MODEL_URL").unwrap_or("http://127.0.0.1:8777");
    let server = HttpSource::new(base);
    let stats = || async {
        let b = server.read("_stats").await.map_err(e)?;
        serde_json::from_slice::<serde_json::Value>(&b).map_err(|x| x.to_string())
    };
    server.read("_stats/reset").await.map_err(e)?;
    let texts = ["streamed into GPU buffers", "a second sentence"];
    let opts = EmbedOptions { stream: Some(StreamOptions { chunk_size: 4 << 20, concurrency: 6, retries: 3 }), ..Default::default() };
    let load = |prefix: &'static str| {
        let gpu = gpu.clone();
        let opts = opts.clone();
        async move {
            let src = HttpSource::new(&format!("{base}/{prefix}all-MiniLM-L6-v2"));
            Embedder::load(&gpu, &src, opts, &|_| {}).await
        }
    };
    let v0 = load("").await.map_err(e)?.embed(&texts).await.map_err(e)?;
    let s = stats().await?;
    log!("server saw {s} while streaming all-MiniLM-L6-v2");
    let max = s["maxInFlight"].as_u64().unwrap_or(0);
    if max < 2 {
        return Err(format!("the server saw at most {max} concurrent range requests"));
    }
    for prefix in ["_norange/", "_flaky/"] {
        let v = load(prefix).await.map_err(e)?.embed(&texts).await.map_err(e)?;
        if v.data != v0.data {
            return Err(format!("{prefix}: embeddings differ from the streamed load"));
        }
        log!("{prefix}: identical embeddings");
    }
    match load("_truncated/").await {
        Ok(_) => return Err("a truncated file loaded".into()),
        Err(err) => log!("truncated: {err}"),
    }
    // Browser cache: a first load fills it; a second load whose network source fails every
    // request (the server "stopped") still succeeds, from the cache alone.
    {
        use gllm_web::loader::CachedSource;
        struct Dead(String);
        impl Source for Dead {
            async fn read(&self, f: &str) -> gllm_web::Result<Vec<u8>> {
                Err(Error::Io { file: f.into(), msg: "server stopped".into() })
            }
            async fn read_range(&self, f: &str, _: u64, _: u64) -> gllm_web::Result<Vec<u8>> {
                Err(Error::Io { file: f.into(), msg: "server stopped".into() })
            }
            async fn len(&self, f: &str) -> gllm_web::Result<u64> {
                Err(Error::Io { file: f.into(), msg: "server stopped".into() })
            }
            fn describe(&self) -> String {
                self.0.clone()
            }
            async fn ranged(&self, f: &str) -> gllm_web::Result<bool> {
                Err(Error::Io { file: f.into(), msg: "server stopped".into() })
            }
        }
        let url = format!("{base}/all-MiniLM-L6-v2");
        let name = "gllm-stream-test";
        let first = CachedSource::new(HttpSource::new(&url), name);
        first.clear().await.map_err(e)?;
        let v1 = Embedder::load(&gpu, &first, opts.clone(), &|_| {}).await.map_err(e)?.embed(&texts).await.map_err(e)?;
        let offline = CachedSource::new(Dead(url.clone()), name);
        let v2 = Embedder::load(&gpu, &offline, opts.clone(), &|_| {}).await.map_err(e)?.embed(&texts).await.map_err(e)?;
        log!(
            "cache: first load {} misses / {} hits, second load {} misses / {} hits",
            first.misses.get(),
            first.hits.get(),
            offline.misses.get(),
            offline.hits.get()
        );
        if v1.data != v0.data || v2.data != v0.data {
            return Err("cached loads give different embeddings".into());
        }
        if offline.misses.get() != 0 {
            return Err(format!("second load missed the cache {} times", offline.misses.get()));
        }
        first.clear().await.map_err(e)?;
    }
    let calls = Cell::new(0);
    let abort = || {
        calls.set(calls.get() + 1);
        calls.get() > 2
    };
    let src = HttpSource::new(&format!("{base}/all-MiniLM-L6-v2"));
    match Embedder::load_with_abort(&gpu, &src, opts.clone(), &|_| {}, &abort).await {
        Err(Error::Aborted) => log!("abort: Error::Aborted"),
        Err(other) => return Err(format!("abort gave {other}")),
        Ok(_) => return Err("abort ignored".into()),
    }
    Ok(())
}

/// Browser only, opt-in (needs the 1.26 GB Qwen2.5-Coder-0.5B F16 folder, fetched with
/// `GLLM_FETCH_QWEN=1 scripts/fetch-models.sh`): streams it into GPU buffers and checks that
/// the wasm heap grows by less than 128 MiB. Run:
/// `GLLM_MODEL_URL=http://127.0.0.1:PORT wasm-pack test --headless --chrome --test stream -- --include-ignored big_model`
#[cfg(target_arch = "wasm32")]
#[wasm_bindgen_test::wasm_bindgen_test]
#[ignore]
async fn big_model_heap_stays_bounded() {
    use gllm_web::loader::HttpSource;
    use wasm_bindgen::JsCast;
    let heap = || {
        let mem: js_sys::WebAssembly::Memory = wasm_bindgen::memory().unchecked_into();
        mem.buffer().unchecked_into::<js_sys::ArrayBuffer>().byte_length() as f64
    };
    let gpu = common::web_gpu().await.expect("gpu");
    let base = option_env!("GLLM_MODEL_URL").unwrap_or("http://127.0.0.1:8777");
    let src = HttpSource::new(&format!("{base}/qwen2.5-coder-0.5b-instruct"));
    let st = SafetensorsFile::read(&src, "model.safetensors").await.expect("header");
    let bytes: u64 = st.tensors.values().map(|t| t.end - t.start).sum();
    let before = heap();
    let t0 = js_sys::Date::now();
    let w = stream_safetensors(&gpu, &src, &st, StreamOptions::default(), &|_| {}, &|| false).await.expect("stream");
    gpu.sync().await.expect("sync");
    let secs = (js_sys::Date::now() - t0) / 1000.0;
    let after = heap();
    let growth = (after - before) / (1 << 20) as f64;
    log!(
        "qwen2.5-coder-0.5b: {:.0} MB in {} tensors streamed in {secs:.1} s ({:.0} MB/s), {} requests, max in flight {}; wasm memory {:.0} -> {:.0} MiB (growth {growth:.1} MiB)",
        bytes as f64 / 1e6,
        w.tensors.len(),
        bytes as f64 / 1e6 / secs,
        w.requests_sent,
        w.max_in_flight,
        before / (1 << 20) as f64,
        after / (1 << 20) as f64
    );
    assert!(growth < 128.0, "wasm memory grew by {growth:.1} MiB");
}
