//! The training settings beyond the paper's, end to end: how they lower
//! (multipliers, `pytorch_default`), what the IR shows (only settings that
//! differ from the paper's), `netc fmt` keeps them, the cosine schedule's
//! rates by hand, and a run with all of them interrupted and resumed ends
//! with the weights of an uninterrupted one. The kernels' own checks are
//! unit tests (`kernels::sgd`, `kernels::softmax_xent`, `backend::params`);
//! CUDA parity is in `tests/cuda_emulate.rs`, NVRTC in `tests/cuda_codegen.rs`.

use std::path::{Path, PathBuf};

use netc::frontend;
use netc::ir::print::{PrintOptions, print};
use netc::ir::train::{Schedule, TrainConfig};
use netc::ir::{Init, Op, ParamRole};
use netc::train::run::{Outcome, TrainOptions, load_weights, step_lr, train};

const NET: &str = "network small {
  input image: [1, 28, 28]
  input label: class(10)
  towers 2 {
    conv1 = conv(image, filters: 8, size: 5, stride: 2) -> relu
    fc1 = dense(across(conv1), units: 32) -> relu
  }
  out = dense(across(fc1), units: 10)
  loss = softmax_xent(out, label)
}
";

const SETTINGS: &str = "train {
  sgd { lr: 0.02, momentum: 0.9, weight_decay: 0.0005, nesterov: true }
  schedule: cosine(warmup: 0.5, min_lr: 0.001)
  label_smoothing: 0.1
  multipliers {
    bias { lr: 2, decay: 0 }
    out { lr: 3 }
    out.bias { decay: 0.5 }
    fc1.weight { lr: 0.5 }
  }
  init {
    weight: kaiming_normal(mode: fan_out, nonlinearity: relu)
    bias: 0
    out.weight: pytorch_default
    out.bias: pytorch_default
    fc1.weight: xavier_uniform(gain: 1.5)
  }
}
";

fn compiled() -> frontend::Compiled {
    let src = format!("{NET}{SETTINGS}");
    frontend::check(&src).unwrap_or_else(|d| panic!("{}", d.message))
}

#[test]
fn multipliers_take_the_most_specific_rule() {
    let c = compiled();
    let sgd = &c.module.train.sgd;
    assert!(sgd.nesterov);
    assert_eq!(sgd.label_smoothing, 0.1);
    assert_eq!(sgd.multipliers_of("conv1", ParamRole::Weight), (1.0, 1.0));
    assert_eq!(sgd.multipliers_of("conv1", ParamRole::Bias), (2.0, 0.0));
    assert_eq!(sgd.multipliers_of("fc1", ParamRole::Weight), (0.5, 1.0));
    // `out` (a layer) beats `bias` (a kind) for lr; `out.bias` sets decay.
    assert_eq!(sgd.multipliers_of("out", ParamRole::Weight), (3.0, 1.0));
    assert_eq!(sgd.multipliers_of("out", ParamRole::Bias), (3.0, 0.5));
}

/// Caffe's way: multipliers on the layers, `[weight, bias]` or one number.
const LAYER_MULTS: &str = "network small {
  input image: [1, 28, 28]
  input label: class(10)
  towers 2 {
    conv1 = conv(image, filters: 8, size: 5, stride: 2, lr_mult: [1, 2], decay_mult: [1, 0]) -> relu
    fc1 = dense(across(conv1), units: 32, lr_mult: 0.5) -> relu
  }
  out = dense(across(fc1), units: 10, decay_mult: [0.25, 3])
  loss = softmax_xent(out, label)
}
train {
  sgd { lr: 0.02, momentum: 0.9, weight_decay: 0.0005 }
  multipliers {
    bias { lr: 2 }
    out { decay: 2 }
  }
}
";

