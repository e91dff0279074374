//! GGUF decoders as HF checkpoints: tensor names, dequantisation, the llama `attn_q`/`attn_k`
//! row order, Gemma 3's shifted norms, `config.json` / `generation_config.json`, and
//! `gllm convert`.
//!
//! The reference is `make_goldens.py convert-gguf` (numpy + gguf-py): every block is
//! dequantised to f32 exactly, llama q/k rows are un-permuted, then the value is rounded to
//! f16 (round to nearest even) or kept as f32. Our output is bit-identical to it
//! (`tests/gguf.rs` compares per-tensor sha256 sums).

use super::gguf::{GgmlType, GgufFile, GgufTensorInfo};
use crate::error::{Error, Result};
use crate::quant::{self, QuantFormat};

/// Architectures whose tensors map onto an HF layout: Llama/Qwen2 (`LlamaForCausalLM`,
/// `Qwen2ForCausalLM`) and Gemma 3 (`Gemma3ForCausalLM`).
pub const SUPPORTED_ARCHS: [&str; 3] = ["llama", "qwen2", "gemma3"];

/// Architectures `gllm convert` writes HF folders for.
pub const CONVERT_ARCHS: [&str; 2] = ["llama", "qwen2"];

const BLOCK_MAP: [(&str, &str); 9] = [
    ("attn_norm", "input_layernorm"),
    ("ffn_norm", "post_attention_layernorm"),
    ("attn_q", "self_attn.q_proj"),
    ("attn_k", "self_attn.k_proj"),
    ("attn_v", "self_attn.v_proj"),
    ("attn_output", "self_attn.o_proj"),
    ("ffn_gate", "mlp.gate_proj"),
    ("ffn_up", "mlp.up_proj"),
    ("ffn_down", "mlp.down_proj"),
];

/// Gemma 3's block tensors (llama.cpp `LLM_ARCH_GEMMA3`): four norms per layer, q/k norms.
/// Note that `ffn_norm` is the *pre*-feed-forward norm here (llama's `ffn_norm` is HF's
/// `post_attention_layernorm`, which Gemma calls `post_attention_norm`).
const GEMMA3_BLOCK_MAP: [(&str, &str); 13] = [
    ("attn_norm", "input_layernorm"),
    ("attn_q", "self_attn.q_proj"),
    ("attn_k", "self_attn.k_proj"),
    ("attn_v", "self_attn.v_proj"),
    ("attn_output", "self_attn.o_proj"),
    ("attn_q_norm", "self_attn.q_norm"),
    ("attn_k_norm", "self_attn.k_norm"),
    ("post_attention_norm", "post_attention_layernorm"),
    ("ffn_norm", "pre_feedforward_layernorm"),
    ("ffn_gate", "mlp.gate_proj"),
    ("ffn_up", "mlp.up_proj"),
    ("ffn_down", "mlp.down_proj"),
    ("post_ffw_norm", "post_feedforward_layernorm"),
];

fn block_map(arch: &str) -> &'static [(&'static str, &'static str)] {
    if arch == "gemma3" { &GEMMA3_BLOCK_MAP } else { &BLOCK_MAP }
}

/// GGUF tensor name → HF name (`blk.3.attn_q.weight` → `model.layers.3.self_attn.q_proj.weight`)
/// for the llama/qwen2 layout.
pub fn hf_name(gguf: &str) -> Option<String> {
    hf_name_in("llama", gguf)
}

/// HF name → GGUF name for the llama/qwen2 layout (the inverse of [`hf_name`]).
pub fn gguf_name(hf: &str) -> Option<String> {
    gguf_name_in("llama", hf)
}

/// GGUF tensor name → HF name in architecture `arch`'s layout.
pub fn hf_name_in(arch: &str, gguf: &str) -> Option<String> {
    match gguf {
        "token_embd.weight" => return Some("model.embed_tokens.weight".into()),
        "output_norm.weight" => return Some("model.norm.weight".into()),
        "output.weight" => return Some("lm_head.weight".into()),
        _ => {}
    }
    let rest = gguf.strip_prefix("blk.")?;
    let (layer, rest) = rest.split_once('.')?;
    if layer.is_empty() || !layer.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let (part, suffix) = rest.rsplit_once('.')?;
    if suffix != "weight" && suffix != "bias" {
        return None;
    }
    let hf = block_map(arch).iter().find(|(g, _)| *g == part)?.1;
    Some(format!("model.layers.{layer}.{hf}.{suffix}"))
}

