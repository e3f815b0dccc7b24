//! Towers on their own devices (`backend::cuda::place::split`, `--devices 0,1`),
//! checked without a GPU.
//!
//! - The transform: placing everything on one device gives back the
//!   program; on two, the copies are exactly the graph's cross-device
//!   edges (plus the image for tower 1), every step touches one device.
//! - The checker refuses a placed program with a copy removed or moved
//!   before its source is written, and a step given another device's
//!   buffer.
//! - The runtime's stream commands (`backend::cuda::place::streams`) are
//!   race-free, and stop being so without either event.
//! - Emulated (`tests/emu/multi.rs`: each device its own memory, poisoned
//!   with NaN): a training step on two devices equals the one-device step
//!   bit for bit, and the CPU executor to 1e-4, on Fashion-MNIST AlexNet and
//!   AlexNet, fused and unfused, in program order and with the streams run
//!   out of step; a missing copy shows as NaN.
//! - Training (`CudaStep` over two emulated devices) equals the
//!   one-device emulated run, with and without augmentation on the device.
//! - The command line: `--devices` lists, `compile --target cuda --devices`,
//!   and `train --devices` without a GPU.

mod emu;

use std::path::{Path, PathBuf};
use std::rc::Rc;

use emu::device::EmuDevice;
use emu::multi::{self, MultiEmu, Order};
use emu::{build, have_gxx, rand, rel_err, run_step};
use netc::backend::cpu::exec::CpuExec;
use netc::backend::cuda::place::split::{self, Placement, SplitError};
use netc::backend::cuda::place::streams::{Command, commands};
use netc::backend::cuda::program::{Arg, BufKind, CudaProgram, DType, Step};
use netc::backend::cuda::step::run::CudaStep;
use netc::backend::cuda::{self, generate::buffers::node_key, proof::alias};
use netc::ir::Graph;
use netc::passes::autodiff::autodiff;
use netc::rng;
use netc::train::run::{EpochReport, Outcome, TrainOptions, load_weights, train_with};

const NETS: [&str; 2] = ["networks/alexnet-fmnist.net", "networks/alexnet.net"];

fn graph(path: &str, fused: bool) -> Graph {
    let src = std::fs::read_to_string(path).unwrap();
    let c = netc::frontend::compile(&src).unwrap_or_else(|d| panic!("{path}: {:?}", d.message));
    let mut g = c.module.graph.clone();
    autodiff(&mut g, &c.module.train.sgd).unwrap();
    if fused {
        netc::passes::fuse::fuse(&mut g).unwrap();
    }
    g
}

fn two(p: &CudaProgram) -> CudaProgram {
    split::place(p, &Placement::towers(p, 2).unwrap()).unwrap()
}

fn gxx() -> bool {
    if have_gxx() {
        return true;
    }
    eprintln!("skipped: no g++ to compile the emulated CUDA (NETC_REQUIRE_GXX=1 fails instead)");
    false
}

