//! GPU-vs-CPU tests for every kernel, on seeded random data with ragged sizes (not
//! multiples of the workgroup sizes). Each test runs natively and in the browser.

mod common;

use common::R;
use gllm_web::kernels::{activation, attention, embed, matmul, norm, pool, search};
use gllm_web::kernels::attention::AttentionShape;
use gllm_web::reference::{self as cpu, check::*, rng::Rng};
use gllm_web::{DType, Error, Gpu, GpuOptions};

#[cfg(target_arch = "wasm32")]
wasm_bindgen_test::wasm_bindgen_test_configure!(run_in_browser);

gpu_tests! {
    adapter_is_the_expected_one => adapter_is_the_expected_one,
    typed_readbacks_are_exact => typed_readbacks_are_exact,
    embedding_matches_cpu => embedding_matches_cpu,
    layer_norm_matches_cpu => layer_norm_matches_cpu,
    rms_norm_matches_cpu => rms_norm_matches_cpu,
    l2_normalize_matches_cpu => l2_normalize_matches_cpu,
    linear_f32_matches_cpu => linear_f32_matches_cpu,
    linear_f16_matches_cpu => linear_f16_matches_cpu,
    linear_f16_without_shader_f16 => linear_f16_without_shader_f16,
    activations_match_cpu => activations_match_cpu,
    large_grid_is_split => large_grid_is_split,
    attention_matches_cpu => attention_matches_cpu,
    attention_gqa_causal_matches_cpu => attention_gqa_causal_matches_cpu,
    attention_sliding_window_matches_cpu => attention_sliding_window_matches_cpu,
    pooling_matches_cpu => pooling_matches_cpu,
    op_list_in_one_submission => op_list_in_one_submission,
    bad_shapes_are_typed_errors => bad_shapes_are_typed_errors,
    caches_are_reused => caches_are_reused,
    released_buffers_wait_for_submit => released_buffers_wait_for_submit,
    search_kernels_match_cpu => search_kernels_match_cpu,
    tensors_over_the_binding_limit_bind_in_windows => tensors_over_the_binding_limit_bind_in_windows,
    mixed_devices_are_errors => mixed_devices_are_errors,
}

// The CPU backend's kernels against the same CPU references, shapes and tolerances.
cpu_tests! {
    typed_readbacks_are_exact => typed_readbacks_are_exact,
    embedding_matches_cpu => embedding_matches_cpu,
    layer_norm_matches_cpu => layer_norm_matches_cpu,
    rms_norm_matches_cpu => rms_norm_matches_cpu,
    l2_normalize_matches_cpu => l2_normalize_matches_cpu,
    linear_f32_matches_cpu => linear_f32_matches_cpu,
    linear_f16_matches_cpu => linear_f16_matches_cpu,
    activations_match_cpu => activations_match_cpu,
    attention_matches_cpu => attention_matches_cpu,
    attention_gqa_causal_matches_cpu => attention_gqa_causal_matches_cpu,
    attention_sliding_window_matches_cpu => attention_sliding_window_matches_cpu,
    pooling_matches_cpu => pooling_matches_cpu,
    bad_shapes_are_typed_errors => bad_shapes_are_typed_errors,
    search_kernels_match_cpu => search_kernels_match_cpu,
    host_allocation_failure_is_an_error => host_allocation_failure_is_an_error,
}

async fn adapter_is_the_expected_one(gpu: Gpu) -> R {
    let desc = common::adapter_description(&gpu).await;
    let c = gpu.caps();
    log!(
        "GPU adapter: {desc}; shader-f16 {}, subgroups {}, max binding {} MiB, max buffer {} MiB",
        c.shader_f16,
        c.subgroups,
        c.max_storage_buffer_binding_size >> 20,
        c.max_buffer_size >> 20
    );
    if let Some(want) = option_env!("GLLM_EXPECT_ADAPTER") {
        if !desc.to_lowercase().contains(&want.to_lowercase()) {
            return Err(format!("adapter `{desc}` is not the expected `{want}`").into());
        }
    }
    // The device must come with the adapter's own buffer limits, not the 128 MiB default.
    if c.max_storage_buffer_binding_size < 128 << 20 {
        return Err(format!("max_storage_buffer_binding_size {} below 128 MiB", c.max_storage_buffer_binding_size).into());
    }
    Ok(())
}

