//! The streaming loader: planning, concurrency, conversion while streaming, retries,
//! servers without Range, truncated files and abort; sharded checkpoints (an index and its
//! shards) and `gllm-manifest.json` SHA-256 checks. Sources are wrapped so every read
//! yields once (as a network read would), which lets the loader's concurrent requests
//! overlap on both targets.

mod common;

use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

use gllm_web::loader::checkpoint::{MANIFEST, WEIGHTS, WEIGHTS_INDEX};
use gllm_web::loader::safetensors::{serialize, to_f32, StDType};
use gllm_web::loader::sha256::{self, Sha256};
use gllm_web::loader::stream::plan;
use gllm_web::loader::{
    stream_safetensors, stream_weights, Checkpoint, Manifest, MemSource, Progress, SafetensorsFile, Source, StreamOptions, Targets,
    Weights,
};
use gllm_web::nn::load_weights;
use gllm_web::kernels::quant::QMatrix;
use gllm_web::quant::QuantFormat;
use gllm_web::reference::rng::Rng;
use gllm_web::{EmbedOptions, Embedder, Error, Gpu, LoadDType};

#[cfg(target_arch = "wasm32")]
wasm_bindgen_test::wasm_bindgen_test_configure!(run_in_browser);

gpu_tests! {
    stream_real_checkpoint_concurrently => stream_real_checkpoint_concurrently,
    stream_quantizes_as_tensors_arrive => stream_quantizes_as_tensors_arrive,
    stream_converts_and_splits => stream_converts_and_splits,
    stream_retries_failed_chunks => stream_retries_failed_chunks,
    stream_reports_range_after_retries => stream_reports_range_after_retries,
    stream_without_range_support => stream_without_range_support,
    stream_truncated_file_is_an_error => stream_truncated_file_is_an_error,
    stream_abort_frees_uploads => stream_abort_frees_uploads,
    sharded_checkpoint_equals_single_file => sharded_checkpoint_equals_single_file,
    manifest_checks_streamed_files => manifest_checks_streamed_files,
    manifest_checks_real_model => manifest_checks_real_model,
    sharded_generator_equals_single_file => sharded_generator_equals_single_file,
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
    /// Reads take 1–4 polls depending on their offset, so they complete out of order.
    jitter: bool,
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
            jitter: false,
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
        let polls = if self.jitter { 1 + (offset / 16 * 7 % 4) } else { 1 };
        for _ in 0..polls {
            YieldOnce(false).await;
        }
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
    let opts = StreamOptions { chunk_size: 4 << 20, concurrency: 4, retries: 0, ..Default::default() };
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

/// Quantize-on-load while streaming: each linear weight is quantized as soon as it has
/// arrived and its F32 copy freed, so the F32 copies alive at once stay a small part of the
/// model's; the blocks equal a quantization of the streamed F32 weights, byte for byte.
async fn stream_quantizes_as_tensors_arrive(gpu: Gpu) -> R {
    let src = TestSource::new(common::model_source("all-MiniLM-L6-v2"));
    let st = SafetensorsFile::read(&src.inner, "model.safetensors").await.map_err(e)?;
    let opts = StreamOptions { chunk_size: 1 << 20, concurrency: 2, retries: 0 };
    let ck = Weights::Safetensors(Checkpoint::single(st.clone()));
    let (dtype, roles) = (LoadDType::Quant(QuantFormat::Q8_0), gllm_web::models::bert::WEIGHT_ROLES);
    let w = load_weights(&gpu, &src, &ck, dtype, roles, opts, &|_| {}, &|| false).await.map_err(e)?;
    let linear: Vec<&String> = st.tensors.keys().filter(|n| gllm_web::models::bert::is_linear_weight(n)).collect();
    let f32_bytes: u64 = linear.iter().map(|n| st.tensors[*n].shape.iter().product::<usize>() as u64 * 4).sum();
    log!(
        "stream + q8_0: {} matrices quantized as they arrived, {} tensors kept F32; F32 staging peak {:.2} MB of {:.2} MB",
        w.blocks.len(),
        w.tensors.len(),
        w.max_staging_bytes as f64 / 1e6,
        f32_bytes as f64 / 1e6
    );
    if w.blocks.len() != linear.len() || linear.iter().any(|n| w.tensors.contains_key(*n)) {
        return Err(format!("{} of {} linear weights quantized", w.blocks.len(), linear.len()));
    }
    // 2 requests of 1 MiB in flight touch a few matrices of 0.59–2.36 MB at a time.
    if w.max_staging_bytes == 0 || w.max_staging_bytes * 4 > f32_bytes {
        return Err(format!("F32 staging peaked at {} of {} bytes", w.max_staging_bytes, f32_bytes));
    }
    // The same blocks as quantizing the F32 weights afterwards (CPU reference quantizer, which
    // the GPU one equals bit for bit: tests/quant.rs).
    for name in ["encoder.layer.0.attention.self.query.weight", "encoder.layer.5.output.dense.weight"] {
        let info = st.get(name).map_err(e)?;
        let bytes = src.inner.read_range("model.safetensors", info.start, info.end - info.start).await.map_err(e)?;
        let v = to_f32(name, info.dtype, &bytes).map_err(e)?;
        let want = QMatrix::quantize(&gpu, QuantFormat::Q8_0, info.shape[0], info.shape[1], &v).map_err(e)?;
        let got = &w.blocks[name];
        if gpu.readback_u32(&got.body).await.map_err(e)? != gpu.readback_u32(want.body()).await.map_err(e)?
            || gpu.readback_u32(&got.scales).await.map_err(e)? != gpu.readback_u32(want.scales()).await.map_err(e)?
        {
            return Err(format!("{name}: blocks differ from quantizing the F32 weights"));
        }
    }
    Ok(())
}

async fn stream_converts_and_splits(gpu: Gpu) -> R {
    let (mem, want) = synthetic();
    let src = TestSource::new(mem);
    let st = SafetensorsFile::read(&src, "model.safetensors").await.map_err(e)?;
    let opts = StreamOptions { chunk_size: 32, concurrency: 3, retries: 0, ..Default::default() };
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
    let opts = StreamOptions { chunk_size: 32, concurrency: 2, retries: 2, ..Default::default() };
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
    let opts = StreamOptions { chunk_size: 32, concurrency: 2, retries: 2, ..Default::default() };
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
    let opts = StreamOptions { chunk_size: 32, concurrency: 4, retries: 0, ..Default::default() };
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
        let opts = StreamOptions { chunk_size: 32, concurrency: 2, retries: 1, ..Default::default() };
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
    let opts = StreamOptions { chunk_size: 32, concurrency: 2, retries: 0, ..Default::default() };
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

// ---- sharded checkpoints and the sha256 manifest ------------------------------------

/// Files of all-MiniLM-L6-v2 an `Embedder` reads.
const MINILM_FILES: &[&str] =
    &["config.json", "tokenizer.json", "modules.json", "1_Pooling/config.json", "sentence_bert_config.json", "model.safetensors"];

/// The files of `names` that exist in `src`, copied into memory.
async fn copy_files<S: Source>(src: &S, names: &[&str]) -> Result<MemSource, String> {
    let mut mem = MemSource::new();
    for n in names {
        match src.read(n).await {
            Ok(b) => {
                mem.files.insert(n.to_string(), b);
            }
            Err(Error::NotFound { .. }) => {}
            Err(x) => return Err(e(x)),
        }
    }
    Ok(mem)
}

/// An HF index over `(tensor, shard)` pairs, written by hand so a test can repeat a key.
fn index_json(map: &[(String, String)]) -> Vec<u8> {
    let q = |s: &str| serde_json::to_string(s).unwrap_or_default();
    let body: Vec<String> = map.iter().map(|(t, f)| format!("{}: {}", q(t), q(f))).collect();
    format!("{{\"metadata\": {{\"total_size\": 0}}, \"weight_map\": {{{}}}}}", body.join(", ")).into_bytes()
}

/// Splits `model.safetensors` of `mem` into `parts` shards of consecutive tensors (file
/// order), each re-serialised as a safetensors file, adds the index and removes the single
/// file. Returns the shard names and the index's (tensor, shard) pairs.
async fn shard_into(mem: &mut MemSource, parts: usize) -> Result<(Vec<String>, Vec<(String, String)>), String> {
    let st = SafetensorsFile::read(&*mem, WEIGHTS).await.map_err(e)?;
    let mut ts: Vec<_> = st.tensors.iter().collect();
    ts.sort_by_key(|(_, t)| t.start);
    let per = ts.len().div_ceil(parts);
    let (mut names, mut map) = (Vec::new(), Vec::new());
    for (k, group) in ts.chunks(per).enumerate() {
        let name = format!("model-{:05}-of-{:05}.safetensors", k + 1, parts);
        let mut owned = Vec::new();
        for (n, t) in group {
            let b = mem.read_range(WEIGHTS, t.start, t.end - t.start).await.map_err(e)?;
            owned.push((n.to_string(), t.dtype, t.shape.clone(), b));
            map.push((n.to_string(), name.clone()));
        }
        let refs: Vec<(&str, StDType, &[usize], &[u8])> =
            owned.iter().map(|(n, d, s, b)| (n.as_str(), *d, s.as_slice(), b.as_slice())).collect();
        mem.files.insert(name.clone(), serialize(&refs));
        names.push(name);
    }
    mem.files.insert(WEIGHTS_INDEX.into(), index_json(&map));
    mem.files.remove(WEIGHTS);
    Ok((names, map))
}

/// A `gllm-manifest.json` for `files` of `mem`, digests from the `sha2` crate.
fn manifest_for(mem: &MemSource, files: &[&str]) -> Vec<u8> {
    use sha2::Digest;
    let mut m = serde_json::Map::new();
    for f in files {
        let b = mem.files.get(*f).map(Vec::as_slice).unwrap_or_default();
        let d: [u8; 32] = sha2::Sha256::digest(b).into();
        m.insert(f.to_string(), serde_json::json!({ "sha256": sha256::to_hex(&d), "size": b.len() }));
    }
    serde_json::to_vec(&serde_json::json!({ "files": m })).unwrap_or_default()
}

/// `manifest` with every digest's first hex digit changed (`hash`) or every size one more.
fn tampered(manifest: &[u8], hash: bool) -> Vec<u8> {
    let mut v: serde_json::Value = serde_json::from_slice(manifest).unwrap_or_default();
    if let Some(files) = v["files"].as_object_mut() {
        for f in files.values_mut() {
            if hash {
                let h = f["sha256"].as_str().unwrap_or_default().to_string();
                let first = if h.starts_with('0') { "1" } else { "0" };
                f["sha256"] = format!("{first}{}", &h[1..]).into();
            } else {
                f["size"] = (f["size"].as_u64().unwrap_or(0) + 1).into();
            }
        }
    }
    serde_json::to_vec(&v).unwrap_or_default()
}

fn expect_integrity<T>(what: &str, r: gllm_web::Result<T>, needle: &str) -> R {
    match r {
        Err(err @ Error::Integrity { .. }) if err.to_string().contains(needle) => {
            log!("{what}: {err}");
            Ok(())
        }
        Err(other) => Err(format!("{what}: expected an integrity error naming {needle}, got {other}")),
        Ok(_) => Err(format!("{what}: loaded")),
    }
}

#[cfg_attr(not(target_arch = "wasm32"), test)]
#[cfg_attr(target_arch = "wasm32", wasm_bindgen_test::wasm_bindgen_test)]
fn sha256_matches_nist_vectors() {
    let hex = |d: [u8; 32]| sha256::to_hex(&d);
    // FIPS 180-4 examples (NIST CSRC "SHA256.pdf", "SHA2_Additional.pdf").
    assert_eq!(hex(Sha256::digest(b"abc")), "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
    assert_eq!(hex(Sha256::digest(b"")), "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
    assert_eq!(
        hex(Sha256::digest(b"abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq")),
        "248d6a61d20638b8e5c026930c3e6039a33ce45964ff2167f6ecedd419db06c1"
    );
    let mut h = Sha256::new();
    for _ in 0..1000 {
        h.update(&[b'a'; 1000]);
    }
    assert_eq!(hex(h.finalize()), "cdc76e5c9914fb9281a1c7e284d73e67f1809a48a497200e046d39ccc7112cd0");
    // Every length around the block and padding boundaries, fed in uneven pieces, against `sha2`.
    use sha2::Digest;
    let data: Vec<u8> = (0..1000u32).map(|i| (i.wrapping_mul(2654435761) >> 13) as u8).collect();
    for n in (0..200).chain([511, 512, 513, 999, 1000]) {
        let mut h = Sha256::new();
        let mut at = 0;
        for step in [1, 3, 64, 7, 130].iter().cycle() {
            if at >= n {
                break;
            }
            let end = (at + step).min(n);
            h.update(&data[at..end]);
            at = end;
        }
        let want: [u8; 32] = sha2::Sha256::digest(&data[..n]).into();
        assert_eq!(h.finalize(), want, "{n} bytes");
    }
    assert_eq!(sha256::from_hex(&"AB".repeat(32)), Some([0xab; 32]));
    assert_eq!(sha256::from_hex(&"g".repeat(64)), None);
    assert_eq!(sha256::from_hex("abc"), None);
}

#[cfg(not(target_arch = "wasm32"))]
#[test]
fn plan_file_covers_the_data_region() {
    let (src, _) = synthetic();
    let st = pollster::block_on(SafetensorsFile::read(&src, "model.safetensors")).unwrap();
    for chunk in [16, 32, 48, 1 << 20] {
        let reqs = gllm_web::loader::stream::plan_file(&st, chunk).unwrap();
        let mut at = st.data_start;
        for r in &reqs {
            assert_eq!(r.start, at, "requests are contiguous");
            assert!(r.len <= chunk && r.len > 0);
            at += r.len;
        }
        assert_eq!(at, st.file_len, "the plan ends at the end of the file");
        // The same tensor pieces as the float-only plan.
        let pieces = |rs: &[gllm_web::loader::stream::Request]| {
            let mut v: Vec<(String, u64, u64)> =
                rs.iter().flat_map(|r| r.pieces.iter().map(|p| (p.tensor.clone(), p.src_offset_in_tensor, p.len))).collect();
            v.sort();
            v
        };
        assert_eq!(pieces(&reqs), pieces(&plan(&st, chunk).unwrap()), "chunk {chunk}");
    }
}

#[cfg(not(target_arch = "wasm32"))]
#[test]
fn bad_index_is_a_typed_error() {
    let (mut good, _) = synthetic();
    let (names, map) = pollster::block_on(shard_into(&mut good, 2)).unwrap();
    let ck = pollster::block_on(Checkpoint::read(&good)).unwrap();
    assert!(ck.is_sharded() && ck.shards.len() == 2);
    assert_eq!(ck.get("d.f32").unwrap().0.file, names[1]);
    assert!(matches!(ck.get("nope"), Err(Error::MissingTensor { .. })));
    assert!(matches!(pollster::block_on(Checkpoint::read(&MemSource::new())), Err(Error::NotFound { .. })));

    let with = |index: Vec<u8>| good.clone().with(WEIGHTS_INDEX, index);
    let renamed = |from: &str, to: &str| {
        let m: Vec<(String, String)> =
            map.iter().map(|(t, f)| (t.clone(), if f == from { to.to_string() } else { f.clone() })).collect();
        let mut src = with(index_json(&m));
        if let Some(b) = good.files.get(from) {
            src.files.insert(to.to_string(), b.clone());
        }
        src
    };
    let mut extra = map.clone();
    extra.push(("z.missing".into(), names[0].clone()));
    let mut wrong = map.clone();
    wrong[0].1 = names[1].clone();
    let mut twice = map.clone();
    twice.push((map[0].0.clone(), names[1].clone()));
    let mut omitted = map.clone();
    omitted.pop();
    // A third shard that repeats a tensor of the first.
    let (a, t) = (map[0].0.clone(), good.files[&names[0]].clone());
    let st0 = pollster::block_on(SafetensorsFile::read(&good, &names[0])).unwrap();
    let info = st0.get(&a).unwrap();
    let a_bytes = t[info.start as usize..info.end as usize].to_vec();
    let third = serialize(&[(a.as_str(), info.dtype, &info.shape, &a_bytes), ("x.extra", StDType::F32, &[1], &[0, 0, 0, 0])]);
    let mut dup = map.clone();
    dup.push(("x.extra".into(), "model-3.safetensors".into()));
    let many: Vec<(String, String)> = (0..1025).map(|i| (format!("t{i}"), format!("s{i}.safetensors"))).collect();
    let mut huge = index_json(&map);
    huge.splice(1..1, std::iter::repeat_n(b' ', 16 << 20));
    let cases: Vec<(&str, MemSource)> = vec![
        ("junk JSON", with(b"{\"weight_map\": {\"a\": ".to_vec())),
        ("not an object", with(b"[1, 2]".to_vec())),
        ("no weight_map", with(b"{\"metadata\": {}}".to_vec())),
        ("empty weight_map", with(b"{\"weight_map\": {}}".to_vec())),
        ("weight_map of numbers", with(b"{\"weight_map\": {\"a.f16\": 1}}".to_vec())),
        ("path traversal", renamed(&names[0], "../model-00001-of-00002.safetensors")),
        ("absolute path", renamed(&names[0], "/etc/model.safetensors")),
        ("subfolder", renamed(&names[0], "sub/model.safetensors")),
        ("backslash", renamed(&names[0], "..\\model.safetensors")),
        ("hidden file", renamed(&names[0], ".model.safetensors")),
        ("tensor missing from its shard", with(index_json(&extra))),
        ("tensor in the wrong shard", with(index_json(&wrong))),
        ("tensor listed twice", with(index_json(&twice))),
        ("header tensor not in the index", with(index_json(&omitted))),
        ("tensor in two shards", with(index_json(&dup)).with("model-3.safetensors", third)),
        ("too many shards", with(index_json(&many))),
        ("index over 16 MiB", with(huge)),
    ];
    for (what, src) in cases {
        match pollster::block_on(Checkpoint::read(&src)) {
            Err(err @ Error::Format { .. }) => println!("{what}: {err}"),
            Err(other) => panic!("{what}: expected a format error, got {other}"),
            Ok(_) => panic!("{what}: the index was accepted"),
        }
    }
    // A shard the index names that does not exist is the shard's NotFound.
    let mut gone = map.clone();
    gone[0].1 = "model-00009-of-00009.safetensors".into();
    assert!(matches!(pollster::block_on(Checkpoint::read(&with(index_json(&gone)))), Err(Error::NotFound { .. })));

    // Manifests.
    for (what, m) in [
        ("junk", &b"{\"files\": "[..]),
        ("no files", b"{}"),
        ("short digest", b"{\"files\": {\"model.safetensors\": {\"sha256\": \"abc\", \"size\": 1}}}"),
        ("no size", b"{\"files\": {\"model.safetensors\": {\"sha256\": \"0000000000000000000000000000000000000000000000000000000000000000\"}}}"),
        ("negative size", b"{\"files\": {\"a\": {\"sha256\": \"0000000000000000000000000000000000000000000000000000000000000000\", \"size\": -1}}}"),
        ("name twice", b"{\"files\": {\"a\": {\"sha256\": \"0000000000000000000000000000000000000000000000000000000000000000\", \"size\": 1}, \"a\": {\"sha256\": \"0000000000000000000000000000000000000000000000000000000000000000\", \"size\": 2}}}"),
    ] {
        match Manifest::parse(m) {
            Err(err @ Error::Format { .. }) => println!("manifest {what}: {err}"),
            Err(other) => panic!("manifest {what}: expected a format error, got {other}"),
            Ok(_) => panic!("manifest {what}: accepted"),
        }
    }
}

/// Loads an `Embedder` from `src` (recording progress events) and embeds `texts`.
async fn embed_with(
    gpu: &Gpu,
    src: MemSource,
    opts: EmbedOptions,
    events: Option<&RefCell<Vec<Progress>>>,
    texts: &[&str],
) -> Result<gllm_web::Embeddings, String> {
    let record = |p: Progress| {
        if let Some(ev) = events {
            ev.borrow_mut().push(p);
        }
    };
    let m = Embedder::load(gpu, &src, opts, &record).await.map_err(e)?;
    m.embed(texts).await.map_err(e)
}

async fn sharded_checkpoint_equals_single_file(gpu: Gpu) -> R {
    let base = copy_files(&common::model_source("all-MiniLM-L6-v2"), MINILM_FILES).await?;
    let texts = ["a sharded checkpoint", "loads like one file", ""];
    let embed = |src, opts, events| embed_with(&gpu, src, opts, events, &texts);
    let single = embed(base.clone(), EmbedOptions::default(), None).await?;
    let mut sharded = base.clone();
    let (names, _) = shard_into(&mut sharded, 3).await?;
    let events = RefCell::new(Vec::new());
    let got = embed(sharded.clone(), EmbedOptions::default(), Some(&events)).await?;
    if got.data != single.data {
        return Err("streamed: sharded embeddings differ from the single file's".into());
    }
    let ev = events.take();
    for n in &names {
        for (what, seen) in [
            ("initiate", ev.iter().any(|p| matches!(p, Progress::Initiate { file } if file == n))),
            ("download", ev.iter().any(|p| matches!(p, Progress::Download { file, .. } if file == n))),
            ("done", ev.iter().any(|p| matches!(p, Progress::Done { file } if file == n))),
        ] {
            if !seen {
                return Err(format!("no {what} event for {n}"));
            }
        }
    }
    let totals: Vec<(u64, u64)> = ev
        .iter()
        .filter_map(|p| match p {
            Progress::Total { file, loaded, total } if file == WEIGHTS_INDEX => Some((*loaded, *total)),
            _ => None,
        })
        .collect();
    let ordered = totals.windows(2).all(|w| w[0].0 <= w[1].0 && w[0].1 == w[1].1);
    match totals.last() {
        Some(&(l, t)) if ordered && l == t => log!("sharded: {} shards, {} progress_total events, {t} bytes", names.len(), totals.len()),
        _ => return Err(format!("progress_total events out of order or short of the total: {totals:?}")),
    }

    // Tensor by tensor (F16 weights): the VarBuilder path over the shards.
    let f16 = EmbedOptions { load: gllm_web::LoadOptions::with_dtype(LoadDType::F16), ..Default::default() };
    let a = embed(base.clone(), f16.clone(), None).await?;
    let events = RefCell::new(Vec::new());
    let b = embed(sharded.clone(), f16, Some(&events)).await?;
    if a.data != b.data {
        return Err("f16: sharded embeddings differ from the single file's".into());
    }
    let ev = events.take();
    if !ev.iter().any(|p| matches!(p, Progress::Total { .. })) || !names.iter().all(|n| ev.iter().any(|p| matches!(p, Progress::Done { file } if file == n))) {
        return Err("f16: no progress_total or per-shard done events".into());
    }

    // With a manifest of the shards: every shard is checked while it streams.
    let name_refs: Vec<&str> = names.iter().map(String::as_str).collect();
    let manifest = manifest_for(&sharded, &name_refs);
    let verified = sharded.clone().with(MANIFEST, manifest.clone());
    if embed(verified, EmbedOptions::default(), None).await?.data != single.data {
        return Err("verified sharded embeddings differ".into());
    }
    let bad = sharded.with(MANIFEST, tampered(&manifest, true));
    expect_integrity("sharded, wrong digests", Embedder::load(&gpu, &bad, EmbedOptions::default(), &|_| {}).await, &names[0])
}

async fn manifest_checks_streamed_files(gpu: Gpu) -> R {
    let (mem, want) = synthetic();
    let manifest = manifest_for(&mem, &[WEIGHTS]);
    let good = Manifest::parse(&manifest).map_err(e)?;
    let ck = Weights::Safetensors(Checkpoint::read(&mem).await.map_err(e)?);
    let opts = StreamOptions { chunk_size: 32, concurrency: 3, retries: 0 };
    let plain = Targets::as_stored();
    let source = |jitter: bool, no_ranges: bool| {
        let mut s = TestSource::new(mem.clone());
        s.jitter = jitter;
        s.no_ranges = no_ranges;
        s
    };
    // In order, out of order, without Range.
    for (jitter, no_ranges) in [(false, false), (true, false), (false, true)] {
        let src = source(jitter, no_ranges);
        let w = stream_weights(&gpu, &src, &ck, Some(&good), opts, &plain, &|_| {}, &|| false).await.map_err(e)?;
        check_tensors(&gpu, &w.tensors, &want).await?;
        log!("manifest ok (jitter {jitter}, no_ranges {no_ranges}): {} requests, at most {} held for hashing", w.requests_sent, w.max_held);
        if w.max_held >= 2 * opts.concurrency {
            return Err(format!("{} requests held; the window is {}", w.max_held, 2 * opts.concurrency));
        }
        if jitter && w.max_held == 0 {
            return Err("no request completed out of order; the reorder path went untested".into());
        }
    }
    let mut bad = good.clone();
    if let Some(d) = bad.files.get_mut(WEIGHTS) {
        d.sha256[0] ^= 1;
    }
    for no_ranges in [false, true] {
        let src = source(true, no_ranges);
        let r = stream_weights(&gpu, &src, &ck, Some(&bad), opts, &plain, &|_| {}, &|| false).await;
        expect_integrity(&format!("wrong digest (no_ranges {no_ranges})"), r, "sha256")?;
        // The loader works afterwards.
        let w = stream_weights(&gpu, &src, &ck, Some(&good), opts, &plain, &|_| {}, &|| false).await.map_err(e)?;
        check_tensors(&gpu, &w.tensors, &want).await?;
    }
    let mut bad_size = good.clone();
    if let Some(d) = bad_size.files.get_mut(WEIGHTS) {
        d.size += 1;
    }
    let src = source(false, false);
    let r = stream_weights(&gpu, &src, &ck, Some(&bad_size), opts, &plain, &|_| {}, &|| false).await;
    expect_integrity("wrong size", r, "bytes")?;
    // A manifest that does not list the weights.
    let other = Manifest::parse(&manifest_for(&mem.clone().with("other.bin", vec![1u8]), &["other.bin"])).map_err(e)?;
    match stream_weights(&gpu, &src, &ck, Some(&other), opts, &plain, &|_| {}, &|| false).await {
        Err(Error::Format { .. }) => Ok(()),
        Err(x) => Err(format!("unlisted file: {x}")),
        Ok(_) => Err("a manifest without the weights file was accepted".into()),
    }
}

async fn manifest_checks_real_model(gpu: Gpu) -> R {
    let mut mem = copy_files(&common::model_source("all-MiniLM-L6-v2"), MINILM_FILES).await?;
    let texts = ["checked against its manifest", "second"];
    let plain = Embedder::load(&gpu, &mem, EmbedOptions::default(), &|_| {}).await.map_err(e)?.embed(&texts).await.map_err(e)?;
    let good = manifest_for(&mem, &[WEIGHTS]);
    let f16 = EmbedOptions { load: gllm_web::LoadOptions::with_dtype(LoadDType::F16), ..Default::default() };
    for (what, m, opts, needle) in [
        ("streamed, wrong digest", tampered(&good, true), EmbedOptions::default(), "sha256"),
        ("streamed, wrong size", tampered(&good, false), EmbedOptions::default(), "bytes"),
        ("f16 (verification pass), wrong digest", tampered(&good, true), f16, "sha256"),
    ] {
        mem.files.insert(MANIFEST.into(), m);
        expect_integrity(what, Embedder::load(&gpu, &mem, opts, &|_| {}).await, needle)?;
    }
    mem.files.insert(MANIFEST.into(), good);
    let v = Embedder::load(&gpu, &mem, EmbedOptions::default(), &|_| {}).await.map_err(e)?.embed(&texts).await.map_err(e)?;
    if v.data != plain.data {
        return Err("a verified load gives different embeddings".into());
    }
    Ok(())
}

async fn sharded_generator_equals_single_file(gpu: Gpu) -> R {
    use gllm_web::{Generator, GeneratorOptions};
    let config = serde_json::json!({
        "model_type": "qwen2", "vocab_size": 301, "hidden_size": 96, "intermediate_size": 136,
        "num_hidden_layers": 2, "num_attention_heads": 6, "num_key_value_heads": 2, "head_dim": 16,
        "rms_norm_eps": 1e-6, "rope_theta": 10000.0, "max_position_embeddings": 64, "tie_word_embeddings": false,
    });
    let c: gllm_web::models::llama::LlamaConfig = serde_json::from_value(config.clone()).map_err(|x| x.to_string())?;
    let (bytes, _) = gllm_web::reference::llama::random_checkpoint(&c, 5, 0.25);
    // A word-level tokenizer inside the 301-row vocabulary (the loader checks every id a
    // tokenizer can emit against the model; the test feeds ids directly).
    let tokenizer = br#"{"version": "1.0", "added_tokens": [], "normalizer": null, "pre_tokenizer": {"type": "Whitespace"},
        "post_processor": null, "decoder": null,
        "model": {"type": "WordLevel", "vocab": {"[UNK]": 0, "a": 1, "b": 2, "c": 300}, "unk_token": "[UNK]"}}"#.to_vec();
    let base = MemSource::new()
        .with("config.json", serde_json::to_vec(&config).unwrap_or_default())
        .with("tokenizer.json", tokenizer)
        .with(WEIGHTS, bytes);
    let ids = [3u32, 250, 17, 99, 4];
    let logits = |src: MemSource| {
        let gpu = gpu.clone();
        async move {
            let mut g = Generator::load(&gpu, &src, GeneratorOptions::default(), &|_| {}).await?;
            g.prompt_logits(&ids).await
        }
    };
    let single = logits(base.clone()).await.map_err(e)?;
    let mut sharded = base;
    let (names, _) = shard_into(&mut sharded, 2).await?;
    if logits(sharded.clone()).await.map_err(e)? != single {
        return Err("sharded generator logits differ from the single file's".into());
    }
    let name_refs: Vec<&str> = names.iter().map(String::as_str).collect();
    let manifest = manifest_for(&sharded, &name_refs);
    if logits(sharded.clone().with(MANIFEST, manifest.clone())).await.map_err(e)? != single {
        return Err("verified sharded generator logits differ".into());
    }
    expect_integrity("generator, wrong digests", logits(sharded.with(MANIFEST, tampered(&manifest, true))).await, "sha256")
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
    let load = gllm_web::LoadOptions { stream: StreamOptions { chunk_size: 4 << 20, concurrency: 6, retries: 3 }, ..Default::default() };
    let opts = EmbedOptions { load, ..Default::default() };
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

/// Browser only: a load through the Cache API whose manifest does not match fails with
/// `Error::Integrity` and evicts the weights (and the manifest) from the cache; a load with
/// the right manifest then fetches them again and succeeds, and a third load is served from
/// the (now verified) cache alone.
#[cfg(target_arch = "wasm32")]
#[wasm_bindgen_test::wasm_bindgen_test]
async fn http_manifest_mismatch_evicts_the_cache() {
    if let Err(msg) = http_manifest().await {
        panic!("http_manifest_mismatch_evicts_the_cache: {msg}");
    }
}

#[cfg(target_arch = "wasm32")]
async fn http_manifest() -> R {
    use gllm_web::loader::{CachedSource, HttpSource};
    let Some(gpu) = common::web_gpu().await else { return Ok(()) };
    let base = option_env!("GLLM_MODEL_URL").unwrap_or("http://127.0.0.1:8777");
    let url = format!("{base}/all-MiniLM-L6-v2");
    let good = {
        let weights = HttpSource::new(&url).read(WEIGHTS).await.map_err(e)?;
        manifest_for(&MemSource::new().with(WEIGHTS, weights), &[WEIGHTS])
    };
    let bad = tampered(&good, true);
    let texts = ["checked against its manifest", "second"];
    let opts = EmbedOptions::default();
    let want = Embedder::load(&gpu, &HttpSource::new(&url), opts.clone(), &|_| {}).await.map_err(e)?.embed(&texts).await.map_err(e)?;
    let name = "gllm-manifest-test";
    let online = |m: &[u8]| CachedSource::new(common::WithManifest { inner: HttpSource::new(&url), manifest: m.to_vec() }, name);
    let offline = |m: &[u8]| CachedSource::new(common::WithManifest { inner: common::Offline(url.clone()), manifest: m.to_vec() }, name);

    let first = online(&bad);
    first.clear().await.map_err(e)?;
    expect_integrity("cached load, wrong digest", Embedder::load(&gpu, &first, opts.clone(), &|_| {}).await, "sha256")?;
    // Nothing of the weights is left in the cache: with the server gone they cannot load.
    let gone = offline(&good);
    match Embedder::load(&gpu, &gone, opts.clone(), &|_| {}).await {
        Err(err @ Error::Io { .. }) if err.to_string().contains(WEIGHTS) => {
            log!("after the mismatch the cache holds no weights ({} misses): {err}", gone.misses.get())
        }
        Err(other) => return Err(format!("offline after eviction: {other}")),
        Ok(_) => return Err("the mismatched weights were still in the cache".into()),
    }
    // The right manifest: fetched again, verified, cached.
    let second = online(&good);
    let v = Embedder::load(&gpu, &second, opts.clone(), &|_| {}).await.map_err(e)?.embed(&texts).await.map_err(e)?;
    if second.misses.get() == 0 {
        return Err("the second load was served from the cache".into());
    }
    let third = offline(&good);
    let v3 = Embedder::load(&gpu, &third, opts.clone(), &|_| {}).await.map_err(e)?.embed(&texts).await.map_err(e)?;
    log!(
        "manifest: refetch {} misses / {} hits; offline verified load {} misses / {} hits",
        second.misses.get(),
        second.hits.get(),
        third.misses.get(),
        third.hits.get()
    );
    if v.data != want.data || v3.data != want.data {
        return Err("verified loads give different embeddings".into());
    }
    if third.misses.get() != 0 {
        return Err(format!("the verified copy missed the cache {} times", third.misses.get()));
    }
    first.clear().await.map_err(e)?;
    Ok(())
}
