//! Autodiff: appends to a forward graph the backward pass and the
//! optimiser update, so that the graph is the whole training step.
//!
//! Assumes a verified forward graph with exactly one `softmax_xent` (the
//! loss). Guarantees: the result verifies; every parameter (weight, bias)
//! gets one `sgd_update` fed by the gradient of the loss, and one velocity
//! parameter initialised to 0, carrying the optimiser's settings and the
//! parameter's multipliers (`Sgd::param_multipliers_of` it, its layer and role); a value reached by several paths (a tower
//! output gathered by both towers) has its gradients summed by one `add`;
//! gradient nodes run on the tower of the forward node they differentiate,
//! so a backward cross-tower edge mirrors each forward one; every node
//! added but the velocities records that forward node's id
//! ([`Node::forward`]: the layer, ReLU, ... it differentiates, the value
//! whose gradients an `add` sums, the parameter an `sgd_update` updates),
//! and a `dropout_grad` names its dropout by id (`of`). Names (`F.dx`,
//! `F.dw`, `F.db`, `F.grad`, `F.update`) are for display. Forward nodes
//! are untouched; nothing needs a gradient for an input. A batchnorm gets
//! gradients for x, γ (`F.dw`) and β (`F.db`) and one `running_update`
//! (`F.running`, recording it) that folds its batch statistics into its
//! running mean and variance: those are state, never given a gradient, a
//! velocity or an `sgd_update`. Backward ops take
//! the forward values they need as inputs (no hidden saved state): max
//! pooling recomputes its window maxima, dropout regenerates its mask.
//!
//! Cost: one walk of the forward graph in reverse topological order, each
//! node's gradient built from its users' and summed once: O((V + E) log V)
//! for V nodes and E edges.

use std::collections::HashMap;

use crate::ir::{Device, Graph, Node, NodeId, Op, ParamRole, Ty, order, train::Sgd};

#[derive(Clone, Debug, PartialEq, thiserror::Error)]
pub enum AutodiffError {
    #[error("the network has no `softmax_xent` loss to train")]
    NoLoss,
    #[error("the network has {0} losses; training needs exactly one")]
    ManyLosses(usize),
    #[error("the graph has a cycle")]
    Cycle,
    #[error("internal error: autodiff built an ill-typed `{name}`: {source}")]
    IllTyped {
        name: String,
        source: crate::ir::infer::ShapeError,
    },
}

struct Builder<'g> {
    g: &'g mut Graph,
    /// Gradient contributions per forward value.
    contrib: HashMap<NodeId, Vec<NodeId>>,
}

impl Builder<'_> {
    fn add(
        &mut self,
        op: Op,
        from: NodeId,
        suffix: &str,
        device: Device,
        inputs: &[NodeId],
    ) -> Result<NodeId, AutodiffError> {
        let src = self.g.node(from);
        let (name, layer, span) = (
            format!("{}.{suffix}", src.name),
            src.layer.clone(),
            src.span,
        );
        let tys: Vec<&Ty> = inputs.iter().map(|i| &self.g.node(*i).ty).collect();
        let ty = crate::ir::infer::infer(&op, &tys).map_err(|source| AutodiffError::IllTyped {
            name: name.clone(),
            source,
        })?;
        let n = self.g.add(Node {
            op,
            name,
            layer,
            device,
            ty,
            span,
            forward: Some(from),
        });
        for (port, i) in inputs.iter().enumerate() {
            self.g.connect(*i, n, port as u32);
        }
        Ok(n)
    }

    fn give(&mut self, to: NodeId, grad: NodeId) {
        self.contrib.entry(to).or_default().push(grad);
    }

    /// The summed gradient of `n`, if anything depends on it.
    fn grad_of(&mut self, n: NodeId) -> Result<Option<NodeId>, AutodiffError> {
        let Some(parts) = self.contrib.remove(&n) else {
            return Ok(None);
        };
        if parts.len() == 1 {
            return Ok(Some(parts[0]));
        }
        let device = self.g.node(n).device;
        self.add(Op::Add, n, "grad", device, &parts).map(Some)
    }
}

