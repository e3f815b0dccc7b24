//! The `netc` command line's argument definitions (clap), one struct per
//! command.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum};

#[derive(Parser)]
#[command(
    name = "netc",
    version,
    about = "A compiler and runtime for convolutional networks described in .net files"
)]
pub struct Cli {
    #[command(subcommand)]
    pub cmd: Cmd,
}

#[derive(Subcommand)]
pub enum Cmd {
    /// Check a network and print its architecture table (or another form).
    Compile(CompileArgs),

    /// Report errors and warnings only.
    Check(CheckArgs),

    /// Train a network on Fashion-MNIST (the embedded subset when nothing is installed).
    Train(TrainArgs),

    /// Prepare an image tree once into one memory-mapped dataset file for `--data`
    /// (or, with `--info`, describe a prepared dataset).
    Prepare(PrepareArgs),

    /// Evaluate the weights of a checkpoint on the test set (top-1 and top-5 error).
    Eval(EvalArgs),

    /// Classify image files with a trained checkpoint: the top classes by name.
    Predict(PredictArgs),

    /// The forward pass on tensors in a .npy file (N×C×H×W float32, no image
    /// preparation): the logits, as a .npy file.
    Run(RunArgs),

    /// Draw a convolution layer's learned kernels from a checkpoint as a PNG
    /// (the paper's figure 3: one block per tower).
    Kernels(KernelsArgs),

    /// Time training steps on synthetic data (images/s), for comparison with a peer.
    Bench(BenchArgs),

    /// Write ablation variants of a network (each one change, or as a spec lists them).
    Ablate(AblateArgs),

    /// Train every variant of a sweep spec and write a comparison table and plot.
    Sweep(SweepArgs),

    /// On a machine with a GPU: one training step on the GPU against the CPU
    /// executor, then GPU training throughput on synthetic data.
    CudaCheck(CudaCheckArgs),

    /// Rewrite a file in canonical form.
    Fmt(FmtArgs),

    /// Write a network's evaluation graph and weights as an ONNX model.
    Export(ExportArgs),

    /// Read an ONNX model as a .net file (and its weights as a checkpoint).
    Import(ImportArgs),
}

/// `netc compile`'s arguments.
#[derive(Args)]
pub struct CompileArgs {
    /// The .net file.
    pub file: PathBuf,
    /// What to print: the architecture table, the IR text, YAML, Graphviz dot, or the
    /// training step's memory plan.
    #[arg(long, value_enum, default_value_t = Emit::Table)]
    pub emit: Emit,
    /// Write the output here instead of standard output (with `--target
    /// cuda`: the directory that receives netc.cu, launch.txt, netc.ptx).
    #[arg(short, long)]
    pub output: Option<PathBuf>,
    /// `cpu`: check and print; `cuda`: generate the training step's CUDA code.
    #[arg(long, value_enum, default_value_t = Target::Cpu)]
    pub target: Target,
    /// Batch size for `--emit memplan` and for code generated with
    /// `--target cuda` (default: the file's `train.batch`).
    #[arg(long)]
    pub batch: Option<u64>,
    /// Where `--emit memplan` writes its picture (default: `memplan.svg` beside the output).
    #[arg(long)]
    pub picture: Option<PathBuf>,
    /// Graph passes to run first, in order: `autodiff`, `fuse` or one fusion rewrite
    /// (`conv+relu`, `dense+relu+dropout`, `dense+relu`, `lrn+maxpool`, `grad_chain`,
    /// `conv+act`, `dense+act`).
    /// Default: none (`autodiff,fuse`, the step `netc train` runs, for `--emit memplan`).
    #[arg(long, value_name = "PASS,...")]
    pub passes: Option<String>,
    /// Print the IR text after this pass (one of those that run) to standard error.
    #[arg(long, value_name = "PASS")]
    pub dump_after: Option<String>,
    /// Print each pass's time, node counts and what fired to standard error.
    #[arg(short, long)]
    pub verbose: bool,
    /// With `--target cuda`: generate the unfused training step (the
    /// default is the step after the fusion pass).
    #[arg(long)]
    pub no_fuse: bool,
    /// With `--target cuda`: place the step on these GPUs, one or one per
    /// tower (`0,1`: tower 0 and the inputs on GPU 0, tower 1 on GPU 1).
    #[arg(long, value_name = "GPU,...")]
    pub devices: Option<String>,
}