/// The sgd_update line of parameter `name` (tower 0) in the step of `src`.
fn update_line(src: &str, name: &str) -> String {
    let c = frontend::check(src).unwrap_or_else(|d| panic!("{}", d.message));
    let step =
        netc::passes::pipeline::training_step(&c.module.graph, &c.module.train.sgd, false).unwrap();
    let ir = print(&step, PrintOptions { spans: false });
    let key = format!("\"{name}.update\"");
    ir.lines()
        .find(|l| l.contains(&key) && l.contains(" t0 "))
        .unwrap_or_else(|| panic!("no `{name}` update in\n{ir}"))
        .to_string()
}

#[test]
fn layer_multipliers_multiply_the_train_rules() {
    // conv1.bias: the layer's lr 2 × the rule's 2, decay 0.
    let l = update_line(LAYER_MULTS, "conv1/conv.bias");
    assert!(l.contains("lr_mult=4 decay_mult=0"), "{l}");
    let l = update_line(LAYER_MULTS, "conv1/conv.weight");
    assert!(!l.contains("lr_mult") && !l.contains("decay_mult"), "{l}");
    // One number scales both of fc1's parameters.
    let l = update_line(LAYER_MULTS, "fc1/dense.weight");
    assert!(
        l.contains("lr_mult=0.5") && !l.contains("decay_mult"),
        "{l}"
    );
    // fc1.bias: the rule's lr 2 × the layer's 0.5 is 1, so nothing shows.
    let l = update_line(LAYER_MULTS, "fc1/dense.bias");
    assert!(!l.contains("lr_mult") && !l.contains("decay_mult"), "{l}");
    // out: the rule's decay 2 × the layer's 0.25 and 3.
    let l = update_line(LAYER_MULTS, "out/dense.weight");
    assert!(
        l.contains("decay_mult=0.5") && !l.contains("lr_mult"),
        "{l}"
    );
    let l = update_line(LAYER_MULTS, "out/dense.bias");
    assert!(l.contains("lr_mult=2 decay_mult=6"), "{l}");
    // Both towers get the layer's multipliers.
    let c = frontend::check(LAYER_MULTS).unwrap();
    let step =
        netc::passes::pipeline::training_step(&c.module.graph, &c.module.train.sgd, false).unwrap();
    let ups: Vec<_> = step
        .node_ids()
        .map(|n| step.node(n))
        .filter(|n| n.name == "conv1/conv.bias.update")
        .map(|n| n.op.clone())
        .collect();
    assert_eq!(ups.len(), 2);
    assert_eq!(ups[0], ups[1]);
    // A batchnorm takes them too ([γ, β]); its running statistics have none.
    let bn = "network bn {
  input image: [1, 8, 8]
  input label: class(3)
  c = conv(image, filters: 4, size: 3) -> batchnorm(lr_mult: [3, 4], decay_mult: 0) -> relu
  out = dense(c, units: 3)
  loss = softmax_xent(out, label)
}
";
    let l = update_line(bn, "c/batchnorm.weight");
    assert!(l.contains("lr_mult=3 decay_mult=0"), "{l}");
    let l = update_line(bn, "c/batchnorm.bias");
    assert!(l.contains("lr_mult=4 decay_mult=0"), "{l}");
}

