//! The generated CUDA C, compiled as C++ with the system `g++` against
//! `tests/cuda_shim/shim.h` and run on the CPU (harness: `tests/emu`): each
//! kernel of the unfused step against the CPU backend's op on fresh random
//! inputs (1e-5 relative to the output's scale), then a whole training
//! step of `networks/alexnet-fmnist.net` (cuBLAS's sgemm emulated by a
//! naive column-major GEMM) against `CpuExec` with the same seed,
//! parameters and dropout masks: loss, every value, gradient, updated
//! weight and velocity (1e-4 relative to each buffer's scale), from the
//! unfused training step and from the fused one (`passes::fuse`, with
//! `CpuExec` running the same fused graph). The steps run in one host
//! allocation laid out by the memory plan (arenas reused, elementwise ops
//! in place), poisoned with NaN first; values whose memory is reused are
//! compared while still live (`tests/emu`). Small networks cover the fused
//! ops `alexnet-fmnist` lacks (`dense_relu`, `grad_chain`) and the
//! two-kernel `lrn_maxpool` for planes too large for shared memory. The
//! fused ops' kernels alone: `tests/cuda_emulate_fused.rs`. Skipped with a
//! message when `g++` is missing.

mod emu;

use emu::*;
use netc::backend::cpu::kernels as k;
use netc::backend::cuda::Layout;
use netc::backend::cuda::generate::kernels::{Kernel, spec};
use netc::backend::cuda::generate::render::{PRELUDE, Source};
use netc::rng;

/// One kernel from the table: compiled alone, launched with its own shape.
struct One {
    spec: netc::backend::cuda::generate::render::Spec,
    idx: usize,
}

