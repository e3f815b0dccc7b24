//! The CUDA backend. [`codegen::generate`] is pure: it turns a training
//! graph, unfused or fused by `passes::fuse`, into CUDA C source and an
//! ordered launch list ([`program`]), with no device, driver or toolkit
//! involved, so it runs and is tested on any machine. [`kernels`] (with
//! [`fused_kernels`]) is the kernel table, `layers` the GEMM-based layers.
//! [`nvrtc`] compiles that source to PTX when NVRTC can be loaded
//! (dynamically, at run time); [`manifest`] renders the launch list as text.
//! [`runtime`] runs a program on a GPU behind the [`device::Device`]
//! interface that training (`train::cuda`) drives.

pub mod buffers;
pub mod check;
pub mod codegen;
pub mod device;
pub mod fused_kernels;
pub mod kernels;
mod layers;
pub mod manifest;
pub mod nvrtc;
pub mod program;
pub mod render;
pub mod runtime;

pub use codegen::{CodegenError, generate};
pub use program::CudaProgram;
