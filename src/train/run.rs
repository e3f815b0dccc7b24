//! The training loop behind `netc train` and `netc eval`: data from the
//! `.net` file's `data` section, the autodiff'd graph on the CPU executor,
//! the paper's SGD with the file's schedule, per-epoch evaluation (top-1
//! and top-5 error, centre crop or the paper's ten crops), metrics as JSON
//! lines, a learning-curve SVG, and atomic safetensors checkpoints.
//!
//! The step runs on any backend behind the step interface
//! (`backend::step::Step`): [`train_with`] takes a function that builds
//! it from the run's CPU executor (freshly initialised from the seed), its
//! settings and what a device needs to augment; the command line hands in
//! the configured backend, the tests an emulated device. [`train`] and
//! [`eval_weights`] run on the CPU executor itself. Data, augmentation
//! (unless the backend takes raw batches) and checkpoints stay here.
//!
//! Guarantees: deterministic for a given seed whatever the thread count; a
//! run interrupted at any step boundary (Ctrl-C, `stop_after`) and resumed
//! from its checkpoint ends with exactly the weights of an uninterrupted
//! run; a non-finite loss stops training naming the first layer holding a
//! non-finite value, and leaves the last good checkpoint in place (an
//! executor that does not check its parameters after every step, see
//! [`Step::state_finite`], has them checked before each checkpoint).
//! One run at a time writes into `--out` (`fsio::OutputLock`, held for
//! the run's life); its checkpoint, metrics and plot are replaced together
//! (`outputs::publish`), and a resume keeps only its own run's metrics.
//! The results (each epoch's line, the outcome) go to standard output as
//! [`Results`] says, progress and notes to standard error; a resume takes
//! the settings its checkpoint records where the options give none, and
//! its network and the data path's kind are checked before data is loaded.
//! Under an MPI launcher with several processes, [`train_ranks`] runs the
//! same training data-parallel over the ranks (see its comment and
//! `crate::dist`).

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Instant;

use crate::backend::cpu::exec::CpuExec;
use crate::backend::input::AugmentPlan;
use crate::backend::layout::Layout;
use crate::backend::step::{Batch, Feed, Step};
use crate::data;
use crate::data::augment::Mode;
use crate::data::loader::{Loader, LoaderConfig};
use crate::dist::{Collective, Shard, Single};
use crate::ir::print;
use crate::ir::train::{Schedule, TestCrop, TrainConfig};
use crate::lower::Module;
pub use crate::model::build::training_graph;
use crate::model::build::{augmenter, restore_loaded};
use crate::model::checkpoint::{self, Checkpoint, Progress, RunSettings};
pub use crate::model::error::TrainError;
use crate::model::predictions::{self, Row, Table};
use crate::model::preparation::Preparation;
pub use crate::train::report::{EpochReport, EvalReport, Outcome, Results};

#[derive(Clone, Debug, Default)]
pub struct TrainOptions {
    pub data: Option<PathBuf>,
    pub epochs: Option<u64>,
    pub batch: Option<u64>,
    pub seed: Option<u64>,
    /// Stop each epoch after this many steps (quick runs and tests); every
    /// epoch still ends with a full evaluation and a checkpoint.
    pub max_steps: Option<u64>,
    /// Stop after this many steps in all: the epoch in progress ends there,
    /// with its evaluation and checkpoint, and so does the run.
    pub steps: Option<u64>,
    /// Metrics, plot and checkpoint go here.
    pub out_dir: PathBuf,
    /// No progress bar and no diagnostics on standard error (errors are
    /// returned, results printed as `results` says).
    pub quiet: bool,
    /// What goes to standard output: each epoch's line and the outcome.
    pub results: Results,
    /// Skip the fusion pass (fusion is on by default).
    pub no_fuse: bool,
    /// How the CPU executor lays out the step's buffers (the memory plan
    /// by default; `Separate`: every buffer apart).
    pub layout: Layout,
    /// Continue from this checkpoint, with the seed, batch, epochs,
    /// `max_steps` and data it records where these options are `None`.
    pub resume: Option<PathBuf>,
    /// Also checkpoint every this many steps (always at the end of an epoch).
    pub checkpoint_every: Option<u64>,
    /// Checkpoint and stop once this many steps have been taken in total.
    pub stop_after: Option<u64>,
    /// Set (by a Ctrl-C handler) to checkpoint and stop at the next step.
    pub interrupt: Option<Arc<AtomicBool>>,
    /// Evaluation only (`netc eval`): `batch` is the number of images per
    /// forward pass, and what only training needs (a training split at
    /// least one batch large, a step to take) is not asked of the data.
    pub evaluate_only: bool,
}

/// The learning rate of `epoch` (0-based) under a step or fixed schedule;
/// plateau decisions are taken by [`Plateau`]. A cosine schedule changes
/// at every step: see [`step_lr`]; this is its rate at the epoch's start.
pub fn scheduled_lr(cfg: &TrainConfig, epoch: u64, plateau_lr: f64) -> f64 {
    match cfg.schedule {
        Schedule::Fixed => cfg.sgd.lr,
        Schedule::Step { every, factor } => cfg.sgd.lr * factor.powi((epoch / every.max(1)) as i32),
        Schedule::Plateau { .. } => plateau_lr,
        Schedule::Cosine { .. } => step_lr(cfg, epoch, 0, 1, plateau_lr),
    }
}

