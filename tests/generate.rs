//! SmolLM2-135M-Instruct (Llama architecture) end to end against the goldens
//! (transformers, float32 activations on the converted F16 weights): prompt ids, prefill
//! argmax at every position, last logits, the 20-token greedy continuation; then streaming,
//! stop strings, abort, seeded sampling and the one-4-byte-readback-per-token rule.
//! Natively and in headless Chrome.
//!
//! The SmolLM2 Q4_1 GGUF itself, loaded directly with its blocks kept, against the same
//! goldens (both targets).
//!
//! Qwen2.5-Coder-0.5B-Instruct (Qwen2) is checked the same way natively outside CI (1.3 GB),
//! converted and as its GGUF: `cargo test --test generate -- --ignored qwen` with
//! `models/qwen2.5-coder-0.5b-instruct` and `models/gguf/qwen2.5-coder-0.5b-instruct.gguf`.

mod common;

use common::{check_gguf_goldens, f32s, u32s, R};
use gllm_web::{ChatMessage as Message, GenerateOptions, Generator, GeneratorOptions, Gpu, KvDType, LoadDType, Prompt, SamplingConfig};

#[cfg(target_arch = "wasm32")]
wasm_bindgen_test::wasm_bindgen_test_configure!(run_in_browser);

const SMOLLM2: &str = include_str!("goldens/smollm2-135m-instruct-q4_1.json");

gpu_tests! {
    smollm2_matches_goldens_streams_stops_aborts_samples => smollm2,
    smollm2_gguf_q4_1_blocks_match_goldens => smollm2_gguf,
}

async fn load(gpu: &Gpu, name: &str, dtype: LoadDType, kv_dtype: KvDType) -> Result<Generator, gllm_web::Error> {
    let opts = GeneratorOptions { kv_dtype: Some(kv_dtype), ..GeneratorOptions::with_dtype(dtype) };
    Generator::load(gpu, &common::model_source(name), opts, &|_| {}).await
}

/// Checks every golden case of `golden` with f32 activations: prompt ids, prefill argmax,
/// last logits, and `greedy_tokens` greedy tokens.
async fn check_goldens(g: &mut Generator, model: &str, golden: &str, greedy_tokens: usize) -> R {
    let golden: serde_json::Value = serde_json::from_str(golden)?;
    // The same set of EOS ids (their order in the config is not significant).
    let sorted = |mut v: Vec<u32>| {
        v.sort_unstable();
        v
    };
    if sorted(g.eos_ids().to_vec()) != sorted(u32s(&golden["eos_token_ids"])) {
        return Err(format!("eos ids {:?} != golden {}", g.eos_ids(), golden["eos_token_ids"]).into());
    }
    let vocab = g.vocab_size();
    for case in golden["cases"].as_array().ok_or("no cases")? {
        let name = case["name"].as_str().unwrap_or("?");
        let want_ids = u32s(&case["input_ids"]);
        // Prompt ids: raw text as is; the chat case through the model's chat template.
        let messages: Vec<Message> = match case.get("messages") {
            Some(m) => serde_json::from_value(m.clone())?,
            None => vec![],
        };
        let prompt_text = case["prompt"].as_str().unwrap_or_default().to_string();
        let prompt = if messages.is_empty() { Prompt::Text(&prompt_text) } else { Prompt::Messages(&messages) };
        let ids = g.prompt_ids(prompt)?;
        if ids != want_ids {
            return Err(format!("{model} {name}: prompt ids {ids:?} != golden {want_ids:?}").into());
        }
        // Prefill: argmax at every position, last logits within 1e-2, top-5 ids equal.
        let logits = g.prompt_logits(&ids).await?;
        let argmax: Vec<u32> = logits
            .chunks_exact(vocab)
            .map(|r| (0..vocab).max_by(|&a, &b| r[a].total_cmp(&r[b]).then(b.cmp(&a))).unwrap_or(0) as u32)
            .collect();
        if argmax != u32s(&case["prefill_argmax_per_position"]) {
            return Err(format!("{model} {name}: prefill argmax {argmax:?} != golden {}", case["prefill_argmax_per_position"]).into());
        }
        let last = &logits[(ids.len() - 1) * vocab..];
        let mut worst = 0f32;
        for (i, w) in f32s(&case["last_logits_first8"]).iter().enumerate() {
            worst = worst.max((last[i] - w).abs());
        }
        let top5 = u32s(&case["last_logits_top5_ids"]);
        for (id, w) in top5.iter().zip(f32s(&case["last_logits_top5_values"])) {
            worst = worst.max((last[*id as usize] - w).abs());
        }
        let mut order: Vec<usize> = (0..vocab).collect();
        order.sort_by(|&a, &b| last[b].total_cmp(&last[a]));
        let got5: Vec<u32> = order[..5].iter().map(|&i| i as u32).collect();
        log!("{model} {name}: max |logit - golden| {worst:.2e}, top5 {got5:?}");
        if worst > 1e-2 || got5 != top5 {
            return Err(format!("{model} {name}: last logits differ by {worst} (top5 {got5:?} vs {top5:?})").into());
        }
        // Greedy continuation through the real decode path (GPU sampling, KV cache).
        let want_new = u32s(&case["greedy_new_ids"]);
        let k = want_new.len().min(greedy_tokens);
        let opts = GenerateOptions { max_new_tokens: k, ..Default::default() };
        let out = g.generate(prompt, &opts).await?;
        if out.prompt_ids != want_ids || out.tokens != want_new[..k] {
            return Err(format!("{model} {name}: greedy {:?} != golden {:?}", out.tokens, &want_new[..k]).into());
        }
        let stopped = case["greedy_stopped_on_eos"].as_bool() == Some(true) && k == want_new.len();
        let want_reason = if stopped { "eos" } else { "length" };
        if out.finish_reason.as_str() != want_reason {
            return Err(format!("{model} {name}: finish {:?}, want {want_reason}", out.finish_reason).into());
        }
        log!("{model} {name}: {k} greedy tokens equal the golden: {:?}", out.text);
    }
    Ok(())
}

