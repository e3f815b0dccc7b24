//! `netc train` and `netc eval`: the command line's choice of backend,
//! built once ([`BackendConfig`]), checked before any data is loaded, and
//! handed to the training loop.

use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use netc::backend::config::{BackendConfig, BackendFlags, BackendKind};
use netc::backend::open;
use netc::ir::train::TrainConfig;
use netc::train::run::{
    Results, TrainOptions, eval_predictions_with, eval_weights_with, train_ranks,
};

use super::args::{Backend, EvalArgs, TrainArgs};
use super::{gpu_list, load};

fn kind(b: Backend) -> BackendKind {
    match b {
        Backend::Cpu => BackendKind::Cpu,
        Backend::Cuda => BackendKind::Cuda,
    }
}

/// `netc train`.
pub fn run(a: TrainArgs) -> Result<ExitCode, String> {
    // Under `mpirun`/`srun` with several processes: one data-parallel
    // rank of the job (see `netc::dist`); otherwise one process, as ever.
    let ranks = netc::dist::world().map_err(|e| format!("error: {e}"))?;
    if ranks.size() == 1 {
        return train_one(a, ranks);
    }
    let (rank, size) = (ranks.rank(), ranks.size());
    match train_one(a, std::sync::Arc::clone(&ranks)) {
        Ok(code) => Ok(code),
        Err(e) => {
            // The other ranks may wait in a collective: this rank's message,
            // then the whole job ends non-zero.
            eprintln!("{e} (rank {rank} of {size})");
            ranks.abort(1)
        }
    }
}

/// `netc train` as one rank of `ranks` (the only one for one process).
fn train_one(
    a: TrainArgs,
    ranks: std::sync::Arc<dyn netc::dist::Collective>,
) -> Result<ExitCode, String> {
    let (c, _) = load(&a.file)?;
    let backend = BackendConfig::from_flags(&BackendFlags {
        backend: kind(a.backend),
        no_plan: a.no_plan,
        no_graph: a.no_graph,
        device_augment: a.device_augment,
        devices: gpu_list(a.devices.as_deref(), &c)?,
        towers: c.module.graph.towers as usize,
    })
    .map_err(|e| format!("error: {e}"))?;
    // Before the data is loaded: a missing library fails at once.
    open::probe(&backend).map_err(|e| format!("error: {e}"))?;
    // Ctrl-C: finish the step in flight, checkpoint, exit cleanly.
    let interrupt = Arc::new(AtomicBool::new(false));
    let flag = interrupt.clone();
    let _ = ctrlc::set_handler(move || flag.store(true, Ordering::SeqCst));
    let opts = TrainOptions {
        data: a.data,
        epochs: a.epochs,
        batch: a.batch,
        seed: a.seed,
        max_steps: a.max_steps,
        steps: a.steps,
        // With `--resume` and no `--out`: the checkpoint's own folder.
        out_dir: a.out.unwrap_or_else(|| match &a.resume {
            Some(r) => r
                .parent()
                .filter(|d| !d.as_os_str().is_empty())
                .map_or_else(|| ".".into(), Into::into),
            None => "out".into(),
        }),
        quiet: a.quiet,
        results: if a.json { Results::Json } else { Results::Text },
        resume: a.resume,
        checkpoint_every: a.checkpoint_every,
        stop_after: a.stop_after,
        interrupt: Some(interrupt),
        no_fuse: a.no_fuse,
        layout: backend.layout(),
        evaluate_only: false,
    };
    train_ranks(&c.module, &opts, ranks, |cpu, cfg, aug| {
        open::open(&backend, cpu, cfg.batch as usize, aug)
    })
    .map_err(|e| format!("error: {e}"))?;
    Ok(ExitCode::SUCCESS)
}

/// The memory `eval` gives its step when no `--batch` is given.
const EVAL_BUDGET: u64 = 1 << 30;

/// Images per forward pass when `eval` is given no `--batch`: the
/// training batch, halved while the step built for it would plan more
/// than [`EVAL_BUDGET`] bytes (the paper's AlexNet at 128 plans several
/// GB). The figures do not depend on it but for float rounding.
fn eval_batch(module: &netc::lower::Module) -> u64 {
    netc::passes::pipeline::batch_within(
        &module.graph,
        &module.train.sgd,
        module.train.batch,
        EVAL_BUDGET,
    )
}

/// `netc eval`.
pub fn eval(a: EvalArgs) -> Result<ExitCode, String> {
    let (c, _) = load(&a.file)?;
    let backend = BackendConfig::from_flags(&BackendFlags {
        backend: kind(a.backend),
        towers: c.module.graph.towers as usize,
        ..Default::default()
    })
    .map_err(|e| format!("error: {e}"))?;
    open::probe(&backend).map_err(|e| format!("error: {e}"))?;
    let opts = TrainOptions {
        data: a.data,
        batch: Some(a.batch.unwrap_or_else(|| eval_batch(&c.module))),
        evaluate_only: true,
        ..Default::default()
    };
    let make = |cpu, cfg: &TrainConfig, aug: &_| open::open(&backend, cpu, cfg.batch as usize, aug);
    let r = match &a.predictions {
        None => eval_weights_with(&c.module, &a.weights, &opts, make),
        Some(out) => {
            eval_predictions_with(&c.module, &a.weights, &opts, make).and_then(|(r, table)| {
                table.write(out)?;
                Ok(r)
            })
        }
    }
    .map_err(|e| format!("error: {e}"))?;
    println!(
        "{} images: top-1 error {:.2}%, top-5 error {:.2}%, loss {:.4}",
        r.images,
        100.0 * r.top1_error,
        100.0 * r.top5_error,
        r.loss
    );
    if let Some(out) = &a.predictions {
        eprintln!("predictions: {}", out.display());
    }
    Ok(ExitCode::SUCCESS)
}
