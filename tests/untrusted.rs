//! Hostile model files and bad arguments (issue 20), below the JS boundary: each class gets
//! its clear error, in bounded time and memory, and the same object still works afterwards.
//! The limits are listed in `SPEC/untrusted.md`.
#![cfg(not(target_arch = "wasm32"))]

mod common;

use gllm_web::engine::{SearchIndex, SearchMode};
use gllm_web::kernels::sample::SamplingConfig;
use gllm_web::loader::safetensors::{serialize, SafetensorsFile, StDType};
use gllm_web::loader::{self, MemSource};
use gllm_web::models::llama::LlamaConfig;
use gllm_web::tokenizer::chat::{render_chat, ChatMessage};
use gllm_web::tokenizer::Tokenizer;
use gllm_web::{Error, Gpu};

// ---- chat templates ------------------------------------------------------------------

const CHATML: &str = "{% for m in messages %}<|im_start|>{{ m.role }}\n{{ m.content }}<|im_end|>\n{% endfor %}{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}";

fn chat(template: &str) -> gllm_web::Result<String> {
    render_chat(template, &[ChatMessage::new("user", "hi")], true, Some("<s>"), Some("</s>"))
}

/// `template` is rejected with a tokenizer error mentioning `needle`, within a few seconds,
/// and a good template renders right afterwards.
fn rejects_template(template: &str, needle: &str) {
    let t = std::time::Instant::now();
    match chat(template) {
        Err(Error::Tokenizer(msg)) => assert!(msg.contains(needle), "error `{msg}` should mention `{needle}`"),
        Err(e) => panic!("expected a tokenizer error mentioning `{needle}`, got {e}"),
        Ok(s) => panic!("expected a tokenizer error mentioning `{needle}`, got {} bytes of output", s.len()),
    }
    assert!(t.elapsed().as_secs() < 20, "rejecting took {:?}", t.elapsed());
    assert_eq!(chat(CHATML).unwrap(), "<|im_start|>user\nhi<|im_end|>\n<|im_start|>assistant\n");
}

#[test]
fn chat_template_nested_loops_run_out_of_fuel() {
    rejects_template("{% for a in range(100000) %}{% for b in range(100000) %}{% endfor %}{% endfor %}", "budget");
    // loops over the messages inside loops: bounded all the same
    rejects_template(
        "{% for a in range(1000) %}{% for b in range(1000) %}{% for m in messages %}{% endfor %}{% endfor %}{% endfor %}",
        "budget",
    );
}

#[test]
fn chat_template_exponential_macro_runs_out_of_fuel() {
    rejects_template(
        "{% macro f(n) %}{% if n > 0 %}{{ f(n - 1) }}{{ f(n - 1) }}{% endif %}{% endmacro %}{{ f(16) }}",
        "budget",
    );
}

#[test]
fn chat_template_deep_recursion_hits_the_limit() {
    rejects_template("{% macro f(n) %}{{ f(n + 1) }}{% endmacro %}{{ f(0) }}", "recursion");
}

#[test]
fn chat_template_huge_output_hits_the_cap() {
    // one 2 MB string (within the fuel, over the output cap), then many smaller ones
    rejects_template("{{ 'x' * 2000000 }}", "output exceeds");
    rejects_template("{% for i in range(100000) %}{{ 'y' * 1000 }}{% endfor %}", "output exceeds");
    // the cap grows with the conversation: a long message renders in full
    let long = "z".repeat(3 << 20);
    let out = render_chat(CHATML, &[ChatMessage::new("user", long.clone())], true, None, None).unwrap();
    assert!(out.contains(&long));
}

#[test]
fn chat_template_namespace_cannot_hold_itself() {
    // printing, serialising or comparing a namespace assigned into itself recursed until the
    // stack overflowed (an abort natively, a trap in wasm): now the assignment is refused
    for t in [
        "{% set ns = namespace(a=0) %}{% set ns.a = ns %}{{ ns }}",
        "{% set ns = namespace(a=0) %}{% set ns.a = [ns] %}{{ ns|tojson }}",
        "{% set ns = namespace(a=0) %}{% set ns.a = {'x': [1, ns]} %}{{ ns == ns }}",
        "{% set a = namespace() %}{% set b = namespace() %}{% set a.b = b %}{% set b.a = a %}{{ a }}",
    ] {
        rejects_template(t, "cannot be stored in a namespace");
    }
    // what real templates do with namespaces still works
    let t = "{% set ns = namespace(found=false, n=0, last='') %}{% for m in messages %}{% set ns.found = true %}{% set ns.n = ns.n + 1 %}{% set ns.last = m.content %}{% endfor %}{{ ns.found }} {{ ns.n }} {{ ns.last }}";
    assert_eq!(chat(t).unwrap(), "True 1 hi");
}

