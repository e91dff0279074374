//! The GPU vector index: exact top-k against a CPU brute force, binary + rescoring recall,
//! edge cases, export/import, and an index built from real embeddings. Natively and in the
//! browser.

mod common;

use common::R;
use gllm_web::reference::rng::Rng;
use gllm_web::{EmbedOptions, Embedder, Error, Gpu, Hit, SearchIndex, SearchMode};

#[cfg(target_arch = "wasm32")]
wasm_bindgen_test::wasm_bindgen_test_configure!(run_in_browser);

gpu_tests! {
    exact_topk_matches_cpu_and_binary_recall => exact_topk_matches_cpu_and_binary_recall,
    search_edge_cases => search_edge_cases,
    search_real_embeddings => search_real_embeddings,
}

const DIM: usize = 384;

fn unit(v: &mut [f32]) {
    let n = v.iter().map(|x| x * x).sum::<f32>().sqrt().max(1e-12);
    v.iter_mut().for_each(|x| *x /= n);
}

/// `n` unit vectors in `clusters` Gaussian-ish clusters (centre + noise), the usual
/// synthetic set for nearest-neighbour search; purely random vectors have no meaningful
/// neighbours.
fn clustered(rng: &mut Rng, n: usize, clusters: usize, noise: f32) -> (Vec<f32>, Vec<Vec<f32>>) {
    let centres: Vec<Vec<f32>> = (0..clusters).map(|_| rng.vec(DIM, 1.0)).collect();
    let mut data = Vec::with_capacity(n * DIM);
    for i in 0..n {
        let mut v: Vec<f32> = centres[i % clusters].iter().map(|c| c + rng.uniform(noise)).collect();
        unit(&mut v);
        data.extend(v);
    }
    (data, centres)
}

/// CPU brute force: the k best (score desc, id asc).
fn cpu_topk(data: &[f32], q: &[f32], k: usize) -> Vec<(u32, f32)> {
    let mut qn = q.to_vec();
    unit(&mut qn);
    let mut s: Vec<(u32, f32)> = data
        .chunks_exact(DIM)
        .enumerate()
        .map(|(i, v)| (i as u32, v.iter().zip(&qn).map(|(a, b)| (a * b) as f64).sum::<f64>() as f32))
        .collect();
    s.sort_by(|a, b| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0)));
    s.truncate(k);
    s
}

async fn exact_topk_matches_cpu_and_binary_recall(_shared: Gpu) -> R {
    let gpu = Gpu::new().await?; // own device: the readback count below must be exact
    let mut rng = Rng::new(21);
    let n = 10_000;
    let (data, centres) = clustered(&mut rng, n, 40, 1.2);
    let mut index = SearchIndex::new(&gpu, DIM)?;
    // Added in uneven batches, so the index grows (capacity 1024 → 16384) and copies.
    for part in data.chunks(3001 * DIM) {
        index.add(part)?;
    }
    assert_eq!(index.len(), n);
    // Recall of binary search with 100 and 200 candidates (10× and 20× k).
    let (mut hits, mut total) = ([0usize; 2], 0);
    for qi in 0..20 {
        let mut q: Vec<f32> = centres[qi % centres.len()].iter().map(|c| c + rng.uniform(1.2)).collect();
        unit(&mut q);
        let want = cpu_topk(&data, &q, 10);
        let before = gpu.stats().readbacks;
        let got = index.search(&q, 10, SearchMode::Exact).await?;
        assert_eq!(gpu.stats().readbacks - before, 1, "one readback per search");
        let got_ids: Vec<u32> = got.iter().map(|h| h.id).collect();
        let want_ids: Vec<u32> = want.iter().map(|w| w.0).collect();
        // Equal top-10 ids; near-equal scores (f32 sums in another order) may swap
        // neighbours, so compare as sets when the scores tie within 1e-5.
        if got_ids != want_ids {
            let tie = got.iter().zip(&want).all(|(g, w)| (g.score - w.1).abs() < 1e-5);
            let mut a = got_ids.clone();
            let mut b = want_ids.clone();
            a.sort();
            b.sort();
            if !(tie && a == b) {
                return Err(format!("query {qi}: GPU {got_ids:?} vs CPU {want_ids:?}").into());
            }
        }
        for (g, w) in got.iter().zip(&want) {
            assert!((g.score - w.1).abs() < 1e-4, "score {} vs {}", g.score, w.1);
        }
        for (h, candidates) in hits.iter_mut().zip([100, 200]) {
            let bin = index.search(&q, 10, SearchMode::Binary { candidates }).await?;
            *h += bin.iter().filter(|h| want_ids.contains(&h.id)).count();
        }
        total += 10;
    }
    let recall = hits.map(|h| h as f64 / total as f64);
    log!(
        "binary + exact rescoring, 10,000 vectors in 40 clusters, 20 queries: recall@10 = {:.3} with 100 candidates, {:.3} with 200",
        recall[0],
        recall[1]
    );
    if recall[1] < 0.95 {
        return Err(format!("recall@10 with 200 candidates {} < 0.95", recall[1]).into());
    }
    Ok(())
}

