//! The executor against itself: two towers equal the merged grouped
//! computation (f64, forward and gradients); training without dropout is
//! bit-for-bit repeatable from a seed; evaluation ignores dropout.

mod common;

use netc::backend::cpu::exec::CpuExec;
use netc::ir::Graph;

/// Two towers. `c2` is tower-local (in the merged net: a grouped
/// convolution, block-diagonal weights); `c3`, `f` and `out` read both
/// towers. LRN of size 1 is per channel, so it does not see the tower
/// boundary that a wider window would cross in the merged net.
const TOWERS: &str = "
network two_towers {
  input image: [2, 9, 9]
  input label: class(3)
  towers 2 {
    c1 = conv(image, filters: 8, size: 3, pad: 1) -> relu -> lrn(size: 1, alpha: 0.1, beta: 0.75, k: 2) -> maxpool(size: 3, stride: 2)
    c2 = conv(c1, filters: 8, size: 3, pad: 1) -> relu
    c3 = conv(across(c2), filters: 8, size: 3, pad: 1) -> relu
    f = dense(across(c3), units: 12) -> relu
  }
  out = dense(across(f), units: 3)
  loss = softmax_xent(out, label)
}
train { init { weight: he  bias: 0.1 } }
";

/// The same network as one tower with full channel counts.
const MERGED: &str = "
network merged {
  input image: [2, 9, 9]
  input label: class(3)
  c1 = conv(image, filters: 8, size: 3, pad: 1) -> relu -> lrn(size: 1, alpha: 0.1, beta: 0.75, k: 2) -> maxpool(size: 3, stride: 2)
  c2 = conv(c1, filters: 8, size: 3, pad: 1) -> relu
  c3 = conv(c2, filters: 8, size: 3, pad: 1) -> relu
  f = dense(c3, units: 12) -> relu
  out = dense(f, units: 3)
  loss = softmax_xent(out, label)
}
train { init { weight: he  bias: 0.1 } }
";

/// How a tower's tensor sits in the merged one.
enum Layout {
    /// Rows (first axis) stacked in tower order: `[t0; t1]`.
    Stack,
    /// Block diagonal over (filters, channels) of a `[F, C, K, K]` weight.
    BlockDiag,
}

const PARAMS: [(&str, Layout); 8] = [
    ("c1/conv.weight", Layout::Stack),
    ("c1/conv.bias", Layout::Stack),
    ("c2/conv.weight", Layout::BlockDiag),
    ("c2/conv.bias", Layout::Stack),
    ("c3/conv.weight", Layout::Stack),
    ("c3/conv.bias", Layout::Stack),
    ("f/dense.weight", Layout::Stack),
    ("f/dense.bias", Layout::Stack),
];

/// Index in the merged tensor of element `i` of tower `t`'s tensor, or
/// for `BlockDiag`, with tower dims `[f, c, kk]`.
fn merged_index(layout: &Layout, dims: &[u64], t: usize, i: usize) -> usize {
    let len: usize = dims.iter().product::<u64>() as usize;
    match layout {
        Layout::Stack => t * len + i,
        Layout::BlockDiag => {
            let (f, c) = (dims[0] as usize, dims[1] as usize);
            let kk = len / (f * c);
            let (fi, rest) = (i / (c * kk), i % (c * kk));
            let (ci, ki) = (rest / kk, rest % kk);
            ((t * f + fi) * 2 * c + t * c + ci) * kk + ki
        }
    }
}

fn run_pair() -> (CpuExec<f64>, CpuExec<f64>, Vec<f64>, Vec<u32>) {
    let tg: Graph = common::training_graph(TOWERS);
    let mg: Graph = common::training_graph(MERGED);
    let towers = CpuExec::<f64>::new(tg, 1).unwrap();
    let mut merged = CpuExec::<f64>::new(mg, 2).unwrap();
    for (name, layout) in &PARAMS {
        let m = common::param(merged.graph(), name, 0);
        merged.value_mut(m).fill(0.0);
        for t in 0..2 {
            let tn = common::param(towers.graph(), name, t as u32);
            let dims = towers.graph().node(tn).ty.dims().to_vec();
            let src = towers.value(tn).to_vec();
            let dst = merged.value_mut(m);
            for (i, v) in src.iter().enumerate() {
                dst[merged_index(layout, &dims, t, i)] = *v;
            }
        }
    }
    for name in ["out/dense.weight", "out/dense.bias"] {
        let src = towers
            .value(common::param(towers.graph(), name, 0))
            .to_vec();
        let m = common::param(merged.graph(), name, 0);
        merged.value_mut(m).copy_from_slice(&src);
    }
    let (images, labels) = common::batch(&towers, 6, 3, 4);
    (towers, merged, images, labels)
}

