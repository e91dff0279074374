//! Decode GEMV with quantized weights vs f32 / f16 weights, and the raw-wgpu f32 GEMV
//! baseline of `../shared/gpu-recipe.md`, all in one process on one device.
//!
//! Shapes (rows n × cols k of the weight): 4096×4096, 11008×4096 (a 7B FFN), 151936×896 (a
//! Qwen2.5-0.5B LM head). Formats: f32, f16, q8_0, q4_0, q4_1, q5_0, q4_K, q6_K, awq. Quantized
//! formats run with the subgroup reduction where the device has fixed-size subgroups, and
//! with the shared-memory reduction. GB/s = bytes of weights (as stored on the GPU) / time.
//!
//! Method as in `benches/kernels.rs`: `reps` GEMVs per submission, one warm-up, median of 5.
//! Consecutive GEMVs cycle through copies of the weight whose total is at least 256 MB, so
//! the weights come from memory and not from the GPU's L2 cache (50 MB on an H100/H200).
//! Run: `cargo bench --bench quant` (`-- --quick` for 3 rounds).

mod common;

use common::{baseline_gemv, random, time};
use gllm_web::kernels::matmul::linear;
use gllm_web::kernels::quant::{qlinear_with, subgroup_rows, QLinearOptions, QMatrix};
use gllm_web::quant::{awq::AwqWeight, QuantFormat};
use gllm_web::reference::rng::Rng;
use gllm_web::{DType, Gpu, Result};