/// HF name → GGUF name in architecture `arch`'s layout (the inverse of [`hf_name_in`]).
pub fn gguf_name_in(arch: &str, hf: &str) -> Option<String> {
    match hf {
        "model.embed_tokens.weight" => return Some("token_embd.weight".into()),
        "model.norm.weight" => return Some("output_norm.weight".into()),
        "lm_head.weight" => return Some("output.weight".into()),
        _ => {}
    }
    let rest = hf.strip_prefix("model.layers.")?;
    let (layer, rest) = rest.split_once('.')?;
    let (part, suffix) = rest.rsplit_once('.')?;
    let g = block_map(arch).iter().find(|(_, h)| *h == part)?.0;
    Some(format!("blk.{layer}.{g}.{suffix}"))
}

/// A GGUF decoder seen as an HF checkpoint.
#[derive(Debug, Clone)]
pub struct GgufModel {
    pub gguf: GgufFile,
    pub arch: String,
    /// `(hf name, index into gguf.tensors)` in file order.
    pub names: Vec<(String, usize)>,
    n_head: usize,
    n_kv: usize,
}

impl GgufModel {
    /// Checks the architecture and maps every tensor name; an unknown tensor is an error
    /// (a silently dropped weight would be a wrong model).
    pub fn new(gguf: GgufFile) -> Result<Self> {
        let arch = gguf.architecture()?.to_string();
        if !SUPPORTED_ARCHS.contains(&arch.as_str()) {
            return Err(Error::Format {
                format: "gguf",
                file: gguf.file.clone(),
                msg: format!("architecture {arch} is not supported (llama, qwen2 and gemma3 are)"),
            });
        }
        let n_head = gguf.meta_u64(&format!("{arch}.attention.head_count"))? as usize;
        let n_kv = gguf.meta_u64(&format!("{arch}.attention.head_count_kv"))? as usize;
        if n_head == 0 || n_kv == 0 {
            return Err(Error::Format {
                format: "gguf",
                file: gguf.file.clone(),
                msg: "head counts must be positive".into(),
            });
        }
        let names = gguf
            .tensors
            .iter()
            .enumerate()
            .map(|(i, t)| {
                hf_name_in(&arch, &t.name)
                    .map(|n| (n, i))
                    .ok_or_else(|| Error::Format {
                        format: "gguf",
                        file: gguf.file.clone(),
                        msg: format!("tensor {} has no HF counterpart", t.name),
                    })
            })
            .collect::<Result<Vec<_>>>()?;
        Ok(Self {
            gguf,
            arch,
            names,
            n_head,
            n_kv,
        })
    }

    /// The GGUF tensor behind an HF name.
    pub fn tensor(&self, hf: &str) -> Result<&GgufTensorInfo> {
        let g = gguf_name_in(&self.arch, hf).ok_or_else(|| Error::MissingTensor {
            name: hf.to_string(),
        })?;
        self.gguf.tensor(&g).map_err(|_| Error::MissingTensor {
            name: hf.to_string(),
        })
    }

    pub fn contains(&self, hf: &str) -> bool {
        self.tensor(hf).is_ok()
    }

    /// Heads whose rows are interleaved for GGML's RoPE: `Some(n)` for llama `attn_q`/`attn_k`.
    pub fn permuted_heads(&self, info: &GgufTensorInfo) -> Option<usize> {
        if self.arch != "llama" {
            return None;
        }
        if info.name.contains(".attn_q.") {
            Some(self.n_head)
        } else if info.name.contains(".attn_k.") {
            Some(self.n_kv)
        } else {
            None
        }
    }

    /// Whether a tensor's bytes are in HF row order as stored (so its blocks can be used
    /// as they are): everything except llama's `attn_q`/`attn_k`.
    pub fn rows_in_hf_order(&self, info: &GgufTensorInfo) -> bool {
        self.permuted_heads(info).is_none()
    }