async fn typed_readbacks_are_exact(gpu: Gpu) -> R {
    // Values that an f32 cannot hold exactly: a u32 readback through f32 bits would fail.
    let u = [0u32, 1, 16_777_217, u32::MAX, 0xDEAD_BEEF, 7];
    let t = gpu.upload_u32(&u, &[6])?;
    assert_eq!(gpu.readback_u32(&t).await?, u);
    let i = [-1i32, i32::MIN, i32::MAX, 16_777_217, 0];
    let t = gpu.upload_i32(&i, &[5])?;
    assert_eq!(gpu.readback_i32(&t).await?, i);
    let pairs = [0x1234_5678u32, 0x9ABC_DEF0, u32::MAX, 1];
    let t = gpu.upload_u32(&pairs, &[2, 2])?;
    assert_eq!(gpu.readback_u64_pairs(&t).await?, [0x9ABC_DEF0_1234_5678u64, 0x1_FFFF_FFFF]);
    let h: Vec<half::f16> = [0.5f32, -3.25, 65504.0].iter().map(|&v| half::f16::from_f32(v)).collect();
    let t = gpu.upload_f16(&h, &[3])?;
    assert_eq!(gpu.readback_f16(&t).await?, h);
    // Reading an integer tensor as f32 is refused with a typed error.
    let t = gpu.upload_u32(&u, &[6])?;
    match gpu.readback_f32(&t).await {
        Err(Error::DType { got: DType::U32, .. }) => {}
        other => return Err(format!("readback_f32 of a U32 tensor gave {other:?}").into()),
    }
    match gpu.readback_u64_pairs(&gpu.upload_u32(&u, &[6])?).await {
        Err(Error::Shape { .. }) => {}
        other => return Err(format!("readback_u64_pairs of [6] gave {other:?}").into()),
    }
    Ok(())
}

async fn embedding_matches_cpu(gpu: Gpu) -> R {
    let mut rng = Rng::new(1);
    let (vocab, dim, n) = (50, 45, 37);
    let word = rng.vec(vocab * dim, 1.0);
    let pos = rng.vec(40 * dim, 1.0);
    let mut ids: Vec<u32> = (0..n).map(|_| rng.below(vocab as u32)).collect();
    ids[5] = 1000; // out of range: zero row
    let pos_ids: Vec<u32> = (0..n as u32).collect();
    let want = cpu::add(&cpu::embedding(&ids, &word, dim), &cpu::embedding(&pos_ids, &pos, dim));

    for f16 in [false, true] {
        let (word_t, pos_t, want) = if f16 {
            let round = |v: &[f32]| v.iter().map(|&x| half::f16::from_f32(x).to_f32()).collect::<Vec<_>>();
            let w = round(&word);
            let p = round(&pos);
            let want = cpu::add(&cpu::embedding(&ids, &w, dim), &cpu::embedding(&pos_ids, &p, dim));
            (gpu.upload_f32_as_f16(&word, &[vocab, dim])?, gpu.upload_f32_as_f16(&pos, &[40, dim])?, want)
        } else {
            (gpu.upload_f32(&word, &[vocab, dim])?, gpu.upload_f32(&pos, &[40, dim])?, want.clone())
        };
        let ids_t = gpu.upload_u32(&ids, &[n])?;
        let pos_ids_t = gpu.upload_u32(&pos_ids, &[n])?;
        let mut enc = gpu.encoder();
        let out = embed::embedding(&mut enc, &ids_t, &word_t)?;
        embed::embedding_add(&mut enc, &pos_ids_t, &pos_t, &out)?;
        enc.submit()?;
        let got = gpu.readback_f32(&out).await?;
        // A gather is exact.
        assert_close(&format!("embedding f16={f16}"), &got, &want, Tol::Close { abs: 0.0, rel: 0.0 })?;
        if got[5 * dim..6 * dim] != want[5 * dim..6 * dim] {
            return Err("out-of-range id".into());
        }
    }
    Ok(())
}

async fn layer_norm_matches_cpu(gpu: Gpu) -> R {
    let mut rng = Rng::new(2);
    // 70 rows: more than one workgroup of the barrier-free kernel.
    for (rows, n) in [(7, 383), (3, 1000), (5, 17), (70, 24)] {
        let x: Vec<f32> = rng.vec(rows * n, 3.0).iter().map(|v| v + 0.7).collect();
        let g = rng.vec(n, 1.0);
        let b = rng.vec(n, 1.0);
        let want = cpu::layer_norm(&x, &g, &b, n, 1e-12);
        let (x_t, g_t, b_t) = (gpu.upload_f32(&x, &[rows, n])?, gpu.upload_f32(&g, &[n])?, gpu.upload_f32(&b, &[n])?);
        // Both kernels: a workgroup per row, and one invocation per row (CPU adapters).
        for barrier_free in [false, true] {
            let mut enc = gpu.encoder();
            let out = norm::layer_norm_with(&mut enc, &x_t, &g_t, &b_t, 1e-12, Some(barrier_free))?;
            enc.submit()?;
            let what = format!("layer_norm barrier_free={barrier_free} {rows}x{n}");
            assert_close(&what, &gpu.readback_f32(&out).await?, &want, F32_REDUCTION)?;
        }
    }
    Ok(())
}

