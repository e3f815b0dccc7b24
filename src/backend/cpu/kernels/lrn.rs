//! Local response normalisation across channels, exactly as in Krizhevsky et
//! al. 2012, section 3.3:
//!
//! `b[i] = a[i] / (k + alpha · Σ_{j=max(0,i−n/2)}^{min(C−1,i+n/2)} a[j]²)^beta`
//!
//! at each spatial position, over the `C` channels passed in (one tower's
//! channels; the caller slices towers). `n/2` rounds down. `alpha` is used as
//! written (NOT divided by `n` as Caffe/PyTorch do).
//!
//! Backward (exact): with `s[i] = k + alpha·Σ_{j∈W(i)} a[j]²` and the window
//! relation symmetric (`j ∈ W(i) ⇔ i ∈ W(j)`),
//! `da[m] = dy[m]·s[m]^(−beta) − 2·alpha·beta·a[m]·Σ_{i∈W(m)} dy[i]·b[i]/s[i]`.
//!
//! Guarantees: forward OVERWRITES `y` and saves `scale = s` (same shape as
//! `x`) for the backward pass; backward OVERWRITES `dx` and needs `x`, `y`,
//! `scale`, `dy`. Images run in parallel, each sequentially, so results are
//! independent of the thread count.

use rayon::prelude::*;

use super::{Float, Nchw, scratch};

/// LRN hyper-parameters; [`Default`] is the paper's `k=2, n=5, α=1e-4, β=0.75`.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct LrnParams {
    /// Window size in channels (`n` in the paper).
    pub size: usize,
    pub alpha: f64,
    pub beta: f64,
    pub k: f64,
}

impl Default for LrnParams {
    fn default() -> Self {
        LrnParams {
            size: 5,
            alpha: 1e-4,
            beta: 0.75,
            k: 2.0,
        }
    }
}

/// `s^(−beta)`, with a sqrt-only fast path for the paper's `beta = 0.75`.
#[inline(always)]
fn inv_pow<T: Float>(s: T, neg_beta: T, three_quarters: bool) -> T {
    if three_quarters {
        let r = s.sqrt();
        T::ONE / (r * r.sqrt())
    } else {
        s.powf(neg_beta)
    }
}

#[inline]
fn window(c: usize, half: usize, channels: usize) -> (usize, usize) {
    (c.saturating_sub(half), (c + half).min(channels - 1))
}

/// Forward: `y = lrn(x)`, `scale` (OVERWRITTEN) = `k + alpha·Σ a²` per element.
pub fn lrn_forward<T: Float>(p: &LrnParams, s: &Nchw, x: &[T], y: &mut [T], scale: &mut [T]) {
    debug_assert_eq!(x.len(), s.len());
    debug_assert_eq!(y.len(), s.len());
    debug_assert_eq!(scale.len(), s.len());
    let (chw, hw, c) = (s.chw(), s.hw(), s.c);
    if chw == 0 {
        return;
    }
    y.par_chunks_mut(chw)
        .zip(scale.par_chunks_mut(chw))
        .zip(x.par_chunks(chw))
        .for_each(|((yi, si), xi)| lrn_forward_image(p, c, hw, xi, yi, si));
}

/// [`lrn_forward`] of one image (`c` channels of `hw` values), sequential:
/// for callers that already run images in parallel.
pub fn lrn_forward_image<T: Float>(
    p: &LrnParams,
    c: usize,
    hw: usize,
    xi: &[T],
    yi: &mut [T],
    si: &mut [T],
) {
    let half = p.size / 2;
    let (k, alpha) = (T::from_f64(p.k), T::from_f64(p.alpha));
    let neg_beta = T::from_f64(-p.beta);
    let fast = p.beta == 0.75;
    for ch in 0..c {
        let (lo, hi) = window(ch, half, c);
        let srow = &mut si[ch * hw..(ch + 1) * hw];
        srow.fill(T::ZERO);
        for j in lo..=hi {
            for (o, a) in srow.iter_mut().zip(&xi[j * hw..(j + 1) * hw]) {
                *o += *a * *a;
            }
        }
        let yrow = &mut yi[ch * hw..(ch + 1) * hw];
        let xrow = &xi[ch * hw..(ch + 1) * hw];
        for ((o, sv), a) in yrow.iter_mut().zip(srow.iter_mut()).zip(xrow) {
            *sv = k + alpha * *sv;
            *o = *a * inv_pow(*sv, neg_beta, fast);
        }
    }
}