#[test]
fn one_device_gives_back_the_program_and_two_copy_the_cross_edges() {
    for path in NETS {
        for fused in [false, true] {
            let g = graph(path, fused);
            let p = cuda::generate(&g, 16).unwrap();
            let one = split::place(&p, &Placement::towers(&p, 1).unwrap()).unwrap();
            assert_eq!(one, p, "{path}: one device");
            assert_eq!(
                Placement::towers(&p, 3),
                Err(SplitError::DeviceCount {
                    towers: 2,
                    devices: 3
                })
            );
            assert!(split::place(&two(&p), &Placement::towers(&p, 2).unwrap()).is_err());

            let q = two(&p);
            assert_eq!(q.devices(), 2);
            assert_eq!(alias::check(&q), Ok(()));
            // The original buffers keep their indices; inputs, loss and
            // logits stay with `shared` on device 0.
            for (a, b) in p.buffers.iter().zip(&q.buffers) {
                assert_eq!((&a.name, a.elems, a.kind), (&b.name, b.elems, b.kind));
            }
            for b in [q.image, q.labels, q.loss, q.logits] {
                assert_eq!(q.device_of(b), Some(0), "{}", q.buffers[b].name);
            }
            // Each device holds its own arenas, and both their workspaces.
            let arena = |name: &str| p.regions.iter().find(|r| r.name == name).unwrap().size;
            let planned = |d: usize| {
                q.regions
                    .iter()
                    .filter(|r| r.planned && r.device == d)
                    .map(|r| r.size)
                    .sum::<u64>()
            };
            assert_eq!(planned(0), arena("shared") + arena("t0"));
            assert_eq!(planned(1), arena("t1"));
            let inbox: u64 = q
                .regions
                .iter()
                .filter(|r| r.name.starts_with("inbox@"))
                .map(|r| r.size)
                .sum();
            assert_eq!(q.workspace_bytes(), 2 * p.workspace_bytes() + inbox);
            let mirrors = q
                .buffers
                .iter()
                .filter(|b| b.kind == BufKind::Mirror)
                .count() as u64;
            assert!(inbox >= q.mirror_bytes() && inbox < q.mirror_bytes() + 256 * mirrors);
            assert!(q.device_bytes(0) < p.bytes() && q.device_bytes(1) < p.bytes());
            // The mirrored buffers are exactly the sources of the graph's
            // edges between devices (t0|shared -> t1, t1 -> t0), and the
            // scalars.
            let dev = |n| match g.node(n).device {
                netc::ir::Device::Tower(1) => 1,
                _ => 0,
            };
            let mut want: Vec<String> = g
                .node_ids()
                .flat_map(|m| g.inputs(m).into_iter().map(move |n| (n, m)))
                .filter(|&(n, m)| dev(n) != dev(m))
                .map(|(n, _)| node_key(&g, n))
                .collect();
            // And the step's scalars (on device 0), which tower 1's dropout
            // kernels read.
            want.push("step.scalars".into());
            want.sort();
            want.dedup();
            let mut got: Vec<String> = q
                .steps
                .iter()
                .filter_map(|s| match s {
                    Step::Copy { src, dst, .. } => {
                        assert_ne!(q.device_of(*src), q.device_of(*dst));
                        Some(q.buffers[*src].name.clone())
                    }
                    _ => None,
                })
                .collect();
            let copies = got.len();
            got.sort();
            got.dedup();
            assert_eq!(got, want, "{path} fused={fused}");
            // Each source is written once and copied once per step.
            assert_eq!(copies, got.len());
            let mirrors = q.buffers.iter().filter(|b| b.kind == BufKind::Mirror);
            assert_eq!(mirrors.count(), copies);
            // Every launch and GEMM touches one device's memory.
            for st in &q.steps {
                if matches!(st, Step::Copy { .. }) {
                    continue;
                }
                let d = q.step_device(st);
                assert!(q.touches(st).iter().all(|(b, _)| q.device_of(*b) == d));
            }
            let text = cuda::generate::manifest::render(&q);
            assert!(text.contains("[devices] 2 allocations"), "{text}");
            assert!(text.contains(&format!("copies move {} bytes", q.copy_bytes())));
        }
    }
}

/// The placed fused AlexNet at batch 8 and its commands.
fn alexnet() -> (CudaProgram, CudaProgram) {
    let p = cuda::generate(&graph(NETS[1], true), 8).unwrap();
    let q = two(&p);
    (p, q)
}

