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
}