#[test]
fn each_kernel_matches_the_cpu_op() {
    if !have_gxx() {
        eprintln!("skipped: no g++ to compile the emulated CUDA");
        return;
    }
    let (n, c, h, w) = (2usize, 7usize, 7usize, 6usize);
    let total = n * c * h * w;
    let strong = k::lrn::LrnParams {
        size: 5,
        alpha: 0.1,
        beta: 0.75,
        k: 2.0,
    };
    let odd = k::lrn::LrnParams {
        size: 4,
        alpha: 0.2,
        beta: 1.3,
        k: 1.5,
    };
    let lrn = |p: &k::lrn::LrnParams, fwd: bool| {
        let (size, alpha, beta, kk) = (p.size, p.alpha, p.beta, p.k);
        if fwd {
            Kernel::LrnFwd {
                n,
                c,
                p: h * w,
                size,
                alpha,
                beta,
                k: kk,
            }
        } else {
            Kernel::LrnBwd {
                n,
                c,
                p: h * w,
                size,
                alpha,
                beta,
                k: kk,
            }
        }
    };
    let stream = rng::stream_of("fc6/dropout");
    let table = vec![
        Kernel::Relu { total },
        Kernel::ReluGrad { total },
        lrn(&strong, true),
        lrn(&strong, false),
        lrn(&odd, true),
        lrn(&odd, false),
        Kernel::MaxPoolFwd {
            planes: n * c,
            h,
            w,
            size: 3,
            stride: 2,
        },
        Kernel::MaxPoolBwd {
            planes: n * c,
            h,
            w,
            size: 3,
            stride: 2,
        },
        Kernel::Dropout {
            total,
            rate: 0.5,
            stream,
        },
        Kernel::Concat {
            n,
            p: h * w,
            parts: vec![3, 4],
        },
        Kernel::Slice {
            n,
            p: h * w,
            c,
            start: 3,
            len: 4,
        },
        Kernel::Add { total, inputs: 3 },
        Kernel::SoftmaxXentFwd {
            n: 300,
            classes: 13,
        },
        Kernel::SoftmaxXentBwd {
            n: 300,
            classes: 13,
            smoothing: 0.0,
        },
        Kernel::BiasGrad {
            n,
            f: c,
            p: h * w,
            acc: false,
        },
        Kernel::Sgd {
            total,
            momentum: 0.9,
            weight_decay: 5e-4,
            nesterov: false,
            lr_mult: 1.0,
            decay_mult: 1.0,
        },
        // 16..=18: the settings beyond the paper's.
        Kernel::SoftmaxXentBwd {
            n: 300,
            classes: 13,
            smoothing: 0.1,
        },
        Kernel::Sgd {
            total,
            momentum: 0.9,
            weight_decay: 5e-4,
            nesterov: true,
            lr_mult: 1.0,
            decay_mult: 1.0,
        },
        Kernel::Sgd {
            total,
            momentum: 0.8,
            weight_decay: 5e-4,
            nesterov: false,
            lr_mult: 2.0,
            decay_mult: 0.0,
        },
    ];
    let mut src = Source::default();
    let ones: Vec<One> = table
        .iter()
        .map(|kern| {
            let s = spec(kern);
            let idx = src.add(&s);
            One { spec: s, idx }
        })
        .collect();
    let source = format!("{PRELUDE}{}", src.text);
    let emu = build("kernels", &source, &src.kernels);
    let run = |i: usize, vals: &[Val]| {
        let (g, b) = ones[i].spec.grid_block();
        emu.launch(ones[i].idx, g, b, vals);
    };
    let tol = 1e-5;

    // relu, relu_grad
    let mut x = rand(1, total, 1.0);
    let mut dy = rand(2, total, 1.0);
    let (mut y, mut want) = (vec![0f32; total], vec![0f32; total]);
    run(0, &[ptr(&mut x), ptr(&mut y)]);
    k::relu::relu_forward(&x, &mut want);
    check("relu", &y, &want, 0.0);
    let mut dx = vec![0f32; total];
    run(1, &[ptr(&mut y), ptr(&mut dy), ptr(&mut dx)]);
    k::relu::relu_backward(&y, &dy, &mut want);
    check("relu_grad", &dx, &want, 0.0);

    // lrn forward and backward, both parameter sets
    let shape = k::Nchw::new(n, c, h, w);
    for (j, p) in [(2usize, strong), (4, odd)] {
        let mut x = rand(3, total, 3.0);
        let (mut y, mut scale) = (vec![0f32; total], vec![0f32; total]);
        run(j, &[ptr(&mut x), ptr(&mut y), ptr(&mut scale)]);
        let (mut wy, mut ws) = (vec![0f32; total], vec![0f32; total]);
        k::lrn::lrn_forward(&p, &shape, &x, &mut wy, &mut ws);
        check(&format!("lrn fwd {p:?}"), &y, &wy, tol);
        check(&format!("lrn scale {p:?}"), &scale, &ws, tol);
        let mut dx = vec![0f32; total];
        run(
            j + 1,
            &[
                ptr(&mut x),
                ptr(&mut wy),
                ptr(&mut ws),
                ptr(&mut dy),
                ptr(&mut dx),
            ],
        );
        let mut wdx = vec![0f32; total];
        k::lrn::lrn_backward(&p, &shape, &x, &wy, &ws, &dy, &mut wdx, &mut Vec::new());
        check(&format!("lrn bwd {p:?}"), &dx, &wdx, tol);
    }

    // max pooling (overlapping windows) forward with argmax, backward
    let ps = k::pool::PoolShape {
        n,
        c,
        h,
        w,
        size: 3,
        stride: 2,
    };
    let outn = ps.output().len();
    let (mut py, mut pa) = (vec![0f32; outn], vec![0u32; outn]);
    run(6, &[ptr(&mut x), ptr(&mut py), uptr(&mut pa)]);
    let (mut wpy, mut wpa) = (vec![0f32; outn], vec![0u32; outn]);
    k::pool::maxpool_forward(&ps, &x, &mut wpy, &mut wpa);
    check("maxpool fwd", &py, &wpy, 0.0);
    assert_eq!(pa, wpa, "maxpool argmax");
    let mut pdy = rand(4, outn, 1.0);
    let mut pdx = vec![0f32; total];
    run(7, &[ptr(&mut pdy), uptr(&mut pa), ptr(&mut pdx)]);
    let mut wpdx = vec![0f32; total];
    k::pool::maxpool_backward(&ps, &pdy, &wpa, &mut wpdx);
    check("maxpool bwd", &pdx, &wpdx, 0.0);

    // dropout: the same mask as the CPU's counter-based RNG
    let seed = 1234 ^ rng::mix64(5);
    let mut dout = vec![0f32; total];
    run(8, &[ptr(&mut x), ptr(&mut dout), Val::U64(seed)]);
    let dp = k::dropout::DropoutParams {
        seed,
        stream,
        rate: 0.5,
        training: true,
    };
    let mut wd = vec![0f32; total];
    k::dropout::dropout_forward(&dp, &x, &mut wd);
    check("dropout", &dout, &wd, 0.0);
    assert!(wd.iter().filter(|v| **v == 0.0).count() > total / 4);

    // concat of 3 + 4 channels, and slicing the 4 back out
    let hw = h * w;
    let (mut a3, mut b4) = (rand(5, n * 3 * hw, 1.0), rand(6, n * 4 * hw, 1.0));
    let mut cat = vec![0f32; total];
    run(9, &[ptr(&mut a3), ptr(&mut b4), ptr(&mut cat)]);
    let mut wcat = vec![0f32; total];
    k::concat::concat_channels(n, hw, &[(&a3, 3), (&b4, 4)], &mut wcat);
    check("concat", &cat, &wcat, 0.0);
    let mut sl = vec![0f32; n * 4 * hw];
    run(10, &[ptr(&mut cat), ptr(&mut sl)]);
    check("slice", &sl, &b4, 0.0);

    // add of three
    let (mut x1, mut x2) = (rand(7, total, 1.0), rand(8, total, 1.0));
    let mut s = vec![0f32; total];
    run(11, &[ptr(&mut x), ptr(&mut x1), ptr(&mut x2), ptr(&mut s)]);
    let want: Vec<f32> = (0..total).map(|i| x[i] + x1[i] + x2[i]).collect();
    check("add", &s, &want, 0.0);

    // softmax cross-entropy over 300 rows (more rows than threads)
    let (rows, classes) = (300usize, 13usize);
    let mut z = rand(9, rows * classes, 4.0);
    let mut labels: Vec<u32> = (0..rows)
        .map(|i| (rng::bits(3, 4, i as u64) % classes as u64) as u32)
        .collect();
    let (mut probs, mut loss) = (vec![0f32; rows * classes], vec![0f32; 1]);
    run(
        12,
        &[
            ptr(&mut z),
            uptr(&mut labels),
            ptr(&mut probs),
            ptr(&mut loss),
        ],
    );
    let mut wprobs = vec![0f32; rows * classes];
    let wl = k::softmax_xent::softmax_xent_forward(rows, classes, &z, &labels, &mut wprobs);
    check("softmax probs", &probs, &wprobs, tol);
    check("softmax loss", &loss, &[wl as f32], tol);
    let mut dz = vec![0f32; rows * classes];
    run(13, &[ptr(&mut wprobs), uptr(&mut labels), ptr(&mut dz)]);
    let mut wdz = vec![0f32; rows * classes];
    k::softmax_xent::softmax_xent_backward(rows, classes, &wprobs, &labels, &mut wdz);
    check("softmax grad", &dz, &wdz, 0.0);

    // bias gradient: sum over images and positions
    let mut db = vec![0f32; c];
    run(14, &[ptr(&mut dy), ptr(&mut db)]);
    let want: Vec<f32> = (0..c)
        .map(|f| {
            (0..n)
                .flat_map(|i| (0..hw).map(move |q| (i, q)))
                .map(|(i, q)| dy[(i * c + f) * hw + q] as f64)
                .sum::<f64>() as f32
        })
        .collect();
    check("bias grad", &db, &want, tol);

    // the paper's SGD step
    let (mut sw, mut sv, mut sg) = (
        rand(10, total, 1.0),
        rand(11, total, 0.1),
        rand(12, total, 1.0),
    );
    let (mut ww, mut wv) = (sw.clone(), sv.clone());
    run(
        15,
        &[ptr(&mut sw), ptr(&mut sv), ptr(&mut sg), Val::F64(0.01)],
    );
    let p = k::sgd::SgdParams::paper(0.01, 0.9, 5e-4);
    k::sgd::sgd_update(&p, &mut ww, &mut wv, &sg);
    check("sgd w", &sw, &ww, 0.0);
    check("sgd v", &sv, &wv, 0.0);

    // label smoothing 0.1: the gradient against the smoothed target
    let mut dz = vec![0f32; rows * classes];
    run(16, &[ptr(&mut wprobs), uptr(&mut labels), ptr(&mut dz)]);
    let mut wdz = vec![0f32; rows * classes];
    k::softmax_xent::softmax_xent_backward_smoothed(rows, classes, &wprobs, &labels, 0.1, &mut wdz);
    check("smoothed softmax grad", &dz, &wdz, 0.0);

    // Nesterov, and Caffe's bias multipliers (lr 2, decay 0)
    for (idx, p) in [
        (
            17,
            k::sgd::SgdParams {
                nesterov: true,
                ..k::sgd::SgdParams::paper(0.01, 0.9, 5e-4)
            },
        ),
        (
            18,
            k::sgd::SgdParams {
                lr_mult: 2.0,
                decay_mult: 0.0,
                ..k::sgd::SgdParams::paper(0.01, 0.8, 5e-4)
            },
        ),
    ] {
        let (mut sw, mut sv, mut sg) = (
            rand(20 + idx as u64, total, 1.0),
            rand(30 + idx as u64, total, 0.1),
            rand(40 + idx as u64, total, 1.0),
        );
        let (mut ww, mut wv) = (sw.clone(), sv.clone());
        let (mut pw, mut pv) = (sw.clone(), sv.clone());
        run(
            idx,
            &[ptr(&mut sw), ptr(&mut sv), ptr(&mut sg), Val::F64(0.01)],
        );
        k::sgd::sgd_update(&p, &mut ww, &mut wv, &sg);
        check(&format!("sgd {p:?} w"), &sw, &ww, 0.0);
        check(&format!("sgd {p:?} v"), &sv, &wv, 0.0);
        // The setting made a difference: the paper's step lands elsewhere.
        let paper = k::sgd::SgdParams::paper(0.01, p.momentum, 5e-4);
        k::sgd::sgd_update(&paper, &mut pw, &mut pv, &sg);
        assert!(pw.iter().zip(&sw).filter(|(a, b)| a != b).count() > total / 2);
    }
}