async fn rms_norm_matches_cpu(gpu: Gpu) -> R {
    let mut rng = Rng::new(3);
    for (rows, n) in [(9, 576), (2, 33), (1, 1537), (2, 2500)] {
        let x = rng.vec(rows * n, 2.0);
        let g = rng.vec(n, 1.0);
        let want = cpu::rms_norm(&x, &g, n, 1e-5);
        let mut enc = gpu.encoder();
        let out = norm::rms_norm(&mut enc, &gpu.upload_f32(&x, &[rows, n])?, &gpu.upload_f32(&g, &[n])?, 1e-5)?;
        enc.submit()?;
        assert_close(&format!("rms_norm {rows}x{n}"), &gpu.readback_f32(&out).await?, &want, F32_REDUCTION)?;
        // The fused residual step: (x + r, rms_norm(x + r)).
        let r = rng.vec(rows * n, 2.0);
        let sum: Vec<f32> = x.iter().zip(&r).map(|(a, b)| a + b).collect();
        let want = cpu::rms_norm(&sum, &g, n, 1e-5);
        let mut enc = gpu.encoder();
        let (gs, out) = norm::add_rms_norm(&mut enc, &gpu.upload_f32(&x, &[rows, n])?, &gpu.upload_f32(&r, &[rows, n])?, &gpu.upload_f32(&g, &[n])?, 1e-5)?;
        enc.submit()?;
        assert_close(&format!("add_rms_norm sum {rows}x{n}"), &gpu.readback_f32(&gs).await?, &sum, F32_ELEMENTWISE)?;
        assert_close(&format!("add_rms_norm {rows}x{n}"), &gpu.readback_f32(&out).await?, &want, F32_REDUCTION)?;
    }
    Ok(())
}

async fn l2_normalize_matches_cpu(gpu: Gpu) -> R {
    let mut rng = Rng::new(4);
    let (rows, n) = (5, 384);
    let mut x = rng.vec(rows * n, 1.0);
    x[n..2 * n].fill(0.0); // a zero row stays zero instead of NaN
    let want = cpu::l2_normalize(&x, n, 1e-12);
    let mut enc = gpu.encoder();
    let out = norm::l2_normalize(&mut enc, &gpu.upload_f32(&x, &[rows, n])?, 1e-12)?;
    enc.submit()?;
    assert_close("l2_normalize", &gpu.readback_f32(&out).await?, &want, F32_REDUCTION)?;
    Ok(())
}

/// (m, n, k, bias): matvec scalar, matvec vec4 with bias; then batched products (tiled and
/// barrier-free) with small m, ragged m/n/k (k % 4 != 0 takes the scalar barrier-free loop,
/// k % 8 == 0 its 16-byte f16 loads), with and without bias.
const LINEAR_SHAPES: [(usize, usize, usize, bool); 7] = [
    (1, 37, 45, false),
    (1, 65, 128, true),
    (3, 65, 128, true),
    (8, 19, 40, false),
    (70, 33, 47, false),
    (130, 129, 64, true),
    (9, 70, 200, true),
];

async fn linear_case(gpu: &Gpu, f16: bool, seed: u64) -> R {
    let mut rng = Rng::new(seed);
    for (m, n, k, has_bias) in LINEAR_SHAPES {
        let x = rng.vec(m * k, 1.0);
        let mut w = rng.vec(n * k, 0.5);
        let b = rng.vec(n, 0.5);
        let w_t = if f16 {
            w = w.iter().map(|&v| half::f16::from_f32(v).to_f32()).collect();
            gpu.upload_f32_as_f16(&w, &[n, k])?
        } else {
            gpu.upload_f32(&w, &[n, k])?
        };
        let want = cpu::linear(&x, &w, has_bias.then_some(&b[..]), k);
        let b_t = gpu.upload_f32(&b, &[n])?;
        let x_t = gpu.upload_f32(&x, &[m, k])?;
        // Both batched kernels: tiled (shared memory) and barrier-free (CPU adapters).
        for barrier_free in [false, true] {
            let mut enc = gpu.encoder();
            let opts = matmul::LinearOptions { barrier_free: Some(barrier_free) };
            let y = matmul::linear_with(&mut enc, &x_t, &w_t, has_bias.then_some(&b_t), opts)?;
            enc.submit()?;
            let tol = if f16 { F16_WEIGHTS } else { F32_REDUCTION };
            let what = format!("linear f16={f16} barrier_free={barrier_free} m={m} n={n} k={k}");
            assert_close(&what, &gpu.readback_f32(&y).await?, &want, tol)?;
        }
    }
    Ok(())
}

async fn linear_f32_matches_cpu(gpu: Gpu) -> R {
    linear_case(&gpu, false, 5).await
}

async fn linear_f16_matches_cpu(gpu: Gpu) -> R {
    log!("f16 weights read as WGSL f16: {}", gpu.caps().shader_f16);
    linear_case(&gpu, true, 6).await
}

/// The packed-word path for f16 weights, used where `shader-f16` is missing.
async fn linear_f16_without_shader_f16(_gpu: Gpu) -> R {
    let gpu = Gpu::with_options(GpuOptions { disable_f16: true, ..Default::default() }).await?;
    assert!(!gpu.caps().shader_f16);
    linear_case(&gpu, true, 7).await
}

