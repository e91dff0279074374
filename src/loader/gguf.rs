//! Our own validated GGUF reader (format: llama.cpp `docs/gguf.md`, versions 2 and 3).
//!
//! Layout (little-endian): magic `GGUF`, version `u32`, tensor count `u64`, metadata
//! key/value count `u64`, the key/values, the tensor infos (name, rank, dims innermost
//! first, ggml type, offset relative to the data region), padding to `general.alignment`
//! (default 32), then the data region.
//!
//! The file is untrusted. Every count and length is checked against the bytes that are
//! left before anything is allocated, strings and arrays have caps, nesting is bounded,
//! every tensor's byte size is computed from its type and shape with checked arithmetic,
//! offsets must be aligned, inside the file and non-overlapping. Errors are
//! [`Error::Format`] with `format: "gguf"`; nothing here panics on any input (the fuzz
//! example `examples/fuzz_gguf.rs` checks that).

use super::Source;
use crate::error::{Error, Result};

/// Largest header (metadata + tensor infos) accepted. Real files: 3–10 MB (the vocabulary).
pub const MAX_HEADER_BYTES: u64 = 256 << 20;
/// Longest string accepted (keys, values, token strings, chat templates).
pub const MAX_STRING_BYTES: u64 = 16 << 20;
/// Most elements in one metadata array (vocabularies are ~260k).
pub const MAX_ARRAY_LEN: u64 = 16 << 20;
/// Most metadata key/values and tensors.
pub const MAX_KV: u64 = 1 << 16;
pub const MAX_TENSORS: u64 = 1 << 16;
/// Arrays of arrays: at most this deep.
const MAX_DEPTH: usize = 4;
/// Most arrays nested inside arrays in one file (each costs a fixed ~56 bytes of memory for
/// 12 bytes read; real files have none).
pub const MAX_NESTED_ARRAYS: u64 = 1 << 16;
/// Longest metadata key (the GGUF spec: at most 2^16 - 1 bytes).
pub const MAX_KEY_BYTES: u64 = (1 << 16) - 1;
/// ggml tensors have at most 4 dimensions.
const MAX_DIMS: u32 = 4;
/// First read when the header length is still unknown.
const FIRST_READ: u64 = 1 << 20;

/// ggml tensor types (`enum ggml_type`) with their block geometry.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[allow(non_camel_case_types)]
pub enum GgmlType {
    F32,
    F16,
    Q4_0,
    Q4_1,
    Q5_0,
    Q5_1,
    Q8_0,
    Q8_1,
    Q2_K,
    Q3_K,
    Q4_K,
    Q5_K,
    Q6_K,
    Q8_K,
    IQ2_XXS,
    IQ2_XS,
    IQ3_XXS,
    IQ1_S,
    IQ4_NL,
    IQ3_S,
    IQ2_S,
    IQ4_XS,
    I8,
    I16,
    I32,
    I64,
    F64,
    IQ1_M,
    BF16,
    TQ1_0,
    TQ2_0,
}

impl GgmlType {
    /// From the on-disk id; `None` for ids this reader does not know (removed types 4, 5,
    /// 31–33 and anything newer).
    pub fn from_id(id: u32) -> Option<Self> {
        use GgmlType::*;
        Some(match id {
            0 => F32,
            1 => F16,
            2 => Q4_0,
            3 => Q4_1,
            6 => Q5_0,
            7 => Q5_1,
            8 => Q8_0,
            9 => Q8_1,
            10 => Q2_K,
            11 => Q3_K,
            12 => Q4_K,
            13 => Q5_K,
            14 => Q6_K,
            15 => Q8_K,
            16 => IQ2_XXS,
            17 => IQ2_XS,
            18 => IQ3_XXS,
            19 => IQ1_S,
            20 => IQ4_NL,
            21 => IQ3_S,
            22 => IQ2_S,
            23 => IQ4_XS,
            24 => I8,
            25 => I16,
            26 => I32,
            27 => I64,
            28 => F64,
            29 => IQ1_M,
            30 => BF16,
            34 => TQ1_0,
            35 => TQ2_0,
            _ => return None,
        })
    }

    /// `(elements per block, bytes per block)` as in ggml's type traits.
    pub fn block(self) -> (u64, u64) {
        use GgmlType::*;
        match self {
            F32 | I32 => (1, 4),
            F16 | BF16 | I16 => (1, 2),
            I8 => (1, 1),
            I64 | F64 => (1, 8),
            Q4_0 => (32, 18),
            Q4_1 => (32, 20),
            Q5_0 => (32, 22),
            Q5_1 => (32, 24),
            Q8_0 => (32, 34),
            Q8_1 => (32, 36),
            Q2_K => (256, 84),
            Q3_K => (256, 110),
            Q4_K => (256, 144),
            Q5_K => (256, 176),
            Q6_K => (256, 210),
            Q8_K => (256, 292),
            IQ2_XXS => (256, 66),
            IQ2_XS => (256, 74),
            IQ3_XXS => (256, 98),
            IQ1_S => (256, 50),
            IQ4_NL => (32, 18),
            IQ3_S => (256, 110),
            IQ2_S => (256, 82),
            IQ4_XS => (256, 136),
            IQ1_M => (256, 56),
            TQ1_0 => (256, 54),
            TQ2_0 => (256, 66),
        }
    }

    /// Name as ggml prints it (`Q4_K`, `F16`).
    pub fn name(self) -> String {
        format!("{self:?}")
    }

