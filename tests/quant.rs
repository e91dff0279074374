//! Quantized formats: CPU round trips, and the GPU kernels against the CPU
//! dequantize-then-f32-matmul reference.

mod common;

use gllm_web::kernels::quant::{qlinear_with, subgroup_rows, QLinearOptions, QMatrix};
use gllm_web::kernels::quantize::{quantize_raw, quantize_rows, SrcKind};
use gllm_web::quant::{self, awq::AwqWeight, QuantFormat};
use gllm_web::reference::{self as cpu, rng::Rng};
use gllm_web::nn::{Linear, LinearWeight};
use gllm_web::{DType, Gpu};

#[cfg(target_arch = "wasm32")]
wasm_bindgen_test::wasm_bindgen_test_configure!(run_in_browser);

gpu_tests! {
    quant_linear_matches_cpu => quant_linear_matches_cpu,
    awq_linear_matches_cpu => awq_linear_matches_cpu,
    quant_bad_input_is_typed_error => quant_bad_input_is_typed_error,
    quantized_bert_matches_dense => quantized_bert_matches_dense,
    dense_matvec_matches_cpu => dense_matvec_matches_cpu,
    gpu_quantize_is_bit_identical => gpu_quantize_is_bit_identical,
    fused_linear_matches_cpu => fused_linear_matches_cpu,
    concat_rows_is_exact => concat_rows_is_exact,
}

// The CPU backend runs the same checks (its quantized products: q8_0 in the SIMD kernel, the
// other block formats row by row; AWQ is not covered).
cpu_tests! {
    quant_linear_matches_cpu => quant_linear_matches_cpu,
    quant_bad_input_is_typed_error => quant_bad_input_is_typed_error,
    quantized_bert_matches_dense => quantized_bert_matches_dense,
    dense_matvec_matches_cpu => dense_matvec_matches_cpu,
    gpu_quantize_is_bit_identical => gpu_quantize_is_bit_identical,
    fused_linear_matches_cpu => fused_linear_matches_cpu,
    concat_rows_is_exact => concat_rows_is_exact,
}

/// Values like trained weights: mostly small with some outliers.
fn weights(rng: &mut Rng, n: usize) -> Vec<f32> {
    (0..n)
        .map(|i| {
            let v = rng.uniform(1.0);
            if i % 61 == 0 { v * 8.0 } else { v * v * v.signum() }
        })
        .collect()
}

#[cfg(not(target_arch = "wasm32"))]
#[test]
fn roundtrip_within_format_bound() {
    let mut rng = Rng::new(7);
    for fmt in QuantFormat::ALL {
        let be = fmt.block_elems();
        let x = weights(&mut rng, be * 24);
        let q = quant::quantize(fmt, &x).unwrap();
        assert_eq!(q.len(), 24 * fmt.block_bytes());
        let y = quant::dequantize(fmt, &q, x.len()).unwrap();
        let mut worst = 0f32;
        for (xb, yb) in x.chunks(be).zip(y.chunks(be)) {
            let range = xb.iter().copied().fold(f32::NEG_INFINITY, f32::max) - xb.iter().copied().fold(f32::INFINITY, f32::min);
            let amax = xb.iter().fold(0f32, |m, v| m.max(v.abs()));
            // Formats with a zero point scale by the range; symmetric ones by max|x| (≤ range).
            let scale = range.max(amax);
            for (a, b) in xb.iter().zip(yb) {
                worst = worst.max((a - b).abs() / scale);
            }
        }
        let bound = fmt.roundtrip_bound();
        log!("{}: worst round-trip error {worst:.5} of the block range (bound {bound:.5})", fmt.name());
        assert!(worst <= bound, "{}: round-trip error {worst} > bound {bound}", fmt.name());
        assert!(worst > 0.0, "{}: a lossless round trip means the test data is degenerate", fmt.name());
    }
}

#[cfg(not(target_arch = "wasm32"))]
#[test]
fn awq_roundtrip_within_bound() {
    let mut rng = Rng::new(11);
    let (n, k) = (24, 256);
    let w = weights(&mut rng, n * k);
    let a = AwqWeight::quantize(&w, n, k).unwrap();
    let d = a.dequantize().unwrap();
    let mut worst = 0f32;
    for r in 0..n {
        for g in 0..k / 128 {
            let grp = &w[r * k + g * 128..r * k + (g + 1) * 128];
            let range = grp.iter().copied().fold(f32::NEG_INFINITY, f32::max) - grp.iter().copied().fold(f32::INFINITY, f32::min);
            for j in 0..128 {
                let i = r * k + g * 128 + j;
                worst = worst.max((w[i] - d[i]).abs() / range);
            }
        }
    }
    log!("awq: worst round-trip error {worst:.5} of the group range (bound 1/15)");
    assert!(worst <= 1.0 / 15.0 + 1e-3 && worst > 0.0, "awq round trip {worst}");
}

#[cfg(not(target_arch = "wasm32"))]
#[test]
fn bad_block_lengths_are_errors() {
    for fmt in QuantFormat::ALL {
        let be = fmt.block_elems();
        assert!(fmt.byte_len(be + 1).is_err());
        assert!(quant::dequantize(fmt, &vec![0u8; fmt.block_bytes() - 1], be).is_err());
        assert!(quant::quantize(fmt, &vec![0f32; be - 1]).is_err());
        assert!(quant::relayout(fmt, &vec![0u8; fmt.block_bytes() + 3]).is_err());
    }
    assert!(AwqWeight::quantize(&[0.0; 8 * 100], 8, 100).is_err());
}

#[cfg(not(target_arch = "wasm32"))]
#[test]
fn memory_fraction_of_f32() {
    // GPU bytes of a 4096×4096 weight, re-laid, relative to f32.
    let f32_bytes = 4096.0 * 4096.0 * 4.0;
    for (fmt, limit) in [
        (QuantFormat::Q4_0, 0.15),
        (QuantFormat::Q8_0, 0.27),
        (QuantFormat::Q2K, 0.083),
        (QuantFormat::Q3K, 0.108),
        (QuantFormat::IQ4NL, 0.15),
        (QuantFormat::Q5_1, 0.19),
        (QuantFormat::Q5K, 0.172),
    ] {
        let nb = 4096 * 4096 / fmt.block_elems();
        let bytes = (nb * fmt.body_words() * 4 + if fmt.split_scale() { nb.div_ceil(2) * 4 } else { 0 }) as f64;
        log!("{}: {:.4}× f32", fmt.name(), bytes / f32_bytes);
        assert!(bytes / f32_bytes <= limit, "{} uses {:.4}× f32", fmt.name(), bytes / f32_bytes);
    }
}

