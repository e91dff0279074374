//! Writes the deterministic random-weight checkpoint of a Llama / Qwen2 / Qwen3 config
//! ([`gllm_web::reference::llama::random_checkpoint`]: F16 tensors, uniform in ±`scale`,
//! norms around 1) as `OUT_DIR/model.safetensors`, with the config as `OUT_DIR/config.json`,
//! so that transformers can load the same weights a test builds in memory
//! (`scripts/make_decoder_retrieval_goldens.py`).
//!
//! ```text
//! cargo run --example random_llama_checkpoint -- CONFIG.json OUT_DIR SEED SCALE
//! ```

#[cfg(not(target_arch = "wasm32"))]
fn main() -> Result<(), String> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [config, out, seed, scale] = args.as_slice() else {
        return Err("usage: random_llama_checkpoint CONFIG.json OUT_DIR SEED SCALE".into());
    };
    let text = std::fs::read_to_string(config).map_err(|e| format!("{config}: {e}"))?;
    let c: gllm_web::models::llama::LlamaConfig = serde_json::from_str(&text).map_err(|e| format!("{config}: {e}"))?;
    c.validate(config).map_err(|e| e.to_string())?;
    let seed: u64 = seed.parse().map_err(|_| format!("SEED {seed} is not an integer"))?;
    let scale: f32 = scale.parse().map_err(|_| format!("SCALE {scale} is not a number"))?;
    let (bytes, _) = gllm_web::reference::llama::random_checkpoint(&c, seed, scale);
    std::fs::create_dir_all(out).map_err(|e| format!("{out}: {e}"))?;
    std::fs::write(format!("{out}/model.safetensors"), bytes).map_err(|e| e.to_string())?;
    std::fs::write(format!("{out}/config.json"), text).map_err(|e| e.to_string())?;
    println!("{out}/model.safetensors: seed {seed}, scale {scale}");
    Ok(())
}

#[cfg(target_arch = "wasm32")]
fn main() {}
