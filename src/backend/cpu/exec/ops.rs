//! One node of the step: which buffers it writes and reads (its output,
//! the side buffers of its forward op, its inputs), carved from the arenas
//! by `layout::carve`, and the kernel call.
//!
//! Assumes the layout of a checked plan: the ranges a node writes are
//! disjoint from each other and from every value it reads, except where
//! the plan put an elementwise op's output over the input it overwrites
//! (that input then comes back as `None` and the op's in-place form
//! runs). Guarantees each kernel overwrites its output ranges entirely and
//! reads only ranges that hold live values, so the result does not depend
//! on where the buffers lie.

use super::fused::{
    dropout_at, grad_chain, lrn_maxpool_backward, lrn_maxpool_forward, relu_dropout_inplace,
};
use super::layout::{Loc, carve};
use super::{CpuExec, ExecError, LayerShape, bn_shape, chw, layer_shape, lrn_params, pool_shape};
use crate::backend::cpu::kernels::{self as k, Act, Float, Nchw};
use crate::ir::{Activation, NodeId, Op};
use crate::passes::conv_algo::Algo;
use crate::passes::memplan::Side;
use crate::rng;

/// Input `i` of an op that does not run in place over it.
fn input<'a, T>(r: &[Option<&'a [T]>], i: usize) -> Result<&'a [T], ExecError> {
    r.get(i)
        .copied()
        .flatten()
        .ok_or_else(|| ExecError::Internal(format!("input {i} is not readable here")))
}

/// The activation kernel of `tanh`, `sigmoid`, `leaky_relu` or their gradients.
fn pointwise(op: &Op) -> Result<k::act::Pointwise, ExecError> {
    Ok(match op {
        Op::Tanh | Op::TanhGrad => k::act::Pointwise::Tanh,
        Op::Sigmoid | Op::SigmoidGrad => k::act::Pointwise::Sigmoid,
        Op::LeakyRelu { slope } | Op::LeakyReluGrad { slope } => {
            k::act::Pointwise::LeakyRelu(*slope)
        }
        other => {
            return Err(ExecError::Internal(format!(
                "`{}` is not an activation",
                other.mnemonic()
            )));
        }
    })
}

/// The kernel's shape of a padded pooling of `x` (the pool's input) at batch `n`.
fn pad_pool(
    g: &crate::ir::Graph,
    x: NodeId,
    n: usize,
    size: u64,
    stride: u64,
    pad: u64,
) -> k::avgpool::PadPool {
    let (c, h, w) = chw(g, x);
    k::avgpool::PadPool {
        n,
        c,
        h,
        w,
        size: size as usize,
        stride: stride as usize,
        pad: pad as usize,
    }
}

/// The activation kernel a fused layer applies after its GEMM pass (none
/// for ReLU, which the GEMM epilogue applies).
fn fused_pointwise(a: Activation) -> Option<k::act::Pointwise> {
    match a {
        Activation::Relu => None,
        Activation::Tanh => Some(k::act::Pointwise::Tanh),
        Activation::Sigmoid => Some(k::act::Pointwise::Sigmoid),
        Activation::LeakyRelu { slope } => Some(k::act::Pointwise::LeakyRelu(slope)),
    }
}

/// A span of the arena as the `u32` argmax max pooling keeps.
fn index_mut<T: Float>(s: &mut [T], len: usize) -> &mut [u32] {
    let v: &mut [u32] = bytemuck::cast_slice_mut(s);
    let len = len.min(v.len());
    &mut v[..len]
}

fn index<T: Float>(s: &[T], len: usize) -> &[u32] {
    let v: &[u32] = bytemuck::cast_slice(s);
    &v[..len.min(v.len())]
}

impl<T: Float> CpuExec<T> {
    fn dropout(
        &self,
        of: &str,
        node: NodeId,
        rate: f64,
        training: bool,
        step: u64,
    ) -> k::dropout::DropoutParams {
        k::dropout::DropoutParams {
            seed: self.seed ^ rng::mix64(step),
            stream: rng::dropout_stream(of, self.graph.node(node).device),
            rate,
            training,
        }
    }

