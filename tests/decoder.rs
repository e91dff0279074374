//! Decoder kernels (RoPE, RoPE + KV-cache append, cached causal attention, SwiGLU,
//! sampling) against their CPU references on seeded random data with ragged sizes, and a
//! tiny random-weight Llama / Qwen2 / Qwen3 model (prefill logits and a recorded greedy
//! decode loop) against the CPU reference forward. Each test runs natively and in the
//! browser.

mod common;

use common::R;
use gllm_web::kernels::attention::{attention_cached_with, AttentionOptions, AttentionShape};
use gllm_web::kernels::sample::{sample, SamplingConfig};
use gllm_web::kernels::{activation, rope};
use gllm_web::loader::MemSource;
use gllm_web::models::llama::{KvCache, KvDType, LlamaConfig, LlamaModel};
use gllm_web::nn::VarBuilder;
use gllm_web::reference::{self as cpu, check::*, rng::Rng};
use gllm_web::{DType, Gpu, GpuTensor, LoadDType, U32Slot};

#[cfg(target_arch = "wasm32")]
wasm_bindgen_test::wasm_bindgen_test_configure!(run_in_browser);

gpu_tests! {
    rope_matches_cpu => rope_matches_cpu,
    rope_append_matches_cpu => rope_append_matches_cpu,
    kv_shift_matches_cpu => kv_shift_matches_cpu,
    kv_f16_without_shader_f16 => kv_f16_without_shader_f16,
    cached_attention_matches_cpu => cached_attention_matches_cpu,
    swiglu_matches_cpu => swiglu_matches_cpu,
    geglu_tanh_matches_cpu => geglu_tanh_matches_cpu,
    rope_batched_matches_cpu => rope_batched_matches_cpu,
    greedy_sample_matches_cpu => greedy_sample_matches_cpu,
    sampling_matches_cpu => sampling_matches_cpu,
    speculative_verify_matches_cpu => speculative_verify_matches_cpu,
    tiny_llama_matches_cpu => tiny_llama_matches_cpu,
    tiny_qwen2_matches_cpu => tiny_qwen2_matches_cpu,
    tiny_qwen3_matches_cpu => tiny_qwen3_matches_cpu,
}

// The CPU backend's RoPE and GLU kernels against the same references.
cpu_tests! {
    rope_matches_cpu => rope_matches_cpu,
    rope_batched_matches_cpu => rope_batched_matches_cpu,
    swiglu_matches_cpu => swiglu_matches_cpu,
    geglu_tanh_matches_cpu => geglu_tanh_matches_cpu,
}

/// RoPE tolerance: `rope.wgsl` computes sin/cos itself (range reduction and Cephes
/// polynomials, about 5e-7 absolute up to angle 40960) instead of WGSL's built-ins, which
/// only promise 2^-11 on [-π, π] (SwiftShader's were off by 2e-4); times |x| up to 2.
const ROPE_TOL: Tol = Tol::Close { abs: 3e-6, rel: 1e-5 };

fn inv_freq(d: usize, theta: f32) -> Vec<f32> {
    (0..d / 2).map(|i| 1.0 / theta.powf((2 * i) as f32 / d as f32)).collect()
}

async fn rope_matches_cpu(gpu: Gpu) -> R {
    let mut rng = Rng::new(11);
    for (rows, heads, d, pos0) in [(5usize, 3usize, 64usize, 0u32), (1, 7, 18, 1234), (13, 2, 128, 7)] {
        let x = rng.vec(rows * heads * d, 2.0);
        let inv = inv_freq(d, 10000.0);
        let t = gpu.upload_f32(&x, &[rows, heads * d])?;
        let state = gpu.upload_u32(&[0, pos0, 0, 0], &[4])?;
        let f = gpu.upload_f32(&inv, &[d / 2])?;
        let mut enc = gpu.encoder();
        rope::rope(&mut enc, &t, &f, &state, heads, d)?;
        enc.submit()?;
        let want = cpu::rope(&x, &inv, pos0 as usize, heads, d);
        assert_close(&format!("rope {rows}x{heads}x{d}@{pos0}"), &gpu.readback_f32(&t).await?, &want, ROPE_TOL)?;
    }
    Ok(())
}

/// An encoder's `[batch * seq]` rows: every sequence starts again at position `state[1]`.
async fn rope_batched_matches_cpu(gpu: Gpu) -> R {
    let mut rng = Rng::new(15);
    for (batch, seq, heads, d, pos0) in [(3usize, 7usize, 3usize, 256usize, 0u32), (2, 13, 1, 18, 5)] {
        let x = rng.vec(batch * seq * heads * d, 2.0);
        let inv = inv_freq(d, 1_000_000.0);
        let t = gpu.upload_f32(&x, &[batch * seq, heads * d])?;
        let state = gpu.upload_u32(&[0, pos0, 0, 0], &[4])?;
        let f = gpu.upload_f32(&inv, &[d / 2])?;
        let mut enc = gpu.encoder();
        rope::rope_batched(&mut enc, &t, &f, &state, heads, d, seq)?;
        enc.submit()?;
        let want: Vec<f32> = x.chunks(seq * heads * d).flat_map(|s| cpu::rope(s, &inv, pos0 as usize, heads, d)).collect();
        assert_close(&format!("rope_batched {batch}x{seq}x{heads}x{d}@{pos0}"), &gpu.readback_f32(&t).await?, &want, ROPE_TOL)?;
    }
    Ok(())
}

