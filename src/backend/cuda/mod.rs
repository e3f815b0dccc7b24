//! The CUDA backend. [`codegen::generate`] is pure: it turns a training
//! graph, unfused or fused by `passes::fuse`, into CUDA C source and an
//! ordered launch list ([`program`]), with no device, driver or toolkit
//! involved, so it runs and is tested on any machine. [`kernels`] (with
//! [`fused_kernels`]) is the kernel table, `layers` the GEMM-based layers
//! (convolutions in chunks of images, [`chunk`]).
//! [`nvrtc`] compiles that source to PTX when NVRTC can be loaded
//! (dynamically, at run time); [`manifest`] renders the launch list as text.
//!
//! Memory is planned: [`buffers`] lays every buffer out at its offset in
//! the memory plan (`passes::memplan`, one arena per device, reuse and
//! in-place elementwise ops), the arenas one after another in one device
//! allocation followed by a workspace for scratch the plan does not model;
//! the step runs in the plan's order, and [`alias`] proves that no step is
//! handed memory it cannot share. [`runtime`] allocates that memory once.
//!
//! [`forward`] generates the evaluation program: the forward part of the
//! step, dropout off.
//!
//! [`augment`] is the data augmentation kernel (crop, mirror, lighting,
//! mean, scale from raw `u8` images), equal to the host's bit for bit.
//!
//! [`runtime`] runs a program on a GPU behind the [`device::Device`]
//! interface that training (`train::cuda`) drives: the step captured once
//! as a CUDA graph and replayed, inputs staged through page-locked memory
//! on a copy stream while the previous step runs (`staging`).
//!
//! [`split`] places a program on several devices (each tower on its own
//! GPU, cross-tower reads as device-to-device copies into mirrors), and
//! [`multi`] runs a placed program, one allocation and stream per device,
//! issuing [`streams`]'s commands (steps, and events that order copies).

pub mod alias;
pub mod augment;
pub mod buffers;
pub mod check;
pub mod chunk;
pub mod codegen;
pub mod device;
pub mod forward;
pub mod fused_kernels;
mod issue;
pub mod kernels;
mod layers;
pub mod manifest;
pub mod multi;
pub mod nvrtc;
pub mod program;
pub mod render;
pub mod runtime;
pub mod split;
mod staging;
pub mod streams;

pub use buffers::Layout;
pub use codegen::{CodegenError, Options, generate, generate_opts, generate_with};
pub use program::CudaProgram;
