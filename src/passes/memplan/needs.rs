//! What a training step needs from memory, for a given order: every
//! buffer (outputs and side buffers) with the lifetime its uses require,
//! its size, and which inputs an op may overwrite in place. Shared by the
//! planner and the checker, so both derive lifetimes the same way.
//!
//! Cost: one look at each node and edge of the order: O((V + E) log V).

use std::collections::{HashMap, HashSet};

use petgraph::Direction;
use petgraph::visit::EdgeRef;

use super::types::{ALIGN, BufKind, MemplanError, Side};
use crate::ir::{Device, Graph, NodeId, Op, ParamRole, Ty};

/// A buffer the step needs, derived from the graph and an order.
#[derive(Clone, Debug)]
pub(super) struct Need {
    pub(super) node: NodeId,
    pub(super) side: Option<Side>,
    pub(super) name: String,
    pub(super) device: Device,
    pub(super) kind: BufKind,
    pub(super) size: u64,
    pub(super) first: usize,
    pub(super) last: usize,
}

pub(super) fn overflow(g: &Graph, n: NodeId) -> MemplanError {
    MemplanError::Overflow {
        node: n,
        name: g.node(n).name.clone(),
    }
}

/// Bytes of `n`'s output at batch `batch`.
pub(super) fn out_bytes(g: &Graph, n: NodeId, batch: u64) -> Result<u64, MemplanError> {
    let node = g.node(n);
    let per = node
        .ty
        .dims()
        .iter()
        .try_fold(1u64, |a, &b| a.checked_mul(b));
    let v = match &node.ty {
        Ty::Act { .. } => per.and_then(|p| p.checked_mul(batch)),
        Ty::Param { .. } => per,
        Ty::Labels { .. } => Some(batch),
        Ty::Scalar => Some(1),
        Ty::Effect => Some(0),
    };
    v.and_then(|e| e.checked_mul(4))
        .filter(|b| b.checked_add(ALIGN).is_some())
        .ok_or_else(|| overflow(g, n))
}

/// Input ports an op may overwrite in place, in order of preference.
pub(super) fn in_place_ports(op: &Op) -> &'static [usize] {
    match op {
        Op::Relu
        | Op::Tanh
        | Op::Sigmoid
        | Op::LeakyRelu { .. }
        | Op::Flatten
        | Op::FlattenGrad { .. }
        | Op::Dropout { .. }
        | Op::Add
        | Op::DropoutGrad { .. }
        | Op::GradChain { .. } => &[0],
        Op::ReluGrad | Op::TanhGrad | Op::SigmoidGrad | Op::LeakyReluGrad { .. } => &[1, 0],
        _ => &[],
    }
}

/// Positions of every node in `order`; `Err` if it is not a permutation.
pub(super) fn positions(
    g: &Graph,
    order: &[NodeId],
) -> Result<HashMap<NodeId, usize>, MemplanError> {
    let count = g.node_ids().count();
    if order.len() != count {
        return Err(MemplanError::OrderLength {
            plan: order.len(),
            graph: count,
        });
    }
    let mut pos = HashMap::with_capacity(order.len());
    for (i, &n) in order.iter().enumerate() {
        if g.g.node_weight(n).is_none() || pos.insert(n, i).is_some() {
            return Err(MemplanError::OrderNode { node: n });
        }
    }
    Ok(pos)
}