    /// Bytes of a tensor with `dims` (innermost first); `None` when the innermost dimension
    /// is not a whole number of blocks or the size overflows.
    pub fn byte_size(self, dims: &[u64]) -> Option<u64> {
        let (be, bb) = self.block();
        let ne0 = *dims.first().unwrap_or(&1);
        if ne0 % be != 0 {
            return None;
        }
        dims.iter()
            .skip(1)
            .try_fold((ne0 / be).checked_mul(bb)?, |acc, &d| acc.checked_mul(d))
    }
}

/// A metadata value.
#[derive(Debug, Clone, PartialEq)]
pub enum GgufValue {
    U8(u8),
    I8(i8),
    U16(u16),
    I16(i16),
    U32(u32),
    I32(i32),
    F32(f32),
    Bool(bool),
    String(String),
    Array(GgufArray),
    U64(u64),
    I64(i64),
    F64(f64),
}

/// A metadata array, stored typed so its memory is proportional to the bytes read: `n`
/// elements of a fixed-size type take `n` times its size (a `[UINT8]` one byte each, not a
/// 32-byte [`GgufValue`] each), strings share one buffer plus a 4-byte end offset each
/// (their 8-byte length prefixes are not kept).
#[derive(Debug, Clone, PartialEq)]
pub enum GgufArray {
    U8(Vec<u8>),
    I8(Vec<i8>),
    U16(Vec<u16>),
    I16(Vec<i16>),
    U32(Vec<u32>),
    I32(Vec<i32>),
    F32(Vec<f32>),
    Bool(Vec<bool>),
    String(GgufStrings),
    /// Arrays of arrays (rare; their number is capped by [`MAX_NESTED_ARRAYS`]).
    Array(Vec<GgufArray>),
    U64(Vec<u64>),
    I64(Vec<i64>),
    F64(Vec<f64>),
}

/// The strings of a `[STRING]` array: their bytes back to back and where each ends.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct GgufStrings {
    data: String,
    ends: Vec<u32>,
}

impl GgufStrings {
    pub fn len(&self) -> usize {
        self.ends.len()
    }
    pub fn is_empty(&self) -> bool {
        self.ends.is_empty()
    }
    pub fn get(&self, i: usize) -> Option<&str> {
        let end = *self.ends.get(i)? as usize;
        let start = if i == 0 { 0 } else { self.ends[i - 1] as usize };
        self.data.get(start..end)
    }
    pub fn iter(&self) -> impl Iterator<Item = &str> + '_ {
        (0..self.len()).filter_map(|i| self.get(i))
    }
    /// Appends `s` (its end offset must fit `u32`, as it does for any header under
    /// [`MAX_HEADER_BYTES`]; `false` otherwise, and nothing is appended).
    pub fn push(&mut self, s: &str) -> bool {
        match u32::try_from(self.data.len() + s.len()) {
            Ok(end) => {
                self.data.push_str(s);
                self.ends.push(end);
                true
            }
            Err(_) => false,
        }
    }
}

impl<'a> FromIterator<&'a str> for GgufStrings {
    fn from_iter<I: IntoIterator<Item = &'a str>>(iter: I) -> Self {
        let mut out = Self::default();
        for s in iter {
            out.push(s);
        }
        out
    }
}

