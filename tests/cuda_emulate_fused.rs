//! The kernels of the fused ops, run on the emulator (`tests/emu`) on
//! fresh random inputs against the CPU backend's kernels as the CPU
//! executor calls them for the same fused op: `conv_relu` and its three
//! gradients (im2col, sgemm, the ReLU epilogue; the masked channel-major
//! `dy`, bias gradient, sgemm, col2im), `dense_relu` and
//! `dense_relu_dropout` and their gradients (the mask and scale of `dy`),
//! `lrn_maxpool` and its gradient (overlapping and non-overlapping windows,
//! a column no window covers, two LRN parameter sets), and `grad_chain`
//! with and without each mask. GEMMs are the shim's sgemm with the
//! arguments codegen gives cuBLAS. Tolerance: 1e-5 relative to each
//! output's scale; masks, argmax and the elementwise chains exactly.
//! Every kernel the memory plan may run in place (`relu`, `relu_grad`
//! over either input, `dropout` and `dropout_grad`, `add` and `grad_chain`
//! over their first input), run with its output at an input's address,
//! gives exactly what it gives out of place.
//! Skipped with a message when `g++` is missing.

mod emu;

use emu::*;
use netc::backend::cpu::kernels::{self as k, Act};
use netc::backend::cuda::generate::kernels::{Epilogue, Kernel, LrnPool, Mask, spec};
use netc::backend::cuda::generate::render::{PRELUDE, Source, Spec};
use netc::backend::cuda::program::Gemm;
use netc::rng;

const TOL: f64 = 1e-5;

/// The kernels under test, compiled into one library.
struct Table {
    emu: Emu,
    specs: Vec<(Spec, usize)>,
}

impl Table {
    fn new(tag: &str, kernels: &[Kernel]) -> Table {
        let mut src = Source::default();
        let specs: Vec<(Spec, usize)> = kernels
            .iter()
            .map(|kern| {
                let s = spec(kern);
                let idx = src.add(&s);
                (s, idx)
            })
            .collect();
        let emu = build(tag, &format!("{PRELUDE}{}", src.text), &src.kernels);
        Table { emu, specs }
    }

    /// Launches kernel `i` of the table with its own grid and block.
    fn run(&self, i: usize, vals: &[Val]) {
        let (s, idx) = &self.specs[i];
        let (g, b) = s.grid_block();
        self.emu.launch(*idx, g, b, vals);
    }

    /// Row-major `c[M×N] = op(a)·op(b)`, as codegen's `gemm_rm` asks cuBLAS.
    #[allow(clippy::too_many_arguments)]
    fn gemm(
        &self,
        c: &mut [f32],
        a: &[f32],
        ta: bool,
        b: &[f32],
        tb: bool,
        (m, n, kk): (usize, usize, usize),
    ) {
        let g = Gemm {
            transa: tb,
            transb: ta,
            m: n,
            n: m,
            k: kk,
            alpha: 1.0,
            a: 0,
            lda: if tb { kk } else { n },
            b: 0,
            ldb: if ta { m } else { kk },
            beta: 0.0,
            c: 0,
            ldc: n,
            a_at: 0,
            b_at: 0,
            c_at: 0,
            node: String::new(),
            pos: 0,
        };
        assert!(c.len() >= m * n && a.len() >= m * kk && b.len() >= kk * n);
        self.emu.sgemm(&g, b.as_ptr(), a.as_ptr(), c.as_mut_ptr());
    }
}

fn skip() -> bool {
    if have_gxx() {
        return false;
    }
    eprintln!("skipped: no g++ to compile the emulated CUDA");
    true
}

