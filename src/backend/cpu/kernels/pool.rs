//! Max pooling over square windows that may overlap (AlexNet: size 3,
//! stride 2), no padding: output size `floor((H − size)/stride) + 1`.
//!
//! Assumes `h ≥ size`, `w ≥ size`, `stride ≥ 1`. Guarantees: forward writes
//! `y` and, for each output, the argmax as a u32 index *within its input
//! channel plane* (`iy·w + ix`); ties go to the first maximum in row-major
//! window order, and a NaN in the window is the maximum (the first NaN; as
//! in PyTorch, so NaN propagates). Backward OVERWRITES `dx` (zeroes it, then adds each `dy` at
//! its argmax, so overlapping windows accumulate). Planes are processed in
//! parallel; each plane is sequential, so results are thread-count independent.

use rayon::prelude::*;

use super::{Float, Nchw};

/// Shape of a max-pool: input `[n, c, h, w]`, window `size×size`, `stride`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PoolShape {
    pub n: usize,
    pub c: usize,
    pub h: usize,
    pub w: usize,
    pub size: usize,
    pub stride: usize,
}

impl PoolShape {
    #[inline]
    pub fn oh(&self) -> usize {
        (self.h - self.size) / self.stride + 1
    }
    #[inline]
    pub fn ow(&self) -> usize {
        (self.w - self.size) / self.stride + 1
    }
    pub fn input(&self) -> Nchw {
        Nchw::new(self.n, self.c, self.h, self.w)
    }
    pub fn output(&self) -> Nchw {
        Nchw::new(self.n, self.c, self.oh(), self.ow())
    }
}

/// Forward: `y = maxpool(x)`, `argmax` = plane index of each maximum.
pub fn maxpool_forward<T: Float>(s: &PoolShape, x: &[T], y: &mut [T], argmax: &mut [u32]) {
    debug_assert!(s.h >= s.size && s.w >= s.size && s.stride > 0 && s.size > 0);
    debug_assert_eq!(x.len(), s.input().len());
    debug_assert_eq!(y.len(), s.output().len());
    debug_assert_eq!(argmax.len(), y.len());
    debug_assert!(s.h * s.w <= u32::MAX as usize);
    let (hw, ohw) = (s.h * s.w, s.oh() * s.ow());
    if ohw == 0 {
        return;
    }
    let (w, ow, st) = (s.w, s.ow(), s.stride);
    // The window size as a constant for the common sizes, so the window
    // loops unroll.
    let plane: PlaneFn<T> = match s.size {
        2 => pool_plane::<T, 2>,
        3 => pool_plane::<T, 3>,
        _ => pool_plane::<T, 0>,
    };
    let size = s.size;
    y.par_chunks_mut(ohw)
        .zip(argmax.par_chunks_mut(ohw))
        .zip(x.par_chunks(hw))
        .for_each(|((yp, ap), xp)| plane(xp, yp, ap, w, ow, size, st));
}

/// [`maxpool_forward`] of one image (`s.n` is ignored), sequential: for
/// callers that already run images in parallel.
pub fn maxpool_forward_image<T: Float>(s: &PoolShape, x: &[T], y: &mut [T], argmax: &mut [u32]) {
    let (hw, ohw) = (s.h * s.w, s.oh() * s.ow());
    if ohw == 0 || hw == 0 {
        return;
    }
    let (w, ow, st, size) = (s.w, s.ow(), s.stride, s.size);
    let plane: PlaneFn<T> = match size {
        2 => pool_plane::<T, 2>,
        3 => pool_plane::<T, 3>,
        _ => pool_plane::<T, 0>,
    };
    for ((yp, ap), xp) in y
        .chunks_exact_mut(ohw)
        .zip(argmax.chunks_exact_mut(ohw))
        .zip(x.chunks_exact(hw))
    {
        plane(xp, yp, ap, w, ow, size, st);
    }
}

/// `(x, y, argmax, w, ow, size, stride)` of one plane.
type PlaneFn<T> = fn(&[T], &mut [T], &mut [u32], usize, usize, usize, usize);

/// One channel plane of [`maxpool_forward`]; `K` is the window size, or 0
/// to take it from `size`.
fn pool_plane<T: Float, const K: usize>(
    xp: &[T],
    yp: &mut [T],
    ap: &mut [u32],
    w: usize,
    ow: usize,
    size: usize,
    st: usize,
) {
    let size = if K > 0 { K } else { size };
    for (oy, (yrow, arow)) in yp
        .chunks_exact_mut(ow)
        .zip(ap.chunks_exact_mut(ow))
        .enumerate()
    {
        let iy0 = oy * st;
        for (ox, (yo, ao)) in yrow.iter_mut().zip(arow.iter_mut()).enumerate() {
            let ix0 = ox * st;
            let mut best = xp[iy0 * w + ix0];
            let mut bi = (iy0 * w + ix0) as u32;
            for dy in 0..size {
                let r = (iy0 + dy) * w + ix0;
                for (dx, v) in xp[r..r + size].iter().enumerate() {
                    // Branch-free select: maxima are data-dependent, so a
                    // branch would mispredict often.
                    // NaN wins (the first one), as in PyTorch.
                    let better = *v > best || (v.is_nan() && !best.is_nan());
                    best = if better { *v } else { best };
                    bi = if better { (r + dx) as u32 } else { bi };
                }
            }
            *yo = best;
            *ao = bi;
        }
    }
}

