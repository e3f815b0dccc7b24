//! The files a run writes besides its checkpoint: `metrics.jsonl` (one
//! JSON object per finished epoch) and `learning-curves.svg`.
//!
//! Assumes the reports of every finished epoch of the run, in order (a
//! resumed run passes the earlier epochs' too). Guarantees: each file is
//! replaced whole and atomically (a temporary file beside it, fsync,
//! rename), so a failure at any point (a crash, a full disk) leaves the
//! previous version, an earlier run's included, intact, and the temporary
//! file is removed when the write fails. Nothing is written until the run
//! calls [`publish`], which it does only once it has an epoch or a
//! checkpoint of its own.

use std::io::Write;
use std::path::Path;

use super::error::TrainError;
use super::report::EpochReport;

/// Writes `bytes` to `path` through a temporary file and a rename.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let dir = path
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let tmp = dir.join(format!(
        ".{}.tmp",
        path.file_name()
            .map_or("out".into(), |n| n.to_string_lossy())
    ));
    let written = (|| {
        let mut f = std::fs::File::create(&tmp)?;
        f.write_all(bytes)?;
        f.sync_all()?;
        drop(f);
        std::fs::rename(&tmp, path)
    })();
    if written.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    written
}

/// `metrics.jsonl`'s text: one line per report, the first of them the
/// `kept` lines as they were read (a resumed run's earlier epochs).
pub fn metrics_text(reports: &[EpochReport], kept: &[String]) -> Result<String, TrainError> {
    let mut text = String::new();
    for l in kept {
        text.push_str(l);
        text.push('\n');
    }
    for r in reports.iter().skip(kept.len()) {
        let line = serde_json::to_string(r).map_err(|e| TrainError::Config(e.to_string()))?;
        text.push_str(&line);
        text.push('\n');
    }
    Ok(text)
}

/// Replaces the metrics and the learning-curve plot with the run's own.
pub fn publish(
    metrics: &Path,
    plot: &Path,
    network: &str,
    reports: &[EpochReport],
    kept: &[String],
) -> Result<(), TrainError> {
    let io = |path: &Path| {
        let path = path.to_path_buf();
        move |source| TrainError::Io { path, source }
    };
    write_atomic(metrics, metrics_text(reports, kept)?.as_bytes()).map_err(io(metrics))?;
    write_atomic(
        plot,
        super::plot::learning_curves(network, reports).as_bytes(),
    )
    .map_err(io(plot))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_failed_write_leaves_the_old_file_and_no_temporary() {
        let dir = std::env::temp_dir().join(format!("netc-outputs-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let f = dir.join("metrics.jsonl");
        write_atomic(&f, b"old\n").unwrap();
        // A directory where the temporary file would go makes the write fail.
        std::fs::create_dir_all(dir.join(".metrics.jsonl.tmp/x")).unwrap();
        assert!(write_atomic(&f, b"new\n").is_err());
        assert_eq!(std::fs::read(&f).unwrap(), b"old\n");
        std::fs::remove_dir_all(dir.join(".metrics.jsonl.tmp")).unwrap();
        write_atomic(&f, b"new\n").unwrap();
        assert_eq!(std::fs::read(&f).unwrap(), b"new\n");
        let names: Vec<_> = std::fs::read_dir(&dir)
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names.len(), 1, "{names:?}");
        let _ = std::fs::remove_dir_all(&dir);
    }
}
