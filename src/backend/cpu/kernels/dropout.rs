//! Inverted dropout over a whole `[N × features]` tensor, flattened.
//!
//! Element `i` (flat index over the whole tensor) is kept iff
//! `rng::uniform(seed, stream, i) >= rate`, so the mask depends only on
//! `(seed, stream, i)`, never on thread count or scheduling, and backward
//! recomputes it instead of storing it. At train time kept values are scaled
//! by `1/(1 − rate)`; at test time (`training == false`) the op is the
//! identity. Assumes `0 ≤ rate < 1`. Outputs are OVERWRITTEN.

use rayon::prelude::*;

use super::Float;
use crate::rng;

const BLOCK: usize = 1 << 13;

/// Dropout configuration for one call.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct DropoutParams {
    pub seed: u64,
    pub stream: u64,
    /// Probability of dropping an element.
    pub rate: f64,
    pub training: bool,
}

/// Whether flat element `i` is kept.
#[inline]
pub fn keep(seed: u64, stream: u64, rate: f64, i: u64) -> bool {
    rng::uniform(seed, stream, i) >= rate
}

/// `out = x · mask · 1/(1−rate)` (or `out = x` when not training); shared by
/// forward and backward, which are the same linear map.
fn apply<T: Float>(p: &DropoutParams, x: &[T], out: &mut [T]) {
    debug_assert_eq!(x.len(), out.len());
    debug_assert!((0.0..1.0).contains(&p.rate));
    if !p.training || p.rate == 0.0 {
        out.copy_from_slice(x);
        return;
    }
    let scale = T::from_f64(1.0 / (1.0 - p.rate));
    let (seed, stream, rate) = (p.seed, p.stream, p.rate);
    out.par_chunks_mut(BLOCK)
        .zip(x.par_chunks(BLOCK))
        .enumerate()
        .for_each(|(bi, (ob, xb))| {
            let base = (bi * BLOCK) as u64;
            for (j, (o, v)) in ob.iter_mut().zip(xb).enumerate() {
                // A multiply even when dropped, so NaN stays NaN (as in PyTorch).
                *o = *v
                    * if keep(seed, stream, rate, base + j as u64) {
                        scale
                    } else {
                        T::ZERO
                    };
            }
        });
}

/// Forward: `y` (OVERWRITTEN). Saves nothing: the mask is recomputed.
pub fn dropout_forward<T: Float>(p: &DropoutParams, x: &[T], y: &mut [T]) {
    apply(p, x, y);
}

/// Backward: `dx` (OVERWRITTEN) with the same `p` as the forward call.
pub fn dropout_backward<T: Float>(p: &DropoutParams, dy: &[T], dx: &mut [T]) {
    apply(p, dy, dx);
}

/// Forward or backward in place: `x = x · mask · 1/(1−rate)`, the same
/// values [`dropout_forward`] writes.
pub fn dropout_inplace<T: Float>(p: &DropoutParams, x: &mut [T]) {
    if !p.training || p.rate == 0.0 {
        return;
    }
    let scale = T::from_f64(1.0 / (1.0 - p.rate));
    let (seed, stream, rate) = (p.seed, p.stream, p.rate);
    x.par_chunks_mut(BLOCK).enumerate().for_each(|(bi, xb)| {
        let base = (bi * BLOCK) as u64;
        for (j, v) in xb.iter_mut().enumerate() {
            *v *= if keep(seed, stream, rate, base + j as u64) {
                scale
            } else {
                T::ZERO
            };
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::backend::cpu::kernels::gradcheck::*;

    #[test]
    fn in_place_equals_out_of_place() {
        for (rate, training) in [(0.5, true), (0.5, false), (0.0, true)] {
            let p = DropoutParams {
                seed: 3,
                stream: 4,
                rate,
                training,
            };
            let x = rand_vec(5, 20_000);
            let mut y = vec![0.0; x.len()];
            dropout_forward(&p, &x, &mut y);
            let mut z = x.clone();
            dropout_inplace(&p, &mut z);
            assert_eq!(y, z);
        }
    }

    fn params(rate: f64) -> DropoutParams {
        DropoutParams {
            seed: 7,
            stream: rng::stream_of("dropout/fc6"),
            rate,
            training: true,
        }
    }

    #[test]
    fn dropout_fraction_and_exact_scaling() {
        let p = params(0.5);
        let n = 200_000;
        let x = vec![1.0f32; n];
        let mut y = vec![0.0f32; n];
        dropout_forward(&p, &x, &mut y);
        let kept = y.iter().filter(|v| **v != 0.0).count();
        let frac = kept as f64 / n as f64;
        assert!((frac - 0.5).abs() < 0.005, "kept fraction {frac}");
        assert!(y.iter().all(|v| *v == 0.0 || *v == 2.0));
        let p = params(0.2);
        dropout_forward(&p, &x, &mut y);
        let kept = y.iter().filter(|v| **v != 0.0).count() as f64 / n as f64;
        assert!((kept - 0.8).abs() < 0.005, "kept fraction {kept}");
        assert!(y.iter().all(|v| *v == 0.0 || *v == (1.0f64 / 0.8) as f32));
        for (i, v) in y.iter().enumerate() {
            assert_eq!(*v != 0.0, rng::uniform(p.seed, p.stream, i as u64) >= 0.2);
        }
    }

    #[test]
    fn dropout_test_time_is_identity() {
        let p = DropoutParams {
            training: false,
            ..params(0.5)
        };
        let x = to_f32(&rand_vec(81, 1000));
        let mut y = vec![0.0f32; 1000];
        dropout_forward(&p, &x, &mut y);
        assert_eq!(x, y);
        let mut dx = vec![0.0f32; 1000];
        dropout_backward(&p, &x, &mut dx);
        assert_eq!(x, dx);
    }

    #[test]
    fn dropout_mask_reproducible_and_thread_independent() {
        let p = params(0.5);
        let x = to_f32(&rand_vec(82, 50_000));
        let runs = in_pools(|| {
            let mut y = vec![0.0f32; x.len()];
            dropout_forward(&p, &x, &mut y);
            y
        });
        assert_eq!(runs[0], runs[1]);
        assert_eq!(runs[0], runs[2]);
        // A different stream gives a different mask.
        let mut y = vec![0.0f32; x.len()];
        dropout_forward(
            &DropoutParams {
                stream: rng::stream_of("dropout/fc7"),
                ..p
            },
            &x,
            &mut y,
        );
        assert_ne!(runs[0], y);
    }

    #[test]
    fn dropout_gradcheck() {
        let p = params(0.3);
        let mut x = rand_vec(83, 64);
        let r = rand_vec(84, 64);
        let mut dx = vec![0.0; 64];
        dropout_backward(&p, &r, &mut dx);
        let num = numeric_grad(&mut x, EPS, |x| {
            let mut y = vec![0.0; 64];
            dropout_forward(&p, x, &mut y);
            dot(&y, &r)
        });
        assert_grad("dropout dx", &dx, &num, TOL);
    }
}
