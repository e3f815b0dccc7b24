//! The IR verifier: run after lowering and after every pass (always in
//! tests). Checks the invariants stated in `ir/mod.rs` and reports the
//! first violation with the offending node.
//!
//! Relations: every backward op and every `sgd_update` records a forward
//! node ([`Node::forward`](super::Node::forward)) and no other node does;
//! it is in the graph, on the same device, and of the kind the op
//! belongs to, with the same hyperparameters (a `conv_grad_input` records
//! a `conv` of its size, stride and pad; a `dense_relu_grad_*` a
//! `dense_relu`, or a `dense_relu_dropout` of its rate, fused gradients
//! and their layer applying the same activation; an `add` any
//! forward op; an `sgd_update` the weight or bias it updates, its first
//! input); a forward node has at most one gradient in each role (its
//! `F.dx`, each layer gradient part, its sum, each slice, its update), so
//! a backend or pass that looks a gradient up finds one. The dropout a
//! `dropout_grad` or `grad_chain` names (`of`) is a `dropout` of its rate
//! on its device. A batchnorm's running mean and variance (parameters of
//! role `running_mean`/`running_var`: state, not trained) feed only that
//! batchnorm (ports 3 and 4) and its one `running_update` (ports 0 and 1,
//! the batchnorm itself at port 2, recorded as its forward node).
//!
//! Cost: a search for a cycle, O(V + E), and one look at each node and edge,
//! with the node's shape inferred again: O(V + E) with hashing.

use std::collections::{HashMap, HashSet};

use petgraph::Direction;
use petgraph::visit::EdgeRef;

use super::{Device, GradPart, Graph, NodeId, Op, ParamRole, Ty, crosses, infer, order};

#[derive(Clone, Debug, PartialEq, thiserror::Error)]
pub enum VerifyError {
    #[error("the graph has a cycle through `{name}`")]
    Cycle { node: NodeId, name: String },
    #[error("`{name}` has inputs on ports {ports:?}, expected 0..{n}")]
    Ports {
        node: NodeId,
        name: String,
        ports: Vec<u32>,
        n: usize,
    },
    #[error("`{name}` has type {have} but its inputs give {want}")]
    Type {
        node: NodeId,
        name: String,
        have: String,
        want: String,
    },
    #[error("`{name}`: {source}")]
    Shape {
        node: NodeId,
        name: String,
        source: infer::ShapeError,
    },
    #[error("edge into `{name}` port {port} has the wrong cross-tower mark")]
    Cross {
        node: NodeId,
        name: String,
        port: u32,
    },
    #[error("two nodes are named `{name}` on {device}")]
    Duplicate {
        node: NodeId,
        name: String,
        device: String,
    },
    #[error("`{name}` (a `{op}`) records no forward node")]
    NoForward {
        node: NodeId,
        name: String,
        op: &'static str,
    },
    #[error(
        "running statistic `{name}` feeds `{user}` at port {port}; only its batchnorm and its `running_update` may use it"
    )]
    Running {
        node: NodeId,
        name: String,
        user: String,
        port: u32,
    },
    #[error("`{name}` is a `{op}`, which belongs to no forward node, but records one")]
    StrayForward {
        node: NodeId,
        name: String,
        op: &'static str,
    },
    #[error("`{name}` names node {target:?} as its {relation}, and the graph has no such node")]
    Dangling {
        node: NodeId,
        name: String,
        relation: Relation,
        target: NodeId,
    },
    #[error("`{name}` names `{target_name}`, a `{target_op}`, as its {relation}; it needs {want}")]
    WrongKind {
        node: NodeId,
        name: String,
        relation: Relation,
        target: NodeId,
        target_name: String,
        target_op: &'static str,
        want: &'static str,
    },
    #[error("`{name}` on {device} names `{target_name}` on {target_device} as its {relation}")]
    OtherDevice {
        node: NodeId,
        name: String,
        device: Device,
        relation: Relation,
        target: NodeId,
        target_name: String,
        target_device: Device,
    },
    #[error("`{name}` and `{other}` are both the {role} of `{forward_name}`")]
    TwoGradients {
        node: NodeId,
        name: String,
        other: String,
        role: Role,
        forward: NodeId,
        forward_name: String,
    },
}

