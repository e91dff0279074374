//! The CPU backend ([`Gpu::cpu`]): the kernels of the BERT encoder, pooling, normalisation
//! and the vector index, run on the host.
//!
//! There is no second model implementation. `BertModel`, `Embedder`, `Reranker` and
//! `SearchIndex` run unchanged: tensors live in host memory, and each kernel wrapper in
//! `kernels/`, after its own shape and dtype checks, calls the function here with the same
//! name instead of recording a dispatch ([`Encoder::host`](crate::gpu::Encoder)). The hot
//! loops are in [`kernels`] (SIMD128 in wasm, auto-vectorised natively); the rest follow the
//! CPU references in `crate::reference`. Ops without a CPU kernel return
//! [`Error::Unsupported`].
//!
//! Single-threaded: wasm threads need a nightly build-std toolchain (atomics), and the
//! package is built on stable Rust.

pub mod kernels;

use crate::error::{Error, Result};
use crate::gpu::{DType, Gpu, GpuTensor};
use crate::kernels::activation::ActivationKey;
use crate::kernels::attention::AttentionShape;
use crate::kernels::quant::{QFormat, QMatrix};
use crate::quant::QuantFormat;

/// What [`Gpu::cpu`] reports as its adapter.
#[cfg(all(target_arch = "wasm32", target_feature = "simd128"))]
pub const DESCRIPTION: &str = "CPU backend (wasm SIMD128, single thread)";
#[cfg(all(target_arch = "wasm32", not(target_feature = "simd128")))]
pub const DESCRIPTION: &str = "CPU backend (wasm, no SIMD, single thread)";
#[cfg(not(target_arch = "wasm32"))]
pub const DESCRIPTION: &str = "CPU backend (native, single thread)";

/// `y = x · wᵀ + bias` with f32 or f16 `w` `[n, k]` (checked by `matmul::linear`).
pub fn linear(gpu: &Gpu, x: &GpuTensor, w: &GpuTensor, bias: Option<&GpuTensor>) -> Result<GpuTensor> {
    let (n, k) = (w.shape()[0], w.shape()[1]);
    let m = x.rows();
    let mut shape = x.shape().to_vec();
    *shape.last_mut().expect("checked rank") = n;
    let y = gpu.alloc(&shape, DType::F32)?;
    {
        let (xr, wr) = (x.host_read()?, w.host_read()?);
        let br = bias.map(|b| b.host_read()).transpose()?;
        let mut yw = y.host_write()?;
        let b = br.as_ref().map(|b| b.f32());
        match w.dtype() {
            DType::F16 => kernels::linear_f16(xr.f32(), wr.u16(), b, yw.f32(), m, n, k),
            _ => kernels::linear_f32(xr.f32(), wr.f32(), b, yw.f32(), m, n, k),
        }
    }
    Ok(y)
}

