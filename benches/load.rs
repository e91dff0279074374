//! Native load benchmark: a safetensors file of `$GLLM_LOAD_MIB` MiB (default 1024) of F32
//! tensors, written once to `target/bench-load/`, streamed into GPU buffers by
//! `stream_safetensors` from a `FileSource` (the file is in the page cache after the first
//! pass, so this is the native "cached load"). Rows: the file read alone (no GPU), then the
//! full load into GPU buffers, each with 1 request in flight (one read after another) and
//! with the default 6 (parallel reads on their own threads). Median of 3 after a warm-up.
//! `GLLM_LOAD_COLD=1` adds rows with the page cache dropped before every run (Linux, root:
//! `/proc/sys/vm/drop_caches`), i.e. reads from the disk.
//!
//! Run: `cargo bench --bench load`.

mod common;

use std::time::Instant;

use common::median;
use gllm_web::loader::safetensors::{serialize, StDType};
use gllm_web::loader::{stream_safetensors, FileSource, SafetensorsFile, Source, StreamOptions};
use gllm_web::{Gpu, Result};

fn main() -> Result<()> {
    pollster::block_on(run())
}

async fn run() -> Result<()> {
    let mib: usize = std::env::var("GLLM_LOAD_MIB").ok().and_then(|v| v.parse().ok()).unwrap_or(1024);
    let dir = std::path::Path::new("target/bench-load");
    let file = format!("random-{mib}mib.safetensors");
    let path = dir.join(&file);
    // 16 MiB tensors, as a 4096 × 1024 F32 matrix.
    let tensors = mib / 16;
    if !path.exists() {
        std::fs::create_dir_all(dir).map_err(|e| gllm_web::Error::Io { file: dir.display().to_string(), msg: e.to_string() })?;
        let body: Vec<u8> = (0..16u32 << 20).map(|i| (i.wrapping_mul(2_654_435_761) >> 24) as u8 & 0x3f).collect();
        let names: Vec<String> = (0..tensors).map(|i| format!("layer.{i}.weight")).collect();
        let list: Vec<(&str, StDType, &[usize], &[u8])> = names.iter().map(|n| (n.as_str(), StDType::F32, &[4096usize, 1024][..], &body[..])).collect();
        std::fs::write(&path, serialize(&list)).map_err(|e| gllm_web::Error::Io { file: path.display().to_string(), msg: e.to_string() })?;
    }
    let src = FileSource::new(dir);
    let bytes = src.len(&file).await? as f64;
    let st = SafetensorsFile::read(&src, &file).await?;
    let cold = std::env::var("GLLM_LOAD_COLD").is_ok_and(|v| v == "1");
    let gpu = Gpu::new().await?;
    println!("adapter: {}", gpu.caps().adapter);
    println!("file: {} ({:.0} MiB, {tensors} F32 tensors of 16 MiB)\n", path.display(), bytes / (1 << 20) as f64);
    println!("| bench | median time | GB/s |\n|---|---|---|");
    for concurrency in [1usize, 6] {
        let opts = StreamOptions { concurrency, ..Default::default() };
        // The reads alone: every planned request, `concurrency` at a time, bytes dropped.
        let read_all = || async {
            let plan = gllm_web::loader::stream::plan(&st, opts.chunk_size)?;
            let mut next = 0;
            while next < plan.len() {
                let batch = &plan[next..(next + concurrency).min(plan.len())];
                let reads: Vec<_> = batch.iter().map(|r| src.read_range(&file, r.start, r.len)).collect();
                for r in reads {
                    r.await?;
                }
                next += batch.len();
            }
            Ok::<(), gllm_web::Error>(())
        };
        let mut t = Vec::new();
        for i in 0..4 {
            let t0 = Instant::now();
            read_all().await?;
            if i > 0 {
                t.push(t0.elapsed().as_secs_f64());
            }
        }
        let s = median(t);
        println!("| file reads only, {concurrency} in flight | {:.3} s | {:.2} |", s, bytes / s / 1e9);
        let mut t = Vec::new();
        for i in 0..4 {
            let t0 = Instant::now();
            let w = stream_safetensors(&gpu, &src, &st, opts, &|_| {}, &|| false).await?;
            gpu.sync().await?;
            if i > 0 {
                t.push(t0.elapsed().as_secs_f64());
            }
            drop(w);
        }
        let s = median(t);
        println!("| stream_safetensors into GPU buffers, {concurrency} in flight | {:.3} s | {:.2} |", s, bytes / s / 1e9);
        if cold {
            let mut t = Vec::new();
            for _ in 0..3 {
                drop_page_cache()?;
                let t0 = Instant::now();
                let w = stream_safetensors(&gpu, &src, &st, opts, &|_| {}, &|| false).await?;
                gpu.sync().await?;
                t.push(t0.elapsed().as_secs_f64());
                drop(w);
            }
            let s = median(t);
            println!("| cold page cache: stream_safetensors into GPU buffers, {concurrency} in flight | {:.3} s | {:.2} |", s, bytes / s / 1e9);
        }
    }
    Ok(())
}

/// Writes back dirty pages and drops the page cache, so the next read comes from the disk.
fn drop_page_cache() -> Result<()> {
    let io = |e: std::io::Error| gllm_web::Error::Io { file: "/proc/sys/vm/drop_caches".into(), msg: format!("{e} (GLLM_LOAD_COLD=1 needs Linux and root)") };
    std::process::Command::new("sync").status().map_err(io)?;
    std::fs::write("/proc/sys/vm/drop_caches", "3").map_err(io)
}
