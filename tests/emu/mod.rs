//! The emulation harness shared by the CUDA emulation tests: generated
//! CUDA C compiled as C++ with the system `g++` against
//! `tests/cuda_shim/shim.h` into a shared library, kernels launched by
//! name, cuBLAS's sgemm emulated by the shim's naive column-major GEMM
//! (accumulated in double), and a whole training step run against
//! `CpuExec` with the same seed, parameters, data and dropout masks, in
//! one host allocation laid out as the device's (the memory plan's arenas,
//! then the workspace), poisoned with NaN before the step.
//! Tests skip without `g++`, except under `NETC_REQUIRE_GXX=1` (CI),
//! where [`have_gxx`] panics.

#![allow(dead_code)]

pub mod device;
pub mod multi;

use std::ffi::{CString, c_void};
use std::path::{Path, PathBuf};
use std::process::Command;

use netc::backend::cpu::exec::CpuExec;
use netc::backend::cuda::program::{Arg, BufKind, CudaProgram, DType, KernelDecl, ParamTy, Step};
use netc::backend::cuda::{self, Layout, generate::buffers::node_key};
use netc::frontend;
use netc::passes::autodiff::autodiff;
use netc::passes::memplan;
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

/// A kernel argument value: a pointer, or a value the launch keeps in
/// memory of its own for a kernel that reads it through a pointer (a
/// `const unsigned long long*` seed, a `const double*` rate).
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
                ParamTy::InU64 => format!("*(const unsigned long long**)a[{i}]"),
                ParamTy::InF64 => format!("*(const double**)a[{i}]"),
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
        // A value argument lives here for the launch; the kernel gets its address.
        let values: Vec<u64> = vals
            .iter()
            .map(|v| match v {
                Val::Ptr(_) => 0,
                Val::U64(x) => *x,
                Val::F64(x) => x.to_bits(),
            })
            .collect();
        let mut slots: Vec<u64> = vals
            .iter()
            .zip(&values)
            .map(|(v, x)| match v {
                Val::Ptr(p) => *p as u64,
                Val::U64(_) | Val::F64(_) => x as *const u64 as u64,
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

/// Word (4-byte) index of buffer `b` in the program's one allocation.
pub fn word(p: &CudaProgram, b: usize) -> usize {
    (p.addr(b).expect("a buffer of the program") / 4) as usize
}

/// Buffer `b`'s elements in `mem` (u32 buffers as their bits).
pub fn view<'a>(p: &CudaProgram, mem: &'a [f32], b: usize) -> &'a [f32] {
    let w = word(p, b);
    &mem[w..w + p.buffers[b].elems]
}

pub fn view_mut<'a>(p: &CudaProgram, mem: &'a mut [f32], b: usize) -> &'a mut [f32] {
    let w = word(p, b);
    &mut mem[w..w + p.buffers[b].elems]
}

/// Runs one step of `p` on the emulator over `mem`, the program's one
/// allocation laid out as the runtime lays it (`p.bytes()` bytes, every
/// buffer at `p.addr`). Before the steps of each position of `p.order`,
/// `at(pos, mem)` sees the memory (to compare values while they are live).
pub fn run_step(
    emu: &Emu,
    p: &CudaProgram,
    mem: &mut [f32],
    seed: u64,
    lr: f64,
    mut at: impl FnMut(usize, &[f32]),
) {
    assert!(mem.len() * 4 >= p.bytes() as usize);
    write_scalars(p, mem, seed, lr);
    let base = mem.as_mut_ptr();
    // SAFETY: every buffer lies inside the allocation (checked by
    // `alias::check` when the program was generated, and by the assert).
    let ptr = |b: usize| unsafe { base.add(word(p, b)) };
    let mut next = 0;
    for pos in 0..p.order.len() {
        // SAFETY: no pointer into `mem` is in use between launches.
        at(pos, unsafe { std::slice::from_raw_parts(base, mem.len()) });
        while let Some(st) = p.steps.get(next) {
            let here = st.pos();
            assert!(here >= pos, "steps out of order");
            if here > pos {
                break;
            }
            next += 1;
            match st {
                Step::Launch(l) => {
                    let vals: Vec<Val> = l
                        .args
                        .iter()
                        .map(|a| match a {
                            Arg::Buf(b) => Val::Ptr(ptr(*b).cast()),
                            // SAFETY: `alias::check` keeps the offset inside the buffer.
                            Arg::At(b, at) => Val::Ptr(unsafe { ptr(*b).add(*at) }.cast()),
                        })
                        .collect();
                    emu.launch(l.kernel, l.grid, l.block, &vals);
                }
                // SAFETY: `alias::check` keeps each operand's extent inside its buffer.
                Step::Gemm(g) => unsafe {
                    emu.sgemm(
                        g,
                        ptr(g.a).add(g.a_at),
                        ptr(g.b).add(g.b_at),
                        ptr(g.c).add(g.c_at),
                    )
                },
                // A mirror in the same allocation (a one-device placement).
                // SAFETY: both lie in the allocation (`alias::check`).
                Step::Copy { src, dst, .. } => unsafe {
                    std::ptr::copy(ptr(*src), ptr(*dst), p.buffers[*src].elems)
                },
            }
        }
    }
    assert_eq!(next, p.steps.len(), "a step past the last position");
}

