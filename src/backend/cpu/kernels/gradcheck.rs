//! Shared test helpers: deterministic random data and central-difference
//! gradient checks in `f64`.
//!
//! Assumes the function under test is smooth at the sample point (tests pick
//! random inputs so ReLU kinks and max-pool ties are hit with probability ~0).
//! Guarantees nothing beyond test-time assertions.

use crate::rng;

/// `len` values uniform in [-1, 1), a pure function of `seed`.
pub fn rand_vec(seed: u64, len: usize) -> Vec<f64> {
    (0..len)
        .map(|i| 2.0 * rng::uniform(seed, 0x6772_6164, i as u64) - 1.0)
        .collect()
}

pub fn to_f32(v: &[f64]) -> Vec<f32> {
    v.iter().map(|&x| x as f32).collect()
}

pub fn dot(a: &[f64], b: &[f64]) -> f64 {
    assert_eq!(a.len(), b.len());
    a.iter().zip(b).map(|(x, y)| x * y).sum()
}

/// Central-difference gradient of `f` at `x` (step `eps`, restored after).
pub fn numeric_grad(x: &mut [f64], eps: f64, mut f: impl FnMut(&[f64]) -> f64) -> Vec<f64> {
    let mut g = vec![0.0; x.len()];
    for i in 0..x.len() {
        let x0 = x[i];
        x[i] = x0 + eps;
        let fp = f(x);
        x[i] = x0 - eps;
        let fm = f(x);
        x[i] = x0;
        g[i] = (fp - fm) / (2.0 * eps);
    }
    g
}

/// `||a - b|| / (||a|| + ||b||)`, with 0 for two zero vectors.
pub fn rel_err(a: &[f64], b: &[f64]) -> f64 {
    assert_eq!(a.len(), b.len());
    let d: f64 = a
        .iter()
        .zip(b)
        .map(|(x, y)| (x - y) * (x - y))
        .sum::<f64>()
        .sqrt();
    let s: f64 =
        a.iter().map(|x| x * x).sum::<f64>().sqrt() + b.iter().map(|x| x * x).sum::<f64>().sqrt();
    if s == 0.0 { 0.0 } else { d / s }
}

/// Asserts the analytic gradient matches the numeric one.
pub fn assert_grad(name: &str, analytic: &[f64], numeric: &[f64], tol: f64) {
    let e = rel_err(analytic, numeric);
    assert!(
        e < tol,
        "{name}: relative error {e:e} >= {tol:e}\nanalytic {analytic:?}\nnumeric  {numeric:?}"
    );
    assert!(
        numeric.iter().any(|v| *v != 0.0) || analytic.iter().all(|v| *v == 0.0),
        "{name}: degenerate"
    );
}

/// Default tolerance and step for the checks.
pub const EPS: f64 = 1e-6;
pub const TOL: f64 = 1e-6;

/// Runs `f` inside dedicated rayon pools of 1, 2 and 3 threads and returns
/// the three results.
pub fn in_pools<R: Send>(f: impl Fn() -> R + Sync) -> Vec<R> {
    [1, 2, 3]
        .iter()
        .map(|&t| {
            rayon::ThreadPoolBuilder::new()
                .num_threads(t)
                .build()
                .expect("thread pool")
                .install(&f)
        })
        .collect()
}
