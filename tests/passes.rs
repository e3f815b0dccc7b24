//! The pass pipeline: on every network in `networks/` the IR text before
//! and after each pass of the default pipeline is snapshot-tested and
//! verifies; the seven rewrites run one by one give exactly `fuse()`'s
//! graph; a rewrite enabled alone fuses only its own pattern and computes
//! the same step; `parse` refuses bad lists; and `netc compile --passes`
//! reports passes, dumps IR and refuses bad input without panicking.

mod common;

use netc::backend::cpu::exec::CpuExec;
use netc::ir::print::{PrintOptions, print};
use netc::ir::verify::{Relation, Role, VerifyError, verify};
use netc::ir::{Device, GradPart, Graph, NodeId, Op};
use netc::passes::fuse::{self, REWRITES};
use netc::passes::pipeline::{self, Pass, PipelineError};

const OPTS: PrintOptions = PrintOptions { spans: false };

fn forward(src: &str) -> netc::lower::Module {
    netc::frontend::compile(src)
        .unwrap_or_else(|d| panic!("{}", d.message))
        .module
}

/// Runs `passes` on the forward graph of `src`, keeping the graph after each.
fn run(src: &str, passes: &[Pass]) -> (Graph, Vec<(pipeline::PassTiming, Graph)>) {
    let m = forward(src);
    let mut g = m.graph.clone();
    let mut seen = Vec::new();
    let timings = pipeline::run(&mut g, &m.train.sgd, passes, &mut |t, g| {
        seen.push((t.clone(), g.clone()))
    })
    .unwrap();
    assert_eq!(timings.len(), passes.len());
    for ((t, _), p) in seen.iter().zip(passes) {
        assert_eq!(t.pass, *p);
    }
    (g, seen)
}

fn count(g: &Graph, f: impl Fn(&Op) -> bool) -> usize {
    g.node_ids().filter(|n| f(&g.node(*n).op)).count()
}

#[test]
fn default_pipeline_snapshots_after_every_pass() {
    let passes = pipeline::parse(pipeline::DEFAULT).unwrap();
    insta::glob!("../networks", "*.net", |path| {
        let src = std::fs::read_to_string(path).unwrap();
        let g0 = forward(&src).graph;
        let ir = print(&g0, OPTS);
        insta::assert_snapshot!("ir_0_forward", ir);
        let (last, seen) = run(&src, &passes);
        for (k, (t, g)) in seen.iter().enumerate() {
            netc::ir::verify::verify(g).unwrap();
            let fired = t.fired.map_or(String::new(), |n| format!(", fired {n}"));
            let head = format!(
                "; after {}{fired}, nodes {} → {}\n",
                t.pass, t.nodes_before, t.nodes_after
            );
            let name = format!("ir_{}_after_{}", k + 1, t.pass.name().replace('+', "_"));
            let ir = format!("{head}{}", print(g, OPTS));
            insta::assert_snapshot!(name, ir);
        }
        // (`dense+relu` finds every dense → ReLU followed by a dropout, and
        // then `grad_chain` no chain left.)
        // LeNet-5 has conv → tanh and dense → tanh, the all-convolutional
        // net conv → leaky ReLU, neither ReLU, dropout or LRN; the figure-1
        // net has conv → ReLU only. CaffeNet pools before its LRNs; in the
        // VGG-style net and the ResNet a batchnorm stands between every
        // conv and its ReLU, and the ResNet's residual sums feed ReLUs
        // (`grad_chain`: the summed gradient and the ReLU's mask).
        let file = path
            .file_name()
            .map_or(String::new(), |f| f.to_string_lossy().into_owned());
        let fires: &[&str] = if file.starts_with("alexnet") {
            &["conv+relu", "dense+relu+dropout", "lrn+maxpool"]
        } else if file == "fig1-fmnist.net" {
            &["conv+relu"]
        } else if file == "lenet5.net" {
            &["conv+act", "dense+act"]
        } else if file == "allconv-fmnist.net" {
            &["conv+act"]
        } else if file == "caffenet.net" {
            &["conv+relu", "dense+relu+dropout"]
        } else if file == "vgg-fmnist.net" {
            &["dense+relu+dropout"]
        } else if file == "resnet-fmnist.net" {
            &["grad_chain"]
        } else {
            &[]
        };
        for (t, _) in &seen[1..] {
            let want = fires.contains(&t.pass.name());
            assert_eq!(t.fired.unwrap() > 0, want, "{}: {}", path.display(), t.pass);
        }
        assert_eq!(print(&last, OPTS), print(&seen.last().unwrap().1, OPTS));
    });
}

