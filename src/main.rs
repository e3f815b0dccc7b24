//! The `netc` command line: parses arguments and dispatches to `cli`.

use std::process::ExitCode;

use clap::Parser;

mod cli;

fn main() -> ExitCode {
    // A closed pipe (`netc ... | head`) ends the process quietly, as it
    // does for other command-line tools, instead of a failed print.
    #[cfg(unix)]
    // SAFETY: restores the default action for SIGPIPE before any thread
    // starts; no handler runs Rust code.
    unsafe {
        libc::signal(libc::SIGPIPE, libc::SIG_DFL);
    }
    let cli = cli::args::Cli::parse();
    match cli::run(cli) {
        Ok(code) => code,
        Err(msg) => {
            eprint!("{msg}");
            if !msg.ends_with('\n') {
                eprintln!();
            }
            ExitCode::FAILURE
        }
    }
}