/// The SmolLM2 Q4_1 GGUF loaded directly (`dtype: auto`: its Q4_1 / Q8_0 blocks in the
/// kernels, config, tokenizer and chat template from the metadata) against the goldens,
/// which transformers made from the F16 conversion of the same file: prompt ids exact;
/// prefill top-1 and last logits close (the blocks decode to values the F16 conversion
/// rounds); greedy tokens equal except at a step whose golden top-1/top-2 margin is under
/// 0.05, where the continuations may part. With an f32 and with an f16 KV cache.
async fn smollm2_gguf(_shared: Gpu) -> R {
    // Its own device: the other test counts the shared device's readbacks per token.
    let gpu = Gpu::new().await?;
    let greedy = if cfg!(target_arch = "wasm32") { 3 } else { 20 };
    for kv in [KvDType::F32, KvDType::F16] {
        check_gguf_goldens(&gpu, "SmolLM2-135M-Instruct.Q4_1.gguf", SMOLLM2, greedy, kv).await?;
    }
    Ok(())
}

/// Qwen2.5-Coder-0.5B-Instruct's GGUF (a Q5_0 / Q8_0 / Q4_K / Q6_K mix) loaded directly,
/// against the goldens of its F16 conversion, as [`smollm2_gguf`]. Opt-in (the file is
/// 490 MB): `GLLM_FETCH_QWEN=1 bash scripts/fetch-models.sh models`, then
/// `cargo test --test generate -- --ignored qwen05_gguf`.
#[cfg(not(target_arch = "wasm32"))]
#[test]
#[ignore = "needs models/gguf/qwen2.5-coder-0.5b-instruct.gguf (490 MB); run with --ignored"]
fn qwen05_gguf_matches_goldens() {
    let Some(gpu) = common::native_gpu() else { return };
    let golden = include_str!("goldens/qwen2.5-coder-0.5b-instruct.json");
    for kv in [KvDType::F32, KvDType::F16] {
        if let Err(e) = pollster::block_on(check_gguf_goldens(&gpu, "qwen2.5-coder-0.5b-instruct.gguf", golden, 20, kv)) {
            panic!("qwen05_gguf_matches_goldens (kv {}): {e}", kv.as_str());
        }
    }
}

