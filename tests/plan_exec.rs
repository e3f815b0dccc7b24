//! Executing from the memory plan: on every network in `networks/` and on
//! a two-tower net with a backward chain, fused and unfused, the planned
//! executor (arenas poisoned with NaN before every step, so a read of
//! memory not written in the step would show) gives bit-for-bit the loss,
//! logits, parameters and velocities of the executor that gives every
//! buffer its own allocation, over several training steps and evaluation
//! at a smaller batch; the fused and planned step equals the unfused and
//! unplanned one; the planned arenas are smaller.

mod common;

use netc::backend::cpu::exec::{CpuExec, Layout};
use netc::ir::Graph;

fn graphs(src: &str) -> Vec<(&'static str, Graph)> {
    vec![
        ("unfused", common::training_graph(src)),
        ("fused", common::fused_graph(src).0),
    ]
}

fn state(e: &CpuExec) -> Vec<Vec<f32>> {
    e.state()
        .iter()
        .map(|(_, n)| e.value(*n).to_vec())
        .collect()
}

/// Runs `steps` training steps of batch `batch`, then an evaluation at a
/// smaller batch, planned and separate, and compares everything.
fn same(name: &str, g: Graph, batch: usize, steps: u64) -> Vec<f64> {
    let mut sep = CpuExec::<f32>::with_memory(g.clone(), 5, Layout::Separate).unwrap();
    let mut pl = CpuExec::<f32>::with_memory(g, 5, Layout::Planned).unwrap();
    pl.set_poison(true);
    let classes = pl.logits_width() as u32;
    let mut losses = Vec::new();
    for step in 0..steps {
        let (images, labels) = common::batch(&sep, batch, classes, step);
        let a = sep.train_step(&images, &labels, 0.01, step).unwrap();
        let b = pl.train_step(&images, &labels, 0.01, step).unwrap();
        assert!(a.loss.is_finite(), "{name}: loss {}", a.loss);
        assert_eq!(a, b, "{name}: step {step}");
        assert_eq!(sep.logits(), pl.logits(), "{name}: logits, step {step}");
        assert!(state(&sep) == state(&pl), "{name}: parameters, step {step}");
        losses.push(a.loss);
    }
    let (images, labels) = common::batch(&sep, batch.div_ceil(2), classes, 99);
    let a = sep.eval_batch(&images, &labels).unwrap();
    let b = pl.eval_batch(&images, &labels).unwrap();
    assert_eq!(a, b, "{name}: evaluation");
    assert_eq!(sep.logits(), pl.logits(), "{name}: evaluation logits");
    assert!(
        pl.arena_bytes() < sep.arena_bytes(),
        "{name}: planned {} bytes, separate {}",
        pl.arena_bytes(),
        sep.arena_bytes()
    );
    losses
}

#[test]
fn planned_equals_separate_on_a_two_tower_chain() {
    let mut curves = Vec::new();
    for (kind, g) in graphs(common::CHAIN_NET) {
        curves.push(same(&format!("chain {kind}"), g, 6, 4));
    }
    assert_eq!(curves[0], curves[1], "fused and unfused loss curves");
}

#[test]
fn planned_equals_separate_on_every_network() {
    let mut paths: Vec<_> = std::fs::read_dir("networks")
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "net"))
        .collect();
    paths.sort();
    for path in paths {
        let src = std::fs::read_to_string(&path).unwrap();
        // AlexNet proper takes 224×224 images: a small batch and one step.
        let big = src.contains("224");
        let (batch, steps) = if big { (2, 1) } else { (8, 3) };
        let mut curves = Vec::new();
        for (kind, g) in graphs(&src) {
            curves.push(same(&format!("{} {kind}", path.display()), g, batch, steps));
        }
        assert_eq!(curves[0], curves[1], "{}: fused vs unfused", path.display());
    }
}

#[test]
fn a_larger_batch_replans_and_keeps_the_parameters() {
    let g = common::fused_graph(common::CHAIN_NET).0;
    let mut sep = CpuExec::<f32>::with_memory(g.clone(), 2, Layout::Separate).unwrap();
    let mut pl = CpuExec::<f32>::with_memory(g, 2, Layout::Planned).unwrap();
    assert!(state(&sep) == state(&pl));
    for (step, batch) in [(0u64, 2usize), (1, 7), (2, 3), (3, 9)] {
        let (images, labels) = common::batch(&sep, batch, 3, step);
        let a = sep.train_step(&images, &labels, 0.02, step).unwrap();
        let b = pl.train_step(&images, &labels, 0.02, step).unwrap();
        assert_eq!(a, b, "step {step}, batch {batch}");
        assert!(state(&sep) == state(&pl), "step {step}");
    }
}