/// The seven rewrites as passes, one by one, give the graph `fuse` gives,
/// on training steps and on forward graphs.
#[test]
fn rewrites_one_by_one_equal_fuse() {
    let mut sources: Vec<String> = std::fs::read_dir("networks")
        .unwrap()
        .map(|e| std::fs::read_to_string(e.unwrap().path()).unwrap())
        .collect();
    sources.push(common::CHAIN_NET.to_string());
    sources.push(MIXED.to_string());
    let rewrites = pipeline::parse("fuse").unwrap();
    assert_eq!(rewrites, REWRITES.map(Pass::Rewrite));
    for src in &sources {
        let (fused, _) = common::fused_graph(src);
        let (piped, seen) = run(src, &pipeline::parse("autodiff,fuse").unwrap());
        assert_eq!(print(&piped, OPTS), print(&fused, OPTS));
        // The fired counts add up to fuse's report.
        let mut g = common::training_graph(src);
        let report = fuse::fuse(&mut g).unwrap();
        for (t, _) in &seen[1..] {
            assert_eq!(t.fired, Some(report.fired[t.pass.name()]), "{}", t.pass);
        }
        let mut whole = forward(src).graph;
        fuse::fuse(&mut whole).unwrap();
        let (piped, _) = run(src, &rewrites);
        assert_eq!(print(&piped, OPTS), print(&whole, OPTS));
    }
}

/// One dense → ReLU → dropout and one dense → ReLU.
const MIXED: &str = "
network mixed {
  input image: [2, 9, 9]
  input label: class(3)
  c1 = conv(image, filters: 4, size: 3, pad: 1) -> relu -> maxpool(size: 3, stride: 2)
  f1 = dense(c1, units: 8) -> relu -> dropout(rate: 0.5)
  f2 = dense(f1, units: 6) -> relu
  out = dense(f2, units: 3)
  loss = softmax_xent(out, label)
}
train { init { weight: he  bias: 0.1 } }
";

/// Loss, logits and every parameter and gradient of three steps, equal.
fn same_step(a: Graph, b: Graph) {
    let (pa, pb) = (common::param_grads(&a), common::param_grads(&b));
    assert_eq!(pa.len(), pb.len());
    let mut a = CpuExec::<f64>::new(a, 6).unwrap();
    let mut b = CpuExec::<f64>::new(b, 6).unwrap();
    let (images, labels) = common::batch(&a, 5, 3, 8);
    for step in 0..3 {
        let sa = a.train_step(&images, &labels, 0.01, step).unwrap();
        let sb = b.train_step(&images, &labels, 0.01, step).unwrap();
        assert_eq!(sa.loss, sb.loss, "step {step}");
        assert_eq!(a.logits(), b.logits());
        for (p, q) in pa.iter().zip(&pb) {
            assert_eq!(p.0, q.0);
            assert_eq!(a.value(p.1), b.value(q.1), "{}", p.0);
            assert_eq!(a.value(p.2), b.value(q.2), "gradient of {}", p.0);
        }
    }
}