/// The whole step with Nesterov momentum, label smoothing and Caffe's
/// multipliers (biases at twice the rate without decay, `fc8` at ten
/// times), unfused and fused, against `CpuExec` running the same graph.
#[test]
fn training_step_with_the_new_settings_matches_cpu_exec() {
    if !have_gxx() {
        eprintln!("skipped: no g++ to compile the emulated CUDA");
        return;
    }
    let src = std::fs::read_to_string("networks/alexnet-fmnist.net").unwrap();
    let old = "sgd { lr: 0.01, momentum: 0.9, weight_decay: 0.0005 }";
    assert!(src.contains(old));
    let src = src.replace(
        old,
        "sgd { lr: 0.01, momentum: 0.9, weight_decay: 0.0005, nesterov: true }\n  \
         label_smoothing: 0.1\n  \
         multipliers { bias { lr: 2, decay: 0 } fc8 { lr: 10 } }",
    );
    step_matches("alexnet-fmnist-settings", &src, false, 151);
    step_matches("alexnet-fmnist-settings-fused", &src, true, 100);
}

#[test]
fn training_step_matches_cpu_exec() {
    if !have_gxx() {
        eprintln!("skipped: no g++ to compile the emulated CUDA");
        return;
    }
    let src = std::fs::read_to_string("networks/alexnet-fmnist.net").unwrap();
    let in_place = step_matches("alexnet-fmnist", &src, false, 151);
    // The plan runs the elementwise ops in place, and the step still matches.
    for stem in ["relu", "relu_grad", "dropout", "add"] {
        assert!(
            in_place
                .iter()
                .any(|k| k.rsplit_once('_').is_some_and(|(s, _)| s == stem)),
            "no {stem} in place: {in_place:?}"
        );
    }
}

/// Convolutions in chunks of images match the CPU executor: unfused
/// under a workspace budget below one image (a chunk per image), fused
/// under one that takes two images of conv1, one of conv2 and the whole
/// batch of the later layers (`conv_relu`'s bias gradient accumulated
/// over chunks, weight gradients through `beta = 1` GEMMs).
#[test]
fn chunked_training_steps_match_cpu_exec() {
    if !have_gxx() {
        eprintln!("skipped: no g++ to compile the emulated CUDA");
        return;
    }
    let src = std::fs::read_to_string("networks/alexnet-fmnist.net").unwrap();
    for (tag, fused, budget, min) in [("chunk1", false, 1, 151), ("chunk2", true, 250_000, 150)] {
        let opts = netc::backend::cuda::Options {
            conv_workspace: budget,
            ..Default::default()
        };
        step_matches_opts(tag, &src, fused, min, opts);
        // The step did run in chunks: image offsets, accumulating GEMMs.
        let c = netc::frontend::compile(&src).unwrap();
        let mut g = c.module.graph.clone();
        netc::passes::autodiff::autodiff(&mut g, &c.module.train.sgd).unwrap();
        if fused {
            netc::passes::fuse::fuse(&mut g).unwrap();
        }
        let p = netc::backend::cuda::generate_opts(&g, 4, opts).unwrap();
        use netc::backend::cuda::program::{Arg, Step};
        let offsets = p.steps.iter().any(
            |s| matches!(s, Step::Launch(l) if l.args.iter().any(|a| matches!(a, Arg::At(..)))),
        );
        let acc = p
            .steps
            .iter()
            .any(|s| matches!(s, Step::Gemm(gm) if gm.beta == 1.0));
        assert!(offsets && acc, "{tag}: not chunked");
    }
}

