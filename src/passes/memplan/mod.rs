//! Memory planning: gives every buffer of a training step (as built by
//! `passes::autodiff`) an offset in one arena per device, reusing the memory
//! of dead values, and [`check`]s that a plan is sound.
//!
//! Terms. The *order* is the sequence in which the step's nodes run; a
//! node's *position* is its index in it. A *buffer* is a byte range one node
//! writes: its *output* (the value of the node) or its *side buffer* (what a
//! forward op keeps for its backward op). Its *lifetime* `[first, last]`
//! (inclusive positions) runs from the op that writes it to the last op
//! that reads it; two buffers whose lifetimes intersect must not share a
//! byte, unless one is written *in place* over the other (below).
//!
//! Assumptions (each matches `backend::cpu::exec`, which defines the step):
//! - Sizes: an activation holds `N × per-example numel` f32 (4 bytes each);
//!   labels hold `N` u32; the loss is one f32; a parameter, its gradient
//!   and its velocity hold `numel` f32. `sgd_update` writes no buffer
//!   (`Ty::Effect`): it updates its weight and velocity in place.
//! - Side buffers: LRN keeps `scale` (f32, the size of its output) and max
//!   pooling keeps `argmax` (u32, the size of its output) for the
//!   `lrn_grad`/`maxpool_grad` that records it as its forward node
//!   (`Node::forward`); `softmax_xent` keeps `probs` (`N × classes` f32) for every
//!   `softmax_xent_grad` of the same logits; the fused `lrn_maxpool` keeps
//!   the LRN's output and scale (f32, the size of its input) and the
//!   argmax (u32, the size of its output) for the `lrn_maxpool_grad`
//!   that records it. A
//!   side buffer lives from its forward op to the last such backward op
//!   (to its own op if none).
//! - Parameters (weights, biases) and velocities are *persistent*: live for
//!   the whole step (`[0, len-1]`), placed first, at the bottom of their
//!   device's arena. Inputs (image, labels) are loaded before the step, so
//!   they live from position 0 to their last reader.
//! - Results are read after the step: a value no node reads (the loss),
//!   the logits (input 0 of `softmax_xent`) and the labels (its input 1),
//!   which the step's loss and top-1/top-5 statistics use, live to the end.
//! - The gradients of one convolution or dense layer (`F.dx`, `F.dw`,
//!   `F.db`: the layer gradients that record `F` as their forward node;
//!   fused `conv_relu`/`dense_relu*` ones too) are
//!   computed by one kernel call when the first of them runs: all three
//!   are live from that position.
//! - A reader on another tower reads the producer's buffer where it lies
//!   (peer access): a value stays in its producer's arena until its last
//!   reader on any device; no staging copies are planned.
//! - Inputs (`Device::Shared`) get their own arena, `shared`: they are
//!   loaded once and read by every tower. Each tower `t` has arena `t{t}`.
//! - Workspace a kernel allocates for itself (the im2col scratch of the
//!   convolutions, the masked output gradient of a `dense_relu_dropout`'s
//!   backward) is not planned.
//! - Alignment: every offset and every arena size is a multiple of
//!   [`ALIGN`] (64) bytes, and each buffer occupies its size rounded up to
//!   64. Totals below count rounded sizes.
//!
//! In place. An elementwise op (`relu`, `dropout`, `add` and `grad_chain`
//! on port 0, `relu_grad` on either port, `dropout_grad`) may write its
//! output over an input of the same size whose last reader it is (the
//! input dies at that op and nothing later reads it), when that input is a
//! planned, non-persistent output on the same device that the op reads on
//! that port only. These kernels read element
//! `i` of the input only to write element `i` of the output, so the
//! overwrite is safe. An in-place output records the buffer it overwrites.
//!
//! Order. Two deterministic orders are tried: `ir::order::topo`, and a
//! greedy list schedule that, among ready nodes, runs the one that frees
//! the most bytes net of what it allocates (ties by the topological key).
//! An `sgd_update` overwrites its weight and velocity, so it must run after
//! every other reader of them (the greedy schedule makes it wait; the
//! topological order is used only if it already complies). The plan keeps
//! the order with the smaller total arena (topo on a tie); an executor must
//! run in [`Plan::order`]. For `alexnet.net` at batch 128 the topological
//! order wins; for `alexnet-fmnist.net` the greedy one.
//!
//! Placement. In-place chains are merged into *slots*. Per device, the
//! persistent slots are stacked from offset 0; the others are placed, in a
//! fixed order, at the offset of the tightest free gap among the slots
//! already placed that are live at the same time (best fit; the top if no
//! gap fits), as TensorFlow Lite's greedy-by-size planner does. Several
//! placement orders are tried (size descending; size × lifetime
//! descending; first use), and the smallest arena kept.
//!
//! Numbers. *No reuse*: the sum of all buffers, each in its own place.
//! *Lower bound*: per device, the largest total size of slots live at one
//! position (the persistent region included), summed over devices; no
//! placement for this order can use less. *Planned*: the sum of the arena
//! sizes.
//!
//! Cost: the greedy order O((V + E) log V) (`greedy`), lifetimes
//! O((V + E) log V) (`needs`), placement O(S²) per device up to 2,048 slots
//! and O(S log S) above (`place`): near-linear in the size of the step.
//!
//! Guarantees: [`plan`] never panics; its result passes [`check`], which
//! re-derives every lifetime from the graph and the plan's order and proves
//! that buffers live at the same time on the same device are disjoint, and
//! that every buffer fits its arena.

