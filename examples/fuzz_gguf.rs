//! Mutation fuzzer for the GGUF reader (stable Rust; cargo-fuzz needs nightly and a
//! sanitizer toolchain). Seeds: synthetic files covering every value type, plus the real
//! SmolLM2 header when `models/gguf/` has it. Each execution applies 1–6 seeded mutations
//! (bit flips, interesting integers over u32/u64 fields, truncation, insertion, deletion,
//! duplication) and runs the reader and everything downstream of a successful parse
//! (JSON dump, HF name mapping, tokenizer metadata, dequantisation of in-range tensors)
//! under `catch_unwind`. A panic is a crash: the input is saved under
//! `target/fuzz-gguf-crashes/` and counted.
//!
//! ```text
//! cargo run --example fuzz_gguf -- [SECONDS=60] [SEED=1]
//! ```

use gllm_web::loader::gguf::{serialize, GgmlType, GgufArray, GgufFile, GgufValue};
use gllm_web::loader::gguf_hf::{self, GgufModel};
use gllm_web::tokenizer::gguf::GgufTokenizer;

#[path = "fuzz/mutate.rs"]
mod mutate;
use mutate::{mutate, Rng};

/// The synthetic seeds come first; the real header, when present, after them.
const SMALL_SEEDS: usize = 4;

/// Seeds as (bytes, extra file length beyond them: the real header is a prefix of a file).
fn seeds() -> Vec<(Vec<u8>, u64)> {
    let s = |v: &str| GgufValue::String(v.into());
    let tokens = GgufValue::Array(GgufArray::String(["a", "b", "ab", "<|im_end|>"].into_iter().collect()));
    let mut q8 = vec![0u8; 34];
    q8[0] = 0x00;
    q8[1] = 0x3c;
    let mut q4k = vec![7u8; 144];
    q4k[..4].copy_from_slice(&[0, 0x3c, 0, 0x3c]);
    let f32s: Vec<u8> = (0..64).flat_map(|i| (i as f32).to_le_bytes()).collect();
    let out = vec![
        serialize(
            &[
                ("general.architecture", s("llama")),
                ("llama.attention.head_count", GgufValue::U32(2)),
                ("llama.attention.head_count_kv", GgufValue::U32(1)),
                ("tokenizer.ggml.model", s("gpt2")),
                ("tokenizer.ggml.pre", s("smollm")),
                ("tokenizer.ggml.tokens", tokens.clone()),
                ("tokenizer.ggml.merges", GgufValue::Array(GgufArray::String(["a b"].into_iter().collect()))),
                (
                    "tokenizer.ggml.token_type",
                    GgufValue::Array(GgufArray::I32(vec![1, 1, 1, 3])),
                ),
                ("tokenizer.ggml.eos_token_id", GgufValue::U32(3)),
                (
                    "tokenizer.chat_template",
                    s("{% for m in messages %}{{ m.content }}{% endfor %}"),
                ),
            ],
            &[
                ("blk.0.attn_q.weight", GgmlType::F32, &[4, 4], &f32s[..64]),
                ("blk.0.attn_k.weight", GgmlType::F32, &[4, 2], &f32s[..32]),
                ("token_embd.weight", GgmlType::Q8_0, &[32], &q8),
                ("output.weight", GgmlType::Q4_K, &[256], &q4k),
            ],
        ),
        serialize(
            &[
                ("general.alignment", GgufValue::U32(64)),
                ("u8", GgufValue::U8(1)),
                ("i8", GgufValue::I8(-1)),
                ("u16", GgufValue::U16(2)),
                ("i16", GgufValue::I16(-2)),
                ("i32", GgufValue::I32(-3)),
                ("f32", GgufValue::F32(1.5)),
                ("b", GgufValue::Bool(false)),
                ("u64", GgufValue::U64(9)),
                ("i64", GgufValue::I64(-9)),
                ("f64", GgufValue::F64(2.5)),
                (
                    "nested",
                    GgufValue::Array(GgufArray::Array(vec![GgufArray::String(["x"].into_iter().collect())])),
                ),
            ],
            &[
                ("w", GgmlType::F16, &[8, 2], &f32s[..32]),
                ("v", GgmlType::BF16, &[4], &f32s[..8]),
            ],
        ),
        serialize(&[], &[]),
        // gemma3: its config keys, a SentencePiece vocabulary (scores, byte pieces), a norm
        // (stored as 1 + w).
        serialize(
            &[
                ("general.architecture", s("gemma3")),
                ("gemma3.attention.head_count", GgufValue::U32(2)),
                ("gemma3.attention.head_count_kv", GgufValue::U32(1)),
                ("gemma3.embedding_length", GgufValue::U32(8)),
                ("gemma3.block_count", GgufValue::U32(1)),
                ("gemma3.feed_forward_length", GgufValue::U32(16)),
                ("gemma3.context_length", GgufValue::U32(64)),
                ("gemma3.attention.layer_norm_rms_epsilon", GgufValue::F32(1e-6)),
                ("gemma3.attention.key_length", GgufValue::U32(4)),
                ("gemma3.attention.sliding_window", GgufValue::U32(8)),
                ("tokenizer.ggml.model", s("llama")),
                ("tokenizer.ggml.tokens", GgufValue::Array(GgufArray::String(["<unk>", "<bos>", "a", "b", "ab", "\u{2581}", "<0x09>", "<0xC3>"].into_iter().collect()))),
                ("tokenizer.ggml.scores", GgufValue::Array(GgufArray::F32(vec![0.0, 0.0, -2.0, -2.0, -1.0, -3.0, -4.0, -5.0]))),
                ("tokenizer.ggml.token_type", GgufValue::Array(GgufArray::I32(vec![2, 3, 1, 1, 1, 1, 6, 6]))),
                ("tokenizer.ggml.bos_token_id", GgufValue::U32(1)),
                ("tokenizer.ggml.unknown_token_id", GgufValue::U32(0)),
                ("tokenizer.ggml.add_bos_token", GgufValue::Bool(true)),
            ],
            &[
                ("token_embd.weight", GgmlType::F32, &[8, 2], &f32s[..64]),
                ("blk.0.ffn_norm.weight", GgmlType::F32, &[8], &f32s[..32]),
            ],
        ),
    ];
    let mut out: Vec<(Vec<u8>, u64)> = out.into_iter().map(|d| (d, 0)).collect();
    let real = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("models/gguf/SmolLM2-135M-Instruct.Q4_1.gguf");
    if let Ok(bytes) = std::fs::read(&real) {
        // the header and the first tensors' data (its own header parses with that length)
        let n = bytes.len().min(1_900_000);
        out.push((bytes[..n].to_vec(), (bytes.len() - n) as u64));
        println!("seed: real SmolLM2 header ({n} bytes of {})", bytes.len());
    }
    out
}