#[test]
fn the_checker_refuses_a_missing_or_early_copy_and_a_remote_buffer() {
    let (_, q) = alexnet();
    let copy_of = |name: &str| {
        q.steps
            .iter()
            .position(|s| matches!(s, Step::Copy { src, .. } if q.buffers[*src].name == name))
            .unwrap()
    };
    // Removed: the reader reads a mirror no copy filled.
    for src in ["image@shared", "conv3/across_conv2.d1@t0"] {
        let mut bad = q.clone();
        bad.steps.remove(copy_of(src));
        let e = alias::check(&bad).unwrap_err();
        assert!(
            e.what.contains("a copy from another device is missing"),
            "{e}"
        );
        assert!(e.what.contains(&format!("`{src}>dev1`")), "{e}");
    }
    // Moved before the step that writes its source: the mirror is stale.
    let c = copy_of("fc6/dense@t0");
    let producer = q
        .steps
        .iter()
        .rposition(|s| s.node() == "fc6/dense@t0" && !matches!(s, Step::Copy { .. }))
        .unwrap();
    assert!(producer < c);
    let mut bad = q.clone();
    let Step::Copy { src, dst, node, .. } = bad.steps.remove(c) else {
        unreachable!()
    };
    let pos = bad.steps[producer].pos();
    let step = Step::Copy {
        src,
        dst,
        node,
        pos,
    };
    bad.buffers[dst].first = pos;
    bad.steps.insert(producer, step);
    let e = alias::check(&bad).unwrap_err();
    assert!(e.what.contains("missing or too early"), "{e}");
    // A launch given the other device's buffer instead of its mirror.
    let mut bad = q.clone();
    let (m, src) = (dst, src);
    let reader = bad
        .steps
        .iter_mut()
        .find_map(|s| match s {
            Step::Launch(l) if l.args.contains(&Arg::Buf(m)) => Some(l),
            _ => None,
        })
        .unwrap();
    for a in &mut reader.args {
        if *a == Arg::Buf(m) {
            *a = Arg::Buf(src);
        }
    }
    let e = alias::check(&bad).unwrap_err();
    assert!(e.what.contains("touches the memory of device"), "{e}");
}

#[test]
fn the_stream_commands_are_race_free_and_need_both_events() {
    for path in NETS {
        for fused in [false, true] {
            let q = two(&cuda::generate(&graph(path, fused), 16).unwrap());
            let cmds = commands(&q);
            let runs = cmds
                .iter()
                .filter(|c| matches!(c, Command::Run { .. }))
                .count();
            assert_eq!(runs, q.steps.len());
            // Two steps back to back, as `netc cuda-check` times them.
            let twice = [cmds.clone(), cmds.clone()].concat();
            assert_eq!(multi::races(&q, &twice), None, "{path} fused={fused}");
            for done in [false, true] {
                let without: Vec<Command> = twice
                    .iter()
                    .filter(|c| !matches!(c, Command::Wait { event, .. } if event.done == done))
                    .copied()
                    .collect();
                let race = multi::races(&q, &without);
                assert!(race.is_some(), "no race without the waits for done={done}");
            }
        }
    }
}

/// Parameters (the CPU executor's), images and labels of one step.
struct Inputs {
    cpu: CpuExec,
    images: Vec<f32>,
    labels: Vec<u32>,
}

/// Weights are He-scaled and biases N(0, 0.1), as `cuda::step::check` draws
/// them: with AlexNet's N(0, 0.01) and constant biases the maps reaching a
/// max pool are nearly flat, and a last-bit difference between the
/// emulated and CPU convolutions may move a window's argmax.
fn inputs(g: &Graph, p: &CudaProgram) -> Inputs {
    use netc::ir::{Init, Op, ParamRole};
    let mut cpu = CpuExec::new(g.clone(), 7).unwrap();
    for n in g.node_ids() {
        let node = g.node(n);
        let init = match &node.op {
            Op::Param {
                role: ParamRole::Weight,
                ..
            } => Init::He,
            Op::Param {
                role: ParamRole::Bias,
                ..
            } => Init::Normal {
                mean: 0.0,
                std: 0.1,
            },
            _ => continue,
        };
        let (name, device, dims) = (node.name.clone(), node.device, node.ty.dims().to_vec());
        netc::backend::cpu::exec::init_param(&init, &name, device, &dims, 7, cpu.value_mut(n));
    }
    let images = rand(21, p.buffers[p.image].elems, 1.0);
    let classes = (p.buffers[p.logits].elems / p.batch) as u64;
    let labels = (0..p.batch as u64)
        .map(|i| (rng::bits(5, 6, i) % classes) as u32)
        .collect();
    Inputs {
        cpu,
        images,
        labels,
    }
}

