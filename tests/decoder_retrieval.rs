//! Decoder embedders (Qwen3-Embedding recipe: last-token pooling) and decoder rerankers
//! (Qwen3-Reranker recipe: yes/no logits) on a random-weight Qwen3 checkpoint, against the
//! goldens of `scripts/make_decoder_retrieval_goldens.py` (transformers' `Qwen3Model` and
//! `Qwen3ForCausalLM`, f32 on the CPU). The checkpoint is rebuilt here in memory from the
//! golden's config, seed and scale (`reference::llama::random_checkpoint`, the same bytes
//! the script's `examples/random_llama_checkpoint.rs` wrote); the tokenizer is SmolLM2's.
//! Natively and in the browser.

mod common;

use common::{u32s, R};
use gllm_web::loader::{MemSource, Source};
use gllm_web::models::llama::LlamaConfig;
use gllm_web::{EmbedCallOptions, EmbedOptions, Embedder, Error, Gpu, Pooling, RerankOptions, Reranker};

#[cfg(target_arch = "wasm32")]
wasm_bindgen_test::wasm_bindgen_test_configure!(run_in_browser);

const GOLDEN: &str = include_str!("goldens/qwen3-random-retrieval.json");
/// Max |difference| of any embedding component or reranker logit from transformers.
const TOL: f32 = 1e-4;

gpu_tests! {
    decoder_embedder_matches_transformers => decoder_embedder_matches_transformers,
    decoder_reranker_matches_transformers => decoder_reranker_matches_transformers,
    decoder_retrieval_bad_inputs => decoder_retrieval_bad_inputs,
}

fn golden() -> Result<serde_json::Value, serde_json::Error> {
    serde_json::from_str(GOLDEN)
}

/// The random checkpoint of the golden's config (F16 tensors, HF names).
fn checkpoint(g: &serde_json::Value) -> Result<(LlamaConfig, Vec<u8>), Box<dyn std::error::Error>> {
    let c: LlamaConfig = serde_json::from_value(g["config"].clone())?;
    let seed = g["seed"].as_u64().ok_or("no seed")?;
    let scale = g["scale"].as_f64().ok_or("no scale")? as f32;
    let (bytes, _) = gllm_web::reference::llama::random_checkpoint(&c, seed, scale);
    Ok((c, bytes))
}

/// A model folder in memory: the golden's config (with `config` overrides), the SmolLM2
/// tokenizer and `weights`.
async fn folder(g: &serde_json::Value, config: serde_json::Value, weights: Vec<u8>) -> Result<MemSource, Error> {
    let tok = common::model_source("smollm2-135m-instruct").read("tokenizer.json").await?;
    let mut c = g["config"].clone();
    if let (Some(c), Some(o)) = (c.as_object_mut(), config.as_object()) {
        c.extend(o.clone());
    }
    Ok(MemSource::new().with("config.json", c.to_string()).with("tokenizer.json", tok).with("model.safetensors", weights))
}

/// The sentence-transformers files of a Qwen3-Embedding folder: last-token pooling,
/// normalisation, and the query instruction as the `query` prompt.
fn with_st_files(src: MemSource, g: &serde_json::Value) -> MemSource {
    let modules = r#"[{"idx":0,"name":"0","path":"","type":"sentence_transformers.models.Transformer"},
        {"idx":1,"name":"1","path":"1_Pooling","type":"sentence_transformers.models.Pooling"},
        {"idx":2,"name":"2","path":"2_Normalize","type":"sentence_transformers.models.Normalize"}]"#;
    let pooling = r#"{"word_embedding_dimension":64,"pooling_mode_cls_token":false,"pooling_mode_mean_tokens":false,
        "pooling_mode_max_tokens":false,"pooling_mode_mean_sqrt_len_tokens":false,"pooling_mode_weightedmean_tokens":false,
        "pooling_mode_lasttoken":true,"include_prompt":true}"#;
    let prompts = serde_json::json!({ "prompts": { "query": g["query_prompt"], "document": "" }, "default_prompt_name": null });
    src.with("modules.json", modules).with("1_Pooling/config.json", pooling).with("config_sentence_transformers.json", prompts.to_string())
}