/// The same network with strided first and second convolutions (as
/// AlexNet's stride 4), so im2col and col2im see a stride above 1.
#[test]
fn strided_training_step_matches_cpu_exec() {
    if !have_gxx() {
        eprintln!("skipped: no g++ to compile the emulated CUDA");
        return;
    }
    let src = std::fs::read_to_string("networks/alexnet-fmnist.net")
        .unwrap()
        .replace(
            "conv(image, filters: 32, size: 5, pad: 2)",
            "conv(image, filters: 32, size: 5, stride: 2, pad: 2)",
        )
        .replace(
            "conv(conv1, filters: 64, size: 3, pad: 1)",
            "conv(conv1, filters: 64, size: 3, stride: 2, pad: 1)",
        )
        .replace(
            "conv(conv4, filters: 64, size: 3, pad: 1) -> relu -> pool",
            "conv(conv4, filters: 64, size: 3, pad: 1) -> relu",
        );
    assert!(src.contains("stride: 2, pad: 2") && src.contains("stride: 2, pad: 1"));
    step_matches("strided", &src, false, 151);
}

#[test]
fn fused_training_step_matches_cpu_exec() {
    if !have_gxx() {
        eprintln!("skipped: no g++ to compile the emulated CUDA");
        return;
    }
    let src = std::fs::read_to_string("networks/alexnet-fmnist.net").unwrap();
    step_matches("alexnet-fmnist-fused", &src, true, 150);
}

/// Fused ops `alexnet-fmnist` has none of: a ReLU and dropout after a
/// pooling read by both towers (backward, `add` → `dropout_grad` →
/// `relu_grad` becomes one `grad_chain`), and a `dense_relu` without dropout.
const CHAIN: &str = "
network chain {
  input image: [2, 9, 9]
  input label: class(3)
  towers 2 {
    c1 = conv(image, filters: 8, size: 3, pad: 1) -> maxpool(size: 3, stride: 2) -> relu -> dropout(rate: 0.3)
    c2 = conv(across(c1), filters: 8, size: 3, pad: 1) -> relu
  }
  f = dense(across(c2), units: 16) -> relu
  out = dense(f, units: 3)
  loss = softmax_xent(out, label)
}
train { init { weight: he  bias: 0.1 } }
";

/// An LRN plane of 112 × 112, larger than the fused kernel's shared
/// memory: `lrn_maxpool` runs as the LRN kernel then the pooling kernel.
const WIDE: &str = "
network wide {
  input image: [1, 112, 112]
  input label: class(3)
  c1 = conv(image, filters: 3, size: 3, pad: 1) -> relu -> lrn(size: 3, alpha: 0.1, beta: 0.75, k: 2) -> maxpool(size: 3, stride: 2)
  out = dense(c1, units: 3)
  loss = softmax_xent(out, label)
}
train { init { weight: he  bias: 0.1 } }
";

#[test]
fn fused_small_steps_match_cpu_exec() {
    if !have_gxx() {
        eprintln!("skipped: no g++ to compile the emulated CUDA");
        return;
    }
    for (tag, src, kernels) in [
        (
            "chain",
            CHAIN,
            &["grad_chain", "bias_relu_epilogue", "relu_grad"][..],
        ),
        (
            "wide",
            WIDE,
            &["lrn_fwd", "maxpool_fwd", "lrn_maxpool_bwd"][..],
        ),
    ] {
        let c = netc::frontend::compile(src).unwrap_or_else(|d| panic!("{tag}: {}", d.message));
        let mut g = c.module.graph.clone();
        netc::passes::autodiff::autodiff(&mut g, &c.module.train.sgd).unwrap();
        netc::passes::fuse::fuse(&mut g).unwrap();
        let p = netc::backend::cuda::generate(&g, 4).unwrap();
        for stem in kernels {
            assert!(
                p.kernels
                    .iter()
                    .any(|k| k.name.rsplit_once('_').is_some_and(|(s, _)| s == *stem)),
                "{tag}: no {stem} kernel"
            );
        }
        let in_place = step_matches(&format!("{tag}-fused"), src, true, 10);
        if tag == "chain" {
            assert!(
                in_place.iter().any(|k| k.starts_with("grad_chain_")),
                "{in_place:?}"
            );
        }
    }
    // The layout without reuse runs the same step to the same values.
    step_matches_in("chain-separate", CHAIN, true, 10, Layout::Separate);
}

/// Padding wider than the kernel: im2col and col2im read whole windows of
/// padding, unfused and fused, strided and not.
const WIDE_PAD: &str = "
network wide_pad {
  input image: [2, 6, 6]
  input label: class(3)
  c1 = conv(image, filters: 4, size: 3, pad: 4) -> relu -> maxpool(size: 3, stride: 2)
  c2 = conv(c1, filters: 4, size: 2, stride: 2, pad: 3) -> relu
  out = dense(c2, units: 3)
  loss = softmax_xent(out, label)
}
train { init { weight: he  bias: 0.1 } }
";

#[test]
fn padding_wider_than_the_kernel_steps_match_cpu_exec() {
    if !have_gxx() {
        eprintln!("skipped: no g++ to compile the emulated CUDA");
        return;
    }
    step_matches("wide-pad", WIDE_PAD, false, 10);
    step_matches("wide-pad-fused", WIDE_PAD, true, 10);
}

/// Every layer kind, for the NaN test.
const EVERY_OP: &str = "
network every_op {
  input image: [2, 9, 9]
  input label: class(3)
  towers 2 {
    c1 = conv(image, filters: 4, size: 3, pad: 1) -> relu -> lrn(size: 3, alpha: 0.1, beta: 0.75, k: 2) -> maxpool(size: 3, stride: 2)
    f = dense(across(c1), units: 8) -> relu -> dropout(rate: 0.5)
  }
  out = dense(across(f), units: 3)
  loss = softmax_xent(out, label)
}
train { init { weight: he  bias: 0.1 } }
";

/// A NaN pixel reaches the loss through the generated CUDA step, in the
/// same elements as on the CPU, unfused and fused (ReLU, max pooling and
/// dropout dropped it).
#[test]
fn nan_propagates_through_the_cuda_step_as_on_the_cpu() {
    if !have_gxx() {
        eprintln!("skipped: no g++ to compile the emulated CUDA");
        return;
    }
    assert!(nan_step_matches("nan", EVERY_OP, false) >= 8);
    assert!(nan_step_matches("nan-fused", EVERY_OP, true) >= 4);
}