#[test]
fn conv_relu_and_its_gradients() {
    if skip() {
        return;
    }
    let s = k::conv::ConvShape {
        n: 2,
        c: 3,
        h: 7,
        w: 6,
        f: 5,
        k: 3,
        stride: 2,
        pad: 1,
    };
    let (oh, ow) = (s.oh(), s.ow());
    let (p, np, ckk) = (oh * ow, s.n * oh * ow, s.c * s.k * s.k);
    let geo = |backward: bool| {
        let (n, c, h, w, k, stride, pad) = (s.n, s.c, s.h, s.w, s.k, s.stride, s.pad);
        if backward {
            Kernel::Col2im {
                n,
                c,
                h,
                w,
                k,
                stride,
                pad,
                oh,
                ow,
            }
        } else {
            Kernel::Im2col {
                n,
                c,
                h,
                w,
                k,
                stride,
                pad,
                oh,
                ow,
            }
        }
    };
    let t = Table::new(
        "fused-conv",
        &[
            geo(false),
            Kernel::BiasEpilogue {
                n: s.n,
                f: s.f,
                p,
                act: Epilogue::Relu,
            },
            Kernel::ToChannelMajor {
                n: s.n,
                f: s.f,
                p,
                mask: Mask::Relu,
            },
            Kernel::BiasGrad {
                n: 1,
                f: s.f,
                p: np,
                acc: false,
            },
            geo(true),
        ],
    );
    let (mut x, w, mut b) = (
        rand(1, s.input().len(), 1.0),
        rand(2, s.w_len(), 0.5),
        rand(3, s.f, 0.5),
    );
    let (mut col, mut tmp) = (vec![0f32; ckk * np], vec![0f32; s.f * np]);
    let mut y = vec![0f32; s.output().len()];
    t.run(0, &[ptr(&mut x), ptr(&mut col)]);
    t.gemm(&mut tmp, &w, false, &col, false, (s.f, np, ckk));
    t.run(1, &[ptr(&mut tmp), ptr(&mut b), ptr(&mut y)]);
    let mut want = vec![0f32; y.len()];
    k::conv::conv2d_forward(&s, &x, &w, Some(&b), Act::Relu, &mut want, &mut Vec::new());
    check("conv_relu", &y, &want, TOL);
    assert!(want.contains(&0.0) && want.iter().any(|v| *v > 0.0));

    // Backward from the CPU's y, so both sides mask the same elements.
    let mut y = want;
    let mut dy = rand(4, y.len(), 1.0);
    let (mut dw, mut db, mut dx) = (vec![0f32; w.len()], vec![0f32; s.f], vec![0f32; x.len()]);
    t.run(2, &[ptr(&mut dy), ptr(&mut y), ptr(&mut tmp)]);
    t.run(3, &[ptr(&mut tmp), ptr(&mut db)]);
    t.run(0, &[ptr(&mut x), ptr(&mut col)]);
    t.gemm(&mut dw, &tmp, false, &col, true, (s.f, ckk, np));
    t.gemm(&mut col, &w, true, &tmp, false, (ckk, np, s.f));
    t.run(4, &[ptr(&mut col), ptr(&mut dx)]);
    let (mut wdx, mut wdw, mut wdb) = (vec![0f32; x.len()], vec![0f32; w.len()], vec![0f32; s.f]);
    let mut scratch = Vec::new();
    k::conv::conv2d_backward(
        &s,
        Act::Relu,
        &x,
        &w,
        &y,
        &dy,
        Some(&mut wdx),
        &mut wdw,
        Some(&mut wdb),
        &mut scratch,
    );
    check("conv_relu_grad_input", &dx, &wdx, TOL);
    check("conv_relu_grad_weight", &dw, &wdw, TOL);
    check("conv_relu_grad_bias", &db, &wdb, TOL);
}

