//! google/embeddinggemma-300m (a bidirectional Gemma 3 trunk, mean pooling, two Dense
//! layers, L2) end to end against the goldens of `scripts/make_gemma_goldens.py`
//! (sentence-transformers `encode`, PyTorch f32 on the CPU): token ids exact and cosine
//! ≥ 0.9999 for every text (9 texts: 7 languages and code, and one 402-token text, longer than
//! the sliding window), plain, with `prompt_name: "query"`, and at 256 Matryoshka dims.
//!
//! Opt-in natively (the model is 1.2 GB and not fetched in CI):
//!   GLLM_FETCH_GEMMA=1 bash scripts/fetch-models.sh models
//!   cargo test --test embed_gemma -- --ignored --nocapture
//! In the browser (not ignored there; 10 minutes on SwiftShader), with the model served:
//!   node scripts/serve.mjs models 8791 &
//!   GLLM_MODEL_URL=http://127.0.0.1:8791 WASM_BINDGEN_TEST_TIMEOUT=1800 \
//!     wasm-pack test --headless --chrome --chromedriver /usr/bin/chromedriver --test embed_gemma
//! Measured results: SPEC/gemma.md.

mod common;

use common::R;
use gllm_web::{EmbedCallOptions, EmbedOptions, Embedder, Gpu};

#[cfg(target_arch = "wasm32")]
wasm_bindgen_test::wasm_bindgen_test_configure!(run_in_browser);

const MODEL: &str = "embeddinggemma-300m";
const GOLDEN: &str = include_str!("goldens/embeddinggemma-300m.json");
/// Cosine with sentence-transformers' f32 embedding, every text and mode.
const MIN_COSINE: f64 = 0.9999;

/// Seconds since an arbitrary origin, natively and in the browser.
fn now() -> f64 {
    #[cfg(target_arch = "wasm32")]
    return js_sys::Date::now() / 1000.0;
    #[cfg(not(target_arch = "wasm32"))]
    return std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0.0, |d| d.as_secs_f64());
}

fn cosine(a: &[f32], b: &[f32]) -> f64 {
    let dot: f64 = a.iter().zip(b).map(|(x, y)| *x as f64 * *y as f64).sum();
    let na: f64 = a.iter().map(|x| (*x as f64).powi(2)).sum::<f64>().sqrt();
    let nb: f64 = b.iter().map(|x| (*x as f64).powi(2)).sum::<f64>().sqrt();
    dot / (na * nb)
}

#[cfg(not(target_arch = "wasm32"))]
#[test]
#[ignore = "needs models/embeddinggemma-300m (1.2 GB, GLLM_FETCH_GEMMA=1 bash scripts/fetch-models.sh models); run with --ignored"]
fn embeddinggemma_matches_goldens() {
    let Some(gpu) = common::native_gpu() else { return };
    if let Err(e) = pollster::block_on(check_goldens(gpu)) {
        panic!("embeddinggemma_matches_goldens: {e}");
    }
}

#[cfg(target_arch = "wasm32")]
#[wasm_bindgen_test::wasm_bindgen_test]
async fn embeddinggemma_matches_goldens() {
    let Some(gpu) = common::web_gpu().await else { return };
    if let Err(e) = check_goldens(gpu).await {
        panic!("embeddinggemma_matches_goldens: {e}");
    }
}

async fn check_goldens(gpu: Gpu) -> R {
    let golden: serde_json::Value = serde_json::from_str(GOLDEN)?;
    let cases = golden["cases"].as_array().ok_or("goldens: no cases")?;
    let texts: Vec<&str> = cases.iter().map(|c| c["text"].as_str().unwrap_or_default()).collect();
    let t0 = now();
    let opts = EmbedOptions { batch_size: Some(4), ..Default::default() };
    let embedder = Embedder::load(&gpu, &common::model_source(MODEL), opts, &|_| {}).await?;
    log!("loaded in {:.1} s on {}", now() - t0, gpu.caps().adapter);
    assert_eq!((embedder.dim(), embedder.max_length()), (768, 2048));
    assert_eq!(embedder.prompts().get("query").map(String::as_str), golden["query_prompt"].as_str());

    let modes = [
        ("plain", EmbedCallOptions::default(), "ids", "embedding", 768),
        ("query", EmbedCallOptions { prompt_name: Some("query".into()), ..Default::default() }, "query_ids", "query_embedding", 768),
        ("256 dims", EmbedCallOptions { dimensions: Some(256), ..Default::default() }, "ids", "embedding_256", 256),
    ];
    let mut worst = 1.0f64;
    for (mode, opts, ids_key, key, dim) in modes {
        let t = now();
        // Batches of 4 (padded to their longest text) exercise the padding mask.
        let e = embedder.embed_with(&texts, &opts).await?;
        log!("{mode}: {} texts in {:.2} s", texts.len(), now() - t);
        assert_eq!(e.dims, [texts.len(), dim]);
        for (i, c) in cases.iter().enumerate() {
            let want_ids: Vec<u32> = serde_json::from_value(c[ids_key].clone())?;
            assert_eq!(e.token_ids[i], want_ids, "{mode}: token ids of text {i}");
            let want: Vec<f32> = serde_json::from_value(c[key].clone())?;
            let cos = cosine(e.row(i), &want);
            let norm: f64 = e.row(i).iter().map(|v| (*v as f64).powi(2)).sum::<f64>().sqrt();
            log!("{mode} text {i} ({} tokens): cosine {cos:.8} (1 - cos = {:.1e}), |e| {norm:.6}", want_ids.len(), 1.0 - cos);
            worst = worst.min(cos);
            if cos < MIN_COSINE {
                return Err(format!("{mode} text {i} `{}`: cosine {cos} < {MIN_COSINE}", c["text"]).into());
            }
            if (norm - 1.0).abs() > 1e-4 {
                return Err(format!("{mode} text {i}: norm {norm}").into());
            }
        }
    }
    log!("worst cosine {worst:.8} (1 - cos = {:.1e})", 1.0 - worst);
    // A literal prompt equals the named one; an unknown name and too many dimensions are
    // input errors.
    let prompt = EmbedCallOptions { prompt: golden["query_prompt"].as_str().map(Into::into), ..Default::default() };
    let q = embedder.embed_with(&texts[..1], &prompt).await?;
    let want: Vec<f32> = serde_json::from_value(cases[0]["query_embedding"].clone())?;
    assert!(cosine(q.row(0), &want) >= MIN_COSINE, "literal prompt");
    let bad = embedder.embed_with(&texts[..1], &EmbedCallOptions { prompt_name: Some("nope".into()), ..Default::default() }).await;
    assert!(matches!(bad, Err(gllm_web::Error::Input(_))), "unknown prompt_name accepted");
    let bad = embedder.embed_with(&texts[..1], &EmbedCallOptions { dimensions: Some(769), ..Default::default() }).await;
    assert!(matches!(bad, Err(gllm_web::Error::Input(_))), "dimensions 769 accepted");
    Ok(())
}