fn close(a: f64, b: f64) -> bool {
    (a - b).abs() <= 1e-10 * a.abs().max(b.abs()).max(1.0)
}

#[test]
fn two_towers_equal_the_merged_grouped_network() {
    let (mut towers, mut merged, images, labels) = run_pair();
    let a = towers.train_step(&images, &labels, 0.0, 0).unwrap();
    let b = merged.train_step(&images, &labels, 0.0, 0).unwrap();
    assert!(close(a.loss, b.loss), "loss {} vs {}", a.loss, b.loss);
    assert!(a.loss > 0.1);
    for (x, y) in towers.logits().iter().zip(merged.logits()) {
        assert!(close(*x, *y), "logits {x} vs {y}");
    }
    // Gradients: every tower gradient is found in the merged one.
    let tgrads = common::param_grads(towers.graph());
    let mgrads = common::param_grads(merged.graph());
    let grad_of = |pairs: &[(String, _, netc::ir::NodeId)], key: &str| {
        pairs.iter().find(|p| p.0 == key).map(|p| p.2).unwrap()
    };
    for (name, layout) in &PARAMS {
        let mgrad = merged.value(grad_of(&mgrads, &format!("{name}@t0")));
        for t in 0..2 {
            let tgrad_n = grad_of(&tgrads, &format!("{name}@t{t}"));
            let tn = common::param(towers.graph(), name, t as u32);
            let dims = towers.graph().node(tn).ty.dims().to_vec();
            for (i, v) in towers.value(tgrad_n).iter().enumerate() {
                let m = mgrad[merged_index(layout, &dims, t, i)];
                assert!(close(*v, m), "{name}@t{t}[{i}]: {v} vs {m}");
            }
        }
    }
    for name in ["out/dense.weight", "out/dense.bias"] {
        let key = format!("{name}@t0");
        let (x, y) = (
            towers.value(grad_of(&tgrads, &key)),
            merged.value(grad_of(&mgrads, &key)),
        );
        assert!(x.iter().zip(y).all(|(a, b)| close(*a, *b)), "{name}");
    }
}

fn trained_params(src: &str) -> Vec<Vec<f32>> {
    let g = common::training_graph(src);
    let mut exec = CpuExec::<f32>::new(g, 3).unwrap();
    for step in 0..4 {
        let (images, labels) = common::batch(&exec, 5, 3, step);
        exec.train_step(&images, &labels, 0.05, step).unwrap();
    }
    exec.state()
        .iter()
        .map(|(_, n)| exec.value(*n).to_vec())
        .collect()
}

#[test]
fn training_without_dropout_repeats_bit_for_bit() {
    let a = trained_params(TOWERS);
    let b = trained_params(TOWERS);
    assert_eq!(a, b);
    let fresh = {
        let g = common::training_graph(TOWERS);
        let exec = CpuExec::<f32>::new(g, 3).unwrap();
        exec.state()
            .iter()
            .map(|(_, n)| exec.value(*n).to_vec())
            .collect::<Vec<_>>()
    };
    assert_ne!(a, fresh, "training moved nothing");
}

#[test]
fn evaluation_ignores_dropout() {
    // Dropout adds no parameters, so both nets initialise identically.
    let with = TOWERS.replace(
        "units: 12) -> relu",
        "units: 12) -> relu -> dropout(rate: 0.5)",
    );
    let mut a = CpuExec::<f64>::new(common::training_graph(&with), 4).unwrap();
    let mut b = CpuExec::<f64>::new(common::training_graph(TOWERS), 4).unwrap();
    let (images, labels) = common::batch(&a, 6, 3, 5);
    let sa = a.eval_batch(&images, &labels).unwrap();
    let sb = b.eval_batch(&images, &labels).unwrap();
    assert_eq!(sa.loss, sb.loss);
    assert_eq!(a.logits(), b.logits());
    // In training, dropout does change the loss.
    let ta = a.train_step(&images, &labels, 0.0, 0).unwrap();
    assert_ne!(ta.loss, sa.loss);
}