fn main() -> Result<()> {
    let quick = std::env::args().any(|a| a == "--quick");
    let rounds = if quick { 3 } else { 5 };
    // GLLM_QUANT_FORMATS=q8_0,q4_0 limits the quantized formats measured; GLLM_QUANT_SWEEP=1
    // adds a sweep of threads per row group.
    let formats: Option<Vec<String>> = std::env::var("GLLM_QUANT_FORMATS").ok().map(|v| v.split(',').map(str::to_string).collect());
    let sweep = std::env::var("GLLM_QUANT_SWEEP").is_ok_and(|v| v == "1");
    let gpu = pollster::block_on(Gpu::new())?;
    let caps = gpu.caps().clone();
    let adapter = caps.adapter.split(" (").next().unwrap_or("?").to_string();
    println!(
        "adapter: {}; shader-f16 {}, subgroups {} (fixed size {:?})",
        caps.adapter, caps.shader_f16, caps.subgroups, caps.subgroup_size
    );
    let mut rng = Rng::new(42);
    let shapes: &[(usize, usize)] =
        if caps.is_cpu { &[(512, 512), (1024, 512)] } else { &[(4096, 4096), (11008, 4096), (151936, 896)] };
    println!("\n| shape n×k | format | reduce | time/GEMV | weight MB | GB/s | × f32 time |\n|---|---|---|---|---|---|---|");
    for &(n, k) in shapes {
        let x = random(&gpu, &mut rng, &[1, k], DType::F32)?;
        let reps_for = |bytes: f64| {
            let r = ((4e9 / bytes).ceil() as usize).clamp(4, 400);
            if caps.is_cpu { r.min(4) } else { r }
        };
        let row = |fmt: &str, reduce: &str, s: f64, bytes: f64, f32_s: f64| {
            println!(
                "| {n}×{k} | {fmt} | {reduce} | {:.1} µs | {:.1} | {:.0} | {:.3} |",
                s * 1e6,
                bytes / 1e6,
                bytes / s / 1e9,
                s / f32_s
            );
        };
        let f32_bytes = (n * k * 4) as f64;
        let reps = reps_for(f32_bytes);
        let base = baseline_gemv(n, k, reps, rounds);
        let copies = |bytes: f64| (((256e6 / bytes).ceil() as usize).max(1)).min(64);
        let turn = std::cell::Cell::new(0usize);
        let next = |n: usize| {
            turn.set(turn.get() + 1);
            turn.get() % n
        };
        let w32: Vec<_> = (0..copies(f32_bytes)).map(|_| random(&gpu, &mut rng, &[n, k], DType::F32)).collect::<Result<_>>()?;
        let t32 = time(&gpu, rounds, reps, &|enc| linear(enc, &x, &w32[next(w32.len())], None))?;
        drop(w32);
        row("f32 (raw-wgpu baseline, recipe)", "tree", base, f32_bytes, t32);
        row("f32", "tree", t32, f32_bytes, t32);
        let w16: Vec<_> = (0..copies(f32_bytes / 2.0)).map(|_| random(&gpu, &mut rng, &[n, k], DType::F16)).collect::<Result<_>>()?;
        let t16 = time(&gpu, rounds, reps_for(f32_bytes / 2.0), &|enc| linear(enc, &x, &w16[next(w16.len())], None))?;
        drop(w16);
        row("f16", "tree", t16, f32_bytes / 2.0, t32);

        // Random weights quantized in row chunks (the reference quantizer is per block).
        let values: Vec<f32> = rng.vec(1 << 20, 0.5);
        let mut mats: Vec<(String, Vec<QMatrix>)> = Vec::new();
        let wanted = |name: &str| formats.as_ref().is_none_or(|f| f.iter().any(|x| x == name));
        for fmt in QuantFormat::ALL {
            if !wanted(fmt.name()) {
                continue;
            }
            if k % fmt.block_elems() != 0 {
                println!("| {n}×{k} | {} | - | n/a: k is not a multiple of {} | | | |", fmt.name(), fmt.block_elems());
                continue;
            }
            let chunk = gllm_web::quant::quantize(fmt, &values[..(1 << 20) / k * k])?;
            let rows_per_chunk = (1 << 20) / k;
            let row_bytes = chunk.len() / rows_per_chunk;
            let mut blocks = Vec::with_capacity(n * row_bytes);
            while blocks.len() < n * row_bytes {
                let take = (n * row_bytes - blocks.len()).min(chunk.len());
                blocks.extend_from_slice(&chunk[..take]);
            }
            let one = QMatrix::from_gguf_blocks(&gpu, fmt, n, k, &blocks)?;
            let c = copies(one.byte_size() as f64);
            let mut v = vec![one];
            for _ in 1..c {
                v.push(QMatrix::from_gguf_blocks(&gpu, fmt, n, k, &blocks)?);
            }
            mats.push((fmt.name().into(), v));
        }
        if k % 128 == 0 && wanted("awq") {
            // AWQ: quantize a 128-row slab, tile it over the rows.
            let slab = AwqWeight::quantize(&values[..128 * k], 128, k)?;
            let mut big = AwqWeight {
                out_features: n / 128 * 128,
                in_features: k,
                qweight: Vec::new(),
                qzeros: Vec::new(),
                scales: Vec::new(),
            };
            let reps_n = n / 128;
            // qweight/qzeros/scales are [in, out/8] / [groups, out/8] / [groups, out]: tile along out.
            for r in 0..k {
                for _ in 0..reps_n {
                    big.qweight.extend_from_slice(&slab.qweight[r * 16..r * 16 + 16]);
                }
            }
            for g in 0..k / 128 {
                for _ in 0..reps_n {
                    big.qzeros.extend_from_slice(&slab.qzeros[g * 16..g * 16 + 16]);
                    big.scales.extend_from_slice(&slab.scales[g * 128..g * 128 + 128]);
                }
            }
            let one = QMatrix::from_awq(&gpu, &big)?;
            let c = copies(one.byte_size() as f64);
            let mut v = vec![one];
            for _ in 1..c {
                v.push(QMatrix::from_awq(&gpu, &big)?);
            }
            mats.push(("awq".into(), v));
        }
        // (label, shared-memory reduction, rows per thread group, threads per group: None =
        // the automatic choice `matvec_shape`).
        let mut reductions: Vec<(&str, bool, Option<u8>, Option<u16>)> =
            vec![("shared (auto)", true, None, None), ("shared, 2 rows, 32 threads", true, Some(2), Some(32))];
        if let Some(sg) = subgroup_rows(&gpu) {
            let full = Some(sg.min(32) as u16);
            reductions.splice(
                0..0,
                [("subgroup (auto)", false, None, None), ("subgroup, 2 rows, full subgroup", false, Some(2), full), ("subgroup, 4 rows, full subgroup", false, Some(4), full)],
            );
        }
        // The first measurement after the upload phase ran slow in earlier runs (2–3×, whatever
        // the format): measure the first matrix once untimed so the GPU is back at speed.
        if let Some((_, ws)) = mats.first() {
            let opts = QLinearOptions::default();
            time(&gpu, rounds, reps_for(ws[0].byte_size() as f64), &|enc| qlinear_with(enc, &x, &ws[next(ws.len())], None, opts))?;
        }
        for (name, ws) in &mats {
            let bytes = ws[0].byte_size() as f64;
            for &(label, no_subgroups, rows, threads) in &reductions {
                let opts = QLinearOptions { no_subgroups, force_matmul: false, rows, threads, barrier_free: None };
                let s = time(&gpu, rounds, reps_for(bytes), &|enc| qlinear_with(enc, &x, &ws[next(ws.len())], None, opts))?;
                row(name, label, s, bytes, t32);
            }
            // GLLM_QUANT_SWEEP=1: every thread count at the format's row count (subgroups).
            if sweep && subgroup_rows(&gpu).is_some() {
                let rows: u8 = if name == "q4_0" || name == "q4_1" { 4 } else { 2 };
                for t in [4u16, 8, 16, 32, 64] {
                    let opts = QLinearOptions { no_subgroups: false, force_matmul: false, rows: Some(rows), threads: Some(t), barrier_free: None };
                    let s = time(&gpu, rounds, reps_for(bytes), &|enc| qlinear_with(enc, &x, &ws[next(ws.len())], None, opts))?;
                    row(name, &format!("sweep: {rows} rows × {t} threads"), s, bytes, t32);
                }
            }
        }
        println!("| {n}×{k} | ({adapter}) | | | | | |");
    }
    Ok(())
}