impl GgufArray {
    pub fn len(&self) -> usize {
        match self {
            Self::U8(v) => v.len(),
            Self::I8(v) => v.len(),
            Self::U16(v) => v.len(),
            Self::I16(v) => v.len(),
            Self::U32(v) => v.len(),
            Self::I32(v) => v.len(),
            Self::F32(v) => v.len(),
            Self::Bool(v) => v.len(),
            Self::String(v) => v.len(),
            Self::Array(v) => v.len(),
            Self::U64(v) => v.len(),
            Self::I64(v) => v.len(),
            Self::F64(v) => v.len(),
        }
    }
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
    /// Element `i` as a value (strings and nested arrays are copied).
    pub fn get(&self, i: usize) -> Option<GgufValue> {
        Some(match self {
            Self::U8(v) => GgufValue::U8(*v.get(i)?),
            Self::I8(v) => GgufValue::I8(*v.get(i)?),
            Self::U16(v) => GgufValue::U16(*v.get(i)?),
            Self::I16(v) => GgufValue::I16(*v.get(i)?),
            Self::U32(v) => GgufValue::U32(*v.get(i)?),
            Self::I32(v) => GgufValue::I32(*v.get(i)?),
            Self::F32(v) => GgufValue::F32(*v.get(i)?),
            Self::Bool(v) => GgufValue::Bool(*v.get(i)?),
            Self::String(v) => GgufValue::String(v.get(i)?.to_string()),
            Self::Array(v) => GgufValue::Array(v.get(i)?.clone()),
            Self::U64(v) => GgufValue::U64(*v.get(i)?),
            Self::I64(v) => GgufValue::I64(*v.get(i)?),
            Self::F64(v) => GgufValue::F64(*v.get(i)?),
        })
    }
    /// The strings of a `[STRING]` array.
    pub fn as_strings(&self) -> Option<&GgufStrings> {
        match self {
            Self::String(s) => Some(s),
            _ => None,
        }
    }
    /// The elements of an array of any integer type as `i64` (`None` for other types or a
    /// `u64` past `i64::MAX`).
    pub fn to_i64s(&self) -> Option<Vec<i64>> {
        match self {
            Self::U8(v) => Some(v.iter().map(|&x| x as i64).collect()),
            Self::I8(v) => Some(v.iter().map(|&x| x as i64).collect()),
            Self::U16(v) => Some(v.iter().map(|&x| x as i64).collect()),
            Self::I16(v) => Some(v.iter().map(|&x| x as i64).collect()),
            Self::U32(v) => Some(v.iter().map(|&x| x as i64).collect()),
            Self::I32(v) => Some(v.iter().map(|&x| x as i64).collect()),
            Self::I64(v) => Some(v.clone()),
            Self::U64(v) => v.iter().map(|&x| i64::try_from(x).ok()).collect(),
            _ => None,
        }
    }
    /// The on-disk type id of the elements.
    fn elem_type_id(&self) -> u32 {
        match self {
            Self::U8(_) => 0,
            Self::I8(_) => 1,
            Self::U16(_) => 2,
            Self::I16(_) => 3,
            Self::U32(_) => 4,
            Self::I32(_) => 5,
            Self::F32(_) => 6,
            Self::Bool(_) => 7,
            Self::String(_) => 8,
            Self::Array(_) => 9,
            Self::U64(_) => 10,
            Self::I64(_) => 11,
            Self::F64(_) => 12,
        }
    }
    /// The GGUF type name (`[STRING]`, `[[INT32]]`).
    pub fn type_name(&self) -> String {
        let elem = match self {
            Self::Array(a) => a.first().map(|a| a.type_name()).unwrap_or_else(|| "ARRAY".into()),
            other => GgufValue::scalar_type_name(other.elem_type_id()).to_string(),
        };
        format!("[{elem}]")
    }
    /// As JSON; arrays longer than `max_array` summarised (see [`GgufValue::to_json`]).
    pub fn to_json(&self, max_array: usize) -> serde_json::Value {
        use serde_json::json;
        let n = self.len();
        let items = |k: usize| (0..k).filter_map(|i| self.get(i)).map(|v| v.to_json(max_array)).collect::<Vec<_>>();
        if n > max_array {
            json!({ "type": self.type_name(), "len": n, "first": items(n.min(8)) })
        } else {
            serde_json::Value::Array(items(n))
        }
    }
}

impl GgufValue {
    /// Any integer type that fits `u64`.
    pub fn as_u64(&self) -> Option<u64> {
        match *self {
            Self::U8(v) => Some(v as u64),
            Self::U16(v) => Some(v as u64),
            Self::U32(v) => Some(v as u64),
            Self::U64(v) => Some(v),
            Self::I8(v) => u64::try_from(v).ok(),
            Self::I16(v) => u64::try_from(v).ok(),
            Self::I32(v) => u64::try_from(v).ok(),
            Self::I64(v) => u64::try_from(v).ok(),
            _ => None,
        }
    }
    pub fn as_i64(&self) -> Option<i64> {
        match *self {
            Self::I8(v) => Some(v as i64),
            Self::I16(v) => Some(v as i64),
            Self::I32(v) => Some(v as i64),
            Self::I64(v) => Some(v),
            _ => self.as_u64().and_then(|v| i64::try_from(v).ok()),
        }
    }
    pub fn as_f64(&self) -> Option<f64> {
        match *self {
            Self::F32(v) => Some(v as f64),
            Self::F64(v) => Some(v),
            _ => self.as_i64().map(|v| v as f64),
        }
    }
    pub fn as_str(&self) -> Option<&str> {
        match self {
            Self::String(s) => Some(s),
            _ => None,
        }
    }
    pub fn as_bool(&self) -> Option<bool> {
        match *self {
            Self::Bool(b) => Some(b),
            _ => None,
        }
    }
    pub fn as_array(&self) -> Option<&GgufArray> {
        match self {
            Self::Array(a) => Some(a),
            _ => None,
        }
    }
    fn scalar_type_name(id: u32) -> &'static str {
        match id {
            0 => "UINT8",
            1 => "INT8",
            2 => "UINT16",
            3 => "INT16",
            4 => "UINT32",
            5 => "INT32",
            6 => "FLOAT32",
            7 => "BOOL",
            8 => "STRING",
            10 => "UINT64",
            11 => "INT64",
            12 => "FLOAT64",
            _ => "ARRAY",
        }
    }
    /// The on-disk type id.
    fn type_id(&self) -> u32 {
        match self {
            Self::U8(_) => 0,
            Self::I8(_) => 1,
            Self::U16(_) => 2,
            Self::I16(_) => 3,
            Self::U32(_) => 4,
            Self::I32(_) => 5,
            Self::F32(_) => 6,
            Self::Bool(_) => 7,
            Self::String(_) => 8,
            Self::Array(_) => 9,
            Self::U64(_) => 10,
            Self::I64(_) => 11,
            Self::F64(_) => 12,
        }
    }
    /// The GGUF type name (`UINT32`, `STRING`, `[STRING]`).
    pub fn type_name(&self) -> String {
        match self {
            Self::Array(a) => a.type_name(),
            v => Self::scalar_type_name(v.type_id()).to_string(),
        }
    }
    /// As JSON. Arrays longer than `max_array` are summarised as
    /// `{"type", "len", "first": [...]}`, and unless `max_array` is `usize::MAX` (everything
    /// written), strings longer than [`JSON_STRING_SUMMARY`] bytes as
    /// `{"type": "STRING", "len", "first": "<its first 1 KiB>"}`.
    pub fn to_json(&self, max_array: usize) -> serde_json::Value {
        use serde_json::json;
        match self {
            Self::U8(v) => json!(v),
            Self::I8(v) => json!(v),
            Self::U16(v) => json!(v),
            Self::I16(v) => json!(v),
            Self::U32(v) => json!(v),
            Self::I32(v) => json!(v),
            Self::U64(v) => json!(v),
            Self::I64(v) => json!(v),
            Self::F32(v) => json!(v),
            Self::F64(v) => json!(v),
            Self::Bool(v) => json!(v),
            Self::String(s) if max_array != usize::MAX && s.len() > JSON_STRING_SUMMARY => {
                let cut = (0..=1024).rev().find(|&i| s.is_char_boundary(i)).unwrap_or(0);
                json!({ "type": "STRING", "len": s.len(), "first": &s[..cut] })
            }
            Self::String(s) => json!(s),
            Self::Array(a) => a.to_json(max_array),
        }
    }
}

