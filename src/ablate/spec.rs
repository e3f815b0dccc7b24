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
//!
//! Assumes a file of ordinary size. Guarantees: a spec nested deeper than
//! [`MAX_DEPTH`] (flow brackets, block indentation or `- ` markers, as
//! [`nesting_depth`] counts them on the raw text) is refused before it is
//! parsed, with the depth and the line, so a hostile file cannot make the
//! parser take seconds or exhaust the stack; every other error names the
//! file.

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

/// The deepest nesting a spec may have; a real one nests 3 or 4 deep.
pub const MAX_DEPTH: usize = 64;

/// An upper bound of the nesting depth of the YAML `text`, and the 1-based
/// line where it is reached: per line, the indentation (each nested block
/// is indented further) plus the `- ` and `? ` markers that open the line
/// (`- - x` nests twice), plus the flow brackets (`[`, `{`) open at any
/// point of it, carried over from the lines before. Quoted strings and
/// comments are skipped, so a bracket inside them does not count.
pub fn nesting_depth(text: &str) -> (usize, usize) {
    let (mut deepest, mut at) = (0, 0);
    let mut flow = 0usize;
    for (n, line) in text.lines().enumerate() {
        let mut rest = line.trim_start_matches([' ', '\t']);
        let mut depth = line.len() - rest.len();
        while let Some(r) = ["- ", "-\t", "? ", "?\t"]
            .iter()
            .find_map(|m| rest.strip_prefix(m))
        {
            rest = r.trim_start_matches([' ', '\t']);
            depth += 1;
        }
        let mut widest = flow;
        let mut quote: Option<char> = None;
        let mut prev = ' ';
        for c in rest.chars() {
            match quote {
                Some(q) if c == q => quote = None,
                Some(_) => {}
                None => match c {
                    '\'' | '"' => quote = Some(c),
                    '#' if prev == ' ' || prev == '\t' => break,
                    '[' | '{' => {
                        flow += 1;
                        widest = widest.max(flow);
                    }
                    ']' | '}' => flow = flow.saturating_sub(1),
                    _ => {}
                },
            }
            prev = c;
        }
        if depth + widest > deepest {
            (deepest, at) = (depth + widest, n + 1);
        }
    }
    (deepest, at)
}

pub fn load(path: &Path) -> Result<Spec, SpecError> {
    let text = std::fs::read_to_string(path).map_err(|source| SpecError::Read {
        path: path.to_path_buf(),
        source,
    })?;
    let (depth, line) = nesting_depth(&text);
    if depth > MAX_DEPTH {
        return Err(SpecError::Invalid {
            path: path.to_path_buf(),
            reason: format!(
                "line {line} nests {depth} deep (indentation, `- ` markers and brackets); a spec may nest at most {MAX_DEPTH} deep"
            ),
        });
    }
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

#[cfg(test)]
mod tests {
    use super::*;

    /// A spec nested 100,000 deep took 30 s to refuse; it is now refused
    /// at once, with the depth, in every form of nesting; a real spec's
    /// depth is small.
    #[test]
    fn a_deeply_nested_spec_is_refused_before_parsing() {
        let dir = std::env::temp_dir().join(format!("netc-spec-depth-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let n = 100_000;
        let deep = [
            format!("network: {}{}", "[".repeat(n), "]".repeat(n)),
            format!("network: {}x{}", "{a: ".repeat(n), "}".repeat(n)),
            format!("variants:\n{}x\n", "- ".repeat(n)),
            (0..2000)
                .map(|i| format!("{}a{i}:\n", " ".repeat(i)))
                .collect::<String>(),
        ];
        for (k, text) in deep.iter().enumerate() {
            let path = dir.join(format!("deep{k}.yaml"));
            std::fs::write(&path, text).unwrap();
            let t = std::time::Instant::now();
            let e = load(&path).unwrap_err().to_string();
            assert!(
                e.contains(&format!("deep{k}.yaml")) && e.contains("at most 64 deep"),
                "{k}: {e}"
            );
            assert!(t.elapsed().as_secs_f64() < 1.0, "{k}: {:?}", t.elapsed());
        }
        let real = "network: n.net\ntrain: { epochs: 4, seed: 0 }\nvariants:\n  - name: a\n    changes: [no-lrn, \"x=[1]\"]  # [[[[\n";
        assert_eq!(nesting_depth(real), (5, 5), "{real}");
        let _ = std::fs::remove_dir_all(&dir);
    }
}
