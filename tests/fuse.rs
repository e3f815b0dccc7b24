//! The fusion pass: on every network in `networks/` the fused training
//! step verifies and its IR text (before and after) is snapshot-tested;
//! fused execution equals unfused execution (f64 values and gradients on
//! small nets, LeNet-5 and the all-convolutional net, bit for bit; the f32
//! loss curve of `alexnet-fmnist.net`).

mod common;

use netc::backend::cpu::exec::CpuExec;
use netc::data::Dataset;
use netc::ir::print::{PrintOptions, print};
use netc::passes::fuse::fuse;

#[test]
fn every_network_fuses_and_verifies() {
    insta::glob!("../networks", "*.net", |path| {
        let src = std::fs::read_to_string(path).unwrap();
        let mut g = common::training_graph(&src);
        let opts = PrintOptions { spans: false };
        insta::assert_snapshot!("train_ir", print(&g, opts));
        let before = g.node_count_hint();
        let report = fuse(&mut g).unwrap();
        netc::ir::verify::verify(&g).unwrap();
        insta::assert_snapshot!("fused_ir", format!("; {report}\n{}", print(&g, opts)));
        // The AlexNets have every ReLU pattern; LeNet-5 conv → tanh and
        // dense → tanh, the all-convolutional net conv → leaky ReLU.
        let file = path
            .file_name()
            .map_or(String::new(), |f| f.to_string_lossy().into_owned());
        let alexnet = file.starts_with("alexnet");
        for r in ["conv+relu", "dense+relu+dropout", "lrn+maxpool"] {
            assert!(
                report.fired[r] > 0 || !alexnet,
                "{}: {r} never fired",
                path.display()
            );
        }
        let acts = match file.as_str() {
            "lenet5.net" => [2, 2],
            "allconv-fmnist.net" => [3, 0],
            _ => [0, 0],
        };
        assert_eq!(
            [report.fired["conv+act"], report.fired["dense+act"]],
            acts,
            "{file}: {report}"
        );
        assert!(g.node_count_hint() < before || !(alexnet || acts[0] > 0));
        // A second run finds nothing left to fuse.
        let again = fuse(&mut g).unwrap();
        assert!(again.fired.values().all(|n| *n == 0), "{again}");
    });
}

trait Count {
    fn node_count_hint(&self) -> usize;
}

impl Count for netc::ir::Graph {
    fn node_count_hint(&self) -> usize {
        self.g.node_count()
    }
}

/// Loss and every gradient of one step, fused and unfused, in f64.
fn same_step(src: &str) {
    let plain = common::training_graph(src);
    let (fused, _) = common::fused_graph(src);
    let pg = common::param_grads(&plain);
    let fg = common::param_grads(&fused);
    assert_eq!(pg.len(), fg.len());
    let mut a = CpuExec::<f64>::new(plain, 6).unwrap();
    let mut b = CpuExec::<f64>::new(fused, 6).unwrap();
    let (images, labels) = common::batch(&a, 5, 3, 8);
    for step in 0..3 {
        let sa = a.train_step(&images, &labels, 0.01, step).unwrap();
        let sb = b.train_step(&images, &labels, 0.01, step).unwrap();
        assert_eq!(sa.loss, sb.loss, "step {step}");
        assert_eq!(a.logits(), b.logits());
        for (p, f) in pg.iter().zip(&fg) {
            assert_eq!(p.0, f.0);
            assert_eq!(a.value(p.2), b.value(f.2), "gradient of {}", p.0);
            assert_eq!(a.value(p.1), b.value(f.1), "{}", p.0);
        }
        let ea = a.eval_batch(&images, &labels).unwrap();
        let eb = b.eval_batch(&images, &labels).unwrap();
        assert_eq!(ea.loss, eb.loss);
    }
}

/// A dense + ReLU without dropout (none in `networks/`).
const DENSE_RELU: &str = "
network dense_relu {
  input image: [2, 9, 9]
  input label: class(3)
  c1 = conv(image, filters: 4, size: 3, pad: 1) -> relu -> maxpool(size: 3, stride: 2)
  f = dense(c1, units: 8) -> relu
  out = dense(f, units: 3)
  loss = softmax_xent(out, label)
}
train { init { weight: he  bias: 0.1 } }
";

/// Every activation fused after a conv and after a dense layer: tanh,
/// sigmoid, leaky ReLU (and one of slope 0, whose gradient is ReLU's
/// mask), a dense → tanh → dropout whose dropout stays unfused, and a
/// dense → ReLU for company.
const ACTS: &str = "
network acts {
  input image: [2, 9, 9]
  input label: class(3)
  c1 = conv(image, filters: 4, size: 3, pad: 1) -> sigmoid
  c2 = conv(c1, filters: 4, size: 3, pad: 1) -> tanh -> maxpool(size: 3, stride: 2)
  c3 = conv(c2, filters: 5, size: 3, pad: 1) -> leaky_relu(slope: 0.2)
  c4 = conv(c3, filters: 4, size: 1) -> leaky_relu(slope: 0)
  f1 = dense(c4, units: 10) -> sigmoid
  f2 = dense(f1, units: 9) -> leaky_relu(slope: 0.05)
  f3 = dense(f2, units: 8) -> tanh -> dropout(rate: 0.3)
  f4 = dense(f3, units: 7) -> relu
  out = dense(f4, units: 3)
  loss = softmax_xent(out, label)
}
train { init { weight: xavier  bias: 0.1 } }
";