/// Which recorded relation a [`VerifyError`] is about.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Relation {
    /// [`Node::forward`](super::Node::forward).
    Forward,
    /// The dropout whose mask the op applies ([`Op::mask_of`]).
    Mask,
}

impl std::fmt::Display for Relation {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Relation::Forward => "forward node",
            Relation::Mask => "dropout (`of`)",
        })
    }
}

/// What a backward node is to the forward node it records: at most one
/// node of each role per forward node.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Role {
    /// One gradient of a conv or dense layer.
    Part(GradPart),
    /// The gradient a ReLU, LRN, pooling, dropout or loss passes back (`F.dx`).
    Dx,
    /// The sum of the node's own gradients (an `add`, `F.grad`).
    Sum,
    /// The gradient of one input of a concat (a `slice` at this channel).
    Slice(u64),
    /// A parameter's update.
    Update,
    /// A batchnorm's `running_update` of its running statistics.
    Running,
}

impl std::fmt::Display for Role {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Role::Part(GradPart::Input) => write!(f, "input gradient"),
            Role::Part(GradPart::Weight) => write!(f, "weight gradient"),
            Role::Part(GradPart::Bias) => write!(f, "bias gradient"),
            Role::Dx => write!(f, "gradient"),
            Role::Sum => write!(f, "gradient sum"),
            Role::Slice(start) => write!(f, "gradient slice at channel {start}"),
            Role::Update => write!(f, "update"),
            Role::Running => write!(f, "running statistics update"),
        }
    }
}

