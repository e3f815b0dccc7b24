//! `netc bench`: training-step throughput of the CPU executor on synthetic data.

use std::process::ExitCode;

use netc::backend::layout::Layout;

use super::args::BenchArgs;
use super::load;

/// `netc bench`.
pub fn run(a: BenchArgs) -> Result<ExitCode, String> {
    let (c, _) = load(&a.file)?;
    let batch = a.batch.unwrap_or(c.module.train.batch) as usize;
    let layout = if a.no_plan {
        Layout::Separate
    } else {
        Layout::Planned
    };
    let r =
        netc::train::bench::train_steps(&c.module, batch, a.steps, !a.no_fuse, layout, a.profile)
            .map_err(|e| format!("error: {e}"))?;
    println!("{r}");
    Ok(ExitCode::SUCCESS)
}