/// Writes a step's scalars (dropout seed, learning rate) where the
/// program's kernels read them, as the runtime does before each step.
pub fn write_scalars(p: &CudaProgram, mem: &mut [f32], seed: u64, lr: f64) {
    view_mut(p, mem, p.scalars)
        .copy_from_slice(&netc::backend::cuda::program::scalar_words(seed, lr));
}

/// One step of a captured launch list: every argument resolved to a word
/// offset into the device memory.
pub enum Recorded {
    Launch {
        kernel: usize,
        grid: u32,
        block: u32,
        args: Vec<usize>,
    },
    Gemm(netc::backend::cuda::program::Gemm, [usize; 3]),
    /// `[source, destination]` words, length.
    Copy([usize; 2], usize),
}

/// The launch list of `p` with every argument resolved, as a CUDA graph
/// captures it: nothing in it depends on the step (seed and rate are read
/// from the scalars buffer).
pub fn record(p: &CudaProgram) -> Vec<Recorded> {
    p.steps
        .iter()
        .map(|st| match st {
            Step::Launch(l) => Recorded::Launch {
                kernel: l.kernel,
                grid: l.grid,
                block: l.block,
                args: l
                    .args
                    .iter()
                    .map(|a| {
                        let (b, at) = a.buffer().expect("every argument is a device address");
                        word(p, b) + at
                    })
                    .collect(),
            },
            Step::Gemm(g) => Recorded::Gemm(
                g.clone(),
                [
                    word(p, g.a) + g.a_at,
                    word(p, g.b) + g.b_at,
                    word(p, g.c) + g.c_at,
                ],
            ),
            Step::Copy { src, dst, .. } => {
                Recorded::Copy([word(p, *src), word(p, *dst)], p.buffers[*src].elems)
            }
        })
        .collect()
}

/// Replays a recorded launch list over `mem` (after the step's scalars
/// are written).
pub fn replay(emu: &Emu, rec: &[Recorded], mem: &mut [f32]) {
    let base = mem.as_mut_ptr();
    for r in rec {
        match r {
            Recorded::Launch {
                kernel,
                grid,
                block,
                args,
            } => {
                // SAFETY: the offsets were resolved from the program's
                // buffers, which lie inside `mem`.
                let vals: Vec<Val> = args
                    .iter()
                    .map(|&w| Val::Ptr(unsafe { base.add(w) }.cast()))
                    .collect();
                emu.launch(*kernel, *grid, *block, &vals);
            }
            // SAFETY: as above.
            Recorded::Gemm(g, [a, b, c]) => unsafe {
                emu.sgemm(g, base.add(*a), base.add(*b), base.add(*c))
            },
            Recorded::Copy([src, dst], len) => mem.copy_within(*src..*src + *len, *dst),
        }
    }
}

/// A whole training step of `src` (fused by `passes::fuse` if `fused`)
/// at batch 4, on the emulator and on `CpuExec` (every value kept): the
/// loss, and every node's buffer (values, gradients, updated weights and
/// velocities) to 1e-4 of its scale; at least `min_buffers` are compared.
///
/// The emulated step runs as the device would: in one allocation laid out
/// by `layout` (by default the memory plan: every buffer at its planned
/// offset, checked here against `memplan::plan`), filled with NaN before
/// the parameters, velocities and data are loaded, so a kernel reading
/// memory nothing wrote shows. A buffer whose memory is reused later is
/// compared before the steps of its last reader (while it is live; an
/// in-place op overwrites it there), the others after the step.
///
/// Returns the kernels that ran in place, with the input port each wrote
/// over (`relu_grad_0:1`).
pub fn step_matches(tag: &str, src: &str, fused: bool, min_buffers: usize) -> Vec<String> {
    step_matches_in(tag, src, fused, min_buffers, Layout::Planned)
}

