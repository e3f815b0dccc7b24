//! Models in and out of netc as ONNX: [`export`] writes the evaluation
//! graph with its weights, [`import`] reads a model whose operators netc
//! has as a `.net` file and its weights. The messages are [`proto`]'s.
//!
//! Sits beside `passes`: it reads the IR (and the train section's data
//! preparation) and writes syntax; it knows nothing of backends, training
//! or the CLI, which hand it weights and write its files.

pub mod export;
pub mod fold;
pub mod import;
pub mod proto;
