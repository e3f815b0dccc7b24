//! The paper's ten-crop score of one test image: the softmax outputs of its
//! ten crops averaged, then the loss and the top-k verdict of that average.
//!
//! Assumes ten rows of `classes` logits (the crops of one image, in any
//! order) and a label `< classes`.
//!
//! Guarantees: the loss is exact in f64, `−log((1/10) Σ_c softmax(z_c)[y])`
//! computed as `ln 10 − logsumexp_c(log softmax(z_c)[y])` with every
//! log-softmax taken in log space, so no probability underflows to a clamp
//! (the centre-crop loss is exact the same way). A NaN logit gives a NaN
//! loss and an incorrect verdict. Top-k counts ties against the label, as
//! `count_top_k` does for one crop.

use crate::backend::cpu::kernels::softmax_xent::count_top_k;

/// Crops per image.
pub const CROPS: usize = 10;

/// One image's ten-crop result.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Score {
    pub loss: f64,
    pub top1: bool,
    pub top5: bool,
}

/// `log Σ exp(v)` in f64, with the maximum subtracted; NaN when a value is
/// NaN, `-∞` for an empty or all `-∞` input.
fn logsumexp(v: impl Iterator<Item = f64> + Clone) -> f64 {
    let m = v.clone().fold(f64::NEG_INFINITY, |a, b| {
        if a.is_nan() || b.is_nan() {
            f64::NAN
        } else {
            a.max(b)
        }
    });
    if !m.is_finite() {
        return m;
    }
    m + v.map(|x| (x - m).exp()).sum::<f64>().ln()
}

/// The log-softmax of each row of `logits` (`classes` values a row), in f64.
fn log_softmax_rows(logits: &[f32], classes: usize) -> Vec<Vec<f64>> {
    logits
        .chunks_exact(classes.max(1))
        .map(|r| {
            let lse = logsumexp(r.iter().map(|&v| v as f64));
            r.iter().map(|&v| v as f64 - lse).collect()
        })
        .collect()
}

/// The mean over rows of `exp(logp)`, per class.
fn average(logp: &[Vec<f64>], classes: usize) -> Vec<f64> {
    (0..classes)
        .map(|j| logp.iter().map(|lp| lp[j].exp()).sum::<f64>() / logp.len().max(1) as f64)
        .collect()
}

/// The class probabilities of one image from the logits of its crops (any
/// number of rows of `classes` values: one for the centre crop, ten for
/// the paper's ten crops): each row's softmax, in f64, averaged, exactly as
/// [`score`] averages them.
pub fn probabilities(logits: &[f32], classes: usize) -> Vec<f64> {
    average(&log_softmax_rows(logits, classes), classes)
}

/// Scores one image from its crops' logits (`CROPS × classes`, row-major).
pub fn score(logits: &[f32], classes: usize, label: u32) -> Score {
    debug_assert_eq!(logits.len(), CROPS * classes);
    // log softmax of every crop, in f64.
    let logp = log_softmax_rows(logits, classes);
    let y = label as usize;
    let loss = (CROPS as f64).ln() - logsumexp(logp.iter().map(|lp| lp[y]));
    // The averaged probabilities decide the verdict.
    let avg = average(&logp, classes);
    Score {
        loss,
        top1: count_top_k(1, classes, &avg, &[label], 1) == 1,
        top5: count_top_k(1, classes, &avg, &[label], 5) == 1,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loss_is_exact_far_beyond_the_old_clamp() {
        // The label's logit 250 below the others on every crop: the averaged
        // probability is e^-250-ish, whose log a 1e-30 clamp cut to 69.08.
        let mut z = vec![0f32; CROPS * 3];
        for c in 0..CROPS {
            z[c * 3] = -250.0 - c as f32;
        }
        let s = score(&z, 3, 0);
        // Exact: ln 10 − logsumexp_c(−250 − c − ln(1 + 2e^{250+c}))
        let want = {
            let lp: Vec<f64> = (0..CROPS)
                .map(|c| {
                    let a = -250.0 - c as f64;
                    a - (a.exp() + 2.0f64).ln()
                })
                .collect();
            let m = lp.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
            10f64.ln() - (m + lp.iter().map(|v| (v - m).exp()).sum::<f64>().ln())
        };
        assert!((s.loss - want).abs() < 1e-9, "{} vs {want}", s.loss);
        assert!(s.loss > 250.0, "{}", s.loss);
        assert!(!s.top1 && s.top5, "{s:?}");
    }

    #[test]
    fn agrees_with_the_centre_crop_loss_when_crops_agree() {
        let row = [0.3f32, -1.2, 2.0, 0.7];
        let z: Vec<f32> = (0..CROPS).flat_map(|_| row).collect();
        let s = score(&z, 4, 1);
        let mut p = [0f32; 4];
        let want = crate::backend::cpu::kernels::softmax_xent::softmax_xent_forward(
            1,
            4,
            &row,
            &[1],
            &mut p,
        );
        assert!((s.loss - want).abs() < 1e-6, "{} vs {want}", s.loss);
        assert!(!s.top1 && s.top5);
        assert!(score(&z, 4, 2).top1);
    }

    #[test]
    fn nan_is_not_hidden_and_ties_do_not_count() {
        let mut z = vec![0f32; CROPS * 3];
        let s = score(&z, 3, 1);
        assert!((s.loss - 3f64.ln()).abs() < 1e-12);
        assert!(!s.top1 && s.top5, "a three-way tie is not a top-1 answer");
        z[4] = f32::NAN;
        let s = score(&z, 3, 1);
        assert!(s.loss.is_nan() && !s.top1 && !s.top5, "{s:?}");
    }
}