/// Loads parameters, zero velocities and the batch through `load(buffer, values)`.
fn load_into(g: &Graph, p: &CudaProgram, x: &Inputs, mut load: impl FnMut(usize, &[f32])) {
    for n in g.node_ids() {
        if g.node(n).op.is_param() {
            load(p.buffer(&node_key(g, n)).unwrap(), x.cpu.value(n));
        }
    }
    load(p.image, &x.images);
    let bits: Vec<f32> = x.labels.iter().map(|l| f32::from_bits(*l)).collect();
    load(p.labels, &bits);
}

/// One training step of `path` on two emulated devices against the
/// one-device emulated step (bit for bit, every node buffer while live)
/// and the CPU executor (1e-4). With `extra`, also: with the streams out
/// of step either way (bit for bit, what the step keeps), and not so
/// without the events that order the copies or without a copy.
fn two_devices_match(tag: &str, path: &str, fused: bool, batch: usize, extra: bool) {
    let g = graph(path, fused);
    let p = cuda::generate(&g, batch).unwrap();
    let q = two(&p);
    let emu = build(tag, &p.source, &p.kernels);
    let mut x = inputs(&g, &p);
    let (seed, step, lr) = (7u64, 3u64, 0.01f64);
    let key = seed ^ rng::mix64(step);

    // The node buffers: F32 values, not the image.
    let nodes: Vec<(usize, netc::ir::NodeId, String)> = g
        .node_ids()
        .filter_map(|n| {
            let k = node_key(&g, n);
            let b = p.buffer(&k)?;
            let d = &p.buffers[b];
            (d.dtype == DType::F32 && d.kind != BufKind::Image).then_some((b, n, k))
        })
        .collect();
    let end = p.order.len() - 1;
    // What a run leaves in each node buffer while live (at its last reader,
    // or after the step).
    type Seen = Vec<Vec<f32>>;
    let record = |seen: &mut Seen, pos: usize, get: &dyn Fn(usize) -> Vec<f32>| {
        for (i, (b, _, _)) in nodes.iter().enumerate() {
            let last = p.buffers[*b].last;
            if (last == pos && last < end) || (pos == usize::MAX && last == end) {
                seen[i] = get(*b);
            }
        }
    };

    // One device.
    let mut mem = vec![f32::NAN; (p.bytes() / 4) as usize];
    load_into(&g, &p, &x, |b, v| {
        emu::view_mut(&p, &mut mem, b).copy_from_slice(v)
    });
    let mut one: Seen = vec![Vec::new(); nodes.len()];
    run_step(&emu, &p, &mut mem, key, lr, |pos, m| {
        record(&mut one, pos, &|b| emu::view(&p, m, b).to_vec())
    });
    record(&mut one, usize::MAX, &|b| emu::view(&p, &mem, b).to_vec());

    // Two devices, program order.
    let cmds = commands(&q);
    let fresh = |x: &Inputs| {
        let mut mems = multi::memories(&q, f32::NAN);
        load_into(&g, &q, x, |b, v| {
            multi::view_mut(&q, &mut mems, b).copy_from_slice(v)
        });
        mems
    };
    let mut mems = fresh(&x);
    let mut two_: Seen = vec![Vec::new(); nodes.len()];
    multi::run_commands(
        &emu,
        &q,
        &mut mems,
        &cmds,
        key,
        lr,
        &Order::Program,
        |pos, m| record(&mut two_, pos, &|b| multi::view(&q, m, b).to_vec()),
    );
    record(&mut two_, usize::MAX, &|b| {
        multi::view(&q, &mems, b).to_vec()
    });

    let stats = x.cpu.train_step(&x.images, &x.labels, lr, step).unwrap();
    let mut worst = 0f64;
    for (i, (_, n, k)) in nodes.iter().enumerate() {
        assert!(
            one[i]
                .iter()
                .zip(&two_[i])
                .all(|(a, b)| a.to_bits() == b.to_bits()),
            "{tag}: `{k}` differs between one device and two"
        );
        let e = rel_err(&two_[i], x.cpu.value(*n));
        assert!(
            e <= 1e-4,
            "{tag}: `{k}`: relative error {e:e} against the CPU executor"
        );
        worst = worst.max(e);
    }
    let loss = multi::view(&q, &mems, q.loss)[0];
    assert_eq!(loss.to_bits(), emu::view(&p, &mem, p.loss)[0].to_bits());
    assert!((loss as f64 - stats.loss).abs() <= 1e-4 * stats.loss.abs());

    eprintln!(
        "{tag}: two devices ({} + {} bytes, {} copied per step): loss {loss} (CPU {}), {} buffers equal to one device, worst {worst:e} against the CPU",
        q.device_bytes(0),
        q.device_bytes(1),
        q.copy_bytes(),
        stats.loss,
        nodes.len()
    );
    if !extra {
        return;
    }
    // Streams out of step: what the step keeps is the same, bit for bit;
    // without the waits for `ready` (a copy before its source is written)
    // it is not.
    let kept: Vec<usize> = (0..p.buffers.len())
        .filter(|&b| p.kept(b) && p.buffers[b].dtype == DType::F32)
        .collect();
    let x2 = inputs(&g, &p);
    let unready: Vec<Command> = cmds
        .iter()
        .filter(|c| !matches!(c, Command::Wait { event, .. } if !event.done))
        .copied()
        .collect();
    for (prio, cmds, same) in [
        (vec![0, 1], &cmds, true),
        (vec![1, 0], &cmds, true),
        (vec![1, 0], &unready, false),
    ] {
        let mut m2 = fresh(&x2);
        let order = Order::Streams(prio.clone());
        multi::run_commands(&emu, &q, &mut m2, cmds, key, lr, &order, |_, _| {});
        let equal = kept.iter().all(|&b| {
            let (a, c) = (multi::view(&q, &mems, b), multi::view(&q, &m2, b));
            a.iter().zip(c).all(|(a, c)| a.to_bits() == c.to_bits())
        });
        assert_eq!(
            equal, same,
            "{tag}: streams {prio:?} first, all events: {same}"
        );
    }

    // A copy missing (the checker would refuse it): tower 1 reads NaN in
    // place of the image (ReLU and pooling may drop NaN, so the loss is
    // NaN or wrong).
    let mut bad = q.clone();
    let c = bad
        .steps
        .iter()
        .position(|s| matches!(s, Step::Copy { src, .. } if *src == q.image))
        .unwrap();
    bad.steps.remove(c);
    let mut m3 = fresh(&x2);
    let cmds = commands(&bad);
    multi::run_commands(
        &emu,
        &bad,
        &mut m3,
        &cmds,
        key,
        lr,
        &Order::Program,
        |_, _| {},
    );
    let wrong = multi::view(&bad, &m3, bad.loss)[0];
    assert_ne!(
        wrong.to_bits(),
        loss.to_bits(),
        "{tag}: a missing copy went unseen"
    );
}

