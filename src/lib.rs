//! netc: a declarative graph compiler and runtime for convolutional networks.
//!
//! Data flows one way: `syntax` (source -> AST) -> `lower` (AST -> IR) ->
//! `passes` (IR -> IR) -> `backend` (run the IR). `train` drives a backend.

pub mod ablate;
pub mod backend;
pub mod diag;
pub mod frontend;
pub mod fsio;
pub mod ir;
pub mod lower;
pub mod npy;
pub mod onnx;
pub mod passes;
pub mod rng;
pub mod span;
pub mod syntax;
pub mod train;
