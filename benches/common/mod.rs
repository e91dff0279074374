//! Shared by the benchmarks: random-weight checkpoints built from a real config.
#![allow(dead_code)]

use gllm_web::loader::safetensors::{serialize, StDType};
use gllm_web::loader::{FileSource, MemSource, Source};
use gllm_web::models::bert::{checkpoint_shapes, BertConfig};
use gllm_web::reference::rng::Rng;

pub fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

/// The model folder whose config and tokenizer the benchmarks use
/// (`$GLLM_BENCH_MODEL`, default `models/all-MiniLM-L6-v2`).
pub fn model_dir() -> String {
    std::env::var("GLLM_BENCH_MODEL").unwrap_or_else(|_| "models/all-MiniLM-L6-v2".into())
}

/// A `MemSource` with the real config, tokenizer and sentence-transformers files of
/// `model_dir()` and a random-weight `model.safetensors` of the same shapes. With
/// `classifier`, the checkpoint is a one-label `BertForSequenceClassification` (`bert.`
/// prefix, pooler, classifier), i.e. a cross-encoder.
pub async fn random_bert(classifier: bool) -> gllm_web::Result<MemSource> {
    let real = FileSource::new(model_dir());
    let config_bytes = real.read("config.json").await?;
    let config: BertConfig = serde_json::from_slice(&config_bytes)
        .map_err(|e| gllm_web::Error::Config { file: "config.json".into(), msg: e.to_string() })?;
    let h = config.hidden_size;
    let mut shapes = checkpoint_shapes(&config);
    if classifier {
        shapes = shapes.into_iter().map(|(n, s)| (format!("bert.{n}"), s)).collect();
        shapes.extend([
            ("bert.pooler.dense.weight".to_string(), vec![h, h]),
            ("bert.pooler.dense.bias".into(), vec![h]),
            ("classifier.weight".into(), vec![1, h]),
            ("classifier.bias".into(), vec![1]),
        ]);
    }
    let mut rng = Rng::new(7);
    let tensors: Vec<(String, Vec<usize>, Vec<u8>)> = shapes
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
    Ok(src)
}
