//! Helpers shared by the executor tests: compile a `.net` source into a
//! training step (optionally fused), random batches, parameter lookup.

#![allow(dead_code)]

use netc::backend::cpu::exec::CpuExec;
use netc::backend::cpu::kernels::Float;
use netc::ir::{Device, Graph, NodeId, Op};
use netc::passes::autodiff::autodiff;

/// Compiles `src` and appends the training step; the result verifies.
pub fn training_graph(src: &str) -> Graph {
    let c = netc::frontend::compile(src).unwrap_or_else(|d| panic!("{}", d.message));
    let mut g = c.module.graph.clone();
    autodiff(&mut g, &c.module.train.sgd).unwrap();
    netc::ir::verify::verify(&g).unwrap();
    g
}

/// A deterministic batch of `n` images and labels for `exec`.
pub fn batch<T: Float>(exec: &CpuExec<T>, n: usize, classes: u32, seed: u64) -> (Vec<T>, Vec<u32>) {
    let per = exec.image_len();
    let images = (0..n * per)
        .map(|i| T::from_f64(netc::rng::normal(seed, 11, i as u64)))
        .collect();
    let labels = (0..n)
        .map(|i| (netc::rng::bits(seed, 12, i as u64) % classes as u64) as u32)
        .collect();
    (images, labels)
}

/// The node of a parameter by name and tower.
pub fn param(g: &Graph, name: &str, tower: u32) -> NodeId {
    g.find(name, Device::Tower(tower))
        .unwrap_or_else(|| panic!("no parameter `{name}` on t{tower}"))
}

/// Every (weight or bias, its gradient) pair: the first and third inputs
/// of each `sgd_update`, sorted by name and tower.
pub fn param_grads(g: &Graph) -> Vec<(String, NodeId, NodeId)> {
    let mut v: Vec<(String, NodeId, NodeId)> = g
        .node_ids()
        .filter(|n| matches!(g.node(*n).op, Op::SgdUpdate { .. }))
        .map(|n| {
            let ins = g.inputs(n);
            let w = g.node(ins[0]);
            (format!("{}@{}", w.name, w.device), ins[0], ins[2])
        })
        .collect();
    v.sort();
    v
}

/// [`training_graph`], then the fusion pass; the result verifies.
pub fn fused_graph(src: &str) -> (Graph, netc::passes::fuse::FuseReport) {
    let mut g = training_graph(src);
    let report = netc::passes::fuse::fuse(&mut g).unwrap();
    netc::ir::verify::verify(&g).unwrap();
    (g, report)
}

/// Two towers whose ReLU and dropout follow a pooling (nothing to fuse
/// them into), read by both towers: backward, `add` → `dropout_grad` →
/// `relu_grad` is left for the `grad_chain` rewrite.
pub const CHAIN_NET: &str = "
network chain {
  input image: [2, 9, 9]
  input label: class(3)
  towers 2 {
    c1 = conv(image, filters: 8, size: 3, pad: 1) -> maxpool(size: 3, stride: 2) -> relu -> dropout(rate: 0.3)
    c2 = conv(across(c1), filters: 8, size: 3, pad: 1) -> relu
  }
  out = dense(across(c2), units: 3)
  loss = softmax_xent(out, label)
}
train { init { weight: he  bias: 0.1 } }
";
