//! Shared by the benchmarks: random-weight checkpoints built from a real config.
#![allow(dead_code)]

use gllm_web::loader::safetensors::{serialize, StDType};
use gllm_web::loader::{FileSource, MemSource, Source};
use gllm_web::models::bert::{checkpoint_shapes, BertConfig};
use gllm_web::models::gemma3::{self, Gemma3Config};
use gllm_web::reference::rng::Rng;
use gllm_web::{DType, Gpu, GpuTensor, Result};
use std::time::Instant;

pub fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

/// The model folder whose config and tokenizer the benchmarks use
/// (`$GLLM_BENCH_MODEL`, default `models/all-MiniLM-L6-v2`).
pub fn model_dir() -> String {
    std::env::var("GLLM_BENCH_MODEL").unwrap_or_else(|_| "models/all-MiniLM-L6-v2".into())
}

/// A `MemSource` with the real config, tokenizer and sentence-transformers files of
/// `model_dir()` and a random-weight `model.safetensors` of the same shapes. With
/// `classifier`, the checkpoint is a one-label `BertForSequenceClassification` (`bert.`
/// prefix, pooler, classifier), i.e. a cross-encoder.
pub async fn random_bert(classifier: bool) -> gllm_web::Result<MemSource> {
    let real = FileSource::new(model_dir());
    let config_bytes = real.read("config.json").await?;
    let config: BertConfig = serde_json::from_slice(&config_bytes)
        .map_err(|e| gllm_web::Error::Config { file: "config.json".into(), msg: e.to_string() })?;
    let h = config.hidden_size;
    let mut shapes = checkpoint_shapes(&config);
    if classifier {
        shapes = shapes.into_iter().map(|(n, s)| (format!("bert.{n}"), s)).collect();
        shapes.extend([
            ("bert.pooler.dense.weight".to_string(), vec![h, h]),
            ("bert.pooler.dense.bias".into(), vec![h]),
            ("classifier.weight".into(), vec![1, h]),
            ("classifier.bias".into(), vec![1]),
        ]);
    }
    let mut rng = Rng::new(7);
    let tensors: Vec<(String, Vec<usize>, Vec<u8>)> = shapes
        .into_iter()
        .map(|(name, shape)| {
            let n: usize = shape.iter().product();
            let ln_weight = name.ends_with("LayerNorm.weight");
            let bytes = (0..n).flat_map(|_| if ln_weight { 1.0f32 } else { rng.uniform(0.05) }.to_le_bytes()).collect();
            (name, shape, bytes)
        })
        .collect();
    let refs: Vec<(&str, StDType, &[usize], &[u8])> =
        tensors.iter().map(|(n, s, b)| (n.as_str(), StDType::F32, s.as_slice(), b.as_slice())).collect();
    let mut src = MemSource::new().with("model.safetensors", serialize(&refs)).with("config.json", config_bytes);
    for f in ["tokenizer.json", "modules.json", "1_Pooling/config.json", "sentence_bert_config.json"] {
        if let Ok(b) = real.read(f).await {
            src = src.with(f, b);
        }
    }
    Ok(src)
}

