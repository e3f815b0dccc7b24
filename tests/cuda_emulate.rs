//! The generated CUDA C, compiled as C++ with the system `g++` against
//! `tests/cuda_shim/shim.h` and run on the CPU: each kernel against the CPU
//! backend's op on fresh random inputs (1e-5 relative to the output's
//! scale), then a whole training step of `networks/alexnet-fmnist.net`
//! (cuBLAS's sgemm emulated by a naive column-major GEMM) against
//! `CpuExec` with the same seed, parameters and dropout masks: loss, every
//! value, gradient, updated weight and velocity (1e-4 relative to each
//! buffer's scale). Skipped with a message when `g++` is missing.

use std::ffi::{CString, c_void};
use std::path::{Path, PathBuf};
use std::process::Command;

use netc::backend::cpu::exec::CpuExec;
use netc::backend::cpu::kernels as k;
use netc::backend::cuda::kernels::{Kernel, spec};
use netc::backend::cuda::program::{Arg, BufKind, CudaProgram, DType, KernelDecl, ParamTy, Step};
use netc::backend::cuda::render::{PRELUDE, Source};
use netc::backend::cuda::{self, buffers::node_key};
use netc::frontend;
use netc::passes::autodiff::autodiff;
use netc::rng;

type LaunchFn = unsafe extern "C" fn(*const i8, u32, u32, *mut *mut c_void) -> i32;
type SgemmFn = unsafe extern "C" fn(
    i32,
    i32,
    i64,
    i64,
    i64,
    f32,
    *const f32,
    i64,
    *const f32,
    i64,
    f32,
    *mut f32,
    i64,
);

struct Emu {
    lib: libloading::Library,
    kernels: Vec<KernelDecl>,
}

/// A kernel argument value.
enum Val {
    Ptr(*mut c_void),
    U64(u64),
    F64(f64),
}

fn have_gxx() -> bool {
    Command::new("g++").arg("--version").output().is_ok()
}

/// Compiles `source` and a dispatcher over `kernels` into a shared library.
fn build(tag: &str, source: &str, kernels: &[KernelDecl]) -> Emu {
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join(format!("cuda-emu-{tag}"));
    std::fs::create_dir_all(&dir).unwrap();
    let mut d = String::from("#include \"shim.h\"\n");
    d.push_str(source);
    d.push_str("\nextern \"C\" int netc_launch(const char* name, unsigned grid, unsigned block, void** a) {\n");
    for kd in kernels {
        let args: Vec<String> = kd
            .params
            .iter()
            .enumerate()
            .map(|(i, (t, _))| match t {
                ParamTy::InF32 | ParamTy::OutF32 => format!("*(float**)a[{i}]"),
                ParamTy::InU32 | ParamTy::OutU32 => format!("*(unsigned int**)a[{i}]"),
                ParamTy::U64 => format!("*(unsigned long long*)a[{i}]"),
                ParamTy::F64 => format!("*(double*)a[{i}]"),
            })
            .collect();
        d.push_str(&format!(
            "  if (std::strcmp(name, \"{0}\") == 0) {{ netc_run(grid, block, {1}, [&] {{ {0}({2}); }}); return 0; }}\n",
            kd.name,
            kd.sync,
            args.join(", ")
        ));
    }
    d.push_str("  return -1;\n}\n");
    let cpp = dir.join("driver.cpp");
    std::fs::write(&cpp, d).unwrap();
    let so = dir.join("libemu.so");
    let shim = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/cuda_shim");
    let out = Command::new("g++")
        .args([
            "-std=c++17",
            "-O2",
            "-fPIC",
            "-shared",
            "-ffp-contract=off",
            "-pthread",
        ])
        .arg("-I")
        .arg(&shim)
        .arg("-o")
        .arg(&so)
        .arg(&cpp)
        .output()
        .expect("g++ runs");
    assert!(
        out.status.success(),
        "g++ failed on {}:\n{}",
        cpp.display(),
        String::from_utf8_lossy(&out.stderr)
    );
    // SAFETY: a library we just built; its initialisers do nothing unusual.
    let lib = unsafe { libloading::Library::new(&so) }.unwrap();
    Emu {
        lib,
        kernels: kernels.to_vec(),
    }
}