/// The learning rate of step `batch` (0-based) of `epoch` when every epoch
/// takes `steps_per_epoch` steps: the epoch's rate ([`scheduled_lr`]) but
/// under `cosine(warmup, min_lr)`, where with `s` the step's index in the
/// run, `T = epochs·steps_per_epoch` steps in all and
/// `W = round(warmup·steps_per_epoch)` of warm-up:
/// `lr·s/W` while `s < W`, then
/// `min_lr + (lr − min_lr)·(1 + cos(π·(s − W)/(T − W)))/2`.
/// A pure function of the step, so a resumed run takes the same rates.
pub fn step_lr(
    cfg: &TrainConfig,
    epoch: u64,
    batch: u64,
    steps_per_epoch: u64,
    plateau_lr: f64,
) -> f64 {
    let Schedule::Cosine { warmup, min_lr } = cfg.schedule else {
        return scheduled_lr(cfg, epoch, plateau_lr);
    };
    let per = steps_per_epoch.max(1);
    let s = (epoch * per + batch) as f64;
    let total = (cfg.epochs * per) as f64;
    let w = warmup_steps(warmup, per).min(cfg.epochs * per) as f64;
    if s < w {
        return cfg.sgd.lr * s / w;
    }
    let progress = if total > w {
        (s - w) / (total - w)
    } else {
        1.0
    };
    min_lr + (cfg.sgd.lr - min_lr) * 0.5 * (1.0 + (std::f64::consts::PI * progress).cos())
}

/// The warm-up of `cosine(warmup: E)` in steps: `E` epochs, rounded.
pub fn warmup_steps(warmup: f64, steps_per_epoch: u64) -> u64 {
    (warmup * steps_per_epoch as f64).round() as u64
}

/// The paper's rule: divide when the validation error stops improving.
#[derive(Clone, Debug, PartialEq)]
pub struct Plateau {
    pub lr: f64,
    pub best: f64,
    pub since: u64,
    pub drops: u64,
}

impl Plateau {
    pub fn new(lr: f64) -> Self {
        Plateau {
            lr,
            best: f64::INFINITY,
            since: 0,
            drops: 0,
        }
    }
    /// The plateau state a checkpoint's progress holds.
    pub fn restore(p: &Progress) -> Self {
        Plateau {
            lr: p.plateau_lr,
            best: p.plateau_best.unwrap_or(f64::INFINITY),
            since: p.plateau_since,
            drops: p.plateau_drops,
        }
    }

    /// Writes the plateau state into a checkpoint's progress.
    pub fn record(&self, p: &mut Progress) {
        p.plateau_lr = self.lr;
        p.plateau_best = self.best.is_finite().then_some(self.best);
        p.plateau_since = self.since;
        p.plateau_drops = self.drops;
    }

    pub fn observe(&mut self, cfg: &TrainConfig, error: f64) {
        if let Schedule::Plateau {
            factor,
            patience,
            drops,
        } = cfg.schedule
        {
            if error < self.best {
                self.best = error;
                self.since = 0;
            } else {
                self.since += 1;
                if self.since > patience && self.drops < drops {
                    self.lr *= factor;
                    self.drops += 1;
                    self.since = 0;
                }
            }
        }
    }
}

/// The settings after command-line overrides.
pub fn effective_config(module: &Module, opts: &TrainOptions) -> TrainConfig {
    let mut cfg = module.train.clone();
    if let Some(e) = opts.epochs {
        cfg.epochs = e;
    }
    if let Some(b) = opts.batch {
        cfg.batch = b;
    }
    if let Some(s) = opts.seed {
        cfg.seed = s;
    }
    cfg
}

// The data a run uses, whatever `--data` names (a prepared dataset, an
// image folder, Fashion-MNIST), is opened by `data::sources::open`.

/// What a diverged run says of its checkpoint: whether this run has one.
fn kept(saved: bool) -> &'static str {
    if saved {
        "the last good checkpoint is kept"
    } else {
        "no checkpoint was written: the run had none good to keep"
    }
}

/// Data, augmentation and an executor with freshly initialised parameters.
struct Setup<E> {
    /// Whether this run resumed from or wrote a checkpoint.
    saved: bool,
    cfg: TrainConfig,
    exec: E,
    train: Loader,
    test: Loader,
    fingerprint: String,
    network: String,
    /// What a checkpoint stores for classifying images without the data.
    prep: Preparation,
}

