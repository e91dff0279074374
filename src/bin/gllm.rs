//! `gllm`: the native command line.
//!
//! ```text
//! gllm embed --model DIR [--pooling mean|cls|last_token] [--no-normalize] [--max-length N] [--dtype D]
//!            [--prompt-name NAME | --prompt TEXT] [--dimensions N] [--device auto|gpu|cpu] TEXT...
//! ```
//! prints `{"dims": [n, d], "token_ids": [[...], ...], "embeddings": [[...], ...], "device": "webgpu"|"cpu"}`.
//! `--device auto` (default) runs on the GPU unless there is none or it is a CPU adapter
//! (lavapipe), and then on the CPU backend.
//!
//! ```text
//! gllm rerank --model DIR --query TEXT [--top-n N] [--instruction TEXT] [--dtype D] [--device auto|gpu|cpu] DOC...
//! ```
//! prints `{"results": [{"index": i, "logit": l, "score": s}, ...], "device": ...}`, highest score first.
//!
//! ```text
//! gllm inspect FILE.gguf [--full]
//! ```
//! prints the GGUF header as JSON: metadata (arrays longer than 16 summarised unless
//! `--full`) and every tensor's type, dims, shape and offset.
//!
//! ```text
//! gllm convert MODEL.gguf --out DIR [--dtype f16|f32]
//! ```
//! writes an HF folder (model.safetensors, config.json, generation_config.json,
//! tokenizer.json, tokenizer_config.json).
//!
//! ```text
//! gllm quantize --model DIR --dtype q8_0|q4_0|q4_1|q5_0|q5_1|q2_K|q3_K|q4_K|q5_K|q6_K|iq4_nl --out DIR
//! ```
//! writes a pre-quantized copy of a safetensors model folder (BERT or Llama/Qwen): linear
//! weights as blocks in the GPU layout (`loader::prequant`), everything else unchanged, plus
//! `gllm-manifest.json`; loads stream the blocks with no conversion.
//!
//! ```text
//! gllm generate --model DIR|FILE.gguf --prompt TEXT [--chat] [--max-new-tokens N] [--temperature T]
//!      [--top-k K] [--top-p P] [--repetition-penalty R] [--seed S] [--stop TEXT]... [--dtype f32|f16|q8_0|q4_0|...]
//!      [--speculative prompt-lookup [--draft-k K]] [--cache-tokens N] [--sink-tokens N] [--no-context-shift]
//!      [--kv f16|f32]
//! ```
//! prints `{"prompt_ids": [...], "tokens": [...], "text": "...", "finish_reason": "...", "evicted": N, "kv_dtype": "f16"}` (and
//! `"speculative": {verify_steps, plain_steps, drafted, accepted}` with `--speculative`).
//! Errors go to stderr with exit status 1 (2 for usage errors).

#[cfg(target_arch = "wasm32")]
fn main() {}

#[cfg(not(target_arch = "wasm32"))]
fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let code = match args.first().map(String::as_str) {
        Some("embed") => run(embed(&args[1..])),
        Some("rerank") => run(rerank(&args[1..])),
        Some("inspect") => run(inspect(&args[1..])),
        Some("convert") => run(convert(&args[1..])),
        Some("quantize") => run(quantize(&args[1..])),
        Some("generate") => run(generate(&args[1..])),
        _ => {
            eprintln!("{USAGE}");
            2
        }
    };
    std::process::exit(code);
}

