//! Softmax over the class axis of `[n, classes]` scores: a model's
//! probabilities, computed as `softmax_xent` computes its `probs` (row
//! maximum subtracted, then `exp`, then times the reciprocal of the sum), so
//! the two agree bit for bit. Forward only: `softmax` is a network output
//! and nothing is differentiated through it. Rows run in parallel.

use rayon::prelude::*;

use super::Float;

/// `y = softmax(x)` row by row; OVERWRITES `y`.
pub fn softmax_forward<T: Float>(classes: usize, x: &[T], y: &mut [T]) {
    debug_assert_eq!(x.len(), y.len());
    if classes == 0 {
        return;
    }
    y.par_chunks_mut(classes)
        .zip(x.par_chunks(classes))
        .for_each(|(p, z)| {
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
        });
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::backend::cpu::kernels::softmax_xent::softmax_xent_forward;

    #[test]
    fn softmax_is_softmax_xents_probs() {
        let x = [1.0f32, 2.0, 3.0, -50.0, 0.0, 50.0];
        let mut y = [0.0f32; 6];
        softmax_forward(3, &x, &mut y);
        let mut probs = [0.0f32; 6];
        softmax_xent_forward(2, 3, &x, &[0, 1], &mut probs);
        assert_eq!(y, probs);
        for row in y.chunks(3) {
            assert!((row.iter().sum::<f32>() - 1.0).abs() < 1e-6);
        }
        assert!(y[2] > y[1] && y[1] > y[0]);
    }
}
