//! ReLU, elementwise over any tensor.
//!
//! Assumes `x`, `y`, `dy`, `dx` have equal lengths. Guarantees outputs are
//! OVERWRITTEN; the backward pass needs only the forward OUTPUT `y`
//! (`dx = dy · [y > 0]`, so the gradient at exactly 0 is 0). A NaN input
//! stays NaN in the forward output, as in PyTorch, so a diverged network's
//! loss shows it; its gradient through the mask is 0. This lets the
//! forward run in place; the backward can run over either of its inputs.

use rayon::prelude::*;

use super::{Float, relu_mask, relu1};

/// Elements per parallel task (elementwise ops are trivially deterministic).
const BLOCK: usize = 1 << 14;

/// `y = max(x, 0)`.
pub fn relu_forward<T: Float>(x: &[T], y: &mut [T]) {
    debug_assert_eq!(x.len(), y.len());
    y.par_chunks_mut(BLOCK)
        .zip(x.par_chunks(BLOCK))
        .for_each(|(yb, xb)| {
            for (o, v) in yb.iter_mut().zip(xb) {
                *o = relu1(*v);
            }
        });
}

/// `x = max(x, 0)` in place.
pub fn relu_forward_inplace<T: Float>(x: &mut [T]) {
    x.par_chunks_mut(BLOCK).for_each(|b| {
        for v in b {
            *v = relu1(*v);
        }
    });
}

/// `dx = dy · [y > 0]` where `y` is the forward output.
pub fn relu_backward<T: Float>(y: &[T], dy: &[T], dx: &mut [T]) {
    debug_assert_eq!(y.len(), dy.len());
    debug_assert_eq!(y.len(), dx.len());
    dx.par_chunks_mut(BLOCK)
        .zip(y.par_chunks(BLOCK))
        .zip(dy.par_chunks(BLOCK))
        .for_each(|((db, yb), gb)| {
            relu_mask(yb, gb, db);
        });
}

/// [`relu_backward`] written over its `y`: `y_dx = dy · [y_dx > 0]`.
pub fn relu_backward_over_y<T: Float>(y_dx: &mut [T], dy: &[T]) {
    debug_assert_eq!(y_dx.len(), dy.len());
    y_dx.par_chunks_mut(BLOCK)
        .zip(dy.par_chunks(BLOCK))
        .for_each(|(db, gb)| {
            for (o, g) in db.iter_mut().zip(gb) {
                *o = if *o > T::ZERO { *g } else { T::ZERO };
            }
        });
}

/// [`relu_backward`] written over its `dy`: `dy_dx = dy_dx · [y > 0]`.
pub fn relu_backward_over_dy<T: Float>(y: &[T], dy_dx: &mut [T]) {
    debug_assert_eq!(y.len(), dy_dx.len());
    dy_dx
        .par_chunks_mut(BLOCK)
        .zip(y.par_chunks(BLOCK))
        .for_each(|(db, yb)| {
            for (o, yv) in db.iter_mut().zip(yb) {
                *o = if *yv > T::ZERO { *o } else { T::ZERO };
            }
        });
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::backend::cpu::kernels::gradcheck::*;

    #[test]
    fn relu_values() {
        let x = [-1.0f32, 0.0, 2.5, -0.0, 3.0];
        let mut y = [9.0f32; 5];
        relu_forward(&x, &mut y);
        assert_eq!(y, [0.0, 0.0, 2.5, 0.0, 3.0]);
        let mut z = x;
        relu_forward_inplace(&mut z);
        assert_eq!(z, y);
        let mut dx = [9.0f32; 5];
        let dy = [1.0, 2.0, 3.0, 4.0, 5.0];
        relu_backward(&y, &dy, &mut dx);
        assert_eq!(dx, [0.0, 0.0, 3.0, 0.0, 5.0]);
        let mut over_y = y;
        relu_backward_over_y(&mut over_y, &dy);
        assert_eq!(over_y, dx);
        let mut over_dy = dy;
        relu_backward_over_dy(&y, &mut over_dy);
        assert_eq!(over_dy, dx);
    }

    #[test]
    fn relu_gradcheck() {
        let mut x = rand_vec(11, 40);
        let r = rand_vec(12, 40);
        let mut y = vec![0.0; 40];
        relu_forward(&x, &mut y);
        let mut dx = vec![0.0; 40];
        relu_backward(&y, &r, &mut dx);
        let num = numeric_grad(&mut x, EPS, |x| {
            let mut y = vec![0.0; 40];
            relu_forward(x, &mut y);
            dot(&y, &r)
        });
        assert_grad("relu dx", &dx, &num, TOL);
    }
}
