//! Runs that would take no training step are refused before they start:
//! `--max-steps 0`, `--epochs 0` (or fewer epochs than a cosine schedule's
//! warm-up), and a batch larger than the training set
//! (the loader drops the last partial batch, so no batch is left), or an
//! empty training set (an error of its own, not a batch too large). Also
//! the data's class count against the network's: more classes than the
//! label input takes is an error, fewer a warning (some classes are never
//! trained). And an output folder that cannot be written (a read-only file
//! system): refused before the first step, not at the first checkpoint.
//!
//! Assumes the settings after command-line overrides. Guarantees: when
//! these return `Ok`, every epoch takes at least one step. The errors are
//! the message the run stops with.

use crate::ir::train::TrainConfig;

/// Refuses step and epoch counts of zero.
pub fn check_counts(cfg: &TrainConfig, max_steps: Option<u64>) -> Result<(), String> {
    if max_steps == Some(0) {
        return Err("`--max-steps 0` would take no training step; give 1 or more".into());
    }
    if cfg.epochs == 0 {
        return Err("`--epochs 0` would take no training step; give 1 or more".into());
    }
    // The file's own epochs are checked when it is compiled (N0156); an
    // `--epochs` that leaves the warm-up no room to end is refused here.
    if let crate::ir::train::Schedule::Cosine { warmup, .. } = cfg.schedule
        && warmup >= cfg.epochs as f64
    {
        return Err(format!(
            "the cosine schedule's warm-up of {warmup} epochs is not shorter than the run's {} epochs; give more epochs",
            cfg.epochs
        ));
    }
    Ok(())
}

/// Refuses a training split that gives no whole batch.
pub fn check_batches(batch: u64, images: usize, batches: usize) -> Result<(), String> {
    if images == 0 {
        return Err(
            "the training set holds no images, so no step would run; prepare the data again with readable images"
                .into(),
        );
    }
    if batches == 0 {
        return Err(format!(
            "the batch of {batch} is larger than the training set ({images} image{}), so no step would run; use `--batch {}` or less",
            if images == 1 { "" } else { "s" },
            images.max(1)
        ));
    }
    Ok(())
}

/// Refuses an output folder that a file cannot be written into, by
/// writing and removing a small file in it.
pub fn check_writable(dir: &std::path::Path) -> Result<(), String> {
    let probe = dir.join(format!(".netc-write-check-{}", std::process::id()));
    let written = std::fs::File::create_new(&probe)
        .and_then(|mut f| std::io::Write::write_all(&mut f, b"netc"));
    let _ = std::fs::remove_file(&probe);
    written.map_err(|e| {
        format!(
            "{}: cannot write into the output folder ({e}); nothing was trained, as the run could not save its checkpoint",
            dir.display()
        )
    })
}

/// Compares the data's `classes` with the network's label input: an error
/// when the data has more, a warning (returned) when it has fewer.
pub fn check_classes(
    exec: &crate::backend::cpu::exec::CpuExec,
    classes: usize,
) -> Result<Option<String>, crate::model::error::TrainError> {
    let g = exec.graph();
    let Ok((_, label, _, _)) = g.training_io() else {
        return Ok(None);
    };
    let crate::ir::Ty::Labels { classes: want } = g.node(label).ty else {
        return Ok(None);
    };
    let name = &g.node(label).name;
    let (have, want) = (classes as u64, want);
    if have > want {
        return Err(crate::model::error::TrainError::Config(format!(
            "the data has {have} classes but the network's `{name}` input takes {want}"
        )));
    }
    Ok((have < want).then(|| {
        format!(
            "warning: the data has {have} classes and the network's `{name}` input {want}: {} of them are never trained",
            want - have
        )
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn zero_counts_and_empty_epochs_are_refused() {
        let mut cfg = TrainConfig::default();
        assert!(check_counts(&cfg, None).is_ok());
        assert!(
            check_counts(&cfg, Some(0))
                .unwrap_err()
                .contains("--max-steps 0")
        );
        cfg.epochs = 0;
        assert!(
            check_counts(&cfg, Some(3))
                .unwrap_err()
                .contains("--epochs 0")
        );
        let e = check_batches(4096, 2000, 0).unwrap_err();
        assert!(
            e.contains("4096") && e.contains("2000 images") && e.contains("--batch 2000"),
            "{e}"
        );
        assert!(check_batches(128, 2000, 15).is_ok());
        // An empty training set is not a batch too large (it said "use
        // `--batch 1` or less" with a batch of 1).
        let e = check_batches(1, 0, 0).unwrap_err();
        assert!(
            e.contains("holds no images") && !e.contains("--batch"),
            "{e}"
        );
    }
}
