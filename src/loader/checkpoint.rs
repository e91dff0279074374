//! Which safetensors files make a checkpoint, and checking them against a manifest.
//!
//! A model folder holds either `model.safetensors` or, for a checkpoint split into shards,
//! `model.safetensors.index.json` (the Hugging Face format: `{"metadata": {..},
//! "weight_map": {"tensor.name": "model-00001-of-00002.safetensors", ..}}`) and the shards it
//! names. [`Checkpoint::read`] reads whichever exists and serves model code the union of the
//! shards' tensors. The index is untrusted: it is capped at [`MAX_INDEX_BYTES`], shard names
//! are plain file names (no `/`, `\`, leading `.`: no traversal, no absolute paths), at most
//! [`MAX_SHARDS`] of them, every tensor of the map must be in its shard's header, every
//! header tensor in the map under that shard, and no tensor in two shards.
//!
//! An optional `gllm-manifest.json` beside the weights, `{"files": {"model.safetensors":
//! {"sha256": "<64 hex>", "size": N}, ..}}`, pins each weights file's length and SHA-256.
//! When present, every safetensors file of the checkpoint must be listed, and the streaming
//! loader checks each one while it streams ([`super::stream::stream_file`]);
//! a mismatch is `Error::Integrity` and evicts the file and the manifest from a browser
//! cache ([`Source::evict`]), so loading again fetches them anew.

use std::cell::RefCell;
use std::collections::{BTreeMap, HashMap};

use serde::de::{Deserializer, MapAccess, Visitor};
use serde::Deserialize;

use super::safetensors::{SafetensorsFile, TensorInfo};
use super::{sha256, Progress, Source};
use crate::error::{Error, Result};

/// The weights of an unsharded checkpoint.
pub const WEIGHTS: &str = "model.safetensors";
/// The index of a sharded checkpoint (read when [`WEIGHTS`] does not exist).
pub const WEIGHTS_INDEX: &str = "model.safetensors.index.json";
/// The optional manifest of weights-file sizes and SHA-256 digests.
pub const MANIFEST: &str = "gllm-manifest.json";
/// Largest index or manifest accepted.
pub const MAX_INDEX_BYTES: u64 = 16 << 20;
/// Most shards an index may name.
pub const MAX_SHARDS: usize = 1024;

fn bad_index(msg: impl Into<String>) -> Error {
    Error::Format { format: "safetensors index", file: WEIGHTS_INDEX.to_string(), msg: msg.into() }
}

fn bad_manifest(msg: impl Into<String>) -> Error {
    Error::Format { format: "gllm manifest", file: MANIFEST.to_string(), msg: msg.into() }
}

/// A JSON object read as its (key, value) pairs in order, so a key given twice is seen
/// (serde's maps keep only the last).
pub(crate) struct Entries<V>(pub(crate) Vec<(String, V)>);

impl<'de, V: Deserialize<'de>> Deserialize<'de> for Entries<V> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        struct Pairs<V>(std::marker::PhantomData<V>);
        impl<'de, V: Deserialize<'de>> Visitor<'de> for Pairs<V> {
            type Value = Entries<V>;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("a JSON object")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut m: A) -> std::result::Result<Entries<V>, A::Error> {
                let mut v = Vec::new();
                while let Some(kv) = m.next_entry::<String, V>()? {
                    v.push(kv);
                }
                Ok(Entries(v))
            }
        }
        d.deserialize_map(Pairs(std::marker::PhantomData))
    }
}

/// Reads a small JSON file whole, refusing one longer than `cap` (by its reported length and
/// by what arrives).
pub(crate) async fn read_capped<S: Source>(src: &S, file: &str, cap: u64, bad: impl Fn(String) -> Error) -> Result<Vec<u8>> {
    let n = src.len(file).await?;
    if n > cap {
        return Err(bad(format!("{n} bytes exceeds the {cap}-byte cap")));
    }
    let bytes = src.read(file).await?;
    if bytes.len() as u64 > cap {
        return Err(bad(format!("{} bytes exceeds the {cap}-byte cap", bytes.len())));
    }
    Ok(bytes)
}

/// Whether `name` is a plain file name: 1–255 of `A–Z a–z 0–9 . _ -`, not starting with `.`
/// (so no separators, no `..`, no absolute paths, nothing a URL would reinterpret).
pub(crate) fn plain_file_name(name: &str) -> bool {
    (1..=255).contains(&name.len())
        && !name.starts_with('.')
        && name.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
}

