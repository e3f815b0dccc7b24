//! The convolution geometry the generated kernels cover: every form the
//! IR has (`Op::Conv` and `Op::ConvRelu` with any activation: filters, a rectangular kernel,
//! per-axis stride and padding, dilation, groups, with or without a bias),
//! as the CPU's `kernels::conv_general` computes it.
//!
//! Assumes a verified node (channels and filters divisible by `groups`).
//! Guarantees: [`ConvGeo::of`] gives the geometry of every convolution and
//! of nothing else; [`ConvGeo::square`] says when the plain kernels'
//! square, undilated taps cover it, so a plain convolution generates the
//! same program as before the general forms existed.

use crate::ir::Op;

/// A convolution's geometry, each axis `[h, w]`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct ConvGeo {
    pub filters: usize,
    pub kh: usize,
    pub kw: usize,
    pub sh: usize,
    pub sw: usize,
    pub ph: usize,
    pub pw: usize,
    pub dil: usize,
    pub groups: usize,
    pub bias: bool,
}

impl ConvGeo {
    /// The geometry of a `conv` or `conv_relu`; `None` for any other op.
    pub(crate) fn of(op: &Op) -> Option<ConvGeo> {
        match op {
            Op::Conv {
                filters,
                size,
                stride,
                pad,
                dilation,
                groups,
                bias,
            }
            | Op::ConvRelu {
                filters,
                size,
                stride,
                pad,
                dilation,
                groups,
                bias,
                ..
            } => Some(ConvGeo {
                filters: *filters as usize,
                kh: size.h as usize,
                kw: size.w as usize,
                sh: stride.h as usize,
                sw: stride.w as usize,
                ph: pad.h as usize,
                pw: pad.w as usize,
                dil: (*dilation).max(1) as usize,
                groups: (*groups).max(1) as usize,
                bias: *bias,
            }),
            _ => None,
        }
    }

    /// Square kernel, stride and padding and no dilation: the taps the
    /// plain `im2col`/`col2im` kernels take (any groups, bias or not).
    pub(crate) fn square(&self) -> bool {
        self.kh == self.kw && self.sh == self.sw && self.ph == self.pw && self.dil == 1
    }

    /// Filters per group.
    pub(crate) fn fg(&self) -> usize {
        self.filters / self.groups
    }
}