/// `y = x · wᵀ + bias` for a [`QMatrix`]: plain f32 / f16, q8_0 decoded in the SIMD inner
/// loop, and the other GGUF block formats one weight row at a time (the row's blocks decoded
/// by the CPU reference into a scratch row, then dotted with every input row). AWQ is
/// [`Error::Unsupported`].
pub fn qlinear(gpu: &Gpu, x: &GpuTensor, w: &QMatrix, bias: Option<&GpuTensor>) -> Result<GpuTensor> {
    let fmt = match w.format {
        QFormat::DenseF32 | QFormat::DenseF16 => return linear(gpu, x, w.body(), bias),
        QFormat::Gguf(f) => f,
        QFormat::Awq => return Err(Error::Unsupported { op: "qlinear (AWQ weights)" }),
    };
    let (n, k, m) = (w.rows, w.cols, x.rows());
    let mut shape = x.shape().to_vec();
    *shape.last_mut().expect("checked rank") = n;
    let y = gpu.alloc(&shape, DType::F32)?;
    {
        let (xr, body, scales) = (x.host_read()?, w.body().host_read()?, w.scales().host_read()?);
        let br = bias.map(|b| b.host_read()).transpose()?;
        let mut yw = y.host_write()?;
        let b = br.as_ref().map(|b| b.f32());
        let per_row = k / fmt.block_elems();
        let (words, d) = (fmt.body_words(), scales.u16());
        let body = body.u32();
        if body.len() < n * per_row * words || (fmt.split_scale() && d.len() < n * per_row) {
            return Err(Error::param("qlinear", format!("{} body or scales shorter than the matrix", fmt.name())));
        }
        let (x, out) = (xr.f32(), yw.f32());
        if fmt == QuantFormat::Q8_0 {
            let qs: &[i8] = bytemuck::cast_slice(&body[..n * k / 4]);
            kernels::linear_q8_0(x, qs, &d[..n * k / 32], b, out, m, n, k);
            drop(yw);
            return Ok(y);
        }
        let mut blocks = Vec::with_capacity(per_row * fmt.block_bytes());
        for j in 0..n {
            blocks.clear();
            for blk in 0..per_row {
                let i = j * per_row + blk;
                let body = bytemuck::cast_slice::<u32, u8>(&body[i * words..(i + 1) * words]);
                let scale = d.get(i).map(|h| h.to_le_bytes());
                match (fmt.split_scale(), fmt.scale_offset()) {
                    (false, _) => blocks.extend_from_slice(body),
                    (true, 0) => blocks.extend(scale.into_iter().flatten().chain(body.iter().copied())),
                    (true, _) => blocks.extend(body.iter().copied().chain(scale.into_iter().flatten())),
                }
            }
            let row = crate::quant::dequantize(fmt, &blocks, k)?;
            for i in 0..m {
                out[i * n + j] = x[i * k..(i + 1) * k].iter().zip(&row).map(|(a, b)| a * b).sum::<f32>() + b.map_or(0.0, |b| b[j]);
            }
        }
    }
    Ok(y)
}

/// Quantize-on-load of a slice of rows (checked by `quantize::quantize_rows`): `src`'s
/// values (f32, or raw f16 / bf16 words) quantized by the CPU reference quantizer, written
/// in the GPU layout from block `block0` (even) of `dst`.
pub fn quantize_rows(src: &GpuTensor, kind: crate::kernels::quantize::SrcKind, dst: &QMatrix, format: QuantFormat, block0: usize) -> Result<()> {
    use crate::kernels::quantize::SrcKind;
    let values: Vec<f32> = {
        let r = src.host_read()?;
        match kind {
            SrcKind::F32 => r.f32().to_vec(),
            SrcKind::F16 => r.u16().iter().map(|&h| half::f16::from_bits(h).to_f32()).collect(),
            SrcKind::BF16 => r.u16().iter().map(|&h| half::bf16::from_bits(h).to_f32()).collect(),
        }
    };
    let relaid = crate::quant::relayout(format, &crate::quant::quantize(format, &values)?)?;
    let words = format.body_words();
    let mut body = dst.body().host_write()?;
    body.u32()[block0 * words..block0 * words + relaid.body.len()].copy_from_slice(&relaid.body);
    if !relaid.scales.is_empty() {
        let mut scales = dst.scales().host_write()?;
        scales.u32()[block0 / 2..block0 / 2 + relaid.scales.len()].copy_from_slice(&relaid.scales);
    }
    Ok(())
}

/// `out[r] (+)= table[ids[r]]`; ids outside the table give zero rows (as on the GPU).
pub fn gather(ids: &GpuTensor, table: &GpuTensor, out: &GpuTensor, accumulate: bool) -> Result<()> {
    let (vocab, dim) = (table.shape()[0], table.shape()[1]);
    let (ir, tr) = (ids.host_read()?, table.host_read()?);
    let mut ow = out.host_write()?;
    let o = ow.f32();
    let f16 = table.dtype() == DType::F16;
    let (tf, th) = if f16 { (&[][..], tr.u16()) } else { (tr.f32(), &[][..]) };
    for (r, &id) in ir.u32().iter().enumerate() {
        let row = &mut o[r * dim..(r + 1) * dim];
        if !accumulate {
            row.fill(0.0);
        }
        let id = id as usize;
        if id >= vocab {
            continue;
        }
        if f16 {
            for (a, &h) in row.iter_mut().zip(&th[id * dim..(id + 1) * dim]) {
                *a += half::f16::from_bits(h).to_f32();
            }
        } else {
            for (a, &v) in row.iter_mut().zip(&tf[id * dim..(id + 1) * dim]) {
                *a += v;
            }
        }
    }
    Ok(())
}

