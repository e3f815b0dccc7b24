//! The CPU executor's error type.

use crate::passes::memplan::MemplanError;

#[derive(Clone, Debug, PartialEq, thiserror::Error)]
pub enum ExecError {
    #[error("the graph has a cycle")]
    Cycle,
    #[error("the graph has no `{0}` input")]
    MissingInput(&'static str),
    #[error("a batch of {got} values does not fit input `{name}` ({want} per example)")]
    BadBatch {
        name: String,
        got: usize,
        want: usize,
    },
    #[error("label {label} is out of range for {classes} classes")]
    BadLabel { label: u32, classes: u64 },
    #[error("`{0}` has no forward node")]
    Orphan(String),
    #[error("`{0}` applies the mask of a dropout the graph lacks")]
    NoMask(String),
    #[error("cannot plan the step's memory: {0}")]
    Plan(#[from] MemplanError),
    #[error("{0}")]
    TooLarge(#[from] crate::backend::cpu::memory::TooLarge),
    #[error("internal error: {0}")]
    Internal(String),
}
