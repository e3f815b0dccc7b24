//! Generated CUDA for every network in `networks/`, from the unfused and
//! the fused training step: snapshots of the source and the launch list
//! (`alexnet-fmnist.net`, both steps), launch-list sanity, the memory
//! layout (the memory plan's arenas: smaller than every buffer in its own
//! place; in-place launches only of in-place kernels; the alias checker
//! rejects overlapping operands), and NVRTC compiles every kernel of both
//! for `sm_80` and `sm_90` (skipped with a message when NVRTC cannot be
//! loaded, unless `NETC_REQUIRE_NVRTC=1`); the same for the networks of
//! `tests/nets/` (grouped, dilated, rectangular and biasless convolutions,
//! batchnorm, residual `add`).

use netc::backend::cuda::{self, CudaProgram, Layout, program::Arg, program::Step, proof::alias};
use netc::frontend;
use netc::ir::Graph;
use netc::passes::autodiff::autodiff;
use netc::passes::fuse::fuse;
use netc::passes::memplan;

fn graph(path: &std::path::Path, fused: bool) -> Graph {
    let src = std::fs::read_to_string(path).unwrap();
    let c = frontend::compile(&src).unwrap_or_else(|_| panic!("{} compiles", path.display()));
    let mut g = c.module.graph.clone();
    autodiff(&mut g, &c.module.train.sgd).unwrap();
    if fused {
        fuse(&mut g).unwrap();
    }
    g
}

fn program(path: &std::path::Path, batch: usize, fused: bool) -> CudaProgram {
    cuda::generate(&graph(path, fused), batch).unwrap()
}

#[test]
fn generated_source_snapshots() {
    let p = program(
        std::path::Path::new("networks/alexnet-fmnist.net"),
        128,
        false,
    );
    insta::assert_snapshot!("alexnet_fmnist_cu", p.source);
    insta::assert_snapshot!(
        "alexnet_fmnist_launch",
        cuda::generate::manifest::render(&p)
    );
}

/// A kernel's name without its `_N` count.
fn stem_of(name: &str) -> &str {
    name.rsplit_once('_').map_or(name, |(s, _)| s)
}

#[test]
fn fused_source_snapshots() {
    let p = program(
        std::path::Path::new("networks/alexnet-fmnist.net"),
        128,
        true,
    );
    insta::assert_snapshot!("alexnet_fmnist_fused_cu", p.source);
    insta::assert_snapshot!(
        "alexnet_fmnist_fused_launch",
        cuda::generate::manifest::render(&p)
    );
    // Every fused op has its kernels; no unfused ReLU, dropout or pooling is left.
    for stem in [
        "bias_relu_epilogue",
        "bias_relu_dropout_epilogue",
        "to_channel_major_relu",
        "relu_grad_scale",
        "lrn_maxpool_fwd",
        "lrn_maxpool_bwd",
    ] {
        assert!(
            p.kernels.iter().any(|k| stem_of(&k.name) == stem),
            "no {stem} kernel"
        );
    }
    for stem in ["relu", "relu_grad", "dropout", "lrn_fwd", "lrn_bwd"] {
        assert!(
            !p.kernels.iter().any(|k| stem_of(&k.name) == stem),
            "unfused {stem} kernel in the fused step"
        );
    }
    let unfused = program(
        std::path::Path::new("networks/alexnet-fmnist.net"),
        128,
        false,
    );
    assert!(p.steps.len() < unfused.steps.len());
}

#[test]
fn launch_lists_are_well_formed() {
    insta::glob!("../networks", "*.net", |path| {
        for fused in [false, true] {
            well_formed(path, fused);
        }
    });
}

/// The networks of the conv forms and layers beyond AlexNet's (groups,
/// dilation, rectangular and biasless convolutions, batchnorm, `add`).
#[test]
fn launch_lists_of_the_new_conv_forms_and_batchnorm_are_well_formed() {
    insta::glob!("nets", "*.net", |path| {
        for fused in [false, true] {
            well_formed(path, fused);
        }
    });
}

