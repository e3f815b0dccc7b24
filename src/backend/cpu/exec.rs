//! The CPU executor: runs a training graph (forward, backward, update, as
//! built by `passes::autodiff`) or its forward part, one node at a time in
//! the IR's deterministic order, calling the reference kernels.
//!
//! Assumes a verified graph whose backward nodes follow autodiff's naming
//! (`F.dx`, `F.dw`, `F.db` for the gradients of forward node `F`). The
//! gradients of one convolution or dense layer are computed together by
//! one kernel call when the first of them is reached. Forward LRN, max
//! pooling and the loss keep what their backward needs (scale, argmax,
//! softmax) in per-node side buffers. Buffers are allocated once, on the
//! first step, and reused. Results are deterministic for a given seed
//! whatever the thread count (the kernels guarantee it).
//!
//! Generic over the scalar: `CpuExec<f32>` (the default) trains,
//! `CpuExec<f64>` checks gradients; parameters are drawn in f64 and
//! rounded, so an f32 run starts from the same values either way. The
//! fused ops of `passes::fuse` run here too: `conv_relu`/`dense_relu` pass
//! `Act::Relu` to the kernels, their gradients fold the ReLU mask into the
//! layer's backward call; `dense_relu_dropout` applies ReLU and the dropout
//! mask in one pass after the GEMM, and its backward masks `dy` by `y > 0`;
//! `lrn_maxpool` (and its gradient) runs the two kernels image by image;
//! `grad_chain` is one elementwise pass.

use std::collections::HashMap;

use super::kernels::{self as k, Act, Float, Nchw};
use crate::ir::{Device, Graph, Init, NodeId, Op, ParamRole, Ty, order};
use crate::rng;

#[derive(Clone, Debug, PartialEq, thiserror::Error)]
pub enum ExecError {
    #[error("the graph has a cycle")]
    Cycle,
    #[error("the graph has no `{0}` input")]
    MissingInput(&'static str),
    #[error("a batch of {got} values does not fit input `{name}` ({want} per example)")]
    BadBatch {
        name: String,
        got: usize,
        want: usize,
    },
    #[error("label {label} is out of range for {classes} classes")]
    BadLabel { label: u32, classes: u64 },
    #[error("`{0}` has no forward node")]
    Orphan(String),
}

/// What one step reports.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct StepStats {
    pub loss: f64,
    pub top1: usize,
    pub top5: usize,
    pub n: usize,
}

pub struct CpuExec<T: Float = f32> {
    graph: Graph,
    order: Vec<NodeId>,
    forward: Vec<bool>,
    vals: Vec<Vec<T>>,
    aux: Vec<Vec<T>>,
    /// The LRN output inside an `lrn_maxpool` (its backward needs it).
    saved: Vec<Vec<T>>,
    /// The masked output gradient of a `dense_relu_dropout`.
    masked: Vec<T>,
    argmax: Vec<Vec<u32>>,
    labels: Vec<u32>,
    batch: usize,
    image: NodeId,
    label: NodeId,
    loss: NodeId,
    logits: NodeId,
    /// Backward node -> the forward node it differentiates.
    fwd_of: HashMap<NodeId, NodeId>,
    scratch: Vec<T>,
    /// Which gradient groups were computed in the current step.
    done: Vec<bool>,
    pub seed: u64,
}

fn numel(g: &Graph, n: NodeId, batch: usize) -> usize {
    match &g.node(n).ty {
        Ty::Act { dims } => dims.iter().product::<u64>() as usize * batch,
        Ty::Param { dims } => dims.iter().product::<u64>() as usize,
        Ty::Labels { .. } => batch,
        Ty::Scalar => 1,
        Ty::Effect => 0,
    }
}

/// The kernel's parameters of an LRN op.
fn lrn_params(size: u64, alpha: f64, beta: f64, k: f64) -> k::lrn::LrnParams {
    k::lrn::LrnParams {
        size: size as usize,
        alpha,
        beta,
        k,
    }
}

/// The kernel's shape of a convolution of `x` (`[filters, size, stride, pad]`).
fn conv_shape(g: &Graph, x: NodeId, n: usize, [f, k, stride, pad]: [u64; 4]) -> k::conv::ConvShape {
    let (c, h, w) = chw(g, x);
    k::conv::ConvShape {
        n,
        c,
        h,
        w,
        f: f as usize,
        k: k as usize,
        stride: stride as usize,
        pad: pad as usize,
    }
}

