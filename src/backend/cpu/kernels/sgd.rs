//! SGD with momentum and weight decay, exactly as in Krizhevsky et al. 2012:
//! `v ← momentum·v − weight_decay·lr·w − lr·grad`, then `w ← w + v`,
//! where `grad` is the mean-over-batch gradient. Per parameter, `lr` is
//! scaled by `lr_mult` and `weight_decay` by `decay_mult` (Caffe's
//! multipliers). Nesterov's form looks ahead along the new velocity:
//! `d = weight_decay·lr·w + lr·grad; v ← momentum·v − d; w ← w + momentum·v − d`,
//! which is PyTorch's `SGD(nesterov=True)` (`b ← μ·b + g + λ·w;
//! w ← w − lr·(g + λ·w + μ·b)`) with `v = −lr·b` while `lr` is constant.
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
    pub nesterov: bool,
    pub lr_mult: f64,
    pub decay_mult: f64,
}

impl SgdParams {
    /// The paper's update (no Nesterov, multipliers 1).
    pub fn paper(lr: f64, momentum: f64, weight_decay: f64) -> Self {
        SgdParams {
            lr,
            momentum,
            weight_decay,
            nesterov: false,
            lr_mult: 1.0,
            decay_mult: 1.0,
        }
    }
}

/// One in-place step over a parameter tensor and its momentum buffer.
pub fn sgd_update<T: Float>(p: &SgdParams, w: &mut [T], v: &mut [T], grad: &[T]) {
    debug_assert_eq!(w.len(), v.len());
    debug_assert_eq!(w.len(), grad.len());
    // With multipliers of 1 these are the paper's `lr` and `weight_decay·lr`
    // bit for bit (x·1 = x).
    let lr_eff = p.lr * p.lr_mult;
    let mom = T::from_f64(p.momentum);
    let wd = T::from_f64(p.weight_decay * p.decay_mult * lr_eff);
    let lr = T::from_f64(lr_eff);
    let blocks = w
        .par_chunks_mut(BLOCK)
        .zip(v.par_chunks_mut(BLOCK))
        .zip(grad.par_chunks(BLOCK));
    if p.nesterov {
        blocks.for_each(|((wb, vb), gb)| {
            for ((wi, vi), gi) in wb.iter_mut().zip(vb.iter_mut()).zip(gb) {
                let d = wd * *wi + lr * *gi;
                let nv = mom * *vi - d;
                *vi = nv;
                *wi += mom * nv - d;
            }
        });
    } else {
        blocks.for_each(|((wb, vb), gb)| {
            for ((wi, vi), gi) in wb.iter_mut().zip(vb.iter_mut()).zip(gb) {
                let nv = mom * *vi - wd * *wi - lr * *gi;
                *vi = nv;
                *wi += nv;
            }
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sgd_one_step_by_hand() {
        let p = SgdParams::paper(0.1, 0.9, 0.5);
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

    /// PyTorch's `SGD(nesterov=True, dampening=0)` step, written as its
    /// documentation states it, in f64: the reference the paper-form
    /// update is checked against.
    fn torch_nesterov(
        lr: f64,
        mu: f64,
        wd: f64,
        w: &mut [f64],
        b: &mut [f64],
        g: &[f64],
        first: bool,
    ) {
        for i in 0..w.len() {
            let gi = g[i] + wd * w[i];
            b[i] = if first { gi } else { mu * b[i] + gi };
            w[i] -= lr * (gi + mu * b[i]);
        }
    }

    #[test]
    fn nesterov_by_hand() {
        let p = SgdParams {
            nesterov: true,
            ..SgdParams::paper(0.1, 0.9, 0.5)
        };
        let mut w = [1.0f64];
        let mut v = [0.0f64];
        sgd_update(&p, &mut w, &mut v, &[2.0]);
        // d = 0.05·1 + 0.1·2 = 0.25; v = −0.25; w = 1 + 0.9·(−0.25) − 0.25 = 0.525
        assert!((v[0] + 0.25).abs() < 1e-15 && (w[0] - 0.525).abs() < 1e-15);
        sgd_update(&p, &mut w, &mut v, &[1.0]);
        // d = 0.05·0.525 + 0.1 = 0.12625; v = −0.225 − 0.12625 = −0.35125;
        // w = 0.525 + 0.9·(−0.35125) − 0.12625 = 0.082625
        assert!((v[0] + 0.35125).abs() < 1e-15, "{}", v[0]);
        assert!((w[0] - 0.082625).abs() < 1e-15, "{}", w[0]);
    }

    #[test]
    fn nesterov_follows_pytorchs_trajectory() {
        // Twenty steps on a fixed sequence of gradients that depend on w
        // (a quadratic bowl plus a drift), constant lr: the paper form and
        // PyTorch's form give the same weights, and v = −lr·b throughout.
        let (lr, mu, wd) = (0.05, 0.9, 0.01);
        let p = SgdParams {
            nesterov: true,
            ..SgdParams::paper(lr, mu, wd)
        };
        let mut w = [1.5f64, -0.7, 0.2];
        let mut v = [0.0f64; 3];
        let mut tw = w;
        let mut tb = [0.0f64; 3];
        for step in 0..20 {
            let grad = |w: &[f64; 3]| -> [f64; 3] {
                let t = step as f64;
                [
                    2.0 * w[0] + 0.1 * t.sin(),
                    0.5 * w[1] - 0.3,
                    w[2] * w[2] + 0.05 * t,
                ]
            };
            let g = grad(&w);
            sgd_update(&p, &mut w, &mut v, &g);
            let tg = grad(&tw);
            torch_nesterov(lr, mu, wd, &mut tw, &mut tb, &tg, step == 0);
            for i in 0..3 {
                assert!(
                    (w[i] - tw[i]).abs() < 1e-12,
                    "step {step}: {} vs {}",
                    w[i],
                    tw[i]
                );
                assert!(
                    (v[i] + lr * tb[i]).abs() < 1e-12,
                    "step {step}: v {} b {}",
                    v[i],
                    tb[i]
                );
            }
        }
    }

    #[test]
    fn multipliers_scale_lr_and_decay() {
        // Caffe's bias setting: lr_mult 2, decay_mult 0 is plain momentum
        // SGD at twice the rate with no decay.
        let p = SgdParams {
            lr_mult: 2.0,
            decay_mult: 0.0,
            ..SgdParams::paper(0.1, 0.9, 0.5)
        };
        let mut w = [1.0f64];
        let mut v = [0.5f64];
        sgd_update(&p, &mut w, &mut v, &[2.0]);
        // v = 0.45 − 0 − 0.2·2 = 0.05; w = 1.05
        assert!((v[0] - 0.05).abs() < 1e-15 && (w[0] - 1.05).abs() < 1e-15);
        // decay_mult 3, lr_mult 0.5: λ·ε = 1.5·0.05 = 0.075
        let p = SgdParams {
            lr_mult: 0.5,
            decay_mult: 3.0,
            ..SgdParams::paper(0.1, 0.9, 0.5)
        };
        let (mut w, mut v) = ([2.0f64], [0.0f64]);
        sgd_update(&p, &mut w, &mut v, &[1.0]);
        // v = −0.075·2 − 0.05·1 = −0.2
        assert!((v[0] + 0.2).abs() < 1e-15 && (w[0] - 1.8).abs() < 1e-15);
    }

    #[test]
    fn unit_multipliers_are_the_paper_bit_for_bit() {
        let w0: Vec<f32> = (0..1000)
            .map(|i| ((i * 37 % 101) as f32 - 50.0) * 0.013)
            .collect();
        let g: Vec<f32> = (0..1000)
            .map(|i| ((i * 53 % 97) as f32 - 48.0) * 0.007)
            .collect();
        let lr = 0.013;
        let (mom, wd) = (0.9, 0.0005);
        let p = SgdParams::paper(lr, mom, wd);
        let (mut w, mut v) = (w0.clone(), vec![0.01f32; 1000]);
        sgd_update(&p, &mut w, &mut v, &g);
        // The update as it was written before the multipliers.
        let (m, d, l) = (mom as f32, (wd * lr) as f32, lr as f32);
        for i in 0..1000 {
            let nv = m * 0.01f32 - d * w0[i] - l * g[i];
            assert_eq!(v[i].to_bits(), nv.to_bits());
            assert_eq!(w[i].to_bits(), (w0[i] + nv).to_bits());
        }
    }
}