    /// What the file adds to a tensor's HF values: `1.0` for Gemma 3's RMSNorm weights
    /// (llama.cpp's `Gemma3Model.modify_tensors` stores `w + 1`, since the HF norm multiplies
    /// by `1 + w`; transformers' GGUF loader subtracts it back), else `0.0`.
    pub fn stored_shift(&self, info: &GgufTensorInfo) -> f32 {
        if self.arch == "gemma3" && info.name.ends_with("norm.weight") { 1.0 } else { 0.0 }
    }

    /// The tensor's values in HF layout (row-major `[out, in]`, HF row order, Gemma norms
    /// shifted back: `stored - 1` in f32 as transformers computes it), from its stored bytes.
    pub fn to_f32(&self, info: &GgufTensorInfo, bytes: &[u8]) -> Result<Vec<f32>> {
        let mut v = dequantize(info, bytes)?;
        let shift = self.stored_shift(info);
        if shift != 0.0 {
            v.iter_mut().for_each(|x| *x -= shift);
        }
        match self.permuted_heads(info) {
            Some(h) => unpermute_rows(&info.name, v, &info.shape(), h),
            None => Ok(v),
        }
    }

    /// `config.json` of the HF checkpoint (same values as the reference converter's).
    pub fn config(&self, torch_dtype: &str) -> Result<serde_json::Value> {
        if self.arch == "gemma3" {
            return self.gemma3_config(torch_dtype);
        }
        let g = &self.gguf;
        let a = &self.arch;
        let key = |k: &str| format!("{a}.{k}");
        let hidden = g.meta_u64(&key("embedding_length"))?;
        let layers = g.meta_u64(&key("block_count"))?;
        let eps = g.meta_f64(&key("attention.layer_norm_rms_epsilon"))?;
        // the f32 value's shortest decimal form, as numpy's str(np.float32(x)) gives
        let eps: f64 = format!("{}", eps as f32).parse().unwrap_or(eps);
        let vocab = self.vocab_rows()?;
        let tied = !self.contains("lm_head.weight");
        let head_dim = match g.meta(&key("rope.dimension_count")) {
            Some(v) => v.as_u64().unwrap_or(hidden / self.n_head as u64),
            None => hidden / self.n_head as u64,
        };
        let opt = |k: &str| g.meta(k).and_then(|v| v.as_u64());
        let mut cfg = serde_json::json!({
            "architectures": [if a == "llama" { "LlamaForCausalLM" } else { "Qwen2ForCausalLM" }],
            "model_type": a,
            "hidden_size": hidden,
            "intermediate_size": g.meta_u64(&key("feed_forward_length"))?,
            "num_hidden_layers": layers,
            "num_attention_heads": self.n_head,
            "num_key_value_heads": self.n_kv,
            "head_dim": head_dim,
            "hidden_act": "silu",
            "rms_norm_eps": eps,
            "rope_theta": g.meta_f64(&key("rope.freq_base"))?,
            "rope_scaling": null,
            "max_position_embeddings": g.meta_u64(&key("context_length"))?,
            "vocab_size": vocab,
            "tie_word_embeddings": tied,
            "bos_token_id": opt("tokenizer.ggml.bos_token_id"),
            "eos_token_id": opt("tokenizer.ggml.eos_token_id"),
            "pad_token_id": opt("tokenizer.ggml.padding_token_id"),
            "torch_dtype": torch_dtype,
            "attention_dropout": 0.0,
            "initializer_range": 0.02,
            "use_cache": true,
        });
        let m = cfg.as_object_mut().expect("object");
        if a == "llama" {
            m.insert("attention_bias".into(), false.into());
            m.insert("mlp_bias".into(), false.into());
            m.insert("pretraining_tp".into(), 1.into());
        } else {
            m.insert("use_sliding_window".into(), false.into());
            m.insert("sliding_window".into(), serde_json::Value::Null);
            m.insert("max_window_layers".into(), layers.into());
        }
        m.insert(
            "_source".into(),
            serde_json::json!({
                "gguf_file": self.gguf.file.rsplit('/').next().unwrap_or(&self.gguf.file),
                "gguf_general_name": g.meta("general.name").and_then(|v| v.as_str()),
                "gguf_file_type": opt("general.file_type"),
                "converted_by": format!("gllm convert (dequantize -> {torch_dtype})"),
            }),
        );
        Ok(cfg)
    }

