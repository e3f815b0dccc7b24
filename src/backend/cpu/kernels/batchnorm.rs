//! Batch normalisation over the channels of `[n, c, p]` (an image's `p =
//! h·w` positions, or `p = 1` for a vector of `c` features), with
//! PyTorch's definitions: in training the batch's mean and biased variance
//! over the `m = n·p` values of each channel normalise it,
//! `y = γ·(x − mean)/sqrt(var + eps) + β`; in evaluation the running mean
//! and variance do. [`update_running`] folds a batch's statistics into the
//! running ones, `r ← (1 − momentum)·r + momentum·s`, with the unbiased
//! variance `var·m/(m − 1)`.
//!
//! Guarantees: outputs are OVERWRITTEN; per-channel sums run in a fixed
//! order (channel by channel in parallel, each sequential), so results are
//! bit-identical for any rayon thread count.

use rayon::prelude::*;

use super::Float;

/// The shape `[n, c, p]` normalised per channel.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BnShape {
    pub n: usize,
    pub c: usize,
    pub p: usize,
}

impl BnShape {
    pub fn len(&self) -> usize {
        self.n * self.c * self.p
    }
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
    /// Values per channel, `n·p`.
    pub fn m(&self) -> usize {
        self.n * self.p
    }
}

/// `f(channel) -> T` for every channel, in parallel.
fn per_channel<T: Float>(out: &mut [T], f: impl Fn(usize) -> T + Sync) {
    out.par_iter_mut()
        .enumerate()
        .for_each(|(ch, o)| *o = f(ch));
}

/// The values of channel `ch`, image by image.
fn channel<'a, T: Float>(s: &BnShape, x: &'a [T], ch: usize) -> impl Iterator<Item = T> + 'a {
    let (c, p) = (s.c, s.p);
    (0..s.n).flat_map(move |i| x[(i * c + ch) * p..(i * c + ch + 1) * p].iter().copied())
}

/// Batch mean and biased variance of each channel (OVERWRITTEN).
pub fn batch_stats<T: Float>(s: &BnShape, x: &[T], mean: &mut [T], var: &mut [T]) {
    debug_assert_eq!(x.len(), s.len());
    let m = T::from_f64(s.m().max(1) as f64);
    per_channel(mean, |ch| {
        let mut acc = T::ZERO;
        for v in channel(s, x, ch) {
            acc += v;
        }
        acc / m
    });
    let mean: &[T] = mean;
    per_channel(var, |ch| {
        let mut acc = T::ZERO;
        for v in channel(s, x, ch) {
            let d = v - mean[ch];
            acc += d * d;
        }
        acc / m
    });
}

/// `y = γ·(x − mean)/sqrt(var + eps) + β` with the given statistics.
#[allow(clippy::too_many_arguments)]
pub fn normalise<T: Float>(
    s: &BnShape,
    eps: f64,
    x: &[T],
    gamma: &[T],
    beta: &[T],
    mean: &[T],
    var: &[T],
    y: &mut [T],
) {
    debug_assert_eq!(y.len(), s.len());
    if s.is_empty() {
        return;
    }
    let eps = T::from_f64(eps);
    let (c, p) = (s.c, s.p);
    let scale: Vec<T> = (0..c)
        .map(|ch| gamma[ch] / (var[ch] + eps).sqrt())
        .collect();
    y.par_chunks_mut(c * p)
        .zip(x.par_chunks(c * p))
        .for_each(|(yi, xi)| {
            for ch in 0..c {
                let (a, mu, b) = (scale[ch], mean[ch], beta[ch]);
                for (o, v) in yi[ch * p..(ch + 1) * p]
                    .iter_mut()
                    .zip(&xi[ch * p..(ch + 1) * p])
                {
                    *o = a * (*v - mu) + b;
                }
            }
        });
}

/// Training forward: batch statistics into `mean`, `var`, then [`normalise`].
#[allow(clippy::too_many_arguments)]
pub fn forward_train<T: Float>(
    s: &BnShape,
    eps: f64,
    x: &[T],
    gamma: &[T],
    beta: &[T],
    mean: &mut [T],
    var: &mut [T],
    y: &mut [T],
) {
    batch_stats(s, x, mean, var);
    normalise(s, eps, x, gamma, beta, mean, var, y);
}