/// The update uses them: layer arguments give the weights the equivalent
/// `multipliers` rules give, after two steps on the CPU; and a layer at
/// `lr_mult: 0` does not move.
#[test]
fn layer_multipliers_reach_the_update() {
    use netc::backend::cpu::exec::CpuExec;
    let net = |args: &str, rules: &str| {
        format!(
            "network small {{
  input image: [1, 12, 12]
  input label: class(3)
  conv1 = conv(image, filters: 4, size: 3{args}) -> relu
  out = dense(conv1, units: 3)
  loss = softmax_xent(out, label)
}}
train {{
  sgd {{ lr: 0.05, momentum: 0.9, weight_decay: 0.01 }}
  init {{ weight: xavier  bias: 0.1 }}
  {rules}
}}
"
        )
    };
    let run = |src: &str| {
        let c = frontend::check(src).unwrap_or_else(|d| panic!("{}", d.message));
        let step =
            netc::passes::pipeline::training_step(&c.module.graph, &c.module.train.sgd, true)
                .unwrap();
        let mut exec = CpuExec::<f64>::new(step.clone(), 3).unwrap();
        let images: Vec<f64> = (0..4 * 144)
            .map(|i| ((i * 37) % 17) as f64 / 17.0)
            .collect();
        let labels = [0, 1, 2, 1];
        let before: Vec<Vec<f64>> = ["conv1/conv.weight", "conv1/conv.bias"]
            .iter()
            .map(|n| {
                exec.value(step.find(n, netc::ir::Device::Tower(0)).unwrap())
                    .to_vec()
            })
            .collect();
        for s in 0..2 {
            exec.train_step(&images, &labels, 0.05, s).unwrap();
        }
        let after: Vec<Vec<f64>> = ["conv1/conv.weight", "conv1/conv.bias"]
            .iter()
            .map(|n| {
                exec.value(step.find(n, netc::ir::Device::Tower(0)).unwrap())
                    .to_vec()
            })
            .collect();
        (before, after)
    };
    let (_, by_args) = run(&net(", lr_mult: [3, 2], decay_mult: [0.5, 0]", ""));
    let (_, by_rules) = run(&net(
        "",
        "multipliers { conv1.weight { lr: 3, decay: 0.5 } conv1.bias { lr: 2, decay: 0 } }",
    ));
    let (_, plain) = run(&net("", ""));
    assert_eq!(by_args, by_rules);
    assert_ne!(by_args, plain);
    let (before, after) = run(&net(", lr_mult: 0", ""));
    assert_eq!(before, after, "lr_mult: 0 froze the layer");
}

#[test]
fn pytorch_default_scales_by_the_weights_fan_in() {
    let c = compiled();
    let g = &c.module.graph;
    let init_of = |name: &str| {
        g.node_ids()
            .map(|n| g.node(n))
            .find_map(|n| match &n.op {
                Op::Param { init, .. } if n.name == name => Some(init.clone()),
                _ => None,
            })
            .unwrap_or_else(|| panic!("no parameter {name}"))
    };
    // `out` reads both towers' fc1 (2 × 16 units): fan_in 32, bound 1/√32.
    let b = 1.0 / 32f64.sqrt();
    assert_eq!(
        init_of("out/dense.bias"),
        Init::Uniform { low: -b, high: b }
    );
    assert_eq!(
        init_of("out/dense.weight").to_string(),
        "kaiming_uniform(a: 2.23606797749979)"
    );
    assert_eq!(
        init_of("conv1/conv.weight").to_string(),
        "kaiming_normal(mode: fan_out, nonlinearity: relu)"
    );
    assert_eq!(
        init_of("fc1/dense.weight").to_string(),
        "xavier_uniform(gain: 1.5)"
    );
}

#[test]
fn the_ir_shows_settings_only_where_they_differ() {
    let c = compiled();
    let step =
        netc::passes::pipeline::training_step(&c.module.graph, &c.module.train.sgd, false).unwrap();
    let ir = print(&step, PrintOptions { spans: false });
    let line = |name: &str| {
        ir.lines()
            .find(|l| l.contains(name))
            .unwrap_or_else(|| panic!("no `{name}` in\n{ir}"))
            .to_string()
    };
    let conv_w = line("conv1/conv.weight.update");
    assert!(conv_w.contains("nesterov=true"), "{conv_w}");
    assert!(
        !conv_w.contains("lr_mult") && !conv_w.contains("decay_mult"),
        "{conv_w}"
    );
    let conv_b = line("conv1/conv.bias.update");
    assert!(conv_b.contains("lr_mult=2 decay_mult=0"), "{conv_b}");
    let out_b = line("out/dense.bias.update");
    assert!(out_b.contains("lr_mult=3 decay_mult=0.5"), "{out_b}");
    assert!(line("softmax_xent_grad").contains("smoothing=0.1"));

    // The paper's settings print as they always did.
    let src = std::fs::read_to_string("networks/alexnet-fmnist.net").unwrap();
    let c = frontend::compile(&src).unwrap_or_else(|_| panic!("compiles"));
    let step =
        netc::passes::pipeline::training_step(&c.module.graph, &c.module.train.sgd, false).unwrap();
    let ir = print(&step, PrintOptions { spans: false });
    for attr in ["nesterov", "lr_mult", "decay_mult", "smoothing"] {
        assert!(!ir.contains(attr), "`{attr}` in the paper's IR");
    }
}

