//! What running a network needs beyond its `.net` file, shared by
//! training, evaluation, prediction and the pictures of its weights: the
//! step graph (forward, backward, update) built from the module, the input
//! preparation its `data` section asks for, and a checkpoint's parameters
//! restored into an executor.
//!
//! Assumes a lowered, shape-checked module; guarantees the same graph and
//! the same augmentation for the same module, settings and seed.

use std::path::Path;

use crate::backend::step::Step;
use crate::data;
use crate::data::augment::{AugmentConfig, Augmenter, MeanMode};
use crate::data::pca::Stats;
use crate::ir::Graph;
use crate::ir::train::TrainConfig;
use crate::lower::Module;
use crate::model::checkpoint::{self, CheckpointError};
use crate::model::error::TrainError;

/// The whole training step as IR: forward, backward, update; fused
/// unless `fuse` is false.
pub fn training_graph(module: &Module, cfg: &TrainConfig, fuse: bool) -> Result<Graph, TrainError> {
    Ok(crate::passes::pipeline::training_step(
        &module.graph,
        &cfg.sgd,
        fuse,
    )?)
}

/// The augmentation the `data` section of `cfg` asks for, with the
/// dataset's colour statistics and the run's seed.
pub fn augmenter(
    cfg: &TrainConfig,
    shape: data::Shape,
    stats: &Stats,
    seed: u64,
) -> Result<Augmenter, TrainError> {
    let d = &cfg.data;
    let aug = AugmentConfig {
        random_crop: d.random_crop,
        crop: d.crop.map_or(shape.h, |c| c as usize),
        pad: d.pad as usize,
        mirror: d.mirror,
        lighting_sigma: d.lighting as f32,
        mean: if d.mean {
            MeanMode::Pixel
        } else {
            MeanMode::None
        },
        scale: d.scale as f32,
    };
    Augmenter::new(aug, stats, seed).map_err(|e| TrainError::Config(e.to_string()))
}

/// Loads every parameter of the checkpoint `ck`, read from `path`, into
/// `exec`, checking names and sizes (not the fingerprint).
pub fn restore_loaded<E: Step>(
    exec: &mut E,
    ck: &checkpoint::Checkpoint,
    path: &Path,
) -> Result<(), TrainError> {
    let want: Vec<(String, usize)> = exec
        .state()?
        .into_iter()
        .map(|(name, _, v)| (name, v.len()))
        .collect();
    for (name, len) in want {
        let Some((_, values)) = ck.tensors.get(&name) else {
            return Err(CheckpointError::Corrupt {
                path: path.to_path_buf(),
                reason: format!("no tensor `{name}`"),
            }
            .into());
        };
        if len != values.len() {
            return Err(CheckpointError::Corrupt {
                path: path.to_path_buf(),
                reason: format!("`{name}` has {} values, expected {len}", values.len()),
            }
            .into());
        }
        exec.set_state(&name, values)?;
    }
    Ok(())
}