fn well_formed(path: &std::path::Path, fused: bool) {
    let p = program(path, 8, fused);
    for st in &p.steps {
        match st {
            Step::Launch(l) => {
                let k = &p.kernels[l.kernel];
                assert_eq!(k.params.len(), l.args.len(), "{}", k.name);
                assert!(l.grid >= 1 && l.block >= 1 && l.block <= 1024);
            }
            Step::Gemm(g) => {
                let (ar, ac) = if g.transa { (g.k, g.m) } else { (g.m, g.k) };
                let (br, bc) = if g.transb { (g.n, g.k) } else { (g.k, g.n) };
                assert!(g.lda >= ar && g.ldb >= br && g.ldc >= g.m, "{}", g.node);
                let (a, b) = (
                    g.a_at + g.lda * (ac - 1) + ar,
                    g.b_at + g.ldb * (bc - 1) + br,
                );
                assert!(a <= p.buffers[g.a].elems, "{}", g.node);
                assert!(b <= p.buffers[g.b].elems, "{}", g.node);
                assert!(
                    g.c_at + g.ldc * (g.n - 1) + g.m <= p.buffers[g.c].elems,
                    "{}",
                    g.node
                );
            }
            Step::Copy { .. } => panic!("a copy in a one-device program"),
        }
    }
    // Deterministic.
    assert_eq!(p, program(path, 8, fused));
    // The layout is the plan's and passes the alias checker (as `generate`
    // already made sure); the separate layout has every buffer to itself.
    let g = graph(path, fused);
    let plan = memplan::plan(&g, 8).unwrap();
    assert_eq!(p.planned_bytes(), plan.planned());
    assert_eq!(alias::check(&p), Ok(()));
    let sep = cuda::generate_with(&g, 8, Layout::Separate).unwrap();
    assert_eq!(sep.planned_bytes(), plan.no_reuse());
    assert_eq!((&sep.steps, &sep.kernels), (&p.steps, &p.kernels));
    assert!((0..sep.buffers.len()).all(|b| sep.kept(b)));
}

/// Buffers `(input, output)` of every launch that runs in place.
fn in_place(p: &CudaProgram) -> Vec<(usize, usize, String)> {
    let mut v = Vec::new();
    for st in &p.steps {
        let Step::Launch(l) = st else { continue };
        let k = &p.kernels[l.kernel];
        let bufs: Vec<(usize, bool)> = l
            .args
            .iter()
            .zip(&k.params)
            .filter_map(|(a, (t, _))| a.buffer().map(|(b, _)| (b, t.is_output())))
            .collect();
        for &(o, _) in bufs.iter().filter(|(_, w)| *w) {
            for &(i, _) in bufs.iter().filter(|(_, w)| !*w) {
                if p.addr(i) == p.addr(o) {
                    assert!(k.in_place, "{} runs in place", k.name);
                    v.push((i, o, k.name.clone()));
                }
            }
        }
    }
    v
}

/// The planned device memory of `alexnet.net` at batch 128: the plan's
/// arenas (much less than every buffer in its own place) and a workspace
/// after them, in one allocation; elementwise ops run in place.
#[test]
fn alexnet_device_memory_is_the_plan() {
    let net = std::path::Path::new("networks/alexnet.net");
    for fused in [true, false] {
        let g = graph(net, fused);
        let p = cuda::generate(&g, 128).unwrap();
        let plan = memplan::plan(&g, 128).unwrap();
        assert_eq!(p.planned_bytes(), plan.planned());
        assert_eq!(p.no_reuse, plan.no_reuse());
        assert!(p.planned_bytes() < plan.no_reuse());
        assert!(p.bytes() >= p.planned_bytes() + p.workspace_bytes());
        assert!(p.bytes() < p.no_reuse + p.workspace_bytes());
        let names: Vec<&str> = p.regions.iter().map(|r| r.name.as_str()).collect();
        assert_eq!(names, ["shared", "t0", "t1", "workspace"]);
        let pairs = in_place(&p);
        assert!(!pairs.is_empty(), "fused={fused}: nothing runs in place");
        eprintln!(
            "alexnet b128 fused={fused}: {} bytes = arenas {} + workspace {} (no reuse {}); {} launches in place",
            p.bytes(),
            p.planned_bytes(),
            p.workspace_bytes(),
            p.no_reuse,
            pairs.len()
        );
    }
}

