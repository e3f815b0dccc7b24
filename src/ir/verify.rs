//! The IR verifier: run after lowering and after every pass (always in
//! tests). Checks the invariants stated in `ir/mod.rs` and reports the
//! first violation with the offending node.

use std::collections::HashSet;

use petgraph::Direction;
use petgraph::visit::EdgeRef;

use super::{Graph, NodeId, Op, Ty, crosses, infer, order};

#[derive(Clone, Debug, PartialEq, thiserror::Error)]
pub enum VerifyError {
    #[error("the graph has a cycle through `{name}`")]
    Cycle { node: NodeId, name: String },
    #[error("`{name}` has inputs on ports {ports:?}, expected 0..{n}")]
    Ports {
        node: NodeId,
        name: String,
        ports: Vec<u32>,
        n: usize,
    },
    #[error("`{name}` has type {have} but its inputs give {want}")]
    Type {
        node: NodeId,
        name: String,
        have: String,
        want: String,
    },
    #[error("`{name}`: {source}")]
    Shape {
        node: NodeId,
        name: String,
        source: infer::ShapeError,
    },
    #[error("edge into `{name}` port {port} has the wrong cross-tower mark")]
    Cross {
        node: NodeId,
        name: String,
        port: u32,
    },
    #[error("two nodes are named `{name}` on {device}")]
    Duplicate {
        node: NodeId,
        name: String,
        device: String,
    },
}

pub fn verify(g: &Graph) -> Result<(), VerifyError> {
    if let Err(n) = order::topo(g) {
        return Err(VerifyError::Cycle {
            node: n,
            name: g.node(n).name.clone(),
        });
    }
    let mut seen = HashSet::new();
    for n in g.node_ids() {
        let node = g.node(n);
        if !seen.insert((node.name.clone(), node.device)) {
            return Err(VerifyError::Duplicate {
                node: n,
                name: node.name.clone(),
                device: node.device.to_string(),
            });
        }
        let mut ports: Vec<u32> = Vec::new();
        for e in g.g.edges_directed(n, Direction::Incoming) {
            ports.push(e.weight().port);
            if e.weight().cross != crosses(g.node(e.source()).device, node.device) {
                return Err(VerifyError::Cross {
                    node: n,
                    name: node.name.clone(),
                    port: e.weight().port,
                });
            }
        }
        ports.sort_unstable();
        if ports.iter().enumerate().any(|(i, p)| *p as usize != i) {
            return Err(VerifyError::Ports {
                node: n,
                name: node.name.clone(),
                n: ports.len(),
                ports,
            });
        }
        if matches!(node.op, Op::Input { .. } | Op::Param { .. }) {
            if !ports.is_empty() {
                return Err(VerifyError::Ports {
                    node: n,
                    name: node.name.clone(),
                    n: 0,
                    ports,
                });
            }
            let ok = matches!(
                (&node.op, &node.ty),
                (Op::Param { .. }, Ty::Param { .. })
                    | (
                        Op::Input {
                            kind: super::InputKind::Tensor
                        },
                        Ty::Act { .. }
                    )
                    | (
                        Op::Input {
                            kind: super::InputKind::Labels
                        },
                        Ty::Labels { .. }
                    )
            );
            if !ok {
                return Err(VerifyError::Type {
                    node: n,
                    name: node.name.clone(),
                    have: node.ty.to_string(),
                    want: format!("a {} type", node.op.mnemonic()),
                });
            }
            continue;
        }
        let ins = g.inputs(n);
        let tys: Vec<&Ty> = ins.iter().map(|i| &g.node(*i).ty).collect();
        let want = infer::infer(&node.op, &tys).map_err(|source| VerifyError::Shape {
            node: n,
            name: node.name.clone(),
            source,
        })?;
        if want != node.ty {
            return Err(VerifyError::Type {
                node: n,
                name: node.name.clone(),
                have: node.ty.to_string(),
                want: want.to_string(),
            });
        }
    }
    Ok(())
}
