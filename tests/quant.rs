//! Quantized formats: CPU round trips, and the GPU kernels against the CPU
//! dequantize-then-f32-matmul reference.

mod common;

use gllm_web::quant::{self, awq::AwqWeight, QuantFormat};
use gllm_web::reference::rng::Rng;

/// Values like trained weights: mostly small with some outliers.
fn weights(rng: &mut Rng, n: usize) -> Vec<f32> {
    (0..n)
        .map(|i| {
            let v = rng.uniform(1.0);
            if i % 61 == 0 { v * 8.0 } else { v * v * v.signum() }
        })
        .collect()
}

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
        println!("{}: worst round-trip error {worst:.5} of the block range (bound {bound:.5})", fmt.name());
        assert!(worst <= bound, "{}: round-trip error {worst} > bound {bound}", fmt.name());
        assert!(worst > 0.0, "{}: a lossless round trip means the test data is degenerate", fmt.name());
    }
}

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
    println!("awq: worst round-trip error {worst:.5} of the group range (bound 1/15)");
    assert!(worst <= 1.0 / 15.0 + 1e-3 && worst > 0.0, "awq round trip {worst}");
}

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

#[test]
fn memory_fraction_of_f32() {
    // GPU bytes of a 4096×4096 weight, re-laid, relative to f32.
    let f32_bytes = 4096.0 * 4096.0 * 4.0;
    for (fmt, limit) in [(QuantFormat::Q4_0, 0.15), (QuantFormat::Q8_0, 0.27)] {
        let nb = 4096 * 4096 / fmt.block_elems();
        let bytes = (nb * fmt.body_words() * 4 + if fmt.split_scale() { nb.div_ceil(2) * 4 } else { 0 }) as f64;
        println!("{}: {:.4}× f32", fmt.name(), bytes / f32_bytes);
        assert!(bytes / f32_bytes <= limit, "{} uses {:.4}× f32", fmt.name(), bytes / f32_bytes);
    }
}

