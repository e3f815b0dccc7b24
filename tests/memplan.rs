//! Memory planning: every network in `networks/` and a few hundred random
//! graphs (1–3 towers, cross-tower concats) are planned for their training
//! step and proved sound by the checker; the checker rejects corrupted
//! plans; AlexNet's plan is within 10% of the lower bound; the picture is
//! well-formed XML; `netc compile --emit memplan` prints the numbers.

use netc::frontend;
use netc::ir::{self, Device, Graph, InputKind, Node, NodeId, Op, ParamRole, Ty, infer};
use netc::passes::memplan::{self, BufKind, MemplanError, Plan, Side};
use netc::passes::{autodiff, fuse, memplan_svg};
use netc::rng::Rng;
use netc::span::Span;

fn networks() -> Vec<std::path::PathBuf> {
    let mut v: Vec<_> = std::fs::read_dir("networks")
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "net"))
        .collect();
    v.sort();
    v
}

/// The training step of a `.net` file, and its `train.batch`.
fn training(path: &std::path::Path) -> (Graph, u64) {
    let src = std::fs::read_to_string(path).unwrap();
    let c = frontend::compile(&src).unwrap_or_else(|d| panic!("{}: {:?}", path.display(), d));
    let mut g = c.module.graph;
    autodiff::autodiff(&mut g, &c.module.train.sgd).unwrap();
    ir::verify::verify(&g).unwrap();
    (g, c.module.train.batch)
}

fn mib(b: u64) -> f64 {
    b as f64 / (1024.0 * 1024.0)
}

/// The fused training step of a `.net` file, and its `train.batch`.
fn fused(path: &std::path::Path) -> (Graph, u64) {
    let (mut g, batch) = training(path);
    fuse::fuse(&mut g).unwrap();
    ir::verify::verify(&g).unwrap();
    (g, batch)
}

#[test]
fn every_network_plans_and_checks() {
    for path in networks() {
        for (g, batch) in [training(&path), fused(&path)] {
            for b in [1, 3, batch] {
                let p = memplan::plan(&g, b).unwrap();
                memplan::check(&p, &g).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
                assert!(p.lower_bound() <= p.planned(), "{}", path.display());
                assert!(p.planned() <= p.no_reuse(), "{}", path.display());
                // Every value has a buffer; LRN, pooling and the loss have side buffers.
                for n in g.node_ids() {
                    let node = g.node(n);
                    assert_eq!(
                        p.output(n).is_some(),
                        node.ty != Ty::Effect,
                        "{}",
                        node.name
                    );
                    let sides: &[Side] = match node.op {
                        Op::Lrn { .. } => &[Side::LrnScale],
                        Op::MaxPool { .. } => &[Side::PoolArgmax],
                        Op::SoftmaxXent => &[Side::SoftmaxProbs],
                        Op::LrnMaxPool { .. } => &[Side::LrnOut, Side::LrnScale, Side::PoolArgmax],
                        _ => &[],
                    };
                    for s in [
                        Side::LrnScale,
                        Side::PoolArgmax,
                        Side::SoftmaxProbs,
                        Side::LrnOut,
                    ] {
                        assert_eq!(
                            p.side(n, s).is_some(),
                            sides.contains(&s),
                            "{} {s:?}",
                            node.name
                        );
                    }
                }
            }
        }
    }
}