/// A context shift: cache rows dropped, the rows after them moved down with their keys
/// rotated back. Against the CPU reference on ragged shapes, and the identity it relies on:
/// a key of position p shifted by `drop` is the key of position p − drop.
/// Uploads `data` as a cache tensor of `kv`'s dtype; returns it and the values it holds
/// (rounded to f16 for an f16 cache).
fn upload_cache(gpu: &Gpu, data: &[f32], shape: &[usize], kv: KvDType) -> Result<(GpuTensor, Vec<f32>), gllm_web::Error> {
    match kv {
        KvDType::F32 => Ok((gpu.upload_f32(data, shape)?, data.to_vec())),
        KvDType::F16 => {
            let h: Vec<half::f16> = data.iter().map(|&x| half::f16::from_f32(x)).collect();
            let held = h.iter().map(|x| x.to_f32()).collect();
            Ok((gpu.upload_f16(&h, shape)?, held))
        }
    }
}

/// A cache tensor's values as f32.
async fn read_cache(gpu: &Gpu, t: &GpuTensor) -> Result<Vec<f32>, gllm_web::Error> {
    if t.dtype() == DType::F16 {
        return Ok(gpu.readback_f16(t).await?.into_iter().map(|x| x.to_f32()).collect());
    }
    gpu.readback_f32(t).await
}

async fn kv_shift_matches_cpu(gpu: Gpu) -> R {
    for kv in [KvDType::F32, KvDType::F16] {
        kv_shift_case(&gpu, kv).await?;
    }
    Ok(())
}

async fn kv_shift_case(gpu: &Gpu, kv: KvDType) -> R {
    let mut rng = Rng::new(21);
    let (rope_tol, copy_tol) = match kv {
        KvDType::F32 => (ROPE_TOL, F32_ELEMENTWISE),
        // Values are moved word for word: exact.
        KvDType::F16 => (F16_KV, Tol::Close { abs: 0.0, rel: 0.0 }),
    };
    for (kvh, d, cache, keep, drop, used) in [(2usize, 64usize, 40usize, 4usize, 18usize, 40usize), (3, 18, 29, 1, 5, 23), (1, 256, 9, 0, 4, 9)] {
        let w = kvh * d;
        let (k0, v0) = (rng.vec(cache * w, 1.0), rng.vec(cache * w, 1.0));
        let inv = inv_freq(d, 1e4);
        let (kc, k0) = upload_cache(gpu, &k0, &[cache, w], kv)?;
        let (vc, v0) = upload_cache(gpu, &v0, &[cache, w], kv)?;
        let f = gpu.upload_f32(&inv, &[d / 2])?;
        let mut enc = gpu.encoder();
        rope::kv_shift(&mut enc, &kc, &vc, &f, kvh, d, keep, drop, used)?;
        enc.submit()?;
        let (want_k, want_v) = cpu::kv_shift(&k0, &v0, &inv, kvh, d, keep, drop, used);
        let n = want_k.len();
        let name = format!("kv_shift {kv:?} {kvh}x{d} rows {keep}..{} of {used}", keep + drop);
        assert_close(&format!("{name} k"), &read_cache(gpu, &kc).await?[..n], &want_k, rope_tol)?;
        assert_close(&format!("{name} v"), &read_cache(gpu, &vc).await?[..n], &want_v, copy_tol)?;
        // raw keys rotated for positions 0..used, then shifted: those of positions keep..
        let raw = rng.vec(used * w, 1.0);
        let rotated = cpu::rope(&raw, &inv, 0, kvh, d);
        let (kc, _) = upload_cache(gpu, &rotated, &[used, w], kv)?;
        let (vc, _) = upload_cache(gpu, &raw, &[used, w], kv)?;
        let mut enc = gpu.encoder();
        rope::kv_shift(&mut enc, &kc, &vc, &f, kvh, d, keep, drop, used)?;
        enc.submit()?;
        let moved = &raw[(keep + drop) * w..];
        let want = cpu::rope(moved, &inv, keep, kvh, d);
        // f16: two roundings (the stored key, then the shifted one).
        let tol = if kv == KvDType::F16 { Tol::Close { abs: 2e-3, rel: 2e-3 } } else { ROPE_TOL };
        assert_close(&format!("{name}: shifted keys = keys at their new positions"), &read_cache(gpu, &kc).await?[keep * w..(used - drop) * w], &want, tol)?;
    }
    // bad ranges are errors
    let (kc, vc) = (gpu.alloc(&[8, 64], kv.dtype())?, gpu.alloc(&[8, 64], kv.dtype())?);
    let f = gpu.upload_f32(&inv_freq(64, 1e4), &[32])?;
    let mut enc = gpu.encoder();
    for (keep, drop, used) in [(4, 0, 8), (4, 5, 8), (0, 2, 9)] {
        if rope::kv_shift(&mut enc, &kc, &vc, &f, 1, 64, keep, drop, used).is_ok() {
            return Err(format!("kv_shift {keep}+{drop} of {used} accepted").into());
        }
    }
    // a k / v pair of different dtypes is a typed error
    let other = gpu.alloc(&[8, 64], if kv == KvDType::F16 { DType::F32 } else { DType::F16 })?;
    if rope::kv_shift(&mut enc, &kc, &other, &f, 1, 64, 0, 2, 8).is_ok() {
        return Err("kv_shift over mixed cache dtypes accepted".into());
    }
    Ok(())
}

