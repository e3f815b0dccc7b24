//! Softmax cross-entropy over `[n, classes]` logits with integer labels, and
//! top-k accuracy counting.
//!
//! `loss = (1/n) Σ_i −log softmax(z_i)[label_i]` (log-sum-exp with the row
//! max subtracted; loss accumulated in f64). Gradient w.r.t. the logits:
//! `(softmax − onehot)/n`; with label smoothing ε, `(softmax − t)/n`
//! against `t = (1 − ε)·onehot + ε/classes`. Assumes every label `< classes`. Forward
//! OVERWRITES `probs` (saved for backward); backward OVERWRITES `dlogits`.

use super::Float;

/// Forward: fills `probs` with the softmax and returns the mean loss.
pub fn softmax_xent_forward<T: Float>(
    n: usize,
    classes: usize,
    logits: &[T],
    labels: &[u32],
    probs: &mut [T],
) -> f64 {
    debug_assert_eq!(logits.len(), n * classes);
    debug_assert_eq!(labels.len(), n);
    debug_assert_eq!(probs.len(), n * classes);
    if n == 0 || classes == 0 {
        return 0.0;
    }
    let mut total = 0.0f64;
    for ((z, p), &lab) in logits
        .chunks_exact(classes)
        .zip(probs.chunks_exact_mut(classes))
        .zip(labels)
    {
        debug_assert!((lab as usize) < classes);
        let m = z.iter().fold(z[0], |a, v| a.max(*v));
        let mut sum = T::ZERO;
        for (o, v) in p.iter_mut().zip(z) {
            *o = (*v - m).exp();
            sum += *o;
        }
        let inv = T::ONE / sum;
        for o in p.iter_mut() {
            *o *= inv;
        }
        // −log p[label] = log Σ exp(z − m) − (z[label] − m), in f64.
        total += sum.to_f64().ln() - (z[lab as usize] - m).to_f64();
    }
    total / n as f64
}

/// Backward: `dlogits = (probs − onehot(labels)) / n`.
pub fn softmax_xent_backward<T: Float>(
    n: usize,
    classes: usize,
    probs: &[T],
    labels: &[u32],
    dlogits: &mut [T],
) {
    debug_assert_eq!(probs.len(), n * classes);
    debug_assert_eq!(labels.len(), n);
    debug_assert_eq!(dlogits.len(), n * classes);
    if n == 0 || classes == 0 {
        return;
    }
    let inv_n = T::from_f64(1.0 / n as f64);
    for ((d, p), &lab) in dlogits
        .chunks_exact_mut(classes)
        .zip(probs.chunks_exact(classes))
        .zip(labels)
    {
        for (o, v) in d.iter_mut().zip(p) {
            *o = *v * inv_n;
        }
        d[lab as usize] = (p[lab as usize] - T::ONE) * inv_n;
    }
}

/// The smoothed target of one row over `classes` classes: `(on, off)`,
/// the label's `1 − ε + ε/classes` and every other class's `ε/classes`
/// (PyTorch's `CrossEntropyLoss(label_smoothing=ε)`).
pub fn smoothed_targets(classes: usize, smoothing: f64) -> (f64, f64) {
    let off = smoothing / classes.max(1) as f64;
    (1.0 - smoothing + off, off)
}

/// Backward against the smoothed target: `dlogits = (probs − t) / n`,
/// `t` from [`smoothed_targets`]. The gradient of [`smoothed_xent_loss`].
pub fn softmax_xent_backward_smoothed<T: Float>(
    n: usize,
    classes: usize,
    probs: &[T],
    labels: &[u32],
    smoothing: f64,
    dlogits: &mut [T],
) {
    debug_assert_eq!(probs.len(), n * classes);
    debug_assert_eq!(labels.len(), n);
    debug_assert_eq!(dlogits.len(), n * classes);
    if n == 0 || classes == 0 {
        return;
    }
    let inv_n = T::from_f64(1.0 / n as f64);
    let (on, off) = smoothed_targets(classes, smoothing);
    let (on, off) = (T::from_f64(on), T::from_f64(off));
    for ((d, p), &lab) in dlogits
        .chunks_exact_mut(classes)
        .zip(probs.chunks_exact(classes))
        .zip(labels)
    {
        for (j, (o, v)) in d.iter_mut().zip(p).enumerate() {
            *o = (*v - if j == lab as usize { on } else { off }) * inv_n;
        }
    }
}