/// Builds the run's CPU executor and turns it into the step executor with `make`.
/// A checkpoint `ck` (read from its path) must be of the network: that is
/// checked before any data is loaded.
fn setup<E: Step, X: Into<TrainError>>(
    module: &Module,
    opts: &TrainOptions,
    ck: Option<(&Path, &Checkpoint)>,
    say: &dyn Fn(&str),
    shard: Shard,
    make: impl FnOnce(CpuExec, &TrainConfig, &AugmentPlan) -> Result<E, X>,
) -> Result<Setup<E>, TrainError> {
    let cfg = effective_config(module, opts);
    // A rank's share of every global batch (the file's batch).
    let local = shard.local_batch(cfg.batch).map_err(TrainError::Config)? as usize;
    // What `netc check` refuses is refused here too, before any data, and
    // so is a run that would take no step.
    crate::passes::trainable::check(&module.graph, &module.train, Default::default())
        .map_err(|e| TrainError::Config(e.to_string()))?;
    if !opts.evaluate_only {
        super::no_step::check_counts(&cfg, opts.max_steps).map_err(TrainError::Config)?;
        if opts.steps == Some(0) {
            return Err(TrainError::Config(
                "`--steps 0` would take no training step; give 1 or more".into(),
            ));
        }
    }
    let graph = training_graph(module, &cfg, !opts.no_fuse)?;
    let fingerprint = checkpoint::fingerprint(&print::print_for_fingerprint(&graph));
    let network = graph.name.clone();
    if let Some((path, ck)) = ck {
        ck.expect(path, &network, &fingerprint)?;
    }
    let ds = data::sources::open(opts.data.as_deref(), cfg.data.rescale)?;
    say(&format!("data: {}", ds.description));
    let aug = augmenter(&cfg, ds.shape(), &ds.stats, cfg.seed)?;
    let prep = Preparation::of_run(&cfg.data, &ds, &aug);
    let out = aug.out_shape();
    let mut exec = CpuExec::with_memory(graph, cfg.seed, opts.layout)?;
    if shard.size > 1 {
        // A rank's buffers are laid out for its share of the batch.
        exec.plan_at(local)?;
    }
    if exec.image_len() != out.len() {
        // The input's shape as C×H×W, as the data's is given.
        let want = exec
            .graph()
            .training_io()
            .ok()
            .map(|(image, ..)| {
                let dims = exec.graph().node(image).ty.dims().to_vec();
                let d: Vec<String> = dims.iter().map(u64::to_string).collect();
                format!("{} images ({} values)", d.join("×"), exec.image_len())
            })
            .unwrap_or_else(|| format!("{} values", exec.image_len()));
        return Err(TrainError::Config(format!(
            "the data gives {}×{}×{} images but the network's input takes {want}",
            out.c, out.h, out.w,
        )));
    }
    if let Some(w) = super::no_step::check_classes(&exec, ds.class_names.len())? {
        say(&w);
    }
    // Decoding and augmenting on every core (batches do not depend on it).
    let workers = std::thread::available_parallelism().map_or(2, |n| n.get());
    let mut lcfg = LoaderConfig::train(local, cfg.seed);
    lcfg.drop_last = true;
    lcfg.workers = workers;
    // Nothing random left to draw: the central crop, as evaluation takes it.
    if !cfg.data.random_crop && !cfg.data.mirror && cfg.data.lighting == 0.0 {
        lcfg.mode = Mode::Center;
    }
    let cfgerr = |e: data::augment::ConfigError| TrainError::Config(e.to_string());
    let train_images = ds.train.len();
    let train = Loader::from_source(ds.train, aug.clone(), lcfg)
        .map_err(cfgerr)?
        .sharded(shard);
    if !opts.evaluate_only {
        super::no_step::check_batches(cfg.batch, train_images, train.len()).map_err(|e| {
            TrainError::Config(match &opts.data {
                Some(d) if train_images == 0 => format!("{}: {e}", d.display()),
                _ => e,
            })
        })?;
    }
    let mut ecfg = LoaderConfig::eval(local);
    ecfg.workers = workers;
    if cfg.data.test == TestCrop::TenCrop {
        ecfg.mode = Mode::TenCrop;
    }
    let test = Loader::from_source(ds.test, aug, ecfg)
        .map_err(cfgerr)?
        .sharded(shard);
    let exec = make(exec, &cfg, &train.augmenter().plan()).map_err(Into::into)?;
    Ok(Setup {
        saved: opts.resume.is_some(),
        cfg,
        exec,
        train,
        test,
        fingerprint,
        network,
        prep,
    })
}

/// Evaluates on the whole test split: centre crops, or ten crops per image
/// with the softmax outputs averaged (the paper's test procedure).
pub fn evaluate<E: Step + ?Sized>(exec: &mut E, loader: &Loader) -> Result<EvalReport, TrainError> {
    evaluate_each(exec, loader, |_, _, _| {})
}

/// [`evaluate`] on the ranks' shares of the test split (each rank's
/// loader sharded): the top-1 and top-5 counts and the image count are
/// summed exactly over the ranks, the loss sum in `f64`, so the figures
/// are those of one process but for the order of the loss sum.
pub fn evaluate_ranks<E: Step + ?Sized>(
    exec: &mut E,
    loader: &Loader,
    ranks: &dyn Collective,
) -> Result<EvalReport, TrainError> {
    let mut sums = eval_sums(exec, loader, |_, _, _| {})?;
    if ranks.size() > 1 {
        let mut counts = [sums.top1, sums.top5, sums.n];
        ranks.all_reduce_u64(&mut counts);
        let mut loss = [sums.loss];
        ranks.all_reduce_f64(&mut loss);
        sums = EvalSums {
            loss: loss[0],
            top1: counts[0],
            top5: counts[1],
            n: counts[2],
        };
    }
    Ok(sums.report())
}

/// An evaluation's sums: of the per-image losses, of the top-1 and top-5
/// hits, of the images.
#[derive(Clone, Copy, Debug, Default)]
struct EvalSums {
    loss: f64,
    top1: u64,
    top5: u64,
    n: u64,
}

impl EvalSums {
    fn report(&self) -> EvalReport {
        let d = self.n.max(1) as f64;
        EvalReport {
            loss: self.loss / d,
            top1_error: 1.0 - self.top1 as f64 / d,
            top5_error: 1.0 - self.top5 as f64 / d,
            images: self.n as usize,
        }
    }
}

/// [`evaluate`], handing every test image's index, label and logits
/// (`classes` values, or ten rows of them for ten crops, in the order of
/// `Augmenter::ten_crop_params`) to `each`, in index order.
pub fn evaluate_each<E: Step + ?Sized>(
    exec: &mut E,
    loader: &Loader,
    each: impl FnMut(usize, u32, &[f32]),
) -> Result<EvalReport, TrainError> {
    Ok(eval_sums(exec, loader, each)?.report())
}

