//! A network's weights outside a training run: read from a checkpoint
//! written for it (or drawn as a run would start them), written as a
//! checkpoint that `netc eval` and `netc train --resume` load, and used to
//! compute logits on given images. What `netc export` and `netc import`
//! hand to and take from `onnx`, and what the ONNX tests compare against.
//!
//! Weights are keyed as checkpoints key them (`backend::params::key`:
//! `conv1/conv.weight@t0`). Guarantees: [`load`] accepts only a checkpoint
//! whose fingerprint is the network's (the one `netc eval` checks);
//! [`save`] writes one that [`load`] and `netc eval` accept, velocities
//! zero; [`logits`] is the CPU executor's evaluation, dropout off.

use std::collections::HashMap;
use std::path::Path;

use crate::backend::cpu::exec::CpuExec;
use crate::backend::params;
use crate::backend::step::Step;
use crate::ir::{Op, ParamRole, print};
use crate::lower::Module;
use crate::model::checkpoint::{self, CheckpointError, Progress};
use crate::model::error::TrainError;

/// Weight and bias values by checkpoint key.
pub type Weights = HashMap<String, Vec<f32>>;

/// The training step a checkpoint of `module` is written for (fused, as
/// `netc train` runs it) and its fingerprint.
fn fingerprint(module: &Module) -> Result<(crate::ir::Graph, String), TrainError> {
    let g = super::build::training_graph(module, &module.train, true)?;
    let fp = checkpoint::fingerprint(&print::print_for_fingerprint(&g));
    Ok((g, fp))
}

/// The weights and biases of `path`, a checkpoint written for `module`.
pub fn load(module: &Module, path: &Path) -> Result<Weights, TrainError> {
    let (g, fp) = fingerprint(module)?;
    let ck = checkpoint::load(path)?;
    ck.expect(path, &g.name, &fp)?;
    let mut out = Weights::new();
    for n in g.node_ids() {
        let node = g.node(n);
        if let Op::Param { role, .. } = &node.op
            && *role != ParamRole::Velocity
        {
            let key = params::key(&g, n);
            let want = node.ty.numel() as usize;
            match ck.tensors.get(&key) {
                Some((_, v)) if v.len() == want => {
                    out.insert(key, v.clone());
                }
                Some((_, v)) => {
                    return Err(CheckpointError::Corrupt {
                        path: path.to_path_buf(),
                        reason: format!("`{key}` has {} values, expected {want}", v.len()),
                    }
                    .into());
                }
                None => {
                    return Err(CheckpointError::Corrupt {
                        path: path.to_path_buf(),
                        reason: format!("no tensor `{key}`"),
                    }
                    .into());
                }
            }
        }
    }
    Ok(out)
}

/// The weights a run of `module` starts from (its `init` rules, its seed).
pub fn initial(module: &Module) -> Weights {
    let g = &module.graph;
    let mut out = Weights::new();
    for n in g.node_ids() {
        let node = g.node(n);
        if let Op::Param { role, init } = &node.op
            && *role != ParamRole::Velocity
        {
            let mut v = vec![0f32; node.ty.numel() as usize];
            params::init_param(
                init,
                &node.name,
                node.device,
                node.ty.dims(),
                module.train.seed,
                &mut v,
            );
            out.insert(params::key(g, n), v);
        }
    }
    out
}

/// Writes `weights` as a checkpoint of `module` (atomically; velocities
/// zero, progress at the start of training with the file's seed and batch).
pub fn save(module: &Module, weights: &Weights, path: &Path) -> Result<(), TrainError> {
    let (g, fp) = fingerprint(module)?;
    let mut tensors: Vec<(String, Vec<usize>, Vec<f32>)> = Vec::new();
    for n in g.node_ids() {
        let node = g.node(n);
        let Op::Param { role, .. } = &node.op else {
            continue;
        };
        let key = params::key(&g, n);
        let len = node.ty.numel() as usize;
        let values = match role {
            ParamRole::Velocity => vec![0.0; len],
            _ => match weights.get(&key) {
                Some(v) if v.len() == len => v.clone(),
                _ => {
                    return Err(TrainError::Config(format!(
                        "no {len} values for `{key}` to write to `{}`",
                        path.display()
                    )));
                }
            },
        };
        let dims = node.ty.dims().iter().map(|&d| d as usize).collect();
        tensors.push((key, dims, values));
    }
    tensors.sort_by(|a, b| a.0.cmp(&b.0));
    let views: Vec<(String, Vec<usize>, &[f32])> = tensors
        .iter()
        .map(|(k, d, v)| (k.clone(), d.clone(), v.as_slice()))
        .collect();
    let progress = Progress {
        seed: module.train.seed,
        batch_size: module.train.batch,
        plateau_lr: module.train.sgd.lr,
        ..Default::default()
    };
    checkpoint::save(path, &g.name, &fp, &progress, None, &views)?;
    Ok(())
}

/// The logits (`images × classes`) of `module` with `weights` on `images`
/// (each the input's shape, prepared as evaluation prepares them), on the
/// CPU executor, dropout off, `batch` images at a time.
pub fn logits(
    module: &Module,
    weights: &Weights,
    images: &[f32],
    batch: usize,
) -> Result<Vec<f32>, TrainError> {
    let step = super::build::training_graph(module, &module.train, true)?;
    let fwd = crate::passes::forward::forward_graph(&step)
        .map_err(|e| TrainError::Config(e.to_string()))?;
    let mut exec: CpuExec = CpuExec::new(fwd, module.train.seed)?;
    for (key, v) in weights {
        Step::set_state(&mut exec, key, v)?;
    }
    let len = exec.image_len();
    if len == 0 || !images.len().is_multiple_of(len) {
        return Err(TrainError::Config(format!(
            "{} values are not a whole number of {len}-value images",
            images.len()
        )));
    }
    let mut out = Vec::new();
    for chunk in images.chunks(len * batch.max(1)) {
        let labels = vec![0u32; chunk.len() / len];
        exec.eval_batch(chunk, &labels)?;
        out.extend_from_slice(exec.logits());
    }
    Ok(out)
}

/// The first `count` test images of `data` (as `--data` names it) as
/// `module`'s evaluation prepares them (centre crops), with their labels.
pub fn test_images(
    module: &Module,
    data: Option<&Path>,
    count: usize,
) -> Result<(Vec<f32>, Vec<u32>), TrainError> {
    use crate::data::loader::{Loader, LoaderConfig};
    let cfg = &module.train;
    let ds = crate::data::sources::open(data, cfg.data.rescale)?;
    let aug = super::build::augmenter(cfg, ds.shape(), &ds.stats, cfg.seed)?;
    let test = Loader::from_source(ds.test, aug, LoaderConfig::eval(count.max(1)))
        .map_err(|e| TrainError::Config(e.to_string()))?;
    let batch = test.epoch(0, 0).next();
    if let Some(e) = test.take_error() {
        return Err(e.into());
    }
    let batch = batch.ok_or_else(|| TrainError::Config("the test split is empty".into()))?;
    Ok((batch.images.clone(), batch.labels.clone()))
}