async fn activations_match_cpu(gpu: Gpu) -> R {
    let mut rng = Rng::new(8);
    let n = 1000;
    let x = rng.vec(n, 6.0);
    let y = rng.vec(n, 6.0);
    let (x_t, y_t) = (gpu.upload_f32(&x, &[10, 100])?, gpu.upload_f32(&y, &[10, 100])?);
    let mut enc = gpu.encoder();
    let g = activation::gelu(&mut enc, &x_t)?;
    let s = activation::silu(&mut enc, &x_t)?;
    let a = activation::add(&mut enc, &x_t, &y_t)?;
    let t = activation::tanh(&mut enc, &x_t)?;
    let sc = activation::scale(&mut enc, &x_t, 27.712812)?;
    enc.submit()?;
    // GELU uses a polynomial erf (|err| < 1.5e-7), SiLU the hardware exp.
    assert_close("gelu", &gpu.readback_f32(&g).await?, &cpu::gelu(&x), Tol::Close { abs: 2e-6, rel: 1e-5 })?;
    assert_close("silu", &gpu.readback_f32(&s).await?, &cpu::silu(&x), F32_ELEMENTWISE)?;
    assert_close("add", &gpu.readback_f32(&a).await?, &cpu::add(&x, &y), Tol::Close { abs: 0.0, rel: 0.0 })?;
    assert_close("tanh", &gpu.readback_f32(&t).await?, &cpu::tanh(&x), F32_ELEMENTWISE)?;
    // One f32 multiply: exact.
    let want: Vec<f32> = x.iter().map(|v| v * 27.712812).collect();
    assert_close("scale", &gpu.readback_f32(&sc).await?, &want, Tol::Close { abs: 0.0, rel: 0.0 })?;
    Ok(())
}

/// More than 65535 workgroups: the dispatch is split over x and y.
async fn large_grid_is_split(gpu: Gpu) -> R {
    let n = 65_536 * 256 + 77;
    let mut rng = Rng::new(9);
    let x = rng.vec(n, 1.0);
    let y = rng.vec(n, 1.0);
    let mut enc = gpu.encoder();
    let a = activation::add(&mut enc, &gpu.upload_f32(&x, &[n])?, &gpu.upload_f32(&y, &[n])?)?;
    enc.submit()?;
    assert_close("add (split grid)", &gpu.readback_f32(&a).await?, &cpu::add(&x, &y), Tol::Close { abs: 0.0, rel: 0.0 })?;
    Ok(())
}

async fn attention_case(gpu: &Gpu, seed: u64, batch: usize, q_len: usize, kv_len: usize, s: AttentionShape, pad: &[usize]) -> R {
    let mut rng = Rng::new(seed);
    let (qw, kvw) = (s.heads * s.head_dim, s.kv_heads * s.head_dim);
    let q = rng.vec(batch * q_len * qw, 1.0);
    let k = rng.vec(batch * kv_len * kvw, 1.0);
    let v = rng.vec(batch * kv_len * kvw, 1.0);
    // pad[b] trailing keys of sequence b are padding.
    let mask: Vec<u32> = (0..batch).flat_map(|b| (0..kv_len).map(move |j| (j < kv_len - pad[b]) as u32)).collect();
    let want = cpu::attention(&q, &k, &v, &mask, batch, s);
    let q_t = gpu.upload_f32(&q, &[batch, q_len, qw])?;
    let k_t = gpu.upload_f32(&k, &[batch, kv_len, kvw])?;
    let v_t = gpu.upload_f32(&v, &[batch, kv_len, kvw])?;
    let mask_t = gpu.upload_u32(&mask, &[batch, kv_len])?;
    // Both kernels: the workgroup-per-query one and the barrier-free one (CPU adapters).
    for barrier_free in [false, true] {
        let mut enc = gpu.encoder();
        let opts = attention::AttentionOptions { barrier_free: Some(barrier_free) };
        let out = attention::attention_with(&mut enc, &q_t, &k_t, &v_t, &mask_t, s, opts)?;
        enc.submit()?;
        let got = gpu.readback_f32(&out).await?;
        assert_close(&format!("attention barrier_free={barrier_free} {s:?} q_len={q_len} kv_len={kv_len}"), &got, &want, F32_REDUCTION)?;
    }
    Ok(())
}

async fn attention_matches_cpu(gpu: Gpu) -> R {
    // 3 heads of 20, 70 keys (more than one 64-key tile), sequence 1 padded by 23 keys,
    // sequence 2 entirely padded (its output must be zeros).
    attention_case(&gpu, 10, 3, 5, 70, AttentionShape::bidirectional(3, 20), &[0, 23, 70]).await?;
    // head_dim 130 > 128: each thread owns up to 3 dims.
    attention_case(&gpu, 11, 1, 3, 9, AttentionShape::bidirectional(2, 130), &[2]).await
}

async fn attention_gqa_causal_matches_cpu(gpu: Gpu) -> R {
    let s = AttentionShape { heads: 4, kv_heads: 2, head_dim: 16, causal: true, scale: 0.25, window: 0 };
    // Prefill: q_len == kv_len.
    attention_case(&gpu, 12, 2, 9, 9, s, &[0, 0]).await?;
    // Decode-like: 2 new queries over 67 cached keys.
    attention_case(&gpu, 13, 1, 2, 67, s, &[0]).await
}