async fn smollm2(gpu: Gpu) -> R {
    // The checkpoint's F16 weights kept as F16 on the GPU (half the memory traffic of F32
    // on the software adapters of CI) with f32 activations and accumulation: every weight
    // value is exactly the golden's, so this is the goldens' f32 computation up to
    // summation order. Measured logit error about 1e-4, far below every greedy margin
    // (smallest 0.068), so the ids must match exactly. An f32 KV cache: the goldens'
    // precision (the f16 cache below).
    let mut g = load(&gpu, "smollm2-135m-instruct", LoadDType::F16, KvDType::F32).await?;
    if g.kv_dtype() != KvDType::F32 {
        return Err("kv_dtype f32 was asked for".into());
    }
    // SwiftShader runs a decode step in seconds (every matvec workgroup ends in a barrier
    // tree it emulates slowly), so the browser checks every prompt and prefill but decodes
    // only a few tokens; natively the whole 20-token continuation.
    let greedy = if cfg!(target_arch = "wasm32") { 3 } else { 20 };
    check_goldens(&mut g, "smollm2-135m-instruct", SMOLLM2, greedy).await?;
    streams_stops_aborts_samples(&gpu, &mut g).await?;
    prefix_cache_across_turns(&mut g).await?;
    speculative_equals_greedy(&mut g).await?;
    context_shift_at_the_cache_limit(&mut g).await?;
    drop(g);
    smollm2_kv_f16(&gpu, greedy).await
}

/// The same goldens over an f16 KV cache (keys and values rounded to IEEE half, relative
/// 2⁻¹¹): greedy tokens equal except at a step whose golden top-1/top-2 margin is under
/// 0.05; prefill top-1 equal and top-5 logits within 0.05 of the golden's. Then the paths
/// that move or reuse cache rows: speculative decoding, the prefix cache, the context shift.
async fn smollm2_kv_f16(gpu: &Gpu, greedy: usize) -> R {
    let mut g = load(gpu, "smollm2-135m-instruct", LoadDType::F16, KvDType::F16).await?;
    if g.kv_dtype() != KvDType::F16 {
        return Err("kv_dtype f16 was asked for".into());
    }
    common::check_goldens_within_margins(&mut g, "smollm2-135m-instruct kv f16", SMOLLM2, greedy, 0.05).await?;
    prefix_cache_across_turns(&mut g).await?;
    speculative_equals_greedy(&mut g).await?;
    context_shift_at_the_cache_limit(&mut g).await
}

