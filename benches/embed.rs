//! Embeddings/s of a BERT (or EmbeddingGemma: a Gemma 3 folder) embedder at batch 1 and batch 32 (sentences of about 30 tokens),
//! with random weights built from a real config (`config.json`, `tokenizer.json` and the
//! sentence-transformers files of `$GLLM_BENCH_MODEL`, default `models/all-MiniLM-L6-v2`).
//! Each call is a full `Embedder::embed`: tokenization, upload, one submission per chunk and
//! the readback. Median of timed calls after warm-up.
//!
//! Run: `cargo bench --bench embed` (`GLLM_BENCH_DEVICE=cpu` for the CPU backend). The PyTorch reference: `benches/embed_torch.py DIR`.

use std::time::Instant;

mod common;

use common::median;
use gllm_web::{EmbedOptions, Embedder};

/// The benchmark's sentences; `embed_torch.py` uses the same formula.
fn sentence(i: usize) -> String {
    format!("Sentence number {i} talks about GPUs, browsers and the quick brown fox that jumps over the lazy dog today, as it does every morning.")
}

fn main() -> gllm_web::Result<()> {
    pollster::block_on(run())
}

async fn run() -> gllm_web::Result<()> {
    let dir = common::model_dir();
    let src = common::random_embedder().await?;
    common::write_out(&src, "embed")?;
    // GLLM_BENCH_DEVICE=cpu: the CPU backend (SPEC/cpu.md); default: the adapter.
    let device: gllm_web::DeviceChoice = std::env::var("GLLM_BENCH_DEVICE").unwrap_or_else(|_| "webgpu".into()).parse()?;
    let gpu = device.device(true).await?;
    let adapter = gpu.caps().adapter.clone();
    let embedder = Embedder::load(&gpu, &src, EmbedOptions::default(), &|_| {}).await?;
    let cpu = gpu.caps().is_cpu;
    let texts: Vec<String> = (0..32).map(sentence).collect();
    let tokens = embedder.embed(&[texts[0].as_str()]).await?.token_ids[0].len();
    println!("adapter: {adapter}");
    println!("model: {dir} config, random weights; sentence 0 has {tokens} tokens");
    println!("\n| bench | median time/call | embeddings/s |\n|---|---|---|");
    for batch in [1usize, 32] {
        let refs: Vec<&str> = texts[..batch].iter().map(String::as_str).collect();
        let (warm, runs) = if cpu { (1, 3) } else { (5, 30) };
        let mut samples = Vec::new();
        for r in 0..warm + runs {
            let t0 = Instant::now();
            let e = embedder.embed(&refs).await?;
            assert_eq!(e.dims[0], batch);
            if r >= warm {
                samples.push(t0.elapsed().as_secs_f64());
            }
        }
        let s = median(samples);
        let name = adapter.split(" (").next().unwrap_or("?");
        println!("| {name} gllm-web embed f32 batch={batch} ~{tokens} tok | {:.2} ms | {:.0} |", s * 1e3, batch as f64 / s);
    }
    Ok(())
}
