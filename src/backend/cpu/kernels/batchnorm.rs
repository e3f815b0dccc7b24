//! Batch normalisation over the channels of `[n, c, p]` (an image's `p =
//! h·w` positions, or `p = 1` for a vector of `c` features), with
//! PyTorch's definitions: in training the batch's mean and biased variance
//! over the `m = n·p` values of each channel normalise it,
//! `y = γ·(x − mean)/sqrt(var + eps) + β`; in evaluation the running mean
//! and variance do. [`update_running`] folds a batch's statistics into the
//! running ones, `r ← (1 − momentum)·r + momentum·s`, with the unbiased
//! variance `var·m/(m − 1)`.
//!
//! Guarantees: outputs are OVERWRITTEN; each channel's sums run in one
//! fixed order, image by image and position by position, in the scalar
//! type itself, so results are bit-identical for any rayon thread count.
//! For speed, a task sums a group of up to eight channels at once (their
//! chains of additions are independent, so the CPU overlaps them) and
//! groups run in parallel; that changes no channel's order of additions,
//! so the results are those of one sequential pass per channel. The
//! elementwise parts run in parallel over the images.

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

/// The most channels one task reduces at once: their sums are independent
/// chains the CPU overlaps (one sequential chain per channel waits out the
/// latency of every addition).
const GROUP: usize = 8;

/// The channel groups `(first, len)` the reductions run as parallel tasks:
/// groups of up to `most` (at most [`GROUP`]) channels, fewer when there
/// would be fewer groups than threads, the last channels in groups of 4,
/// 2 and 1. Which
/// group a channel falls in changes nothing in its sum.
fn groups(c: usize, most: usize) -> Vec<(usize, usize)> {
    let threads = rayon::current_num_threads().max(1);
    let mut g = most.clamp(1, GROUP);
    while g > 1 && c / g < threads {
        g /= 2;
    }
    let mut out = Vec::with_capacity(c / g + 3);
    let mut ch = 0;
    while ch < c {
        let left = c - ch;
        let len = [g, 4, 2, 1]
            .into_iter()
            .find(|&l| l <= left && l <= g)
            .unwrap_or(1);
        out.push((ch, len));
        ch += len;
    }
    out
}

/// `f(first, len)` for every group of at most `most` channels, in
/// parallel, the per-channel results concatenated in channel order.
fn per_group<R: Send>(c: usize, most: usize, f: impl Fn(usize, usize) -> Vec<R> + Sync) -> Vec<R> {
    groups(c, most)
        .into_par_iter()
        .map(|(ch0, len)| f(ch0, len))
        .collect::<Vec<_>>()
        .into_iter()
        .flatten()
        .collect()
}

/// Calls `$f::<K>($args)` for the group length `$len` (8, 4, 2 or 1) and
/// turns the array it returns into a `Vec`.
macro_rules! by_len {
    ($len:expr, $f:ident($($a:expr),*)) => {
        match $len {
            8 => $f::<_, 8>($($a),*).to_vec(),
            4 => $f::<_, 4>($($a),*).to_vec(),
            2 => $f::<_, 2>($($a),*).to_vec(),
            _ => $f::<_, 1>($($a),*).to_vec(),
        }
    };
}

/// The rows of channels `ch0..ch0 + K` in image `i`: `K` slices of `p`.
#[inline(always)]
fn rows<'a, T: Float, const K: usize>(
    s: &BnShape,
    x: &'a [T],
    i: usize,
    ch0: usize,
) -> [&'a [T]; K] {
    let p = s.p;
    let base = (i * s.c + ch0) * p;
    let blk = &x[base..base + K * p];
    std::array::from_fn(|k| &blk[k * p..(k + 1) * p])
}

/// `Σ x` of channels `ch0..ch0 + K`, each summed image by image, position
/// by position (the order of one sequential pass over the channel).
fn sum_group<T: Float, const K: usize>(s: &BnShape, x: &[T], ch0: usize) -> [T; K] {
    let mut acc = [T::ZERO; K];
    for i in 0..s.n {
        let r = rows::<T, K>(s, x, i, ch0);
        for j in 0..s.p {
            for (a, row) in acc.iter_mut().zip(&r) {
                *a += row[j];
            }
        }
    }
    acc
}

