//! Mutation fuzzer for the other untrusted inputs of a model folder (stable Rust, like
//! `examples/fuzz_gguf.rs`, whose mutations it shares): one target per run.
//!
//! - `safetensors`: the header parser through a [`MemSource`], then every small tensor
//!   converted to f32;
//! - `tokenizer`: `tokenizer.json` loaded single and for pairs, its ids checked against a
//!   model, texts and pairs encoded, ids decoded and streamed;
//! - `config`: `config.json` parsed as a Llama and a BERT config (through the capped
//!   reader), validated, and the RoPE frequencies of a valid one computed;
//! - `chat`: a chat template rendered under its budget.
//!
//! Text targets also splice tokens of a per-target dictionary (JSON numbers and keys,
//! Jinja keywords). A panic is a crash; an execution slower than 5 s is a hang. Either
//! saves the input under `target/fuzz-inputs-crashes/` and counts; the run fails if any.
//! For `chat` the input being executed is kept in `target/fuzz-inputs-crashes/last-chat`,
//! so an abort (out of memory) leaves it behind.
//!
//! ```text
//! cargo run --example fuzz_inputs -- TARGET [SECONDS=60] [SEED=1]
//! cargo run --example fuzz_inputs -- TARGET replay FILE
//! ```

use gllm_web::loader::safetensors::{header_bytes, serialize, to_f32, SafetensorsFile, StDType};
use gllm_web::loader::{read_json, MemSource};
use gllm_web::models::bert::BertConfig;
use gllm_web::models::llama::LlamaConfig;
use gllm_web::tokenizer::chat::{render_chat, ChatMessage};
use gllm_web::tokenizer::{DecodeStream, Tokenizer};

#[path = "fuzz/mutate.rs"]
mod mutate;
use mutate::{mutate_with, Rng};

const SLOW: std::time::Duration = std::time::Duration::from_secs(5);

// ---- seeds ---------------------------------------------------------------------------

fn safetensors_seeds() -> Vec<Vec<u8>> {
    let f32s: Vec<u8> = (0..24).flat_map(|i| (i as f32 * 0.5).to_le_bytes()).collect();
    let mut with_meta = header_bytes(
        [("a", StDType::F16, &[2usize, 2][..], 8), ("b", StDType::BF16, &[3][..], 6)].into_iter(),
        Some(&[("format".to_string(), "pt".to_string())].into_iter().collect()),
    );
    with_meta.extend_from_slice(&f32s[..14]);
    vec![
        serialize(&[
            ("w", StDType::F32, &[2, 3], &f32s[..24]),
            ("b", StDType::F16, &[4], &f32s[24..32]),
            ("i", StDType::I64, &[1], &f32s[32..40]),
            ("e", StDType::U8, &[0], &[]),
        ]),
        with_meta,
        serialize(&[]),
    ]
}

