//! `netc cuda-check` (on a machine with an NVIDIA GPU): one step's parity
//! against the CPU executor, graph replay against launch-by-launch issue,
//! throughput, and where a step's time goes. The reports are the library's
//! (`backend::cuda::step::report`); this module loads and prints them.

use std::process::ExitCode;

use netc::backend::config::Arch;
use netc::backend::cuda::runtime::device::Device;
use netc::backend::cuda::step::check;
use netc::backend::cuda::step::report::{
    MemoryReport, ParityReport, PlacementReport, ReplayReport, ThroughputReport,
};
use netc::backend::cuda::{Layout, Options};
use netc::ir;

use super::args::CudaCheckArgs;
use super::compile::cuda_step;
use super::{gpu_list, load};

/// What one check run compares and prints.
struct Run<'a> {
    network: &'a str,
    g: &'a ir::Graph,
    a: &'a CudaCheckArgs,
}

fn err(e: String) -> String {
    format!("error: {e}")
}

fn code(ok: bool) -> ExitCode {
    if ok {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}

/// `netc cuda-check`: GPU-vs-CPU parity of one step (fused unless
/// `--no-fuse`; the CPU executor runs the same graph) and, on one GPU,
/// graph replay against launch-by-launch issue; or throughput (and, on one
/// GPU, where a step's time goes).
pub fn run(a: CudaCheckArgs) -> Result<ExitCode, String> {
    let (c, _) = load(&a.file)?;
    let gpus = gpu_list(a.devices.as_deref(), &c)?;
    let g = cuda_step(&c, !a.no_fuse)?;
    let arch = match &a.arch {
        Some(name) => Arch::parse(name).map_err(|e| format!("error: {e}"))?,
        None => Arch::default(),
    }
    .as_str();
    let copts = Options {
        layout: if a.separate {
            Layout::Separate
        } else {
            Layout::Planned
        },
        conv_workspace: a.workspace_mib << 20,
        ..Default::default()
    };
    let batch = a.batch as usize;
    let run = Run {
        network: &c.module.graph.name,
        g: &g,
        a: &a,
    };
    let Some(gpus) = gpus else {
        let mut exec = check::load(&g, batch, arch, copts).map_err(err)?;
        exec.set_graph(!a.no_graph);
        let bytes = exec.device_bytes();
        let mut ok = check_run(&run, &mut exec, bytes)?;
        if a.steps == 0 && !a.no_graph {
            // Two fresh programs: one replaying the captured step, one not.
            let mut x = check::load(&g, batch, arch, copts).map_err(err)?;
            let mut y = check::load(&g, batch, arch, copts).map_err(err)?;
            let (diff, how) = check::replay_parity(&g, &mut x, &mut y, 6).map_err(err)?;
            let r = ReplayReport {
                steps: 6,
                diff,
                how,
            };
            println!("{r}");
            ok &= r.passed();
        }
        if a.steps > 0 {
            println!(
                "  issued: {}; beside the allocation: {:.1} MiB (cuBLAS workspace, staging)",
                exec.replay(),
                exec.extra_bytes() as f64 / (1u64 << 20) as f64
            );
        }
        if a.steps > 0 && a.profile {
            println!("{}", check::profile(&g, &mut exec, 5).map_err(err)?);
        }
        return Ok(code(ok));
    };
    let mut exec = check::load_placed(&g, batch, arch, copts, &gpus).map_err(err)?;
    println!(
        "{}",
        PlacementReport {
            program: exec.program(),
            gpus: &gpus,
        }
    );
    let bytes = exec.device_bytes().iter().sum::<usize>();
    Ok(code(check_run(&run, &mut exec, bytes)?))
}

/// The parity check (or, with `--steps`, throughput) on a loaded device
/// holding `bytes` bytes in all; whether it passed.
fn check_run(run: &Run, exec: &mut impl Device, bytes: usize) -> Result<bool, String> {
    let a = run.a;
    println!("{}", MemoryReport::of(exec.program(), a.separate));
    if a.steps == 0 {
        let (gpu_loss, cpu_loss, errs) = check::step_parity(run.g, exec, 7).map_err(err)?;
        let r = ParityReport {
            network: run.network.to_string(),
            fused: !a.no_fuse,
            gpu_loss,
            cpu_loss,
            errs,
        };
        println!("{r}");
        return Ok(r.passed());
    }
    let batch = exec.program().batch;
    let images_per_s = check::throughput(run.g, exec, a.steps, a.stage).map_err(err)?;
    let r = ThroughputReport {
        network: run.network.to_string(),
        fused: !a.no_fuse,
        batch,
        images_per_s,
        device_bytes: bytes,
        staged: a.stage,
        workspace: a.workspace_mib << 20,
    };
    println!("{r}");
    Ok(true)
}