/// Strings longer than this are summarised by a non-`usize::MAX` [`GgufValue::to_json`].
pub const JSON_STRING_SUMMARY: usize = 64 << 10;

/// One tensor of a GGUF file.
#[derive(Debug, Clone, PartialEq)]
pub struct GgufTensorInfo {
    pub name: String,
    /// Dimensions as stored: innermost (contiguous) first, `ne[0]` = row length.
    pub dims: Vec<u64>,
    pub ggml_type: GgmlType,
    /// Offset relative to the data region, as stored.
    pub offset: u64,
    /// Absolute byte range `[start, start + n_bytes)` in the file.
    pub start: u64,
    pub n_bytes: u64,
}

impl GgufTensorInfo {
    /// Row-major (PyTorch/HF) shape: `dims` reversed, `[out, in]` for a matrix.
    pub fn shape(&self) -> Vec<usize> {
        self.dims.iter().rev().map(|&d| d as usize).collect()
    }
    pub fn n_elems(&self) -> u64 {
        self.dims.iter().product()
    }
}

/// A validated GGUF header: metadata (in file order) and tensor infos.
#[derive(Debug, Clone)]
pub struct GgufFile {
    pub file: String,
    pub version: u32,
    pub file_len: u64,
    pub alignment: u64,
    /// Absolute offset of the data region.
    pub data_start: u64,
    pub metadata: Vec<(String, GgufValue)>,
    pub tensors: Vec<GgufTensorInfo>,
    /// Positions in `metadata` / `tensors` sorted by name (binary search; no copy of the
    /// names, which may be long).
    meta_index: Vec<u32>,
    tensor_index: Vec<u32>,
    /// The first byte not hashed into `header_sha256`: the data region's start, or the end
    /// of the bytes parsed when they stop short of it (alignment padding).
    pub hashed_len: u64,
    /// SHA-256 state after the file's first `hashed_len` bytes (the header as parsed), so a
    /// manifest check streams on from there without reading the header again.
    pub header_sha256: super::sha256::Sha256,
}

fn bad(file: &str, msg: impl Into<String>) -> Error {
    Error::Format {
        format: "gguf",
        file: file.to_string(),
        msg: msg.into(),
    }
}

/// Why the cursor stopped: malformed, or simply past the bytes read so far.
enum Stop {
    Bad(String),
    /// The header needs bytes beyond what was read (and the file may have them).
    Short,
}

impl From<String> for Stop {
    fn from(s: String) -> Self {
        Stop::Bad(s)
    }
}

struct Cursor<'a> {
    buf: &'a [u8],
    pos: usize,
    /// Bytes left in the whole file from `buf[0]`, for "longer than the file" checks.
    file_left: u64,
    /// Arrays read inside arrays so far (capped by [`MAX_NESTED_ARRAYS`]).
    nested: u64,
}

/// `N` little-endian bytes from the start of `c` (callers pass exact chunks).
fn le<const N: usize>(c: &[u8]) -> [u8; N] {
    std::array::from_fn(|i| c[i])
}

/// Positions `0..n` sorted by `key`, or the first name that appears twice.
fn sorted_index<'a>(n: usize, key: impl Fn(usize) -> &'a str) -> Result<Vec<u32>, &'a str> {
    let mut idx: Vec<u32> = (0..n as u32).collect();
    idx.sort_unstable_by(|&a, &b| key(a as usize).cmp(key(b as usize)));
    match idx.windows(2).find(|w| key(w[0] as usize) == key(w[1] as usize)) {
        Some(w) => Err(key(w[0] as usize)),
        None => Ok(idx),
    }
}

/// The position in `idx` (sorted by `key`) of `name`.
fn lookup<'a>(idx: &[u32], name: &str, key: impl Fn(usize) -> &'a str) -> Option<usize> {
    idx.binary_search_by(|&i| key(i as usize).cmp(name)).ok().map(|j| idx[j] as usize)
}