#[test]
fn chat_template_deep_values_are_refused() {
    // a list nested 100,000 deep overflowed the stack when printed or dropped
    rejects_template(
        "{% set ns = namespace(x=[]) %}{% for i in range(100000) %}{% set ns.x = [ns.x] %}{% endfor %}{{ ns.x }}",
        "nested deeper than 48",
    );
    rejects_template(
        "{% set ns = namespace(x=[]) %}{% for i in range(100000) %}{% set ns.x = {'k': ns.x} %}{% endfor %}",
        "nested deeper than 48",
    );
    // a list holding itself twice per level: 2^60 paths to print, compare, hash or serialise
    for op in ["{{ ns.x }}", "{{ ns.x|tojson }}", "{{ ns.x == [ns.x, ns.x][0] }}", "{{ ns.x|unique|list|length }}", "{{ ns.x|string|length }}"] {
        let t = format!("{{% set ns = namespace(x=[1]) %}}{{% for i in range(40) %}}{{% set ns.x = [ns.x, ns.x] %}}{{% endfor %}}{op}");
        let t0 = std::time::Instant::now();
        assert!(chat(&t).is_err(), "{op}");
        assert!(t0.elapsed().as_secs() < 20, "{op} took {:?}", t0.elapsed());
    }
}

#[test]
fn chat_template_values_are_metered() {
    // a string doubled per statement: 2.2 GB after a few, within the instruction count
    rejects_template(
        "{% set a = 'x' * 1000000 %}{% set b = a ~ a %}{% set c = b ~ b %}{% set d = c ~ c %}{% set e = d ~ d %}{% set f = e ~ e %}{% set g = f ~ f %}{{ g|length }}",
        "budget",
    );
    rejects_template(
        "{% set a = 'x' * 1000000 %}{% set b = a + a %}{% set c = b + b %}{% set d = c + c %}{% set e = d + d %}{% set f = e + e %}{% set g = f + f %}{{ g|length }}",
        "budget",
    );
    // sizes from a number: 100 GB asked for in one call
    rejects_template("{{ 'x\ny'|indent(100000000000) }}", "too large");
    rejects_template("{{ messages|tojson(indent=100000000000) }}", "too large");
    rejects_template("{{ '%100000000000s'|format('x') }}", "too large");
    rejects_template("{{ '{:>100000000000}'.format('x') }}", "too large");
    rejects_template("{{ [1]|batch(100000000000000) }}", "too large");
    rejects_template("{{ [1]|slice(100000000000000) }}", "too large");
    rejects_template("{{ ('x' * 100000)|replace('x', 'y' * 100000) }}", "too large");
    rejects_template("{{ ('x' * 100000).replace('x', 'y' * 100000) }}", "too large");
    rejects_template("{{ range(100000)|join('y' * 100000) }}", "budget");
    rejects_template("{{ ('y' * 100000).join(range(100000)) }}", "too large");
    // a 50 MB operation counted as one step: this loop ran for hours
    rejects_template(
        "{% for i in range(100000) %}{% set x = messages[0].content * 49999999 %}{% endfor %}",
        "too large",
    );
    // a large value touched in a loop costs its size every time
    rejects_template(
        "{% set s = 'x' * 5000000 %}{% for i in range(100000) %}{% if 'y' in s %}{% endif %}{% endfor %}",
        "budget",
    );
    rejects_template(
        "{% set s = range(100000)|list %}{% for i in range(100000) %}{% set r = s|reverse|list %}{% endfor %}",
        "budget",
    );
    // ... also as a filter's, a test's or a method's argument
    rejects_template(
        "{% set s = 'x' * 5000000 %}{% for i in range(100000) %}{% if s|length > 0 %}{% endif %}{% endfor %}",
        "budget",
    );
    rejects_template(
        "{% set s = 'x' * 5000000 %}{% for i in range(100000) %}{% if s.startswith('y') %}{% endif %}{% endfor %}",
        "budget",
    );
    rejects_template(
        "{% set s = 'x' * 5000000 %}{% for i in range(100000) %}{% if s is string %}{% endif %}{% endfor %}",
        "budget",
    );
}

#[test]
fn chat_template_syntax_errors_are_errors() {
    // minijinja's debug view of this error's span panicked (found by fuzz_inputs)
    rejects_template("{% for in messages %}{% endfor %}", "chat template");
    rejects_template("{{ raise_exception('no system role') }}", "no system role");
}