#[test]
fn dense_rewrites_alone_fuse_only_their_pattern() {
    let relu_only = pipeline::parse("autodiff,dense+relu").unwrap();
    let (g, seen) = run(MIXED, &relu_only);
    assert_eq!(seen[1].0.fired, Some(2));
    assert_eq!(count(&g, |o| matches!(o, Op::DenseRelu { .. })), 2);
    assert_eq!(count(&g, |o| matches!(o, Op::DenseReluDropout { .. })), 0);
    // The dropout stays, and reads the fused op.
    let drop = g.find_op(|o| matches!(o, Op::Dropout { .. })).unwrap();
    let input = g.inputs(drop)[0];
    assert!(matches!(g.node(input).op, Op::DenseRelu { .. }));
    assert_eq!(count(&g, |o| matches!(o, Op::DropoutGrad { .. })), 1);
    same_step(common::training_graph(MIXED), g);

    let dropout_only = pipeline::parse("autodiff,dense+relu+dropout").unwrap();
    let (g, seen) = run(MIXED, &dropout_only);
    assert_eq!(seen[1].0.fired, Some(1));
    assert_eq!(count(&g, |o| matches!(o, Op::DenseReluDropout { .. })), 1);
    assert_eq!(count(&g, |o| matches!(o, Op::DenseRelu { .. })), 0);
    assert_eq!(count(&g, |o| *o == Op::Relu), 2, "conv1's and f2's");
    same_step(common::training_graph(MIXED), g);

    // `fuse_with` refuses a name it does not know and leaves the graph.
    let mut g = common::training_graph(MIXED);
    let before = print(&g, OPTS);
    let e = fuse::fuse_with(&mut g, &["conv+relu", "nope"]).unwrap_err();
    assert_eq!(e, fuse::FuseError::UnknownRewrite("nope".into()));
    assert_eq!(print(&g, OPTS), before);
}

#[test]
fn parse_accepts_lists_and_refuses_bad_ones() {
    use Pass::{Autodiff, Rewrite};
    assert_eq!(
        pipeline::parse(" autodiff , conv+relu,grad_chain").unwrap(),
        [Autodiff, Rewrite("conv+relu"), Rewrite("grad_chain")]
    );
    assert_eq!(pipeline::parse("").unwrap(), Vec::<Pass>::new());
    assert_eq!(pipeline::parse("lrn+maxpool,lrn+maxpool").unwrap().len(), 2);
    assert_eq!(pipeline::parse(pipeline::DEFAULT).unwrap().len(), 8);

    let e = pipeline::parse("autodiff,nope").unwrap_err();
    assert!(matches!(&e, PipelineError::Unknown(n) if n == "nope"));
    let msg = e.to_string();
    for name in pipeline::names() {
        assert!(msg.contains(name), "{msg}");
    }
    assert!(matches!(
        pipeline::parse("autodiff,,fuse"),
        Err(PipelineError::Empty(_))
    ));
    assert!(matches!(
        pipeline::parse("autodiff,fuse,autodiff"),
        Err(PipelineError::AutodiffTwice)
    ));
    assert!(matches!(
        pipeline::parse("fuse,autodiff"),
        Err(PipelineError::FusedBeforeAutodiff("conv+relu"))
    ));
    assert!(matches!(
        pipeline::parse("Autodiff"),
        Err(PipelineError::Unknown(_))
    ));
}

#[test]
fn run_refuses_autodiff_on_a_training_step() {
    let m = forward(MIXED);
    let mut g = common::training_graph(MIXED);
    let e = pipeline::run(&mut g, &m.train.sgd, &[Pass::Autodiff], &mut |_, _| {}).unwrap_err();
    assert!(matches!(e, PipelineError::NotForward { .. }), "{e}");
    let e = pipeline::run(&mut g, &m.train.sgd, &[Pass::Rewrite("x")], &mut |_, _| {});
    assert!(matches!(
        e,
        Err(PipelineError::Fuse {
            pass: "x",
            source: fuse::FuseError::UnknownRewrite(_)
        })
    ));
}

// ---- recorded relations ----

/// A ReLU read by both towers: its gradients meet in an `add` that
/// records the ReLU, and `conv+relu` then removes the ReLU.
const SHARED_RELU: &str = "
network shared_relu {
  input image: [2, 9, 9]
  input label: class(3)
  towers 2 {
    c1 = conv(image, filters: 4, size: 3, pad: 1) -> relu
    c2 = conv(across(c1), filters: 4, size: 3, pad: 1) -> relu
  }
  out = dense(across(c2), units: 3)
  loss = softmax_xent(out, label)
}
train { init { weight: he  bias: 0.1 } }
";