async fn rope_append_matches_cpu(gpu: Gpu) -> R {
    for kv in [KvDType::F32, KvDType::F16] {
        rope_append_case(&gpu, kv).await?;
    }
    Ok(())
}

async fn rope_append_case(gpu: &Gpu, kv: KvDType) -> R {
    let mut rng = Rng::new(12);
    // (rows, heads, kv heads, head dim, position of row 0, cache rows): head_dim 18 has an
    // odd half (9), so a word's two elements pair with partners in different words; the
    // second case's last row falls past the cache and is dropped.
    for (rows, heads, kvh, d, pos0, cache) in [(3usize, 6usize, 2usize, 32usize, 5usize, 11usize), (4, 3, 3, 18, 9, 12), (2, 4, 1, 256, 0, 3)] {
        let (q, k, v) = (rng.vec(rows * heads * d, 1.0), rng.vec(rows * kvh * d, 1.0), rng.vec(rows * kvh * d, 1.0));
        let inv = inv_freq(d, 1e6);
        let kc0 = rng.vec(cache * kvh * d, 1.0);
        let vc0 = rng.vec(cache * kvh * d, 1.0);
        let (tq, tk, tv) = (gpu.upload_f32(&q, &[rows, heads * d])?, gpu.upload_f32(&k, &[rows, kvh * d])?, gpu.upload_f32(&v, &[rows, kvh * d])?);
        let (kc, kc0) = upload_cache(gpu, &kc0, &[cache, kvh * d], kv)?;
        let (vc, vc0) = upload_cache(gpu, &vc0, &[cache, kvh * d], kv)?;
        let state = gpu.upload_u32(&[0, pos0 as u32, 0, 0], &[4])?;
        let f = gpu.upload_f32(&inv, &[d / 2])?;
        let mut enc = gpu.encoder();
        rope::rope_append(&mut enc, &tq, &tk, &tv, &f, &state, &kc, &vc, heads, kvh, d)?;
        enc.submit()?;
        let name = format!("rope_append {kv:?} rows {rows} heads {heads}/{kvh}x{d} at {pos0} of {cache}");
        assert_close(&format!("{name} q"), &gpu.readback_f32(&tq).await?, &cpu::rope(&q, &inv, pos0, heads, d), ROPE_TOL)?;
        // The packed form (one q | k | v row per token, as a packed projection writes it)
        // writes the same cache words and the same rotated q.
        let w = (heads + 2 * kvh) * d;
        let mut qkv = Vec::with_capacity(rows * w);
        for r in 0..rows {
            qkv.extend_from_slice(&q[r * heads * d..(r + 1) * heads * d]);
            qkv.extend_from_slice(&k[r * kvh * d..(r + 1) * kvh * d]);
            qkv.extend_from_slice(&v[r * kvh * d..(r + 1) * kvh * d]);
        }
        let (kp, _) = upload_cache(gpu, &kc0, &[cache, kvh * d], kv)?;
        let (vp, _) = upload_cache(gpu, &vc0, &[cache, kvh * d], kv)?;
        let mut enc = gpu.encoder();
        let qp = rope::rope_append_packed(&mut enc, &gpu.upload_f32(&qkv, &[rows, w])?, &f, &state, &kp, &vp, heads, kvh, d)?;
        enc.submit()?;
        if gpu.readback_f32(&qp).await? != gpu.readback_f32(&tq).await? {
            return Err(format!("{name}: packed q differs").into());
        }
        if read_cache(gpu, &kp).await? != read_cache(gpu, &kc).await? || read_cache(gpu, &vp).await? != read_cache(gpu, &vc).await? {
            return Err(format!("{name}: packed cache differs").into());
        }
        let mut want_k = kc0.clone();
        let mut want_v = vc0.clone();
        let w = kvh * d;
        let fit = rows.min(cache - pos0);
        want_k[pos0 * w..(pos0 + fit) * w].copy_from_slice(&cpu::rope(&k, &inv, pos0, kvh, d)[..fit * w]);
        want_v[pos0 * w..(pos0 + fit) * w].copy_from_slice(&v[..fit * w]);
        let (k_tol, v_tol) = match kv {
            KvDType::F32 => (ROPE_TOL, F32_ELEMENTWISE),
            KvDType::F16 => (F16_KV, Tol::Close { abs: 1e-7, rel: 1e-3 }),
        };
        assert_close(&format!("{name} k_cache"), &read_cache(gpu, &kc).await?, &want_k, k_tol)?;
        assert_close(&format!("{name} v_cache"), &read_cache(gpu, &vc).await?, &want_v, v_tol)?;
    }
    Ok(())
}