/// The checkpoint with every `model.` prefix dropped: a saved `Qwen3Model` (Qwen3-Embedding's
/// layout), without an LM head.
fn bare_trunk(bytes: &[u8]) -> Result<Vec<u8>, Box<dyn std::error::Error>> {
    use gllm_web::loader::safetensors::{serialize, StDType};
    let st = safetensors_view(bytes)?;
    let renamed: Vec<(String, Vec<usize>, Vec<u8>)> =
        st.into_iter().map(|(n, s, b)| (n.strip_prefix("model.").unwrap_or(&n).to_string(), s, b)).collect();
    let refs: Vec<(&str, StDType, &[usize], &[u8])> =
        renamed.iter().map(|(n, s, b)| (n.as_str(), StDType::F16, s.as_slice(), b.as_slice())).collect();
    Ok(serialize(&refs))
}

/// Name, shape and bytes of every (F16) tensor of a safetensors file.
fn safetensors_view(bytes: &[u8]) -> Result<Vec<(String, Vec<usize>, Vec<u8>)>, Box<dyn std::error::Error>> {
    let n = u64::from_le_bytes(bytes[..8].try_into()?) as usize;
    let header: serde_json::Map<String, serde_json::Value> = serde_json::from_slice(&bytes[8..8 + n])?;
    let data = &bytes[8 + n..];
    let mut out = Vec::new();
    for (name, v) in header {
        if name == "__metadata__" {
            continue;
        }
        let shape: Vec<usize> = serde_json::from_value(v["shape"].clone())?;
        let off = u32s(&v["data_offsets"]);
        out.push((name, shape, data[off[0] as usize..off[1] as usize].to_vec()));
    }
    Ok(out)
}

fn max_abs(a: &[f32], b: &[f32]) -> f32 {
    a.iter().zip(b).map(|(x, y)| (x - y).abs()).fold(0.0, f32::max)
}

