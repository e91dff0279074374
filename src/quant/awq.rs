//! AWQ int4 (AutoAWQ "GEMM" checkpoints, as HF `AwqConfig` models store them), group 128:
//! - `qweight`: `[in, out / 8]` i32; word `c` of row `k` packs output columns `8c .. 8c + 8`,
//!   nibble `i` holding column `8c + ORDER[i]` (AutoAWQ's `[0, 2, 4, 6, 1, 3, 5, 7]`);
//! - `qzeros`: `[in / 128, out / 8]` i32, packed the same way;
//! - `scales`: `[in / 128, out]` f16.
//!
//! `W[n, k] = (q[k, n] − z[k / 128, n]) · s[k / 128, n]`.
//!
//! The checkpoint is transposed (`[in, out]`) relative to our `[out, in]` weights, so for the
//! GPU [`relayout`] regroups the nibbles by output row: per row and group, 16 words of nibbles
//! in `k` order (value `8w + i` in nibble `i` of word `w`), and one word with the f16 scale in
//! the low half and the zero point in bits 16..20. Nothing is dequantised; the kernels decode
//! `(q − z) · s` in registers.
//!
//! Reference quantizer (AutoAWQ `pseudo_quantize_tensor`, zero point on): per row and group,
//! `s = max(max − min, 1e-5) / 15`, `z = clamp(−round(min / s), 0, 15)`,
//! `q = clamp(round(w / s) + z, 0, 15)`. Round trip: ≤ s/2 + the f16 rounding of s, plus the
//! clipping the integer zero point causes (≤ s/2), i.e. ≤ 1/15 of a group's range
//! (the test's bound).

use crate::error::{Error, Result};
use half::f16;

pub const GROUP: usize = 128;
/// Nibble `i` of a packed word holds column `8c + ORDER[i]`.
pub const ORDER: [usize; 8] = [0, 2, 4, 6, 1, 3, 5, 7];
/// Words per (row, group) on the GPU.
pub const BODY_WORDS: usize = GROUP / 8;
const _: () = assert!(GROUP % 32 == 0 && BODY_WORDS == 16);

/// An AWQ checkpoint's three tensors for one `[out, in]` linear layer.
#[derive(Clone, Debug)]
pub struct AwqWeight {
    pub out_features: usize,
    pub in_features: usize,
    /// `[in, out / 8]`
    pub qweight: Vec<u32>,
    /// `[in / GROUP, out / 8]`
    pub qzeros: Vec<u32>,
    /// `[in / GROUP, out]`, f16 bits
    pub scales: Vec<u16>,
}

fn nibble(words: &[u32], row_words: usize, row: usize, col: usize) -> u32 {
    let c = col / 8;
    let i = ORDER.iter().position(|&o| o == col % 8).expect("col % 8 < 8");
    (words[row * row_words + c] >> (4 * i)) & 0xF
}

impl AwqWeight {
    pub fn check(&self) -> Result<()> {
        let (n, k) = (self.out_features, self.in_features);
        if n == 0 || k == 0 || n % 8 != 0 || k % GROUP != 0 {
            return Err(Error::param("awq", format!(
                "shape [{n}, {k}] needs out % 8 == 0 and in % {GROUP} == 0"
            )));
        }
        let g = k / GROUP;
        for (what, got, want) in [
            ("qweight", self.qweight.len(), k * n / 8),
            ("qzeros", self.qzeros.len(), g * n / 8),
            ("scales", self.scales.len(), g * n),
        ] {
            if got != want {
                return Err(Error::param("awq", format!("{what} has {got} elements, [{n}, {k}] needs {want}")));
            }
        }
        Ok(())
    }

    /// The quantized value `q[k, n]` and its group's zero and scale.
    pub fn at(&self, n: usize, k: usize) -> (u32, u32, f32) {
        let ow = self.out_features / 8;
        let g = k / GROUP;
        let q = nibble(&self.qweight, ow, k, n);
        let z = nibble(&self.qzeros, ow, g, n);
        let s = f16::from_bits(self.scales[g * self.out_features + n]).to_f32();
        (q, z, s)
    }

    /// `W` as `[out, in]` f32 (the CPU reference; never done on the GPU path).
    pub fn dequantize(&self) -> Result<Vec<f32>> {
        self.check()?;
        let (n, k) = (self.out_features, self.in_features);
        let mut w = vec![0f32; n * k];
        for r in 0..n {
            for c in 0..k {
                let (q, z, s) = self.at(r, c);
                w[r * k + c] = (q as f32 - z as f32) * s;
            }
        }
        Ok(w)
    }

    /// Quantizes `w` (`[out, in]` row-major) with the reference quantizer.
    pub fn quantize(w: &[f32], out_features: usize, in_features: usize) -> Result<Self> {
        let (n, k) = (out_features, in_features);
        if w.len() != n * k {
            return Err(Error::param("awq", format!("{} values for shape [{n}, {k}]", w.len())));
        }
        let g = k / GROUP;
        let mut a = AwqWeight {
            out_features: n,
            in_features: k,
            qweight: vec![0; k * n / 8],
            qzeros: vec![0; g * n / 8],
            scales: vec![0; g * n],
        };
        a.check()?;
        let ow = n / 8;
        let put = |words: &mut [u32], row: usize, col: usize, v: u32| {
            let i = ORDER.iter().position(|&o| o == col % 8).expect("col % 8 < 8");
            words[row * ow + col / 8] |= v << (4 * i);
        };
        for r in 0..n {
            for gi in 0..g {
                let grp = &w[r * k + gi * GROUP..r * k + (gi + 1) * GROUP];
                let max = grp.iter().copied().fold(f32::NEG_INFINITY, f32::max);
                let min = grp.iter().copied().fold(f32::INFINITY, f32::min);
                let s = f16::from_f32((max - min).max(1e-5) / 15.0);
                let sf = s.to_f32();
                let z = (-(min / sf).round()).clamp(0.0, 15.0);
                a.scales[gi * n + r] = s.to_bits();
                put(&mut a.qzeros, gi, r, z as u32);
                for (j, &v) in grp.iter().enumerate() {
                    let q = ((v / sf).round() + z).clamp(0.0, 15.0) as u32;
                    put(&mut a.qweight, gi * GROUP + j, r, q);
                }
            }
        }
        Ok(a)
    }

    /// The GPU layout: (`body`: `[out, in / GROUP, 16]` words of nibbles in `k` order,
    /// `meta`: `[out, in / GROUP]` words `scale_f16 | zero << 16`).
    pub fn relayout(&self) -> Result<(Vec<u32>, Vec<u32>)> {
        self.check()?;
        let (n, k) = (self.out_features, self.in_features);
        let g = k / GROUP;
        let mut body = vec![0u32; n * g * BODY_WORDS];
        let mut meta = vec![0u32; n * g];
        for r in 0..n {
            for c in 0..k {
                let (q, _, _) = self.at(r, c);
                body[r * (k / 8) + c / 8] |= q << (4 * (c % 8));
            }
            for gi in 0..g {
                let (_, z, _) = self.at(r, gi * GROUP);
                meta[r * g + gi] = self.scales[gi * n + r] as u32 | z << 16;
            }
        }
        Ok((body, meta))
    }
}
