//! `netc train --backend cuda` checked without a GPU. The CUDA training
//! executor (`train::cuda::CudaStep`) drives its device through the
//! `backend::cuda::runtime::device::Device` interface; here that device is the
//! emulation harness (`tests/emu`: the generated CUDA C compiled as C++ by
//! `g++`, cuBLAS's sgemm emulated), so the whole training loop runs with
//! the CUDA backend's semantics on the embedded Fashion-MNIST subset:
//! step losses, epoch metrics and final weights against the CPU backend
//! (1e-4 relative on losses, 1e-3 of each tensor's scale on weights), and
//! an interrupted emulated run resumed from its checkpoint ends with the
//! weights of an uninterrupted one, bit for bit. Skipped with a message
//! when `g++` is missing, unless `NETC_REQUIRE_GXX=1`.
//!
//! And the command line: without a CUDA driver, cuBLAS or NVRTC,
//! `netc train --backend cuda` names what is missing and exits 1 without a
//! panic; on a machine with them, it trains two steps.

mod emu;

use std::path::{Path, PathBuf};
use std::rc::Rc;

use emu::device::EmuDevice;
use emu::{Emu, build, have_gxx};
use netc::backend::config::{BackendConfig, BackendFlags};
use netc::backend::cuda::step::run::CudaStep;
use netc::backend::step::Step;
use netc::frontend;
use netc::lower::Module;
use netc::train::run::{
    EpochReport, Outcome, TrainError, TrainOptions, effective_config, eval_weights,
    eval_weights_with, load_weights, train, train_with, training_graph,
};

const BATCH: u64 = 8;

/// The fused training program of `m` at [`BATCH`], compiled for the emulator.
struct Emulated {
    emu: Rc<Emu>,
    source: String,
    /// The evaluation program's emulator and source.
    eval: Rc<Emu>,
    eval_source: String,
    /// Evaluate on the emulated device (slow: the emulator's forward pass
    /// over the test split), or on the host mirror.
    device_eval: std::cell::Cell<bool>,
}

impl Emulated {
    fn new(m: &Module, opts: &TrainOptions) -> Emulated {
        let cfg = effective_config(m, opts);
        let g = training_graph(m, &cfg, true).unwrap();
        let p = netc::backend::cuda::generate(&g, BATCH as usize).unwrap();
        let emu = Rc::new(build("train", &p.source, &p.kernels));
        let f = netc::backend::cuda::generate::forward::generate(&g, BATCH as usize).unwrap();
        let eval = Rc::new(build("train-eval", &f.source, &f.kernels));
        Emulated {
            emu,
            source: p.source,
            eval,
            eval_source: f.source,
            device_eval: std::cell::Cell::new(true),
        }
    }

    /// Turns a run's CPU executor into a CUDA executor on the emulator,
    /// evaluating on an emulated device too.
    fn exec(
        &self,
        cpu: netc::backend::cpu::exec::CpuExec,
    ) -> Result<CudaStep<EmuDevice>, TrainError> {
        let mut step = CudaStep::new(cpu, BATCH as usize, |p| {
            assert_eq!(p.source, self.source, "a different program");
            Ok(EmuDevice::new(self.emu.clone(), p))
        })?;
        if self.device_eval.get() {
            step.eval_on_device(|p| {
                assert_eq!(p.source, self.eval_source, "a different evaluation program");
                Ok(EmuDevice::new(self.eval.clone(), p))
            })?;
            assert!(step.evaluates_on_device());
        }
        Ok(step)
    }

    fn train(&self, m: &Module, opts: &TrainOptions) -> Outcome {
        train_with(m, opts, |cpu, _, _| self.exec(cpu)).unwrap()
    }
}

fn module() -> Module {
    let src = std::fs::read_to_string("networks/alexnet-fmnist.net").unwrap();
    frontend::compile(&src)
        .unwrap_or_else(|_| panic!("compiles"))
        .module
}

fn opts(out: &Path) -> TrainOptions {
    TrainOptions {
        data: Some(PathBuf::from("data/fmnist-small")),
        epochs: Some(2),
        batch: Some(BATCH),
        seed: Some(3),
        max_steps: Some(3),
        out_dir: out.to_path_buf(),
        quiet: true,
        ..Default::default()
    }
}

fn tmp(name: &str) -> PathBuf {
    let d = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join(format!("cuda-train-{name}"));
    let _ = std::fs::remove_dir_all(&d);
    d
}

fn gxx() -> bool {
    if have_gxx() {
        return true;
    }
    eprintln!("skipped: no g++ to compile the emulated CUDA (NETC_REQUIRE_GXX=1 fails instead)");
    false
}

