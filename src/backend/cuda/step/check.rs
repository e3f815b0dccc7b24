//! GPU checks for a machine with a device: one training step on the GPU
//! against the CPU executor (same seed, parameters, data and dropout
//! masks; every node's buffer that still holds its value after the step
//! compared: with the planned layout, the updated parameters and
//! velocities, the loss, the logits and what the plan did not reuse; with
//! [`Layout::Separate`](crate::backend::cuda::generate::buffers::Layout::Separate), every value), and training-step throughput. The
//! step is the graph given, fused by `passes::fuse` or not; the CPU
//! executor runs that same graph. Used by `netc cuda-check` (fused unless
//! `--no-fuse`, planned unless `--separate`, placed on several GPUs with
//! `--devices`) and `scripts/gpu-check.sh`; parity and throughput take any
//! [`Device`].

use std::time::Instant;

use crate::backend::cpu::exec::CpuExec;
use crate::backend::cuda::generate::buffers::node_key;
use crate::backend::cuda::place::split;
use crate::backend::cuda::program::{BufKind, DType};
use crate::backend::cuda::runtime::RuntimeError;
use crate::backend::cuda::runtime::device::Device;
use crate::backend::cuda::runtime::exec::CudaExec;
use crate::backend::cuda::runtime::multi::MultiExec;
use crate::backend::params::ParamStore;
use crate::ir::Graph;
use crate::rng;

/// Builds the program for `g` at `batch` as `opts` says, compiles it with
/// NVRTC for the device and loads it.
pub fn load(
    g: &Graph,
    batch: usize,
    arch: &'static str,
    opts: crate::backend::cuda::generate::codegen::Options,
) -> Result<CudaExec, String> {
    let prog = crate::backend::cuda::generate::codegen::generate_opts(g, batch, opts)
        .map_err(|e| e.to_string())?;
    let ptx =
        crate::backend::cuda::nvrtc::compile(&prog.source, arch).map_err(|e| e.to_string())?;
    CudaExec::new(prog, ptx).map_err(|e| e.to_string())
}

/// [`load`], placed on the GPUs `gpus` (`split::Placement::towers`: one
/// GPU, or tower `i` on `gpus[i]`).
pub fn load_placed(
    g: &Graph,
    batch: usize,
    arch: &'static str,
    opts: crate::backend::cuda::generate::codegen::Options,
    gpus: &[usize],
) -> Result<MultiExec, String> {
    let prog = crate::backend::cuda::generate::codegen::generate_opts(g, batch, opts)
        .map_err(|e| e.to_string())?;
    let at = split::Placement::towers(&prog, gpus.len()).map_err(|e| e.to_string())?;
    let prog = split::place(&prog, &at).map_err(|e| e.to_string())?;
    let ptx =
        crate::backend::cuda::nvrtc::compile(&prog.source, arch).map_err(|e| e.to_string())?;
    MultiExec::new(prog, ptx, gpus).map_err(|e| e.to_string())
}

/// Synthetic data: images in [-1, 1), labels below `classes`.
pub fn synthetic(batch: usize, per: usize, classes: u64, seed: u64) -> (Vec<f32>, Vec<u32>) {
    let images = (0..batch * per)
        .map(|i| (rng::uniform(seed, 1, i as u64) * 2.0 - 1.0) as f32)
        .collect();
    let labels = (0..batch as u64)
        .map(|i| (rng::bits(seed, 2, i) % classes.max(1)) as u32)
        .collect();
    (images, labels)
}

/// One buffer's comparison.
pub struct Parity {
    pub name: String,
    /// Largest difference relative to the largest CPU magnitude.
    pub rel_err: f64,
    /// Elements whose difference exceeds 1e-3 of that magnitude, of `total`.
    pub off: usize,
    pub total: usize,
}

