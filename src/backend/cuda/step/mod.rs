//! The CUDA backend's implementation of the step interface
//! (`backend::step`): a generated program run on a [`Device`](super::runtime::device::Device),
//! with the parameter store as its host side; and the checks
//! `netc cuda-check` runs against the CPU executor ([`check`]).
//!
//! May import: everything below it in `backend::cuda`, `backend::cpu`
//! (the reference it is checked against), `backend::{step, params}`.

pub mod check;