fn eval_sums<E: Step + ?Sized>(
    exec: &mut E,
    loader: &Loader,
    mut each: impl FnMut(usize, u32, &[f32]),
) -> Result<EvalSums, TrainError> {
    let ten = loader.config().mode == Mode::TenCrop;
    let (mut loss, mut t1, mut t5, mut n) = (0.0, 0usize, 0usize, 0usize);
    for batch in loader.epoch(0, 0) {
        if !ten {
            let s = exec.eval_batch(&batch.images, &batch.labels)?;
            let logits = exec.logits();
            let k = logits.len() / batch.labels.len().max(1);
            for (i, (&index, &label)) in batch.indices.iter().zip(&batch.labels).enumerate() {
                each(index, label, &logits[i * k..(i + 1) * k]);
            }
            loss += s.loss * s.n as f64;
            t1 += s.top1;
            t5 += s.top5;
            n += s.n;
            continue;
        }
        let labels: Vec<u32> = batch.labels.iter().flat_map(|&l| [l; 10]).collect();
        exec.eval_batch(&batch.images, &labels)?;
        let logits = exec.logits();
        let k = logits.len() / labels.len().max(1);
        for (i, &label) in batch.labels.iter().enumerate() {
            each(
                batch.indices[i],
                label,
                &logits[10 * i * k..10 * (i + 1) * k],
            );
            let s = crate::model::ten_crop::score(&logits[10 * i * k..10 * (i + 1) * k], k, label);
            loss += s.loss;
            t1 += usize::from(s.top1);
            t5 += usize::from(s.top5);
            n += 1;
        }
    }
    if let Some(e) = loader.take_error() {
        return Err(e.into());
    }
    Ok(EvalSums {
        loss,
        top1: t1 as u64,
        top5: t5 as u64,
        n: n as u64,
    })
}

/// Commits the run's files (`outputs::publish`): the executor's state as
/// the checkpoint, with the metrics and plot of `reports`, unless a value
/// in the state is not finite (then the last good checkpoint stays and the
/// run stops).
fn commit<E: Step>(
    s: &mut Setup<E>,
    paths: &super::outputs::Paths,
    run: &str,
    p: &Progress,
    reports: &[EpochReport],
    kept_lines: &[String],
    lead: bool,
) -> Result<(), TrainError> {
    if !lead {
        return Ok(());
    }
    let tensors = s.exec.state()?;
    if tensors.iter().any(|t| t.2.iter().any(|v| !v.is_finite())) {
        drop(tensors);
        let layer = s.exec.first_non_finite()?;
        return Err(TrainError::NonFiniteState {
            step: p.step,
            layer: layer.unwrap_or_else(|| "a parameter".into()),
            loss: None,
            kept: kept(s.saved),
        });
    }
    let bytes = checkpoint::encode(
        paths.checkpoint,
        &s.network,
        &s.fingerprint,
        p,
        Some(&s.prep),
        &tensors,
    )?;
    drop(tensors);
    super::outputs::publish(paths, &s.network, run, reports, kept_lines, Some(&bytes))?;
    s.saved = true;
    Ok(())
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> TrainError + '_ {
    move |source| TrainError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// `opts` with what a resumed checkpoint's progress `p` records in place
/// of the options not given: its seed and batch, and (where it records
/// them) its epochs, `max_steps` and data.
fn resolve(opts: &TrainOptions, p: Option<&Progress>) -> TrainOptions {
    let mut o = opts.clone();
    let Some(p) = p else { return o };
    o.seed = o.seed.or(Some(p.seed));
    if p.batch_size != 0 {
        o.batch = o.batch.or(Some(p.batch_size));
    }
    if let Some(st) = &p.settings {
        o.epochs = o.epochs.or(Some(st.epochs));
        o.max_steps = o.max_steps.or(st.max_steps);
        if o.data.is_none() {
            o.data = st.data.as_ref().map(PathBuf::from);
        }
    }
    o
}

/// Prints one line of results on standard output (a closed pipe is not
/// an error of the run).
fn result_line(line: &str) {
    use std::io::Write;
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "{line}");
    let _ = out.flush();
}

/// Trains `module` on the CPU executor; see the module comment for what is
/// guaranteed.
pub fn train(module: &Module, opts: &TrainOptions) -> Result<Outcome, TrainError> {
    train_with(module, opts, |cpu, _, _| Ok::<_, TrainError>(cpu))
}

/// Trains `module` with the step executor `make` builds from the run's
/// CPU executor (freshly initialised from the seed), settings and training
/// augmentation plan. A backend whose [`Step::feed`] is [`Feed::Raw`] is
/// fed raw batches (`Loader::raw_batch`), the others host-augmented ones.
pub fn train_with<E: Step, X: Into<TrainError>>(
    module: &Module,
    opts: &TrainOptions,
    make: impl FnOnce(CpuExec, &TrainConfig, &AugmentPlan) -> Result<E, X>,
) -> Result<Outcome, TrainError> {
    train_ranks(module, opts, Arc::new(Single), make)
}

