//! The launch list as readable text (`launch.txt`): the device memory
//! (total bytes, each region's base and size), buffers (each with its
//! region, byte offset there and lifetime in positions of the plan's
//! order), kernels and steps (each with its position), one per line, in
//! execution order. A kernel argument into a buffer at an element offset
//! (one chunk of a convolution's images) reads `b{buffer}+{offset}`.
//!
//! A program placed on several devices (`crate::backend::cuda::place::split`) also shows each
//! device's bytes, each region's device (`dev0`, `dev1`, ...; bases are
//! within that device's allocation), the bytes the copies move per step,
//! and its copy steps (`copy b{src} -> b{dst}`, on the device of `dst`).
//! A program on one device reads as before.

use std::fmt::Write;

use crate::backend::cuda::program::{Arg, CudaProgram, Step};

/// A GEMM operand: `b3`, or `b3+96` from an element offset.
fn operand(b: usize, at: usize) -> String {
    if at == 0 {
        format!("b{b}")
    } else {
        format!("b{b}+{at}")
    }
}

pub fn render(p: &CudaProgram) -> String {
    let mut s = String::new();
    let _ = writeln!(
        s,
        "# netc CUDA launch list: network {}, batch {}",
        p.network, p.batch
    );
    let _ = writeln!(
        s,
        "# sgemm steps are cuBLAS calls: column-major, C = alpha*op(A)*op(B) + beta*C, op(A) m x k"
    );
    let _ = writeln!(
        s,
        "# seed = train seed ^ rng::mix64(step); lr = the schedule's learning rate"
    );
    let _ = writeln!(
        s,
        "# @N: the step runs at position N of the memory plan's order; in_place kernels may write over an input"
    );
    let _ = writeln!(
        s,
        "\n[memory] {} bytes in one allocation: planned arenas {} (no reuse: {}), workspace {}",
        p.bytes(),
        p.planned_bytes(),
        p.no_reuse,
        p.workspace_bytes()
    );
    let placed = p.devices() > 1;
    if placed {
        let per: Vec<String> = (0..p.devices())
            .map(|d| format!("dev{d} {}", p.device_bytes(d)))
            .collect();
        let _ = writeln!(
            s,
            "[devices] {} allocations: {}; mirrors {}; copies move {} bytes per step",
            p.devices(),
            per.join(", "),
            p.mirror_bytes(),
            p.copy_bytes()
        );
    }
    for r in &p.regions {
        let _ = writeln!(
            s,
            "{:<10} {}base {:>11}  size {:>11}{}",
            r.name,
            if placed {
                format!("dev{} ", r.device)
            } else {
                String::new()
            },
            r.base,
            r.size,
            if r.planned { "" } else { "  (not planned)" }
        );
    }
    let _ = writeln!(
        s,
        "\n[buffers] {} (kind, type, elements, region+offset in bytes, live positions)",
        p.buffers.len()
    );
    for (i, b) in p.buffers.iter().enumerate() {
        let region = p.regions.get(b.region).map_or("?", |r| r.name.as_str());
        let _ = writeln!(
            s,
            "b{i:<4} {:<8} {:<3} {:>11}  {:<20} {:>9}  {}",
            format!("{:?}", b.kind).to_lowercase(),
            format!("{:?}", b.dtype).to_lowercase(),
            b.elems,
            format!("{region}+{}", b.offset),
            format!("{}..={}", b.first, b.last),
            b.name
        );
    }
    let _ = writeln!(s, "\n[kernels] {}", p.kernels.len());
    for k in &p.kernels {
        let params: Vec<String> = k
            .params
            .iter()
            .map(|(t, n)| t.c_param(n, !k.in_place))
            .collect();
        let _ = writeln!(
            s,
            "{}({}){}{}",
            k.name,
            params.join(", "),
            if k.sync { " sync" } else { "" },
            if k.in_place { " in_place" } else { "" }
        );
    }
    let _ = writeln!(s, "\n[steps] {}", p.steps.len());
    let arg = |a: &Arg| match *a {
        a if a == Arg::seed(p.scalars) => "seed".into(),
        a if a == Arg::lr(p.scalars) => "lr".into(),
        Arg::Buf(b) => format!("b{b}"),
        Arg::At(b, at) => format!("b{b}+{at}"),
    };
    for (i, st) in p.steps.iter().enumerate() {
        match st {
            Step::Launch(l) => {
                let args: Vec<String> = l.args.iter().map(arg).collect();
                let _ = writeln!(
                    s,
                    "{i:<4} @{:<4} launch {} grid={} block={} args=({})  # {}",
                    l.pos,
                    p.kernels.get(l.kernel).map_or("?", |k| k.name.as_str()),
                    l.grid,
                    l.block,
                    args.join(", "),
                    l.node
                );
            }
            Step::Gemm(g) => {
                let t = |b: bool| if b { 'T' } else { 'N' };
                let _ = writeln!(
                    s,
                    "{i:<4} @{:<4} sgemm {}{} m={} n={} k={} alpha={} A={} lda={} B={} ldb={} beta={} C={} ldc={}  # {}",
                    g.pos,
                    t(g.transa),
                    t(g.transb),
                    g.m,
                    g.n,
                    g.k,
                    g.alpha,
                    operand(g.a, g.a_at),
                    g.lda,
                    operand(g.b, g.b_at),
                    g.ldb,
                    g.beta,
                    operand(g.c, g.c_at),
                    g.ldc,
                    g.node
                );
            }
            Step::Copy {
                src,
                dst,
                node,
                pos,
            } => {
                let dev = |b: usize| p.device_of(b).map_or("?".into(), |d| d.to_string());
                let bytes = p.buffers.get(*src).map_or(0, |d| d.bytes());
                let _ = writeln!(
                    s,
                    "{i:<4} @{pos:<4} copy b{src} (dev{}) -> b{dst} (dev{}) {bytes} bytes  # for {node}",
                    dev(*src),
                    dev(*dst)
                );
            }
        }
    }
    s
}
