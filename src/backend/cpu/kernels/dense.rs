//! Fully connected layer: `y[n, out] = act(x[n, in] · Wᵀ + b)` with
//! `W: [out, in]` (row-major), `b: [out]`; `x` is the flattened CHW input.
//!
//! Guarantees: all outputs (`y`, `dx`, `dw`, `db`) are OVERWRITTEN. Forward
//! and backward-data are single GEMMs that may use the whole rayon pool. The
//! weight gradient is computed in row blocks of `W` whose size depends only
//! on the shape, each block a single-threaded GEMM over the whole batch, and
//! the bias gradient sums the batch in order, so `dw`/`db` are bit-identical
//! for any thread count. (`y` and `dx` are too: the `gemm` crate splits a
//! parallel GEMM over output blocks only, which the tests check.)

use rayon::prelude::*;

use super::gemm::{Par, gemm, gemm_ld};
use super::{Act, Float, scratch};

/// `n` rows of `inp` features mapped to `out` features.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DenseShape {
    pub n: usize,
    pub inp: usize,
    pub out: usize,
}

/// Forward: `y = act(x·Wᵀ + b)` (`y` OVERWRITTEN).
pub fn dense_forward<T: Float>(
    s: &DenseShape,
    x: &[T],
    w: &[T],
    b: Option<&[T]>,
    act: Act,
    y: &mut [T],
) {
    debug_assert_eq!(x.len(), s.n * s.inp);
    debug_assert_eq!(w.len(), s.out * s.inp);
    debug_assert!(b.is_none_or(|b| b.len() == s.out));
    debug_assert_eq!(y.len(), s.n * s.out);
    if s.out == 0 {
        return;
    }
    let alpha = match b {
        Some(b) => {
            for row in y.chunks_exact_mut(s.out) {
                row.copy_from_slice(b);
            }
            T::ONE
        }
        None => T::ZERO,
    };
    gemm(
        s.n,
        s.out,
        s.inp,
        alpha,
        y,
        T::ONE,
        x,
        false,
        w,
        true,
        Par::Auto,
    );
    if act == Act::Relu {
        super::relu::relu_forward_inplace(y);
    }
}

/// Rows of `W` per weight-gradient task: about 16 tasks, each a multiple of
/// 16 rows (the GEMM micro-kernel height) and at least 16. A function of the
/// shape only, never of the thread count.
pub fn rows_per_task(s: &DenseShape) -> usize {
    s.out.div_ceil(16).next_multiple_of(16).max(16)
}

