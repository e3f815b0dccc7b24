//! The closed set of operations. Forward layers, inputs and parameters;
//! later passes add the training step's ops. Backends match on `Op`
//! exhaustively, so adding a variant is a compile error everywhere it must
//! be handled. Hyperparameters here are already validated by lowering.
//! An op that applies a dropout's mask names that dropout by [`NodeId`]
//! (`of`; see [`Op::mask_of`]), printed as the node's number in the text
//! form (`of=%12`).

use serde::Serialize;

use super::id::{GradPart, NodeId};

fn is_zero(x: &f64) -> bool {
    *x == 0.0
}

fn is_one(x: &f64) -> bool {
    *x == 1.0
}

/// Serialises a node id as its index (the YAML form renumbers it first).
fn ser_id<S: serde::Serializer>(n: &NodeId, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_u64(n.index() as u64)
}

/// `pad: 0` is left out of the YAML form, so a pool without padding reads
/// as it did before pooling had `pad`.
fn is_zero_u64(v: &u64) -> bool {
    *v == 0
}

/// Serialises a `grad_chain`'s dropout as `[rate, index]`.
fn ser_mask<S: serde::Serializer>(m: &Option<(f64, NodeId)>, s: S) -> Result<S::Ok, S::Error> {
    m.map(|(rate, of)| (rate, of.index() as u64)).serialize(s)
}

#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum InputKind {
    /// A batch of examples, `N × dims`.
    Tensor,
    /// One class label per example.
    Labels,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ParamRole {
    Weight,
    Bias,
    /// The optimiser's momentum buffer `v` of a weight or bias.
    Velocity,
    /// A batchnorm's running mean: state, not a trained parameter. It gets
    /// no gradient, no weight decay and no velocity; the training step's
    /// `running_update` (added by autodiff) folds each batch's mean into it,
    /// evaluation normalises with it, and checkpoints save it.
    RunningMean,
    /// A batchnorm's running variance (unbiased), as [`ParamRole::RunningMean`].
    RunningVar,
}

impl ParamRole {
    /// The suffix of a parameter's name: `conv1/conv.weight`, `bn/batchnorm.running_mean`.
    pub fn suffix(self) -> &'static str {
        match self {
            ParamRole::Weight => "weight",
            ParamRole::Bias => "bias",
            ParamRole::Velocity => "velocity",
            ParamRole::RunningMean => "running_mean",
            ParamRole::RunningVar => "running_var",
        }
    }

    /// Running statistics: state the training step updates without a gradient.
    pub fn is_running(self) -> bool {
        matches!(self, ParamRole::RunningMean | ParamRole::RunningVar)
    }
}

/// How a parameter is initialised.
#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Init {
    /// N(mean, std²).
    Normal {
        mean: f64,
        std: f64,
    },
    /// U(low, high).
    Uniform {
        low: f64,
        high: f64,
    },
    Constant {
        value: f64,
    },
    /// N(0, 2/fan_in): He et al. 2015.
    He,
    /// U(±sqrt(6/(fan_in+fan_out))): Glorot & Bengio 2010.
    Xavier,
    /// PyTorch's `kaiming_uniform_`: U(±gain·√(3/fan)), `gain` as
    /// [`Nonlinearity::gain`] of `a`, `fan` the fan-in or fan-out.
    KaimingUniform {
        a: f64,
        mode: FanMode,
        nonlinearity: Nonlinearity,
    },
    /// PyTorch's `kaiming_normal_`: N(0, (gain/√fan)²).
    KaimingNormal {
        a: f64,
        mode: FanMode,
        nonlinearity: Nonlinearity,
    },
    /// PyTorch's `xavier_uniform_`: U(±gain·√(6/(fan_in+fan_out))).
    XavierUniform {
        gain: f64,
    },
    /// PyTorch's `xavier_normal_`: N(0, (gain·√(2/(fan_in+fan_out)))²).
    XavierNormal {
        gain: f64,
    },
}

/// Which fan a Kaiming initialiser scales by. For a weight `[out, in, k…]`
/// (conv `[F, C, K, K]`, dense `[units, in]`), as PyTorch computes them:
/// `fan_in = in·Πk`, `fan_out = out·Πk`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum FanMode {
    FanIn,
    FanOut,
}

/// The nonlinearity a Kaiming initialiser's gain is computed for, as
/// PyTorch's `calculate_gain` has them.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Nonlinearity {
    Linear,
    Sigmoid,
    Tanh,
    Relu,
    LeakyRelu,
    Selu,
}

impl Nonlinearity {
    /// Every nonlinearity by its source name.
    pub const ALL: &'static [(&'static str, Nonlinearity)] = &[
        ("linear", Nonlinearity::Linear),
        ("sigmoid", Nonlinearity::Sigmoid),
        ("tanh", Nonlinearity::Tanh),
        ("relu", Nonlinearity::Relu),
        ("leaky_relu", Nonlinearity::LeakyRelu),
        ("selu", Nonlinearity::Selu),
    ];

    pub fn name(self) -> &'static str {
        Self::ALL
            .iter()
            .find(|(_, n)| *n == self)
            .map_or("linear", |(s, _)| s)
    }

    /// PyTorch's `calculate_gain(nonlinearity, a)`: 1 for linear and
    /// sigmoid, 5/3 for tanh, √2 for relu, √(2/(1+a²)) for leaky_relu
    /// (`a` its negative slope), 3/4 for selu.
    pub fn gain(self, a: f64) -> f64 {
        match self {
            Nonlinearity::Linear | Nonlinearity::Sigmoid => 1.0,
            Nonlinearity::Tanh => 5.0 / 3.0,
            Nonlinearity::Relu => 2f64.sqrt(),
            Nonlinearity::LeakyRelu => (2.0 / (1.0 + a * a)).sqrt(),
            Nonlinearity::Selu => 0.75,
        }
    }
}

