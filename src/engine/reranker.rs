//! Reranking of (query, document) pairs, all pairs of a call in one batch, in two modes
//! chosen by `config.json`'s `model_type`:
//! - a cross-encoder: `[CLS] query [SEP] doc [SEP]` through `BertForSequenceClassification`
//!   (one logit per pair);
//! - a decoder (`qwen3`, `qwen2`, `llama`, `mistral` with its LM head): the Qwen3-Reranker
//!   recipe (<https://huggingface.co/Qwen/Qwen3-Reranker-0.6B>, the model card's
//!   transformers example), which asks the model whether the document meets the query and
//!   reads the logits of "yes" and "no" at the last position ([`QWEN3_RERANKER_PREFIX`],
//!   [`QWEN3_RERANKER_SUFFIX`], [`DEFAULT_INSTRUCTION`]).
//!
//! Per call: the pairs are tokenized (long documents are truncated from the document side,
//! never the query), uploaded once, run as one forward pass per chunk of `batch_size`
//! pairs (default 64, so up to 64 documents are one pass), and the `[n]` logits (a decoder:
//! `[n, 2]`, no and yes) are the one readback. The sigmoid of the logit is the relevance
//! probability.

use serde::Deserialize;

use crate::error::{Error, Result};
use crate::gpu::{DType, Gpu, GpuTensor};
use crate::engine::LoadOptions;
use crate::kernels::{matmul, pool};
use crate::loader::{read_json, read_whole, Progress, Source, Weights};
use crate::models::bert::{BertConfig, BertForSequenceClassification, BertInput};
use crate::models::llama::{LlamaConfig, LlamaModel};
use crate::nn::{load_weights, VarBuilder};
use crate::tokenizer::Tokenizer;

/// The Qwen3-Reranker prompt before the `<Instruct>` block (the model card's `prefix`),
/// tokenized on its own as the card does.
pub const QWEN3_RERANKER_PREFIX: &str = "<|im_start|>system\nJudge whether the Document meets the requirements based on the Query and the Instruct provided. Note that the answer can only be \"yes\" or \"no\".<|im_end|>\n<|im_start|>user\n";
/// The Qwen3-Reranker prompt after the document (the card's `suffix`): the assistant turn
/// with an empty thinking block, after which the model would answer "yes" or "no".
pub const QWEN3_RERANKER_SUFFIX: &str = "<|im_end|>\n<|im_start|>assistant\n<think>\n\n</think>\n\n";
/// The card's default instruction (`format_instruction` with `instruction=None`).
pub const DEFAULT_INSTRUCTION: &str = "Given a web search query, retrieve relevant passages that answer the query";

/// Load options.
#[derive(Debug, Clone, Default)]
pub struct RerankOptions {
    /// Longest pair in tokens; documents are truncated to fit. Default: the model maximum.
    pub max_length: Option<usize>,
    /// Pairs per forward pass. Default 64.
    pub batch_size: Option<usize>,
    /// A decoder reranker's task instruction (the `<Instruct>` of the prompt). Default
    /// [`DEFAULT_INSTRUCTION`]. A cross-encoder has none: setting it is an input error.
    pub instruction: Option<String>,
    /// Weights storage (default `auto`), streaming and the weights file.
    pub load: LoadOptions,
}

/// One scored document.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RerankResult {
    /// Position of the document in the input list.
    pub index: usize,
    /// The classifier's raw output; a decoder's `logit(yes) - logit(no)` at the last position.
    pub logit: f32,
    /// `sigmoid(logit)`: relevance probability in (0, 1); for a decoder this is
    /// `exp(log_softmax([no, yes])[1])`, the Qwen3-Reranker score.
    pub score: f32,
}

#[derive(Deserialize)]
struct Labels {
    num_labels: Option<usize>,
    id2label: Option<serde_json::Map<String, serde_json::Value>>,
}

/// How pairs are scored.
enum Scorer {
    CrossEncoder(BertForSequenceClassification),
    Decoder(DecoderScorer),
}

/// The Qwen3-Reranker recipe over a Llama-family causal LM.
struct DecoderScorer {
    model: LlamaModel,
    /// Token ids of [`QWEN3_RERANKER_PREFIX`] and [`QWEN3_RERANKER_SUFFIX`].
    prefix: Vec<u32>,
    suffix: Vec<u32>,
    instruction: String,
    /// The token ids of "no" and "yes".
    no_yes: [u32; 2],
    /// Rows "no" and "yes" of the LM head, `[2, hidden]` f32; `None` for a quantized head
    /// (then the whole head runs on each pair's last position only).
    rows: Option<GpuTensor>,
}

pub struct Reranker {
    gpu: Gpu,
    scorer: Scorer,
    tokenizer: Tokenizer,
    batch_size: usize,
    max_length: usize,
}

