//! The emulation harness shared by the CUDA emulation tests: generated
//! CUDA C compiled as C++ with the system `g++` against
//! `tests/cuda_shim/shim.h` into a shared library, kernels launched by
//! name, cuBLAS's sgemm emulated by the shim's naive column-major GEMM
//! (accumulated in double), and a whole training step run against
//! `CpuExec` with the same seed, parameters, data and dropout masks.
//! Tests skip without `g++`, except under `NETC_REQUIRE_GXX=1` (CI),
//! where [`have_gxx`] panics.

#![allow(dead_code)]

use std::ffi::{CString, c_void};
use std::path::{Path, PathBuf};
use std::process::Command;

use netc::backend::cpu::exec::CpuExec;
use netc::backend::cuda::program::{Arg, BufKind, CudaProgram, DType, KernelDecl, ParamTy, Step};
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

pub struct Emu {
    lib: libloading::Library,
    kernels: Vec<KernelDecl>,
}

/// A kernel argument value.
pub enum Val {
    Ptr(*mut c_void),
    U64(u64),
    F64(f64),
}

/// Whether `g++` runs here; without it, a panic under `NETC_REQUIRE_GXX=1`
/// (CI), so the emulation tests fail there instead of skipping.
pub fn have_gxx() -> bool {
    let ok = Command::new("g++").arg("--version").output().is_ok();
    if !ok && std::env::var("NETC_REQUIRE_GXX").as_deref() == Ok("1") {
        panic!("no g++ to compile the emulated CUDA, and NETC_REQUIRE_GXX=1");
    }
    ok
}

/// Compiles `source` and a dispatcher over `kernels` into a shared library.
pub fn build(tag: &str, source: &str, kernels: &[KernelDecl]) -> Emu {
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
    pub fn launch(&self, kernel: usize, grid: u32, block: u32, vals: &[Val]) {
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
    pub fn sgemm(
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

pub fn rand(seed: u64, len: usize, scale: f32) -> Vec<f32> {
    (0..len)
        .map(|i| ((rng::uniform(seed, 77, i as u64) * 2.0 - 1.0) as f32) * scale)
        .collect()
}

/// Largest difference relative to the scale (largest magnitude) of `want`.
pub fn rel_err(got: &[f32], want: &[f32]) -> f64 {
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

pub fn check(what: &str, got: &[f32], want: &[f32], tol: f64) {
    let e = rel_err(got, want);
    assert!(e <= tol, "{what}: relative error {e:e} > {tol:e}");
}

pub fn ptr(v: &mut [f32]) -> Val {
    Val::Ptr(v.as_mut_ptr().cast())
}

pub fn uptr(v: &mut [u32]) -> Val {
    Val::Ptr(v.as_mut_ptr().cast())
}

/// Runs one step of `p` on the emulator over host buffers.
pub fn run_step(emu: &Emu, p: &CudaProgram, bufs: &mut [Vec<f32>], seed: u64, lr: f64) {
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

/// A whole training step of `src` (fused by `passes::fuse` if `fused`)
/// at batch 4, on the emulator and on `CpuExec`: the loss, and every
/// node's buffer (values, gradients, updated weights and velocities) to
/// 1e-4 of its scale; at least `min_buffers` are compared.
pub fn step_matches(tag: &str, src: &str, fused: bool, min_buffers: usize) {
    let c = frontend::compile(src).unwrap_or_else(|d| panic!("{tag}: {:?}", d.message));
    let mut g = c.module.graph.clone();
    autodiff(&mut g, &c.module.train.sgd).unwrap();
    if fused {
        netc::passes::fuse::fuse(&mut g).unwrap();
    }
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
    let images = rand(21, p.buffers[p.image].elems, 1.0);
    let classes = (p.buffers[p.logits].elems / batch) as u64;
    let labels: Vec<u32> = (0..batch as u64)
        .map(|i| (rng::bits(5, 6, i) % classes) as u32)
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
    assert!(compared >= min_buffers, "only {compared} buffers compared");
    eprintln!(
        "{tag}: emulated step: loss {loss} (CPU {}), {compared} buffers, worst {:e} at {}",
        stats.loss, worst.0, worst.1
    );
}