fn chw(g: &Graph, n: NodeId) -> (usize, usize, usize) {
    match g.node(n).ty.dims() {
        [c, h, w] => (*c as usize, *h as usize, *w as usize),
        d => (d.iter().product::<u64>() as usize, 1, 1),
    }
}

/// Fills a parameter per its initialisation rule; draws depend only on
/// (seed, parameter name, tower, element index).
pub fn init_param<T: Float>(
    init: &Init,
    name: &str,
    device: Device,
    dims: &[u64],
    seed: u64,
    out: &mut [T],
) {
    let stream = rng::stream_of(&format!("init/{name}@{device}"));
    let fan_in: u64 = dims.iter().skip(1).product::<u64>().max(1);
    let fan_out: u64 = dims.first().copied().unwrap_or(1) * dims.iter().skip(2).product::<u64>();
    match init {
        Init::Constant { value } => out.fill(T::from_f64(*value)),
        Init::Normal { mean, std } => {
            for (i, o) in out.iter_mut().enumerate() {
                *o = T::from_f64(mean + std * rng::normal(seed, stream, i as u64));
            }
        }
        Init::He => {
            let std = (2.0 / fan_in as f64).sqrt();
            for (i, o) in out.iter_mut().enumerate() {
                *o = T::from_f64(std * rng::normal(seed, stream, i as u64));
            }
        }
        Init::Uniform { low, high } => {
            for (i, o) in out.iter_mut().enumerate() {
                *o = T::from_f64(low + (high - low) * rng::uniform(seed, stream, i as u64));
            }
        }
        Init::Xavier => {
            let a = (6.0 / (fan_in + fan_out) as f64).sqrt();
            for (i, o) in out.iter_mut().enumerate() {
                *o = T::from_f64(a * (2.0 * rng::uniform(seed, stream, i as u64) - 1.0));
            }
        }
    }
}

impl<T: Float> CpuExec<T> {
    /// Prepares a graph (forward only, or a whole training step) and
    /// initialises its parameters from `seed`.
    pub fn new(graph: Graph, seed: u64) -> Result<Self, ExecError> {
        let order = order::topo(&graph).map_err(|_| ExecError::Cycle)?;
        let cap = graph
            .g
            .node_indices()
            .map(|n| n.index() + 1)
            .max()
            .unwrap_or(0);
        let (image, label, loss, logits) = graph.training_io().map_err(ExecError::MissingInput)?;
        let mut forward = vec![false; cap];
        let mut fwd_of = HashMap::new();
        for n in graph.node_ids() {
            let node = graph.node(n);
            let is_fwd = matches!(
                node.op,
                Op::Input { .. }
                    | Op::Param { .. }
                    | Op::Conv { .. }
                    | Op::Relu
                    | Op::Lrn { .. }
                    | Op::MaxPool { .. }
                    | Op::Dense { .. }
                    | Op::Dropout { .. }
                    | Op::Concat
                    | Op::SoftmaxXent
                    | Op::ConvRelu { .. }
                    | Op::DenseRelu { .. }
                    | Op::DenseReluDropout { .. }
                    | Op::LrnMaxPool { .. }
            );
            forward[n.index()] = is_fwd;
            if matches!(
                node.op,
                Op::ConvGradInput { .. }
                    | Op::ConvGradWeight { .. }
                    | Op::ConvGradBias
                    | Op::DenseGradInput { .. }
                    | Op::DenseGradWeight
                    | Op::DenseGradBias
                    | Op::LrnGrad { .. }
                    | Op::MaxPoolGrad { .. }
                    | Op::ConvReluGradInput { .. }
                    | Op::ConvReluGradWeight { .. }
                    | Op::ConvReluGradBias
                    | Op::DenseReluGradInput { .. }
                    | Op::DenseReluGradWeight { .. }
                    | Op::DenseReluGradBias { .. }
            ) {
                let base = node
                    .name
                    .rsplit_once('.')
                    .map_or(node.name.as_str(), |(b, _)| b);
                let f = graph
                    .find(base, node.device)
                    .ok_or_else(|| ExecError::Orphan(node.name.clone()))?;
                fwd_of.insert(n, f);
            }
        }
        let mut vals = vec![Vec::new(); cap];
        for n in graph.node_ids() {
            let node = graph.node(n);
            if let Op::Param { init, role } = &node.op {
                let mut v = vec![T::ZERO; numel(&graph, n, 1)];
                if *role != ParamRole::Velocity {
                    init_param(init, &node.name, node.device, node.ty.dims(), seed, &mut v);
                }
                vals[n.index()] = v;
            }
        }
        Ok(CpuExec {
            order,
            forward,
            aux: vec![Vec::new(); cap],
            saved: vec![Vec::new(); cap],
            masked: Vec::new(),
            argmax: vec![Vec::new(); cap],
            labels: Vec::new(),
            batch: 0,
            image,
            label,
            loss,
            logits,
            fwd_of,
            scratch: Vec::new(),
            done: vec![false; cap],
            seed,
            vals,
            graph,
        })
    }