/// The sources the relation tests run on: the networks, and the small
/// ones that exercise each rewrite.
fn relation_sources() -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir("networks")
        .unwrap()
        .map(|e| std::fs::read_to_string(e.unwrap().path()).unwrap())
        .collect();
    v.extend([common::CHAIN_NET, MIXED, SHARED_RELU].map(str::to_string));
    v
}

/// Autodiff records on every node it adds (the velocities aside) the
/// forward node that its display name derives from (`F.dx` records `F`),
/// and a `dropout_grad`'s `of` is its forward dropout.
#[test]
fn autodiff_records_the_forward_node_its_names_show() {
    for src in relation_sources() {
        let f = forward(&src).graph;
        let g = common::training_graph(&src);
        let mut recorded = 0;
        for n in g.node_ids() {
            let node = g.node(n);
            if f.get(n).is_some() || node.op.is_param() {
                assert_eq!(node.forward, None, "{}", node.name);
                continue;
            }
            let fw = node
                .forward
                .unwrap_or_else(|| panic!("{} records nothing", node.name));
            let fnode = g.node(fw);
            assert!(fnode.op.is_forward(), "{}", node.name);
            assert_eq!(fnode.device, node.device, "{}", node.name);
            let (base, _) = node.name.rsplit_once('.').unwrap();
            assert_eq!(base, fnode.name, "{}", node.name);
            if let Op::DropoutGrad { of, .. } = node.op {
                assert_eq!(of, fw, "{}", node.name);
            }
            recorded += 1;
        }
        assert!(recorded > 10);
    }
}

/// Every fusion rewrite, in any order and repeated, leaves relations the
/// verifier accepts (`run` verifies after every pass) and the step
/// computes what the unfused one does.
#[test]
fn rewrites_in_any_order_keep_relations() {
    let orders = [
        "autodiff,grad_chain,dense+relu+dropout,dense+relu,conv+relu,lrn+maxpool",
        "autodiff,lrn+maxpool,dense+relu,conv+relu,grad_chain,dense+relu+dropout,fuse",
        "autodiff,fuse,fuse",
    ];
    for src in relation_sources() {
        for list in orders {
            let (g, _) = run(&src, &pipeline::parse(list).unwrap());
            for n in g.node_ids() {
                if let Some(f) = g.node(n).forward {
                    assert!(g.get(f).is_some(), "{list}: {}", g.node(n).name);
                }
            }
        }
    }
    // The `add` of a ReLU read by both towers moves to the `conv_relu`.
    let (g, _) = run(SHARED_RELU, &pipeline::parse("autodiff,conv+relu").unwrap());
    let conv = g.find("c1/conv", Device::Tower(0)).unwrap();
    assert!(matches!(g.node(conv).op, Op::ConvRelu { .. }));
    let sum = g
        .node_ids()
        .any(|a| g.node(a).op == Op::Add && g.node(a).forward == Some(conv));
    assert!(sum, "the sum of c1's gradients records the conv_relu");
    same_step(common::training_graph(SHARED_RELU), g);
}

fn tower(g: &Graph, name: &str, t: u32) -> NodeId {
    g.find(name, Device::Tower(t))
        .unwrap_or_else(|| panic!("no `{name}` on t{t}"))
}

/// The verifier's error after `corrupt` changes a verified graph.
fn corrupted(g: &Graph, corrupt: impl FnOnce(&mut Graph)) -> VerifyError {
    verify(g).unwrap();
    let mut bad = g.clone();
    corrupt(&mut bad);
    let e = verify(&bad).unwrap_err();
    assert!(!e.to_string().is_empty());
    e
}