use std::collections::{BTreeMap, HashMap, HashSet};

use crate::ir::{Device, Graph, NodeId, order};

mod check;
mod greedy;
mod needs;
mod place;
mod render;
mod types;

pub use check::check;
pub use render::render;
pub use types::*;

use self::greedy::greedy_order;
use self::needs::{hazards, in_place_ports, needs, positions};
use self::place::{Fit, Slot, place};

/// Plans the step's memory at batch `batch`, trying both orders.
pub fn plan(g: &Graph, batch: u64) -> Result<Plan, MemplanError> {
    if batch == 0 {
        return Err(MemplanError::ZeroBatch);
    }
    let topo = order::topo(g).map_err(|_| MemplanError::Cycle)?;
    let greedy = plan_with_order(g, batch, greedy_order(g, batch)?, OrderKind::Greedy)?;
    // The topological order is a candidate only if it runs each update
    // after the other readers of its state (the greedy one always does).
    let pos: HashMap<NodeId, usize> = topo.iter().enumerate().map(|(i, &n)| (n, i)).collect();
    let safe = topo.iter().all(|&n| {
        hazards(g, n)
            .iter()
            .all(|r| pos.get(r).copied() < pos.get(&n).copied())
    });
    if !safe {
        return Ok(greedy);
    }
    let topo = plan_with_order(g, batch, topo, OrderKind::Topo)?;
    Ok(if greedy.planned() < topo.planned() {
        greedy
    } else {
        topo
    })
}

