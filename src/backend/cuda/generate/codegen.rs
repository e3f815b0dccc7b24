//! Code generation: training graph -> [`CudaProgram`] (CUDA C source and
//! launch list). Pure: no device, no driver, no toolkit.
//!
//! Assumes a verified training step built by `passes::autodiff`, fused by
//! `passes::fuse` or not (backward nodes named `F.dx`, `F.dw`, `F.db`
//! after the forward node `F` they differentiate), and runs exactly the
//! computation of the CPU executor (`backend::cpu::exec`) on that graph,
//! in its planned order: the step is generated in the memory plan's order
//! (`passes::memplan::plan`, as the CPU executor runs it) and every buffer
//! lies where the plan puts it (`buffers`); the gradients of one
//! convolution or dense layer are all computed when the first of them is
//! reached (so a weight's update never precedes the input gradient that
//! reads it, and the plan keeps all three live from there). Convolutions and dense layers, plain or fused with their
//! ReLU (and dropout), are cuBLAS `sgemm` steps around generated kernels
//! (`layers`), a convolution's batch in chunks of images that keep the
//! workspace under [`Options::conv_workspace`] (`crate::backend::cuda::generate::chunk`). An `lrn_maxpool` is one kernel (a block per
//! channel plane, the LRN output staged in shared memory; the LRN and
//! pooling kernels in turn for planes too large for it), its gradient one
//! elementwise kernel, a `grad_chain` one elementwise kernel. A training
//! `batchnorm` is a per-channel statistics kernel (kept in its side
//! buffers) and a normalising one; in an evaluation program
//! ([`Options::forward`]) only the latter, with the running statistics;
//! its gradients and `running_update` read the kept statistics. Everything
//! else is one generated kernel per op from the table in
//! [`crate::backend::cuda::generate::kernels`]. Dropout masks are keyed as on the CPU
//! (`rng::dropout_stream` of the forward dropout's name and tower, flat
//! element index, the step's seed). The seed and the learning rate are
//! read from the program's scalars buffer, so every launch's arguments are
//! the same each step: the whole step can be captured once and replayed.
//!
//! Guarantees: deterministic output for a given graph and batch; a
//! program that `crate::backend::cuda::proof::alias::check` accepts (every buffer used while
//! live, in place only through in-place kernels, no GEMM over its own
//! operands); an error value for a graph that is not a training step (no
//! loss, labels or update; a gradient without its forward node or the
//! state it reads), for one the memory plan refuses or does not match,
//! for more than 8 inputs to one kernel, and for sizes past the launch
//! limits.

use std::collections::HashSet;

use crate::backend::cuda::generate::CodegenError;
use crate::backend::cuda::generate::buffers::{self, Buffers, Layout, Side, node_key};
use crate::backend::cuda::generate::conv_geo::ConvGeo;
use crate::backend::cuda::generate::kernels::{ActFn, Epilogue, Kernel, LrnPool, Pool, spec};
use crate::backend::cuda::generate::render::{PRELUDE, Source};
use crate::backend::cuda::program::{Arg, CudaProgram, Gemm, Launch, Step};
use crate::ir::{Graph, NodeId, Op};
use crate::passes::memplan::{self, Plan};
use crate::rng;

pub(super) struct Gen<'g> {
    pub(super) g: &'g Graph,
    pub(super) batch: usize,
    pub(super) bufs: Buffers,
    src: Source,
    steps: Vec<Step>,
    /// Position in the plan's order of the node being generated.
    pos: usize,
    /// An evaluation program (`Options::forward`): batchnorm normalises
    /// with the running statistics.
    forward: bool,
}

/// `(C, H, W)` of an activation; flat activations are `(len, 1, 1)`.
pub(super) fn chw(g: &Graph, n: NodeId) -> (usize, usize, usize) {
    match g.node(n).ty.dims() {
        [c, h, w] => (*c as usize, *h as usize, *w as usize),
        d => (d.iter().product::<u64>() as usize, 1, 1),
    }
}

