//! all-MiniLM-L6-v2 end to end against the goldens (sentence-transformers, PyTorch f32),
//! and the loader's handling of bad files. Runs natively (model from `models/`) and in
//! the browser (model over HTTP from `scripts/serve.mjs`).

mod common;

use common::R;
use gllm_web::loader::safetensors::{serialize, SafetensorsFile, StDType};
use gllm_web::loader::{MemSource, Source};
use gllm_web::{EmbedCallOptions, EmbedOptions, Embedder, Error, Gpu, Pooling};

#[cfg(target_arch = "wasm32")]
wasm_bindgen_test::wasm_bindgen_test_configure!(run_in_browser);

const MODEL: &str = "all-MiniLM-L6-v2";
const GOLDEN: &str = include_str!("goldens/all-minilm-l6-v2.json");

gpu_tests! {
    embeddings_match_goldens => embeddings_match_goldens,
    embed_edge_cases => embed_edge_cases,
    cls_pooling_and_no_normalize => cls_pooling_and_no_normalize,
    call_options_prompt_and_dimensions => call_options_prompt_and_dimensions,
    loader_rejects_bad_safetensors => loader_rejects_bad_safetensors,
    loader_rejects_bad_config_and_missing_files => loader_rejects_bad_config_and_missing_files,
}

// The CPU backend (`device: "cpu"`, or "auto" without a real GPU): the same bodies.
cpu_tests! {
    embeddings_match_goldens => embeddings_match_goldens,
    embed_edge_cases => embed_edge_cases,
    cls_pooling_and_no_normalize => cls_pooling_and_no_normalize,
    call_options_prompt_and_dimensions => call_options_prompt_and_dimensions,
    loader_rejects_bad_safetensors => loader_rejects_bad_safetensors,
}

fn cosine(a: &[f32], b: &[f32]) -> f64 {
    let dot: f64 = a.iter().zip(b).map(|(x, y)| *x as f64 * *y as f64).sum();
    let na: f64 = a.iter().map(|x| (*x as f64).powi(2)).sum::<f64>().sqrt();
    let nb: f64 = b.iter().map(|x| (*x as f64).powi(2)).sum::<f64>().sqrt();
    dot / (na * nb)
}

async fn load(gpu: &Gpu, opts: EmbedOptions) -> Result<Embedder, Error> {
    Embedder::load(gpu, &common::model_source(MODEL), opts, &|_| {}).await
}

async fn embeddings_match_goldens(shared: Gpu) -> R {
    // Its own device, so readbacks of tests running beside it do not enter the count.
    let gpu = common::own_device(&shared).await?;
    let golden: serde_json::Value = serde_json::from_str(GOLDEN)?;
    let sentences = golden["sentences"].as_array().ok_or("goldens: no sentences")?;
    let texts: Vec<&str> = sentences.iter().map(|s| s["text"].as_str().unwrap_or_default()).collect();
    let embedder = load(&gpu, EmbedOptions::default()).await?;
    assert_eq!((embedder.pooling(), embedder.normalize(), embedder.max_length()), (Pooling::Mean, true, 256));

    let before = gpu.stats().readbacks;
    let e = embedder.embed(&texts).await?;
    // Pure GPU flow: the whole call, four sentences, is one readback.
    assert_eq!(gpu.stats().readbacks - before, 1, "readbacks per embed call");
    assert_eq!(e.dims, [texts.len(), 384]);
    for (i, s) in sentences.iter().enumerate() {
        let want_ids: Vec<u32> = serde_json::from_value(s["input_ids"].clone())?;
        assert_eq!(e.token_ids[i], want_ids, "token ids of sentence {i}");
        let want: Vec<f32> = serde_json::from_value(s["embedding"].clone())?;
        let cos = cosine(e.row(i), &want);
        log!("sentence {i}: cosine with golden {cos:.8}");
        if cos < 0.9999 {
            return Err(format!("sentence {i} `{}`: cosine {cos} < 0.9999", texts[i]).into());
        }
    }
    // Batched and one-by-one give the same vectors (padding does not leak).
    for (i, t) in texts.iter().enumerate() {
        let single = embedder.embed(&[t]).await?;
        let cos = cosine(single.row(0), e.row(i));
        if cos < 0.99999 {
            return Err(format!("sentence {i} alone vs batched: cosine {cos}").into());
        }
    }
    Ok(())
}