/// Runs one step on both backends and compares every node's buffer that
/// holds its value after the step ([`super::CudaProgram::kept`]).
/// Returns (GPU loss, CPU loss, per-buffer errors, worst first).
pub fn step_parity(
    g: &Graph,
    exec: &mut impl Device,
    seed: u64,
) -> Result<(f64, f64, Vec<Parity>), String> {
    let err = |e: RuntimeError| e.to_string();
    let mut cpu = CpuExec::new(g.clone(), seed).map_err(|e| e.to_string())?;
    // Parity is checked away from ties: with the paper's N(0, 0.01) weights
    // and constant biases, the maps reaching a max pool are nearly flat, so
    // a last-bit difference in a convolution can move a window's argmax and
    // send that gradient elsewhere, a correct result either way. He-scaled
    // weights and N(0, 0.1) biases make every window's maximum distinct.
    for n in g.node_ids() {
        let node = g.node(n);
        let init = match &node.op {
            crate::ir::Op::Param {
                role: crate::ir::ParamRole::Weight,
                ..
            } => crate::ir::Init::He,
            crate::ir::Op::Param {
                role: crate::ir::ParamRole::Bias,
                ..
            } => crate::ir::Init::Normal {
                mean: 0.0,
                std: 0.1,
            },
            _ => continue,
        };
        let dims = node.ty.dims().to_vec();
        crate::backend::cpu::exec::init_param(
            &init,
            &node.name,
            node.device,
            &dims,
            seed,
            cpu.value_mut(n),
        );
    }
    let prog = exec.program().clone();
    for n in g.node_ids() {
        if g.node(n).op.is_param()
            && let Some(b) = prog.buffer(&node_key(g, n))
        {
            exec.upload(b, cpu.value(n)).map_err(err)?;
        }
    }
    let batch = prog.batch;
    let per = prog.buffers[prog.image].elems / batch;
    let classes = (prog.buffers[prog.logits].elems / batch) as u64;
    let (images, labels) = synthetic(batch, per, classes, seed);
    exec.upload(prog.image, &images).map_err(err)?;
    let bits: Vec<f32> = labels.iter().map(|l| f32::from_bits(*l)).collect();
    exec.upload(prog.labels, &bits).map_err(err)?;
    let (step, lr) = (1u64, 0.01);
    let stats = cpu
        .train_step(&images, &labels, lr, step)
        .map_err(|e| e.to_string())?;
    exec.step(seed ^ rng::mix64(step), lr).map_err(err)?;
    exec.synchronize().map_err(err)?;
    let loss = exec.download(prog.loss).map_err(err)?[0] as f64;
    let mut out = Vec::new();
    for n in g.node_ids() {
        let key = node_key(g, n);
        let Some(b) = prog.buffer(&key) else { continue };
        let d = &prog.buffers[b];
        if d.dtype != DType::F32 || d.kind == BufKind::Image || !prog.kept(b) {
            continue;
        }
        let got = exec.download(b).map_err(err)?;
        let want = cpu.value(n);
        let scale = want.iter().fold(0f64, |m, v| m.max(v.abs() as f64));
        let e = got.iter().zip(want).fold(0f64, |m, (a, w)| {
            m.max(if a.is_finite() {
                (*a as f64 - *w as f64).abs()
            } else {
                f64::INFINITY
            })
        });
        let tol = 1e-3 * scale.max(f64::MIN_POSITIVE);
        let off = got
            .iter()
            .zip(want)
            .filter(|(a, w)| !a.is_finite() || (**a as f64 - **w as f64).abs() > tol)
            .count();
        out.push(Parity {
            name: key,
            rel_err: if scale == 0.0 { e } else { e / scale },
            off,
            total: want.len(),
        });
    }
    out.sort_by(|a, b| b.rel_err.total_cmp(&a.rel_err));
    Ok((loss, stats.loss, out))
}

/// Uploads `g`'s parameters as the `.net` file initialises them (seed 0),
/// zero velocities, and one synthetic batch; returns the batch.
fn prepare(g: &Graph, exec: &mut impl Device) -> Result<(Vec<f32>, Vec<f32>), String> {
    let err = |e: RuntimeError| e.to_string();
    let prog = exec.program().clone();
    // The parameters every backend starts from for seed 0, velocities zero.
    for t in &ParamStore::init(g, 0).tensors {
        if let Some(b) = prog.buffer(&t.name) {
            exec.upload(b, &t.values).map_err(err)?;
        }
    }
    let batch = prog.batch;
    let per = prog.buffers[prog.image].elems / batch;
    let classes = (prog.buffers[prog.logits].elems / batch) as u64;
    let (images, labels) = synthetic(batch, per, classes, 0);
    let bits: Vec<f32> = labels.iter().map(|l| f32::from_bits(*l)).collect();
    exec.upload(prog.image, &images).map_err(err)?;
    exec.upload(prog.labels, &bits).map_err(err)?;
    Ok((images, bits))
}

/// Graph replay against launch-by-launch issue: `steps` training steps
/// from the same parameters and data on `replayed` (graph on) and `issued`
/// (graph off), each step's batch staged as training stages it; returns the
/// largest difference of the loss, parameters and velocities relative to
/// each buffer's largest magnitude (0 when they are equal bit for bit),
/// and how `replayed` issued its last step.
pub fn replay_parity(
    g: &Graph,
    replayed: &mut CudaExec,
    issued: &mut CudaExec,
    steps: u64,
) -> Result<(f64, String), String> {
    let err = |e: RuntimeError| e.to_string();
    issued.set_graph(false);
    let mut out = Vec::new();
    for exec in [&mut *replayed, &mut *issued] {
        let (images, labels) = prepare(g, exec)?;
        let prog = exec.program().clone();
        for s in 0..steps {
            // Alternate two batches, so a stale staged batch would show.
            let shifted: Vec<f32> = images.iter().map(|v| v * (1.0 + s as f32 * 0.25)).collect();
            exec.stage(prog.image, &shifted).map_err(err)?;
            exec.stage(prog.labels, &labels).map_err(err)?;
            exec.step(rng::mix64(s + 11), 0.01 / (1 + s) as f64)
                .map_err(err)?;
        }
        let mut bufs = Vec::new();
        for (b, d) in prog.buffers.iter().enumerate() {
            if matches!(d.kind, BufKind::Param | BufKind::Velocity) || b == prog.loss {
                bufs.push(exec.download(b).map_err(err)?);
            }
        }
        out.push(bufs);
    }
    let mut worst = 0f64;
    for (a, b) in out[0].iter().zip(&out[1]) {
        let scale = b
            .iter()
            .fold(0f64, |m, v| m.max(v.abs() as f64))
            .max(f64::MIN_POSITIVE);
        for (x, y) in a.iter().zip(b) {
            let d = if x.is_finite() {
                (*x as f64 - *y as f64).abs() / scale
            } else {
                f64::INFINITY
            };
            worst = worst.max(d);
        }
    }
    Ok((worst, replayed.replay()))
}

