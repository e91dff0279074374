//! The GGUF path on both targets (natively and in headless Chromium): the SmolLM2 header
//! read through the platform's `Source` (HTTP Range requests in the browser), its tokenizer
//! built from GGUF metadata, the chat template rendered by minijinja, token ids equal to the
//! goldens, and the whole file streamed to the GPU with its blocks kept (llama's permuted
//! `k_proj` reordered as bytes).

mod common;

use gllm_web::loader::weights::unpermute_heads;
use gllm_web::loader::{GgufFile, GgufModel, Progress, Source, StreamOptions, Weights};
use gllm_web::models::llama::WEIGHT_ROLES;
use gllm_web::nn::{load_weights, LinearWeight, LoadDType, VarBuilder};
use gllm_web::quant::QuantFormat;
use gllm_web::tokenizer::chat::ChatMessage;
use gllm_web::tokenizer::gguf::GgufTokenizer;
use gllm_web::Gpu;

#[cfg(target_arch = "wasm32")]
wasm_bindgen_test::wasm_bindgen_test_configure!(run_in_browser);

const SMOLLM2: &str = "SmolLM2-135M-Instruct.Q4_1.gguf";
const GOLDEN: &str = include_str!("goldens/smollm2-135m-instruct-q4_1.json");

async fn smollm2_gguf_tokenizer_and_load(gpu: Gpu) -> Result<(), String> {
    let e = |e: gllm_web::Error| e.to_string();
    let src = common::model_source("gguf");
    let g = GgufFile::read(&src, SMOLLM2).await.map_err(e)?;
    if g.tensors.len() != 272 || g.architecture().map_err(e)? != "llama" {
        return Err(format!("unexpected header: {} tensors", g.tensors.len()));
    }
    let tok = GgufTokenizer::from_gguf(&g).map_err(e)?;
    let t = tok.tokenizer().map_err(e)?;
    let golden: serde_json::Value = serde_json::from_str(GOLDEN).map_err(|x| x.to_string())?;
    for case in golden["cases"].as_array().ok_or("no cases")? {
        let text = match case.get("messages") {
            Some(m) => {
                let m: Vec<ChatMessage> =
                    serde_json::from_value(m.clone()).map_err(|x| x.to_string())?;
                tok.apply_chat_template(&m, true).map_err(e)?
            }
            None => case["prompt"].as_str().ok_or("no prompt")?.to_string(),
        };
        if text != case["prompt"].as_str().unwrap_or_default() {
            return Err(format!("{}: rendered {text:?}", case["name"]));
        }
        let ids: Vec<u32> = t
            .encode(text.as_str(), false)
            .map_err(|x| x.to_string())?
            .get_ids()
            .to_vec();
        let want: Vec<u32> =
            serde_json::from_value(case["input_ids"].clone()).map_err(|x| x.to_string())?;
        if ids != want {
            return Err(format!("{}: ids {ids:?} != golden {want:?}", case["name"]));
        }
        log!("{}: {} ids equal the golden", case["name"], ids.len());
    }
    // The whole file streamed with dtype auto: llama's permuted k_proj keeps its Q4_1
    // blocks, reordered into HF rows as bytes while streaming; equal to the host-side
    // un-permute of the stored blocks, word for word.
    let model = GgufModel::new(g).map_err(e)?;
    let info = model.tensor("model.layers.0.self_attn.k_proj.weight").map_err(e)?.clone();
    let total = std::cell::Cell::new((0u64, 0u64));
    let progress = |p: Progress| {
        if let Progress::Progress { loaded, total: t, .. } = p {
            total.set((loaded, t));
        }
    };
    let weights = Weights::Gguf(model);
    let opts = StreamOptions { chunk_size: 4 << 20, ..Default::default() };
    let w = load_weights(&gpu, &src, &weights, LoadDType::Auto, WEIGHT_ROLES, opts, &progress, &|| false).await.map_err(e)?;
    let vb = VarBuilder::new(&gpu, &w, LoadDType::Auto);
    let k = vb.pp("model.layers.0.self_attn.k_proj").get_linear_weight("weight", &[192, 576]).await.map_err(e)?;
    let LinearWeight::Quant(q) = k else { return Err("k_proj is not blocks under dtype auto".into()) };
    let got = gpu.readback_u32(q.body()).await.map_err(e)?;
    let stored = src.read_range(SMOLLM2, info.start, info.n_bytes).await.map_err(e)?;
    let hf_rows = unpermute_heads(&stored, 576 / 32 * 20, 64);
    let want = gllm_web::quant::relayout(QuantFormat::Q4_1, &hf_rows).map_err(e)?.body;
    if got != want {
        return Err("k_proj blocks on the GPU differ from the host's un-permuted blocks".into());
    }
    let (loaded, t) = total.get();
    if loaded != t || t == 0 {
        return Err(format!("progress ended at {loaded} of {t} bytes"));
    }
    log!("SmolLM2 Q4_1 GGUF streamed with dtype auto: {} block matrices, {} other tensors, {} requests", w.blocks.len(), w.tensors.len(), w.requests_sent);
    Ok(())
}

/// Hostile chat templates in the browser too (issue 20; the native cases are in
/// `tests/untrusted.rs`): a namespace holding itself, a value nested 100,000 deep, a string
/// doubled per statement and a 100 GB indent each end in an error, not a trap of the wasm
/// module (a stack overflow or a failed allocation), and a good template renders afterwards.
async fn hostile_chat_templates_are_errors(_gpu: Gpu) -> Result<(), String> {
    use gllm_web::tokenizer::chat::render_chat;
    let m = [ChatMessage::new("user", "hi")];
    for t in [
        "{% set ns = namespace(a=0) %}{% set ns.a = ns %}{{ ns }}",
        "{% set ns = namespace(x=[]) %}{% for i in range(100000) %}{% set ns.x = [ns.x] %}{% endfor %}{{ ns.x }}",
        "{% set ns = namespace(x=[1]) %}{% for i in range(40) %}{% set ns.x = [ns.x, ns.x] %}{% endfor %}{{ ns.x|tojson }}",
        "{% set a = 'x' * 1000000 %}{% set b = a ~ a %}{% set c = b ~ b %}{% set d = c ~ c %}{% set e = d ~ d %}{% set f = e ~ e %}{{ f|length }}",
        "{{ 'x\ny'|indent(100000000000) }}",
    ] {
        match render_chat(t, &m, true, None, None) {
            Err(gllm_web::Error::Tokenizer(msg)) => log!("refused: {msg}"),
            other => return Err(format!("{t}: expected a template error, got {other:?}")),
        }
    }
    let ok = render_chat("{% for m in messages %}[{{ m.content }}]{% endfor %}", &m, true, None, None).map_err(|e| e.to_string())?;
    if ok != "[hi]" {
        return Err(format!("good template rendered {ok:?}"));
    }
    Ok(())
}

gpu_tests! {
    hostile_chat_templates_are_errors_test => hostile_chat_templates_are_errors,
    smollm2_gguf_tokenizer_and_load_test => smollm2_gguf_tokenizer_and_load,
}
