//! Tokenizers from HF `tokenizer.json` (the `tokenizers` crate, built with its wasm-safe
//! `fancy-regex` backend), with our own padding and truncation policy.

pub mod chat;
pub mod gguf;

use tokenizers::{PaddingParams, TruncationDirection, TruncationParams, TruncationStrategy};

use crate::error::{Error, Result};

pub struct Tokenizer {
    inner: tokenizers::Tokenizer,
    max_length: usize,
}

impl Tokenizer {
    /// Parses `tokenizer.json`. Padding in the file is turned off (batches are padded to
    /// their longest member by the engine); truncation is set to `max_length` tokens,
    /// special tokens included, cutting from the end.
    pub fn from_bytes(bytes: &[u8], max_length: usize) -> Result<Self> {
        Self::with_strategy(bytes, max_length, TruncationStrategy::LongestFirst)
    }

    /// For pairs (`[CLS] query [SEP] doc [SEP]`): truncation cuts only the second text.
    pub fn for_pairs(bytes: &[u8], max_length: usize) -> Result<Self> {
        Self::with_strategy(bytes, max_length, TruncationStrategy::OnlySecond)
    }

    fn with_strategy(bytes: &[u8], max_length: usize, strategy: TruncationStrategy) -> Result<Self> {
        let mut inner = tokenizers::Tokenizer::from_bytes(bytes).map_err(|e| Error::Tokenizer(format!("tokenizer.json: {e}")))?;
        inner.with_padding(None::<PaddingParams>);
        inner
            .with_truncation(Some(TruncationParams {
                max_length,
                strategy,
                stride: 0,
                direction: TruncationDirection::Right,
            }))
            .map_err(|e| Error::Tokenizer(e.to_string()))?;
        Ok(Self { inner, max_length })
    }

    pub fn max_length(&self) -> usize {
        self.max_length
    }

    /// Token ids of each text, with the model's special tokens, truncated to `max_length`.
    pub fn encode_batch(&self, texts: &[&str]) -> Result<Vec<Vec<u32>>> {
        texts
            .iter()
            .map(|t| {
                self.inner
                    .encode(*t, true)
                    .map(|e| e.get_ids().to_vec())
                    .map_err(|e| Error::Tokenizer(e.to_string()))
            })
            .collect()
    }

    /// Ids and token type ids of `(first, second)` pairs.
    pub fn encode_pairs(&self, first: &str, seconds: &[&str]) -> Result<Vec<(Vec<u32>, Vec<u32>)>> {
        seconds
            .iter()
            .map(|s| {
                self.inner
                    .encode((first, *s), true)
                    .map(|e| (e.get_ids().to_vec(), e.get_type_ids().to_vec()))
                    .map_err(|e| Error::Tokenizer(e.to_string()))
            })
            .collect()
    }

    pub fn token_to_id(&self, token: &str) -> Option<u32> {
        self.inner.token_to_id(token)
    }

    /// Token ids of `text` exactly as written: no special tokens added (chat templates
    /// and raw prompts already contain theirs), no truncation beyond `max_length`.
    pub fn encode_raw(&self, text: &str) -> Result<Vec<u32>> {
        self.inner.encode(text, false).map(|e| e.get_ids().to_vec()).map_err(|e| Error::Tokenizer(e.to_string()))
    }

    /// Text of `ids`; special tokens dropped when `skip_special`.
    pub fn decode(&self, ids: &[u32], skip_special: bool) -> Result<String> {
        self.inner.decode(ids, skip_special).map_err(|e| Error::Tokenizer(e.to_string()))
    }

    pub fn id_to_token(&self, id: u32) -> Option<String> {
        self.inner.id_to_token(id)
    }
}

/// Incremental detokenisation for streaming: feed ids one at a time, get the new text
/// once it forms complete UTF-8 characters. A byte-level BPE token can end inside a
/// multi-byte character; such a piece decodes to U+FFFD and is held back until the
/// following tokens complete it (the `prefix_offset` / `read_offset` scheme of
/// text-generation-inference and transformers' `TextStreamer`).
#[derive(Debug, Default, Clone)]
pub struct DecodeStream {
    ids: Vec<u32>,
    prefix_offset: usize,
    read_offset: usize,
}

impl DecodeStream {
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds `id` and returns the text it completes (possibly empty).
    pub fn step(&mut self, tok: &Tokenizer, id: u32) -> Result<String> {
        self.ids.push(id);
        let prefix = tok.decode(&self.ids[self.prefix_offset..self.read_offset], true)?;
        let full = tok.decode(&self.ids[self.prefix_offset..], true)?;
        if full.len() > prefix.len() && !full.ends_with('\u{FFFD}') && full.starts_with(&prefix) {
            let piece = full[prefix.len()..].to_string();
            self.prefix_offset = self.read_offset;
            self.read_offset = self.ids.len();
            Ok(piece)
        } else {
            Ok(String::new())
        }
    }
}