fn close(what: &str, got: f64, want: f64, tol: f64) {
    assert!(
        (got - want).abs() <= tol * want.abs().max(1e-12),
        "{what}: {got} against the CPU backend's {want}"
    );
}

fn finished(o: Outcome) -> Vec<EpochReport> {
    match o {
        Outcome::Finished(r) => r,
        Outcome::Stopped { step, .. } => panic!("stopped at step {step}"),
    }
}

/// Runs `steps` training steps on real batches through the trait.
fn step_losses(exec: &mut dyn Step, steps: usize) -> Vec<f64> {
    let ds = netc::data::Dataset::embedded_fmnist().unwrap();
    let (n, per) = (BATCH as usize, exec.image_len());
    (0..steps)
        .map(|s| {
            let start = s * n;
            let images: Vec<f32> = ds.train.images[start * per..(start + n) * per]
                .iter()
                .map(|&p| p as f32 / 255.0 - 0.3)
                .collect();
            let labels = &ds.train.labels[start..start + n];
            exec.train_step(&images, labels, 0.02, s as u64)
                .unwrap()
                .loss
        })
        .collect()
}

#[test]
fn emulated_cuda_training_matches_the_cpu_backend_and_resumes() {
    if !gxx() {
        return;
    }
    let m = module();
    let emu = Emulated::new(&m, &opts(Path::new(".")));

    // Step by step through the trait: the same executor the loop builds.
    let cfg = effective_config(&m, &opts(Path::new(".")));
    let g = training_graph(&m, &cfg, true).unwrap();
    let mut cpu = netc::backend::cpu::exec::CpuExec::planned(g.clone(), 3).unwrap();
    let mut gpu = emu
        .exec(netc::backend::cpu::exec::CpuExec::planned(g, 3).unwrap())
        .unwrap();
    let (want, got) = (step_losses(&mut cpu, 4), step_losses(&mut gpu, 4));
    for (s, (g, w)) in got.iter().zip(&want).enumerate() {
        close(&format!("step {s} loss"), *g, *w, 1e-4);
    }
    eprintln!("step losses: emulated CUDA {got:?}, CPU {want:?}");
    // After the warm-up steps, the launch list recorded once was replayed
    // (as a CUDA graph is), and gave the CPU's losses.
    assert_eq!(gpu.device().replayed, 4 - emu::device::WARM);
    // Evaluation on the emulated device, in pieces of the program's batch
    // (the last one padded), against the CPU's on its own weights.
    let n = 2 * BATCH as usize + 3;
    let per = gpu.image_len();
    let images: Vec<f32> = (0..n * per)
        .map(|i| ((i * 7919) % 255) as f32 / 255.0 - 0.3)
        .collect();
    let labels: Vec<u32> = (0..n as u32).map(|i| i * 3 % 10).collect();
    let (e_gpu, e_cpu) = (
        gpu.eval_batch(&images, &labels).unwrap(),
        cpu.eval_batch(&images, &labels).unwrap(),
    );
    assert_eq!(
        (e_gpu.n, e_gpu.top1, e_gpu.top5),
        (e_cpu.n, e_cpu.top1, e_cpu.top5)
    );
    close("evaluation loss", e_gpu.loss, e_cpu.loss, 1e-4);
    assert_eq!(gpu.logits().len(), cpu.logits().len());
    assert!(emu::rel_err(gpu.logits(), cpu.logits()) <= 1e-3);
    assert!(gpu.eval_batch(&images[1..], &labels).is_err());
    assert!(gpu.eval_batch(&images, &vec![10; n]).is_err());
    // A wrong batch or label is an error, not a device fault.
    let per = gpu.image_len();
    assert!(gpu.train_step(&vec![0.0; per], &[0], 0.01, 9).is_err());
    let images = vec![0.0; per * BATCH as usize];
    assert!(
        gpu.train_step(&images, &[10; BATCH as usize], 0.01, 9)
            .is_err()
    );

    // The whole loop: metrics and final weights against the CPU backend.
    // Its runs evaluate on the host mirror (the emulator's forward pass over
    // the whole test split would make the test slow); device evaluation is
    // checked above, through the same `eval_batch` the loop calls.
    emu.device_eval.set(false);
    let cpu_dir = tmp("cpu");
    let want = finished(train(&m, &opts(&cpu_dir)).unwrap());
    let full = tmp("full");
    let got = finished(emu.train(&m, &opts(&full)));
    assert_eq!(got.len(), 2);
    for (g, w) in got.iter().zip(&want) {
        let e = g.epoch;
        close(
            &format!("epoch {e} train loss"),
            g.train_loss,
            w.train_loss,
            1e-4,
        );
        close(
            &format!("epoch {e} test loss"),
            g.test_loss,
            w.test_loss,
            1e-4,
        );
        // 500 test images: allow one decision on a near-tie to differ.
        assert!((g.top1_error - w.top1_error).abs() <= 1.0 / 500.0 + 1e-12);
        assert!((g.top5_error - w.top5_error).abs() <= 1.0 / 500.0 + 1e-12);
    }
    let ckpt = |d: &Path| load_weights(&d.join("checkpoint.safetensors")).unwrap();
    let (wcpu, wgpu) = (ckpt(&cpu_dir), ckpt(&full));
    assert_eq!(wcpu.len(), wgpu.len());
    let mut worst = 0f64;
    for ((na, a), (nb, b)) in wcpu.iter().zip(&wgpu) {
        assert_eq!(na, nb);
        let e = emu::rel_err(b, a);
        assert!(e <= 1e-3, "`{na}`: relative error {e:e} after 6 steps");
        worst = worst.max(e);
    }
    eprintln!("final weights: worst relative error {worst:e} against the CPU backend");
    // `netc eval` of the emulated run's checkpoint, on the emulated device
    // (the whole test split through the evaluation program) and on the CPU.
    let weights = full.join("checkpoint.safetensors");
    let on_cpu = eval_weights(&m, &weights, &opts(&full)).unwrap();
    emu.device_eval.set(true);
    let on_dev = eval_weights_with(&m, &weights, &opts(&full), |cpu, _, _| emu.exec(cpu)).unwrap();
    emu.device_eval.set(false);
    assert_eq!(on_dev.images, on_cpu.images);
    close("eval loss", on_dev.loss, on_cpu.loss, 1e-4);
    assert!((on_dev.top1_error - on_cpu.top1_error).abs() <= 1.0 / 500.0 + 1e-12);
    assert!((on_dev.top5_error - on_cpu.top5_error).abs() <= 1.0 / 500.0 + 1e-12);

    // Interrupted mid-epoch 1, then mid-epoch 2, resumed to the end: the
    // emulated device is deterministic, so the weights equal bit for bit.
    let part = tmp("part");
    for stop in [2, 4] {
        let mut o = opts(&part);
        o.stop_after = Some(stop);
        if stop == 4 {
            o.resume = Some(part.join("checkpoint.safetensors"));
        }
        assert!(matches!(emu.train(&m, &o), Outcome::Stopped { step, .. } if step == stop));
    }
    let mut o = opts(&part);
    o.resume = Some(part.join("checkpoint.safetensors"));
    assert_eq!(finished(emu.train(&m, &o)).len(), 2);
    let resumed = ckpt(&part);
    for ((na, a), (_, b)) in wgpu.iter().zip(&resumed) {
        assert!(a == b, "`{na}` differs after resuming");
    }
    // Diverging on the device: the parameters are not read back after each
    // step, but the checkpoint due after the step that overflowed them (its
    // loss still finite) is refused, naming a layer, and the last good
    // checkpoint stays.
    let good = std::fs::read(part.join("checkpoint.safetensors")).unwrap();
    let mut bad = m.clone();
    bad.train.sgd.lr = 1e300;
    let mut o = opts(&part);
    o.epochs = Some(3);
    o.checkpoint_every = Some(1);
    o.resume = Some(part.join("checkpoint.safetensors"));
    let e = train_with(&bad, &o, |cpu, _, _| emu.exec(cpu))
        .expect_err("a diverging run finished")
        .to_string();
    eprintln!("diverged: {e}");
    assert!(e.contains("a parameter became non-finite by step 7"), "{e}");
    assert!(e.contains("the first non-finite value is in `"), "{e}");
    let after = std::fs::read(part.join("checkpoint.safetensors")).unwrap();
    assert!(after == good, "the last good checkpoint was overwritten");
    // A CUDA checkpoint resumes on the CPU backend (same names and shapes).
    let mut o = opts(&part);
    o.epochs = Some(3);
    o.resume = Some(part.join("checkpoint.safetensors"));
    assert_eq!(finished(train(&m, &o).unwrap()).len(), 3);
    for d in [cpu_dir, full, part] {
        let _ = std::fs::remove_dir_all(d);
    }
}

