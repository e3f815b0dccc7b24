//! Every network in `networks/`: IR text and architecture table snapshots,
//! canonical formatting, and the paper's numbers for `alexnet.net`.

mod common;

use netc::frontend;
use netc::ir::{self, print::PrintOptions, table};

fn compile(path: &std::path::Path) -> (frontend::Compiled, String) {
    let src = std::fs::read_to_string(path).unwrap();
    match frontend::compile(&src) {
        Ok(c) => (c, src),
        Err(d) => panic!(
            "{}",
            netc::diag::render(&path.display().to_string(), &src, &[d])
        ),
    }
}

#[test]
fn ir_and_table_snapshots() {
    insta::glob!("../networks", "*.net", |path| {
        let (c, _) = compile(path);
        assert!(
            c.warnings.is_empty(),
            "{}: unexpected warnings",
            path.display()
        );
        ir::verify::verify(&c.module.graph).unwrap();
        insta::assert_snapshot!(
            "ir",
            ir::print::print(&c.module.graph, PrintOptions { spans: true })
        );
        insta::assert_snapshot!("table", table::render(&c.module.graph));
    });
}

#[test]
fn fmt_is_idempotent_and_keeps_the_ir() {
    let mut files: Vec<_> = std::fs::read_dir("networks")
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    files.extend(
        std::fs::read_dir("tests/bad")
            .unwrap()
            .map(|e| e.unwrap().path()),
    );
    let mut checked = 0;
    for path in files {
        let src = std::fs::read_to_string(&path).unwrap();
        let Ok(ast) = netc::syntax::parse(&src) else {
            continue;
        };
        let once = netc::syntax::fmt::format(&ast, &src);
        let ast2 = netc::syntax::parse(&once).unwrap_or_else(|e| {
            panic!("{}: fmt output does not parse: {e}\n{once}", path.display())
        });
        let twice = netc::syntax::fmt::format(&ast2, &once);
        assert_eq!(once, twice, "{}: fmt is not idempotent", path.display());
        // Comments survive.
        assert_eq!(
            ast.comments.len(),
            ast2.comments.len(),
            "{}: comments lost",
            path.display()
        );
        // Same IR (spans aside), or the same error code.
        let nospan = PrintOptions { spans: false };
        match (frontend::compile(&src), frontend::compile(&once)) {
            (Ok(a), Ok(b)) => assert_eq!(
                ir::print::print(&a.module.graph, nospan),
                ir::print::print(&b.module.graph, nospan),
                "{}: fmt changed the IR",
                path.display()
            ),
            (Err(a), Err(b)) => assert_eq!(a.code, b.code, "{}", path.display()),
            _ => panic!("{}: fmt changed whether the file compiles", path.display()),
        }
        checked += 1;
    }
    assert!(checked >= 20, "only {checked} files checked");
}

#[test]
fn networks_are_in_canonical_form() {
    for e in std::fs::read_dir("networks").unwrap() {
        let path = e.unwrap().path();
        let src = std::fs::read_to_string(&path).unwrap();
        let ast = netc::syntax::parse(&src).unwrap();
        assert_eq!(
            netc::syntax::fmt::format(&ast, &src),
            src,
            "{}: run `netc fmt`",
            path.display()
        );
    }
}

#[test]
fn alexnet_has_the_papers_shapes_and_totals() {
    let (c, _) = compile(std::path::Path::new("networks/alexnet.net"));
    let g = &c.module.graph;
    let rows = table::rows(g);
    let shape = |name: &str| {
        rows.iter()
            .find(|r| r.layer == name)
            .unwrap_or_else(|| panic!("no row {name}"))
            .shape
            .clone()
    };
    assert_eq!(shape("conv1/conv"), "55×55×96");
    assert_eq!(shape("conv2/maxpool"), "13×13×256");
    assert_eq!(shape("conv1/maxpool"), "27×27×96");
    assert_eq!(shape("conv2/conv"), "27×27×256");
    assert_eq!(shape("conv3/conv"), "13×13×384");
    assert_eq!(shape("conv4/conv"), "13×13×384");
    assert_eq!(shape("conv5/conv"), "13×13×256");
    assert_eq!(shape("conv5/maxpool"), "6×6×256");
    assert_eq!(shape("fc6/dense"), "4096");
    assert_eq!(shape("fc7/dense"), "4096");
    assert_eq!(shape("fc8/dense"), "1000");
    let total = ir::cost::total(g);
    assert_eq!(total.params, 60_965_224);
    assert_eq!(total.macs, 724_406_816);
    // Cross-tower traffic only at conv3 and the dense layers: conv3, fc6 and
    // fc7 gather the other tower's maps in each of two towers (6 edges),
    // fc8 on tower 0 gathers tower 1's fc7 (1 edge).
    assert_eq!(g.cross_edges(), 7);
    for n in g.node_ids() {
        let node = g.node(n);
        if node.op.mnemonic() == "lrn" {
            // Tower-local: each tower normalises its own 48 or 128 maps.
            assert!(
                node.ty.dims()[0] == 48 || node.ty.dims()[0] == 128,
                "{}",
                node.name
            );
            for i in g.inputs(n) {
                assert_eq!(g.node(i).device, node.device);
            }
        }
    }
    let table = table::render(g);
    assert!(table.contains("60,965,224") && table.contains("724,406,816"));
}

