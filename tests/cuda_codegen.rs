//! Generated CUDA for every network in `networks/`, from the unfused and
//! the fused training step: snapshots of the source and the launch list
//! (`alexnet-fmnist.net`, both steps), launch-list sanity, and NVRTC
//! compiles every kernel of both for `sm_80` and `sm_90` (skipped with a
//! message when NVRTC cannot be loaded, unless `NETC_REQUIRE_NVRTC=1`).

use netc::backend::cuda::{self, CudaProgram, program::Step};
use netc::frontend;
use netc::passes::autodiff::autodiff;
use netc::passes::fuse::fuse;

fn program(path: &std::path::Path, batch: usize, fused: bool) -> CudaProgram {
    let src = std::fs::read_to_string(path).unwrap();
    let c = frontend::compile(&src).unwrap_or_else(|_| panic!("{} compiles", path.display()));
    let mut g = c.module.graph.clone();
    autodiff(&mut g, &c.module.train.sgd).unwrap();
    if fused {
        fuse(&mut g).unwrap();
    }
    cuda::generate(&g, batch).unwrap()
}

#[test]
fn generated_source_snapshots() {
    let p = program(
        std::path::Path::new("networks/alexnet-fmnist.net"),
        128,
        false,
    );
    insta::assert_snapshot!("alexnet_fmnist_cu", p.source);
    insta::assert_snapshot!("alexnet_fmnist_launch", cuda::manifest::render(&p));
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
    insta::assert_snapshot!("alexnet_fmnist_fused_launch", cuda::manifest::render(&p));
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
                assert!(g.lda * (ac - 1) + ar <= p.buffers[g.a].elems, "{}", g.node);
                assert!(g.ldb * (bc - 1) + br <= p.buffers[g.b].elems, "{}", g.node);
                assert!(
                    g.ldc * (g.n - 1) + g.m <= p.buffers[g.c].elems,
                    "{}",
                    g.node
                );
            }
        }
    }
    // Deterministic.
    assert_eq!(p, program(path, 8, fused));
}

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
    for net in ["networks/alexnet-fmnist.net", "networks/alexnet.net"] {
        for fused in [false, true] {
            let p = program(std::path::Path::new(net), 128, fused);
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