async fn cached_attention_matches_cpu(gpu: Gpu) -> R {
    for kv in [KvDType::F32, KvDType::F16] {
        cached_attention_case(&gpu, kv).await?;
    }
    Ok(())
}

/// The packed f16 cache (two halves per word, `pack2x16float` / `unpack2x16float`) on a
/// device without `shader-f16`, where it is not the default.
async fn kv_f16_without_shader_f16(_gpu: Gpu) -> R {
    let gpu = Gpu::with_options(gllm_web::GpuOptions { disable_f16: true, ..Default::default() }).await?;
    assert!(!gpu.caps().shader_f16);
    assert_eq!(KvDType::default_for(&gpu), KvDType::F32);
    rope_append_case(&gpu, KvDType::F16).await?;
    kv_shift_case(&gpu, KvDType::F16).await?;
    cached_attention_case(&gpu, KvDType::F16).await
}

async fn cached_attention_case(gpu: &Gpu, kv: KvDType) -> R {
    let mut rng = Rng::new(13);
    // (new queries, cached before, heads, kv heads, head dim, unused cache rows). q_len = 1
    // with head_dim % 4 == 0 is the split-K decode path (splits of 32 keys): one key, two
    // full splits, a ragged last split, head_dim 256 (2 key groups of the 128 threads) and 80
    // (6 groups, 8 idle threads), many empty splits, more than 64 and more than 128 splits
    // (the combine's loops); head_dim 37 takes the one-pass kernel. The last column is a
    // sliding window (Gemma 3's sliding layers: query at position p sees keys p - j < w):
    // prefill across the window's edge, decode with the edge inside a split, on a split
    // boundary, with whole splits before it, a window of one key, and one wider than the
    // cache; Gemma's head_dim 256 with a 512-key window over 600 cached keys.
    let cases = [
        (7usize, 0usize, 4usize, 2usize, 16usize, 5usize, 0usize),
        (3, 130, 2, 1, 40, 5, 0),
        (1, 70, 9, 3, 64, 5, 0),
        (1, 0, 2, 1, 8, 0, 0),
        (1, 63, 4, 4, 128, 1, 0),
        (1, 200, 4, 2, 37, 3, 0),
        (1, 129, 2, 2, 256, 64, 0),
        (1, 5, 3, 1, 64, 300, 0),
        (1, 100, 2, 1, 80, 7, 0),
        (1, 2100, 2, 1, 64, 10, 0),
        (1, 4200, 3, 1, 128, 40, 0),
        (7, 0, 4, 2, 16, 5, 3),
        (37, 90, 2, 1, 40, 5, 50),
        (1, 70, 9, 3, 64, 5, 33),
        (1, 95, 2, 1, 64, 5, 32),
        (1, 300, 4, 1, 64, 20, 70),
        (1, 200, 4, 2, 37, 3, 45),
        (1, 40, 2, 1, 8, 0, 1),
        (1, 5, 3, 1, 64, 300, 512),
        (1, 600, 4, 1, 256, 30, 512),
        (1, 2100, 2, 1, 64, 10, 512),
    ];
    for (q_len, past, heads, kvh, d, spare, window) in cases {
        let rows = past + q_len + spare;
        let s = AttentionShape { heads, kv_heads: kvh, head_dim: d, causal: true, scale: 1.0 / (d as f32).sqrt(), window };
        let q = rng.vec(q_len * heads * d, 1.0);
        let kc = rng.vec(rows * kvh * d, 1.0);
        let vc = rng.vec(rows * kvh * d, 1.0);
        let state = gpu.upload_u32(&[0, past as u32, 0, 0], &[4])?;
        // An f16 cache holds the values rounded to f16; the reference reads the same ones,
        // so the tolerance is the f32 one (summation order only).
        let tq = gpu.upload_f32(&q, &[q_len, heads * d])?;
        let (tk, kc) = upload_cache(gpu, &kc, &[rows, kvh * d], kv)?;
        let (tv, vc) = upload_cache(gpu, &vc, &[rows, kvh * d], kv)?;
        // Reference: the used rows only, as a contiguous causal attention of q_len over past + q_len.
        let used = (past + q_len) * kvh * d;
        let mask = vec![1u32; past + q_len];
        let want = cpu::attention(&q, &kc[..used], &vc[..used], &mask, 1, s);
        // Prefill (q_len > 1, or head_dim % 4 != 0) runs either kernel: per-query workgroups or
        // barrier-free (CPU adapters); single-token decode always runs split-K.
        for barrier_free in [false, true] {
            let mut enc = gpu.encoder();
            let out = attention_cached_with(&mut enc, &tq, &tk, &tv, &state, s, AttentionOptions { barrier_free: Some(barrier_free) })?;
            enc.submit()?;
            let what = format!("attention_cached {kv:?} barrier_free={barrier_free} q{q_len} past{past} window{window}");
            assert_close(&what, &gpu.readback_f32(&out).await?, &want, F32_REDUCTION)?;
        }
    }
    Ok(())
}