/// [`train_with`] as one of the data-parallel ranks of `ranks` (every
/// rank calls it with the same network, options and data).
///
/// The `.net` file's batch stays the global batch: each of `N` ranks
/// takes its `batch/N` examples of every global batch of the one seeded
/// order (`Loader::sharded`; a batch that `N` does not divide is
/// refused), each image augmented as one process augments it (keyed by
/// its index) and its dropout masks those of its place in the global
/// batch. After the backward pass each parameter gradient is summed over
/// the ranks and divided by `N` before its update (the step's gradient
/// reducer), so every rank applies the update one process would, up to
/// the rounding of the sum. Parameters and velocities are broadcast from
/// rank 0 at the start (fresh or resumed) and before every evaluation;
/// batch normalisation uses each rank's own batch statistics during a
/// step (as PyTorch's `DistributedDataParallel` does by default), and
/// rank 0's running statistics from the end of every epoch. Before any
/// step the ranks check that they run the same network (fingerprint),
/// settings, data and resume point; a difference is an error on every
/// rank. Only rank 0 prints and writes `--out`; evaluation is sharded
/// and its counts reduced exactly ([`evaluate_ranks`]).
pub fn train_ranks<E: Step, X: Into<TrainError>>(
    module: &Module,
    opts: &TrainOptions,
    ranks: Arc<dyn Collective>,
    make: impl FnOnce(CpuExec, &TrainConfig, &AugmentPlan) -> Result<E, X>,
) -> Result<Outcome, TrainError> {
    let lead = ranks.rank() == 0;
    let shard = Shard {
        rank: ranks.rank(),
        size: ranks.size(),
    };
    let say = |s: &str| {
        if !opts.quiet && lead {
            eprintln!("{s}");
        }
    };
    let result_line = |line: &str| {
        if lead {
            result_line(line)
        }
    };
    // The cheap checks first: the data path's kind, then the checkpoint
    // (read once; its network is checked before any data is loaded).
    if let Some(d) = &opts.data {
        data::sources::check_path(d)?;
    }
    let resumed = match &opts.resume {
        Some(from) => Some((from.as_path(), checkpoint::load(from)?)),
        None => None,
    };
    let given = opts;
    let resolved = resolve(opts, resumed.as_ref().map(|r| &r.1.progress));
    let opts = &resolved;
    if let Some(d) = opts.data.as_ref().filter(|_| given.data.is_none()) {
        data::sources::check_path(d).map_err(|e| {
            TrainError::Config(format!(
                "{e} (the data the checkpoint records; give `--data` for another)"
            ))
        })?;
    }
    if let Some(m) = given.max_steps
        && given.epochs.is_none()
        && given.steps.is_none()
        && resumed.is_none()
    {
        let epochs = effective_config(module, opts).epochs;
        if epochs > 1 {
            say(&format!(
                "note: `--max-steps {m}` limits each of the file's {epochs} epochs, and every epoch ends with a full evaluation and a checkpoint; `--steps {m}` stops after {m} steps in all, `--epochs` sets the epochs"
            ));
        }
    }
    // One run at a time writes into `--out`, for the run's whole life
    // (rank 0 alone writes it).
    let created = lead && !opts.out_dir.exists();
    let lock = if lead {
        std::fs::create_dir_all(&opts.out_dir).map_err(io(&opts.out_dir))?;
        super::no_step::check_writable(&opts.out_dir).map_err(TrainError::Config)?;
        Some(crate::fsio::OutputLock::folder(&opts.out_dir)?)
    } else {
        None
    };
    let ck = resumed.as_ref().map(|(from, ck)| (*from, ck));
    let mut s = match setup(module, opts, ck, &say, shard, make) {
        Ok(s) => s,
        Err(e) => {
            drop(lock);
            if created {
                let _ = std::fs::remove_dir(&opts.out_dir);
            }
            return Err(e);
        }
    };
    let _lock = lock;
    // Nanoseconds the steps waited on the gradient sums (this rank).
    let comm_ns = Arc::new(std::sync::atomic::AtomicU64::new(0));
    if shard.size > 1 {
        let local = s.cfg.batch / shard.size as u64;
        let size = shard.size;
        let r = Arc::clone(&ranks);
        let waited = Arc::clone(&comm_ns);
        s.exec.set_gradient_reducer(
            Box::new(move |g: &mut [f32]| {
                let t = Instant::now();
                r.all_reduce_f32(g);
                waited.fetch_add(t.elapsed().as_nanos() as u64, Ordering::Relaxed);
                let inv = 1.0 / size as f32;
                g.iter_mut().for_each(|v| *v *= inv);
                Ok(())
            }),
            shard.offset(local),
        )?;
    }
    let run_id = super::outputs::run_identity(&s.fingerprint, &s.cfg, opts.max_steps);
    let ckpt = opts.out_dir.join("checkpoint.safetensors");
    let metrics_path = opts.out_dir.join("metrics.jsonl");
    let plot_path = opts.out_dir.join("learning-curves.svg");
    let mut p = Progress {
        seed: s.cfg.seed,
        batch_size: s.cfg.batch,
        plateau_lr: s.cfg.sgd.lr,
        plateau_best: None,
        ..Default::default()
    };
    let mut reports: Vec<EpochReport> = Vec::new();
    // The resumed epochs' metrics lines, this run's own, kept verbatim.
    let mut kept_lines: Vec<String> = Vec::new();
    if let Some((from, ck)) = resumed {
        restore_loaded(&mut s.exec, &ck, from)?;
        p = ck.progress;
        let recorded = p.settings.is_some();
        if p.seed != s.cfg.seed {
            return Err(TrainError::Config(format!(
                "the checkpoint was trained with seed {}, not {}; resume with `--seed {}`",
                p.seed, s.cfg.seed, p.seed
            )));
        }
        if p.batch_size != 0 && p.batch_size != s.cfg.batch {
            return Err(TrainError::Config(format!(
                "the checkpoint was trained with batch {}, not {}; resume with `--batch {}`",
                p.batch_size, s.cfg.batch, p.batch_size
            )));
        }
        (reports, kept_lines) = super::outputs::read_own(&metrics_path, &run_id, p.epoch);
        say(&format!(
            "resuming from {} at epoch {}, batch {}: {}; writing to {}",
            from.display(),
            p.epoch + 1,
            p.batch,
            if recorded {
                format!(
                    "{} epochs, {}, data {} (the checkpoint's, where not given)",
                    s.cfg.epochs,
                    opts.max_steps
                        .map_or("every step of each epoch".into(), |m| format!(
                            "at most {m} steps per epoch"
                        )),
                    opts.data
                        .as_ref()
                        .map_or("the default".into(), |d| d.display().to_string())
                )
            } else {
                "the checkpoint does not record its epochs, `--max-steps` or `--data`, so the file's and the command line's are used".into()
            },
            opts.out_dir.display()
        ));
    }
    if shard.size > 1 {
        // The same run on every rank, from rank 0's parameters.
        crate::dist::agree(ranks.as_ref(), &run_description(&s, opts, &p))
            .map_err(TrainError::Config)?;
        broadcast_state(&mut s.exec, ranks.as_ref())?;
    }
    // What a later resume continues with unless told otherwise.
    p.settings = Some(RunSettings {
        epochs: s.cfg.epochs,
        max_steps: opts.max_steps,
        data: opts.data.as_ref().map(|d| {
            std::path::absolute(d)
                .unwrap_or_else(|_| d.clone())
                .to_string_lossy()
                .into_owned()
        }),
    });
    // Nothing in `--out` is replaced before this run has files of its own
    // (an epoch or a checkpoint), all together (`outputs`).
    let paths = super::outputs::Paths {
        metrics: &metrics_path,
        plot: &plot_path,
        checkpoint: &ckpt,
    };
    let mut plateau = Plateau::restore(&p);
    let total_reached = |step: u64| opts.steps.is_some_and(|k| step >= k);
    if p.epoch >= s.cfg.epochs || (total_reached(p.step) && p.batch == 0) {
        // A finished run resumed: nothing is trained or written.
        say(&if p.epoch >= s.cfg.epochs {
            format!(
                "the run had already finished its {} epoch{}; nothing to train",
                s.cfg.epochs,
                if s.cfg.epochs == 1 { "" } else { "s" }
            )
        } else {
            format!(
                "the run had already taken {} steps, not fewer than `--steps`; nothing to train",
                p.step
            )
        });
        return Ok(Outcome::Finished(reports));
    }
    let steps_per_epoch = opts
        .max_steps
        .map_or(s.train.len() as u64, |m| m.min(s.train.len() as u64));
    let batch = s.cfg.batch;
    // Under several ranks, a stop asked of any rank (Ctrl-C) is seen by
    // all at the same step: it travels with the step's figures.
    let mut stop_asked = false;
    while p.epoch < s.cfg.epochs && !(total_reached(p.step) && p.batch == 0) {
        let epoch = p.epoch;
        let lr = scheduled_lr(&s.cfg, epoch, plateau.lr);
        // What the epoch reports: the rate of its last step.
        let last_lr = step_lr(
            &s.cfg,
            epoch,
            steps_per_epoch.saturating_sub(1),
            steps_per_epoch,
            plateau.lr,
        );
        let t0 = Instant::now();
        let timed_from = p.seen;
        let bar = if opts.quiet || !lead {
            indicatif::ProgressBar::hidden()
        } else {
            indicatif::ProgressBar::new(steps_per_epoch)
        };
        bar.set_style(
            indicatif::ProgressStyle::with_template(
                "epoch {prefix} [{bar:30}] {pos}/{len} {msg} eta {eta}",
            )
            .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
        );
        bar.set_prefix(format!("{}/{}", epoch + 1, s.cfg.epochs));
        bar.set_position(p.batch);
        let raw = s.exec.feed() == Feed::Raw;
        let mut iter = (!raw).then(|| s.train.epoch(epoch, p.batch as usize));
        // The batch of the next step, fetched while the step before it runs.
        let mut next = Fetched::get(&mut iter, &s.train, epoch, p.batch as usize);
        while p.batch < steps_per_epoch {
            let interrupted = || {
                opts.interrupt
                    .as_ref()
                    .is_some_and(|f| f.load(Ordering::SeqCst))
            };
            let stop = opts.stop_after.is_some_and(|k| p.step >= k)
                || if shard.size > 1 {
                    stop_asked
                } else {
                    interrupted()
                };
            if stop {
                bar.finish_and_clear();
                plateau.record(&mut p);
                commit(&mut s, &paths, &run_id, &p, &reports, &kept_lines, lead)?;
                match opts.results {
                    Results::Text => result_line(&format!(
                        "stopped at step {}; checkpoint written to {}",
                        p.step,
                        ckpt.display()
                    )),
                    Results::Json => result_line(
                        &serde_json::json!({
                            "stopped_at_step": p.step,
                            "checkpoint": ckpt.display().to_string(),
                        })
                        .to_string(),
                    ),
                    Results::Off => {}
                }
                return Ok(Outcome::Stopped {
                    step: p.step,
                    checkpoint: ckpt,
                });
            }
            // `steps`: the epoch (and the run) ends here.
            if total_reached(p.step) {
                break;
            }
            let Some(cur) = next.take() else { break };
            let lr = match s.cfg.schedule {
                Schedule::Cosine { .. } => {
                    step_lr(&s.cfg, epoch, p.batch, steps_per_epoch, plateau.lr)
                }
                _ => lr,
            };
            s.exec.submit(cur.batch(), lr, p.step)?;
            // While the step runs (on a device), the next batch is
            // assembled and handed over to be copied.
            if p.batch + 1 < steps_per_epoch {
                next = Fetched::get(&mut iter, &s.train, epoch, p.batch as usize + 1);
                if let Some(n) = &next {
                    s.exec.prefetch(n.batch())?;
                }
            }
            let mut st = s.exec.collect()?;
            if shard.size > 1 {
                // The global batch's figures, and whether any rank was asked to stop.
                let mut f = [
                    st.loss * st.n as f64,
                    st.n as f64,
                    st.top1 as f64,
                    st.top5 as f64,
                    f64::from(u8::from(interrupted())),
                ];
                ranks.all_reduce_f64(&mut f);
                st.n = f[1] as usize;
                st.loss = f[0] / f[1].max(1.0);
                st.top1 = f[2] as usize;
                st.top5 = f[3] as usize;
                stop_asked = f[4] > 0.0;
            }
            if let Fetched::Host(b) = cur {
                s.train.recycle(b);
            }
            // A non-finite gradient shows in the parameters it updated.
            if !st.loss.is_finite() || s.exec.state_finite() == Some(false) {
                let layer = s
                    .exec
                    .first_non_finite()?
                    .unwrap_or_else(|| "the loss".into());
                let kept = kept(s.saved);
                return Err(if st.loss.is_finite() {
                    TrainError::NonFiniteState {
                        step: p.step,
                        layer,
                        loss: Some(st.loss),
                        kept,
                    }
                } else {
                    TrainError::NonFinite {
                        value: st.loss,
                        step: p.step,
                        layer,
                        kept,
                    }
                });
            }
            p.loss_sum += st.loss * st.n as f64;
            p.seen += st.n as u64;
            p.top1_seen += st.top1 as u64;
            p.batch += 1;
            p.step += 1;
            let rate = (p.seen - timed_from) as f64 / t0.elapsed().as_secs_f64().max(1e-9);
            bar.set_message(format!(
                "loss {:.4} {:.0} img/s",
                p.loss_sum / p.seen.max(1) as f64,
                rate
            ));
            bar.inc(1);
            if opts
                .checkpoint_every
                .is_some_and(|k| k > 0 && p.step.is_multiple_of(k))
            {
                plateau.record(&mut p);
                commit(&mut s, &paths, &run_id, &p, &reports, &kept_lines, lead)?;
            }
        }
        drop(iter);
        bar.finish_and_clear();
        if let Some(e) = s.train.take_error() {
            return Err(e.into());
        }
        let secs = t0.elapsed().as_secs_f64();
        let wait = s.train.wait_stats();
        if shard.size > 1 {
            // Rank 0's running statistics (and state) on every rank.
            broadcast_state(&mut s.exec, ranks.as_ref())?;
        }
        let ev = evaluate_ranks(&mut s.exec, &s.test, ranks.as_ref())?;
        if !ev.loss.is_finite() {
            let layer = s
                .exec
                .first_non_finite()?
                .unwrap_or_else(|| "the loss".into());
            return Err(TrainError::NonFinite {
                value: ev.loss,
                step: p.step,
                layer,
                kept: kept(s.saved),
            });
        }
        let r = EpochReport {
            epoch: epoch + 1,
            lr: last_lr,
            train_loss: p.loss_sum / p.seen.max(1) as f64,
            test_loss: ev.loss,
            top1_error: ev.top1_error,
            top5_error: ev.top5_error,
            images_per_s: (p.seen - timed_from) as f64 / secs.max(1e-9),
            train_top1_error: (p.seen > 0).then(|| 1.0 - p.top1_seen as f64 / p.seen as f64),
            steps: p.step,
        };
        plateau.observe(&s.cfg, r.top1_error);
        let line = format!(
            "epoch {:>3}  lr {:.2e}  train loss {:.4}  train top-1 error {:.2}%  test loss {:.4}  top-1 error {:.2}%  top-5 error {:.2}%  {:.0} img/s  waited {:.1} ms for data",
            r.epoch,
            r.lr,
            r.train_loss,
            100.0 * r.train_top1_error.unwrap_or(f64::NAN),
            r.test_loss,
            100.0 * r.top1_error,
            100.0 * r.top5_error,
            r.images_per_s,
            (wait.waited + wait.warmup).as_secs_f64() * 1e3
        );
        match opts.results {
            Results::Text => result_line(&line),
            Results::Json => result_line(&serde_json::to_string(&r).unwrap_or_default()),
            Results::Off => {}
        }
        reports.push(r);
        if let Some(w) = s.train.wait_stats().summary() {
            say(&w);
        }
        if shard.size > 1 {
            let ns = comm_ns.swap(0, Ordering::Relaxed);
            say(&format!(
                "{} ranks: rank 0's steps waited {:.1} ms on the gradient sums ({:.1}% of the epoch's training time)",
                shard.size,
                ns as f64 / 1e6,
                100.0 * ns as f64 / 1e9 / secs.max(1e-9)
            ));
        }
        s.train.reset_wait_stats();
        p = Progress {
            epoch: epoch + 1,
            batch: 0,
            step: p.step,
            seed: p.seed,
            batch_size: p.batch_size,
            loss_sum: 0.0,
            seen: 0,
            settings: p.settings.take(),
            ..Progress::default()
        };
        plateau.record(&mut p);
        commit(&mut s, &paths, &run_id, &p, &reports, &kept_lines, lead)?;
    }
    let _ = batch;
    match opts.results {
        Results::Text => result_line(&format!(
            "metrics: {}  curves: {}  weights: {}",
            metrics_path.display(),
            plot_path.display(),
            ckpt.display()
        )),
        Results::Json => result_line(
            &serde_json::json!({
                "epochs": reports.len(),
                "steps": p.step,
                "metrics": metrics_path.display().to_string(),
                "curves": plot_path.display().to_string(),
                "weights": ckpt.display().to_string(),
            })
            .to_string(),
        ),
        Results::Off => {}
    }
    Ok(Outcome::Finished(reports))
}

