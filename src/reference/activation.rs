/// erf in f64: Taylor series for |x| < 4 (cancellation costs < 1e-9 there), ±1 beyond
/// (erfc(4) = 1.5e-8, below f32 resolution at 1).
pub fn erf(x: f64) -> f64 {
    if x.abs() >= 4.0 {
        return x.signum();
    }
    let (mut term, mut sum, x2) = (x, x, x * x);
    for n in 1..200 {
        term *= -x2 / n as f64;
        let t = term / (2 * n + 1) as f64;
        sum += t;
        if t.abs() < 1e-17 {
            break;
        }
    }
    sum * 2.0 / std::f64::consts::PI.sqrt()
}

/// GELU, erf form.
pub fn gelu(x: &[f32]) -> Vec<f32> {
    x.iter().map(|&v| (0.5 * v as f64 * (1.0 + erf(v as f64 / std::f64::consts::SQRT_2))) as f32).collect()
}

/// SiLU.
pub fn silu(x: &[f32]) -> Vec<f32> {
    x.iter().map(|&v| (v as f64 / (1.0 + (-v as f64).exp())) as f32).collect()
}

/// `a + b`.
pub fn add(a: &[f32], b: &[f32]) -> Vec<f32> {
    a.iter().zip(b).map(|(x, y)| x + y).collect()
}

/// tanh.
pub fn tanh(x: &[f32]) -> Vec<f32> {
    x.iter().map(|&v| (v as f64).tanh() as f32).collect()
}

/// GeGLU with the tanh GELU (`gelu_pytorch_tanh`): `gelu_tanh(gate) * up`, in f64.
pub fn geglu_tanh(gate: &[f32], up: &[f32]) -> Vec<f32> {
    let c = (2.0 / std::f64::consts::PI).sqrt();
    gate.iter()
        .zip(up)
        .map(|(&g, &u)| {
            let g = g as f64;
            (0.5 * g * (1.0 + (c * (g + 0.044715 * g * g * g)).tanh()) * u as f64) as f32
        })
        .collect()
}