async fn swiglu_matches_cpu(gpu: Gpu) -> R {
    let mut rng = Rng::new(14);
    let n = 1000 + 37;
    let (g, u) = (rng.vec(n, 6.0), rng.vec(n, 3.0));
    let mut enc = gpu.encoder();
    let out = activation::swiglu(&mut enc, &gpu.upload_f32(&g, &[n])?, &gpu.upload_f32(&u, &[n])?)?;
    enc.submit()?;
    let want: Vec<f32> = cpu::silu(&g).iter().zip(&u).map(|(a, b)| a * b).collect();
    assert_close("swiglu", &gpu.readback_f32(&out).await?, &want, F32_ELEMENTWISE)?;
    Ok(())
}

/// Runs the sample kernel once; returns (token, state after).
async fn run_sample(gpu: &Gpu, logits: &[f32], seen: &[u32], cfg: &SamplingConfig, step: u32) -> Result<(u32, Vec<u32>), Box<dyn std::error::Error>> {
    let v = logits.len();
    let tl = gpu.upload_f32(logits, &[1, v])?;
    let tc = gpu.upload_u32(&cfg.words(), &[8])?;
    let ts = gpu.upload_u32(seen, &[v])?;
    let st = gpu.upload_u32(&[0, 10, step, 0], &[4])?;
    let mut enc = gpu.encoder();
    sample(&mut enc, &tl, &tc, &ts, &st, 3)?;
    let slot = U32Slot::new(gpu);
    let tok = enc.submit_read_u32(&st, &slot).await?;
    let state = gpu.readback_u32(&st).await?;
    let seen_after = gpu.readback_u32(&ts).await?;
    if seen_after[tok as usize] != 1 {
        return Err("sampled token not marked as seen".into());
    }
    Ok((tok, state))
}

async fn greedy_sample_matches_cpu(gpu: Gpu) -> R {
    let mut rng = Rng::new(15);
    // The argmax pre-pass takes blocks of 2048: one block, exactly one, one past, many.
    for v in [1usize, 300, 2048, 4097, 49152 + 17] {
        let mut logits = rng.vec(v, 10.0);
        if v > 300 {
            // Ties: the lowest index wins, as torch.argmax.
            logits[v - 3] = 50.0;
            logits[v - 2] = 50.0;
        }
        if v > 4096 {
            // A tie across blocks (neither index is in `seen`, so the penalty keeps it).
            logits[5] = 70.0;
            logits[v - 1] = 70.0;
        }
        let seen: Vec<u32> = (0..v).map(|i| (i % 3 == 0) as u32).collect();
        for penalty in [1.0f32, 1.3] {
            let cfg = SamplingConfig { repetition_penalty: penalty, ..Default::default() };
            let (tok, state) = run_sample(&gpu, &logits, &seen, &cfg, 0).await?;
            let seen_b: Vec<bool> = seen.iter().map(|&s| s != 0).collect();
            let want = cpu::sample::sample(&logits, &seen_b, &cfg, 0);
            if tok != want {
                return Err(format!("greedy vocab {v} penalty {penalty}: got {tok}, want {want}").into());
            }
            if state[..3] != [tok, 13, 1] {
                return Err(format!("state after sample {state:?}").into());
            }
        }
    }
    Ok(())
}