#[test]
fn dense_relu_and_dense_relu_dropout_and_their_gradients() {
    if skip() {
        return;
    }
    let s = k::dense::DenseShape {
        n: 6,
        inp: 20,
        out: 13,
    };
    let total = s.n * s.out;
    let (rate, stream) = (0.4, rng::dropout_stream("fc6/dropout", "t1"));
    let seed = 99 ^ rng::mix64(4);
    let scale = 1.0 / (1.0 - rate);
    let t = Table::new(
        "fused-dense",
        &[
            Kernel::BiasEpilogue {
                n: s.n,
                f: s.out,
                p: 1,
                act: Epilogue::Relu,
            },
            Kernel::BiasEpilogue {
                n: s.n,
                f: s.out,
                p: 1,
                act: Epilogue::ReluDropout { rate, stream },
            },
            Kernel::ReluGrad { total },
            Kernel::ReluGradScale { total, scale },
            Kernel::BiasGrad {
                n: s.n,
                f: s.out,
                p: 1,
                acc: false,
            },
        ],
    );
    let (x, w, mut b) = (
        rand(5, s.n * s.inp, 1.0),
        rand(6, s.out * s.inp, 0.5),
        rand(7, s.out, 0.5),
    );
    let mut tmp = vec![0f32; total];
    t.gemm(&mut tmp, &w, false, &x, true, (s.out, s.n, s.inp));
    let mut relu_want = vec![0f32; total];
    k::dense::dense_forward(&s, &x, &w, Some(&b), Act::Relu, &mut relu_want);
    let dp = k::dropout::DropoutParams {
        seed,
        stream,
        rate,
        training: true,
    };
    let mut drop_want = vec![0f32; total];
    k::dropout::dropout_forward(&dp, &relu_want, &mut drop_want);
    let (mut y_relu, mut y_drop) = (vec![0f32; total], vec![0f32; total]);
    t.run(0, &[ptr(&mut tmp), ptr(&mut b), ptr(&mut y_relu)]);
    t.run(
        1,
        &[ptr(&mut tmp), ptr(&mut b), ptr(&mut y_drop), Val::U64(seed)],
    );
    check("dense_relu", &y_relu, &relu_want, TOL);
    check("dense_relu_dropout", &y_drop, &drop_want, TOL);
    // The same elements are dropped: the mask is the CPU's.
    let zeros = |v: &[f32]| v.iter().map(|e| *e == 0.0).collect::<Vec<_>>();
    assert_eq!(zeros(&y_drop), zeros(&drop_want));
    assert!(
        zeros(&drop_want).iter().filter(|z| **z).count()
            > zeros(&relu_want).iter().filter(|z| **z).count()
    );

    // Backward from the CPU's outputs: the masked dy, then the layer's gradients.
    let mut dy = rand(8, total, 1.0);
    for (dropout, mut y, kernel) in [(false, relu_want, 2), (true, drop_want, 3)] {
        let mut m = vec![0f32; total];
        t.run(kernel, &[ptr(&mut y), ptr(&mut dy), ptr(&mut m)]);
        let sc = if dropout { scale as f32 } else { 1.0 };
        let want_m: Vec<f32> = y
            .iter()
            .zip(&dy)
            .map(|(yv, g)| if *yv > 0.0 { g * sc } else { 0.0 })
            .collect();
        check("masked dy", &m, &want_m, 0.0);
        let (mut dw, mut db, mut dx) =
            (vec![0f32; w.len()], vec![0f32; s.out], vec![0f32; x.len()]);
        t.run(4, &[ptr(&mut m), ptr(&mut db)]);
        t.gemm(&mut dw, &m, true, &x, false, (s.out, s.inp, s.n));
        t.gemm(&mut dx, &m, false, &w, false, (s.n, s.inp, s.out));
        let (mut wdx, mut wdw, mut wdb) =
            (vec![0f32; x.len()], vec![0f32; w.len()], vec![0f32; s.out]);
        // As the CPU executor: dense_relu folds the mask into the kernel,
        // dense_relu_dropout masks and scales dy itself first.
        let (act, gy) = if dropout {
            (Act::None, &want_m)
        } else {
            (Act::Relu, &dy)
        };
        k::dense::dense_backward(
            &s,
            act,
            &x,
            &w,
            &y,
            gy,
            Some(&mut wdx),
            &mut wdw,
            Some(&mut wdb),
            &mut Vec::new(),
        );
        let what = if dropout {
            "dense_relu_dropout"
        } else {
            "dense_relu"
        };
        check(&format!("{what} grad_input"), &dx, &wdx, TOL);
        check(&format!("{what} grad_weight"), &dw, &wdw, TOL);
        check(&format!("{what} grad_bias"), &db, &wdb, TOL);
    }
}