#[test]
fn alexnet_is_within_ten_percent_of_the_lower_bound() {
    for (name, fused_step) in [
        ("alexnet", false),
        ("alexnet-fmnist", false),
        ("alexnet", true),
        ("alexnet-fmnist", true),
    ] {
        let path = format!("networks/{name}.net");
        let path = std::path::Path::new(&path);
        let (g, _) = if fused_step {
            fused(path)
        } else {
            training(path)
        };
        let p = memplan::plan(&g, 128).unwrap();
        memplan::check(&p, &g).unwrap();
        eprintln!(
            "{name} (fused: {fused_step}) batch 128: no reuse {} ({:.1} MiB), planned {} ({:.1} MiB), lower bound {} ({:.1} MiB)",
            p.no_reuse(),
            mib(p.no_reuse()),
            p.planned(),
            mib(p.planned()),
            p.lower_bound(),
            mib(p.lower_bound())
        );
        assert!(
            p.planned() as f64 <= 1.10 * p.lower_bound() as f64,
            "{name}: planned {} vs lower bound {}",
            p.planned(),
            p.lower_bound()
        );
        // Reuse halves AlexNet's memory at least (fused, there are fewer
        // buffers to begin with, and it still saves a quarter).
        let (num, den) = if fused_step { (4, 3) } else { (2, 1) };
        assert!(
            p.planned() * num <= den * (p.no_reuse() + p.no_reuse() / 10),
            "{name}"
        );
        // The persistent region: weights, biases and velocities.
        let params: u64 = g
            .node_ids()
            .filter(|&n| g.node(n).op.is_param())
            .map(|n| memplan::align(g.node(n).ty.numel() * 4))
            .sum();
        assert_eq!(p.arenas.iter().map(|a| a.persistent).sum::<u64>(), params);
        // In place happened (ReLU over its convolution, at least; fused,
        // a gradient chain over its first part).
        assert!(
            p.buffers.iter().any(|b| b.in_place_of.is_some()),
            "{name} {fused_step}"
        );
    }
}

#[test]
fn alexnet_numbers_are_what_the_sizes_say() {
    let (g, _) = training(std::path::Path::new("networks/alexnet.net"));
    let p = memplan::plan(&g, 128).unwrap();
    // conv1's output on one tower: 48×55×55 f32 for 128 examples.
    let conv1 = g.find("conv1/conv", Device::Tower(0)).unwrap();
    assert_eq!(p.output(conv1).unwrap().size, 128 * 48 * 55 * 55 * 4);
    let pool = g.find("conv1/maxpool", Device::Tower(1)).unwrap();
    let side = p.side(pool, Side::PoolArgmax).unwrap();
    assert_eq!(side.size, 128 * 48 * 27 * 27 * 4);
    assert_eq!(side.kind, BufKind::Side);
    let loss = g.find("loss", Device::Tower(0));
    if let Some(loss) = loss {
        assert_eq!(
            p.side(loss, Side::SoftmaxProbs).unwrap().size,
            128 * 1000 * 4
        );
    }
    let image = g.find("image", Device::Shared).unwrap();
    assert_eq!(p.output(image).unwrap().device, Device::Shared);
}

// ---- random graphs ----

struct Gen<'a> {
    g: Graph,
    rng: &'a mut Rng,
}

impl Gen<'_> {
    fn node(&mut self, op: Op, name: String, dev: Device, ty: Ty, at: usize) -> NodeId {
        self.g.add(Node {
            op,
            layer: name.split('/').next().unwrap_or("").to_string(),
            name,
            device: dev,
            ty,
            span: Span::new(at, at + 1),
            forward: None,
        })
    }

    /// Applies `op` to `x` on `dev`, with parameters if it needs them;
    /// `None` if the shapes do not allow it.
    fn apply(&mut self, op: Op, layer: &str, x: NodeId, dev: Device, at: usize) -> Option<NodeId> {
        let xt = self.g.node(x).ty.clone();
        let shapes = infer::param_shapes(&op, &xt).ok()?;
        let mut tys = vec![xt];
        tys.extend(shapes.iter().map(|d| Ty::Param { dims: d.clone() }));
        let refs: Vec<&Ty> = tys.iter().collect();
        let ty = infer::infer(&op, &refs).ok()?;
        if ty.numel() == 0 {
            return None;
        }
        let mut ins = vec![x];
        for (k, dims) in shapes.into_iter().enumerate() {
            let (role, suffix) = if k == 0 {
                (ParamRole::Weight, "weight")
            } else {
                (ParamRole::Bias, "bias")
            };
            let p = self.node(
                Op::Param {
                    role,
                    init: ir::Init::Constant { value: 0.0 },
                },
                format!("{layer}/{}.{suffix}", op.mnemonic()),
                dev,
                Ty::Param { dims },
                at,
            );
            ins.push(p);
        }
        let n = self.node(
            op.clone(),
            format!("{layer}/{}", op.mnemonic()),
            dev,
            ty,
            at,
        );
        for (port, i) in ins.into_iter().enumerate() {
            self.g.connect(i, n, port as u32);
        }
        Some(n)
    }

    fn concat(&mut self, layer: &str, parts: &[NodeId], dev: Device, at: usize) -> Option<NodeId> {
        let tys: Vec<Ty> = parts.iter().map(|i| self.g.node(*i).ty.clone()).collect();
        let refs: Vec<&Ty> = tys.iter().collect();
        let ty = infer::infer(&Op::Concat, &refs).ok()?;
        let n = self.node(Op::Concat, format!("{layer}/concat"), dev, ty, at);
        for (port, &i) in parts.iter().enumerate() {
            self.g.connect(i, n, port as u32);
        }
        Some(n)
    }

    fn small(&mut self, lo: u64, hi: u64) -> u64 {
        lo + self.rng.below(hi - lo + 1)
    }
}

