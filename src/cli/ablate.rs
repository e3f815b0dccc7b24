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
    // Every row first, so that each column is as wide as its widest cell.
    let mut rows: Vec<[String; 5]> = vec![[
        "variant".into(),
        "params".into(),
        "MACs".into(),
        format!("memory (batch {batch})"),
        "file".into(),
    ]];
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
        rows.push([
            name,
            delta(t.params, base.params),
            delta(t.macs, base.macs),
            format!(
                "{:+.1} MiB",
                (m as f64 - base_mem as f64) / (1u64 << 20) as f64
            ),
            path.display().to_string(),
        ]);
    }
    print!("{}", table(&rows));
    Ok(ExitCode::SUCCESS)
}

/// `netc sweep`.
pub fn sweep(a: SweepArgs) -> Result<ExitCode, String> {
    netc::train::sweep::run_with_data(&a.spec, a.data.as_deref())
        .map_err(|e| format!("error: {e}"))?;
    Ok(ExitCode::SUCCESS)
}

/// `rows` as aligned text: the first column (names) and the last (paths)
/// to the left, the figures between them to the right, each column as wide
/// as its widest cell.
fn table(rows: &[[String; 5]]) -> String {
    let width = |k: usize| rows.iter().map(|r| r[k].chars().count()).max().unwrap_or(0);
    let w: Vec<usize> = (0..5).map(width).collect();
    let mut out = String::new();
    for r in rows {
        let line = format!(
            "{:<w0$}  {:>w1$}  {:>w2$}  {:>w3$}  {}",
            r[0],
            r[1],
            r[2],
            r[3],
            r[4],
            w0 = w[0],
            w1 = w[1],
            w2 = w[2],
            w3 = w[3],
        );
        out.push_str(line.trim_end());
        out.push('\n');
    }
    out
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

#[cfg(test)]
mod tests {
    use super::table;

    /// A long variant name widens its column instead of pushing its row's
    /// figures out of line (a 40-character name misaligned the table).
    #[test]
    fn the_table_stays_aligned_with_long_names() {
        let row = |cells: [&str; 5]| cells.map(String::from);
        let rows = vec![
            row(["variant", "params", "MACs", "memory (batch 128)", "file"]),
            row(["no-lrn", "+0", "-7", "-12.0 MiB", "out/a-no-lrn.net"]),
            row([
                "conv1.activation-leaky_relu-slope-0-1",
                "+1234",
                "-56789",
                "+3.5 MiB",
                "out/a-long.net",
            ]),
        ];
        let text = table(&rows);
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 3);
        // Each right-aligned figure ends at the same column on every line.
        for cell in 1..4 {
            let ends: Vec<usize> = lines
                .iter()
                .zip(&rows)
                .map(|(l, r)| l.find(r[cell].as_str()).unwrap() + r[cell].len())
                .collect();
            assert!(ends.windows(2).all(|p| p[0] == p[1]), "{text}");
        }
        let starts: Vec<usize> = lines
            .iter()
            .zip(&rows)
            .map(|(l, r)| l.rfind(r[4].as_str()).unwrap())
            .collect();
        assert!(starts.windows(2).all(|p| p[0] == p[1]), "{text}");
    }
}