/// Without the CUDA libraries the command fails cleanly, naming the
/// missing one; with them (a GPU machine), two steps train.
#[test]
fn train_backend_cuda_fails_cleanly_without_a_gpu() {
    let out = tmp("cli");
    let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_netc"));
    cmd.args(["train", "networks/alexnet-fmnist.net", "--backend", "cuda"])
        .args(["--data", "data/fmnist-small", "--epochs", "1"])
        .args(["--max-steps", "2", "--batch", "8", "--out"])
        .arg(&out);
    let res = cmd.output().unwrap();
    let stderr = String::from_utf8_lossy(&res.stderr);
    assert!(!stderr.contains("panicked"), "{stderr}");
    match netc::backend::cuda::step::open::probe() {
        Err(e) => {
            assert_eq!(res.status.code(), Some(1), "{stderr}");
            assert!(stderr.contains(&format!("error: {e}")), "{stderr}");
            if !netc::backend::cuda::runtime::libraries_present() {
                assert!(
                    stderr.contains("libcuda") || stderr.contains("cuBLAS"),
                    "{stderr}"
                );
            }
        }
        Ok(()) => {
            // The libraries load; without a device it must still fail cleanly.
            let ok = res.status.success();
            assert!(ok || stderr.contains("no usable CUDA device"), "{stderr}");
            if ok {
                assert!(out.join("checkpoint.safetensors").exists());
            }
        }
    }
    let _ = std::fs::remove_dir_all(&out);
    // `--no-graph` belongs to the CUDA backend: on the CPU it is an error.
    let res = std::process::Command::new(env!("CARGO_BIN_EXE_netc"))
        .args(["train", "networks/alexnet-fmnist.net", "--no-graph"])
        .args(["--data", "data/fmnist-small", "--max-steps", "1", "--out"])
        .arg(&out)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&res.stderr);
    assert_eq!(res.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("`--no-graph` is for `--backend cuda`"),
        "{stderr}"
    );
    // `netc eval --backend cuda` fails as cleanly (here before the weights
    // are read: the missing library is named first).
    let res = std::process::Command::new(env!("CARGO_BIN_EXE_netc"))
        .args(["eval", "networks/alexnet-fmnist.net", "--backend", "cuda"])
        .args(["--data", "data/fmnist-small", "--weights"])
        .arg(out.join("none.safetensors"))
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&res.stderr);
    assert_eq!(res.status.code(), Some(1), "{stderr}");
    assert!(!stderr.contains("panicked"), "{stderr}");
    if let Err(e) = netc::backend::cuda::step::open::probe() {
        assert!(stderr.contains(&format!("error: {e}")), "{stderr}");
    }
    let _ = std::fs::remove_dir_all(&out);
}

