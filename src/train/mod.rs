//! Training support. Assumes a backend that consumes f32 NCHW batches;
//! guarantees that everything here is deterministic given a seed.
//!
//! - [`data`]: datasets (Fashion-MNIST IDX files, image folders), the paper's
//!   preprocessing and augmentation, and a prefetching batch loader.
//! - [`run`]: the training loop, over any [`step::StepExec`]: the CPU
//!   executor, or the generated CUDA step ([`cuda`], evaluating with
//!   [`cuda_eval`]).

pub mod bench;
pub mod checkpoint;
pub mod cuda;
pub mod cuda_eval;
pub mod data;
pub mod no_step;
pub mod outputs;
pub mod plot;
pub mod run;
pub mod step;
pub mod sweep;
pub mod ten_crop;