impl Emu {
    fn launch(&self, kernel: usize, grid: u32, block: u32, vals: &[Val]) {
        let kd = &self.kernels[kernel];
        assert_eq!(kd.params.len(), vals.len(), "{}", kd.name);
        let mut slots: Vec<u64> = vals
            .iter()
            .map(|v| match v {
                Val::Ptr(p) => *p as u64,
                Val::U64(x) => *x,
                Val::F64(x) => x.to_bits(),
            })
            .collect();
        let mut args: Vec<*mut c_void> = slots
            .iter_mut()
            .map(|s| s as *mut u64 as *mut c_void)
            .collect();
        let name = CString::new(kd.name.clone()).unwrap();
        // SAFETY: the dispatcher casts each slot to the kernel's parameter
        // type, and the buffers behind the pointers are large enough
        // (checked by the callers against the launch's sizes).
        let rc = unsafe {
            let f: libloading::Symbol<LaunchFn> = self.lib.get(b"netc_launch").unwrap();
            f(name.as_ptr().cast(), grid, block, args.as_mut_ptr())
        };
        assert_eq!(rc, 0, "no kernel {}", kd.name);
    }

    #[allow(clippy::too_many_arguments)]
    fn sgemm(
        &self,
        g: &netc::backend::cuda::program::Gemm,
        a: *const f32,
        b: *const f32,
        c: *mut f32,
    ) {
        // SAFETY: the launch-list test checks every GEMM's extent against its buffers.
        unsafe {
            let f: libloading::Symbol<SgemmFn> = self.lib.get(b"netc_sgemm").unwrap();
            f(
                g.transa as i32,
                g.transb as i32,
                g.m as i64,
                g.n as i64,
                g.k as i64,
                g.alpha,
                a,
                g.lda as i64,
                b,
                g.ldb as i64,
                g.beta,
                c,
                g.ldc as i64,
            );
        }
    }
}

fn rand(seed: u64, len: usize, scale: f32) -> Vec<f32> {
    (0..len)
        .map(|i| ((rng::uniform(seed, 77, i as u64) * 2.0 - 1.0) as f32) * scale)
        .collect()
}

/// Largest difference relative to the scale (largest magnitude) of `want`.
fn rel_err(got: &[f32], want: &[f32]) -> f64 {
    assert_eq!(got.len(), want.len());
    let scale = want.iter().fold(0f64, |m, v| m.max(v.abs() as f64));
    let err = got.iter().zip(want).fold(0f64, |m, (g, w)| {
        m.max(if g.is_finite() {
            (*g as f64 - *w as f64).abs()
        } else {
            f64::INFINITY
        })
    });
    if scale == 0.0 { err } else { err / scale }
}

fn check(what: &str, got: &[f32], want: &[f32], tol: f64) {
    let e = rel_err(got, want);
    assert!(e <= tol, "{what}: relative error {e:e} > {tol:e}");
}

fn ptr(v: &mut [f32]) -> Val {
    Val::Ptr(v.as_mut_ptr().cast())
}

fn uptr(v: &mut [u32]) -> Val {
    Val::Ptr(v.as_mut_ptr().cast())
}

/// One kernel from the table: compiled alone, launched with its own shape.
struct One {
    spec: netc::backend::cuda::render::Spec,
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
        },
        Kernel::BiasGrad { n, f: c, p: h * w },
        Kernel::Sgd {
            total,
            momentum: 0.9,
            weight_decay: 5e-4,
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
    let p = k::sgd::SgdParams {
        lr: 0.01,
        momentum: 0.9,
        weight_decay: 5e-4,
    };
    k::sgd::sgd_update(&p, &mut ww, &mut wv, &sg);
    check("sgd w", &sw, &ww, 0.0);
    check("sgd v", &sv, &wv, 0.0);
}