/// The kernel activation of `tanh`, `sigmoid`, `leaky_relu` or their
/// gradients (`tanh` for any other op: callers match those first).
pub(super) fn act_fn(op: &Op) -> ActFn {
    match op {
        Op::Sigmoid | Op::SigmoidGrad => ActFn::Sigmoid,
        Op::LeakyRelu { slope } | Op::LeakyReluGrad { slope } => ActFn::LeakyRelu(*slope),
        _ => ActFn::Tanh,
    }
}

impl Gen<'_> {
    pub(super) fn buf(&self, n: NodeId) -> usize {
        self.bufs.node[&n]
    }

    pub(super) fn launch(
        &mut self,
        n: NodeId,
        k: Kernel,
        args: Vec<Arg>,
    ) -> Result<(), CodegenError> {
        let s = spec(&k);
        let (grid, block) = s.grid_block();
        if let crate::backend::cuda::generate::render::Shape::Elementwise { total } = s.shape
            && total > (i32::MAX as usize) * 64
        {
            return Err(CodegenError::TooLarge {
                name: node_key(self.g, n),
                elems: total,
            });
        }
        debug_assert_eq!(s.params.len(), args.len());
        let kernel = self.src.add(&s);
        self.steps.push(Step::Launch(Launch {
            kernel,
            grid,
            block,
            args,
            node: node_key(self.g, n),
            pos: self.pos,
        }));
        Ok(())
    }

    /// Row-major `C[M×N] = op(A)·op(B) + beta·C` (`op(A)` is `M×K`),
    /// written as the column-major cuBLAS call `Cᵀ = op(B)ᵀ·op(A)ᵀ + beta·Cᵀ`.
    #[allow(clippy::too_many_arguments)]
    pub(super) fn gemm_rm(
        &mut self,
        n: NodeId,
        c: usize,
        a: usize,
        ta: bool,
        b: usize,
        tb: bool,
        shape: (usize, usize, usize),
        beta: f32,
    ) {
        self.gemm_rm_at(n, (c, 0), (a, 0), ta, (b, 0), tb, shape, beta)
    }

    /// [`Self::gemm_rm`] over operands `(buffer, element offset)`: one
    /// group of a grouped convolution.
    #[allow(clippy::too_many_arguments)]
    pub(super) fn gemm_rm_at(
        &mut self,
        n: NodeId,
        (c, c_at): (usize, usize),
        (a, a_at): (usize, usize),
        ta: bool,
        (b, b_at): (usize, usize),
        tb: bool,
        (mm, nn, kk): (usize, usize, usize),
        beta: f32,
    ) {
        self.steps.push(Step::Gemm(Gemm {
            transa: tb,
            transb: ta,
            m: nn,
            n: mm,
            k: kk,
            alpha: 1.0,
            a: b,
            lda: if tb { kk } else { nn },
            b: a,
            ldb: if ta { mm } else { kk },
            beta,
            c,
            ldc: nn,
            a_at: b_at,
            b_at: a_at,
            c_at,
            node: node_key(self.g, n),
            pos: self.pos,
        }));
    }

    fn node(&mut self, n: NodeId, done: &mut HashSet<NodeId>) -> Result<(), CodegenError> {
        let g = self.g;
        let node = g.node(n);
        let ins = g.inputs(n);
        let b = self.batch;
        let total = buffers::elems(&node.ty, b);
        let inb: Vec<usize> = ins
            .iter()
            .map(|i| self.bufs.node.get(i).copied().unwrap_or(0))
            .collect();
        let a = |i: usize| Arg::Buf(inb[i]);
        match &node.op {
            Op::Input { .. } | Op::Param { .. } => {}
            Op::Conv { .. } | Op::ConvRelu { .. } => {
                let act = match &node.op {
                    Op::ConvRelu { act, .. } => Epilogue::of(*act),
                    _ => Epilogue::None,
                };
                if let Some(geo) = ConvGeo::of(&node.op) {
                    self.conv_forward(n, geo, act)?
                }
            }
            Op::Dense { units } => self.dense_forward(n, *units, Epilogue::None)?,
            Op::DenseRelu { units, act } => self.dense_forward(n, *units, Epilogue::of(*act))?,
            Op::DenseReluDropout { units, rate, of } => {
                let act = if *rate == 0.0 {
                    Epilogue::Relu
                } else {
                    Epilogue::ReluDropout {
                        rate: *rate,
                        stream: rng::dropout_stream(of, node.device),
                    }
                };
                self.dense_forward(n, *units, act)?
            }
            Op::LrnMaxPool {
                size,
                alpha,
                beta,
                k,
                pool,
                stride,
            } => {
                let s = self.lrn_pool(ins[0], [*size, *pool, *stride], [*alpha, *beta, *k]);
                self.lrn_maxpool(n, s)?
            }
            Op::LrnMaxPoolGrad {
                size,
                alpha,
                beta,
                k,
                pool,
                stride,
            } => {
                let s = self.lrn_pool(ins[0], [*size, *pool, *stride], [*alpha, *beta, *k]);
                let f = ins[1];
                let args = vec![
                    a(0),
                    Arg::Buf(self.side(n, f, Side::LrnOut)?),
                    Arg::Buf(self.side(n, f, Side::LrnScale)?),
                    Arg::Buf(self.side(n, f, Side::PoolArgmax)?),
                    a(2),
                    Arg::Buf(self.buf(n)),
                ];
                self.launch(n, Kernel::LrnMaxPoolBwd(s), args)?
            }
            Op::GradChain {
                parts,
                dropout,
                relu,
            } => {
                let parts = *parts as usize;
                self.check_inputs(n, parts)?;
                let mut args: Vec<Arg> = (0..parts).map(a).collect();
                if *relu {
                    args.push(a(ins.len() - 1));
                }
                args.push(Arg::Buf(self.buf(n)));
                let dropout = match dropout {
                    Some((rate, _)) => Some((*rate, self.mask_stream(n)?)),
                    None => None,
                };
                if dropout.is_some_and(|(rate, _)| rate > 0.0) {
                    args.push(Arg::seed(self.bufs.scalars));
                }
                let kern = Kernel::GradChain {
                    total,
                    parts,
                    dropout,
                    relu: *relu,
                };
                self.launch(n, kern, args)?
            }
            Op::Relu => {
                self.launch(n, Kernel::Relu { total }, vec![a(0), Arg::Buf(self.buf(n))])?
            }
            Op::ReluGrad => self.launch(
                n,
                Kernel::ReluGrad { total },
                vec![a(0), a(1), Arg::Buf(self.buf(n))],
            )?,
            Op::Lrn {
                size,
                alpha,
                beta,
                k,
            } => {
                let (c, h, w) = chw(g, n);
                let kern = Kernel::LrnFwd {
                    n: b,
                    c,
                    p: h * w,
                    size: *size as usize,
                    alpha: *alpha,
                    beta: *beta,
                    k: *k,
                };
                let scale = self.side(n, n, Side::LrnScale)?;
                self.launch(n, kern, vec![a(0), Arg::Buf(self.buf(n)), Arg::Buf(scale)])?;
            }
            Op::LrnGrad {
                size,
                alpha,
                beta,
                k,
            } => {
                let f = self.forward_of(n)?;
                let (c, h, w) = chw(g, n);
                let kern = Kernel::LrnBwd {
                    n: b,
                    c,
                    p: h * w,
                    size: *size as usize,
                    alpha: *alpha,
                    beta: *beta,
                    k: *k,
                };
                let scale = self.side(n, f, Side::LrnScale)?;
                let args = vec![a(0), a(1), Arg::Buf(scale), a(2), Arg::Buf(self.buf(n))];
                self.launch(n, kern, args)?;
            }
            Op::MaxPool {
                size,
                stride,
                pad: pad @ 1..,
            } => {
                let kern = Kernel::MaxPoolPadFwd(self.pool(ins[0], *size, *stride, *pad));
                let am = self.side(n, n, Side::PoolArgmax)?;
                self.launch(n, kern, vec![a(0), Arg::Buf(self.buf(n)), Arg::Buf(am)])?;
            }
            Op::MaxPoolGrad {
                size,
                stride,
                pad: pad @ 1..,
            } => {
                let f = self.forward_of(n)?;
                let kern = Kernel::MaxPoolPadBwd(self.pool(ins[0], *size, *stride, *pad));
                let am = self.side(n, f, Side::PoolArgmax)?;
                self.launch(n, kern, vec![a(1), Arg::Buf(am), Arg::Buf(self.buf(n))])?;
            }
            Op::AvgPool { size, stride, pad } => {
                let kern = Kernel::AvgPoolFwd(self.pool(ins[0], *size, *stride, *pad));
                self.launch(n, kern, vec![a(0), Arg::Buf(self.buf(n))])?;
            }
            Op::AvgPoolGrad {
                size, stride, pad, ..
            } => {
                let kern = Kernel::AvgPoolBwd(self.pool(n, *size, *stride, *pad));
                self.launch(n, kern, vec![a(0), Arg::Buf(self.buf(n))])?;
            }
            Op::GlobalAvgPool => {
                let (c, h, w) = chw(g, ins[0]);
                let kern = Kernel::GlobalAvgPoolFwd {
                    planes: b * c,
                    hw: h * w,
                };
                self.launch(n, kern, vec![a(0), Arg::Buf(self.buf(n))])?;
            }
            Op::GlobalAvgPoolGrad { h, w } => {
                let (c, _, _) = chw(g, n);
                let kern = Kernel::GlobalAvgPoolBwd {
                    planes: b * c,
                    hw: (*h * *w) as usize,
                };
                self.launch(n, kern, vec![a(0), Arg::Buf(self.buf(n))])?;
            }
            Op::Softmax => {
                let classes = g.node(ins[0]).ty.numel() as usize;
                let kern = Kernel::Softmax { n: b, classes };
                self.launch(n, kern, vec![a(0), Arg::Buf(self.buf(n))])?;
            }
            Op::Flatten | Op::FlattenGrad { .. } => {
                self.launch(n, Kernel::Copy { total }, vec![a(0), Arg::Buf(self.buf(n))])?
            }
            Op::Tanh | Op::Sigmoid | Op::LeakyRelu { .. } => {
                let kern = Kernel::Act {
                    total,
                    f: act_fn(&node.op),
                };
                self.launch(n, kern, vec![a(0), Arg::Buf(self.buf(n))])?
            }
            Op::TanhGrad | Op::SigmoidGrad | Op::LeakyReluGrad { .. } => {
                let kern = Kernel::ActGrad {
                    total,
                    f: act_fn(&node.op),
                };
                self.launch(n, kern, vec![a(0), a(1), Arg::Buf(self.buf(n))])?
            }
            Op::MaxPool { size, stride, .. } => {
                let (c, h, w) = chw(g, ins[0]);
                let kern = Kernel::MaxPoolFwd {
                    planes: b * c,
                    h,
                    w,
                    size: *size as usize,
                    stride: *stride as usize,
                };
                let am = self.side(n, n, Side::PoolArgmax)?;
                self.launch(n, kern, vec![a(0), Arg::Buf(self.buf(n)), Arg::Buf(am)])?;
            }
            Op::MaxPoolGrad { size, stride, .. } => {
                let f = self.forward_of(n)?;
                let (c, h, w) = chw(g, ins[0]);
                let kern = Kernel::MaxPoolBwd {
                    planes: b * c,
                    h,
                    w,
                    size: *size as usize,
                    stride: *stride as usize,
                };
                let am = self.side(n, f, Side::PoolArgmax)?;
                self.launch(n, kern, vec![a(1), Arg::Buf(am), Arg::Buf(self.buf(n))])?;
            }
            Op::Dropout { rate } => {
                let kern = Kernel::Dropout {
                    total,
                    rate: *rate,
                    stream: rng::dropout_stream(&node.name, node.device),
                };
                self.launch(
                    n,
                    kern,
                    vec![a(0), Arg::Buf(self.buf(n)), Arg::seed(self.bufs.scalars)],
                )?;
            }
            Op::DropoutGrad { rate, .. } => {
                let kern = Kernel::Dropout {
                    total,
                    rate: *rate,
                    stream: self.mask_stream(n)?,
                };
                self.launch(
                    n,
                    kern,
                    vec![a(0), Arg::Buf(self.buf(n)), Arg::seed(self.bufs.scalars)],
                )?;
            }
            Op::Concat => {
                self.check_inputs(n, ins.len())?;
                let (_, h, w) = chw(g, n);
                let parts = ins.iter().map(|i| chw(g, *i).0).collect();
                let mut args: Vec<Arg> = (0..ins.len()).map(a).collect();
                args.push(Arg::Buf(self.buf(n)));
                self.launch(
                    n,
                    Kernel::Concat {
                        n: b,
                        p: h * w,
                        parts,
                    },
                    args,
                )?;
            }
            Op::Slice { start, len } => {
                let (c, h, w) = chw(g, ins[0]);
                let kern = Kernel::Slice {
                    n: b,
                    p: h * w,
                    c,
                    start: *start as usize,
                    len: *len as usize,
                };
                self.launch(n, kern, vec![a(0), Arg::Buf(self.buf(n))])?;
            }
            Op::BatchNorm { eps, .. } => {
                let (c, h, w) = chw(g, ins[0]);
                let (p, eps) = (h * w, *eps);
                // Evaluation normalises with the running statistics;
                // training with the batch's, kept for the backward pass.
                let (mean, var) = if self.forward {
                    (a(3), a(4))
                } else {
                    let mean = self.side(n, n, Side::BnMean)?;
                    let var = self.side(n, n, Side::BnVar)?;
                    let args = vec![a(0), Arg::Buf(mean), Arg::Buf(var)];
                    self.launch(n, Kernel::BnStats { n: b, c, p }, args)?;
                    (Arg::Buf(mean), Arg::Buf(var))
                };
                let kern = Kernel::BnNormalise { n: b, c, p, eps };
                let args = vec![a(0), a(1), a(2), mean, var, Arg::Buf(self.buf(n))];
                self.launch(n, kern, args)?;
            }
            Op::BatchNormGradInput { eps } => {
                let f = self.forward_of(n)?;
                let (c, h, w) = chw(g, ins[0]);
                let (mean, var) = (
                    self.side(n, f, Side::BnMean)?,
                    self.side(n, f, Side::BnVar)?,
                );
                let kern = Kernel::BnGradInput {
                    n: b,
                    c,
                    p: h * w,
                    eps: *eps,
                };
                let args = vec![
                    a(0),
                    a(1),
                    Arg::Buf(mean),
                    Arg::Buf(var),
                    a(2),
                    Arg::Buf(self.buf(n)),
                ];
                self.launch(n, kern, args)?;
            }
            Op::BatchNormGradGamma { eps } => {
                let f = self.forward_of(n)?;
                let (c, h, w) = chw(g, ins[0]);
                let (mean, var) = (
                    self.side(n, f, Side::BnMean)?,
                    self.side(n, f, Side::BnVar)?,
                );
                let kern = Kernel::BnGradGamma {
                    n: b,
                    c,
                    p: h * w,
                    eps: *eps,
                };
                let args = vec![
                    a(0),
                    Arg::Buf(mean),
                    Arg::Buf(var),
                    a(1),
                    Arg::Buf(self.buf(n)),
                ];
                self.launch(n, kern, args)?;
            }
            Op::BatchNormGradBeta => {
                // `Σ dy` per channel: the bias gradient's kernel.
                let (c, h, w) = chw(g, ins[0]);
                let kern = Kernel::BiasGrad {
                    n: b,
                    f: c,
                    p: h * w,
                    acc: false,
                };
                self.launch(n, kern, vec![a(0), Arg::Buf(self.buf(n))])?;
            }
            Op::RunningUpdate { momentum } => {
                let f = self.forward_of(n)?;
                let (c, h, w) = chw(g, ins[2]);
                let (mean, var) = (
                    self.side(n, f, Side::BnMean)?,
                    self.side(n, f, Side::BnVar)?,
                );
                let kern = Kernel::RunningUpdate {
                    c,
                    momentum: *momentum,
                    m: b * h * w,
                };
                let args = vec![a(0), a(1), Arg::Buf(mean), Arg::Buf(var)];
                self.launch(n, kern, args)?;
            }
            Op::Add | Op::Sum => {
                self.check_inputs(n, ins.len())?;
                let mut args: Vec<Arg> = (0..ins.len()).map(a).collect();
                args.push(Arg::Buf(self.buf(n)));
                let kern = Kernel::Add {
                    total,
                    inputs: ins.len(),
                };
                self.launch(n, kern, args)?;
            }
            Op::SoftmaxXent => {
                let classes = g.node(ins[0]).ty.numel() as usize;
                let probs = self.side(n, n, Side::SoftmaxProbs)?;
                let kern = Kernel::SoftmaxXentFwd { n: b, classes };
                let args = vec![a(0), a(1), Arg::Buf(probs), Arg::Buf(self.buf(n))];
                self.launch(n, kern, args)?;
            }
            Op::SoftmaxXentGrad { smoothing } => {
                let classes = g.node(ins[0]).ty.numel() as usize;
                let loss = g
                    .node_ids()
                    .find(|m| g.node(*m).op == Op::SoftmaxXent)
                    .ok_or(CodegenError::Missing("softmax_xent"))?;
                let probs = self.side(n, loss, Side::SoftmaxProbs)?;
                let kern = Kernel::SoftmaxXentBwd {
                    n: b,
                    classes,
                    smoothing: *smoothing,
                };
                self.launch(n, kern, vec![Arg::Buf(probs), a(1), Arg::Buf(self.buf(n))])?;
            }
            Op::ConvGradInput { .. }
            | Op::ConvGradWeight { .. }
            | Op::ConvGradBias
            | Op::DenseGradInput { .. }
            | Op::DenseGradWeight
            | Op::DenseGradBias
            | Op::ConvReluGradInput { .. }
            | Op::ConvReluGradWeight { .. }
            | Op::ConvReluGradBias { .. }
            | Op::DenseReluGradInput { .. }
            | Op::DenseReluGradWeight { .. }
            | Op::DenseReluGradBias { .. } => {
                let f = self.forward_of(n)?;
                if done.insert(f) {
                    self.layer_grads(f)?;
                }
            }
            Op::SgdUpdate {
                momentum,
                weight_decay,
                nesterov,
                lr_mult,
                decay_mult,
            } => {
                let kern = Kernel::Sgd {
                    total: buffers::elems(&g.node(ins[0]).ty, b),
                    momentum: *momentum,
                    weight_decay: *weight_decay,
                    nesterov: *nesterov,
                    lr_mult: *lr_mult,
                    decay_mult: *decay_mult,
                };
                self.launch(n, kern, vec![a(0), a(1), a(2), Arg::lr(self.bufs.scalars)])?;
            }
        }
        Ok(())
    }

    /// The padded pooling of input `x` (for a gradient: its output).
    fn pool(&self, x: NodeId, size: u64, stride: u64, pad: u64) -> Pool {
        let (c, h, w) = chw(self.g, x);
        Pool {
            planes: self.batch * c,
            h,
            w,
            size: size as usize,
            stride: stride as usize,
            pad: pad as usize,
        }
    }

    /// The shape of an `lrn_maxpool` (or its gradient) of input `x`:
    /// `[size, pool, stride]` and `[alpha, beta, k]`.
    fn lrn_pool(
        &self,
        x: NodeId,
        [size, pool, stride]: [u64; 3],
        [alpha, beta, k]: [f64; 3],
    ) -> LrnPool {
        let (c, h, w) = chw(self.g, x);
        LrnPool {
            n: self.batch,
            c,
            h,
            w,
            size: size as usize,
            alpha,
            beta,
            k,
            pool: pool as usize,
            stride: stride as usize,
        }
    }

    /// One kernel (a block per channel plane) when a plane fits shared
    /// memory, else the LRN kernel then the pooling kernel; either way the
    /// LRN output, scale and argmax are kept for the backward pass.
    fn lrn_maxpool(&mut self, n: NodeId, s: LrnPool) -> Result<(), CodegenError> {
        let x = self.buf(self.g.inputs(n)[0]);
        let (lrn, scale, am) = (
            self.side(n, n, Side::LrnOut)?,
            self.side(n, n, Side::LrnScale)?,
            self.side(n, n, Side::PoolArgmax)?,
        );
        let planes = s.n * s.c;
        if s.fits_shared() && planes <= i32::MAX as usize {
            let args = [x, lrn, scale, self.buf(n), am].map(Arg::Buf).to_vec();
            return self.launch(n, Kernel::LrnMaxPoolFwd(s), args);
        }
        let kern = Kernel::LrnFwd {
            n: s.n,
            c: s.c,
            p: s.h * s.w,
            size: s.size,
            alpha: s.alpha,
            beta: s.beta,
            k: s.k,
        };
        self.launch(n, kern, [x, lrn, scale].map(Arg::Buf).to_vec())?;
        let kern = Kernel::MaxPoolFwd {
            planes,
            h: s.h,
            w: s.w,
            size: s.pool,
            stride: s.stride,
        };
        self.launch(n, kern, [lrn, self.buf(n), am].map(Arg::Buf).to_vec())
    }

    /// The side buffer `sd` of forward node `f`, read by `user`.
    fn side(&self, user: NodeId, f: NodeId, sd: Side) -> Result<usize, CodegenError> {
        self.bufs
            .side
            .get(&(f, sd))
            .copied()
            .ok_or_else(|| CodegenError::NoSide {
                name: node_key(self.g, user),
                of: node_key(self.g, f),
            })
    }

    fn check_inputs(&self, n: NodeId, count: usize) -> Result<(), CodegenError> {
        if count > 8 {
            return Err(CodegenError::TooManyInputs {
                name: node_key(self.g, n),
                count,
            });
        }
        Ok(())
    }

    /// The forward node a backward node records.
    fn forward_of(&self, n: NodeId) -> Result<NodeId, CodegenError> {
        let node = self.g.node(n);
        node.forward
            .filter(|f| self.g.get(*f).is_some())
            .ok_or_else(|| CodegenError::Orphan {
                name: node.name.clone(),
            })
    }

    /// The random stream of the dropout mask `n` applies.
    fn mask_stream(&self, n: NodeId) -> Result<u64, CodegenError> {
        let node = self.g.node(n);
        let key = self.g.mask_key(n).ok_or_else(|| CodegenError::NoMask {
            name: node.name.clone(),
        })?;
        Ok(rng::dropout_stream(key, node.device))
    }
}

