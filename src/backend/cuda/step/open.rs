//! Opening the CUDA backend on real GPUs: [`probe`] checks the libraries
//! before anything else is loaded, [`open`] builds the step on GPU 0 and
//! [`open_placed`] places its towers on several GPUs; both compile with
//! NVRTC for the asked architecture and evaluate on a GPU too, or on the
//! host mirror (with a note) when the evaluation program cannot be loaded.
//!
//! GPU-only: these functions reach the driver. Their failures are errors
//! that name the way out (`--backend cpu`), never panics.

use std::panic::catch_unwind;

use crate::backend::config::CudaConfig;
use crate::backend::cpu::exec::CpuExec;
use crate::backend::cuda::nvrtc;
use crate::backend::cuda::place::split;
use crate::backend::cuda::program::CudaProgram;
use crate::backend::cuda::runtime::RuntimeError;
use crate::backend::cuda::runtime::device::Device;
use crate::backend::cuda::runtime::exec::CudaExec;
use crate::backend::cuda::runtime::multi::MultiExec;
use crate::backend::cuda::step::run::{CudaStep, cuda_err};
use crate::backend::error::BackendError;
use crate::backend::input::AugmentPlan;

/// Whether a shared library can be loaded (the loader's panic caught).
fn loadable(f: unsafe fn() -> bool) -> bool {
    // SAFETY: the probes only try to load a shared library by name.
    catch_unwind(|| unsafe { f() }).unwrap_or(false)
}

/// Checks that the libraries GPU training needs can be loaded, naming the
/// first one missing; the device itself is found when the step is loaded.
pub fn probe() -> Result<(), BackendError> {
    let missing = |what: &str| {
        Err(BackendError::Unavailable(format!(
            "`--backend cuda` cannot run here: {what}; use `--backend cpu`"
        )))
    };
    if !loadable(cudarc::driver::sys::is_culib_present) {
        return missing(
            "the CUDA driver library (libcuda.so) cannot be loaded (no NVIDIA driver is installed, or it is not on the library path)",
        );
    }
    if !loadable(cudarc::cublas::sys::is_culib_present) {
        return missing(
            "cuBLAS (libcublas.so) cannot be loaded (install the CUDA toolkit's cuBLAS, e.g. `nvidia-cublas`, and add its `lib` folder to `LD_LIBRARY_PATH`)",
        );
    }
    if !nvrtc::available() {
        return missing(&nvrtc::NvrtcError::Unavailable.to_string());
    }
    Ok(())
}

/// A runtime error as training reports it: no device names the way out.
fn no_device(e: RuntimeError) -> BackendError {
    match e {
        RuntimeError::NoDevice(why) => BackendError::Unavailable(format!(
            "`--backend cuda` cannot run here: no usable CUDA device ({why}); use `--backend cpu`"
        )),
        e => e.into(),
    }
}

/// `step`, evaluating on the host (with a note) if its evaluation program
/// could not be opened.
fn or_on_host<D: Device>(step: CudaStep<D>, eval: Result<(), BackendError>) -> CudaStep<D> {
    if let Err(e) = eval {
        eprintln!(
            "note: evaluating on the host: the evaluation program cannot run on the GPU: {e}"
        );
    }
    step
}

/// The training step of `host`'s graph at `batch` on GPU 0: generated,
/// compiled by NVRTC for `cfg.arch`, loaded, parameters uploaded; with
/// `aug`, augmenting on the device ([`CudaStep::with_augment`]); replayed
/// as a CUDA graph after the warm-up steps if `cfg.replay`; buffers laid
/// out as `cfg.layout` says. Evaluation runs on
/// the GPU too ([`CudaStep::eval_on_device`]); if its program cannot be
/// loaded (say, for want of memory), on the host, with a note on stderr.
pub fn open(
    host: CpuExec,
    batch: usize,
    aug: Option<&AugmentPlan>,
    cfg: &CudaConfig,
) -> Result<CudaStep<CudaExec>, BackendError> {
    probe()?;
    let (arch, graph) = (cfg.arch.as_str(), cfg.replay);
    let load = |prog: &CudaProgram| {
        let ptx = nvrtc::compile(&prog.source, arch).map_err(cuda_err)?;
        let mut exec = CudaExec::new(prog.clone(), ptx).map_err(no_device)?;
        exec.set_graph(graph);
        Ok(exec)
    };
    let mut step = CudaStep::build(host, batch, aug, cfg.layout, load)?;
    let eval = step.eval_on_device(load);
    Ok(or_on_host(step, eval))
}

/// The training step of `host`'s graph at `batch` placed on the GPUs
/// `gpus` (`backend::cuda::place::split`, the paper's layout: one GPU, or tower
/// `i` on `gpus[i]` with the inputs, loss and logits on `gpus[0]`; a GPU
/// may be listed twice, its towers then run on two streams), compiled by
/// NVRTC for `cfg.arch`, loaded on each GPU ([`MultiExec`]), parameters
/// uploaded to their tower's device. Evaluation runs on the first GPU (the
/// evaluation program, unplaced), or on the host if it cannot be loaded.
pub fn open_placed(
    host: CpuExec,
    batch: usize,
    aug: Option<&AugmentPlan>,
    gpus: &[usize],
    cfg: &CudaConfig,
) -> Result<CudaStep<MultiExec>, BackendError> {
    probe()?;
    let arch = cfg.arch.as_str();
    let mut step = CudaStep::build(host, batch, aug, cfg.layout, |prog| {
        let at = split::Placement::towers(prog, gpus.len()).map_err(cuda_err)?;
        let placed = split::place(prog, &at).map_err(cuda_err)?;
        let ptx = nvrtc::compile(&placed.source, arch).map_err(cuda_err)?;
        MultiExec::new(placed, ptx, gpus).map_err(no_device)
    })?;
    // Evaluation: the forward program, unplaced, on the first listed GPU.
    let first = &gpus[..gpus.len().min(1)];
    let eval = step.eval_on_device(|prog| {
        let ptx = nvrtc::compile(&prog.source, arch).map_err(cuda_err)?;
        MultiExec::new(prog.clone(), ptx, first).map_err(no_device)
    });
    Ok(or_on_host(step, eval))
}