/// The kernels of the layer types added after AlexNet's, each against the
/// CPU op: `tanh`, `sigmoid`, `leaky_relu` and their gradients (from the
/// output), `flatten`'s copy, padded max pooling (forward with argmax,
/// backward), average pooling with padding in the divisor, the global
/// average pool (the CPU's 8-lane sum) and `softmax`.
#[test]
fn new_layer_kernels_match_the_cpu_ops() {
    use netc::backend::cuda::generate::kernels::{ActFn, Pool};
    if !have_gxx() {
        eprintln!("skipped: no g++ to compile the emulated CUDA");
        return;
    }
    let (n, c, h, w) = (2usize, 3usize, 7usize, 6usize);
    let total = n * c * h * w;
    let acts = [ActFn::Tanh, ActFn::Sigmoid, ActFn::LeakyRelu(0.05)];
    let cpu = |f: ActFn| match f {
        ActFn::Tanh => k::act::Pointwise::Tanh,
        ActFn::Sigmoid => k::act::Pointwise::Sigmoid,
        ActFn::LeakyRelu(s) => k::act::Pointwise::LeakyRelu(s),
    };
    let pools = [
        Pool {
            planes: n * c,
            h,
            w,
            size: 3,
            stride: 2,
            pad: 1,
        },
        Pool {
            planes: n * c,
            h,
            w,
            size: 2,
            stride: 1,
            pad: 1,
        },
        Pool {
            planes: n * c,
            h,
            w,
            size: 2,
            stride: 2,
            pad: 0,
        },
    ];
    let mut table = Vec::new();
    for f in acts {
        table.push(Kernel::Act { total, f });
        table.push(Kernel::ActGrad { total, f });
    }
    table.push(Kernel::Copy { total });
    for p in pools {
        table.push(Kernel::MaxPoolPadFwd(p));
        table.push(Kernel::MaxPoolPadBwd(p));
        table.push(Kernel::AvgPoolFwd(p));
        table.push(Kernel::AvgPoolBwd(p));
    }
    table.push(Kernel::GlobalAvgPoolFwd {
        planes: n * c,
        hw: h * w,
    });
    table.push(Kernel::GlobalAvgPoolBwd {
        planes: n * c,
        hw: h * w,
    });
    table.push(Kernel::Softmax {
        n: 300,
        classes: 13,
    });
    let mut src = Source::default();
    let ones: Vec<One> = table
        .iter()
        .map(|kern| {
            let s = spec(kern);
            let idx = src.add(&s);
            One { spec: s, idx }
        })
        .collect();
    let source = format!("{PRELUDE}{}", src.text);
    let emu = build("new-layer-kernels", &source, &src.kernels);
    let run = |i: usize, vals: &[Val]| {
        let (g, b) = ones[i].spec.grid_block();
        emu.launch(ones[i].idx, g, b, vals);
    };
    let tol = 1e-5;
    let mut next = 0;
    let mut take = || {
        next += 1;
        next - 1
    };

    let mut x = rand(21, total, 3.0);
    let mut dy = rand(22, total, 1.0);
    for f in acts {
        let (mut y, mut want) = (vec![0f32; total], vec![0f32; total]);
        run(take(), &[ptr(&mut x), ptr(&mut y)]);
        k::act::forward(cpu(f), &x, &mut want);
        check(&format!("{f:?} fwd"), &y, &want, tol);
        let (mut dx, mut wdx) = (vec![0f32; total], vec![0f32; total]);
        run(take(), &[ptr(&mut want), ptr(&mut dy), ptr(&mut dx)]);
        k::act::backward(cpu(f), &want, &dy, &mut wdx);
        check(&format!("{f:?} grad"), &dx, &wdx, tol);
    }
    let mut y = vec![0f32; total];
    run(take(), &[ptr(&mut x), ptr(&mut y)]);
    check("copy", &y, &x, 0.0);

    for p in pools {
        let s = k::avgpool::PadPool {
            n,
            c,
            h,
            w,
            size: p.size,
            stride: p.stride,
            pad: p.pad,
        };
        let outn = s.output().len();
        let (mut py, mut pa) = (vec![0f32; outn], vec![0u32; outn]);
        run(take(), &[ptr(&mut x), ptr(&mut py), uptr(&mut pa)]);
        let (mut wpy, mut wpa) = (vec![0f32; outn], vec![0u32; outn]);
        k::avgpool::maxpool_pad_forward(&s, &x, &mut wpy, &mut wpa);
        check(&format!("padded maxpool fwd {p:?}"), &py, &wpy, 0.0);
        assert_eq!(pa, wpa, "padded maxpool argmax {p:?}");
        let mut pdy = rand(23, outn, 1.0);
        let (mut pdx, mut wpdx) = (vec![0f32; total], vec![0f32; total]);
        run(take(), &[ptr(&mut pdy), uptr(&mut pa), ptr(&mut pdx)]);
        k::avgpool::maxpool_pad_backward(&s, &pdy, &wpa, &mut wpdx);
        check(&format!("padded maxpool bwd {p:?}"), &pdx, &wpdx, tol);

        let mut ay = vec![0f32; outn];
        run(take(), &[ptr(&mut x), ptr(&mut ay)]);
        let mut way = vec![0f32; outn];
        k::avgpool::avgpool_forward(&s, &x, &mut way);
        check(&format!("avgpool fwd {p:?}"), &ay, &way, tol);
        let (mut adx, mut wadx) = (vec![0f32; total], vec![0f32; total]);
        run(take(), &[ptr(&mut pdy), ptr(&mut adx)]);
        k::avgpool::avgpool_backward(&s, &pdy, &mut wadx);
        check(&format!("avgpool bwd {p:?}"), &adx, &wadx, tol);
    }

    let planes = n * c;
    let (mut gy, mut wgy) = (vec![0f32; planes], vec![0f32; planes]);
    run(take(), &[ptr(&mut x), ptr(&mut gy)]);
    k::avgpool::global_avgpool_forward(h * w, &x, &mut wgy);
    check("global_avgpool fwd", &gy, &wgy, 0.0);
    let mut gdy = rand(24, planes, 1.0);
    let (mut gdx, mut wgdx) = (vec![0f32; total], vec![0f32; total]);
    run(take(), &[ptr(&mut gdy), ptr(&mut gdx)]);
    k::avgpool::global_avgpool_backward(h * w, &gdy, &mut wgdx);
    check("global_avgpool bwd", &gdx, &wgdx, 0.0);

    let (rows, classes) = (300usize, 13usize);
    let mut z = rand(25, rows * classes, 4.0);
    let (mut p, mut wp) = (vec![0f32; rows * classes], vec![0f32; rows * classes]);
    run(take(), &[ptr(&mut z), ptr(&mut p)]);
    k::softmax::softmax_forward(classes, &z, &mut wp);
    check("softmax", &p, &wp, tol);
    assert_eq!(next, ones.len());
}