/// `netc check`'s arguments.
#[derive(Args)]
pub struct CheckArgs {
    /// The .net file.
    pub file: PathBuf,
}

/// `netc train`'s arguments.
#[derive(Args)]
pub struct TrainArgs {
    /// The .net file.
    pub file: PathBuf,
    /// A prepared dataset (`netc prepare`), a folder of images (one
    /// sub-folder per class, or train/ and val/), or a directory holding
    /// the Fashion-MNIST IDX files.
    #[arg(long)]
    pub data: Option<PathBuf>,
    /// Override `train.epochs` (with `--resume`: the checkpoint's run's).
    #[arg(long)]
    pub epochs: Option<u64>,
    /// Override `train.batch`.
    #[arg(long)]
    pub batch: Option<u64>,
    /// Override `train.seed`.
    #[arg(long)]
    pub seed: Option<u64>,
    /// Steps per epoch at most, in every epoch: each epoch still ends with
    /// a full evaluation and a checkpoint (for a total, `--steps`).
    #[arg(long, value_name = "STEPS_PER_EPOCH")]
    pub max_steps: Option<u64>,
    /// Steps in all: the run stops after this many, the epoch in progress
    /// ending there with its evaluation and checkpoint (a `--resume`
    /// without `--steps` goes on to the run's epochs).
    #[arg(long)]
    pub steps: Option<u64>,
    /// Where metrics, the learning-curve plot and the checkpoint are
    /// written (default: `out`, or with `--resume` the checkpoint's folder).
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// Continue exactly where this checkpoint stopped, in its folder, with
    /// the seed, batch, epochs, `--max-steps` and `--data` it records
    /// (each unless given).
    #[arg(long)]
    pub resume: Option<PathBuf>,
    /// Also checkpoint every this many steps (always at the end of an epoch).
    #[arg(long)]
    pub checkpoint_every: Option<u64>,
    /// Checkpoint and stop after this many steps in total, mid-epoch, to
    /// be continued with `--resume` (no evaluation).
    #[arg(long)]
    pub stop_after: Option<u64>,
    /// Print only the results on standard output (each epoch's line, then
    /// where the files are): no progress bar or notes on standard error.
    #[arg(short, long)]
    pub quiet: bool,
    /// Print the results as JSON, one object per line: each epoch's
    /// report (as in `metrics.jsonl`), then the outcome.
    #[arg(long)]
    pub json: bool,
    /// Where the training step runs: `cpu`, or `cuda` (GPU 0; data,
    /// augmentation, evaluation and checkpoints stay on the host).
    #[arg(long, value_enum, default_value_t = Backend::Cpu)]
    pub backend: Backend,
    /// With `--backend cuda`: crop, mirror, light and normalise the
    /// training batches on the GPU (same crops; raw bytes uploaded).
    #[arg(long)]
    pub device_augment: bool,
    /// Train the unfused step (same results, one op per layer).
    #[arg(long)]
    pub no_fuse: bool,
    /// Give every buffer its own allocation instead of executing from
    /// the memory plan (same results, more memory).
    #[arg(long)]
    pub no_plan: bool,
    /// With `--backend cuda`: issue every launch of every step instead
    /// of replaying the step captured once as a CUDA graph.
    #[arg(long)]
    pub no_graph: bool,
    /// With `--backend cuda`: the GPUs, one or one per tower (`0,1`:
    /// each tower on its own GPU, cross-tower values copied between
    /// them; `0,0`: both towers on GPU 0, on two streams).
    #[arg(long, value_name = "GPU,...")]
    pub devices: Option<String>,
}