    pub fn graph(&self) -> &Graph {
        &self.graph
    }

    /// Parameters and optimiser state: (name@device, node) pairs in a stable order.
    pub fn state(&self) -> Vec<(String, NodeId)> {
        let mut v: Vec<(String, NodeId)> = self
            .graph
            .node_ids()
            .filter(|n| self.graph.node(*n).op.is_param())
            .map(|n| {
                (
                    format!("{}@{}", self.graph.node(n).name, self.graph.node(n).device),
                    n,
                )
            })
            .collect();
        v.sort();
        v
    }

    pub fn value(&self, n: NodeId) -> &[T] {
        &self.vals[n.index()]
    }

    pub fn value_mut(&mut self, n: NodeId) -> &mut Vec<T> {
        &mut self.vals[n.index()]
    }

    /// The per-example size of the image input.
    pub fn image_len(&self) -> usize {
        numel(&self.graph, self.image, 1)
    }

    fn load(&mut self, images: &[T], labels: &[u32]) -> Result<(), ExecError> {
        let per = self.image_len();
        let n = labels.len();
        if images.len() != n * per {
            return Err(ExecError::BadBatch {
                name: self.graph.node(self.image).name.clone(),
                got: images.len(),
                want: per,
            });
        }
        let classes = match self.graph.node(self.label).ty {
            Ty::Labels { classes } => classes,
            _ => 0,
        };
        if let Some(&bad) = labels.iter().find(|&&l| l as u64 >= classes) {
            return Err(ExecError::BadLabel {
                label: bad,
                classes,
            });
        }
        if n != self.batch {
            self.batch = n;
            for &id in &self.order {
                if !self.graph.node(id).op.is_param() {
                    self.vals[id.index()] = vec![T::ZERO; numel(&self.graph, id, n)];
                }
            }
        }
        self.vals[self.image.index()].copy_from_slice(images);
        self.labels.clear();
        self.labels.extend_from_slice(labels);
        Ok(())
    }

    /// One training step: forward, backward and the update with learning
    /// rate `lr`. `step` numbers the step (it keys the dropout masks).
    pub fn train_step(
        &mut self,
        images: &[T],
        labels: &[u32],
        lr: f64,
        step: u64,
    ) -> Result<StepStats, ExecError> {
        self.load(images, labels)?;
        self.done.iter_mut().for_each(|d| *d = false);
        let order = std::mem::take(&mut self.order);
        for &n in &order {
            self.run(n, true, lr, step);
        }
        self.order = order;
        Ok(self.stats())
    }

    /// The forward pass only, dropout off (evaluation). Returns the stats
    /// and leaves the logits readable through [`CpuExec::logits`].
    pub fn eval_batch(&mut self, images: &[T], labels: &[u32]) -> Result<StepStats, ExecError> {
        self.load(images, labels)?;
        let order = std::mem::take(&mut self.order);
        for &n in &order {
            if self.forward[n.index()] {
                self.run(n, false, 0.0, 0);
            }
        }
        self.order = order;
        Ok(self.stats())
    }

    pub fn logits(&self) -> &[T] {
        &self.vals[self.logits.index()]
    }

    fn stats(&self) -> StepStats {
        let n = self.batch;
        let classes = self.graph.node(self.logits).ty.numel() as usize;
        let (top1, top5) = k::softmax_xent::top1_top5(n, classes, self.logits(), &self.labels);
        StepStats {
            loss: self.vals[self.loss.index()][0].to_f64(),
            top1,
            top5,
            n,
        }
    }

