//! Buffer assignment: one buffer per value-producing node, one per side
//! value a forward op keeps for its backward, and two scratch buffers
//! shared by every GEMM-based layer. All of it lives in [`assign`], so a
//! memory planner can replace it without touching code generation.
//!
//! Handles the unfused training step and the fused one alike: a fused
//! `conv_relu` or `dense_relu[_dropout]` sizes the scratch buffers as the
//! layer it replaces, and an `lrn_maxpool` keeps three side buffers (the
//! LRN output and scale, input-sized, and the pooling's argmax).

use std::collections::HashMap;

use super::program::{BufKind, BufferDecl, DType};
use crate::ir::{Graph, InputKind, NodeId, Op, ParamRole, Ty};

/// Which side value of a forward node.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Side {
    /// LRN: `k + alpha·Σa²` per element.
    Scale,
    /// Max pooling: plane index of each window's maximum.
    Argmax,
    /// Softmax cross-entropy: the softmax.
    Probs,
    /// `lrn_maxpool`: the LRN output (the pooling's input).
    Lrn,
}

#[derive(Clone, Debug, Default)]
pub struct Buffers {
    pub decls: Vec<BufferDecl>,
    pub node: HashMap<NodeId, usize>,
    pub side: HashMap<(NodeId, Side), usize>,
    /// im2col matrices (and their gradients): `C·K·K × N·OH·OW`, the largest.
    pub col: Option<usize>,
    /// GEMM outputs before the epilogue, and transposed output gradients.
    pub tmp: Option<usize>,
}

/// Elements of a node's value at `batch`.
pub fn elems(ty: &Ty, batch: usize) -> usize {
    match ty {
        Ty::Act { dims } => dims.iter().product::<u64>() as usize * batch,
        Ty::Param { dims } => dims.iter().product::<u64>() as usize,
        Ty::Labels { .. } => batch,
        Ty::Scalar => 1,
        Ty::Effect => 0,
    }
}

/// `name@device`: how buffers, kernels' comments and the manifest name a node.
pub fn node_key(g: &Graph, n: NodeId) -> String {
    let node = g.node(n);
    format!("{}@{}", node.name, node.device)
}

/// Assigns buffers to the nodes of `g` (in `order`) at `batch`.
pub fn assign(g: &Graph, order: &[NodeId], batch: usize) -> Buffers {
    let mut b = Buffers::default();
    let push = |decls: &mut Vec<BufferDecl>, name: String, dtype, elems, kind| {
        decls.push(BufferDecl {
            name,
            dtype,
            elems,
            kind,
        });
        decls.len() - 1
    };
    let (mut col, mut tmp) = (0usize, 0usize);
    for &n in order {
        let node = g.node(n);
        let key = node_key(g, n);
        let size = elems(&node.ty, batch);
        let (dtype, kind) = match &node.op {
            Op::Input {
                kind: InputKind::Tensor,
            } => (DType::F32, BufKind::Image),
            Op::Input {
                kind: InputKind::Labels,
            } => (DType::U32, BufKind::Labels),
            Op::Param {
                role: ParamRole::Velocity,
                ..
            } => (DType::F32, BufKind::Velocity),
            Op::Param { .. } => (DType::F32, BufKind::Param),
            Op::SgdUpdate { .. } => continue,
            _ => (DType::F32, BufKind::Value),
        };
        let id = push(&mut b.decls, key.clone(), dtype, size, kind);
        b.node.insert(n, id);
        let ins = g.inputs(n);
        match &node.op {
            Op::Lrn { .. } => {
                let id = push(
                    &mut b.decls,
                    format!("{key}.scale"),
                    DType::F32,
                    size,
                    BufKind::Side,
                );
                b.side.insert((n, Side::Scale), id);
            }
            Op::LrnMaxPool { .. } => {
                let inp = elems(&g.node(ins[0]).ty, batch);
                for (side, suffix, dtype, len) in [
                    (Side::Lrn, "lrn", DType::F32, inp),
                    (Side::Scale, "scale", DType::F32, inp),
                    (Side::Argmax, "argmax", DType::U32, size),
                ] {
                    let id = push(
                        &mut b.decls,
                        format!("{key}.{suffix}"),
                        dtype,
                        len,
                        BufKind::Side,
                    );
                    b.side.insert((n, side), id);
                }
            }
            Op::MaxPool { .. } => {
                let id = push(
                    &mut b.decls,
                    format!("{key}.argmax"),
                    DType::U32,
                    size,
                    BufKind::Side,
                );
                b.side.insert((n, Side::Argmax), id);
            }
            Op::SoftmaxXent => {
                let logits = elems(&g.node(ins[0]).ty, batch);
                let id = push(
                    &mut b.decls,
                    format!("{key}.probs"),
                    DType::F32,
                    logits,
                    BufKind::Side,
                );
                b.side.insert((n, Side::Probs), id);
            }
            Op::Conv { filters, size, .. } | Op::ConvRelu { filters, size, .. } => {
                let c = g.node(ins[0]).ty.dims().first().copied().unwrap_or(1) as usize;
                let p = node.ty.dims().iter().skip(1).product::<u64>() as usize;
                let kk = (*size * *size) as usize;
                col = col.max(c * kk * batch * p);
                tmp = tmp.max(*filters as usize * batch * p);
            }
            Op::Dense { units } | Op::DenseRelu { units } | Op::DenseReluDropout { units, .. } => {
                tmp = tmp.max(*units as usize * batch)
            }
            _ => {}
        }
    }
    if col > 0 {
        b.col = Some(push(
            &mut b.decls,
            "scratch.col".into(),
            DType::F32,
            col,
            BufKind::Scratch,
        ));
    }
    if tmp > 0 {
        b.tmp = Some(push(
            &mut b.decls,
            "scratch.tmp".into(),
            DType::F32,
            tmp,
            BufKind::Scratch,
        ));
    }
    b
}