/// How a program is generated.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Options {
    /// Where the planned buffers go.
    pub layout: Layout,
    /// Bytes each of `scratch.col` and `scratch.tmp` may take for one
    /// convolution: its batch runs in chunks of images that fit
    /// (`crate::backend::cuda::generate::chunk`; a single image is never split).
    pub conv_workspace: u64,
    /// The graph is a forward program (`crate::backend::cuda::generate::forward`: evaluation), so
    /// it has no update; otherwise a graph without one is refused.
    pub forward: bool,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            forward: false,
            layout: Layout::Planned,
            conv_workspace: crate::backend::cuda::generate::chunk::DEFAULT_CONV_WORKSPACE,
        }
    }
}

/// Generates the CUDA program of one training step of `graph` at `batch`,
/// laid out by its memory plan, with the default workspace budget.
pub fn generate(graph: &Graph, batch: usize) -> Result<CudaProgram, CodegenError> {
    generate_opts(graph, batch, Options::default())
}

/// [`generate`] with the buffers laid out as `layout` says.
pub fn generate_with(
    graph: &Graph,
    batch: usize,
    layout: Layout,
) -> Result<CudaProgram, CodegenError> {
    let opts = Options {
        layout,
        ..Options::default()
    };
    generate_opts(graph, batch, opts)
}

