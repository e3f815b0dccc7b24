//! The `netc` command line: one module per command, the argument
//! definitions in [`args`], and the helpers every command shares. `main`
//! only parses and calls [`run`].

use std::path::Path;
use std::process::ExitCode;

use netc::diag;
use netc::frontend::{self, Compiled};

pub mod ablate;
pub mod args;
pub mod bench;
pub mod check;
pub mod compile;
pub mod cuda_check;
pub mod kernels;
pub mod onnx;
pub mod predict;
pub mod prepare;
pub mod run;
pub mod train;

use args::{Cli, Cmd};

/// Runs the command `cli` names; an error is the message to print.
pub fn run(cli: Cli) -> Result<ExitCode, String> {
    match cli.cmd {
        Cmd::Compile(a) => compile::run(a),
        Cmd::Check(a) => check::run(a),
        Cmd::Train(a) => train::run(a),
        Cmd::Prepare(a) => prepare::run(a),
        Cmd::Eval(a) => train::eval(a),
        Cmd::Predict(a) => predict::run(a),
        Cmd::Run(a) => run::run(a),
        Cmd::Kernels(a) => kernels::run(a),
        Cmd::Bench(a) => bench::run(a),
        Cmd::Ablate(a) => ablate::run(a),
        Cmd::Sweep(a) => ablate::sweep(a),
        Cmd::CudaCheck(a) => cuda_check::run(a),
        Cmd::Fmt(a) => check::fmt(a),
        Cmd::Export(a) => onnx::export(a),
        Cmd::Import(a) => onnx::import(a),
    }
}

/// Compiles a file, printing warnings to stderr; errors become `Err`.
pub(crate) fn load(path: &Path) -> Result<(Compiled, String), String> {
    let (c, src) = frontend::check_file(path)?;
    if !c.warnings.is_empty() {
        eprint!(
            "{}",
            diag::render(&path.display().to_string(), &src, &c.warnings)
        );
    }
    Ok((c, src))
}

pub(crate) fn write_out(output: Option<&Path>, text: &str) -> Result<(), String> {
    match output {
        None => {
            print!("{text}");
            Ok(())
        }
        Some(p) => write_atomic(p, text.as_bytes()),
    }
}

/// Writes via a temporary file and a rename (`fsio::write_atomic`),
/// so a crash or a full disk never leaves a half-written file in place of a
/// good one, nor a temporary file behind.
pub(crate) fn write_atomic(path: &Path, bytes: &[u8]) -> Result<(), String> {
    netc::fsio::write_atomic(path, bytes)
        .map_err(|e| format!("error: cannot write `{}`: {e}", path.display()))
}

/// `--devices 0,1`: GPU ordinals, one or one per tower of `c`'s network
/// (`None` without the option).
pub(crate) fn gpu_list(list: Option<&str>, c: &Compiled) -> Result<Option<Vec<usize>>, String> {
    let Some(list) = list else { return Ok(None) };
    let mut gpus = Vec::new();
    for part in list.split(',') {
        let part = part.trim();
        let gpu = part.parse::<usize>().map_err(|_| {
            format!(
                "error: `--devices {list}`: `{part}` is not a GPU number; list GPU ordinals separated by commas, e.g. `--devices 0,1`"
            )
        })?;
        gpus.push(gpu);
    }
    let towers = c.module.graph.towers as usize;
    netc::backend::cuda::place::split::check_count(towers, gpus.len())
        .map_err(|e| format!("error: {e}"))?;
    Ok(Some(gpus))
}