#[test]
fn lrn_maxpool_and_its_gradient() {
    if skip() {
        return;
    }
    let strong = (5, 0.1, 0.75, 2.0);
    let odd = (4, 0.2, 1.3, 1.5);
    // 7 × 6 planes: with 3/2 windows the last column is in no window.
    let cases = [(strong, 3, 2), (odd, 3, 2), (strong, 2, 2)];
    let shapes: Vec<LrnPool> = cases
        .iter()
        .map(|&((size, alpha, beta, k), pool, stride)| LrnPool {
            n: 2,
            c: 7,
            h: 7,
            w: 6,
            size,
            alpha,
            beta,
            k,
            pool,
            stride,
        })
        .collect();
    let kernels: Vec<Kernel> = shapes
        .iter()
        .flat_map(|s| [Kernel::LrnMaxPoolFwd(*s), Kernel::LrnMaxPoolBwd(*s)])
        .collect();
    let t = Table::new("fused-lrn-maxpool", &kernels);
    for (i, s) in shapes.iter().enumerate() {
        let (oh, ow) = s.out();
        let (inp, out) = (s.n * s.c * s.h * s.w, s.n * s.c * oh * ow);
        let p = k::lrn::LrnParams {
            size: s.size,
            alpha: s.alpha,
            beta: s.beta,
            k: s.k,
        };
        let shape = k::Nchw::new(s.n, s.c, s.h, s.w);
        let ps = k::pool::PoolShape {
            n: s.n,
            c: s.c,
            h: s.h,
            w: s.w,
            size: s.pool,
            stride: s.stride,
        };
        let mut x = rand(10 + i as u64, inp, 3.0);
        let (mut lrn, mut scale) = (vec![0f32; inp], vec![0f32; inp]);
        let (mut y, mut am) = (vec![0f32; out], vec![0u32; out]);
        t.run(
            2 * i,
            &[
                ptr(&mut x),
                ptr(&mut lrn),
                ptr(&mut scale),
                ptr(&mut y),
                uptr(&mut am),
            ],
        );
        let (mut wl, mut ws) = (vec![0f32; inp], vec![0f32; inp]);
        k::lrn::lrn_forward(&p, &shape, &x, &mut wl, &mut ws);
        check(&format!("lrn_maxpool lrn {s:?}"), &lrn, &wl, TOL);
        check(&format!("lrn_maxpool scale {s:?}"), &scale, &ws, TOL);
        // Pooling, exactly the CPU's on the same LRN output.
        let (mut wy, mut wa) = (vec![0f32; out], vec![0u32; out]);
        k::pool::maxpool_forward(&ps, &lrn, &mut wy, &mut wa);
        check(&format!("lrn_maxpool {s:?}"), &y, &wy, 0.0);
        assert_eq!(am, wa, "lrn_maxpool argmax {s:?}");

        let mut dy = rand(20 + i as u64, out, 1.0);
        let mut dx = vec![0f32; inp];
        t.run(
            2 * i + 1,
            &[
                ptr(&mut x),
                ptr(&mut lrn),
                ptr(&mut scale),
                uptr(&mut am),
                ptr(&mut dy),
                ptr(&mut dx),
            ],
        );
        let mut dpool = vec![0f32; inp];
        k::pool::maxpool_backward(&ps, &dy, &am, &mut dpool);
        let mut wdx = vec![0f32; inp];
        k::lrn::lrn_backward(
            &p,
            &shape,
            &x,
            &lrn,
            &scale,
            &dpool,
            &mut wdx,
            &mut Vec::new(),
        );
        check(&format!("lrn_maxpool_grad {s:?}"), &dx, &wdx, TOL);
        if s.pool == 3 {
            // The uncovered last column gets no gradient.
            assert!(
                (0..inp)
                    .filter(|e| e % s.w == s.w - 1)
                    .all(|e| dx[e] == 0.0)
            );
        }
    }
}

