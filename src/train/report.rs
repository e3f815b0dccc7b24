//! What a run reports: per epoch, at the end, and for a test-set evaluation.

use std::path::PathBuf;

#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct EpochReport {
    pub epoch: u64,
    pub lr: f64,
    pub train_loss: f64,
    pub test_loss: f64,
    pub top1_error: f64,
    pub top5_error: f64,
    pub images_per_s: f64,
    /// The top-1 error on the training batches of this epoch, measured by
    /// the training step itself (training mode: augmented crops, dropout
    /// on, weights changing during the epoch), as the paper's figure 1
    /// plots it. Absent in metrics written before it was recorded.
    #[serde(default)]
    pub train_top1_error: Option<f64>,
    /// Training steps taken since the start of the run, at the end of this
    /// epoch (0 in metrics written before it was recorded).
    #[serde(default)]
    pub steps: u64,
}

/// What a training run prints on standard output (its results: each
/// epoch's line and the outcome); progress and diagnostics go to standard
/// error.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Results {
    /// One line of text per epoch, then where the files are.
    Text,
    /// One JSON object per line: each epoch's report, then the outcome.
    Json,
    /// Nothing (the default for a caller of the library, which has the
    /// [`Outcome`]).
    #[default]
    Off,
}

#[derive(Clone, Debug, PartialEq)]
pub enum Outcome {
    Finished(Vec<EpochReport>),
    /// Stopped early; the checkpoint holds everything needed to resume.
    Stopped {
        step: u64,
        checkpoint: PathBuf,
    },
}

/// Test-set figures.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct EvalReport {
    pub loss: f64,
    pub top1_error: f64,
    pub top5_error: f64,
    pub images: usize,
}