/// `netc prepare`'s arguments.
#[derive(Args)]
pub struct PrepareArgs {
    /// `SRC/train/<class>/*` and `SRC/val/<class>/*`, or one folder of classes.
    #[arg(required_unless_present = "info")]
    pub src: Option<PathBuf>,
    /// The dataset file to write.
    #[arg(short, long, required_unless_present = "info")]
    pub output: Option<PathBuf>,
    /// Print what a prepared dataset holds (images, classes, bytes, settings).
    #[arg(long, value_name = "DATASET", conflicts_with_all = ["src", "output"])]
    pub info: Option<PathBuf>,
    /// Side of the prepared images: shorter side rescaled to it, central square kept.
    #[arg(long, default_value_t = 256)]
    pub size: u32,
    /// How records are stored: `jpeg` (smaller, decoded when read) or `raw` pixels.
    #[arg(long, value_enum, default_value_t = RecordFormat::Jpeg)]
    pub format: RecordFormat,
    /// JPEG quality (1-100).
    #[arg(long, default_value_t = 90)]
    pub quality: u8,
    /// For one folder of classes: the fraction of each class kept for validation.
    #[arg(long)]
    pub val_fraction: Option<f64>,
    /// Leave out unreadable images (listed in DATASET.skipped.txt) instead of stopping.
    #[arg(long)]
    pub skip_bad: bool,
    /// Commit (fsync) the partial output at least every this many images.
    #[arg(long, default_value_t = 4096, hide = true)]
    pub commit_every: usize,
}

/// `netc eval`'s arguments.
#[derive(Args)]
pub struct EvalArgs {
    /// The .net file.
    pub file: PathBuf,
    /// A checkpoint written by `netc train`.
    #[arg(long)]
    pub weights: PathBuf,
    /// A prepared dataset (`netc prepare`), a folder of images (one
    /// sub-folder per class, or train/ and val/), or a directory holding
    /// the Fashion-MNIST IDX files.
    #[arg(long)]
    pub data: Option<PathBuf>,
    /// Where the forward passes run: `cpu`, or `cuda` (GPU 0).
    #[arg(long, value_enum, default_value_t = Backend::Cpu)]
    pub backend: Backend,
    /// Also write one row per test image (index, source, label, predicted
    /// class, every logit) here: CSV, or NumPy when the name ends in `.npy`.
    #[arg(long, value_name = "OUT")]
    pub predictions: Option<PathBuf>,
    /// Images per forward pass (default: the network's training batch,
    /// halved while its step would need more than 1 GiB); any number of
    /// test images is evaluated, the last pass taking the rest. Smaller
    /// batches need less memory; the figures are the same.
    #[arg(long, value_parser = clap::value_parser!(u64).range(1..=65536))]
    pub batch: Option<u64>,
}

/// `netc predict`'s arguments.
#[derive(Args)]
pub struct PredictArgs {
    /// The .net file.
    pub file: PathBuf,
    /// A checkpoint written by `netc train`.
    #[arg(long)]
    pub weights: PathBuf,
    /// JPEG or PNG files, any size, colour or grey.
    #[arg(required = true, value_name = "IMAGE")]
    pub images: Vec<PathBuf>,
    /// Score the paper's ten crops, their softmax outputs averaged (the
    /// default is what the network's `test:` setting says).
    #[arg(long, conflicts_with = "center")]
    pub ten_crop: bool,
    /// Score the centre crop only.
    #[arg(long)]
    pub center: bool,
    /// How many classes to list per image.
    #[arg(long, default_value_t = 5)]
    pub top: usize,
    /// Print one JSON object per image, one per line.
    #[arg(long)]
    pub json: bool,
    /// For a checkpoint written before netc stored the input preparation:
    /// the data it was trained on, to compute it from.
    #[arg(long)]
    pub data: Option<PathBuf>,
}