#[cfg(not(target_arch = "wasm32"))]
#[test]
fn names_and_ggml_types() {
    use gllm_web::loader::gguf::GgmlType;
    use gllm_web::loader::gguf_hf::quant_format;
    use gllm_web::nn::LoadDType;
    let want = [
        (QuantFormat::Q8_0, "q8_0", 8, 32, 34),
        (QuantFormat::Q4_0, "q4_0", 2, 32, 18),
        (QuantFormat::Q4_1, "q4_1", 3, 32, 20),
        (QuantFormat::Q5_0, "q5_0", 6, 32, 22),
        (QuantFormat::Q4K, "q4_K", 12, 256, 144),
        (QuantFormat::Q6K, "q6_K", 14, 256, 210),
        (QuantFormat::Q5_1, "q5_1", 7, 32, 24),
        (QuantFormat::Q5K, "q5_K", 13, 256, 176),
        (QuantFormat::Q3K, "q3_K", 11, 256, 110),
        (QuantFormat::Q2K, "q2_K", 10, 256, 84),
        (QuantFormat::IQ4NL, "iq4_nl", 20, 32, 18),
    ];
    assert_eq!(want.len(), QuantFormat::ALL.len());
    for (fmt, name, id, be, bb) in want {
        assert_eq!((fmt.name(), fmt.ggml_type(), fmt.block_elems(), fmt.block_bytes()), (name, id, be, bb));
        assert_eq!(QuantFormat::parse(name), Some(fmt));
        assert_eq!(QuantFormat::from_ggml_type(id), Some(fmt));
        let t = GgmlType::from_id(id).unwrap();
        assert_eq!(quant_format(t), Some(fmt), "{name}");
        // The GPU body is whole words: the block less a split-off f16 `d`.
        let body = bb - if fmt.split_scale() { 2 } else { 0 };
        assert_eq!(body, 4 * fmt.body_words(), "{name}");
        assert!(QuantFormat::names().contains(name));
        assert!(matches!(name.parse::<LoadDType>(), Ok(LoadDType::Quant(f)) if f == fmt), "{name}");
    }
    // The parse error lists every format.
    match "q7_K".parse::<LoadDType>() {
        Err(gllm_web::Error::Input(m)) => assert!(QuantFormat::ALL.iter().all(|f| m.contains(f.name())), "{m}"),
        other => panic!("q7_K: {other:?}"),
    }
}

/// Hand-built blocks of the formats added after the first six, decoded by the CPU reference;
/// the expected values are worked out by hand from ggml's layout (ggml-common.h) and its
/// `dequantize_row_*` (ggml-quants.c), as the comments show. f16: 0x3400 = 0.25, 0x3800 = 0.5,
/// 0x4000 = 2, 0xBC00 = −1.
#[cfg(not(target_arch = "wasm32"))]
#[test]
fn dequantize_matches_ggml_on_hand_built_blocks() {
    let check = |fmt: QuantFormat, b: &[u8], want: &[(usize, f32)]| {
        let got = quant::dequantize(fmt, b, fmt.block_elems()).unwrap();
        for &(i, v) in want {
            assert_eq!(got[i], v, "{} value {i}: expected {v}, got {}", fmt.name(), got[i]);
        }
        log!("{}: {} hand-checked values equal", fmt.name(), want.len());
    };

    // q5_1 { d, m, qh: u32, qs[16] }: x = d·(nibble | 16·bit j of qh) + m.
    let mut b = vec![0u8; 24];
    b[0..2].copy_from_slice(&0x3800u16.to_le_bytes()); // d = 0.5
    b[2..4].copy_from_slice(&0xBC00u16.to_le_bytes()); // m = −1
    b[4..8].copy_from_slice(&0x8000_0001u32.to_le_bytes()); // 5th bit of values 0 and 31
    for j in 0..16 {
        b[8 + j] = j as u8 | (15 - j as u8) << 4; // value j: j, value j + 16: 15 − j
    }
    check(QuantFormat::Q5_1, &b, &[
        (0, 7.0),   // (0 + 16)·0.5 − 1
        (1, -0.5),  // 1·0.5 − 1
        (15, 6.5),  // 15·0.5 − 1
        (16, 6.5),  // 15·0.5 − 1
        (30, -0.5), // 1·0.5 − 1
        (31, 7.0),  // (0 + 16)·0.5 − 1
    ]);

    // q2_K { scales[16] (low nibble sc, high m), qs[64], d, dmin }: value i is bits
    // 2·((i % 128) / 32) of qs[32·(i / 128) + i % 32], group i / 16; x = d·sc·q − dmin·m.
    let mut b = vec![0u8; 84];
    b[80..82].copy_from_slice(&0x4000u16.to_le_bytes()); // d = 2
    b[82..84].copy_from_slice(&0x3400u16.to_le_bytes()); // dmin = 0.25
    b[0] = 0x21; // group 0: sc 1, m 2
    b[1] = 0x03; // group 1: sc 3, m 0
    b[2] = 0x12; // group 2: sc 2, m 1
    b[4] = 0x04; // group 4: sc 4
    b[6] = 0x01; // group 6: sc 1
    b[8] = 0xF5; // group 8: sc 5, m 15
    b[14] = 0xA7; // group 14: sc 7, m 10
    b[16] = 0xE7; // qs[0]: value 0 → 3, 32 → 1, 64 → 2, 96 → 3
    b[16 + 16] = 0x1B; // qs[16]: value 16 → 3, 48 → 2, 80 → 1, 112 → 0
    b[16 + 32] = 0xFF; // qs[32]: values 128, 160, 192, 224 → 3
    check(QuantFormat::Q2K, &b, &[
        (0, 5.5),     // 2·1·3 − 0.25·2
        (1, -0.5),    // 2·1·0 − 0.25·2
        (16, 18.0),   // 2·3·3
        (17, 0.0),    // 2·3·0
        (32, 3.75),   // 2·2·1 − 0.25·1
        (33, -0.25),  // 2·2·0 − 0.25·1
        (48, 0.0),    // group 3: sc 0, m 0
        (64, 16.0),   // 2·4·2
        (96, 6.0),    // 2·1·3
        (128, 26.25), // 2·5·3 − 0.25·15
        (160, 0.0),   // group 10: sc 0, m 0
        (224, 39.5),  // 2·7·3 − 0.25·10
    ]);

    // q3_K { hmask[32], qs[64], scales[12], d }: low bits as q2_K, high bit
    // 4·(i / 128) + (i % 128) / 32 of hmask[i % 32] (clear: −4); 6-bit group scales − 32.
    let mut b = vec![0u8; 110];
    b[108..110].copy_from_slice(&0x3800u16.to_le_bytes()); // d = 0.5
    b[0] = 0x15; // hmask[0]: high bits of values 0, 64, 128
    b[32] = 0xE7; // qs[0]: value 0 → 3, 32 → 1, 64 → 2, 96 → 3
    b[32 + 32] = 0x02; // qs[32]: value 128 → 2
    b[96] = 0x81; // group 0 low 1, group 8 low 8
    b[96 + 1] = 0x0E; // group 1 low 14
    b[96 + 8] = 0x22; // high bits: group 0 → 2, group 8 → 2 (bits 4..5)
    b[96 + 9] = 0x01; // high bits: group 1 → 1
    // scales: group 0 = 33 − 32 = 1, group 1 = 30 − 32 = −2, group 8 = 40 − 32 = 8, others −32
    check(QuantFormat::Q3K, &b, &[
        (0, 1.5),    // 0.5·1·3
        (1, -2.0),   // 0.5·1·(0 − 4)
        (16, 4.0),   // 0.5·(−2)·(0 − 4)
        (32, 48.0),  // 0.5·(−32)·(1 − 4)
        (64, -32.0), // 0.5·(−32)·2
        (96, 16.0),  // 0.5·(−32)·(3 − 4)
        (128, 8.0),  // 0.5·8·2
        (129, -16.0), // 0.5·8·(0 − 4)
    ]);

    // q5_K { d, dmin, scales[12] (as q4_K), qh[32], qs[128] }: sub-block j, value l: nibble of
    // qs[32·(j / 2) + l] (low for even j) | 16·bit j of qh[l]; x = d·sc·q − dmin·m.
    let mut b = vec![0u8; 176];
    b[0..2].copy_from_slice(&0x3800u16.to_le_bytes()); // d = 0.5
    b[2..4].copy_from_slice(&0x4000u16.to_le_bytes()); // dmin = 2
    b[4] = 0x43; // sub-block 0 sc 3; top bits 01: sub-block 4 sc += 16
    b[4 + 4] = 0x01; // sub-block 0 m 1
    b[4 + 8] = 0x25; // sub-block 4: sc low 5 (→ 21), m low 2 (→ 2)
    b[16] = 0x11; // qh[0]: bit 0 (value 0), bit 4 (value 128)
    b[16 + 1] = 0x01; // qh[1]: bit 0 (value 1)
    b[48] = 0x9A; // qs[0]: value 0 → 10, value 32 → 9
    b[48 + 64] = 0x07; // qs[64]: value 128 → 7
    check(QuantFormat::Q5K, &b, &[
        (0, 37.0),    // 0.5·3·(10 + 16) − 2·1
        (1, 22.0),    // 0.5·3·16 − 2·1
        (2, -2.0),    // 0.5·3·0 − 2·1
        (32, 0.0),    // sub-block 1: sc 0, m 0
        (128, 237.5), // 0.5·21·(7 + 16) − 2·2
        (129, -4.0),  // 0.5·21·0 − 2·2
    ]);

    // iq4_nl { d, qs[16] }: nibbles as q4_0, x = d·kvalues_iq4nl[q].
    let mut b = vec![0u8; 18];
    b[0..2].copy_from_slice(&0x3800u16.to_le_bytes()); // d = 0.5
    b[2] = 0xF0; // value 0 → kv[0] = −127, value 16 → kv[15] = 113
    b[3] = 0x78; // value 1 → kv[8] = 1, value 17 → kv[7] = −10
    b[17] = 0x3C; // value 15 → kv[12] = 53, value 31 → kv[3] = −65
    check(QuantFormat::IQ4NL, &b, &[(0, -63.5), (16, 56.5), (1, 0.5), (17, -5.0), (15, 26.5), (31, -32.5), (2, -63.5)]);
}

