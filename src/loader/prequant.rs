//! Pre-quantized safetensors: a checkpoint whose linear weights are stored as GGUF-style blocks
//! in the GPU layout of [`QMatrix`], so a load streams them into GPU buffers byte for byte with
//! no conversion and downloads 4–8× fewer bytes than the f32 / f16 original.
//!
//! Written by `gllm quantize` ([`write`], native). Format:
//! - `__metadata__`: `"gllm.quant"`: the block format (a [`QuantFormat`] name: `q8_0`, `q4_0`,
//!   `q4_1`, `q5_0`, `q5_1`, `q2_K`, `q3_K`, `q4_K`, `q5_K`, `q6_K`, `iq4_nl`), `"gllm.layout"`:
//!   [`LAYOUT`];
//! - each quantized `[rows, cols]` weight `W` becomes `W.qbody`: `U8 [rows, cols / block ×
//!   body_words × 4]`, the blocks' bodies ([`crate::quant::relayout`]), and `W.qscale`: `U8
//!   [4 × ceil(blocks / 2)]`, the split-off f16 scales packed two per little-endian word (one
//!   zero word for formats that keep the scale in the body);
//! - every other tensor is copied unchanged.
//!
//! [`QMatrix`]: crate::kernels::quant::QMatrix

use crate::error::{Error, Result};
use crate::quant::QuantFormat;

/// Suffix of a quantized weight's block bodies.
pub const QBODY: &str = ".qbody";
/// Suffix of a quantized weight's packed scales.
pub const QSCALE: &str = ".qscale";
/// `__metadata__` key of the block format.
pub const META_FORMAT: &str = "gllm.quant";
/// `__metadata__` key of the layout version.
pub const META_LAYOUT: &str = "gllm.layout";
/// The layout this crate writes and reads.
pub const LAYOUT: &str = "gpu-relaid-v1";

fn bad(file: &str, msg: impl Into<String>) -> Error {
    Error::Format { format: "safetensors", file: file.to_string(), msg: msg.into() }
}

/// The block format recorded in a safetensors `__metadata__` object, if any. The file is
/// untrusted: metadata values must be strings, the format known and the layout ours.
pub fn format_from_metadata(file: &str, meta: &serde_json::Value) -> Result<Option<QuantFormat>> {
    let obj = meta.as_object().ok_or_else(|| bad(file, "__metadata__ is not an object"))?;
    let Some(v) = obj.get(META_FORMAT) else { return Ok(None) };
    let name = v.as_str().ok_or_else(|| bad(file, format!("__metadata__ {META_FORMAT} is not a string")))?;
    let fmt = QuantFormat::parse(name).ok_or_else(|| bad(file, format!("unknown pre-quantized format {name:?}")))?;
    match obj.get(META_LAYOUT).and_then(|l| l.as_str()) {
        Some(LAYOUT) => Ok(Some(fmt)),
        other => Err(bad(file, format!("pre-quantized layout {other:?}: this version reads {LAYOUT:?}"))),
    }
}

/// Byte lengths of a `[rows, cols]` weight's `.qbody` and `.qscale` tensors in `fmt`.
pub fn part_bytes(fmt: QuantFormat, rows: usize, cols: usize) -> Result<(usize, usize)> {
    let blocks = fmt.byte_len(rows.checked_mul(cols).ok_or_else(|| Error::param(fmt.name(), "shape overflows"))?)? / fmt.block_bytes();
    let scale_words = if fmt.split_scale() { blocks.div_ceil(2) } else { 1 };
    Ok((blocks * fmt.body_words() * 4, scale_words * 4))
}

/// What [`write`] did.
#[cfg(not(target_arch = "wasm32"))]
#[derive(Debug)]
pub struct Summary {
    pub quantized: usize,
    pub copied: usize,
    pub bytes_in: u64,
    pub bytes_out: u64,
}

