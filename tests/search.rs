//! The GPU vector index: exact top-k against a CPU brute force, binary + rescoring recall,
//! edge cases, export/import, and an index built from real embeddings. Natively and in the
//! browser.

mod common;

use common::R;
use gllm_web::kernels::search;
use gllm_web::reference::{self as cpu, check::*, rng::Rng};
use gllm_web::{EmbedOptions, Embedder, Error, Gpu, Hit, IndexOptions, IndexStorage, SearchIndex, SearchMode};

#[cfg(target_arch = "wasm32")]
wasm_bindgen_test::wasm_bindgen_test_configure!(run_in_browser);

gpu_tests! {
    exact_topk_matches_cpu_and_binary_recall => exact_topk_matches_cpu_and_binary_recall,
    search_edge_cases => search_edge_cases,
    search_real_embeddings => search_real_embeddings,
    int8_f16_and_local_topk_kernels_match_cpu => int8_f16_and_local_topk_kernels_match_cpu,
    int8_stage_recall_and_f16_storage => int8_stage_recall_and_f16_storage,
    barrier_free_and_block_paths_agree => barrier_free_and_block_paths_agree,
}

cpu_tests! {
    exact_topk_matches_cpu_and_binary_recall => exact_topk_matches_cpu_and_binary_recall,
    search_edge_cases => search_edge_cases,
    search_real_embeddings => search_real_embeddings,
    int8_f16_and_local_topk_kernels_match_cpu => int8_f16_and_local_topk_kernels_match_cpu,
    int8_stage_recall_and_f16_storage => int8_stage_recall_and_f16_storage,
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

async fn exact_topk_matches_cpu_and_binary_recall(shared: Gpu) -> R {
    let gpu = common::own_device(&shared).await?; // own device: the readback count below must be exact
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

/// quantize_i8, to_f16, the thread-per-row score (f32 scalar and vec4, f16), rescoring
/// of f16 rows and int8 codes, and the thread-local top-k against their CPU references, on
/// ragged sizes (n = 3001; d = 102 is not a multiple of 4, d = 100 is) and with ties.
async fn int8_f16_and_local_topk_kernels_match_cpu(gpu: Gpu) -> R {
    let mut rng = Rng::new(31);
    let n = 3001;
    for d in [102usize, 100] {
        let x = rng.vec(n * d, 1.0);
        let q = rng.vec(d, 1.0);
        let ids: Vec<u32> = (0..211).map(|i| (i * 13 % n) as u32).chain([n as u32 + 5]).collect();
        let (x_t, q_t, ids_t) = (gpu.upload_f32(&x, &[n, d])?, gpu.upload_f32(&q, &[d])?, gpu.upload_u32(&ids, &[ids.len()])?);
        let mut enc = gpu.encoder();
        let (q8, scales) = search::quantize_i8(&mut enc, &x_t)?;
        let h = search::to_f16(&mut enc, &x_t)?;
        let s32 = search::score(&mut enc, &q_t, &x_t, n - 1)?;
        let s16 = search::score(&mut enc, &q_t, &h, n)?;
        let r16 = search::rescore(&mut enc, &q_t, &h, n, &ids_t)?;
        let r8 = search::rescore_i8(&mut enc, &q_t, &q8, &scales, n, &ids_t)?;
        enc.submit()?;

        // int8 codes: round(x · 127 / max) may land on the other side of a .5 when the GPU's
        // division differs from the CPU's by an ulp: at most 1 apart, and rarely.
        let (want_q8, want_scales) = cpu::search::quantize_i8(&x, d);
        let got_q8 = gpu.readback_u32(&q8).await?;
        let (gv, wv) = (cpu::search::unpack_i8(&got_q8, got_q8.len() * 4), cpu::search::unpack_i8(&want_q8, want_q8.len() * 4));
        let off = gv.iter().zip(&wv).filter(|(a, b)| a != b).count();
        if gv.iter().zip(&wv).any(|(a, b)| (*a as i32 - *b as i32).abs() > 1) || off * 1000 > gv.len() {
            return Err(format!("d {d}: int8 codes: {off} of {} differ", gv.len()).into());
        }
        assert_close("int8 scales", &gpu.readback_f32(&scales).await?, &want_scales, F32_ELEMENTWISE)?;
        // f16: pack2x16float may round either way: within one f16 ulp.
        let want_h: Vec<f32> = x.iter().map(|&v| half::f16::from_f32(v).to_f32()).collect();
        let got_h: Vec<f32> = gpu.readback_f16(&h).await?.into_iter().map(f32::from).collect();
        assert_close("to_f16", &got_h, &want_h, Tol::Close { abs: 1e-7, rel: 1.0 / 1024.0 })?;
        let all: Vec<u32> = (0..n as u32).collect();
        assert_close("score f32", &gpu.readback_f32(&s32).await?, &cpu::search::rescore(&q, &x, &all[..n - 1]), F32_REDUCTION)?;
        assert_close("score f16", &gpu.readback_f32(&s16).await?, &cpu::search::rescore(&q, &got_h, &all), F16_WEIGHTS)?;
        let mut want_r16 = cpu::search::rescore(&q, &got_h, &ids[..ids.len() - 1]);
        want_r16.push(-3e38);
        assert_close("rescore f16", &gpu.readback_f32(&r16).await?, &want_r16, F16_WEIGHTS)?;
        let gs = gpu.readback_f32(&scales).await?;
        let mut want_r8 = cpu::search::rescore_i8(&q, &got_q8, &gs, &ids[..ids.len() - 1]);
        want_r8.push(-3e38);
        assert_close("rescore int8", &gpu.readback_f32(&r8).await?, &want_r8, F32_REDUCTION)?;
    }

    // Thread-local top-k: quantised scores (many ties, broken by ascending id), with and
    // without ids, k from 1 to 256, n ragged and k > n.
    let n = 5003;
    let scores: Vec<f32> = rng.vec(n, 1.0).iter().map(|v| (v * 8.0).round() / 8.0).collect();
    let ids: Vec<u32> = (0..n as u32).map(|i| (i * 7919) % 100_003).collect();
    let (s_t, i_t) = (gpu.upload_f32(&scores, &[n])?, gpu.upload_u32(&ids, &[n])?);
    // (k above MAX_LOCAL_K = 32 falls back to the block top-k.)
    for k in [1usize, 17, 32, 200] {
        let mut enc = gpu.encoder();
        let (a_s, a_i) = search::topk_local(&mut enc, &s_t, None, k)?;
        let (b_s, b_i) = search::topk_local(&mut enc, &s_t, Some(&i_t), k)?;
        let (c_s, c_i) = search::topk(&mut enc, &s_t, Some(&i_t), k)?;
        enc.submit()?;
        let (gi, gs) = gpu.readback_u32_f32(&a_i, &a_s).await?;
        assert_eq!(gi.into_iter().zip(gs).collect::<Vec<_>>(), cpu::search::topk(&scores, None, k), "topk_local k {k}");
        let (gi, gs) = gpu.readback_u32_f32(&b_i, &b_s).await?;
        let want = cpu::search::topk(&scores, Some(&ids), k);
        assert_eq!(gi.into_iter().zip(gs).collect::<Vec<_>>(), want, "topk_local with ids, k {k}");
        let (gi, gs) = gpu.readback_u32_f32(&c_i, &c_s).await?;
        assert_eq!(gi.into_iter().zip(gs).collect::<Vec<_>>(), want, "block topk with ids, k {k}");
    }
    let small = gpu.upload_f32(&[0.5, 2.0, 1.0, 2.0], &[4])?;
    let mut enc = gpu.encoder();
    let (s3, i3) = search::topk_local(&mut enc, &small, None, 6)?;
    enc.submit()?;
    let (i3, s3) = gpu.readback_u32_f32(&i3, &s3).await?;
    assert_eq!(&i3, &[1, 3, 2, 0, u32::MAX, u32::MAX]);
    assert_eq!(&s3[..4], &[2.0, 2.0, 1.0, 0.5]);
    Ok(())
}

/// Binary → int8 → exact recall@10 on 10,000 clustered vectors, and exact search with f16
/// storage against the f32 CPU brute force. f16 rows of unit vectors change a score by at
/// most 2^-11 ≈ 4.9e-4 (Cauchy–Schwarz over the per-value rounding), so the f16 top-10 must
/// hold every CPU top-10 hit that beats the CPU 11th by more than 1e-3, with scores within
/// 1e-3; the overlap is logged.
async fn int8_stage_recall_and_f16_storage(gpu: Gpu) -> R {
    let mut rng = Rng::new(23);
    let n = 10_000;
    let (data, centres) = clustered(&mut rng, n, 40, 1.2);
    let mut index = SearchIndex::new(&gpu, DIM)?;
    let mut half = SearchIndex::with_options(&gpu, DIM, IndexOptions { storage: IndexStorage::F16, ..Default::default() })?;
    for part in data.chunks(4099 * DIM) {
        index.add(part)?;
        half.add(part)?;
    }
    assert_eq!(half.bytes_per_vector(), (768, 48, 388));
    assert_eq!(index.bytes_per_vector(), (1536, 48, 388));
    let queries = 20;
    let (mut hit8, mut hit8_16, mut hit_bin, mut overlap16, mut same_as_cpu_cascade) = (0, 0, 0, 0, 0);
    for qi in 0..queries {
        let mut q: Vec<f32> = centres[qi % centres.len()].iter().map(|c| c + rng.uniform(1.2)).collect();
        unit(&mut q);
        let want = cpu_topk(&data, &q, 11);
        let want_ids: Vec<u32> = want[..10].iter().map(|w| w.0).collect();
        let mode = SearchMode::BinaryInt8 { candidates: 200, rescore: 40 };
        let got = index.search(&q, 10, mode).await?;
        hit8 += got.iter().filter(|h| want_ids.contains(&h.id)).count();
        let cascade = cpu::search::binary_int8_search(&q, &data, 200, 40, 10);
        same_as_cpu_cascade += got.iter().filter(|h| cascade.iter().any(|c| c.0 == h.id)).count();
        hit8_16 += half.search(&q, 10, mode).await?.iter().filter(|h| want_ids.contains(&h.id)).count();
        hit_bin += index.search(&q, 10, SearchMode::Binary { candidates: 40 }).await?.iter().filter(|h| want_ids.contains(&h.id)).count();
        let exact16 = half.search(&q, 10, SearchMode::Exact).await?;
        overlap16 += exact16.iter().filter(|h| want_ids.contains(&h.id)).count();
        for w in &want[..10] {
            if w.1 > want[10].1 + 1e-3 && !exact16.iter().any(|h| h.id == w.0) {
                return Err(format!("query {qi}: f16 exact top-10 misses id {} (score {}, 11th {})", w.0, w.1, want[10].1).into());
            }
        }
        for h in &exact16 {
            let exact: f32 = data[h.id as usize * DIM..(h.id as usize + 1) * DIM].iter().zip(&q).map(|(a, b)| a * b).sum();
            if (h.score - exact).abs() > 1e-3 {
                return Err(format!("query {qi}: f16 score {} vs f32 {exact}", h.score).into());
            }
        }
    }
    let total = (queries * 10) as f64;
    let (r8, r8_16, rb, o16, agree) =
        (hit8 as f64 / total, hit8_16 as f64 / total, hit_bin as f64 / total, overlap16 as f64 / total, same_as_cpu_cascade as f64 / total);
    log!(
        "10,000 vectors, 20 queries, recall@10 vs exact: binary 200 -> int8 40 -> exact {r8:.3} (f16 rows {r8_16:.3}; agreement with the CPU cascade {agree:.3}); binary 40 -> exact {rb:.3}; f16 exact top-10 overlap with CPU f32 {o16:.3}"
    );
    if r8 < 0.95 || r8_16 < 0.95 {
        return Err(format!("binary -> int8 -> exact recall@10 {r8} / {r8_16} (f16) < 0.95").into());
    }
    // Well-separated data: f16 storage gives exactly the CPU f32 top-10.
    let mut sep = SearchIndex::with_options(&gpu, DIM, IndexOptions { storage: IndexStorage::F16, ..Default::default() })?;
    let (sdata, scentres) = clustered(&mut rng, 2000, 200, 0.3);
    sep.add(&sdata)?;
    for c in scentres.iter().take(5) {
        let want: Vec<u32> = cpu_topk(&sdata, c, 10).iter().map(|w| w.0).collect();
        let got: Vec<u32> = sep.search(c, 10, SearchMode::Exact).await?.iter().map(|h| h.id).collect();
        let (mut a, mut b) = (got.clone(), want.clone());
        a.sort();
        b.sort();
        assert_eq!(a, b, "f16 exact top-10 on well-separated clusters");
    }
    // Bad cascade parameters and odd widths for f16 are input errors; f16 exports as f32.
    let input = |e: &Error| matches!(e, Error::Input(_));
    let q = &data[..DIM];
    assert!(index.search(q, 10, SearchMode::BinaryInt8 { candidates: 200, rescore: 5 }).await.as_ref().is_err_and(input));
    assert!(index.search(q, 10, SearchMode::BinaryInt8 { candidates: 30, rescore: 40 }).await.as_ref().is_err_and(input));
    assert!(index.search(q, 10, SearchMode::BinaryInt8 { candidates: 300, rescore: 40 }).await.as_ref().is_err_and(input));
    assert!(SearchIndex::with_options(&gpu, 7, IndexOptions { storage: IndexStorage::F16, ..Default::default() }).as_ref().is_err_and(input));
    let mut small = SearchIndex::with_options(&gpu, DIM, IndexOptions { storage: IndexStorage::F16, ..Default::default() })?;
    small.add(&data[..5 * DIM])?;
    let bytes = small.export().await?;
    assert_eq!(bytes.len(), 5 * DIM * 4);
    let back: Vec<f32> = bytes.chunks_exact(4).map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]])).collect();
    assert_close("f16 export", &back, &data[..5 * DIM], Tol::Close { abs: 1e-4, rel: 1.0 / 1024.0 })?;
    // A cascade over fewer vectors than `rescore` returns them all.
    let few = small.search(q, 10, SearchMode::BinaryInt8 { candidates: 200, rescore: 40 }).await?;
    assert_eq!(few.len(), 5);
    assert_eq!(few[0].id, 0);
    Ok(())
}

