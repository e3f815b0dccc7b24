//! Generation: pure functions from a training graph and its memory plan
//! to a [`CudaProgram`](super::program::CudaProgram) (CUDA C source and
//! an ordered launch list), with no device, driver or toolkit involved.
//!
//! [`codegen`] walks the graph in the plan's order; [`buffers`] lays every
//! buffer out at its offset in the plan; [`kernels`] (with
//! [`fused_kernels`]) is the table from op to kernel, over the C-style
//! renderer [`render`]; `layers` are the GEMM-based layers (convolutions
//! in [`chunk`]s of images); [`forward`] generates the evaluation program;
//! [`augment`] the data augmentation kernel; [`manifest`] renders a
//! program's launch list as text.
//!
//! May import: `ir`, `passes`, `rng`, and `backend::cuda::{program, proof}`.

pub mod augment;
pub mod buffers;
pub mod chunk;
pub mod codegen;
mod conv_geo;
mod error;
pub mod forward;
pub mod fused_kernels;
pub mod kernels;
mod layers;
pub mod manifest;
pub mod render;
mod snippets;

pub use error::CodegenError;