fn needs_grad(g: &Graph, n: NodeId) -> bool {
    !matches!(g.node(n).op, Op::Input { .. })
}

/// Appends the backward pass and the updates to `g`.
pub fn autodiff(g: &mut Graph, sgd: &Sgd) -> Result<(), AutodiffError> {
    let fwd = order::topo(g).map_err(|_| AutodiffError::Cycle)?;
    let losses: Vec<NodeId> = fwd
        .iter()
        .copied()
        .filter(|n| g.node(*n).op == Op::SoftmaxXent)
        .collect();
    match losses.len() {
        0 => return Err(AutodiffError::NoLoss),
        1 => {}
        k => return Err(AutodiffError::ManyLosses(k)),
    }
    let mut b = Builder {
        g,
        contrib: HashMap::new(),
    };
    for &n in fwd.iter().rev() {
        let node = b.g.node(n).clone();
        let ins = b.g.inputs(n);
        let dev = node.device;
        if node.op == Op::SoftmaxXent {
            let op = Op::SoftmaxXentGrad {
                smoothing: sgd.label_smoothing,
            };
            let d = b.add(op, n, "dlogits", dev, &[ins[0], ins[1]])?;
            b.give(ins[0], d);
            continue;
        }
        let Some(dy) = b.grad_of(n)? else { continue };
        match &node.op {
            Op::Conv {
                size,
                stride,
                pad,
                dilation,
                groups,
                bias,
                ..
            } => {
                let (x, w) = (ins[0], ins[1]);
                if needs_grad(b.g, x) {
                    let d = b.g.node(x).ty.dims().to_vec();
                    let op = Op::ConvGradInput {
                        size: *size,
                        stride: *stride,
                        pad: *pad,
                        in_h: d[1],
                        in_w: d[2],
                        dilation: *dilation,
                        groups: *groups,
                    };
                    let dx = b.add(op, n, "dx", dev, &[dy, w])?;
                    b.give(x, dx);
                }
                let op = Op::ConvGradWeight {
                    size: *size,
                    stride: *stride,
                    pad: *pad,
                    dilation: *dilation,
                    groups: *groups,
                };
                let dw = b.add(op, n, "dw", dev, &[x, dy])?;
                b.give(w, dw);
                // A conv with `bias: false` has no bias to differentiate.
                if *bias {
                    let db = b.add(Op::ConvGradBias, n, "db", dev, &[dy])?;
                    b.give(ins[2], db);
                }
            }
            Op::BatchNorm { momentum, eps } => {
                let (x, gamma, beta) = (ins[0], ins[1], ins[2]);
                if needs_grad(b.g, x) {
                    let op = Op::BatchNormGradInput { eps: *eps };
                    let dx = b.add(op, n, "dx", dev, &[x, gamma, dy])?;
                    b.give(x, dx);
                }
                let dg = b.add(Op::BatchNormGradGamma { eps: *eps }, n, "dw", dev, &[x, dy])?;
                b.give(gamma, dg);
                let db = b.add(Op::BatchNormGradBeta, n, "db", dev, &[dy])?;
                b.give(beta, db);
                // The running statistics: state the step updates, no gradient.
                let op = Op::RunningUpdate {
                    momentum: *momentum,
                };
                b.add(op, n, "running", dev, &[ins[3], ins[4], n])?;
            }
            Op::Sum => {
                // Each summand's gradient is the sum's.
                for &i in &ins {
                    if needs_grad(b.g, i) {
                        b.give(i, dy);
                    }
                }
            }
            Op::Dense { .. } => {
                let (x, w, bias) = (ins[0], ins[1], ins[2]);
                if needs_grad(b.g, x) {
                    let in_dims = b.g.node(x).ty.dims().to_vec();
                    let dx = b.add(Op::DenseGradInput { in_dims }, n, "dx", dev, &[dy, w])?;
                    b.give(x, dx);
                }
                let dw = b.add(Op::DenseGradWeight, n, "dw", dev, &[x, dy])?;
                b.give(w, dw);
                let db = b.add(Op::DenseGradBias, n, "db", dev, &[dy])?;
                b.give(bias, db);
            }
            Op::Relu
            | Op::Tanh
            | Op::Sigmoid
            | Op::LeakyRelu { .. }
            | Op::Flatten
            | Op::AvgPool { .. }
            | Op::GlobalAvgPool
            | Op::Lrn { .. }
            | Op::MaxPool { .. }
            | Op::Dropout { .. }
                if needs_grad(b.g, ins[0]) =>
            {
                let (op, inputs) = match &node.op {
                    Op::Relu => (Op::ReluGrad, vec![n, dy]),
                    Op::Tanh => (Op::TanhGrad, vec![n, dy]),
                    Op::Sigmoid => (Op::SigmoidGrad, vec![n, dy]),
                    Op::LeakyRelu { slope } => (Op::LeakyReluGrad { slope: *slope }, vec![n, dy]),
                    Op::Flatten => {
                        let in_dims = b.g.node(ins[0]).ty.dims().to_vec();
                        (Op::FlattenGrad { in_dims }, vec![dy])
                    }
                    Op::AvgPool { size, stride, pad } => {
                        let d = b.g.node(ins[0]).ty.dims().to_vec();
                        (
                            Op::AvgPoolGrad {
                                size: *size,
                                stride: *stride,
                                pad: *pad,
                                in_h: d[1],
                                in_w: d[2],
                            },
                            vec![dy],
                        )
                    }
                    Op::GlobalAvgPool => {
                        let d = b.g.node(ins[0]).ty.dims().to_vec();
                        (Op::GlobalAvgPoolGrad { h: d[1], w: d[2] }, vec![dy])
                    }
                    Op::Lrn {
                        size,
                        alpha,
                        beta,
                        k,
                    } => (
                        Op::LrnGrad {
                            size: *size,
                            alpha: *alpha,
                            beta: *beta,
                            k: *k,
                        },
                        vec![ins[0], n, dy],
                    ),
                    Op::MaxPool { size, stride, pad } => (
                        Op::MaxPoolGrad {
                            size: *size,
                            stride: *stride,
                            pad: *pad,
                        },
                        vec![ins[0], dy],
                    ),
                    Op::Dropout { rate } => (Op::DropoutGrad { rate: *rate, of: n }, vec![dy]),
                    _ => unreachable!("matched above"),
                };
                let dx = b.add(op, n, "dx", dev, &inputs)?;
                b.give(ins[0], dx);
            }
            Op::Concat => {
                let mut start = 0;
                for (k, &i) in ins.iter().enumerate() {
                    let len = b.g.node(i).ty.dims()[0];
                    if needs_grad(b.g, i) {
                        let dx =
                            b.add(Op::Slice { start, len }, n, &format!("d{k}"), dev, &[dy])?;
                        b.give(i, dx);
                    }
                    start += len;
                }
            }
            Op::Param { role, .. } if *role != ParamRole::Velocity && !role.is_running() => {
                let v = b.g.add(Node {
                    op: Op::Param {
                        role: ParamRole::Velocity,
                        init: crate::ir::Init::Constant { value: 0.0 },
                    },
                    name: format!("{}.velocity", node.name),
                    layer: node.layer.clone(),
                    device: dev,
                    ty: node.ty.clone(),
                    span: node.span,
                    forward: None,
                });
                let (lr_mult, decay_mult) =
                    sgd.param_multipliers_of(&node.name, &node.layer, *role);
                let op = Op::SgdUpdate {
                    momentum: sgd.momentum,
                    weight_decay: sgd.weight_decay,
                    nesterov: sgd.nesterov,
                    lr_mult,
                    decay_mult,
                };
                b.add(op, n, "update", dev, &[n, v, dy])?;
            }
            _ => {}
        }
    }
    Ok(())
}