/// The CPU dequantizers of the later formats against ggml's, as ported by the `gguf` Python
/// package (random blocks with random scales, `scripts/make_quant_goldens.py`), bit for bit;
/// and the q5_1 quantizer against its port of `quantize_row_q5_1_ref`.
#[cfg(not(target_arch = "wasm32"))]
#[test]
fn dequantize_matches_gguf_py() {
    let golden: serde_json::Value = serde_json::from_str(include_str!("goldens/ggml-dequant.json")).unwrap();
    let hex = |s: &str| -> Vec<u8> { (0..s.len()).step_by(2).map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap()).collect() };
    let f32s = |v: &serde_json::Value| -> Vec<f32> { v.as_array().unwrap().iter().map(|b| f32::from_bits(b.as_u64().unwrap() as u32)).collect() };
    let mut checked = std::collections::BTreeMap::new();
    for case in golden["dequantize"].as_array().unwrap() {
        let fmt = QuantFormat::parse(case["format"].as_str().unwrap()).unwrap();
        let want = f32s(&case["f32_bits"]);
        let got = quant::dequantize(fmt, &hex(case["block"].as_str().unwrap()), fmt.block_elems()).unwrap();
        for (i, (g, w)) in got.iter().zip(&want).enumerate() {
            assert_eq!(g.to_bits(), w.to_bits(), "{} value {i}: expected {w}, got {g}", fmt.name());
        }
        *checked.entry(fmt.name()).or_insert(0) += 1;
    }
    log!("blocks equal to gguf-py's dequantize: {checked:?}");
    assert_eq!(checked.len(), 5);
    for case in golden["quantize"].as_array().unwrap() {
        let fmt = QuantFormat::parse(case["format"].as_str().unwrap()).unwrap();
        let got = quant::quantize(fmt, &f32s(&case["f32_bits"])).unwrap();
        assert_eq!(got, hex(case["blocks"].as_str().unwrap()), "{}: quantized blocks differ from gguf-py's", fmt.name());
        log!("{}: {} quantized bytes equal to gguf-py's", fmt.name(), got.len());
    }
}

/// ‖got − want‖ / ‖want‖
fn rel_err(got: &[f32], want: &[f32]) -> f32 {
    let num: f64 = got.iter().zip(want).map(|(a, b)| ((a - b) as f64).powi(2)).sum();
    let den: f64 = want.iter().map(|b| (*b as f64).powi(2)).sum();
    (num / den).sqrt() as f32
}

/// Tolerances on ‖out − ref‖ / ‖ref‖ against the CPU dequantize-then-f32-matmul reference.
const REL_F32: f32 = 1e-4;
const REL_F16: f32 = 3e-3;

/// The kernel variants this device can run: (label, f16 activations, options). Besides the
/// automatic choice (for these small matrices: 2 rows × a full subgroup or 32 threads), the
/// matrix-vector kernel runs with 2 rows × 4 threads per group (a segmented reduction), with
/// 4 rows × the full thread count, and with 2 rows × 128 threads (several subgroups per row);
/// and each kernel barrier-free (`qmatvec_direct` / `qmatmul_direct`, CPU adapters' default).
fn variants(gpu: &Gpu) -> Vec<(String, bool, QLinearOptions)> {
    let full = subgroup_rows(gpu).unwrap_or(32).min(32) as u16;
    let mut v = Vec::new();
    for f16 in [false, true] {
        if f16 && !gpu.caps().shader_f16 {
            continue;
        }
        let act = if f16 { "f16" } else { "f32" };
        for no_subgroups in [true, false] {
            if !no_subgroups && subgroup_rows(gpu).is_none() {
                continue;
            }
            let red = if no_subgroups { "shared-reduce" } else { "subgroup" };
            let base = QLinearOptions { no_subgroups, barrier_free: Some(false), ..Default::default() };
            v.push((format!("{act} {red}"), f16, base));
            if no_subgroups {
                // Barrier-free (the default on CPU adapters): no reduction at all.
                v.push((format!("{act} barrier-free"), f16, QLinearOptions { barrier_free: Some(true), ..base }));
            }
            v.push((format!("{act} {red} 2 rows × 4 threads"), f16, QLinearOptions { rows: Some(2), threads: Some(4), ..base }));
            let t = if no_subgroups { 32 } else { full };
            v.push((format!("{act} {red} 4 rows × {t} threads"), f16, QLinearOptions { rows: Some(4), threads: Some(t), ..base }));
            // More threads than a subgroup: subgroup sums combined in shared memory.
            v.push((format!("{act} {red} 2 rows × 128 threads"), f16, QLinearOptions { rows: Some(2), threads: Some(128), ..base }));
        }
    }
    v
}