/// A conversation outgrowing the cache (`context_shift`, StreamingLLM's attention sinks):
/// - a prompt longer than the cache keeps its first 4 tokens and its end, and the output is
///   exactly that of the kept tokens given as the prompt;
/// - generating 3× the cache's size completes; until the first shift the tokens are plain
///   greedy's, and at the end the cache holds (what the model sees) the 4 sinks and the most
///   recent tokens, the rest counted in `evicted`;
/// - without `context_shift` the same prompt is an error and generation stops at the cache's
///   end.
async fn context_shift_at_the_cache_limit(g: &mut Generator) -> R {
    let browser = cfg!(target_arch = "wasm32");
    let (cache, new) = if browser { (20, 60) } else { (32, 96) };
    let sinks = gllm_web::engine::DEFAULT_SINK_TOKENS;
    // 1. a long prompt: its middle dropped
    let long = "The quick brown fox jumps over the lazy dog. ".repeat(8) + "The capital of France is";
    let opts = GenerateOptions { max_new_tokens: 4, cache_tokens: Some(cache), prefix_cache: false, ..Default::default() };
    let out = g.generate(Prompt::Text(&long), &opts).await?;
    let ids = out.prompt_ids.clone();
    let room = 4usize.clamp(1, (cache - sinks) / 2);
    let kept: Vec<u32> = ids[..sinks].iter().chain(&ids[ids.len() - (cache - room - sinks)..]).copied().collect();
    if out.evicted != ids.len() - kept.len() {
        return Err(format!("prompt of {} tokens in a cache of {cache}: evicted {} (want {})", ids.len(), out.evicted, ids.len() - kept.len()).into());
    }
    let direct = g.generate(Prompt::Ids(&kept), &GenerateOptions { max_new_tokens: 4, prefix_cache: false, context_shift: false, ..Default::default() }).await?;
    if out.tokens != direct.tokens {
        return Err(format!("truncated prompt gave {:?}, the kept tokens as the prompt {:?}", out.tokens, direct.tokens).into());
    }
    log!("context shift: a {}-token prompt in a {cache}-token cache kept {} (4 sinks + its end), {:?} as from the kept ids", ids.len(), kept.len(), out.text);

    // 2. generation through 3x the cache
    let prompt = Prompt::Text("The capital of France is");
    let plain = g.generate(prompt, &GenerateOptions { max_new_tokens: new, ignore_eos: true, ..Default::default() }).await?;
    let long_run = g.generate(prompt, &GenerateOptions { max_new_tokens: new, ignore_eos: true, cache_tokens: Some(cache), prefix_cache: false, ..Default::default() }).await?;
    let n = long_run.prompt_ids.len();
    if long_run.tokens.len() != new || long_run.finish_reason != gllm_web::FinishReason::Length {
        return Err(format!("{} of {new} tokens in a {cache}-token cache ({:?})", long_run.tokens.len(), long_run.finish_reason).into());
    }
    // the step that writes cache row `cache` is the first after a shift: tokens before it are plain greedy's
    let same = cache - n + 1;
    if long_run.tokens[..same] != plain.tokens[..same] {
        return Err(format!("before the first shift: {:?} != plain {:?}", &long_run.tokens[..same], &plain.tokens[..same]).into());
    }
    let mut full = long_run.prompt_ids.clone();
    full.extend(&long_run.tokens[..new - 1]);
    let seen = g.cached_ids().to_vec();
    let recent = seen.len() - sinks;
    if seen.len() > cache || seen[..sinks] != full[..sinks] || seen[sinks..] != full[full.len() - recent..] || long_run.evicted != full.len() - seen.len() {
        return Err(format!("after {} tokens the cache holds {seen:?} (evicted {})", full.len(), long_run.evicted).into());
    }
    log!(
        "context shift: {new} tokens through a {cache}-token cache; the first {same} equal plain greedy; at the end the model sees {sinks} sinks + the last {recent} tokens ({} evicted): {:?}",
        long_run.evicted,
        long_run.text
    );
    if !browser {
        // speculative decoding shifts the same way (a verify pass needs k + 1 rows)
        let spec = GenerateOptions { speculative: Some(gllm_web::Speculative::default()), max_new_tokens: new, ignore_eos: true, cache_tokens: Some(cache), prefix_cache: false, ..Default::default() };
        let sp = g.generate(prompt, &spec).await?;
        if sp.tokens.len() != new || sp.tokens[..same - 8] != plain.tokens[..same - 8] {
            return Err(format!("speculative through the cache: {} tokens, {:?}", sp.tokens.len(), sp.tokens).into());
        }
        // drafts longer than a shift can free are cut to fit: k 32 in a 20-token cache
        let wide = GenerateOptions { speculative: Some(gllm_web::Speculative { k: 32, ngram: 3 }), max_new_tokens: 30, ignore_eos: true, cache_tokens: Some(20), prefix_cache: false, ..Default::default() };
        let sp = g.generate(prompt, &wide).await?;
        if sp.tokens.len() != 30 {
            return Err(format!("k 32 through a 20-token cache: {} tokens", sp.tokens.len()).into());
        }
    }

    // 3. without context shift
    let strict = GenerateOptions { max_new_tokens: new, ignore_eos: true, cache_tokens: Some(cache), context_shift: false, ..Default::default() };
    if g.generate(Prompt::Text(&long), &strict).await.is_ok() {
        return Err("a prompt longer than the cache was accepted without context_shift".into());
    }
    let stopped = g.generate(prompt, &strict).await?;
    if stopped.tokens.len() != cache - n || stopped.finish_reason != gllm_web::FinishReason::Length || stopped.evicted != 0 {
        return Err(format!("without context_shift: {} tokens ({:?}), want {}", stopped.tokens.len(), stopped.finish_reason, cache - n).into());
    }
    Ok(())
}