#[test]
fn yaml_and_dot_forms() {
    let (c, _) = compile(std::path::Path::new("networks/alexnet.net"));
    let y = ir::print::to_yaml(&c.module.graph).unwrap();
    let v: serde_yaml::Value = serde_yaml::from_str(&y).unwrap();
    let nodes = v["nodes"].as_sequence().unwrap();
    assert_eq!(nodes.len(), c.module.graph.g.node_count());
    let crosses = nodes
        .iter()
        .flat_map(|n| n["inputs"].as_sequence().unwrap().iter())
        .filter(|i| i["cross_tower"].as_bool() == Some(true))
        .count();
    assert_eq!(crosses, 7);
    let d = ir::dot::dot(&c.module.graph);
    assert!(d.contains("subgraph cluster_t0") && d.contains("subgraph cluster_t1"));
    assert_eq!(d.matches("style=dashed").count(), 7);
}

#[test]
fn training_graph_snapshots() {
    insta::glob!("../networks", "*.net", |path| {
        let (c, _) = compile(path);
        let mut g = c.module.graph.clone();
        netc::passes::autodiff::autodiff(&mut g, &c.module.train.sgd).unwrap();
        ir::verify::verify(&g).unwrap();
        // One update and one velocity per weight and bias (a batchnorm's
        // running statistics are state without a gradient: no update).
        let count =
            |f: &dyn Fn(&netc::ir::Op) -> bool| g.node_ids().filter(|n| f(&g.node(*n).op)).count();
        let params = count(&|op| {
            matches!(op, netc::ir::Op::Param { role, .. }
                if *role != netc::ir::ParamRole::Velocity && !role.is_running())
        });
        let updates = count(&|op| matches!(op, netc::ir::Op::SgdUpdate { .. }));
        assert_eq!(params, updates);
        // Every forward cross-tower edge has a backward twin.
        assert_eq!(g.cross_edges(), 2 * c.module.graph.cross_edges());
        insta::assert_snapshot!(
            "train_ir",
            ir::print::print(&g, PrintOptions { spans: false })
        );
    });
}

/// `networks/lenet5.net` (tanh, average pooling) builds its training step
/// and learns on the embedded Fashion-MNIST subset: its loss starts near
/// ln 10 and falls over 60 steps of its own `train` section's learning rate.
#[test]
fn lenet5_trains_on_fmnist_small() {
    let (c, _) = compile(std::path::Path::new("networks/lenet5.net"));
    let names: Vec<&str> = c
        .module
        .graph
        .node_ids()
        .map(|n| c.module.graph.node(n).op.mnemonic())
        .collect();
    assert_eq!(names.iter().filter(|m| **m == "tanh").count(), 4);
    assert_eq!(names.iter().filter(|m| **m == "avgpool").count(), 2);
    let (first, last) = trains_on_fmnist_small("networks/lenet5.net", 64, 60);
    assert!(
        (first - 10f64.ln()).abs() < 0.4,
        "initial loss {first} is not near ln 10"
    );
    assert!(last < first - 0.5, "loss did not fall: {first} -> {last}");
}

/// Trains `path` for `steps` steps of its own `train` section's learning
/// rate on the embedded Fashion-MNIST subset at batch `n` and returns the
/// mean loss of the first and of the last five steps.
fn trains_on_fmnist_small(path: &str, n: usize, steps: usize) -> (f64, f64) {
    use netc::backend::cpu::exec::CpuExec;
    let (c, _) = compile(std::path::Path::new(path));
    let mut g = c.module.graph.clone();
    netc::passes::autodiff::autodiff(&mut g, &c.module.train.sgd).unwrap();
    ir::verify::verify(&g).unwrap();
    let ds = netc::data::Dataset::embedded_fmnist().unwrap();
    let mut exec = CpuExec::<f32>::new(g, 3).unwrap();
    let per = 28 * 28;
    let mut losses = Vec::new();
    for s in 0..steps {
        let start = (s * n) % (ds.train.len() - n);
        let images: Vec<f32> = ds.train.images[start * per..(start + n) * per]
            .iter()
            .map(|&p| p as f32 / 255.0 - 0.29)
            .collect();
        let labels = &ds.train.labels[start..start + n];
        let st = exec
            .train_step(&images, labels, c.module.train.sgd.lr, s as u64)
            .unwrap();
        assert!(st.loss.is_finite(), "{path} step {s}: loss {}", st.loss);
        losses.push(st.loss);
    }
    let first = losses[..5].iter().sum::<f64>() / 5.0;
    let last = losses[losses.len() - 5..].iter().sum::<f64>() / 5.0;
    (first, last)
}

