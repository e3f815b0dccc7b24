//! Pooling with padding: max pooling with `pad` (padded positions never
//! win: they are −∞, as in PyTorch), average pooling with `pad`, and the
//! global average pool.
//!
//! Output size `floor((H + 2·pad − size)/stride) + 1`. Assumes
//! `pad ≤ size/2` (so every window holds at least one real position),
//! `h + 2·pad ≥ size`, `stride ≥ 1`. Average pooling counts padded
//! positions in the divisor: every window divides by `size²` (PyTorch's
//! default `count_include_pad=True`), so a window half over the padding
//! averages the real values with zeros; and windows that end past the
//! padded input do not occur (no `ceil_mode`). The padded max pool keeps
//! the argmax as an index within the input plane (`iy·w + ix`), ties to the
//! first in row-major window order, NaN winning, exactly as the unpadded
//! [`super::pool`] (which the executor still runs for `pad = 0`); its
//! backward is [`super::pool::maxpool_backward`]'s scatter. Backward passes
//! OVERWRITE `dx`. Planes run in parallel, each sequentially, so results do
//! not depend on the thread count.

use rayon::prelude::*;

use super::{Float, Nchw};

/// Input `[n, c, h, w]`, window `size×size` every `stride`, `pad` each side.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PadPool {
    pub n: usize,
    pub c: usize,
    pub h: usize,
    pub w: usize,
    pub size: usize,
    pub stride: usize,
    pub pad: usize,
}

impl PadPool {
    #[inline]
    pub fn oh(&self) -> usize {
        (self.h + 2 * self.pad - self.size) / self.stride + 1
    }
    #[inline]
    pub fn ow(&self) -> usize {
        (self.w + 2 * self.pad - self.size) / self.stride + 1
    }
    pub fn input(&self) -> Nchw {
        Nchw::new(self.n, self.c, self.h, self.w)
    }
    pub fn output(&self) -> Nchw {
        Nchw::new(self.n, self.c, self.oh(), self.ow())
    }
    /// The real rows (or columns) `lo..hi` of the window starting at output
    /// position `o`, along an axis of `len` positions.
    #[inline]
    fn span(&self, o: usize, len: usize) -> (usize, usize) {
        let start = (o * self.stride) as isize - self.pad as isize;
        let lo = start.max(0) as usize;
        let hi = ((start + self.size as isize).max(0) as usize).min(len);
        (lo, hi)
    }
}

/// Max pooling with padding: `y` and the argmax (plane index) of each window.
pub fn maxpool_pad_forward<T: Float>(s: &PadPool, x: &[T], y: &mut [T], argmax: &mut [u32]) {
    debug_assert!(s.pad * 2 <= s.size && s.stride > 0);
    debug_assert_eq!(x.len(), s.input().len());
    debug_assert_eq!(y.len(), s.output().len());
    debug_assert_eq!(argmax.len(), y.len());
    let (hw, ohw) = (s.h * s.w, s.oh() * s.ow());
    if ohw == 0 || hw == 0 {
        return;
    }
    let (w, ow) = (s.w, s.ow());
    y.par_chunks_mut(ohw)
        .zip(argmax.par_chunks_mut(ohw))
        .zip(x.par_chunks(hw))
        .for_each(|((yp, ap), xp)| {
            for (o, (yo, ao)) in yp.iter_mut().zip(ap.iter_mut()).enumerate() {
                let (y0, y1) = s.span(o / ow, s.h);
                let (x0, x1) = s.span(o % ow, w);
                let mut best = xp[y0 * w + x0];
                let mut bi = (y0 * w + x0) as u32;
                for iy in y0..y1 {
                    for ix in x0..x1 {
                        let v = xp[iy * w + ix];
                        let better = v > best || (v.is_nan() && !best.is_nan());
                        best = if better { v } else { best };
                        bi = if better { (iy * w + ix) as u32 } else { bi };
                    }
                }
                *yo = best;
                *ao = bi;
            }
        });
}

/// The gradient of [`maxpool_pad_forward`]: each `dy` added at its argmax.
pub fn maxpool_pad_backward<T: Float>(s: &PadPool, dy: &[T], argmax: &[u32], dx: &mut [T]) {
    debug_assert_eq!(dy.len(), s.output().len());
    debug_assert_eq!(argmax.len(), dy.len());
    debug_assert_eq!(dx.len(), s.input().len());
    let (hw, ohw) = (s.h * s.w, s.oh() * s.ow());
    if hw == 0 {
        return;
    }
    dx.par_chunks_mut(hw)
        .zip(dy.par_chunks(ohw.max(1)))
        .zip(argmax.par_chunks(ohw.max(1)))
        .for_each(|((dp, gp), ap)| {
            dp.fill(T::ZERO);
            for (g, a) in gp.iter().zip(ap) {
                dp[*a as usize] += *g;
            }
        });
}

