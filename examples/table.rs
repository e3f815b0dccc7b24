//! Prints the architecture table of a `.net` file through the library API,
//! the same table `netc compile FILE` prints.
//!
//! ```text
//! cargo run --release --example table                        # networks/alexnet.net
//! cargo run --release --example table -- networks/alexnet-fmnist.net
//! ```
//!
//! [`netc::frontend::compile_file`] reads, parses, lowers and verifies the
//! file; on failure it returns the diagnostic already rendered against the
//! source, which this program prints to stderr before exiting with status 1.

use std::path::PathBuf;
use std::process::ExitCode;

fn main() -> ExitCode {
    let path = PathBuf::from(
        std::env::args()
            .nth(1)
            .unwrap_or_else(|| "networks/alexnet.net".into()),
    );
    match netc::frontend::compile_file(&path) {
        Ok((compiled, _source)) => {
            print!("{}", netc::ir::table::render(&compiled.module.graph));
            ExitCode::SUCCESS
        }
        Err(rendered) => {
            eprint!("{rendered}");
            ExitCode::FAILURE
        }
    }
}
