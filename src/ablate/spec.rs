//! The YAML description of a set of variants (for `netc ablate --spec` and
//! `netc sweep`):
//!
//! ```yaml
//! network: networks/alexnet-fmnist.net
//! out: sweeps/fmnist            # variants, runs and the comparison table
//! train: { epochs: 4, max_steps: 150, seed: 0 }   # the same for every variant
//! target_train_error: 0.25    # optional: report the steps each variant needs to reach it
//! variants:
//!   - name: baseline
//!   - name: no-lrn
//!     changes: [no-lrn]
//!   - name: wide-and-fast
//!     changes: [one-tower, "conv1.filters=64", "train.sgd.lr=0.02"]
//! ```

use std::path::{Path, PathBuf};

use super::Change;

#[derive(Clone, Debug, PartialEq, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Spec {
    pub network: PathBuf,
    #[serde(default = "default_out")]
    pub out: PathBuf,
    #[serde(default)]
    pub train: TrainOverrides,
    /// A training top-1 error to race to (the paper's figure 1 uses 0.25):
    /// the comparison then reports the steps and epochs each variant took
    /// to reach it, and `train-error.svg` draws every variant's training
    /// error against the steps taken.
    #[serde(default)]
    pub target_train_error: Option<f64>,
    pub variants: Vec<Variant>,
}

fn default_out() -> PathBuf {
    PathBuf::from("sweep")
}

#[derive(Clone, Debug, Default, PartialEq, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TrainOverrides {
    pub epochs: Option<u64>,
    pub batch: Option<u64>,
    pub seed: Option<u64>,
    pub max_steps: Option<u64>,
    pub data: Option<PathBuf>,
}

#[derive(Clone, Debug, PartialEq, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Variant {
    pub name: String,
    #[serde(default)]
    pub changes: Vec<String>,
}

impl Variant {
    pub fn parsed_changes(&self) -> Result<Vec<Change>, String> {
        self.changes.iter().map(|c| c.parse()).collect()
    }
}

#[derive(Debug, thiserror::Error)]
pub enum SpecError {
    #[error("cannot read `{path}`: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("`{path}` is not a valid spec: {reason}")]
    Invalid { path: PathBuf, reason: String },
}

pub fn load(path: &Path) -> Result<Spec, SpecError> {
    let text = std::fs::read_to_string(path).map_err(|source| SpecError::Read {
        path: path.to_path_buf(),
        source,
    })?;
    let spec: Spec = serde_yaml::from_str(&text).map_err(|e| SpecError::Invalid {
        path: path.to_path_buf(),
        reason: e.to_string(),
    })?;
    let invalid = |reason: String| SpecError::Invalid {
        path: path.to_path_buf(),
        reason,
    };
    if spec.variants.is_empty() {
        return Err(invalid("no variants".into()));
    }
    if let Some(t) = spec.target_train_error
        && !(t > 0.0 && t < 1.0)
    {
        return Err(invalid(format!(
            "target_train_error {t} is not a fraction between 0 and 1 (25% is 0.25)"
        )));
    }
    let mut names = std::collections::HashSet::new();
    for v in &spec.variants {
        if v.name.is_empty()
            || !v
                .name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
        {
            return Err(invalid(format!(
                "variant name `{}` must be letters, digits, `-` or `_`",
                v.name
            )));
        }
        if !names.insert(v.name.clone()) {
            return Err(invalid(format!("variant `{}` appears twice", v.name)));
        }
        v.parsed_changes()
            .map_err(|e| invalid(format!("variant `{}`: {e}", v.name)))?;
    }
    Ok(spec)
}
