//! Tokenizers from HF `tokenizer.json` (the `tokenizers` crate, built with its wasm-safe
//! `fancy-regex` backend), with our own padding and truncation policy.

pub mod chat;
pub mod gguf;

use tokenizers::{PaddingParams, TruncationDirection, TruncationParams, TruncationStrategy};

use crate::error::{Error, Result};

pub struct Tokenizer {
    inner: tokenizers::Tokenizer,
    max_length: usize,
    /// Built for `(first, second)` pairs ([`Tokenizer::for_pairs`]).
    pairs: bool,
    /// Ids at or above this have no embedding row ([`Tokenizer::check_ids`]): encoding a
    /// text that produces one is an input error.
    id_limit: u32,
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
        // The tokenizers crate panics (`expect("Helper")`) on malformed JSON inside the
        // `decoder` object, and on a BPE merge shorter than `continuing_subword_prefix`:
        // check both first.
        check_json(bytes)?;
        let inner = tokenizers::Tokenizer::from_bytes(bytes).map_err(|e| Error::Tokenizer(format!("tokenizer.json: {e}")))?;
        Self::wrap(inner, max_length, strategy)
    }

    /// A tokenizer built in code (a GGUF file's, [`gguf::GgufTokenizer::into_tokenizer`]), with
    /// the same policy as [`Self::from_bytes`].
    pub fn from_tokenizer(inner: tokenizers::Tokenizer, max_length: usize) -> Result<Self> {
        Self::wrap(inner, max_length, TruncationStrategy::LongestFirst)
    }

    fn wrap(mut inner: tokenizers::Tokenizer, max_length: usize, strategy: TruncationStrategy) -> Result<Self> {
        // ...and it indexes `special_tokens` by every special piece of a template when encoding
        // (a panic on a missing one): check they are all there.
        if let Some(pp) = post_processor_json(&inner)? {
            if let Some(name) = missing_special_token(&pp) {
                return Err(Error::Tokenizer(format!("tokenizer.json: the post-processor template uses {name}")));
            }
        }
        inner.with_padding(None::<PaddingParams>);
        inner
            .with_truncation(Some(TruncationParams {
                max_length,
                strategy,
                stride: 0,
                direction: TruncationDirection::Right,
            }))
            .map_err(|e| Error::Tokenizer(e.to_string()))?;
        Ok(Self { inner, max_length, pairs: strategy == TruncationStrategy::OnlySecond, id_limit: u32::MAX })
    }

    /// Checks that every id this tokenizer can emit indexes the model's tables: the
    /// vocabulary's and added tokens' ids and the post-processor's special ids below
    /// `vocab_rows` (the embedding's rows), and, with `type_vocab_size` (BERT), the token
    /// type ids of its single (and, for a pair tokenizer, pair) template below it. An id
    /// outside would read zeros on the GPU: silently wrong output, hence an error at load.
    /// The one exception is a *special* added token past the table (Gemma 3's
    /// `<image_soft_token>`, a placeholder of the multimodal model that the text model has no
    /// row for): a text that produces it is rejected when encoded, as transformers' index
    /// error would.
    pub fn check_ids(&mut self, vocab_rows: usize, type_vocab_size: Option<usize>) -> Result<()> {
        let bad = |msg: String| Err(Error::Tokenizer(format!("tokenizer.json: {msg}")));
        let special_past: Vec<u32> = self
            .inner
            .get_added_tokens_decoder()
            .into_iter()
            .filter(|(id, t)| *id as usize >= vocab_rows && t.special)
            .map(|(id, _)| id)
            .collect();
        let past = self.inner.get_vocab(true).into_iter().filter(|&(_, id)| id as usize >= vocab_rows && !special_past.contains(&id));
        if let Some((tok, id)) = past.max_by_key(|&(_, id)| id) {
            return bad(format!("token {tok:?} has id {id}, outside the model's {vocab_rows} embedding rows"));
        }
        self.id_limit = u32::try_from(vocab_rows).unwrap_or(u32::MAX);
        let Some(pp) = post_processor_json(&self.inner)? else { return Ok(()) };
        let mut ids = Vec::new();
        let mut types = PostTypes::default();
        post_processor_ids(&pp, &mut ids, &mut types);
        if let Some(&id) = ids.iter().find(|&&id| id >= vocab_rows as u64) {
            return bad(format!("the post-processor adds token id {id}, outside the model's {vocab_rows} embedding rows"));
        }
        if let Some(n) = type_vocab_size {
            let single = types.single.unwrap_or(0);
            let pair = types.pair.unwrap_or(if types.roberta { 0 } else { 1 });
            let max = if self.pairs { single.max(pair) } else { single };
            if max >= n as u64 {
                return bad(format!("token type id {max} is outside the model's type_vocab_size {n}"));
            }
        }
        Ok(())
    }

    pub fn max_length(&self) -> usize {
        self.max_length
    }

    /// Sets the truncation length (tokens, special tokens included) of later encodings: a
    /// caller that adds tokens of its own around the encoded text (a decoder embedder's EOS,
    /// a reranker's prompt) leaves room for them.
    pub fn set_max_length(&mut self, max_length: usize) -> Result<()> {
        let strategy = if self.pairs { TruncationStrategy::OnlySecond } else { TruncationStrategy::LongestFirst };
        self.inner
            .with_truncation(Some(TruncationParams { max_length, strategy, stride: 0, direction: TruncationDirection::Right }))
            .map_err(|e| Error::Tokenizer(e.to_string()))?;
        self.max_length = max_length;
        Ok(())
    }

    /// `ids`, unless one has no embedding row ([`Tokenizer::check_ids`]).
    fn checked(&self, ids: &[u32]) -> Result<Vec<u32>> {
        match ids.iter().find(|&&id| id >= self.id_limit) {
            Some(&id) => Err(Error::Input(format!(
                "the text contains the token {:?} (id {id}), which the model has no embedding for",
                self.inner.id_to_token(id).unwrap_or_default()
            ))),
            None => Ok(ids.to_vec()),
        }
    }

    /// Token ids of each text, with the model's special tokens, truncated to `max_length`.
    pub fn encode_batch(&self, texts: &[&str]) -> Result<Vec<Vec<u32>>> {
        texts
            .iter()
            .map(|t| {
                let e = self.inner.encode(*t, true).map_err(|e| Error::Tokenizer(e.to_string()))?;
                self.checked(e.get_ids())
            })
            .collect()
    }

    /// Ids and token type ids of `(first, second)` pairs.
    pub fn encode_pairs(&self, first: &str, seconds: &[&str]) -> Result<Vec<(Vec<u32>, Vec<u32>)>> {
        seconds
            .iter()
            .map(|s| {
                let e = self.inner.encode((first, *s), true).map_err(|e| Error::Tokenizer(e.to_string()))?;
                Ok((self.checked(e.get_ids())?, e.get_type_ids().to_vec()))
            })
            .collect()
    }

    pub fn token_to_id(&self, token: &str) -> Option<u32> {
        self.inner.token_to_id(token)
    }

    /// Token ids of `text` exactly as written: no special tokens added (chat templates
    /// and raw prompts already contain theirs), no truncation beyond `max_length`.
    pub fn encode_raw(&self, text: &str) -> Result<Vec<u32>> {
        let e = self.inner.encode(text, false).map_err(|e| Error::Tokenizer(e.to_string()))?;
        self.checked(e.get_ids())
    }

    /// Text of `ids`; special tokens dropped when `skip_special`.
    pub fn decode(&self, ids: &[u32], skip_special: bool) -> Result<String> {
        self.inner.decode(ids, skip_special).map_err(|e| Error::Tokenizer(e.to_string()))
    }

    pub fn id_to_token(&self, id: u32) -> Option<String> {
        self.inner.id_to_token(id)
    }
}