/// Kernels of `p` launched with an output at the address of an input, as
/// `name:port` (the port among the kernel's pointer inputs), sorted, once each.
pub fn in_place_launches(p: &CudaProgram) -> Vec<String> {
    let mut v = Vec::new();
    for st in &p.steps {
        let Step::Launch(l) = st else { continue };
        let k = &p.kernels[l.kernel];
        let bufs: Vec<(usize, ParamTy)> = l
            .args
            .iter()
            .zip(&k.params)
            .filter_map(|(a, (t, _))| a.buffer().map(|(b, _)| (b, *t)))
            .collect();
        let ins: Vec<usize> = bufs
            .iter()
            .filter(|(_, t)| !t.is_output())
            .map(|b| b.0)
            .collect();
        for (o, _) in bufs.iter().filter(|(_, t)| t.is_output()) {
            for (port, i) in ins.iter().enumerate() {
                if p.addr(*i) == p.addr(*o) {
                    assert!(k.in_place, "{} runs in place", k.name);
                    v.push(format!("{}:{port}", k.name));
                }
            }
        }
    }
    v.sort();
    v.dedup();
    v
}

pub fn step_matches_in(
    tag: &str,
    src: &str,
    fused: bool,
    min_buffers: usize,
    layout: Layout,
) -> Vec<String> {
    let opts = cuda::Options {
        layout,
        ..cuda::Options::default()
    };
    step_matches_opts(tag, src, fused, min_buffers, opts)
}

