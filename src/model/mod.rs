//! What a trained network is and what it does, apart from training it:
//! used by training, `eval`, `predict`, `export`/`import` and the pictures
//! of its weights.
//!
//! - [`checkpoint`]: the safetensors file of a run (parameters, progress,
//!   settings), written atomically and checked when read.
//! - [`preparation`]: what a checkpoint stores to classify images without
//!   the data (class names, input preparation, colour statistics).
//! - [`build`]: the step graph, the augmentation and a checkpoint's
//!   parameters restored into an executor.
//! - [`weights`]: a network's weights outside a run (read from and written
//!   to checkpoints, logits on given images), for `netc export` and `import`.
//! - [`predict`]: classifies image files; [`predictions`]: the
//!   `eval --predictions` table; [`ten_crop`]: the paper's ten-crop score.
//! - [`error`]: the error of everything that runs a network on data.

pub mod build;
pub mod checkpoint;
pub mod error;
pub mod predict;
pub mod predictions;
pub mod preparation;
pub mod ten_crop;
pub mod weights;