/// A whole training step of a small network of every new layer type
/// (`tanh`, padded `maxpool`, `sigmoid`, padded `avgpool`, `leaky_relu`,
/// `global_avgpool`, `flatten`, and a `softmax` output), unfused and fused,
/// against `CpuExec`; the activations run in place.
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
train { init { weight: he  bias: 0.1 } }
";

#[test]
fn new_layers_training_step_matches_cpu_exec() {
    if !have_gxx() {
        eprintln!("skipped: no g++ to compile the emulated CUDA");
        return;
    }
    let in_place = step_matches("new-layers", NEW_LAYERS, false, 20);
    eprintln!("in place: {in_place:?}");
    step_matches("new-layers-fused", NEW_LAYERS, true, 20);
}

/// The fused activations `NEW_LAYERS` lacks (`dense_sigmoid`,
/// `dense_leaky_relu`, and a `conv_leaky_relu` of slope 0) and LeNet-5
/// (`conv_tanh`, `dense_tanh`), each a whole fused step against
/// `CpuExec` running the same fused graph; the kernels that apply each
/// activation in the GEMM epilogue and its derivative in the backward run.
const FUSED_ACTS: &str = "
network fused_acts {
  input image: [2, 9, 9]
  input label: class(3)
  c1 = conv(image, filters: 4, size: 3, pad: 1) -> leaky_relu(slope: 0) -> maxpool(size: 3, stride: 2)
  c2 = conv(c1, filters: 4, size: 3, pad: 1) -> sigmoid
  f1 = dense(c2, units: 8) -> sigmoid
  f2 = dense(f1, units: 6) -> leaky_relu(slope: 0.3)
  out = dense(f2, units: 3)
  loss = softmax_xent(out, label)
}
train { init { weight: xavier  bias: 0.1 } }
";

#[test]
fn fused_activation_steps_match_cpu_exec() {
    if !have_gxx() {
        eprintln!("skipped: no g++ to compile the emulated CUDA");
        return;
    }
    let lenet = std::fs::read_to_string("networks/lenet5.net").unwrap();
    for (tag, src, kernels) in [
        (
            "fused-acts",
            FUSED_ACTS,
            &[
                "bias_leaky_relu_epilogue",
                "bias_sigmoid_epilogue",
                "to_channel_major_leaky_relu",
                "to_channel_major_sigmoid",
                "sigmoid_grad",
                "leaky_relu_grad",
            ][..],
        ),
        (
            "lenet5",
            lenet.as_str(),
            &["bias_tanh_epilogue", "to_channel_major_tanh", "tanh_grad"][..],
        ),
        (
            "new-layers",
            NEW_LAYERS,
            &[
                "bias_tanh_epilogue",
                "bias_sigmoid_epilogue",
                "bias_leaky_relu_epilogue",
                "to_channel_major_sigmoid",
            ][..],
        ),
    ] {
        let c = netc::frontend::compile(src).unwrap_or_else(|d| panic!("{tag}: {}", d.message));
        let mut g = c.module.graph.clone();
        netc::passes::autodiff::autodiff(&mut g, &c.module.train.sgd).unwrap();
        let report = netc::passes::fuse::fuse(&mut g).unwrap();
        assert!(report.fired["conv+act"] > 0, "{tag}: {report}");
        let p = netc::backend::cuda::generate(&g, 4).unwrap();
        for stem in kernels {
            assert!(
                p.kernels
                    .iter()
                    .any(|k| k.name.rsplit_once('_').is_some_and(|(s, _)| s == *stem)),
                "{tag}: no {stem} kernel"
            );
        }
        // No unfused activation kernel is left in the forward pass.
        for stem in ["tanh", "sigmoid", "leaky_relu"] {
            assert!(
                !p.kernels
                    .iter()
                    .any(|k| k.name.rsplit_once('_').is_some_and(|(s, _)| s == stem)),
                "{tag}: an unfused {stem}"
            );
        }
        step_matches(&format!("{tag}-fused"), src, true, 10);
    }
}

