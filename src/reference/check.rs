//! Comparing GPU output with the CPU reference, with tolerances stated per dtype.

/// A tolerance.
#[derive(Clone, Copy, Debug)]
pub enum Tol {
    /// Elementwise: `|got - want| <= abs + rel * |want|` for every element.
    Close { abs: f32, rel: f32 },
    /// Reductions and matmul: normalised MSE `Σ(got - want)² / Σ want²` at most this.
    Nmse(f64),
}

/// Elementwise f32 ops (activations, gathers, pooling): a few ulps plus the
/// approximation error of WGSL transcendental functions.
pub const F32_ELEMENTWISE: Tol = Tol::Close { abs: 1e-5, rel: 1e-5 };
/// Reductions and matmul with f32 data (llama.cpp's test-backend-ops uses 1e-7).
pub const F32_REDUCTION: Tol = Tol::Nmse(1e-7);
/// Matmul with f16 weights, compared with a reference that rounds the weights the same
/// way; f32 accumulation, so the bound is the f32 one loosened for summation order.
pub const F16_WEIGHTS: Tol = Tol::Nmse(1e-6);
/// Values stored in an f16 KV cache against the f32 reference: one rounding to f16
/// (relative 2⁻¹¹ to nearest; WGSL lets `pack2x16float` take either neighbour, so 2⁻¹⁰)
/// plus the RoPE tolerance of the keys (abs 1e-3).
pub const F16_KV: Tol = Tol::Close { abs: 1e-3, rel: 1e-3 };

/// Checks `got` against `want`. On failure the message names the worst element: index,
/// expected value and value got.
pub fn assert_close(what: &str, got: &[f32], want: &[f32], tol: Tol) -> Result<(), String> {
    if got.len() != want.len() {
        return Err(format!("{what}: length {} != expected {}", got.len(), want.len()));
    }
    if let Some(i) = got.iter().position(|v| !v.is_finite()) {
        return Err(format!("{what}: non-finite value {} at index {i} (expected {})", got[i], want[i]));
    }
    match tol {
        Tol::Close { abs, rel } => {
            for (i, (g, w)) in got.iter().zip(want).enumerate() {
                if (g - w).abs() > abs + rel * w.abs() {
                    return Err(format!(
                        "{what}: index {i}: expected {w}, got {g} (|diff| {} > {abs} + {rel}·|want|)",
                        (g - w).abs()
                    ));
                }
            }
            Ok(())
        }
        Tol::Nmse(bound) => {
            let num: f64 = got.iter().zip(want).map(|(g, w)| ((g - w) as f64).powi(2)).sum();
            let den: f64 = want.iter().map(|w| (*w as f64).powi(2)).sum::<f64>().max(1e-30);
            let nmse = num / den;
            if nmse > bound {
                let worst = (0..got.len())
                    .max_by(|&a, &b| (got[a] - want[a]).abs().total_cmp(&(got[b] - want[b]).abs()))
                    .unwrap_or(0);
                Err(format!(
                    "{what}: nmse {nmse:.3e} > {bound:.1e}; worst index {worst}: expected {}, got {}",
                    want[worst], got[worst]
                ))
            } else {
                Ok(())
            }
        }
    }
}