    /// `Gemma3TextConfig` from `gemma3.*` metadata, with what llama.cpp's `LLM_ARCH_GEMMA3`
    /// assumes where the file says nothing (`src/llama-model.cpp`): sliding-window layers
    /// with RoPE base 10000 and every 6th layer global (`set_swa_pattern(6)`), and
    /// `query_pre_attn_scalar` = `attention.key_length` (its attention scale is
    /// `1/sqrt(n_embd_head_k)` except for the 27B model, which it recognises by its 62 layers,
    /// where it is `1/sqrt(hidden / heads)`). Softcapping and rope scaling
    /// keys are carried over so the model can refuse them. `_gguf_norm_shift` tells the model
    /// that the file's norm weights are `1 + w` ([`Self::stored_shift`]).
    fn gemma3_config(&self, torch_dtype: &str) -> Result<serde_json::Value> {
        let g = &self.gguf;
        let key = |k: &str| format!("gemma3.{k}");
        let hidden = g.meta_u64(&key("embedding_length"))?;
        let layers = g.meta_u64(&key("block_count"))?;
        let eps = g.meta_f64(&key("attention.layer_norm_rms_epsilon"))?;
        let eps: f64 = format!("{}", eps as f32).parse().unwrap_or(eps);
        // Optional keys: absent is a default, present with the wrong type is an error.
        let typed = |k: &str, want: &str| self.bad(&format!("{k} is not {want}"));
        let opt = |k: &str| -> Result<Option<u64>> {
            g.meta(k).map(|v| v.as_u64().ok_or_else(|| typed(k, "an unsigned integer"))).transpose()
        };
        let optf = |k: &str| -> Result<Option<f64>> {
            let k = key(k);
            g.meta(&k).map(|v| v.as_f64().ok_or_else(|| typed(&k, "a number"))).transpose()
        };
        let head_dim = opt(&key("attention.key_length"))?.unwrap_or(hidden / self.n_head as u64);
        if let Some(v) = opt(&key("attention.value_length"))? {
            if v != head_dim {
                return Err(self.bad(&format!("value_length {v} differs from key_length {head_dim}")));
            }
        }
        let vocab = self.vocab_rows()?;
        let pre_attn = if layers == 62 { hidden as f64 / self.n_head as f64 } else { head_dim as f64 };
        let scaling_key = key("rope.scaling.type");
        let rope_scaling = match g.meta(&scaling_key).map(|v| v.as_str().ok_or_else(|| typed(&scaling_key, "a string"))).transpose()? {
            None | Some("none") => serde_json::Value::Null,
            Some(t) => serde_json::json!({ "rope_type": t, "factor": optf("rope.scaling.factor")? }),
        };
        Ok(serde_json::json!({
            "architectures": ["Gemma3ForCausalLM"],
            "model_type": "gemma3_text",
            "hidden_size": hidden,
            "intermediate_size": g.meta_u64(&key("feed_forward_length"))?,
            "num_hidden_layers": layers,
            "num_attention_heads": self.n_head,
            "num_key_value_heads": self.n_kv,
            "head_dim": head_dim,
            "hidden_activation": "gelu_pytorch_tanh",
            "rms_norm_eps": eps,
            "rope_theta": optf("rope.freq_base")?.unwrap_or(1_000_000.0),
            "rope_local_base_freq": 10_000.0,
            "rope_scaling": rope_scaling,
            "max_position_embeddings": g.meta_u64(&key("context_length"))?,
            "sliding_window": opt(&key("attention.sliding_window"))?.unwrap_or(4096),
            "sliding_window_pattern": 6,
            "query_pre_attn_scalar": pre_attn,
            "final_logit_softcapping": optf("final_logit_softcapping")?,
            "attn_logit_softcapping": optf("attn_logit_softcapping")?,
            "vocab_size": vocab,
            "tie_word_embeddings": !self.contains("lm_head.weight"),
            "bos_token_id": opt("tokenizer.ggml.bos_token_id")?,
            "eos_token_id": opt("tokenizer.ggml.eos_token_id")?,
            "pad_token_id": opt("tokenizer.ggml.padding_token_id")?.unwrap_or(0),
            "torch_dtype": torch_dtype,
            "_gguf_norm_shift": 1.0,
        }))
    }