async fn decoder_embedder_matches_transformers(shared: Gpu) -> R {
    // Its own device, so readbacks of tests running beside it do not enter the count.
    let gpu = common::own_device(&shared).await?;
    let g = golden()?;
    let (_, bytes) = checkpoint(&g)?;
    let src = with_st_files(folder(&g, serde_json::json!({}), bytes.clone()).await?, &g);
    let embedder = Embedder::load(&gpu, &src, EmbedOptions::default(), &|_| {}).await?;
    assert_eq!((embedder.pooling(), embedder.normalize(), embedder.dim()), (Pooling::LastToken, true, 64));
    // A batch of 2 per pass: several chunks, each right-padded.
    let small = EmbedOptions { batch_size: Some(2), ..Default::default() };
    let chunked = Embedder::load(&gpu, &src, small, &|_| {}).await?;
    // Qwen3-Embedding's own layout: no `model.` prefix, no LM head, no sentence-transformers
    // files (last-token pooling and normalisation are the decoder defaults).
    let bare = folder(&g, serde_json::json!({}), bare_trunk(&bytes)?).await?;
    let bare = Embedder::load(&gpu, &bare, EmbedOptions::default(), &|_| {}).await?;
    assert_eq!(bare.pooling(), Pooling::LastToken);
    let mut worst = 0.0f32;
    for case in g["embeddings"].as_array().ok_or("no embeddings")? {
        let texts: Vec<&str> = case["texts"].as_array().ok_or("no texts")?.iter().map(|t| t.as_str().unwrap_or_default()).collect();
        let opts = EmbedCallOptions { prompt_name: case["prompt_name"].as_str().map(String::from), ..Default::default() };
        let want_ids: Vec<Vec<u32>> = case["input_ids"].as_array().ok_or("no ids")?.iter().map(u32s).collect();
        let want: Vec<Vec<f32>> = case["embeddings"].as_array().ok_or("no embeddings")?.iter().map(common::f32s).collect();
        // The bare folder has no prompts: it takes the instruction as a literal prompt.
        let literal = EmbedCallOptions { prompt: opts.prompt_name.as_ref().and(g["query_prompt"].as_str().map(String::from)), ..Default::default() };
        for (name, e, opts) in [("batched", &embedder, &opts), ("chunks of 2", &chunked, &opts), ("bare trunk", &bare, &literal)] {
            let before = gpu.stats().readbacks;
            let got = e.embed_with(&texts, opts).await?;
            assert_eq!(gpu.stats().readbacks - before, 1, "one readback per embed call");
            assert_eq!(got.token_ids, want_ids, "token ids ({name}, prompt {:?})", opts.prompt_name);
            assert_eq!(got.dims, [texts.len(), 64]);
            for (i, w) in want.iter().enumerate() {
                let err = max_abs(got.row(i), w);
                worst = worst.max(err);
                if err >= TOL {
                    return Err(format!("{name}, prompt {:?}, text {i} ({:?}): max |diff| {err} >= {TOL}", opts.prompt_name, texts[i]).into());
                }
            }
        }
    }
    log!("decoder embedder: max |diff| from transformers {worst:.3e} (tolerance {TOL})");
    // A literal prompt equals the named one.
    let q = g["embeddings"][1]["texts"][0].as_str().ok_or("no query")?;
    let named = embedder.embed_with(&[q], &EmbedCallOptions { prompt_name: Some("query".into()), ..Default::default() }).await?;
    let literal = embedder.embed_with(&[q], &EmbedCallOptions { prompt: g["query_prompt"].as_str().map(String::from), ..Default::default() }).await?;
    assert_eq!(named.data, literal.data);
    // Empty input: no GPU work.
    assert_eq!(embedder.embed(&[]).await?.dims, [0, 64]);
    Ok(())
}

