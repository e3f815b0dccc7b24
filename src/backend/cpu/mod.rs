//! CPU backend: reference kernels (NCHW, generic over `f32`/`f64`) that
//! the CPU executor calls, the executor (laid out by the memory plan), and
//! its implementation of the step interface.
pub mod exec;
pub mod kernels;
pub mod memory;
mod step;