/// Prompt-lookup speculative decoding gives the plain greedy tokens, token for token: on
/// the goldens' prompts and on prompts of our own where drafts pay (text that repeats) and
/// where they are partly rejected (the cache rolled back mid-draft), with stop strings and
/// EOS inside an accepted draft handled like plain decoding.
async fn speculative_equals_greedy(g: &mut Generator) -> R {
    use gllm_web::Speculative;
    let golden: serde_json::Value = serde_json::from_str(SMOLLM2)?;
    let n = if cfg!(target_arch = "wasm32") { 6 } else { 24 };
    let repeat = "def add(a, b):\n    return a + b\n\ndef sub(a, b):\n    return a - b\n\ndef add(a, b):\n    return";
    let list = "Monday, Tuesday, Wednesday, Thursday, Friday. Monday, Tuesday,";
    let mut prompts: Vec<String> = golden["cases"].as_array().ok_or("no cases")?.iter().filter_map(|c| c["prompt"].as_str().map(String::from)).collect();
    prompts.extend([repeat.to_string(), list.to_string()]);
    let (mut drafted, mut accepted, mut partial) = (0, 0, 0);
    for p in &prompts {
        let plain = g.generate(Prompt::Text(p), &GenerateOptions { max_new_tokens: n, prefix_cache: false, ..Default::default() }).await?;
        for sp in [Speculative::default(), Speculative { k: 3, ngram: 1 }] {
            let opts = GenerateOptions { max_new_tokens: n, prefix_cache: false, speculative: Some(sp), ..Default::default() };
            let out = g.generate(Prompt::Text(p), &opts).await?;
            let st = out.speculative.ok_or("no speculative stats")?;
            if out.tokens != plain.tokens || out.text != plain.text || out.finish_reason != plain.finish_reason {
                return Err(format!("speculative {sp:?} on {p:?}: {:?} != greedy {:?}", out.tokens, plain.tokens).into());
            }
            drafted += st.drafted;
            accepted += st.accepted;
            partial += st.partial;
            log!("speculative k {} ngram {}: {} tokens in {} verify + {} plain steps, {}/{} drafts accepted on {p:?}", sp.k, sp.ngram, out.tokens.len(), st.verify_steps, st.plain_steps, st.accepted, st.drafted);
        }
    }
    // A stop string inside an accepted draft: the same text as plain decoding.
    let stop = GenerateOptions { max_new_tokens: n, stop: vec!["b\n".into()], prefix_cache: false, ..Default::default() };
    let plain = g.generate(Prompt::Text(repeat), &stop).await?;
    let spec = g.generate(Prompt::Text(repeat), &GenerateOptions { speculative: Some(Speculative::default()), ..stop.clone() }).await?;
    if (spec.text.as_str(), spec.finish_reason) != (plain.text.as_str(), plain.finish_reason) {
        return Err(format!("stop string: speculative {:?} != plain {:?}", spec.text, plain.text).into());
    }
    if accepted == 0 || partial == 0 {
        return Err(format!("drafts never paid ({accepted} of {drafted} accepted) or were never rejected mid-draft ({partial})").into());
    }
    Ok(())
}

/// A chat's second turn reuses the KV cache of the first for their common prefix: it
/// prefills only the tokens after it (counted), and its output equals a run that prefills
/// the whole history (`prefix_cache: false`).
async fn prefix_cache_across_turns(g: &mut Generator) -> R {
    let new = if cfg!(target_arch = "wasm32") { 3 } else { 8 };
    let opts = GenerateOptions { max_new_tokens: new, ..Default::default() };
    let turn1 = vec![Message::new("user", "What is the capital of France?")];
    let first = g.generate(Prompt::Messages(&turn1), &opts).await?;
    let turn2 = vec![
        Message::new("user", "What is the capital of France?"),
        Message::new("assistant", &first.text),
        Message::new("user", "And of Italy?"),
    ];
    let ids2 = g.prompt_ids(Prompt::Messages(&turn2))?;
    // What the cache holds after turn 1: its prompt and its new tokens but the last.
    let mut held = first.prompt_ids.clone();
    held.extend(&first.tokens[..first.tokens.len() - 1]);
    let common = held.iter().zip(&ids2).take_while(|(a, b)| a == b).count().min(ids2.len() - 1);
    let cached = g.generate(Prompt::Messages(&turn2), &opts).await?;
    let prefilled = g.last_prefill_tokens();
    let fresh = g.generate(Prompt::Messages(&turn2), &GenerateOptions { prefix_cache: false, ..opts.clone() }).await?;
    log!(
        "prefix cache: turn 2 has {} prompt tokens, {common} shared with turn 1, prefilled {prefilled} (fresh run {}); {:?}",
        ids2.len(),
        g.last_prefill_tokens(),
        cached.text
    );
    if common < first.prompt_ids.len() - 1 || prefilled != ids2.len() - common || g.last_prefill_tokens() != ids2.len() {
        return Err(format!("turn 2 prefilled {prefilled} of {} tokens; {common} are shared with turn 1", ids2.len()).into());
    }
    if cached.tokens != fresh.tokens {
        return Err(format!("turn 2 with the cache {:?} != without {:?}", cached.tokens, fresh.tokens).into());
    }
    Ok(())
}

