//! The training settings of a network, as read from the `.net` file's
//! `train` section and validated by lowering. Parameter initialisation is
//! not here: it lives on each `param` node of the graph.

use serde::Serialize;

#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct TrainConfig {
    pub batch: u64,
    pub epochs: u64,
    pub seed: u64,
    pub sgd: Sgd,
    pub schedule: Schedule,
    pub data: DataPrep,
}

/// The paper's update: `v ← momentum·v − weight_decay·lr·w − lr·∂L/∂w; w ← w + v`.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Sgd {
    pub lr: f64,
    pub momentum: f64,
    pub weight_decay: f64,
}

#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Schedule {
    /// The same learning rate throughout.
    Fixed,
    /// Multiply by `factor` every `every` epochs.
    Step { every: u64, factor: f64 },
    /// The paper's rule: multiply by `factor` when the validation error has
    /// not improved for `patience` epochs, at most `drops` times.
    Plateau {
        factor: f64,
        patience: u64,
        drops: u64,
    },
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum TestCrop {
    /// The centre crop.
    Center,
    /// The four corners and the centre, and their mirrors; softmax outputs averaged.
    TenCrop,
}

#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct DataPrep {
    /// Rescale so the shorter side is this many pixels, then take the central square.
    pub rescale: Option<u64>,
    /// Side of the crop fed to the network; `None`: the whole image.
    pub crop: Option<u64>,
    /// Zero padding added around each side before cropping.
    pub pad: u64,
    /// Random crops in training (else the centre crop).
    pub random_crop: bool,
    /// Horizontal reflections with probability 1/2 in training.
    pub mirror: bool,
    /// σ of the PCA lighting coefficients; 0 disables it.
    pub lighting: f64,
    /// Subtract the training set's mean image.
    pub mean: bool,
    /// Multiply pixel values (0..255, after the mean) by this.
    pub scale: f64,
    pub test: TestCrop,
}

impl Default for TrainConfig {
    /// The paper's settings (section 5).
    fn default() -> Self {
        TrainConfig {
            batch: 128,
            epochs: 90,
            seed: 0,
            sgd: Sgd {
                lr: 0.01,
                momentum: 0.9,
                weight_decay: 0.0005,
            },
            schedule: Schedule::Plateau {
                factor: 0.1,
                patience: 1,
                drops: 3,
            },
            data: DataPrep::default(),
        }
    }
}

impl Default for DataPrep {
    fn default() -> Self {
        DataPrep {
            rescale: None,
            crop: None,
            pad: 0,
            random_crop: false,
            mirror: false,
            lighting: 0.0,
            mean: true,
            scale: 1.0,
            test: TestCrop::Center,
        }
    }
}
