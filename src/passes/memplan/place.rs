//! Placement: slots (in-place chains merged) of one device at offsets,
//! persistent slots stacked from 0, the others best-fit into the gaps
//! among the slots live at the same time, in one of several fixed orders.
//! Guarantees slots live at the same time do not overlap.

use std::collections::HashMap;

use crate::ir::Device;

/// Ways to order slots for placement.
#[derive(Clone, Copy)]
pub(super) enum Fit {
    SizeDesc,
    AreaDesc,
    FirstUse,
}

pub(super) struct Slot {
    pub(super) device: Device,
    pub(super) size: u64,
    pub(super) first: usize,
    pub(super) last: usize,
    pub(super) persistent: bool,
    pub(super) members: Vec<usize>,
}

/// Places slots of one device; returns offsets (by slot index) and the
/// arena size.
pub(super) fn place(slots: &[Slot], ids: &[usize], fit: Fit) -> (HashMap<usize, u64>, u64) {
    let mut offsets = HashMap::new();
    let mut base = 0u64;
    let mut persistent: Vec<usize> = ids
        .iter()
        .copied()
        .filter(|&i| slots[i].persistent)
        .collect();
    persistent.sort_by_key(|&i| (std::cmp::Reverse(slots[i].size), i));
    for i in persistent {
        offsets.insert(i, base);
        base = base.saturating_add(slots[i].size);
    }
    let mut rest: Vec<usize> = ids
        .iter()
        .copied()
        .filter(|&i| !slots[i].persistent)
        .collect();
    let len = |s: &Slot| (s.last - s.first + 1) as u128;
    match fit {
        Fit::SizeDesc => {
            rest.sort_by_key(|&i| (std::cmp::Reverse(slots[i].size), slots[i].first, i))
        }
        Fit::AreaDesc => rest.sort_by_key(|&i| {
            (
                std::cmp::Reverse(slots[i].size as u128 * len(&slots[i])),
                slots[i].first,
                i,
            )
        }),
        Fit::FirstUse => {
            rest.sort_by_key(|&i| (slots[i].first, std::cmp::Reverse(slots[i].size), i))
        }
    }
    let mut top = base;
    let mut placed: Vec<usize> = Vec::new();
    for i in rest {
        let s = &slots[i];
        let mut busy: Vec<(u64, u64)> = placed
            .iter()
            .filter(|&&j| slots[j].first <= s.last && s.first <= slots[j].last)
            .map(|&j| (offsets[&j], offsets[&j].saturating_add(slots[j].size)))
            .collect();
        busy.sort_unstable();
        let mut best: Option<(u64, u64)> = None; // (gap, offset)
        let mut prev = base;
        for (lo, hi) in busy {
            if lo > prev {
                let gap = lo - prev;
                if gap >= s.size && best.is_none_or(|b| gap < b.0) {
                    best = Some((gap, prev));
                }
            }
            prev = prev.max(hi);
        }
        let off = best.map_or(prev, |b| b.1);
        offsets.insert(i, off);
        top = top.max(off.saturating_add(s.size));
        placed.push(i);
    }
    (offsets, top)
}
