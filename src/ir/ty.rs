//! Value types. Activations are per example (the batch is implicit and
//! the same for every activation of a graph); parameters are not batched.

use serde::Serialize;

#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Ty {
    /// `N × dims` f32: per-example dimensions, channels first.
    Act { dims: Vec<u64> },
    /// Learned f32 tensor of exactly `dims`.
    Param { dims: Vec<u64> },
    /// One label in `0..classes` per example.
    Labels { classes: u64 },
    /// One f32 for the whole batch.
    Scalar,
    /// No value: the node updates state in place (an optimiser step).
    Effect,
}

impl Ty {
    /// Elements per example (activations) or in total (parameters).
    /// Callers guarantee no overflow: lowering checks every product.
    pub fn numel(&self) -> u64 {
        match self {
            Ty::Act { dims } | Ty::Param { dims } => dims.iter().product(),
            Ty::Labels { .. } | Ty::Scalar => 1,
            Ty::Effect => 0,
        }
    }

    pub fn dims(&self) -> &[u64] {
        match self {
            Ty::Act { dims } | Ty::Param { dims } => dims,
            _ => &[],
        }
    }
}

impl std::fmt::Display for Ty {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let list = |d: &[u64]| d.iter().map(u64::to_string).collect::<Vec<_>>().join(",");
        match self {
            Ty::Act { dims } => write!(f, "N×[{}]", list(dims)),
            Ty::Param { dims } => write!(f, "[{}]", list(dims)),
            Ty::Labels { classes } => write!(f, "N×class({classes})"),
            Ty::Scalar => write!(f, "scalar"),
            Ty::Effect => write!(f, "effect"),
        }
    }
}
