//! `netc sweep SPEC`: writes every variant of a spec (see `ablate::spec`),
//! trains each with the same seed, data and schedule, and writes a
//! comparison table (`results.md`, `results.csv`) and the learning curves
//! of all variants (`curves.svg`). Each variant runs in its own folder; a
//! finished variant (`done.json`) is not retrained when its network text
//! and the sweep's training settings are the ones it finished with (its
//! `done.json` records their fingerprint), and is retrained otherwise (the
//! run says which variants were, and why); an interrupted one resumes from
//! its checkpoint, so an interrupted sweep continues where it stopped.
//!
//! Guarantees: one sweep at a time writes into the spec's `out` (a lock,
//! `fsio::OutputLock`); every file is replaced atomically (`fsio`), and the
//! tables and plots together, so a failure (a full disk) leaves the earlier
//! sweep's files as they were.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use crate::ablate::{self, spec};
use crate::passes::pipeline::training_step_bytes;
use crate::train::run::{EpochReport, Outcome, TrainOptions, train};

#[derive(Debug, thiserror::Error)]
pub enum SweepError {
    #[error(transparent)]
    Spec(#[from] spec::SpecError),
    #[error("variant `{name}`: {reason}")]
    Variant { name: String, reason: String },
    #[error("cannot read the network `{path}`: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("cannot write `{path}`: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("interrupted; run the same command again to continue")]
    Interrupted,
    #[error(transparent)]
    Lock(#[from] crate::fsio::LockError),
}

/// What a finished variant's `done.json` holds: its row, and the
/// fingerprint of what it was trained from ([`identity`]).
#[derive(serde::Serialize, serde::Deserialize)]
struct Done {
    /// Absent in a `done.json` written before it was recorded: such a
    /// variant is retrained.
    #[serde(default)]
    trained_from: String,
    #[serde(flatten)]
    row: Row,
}

/// The fingerprint of a variant's network text and the sweep's training
/// settings: a finished variant is reused only while it is the same.
fn identity(text: &str, train: &spec::TrainOverrides) -> String {
    crate::model::checkpoint::fingerprint(&format!("{text}\n{train:?}"))
}

/// One row of the comparison.
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Row {
    pub variant: String,
    pub changes: String,
    pub epochs: u64,
    pub train_loss: f64,
    pub test_loss: f64,
    pub top1_error: f64,
    pub top5_error: f64,
    pub images_per_s: f64,
    pub params: u64,
    pub macs: u64,
    /// Activation elements per example, forward.
    pub activations: u64,
    /// Planned arena bytes of the training step at the sweep's batch.
    #[serde(default)]
    pub memory: u64,
    /// The last epoch's training top-1 error (see `EpochReport`).
    #[serde(default)]
    pub train_top1_error: Option<f64>,
    /// With a spec's `target_train_error`: the first epoch whose training
    /// error reached it, and the steps taken by its end (`None`: never).
    #[serde(default)]
    pub epochs_to_target: Option<u64>,
    #[serde(default)]
    pub steps_to_target: Option<u64>,
}

/// The first epoch whose training top-1 error is at most `target`, and the
/// training steps taken by the end of it.
pub fn reached(reports: &[EpochReport], target: f64) -> Option<(u64, u64)> {
    reports
        .iter()
        .find(|r| r.train_top1_error.is_some_and(|e| e <= target))
        .map(|r| (r.epoch, r.steps))
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> SweepError + '_ {
    move |source| SweepError::Io {
        path: path.to_path_buf(),
        source,
    }
}

pub fn run(spec_path: &Path) -> Result<Vec<Row>, SweepError> {
    run_with_data(spec_path, None)
}

/// [`run`], with `data` (a prepared dataset, an image folder or the
/// Fashion-MNIST files) in place of the spec's `train.data` when given.
pub fn run_with_data(spec_path: &Path, data: Option<&Path>) -> Result<Vec<Row>, SweepError> {
    let mut sp = spec::load(spec_path)?;
    if let Some(d) = data {
        sp.train.data = Some(d.to_path_buf());
    }
    let src = std::fs::read_to_string(&sp.network).map_err(|source| SweepError::Read {
        path: sp.network.clone(),
        source,
    })?;
    std::fs::create_dir_all(&sp.out).map_err(io(&sp.out))?;
    let _lock = crate::fsio::OutputLock::folder(&sp.out)?;
    let mut retrained: Vec<String> = Vec::new();
    let interrupt = Arc::new(AtomicBool::new(false));
    let flag = interrupt.clone();
    let _ = ctrlc::set_handler(move || flag.store(true, Ordering::SeqCst));
    let mut rows = Vec::new();
    let mut curves = Vec::new();
    for v in &sp.variants {
        let verr = |reason: String| SweepError::Variant {
            name: v.name.clone(),
            reason,
        };
        let changes = v.parsed_changes().map_err(verr)?;
        let text = if changes.is_empty() {
            format!(
                "// Variant of {}: unchanged (the baseline).\n{src}",
                sp.network.display()
            )
        } else {
            ablate::apply(&sp.network.display().to_string(), &src, &changes)
                .map_err(|e| verr(e.to_string()))?
        };
        let net_path = sp.out.join(format!("{}.net", v.name));
        crate::fsio::write_atomic(&net_path, text.as_bytes()).map_err(io(&net_path))?;
        let compiled = crate::frontend::compile(&text)
            .map_err(|d| verr(crate::diag::render("variant", &text, &[d])))?;
        let dir = sp.out.join(&v.name);
        let done = dir.join("done.json");
        let from = identity(&text, &sp.train);
        let earlier = std::fs::read_to_string(&done)
            .ok()
            .and_then(|t| serde_json::from_str::<Done>(&t).ok());
        let stale = earlier.as_ref().is_some_and(|d| d.trained_from != from);
        if let Some(Done { row, .. }) = earlier.filter(|_| !stale) {
            eprintln!(
                "{}: finished earlier with this network and these settings, not retrained",
                v.name
            );
            let metrics = read_metrics(&dir);
            let mut row = row;
            if let Some(t) = sp.target_train_error {
                let hit = reached(&metrics, t);
                row.epochs_to_target = hit.map(|h| h.0);
                row.steps_to_target = hit.map(|h| h.1);
            }
            curves.push((v.name.clone(), metrics));
            if row.memory == 0 {
                let batch = sp.train.batch.unwrap_or(compiled.module.train.batch);
                let m = &compiled.module;
                row.memory = training_step_bytes(&m.graph, &m.train.sgd, batch).map_err(verr)?;
            }
            rows.push(row);
            continue;
        }
        let ckpt = dir.join("checkpoint.safetensors");
        if stale {
            eprintln!(
                "{}: retrained: its network or the training settings changed since it finished",
                v.name
            );
            retrained.push(v.name.clone());
        }
        println!(
            "== {} ({})",
            v.name,
            if changes.is_empty() {
                "baseline".into()
            } else {
                v.changes.join(", ")
            }
        );
        let opts = TrainOptions {
            data: sp.train.data.clone(),
            epochs: sp.train.epochs,
            batch: sp.train.batch,
            seed: sp.train.seed,
            max_steps: sp.train.max_steps,
            steps: None,
            out_dir: dir.clone(),
            quiet: false,
            results: crate::train::report::Results::Text,
            // A stale variant's checkpoint is of what it was before.
            resume: (!stale && ckpt.exists()).then_some(ckpt.clone()),
            checkpoint_every: Some(50),
            stop_after: None,
            interrupt: Some(interrupt.clone()),
            no_fuse: false,
            layout: Default::default(),
            evaluate_only: false,
        };
        let reports = match train(&compiled.module, &opts).map_err(|e| verr(e.to_string()))? {
            Outcome::Finished(r) => r,
            Outcome::Stopped { .. } => return Err(SweepError::Interrupted),
        };
        let last = reports
            .last()
            .cloned()
            .ok_or_else(|| verr("no epoch was trained".into()))?;
        let cost = crate::ir::cost::total(&compiled.module.graph);
        let hit = sp.target_train_error.and_then(|t| reached(&reports, t));
        let row = Row {
            variant: v.name.clone(),
            changes: if changes.is_empty() {
                "-".into()
            } else {
                v.changes.join(", ")
            },
            epochs: last.epoch,
            train_loss: last.train_loss,
            test_loss: last.test_loss,
            top1_error: last.top1_error,
            top5_error: last.top5_error,
            images_per_s: reports.iter().map(|r| r.images_per_s).sum::<f64>()
                / reports.len() as f64,
            params: cost.params,
            macs: cost.macs,
            activations: cost.activations,
            memory: training_step_bytes(
                &compiled.module.graph,
                &compiled.module.train.sgd,
                sp.train.batch.unwrap_or(compiled.module.train.batch),
            )
            .map_err(verr)?,
            train_top1_error: last.train_top1_error,
            epochs_to_target: hit.map(|h| h.0),
            steps_to_target: hit.map(|h| h.1),
        };
        let json = serde_json::to_string_pretty(&Done {
            trained_from: from,
            row: row.clone(),
        })
        .map_err(|e| verr(e.to_string()))?;
        crate::fsio::write_atomic(&done, json.as_bytes()).map_err(io(&done))?;
        curves.push((v.name.clone(), reports));
        rows.push(row);
    }
    // The tables and plots are replaced together.
    let mut staged = crate::fsio::Staged::new();
    let mut stage = |p: PathBuf, bytes: &[u8]| staged.stage(&p, bytes).map_err(io(&p));
    let (md, csv) = tables(&rows, sp.target_train_error);
    stage(sp.out.join("results.md"), md.as_bytes())?;
    stage(sp.out.join("results.csv"), csv.as_bytes())?;
    let title = format!("sweep of {}", sp.network.display());
    let svg = crate::picture::curves::compare(&title, &curves);
    let p = sp.out.join("curves.svg");
    stage(p.clone(), svg.as_bytes())?;
    if let Some(t) = sp.target_train_error {
        let svg = crate::picture::curves::train_error(&title, &curves, t);
        stage(sp.out.join("train-error.svg"), svg.as_bytes())?;
    }
    staged.commit().map_err(io(&sp.out))?;
    if !retrained.is_empty() {
        eprintln!(
            "retrained (network or settings changed since they finished): {}",
            retrained.join(", ")
        );
    }
    println!(
        "results: {}  {}  {}",
        sp.out.join("results.md").display(),
        sp.out.join("results.csv").display(),
        p.display()
    );
    Ok(rows)
}

fn read_metrics(dir: &Path) -> Vec<EpochReport> {
    std::fs::read_to_string(dir.join("metrics.jsonl"))
        .map(|t| {
            t.lines()
                .filter_map(|l| serde_json::from_str(l).ok())
                .collect()
        })
        .unwrap_or_default()
}

/// `results.md` and `results.csv`.
fn tables(rows: &[Row], target: Option<f64>) -> (String, String) {
    let pct = |e: Option<f64>| e.map_or("-".to_string(), |e| format!("{:.2}%", 100.0 * e));
    let mut md = String::from(
        "| variant | changes | epochs | final train loss | train top-1 error | test loss | top-1 error | top-5 error |",
    );
    if let Some(t) = target {
        let _ = write!(
            md,
            " steps to {0}% train error | epochs to {0}% |",
            100.0 * t
        );
    }
    md.push_str(" images/s | parameters | MACs/image | activations/image | planned memory |\n|");
    let cols = 13 + if target.is_some() { 2 } else { 0 };
    md.push_str(&"---|".repeat(cols));
    md.push('\n');
    let mut csv = String::from(
        "variant,changes,epochs,train_loss,train_top1_error,test_loss,top1_error,top5_error,steps_to_target,epochs_to_target,images_per_s,params,macs,activations,memory\n",
    );
    let opt = |v: Option<u64>| v.map_or(String::new(), |v| v.to_string());
    for r in rows {
        let _ = write!(
            md,
            "| {} | {} | {} | {:.4} | {} | {:.4} | {:.2}% | {:.2}% |",
            r.variant,
            r.changes,
            r.epochs,
            r.train_loss,
            pct(r.train_top1_error),
            r.test_loss,
            100.0 * r.top1_error,
            100.0 * r.top5_error,
        );
        if target.is_some() {
            let never = "not reached".to_string();
            let _ = write!(
                md,
                " {} | {} |",
                r.steps_to_target.map_or(never.clone(), |s| s.to_string()),
                r.epochs_to_target.map_or(never, |s| s.to_string())
            );
        }
        let _ = writeln!(
            md,
            " {:.0} | {} | {} | {} | {:.1} MiB |",
            r.images_per_s,
            r.params,
            r.macs,
            r.activations,
            r.memory as f64 / (1u64 << 20) as f64
        );
        let _ = writeln!(
            csv,
            "{},\"{}\",{},{},{},{},{},{},{},{},{},{},{},{},{}",
            r.variant,
            r.changes,
            r.epochs,
            r.train_loss,
            r.train_top1_error.map_or(String::new(), |e| e.to_string()),
            r.test_loss,
            r.top1_error,
            r.top5_error,
            opt(r.steps_to_target),
            opt(r.epochs_to_target),
            r.images_per_s,
            r.params,
            r.macs,
            r.activations,
            r.memory
        );
    }
    (md, csv)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(epoch: u64, steps: u64, e: Option<f64>) -> EpochReport {
        EpochReport {
            epoch,
            lr: 0.01,
            train_loss: 1.0,
            test_loss: 1.0,
            top1_error: 0.3,
            top5_error: 0.1,
            images_per_s: 100.0,
            train_top1_error: e,
            steps,
        }
    }

    #[test]
    fn the_target_is_reached_at_the_first_epoch_at_or_below_it() {
        let r = [
            at(1, 40, Some(0.5)),
            at(2, 80, None),
            at(3, 120, Some(0.25)),
            at(4, 160, Some(0.1)),
        ];
        assert_eq!(reached(&r, 0.25), Some((3, 120)));
        assert_eq!(reached(&r, 0.05), None);
        assert_eq!(reached(&r, 0.6), Some((1, 40)));
    }

    /// A finished variant's `done.json` reads back as the very row: this
    /// rate came back one ulp off without serde_json's `float_roundtrip`.
    #[test]
    fn a_done_row_reads_back_bit_for_bit() {
        for x in [423.09805627495524f64, 368.2150337494804, 0.1 + 0.2, 1e-300] {
            let t = serde_json::to_string_pretty(&x).unwrap();
            let back: f64 = serde_json::from_str(&t).unwrap();
            assert_eq!(back.to_bits(), x.to_bits(), "{t}");
        }
    }
}