async fn embed_edge_cases(gpu: Gpu) -> R {
    let embedder = load(&gpu, EmbedOptions { batch_size: Some(2), ..Default::default() }).await?;
    // Empty list: empty result, no GPU work.
    let e = embedder.embed(&[]).await?;
    assert_eq!((e.dims, e.data.len()), ([0, 384], 0));
    // Empty string: just [CLS] [SEP], a unit vector like any other.
    let e = embedder.embed(&[""]).await?;
    assert_eq!(e.token_ids[0], vec![101, 102]);
    let norm: f32 = e.row(0).iter().map(|v| v * v).sum::<f32>().sqrt();
    assert!((norm - 1.0).abs() < 1e-4, "empty-string embedding norm {norm}");
    // Longer than max_length (256): truncated to 256 tokens, ending in [SEP]; the embedding
    // equals that of the text cut at the same point.
    let long = "word ".repeat(400);
    let texts = [long.as_str(), "short one", "ünïcödé text — 東京 🚀", "fourth"];
    let e = embedder.embed(&texts).await?;
    assert_eq!(e.token_ids[0].len(), 256);
    assert_eq!(e.token_ids[0][255], 102);
    let cut = "word ".repeat(254);
    let cut_e = embedder.embed(&[cut.as_str()]).await?;
    assert!(cosine(cut_e.row(0), e.row(0)) > 0.99999, "truncation differs from the cut text");
    // Several chunks (batch_size 2) land in the right rows.
    for (i, t) in texts.iter().enumerate() {
        let single = embedder.embed(&[t]).await?;
        assert!(cosine(single.row(0), e.row(i)) > 0.99999, "row {i} after chunking");
    }
    Ok(())
}

async fn cls_pooling_and_no_normalize(gpu: Gpu) -> R {
    let opts = EmbedOptions { pooling: Some(Pooling::Cls), normalize: Some(false), ..Default::default() };
    let embedder = load(&gpu, opts).await?;
    let golden: serde_json::Value = serde_json::from_str(GOLDEN)?;
    let s = &golden["sentences"][0];
    let e = embedder.embed(&[s["text"].as_str().unwrap_or_default()]).await?;
    // CLS pooling without normalisation is the last hidden state of token 0.
    let want: Vec<f32> = serde_json::from_value(s["last_hidden_state_token0_first8"].clone())?;
    gllm_web::reference::check::assert_close("cls first8", &e.row(0)[..8], &want, gllm_web::reference::check::Tol::Close { abs: 2e-4, rel: 1e-3 })?;
    Ok(())
}

/// Per-call options on a model without task prompts: a literal prompt is prepended to the
/// text; Matryoshka `dimensions` keep the first components, renormalised; a prompt name or a
/// width outside 1..=dim is an input error. (EmbeddingGemma's named prompts: `embed_gemma.rs`.)
async fn call_options_prompt_and_dimensions(gpu: Gpu) -> R {
    let embedder = load(&gpu, EmbedOptions::default()).await?;
    let golden: serde_json::Value = serde_json::from_str(GOLDEN)?;
    let s = &golden["sentences"][1];
    let text = s["text"].as_str().unwrap_or_default();
    let full: Vec<f32> = serde_json::from_value(s["embedding"].clone())?;
    let cut = EmbedCallOptions { dimensions: Some(100), ..Default::default() };
    let e = embedder.embed_with(&[text], &cut).await?;
    assert_eq!(e.dims, [1, 100]);
    let cos = cosine(e.row(0), &full[..100]);
    let norm: f32 = e.row(0).iter().map(|v| v * v).sum::<f32>().sqrt();
    log!("100 dims: cosine with the golden's first 100 {cos:.8}, norm {norm}");
    assert!(cos >= 0.9999 && (norm - 1.0).abs() < 1e-4, "100 dims: cosine {cos}, norm {norm}");
    let prompted = EmbedCallOptions { prompt: Some("query: ".into()), ..Default::default() };
    let p = embedder.embed_with(&[text], &prompted).await?;
    let plain = embedder.embed(&[&format!("query: {text}")]).await?;
    assert_eq!(p.token_ids, plain.token_ids);
    assert!(cosine(p.row(0), plain.row(0)) > 0.99999, "prompt + text differs from the joined text");
    expect("unknown prompt name", embedder.embed_with(&[text], &EmbedCallOptions { prompt_name: Some("query".into()), ..Default::default() }).await, |e| matches!(e, Error::Input(_)))?;
    for d in [0, 385] {
        expect(&format!("dimensions {d}"), embedder.embed_with(&[text], &EmbedCallOptions { dimensions: Some(d), ..Default::default() }).await, |e| matches!(e, Error::Input(_)))?;
    }
    Ok(())
}

