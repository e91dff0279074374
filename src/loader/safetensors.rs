//! Our own validated safetensors header parser
//! (format: <https://github.com/huggingface/safetensors#format>).
//!
//! Layout: 8 bytes little-endian header length `n`, `n` bytes of JSON
//! `{name: {dtype, shape, data_offsets: [begin, end]}, "__metadata__": {..}}`, then the data
//! region; offsets are relative to its start. The file is untrusted: the header length is
//! capped, every tensor's byte length must equal dtype size × element count (checked
//! arithmetic), every range must lie inside the file and ranges must not overlap, and a
//! name may appear only once (a JSON object parsed into a map would keep the last).

use std::collections::BTreeMap;

use super::checkpoint::Entries;
use super::sha256::Sha256;
use super::Source;
use crate::error::{Error, Result};

/// Largest header accepted (the format's reference implementation uses 100 MB).
pub const MAX_HEADER_BYTES: u64 = 100 << 20;
/// Largest rank accepted.
const MAX_RANK: usize = 8;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StDType {
    F64,
    F32,
    F16,
    BF16,
    I64,
    I32,
    I16,
    I8,
    U8,
    Bool,
}

impl StDType {
    fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "F64" => Self::F64,
            "F32" => Self::F32,
            "F16" => Self::F16,
            "BF16" => Self::BF16,
            "I64" => Self::I64,
            "I32" => Self::I32,
            "I16" => Self::I16,
            "I8" => Self::I8,
            "U8" => Self::U8,
            "BOOL" => Self::Bool,
            _ => return None,
        })
    }
    pub fn size(self) -> u64 {
        match self {
            Self::F64 | Self::I64 => 8,
            Self::F32 | Self::I32 => 4,
            Self::F16 | Self::BF16 | Self::I16 => 2,
            Self::I8 | Self::U8 | Self::Bool => 1,
        }
    }
}

/// One tensor of the file. `start`/`end` are absolute byte offsets in the file.
#[derive(Debug, Clone, PartialEq)]
pub struct TensorInfo {
    pub dtype: StDType,
    pub shape: Vec<usize>,
    pub start: u64,
    pub end: u64,
}

/// A validated safetensors header.
#[derive(Debug, Clone)]
pub struct SafetensorsFile {
    pub file: String,
    pub tensors: BTreeMap<String, TensorInfo>,
    /// Offset of the data region: 8 + the header's length.
    pub data_start: u64,
    /// Length of the whole file.
    pub file_len: u64,
    /// SHA-256 state after the file's first `data_start` bytes (the length and the header
    /// as parsed), so a manifest check continues with the data region and never reads the
    /// header twice.
    pub header_sha256: Sha256,
    /// The block format of a pre-quantized checkpoint (`gllm quantize`): `__metadata__`
    /// `"gllm.quant"`; see [`super::prequant`].
    pub quant: Option<crate::quant::QuantFormat>,
}

fn bad(file: &str, msg: impl Into<String>) -> Error {
    Error::Format { format: "safetensors", file: file.to_string(), msg: msg.into() }
}

impl SafetensorsFile {
    /// Reads and validates the header of `file` from `src` (two range reads).
    pub async fn read<S: Source>(src: &S, file: &str) -> Result<Self> {
        let file_len = src.len(file).await?;
        if file_len < 8 {
            return Err(bad(file, format!("{file_len} bytes is shorter than the 8-byte header length")));
        }
        let len_bytes: [u8; 8] =
            src.read_range(file, 0, 8).await?.try_into().map_err(|_| bad(file, "the 8-byte header length read short"))?;
        let n = u64::from_le_bytes(len_bytes);
        if n > MAX_HEADER_BYTES {
            return Err(bad(file, format!("header length {n} exceeds the {MAX_HEADER_BYTES}-byte cap")));
        }
        if 8 + n > file_len {
            return Err(bad(file, format!("header length {n} runs past the end of the {file_len}-byte file")));
        }
        let header = src.read_range(file, 8, n).await?;
        Self::parse(file, &header, file_len)
    }