/// The barrier-free kernels (thread-per-row scan, thread-local top-k) and the GPU ones
/// (matvec, block top-k) give the CPU brute-force top-10 on every mode, whichever the
/// adapter would pick.
async fn barrier_free_and_block_paths_agree(gpu: Gpu) -> R {
    let mut rng = Rng::new(24);
    let n = 3000;
    let (data, centres) = clustered(&mut rng, n, 30, 1.0);
    for barrier_free in [true, false] {
        for storage in [IndexStorage::F32, IndexStorage::F16] {
            let mut index = SearchIndex::with_options(&gpu, DIM, IndexOptions { storage, barrier_free: Some(barrier_free) })?;
            index.add(&data)?;
            for c in centres.iter().take(3) {
                let want = cpu_topk(&data, c, 10);
                for mode in [SearchMode::Exact, SearchMode::Binary { candidates: 256 }, SearchMode::BinaryInt8 { candidates: 256, rescore: 64 }] {
                    let got = index.search(c, 10, mode).await?;
                    let tol = if storage == IndexStorage::F16 { 1e-3 } else { 1e-5 };
                    let same = got.iter().zip(&want).all(|(g, w)| g.id == w.0 || (g.score - w.1).abs() < tol);
                    if !same || got.len() != 10 {
                        return Err(format!("barrier_free {barrier_free}, {storage:?}, {mode:?}: {got:?} vs {want:?}").into());
                    }
                }
            }
        }
    }
    Ok(())
}
