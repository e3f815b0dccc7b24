//! The files a run writes besides its checkpoint: `metrics.jsonl` (one
//! JSON object per finished epoch) and `learning-curves.svg`, and how they
//! are committed together with the checkpoint.
//!
//! Assumes the reports of every finished epoch of the run, in order (a
//! resumed run passes the earlier epochs' too), and the run's identity
//! ([`run_identity`]). Guarantees:
//!
//! - every metrics line carries the identity of the run that wrote it
//!   (`"run"`), and a resumed run keeps only its own lines ([`read_own`]);
//! - [`publish`] writes the metrics, the plot and the checkpoint to
//!   temporary files first and renames them only once all three are
//!   written, the metrics first (`fsio::Staged`): a failure while writing
//!   (a full disk) replaces none of them, and a kill between the renames
//!   leaves metrics lines for epochs the checkpoint has not finished
//!   (which a resume drops), never a checkpoint whose epochs the metrics
//!   lack. Nothing is written until the run calls [`publish`], which it
//!   does only once it has an epoch or a checkpoint of its own.

use std::path::Path;

use super::report::EpochReport;
use crate::ir::train::TrainConfig;
use crate::model::error::TrainError;

/// The identity of a run: a fingerprint of its training graph's
/// fingerprint, its settings (seed, batch, schedule, data section; the
/// epoch count aside, which a resume may extend) and its steps per epoch.
/// Two runs with the same identity write the same figures.
pub fn run_identity(graph_fingerprint: &str, cfg: &TrainConfig, max_steps: Option<u64>) -> String {
    let mut cfg = cfg.clone();
    cfg.epochs = 0;
    let settings = serde_json::to_string(&cfg).unwrap_or_else(|e| e.to_string());
    crate::model::checkpoint::fingerprint(&format!(
        "{graph_fingerprint}\n{settings}\nmax_steps {max_steps:?}"
    ))
}

/// One line of `metrics.jsonl`: the run's identity, then the report.
#[derive(serde::Serialize)]
struct Line<'a> {
    run: &'a str,
    #[serde(flatten)]
    report: &'a EpochReport,
}

/// The lines of the metrics file at `path` that the run `run` wrote for
/// its first `finished` epochs, parsed and verbatim (a parsed and
/// re-printed float need not be the same text). Lines of another run,
/// without an identity, or of epochs after `finished` are left out.
pub fn read_own(path: &Path, run: &str, finished: u64) -> (Vec<EpochReport>, Vec<String>) {
    let mut reports = Vec::new();
    let mut lines = Vec::new();
    let Ok(text) = std::fs::read_to_string(path) else {
        return (reports, lines);
    };
    for l in text.lines() {
        let Ok(v) = serde_json::from_str::<serde_json::Value>(l) else {
            continue;
        };
        if v.get("run").and_then(|r| r.as_str()) != Some(run) {
            continue;
        }
        if let Ok(r) = serde_json::from_value::<EpochReport>(v)
            && r.epoch == reports.len() as u64 + 1
            && r.epoch <= finished
        {
            reports.push(r);
            lines.push(l.to_string());
        }
    }
    (reports, lines)
}

/// `metrics.jsonl`'s text: one line per report, the first of them the
/// `kept` lines as they were read (a resumed run's earlier epochs), each
/// carrying the identity `run`.
pub fn metrics_text(
    reports: &[EpochReport],
    kept: &[String],
    run: &str,
) -> Result<String, TrainError> {
    let mut text = String::new();
    for l in kept {
        text.push_str(l);
        text.push('\n');
    }
    for r in reports.iter().skip(kept.len()) {
        let line = serde_json::to_string(&Line { run, report: r })
            .map_err(|e| TrainError::Config(e.to_string()))?;
        text.push_str(&line);
        text.push('\n');
    }
    Ok(text)
}

/// Where a run's files go.
pub struct Paths<'a> {
    pub metrics: &'a Path,
    pub plot: &'a Path,
    pub checkpoint: &'a Path,
}

/// Replaces the metrics, the learning-curve plot and (with `checkpoint`,
/// its bytes) the checkpoint with the run's own, together (see the module
/// documentation).
pub fn publish(
    paths: &Paths,
    network: &str,
    run: &str,
    reports: &[EpochReport],
    kept: &[String],
    checkpoint: Option<&[u8]>,
) -> Result<(), TrainError> {
    let io = |path: &Path| {
        let path = path.to_path_buf();
        move |source| TrainError::Io { path, source }
    };
    let mut staged = crate::fsio::Staged::new();
    staged
        .stage(paths.metrics, metrics_text(reports, kept, run)?.as_bytes())
        .map_err(io(paths.metrics))?;
    staged
        .stage(
            paths.plot,
            crate::picture::curves::learning_curves(network, reports).as_bytes(),
        )
        .map_err(io(paths.plot))?;
    if let Some(bytes) = checkpoint {
        staged
            .stage(paths.checkpoint, bytes)
            .map_err(io(paths.checkpoint))?;
    }
    staged.commit().map_err(io(paths.checkpoint))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn report(epoch: u64, loss: f64) -> EpochReport {
        EpochReport {
            epoch,
            lr: 0.01,
            train_loss: loss,
            test_loss: 1.0,
            top1_error: 0.3,
            top5_error: 0.1,
            images_per_s: 100.0,
            train_top1_error: Some(0.5),
            steps: 2 * epoch,
        }
    }

    #[test]
    fn a_resume_keeps_only_its_own_finished_lines() {
        let dir = std::env::temp_dir().join(format!("netc-outputs-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let f = dir.join("metrics.jsonl");
        let mine = metrics_text(&[report(1, 2.0), report(2, 1.5)], &[], "aaaa").unwrap();
        let theirs = metrics_text(&[report(1, 9.0)], &[], "bbbb").unwrap();
        let old = serde_json::to_string(&report(1, 7.0)).unwrap();
        assert!(mine.starts_with("{\"run\":\"aaaa\",\"epoch\":1,"), "{mine}");
        std::fs::write(&f, format!("{theirs}{old}\n{mine}")).unwrap();
        let (r, lines) = read_own(&f, "aaaa", 2);
        assert_eq!(r, [report(1, 2.0), report(2, 1.5)]);
        assert_eq!(lines.join("\n") + "\n", mine);
        // Epochs the checkpoint has not finished are dropped.
        let (r, _) = read_own(&f, "aaaa", 1);
        assert_eq!(r, [report(1, 2.0)]);
        // Another run's lines alone: nothing is kept.
        std::fs::write(&f, &theirs).unwrap();
        assert!(read_own(&f, "aaaa", 5).0.is_empty());
        let _ = std::fs::remove_dir_all(&dir);
    }
}
