//! A plain CPU forward pass of a Llama-family decoder (Llama, Qwen2 bias, Qwen3 q/k norm),
//! built from the other reference functions, for testing the GPU model on tiny
//! random-weight checkpoints.

use std::collections::HashMap;

use crate::kernels::attention::AttentionShape;
use crate::models::llama::LlamaConfig;

/// Logits `[ids.len(), vocab]` of the whole sequence `ids` (one pass, causal). `w` maps
/// HF checkpoint names to f32 data.
pub fn forward(c: &LlamaConfig, w: &HashMap<String, Vec<f32>>, ids: &[u32]) -> Vec<f32> {
    let (hid, d) = (c.hidden_size, c.head_dim());
    let (heads, kvh) = (c.num_attention_heads, c.kv_heads());
    let eps = c.rms_norm_eps as f32;
    let inv = c.rope_inv_freq().expect("valid config");
    let g = |n: &str| -> &[f32] { w.get(n).unwrap_or_else(|| panic!("missing {n}")) };
    let opt = |n: &str| w.get(n).map(|v| v.as_slice());
    let emb = g("model.embed_tokens.weight");
    let mut x: Vec<f32> = ids.iter().flat_map(|&i| emb[i as usize * hid..(i as usize + 1) * hid].to_vec()).collect();
    let shape = AttentionShape { heads, kv_heads: kvh, head_dim: d, causal: true, scale: 1.0 / (d as f32).sqrt(), window: 0 };
    let n = ids.len();
    for l in 0..c.num_hidden_layers {
        let p = format!("model.layers.{l}");
        let h = super::rms_norm(&x, g(&format!("{p}.input_layernorm.weight")), hid, eps);
        let lin = |name: &str, x: &[f32], k: usize| {
            super::linear(x, g(&format!("{p}.{name}.weight")), opt(&format!("{p}.{name}.bias")), k)
        };
        let mut q = lin("self_attn.q_proj", &h, hid);
        let mut k = lin("self_attn.k_proj", &h, hid);
        let v = lin("self_attn.v_proj", &h, hid);
        if let (Some(qn), Some(kn)) = (opt(&format!("{p}.self_attn.q_norm.weight")), opt(&format!("{p}.self_attn.k_norm.weight"))) {
            q = super::rms_norm(&q, qn, d, eps);
            k = super::rms_norm(&k, kn, d, eps);
        }
        let q = super::rope(&q, &inv, 0, heads, d);
        let k = super::rope(&k, &inv, 0, kvh, d);
        let mask = vec![1u32; n];
        let a = super::attention(&q, &k, &v, &mask, 1, shape);
        let o = lin("self_attn.o_proj", &a, heads * d);
        x = super::add(&x, &o);
        let h = super::rms_norm(&x, g(&format!("{p}.post_attention_layernorm.weight")), hid, eps);
        let gate = lin("mlp.gate_proj", &h, hid);
        let up = lin("mlp.up_proj", &h, hid);
        let act: Vec<f32> = super::silu(&gate).iter().zip(&up).map(|(a, b)| a * b).collect();
        let m = lin("mlp.down_proj", &act, c.intermediate_size);
        x = super::add(&x, &m);
    }
    let h = super::rms_norm(&x, g("model.norm.weight"), hid, eps);
    let head = opt("lm_head.weight").unwrap_or(emb);
    super::linear(&h, head, None, hid)
}

/// A random-weight checkpoint of `c`: `model.safetensors` bytes with F16 tensors (uniform
/// in ±`scale`, norms around 1) and the same values as f32 by name, for the CPU reference.
pub fn random_checkpoint(c: &LlamaConfig, seed: u64, scale: f32) -> (Vec<u8>, HashMap<String, Vec<f32>>) {
    use crate::loader::safetensors::{serialize, StDType};
    let mut rng = super::rng::Rng::new(seed);
    let mut values = HashMap::new();
    let mut tensors = Vec::new();
    for (name, shape) in crate::models::llama::checkpoint_shapes(c) {
        let n: usize = shape.iter().product();
        let norm = name.ends_with("norm.weight");
        let v: Vec<f32> = (0..n)
            .map(|_| {
                let x = if norm { 1.0 + rng.uniform(0.2) } else { rng.uniform(scale) };
                half::f16::from_f32(x).to_f32()
            })
            .collect();
        let bytes: Vec<u8> = v.iter().flat_map(|x| half::f16::from_f32(*x).to_le_bytes()).collect();
        tensors.push((name.clone(), shape, bytes));
        values.insert(name, v);
    }
    let refs: Vec<(&str, StDType, &[usize], &[u8])> =
        tensors.iter().map(|(n, s, b)| (n.as_str(), StDType::F16, s.as_slice(), b.as_slice())).collect();
    (serialize(&refs), values)
}
