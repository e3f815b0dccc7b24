//! The fused ops' passes over memory (see `passes::fuse`), for the
//! executor: ReLU and dropout in one pass after a dense layer's GEMM, the
//! backward elementwise chain in one pass, LRN and max pooling image by
//! image (images in parallel, each image's LRN and pooling sequential, so
//! pooling reads the LRN output while it is in cache). Each computes exactly what the unfused kernels compute, in the
//! same arithmetic order, so fused results are bit-for-bit the unfused
//! ones.
//!
//! Assumes slices of the lengths their shapes say. Outputs are
//! OVERWRITTEN.

use super::super::kernels::{self as k, Float};

/// Elements per parallel task of the fused elementwise passes.
const BLOCK: usize = 1 << 13;

/// `y = dropout(relu(y))` in one pass (the mask keyed by flat index plus
/// `off`, as in `kernels::dropout`; the identity dropout when not training).
pub(super) fn relu_dropout_inplace<T: Float>(p: &k::dropout::DropoutParams, off: u64, y: &mut [T]) {
    use rayon::prelude::*;
    if !p.training || p.rate == 0.0 {
        k::relu::relu_forward_inplace(y);
        return;
    }
    let scale = T::from_f64(1.0 / (1.0 - p.rate));
    y.par_chunks_mut(BLOCK).enumerate().for_each(|(bi, blk)| {
        let base = off + (bi * BLOCK) as u64;
        for (j, v) in blk.iter_mut().enumerate() {
            let r = k::relu1(*v);
            *v = r * if k::dropout::keep(p.seed, p.stream, p.rate, base + j as u64) {
                scale
            } else {
                T::ZERO
            };
        }
    });
}

/// Dropout (forward or backward, the same map) of a rank's share of a
/// global batch: `out = x · mask · 1/(1−rate)` with element `i`'s mask
/// that of element `off + i` of the global tensor (`kernels::dropout` is
/// the case `off = 0`); `x: None` works in place over `out`.
pub(super) fn dropout_at<T: Float>(
    p: &k::dropout::DropoutParams,
    off: u64,
    x: Option<&[T]>,
    out: &mut [T],
) {
    use rayon::prelude::*;
    if let Some(x) = x {
        out.copy_from_slice(x);
    }
    if !p.training || p.rate == 0.0 {
        return;
    }
    let scale = T::from_f64(1.0 / (1.0 - p.rate));
    out.par_chunks_mut(BLOCK).enumerate().for_each(|(bi, blk)| {
        let base = off + (bi * BLOCK) as u64;
        for (j, v) in blk.iter_mut().enumerate() {
            // A multiply even when dropped, so NaN stays NaN (as the kernel).
            *v *= if k::dropout::keep(p.seed, p.stream, p.rate, base + j as u64) {
                scale
            } else {
                T::ZERO
            };
        }
    });
}

/// `out = (Σ parts) · dropout mask · [y > 0]`, one pass; the sum is taken
/// in part order, as `add` does. `first: None` means `out` holds the first
/// part already (the op runs in place over it); `rest` are the others.
pub(super) fn grad_chain<T: Float>(
    first: Option<&[T]>,
    rest: &[&[T]],
    mask: Option<(&k::dropout::DropoutParams, u64)>,
    y: Option<&[T]>,
    out: &mut [T],
) {
    use rayon::prelude::*;
    let mask = mask.filter(|(p, _)| p.training && p.rate > 0.0);
    let scale = mask.map_or(T::ONE, |(p, _)| T::from_f64(1.0 / (1.0 - p.rate)));
    out.par_chunks_mut(BLOCK).enumerate().for_each(|(bi, blk)| {
        let base = bi * BLOCK;
        for (j, o) in blk.iter_mut().enumerate() {
            let i = base + j;
            let mut s = first.map_or(*o, |f| f[i]);
            for p in rest {
                s += p[i];
            }
            if let Some((p, off)) = mask {
                s = if k::dropout::keep(p.seed, p.stream, p.rate, off + i as u64) {
                    s * scale
                } else {
                    T::ZERO
                };
            }
            if let Some(y) = y {
                s = if y[i] > T::ZERO { s } else { T::ZERO };
            }
            *o = s;
        }
    });
}

/// `maxpool(lrn(x))` image by image (`s` is one image's pool shape): the
/// LRN output and scale are kept for the backward pass, and pooling reads
/// them while they are in cache.
pub(super) fn lrn_maxpool_forward<T: Float>(
    p: &k::lrn::LrnParams,
    s: &k::pool::PoolShape,
    x: &[T],
    lrn: &mut [T],
    scale: &mut [T],
    y: &mut [T],
    argmax: &mut [u32],
) {
    use rayon::prelude::*;
    let (inp, outp) = (s.input().len(), s.output().len());
    if inp == 0 || outp == 0 {
        return;
    }
    let hw = s.h * s.w;
    y.par_chunks_mut(outp)
        .zip(argmax.par_chunks_mut(outp))
        .zip(lrn.par_chunks_mut(inp))
        .zip(scale.par_chunks_mut(inp))
        .zip(x.par_chunks(inp))
        .for_each(|((((yi, ai), li), si), xi)| {
            k::lrn::lrn_forward_image(p, s.c, hw, xi, li, si);
            k::pool::maxpool_forward_image(s, li, yi, ai);
        });
}

/// The gradient of [`lrn_maxpool_forward`], image by image: the pooled
/// gradient is routed to the window maxima, then through the LRN.
#[allow(clippy::too_many_arguments)]
pub(super) fn lrn_maxpool_backward<T: Float>(
    p: &k::lrn::LrnParams,
    s: &k::pool::PoolShape,
    x: &[T],
    lrn: &[T],
    scale: &[T],
    argmax: &[u32],
    dy: &[T],
    dx: &mut [T],
) {
    use rayon::prelude::*;
    let (inp, outp) = (s.input().len(), s.output().len());
    if inp == 0 || outp == 0 {
        return;
    }
    let hw = s.h * s.w;
    dx.par_chunks_mut(inp)
        .zip(x.par_chunks(inp))
        .zip(lrn.par_chunks(inp))
        .zip(scale.par_chunks(inp))
        .zip(argmax.par_chunks(outp))
        .zip(dy.par_chunks(outp))
        .for_each_init(
            || (vec![T::ZERO; inp], vec![T::ZERO; inp]),
            |(dpool, t), (((((dxi, xi), li), si), ai), dyi)| {
                k::pool::maxpool_backward_image(s, dyi, ai, dpool);
                k::lrn::lrn_backward_image(p, s.c, hw, xi, li, si, dpool, dxi, t);
            },
        );
}