/// Backward: `dx` (OVERWRITTEN) from `x`, the forward output `y`, the saved
/// `scale`, and `dy`. `scratch_buf` is grown to `x.len()` and reused.
#[allow(clippy::too_many_arguments)]
pub fn lrn_backward<T: Float>(
    p: &LrnParams,
    s: &Nchw,
    x: &[T],
    y: &[T],
    scale: &[T],
    dy: &[T],
    dx: &mut [T],
    scratch_buf: &mut Vec<T>,
) {
    debug_assert_eq!(x.len(), s.len());
    debug_assert_eq!(y.len(), s.len());
    debug_assert_eq!(scale.len(), s.len());
    debug_assert_eq!(dy.len(), s.len());
    debug_assert_eq!(dx.len(), s.len());
    let (chw, hw, c) = (s.chw(), s.hw(), s.c);
    if chw == 0 {
        return;
    }
    let t = scratch(scratch_buf, s.len());
    dx.par_chunks_mut(chw)
        .zip(t.par_chunks_mut(chw))
        .zip(x.par_chunks(chw))
        .zip(y.par_chunks(chw))
        .zip(scale.par_chunks(chw))
        .zip(dy.par_chunks(chw))
        .for_each(|(((((dxi, ti), xi), yi), si), gi)| {
            lrn_backward_image(p, c, hw, xi, yi, si, gi, dxi, ti)
        });
}

