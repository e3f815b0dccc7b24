//! A finite-difference check, in f64, of the gradients of a whole small
//! network with two towers, cross-tower edges, LRN, overlapping max
//! pooling and dropout: the training step run with learning rate 0 (so no
//! parameter moves) gives the analytic gradients (the third input of each
//! `sgd_update`); central differences of the loss, with the dropout mask
//! held fixed by a fixed step number, give the numeric ones.

mod common;

use netc::backend::cpu::exec::CpuExec;

const NET: &str = "
network two_towers {
  input image: [2, 9, 9]
  input label: class(3)
  towers 2 {
    c1 = conv(image, filters: 8, size: 3, pad: 1) -> relu -> lrn(size: 3, alpha: 0.1, beta: 0.75, k: 2) -> maxpool(size: 3, stride: 2)
    c2 = conv(across(c1), filters: 8, size: 3, pad: 1) -> relu
    f = dense(across(c2), units: 12) -> relu -> dropout(rate: 0.5)
  }
  out = dense(across(f), units: 3)
  loss = softmax_xent(out, label)
}
train {
  init {
    weight: he
    bias: 0.1
  }
}
";

const STEP: u64 = 3;
const EPS: f64 = 1e-6;
/// Relative error bound; the denominator is floored at `FLOOR` so that
/// gradients that are zero (a dead ReLU, a dropped unit) compare absolutely.
const TOL: f64 = 1e-5;
const FLOOR: f64 = 1e-6;

fn check(g: netc::ir::Graph) -> usize {
    let pairs = common::param_grads(&g);
    let mut exec = CpuExec::<f64>::new(g, 5).unwrap();
    let (images, labels) = common::batch(&exec, 4, 3, 9);
    exec.train_step(&images, &labels, 0.0, STEP).unwrap();
    let analytic: Vec<Vec<f64>> = pairs.iter().map(|p| exec.value(p.2).to_vec()).collect();
    let mut checked = 0;
    let mut worst = 0.0f64;
    for ((name, w, _), grad) in pairs.iter().zip(&analytic) {
        assert!(
            grad.iter().any(|v| *v != 0.0),
            "{name}: gradient is all zero"
        );
        let len = grad.len();
        for j in 0..5u64 {
            let i = (netc::rng::bits(1, j, len as u64) % len as u64) as usize;
            let orig = exec.value(*w)[i];
            exec.value_mut(*w)[i] = orig + EPS;
            let up = exec.train_step(&images, &labels, 0.0, STEP).unwrap().loss;
            exec.value_mut(*w)[i] = orig - EPS;
            let down = exec.train_step(&images, &labels, 0.0, STEP).unwrap().loss;
            exec.value_mut(*w)[i] = orig;
            let num = (up - down) / (2.0 * EPS);
            let rel = (num - grad[i]).abs() / num.abs().max(grad[i].abs()).max(FLOOR);
            worst = worst.max(rel);
            assert!(
                rel <= TOL,
                "{name}[{i}]: analytic {} numeric {num} (relative error {rel:e})",
                grad[i]
            );
            checked += 1;
        }
    }
    eprintln!("{checked} elements checked, worst relative error {worst:e}");
    checked
}

#[test]
fn whole_network_gradients_match_central_differences() {
    let g = common::training_graph(NET);
    // 2 towers × (c1, c2, f) × (weight, bias) + out × (weight, bias).
    assert_eq!(common::param_grads(&g).len(), 14);
    assert_eq!(check(g), 14 * 5);
}

#[test]
fn fused_network_gradients_match_central_differences() {
    let (g, report) = common::fused_graph(NET);
    for r in ["conv+relu", "dense+relu+dropout", "lrn+maxpool"] {
        assert!(report.fired[r] > 0, "{r} did not fire: {report}");
    }
    assert_eq!(check(g), 14 * 5);
}

#[test]
fn fused_grad_chain_gradients_match_central_differences() {
    let (g, report) = common::fused_graph(common::CHAIN_NET);
    assert_eq!(report.fired["grad_chain"], 2, "{report}");
    assert_eq!(check(g), 10 * 5);
}

/// Padding wider than the kernel (PyTorch and Caffe accept it): whole
/// windows of `c1` lie in the padding, and `c2`'s stride skips across it.
const WIDE_PAD: &str = "
network wide_pad {
  input image: [2, 6, 6]
  input label: class(3)
  c1 = conv(image, filters: 4, size: 3, pad: 4) -> relu -> maxpool(size: 3, stride: 2)
  c2 = conv(c1, filters: 4, size: 2, stride: 2, pad: 3) -> relu
  out = dense(c2, units: 3)
  loss = softmax_xent(out, label)
}
train { init { weight: he  bias: 0.1 } }
";

