//! Kernel benchmarks: matmul (matrix-vector and tiled, f32 and f16 weights) and attention
//! at a few shapes, on whatever adapter is present. CPU adapters (lavapipe, SwiftShader)
//! get small shapes.
//!
//! Method: each measurement records `reps` copies of the op into one encoder, submits
//! once and waits for the GPU (`Gpu::sync`), so per-op figures include dispatch cost but
//! amortise the submit round trip. One warm-up round, then the median of 5 rounds.
//!
//! Run: `cargo bench --bench kernels` (add `-- --quick` for fewer rounds).

use std::time::Instant;

use gllm_web::kernels::attention::{attention, AttentionShape};
use gllm_web::kernels::matmul::linear;
use gllm_web::reference::rng::Rng;
use gllm_web::{DType, Gpu, GpuTensor, Result};

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

/// Median seconds per op of `op` recorded `reps` times per submission.
fn time(gpu: &Gpu, rounds: usize, reps: usize, op: &dyn Fn(&mut gllm_web::Encoder) -> Result<GpuTensor>) -> Result<f64> {
    let mut samples = Vec::new();
    for round in 0..=rounds {
        let t0 = Instant::now();
        let mut enc = gpu.encoder();
        for _ in 0..reps {
            op(&mut enc)?;
        }
        enc.submit()?;
        pollster::block_on(gpu.sync())?;
        if round > 0 {
            samples.push(t0.elapsed().as_secs_f64() / reps as f64);
        }
    }
    Ok(median(samples))
}

fn random(gpu: &Gpu, rng: &mut Rng, shape: &[usize], dtype: DType) -> Result<GpuTensor> {
    let n: usize = shape.iter().product();
    let v = rng.vec(n, 0.5);
    match dtype {
        DType::F16 => gpu.upload_f32_as_f16(&v, shape),
        _ => gpu.upload_f32(&v, shape),
    }
}

/// The reference figure of `../shared/gpu-recipe.md`: a plain f32 GEMV, 256 threads per
/// row, vec4 loads, tree reduction, written against raw wgpu on its own device so the
/// runtime's machinery is not part of it. Returns seconds per GEMV.
fn baseline_gemv(n: usize, k: usize, reps: usize, rounds: usize) -> f64 {
    const SRC: &str = r#"
@group(0) @binding(0) var<storage, read> w: array<vec4<f32>>;
@group(0) @binding(1) var<storage, read> x: array<vec4<f32>>;
@group(0) @binding(2) var<storage, read_write> y: array<f32>;
var<workgroup> red: array<f32, 256>;
@compute @workgroup_size(256)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
        @builtin(local_invocation_index) lid: u32) {
    let row = wid.x + wid.y * nwg.x;
    let k4 = arrayLength(&x);
    var acc = 0.0;
    for (var i = lid; i < k4; i = i + 256u) { acc = acc + dot(w[row * k4 + i], x[i]); }
    red[lid] = acc;
    workgroupBarrier();
    for (var s = 128u; s > 0u; s = s >> 1u) {
        if (lid < s) { red[lid] = red[lid] + red[lid + s]; }
        workgroupBarrier();
    }
    if (lid == 0u) { y[row] = red[0]; }
}"#;
    let instance = wgpu::Instance::new(wgpu::InstanceDescriptor::new_without_display_handle_from_env());
    let adapter = pollster::block_on(instance.request_adapter(&Default::default())).expect("adapter");
    let al = adapter.limits();
    let limits = wgpu::Limits {
        max_storage_buffer_binding_size: al.max_storage_buffer_binding_size,
        max_buffer_size: al.max_buffer_size,
        ..Default::default()
    };
    let (device, queue) = pollster::block_on(adapter.request_device(&wgpu::DeviceDescriptor {
        required_limits: limits,
        ..Default::default()
    }))
    .expect("device");
    let buf = |size: usize| {
        device.create_buffer(&wgpu::BufferDescriptor {
            label: None,
            size: size as u64,
            usage: wgpu::BufferUsages::STORAGE | wgpu::BufferUsages::COPY_DST,
            mapped_at_creation: false,
        })
    };
    let (w, x, y) = (buf(n * k * 4), buf(k * 4), buf(n * 4));
    let module = device.create_shader_module(wgpu::ShaderModuleDescriptor {
        label: None,
        source: wgpu::ShaderSource::Wgsl(SRC.into()),
    });
    let pipeline = device.create_compute_pipeline(&wgpu::ComputePipelineDescriptor {
        label: None,
        layout: None,
        module: &module,
        entry_point: Some("main"),
        compilation_options: Default::default(),
        cache: None,
    });
    let bg = device.create_bind_group(&wgpu::BindGroupDescriptor {
        label: None,
        layout: &pipeline.get_bind_group_layout(0),
        entries: &[
            wgpu::BindGroupEntry { binding: 0, resource: w.as_entire_binding() },
            wgpu::BindGroupEntry { binding: 1, resource: x.as_entire_binding() },
            wgpu::BindGroupEntry { binding: 2, resource: y.as_entire_binding() },
        ],
    });
    let groups = gllm_web_grid(n as u32);
    let mut samples = Vec::new();
    for round in 0..=rounds {
        let t0 = Instant::now();
        let mut enc = device.create_command_encoder(&Default::default());
        {
            let mut pass = enc.begin_compute_pass(&Default::default());
            pass.set_pipeline(&pipeline);
            pass.set_bind_group(0, &bg, &[]);
            for _ in 0..reps {
                pass.dispatch_workgroups(groups[0], groups[1], 1);
            }
        }
        queue.submit([enc.finish()]);
        device.poll(wgpu::PollType::wait_indefinitely()).expect("poll");
        if round > 0 {
            samples.push(t0.elapsed().as_secs_f64() / reps as f64);
        }
    }
    median(samples)
}