/// The mean cross-entropy against the smoothed target,
/// `(1/n) Σ_i Σ_j −t_ij·log softmax(z_i)_j`, in f64: the loss
/// [`softmax_xent_backward_smoothed`] is the gradient of. Training reports
/// the plain cross-entropy ([`softmax_xent_forward`]); this one is for checks.
pub fn smoothed_xent_loss<T: Float>(
    n: usize,
    classes: usize,
    logits: &[T],
    labels: &[u32],
    smoothing: f64,
) -> f64 {
    if n == 0 || classes == 0 {
        return 0.0;
    }
    let (on, off) = smoothed_targets(classes, smoothing);
    let mut total = 0.0;
    for (z, &lab) in logits.chunks_exact(classes).zip(labels) {
        let z: Vec<f64> = z.iter().map(|v| v.to_f64()).collect();
        let m = z.iter().fold(z[0], |a, v| a.max(*v));
        let lse = m + z.iter().map(|v| (v - m).exp()).sum::<f64>().ln();
        for (j, v) in z.iter().enumerate() {
            let t = if j == lab as usize { on } else { off };
            total += t * (lse - v);
        }
    }
    total / n as f64
}

/// Number of rows whose label is among the `k` highest scores. A row counts
/// as correct iff fewer than `k` other classes score higher than *or equal
/// to* the label's class: a tie is resolved against the label, so a network
/// that gives every class the same score is never right. A row holding a
/// NaN, or a label scored ±∞, is never correct.
pub fn count_top_k<T: Float>(
    n: usize,
    classes: usize,
    scores: &[T],
    labels: &[u32],
    k: usize,
) -> usize {
    debug_assert_eq!(scores.len(), n * classes);
    debug_assert_eq!(labels.len(), n);
    if classes == 0 {
        return 0;
    }
    scores
        .chunks_exact(classes)
        .zip(labels)
        .filter(|(row, lab)| {
            let l = **lab as usize;
            let t = row[l];
            t.is_finite()
                && !row.iter().any(|v| v.to_f64().is_nan())
                && row
                    .iter()
                    .enumerate()
                    .filter(|&(j, v)| j != l && *v >= t)
                    .count()
                    < k
        })
        .count()
}