fn tokenizer_seeds() -> Vec<Vec<u8>> {
    let word_level = r#"{"version": "1.0", "truncation": null, "padding": null,
  "added_tokens": [{"id": 5, "content": "[X]", "single_word": false, "lstrip": false, "rstrip": false, "normalized": false, "special": true}],
  "normalizer": {"type": "BertNormalizer", "clean_text": true, "handle_chinese_chars": true, "strip_accents": null, "lowercase": true},
  "pre_tokenizer": {"type": "Whitespace"},
  "post_processor": {"type": "BertProcessing", "sep": ["[SEP]", 4], "cls": ["[CLS]", 3]},
  "decoder": null,
  "model": {"type": "WordLevel", "vocab": {"[UNK]": 0, "a": 1, "b": 2, "[CLS]": 3, "[SEP]": 4}, "unk_token": "[UNK]"}}"#;
    let word_piece = r###"{"version": "1.0", "truncation": null, "padding": null, "added_tokens": [],
  "normalizer": {"type": "Lowercase"}, "pre_tokenizer": {"type": "BertPreTokenizer"},
  "post_processor": {"type": "TemplateProcessing",
    "single": [{"SpecialToken": {"id": "[CLS]", "type_id": 0}}, {"Sequence": {"id": "A", "type_id": 0}}, {"SpecialToken": {"id": "[SEP]", "type_id": 0}}],
    "pair": [{"SpecialToken": {"id": "[CLS]", "type_id": 0}}, {"Sequence": {"id": "A", "type_id": 0}}, {"SpecialToken": {"id": "[SEP]", "type_id": 0}}, {"Sequence": {"id": "B", "type_id": 1}}, {"SpecialToken": {"id": "[SEP]", "type_id": 1}}],
    "special_tokens": {"[CLS]": {"id": "[CLS]", "ids": [1], "tokens": ["[CLS]"]}, "[SEP]": {"id": "[SEP]", "ids": [2], "tokens": ["[SEP]"]}}},
  "decoder": {"type": "WordPiece", "prefix": "##", "cleanup": true},
  "model": {"type": "WordPiece", "unk_token": "[UNK]", "continuing_subword_prefix": "##", "max_input_chars_per_word": 100,
    "vocab": {"[UNK]": 0, "[CLS]": 1, "[SEP]": 2, "hello": 3, "wor": 4, "##ld": 5, "a": 6, "##b": 7}}}"###;
    let bpe = r#"{"version": "1.0", "truncation": null, "padding": null,
  "added_tokens": [{"id": 6, "content": "<|im_end|>", "single_word": false, "lstrip": false, "rstrip": false, "normalized": false, "special": true}],
  "normalizer": {"type": "NFC"},
  "pre_tokenizer": {"type": "ByteLevel", "add_prefix_space": false, "trim_offsets": true, "use_regex": true},
  "post_processor": {"type": "ByteLevel", "add_prefix_space": false, "trim_offsets": false, "use_regex": true},
  "decoder": {"type": "ByteLevel", "add_prefix_space": false, "trim_offsets": true, "use_regex": true},
  "model": {"type": "BPE", "dropout": null, "unk_token": null, "continuing_subword_prefix": null, "end_of_word_suffix": null,
    "fuse_unk": false, "byte_fallback": false, "ignore_merges": false,
    "vocab": {"a": 0, "b": 1, "ab": 2, "Ġ": 3, "Ġa": 4, "c": 5}, "merges": ["a b", "Ġ a"]}}"#;
    vec![word_level.into(), word_piece.into(), bpe.into()]
}

fn config_seeds() -> Vec<Vec<u8>> {
    let llama = r#"{"model_type": "llama", "vocab_size": 49152, "hidden_size": 576, "intermediate_size": 1536,
  "num_hidden_layers": 30, "num_attention_heads": 9, "num_key_value_heads": 3, "hidden_act": "silu",
  "rms_norm_eps": 1e-05, "rope_theta": 100000, "max_position_embeddings": 8192, "tie_word_embeddings": true,
  "rope_scaling": {"rope_type": "llama3", "factor": 8.0, "low_freq_factor": 1.0, "high_freq_factor": 4.0, "original_max_position_embeddings": 8192}}"#;
    let qwen = r#"{"model_type": "qwen2", "vocab_size": 151936, "hidden_size": 896, "intermediate_size": 4864,
  "num_hidden_layers": 24, "num_attention_heads": 14, "num_key_value_heads": 2, "rms_norm_eps": 1e-06,
  "rope_theta": 1000000.0, "max_position_embeddings": 32768, "rope_scaling": {"type": "linear", "factor": 2.0}}"#;
    let bert = r#"{"architectures": ["BertModel"], "model_type": "bert", "vocab_size": 30522, "hidden_size": 384,
  "num_hidden_layers": 6, "num_attention_heads": 12, "intermediate_size": 1536, "hidden_act": "gelu",
  "max_position_embeddings": 512, "type_vocab_size": 2, "layer_norm_eps": 1e-12, "pad_token_id": 0}"#;
    vec![llama.into(), qwen.into(), bert.into()]
}

fn chat_seeds() -> Vec<Vec<u8>> {
    let chatml = "{% for message in messages %}{{'<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + '\n'}}{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}";
    let llama3 = "{{ bos_token }}{% for message in messages %}{% if loop.index0 == 0 and message['role'] != 'system' %}{{ '<|start_header_id|>system<|end_header_id|>\n\nYou are helpful.<|eot_id|>' }}{% endif %}{{ '<|start_header_id|>' ~ message['role'] ~ '<|end_header_id|>\n\n' ~ message['content'] | trim ~ '<|eot_id|>' }}{% endfor %}{% if add_generation_prompt %}{{ '<|start_header_id|>assistant<|end_header_id|>\n\n' }}{% endif %}";
    let macros = "{% macro render(m, n) %}{% if n > 0 %}[{{ m.role|upper }}]{{ render(m, n - 1) }}{% else %}{{ m.content.strip() }}{% endif %}{% endmacro %}{% set ns = namespace(count=0) %}{% for m in messages %}{% if m.role not in ['user', 'assistant', 'system'] %}{{ raise_exception('bad role') }}{% endif %}{% set ns.count = ns.count + 1 %}{{ render(m, 2) }}{{ eos_token if loop.last else '' }}{% endfor %}{{ ns.count }}{{ messages|map(attribute='content')|join(', ') }}";
    vec![chatml.into(), llama3.into(), macros.into()]
}