/// `random_bert(false)` for a BERT folder; for a Gemma 3 sentence-transformers folder
/// (EmbeddingGemma: `model_type` `gemma3_text`) a random trunk of its config and random
/// weights for each `Dense` module (`{path}/model.safetensors`, `linear.weight`), with the
/// folder's small files (tokenizer, modules, pooling, prompts, Dense configs).
pub async fn random_embedder() -> gllm_web::Result<MemSource> {
    let real = FileSource::new(model_dir());
    let config_bytes = real.read("config.json").await?;
    let bad = |file: &str, e: serde_json::Error| gllm_web::Error::Config { file: file.into(), msg: e.to_string() };
    let json: serde_json::Value = serde_json::from_slice(&config_bytes).map_err(|e| bad("config.json", e))?;
    if json["model_type"] != "gemma3_text" {
        return random_bert(false).await;
    }
    let config: Gemma3Config = serde_json::from_value(json).map_err(|e| bad("config.json", e))?;
    let mut rng = Rng::new(7);
    let mut random = |shapes: Vec<(String, Vec<usize>)>, ones: &dyn Fn(&str) -> bool| {
        let tensors: Vec<(String, Vec<usize>, Vec<u8>)> = shapes
            .into_iter()
            .map(|(name, shape)| {
                let n: usize = shape.iter().product();
                let one = ones(&name);
                let bytes = (0..n).flat_map(|_| if one { 0.0f32 } else { rng.uniform(0.05) }.to_le_bytes()).collect();
                (name, shape, bytes)
            })
            .collect();
        let refs: Vec<(&str, StDType, &[usize], &[u8])> =
            tensors.iter().map(|(n, s, b)| (n.as_str(), StDType::F32, s.as_slice(), b.as_slice())).collect();
        serialize(&refs)
    };
    // Gemma norms multiply by `1 + w`: stored zeros are unit norms.
    let trunk = random(gemma3::checkpoint_shapes(&config), &|n| n.ends_with("norm.weight"));
    let mut src = MemSource::new().with("model.safetensors", trunk).with("config.json", config_bytes);
    let modules_bytes = real.read("modules.json").await?;
    let modules: Vec<serde_json::Value> = serde_json::from_slice(&modules_bytes).map_err(|e| bad("modules.json", e))?;
    for m in &modules {
        let (Some(kind), Some(path)) = (m["type"].as_str(), m["path"].as_str()) else { continue };
        if !kind.ends_with(".Dense") {
            continue;
        }
        let file = format!("{path}/config.json");
        let dense_bytes = real.read(&file).await?;
        let d: serde_json::Value = serde_json::from_slice(&dense_bytes).map_err(|e| bad(&file, e))?;
        let (i, o) = (d["in_features"].as_u64().unwrap_or(0) as usize, d["out_features"].as_u64().unwrap_or(0) as usize);
        let mut shapes = vec![("linear.weight".to_string(), vec![o, i])];
        if d["bias"].as_bool().unwrap_or(true) {
            shapes.push(("linear.bias".into(), vec![o]));
        }
        src = src.with(&format!("{path}/model.safetensors"), random(shapes, &|_| false)).with(&file, dense_bytes);
    }
    src = src.with("modules.json", modules_bytes);
    for f in ["tokenizer.json", "tokenizer_config.json", "1_Pooling/config.json", "sentence_bert_config.json", "config_sentence_transformers.json"] {
        if let Ok(b) = real.read(f).await {
            src = src.with(f, b);
        }
    }
    Ok(src)
}

/// With `$GLLM_BENCH_WRITE` set, writes every file of `src` into `$GLLM_BENCH_WRITE/name/`,
/// so another runtime (the Dawn runner, `benches/dawn/run.mjs`) loads the very same
/// random-weight model.
pub fn write_out(src: &MemSource, name: &str) -> Result<()> {
    let Ok(root) = std::env::var("GLLM_BENCH_WRITE") else { return Ok(()) };
    let dir = std::path::Path::new(&root).join(name);
    for (file, bytes) in &src.files {
        let path = dir.join(file);
        let io = |e: std::io::Error| gllm_web::Error::Io { file: path.display().to_string(), msg: e.to_string() };
        std::fs::create_dir_all(path.parent().unwrap_or(&dir)).map_err(io)?;
        std::fs::write(&path, bytes).map_err(io)?;
    }
    Ok(())
}

// ---- timing and the raw-wgpu GEMV baseline (kernels and quant benches) ----

/// Median seconds per op of `op` recorded `reps` times per submission.
pub fn time(gpu: &Gpu, rounds: usize, reps: usize, op: &dyn Fn(&mut gllm_web::Encoder) -> Result<GpuTensor>) -> Result<f64> {
    let mut samples = Vec::new();
    // Warm-up rounds until at least 0.3 s of GPU work have run: after host-side phases
    // (quantizing, uploading) the GPU has idled and its clocks need time to come back up.
    let warm = Instant::now();
    let mut warmups = 0;
    while warmups == 0 || (warm.elapsed().as_secs_f64() < 0.3 && warmups < 200) {
        let mut enc = gpu.encoder();
        for _ in 0..reps {
            op(&mut enc)?;
        }
        enc.submit()?;
        pollster::block_on(gpu.sync())?;
        warmups += 1;
    }
    for _ in 0..rounds {
        let mut enc = gpu.encoder();
        for _ in 0..reps {
            op(&mut enc)?;
        }
        // Host encoding (bind groups, passes) is outside the timed region: the figure is
        // the GPU's time for the dispatches, barriers between them included.
        let cmd = enc.encode()?;
        let t0 = Instant::now();
        cmd.submit();
        pollster::block_on(gpu.sync())?;
        samples.push(t0.elapsed().as_secs_f64() / reps as f64);
    }
    Ok(median(samples))
}

pub fn random(gpu: &Gpu, rng: &mut Rng, shape: &[usize], dtype: DType) -> Result<GpuTensor> {
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
pub fn baseline_gemv(n: usize, k: usize, reps: usize, rounds: usize) -> f64 {
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