/// Average pooling, padded positions counting as zeros in the `size²` divisor.
pub fn avgpool_forward<T: Float>(s: &PadPool, x: &[T], y: &mut [T]) {
    debug_assert!(s.pad * 2 <= s.size && s.stride > 0);
    debug_assert_eq!(x.len(), s.input().len());
    debug_assert_eq!(y.len(), s.output().len());
    let (hw, ohw) = (s.h * s.w, s.oh() * s.ow());
    if ohw == 0 || hw == 0 {
        return;
    }
    let (w, ow) = (s.w, s.ow());
    let inv = T::from_f64(1.0 / (s.size * s.size) as f64);
    y.par_chunks_mut(ohw)
        .zip(x.par_chunks(hw))
        .for_each(|(yp, xp)| {
            for (o, yo) in yp.iter_mut().enumerate() {
                let (y0, y1) = s.span(o / ow, s.h);
                let (x0, x1) = s.span(o % ow, w);
                let mut sum = T::ZERO;
                for iy in y0..y1 {
                    for v in &xp[iy * w + x0..iy * w + x1] {
                        sum += *v;
                    }
                }
                *yo = sum * inv;
            }
        });
}

/// The gradient of [`avgpool_forward`]: each `dy/size²` added over its window.
pub fn avgpool_backward<T: Float>(s: &PadPool, dy: &[T], dx: &mut [T]) {
    debug_assert_eq!(dy.len(), s.output().len());
    debug_assert_eq!(dx.len(), s.input().len());
    let (hw, ohw) = (s.h * s.w, s.oh() * s.ow());
    if hw == 0 {
        return;
    }
    let (w, ow) = (s.w, s.ow());
    let inv = T::from_f64(1.0 / (s.size * s.size) as f64);
    dx.par_chunks_mut(hw)
        .zip(dy.par_chunks(ohw.max(1)))
        .for_each(|(dp, gp)| {
            dp.fill(T::ZERO);
            for (o, g) in gp.iter().enumerate() {
                let (y0, y1) = s.span(o / ow, s.h);
                let (x0, x1) = s.span(o % ow, w);
                let g = *g * inv;
                for iy in y0..y1 {
                    for d in &mut dp[iy * w + x0..iy * w + x1] {
                        *d += g;
                    }
                }
            }
        });
}

/// The mean of each of the `planes` planes of `hw` values: `y[p]`.
pub fn global_avgpool_forward<T: Float>(hw: usize, x: &[T], y: &mut [T]) {
    debug_assert_eq!(x.len(), y.len() * hw);
    if hw == 0 {
        y.fill(T::ZERO);
        return;
    }
    let inv = T::from_f64(1.0 / hw as f64);
    y.par_iter_mut()
        .zip(x.par_chunks(hw))
        .for_each(|(yo, xp)| *yo = super::sum_lanes(xp) * inv);
}