#[test]
fn fused_activations_equal_unfused_bit_for_bit() {
    let (g, report) = common::fused_graph(ACTS);
    assert_eq!(report.fired["conv+act"], 4, "{report}");
    assert_eq!(report.fired["dense+act"], 3, "{report}");
    assert_eq!(report.fired["dense+relu"], 1, "{report}");
    assert_eq!(report.fired["dense+relu+dropout"], 0, "{report}");
    let text = print(&g, PrintOptions { spans: false });
    for op in [
        "conv_sigmoid(",
        "conv_tanh(",
        "conv_leaky_relu(",
        "dense_sigmoid(",
        "dense_leaky_relu(",
        "dense_tanh(",
        "dense_relu(",
        "conv_tanh_grad_input(",
        "conv_sigmoid_grad_weight(",
        "conv_leaky_relu_grad_bias(",
        "dense_tanh_grad_weight(",
    ] {
        assert!(text.contains(op), "no {op} in\n{text}");
    }
    // The first conv's input gradient is not needed, and none of the
    // unfused activations is left but the dropout after the tanh.
    for op in [
        "= tanh(",
        "= sigmoid(",
        "= leaky_relu(",
        "tanh_grad(%",
        "= relu(",
    ] {
        assert!(!text.contains(op), "{op} left in\n{text}");
    }
    assert!(text.contains("slope=0.2") && text.contains("= dropout("));
    same_step(ACTS);
    for net in ["networks/lenet5.net", "networks/allconv-fmnist.net"] {
        same_step(&std::fs::read_to_string(net).unwrap());
    }
}

/// A negative slope (which lowering refuses) cannot be fused: `y > 0`
/// would not tell `x > 0`. Built by editing the IR.
#[test]
fn a_negative_slope_is_not_fused() {
    let src = ACTS.replace("slope: 0.2", "slope: 0.5");
    let mut g = common::training_graph(&src);
    for n in g.node_ids().collect::<Vec<_>>() {
        match &mut g.g[n].op {
            netc::ir::Op::LeakyRelu { slope } | netc::ir::Op::LeakyReluGrad { slope }
                if *slope == 0.5 =>
            {
                *slope = -0.5
            }
            _ => {}
        }
    }
    netc::ir::verify::verify(&g).unwrap();
    let report = fuse(&mut g).unwrap();
    netc::ir::verify::verify(&g).unwrap();
    assert_eq!(report.fired["conv+act"], 3, "{report}");
    let text = print(&g, PrintOptions { spans: false });
    assert!(
        text.contains("= leaky_relu(") && text.contains("slope=-0.5"),
        "{text}"
    );
}

#[test]
fn fused_step_equals_unfused_on_small_nets() {
    let (_, report) = common::fused_graph(DENSE_RELU);
    assert_eq!(report.fired["dense+relu"], 1, "{report}");
    same_step(DENSE_RELU);
    same_step(common::CHAIN_NET);
    let src = std::fs::read_to_string("tests/gradcheck_net.rs").unwrap();
    let net = src.split("const NET: &str = \"").nth(1).unwrap();
    same_step(net.split("\";").next().unwrap());
}

fn losses(fused: bool, steps: usize) -> Vec<f64> {
    let src = std::fs::read_to_string("networks/alexnet-fmnist.net").unwrap();
    let g = if fused {
        common::fused_graph(&src).0
    } else {
        common::training_graph(&src)
    };
    let ds = Dataset::embedded_fmnist().unwrap();
    let mut exec = CpuExec::new(g, 7).unwrap();
    let (n, per) = (32, 28 * 28);
    (0..steps)
        .map(|s| {
            let start = (s * n) % (ds.train.len() - n);
            let images: Vec<f32> = ds.train.images[start * per..(start + n) * per]
                .iter()
                .map(|&p| p as f32 / 255.0 - 0.3)
                .collect();
            let labels = &ds.train.labels[start..start + n];
            exec.train_step(&images, labels, 0.02, s as u64)
                .unwrap()
                .loss
        })
        .collect()
}

/// Fused ops run the same kernels in the same order, so the curves are
/// in fact bit-for-bit equal today; the test allows 1e-4 relative so that
/// a fused epilogue that rounds differently (an FMA, another summation
/// order) stays legal.
#[test]
fn fused_loss_curve_equals_unfused_on_alexnet_fmnist() {
    let a = losses(false, 20);
    let b = losses(true, 20);
    for (s, (x, y)) in a.iter().zip(&b).enumerate() {
        let rel = (x - y).abs() / x.abs().max(1e-12);
        assert!(rel <= 1e-4, "step {s}: unfused {x}, fused {y}");
    }
    assert!(
        a[15..].iter().sum::<f64>() < a[..5].iter().sum::<f64>(),
        "{a:?}"
    );
}
