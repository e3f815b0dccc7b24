//! The smooth and leaky activations (`tanh`, `sigmoid`, `leaky_relu`),
//! elementwise over any tensor.
//!
//! Assumes `x`, `y`, `dy`, `dx` have equal lengths. Guarantees outputs are
//! OVERWRITTEN, and that each backward pass needs only the forward OUTPUT
//! `y` (as ReLU's): `tanh' = 1 − y²`, `sigmoid' = y·(1 − y)`, and for
//! `leaky_relu` the sign of `y` is the sign of `x` (for `slope > 0`; for
//! `slope = 0` it is ReLU's mask), the gradient at exactly 0 being
//! `slope`, as in PyTorch. So the forward can run in place and the
//! backward over either input. NaN propagates through the forward. The
//! sigmoid is `1/(1 + e^−x)`: 0 for very negative `x` (`e^−x` = ∞), 1 for
//! very positive. Elementwise, so results do not depend on the thread count.

use rayon::prelude::*;

use super::Float;

/// Elements per parallel task.
const BLOCK: usize = 1 << 14;

/// An activation with a gradient computed from its output.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Pointwise {
    Tanh,
    Sigmoid,
    /// `x` if `x > 0`, else `slope·x`.
    LeakyRelu(f64),
}

impl Pointwise {
    /// `f(x)`.
    #[inline(always)]
    pub fn f<T: Float>(self, x: T) -> T {
        match self {
            Pointwise::Tanh => x.tanh(),
            Pointwise::Sigmoid => T::ONE / (T::ONE + (-x).exp()),
            Pointwise::LeakyRelu(s) => {
                if x > T::ZERO {
                    x
                } else {
                    x * T::from_f64(s)
                }
            }
        }
    }

    /// `g · f'(x)` written with `y = f(x)`.
    #[inline(always)]
    pub fn grad<T: Float>(self, y: T, g: T) -> T {
        match self {
            Pointwise::Tanh => g * (T::ONE - y * y),
            Pointwise::Sigmoid => g * (y * (T::ONE - y)),
            Pointwise::LeakyRelu(s) => {
                if y > T::ZERO {
                    g
                } else {
                    g * T::from_f64(s)
                }
            }
        }
    }
}

/// `y = f(x)`.
pub fn forward<T: Float>(f: Pointwise, x: &[T], y: &mut [T]) {
    debug_assert_eq!(x.len(), y.len());
    y.par_chunks_mut(BLOCK)
        .zip(x.par_chunks(BLOCK))
        .for_each(|(yb, xb)| {
            for (o, v) in yb.iter_mut().zip(xb) {
                *o = f.f(*v);
            }
        });
}

/// `x = f(x)` in place.
pub fn forward_inplace<T: Float>(f: Pointwise, x: &mut [T]) {
    x.par_chunks_mut(BLOCK).for_each(|b| {
        for v in b {
            *v = f.f(*v);
        }
    });
}

/// `dx = dy · f'(x)` from the forward output `y`.
pub fn backward<T: Float>(f: Pointwise, y: &[T], dy: &[T], dx: &mut [T]) {
    debug_assert_eq!(y.len(), dy.len());
    debug_assert_eq!(y.len(), dx.len());
    dx.par_chunks_mut(BLOCK)
        .zip(y.par_chunks(BLOCK))
        .zip(dy.par_chunks(BLOCK))
        .for_each(|((db, yb), gb)| {
            for ((o, yv), gv) in db.iter_mut().zip(yb).zip(gb) {
                *o = f.grad(*yv, *gv);
            }
        });
}

/// [`backward`] written over its `y`.
pub fn backward_over_y<T: Float>(f: Pointwise, y_dx: &mut [T], dy: &[T]) {
    debug_assert_eq!(y_dx.len(), dy.len());
    y_dx.par_chunks_mut(BLOCK)
        .zip(dy.par_chunks(BLOCK))
        .for_each(|(db, gb)| {
            for (o, g) in db.iter_mut().zip(gb) {
                *o = f.grad(*o, *g);
            }
        });
}

