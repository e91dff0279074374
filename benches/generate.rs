//! Generation speed with random weights built from real decoder configs: prefill tok/s for
//! a `GLLM_GEN_PROMPT`-token prompt (default 512) and decode tok/s over `GLLM_GEN_NEW` new
//! tokens (default 128, EOS ignored; greedy, and sampled with temperature / top-k / top-p /
//! repetition penalty), per weight dtype (`GLLM_GEN_DTYPES`, default
//! `f32,f16,q8_0,q4_0`), through the public `Generator` (GPU sampling, one 4-byte readback
//! per token). The same run measures the dispatch floor: the cost of one dispatch in a
//! replayed recording, and of one submit + 4-byte readback round trip.
//!
//! `GLLM_GEN_SPEC=1` adds prompt-lookup speculative decoding on the same prompt;
//! `GLLM_GEN_CHAT=1` a 5-turn chat's time to first token per turn, with and without the
//! prefix cache.
//!
//! Run: `cargo bench --bench generate -- DIR...` where each DIR holds `config.json`,
//! `tokenizer.json` (and optionally `generation_config.json`, `tokenizer_config.json`),
//! e.g. `models/smollm2-135m-instruct`; Llama-family and Gemma 3 (`gemma3_text`) configs. The PyTorch baseline: `benches/generate_torch.py DIR...`.

use std::time::Instant;

mod common;

use common::median;
use gllm_web::kernels::activation;
use gllm_web::loader::safetensors::{serialize, StDType};
use gllm_web::loader::{FileSource, MemSource, Source};
use gllm_web::models::{gemma3, llama, CausalLmConfig};
use gllm_web::reference::rng::Rng;
use gllm_web::kernels::sample::SamplingConfig;
use gllm_web::{GenerateOptions, Generator, GeneratorOptions, Gpu, LoadDType, Prompt, U32Slot};

fn env(name: &str, default: usize) -> usize {
    std::env::var(name).ok().and_then(|v| v.parse().ok()).unwrap_or(default)
}

/// A MemSource with the folder's small files and a random F16 checkpoint of its config
/// (weights uniform in about ±0.03, norms 1).
async fn random_decoder(dir: &str) -> gllm_web::Result<(MemSource, CausalLmConfig)> {
    let real = FileSource::new(dir);
    let config_bytes = real.read("config.json").await?;
    let json: serde_json::Value = serde_json::from_slice(&config_bytes)
        .map_err(|e| gllm_web::Error::Config { file: "config.json".into(), msg: e.to_string() })?;
    let config = CausalLmConfig::from_json(json, "config.json")?;
    let shapes = match &config {
        CausalLmConfig::Llama(c) => llama::checkpoint_shapes(c),
        CausalLmConfig::Gemma3(c) => gemma3::checkpoint_shapes(c),
    };
    let mut rng = Rng::new(7);
    let tensors: Vec<(String, Vec<usize>, Vec<u8>)> = shapes
        .into_iter()
        .map(|(name, shape)| {
            let n: usize = shape.iter().product();
            let norm = name.ends_with("norm.weight");
            let mut bytes = Vec::with_capacity(n * 2);
            let one = half::f16::from_f32(1.0).to_bits();
            let mut i = 0;
            while i < n {
                let r = rng.next_u64();
                for j in 0..4.min(n - i) {
                    // sign, exponent 2^-6..2^-5, 10 random mantissa bits: |w| in [0.016, 0.031).
                    let w = (r >> (16 * j)) as u16;
                    let bits = if norm { one } else { (w & 0x8000) | (9 << 10) | (w & 0x03FF) };
                    bytes.extend_from_slice(&bits.to_le_bytes());
                }
                i += 4;
            }
            (name, shape, bytes)
        })
        .collect();
    let refs: Vec<(&str, StDType, &[usize], &[u8])> =
        tensors.iter().map(|(n, s, b)| (n.as_str(), StDType::F16, s.as_slice(), b.as_slice())).collect();
    let mut src = MemSource::new().with("model.safetensors", serialize(&refs)).with("config.json", config_bytes);
    for f in ["tokenizer.json", "tokenizer_config.json", "generation_config.json"] {
        if let Ok(b) = real.read(f).await {
            src = src.with(f, b);
        }
    }
    Ok((src, config))
}

