//! Builds the configured backend ([`BackendConfig`]) for a run: the CPU
//! executor as it is, or the CUDA step over it (one GPU, or placed on
//! several), behind the step interface.
//!
//! Assumes `cpu` is the run's CPU executor, built for the training graph
//! with its parameters initialised (or to be restored). Guarantees: a
//! backend that cannot run here is an error that names the way out, found
//! by [`probe`] before any data is loaded when the caller asks.

use crate::backend::config::BackendConfig;
use crate::backend::cpu::exec::CpuExec;
use crate::backend::cuda::step::open as cuda;
use crate::backend::error::BackendError;
use crate::backend::input::AugmentPlan;
use crate::backend::step::Step;

/// Checks that the configured backend's libraries can be loaded (the CPU
/// always can).
pub fn probe(cfg: &BackendConfig) -> Result<(), BackendError> {
    match cfg {
        BackendConfig::Cpu { .. } => Ok(()),
        BackendConfig::Cuda(_) => cuda::probe(),
    }
}

/// The training step of `cpu`'s graph at `batch` on the configured
/// backend; `aug` is what a backend that augments on its device needs.
pub fn open(
    cfg: &BackendConfig,
    cpu: CpuExec,
    batch: usize,
    aug: &AugmentPlan,
) -> Result<Box<dyn Step>, BackendError> {
    Ok(match cfg {
        BackendConfig::Cpu { .. } => Box::new(cpu),
        BackendConfig::Cuda(c) => {
            let aug = c.device_augment.then_some(aug);
            match &c.gpus {
                None => Box::new(cuda::open(cpu, batch, aug, c)?),
                Some(gpus) => Box::new(cuda::open_placed(cpu, batch, aug, gpus, c)?),
            }
        }
    })
}