/// `(top-1 correct, top-5 correct)` counts over the batch.
pub fn top1_top5<T: Float>(
    n: usize,
    classes: usize,
    scores: &[T],
    labels: &[u32],
) -> (usize, usize) {
    (
        count_top_k(n, classes, scores, labels, 1),
        count_top_k(n, classes, scores, labels, 5),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::backend::cpu::kernels::gradcheck::*;

    #[test]
    fn xent_by_hand() {
        // logits [0, ln 2, ln 3] -> probs [1/6, 2/6, 3/6]
        let z = [0.0f64, 2f64.ln(), 3f64.ln(), 0.0, 0.0, 0.0];
        let mut p = [0.0; 6];
        let loss = softmax_xent_forward(2, 3, &z, &[2, 0], &mut p);
        let want = (-(0.5f64).ln() - (1.0f64 / 3.0).ln()) / 2.0;
        assert!((loss - want).abs() < 1e-14);
        assert!((p[0] - 1.0 / 6.0).abs() < 1e-15 && (p[2] - 0.5).abs() < 1e-15);
        let mut d = [0.0; 6];
        softmax_xent_backward(2, 3, &p, &[2, 0], &mut d);
        let want_d = [
            1.0 / 12.0,
            2.0 / 12.0,
            -0.25,
            (1.0 / 3.0 - 1.0) / 2.0,
            1.0 / 6.0,
            1.0 / 6.0,
        ];
        for i in 0..6 {
            assert!((d[i] - want_d[i]).abs() < 1e-15, "{i}");
        }
        // Large logits stay finite (f32).
        let z32 = [1000.0f32, 0.0, -1000.0];
        let mut p32 = [0.0f32; 3];
        let l = softmax_xent_forward(1, 3, &z32, &[1], &mut p32);
        assert!((l - 1000.0).abs() < 1e-3 && p32[0] == 1.0);
    }

    #[test]
    fn xent_gradcheck() {
        let (n, c) = (4, 7);
        let mut z: Vec<f64> = rand_vec(91, n * c).iter().map(|v| 3.0 * v).collect();
        let labels = [3u32, 0, 6, 3];
        let mut p = vec![0.0; n * c];
        softmax_xent_forward(n, c, &z, &labels, &mut p);
        let mut d = vec![0.0; n * c];
        softmax_xent_backward(n, c, &p, &labels, &mut d);
        let num = numeric_grad(&mut z, EPS, |z| {
            let mut p = vec![0.0; n * c];
            softmax_xent_forward(n, c, z, &labels, &mut p)
        });
        assert_grad("xent dlogits", &d, &num, TOL);
    }

    #[test]
    fn smoothed_xent_gradcheck() {
        let (n, c) = (4, 7);
        let mut z: Vec<f64> = rand_vec(92, n * c).iter().map(|v| 3.0 * v).collect();
        let labels = [3u32, 0, 6, 3];
        let mut p = vec![0.0; n * c];
        softmax_xent_forward(n, c, &z, &labels, &mut p);
        for eps in [0.1, 0.3] {
            let mut d = vec![0.0; n * c];
            softmax_xent_backward_smoothed(n, c, &p, &labels, eps, &mut d);
            let num = numeric_grad(&mut z, EPS, |z| smoothed_xent_loss(n, c, z, &labels, eps));
            assert_grad("smoothed xent dlogits", &d, &num, TOL);
        }
        // ε = 0 is the plain loss and gradient.
        let plain = softmax_xent_forward(n, c, &z, &labels, &mut p);
        assert!((smoothed_xent_loss(n, c, &z, &labels, 0.0) - plain).abs() < 1e-12);
        let (mut d0, mut d1) = (vec![0.0; n * c], vec![0.0; n * c]);
        softmax_xent_backward(n, c, &p, &labels, &mut d0);
        softmax_xent_backward_smoothed(n, c, &p, &labels, 0.0, &mut d1);
        assert_eq!(d0, d1);
    }

    #[test]
    fn smoothing_by_hand() {
        // PyTorch: CrossEntropyLoss(label_smoothing=0.1) of logits
        // [0, ln 2, ln 3] with label 2 over 3 classes: the target is
        // [0.1/3, 0.1/3, 0.9 + 0.1/3]; loss = −Σ t·log p.
        let z = [0.0f64, 2f64.ln(), 3f64.ln()];
        let p = [1.0 / 6.0, 2.0 / 6.0, 3.0 / 6.0f64];
        let t = [0.1 / 3.0, 0.1 / 3.0, 0.9 + 0.1 / 3.0];
        let want: f64 = -(0..3).map(|j| t[j] * p[j].ln()).sum::<f64>();
        assert!((smoothed_xent_loss(1, 3, &z, &[2], 0.1) - want).abs() < 1e-14);
        let mut d = [0.0; 3];
        softmax_xent_backward_smoothed(1, 3, &p, &[2], 0.1, &mut d);
        for j in 0..3 {
            assert!((d[j] - (p[j] - t[j])).abs() < 1e-15);
        }
    }

    #[test]
    fn top_k_counts() {
        // 3 rows, 6 classes.
        let s = [
            0.1f32, 0.9, 0.0, 0.0, 0.0, 0.0, // argmax 1
            0.6, 0.5, 0.4, 0.3, 0.2, 0.1, // label 4 is 5th
            0.6, 0.5, 0.4, 0.3, 0.2, 0.1, // label 5 is 6th
        ];
        assert_eq!(top1_top5(3, 6, &s, &[1, 4, 5]), (1, 2));
        assert_eq!(top1_top5(3, 6, &s, &[0, 0, 0]), (2, 3));
        // row 0: label 2 ties with three other zeros (counted against it), and
        // 0.1 and 0.9 are higher: it is in the top 6 only.
        assert_eq!(count_top_k(3, 6, &s, &[2, 2, 2], 5), 2);
        assert_eq!(count_top_k(3, 6, &s, &[2, 2, 2], 6), 3);
        assert_eq!(count_top_k(3, 6, &s, &[2, 2, 2], 2), 0);
    }

    #[test]
    fn ties_never_count_as_correct() {
        // Every class scores the same: no label is in the top 1 or top 5.
        let s = [0.25f32; 2 * 10];
        assert_eq!(top1_top5(2, 10, &s, &[0, 7]), (0, 0));
        // Two classes tie at the top: neither is the top-1 answer.
        let s = [0.5f32, 0.5, 0.1];
        assert_eq!(top1_top5(1, 3, &s, &[0]), (0, 1));
        assert_eq!(top1_top5(1, 3, &s, &[1]), (0, 1));
        // A NaN anywhere in the row makes it wrong.
        let s = [0.9f32, f32::NAN, 0.1];
        assert_eq!(top1_top5(1, 3, &s, &[0]), (0, 0));
    }
}
