//! `netc compile`: a network's architecture table, IR text, YAML, dot or
//! training-step memory plan; with `--target cuda`, the generated CUDA
//! step, its launch list and PTX.

use std::path::Path;
use std::process::ExitCode;

use netc::backend::config::Arch;
use netc::frontend::Compiled;
use netc::ir;

use super::args::{CompileArgs, Emit, Target};
use super::{gpu_list, load, write_atomic, write_out};

/// `netc compile`.
pub fn run(a: CompileArgs) -> Result<ExitCode, String> {
    let CompileArgs {
        file,
        emit,
        output,
        target,
        batch,
        picture,
        passes,
        dump_after,
        verbose,
        no_fuse,
        devices,
    } = a;
    let (c, _) = load(&file)?;
    let devices = gpu_list(devices.as_deref(), &c)?;
    if let Target::Cuda = target {
        if passes.is_some() || dump_after.is_some() || verbose {
            return Err("error: `--passes`, `--dump-after` and `-v` do not apply to `--target cuda`, which generates the fused training step (`--no-fuse`: the unfused one)".into());
        }
        return compile_cuda(&c, batch, output.as_deref(), !no_fuse, devices.as_deref());
    }
    if no_fuse {
        return Err("error: `--no-fuse` applies to `--target cuda` only; use `--passes autodiff` for the unfused step".into());
    }
    if devices.is_some() {
        return Err("error: `--devices` applies to `--target cuda` only".into());
    }
    let memplan_emit = matches!(emit, Emit::Memplan);
    let g = &run_passes(&c, passes.as_deref(), memplan_emit, dump_after, verbose)?;
    let text = match emit {
        Emit::Memplan => {
            let batch = batch.unwrap_or(c.module.train.batch);
            let picture = picture.unwrap_or_else(|| {
                let dir = output.as_deref().and_then(Path::parent);
                dir.unwrap_or(Path::new("")).join("memplan.svg")
            });
            memplan(g, batch, &picture)?
        }
        // The table describes the network as written.
        Emit::Table => ir::table::render(&c.module.graph),
        Emit::Ir => ir::print::print(g, Default::default()),
        Emit::Yaml => ir::print::to_yaml(g).map_err(|e| format!("error: {e}"))?,
        Emit::Dot => ir::dot::dot(g),
    };
    write_out(output.as_deref(), &text)?;
    Ok(ExitCode::SUCCESS)
}

/// Plans the memory of training step `g`; writes the picture, returns the text.
fn memplan(g: &ir::Graph, batch: u64, picture: &Path) -> Result<String, String> {
    use netc::passes::{memplan, memplan_svg};
    let plan = memplan::plan(g, batch)
        .map_err(|e| format!("error: cannot plan the memory of this graph: {e}"))?;
    memplan::check(&plan, g)
        .map_err(|e| format!("internal error: the memory plan fails its check: {e}"))?;
    write_atomic(picture, memplan_svg::svg(&plan).as_bytes())?;
    eprintln!("wrote {}", picture.display());
    Ok(memplan::render(&plan))
}

/// `netc compile --passes`: runs the pipeline on a copy of the forward
/// graph (default: no pass, or `autodiff,fuse` for `--emit memplan`,
/// which plans the training step `netc train` runs), with `-v` and `--dump-after` reports on stderr.
fn run_passes(
    c: &Compiled,
    list: Option<&str>,
    memplan: bool,
    dump_after: Option<String>,
    verbose: bool,
) -> Result<ir::Graph, String> {
    use netc::passes::pipeline::{self, Pass};
    let passes = match list {
        Some(l) => pipeline::parse(l).map_err(|e| format!("error: `--passes`: {e}"))?,
        None if memplan => pipeline::parse(pipeline::DEFAULT)
            .map_err(|e| format!("internal error: the default pipeline: {e}"))?,
        None => vec![],
    };
    if memplan && !passes.contains(&Pass::Autodiff) {
        return Err(
            "error: `--emit memplan` plans a training step: `--passes` must include `autodiff`"
                .into(),
        );
    }
    if let Some(d) = &dump_after
        && !passes.iter().any(|p| p.name() == d)
    {
        let ran: Vec<&str> = passes.iter().map(|p| p.name()).collect();
        return Err(format!(
            "error: `--dump-after {d}`: not a pass that runs; the passes that run are: {}{}",
            if ran.is_empty() {
                "none (see `--passes`)".into()
            } else {
                ran.join(", ")
            },
            if d == "fuse" {
                " (`fuse` stands for the seven rewrites; name one, e.g. `dense+act`, the last)"
            } else {
                ""
            },
        ));
    }
    let mut g = c.module.graph.clone();
    let mut after = |t: &pipeline::PassTiming, g: &ir::Graph| {
        if verbose {
            eprintln!("pass {t}");
        }
        if dump_after.as_deref() == Some(t.pass.name()) {
            eprint!(
                "; IR after pass {}\n{}",
                t.pass,
                ir::print::print(g, Default::default())
            );
        }
    };
    let timings = pipeline::run(&mut g, &c.module.train.sgd, &passes, &mut after)
        .map_err(|e| format!("error: {e}"))?;
    if verbose && !timings.is_empty() {
        let total: f64 = timings.iter().map(|t| t.elapsed.as_secs_f64()).sum();
        let n = timings.len();
        let s = if n == 1 { "" } else { "es" };
        eprintln!("{n} pass{s} in {:.2} ms", total * 1e3);
    }
    Ok(g)
}