impl<'a> Cursor<'a> {
    fn remaining_in_file(&self) -> u64 {
        self.file_left.saturating_sub(self.pos as u64)
    }
    fn take(&mut self, n: u64, what: &str) -> Result<&'a [u8], Stop> {
        if n > self.remaining_in_file() {
            return Err(Stop::Bad(format!(
                "{what} needs {n} bytes at offset {} but the file ends {} bytes later (truncated?)",
                self.pos,
                self.remaining_in_file()
            )));
        }
        let end = (self.pos as u64)
            .checked_add(n)
            .filter(|&e| e <= self.buf.len() as u64)
            .ok_or(Stop::Short)?;
        let s = &self.buf[self.pos..end as usize];
        self.pos = end as usize;
        Ok(s)
    }
    fn arr<const N: usize>(&mut self, what: &str) -> Result<[u8; N], Stop> {
        Ok(self
            .take(N as u64, what)?
            .try_into()
            .expect("length checked"))
    }
    fn u32(&mut self, what: &str) -> Result<u32, Stop> {
        Ok(u32::from_le_bytes(self.arr(what)?))
    }
    fn u64(&mut self, what: &str) -> Result<u64, Stop> {
        Ok(u64::from_le_bytes(self.arr(what)?))
    }
    fn string(&mut self, what: &str) -> Result<String, Stop> {
        let n = self.u64(what)?;
        if n > MAX_STRING_BYTES {
            return Err(Stop::Bad(format!(
                "{what}: string length {n} exceeds the {MAX_STRING_BYTES}-byte cap"
            )));
        }
        if n > self.remaining_in_file() {
            return Err(Stop::Bad(format!(
                "{what}: string length {n} at offset {} runs past the end of the file ({} bytes left)",
                self.pos,
                self.remaining_in_file()
            )));
        }
        let b = self.take(n, what)?;
        String::from_utf8(b.to_vec()).map_err(|_| Stop::Bad(format!("{what}: string is not UTF-8")))
    }

    fn value(&mut self, ty: u32, what: &str, depth: usize) -> Result<GgufValue, Stop> {
        Ok(match ty {
            0 => GgufValue::U8(self.arr::<1>(what)?[0]),
            1 => GgufValue::I8(self.arr::<1>(what)?[0] as i8),
            2 => GgufValue::U16(u16::from_le_bytes(self.arr(what)?)),
            3 => GgufValue::I16(i16::from_le_bytes(self.arr(what)?)),
            4 => GgufValue::U32(self.u32(what)?),
            5 => GgufValue::I32(i32::from_le_bytes(self.arr(what)?)),
            6 => GgufValue::F32(f32::from_le_bytes(self.arr(what)?)),
            7 => match self.arr::<1>(what)?[0] {
                0 => GgufValue::Bool(false),
                1 => GgufValue::Bool(true),
                b => {
                    return Err(Stop::Bad(format!(
                        "{what}: bool byte {b} is neither 0 nor 1"
                    )))
                }
            },
            8 => GgufValue::String(self.string(what)?),
            9 => GgufValue::Array(self.array(what, depth)?),
            10 => GgufValue::U64(self.u64(what)?),
            11 => GgufValue::I64(i64::from_le_bytes(self.arr(what)?)),
            12 => GgufValue::F64(f64::from_le_bytes(self.arr(what)?)),
            t => return Err(Stop::Bad(format!("{what}: unknown value type {t}"))),
        })
    }
}

impl Cursor<'_> {
    /// An array value (element type, length, elements) at nesting `depth`.
    fn array(&mut self, what: &str, depth: usize) -> Result<GgufArray, Stop> {
        if depth >= MAX_DEPTH {
            return Err(Stop::Bad(format!("{what}: arrays nested deeper than {MAX_DEPTH}")));
        }
        let elem = self.u32(what)?;
        let n = self.u64(what)?;
        if n > MAX_ARRAY_LEN {
            return Err(Stop::Bad(format!("{what}: array length {n} exceeds the cap of {MAX_ARRAY_LEN}")));
        }
        // Every element takes at least one byte (strings 8): a length the rest of the file
        // cannot hold is rejected before allocating.
        let min = match elem {
            0 | 1 | 7 => 1,
            2 | 3 => 2,
            4..=6 => 4,
            8 | 10 | 11 | 12 => 8,
            9 => 12,
            t => return Err(Stop::Bad(format!("{what}: unknown array element type {t}"))),
        };
        if n.saturating_mul(min) > self.remaining_in_file() {
            return Err(Stop::Bad(format!(
                "{what}: array of {n} elements needs at least {} bytes but only {} are left in the file",
                n.saturating_mul(min),
                self.remaining_in_file()
            )));
        }
        // Fixed-size elements: one exact allocation from one slice.
        macro_rules! fixed {
            ($variant:ident, $t:ty) => {{
                let b = self.take(n * min, what)?;
                GgufArray::$variant(b.chunks_exact(min as usize).map(|c| <$t>::from_le_bytes(le(c))).collect())
            }};
        }
        Ok(match elem {
            0 => GgufArray::U8(self.take(n, what)?.to_vec()),
            1 => GgufArray::I8(self.take(n, what)?.iter().map(|&b| b as i8).collect()),
            2 => fixed!(U16, u16),
            3 => fixed!(I16, i16),
            4 => fixed!(U32, u32),
            5 => fixed!(I32, i32),
            6 => fixed!(F32, f32),
            7 => {
                let b = self.take(n, what)?;
                if let Some(x) = b.iter().find(|&&x| x > 1) {
                    return Err(Stop::Bad(format!("{what}: bool byte {x} is neither 0 nor 1")));
                }
                GgufArray::Bool(b.iter().map(|&x| x == 1).collect())
            }
            8 => GgufArray::String(self.strings(n, what)?),
            9 => {
                let mut v = Vec::with_capacity(n as usize);
                for _ in 0..n {
                    self.nested += 1;
                    if self.nested > MAX_NESTED_ARRAYS {
                        return Err(Stop::Bad(format!("{what}: more than {MAX_NESTED_ARRAYS} arrays nested in arrays")));
                    }
                    v.push(self.array(what, depth + 1)?);
                }
                GgufArray::Array(v)
            }
            10 => fixed!(U64, u64),
            11 => fixed!(I64, i64),
            _ => fixed!(F64, f64),
        })
    }

    /// `n` strings into one exactly sized buffer: a first pass reads the lengths, a second
    /// copies the bytes.
    fn strings(&mut self, n: u64, what: &str) -> Result<GgufStrings, Stop> {
        let start = self.pos;
        let mut total = 0u64;
        for _ in 0..n {
            let len = self.u64(what)?;
            if len > MAX_STRING_BYTES {
                return Err(Stop::Bad(format!("{what}: string length {len} exceeds the {MAX_STRING_BYTES}-byte cap")));
            }
            self.take(len, what)?;
            total += len;
        }
        if total > u32::MAX as u64 {
            return Err(Stop::Bad(format!("{what}: {total} bytes of strings exceed 4 GiB")));
        }
        self.pos = start;
        let mut out = GgufStrings { data: String::with_capacity(total as usize), ends: Vec::with_capacity(n as usize) };
        for _ in 0..n {
            let len = self.u64(what)?;
            let b = self.take(len, what)?;
            let s = std::str::from_utf8(b).map_err(|_| Stop::Bad(format!("{what}: string is not UTF-8")))?;
            out.push(s);
        }
        Ok(out)
    }
}