/// The normalisations of `norm.rs` over rows of `n`.
pub enum Norm<'a> {
    /// `(x − mean) / sqrt(var + eps) · gamma + beta`.
    Layer { gamma: &'a GpuTensor, beta: &'a GpuTensor },
    /// `x · rsqrt(mean(x²) + eps) · gamma`.
    Rms { gamma: &'a GpuTensor },
    /// `sum = x + r` (written to `sum`), then RMSNorm of `sum`.
    AddRms { gamma: &'a GpuTensor, r: &'a GpuTensor, sum: &'a GpuTensor },
    /// `x / max(‖x‖₂, eps)`.
    L2,
}

/// Runs a normalisation of `x` into `out` (same shape).
pub fn norm(kind: Norm, x: &GpuTensor, out: &GpuTensor, eps: f32) -> Result<()> {
    let n = x.last_dim();
    let xr = x.host_read()?;
    let mut ow = out.host_write()?;
    let (x, o) = (xr.f32(), ow.f32());
    match kind {
        Norm::Layer { gamma, beta } => {
            let (g, b) = (gamma.host_read()?, beta.host_read()?);
            kernels::layer_norm(x, g.f32(), b.f32(), o, n, eps);
        }
        Norm::Rms { gamma } => rms_rows(x, gamma.host_read()?.f32(), o, n, eps),
        Norm::AddRms { gamma, r, sum } => {
            let rr = r.host_read()?;
            let mut sw = sum.host_write()?;
            let s = sw.f32();
            for ((s, a), b) in s.iter_mut().zip(x).zip(rr.f32()) {
                *s = a + b;
            }
            rms_rows(s, gamma.host_read()?.f32(), o, n, eps);
        }
        Norm::L2 => {
            for (row, out) in x.chunks_exact(n).zip(o.chunks_exact_mut(n)) {
                let norm = row.iter().map(|v| v * v).sum::<f32>().sqrt().max(eps);
                for (o, v) in out.iter_mut().zip(row) {
                    *o = v / norm;
                }
            }
        }
    }
    Ok(())
}

fn rms_rows(x: &[f32], gamma: &[f32], out: &mut [f32], n: usize, eps: f32) {
    for (row, o) in x.chunks_exact(n).zip(out.chunks_exact_mut(n)) {
        let ms = row.iter().map(|v| v * v).sum::<f32>() / n as f32;
        let inv = 1.0 / (ms + eps).sqrt();
        for ((o, v), g) in o.iter_mut().zip(row).zip(gamma) {
            *o = v * inv * g;
        }
    }
}

/// `out = f(a[, b])` element by element: the ops of `activation.rs` (`arg`: the f32 bits of
/// `Scale`'s factor).
pub fn elementwise(op: ActivationKey, arg: u32, a: &GpuTensor, b: Option<&GpuTensor>, out: &GpuTensor) -> Result<()> {
    let ar = a.host_read()?;
    let br = b.map(|b| b.host_read()).transpose()?;
    let mut ow = out.host_write()?;
    let o = ow.f32();
    o.copy_from_slice(ar.f32());
    let b = br.as_ref().map(|b| b.f32()).unwrap_or(&[]);
    let gelu_tanh = |x: f32| 0.5 * x * (1.0 + ((2.0 / std::f32::consts::PI).sqrt() * (x + 0.044715 * x * x * x)).tanh());
    match op {
        ActivationKey::Gelu => kernels::gelu_inplace(o),
        ActivationKey::Tanh => kernels::tanh_inplace(o),
        ActivationKey::Silu => o.iter_mut().for_each(|v| *v /= 1.0 + (-*v).exp()),
        ActivationKey::Add => o.iter_mut().zip(b).for_each(|(v, b)| *v += b),
        ActivationKey::SwiGlu => o.iter_mut().zip(b).for_each(|(v, b)| *v = *v / (1.0 + (-*v).exp()) * b),
        ActivationKey::GegluTanh => o.iter_mut().zip(b).for_each(|(v, b)| *v = gelu_tanh(*v) * b),
        ActivationKey::Scale => o.iter_mut().for_each(|v| *v *= f32::from_bits(arg)),
        ActivationKey::SwiGluPacked | ActivationKey::GegluTanhPacked => {
            return Err(Error::param("cpu", "a packed GLU goes through `glu_packed`"));
        }
    }
    Ok(())
}

/// `act(gate) · up` of a packed `[rows, 2h]` gate/up product into `out` `[rows, h]` (checked
/// by `activation::glu_packed`).
pub fn glu_packed(op: ActivationKey, a: &GpuTensor, out: &GpuTensor) -> Result<()> {
    let ar = a.host_read()?;
    let mut ow = out.host_write()?;
    let o = ow.f32();
    let h = out.last_dim();
    let gelu_tanh = |x: f32| 0.5 * x * (1.0 + ((2.0 / std::f32::consts::PI).sqrt() * (x + 0.044715 * x * x * x)).tanh());
    for (row, src) in o.chunks_exact_mut(h).zip(ar.f32().chunks_exact(2 * h)) {
        let (g, u) = src.split_at(h);
        for ((v, g), u) in row.iter_mut().zip(g).zip(u) {
            *v = match op {
                ActivationKey::GegluTanhPacked => gelu_tanh(*g) * u,
                _ => *g / (1.0 + (-*g).exp()) * u,
            };
        }
    }
    Ok(())
}

/// RoPE (`rotate_half`) of `x` `[rows, heads·d]` in place (checked by `rope::rope_batched`):
/// row `r` at position `state[1] + r` (`r % seq` for `seq` > 0), angles as
/// `reference::rope` computes them.
pub fn rope(x: &GpuTensor, inv_freq: &GpuTensor, state: &GpuTensor, heads: usize, head_dim: usize, seq: usize) -> Result<()> {
    let pos0 = state.host_read()?.u32().get(1).copied().unwrap_or(0) as usize;
    let fr = inv_freq.host_read()?;
    let inv = fr.f32();
    let mut xw = x.host_write()?;
    let h = head_dim / 2;
    for (r, row) in xw.f32().chunks_exact_mut(heads * head_dim).enumerate() {
        let pos = pos0 + if seq > 0 { r % seq } else { r };
        for head in row.chunks_exact_mut(head_dim) {
            for i in 0..h {
                let (s, c) = ((pos as f32 * inv[i]) as f64).sin_cos();
                let (x0, x1) = (head[i] as f64, head[i + h] as f64);
                head[i] = (x0 * c - x1 * s) as f32;
                head[i + h] = (x1 * c + x0 * s) as f32;
            }
        }
    }
    Ok(())
}

/// Mean over unmasked tokens (`mask` given), the last unmasked token (`last`), or the first
/// token of `x` `[batch, seq, dim]`.
pub fn pool(x: &GpuTensor, mask: Option<&GpuTensor>, last: bool, out: &GpuTensor) -> Result<()> {
    let (batch, seq, dim) = (x.shape()[0], x.shape()[1], x.shape()[2]);
    let xr = x.host_read()?;
    let mr = mask.map(|m| m.host_read()).transpose()?;
    let mut ow = out.host_write()?;
    let (x, o) = (xr.f32(), ow.f32());
    for b in 0..batch {
        let row = &mut o[b * dim..(b + 1) * dim];
        row.fill(0.0);
        match &mr {
            None => row.copy_from_slice(&x[b * seq * dim..b * seq * dim + dim]),
            Some(m) if last => {
                let m = &m.u32()[b * seq..(b + 1) * seq];
                if let Some(t) = m.iter().rposition(|&v| v != 0) {
                    row.copy_from_slice(&x[(b * seq + t) * dim..(b * seq + t + 1) * dim]);
                }
            }
            Some(m) => {
                let m = &m.u32()[b * seq..(b + 1) * seq];
                let count = m.iter().filter(|&&v| v != 0).count();
                for (t, _) in m.iter().enumerate().filter(|(_, &v)| v != 0) {
                    for (a, v) in row.iter_mut().zip(&x[(b * seq + t) * dim..(b * seq + t + 1) * dim]) {
                        *a += v;
                    }
                }
                if count > 0 {
                    row.iter_mut().for_each(|v| *v /= count as f32);
                }
            }
        }
    }
    Ok(())
}

/// Attention without a KV cache (checked by `attention::attention`). Encoder self-attention
/// (bidirectional, no window, as many KV heads as query heads, q_len = kv_len) runs the
/// SIMD kernel; other shapes the f64 reference.
pub fn attention(q: &GpuTensor, k: &GpuTensor, v: &GpuTensor, mask: &GpuTensor, out: &GpuTensor, s: AttentionShape) -> Result<()> {
    let (batch, seq) = (q.shape()[0], q.shape()[1]);
    let (qr, kr, vr, mr) = (q.host_read()?, k.host_read()?, v.host_read()?, mask.host_read()?);
    let mut ow = out.host_write()?;
    let plain = !s.causal && s.window == 0 && s.kv_heads == s.heads && k.shape()[1] == seq && s.scale == 1.0 / (s.head_dim as f32).sqrt();
    if plain {
        kernels::attention(qr.f32(), kr.f32(), vr.f32(), mr.u32(), ow.f32(), batch, seq, s.heads, s.head_dim);
    } else {
        ow.f32().copy_from_slice(&crate::reference::attention::attention(qr.f32(), kr.f32(), vr.f32(), mr.u32(), batch, s));
    }
    Ok(())
}

// ---- the vector index (`kernels/search.rs`) -------------------------------------------

/// Sign bits of each row of `x` `[n, d]` into `out` `[n, ceil(d/32)]`.
pub fn binarize(x: &GpuTensor, out: &GpuTensor) -> Result<()> {
    let d = x.shape()[1];
    let bits = crate::reference::search::binarize(x.host_read()?.f32(), d);
    out.host_write()?.u32().copy_from_slice(&bits);
    Ok(())
}

/// `d − 2·hamming(q, code_i)` for the first `n` rows of `codes`.
pub fn hamming(q_bits: &GpuTensor, codes: &GpuTensor, n: usize, d: usize, out: &GpuTensor) -> Result<()> {
    let w = q_bits.numel();
    let (qr, cr) = (q_bits.host_read()?, codes.host_read()?);
    let s = crate::reference::search::hamming(qr.u32(), &cr.u32()[..n * w], d);
    out.host_write()?.f32().copy_from_slice(&s);
    Ok(())
}

/// Per-row int8 codes and scales of `x` `[n, d]`.
pub fn quantize_i8(x: &GpuTensor, codes: &GpuTensor, scales: &GpuTensor) -> Result<()> {
    let d = x.shape()[1];
    let (c, s) = crate::reference::search::quantize_i8(x.host_read()?.f32(), d);
    codes.host_write()?.u32().copy_from_slice(&c);
    scales.host_write()?.f32().copy_from_slice(&s);
    Ok(())
}

/// `x` f32 → f16 (round to nearest even, as `pack2x16float`).
pub fn to_f16(x: &GpuTensor, out: &GpuTensor) -> Result<()> {
    let xr = x.host_read()?;
    let mut ow = out.host_write()?;
    for (o, v) in ow.bytes().chunks_exact_mut(2).zip(xr.f32()) {
        o.copy_from_slice(&half::f16::from_f32(*v).to_le_bytes());
    }
    Ok(())
}

/// `q · x_i` for the first `n` rows of `x` (f32 or f16).
pub fn score(q: &GpuTensor, x: &GpuTensor, n: usize, out: &GpuTensor) -> Result<()> {
    let d = x.shape()[1];
    let (qr, xr) = (q.host_read()?, x.host_read()?);
    let mut ow = out.host_write()?;
    match x.dtype() {
        DType::F16 => {
            let h = xr.u16();
            for (i, o) in ow.f32().iter_mut().enumerate() {
                *o = h[i * d..(i + 1) * d].iter().zip(qr.f32()).map(|(&a, b)| half::f16::from_bits(a).to_f32() * b).sum();
            }
        }
        _ => kernels::dot_rows(qr.f32(), &xr.f32()[..n * d], ow.f32(), d),
    }
    Ok(())
}

/// Rows of a rescoring stage: exact f32 / f16 vectors, or int8 codes with scales.
pub enum RescoreRows<'a> {
    Exact(&'a GpuTensor),
    I8 { codes: &'a GpuTensor, scales: &'a GpuTensor },
}

/// `q · row(id)` for each id; ids at or past `rows` score -3e38 (as on the GPU).
pub fn rescore(q: &GpuTensor, x: RescoreRows, rows: usize, ids: &GpuTensor, out: &GpuTensor) -> Result<()> {
    let d = q.numel();
    let (qr, ir) = (q.host_read()?, ids.host_read()?);
    let (q, ids) = (qr.f32(), ir.u32());
    let mut ow = out.host_write()?;
    let o = ow.f32();
    match x {
        RescoreRows::Exact(x) => {
            let xr = x.host_read()?;
            let f16 = x.dtype() == DType::F16;
            for (o, &id) in o.iter_mut().zip(ids) {
                let i = id as usize;
                *o = if i >= rows {
                    -3e38
                } else if f16 {
                    xr.u16()[i * d..(i + 1) * d].iter().zip(q).map(|(&a, &b)| half::f16::from_bits(a).to_f32() as f64 * b as f64).sum::<f64>() as f32
                } else {
                    xr.f32()[i * d..(i + 1) * d].iter().zip(q).map(|(&a, &b)| a as f64 * b as f64).sum::<f64>() as f32
                };
            }
        }
        RescoreRows::I8 { codes, scales } => {
            let (cr, sr) = (codes.host_read()?, scales.host_read()?);
            let w = d.div_ceil(4);
            for (o, &id) in o.iter_mut().zip(ids) {
                let i = id as usize;
                *o = if i >= rows {
                    -3e38
                } else {
                    let row = crate::reference::search::unpack_i8(&cr.u32()[i * w..(i + 1) * w], d);
                    sr.f32()[i] * row.iter().zip(q).map(|(&c, &q)| c as f64 * q as f64).sum::<f64>() as f32
                };
            }
        }
    }
    Ok(())
}

/// The `k` best (score descending, id ascending) of `scores`, with ids (positions when
/// `ids` is `None`) into `out_scores` / `out_ids` `[k]`; past the end: id `u32::MAX`,
/// score -3e38.
pub fn topk(scores: &GpuTensor, ids: Option<&GpuTensor>, k: usize, out_scores: &GpuTensor, out_ids: &GpuTensor) -> Result<()> {
    let sr = scores.host_read()?;
    let ir = ids.map(|i| i.host_read()).transpose()?;
    let s = sr.f32();
    let mut v: Vec<(u32, f32)> = s.iter().enumerate().map(|(i, &sc)| (ir.as_ref().map_or(i as u32, |ids| ids.u32()[i]), sc)).collect();
    let order = |a: &(u32, f32), b: &(u32, f32)| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0));
    if v.len() > k {
        v.select_nth_unstable_by(k - 1, order);
        v.truncate(k);
    }
    v.sort_by(order);
    let (mut os, mut oi) = (out_scores.host_write()?, out_ids.host_write()?);
    for (j, (o_s, o_i)) in os.f32().iter_mut().zip(oi.u32().iter_mut()).enumerate() {
        (*o_i, *o_s) = v.get(j).copied().unwrap_or((u32::MAX, -3e38));
    }
    Ok(())
}