/// Writes the pre-quantized form of the safetensors checkpoint in `model_dir` (one
/// `model.safetensors`) to `out_dir`: the matrices `is_linear` selects whose rows are whole
/// blocks are quantized with the reference quantizer, everything else is copied; the other
/// files of the folder (configs, tokenizer) are copied, and a `gllm-manifest.json` with the new
/// file's SHA-256 is written. One tensor is in memory at a time.
#[cfg(not(target_arch = "wasm32"))]
pub fn write(model_dir: &std::path::Path, out_dir: &std::path::Path, fmt: QuantFormat, is_linear: &dyn Fn(&str) -> bool) -> Result<Summary> {
    use super::safetensors::{self, header_bytes, StDType};
    use super::sha256::Sha256;
    use super::{FileSource, SafetensorsFile, Source};
    use std::io::Write;

    const WEIGHTS: &str = "model.safetensors";
    let io = |file: &str, e: std::io::Error| Error::Io { file: file.to_string(), msg: e.to_string() };
    let src = FileSource::new(model_dir);
    let st = pollster::block_on(SafetensorsFile::read(&src, WEIGHTS))?;
    if st.quant.is_some() {
        return Err(Error::Input(format!("{}/{WEIGHTS} is already pre-quantized", model_dir.display())));
    }
    // Plan: (name in the output, dtype, shape, bytes, source tensor, quantize?).
    let mut order: Vec<(&String, &super::TensorInfo)> = st.tensors.iter().collect();
    order.sort_by_key(|(_, t)| t.start);
    let mut plan: Vec<(String, StDType, Vec<usize>, usize, &String, bool)> = Vec::new();
    let mut quantized = 0;
    for (name, t) in &order {
        let float = matches!(t.dtype, StDType::F32 | StDType::F16 | StDType::BF16);
        if let (true, true, [rows, cols]) = (float, is_linear(name), t.shape.as_slice()) {
            if cols % fmt.block_elems() == 0 {
                let (body, scale) = part_bytes(fmt, *rows, *cols)?;
                plan.push((format!("{name}{QBODY}"), StDType::U8, vec![*rows, body / rows], body, name, true));
                plan.push((format!("{name}{QSCALE}"), StDType::U8, vec![scale], scale, name, true));
                quantized += 1;
                continue;
            }
        }
        plan.push((name.to_string(), t.dtype, t.shape.clone(), (t.end - t.start) as usize, name, false));
    }
    let meta = std::collections::BTreeMap::from([
        (META_FORMAT.to_string(), fmt.name().to_string()),
        (META_LAYOUT.to_string(), LAYOUT.to_string()),
    ]);
    std::fs::create_dir_all(out_dir).map_err(|e| io(&out_dir.display().to_string(), e))?;
    let out_path = out_dir.join(WEIGHTS);
    let out_name = out_path.display().to_string();
    let mut out = std::io::BufWriter::new(std::fs::File::create(&out_path).map_err(|e| io(&out_name, e))?);
    let mut sha = Sha256::new();
    let mut put = |bytes: &[u8]| -> Result<()> {
        sha.update(bytes);
        out.write_all(bytes).map_err(|e| io(&out_name, e))
    };
    let header = header_bytes(plan.iter().map(|(n, d, s, b, _, _)| (n.as_str(), *d, s.as_slice(), *b)), Some(&meta));
    put(&header)?;
    let mut bytes_out = header.len() as u64;
    let mut i = 0;
    while i < plan.len() {
        let (_, _, _, len, source, quant) = &plan[i];
        let t = st.get(source)?;
        let raw = pollster::block_on(src.read_range(WEIGHTS, t.start, t.end - t.start))?;
        if *quant {
            let values = safetensors::to_f32(source, t.dtype, &raw)?;
            let r = crate::quant::relayout(fmt, &crate::quant::quantize(fmt, &values)?)?;
            let body: Vec<u8> = r.body.iter().flat_map(|w| w.to_le_bytes()).collect();
            let mut scale: Vec<u8> = r.scales.iter().flat_map(|w| w.to_le_bytes()).collect();
            scale.resize(plan[i + 1].3, 0);
            if body.len() != *len {
                return Err(Error::Input(format!("{source}: {} body bytes, planned {len}", body.len())));
            }
            put(&body)?;
            put(&scale)?;
            bytes_out += (body.len() + scale.len()) as u64;
            i += 2;
        } else {
            put(&raw)?;
            bytes_out += raw.len() as u64;
            i += 1;
        }
    }
    drop(put);
    out.flush().map_err(|e| io(&out_name, e))?;
    // The folder's other files (configs, tokenizer, sub-folders such as 1_Pooling/) as they are.
    fn copy_tree(from: &std::path::Path, to: &std::path::Path, top: bool) -> std::io::Result<usize> {
        let mut copied = 0;
        for entry in std::fs::read_dir(from)? {
            let entry = entry?;
            let name = entry.file_name().to_string_lossy().to_string();
            let weights = name.ends_with(".safetensors") || name == "model.safetensors.index.json" || name == "gllm-manifest.json";
            if entry.file_type()?.is_dir() {
                std::fs::create_dir_all(to.join(&name))?;
                copied += copy_tree(&entry.path(), &to.join(&name), false)?;
            } else if !(top && weights) {
                std::fs::copy(entry.path(), to.join(&name))?;
                copied += 1;
            }
        }
        Ok(copied)
    }
    let copied = copy_tree(model_dir, out_dir, true).map_err(|e| io(&model_dir.display().to_string(), e))?;
    let manifest = serde_json::json!({ "files": { WEIGHTS: { "sha256": super::sha256::to_hex(&sha.finalize()), "size": bytes_out } } });
    std::fs::write(out_dir.join("gllm-manifest.json"), serde_json::to_vec_pretty(&manifest).unwrap_or_default())
        .map_err(|e| io("gllm-manifest.json", e))?;
    Ok(Summary { quantized, copied, bytes_in: st.file_len, bytes_out })
}