/// [`step_matches_in`] with the program generated as `opts` says (a small
/// `conv_workspace` runs the convolutions in chunks of images).
pub fn step_matches_opts(
    tag: &str,
    src: &str,
    fused: bool,
    min_buffers: usize,
    opts: cuda::Options,
) -> Vec<String> {
    let layout = opts.layout;
    let c = frontend::compile(src).unwrap_or_else(|d| panic!("{tag}: {:?}", d.message));
    let mut g = c.module.graph.clone();
    autodiff(&mut g, &c.module.train.sgd).unwrap();
    if fused {
        netc::passes::fuse::fuse(&mut g).unwrap();
    }
    let batch = 4;
    let p = cuda::generate_opts(&g, batch, opts).unwrap();
    if layout == Layout::Planned {
        planned_layout(&g, &p);
    }
    let emu = build(tag, &p.source, &p.kernels);

    let (seed, step, lr) = (7u64, 3u64, 0.01f64);
    let mut cpu = CpuExec::new(g.clone(), seed).unwrap();
    let mut mem = vec![f32::NAN; (p.bytes() / 4) as usize];
    // Same parameters as the CPU executor, zero velocities.
    for n in g.node_ids() {
        if g.node(n).op.is_param() {
            let b = p.buffer(&node_key(&g, n)).unwrap();
            view_mut(&p, &mut mem, b).copy_from_slice(cpu.value(n));
        }
    }
    let images = rand(21, p.buffers[p.image].elems, 1.0);
    let classes = (p.buffers[p.logits].elems / batch) as u64;
    let labels: Vec<u32> = (0..batch as u64)
        .map(|i| (rng::bits(5, 6, i) % classes) as u32)
        .collect();
    view_mut(&p, &mut mem, p.image).copy_from_slice(&images);
    for (d, l) in view_mut(&p, &mut mem, p.labels).iter_mut().zip(&labels) {
        *d = f32::from_bits(*l);
    }
    let stats = cpu.train_step(&images, &labels, lr, step).unwrap();

    // The node buffers to compare: F32 values (not the image), by buffer.
    let nodes: Vec<(usize, netc::ir::NodeId, String)> = g
        .node_ids()
        .filter_map(|n| {
            let key = node_key(&g, n);
            let b = p.buffer(&key)?;
            let d = &p.buffers[b];
            (d.dtype == DType::F32 && d.kind != BufKind::Image).then_some((b, n, key))
        })
        .collect();
    let end = p.order.len() - 1;
    let mut worst = (0f64, String::new());
    let mut compared = 0;
    // A bias gradient sums its output gradient over the batch (and the
    // positions): where those terms cancel (a layer feeding a batchnorm,
    // whose input gradient sums to zero per channel) it is rounding noise,
    // so its error is measured against the scale of what it sums.
    let summed = |n: netc::ir::NodeId| -> f64 {
        use netc::ir::Op;
        let bias_grad = matches!(
            g.node(n).op,
            Op::ConvGradBias
                | Op::DenseGradBias
                | Op::ConvReluGradBias { .. }
                | Op::DenseReluGradBias { .. }
                | Op::BatchNormGradBeta
        );
        if !bias_grad {
            return 0.0;
        }
        g.inputs(n)
            .iter()
            .filter(|&&i| matches!(g.node(i).ty, netc::ir::Ty::Act { .. }))
            .flat_map(|&i| cpu.value(i).iter())
            .fold(0f64, |m, v| m.max(v.abs() as f64))
    };
    // A velocity is measured likewise against `lr` times the scale of what
    // its gradient sums (`v ← momentum·v − λ·lr·w − lr·g` from `v = 0`).
    let floor = |n: netc::ir::NodeId| -> f64 {
        use netc::ir::{Op, ParamRole};
        if let Op::Param {
            role: ParamRole::Velocity,
            ..
        } = g.node(n).op
        {
            return g
                .users(n)
                .into_iter()
                .filter(|&u| matches!(g.node(u).op, Op::SgdUpdate { .. }))
                .filter_map(|u| g.inputs(u).get(2).copied())
                .map(|grad| lr * summed(grad))
                .fold(0f64, f64::max);
        }
        summed(n)
    };
    let mut compare = |mem: &[f32], b: usize, n: netc::ir::NodeId, key: &str| {
        let (got, want) = (view(&p, mem, b), cpu.value(n));
        let scale = want.iter().fold(0f64, |m, v| m.max(v.abs() as f64));
        let sum = floor(n);
        let e = if sum > scale {
            // The largest difference (`rel_err` of a zero scale is absolute).
            let diff = rel_err(got, want) * if scale == 0.0 { 1.0 } else { scale };
            diff / sum
        } else {
            rel_err(got, want)
        };
        if e > worst.0 {
            worst = (e, key.to_string());
        }
        assert!(
            e <= 1e-4,
            "{key}: relative error {e:e} against the CPU executor"
        );
        compared += 1;
    };
    run_step(
        &emu,
        &p,
        &mut mem,
        seed ^ rng::mix64(step),
        lr,
        |pos, mem| {
            for (b, n, key) in &nodes {
                let d = &p.buffers[*b];
                if d.last == pos && d.last < end {
                    compare(mem, *b, *n, key);
                }
            }
        },
    );
    for (b, n, key) in &nodes {
        if p.buffers[*b].last == end {
            compare(&mem, *b, *n, key);
        }
    }
    let loss = view(&p, &mem, p.loss)[0] as f64;
    assert!(
        (loss - stats.loss).abs() <= 1e-4 * stats.loss.abs(),
        "loss {loss} vs CPU {}",
        stats.loss
    );
    assert!(compared >= min_buffers, "only {compared} buffers compared");
    let in_place = in_place_launches(&p);
    eprintln!(
        "{tag}: emulated step ({layout:?}, {} bytes): loss {loss} (CPU {}), {compared} buffers, worst {:e} at {}; in place: {}",
        p.bytes(),
        stats.loss,
        worst.0,
        worst.1,
        in_place.join(" ")
    );
    in_place
}