/// GPU time per kernel of one decode step, grouped by kernel (GLLM_GEN_PROFILE=1).
fn print_profile(g: &Generator) -> gllm_web::Result<()> {
    let Some(p) = g.profile_decode() else { return Ok(()) };
    let p = p?;
    let total: f64 = p.iter().map(|(_, us)| us).sum();
    let mut by: Vec<(String, f64, usize, f64)> = Vec::new();
    for (label, us) in &p {
        let l: String = label.chars().take(110).collect();
        match by.iter_mut().find(|e| e.0 == l) {
            Some(e) => {
                e.1 += us;
                e.2 += 1;
                e.3 = e.3.max(*us);
            }
            None => by.push((l, *us, 1, *us)),
        }
    }
    by.sort_by(|a, b| b.1.total_cmp(&a.1));
    println!("    profile: {} dispatches, {total:.0} µs of kernel time (each in its own pass)", p.len());
    for (l, us, n, mx) in by.iter().take(14) {
        println!("    {us:8.0} µs {n:4}× max {mx:6.1}  {l}");
    }
    Ok(())
}

/// Seconds per decoded token: from the first token's arrival to the last's, median of 3 runs.
async fn decode_time(g: &mut Generator, prompt: &[u32], opts: &GenerateOptions, cpu: bool) -> gllm_web::Result<f64> {
    let mut dec = Vec::new();
    for _ in 0..if cpu { 1 } else { 3 } {
        let mut stamps = Vec::with_capacity(opts.max_new_tokens);
        let out = g
            .generate_stream(Prompt::Ids(prompt), opts, &mut |_, _| {
                stamps.push(Instant::now());
                true
            })
            .await?;
        assert_eq!(out.tokens.len(), opts.max_new_tokens);
        let (a, b) = (stamps[0], stamps[stamps.len() - 1]);
        dec.push((b - a).as_secs_f64() / (stamps.len() - 1) as f64);
    }
    Ok(median(dec))
}

/// A 5-turn chat: turn 1 is the prompt; each later turn is the turn before, its reply (32
/// greedy tokens) and a new user message of `GLLM_GEN_CHAT_TURN` random tokens (default
/// 128). Prints each turn's time to first token with the prefix cache (one generator
/// continuing the conversation: only the tokens after the cached prefix are prefilled) and
/// without it (the whole history prefilled every turn). Medians of 3 conversations.
async fn chat_ttft(g: &mut Generator, vocab_size: usize, first: &[u32], cpu: bool) -> gllm_web::Result<()> {
    let turn_len = env("GLLM_GEN_CHAT_TURN", 128);
    let mut rng = Rng::new(11);
    let users: Vec<Vec<u32>> = (1..5).map(|_| (0..turn_len).map(|_| rng.below(vocab_size as u32)).collect()).collect();
    let reply = |prefix_cache| GenerateOptions { max_new_tokens: 32, ignore_eos: true, prefix_cache, ..Default::default() };
    // [cache on?][turn] -> (prompt tokens, prefilled tokens, seconds to first token)
    let mut runs: Vec<Vec<Vec<(usize, usize, f64)>>> = vec![Vec::new(), Vec::new()];
    for _ in 0..if cpu { 1 } else { 3 } {
        for (k, on) in [false, true].into_iter().enumerate() {
            // a fresh conversation: nothing of the last one in the cache
            g.generate(Prompt::Ids(&users[0]), &reply(false)).await?;
            let mut history = first.to_vec();
            let mut turns = Vec::new();
            for t in 0..5 {
                if t > 0 {
                    history.extend(&users[t - 1]);
                }
                let t0 = Instant::now();
                let mut ttft = None;
                let out = g
                    .generate_stream(Prompt::Ids(&history), &reply(on), &mut |_, _| {
                        ttft.get_or_insert_with(|| t0.elapsed().as_secs_f64());
                        true
                    })
                    .await?;
                turns.push((history.len(), g.last_prefill_tokens(), ttft.unwrap_or(f64::NAN)));
                history.extend(&out.tokens);
            }
            runs[k].push(turns);
        }
    }
    println!("\n    5-turn chat, time to first token (ms; {turn_len}-token user turns, 32-token replies):");
    println!("    | turn | prompt tokens | prefilled with the cache | TTFT without cache | TTFT with cache | speed-up |");
    println!("    |---|---|---|---|---|---|");
    for t in 0..5 {
        let med = |k: usize| median(runs[k].iter().map(|r| r[t].2).collect());
        let (off, on) = (med(0), med(1));
        let (n, pre, _) = runs[1][0][t];
        println!("    | {} | {n} | {pre} | {:.1} | {:.1} | {:.2}× |", t + 1, off * 1e3, on * 1e3, off / on);
    }
    Ok(())
}