/// [`backward`] written over its `dy`.
pub fn backward_over_dy<T: Float>(f: Pointwise, y: &[T], dy_dx: &mut [T]) {
    debug_assert_eq!(y.len(), dy_dx.len());
    dy_dx
        .par_chunks_mut(BLOCK)
        .zip(y.par_chunks(BLOCK))
        .for_each(|(db, yb)| {
            for (o, yv) in db.iter_mut().zip(yb) {
                *o = f.grad(*yv, *o);
            }
        });
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::backend::cpu::kernels::gradcheck::*;

    const ALL: [Pointwise; 4] = [
        Pointwise::Tanh,
        Pointwise::Sigmoid,
        Pointwise::LeakyRelu(0.01),
        Pointwise::LeakyRelu(0.3),
    ];

    #[test]
    fn values_match_the_definitions() {
        let x = [-30.0f64, -1.5, 0.0, 0.25, 2.0, 800.0];
        for f in ALL {
            let mut y = [9.0; 6];
            forward(f, &x, &mut y);
            for (xv, yv) in x.iter().zip(&y) {
                let want = match f {
                    Pointwise::Tanh => xv.tanh(),
                    Pointwise::Sigmoid => 1.0 / (1.0 + (-xv).exp()),
                    Pointwise::LeakyRelu(s) => xv.max(0.0) + s * xv.min(0.0),
                };
                assert_eq!(*yv, want, "{f:?} at {xv}");
            }
            let mut z = x;
            forward_inplace(f, &mut z);
            assert_eq!(z, y);
        }
        // Saturation: no NaN or infinity at the extremes.
        let mut y = [0.0f32; 2];
        forward(Pointwise::Sigmoid, &[-1e30f32, 1e30], &mut y);
        assert_eq!(y, [0.0, 1.0]);
        forward(Pointwise::Tanh, &[f32::NAN, -1e30], &mut y);
        assert!(y[0].is_nan() && y[1] == -1.0);
        forward(Pointwise::LeakyRelu(0.01), &[f32::NAN, -2.0], &mut y);
        assert!(y[0].is_nan() && y[1] == -0.02);
    }

    #[test]
    fn backward_in_place_forms_agree() {
        let x = rand_vec(41, 50);
        let dy = rand_vec(42, 50);
        for f in ALL {
            let mut y = vec![0.0; 50];
            forward(f, &x, &mut y);
            let mut dx = vec![0.0; 50];
            backward(f, &y, &dy, &mut dx);
            let mut over_y = y.clone();
            backward_over_y(f, &mut over_y, &dy);
            assert_eq!(over_y, dx);
            let mut over_dy = dy.clone();
            backward_over_dy(f, &y, &mut over_dy);
            assert_eq!(over_dy, dx);
        }
        // The gradient at exactly 0 of leaky_relu is the slope.
        let mut dx = [0.0f64];
        backward(Pointwise::LeakyRelu(0.2), &[0.0], &[1.0], &mut dx);
        assert_eq!(dx, [0.2]);
    }

    #[test]
    fn activations_gradcheck() {
        for f in ALL {
            let mut x = rand_vec(43, 60);
            // Keep leaky_relu's inputs away from its kink.
            if let Pointwise::LeakyRelu(_) = f {
                for v in &mut x {
                    if v.abs() < 1e-3 {
                        *v += 0.01;
                    }
                }
            }
            let r = rand_vec(44, 60);
            let mut y = vec![0.0; 60];
            forward(f, &x, &mut y);
            let mut dx = vec![0.0; 60];
            backward(f, &y, &r, &mut dx);
            let num = numeric_grad(&mut x, EPS, |x| {
                let mut y = vec![0.0; 60];
                forward(f, x, &mut y);
                dot(&y, &r)
            });
            assert_grad(&format!("{f:?} dx"), &dx, &num, TOL);
        }
    }
}