async fn search_edge_cases(gpu: Gpu) -> R {
    let mut index = SearchIndex::new(&gpu, DIM)?;
    let q = vec![0.5f32; DIM];
    // Empty index: no hits.
    assert!(index.search(&q, 5, SearchMode::Exact).await?.is_empty());
    let mut rng = Rng::new(22);
    let data = rng.vec(7 * DIM, 1.0);
    assert_eq!(index.add(&data)?, 0);
    assert_eq!(index.add(&[])?, 7);
    // k larger than the index: all of it, best first.
    let all = index.search(&q, 50, SearchMode::Exact).await?;
    assert_eq!(all.len(), 7);
    assert!(all.windows(2).all(|w| w[0].score >= w[1].score));
    let bin = index.search(&q, 50, SearchMode::Binary { candidates: 200 }).await?;
    // Binary with every row a candidate ranks like exact (scores from another summation
    // order may differ in the last bit).
    assert_eq!(bin.iter().map(|h| h.id).collect::<Vec<_>>(), all.iter().map(|h| h.id).collect::<Vec<_>>());
    assert!(bin.iter().zip(&all).all(|(b, a)| (b.score - a.score).abs() < 1e-5));
    // Wrong dimensions and bad k are input errors; the index stays usable.
    let input = |e: &Error| matches!(e, Error::Input(_));
    assert!(index.search(&q[..100], 5, SearchMode::Exact).await.as_ref().is_err_and(input));
    assert!(index.add(&q[..100]).as_ref().is_err_and(input));
    assert!(index.search(&q, 0, SearchMode::Exact).await.as_ref().is_err_and(input));
    assert!(index.search(&q, 300, SearchMode::Exact).await.as_ref().is_err_and(input));
    assert!(index.search(&q, 10, SearchMode::Binary { candidates: 5 }).await.as_ref().is_err_and(input));
    // Export / import round trip gives the same answers.
    let bytes = index.export().await?;
    assert_eq!(bytes.len(), 7 * DIM * 4);
    let restored = SearchIndex::import(&gpu, DIM, &bytes)?;
    let again = restored.search(&q, 3, SearchMode::Exact).await?;
    assert_eq!(again.iter().map(|h| h.id).collect::<Vec<_>>(), all[..3].iter().map(|h| h.id).collect::<Vec<_>>());
    assert!(again.iter().zip(&all).all(|(a, b)| (a.score - b.score).abs() < 1e-5), "scores after import");
    assert!(SearchIndex::import(&gpu, DIM, &bytes[..10]).is_err());
    Ok(())
}

/// Index real embeddings without reading them back, query with an embedded question.
async fn search_real_embeddings(gpu: Gpu) -> R {
    let embedder = Embedder::load(&gpu, &common::model_source("all-MiniLM-L6-v2"), EmbedOptions::default(), &|_| {}).await?;
    let docs = [
        "The cat sleeps on the warm windowsill.",
        "Stock markets fell sharply after the announcement.",
        "WebGPU lets web pages run compute shaders on the GPU.",
        "Fresh basil and tomatoes make a simple summer pasta.",
        "The hikers reached the summit before sunrise.",
    ];
    let mut index = SearchIndex::new(&gpu, embedder.dim())?;
    let (vectors, _) = embedder.embed_tensor(&docs)?;
    index.add_tensor(&vectors.ok_or("no vectors")?)?;
    for (query, want) in [("Where is the kitten napping?", 0u32), ("graphics card programming in the browser", 2), ("what to cook for dinner", 3)] {
        let (q, _) = embedder.embed_tensor(&[query])?;
        let hits: Vec<Hit> = index.search_tensor(&q.ok_or("no query")?, 2, SearchMode::Exact).await?;
        log!("{query:?} -> {hits:?}");
        assert_eq!(hits[0].id, want, "top hit for {query:?}");
    }
    Ok(())
}