/// `netc eval`: the test-set error of the weights in a checkpoint, on the
/// CPU executor.
pub fn eval_weights(
    module: &Module,
    weights: &Path,
    opts: &TrainOptions,
) -> Result<EvalReport, TrainError> {
    eval_weights_with(module, weights, opts, |cpu, _, _| Ok::<_, TrainError>(cpu))
}

/// [`eval_weights`] on the executor `make` builds (its evaluation, with the
/// checkpoint's weights).
pub fn eval_weights_with<E: Step, X: Into<TrainError>>(
    module: &Module,
    weights: &Path,
    opts: &TrainOptions,
    make: impl FnOnce(CpuExec, &TrainConfig, &AugmentPlan) -> Result<E, X>,
) -> Result<EvalReport, TrainError> {
    let say = |s: &str| {
        if !opts.quiet {
            eprintln!("{s}");
        }
    };
    if let Some(d) = &opts.data {
        data::sources::check_path(d)?;
    }
    let ck = checkpoint::load(weights)?;
    let mut s = setup(module, opts, Some((weights, &ck)), &say, Shard::WHOLE, make)?;
    restore_loaded(&mut s.exec, &ck, weights)?;
    drop(ck);
    evaluate(&mut s.exec, &s.test)
}

/// [`eval_weights_with`], also returning one row per test image (see
/// `model::predictions`): its index, source file (or index), label,
/// predicted class and logits. A checkpoint that stores class names must
/// name the data's classes.
pub fn eval_predictions_with<E: Step, X: Into<TrainError>>(
    module: &Module,
    weights: &Path,
    opts: &TrainOptions,
    make: impl FnOnce(CpuExec, &TrainConfig, &AugmentPlan) -> Result<E, X>,
) -> Result<(EvalReport, Table), TrainError> {
    let say = |s: &str| {
        if !opts.quiet {
            eprintln!("{s}");
        }
    };
    if let Some(d) = &opts.data {
        data::sources::check_path(d)?;
    }
    let ck = checkpoint::load(weights)?;
    let mut s = setup(module, opts, Some((weights, &ck)), &say, Shard::WHOLE, make)?;
    if let Some(p) = &ck.preparation
        && p.classes != s.prep.classes
    {
        return Err(TrainError::Config(format!(
            "checkpoint `{}` was trained on the classes {:?}, the data has {:?}",
            weights.display(),
            p.classes,
            s.prep.classes
        )));
    }
    restore_loaded(&mut s.exec, &ck, weights)?;
    let mut rows = Vec::new();
    let mut width = 0;
    let crops = if s.test.config().mode == Mode::TenCrop {
        10
    } else {
        1
    };
    let report = evaluate_each(&mut s.exec, &s.test, |index, label, logits| {
        width = logits.len() / crops;
        rows.push(Row {
            index,
            source: s
                .test
                .source()
                .origin(index)
                .unwrap_or_else(|| index.to_string()),
            label,
            predicted: predictions::predicted(logits, width),
            logits: logits.to_vec(),
        });
    })?;
    let classes = (0..width)
        .map(|k| {
            s.prep
                .classes
                .get(k)
                .cloned()
                .unwrap_or_else(|| format!("class {k}"))
        })
        .collect();
    Ok((
        report,
        Table {
            classes,
            crops,
            rows,
        },
    ))
}