/// [`lrn_backward`] of one image, sequential; `ti` is scratch of the
/// image's size.
#[allow(clippy::too_many_arguments)]
pub fn lrn_backward_image<T: Float>(
    p: &LrnParams,
    c: usize,
    hw: usize,
    xi: &[T],
    yi: &[T],
    si: &[T],
    gi: &[T],
    dxi: &mut [T],
    ti: &mut [T],
) {
    let half = p.size / 2;
    let coef = T::from_f64(-2.0 * p.alpha * p.beta);
    let neg_beta = T::from_f64(-p.beta);
    let fast = p.beta == 0.75;
    // t = dy · b / s
    for ((o, g), (b, sv)) in ti.iter_mut().zip(gi).zip(yi.iter().zip(si)) {
        *o = *g * *b / *sv;
    }
    for ch in 0..c {
        let (lo, hi) = window(ch, half, c);
        let drow = &mut dxi[ch * hw..(ch + 1) * hw];
        drow.fill(T::ZERO);
        for j in lo..=hi {
            for (o, tv) in drow.iter_mut().zip(&ti[j * hw..(j + 1) * hw]) {
                *o += *tv;
            }
        }
        let r = ch * hw..(ch + 1) * hw;
        for ((o, a), (g, sv)) in drow
            .iter_mut()
            .zip(&xi[r.clone()])
            .zip(gi[r.clone()].iter().zip(&si[r]))
        {
            *o = *g * inv_pow(*sv, neg_beta, fast) + coef * *a * *o;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::backend::cpu::kernels::gradcheck::*;

    #[test]
    fn lrn_by_hand_small_window() {
        // C=3, n=3 (half=1), k=1, alpha=0.5 (as written), beta=1, two positions.
        // position 0: a = [1, 2, 3]  -> s = [1+.5·5, 1+.5·14, 1+.5·13] = [3.5, 8, 7.5]
        // position 1: a = [0, -1, 2] -> s = [1+.5·1, 1+.5·5, 1+.5·5]  = [1.5, 3.5, 3.5]
        let p = LrnParams {
            size: 3,
            alpha: 0.5,
            beta: 1.0,
            k: 1.0,
        };
        let s = Nchw::new(1, 3, 1, 2);
        let x = [1.0f64, 0.0, 2.0, -1.0, 3.0, 2.0];
        let mut y = [0.0; 6];
        let mut sc = [0.0; 6];
        lrn_forward(&p, &s, &x, &mut y, &mut sc);
        let want_s = [3.5, 1.5, 8.0, 3.5, 7.5, 3.5];
        let want_y = [1.0 / 3.5, 0.0, 2.0 / 8.0, -1.0 / 3.5, 3.0 / 7.5, 2.0 / 3.5];
        for i in 0..6 {
            assert!((sc[i] - want_s[i]).abs() < 1e-15, "scale {i}");
            assert!((y[i] - want_y[i]).abs() < 1e-15, "y {i}");
        }
    }

    #[test]
    fn lrn_by_hand_paper_defaults_c_less_than_n() {
        // C=3 < n=5: every window covers all channels: s = 2 + 1e-4·(1+4+9).
        let p = LrnParams::default();
        let s = Nchw::new(1, 3, 1, 1);
        let x = [1.0f32, 2.0, 3.0];
        let mut y = [0.0f32; 3];
        let mut sc = [0.0f32; 3];
        lrn_forward(&p, &s, &x, &mut y, &mut sc);
        let sv = 2.0014f64;
        for i in 0..3 {
            assert!((sc[i] as f64 - sv).abs() < 1e-6);
            let want = x[i] as f64 / sv.powf(0.75);
            assert!((y[i] as f64 - want).abs() < 1e-6, "{} vs {}", y[i], want);
        }
    }

    #[test]
    fn lrn_alpha_not_divided_by_n() {
        // One channel, value 10: s = 2 + 1e-4·100 = 2.01 (Caffe would give 2.002).
        let p = LrnParams::default();
        let s = Nchw::new(1, 1, 1, 1);
        let mut y = [0.0f64];
        let mut sc = [0.0f64];
        lrn_forward(&p, &s, &[10.0], &mut y, &mut sc);
        assert!((sc[0] - 2.01).abs() < 1e-15);
        assert!((y[0] - 10.0 / 2.01f64.powf(0.75)).abs() < 1e-14);
    }

    fn gradcheck(p: LrnParams, s: Nchw, seed: u64) {
        // Scale inputs up so the normalisation term is not negligible.
        let mut x: Vec<f64> = rand_vec(seed, s.len()).iter().map(|v| 3.0 * v).collect();
        let r = rand_vec(seed + 1, s.len());
        let mut y = vec![0.0; s.len()];
        let mut sc = vec![0.0; s.len()];
        lrn_forward(&p, &s, &x, &mut y, &mut sc);
        let mut dx = vec![0.0; s.len()];
        let mut scr = Vec::new();
        lrn_backward(&p, &s, &x, &y, &sc, &r, &mut dx, &mut scr);
        let num = numeric_grad(&mut x, EPS, |x| {
            let mut y = vec![0.0; s.len()];
            let mut sc = vec![0.0; s.len()];
            lrn_forward(&p, &s, x, &mut y, &mut sc);
            dot(&y, &r)
        });
        assert_grad(&format!("lrn dx {p:?} {s:?}"), &dx, &num, TOL);
    }

    #[test]
    fn lrn_gradcheck_c_less_and_greater_than_window() {
        let strong = LrnParams {
            size: 5,
            alpha: 0.1,
            beta: 0.75,
            k: 2.0,
        };
        gradcheck(strong, Nchw::new(2, 3, 2, 2), 41); // C < n
        gradcheck(strong, Nchw::new(2, 9, 2, 3), 43); // C > n
        gradcheck(
            LrnParams {
                size: 3,
                alpha: 0.3,
                beta: 0.6,
                k: 1.0,
            },
            Nchw::new(1, 6, 3, 1),
            45,
        );
        gradcheck(
            LrnParams {
                size: 4,
                alpha: 0.2,
                beta: 1.3,
                k: 1.5,
            },
            Nchw::new(1, 7, 1, 2),
            47,
        ); // even n
        gradcheck(LrnParams::default(), Nchw::new(2, 8, 2, 2), 49);
    }
}
