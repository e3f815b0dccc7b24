//! The `netc` command line: parses arguments, calls the library, prints.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use clap::{Parser, Subcommand, ValueEnum};

use netc::frontend::{self, Compiled};
use netc::{diag, ir, syntax};

#[derive(Parser)]
#[command(
    name = "netc",
    version,
    about = "A compiler and runtime for convolutional networks described in .net files"
)]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Check a network and print its architecture table (or another form).
    Compile {
        /// The .net file.
        file: PathBuf,
        /// What to print: the architecture table, the IR text, YAML, Graphviz dot, or the
        /// training step's memory plan.
        #[arg(long, value_enum, default_value_t = Emit::Table)]
        emit: Emit,
        /// Write the output here instead of standard output (with `--target
        /// cuda`: the directory that receives netc.cu, launch.txt, netc.ptx).
        #[arg(short, long)]
        output: Option<PathBuf>,
        /// `cpu`: check and print; `cuda`: generate the training step's CUDA code.
        #[arg(long, value_enum, default_value_t = Target::Cpu)]
        target: Target,
        /// Batch size for `--emit memplan` and for code generated with
        /// `--target cuda` (default: the file's `train.batch`).
        #[arg(long)]
        batch: Option<u64>,
        /// Where `--emit memplan` writes its picture (default: `memplan.svg` beside the output).
        #[arg(long)]
        picture: Option<PathBuf>,
        /// Graph passes to run first, in order: `autodiff`, `fuse` or one fusion rewrite
        /// (`conv+relu`, `dense+relu+dropout`, `dense+relu`, `lrn+maxpool`, `grad_chain`).
        /// Default: none (`autodiff,fuse`, the step `netc train` runs, for `--emit memplan`).
        #[arg(long, value_name = "PASS,...")]
        passes: Option<String>,
        /// Print the IR text after this pass (one of those that run) to standard error.
        #[arg(long, value_name = "PASS")]
        dump_after: Option<String>,
        /// Print each pass's time, node counts and what fired to standard error.
        #[arg(short, long)]
        verbose: bool,
        /// With `--target cuda`: generate the unfused training step (the
        /// default is the step after the fusion pass).
        #[arg(long)]
        no_fuse: bool,
        /// With `--target cuda`: place the step on these GPUs, one or one per
        /// tower (`0,1`: tower 0 and the inputs on GPU 0, tower 1 on GPU 1).
        #[arg(long, value_name = "GPU,...")]
        devices: Option<String>,
    },
    /// Report errors and warnings only.
    Check {
        /// The .net file.
        file: PathBuf,
    },
    /// Train a network on Fashion-MNIST (the embedded subset when nothing is installed).
    Train {
        /// The .net file.
        file: PathBuf,
        /// A prepared dataset (`netc prepare`), a folder of images (one
        /// sub-folder per class, or train/ and val/), or a directory holding
        /// the Fashion-MNIST IDX files.
        #[arg(long)]
        data: Option<PathBuf>,
        /// Override `train.epochs`.
        #[arg(long)]
        epochs: Option<u64>,
        /// Override `train.batch`.
        #[arg(long)]
        batch: Option<u64>,
        /// Override `train.seed`.
        #[arg(long)]
        seed: Option<u64>,
        /// Stop each epoch after this many steps.
        #[arg(long)]
        max_steps: Option<u64>,
        /// Where metrics, the learning-curve plot and the checkpoint are written.
        #[arg(long, default_value = "out")]
        out: PathBuf,
        /// Continue exactly where this checkpoint stopped.
        #[arg(long)]
        resume: Option<PathBuf>,
        /// Also checkpoint every this many steps (always at the end of an epoch).
        #[arg(long)]
        checkpoint_every: Option<u64>,
        /// Checkpoint and stop after this many steps in total.
        #[arg(long)]
        stop_after: Option<u64>,
        /// Where the training step runs: `cpu`, or `cuda` (GPU 0; data,
        /// augmentation, evaluation and checkpoints stay on the host).
        #[arg(long, value_enum, default_value_t = Backend::Cpu)]
        backend: Backend,
        /// With `--backend cuda`: crop, mirror, light and normalise the
        /// training batches on the GPU (same crops; raw bytes uploaded).
        #[arg(long)]
        device_augment: bool,
        /// Train the unfused step (same results, one op per layer).
        #[arg(long)]
        no_fuse: bool,
        /// Give every buffer its own allocation instead of executing from
        /// the memory plan (same results, more memory).
        #[arg(long)]
        no_plan: bool,
        /// With `--backend cuda`: issue every launch of every step instead
        /// of replaying the step captured once as a CUDA graph.
        #[arg(long)]
        no_graph: bool,
        /// With `--backend cuda`: the GPUs, one or one per tower (`0,1`:
        /// each tower on its own GPU, cross-tower values copied between
        /// them; `0,0`: both towers on GPU 0, on two streams).
        #[arg(long, value_name = "GPU,...")]
        devices: Option<String>,
    },
    /// Prepare an image tree once into one memory-mapped dataset file for `--data`
    /// (or, with `--info`, describe a prepared dataset).
    Prepare {
        /// `SRC/train/<class>/*` and `SRC/val/<class>/*`, or one folder of classes.
        #[arg(required_unless_present = "info")]
        src: Option<PathBuf>,
        /// The dataset file to write.
        #[arg(short, long, required_unless_present = "info")]
        output: Option<PathBuf>,
        /// Print what a prepared dataset holds (images, classes, bytes, settings).
        #[arg(long, value_name = "DATASET", conflicts_with_all = ["src", "output"])]
        info: Option<PathBuf>,
        /// Side of the prepared images: shorter side rescaled to it, central square kept.
        #[arg(long, default_value_t = 256)]
        size: u32,
        /// How records are stored: `jpeg` (smaller, decoded when read) or `raw` pixels.
        #[arg(long, value_enum, default_value_t = RecordFormat::Jpeg)]
        format: RecordFormat,
        /// JPEG quality (1-100).
        #[arg(long, default_value_t = 90)]
        quality: u8,
        /// For one folder of classes: the fraction of each class kept for validation.
        #[arg(long)]
        val_fraction: Option<f64>,
        /// Leave out unreadable images (listed in DATASET.skipped.txt) instead of stopping.
        #[arg(long)]
        skip_bad: bool,
        /// Commit (fsync) the partial output at least every this many images.
        #[arg(long, default_value_t = 4096, hide = true)]
        commit_every: usize,
    },
    /// Evaluate the weights of a checkpoint on the test set (top-1 and top-5 error).
    Eval {
        /// The .net file.
        file: PathBuf,
        /// A checkpoint written by `netc train`.
        #[arg(long)]
        weights: PathBuf,
        /// A prepared dataset (`netc prepare`), a folder of images (one
        /// sub-folder per class, or train/ and val/), or a directory holding
        /// the Fashion-MNIST IDX files.
        #[arg(long)]
        data: Option<PathBuf>,
        /// Where the forward passes run: `cpu`, or `cuda` (GPU 0).
        #[arg(long, value_enum, default_value_t = Backend::Cpu)]
        backend: Backend,
    },
    /// Time training steps on synthetic data (images/s), for comparison with a peer.
    Bench {
        /// The .net file.
        file: PathBuf,
        /// Batch size (default: the file's `train.batch`).
        #[arg(long)]
        batch: Option<u64>,
        /// Timed steps (after two warm-up steps).
        #[arg(long, default_value_t = 20)]
        steps: u64,
        /// Run the unfused training step (to measure what fusion gains).
        #[arg(long)]
        no_fuse: bool,
        /// Give every buffer its own allocation instead of executing from
        /// the memory plan (to measure what the plan gains).
        #[arg(long)]
        no_plan: bool,
        /// Also print the time spent in each kind of op over the timed steps.
        #[arg(long)]
        profile: bool,
    },
    /// Write ablation variants of a network (each one change, or as a spec lists them).
    Ablate {
        /// The parent .net file.
        file: PathBuf,
        /// Every LRN layer removed.
        #[arg(long)]
        no_lrn: bool,
        /// Every overlapping max pool made 2×2, stride 2.
        #[arg(long)]
        non_overlapping_pool: bool,
        /// The towers merged into one stack with the full channel counts.
        #[arg(long)]
        one_tower: bool,
        /// Every dropout layer removed.
        #[arg(long)]
        no_dropout: bool,
        /// Random crops, mirroring and PCA lighting off.
        #[arg(long)]
        no_augmentation: bool,
        /// One hyperparameter, e.g. `conv1.filters=64` or `train.sgd.lr=0.02`
        /// (repeatable; all `--set`s make one variant).
        #[arg(long = "set", value_name = "PATH=VALUE")]
        sets: Vec<String>,
        /// A YAML spec of variants (combinations of changes) instead of flags.
        #[arg(long)]
        spec: Option<PathBuf>,
        /// Where the variants are written.
        #[arg(short, long, default_value = "variants")]
        output: PathBuf,
    },
    /// Train every variant of a sweep spec and write a comparison table and plot.
    Sweep {
        /// The YAML spec.
        spec: PathBuf,
        /// The data for every variant (a prepared dataset, an image folder or
        /// the Fashion-MNIST files), in place of the spec's `train.data`.
        #[arg(long)]
        data: Option<PathBuf>,
    },
    /// On a machine with a GPU: one training step on the GPU against the CPU
    /// executor, then GPU training throughput on synthetic data.
    #[command(hide = true)]
    CudaCheck {
        /// The .net file.
        file: PathBuf,
        #[arg(long, default_value_t = 32)]
        batch: u64,
        /// Timed steps (0: parity only).
        #[arg(long, default_value_t = 0)]
        steps: u64,
        /// The NVRTC target architecture.
        #[arg(long, default_value = "sm_80")]
        arch: String,
        /// Check the unfused training step (the default is the fused one).
        #[arg(long)]
        no_fuse: bool,
        /// Give every buffer its own memory instead of the memory plan's
        /// layout, so every value of the step is compared.
        #[arg(long)]
        separate: bool,
        /// Issue every launch of every step instead of replaying the step
        /// captured as a CUDA graph.
        #[arg(long)]
        no_graph: bool,
        /// Throughput: stage each step's batch and labels through
        /// page-locked memory, as training does (by default the batch
        /// stays on the device, as in the PyTorch peer).
        #[arg(long)]
        stage: bool,
        /// With `--steps`: also time every launch and GEMM of a step and
        /// print where the time goes, by kernel and by layer.
        #[arg(long)]
        profile: bool,
        /// MiB each convolution's im2col and GEMM-output scratch may take
        /// (the batch runs in chunks of images that fit).
        #[arg(long, default_value_t = 64)]
        workspace_mib: u64,
        /// Place the step on these GPUs, one or one per tower.
        #[arg(long, value_name = "GPU,...")]
        devices: Option<String>,
    },
    /// Rewrite a file in canonical form.
    Fmt {
        /// The .net files.
        #[arg(required = true)]
        files: Vec<PathBuf>,
        /// Do not write; exit 1 if a file is not in canonical form.
        #[arg(long)]
        check: bool,
        /// Print the result instead of rewriting the file.
        #[arg(long, conflicts_with = "check")]
        stdout: bool,
    },
}