fn main() -> gllm_web::Result<()> {
    pollster::block_on(run())
}

async fn run() -> gllm_web::Result<()> {
    let dirs: Vec<String> = std::env::args().skip(1).filter(|a| !a.starts_with("--")).collect();
    let dirs = if dirs.is_empty() { vec!["models/smollm2-135m-instruct".to_string()] } else { dirs };
    let prompt_len = env("GLLM_GEN_PROMPT", 512);
    let new_tokens = env("GLLM_GEN_NEW", 128).max(2);
    let dtypes = std::env::var("GLLM_GEN_DTYPES").unwrap_or_else(|_| "f32,f16,q8_0,q4_0".into());
    let gpu = Gpu::new().await?;
    let adapter = gpu.caps().adapter.clone();
    let short = adapter.split(" (").next().unwrap_or("?").to_string();
    let cpu = gpu.caps().is_cpu;
    println!("adapter: {adapter}");

    // Dispatch floor: one tiny dispatch replayed N times in one recording, and the round
    // trip of a submission whose only result is one 4-byte readback.
    let x = gpu.upload_f32(&[0.5; 64], &[64])?;
    let n_disp = if cpu { 200 } else { 2000 };
    let mut enc = gpu.encoder();
    let mut y = x.clone();
    for _ in 0..n_disp {
        y = activation::silu(&mut enc, &y)?;
    }
    let rec = enc.record()?;
    let ids = gpu.upload_u32(&[1, 0, 0, 0], &[4])?;
    let slot = U32Slot::new(&gpu);
    let mut per_disp = Vec::new();
    for r in 0..8 {
        let t0 = Instant::now();
        rec.submit_read_u32(&ids, &slot).await?;
        if r >= 2 {
            per_disp.push(t0.elapsed().as_secs_f64() / n_disp as f64);
        }
    }
    let per_dispatch = median(per_disp);
    let mut enc = gpu.encoder();
    activation::silu(&mut enc, &x)?;
    let one = enc.record()?;
    let mut rt = Vec::new();
    for r in 0..30 {
        let t0 = Instant::now();
        one.submit_read_u32(&ids, &slot).await?;
        if r >= 5 {
            rt.push(t0.elapsed().as_secs_f64());
        }
    }
    let round_trip = median(rt);
    println!("dispatch cost (replayed recording of {n_disp}): {:.2} µs; submit + 4-byte readback round trip: {:.1} µs", per_dispatch * 1e6, round_trip * 1e6);
    println!("prompt {prompt_len} tokens, {new_tokens} new tokens (EOS ignored), greedy and sampled; medians\n");
    println!("| model (random weights) | dtype | prefill tok/s | decode tok/s | sampled decode tok/s | ms/token | dispatches/token | floor ms/token | weights MB/token | weight GB/s |");
    println!("|---|---|---|---|---|---|---|---|---|---|");

    for dir in &dirs {
        let (src, config) = random_decoder(dir).await?;
        let name = std::path::Path::new(dir).file_name().and_then(|n| n.to_str()).unwrap_or(dir).to_string();
        common::write_out(&src, &name)?;
        let mut rng = Rng::new(3);
        let prompt: Vec<u32> = (0..prompt_len).map(|_| rng.below(config.vocab_size() as u32)).collect();
        for dt in dtypes.split(',') {
            let dtype: LoadDType = dt.parse()?;
            let t_load = Instant::now();
            let mut g = Generator::load(&gpu, &src, GeneratorOptions::with_dtype(dtype), &|_| {}).await?;
            let load_s = t_load.elapsed().as_secs_f64();
            let warm = GenerateOptions { max_new_tokens: 4, ignore_eos: true, prefix_cache: false, ..Default::default() };
            g.generate(Prompt::Ids(&prompt), &warm).await?;
            // Prefill: the prompt and the first sampled token, one submission.
            let one_tok = GenerateOptions { max_new_tokens: 1, ignore_eos: true, prefix_cache: false, ..Default::default() };
            let mut pre = Vec::new();
            for _ in 0..if cpu { 1 } else { 5 } {
                let t0 = Instant::now();
                g.generate(Prompt::Ids(&prompt), &one_tok).await?;
                pre.push(t0.elapsed().as_secs_f64());
            }
            let prefill = median(pre);
            // Decode: time from the first token's arrival to the last's; greedy, then sampling
            // (temperature 0.7, top-k 40, top-p 0.95, repetition penalty 1.1: the GPU sampler's
            // vocabulary passes instead of the argmax).
            let greedy = GenerateOptions { max_new_tokens: new_tokens, ignore_eos: true, prefix_cache: false, ..Default::default() };
            let sampled = GenerateOptions {
                sampling: SamplingConfig { temperature: 0.7, top_k: 40, top_p: 0.95, repetition_penalty: 1.1, seed: 7 },
                ..greedy.clone()
            };
            let per_tok = decode_time(&mut g, &prompt, &greedy, cpu).await?;
            let per_tok_sampled = decode_time(&mut g, &prompt, &sampled, cpu).await?;
            let d = g.decode_dispatches().unwrap_or(0);
            let wb = g.weight_bytes_per_token() as f64;
            println!(
                "| {short} {name} | {dt} | {:.0} | {:.1} | {:.1} | {:.3} | {d} | {:.3} | {:.1} | {:.0} |",
                prompt_len as f64 / prefill,
                1.0 / per_tok,
                1.0 / per_tok_sampled,
                per_tok * 1e3,
                (d as f64 * per_dispatch + round_trip) * 1e3,
                wb / 1e6,
                wb / per_tok / 1e9,
            );
            eprintln!("  ({name} {dt}: load {load_s:.1} s)");
            if std::env::var("GLLM_GEN_SPEC").is_ok() {
                // Prompt-lookup speculative decoding on the same prompt (greedy): a random model
                // falls into loops, which lookup then drafts from, so this measures what a
                // verify pass costs against plain steps when drafts pay, on this GPU.
                let spec = GenerateOptions { speculative: Some(gllm_web::Speculative::default()), ..greedy.clone() };
                let per_tok_spec = decode_time(&mut g, &prompt, &spec, cpu).await?;
                let st = g.generate(Prompt::Ids(&prompt), &spec).await?.speculative.unwrap_or_default();
                println!(
                    "    speculative (prompt lookup, k 8): {:.1} tok/s = {:.2}× greedy; {}/{} drafts accepted, {} verify + {} plain steps",
                    1.0 / per_tok_spec,
                    per_tok / per_tok_spec,
                    st.accepted,
                    st.drafted,
                    st.verify_steps,
                    st.plain_steps
                );
            }
            if std::env::var("GLLM_GEN_CHAT").is_ok() {
                chat_ttft(&mut g, config.vocab_size(), &prompt, cpu).await?;
            }
            if std::env::var("GLLM_GEN_PROFILE").is_ok() {
                print_profile(&g)?;
            }
            drop(g);
            gpu.trim();
        }
    }
    Ok(())
}