const JSON_DICT: &[&str] = &[
    "0", "-1", "1e309", "-1e309", "4294967296", "18446744073709551616", "1e-320", "NaN", "null", "true", "[]", "{}",
    "\"\"", "\"\\u0000\"", "\"\\ud800\"", ",", ":", "\"a\": 1,", "[0, 0]", "[0, 4294967295]", "\"F32\"", "\"BOOL\"",
    "\"__metadata__\"", "\"data_offsets\"", "\"shape\"", "\"dtype\"", "\"vocab_size\"", "\"rope_scaling\"", "\"factor\"",
    "\"type\"", "\"ids\"", "\"type_id\"", "\"special_tokens\"", "\"merges\"", "\"vocab\"", "\"added_tokens\"",
    "\"post_processor\"", "\"normalizer\"", "\"Sequence\"", "\"TemplateProcessing\"", "\"Replace\"", "\"Split\"",
    "\"pattern\"", "{\"Regex\": \"(a*)*b\"}", "{\"String\": \"\"}", "\"num_attention_heads\"", "\"head_dim\"",
    "\"num_key_value_heads\"", "\"llama3\"", "\"linear\"", "\"low_freq_factor\"", "\"max_position_embeddings\"",
    "\"rms_norm_eps\"", "\"type_vocab_size\"",
];

const JINJA_DICT: &[&str] = &[
    "{%", "%}", "{{", "}}", "{#", "#}", "{% for x in range(100000) %}", "{% for m in messages %}", "{% endfor %}",
    "{% if ", "{% else %}", "{% endif %}", "{% macro f(n) %}", "{% endmacro %}", "{{ f(n) }}", "{{ f(n - 1) }}{{ f(n - 1) }}",
    " ~ ", " * 1000000", " * 99999999", " + ", "|join", "|join(', ')", "|tojson", "|length", "|reverse", "|list",
    "|center(99999999)", "|indent(99999999)", "|replace('a', 'aaaaaaaa')", "loop.index", "loop.cycle(1, 2)", "messages",
    "message['content']", "namespace(", "{% set ns = namespace(s='x') %}", "{% set ns.s = ns.s ~ ns.s %}", "{% set ns.s = ns %}",
    "{% set ns.s = [ns.s, ns.s] %}", "[ns]", "|unique", "|sort", "|pprint", "|batch(99999999)", ".join(messages)",
    "raise_exception('x')", "{% set x = ", "recursive", "loop(m)", "9999999999", "-1", ".strip()", ".split(' ')",
    "{% break %}", "{% continue %}", "{% include 'chat' %}", "{% extends 'chat' %}", "{% block b %}", "{% endblock %}",
    "{% filter upper %}", "{% endfilter %}", "{% call f(1) %}", "{% endcall %}", "{% with a = 1 %}", "{% endwith %}",
    "'<|im_start|>'", "bos_token", "add_generation_prompt", "undefined_var.attr", "[0][1]", "(1/0)", "'%s' % x", "\u{0}",
];

// ---- targets -------------------------------------------------------------------------

fn safetensors(d: &[u8]) -> usize {
    let src = MemSource::new().with("m.safetensors", d.to_vec());
    let Ok(st) = pollster::block_on(SafetensorsFile::read(&src, "m.safetensors")) else { return 0 };
    for (name, t) in &st.tensors {
        if t.end - t.start <= 1 << 20 {
            if let Some(b) = d.get(t.start as usize..t.end as usize) {
                let _ = to_f32(name, t.dtype, b);
            }
        }
    }
    1
}

fn tokenizer(d: &[u8]) -> usize {
    let Ok(mut tok) = Tokenizer::from_bytes(d, 32) else { return 0 };
    let _ = tok.check_ids(100, Some(2));
    if let Ok(ids) = tok.encode_batch(&["hello world a b", "ünïcode ab [X] <|im_end|>", ""]) {
        let mut stream = DecodeStream::new();
        for &id in ids.iter().flatten() {
            let _ = stream.step(&tok, id);
        }
        let _ = tok.decode(&ids[0], false);
    }
    let _ = tok.encode_raw("a b  c\u{0}");
    if let Ok(mut pairs) = Tokenizer::for_pairs(d, 16) {
        let _ = pairs.check_ids(100, Some(2));
        let _ = pairs.encode_pairs("query a", &["document b b b b b b b b b b b b b b b b b", ""]);
    }
    1
}