/// Any JSON value, fully parsed (every string unescaped, every number in range) but not
/// kept: a syntax check of `tokenizer.json` that builds no document.
struct Valid;

impl<'de> serde::Deserialize<'de> for Valid {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        use serde::de::{MapAccess, SeqAccess, Visitor};
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Valid;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("any JSON value")
            }
            fn visit_bool<E>(self, _: bool) -> std::result::Result<Valid, E> {
                Ok(Valid)
            }
            fn visit_i64<E>(self, _: i64) -> std::result::Result<Valid, E> {
                Ok(Valid)
            }
            fn visit_u64<E>(self, _: u64) -> std::result::Result<Valid, E> {
                Ok(Valid)
            }
            fn visit_f64<E>(self, _: f64) -> std::result::Result<Valid, E> {
                Ok(Valid)
            }
            fn visit_str<E>(self, _: &str) -> std::result::Result<Valid, E> {
                Ok(Valid)
            }
            fn visit_unit<E>(self) -> std::result::Result<Valid, E> {
                Ok(Valid)
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut a: A) -> std::result::Result<Valid, A::Error> {
                while a.next_element::<Valid>()?.is_some() {}
                Ok(Valid)
            }
            fn visit_map<A: MapAccess<'de>>(self, mut a: A) -> std::result::Result<Valid, A::Error> {
                while a.next_entry::<Valid, Valid>()?.is_some() {}
                Ok(Valid)
            }
        }
        d.deserialize_any(V)
    }
}