/// The gradient of [`global_avgpool_forward`]: `dx = dy[p]/hw` over plane `p`.
pub fn global_avgpool_backward<T: Float>(hw: usize, dy: &[T], dx: &mut [T]) {
    debug_assert_eq!(dx.len(), dy.len() * hw);
    if hw == 0 {
        return;
    }
    let inv = T::from_f64(1.0 / hw as f64);
    dx.par_chunks_mut(hw)
        .zip(dy.par_iter())
        .for_each(|(dp, g)| dp.fill(*g * inv));
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::backend::cpu::kernels::gradcheck::*;
    use crate::backend::cpu::kernels::pool::{PoolShape, maxpool_forward};

    fn shape(h: usize, w: usize, size: usize, stride: usize, pad: usize) -> PadPool {
        PadPool {
            n: 2,
            c: 3,
            h,
            w,
            size,
            stride,
            pad,
        }
    }

    #[test]
    fn avgpool_counts_padding_in_the_divisor() {
        // 1 plane of 2×2 ones, size 2, stride 2, pad 1: every 2×2 window
        // holds one real 1 and three padded zeros.
        let s = PadPool {
            n: 1,
            c: 1,
            h: 2,
            w: 2,
            size: 2,
            stride: 2,
            pad: 1,
        };
        assert_eq!((s.oh(), s.ow()), (2, 2));
        let mut y = [9.0f64; 4];
        avgpool_forward(&s, &[1.0, 2.0, 3.0, 4.0], &mut y);
        assert_eq!(y, [0.25, 0.5, 0.75, 1.0]);
        // Unpadded 2/2 over a 4×4 ramp: plain means.
        let s = PadPool {
            n: 1,
            c: 1,
            h: 4,
            w: 4,
            size: 2,
            stride: 2,
            pad: 0,
        };
        let x: Vec<f64> = (0..16).map(f64::from).collect();
        let mut y = [0.0; 4];
        avgpool_forward(&s, &x, &mut y);
        assert_eq!(y, [2.5, 4.5, 10.5, 12.5]);
    }

    #[test]
    fn padded_maxpool_never_picks_padding() {
        // All negative: a padded zero would win if padding counted.
        let s = PadPool {
            n: 1,
            c: 1,
            h: 3,
            w: 3,
            size: 3,
            stride: 2,
            pad: 1,
        };
        assert_eq!((s.oh(), s.ow()), (2, 2));
        let x: Vec<f32> = (0..9).map(|v| -1.0 - v as f32).collect();
        let mut y = [0.0f32; 4];
        let mut am = [0u32; 4];
        maxpool_pad_forward(&s, &x, &mut y, &mut am);
        assert_eq!(y, [-1.0, -2.0, -4.0, -5.0]);
        assert_eq!(am, [0, 1, 3, 4]);
    }

    #[test]
    fn padded_maxpool_with_pad_0_is_the_plain_one() {
        let s = shape(7, 6, 3, 2, 0);
        let x = to_f32(&rand_vec(51, s.input().len()));
        let plain = PoolShape {
            n: s.n,
            c: s.c,
            h: s.h,
            w: s.w,
            size: s.size,
            stride: s.stride,
        };
        let len = s.output().len();
        let (mut y0, mut a0) = (vec![0.0f32; len], vec![0u32; len]);
        let (mut y1, mut a1) = (vec![0.0f32; len], vec![0u32; len]);
        maxpool_forward(&plain, &x, &mut y0, &mut a0);
        maxpool_pad_forward(&s, &x, &mut y1, &mut a1);
        assert_eq!((y0, a0), (y1, a1));
    }

    #[test]
    fn pools_gradcheck() {
        for s in [
            shape(7, 6, 3, 2, 1),
            shape(5, 5, 2, 1, 1),
            shape(6, 6, 2, 2, 0),
            shape(5, 4, 3, 3, 1),
        ] {
            let r = rand_vec(52, s.output().len());
            let mut x = rand_vec(53, s.input().len());
            let mut y = vec![0.0; r.len()];
            avgpool_forward(&s, &x, &mut y);
            let mut dx = vec![0.0; x.len()];
            avgpool_backward(&s, &r, &mut dx);
            let num = numeric_grad(&mut x, EPS, |x| {
                let mut y = vec![0.0; r.len()];
                avgpool_forward(&s, x, &mut y);
                dot(&y, &r)
            });
            assert_grad(&format!("avgpool dx {s:?}"), &dx, &num, TOL);

            let mut am = vec![0u32; r.len()];
            maxpool_pad_forward(&s, &x, &mut y, &mut am);
            maxpool_pad_backward(&s, &r, &am, &mut dx);
            let num = numeric_grad(&mut x, EPS, |x| {
                let mut y = vec![0.0; r.len()];
                let mut am = vec![0u32; r.len()];
                maxpool_pad_forward(&s, x, &mut y, &mut am);
                dot(&y, &r)
            });
            assert_grad(&format!("padded maxpool dx {s:?}"), &dx, &num, TOL);
        }
    }

    #[test]
    fn global_avgpool_values_and_gradcheck() {
        let mut y = [0.0f64; 2];
        global_avgpool_forward(3, &[1.0, 2.0, 6.0, -1.0, -1.0, 5.0], &mut y);
        assert_eq!(y, [3.0, 1.0]);
        let hw = 35;
        let r = rand_vec(54, 6);
        let mut x = rand_vec(55, 6 * hw);
        let mut dx = vec![0.0; x.len()];
        global_avgpool_backward(hw, &r, &mut dx);
        let num = numeric_grad(&mut x, EPS, |x| {
            let mut y = vec![0.0; 6];
            global_avgpool_forward(hw, x, &mut y);
            dot(&y, &r)
        });
        assert_grad("global_avgpool dx", &dx, &num, TOL);
    }
}