/// `netc run`'s arguments.
#[derive(Args)]
pub struct RunArgs {
    /// The .net file.
    pub file: PathBuf,
    /// A checkpoint of the network (`netc train`, `netc import --weights-out`).
    #[arg(long)]
    pub weights: PathBuf,
    /// The input tensors: a NumPy .npy file of float32 (or float64), shape
    /// N×C×H×W of the network's input (or one C×H×W tensor), C order.
    #[arg(long)]
    pub input: PathBuf,
    /// The .npy file to write: the logits, N×classes float32 (classes for
    /// one C×H×W input).
    #[arg(short, long)]
    pub output: PathBuf,
    /// Tensors per forward pass (default: the network's training batch).
    #[arg(long, value_parser = clap::value_parser!(u64).range(1..=65536))]
    pub batch: Option<u64>,
}

/// `netc kernels`'s arguments.
#[derive(Args)]
pub struct KernelsArgs {
    /// The .net file.
    pub file: PathBuf,
    /// A checkpoint written by `netc train` for this network.
    #[arg(long)]
    pub weights: PathBuf,
    /// The PNG file to write.
    #[arg(short, long, default_value = "kernels.png")]
    pub output: PathBuf,
    /// The convolution to draw, by its layer name (default: the first).
    #[arg(long)]
    pub layer: Option<String>,
    /// Pixels per weight, across and down (default: tiles of about 40 pixels).
    #[arg(long, value_parser = clap::value_parser!(u16).range(1..))]
    pub scale: Option<u16>,
}

/// `netc bench`'s arguments.
#[derive(Args)]
pub struct BenchArgs {
    /// The .net file.
    pub file: PathBuf,
    /// Batch size (default: the file's `train.batch`).
    #[arg(long)]
    pub batch: Option<u64>,
    /// Timed steps (after two warm-up steps).
    #[arg(long, default_value_t = 20)]
    pub steps: u64,
    /// Run the unfused training step (to measure what fusion gains).
    #[arg(long)]
    pub no_fuse: bool,
    /// Give every buffer its own allocation instead of executing from
    /// the memory plan (to measure what the plan gains).
    #[arg(long)]
    pub no_plan: bool,
    /// Also print the time spent in each kind of op over the timed steps.
    #[arg(long)]
    pub profile: bool,
}

/// `netc ablate`'s arguments.
#[derive(Args)]
pub struct AblateArgs {
    /// The parent .net file.
    pub file: PathBuf,
    /// Every LRN layer removed.
    #[arg(long)]
    pub no_lrn: bool,
    /// Every overlapping max pool made 2×2, stride 2.
    #[arg(long)]
    pub non_overlapping_pool: bool,
    /// The towers merged into one stack with the full channel counts.
    #[arg(long)]
    pub one_tower: bool,
    /// Every dropout layer removed.
    #[arg(long)]
    pub no_dropout: bool,
    /// Random crops, mirroring and PCA lighting off.
    #[arg(long)]
    pub no_augmentation: bool,
    /// Every ReLU replaced by this layer, e.g. `tanh` (the paper's figure 1).
    #[arg(long, value_name = "LAYER")]
    pub activation: Option<String>,
    /// Every LRN layer replaced by this layer, e.g. `batchnorm`.
    #[arg(long, value_name = "LAYER")]
    pub lrn: Option<String>,
    /// One hyperparameter, e.g. `conv1.filters=64` or `train.sgd.lr=0.02`
    /// (repeatable; all `--set`s make one variant).
    #[arg(long = "set", value_name = "PATH=VALUE")]
    pub sets: Vec<String>,
    /// A YAML spec of variants (combinations of changes) instead of flags.
    #[arg(long)]
    pub spec: Option<PathBuf>,
    /// Where the variants are written.
    #[arg(short, long, default_value = "variants")]
    pub output: PathBuf,
}