#[test]
fn chat_template_source_is_capped() {
    let big = format!("{}{CHATML}", " ".repeat(2 << 20));
    rejects_template(&big, "byte cap");
}

// ---- files read whole, modules.json paths ---------------------------------------------

#[test]
fn side_files_are_capped_by_kind() {
    assert_eq!(loader::max_whole_file_bytes("config.json"), loader::MAX_CONFIG_BYTES);
    assert_eq!(loader::max_whole_file_bytes("1_Pooling/config.json"), loader::MAX_CONFIG_BYTES);
    assert_eq!(loader::max_whole_file_bytes("tokenizer.json"), loader::MAX_TOKENIZER_BYTES);
    assert_eq!(loader::max_whole_file_bytes("tokenizer_config.json"), loader::MAX_TOKENIZER_CONFIG_BYTES);
    let mut padded = b"{\"a\": 1}".to_vec();
    padded.resize(loader::MAX_CONFIG_BYTES as usize + 1, b' ');
    let big_tok = vec![b' '; loader::MAX_TOKENIZER_BYTES as usize + 1];
    let src = MemSource::new()
        .with("config.json", padded)
        .with("generation_config.json", b"{\"a\": 2}".to_vec())
        .with("tokenizer.json", big_tok);
    let r: gllm_web::Result<serde_json::Value> = pollster::block_on(loader::read_json(&src, "config.json"));
    match r {
        Err(Error::Config { file, msg }) => assert!(file == "config.json" && msg.contains("cap"), "{file}: {msg}"),
        other => panic!("expected a Config error on the cap, got {other:?}"),
    }
    match pollster::block_on(loader::read_whole(&src, "tokenizer.json")) {
        Err(Error::Config { file, msg }) => assert!(file == "tokenizer.json" && msg.contains("cap"), "{file}: {msg}"),
        other => panic!("expected a Config error on the cap, got {:?}", other.map(|b| b.len())),
    }
    // the same source still reads a file within its cap; a missing optional file is None
    let v: serde_json::Value = pollster::block_on(loader::read_json(&src, "generation_config.json")).unwrap();
    assert_eq!(v["a"], 2);
    let none: Option<serde_json::Value> = pollster::block_on(loader::read_json_optional(&src, "modules.json")).unwrap();
    assert!(none.is_none());
}

#[test]
fn module_paths_stay_in_the_model_folder() {
    for bad in ["../x", "..", "/etc", "a/../../b", "a\\b", "C:\\x", ".hidden", "", "https://evil/x", "1_Pooling/.."] {
        match loader::module_file(bad, "config.json") {
            Err(Error::Config { file, msg }) => assert!(file == "modules.json" && msg.contains("plain folder"), "{bad}: {msg}"),
            other => panic!("{bad:?} should be rejected, got {other:?}"),
        }
    }
    assert_eq!(loader::module_file("1_Pooling", "config.json").unwrap(), "1_Pooling/config.json");
}

// ---- config values and sampling parameters --------------------------------------------

fn llama(extra: &str) -> LlamaConfig {
    let json = format!(
        r#"{{"model_type": "llama", "vocab_size": 100, "hidden_size": 64, "intermediate_size": 128,
            "num_hidden_layers": 2, "num_attention_heads": 4, "num_key_value_heads": 2{extra}}}"#
    );
    serde_json::from_str(&json).unwrap()
}

fn config_err(c: &LlamaConfig, needle: &str) {
    match c.validate("config.json") {
        Err(Error::Config { msg, .. }) => assert!(msg.contains(needle), "error `{msg}` should mention `{needle}`"),
        other => panic!("expected a Config error mentioning `{needle}`, got {other:?}"),
    }
}