/// The convolution workspace stays under its budget: `alexnet.net` at
/// batch 128 runs conv1 in 9 chunks of images (15, the last 8) with the
/// default 64 MiB, and a program whose convolutions fit stays one chunk
/// per layer; weight gradients accumulate (`beta = 1`) after the first.
#[test]
fn convolutions_run_in_chunks_under_the_budget() {
    let net = std::path::Path::new("networks/alexnet.net");
    let count = |p: &CudaProgram, node: &str, stem: &str| {
        p.steps
            .iter()
            .filter(|s| {
                matches!(s, Step::Launch(l) if l.node == node
                    && p.kernels[l.kernel].name.starts_with(stem))
            })
            .count()
    };
    for fused in [true, false] {
        let g = graph(net, fused);
        let p = cuda::generate(&g, 128).unwrap();
        let scratch = |n: &str| p.buffers[p.buffer(n).unwrap()].bytes();
        assert!(scratch("scratch.col") <= cuda::generate::chunk::DEFAULT_CONV_WORKSPACE);
        assert!(scratch("scratch.tmp") <= cuda::generate::chunk::DEFAULT_CONV_WORKSPACE);
        assert_eq!(count(&p, "conv1/conv@t0", "im2col"), 9);
        assert_eq!(count(&p, "conv1/conv.dw@t0", "im2col"), 9);
        let accumulate = p
            .steps
            .iter()
            .filter(
                |s| matches!(s, Step::Gemm(gm) if gm.node == "conv1/conv.dw@t0" && gm.beta == 1.0),
            )
            .count();
        assert_eq!(accumulate, 8);
        let huge = cuda::Options {
            conv_workspace: u64::MAX,
            ..Default::default()
        };
        let whole = cuda::generate_opts(&g, 128, huge).unwrap();
        assert_eq!(count(&whole, "conv1/conv@t0", "im2col"), 1);
        assert!(whole.workspace_bytes() > p.workspace_bytes());
    }
    let small = program(std::path::Path::new("networks/alexnet-fmnist.net"), 4, true);
    assert!(small.steps.iter().all(|s| {
        match s {
            // (The learning rate is the one element offset left: in the scalars.)
            Step::Launch(l) => l
                .args
                .iter()
                .all(|a| !matches!(a, Arg::At(b, _) if *b != small.scalars)),
            Step::Gemm(gm) => gm.beta == 0.0,
            Step::Copy { .. } => false,
        }
    }));
}

/// The alias checker rejects a GEMM writing over its operand, a kernel
/// that reads neighbours given its output as input, and a buffer used
/// outside its lifetime.
#[test]
fn alias_check_rejects_unsafe_layouts() {
    let net = std::path::Path::new("networks/alexnet-fmnist.net");
    let p = program(net, 4, false);
    assert_eq!(alias::check(&p), Ok(()));

    let mut bad = p.clone();
    let Some(Step::Gemm(g)) = bad.steps.iter_mut().find(|s| matches!(s, Step::Gemm(_))) else {
        panic!("no GEMM")
    };
    g.c = g.a;
    let e = alias::check(&bad).unwrap_err();
    assert!(e.what.contains("overlap"), "{e}");

    let mut bad = p.clone();
    let pool = bad
        .kernels
        .iter()
        .position(|k| k.name.starts_with("maxpool_fwd"))
        .unwrap();
    let Some(Step::Launch(l)) = bad
        .steps
        .iter_mut()
        .find(|s| matches!(s, Step::Launch(l) if l.kernel == pool))
    else {
        panic!("no pooling")
    };
    l.args[1] = l.args[0];
    let e = alias::check(&bad).unwrap_err();
    assert!(e.what.contains("overlap"), "{e}");

    let mut bad = p.clone();
    let Some(Step::Launch(l)) = bad
        .steps
        .iter()
        .find(|s| matches!(s, Step::Launch(l) if l.pos > 0))
    else {
        panic!("no launch")
    };
    let (pos, Arg::Buf(b)) = (l.pos, l.args[0]) else {
        panic!("a buffer first")
    };
    bad.buffers[b].last = pos - 1;
    bad.buffers[b].first = bad.buffers[b].first.min(pos - 1);
    let e = alias::check(&bad).unwrap_err();
    assert!(e.what.contains("lifetime"), "{e}");
}

