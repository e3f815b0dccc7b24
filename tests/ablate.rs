//! Ablation variants of `networks/alexnet.net`: each compiles, is in
//! canonical form, keeps untouched comments, and changes exactly what it
//! says. IR snapshots of every variant. The training step of every
//! variant, fused and unfused, gets a memory plan the checker accepts.

use netc::ablate::{Change, apply};
use netc::frontend;
use netc::ir::{Op, print, table};

fn variant(changes: &[Change]) -> (String, frontend::Compiled) {
    let src = std::fs::read_to_string("networks/alexnet.net").unwrap();
    let text = apply("networks/alexnet.net", &src, changes).unwrap_or_else(|e| panic!("{e}"));
    let c = frontend::compile(&text)
        .unwrap_or_else(|d| panic!("{}", netc::diag::render("v", &text, &[d])));
    assert!(c.warnings.is_empty(), "{changes:?} leaves warnings");
    let ast = netc::syntax::parse(&text).unwrap();
    assert_eq!(
        netc::syntax::fmt::format(&ast, &text),
        text,
        "{changes:?}: not canonical"
    );
    assert!(text.starts_with("// Variant of networks/alexnet.net: "));
    (text, c)
}

fn count(c: &frontend::Compiled, f: fn(&Op) -> bool) -> usize {
    let g = &c.module.graph;
    g.node_ids().filter(|n| f(&g.node(*n).op)).count()
}

#[test]
fn every_variant_compiles_and_changes_what_it_says() {
    let base = frontend::compile(&std::fs::read_to_string("networks/alexnet.net").unwrap())
        .unwrap_or_else(|_| panic!());
    let all = [
        Change::NoLrn,
        Change::NonOverlappingPool,
        Change::OneTower,
        Change::NoDropout,
        Change::NoAugmentation,
        Change::Set("conv1.filters=64".into()),
        Change::Set("train.sgd.lr=0.02".into()),
        Change::Set("norm.alpha=5e-4".into()),
        Change::Activation("tanh".into()),
        Change::Norm("batchnorm".into()),
    ];
    for ch in &all {
        let (text, c) = variant(std::slice::from_ref(ch));
        insta::assert_snapshot!(
            format!("variant-{}", ch.to_string().replace(['=', ' ', '.'], "-")),
            print::print(&c.module.graph, print::PrintOptions { spans: false })
        );
        // Comments of untouched lines survive.
        assert!(text.contains("// Section 5: biases 1"), "{ch}");
        match ch {
            Change::NoLrn => {
                assert_eq!(count(&c, |o| matches!(o, Op::Lrn { .. })), 0);
                assert!(
                    !text.contains("Section 3.3"),
                    "the removed layer's comment stays"
                );
            }
            Change::NoDropout => assert_eq!(count(&c, |o| matches!(o, Op::Dropout { .. })), 0),
            Change::OneTower => {
                assert_eq!(c.module.graph.cross_edges(), 0);
                assert_eq!(c.module.graph.towers, 1);
            }
            Change::NonOverlappingPool => {
                for n in c.module.graph.node_ids() {
                    if let Op::MaxPool { size, stride, .. } = c.module.graph.node(n).op {
                        assert_eq!((size, stride), (2, 2));
                    }
                }
                // Every shape downstream is kept (27, 13, 6 for AlexNet).
                let shapes = |c: &frontend::Compiled| {
                    table::rows(&c.module.graph)
                        .into_iter()
                        .map(|r| (r.layer, r.shape))
                        .collect::<Vec<_>>()
                };
                assert_eq!(shapes(&c), shapes(&base));
            }
            Change::Activation(_) => {
                assert_eq!(count(&c, |o| matches!(o, Op::Relu)), 0);
                assert_eq!(
                    count(&c, |o| matches!(o, Op::Tanh)),
                    count(&base, |o| matches!(o, Op::Relu))
                );
            }
            Change::Norm(_) => {
                assert_eq!(count(&c, |o| matches!(o, Op::Lrn { .. })), 0);
                assert_eq!(
                    count(&c, |o| matches!(o, Op::BatchNorm { .. })),
                    count(&base, |o| matches!(o, Op::Lrn { .. }))
                );
            }
            Change::NoAugmentation => {
                let d = &c.module.train.data;
                assert!(!d.random_crop && !d.mirror && d.lighting == 0.0);
            }
            Change::Set(s) if s.starts_with("train.") => assert_eq!(c.module.train.sgd.lr, 0.02),
            Change::Set(s) if s.starts_with("conv1") => {
                let rows = table::rows(&c.module.graph);
                assert_eq!(
                    rows.iter().find(|r| r.layer == "conv1/conv").unwrap().shape,
                    "55×55×64"
                );
            }
            Change::Set(_) => {
                assert!(c.module.graph.node_ids().any(
                    |n| matches!(c.module.graph.node(n).op, Op::Lrn { alpha, .. } if alpha == 5e-4)
                ));
            }
        }
    }
    // Changes combine.
    let (_, c) = variant(&[Change::OneTower, Change::NoLrn, Change::NoDropout]);
    assert_eq!(c.module.graph.cross_edges(), 0);
    assert_eq!(
        count(&c, |o| matches!(o, Op::Lrn { .. } | Op::Dropout { .. })),
        0
    );
}

#[test]
fn inapplicable_changes_are_errors() {
    let src = std::fs::read_to_string("networks/alexnet.net").unwrap();
    let no_lrn = apply("a", &src, &[Change::NoLrn]).unwrap();
    assert!(apply("b", &no_lrn, &[Change::NoLrn]).is_err());
    assert!(apply("a", &src, &[Change::Set("conv9.filters=3".into())]).is_err());
    let broken = apply("a", &src, &[Change::Set("conv1.filters=95".into())])
        .expect_err("95 is not divisible by 2");
    assert!(broken.to_string().contains("N0108"), "{broken}");
}

#[test]
fn every_variant_plans_soundly_fused_and_unfused() {
    use netc::passes::{autodiff, fuse, memplan};
    let all = [
        Change::NoLrn,
        Change::NonOverlappingPool,
        Change::OneTower,
        Change::NoDropout,
        Change::NoAugmentation,
        Change::Set("conv1.filters=64".into()),
    ];
    let mut sets: Vec<Vec<Change>> = all.iter().map(|c| vec![c.clone()]).collect();
    sets.push(vec![Change::OneTower, Change::NoLrn, Change::NoDropout]);
    sets.push(vec![Change::NonOverlappingPool, Change::NoLrn]);
    for changes in sets {
        let (_, c) = variant(&changes);
        let mut g = c.module.graph.clone();
        autodiff::autodiff(&mut g, &c.module.train.sgd).unwrap();
        for fused in [false, true] {
            if fused {
                fuse::fuse(&mut g).unwrap();
                netc::ir::verify::verify(&g).unwrap();
            }
            for batch in [1, 128] {
                let p = memplan::plan(&g, batch).unwrap();
                memplan::check(&p, &g)
                    .unwrap_or_else(|e| panic!("{changes:?} fused {fused} batch {batch}: {e}"));
                assert!(p.lower_bound() <= p.planned() && p.planned() <= p.no_reuse());
            }
        }
    }
}
