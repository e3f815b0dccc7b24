//! The CUDA backend's implementation of the step interface
//! (`backend::step`): [`run::CudaStep`], a generated program run on a
//! [`Device`](super::runtime::device::Device) with a CPU executor of the
//! same graph as its host mirror, evaluating on a device of its own
//! ([`eval`]); [`open`] opens it on real GPUs; [`check`] holds the checks
//! `netc cuda-check` runs against the CPU executor.
//!
//! May import: everything below it in `backend::cuda`, `backend::cpu`
//! (the mirror, and the reference it is checked against), and the
//! interface types of `backend`.

pub mod check;
pub mod eval;
pub mod open;
pub mod report;
pub mod run;