/// Gemma 3's sliding layers: two-sided window without the causal mask (bidirectional
/// encoders), one-sided with it; with padding, grouped-query heads and head_dim 256.
async fn attention_sliding_window_matches_cpu(gpu: Gpu) -> R {
    let s = AttentionShape { heads: 3, kv_heads: 1, head_dim: 256, causal: false, scale: 0.0625, window: 5 };
    attention_case(&gpu, 17, 2, 71, 71, s, &[0, 9]).await?;
    // EmbeddingGemma's shape over more keys than the window (257) and without one.
    // EmbeddingGemma's shape over more keys than the window (257), with and without it
    // (head_dim 256 runs the one-pass kernel either way: `DIRECT_MAX_HEAD_DIM`).
    let s = AttentionShape { window: 257, ..s };
    attention_case(&gpu, 19, 1, 402, 402, s, &[0]).await?;
    attention_case(&gpu, 20, 2, 203, 203, AttentionShape { window: 0, ..s }, &[0, 50]).await?;
    // The barrier-free kernel at its largest head, over many queries.
    attention_case(&gpu, 21, 1, 203, 203, AttentionShape { window: 0, head_dim: 128, ..s }, &[0]).await?;
    let s = AttentionShape { heads: 4, kv_heads: 2, head_dim: 20, causal: true, scale: 0.2, window: 3 };
    attention_case(&gpu, 18, 2, 11, 11, s, &[0, 2]).await
}

async fn pooling_matches_cpu(gpu: Gpu) -> R {
    let mut rng = Rng::new(14);
    let (batch, seq, dim) = (3, 11, 300);
    let x = rng.vec(batch * seq * dim, 1.0);
    let lens = [11, 4, 0];
    let mask: Vec<u32> = lens.iter().flat_map(|&l| (0..seq).map(move |t| (t < l) as u32)).collect();
    let x_t = gpu.upload_f32(&x, &[batch, seq, dim])?;
    let mask_t = gpu.upload_u32(&mask, &[batch, seq])?;
    let mut enc = gpu.encoder();
    let mean = pool::mean_pool(&mut enc, &x_t, &mask_t)?;
    let cls = pool::cls_pool(&mut enc, &x_t)?;
    let last = pool::last_pool(&mut enc, &x_t, &mask_t)?;
    enc.submit()?;
    assert_close("last_pool", &gpu.readback_f32(&last).await?, &cpu::last_pool(&x, &mask, batch, dim), Tol::Close { abs: 0.0, rel: 0.0 })?;
    assert_close("mean_pool", &gpu.readback_f32(&mean).await?, &cpu::mean_pool(&x, &mask, batch, dim), F32_ELEMENTWISE)?;
    assert_close("cls_pool", &gpu.readback_f32(&cls).await?, &cpu::cls_pool(&x, batch, dim), Tol::Close { abs: 0.0, rel: 0.0 })?;
    Ok(())
}

/// A BERT-style block recorded as one op list and submitted once:
/// LayerNorm(x + GELU(x·W1ᵀ + b1)·W2ᵀ + b2), then mean pooling and L2 normalisation.
async fn op_list_in_one_submission(gpu: Gpu) -> R {
    let mut rng = Rng::new(15);
    let (batch, seq, h, inter) = (2, 13, 48, 100);
    let x = rng.vec(batch * seq * h, 1.0);
    let (w1, b1) = (rng.vec(inter * h, 0.3), rng.vec(inter, 0.1));
    let (w2, b2) = (rng.vec(h * inter, 0.3), rng.vec(h, 0.1));
    let (g, be) = (rng.vec(h, 1.0), rng.vec(h, 0.2));
    let mask: Vec<u32> = (0..batch * seq).map(|i| (i % seq < if i < seq { 13 } else { 6 }) as u32).collect();

    let hid = cpu::gelu(&cpu::linear(&x, &w1, Some(&b1), h));
    let y = cpu::layer_norm(&cpu::add(&x, &cpu::linear(&hid, &w2, Some(&b2), inter)), &g, &be, h, 1e-12);
    let want = cpu::l2_normalize(&cpu::mean_pool(&y, &mask, batch, h), h, 1e-12);

    for _ in 0..2 {
        let x_t = gpu.upload_f32(&x, &[batch, seq, h])?;
        let mask_t = gpu.upload_u32(&mask, &[batch, seq])?;
        let (w1_t, b1_t) = (gpu.upload_f32(&w1, &[inter, h])?, gpu.upload_f32(&b1, &[inter])?);
        let (w2_t, b2_t) = (gpu.upload_f32(&w2, &[h, inter])?, gpu.upload_f32(&b2, &[h])?);
        let (g_t, be_t) = (gpu.upload_f32(&g, &[h])?, gpu.upload_f32(&be, &[h])?);
        let mut enc = gpu.encoder();
        let pre = matmul::linear(&mut enc, &x_t, &w1_t, Some(&b1_t))?;
        let hid = activation::gelu(&mut enc, &pre)?;
        let proj = matmul::linear(&mut enc, &hid, &w2_t, Some(&b2_t))?;
        let res = activation::add(&mut enc, &x_t, &proj)?;
        let y = norm::layer_norm(&mut enc, &res, &g_t, &be_t, 1e-12)?;
        let pooled = pool::mean_pool(&mut enc, &y, &mask_t)?;
        let out = norm::l2_normalize(&mut enc, &pooled, 1e-12)?;
        assert_eq!(enc.dispatch_count(), 7);
        enc.submit()?;
        assert_close("block", &gpu.readback_f32(&out).await?, &want, F32_REDUCTION)?;
    }
    Ok(())
}