#[cfg(not(target_arch = "wasm32"))]
const USAGE: &str = "usage: gllm embed --model DIR [--pooling mean|cls|last_token] [--no-normalize] [--max-length N] [--dtype D]
                  [--prompt-name NAME | --prompt TEXT] [--dimensions N] [--device auto|gpu|cpu] TEXT...
       gllm rerank --model DIR --query TEXT [--top-n N] [--instruction TEXT] [--dtype D] [--device auto|gpu|cpu] DOC...
       gllm inspect FILE.gguf [--full]
       gllm convert MODEL.gguf --out DIR [--dtype f16|f32]
       gllm quantize --model DIR --dtype q8_0|q4_0|q4_1|q5_0|q5_1|q2_K|q3_K|q4_K|q5_K|q6_K|iq4_nl --out DIR
       gllm generate --model DIR|FILE.gguf --prompt TEXT [--chat] [--max-new-tokens N] [--temperature T] [--top-k K]
                     [--top-p P] [--repetition-penalty R] [--seed S] [--stop TEXT]... [--dtype f32|f16|q8_0|q4_0|...]
                     [--speculative prompt-lookup [--draft-k K]] [--cache-tokens N] [--sink-tokens N] [--no-context-shift]
                     [--kv f16|f32]";

#[cfg(not(target_arch = "wasm32"))]
fn run(r: Result<(), String>) -> i32 {
    match r {
        Ok(()) => 0,
        Err(e) => {
            eprintln!("gllm: {e}");
            1
        }
    }
}

#[cfg(not(target_arch = "wasm32"))]
fn embed(args: &[String]) -> Result<(), String> {
    use gllm_web::loader::FileSource;
    use gllm_web::{EmbedCallOptions, EmbedOptions, Embedder};

    let mut model = None;
    let mut opts = EmbedOptions::default();
    let mut call = EmbedCallOptions::default();
    let mut texts = Vec::new();
    let mut it = args.iter();
    while let Some(a) = it.next() {
        let mut value = |name: &str| it.next().cloned().ok_or_else(|| format!("{name} needs a value\n{USAGE}"));
        match a.as_str() {
            "--model" => model = Some(value("--model")?),
            "--pooling" => opts.pooling = Some(value("--pooling")?.parse().map_err(|e: gllm_web::Error| e.to_string())?),
            "--no-normalize" => opts.normalize = Some(false),
            "--max-length" => {
                opts.max_length = Some(value("--max-length")?.parse().map_err(|_| "--max-length needs a number".to_string())?)
            }
            "--dtype" => opts.load.dtype = Some(value("--dtype")?.parse().map_err(|e: gllm_web::Error| e.to_string())?),
            "--prompt-name" => call.prompt_name = Some(value("--prompt-name")?),
            "--prompt" => call.prompt = Some(value("--prompt")?),
            "--device" => opts.load.device = value("--device")?.parse().map_err(|e: gllm_web::Error| e.to_string())?,
            "--dimensions" => {
                call.dimensions = Some(value("--dimensions")?.parse().map_err(|_| "--dimensions needs a number".to_string())?)
            }
            "--" => texts.extend(it.by_ref().cloned()),
            s if s.starts_with("--") => return Err(format!("unknown option {s}\n{USAGE}")),
            s => texts.push(s.to_string()),
        }
    }
    let model = model.ok_or_else(|| format!("--model is required\n{USAGE}"))?;
    if call.prompt.is_some() && call.prompt_name.is_some() {
        return Err(format!("give --prompt-name or --prompt, not both\n{USAGE}"));
    }
    pollster::block_on(async {
        let (src, weights) = FileSource::open_model(&model).map_err(|e| e.to_string())?;
        let gpu = opts.load.device.device(gllm_web::engine::cpu_backend_covers(&src).await).await.map_err(|e| e.to_string())?;
        opts.load.weights = weights;
        let embedder = Embedder::load(&gpu, &src, opts, &|_| {}).await.map_err(|e| e.to_string())?;
        let refs: Vec<&str> = texts.iter().map(String::as_str).collect();
        let e = embedder.embed_with(&refs, &call).await.map_err(|e| e.to_string())?;
        let rows: Vec<&[f32]> = e.rows().collect();
        let out = serde_json::json!({ "dims": e.dims, "token_ids": e.token_ids, "embeddings": rows, "device": gpu.device_name() });
        println!("{out}");
        Ok(())
    })
}