/// A network of every layer type added after AlexNet's.
const NEW_LAYERS: &str = "
network new_layers {
  input image: [2, 9, 9]
  input label: class(3)
  c1 = conv(image, filters: 4, size: 3, pad: 1) -> tanh -> maxpool(size: 3, stride: 2, pad: 1)
  c2 = conv(c1, filters: 6, size: 3, pad: 1) -> sigmoid -> avgpool(size: 3, stride: 2, pad: 1)
  c3 = conv(c2, filters: 5, size: 1) -> leaky_relu(slope: 0.1) -> global_avgpool
  f = flatten(c2) -> dense(units: 8) -> tanh
  both = concat(c3, f)
  out = dense(both, units: 3)
  probs = softmax(out)
  loss = softmax_xent(out, label)
}
";

/// The fused dense activations `NEW_LAYERS` lacks.
const DENSE_ACTS: &str = "
network dense_acts {
  input image: [2, 9, 9]
  input label: class(3)
  f1 = dense(image, units: 8) -> sigmoid
  f2 = dense(f1, units: 6) -> leaky_relu(slope: 0.3)
  out = dense(f2, units: 3)
  loss = softmax_xent(out, label)
}
";

#[test]
fn nvrtc_compiles_every_kernel() {
    if !cuda::nvrtc::available() {
        let msg = "NVRTC cannot be loaded (install nvidia-cuda-nvrtc and put its lib folder on LD_LIBRARY_PATH)";
        if std::env::var("NETC_REQUIRE_NVRTC").as_deref() == Ok("1") {
            panic!("{msg}, and NETC_REQUIRE_NVRTC=1");
        }
        eprintln!("skipped: {msg}");
        return;
    }
    for net in [
        "networks/alexnet-fmnist.net",
        "networks/alexnet.net",
        "networks/lenet5.net",
        "networks/allconv-fmnist.net",
        "tests/nets/residual-bn.net",
        "networks/resnet-fmnist.net",
        "networks/vgg-fmnist.net",
        NEW_LAYERS,
        DENSE_ACTS,
    ] {
        for fused in [false, true] {
            let p = if net.ends_with(".net") {
                program(std::path::Path::new(net), 128, fused)
            } else {
                let c = frontend::compile(net).unwrap_or_else(|d| panic!("{}", d.message));
                let mut g = c.module.graph.clone();
                autodiff(&mut g, &c.module.train.sgd).unwrap();
                if fused {
                    fuse(&mut g).unwrap();
                }
                cuda::generate(&g, 128).unwrap()
            };
            let net = if net.ends_with(".net") {
                net
            } else if net == NEW_LAYERS {
                "new_layers"
            } else {
                "dense_acts"
            };
            for arch in ["sm_80", "sm_90"] {
                let ptx = cuda::nvrtc::compile(&p.source, arch)
                    .unwrap_or_else(|e| panic!("{net} fused={fused} {arch}: {e}"));
                for k in &p.kernels {
                    assert!(
                        ptx.contains(&format!(".entry {}(", k.name)),
                        "{net} fused={fused} {arch}: no entry for {}",
                        k.name
                    );
                }
            }
        }
    }
}

/// `alexnet-fmnist.net` with the settings beyond the paper's: Nesterov
/// momentum, label smoothing, multipliers, a cosine schedule, PyTorch's initialisers.
fn with_settings() -> String {
    let src = std::fs::read_to_string("networks/alexnet-fmnist.net").unwrap();
    let old = "sgd { lr: 0.01, momentum: 0.9, weight_decay: 0.0005 }";
    assert!(src.contains(old));
    src.replace(
        old,
        "sgd { lr: 0.01, momentum: 0.9, weight_decay: 0.0005, nesterov: true }\n  \
         label_smoothing: 0.1\n  \
         multipliers { bias { lr: 2, decay: 0 } fc8 { lr: 10 } }",
    )
    .replace(
        "schedule: step(every: 5, factor: 0.1)",
        "schedule: cosine(warmup: 1, min_lr: 0.0001)",
    )
    .replace(
        "weight: he",
        "weight: kaiming_uniform(nonlinearity: relu)\n    fc8.weight: pytorch_default",
    )
}