/// A repeated call at the same shapes compiles no pipeline and creates no buffer: both
/// come from the caches. Uses its own device so concurrent tests do not disturb counts.
async fn caches_are_reused(_gpu: Gpu) -> R {
    let gpu = Gpu::new().await?;
    let mut rng = Rng::new(16);
    let (x, w) = (rng.vec(20 * 24, 1.0), rng.vec(30 * 24, 1.0));
    let mut stats = Vec::new();
    for _ in 0..3 {
        let x_t = gpu.upload_f32(&x, &[20, 24])?;
        let w_t = gpu.upload_f32(&w, &[30, 24])?;
        let mut enc = gpu.encoder();
        let y = matmul::linear(&mut enc, &x_t, &w_t, None)?;
        let g = activation::gelu(&mut enc, &y)?;
        enc.submit()?;
        assert_close("gelu(linear)", &gpu.readback_f32(&g).await?, &cpu::gelu(&cpu::linear(&x, &w, None, 24)), F32_REDUCTION)?;
        stats.push(gpu.stats());
    }
    log!("cache stats per round: {stats:?}");
    let same = |a: &gllm_web::GpuStats, b: &gllm_web::GpuStats| (a.buffers_created, a.pipelines) == (b.buffers_created, b.pipelines);
    if stats[0].pipelines != 2 || !same(&stats[0], &stats[1]) || !same(&stats[1], &stats[2]) || stats[2].readbacks != 3 {
        return Err(format!("caches not reused: {stats:?}").into());
    }
    Ok(())
}

fn expect_err<T: std::fmt::Debug>(what: &str, r: gllm_web::Result<T>, ok: impl Fn(&Error) -> bool) -> R {
    match r {
        Err(e) if ok(&e) => {
            log!("{what}: {e}");
            Ok(())
        }
        other => Err(format!("{what}: expected a typed error, got {other:?}").into()),
    }
}

async fn bad_shapes_are_typed_errors(gpu: Gpu) -> R {
    let x = gpu.upload_f32(&[0.0; 12], &[3, 4])?;
    let w = gpu.upload_f32(&[0.0; 10], &[2, 5])?;
    let ids = gpu.upload_u32(&[0, 1, 2], &[3])?;
    let mask = gpu.upload_u32(&[1; 3], &[1, 3])?;
    let q = gpu.upload_f32(&[0.0; 24], &[1, 3, 8])?;
    let mut enc = gpu.encoder();
    let shape = |e: &Error| matches!(e, Error::Shape { .. });
    expect_err("linear k mismatch", matmul::linear(&mut enc, &x, &w, None), shape)?;
    let w4 = gpu.upload_f32(&[0.0; 8], &[2, 4])?;
    expect_err("linear bias shape", matmul::linear(&mut enc, &x, &w4, Some(&x)), shape)?;
    expect_err("linear int input", matmul::linear(&mut enc, &ids, &w, None), |e| matches!(e, Error::DType { .. }))?;
    expect_err("embedding rank-1 table", embed::embedding(&mut enc, &ids, &ids), shape)?;
    expect_err("layer_norm gamma", norm::layer_norm(&mut enc, &x, &w, &w, 1e-5), shape)?;
    expect_err("add mismatch", activation::add(&mut enc, &x, &w), shape)?;
    expect_err("pool mask", pool::mean_pool(&mut enc, &q, &gpu.upload_u32(&[1; 4], &[1, 4])?), shape)?;
    expect_err("attention heads", attention::attention(&mut enc, &q, &q, &q, &mask, AttentionShape::bidirectional(3, 3)), shape)?;
    expect_err(
        "attention kv_heads",
        attention::attention(&mut enc, &q, &q, &q, &mask, AttentionShape { kv_heads: 3, ..AttentionShape::bidirectional(2, 4) }),
        |e| matches!(e, Error::Param { .. }),
    )?;
    expect_err("attention mask", attention::attention(&mut enc, &q, &q, &q, &ids, AttentionShape::bidirectional(2, 4)), shape)?;
    expect_err("reshape", x.reshape(&[5]), shape)?;
    expect_err("host data", gpu.upload_f32(&[1.0; 3], &[2, 2]), |e| matches!(e, Error::HostData { .. }))?;
    if enc.dispatch_count() != 0 {
        return Err("a rejected op was recorded".into());
    }
    // The runtime stays usable after the errors.
    enc.submit()?;
    let mut enc = gpu.encoder();
    let y = matmul::linear(&mut enc, &x.reshape(&[2, 6])?.reshape(&[3, 4])?, &gpu.upload_f32(&[1.0; 8], &[2, 4])?, None)?;
    enc.submit()?;
    assert_eq!(gpu.readback_f32(&y).await?, vec![0.0; 6]);
    Ok(())
}