#[test]
fn fmt_keeps_layer_multipliers() {
    let c = frontend::check(LAYER_MULTS).unwrap_or_else(|d| panic!("{}", d.message));
    let once = netc::syntax::fmt::format(&c.ast, LAYER_MULTS);
    for s in [
        "lr_mult: [1, 2], decay_mult: [1, 0]",
        "units: 32, lr_mult: 0.5",
        "decay_mult: [0.25, 3]",
    ] {
        assert!(once.contains(s), "`{s}` lost by fmt:\n{once}");
    }
    let again = frontend::check(&once).unwrap_or_else(|d| panic!("{}", d.message));
    assert_eq!(netc::syntax::fmt::format(&again.ast, &once), once);
    assert_eq!(
        again.module.train.sgd.param_multipliers,
        c.module.train.sgd.param_multipliers
    );
    assert!(!c.module.train.sgd.param_multipliers.is_empty());
}

#[test]
fn fmt_keeps_every_setting() {
    let src = format!("{NET}{SETTINGS}");
    let c = compiled();
    let once = netc::syntax::fmt::format(&c.ast, &src);
    for s in [
        "nesterov: true",
        "cosine(warmup: 0.5, min_lr: 0.001)",
        "label_smoothing: 0.1",
        "bias { lr: 2, decay: 0 }",
        "out.bias { decay: 0.5 }",
        "kaiming_normal(mode: fan_out, nonlinearity: relu)",
        "out.weight: pytorch_default",
        "xavier_uniform(gain: 1.5)",
    ] {
        assert!(once.contains(s), "`{s}` lost by fmt:\n{once}");
    }
    let again = frontend::check(&once).unwrap_or_else(|d| panic!("{}", d.message));
    assert_eq!(netc::syntax::fmt::format(&again.ast, &once), once);
    // The same settings (the rules' spans moved with the text).
    let rules = |t: &TrainConfig| -> Vec<_> {
        t.sgd
            .multipliers
            .iter()
            .map(|m| (m.layer.clone(), m.role, m.lr, m.decay))
            .collect()
    };
    let (a, b) = (&again.module.train, &c.module.train);
    assert_eq!(rules(a), rules(b));
    assert_eq!(
        (a.sgd.nesterov, a.sgd.label_smoothing, &a.schedule),
        (b.sgd.nesterov, b.sgd.label_smoothing, &b.schedule)
    );
}