/// The final parameters of a run, by name (for tests).
pub fn load_weights(path: &Path) -> Result<Vec<(String, Vec<f32>)>, TrainError> {
    let ck = checkpoint::load(path)?;
    let mut v: Vec<(String, Vec<f32>)> = ck
        .tensors
        .into_iter()
        .map(|(k, (_, vals))| (k, vals))
        .collect();
    v.sort_by(|a, b| a.0.cmp(&b.0));
    Ok(v)
}

/// One step's batch as the loop fetched it: host-augmented from the
/// loader's iterator, or raw for an executor that augments on its device.
enum Fetched {
    Host(crate::data::Batch),
    Raw(crate::data::RawBatch),
}

impl Fetched {
    /// Batch `index` of `epoch`: the iterator's next one, or (without an
    /// iterator) the raw batch at that index; `None` past the end.
    fn get(
        iter: &mut Option<crate::data::EpochIter>,
        train: &Loader,
        epoch: u64,
        index: usize,
    ) -> Option<Fetched> {
        match iter.as_mut() {
            Some(it) => it.next().map(Fetched::Host),
            None => train.raw_batch(epoch, index).map(Fetched::Raw),
        }
    }

    fn batch(&self) -> Batch<'_> {
        match self {
            Fetched::Host(b) => Batch::Host {
                images: &b.images,
                labels: &b.labels,
            },
            Fetched::Raw(b) => Batch::Raw(b),
        }
    }
}

