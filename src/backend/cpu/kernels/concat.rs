//! Concatenation / splitting of NCHW tensors along channels (cross-tower
//! edges, and taking one tower's channel slice).
//!
//! Assumes every part has the same `n` and the same `hw = h·w`, and that the
//! channel counts of the parts sum to the channels of the whole. Guarantees
//! outputs are OVERWRITTEN; split is the exact adjoint (backward) of concat
//! and vice versa, so `concat_backward = split_channels`.

use rayon::prelude::*;

use super::Float;

/// `out[n, Σc, hw] = concat(parts[i][n, c_i, hw])` along channels.
/// `parts` pairs each input slice with its channel count.
pub fn concat_channels<T: Float>(n: usize, hw: usize, parts: &[(&[T], usize)], out: &mut [T]) {
    let ctot: usize = parts.iter().map(|p| p.1).sum();
    debug_assert_eq!(out.len(), n * ctot * hw);
    debug_assert!(parts.iter().all(|(s, c)| s.len() == n * c * hw));
    if ctot * hw == 0 {
        return;
    }
    out.par_chunks_mut(ctot * hw)
        .enumerate()
        .for_each(|(i, img)| {
            let mut off = 0;
            for (src, c) in parts {
                let len = c * hw;
                img[off..off + len].copy_from_slice(&src[i * len..(i + 1) * len]);
                off += len;
            }
        });
}

/// Splits `x[n, Σc, hw]` into `parts[i][n, c_i, hw]` (each OVERWRITTEN). This is
/// the backward of [`concat_channels`] (with `x = dy`) and the forward of a
/// channel slice.
pub fn split_channels<T: Float>(n: usize, hw: usize, x: &[T], parts: &mut [(&mut [T], usize)]) {
    let ctot: usize = parts.iter().map(|p| p.1).sum();
    debug_assert_eq!(x.len(), n * ctot * hw);
    debug_assert!(parts.iter().all(|(s, c)| s.len() == n * *c * hw));
    let mut off = 0;
    for (dst, c) in parts.iter_mut() {
        let len = *c * hw;
        if len > 0 {
            dst.par_chunks_mut(len).enumerate().for_each(|(i, d)| {
                let src = &x[i * ctot * hw + off..i * ctot * hw + off + len];
                d.copy_from_slice(src);
            });
        }
        off += len;
    }
}

/// Backward of [`concat_channels`]: slices `dy` back into the parts' gradients.
pub fn concat_backward<T: Float>(n: usize, hw: usize, dy: &[T], dparts: &mut [(&mut [T], usize)]) {
    split_channels(n, hw, dy, dparts);
}

/// Backward of [`split_channels`]: reassembles the parts' gradients.
pub fn split_backward<T: Float>(n: usize, hw: usize, dparts: &[(&[T], usize)], dx: &mut [T]) {
    concat_channels(n, hw, dparts, dx);
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::backend::cpu::kernels::gradcheck::*;

    #[test]
    fn concat_by_hand() {
        // n=2, hw=2; a has 1 channel, b has 2.
        let a = [1.0f32, 2.0, 3.0, 4.0];
        let b = [10.0f32, 11.0, 12.0, 13.0, 20.0, 21.0, 22.0, 23.0];
        let mut out = [0.0f32; 12];
        concat_channels(2, 2, &[(&a, 1), (&b, 2)], &mut out);
        assert_eq!(
            out,
            [
                1.0, 2.0, 10.0, 11.0, 12.0, 13.0, 3.0, 4.0, 20.0, 21.0, 22.0, 23.0
            ]
        );
        let mut a2 = [0.0f32; 4];
        let mut b2 = [0.0f32; 8];
        split_channels(2, 2, &out, &mut [(&mut a2, 1), (&mut b2, 2)]);
        assert_eq!(a2, a);
        assert_eq!(b2, b);
    }

    #[test]
    fn concat_gradcheck() {
        let (n, hw, ca, cb) = (2, 3, 2, 3);
        let mut x = rand_vec(21, n * (ca + cb) * hw);
        let r = rand_vec(22, n * (ca + cb) * hw);
        let la = n * ca * hw;
        let f = |x: &[f64]| {
            let mut out = vec![0.0; x.len()];
            concat_channels(n, hw, &[(&x[..la], ca), (&x[la..], cb)], &mut out);
            dot(&out, &r)
        };
        let mut da = vec![0.0; la];
        let mut dbv = vec![0.0; x.len() - la];
        concat_backward(n, hw, &r, &mut [(&mut da, ca), (&mut dbv, cb)]);
        let analytic: Vec<f64> = da.iter().chain(&dbv).copied().collect();
        let num = numeric_grad(&mut x, EPS, f);
        assert_grad("concat", &analytic, &num, TOL);
        // split backward = concat of the part gradients
        let mut dx = vec![0.0; x.len()];
        split_backward(n, hw, &[(&da, ca), (&dbv, cb)], &mut dx);
        assert_eq!(dx, r);
    }
}