#[test]
fn verifier_rejects_wrong_relations() {
    let g = common::training_graph(common::CHAIN_NET);
    let dw = tower(&g, "c2/conv.dw", 0);
    let set = |n: NodeId, f: Option<NodeId>| move |g: &mut Graph| g.g[n].forward = f;

    let e = corrupted(&g, set(dw, None));
    assert!(
        matches!(&e, VerifyError::NoForward { node, .. } if *node == dw),
        "{e}"
    );
    assert!(e.to_string().contains("`c2/conv.dw`"), "{e}");

    let gone = NodeId::new(g.node_ids().map(|n| n.index()).max().unwrap() + 7);
    let e = corrupted(&g, set(dw, Some(gone)));
    assert!(
        matches!(e, VerifyError::Dangling { node, relation: Relation::Forward, target, .. } if node == dw && target == gone),
        "{e}"
    );

    let relu = tower(&g, "c2/relu", 0);
    let e = corrupted(&g, set(dw, Some(relu)));
    assert!(
        matches!(&e, VerifyError::WrongKind { node, relation: Relation::Forward, target_op: "relu", .. } if *node == dw),
        "{e}"
    );

    let other = tower(&g, "c2/conv", 1);
    let e = corrupted(&g, set(dw, Some(other)));
    assert!(
        matches!(e, VerifyError::OtherDevice { node, target, .. } if node == dw && target == other),
        "{e}"
    );

    // c1's weight gradient made a second one of c2's conv (same geometry).
    let c1_dw = tower(&g, "c1/conv.dw", 0);
    let c2 = tower(&g, "c2/conv", 0);
    let e = corrupted(&g, set(c1_dw, Some(c2)));
    assert!(
        matches!(&e, VerifyError::TwoGradients { forward, role: Role::Part(GradPart::Weight), .. } if *forward == c2),
        "{e}"
    );

    // A forward op that records a forward node.
    let e = corrupted(&g, set(relu, Some(c2)));
    assert!(
        matches!(e, VerifyError::StrayForward { node, .. } if node == relu),
        "{e}"
    );

    // An update recording a parameter other than the one it updates.
    let weight = tower(&g, "c1/conv.weight", 0);
    let update = g
        .node_ids()
        .find(|&n| g.node(n).forward == Some(weight))
        .unwrap();
    let bias = tower(&g, "c1/conv.bias", 0);
    let e = corrupted(&g, set(update, Some(bias)));
    assert!(
        matches!(e, VerifyError::WrongKind { node, .. } if node == update),
        "{e}"
    );

    // The dropout a `dropout_grad` applies the mask of.
    let dg = tower(&g, "c1/dropout.dx", 0);
    let of = |m: NodeId| {
        move |g: &mut Graph| {
            let Op::DropoutGrad { of, .. } = &mut g.g[dg].op else {
                panic!("not a dropout_grad")
            };
            *of = m;
        }
    };
    let e = corrupted(&g, of(tower(&g, "c1/relu", 0)));
    assert!(
        matches!(e, VerifyError::WrongKind { node, relation: Relation::Mask, .. } if node == dg),
        "{e}"
    );
    let e = corrupted(&g, of(tower(&g, "c1/dropout", 1)));
    assert!(
        matches!(e, VerifyError::OtherDevice { node, relation: Relation::Mask, .. } if node == dg),
        "{e}"
    );
    let e = corrupted(&g, of(gone));
    assert!(
        matches!(e, VerifyError::Dangling { node, relation: Relation::Mask, .. } if node == dg),
        "{e}"
    );

    // A `grad_chain`'s dropout, and a fused layer gradient's forward node.
    let (f, _) = common::fused_graph(common::CHAIN_NET);
    let chain = f
        .find_op(|o| {
            matches!(
                o,
                Op::GradChain {
                    dropout: Some(_),
                    ..
                }
            )
        })
        .unwrap();
    let relu = f.inputs(chain).last().copied().unwrap();
    let e = corrupted(&f, |g| {
        if let Op::GradChain {
            dropout: Some((_, of)),
            ..
        } = &mut g.g[chain].op
        {
            *of = relu;
        }
    });
    assert!(
        matches!(e, VerifyError::WrongKind { node, relation: Relation::Mask, .. } if node == chain),
        "{e}"
    );
    let db = f
        .find_op(|o| matches!(o, Op::ConvReluGradBias { .. }))
        .unwrap();
    let Device::Tower(t) = f.node(db).device else {
        panic!("a gradient on no tower")
    };
    let conv = tower(&f, "c1/conv", t);
    assert!(matches!(f.node(conv).op, Op::Conv { .. }));
    let e = corrupted(&f, set(db, Some(conv)));
    assert!(
        matches!(e, VerifyError::WrongKind { node, .. } if node == db),
        "{e}"
    );
    let e = corrupted(&f, set(db, f.node(chain).forward));
    assert!(
        matches!(e, VerifyError::WrongKind { node, .. } if node == db),
        "{e}"
    );
}