#[cfg(not(target_arch = "wasm32"))]
fn rerank(args: &[String]) -> Result<(), String> {
    use gllm_web::loader::FileSource;
    use gllm_web::{RerankOptions, Reranker};

    let (mut model, mut query, mut top_n, mut docs) = (None, None, None, Vec::new());
    let mut opts = RerankOptions::default();
    let mut it = args.iter();
    while let Some(a) = it.next() {
        let mut value = |name: &str| it.next().cloned().ok_or_else(|| format!("{name} needs a value\n{USAGE}"));
        match a.as_str() {
            "--model" => model = Some(value("--model")?),
            "--query" => query = Some(value("--query")?),
            "--top-n" => top_n = Some(value("--top-n")?.parse::<usize>().map_err(|_| "--top-n needs a number".to_string())?),
            "--dtype" => opts.load.dtype = Some(value("--dtype")?.parse().map_err(|e: gllm_web::Error| e.to_string())?),
            "--device" => opts.load.device = value("--device")?.parse().map_err(|e: gllm_web::Error| e.to_string())?,
            "--instruction" => opts.instruction = Some(value("--instruction")?),
            "--" => docs.extend(it.by_ref().cloned()),
            s if s.starts_with("--") => return Err(format!("unknown option {s}\n{USAGE}")),
            s => docs.push(s.to_string()),
        }
    }
    let model = model.ok_or_else(|| format!("--model is required\n{USAGE}"))?;
    let query = query.ok_or_else(|| format!("--query is required\n{USAGE}"))?;
    pollster::block_on(async {
        let (src, weights) = FileSource::open_model(&model).map_err(|e| e.to_string())?;
        let gpu = opts.load.device.device(gllm_web::engine::cpu_backend_covers(&src).await).await.map_err(|e| e.to_string())?;
        opts.load.weights = weights;
        let reranker = Reranker::load(&gpu, &src, opts, &|_| {})
            .await
            .map_err(|e| e.to_string())?;
        let refs: Vec<&str> = docs.iter().map(String::as_str).collect();
        let results = reranker.rerank(&query, &refs, top_n).await.map_err(|e| e.to_string())?;
        let rows: Vec<_> = results
            .iter()
            .map(|r| serde_json::json!({ "index": r.index, "logit": r.logit, "score": r.score }))
            .collect();
        println!("{}", serde_json::json!({ "results": rows, "device": gpu.device_name() }));
        Ok(())
    })
}

#[cfg(not(target_arch = "wasm32"))]
fn inspect(args: &[String]) -> Result<(), String> {
    let (mut file, mut full) = (None, false);
    for a in args {
        match a.as_str() {
            "--full" => full = true,
            s if s.starts_with("--") => return Err(format!("unknown option {s}\n{USAGE}")),
            s => file = Some(std::path::PathBuf::from(s)),
        }
    }
    let file = file.ok_or_else(|| format!("inspect needs a file\n{USAGE}"))?;
    let dir = file.parent().map(|p| p.to_path_buf()).unwrap_or_default();
    let name = file.file_name().and_then(|n| n.to_str()).ok_or("bad file name")?;
    let src = gllm_web::loader::FileSource::new(if dir.as_os_str().is_empty() { ".".into() } else { dir });
    let g = pollster::block_on(gllm_web::loader::GgufFile::read(&src, name)).map_err(|e| e.to_string())?;
    println!("{}", serde_json::to_string_pretty(&g.to_json(if full { usize::MAX } else { 16 })).map_err(|e| e.to_string())?);
    Ok(())
}