/// The verify step of speculative decoding against its CPU reference: the argmax of every
/// row (ragged vocabularies, not multiples of the 256-wide workgroup; exact ties go to the
/// lowest index; NaN never wins; a row of NaN gives 0) and the greedy acceptance written into
/// `out` and `state`, for drafts accepted in full, rejected at the first, and in the middle.
async fn speculative_verify_matches_cpu(gpu: Gpu) -> R {
    use gllm_web::kernels::speculative::verify;
    let mut rng = Rng::new(31);
    for (vocab, k) in [(257usize, 1usize), (1000, 4), (5003, 7), (49157, 8)] {
        let rows = k + 1;
        let mut logits = rng.vec(rows * vocab, 3.0);
        // A tie in row 0 (two equal maxima), a NaN in row 1, row k all NaN when k > 2.
        logits[3] = 50.0;
        logits[vocab - 2] = 50.0;
        if k > 1 {
            logits[vocab + 5] = f32::NAN;
        }
        if k > 2 {
            logits[k * vocab..].fill(f32::NAN);
        }
        let best = cpu::speculative::argmax_rows(&logits, vocab);
        for reject_at in [k, 0, k / 2] {
            // Drafts equal the argmaxes up to `reject_at`, then differ.
            let drafts: Vec<u32> = (0..k).map(|i| if i < reject_at { best[i] } else { (best[i] + 1) % vocab as u32 }).collect();
            let (a, next) = cpu::speculative::accept(&best, &drafts);
            let l = gpu.upload_f32(&logits, &[rows, vocab])?;
            let d = gpu.upload_u32(&drafts, &[k])?;
            let state = gpu.upload_u32(&[9, 100, 3, 0], &[4])?;
            let out = gpu.alloc(&[k + 2], gllm_web::DType::U32)?;
            let mut enc = gpu.encoder();
            verify(&mut enc, &l, &d, k, &state, &out)?;
            enc.submit()?;
            let got = gpu.readback_u32(&out).await?;
            let st = gpu.readback_u32(&state).await?;
            let mut want = vec![a as u32];
            want.extend(&best);
            if got != want || st != [next, 100 + a as u32 + 1, 4, 0] {
                return Err(format!("vocab {vocab} k {k} reject at {reject_at}: out {got:?} want {want:?}, state {st:?}").into());
            }
        }
        assert_eq!(best[0], 3, "ties go to the lowest index");
    }
    // Shapes are checked before dispatch.
    let l = gpu.upload_f32(&[0.0; 6], &[2, 3])?;
    let d = gpu.upload_u32(&[0, 0], &[2])?;
    let state = gpu.upload_u32(&[0; 4], &[4])?;
    let out = gpu.alloc(&[3], gllm_web::DType::U32)?;
    if verify(&mut gpu.encoder(), &l, &d, 1, &state, &out).is_ok() {
        return Err("a [1] drafts tensor of 2 words was accepted".into());
    }
    Ok(())
}

async fn sampling_matches_cpu(gpu: Gpu) -> R {
    let mut rng = Rng::new(16);
    let v = 5003;
    let logits = rng.vec(v, 4.0);
    // 20011 scores (10 blocks of the pre-pass): a peaked distribution (a few tokens far
    // above the rest), and one of 9 distinct values (ties at every block's candidate cut).
    let big = 20011;
    let mut peaked = rng.vec(big, 4.0);
    for i in [5, 4099, 4100, 12000, 20010] {
        peaked[i] = 14.0 + (i % 7) as f32 * 0.3;
    }
    let tied: Vec<f32> = rng.vec(big, 4.0).iter().map(|x| x.round()).collect();
    // How the sampler chose (state[3]): 1 from the per-block candidates, 2 over the whole
    // vocabulary (see sample.wgsl).
    let (cands, whole) = (1u32, 2u32);
    let cases = [
        (&logits, SamplingConfig { temperature: 1.0, seed: 1, ..Default::default() }, whole),
        (&logits, SamplingConfig { temperature: 0.7, top_k: 40, seed: 2, ..Default::default() }, cands),
        (&logits, SamplingConfig { temperature: 1.3, top_p: 0.9, seed: 3, ..Default::default() }, whole),
        (&logits, SamplingConfig { temperature: 0.8, top_k: 50, top_p: 0.95, repetition_penalty: 1.2, seed: 4 }, cands),
        (&logits, SamplingConfig { temperature: 1.0, top_k: 1, seed: 5, ..Default::default() }, cands),
        (&logits, SamplingConfig { temperature: 1.0, top_k: 100, seed: 6, ..Default::default() }, cands),
        // More than the 3 blocks × 64 candidates.
        (&logits, SamplingConfig { temperature: 1.0, top_k: 300, seed: 7, ..Default::default() }, whole),
        (&peaked, SamplingConfig { temperature: 1.0, top_p: 0.9, seed: 8, ..Default::default() }, cands),
        (&peaked, SamplingConfig { temperature: 0.5, top_k: 3, top_p: 0.8, repetition_penalty: 1.3, seed: 9 }, cands),
        (&tied, SamplingConfig { temperature: 1.0, top_k: 40, seed: 10, ..Default::default() }, whole),
        (&tied, SamplingConfig { temperature: 0.9, top_p: 0.5, seed: 11, ..Default::default() }, whole),
    ];
    for (logits, cfg, path) in cases {
        let v = logits.len();
        let seen: Vec<u32> = (0..v).map(|i| (i % 7 == 0) as u32).collect();
        let seen_b: Vec<bool> = seen.iter().map(|&s| s != 0).collect();
        let scores = cpu::sample::penalized(logits, &seen_b, cfg.repetition_penalty);
        let keep = cpu::sample::kept(&scores, &cfg);
        for step in 0..6u32 {
            let (tok, state) = run_sample(&gpu, logits, &seen, &cfg, step).await?;
            let want = cpu::sample::sample(logits, &seen_b, &cfg, step);
            if state[3] != path {
                return Err(format!("{cfg:?} step {step}: chosen by path {}, expected {path}", state[3]).into());
            }
            if !keep[tok as usize] {
                return Err(format!("{cfg:?} step {step}: token {tok} is outside the top-k/top-p set").into());
            }
            if tok != want {
                // Only acceptable when the draw falls within float rounding of a CDF boundary.
                let m = scores.iter().cloned().fold(f32::MIN, f32::max) as f64;
                let w: Vec<f64> =
                    (0..v).map(|i| if keep[i] { ((scores[i] as f64 - m) / cfg.temperature as f64).exp() } else { 0.0 }).collect();
                let z: f64 = w.iter().sum();
                let below: f64 = w[..tok.min(want) as usize + 1].iter().sum::<f64>() / z;
                let u = cpu::sample::uniform(cfg.seed, step);
                if (below - u).abs() > 1e-5 {
                    return Err(format!("{cfg:?} step {step}: got {tok}, want {want} (u {u}, cdf {below})").into());
                }
            }
        }
    }
    let seen: Vec<u32> = (0..v).map(|i| (i % 7 == 0) as u32).collect();
    let seen_b: Vec<bool> = seen.iter().map(|&s| s != 0).collect();
    // top_k = 1 at any temperature is greedy.
    let cfg = SamplingConfig { temperature: 2.0, top_k: 1, seed: 9, ..Default::default() };
    let (tok, _) = run_sample(&gpu, &logits, &seen, &cfg, 0).await?;
    let greedy = cpu::sample::sample(&logits, &seen_b, &SamplingConfig::default(), 0);
    if tok != greedy {
        return Err(format!("top_k 1 gave {tok}, greedy {greedy}").into());
    }
    Ok(())
}

