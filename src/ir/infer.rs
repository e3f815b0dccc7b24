//! Shape inference: the output type of an op from its input types. Pure;
//! assumes hyperparameters are in range (lowering checks them) and returns
//! a [`ShapeError`] for any input type the op cannot take. Every product
//! is checked, so no input can overflow.

use super::op::Hw;
use super::{Op, Ty};

#[derive(Clone, Debug, PartialEq, thiserror::Error)]
pub enum ShapeError {
    #[error("`{op}` takes {expected} input(s), got {got}")]
    Arity {
        op: &'static str,
        expected: usize,
        got: usize,
    },
    #[error("`{op}` needs a [channels, height, width] input, got {got}")]
    NotImage { op: &'static str, got: String },
    #[error("kernel {size}×{size} is larger than the padded input {h}×{w}")]
    KernelTooLarge { size: u64, h: u64, w: u64 },
    #[error("input of `{op}` is {got}, expected {expected}")]
    Mismatch {
        op: &'static str,
        expected: String,
        got: String,
    },
    #[error("concatenated inputs differ in their trailing dimensions: {a} and {b}")]
    ConcatMismatch { a: String, b: String },
    #[error("`softmax_xent` has {logits} logits but the labels have {classes} classes")]
    Classes { logits: u64, classes: u64 },
    #[error("a size overflows 64 bits")]
    Overflow,
    #[error("`softmax` needs a vector of class scores, got {got}")]
    SoftmaxNotVector { got: String },
    #[error("`{op}` needs a [channels, height, width] input, got {got}")]
    PoolNotImage { op: &'static str, got: String },
    #[error("`avgpool` window {size}×{size} is larger than the padded input {h}×{w}")]
    PoolTooLarge { size: u64, h: u64, w: u64 },
    #[error("kernel {kh}×{kw} is larger than the padded input {h}×{w}")]
    RectKernelTooLarge { kh: u64, kw: u64, h: u64, w: u64 },
    #[error("{channels} input channels do not split into {groups} groups")]
    GroupsChannels { groups: u64, channels: u64 },
    #[error(
        "kernel {kh}×{kw} dilated by {dilation} spans {eh}×{ew}, larger than the padded input {h}×{w}"
    )]
    DilatedKernelTooLarge {
        kh: u64,
        kw: u64,
        dilation: u64,
        eh: u64,
        ew: u64,
        h: u64,
        w: u64,
    },
    #[error("`add` inputs differ in shape: {a} and {b}")]
    AddMismatch { a: String, b: String },
    #[error("`{op}` needs an image or a vector of features, got {got}")]
    NotChannels { op: &'static str, got: String },
}

/// The output height and width of a convolution of an `h×w` input.
pub fn conv_out(
    h: u64,
    w: u64,
    size: Hw,
    stride: Hw,
    pad: Hw,
    dilation: u64,
) -> Result<(u64, u64), ShapeError> {
    let ext = |k: u64| {
        k.checked_sub(1)
            .and_then(|k| k.checked_mul(dilation))
            .and_then(|k| k.checked_add(1))
            .ok_or(ShapeError::Overflow)
    };
    let (eh, ew) = (ext(size.h)?, ext(size.w)?);
    match (
        window_out(h, eh, stride.h, pad.h),
        window_out(w, ew, stride.w, pad.w),
    ) {
        (Some(oh), Some(ow)) => Ok((oh, ow)),
        _ => {
            let ph = h.saturating_add(pad.h.saturating_mul(2));
            let pw = w.saturating_add(pad.w.saturating_mul(2));
            Err(if dilation != 1 {
                ShapeError::DilatedKernelTooLarge {
                    kh: size.h,
                    kw: size.w,
                    dilation,
                    eh,
                    ew,
                    h: ph,
                    w: pw,
                }
            } else if size.is_square() {
                ShapeError::KernelTooLarge {
                    size: size.h,
                    h: ph,
                    w: pw,
                }
            } else {
                ShapeError::RectKernelTooLarge {
                    kh: size.h,
                    kw: size.w,
                    h: ph,
                    w: pw,
                }
            })
        }
    }
}

/// Output size of a window of `size` every `stride` over `n + 2*pad`.
pub fn window_out(n: u64, size: u64, stride: u64, pad: u64) -> Option<u64> {
    let padded = n.checked_add(pad.checked_mul(2)?)?;
    if size > padded || stride == 0 {
        return None;
    }
    Some((padded - size) / stride + 1)
}

pub fn checked_product(d: &[u64]) -> Result<u64, ShapeError> {
    d.iter()
        .try_fold(1u64, |a, &b| a.checked_mul(b))
        .ok_or(ShapeError::Overflow)
}

fn act(op: &'static str, t: &Ty) -> Result<Vec<u64>, ShapeError> {
    match t {
        Ty::Act { dims } => Ok(dims.clone()),
        other => Err(ShapeError::Mismatch {
            op,
            expected: "an activation".into(),
            got: other.to_string(),
        }),
    }
}

fn image(op: &'static str, t: &Ty) -> Result<[u64; 3], ShapeError> {
    match act(op, t)?.as_slice() {
        &[c, h, w] => Ok([c, h, w]),
        _ => Err(ShapeError::NotImage {
            op,
            got: t.to_string(),
        }),
    }
}

/// [`image`] for the average pools, whose misuse has its own code.
fn pool_image(op: &'static str, t: &Ty) -> Result<[u64; 3], ShapeError> {
    image(op, t).map_err(|_| ShapeError::PoolNotImage {
        op,
        got: t.to_string(),
    })
}

fn arity(op: &Op, inputs: &[&Ty], n: usize) -> Result<(), ShapeError> {
    if inputs.len() != n {
        return Err(ShapeError::Arity {
            op: op.mnemonic(),
            expected: n,
            got: inputs.len(),
        });
    }
    Ok(())
}

fn expect_param(op: &'static str, t: &Ty, want: Vec<u64>) -> Result<(), ShapeError> {
    let want = Ty::Param { dims: want };
    if *t != want {
        return Err(ShapeError::Mismatch {
            op,
            expected: want.to_string(),
            got: t.to_string(),
        });
    }
    Ok(())
}

/// The parameter shapes a layer needs given its data input, in port order
/// after the data input (weight, bias).
pub fn param_shapes(op: &Op, input: &Ty) -> Result<Vec<Vec<u64>>, ShapeError> {
    match op {
        Op::Conv {
            filters,
            size,
            groups,
            bias,
            ..
        } => {
            let [c, _, _] = image("conv", input)?;
            if *groups == 0 || c % groups != 0 || filters % groups != 0 {
                return Err(ShapeError::GroupsChannels {
                    groups: *groups,
                    channels: c,
                });
            }
            let w = vec![*filters, c / groups, size.h, size.w];
            checked_product(&w)?;
            Ok(if *bias {
                vec![w, vec![*filters]]
            } else {
                vec![w]
            })
        }
        Op::BatchNorm { .. } => {
            let c = bn_channels(input)?;
            Ok(vec![vec![c]; 4])
        }
        Op::Dense { units } => {
            let n = checked_product(&act("dense", input)?)?;
            checked_product(&[*units, n])?;
            Ok(vec![vec![*units, n], vec![*units]])
        }
        _ => Ok(vec![]),
    }
}

/// The channels a batchnorm normalises: of an image `[C, H, W]` or a
/// vector `[C]`.
pub fn bn_channels(input: &Ty) -> Result<u64, ShapeError> {
    match input {
        Ty::Act { dims } if dims.len() == 3 || dims.len() == 1 => Ok(dims[0]),
        other => Err(ShapeError::NotChannels {
            op: "batchnorm",
            got: other.to_string(),
        }),
    }
}

/// The roles of the parameters [`param_shapes`] lists, in the same order.
pub fn param_roles(op: &Op) -> &'static [super::ParamRole] {
    use super::ParamRole::*;
    match op {
        Op::BatchNorm { .. } => &[Weight, Bias, RunningMean, RunningVar],
        _ => &[Weight, Bias],
    }
}