    /// Rows of `token_embd` (the vocabulary size).
    fn vocab_rows(&self) -> Result<usize> {
        let t = self.tensor("model.embed_tokens.weight")?;
        t.shape().first().copied().ok_or_else(|| self.bad(&format!("{} has no dimensions", t.name)))
    }

    fn bad(&self, msg: &str) -> Error {
        Error::Format { format: "gguf", file: self.gguf.file.clone(), msg: msg.to_string() }
    }

    /// Generation stops after any of these ids: the GGUF's EOS, plus Qwen2's
    /// `<|endoftext|>` (151643) as in Qwen2.5's `generation_config.json`, plus Gemma 3's
    /// `<end_of_turn>` (as google/gemma-3-270m's `generation_config.json`, `[1, 106]`, and
    /// llama.cpp, which ends generation on it).
    pub fn eos_token_ids(&self) -> Vec<u64> {
        let mut eos: Vec<u64> = self
            .gguf
            .meta("tokenizer.ggml.eos_token_id")
            .and_then(|v| v.as_u64())
            .into_iter()
            .collect();
        if self.arch == "qwen2" && !eos.contains(&151643) {
            eos.push(151643);
        }
        if self.arch == "gemma3" {
            let tokens = self.gguf.meta("tokenizer.ggml.tokens").and_then(|v| v.as_array()).and_then(|a| a.as_strings());
            if let Some(i) = tokens.and_then(|t| t.iter().position(|s| s == "<end_of_turn>")) {
                if !eos.contains(&(i as u64)) {
                    eos.push(i as u64);
                }
            }
        }
        eos
    }

    pub fn generation_config(&self) -> serde_json::Value {
        let opt = |k: &str| self.gguf.meta(k).and_then(|v| v.as_u64());
        serde_json::json!({
            "bos_token_id": opt("tokenizer.ggml.bos_token_id"),
            "eos_token_id": self.eos_token_ids(),
            "pad_token_id": opt("tokenizer.ggml.padding_token_id"),
            "do_sample": false,
        })
    }
}

/// The block format of a GGUF type, if [`crate::quant`] handles it.
pub fn quant_format(t: GgmlType) -> Option<QuantFormat> {
    Some(match t {
        GgmlType::Q8_0 => QuantFormat::Q8_0,
        GgmlType::Q4_0 => QuantFormat::Q4_0,
        GgmlType::Q4_1 => QuantFormat::Q4_1,
        GgmlType::Q5_0 => QuantFormat::Q5_0,
        GgmlType::Q4_K => QuantFormat::Q4K,
        GgmlType::Q6_K => QuantFormat::Q6K,
        GgmlType::Q5_1 => QuantFormat::Q5_1,
        GgmlType::Q5_K => QuantFormat::Q5K,
        GgmlType::Q3_K => QuantFormat::Q3K,
        GgmlType::Q2_K => QuantFormat::Q2K,
        GgmlType::IQ4_NL => QuantFormat::IQ4NL,
        _ => return None,
    })
}

/// A tensor's stored bytes as f32 values, in storage order (F32, F16, BF16 here; block
/// formats through [`crate::quant::dequantize`]).
pub fn dequantize(info: &GgufTensorInfo, bytes: &[u8]) -> Result<Vec<f32>> {
    if bytes.len() as u64 != info.n_bytes {
        return Err(Error::TensorMismatch {
            name: info.name.clone(),
            expected: format!("{} bytes", info.n_bytes),
            got: format!("{} bytes", bytes.len()),
        });
    }
    let n = usize::try_from(info.n_elems())
        .map_err(|_| Error::Input(format!("tensor {} is too large", info.name)))?;
    Ok(match info.ggml_type {
        GgmlType::F32 => bytes
            .chunks_exact(4)
            .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
            .collect(),
        GgmlType::F16 => bytes
            .chunks_exact(2)
            .map(|c| half::f16::from_le_bytes([c[0], c[1]]).to_f32())
            .collect(),
        GgmlType::BF16 => bytes
            .chunks_exact(2)
            .map(|c| half::bf16::from_le_bytes([c[0], c[1]]).to_f32())
            .collect(),
        t => match quant_format(t) {
            Some(f) => quant::dequantize(f, bytes, n)?,
            None => {
                return Err(Error::TensorMismatch {
                    name: info.name.clone(),
                    expected: "F32, F16, BF16, Q8_0, Q4_0, Q4_1, Q5_0, Q5_1, Q2_K, Q3_K, Q4_K, Q5_K, Q6_K or IQ4_NL".into(),
                    got: t.name(),
                })
            }
        },
    })
}