#[test]
fn fmnist_step_on_two_devices_matches() {
    if !gxx() {
        return;
    }
    for fused in [false, true] {
        let tag = format!("split-fmnist-{fused}");
        two_devices_match(&tag, NETS[0], fused, 4, true);
    }
}

#[test]
fn alexnet_step_on_two_devices_matches() {
    if !gxx() {
        return;
    }
    // The streams out of step only on Fashion-MNIST AlexNet (the same
    // command list; `the_stream_commands_are_race_free_and_need_both_events`
    // checks AlexNet's): an emulated AlexNet step takes tens of seconds.
    two_devices_match("split-alexnet-fused", NETS[1], true, 2, false);
    two_devices_match("split-alexnet", NETS[1], false, 2, false);
}

const BATCH: usize = 8;

fn opts(out: &Path) -> TrainOptions {
    TrainOptions {
        data: Some(PathBuf::from("data/fmnist-small")),
        epochs: Some(2),
        batch: Some(BATCH as u64),
        seed: Some(3),
        max_steps: Some(3),
        out_dir: out.to_path_buf(),
        quiet: true,
        ..Default::default()
    }
}

fn tmp(name: &str) -> PathBuf {
    let d = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join(format!("cuda-split-{name}"));
    let _ = std::fs::remove_dir_all(&d);
    d
}