#[test]
fn grad_chain_with_and_without_masks() {
    if skip() {
        return;
    }
    let total = 3 * 5 * 7 * 4;
    let stream = rng::dropout_stream("c1/dropout", "t0");
    let seed = 5 ^ rng::mix64(2);
    let cases = [
        (3, Some(0.3), true),
        (1, Some(0.3), false),
        (2, None, true),
        (2, Some(0.0), true),
    ];
    let kernels: Vec<Kernel> = cases
        .iter()
        .map(|&(parts, rate, relu)| Kernel::GradChain {
            total,
            parts,
            dropout: rate.map(|r| (r, stream)),
            relu,
        })
        .collect();
    let t = Table::new("fused-grad-chain", &kernels);
    for (i, &(parts, rate, relu)) in cases.iter().enumerate() {
        let mut xs: Vec<Vec<f32>> = (0..parts)
            .map(|j| rand(30 + j as u64, total, 1.0))
            .collect();
        let mut y = rand(40, total, 1.0);
        let mut dx = vec![0f32; total];
        let mut vals: Vec<Val> = xs.iter_mut().map(|v| ptr(v)).collect();
        if relu {
            vals.push(ptr(&mut y));
        }
        vals.push(ptr(&mut dx));
        if rate.is_some_and(|r| r > 0.0) {
            vals.push(Val::U64(seed));
        }
        t.run(i, &vals);
        // The unfused ops in turn: add, dropout_grad, relu_grad.
        let mut want = xs[0].clone();
        for x in &xs[1..] {
            for (o, v) in want.iter_mut().zip(x) {
                *o += *v;
            }
        }
        if let Some(rate) = rate {
            let p = k::dropout::DropoutParams {
                seed,
                stream,
                rate,
                training: true,
            };
            let mut d = vec![0f32; total];
            k::dropout::dropout_backward(&p, &want, &mut d);
            want = d;
        }
        if relu {
            let mut d = vec![0f32; total];
            k::relu::relu_backward(&y, &want, &mut d);
            want = d;
        }
        check(&format!("grad_chain {:?}", cases[i]), &dx, &want, 0.0);
    }
}

#[test]
fn in_place_kernels_match_out_of_place() {
    if skip() {
        return;
    }
    let total = 2 * 5 * 7 * 3;
    let stream = rng::dropout_stream("d/dropout", "t0");
    let seed = 11 ^ rng::mix64(5);
    // (kernel, pointer inputs, whether it takes the seed, the port written over)
    let cases: Vec<(Kernel, usize, bool, usize)> = vec![
        (Kernel::Relu { total }, 1, false, 0),
        (Kernel::ReluGrad { total }, 2, false, 1),
        (Kernel::ReluGrad { total }, 2, false, 0),
        (
            Kernel::Dropout {
                total,
                rate: 0.3,
                stream,
            },
            1,
            true,
            0,
        ),
        (
            Kernel::Dropout {
                total,
                rate: 0.0,
                stream,
            },
            1,
            true,
            0,
        ),
        (Kernel::Add { total, inputs: 3 }, 3, false, 0),
        (
            Kernel::GradChain {
                total,
                parts: 3,
                dropout: Some((0.3, stream)),
                relu: true,
            },
            4,
            true,
            0,
        ),
        (
            Kernel::GradChain {
                total,
                parts: 1,
                dropout: None,
                relu: true,
            },
            2,
            false,
            0,
        ),
    ];
    let kernels: Vec<Kernel> = cases.iter().map(|c| c.0.clone()).collect();
    let t = Table::new("in-place", &kernels);
    for (i, (kern, inputs, seeded, port)) in cases.iter().enumerate() {
        assert!(t.specs[i].0.in_place, "{kern:?} may run in place");
        let fresh = || -> Vec<Vec<f32>> {
            (0..*inputs)
                .map(|j| rand(50 + j as u64, total, 1.0))
                .collect()
        };
        let call = |ins: &mut Vec<Vec<f32>>, out: Option<&mut Vec<f32>>| {
            let mut vals: Vec<Val> = ins.iter_mut().map(|v| ptr(v)).collect();
            vals.push(match out {
                Some(o) => ptr(o),
                None => ptr(&mut ins[*port]),
            });
            if *seeded {
                vals.push(Val::U64(seed));
            }
            t.run(i, &vals);
        };
        let mut ins = fresh();
        let mut want = vec![f32::NAN; total];
        call(&mut ins, Some(&mut want));
        let mut ins = fresh();
        call(&mut ins, None);
        let got = &ins[*port];
        assert!(
            got.iter()
                .zip(&want)
                .all(|(a, b)| a.to_bits() == b.to_bits()),
            "{kern:?} in place over port {port}"
        );
        assert!(want.iter().any(|v| *v != 0.0));
    }
}