/// A tensor dropped while an op that writes it is recorded but not yet submitted must not
/// be handed to an upload: the queue runs uploads before the pending submission, so the
/// op would overwrite the uploaded data.
async fn released_buffers_wait_for_submit(gpu: Gpu) -> R {
    let (m, n, k) = (16, 64, 32);
    let x = gpu.upload_f32(&vec![1.0; m * k], &[m, k])?;
    let w = gpu.upload_f32(&vec![1.0; n * k], &[n, k])?;
    let data: Vec<f32> = (0..m * n).map(|i| i as f32).collect();
    let mut enc = gpu.encoder();
    let y = matmul::linear(&mut enc, &x, &w, None)?;
    drop(y);
    let z = gpu.upload_f32(&data, &[m, n])?;
    enc.submit()?;
    assert_close("upload after released op output", &gpu.readback_f32(&z).await?, &data, Tol::Close { abs: 0.0, rel: 0.0 })?;
    Ok(())
}

/// binarize, hamming, rescore and the multi-pass top-k against their CPU references, on
/// ragged sizes (d = 100 is not a multiple of 32, n = 3000 not of the 1024-wide top-k
/// block) and with ties (quantised scores) to check the id-ascending tie order.
async fn search_kernels_match_cpu(gpu: Gpu) -> R {
    let mut rng = Rng::new(17);
    let (n, d, k) = (3000, 100, 17);
    let x = rng.vec(n * d, 1.0);
    let x_t = gpu.upload_f32(&x, &[n, d])?;
    let mut enc = gpu.encoder();
    let codes = search::binarize(&mut enc, &x_t)?;
    let q_bits = search::binarize(&mut enc, &x_t.narrow_rows(1)?)?;
    let ham = search::hamming(&mut enc, &q_bits.reshape(&[4])?, &codes, n, d)?;
    let (ts, ti) = search::topk(&mut enc, &ham, None, k)?;
    let ids: Vec<u32> = (0..300).map(|i| (i * 7 % n) as u32).collect();
    let ids_t = gpu.upload_u32(&ids, &[300])?;
    let q = rng.vec(d, 1.0);
    let q_t = gpu.upload_f32(&q, &[d])?;
    let resc = search::rescore(&mut enc, &q_t, &x_t, n, &ids_t)?;
    let (rs, ri) = search::topk(&mut enc, &resc, Some(&ids_t), k)?;
    enc.submit()?;

    let want_codes = cpu::search::binarize(&x, d);
    assert_eq!(gpu.readback_u32(&codes).await?, want_codes, "binarize");
    let want_ham = cpu::search::hamming(&want_codes[..4], &want_codes, d);
    assert_eq!(gpu.readback_f32(&ham).await?, want_ham, "hamming");
    // Hamming scores are integers: many ties, broken by ascending id.
    let (gi, gs) = gpu.readback_u32_f32(&ti, &ts).await?;
    let want: Vec<(u32, f32)> = cpu::search::topk(&want_ham, None, k);
    assert_eq!(gi.into_iter().zip(gs).collect::<Vec<_>>(), want, "topk of hamming");
    let want_resc: Vec<f32> = ids.iter().map(|&i| (0..d).map(|c| q[c] as f64 * x[i as usize * d + c] as f64).sum::<f64>() as f32).collect();
    assert_close("rescore", &gpu.readback_f32(&resc).await?, &want_resc, F32_REDUCTION)?;
    let (gi, gs) = gpu.readback_u32_f32(&ri, &rs).await?;
    let want = cpu::search::topk(&want_resc, Some(&ids), k);
    assert_eq!(gi, want.iter().map(|w| w.0).collect::<Vec<_>>(), "topk of rescored ids");
    assert_close("topk scores", &gs, &want.iter().map(|w| w.1).collect::<Vec<_>>(), F32_REDUCTION)?;
    // k beyond n: padded with id u32::MAX.
    let small = gpu.upload_f32(&[0.5, 2.0, 1.0], &[3])?;
    let mut enc = gpu.encoder();
    let (s3, i3) = search::topk(&mut enc, &small, None, 5)?;
    enc.submit()?;
    let (i3, s3) = gpu.readback_u32_f32(&i3, &s3).await?;
    assert_eq!(&i3, &[1, 2, 0, u32::MAX, u32::MAX]);
    assert_eq!(&s3[..3], &[2.0, 1.0, 0.5]);
    Ok(())
}