/// `Σ (x − mean)²` of channels `ch0..ch0 + K` (`mean` holds their `K`
/// means), in [`sum_group`]'s order.
fn sq_dev_group<T: Float, const K: usize>(s: &BnShape, x: &[T], ch0: usize, mean: &[T]) -> [T; K] {
    let mu: [T; K] = std::array::from_fn(|k| mean[k]);
    let mut acc = [T::ZERO; K];
    for i in 0..s.n {
        let r = rows::<T, K>(s, x, i, ch0);
        for j in 0..s.p {
            for ((a, row), m) in acc.iter_mut().zip(&r).zip(&mu) {
                let d = row[j] - *m;
                *a += d * d;
            }
        }
    }
    acc
}

/// `(Σ dy, Σ dy·(x − mean)·inv)` of channels `ch0..ch0 + K`, in
/// [`sum_group`]'s order.
// `k` indexes six arrays of `K` together.
#[allow(clippy::needless_range_loop)]
fn grad_sums_group<T: Float, const K: usize>(
    s: &BnShape,
    x: &[T],
    dy: &[T],
    ch0: usize,
    mean: &[T],
    inv: &[T],
) -> [(T, T); K] {
    let mu: [T; K] = std::array::from_fn(|k| mean[ch0 + k]);
    let iv: [T; K] = std::array::from_fn(|k| inv[ch0 + k]);
    let (mut sd, mut sdx) = ([T::ZERO; K], [T::ZERO; K]);
    for i in 0..s.n {
        let (rx, rg) = (rows::<T, K>(s, x, i, ch0), rows::<T, K>(s, dy, i, ch0));
        for j in 0..s.p {
            for k in 0..K {
                let (v, g) = (rx[k][j], rg[k][j]);
                sd[k] += g;
                sdx[k] += g * (v - mu[k]) * iv[k];
            }
        }
    }
    std::array::from_fn(|k| (sd[k], sdx[k]))
}

/// `1/sqrt(var + eps)` of each channel.
fn inv_std<T: Float>(eps: f64, var: &[T]) -> Vec<T> {
    let e = T::from_f64(eps);
    var.iter().map(|v| T::ONE / (*v + e).sqrt()).collect()
}