    /// Validates a header given its JSON bytes and the total file length.
    pub fn parse(file: &str, header: &[u8], file_len: u64) -> Result<Self> {
        let data_start = 8 + header.len() as u64;
        let obj = serde_json::from_slice::<Entries<serde_json::Value>>(header)
            .map_err(|e| bad(file, format!("header is not a JSON object: {e}")))?
            .0;
        let data_len = file_len
            .checked_sub(data_start)
            .ok_or_else(|| bad(file, format!("{data_start} header bytes run past the end of the {file_len}-byte file")))?;
        let mut tensors = BTreeMap::new();
        let mut quant = None;
        let mut seen_metadata = false;
        for (name, v) in &obj {
            if name == "__metadata__" {
                if std::mem::replace(&mut seen_metadata, true) {
                    return Err(bad(file, "__metadata__ appears twice"));
                }
                quant = super::prequant::format_from_metadata(file, v)?;
                continue;
            }
            if tensors.contains_key(name) {
                return Err(bad(file, format!("tensor {name} appears twice in the header")));
            }
            let t = |msg: &str| bad(file, format!("tensor {name}: {msg}"));
            let dtype_s = v.get("dtype").and_then(|d| d.as_str()).ok_or_else(|| t("missing dtype"))?;
            let dtype = StDType::parse(dtype_s).ok_or_else(|| t(&format!("unknown dtype {dtype_s}")))?;
            let shape: Vec<usize> = v
                .get("shape")
                .and_then(|s| s.as_array())
                .ok_or_else(|| t("missing shape"))?
                .iter()
                .map(|d| d.as_u64().and_then(|d| usize::try_from(d).ok()))
                .collect::<Option<_>>()
                .ok_or_else(|| t("shape entries must be non-negative integers"))?;
            if shape.len() > MAX_RANK {
                return Err(t(&format!("rank {} exceeds {MAX_RANK}", shape.len())));
            }
            let offs = v.get("data_offsets").and_then(|o| o.as_array()).ok_or_else(|| t("missing data_offsets"))?;
            let (begin, end) = match offs.as_slice() {
                [a, b] => (a.as_u64().ok_or_else(|| t("bad offset"))?, b.as_u64().ok_or_else(|| t("bad offset"))?),
                _ => return Err(t("data_offsets must be [begin, end]")),
            };
            if begin > end || end > data_len {
                return Err(t(&format!("data_offsets [{begin}, {end}] outside the {data_len}-byte data region")));
            }
            let bytes = shape
                .iter()
                .try_fold(dtype.size(), |acc, &d| acc.checked_mul(d as u64))
                .ok_or_else(|| t("shape overflows"))?;
            if bytes != end - begin {
                return Err(t(&format!("{dtype_s} {shape:?} needs {bytes} bytes but data_offsets span {}", end - begin)));
            }
            tensors.insert(name.clone(), TensorInfo { dtype, shape, start: data_start + begin, end: data_start + end });
        }
        let mut ranges: Vec<(&String, &TensorInfo)> = tensors.iter().filter(|(_, t)| t.end > t.start).collect();
        ranges.sort_by_key(|(_, t)| t.start);
        for w in ranges.windows(2) {
            if w[1].1.start < w[0].1.end {
                return Err(bad(file, format!("tensors {} and {} overlap", w[0].0, w[1].0)));
            }
        }
        let mut header_sha256 = Sha256::new();
        header_sha256.update(&(header.len() as u64).to_le_bytes());
        header_sha256.update(header);
        Ok(Self { file: file.to_string(), tensors, data_start, file_len, header_sha256, quant })
    }

    pub fn get(&self, name: &str) -> Result<&TensorInfo> {
        self.tensors.get(name).ok_or_else(|| Error::MissingTensor { name: name.to_string() })
    }
}

/// Builds a safetensors file in memory (tests, and the converter of a later issue).
pub fn serialize(tensors: &[(&str, StDType, &[usize], &[u8])]) -> Vec<u8> {
    let mut out = header_bytes(tensors.iter().map(|(n, d, s, b)| (*n, *d, *s, b.len())), None);
    for (_, _, _, bytes) in tensors {
        out.extend_from_slice(bytes);
    }
    out
}

/// The 8-byte length and the JSON header of a safetensors file whose tensors are
/// `(name, dtype, shape, byte length)` in data order, with optional `__metadata__`; the data
/// follows it (writers stream it tensor by tensor).
pub fn header_bytes<'a>(
    tensors: impl Iterator<Item = (&'a str, StDType, &'a [usize], usize)>,
    metadata: Option<&BTreeMap<String, String>>,
) -> Vec<u8> {
    let mut header = serde_json::Map::new();
    if let Some(m) = metadata {
        header.insert("__metadata__".into(), serde_json::json!(m));
    }
    let mut offset = 0usize;
    for (name, dtype, shape, len) in tensors {
        let dtype = format!("{dtype:?}").to_uppercase();
        header.insert(name.to_string(), serde_json::json!({ "dtype": dtype, "shape": shape, "data_offsets": [offset, offset + len] }));
        offset += len;
    }
    // serde_json serialises a map of strings and numbers without failing.
    let mut json = serde_json::to_vec(&header).unwrap_or_default();
    json.resize(json.len().next_multiple_of(8), b' ');
    let mut out = (json.len() as u64).to_le_bytes().to_vec();
    out.extend(json);
    out
}

/// Converts raw little-endian tensor bytes to f32 (F32, F16, BF16).
pub fn to_f32(name: &str, dtype: StDType, bytes: &[u8]) -> Result<Vec<f32>> {
    Ok(match dtype {
        StDType::F32 => bytes.chunks_exact(4).map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]])).collect(),
        StDType::F16 => bytes.chunks_exact(2).map(|c| half::f16::from_le_bytes([c[0], c[1]]).to_f32()).collect(),
        StDType::BF16 => bytes.chunks_exact(2).map(|c| half::bf16::from_le_bytes([c[0], c[1]]).to_f32()).collect(),
        other => {
            return Err(Error::TensorMismatch {
                name: name.to_string(),
                expected: "F32, F16 or BF16".into(),
                got: format!("{other:?}"),
            })
        }
    })
}