    /// The first node, in execution order, whose value is not finite.
    pub fn first_non_finite(&self) -> Option<&str> {
        self.order
            .iter()
            .find(|n| self.vals[n.index()].iter().any(|v| !v.is_finite()))
            .map(|n| self.graph.node(*n).name.as_str())
    }

    fn run(&mut self, n: NodeId, training: bool, lr: f64, step: u64) {
        let g = &self.graph;
        let node = g.node(n);
        let ins = g.inputs(n);
        let b = self.batch;
        let mut out = std::mem::take(&mut self.vals[n.index()]);
        let v = &self.vals;
        let x = |i: usize| -> &[T] { &v[ins[i].index()] };
        match &node.op {
            Op::Input { .. } | Op::Param { .. } => {}
            Op::Conv {
                filters,
                size,
                stride,
                pad,
            }
            | Op::ConvRelu {
                filters,
                size,
                stride,
                pad,
            } => {
                let s = conv_shape(g, ins[0], b, [*filters, *size, *stride, *pad]);
                let act = if matches!(node.op, Op::ConvRelu { .. }) {
                    Act::Relu
                } else {
                    Act::None
                };
                k::conv::conv2d_forward(
                    &s,
                    x(0),
                    x(1),
                    Some(x(2)),
                    act,
                    &mut out,
                    &mut self.scratch,
                );
            }
            Op::DenseRelu { units } => {
                let s = k::dense::DenseShape {
                    n: b,
                    inp: g.node(ins[0]).ty.numel() as usize,
                    out: *units as usize,
                };
                k::dense::dense_forward(&s, x(0), x(1), Some(x(2)), Act::Relu, &mut out);
            }
            Op::DenseReluDropout { units, rate, of } => {
                let s = k::dense::DenseShape {
                    n: b,
                    inp: g.node(ins[0]).ty.numel() as usize,
                    out: *units as usize,
                };
                k::dense::dense_forward(&s, x(0), x(1), Some(x(2)), Act::None, &mut out);
                let p = k::dropout::DropoutParams {
                    seed: self.seed ^ rng::mix64(step),
                    stream: rng::dropout_stream(of, node.device),
                    rate: *rate,
                    training,
                };
                relu_dropout_inplace(&p, &mut out);
            }
            Op::LrnMaxPool {
                size,
                alpha,
                beta,
                k: kk,
                pool,
                stride,
            } => {
                let (c, h, w) = chw(g, ins[0]);
                let p = lrn_params(*size, *alpha, *beta, *kk);
                let s = k::pool::PoolShape {
                    n: 1,
                    c,
                    h,
                    w,
                    size: *pool as usize,
                    stride: *stride as usize,
                };
                let (aux, saved, am) = (
                    &mut self.aux[n.index()],
                    &mut self.saved[n.index()],
                    &mut self.argmax[n.index()],
                );
                let len = b * c * h * w;
                aux.resize(len, T::ZERO);
                saved.resize(len, T::ZERO);
                am.resize(out.len(), 0);
                lrn_maxpool_forward(&p, &s, x(0), saved, aux, &mut out, am);
            }
            Op::LrnMaxPoolGrad {
                size,
                alpha,
                beta,
                k: kk,
                pool,
                stride,
            } => {
                let (c, h, w) = chw(g, ins[0]);
                let p = lrn_params(*size, *alpha, *beta, *kk);
                let s = k::pool::PoolShape {
                    n: 1,
                    c,
                    h,
                    w,
                    size: *pool as usize,
                    stride: *stride as usize,
                };
                let f = ins[1].index();
                lrn_maxpool_backward(
                    &p,
                    &s,
                    x(0),
                    &self.saved[f],
                    &self.aux[f],
                    &self.argmax[f],
                    x(2),
                    &mut out,
                );
            }
            Op::GradChain {
                parts,
                dropout,
                relu,
            } => {
                let parts: Vec<&[T]> = (0..*parts as usize).map(x).collect();
                let y = relu.then(|| x(ins.len() - 1));
                let mask = dropout
                    .as_ref()
                    .map(|(rate, of)| k::dropout::DropoutParams {
                        seed: self.seed ^ rng::mix64(step),
                        stream: rng::dropout_stream(of, node.device),
                        rate: *rate,
                        training,
                    });
                grad_chain(&parts, mask.as_ref(), y, &mut out);
            }
            Op::Relu => k::relu::relu_forward(x(0), &mut out),
            Op::Lrn {
                size,
                alpha,
                beta,
                k: kk,
            } => {
                let (c, h, w) = chw(g, ins[0]);
                let p = lrn_params(*size, *alpha, *beta, *kk);
                let aux = &mut self.aux[n.index()];
                aux.resize(out.len(), T::ZERO);
                k::lrn::lrn_forward(&p, &Nchw::new(b, c, h, w), x(0), &mut out, aux);
            }
            Op::MaxPool { size, stride } => {
                let (c, h, w) = chw(g, ins[0]);
                let s = k::pool::PoolShape {
                    n: b,
                    c,
                    h,
                    w,
                    size: *size as usize,
                    stride: *stride as usize,
                };
                let am = &mut self.argmax[n.index()];
                am.resize(out.len(), 0);
                k::pool::maxpool_forward(&s, x(0), &mut out, am);
            }
            Op::Dense { units } => {
                let s = k::dense::DenseShape {
                    n: b,
                    inp: g.node(ins[0]).ty.numel() as usize,
                    out: *units as usize,
                };
                k::dense::dense_forward(&s, x(0), x(1), Some(x(2)), Act::None, &mut out);
            }
            Op::Dropout { rate } => {
                let p = k::dropout::DropoutParams {
                    seed: self.seed ^ rng::mix64(step),
                    stream: rng::dropout_stream(&node.name, node.device),
                    rate: *rate,
                    training,
                };
                k::dropout::dropout_forward(&p, x(0), &mut out);
            }
            Op::Concat => {
                let hw = {
                    let (_, h, w) = chw(g, n);
                    h * w
                };
                let parts: Vec<(&[T], usize)> = ins
                    .iter()
                    .map(|i| (&v[i.index()][..], chw(g, *i).0))
                    .collect();
                k::concat::concat_channels(b, hw, &parts, &mut out);
            }
            Op::SoftmaxXent => {
                let classes = g.node(ins[0]).ty.numel() as usize;
                let aux = &mut self.aux[n.index()];
                aux.resize(b * classes, T::ZERO);
                let loss =
                    k::softmax_xent::softmax_xent_forward(b, classes, x(0), &self.labels, aux);
                out.resize(1, T::ZERO);
                out[0] = T::from_f64(loss);
            }
            Op::SoftmaxXentGrad => {
                let classes = g.node(ins[0]).ty.numel() as usize;
                k::softmax_xent::softmax_xent_backward(
                    b,
                    classes,
                    &self.aux[self.loss.index()],
                    &self.labels,
                    &mut out,
                );
            }
            Op::ConvGradInput { .. }
            | Op::ConvGradWeight { .. }
            | Op::ConvGradBias
            | Op::DenseGradInput { .. }
            | Op::DenseGradWeight
            | Op::DenseGradBias
            | Op::ConvReluGradInput { .. }
            | Op::ConvReluGradWeight { .. }
            | Op::ConvReluGradBias
            | Op::DenseReluGradInput { .. }
            | Op::DenseReluGradWeight { .. }
            | Op::DenseReluGradBias { .. } => {
                // One kernel call computes all of a layer's gradients.
                self.vals[n.index()] = out;
                self.layer_grads(n);
                return;
            }
            Op::ReluGrad => k::relu::relu_backward(x(0), x(1), &mut out),
            Op::LrnGrad {
                size,
                alpha,
                beta,
                k: kk,
            } => {
                let (c, h, w) = chw(g, ins[0]);
                let p = lrn_params(*size, *alpha, *beta, *kk);
                let f = self.fwd_of[&n];
                k::lrn::lrn_backward(
                    &p,
                    &Nchw::new(b, c, h, w),
                    x(0),
                    x(1),
                    &self.aux[f.index()],
                    x(2),
                    &mut out,
                    &mut self.scratch,
                );
            }
            Op::MaxPoolGrad { size, stride } => {
                let (c, h, w) = chw(g, ins[0]);
                let s = k::pool::PoolShape {
                    n: b,
                    c,
                    h,
                    w,
                    size: *size as usize,
                    stride: *stride as usize,
                };
                let f = self.fwd_of[&n];
                k::pool::maxpool_backward(&s, x(1), &self.argmax[f.index()], &mut out);
            }
            Op::DropoutGrad { rate, of } => {
                let p = k::dropout::DropoutParams {
                    seed: self.seed ^ rng::mix64(step),
                    stream: rng::dropout_stream(of, node.device),
                    rate: *rate,
                    training,
                };
                k::dropout::dropout_backward(&p, x(0), &mut out);
            }
            Op::Slice { start, len } => {
                let (c, h, w) = chw(g, ins[0]);
                let plane = h * w;
                let (start, len) = (*start as usize, *len as usize);
                let src = x(0);
                for i in 0..b {
                    let from = &src[(i * c + start) * plane..(i * c + start + len) * plane];
                    out[i * len * plane..(i + 1) * len * plane].copy_from_slice(from);
                }
            }
            Op::Add => {
                out.copy_from_slice(x(0));
                for i in 1..ins.len() {
                    for (o, a) in out.iter_mut().zip(x(i)) {
                        *o += *a;
                    }
                }
            }
            Op::SgdUpdate {
                momentum,
                weight_decay,
            } => {
                let p = k::sgd::SgdParams {
                    lr,
                    momentum: *momentum,
                    weight_decay: *weight_decay,
                };
                let (wi, vi, gi) = (ins[0].index(), ins[1].index(), ins[2].index());
                let mut w = std::mem::take(&mut self.vals[wi]);
                let mut vel = std::mem::take(&mut self.vals[vi]);
                k::sgd::sgd_update(&p, &mut w, &mut vel, &self.vals[gi]);
                self.vals[wi] = w;
                self.vals[vi] = vel;
            }
        }
        self.vals[n.index()] = out;
    }