/// Every planned buffer of `g` lies at its planned offset in the region of
/// its arena, the regions are the plan's arenas (sizes included) and then
/// the workspace, and the emulated allocation is exactly that.
pub fn planned_layout(g: &netc::ir::Graph, p: &CudaProgram) {
    let plan = memplan::plan(g, p.batch as u64).unwrap();
    assert_eq!(p.planned_bytes(), plan.planned());
    assert_eq!(p.no_reuse, plan.no_reuse());
    assert_eq!(p.regions.len(), plan.arenas.len() + 1);
    for (r, a) in p.regions.iter().zip(&plan.arenas) {
        assert_eq!(
            (r.name.clone(), r.size, r.planned),
            (a.device.to_string(), a.size, true)
        );
    }
    assert!(!p.regions.last().unwrap().planned);
    assert_eq!(
        p.bytes(),
        p.regions.last().map(|r| r.base + r.size).unwrap()
    );
    let mut seen = 0;
    for b in &plan.buffers {
        let key = node_key(g, b.node);
        let name = match b.side {
            None => key,
            Some(s) => format!("{key}.{}", s.suffix()),
        };
        let i = p
            .buffer(&name)
            .unwrap_or_else(|| panic!("no buffer {name}"));
        let d = &p.buffers[i];
        assert_eq!(p.regions[d.region].name, b.device.to_string(), "{name}");
        assert_eq!((d.offset, d.bytes()), (b.offset, b.size), "{name}");
        assert_eq!((d.first, d.last), (b.first, b.last), "{name}");
        seen += 1;
    }
    let scratch = p
        .buffers
        .iter()
        .filter(|d| matches!(d.kind, BufKind::Scratch | BufKind::Scalars))
        .count();
    assert_eq!(seen + scratch, p.buffers.len());
    let order: Vec<String> = plan.order.iter().map(|&n| node_key(g, n)).collect();
    let keys: Vec<String> = p.order.iter().map(|o| o.key()).collect();
    assert_eq!(keys, order);
    for (o, &n) in p.order.iter().zip(&plan.order) {
        assert_eq!(o.device, g.node(n).device, "{}", o.key());
    }
}

/// The emulated step of `src` with one NaN pixel (negative, which the old
/// ReLU turned into 0): every compared buffer holds NaN exactly where the
/// CPU executor's does, and the loss is NaN on both. Returns the number
/// of buffers compared.
pub fn nan_step_matches(tag: &str, src: &str, fused: bool) -> usize {
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
    let mut mem = vec![f32::NAN; (p.bytes() / 4) as usize];
    for n in g.node_ids() {
        if g.node(n).op.is_param() {
            let b = p.buffer(&node_key(&g, n)).unwrap();
            view_mut(&p, &mut mem, b).copy_from_slice(cpu.value(n));
        }
    }
    let mut images = rand(21, p.buffers[p.image].elems, 1.0);
    images[40] = -f32::NAN;
    let classes = (p.buffers[p.logits].elems / batch) as u64;
    let labels: Vec<u32> = (0..batch as u64)
        .map(|i| (rng::bits(5, 6, i) % classes) as u32)
        .collect();
    view_mut(&p, &mut mem, p.image).copy_from_slice(&images);
    for (d, l) in view_mut(&p, &mut mem, p.labels).iter_mut().zip(&labels) {
        *d = f32::from_bits(*l);
    }
    let stats = cpu.train_step(&images, &labels, lr, step).unwrap();
    assert!(stats.loss.is_nan(), "{tag}: CPU loss {}", stats.loss);
    let nodes: Vec<(usize, netc::ir::NodeId, String)> = g
        .node_ids()
        .filter(|&n| g.node(n).op.is_forward())
        .filter_map(|n| {
            let key = node_key(&g, n);
            let b = p.buffer(&key)?;
            let d = &p.buffers[b];
            (d.dtype == DType::F32 && d.kind != BufKind::Image).then_some((b, n, key))
        })
        .collect();
    let end = p.order.len() - 1;
    let mut compared = 0;
    let mut compare = |mem: &[f32], b: usize, n: netc::ir::NodeId, key: &str| {
        let (got, want) = (view(&p, mem, b), cpu.value(n));
        for (i, (a, w)) in got.iter().zip(want).enumerate() {
            assert_eq!(a.is_nan(), w.is_nan(), "{tag}: {key}[{i}]: {a} vs CPU {w}");
        }
        compared += 1;
    };
    run_step(
        &emu,
        &p,
        &mut mem,
        seed ^ rng::mix64(step),
        lr,
        |pos, mem| {
            for (b, n, key) in &nodes {
                let d = &p.buffers[*b];
                if d.last == pos && d.last < end {
                    compare(mem, *b, *n, key);
                }
            }
        },
    );
    for (b, n, key) in &nodes {
        if p.buffers[*b].last == end {
            compare(&mem, *b, *n, key);
        }
    }
    let loss = view(&p, &mem, p.loss)[0];
    assert!(loss.is_nan(), "{tag}: emulated loss {loss}");
    compared
}
