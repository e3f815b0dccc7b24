//! The checker: proves a plan sound for a graph, re-deriving every
//! lifetime from the graph and the plan's order (see [`check`]).
//!
//! Cost: O((V + E) log V) to re-derive the lifetimes, then a sweep that
//! compares each buffer with those live at its first use: O(B·L) for B
//! buffers of which at most L are live at once (run by `compile --emit
//! memplan` and the tests, never by `check` or `train`).

use std::collections::{HashMap, HashSet};

use super::needs::{hazards, in_place_ports, needs, positions};
use super::types::{ALIGN, BufKind, MemplanError, Plan, Side};
use crate::ir::{Device, Graph, NodeId};

/// Proves `plan` sound for `g`: its order runs every node after its inputs
/// (and every `sgd_update` after the other readers of its state); every
/// buffer the step needs is planned, on the right device, large enough,
/// and live at least while it is used; offsets are aligned; every buffer
/// fits its arena; and no two buffers live at the same time on the same
/// device share a byte, except an in-place output over the input it
/// legally overwrites.
pub fn check(plan: &Plan, g: &Graph) -> Result<(), MemplanError> {
    let pos = positions(g, &plan.order)?;
    for &n in &plan.order {
        let p = pos.get(&n).copied();
        for i in g.inputs(n) {
            if pos.get(&i).copied() >= p {
                return Err(MemplanError::OrderInput {
                    node: n,
                    name: g.node(n).name.clone(),
                    input: g.node(i).name.clone(),
                });
            }
        }
        for r in hazards(g, n) {
            if pos.get(&r).copied() >= p {
                return Err(MemplanError::OrderHazard {
                    node: n,
                    name: g.node(n).name.clone(),
                    reader: g.node(r).name.clone(),
                });
            }
        }
    }
    let needs = needs(g, &plan.order, &pos, plan.batch)?;
    let mut by_key: HashMap<(NodeId, Option<Side>), usize> = HashMap::new();
    for (i, b) in plan.buffers.iter().enumerate() {
        if by_key.insert((b.node, b.side), i).is_some() {
            return Err(MemplanError::ExtraBuffer {
                name: b.name.clone(),
            });
        }
    }
    if by_key.len() != needs.len() {
        let wanted: HashSet<(NodeId, Option<Side>)> =
            needs.iter().map(|n| (n.node, n.side)).collect();
        if let Some(b) = plan
            .buffers
            .iter()
            .find(|b| !wanted.contains(&(b.node, b.side)))
        {
            return Err(MemplanError::ExtraBuffer {
                name: b.name.clone(),
            });
        }
    }
    for need in &needs {
        let Some(b) = by_key
            .get(&(need.node, need.side))
            .and_then(|&i| plan.buffers.get(i))
        else {
            return Err(MemplanError::MissingBuffer {
                node: need.node,
                name: need.name.clone(),
                what: need.side.map_or("output", Side::suffix),
            });
        };
        if b.size < need.size || b.device != need.device {
            return Err(MemplanError::WrongBuffer {
                name: b.name.clone(),
                have: b.size,
                have_dev: b.device,
                want: need.size,
                want_dev: need.device,
            });
        }
        if b.first > need.first || b.last < need.last || b.first > b.last {
            return Err(MemplanError::ShortLifetime {
                name: b.name.clone(),
                first: b.first,
                last: b.last,
                need_first: need.first,
                need_last: need.last,
            });
        }
    }
    let mut arena: HashMap<Device, u64> = HashMap::new();
    for a in &plan.arenas {
        if arena.insert(a.device, a.size).is_some() {
            return Err(MemplanError::DuplicateArena { device: a.device });
        }
    }
    for b in &plan.buffers {
        if b.offset % ALIGN != 0 {
            return Err(MemplanError::Misaligned {
                name: b.name.clone(),
                offset: b.offset,
            });
        }
        let Some(&size) = arena.get(&b.device) else {
            return Err(MemplanError::NoArena {
                name: b.name.clone(),
                device: b.device,
            });
        };
        let end = b.offset.saturating_add(b.size);
        if end > size {
            return Err(MemplanError::OutOfArena {
                name: b.name.clone(),
                end,
                arena: size,
            });
        }
    }
    // In-place claims.
    let mut legal: HashSet<(usize, usize)> = HashSet::new();
    for (bi, b) in plan.buffers.iter().enumerate() {
        let Some(ai) = b.in_place_of else { continue };
        let bad = || MemplanError::BadInPlace {
            name: b.name.clone(),
            over: plan
                .buffers
                .get(ai)
                .map_or_else(|| format!("#{ai}"), |a| a.name.clone()),
        };
        let a = plan.buffers.get(ai).ok_or_else(bad)?;
        let p = pos.get(&b.node).copied().ok_or_else(bad)?;
        let ins = g.inputs(b.node);
        let port_ok = in_place_ports(&g.node(b.node).op)
            .iter()
            .any(|&port| ins.get(port) == Some(&a.node))
            && ins.iter().filter(|&&i| i == a.node).count() == 1;
        let ok = port_ok
            && b.side.is_none()
            && a.side.is_none()
            && a.kind != BufKind::Input
            && !a.persistent()
            && a.device == b.device
            && a.offset == b.offset
            && b.size <= a.span()
            && a.last == p
            && b.first == p;
        if !ok {
            return Err(bad());
        }
        legal.insert((ai, bi));
    }
    // No overlap: sweep per device over buffers sorted by first use.
    let mut idx: Vec<usize> = (0..plan.buffers.len()).collect();
    idx.sort_by_key(|&i| (plan.buffers[i].device, plan.buffers[i].first, i));
    let mut active: Vec<usize> = Vec::new();
    let mut dev: Option<Device> = None;
    for &i in &idx {
        let b = &plan.buffers[i];
        if dev != Some(b.device) {
            active.clear();
            dev = Some(b.device);
        }
        active.retain(|&j| plan.buffers[j].last >= b.first);
        for &j in &active {
            let a = &plan.buffers[j];
            let disjoint = a.offset.saturating_add(a.size) <= b.offset
                || b.offset.saturating_add(b.size) <= a.offset
                || a.size == 0
                || b.size == 0;
            if !disjoint && !legal.contains(&(j, i)) && !legal.contains(&(i, j)) {
                return Err(MemplanError::Overlap {
                    a: a.name.clone(),
                    b: b.name.clone(),
                    device: b.device,
                });
            }
        }
        active.push(i);
    }
    Ok(())
}