#[cfg(not(target_arch = "wasm32"))]
fn convert(args: &[String]) -> Result<(), String> {
    use gllm_web::loader::gguf_hf::{self, ConvertDType};
    let (mut file, mut out, mut dtype) = (None, None, ConvertDType::F16);
    let mut it = args.iter();
    while let Some(a) = it.next() {
        let mut value = |name: &str| it.next().cloned().ok_or_else(|| format!("{name} needs a value\n{USAGE}"));
        match a.as_str() {
            "--out" => out = Some(value("--out")?),
            "--dtype" => dtype = value("--dtype")?.parse().map_err(|e: gllm_web::Error| e.to_string())?,
            s if s.starts_with("--") => return Err(format!("unknown option {s}\n{USAGE}")),
            s => file = Some(s.to_string()),
        }
    }
    let file = file.ok_or_else(|| format!("convert needs a GGUF file\n{USAGE}"))?;
    let out = out.ok_or_else(|| format!("--out is required\n{USAGE}"))?;
    let s = gguf_hf::convert(file.as_ref(), out.as_ref(), dtype).map_err(|e| e.to_string())?;
    eprintln!("converted {file} -> {out} ({} tensors, {}, tied={})", s.tensors, s.arch, s.tied);
    Ok(())
}

#[cfg(not(target_arch = "wasm32"))]
fn quantize(args: &[String]) -> Result<(), String> {
    use gllm_web::quant::QuantFormat;
    let (mut model, mut out, mut fmt) = (None, None, None);
    let mut it = args.iter();
    while let Some(a) = it.next() {
        let mut value = |name: &str| it.next().cloned().ok_or_else(|| format!("{name} needs a value\n{USAGE}"));
        match a.as_str() {
            "--model" => model = Some(value("--model")?),
            "--out" => out = Some(value("--out")?),
            "--dtype" => {
                let v = value("--dtype")?;
                fmt = Some(QuantFormat::parse(&v).ok_or_else(|| format!("--dtype {v}: expected {}", QuantFormat::names()))?);
            }
            s => return Err(format!("unknown argument {s}\n{USAGE}")),
        }
    }
    let model = model.ok_or_else(|| format!("--model is required\n{USAGE}"))?;
    let out = out.ok_or_else(|| format!("--out is required\n{USAGE}"))?;
    let fmt = fmt.ok_or_else(|| format!("--dtype is required\n{USAGE}"))?;
    let config: serde_json::Value = serde_json::from_slice(&std::fs::read(std::path::Path::new(&model).join("config.json")).map_err(|e| format!("{model}/config.json: {e}"))?)
        .map_err(|e| format!("{model}/config.json: {e}"))?;
    let is_linear: fn(&str) -> bool = match config.get("model_type").and_then(|t| t.as_str()) {
        Some("bert") => gllm_web::models::bert::is_linear_weight,
        Some("llama" | "qwen2" | "qwen3") => gllm_web::models::llama::is_linear_weight,
        other => return Err(format!("{model}: model_type {other:?} is not one gllm quantize knows (bert, llama, qwen2, qwen3)")),
    };
    let s = gllm_web::loader::prequant::write(model.as_ref(), out.as_ref(), fmt, &is_linear).map_err(|e| e.to_string())?;
    eprintln!(
        "quantized {} linear weights to {} ({} files copied): {} -> {} bytes ({:.3}x)",
        s.quantized,
        fmt.name(),
        s.copied,
        s.bytes_in,
        s.bytes_out,
        s.bytes_out as f64 / s.bytes_in as f64
    );
    Ok(())
}