#[test]
fn cosine_rates_by_hand() {
    let mut cfg = TrainConfig::default();
    cfg.sgd.lr = 0.1;
    cfg.epochs = 2;
    // 5 steps an epoch, warm-up 0.4 epochs = 2 steps, T = 10, min_lr 0.01.
    cfg.schedule = Schedule::Cosine {
        warmup: 0.4,
        min_lr: 0.01,
    };
    let lr = |s: u64| step_lr(&cfg, s / 5, s % 5, 5, 0.0);
    let close = |a: f64, b: f64| (a - b).abs() < 1e-15;
    assert_eq!(lr(0), 0.0);
    assert!(close(lr(1), 0.05));
    assert!(close(lr(2), 0.1), "the peak right after the warm-up");
    // s = 6: halfway through the 8 cosine steps: (0.1 + 0.01)/2.
    assert!(close(lr(6), 0.055), "{}", lr(6));
    // s = 9, the last step: progress 7/8.
    let want = 0.01 + 0.09 * 0.5 * (1.0 + (std::f64::consts::PI * 7.0 / 8.0).cos());
    assert!(close(lr(9), want));
    // Strictly decreasing after the warm-up, never below min_lr.
    for s in 2..9 {
        assert!(lr(s + 1) < lr(s) && lr(s + 1) > 0.01);
    }
    // No warm-up: the first step takes the base rate.
    cfg.schedule = Schedule::Cosine {
        warmup: 0.0,
        min_lr: 0.0,
    };
    assert_eq!(step_lr(&cfg, 0, 0, 5, 0.0), 0.1);
    // `--epochs` below the file's warm-up is refused before the run starts.
    cfg.schedule = Schedule::Cosine {
        warmup: 2.0,
        min_lr: 0.0,
    };
    let err = netc::train::no_step::check_counts(&cfg, None).unwrap_err();
    assert!(err.contains("warm-up of 2 epochs"), "{err}");
    cfg.epochs = 3;
    assert_eq!(netc::train::no_step::check_counts(&cfg, None), Ok(()));
}

fn opts(out: &Path) -> TrainOptions {
    TrainOptions {
        data: Some(PathBuf::from("data/fmnist-small")),
        epochs: Some(2),
        batch: Some(16),
        seed: Some(5),
        max_steps: Some(4),
        out_dir: out.to_path_buf(),
        quiet: true,
        ..Default::default()
    }
}

fn tmp(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("netc-settings-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    d
}

#[test]
fn a_run_with_every_setting_resumes_bit_for_bit() {
    let c = compiled();
    let m = &c.module;
    let full = tmp("full");
    let Outcome::Finished(reports) = train(m, &opts(&full)).unwrap() else {
        panic!("did not finish")
    };
    assert_eq!(reports.len(), 2);
    // The rate each epoch reports is that of its last step (4 a epoch, 2 of warm-up).
    let cfg = netc::train::run::effective_config(m, &opts(&full));
    assert_eq!(reports[0].lr, step_lr(&cfg, 0, 3, 4, 0.0));
    assert_eq!(reports[1].lr, step_lr(&cfg, 1, 3, 4, 0.0));
    assert!(reports[1].lr < reports[0].lr && reports[1].lr > 0.001);
    assert!(reports.iter().all(|r| r.train_loss.is_finite()));
    let want = load_weights(&full.join("checkpoint.safetensors")).unwrap();

    // Stopped inside the warm-up (step 1) and inside the cosine (step 6).
    let part = tmp("part");
    for stop in [1, 6] {
        let mut o = opts(&part);
        o.stop_after = Some(stop);
        if stop == 6 {
            o.resume = Some(part.join("checkpoint.safetensors"));
        }
        assert!(matches!(train(m, &o).unwrap(), Outcome::Stopped { step, .. } if step == stop));
    }
    let mut o = opts(&part);
    o.resume = Some(part.join("checkpoint.safetensors"));
    assert!(matches!(train(m, &o).unwrap(), Outcome::Finished(_)));
    let got = load_weights(&part.join("checkpoint.safetensors")).unwrap();
    assert_eq!(want.len(), got.len());
    for ((na, a), (nb, b)) in want.iter().zip(&got) {
        assert_eq!(na, nb);
        assert!(a == b, "`{na}` differs after resuming");
    }

    // The settings changed the run: the paper's settings end elsewhere.
    let plain = frontend::check(NET).unwrap_or_else(|d| panic!("{}", d.message));
    let other = tmp("plain");
    train(&plain.module, &opts(&other)).unwrap();
    let base = load_weights(&other.join("checkpoint.safetensors")).unwrap();
    assert!(base.iter().zip(&want).any(|((_, a), (_, b))| a != b));
    for d in [full, part, other] {
        let _ = std::fs::remove_dir_all(d);
    }
}

/// Which parameters each form of `multipliers` rule reaches, as the book (docs/src/language.md)
/// says: a kind (`weight`, `bias`) reaches a batchnorm's γ and β too; a
/// binding every trained parameter of its layers, its batchnorm's γ and β
/// included; `BINDING.weight` the weights of the binding's layers (the
/// conv's weight and the batchnorm's γ).
#[test]
fn multiplier_rules_reach_the_parameters_the_readme_names() {
    let net = |rules: &str| {
        format!(
            "network small {{
  input image: [1, 12, 12]
  input label: class(3)
  stem = conv(image, filters: 4, size: 3, bias: false) -> batchnorm -> relu
  out = dense(stem, units: 3)
  loss = softmax_xent(out, label)
}}
train {{
  sgd {{ lr: 0.05, momentum: 0.9, weight_decay: 0.01 }}
  multipliers {{ {rules} }}
}}
"
        )
    };
    let lr_zero = |src: &str, name: &str| update_line(src, name).contains("lr_mult=0");
    let decay_zero = |src: &str, name: &str| update_line(src, name).contains("decay_mult=0");
    let (conv, gamma, beta) = (
        "stem/conv.weight",
        "stem/batchnorm.weight",
        "stem/batchnorm.bias",
    );
    let binding = net("stem { lr: 0 }");
    for p in [conv, gamma, beta] {
        assert!(lr_zero(&binding, p), "`stem` misses {p}");
    }
    assert!(!lr_zero(&binding, "out/dense.weight"));
    let kind = net("bias { decay: 0 }");
    assert!(decay_zero(&kind, beta));
    assert!(decay_zero(&kind, "out/dense.bias"));
    assert!(!decay_zero(&kind, gamma) && !decay_zero(&kind, conv));
    let weights = net("stem.weight { lr: 0 }");
    assert!(lr_zero(&weights, conv) && lr_zero(&weights, gamma));
    assert!(!lr_zero(&weights, beta));
}