/// A safetensors checkpoint: one file, or the shards of an index.
#[derive(Debug, Clone)]
pub struct Checkpoint {
    /// [`WEIGHTS`], or [`WEIGHTS_INDEX`] for a sharded checkpoint.
    pub file: String,
    /// The safetensors files (one for an unsharded checkpoint), in the order the index first
    /// names them.
    pub shards: Vec<SafetensorsFile>,
    /// Tensor name → position in `shards` (sharded checkpoints only).
    owner: HashMap<String, usize>,
}

#[derive(Deserialize)]
struct RawIndex {
    weight_map: Entries<String>,
}

impl Checkpoint {
    /// An unsharded checkpoint.
    pub fn single(st: SafetensorsFile) -> Self {
        Self { file: st.file.clone(), shards: vec![st], owner: HashMap::new() }
    }

    /// Reads the header of [`WEIGHTS`], or, when it does not exist (`Error::NotFound`), the
    /// index [`WEIGHTS_INDEX`] and the header of every shard it names. Neither existing is the
    /// `NotFound` of [`WEIGHTS`].
    pub async fn read<S: Source>(src: &S) -> Result<Self> {
        let missing = match SafetensorsFile::read(src, WEIGHTS).await {
            Ok(st) => return Ok(Self::single(st)),
            Err(e @ Error::NotFound { .. }) => e,
            Err(e) => return Err(e),
        };
        let bytes = match read_capped(src, WEIGHTS_INDEX, MAX_INDEX_BYTES, |m| bad_index(m)).await {
            Err(Error::NotFound { .. }) => return Err(missing),
            r => r?,
        };
        let index: RawIndex = serde_json::from_slice(&bytes).map_err(|e| bad_index(format!("not a valid index: {e}")))?;
        let map = index.weight_map.0;
        if map.is_empty() {
            return Err(bad_index("weight_map lists no tensors"));
        }
        // Shard names in order of first mention; the tensors the map puts in each.
        let mut names: Vec<String> = Vec::new();
        let mut position: HashMap<&str, usize> = HashMap::new();
        let mut listed: HashMap<&str, usize> = HashMap::new();
        for (tensor, shard) in &map {
            let k = match position.get(shard.as_str()) {
                Some(&k) => k,
                None => {
                    if !plain_file_name(shard) {
                        return Err(bad_index(format!("shard name {shard:?} is not a plain file name")));
                    }
                    if names.len() == MAX_SHARDS {
                        return Err(bad_index(format!("more than {MAX_SHARDS} shards")));
                    }
                    names.push(shard.clone());
                    position.insert(shard, names.len() - 1);
                    names.len() - 1
                }
            };
            if let Some(prev) = listed.insert(tensor, k) {
                return Err(bad_index(format!("tensor {tensor} is listed twice (in {} and {shard})", names[prev])));
            }
        }
        let mut shards = Vec::with_capacity(names.len());
        let mut owner: HashMap<String, usize> = HashMap::new();
        for (k, name) in names.iter().enumerate() {
            let st = SafetensorsFile::read(src, name).await?;
            for tensor in st.tensors.keys() {
                if let Some(prev) = owner.insert(tensor.clone(), k) {
                    return Err(bad_index(format!("tensor {tensor} is in two shards, {} and {name}", names[prev])));
                }
                match listed.get(tensor.as_str()) {
                    Some(&j) if j == k => {}
                    Some(&j) => {
                        return Err(bad_index(format!("tensor {tensor} is in {name} but the index puts it in {}", names[j])))
                    }
                    None => return Err(bad_index(format!("tensor {tensor} of {name} is not in the index"))),
                }
            }
            shards.push(st);
        }
        for (tensor, shard) in &map {
            if !owner.contains_key(tensor) {
                return Err(bad_index(format!("tensor {tensor} is not in its shard {shard}")));
            }
        }
        Ok(Self { file: WEIGHTS_INDEX.to_string(), shards, owner })
    }

    /// Whether the checkpoint came from an index.
    pub fn is_sharded(&self) -> bool {
        self.file == WEIGHTS_INDEX
    }

    /// The file holding `name` and the tensor's entry; `Error::MissingTensor` if absent.
    pub fn get(&self, name: &str) -> Result<(&SafetensorsFile, &TensorInfo)> {
        let st = if self.is_sharded() { self.owner.get(name).map(|&k| &self.shards[k]) } else { self.shards.first() };
        let st = st.ok_or_else(|| Error::MissingTensor { name: name.to_string() })?;
        Ok((st, st.get(name)?))
    }

