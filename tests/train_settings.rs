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