/// The training step the CUDA backend runs: autodiff's, then the fusion
/// pass unless `fuse` is false.
pub(crate) fn cuda_step(c: &Compiled, fuse: bool) -> Result<ir::Graph, String> {
    netc::passes::pipeline::training_step(&c.module.graph, &c.module.train.sgd, fuse)
        .map_err(|e| format!("error: {e}"))
}

/// The most GPU memory a generated step may need (no GPU holds more).
const MAX_STEP_BYTES: u64 = 1 << 40;

/// `netc compile --target cuda`: the training step (fused unless `fuse`
/// is false) as CUDA C, its launch list, and PTX when NVRTC can be loaded.
fn compile_cuda(
    c: &Compiled,
    batch: Option<u64>,
    dir: Option<&Path>,
    fuse: bool,
    gpus: Option<&[usize]>,
) -> Result<ExitCode, String> {
    use netc::backend::cuda::{self, place::split};
    let dir = dir.ok_or("error: `--target cuda` needs `-o DIR` (the output directory)")?;
    let batch = batch.unwrap_or(c.module.train.batch) as usize;
    let g = cuda_step(c, fuse)?;
    // The launch list grows with the batch: a batch whose step no GPU
    // could hold is refused, with its size, before anything is generated.
    let plan = netc::passes::memplan::plan(&g, batch as u64)
        .map_err(|e| format!("error: cannot plan the memory of this graph: {e}"))?;
    if plan.planned() > MAX_STEP_BYTES {
        return Err(format!(
            "error: the step at batch {batch} needs {} bytes of GPU memory, more than the {MAX_STEP_BYTES} (1 TiB) netc generates code for; give a smaller `--batch`",
            plan.planned()
        ));
    }
    let mut prog = cuda::generate(&g, batch).map_err(|e| format!("error: {e}"))?;
    if let Some(gpus) = gpus {
        let at = split::Placement::towers(&prog, gpus.len()).map_err(|e| format!("error: {e}"))?;
        prog = split::place(&prog, &at).map_err(|e| format!("error: {e}"))?;
    }
    std::fs::create_dir_all(dir)
        .map_err(|e| format!("error: cannot create `{}`: {e}", dir.display()))?;
    write_atomic(&dir.join("netc.cu"), prog.source.as_bytes())?;
    write_atomic(
        &dir.join("launch.txt"),
        cuda::generate::manifest::render(&prog).as_bytes(),
    )?;
    match cuda::nvrtc::compile(&prog.source, Arch::default().as_str()) {
        Ok(ptx) => write_atomic(&dir.join("netc.ptx"), ptx.as_bytes())?,
        Err(cuda::nvrtc::NvrtcError::Unavailable) => {
            eprintln!("note: NVRTC is not available, so no netc.ptx was written")
        }
        Err(e) => return Err(format!("error: {e}")),
    }
    let memory = if prog.devices() > 1 {
        let per: Vec<String> = (0..prog.devices())
            .map(|d| prog.device_bytes(d).to_string())
            .collect();
        format!(
            "device bytes {} on {} devices (planned arenas {}, workspaces and mirrors {}; copies move {} bytes per step)",
            per.join(" + "),
            prog.devices(),
            prog.planned_bytes(),
            prog.workspace_bytes(),
            prog.copy_bytes()
        )
    } else {
        format!(
            "{} device bytes (planned arenas {}, workspace {})",
            prog.bytes(),
            prog.planned_bytes(),
            prog.workspace_bytes()
        )
    };
    eprintln!(
        "{} ({}): {} kernels, {} steps, batch {batch}, {memory} -> {}",
        prog.network,
        if fuse { "fused" } else { "unfused" },
        prog.kernels.len(),
        prog.steps.len(),
        dir.display()
    );
    if let Some(gpus) = gpus.filter(|_| prog.devices() > 1) {
        let on: Vec<String> = gpus
            .iter()
            .enumerate()
            .map(|(d, gpu)| format!("device {d} on GPU {gpu}"))
            .collect();
        eprintln!("  {}", on.join(", "));
    }
    Ok(ExitCode::SUCCESS)
}