#[test]
fn config_values_are_checked_for_meaning() {
    llama("").validate("config.json").unwrap();
    llama(r#", "rope_scaling": {"rope_type": "linear", "factor": 2.0}"#).validate("config.json").unwrap();
    config_err(&llama(r#", "rope_scaling": {"rope_type": "linear", "factor": 0.0}"#), "factor");
    config_err(&llama(r#", "rope_scaling": {"rope_type": "linear", "factor": -1.0}"#), "factor");
    config_err(&llama(r#", "rope_scaling": {"rope_type": "llama3", "factor": 0.0}"#), "factor");
    config_err(&llama(r#", "rope_scaling": {"type": "linear", "factor": 1e-320}"#), "rope frequencies");
    config_err(
        &llama(r#", "rope_scaling": {"rope_type": "llama3", "factor": 8.0, "low_freq_factor": 4.0, "high_freq_factor": 4.0}"#),
        "high_freq_factor",
    );
    config_err(
        &llama(r#", "rope_scaling": {"rope_type": "llama3", "factor": 8.0, "original_max_position_embeddings": 0}"#),
        "original_max_position_embeddings",
    );
    config_err(&llama(r#", "rms_norm_eps": 0.0"#), "rms_norm_eps");
    config_err(&llama(r#", "rope_theta": 0.5"#), "rope_theta");
    let mut c = llama("");
    c.num_key_value_heads = Some(3);
    config_err(&c, "multiple");
    // the llama3 form real checkpoints use stays valid
    llama(r#", "rope_scaling": {"rope_type": "llama3", "factor": 8.0, "low_freq_factor": 1.0, "high_freq_factor": 4.0, "original_max_position_embeddings": 8192}"#)
        .validate("config.json")
        .unwrap();
}

#[test]
fn sampling_parameters_have_meaning() {
    let ok = |t: f32| SamplingConfig { temperature: t, ..Default::default() }.validate();
    for t in [0.0, 1e-3, 0.7, 1.0, 50.0] {
        ok(t).unwrap_or_else(|e| panic!("temperature {t}: {e}"));
    }
    for t in [1e-40, 1e-4, -0.0001, f32::NAN, f32::INFINITY, -1.0] {
        match ok(t) {
            Err(Error::Input(msg)) => assert!(msg.contains("temperature"), "{msg}"),
            other => panic!("temperature {t} should be rejected, got {other:?}"),
        }
    }
    for p in [0.0, -0.1, 1.5, f32::NAN] {
        let r = SamplingConfig { top_p: p, ..Default::default() }.validate();
        assert!(matches!(r, Err(Error::Input(ref m)) if m.contains("top_p")), "top_p {p}: {r:?}");
    }
    for r in [0.0, 1e-30, f32::INFINITY] {
        let v = SamplingConfig { repetition_penalty: r, ..Default::default() }.validate();
        assert!(matches!(v, Err(Error::Input(ref m)) if m.contains("repetition_penalty")), "penalty {r}: {v:?}");
    }
}

// ---- safetensors headers --------------------------------------------------------------

#[test]
fn safetensors_duplicate_names_are_rejected() {
    let header = br#"{"w": {"dtype": "F32", "shape": [1], "data_offsets": [0, 4]}, "w": {"dtype": "F32", "shape": [1], "data_offsets": [4, 8]}}"#;
    match SafetensorsFile::parse("m.safetensors", header, 8 + header.len() as u64 + 8) {
        Err(Error::Format { format: "safetensors", msg, .. }) => assert!(msg.contains("w appears twice"), "{msg}"),
        other => panic!("expected a duplicate-name error, got {other:?}"),
    }
    let meta = br#"{"__metadata__": {}, "__metadata__": {}, "w": {"dtype": "F32", "shape": [1], "data_offsets": [0, 4]}}"#;
    assert!(matches!(SafetensorsFile::parse("m.safetensors", meta, 8 + meta.len() as u64 + 4), Err(Error::Format { .. })));
    // distinct names still parse, and a parsed header is complete
    let bytes = serialize(&[("a", StDType::F32, &[1], &[0; 4]), ("b", StDType::F16, &[2], &[0; 4])]);
    let n = u64::from_le_bytes(bytes[..8].try_into().unwrap()) as usize;
    let st = SafetensorsFile::parse("m.safetensors", &bytes[8..8 + n], bytes.len() as u64).unwrap();
    assert_eq!(st.tensors.len(), 2);
    assert_eq!(st.get("b").unwrap().shape, vec![2]);
}

// ---- token ids against the model ------------------------------------------------------

fn tokenizer_json(cls: u32, added: u32) -> Vec<u8> {
    format!(
        r#"{{"version": "1.0", "truncation": null, "padding": null,
  "added_tokens": [{{"id": {added}, "content": "[X]", "single_word": false, "lstrip": false, "rstrip": false, "normalized": false, "special": true}}],
  "normalizer": null, "pre_tokenizer": {{"type": "Whitespace"}},
  "post_processor": {{"type": "BertProcessing", "sep": ["[SEP]", 4], "cls": ["[CLS]", {cls}]}},
  "decoder": null,
  "model": {{"type": "WordLevel", "vocab": {{"[UNK]": 0, "a": 1, "b": 2, "[CLS]": 3, "[SEP]": 4}}, "unk_token": "[UNK]"}}}}"#
    )
    .into_bytes()
}

fn tok_err(r: gllm_web::Result<()>, needle: &str) {
    match r {
        Err(Error::Tokenizer(msg)) => assert!(msg.contains(needle), "error `{msg}` should mention `{needle}`"),
        other => panic!("expected a tokenizer error mentioning `{needle}`, got {other:?}"),
    }
}

#[test]
fn token_ids_are_checked_against_the_model() {
    let mut tok = Tokenizer::from_bytes(&tokenizer_json(3, 5), 16).unwrap();
    // the added token [X] has id 5: six embedding rows hold every id
    tok.check_ids(6, None).unwrap();
    assert_eq!(tok.encode_batch(&["a [X]"]).unwrap(), vec![vec![3, 1, 5, 4]]);
    // with five rows, [X] is a special token past the table (Gemma 3's `<image_soft_token>`):
    // the load passes, and a text that encodes to it is an input error; others still encode
    tok.check_ids(5, None).unwrap();
    match tok.encode_batch(&["a [X]"]) {
        Err(Error::Input(msg)) => assert!(msg.contains("[X]") && msg.contains("id 5"), "{msg}"),
        other => panic!("expected an input error for [X], got {other:?}"),
    }
    assert_eq!(tok.encode_batch(&["a b"]).unwrap(), vec![vec![3, 1, 2, 4]]);
    // a vocabulary token past the table is still a load error
    let mut tok = Tokenizer::from_bytes(&tokenizer_json(3, 5), 16).unwrap();
    tok_err(tok.check_ids(4, None), "id 4");
    // a post-processor id past the vocabulary
    let mut tok = Tokenizer::from_bytes(&tokenizer_json(9, 5), 16).unwrap();
    tok_err(tok.check_ids(6, None), "post-processor adds token id 9");
    tok.check_ids(10, None).unwrap();
    // BertProcessing gives the second text of a pair token type 1
    let mut pairs = Tokenizer::for_pairs(&tokenizer_json(3, 5), 16).unwrap();
    tok_err(pairs.check_ids(6, Some(1)), "type_vocab_size 1");
    pairs.check_ids(6, Some(2)).unwrap();
    // single texts only use type 0
    let mut single = Tokenizer::from_bytes(&tokenizer_json(3, 5), 16).unwrap();
    single.check_ids(6, Some(1)).unwrap();
    // the tokenizer still encodes after a failed check
    assert_eq!(single.encode_batch(&["a b"]).unwrap(), vec![vec![3, 1, 2, 4]]);
    let (ids, types) = &pairs.encode_pairs("a", &["b"]).unwrap()[0];
    assert_eq!((ids.clone(), types.clone()), (vec![3, 1, 4, 2, 4], vec![0, 0, 0, 1, 1]));
}

// ---- search index (GPU) ---------------------------------------------------------------

gpu_tests! {
    search_index_rejects_non_finite_vectors => search_index_rejects_non_finite_vectors,
    generator_checks_ids_and_survives_a_hostile_template => generator_checks_ids_and_survives_a_hostile_template,
    embedder_refuses_module_paths_outside_the_folder => embedder_refuses_module_paths_outside_the_folder,
}

/// A tiny random Llama (vocabulary 301) whose tokenizer knows `a`, `b`, `</s>`, `z` with id
/// `z` and an added token, and whose chat template loops forever on a message `boom`.
fn tiny_generator_folder(z: u32) -> MemSource {
    let config = serde_json::json!({
        "model_type": "llama", "vocab_size": 301, "hidden_size": 96, "intermediate_size": 136,
        "num_hidden_layers": 2, "num_attention_heads": 6, "num_key_value_heads": 2, "head_dim": 16,
        "rms_norm_eps": 1e-6, "rope_theta": 10000.0, "max_position_embeddings": 64, "tie_word_embeddings": true,
    });
    let c: LlamaConfig = serde_json::from_value(config.clone()).unwrap();
    let (weights, _) = gllm_web::reference::llama::random_checkpoint(&c, 7, 0.25);
    let tokenizer = format!(
        r#"{{"version": "1.0", "added_tokens": [{{"id": 4, "content": "<x>", "single_word": false, "lstrip": false, "rstrip": false, "normalized": false, "special": true}}],
          "normalizer": null, "pre_tokenizer": {{"type": "Whitespace"}}, "post_processor": null, "decoder": null,
          "model": {{"type": "WordLevel", "vocab": {{"[UNK]": 0, "a": 1, "b": 2, "</s>": 3, "z": {z}}}, "unk_token": "[UNK]"}}}}"#
    );
    let template = "{% for m in messages %}{% if m.content == 'boom' %}{% for i in range(100000) %}{% for j in range(100000) %}{% endfor %}{% endfor %}{% endif %}{{ m.content }} {% endfor %}";
    MemSource::new()
        .with("config.json", config.to_string().into_bytes())
        .with("tokenizer.json", tokenizer.into_bytes())
        .with("tokenizer_config.json", serde_json::json!({ "chat_template": template, "eos_token": "</s>" }).to_string().into_bytes())
        .with("model.safetensors", weights)
}

async fn generator_checks_ids_and_survives_a_hostile_template(gpu: Gpu) -> Result<(), String> {
    use gllm_web::{GenerateOptions, Generator, GeneratorOptions, Prompt};
    // a vocabulary id past the 301 embedding rows: refused at load
    match Generator::load(&gpu, &tiny_generator_folder(400), GeneratorOptions::default(), &|_| {}).await {
        Err(Error::Tokenizer(m)) if m.contains("id 400") => {}
        Err(e) => return Err(format!("expected a tokenizer error on id 400, got {e}")),
        Ok(_) => return Err("a tokenizer id past the vocabulary was accepted".into()),
    }
    let mut g = Generator::load(&gpu, &tiny_generator_folder(300), GeneratorOptions::default(), &|_| {}).await.map_err(|e| e.to_string())?;
    let opts = GenerateOptions { max_new_tokens: 3, ignore_eos: true, ..Default::default() };
    let t = std::time::Instant::now();
    match g.generate(Prompt::Messages(&[ChatMessage::new("user", "boom")]), &opts).await {
        Err(Error::Tokenizer(m)) if m.contains("budget") => {}
        other => return Err(format!("the runaway template should run out of its budget, got {:?}", other.map(|g| g.text))),
    }
    if t.elapsed().as_secs() > 20 {
        return Err(format!("rejecting the template took {:?}", t.elapsed()));
    }
    // a subnormal temperature: refused before anything runs
    let subnormal = GenerateOptions { sampling: SamplingConfig { temperature: 1e-40, ..Default::default() }, ..opts.clone() };
    match g.generate(Prompt::Text("a b"), &subnormal).await {
        Err(Error::Input(m)) if m.contains("temperature") => {}
        other => return Err(format!("temperature 1e-40 should be refused, got {:?}", other.map(|g| g.text))),
    }
    // the same generator still answers, through the template and without it
    let out = g.generate(Prompt::Messages(&[ChatMessage::new("user", "a b")]), &opts).await.map_err(|e| e.to_string())?;
    if out.prompt_ids != [1, 2] || out.tokens.len() != 3 || out.tokens.iter().any(|&t| t >= 301) {
        return Err(format!("after the rejected template: prompt {:?}, tokens {:?}", out.prompt_ids, out.tokens));
    }
    let again = g.generate(Prompt::Text("a b"), &opts).await.map_err(|e| e.to_string())?;
    if again.tokens != out.tokens {
        return Err(format!("greedy generation differs: {:?} then {:?}", out.tokens, again.tokens));
    }
    Ok(())
}

async fn embedder_refuses_module_paths_outside_the_folder(gpu: Gpu) -> Result<(), String> {
    use gllm_web::{EmbedOptions, Embedder};
    let config = serde_json::json!({
        "vocab_size": 30, "hidden_size": 32, "num_hidden_layers": 1, "num_attention_heads": 2,
        "intermediate_size": 64, "max_position_embeddings": 16, "type_vocab_size": 2, "layer_norm_eps": 1e-12,
        "hidden_act": "gelu",
    });
    for path in ["../../etc", "/etc", "1_Pooling/../..", "..\\x"] {
        let modules = serde_json::json!([{ "idx": 1, "name": "1", "path": path, "type": "sentence_transformers.models.Pooling" }]);
        let src = MemSource::new()
            .with("config.json", config.to_string().into_bytes())
            .with("modules.json", modules.to_string().into_bytes())
            .with(&format!("{path}/config.json"), b"{\"pooling_mode_mean_tokens\": true}".to_vec());
        match Embedder::load(&gpu, &src, EmbedOptions::default(), &|_| {}).await {
            Err(Error::Config { file, msg }) if file == "modules.json" && msg.contains("plain folder") => {}
            Err(e) => return Err(format!("{path}: expected a modules.json error, got {e}")),
            Ok(_) => return Err(format!("{path}: loaded")),
        }
    }
    Ok(())
}

async fn search_index_rejects_non_finite_vectors(gpu: Gpu) -> Result<(), String> {
    let mut index = SearchIndex::new(&gpu, 4).map_err(|e| e.to_string())?;
    index.add(&[1.0, 0.0, 0.0, 0.0, 0.0, 1.0, 0.0, 0.0]).map_err(|e| e.to_string())?;
    let input_err = |r: gllm_web::Result<u32>, needle: &str| match r {
        Err(Error::Input(m)) if m.contains(needle) => Ok(()),
        other => Err(format!("expected an input error mentioning `{needle}`, got {other:?}")),
    };
    input_err(index.add(&[0.0, f32::NAN, 0.0, 0.0]), "finite")?;
    input_err(index.add(&[0.0, 1.0, 0.0, 0.0, f32::INFINITY, 0.0, 0.0, 0.0]), "vector 1")?;
    input_err(index.add(&[1e30, 1e30, 0.0, 0.0]), "squared norm")?;
    input_err(index.add(&[1.0, 2.0, 3.0]), "whole number")?;
    for q in [vec![f32::NAN, 0.0, 0.0, 0.0], vec![0.0, f32::NEG_INFINITY, 0.0, 0.0]] {
        match index.search(&q, 2, SearchMode::Exact).await {
            Err(Error::Input(m)) if m.contains("query") => {}
            other => return Err(format!("a non-finite query should be rejected, got {other:?}")),
        }
    }
    match index.search(&[1.0, 0.0], 2, SearchMode::Exact).await {
        Err(Error::Input(m)) if m.contains("length") => {}
        other => return Err(format!("a short query should be rejected, got {other:?}")),
    }
    // import checks the same way
    let bad: Vec<u8> = [1.0f32, f32::NAN, 0.0, 0.0].iter().flat_map(|x| x.to_le_bytes()).collect();
    match SearchIndex::import(&gpu, 4, &bad) {
        Err(Error::Input(m)) if m.contains("finite") => {}
        Err(e) => return Err(format!("import: expected an input error, got {e}")),
        Ok(_) => return Err("import of a NaN vector succeeded".into()),
    }
    // the index is unchanged and answers correctly
    if index.len() != 2 {
        return Err(format!("index holds {} vectors after rejected adds, expected 2", index.len()));
    }
    let hits = index.search(&[0.0, 2.0, 0.0, 0.0], 2, SearchMode::Exact).await.map_err(|e| e.to_string())?;
    if hits[0].id != 1 || (hits[0].score - 1.0).abs() > 1e-5 || hits[1].score.abs() > 1e-5 {
        return Err(format!("hits after rejected input: {hits:?}"));
    }
    Ok(())
}

#[test]
fn tokenizer_json_that_panicked_the_tokenizers_crate_is_an_error() {
    // a syntax error inside `decoder` (the tokenizers crate's `expect("Helper")`)
    let good = String::from_utf8(tokenizer_json(3, 5)).unwrap();
    let bad = good.replace(r#""decoder": null"#, r#""decoder": {"type": "WordPiece", "prefix" "x"}"#);
    assert_ne!(bad, good);
    match Tokenizer::from_bytes(bad.as_bytes(), 16) {
        Err(Error::Tokenizer(m)) => assert!(m.contains("tokenizer.json"), "{m}"),
        other => panic!("expected a tokenizer error, got {:?}", other.map(|_| ())),
    }
    // a template naming a special token it does not define (an index panic when encoding)
    let template = r#""post_processor": {"type": "TemplateProcessing",
        "single": [{"SpecialToken": {"id": "[CLS]", "type_id": 0}}, {"Sequence": {"id": "A", "type_id": 0}}],
        "pair": [{"Sequence": {"id": "A", "type_id": 0}}, {"Sequence": {"id": "B", "type_id": 1}}],
        "special_tokens": {}}"#;
    let bad = good.replace(r#""post_processor": {"type": "BertProcessing", "sep": ["[SEP]", 4], "cls": ["[CLS]", 3]}"#, template);
    assert_ne!(bad, good);
    match Tokenizer::from_bytes(bad.as_bytes(), 16) {
        Err(Error::Tokenizer(m)) => assert!(m.contains("\"[CLS]\", absent from its special_tokens"), "{m}"),
        other => panic!("expected a tokenizer error, got {:?}", other.map(|_| ())),
    }
    // a single template naming sequence B (an index panic when encoding one text; found by
    // fuzz_inputs tokenizer)
    let template = r#""post_processor": {"type": "TemplateProcessing",
        "single": [{"Sequence": {"id": "B", "type_id": 0}}],
        "pair": [{"Sequence": {"id": "A", "type_id": 0}}, {"Sequence": {"id": "B", "type_id": 1}}],
        "special_tokens": {}}"#;
    let bad = good.replace(r#""post_processor": {"type": "BertProcessing", "sep": ["[SEP]", 4], "cls": ["[CLS]", 3]}"#, template);
    assert_ne!(bad, good);
    match Tokenizer::from_bytes(bad.as_bytes(), 16) {
        Err(Error::Tokenizer(m)) => assert!(m.contains("sequence B in its single template"), "{m}"),
        other => panic!("expected a tokenizer error, got {:?}", other.map(|_| ())),
    }
    // a lone surrogate or an out-of-range number inside `decoder` (same panic)
    for value in [r#""\ud800""#, "1e999"] {
        let bad = good.replace(r#""decoder": null"#, &format!(r#""decoder": {{"type": "Replace", "content": {value}}}"#));
        assert!(matches!(Tokenizer::from_bytes(bad.as_bytes(), 16), Err(Error::Tokenizer(_))), "{value}");
    }
    // a BPE merge shorter than the continuing-subword prefix (a slice panic in the crate)
    let bpe = r###"{"version": "1.0", "added_tokens": [], "normalizer": null, "pre_tokenizer": null,
        "post_processor": null, "decoder": null,
        "model": {"type": "BPE", "continuing_subword_prefix": "##", "vocab": {"a": 0, "b": 1, "ab": 2}, "merges": ["a b"]}}"###;
    match Tokenizer::from_bytes(bpe.as_bytes(), 16) {
        Err(Error::Tokenizer(m)) => assert!(m.contains("continuing_subword_prefix"), "{m}"),
        other => panic!("expected a tokenizer error, got {:?}", other.map(|_| ())),
    }
    // the good file still loads and encodes
    let tok = Tokenizer::from_bytes(good.as_bytes(), 16).unwrap();
    assert_eq!(tok.encode_batch(&["b"]).unwrap(), vec![vec![3, 2, 4]]);
}

// ---- GGUF metadata --------------------------------------------------------------------

#[test]
fn gguf_metadata_is_typed_and_capped() {
    use gllm_web::loader::gguf::{serialize, GgufArray, GgufFile, GgufValue, MAX_KEY_BYTES, MAX_NESTED_ARRAYS};
    let parse = |b: &[u8]| GgufFile::parse("t.gguf", b, b.len() as u64);
    let fmt_err = |r: gllm_web::Result<GgufFile>, needle: &str| match r {
        Err(Error::Format { format: "gguf", msg, .. }) => assert!(msg.contains(needle), "error `{msg}` should mention `{needle}`"),
        Err(e) => panic!("expected a gguf error mentioning `{needle}`, got {e}"),
        Ok(_) => panic!("expected a gguf error mentioning `{needle}`, got Ok"),
    };
    // arrays come back typed, empty ones keep their element type
    let b = serialize(
        &[
            ("bytes", GgufValue::Array(GgufArray::U8(vec![1, 2, 3]))),
            ("none", GgufValue::Array(GgufArray::I32(vec![]))),
            ("flags", GgufValue::Array(GgufArray::Bool(vec![true, false]))),
            ("words", GgufValue::Array(GgufArray::String(["", "é", "xy"].into_iter().collect()))),
        ],
        &[],
    );
    let g = parse(&b).unwrap();
    assert_eq!(g.meta_array("bytes").unwrap(), &GgufArray::U8(vec![1, 2, 3]));
    assert_eq!(g.meta_array("none").unwrap().type_name(), "[INT32]");
    assert_eq!(g.meta_array("flags").unwrap().get(1), Some(GgufValue::Bool(false)));
    let words = g.meta_array("words").unwrap().as_strings().unwrap();
    assert_eq!(words.iter().collect::<Vec<_>>(), ["", "é", "xy"]);
    assert_eq!(g.meta_array("bytes").unwrap().to_i64s(), Some(vec![1, 2, 3]));
    // a bool array holding 2
    let mut bad = serialize(&[("f", GgufValue::Array(GgufArray::Bool(vec![true, false])))], &[]);
    let at = bad.windows(10).position(|w| w == [2, 0, 0, 0, 0, 0, 0, 0, 1, 0]).unwrap() + 9;
    bad[at] = 2;
    fmt_err(parse(&bad), "bool byte 2");
    // a key past the spec's 65,535 bytes
    let long = "k".repeat(MAX_KEY_BYTES as usize + 1);
    fmt_err(parse(&serialize(&[(long.as_str(), GgufValue::U8(1))], &[])), "cap");
    // more arrays nested in arrays than the cap (each costs fixed memory for 12 bytes read)
    let many = GgufArray::Array(vec![GgufArray::U8(vec![]); MAX_NESTED_ARRAYS as usize + 1]);
    fmt_err(parse(&serialize(&[("n", GgufValue::Array(many))], &[])), "nested in arrays");
    let ok = GgufArray::Array(vec![GgufArray::U8(vec![]); 1000]);
    assert_eq!(parse(&serialize(&[("n", GgufValue::Array(ok))], &[])).unwrap().meta_array("n").unwrap().len(), 1000);
}
