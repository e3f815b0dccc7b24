//! The runtime over cudarc: what only a GPU can run. [`exec::CudaExec`]
//! runs a program on one GPU (one allocation laid out by the plan, the
//! step captured as a CUDA graph and replayed, inputs staged through
//! page-locked memory on a copy stream); [`multi::MultiExec`] runs a placed
//! program, one allocation, stream and cuBLAS handle per device. Both sit
//! behind [`device::Device`], which the CPU emulation harness in the tests
//! also implements. `issue` issues one launch or GEMM for both.
//!
//! May import: `backend::cuda::{program, proof, place}`, cudarc.

pub mod device;
mod error;
pub mod exec;
mod issue;
pub mod multi;
mod staging;

pub use error::{RuntimeError, libraries_present};