/// The batchnorm kernels (statistics, normalisation with the batch's or
/// given statistics, the three gradients, the running update) and the
/// epilogue of a layer without a bias, against the CPU's ops, for images
/// (`p` positions a channel, fewer and more values a channel than a
/// block's threads) and for vectors (`p = 1`).
#[test]
fn batchnorm_and_no_bias_kernels_match_the_cpu_ops() {
    use netc::backend::cuda::generate::kernels::Epilogue;
    if !have_gxx() {
        eprintln!("skipped: no g++ to compile the emulated CUDA");
        return;
    }
    let shapes = [(3usize, 5usize, 37usize), (4, 3, 100), (300, 4, 1)];
    let (eps, momentum) = (1e-3, 0.2);
    let mut table = Vec::new();
    for &(n, c, p) in &shapes {
        table.push(Kernel::BnStats { n, c, p });
        table.push(Kernel::BnNormalise { n, c, p, eps });
        table.push(Kernel::BnGradInput { n, c, p, eps });
        table.push(Kernel::BnGradGamma { n, c, p, eps });
        table.push(Kernel::BiasGrad {
            n,
            f: c,
            p,
            acc: false,
        });
        table.push(Kernel::RunningUpdate {
            c,
            momentum,
            m: n * p,
        });
    }
    let (n, f, p) = (3usize, 4usize, 10usize);
    for act in [Epilogue::None, Epilogue::Relu] {
        table.push(Kernel::NoBiasEpilogue { n, f, p, act });
    }
    let mut src = Source::default();
    let ones: Vec<One> = table
        .iter()
        .map(|kern| {
            let s = spec(kern);
            let idx = src.add(&s);
            One { spec: s, idx }
        })
        .collect();
    let source = format!("{PRELUDE}{}", src.text);
    let emu = build("batchnorm-kernels", &source, &src.kernels);
    let run = |i: usize, vals: &[Val]| {
        let (g, b) = ones[i].spec.grid_block();
        emu.launch(ones[i].idx, g, b, vals);
    };
    let tol = 1e-5;
    for (j, &(n, c, p)) in shapes.iter().enumerate() {
        let at = j * 6;
        let s = k::batchnorm::BnShape { n, c, p };
        let tag = format!("[{n}, {c}, {p}]");
        let total = s.len();
        // Values away from zero mean, so the two-pass variance matters.
        let mut x: Vec<f32> = rand(40 + j as u64, total, 2.0)
            .iter()
            .map(|v| v + 1.5)
            .collect();
        let mut gamma: Vec<f32> = rand(50, c, 0.5).iter().map(|v| v + 1.0).collect();
        let mut beta = rand(51, c, 0.5);
        let mut dy = rand(52, total, 1.0);
        let (mut mean, mut var) = (vec![0f32; c], vec![0f32; c]);
        run(at, &[ptr(&mut x), ptr(&mut mean), ptr(&mut var)]);
        let (mut wm, mut wv) = (vec![0f32; c], vec![0f32; c]);
        k::batchnorm::batch_stats(&s, &x, &mut wm, &mut wv);
        check(&format!("bn mean {tag}"), &mean, &wm, tol);
        check(&format!("bn var {tag}"), &var, &wv, tol);
        let (mut y, mut wy) = (vec![0f32; total], vec![0f32; total]);
        run(
            at + 1,
            &[
                ptr(&mut x),
                ptr(&mut gamma),
                ptr(&mut beta),
                ptr(&mut wm),
                ptr(&mut wv),
                ptr(&mut y),
            ],
        );
        k::batchnorm::normalise(&s, eps, &x, &gamma, &beta, &wm, &wv, &mut wy);
        check(&format!("bn normalise {tag}"), &y, &wy, tol);
        let (mut dx, mut wdx) = (vec![0f32; total], vec![0f32; total]);
        run(
            at + 2,
            &[
                ptr(&mut x),
                ptr(&mut gamma),
                ptr(&mut wm),
                ptr(&mut wv),
                ptr(&mut dy),
                ptr(&mut dx),
            ],
        );
        k::batchnorm::backward_input(&s, eps, &x, &gamma, &wm, &wv, &dy, &mut wdx);
        check(&format!("bn grad input {tag}"), &dx, &wdx, tol);
        let (mut dg, mut wdg) = (vec![0f32; c], vec![0f32; c]);
        run(
            at + 3,
            &[
                ptr(&mut x),
                ptr(&mut wm),
                ptr(&mut wv),
                ptr(&mut dy),
                ptr(&mut dg),
            ],
        );
        k::batchnorm::grad_gamma(&s, eps, &x, &wm, &wv, &dy, &mut wdg);
        check(&format!("bn grad gamma {tag}"), &dg, &wdg, tol);
        let (mut db, mut wdb) = (vec![0f32; c], vec![0f32; c]);
        run(at + 4, &[ptr(&mut dy), ptr(&mut db)]);
        k::batchnorm::grad_beta(&s, &dy, &mut wdb);
        check(&format!("bn grad beta {tag}"), &db, &wdb, tol);
        let mut rm = rand(53, c, 1.0);
        let mut rv: Vec<f32> = rand(54, c, 0.5).iter().map(|v| v + 1.0).collect();
        let (mut wrm, mut wrv) = (rm.clone(), rv.clone());
        run(
            at + 5,
            &[ptr(&mut rm), ptr(&mut rv), ptr(&mut wm), ptr(&mut wv)],
        );
        k::batchnorm::update_running(momentum, s.m(), &wm, &wv, &mut wrm, &mut wrv);
        check(&format!("running mean {tag}"), &rm, &wrm, tol);
        check(&format!("running var {tag}"), &rv, &wrv, tol);
    }
    // No bias: y[n][f][p] = act(tmp[f][n][p]).
    let at = shapes.len() * 6;
    let mut tmp = rand(55, n * f * p, 1.0);
    for (i, relu) in [false, true].into_iter().enumerate() {
        let mut y = vec![0f32; n * f * p];
        run(at + i, &[ptr(&mut tmp), ptr(&mut y)]);
        let mut want = vec![0f32; n * f * p];
        for img in 0..n {
            for ch in 0..f {
                for q in 0..p {
                    let v = tmp[(ch * n + img) * p + q];
                    want[(img * f + ch) * p + q] = if relu { v.max(0.0) } else { v };
                }
            }
        }
        check(&format!("no-bias epilogue relu={relu}"), &y, &want, 0.0);
    }
    assert!(
        src.kernels
            .iter()
            .any(|k| k.name.starts_with("relu_epilogue"))
            && src.kernels.iter().any(|k| k.name.starts_with("epilogue")),
        "the no-bias epilogues are named without `bias_`"
    );
}

/// Every conv form beyond the plain one, in a whole training step against
/// `CpuExec`: groups with square taps (the plain im2col, a GEMM per
/// group), dilated and grouped without a bias, a rectangular kernel with
/// per-axis stride and padding, a biasless 1×1 convolution; unfused,
/// fused (`conv_relu` of each form), and in chunks of one image (grouped
/// GEMMs at chunk offsets, accumulated weight gradients).
const CONV_FORMS: &str = "
network conv_forms {
  input image: [4, 11, 11]
  input label: class(3)
  g = conv(image, filters: 6, size: 3, pad: 1, groups: 2) -> relu
  d = conv(g, filters: 6, size: 3, pad: 2, dilation: 2, groups: 3, bias: false) -> relu
  r = conv(d, filters: 5, size: [3, 5], stride: [2, 1], pad: [1, 2]) -> relu
  nb = conv(r, filters: 4, size: 1, bias: false)
  out = dense(nb, units: 3)
  loss = softmax_xent(out, label)
}
train { init { weight: he  bias: 0.1 } }
";

