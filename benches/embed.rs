//! Embeddings/s of a BERT embedder at batch 1 and batch 32 (sentences of about 30 tokens),
//! with random weights built from a real config (`config.json`, `tokenizer.json` and the
//! sentence-transformers files of `$GLLM_BENCH_MODEL`, default `models/all-MiniLM-L6-v2`).
//! Each call is a full `Embedder::embed`: tokenization, upload, one submission per chunk and
//! the readback. Median of timed calls after warm-up.
//!
//! Run: `cargo bench --bench embed`. The PyTorch reference: `benches/embed_torch.py DIR`.

use std::time::Instant;

use gllm_web::loader::safetensors::{serialize, StDType};
use gllm_web::loader::{FileSource, MemSource, Source};
use gllm_web::models::bert::{checkpoint_shapes, BertConfig};
use gllm_web::reference::rng::Rng;
use gllm_web::{EmbedOptions, Embedder, Gpu};

/// The benchmark's sentences; `embed_torch.py` uses the same formula.
fn sentence(i: usize) -> String {
    format!("Sentence number {i} talks about GPUs, browsers and the quick brown fox that jumps over the lazy dog today, as it does every morning.")
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

fn main() -> gllm_web::Result<()> {
    pollster::block_on(run())
}

async fn run() -> gllm_web::Result<()> {
    let dir = std::env::var("GLLM_BENCH_MODEL").unwrap_or_else(|_| "models/all-MiniLM-L6-v2".into());
    let real = FileSource::new(&dir);
    let config_bytes = real.read("config.json").await?;
    let config: BertConfig = serde_json::from_slice(&config_bytes).map_err(|e| gllm_web::Error::Config { file: "config.json".into(), msg: e.to_string() })?;
    let mut rng = Rng::new(7);
    let tensors: Vec<(String, Vec<usize>, Vec<u8>)> = checkpoint_shapes(&config)
        .into_iter()
        .map(|(name, shape)| {
            let n: usize = shape.iter().product();
            let ln_weight = name.ends_with("LayerNorm.weight");
            let bytes = (0..n).flat_map(|_| if ln_weight { 1.0f32 } else { rng.uniform(0.05) }.to_le_bytes()).collect();
            (name, shape, bytes)
        })
        .collect();
    let refs: Vec<(&str, StDType, &[usize], &[u8])> =
        tensors.iter().map(|(n, s, b)| (n.as_str(), StDType::F32, s.as_slice(), b.as_slice())).collect();
    let mut src = MemSource::new().with("model.safetensors", serialize(&refs)).with("config.json", config_bytes);
    for f in ["tokenizer.json", "modules.json", "1_Pooling/config.json", "sentence_bert_config.json"] {
        if let Ok(b) = real.read(f).await {
            src = src.with(f, b);
        }
    }

    let gpu = Gpu::new().await?;
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