    /// Computes all gradients of one conv or dense layer in one kernel call.
    fn layer_grads(&mut self, n: NodeId) {
        let f = self.fwd_of[&n];
        if self.done[f.index()] {
            return;
        }
        self.done[f.index()] = true;
        let g = &self.graph;
        let fnode = g.node(f);
        let dev = fnode.device;
        let get = |suffix: &str| g.find(&format!("{}.{suffix}", fnode.name), dev);
        let (dx_n, dw_n, db_n) = (get("dx"), get("dw"), get("db"));
        let fins = g.inputs(f);
        let Some(dw_n) = dw_n else { return };
        let dy_n = g.inputs(dw_n)[1];
        let b = self.batch;
        let mut dx = dx_n.map(|d| std::mem::take(&mut self.vals[d.index()]));
        let mut dw = std::mem::take(&mut self.vals[dw_n.index()]);
        let mut db = db_n.map(|d| std::mem::take(&mut self.vals[d.index()]));
        let v = &self.vals;
        let (x, w, y, mut dy) = (
            &v[fins[0].index()][..],
            &v[fins[1].index()][..],
            &v[f.index()][..],
            &v[dy_n.index()][..],
        );
        let act = match &fnode.op {
            Op::ConvRelu { .. } | Op::DenseRelu { .. } => Act::Relu,
            Op::DenseReluDropout { rate, .. } => {
                // [y > 0] is the ReLU's mask and the dropout's together.
                let scale = T::from_f64(1.0 / (1.0 - rate));
                self.masked.resize(dy.len(), T::ZERO);
                for ((m, yv), gv) in self.masked.iter_mut().zip(y).zip(dy) {
                    *m = if *yv > T::ZERO { *gv * scale } else { T::ZERO };
                }
                dy = &self.masked;
                Act::None
            }
            _ => Act::None,
        };
        match &fnode.op {
            Op::Conv {
                filters,
                size,
                stride,
                pad,
            }
            | Op::ConvRelu {
                filters,
                size,
                stride,
                pad,
            } => {
                let s = conv_shape(g, fins[0], b, [*filters, *size, *stride, *pad]);
                k::conv::conv2d_backward(
                    &s,
                    act,
                    x,
                    w,
                    if act == Act::Relu { y } else { dy },
                    dy,
                    dx.as_deref_mut(),
                    &mut dw,
                    db.as_deref_mut(),
                    &mut self.scratch,
                );
            }
            Op::Dense { units } | Op::DenseRelu { units } | Op::DenseReluDropout { units, .. } => {
                let s = k::dense::DenseShape {
                    n: b,
                    inp: g.node(fins[0]).ty.numel() as usize,
                    out: *units as usize,
                };
                k::dense::dense_backward(
                    &s,
                    act,
                    x,
                    w,
                    if act == Act::Relu { y } else { dy },
                    dy,
                    dx.as_deref_mut(),
                    &mut dw,
                    db.as_deref_mut(),
                    &mut self.scratch,
                );
            }
            _ => {}
        }
        if let (Some(d), Some(buf)) = (dx_n, dx) {
            self.vals[d.index()] = buf;
        }
        self.vals[dw_n.index()] = dw;
        if let (Some(d), Some(buf)) = (db_n, db) {
            self.vals[d.index()] = buf;
        }
    }
}

