//! Row-major GEMM over the `gemm` crate: `C[m×n] = alpha*C + beta*op(A)*op(B)`.
//!
//! Assumes row-major storage with explicit leading dimensions (`ld*` = distance
//! between consecutive rows of the *stored* matrix). `op(A)` is `A` (stored
//! `m×k`) or, with `trans_a`, `Aᵀ` where `A` is stored `k×m`; likewise for `B`
//! (`k×n`, or stored `n×k` with `trans_b`).
//!
//! Guarantees: when `alpha == 0` the old contents of `C` are never read (so `C`
//! may hold garbage or NaN); slice bounds are checked with real assertions
//! before the unsafe call, so the safe signature is sound. [`Par::Seq`] runs on
//! the calling thread only; [`Par::Auto`] lets the `gemm` crate split the
//! output over the current rayon pool when the product is large enough. Each
//! output element is reduced over `k` in an order that depends only on the
//! shapes, never on the thread count.

use super::float::Float;

/// How a single GEMM may use threads.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Par {
    /// Single-threaded (use inside per-image rayon tasks).
    Seq,
    /// Use the current rayon pool if the product is big enough.
    Auto,
}

/// Below this many multiply-adds a GEMM is not worth splitting over threads.
const PAR_MIN_FLOPS: usize = 1 << 18;

#[inline]
fn span(rows: usize, cols: usize, ld: usize) -> usize {
    if rows == 0 || cols == 0 {
        0
    } else {
        (rows - 1) * ld + cols
    }
}

/// `C = alpha*C + beta*op(A)*op(B)` with explicit leading dimensions.
#[allow(clippy::too_many_arguments)]
#[inline]
pub fn gemm_ld<T: Float>(
    m: usize,
    n: usize,
    k: usize,
    alpha: T,
    c: &mut [T],
    ldc: usize,
    beta: T,
    a: &[T],
    lda: usize,
    trans_a: bool,
    b: &[T],
    ldb: usize,
    trans_b: bool,
    par: Par,
) {
    if m == 0 || n == 0 {
        return;
    }
    assert!(ldc >= n && c.len() >= span(m, n, ldc), "gemm: C too small");
    if k == 0 {
        for row in c.chunks_mut(ldc).take(m) {
            for v in &mut row[..n] {
                *v = if alpha == T::ZERO {
                    T::ZERO
                } else {
                    alpha * *v
                };
            }
        }
        return;
    }
    // (row stride, column stride) of op(A) and op(B).
    let (a_rs, a_cs) = if trans_a {
        assert!(lda >= m && a.len() >= span(k, m, lda), "gemm: A too small");
        (1isize, lda as isize)
    } else {
        assert!(lda >= k && a.len() >= span(m, k, lda), "gemm: A too small");
        (lda as isize, 1isize)
    };
    let (b_rs, b_cs) = if trans_b {
        assert!(ldb >= k && b.len() >= span(n, k, ldb), "gemm: B too small");
        (1isize, ldb as isize)
    } else {
        assert!(ldb >= n && b.len() >= span(k, n, ldb), "gemm: B too small");
        (ldb as isize, 1isize)
    };
    let parallelism = match par {
        Par::Auto
            if m.saturating_mul(n).saturating_mul(k) >= PAR_MIN_FLOPS
                && rayon::current_num_threads() > 1 =>
        {
            gemm::Parallelism::Rayon(0)
        }
        _ => gemm::Parallelism::None,
    };
    // SAFETY: the assertions above guarantee every element addressed by the
    // strides lies inside the slices; `c` is a unique borrow so it does not
    // alias `a` or `b`; `T` is f32 or f64 (sealed trait), which `gemm` supports.
    unsafe {
        gemm::gemm(
            m,
            n,
            k,
            c.as_mut_ptr(),
            1,
            ldc as isize,
            alpha != T::ZERO,
            a.as_ptr(),
            a_cs,
            a_rs,
            b.as_ptr(),
            b_cs,
            b_rs,
            alpha,
            beta,
            false,
            false,
            false,
            parallelism,
        );
    }
}