impl FanMode {
    pub fn name(self) -> &'static str {
        match self {
            FanMode::FanIn => "fan_in",
            FanMode::FanOut => "fan_out",
        }
    }
}

/// PyTorch's defaults of `kaiming_*_`: `a: 0, mode: fan_in, nonlinearity: leaky_relu`.
fn kaiming_args(a: f64, mode: FanMode, nl: Nonlinearity) -> String {
    let mut v = Vec::new();
    if a != 0.0 {
        v.push(format!("a: {}", num(a)));
    }
    if mode != FanMode::FanIn {
        v.push(format!("mode: {}", mode.name()));
    }
    if nl != Nonlinearity::LeakyRelu {
        v.push(format!("nonlinearity: {}", nl.name()));
    }
    if v.is_empty() {
        String::new()
    } else {
        format!("({})", v.join(", "))
    }
}

fn gain_arg(gain: f64) -> String {
    if gain == 1.0 {
        String::new()
    } else {
        format!("(gain: {})", num(gain))
    }
}

impl Init {
    /// The initialisers that, as PyTorch's, need a weight's fans: a
    /// tensor of two or more dimensions.
    pub fn needs_fans(&self) -> bool {
        matches!(
            self,
            Init::He
                | Init::Xavier
                | Init::KaimingUniform { .. }
                | Init::KaimingNormal { .. }
                | Init::XavierUniform { .. }
                | Init::XavierNormal { .. }
        )
    }
}

impl std::fmt::Display for Init {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Init::Normal { mean, std } => write!(f, "normal({}, {})", num(*mean), num(*std)),
            Init::Uniform { low, high } => write!(f, "uniform({}, {})", num(*low), num(*high)),
            Init::Constant { value } => write!(f, "{}", num(*value)),
            Init::He => write!(f, "he"),
            Init::Xavier => write!(f, "xavier"),
            Init::KaimingUniform {
                a,
                mode,
                nonlinearity,
            } => write!(
                f,
                "kaiming_uniform{}",
                kaiming_args(*a, *mode, *nonlinearity)
            ),
            Init::KaimingNormal {
                a,
                mode,
                nonlinearity,
            } => write!(
                f,
                "kaiming_normal{}",
                kaiming_args(*a, *mode, *nonlinearity)
            ),
            Init::XavierUniform { gain } => write!(f, "xavier_uniform{}", gain_arg(*gain)),
            Init::XavierNormal { gain } => write!(f, "xavier_normal{}", gain_arg(*gain)),
        }
    }
}

/// A window's extent, stride or padding per axis, `[h, w]`; written (in
/// the text form, YAML and `.net` source) as one number when square.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Hw {
    pub h: u64,
    pub w: u64,
}

impl Hw {
    pub const fn square(v: u64) -> Hw {
        Hw { h: v, w: v }
    }
    pub fn is_square(&self) -> bool {
        self.h == self.w
    }
}

impl From<u64> for Hw {
    fn from(v: u64) -> Hw {
        Hw::square(v)
    }
}

impl std::fmt::Display for Hw {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.is_square() {
            write!(f, "{}", self.h)
        } else {
            write!(f, "{}x{}", self.h, self.w)
        }
    }
}

impl Serialize for Hw {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        if self.is_square() {
            s.serialize_u64(self.h)
        } else {
            [self.h, self.w].serialize(s)
        }
    }
}

fn is_one_u64(v: &u64) -> bool {
    *v == 1
}

fn is_true(v: &bool) -> bool {
    *v
}

/// The activation a fused `conv_*`/`dense_*` op applies after the layer
/// (ReLU by default, which is the text and YAML form every ReLU network
/// always had: the field is left out for it). Each one's derivative is a
/// function of its output `y`, so the fused gradients read `y` as ReLU's
/// do: tanh `1 − y²`, sigmoid `y·(1 − y)`, leaky ReLU `[y > 0]` else
/// `slope` (which needs `slope ≥ 0`: then `y > 0` iff `x > 0`).
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub enum Activation {
    #[default]
    Relu,
    Tanh,
    Sigmoid,
    LeakyRelu {
        slope: f64,
    },
}

impl Activation {
    /// Whether this is ReLU (the default, left out of the YAML form).
    pub fn is_relu(&self) -> bool {
        *self == Activation::Relu
    }

    /// The activation of an unfused forward op, if a fused op can apply
    /// it: `relu`, `tanh`, `sigmoid`, and `leaky_relu` with a finite
    /// `slope ≥ 0` (a negative slope makes `y > 0` for `x < 0`, so its
    /// gradient could not be told from `y`).
    pub fn of(op: &Op) -> Option<Activation> {
        match op {
            Op::Relu => Some(Activation::Relu),
            Op::Tanh => Some(Activation::Tanh),
            Op::Sigmoid => Some(Activation::Sigmoid),
            Op::LeakyRelu { slope } if slope.is_finite() && *slope >= 0.0 => {
                Some(Activation::LeakyRelu { slope: *slope })
            }
            _ => None,
        }
    }

    /// The unfused forward op.
    pub fn op(self) -> Op {
        match self {
            Activation::Relu => Op::Relu,
            Activation::Tanh => Op::Tanh,
            Activation::Sigmoid => Op::Sigmoid,
            Activation::LeakyRelu { slope } => Op::LeakyRelu { slope },
        }
    }

    /// The unfused gradient op (inputs: y, dy).
    pub fn grad_op(self) -> Op {
        match self {
            Activation::Relu => Op::ReluGrad,
            Activation::Tanh => Op::TanhGrad,
            Activation::Sigmoid => Op::SigmoidGrad,
            Activation::LeakyRelu { slope } => Op::LeakyReluGrad { slope },
        }
    }