async fn streams_stops_aborts_samples(gpu: &Gpu, g: &mut Generator) -> R {
    let golden: serde_json::Value = serde_json::from_str(SMOLLM2)?;
    let capital = &golden["cases"][0];
    let want = u32s(&capital["greedy_new_ids"]);
    let prompt = Prompt::Text("The capital of France is");

    let browser = cfg!(target_arch = "wasm32");
    // Streaming: pieces concatenate to the text; one readback of 4 bytes per token and no
    // buffer or pipeline created per token.
    let n = if browser { 3 } else { 6 };
    let opts = GenerateOptions { max_new_tokens: n, ..Default::default() };
    let mut pieces = Vec::new();
    let mut stats = Vec::new();
    let before = gpu.stats();
    let out = g
        .generate_stream(prompt, &opts, &mut |piece, id| {
            pieces.push((piece.to_string(), id));
            stats.push(gpu.stats());
            true
        })
        .await?;
    // The decode loop runs one step ahead, but never past max_new_tokens: n tokens, n reads.
    let reads = gpu.stats().readbacks - before.readbacks;
    if reads != n {
        return Err(format!("{reads} readbacks for {n} tokens").into());
    }
    if out.tokens != want[..n] {
        return Err(format!("f16 weights: greedy {:?} != golden {:?}", out.tokens, &want[..n]).into());
    }
    let joined: String = pieces.iter().map(|p| p.0.as_str()).collect();
    if joined != out.text || !out.text.starts_with(if browser { " Paris" } else { " Paris." }) {
        return Err(format!("streamed {joined:?} vs text {:?}", out.text).into());
    }
    for w in stats.windows(2) {
        let (a, b) = (w[0], w[1]);
        if b.readbacks - a.readbacks != 1 || b.readback_bytes - a.readback_bytes != 4 || b.buffers_created != a.buffers_created || b.pipelines != a.pipelines {
            return Err(format!("per-token GPU work: {a:?} -> {b:?}").into());
        }
    }
    let dispatches = g.decode_dispatches().ok_or("no decode step recorded")?;
    log!("smollm2: {dispatches} dispatches per decoded token; pieces {pieces:?}");

    // Abort after 2 tokens; the generator stays usable.
    let mut count = 0;
    let opts = GenerateOptions { max_new_tokens: 10, ..Default::default() };
    let out = g.generate_stream(prompt, &opts, &mut |_, _| { count += 1; count < 2 }).await?;
    if out.finish_reason.as_str() != "abort" || out.tokens.len() != 2 {
        return Err(format!("abort: {:?} after {:?}", out.finish_reason, out.tokens).into());
    }
    let out = g.generate(prompt, &GenerateOptions { max_new_tokens: 2, ..Default::default() }).await?;
    if out.tokens != want[..2] {
        return Err(format!("after abort: {:?}", out.tokens).into());
    }
    if browser {
        return Ok(());
    }

    // Stop string: the text ends before it.
    let opts = GenerateOptions { max_new_tokens: 8, stop: vec!["\n".into()], ..Default::default() };
    let out = g.generate(prompt, &opts).await?;
    if out.text != " Paris." || out.finish_reason.as_str() != "stop" {
        return Err(format!("stop string: {:?} {:?}", out.text, out.finish_reason).into());
    }


    // Seeded sampling is reproducible; top_k = 1 is greedy.
    let sampled = |seed| GenerateOptions {
        max_new_tokens: 5,
        sampling: SamplingConfig { temperature: 0.9, top_k: 50, top_p: 0.95, repetition_penalty: 1.1, seed },
        ..Default::default()
    };
    let a = g.generate(prompt, &sampled(7)).await?;
    let b = g.generate(prompt, &sampled(7)).await?;
    if a.tokens != b.tokens {
        return Err(format!("same seed, different tokens: {:?} {:?}", a.tokens, b.tokens).into());
    }
    let k1 = GenerateOptions {
        max_new_tokens: 4,
        sampling: SamplingConfig { temperature: 1.5, top_k: 1, seed: 3, ..Default::default() },
        ..Default::default()
    };
    if g.generate(prompt, &k1).await?.tokens != want[..4] {
        return Err("top_k 1 is not greedy".into());
    }
    log!("smollm2 sampled (seed 7): {:?}", a.text);

    // Chat: one user message through the template, greedy, stops on <|im_end|>.
    let chat = &golden["cases"][2];
    let msgs = vec![Message::new("user", "What is the capital of France?")];
    let out = g.generate(Prompt::Messages(&msgs), &GenerateOptions { max_new_tokens: 20, ..Default::default() }).await?;
    if out.tokens != u32s(&chat["greedy_new_ids"]) || out.text != "The capital of France is Paris." || out.finish_reason.as_str() != "eos" {
        return Err(format!("chat: {:?} {:?} {:?}", out.tokens, out.text, out.finish_reason).into());
    }
    Ok(())
}