/// The text and YAML forms show relations by the nodes' numbers.
#[test]
fn printed_forms_number_relations() {
    let g = common::training_graph(common::CHAIN_NET);
    let text = print(&g, OPTS);
    let line = text
        .lines()
        .find(|l| l.contains("\"c1/dropout.dx\""))
        .unwrap();
    let id = line
        .split(" of=%")
        .nth(1)
        .unwrap()
        .split(' ')
        .next()
        .unwrap();
    let target = text
        .lines()
        .find(|l| l.starts_with(&format!("%{id} = ")))
        .unwrap();
    assert!(
        target.contains("= dropout(") && target.contains("\"c1/dropout\""),
        "{target}"
    );
    let y = netc::ir::print::to_yaml(&g).unwrap();
    let v: serde_yaml::Value = serde_yaml::from_str(&y).unwrap();
    let nodes = v["nodes"].as_sequence().unwrap();
    let mut seen = 0;
    for n in nodes {
        if n["op"] == "dropout_grad" {
            let of = n["of"].as_u64().unwrap() as usize;
            assert_eq!(nodes[of]["op"], "dropout");
            let fw = n["forward"].as_u64().unwrap() as usize;
            assert_eq!(fw, of);
            seen += 1;
        }
        if let Some(fw) = n["forward"].as_u64() {
            let name = n["name"].as_str().unwrap();
            let fname = nodes[fw as usize]["name"].as_str().unwrap();
            assert!(
                name.starts_with(&format!("{fname}.")),
                "{name} records {fname}"
            );
        }
    }
    assert_eq!(seen, 2);
}

// ---- the command line ----

fn netc(args: &[&str]) -> std::process::Output {
    std::process::Command::new(env!("CARGO_BIN_EXE_netc"))
        .args(args)
        .output()
        .unwrap()
}

