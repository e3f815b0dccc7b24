//! Node ids, and the kinds of relation between nodes that ops record by
//! id: at the bottom of the IR, so that ops and the graph both import it.

use petgraph::stable_graph::NodeIndex;

pub type NodeId = NodeIndex<u32>;

/// Which gradient of a conv or dense layer an op computes (see
/// [`Op::grad_part`](super::Op::grad_part)).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum GradPart {
    /// ∂L/∂x (`F.dx`).
    Input,
    /// ∂L/∂weight (`F.dw`).
    Weight,
    /// ∂L/∂bias (`F.db`).
    Bias,
}