/// The VGG-style network and the small ResNet (batchnorm, residual
/// additions, global average pooling) learn on the embedded subset: their
/// loss starts near ln 10 and falls over 40 steps.
#[test]
fn vgg_and_resnet_train_on_fmnist_small() {
    for path in ["networks/vgg-fmnist.net", "networks/resnet-fmnist.net"] {
        let (c, _) = compile(std::path::Path::new(path));
        let ops: Vec<&str> = c
            .module
            .graph
            .node_ids()
            .map(|n| c.module.graph.node(n).op.mnemonic())
            .collect();
        assert!(ops.contains(&"batchnorm"), "{path}: no batchnorm");
        // Batchnorm rescales the features the last dense layer sees, so the
        // initial logits are not near 0 and the first losses not near ln 10.
        let (first, last) = trains_on_fmnist_small(path, 32, 40);
        assert!(
            last < first - 0.4 && last < 10f64.ln(),
            "{path}: loss did not fall: {first} -> {last}"
        );
    }
    let (c, _) = compile(std::path::Path::new("networks/resnet-fmnist.net"));
    let count = |m: &str| {
        c.module
            .graph
            .node_ids()
            .filter(|n| c.module.graph.node(*n).op.mnemonic() == m)
            .count()
    };
    assert_eq!(count("sum"), 3, "three residual additions");
    assert_eq!(count("global_avgpool"), 1);
}

/// CaffeNet is AlexNet on one tower with grouped convolutions: the same
/// 60,965,224 parameters and 724,406,816 multiply-accumulates, conv2's
/// weight `[256, 48, 5, 5]`, pooling before normalisation; and it takes
/// training steps, starting near ln 1000 and fitting its batch.
#[test]
fn caffenet_is_alexnet_with_groups_and_trains() {
    use netc::backend::cpu::exec::CpuExec;
    let (c, _) = compile(std::path::Path::new("networks/caffenet.net"));
    let (a, _) = compile(std::path::Path::new("networks/alexnet.net"));
    let totals = |g: &ir::Graph| {
        let t = table::render(g);
        t.lines()
            .find(|l| l.starts_with("total"))
            .unwrap()
            .split_whitespace()
            .skip(1)
            .take(2)
            .map(str::to_string)
            .collect::<Vec<_>>()
    };
    assert_eq!(totals(&c.module.graph), ["60,965,224", "724,406,816"]);
    assert_eq!(totals(&c.module.graph), totals(&a.module.graph));
    let g = &c.module.graph;
    assert!(
        g.node_ids()
            .all(|n| g.node(n).device != netc::ir::Device::Tower(1)),
        "one tower"
    );
    let w = g
        .node_ids()
        .find(|n| g.node(*n).name == "conv2/conv.weight")
        .unwrap();
    assert_eq!(g.node(w).ty.dims(), [256, 48, 5, 5]);
    let order: Vec<&str> = g
        .node_ids()
        .filter(|n| g.node(*n).name.starts_with("conv1/"))
        .map(|n| g.node(n).op.mnemonic())
        .filter(|m| *m != "param")
        .collect();
    assert_eq!(order, ["conv", "relu", "maxpool", "lrn"]);
    let mut t = c.module.graph.clone();
    netc::passes::autodiff::autodiff(&mut t, &c.module.train.sgd).unwrap();
    let mut exec = CpuExec::<f32>::new(t, 0).unwrap();
    let (images, labels) = common::batch(&exec, 2, 1000, 7);
    let first = exec.train_step(&images, &labels, 0.01, 0).unwrap().loss;
    assert!(
        (first - 1000f64.ln()).abs() < 0.5,
        "loss {first} is not near ln 1000"
    );
    // The same two images again: the first step has fitted them a little.
    let second = exec.train_step(&images, &labels, 0.01, 1).unwrap().loss;
    assert!(second < first, "loss did not fall: {first} -> {second}");
}
