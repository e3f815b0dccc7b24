//! netc: a declarative graph compiler and runtime for convolutional networks.
//!
//! Data flows one way: `syntax` (source -> AST) -> `lower` (AST -> IR) ->
//! `passes` (IR -> IR) -> `backend` (run the IR). `train` drives a backend
//! on `data`; `model` is what a trained network is and does; `picture`
//! draws runs and weights.

pub mod ablate;
pub mod backend;
pub mod data;
pub mod diag;
pub mod dist;
pub mod frontend;
pub mod fsio;
pub mod ir;
pub mod lower;
pub mod model;
pub mod npy;
pub mod onnx;
pub mod passes;
pub mod picture;
pub mod rng;
pub mod span;
pub mod syntax;
pub mod train;