impl GgufFile {
    /// Reads and validates the header of `file` from `src`: a 1 MiB range read, grown
    /// until the header fits (capped at [`MAX_HEADER_BYTES`]). Tensor data is not read.
    pub async fn read<S: Source>(src: &S, file: &str) -> Result<Self> {
        let file_len = src.len(file).await?;
        let mut n = FIRST_READ.min(file_len);
        loop {
            let prefix = src.read_range(file, 0, n).await?;
            match Self::parse_prefix(file, &prefix, file_len) {
                Ok(g) => return Ok(g),
                Err(Stop::Bad(msg)) => return Err(bad(file, msg)),
                Err(Stop::Short) if n < file_len && n < MAX_HEADER_BYTES => {
                    n = (n * 4).min(file_len).min(MAX_HEADER_BYTES);
                }
                Err(Stop::Short) => {
                    return Err(bad(
                        file,
                        format!("header is longer than the {MAX_HEADER_BYTES}-byte cap"),
                    ));
                }
            }
        }
    }

    /// Validates a header from `prefix`, the first bytes of a file of `file_len` bytes
    /// (the whole file, or just enough to hold the header: the first chunk of a split file,
    /// given the total length). Offsets are checked against `file_len`.
    pub fn parse(file: &str, prefix: &[u8], file_len: u64) -> Result<Self> {
        if (prefix.len() as u64) > file_len {
            return Err(bad(
                file,
                format!("{} bytes given for a {file_len}-byte file", prefix.len()),
            ));
        }
        match Self::parse_prefix(file, prefix, file_len) {
            Ok(g) => Ok(g),
            Err(Stop::Bad(msg)) => Err(bad(file, msg)),
            Err(Stop::Short) => Err(bad(
                file,
                format!("header does not fit in the first {} bytes", prefix.len()),
            )),
        }
    }

