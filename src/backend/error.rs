//! The step interface's error type: what any backend can fail with.

use crate::backend::cpu::exec::error::ExecError;
use crate::backend::cuda::runtime::RuntimeError;

#[derive(Debug, thiserror::Error)]
pub enum BackendError {
    /// The CPU executor refused the graph or a batch.
    #[error(transparent)]
    Exec(#[from] ExecError),
    /// A GPU runtime call failed.
    #[error(transparent)]
    Device(#[from] RuntimeError),
    /// The backend cannot run on this machine (a library or device is
    /// missing); the message names the way out.
    #[error("{0}")]
    Unavailable(String),
    /// The backend's program could not be generated, compiled or placed.
    #[error("{0}")]
    Program(String),
    /// A batch, label or state tensor does not fit the step, or the
    /// interface was driven out of order.
    #[error("{0}")]
    Input(String),
}
