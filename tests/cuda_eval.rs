//! The evaluation program (`backend::cuda::generate::forward`): the forward part of
//! the training step with dropout off, generated, compiled by NVRTC and
//! run on the emulator against `CpuExec::eval_batch` on the same weights.

mod emu;

use emu::{build, have_gxx, rand, run_step, view, view_mut};
use netc::backend::cpu::exec::CpuExec;
use netc::backend::cuda::generate::buffers::node_key;
use netc::backend::cuda::generate::forward;
use netc::backend::cuda::program::Step;
use netc::frontend;
use netc::passes::autodiff::autodiff;
use netc::rng;

fn training_graph(path: &str, fused: bool) -> netc::ir::Graph {
    let src = std::fs::read_to_string(path).unwrap();
    let c = frontend::compile(&src).unwrap_or_else(|d| panic!("{path}: {:?}", d.message));
    let mut g = c.module.graph.clone();
    autodiff(&mut g, &c.module.train.sgd).unwrap();
    if fused {
        netc::passes::fuse::fuse(&mut g).unwrap();
    }
    g
}

/// The forward program keeps no gradient or update, finds every parameter
/// by the training program's name, and NVRTC compiles it.
#[test]
fn forward_program_has_no_backward_and_compiles() {
    for (path, fused) in [
        ("networks/alexnet.net", true),
        ("networks/alexnet.net", false),
        ("networks/alexnet-fmnist.net", true),
        ("tests/nets/residual-bn.net", false),
        ("tests/nets/residual-bn.net", true),
        ("networks/resnet-fmnist.net", true),
        ("networks/vgg-fmnist.net", true),
    ] {
        let g = training_graph(path, fused);
        let train = netc::backend::cuda::generate(&g, 8).unwrap();
        let fwd = forward::generate(&g, 8).unwrap();
        assert!(fwd.steps.len() * 2 < train.steps.len(), "{path}");
        assert!(
            fwd.kernels.iter().all(|k| !k.name.starts_with("sgd")),
            "{path}"
        );
        let params: Vec<&str> = train
            .buffers
            .iter()
            .filter(|d| d.kind == netc::backend::cuda::program::BufKind::Param)
            .map(|d| d.name.as_str())
            .collect();
        assert!(!params.is_empty());
        for name in params {
            assert!(
                fwd.buffer(name).is_some(),
                "{path}: no `{name}` in the forward program"
            );
        }
        assert!(fwd.bytes() < train.bytes(), "{path}");
        // The training graph itself is refused as a forward program only
        // through its missing update when `forward` is off.
        let fg = netc::passes::forward::forward_graph(&g).unwrap();
        assert!(netc::backend::cuda::generate(&fg, 8).is_err());
        if netc::backend::cuda::nvrtc::available() {
            netc::backend::cuda::nvrtc::compile(&fwd.source, "sm_80")
                .unwrap_or_else(|e| panic!("{path}: {e}"));
        } else {
            let msg = "NVRTC cannot be loaded (install nvidia-cuda-nvrtc and put its lib folder on LD_LIBRARY_PATH)";
            if std::env::var("NETC_REQUIRE_NVRTC").as_deref() == Ok("1") {
                panic!("{msg}, and NETC_REQUIRE_NVRTC=1");
            }
            eprintln!("skipped compiling the forward program: {msg}");
        }
    }
}

/// On the emulator, the forward program's logits and loss equal the CPU
/// executor's evaluation (dropout off) to 1e-4, fused and unfused.
#[test]
fn emulated_forward_program_matches_cpu_eval() {
    if !have_gxx() {
        return;
    }
    for (path, fused) in [
        ("networks/alexnet-fmnist.net", true),
        ("networks/alexnet-fmnist.net", false),
    ] {
        let g = training_graph(path, fused);
        let batch = 4;
        let p = forward::generate(&g, batch).unwrap();
        let tag = if fused { "eval-fused" } else { "eval" };
        let emu = build(tag, &p.source, &p.kernels);
        let mut cpu = CpuExec::new(g.clone(), 5).unwrap();
        let mut mem = vec![f32::NAN; (p.bytes() / 4) as usize];
        for n in g.node_ids() {
            if let Some(b) = p.buffer(&node_key(&g, n))
                && g.node(n).op.is_param()
            {
                view_mut(&p, &mut mem, b).copy_from_slice(cpu.value(n));
            }
        }
        let images = rand(31, p.buffers[p.image].elems, 1.0);
        let classes = (p.buffers[p.logits].elems / batch) as u64;
        let labels: Vec<u32> = (0..batch as u64)
            .map(|i| (rng::bits(9, 6, i) % classes) as u32)
            .collect();
        view_mut(&p, &mut mem, p.image).copy_from_slice(&images);
        let bits: Vec<f32> = labels.iter().map(|&l| f32::from_bits(l)).collect();
        view_mut(&p, &mut mem, p.labels).copy_from_slice(&bits);
        // A different seed each run: dropout is off, so it must not matter.
        run_step(&emu, &p, &mut mem, 12345, 0.0, |_, _| {});
        let want = cpu.eval_batch(&images, &labels).unwrap();
        let logits = view(&p, &mem, p.logits);
        emu::check(&format!("{path} logits"), logits, cpu.logits(), 1e-4);
        let loss = view(&p, &mem, p.loss)[0] as f64;
        assert!(
            (loss - want.loss).abs() <= 1e-4 * want.loss.abs().max(1.0),
            "{path}: loss {loss} against {}",
            want.loss
        );
        assert!(p.steps.iter().all(|s| match s {
            Step::Launch(l) => p.kernels[l.kernel].name.find("grad").is_none(),
            Step::Gemm(_) => true,
            Step::Copy { .. } => false,
        }));
    }
}
