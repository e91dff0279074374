//! Query latency of the GPU vector index at 100,000 × 384 (exact; binary + rescoring;
//! binary → int8 → exact; with f32 and f16 storage; with the GPU kernels and the
//! barrier-free ones), against a CPU brute force in the same process, and reranker
//! throughput (32 documents of about 100 tokens). Random weights from the real
//! all-MiniLM-L6-v2 config; clustered random unit vectors as the index.
//!
//! Run: `cargo bench --bench search` (`GLLM_BENCH_VECTORS` overrides 100000).

mod common;

use std::time::Instant;

use common::median;
use gllm_web::reference::rng::Rng;
use gllm_web::{EmbedOptions, Embedder, Gpu, IndexOptions, IndexStorage, RerankOptions, Reranker, SearchIndex, SearchMode};

fn main() -> gllm_web::Result<()> {
    pollster::block_on(run())
}

async fn run() -> gllm_web::Result<()> {
    let gpu = Gpu::new().await?;
    let name = gpu.caps().adapter.split(" (").next().unwrap_or("?").to_string();
    let cpu_adapter = gpu.caps().is_cpu;
    let embedder = Embedder::load(&gpu, &common::random_bert(false).await?, EmbedOptions::default(), &|_| {}).await?;
    let dim = embedder.dim();
    let default_n = if cpu_adapter { 20_000 } else { 100_000 };
    let n: usize = std::env::var("GLLM_BENCH_VECTORS").ok().and_then(|v| v.parse().ok()).unwrap_or(default_n);

    let mut rng = Rng::new(3);
    let centres: Vec<Vec<f32>> = (0..100).map(|_| rng.vec(dim, 1.0)).collect();
    let mut data = Vec::with_capacity(n * dim);
    for i in 0..n {
        let mut v: Vec<f32> = centres[i % 100].iter().map(|c| c + rng.uniform(1.2)).collect();
        let norm = v.iter().map(|x| x * x).sum::<f32>().sqrt();
        v.iter_mut().for_each(|x| *x /= norm);
        data.extend(v);
    }
    let query = "how do I pause a program for a few seconds?";
    let runs = if cpu_adapter { 5 } else { 50 };
    println!("adapter: {}", gpu.caps().adapter);
    println!("\n| bench ({n} × {dim} vectors, k = 10) | median latency |\n|---|---|");
    let exact = SearchMode::Exact;
    let binary = SearchMode::Binary { candidates: 200 };
    let int8 = SearchMode::BinaryInt8 { candidates: 200, rescore: 40 };
    // (storage, barrier-free kernels: None = the adapter's default, modes)
    let configs = [
        (IndexStorage::F32, None, vec![exact, binary, int8]),
        (IndexStorage::F32, Some(!cpu_adapter), vec![exact, binary]),
        (IndexStorage::F16, None, vec![exact, binary, int8]),
    ];
    for (storage, barrier_free, modes) in configs {
        let mut index = SearchIndex::with_options(&gpu, dim, IndexOptions { storage, barrier_free })?;
        for chunk in data.chunks(8192 * dim) {
            index.add(chunk)?;
        }
        let (row, bits, q8) = index.bytes_per_vector();
        let kernels = match barrier_free.unwrap_or(cpu_adapter) {
            true => "barrier-free kernels",
            false => "GPU kernels",
        };
        let store = format!("{storage:?}").to_lowercase();
        println!("| memory per vector: {store} row {row} B, sign bits {bits} B, int8 code + scale {q8} B | |");
        for mode in modes {
            let label = match mode {
                SearchMode::Exact => "exact".to_string(),
                SearchMode::Binary { candidates } => format!("binary {candidates} → exact"),
                SearchMode::BinaryInt8 { candidates, rescore } => format!("binary {candidates} → int8 {rescore} → exact"),
            };
            let (mut with_embed, mut search_only) = (Vec::new(), Vec::new());
            for r in 0..runs + 3 {
                let t0 = Instant::now();
                let (q, _) = embedder.embed_tensor(&[query])?;
                let q = q.expect("one query");
                let hits = index.search_tensor(&q, 10, mode).await?;
                let t1 = t0.elapsed().as_secs_f64();
                let t2 = Instant::now();
                let hits2 = index.search(&data[..dim], 10, mode).await?;
                let t3 = t2.elapsed().as_secs_f64();
                assert_eq!((hits.len(), hits2.len()), (10, 10));
                if r >= 3 {
                    with_embed.push(t1);
                    search_only.push(t3);
                }
            }
            let name = format!("{name} {label}, {store} rows, {kernels}");
            println!("| {name}: embed query + search | {:.3} ms |", median(with_embed) * 1e3);
            println!("| {name}: search (vector query) | {:.3} ms |", median(search_only) * 1e3);
        }
    }
    // CPU brute force: one thread, dot products and a partial sort, same data.
    let q = &data[dim * 7..dim * 8];
    let mut cpu = Vec::new();
    for _ in 0..if cpu_adapter { 5 } else { 20 } {
        let t0 = Instant::now();
        let mut scores: Vec<(f32, u32)> = data
            .chunks_exact(dim)
            .enumerate()
            .map(|(i, v)| (v.iter().zip(q).map(|(a, b)| a * b).sum::<f32>(), i as u32))
            .collect();
        scores.select_nth_unstable_by(10, |a, b| b.0.total_cmp(&a.0));
        scores.truncate(10);
        scores.sort_by(|a, b| b.0.total_cmp(&a.0));
        std::hint::black_box(&scores);
        cpu.push(t0.elapsed().as_secs_f64());
    }
    println!("| CPU brute force (Rust, 1 thread, this host): search (vector query) | {:.3} ms |", median(cpu) * 1e3);

    // Reranker throughput: 32 documents of about 100 tokens, one batch.
    let reranker = Reranker::load(&gpu, &common::random_bert(true).await?, RerankOptions::default(), &|_| {}).await?;
    let doc = "The standard library offers modules for files, processes, networking, text processing, numbers, dates and times, compression, data formats and much more, and this sentence keeps going so that the document is roughly one hundred tokens long when it is tokenized with the WordPiece vocabulary of the model, including punctuation, numbers like 3.14159 and 2026, and a few rarer words such as serialization, subprocess and memoization.";
    let docs: Vec<&str> = vec![doc; 32];
    let tokens = reranker.encode(query, &docs[..1])?[0].0.len();
    let mut rr = Vec::new();
    for r in 0..if cpu_adapter { 3 } else { 23 } {
        let t0 = Instant::now();
        let out = reranker.rerank(query, &docs, None).await?;
        assert_eq!(out.len(), 32);
        if r >= 3 || cpu_adapter {
            rr.push(t0.elapsed().as_secs_f64());
        }
    }
    let s = median(rr);
    println!("| {name} rerank 32 pairs of {tokens} tokens | {:.2} ms ({:.0} pairs/s) |", s * 1e3, 32.0 / s);
    Ok(())
}
