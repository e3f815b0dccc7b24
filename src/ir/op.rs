//! The closed set of operations. Forward layers, inputs and parameters;
//! later passes add the training step's ops. Backends match on `Op`
//! exhaustively, so adding a variant is a compile error everywhere it must
//! be handled. Hyperparameters here are already validated by lowering.

use serde::Serialize;

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
}

impl std::fmt::Display for Init {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Init::Normal { mean, std } => write!(f, "normal({}, {})", num(*mean), num(*std)),
            Init::Uniform { low, high } => write!(f, "uniform({}, {})", num(*low), num(*high)),
            Init::Constant { value } => write!(f, "{}", num(*value)),
            Init::He => write!(f, "he"),
            Init::Xavier => write!(f, "xavier"),
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
    /// Inputs: x `[C,H,W]`, weight `[F,C,K,K]`, bias `[F]`.
    Conv {
        filters: u64,
        size: u64,
        stride: u64,
        pad: u64,
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
    MaxPool {
        size: u64,
        stride: u64,
    },
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
    /// Mean softmax cross-entropy of logits against labels.
    SoftmaxXent,
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
            Op::Dense { .. } => "dense",
            Op::Dropout { .. } => "dropout",
            Op::Concat => "concat",
            Op::SoftmaxXent => "softmax_xent",
        }
    }

    /// Hyperparameters as `key=value` pairs in a fixed order.
    pub fn attrs(&self) -> Vec<(&'static str, String)> {
        match self {
            Op::Input { kind } => vec![("kind", format!("{kind:?}").to_lowercase())],
            Op::Param { role, init } => {
                vec![
                    ("role", format!("{role:?}").to_lowercase()),
                    ("init", init.to_string()),
                ]
            }
            Op::Conv {
                filters,
                size,
                stride,
                pad,
            } => vec![
                ("filters", filters.to_string()),
                ("size", size.to_string()),
                ("stride", stride.to_string()),
                ("pad", pad.to_string()),
            ],
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
            Op::MaxPool { size, stride } => {
                vec![("size", size.to_string()), ("stride", stride.to_string())]
            }
            Op::Dense { units } => vec![("units", units.to_string())],
            Op::Dropout { rate } => vec![("rate", num(*rate))],
            Op::Relu | Op::Concat | Op::SoftmaxXent => vec![],
        }
    }

    /// True for ops that hold learned state.
    pub fn is_param(&self) -> bool {
        matches!(self, Op::Param { .. })
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