async fn decoder_reranker_matches_transformers(shared: Gpu) -> R {
    let gpu = common::own_device(&shared).await?;
    let g = golden()?;
    let (_, bytes) = checkpoint(&g)?;
    let src = folder(&g, serde_json::json!({}), bytes).await?;
    let mut worst = 0.0f32;
    for case in g["reranks"].as_array().ok_or("no reranks")? {
        let opts = RerankOptions { instruction: case["instruction"].as_str().map(String::from), ..Default::default() };
        let reranker = Reranker::load(&gpu, &src, opts, &|_| {}).await?;
        assert!(reranker.is_decoder());
        let want_yes_no = (g["yes_id"].as_u64().ok_or("no yes id")? as u32, g["no_id"].as_u64().ok_or("no no id")? as u32);
        assert_eq!(reranker.yes_no_ids(), Some(want_yes_no));
        let query = case["query"].as_str().ok_or("no query")?;
        let pairs = case["pairs"].as_array().ok_or("no pairs")?;
        let docs: Vec<&str> = pairs.iter().map(|p| p["document"].as_str().unwrap_or_default()).collect();
        let encoded = reranker.encode(query, &docs)?;
        for (i, p) in pairs.iter().enumerate() {
            assert_eq!(encoded[i].0, u32s(&p["input_ids"]), "pair {i} token ids");
        }
        let before = gpu.stats().readbacks;
        let results = reranker.rerank(query, &docs, None).await?;
        assert_eq!(gpu.stats().readbacks - before, 1, "one readback per rerank call");
        for r in &results {
            let p = &pairs[r.index];
            let (want, want_score) = (p["logit"].as_f64().ok_or("no logit")? as f32, p["score"].as_f64().ok_or("no score")? as f32);
            log!("doc {}: logit {:.6} (transformers {want:.6}), score {:.6} ({want_score:.6})", r.index, r.logit, r.score);
            let err = (r.logit - want).abs();
            worst = worst.max(err);
            if err >= TOL || (r.score - want_score).abs() >= TOL {
                return Err(format!("doc {}: logit {} score {} vs transformers {want} {want_score}", r.index, r.logit, r.score).into());
            }
        }
        let order: Vec<usize> = results.iter().map(|r| r.index).collect();
        let want_order: Vec<usize> = serde_json::from_value(case["ranking_by_logit"].clone())?;
        assert_eq!(order, want_order, "ranking");
        // Chunks of one pair give the same logits; top_n keeps the best.
        let one = Reranker::load(&gpu, &src, RerankOptions { batch_size: Some(1), instruction: case["instruction"].as_str().map(String::from), ..Default::default() }, &|_| {}).await?;
        let singles = one.rerank(query, &docs, Some(2)).await?;
        assert_eq!(singles.iter().map(|r| r.index).collect::<Vec<_>>(), want_order[..2].to_vec());
        for (a, b) in singles.iter().zip(&results) {
            assert!((a.logit - b.logit).abs() < TOL, "batch of 1 vs batched: {} vs {}", a.logit, b.logit);
        }
        assert!(reranker.rerank(query, &[], None).await?.is_empty());
    }
    log!("decoder reranker: max |logit diff| from transformers {worst:.3e} (tolerance {TOL})");

    // A separate LM head (`lm_head.weight`): its dense "no"/"yes" rows against the CPU
    // reference forward, and q8_0 (no dense rows: the whole head on the last positions, two
    // columns copied out) against the dense head within q8_0's error (random uniform weights
    // quantize poorly: measured up to 0.052 on logits of spread ~1; swapped or wrong columns
    // would be off by about the spread).
    let mut c: LlamaConfig = serde_json::from_value(g["config"].clone())?;
    c.tie_word_embeddings = false;
    let (untied, values) = gllm_web::reference::llama::random_checkpoint(&c, 17, 0.25);
    let src = folder(&g, serde_json::json!({ "tie_word_embeddings": false }), untied).await?;
    let case = &g["reranks"][0];
    let query = case["query"].as_str().ok_or("no query")?;
    let docs: Vec<&str> = case["pairs"].as_array().ok_or("no pairs")?.iter().map(|p| p["document"].as_str().unwrap_or_default()).collect();
    let reranker = Reranker::load(&gpu, &src, RerankOptions::default(), &|_| {}).await?;
    let dense = reranker.rerank(query, &docs, None).await?;
    let (yes, no) = reranker.yes_no_ids().ok_or("not a decoder")?;
    let v = c.vocab_size;
    for (i, (ids, _)) in reranker.encode(query, &docs[2..4])?.iter().enumerate() {
        let logits = gllm_web::reference::llama::forward(&c, &values, ids);
        let last = &logits[(ids.len() - 1) * v..];
        let want = last[yes as usize] - last[no as usize];
        let got = dense.iter().find(|r| r.index == i + 2).ok_or("missing index")?.logit;
        log!("untied head, doc {}: {got:.6} (CPU reference {want:.6})", i + 2);
        if (got - want).abs() >= TOL {
            return Err(format!("untied head, doc {}: {got} vs CPU reference {want}", i + 2).into());
        }
    }
    let load = gllm_web::LoadOptions { dtype: Some(gllm_web::LoadDType::Quant(gllm_web::quant::QuantFormat::Q8_0)), ..Default::default() };
    let q8 = Reranker::load(&gpu, &src, RerankOptions { load, ..Default::default() }, &|_| {}).await?.rerank(query, &docs, None).await?;
    for d in &dense {
        let q = q8.iter().find(|r| r.index == d.index).ok_or("missing index")?;
        log!("untied head, doc {}: dense {:.5}, q8_0 full head {:.5}", d.index, d.logit, q.logit);
        if (d.logit - q.logit).abs() > 0.15 {
            return Err(format!("doc {}: dense head {} vs q8_0 head {}", d.index, d.logit, q.logit).into());
        }
    }
    Ok(())
}