/// What every rank must agree on before the first step: the network
/// (fingerprint), the settings, the data's sizes and where the run starts.
fn run_description<E>(s: &Setup<E>, opts: &TrainOptions, p: &Progress) -> String {
    format!(
        "network {} {}\nseed {}, batch {}, epochs {}\nsettings {:?}\nmax steps {:?}, steps {:?}, stop after {:?}, checkpoint every {:?}\ntraining images {}, test images {}\nstarting at epoch {}, batch {}, step {}",
        s.network,
        s.fingerprint,
        s.cfg.seed,
        s.cfg.batch,
        s.cfg.epochs,
        s.cfg,
        opts.max_steps,
        opts.steps,
        opts.stop_after,
        opts.checkpoint_every,
        s.train.source().len(),
        s.test.source().len(),
        p.epoch,
        p.batch,
        p.step,
    )
}

/// Every parameter and velocity of rank 0 on every rank.
fn broadcast_state<E: Step>(exec: &mut E, ranks: &dyn Collective) -> Result<(), TrainError> {
    let tensors: Vec<(String, Vec<f32>)> = exec
        .state()?
        .into_iter()
        .map(|(name, _, v)| (name, v.to_vec()))
        .collect();
    for (name, values) in tensors {
        let mut bytes = bytemuck::cast_slice::<f32, u8>(&values).to_vec();
        ranks.broadcast_bytes(&mut bytes);
        if bytes.len() != values.len() * 4 {
            return Err(TrainError::Config(format!(
                "rank 0's `{name}` has {} values, this rank's {}",
                bytes.len() / 4,
                values.len()
            )));
        }
        let theirs: Vec<f32> = bytes
            .chunks_exact(4)
            .map(|c| f32::from_ne_bytes([c[0], c[1], c[2], c[3]]))
            .collect();
        exec.set_state(&name, &theirs)?;
    }
    Ok(())
}