/// Times `steps` training steps (after warm-up steps, so that the step is
/// captured when graph replay is on) on synthetic data, parameters
/// initialised as the `.net` file says; images/s. With `stage`, each step's
/// batch and labels are staged as training stages them (copied from
/// page-locked memory while the previous step runs); without, the batch
/// stays on the device (as the PyTorch peer's does).
pub fn throughput(
    g: &Graph,
    exec: &mut impl Device,
    steps: u64,
    stage: bool,
) -> Result<f64, String> {
    let err = |e: RuntimeError| e.to_string();
    let (images, labels) = prepare(g, exec)?;
    let prog = exec.program().clone();
    let one = |exec: &mut dyn Device, s: u64| -> Result<(), String> {
        if stage {
            exec.stage(prog.image, &images).map_err(err)?;
            exec.stage(prog.labels, &labels).map_err(err)?;
        }
        exec.step(rng::mix64(s), 0.01).map_err(err)
    };
    for s in 0..=u64::from(crate::backend::cuda::runtime::exec::WARM_STEPS) {
        one(exec, s)?;
    }
    exec.synchronize().map_err(err)?;
    let t = Instant::now();
    for s in 0..steps {
        one(exec, s + 8)?;
    }
    exec.synchronize().map_err(err)?;
    let dt = t.elapsed().as_secs_f64();
    Ok(prog.batch as f64 * steps as f64 / dt)
}

/// Where one step's device time goes (`netc cuda-check --profile`).
pub struct Profile {
    /// Milliseconds of the whole step (the sum of its launches and GEMMs).
    pub total_ms: f64,
    /// Launches and GEMMs of a step.
    pub launches: usize,
    /// By kernel (numbered variants together; `sgemm` for cuBLAS), most first.
    pub by_kernel: Vec<(String, f64, usize)>,
    /// By layer (the `.net` binding of the node whose turn runs the step:
    /// `conv1`, `fc6`, ...), most first.
    pub by_layer: Vec<(String, f64, usize)>,
}

/// Times every launch and GEMM of a step, averaged over `steps` steps
/// issued launch by launch after the warm-up steps, on synthetic data.
pub fn profile(g: &Graph, exec: &mut CudaExec, steps: u64) -> Result<Profile, String> {
    let err = |e: RuntimeError| e.to_string();
    prepare(g, exec)?;
    for s in 0..=u64::from(crate::backend::cuda::runtime::exec::WARM_STEPS) {
        exec.step(rng::mix64(s), 0.01).map_err(err)?;
    }
    let prog = exec.program().clone();
    let mut ms = vec![0f64; prog.steps.len()];
    let steps = steps.max(1);
    for s in 0..steps {
        let t = exec.profile_step(rng::mix64(s + 8), 0.01).map_err(err)?;
        for (a, b) in ms.iter_mut().zip(t) {
            *a += b / steps as f64;
        }
    }
    let mut by_kernel: std::collections::BTreeMap<String, (f64, usize)> = Default::default();
    let mut by_layer: std::collections::BTreeMap<String, (f64, usize)> = Default::default();
    for (st, t) in prog.steps.iter().zip(&ms) {
        let (kernel, node) = match st {
            crate::backend::cuda::program::Step::Launch(l) => {
                let name = prog.kernels.get(l.kernel).map_or("?", |k| k.name.as_str());
                let stem = name.trim_end_matches(|c: char| c.is_ascii_digit());
                (stem.trim_end_matches('_').to_string(), l.node.as_str())
            }
            crate::backend::cuda::program::Step::Gemm(gm) => {
                ("sgemm".to_string(), gm.node.as_str())
            }
            crate::backend::cuda::program::Step::Copy { node, .. } => {
                ("copy".to_string(), node.as_str())
            }
        };
        let layer = prog
            .order
            .get(st.pos())
            .map_or_else(|| node.to_string(), |n| n.layer.clone());
        for (map, key) in [(&mut by_kernel, kernel), (&mut by_layer, layer)] {
            let e = map.entry(key).or_default();
            e.0 += t;
            e.1 += 1;
        }
    }
    let sorted = |m: std::collections::BTreeMap<String, (f64, usize)>| {
        let mut v: Vec<_> = m.into_iter().map(|(k, (t, n))| (k, t, n)).collect();
        v.sort_by(|a, b| b.1.total_cmp(&a.1));
        v
    };
    Ok(Profile {
        total_ms: ms.iter().sum(),
        launches: exec.program().steps.len(),
        by_kernel: sorted(by_kernel),
        by_layer: sorted(by_layer),
    })
}