fn f32_bytes(v: &[f32]) -> Vec<u8> {
    v.iter().flat_map(|x| x.to_le_bytes()).collect()
}

fn expect<T>(what: &str, r: Result<T, Error>, ok: impl Fn(&Error) -> bool) -> R {
    match r {
        Err(e) if ok(&e) => {
            log!("{what}: {e}");
            Ok(())
        }
        Err(e) => Err(format!("{what}: wrong error {e:?}").into()),
        Ok(_) => Err(format!("{what}: accepted").into()),
    }
}

async fn loader_rejects_bad_safetensors(_gpu: Gpu) -> R {
    let a = f32_bytes(&[1.0, 2.0, 3.0, 4.0]);
    let b = f32_bytes(&[5.0, 6.0]);
    let good = serialize(&[("a", StDType::F32, &[2, 2], &a), ("b", StDType::F32, &[2], &b)]);
    let st = SafetensorsFile::read(&MemSource::new().with("m.safetensors", good.clone()), "m.safetensors").await?;
    assert_eq!(st.get("a")?.shape, vec![2, 2]);
    let format = |e: &Error| matches!(e, Error::Format { .. });
    let read = |bytes: Vec<u8>| async move { SafetensorsFile::read(&MemSource::new().with("m", bytes), "m").await };

    // Truncated file: the data region is shorter than the offsets claim.
    expect("truncated", read(good[..good.len() - 3].to_vec()).await, format)?;
    // Shorter than the length prefix.
    expect("tiny", read(vec![1, 2, 3]).await, format)?;
    // Header length beyond the file, and beyond the cap.
    let mut huge = good.clone();
    huge[..8].copy_from_slice(&(good.len() as u64).to_le_bytes());
    expect("header past end", read(huge).await, format)?;
    let mut capped = good.clone();
    capped[..8].copy_from_slice(&u64::MAX.to_le_bytes());
    expect("header over cap", read(capped).await, format)?;
    // Hand-written headers: offsets past the file, overlap, dtype × shape mismatch, junk.
    let with_header = |json: &str, data: usize| {
        let mut h = json.as_bytes().to_vec();
        h.resize(h.len().next_multiple_of(8), b' ');
        let mut out = (h.len() as u64).to_le_bytes().to_vec();
        out.extend(h);
        out.extend(vec![0u8; data]);
        out
    };
    let cases = [
        ("offsets past the file", r#"{"a":{"dtype":"F32","shape":[4],"data_offsets":[0,16]}}"#, 8),
        ("overlap", r#"{"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},"b":{"dtype":"F32","shape":[2],"data_offsets":[4,12]}}"#, 16),
        ("shape mismatch", r#"{"a":{"dtype":"F32","shape":[3],"data_offsets":[0,8]}}"#, 8),
        ("unknown dtype", r#"{"a":{"dtype":"F7","shape":[2],"data_offsets":[0,8]}}"#, 8),
        ("shape overflow", r#"{"a":{"dtype":"F32","shape":[4294967296,4294967296],"data_offsets":[0,8]}}"#, 8),
        ("not json", "{oops", 8),
        ("reversed offsets", r#"{"a":{"dtype":"F32","shape":[0],"data_offsets":[8,0]}}"#, 8),
    ];
    for (what, json, data) in cases {
        expect(what, read(with_header(json, data)).await, format)?;
    }
    Ok(())
}

/// A MemSource holding the real model's small files plus `weights` as model.safetensors.
async fn fixture(weights: Vec<u8>) -> Result<MemSource, Error> {
    let real = common::model_source(MODEL);
    let mut m = MemSource::new().with("model.safetensors", weights);
    for f in ["config.json", "tokenizer.json", "modules.json", "1_Pooling/config.json", "sentence_bert_config.json"] {
        m = m.with(f, real.read(f).await?);
    }
    Ok(m)
}

async fn loader_rejects_bad_config_and_missing_files(gpu: Gpu) -> R {
    let load_mem = |m: MemSource| {
        let gpu = gpu.clone();
        async move { Embedder::load(&gpu, &m, EmbedOptions::default(), &|_| {}).await }
    };
    // The real weights, truncated: the header promises more bytes than the file has.
    let real = common::model_source(MODEL);
    let head = real.read_range("model.safetensors", 0, 1 << 16).await?;
    expect("truncated model.safetensors", load_mem(fixture(head).await?).await, |e| matches!(e, Error::Format { .. }))?;
    // Malformed config.json, and one with impossible values.
    let ok = fixture(serialize(&[])).await?;
    let cfg = |e: &Error| matches!(e, Error::Config { .. });
    expect("config not json", load_mem(ok.clone().with("config.json", "{\"hidden_size\": ")).await, cfg)?;
    let bad_heads = String::from_utf8(ok.files["config.json"].clone())?.replace("\"num_attention_heads\": 12", "\"num_attention_heads\": 7");
    expect("config heads", load_mem(ok.clone().with("config.json", bad_heads)).await, cfg)?;
    // A checkpoint without the model's tensors.
    expect("missing tensors", load_mem(ok.clone()).await, |e| matches!(e, Error::MissingTensor { .. }))?;
    // Missing files: 404 over HTTP, ENOENT on disk.
    let not_found = |e: &Error| matches!(e, Error::NotFound { .. });
    let mut no_tok = ok.clone();
    no_tok.files.remove("tokenizer.json");
    expect("missing tokenizer.json", load_mem(no_tok).await, not_found)?;
    expect(
        "missing model folder",
        Embedder::load(&gpu, &common::model_source("no-such-model"), EmbedOptions::default(), &|_| {}).await,
        not_found,
    )?;
    // After all that, the same device still embeds correctly.
    let e = load(&gpu, EmbedOptions::default()).await?.embed(&["still works"]).await?;
    assert_eq!(e.dims, [1, 384]);
    Ok(())
}

/// Dropping an engine (what the JS `dispose()` does) gives its GPU memory back: on a device of
/// its own, the bytes live tensors hold return to what they were before the load, and
/// `Gpu::trim` then empties the pool. Natively (the browser's `dispose` runs the same drop;
/// tests/js checks its API behaviour).
#[cfg(not(target_arch = "wasm32"))]
#[test]
fn dropping_an_embedder_frees_its_gpu_memory() {
    let Ok(gpu) = pollster::block_on(Gpu::new()) else {
        panic!("no GPU adapter for the dispose test");
    };
    let r: R = pollster::block_on(async {
        let before = gpu.stats().live_bytes;
        let e = load(&gpu, EmbedOptions::default()).await?;
        let v = e.embed(&["GPU memory comes back."]).await?;
        gpu.sync().await?;
        let loaded = gpu.stats().live_bytes;
        drop(v);
        drop(e);
        gpu.sync().await?;
        let after = gpu.stats();
        gpu.trim();
        let trimmed = gpu.stats().pooled_free_bytes;
        log!(
            "embedder: live GPU bytes {before} before the load, {loaded} loaded ({:.1} MB), {} after the drop; pool {} bytes, {trimmed} after trim",
            (loaded - before) as f64 / 1e6,
            after.live_bytes,
            after.pooled_free_bytes
        );
        // all-MiniLM-L6-v2 is 90.9 MB of f32 weights.
        if loaded - before < 90_000_000 || after.live_bytes != before || trimmed != 0 {
            return Err(format!("live bytes {before} -> {loaded} -> {}, pool after trim {trimmed}", after.live_bytes).into());
        }
        Ok(())
    });
    if let Err(e) = r {
        panic!("dropping_an_embedder_frees_its_gpu_memory: {e}");
    }
}