    fn parse_prefix(file: &str, buf: &[u8], file_len: u64) -> Result<Self, Stop> {
        let mut c = Cursor {
            buf,
            pos: 0,
            file_left: file_len,
            nested: 0,
        };
        let magic = c.arr::<4>("magic")?;
        if &magic != b"GGUF" {
            return Err(Stop::Bad(format!(
                "wrong magic {magic:02x?} (expected \"GGUF\")"
            )));
        }
        let version = c.u32("version")?;
        match version {
            2 | 3 => {}
            1 => {
                return Err(Stop::Bad(
                    "GGUF version 1 is not supported (2 and 3 are)".into(),
                ))
            }
            v if v.swap_bytes() <= 3 => {
                return Err(Stop::Bad(format!(
                    "version {v:#x}: a big-endian GGUF file, not supported"
                )));
            }
            v => {
                return Err(Stop::Bad(format!(
                    "unsupported GGUF version {v} (2 and 3 are supported)"
                )))
            }
        }
        let n_tensors = c.u64("tensor count")?;
        let n_kv = c.u64("metadata count")?;
        if n_tensors > MAX_TENSORS {
            return Err(Stop::Bad(format!(
                "tensor count {n_tensors} exceeds the cap of {MAX_TENSORS}"
            )));
        }
        if n_kv > MAX_KV {
            return Err(Stop::Bad(format!(
                "metadata count {n_kv} exceeds the cap of {MAX_KV}"
            )));
        }
        let mut metadata: Vec<(String, GgufValue)> = Vec::with_capacity(n_kv.min(1024) as usize);
        for i in 0..n_kv {
            let at = c.pos;
            let key = c.string(&format!("metadata key {i}"))?;
            if key.len() as u64 > MAX_KEY_BYTES {
                return Err(Stop::Bad(format!("metadata key {i} at offset {at}: {} bytes exceeds the {MAX_KEY_BYTES}-byte cap", key.len())));
            }
            let ty = c.u32(&format!("type of {key}"))?;
            let v = c.value(ty, &key, 0)?;
            metadata.push((key, v));
        }
        let meta_index = sorted_index(metadata.len(), |i| metadata[i].0.as_str())
            .map_err(|k| Stop::Bad(format!("duplicate metadata key {k}")))?;
        let alignment = match lookup(&meta_index, "general.alignment", |i| metadata[i].0.as_str()).map(|i| &metadata[i].1) {
            None => 32,
            Some(GgufValue::U32(a)) if a.is_power_of_two() && *a <= (1 << 20) => *a as u64,
            Some(v) => {
                return Err(Stop::Bad(format!(
                    "general.alignment {v:?} is not a power of two u32 ≤ 1 MiB"
                )))
            }
        };

        struct Raw {
            name: String,
            dims: Vec<u64>,
            ty: GgmlType,
            offset: u64,
        }
        let mut raw = Vec::with_capacity(n_tensors.min(4096) as usize);
        for i in 0..n_tensors {
            let name = c.string(&format!("tensor {i} name"))?;
            let n_dims = c.u32(&format!("tensor {name} rank"))?;
            if n_dims > MAX_DIMS {
                return Err(Stop::Bad(format!(
                    "tensor {name}: rank {n_dims} exceeds {MAX_DIMS}"
                )));
            }
            let dims = (0..n_dims)
                .map(|_| c.u64(&format!("tensor {name} dims")))
                .collect::<Result<Vec<_>, _>>()?;
            // An empty dimension makes the byte size 0 whatever the others say, so a size
            // check would let [0, 7e16] through, and code walking its rows would loop for
            // years (found by fuzz_gguf). No model has an empty tensor.
            if dims.contains(&0) {
                return Err(Stop::Bad(format!("tensor {name}: an empty dimension in {dims:?}")));
            }
            let ty_id = c.u32(&format!("tensor {name} type"))?;
            let ty = GgmlType::from_id(ty_id)
                .ok_or_else(|| Stop::Bad(format!("tensor {name}: unknown tensor type {ty_id}")))?;
            let offset = c.u64(&format!("tensor {name} offset"))?;
            raw.push(Raw {
                name,
                dims,
                ty,
                offset,
            });
        }
        let tensor_index = sorted_index(raw.len(), |i| raw[i].name.as_str())
            .map_err(|n| Stop::Bad(format!("duplicate tensor name {n}")))?;
        let data_start = (c.pos as u64).next_multiple_of(alignment);
        if data_start > file_len {
            return Err(Stop::Bad(format!(
                "data region starts at {data_start}, past the end of the {file_len}-byte file"
            )));
        }
        let data_len = file_len - data_start;
        let mut tensors = Vec::with_capacity(raw.len());
        for r in raw {
            let name = &r.name;
            let n_bytes = r.ty.byte_size(&r.dims).ok_or_else(|| {
                Stop::Bad(format!(
                    "tensor {name}: {:?} {:?} is not a whole number of {}-element blocks, or overflows",
                    r.ty,
                    r.dims,
                    r.ty.block().0
                ))
            })?;
            if r.offset % alignment != 0 {
                return Err(Stop::Bad(format!(
                    "tensor {name}: offset {} is not a multiple of the alignment {alignment}",
                    r.offset
                )));
            }
            if r.offset
                .checked_add(n_bytes)
                .is_none_or(|end| end > data_len)
            {
                return Err(Stop::Bad(format!(
                    "tensor {name}: bytes [{}, {}+{n_bytes}) lie outside the {data_len}-byte data region",
                    r.offset, r.offset
                )));
            }
            tensors.push(GgufTensorInfo {
                name: r.name,
                dims: r.dims,
                ggml_type: r.ty,
                offset: r.offset,
                start: data_start + r.offset,
                n_bytes,
            });
        }
        let mut order: Vec<&GgufTensorInfo> = tensors.iter().filter(|t| t.n_bytes > 0).collect();
        order.sort_by_key(|t| t.offset);
        for w in order.windows(2) {
            if w[1].offset < w[0].offset + w[0].n_bytes {
                return Err(Stop::Bad(format!(
                    "tensors {} and {} overlap",
                    w[0].name, w[1].name
                )));
            }
        }
        let hashed_len = data_start.min(buf.len() as u64);
        let mut header_sha256 = super::sha256::Sha256::new();
        header_sha256.update(&buf[..hashed_len as usize]);
        Ok(Self {
            file: file.to_string(),
            version,
            file_len,
            alignment,
            data_start,
            metadata,
            tensors,
            meta_index,
            tensor_index,
            hashed_len,
            header_sha256,
        })
    }

    /// A metadata value.
    pub fn meta(&self, key: &str) -> Option<&GgufValue> {
        lookup(&self.meta_index, key, |i| self.metadata[i].0.as_str()).map(|i| &self.metadata[i].1)
    }
    fn meta_err(&self, key: &str, what: &str) -> Error {
        match self.meta(key) {
            None => bad(&self.file, format!("metadata {key} is missing")),
            Some(v) => bad(
                &self.file,
                format!("metadata {key} is {}, expected {what}", v.type_name()),
            ),
        }
    }
    pub fn meta_u64(&self, key: &str) -> Result<u64> {
        self.meta(key)
            .and_then(GgufValue::as_u64)
            .ok_or_else(|| self.meta_err(key, "an unsigned integer"))
    }
    pub fn meta_f64(&self, key: &str) -> Result<f64> {
        self.meta(key)
            .and_then(GgufValue::as_f64)
            .ok_or_else(|| self.meta_err(key, "a number"))
    }
    pub fn meta_str(&self, key: &str) -> Result<&str> {
        self.meta(key)
            .and_then(GgufValue::as_str)
            .ok_or_else(|| self.meta_err(key, "a string"))
    }
    pub fn meta_array(&self, key: &str) -> Result<&GgufArray> {
        self.meta(key)
            .and_then(GgufValue::as_array)
            .ok_or_else(|| self.meta_err(key, "an array"))
    }
    /// `general.architecture` (`llama`, `qwen2`, `gemma3`).
    pub fn architecture(&self) -> Result<&str> {
        self.meta_str("general.architecture")
    }

