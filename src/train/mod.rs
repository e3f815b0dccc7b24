//! Training support. Assumes a backend that consumes f32 NCHW batches;
//! guarantees that everything here is deterministic given a seed.
//!
//! - [`data`]: datasets (Fashion-MNIST IDX files, image folders), the paper's
//!   preprocessing and augmentation, and a prefetching batch loader.
//! - [`run`]: the training loop, generic over the backends' step interface
//!   (`backend::step::Step`); it never names a backend other than the CPU
//!   reference, whose executor it builds and hands to the backend chosen
//!   by the caller.
//! - [`preparation`]: what a checkpoint stores to classify images without
//!   the data (class names, input preparation, colour statistics);
//!   [`predict`] classifies image files with it; [`predictions`] writes
//!   `eval --predictions` tables.
//! - [`weights`]: a network's weights outside a run (read from and written
//!   to checkpoints, logits on given images), for `netc export` and `import`.

pub mod bench;
pub mod checkpoint;
pub mod data;
pub mod error;
pub mod kernels;
pub mod no_step;
pub mod outputs;
pub mod plot;
pub mod predict;
pub mod predictions;
pub mod preparation;
pub mod report;
pub mod run;
pub mod sweep;
pub mod ten_crop;
pub mod weights;