#[cfg(not(target_arch = "wasm32"))]
#[test]
#[ignore = "needs models/qwen2.5-coder-0.5b-instruct (1.3 GB); run with --ignored"]
fn qwen05_matches_goldens() {
    let Some(gpu) = own_gpu() else { return };
    let golden = include_str!("goldens/qwen2.5-coder-0.5b-instruct.json");
    let r: R = pollster::block_on(async {
        let mut g = load(&gpu, "qwen2.5-coder-0.5b-instruct", LoadDType::F32, KvDType::F32).await?;
        check_goldens(&mut g, "qwen2.5-coder-0.5b-instruct", golden, 20).await?;
        drop(g);
        // An f16 KV cache: the margin rule (as SmolLM2's `smollm2_kv_f16`).
        let mut g = load(&gpu, "qwen2.5-coder-0.5b-instruct", LoadDType::F32, KvDType::F16).await?;
        common::check_goldens_within_margins(&mut g, "qwen2.5-coder-0.5b-instruct kv f16", golden, 20, 0.05).await
    });
    if let Err(e) = r {
        panic!("qwen05_matches_goldens: {e}");
    }
}

/// A device of its own for a native test: the SmolLM2 test counts the shared device's
/// readbacks per token, and tests run in parallel.
#[cfg(not(target_arch = "wasm32"))]
fn own_gpu() -> Option<Gpu> {
    common::native_gpu()?;
    match pollster::block_on(Gpu::new()) {
        Ok(g) => Some(g),
        Err(e) => panic!("a second native device: {e}"),
    }
}

/// Teacher-forced text for the quantized-weight agreement check (about 300 tokens).
#[cfg(not(target_arch = "wasm32"))]
const FORCED_TEXT: &str = "Paris is the capital and largest city of France. It is located on the Seine river, \
in the north of the country, at the heart of the Ile-de-France region. The city has been one of the major \
centres of finance, diplomacy, commerce, fashion, science and the arts in Europe since the seventeenth century. \
Its museums and architectural landmarks draw millions of visitors every year: the Louvre received more visitors \
than any other art museum in the world, and the Eiffel Tower, built for the World's Fair of 1889, became a symbol \
of the city. The metro, opened in 1900, carries several million passengers a day, and two international airports \
connect the region with the rest of the world. Paris is also known for its cafes, its bookshops along the river \
and its long avenues laid out in the nineteenth century, when the prefect Haussmann rebuilt large parts of the old \
town with wide boulevards, parks and a new system of sewers and water supply. Today the city hosts the headquarters \
of several international organisations, and its football club and its tennis tournament are followed far beyond France.";

/// Quantized weights on SmolLM2 (quantized on load from the checkpoint's F16): greedy
/// continuations of the golden text cases with q8_0 and q4_0 weights against the f32-
/// activation golden, and teacher-forced top-1 agreement of q8_0 / q4_0 with the F16
/// weights over `FORCED_TEXT`. Natively only (SwiftShader would take minutes).
#[cfg(not(target_arch = "wasm32"))]
#[test]
fn smollm2_quantized_weights_agree() {
    use gllm_web::quant::QuantFormat;
    let Some(gpu) = own_gpu() else { return };
    let r: R = pollster::block_on(async {
        let golden: serde_json::Value = serde_json::from_str(SMOLLM2)?;
        let mut reference = load(&gpu, "smollm2-135m-instruct", LoadDType::F16, KvDType::F32).await?;
        let ids = reference.prompt_ids(Prompt::Text(FORCED_TEXT))?;
        let vocab = reference.vocab_size();
        let argmax = |l: &[f32]| -> Vec<usize> {
            l.chunks_exact(vocab).map(|r| (0..vocab).max_by(|&a, &b| r[a].total_cmp(&r[b]).then(b.cmp(&a))).unwrap_or(0)).collect()
        };
        let want = argmax(&reference.prompt_logits(&ids).await?);
        drop(reference);
        for (fmt, min_greedy, min_forced) in [(QuantFormat::Q8_0, 18, 0.95), (QuantFormat::Q4_0, 0, 0.60)] {
            let mut g = load(&gpu, "smollm2-135m-instruct", LoadDType::Quant(fmt), KvDType::F32).await?;
            let got = argmax(&g.prompt_logits(&ids).await?);
            let agree = got.iter().zip(&want).filter(|(a, b)| a == b).count() as f64 / want.len() as f64;
            let mut greedy = Vec::new();
            for case in golden["cases"].as_array().ok_or("no cases")?.iter().filter(|c| c.get("messages").is_none()) {
                let want_new = u32s(&case["greedy_new_ids"]);
                let prompt = case["prompt"].as_str().unwrap_or_default();
                let out = g.generate(Prompt::Text(prompt), &GenerateOptions { max_new_tokens: want_new.len(), ..Default::default() }).await?;
                let same = out.tokens.iter().zip(&want_new).filter(|(a, b)| a == b).count();
                log!("smollm2 {fmt:?}: {same}/{} greedy tokens equal the f32 golden for {prompt:?}: {:?}", want_new.len(), out.text);
                greedy.push((same, want_new.len()));
            }
            log!("smollm2 {fmt:?}: teacher-forced top-1 agreement with F16 weights {:.3} over {} positions", agree, want.len());
            // q8_0: the bar (18 of 20 greedy tokens). q4_0: reported, with a floor that
            // catches a broken kernel rather than grades the format (measured on lavapipe:
            // q8_0 20/20 and 20/20, agreement 0.979; q4_0 0/20 and 1/20, 0.695 — the
            // checkpoint is already Q4_1-rounded and 135M parameters quantize poorly).
            if greedy.iter().any(|&(same, n)| same < min_greedy.min(n)) || agree < min_forced {
                return Err(format!("{fmt:?}: greedy {greedy:?}, teacher-forced agreement {agree:.3} (want >= {min_greedy} tokens, >= {min_forced})").into());
            }
        }
        Ok(())
    });
    if let Err(e) = r {
        panic!("smollm2_quantized_weights_agree: {e}");
    }
}