    pub fn contains(&self, name: &str) -> bool {
        self.get(name).is_ok()
    }

    /// Bytes of every tensor of every file.
    pub fn tensor_bytes(&self) -> u64 {
        self.shards.iter().flat_map(|s| s.tensors.values()).map(|t| t.end - t.start).sum()
    }
}

/// One file's entry in the manifest.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileDigest {
    pub sha256: [u8; 32],
    pub size: u64,
}

/// `gllm-manifest.json`: weights-file name → length and SHA-256.
#[derive(Debug, Clone, Default)]
pub struct Manifest {
    pub files: BTreeMap<String, FileDigest>,
}

#[derive(Deserialize)]
struct RawManifest {
    files: Entries<RawDigest>,
}

#[derive(Deserialize)]
struct RawDigest {
    sha256: String,
    size: u64,
}

impl Manifest {
    /// Parses and validates a manifest: `files` an object of file name → `{"sha256": 64 hex
    /// digits, "size": bytes}`, no name twice.
    pub fn parse(bytes: &[u8]) -> Result<Self> {
        let raw: RawManifest = serde_json::from_slice(bytes).map_err(|e| bad_manifest(format!("not a valid manifest: {e}")))?;
        let mut files = BTreeMap::new();
        for (name, d) in raw.files.0 {
            let sha256 = sha256::from_hex(&d.sha256)
                .ok_or_else(|| bad_manifest(format!("{name}: sha256 must be 64 hex digits, got {:?}", d.sha256)))?;
            if files.insert(name.clone(), FileDigest { sha256, size: d.size }).is_some() {
                return Err(bad_manifest(format!("{name} is listed twice")));
            }
        }
        Ok(Self { files })
    }

    /// Reads [`MANIFEST`] from `src`; `Ok(None)` when it does not exist.
    pub async fn read_optional<S: Source>(src: &S) -> Result<Option<Self>> {
        match read_capped(src, MANIFEST, MAX_INDEX_BYTES, |m| bad_manifest(m)).await {
            Ok(bytes) => Self::parse(&bytes).map(Some),
            Err(Error::NotFound { .. }) => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// The entry of `file`; a weights file the manifest does not list is an error (a
    /// manifest vouches for every file it loads, or none).
    pub fn digest(&self, file: &str) -> Result<&FileDigest> {
        self.files.get(file).ok_or_else(|| bad_manifest(format!("does not list {file}")))
    }
}

/// Adds `Progress::Total` events over the files of a sharded checkpoint and keeps per-file
/// events per file (each file's `loaded` counts that file's bytes). An unsharded
/// checkpoint's events pass through.
pub struct ShardProgress<'a> {
    progress: &'a dyn Fn(Progress),
    index: String,
    sharded: bool,
    /// Each file's name and bytes to load.
    files: Vec<(String, u64)>,
    loaded: RefCell<Vec<u64>>,
}

impl<'a> ShardProgress<'a> {
    /// `files`: each file's name and bytes to load; `index`: the name of the whole.
    pub fn new(index: &str, sharded: bool, files: Vec<(String, u64)>, progress: &'a dyn Fn(Progress)) -> Self {
        let loaded = RefCell::new(vec![0; files.len()]);
        Self { progress, index: index.to_string(), sharded, files, loaded }
    }

    fn total(&self) {
        let loaded = self.loaded.borrow().iter().sum();
        let total = self.files.iter().map(|(_, n)| n).sum();
        (self.progress)(Progress::Total { file: self.index.clone(), loaded, total });
    }

    /// An event of a streamed file.
    pub fn streamed(&self, p: Progress) {
        let progress_of = match &p {
            Progress::Progress { file, loaded, .. } if self.sharded => match self.files.iter().position(|(f, _)| f == file) {
                Some(k) => {
                    self.loaded.borrow_mut()[k] = *loaded;
                    true
                }
                None => false,
            },
            _ => false,
        };
        (self.progress)(p);
        if progress_of {
            self.total();
        }
    }
}

/// On an integrity failure, also evicts the manifest (it may be the wrong side), so a retry
/// reads it anew; the file itself was evicted where the mismatch was found.
pub(super) async fn evict_manifest<S: Source, T>(src: &S, r: Result<T>) -> Result<T> {
    if let Err(Error::Integrity { .. }) = &r {
        // The integrity error is the one to report; a cache that cannot delete is no worse
        // off than before.
        let _ = src.evict(MANIFEST).await;
    }
    r
}