/// Runs `w` on `x` ([m, k]) with each variant and compares with `want` = x · dequant(W)ᵀ + b.
async fn check_variants(gpu: &Gpu, what: &str, w: &QMatrix, x: &[f32], m: usize, bias: Option<&[f32]>, want: &[f32]) -> Result<(), String> {
    let k = w.cols;
    let e = |e: gllm_web::Error| format!("{what}: {e}");
    let b = match bias {
        Some(b) => Some(gpu.upload_f32(b, &[b.len()]).map_err(e)?),
        None => None,
    };
    // The matrix-matrix kernel has no subgroup, rows or threads variant: it runs tiled
    // (shared memory) and barrier-free.
    let runs: Vec<_> = variants(gpu).into_iter().filter(|(_, _, o)| m == 1 || (o.no_subgroups && o.rows.is_none())).collect();
    for (label, f16, opts) in runs {
        let xt = if f16 { gpu.upload_f32_as_f16(x, &[m, k]).map_err(e)? } else { gpu.upload_f32(x, &[m, k]).map_err(e)? };
        let mut enc = gpu.encoder();
        let y = qlinear_with(&mut enc, &xt, w, b.as_ref(), opts).map_err(e)?;
        enc.submit().map_err(e)?;
        let got = if y.dtype() == DType::F16 {
            gpu.readback_f16(&y).await.map_err(e)?.iter().map(|h| h.to_f32()).collect()
        } else {
            gpu.readback_f32(&y).await.map_err(e)?
        };
        let err = rel_err(&got, want);
        let tol = if f16 { REL_F16 } else { REL_F32 };
        let kernel = if m == 1 { "matvec" } else { "matmul" };
        log!("{what} m={m} {kernel} {label}: rel err {err:.2e} (tol {tol:.0e})");
        if !(err < tol) {
            return Err(format!("{what} m={m} {kernel} {label}: rel err {err:.3e} >= {tol:.0e}"));
        }
    }
    Ok(())
}

async fn quant_linear_matches_cpu(gpu: Gpu) -> Result<(), String> {
    let mut rng = Rng::new(42);
    let mut ran = 0;
    for fmt in QuantFormat::ALL {
        // Ragged: N not a multiple of the 64-row tile or of a workgroup's rows; K a few blocks
        // (not a multiple of 64 for the 32-value formats).
        let (n, k) = if fmt.block_elems() == 256 { (71, 768) } else { (71, 224) };
        let wv = weights(&mut rng, n * k);
        let blocks = quant::quantize(fmt, &wv).map_err(|e| e.to_string())?;
        let deq = quant::dequantize(fmt, &blocks, n * k).map_err(|e| e.to_string())?;
        let w = QMatrix::from_gguf_blocks(&gpu, fmt, n, k, &blocks).map_err(|e| e.to_string())?;
        let bias = rng.vec(n, 0.5);
        for m in [1, 7, 64] {
            let x = rng.vec(m * k, 1.0);
            let b = (m == 7).then_some(bias.as_slice());
            let want = cpu::matmul::linear(&x, &deq, b, k);
            check_variants(&gpu, fmt.name(), &w, &x, m, b, &want).await?;
            ran += 1;
        }
    }
    let want_ran = 3 * QuantFormat::ALL.len();
    if ran != want_ran {
        return Err(format!("ran {ran} of {want_ran} format × M cases"));
    }
    Ok(())
}

async fn awq_linear_matches_cpu(gpu: Gpu) -> Result<(), String> {
    let mut rng = Rng::new(5);
    let (n, k) = (72, 384);
    let wv = weights(&mut rng, n * k);
    let a = AwqWeight::quantize(&wv, n, k).map_err(|e| e.to_string())?;
    let deq = a.dequantize().map_err(|e| e.to_string())?;
    let w = QMatrix::from_awq(&gpu, &a).map_err(|e| e.to_string())?;
    for m in [1, 7, 64] {
        let x = rng.vec(m * k, 1.0);
        let want = cpu::matmul::linear(&x, &deq, None, k);
        check_variants(&gpu, "awq", &w, &x, m, None, &want).await?;
    }
    Ok(())
}

async fn quant_bad_input_is_typed_error(gpu: Gpu) -> Result<(), String> {
    let fmt = QuantFormat::Q4_0;
    let expect_err = |what: &str, r: Result<QMatrix, gllm_web::Error>| match r {
        Err(e) => {
            log!("{what}: {e}");
            Ok(())
        }
        Ok(_) => Err(format!("{what}: accepted")),
    };
    // Byte length that does not match the shape.
    expect_err("short blocks", QMatrix::from_gguf_blocks(&gpu, fmt, 4, 64, &[0u8; 18 * 8 - 1]))?;
    expect_err("long blocks", QMatrix::from_gguf_blocks(&gpu, fmt, 4, 64, &[0u8; 18 * 9]))?;
    // Row length not a multiple of the block.
    expect_err("ragged row", QMatrix::from_gguf_blocks(&gpu, fmt, 4, 48, &[0u8; 18 * 6]))?;
    expect_err("q4_K row", QMatrix::from_gguf_blocks(&gpu, QuantFormat::Q4K, 2, 128, &[0u8; 144]))?;
    expect_err("empty", QMatrix::from_gguf_blocks(&gpu, fmt, 0, 32, &[]))?;
    // x whose last dim is not the matrix's.
    let w = QMatrix::quantize(&gpu, fmt, 4, 64, &[0.5; 256]).map_err(|e| e.to_string())?;
    let x = gpu.upload_f32(&[1.0; 32], &[1, 32]).map_err(|e| e.to_string())?;
    let mut enc = gpu.encoder();
    match qlinear_with(&mut enc, &x, &w, None, QLinearOptions::default()) {
        Err(e) => log!("wrong x: {e}"),
        Ok(_) => return Err("wrong x accepted".into()),
    }
    Ok(())
}

