//! The evaluation program: the forward part of a training step, dropout
//! off, generated as its own [`CudaProgram`] so that evaluation runs on
//! the device (`train::cuda`).
//!
//! [`forward_graph`] keeps a training graph's forward nodes (inputs,
//! parameters, the layers, fused or not, and the loss) and drops the
//! gradients and updates. The graph is a `StableGraph`, so every kept
//! node keeps its [`NodeId`](crate::ir::NodeId) and name: a parameter of
//! the evaluation program is found by the same `name@device` as in the
//! training program. Dropout becomes the identity (rate 0), as the CPU
//! executor's evaluation makes it.
//!
//! Assumes a training graph that `ir::verify` accepts. Guarantees: the
//! result verifies (an error names what does not), holds no gradient or
//! update, and [`generate`] plans and generates it at any batch like a
//! training step.

use super::codegen::{CodegenError, Options, generate_opts};
use super::program::CudaProgram;
use crate::ir::{Graph, Op};

/// The forward part of `training`, dropout off.
pub fn forward_graph(training: &Graph) -> Result<Graph, String> {
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
    crate::ir::verify::verify(&g)
        .map_err(|e| format!("the forward program does not verify: {e}"))?;
    Ok(g)
}

/// The evaluation program of `training` at `batch`, memory planned.
pub fn generate(training: &Graph, batch: usize) -> Result<CudaProgram, CodegenError> {
    let g = forward_graph(training).map_err(CodegenError::Forward)?;
    let opts = Options {
        forward: true,
        ..Options::default()
    };
    generate_opts(&g, batch, opts)
}