/// `C = alpha*C + beta*op(A)*op(B)` for densely packed row-major matrices
/// (`ldc = n`, `lda` = stored row length of A, `ldb` = stored row length of B).
#[allow(clippy::too_many_arguments)]
#[inline]
pub fn gemm<T: Float>(
    m: usize,
    n: usize,
    k: usize,
    alpha: T,
    c: &mut [T],
    beta: T,
    a: &[T],
    trans_a: bool,
    b: &[T],
    trans_b: bool,
    par: Par,
) {
    let lda = if trans_a { m } else { k };
    let ldb = if trans_b { k } else { n };
    debug_assert_eq!(c.len(), m * n);
    gemm_ld(
        m, n, k, alpha, c, n, beta, a, lda, trans_a, b, ldb, trans_b, par,
    );
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::backend::cpu::kernels::gradcheck::rand_vec;

    #[allow(clippy::too_many_arguments)]
    fn naive(
        m: usize,
        n: usize,
        k: usize,
        alpha: f64,
        c: &mut [f64],
        beta: f64,
        a: &[f64],
        ta: bool,
        b: &[f64],
        tb: bool,
    ) {
        for i in 0..m {
            for j in 0..n {
                let mut s = 0.0;
                for p in 0..k {
                    let av = if ta { a[p * m + i] } else { a[i * k + p] };
                    let bv = if tb { b[j * k + p] } else { b[p * n + j] };
                    s += av * bv;
                }
                c[i * n + j] = alpha * c[i * n + j] + beta * s;
            }
        }
    }

    #[test]
    fn gemm_matches_naive_all_transposes() {
        let (m, n, k) = (7, 9, 11);
        for &(ta, tb) in &[(false, false), (true, false), (false, true), (true, true)] {
            for &(alpha, beta) in &[(0.0, 1.0), (1.0, 1.0), (0.5, -2.0)] {
                let a = rand_vec(1, m * k);
                let b = rand_vec(2, k * n);
                let c0 = rand_vec(3, m * n);
                let mut want = c0.clone();
                naive(m, n, k, alpha, &mut want, beta, &a, ta, &b, tb);
                for par in [Par::Seq, Par::Auto] {
                    let mut got = c0.clone();
                    gemm(m, n, k, alpha, &mut got, beta, &a, ta, &b, tb, par);
                    for (g, w) in got.iter().zip(&want) {
                        assert!((g - w).abs() < 1e-12, "{ta} {tb} {alpha} {beta}");
                    }
                }
            }
        }
    }

    #[test]
    fn gemm_alpha_zero_ignores_nan_in_c() {
        let a = [1.0f32, 2.0];
        let b = [3.0f32, 4.0];
        let mut c = [f32::NAN];
        gemm(1, 1, 2, 0.0, &mut c, 1.0, &a, false, &b, false, Par::Seq);
        assert_eq!(c[0], 11.0);
    }
}

#[cfg(test)]
mod bench {
    use super::*;

    /// `cargo test --lib gemm_timing -- --ignored --nocapture`
    #[test]
    #[ignore]
    fn gemm_timing() {
        for &(m, n, k, ta, tb) in &[
            (64usize, 288usize, 2197usize, false, true),
            (64, 288, 2197, false, false),
            (288, 2197, 64, true, false),
            (2197, 288, 64, true, false),
            (64, 2197, 288, false, false),
            (2197, 64, 288, false, true),
            (32, 25, 2352, false, true),
            (32, 25, 2352, false, false),
        ] {
            let a = vec![1.0f32; m * k];
            let b = vec![1.0f32; k * n];
            let mut c = vec![0.0f32; m * n];
            gemm(m, n, k, 0.0, &mut c, 1.0, &a, ta, &b, tb, Par::Seq);
            let mut s = f64::INFINITY;
            for _ in 0..30 {
                let t = std::time::Instant::now();
                gemm(m, n, k, 0.0, &mut c, 1.0, &a, ta, &b, tb, Par::Seq);
                s = s.min(t.elapsed().as_secs_f64());
            }
            println!(
                "m{m} n{n} k{k} ta{ta} tb{tb}: {:.3} ms {:.1} GFLOP/s",
                s * 1e3,
                2.0 * (m * n * k) as f64 / s / 1e9
            );
        }
    }
}