#[test]
fn nvrtc_compiles_the_new_settings() {
    let src = with_settings();
    let c = frontend::compile(&src).unwrap_or_else(|d| panic!("{}", d.message));
    for fused in [false, true] {
        let mut g = c.module.graph.clone();
        autodiff(&mut g, &c.module.train.sgd).unwrap();
        if fused {
            fuse(&mut g).unwrap();
        }
        let p = cuda::generate(&g, 128).unwrap();
        // The settings reach the kernels: a Nesterov step, a learning rate
        // scaled by 2 and by 10, no decay on the biases, a smoothed target.
        assert!(
            p.source
                .contains("const float d = wdlr * w[i] + lrf * g[i];")
        );
        assert!(p.source.contains("const double lr = *lrp * 2.0;"));
        assert!(p.source.contains("const double lr = *lrp * 10.0;"));
        assert!(p.source.contains("const float wdlr = (float)(0.0 * lr);"));
        assert!(
            p.source
                .contains("(probs[i] - (j == (long long)labels[r] ? ")
        );
        if !cuda::nvrtc::available() {
            let msg = "NVRTC cannot be loaded (install nvidia-cuda-nvrtc and put its lib folder on LD_LIBRARY_PATH)";
            if std::env::var("NETC_REQUIRE_NVRTC").as_deref() == Ok("1") {
                panic!("{msg}, and NETC_REQUIRE_NVRTC=1");
            }
            eprintln!("skipped compiling: {msg}");
            return;
        }
        for arch in ["sm_80", "sm_90"] {
            let ptx = cuda::nvrtc::compile(&p.source, arch)
                .unwrap_or_else(|e| panic!("fused={fused} {arch}: {e}"));
            for k in &p.kernels {
                assert!(
                    ptx.contains(&format!(".entry {}(", k.name)),
                    "no entry for {}",
                    k.name
                );
            }
        }
    }
}

/// `netc compile --target cuda` writes the fused step by default and the
/// unfused one with `--no-fuse`; `--no-fuse` without `--target cuda` is an error.
#[test]
fn compile_target_cuda_fuses_unless_told_not_to() {
    let net = std::path::Path::new("networks/alexnet-fmnist.net");
    let tmp = std::path::PathBuf::from(env!("CARGO_TARGET_TMPDIR"));
    for fused in [true, false] {
        let dir = tmp.join(format!("cuda-cli-{fused}"));
        let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_netc"));
        cmd.arg("compile")
            .arg(net)
            .args(["--target", "cuda", "-o"])
            .arg(&dir);
        if !fused {
            cmd.arg("--no-fuse");
        }
        let out = cmd.output().unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let cu = std::fs::read_to_string(dir.join("netc.cu")).unwrap();
        assert_eq!(cu, program(net, 128, fused).source, "fused={fused}");
    }
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_netc"))
        .arg("compile")
        .arg(net)
        .arg("--no-fuse")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("--no-fuse"));
}

/// The runtime refuses, with an error and never a panic, a program whose
/// layout is unsafe (before touching a device) and, here, a machine with
/// no usable device; running out of device memory names both figures.
#[test]
fn runtime_errors_are_values() {
    use netc::backend::cuda::runtime::{self, RuntimeError, exec::CudaExec};
    let p = program(std::path::Path::new("networks/alexnet-fmnist.net"), 4, true);
    let mut bad = p.clone();
    bad.buffers[0].offset = bad.regions[bad.buffers[0].region].size;
    assert!(matches!(
        CudaExec::new(bad, String::new()),
        Err(RuntimeError::Layout(_))
    ));
    if !runtime::libraries_present() {
        assert!(matches!(
            CudaExec::new(p, String::new()),
            Err(RuntimeError::NoDevice(_))
        ));
    }
    let e = RuntimeError::OutOfMemory {
        need: 3 << 30,
        free: 1 << 30,
    }
    .to_string();
    assert!(
        e.contains("3221225472 bytes (3072 MiB)") && e.contains("1073741824 bytes (1024 MiB) free"),
        "{e}"
    );
}