/// Undoes llama.cpp's `permute` of q/k rows (`convert_hf_to_gguf.py`): within each head the
/// GGUF row `2i + j` (i < head_dim/2, j ∈ {0,1}) is HF row `j·head_dim/2 + i`, so HF's
/// `rotate_half` RoPE applies. The same as transformers' `reverse_permute_weights`.
pub fn unpermute_rows(name: &str, v: Vec<f32>, shape: &[usize], n_head: usize) -> Result<Vec<f32>> {
    let rows = shape.first().copied().unwrap_or(0);
    let cols: usize = shape.iter().skip(1).product();
    if n_head == 0 || rows % (2 * n_head) != 0 || v.len() != rows * cols {
        return Err(Error::TensorMismatch {
            name: name.to_string(),
            expected: format!("rows divisible by 2 × {n_head} heads"),
            got: format!("{shape:?}"),
        });
    }
    let half = rows / n_head / 2;
    let mut out = vec![0f32; v.len()];
    for h in 0..n_head {
        for i in 0..half {
            for j in 0..2 {
                let src = (h * 2 * half + 2 * i + j) * cols;
                let dst = (h * 2 * half + j * half + i) * cols;
                out[dst..dst + cols].copy_from_slice(&v[src..src + cols]);
            }
        }
    }
    Ok(out)
}

/// Output dtype of `gllm convert`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ConvertDType {
    F16,
    F32,
}

impl std::str::FromStr for ConvertDType {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        match s {
            "f16" => Ok(Self::F16),
            "f32" => Ok(Self::F32),
            _ => Err(Error::Input(format!("dtype `{s}`: expected f16 or f32"))),
        }
    }
}