impl Reranker {
    /// Loads a `BertForSequenceClassification` checkpoint with one label (the layout of
    /// `cross-encoder/ms-marco-MiniLM-L-6-v2`): `config.json`, `tokenizer.json`,
    /// `model.safetensors` (or shards) with `bert.*` and `classifier.*` tensors; or a
    /// Llama-family causal LM (`model_type` `qwen3`, `qwen2`, `llama`, `mistral`; the layout
    /// of Qwen3-Reranker) with its LM head, tied or `lm_head.weight`, scored by the
    /// Qwen3-Reranker recipe.
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
        if super::embedder::is_decoder(&super::embedder::model_type(src).await?) {
            return Self::load_decoder(gpu, src, opts, progress, should_abort).await;
        }
        if opts.instruction.is_some() {
            return Err(Error::Input("instruction: a cross-encoder reranker takes no instruction (only decoder rerankers do)".into()));
        }
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
        let batch_size = opts.batch_size.unwrap_or(64).max(1);
        Ok(Self { gpu: gpu.clone(), scorer: Scorer::CrossEncoder(model), tokenizer, batch_size, max_length })
    }

    /// A decoder reranker (Qwen3-Reranker recipe): the tokenizer, the "yes"/"no" ids, the
    /// decoder with its LM head, and the head's two rows.
    async fn load_decoder<S: Source>(
        gpu: &Gpu,
        src: &S,
        opts: RerankOptions,
        progress: &dyn Fn(Progress),
        should_abort: &dyn Fn() -> bool,
    ) -> Result<Self> {
        if gpu.is_host() {
            // Decoders stay on WebGPU: on the CPU backend causal and grouped-query attention would
            // run the f64 reference, and the KV-cache kernels have no CPU version.
            return Err(Error::Unsupported { op: "a decoder reranker" });
        }
        let config: LlamaConfig = read_json(src, "config.json").await?;
        config.validate("config.json")?;
        let max_length = opts.max_length.unwrap_or(config.max_position_embeddings).min(config.max_position_embeddings);
        progress(Progress::Initiate { file: "tokenizer.json".into() });
        let mut tokenizer = Tokenizer::from_bytes(&read_whole(src, "tokenizer.json").await?, max_length)?;
        tokenizer.check_ids(config.vocab_size, None)?;
        let prefix = tokenizer.encode_raw(QWEN3_RERANKER_PREFIX)?;
        let suffix = tokenizer.encode_raw(QWEN3_RERANKER_SUFFIX)?;
        // The card truncates the `<Instruct>...<Document>` text to what the prompt leaves.
        let room = max_length.checked_sub(prefix.len() + suffix.len()).filter(|&r| r > 0).ok_or_else(|| {
            Error::Input(format!("max_length {max_length} leaves no room after the {}-token reranking prompt", prefix.len() + suffix.len()))
        })?;
        tokenizer.set_max_length(room)?;
        // The card takes `convert_tokens_to_ids("yes")` / `("no")`: vocabulary tokens.
        let single = |word: &str| {
            tokenizer.token_to_id(word).ok_or_else(|| Error::Config {
                file: "tokenizer.json".into(),
                msg: format!("a decoder reranker reads the logit of the token {word:?}, which is not a single token of this vocabulary"),
            })
        };
        let no_yes = [single("no")?, single("yes")?];
        progress(Progress::Done { file: "tokenizer.json".into() });
        let weights = Weights::open(src, opts.load.weights.as_deref()).await?;
        let dtype = opts.load.dtype.unwrap_or_default();
        let w = load_weights(gpu, src, &weights, dtype, crate::models::llama::WEIGHT_ROLES, opts.load.stream, progress, should_abort).await?;
        let vb = VarBuilder::new(gpu, &w, dtype);
        if !vb.contains("model.embed_tokens.weight") {
            return Err(Error::Config {
                file: weights.name().to_string(),
                msg: "a decoder reranker needs a causal LM checkpoint (`model.embed_tokens.weight`, ...): this looks like a bare decoder (an embedder's trunk)".into(),
            });
        }
        if !config.tie_word_embeddings && !vb.contains("lm_head.weight") {
            return Err(Error::Config {
                file: weights.name().to_string(),
                msg: "a decoder reranker needs the LM head: `tie_word_embeddings` is false and there is no `lm_head.weight`".into(),
            });
        }
        let model = LlamaModel::load(&vb, config).await?;
        drop(w);
        let mut enc = gpu.encoder();
        let ids = gpu.upload_u32(&no_yes, &[2])?;
        let rows = model.head_rows(&mut enc, &ids)?;
        enc.submit()?;
        gpu.sync().await?;
        progress(Progress::Ready);
        let instruction = opts.instruction.unwrap_or_else(|| DEFAULT_INSTRUCTION.to_string());
        let scorer = Scorer::Decoder(DecoderScorer { model, prefix, suffix, instruction, no_yes, rows });
        Ok(Self { gpu: gpu.clone(), scorer, tokenizer, batch_size: opts.batch_size.unwrap_or(64).max(1), max_length })
    }

    /// Longest pair in tokens (a decoder's: the whole prompt).
    pub fn max_length(&self) -> usize {
        self.max_length
    }

    /// Whether this is a decoder reranker (Qwen3-Reranker recipe).
    pub fn is_decoder(&self) -> bool {
        matches!(self.scorer, Scorer::Decoder(_))
    }

    /// The token ids of "yes" and "no" of a decoder reranker.
    pub fn yes_no_ids(&self) -> Option<(u32, u32)> {
        match &self.scorer {
            Scorer::Decoder(d) => Some((d.no_yes[1], d.no_yes[0])),
            Scorer::CrossEncoder(_) => None,
        }
    }

    /// Token ids and token type ids of each `(query, doc)` pair, as the model sees them. A
    /// decoder's pair is `prefix + text + suffix`, each tokenized on its own as the
    /// Qwen3-Reranker card does (prefix and suffix without special tokens; the text,
    /// `<Instruct>: {instruction}\n<Query>: {query}\n<Document>: {doc}`, like the card's
    /// `tokenizer(pairs)`, with whatever the post-processor adds, cut from its end to fit);
    /// its type ids are zeros.
    pub fn encode(&self, query: &str, docs: &[&str]) -> Result<Vec<(Vec<u32>, Vec<u32>)>> {
        if let Scorer::Decoder(d) = &self.scorer {
            return docs
                .iter()
                .map(|doc| {
                    let text = format!("<Instruct>: {}\n<Query>: {query}\n<Document>: {doc}", d.instruction);
                    let mut ids = d.prefix.clone();
                    ids.extend(self.tokenizer.encode_batch(&[text.as_str()])?.into_iter().flatten());
                    ids.extend(&d.suffix);
                    let types = vec![0; ids.len()];
                    Ok((ids, types))
                })
                .collect();
        }
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
        let logits = match &self.scorer {
            Scorer::CrossEncoder(model) => self.cross_encoder_logits(model, &pairs).await?,
            Scorer::Decoder(d) => self.decoder_logits(d, &pairs).await?,
        };
        let mut results: Vec<RerankResult> = logits
            .iter()
            .enumerate()
            .map(|(index, &logit)| RerankResult { index, logit, score: 1.0 / (1.0 + (-logit).exp()) })
            .collect();
        results.sort_by(|a, b| b.logit.total_cmp(&a.logit).then(a.index.cmp(&b.index)));
        results.truncate(top_n.unwrap_or(results.len()));
        Ok(results)
    }

    /// One logit per pair from the classifier.
    async fn cross_encoder_logits(&self, model: &BertForSequenceClassification, pairs: &[(Vec<u32>, Vec<u32>)]) -> Result<Vec<f32>> {
        let gpu = &self.gpu;
        let out = gpu.alloc(&[pairs.len()], DType::F32)?;
        let pad = model.bert.config.pad_token_id;
        for (c, chunk) in pairs.chunks(self.batch_size).enumerate() {
            let ids: Vec<Vec<u32>> = chunk.iter().map(|p| p.0.clone()).collect();
            let types: Vec<Vec<u32>> = chunk.iter().map(|p| p.1.clone()).collect();
            let input = BertInput::upload(gpu, &ids, Some(&types), pad)?;
            let mut enc = gpu.encoder();
            let logits = model.forward(&mut enc, &input)?;
            enc.copy_into(&logits.reshape(&[chunk.len()])?, &out, c * self.batch_size)?;
            enc.submit()?;
        }
        gpu.readback_f32(&out).await
    }

    /// `logit(yes) - logit(no)` at each pair's last position: the decoder over the
    /// right-padded pairs, the last real token's final hidden state (`last_pool`), times the
    /// head's "no" and "yes" rows; `[n, 2]` is the one readback.
    async fn decoder_logits(&self, d: &DecoderScorer, pairs: &[(Vec<u32>, Vec<u32>)]) -> Result<Vec<f32>> {
        let gpu = &self.gpu;
        let out = gpu.alloc(&[pairs.len(), 2], DType::F32)?;
        for (c, chunk) in pairs.chunks(self.batch_size).enumerate() {
            let ids: Vec<Vec<u32>> = chunk.iter().map(|p| p.0.clone()).collect();
            let input = BertInput::upload(gpu, &ids, None, 0)?;
            let mut enc = gpu.encoder();
            let hidden = d.model.forward_hidden(&mut enc, &input.input_ids, &input.attention_mask, input.batch, input.seq)?;
            let last = pool::last_pool(&mut enc, &hidden, &input.attention_mask)?;
            drop(hidden);
            let base = c * self.batch_size * 2;
            match &d.rows {
                Some(rows) => {
                    let logits = matmul::linear(&mut enc, &last, rows, None)?;
                    enc.copy_into(&logits, &out, base)?;
                }
                None => {
                    let vocab = d.model.config.vocab_size;
                    let logits = d.model.head(&mut enc, &last)?;
                    for r in 0..chunk.len() {
                        for (j, &id) in d.no_yes.iter().enumerate() {
                            enc.copy_slice(&logits, r * vocab + id as usize, &out, base + r * 2 + j, 1)?;
                        }
                    }
                }
            }
            enc.submit()?;
        }
        let v = gpu.readback_f32(&out).await?;
        Ok(v.chunks_exact(2).map(|p| p[1] - p[0]).collect())
    }
}