/// Every buffer the step needs, with the lifetime its uses require, for
/// the order whose positions are `pos`.
pub(super) fn needs(
    g: &Graph,
    order: &[NodeId],
    pos: &HashMap<NodeId, usize>,
    batch: u64,
) -> Result<Vec<Need>, MemplanError> {
    let end = order.len().saturating_sub(1);
    let at = |n: NodeId| pos.get(&n).copied().unwrap_or(end);
    // Group starts of layer gradients, keyed by the forward node they
    // record (a gradient recording none is a group of its own).
    let mut group: HashMap<NodeId, usize> = HashMap::new();
    // Last position of the backward ops reading a side buffer, by the
    // forward node that keeps it (the one they record).
    let mut side_reader: HashMap<NodeId, usize> = HashMap::new();
    let mut probs_reader: HashMap<NodeId, usize> = HashMap::new();
    let mut results: HashSet<NodeId> = HashSet::new();
    for &n in order {
        let node = g.node(n);
        let p = at(n);
        if node.op.is_layer_grad() {
            let e = group.entry(node.forward.unwrap_or(n)).or_insert(p);
            *e = (*e).min(p);
        }
        if matches!(
            node.op,
            Op::LrnGrad { .. }
                | Op::MaxPoolGrad { .. }
                | Op::LrnMaxPoolGrad { .. }
                | Op::BatchNormGradInput { .. }
                | Op::BatchNormGradGamma { .. }
                | Op::RunningUpdate { .. }
        ) {
            let e = side_reader.entry(node.forward.unwrap_or(n)).or_insert(p);
            *e = (*e).max(p);
        }
        if matches!(node.op, Op::SoftmaxXentGrad { .. })
            && let Some(&logits) = g.inputs(n).first()
        {
            let e = probs_reader.entry(logits).or_insert(p);
            *e = (*e).max(p);
        }
        if node.op == Op::SoftmaxXent {
            results.extend(g.inputs(n).iter().take(2));
        }
    }
    let mut out = Vec::new();
    for &n in order {
        let node = g.node(n);
        if node.ty == Ty::Effect {
            continue;
        }
        let p = at(n);
        let size = out_bytes(g, n, batch)?;
        let (kind, persistent) = match &node.op {
            Op::Input { .. } => (BufKind::Input, false),
            Op::Param {
                role: ParamRole::Velocity,
                ..
            } => (BufKind::State, true),
            Op::Param { .. } => (BufKind::Parameter, true),
            op if op.is_backward() => (BufKind::Gradient, false),
            _ => (BufKind::Activation, false),
        };
        let readers: Vec<usize> =
            g.g.edges_directed(n, Direction::Outgoing)
                .map(|e| at(e.target()))
                .collect();
        let first = if persistent || kind == BufKind::Input {
            0
        } else if node.op.is_layer_grad() {
            group
                .get(&node.forward.unwrap_or(n))
                .copied()
                .unwrap_or(p)
                .min(p)
        } else {
            p
        };
        let last = if persistent || readers.is_empty() || results.contains(&n) {
            end
        } else {
            readers.iter().copied().max().unwrap_or(p).max(first)
        };
        out.push(Need {
            node: n,
            side: None,
            name: format!("{}@{}", node.name, node.device),
            device: node.device,
            kind,
            size,
            first,
            last,
        });
        let reader = side_reader.get(&n).copied();
        for &s in Side::of(&node.op) {
            let (size, reader) = match s {
                Side::SoftmaxProbs => {
                    let logits = g.inputs(n).first().copied();
                    let bytes = match logits {
                        Some(l) => out_bytes(g, l, batch)?,
                        None => 0,
                    };
                    (bytes, logits.and_then(|l| probs_reader.get(&l)).copied())
                }
                // `lrn_maxpool` keeps the LRN's output and scale: its input's size.
                Side::LrnOut | Side::LrnScale if matches!(node.op, Op::LrnMaxPool { .. }) => {
                    let x = g.inputs(n).first().copied();
                    let bytes = match x {
                        Some(x) => out_bytes(g, x, batch)?,
                        None => 0,
                    };
                    (bytes, reader)
                }
                // One f32 per channel, whatever the batch.
                Side::BnMean | Side::BnVar => {
                    let c = node.ty.dims().first().copied().unwrap_or(0);
                    (c.checked_mul(4).ok_or_else(|| overflow(g, n))?, reader)
                }
                _ => (size, reader),
            };
            out.push(Need {
                node: n,
                side: Some(s),
                name: format!("{}#{}@{}", node.name, s.suffix(), node.device),
                device: node.device,
                kind: BufKind::Side,
                size,
                first: p,
                last: reader.unwrap_or(p).max(p),
            });
        }
    }
    Ok(out)
}

/// Extra dependencies: an `sgd_update` waits for every other reader of its
/// weight and velocity, a `running_update` for every other reader of its
/// running statistics.
pub(super) fn hazards(g: &Graph, n: NodeId) -> Vec<NodeId> {
    if !matches!(
        g.node(n).op,
        Op::SgdUpdate { .. } | Op::RunningUpdate { .. }
    ) {
        return vec![];
    }
    let mut v: Vec<NodeId> = g
        .inputs(n)
        .iter()
        .take(2)
        .flat_map(|&s| g.users(s))
        .filter(|&u| u != n)
        .collect();
    v.sort_unstable();
    v.dedup();
    v
}
