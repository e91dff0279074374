//! The GGUF path on both targets (natively and in headless Chromium): the SmolLM2 header
//! read through the platform's `Source` (HTTP Range requests in the browser), its tokenizer
//! built from GGUF metadata, the chat template rendered by minijinja, token ids equal to the
//! goldens, and one llama `k_proj` loaded to the GPU through `VarBuilder::from_gguf`.

mod common;

use gllm_web::loader::{GgufFile, GgufModel, Source};
use gllm_web::nn::VarBuilder;
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
    // one permuted llama tensor to the GPU: equal to the host-side dequantise + un-permute
    let model = GgufModel::new(g).map_err(e)?;
    let loaded = std::cell::Cell::new(0);
    let progress = |_: gllm_web::loader::Progress| {};
    let vb = VarBuilder::from_gguf(&gpu, &src, &model, &progress, &loaded);
    let w = vb
        .pp("model.layers.0.self_attn")
        .get("k_proj.weight", &[192, 576])
        .await
        .map_err(e)?;
    let got = gpu.readback_f32(&w).await.map_err(e)?;
    let info = model
        .tensor("model.layers.0.self_attn.k_proj.weight")
        .map_err(e)?;
    let bytes = src
        .read_range(SMOLLM2, info.start, info.n_bytes)
        .await
        .map_err(e)?;
    let want = model.to_f32(info, &bytes).map_err(e)?;
    if got != want {
        return Err("k_proj on the GPU differs from the host dequantisation".into());
    }
    if loaded.get() != info.n_bytes {
        return Err(format!(
            "progress counted {} bytes, the tensor has {}",
            loaded.get(),
            info.n_bytes
        ));
    }
    Ok(())
}

gpu_tests! {
    smollm2_gguf_tokenizer_and_load_test => smollm2_gguf_tokenizer_and_load,
}
