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