/// `netc sweep`'s arguments.
#[derive(Args)]
pub struct SweepArgs {
    /// The YAML spec.
    pub spec: PathBuf,
    /// The data for every variant (a prepared dataset, an image folder or
    /// the Fashion-MNIST files), in place of the spec's `train.data`.
    #[arg(long)]
    pub data: Option<PathBuf>,
}

/// `netc cuda-check`'s arguments.
#[derive(Args)]
pub struct CudaCheckArgs {
    /// The .net file.
    pub file: PathBuf,
    #[arg(long, default_value_t = 32)]
    pub batch: u64,
    /// Timed steps (0: parity only).
    #[arg(long, default_value_t = 0)]
    pub steps: u64,
    /// The NVRTC target architecture (`sm_80`, `sm_90`, `sm_100`; default:
    /// the backend's, PTX the driver compiles on to newer GPUs).
    #[arg(long)]
    pub arch: Option<String>,
    /// Check the unfused training step (the default is the fused one).
    #[arg(long)]
    pub no_fuse: bool,
    /// Give every buffer its own memory instead of the memory plan's
    /// layout, so every value of the step is compared.
    #[arg(long)]
    pub separate: bool,
    /// Issue every launch of every step instead of replaying the step
    /// captured as a CUDA graph.
    #[arg(long)]
    pub no_graph: bool,
    /// Throughput: stage each step's batch and labels through
    /// page-locked memory, as training does (by default the batch
    /// stays on the device, as in the PyTorch peer).
    #[arg(long)]
    pub stage: bool,
    /// With `--steps`: also time every launch and GEMM of a step and
    /// print where the time goes, by kernel and by layer.
    #[arg(long)]
    pub profile: bool,
    /// MiB each convolution's im2col and GEMM-output scratch may take
    /// (the batch runs in chunks of images that fit).
    #[arg(long, default_value_t = 64)]
    pub workspace_mib: u64,
    /// Place the step on these GPUs, one or one per tower.
    #[arg(long, value_name = "GPU,...")]
    pub devices: Option<String>,
}

/// `netc fmt`'s arguments.
#[derive(Args)]
pub struct FmtArgs {
    /// The .net files.
    #[arg(required = true)]
    pub files: Vec<PathBuf>,
    /// Do not write; exit 1 if a file is not in canonical form.
    #[arg(long)]
    pub check: bool,
    /// Print the result instead of rewriting the file.
    #[arg(long, conflicts_with = "check")]
    pub stdout: bool,
}

#[derive(Clone, Copy, ValueEnum)]
pub enum RecordFormat {
    Jpeg,
    Raw,
}

#[derive(Clone, Copy, ValueEnum)]
pub enum Backend {
    Cpu,
    Cuda,
}

#[derive(Clone, Copy, ValueEnum)]
pub enum Target {
    Cpu,
    Cuda,
}

#[derive(Clone, Copy, ValueEnum)]
pub enum Emit {
    Table,
    Ir,
    Yaml,
    Dot,
    /// The training step's memory plan (and an SVG picture of it).
    Memplan,
}

/// `netc export`'s arguments.
#[derive(Args)]
pub struct ExportArgs {
    /// The .net file.
    pub file: PathBuf,
    /// A checkpoint of this network written by `netc train` (default: the
    /// initial weights its `init` rules and seed give).
    #[arg(long)]
    pub weights: Option<PathBuf>,
    /// The ONNX model to write.
    #[arg(short, long)]
    pub output: PathBuf,
}

/// `netc import`'s arguments.
#[derive(Args)]
pub struct ImportArgs {
    /// The ONNX model.
    pub model: PathBuf,
    /// The .net file to write.
    #[arg(short, long)]
    pub output: PathBuf,
    /// Also write the model's weights here, as a checkpoint of the new
    /// network (`netc eval --weights`, `netc export --weights`).
    #[arg(long)]
    pub weights_out: Option<PathBuf>,
}