/// Model integration: the same BERT code with its linear layers quantized on load
/// (`EmbedOptions::dtype`) gives embeddings close to the dense f32 model's.
async fn quantized_bert_matches_dense(gpu: Gpu) -> Result<(), String> {
    use gllm_web::engine::{EmbedOptions, Embedder};
    use gllm_web::nn::{LinearWeight, LoadDType};
    let texts = ["A man is eating food.", "The quick brown fox jumps over the lazy dog.", "GPU kernels decode 4-bit blocks."];
    let load = |dtype: LoadDType| {
        let gpu = gpu.clone();
        async move {
            let opts = EmbedOptions { load: gllm_web::LoadOptions::with_dtype(dtype), ..Default::default() };
            Embedder::load(&gpu, &common::model_source("all-MiniLM-L6-v2"), opts, &|_| {}).await
        }
    };
    let e = |e: gllm_web::Error| e.to_string();
    let dense = load(LoadDType::F32).await.map_err(e)?.embed(&texts).await.map_err(e)?;
    // (format, smallest cosine accepted): q8_0 keeps ~7 bits per value, q4_0 ~3.
    for (fmt, min_cos) in [(QuantFormat::Q8_0, 0.999), (QuantFormat::Q4_0, 0.95)] {
        let m = load(LoadDType::Quant(fmt)).await.map_err(e)?;
        let quantized = m.model().expect("a BERT trunk").encoder_linears().filter(|l| matches!(l.weight, LinearWeight::Quant(_))).count();
        if quantized == 0 {
            return Err(format!("{}: no linear layer was quantized", fmt.name()));
        }
        // The GPU-quantized weights are the CPU reference quantizer's blocks, bit for bit: the
        // first layer's query and FFN output matrices against the checkpoint's tensors.
        let src = common::model_source("all-MiniLM-L6-v2");
        let st = gllm_web::loader::SafetensorsFile::read(&src, "model.safetensors").await.map_err(e)?;
        let linears: Vec<_> = m.model().expect("a BERT trunk").encoder_linears().take(6).collect();
        for (idx, tensor) in [(0, "encoder.layer.0.attention.self.query.weight"), (5, "encoder.layer.0.output.dense.weight")] {
            let LinearWeight::Quant(qm) = &linears[idx].weight else {
                return Err(format!("{tensor}: not quantized"));
            };
            let info = st.tensors.get(tensor).ok_or_else(|| format!("{tensor} missing"))?;
            let raw = gllm_web::loader::Source::read_range(&src, "model.safetensors", info.start, info.end - info.start).await.map_err(e)?;
            let vals = gllm_web::loader::safetensors::to_f32(tensor, info.dtype, &raw).map_err(e)?;
            let want = quant::relayout(fmt, &quant::quantize(fmt, &vals).map_err(e)?).map_err(e)?;
            let body = gpu.readback_u32(qm.body()).await.map_err(e)?;
            let scales = gpu.readback_u32(qm.scales()).await.map_err(e)?;
            if body != want.body || scales != want.scales {
                return Err(format!("{} {tensor}: GPU quantize-on-load differs from the CPU quantizer", fmt.name()));
            }
            log!("bert {} {tensor}: quantized on the GPU, identical to the CPU quantizer ({} words)", fmt.name(), body.len() + scales.len());
        }
        let q = m.embed(&texts).await.map_err(e)?;
        for i in 0..texts.len() {
            let cos: f32 = dense.row(i).iter().zip(q.row(i)).map(|(a, b)| a * b).sum();
            log!("bert {}: {quantized} quantized linears, text {i} cosine to f32 {cos:.5} (min {min_cos})", fmt.name());
            if !(cos >= min_cos) {
                return Err(format!("{}: cosine {cos} < {min_cos} for text {i}", fmt.name()));
            }
        }
    }
    Ok(())
}

/// Dense f32 / f16 weights through the quantized matrix-vector kernel (`dense_matvec`, what
/// `matmul::linear` runs for one token when k % 32 == 0).
async fn dense_matvec_matches_cpu(gpu: Gpu) -> Result<(), String> {
    use gllm_web::kernels::quant::dense_matvec;
    let mut rng = Rng::new(77);
    let e = |e: gllm_web::Error| e.to_string();
    for (n, k) in [(71, 224), (130, 96)] {
        let w = rng.vec(n * k, 0.5);
        let x = rng.vec(k, 1.0);
        let bias = rng.vec(n, 0.5);
        for w_f16 in [false, true] {
            let (wt, wref): (_, Vec<f32>) = if w_f16 {
                (gpu.upload_f32_as_f16(&w, &[n, k]).map_err(e)?, w.iter().map(|v| half::f16::from_f32(*v).to_f32()).collect())
            } else {
                (gpu.upload_f32(&w, &[n, k]).map_err(e)?, w.clone())
            };
            let bt = gpu.upload_f32(&bias, &[n]).map_err(e)?;
            let want = cpu::matmul::linear(&x, &wref, Some(&bias), k);
            for (label, x_f16, opts) in variants(&gpu) {
                let xt = if x_f16 { gpu.upload_f32_as_f16(&x, &[1, k]).map_err(e)? } else { gpu.upload_f32(&x, &[1, k]).map_err(e)? };
                let mut enc = gpu.encoder();
                let y = dense_matvec(&mut enc, &xt, &wt, Some(&bt), opts).map_err(e)?;
                enc.submit().map_err(e)?;
                let got: Vec<f32> = if x_f16 {
                    gpu.readback_f16(&y).await.map_err(e)?.iter().map(|h| h.to_f32()).collect()
                } else {
                    gpu.readback_f32(&y).await.map_err(e)?
                };
                let err = rel_err(&got, &want);
                let tol = if x_f16 { REL_F16 } else { REL_F32 };
                log!("dense {} [{n}, {k}] {label}: rel err {err:.2e} (tol {tol:.0e})", if w_f16 { "f16" } else { "f32" });
                if !(err < tol) {
                    return Err(format!("dense [{n}, {k}] w_f16={w_f16} {label}: rel err {err:.3e}"));
                }
            }
        }
    }
    // k not a multiple of 32 is refused (linear falls back to its own matvec there).
    let w = gpu.upload_f32(&[0.0; 4 * 40], &[4, 40]).map_err(e)?;
    let x = gpu.upload_f32(&[0.0; 40], &[1, 40]).map_err(e)?;
    if dense_matvec(&mut gpu.encoder(), &x, &w, None, QLinearOptions::default()).is_ok() {
        return Err("k = 40 accepted".into());
    }
    Ok(())
}

/// The raw file bytes of `v` as `kind`, and the f32 values they hold (what the CPU quantizes).
fn encode(v: &[f32], kind: SrcKind) -> (Vec<u8>, Vec<f32>) {
    match kind {
        SrcKind::F32 => (v.iter().flat_map(|x| x.to_le_bytes()).collect(), v.to_vec()),
        SrcKind::F16 => {
            let h: Vec<half::f16> = v.iter().map(|x| half::f16::from_f32(*x)).collect();
            (h.iter().flat_map(|x| x.to_le_bytes()).collect(), h.iter().map(|x| x.to_f32()).collect())
        }
        SrcKind::BF16 => {
            let h: Vec<half::bf16> = v.iter().map(|x| half::bf16::from_f32(*x)).collect();
            (h.iter().flat_map(|x| x.to_le_bytes()).collect(), h.iter().map(|x| x.to_f32()).collect())
        }
    }
}

