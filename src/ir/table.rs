//! The architecture table `netc compile` prints: one row per layer stage,
//! the instances of a stage in every tower merged into one row (so conv1
//! reads 55×55×96 as in the paper), then totals. Parameters and inputs of
//! a stage are folded into its row; `across` gathers show as `cross` in
//! the "input" column of the layer they feed. Assumes a verified graph.

use std::collections::BTreeMap;
use std::fmt::Write;

use super::cost::{Cost, node_cost};
use super::{Device, Graph, NodeId, Op, Ty, order};

#[derive(Clone, Debug, PartialEq)]
pub struct Row {
    pub layer: String,
    pub op: &'static str,
    pub towers: usize,
    pub cross: bool,
    /// Output per example, H×W×C for maps, C for vectors, merged over towers.
    pub shape: String,
    pub kernel: String,
    pub cost: Cost,
}

pub fn rows(g: &Graph) -> Vec<Row> {
    let nodes = order::topo(g).unwrap_or_else(|_| g.node_ids().collect());
    // Merge by node name, keeping first-appearance order.
    let mut groups: Vec<(String, Vec<NodeId>)> = Vec::new();
    let mut index: BTreeMap<String, usize> = BTreeMap::new();
    for n in nodes {
        let node = g.node(n);
        if matches!(node.op, Op::Param { .. })
            || (node.op == Op::Concat && node.name.contains("/across_"))
        {
            continue;
        }
        match index.get(&node.name) {
            Some(&i) => groups[i].1.push(n),
            None => {
                index.insert(node.name.clone(), groups.len());
                groups.push((node.name.clone(), vec![n]));
            }
        }
    }
    groups
        .into_iter()
        .map(|(_, ns)| {
            let first = g.node(ns[0]);
            let mut cost = Cost::default();
            let mut cross = false;
            for &n in &ns {
                cost += node_cost(g, n);
                for i in g.inputs(n) {
                    let inp = g.node(i);
                    if matches!(inp.op, Op::Param { .. }) {
                        cost += node_cost(g, i);
                    }
                    if inp.op == Op::Concat && inp.name.contains("/across_") {
                        cross = true;
                    }
                }
            }
            let channels: u64 = ns
                .iter()
                .map(|n| g.node(*n).ty.dims().first().copied().unwrap_or(1))
                .sum();
            let shape = match &first.ty {
                Ty::Act { dims } if dims.len() == 3 => {
                    format!("{}×{}×{}", dims[1], dims[2], channels)
                }
                Ty::Act { dims } if dims.len() == 1 => channels.to_string(),
                Ty::Act { dims } => {
                    let mut d = dims.clone();
                    if let Some(c) = d.first_mut() {
                        *c = channels;
                    }
                    d.iter().map(u64::to_string).collect::<Vec<_>>().join("×")
                }
                Ty::Labels { classes } => format!("class({classes})"),
                Ty::Scalar => "1".into(),
                Ty::Effect => String::new(),
                Ty::Param { .. } => String::new(),
            };
            let kernel = match &first.op {
                Op::Conv {
                    size,
                    stride,
                    pad,
                    dilation,
                    groups,
                    ..
                } => {
                    let mut k = format!("{}×{} s{stride} p{pad}", size.h, size.w);
                    if *dilation != 1 {
                        k.push_str(&format!(" d{dilation}"));
                    }
                    if *groups != 1 {
                        k.push_str(&format!(" g{groups}"));
                    }
                    k
                }
                Op::MaxPool {
                    size,
                    stride,
                    pad: 0,
                } => format!("{size}×{size} s{stride}"),
                Op::MaxPool { size, stride, pad } | Op::AvgPool { size, stride, pad } => {
                    format!("{size}×{size} s{stride} p{pad}")
                }
                Op::LeakyRelu { slope } => format!("slope={slope}"),
                Op::Lrn { size, .. } => format!("n={size}"),
                Op::Dropout { rate } => format!("p={rate}"),
                _ => String::new(),
            };
            let towers = if first.device == Device::Shared {
                0
            } else {
                ns.len()
            };
            Row {
                layer: first.name.clone(),
                op: first.op.mnemonic(),
                towers,
                cross,
                shape,
                kernel,
                cost,
            }
        })
        .collect()
}

fn thousands(v: u64) -> String {
    let s = v.to_string();
    let mut out = String::new();
    for (i, c) in s.chars().enumerate() {
        if i > 0 && (s.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

/// The table as aligned text.
pub fn render(g: &Graph) -> String {
    let rows = rows(g);
    let mut total = Cost::default();
    let mut lines: Vec<[String; 8]> = vec![[
        "layer".into(),
        "towers".into(),
        "input".into(),
        "output (H×W×C)".into(),
        "kernel".into(),
        "params".into(),
        "MACs".into(),
        "activations".into(),
    ]];
    for r in &rows {
        total += r.cost;
        lines.push([
            r.layer.clone(),
            if r.towers == 0 {
                "-".into()
            } else {
                r.towers.to_string()
            },
            if r.cross {
                "cross".into()
            } else if r.towers == 0 {
                "".into()
            } else {
                "own".into()
            },
            r.shape.clone(),
            r.kernel.clone(),
            thousands(r.cost.params),
            thousands(r.cost.macs),
            thousands(r.cost.activations),
        ]);
    }
    lines.push([
        "total".into(),
        String::new(),
        String::new(),
        String::new(),
        String::new(),
        thousands(total.params),
        thousands(total.macs),
        thousands(total.activations),
    ]);
    let widths: Vec<usize> = (0..8)
        .map(|c| {
            lines
                .iter()
                .map(|l| l[c].chars().count())
                .max()
                .unwrap_or(0)
        })
        .collect();
    let mut s = String::new();
    let _ = writeln!(
        s,
        "network {} ({} tower{})",
        g.name,
        g.towers,
        if g.towers == 1 { "" } else { "s" }
    );
    for (i, l) in lines.iter().enumerate() {
        if i == 1 || i == lines.len() - 1 {
            let _ = writeln!(s, "{}", "-".repeat(widths.iter().sum::<usize>() + 2 * 7));
        }
        let mut cells = Vec::new();
        for (c, cell) in l.iter().enumerate() {
            let pad = widths[c] - cell.chars().count();
            // Numbers right-aligned, text left-aligned.
            cells.push(if c >= 5 {
                format!("{}{cell}", " ".repeat(pad))
            } else {
                format!("{cell}{}", " ".repeat(pad))
            });
        }
        let _ = writeln!(s, "{}", cells.join("  ").trim_end());
    }
    let _ = writeln!(
        s,
        "MACs are per example, forward; activations are elements per example."
    );
    s
}
