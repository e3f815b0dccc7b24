//! Backends that execute the IR, and the interface they share.
//!
//! At the bottom, the step interface every backend implements and the
//! training loop drives: [`step::Step`] with its error ([`error`]), plain
//! input types ([`input`]: raw batches, augmentation draws and what a
//! device needs to augment), the parameters every backend starts from and
//! the names they are stored under ([`params`]), the buffer [`layout`]
//! both backends honour,
//! and the typed choice of backend ([`config`]). Above them, one folder per
//! backend: [`cpu`] (the reference) and [`cuda`]; [`open`] builds the
//! configured one. Nothing here knows of training, data loading or the
//! command line.

pub mod config;
pub mod cpu;
pub mod cuda;
pub mod error;
pub mod input;
pub mod layout;
pub mod open;
pub mod params;
pub mod step;

pub use config::BackendConfig;
pub use error::BackendError;
pub use step::{Batch, Feed, Step, StepStats};
