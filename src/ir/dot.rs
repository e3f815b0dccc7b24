//! Graphviz text for a graph: one cluster per tower, shared inputs outside,
//! parameters omitted, cross-tower edges bold, red and dashed.

use std::fmt::Write;

use super::{Device, Graph, Op, order};

pub fn dot(g: &Graph) -> String {
    let nodes = order::topo(g).unwrap_or_else(|_| g.node_ids().collect());
    let mut s = String::new();
    let _ = writeln!(s, "digraph {:?} {{", g.name);
    let _ = writeln!(
        s,
        "  rankdir=TB;\n  node [shape=box, fontname=\"Helvetica\", fontsize=10];"
    );
    let label = |n: super::NodeId| {
        let node = g.node(n);
        format!("{}\\n{} {}", node.name, node.op.mnemonic(), node.ty)
    };
    let visible = |n: super::NodeId| !matches!(g.node(n).op, Op::Param { .. });
    for &n in &nodes {
        if visible(n) && g.node(n).device == Device::Shared {
            let _ = writeln!(
                s,
                "  n{} [label=\"{}\", shape=ellipse];",
                n.index(),
                label(n)
            );
        }
    }
    for t in 0..g.towers.max(1) {
        let _ = writeln!(
            s,
            "  subgraph cluster_t{t} {{\n    label=\"tower {t}\";\n    style=rounded;"
        );
        for &n in &nodes {
            if visible(n) && g.node(n).device == Device::Tower(t) {
                let _ = writeln!(s, "    n{} [label=\"{}\"];", n.index(), label(n));
            }
        }
        let _ = writeln!(s, "  }}");
    }
    for &n in &nodes {
        if !visible(n) {
            continue;
        }
        for i in g.inputs(n) {
            if !visible(i) {
                continue;
            }
            let style = if super::crosses(g.node(i).device, g.node(n).device) {
                " [color=red, style=dashed, penwidth=2]"
            } else {
                ""
            };
            let _ = writeln!(s, "  n{} -> n{}{};", i.index(), n.index(), style);
        }
    }
    s.push_str("}\n");
    s
}