/// The same x/y split of a 1-D workgroup count as the runtime's.
fn gllm_web_grid(n: u32) -> [u32; 2] {
    if n <= 65535 {
        [n, 1]
    } else {
        let y = n.div_ceil(65535);
        [n.div_ceil(y), y]
    }
}

fn main() -> Result<()> {
    let quick = std::env::args().any(|a| a == "--quick");
    let rounds = if quick { 3 } else { 5 };
    let gpu = pollster::block_on(Gpu::new())?;
    let caps = gpu.caps().clone();
    let adapter = caps.adapter.split(" (").next().unwrap_or("?").to_string();
    println!("adapter: {}; shader-f16 {}, subgroups {}", caps.adapter, caps.shader_f16, caps.subgroups);
    let limit = caps.max_storage_buffer_binding_size.min(caps.max_buffer_size) as usize;
    let mut rng = Rng::new(42);

    // (m, n, k): decode GEMV, small batch, BERT-base FFN prefill, big GEMM.
    let shapes: &[(usize, usize, usize)] = if caps.is_cpu {
        &[(1, 1024, 1024), (8, 1024, 1024), (128, 1536, 384)]
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
            let s = time(&gpu, rounds, reps, &|enc| linear(enc, &x, &w, None))?;
            let kind = if m <= gllm_web::kernels::matmul::MATVEC_MAX_M { "matvec" } else { "tiled" };
            if m == 1 && dtype == DType::F32 {
                let b = baseline_gemv(n, k, reps, rounds);
                println!(
                    "| {adapter} baseline simple GEMV f32 n={n} k={k} (recipe) | {:.1} µs | {:.2} | {:.1} |",
                    b * 1e6,
                    weight_bytes / b / 1e9,
                    2.0 * (n * k) as f64 / b / 1e9
                );
            }
            println!(
                "| {adapter} linear/{kind} {dtype:?} m={m} n={n} k={k} | {:.1} µs | {:.2} | {:.1} |",
                s * 1e6,
                weight_bytes / s / 1e9,
                2.0 * (m * n * k) as f64 / s / 1e9
            );
        }
    }

    // (batch, q_len, kv_len, heads, kv_heads, head_dim, causal)
    let att: &[(usize, usize, usize, usize, usize, usize, bool)] = if caps.is_cpu {
        &[(2, 32, 32, 12, 12, 32, false), (1, 1, 256, 14, 2, 64, true)]
    } else {
        &[(32, 128, 128, 12, 12, 32, false), (1, 512, 512, 14, 2, 64, true), (1, 1, 2048, 14, 2, 64, true)]
    };
    println!("\n| bench | time/op | GFLOP/s |\n|---|---|---|");
    for &(b, ql, kl, h, kvh, d, causal) in att {
        let q = random(&gpu, &mut rng, &[b, ql, h * d], DType::F32)?;
        let k = random(&gpu, &mut rng, &[b, kl, kvh * d], DType::F32)?;
        let v = random(&gpu, &mut rng, &[b, kl, kvh * d], DType::F32)?;
        let mask = gpu.upload_u32(&vec![1; b * kl], &[b, kl])?;
        let shape = AttentionShape { heads: h, kv_heads: kvh, head_dim: d, causal, scale: 1.0 / (d as f32).sqrt() };
        let reps = if caps.is_cpu { 2 } else { 20 };
        let s = time(&gpu, rounds, reps, &|enc| attention(enc, &q, &k, &v, &mask, shape))?;
        let flops = 4.0 * (b * h * ql * kl * d) as f64 / if causal && ql > 1 { 2.0 } else { 1.0 };
        println!(
            "| {adapter} attention b={b} q={ql} kv={kl} heads={h}/{kvh} d={d} causal={causal} | {:.1} µs | {:.1} |",
            s * 1e6,
            flops / s / 1e9
        );
    }
    Ok(())
}