thread_local! {
    /// Print each stage of `exercise` as it starts (replay).
    static STAGES: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
}

fn stage(name: &str) {
    if STAGES.with(|s| s.get()) {
        eprintln!("stage: {name}");
    }
}

/// Everything a loader does with a parsed header.
fn exercise(d: &[u8], extra: u64) -> usize {
    let Ok(g) = GgufFile::parse("fuzz.gguf", d, d.len() as u64 + extra) else {
        return 0;
    };
    stage("to_json");
    let _ = g.to_json(16);
    stage("dequantize");
    for t in &g.tensors {
        if t.n_bytes <= 1 << 20 {
            if let Some(bytes) = d.get(t.start as usize..(t.start + t.n_bytes) as usize) {
                let _ = gguf_hf::dequantize(t, bytes);
            }
        }
    }
    stage("model");
    if let Ok(m) = GgufModel::new(g.clone()) {
        if let Ok(c) = m.config("float16") {
            let _ = gllm_web::models::CausalLmConfig::from_json(c, "fuzz.gguf");
        }
        for (_, i) in &m.names {
            let t = &m.gguf.tensors[*i];
            if t.n_bytes <= 1 << 20 {
                if let Some(bytes) = d.get(t.start as usize..(t.start + t.n_bytes) as usize) {
                    let _ = m.to_f32(t, bytes);
                }
            }
        }
    }
    stage("tokenizer");
    if let Ok(tok) = GgufTokenizer::from_gguf(&g) {
        if tok.tokens.len() < 1000 {
            stage("encode");
            let _ = tok
                .tokenizer()
                .map(|t| t.encode("ab a<|im_end|>", false).is_ok());
            stage("chat template");
            let _ = tok.apply_chat_template(
                &[gllm_web::tokenizer::chat::ChatMessage::new("user", "ab")],
                true,
            );
        }
    }
    1
}