/// Test matrices for the quantizer: random weights with hand-made blocks in the first rows —
/// all zeros, ±0, values on the rounding ties of both formats (d = 1 exactly), subnormal and
/// tiny values, huge values, a negative extreme, and equal magnitudes of both signs.
fn quantizer_input(rng: &mut Rng, rows: usize, cols: usize) -> Vec<f32> {
    let mut v = weights(rng, rows * cols);
    let mut put = |blk: usize, f: &dyn Fn(usize) -> f32| {
        for j in 0..32 {
            v[blk * 32 + j] = f(j);
        }
    };
    put(0, &|_| 0.0);
    put(1, &|j| if j % 2 == 0 { -0.0 } else { 0.0 });
    // q8_0 with amax = 127: d = 1, x * id = x, ties .5 round away from zero.
    put(2, &|j| if j == 0 { 127.0 } else { (j as f32 - 16.0) * 3.5 + 0.5 });
    // q4_0 with max = -8: d = 1, id = 1, x + 8.5 lands on integers and halves.
    put(3, &|j| if j == 5 { -8.0 } else { (j as f32 - 16.0) * 0.25 });
    put(4, &|j| (j as f32 + 1.0) * 1e-41); // f32 subnormals (bf16 keeps some)
    put(5, &|j| (j as f32 - 15.5) * 3e-7); // f16 subnormals
    put(6, &|j| (j as f32 - 15.5) * 1e30);
    put(7, &|j| if j == 31 { -3.0 } else if j == 30 { 3.0 } else { j as f32 * 0.01 });
    put(8, &|j| if j < 2 { [2.0, -2.0][j] } else { 0.5 });
    v
}

async fn gpu_quantize_is_bit_identical(gpu: Gpu) -> Result<(), String> {
    let e = |e: gllm_web::Error| e.to_string();
    let mut rng = Rng::new(11);
    let mut checked = 0usize;
    // 37 × 96: 3 blocks per row (pairs straddle rows), odd block count; 256 × 1024: volume.
    for (rows, cols) in [(37usize, 96usize), (256, 1024)] {
        let v = quantizer_input(&mut rng, rows, cols);
        for fmt in [QuantFormat::Q8_0, QuantFormat::Q4_0] {
            for kind in [SrcKind::F32, SrcKind::F16, SrcKind::BF16] {
                let (bytes, values) = encode(&v, kind);
                let want = quant::relayout(fmt, &quant::quantize(fmt, &values).map_err(e)?).map_err(e)?;
                // Whole matrix, and in two slices (rows 0..10, 10..) through `quantize_rows`.
                let whole = quantize_raw(&gpu, fmt, rows, cols, &bytes, kind).map_err(e)?;
                let sliced = QMatrix::alloc(&gpu, fmt, rows, cols).map_err(e)?;
                let row_bytes = cols * kind.size();
                let mut enc = gpu.encoder();
                let mut staging = Vec::new();
                for (r0, n) in [(0, 10), (10, rows - 10)] {
                    let piece = &bytes[r0 * row_bytes..(r0 + n) * row_bytes];
                    let src = gpu.upload_bytes(piece, &[piece.len() / 4], DType::U32).map_err(e)?;
                    quantize_rows(&mut enc, &src, kind, &sliced, r0, n).map_err(e)?;
                    staging.push(src);
                }
                enc.submit().map_err(e)?;
                for (how, m) in [("whole", &whole), ("two slices", &sliced)] {
                    let body = gpu.readback_u32(m.body()).await.map_err(e)?;
                    let scales = gpu.readback_u32(m.scales()).await.map_err(e)?;
                    let what = format!("{} from {kind:?} [{rows}, {cols}] {how}", fmt.name());
                    let bad_body = body.iter().zip(&want.body).filter(|(a, b)| a != b).count();
                    let bad_scales = scales.iter().zip(&want.scales).filter(|(a, b)| a != b).count();
                    if body.len() != want.body.len() || scales.len() != want.scales.len() || bad_body + bad_scales > 0 {
                        let first = body.iter().zip(&want.body).position(|(a, b)| a != b);
                        return Err(format!(
                            "{what}: {bad_body} of {} body words and {bad_scales} of {} scale words differ from the CPU quantizer (first body word {first:?})",
                            want.body.len(),
                            want.scales.len()
                        ));
                    }
                    log!("{what}: {} body + {} scale words identical to the CPU quantizer", body.len(), scales.len());
                    checked += 1;
                }
            }
        }
    }
    // Formats the GPU quantizer does not write, and a wrong source length, are typed errors.
    let src = gpu.upload_bytes(&[0u8; 4 * 64], &[64], DType::U32).map_err(e)?;
    let q4k = QMatrix::alloc(&gpu, QuantFormat::Q4K, 1, 256).map_err(e)?;
    if quantize_rows(&mut gpu.encoder(), &src, SrcKind::F32, &q4k, 0, 1).is_ok() {
        return Err("q4_K accepted by the GPU quantizer".into());
    }
    let q8 = QMatrix::alloc(&gpu, QuantFormat::Q8_0, 2, 64).map_err(e)?;
    if quantize_rows(&mut gpu.encoder(), &src, SrcKind::F32, &q8, 0, 2).is_ok() {
        return Err("64 source values accepted for 128".into());
    }
    if quantize_raw(&gpu, QuantFormat::Q4_0, 2, 64, &[0u8; 100], SrcKind::F16).is_ok() {
        return Err("100 bytes accepted for [2, 64] f16".into());
    }
    if checked != 24 {
        return Err(format!("checked {checked} of 24 cases"));
    }
    Ok(())
}

/// A pre-quantized MiniLM (`loader::prequant::write`, what `gllm quantize` runs) streams its
/// blocks and embeds exactly like quantize-on-load of the original, in q8_0 and q4_0.
#[cfg(not(target_arch = "wasm32"))]
#[test]
fn prequantized_bert_equals_quantize_on_load() {
    use gllm_web::engine::{EmbedOptions, Embedder};
    use gllm_web::loader::{prequant, FileSource};
    use gllm_web::nn::LoadDType;
    let Some(gpu) = common::native_gpu() else { return };
    let texts = ["A man is eating food.", "GPU kernels decode 4-bit blocks."];
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    for fmt in [QuantFormat::Q8_0, QuantFormat::Q4_0] {
        let out = dir.join(format!("target/tmp/prequant-minilm-{}", fmt.name()));
        let s = prequant::write(&dir.join("models/all-MiniLM-L6-v2"), &out, fmt, &gllm_web::models::bert::is_linear_weight).unwrap();
        assert_eq!(s.quantized, 36, "{}: 6 layers × 6 linears", fmt.name());
        let load = |src: FileSource, dtype: LoadDType| {
            let opts = EmbedOptions { load: gllm_web::LoadOptions::with_dtype(dtype), ..Default::default() };
            pollster::block_on(Embedder::load(&gpu, &src, opts, &|_| {}))
        };
        let want = pollster::block_on(load(common::model_source("all-MiniLM-L6-v2"), LoadDType::Quant(fmt)).unwrap().embed(&texts)).unwrap();
        let got = pollster::block_on(load(FileSource::new(&out), LoadDType::Auto).unwrap().embed(&texts)).unwrap();
        for i in 0..texts.len() {
            assert_eq!(got.row(i), want.row(i), "{}: text {i} differs from quantize-on-load", fmt.name());
        }
        log!("minilm {}: pre-quantized file {} of {} bytes, embeddings identical to quantize-on-load", fmt.name(), s.bytes_out, s.bytes_in);
        match load(FileSource::new(&out), LoadDType::F32) {
            Err(gllm_web::Error::Input(m)) => assert!(m.contains("pre-quantized"), "{m}"),
            Err(e) => panic!("{}: f32 load of a pre-quantized file: wrong error {e}", fmt.name()),
            Ok(_) => panic!("{}: f32 load of a pre-quantized file succeeded", fmt.name()),
        }
        let _ = std::fs::remove_dir_all(&out);
    }
}

