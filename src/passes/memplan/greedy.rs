//! The greedy execution order: a list schedule that, among ready nodes,
//! runs the one that frees the most bytes net of what it allocates (ties
//! by the topological key of `ir::order::topo`). Assumes an acyclic graph;
//! guarantees a permutation of its nodes that runs every node after its
//! inputs and every `sgd_update` after the other readers of its state.
//! Cost: O((V + E) log V) (see [`greedy_order`]).

use std::cmp::Reverse;
use std::collections::{BTreeSet, HashMap, HashSet};

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
///
/// A ready node frees an input's bytes when it is that input's last
/// reader not yet run. Each score is kept in an ordered set and changes
/// only when some input of the node drops to one reader left, which
/// happens once per value: O((V + E) log V) in all, however many readers
/// one value has (before, every ready node was rescored at every step,
/// cubic in the number of layers that read one input).
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
    // Distinct readers not yet run, per value.
    let mut unrun: HashMap<NodeId, usize> = ids
        .iter()
        .map(|&n| {
            let mut r: Vec<NodeId> = g.g.neighbors_directed(n, Direction::Outgoing).collect();
            r.sort_unstable();
            r.dedup();
            (n, r.len())
        })
        .collect();
    let mut bytes: HashMap<NodeId, i128> = HashMap::new();
    for &n in &ids {
        let node = g.node(n);
        let freeable = !matches!(node.op, Op::Param { .. } | Op::Input { .. });
        let b = if freeable { out_bytes(g, n, batch)? } else { 0 };
        bytes.insert(n, b as i128);
    }
    let distinct_inputs = |n: NodeId| {
        let mut v = g.inputs(n);
        v.sort_unstable();
        v.dedup();
        v
    };
    let mut run: HashSet<NodeId> = HashSet::new();
    // The ready nodes by (score, reverse key): the last is the next to run.
    let mut ready: BTreeSet<(i128, Reverse<Key>, NodeId)> = BTreeSet::new();
    let mut score_of: HashMap<NodeId, (i128, Key)> = HashMap::new();
    let make_ready = |n: NodeId,
                      unrun: &HashMap<NodeId, usize>,
                      ready: &mut BTreeSet<(i128, Reverse<Key>, NodeId)>,
                      score_of: &mut HashMap<NodeId, (i128, Key)>| {
        let freed: i128 = distinct_inputs(n)
            .into_iter()
            .filter(|s| unrun.get(s).copied() == Some(1))
            .map(|s| bytes.get(&s).copied().unwrap_or(0))
            .sum();
        let score = freed - bytes.get(&n).copied().unwrap_or(0);
        let k = key(g, n);
        ready.insert((score, Reverse(k.clone()), n));
        score_of.insert(n, (score, k));
    };
    for &n in &ids {
        if indeg[&n] == 0 {
            make_ready(n, &unrun, &mut ready, &mut score_of);
        }
    }
    let mut out = Vec::with_capacity(ids.len());
    while let Some((_, _, n)) = ready.pop_last() {
        score_of.remove(&n);
        out.push(n);
        run.insert(n);
        for s in distinct_inputs(n) {
            let Some(left) = unrun.get_mut(&s) else {
                continue;
            };
            *left = left.saturating_sub(1);
            if *left != 1 {
                continue;
            }
            // `s`'s last reader now frees it: if it is ready, its score rises.
            let last =
                g.g.neighbors_directed(s, Direction::Outgoing)
                    .find(|t| !run.contains(t));
            if let Some(r) = last
                && let Some((score, k)) = score_of.get_mut(&r)
            {
                ready.remove(&(*score, Reverse(k.clone()), r));
                *score += bytes.get(&s).copied().unwrap_or(0);
                ready.insert((*score, Reverse(k.clone()), r));
            }
        }
        for &t in succs.get(&n).map(Vec::as_slice).unwrap_or(&[]) {
            if let Some(d) = indeg.get_mut(&t) {
                *d -= 1;
                if *d == 0 {
                    make_ready(t, &unrun, &mut ready, &mut score_of);
                }
            }
        }
    }
    if out.len() != ids.len() {
        return Err(MemplanError::Cycle);
    }
    Ok(out)
}