/// A pre-quantized checkpoint (`gllm quantize`, `loader::prequant`) loads the same blocks as
/// quantize-on-load: q4_0 SmolLM2 prompt logits are bit-identical either way, and the file is
/// a fraction of the original. Natively only (the writer is a native tool).
#[cfg(not(target_arch = "wasm32"))]
#[test]
fn smollm2_prequantized_equals_quantize_on_load() {
    use gllm_web::loader::{prequant, FileSource};
    use gllm_web::quant::QuantFormat;
    let Some(gpu) = own_gpu() else { return };
    let src_dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("models/smollm2-135m-instruct");
    let out = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("target/tmp/prequant-smollm2-q4_0");
    let r: R = pollster::block_on(async {
        let s = prequant::write(&src_dir, &out, QuantFormat::Q4_0, &gllm_web::models::llama::is_linear_weight)?;
        log!("smollm2 q4_0 pre-quantized: {} linears, {} -> {} bytes ({:.3}x)", s.quantized, s.bytes_in, s.bytes_out, s.bytes_out as f64 / s.bytes_in as f64);
        if s.quantized != 30 * 7 || s.bytes_out * 2 > s.bytes_in {
            return Err(format!("{} linears quantized (want 210), {} of {} bytes", s.quantized, s.bytes_out, s.bytes_in).into());
        }
        let mut a = load(&gpu, "smollm2-135m-instruct", LoadDType::Quant(QuantFormat::Q4_0), KvDType::F32).await?;
        let ids = a.prompt_ids(Prompt::Text(FORCED_TEXT))?;
        let want = a.prompt_logits(&ids).await?;
        drop(a);
        let opts = |d| GeneratorOptions { kv_dtype: Some(KvDType::F32), ..GeneratorOptions::with_dtype(d) };
        let mut b = Generator::load(&gpu, &FileSource::new(&out), opts(LoadDType::Auto), &|_| {}).await?;
        let got = b.prompt_logits(&ids).await?;
        if got != want {
            let diff = got.iter().zip(&want).filter(|(x, y)| x != y).count();
            return Err(format!("{diff} of {} logits differ from quantize-on-load", want.len()).into());
        }
        log!("smollm2 q4_0 pre-quantized: {} prompt logits identical to quantize-on-load", want.len());
        drop(b);
        // The file's format is the only one it loads as.
        match Generator::load(&gpu, &FileSource::new(&out), opts(LoadDType::F16), &|_| {}).await {
            Err(gllm_web::Error::Input(m)) if m.contains("pre-quantized") => Ok(()),
            Err(e) => Err(format!("f16 load of a q4_0 file: wrong error {e}").into()),
            Ok(_) => Err("f16 load of a q4_0 file succeeded".into()),
        }
    });
    let _ = std::fs::remove_dir_all(&out);
    if let Err(e) = r {
        panic!("smollm2_prequantized_equals_quantize_on_load: {e}");
    }
}
