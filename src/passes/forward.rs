//! The forward part of a training step, dropout off: what a backend
//! evaluates a trained network with.
//!
//! [`forward_graph`] keeps a training graph's forward nodes (inputs,
//! parameters, the layers, fused or not, and the loss) and drops the
//! gradients and updates. The graph is a `StableGraph`, so every kept
//! node keeps its [`NodeId`](crate::ir::NodeId) and name: a parameter of
//! the forward graph is found by the same id and name as in the training
//! graph. Dropout becomes the identity (rate 0), as evaluation makes it.
//!
//! Assumes a training graph that `ir::verify` accepts. Guarantees: the
//! result verifies (an error names what does not) and holds no gradient
//! or update.
//!
//! Cost: one look at each node and edge: O(V + E).

use crate::ir::{Graph, Op};

#[derive(Debug, thiserror::Error)]
#[error("the forward program does not verify: {0}")]
pub struct ForwardError(pub String);

/// The forward part of `training`, dropout off.
pub fn forward_graph(training: &Graph) -> Result<Graph, ForwardError> {
    let mut g = training.clone();
    let drop: Vec<_> = g
        .node_ids()
        .filter(|&n| !g.node(n).op.is_forward())
        .collect();
    for n in drop {
        g.g.remove_node(n);
    }
    for n in g.node_ids().collect::<Vec<_>>() {
        match &mut g.g[n].op {
            Op::Dropout { rate } | Op::DenseReluDropout { rate, .. } => *rate = 0.0,
            _ => {}
        }
    }
    crate::ir::verify::verify(&g).map_err(|e| ForwardError(e.to_string()))?;
    Ok(g)
}