/// Backward: `dx` (OVERWRITTEN) gets each `dy` added at its saved argmax.
pub fn maxpool_backward<T: Float>(s: &PoolShape, dy: &[T], argmax: &[u32], dx: &mut [T]) {
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

/// [`maxpool_backward`] of one image (`s.n` is ignored), sequential.
pub fn maxpool_backward_image<T: Float>(s: &PoolShape, dy: &[T], argmax: &[u32], dx: &mut [T]) {
    let (hw, ohw) = (s.h * s.w, s.oh() * s.ow());
    if hw == 0 || ohw == 0 {
        dx.fill(T::ZERO);
        return;
    }
    for ((dp, gp), ap) in dx
        .chunks_exact_mut(hw)
        .zip(dy.chunks_exact(ohw))
        .zip(argmax.chunks_exact(ohw))
    {
        dp.fill(T::ZERO);
        for (g, a) in gp.iter().zip(ap) {
            dp[*a as usize] += *g;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::backend::cpu::kernels::gradcheck::*;

    #[test]
    fn maxpool_3x3_s2_on_5x5_ramp() {
        // x[i][j] = 5i + j: the max of each window is its bottom-right corner.
        let s = PoolShape {
            n: 1,
            c: 1,
            h: 5,
            w: 5,
            size: 3,
            stride: 2,
        };
        assert_eq!((s.oh(), s.ow()), (2, 2));
        let x: Vec<f32> = (0..25).map(|v| v as f32).collect();
        let mut y = [0.0f32; 4];
        let mut am = [0u32; 4];
        maxpool_forward(&s, &x, &mut y, &mut am);
        assert_eq!(y, [12.0, 14.0, 22.0, 24.0]);
        assert_eq!(am, [12, 14, 22, 24]);
        // Reverse ramp: max at top-left; the centre (12) is shared by all four.
        let xr: Vec<f32> = (0..25).map(|v| (24 - v) as f32).collect();
        maxpool_forward(&s, &xr, &mut y, &mut am);
        assert_eq!(am, [0, 2, 10, 12]);
        let mut dx = [7.0f32; 25];
        maxpool_backward(&s, &[1.0, 2.0, 3.0, 4.0], &am, &mut dx);
        let mut want = [0.0f32; 25];
        want[0] = 1.0;
        want[2] = 2.0;
        want[10] = 3.0;
        want[12] = 4.0;
        assert_eq!(dx, want);
    }

    #[test]
    fn maxpool_ties_first_in_row_major_and_overlap_accumulates() {
        let s = PoolShape {
            n: 1,
            c: 1,
            h: 3,
            w: 5,
            size: 3,
            stride: 2,
        };
        // Column 2 is shared by both windows and holds the (tied) maximum.
        let x = [
            0.0f64, 1.0, 5.0, 1.0, 0.0, 5.0, 0.0, 5.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0,
        ];
        let mut y = [0.0; 2];
        let mut am = [0u32; 2];
        maxpool_forward(&s, &x, &mut y, &mut am);
        assert_eq!(y, [5.0, 5.0]);
        assert_eq!(am, [2, 2]);
        let mut dx = [0.0; 15];
        maxpool_backward(&s, &[1.5, 2.0], &am, &mut dx);
        assert_eq!(dx[2], 3.5);
        assert_eq!(dx.iter().sum::<f64>(), 3.5);
    }

    #[test]
    fn maxpool_gradcheck_overlapping() {
        for s in [
            PoolShape {
                n: 2,
                c: 3,
                h: 7,
                w: 6,
                size: 3,
                stride: 2,
            },
            PoolShape {
                n: 1,
                c: 2,
                h: 5,
                w: 5,
                size: 2,
                stride: 1,
            },
        ] {
            let mut x = rand_vec(31, s.input().len());
            let r = rand_vec(32, s.output().len());
            let mut y = vec![0.0; r.len()];
            let mut am = vec![0u32; r.len()];
            maxpool_forward(&s, &x, &mut y, &mut am);
            let mut dx = vec![0.0; x.len()];
            maxpool_backward(&s, &r, &am, &mut dx);
            let num = numeric_grad(&mut x, EPS, |x| {
                let mut y = vec![0.0; r.len()];
                let mut am = vec![0u32; r.len()];
                maxpool_forward(&s, x, &mut y, &mut am);
                dot(&y, &r)
            });
            assert_grad("maxpool dx", &dx, &num, TOL);
        }
    }
}