#[cfg(not(target_arch = "wasm32"))]
fn generate(args: &[String]) -> Result<(), String> {
    use gllm_web::loader::FileSource;
    use gllm_web::{ChatMessage as Message, GenerateOptions, Generator, GeneratorOptions, Gpu, KvDType, LoadDType, LoadOptions, Prompt};

    let (mut model, mut prompt, mut chat) = (None, None, false);
    let mut opts = GenerateOptions::default();
    let mut dtype: Option<LoadDType> = None;
    let mut kv_dtype: Option<KvDType> = None;
    let mut it = args.iter();
    fn num<T: std::str::FromStr>(name: &str, v: String) -> Result<T, String> {
        v.parse().map_err(|_| format!("{name} needs a number"))
    }
    while let Some(a) = it.next() {
        let mut value = |name: &str| it.next().cloned().ok_or_else(|| format!("{name} needs a value\n{USAGE}"));
        match a.as_str() {
            "--model" => model = Some(value("--model")?),
            "--prompt" => prompt = Some(value("--prompt")?),
            "--chat" => chat = true,
            "--max-new-tokens" => opts.max_new_tokens = num("--max-new-tokens", value("--max-new-tokens")?)?,
            "--temperature" => opts.sampling.temperature = num("--temperature", value("--temperature")?)?,
            "--top-k" => opts.sampling.top_k = num("--top-k", value("--top-k")?)?,
            "--top-p" => opts.sampling.top_p = num("--top-p", value("--top-p")?)?,
            "--repetition-penalty" => opts.sampling.repetition_penalty = num("--repetition-penalty", value("--repetition-penalty")?)?,
            "--seed" => opts.sampling.seed = num("--seed", value("--seed")?)?,
            "--stop" => opts.stop.push(value("--stop")?),
            "--dtype" => dtype = Some(value("--dtype")?.parse().map_err(|e: gllm_web::Error| e.to_string())?),
            "--speculative" => match value("--speculative")?.as_str() {
                "prompt-lookup" => opts.speculative = Some(opts.speculative.unwrap_or_default()),
                other => return Err(format!("--speculative {other}: expected prompt-lookup\n{USAGE}")),
            },
            "--cache-tokens" => opts.cache_tokens = Some(num("--cache-tokens", value("--cache-tokens")?)?),
            "--sink-tokens" => opts.sink_tokens = num("--sink-tokens", value("--sink-tokens")?)?,
            "--no-context-shift" => opts.context_shift = false,
            "--kv" => kv_dtype = Some(value("--kv")?.parse().map_err(|e: gllm_web::Error| e.to_string())?),
            "--draft-k" => {
                let k = num("--draft-k", value("--draft-k")?)?;
                opts.speculative = Some(gllm_web::Speculative { k, ..opts.speculative.unwrap_or_default() });
            }
            s => return Err(format!("unknown argument {s}\n{USAGE}")),
        }
    }
    let model = model.ok_or_else(|| format!("--model is required\n{USAGE}"))?;
    let prompt = prompt.ok_or_else(|| format!("--prompt is required\n{USAGE}"))?;
    pollster::block_on(async {
        let gpu = Gpu::new().await.map_err(|e| e.to_string())?;
        let (src, weights) = FileSource::open_model(&model).map_err(|e| e.to_string())?;
        // Default: f32 for safetensors (the goldens' precision), the file's blocks for GGUF.
        let dtype = dtype.or(if weights.as_deref().is_some_and(|w| w.ends_with(".gguf")) { None } else { Some(LoadDType::F32) });
        let load = LoadOptions { dtype, weights, ..Default::default() };
        let mut g = Generator::load(&gpu, &src, GeneratorOptions { load, kv_dtype }, &|_| {})
            .await
            .map_err(|e| e.to_string())?;
        let messages = [Message::new("user", &prompt)];
        let p = if chat { Prompt::Messages(&messages) } else { Prompt::Text(&prompt) };
        let out = g.generate(p, &opts).await.map_err(|e| e.to_string())?;
        let json = serde_json::json!({
            "prompt_ids": out.prompt_ids,
            "tokens": out.tokens,
            "text": out.text,
            "finish_reason": out.finish_reason.as_str(),
            "evicted": out.evicted,
            "kv_dtype": g.kv_dtype().as_str(),
        });
        let json = match out.speculative {
            Some(st) => {
                let mut j = json;
                j["speculative"] = serde_json::json!({ "verify_steps": st.verify_steps, "plain_steps": st.plain_steps, "drafted": st.drafted, "accepted": st.accepted });
                j
            }
            None => json,
        };
        println!("{json}");
        Ok(())
    })
}