/// Backward: from `dy` (gradient w.r.t. the forward output, i.e. after the
/// fused activation) computes `dw` (and `db` unless `None`), OVERWRITTEN and
/// deterministic, and `dx` unless `None`.
///
/// `y` (the forward output) is read only when `act == Act::Relu`; pass any
/// slice of the same length otherwise. Under ReLU `scratch_buf` holds the
/// masked gradient (`n·out` elements, grown and reused).
#[allow(clippy::too_many_arguments)]
pub fn dense_backward<T: Float>(
    s: &DenseShape,
    act: Act,
    x: &[T],
    w: &[T],
    y: &[T],
    dy: &[T],
    dx: Option<&mut [T]>,
    dw: &mut [T],
    db: Option<&mut [T]>,
    scratch_buf: &mut Vec<T>,
) {
    debug_assert_eq!(x.len(), s.n * s.inp);
    debug_assert_eq!(w.len(), s.out * s.inp);
    debug_assert_eq!(y.len(), s.n * s.out);
    debug_assert_eq!(dy.len(), s.n * s.out);
    debug_assert!(dx.as_ref().is_none_or(|d| d.len() == x.len()));
    debug_assert_eq!(dw.len(), w.len());
    debug_assert!(db.as_ref().is_none_or(|d| d.len() == s.out));
    let dz: &[T] = match act {
        Act::None => dy,
        Act::Relu => {
            let z = scratch(scratch_buf, dy.len());
            super::relu::relu_backward(y, dy, z);
            z
        }
    };
    if let Some(db) = db {
        db.fill(T::ZERO);
        for row in dz.chunks_exact(s.out.max(1)) {
            for (o, v) in db.iter_mut().zip(row) {
                *o += *v;
            }
        }
    }
    if s.inp > 0 {
        // dW[o0..o1, :] = dz[:, o0..o1]ᵀ · x
        let rows = rows_per_task(s);
        dw.par_chunks_mut(rows * s.inp)
            .enumerate()
            .for_each(|(bi, blk)| {
                let o0 = bi * rows;
                let m = blk.len() / s.inp;
                gemm_ld(
                    m,
                    s.inp,
                    s.n,
                    T::ZERO,
                    blk,
                    s.inp,
                    T::ONE,
                    &dz[o0..],
                    s.out,
                    true,
                    x,
                    s.inp,
                    false,
                    Par::Seq,
                );
            });
    }
    if let Some(dx) = dx {
        // dx[n × in] = dz[n × out] · W[out × in]
        gemm(
            s.n,
            s.inp,
            s.out,
            T::ZERO,
            dx,
            T::ONE,
            dz,
            false,
            w,
            false,
            Par::Auto,
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::backend::cpu::kernels::gradcheck::*;

    fn naive(s: &DenseShape, x: &[f64], w: &[f64], b: &[f64], relu: bool) -> Vec<f64> {
        let mut y = vec![0.0; s.n * s.out];
        for i in 0..s.n {
            for o in 0..s.out {
                let mut acc = b[o];
                for k in 0..s.inp {
                    acc += x[i * s.inp + k] * w[o * s.inp + k];
                }
                y[i * s.out + o] = if relu { acc.max(0.0) } else { acc };
            }
        }
        y
    }

    #[test]
    fn dense_forward_matches_naive() {
        let s = DenseShape {
            n: 3,
            inp: 7,
            out: 5,
        };
        let x = rand_vec(51, 21);
        let w = rand_vec(52, 35);
        let b = rand_vec(53, 5);
        for act in [Act::None, Act::Relu] {
            let mut y = vec![f64::NAN; 15];
            dense_forward(&s, &x, &w, Some(&b), act, &mut y);
            let want = naive(&s, &x, &w, &b, act == Act::Relu);
            assert!(rel_err(&y, &want) < 1e-14);
        }
        let mut y = vec![f64::NAN; 15];
        dense_forward(&s, &x, &w, None, Act::None, &mut y);
        assert!(rel_err(&y, &naive(&s, &x, &w, &[0.0; 5], false)) < 1e-14);
        // f32
        let mut y32 = vec![0.0f32; 15];
        dense_forward(
            &s,
            &to_f32(&x),
            &to_f32(&w),
            Some(&to_f32(&b)),
            Act::None,
            &mut y32,
        );
        let want = naive(&s, &x, &w, &b, false);
        for (a, b) in y32.iter().zip(&want) {
            assert!((*a as f64 - b).abs() < 1e-5);
        }
    }

    #[test]
    fn dense_gradcheck() {
        // The second shape has 3 weight-gradient row blocks (16 + 16 + 8).
        let shapes = [
            DenseShape {
                n: 4,
                inp: 6,
                out: 5,
            },
            DenseShape {
                n: 3,
                inp: 4,
                out: 40,
            },
        ];
        for (s, act) in [
            (shapes[0], Act::None),
            (shapes[0], Act::Relu),
            (shapes[1], Act::Relu),
        ] {
            assert!(s.out <= 16 || s.out.div_ceil(rows_per_task(&s)) == 3);
            let mut x = rand_vec(61, s.n * s.inp);
            let mut w = rand_vec(62, s.out * s.inp);
            let mut b = rand_vec(63, s.out);
            let r = rand_vec(64, s.n * s.out);
            let mut y = vec![0.0; s.n * s.out];
            dense_forward(&s, &x, &w, Some(&b), act, &mut y);
            let (mut dx, mut dw, mut db) =
                (vec![0.0; x.len()], vec![0.0; w.len()], vec![0.0; s.out]);
            let mut scr = Vec::new();
            dense_backward(
                &s,
                act,
                &x,
                &w,
                &y,
                &r,
                Some(&mut dx),
                &mut dw,
                Some(&mut db),
                &mut scr,
            );
            let f = |x: &[f64], w: &[f64], b: &[f64]| {
                let mut y = vec![0.0; s.n * s.out];
                dense_forward(&s, x, w, Some(b), act, &mut y);
                dot(&y, &r)
            };
            let (w0, b0) = (w.clone(), b.clone());
            let nx = numeric_grad(&mut x, EPS, |x| f(x, &w0, &b0));
            let x0 = x.clone();
            let nw = numeric_grad(&mut w, EPS, |w| f(&x0, w, &b0));
            let nb = numeric_grad(&mut b, EPS, |b| f(&x0, &w0, b));
            assert_grad("dense dx", &dx, &nx, TOL);
            assert_grad("dense dw", &dw, &nw, TOL);
            assert_grad("dense db", &db, &nb, TOL);
        }
    }

    #[test]
    fn dense_deterministic_across_threads() {
        // Big enough that the forward and data-gradient GEMMs go parallel.
        for s in [
            DenseShape {
                n: 64,
                inp: 300,
                out: 70,
            },
            DenseShape {
                n: 128,
                inp: 384,
                out: 512,
            },
        ] {
            let x = to_f32(&rand_vec(71, s.n * s.inp));
            let w = to_f32(&rand_vec(72, s.out * s.inp));
            let b = to_f32(&rand_vec(74, s.out));
            let r = to_f32(&rand_vec(73, s.n * s.out));
            let runs = in_pools(|| {
                let mut y = vec![0.0f32; s.n * s.out];
                dense_forward(&s, &x, &w, Some(&b), Act::Relu, &mut y);
                let (mut dx, mut dw, mut db) = (
                    vec![0.0f32; x.len()],
                    vec![0.0f32; w.len()],
                    vec![0.0f32; s.out],
                );
                let mut scr = Vec::new();
                dense_backward(
                    &s,
                    Act::Relu,
                    &x,
                    &w,
                    &y,
                    &r,
                    Some(&mut dx),
                    &mut dw,
                    Some(&mut db),
                    &mut scr,
                );
                let bits = |v: &[f32]| v.iter().map(|x| x.to_bits()).collect::<Vec<u32>>();
                [bits(&y), bits(&dx), bits(&dw), bits(&db)]
            });
            for (t, run) in runs.iter().enumerate().skip(1) {
                for (k, name) in ["y", "dx", "dw", "db"].iter().enumerate() {
                    assert!(
                        run[k] == runs[0][k],
                        "{name} differs with {} threads",
                        t + 1
                    );
                }
            }
        }
    }
}