/// The loop with a step that augments on the device (`--device-augment`):
/// fed raw batches, it ends each epoch with exactly the figures of the same
/// step fed the host's crops, and on the CPU backend the option is an error.
#[test]
fn device_augmentation_trains_as_host_augmentation() {
    let o = opts;
    let m = module();
    // The CPU backend cannot augment on a device: the flags are refused.
    let e = BackendConfig::from_flags(&BackendFlags {
        device_augment: true,
        ..Default::default()
    })
    .unwrap_err();
    assert!(e.to_string().contains("--backend cuda"), "{e}");
    if !gxx() {
        return;
    }
    let cfg = effective_config(&m, &o(Path::new(".")));
    let g = training_graph(&m, &cfg, true).unwrap();
    // One library for both: the augmented program's kernels are the plain
    // program's followed by the augmentation kernel.
    let emu: std::cell::OnceCell<Rc<Emu>> = std::cell::OnceCell::new();
    let run = |dir: &Path, on_device: bool| {
        let outcome = train_with(&m, &o(dir), |cpu, _, aug| {
            let lib = emu.get_or_init(|| {
                let mut p = netc::backend::cuda::generate(&g, BATCH as usize).unwrap();
                netc::backend::cuda::generate::augment::attach(&mut p, aug).unwrap();
                Rc::new(build("train-augment", &p.source, &p.kernels))
            });
            let open = |q: &netc::backend::cuda::CudaProgram| Ok(EmuDevice::new(lib.clone(), q));
            if on_device {
                CudaStep::with_augment(cpu, BATCH as usize, aug, open)
            } else {
                CudaStep::new(cpu, BATCH as usize, open)
            }
        });
        finished(outcome.unwrap())
    };
    let want = run(&tmp("augment-host"), false);
    let got = run(&tmp("augment-device"), true);
    assert_eq!(got.len(), 2);
    for (g, w) in got.iter().zip(&want) {
        assert!(w.train_loss.is_finite());
        let figures = |r: &EpochReport| {
            [r.train_loss, r.test_loss, r.top1_error, r.top5_error, r.lr].map(f64::to_bits)
        };
        assert_eq!(figures(g), figures(w), "epoch {}", g.epoch);
    }
}