/// The matrix-vector shapes `matvec_shape` picks (rows, threads per row group) for the shapes
/// the H100 measurements in SPEC/quant.md were taken on, with subgroups of 32.
#[cfg(not(target_arch = "wasm32"))]
#[test]
fn matvec_shape_choices() {
    use gllm_web::kernels::quant::{matvec_shape, QFormat};
    let q = QFormat::Gguf;
    let cases = [
        // bandwidth-bound tall matrices: 4 rows for 4-bit, fewer lanes for short rows
        (q(QuantFormat::Q4_0), 151936, 896, (4, 8)),
        (q(QuantFormat::Q8_0), 151936, 896, (2, 16)),
        (q(QuantFormat::Q4_0), 11008, 4096, (4, 32)),
        (q(QuantFormat::Q4_0), 4096, 4096, (4, 32)),
        (QFormat::DenseF16, 4096, 4096, (2, 32)),
        // decode-size matrices: keep 2 rows × a subgroup, or more lanes when few rows
        (q(QuantFormat::Q8_0), 4864, 896, (2, 32)),
        (q(QuantFormat::Q4_0), 576, 576, (2, 32)),
        (QFormat::DenseF16, 1536, 8960, (2, 64)),
        (QFormat::DenseF32, 896, 4864, (2, 128)),
        (QFormat::DenseF16, 256, 1536, (2, 64)),
    ];
    for (f, n, k, want) in cases {
        assert_eq!(matvec_shape(f, n, k, 32), want, "{} {n}×{k}", f.name());
    }
}

/// In the browser: the pre-quantized q4_0 MiniLM that `scripts/test.sh` writes with `gllm
/// quantize` (`models/all-MiniLM-L6-v2-q4_0`) streams over HTTP Range requests — its U8 block
/// tensors raw into GPU buffers — and embeds exactly like a q4_0 quantize-on-load of the
/// original; the manifest `gllm quantize` wrote is checked on the way.
#[cfg(target_arch = "wasm32")]
#[wasm_bindgen_test::wasm_bindgen_test]
async fn prequantized_bert_streams_in_the_browser() {
    use gllm_web::engine::{EmbedOptions, Embedder};
    use gllm_web::nn::LoadDType;
    let Some(gpu) = common::web_gpu().await else { return };
    let texts = ["A man is eating food.", "GPU kernels decode 4-bit blocks."];
    let load = |name: &'static str, dtype: LoadDType| {
        let gpu = gpu.clone();
        async move {
            let opts = EmbedOptions { load: gllm_web::LoadOptions::with_dtype(dtype), ..Default::default() };
            Embedder::load(&gpu, &common::model_source(name), opts, &|_| {}).await
        }
    };
    let want = load("all-MiniLM-L6-v2", LoadDType::Quant(QuantFormat::Q4_0)).await.unwrap().embed(&texts).await.unwrap();
    let got = load("all-MiniLM-L6-v2-q4_0", LoadDType::Auto).await.unwrap().embed(&texts).await.unwrap();
    for i in 0..texts.len() {
        assert_eq!(got.row(i), want.row(i), "text {i}: the pre-quantized load differs from quantize-on-load");
    }
    log!("browser: pre-quantized q4_0 MiniLM streamed; embeddings identical to quantize-on-load");
}

/// A weight of the fused-product tests: quantized blocks or dense f32 / f16, with the f32
/// values the kernels see.
fn fused_weight(gpu: &Gpu, rng: &mut Rng, kind: &str, n: usize, k: usize) -> Result<(LinearWeight, Vec<f32>), String> {
    let e = |e: gllm_web::Error| e.to_string();
    let wv = weights(rng, n * k);
    Ok(match kind {
        "f32" => (LinearWeight::Dense(gpu.upload_f32(&wv, &[n, k]).map_err(e)?), wv),
        "f16" => {
            let r = wv.iter().map(|v| half::f16::from_f32(*v).to_f32()).collect();
            (LinearWeight::Dense(gpu.upload_f32_as_f16(&wv, &[n, k]).map_err(e)?), r)
        }
        name => {
            let fmt = QuantFormat::ALL.into_iter().find(|f| f.name() == name).ok_or(format!("no format {name}"))?;
            let blocks = quant::quantize(fmt, &wv).map_err(e)?;
            let deq = quant::dequantize(fmt, &blocks, n * k).map_err(e)?;
            (LinearWeight::Quant(QMatrix::from_gguf_blocks(gpu, fmt, n, k, &blocks).map_err(e)?), deq)
        }
    })
}

/// `quant::Fusion` (the decoder layer's fused one-token products) against the unfused CPU
/// reference: the RMSNorm prologue (with a bias), the residual epilogue, and the SwiGLU and
/// GeGLU epilogues of a packed `[gate; up]` weight, for dense f32 / f16 weights and block
/// formats whose matrix-vector kernel runs 2 rows (q8_0, q4_K, q6_K) and 4 rows (q4_0,
/// q4_1) per thread group. Ragged: 71 outputs, and a GLU width of 37 (odd, so the last
/// 4-row group holds one output). m = 1 runs the fused kernel on a GPU (and on a CPU adapter
/// with `GpuOptions::gpu_kernels`); m = 5, CPU adapters and the CPU backend run the unfused
/// ops, which must agree too. Tolerance: relative L2 error 1e-4 (f32 activations, the
/// weights' own values as reference).
async fn fused_linear_matches_cpu(gpu: Gpu) -> Result<(), String> {
    let e = |e: gllm_web::Error| e.to_string();
    fused_linear_case(&gpu).await?;
    // A CPU adapter runs the one-token products unfused (its barrier-free kernels): the
    // fused kernel is checked there with the GPU kernels forced.
    if gpu.caps().is_cpu && !gpu.is_host() {
        fused_linear_case(&Gpu::with_options(gllm_web::GpuOptions { gpu_kernels: true, ..Default::default() }).await.map_err(e)?).await?;
    }
    Ok(())
}