/// The role of a node of op `op` that records a forward node, and whether
/// forward op `f` is one it can record (`Err`: what it needs). `None`: an
/// op that records no forward node (neither a backward op nor an update).
fn relation(op: &Op, f: &Op) -> Option<(Role, Result<(), &'static str>)> {
    let ok = |b: bool, want: &'static str| if b { Ok(()) } else { Err(want) };
    let conv = "a `conv` of the same size, stride, pad, dilation and groups";
    let conv_relu = "a fused conv of the same activation, size, stride, pad, dilation and groups";
    let geo = op.conv_geometry();
    // A fused gradient and its forward node apply the same activation.
    let same_act = op.fused_act() == f.fused_act();
    let conv_geo = |relu: bool| match f {
        Op::Conv { .. } if !relu => f.conv_geometry() == geo,
        Op::ConvRelu { .. } if relu => f.conv_geometry() == geo && same_act,
        _ => false,
    };
    let dense_relu = |dropout: f64| match f {
        Op::DenseRelu { .. } => dropout == 0.0 && same_act,
        Op::DenseReluDropout { rate, .. } => *rate == dropout && same_act,
        _ => false,
    };
    let want_dense_relu =
        "a fused dense of the same activation, or a `dense_relu_dropout` of its rate";
    let part = op.grad_part().map(Role::Part);
    Some(match op {
        Op::ConvGradInput { .. } | Op::ConvGradWeight { .. } => (part?, ok(conv_geo(false), conv)),
        Op::ConvReluGradInput { .. } | Op::ConvReluGradWeight { .. } => {
            (part?, ok(conv_geo(true), conv_relu))
        }
        Op::ConvGradBias => (
            part?,
            ok(
                matches!(f, Op::Conv { bias: true, .. }),
                "a `conv` with a bias",
            ),
        ),
        Op::ConvReluGradBias { .. } => (
            part?,
            ok(
                matches!(f, Op::ConvRelu { bias: true, .. }) && same_act,
                "a fused conv of the same activation with a bias",
            ),
        ),
        Op::DenseGradInput { .. } | Op::DenseGradWeight | Op::DenseGradBias => {
            (part?, ok(matches!(f, Op::Dense { .. }), "a `dense`"))
        }
        Op::DenseReluGradInput { dropout, .. }
        | Op::DenseReluGradWeight { dropout, .. }
        | Op::DenseReluGradBias { dropout, .. } => {
            (part?, ok(dense_relu(*dropout), want_dense_relu))
        }
        Op::SoftmaxXentGrad { .. } => (
            Role::Dx,
            ok(matches!(f, Op::SoftmaxXent), "a `softmax_xent`"),
        ),
        Op::ReluGrad => (Role::Dx, ok(matches!(f, Op::Relu), "a `relu`")),
        Op::LrnGrad {
            size,
            alpha,
            beta,
            k,
        } => (
            Role::Dx,
            ok(
                *f == Op::Lrn {
                    size: *size,
                    alpha: *alpha,
                    beta: *beta,
                    k: *k,
                },
                "an `lrn` of the same hyperparameters",
            ),
        ),
        Op::MaxPoolGrad { size, stride, pad } => (
            Role::Dx,
            ok(
                *f == Op::MaxPool {
                    size: *size,
                    stride: *stride,
                    pad: *pad,
                },
                "a `maxpool` of the same size, stride and pad",
            ),
        ),
        Op::TanhGrad => (Role::Dx, ok(matches!(f, Op::Tanh), "a `tanh`")),
        Op::SigmoidGrad => (Role::Dx, ok(matches!(f, Op::Sigmoid), "a `sigmoid`")),
        Op::LeakyReluGrad { slope } => (
            Role::Dx,
            ok(
                *f == Op::LeakyRelu { slope: *slope },
                "a `leaky_relu` of the same slope",
            ),
        ),
        Op::FlattenGrad { .. } => (Role::Dx, ok(matches!(f, Op::Flatten), "a `flatten`")),
        Op::AvgPoolGrad {
            size, stride, pad, ..
        } => (
            Role::Dx,
            ok(
                *f == Op::AvgPool {
                    size: *size,
                    stride: *stride,
                    pad: *pad,
                },
                "an `avgpool` of the same size, stride and pad",
            ),
        ),
        Op::GlobalAvgPoolGrad { .. } => (
            Role::Dx,
            ok(matches!(f, Op::GlobalAvgPool), "a `global_avgpool`"),
        ),
        Op::LrnMaxPoolGrad {
            size,
            alpha,
            beta,
            k,
            pool,
            stride,
        } => (
            Role::Dx,
            ok(
                *f == Op::LrnMaxPool {
                    size: *size,
                    alpha: *alpha,
                    beta: *beta,
                    k: *k,
                    pool: *pool,
                    stride: *stride,
                },
                "an `lrn_maxpool` of the same hyperparameters",
            ),
        ),
        Op::DropoutGrad { rate, .. } => (
            Role::Dx,
            ok(*f == Op::Dropout { rate: *rate }, "a `dropout` of its rate"),
        ),
        Op::GradChain { .. } => (
            Role::Dx,
            ok(
                matches!(f, Op::Relu | Op::Dropout { .. }),
                "a `relu` or a `dropout`",
            ),
        ),
        Op::BatchNormGradInput { eps } => (
            Role::Dx,
            ok(
                matches!(f, Op::BatchNorm { eps: e, .. } if e == eps),
                "a `batchnorm` of its eps",
            ),
        ),
        Op::BatchNormGradGamma { eps } => (
            Role::Part(GradPart::Weight),
            ok(
                matches!(f, Op::BatchNorm { eps: e, .. } if e == eps),
                "a `batchnorm` of its eps",
            ),
        ),
        Op::BatchNormGradBeta => (
            Role::Part(GradPart::Bias),
            ok(matches!(f, Op::BatchNorm { .. }), "a `batchnorm`"),
        ),
        Op::RunningUpdate { momentum } => (
            Role::Running,
            ok(
                matches!(f, Op::BatchNorm { momentum: m, .. } if m == momentum),
                "a `batchnorm` of its momentum (its third input)",
            ),
        ),
        Op::Slice { start, .. } => (
            Role::Slice(*start),
            ok(matches!(f, Op::Concat), "a `concat`"),
        ),
        Op::Add => (
            Role::Sum,
            ok(
                f.is_forward() && !matches!(f, Op::Input { .. }),
                "a forward op",
            ),
        ),
        Op::SgdUpdate { .. } => (
            Role::Update,
            ok(
                matches!(
                    f,
                    Op::Param {
                        role: ParamRole::Weight | ParamRole::Bias,
                        ..
                    }
                ),
                "a weight or bias (its first input)",
            ),
        ),
        _ => return None,
    })
}