/// A random valid forward graph: per tower, a chain of conv, relu, lrn,
/// maxpool, dropout, dense layers, with cross-tower concats; then a dense
/// classifier on tower 0 over all towers, and the loss.
fn random_graph(seed: u64) -> Graph {
    let mut rng = Rng::new(seed, 0x6d656d);
    let towers = 1 + rng.below(3) as u32;
    let mut gn = Gen {
        g: Graph::new(format!("random{seed}"), towers),
        rng: &mut rng,
    };
    let (c, h, w) = (gn.small(1, 3), gn.small(4, 14), gn.small(4, 14));
    let classes = gn.small(2, 9);
    let image = gn.node(
        Op::Input {
            kind: InputKind::Tensor,
        },
        "image".into(),
        Device::Shared,
        Ty::Act {
            dims: vec![c, h, w],
        },
        0,
    );
    let label = gn.node(
        Op::Input {
            kind: InputKind::Labels,
        },
        "label".into(),
        Device::Shared,
        Ty::Labels { classes },
        1,
    );
    let mut cur: Vec<NodeId> = vec![image; towers as usize];
    let layers = gn.small(1, 8) as usize;
    for l in 0..layers {
        let layer = format!("l{l}");
        let at = 10 * (l + 1);
        let pick = gn.rng.below(8);
        if pick == 7 && towers > 1 {
            // Cross-tower concat: each tower gathers itself and the next (or all).
            let all = gn.rng.below(2) == 0;
            let snapshot = cur.clone();
            for t in 0..towers as usize {
                let parts: Vec<NodeId> = if all {
                    snapshot.clone()
                } else {
                    vec![snapshot[t], snapshot[(t + 1) % towers as usize]]
                };
                if let Some(n) = gn.concat(&layer, &parts, Device::Tower(t as u32), at) {
                    cur[t] = n;
                }
            }
            continue;
        }
        let op = match pick {
            0 | 7 => Op::Conv {
                filters: gn.small(1, 6),
                size: gn.small(1, 3).into(),
                stride: gn.small(1, 2).into(),
                pad: gn.small(0, 1).into(),
                dilation: 1,
                groups: 1,
                bias: true,
            },
            1 => Op::Relu,
            2 => Op::Lrn {
                size: 3,
                alpha: 1e-4,
                beta: 0.75,
                k: 2.0,
            },
            3 => Op::MaxPool {
                size: gn.small(1, 3),
                stride: gn.small(1, 2),
                pad: 0,
            },
            4 => Op::Dropout { rate: 0.5 },
            5 => Op::Dense {
                units: gn.small(1, 12),
            },
            _ => Op::Relu,
        };
        for (t, c) in cur.iter_mut().enumerate() {
            if let Some(n) = gn.apply(op.clone(), &layer, *c, Device::Tower(t as u32), at) {
                *c = n;
            }
        }
    }
    let at = 10 * (layers + 1);
    // Gather every tower on tower 0 (flattened by a dense layer first when
    // the shapes differ), then classify.
    let t0 = Device::Tower(0);
    let mut x = cur[0];
    if towers > 1 {
        x = match gn.concat("head", &cur, t0, at) {
            Some(n) => n,
            None => {
                let mut flat = Vec::new();
                for (t, &v) in cur.iter().enumerate() {
                    let d = Device::Tower(t as u32);
                    flat.push(gn.apply(Op::Dense { units: 4 }, "flat", v, d, at).unwrap());
                }
                gn.concat("head", &flat, t0, at + 1).unwrap()
            }
        };
    }
    let logits = gn
        .apply(Op::Dense { units: classes }, "fc", x, t0, at + 2)
        .unwrap();
    let loss = gn.node(Op::SoftmaxXent, "loss".into(), t0, Ty::Scalar, at + 3);
    gn.g.connect(logits, loss, 0);
    gn.g.connect(label, loss, 1);
    gn.g
}