/// Elements per parallel task of the fused elementwise passes.
const BLOCK: usize = 1 << 13;

/// `y = dropout(relu(y))` in one pass (the mask keyed by flat index, as in
/// `kernels::dropout`; the identity dropout when not training).
fn relu_dropout_inplace<T: Float>(p: &k::dropout::DropoutParams, y: &mut [T]) {
    use rayon::prelude::*;
    if !p.training || p.rate == 0.0 {
        k::relu::relu_forward_inplace(y);
        return;
    }
    let scale = T::from_f64(1.0 / (1.0 - p.rate));
    y.par_chunks_mut(BLOCK).enumerate().for_each(|(bi, blk)| {
        let base = (bi * BLOCK) as u64;
        for (j, v) in blk.iter_mut().enumerate() {
            let r = if *v > T::ZERO { *v } else { T::ZERO };
            *v = if k::dropout::keep(p.seed, p.stream, p.rate, base + j as u64) {
                r * scale
            } else {
                T::ZERO
            };
        }
    });
}

/// `out = (Σ parts) · dropout mask · [y > 0]`, one pass; the sum is taken
/// in part order, as `add` does.
fn grad_chain<T: Float>(
    parts: &[&[T]],
    mask: Option<&k::dropout::DropoutParams>,
    y: Option<&[T]>,
    out: &mut [T],
) {
    use rayon::prelude::*;
    let mask = mask.filter(|p| p.training && p.rate > 0.0);
    let scale = mask.map_or(T::ONE, |p| T::from_f64(1.0 / (1.0 - p.rate)));
    out.par_chunks_mut(BLOCK).enumerate().for_each(|(bi, blk)| {
        let base = bi * BLOCK;
        for (j, o) in blk.iter_mut().enumerate() {
            let i = base + j;
            let mut s = parts[0][i];
            for p in &parts[1..] {
                s += p[i];
            }
            if let Some(p) = mask {
                s = if k::dropout::keep(p.seed, p.stream, p.rate, i as u64) {
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
fn lrn_maxpool_forward<T: Float>(
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
    let shape = Nchw::new(1, s.c, s.h, s.w);
    y.par_chunks_mut(outp)
        .zip(argmax.par_chunks_mut(outp))
        .zip(lrn.par_chunks_mut(inp))
        .zip(scale.par_chunks_mut(inp))
        .zip(x.par_chunks(inp))
        .for_each(|((((yi, ai), li), si), xi)| {
            k::lrn::lrn_forward(p, &shape, xi, li, si);
            k::pool::maxpool_forward(s, li, yi, ai);
        });
}

/// The gradient of [`lrn_maxpool_forward`], image by image: the pooled
/// gradient is routed to the window maxima, then through the LRN.
#[allow(clippy::too_many_arguments)]
fn lrn_maxpool_backward<T: Float>(
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
    let shape = Nchw::new(1, s.c, s.h, s.w);
    dx.par_chunks_mut(inp)
        .zip(x.par_chunks(inp))
        .zip(lrn.par_chunks(inp))
        .zip(scale.par_chunks(inp))
        .zip(argmax.par_chunks(outp))
        .zip(dy.par_chunks(outp))
        .for_each_init(
            || (vec![T::ZERO; inp], Vec::new()),
            |(dpool, scratch), (((((dxi, xi), li), si), ai), dyi)| {
                k::pool::maxpool_backward(s, dyi, ai, dpool);
                k::lrn::lrn_backward(p, &shape, xi, li, si, dpool, dxi, scratch);
            },
        );
}
