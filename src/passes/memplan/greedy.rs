//! The greedy execution order: a list schedule that, among ready nodes,
//! runs the one that frees the most bytes net of what it allocates (ties
//! by the topological key of `ir::order::topo`). Assumes an acyclic graph;
//! guarantees a permutation of its nodes that runs every node after its
//! inputs and every `sgd_update` after the other readers of its state.

use std::collections::{HashMap, HashSet};

use petgraph::Direction;

use super::needs::{hazards, out_bytes};
use super::types::MemplanError;
use crate::ir::{Device, Graph, NodeId, Op};

/// The topological key of `ir::order::topo`, for tie-breaking.
pub(super) type Key = (usize, String, Device, usize);

pub(super) fn key(g: &Graph, n: NodeId) -> Key {
    let node = g.node(n);
    (node.span.start, node.name.clone(), node.device, n.index())
}

/// A list schedule that runs, among ready nodes, the one that frees the
/// most bytes net of what it allocates; ties by the topological key.
pub(super) fn greedy_order(g: &Graph, batch: u64) -> Result<Vec<NodeId>, MemplanError> {
    let ids: Vec<NodeId> = g.node_ids().collect();
    let mut preds: HashMap<NodeId, HashSet<NodeId>> = HashMap::new();
    let mut succs: HashMap<NodeId, Vec<NodeId>> = HashMap::new();
    for &n in &ids {
        let mut p: HashSet<NodeId> = g.inputs(n).into_iter().collect();
        p.extend(hazards(g, n));
        for &s in &p {
            succs.entry(s).or_default().push(n);
        }
        preds.insert(n, p);
    }
    let mut indeg: HashMap<NodeId, usize> = preds.iter().map(|(n, p)| (*n, p.len())).collect();
    // Readers not yet run, per value.
    let mut pending: HashMap<NodeId, usize> = ids
        .iter()
        .map(|&n| (n, g.g.edges_directed(n, Direction::Outgoing).count()))
        .collect();
    let mut bytes: HashMap<NodeId, i128> = HashMap::new();
    for &n in &ids {
        let node = g.node(n);
        let freeable = !matches!(node.op, Op::Param { .. } | Op::Input { .. });
        let b = if freeable { out_bytes(g, n, batch)? } else { 0 };
        bytes.insert(n, b as i128);
    }
    let mut ready: Vec<NodeId> = ids.iter().copied().filter(|n| indeg[n] == 0).collect();
    let mut out = Vec::with_capacity(ids.len());
    while !ready.is_empty() {
        let mut best: Option<(i128, std::cmp::Reverse<Key>, usize)> = None;
        for (i, &n) in ready.iter().enumerate() {
            let mut freed: i128 = 0;
            let mut seen = HashSet::new();
            for s in g.inputs(n) {
                if seen.insert(s) {
                    let uses = g.users(s).iter().filter(|&&u| u == n).count();
                    if pending.get(&s).copied().unwrap_or(0) == uses {
                        freed += bytes.get(&s).copied().unwrap_or(0);
                    }
                }
            }
            let score = freed - bytes.get(&n).copied().unwrap_or(0);
            let cand = (score, std::cmp::Reverse(key(g, n)), i);
            if best
                .as_ref()
                .is_none_or(|b| (cand.0, &cand.1) > (b.0, &b.1))
            {
                best = Some(cand);
            }
        }
        let Some((_, _, i)) = best else { break };
        let n = ready.swap_remove(i);
        out.push(n);
        for s in g.inputs(n) {
            if let Some(p) = pending.get_mut(&s) {
                *p = p.saturating_sub(1);
            }
        }
        for &t in succs.get(&n).map(Vec::as_slice).unwrap_or(&[]) {
            if let Some(d) = indeg.get_mut(&t) {
                *d -= 1;
                if *d == 0 {
                    ready.push(t);
                }
            }
        }
    }
    if out.len() != ids.len() {
        return Err(MemplanError::Cycle);
    }
    Ok(out)
}
