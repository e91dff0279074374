//! The cross-encoder path against the synthetic-reranker goldens (all-MiniLM-L6-v2 trunk +
//! pooler + formula head, PyTorch f32). Natively and in the browser.

mod common;

use common::R;
use gllm_web::{Error, Gpu, RerankOptions, Reranker};

#[cfg(target_arch = "wasm32")]
wasm_bindgen_test::wasm_bindgen_test_configure!(run_in_browser);

const MODEL: &str = "reranker-synthetic-minilm";
const GOLDEN: &str = include_str!("goldens/reranker-synthetic-minilm.json");

gpu_tests! {
    rerank_matches_goldens => rerank_matches_goldens,
    rerank_edge_cases => rerank_edge_cases,
}

cpu_tests! {
    rerank_matches_goldens => rerank_matches_goldens,
    rerank_edge_cases => rerank_edge_cases,
}

async fn load(gpu: &Gpu) -> Result<Reranker, Error> {
    Reranker::load(gpu, &common::model_source(MODEL), RerankOptions::default(), &|_| {}).await
}

async fn rerank_matches_goldens(shared: Gpu) -> R {
    // Its own device, so readbacks of tests running beside it do not enter the count.
    let gpu = common::own_device(&shared).await?;
    let golden: serde_json::Value = serde_json::from_str(GOLDEN)?;
    let query = golden["query"].as_str().ok_or("no query")?;
    let pairs = golden["pairs"].as_array().ok_or("no pairs")?;
    let docs: Vec<&str> = pairs.iter().map(|p| p["document"].as_str().unwrap_or_default()).collect();
    let reranker = load(&gpu).await?;
    let encoded = reranker.encode(query, &docs)?;
    for (i, p) in pairs.iter().enumerate() {
        let ids: Vec<u32> = serde_json::from_value(p["input_ids"].clone())?;
        let types: Vec<u32> = serde_json::from_value(p["token_type_ids"].clone())?;
        assert_eq!(encoded[i], (ids, types), "pair {i} encoding");
    }
    let before = gpu.stats().readbacks;
    let results = reranker.rerank(query, &docs, None).await?;
    assert_eq!(gpu.stats().readbacks - before, 1, "one readback per rerank call");
    for r in &results {
        let want = pairs[r.index]["logit"].as_f64().ok_or("no logit")? as f32;
        let want_sig = pairs[r.index]["sigmoid"].as_f64().ok_or("no sigmoid")? as f32;
        log!("doc {}: logit {:.6} (golden {want:.6}), score {:.6}", r.index, r.logit, r.score);
        if (r.logit - want).abs() >= 1e-3 || (r.score - want_sig).abs() >= 1e-3 {
            return Err(format!("doc {}: logit {} score {} vs golden {want} {want_sig}", r.index, r.logit, r.score).into());
        }
    }
    let order: Vec<usize> = results.iter().map(|r| r.index).collect();
    let want_order: Vec<usize> = serde_json::from_value(golden["ranking_by_logit"].clone())?;
    assert_eq!(order, want_order, "ranking");
    let top = reranker.rerank(query, &docs, Some(2)).await?;
    assert_eq!(top, results[..2].to_vec());
    Ok(())
}

async fn rerank_edge_cases(gpu: Gpu) -> R {
    let reranker = load(&gpu).await?;
    // No documents: an empty result, no GPU work.
    assert!(reranker.rerank("query", &[], None).await?.is_empty());
    // A long document is truncated from the document side: the query survives intact and
    // the pair fits the model's 512 tokens.
    let long = "token ".repeat(2000);
    let enc = reranker.encode("what is kept?", &[long.as_str()])?;
    let (ids, types) = &enc[0];
    assert_eq!(ids.len(), reranker.max_length());
    assert_eq!(&ids[..6], &[101, 2054, 2003, 2921, 1029, 102]);
    assert_eq!(types.iter().filter(|&&t| t == 0).count(), 6);
    let r = reranker.rerank("what is kept?", &[long.as_str(), "short doc"], None).await?;
    assert_eq!(r.len(), 2);
    assert!(r.iter().all(|x| x.logit.is_finite() && x.score > 0.0 && x.score < 1.0));
    // A query too long to leave room for any document is a typed error, and the reranker
    // keeps working afterwards.
    let huge_query = "query ".repeat(600);
    match reranker.rerank(&huge_query, &["doc"], None).await {
        Err(Error::Input(msg)) | Err(Error::Tokenizer(msg)) => log!("long query: {msg}"),
        other => return Err(format!("long query gave {other:?}").into()),
    }
    assert_eq!(reranker.rerank("q", &["a", "b", "c"], Some(10)).await?.len(), 3);
    Ok(())
}
