//! CPU backend: reference kernels (NCHW, generic over `f32`/`f64`) that the CPU executor calls.
pub mod exec;
pub mod kernels;
pub mod memory;