/// `he` and `xavier` are scaled by a weight's fans, as their long
/// spellings are: a bias cannot take either (N0151), by default or by
/// layer; a form without arguments may drop its parentheses
/// (`schedule: cosine` is `cosine()`).
#[test]
fn short_and_long_spellings_follow_one_rule() {
    let with = |train: &str| {
        format!(
            "network small {{
  input image: [1, 12, 12]
  input label: class(3)
  fc = dense(image, units: 3)
  loss = softmax_xent(fc, label)
}}
train {{
  {train}
}}
"
        )
    };
    for init in [
        "bias: he",
        "bias: xavier",
        "fc.bias: he",
        "bias: xavier_uniform",
        "bias: kaiming_normal",
    ] {
        let src = with(&format!("init {{ {init} }}"));
        let d = frontend::check(&src)
            .err()
            .unwrap_or_else(|| panic!("`{init}` accepted"));
        assert_eq!(d.code.as_deref(), Some("N0151"), "{init}: {}", d.message);
    }
    assert!(frontend::check(&with("init { weight: he  bias: 0 }")).is_ok());
    let schedule = |s: &str| {
        frontend::check(&with(&format!("schedule: {s}")))
            .unwrap_or_else(|d| panic!("`{s}`: {}", d.message))
            .module
            .train
            .schedule
    };
    assert_eq!(schedule("cosine"), schedule("cosine()"));
    assert_eq!(
        schedule("cosine"),
        Schedule::Cosine {
            warmup: 0.0,
            min_lr: 0.0
        }
    );
    assert_eq!(schedule("step"), schedule("step()"));
    assert_eq!(schedule("plateau"), schedule("plateau()"));
    assert_eq!(schedule("fixed"), Schedule::Fixed);
}
