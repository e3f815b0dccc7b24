//! Training support. Assumes a backend that consumes f32 NCHW batches;
//! guarantees that everything here is deterministic given a seed.
//!
//! - [`data`]: datasets (Fashion-MNIST IDX files, image folders), the paper's
//!   preprocessing and augmentation, and a prefetching batch loader.
//! - [`run`]: the training loop, generic over the backends' step interface
//!   (`backend::step::Step`); it never names a backend other than the CPU
//!   reference, whose executor it builds and hands to the backend chosen
//!   by the caller.
//! - [`weights`]: a network's weights outside a run (read from and written
//!   to checkpoints, logits on given images), for `netc export` and `import`.

pub mod bench;
pub mod checkpoint;
pub mod data;
pub mod error;
pub mod no_step;
pub mod outputs;
pub mod plot;
pub mod report;
pub mod run;
pub mod sweep;
pub mod ten_crop;
pub mod weights;
