//! The convolution geometry the generated kernels cover: `[filters,
//! size, stride, pad]` of a plain convolution (one group, no dilation,
//! square, with a bias). Assumes a verified node; guarantees any other
//! convolution is refused with [`CodegenError::Unsupported`] before code is
//! generated for it.

use super::error::CodegenError;
use crate::ir::Op;

/// Convolution geometry: `[filters, size, stride, pad]`.
pub(crate) type ConvGeo = [u64; 4];

/// `[filters, size, stride, pad]` of a plain convolution (one group, no
/// dilation, square, with a bias): the geometry the generated kernels
/// cover; any other is refused with [`CodegenError::Unsupported`].
pub(crate) fn plain_conv(node: &crate::ir::Node) -> Result<ConvGeo, CodegenError> {
    match &node.op {
        Op::Conv {
            filters,
            size,
            stride,
            pad,
            dilation: 1,
            groups: 1,
            bias: true,
        }
        | Op::ConvRelu {
            filters,
            size,
            stride,
            pad,
            dilation: 1,
            groups: 1,
            bias: true,
            ..
        } if size.is_square() && stride.is_square() && pad.is_square() => {
            Ok([*filters, size.h, stride.h, pad.h])
        }
        _ => Err(CodegenError::Unsupported {
            name: node.name.clone(),
            what: "grouped, dilated, rectangular or biasless convolutions",
        }),
    }
}