async fn decoder_retrieval_bad_inputs(gpu: Gpu) -> R {
    let g = golden()?;
    let (_, bytes) = checkpoint(&g)?;
    // A causal LM whose config says the head is separate, without `lm_head.weight`.
    let untied = folder(&g, serde_json::json!({ "tie_word_embeddings": false }), bytes.clone()).await?;
    match Reranker::load(&gpu, &untied, RerankOptions::default(), &|_| {}).await {
        Err(Error::Config { msg, .. }) if msg.contains("LM head") => log!("no LM head: {msg}"),
        other => return Err(format!("a reranker without an LM head gave {:?}", other.err()).into()),
    }
    // An embedder's bare trunk (no `model.` prefix) is no reranker.
    let bare = folder(&g, serde_json::json!({}), bare_trunk(&bytes)?).await?;
    match Reranker::load(&gpu, &bare, RerankOptions::default(), &|_| {}).await {
        Err(Error::Config { msg, .. }) if msg.contains("causal LM") => log!("bare trunk: {msg}"),
        other => return Err(format!("a reranker on a bare trunk gave {:?}", other.err()).into()),
    }
    // A max_length that leaves no room after the reranking prompt.
    let src = folder(&g, serde_json::json!({}), bytes.clone()).await?;
    match Reranker::load(&gpu, &src, RerankOptions { max_length: Some(40), ..Default::default() }, &|_| {}).await {
        Err(Error::Input(msg)) => log!("short max_length: {msg}"),
        other => return Err(format!("max_length 40 gave {:?}", other.err()).into()),
    }
    // Untrusted config values: heads that do not divide, a zero-width model.
    for bad in [serde_json::json!({ "num_key_value_heads": 3 }), serde_json::json!({ "hidden_size": 0 })] {
        let src = folder(&g, bad.clone(), bytes.clone()).await?;
        match Embedder::load(&gpu, &src, EmbedOptions::default(), &|_| {}).await {
            Err(Error::Config { msg, .. }) => log!("config {bad}: {msg}"),
            other => return Err(format!("embedder with config {bad} gave {:?}", other.err()).into()),
        }
        match Reranker::load(&gpu, &src, RerankOptions::default(), &|_| {}).await {
            Err(Error::Config { msg, .. }) => log!("config {bad}: {msg}"),
            other => return Err(format!("reranker with config {bad} gave {:?}", other.err()).into()),
        }
    }
    // Two pooling modes at once.
    let both = r#"{"pooling_mode_mean_tokens":true,"pooling_mode_lasttoken":true}"#;
    let src = with_st_files(folder(&g, serde_json::json!({}), bytes.clone()).await?, &g).with("1_Pooling/config.json", both);
    match Embedder::load(&gpu, &src, EmbedOptions::default(), &|_| {}).await {
        Err(Error::Config { msg, .. }) => log!("two poolings: {msg}"),
        other => return Err(format!("two pooling modes gave {:?}", other.err()).into()),
    }
    // Decoders stay off the CPU backend: `device: "auto"` gives a decoder folder the
    // adapter, and a CPU backend passed in is a typed error at load, not at the first call.
    let src = folder(&g, serde_json::json!({}), bytes.clone()).await?;
    assert!(!gllm_web::engine::cpu_backend_covers(&src).await, "a decoder folder is not for the CPU backend");
    assert!(gllm_web::engine::cpu_backend_covers(&common::model_source("all-MiniLM-L6-v2")).await);
    match Embedder::load(&Gpu::cpu(), &src, EmbedOptions::default(), &|_| {}).await {
        Err(e @ Error::Unsupported { .. }) => log!("CPU backend: {e}"),
        other => return Err(format!("a decoder embedder on the CPU backend gave {:?}", other.err()).into()),
    }
    match Reranker::load(&Gpu::cpu(), &src, RerankOptions::default(), &|_| {}).await {
        Err(e @ Error::Unsupported { .. }) => log!("CPU backend: {e}"),
        other => return Err(format!("a decoder reranker on the CPU backend gave {:?}", other.err()).into()),
    }
    // An instruction for a cross-encoder.
    let opts = RerankOptions { instruction: Some("x".into()), ..Default::default() };
    match Reranker::load(&gpu, &common::model_source("reranker-synthetic-minilm"), opts, &|_| {}).await {
        Err(Error::Input(msg)) => log!("cross-encoder instruction: {msg}"),
        other => return Err(format!("a cross-encoder with an instruction gave {:?}", other.err()).into()),
    }
    Ok(())
}