async fn fused_linear_case(gpu: &Gpu) -> Result<(), String> {
    use gllm_web::kernels::quant::{Fusion, GluAct};
    let gpu = gpu.clone();
    let e = |e: gllm_web::Error| e.to_string();
    let mut rng = Rng::new(99);
    let (k, n, h, eps) = (512, 71, 37, 1e-6f32);
    let mut ran = 0;
    for kind in ["f32", "f16", "q8_0", "q4_0", "q4_1", "q4_K", "q6_K"] {
        let (w, wr) = fused_weight(&gpu, &mut rng, kind, n, k)?;
        let (wg, wgr) = fused_weight(&gpu, &mut rng, kind, 2 * h, k)?;
        let bias = rng.vec(n, 0.5);
        let gamma: Vec<f32> = (0..k).map(|_| 1.0 + rng.uniform(0.5)).collect();
        let (tb, tg) = (gpu.upload_f32(&bias, &[n]).map_err(e)?, gpu.upload_f32(&gamma, &[k]).map_err(e)?);
        let lin = Linear::new(w.clone(), Some(tb));
        let lin_nobias = Linear::new(w, None);
        let glu = Linear::new(wg, None);
        for m in [1usize, 5] {
            let x: Vec<f32> = rng.vec(m * k, 2.0);
            let res = rng.vec(m * n, 1.0);
            let tx = gpu.upload_f32(&x, &[m, k]).map_err(e)?;
            let tr = gpu.upload_f32(&res, &[m, n]).map_err(e)?;
            let normed = cpu::norm::rms_norm(&x, &gamma, k, eps);
            let gu = cpu::matmul::linear(&normed, &wgr, None, k);
            let (gate, up): (Vec<f32>, Vec<f32>) = {
                let (mut g, mut u) = (Vec::new(), Vec::new());
                for row in gu.chunks(2 * h) {
                    g.extend_from_slice(&row[..h]);
                    u.extend_from_slice(&row[h..]);
                }
                (g, u)
            };
            let silu: Vec<f32> = cpu::activation::silu(&gate).iter().zip(&up).map(|(a, b)| a * b).collect();
            let cases: Vec<(&str, &Linear, Fusion, Vec<f32>)> = vec![
                ("norm + bias", &lin, Fusion { norm: Some((&tg, eps)), ..Default::default() }, cpu::matmul::linear(&normed, &wr, Some(&bias), k)),
                (
                    "residual",
                    &lin_nobias,
                    Fusion { residual: Some(&tr), ..Default::default() },
                    cpu::activation::add(&res, &cpu::matmul::linear(&x, &wr, None, k)),
                ),
                ("norm + swiglu", &glu, Fusion { norm: Some((&tg, eps)), glu: Some(GluAct::Silu), ..Default::default() }, silu),
                (
                    "norm + geglu",
                    &glu,
                    Fusion { norm: Some((&tg, eps)), glu: Some(GluAct::GeluTanh), ..Default::default() },
                    cpu::activation::geglu_tanh(&gate, &up),
                ),
            ];
            for (what, l, f, want) in cases {
                let mut enc = gpu.encoder();
                let fused = gllm_web::kernels::quant::fuses(&mut enc, m);
                let y = l.forward_fused(&mut enc, &tx, f).map_err(e)?;
                let dispatches = enc.dispatch_count();
                enc.submit().map_err(e)?;
                let got = gpu.readback_f32(&y).await.map_err(e)?;
                let err = rel_err(&got, &want);
                log!("fused {kind} m={m} {what} ({} dispatch{}): rel err {err:.2e}", dispatches, if dispatches == 1 { "" } else { "es" });
                if got.len() != want.len() || !(err < 1e-4) {
                    return Err(format!("fused {kind} m={m} {what}: rel err {err:.3e} ({} values, want {})", got.len(), want.len()));
                }
                if fused && dispatches != 1 {
                    return Err(format!("fused {kind} m={m} {what}: {dispatches} dispatches, want 1"));
                }
                ran += 1;
            }
        }
    }
    if ran != 7 * 2 * 4 {
        return Err(format!("ran {ran} of 56 cases"));
    }
    // Combinations the kernel has no variant for are typed errors.
    let (w, _) = fused_weight(&gpu, &mut rng, "q8_0", 8, 64)?;
    let x = gpu.upload_f32(&[0.5; 64], &[1, 64]).map_err(e)?;
    let (g, r) = (gpu.upload_f32(&[1.0; 64], &[64]).map_err(e)?, gpu.upload_f32(&[0.0; 8], &[1, 8]).map_err(e)?);
    let b = gpu.upload_f32(&[0.0; 8], &[8]).map_err(e)?;
    let bad = [
        ("norm + residual", Linear::new(w.clone(), None), Fusion { norm: Some((&g, 1e-6)), residual: Some(&r), glu: None }),
        ("glu + bias", Linear::new(w.clone(), Some(b)), Fusion { glu: Some(GluAct::Silu), ..Default::default() }),
        ("gamma [8]", Linear::new(w.clone(), None), Fusion { norm: Some((&r.reshape(&[8]).map_err(e)?, 1e-6)), ..Default::default() }),
    ];
    for (what, l, f) in bad {
        if l.forward_fused(&mut gpu.encoder(), &x, f).is_ok() {
            return Err(format!("fused {what} accepted"));
        }
    }
    Ok(())
}

/// `Linear::concat` (load-time packing of q/k/v, gate/up) gives exactly the products of its
/// parts, for block formats and dense weights; parts that cannot be stacked give `None`.
async fn concat_rows_is_exact(gpu: Gpu) -> Result<(), String> {
    let e = |e: gllm_web::Error| e.to_string();
    let mut rng = Rng::new(31);
    let k = 256;
    for kind in ["f32", "f16", "q8_0", "q4_0", "q4_K", "q6_K"] {
        let rows = [24usize, 8, 8];
        let mut parts = Vec::new();
        for n in rows {
            let (w, _) = fused_weight(&gpu, &mut rng, kind, n, k)?;
            parts.push(Linear::new(w, Some(gpu.upload_f32(&rng.vec(n, 1.0), &[n]).map_err(e)?)));
        }
        let refs: Vec<&Linear> = parts.iter().collect();
        let packed = Linear::concat(&gpu, &refs).map_err(e)?.ok_or(format!("{kind}: not packed"))?;
        let x = gpu.upload_f32(&rng.vec(k, 1.0), &[1, k]).map_err(e)?;
        let mut want = Vec::new();
        for p in &parts {
            let mut enc = gpu.encoder();
            let y = p.forward(&mut enc, &x).map_err(e)?;
            enc.submit().map_err(e)?;
            want.extend(gpu.readback_f32(&y).await.map_err(e)?);
        }
        let mut enc = gpu.encoder();
        let y = packed.forward(&mut enc, &x).map_err(e)?;
        enc.submit().map_err(e)?;
        let got = gpu.readback_f32(&y).await.map_err(e)?;
        log!("concat {kind}: {} rows, max |Δ| {:e}", got.len(), got.iter().zip(&want).map(|(a, b)| (a - b).abs()).fold(0f32, f32::max));
        if got != want {
            return Err(format!("concat {kind}: the packed product differs from its parts"));
        }
    }
    // Mixed formats, and a q8_0 part of one block (its f16 scale would straddle a word).
    let (a, _) = fused_weight(&gpu, &mut rng, "q8_0", 8, 64)?;
    let (b, _) = fused_weight(&gpu, &mut rng, "q4_0", 8, 64)?;
    let (c, _) = fused_weight(&gpu, &mut rng, "q8_0", 1, 32)?;
    let (d, _) = fused_weight(&gpu, &mut rng, "q8_0", 1, 32)?;
    let (la, lb, lc, ld) = (Linear::new(a, None), Linear::new(b, None), Linear::new(c, None), Linear::new(d, None));
    if Linear::concat(&gpu, &[&la, &lb]).map_err(e)?.is_some() || Linear::concat(&gpu, &[&lc, &ld]).map_err(e)?.is_some() {
        return Err("concat stacked parts it cannot".into());
    }
    Ok(())
}