/// Plans the step's memory for a given order (a permutation of the graph's
/// nodes that runs every node after its inputs; [`check`] also wants each
/// `sgd_update` after the other readers of its weight and velocity).
pub fn plan_with_order(
    g: &Graph,
    batch: u64,
    order: Vec<NodeId>,
    kind: OrderKind,
) -> Result<Plan, MemplanError> {
    if batch == 0 {
        return Err(MemplanError::ZeroBatch);
    }
    let pos = positions(g, &order)?;
    for &n in &order {
        for i in g.inputs(n) {
            if pos.get(&i) >= pos.get(&n) {
                return Err(MemplanError::OrderInput {
                    node: n,
                    name: g.node(n).name.clone(),
                    input: g.node(i).name.clone(),
                });
            }
        }
    }
    let needs = needs(g, &order, &pos, batch)?;
    let mut buffers: Vec<Buffer> = needs
        .into_iter()
        .map(|n| Buffer {
            node: n.node,
            side: n.side,
            name: n.name,
            device: n.device,
            kind: n.kind,
            size: n.size,
            offset: 0,
            first: n.first,
            last: n.last,
            in_place_of: None,
        })
        .collect();
    let mut outputs = HashMap::new();
    let mut sides = HashMap::new();
    for (i, b) in buffers.iter().enumerate() {
        match b.side {
            None => outputs.insert(b.node, i),
            Some(s) => sides.insert((b.node, s), i),
        };
    }
    // In place: an elementwise op over an input that dies there.
    let mut overwritten: HashSet<usize> = HashSet::new();
    for (p, &n) in order.iter().enumerate() {
        let Some(&bi) = outputs.get(&n) else { continue };
        let ins = g.inputs(n);
        for &port in in_place_ports(&g.node(n).op) {
            let Some(&ai) = ins.get(port).and_then(|s| outputs.get(s)) else {
                continue;
            };
            // An input read on two ports is not overwritten.
            if ins.iter().filter(|&&i| i == ins[port]).count() != 1 {
                continue;
            }
            let (a, b) = (&buffers[ai], &buffers[bi]);
            if a.kind == BufKind::Input
                || a.persistent()
                || a.last != p
                || b.first != p
                || a.device != b.device
                || a.span() != b.span()
                || overwritten.contains(&ai)
            {
                continue;
            }
            overwritten.insert(ai);
            buffers[bi].in_place_of = Some(ai);
            break;
        }
    }
    // Slots: in-place chains share one.
    let mut slot_of: Vec<usize> = vec![usize::MAX; buffers.len()];
    let mut slots: Vec<Slot> = Vec::new();
    for i in 0..buffers.len() {
        let b = &buffers[i];
        let s = match b.in_place_of.map(|a| slot_of[a]) {
            Some(s) if s != usize::MAX => {
                let slot = &mut slots[s];
                slot.first = slot.first.min(b.first);
                slot.last = slot.last.max(b.last);
                slot.size = slot.size.max(b.span());
                slot.members.push(i);
                s
            }
            _ => {
                slots.push(Slot {
                    device: b.device,
                    size: b.span(),
                    first: b.first,
                    last: b.last,
                    persistent: b.persistent(),
                    members: vec![i],
                });
                slots.len() - 1
            }
        };
        slot_of[i] = s;
    }
    let mut by_dev: BTreeMap<Device, Vec<usize>> = BTreeMap::new();
    for (i, s) in slots.iter().enumerate() {
        by_dev.entry(s.device).or_default().push(i);
    }
    let len = order.len();
    let mut arenas = Vec::new();
    for (device, ids) in &by_dev {
        let mut best: Option<(HashMap<usize, u64>, u64)> = None;
        // Past the sweep's threshold the fits give one placement: try one.
        let fits: &[Fit] = if ids.len() > place::SWEEP_ABOVE {
            &[Fit::FirstUse]
        } else {
            &[Fit::SizeDesc, Fit::AreaDesc, Fit::FirstUse]
        };
        for &fit in fits {
            let (o, top) = place(&slots, ids, fit);
            if best.as_ref().is_none_or(|b| top < b.1) {
                best = Some((o, top));
            }
        }
        let Some((offsets, size)) = best else {
            continue;
        };
        for &s in ids {
            let off = offsets.get(&s).copied().unwrap_or(0);
            for &m in &slots[s].members {
                buffers[m].offset = off;
            }
        }
        let mut delta = vec![0i128; len + 1];
        for &s in ids {
            let sl = &slots[s];
            if sl.first < len {
                delta[sl.first] += sl.size as i128;
                delta[(sl.last + 1).min(len)] -= sl.size as i128;
            }
        }
        let (mut live, mut peak) = (0i128, 0i128);
        for d in &delta[..len] {
            live += d;
            peak = peak.max(live);
        }
        arenas.push(Arena {
            device: *device,
            size,
            persistent: ids
                .iter()
                .filter(|&&s| slots[s].persistent)
                .fold(0u64, |t, &s| t.saturating_add(slots[s].size)),
            no_reuse: buffers
                .iter()
                .filter(|b| b.device == *device)
                .fold(0u64, |t, b| t.saturating_add(b.span())),
            lower_bound: u64::try_from(peak).unwrap_or(u64::MAX),
        });
    }
    Ok(Plan {
        graph_name: g.name.clone(),
        batch,
        order_kind: kind,
        order,
        buffers,
        arenas,
        outputs,
        sides,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::frontend;
    use crate::ir::Ty;

    fn training(src: &str) -> Graph {
        let c = frontend::compile(src).unwrap();
        let mut g = c.module.graph;
        crate::passes::autodiff::autodiff(&mut g, &c.module.train.sgd).unwrap();
        g
    }

    fn alexnet_fmnist() -> Graph {
        training(include_str!("../../../networks/alexnet-fmnist.net"))
    }

    #[test]
    fn plan_checks_and_beats_no_reuse() {
        let g = alexnet_fmnist();
        let p = plan(&g, 128).unwrap();
        check(&p, &g).unwrap();
        assert!(p.planned() < p.no_reuse());
        assert!(p.lower_bound() <= p.planned());
        assert!(p.buffers.iter().any(|b| b.in_place_of.is_some()));
        for n in g.node_ids() {
            if g.node(n).ty != Ty::Effect {
                assert!(p.output(n).is_some(), "{}", g.node(n).name);
            }
        }
    }

    #[test]
    fn both_orders_check() {
        let g = alexnet_fmnist();
        let topo = order::topo(&g).unwrap();
        let a = plan_with_order(&g, 7, topo, OrderKind::Topo).unwrap();
        check(&a, &g).unwrap();
        let b = plan_with_order(&g, 7, greedy_order(&g, 7).unwrap(), OrderKind::Greedy).unwrap();
        check(&b, &g).unwrap();
    }

    #[test]
    fn checker_catches_overlap_and_bad_claims() {
        let g = alexnet_fmnist();
        let p = plan(&g, 4).unwrap();
        // Move a transient buffer onto a persistent one.
        let mut q = p.clone();
        let i = q
            .buffers
            .iter()
            .position(|b| b.kind == BufKind::Side)
            .unwrap();
        q.buffers[i].offset = 0;
        assert!(matches!(check(&q, &g), Err(MemplanError::Overlap { .. })));
        // Shorten a lifetime.
        let mut q = p.clone();
        let i = q
            .buffers
            .iter()
            .position(|b| b.kind == BufKind::Activation && b.last > b.first)
            .unwrap();
        q.buffers[i].last = q.buffers[i].first;
        assert!(matches!(
            check(&q, &g),
            Err(MemplanError::ShortLifetime { .. })
        ));
        // Misalign.
        let mut q = p.clone();
        q.buffers[0].offset += 4;
        assert!(check(&q, &g).is_err());
        // Past the arena.
        let mut q = p.clone();
        q.arenas[1].size = 64;
        assert!(matches!(
            check(&q, &g),
            Err(MemplanError::OutOfArena { .. })
        ));
        // A false in-place claim.
        let mut q = p.clone();
        let i = q
            .buffers
            .iter()
            .position(|b| b.kind == BufKind::Gradient && b.in_place_of.is_none())
            .unwrap();
        q.buffers[i].in_place_of = Some(0);
        assert!(matches!(
            check(&q, &g),
            Err(MemplanError::BadInPlace { .. })
        ));
        // A wrong order.
        let mut q = p.clone();
        q.order.reverse();
        assert!(matches!(
            check(&q, &g),
            Err(MemplanError::OrderInput { .. })
        ));
    }

    #[test]
    fn zero_batch_is_an_error() {
        let g = alexnet_fmnist();
        assert_eq!(plan(&g, 0), Err(MemplanError::ZeroBatch));
    }

    #[test]
    fn huge_batch_overflows_cleanly() {
        let g = alexnet_fmnist();
        assert!(matches!(
            plan(&g, u64::MAX / 2),
            Err(MemplanError::Overflow { .. })
        ));
    }
}