/// Last-token pooling on the real Qwen2.5-Coder-0.5B-Instruct weights against transformers'
/// `Qwen2Model` hidden states (`scripts/make_qwen_last_token_goldens.py`, f32 CPU): token ids
/// exact, cosine ≥ 0.9999 for every text, plain and with the query instruction. Opt-in
/// natively (the model is 491 MB):
///   GLLM_FETCH_QWEN=1 bash scripts/fetch-models.sh
///   cargo test --test decoder_retrieval -- --ignored --nocapture
#[cfg(not(target_arch = "wasm32"))]
#[test]
#[ignore = "needs models/qwen2.5-coder-0.5b-instruct (491 MB, GLLM_FETCH_QWEN=1 bash scripts/fetch-models.sh); run with --ignored"]
fn qwen_last_token_matches_hf() {
    let Some(gpu) = common::native_gpu() else { return };
    if let Err(e) = pollster::block_on(qwen_last_token(gpu)) {
        panic!("qwen_last_token_matches_hf: {e}");
    }
}

#[cfg(not(target_arch = "wasm32"))]
async fn qwen_last_token(gpu: Gpu) -> R {
    const QWEN_GOLDEN: &str = include_str!("goldens/qwen2.5-coder-0.5b-last-token.json");
    let g: serde_json::Value = serde_json::from_str(QWEN_GOLDEN)?;
    let src = common::model_source("qwen2.5-coder-0.5b-instruct");
    let embedder = Embedder::load(&gpu, &src, EmbedOptions::default(), &|_| {}).await?;
    assert_eq!((embedder.pooling(), embedder.dim()), (Pooling::LastToken, 896));
    let mut worst = 1.0f64;
    for case in g["cases"].as_array().ok_or("no cases")? {
        let texts: Vec<&str> = case["texts"].as_array().ok_or("no texts")?.iter().map(|t| t.as_str().unwrap_or_default()).collect();
        let opts = EmbedCallOptions { prompt: case["prompt"].as_str().map(String::from), ..Default::default() };
        let got = embedder.embed_with(&texts, &opts).await?;
        let want_ids: Vec<Vec<u32>> = case["input_ids"].as_array().ok_or("no ids")?.iter().map(u32s).collect();
        assert_eq!(got.token_ids, want_ids, "token ids");
        for (i, w) in case["embeddings"].as_array().ok_or("no embeddings")?.iter().map(common::f32s).enumerate() {
            let row = got.row(i);
            let dot: f64 = row.iter().zip(&w).map(|(a, b)| *a as f64 * *b as f64).sum();
            let norm = |v: &[f32]| v.iter().map(|x| (*x as f64).powi(2)).sum::<f64>().sqrt();
            let cos = dot / (norm(row) * norm(&w));
            log!("text {i} ({} tokens, prompt {}): cosine {cos:.8}, max |diff| {:.3e}", want_ids[i].len(), opts.prompt.is_some(), max_abs(row, &w));
            worst = worst.min(cos);
            if cos < 0.9999 {
                return Err(format!("text {i} {:?}: cosine {cos} < 0.9999", texts[i]).into());
            }
        }
    }
    log!("Qwen2.5-Coder-0.5B last-token pooling: min cosine with transformers {worst:.8}");
    Ok(())
}
