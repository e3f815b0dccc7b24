//! The launch list as readable text (`launch.txt`): buffers, kernels and
//! steps, one per line, in execution order.

use std::fmt::Write;

use super::program::{Arg, CudaProgram, Step};

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
    let _ = writeln!(s, "\n[buffers] {}", p.buffers.len());
    for (i, b) in p.buffers.iter().enumerate() {
        let _ = writeln!(
            s,
            "b{i:<4} {:<8} {:<3} {:>11}  {}",
            format!("{:?}", b.kind).to_lowercase(),
            format!("{:?}", b.dtype).to_lowercase(),
            b.elems,
            b.name
        );
    }
    let _ = writeln!(s, "\n[kernels] {}", p.kernels.len());
    for k in &p.kernels {
        let params: Vec<String> = k.params.iter().map(|(t, n)| t.c_decl(n)).collect();
        let _ = writeln!(
            s,
            "{}({}){}",
            k.name,
            params.join(", "),
            if k.sync { " sync" } else { "" }
        );
    }
    let _ = writeln!(s, "\n[steps] {}", p.steps.len());
    let arg = |a: &Arg| match a {
        Arg::Buf(b) => format!("b{b}"),
        Arg::Seed => "seed".into(),
        Arg::Lr => "lr".into(),
    };
    for (i, st) in p.steps.iter().enumerate() {
        match st {
            Step::Launch(l) => {
                let args: Vec<String> = l.args.iter().map(arg).collect();
                let _ = writeln!(
                    s,
                    "{i:<4} launch {} grid={} block={} args=({})  # {}",
                    p.kernels[l.kernel].name,
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
                    "{i:<4} sgemm {}{} m={} n={} k={} alpha={} A=b{} lda={} B=b{} ldb={} beta={} C=b{} ldc={}  # {}",
                    t(g.transa),
                    t(g.transb),
                    g.m,
                    g.n,
                    g.k,
                    g.alpha,
                    g.a,
                    g.lda,
                    g.b,
                    g.ldb,
                    g.beta,
                    g.c,
                    g.ldc,
                    g.node
                );
            }
        }
    }
    s
}