/// `gllm convert`: writes `model.safetensors`, `config.json`, `generation_config.json`,
/// `tokenizer.json`, `tokenizer_config.json` and `chat_template.jinja` into `out`.
/// Tensors are dequantised one at a time while the file is written, so memory stays at
/// about one tensor.
#[cfg(not(target_arch = "wasm32"))]
pub fn convert(
    gguf_path: &std::path::Path,
    out: &std::path::Path,
    dtype: ConvertDType,
) -> Result<ConvertSummary> {
    use std::io::{Read, Seek, SeekFrom};

    let dir = gguf_path.parent().unwrap_or(std::path::Path::new("."));
    let fname = gguf_path
        .file_name()
        .and_then(|f| f.to_str())
        .ok_or_else(|| Error::Input("bad GGUF path".into()))?;
    let src = super::FileSource::new(dir);
    let gguf = pollster::block_on(GgufFile::read(&src, fname))?;
    let model = GgufModel::new(gguf)?;
    if !CONVERT_ARCHS.contains(&model.arch.as_str()) {
        return Err(Error::Input(format!(
            "gllm convert writes llama and qwen2 models; {} loads straight from the GGUF (gllm generate --model FILE.gguf)",
            model.arch
        )));
    }
    // Everything that can fail is checked before the file is written.
    for (hf, i) in &model.names {
        let t = &model.gguf.tensors[*i];
        if !matches!(t.ggml_type, GgmlType::F32 | GgmlType::F16 | GgmlType::BF16)
            && quant_format(t.ggml_type).is_none()
        {
            return Err(Error::TensorMismatch {
                name: hf.clone(),
                expected: "a supported tensor type".into(),
                got: t.ggml_type.name(),
            });
        }
    }
    let tok = crate::tokenizer::gguf::GgufTokenizer::from_gguf(&model.gguf)?;
    let io = |e: std::io::Error| Error::Io {
        file: out.display().to_string(),
        msg: e.to_string(),
    };
    std::fs::create_dir_all(out).map_err(io)?;

    let failure: std::cell::RefCell<Option<Error>> = std::cell::RefCell::new(None);
    let file = std::cell::RefCell::new(std::fs::File::open(gguf_path).map_err(|e| Error::Io {
        file: fname.into(),
        msg: e.to_string(),
    })?);
    struct Lazy<'a> {
        model: &'a GgufModel,
        info: &'a GgufTensorInfo,
        shape: Vec<usize>,
        dtype: ConvertDType,
        file: &'a std::cell::RefCell<std::fs::File>,
        failure: &'a std::cell::RefCell<Option<Error>>,
    }
    impl Lazy<'_> {
        fn bytes(&self) -> Result<Vec<u8>> {
            let mut f = self.file.borrow_mut();
            let mut buf = vec![0u8; self.info.n_bytes as usize];
            f.seek(SeekFrom::Start(self.info.start))
                .and_then(|_| f.read_exact(&mut buf))
                .map_err(|e| Error::Io {
                    file: self.info.name.clone(),
                    msg: e.to_string(),
                })?;
            let v = self.model.to_f32(self.info, &buf)?;
            Ok(match self.dtype {
                ConvertDType::F32 => v.iter().flat_map(|x| x.to_le_bytes()).collect(),
                ConvertDType::F16 => v
                    .iter()
                    .flat_map(|&x| half::f16::from_f32(x).to_le_bytes())
                    .collect(),
            })
        }
    }
    impl safetensors::View for Lazy<'_> {
        fn dtype(&self) -> safetensors::Dtype {
            match self.dtype {
                ConvertDType::F16 => safetensors::Dtype::F16,
                ConvertDType::F32 => safetensors::Dtype::F32,
            }
        }
        fn shape(&self) -> &[usize] {
            &self.shape
        }
        fn data(&self) -> std::borrow::Cow<'_, [u8]> {
            match self.bytes() {
                Ok(b) => b.into(),
                Err(e) => {
                    self.failure.borrow_mut().get_or_insert(e);
                    vec![0u8; self.data_len()].into()
                }
            }
        }
        fn data_len(&self) -> usize {
            self.info.n_elems() as usize
                * if self.dtype == ConvertDType::F16 {
                    2
                } else {
                    4
                }
        }
    }
    let views: Vec<(String, Lazy)> = model
        .names
        .iter()
        .map(|(hf, i)| {
            let info = &model.gguf.tensors[*i];
            (
                hf.clone(),
                Lazy {
                    model: &model,
                    info,
                    shape: info.shape(),
                    dtype,
                    file: &file,
                    failure: &failure,
                },
            )
        })
        .collect();
    let st_path = out.join("model.safetensors");
    let meta = std::collections::HashMap::from([("format".to_string(), "pt".to_string())]);
    safetensors::serialize_to_file(views, Some(meta), &st_path).map_err(|e| Error::Io {
        file: st_path.display().to_string(),
        msg: e.to_string(),
    })?;
    if let Some(e) = failure.into_inner() {
        let _ = std::fs::remove_file(&st_path);
        return Err(e);
    }

    let torch_dtype = if dtype == ConvertDType::F16 {
        "float16"
    } else {
        "float32"
    };
    let write = |name: &str, text: String| std::fs::write(out.join(name), text).map_err(io);
    write(
        "config.json",
        serde_json::to_string_pretty(&model.config(torch_dtype)?).expect("json"),
    )?;
    write(
        "generation_config.json",
        serde_json::to_string_pretty(&model.generation_config()).expect("json"),
    )?;
    write("tokenizer.json", tok.tokenizer_json()?)?;
    write(
        "tokenizer_config.json",
        serde_json::to_string_pretty(&tok.tokenizer_config(&model.gguf)).expect("json"),
    )?;
    if let Some(t) = &tok.chat_template {
        write("chat_template.jinja", t.clone())?;
    }
    Ok(ConvertSummary {
        tensors: model.names.len(),
        tied: !model.contains("lm_head.weight"),
        arch: model.arch.clone(),
    })
}

/// What [`convert`] wrote.
#[derive(Debug, Clone)]
pub struct ConvertSummary {
    pub tensors: usize,
    pub tied: bool,
    pub arch: String,
}