#[test]
fn conv_forms_training_steps_match_cpu_exec() {
    use netc::backend::cuda::program::Step;
    if !have_gxx() {
        eprintln!("skipped: no g++ to compile the emulated CUDA");
        return;
    }
    step_matches("conv-forms", CONV_FORMS, false, 20);
    step_matches("conv-forms-fused", CONV_FORMS, true, 16);
    let opts = netc::backend::cuda::Options {
        conv_workspace: 1,
        ..Default::default()
    };
    step_matches_opts("conv-forms-chunked", CONV_FORMS, true, 16, opts);
    // The program does use the general kernels and grouped GEMMs.
    let c = netc::frontend::compile(CONV_FORMS).unwrap();
    let mut g = c.module.graph.clone();
    netc::passes::autodiff::autodiff(&mut g, &c.module.train.sgd).unwrap();
    let p = netc::backend::cuda::generate(&g, 4).unwrap();
    for stem in ["im2col_general", "col2im_general", "epilogue", "im2col"] {
        assert!(
            p.kernels
                .iter()
                .any(|k| k.name.rsplit_once('_').is_some_and(|(s, _)| s == stem)),
            "no {stem}"
        );
    }
    assert!(
        p.steps
            .iter()
            .any(|s| matches!(s, Step::Gemm(gm) if gm.a_at > 0 && gm.c_at > 0))
    );
}

/// A small residual network with batchnorm (after biasless convolutions,
/// a grouped and a dilated one, and after a dense layer) and `add`
/// (`tests/nets/residual-bn.net`), and the ResNet and VGG networks for
/// Fashion-MNIST: a whole training step, unfused and fused, against
/// `CpuExec` (batch statistics, all three batchnorm gradients, the
/// updated running statistics).
#[test]
fn batchnorm_training_steps_match_cpu_exec() {
    if !have_gxx() {
        eprintln!("skipped: no g++ to compile the emulated CUDA");
        return;
    }
    for (tag, path, min) in [
        ("residual-bn", "tests/nets/residual-bn.net", 40),
        ("resnet-fmnist", "networks/resnet-fmnist.net", 80),
        ("vgg-fmnist", "networks/vgg-fmnist.net", 40),
    ] {
        // Biases start at 0.1, not 0: the dense layer feeding a batchnorm in
        // `residual-bn` has a bias whose gradient is zero but for rounding,
        // and a zero bias would be updated to that noise alone.
        let src = std::fs::read_to_string(path)
            .unwrap()
            .replace("bias: 0\n", "bias: 0.1\n")
            .replace("bias: 0 }", "bias: 0.1 }");
        step_matches(tag, &src, false, min);
        step_matches(&format!("{tag}-fused"), &src, true, min / 2);
    }
}

/// The evaluation program of `tests/nets/residual-bn.net` after a CPU
/// training step (so the running statistics are no longer their initial
/// 0 and 1) normalises with the running statistics, as
/// `CpuExec::eval_batch` does: logits and loss to 1e-4.
#[test]
fn batchnorm_evaluation_matches_cpu_eval() {
    use netc::backend::cpu::exec::CpuExec;
    use netc::backend::cuda::generate::buffers::node_key;
    use netc::ir::{Op, ParamRole};
    if !have_gxx() {
        eprintln!("skipped: no g++ to compile the emulated CUDA");
        return;
    }
    let src = std::fs::read_to_string("tests/nets/residual-bn.net").unwrap();
    for fused in [false, true] {
        let c = netc::frontend::compile(&src).unwrap();
        let mut g = c.module.graph.clone();
        netc::passes::autodiff::autodiff(&mut g, &c.module.train.sgd).unwrap();
        if fused {
            netc::passes::fuse::fuse(&mut g).unwrap();
        }
        let batch = 4;
        let p = netc::backend::cuda::generate::forward::generate(&g, batch).unwrap();
        assert!(p.kernels.iter().all(|k| !k.name.starts_with("bn_stats")));
        let tag = if fused { "bn-eval-fused" } else { "bn-eval" };
        let emu = build(tag, &p.source, &p.kernels);
        let mut cpu = CpuExec::new(g.clone(), 5).unwrap();
        let images = rand(61, p.buffers[p.image].elems, 1.0);
        let classes = (p.buffers[p.logits].elems / batch) as u64;
        let labels: Vec<u32> = (0..batch as u64)
            .map(|i| (rng::bits(9, 6, i) % classes) as u32)
            .collect();
        cpu.train_step(&images, &labels, 0.05, 0).unwrap();
        let mut moved = 0;
        let mut mem = vec![f32::NAN; (p.bytes() / 4) as usize];
        for n in g.node_ids() {
            let node = g.node(n);
            if let Some(b) = p.buffer(&node_key(&g, n))
                && node.op.is_param()
            {
                view_mut(&p, &mut mem, b).copy_from_slice(cpu.value(n));
                if let Op::Param {
                    role: ParamRole::RunningMean,
                    ..
                } = node.op
                {
                    moved += cpu.value(n).iter().filter(|v| **v != 0.0).count();
                }
            }
        }
        assert!(moved > 0, "the running means did not move");
        let images = rand(62, p.buffers[p.image].elems, 1.0);
        view_mut(&p, &mut mem, p.image).copy_from_slice(&images);
        let bits: Vec<f32> = labels.iter().map(|&l| f32::from_bits(l)).collect();
        view_mut(&p, &mut mem, p.labels).copy_from_slice(&bits);
        run_step(&emu, &p, &mut mem, 99, 0.0, |_, _| {});
        let want = cpu.eval_batch(&images, &labels).unwrap();
        check(
            &format!("{tag} logits"),
            view(&p, &mem, p.logits),
            cpu.logits(),
            1e-4,
        );
        let loss = view(&p, &mem, p.loss)[0] as f64;
        assert!(
            (loss - want.loss).abs() <= 1e-4 * want.loss.abs().max(1.0),
            "{tag}: loss {loss} against {}",
            want.loss
        );
    }
}
