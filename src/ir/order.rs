//! A deterministic topological order: Kahn's algorithm where, among ready
//! nodes, the one with the smallest (layer position, name, device) key comes
//! first. The same graph always yields the same order, whatever the
//! insertion history, so the text form and snapshots are stable.
//! Returns `Err(node)` with a node on a cycle if the graph is cyclic.

use std::collections::{BTreeSet, HashMap};

use petgraph::Direction;

use super::{Graph, NodeId};

pub fn topo(g: &Graph) -> Result<Vec<NodeId>, NodeId> {
    let key = |n: NodeId| {
        let node = g.node(n);
        (node.span.start, node.name.clone(), node.device, n.index())
    };
    let mut indeg: HashMap<NodeId, usize> = HashMap::new();
    let mut ready = BTreeSet::new();
    for n in g.node_ids() {
        let d = g.g.neighbors_directed(n, Direction::Incoming).count();
        indeg.insert(n, d);
        if d == 0 {
            ready.insert((key(n), n));
        }
    }
    let mut out = Vec::with_capacity(indeg.len());
    while let Some(first) = ready.iter().next().cloned() {
        ready.remove(&first);
        let n = first.1;
        out.push(n);
        for e in g.g.edges_directed(n, Direction::Outgoing) {
            use petgraph::visit::EdgeRef;
            let t = e.target();
            if let Some(d) = indeg.get_mut(&t) {
                *d -= 1;
                if *d == 0 {
                    ready.insert((key(t), t));
                }
            }
        }
    }
    if out.len() != indeg.len() {
        let stuck = indeg
            .iter()
            .filter(|(_, d)| **d > 0)
            .map(|(n, _)| *n)
            .min()
            .unwrap_or_else(|| NodeId::new(0));
        return Err(stuck);
    }
    Ok(out)
}
