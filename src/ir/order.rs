//! A deterministic topological order: Kahn's algorithm where, among ready
//! nodes, the one with the smallest (layer position, name, device) key comes
//! first. The same graph always yields the same order, whatever the
//! insertion history, so the text form and snapshots are stable.
//! Returns `Err(node)` with a node on a cycle if the graph is cyclic.
//!
//! Cost: one sort of the nodes by their key, then a heap of their ranks:
//! O((V + E) log V), with no key built twice.

use std::cmp::Reverse;
use std::collections::BinaryHeap;

use petgraph::Direction;

use super::{Graph, NodeId};

pub fn topo(g: &Graph) -> Result<Vec<NodeId>, NodeId> {
    let mut ids: Vec<NodeId> = g.node_ids().collect();
    ids.sort_unstable_by(|&a, &b| {
        let (x, y) = (g.node(a), g.node(b));
        (x.span.start, x.name.as_str(), x.device, a.index()).cmp(&(
            y.span.start,
            y.name.as_str(),
            y.device,
            b.index(),
        ))
    });
    let bound = petgraph::visit::NodeIndexable::node_bound(&g.g);
    let mut rank = vec![usize::MAX; bound];
    for (r, n) in ids.iter().enumerate() {
        rank[n.index()] = r;
    }
    let mut indeg = vec![0usize; bound];
    let mut ready = BinaryHeap::new();
    for (r, &n) in ids.iter().enumerate() {
        let d = g.g.neighbors_directed(n, Direction::Incoming).count();
        indeg[n.index()] = d;
        if d == 0 {
            ready.push(Reverse(r));
        }
    }
    let mut out = Vec::with_capacity(ids.len());
    while let Some(Reverse(r)) = ready.pop() {
        let n = ids[r];
        out.push(n);
        for t in g.g.neighbors_directed(n, Direction::Outgoing) {
            let d = &mut indeg[t.index()];
            *d -= 1;
            if *d == 0 {
                ready.push(Reverse(rank[t.index()]));
            }
        }
    }
    if out.len() != ids.len() {
        let stuck = ids
            .iter()
            .copied()
            .filter(|n| indeg[n.index()] > 0)
            .min()
            .unwrap_or_else(|| NodeId::new(0));
        return Err(stuck);
    }
    Ok(out)
}

/// A node on a cycle (the one [`topo`] would name), or `None` for an
/// acyclic graph: Kahn's algorithm without the ordering of ready nodes,
/// O(V + E), for callers that need only the answer (`verify`).
pub fn find_cycle(g: &Graph) -> Option<NodeId> {
    let bound = petgraph::visit::NodeIndexable::node_bound(&g.g);
    let mut indeg = vec![0usize; bound];
    let mut ready = Vec::new();
    let mut total = 0;
    for n in g.node_ids() {
        total += 1;
        let d = g.g.neighbors_directed(n, Direction::Incoming).count();
        indeg[n.index()] = d;
        if d == 0 {
            ready.push(n);
        }
    }
    let mut seen = 0;
    while let Some(n) = ready.pop() {
        seen += 1;
        for t in g.g.neighbors_directed(n, Direction::Outgoing) {
            let d = &mut indeg[t.index()];
            *d -= 1;
            if *d == 0 {
                ready.push(t);
            }
        }
    }
    if seen == total {
        return None;
    }
    // The nodes left are those no order can place, whatever the order of
    // ready nodes: the same set, and so the same smallest id, as `topo`'s.
    Some(
        g.node_ids()
            .filter(|n| indeg[n.index()] > 0)
            .min()
            .unwrap_or_else(|| NodeId::new(0)),
    )
}