/// `Σ dy` and `Σ dy·x̂` of each channel, `x̂ = (x − mean)/sqrt(var + eps)`.
fn sums<T: Float>(s: &BnShape, eps: f64, x: &[T], mean: &[T], var: &[T], dy: &[T]) -> Vec<(T, T)> {
    let eps = T::from_f64(eps);
    (0..s.c)
        .into_par_iter()
        .map(|ch| {
            let inv = T::ONE / (var[ch] + eps).sqrt();
            let (mut sd, mut sdx) = (T::ZERO, T::ZERO);
            for (v, g) in channel(s, x, ch).zip(channel(s, dy, ch)) {
                sd += g;
                sdx += g * (v - mean[ch]) * inv;
            }
            (sd, sdx)
        })
        .collect()
}

/// ∂L/∂x of the training forward (the batch statistics depend on x):
/// `dx = γ/(m·σ) · (m·dy − Σdy − x̂·Σ dy·x̂)`.
#[allow(clippy::too_many_arguments)]
pub fn backward_input<T: Float>(
    s: &BnShape,
    eps: f64,
    x: &[T],
    gamma: &[T],
    mean: &[T],
    var: &[T],
    dy: &[T],
    dx: &mut [T],
) {
    if s.is_empty() {
        return;
    }
    let sums = sums(s, eps, x, mean, var, dy);
    let m = T::from_f64(s.m() as f64);
    let e = T::from_f64(eps);
    let (c, p) = (s.c, s.p);
    let inv: Vec<T> = (0..c).map(|ch| T::ONE / (var[ch] + e).sqrt()).collect();
    dx.par_chunks_mut(c * p)
        .zip(x.par_chunks(c * p))
        .zip(dy.par_chunks(c * p))
        .for_each(|((dxi, xi), dyi)| {
            for ch in 0..c {
                let (sd, sdx) = sums[ch];
                let k = gamma[ch] * inv[ch] / m;
                let r = ch * p..(ch + 1) * p;
                for ((o, v), g) in dxi[r.clone()].iter_mut().zip(&xi[r.clone()]).zip(&dyi[r]) {
                    let xh = (*v - mean[ch]) * inv[ch];
                    *o = k * (m * *g - sd - xh * sdx);
                }
            }
        });
}

/// `∂L/∂γ = Σ dy·x̂` per channel (OVERWRITTEN).
pub fn grad_gamma<T: Float>(
    s: &BnShape,
    eps: f64,
    x: &[T],
    mean: &[T],
    var: &[T],
    dy: &[T],
    dgamma: &mut [T],
) {
    for (o, (_, sdx)) in dgamma.iter_mut().zip(sums(s, eps, x, mean, var, dy)) {
        *o = sdx;
    }
}

/// `∂L/∂β = Σ dy` per channel (OVERWRITTEN).
pub fn grad_beta<T: Float>(s: &BnShape, dy: &[T], dbeta: &mut [T]) {
    per_channel(dbeta, |ch| {
        let mut acc = T::ZERO;
        for g in channel(s, dy, ch) {
            acc += g;
        }
        acc
    });
}

