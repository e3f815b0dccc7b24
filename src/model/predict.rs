//! `netc predict`: the classes a trained model gives image files, from its
//! checkpoint alone.
//!
//! Assumes a checkpoint of the network being run (its fingerprint is
//! checked) that stores its input preparation ([`Preparation`]); one
//! written before netc stored it needs the data it was trained on
//! (`data`), from which the preparation is computed as training computes
//! it. Guarantees: an image is prepared exactly as evaluation prepares a
//! test image: the file is decoded and brought to the stored image shape
//! by the image-folder loader's code ([`Preparation::load_image`]), then
//! the augmenter's centre crop or ten crops ([`Preparation::augmenter`]);
//! the forward pass is the CPU executor's evaluation (dropout off), and the
//! probabilities are each crop's softmax in f64, averaged over the crops as
//! ten-crop evaluation averages them (`ten_crop::probabilities`). An
//! unreadable or undecodable image is an error naming the file; nothing
//! panics.

use std::path::{Path, PathBuf};

use crate::backend::cpu::exec::CpuExec;
use crate::backend::step::Step;
use crate::data::augment::Augmenter;
use crate::lower::Module;
use crate::model::checkpoint::{self, CheckpointError};
use crate::model::error::TrainError;
use crate::model::preparation::{Preparation, TestCrops};

/// One class of a prediction.
#[derive(Clone, Debug, PartialEq, serde::Serialize)]
pub struct Ranked {
    /// The class id (logit index).
    pub class: usize,
    pub name: String,
    pub probability: f64,
}

/// What the model says of one image.
#[derive(Clone, Debug, PartialEq, serde::Serialize)]
pub struct Prediction {
    pub image: PathBuf,
    /// Crops scored: 1 (centre) or 10.
    pub crops: usize,
    /// The most probable classes, most probable first (lower id on a tie).
    pub top: Vec<Ranked>,
    /// `crops × classes` logits, crop-major.
    #[serde(skip)]
    pub logits: Vec<f32>,
    /// The probability of every class.
    #[serde(skip)]
    pub probabilities: Vec<f64>,
}

/// A trained model ready to classify image files.
pub struct Predictor {
    exec: CpuExec,
    aug: Augmenter,
    prep: Preparation,
    classes: usize,
}

impl Predictor {
    /// Loads `weights` into `module`'s network. The preparation is the
    /// checkpoint's, or, for a checkpoint without one, computed from
    /// `data` as training computes it (an error saying so without `data`).
    pub fn open(module: &Module, weights: &Path, data: Option<&Path>) -> Result<Self, TrainError> {
        let cfg = module.train.clone();
        crate::passes::trainable::check(&module.graph, &module.train, Default::default())
            .map_err(|e| TrainError::Config(e.to_string()))?;
        let ck = checkpoint::load(weights)?;
        let graph = super::build::training_graph(module, &cfg, true)?;
        let fingerprint = checkpoint::fingerprint(&crate::ir::print::print_for_fingerprint(&graph));
        ck.expect(weights, &graph.name, &fingerprint)?;
        let prep = match (&ck.preparation, data) {
            (Some(p), _) => p.clone(),
            (None, Some(data)) => {
                let ds = crate::data::sources::open(Some(data), cfg.data.rescale)?;
                let aug = super::build::augmenter(&cfg, ds.shape(), &ds.stats, cfg.seed)?;
                Preparation::of_run(&cfg.data, &ds, &aug)
            }
            (None, None) => {
                return Err(CheckpointError::NoPreparation {
                    path: weights.to_path_buf(),
                }
                .into());
            }
        };
        let aug = prep
            .augmenter()
            .map_err(|e| TrainError::Config(format!("{}: {e}", weights.display())))?;
        let mut exec = CpuExec::with_memory(graph, cfg.seed, Default::default())?;
        let out = aug.out_shape();
        if Step::image_len(&exec) != out.len() {
            return Err(TrainError::Config(format!(
                "{}: images are prepared as {}×{}×{} but the network's input takes {} values",
                weights.display(),
                out.c,
                out.h,
                out.w,
                Step::image_len(&exec)
            )));
        }
        super::build::restore_loaded(&mut exec, &ck, weights)?;
        let classes = exec.logits_width();
        Ok(Predictor {
            exec,
            aug,
            prep,
            classes,
        })
    }

    /// The preparation images are given.
    pub fn preparation(&self) -> &Preparation {
        &self.prep
    }

    /// Whether evaluation scores ten crops (the network's `test:`).
    pub fn ten_crop_default(&self) -> bool {
        self.prep.test == TestCrops::TenCrop
    }

    /// The name of class `k` (`class <k>` where the checkpoint has none).
    pub fn class_name(&self, k: usize) -> String {
        self.prep
            .classes
            .get(k)
            .cloned()
            .unwrap_or_else(|| format!("class {k}"))
    }

    /// Classifies the image file at `path`: its `top` most probable
    /// classes, from the centre crop or (`ten_crop`) the ten crops.
    pub fn predict(
        &mut self,
        path: &Path,
        ten_crop: bool,
        top: usize,
    ) -> Result<Prediction, TrainError> {
        let img = self.prep.load_image(path)?;
        let crops = if ten_crop { 10 } else { 1 };
        let mut input = vec![0.0; crops * self.aug.out_shape().len()];
        if ten_crop {
            self.aug.ten_crops_into(&img, &mut input);
        } else {
            self.aug.center_into(&img, &mut input);
        }
        self.exec.eval_batch(&input, &vec![0; crops])?;
        let logits = CpuExec::logits(&self.exec).to_vec();
        let probabilities = super::ten_crop::probabilities(&logits, self.classes);
        let mut order: Vec<usize> = (0..self.classes).collect();
        order.sort_by(|&a, &b| {
            probabilities[b]
                .total_cmp(&probabilities[a])
                .then(a.cmp(&b))
        });
        let top = order
            .into_iter()
            .take(top)
            .map(|k| Ranked {
                class: k,
                name: self.class_name(k),
                probability: probabilities[k],
            })
            .collect();
        Ok(Prediction {
            image: path.to_path_buf(),
            crops,
            top,
            logits,
            probabilities,
        })
    }
}