    /// The name of the op, as in `.net` source (`relu`, `tanh`, ...).
    pub fn name(self) -> &'static str {
        self.pick(["relu", "tanh", "sigmoid", "leaky_relu"])
    }

    /// The entry of `names` (relu, tanh, sigmoid, leaky_relu) for this one.
    fn pick(self, names: [&'static str; 4]) -> &'static str {
        match self {
            Activation::Relu => names[0],
            Activation::Tanh => names[1],
            Activation::Sigmoid => names[2],
            Activation::LeakyRelu { .. } => names[3],
        }
    }

    /// The attributes the text form adds after a fused op's own (none for
    /// ReLU, tanh and sigmoid; `slope` for leaky ReLU).
    fn attrs(self, v: &mut Vec<(&'static str, String)>) {
        if let Activation::LeakyRelu { slope } = self {
            v.push(("slope", num(slope)));
        }
    }
}

/// `tanh`, `sigmoid`, or `{leaky_relu: slope}`.
impl Serialize for Activation {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self {
            Activation::LeakyRelu { slope } => {
                use serde::ser::SerializeMap;
                let mut m = s.serialize_map(Some(1))?;
                m.serialize_entry("leaky_relu", slope)?;
                m.end()
            }
            other => s.serialize_str(other.name()),
        }
    }
}

#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(tag = "op", rename_all = "snake_case")]
pub enum Op {
    Input {
        kind: InputKind,
    },
    Param {
        role: ParamRole,
        init: Init,
    },
    /// Inputs: x `[C,H,W]`, weight `[F,C/groups,KH,KW]`, bias `[F]` (absent
    /// when `bias` is false). Taps `dilation` apart; filter group `g` of
    /// `groups` sees channel group `g` only.
    Conv {
        filters: u64,
        size: Hw,
        stride: Hw,
        pad: Hw,
        #[serde(skip_serializing_if = "is_one_u64")]
        dilation: u64,
        #[serde(skip_serializing_if = "is_one_u64")]
        groups: u64,
        #[serde(skip_serializing_if = "is_true")]
        bias: bool,
    },
    Relu,
    /// The paper's response normalisation over the channels of one tower;
    /// `alpha` is used as written (not divided by `size`).
    Lrn {
        size: u64,
        alpha: f64,
        beta: f64,
        k: f64,
    },
    /// Padded positions never win (they are −∞), as in PyTorch.
    MaxPool {
        size: u64,
        stride: u64,
        #[serde(skip_serializing_if = "is_zero_u64")]
        pad: u64,
    },
    /// `tanh(x)`, elementwise.
    Tanh,
    /// `1/(1 + e^−x)`, elementwise.
    Sigmoid,
    /// `x` if `x > 0`, else `slope·x`; `slope` finite and ≥ 0.
    LeakyRelu {
        slope: f64,
    },
    /// Softmax over the class axis of a vector: the model's probabilities.
    /// A network output only (lowering refuses a layer fed by it), so it
    /// has no gradient.
    Softmax,
    /// `[C,H,W]` (or any dims) → `[C·H·W]`, the same values in the same order.
    Flatten,
    /// Average pooling; padded positions are zeros that count in the
    /// divisor (`size²` for every window, PyTorch's `count_include_pad`).
    AvgPool {
        size: u64,
        stride: u64,
        pad: u64,
    },
    /// The mean of each channel plane: `[C,H,W]` → `[C]`.
    GlobalAvgPool,
    /// Inputs: x (flattened), weight `[units, in]`, bias `[units]`.
    Dense {
        units: u64,
    },
    /// Inverted dropout: scales kept values by `1/(1-rate)` in training.
    Dropout {
        rate: f64,
    },
    /// Concatenation along the first (channel) axis, inputs in port order.
    Concat,
    /// The `add` layer: the elementwise sum of two or more inputs of one
    /// type (a residual connection). A forward op, unlike [`Op::Add`], which
    /// sums the gradients autodiff builds.
    Sum,
    /// Batch normalisation over the channels of an image (the features of
    /// a vector). Inputs: x, γ `[C]` (a weight), β `[C]` (a bias), running
    /// mean `[C]`, running variance `[C]`. In training it normalises with
    /// the batch's mean and biased variance and keeps them (side buffers
    /// for its gradients and its `running_update`); in evaluation with the
    /// running statistics.
    BatchNorm {
        momentum: f64,
        eps: f64,
    },
    /// Mean softmax cross-entropy of logits against labels.
    SoftmaxXent,

    // ---- the training step (added by `passes::autodiff`) ----
    /// ∂L/∂logits of the mean loss: `(softmax − target)/N`, the target
    /// `onehot` or, with label smoothing ε, `(1 − ε)·onehot + ε/K` over `K`
    /// classes (the gradient of the cross-entropy against that target).
    /// Inputs: logits, labels.
    SoftmaxXentGrad {
        #[serde(skip_serializing_if = "is_zero")]
        smoothing: f64,
    },
    /// ∂L/∂x of a convolution. Inputs: dy, weight. `in_h`, `in_w`: the size of x.
    ConvGradInput {
        size: Hw,
        stride: Hw,
        pad: Hw,
        in_h: u64,
        in_w: u64,
        #[serde(skip_serializing_if = "is_one_u64")]
        dilation: u64,
        #[serde(skip_serializing_if = "is_one_u64")]
        groups: u64,
    },
    /// ∂L/∂weight, summed over the batch. Inputs: x, dy.
    ConvGradWeight {
        size: Hw,
        stride: Hw,
        pad: Hw,
        #[serde(skip_serializing_if = "is_one_u64")]
        dilation: u64,
        #[serde(skip_serializing_if = "is_one_u64")]
        groups: u64,
    },
    /// ∂L/∂bias, summed over the batch and positions. Input: dy.
    ConvGradBias,
    /// Inputs: y (the ReLU's output), dy.
    ReluGrad,
    /// Inputs: x, y, dy.
    LrnGrad {
        size: u64,
        alpha: f64,
        beta: f64,
        k: f64,
    },
    /// Routes dy to each window's maximum. Inputs: x, dy.
    MaxPoolGrad {
        size: u64,
        stride: u64,
        #[serde(skip_serializing_if = "is_zero_u64")]
        pad: u64,
    },
    /// `dy·(1 − y²)`. Inputs: y (the `tanh`'s output), dy.
    TanhGrad,
    /// `dy·y·(1 − y)`. Inputs: y (the `sigmoid`'s output), dy.
    SigmoidGrad,
    /// `dy` where `y > 0`, else `slope·dy`. Inputs: y (the output), dy.
    LeakyReluGrad {
        slope: f64,
    },
    /// dy reshaped to the forward input's dims. Input: dy.
    FlattenGrad {
        in_dims: Vec<u64>,
    },
    /// Spreads each dy over its window, `/size²`. Input: dy. `in_h`, `in_w`:
    /// the size of x.
    AvgPoolGrad {
        size: u64,
        stride: u64,
        pad: u64,
        in_h: u64,
        in_w: u64,
    },
    /// Spreads each channel's dy over its `h×w` plane, `/(h·w)`. Input: dy.
    GlobalAvgPoolGrad {
        h: u64,
        w: u64,
    },
    /// Inputs: dy, weight. `in_dims`: the dims of x (restored from the flat vector).
    DenseGradInput {
        in_dims: Vec<u64>,
    },
    /// Inputs: x, dy.
    DenseGradWeight,
    /// Input: dy.
    DenseGradBias,
    /// Applies the same mask as the forward dropout `of`. Input: dy.
    DropoutGrad {
        rate: f64,
        #[serde(serialize_with = "ser_id")]
        of: NodeId,
    },
    /// Channels `start..start+len` of the input (the gradient of a concat).
    Slice {
        start: u64,
        len: u64,
    },
    /// Elementwise sum of all inputs (gradients reaching one value by several paths).
    Add,
    /// ∂L/∂x of a training-mode batchnorm (through the batch statistics
    /// too). Inputs: x, γ, dy; reads its forward node's batch statistics.
    BatchNormGradInput {
        eps: f64,
    },
    /// ∂L/∂γ = Σ dy·x̂ per channel. Inputs: x, dy; reads the batch statistics.
    BatchNormGradGamma {
        eps: f64,
    },
    /// ∂L/∂β = Σ dy per channel. Input: dy.
    BatchNormGradBeta,
    /// Folds the batch statistics of the batchnorm it records into its
    /// running statistics, in place: `r ← (1 − momentum)·r + momentum·s`
    /// (the variance unbiased). Inputs: running mean, running variance,
    /// the batchnorm (whose statistics it reads). Not a gradient.
    RunningUpdate {
        momentum: f64,
    },
    /// The paper's update, in place, with `ε = lr·lr_mult` (the schedule's
    /// learning rate at run time, times this parameter's multiplier) and
    /// `λ = weight_decay·decay_mult`:
    /// `v ← momentum·v − λ·ε·w − ε·g; w ← w + v`.
    /// With `nesterov`, the step looks ahead along the new velocity:
    /// `d = λ·ε·w + ε·g; v ← momentum·v − d; w ← w + momentum·v − d`
    /// (PyTorch's `SGD(nesterov=True)` with its buffer `b = −v/ε`, the same
    /// trajectory while ε is constant). Inputs: w, v, g.
    SgdUpdate {
        momentum: f64,
        weight_decay: f64,
        #[serde(skip_serializing_if = "std::ops::Not::not")]
        nesterov: bool,
        #[serde(skip_serializing_if = "is_one")]
        lr_mult: f64,
        #[serde(skip_serializing_if = "is_one")]
        decay_mult: f64,
    },

    // ---- fused ops (added by `passes::fuse`; each is exactly the
    // composition it names, computed in fewer passes over memory) ----
    /// `act(conv(x, w) + b)` (`conv_relu`, `conv_tanh`, `conv_sigmoid`,
    /// `conv_leaky_relu`). Inputs as `conv`.
    ConvRelu {
        filters: u64,
        size: Hw,
        stride: Hw,
        pad: Hw,
        #[serde(skip_serializing_if = "is_one_u64")]
        dilation: u64,
        #[serde(skip_serializing_if = "is_one_u64")]
        groups: u64,
        #[serde(skip_serializing_if = "is_true")]
        bias: bool,
        #[serde(skip_serializing_if = "Activation::is_relu")]
        act: Activation,
    },
    /// `act(x·Wᵀ + b)` (`dense_relu`, `dense_tanh`, ...). Inputs as `dense`.
    DenseRelu {
        units: u64,
        #[serde(skip_serializing_if = "Activation::is_relu")]
        act: Activation,
    },
    /// `dropout(relu(x·Wᵀ + b))`, the mask being that of the dropout named
    /// `of`: the node this op replaced, which is no longer in the graph, so
    /// `of` is not a relation but the key of the mask's random stream
    /// (`rng::dropout_stream`), the same as the dropout's. Inputs as `dense`.
    DenseReluDropout {
        units: u64,
        rate: f64,
        of: String,
    },
    /// `maxpool(lrn(x))`, image by image so that pooling reads the LRN
    /// output from cache. Input: x.
    LrnMaxPool {
        size: u64,
        alpha: f64,
        beta: f64,
        k: f64,
        pool: u64,
        stride: u64,
    },
    /// `conv_grad_input` of a fused conv: dy masked by `[y > 0]` first (or
    /// times the derivative of `act` from y).
    /// Inputs: dy, weight, y (the `conv_relu`).
    ConvReluGradInput {
        size: Hw,
        stride: Hw,
        pad: Hw,
        in_h: u64,
        in_w: u64,
        #[serde(skip_serializing_if = "is_one_u64")]
        dilation: u64,
        #[serde(skip_serializing_if = "is_one_u64")]
        groups: u64,
        #[serde(skip_serializing_if = "Activation::is_relu")]
        act: Activation,
    },
    /// Inputs: x, dy, y.
    ConvReluGradWeight {
        size: Hw,
        stride: Hw,
        pad: Hw,
        #[serde(skip_serializing_if = "is_one_u64")]
        dilation: u64,
        #[serde(skip_serializing_if = "is_one_u64")]
        groups: u64,
        #[serde(skip_serializing_if = "Activation::is_relu")]
        act: Activation,
    },
    /// Inputs: dy, y.
    ConvReluGradBias {
        #[serde(skip_serializing_if = "Activation::is_relu")]
        act: Activation,
    },
    /// `dense_grad_input` of a `dense_relu` (`dropout` = 0) or a
    /// `dense_relu_dropout`: dy masked by `[y > 0]` (which is the ReLU's mask
    /// and the dropout's together) and scaled by `1/(1 − dropout)`; of a
    /// `dense_tanh` (etc., `dropout` = 0): dy times the derivative from y.
    /// Inputs: dy, weight, y.
    DenseReluGradInput {
        in_dims: Vec<u64>,
        dropout: f64,
        #[serde(skip_serializing_if = "Activation::is_relu")]
        act: Activation,
    },
    /// Inputs: x, dy, y.
    DenseReluGradWeight {
        dropout: f64,
        #[serde(skip_serializing_if = "Activation::is_relu")]
        act: Activation,
    },
    /// Inputs: dy, y.
    DenseReluGradBias {
        dropout: f64,
        #[serde(skip_serializing_if = "Activation::is_relu")]
        act: Activation,
    },
    /// The gradient of an `lrn_maxpool`. Inputs: x, y (the `lrn_maxpool`), dy.
    LrnMaxPoolGrad {
        size: u64,
        alpha: f64,
        beta: f64,
        k: f64,
        pool: u64,
        stride: u64,
    },
    /// A chain of elementwise gradient ops in one pass: the sum of the
    /// first `parts` inputs, times the mask of the forward dropout `of` (and
    /// `1/(1 − rate)`) if `dropout` is `(rate, of)`, times `[y > 0]` if
    /// `relu` (then the last input is y, the ReLU's output).
    GradChain {
        parts: u64,
        #[serde(serialize_with = "ser_mask")]
        dropout: Option<(f64, NodeId)>,
        relu: bool,
    },
}

impl Op {
    /// The name used in the text form and in `.net` source.
    pub fn mnemonic(&self) -> &'static str {
        match self {
            Op::Input { .. } => "input",
            Op::Param { .. } => "param",
            Op::Conv { .. } => "conv",
            Op::Relu => "relu",
            Op::Lrn { .. } => "lrn",
            Op::MaxPool { .. } => "maxpool",
            Op::Tanh => "tanh",
            Op::Sigmoid => "sigmoid",
            Op::LeakyRelu { .. } => "leaky_relu",
            Op::Softmax => "softmax",
            Op::Flatten => "flatten",
            Op::AvgPool { .. } => "avgpool",
            Op::GlobalAvgPool => "global_avgpool",
            Op::TanhGrad => "tanh_grad",
            Op::SigmoidGrad => "sigmoid_grad",
            Op::LeakyReluGrad { .. } => "leaky_relu_grad",
            Op::FlattenGrad { .. } => "flatten_grad",
            Op::AvgPoolGrad { .. } => "avgpool_grad",
            Op::GlobalAvgPoolGrad { .. } => "global_avgpool_grad",
            Op::Dense { .. } => "dense",
            Op::Dropout { .. } => "dropout",
            Op::Concat => "concat",
            Op::Sum => "sum",
            Op::BatchNorm { .. } => "batchnorm",
            Op::BatchNormGradInput { .. } => "batchnorm_grad_input",
            Op::BatchNormGradGamma { .. } => "batchnorm_grad_gamma",
            Op::BatchNormGradBeta => "batchnorm_grad_beta",
            Op::RunningUpdate { .. } => "running_update",
            Op::SoftmaxXent => "softmax_xent",
            Op::SoftmaxXentGrad { .. } => "softmax_xent_grad",
            Op::ConvGradInput { .. } => "conv_grad_input",
            Op::ConvGradWeight { .. } => "conv_grad_weight",
            Op::ConvGradBias => "conv_grad_bias",
            Op::ReluGrad => "relu_grad",
            Op::LrnGrad { .. } => "lrn_grad",
            Op::MaxPoolGrad { .. } => "maxpool_grad",
            Op::DenseGradInput { .. } => "dense_grad_input",
            Op::DenseGradWeight => "dense_grad_weight",
            Op::DenseGradBias => "dense_grad_bias",
            Op::DropoutGrad { .. } => "dropout_grad",
            Op::Slice { .. } => "slice",
            Op::Add => "add",
            Op::SgdUpdate { .. } => "sgd_update",
            Op::ConvRelu { act, .. } => {
                act.pick(["conv_relu", "conv_tanh", "conv_sigmoid", "conv_leaky_relu"])
            }
            Op::DenseRelu { act, .. } => act.pick([
                "dense_relu",
                "dense_tanh",
                "dense_sigmoid",
                "dense_leaky_relu",
            ]),
            Op::DenseReluDropout { .. } => "dense_relu_dropout",
            Op::LrnMaxPool { .. } => "lrn_maxpool",
            Op::ConvReluGradInput { act, .. } => act.pick([
                "conv_relu_grad_input",
                "conv_tanh_grad_input",
                "conv_sigmoid_grad_input",
                "conv_leaky_relu_grad_input",
            ]),
            Op::ConvReluGradWeight { act, .. } => act.pick([
                "conv_relu_grad_weight",
                "conv_tanh_grad_weight",
                "conv_sigmoid_grad_weight",
                "conv_leaky_relu_grad_weight",
            ]),
            Op::ConvReluGradBias { act } => act.pick([
                "conv_relu_grad_bias",
                "conv_tanh_grad_bias",
                "conv_sigmoid_grad_bias",
                "conv_leaky_relu_grad_bias",
            ]),
            Op::DenseReluGradInput { act, .. } => act.pick([
                "dense_relu_grad_input",
                "dense_tanh_grad_input",
                "dense_sigmoid_grad_input",
                "dense_leaky_relu_grad_input",
            ]),
            Op::DenseReluGradWeight { act, .. } => act.pick([
                "dense_relu_grad_weight",
                "dense_tanh_grad_weight",
                "dense_sigmoid_grad_weight",
                "dense_leaky_relu_grad_weight",
            ]),
            Op::DenseReluGradBias { act, .. } => act.pick([
                "dense_relu_grad_bias",
                "dense_tanh_grad_bias",
                "dense_sigmoid_grad_bias",
                "dense_leaky_relu_grad_bias",
            ]),
            Op::LrnMaxPoolGrad { .. } => "lrn_maxpool_grad",
            Op::GradChain { .. } => "grad_chain",
        }
    }

    /// A `conv_relu` as its `conv`, and a fused conv gradient as its plain
    /// one (same hyperparameters); any other op unchanged.
    pub fn unfused_conv(&self) -> Op {
        match self.clone() {
            Op::ConvRelu {
                filters,
                size,
                stride,
                pad,
                dilation,
                groups,
                bias,
                ..
            } => Op::Conv {
                filters,
                size,
                stride,
                pad,
                dilation,
                groups,
                bias,
            },
            Op::ConvReluGradInput {
                size,
                stride,
                pad,
                in_h,
                in_w,
                dilation,
                groups,
                ..
            } => Op::ConvGradInput {
                size,
                stride,
                pad,
                in_h,
                in_w,
                dilation,
                groups,
            },
            Op::ConvReluGradWeight {
                size,
                stride,
                pad,
                dilation,
                groups,
                ..
            } => Op::ConvGradWeight {
                size,
                stride,
                pad,
                dilation,
                groups,
            },
            other => other,
        }
    }

    /// The activation of a fused conv or dense layer, or of one of its
    /// fused gradients (a `dense_relu_dropout`'s is ReLU); `None` for
    /// every other op.
    pub fn fused_act(&self) -> Option<Activation> {
        match self {
            Op::ConvRelu { act, .. }
            | Op::DenseRelu { act, .. }
            | Op::ConvReluGradInput { act, .. }
            | Op::ConvReluGradWeight { act, .. }
            | Op::ConvReluGradBias { act }
            | Op::DenseReluGradInput { act, .. }
            | Op::DenseReluGradWeight { act, .. }
            | Op::DenseReluGradBias { act, .. } => Some(*act),
            Op::DenseReluDropout { .. } => Some(Activation::Relu),
            _ => None,
        }
    }

    /// The geometry of a convolution or of one of its gradients, fused or
    /// not: (size, stride, pad, dilation, groups).
    pub fn conv_geometry(&self) -> Option<(Hw, Hw, Hw, u64, u64)> {
        match self {
            Op::Conv {
                size,
                stride,
                pad,
                dilation,
                groups,
                ..
            }
            | Op::ConvRelu {
                size,
                stride,
                pad,
                dilation,
                groups,
                ..
            }
            | Op::ConvGradInput {
                size,
                stride,
                pad,
                dilation,
                groups,
                ..
            }
            | Op::ConvReluGradInput {
                size,
                stride,
                pad,
                dilation,
                groups,
                ..
            }
            | Op::ConvGradWeight {
                size,
                stride,
                pad,
                dilation,
                groups,
            }
            | Op::ConvReluGradWeight {
                size,
                stride,
                pad,
                dilation,
                groups,
                ..
            } => Some((*size, *stride, *pad, *dilation, *groups)),
            _ => None,
        }
    }

    /// The forward dropout whose mask this op applies: a `dropout_grad`'s,
    /// or a `grad_chain`'s with a dropout.
    pub fn mask_of(&self) -> Option<NodeId> {
        match self {
            Op::DropoutGrad { of, .. }
            | Op::GradChain {
                dropout: Some((_, of)),
                ..
            } => Some(*of),
            _ => None,
        }
    }

    /// [`Op::mask_of`], to rewrite (a graph copy that renumbers its nodes).
    pub fn mask_of_mut(&mut self) -> Option<&mut NodeId> {
        match self {
            Op::DropoutGrad { of, .. }
            | Op::GradChain {
                dropout: Some((_, of)),
                ..
            } => Some(of),
            _ => None,
        }
    }

    /// Which gradient of its layer a layer-gradient op computes
    /// ([`Op::is_layer_grad`]); `None` for every other op.
    pub fn grad_part(&self) -> Option<GradPart> {
        match self {
            Op::ConvGradInput { .. }
            | Op::DenseGradInput { .. }
            | Op::ConvReluGradInput { .. }
            | Op::DenseReluGradInput { .. } => Some(GradPart::Input),
            Op::ConvGradWeight { .. }
            | Op::DenseGradWeight
            | Op::ConvReluGradWeight { .. }
            | Op::DenseReluGradWeight { .. } => Some(GradPart::Weight),
            Op::ConvGradBias
            | Op::DenseGradBias
            | Op::ConvReluGradBias { .. }
            | Op::DenseReluGradBias { .. } => Some(GradPart::Bias),
            _ => None,
        }
    }

    /// Hyperparameters as `key=value` pairs in a fixed order, node ids
    /// written as their index (`%12`).
    pub fn attrs(&self) -> Vec<(&'static str, String)> {
        self.attrs_with(&|n| format!("%{}", n.index()))
    }

    /// [`Op::attrs`], node ids written by `id`.
    pub fn attrs_with(&self, id: &dyn Fn(NodeId) -> String) -> Vec<(&'static str, String)> {
        match self {
            Op::Input { kind } => vec![("kind", format!("{kind:?}").to_lowercase())],
            Op::Param { role, init } => {
                vec![
                    ("role", role.suffix().to_string()),
                    ("init", init.to_string()),
                ]
            }
            Op::Conv {
                filters,
                size,
                stride,
                pad,
                dilation,
                groups,
                bias,
            } => {
                let mut v = vec![
                    ("filters", filters.to_string()),
                    ("size", size.to_string()),
                    ("stride", stride.to_string()),
                    ("pad", pad.to_string()),
                ];
                conv_extra(&mut v, *dilation, *groups, *bias);
                v
            }
            Op::ConvRelu { act, .. } => {
                let mut v = self.unfused_conv().attrs_with(id);
                act.attrs(&mut v);
                v
            }
            Op::Lrn {
                size,
                alpha,
                beta,
                k,
            } => vec![
                ("size", size.to_string()),
                ("alpha", num(*alpha)),
                ("beta", num(*beta)),
                ("k", num(*k)),
            ],
            Op::MaxPool { size, stride, pad } | Op::MaxPoolGrad { size, stride, pad } => {
                let mut v = vec![("size", size.to_string()), ("stride", stride.to_string())];
                // Printed only when set, so unpadded pools read as before.
                if *pad != 0 {
                    v.push(("pad", pad.to_string()));
                }
                v
            }
            Op::LeakyRelu { slope } | Op::LeakyReluGrad { slope } => {
                vec![("slope", num(*slope))]
            }
            Op::AvgPool { size, stride, pad } => vec![
                ("size", size.to_string()),
                ("stride", stride.to_string()),
                ("pad", pad.to_string()),
            ],
            Op::AvgPoolGrad {
                size,
                stride,
                pad,
                in_h,
                in_w,
            } => vec![
                ("size", size.to_string()),
                ("stride", stride.to_string()),
                ("pad", pad.to_string()),
                ("in", format!("{in_h}x{in_w}")),
            ],
            Op::GlobalAvgPoolGrad { h, w } => vec![("in", format!("{h}x{w}"))],
            Op::FlattenGrad { in_dims } => vec![(
                "in",
                in_dims
                    .iter()
                    .map(u64::to_string)
                    .collect::<Vec<_>>()
                    .join("x"),
            )],
            Op::Dense { units } => vec![("units", units.to_string())],
            Op::Dropout { rate } => vec![("rate", num(*rate))],
            Op::BatchNorm { momentum, eps } => {
                vec![("momentum", num(*momentum)), ("eps", num(*eps))]
            }
            Op::BatchNormGradInput { eps } | Op::BatchNormGradGamma { eps } => {
                vec![("eps", num(*eps))]
            }
            Op::RunningUpdate { momentum } => vec![("momentum", num(*momentum))],
            Op::ConvReluGradInput { act, .. } | Op::ConvReluGradWeight { act, .. } => {
                let mut v = self.unfused_conv().attrs_with(id);
                act.attrs(&mut v);
                v
            }
            Op::ConvReluGradBias { act } => {
                let mut v = vec![];
                act.attrs(&mut v);
                v
            }
            Op::ConvGradInput {
                size,
                stride,
                pad,
                in_h,
                in_w,
                dilation,
                groups,
            } => {
                let mut v = vec![
                    ("size", size.to_string()),
                    ("stride", stride.to_string()),
                    ("pad", pad.to_string()),
                    ("in", format!("{in_h}x{in_w}")),
                ];
                conv_extra(&mut v, *dilation, *groups, true);
                v
            }
            Op::ConvGradWeight {
                size,
                stride,
                pad,
                dilation,
                groups,
            } => {
                let mut v = vec![
                    ("size", size.to_string()),
                    ("stride", stride.to_string()),
                    ("pad", pad.to_string()),
                ];
                conv_extra(&mut v, *dilation, *groups, true);
                v
            }
            Op::LrnGrad {
                size,
                alpha,
                beta,
                k,
            } => vec![
                ("size", size.to_string()),
                ("alpha", num(*alpha)),
                ("beta", num(*beta)),
                ("k", num(*k)),
            ],
            Op::DenseGradInput { in_dims } => vec![(
                "in",
                in_dims
                    .iter()
                    .map(u64::to_string)
                    .collect::<Vec<_>>()
                    .join("x"),
            )],
            Op::DropoutGrad { rate, of } => vec![("rate", num(*rate)), ("of", id(*of))],
            Op::Slice { start, len } => {
                vec![("start", start.to_string()), ("len", len.to_string())]
            }
            Op::SoftmaxXentGrad { smoothing } => {
                if *smoothing == 0.0 {
                    vec![]
                } else {
                    vec![("smoothing", num(*smoothing))]
                }
            }
            Op::SgdUpdate {
                momentum,
                weight_decay,
                nesterov,
                lr_mult,
                decay_mult,
            } => {
                // The settings beyond the paper's show only when they are set.
                let mut v = vec![
                    ("momentum", num(*momentum)),
                    ("weight_decay", num(*weight_decay)),
                ];
                if *nesterov {
                    v.push(("nesterov", "true".into()));
                }
                if *lr_mult != 1.0 {
                    v.push(("lr_mult", num(*lr_mult)));
                }
                if *decay_mult != 1.0 {
                    v.push(("decay_mult", num(*decay_mult)));
                }
                v
            }
            Op::DenseRelu { units, act } => {
                let mut v = vec![("units", units.to_string())];
                act.attrs(&mut v);
                v
            }
            Op::DenseReluDropout { units, rate, of } => vec![
                ("units", units.to_string()),
                ("rate", num(*rate)),
                ("of", format!("{of:?}")),
            ],
            Op::LrnMaxPool {
                size,
                alpha,
                beta,
                k,
                pool,
                stride,
            }
            | Op::LrnMaxPoolGrad {
                size,
                alpha,
                beta,
                k,
                pool,
                stride,
            } => vec![
                ("size", size.to_string()),
                ("alpha", num(*alpha)),
                ("beta", num(*beta)),
                ("k", num(*k)),
                ("pool", pool.to_string()),
                ("stride", stride.to_string()),
            ],
            Op::DenseReluGradInput {
                in_dims,
                dropout,
                act,
            } => {
                let mut v = vec![
                    (
                        "in",
                        in_dims
                            .iter()
                            .map(u64::to_string)
                            .collect::<Vec<_>>()
                            .join("x"),
                    ),
                    ("dropout", num(*dropout)),
                ];
                act.attrs(&mut v);
                v
            }
            Op::DenseReluGradWeight { dropout, act } | Op::DenseReluGradBias { dropout, act } => {
                let mut v = vec![("dropout", num(*dropout))];
                act.attrs(&mut v);
                v
            }
            Op::GradChain {
                parts,
                dropout,
                relu,
            } => {
                let mut v = vec![("parts", parts.to_string())];
                if let Some((rate, of)) = dropout {
                    v.push(("dropout", num(*rate)));
                    v.push(("of", id(*of)));
                }
                v.push(("relu", relu.to_string()));
                v
            }
            Op::Relu
            | Op::Tanh
            | Op::Sigmoid
            | Op::Softmax
            | Op::Flatten
            | Op::GlobalAvgPool
            | Op::TanhGrad
            | Op::SigmoidGrad
            | Op::Concat
            | Op::Sum
            | Op::BatchNormGradBeta
            | Op::SoftmaxXent
            | Op::ConvGradBias
            | Op::ReluGrad
            | Op::DenseGradWeight
            | Op::DenseGradBias
            | Op::Add => vec![],
        }
    }

    /// True for ops that hold learned state.
    pub fn is_param(&self) -> bool {
        matches!(self, Op::Param { .. })
    }

    /// Ops of the forward pass (inputs and parameters included, unfused or
    /// fused): what evaluation runs.
    pub fn is_forward(&self) -> bool {
        matches!(
            self,
            Op::Input { .. }
                | Op::Param { .. }
                | Op::Conv { .. }
                | Op::Relu
                | Op::Lrn { .. }
                | Op::MaxPool { .. }
                | Op::Tanh
                | Op::Sigmoid
                | Op::LeakyRelu { .. }
                | Op::Softmax
                | Op::Flatten
                | Op::AvgPool { .. }
                | Op::GlobalAvgPool
                | Op::Dense { .. }
                | Op::Dropout { .. }
                | Op::Concat
                | Op::Sum
                | Op::BatchNorm { .. }
                | Op::SoftmaxXent
                | Op::ConvRelu { .. }
                | Op::DenseRelu { .. }
                | Op::DenseReluDropout { .. }
                | Op::LrnMaxPool { .. }
        )
    }

    /// The gradients of a convolution or dense layer (`F.dx`, `F.dw`,
    /// `F.db`), fused or not: one kernel call computes a layer's group.
    pub fn is_layer_grad(&self) -> bool {
        matches!(
            self,
            Op::ConvGradInput { .. }
                | Op::ConvGradWeight { .. }
                | Op::ConvGradBias
                | Op::DenseGradInput { .. }
                | Op::DenseGradWeight
                | Op::DenseGradBias
                | Op::ConvReluGradInput { .. }
                | Op::ConvReluGradWeight { .. }
                | Op::ConvReluGradBias { .. }
                | Op::DenseReluGradInput { .. }
                | Op::DenseReluGradWeight { .. }
                | Op::DenseReluGradBias { .. }
        )
    }

    /// Ops of the backward pass: gradients (and the `slice`/`add` autodiff
    /// builds them with).
    pub fn is_backward(&self) -> bool {
        self.is_layer_grad()
            || matches!(
                self,
                Op::SoftmaxXentGrad { .. }
                    | Op::ReluGrad
                    | Op::LrnGrad { .. }
                    | Op::MaxPoolGrad { .. }
                    | Op::TanhGrad
                    | Op::SigmoidGrad
                    | Op::LeakyReluGrad { .. }
                    | Op::FlattenGrad { .. }
                    | Op::AvgPoolGrad { .. }
                    | Op::GlobalAvgPoolGrad { .. }
                    | Op::DropoutGrad { .. }
                    | Op::Slice { .. }
                    | Op::Add
                    | Op::LrnMaxPoolGrad { .. }
                    | Op::GradChain { .. }
                    | Op::BatchNormGradInput { .. }
                    | Op::BatchNormGradGamma { .. }
                    | Op::BatchNormGradBeta
            )
    }
}

/// The conv hyperparameters printed only when they differ from the
/// default, so the text of a plain convolution stays as it always was.
fn conv_extra(v: &mut Vec<(&'static str, String)>, dilation: u64, groups: u64, bias: bool) {
    if dilation != 1 {
        v.push(("dilation", dilation.to_string()));
    }
    if groups != 1 {
        v.push(("groups", groups.to_string()));
    }
    if !bias {
        v.push(("bias", "false".into()));
    }
}

/// A fixed, round-trippable float format: shortest representation that
/// parses back to the same `f64` (Rust's `Display` for `f64`), with
/// exponent form for very small or large magnitudes.
pub fn num(v: f64) -> String {
    let a = v.abs();
    if a != 0.0 && !(1e-3..1e7).contains(&a) {
        format!("{v:e}")
    } else {
        format!("{v}")
    }
}
