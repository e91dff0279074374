//! Cross-encoder reranking: `[CLS] query [SEP] doc [SEP]` pairs through
//! `BertForSequenceClassification` (one logit per pair), all pairs in one batch.
//!
//! Per call: the pairs are tokenized (long documents are truncated from the document side,
//! never the query), uploaded once, run as one forward pass per chunk of `batch_size`
//! pairs (default 64, so up to 64 documents are one pass), and the `[n]` logits are the one
//! readback. The sigmoid of the logit is the relevance probability.

use serde::Deserialize;

use crate::error::{Error, Result};
use crate::gpu::{DType, Gpu};
use crate::engine::LoadOptions;
use crate::loader::{read_json, read_whole, Progress, Source, Weights};
use crate::models::bert::{BertConfig, BertForSequenceClassification, BertInput};
use crate::nn::{load_weights, VarBuilder};
use crate::tokenizer::Tokenizer;

/// Load options.
#[derive(Debug, Clone, Default)]
pub struct RerankOptions {
    /// Longest pair in tokens; documents are truncated to fit. Default: the model maximum.
    pub max_length: Option<usize>,
    /// Pairs per forward pass. Default 64.
    pub batch_size: Option<usize>,
    /// Weights storage (default `auto`), streaming and the weights file.
    pub load: LoadOptions,
}

/// One scored document.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RerankResult {
    /// Position of the document in the input list.
    pub index: usize,
    /// The classifier's raw output.
    pub logit: f32,
    /// `sigmoid(logit)`: relevance probability in (0, 1).
    pub score: f32,
}

#[derive(Deserialize)]
struct Labels {
    num_labels: Option<usize>,
    id2label: Option<serde_json::Map<String, serde_json::Value>>,
}

pub struct Reranker {
    gpu: Gpu,
    model: BertForSequenceClassification,
    tokenizer: Tokenizer,
    batch_size: usize,
}

impl Reranker {
    /// Loads a `BertForSequenceClassification` checkpoint with one label (the layout of
    /// `cross-encoder/ms-marco-MiniLM-L-6-v2`): `config.json`, `tokenizer.json`,
    /// `model.safetensors` (or shards) with `bert.*` and `classifier.*` tensors.
    pub async fn load<S: Source>(gpu: &Gpu, src: &S, opts: RerankOptions, progress: &dyn Fn(Progress)) -> Result<Self> {
        Self::load_with_abort(gpu, src, opts, progress, &|| false).await
    }

    /// [`Self::load`], stopping with `Error::Aborted` (and freeing what was uploaded) once
    /// `should_abort` returns true.
    pub async fn load_with_abort<S: Source>(
        gpu: &Gpu,
        src: &S,
        opts: RerankOptions,
        progress: &dyn Fn(Progress),
        should_abort: &dyn Fn() -> bool,
    ) -> Result<Self> {
        let config: BertConfig = read_json(src, "config.json").await?;
        config.validate("config.json")?;
        let labels: Labels = read_json(src, "config.json").await?;
        let num_labels = labels.num_labels.or(labels.id2label.map(|m| m.len())).unwrap_or(1);
        if num_labels != 1 {
            return Err(Error::Config {
                file: "config.json".into(),
                msg: format!("a reranker has one label, this model has {num_labels}"),
            });
        }
        let max_length = opts.max_length.unwrap_or(config.max_position_embeddings).min(config.max_position_embeddings);
        progress(Progress::Initiate { file: "tokenizer.json".into() });
        let mut tokenizer = Tokenizer::for_pairs(&read_whole(src, "tokenizer.json").await?, max_length)?;
        tokenizer.check_ids(config.vocab_size, Some(config.type_vocab_size))?;
        progress(Progress::Done { file: "tokenizer.json".into() });
        // One file or shards, streamed and checked against `gllm-manifest.json` when present.
        let weights = Weights::open(src, opts.load.weights.as_deref()).await?;
        let dtype = opts.load.dtype.unwrap_or_default();
        let w = load_weights(gpu, src, &weights, dtype, crate::models::bert::WEIGHT_ROLES, opts.load.stream, progress, should_abort).await?;
        let model = BertForSequenceClassification::load(&VarBuilder::new(gpu, &w, dtype), config, 1).await?;
        drop(w);
        gpu.sync().await?;
        progress(Progress::Ready);
        Ok(Self { gpu: gpu.clone(), model, tokenizer, batch_size: opts.batch_size.unwrap_or(64).max(1) })
    }

    pub fn max_length(&self) -> usize {
        self.tokenizer.max_length()
    }

    /// Token ids and token type ids of each `(query, doc)` pair, as the model sees them.
    pub fn encode(&self, query: &str, docs: &[&str]) -> Result<Vec<(Vec<u32>, Vec<u32>)>> {
        self.tokenizer.encode_pairs(query, docs).map_err(|e| match e {
            Error::Tokenizer(msg) if msg.contains("runcat") => {
                Error::Input(format!("the query is too long to leave room for a document within {} tokens: {msg}", self.max_length()))
            }
            e => e,
        })
    }

    /// Scores every document against `query`; returns the best `top_n` (all when `None`),
    /// highest first. An empty `docs` list gives an empty result.
    pub async fn rerank(&self, query: &str, docs: &[&str], top_n: Option<usize>) -> Result<Vec<RerankResult>> {
        if docs.is_empty() {
            return Ok(Vec::new());
        }
        let pairs = self.encode(query, docs)?;
        let gpu = &self.gpu;
        let out = gpu.alloc(&[docs.len()], DType::F32)?;
        let pad = self.model.bert.config.pad_token_id;
        for (c, chunk) in pairs.chunks(self.batch_size).enumerate() {
            let ids: Vec<Vec<u32>> = chunk.iter().map(|p| p.0.clone()).collect();
            let types: Vec<Vec<u32>> = chunk.iter().map(|p| p.1.clone()).collect();
            let input = BertInput::upload(gpu, &ids, Some(&types), pad)?;
            let mut enc = gpu.encoder();
            let logits = self.model.forward(&mut enc, &input)?;
            enc.copy_into(&logits.reshape(&[chunk.len()])?, &out, c * self.batch_size)?;
            enc.submit()?;
        }
        let logits = gpu.readback_f32(&out).await?;
        let mut results: Vec<RerankResult> = logits
            .iter()
            .enumerate()
            .map(|(index, &logit)| RerankResult { index, logit, score: 1.0 / (1.0 + (-logit).exp()) })
            .collect();
        results.sort_by(|a, b| b.logit.total_cmp(&a.logit).then(a.index.cmp(&b.index)));
        results.truncate(top_n.unwrap_or(results.len()));
        Ok(results)
    }
}
