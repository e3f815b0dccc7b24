//! The conv forms (groups, dilation, rectangular kernels, `bias: false`),
//! the residual `add` and `batchnorm`, end to end on the CPU: the IR of a
//! small network that uses them all (snapshots), canonical formatting,
//! parameter and MAC totals, the training step's running statistics,
//! resuming a run bit-identically with its running statistics restored,
//! and evaluation with the batchnorms folded into the layers before them
//! against the unfolded evaluation.

use std::path::{Path, PathBuf};

use netc::frontend;
use netc::ir::{self, Op, ParamRole, print::PrintOptions};
use netc::train::run::{Outcome, TrainOptions, load_weights, train};

const NET: &str = "tests/nets/residual-bn.net";

fn compile(src: &str) -> frontend::Compiled {
    frontend::compile(src).unwrap_or_else(|d| panic!("{}", netc::diag::render("net", src, &[d])))
}

#[test]
fn ir_text_table_and_training_graph_snapshots() {
    let src = std::fs::read_to_string(NET).unwrap();
    let c = compile(&src);
    assert!(c.warnings.is_empty());
    ir::verify::verify(&c.module.graph).unwrap();
    let text = ir::print::print(&c.module.graph, PrintOptions { spans: false });
    // A square conv prints as it always has; the other forms name their extras.
    assert!(text.contains("size=3 stride=2 pad=1 bias=false"), "{text}");
    assert!(text.contains("groups=2 bias=false"), "{text}");
    assert!(text.contains("dilation=2 bias=false"), "{text}");
    assert!(text.contains("size=3x5 stride=2 pad=1x2"), "{text}");
    insta::assert_snapshot!("residual_bn_ir", text);
    insta::assert_snapshot!("residual_bn_table", ir::table::render(&c.module.graph));
    let mut g = c.module.graph.clone();
    netc::passes::autodiff::autodiff(&mut g, &c.module.train.sgd).unwrap();
    ir::verify::verify(&g).unwrap();
    insta::assert_snapshot!(
        "residual_bn_step",
        ir::print::print(&g, PrintOptions { spans: false })
    );
}

#[test]
fn formatting_is_canonical_and_keeps_the_ir() {
    let src = std::fs::read_to_string(NET).unwrap();
    let ast = netc::syntax::parse(&src).unwrap();
    let once = netc::syntax::fmt::format(&ast, &src);
    let nospan = PrintOptions { spans: false };
    assert_eq!(
        ir::print::print(&compile(&src).module.graph, nospan),
        ir::print::print(&compile(&once).module.graph, nospan)
    );
    assert!(once.contains("size: [3, 5]"), "{once}");
    assert!(once.contains("bias: false"), "{once}");
}

#[test]
fn params_and_macs_of_grouped_dilated_and_biasless_convs() {
    let c = compile(
        "network t {
  input image: [8, 10, 10]
  input label: class(2)
  a = conv(image, filters: 12, size: 3, pad: 1, groups: 4, bias: false)
  b = conv(a, filters: 6, size: [3, 1], dilation: 2)
  out = dense(b, units: 2)
  loss = softmax_xent(out, label)
}",
    );
    let t = ir::cost::total(&c.module.graph);
    // a: 12 filters of 2×3×3, no bias; output 12×10×10.
    let a = (12 * 2 * 9, 12 * 100 * 2 * 9);
    // b: 6 of 12×3×1 + 6 biases; extent 5×1, output 6×6×10.
    let b = (6 * 12 * 3 + 6, 6 * 60 * 12 * 3);
    let out = (2 * 360 + 2, 2 * 360);
    assert_eq!(t.params, a.0 + b.0 + out.0);
    assert_eq!(t.macs, a.1 + b.1 + out.1);
}