/// Corrupts a sound plan so two buffers live at once share bytes.
fn corrupt(p: &Plan, rng: &mut Rng) -> Option<Plan> {
    let n = p.buffers.len();
    // Moving a buffer that takes part in an in-place pair breaks the pair
    // first; leave those alone so the overlap itself is what is caught.
    let paired: std::collections::HashSet<usize> = p
        .buffers
        .iter()
        .enumerate()
        .filter_map(|(i, b)| b.in_place_of.map(|a| [a, i]))
        .flatten()
        .collect();
    let mut pairs = Vec::new();
    for i in 0..n {
        for j in 0..n {
            let (a, b) = (&p.buffers[i], &p.buffers[j]);
            if i != j
                && !paired.contains(&j)
                && a.device == b.device
                && a.first <= b.last
                && b.first <= a.last
                && a.size > 0
                && b.size > 0
                && a.in_place_of != Some(j)
                && b.in_place_of != Some(i)
            {
                pairs.push((i, j));
            }
        }
    }
    if pairs.is_empty() {
        return None;
    }
    let (i, j) = pairs[rng.below(pairs.len() as u64) as usize];
    let mut q = p.clone();
    q.buffers[j].offset = q.buffers[i].offset;
    Some(q)
}

#[test]
fn random_graphs_plan_and_check() {
    let mut rng = Rng::new(2012, 1);
    let mut towers_seen = [0usize; 4];
    let mut cross = 0;
    let (mut in_place, mut sides, mut greedy) = (0, 0, 0);
    for seed in 0..300 {
        let mut g = random_graph(seed);
        ir::verify::verify(&g).unwrap_or_else(|e| panic!("seed {seed}: {e}"));
        towers_seen[g.towers as usize] += 1;
        cross += usize::from(g.cross_edges() > 0);
        // The forward graph alone plans too.
        let batch = 1 + rng.below(5);
        let p = memplan::plan(&g, batch).unwrap();
        memplan::check(&p, &g).unwrap_or_else(|e| panic!("seed {seed} forward: {e}"));
        let sgd = ir::train::Sgd {
            lr: 0.01,
            momentum: 0.9,
            weight_decay: 5e-4,
            ..ir::train::TrainConfig::default().sgd
        };
        autodiff::autodiff(&mut g, &sgd).unwrap_or_else(|e| panic!("seed {seed}: {e}"));
        ir::verify::verify(&g).unwrap_or_else(|e| panic!("seed {seed}: {e}"));
        let p = memplan::plan(&g, batch).unwrap();
        memplan::check(&p, &g).unwrap_or_else(|e| panic!("seed {seed}: {e}"));
        assert!(p.lower_bound() <= p.planned(), "seed {seed}");
        assert!(p.planned() <= p.no_reuse(), "seed {seed}");
        in_place += p.buffers.iter().filter(|b| b.in_place_of.is_some()).count();
        sides += p.buffers.iter().filter(|b| b.kind == BufKind::Side).count();
        greedy += usize::from(p.order_kind == memplan::OrderKind::Greedy);
        // Both orders give sound plans on their own.
        let topo = ir::order::topo(&g).unwrap();
        if let Ok(q) = memplan::plan_with_order(&g, batch, topo, memplan::OrderKind::Topo) {
            match memplan::check(&q, &g) {
                Ok(()) | Err(MemplanError::OrderHazard { .. }) => {}
                Err(e) => panic!("seed {seed} topo: {e}"),
            }
        }
        // The checker notices an overlap.
        if let Some(bad) = corrupt(&p, &mut rng) {
            let r = memplan::check(&bad, &g);
            assert!(
                matches!(
                    r,
                    Err(MemplanError::Overlap { .. } | MemplanError::OutOfArena { .. })
                ),
                "seed {seed}: corrupted plan gives {r:?}"
            );
        }
        // The picture is well formed.
        well_formed(&memplan_svg::svg(&p)).unwrap_or_else(|e| panic!("seed {seed}: {e}"));
    }
    assert!(towers_seen[1] > 0 && towers_seen[2] > 0 && towers_seen[3] > 0);
    assert!(cross > 50, "only {cross} graphs cross towers");
    assert!(
        in_place > 100 && sides > 100,
        "{in_place} in place, {sides} side buffers"
    );
    assert!(greedy > 0, "the greedy order never won");
}