fn tiny_config(model_type: &str) -> LlamaConfig {
    serde_json::from_value(serde_json::json!({
        "model_type": model_type,
        "vocab_size": 301,
        "hidden_size": 96,
        "intermediate_size": 136,
        "num_hidden_layers": 2,
        "num_attention_heads": 6,
        "num_key_value_heads": 2,
        "head_dim": 16,
        "rms_norm_eps": 1e-6,
        "rope_theta": 10000.0,
        "max_position_embeddings": 64,
        "tie_word_embeddings": model_type == "llama",
    }))
    .expect("tiny config")
}

/// Prefill logits of a prompt and 6 recorded greedy decode steps of a tiny random model
/// against the CPU reference forward (which recomputes the whole sequence each step).
/// A tiny random decoder against the CPU reference, loaded both ways: `LlamaModel::load`
/// (q/k/v and gate/up apart) and `load_for_generation` (each stacked into one product), and
/// run both ways: with this adapter's kernels (a CPU adapter's unfused decode layer) and
/// with the GPU kernels forced (`GpuOptions::gpu_kernels`: the fused one-token products, 7
/// dispatches a packed layer: SPEC/generation.md). Fused, the packed step has 4 dispatches
/// a layer fewer (2 of q/k/v, 1 of gate/up, the separate GLU); unfused 3 (the GLU stays);
/// Qwen3 keeps q/k/v apart for its q/k norms, so 2 and 1 there.
async fn tiny_model_matches_cpu(gpu: Gpu, model_type: &str, dtype: LoadDType) -> R {
    let mut gpus = vec![gpu.clone()];
    if gpu.caps().is_cpu {
        gpus.push(Gpu::with_options(gllm_web::GpuOptions { gpu_kernels: true, ..Default::default() }).await?);
    }
    let layers = tiny_config(model_type).num_hidden_layers;
    for gpu in gpus {
        let fused = !gpu.caps().is_cpu;
        let mut counts = Vec::new();
        for pack in [false, true] {
            counts.push(tiny_model_case(&gpu, model_type, dtype, pack).await?);
        }
        let saved = layers * match (model_type, fused) {
            ("qwen3", true) => 2,
            ("qwen3", false) => 1,
            (_, true) => 4,
            (_, false) => 3,
        };
        let kind = if fused { "fused" } else { "unfused" };
        log!("{model_type} {dtype:?} {kind}: decode step {} dispatches apart, {} packed ({layers} layers)", counts[0], counts[1]);
        if counts[0] != counts[1] + saved {
            return Err(format!("{model_type} {kind}: decode dispatches {} apart, {} packed: want {saved} fewer", counts[0], counts[1]).into());
        }
    }
    Ok(())
}