    pub fn tensor(&self, name: &str) -> Result<&GgufTensorInfo> {
        lookup(&self.tensor_index, name, |i| self.tensors[i].name.as_str())
            .map(|i| &self.tensors[i])
            .ok_or_else(|| Error::MissingTensor {
                name: name.to_string(),
            })
    }

    /// The header as JSON (`gllm inspect`): version, alignment, data offset, metadata
    /// (arrays longer than `max_array` summarised) and every tensor's type, shape (GGUF
    /// order, innermost first), offset and size.
    pub fn to_json(&self, max_array: usize) -> serde_json::Value {
        let mut meta = serde_json::Map::new();
        for (k, v) in &self.metadata {
            meta.insert(k.clone(), v.to_json(max_array));
        }
        let tensors: Vec<_> = self
            .tensors
            .iter()
            .map(|t| {
                serde_json::json!({
                    "name": t.name, "type": t.ggml_type.name(), "dims": t.dims, "shape": t.shape(),
                    "offset": t.offset, "file_offset": t.start, "n_bytes": t.n_bytes,
                })
            })
            .collect();
        serde_json::json!({
            "file": self.file, "version": self.version, "file_len": self.file_len,
            "alignment": self.alignment, "data_start": self.data_start,
            "tensor_count": self.tensors.len(), "metadata": meta, "tensors": tensors,
        })
    }
}

/// Writes a GGUF v3 file in memory (tests and the fuzzer's seeds). Tensor data is laid out
/// in order, each aligned to `general.alignment` (a `U32` in `metadata`) or 32 bytes.
pub fn serialize(
    metadata: &[(&str, GgufValue)],
    tensors: &[(&str, GgmlType, &[u64], &[u8])],
) -> Vec<u8> {
    fn put_str(out: &mut Vec<u8>, s: &str) {
        out.extend((s.len() as u64).to_le_bytes());
        out.extend(s.as_bytes());
    }
    fn put_val(out: &mut Vec<u8>, v: &GgufValue) {
        match v {
            GgufValue::U8(x) => out.push(*x),
            GgufValue::I8(x) => out.push(*x as u8),
            GgufValue::U16(x) => out.extend(x.to_le_bytes()),
            GgufValue::I16(x) => out.extend(x.to_le_bytes()),
            GgufValue::U32(x) => out.extend(x.to_le_bytes()),
            GgufValue::I32(x) => out.extend(x.to_le_bytes()),
            GgufValue::F32(x) => out.extend(x.to_le_bytes()),
            GgufValue::Bool(x) => out.push(*x as u8),
            GgufValue::String(s) => put_str(out, s),
            GgufValue::Array(a) => put_arr(out, a),
            GgufValue::U64(x) => out.extend(x.to_le_bytes()),
            GgufValue::I64(x) => out.extend(x.to_le_bytes()),
            GgufValue::F64(x) => out.extend(x.to_le_bytes()),
        }
    }
    fn put_arr(out: &mut Vec<u8>, a: &GgufArray) {
        out.extend(a.elem_type_id().to_le_bytes());
        out.extend((a.len() as u64).to_le_bytes());
        match a {
            GgufArray::String(s) => s.iter().for_each(|x| put_str(out, x)),
            GgufArray::Array(v) => v.iter().for_each(|x| put_arr(out, x)),
            _ => (0..a.len()).filter_map(|i| a.get(i)).for_each(|x| put_val(out, &x)),
        }
    }
    let align = metadata
        .iter()
        .find_map(|(k, v)| match v {
            GgufValue::U32(a) if *k == "general.alignment" && *a > 0 => Some(*a as usize),
            _ => None,
        })
        .unwrap_or(32);
    let mut out = b"GGUF".to_vec();
    out.extend(3u32.to_le_bytes());
    out.extend((tensors.len() as u64).to_le_bytes());
    out.extend((metadata.len() as u64).to_le_bytes());
    for (k, v) in metadata {
        put_str(&mut out, k);
        out.extend(v.type_id().to_le_bytes());
        put_val(&mut out, v);
    }
    let mut offset = 0u64;
    for (name, ty, dims, bytes) in tensors {
        put_str(&mut out, name);
        out.extend((dims.len() as u32).to_le_bytes());
        dims.iter().for_each(|d| out.extend(d.to_le_bytes()));
        let id = (0..64)
            .find(|&i| GgmlType::from_id(i) == Some(*ty))
            .expect("known type");
        out.extend(id.to_le_bytes());
        out.extend(offset.to_le_bytes());
        offset = (offset + bytes.len() as u64).next_multiple_of(align as u64);
    }
    out.resize(out.len().next_multiple_of(align), 0);
    for (_, _, _, bytes) in tensors {
        out.extend_from_slice(bytes);
        out.resize(out.len().next_multiple_of(align), 0);
    }
    out
}