/// Folds a batch's mean and biased variance over `m` values into the
/// running statistics (in place); the running variance takes the unbiased
/// batch variance.
pub fn update_running<T: Float>(
    momentum: f64,
    m: usize,
    mean: &[T],
    var: &[T],
    running_mean: &mut [T],
    running_var: &mut [T],
) {
    let mo = T::from_f64(momentum);
    let keep = T::from_f64(1.0 - momentum);
    let unbias = T::from_f64(if m > 1 {
        m as f64 / (m - 1) as f64
    } else {
        1.0
    });
    for (r, v) in running_mean.iter_mut().zip(mean) {
        *r = keep * *r + mo * *v;
    }
    for (r, v) in running_var.iter_mut().zip(var) {
        *r = keep * *r + mo * (*v * unbias);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::backend::cpu::kernels::gradcheck::*;

    const EPSILON: f64 = 1e-5;

    fn loss(s: &BnShape, x: &[f64], g: &[f64], b: &[f64], r: &[f64]) -> f64 {
        let (mut mean, mut var) = (vec![0.0; s.c], vec![0.0; s.c]);
        let mut y = vec![0.0; s.len()];
        forward_train(s, EPSILON, x, g, b, &mut mean, &mut var, &mut y);
        dot(&y, r)
    }

    #[test]
    fn training_output_is_normalised() {
        let s = BnShape { n: 5, c: 3, p: 7 };
        let x: Vec<f64> = rand_vec(1, s.len()).iter().map(|v| 3.0 * v + 2.0).collect();
        let (g, b) = (vec![1.0; 3], vec![0.0; 3]);
        let (mut mean, mut var) = (vec![0.0; 3], vec![0.0; 3]);
        let mut y = vec![0.0; s.len()];
        forward_train(&s, EPSILON, &x, &g, &b, &mut mean, &mut var, &mut y);
        for ch in 0..3 {
            let v: Vec<f64> = channel(&s, &y, ch).collect();
            let mu = v.iter().sum::<f64>() / v.len() as f64;
            let var = v.iter().map(|a| (a - mu) * (a - mu)).sum::<f64>() / v.len() as f64;
            assert!(mu.abs() < 1e-12, "{mu}");
            assert!((var - 1.0).abs() < 1e-4, "{var}");
        }
    }

    #[test]
    fn gradients_match_finite_differences() {
        for s in [BnShape { n: 4, c: 3, p: 5 }, BnShape { n: 6, c: 4, p: 1 }] {
            let x = rand_vec(2, s.len());
            let g: Vec<f64> = rand_vec(3, s.c).iter().map(|v| v + 1.5).collect();
            let b = rand_vec(4, s.c);
            let r = rand_vec(5, s.len());
            let (mut mean, mut var) = (vec![0.0; s.c], vec![0.0; s.c]);
            batch_stats(&s, &x, &mut mean, &mut var);
            let mut dx = vec![0.0; s.len()];
            let (mut dg, mut db) = (vec![0.0; s.c], vec![0.0; s.c]);
            backward_input(&s, EPSILON, &x, &g, &mean, &var, &r, &mut dx);
            grad_gamma(&s, EPSILON, &x, &mean, &var, &r, &mut dg);
            grad_beta(&s, &r, &mut db);
            let (mut xm, mut gm, mut bm) = (x.clone(), g.clone(), b.clone());
            let nx = numeric_grad(&mut xm, EPS, |v| loss(&s, v, &g, &b, &r));
            let ng = numeric_grad(&mut gm, EPS, |v| loss(&s, &x, v, &b, &r));
            let nb = numeric_grad(&mut bm, EPS, |v| loss(&s, &x, &g, v, &r));
            assert_grad("dx", &dx, &nx, 1e-5);
            assert_grad("dgamma", &dg, &ng, TOL);
            assert_grad("dbeta", &db, &nb, TOL);
        }
    }

    #[test]
    fn running_statistics_follow_pytorch() {
        // One channel of values 1, 2, 3, 4: mean 2.5, biased var 1.25,
        // unbiased 5/3.
        let s = BnShape { n: 2, c: 1, p: 2 };
        let x = [1.0f64, 2.0, 3.0, 4.0];
        let (mut mean, mut var) = ([0.0], [0.0]);
        batch_stats(&s, &x, &mut mean, &mut var);
        assert_eq!((mean[0], var[0]), (2.5, 1.25));
        let (mut rm, mut rv) = ([0.0], [1.0]);
        update_running(0.1, s.m(), &mean, &var, &mut rm, &mut rv);
        assert!((rm[0] - 0.25).abs() < 1e-15);
        assert!((rv[0] - (0.9 + 0.1 * 5.0 / 3.0)).abs() < 1e-15);
    }

    #[test]
    fn thread_count_does_not_change_results() {
        let s = BnShape { n: 7, c: 5, p: 9 };
        let x = to_f32(&rand_vec(6, s.len()));
        let dy = to_f32(&rand_vec(7, s.len()));
        let g = vec![1.3f32; 5];
        let runs = in_pools(|| {
            let (mut mean, mut var) = (vec![0f32; 5], vec![0f32; 5]);
            batch_stats(&s, &x, &mut mean, &mut var);
            let mut dx = vec![0f32; s.len()];
            backward_input(&s, EPSILON, &x, &g, &mean, &var, &dy, &mut dx);
            (mean, var, dx)
        });
        for r in &runs[1..] {
            assert_eq!(r, &runs[0]);
        }
    }
}