/// Returns the dispatches of one recorded decode step.
async fn tiny_model_case(gpu: &Gpu, model_type: &str, dtype: LoadDType, pack: bool) -> Result<usize, Box<dyn std::error::Error>> {
    let gpu = gpu.clone();
    let c = tiny_config(model_type);
    let (bytes, weights) = cpu::llama::random_checkpoint(&c, 21, 0.25);
    let src = MemSource::new().with("model.safetensors", bytes);
    let ck = gllm_web::loader::Weights::open(&src, None).await?;
    let roles = gllm_web::models::llama::WEIGHT_ROLES;
    let w = gllm_web::nn::load_weights(&gpu, &src, &ck, dtype, roles, Default::default(), &|_| {}, &|| false).await?;
    let vb = VarBuilder::new(&gpu, &w, dtype);
    let model = if pack { LlamaModel::load_for_generation(&vb, c.clone()).await? } else { LlamaModel::load(&vb, c.clone()).await? };
    let model_type = &format!("{model_type}{}", if pack { " packed" } else { "" });

    let prompt = [3u32, 250, 17, 17, 99, 4, 300];
    let n = prompt.len();
    let cache = KvCache::new(&gpu, &c, 20, KvDType::F32)?;
    let state = gpu.upload_u32(&[0, 0, 0, 0], &[4])?;
    let ids = gpu.upload_u32(&prompt, &[n])?;
    let mut enc = gpu.encoder();
    let logits = model.forward(&mut enc, &ids, &cache, &state, true)?;
    enc.submit()?;
    let got = gpu.readback_f32(&logits).await?;
    let want = cpu::llama::forward(&c, &weights, &prompt);
    // NMSE 1e-6: f32 math, plus the WGSL sin/cos precision in RoPE (see ROPE_TOL).
    assert_close(&format!("{model_type} prefill logits"), &got, &want, Tol::Nmse(1e-6))?;

    // Prefill again (state[1] = 0) with sampling, then replay the recorded decode step.
    let cfg = gpu.upload_u32(&SamplingConfig::default().words(), &[8])?;
    let seen = gpu.upload_u32(&vec![0; c.vocab_size], &[c.vocab_size])?;
    let slot = U32Slot::new(&gpu);
    let mut enc = gpu.encoder();
    let logits = model.forward(&mut enc, &ids, &cache, &state, false)?;
    sample(&mut enc, &logits, &cfg, &seen, &state, n)?;
    let mut tokens = vec![enc.submit_read_u32(&state, &slot).await?];
    let mut enc = gpu.encoder();
    let input = state.narrow_rows(1)?;
    let logits = model.forward(&mut enc, &input, &cache, &state, false)?;
    sample(&mut enc, &logits, &cfg, &seen, &state, 1)?;
    let decode = enc.record()?;
    let dispatches = decode.dispatch_count();
    for _ in 0..6 {
        tokens.push(decode.submit_read_u32(&state, &slot).await?);
    }
    let mut seq = prompt.to_vec();
    for (i, &t) in tokens.iter().enumerate() {
        let l = cpu::llama::forward(&c, &weights, &seq);
        let last = &l[(seq.len() - 1) * c.vocab_size..];
        let best = (0..c.vocab_size).max_by(|&a, &b| last[a].total_cmp(&last[b]).then(b.cmp(&a))).unwrap_or(0) as u32;
        if t != best {
            let mut sorted = last.to_vec();
            sorted.sort_by(|a, b| b.total_cmp(a));
            return Err(format!("{model_type} step {i}: GPU token {t}, CPU {best} (margin {})", sorted[0] - sorted[1]).into());
        }
        seq.push(t);
    }
    let st = gpu.readback_u32(&state).await?;
    if st[1] as usize != n + 6 {
        return Err(format!("cache position {} after {} tokens", st[1], n + 6).into());
    }
    Ok(dispatches)
}

async fn tiny_llama_matches_cpu(gpu: Gpu) -> R {
    tiny_model_matches_cpu(gpu.clone(), "llama", LoadDType::F32).await?;
    tiny_model_matches_cpu(gpu, "llama", LoadDType::F16).await
}
async fn tiny_qwen2_matches_cpu(gpu: Gpu) -> R {
    tiny_model_matches_cpu(gpu, "qwen2", LoadDType::F16).await
}
async fn tiny_qwen3_matches_cpu(gpu: Gpu) -> R {
    tiny_model_matches_cpu(gpu, "qwen3", LoadDType::F32).await
}

/// Gemma's MLP gate: `gelu_tanh(gate) * up`, over the range where tanh saturates too.
async fn geglu_tanh_matches_cpu(gpu: Gpu) -> R {
    let mut rng = Rng::new(16);
    let n = 1000 + 37;
    let (mut g, u) = (rng.vec(n, 6.0), rng.vec(n, 3.0));
    g[0] = 30.0;
    g[1] = -30.0;
    let mut enc = gpu.encoder();
    let out = activation::geglu_tanh(&mut enc, &gpu.upload_f32(&g, &[n])?, &gpu.upload_f32(&u, &[n])?)?;
    enc.submit()?;
    // The hardware tanh: a few ulp of the product.
    assert_close("geglu_tanh", &gpu.readback_f32(&out).await?, &cpu::geglu_tanh(&g, &u), Tol::Close { abs: 1e-5, rel: 2e-5 })?;
    Ok(())
}