/// An execution longer than this is a hang.
const SLOW_SECS: u64 = 10;

fn main() {
    let mut args = std::env::args().skip(1);
    if std::env::args().nth(1).as_deref() == Some("replay") {
        // `fuzz_gguf replay FILE`: one saved input, its stages timed (a panic is printed)
        let file = std::env::args().nth(2).expect("fuzz_gguf replay FILE");
        let d = std::fs::read(&file).expect("read the input");
        STAGES.with(|s| s.set(true));
        let t = std::time::Instant::now();
        println!("{file}: {} ({:?})", exercise(&d, 0), t.elapsed());
        return;
    }
    let secs: u64 = args.next().and_then(|s| s.parse().ok()).unwrap_or(60);
    let seed: u64 = args.next().and_then(|s| s.parse().ok()).unwrap_or(1);
    let seeds = seeds();
    for (s, extra) in &seeds {
        assert_eq!(exercise(s, *extra), 1, "every seed parses");
    }
    std::panic::set_hook(Box::new(|_| {}));
    let crash_dir =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("target/fuzz-gguf-crashes");
    let mut rng = Rng(seed);
    let (mut execs, mut parsed, mut crashes) = (0u64, 0u64, 0u64);
    let start = std::time::Instant::now();
    // A watchdog: an execution over SLOW_SECS is a hang; its input is saved and the run fails
    // (one execution cannot be interrupted, so this is the only way to see it).
    let current: std::sync::Arc<std::sync::Mutex<(std::time::Instant, Vec<u8>)>> =
        std::sync::Arc::new(std::sync::Mutex::new((std::time::Instant::now(), Vec::new())));
    {
        let (current, crash_dir) = (current.clone(), crash_dir.clone());
        std::thread::spawn(move || loop {
            std::thread::sleep(std::time::Duration::from_millis(500));
            let c = current.lock().unwrap_or_else(|e| e.into_inner());
            if c.0.elapsed().as_secs() >= SLOW_SECS {
                std::fs::create_dir_all(&crash_dir).ok();
                let file = crash_dir.join(format!("slow-{seed}.gguf"));
                std::fs::write(&file, &c.1).ok();
                eprintln!("fuzz_gguf: an execution ran over {SLOW_SECS} s (a hang); its input is {}", file.display());
                std::process::exit(1);
            }
        });
    }
    let deadline = std::time::Duration::from_secs(secs);
    while start.elapsed() < deadline {
        for _ in 0..64 {
            // the real header is big (49k tokens): mutate it one time in 50
            let pick = if seeds.len() > SMALL_SEEDS && rng.below(50) == 0 {
                SMALL_SEEDS
            } else {
                rng.below(SMALL_SEEDS.min(seeds.len()))
            };
            let (mut d, extra) = seeds[pick].clone();
            mutate(&mut rng, &mut d);
            execs += 1;
            {
                let mut c = current.lock().unwrap_or_else(|e| e.into_inner());
                c.0 = std::time::Instant::now();
                c.1.clear();
                c.1.extend_from_slice(&d);
            }
            match std::panic::catch_unwind(|| exercise(&d, extra)) {
                Ok(n) => parsed += n as u64,
                Err(_) => {
                    crashes += 1;
                    std::fs::create_dir_all(&crash_dir).ok();
                    std::fs::write(crash_dir.join(format!("crash-{seed}-{execs}.gguf")), &d).ok();
                }
            }
        }
    }
    let t = start.elapsed().as_secs_f64();
    println!(
        "fuzz_gguf: seed {seed}, {t:.0} s, {execs} executions ({:.0}/s), {parsed} parsed OK, {crashes} crashes{}",
        execs as f64 / t,
        if crashes > 0 { format!(" (inputs in {})", crash_dir.display()) } else { String::new() }
    );
    if crashes > 0 {
        std::process::exit(1);
    }
}
