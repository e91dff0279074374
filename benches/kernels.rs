//! Kernel benchmarks: matmul (matrix-vector and tiled, f32 and f16 weights) and attention
//! at a few shapes, on whatever adapter is present. CPU adapters (lavapipe, SwiftShader)
//! get small shapes.
//!
//! Method: each measurement records `reps` copies of the op into one encoder, submits
//! once and waits for the GPU (`Gpu::sync`), so per-op figures include dispatch cost but
//! amortise the submit round trip. One warm-up round, then the median of 5 rounds.
//!
//! Run: `cargo bench --bench kernels` (add `-- --quick` for fewer rounds).

mod common;

use common::{baseline_gemv, random, time};
use gllm_web::kernels::attention::{attention_with, AttentionOptions, AttentionShape};
use gllm_web::kernels::matmul::{linear_with, LinearOptions};
use gllm_web::kernels::norm::layer_norm_with;
use gllm_web::reference::rng::Rng;
use gllm_web::{DType, Gpu, Result};

fn main() -> Result<()> {
    let quick = std::env::args().any(|a| a == "--quick");
    let rounds = if quick { 3 } else { 5 };
    let gpu = pollster::block_on(Gpu::new())?;
    let caps = gpu.caps().clone();
    let adapter = caps.adapter.split(" (").next().unwrap_or("?").to_string();
    println!("adapter: {}; shader-f16 {}, subgroups {}", caps.adapter, caps.shader_f16, caps.subgroups);
    let limit = caps.max_storage_buffer_binding_size.min(caps.max_buffer_size) as usize;
    let mut rng = Rng::new(42);

    // (m, n, k): decode GEMV, small batch, BERT-base FFN prefill, big GEMM; on CPU adapters
    // also the three products of all-MiniLM-L6-v2 at batch 32 × 31 tokens.
    let shapes: &[(usize, usize, usize)] = if caps.is_cpu {
        &[(1, 1024, 1024), (8, 1024, 1024), (128, 1536, 384), (992, 384, 384), (992, 1536, 384), (992, 384, 1536)]
    } else {
        &[(1, 4096, 4096), (1, 65536, 4096), (8, 4096, 4096), (128, 1536, 384), (2048, 4096, 4096)]
    };
    println!("\n| bench | time/op | weights GB/s | GFLOP/s |\n|---|---|---|---|");
    for &(m, n, k) in shapes {
        for dtype in [DType::F32, DType::F16] {
            if n * k * dtype.size() > limit {
                continue;
            }
            let x = random(&gpu, &mut rng, &[m, k], DType::F32)?;
            let w = random(&gpu, &mut rng, &[n, k], dtype)?;
            let weight_bytes = (n * k * dtype.size()) as f64;
            // Enough reps for ~tens of ms per submission on a real GPU.
            let reps = ((2e9 / (weight_bytes + 2.0 * (m * n * k) as f64)).ceil() as usize).clamp(1, 200);
            let reps = if caps.is_cpu { reps.min(4) } else { reps };
            if m == 1 && dtype == DType::F32 {
                let b = baseline_gemv(n, k, reps, rounds);
                println!(
                    "| {adapter} baseline simple GEMV f32 n={n} k={k} (recipe) | {:.1} µs | {:.2} | {:.1} |",
                    b * 1e6,
                    weight_bytes / b / 1e9,
                    2.0 * (n * k) as f64 / b / 1e9
                );
            }
            // Batched products: the tiled kernel and the barrier-free one (the default on CPU
            // adapters), side by side.
            let kinds: &[(&str, bool)] =
                if m <= gllm_web::kernels::matmul::MATVEC_MAX_M { &[("matvec", false)] } else { &[("tiled", false), ("direct", true)] };
            for &(kind, barrier_free) in kinds {
                let opts = LinearOptions { barrier_free: Some(barrier_free) };
                let s = time(&gpu, rounds, reps, &|enc| linear_with(enc, &x, &w, None, opts))?;
                println!(
                    "| {adapter} linear/{kind} {dtype:?} m={m} n={n} k={k} | {:.1} µs | {:.2} | {:.1} |",
                    s * 1e6,
                    weight_bytes / s / 1e9,
                    2.0 * (m * n * k) as f64 / s / 1e9
                );
            }
        }
    }

    // Quantized batched products on CPU adapters (the MiniLM batch-32 shapes, q8_0 / q4_0):
    // the tiled kernel and the barrier-free one.
    if caps.is_cpu {
        use gllm_web::kernels::quant::{qlinear_with, QLinearOptions, QMatrix};
        use gllm_web::quant::QuantFormat;
        for &(m, n, k) in &[(992usize, 384usize, 384usize), (992, 1536, 384)] {
            let x = random(&gpu, &mut rng, &[m, k], DType::F32)?;
            let values = rng.vec(n * k, 0.5);
            for fmt in [QuantFormat::Q8_0, QuantFormat::Q4_0] {
                let w = QMatrix::quantize(&gpu, fmt, n, k, &values)?;
                for (kind, barrier_free) in [("tiled", false), ("direct", true)] {
                    let opts = QLinearOptions { barrier_free: Some(barrier_free), ..Default::default() };
                    let s = time(&gpu, rounds, 2, &|enc| qlinear_with(enc, &x, &w, None, opts))?;
                    println!(
                        "| {adapter} qlinear/{kind} {} m={m} n={n} k={k} | {:.1} µs | {:.2} | {:.1} |",
                        fmt.name(),
                        s * 1e6,
                        w.byte_size() as f64 / s / 1e9,
                        2.0 * (m * n * k) as f64 / s / 1e9
                    );
                }
            }
        }
    }

    // (batch, q_len, kv_len, heads, kv_heads, head_dim, causal)
    let att: &[(usize, usize, usize, usize, usize, usize, bool)] = if caps.is_cpu {
        &[(2, 32, 32, 12, 12, 32, false), (32, 31, 31, 12, 12, 32, false), (1, 1, 256, 14, 2, 64, true)]
    } else {
        &[(32, 128, 128, 12, 12, 32, false), (1, 512, 512, 14, 2, 64, true), (1, 1, 2048, 14, 2, 64, true)]
    };
    println!("\n| bench | time/op | GFLOP/s |\n|---|---|---|");
    for &(b, ql, kl, h, kvh, d, causal) in att {
        let q = random(&gpu, &mut rng, &[b, ql, h * d], DType::F32)?;
        let k = random(&gpu, &mut rng, &[b, kl, kvh * d], DType::F32)?;
        let v = random(&gpu, &mut rng, &[b, kl, kvh * d], DType::F32)?;
        let mask = gpu.upload_u32(&vec![1; b * kl], &[b, kl])?;
        let shape = AttentionShape { heads: h, kv_heads: kvh, head_dim: d, causal, scale: 1.0 / (d as f32).sqrt(), window: 0 };
        let reps = if caps.is_cpu { 2 } else { 20 };
        let flops = 4.0 * (b * h * ql * kl * d) as f64 / if causal && ql > 1 { 2.0 } else { 1.0 };
        // The workgroup-per-query kernel and the barrier-free one (the default on CPU adapters).
        for (kind, barrier_free) in [("", false), ("/direct", true)] {
            let opts = AttentionOptions { barrier_free: Some(barrier_free) };
            let s = time(&gpu, rounds, reps, &|enc| attention_with(enc, &q, &k, &v, &mask, shape, opts))?;
            println!(
                "| {adapter} attention{kind} b={b} q={ql} kv={kl} heads={h}/{kvh} d={d} causal={causal} | {:.1} µs | {:.1} |",
                s * 1e6,
                flops / s / 1e9
            );
        }
    }
    // Layer norm over the MiniLM batch-32 activations (CPU adapters) or a BERT-base batch.
    let (rows, h) = if caps.is_cpu { (992, 384) } else { (4096, 768) };
    let x = random(&gpu, &mut rng, &[rows, h], DType::F32)?;
    let g = random(&gpu, &mut rng, &[h], DType::F32)?;
    let b = random(&gpu, &mut rng, &[h], DType::F32)?;
    let reps = if caps.is_cpu { 2 } else { 20 };
    for (kind, barrier_free) in [("", false), ("/direct", true)] {
        let s = time(&gpu, rounds, reps, &|enc| layer_norm_with(enc, &x, &g, &b, 1e-12, Some(barrier_free)))?;
        println!("| {adapter} layer_norm{kind} rows={rows} h={h} | {:.1} µs | |", s * 1e6);
    }
    Ok(())
}