/// The recorded relations of `n`: forward node and dropout mask.
fn relations(
    g: &Graph,
    n: NodeId,
    roles: &mut HashMap<(NodeId, Role), NodeId>,
) -> Result<(), VerifyError> {
    let node = g.node(n);
    let (name, op) = (node.name.clone(), node.op.mnemonic());
    let target = |relation: Relation, t: NodeId| {
        let tn = g.get(t).ok_or_else(|| VerifyError::Dangling {
            node: n,
            name: name.clone(),
            relation,
            target: t,
        })?;
        if tn.device != node.device {
            return Err(VerifyError::OtherDevice {
                node: n,
                name: name.clone(),
                device: node.device,
                relation,
                target: t,
                target_name: tn.name.clone(),
                target_device: tn.device,
            });
        }
        Ok(tn)
    };
    let wrong = |relation: Relation, t: NodeId, want: &'static str| VerifyError::WrongKind {
        node: n,
        name: name.clone(),
        relation,
        target: t,
        target_name: g.node(t).name.clone(),
        target_op: g.node(t).op.mnemonic(),
        want,
    };
    let records =
        node.op.is_backward() || matches!(node.op, Op::SgdUpdate { .. } | Op::RunningUpdate { .. });
    match (node.forward, records) {
        (None, false) => {}
        (None, true) => {
            return Err(VerifyError::NoForward { node: n, name, op });
        }
        (Some(_), false) => {
            return Err(VerifyError::StrayForward { node: n, name, op });
        }
        (Some(f), true) => {
            let fnode = target(Relation::Forward, f)?;
            let Some((role, fits)) = relation(&node.op, &fnode.op) else {
                return Err(VerifyError::StrayForward { node: n, name, op });
            };
            fits.map_err(|want| wrong(Relation::Forward, f, want))?;
            let first = g.inputs(n).first().copied();
            if role == Role::Update && first != Some(f) {
                return Err(wrong(
                    Relation::Forward,
                    f,
                    "the weight or bias it updates (its first input)",
                ));
            }
            if role == Role::Running && g.inputs(n).get(2) != Some(&f) {
                return Err(wrong(
                    Relation::Forward,
                    f,
                    "the batchnorm whose statistics it folds (its third input)",
                ));
            }
            if let Some(other) = roles.insert((f, role), n) {
                return Err(VerifyError::TwoGradients {
                    node: n,
                    name,
                    other: g.node(other).name.clone(),
                    role,
                    forward: f,
                    forward_name: fnode.name.clone(),
                });
            }
        }
    }
    if let Some(m) = node.op.mask_of() {
        let rate = match &node.op {
            Op::DropoutGrad { rate, .. } => Some(*rate),
            Op::GradChain { dropout, .. } => dropout.map(|(r, _)| r),
            _ => None,
        };
        let mnode = target(Relation::Mask, m)?;
        if !matches!(mnode.op, Op::Dropout { rate: r } if Some(r) == rate) {
            return Err(wrong(Relation::Mask, m, "a `dropout` of its rate"));
        }
    }
    Ok(())
}

