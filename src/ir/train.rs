//! The training settings of a network, as read from the `.net` file's
//! `train` section and validated by lowering. Parameter initialisation is
//! not here: it lives on each `param` node of the graph.

use serde::Serialize;

use crate::ir::ParamRole;
use crate::span::Span;

#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct TrainConfig {
    pub batch: u64,
    pub epochs: u64,
    pub seed: u64,
    pub sgd: Sgd,
    pub schedule: Schedule,
    pub data: DataPrep,
}

/// The paper's update: `v ← momentum·v − weight_decay·lr·w − lr·∂L/∂w; w ← w + v`;
/// with `nesterov`, `w ← w + momentum·v − weight_decay·lr·w − lr·∂L/∂w`
/// instead (see [`crate::ir::Op::SgdUpdate`]). Each parameter's `lr` and
/// `weight_decay` are scaled by its [`Multiplier`]s.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Sgd {
    pub lr: f64,
    pub momentum: f64,
    pub weight_decay: f64,
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub nesterov: bool,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub multipliers: Vec<Multiplier>,
    /// The layers' own `lr_mult` and `decay_mult` arguments, one entry per
    /// parameter given a factor other than 1; they multiply what
    /// `multipliers` gives (see [`Sgd::param_multipliers_of`]).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub param_multipliers: Vec<ParamMultiplier>,
    /// Label smoothing ε of the loss the step descends: the target of
    /// `softmax_xent_grad` is `(1 − ε)·onehot + ε/K` (written at the top
    /// of `train`, kept here because autodiff builds the step from these
    /// settings). The loss reported stays the plain cross-entropy.
    #[serde(skip_serializing_if = "is_zero")]
    pub label_smoothing: f64,
}

fn is_zero(x: &f64) -> bool {
    *x == 0.0
}

/// One rule of `multipliers { … }`: scales the learning rate (`lr`) and
/// the weight decay (`decay`) of the parameters it names: every parameter
/// of `role` (`bias { … }`), every parameter of `layer` (`fc8 { … }`), or
/// one (`conv1.bias { … }`). A field left out leaves the multiplier as it is.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Multiplier {
    pub layer: Option<String>,
    pub role: Option<ParamRole>,
    pub lr: Option<f64>,
    pub decay: Option<f64>,
    #[serde(skip)]
    pub span: Span,
}

/// A layer argument's multipliers (`conv(…, lr_mult: [1, 2])`) for one
/// parameter, named as its node is (`conv1/conv.bias`, the same in every
/// tower).
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct ParamMultiplier {
    pub param: String,
    pub lr: f64,
    pub decay: f64,
}

impl Multiplier {
    /// How specific the rule is: a role (1), a layer (2), a layer's parameter (3).
    fn rank(&self) -> u8 {
        match (&self.layer, &self.role) {
            (None, _) => 1,
            (Some(_), None) => 2,
            (Some(_), Some(_)) => 3,
        }
    }

    fn applies(&self, layer: &str, role: ParamRole) -> bool {
        self.layer.as_deref().is_none_or(|l| l == layer) && self.role.is_none_or(|r| r == role)
    }
}

impl Sgd {
    /// `(lr_mult, decay_mult)` of the parameter of `role` in `layer`: 1
    /// unless a rule names it; the more specific rule wins (a layer's
    /// parameter over a layer over a role), and of equally specific ones
    /// the later.
    pub fn multipliers_of(&self, layer: &str, role: ParamRole) -> (f64, f64) {
        let mut rules: Vec<&Multiplier> = self
            .multipliers
            .iter()
            .filter(|m| m.applies(layer, role))
            .collect();
        rules.sort_by_key(|m| m.rank());
        let (mut lr, mut decay) = (1.0, 1.0);
        for m in rules {
            lr = m.lr.unwrap_or(lr);
            decay = m.decay.unwrap_or(decay);
        }
        (lr, decay)
    }

    /// `(lr_mult, decay_mult)` of parameter node `param` (of `role` in
    /// `layer`): [`Sgd::multipliers_of`] times the layer's own `lr_mult`
    /// and `decay_mult` for it. The two multiply rather than one
    /// overriding the other: a layer argument is part of the model (as
    /// Caffe's `param { lr_mult }`), a `multipliers` rule part of the
    /// training recipe, and each keeps its meaning (`bias { decay: 0 }`
    /// still leaves every bias undecayed).
    pub fn param_multipliers_of(&self, param: &str, layer: &str, role: ParamRole) -> (f64, f64) {
        let (lr, decay) = self.multipliers_of(layer, role);
        match self.param_multipliers.iter().find(|m| m.param == param) {
            Some(m) => (lr * m.lr, decay * m.decay),
            None => (lr, decay),
        }
    }
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
    /// Set at every step: a linear warm-up from 0 over `warmup` epochs
    /// (a fraction allowed, rounded to whole steps), then a half cosine
    /// from the base rate down to `min_lr` at the end of training.
    Cosine { warmup: f64, min_lr: f64 },
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
                nesterov: false,
                multipliers: Vec::new(),
                param_multipliers: Vec::new(),
                label_smoothing: 0.0,
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
