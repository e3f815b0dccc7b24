//! `netc ablate` (variants of a network as source rewrites) and `netc
//! sweep` (train every variant of a spec and compare).

use std::process::ExitCode;

use super::args::{AblateArgs, SweepArgs};
use super::{load, write_atomic};

/// `netc ablate`.
pub fn run(a: AblateArgs) -> Result<ExitCode, String> {
    let AblateArgs {
        file,
        no_lrn,
        non_overlapping_pool,
        one_tower,
        no_dropout,
        no_augmentation,
        activation,
        lrn,
        sets,
        spec,
        output,
    } = a;
    use netc::ablate::Change;
    let mut variants: Vec<(String, Vec<Change>)> = Vec::new();
    for (on, c) in [
        (no_lrn, Change::NoLrn),
        (non_overlapping_pool, Change::NonOverlappingPool),
        (one_tower, Change::OneTower),
        (no_dropout, Change::NoDropout),
        (no_augmentation, Change::NoAugmentation),
    ] {
        if on {
            variants.push((c.to_string(), vec![c]));
        }
    }
    for (what, layer) in [("activation", activation), ("lrn", lrn)] {
        if let Some(l) = layer {
            let c: Change = format!("{what}={l}")
                .parse()
                .map_err(|e| format!("error: {e}"))?;
            variants.push((format!("{what}-{}", file_safe(&l)), vec![c]));
        }
    }
    if !sets.is_empty() {
        let name = sets
            .iter()
            .map(|s| s.replace(['=', '.'], "-"))
            .collect::<Vec<_>>()
            .join("_");
        variants.push((
            format!("set-{name}"),
            sets.iter().map(|s| Change::Set(s.clone())).collect(),
        ));
    }
    if let Some(spec) = spec {
        let sp = netc::ablate::spec::load(&spec).map_err(|e| format!("error: {e}"))?;
        for v in sp.variants {
            let ch = v.parsed_changes().map_err(|e| format!("error: {e}"))?;
            variants.push((v.name, ch));
        }
    }
    if variants.is_empty() {
        return Err(
            "error: no change asked for; pass --no-lrn, --one-tower, --set … or --spec".into(),
        );
    }
    let (parent, src) = load(&file)?;
    let stem = file
        .file_stem()
        .map_or("net".into(), |s| s.to_string_lossy().to_string());
    std::fs::create_dir_all(&output)
        .map_err(|e| format!("error: cannot create `{}`: {e}", output.display()))?;
    let base = netc::ir::cost::total(&parent.module.graph);
    let batch = parent.module.train.batch;
    let mem = |m: &netc::lower::Module| {
        netc::passes::pipeline::training_step_bytes(&m.graph, &m.train.sgd, batch)
            .map_err(|e| format!("error: {e}"))
    };
    let base_mem = mem(&parent.module)?;
    println!(
        "{:<28} {:>14} {:>16} {:>22} {:>10}",
        "variant",
        "params",
        "MACs",
        format!("memory (batch {batch})"),
        "file"
    );
    for (name, changes) in variants {
        let text = netc::ablate::apply(&file.display().to_string(), &src, &changes)
            .map_err(|e| format!("error: {name}: {e}"))?;
        let c =
            netc::frontend::compile(&text).map_err(|d| netc::diag::render(&name, &text, &[d]))?;
        let t = netc::ir::cost::total(&c.module.graph);
        let path = output.join(format!("{stem}-{name}.net"));
        write_atomic(&path, text.as_bytes())?;
        let delta = |a: u64, b: u64| format!("{:+}", a as i128 - b as i128);
        let m = mem(&c.module)?;
        println!(
            "{:<28} {:>14} {:>16} {:>22} {}",
            name,
            delta(t.params, base.params),
            delta(t.macs, base.macs),
            format!(
                "{:+.1} MiB",
                (m as f64 - base_mem as f64) / (1u64 << 20) as f64
            ),
            path.display()
        );
    }
    Ok(ExitCode::SUCCESS)
}

/// `netc sweep`.
pub fn sweep(a: SweepArgs) -> Result<ExitCode, String> {
    netc::train::sweep::run_with_data(&a.spec, a.data.as_deref())
        .map_err(|e| format!("error: {e}"))?;
    Ok(ExitCode::SUCCESS)
}

/// A layer's stage text as part of a file name: `leaky_relu(slope: 0.1)`
/// gives `leaky_relu-slope-0-1`.
fn file_safe(stage: &str) -> String {
    let mut out = String::new();
    for c in stage.chars() {
        if c.is_ascii_alphanumeric() || c == '_' {
            out.push(c);
        } else if !out.ends_with('-') {
            out.push('-');
        }
    }
    out.trim_end_matches('-').to_string()
}