/// A running statistic is read only by its batchnorm (the mean at port 3,
/// the variance at port 4) and written only by that batchnorm's
/// `running_update` (at port 0 or 1): no gradient, velocity or
/// `sgd_update` ever touches it.
fn running_users(g: &Graph, n: NodeId) -> Result<(), VerifyError> {
    let node = g.node(n);
    let Op::Param { role, .. } = node.op else {
        return Ok(());
    };
    let (bn_port, up_port) = match role {
        ParamRole::RunningMean => (3, 0),
        ParamRole::RunningVar => (4, 1),
        _ => return Ok(()),
    };
    for e in g.g.edges_directed(n, Direction::Outgoing) {
        let user = g.node(e.target());
        let fits = match user.op {
            Op::BatchNorm { .. } => e.weight().port == bn_port,
            Op::RunningUpdate { .. } => e.weight().port == up_port,
            _ => false,
        };
        if !fits {
            return Err(VerifyError::Running {
                node: n,
                name: node.name.clone(),
                user: user.name.clone(),
                port: e.weight().port,
            });
        }
    }
    Ok(())
}

pub fn verify(g: &Graph) -> Result<(), VerifyError> {
    if let Some(n) = order::find_cycle(g) {
        return Err(VerifyError::Cycle {
            node: n,
            name: g.node(n).name.clone(),
        });
    }
    let mut seen = HashSet::new();
    let mut roles = HashMap::new();
    for n in g.node_ids() {
        relations(g, n, &mut roles)?;
        let node = g.node(n);
        if !seen.insert((node.name.as_str(), node.device)) {
            return Err(VerifyError::Duplicate {
                node: n,
                name: node.name.clone(),
                device: node.device.to_string(),
            });
        }
        let mut ports: Vec<u32> = Vec::new();
        for e in g.g.edges_directed(n, Direction::Incoming) {
            ports.push(e.weight().port);
            if e.weight().cross != crosses(g.node(e.source()).device, node.device) {
                return Err(VerifyError::Cross {
                    node: n,
                    name: node.name.clone(),
                    port: e.weight().port,
                });
            }
        }
        ports.sort_unstable();
        if ports.iter().enumerate().any(|(i, p)| *p as usize != i) {
            return Err(VerifyError::Ports {
                node: n,
                name: node.name.clone(),
                n: ports.len(),
                ports,
            });
        }
        if matches!(node.op, Op::Input { .. } | Op::Param { .. }) {
            if !ports.is_empty() {
                return Err(VerifyError::Ports {
                    node: n,
                    name: node.name.clone(),
                    n: 0,
                    ports,
                });
            }
            let ok = matches!(
                (&node.op, &node.ty),
                (Op::Param { .. }, Ty::Param { .. })
                    | (
                        Op::Input {
                            kind: super::InputKind::Tensor
                        },
                        Ty::Act { .. }
                    )
                    | (
                        Op::Input {
                            kind: super::InputKind::Labels
                        },
                        Ty::Labels { .. }
                    )
            );
            if !ok {
                return Err(VerifyError::Type {
                    node: n,
                    name: node.name.clone(),
                    have: node.ty.to_string(),
                    want: format!("a {} type", node.op.mnemonic()),
                });
            }
            running_users(g, n)?;
            continue;
        }
        let ins = g.inputs(n);
        let tys: Vec<&Ty> = ins.iter().map(|i| &g.node(*i).ty).collect();
        let want = infer::infer(&node.op, &tys).map_err(|source| VerifyError::Shape {
            node: n,
            name: node.name.clone(),
            source,
        })?;
        if want != node.ty {
            return Err(VerifyError::Type {
                node: n,
                name: node.name.clone(),
                have: node.ty.to_string(),
                want: want.to_string(),
            });
        }
    }
    Ok(())
}
