//! The deterministic text form of the IR, which snapshots store. Nodes in
//! [`order::topo`](super::order::topo) order, renumbered `%0, %1, …`;
//! floats in a fixed round-trippable format; no hash-map iteration. One
//! line per node:
//!
//! ```text
//! %7 = conv(%0, %5, %6) filters=48 size=11 stride=4 pad=0 : N×[48,55,55] t0 "conv1/conv"
//! ```
//!
//! Cross-tower inputs are marked with `^` (`^%12`). A node an op names
//! (the dropout of a `dropout_grad`) is written by its number too
//! (`of=%12`; `%?` if the graph lacks it). With `spans`, each line ends
//! with the source byte range the node came from.

use std::collections::HashMap;
use std::fmt::Write;

use super::{Graph, NodeId, order};

#[derive(Clone, Copy, Debug)]
pub struct PrintOptions {
    pub spans: bool,
}

impl Default for PrintOptions {
    fn default() -> Self {
        PrintOptions { spans: true }
    }
}

/// Renders the graph; a cyclic graph is printed in index order with a
/// header line saying so (the verifier reports the cycle itself).
pub fn print(g: &Graph, opts: PrintOptions) -> String {
    render(g, opts, false)
}

/// The text form without spans, a node an op names written by its name
/// (`of="fc7/dropout"`) as the text form did before relations were ids:
/// what a checkpoint's network fingerprint is computed from, so that
/// checkpoints written before keep loading.
pub fn print_for_fingerprint(g: &Graph) -> String {
    render(g, PrintOptions { spans: false }, true)
}

fn render(g: &Graph, opts: PrintOptions, by_name: bool) -> String {
    let (nodes, cyclic) = match order::topo(g) {
        Ok(o) => (o, false),
        Err(_) => (g.node_ids().collect(), true),
    };
    let ids: HashMap<NodeId, usize> = nodes.iter().enumerate().map(|(i, n)| (*n, i)).collect();
    let mut s = String::new();
    let _ = writeln!(s, "network {} towers={}", g.name, g.towers);
    if cyclic {
        let _ = writeln!(s, "; cyclic");
    }
    for &n in &nodes {
        let node = g.node(n);
        let _ = write!(s, "%{} = {}", ids[&n], node.op.mnemonic());
        let inputs = g.inputs(n);
        if !inputs.is_empty() {
            let list: Vec<String> = inputs
                .iter()
                .map(|i| {
                    let cross = super::crosses(g.node(*i).device, node.device);
                    format!("{}%{}", if cross { "^" } else { "" }, ids[i])
                })
                .collect();
            let _ = write!(s, "({})", list.join(", "));
        }
        let id = |r: NodeId| match (by_name, ids.get(&r)) {
            (true, Some(_)) => format!("{:?}", g.node(r).name),
            (_, Some(i)) => format!("%{i}"),
            (_, None) => "%?".to_string(),
        };
        for (k, v) in node.op.attrs_with(&id) {
            let _ = write!(s, " {k}={v}");
        }
        let _ = write!(s, " : {} {} {:?}", node.ty, node.device, node.name);
        if opts.spans {
            let _ = write!(s, " @{}..{}", node.span.start, node.span.end);
        }
        s.push('\n');
    }
    s
}

/// The YAML form: the same nodes and order as the text form, as data.
pub fn to_yaml(g: &Graph) -> Result<String, serde_yaml::Error> {
    #[derive(serde::Serialize)]
    struct YNode<'a> {
        id: usize,
        name: &'a str,
        layer: &'a str,
        #[serde(flatten)]
        op: super::Op,
        /// The forward node's id ([`super::Node::forward`]).
        #[serde(skip_serializing_if = "Option::is_none")]
        forward: Option<usize>,
        device: super::Device,
        #[serde(rename = "type")]
        ty: &'a super::Ty,
        inputs: Vec<YInput>,
        span: [usize; 2],
    }
    #[derive(serde::Serialize)]
    struct YInput {
        node: usize,
        cross_tower: bool,
    }
    #[derive(serde::Serialize)]
    struct YGraph<'a> {
        network: &'a str,
        towers: u32,
        nodes: Vec<YNode<'a>>,
    }
    let nodes = order::topo(g).unwrap_or_else(|_| g.node_ids().collect());
    let ids: HashMap<NodeId, usize> = nodes.iter().enumerate().map(|(i, n)| (*n, i)).collect();
    let y = YGraph {
        network: &g.name,
        towers: g.towers,
        nodes: nodes
            .iter()
            .map(|&n| {
                let node = g.node(n);
                // Ids inside the op renumbered as the nodes are (a missing
                // node as one past the last).
                let renumber = |r: NodeId| NodeId::new(ids.get(&r).copied().unwrap_or(nodes.len()));
                let mut op = node.op.clone();
                if let Some(of) = op.mask_of_mut() {
                    *of = renumber(*of);
                }
                YNode {
                    id: ids[&n],
                    name: &node.name,
                    layer: &node.layer,
                    op,
                    forward: node.forward.map(|f| renumber(f).index()),
                    device: node.device,
                    ty: &node.ty,
                    inputs: g
                        .inputs(n)
                        .iter()
                        .map(|i| YInput {
                            node: ids[i],
                            cross_tower: super::crosses(g.node(*i).device, node.device),
                        })
                        .collect(),
                    span: [node.span.start, node.span.end],
                }
            })
            .collect(),
    };
    serde_yaml::to_string(&y)
}