/// Batch mean and biased variance of each channel (OVERWRITTEN): each
/// task takes a group of channels through both passes (the mean, then the
/// squared deviations from it) while they are in cache.
pub fn batch_stats<T: Float>(s: &BnShape, x: &[T], mean: &mut [T], var: &mut [T]) {
    debug_assert_eq!(x.len(), s.len());
    let m = T::from_f64(s.m().max(1) as f64);
    let both = per_group(s.c, GROUP, |ch0, len| {
        let mu: Vec<T> = by_len!(len, sum_group(s, x, ch0))
            .into_iter()
            .map(|a| a / m)
            .collect();
        let var: Vec<T> = by_len!(len, sq_dev_group(s, x, ch0, &mu))
            .into_iter()
            .map(|a| a / m)
            .collect();
        mu.into_iter().zip(var).collect()
    });
    for ((mo, vo), (mu, v)) in mean.iter_mut().zip(var.iter_mut()).zip(both) {
        *mo = mu;
        *vo = v;
    }
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

/// `Σ dy` and `Σ dy·x̂` of each channel, `x̂ = (x − mean)/sqrt(var + eps)`:
/// what [`backward_input`], [`grad_gamma`] and [`grad_beta`] reduce, so a
/// caller running all three computes it once and hands it to the
/// `_from_sums` forms (bit-identical to computing it in each).
pub fn grad_sums<T: Float>(
    s: &BnShape,
    eps: f64,
    x: &[T],
    mean: &[T],
    var: &[T],
    dy: &[T],
) -> Vec<(T, T)> {
    let inv = inv_std(eps, var);
    // Two chains and five operations per value: four channels keep the
    // CPU busy without running out of registers.
    per_group(s.c, 4, |ch0, len| {
        by_len!(len, grad_sums_group(s, x, dy, ch0, mean, &inv))
    })
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
    let sums = grad_sums(s, eps, x, mean, var, dy);
    backward_input_from_sums(s, eps, x, gamma, mean, var, dy, &sums, dx);
}

/// [`backward_input`] with the channels' [`grad_sums`] given.
#[allow(clippy::too_many_arguments)]
pub fn backward_input_from_sums<T: Float>(
    s: &BnShape,
    eps: f64,
    x: &[T],
    gamma: &[T],
    mean: &[T],
    var: &[T],
    dy: &[T],
    sums: &[(T, T)],
    dx: &mut [T],
) {
    if s.is_empty() {
        return;
    }
    let m = T::from_f64(s.m() as f64);
    let (c, p) = (s.c, s.p);
    let inv = inv_std(eps, var);
    dx.par_chunks_mut(c * p)
        .zip(x.par_chunks(c * p))
        .zip(dy.par_chunks(c * p))
        .for_each(|((dxi, xi), dyi)| {
            for ch in 0..c {
                let (sd, sdx) = sums[ch];
                let (mu, iv) = (mean[ch], inv[ch]);
                let k = gamma[ch] * iv / m;
                let r = ch * p..(ch + 1) * p;
                for ((o, v), g) in dxi[r.clone()].iter_mut().zip(&xi[r.clone()]).zip(&dyi[r]) {
                    let xh = (*v - mu) * iv;
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
    grad_gamma_from_sums(&grad_sums(s, eps, x, mean, var, dy), dgamma);
}

/// [`grad_gamma`] from the channels' [`grad_sums`].
pub fn grad_gamma_from_sums<T: Float>(sums: &[(T, T)], dgamma: &mut [T]) {
    for (o, (_, sdx)) in dgamma.iter_mut().zip(sums) {
        *o = *sdx;
    }
}

/// `∂L/∂β = Σ dy` per channel (OVERWRITTEN).
pub fn grad_beta<T: Float>(s: &BnShape, dy: &[T], dbeta: &mut [T]) {
    let sums = per_group(s.c, GROUP, |ch0, len| by_len!(len, sum_group(s, dy, ch0)));
    for (o, v) in dbeta.iter_mut().zip(sums) {
        *o = v;
    }
}

/// [`grad_beta`] from the channels' [`grad_sums`] (its `Σ dy` is summed
/// in the same order).
pub fn grad_beta_from_sums<T: Float>(sums: &[(T, T)], dbeta: &mut [T]) {
    for (o, (sd, _)) in dbeta.iter_mut().zip(sums) {
        *o = *sd;
    }
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

    /// The values of channel `ch`, image by image.
    fn channel<'a, T: Float>(s: &BnShape, x: &'a [T], ch: usize) -> impl Iterator<Item = T> + 'a {
        let (c, p) = (s.c, s.p);
        (0..s.n).flat_map(move |i| x[(i * c + ch) * p..(i * c + ch + 1) * p].iter().copied())
    }

    /// One sequential pass per channel: the definition the grouped,
    /// parallel reductions must reproduce bit for bit.
    mod reference {
        use super::*;

        pub fn batch_stats(s: &BnShape, x: &[f32]) -> (Vec<f32>, Vec<f32>) {
            let m = s.m().max(1) as f32;
            let mean: Vec<f32> = (0..s.c)
                .map(|ch| {
                    let mut acc = 0f32;
                    for v in channel(s, x, ch) {
                        acc += v;
                    }
                    acc / m
                })
                .collect();
            let var = (0..s.c)
                .map(|ch| {
                    let mut acc = 0f32;
                    for v in channel(s, x, ch) {
                        let d = v - mean[ch];
                        acc += d * d;
                    }
                    acc / m
                })
                .collect();
            (mean, var)
        }

        pub fn sums(
            s: &BnShape,
            x: &[f32],
            mean: &[f32],
            var: &[f32],
            dy: &[f32],
        ) -> Vec<(f32, f32)> {
            let eps = EPSILON as f32;
            (0..s.c)
                .map(|ch| {
                    let inv = 1.0 / (var[ch] + eps).sqrt();
                    let (mut sd, mut sdx) = (0f32, 0f32);
                    for (v, g) in channel(s, x, ch).zip(channel(s, dy, ch)) {
                        sd += g;
                        sdx += g * (v - mean[ch]) * inv;
                    }
                    (sd, sdx)
                })
                .collect()
        }

        #[allow(clippy::too_many_arguments)]
        pub fn backward_input(
            s: &BnShape,
            x: &[f32],
            gamma: &[f32],
            mean: &[f32],
            var: &[f32],
            dy: &[f32],
        ) -> Vec<f32> {
            let sums = sums(s, x, mean, var, dy);
            let m = s.m() as f32;
            let e = EPSILON as f32;
            let (c, p) = (s.c, s.p);
            let mut dx = vec![0f32; s.len()];
            for i in 0..s.n {
                for ch in 0..c {
                    let (sd, sdx) = sums[ch];
                    let inv = 1.0 / (var[ch] + e).sqrt();
                    let k = gamma[ch] * inv / m;
                    for j in 0..p {
                        let at = (i * c + ch) * p + j;
                        let xh = (x[at] - mean[ch]) * inv;
                        dx[at] = k * (m * dy[at] - sd - xh * sdx);
                    }
                }
            }
            dx
        }
    }

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
    fn grouped_reductions_equal_one_pass_per_channel_bit_for_bit() {
        // Channel counts that make full groups, leftovers of every size
        // and single channels; vectors (`p = 1`); thread counts that
        // change the group size.
        let shapes = [
            BnShape { n: 3, c: 16, p: 17 },
            BnShape { n: 5, c: 13, p: 49 },
            BnShape { n: 4, c: 15, p: 1 },
            BnShape { n: 2, c: 3, p: 5 },
            BnShape { n: 7, c: 64, p: 9 },
        ];
        for (t, s) in shapes.iter().enumerate() {
            let t = t as u64;
            let x: Vec<f32> = to_f32(&rand_vec(10 + t, s.len()))
                .iter()
                .map(|v| 3.0 * v + 1.5)
                .collect();
            let dy = to_f32(&rand_vec(20 + t, s.len()));
            let g = to_f32(&rand_vec(30 + t, s.c));
            let (rm, rv) = reference::batch_stats(s, &x);
            let rsums = reference::sums(s, &x, &rm, &rv, &dy);
            let rdx = reference::backward_input(s, &x, &g, &rm, &rv, &dy);
            for run in in_pools(|| {
                let (mut mean, mut var) = (vec![0f32; s.c], vec![0f32; s.c]);
                batch_stats(s, &x, &mut mean, &mut var);
                let mut dx = vec![0f32; s.len()];
                backward_input(s, EPSILON, &x, &g, &mean, &var, &dy, &mut dx);
                let (mut dg, mut db) = (vec![0f32; s.c], vec![0f32; s.c]);
                grad_gamma(s, EPSILON, &x, &mean, &var, &dy, &mut dg);
                grad_beta(s, &dy, &mut db);
                let sums = grad_sums(s, EPSILON, &x, &mean, &var, &dy);
                let (mut dg2, mut db2) = (vec![0f32; s.c], vec![0f32; s.c]);
                grad_gamma_from_sums(&sums, &mut dg2);
                grad_beta_from_sums(&sums, &mut db2);
                (mean, var, dx, dg, db, dg2, db2)
            }) {
                let (mean, var, dx, dg, db, dg2, db2) = run;
                let bits = |v: &[f32]| v.iter().map(|a| a.to_bits()).collect::<Vec<_>>();
                assert_eq!(bits(&mean), bits(&rm), "mean {s:?}");
                assert_eq!(bits(&var), bits(&rv), "var {s:?}");
                assert_eq!(bits(&dx), bits(&rdx), "dx {s:?}");
                let rg: Vec<f32> = rsums.iter().map(|p| p.1).collect();
                let rb: Vec<f32> = rsums.iter().map(|p| p.0).collect();
                assert_eq!(bits(&dg), bits(&rg), "dgamma {s:?}");
                assert_eq!(bits(&db), bits(&rb), "dbeta {s:?}");
                assert_eq!(bits(&dg2), bits(&rg), "dgamma from sums {s:?}");
                assert_eq!(bits(&db2), bits(&rb), "dbeta from sums {s:?}");
            }
        }
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