#[derive(Clone, Copy, ValueEnum)]
enum RecordFormat {
    Jpeg,
    Raw,
}

#[derive(Clone, Copy, ValueEnum)]
enum Backend {
    Cpu,
    Cuda,
}

#[derive(Clone, Copy, ValueEnum)]
enum Target {
    Cpu,
    Cuda,
}

#[derive(Clone, Copy, ValueEnum)]
enum Emit {
    Table,
    Ir,
    Yaml,
    Dot,
    /// The training step's memory plan (and an SVG picture of it).
    Memplan,
}

fn main() -> ExitCode {
    // A closed pipe (`netc ... | head`) ends the process quietly, as it
    // does for other command-line tools, instead of a failed print.
    #[cfg(unix)]
    // SAFETY: restores the default action for SIGPIPE before any thread
    // starts; no handler runs Rust code.
    unsafe {
        libc::signal(libc::SIGPIPE, libc::SIG_DFL);
    }
    let cli = Cli::parse();
    match run(cli) {
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

/// Compiles a file, printing warnings to stderr; errors become `Err`.
fn load(path: &Path) -> Result<(Compiled, String), String> {
    let (c, src) = frontend::compile_file(path)?;
    if !c.warnings.is_empty() {
        eprint!(
            "{}",
            diag::render(&path.display().to_string(), &src, &c.warnings)
        );
    }
    Ok((c, src))
}

fn write_out(output: Option<&Path>, text: &str) -> Result<(), String> {
    match output {
        None => {
            print!("{text}");
            Ok(())
        }
        Some(p) => write_atomic(p, text.as_bytes()),
    }
}

/// Writes via a temporary file and a rename, so a crash never leaves a
/// half-written file in place of a good one.
fn write_atomic(path: &Path, bytes: &[u8]) -> Result<(), String> {
    let dir = path
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let tmp = dir.join(format!(
        ".{}.tmp",
        path.file_name()
            .map_or("out".into(), |n| n.to_string_lossy())
    ));
    std::fs::write(&tmp, bytes)
        .and_then(|_| std::fs::rename(&tmp, path))
        .map_err(|e| format!("error: cannot write `{}`: {e}", path.display()))
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

fn run(cli: Cli) -> Result<ExitCode, String> {
    match cli.cmd {
        Cmd::Compile {
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
        } => {
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
        Cmd::Train {
            file,
            data,
            epochs,
            batch,
            seed,
            max_steps,
            out,
            resume,
            checkpoint_every,
            stop_after,
            backend,
            device_augment,
            no_fuse,
            no_plan,
            no_graph,
            devices,
        } => {
            let (c, _) = load(&file)?;
            let devices = gpu_list(devices.as_deref(), &c)?;
            if devices.is_some() && matches!(backend, Backend::Cpu) {
                return Err(
                    "error: `--devices` places the step on GPUs: it needs `--backend cuda`".into(),
                );
            }
            // Ctrl-C: finish the step in flight, checkpoint, exit cleanly.
            let interrupt = Arc::new(AtomicBool::new(false));
            let flag = interrupt.clone();
            let _ = ctrlc::set_handler(move || flag.store(true, Ordering::SeqCst));
            let opts = netc::train::run::TrainOptions {
                data,
                epochs,
                batch,
                seed,
                max_steps,
                out_dir: out,
                quiet: false,
                resume,
                checkpoint_every,
                stop_after,
                interrupt: Some(interrupt),
                no_fuse,
                no_plan,
                backend: match backend {
                    Backend::Cpu => netc::train::step::Backend::Cpu,
                    Backend::Cuda => netc::train::step::Backend::Cuda,
                },
                device_augment,
                no_graph,
                devices,
            };
            netc::train::run::train(&c.module, &opts).map_err(|e| format!("error: {e}"))?;
            Ok(ExitCode::SUCCESS)
        }
        Cmd::Prepare {
            src,
            output,
            info,
            size,
            format,
            quality,
            val_fraction,
            skip_bad,
            commit_every,
        } => {
            use netc::train::data::{prepare, prepared::Format};
            let text = match (info, src, output) {
                (Some(path), _, _) => prepare::info(&path),
                (None, Some(src), Some(out)) => prepare::run(&prepare::PrepareOptions {
                    size,
                    format: match format {
                        RecordFormat::Jpeg => Format::Jpeg,
                        RecordFormat::Raw => Format::Raw,
                    },
                    quality,
                    val_fraction,
                    skip_bad,
                    commit_every,
                    progress: true,
                    ..prepare::PrepareOptions::new(src, out)
                }),
                _ => return Err("error: give SRC and -o DATASET, or --info DATASET".into()),
            };
            println!("{}", text.map_err(|e| format!("error: {e}"))?);
            Ok(ExitCode::SUCCESS)
        }
        Cmd::Eval {
            file,
            weights,
            data,
            backend,
        } => {
            let (c, _) = load(&file)?;
            let opts = netc::train::run::TrainOptions {
                data,
                backend: match backend {
                    Backend::Cpu => netc::train::step::Backend::Cpu,
                    Backend::Cuda => netc::train::step::Backend::Cuda,
                },
                ..Default::default()
            };
            let r = netc::train::run::eval_weights(&c.module, &weights, &opts)
                .map_err(|e| format!("error: {e}"))?;
            println!(
                "{} images: top-1 error {:.2}%, top-5 error {:.2}%, loss {:.4}",
                r.images,
                100.0 * r.top1_error,
                100.0 * r.top5_error,
                r.loss
            );
            Ok(ExitCode::SUCCESS)
        }
        Cmd::Bench {
            file,
            batch,
            steps,
            no_fuse,
            no_plan,
            profile,
        } => {
            let (c, _) = load(&file)?;
            let batch = batch.unwrap_or(c.module.train.batch) as usize;
            let memory = if no_plan {
                netc::backend::cpu::exec::Memory::Separate
            } else {
                netc::backend::cpu::exec::Memory::Planned
            };
            let r =
                netc::train::bench::train_steps(&c.module, batch, steps, !no_fuse, memory, profile)
                    .map_err(|e| format!("error: {e}"))?;
            println!(
                "netc {} batch {batch}: {:.1} images/s ({}, {}, arenas {:.1} MiB)",
                c.module.graph.name,
                r.images_per_s,
                if no_fuse { "unfused" } else { "fused" },
                if no_plan {
                    "every buffer apart"
                } else {
                    "planned"
                },
                r.arena_bytes as f64 / (1u64 << 20) as f64
            );
            if profile {
                let total: f64 = r.profile.iter().map(|p| p.1).sum();
                println!(
                    "{:<24} {:>10} {:>7} {:>8}",
                    "op", "ms/step", "share", "calls"
                );
                for (op, secs, calls) in &r.profile {
                    println!(
                        "{op:<24} {:>10.2} {:>6.1}% {:>8}",
                        1e3 * secs / steps.max(1) as f64,
                        100.0 * secs / total.max(1e-12),
                        calls / steps.max(1)
                    );
                }
            }
            Ok(ExitCode::SUCCESS)
        }
        Cmd::Ablate {
            file,
            no_lrn,
            non_overlapping_pool,
            one_tower,
            no_dropout,
            no_augmentation,
            sets,
            spec,
            output,
        } => {
            use netc::ablate::Change;
            let mut variants: Vec<(String, Vec<Change>)> = Vec::new();
            for (on, c) in [
                (no_lrn, Change::NoLrn),
                (non_overlapping_pool, Change::NonOverlappingPool),
                (one_tower, Change::OneTower),
                (no_dropout, Change::NoDropout),
                (no_augmentation, Change::NoAugmentation),
            ] {
                if on {
                    variants.push((c.to_string(), vec![c]));
                }
            }
            if !sets.is_empty() {
                let name = sets
                    .iter()
                    .map(|s| s.replace(['=', '.'], "-"))
                    .collect::<Vec<_>>()
                    .join("_");
                variants.push((
                    format!("set-{name}"),
                    sets.iter().map(|s| Change::Set(s.clone())).collect(),
                ));
            }
            if let Some(spec) = spec {
                let sp = netc::ablate::spec::load(&spec).map_err(|e| format!("error: {e}"))?;
                for v in sp.variants {
                    let ch = v.parsed_changes().map_err(|e| format!("error: {e}"))?;
                    variants.push((v.name, ch));
                }
            }
            if variants.is_empty() {
                return Err(
                    "error: no change asked for; pass --no-lrn, --one-tower, --set … or --spec"
                        .into(),
                );
            }
            let (parent, src) = load(&file)?;
            let stem = file
                .file_stem()
                .map_or("net".into(), |s| s.to_string_lossy().to_string());
            std::fs::create_dir_all(&output)
                .map_err(|e| format!("error: cannot create `{}`: {e}", output.display()))?;
            let base = netc::ir::cost::total(&parent.module.graph);
            let batch = parent.module.train.batch;
            let mem = |m: &netc::lower::Module| {
                netc::passes::memplan::training_step_bytes(m, batch)
                    .map_err(|e| format!("error: {e}"))
            };
            let base_mem = mem(&parent.module)?;
            println!(
                "{:<28} {:>14} {:>16} {:>22} {:>10}",
                "variant",
                "params",
                "MACs",
                format!("memory (batch {batch})"),
                "file"
            );
            for (name, changes) in variants {
                let text = netc::ablate::apply(&file.display().to_string(), &src, &changes)
                    .map_err(|e| format!("error: {name}: {e}"))?;
                let c = netc::frontend::compile(&text)
                    .map_err(|d| netc::diag::render(&name, &text, &[d]))?;
                let t = netc::ir::cost::total(&c.module.graph);
                let path = output.join(format!("{stem}-{name}.net"));
                write_atomic(&path, text.as_bytes())?;
                let delta = |a: u64, b: u64| format!("{:+}", a as i128 - b as i128);
                let m = mem(&c.module)?;
                println!(
                    "{:<28} {:>14} {:>16} {:>22} {}",
                    name,
                    delta(t.params, base.params),
                    delta(t.macs, base.macs),
                    format!(
                        "{:+.1} MiB",
                        (m as f64 - base_mem as f64) / (1u64 << 20) as f64
                    ),
                    path.display()
                );
            }
            Ok(ExitCode::SUCCESS)
        }
        Cmd::Sweep { spec, data } => {
            netc::train::sweep::run_with_data(&spec, data.as_deref())
                .map_err(|e| format!("error: {e}"))?;
            Ok(ExitCode::SUCCESS)
        }
        Cmd::CudaCheck {
            file,
            batch,
            steps,
            arch,
            no_fuse,
            separate,
            no_graph,
            stage,
            profile,
            workspace_mib,
            devices,
        } => cuda_check(
            &file,
            &CheckOpts {
                batch: batch as usize,
                steps,
                arch,
                fuse: !no_fuse,
                separate,
                graph: !no_graph,
                stage,
                profile,
                workspace: workspace_mib << 20,
                devices,
            },
        ),
        Cmd::Check { file } => {
            let (c, _) = load(&file)?;
            eprintln!(
                "{}: ok ({} warning{})",
                file.display(),
                c.warnings.len(),
                if c.warnings.len() == 1 { "" } else { "s" }
            );
            Ok(ExitCode::SUCCESS)
        }
        Cmd::Fmt {
            files,
            check,
            stdout,
        } => {
            let mut unformatted = false;
            for file in files {
                let (c, src) = load(&file)?;
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
    }
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
                " (`fuse` stands for the five rewrites; name one, e.g. `grad_chain`, the last)"
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
fn cuda_step(c: &Compiled, fuse: bool) -> Result<ir::Graph, String> {
    netc::passes::pipeline::training_step(&c.module.graph, &c.module.train.sgd, fuse)
        .map_err(|e| format!("error: {e}"))
}

/// `--devices 0,1`: GPU ordinals, one or one per tower of `c`'s network
/// (`None` without the option).
fn gpu_list(list: Option<&str>, c: &Compiled) -> Result<Option<Vec<usize>>, String> {
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
    netc::backend::cuda::split::check_count(towers, gpus.len())
        .map_err(|e| format!("error: {e}"))?;
    Ok(Some(gpus))
}

/// `netc compile --target cuda`: the training step (fused unless `fuse`
/// is false) as CUDA C, its launch list, and PTX when NVRTC can be loaded.
fn compile_cuda(
    c: &Compiled,
    batch: Option<u64>,
    dir: Option<&Path>,
    fuse: bool,
    gpus: Option<&[usize]>,
) -> Result<ExitCode, String> {
    use netc::backend::cuda::{self, split};
    let dir = dir.ok_or("error: `--target cuda` needs `-o DIR` (the output directory)")?;
    let batch = batch.unwrap_or(c.module.train.batch) as usize;
    let g = cuda_step(c, fuse)?;
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
        cuda::manifest::render(&prog).as_bytes(),
    )?;
    match cuda::nvrtc::compile(&prog.source, "sm_80") {
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

/// `netc cuda-check`'s settings (see the command's flags).
struct CheckOpts {
    batch: usize,
    steps: u64,
    arch: String,
    fuse: bool,
    separate: bool,
    graph: bool,
    stage: bool,
    profile: bool,
    workspace: u64,
    devices: Option<String>,
}

/// `netc cuda-check`: GPU-vs-CPU parity of one step (fused unless `fuse`
/// is false; the CPU executor runs the same graph) and, on one GPU, graph
/// replay against launch-by-launch issue; or throughput (and, on one GPU,
/// where a step's time goes).
fn cuda_check(file: &Path, o: &CheckOpts) -> Result<ExitCode, String> {
    use netc::backend::cuda::{Layout, check};
    let (c, _) = load(file)?;
    let gpus = gpu_list(o.devices.as_deref(), &c)?;
    let g = cuda_step(&c, o.fuse)?;
    let arch: &'static str = match o.arch.as_str() {
        "sm_80" => "sm_80",
        "sm_90" => "sm_90",
        "sm_100" => "sm_100",
        other => return Err(format!("error: unsupported `--arch {other}`")),
    };
    let layout = if o.separate {
        Layout::Separate
    } else {
        Layout::Planned
    };
    let copts = netc::backend::cuda::Options {
        layout,
        conv_workspace: o.workspace,
        ..Default::default()
    };
    let batch = o.batch;
    let run = CheckRun { c: &c, g: &g, o };
    let err = |e: String| format!("error: {e}");
    let Some(gpus) = gpus else {
        let mut exec = check::load(&g, batch, arch, copts).map_err(err)?;
        exec.set_graph(o.graph);
        let bytes = exec.device_bytes();
        let mut ok = check_run(&run, &mut exec, bytes)?;
        if o.steps == 0 && o.graph {
            // Two fresh programs: one replaying the captured step, one not.
            let mut a = check::load(&g, batch, arch, copts).map_err(err)?;
            let mut b = check::load(&g, batch, arch, copts).map_err(err)?;
            let (diff, how) = check::replay_parity(&g, &mut a, &mut b, 6).map_err(err)?;
            let pass = how.starts_with("replaying") && diff <= 1e-6;
            println!(
                "graph replay: 6 staged steps against launch by launch: largest difference {diff:.3e} ({how}): {}",
                if pass { "PASS" } else { "FAIL" }
            );
            ok &= pass;
        }
        if o.steps > 0 {
            println!(
                "  issued: {}; beside the allocation: {:.1} MiB (cuBLAS workspace, staging)",
                exec.replay(),
                exec.extra_bytes() as f64 / (1u64 << 20) as f64
            );
        }
        if o.steps > 0 && o.profile {
            let p = check::profile(&g, &mut exec, 5).map_err(err)?;
            println!(
                "profile (5 steps launch by launch, averaged): {:.3} ms a step, {} launches and GEMMs",
                p.total_ms,
                exec.program().steps.len()
            );
            for (title, rows) in [("kernel", &p.by_kernel), ("layer", &p.by_layer)] {
                println!("  by {title}:");
                for (name, ms, n) in rows.iter().take(16) {
                    println!(
                        "    {:>9.3} ms {:>5.1}% {:>5}x  {name}",
                        ms,
                        100.0 * ms / p.total_ms.max(1e-12),
                        n
                    );
                }
            }
        }
        return Ok(if ok {
            ExitCode::SUCCESS
        } else {
            ExitCode::FAILURE
        });
    };
    let mut exec = check::load_placed(&g, batch, arch, copts, &gpus).map_err(err)?;
    let p = exec.program();
    for (d, gpu) in gpus.iter().enumerate() {
        println!("device {d} (GPU {gpu}): {} bytes", p.device_bytes(d));
    }
    println!(
        "mirrors {} bytes; copies move {} bytes per step",
        p.mirror_bytes(),
        p.copy_bytes()
    );
    let bytes = exec.device_bytes().iter().sum::<usize>();
    let ok = check_run(&run, &mut exec, bytes)?;
    Ok(if ok {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

/// What `netc cuda-check` checks.
struct CheckRun<'a> {
    c: &'a Compiled,
    g: &'a ir::Graph,
    o: &'a CheckOpts,
}

/// `netc cuda-check`'s parity check (or, with `--steps`, throughput) on a
/// loaded device holding `bytes` bytes in all; whether it passed.
fn check_run(
    run: &CheckRun,
    exec: &mut impl netc::backend::cuda::device::Device,
    bytes: usize,
) -> Result<bool, String> {
    use netc::backend::cuda::check;
    let (c, g, o) = (run.c, run.g, run.o);
    let (steps, fuse, separate) = (o.steps, o.fuse, o.separate);
    let batch = exec.program().batch;
    let p = exec.program();
    let mib = |b: u64| b as f64 / (1u64 << 20) as f64;
    let total: u64 = (0..p.devices()).map(|d| p.device_bytes(d)).sum();
    println!(
        "device memory ({}{}): {} bytes ({:.1} MiB): arenas {:.1} MiB (no reuse {:.1} MiB), workspace {:.1} MiB",
        if separate { "separate" } else { "planned" },
        if p.devices() > 1 {
            format!(", {} devices", p.devices())
        } else {
            String::new()
        },
        total,
        mib(total),
        mib(p.planned_bytes()),
        mib(p.no_reuse),
        mib(p.workspace_bytes())
    );
    if steps == 0 {
        let (gpu, cpu, errs) = check::step_parity(g, exec, 7).map_err(|e| format!("error: {e}"))?;
        println!(
            "{} ({}): loss gpu {gpu:.6} cpu {cpu:.6}",
            c.module.graph.name,
            if fuse { "fused" } else { "unfused" }
        );
        for p in errs.iter().take(12) {
            println!(
                "  {:>10.3e}  {:>9} of {:>9} off  {}",
                p.rel_err, p.off, p.total, p.name
            );
        }
        let worst = errs.first().map_or(0.0, |p| p.rel_err);
        let ok = worst <= 1e-3 && (gpu - cpu).abs() <= 1e-4 * cpu.abs().max(1.0);
        println!(
            "parity: {} buffers, worst {worst:.3e}: {}",
            errs.len(),
            if ok { "PASS" } else { "FAIL" }
        );
        return Ok(ok);
    }
    let r = check::throughput(g, exec, steps, o.stage).map_err(|e| format!("error: {e}"))?;
    println!(
        "netc-cuda {}{} batch {batch}: {r:.1} images/s, device memory {:.1} MiB{}{}",
        c.module.graph.name,
        if fuse { "" } else { " (unfused)" },
        bytes as f64 / (1u64 << 20) as f64,
        if o.stage { ", batches staged" } else { "" },
        if o.workspace != 64 << 20 {
            format!(", convolution workspace {} MiB", o.workspace >> 20)
        } else {
            String::new()
        }
    );
    Ok(true)
}
