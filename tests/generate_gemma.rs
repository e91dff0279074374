//! gemma-3-270m generation straight from its Q4_K_M GGUF (`dtype: auto`: the file's Q5_0 /
//! Q4_K / Q6_K / Q8_0 blocks in the kernels; config, SentencePiece tokenizer, EOS ids from the
//! metadata; Gemma 3's chat template, which the file lacks, from
//! `src/tokenizer/gemma3_chat_template.jinja`) against the goldens of
//! `scripts/make_gemma270_goldens.py` (transformers 4.57.3 loading the same GGUF, float32 on
//! the CPU): for 3 plain prompts (one of them longer than the 512-token sliding window) and a
//! chat prompt, the prompt ids exactly, the prefill's top-1 and top-5 logits, and the greedy
//! continuation token for token, except from a step whose golden top-1/top-2 margin is under
//! 0.05 (where float rounding may part the continuations).
//!
//! Opt-in (the file is 253 MB and CI fetches only the defaults):
//!   GLLM_FETCH_GEMMA270=1 bash scripts/fetch-models.sh models
//!   cargo test --test generate_gemma -- --ignored --nocapture
//! In the browser (not ignored there; this file is not in `scripts/test.sh`'s list), with
//! the models folder served:
//!   node scripts/serve.mjs models 8791 &
//!   GLLM_MODEL_URL=http://127.0.0.1:8791 WASM_BINDGEN_TEST_TIMEOUT=1800 \
//!     wasm-pack test --headless --chrome --chromedriver /usr/bin/chromedriver --test generate_gemma -- --nocapture
//! The browser checks the three short cases (prompt ids, prefill, 20 greedy tokens each; the
//! 1742-token prompt would take SwiftShader many minutes). Measured results: SPEC/gemma.md.

mod common;

use common::{check_gguf_goldens, R};
use gllm_web::Gpu;

#[cfg(target_arch = "wasm32")]
wasm_bindgen_test::wasm_bindgen_test_configure!(run_in_browser);

const FILE: &str = "gemma-3-270m-q4_k_m.gguf";
const GOLDEN: &str = include_str!("goldens/gemma-3-270m.json");

async fn check(gpu: Gpu) -> R {
    // With an f32 and with an f16 KV cache (the margin rule of `check_gguf_goldens` either way).
    for kv in [gllm_web::KvDType::F32, gllm_web::KvDType::F16] {
        if cfg!(target_arch = "wasm32") {
            // SwiftShader runs the 1742-token prompt's prefill for many minutes: the browser
            // checks the three short cases (capital, code, chat), all 20 greedy tokens each.
            let mut golden: serde_json::Value = serde_json::from_str(GOLDEN)?;
            if let Some(cases) = golden["cases"].as_array_mut() {
                cases.retain(|c| c["name"] != "long");
            }
            check_gguf_goldens(&gpu, FILE, &golden.to_string(), 20, kv).await?;
        } else {
            check_gguf_goldens(&gpu, FILE, GOLDEN, 20, kv).await?;
        }
    }
    Ok(())
}

#[cfg(not(target_arch = "wasm32"))]
#[test]
#[ignore = "needs models/gguf/gemma-3-270m-q4_k_m.gguf (253 MB, GLLM_FETCH_GEMMA270=1 bash scripts/fetch-models.sh models); run with --ignored"]
fn gemma270_gguf_matches_goldens() {
    let Some(gpu) = common::native_gpu() else { return };
    let path = format!("{}/models/gguf/{FILE}", env!("CARGO_MANIFEST_DIR"));
    assert!(std::path::Path::new(&path).exists(), "{path} is missing: GLLM_FETCH_GEMMA270=1 bash scripts/fetch-models.sh models");
    if let Err(e) = pollster::block_on(check(gpu)) {
        panic!("gemma270_gguf_matches_goldens: {e}");
    }
}

#[cfg(target_arch = "wasm32")]
#[wasm_bindgen_test::wasm_bindgen_test]
async fn gemma270_gguf_matches_goldens() {
    let Some(gpu) = common::web_gpu().await else { return };
    if let Err(e) = check(gpu).await {
        panic!("gemma270_gguf_matches_goldens: {e}");
    }
}

/// Context shift (`GenerateOptions::cache_tokens` + `context_shift`, StreamingLLM sinks) with
/// Gemma's two RoPE bases: each layer's kept keys are rotated back by its own base
/// (`Gemma3ForCausalLM::shift_cache`). 96 greedy tokens through a 32-token cache complete;
/// the tokens before the first shift equal plain greedy decoding; at the end the cache holds
/// the 4 sinks and the most recent tokens, the rest counted in `evicted`.
#[cfg(not(target_arch = "wasm32"))]
#[test]
#[ignore = "needs models/gguf/gemma-3-270m-q4_k_m.gguf (253 MB, GLLM_FETCH_GEMMA270=1 bash scripts/fetch-models.sh models); run with --ignored"]
fn gemma270_context_shift() {
    use gllm_web::{FinishReason, GenerateOptions, Generator, GeneratorOptions, Prompt};
    let Some(gpu) = common::native_gpu() else { return };
    let run = async {
        let opts = GeneratorOptions { load: gllm_web::LoadOptions { weights: Some(FILE.into()), ..Default::default() }, kv_dtype: None };
        let mut g = Generator::load(&gpu, &common::model_source("gguf"), opts, &|_| {}).await?;
        let (cache, new, sinks) = (32usize, 96usize, gllm_web::engine::DEFAULT_SINK_TOKENS);
        let prompt = Prompt::Text("The river rises in the northern hills");
        let plain = g.generate(prompt, &GenerateOptions { max_new_tokens: new, ignore_eos: true, ..Default::default() }).await?;
        let shifted = g
            .generate(prompt, &GenerateOptions { max_new_tokens: new, ignore_eos: true, cache_tokens: Some(cache), prefix_cache: false, ..Default::default() })
            .await?;
        let n = shifted.prompt_ids.len();
        if shifted.tokens.len() != new || shifted.finish_reason != FinishReason::Length {
            return Err(format!("{} of {new} tokens in a {cache}-token cache ({:?})", shifted.tokens.len(), shifted.finish_reason).into());
        }
        let same = cache - n + 1;
        if shifted.tokens[..same] != plain.tokens[..same] {
            return Err(format!("before the first shift: {:?} != plain {:?}", &shifted.tokens[..same], &plain.tokens[..same]).into());
        }
        let mut full = shifted.prompt_ids.clone();
        full.extend(&shifted.tokens[..new - 1]);
        let seen = g.cached_ids().to_vec();
        let recent = seen.len() - sinks;
        if seen.len() > cache || seen[..sinks] != full[..sinks] || seen[sinks..] != full[full.len() - recent..] || shifted.evicted != full.len() - seen.len() {
            return Err(format!("after {} tokens the cache holds {seen:?} (evicted {})", full.len(), shifted.evicted).into());
        }
        println!(
            "gemma context shift: {new} tokens through a {cache}-token cache; the first {same} equal plain greedy, {} of {new} in all; {} evicted; {:?}",
            shifted.tokens.iter().zip(&plain.tokens).take_while(|(a, b)| a == b).count(),
            shifted.evicted,
            shifted.text
        );
        R::Ok(())
    };
    if let Err(e) = pollster::block_on(run) {
        panic!("gemma270_context_shift: {e}");
    }
}
