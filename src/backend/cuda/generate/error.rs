//! Generation's error type.

use crate::passes::memplan::MemplanError;

#[derive(Clone, Debug, PartialEq, thiserror::Error)]
pub enum CodegenError {
    #[error("the graph has a cycle")]
    Cycle,
    #[error("the graph has no `{0}`; CUDA code is generated for a training step")]
    Missing(&'static str),
    #[error("`{name}` has no forward node")]
    Orphan { name: String },
    #[error("`{name}` applies the mask of a dropout the graph lacks")]
    NoMask { name: String },
    #[error("`{name}` has {count} inputs; generated kernels take at most 8")]
    TooManyInputs { name: String, count: usize },
    #[error(
        "`{name}` reads state that `{of}` does not keep (it is not the forward op `{name}` differentiates)"
    )]
    NoSide { name: String, of: String },
    #[error("the batch size must be at least 1")]
    EmptyBatch,
    #[error("`{name}` is too large for one launch ({elems} elements)")]
    TooLarge { name: String, elems: usize },
    #[error("cannot plan the step's memory: {0}")]
    Plan(MemplanError),
    #[error("buffer `{name}` does not match the memory plan: {why}")]
    Unplanned { name: String, why: String },
    #[error("the memory layout is unsafe at {0}")]
    Alias(#[from] crate::backend::cuda::proof::alias::AliasError),
    #[error("{0}")]
    Forward(String),
}