#[test]
fn bad_graphs_are_errors_not_panics() {
    let mut g = random_graph(7);
    assert_eq!(memplan::plan(&g, 0), Err(MemplanError::ZeroBatch));
    // A cycle.
    let loss = g
        .node_ids()
        .find(|&n| g.node(n).op == Op::SoftmaxXent)
        .unwrap();
    let logits = g.inputs(loss)[0];
    g.connect(loss, logits, 9);
    assert_eq!(memplan::plan(&g, 1), Err(MemplanError::Cycle));
    // An empty graph plans to nothing.
    let p = memplan::plan(&Graph::new("empty", 1), 1).unwrap();
    assert_eq!(p.planned(), 0);
    memplan::check(&p, &Graph::new("empty", 1)).unwrap();
    // A plan checked against another graph is rejected.
    let (g1, _) = training(std::path::Path::new("networks/alexnet-fmnist.net"));
    let p1 = memplan::plan(&g1, 2).unwrap();
    let g2 = random_graph(3);
    assert!(memplan::check(&p1, &g2).is_err());
}

// ---- the picture ----

/// A small XML well-formedness check: tags nest and close, attributes are
/// quoted, text holds no raw `<` or stray `&`. Returns the element count.
fn well_formed(s: &str) -> Result<usize, String> {
    let s = s
        .strip_prefix(r#"<?xml version="1.0" encoding="UTF-8"?>"#)
        .ok_or("no XML declaration")?;
    let mut stack: Vec<String> = Vec::new();
    let mut elements = 0;
    let mut rest = s;
    let mut root_closed = false;
    while let Some(i) = rest.find('<') {
        check_text(&rest[..i])?;
        if root_closed && !rest[..i].trim().is_empty() {
            return Err("text after the root".into());
        }
        let end = rest[i..].find('>').ok_or("unclosed tag")? + i;
        let tag = &rest[i + 1..end];
        rest = &rest[end + 1..];
        if let Some(name) = tag.strip_prefix('/') {
            let open = stack.pop().ok_or("close without open")?;
            if open != name.trim() {
                return Err(format!("<{open}> closed by </{name}>"));
            }
            if stack.is_empty() {
                root_closed = true;
            }
            continue;
        }
        if root_closed {
            return Err("second root element".into());
        }
        elements += 1;
        let self_closing = tag.ends_with('/');
        let body = tag.trim_end_matches('/');
        let name = body
            .split_whitespace()
            .next()
            .ok_or("empty tag")?
            .to_string();
        if !name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == ':')
        {
            return Err(format!("bad tag name {name:?}"));
        }
        // Attributes: name="value" pairs.
        let mut attrs = body[name.len()..].trim();
        while !attrs.is_empty() {
            let eq = attrs
                .find("=\"")
                .ok_or(format!("bad attribute in <{name}>"))?;
            let close = attrs[eq + 2..].find('"').ok_or("unterminated attribute")? + eq + 2;
            check_text(&attrs[eq + 2..close])?;
            attrs = attrs[close + 1..].trim_start();
        }
        if !self_closing {
            stack.push(name);
        }
    }
    check_text(rest)?;
    if !stack.is_empty() || !root_closed {
        return Err(format!("unclosed elements {stack:?}"));
    }
    Ok(elements)
}