fn config(d: &[u8]) -> usize {
    let src = MemSource::new().with("config.json", d.to_vec());
    let mut ok = 0;
    if let Ok(c) = pollster::block_on(read_json::<_, LlamaConfig>(&src, "config.json")) {
        if c.validate("config.json").is_ok() {
            let inv = c.rope_inv_freq().expect("a validated config has RoPE frequencies");
            assert!(inv.iter().all(|v| v.is_finite() && *v > 0.0), "validated config gave frequencies {inv:?}");
            let _ = (c.head_dim(), c.kv_heads(), c.qkv_bias());
            ok = 1;
        }
    }
    if let Ok(c) = pollster::block_on(read_json::<_, BertConfig>(&src, "config.json")) {
        if c.validate("config.json").is_ok() {
            let _ = c.head_dim();
            ok = 1;
        }
    }
    ok
}

fn chat(d: &[u8]) -> usize {
    let template = String::from_utf8_lossy(d);
    let messages = [ChatMessage::new("system", "Be brief."), ChatMessage::new("user", "hi"), ChatMessage::new("assistant", "hello")];
    render_chat(&template, &messages, true, Some("<s>"), Some("</s>")).is_ok() as usize
}

fn main() {
    let mut args = std::env::args().skip(1);
    let target = args.next().unwrap_or_default();
    let secs_arg = args.next();
    let seed_arg = args.next();
    let (run, seeds, dict): (fn(&[u8]) -> usize, _, &[&str]) = match target.as_str() {
        "safetensors" => (safetensors, safetensors_seeds(), JSON_DICT),
        "tokenizer" => (tokenizer, tokenizer_seeds(), JSON_DICT),
        "config" => (config, config_seeds(), JSON_DICT),
        "chat" => (chat, chat_seeds(), JINJA_DICT),
        other => {
            eprintln!("unknown target {other:?}: one of safetensors, tokenizer, config, chat\nusage: fuzz_inputs TARGET [SECONDS=60] [SEED=1]");
            std::process::exit(2);
        }
    };
    if secs_arg.as_deref() == Some("replay") {
        // one saved input, with the panic message
        let d = std::fs::read(seed_arg.unwrap_or_default()).expect("replay needs a file");
        println!("{target}: accepted = {}", run(&d));
        return;
    }
    let secs: u64 = secs_arg.and_then(|s| s.parse().ok()).unwrap_or(60);
    let seed: u64 = seed_arg.and_then(|s| s.parse().ok()).unwrap_or(1);
    for s in &seeds {
        assert_eq!(run(s), 1, "every {target} seed is accepted");
    }
    std::panic::set_hook(Box::new(|_| {}));
    let crash_dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("target/fuzz-inputs-crashes");
    std::fs::create_dir_all(&crash_dir).ok();
    let last = crash_dir.join(format!("last-{target}"));
    // an abort (a stack overflow, an allocation failure) ends the process without a report:
    // keep the input being run on disk
    let keep_last = target == "chat" && std::env::var_os("FUZZ_NO_LAST").is_none();
    let mut rng = Rng(seed);
    let (mut execs, mut accepted, mut crashes, mut hangs) = (0u64, 0u64, 0u64, 0u64);
    let start = std::time::Instant::now();
    let deadline = std::time::Duration::from_secs(secs);
    while start.elapsed() < deadline {
        let mut d = seeds[rng.below(seeds.len())].clone();
        mutate_with(&mut rng, &mut d, dict);
        if keep_last {
            std::fs::write(&last, &d).ok();
        }
        execs += 1;
        let t = std::time::Instant::now();
        let r = std::panic::catch_unwind(|| run(&d));
        let slow = t.elapsed() > SLOW;
        match r {
            Ok(n) => accepted += n as u64,
            Err(_) => crashes += 1,
        }
        hangs += slow as u64;
        if r.is_err() || slow {
            let kind = if r.is_err() { "crash" } else { "slow" };
            std::fs::write(crash_dir.join(format!("{kind}-{target}-{seed}-{execs}")), &d).ok();
        }
    }
    std::fs::remove_file(&last).ok();
    let t = start.elapsed().as_secs_f64();
    println!(
        "fuzz_inputs {target}: seed {seed}, {t:.0} s, {execs} executions ({:.0}/s), {accepted} accepted, {crashes} crashes, {hangs} slower than {} s{}",
        execs as f64 / t,
        SLOW.as_secs(),
        if crashes + hangs > 0 { format!(" (inputs in {})", crash_dir.display()) } else { String::new() }
    );
    if crashes + hangs > 0 {
        std::process::exit(1);
    }
}