/// Tables and dense weights larger than `maxStorageBufferBindingSize` (a 151936-token
/// vocabulary on a 128 MiB adapter) are bound as row windows: here the limit is forced to
/// 64 KiB, so a 1000 × 40 table (160 KB f32, 80 KB f16) and a 700 × 64 weight (179 KB)
/// take 3–4 windows; results must equal the CPU reference (and an id past the table reads
/// zeros). A bias on such a weight is a typed error.
async fn tensors_over_the_binding_limit_bind_in_windows(_gpu: Gpu) -> R {
    let gpu = Gpu::with_options(GpuOptions { max_binding_bytes: 64 << 10, ..Default::default() }).await?;
    let mut rng = Rng::new(21);
    let (vocab, dim, n) = (1000, 40, 29);
    let table = rng.vec(vocab * dim, 1.0);
    let mut ids: Vec<u32> = (0..n).map(|_| rng.below(vocab as u32)).collect();
    ids[..6].copy_from_slice(&[0, 999, 409, 410, 819, 5000]);
    for f16 in [false, true] {
        let (t, w) = if f16 {
            let r: Vec<f32> = table.iter().map(|&x| half::f16::from_f32(x).to_f32()).collect();
            (gpu.upload_f32_as_f16(&table, &[vocab, dim])?, r)
        } else {
            (gpu.upload_f32(&table, &[vocab, dim])?, table.clone())
        };
        let mut enc = gpu.encoder();
        let out = embed::embedding(&mut enc, &gpu.upload_u32(&ids, &[n])?, &t)?;
        let dispatches = enc.dispatch_count();
        enc.submit()?;
        if dispatches < 2 {
            return Err(format!("a {} KB table took {dispatches} dispatch(es) under a 64 KiB limit", t.byte_len() / 1000).into());
        }
        assert_close(&format!("windowed embedding f16={f16} ({dispatches} windows)"), &gpu.readback_f32(&out).await?, &cpu::embedding(&ids, &w, dim), Tol::Close { abs: 0.0, rel: 0.0 })?;
    }
    let (rows, k) = (700, 64);
    let w = rng.vec(rows * k, 0.5);
    let w_t = gpu.upload_f32(&w, &[rows, k])?;
    for m in [1usize, 3] {
        let x = rng.vec(m * k, 1.0);
        let mut enc = gpu.encoder();
        let y = matmul::linear(&mut enc, &gpu.upload_f32(&x, &[m, k])?, &w_t, None)?;
        enc.submit()?;
        assert_close(&format!("windowed linear m={m}"), &gpu.readback_f32(&y).await?, &cpu::linear(&x, &w, None, k), F32_REDUCTION)?;
    }
    let b = gpu.upload_f32(&vec![0.0; rows], &[rows])?;
    let mut enc = gpu.encoder();
    match matmul::linear(&mut enc, &gpu.upload_f32(&rng.vec(k, 1.0), &[1, k])?, &w_t, Some(&b)) {
        Err(e) => log!("windowed linear with a bias: {e}"),
        Ok(_) => return Err("a windowed weight with a bias was accepted".into()),
    }
    Ok(())
}

/// A tensor of the CPU backend handed to a GPU encoder or readback, and a GPU tensor handed to
/// the CPU backend, are typed errors (never a panic), and both devices work afterwards.
async fn mixed_devices_are_errors(gpu: Gpu) -> R {
    let cpu = Gpu::cpu();
    let (hx, hw) = (cpu.upload_f32(&[1.0; 8], &[2, 4])?, cpu.upload_f32(&[0.5; 12], &[3, 4])?);
    let (gx, gw) = (gpu.upload_f32(&[1.0; 8], &[2, 4])?, gpu.upload_f32(&[0.5; 12], &[3, 4])?);
    let mut enc = gpu.encoder();
    let e = gllm_web::kernels::matmul::linear(&mut enc, &hx, &gw, None).err().ok_or("host x on the GPU: no error")?;
    assert!(e.to_string().contains("CPU backend"), "{e}");
    let e = enc.copy_into(&hx, &gx, 0).err().ok_or("host → GPU copy: no error")?;
    assert!(e.to_string().contains("CPU backend"), "{e}");
    drop(enc);
    assert!(gpu.readback_f32(&hx).await.is_err(), "a GPU readback of a host tensor");
    let mut enc = cpu.encoder();
    let e = gllm_web::kernels::matmul::linear(&mut enc, &gx, &hw, None).err().ok_or("GPU x on the CPU: no error")?;
    assert!(e.to_string().contains("GPU tensor"), "{e}");
    // Both still work.
    let mut enc = cpu.encoder();
    let y = gllm_web::kernels::matmul::linear(&mut enc, &hx, &hw, None)?;
    enc.submit()?;
    assert_eq!(cpu.readback_f32(&y).await?, vec![2.0; 6]);
    let mut enc = gpu.encoder();
    let y = gllm_web::kernels::matmul::linear(&mut enc, &gx, &gw, None)?;
    enc.submit()?;
    assert_eq!(gpu.readback_f32(&y).await?, vec![2.0; 6]);
    Ok(())
}

/// On the CPU backend a tensor the heap cannot hold (256 TiB: past the address space, and past
/// the 2 GiB limit of wasm32) is a typed error, not an aborted allocation; the device works after.
async fn host_allocation_failure_is_an_error(gpu: Gpu) -> R {
    match gpu.alloc(&[1 << 20, 1 << 20, 64], DType::F32) {
        Err(e @ Error::BufferTooLarge { .. }) => log!("256 TiB: {e}"),
        other => return Err(format!("a 256 TiB host tensor gave {:?}", other.map(|t| t.numel())).into()),
    }
    let t = gpu.upload_f32(&[1.0, 2.0], &[2])?;
    assert_eq!(gpu.readback_f32(&t).await?, vec![1.0, 2.0]);
    Ok(())
}