/// `CudaStep` on two emulated devices (streams out of step) trains as on
/// one: the same epoch figures and final weights, bit for bit, with the
/// host's augmentation and with the device's.
#[test]
fn training_on_two_emulated_devices_matches_one() {
    if !gxx() {
        return;
    }
    let src = std::fs::read_to_string(NETS[0]).unwrap();
    let m = netc::frontend::compile(&src).unwrap().module;
    let lib: std::cell::OnceCell<Rc<emu::Emu>> = std::cell::OnceCell::new();
    for augment in [false, true] {
        let run = |dir: &Path, devices: usize| {
            let o = opts(dir);
            let outcome = train_with(&m, &o, |cpu, _, aug| {
                let open = |p: &CudaProgram| {
                    let emu = lib
                        .get_or_init(|| {
                            let mut full = p.clone();
                            if !augment {
                                cuda::generate::augment::attach(&mut full, aug).unwrap();
                            }
                            Rc::new(build("split-train", &full.source, &full.kernels))
                        })
                        .clone();
                    if devices == 1 {
                        return Ok(Box::new(EmuDevice::new(emu, p)) as Box<dyn Dev>);
                    }
                    let q = split::place(p, &Placement::towers(p, devices).unwrap()).unwrap();
                    assert_eq!(q.devices(), 2);
                    Ok(Box::new(MultiEmu::new(emu, &q, Order::Streams(vec![1, 0])))
                        as Box<dyn Dev>)
                };
                if augment {
                    CudaStep::with_augment(cpu, BATCH, aug, open)
                } else {
                    CudaStep::new(cpu, BATCH, open)
                }
            });
            match outcome.unwrap() {
                Outcome::Finished(r) => r,
                Outcome::Stopped { step, .. } => panic!("stopped at step {step}"),
            }
        };
        let (d1, d2) = (
            tmp(&format!("one-{augment}")),
            tmp(&format!("two-{augment}")),
        );
        let (want, got) = (run(&d1, 1), run(&d2, 2));
        assert_eq!(got.len(), 2);
        let figures = |r: &EpochReport| {
            [r.train_loss, r.test_loss, r.top1_error, r.top5_error].map(f64::to_bits)
        };
        for (a, b) in got.iter().zip(&want) {
            assert!(b.train_loss.is_finite());
            assert_eq!(
                figures(a),
                figures(b),
                "epoch {} augment={augment}",
                a.epoch
            );
        }
        let w = |d: &Path| load_weights(&d.join("checkpoint.safetensors")).unwrap();
        let (a, b) = (w(&d1), w(&d2));
        assert_eq!(a.len(), b.len());
        for ((na, va), (_, vb)) in a.iter().zip(&b) {
            assert!(va == vb, "`{na}` differs on two devices");
        }
        for d in [d1, d2] {
            let _ = std::fs::remove_dir_all(d);
        }
    }
}

/// A device as a trait object, so one closure opens one device or two.
trait Dev: netc::backend::cuda::runtime::device::Device {}
impl<T: netc::backend::cuda::runtime::device::Device> Dev for T {}

