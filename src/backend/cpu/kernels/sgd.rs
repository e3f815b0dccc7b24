//! SGD with momentum and weight decay, exactly as in Krizhevsky et al. 2012:
//! `v ← momentum·v − weight_decay·lr·w − lr·grad`, then `w ← w + v`,
//! where `grad` is the mean-over-batch gradient.
//!
//! Assumes `w`, `v`, `grad` have equal lengths. Updates `w` and `v` in place;
//! elementwise, so independent of thread count.

use rayon::prelude::*;

use super::Float;

const BLOCK: usize = 1 << 14;

/// Hyper-parameters of one update (paper: momentum 0.9, weight decay 5e-4).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct SgdParams {
    pub lr: f64,
    pub momentum: f64,
    pub weight_decay: f64,
}

/// One in-place step over a parameter tensor and its momentum buffer.
pub fn sgd_update<T: Float>(p: &SgdParams, w: &mut [T], v: &mut [T], grad: &[T]) {
    debug_assert_eq!(w.len(), v.len());
    debug_assert_eq!(w.len(), grad.len());
    let mom = T::from_f64(p.momentum);
    let wd = T::from_f64(p.weight_decay * p.lr);
    let lr = T::from_f64(p.lr);
    w.par_chunks_mut(BLOCK)
        .zip(v.par_chunks_mut(BLOCK))
        .zip(grad.par_chunks(BLOCK))
        .for_each(|((wb, vb), gb)| {
            for ((wi, vi), gi) in wb.iter_mut().zip(vb.iter_mut()).zip(gb) {
                let nv = mom * *vi - wd * *wi - lr * *gi;
                *vi = nv;
                *wi += nv;
            }
        });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sgd_one_step_by_hand() {
        let p = SgdParams {
            lr: 0.1,
            momentum: 0.9,
            weight_decay: 0.5,
        };
        let mut w = [1.0f64, -2.0];
        let mut v = [0.5f64, 0.0];
        let g = [2.0f64, -1.0];
        sgd_update(&p, &mut w, &mut v, &g);
        // v0 = 0.9·0.5 − 0.5·0.1·1 − 0.1·2 = 0.45 − 0.05 − 0.2 = 0.2 ; w0 = 1.2
        // v1 = 0 − 0.05·(−2) − 0.1·(−1) = 0.1 + 0.1 = 0.2           ; w1 = −1.8
        assert!((v[0] - 0.2).abs() < 1e-15 && (w[0] - 1.2).abs() < 1e-15);
        assert!((v[1] - 0.2).abs() < 1e-15 && (w[1] + 1.8).abs() < 1e-15);
        // second step uses the new v
        sgd_update(&p, &mut w, &mut v, &[0.0, 0.0]);
        // v0 = 0.18 − 0.05·1.2 = 0.12 ; w0 = 1.32
        assert!((v[0] - 0.12).abs() < 1e-15 && (w[0] - 1.32).abs() < 1e-14);
    }
}