fn check_text(t: &str) -> Result<(), String> {
    if t.contains('<') || t.contains('>') {
        return Err(format!("raw angle bracket in {t:?}"));
    }
    let mut rest = t;
    while let Some(i) = rest.find('&') {
        let semi = rest[i..].find(';').ok_or("stray &")? + i;
        let ent = &rest[i + 1..semi];
        if !["amp", "lt", "gt", "quot", "apos"].contains(&ent) {
            return Err(format!("unknown entity &{ent};"));
        }
        rest = &rest[semi + 1..];
    }
    Ok(())
}

#[test]
fn picture_is_well_formed_and_shows_every_buffer() {
    let (g, _) = training(std::path::Path::new("networks/alexnet.net"));
    let p = memplan::plan(&g, 128).unwrap();
    let svg = memplan_svg::svg(&p);
    let elements = well_formed(&svg).unwrap();
    assert!(elements > p.buffers.len());
    // One <title> per buffer, one panel per device.
    assert_eq!(svg.matches("<title>").count(), p.buffers.len());
    assert_eq!(svg.matches("<g>").count(), p.arenas.len());
    assert!(svg.contains("op index") && svg.contains("address (MiB)"));
    assert!(svg.contains("lower bound"));
    // The checker of well-formedness catches breakage.
    assert!(well_formed(&svg.replacen("</g>", "", 1)).is_err());
    assert!(well_formed(&svg.replacen("<title>", "<title>a<b", 1)).is_err());
    assert!(memplan_svg::escape("<a&\"b'>") == "&lt;a&amp;&quot;b&apos;&gt;");
}

// ---- the command line ----

#[test]
fn netc_compile_emit_memplan() {
    let dir = std::env::temp_dir().join(format!("netc-memplan-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let picture = dir.join("plan.svg");
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_netc"))
        .args([
            "compile",
            "networks/alexnet.net",
            "--emit",
            "memplan",
            "--batch",
            "128",
        ])
        .arg("--picture")
        .arg(&picture)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8(out.stdout).unwrap();
    // By default the fused step, the one `netc train` runs.
    let (g, _) = fused(std::path::Path::new("networks/alexnet.net"));
    let p = memplan::plan(&g, 128).unwrap();
    assert_eq!(text, memplan::render(&p));
    for n in [p.no_reuse(), p.planned(), p.lower_bound()] {
        assert!(text.contains(&n.to_string()));
    }
    assert!(text.contains("MiB") && text.contains("offset"));
    let svg = std::fs::read_to_string(&picture).unwrap();
    well_formed(&svg).unwrap();
    // Next to the output by default.
    let out_txt = dir.join("plan.txt");
    let status = std::process::Command::new(env!("CARGO_BIN_EXE_netc"))
        .args([
            "compile",
            "networks/alexnet-fmnist.net",
            "--emit",
            "memplan",
            "-o",
        ])
        .arg(&out_txt)
        .output()
        .unwrap();
    assert!(status.status.success());
    assert!(
        std::fs::read_to_string(&out_txt)
            .unwrap()
            .contains("batch 128")
    );
    assert!(dir.join("memplan.svg").exists());
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn plan_snapshots() {
    insta::glob!("../networks", "*.net", |path| {
        let (g, batch) = training(path);
        let p = memplan::plan(&g, batch).unwrap();
        insta::assert_snapshot!("memplan", memplan::render(&p));
    });
}