    pub(super) fn run(
        &mut self,
        n: NodeId,
        training: bool,
        lr: f64,
        step: u64,
    ) -> Result<(), ExecError> {
        let op = self.graph.node(n).op.clone();
        let ins = self.graph.inputs(n);
        match &op {
            Op::Input { .. } | Op::Param { .. } => return Ok(()),
            op if op.is_layer_grad() => return self.layer_grads(n),
            _ => {}
        }
        let xs: Vec<Loc> = ins.iter().map(|&i| self.loc(i)).collect::<Result<_, _>>()?;
        let b = self.batch;
        // Side buffers this op writes (forward) or reads (backward).
        let (side_w, side_r): (Vec<Loc>, Vec<Loc>) = match &op {
            Op::Lrn { .. } => (vec![self.side_loc(n, Side::LrnScale)?], vec![]),
            Op::MaxPool { .. } => (vec![self.side_loc(n, Side::PoolArgmax)?], vec![]),
            Op::SoftmaxXent => (vec![self.side_loc(n, Side::SoftmaxProbs)?], vec![]),
            Op::LrnMaxPool { .. } => (
                [Side::LrnOut, Side::LrnScale, Side::PoolArgmax]
                    .iter()
                    .map(|&s| self.side_loc(n, s))
                    .collect::<Result<_, _>>()?,
                vec![],
            ),
            Op::LrnGrad { .. } => (vec![], vec![self.side_loc(self.fwd(n)?, Side::LrnScale)?]),
            Op::MaxPoolGrad { .. } => {
                (vec![], vec![self.side_loc(self.fwd(n)?, Side::PoolArgmax)?])
            }
            Op::LrnMaxPoolGrad { .. } => {
                let f = *ins
                    .get(1)
                    .ok_or_else(|| ExecError::Orphan(self.graph.node(n).name.clone()))?;
                (
                    vec![],
                    [Side::LrnOut, Side::LrnScale, Side::PoolArgmax]
                        .iter()
                        .map(|&s| self.side_loc(f, s))
                        .collect::<Result<_, _>>()?,
                )
            }
            Op::SoftmaxXentGrad { .. } => {
                (vec![], vec![self.side_loc(self.loss, Side::SoftmaxProbs)?])
            }
            Op::BatchNorm { .. } => (
                vec![
                    self.side_loc(n, Side::BnMean)?,
                    self.side_loc(n, Side::BnVar)?,
                ],
                vec![],
            ),
            Op::BatchNormGradInput { .. }
            | Op::BatchNormGradGamma { .. }
            | Op::RunningUpdate { .. } => {
                let f = self.fwd(n)?;
                (
                    vec![],
                    vec![
                        self.side_loc(f, Side::BnMean)?,
                        self.side_loc(f, Side::BnVar)?,
                    ],
                )
            }
            _ => (vec![], vec![]),
        };
        // What it writes: its output (or, for an update, weight and velocity).
        let mut writes: Vec<Loc> = match &op {
            Op::SgdUpdate { .. } | Op::RunningUpdate { .. } => xs.iter().take(2).copied().collect(),
            _ => vec![self.loc(n)?],
        };
        writes.extend(&side_w);
        let mut reads: Vec<Loc> = match &op {
            Op::SgdUpdate { .. } | Op::RunningUpdate { .. } => xs.iter().skip(2).copied().collect(),
            // Labels are kept beside the arena.
            Op::SoftmaxXent => xs.iter().take(1).copied().collect(),
            _ => xs.clone(),
        };
        let nin = reads.len();
        reads.extend(&side_r);
        let dropout = |rate: f64| {
            let key = self
                .graph
                .mask_key(n)
                .ok_or_else(|| ExecError::NoMask(self.graph.node(n).name.clone()))?;
            Ok::<_, ExecError>(self.dropout(key, n, rate, training, step))
        };
        let dparams = match &op {
            Op::Dropout { rate }
            | Op::DenseReluDropout { rate, .. }
            | Op::DropoutGrad { rate, .. }
            | Op::GradChain {
                dropout: Some((rate, _)),
                ..
            } => Some(dropout(*rate)?),
            _ => None,
        };
        // The batchnorm whose gradient sums this op reads (see `bn_sums`),
        // with the gradient `dy` it is given.
        let dy_at = match &op {
            Op::BatchNormGradInput { .. } => Some(2),
            Op::BatchNormGradGamma { .. } => Some(1),
            Op::BatchNormGradBeta => Some(0),
            _ => None,
        };
        let bn_of = dy_at.and_then(|i| Some((self.graph.node(n).forward?, *ins.get(i)?)));
        let wino_fwd = self
            .conv_algos
            .get(&n)
            .is_some_and(|a| a.forward == Algo::Winograd);
        // The flat index of this executor's first element of a `[N × …]`
        // tensor of `len` values in the global batch's tensor (0 for one
        // process): what the dropout masks are keyed by.
        let eoff = self.example_offset;
        let moff = |len: usize| eoff * (len / b.max(1)) as u64;
        let g = &self.graph;
        let (mut w, r) = carve(&mut self.arenas, &writes, &reads).map_err(|o| {
            ExecError::Internal(format!("`{}`: buffers overlap: {o:?}", g.node(n).name))
        })?;
        let x = |i: usize| input(&r, i);
        let side = |i: usize| input(&r, nin + i);
        let (out, rest) = w
            .split_first_mut()
            .ok_or_else(|| ExecError::Internal("no output".into()))?;
        let out: &mut [T] = out;
        if let Some(shape) = layer_shape(g, &op, ins[0], b) {
            // ReLU in the GEMM's epilogue for conv_relu and dense_relu; a
            // dense_relu_dropout applies ReLU and its mask in one pass after,
            // a conv_tanh (etc.) its activation's kernel in place (the
            // kernel the unfused `tanh` runs).
            let fused = match &op {
                Op::ConvRelu { act, .. } | Op::DenseRelu { act, .. } => Some(*act),
                _ => None,
            };
            let act = if fused == Some(Activation::Relu) {
                Act::Relu
            } else {
                Act::None
            };
            // A conv with `bias: false` has two inputs.
            let bias = if ins.len() > 2 { Some(x(2)?) } else { None };
            match shape {
                LayerShape::Conv(s) if wino_fwd => {
                    k::winograd::forward(&s, x(0)?, x(1)?, bias, act, out, &mut self.scratch)
                }
                LayerShape::Conv(s) => {
                    k::conv::conv2d_forward(&s, x(0)?, x(1)?, bias, act, out, &mut self.scratch)
                }
                LayerShape::ConvGeneral(s) => {
                    k::conv_general::forward(&s, x(0)?, x(1)?, bias, act, out, &mut self.scratch)
                }
                LayerShape::Dense(s) => {
                    k::dense::dense_forward(&s, x(0)?, x(1)?, Some(x(2)?), act, out)
                }
            }
            if let (Op::DenseReluDropout { .. }, Some(p)) = (&op, &dparams) {
                relu_dropout_inplace(p, moff(out.len()), out);
            }
            if let Some(f) = fused.and_then(fused_pointwise) {
                k::act::forward_inplace(f, out);
            }
            return Ok(());
        }
        match &op {
            Op::LrnMaxPool {
                size,
                alpha,
                beta,
                k: kk,
                pool,
                stride,
            }
            | Op::LrnMaxPoolGrad {
                size,
                alpha,
                beta,
                k: kk,
                pool,
                stride,
            } => {
                let p = lrn_params(*size, *alpha, *beta, *kk);
                // One image's shape: the fused op runs image by image.
                let s = pool_shape(g, ins[0], 1, *pool, *stride);
                if let Op::LrnMaxPool { .. } = op {
                    let [lrn, scale, am] = rest else {
                        return Err(ExecError::Internal("lrn_maxpool side buffers".into()));
                    };
                    let len = out.len();
                    lrn_maxpool_forward(&p, &s, x(0)?, lrn, scale, out, index_mut(am, len));
                } else {
                    let am = index(side(2)?, x(2)?.len());
                    lrn_maxpool_backward(&p, &s, x(0)?, side(0)?, side(1)?, am, x(2)?, out);
                }
            }
            Op::GradChain { parts, relu, .. } => {
                let parts = *parts as usize;
                let first = r.first().copied().flatten();
                let rest: Vec<&[T]> = (1..parts).map(x).collect::<Result<_, _>>()?;
                let y = if *relu { Some(x(ins.len() - 1)?) } else { None };
                let off = moff(out.len());
                grad_chain(first, &rest, dparams.as_ref().map(|p| (p, off)), y, out);
            }
            Op::Relu => match r[0] {
                Some(x0) => k::relu::relu_forward(x0, out),
                None => k::relu::relu_forward_inplace(out),
            },
            Op::Lrn {
                size,
                alpha,
                beta,
                k: kk,
            } => {
                let (c, h, wd) = chw(g, ins[0]);
                let p = lrn_params(*size, *alpha, *beta, *kk);
                let [scale] = rest else {
                    return Err(ExecError::Internal("lrn side buffer".into()));
                };
                k::lrn::lrn_forward(&p, &Nchw::new(b, c, h, wd), x(0)?, out, scale);
            }
            Op::MaxPool { size, stride, pad } => {
                let [am] = rest else {
                    return Err(ExecError::Internal("maxpool side buffer".into()));
                };
                let len = out.len();
                if *pad == 0 {
                    let s = pool_shape(g, ins[0], b, *size, *stride);
                    k::pool::maxpool_forward(&s, x(0)?, out, index_mut(am, len));
                } else {
                    let s = pad_pool(g, ins[0], b, *size, *stride, *pad);
                    k::avgpool::maxpool_pad_forward(&s, x(0)?, out, index_mut(am, len));
                }
            }
            Op::AvgPool { size, stride, pad } => {
                let s = pad_pool(g, ins[0], b, *size, *stride, *pad);
                k::avgpool::avgpool_forward(&s, x(0)?, out);
            }
            Op::AvgPoolGrad {
                size, stride, pad, ..
            } => {
                let s = pad_pool(g, n, b, *size, *stride, *pad);
                k::avgpool::avgpool_backward(&s, x(0)?, out);
            }
            Op::GlobalAvgPool => {
                let (_, h, wd) = chw(g, ins[0]);
                k::avgpool::global_avgpool_forward(h * wd, x(0)?, out);
            }
            Op::GlobalAvgPoolGrad { h, w: wd } => {
                k::avgpool::global_avgpool_backward((*h * *wd) as usize, x(0)?, out);
            }
            Op::Softmax => {
                let classes = g.node(ins[0]).ty.numel() as usize;
                k::softmax::softmax_forward(classes, x(0)?, out);
            }
            // The same values in the same order: a copy, or nothing in place.
            Op::Flatten | Op::FlattenGrad { .. } => {
                if let Some(x0) = r[0] {
                    out.copy_from_slice(x0);
                }
            }
            Op::Tanh | Op::Sigmoid | Op::LeakyRelu { .. } => {
                let f = pointwise(&op)?;
                match r[0] {
                    Some(x0) => k::act::forward(f, x0, out),
                    None => k::act::forward_inplace(f, out),
                }
            }
            Op::TanhGrad | Op::SigmoidGrad | Op::LeakyReluGrad { .. } => {
                let f = pointwise(&op)?;
                match (r[0], r[1]) {
                    (Some(y), Some(dy)) => k::act::backward(f, y, dy, out),
                    (None, Some(dy)) => k::act::backward_over_y(f, out, dy),
                    (Some(y), None) => k::act::backward_over_dy(f, y, out),
                    (None, None) => {
                        return Err(ExecError::Internal(format!(
                            "`{}` over both inputs",
                            op.mnemonic()
                        )));
                    }
                }
            }
            Op::Dropout { .. } | Op::DropoutGrad { .. } => {
                let p = dparams.ok_or_else(|| ExecError::Internal("dropout".into()))?;
                match (r[0], moff(out.len())) {
                    (Some(x0), 0) => k::dropout::dropout_forward(&p, x0, out),
                    (None, 0) => k::dropout::dropout_inplace(&p, out),
                    (x0, off) => dropout_at(&p, off, x0, out),
                }
            }
            Op::Concat => {
                let (_, h, wd) = chw(g, n);
                let parts: Vec<(&[T], usize)> = (0..ins.len())
                    .map(|i| Ok((x(i)?, chw(g, ins[i]).0)))
                    .collect::<Result<_, ExecError>>()?;
                k::concat::concat_channels(b, h * wd, &parts, out);
            }
            Op::SoftmaxXent => {
                let classes = g.node(ins[0]).ty.numel() as usize;
                let [probs] = rest else {
                    return Err(ExecError::Internal("softmax side buffer".into()));
                };
                let loss =
                    k::softmax_xent::softmax_xent_forward(b, classes, x(0)?, &self.labels, probs);
                out[0] = T::from_f64(loss);
            }
            Op::SoftmaxXentGrad { smoothing } => {
                let classes = g.node(ins[0]).ty.numel() as usize;
                if *smoothing == 0.0 {
                    k::softmax_xent::softmax_xent_backward(b, classes, side(0)?, &self.labels, out);
                } else {
                    k::softmax_xent::softmax_xent_backward_smoothed(
                        b,
                        classes,
                        side(0)?,
                        &self.labels,
                        *smoothing,
                        out,
                    );
                }
            }
            Op::ReluGrad => match (r[0], r[1]) {
                (Some(y), Some(dy)) => k::relu::relu_backward(y, dy, out),
                (None, Some(dy)) => k::relu::relu_backward_over_y(out, dy),
                (Some(y), None) => k::relu::relu_backward_over_dy(y, out),
                (None, None) => {
                    return Err(ExecError::Internal("relu_grad over both inputs".into()));
                }
            },
            Op::LrnGrad {
                size,
                alpha,
                beta,
                k: kk,
            } => {
                let (c, h, wd) = chw(g, ins[0]);
                let p = lrn_params(*size, *alpha, *beta, *kk);
                k::lrn::lrn_backward(
                    &p,
                    &Nchw::new(b, c, h, wd),
                    x(0)?,
                    x(1)?,
                    side(0)?,
                    x(2)?,
                    out,
                    &mut self.scratch,
                );
            }
            Op::MaxPoolGrad { size, stride, pad } => {
                let dy = x(1)?;
                if *pad == 0 {
                    let s = pool_shape(g, ins[0], b, *size, *stride);
                    k::pool::maxpool_backward(&s, dy, index(side(0)?, dy.len()), out);
                } else {
                    let s = pad_pool(g, ins[0], b, *size, *stride, *pad);
                    k::avgpool::maxpool_pad_backward(&s, dy, index(side(0)?, dy.len()), out);
                }
            }
            Op::Slice { start, len } => {
                let (c, h, wd) = chw(g, ins[0]);
                let plane = h * wd;
                let (start, len) = (*start as usize, *len as usize);
                let src = x(0)?;
                for i in 0..b {
                    let from = &src[(i * c + start) * plane..(i * c + start + len) * plane];
                    out[i * len * plane..(i + 1) * len * plane].copy_from_slice(from);
                }
            }
            Op::Add | Op::Sum => {
                if let Some(x0) = r[0] {
                    out.copy_from_slice(x0);
                }
                for i in 1..ins.len() {
                    for (o, a) in out.iter_mut().zip(x(i)?) {
                        *o += *a;
                    }
                }
            }
            Op::BatchNorm { eps, .. } => {
                let s = bn_shape(g, ins[0], b);
                let [mean, var] = rest else {
                    return Err(ExecError::Internal("batchnorm side buffers".into()));
                };
                let (x0, gamma, beta) = (x(0)?, x(1)?, x(2)?);
                if training {
                    k::batchnorm::forward_train(&s, *eps, x0, gamma, beta, mean, var, out);
                } else {
                    k::batchnorm::normalise(&s, *eps, x0, gamma, beta, x(3)?, x(4)?, out);
                }
            }
            // The three gradients of a batchnorm reduce the same per-channel
            // sums of its `x` and `dy`: the first of them to run computes
            // them for the step, the others reuse them (the same values).
            Op::BatchNormGradInput { eps } => {
                let s = bn_shape(g, ins[0], b);
                let (x0, gamma, dy) = (x(0)?, x(1)?, x(2)?);
                let (mean, var) = (side(0)?, side(1)?);
                let fresh = || k::batchnorm::grad_sums(&s, *eps, x0, mean, var, dy);
                let own;
                let sums: &[(T, T)] = match bn_of {
                    Some(key) => self.bn_sums.entry(key).or_insert_with(fresh),
                    None => {
                        own = fresh();
                        &own
                    }
                };
                k::batchnorm::backward_input_from_sums(
                    &s, *eps, x0, gamma, mean, var, dy, sums, out,
                );
            }
            Op::BatchNormGradGamma { eps } => {
                let s = bn_shape(g, ins[0], b);
                let (x0, dy, mean, var) = (x(0)?, x(1)?, side(0)?, side(1)?);
                let fresh = || k::batchnorm::grad_sums(&s, *eps, x0, mean, var, dy);
                let own;
                let sums: &[(T, T)] = match bn_of {
                    Some(key) => self.bn_sums.entry(key).or_insert_with(fresh),
                    None => {
                        own = fresh();
                        &own
                    }
                };
                k::batchnorm::grad_gamma_from_sums(sums, out);
            }
            Op::BatchNormGradBeta => match bn_of.and_then(|f| self.bn_sums.get(&f)) {
                Some(sums) => k::batchnorm::grad_beta_from_sums(sums, out),
                None => k::batchnorm::grad_beta(&bn_shape(g, ins[0], b), x(0)?, out),
            },
            Op::RunningUpdate { momentum } => {
                let s = bn_shape(g, ins[2], b);
                let [running_var] = rest else {
                    return Err(ExecError::Internal("running_update state".into()));
                };
                let (mean, var) = (side(0)?, side(1)?);
                k::batchnorm::update_running(*momentum, s.m(), mean, var, out, running_var);
            }
            Op::SgdUpdate {
                momentum,
                weight_decay,
                nesterov,
                lr_mult,
                decay_mult,
            } => {
                let p = k::sgd::SgdParams {
                    lr,
                    momentum: *momentum,
                    weight_decay: *weight_decay,
                    nesterov: *nesterov,
                    lr_mult: *lr_mult,
                    decay_mult: *decay_mult,
                };
                let [vel] = rest else {
                    return Err(ExecError::Internal("sgd_update state".into()));
                };
                k::sgd::sgd_update(&p, out, vel, x(0)?);
            }
            other => {
                return Err(ExecError::Internal(format!(
                    "`{}` is not executable here",
                    other.mnemonic()
                )));
            }
        }
        Ok(())
    }

