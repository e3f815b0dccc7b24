//! `netc prepare`: an image tree read once into one memory-mapped dataset
//! file (`data::prepare`), or with `--info` what such a file holds.

use std::process::ExitCode;

use netc::data::{prepare, prepared::Format};

use super::args::{PrepareArgs, RecordFormat};

/// `netc prepare`.
pub fn run(a: PrepareArgs) -> Result<ExitCode, String> {
    let text = match (a.info, a.src, a.output) {
        (Some(path), _, _) => prepare::info(&path),
        (None, Some(src), Some(out)) => prepare::run(&prepare::PrepareOptions {
            size: a.size,
            format: match a.format {
                RecordFormat::Jpeg => Format::Jpeg,
                RecordFormat::Raw => Format::Raw,
            },
            quality: a.quality,
            val_fraction: a.val_fraction,
            skip_bad: a.skip_bad,
            commit_every: a.commit_every,
            progress: true,
            ..prepare::PrepareOptions::new(src, out)
        }),
        _ => return Err("error: give SRC and -o DATASET, or --info DATASET".into()),
    };
    println!("{}", text.map_err(|e| format!("error: {e}"))?);
    Ok(ExitCode::SUCCESS)
}