#[test]
fn padding_wider_than_the_kernel_gradients_match_central_differences() {
    let g = common::training_graph(WIDE_PAD);
    assert_eq!(check(g), 6 * 5);
    let (g, report) = common::fused_graph(WIDE_PAD);
    assert!(report.fired["conv+relu"] > 0, "{report}");
    assert_eq!(check(g), 6 * 5);
}

/// Every layer type added after AlexNet's: `tanh`, padded `maxpool`,
/// `sigmoid`, padded `avgpool` (padding in the divisor), `leaky_relu`,
/// `global_avgpool`, `flatten`, and a `softmax` output beside the loss
/// (computed, but no gradient flows through it).
const NEW_LAYERS: &str = "
network new_layers {
  input image: [2, 9, 9]
  input label: class(3)
  c1 = conv(image, filters: 4, size: 3, pad: 1) -> tanh -> maxpool(size: 3, stride: 2, pad: 1)
  c2 = conv(c1, filters: 6, size: 3, pad: 1) -> sigmoid -> avgpool(size: 3, stride: 2, pad: 1)
  c3 = conv(c2, filters: 5, size: 1) -> leaky_relu(slope: 0.1) -> global_avgpool
  f = flatten(c2) -> dense(units: 8) -> tanh
  both = concat(c3, f)
  out = dense(both, units: 3)
  probs = softmax(out)
  loss = softmax_xent(out, label)
}
train { init { weight: he  bias: 0.1 } }
";

#[test]
fn new_layer_types_gradients_match_central_differences() {
    let g = common::training_graph(NEW_LAYERS);
    let has = |m: &str| g.node_ids().any(|n| g.node(n).op.mnemonic() == m);
    for m in [
        "tanh_grad",
        "sigmoid_grad",
        "leaky_relu_grad",
        "maxpool_grad",
        "avgpool_grad",
        "global_avgpool_grad",
        "flatten_grad",
        "softmax",
    ] {
        assert!(has(m), "no `{m}` in the training step");
    }
    assert!(!has("softmax_grad"));
    assert_eq!(check(g), 10 * 5);
}

/// Every form of `conv` but the plain one, and a residual `add`: groups,
/// a rectangular kernel with per-axis stride and padding, dilation, and a
/// convolution without a bias, whose output is summed with its input.
const CONV_FORMS: &str = "
network conv_forms {
  input image: [4, 9, 9]
  input label: class(3)
  c1 = conv(image, filters: 6, size: [3, 2], stride: [1, 2], pad: [1, 0], groups: 2) -> relu
  c2 = conv(c1, filters: 6, size: 3, pad: 2, dilation: 2, groups: 3, bias: false)
  r = add(c2, c1) -> relu
  out = dense(r, units: 3)
  loss = softmax_xent(out, label)
}
train { init { weight: he  bias: 0.1 } }
";

#[test]
fn grouped_dilated_rectangular_biasless_and_residual_gradients_match_central_differences() {
    let g = common::training_graph(CONV_FORMS);
    // c1 (weight, bias), c2 (weight only), out (weight, bias).
    assert_eq!(common::param_grads(&g).len(), 5);
    assert!(g.find("c2/conv.bias", netc::ir::Device::Tower(0)).is_none());
    assert_eq!(check(g), 5 * 5);
    let (g, report) = common::fused_graph(CONV_FORMS);
    assert!(report.fired["conv+relu"] > 0, "{report}");
    assert_eq!(check(g), 5 * 5);
}

/// Batchnorm after a biasless conv and after a dense layer, inside a
/// residual block: each output depends on the whole batch through the
/// batch statistics, which the central differences see too.
const BATCHNORM: &str = "
network bn_res {
  input image: [3, 6, 6]
  input label: class(3)
  c1 = conv(image, filters: 4, size: 3, pad: 1, bias: false) -> batchnorm -> relu
  c2 = conv(c1, filters: 4, size: 3, pad: 1, bias: false) -> batchnorm(momentum: 0.2, eps: 1e-3)
  r = add(c2, c1) -> relu
  f = dense(r, units: 5) -> batchnorm -> relu
  out = dense(f, units: 3)
  loss = softmax_xent(out, label)
}
train { init { weight: he  bias: 0.1 } }
";

#[test]
fn batchnorm_gradients_match_central_differences() {
    let g = common::training_graph(BATCHNORM);
    // c1.w, c1 γ β, c2.w, c2 γ β, f w b, f γ β, out w b.
    assert_eq!(common::param_grads(&g).len(), 12);
    assert_eq!(check(g), 12 * 5);
}