/// Infers the output type of `op` applied to `inputs` (in port order).
pub fn infer(op: &Op, inputs: &[&Ty]) -> Result<Ty, ShapeError> {
    let out = match op {
        Op::Input { .. } | Op::Param { .. } => {
            return Err(ShapeError::Arity {
                op: op.mnemonic(),
                expected: 0,
                got: inputs.len(),
            });
        }
        Op::Conv {
            filters,
            size,
            stride,
            pad,
            dilation,
            bias,
            ..
        } => {
            arity(op, inputs, if *bias { 3 } else { 2 })?;
            let [_, h, w] = image("conv", inputs[0])?;
            let shapes = param_shapes(op, inputs[0])?;
            for (t, want) in inputs[1..].iter().zip(shapes) {
                expect_param("conv", t, want)?;
            }
            let (oh, ow) = conv_out(h, w, *size, *stride, *pad, *dilation)?;
            Ty::Act {
                dims: vec![*filters, oh, ow],
            }
        }
        Op::MaxPool { size, stride, pad } => {
            arity(op, inputs, 1)?;
            let [c, h, w] = image("maxpool", inputs[0])?;
            match (
                window_out(h, *size, *stride, *pad),
                window_out(w, *size, *stride, *pad),
            ) {
                (Some(oh), Some(ow)) => Ty::Act {
                    dims: vec![c, oh, ow],
                },
                _ => {
                    return Err(ShapeError::KernelTooLarge {
                        size: *size,
                        h: h.saturating_add(pad.saturating_mul(2)),
                        w: w.saturating_add(pad.saturating_mul(2)),
                    });
                }
            }
        }
        Op::AvgPool { size, stride, pad } => {
            arity(op, inputs, 1)?;
            let [c, h, w] = pool_image("avgpool", inputs[0])?;
            match (
                window_out(h, *size, *stride, *pad),
                window_out(w, *size, *stride, *pad),
            ) {
                (Some(oh), Some(ow)) => Ty::Act {
                    dims: vec![c, oh, ow],
                },
                _ => {
                    return Err(ShapeError::PoolTooLarge {
                        size: *size,
                        h: h.saturating_add(pad.saturating_mul(2)),
                        w: w.saturating_add(pad.saturating_mul(2)),
                    });
                }
            }
        }
        Op::GlobalAvgPool => {
            arity(op, inputs, 1)?;
            let [c, _, _] = pool_image("global_avgpool", inputs[0])?;
            Ty::Act { dims: vec![c] }
        }
        Op::Flatten => {
            arity(op, inputs, 1)?;
            let d = act("flatten", inputs[0])?;
            Ty::Act {
                dims: vec![checked_product(&d)?],
            }
        }
        Op::Softmax => {
            arity(op, inputs, 1)?;
            let d = act("softmax", inputs[0])?;
            if d.len() != 1 {
                return Err(ShapeError::SoftmaxNotVector {
                    got: inputs[0].to_string(),
                });
            }
            Ty::Act { dims: d }
        }
        Op::Lrn { .. } => {
            arity(op, inputs, 1)?;
            image("lrn", inputs[0])?;
            inputs[0].clone()
        }
        Op::Relu | Op::Tanh | Op::Sigmoid | Op::LeakyRelu { .. } | Op::Dropout { .. } => {
            arity(op, inputs, 1)?;
            Ty::Act {
                dims: act(op.mnemonic(), inputs[0])?,
            }
        }
        Op::Dense { units } => {
            arity(op, inputs, 3)?;
            let shapes = param_shapes(op, inputs[0])?;
            expect_param("dense", inputs[1], shapes[0].clone())?;
            expect_param("dense", inputs[2], shapes[1].clone())?;
            Ty::Act { dims: vec![*units] }
        }
        Op::Concat => {
            if inputs.is_empty() {
                return Err(ShapeError::Arity {
                    op: "concat",
                    expected: 1,
                    got: 0,
                });
            }
            let first = act("concat", inputs[0])?;
            if first.is_empty() {
                return Err(ShapeError::Mismatch {
                    op: "concat",
                    expected: "at least one dimension".into(),
                    got: inputs[0].to_string(),
                });
            }
            let mut channels = 0u64;
            for t in inputs {
                let d = act("concat", t)?;
                if d.len() != first.len() || d[1..] != first[1..] {
                    return Err(ShapeError::ConcatMismatch {
                        a: inputs[0].to_string(),
                        b: t.to_string(),
                    });
                }
                channels = channels.checked_add(d[0]).ok_or(ShapeError::Overflow)?;
            }
            let mut dims = first;
            dims[0] = channels;
            Ty::Act { dims }
        }
        Op::SoftmaxXent => {
            arity(op, inputs, 2)?;
            let d = act("softmax_xent", inputs[0])?;
            let logits = checked_product(&d)?;
            match inputs[1] {
                Ty::Labels { classes } if *classes == logits && d.len() == 1 => Ty::Scalar,
                Ty::Labels { classes } => {
                    return Err(ShapeError::Classes {
                        logits,
                        classes: *classes,
                    });
                }
                other => {
                    return Err(ShapeError::Mismatch {
                        op: "softmax_xent",
                        expected: "class labels".into(),
                        got: other.to_string(),
                    });
                }
            }
        }
        Op::SoftmaxXentGrad { .. } => {
            arity(op, inputs, 2)?;
            Ty::Act {
                dims: act("softmax_xent_grad", inputs[0])?,
            }
        }
        Op::ConvGradInput {
            in_h, in_w, groups, ..
        } => {
            arity(op, inputs, 2)?;
            match inputs[1] {
                Ty::Param { dims } if dims.len() == 4 => Ty::Act {
                    dims: vec![
                        dims[1].checked_mul(*groups).ok_or(ShapeError::Overflow)?,
                        *in_h,
                        *in_w,
                    ],
                },
                other => {
                    return Err(ShapeError::Mismatch {
                        op: "conv_grad_input",
                        expected: "a conv weight".into(),
                        got: other.to_string(),
                    });
                }
            }
        }
        Op::ConvGradWeight { size, groups, .. } => {
            arity(op, inputs, 2)?;
            let [c, _, _] = image("conv_grad_weight", inputs[0])?;
            let [f, _, _] = image("conv_grad_weight", inputs[1])?;
            if *groups == 0 || c % groups != 0 {
                return Err(ShapeError::GroupsChannels {
                    groups: *groups,
                    channels: c,
                });
            }
            Ty::Param {
                dims: vec![f, c / groups, size.h, size.w],
            }
        }
        Op::ConvGradBias => {
            arity(op, inputs, 1)?;
            let [f, _, _] = image("conv_grad_bias", inputs[0])?;
            Ty::Param { dims: vec![f] }
        }
        Op::TanhGrad | Op::SigmoidGrad | Op::LeakyReluGrad { .. } => {
            arity(op, inputs, 2)?;
            same(op, inputs[0], inputs[1])?;
            Ty::Act {
                dims: act(op.mnemonic(), inputs[0])?,
            }
        }
        Op::FlattenGrad { in_dims } => {
            arity(op, inputs, 1)?;
            let d = act("flatten_grad", inputs[0])?;
            if checked_product(&d)? != checked_product(in_dims)? {
                return Err(ShapeError::Mismatch {
                    op: "flatten_grad",
                    expected: format!("{} elements", checked_product(in_dims)?),
                    got: inputs[0].to_string(),
                });
            }
            Ty::Act {
                dims: in_dims.clone(),
            }
        }
        Op::AvgPoolGrad {
            size,
            stride,
            pad,
            in_h,
            in_w,
        } => {
            arity(op, inputs, 1)?;
            let [c, oh, ow] = image("avgpool_grad", inputs[0])?;
            if window_out(*in_h, *size, *stride, *pad) != Some(oh)
                || window_out(*in_w, *size, *stride, *pad) != Some(ow)
            {
                return Err(ShapeError::Mismatch {
                    op: "avgpool_grad",
                    expected: format!("the pooled size of {in_h}x{in_w}"),
                    got: inputs[0].to_string(),
                });
            }
            Ty::Act {
                dims: vec![c, *in_h, *in_w],
            }
        }
        Op::GlobalAvgPoolGrad { h, w } => {
            arity(op, inputs, 1)?;
            match act("global_avgpool_grad", inputs[0])?.as_slice() {
                &[c] => Ty::Act {
                    dims: vec![c, *h, *w],
                },
                _ => {
                    return Err(ShapeError::Mismatch {
                        op: "global_avgpool_grad",
                        expected: "a vector".into(),
                        got: inputs[0].to_string(),
                    });
                }
            }
        }
        Op::ReluGrad | Op::DropoutGrad { .. } | Op::MaxPoolGrad { .. } | Op::LrnGrad { .. } => {
            let n = match op {
                Op::ReluGrad | Op::MaxPoolGrad { .. } => 2,
                Op::LrnGrad { .. } => 3,
                _ => 1,
            };
            arity(op, inputs, n)?;
            // The gradient has the type of the forward input (the first input).
            Ty::Act {
                dims: act(op.mnemonic(), inputs[0])?,
            }
        }
        Op::DenseGradInput { in_dims } => {
            arity(op, inputs, 2)?;
            Ty::Act {
                dims: in_dims.clone(),
            }
        }
        Op::DenseGradWeight => {
            arity(op, inputs, 2)?;
            let x = checked_product(&act("dense_grad_weight", inputs[0])?)?;
            let y = checked_product(&act("dense_grad_weight", inputs[1])?)?;
            Ty::Param { dims: vec![y, x] }
        }
        Op::DenseGradBias => {
            arity(op, inputs, 1)?;
            Ty::Param {
                dims: vec![checked_product(&act("dense_grad_bias", inputs[0])?)?],
            }
        }
        Op::Slice { start, len } => {
            arity(op, inputs, 1)?;
            let mut d = act("slice", inputs[0])?;
            if d.is_empty() || start.checked_add(*len).is_none_or(|e| e > d[0]) {
                return Err(ShapeError::Mismatch {
                    op: "slice",
                    expected: format!("at least {} channels", start + len),
                    got: inputs[0].to_string(),
                });
            }
            d[0] = *len;
            Ty::Act { dims: d }
        }
        Op::BatchNorm { .. } => {
            arity(op, inputs, 5)?;
            let shapes = param_shapes(op, inputs[0])?;
            for (t, want) in inputs[1..].iter().zip(shapes) {
                expect_param("batchnorm", t, want)?;
            }
            inputs[0].clone()
        }
        Op::BatchNormGradInput { .. } => {
            arity(op, inputs, 3)?;
            let c = bn_channels(inputs[0])?;
            expect_param("batchnorm_grad_input", inputs[1], vec![c])?;
            same(op, inputs[0], inputs[2])?;
            inputs[0].clone()
        }
        Op::BatchNormGradGamma { .. } => {
            arity(op, inputs, 2)?;
            let c = bn_channels(inputs[0])?;
            same(op, inputs[0], inputs[1])?;
            Ty::Param { dims: vec![c] }
        }
        Op::BatchNormGradBeta => {
            arity(op, inputs, 1)?;
            Ty::Param {
                dims: vec![bn_channels(inputs[0])?],
            }
        }
        Op::RunningUpdate { .. } => {
            arity(op, inputs, 3)?;
            let c = bn_channels(inputs[2])?;
            expect_param("running_update", inputs[0], vec![c])?;
            expect_param("running_update", inputs[1], vec![c])?;
            Ty::Effect
        }
        Op::Sum => {
            if inputs.len() < 2 {
                return Err(ShapeError::Arity {
                    op: "add",
                    expected: 2,
                    got: inputs.len(),
                });
            }
            act("add", inputs[0])?;
            for t in &inputs[1..] {
                if *t != inputs[0] {
                    return Err(ShapeError::AddMismatch {
                        a: inputs[0].to_string(),
                        b: t.to_string(),
                    });
                }
            }
            inputs[0].clone()
        }
        Op::Add => {
            if inputs.is_empty() {
                return Err(ShapeError::Arity {
                    op: "add",
                    expected: 1,
                    got: 0,
                });
            }
            for t in &inputs[1..] {
                if *t != inputs[0] {
                    return Err(ShapeError::Mismatch {
                        op: "add",
                        expected: inputs[0].to_string(),
                        got: t.to_string(),
                    });
                }
            }
            inputs[0].clone()
        }
        Op::SgdUpdate { .. } => {
            arity(op, inputs, 3)?;
            if inputs[0] != inputs[1]
                || inputs[0] != inputs[2]
                || !matches!(inputs[0], Ty::Param { .. })
            {
                return Err(ShapeError::Mismatch {
                    op: "sgd_update",
                    expected: format!("three tensors of type {}", inputs[0]),
                    got: format!("{}, {}", inputs[1], inputs[2]),
                });
            }
            Ty::Effect
        }
        Op::ConvRelu { .. } => infer(&op.unfused_conv(), inputs)?,
        Op::DenseRelu { units, .. } | Op::DenseReluDropout { units, .. } => {
            infer(&Op::Dense { units: *units }, inputs)?
        }
        Op::LrnMaxPool {
            size,
            alpha,
            beta,
            k,
            pool,
            stride,
        } => {
            arity(op, inputs, 1)?;
            let lrn = Op::Lrn {
                size: *size,
                alpha: *alpha,
                beta: *beta,
                k: *k,
            };
            let y = infer(&lrn, inputs)?;
            let mp = Op::MaxPool {
                size: *pool,
                stride: *stride,
                pad: 0,
            };
            infer(&mp, &[&y])?
        }
        Op::ConvReluGradInput { .. } => {
            arity(op, inputs, 3)?;
            same(op, inputs[0], inputs[2])?;
            infer(&op.unfused_conv(), &inputs[..2])?
        }
        Op::ConvReluGradWeight { .. } => {
            arity(op, inputs, 3)?;
            same(op, inputs[1], inputs[2])?;
            infer(&op.unfused_conv(), &inputs[..2])?
        }
        Op::ConvReluGradBias { .. } => {
            arity(op, inputs, 2)?;
            same(op, inputs[0], inputs[1])?;
            infer(&Op::ConvGradBias, &inputs[..1])?
        }
        Op::DenseReluGradInput { in_dims, .. } => {
            arity(op, inputs, 3)?;
            same(op, inputs[0], inputs[2])?;
            let plain = Op::DenseGradInput {
                in_dims: in_dims.clone(),
            };
            infer(&plain, &inputs[..2])?
        }
        Op::DenseReluGradWeight { .. } => {
            arity(op, inputs, 3)?;
            same(op, inputs[1], inputs[2])?;
            infer(&Op::DenseGradWeight, &inputs[..2])?
        }
        Op::DenseReluGradBias { .. } => {
            arity(op, inputs, 2)?;
            same(op, inputs[0], inputs[1])?;
            infer(&Op::DenseGradBias, &inputs[..1])?
        }
        Op::LrnMaxPoolGrad {
            size,
            alpha,
            beta,
            k,
            pool,
            stride,
        } => {
            arity(op, inputs, 3)?;
            let fwd = Op::LrnMaxPool {
                size: *size,
                alpha: *alpha,
                beta: *beta,
                k: *k,
                pool: *pool,
                stride: *stride,
            };
            let y = infer(&fwd, &inputs[..1])?;
            same(op, &y, inputs[1])?;
            same(op, &y, inputs[2])?;
            inputs[0].clone()
        }
        Op::GradChain { parts, relu, .. } => {
            let n = usize::try_from(*parts).map_err(|_| ShapeError::Overflow)?;
            arity(op, inputs, n + usize::from(*relu))?;
            if n == 0 {
                return Err(ShapeError::Arity {
                    op: "grad_chain",
                    expected: 1,
                    got: 0,
                });
            }
            for t in &inputs[1..] {
                same(op, inputs[0], t)?;
            }
            Ty::Act {
                dims: act("grad_chain", inputs[0])?,
            }
        }
    };
    checked_product(out.dims())?;
    Ok(out)
}

/// Inputs that must have one type (a gradient and the value it masks).
fn same(op: &Op, want: &Ty, got: &Ty) -> Result<(), ShapeError> {
    if want != got {
        return Err(ShapeError::Mismatch {
            op: op.mnemonic(),
            expected: want.to_string(),
            got: got.to_string(),
        });
    }
    Ok(())
}