/// Runs one step of `p` on the emulator over host buffers.
fn run_step(emu: &Emu, p: &CudaProgram, bufs: &mut [Vec<f32>], seed: u64, lr: f64) {
    for st in &p.steps {
        match st {
            Step::Launch(l) => {
                let vals: Vec<Val> = l
                    .args
                    .iter()
                    .map(|a| match a {
                        Arg::Buf(b) => Val::Ptr(bufs[*b].as_mut_ptr().cast()),
                        Arg::Seed => Val::U64(seed),
                        Arg::Lr => Val::F64(lr),
                    })
                    .collect();
                emu.launch(l.kernel, l.grid, l.block, &vals);
            }
            Step::Gemm(g) => {
                let (a, b) = (bufs[g.a].as_ptr(), bufs[g.b].as_ptr());
                let c = bufs[g.c].as_mut_ptr();
                emu.sgemm(g, a, b, c);
            }
        }
    }
}

#[test]
fn training_step_matches_cpu_exec() {
    if !have_gxx() {
        eprintln!("skipped: no g++ to compile the emulated CUDA");
        return;
    }
    let src = std::fs::read_to_string("networks/alexnet-fmnist.net").unwrap();
    step_matches("alexnet-fmnist", &src);
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
    step_matches("strided", &src);
}

fn step_matches(tag: &str, src: &str) {
    let c = frontend::compile(src).unwrap_or_else(|d| panic!("{tag}: {:?}", d.message));
    let mut g = c.module.graph.clone();
    autodiff(&mut g, &c.module.train.sgd).unwrap();
    let batch = 4;
    let p = cuda::generate(&g, batch).unwrap();
    let emu = build(tag, &p.source, &p.kernels);

    let (seed, step, lr) = (7u64, 3u64, 0.01f64);
    let mut cpu = CpuExec::new(g.clone(), seed).unwrap();
    let mut bufs: Vec<Vec<f32>> = p.buffers.iter().map(|b| vec![0f32; b.elems]).collect();
    // Same parameters as the CPU executor.
    for n in g.node_ids() {
        if g.node(n).op.is_param() {
            let b = p.buffer(&node_key(&g, n)).unwrap();
            bufs[b].copy_from_slice(cpu.value(n));
        }
    }
    let images = rand(21, batch * 28 * 28, 1.0);
    let labels: Vec<u32> = (0..batch as u64)
        .map(|i| (rng::bits(5, 6, i) % 10) as u32)
        .collect();
    bufs[p.image].copy_from_slice(&images);
    for (d, l) in bufs[p.labels].iter_mut().zip(&labels) {
        *d = f32::from_bits(*l);
    }
    let stats = cpu.train_step(&images, &labels, lr, step).unwrap();
    run_step(&emu, &p, &mut bufs, seed ^ rng::mix64(step), lr);

    let loss = bufs[p.loss][0] as f64;
    assert!(
        (loss - stats.loss).abs() <= 1e-4 * stats.loss.abs(),
        "loss {loss} vs CPU {}",
        stats.loss
    );
    // Every node's buffer: activations, gradients, updated weights and velocities.
    let mut worst = (0f64, String::new());
    let mut compared = 0;
    for n in g.node_ids() {
        let key = node_key(&g, n);
        let Some(b) = p.buffer(&key) else { continue };
        let decl = &p.buffers[b];
        if decl.dtype != DType::F32 || decl.kind == BufKind::Image {
            continue;
        }
        let e = rel_err(&bufs[b], cpu.value(n));
        if e > worst.0 {
            worst = (e, key.clone());
        }
        assert!(
            e <= 1e-4,
            "{key}: relative error {e:e} against the CPU executor"
        );
        compared += 1;
    }
    assert!(compared > 150, "only {compared} buffers compared");
    eprintln!(
        "{tag}: emulated step: loss {loss} (CPU {}), {compared} buffers, worst {:e} at {}",
        stats.loss, worst.0, worst.1
    );
}