#[test]
fn running_statistics_are_state_updated_by_the_step() {
    let src = std::fs::read_to_string(NET).unwrap();
    let c = compile(&src);
    let mut g = c.module.graph.clone();
    netc::passes::autodiff::autodiff(&mut g, &c.module.train.sgd).unwrap();
    let running: Vec<_> = g
        .node_ids()
        .filter(|&n| matches!(g.node(n).op, Op::Param { role, .. } if role.is_running()))
        .collect();
    // Four batchnorms, a mean and a variance each.
    assert_eq!(running.len(), 8);
    for &r in &running {
        let users = g.users(r);
        assert!(
            users.iter().all(|&u| matches!(
                g.node(u).op,
                Op::BatchNorm { .. } | Op::RunningUpdate { .. }
            )),
            "{}",
            g.node(r).name
        );
        assert_eq!(
            users
                .iter()
                .filter(|&&u| matches!(g.node(u).op, Op::RunningUpdate { .. }))
                .count(),
            1
        );
    }
    // No velocity, no sgd_update for them; γ and β have both.
    let velocities = g
        .node_ids()
        .filter(|&n| {
            matches!(
                g.node(n).op,
                Op::Param {
                    role: ParamRole::Velocity,
                    ..
                }
            )
        })
        .count();
    let trained = g
        .node_ids()
        .filter(|&n| {
            matches!(
                g.node(n).op,
                Op::Param {
                    role: ParamRole::Weight | ParamRole::Bias,
                    ..
                }
            )
        })
        .count();
    assert_eq!(velocities, trained);
    // The verifier refuses a running statistic fed to anything else.
    let mut bad = g.clone();
    let (mean, grad) = (
        running[0],
        bad.node_ids()
            .find(|&n| matches!(bad.node(n).op, Op::SgdUpdate { .. }))
            .unwrap(),
    );
    let port = bad.inputs(grad).len() as u32;
    bad.connect(mean, grad, port);
    assert!(ir::verify::verify(&bad).is_err());
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
    let d = std::env::temp_dir().join(format!("netc-layers-conv-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    d
}

#[test]
fn resume_restores_running_statistics_bit_identically() {
    let src = std::fs::read_to_string(NET).unwrap();
    let c = compile(&src);
    let m = &c.module;
    let full = tmp("full");
    assert!(matches!(
        train(m, &opts(&full)).unwrap(),
        Outcome::Finished(_)
    ));
    let want = load_weights(&full.join("checkpoint.safetensors")).unwrap();
    // The running statistics are in the checkpoint and have moved.
    let mean = want
        .iter()
        .find(|(k, _)| k == "stem/batchnorm.running_mean@t0")
        .unwrap_or_else(|| panic!("{:?}", want.iter().map(|w| &w.0).collect::<Vec<_>>()));
    assert!(mean.1.iter().any(|v| *v != 0.0));
    let var = want
        .iter()
        .find(|(k, _)| k == "stem/batchnorm.running_var@t0")
        .unwrap();
    assert!(var.1.iter().any(|v| *v != 1.0));

    let part = tmp("part");
    let mut o = opts(&part);
    o.stop_after = Some(3);
    assert!(matches!(train(m, &o).unwrap(), Outcome::Stopped { .. }));
    let mut o = opts(&part);
    o.resume = Some(part.join("checkpoint.safetensors"));
    assert!(matches!(train(m, &o).unwrap(), Outcome::Finished(_)));
    let got = load_weights(&part.join("checkpoint.safetensors")).unwrap();
    assert_eq!(want.len(), got.len());
    for ((na, a), (nb, b)) in want.iter().zip(&got) {
        assert_eq!(na, nb);
        assert!(a == b, "`{na}` differs after resuming");
    }
    let _ = std::fs::remove_dir_all(full);
    let _ = std::fs::remove_dir_all(part);
}

#[test]
fn folded_batchnorm_evaluation_equals_the_unfolded_one() {
    use netc::backend::cpu::exec::CpuExec;
    let src = std::fs::read_to_string(NET).unwrap();
    let c = compile(&src);
    let mut g = c.module.graph.clone();
    netc::passes::autodiff::autodiff(&mut g, &c.module.train.sgd).unwrap();
    let mut exec = CpuExec::<f64>::new(g, 7).unwrap();
    let n = 6;
    let per = exec.image_len();
    let images: Vec<f64> = (0..n * per)
        .map(|i| netc::rng::normal(3, 1, i as u64))
        .collect();
    let labels: Vec<u32> = (0..n as u32).map(|i| i % 10).collect();
    // A few steps, so the running statistics and γ, β move off their start.
    for step in 0..3 {
        exec.train_step(&images, &labels, 0.05, step).unwrap();
    }
    exec.set_fold_bn(false);
    exec.eval_batch(&images, &labels).unwrap();
    let want = exec.logits().to_vec();
    // The executor's own folded evaluation gives the same logits.
    exec.set_fold_bn(true);
    assert!(exec.evaluates_folded().unwrap());
    exec.eval_batch(&images, &labels).unwrap();
    let own = exec.logits().to_vec();
    let scale = want.iter().fold(0.0f64, |a, v| a.max(v.abs()));
    let diff = want
        .iter()
        .zip(&own)
        .fold(0.0f64, |a, (x, y)| a.max((x - y).abs()));
    assert!(diff <= 1e-10 * scale.max(1.0), "executor's fold: {diff}");

    let mut folded = netc::passes::forward::forward_graph(exec.graph()).unwrap();
    let folds = netc::passes::fold_bn::fold_batchnorm(&mut folded).unwrap();
    // stem, both convs of the block, and fc: every batchnorm folds.
    assert_eq!(folds.len(), 4);
    assert!(
        folded
            .node_ids()
            .all(|n| !matches!(folded.node(n).op, Op::BatchNorm { .. }))
    );
    let mut fe = CpuExec::<f64>::new(folded.clone(), 7).unwrap();
    for n in folded.node_ids() {
        let same = exec
            .graph()
            .get(n)
            .is_some_and(|m| m.name == folded.node(n).name && m.op.is_param());
        if same {
            let v = exec.value(n).to_vec();
            fe.value_mut(n).copy_from_slice(&v);
        }
    }
    for f in &folds {
        let mut w = exec.value(f.weight).to_vec();
        let mut b = if f.new_bias {
            vec![0.0; fe.value(f.bias).len()]
        } else {
            exec.value(f.bias).to_vec()
        };
        f.apply(
            &mut w,
            &mut b,
            exec.value(f.gamma),
            exec.value(f.beta),
            exec.value(f.mean),
            exec.value(f.var),
        );
        fe.value_mut(f.weight).copy_from_slice(&w);
        fe.value_mut(f.bias).copy_from_slice(&b);
    }
    fe.eval_batch(&images, &labels).unwrap();
    let got = fe.logits();
    let scale = want.iter().fold(0.0f64, |a, v| a.max(v.abs()));
    let diff = want
        .iter()
        .zip(got)
        .fold(0.0f64, |a, (x, y)| a.max((x - y).abs()));
    assert!(diff <= 1e-10 * scale.max(1.0), "max difference {diff}");
    // Evaluation normalises with the running statistics, training with the
    // batch's: the same batch gives other logits in a training step.
    exec.train_step(&images, &labels, 0.0, 9).unwrap();
    let train_logits = exec.logits();
    let apart = want
        .iter()
        .zip(train_logits)
        .fold(0.0f64, |a, (x, y)| a.max((x - y).abs()));
    assert!(
        apart > 1e-6,
        "training and evaluation logits agree ({apart})"
    );
}

/// The largest `|a − b|` over the largest `|a|` (1 at least).
fn rel_diff(a: &[f32], b: &[f32]) -> f64 {
    assert_eq!(a.len(), b.len());
    let scale = a.iter().fold(1.0f64, |m, v| m.max(v.abs() as f64));
    let d = a
        .iter()
        .zip(b)
        .fold(0.0f64, |m, (x, y)| m.max((*x as f64 - *y as f64).abs()));
    d / scale
}

/// The class of the highest logit of each example.
fn top1(logits: &[f32], classes: usize) -> Vec<usize> {
    logits
        .chunks(classes)
        .map(|row| {
            (0..classes)
                .max_by(|&a, &b| row[a].total_cmp(&row[b]).then(b.cmp(&a)))
                .unwrap()
        })
        .collect()
}

#[test]
fn f32_folded_evaluation_follows_the_state_and_matches_the_unfolded_one() {
    use netc::backend::cpu::exec::{CpuExec, Layout};
    use netc::backend::step::Step;
    let src = std::fs::read_to_string(NET).unwrap();
    let c = compile(&src);
    let m = &c.module;
    let g = netc::train::run::training_graph(m, &m.train, true).unwrap();
    let mut exec = CpuExec::<f32>::with_memory(g, 3, Layout::Planned).unwrap();
    let (n, per) = (12, exec.image_len());
    let images: Vec<f32> = (0..n * per)
        .map(|i| netc::rng::normal(4, 1, i as u64) as f32)
        .collect();
    let labels: Vec<u32> = (0..n as u32).map(|i| (i * 7) % 10).collect();
    let classes = exec.logits_width();
    let both = |exec: &mut CpuExec<f32>| {
        exec.set_fold_bn(false);
        let a = exec.eval_batch(&images, &labels).unwrap();
        let want = exec.logits().to_vec();
        exec.set_fold_bn(true);
        let b = exec.eval_batch(&images, &labels).unwrap();
        (a, want, b, exec.logits().to_vec())
    };
    let mut last: Option<Vec<f32>> = None;
    for round in 0..3 {
        for step in 0..3 {
            exec.train_step(&images, &labels, 0.05, round * 3 + step)
                .unwrap();
        }
        assert!(exec.evaluates_folded().unwrap());
        let (a, want, b, got) = both(&mut exec);
        let d = rel_diff(&want, &got);
        assert!(d <= 1e-5, "round {round}: relative difference {d}");
        assert_eq!(top1(&want, classes), top1(&got, classes), "round {round}");
        assert_eq!((a.top1, a.top5, a.n), (b.top1, b.top5, b.n));
        assert!((a.loss - b.loss).abs() <= 1e-5 * a.loss.abs().max(1.0));
        // The steps moved the network, and the folded copy followed it.
        if let Some(prev) = &last {
            assert!(rel_diff(prev, &got) > 1e-4, "round {round}: stale fold");
        }
        last = Some(got);
    }
    // A state written through the step interface reaches the fold too.
    let key = "stem/batchnorm.weight@t0";
    let gamma: Vec<f32> = Step::state(&mut exec)
        .unwrap()
        .into_iter()
        .find(|t| t.0 == key)
        .unwrap_or_else(|| panic!("no `{key}`"))
        .2
        .iter()
        .map(|v| -2.0 * v)
        .collect();
    Step::set_state(&mut exec, key, &gamma).unwrap();
    let (_, want, _, got) = both(&mut exec);
    assert!(rel_diff(&want, &got) <= 1e-5);
    assert!(
        rel_diff(last.as_ref().unwrap(), &got) > 1e-4,
        "stale after set_state"
    );
}

#[test]
fn a_network_without_batchnorm_evaluates_unfolded() {
    use netc::backend::cpu::exec::CpuExec;
    let src = std::fs::read_to_string("networks/lenet5.net").unwrap();
    let c = compile(&src);
    let m = &c.module;
    let g = netc::train::run::training_graph(m, &m.train, true).unwrap();
    let mut exec = CpuExec::<f32>::new(g, 1).unwrap();
    assert!(!exec.evaluates_folded().unwrap());
}

#[test]
fn netc_eval_gives_the_same_figures_folded_and_unfolded() {
    use netc::backend::cpu::exec::CpuExec;
    use netc::model::error::TrainError;
    use netc::train::run::eval_predictions_with;
    let src = std::fs::read_to_string(NET).unwrap();
    let c = compile(&src);
    let m = &c.module;
    let dir = tmp("fold-eval");
    assert!(matches!(
        train(m, &opts(&dir)).unwrap(),
        Outcome::Finished(_)
    ));
    let ck = dir.join("checkpoint.safetensors");
    let o = TrainOptions {
        data: Some(PathBuf::from("data/fmnist-small")),
        quiet: true,
        ..Default::default()
    };
    let run = |fold: bool| {
        eval_predictions_with(m, &ck, &o, |mut cpu: CpuExec, _, _| {
            cpu.set_fold_bn(fold);
            Ok::<_, TrainError>(cpu)
        })
        .unwrap()
    };
    let (plain, pt) = run(false);
    let (folded, ft) = run(true);
    assert!(plain.images > 0);
    assert_eq!(plain.images, folded.images);
    assert_eq!(plain.top1_error, folded.top1_error);
    assert_eq!(plain.top5_error, folded.top5_error);
    assert!((plain.loss - folded.loss).abs() <= 1e-5 * plain.loss.max(1.0));
    assert_eq!(pt.rows.len(), ft.rows.len());
    for (a, b) in pt.rows.iter().zip(&ft.rows) {
        assert_eq!(a.index, b.index);
        assert_eq!(a.predicted, b.predicted, "image {}", a.index);
        let d = rel_diff(&a.logits, &b.logits);
        assert!(d <= 1e-5, "image {}: relative difference {d}", a.index);
    }
    let _ = std::fs::remove_dir_all(dir);
}

/// A random network of `conv`/`dense` layers, each followed by zero to
/// three batchnorms (as a chain or as separate bindings), biases on or off.
fn random_bn_chain(seed: u64) -> String {
    let mut r = netc::rng::Rng::new(seed, 7);
    let mut pick = |n: u64| (r.next_u64() % n) as usize;
    let mut lines = Vec::new();
    let mut prev = "image".to_string();
    let mut spatial = true;
    let layers = 1 + pick(3);
    for i in 0..layers {
        let bias = if pick(2) == 0 { "true" } else { "false" };
        let layer = if spatial && (i + 1 < layers || pick(2) == 0) {
            format!(
                "conv({prev}, filters: {}, size: 3, pad: 1, bias: {bias})",
                2 + pick(4)
            )
        } else {
            spatial = false;
            format!("dense({prev}, units: {})", 3 + pick(6))
        };
        let bns = pick(4);
        let name = format!("l{i}");
        if pick(2) == 0 {
            let mut text = format!("  {name} = {layer}");
            for _ in 0..bns {
                text.push_str(&format!(" -> batchnorm(eps: 1e-{})", 3 + pick(3)));
            }
            lines.push(text);
            prev = name;
        } else {
            lines.push(format!("  {name} = {layer}"));
            prev = name.clone();
            for k in 0..bns {
                let b = format!("{name}_bn{k}");
                lines.push(format!("  {b} = batchnorm({prev})"));
                prev = b;
            }
        }
        if pick(3) != 0 {
            let a = format!("{prev}_act");
            lines.push(format!("  {a} = relu({prev})"));
            prev = a;
        }
    }
    format!(
        "network chain {{\n  input image: [2, 6, 6]\n  input label: class(4)\n{}\n  \
         out = dense({prev}, units: 4)\n  loss = softmax_xent(out, label)\n}}\n\n\
         train {{\n  batch: 8\n  epochs: 1\n  sgd {{ lr: 0.05, momentum: 0.9 }}\n}}\n",
        lines.join("\n")
    )
}

/// Evaluation with the batchnorms folded equals the unfolded evaluation on
/// random chains (two or three batchnorms in a row after one layer, with
/// and without its bias), with every batchnorm's γ, β and running
/// statistics set to random values so that each of them matters.
#[test]
fn folding_equals_the_unfolded_evaluation_on_random_batchnorm_chains() {
    use netc::backend::cpu::exec::{CpuExec, Layout};
    use netc::backend::step::Step;
    let mut chains = 0;
    for seed in 0..60u64 {
        let src = random_bn_chain(seed);
        let c = frontend::compile(&src)
            .unwrap_or_else(|d| panic!("{}\n{src}", netc::diag::render("net", &src, &[d])));
        let m = &c.module;
        let g = netc::train::run::training_graph(m, &m.train, true).unwrap();
        let mut exec = CpuExec::<f32>::with_memory(g, seed, Layout::Planned).unwrap();
        let (n, per) = (8, exec.image_len());
        let images: Vec<f32> = (0..n * per)
            .map(|i| netc::rng::normal(seed, 1, i as u64) as f32)
            .collect();
        let labels: Vec<u32> = (0..n as u32).map(|i| i % 4).collect();
        exec.train_step(&images, &labels, 0.05, 0).unwrap();
        let state: Vec<(String, usize)> = Step::state(&mut exec)
            .unwrap()
            .into_iter()
            .map(|(key, _, v)| (key, v.len()))
            .collect();
        let mut k = 0u64;
        for (key, len) in state {
            if !key.contains("batchnorm") && !key.contains("_bn") {
                continue;
            }
            k += 1;
            let v: Vec<f32> = (0..len)
                .map(|i| {
                    let z = netc::rng::normal(seed + 1000, k, i as u64) as f32;
                    if key.contains("var") { 0.2 + z * z } else { z }
                })
                .collect();
            Step::set_state(&mut exec, &key, &v).unwrap();
        }
        exec.set_fold_bn(false);
        exec.eval_batch(&images, &labels).unwrap();
        let want = exec.logits().to_vec();
        exec.set_fold_bn(true);
        let folds = exec.evaluates_folded().unwrap();
        exec.eval_batch(&images, &labels)
            .unwrap_or_else(|e| panic!("{e}\n{src}"));
        let got = exec.logits().to_vec();
        let d = rel_diff(&want, &got);
        assert!(d <= 1e-4, "seed {seed}: relative difference {d}\n{src}");
        if folds && src.matches("batchnorm").count() > 1 {
            chains += 1;
        }
    }
    assert!(
        chains >= 10,
        "only {chains} networks folded two batchnorms or more"
    );
}
