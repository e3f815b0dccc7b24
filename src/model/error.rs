//! The training side's error type.

use std::path::PathBuf;

use crate::backend::cpu::exec::ExecError;
use crate::backend::error::BackendError;
use crate::data::DataError;
use crate::model::checkpoint::CheckpointError;
use crate::passes::autodiff::AutodiffError;

#[derive(Debug, thiserror::Error)]
pub enum TrainError {
    #[error(transparent)]
    Data(#[from] DataError),
    #[error("{0}")]
    Config(String),
    #[error(transparent)]
    Autodiff(#[from] AutodiffError),
    #[error(transparent)]
    Backend(#[from] BackendError),
    #[error(transparent)]
    Fuse(#[from] crate::passes::fuse::FuseError),
    #[error(transparent)]
    Passes(#[from] crate::passes::pipeline::PipelineError),
    #[error(transparent)]
    Checkpoint(#[from] CheckpointError),
    #[error(
        "the loss became {value} at step {step}; the first non-finite value is in `{layer}` ({kept})"
    )]
    NonFinite {
        value: f64,
        step: u64,
        layer: String,
        kept: &'static str,
    },
    #[error(
        "a parameter became non-finite by step {step}{loss}; the first non-finite value is in `{layer}` ({kept})",
        loss = loss.map_or(String::new(), |l| format!(" while the loss was still {l}"))
    )]
    NonFiniteState {
        step: u64,
        layer: String,
        /// The step's loss, when it was finite.
        loss: Option<f64>,
        kept: &'static str,
    },
    #[error(transparent)]
    Lock(#[from] crate::fsio::LockError),
    #[error("cannot write `{path}`: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
}

impl From<ExecError> for TrainError {
    fn from(e: ExecError) -> Self {
        TrainError::Backend(BackendError::Exec(e))
    }
}
