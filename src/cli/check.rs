//! `netc check` (errors and warnings only) and `netc fmt` (canonical form).

use std::process::ExitCode;

use netc::syntax;

use super::args::{CheckArgs, FmtArgs};
use super::{load, write_atomic};

/// `netc check`.
pub fn run(a: CheckArgs) -> Result<ExitCode, String> {
    let CheckArgs { file } = a;
    let (c, _) = load(&file)?;
    eprintln!(
        "{}: ok ({} warning{})",
        file.display(),
        c.warnings.len(),
        if c.warnings.len() == 1 { "" } else { "s" }
    );
    Ok(ExitCode::SUCCESS)
}

/// `netc fmt`.
pub fn fmt(a: FmtArgs) -> Result<ExitCode, String> {
    let FmtArgs {
        files,
        check,
        stdout,
    } = a;
    let mut unformatted = false;
    for file in files {
        let (c, src) = netc::frontend::compile_file(&file)?;
        let out = syntax::fmt::format(&c.ast, &src);
        if stdout {
            print!("{out}");
        } else if out != src {
            if check {
                eprintln!("{}: not in canonical form", file.display());
                unformatted = true;
            } else {
                write_atomic(&file, out.as_bytes())?;
            }
        }
    }
    Ok(if unformatted {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    })
}