/// Checks what the tokenizers crate would panic on: malformed JSON anywhere, and a BPE
/// model whose `continuing_subword_prefix` is longer than a merge's second token.
fn check_json(bytes: &[u8]) -> Result<()> {
    let bad = |msg: String| Error::Tokenizer(format!("tokenizer.json: {msg}"));
    serde_json::from_slice::<Valid>(bytes).map_err(|e| bad(e.to_string()))?;
    #[derive(serde::Deserialize)]
    struct Doc<M> {
        model: Option<M>,
    }
    #[derive(serde::Deserialize)]
    struct Prefix {
        continuing_subword_prefix: Option<String>,
    }
    #[derive(serde::Deserialize)]
    #[serde(untagged)]
    enum Merge {
        Text(String),
        Pair(serde::de::IgnoredAny, String),
    }
    #[derive(serde::Deserialize)]
    struct Merges {
        merges: Option<Vec<Merge>>,
    }
    let prefix = serde_json::from_slice::<Doc<Prefix>>(bytes).ok().and_then(|d| d.model?.continuing_subword_prefix);
    let Some(prefix) = prefix.filter(|p| !p.is_empty()) else { return Ok(()) };
    let merges = serde_json::from_slice::<Doc<Merges>>(bytes).ok().and_then(|d| d.model?.merges).unwrap_or_default();
    for m in &merges {
        let second = match m {
            Merge::Text(t) => t.split_once(' ').map_or("", |(_, b)| b),
            Merge::Pair(_, b) => b,
        };
        if second.len() < prefix.len() || !second.is_char_boundary(prefix.len()) {
            return Err(bad(format!("merge token {second:?} is shorter than the continuing_subword_prefix {prefix:?}")));
        }
    }
    Ok(())
}

/// The post-processor as its JSON form (`None` without one).
fn post_processor_json(t: &tokenizers::Tokenizer) -> Result<Option<serde_json::Value>> {
    t.get_post_processor()
        .map(|pp| serde_json::to_value(pp).map_err(|e| Error::Tokenizer(format!("post-processor: {e}"))))
        .transpose()
}

/// A special token a `TemplateProcessing` (also inside a `Sequence`) names in its `single`
/// or `pair` template but does not define in its `special_tokens`.
fn missing_special_token(v: &serde_json::Value) -> Option<String> {
    use serde_json::Value;
    if let Some(Value::Array(procs)) = v.get("processors") {
        return procs.iter().find_map(missing_special_token);
    }
    let defined = v.get("special_tokens").and_then(Value::as_object);
    let missing = ["single", "pair"]
        .iter()
        .filter_map(|k| v.get(*k).and_then(Value::as_array))
        .flatten()
        .filter_map(|p| p.get("SpecialToken").and_then(|t| t.get("id")).and_then(Value::as_str))
        .find(|name| !defined.is_some_and(|d| d.contains_key(*name)))
        .map(|name| format!("{name:?}, absent from its special_tokens"));
    // ...and it indexes the encodings by sequence: a single template naming sequence B (found
    // by the fuzzer) reads past the one text it has
    let b_in_single = v
        .get("single")
        .and_then(Value::as_array)
        .is_some_and(|t| t.iter().any(|p| p.get("Sequence").and_then(|s| s.get("id")).and_then(Value::as_str) == Some("B")));
    missing.or_else(|| b_in_single.then(|| "sequence B in its single template".to_string()))
}

/// Largest token type ids a post-processor writes.
#[derive(Default)]
struct PostTypes {
    single: Option<u64>,
    pair: Option<u64>,
    /// A `RobertaProcessing` (type id 0 everywhere).
    roberta: bool,
}

/// Collects the ids a serialised post-processor adds (`TemplateProcessing`'s
/// `special_tokens.*.ids`, `BertProcessing` / `RobertaProcessing`'s `cls` and `sep`, inside
/// a `Sequence` too) and the type ids of its templates. Without a template, a pair's second
/// text gets type id 1 (the tokenizers crate's default and `BertProcessing`'s).
fn post_processor_ids(v: &serde_json::Value, ids: &mut Vec<u64>, types: &mut PostTypes) {
    use serde_json::Value;
    let Value::Object(o) = v else {
        if let Value::Array(a) = v {
            a.iter().for_each(|x| post_processor_ids(x, ids, types));
        }
        return;
    };
    if o.get("type").and_then(Value::as_str) == Some("RobertaProcessing") {
        types.roberta = true;
    }
    for key in ["cls", "sep"] {
        if let Some(id) = o.get(key).and_then(|p| p.get(1)).and_then(Value::as_u64) {
            ids.push(id);
        }
    }
    if let Some(Value::Object(special)) = o.get("special_tokens") {
        for t in special.values() {
            ids.extend(t.get("ids").and_then(Value::as_array).into_iter().flatten().filter_map(Value::as_u64));
        }
    }
    for (key, slot) in [("single", &mut types.single), ("pair", &mut types.pair)] {
        if let Some(Value::Array(pieces)) = o.get(key) {
            for p in pieces.iter().filter_map(Value::as_object).flat_map(|p| p.values()) {
                if let Some(t) = p.get("type_id").and_then(Value::as_u64) {
                    *slot = Some(slot.unwrap_or(0).max(t));
                }
            }
        }
    }
    if let Some(Value::Array(procs)) = o.get("processors") {
        procs.iter().for_each(|x| post_processor_ids(x, ids, types));
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
