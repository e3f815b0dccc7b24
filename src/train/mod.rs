//! Training: the loop, its schedules, its outputs, and sweeps of variants.
//! Assumes a backend that consumes f32 NCHW batches; guarantees that
//! everything here is deterministic given a seed.
//!
//! - [`run`]: the training loop, generic over the backends' step interface
//!   (`backend::step::Step`); it never names a backend other than the CPU
//!   reference, whose executor it builds and hands to the backend chosen
//!   by the caller. Evaluation of a checkpoint (`netc eval`) runs here too.
//! - [`outputs`]: a run's files (checkpoint, metrics, learning curves),
//!   published together; [`report`]: what a run reports.
//! - [`sweep`]: train every variant of an ablation and compare them.
//! - [`bench`]: timed training steps on synthetic data (`netc bench`).
//!
//! The data it trains on is [`crate::data`]'s; what a trained network is
//! and does (checkpoints, weights, prediction) is [`crate::model`]'s; its
//! pictures are [`crate::picture`]'s.

pub mod bench;
pub mod no_step;
pub mod outputs;
pub mod report;
pub mod run;
pub mod sweep;