impl netc::backend::cuda::runtime::device::Device for Box<dyn Dev> {
    fn program(&self) -> &CudaProgram {
        (**self).program()
    }
    fn upload(&mut self, b: usize, data: &[f32]) -> Result<(), cuda::runtime::RuntimeError> {
        (**self).upload(b, data)
    }
    fn download(&mut self, b: usize) -> Result<Vec<f32>, cuda::runtime::RuntimeError> {
        (**self).download(b)
    }
    fn step(&mut self, seed: u64, lr: f64) -> Result<(), cuda::runtime::RuntimeError> {
        (**self).step(seed, lr)
    }
}

fn netc(args: &[&str]) -> (Option<i32>, String, String) {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_netc"))
        .args(args)
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr).to_string();
    assert!(!err.contains("panicked"), "{err}");
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stdout).to_string(),
        err,
    )
}

#[test]
fn command_line_devices() {
    let dir = tmp("compile");
    let d = dir.to_str().unwrap();
    let (code, _, err) = netc(&[
        "compile",
        NETS[0],
        "--target",
        "cuda",
        "--batch",
        "8",
        "--devices",
        "0,1",
        "-o",
        d,
    ]);
    assert_eq!(code, Some(0), "{err}");
    assert!(
        err.contains("on 2 devices") && err.contains("device 1 on GPU 1"),
        "{err}"
    );
    let text = std::fs::read_to_string(dir.join("launch.txt")).unwrap();
    assert!(text.contains("[devices] 2 allocations"), "{text}");
    assert!(text.contains("t1         dev1 base           0"), "{text}");
    assert!(text.contains("copy b0 (dev0) -> "), "{text}");
    let _ = std::fs::remove_dir_all(&dir);

    let bad: [(&[&str], &str); 6] = [
        (
            &[
                "compile",
                NETS[0],
                "--target",
                "cuda",
                "--devices",
                "0,x",
                "-o",
                d,
            ],
            "`x` is not a GPU number",
        ),
        (
            &[
                "compile",
                NETS[0],
                "--target",
                "cuda",
                "--devices",
                "0,1,2",
                "-o",
                d,
            ],
            "lists 3 devices and the network has 2 towers",
        ),
        (
            &["compile", NETS[0], "--devices", "0,1"],
            "`--target cuda` only",
        ),
        (
            &[
                "train",
                NETS[0],
                "--devices",
                "0,1",
                "--data",
                "data/fmnist-small",
            ],
            "needs `--backend cuda`",
        ),
        (
            &["train", NETS[0], "--backend", "cuda", "--devices", ""],
            "is not a GPU number",
        ),
        (
            &["cuda-check", NETS[0], "--devices", "0,-1"],
            "`-1` is not a GPU number",
        ),
    ];
    for (args, want) in bad {
        let (code, _, err) = netc(args);
        assert_eq!(code, Some(1), "{args:?}: {err}");
        assert!(err.contains(want), "{args:?}: {err}");
    }
}

/// Without a GPU, `train --devices` names what is missing and exits 1.
#[test]
fn train_on_devices_fails_cleanly_without_a_gpu() {
    let out = tmp("cli-train");
    let o = out.to_str().unwrap();
    let (code, _, err) = netc(&[
        "train",
        NETS[0],
        "--backend",
        "cuda",
        "--devices",
        "0,1",
        "--data",
        "data/fmnist-small",
        "--epochs",
        "1",
        "--max-steps",
        "2",
        "--batch",
        "8",
        "--out",
        o,
    ]);
    match netc::backend::cuda::step::open::probe() {
        Err(e) => {
            assert_eq!(code, Some(1), "{err}");
            assert!(err.contains(&format!("error: {e}")), "{err}");
        }
        Ok(()) => {
            // The libraries load: without two GPUs it must still fail cleanly.
            assert!(
                code == Some(0)
                    || err.contains("no usable CUDA device")
                    || err.contains("does not exist"),
                "{err}"
            );
        }
    }
    let _ = std::fs::remove_dir_all(&out);
}