#[test]
fn netc_compile_passes_dump_and_verbose() {
    let out = netc(&[
        "compile",
        "networks/alexnet-fmnist.net",
        "--emit",
        "ir",
        "--passes",
        "autodiff,conv+relu",
        "--dump-after",
        "conv+relu",
        "-v",
    ]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{err}");
    let stdout = String::from_utf8(out.stdout).unwrap();
    assert!(stdout.contains("= conv_relu(") && stdout.contains("conv_relu_grad"));
    let dump = err.split("; IR after pass conv+relu\n").nth(1).unwrap();
    assert!(dump.contains("= conv_relu(") && dump.contains("sgd_update"));
    let timing = |name: &str| {
        err.lines()
            .find(|l| l.starts_with(&format!("pass {name} ")))
            .unwrap_or_else(|| panic!("no timing line for {name}:\n{err}"))
            .to_string()
    };
    let line = timing("conv+relu");
    assert!(line.contains(" ms") && line.contains("nodes ") && line.contains("fired "));
    assert!(timing("autodiff").contains(" ms"));
    assert!(err.contains("2 passes in "));
    // Without --passes, the forward graph as before.
    let plain = netc(&["compile", "networks/alexnet-fmnist.net", "--emit", "ir"]);
    let plain = String::from_utf8(plain.stdout).unwrap();
    assert!(!plain.contains("conv_relu") && !plain.contains("sgd_update"));
}

#[test]
fn netc_compile_refuses_bad_pass_input() {
    let refused = |args: &[&str], want: &[&str]| {
        let out = netc(args);
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{args:?}: {err}");
        for w in want {
            assert!(err.contains(w), "{args:?}: no `{w}` in {err}");
        }
    };
    let net = "networks/alexnet-fmnist.net";
    let mut valid = vec!["unknown pass `nope`"];
    valid.extend(pipeline::names());
    refused(&["compile", net, "--passes", "nope"], &valid);
    refused(
        &["compile", net, "--passes", "fuse,autodiff"],
        &["put `autodiff` first"],
    );
    refused(
        &[
            "compile",
            net,
            "--passes",
            "autodiff",
            "--dump-after",
            "fuse",
        ],
        &["not a pass that runs", "autodiff"],
    );
    refused(
        &["compile", net, "--dump-after", "autodiff"],
        &["not a pass that runs"],
    );
    refused(
        &["compile", net, "--emit", "memplan", "--passes", "conv+relu"],
        &["must include `autodiff`"],
    );
}

/// Planning the fused step either works or fails with a message; never a
/// panic.
#[test]
fn netc_compile_memplan_after_passes_does_not_panic() {
    let dir = std::env::temp_dir().join(format!("netc-passes-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let picture = dir.join("plan.svg");
    let out = netc(&[
        "compile",
        "networks/alexnet-fmnist.net",
        "--emit",
        "memplan",
        "--batch",
        "4",
        "--passes",
        "autodiff,fuse",
        "--picture",
        picture.to_str().unwrap(),
    ]);
    let err = String::from_utf8_lossy(&out.stderr);
    match out.status.code() {
        Some(0) => assert!(picture.exists()),
        Some(1) => assert!(err.contains("error"), "{err}"),
        other => panic!("exit {other:?}: {err}"),
    }
    std::fs::remove_dir_all(&dir).unwrap();
}

/// `layers` layers: half a chain from the image to the loss, half layers
/// that read the image and feed nothing.
fn wide_and_deep(layers: usize) -> String {
    let half = layers / 2;
    let mut s = String::from(
        "network big {\n  input image: [1, 8, 8]\n  input label: class(3)\n  h0 = dense(image, units: 4)\n",
    );
    for i in 1..half {
        s.push_str(&format!("  h{i} = relu(h{})\n", i - 1));
    }
    for i in 0..half {
        s.push_str(&format!("  u{i} = dense(image, units: 2)\n"));
    }
    s.push_str(&format!(
        "  out = dense(h{}, units: 3)\n  loss = softmax_xent(out, label)\n}}\n",
        half - 1
    ));
    s
}

/// Every pass `check` runs is near-linear in the size of the graph: a
/// network of 100,000 layers, half of them feeding nothing, is checked
/// (lowered, verified, its training step built, fused and memory-planned)
/// in seconds. Before, the greedy order rescored every ready node at every
/// step and placement compared every pair of slots: 2,000 unused layers
/// took minutes. The bound is generous (a machine under load); the
/// figure on a quiet machine is in BENCHMARKS.md.
#[test]
fn a_network_of_100000_layers_checks_in_seconds() {
    let src = wide_and_deep(100_000);
    let t = std::time::Instant::now();
    let c = netc::frontend::check(&src).unwrap_or_else(|d| panic!("{}", d.message));
    let took = t.elapsed();
    eprintln!("100,000 layers checked in {took:.1?}");
    assert_eq!(c.warnings.len(), 50_000);
    assert!(
        took.as_secs() < 120,
        "checking 100,000 layers took {took:?}"
    );
}

/// Past the placement's sweep threshold the memory plan is still sound:
/// the checker accepts it, and it lies between the lower bound and the
/// no-reuse total.
#[test]
fn the_plan_of_a_large_step_passes_the_checker() {
    let src = wide_and_deep(6_000);
    let m = forward(&src);
    let step = pipeline::training_step(&m.graph, &m.train.sgd, true).unwrap();
    let plan = netc::passes::memplan::plan(&step, 16).unwrap();
    netc::passes::memplan::check(&plan, &step).unwrap();
    assert!(plan.buffers.len() > 6_000, "{}", plan.buffers.len());
    assert!(plan.lower_bound() <= plan.planned());
    assert!(plan.planned() < plan.no_reuse());
}
