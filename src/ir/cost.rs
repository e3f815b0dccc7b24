//! Per-node costs for the architecture table: learned parameters (a
//! batchnorm's running statistics are not counted),
//! multiply-accumulates per example (forward), activation elements per
//! example. MACs count only the weight products of convolution and dense
//! layers, as the paper's totals do. Assumes a verified graph.

use super::{Graph, NodeId, Op, Ty};

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Cost {
    pub params: u64,
    pub macs: u64,
    pub activations: u64,
}

impl std::ops::AddAssign for Cost {
    fn add_assign(&mut self, o: Cost) {
        self.params += o.params;
        self.macs += o.macs;
        self.activations += o.activations;
    }
}

pub fn node_cost(g: &Graph, n: NodeId) -> Cost {
    let node = g.node(n);
    let mut c = Cost::default();
    match &node.op {
        // Running statistics are state, not learned parameters.
        Op::Param { role, .. } if role.is_running() => {}
        Op::Param { .. } => c.params = node.ty.numel(),
        Op::Conv { .. }
        | Op::Dense { .. }
        | Op::ConvRelu { .. }
        | Op::DenseRelu { .. }
        | Op::DenseReluDropout { .. } => {
            let inputs = g.inputs(n);
            // Each output element takes one product per weight of a filter.
            let per_out = match inputs.get(1).map(|&w| &g.node(w).ty) {
                Some(Ty::Param { dims }) => dims.iter().skip(1).product::<u64>(),
                _ => 0,
            };
            c.macs = node.ty.numel() * per_out;
        }
        _ => {}
    }
    if let Ty::Act { .. } = node.ty {
        c.activations = node.ty.numel();
    }
    c
}

/// Sum over all nodes.
pub fn total(g: &Graph) -> Cost {
    let mut c = Cost::default();
    for n in g.node_ids() {
        c += node_cost(g, n);
    }
    c
}
