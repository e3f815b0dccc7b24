//! The training loop behind `netc train`: data from the `.net` file's
//! `data` section, the autodiff'd graph on the CPU executor, the paper's
//! SGD with the file's schedule, per-epoch evaluation (top-1 and top-5
//! error) and metrics as JSON lines. Deterministic for a given seed.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

use crate::backend::cpu::exec::{CpuExec, ExecError, StepStats};
use crate::ir::train::{Schedule, TrainConfig};
use crate::lower::Module;
use crate::passes::autodiff::{self, AutodiffError};
use crate::train::data::augment::{AugmentConfig, Augmenter, MeanMode, Mode};
use crate::train::data::loader::{Loader, LoaderConfig};
use crate::train::data::pca::Stats;
use crate::train::data::{self, DataError, Dataset};

#[derive(Debug, thiserror::Error)]
pub enum TrainError {
    #[error(transparent)]
    Data(#[from] DataError),
    #[error("{0}")]
    Config(String),
    #[error(transparent)]
    Autodiff(#[from] AutodiffError),
    #[error(transparent)]
    Exec(#[from] ExecError),
    #[error(transparent)]
    Fuse(#[from] crate::passes::fuse::FuseError),
    #[error("the loss became {value} at step {step}; the first non-finite value is in `{layer}`")]
    NonFinite {
        value: f64,
        step: u64,
        layer: String,
    },
    #[error("cannot write `{path}`: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
}

#[derive(Clone, Debug, Default)]
pub struct TrainOptions {
    pub data: Option<PathBuf>,
    pub epochs: Option<u64>,
    pub batch: Option<u64>,
    pub seed: Option<u64>,
    /// Stop each epoch after this many steps (quick runs and tests).
    pub max_steps: Option<u64>,
    pub out_dir: PathBuf,
    pub quiet: bool,
    /// Skip the fusion pass (fusion is on by default).
    pub no_fuse: bool,
}

#[derive(Clone, Debug, PartialEq)]
pub struct EpochReport {
    pub epoch: u64,
    pub lr: f64,
    pub train_loss: f64,
    pub test_loss: f64,
    pub top1_error: f64,
    pub top5_error: f64,
    pub images_per_s: f64,
}

/// The learning rate of `epoch` (0-based) under a step or fixed schedule;
/// plateau decisions are taken by [`Plateau`].
pub fn scheduled_lr(cfg: &TrainConfig, epoch: u64, plateau_lr: f64) -> f64 {
    match cfg.schedule {
        Schedule::Fixed => cfg.sgd.lr,
        Schedule::Step { every, factor } => cfg.sgd.lr * factor.powi((epoch / every.max(1)) as i32),
        Schedule::Plateau { .. } => plateau_lr,
    }
}

/// The paper's rule: divide when the validation error stops improving.
#[derive(Clone, Debug)]
pub struct Plateau {
    pub lr: f64,
    best: f64,
    since: u64,
    drops: u64,
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

fn augmenter(
    cfg: &TrainConfig,
    ds: &Dataset,
    stats: &Stats,
    seed: u64,
) -> Result<Augmenter, TrainError> {
    let shape = ds.shape();
    let d = &cfg.data;
    let aug = AugmentConfig {
        crop: d.crop.map_or(shape.h, |c| c as usize),
        pad: d.pad as usize,
        mirror: d.mirror,
        lighting_sigma: d.lighting as f32,
        mean: if d.mean {
            MeanMode::Pixel
        } else {
            MeanMode::None
        },
        scale: d.scale as f32,
    };
    Augmenter::new(aug, stats, seed).map_err(|e| TrainError::Config(e.to_string()))
}

/// Trains `module` and returns one report per epoch.
pub fn train(module: &Module, opts: &TrainOptions) -> Result<Vec<EpochReport>, TrainError> {
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
    let (ds, desc) = data::resolve_fmnist(opts.data.as_deref())?;
    let say = |s: &str| {
        if !opts.quiet {
            eprintln!("{s}");
        }
    };
    say(&format!("data: {desc}"));
    let stats = Stats::compute(&ds.train);
    let aug = augmenter(&cfg, &ds, &stats, cfg.seed)?;
    let out = aug.out_shape();
    let mut graph = module.graph.clone();
    autodiff::autodiff(&mut graph, &cfg.sgd)?;
    if !opts.no_fuse {
        crate::passes::fuse::fuse(&mut graph)?;
    }
    let mut exec = CpuExec::new(graph, cfg.seed)?;
    if exec.image_len() != out.len() {
        return Err(TrainError::Config(format!(
            "the data gives {}×{}×{} images but the network's input takes {} values",
            out.c,
            out.h,
            out.w,
            exec.image_len()
        )));
    }
    let train = Arc::new(ds.train.clone());
    let test = Arc::new(ds.test.clone());
    let mut lcfg = LoaderConfig::train(cfg.batch as usize, cfg.seed);
    lcfg.drop_last = true;
    if !cfg.data.random_crop && !cfg.data.mirror {
        lcfg.mode = Mode::Center;
    }
    let loader =
        Loader::new(train, aug.clone(), lcfg).map_err(|e| TrainError::Config(e.to_string()))?;
    let test_loader = Loader::new(test, aug, LoaderConfig::eval(cfg.batch as usize))
        .map_err(|e| TrainError::Config(e.to_string()))?;
    std::fs::create_dir_all(&opts.out_dir).map_err(|e| TrainError::Io {
        path: opts.out_dir.clone(),
        source: e,
    })?;
    let metrics_path = opts.out_dir.join("metrics.jsonl");
    let mut metrics = std::fs::File::create(&metrics_path).map_err(|e| TrainError::Io {
        path: metrics_path.clone(),
        source: e,
    })?;
    let mut plateau = Plateau::new(cfg.sgd.lr);
    let mut reports = Vec::new();
    let mut step = 0u64;
    for epoch in 0..cfg.epochs {
        let lr = scheduled_lr(&cfg, epoch, plateau.lr);
        let t0 = Instant::now();
        let (mut loss_sum, mut seen, mut batches) = (0.0, 0usize, 0u64);
        let steps = loader.len() as u64;
        let bar = if opts.quiet {
            indicatif::ProgressBar::hidden()
        } else {
            indicatif::ProgressBar::new(steps)
        };
        bar.set_style(
            indicatif::ProgressStyle::with_template(
                "epoch {prefix} [{bar:30}] {pos}/{len} {msg} eta {eta}",
            )
            .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
        );
        bar.set_prefix(format!("{}/{}", epoch + 1, cfg.epochs));
        for batch in loader.epoch(epoch, 0) {
            if opts.max_steps.is_some_and(|m| batches >= m) {
                break;
            }
            let s: StepStats = exec.train_step(&batch.images, &batch.labels, lr, step)?;
            if !s.loss.is_finite() {
                let layer = exec.first_non_finite().unwrap_or("?").to_string();
                return Err(TrainError::NonFinite {
                    value: s.loss,
                    step,
                    layer,
                });
            }
            loss_sum += s.loss * s.n as f64;
            seen += s.n;
            batches += 1;
            step += 1;
            let rate = seen as f64 / t0.elapsed().as_secs_f64().max(1e-9);
            bar.set_message(format!(
                "loss {:.4} {:.0} img/s",
                loss_sum / seen as f64,
                rate
            ));
            bar.inc(1);
        }
        bar.finish_and_clear();
        let secs = t0.elapsed().as_secs_f64();
        let (mut tl, mut t1, mut t5, mut tn) = (0.0, 0usize, 0usize, 0usize);
        for batch in test_loader.epoch(0, 0) {
            let s = exec.eval_batch(&batch.images, &batch.labels)?;
            tl += s.loss * s.n as f64;
            t1 += s.top1;
            t5 += s.top5;
            tn += s.n;
        }
        let r = EpochReport {
            epoch: epoch + 1,
            lr,
            train_loss: loss_sum / seen.max(1) as f64,
            test_loss: tl / tn.max(1) as f64,
            top1_error: 1.0 - t1 as f64 / tn.max(1) as f64,
            top5_error: 1.0 - t5 as f64 / tn.max(1) as f64,
            images_per_s: seen as f64 / secs.max(1e-9),
        };
        plateau.observe(&cfg, r.top1_error);
        say(&format!(
            "epoch {:>3}  lr {:.2e}  train loss {:.4}  test loss {:.4}  top-1 error {:.2}%  top-5 error {:.2}%  {:.0} img/s",
            r.epoch,
            r.lr,
            r.train_loss,
            r.test_loss,
            100.0 * r.top1_error,
            100.0 * r.top5_error,
            r.images_per_s
        ));
        let line = format!(
            "{{\"epoch\":{},\"lr\":{},\"train_loss\":{},\"test_loss\":{},\"top1_error\":{},\"top5_error\":{},\"images_per_s\":{}}}\n",
            r.epoch, r.lr, r.train_loss, r.test_loss, r.top1_error, r.top5_error, r.images_per_s
        );
        metrics
            .write_all(line.as_bytes())
            .map_err(|e| TrainError::Io {
                path: metrics_path.clone(),
                source: e,
            })?;
        if let Some(w) = loader.wait_stats().summary() {
            say(&w);
        }
        reports.push(r);
    }
    let _ = Path::new("");
    Ok(reports)
}