/// [`generate`] as `opts` says.
pub fn generate_opts(
    graph: &Graph,
    batch: usize,
    opts: Options,
) -> Result<CudaProgram, CodegenError> {
    if batch == 0 {
        return Err(CodegenError::EmptyBatch);
    }
    // What is missing is said before the plan is attempted.
    graph.training_io().map_err(CodegenError::Missing)?;
    if !opts.forward {
        graph
            .find_op(|op| matches!(op, Op::SgdUpdate { .. }))
            .ok_or(CodegenError::Missing("sgd_update"))?;
    }
    let plan = memplan::plan(graph, batch as u64).map_err(|e| match e {
        memplan::MemplanError::Cycle => CodegenError::Cycle,
        e => CodegenError::Plan(e),
    })?;
    generate_planned(graph, &plan, opts)
}

/// [`generate_opts`] from the memory plan of `graph` a caller has already
/// computed (at the plan's batch), so that a backend running beside
/// another lays memory out from the same analysis instead of recomputing it.
pub fn generate_planned(
    graph: &Graph,
    plan: &Plan,
    opts: Options,
) -> Result<CudaProgram, CodegenError> {
    let batch = plan.batch as usize;
    if batch == 0 {
        return Err(CodegenError::EmptyBatch);
    }
    if plan.graph_name != graph.name || plan.order.iter().any(|&n| !graph.g.contains_node(n)) {
        return Err(CodegenError::Unplanned {
            name: graph.name.clone(),
            why: "the memory plan was made for another graph".into(),
        });
    }
    let (image, labels, loss, logits) = graph.training_io().map_err(CodegenError::Missing)?;
    if !opts.forward {
        graph
            .find_op(|op| matches!(op, Op::SgdUpdate { .. }))
            .ok_or(CodegenError::Missing("sgd_update"))?;
    }
    let bufs = buffers::assign(graph, plan, batch, opts.layout, opts.conv_workspace)?;
    let mut gen_ = Gen {
        g: graph,
        batch,
        bufs,
        src: Source::default(),
        steps: Vec::new(),
        pos: 0,
        forward: opts.forward,
    };
    let mut done = HashSet::new();
    for (pos, &n) in plan.order.iter().enumerate() {
        gen_.pos = pos;
        gen_.node(n, &mut done)?;
    }
    let mut source = format!(
        "// CUDA C for one training step of network `{}` at batch {batch}, generated by netc.\n\
         // Buffers and launches: see launch.txt. Kernels are extern \"C\" with sizes baked in.\n\n",
        graph.name
    );
    source.push_str(PRELUDE);
    source.push_str(&gen_.src.text);
    let io = |n: NodeId| {
        gen_.bufs
            .node
            .get(&n)
            .copied()
            .ok_or_else(|| CodegenError::Unplanned {
                name: node_key(graph, n),
                why: "the plan has no buffer for it".into(),
            })
    };
    let (loss, logits, image, labels) = (io(loss)?, io(logits)?, io(image)?, io(labels)?);
    let scalars = gen_.bufs.scalars;
    let prog = CudaProgram {
        scalars,
        network: graph.name.clone(),
        batch,
        source,
        kernels: gen_.src.kernels,
        loss,
        logits,
        image,
        labels,
        buffers: gen_.bufs.decls,
        regions: gen_.bufs.regions,
        no_reuse: plan.no_reuse(),
        order: plan
            .order
            .iter()
            .map(|&n| buffers::node_ref(graph, n))
            .collect(),
        steps: gen_.steps,
    };
    crate::backend::cuda::proof::alias::check(&prog)?;
    Ok(prog)
}
