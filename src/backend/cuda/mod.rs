//! The CUDA backend, in layers that import only downwards:
//!
//! - [`program`]: the program a backend runs: CUDA C source, buffers at
//!   their offsets, an ordered list of launches, GEMMs and copies. The
//!   shared type at the bottom of the backend.
//! - [`proof`]: the alias proof that no step is handed memory it cannot
//!   share.
//! - [`generate`]: generation, pure (IR + memory plan -> program), with no
//!   device, driver or toolkit involved, so it runs and is tested on any
//!   machine; [`generate`] is its entry point.
//! - [`place`]: placement of a program's towers on several devices, and
//!   the stream commands that order their copies.
//! - [`nvrtc`]: compiles a program's source to PTX when NVRTC can be
//!   loaded (dynamically, at run time).
//! - [`runtime`]: what only a GPU runs, over cudarc, behind
//!   [`runtime::device::Device`] (which the tests' CPU emulation harness
//!   also implements).
//! - [`step`]: the step interface (`backend::step`) implemented over a
//!   device, and the checks `netc cuda-check` runs against the CPU
//!   executor.

pub mod generate;
pub mod nvrtc;
pub mod place;
pub mod program;
pub mod proof;
pub mod runtime;
pub mod step;

pub use crate::backend::layout::Layout;
pub use generate::CodegenError;
pub use generate::codegen::{Options, generate, generate_opts, generate_planned, generate_with};
pub use program::CudaProgram;