    /// The forward node a backward node differentiates.
    fn fwd(&self, n: NodeId) -> Result<NodeId, ExecError> {
        self.fwd_of
            .get(&n)
            .copied()
            .ok_or_else(|| ExecError::Orphan(self.graph.node(n).name.clone()))
    }

    /// Computes all gradients of one conv or dense layer in one kernel call.
    fn layer_grads(&mut self, n: NodeId) -> Result<(), ExecError> {
        let f = self.fwd(n)?;
        if self.done[f.index()] {
            return Ok(());
        }
        self.done[f.index()] = true;
        let g = &self.graph;
        let fnode = g.node(f);
        let grads = g.layer_grads(f);
        let (dx_n, dw_n, db_n) = (grads.dx, grads.dw, grads.db);
        let fins = g.inputs(f);
        let Some(dw_n) = dw_n else { return Ok(()) };
        let dy_n = g.inputs(dw_n)[1];
        let b = self.batch;
        // Any fused activation: the gradients read the output `y`.
        let fused = fnode.op.fused_act();
        let act = if fused.is_some() {
            Act::Relu
        } else {
            Act::None
        };
        let mut writes = vec![self.loc(dw_n)?];
        writes.extend(dx_n.map(|d| self.loc(d)).transpose()?);
        writes.extend(db_n.map(|d| self.loc(d)).transpose()?);
        let mut reads = vec![self.loc(fins[0])?, self.loc(fins[1])?, self.loc(dy_n)?];
        // The output is read only by the fused gradients (their ReLU mask,
        // or the derivative of their activation).
        if act == Act::Relu {
            reads.push(self.loc(f)?);
        }
        let (mut w, r) = carve(&mut self.arenas, &writes, &reads).map_err(|o| {
            ExecError::Internal(format!("`{}`: buffers overlap: {o:?}", fnode.name))
        })?;
        let (x, wt, mut dy) = (input(&r, 0)?, input(&r, 1)?, input(&r, 2)?);
        let y = if act == Act::Relu { input(&r, 3)? } else { dy };
        let mut act = act;
        let algos = self.conv_algos.get(&f).copied();
        let wino_dx = algos.is_some_and(|a| a.input_grad == Algo::Winograd) && dx_n.is_some();
        let wino_dw = algos.is_some_and(|a| a.weight_grad == Algo::Winograd);
        if let Op::DenseReluDropout { rate, .. } = &fnode.op {
            // [y > 0] is the ReLU's mask and the dropout's together.
            let scale = T::from_f64(1.0 / (1.0 - rate));
            self.masked.resize(dy.len(), T::ZERO);
            for ((m, yv), gv) in self.masked.iter_mut().zip(y).zip(dy) {
                *m = if *yv > T::ZERO { *gv * scale } else { T::ZERO };
            }
            dy = &self.masked;
            act = Act::None;
        } else if let Some(f) = fused.and_then(fused_pointwise) {
            // dy times the derivative from y, as the unfused gradient op
            // computes it, then the plain layer gradients.
            self.masked.resize(dy.len(), T::ZERO);
            k::act::backward(f, y, dy, &mut self.masked);
            dy = &self.masked;
            act = Act::None;
        } else if (wino_dx || wino_dw) && act == Act::Relu {
            // The Winograd kernels take the output gradient with the ReLU
            // already undone.
            self.masked.resize(dy.len(), T::ZERO);
            k::relu_mask(y, dy, &mut self.masked);
            dy = &self.masked;
            act = Act::None;
        }
        let y = if act == Act::Relu { y } else { dy };
        let mut it = w.iter_mut();
        let dw: &mut [T] = it.next().ok_or_else(|| ExecError::Internal("dw".into()))?;
        let dx: Option<&mut [T]> = if dx_n.is_some() {
            it.next().map(|s| &mut **s)
        } else {
            None
        };
        let db: Option<&mut [T]> = if db_n.is_some() {
            it.next().map(|s| &mut **s)
        } else {
            None
        };
        match layer_shape(g, &fnode.op, fins[0], b) {
            Some(LayerShape::Conv(s)) if wino_dx || wino_dw => k::winograd::backward(
                &s,
                wino_dx,
                wino_dw,
                x,
                wt,
                dy,
                dx,
                dw,
                db,
                &mut self.scratch,
            ),
            Some(LayerShape::Conv(s)) => {
                k::conv::conv2d_backward(&s, act, x, wt, y, dy, dx, dw, db, &mut self.scratch)
            }
            Some(LayerShape::ConvGeneral(s)) => {
                k::conv_general::backward(&s, act, x, wt, y, dy, dx, dw, db, &mut self.scratch)
            }
            Some(LayerShape::Dense(s)) => {
                k::dense::dense_backward(&s, act, x, wt, y, dy, dx, dw, db, &mut self.scratch)
            }
            None => {
                return Err(ExecError::Internal(format!(
                    "`{}` ({}) has layer gradients",
                    fnode.name,
                    fnode.op.mnemonic()
                )));
            }
        }
        Ok(())
    }
}
