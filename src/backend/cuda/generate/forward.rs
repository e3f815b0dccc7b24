//! The evaluation program: the forward part of a training step, dropout
//! off, generated as its own [`CudaProgram`] so that evaluation runs on
//! the device.
//!
//! The graph is `passes::forward::forward_graph`'s: every kept node keeps
//! its id and name, so a parameter of the evaluation program is found by
//! the same `name@device` as in the training program.
//!
//! Assumes a training graph that `ir::verify` accepts. Guarantees:
//! [`generate`] plans and generates it at any batch like a
//! training step.

use crate::backend::cuda::generate::CodegenError;
use crate::backend::cuda::generate::codegen::{Options, generate_opts};
use crate::backend::cuda::program::CudaProgram;
use crate::ir::Graph;
use crate::passes::forward::forward_graph;

/// The evaluation program of `training` at `batch`, memory planned.
pub fn generate(training: &Graph, batch: usize) -> Result<CudaProgram, CodegenError> {
    let g = forward_graph(training).map_err(|e| CodegenError::Forward(e.to_string()))?;
    let opts = Options {
        forward: true,
        ..Options::default()
    };
    generate_opts(&g, batch, opts)
}
