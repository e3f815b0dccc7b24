//! Placement: slots (in-place chains merged) of one device at offsets,
//! persistent slots stacked from 0, the others best-fit into the gaps
//! among the slots live at the same time, in one of several fixed orders.
//! Guarantees slots live at the same time do not overlap.
//!
//! Cost: the best fit among the placed slots live at the same time looks
//! at every placed slot, O(S²) for S slots; above [`SWEEP_ABOVE`] slots a
//! device's slots are instead placed by one sweep over time in first-use
//! order (best fit from a free list of gaps, freed gaps merged with their
//! neighbours), O(S log S), so a network of 100,000 layers plans in
//! seconds. Networks of the usual size (AlexNet's step has a few hundred
//! slots) keep the first placement exactly.

use std::cmp::Reverse;
use std::collections::{BTreeMap, BTreeSet, BinaryHeap, HashMap};

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

/// Above this many slots on one device, [`place`] sweeps (see the module doc).
pub(super) const SWEEP_ABOVE: usize = 2048;

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
    if rest.len() > SWEEP_ABOVE {
        return sweep(slots, rest, offsets, base);
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

/// First-use placement by one sweep over time: a slot takes the tightest
/// free gap at its first use (the top if none fits) and gives it back
/// after its last; adjacent free gaps merge. `offsets` holds the
/// persistent slots, stacked below `base`.
fn sweep(
    slots: &[Slot],
    mut rest: Vec<usize>,
    mut offsets: HashMap<usize, u64>,
    base: u64,
) -> (HashMap<usize, u64>, u64) {
    rest.sort_by_key(|&i| (slots[i].first, std::cmp::Reverse(slots[i].size), i));
    // Free gaps below `end`: by offset (to merge) and by (size, offset).
    let mut by_off: BTreeMap<u64, u64> = BTreeMap::new();
    let mut by_size: BTreeSet<(u64, u64)> = BTreeSet::new();
    let (mut end, mut top) = (base, base);
    // Live slots by (last, index), to free those that died.
    let mut live: BinaryHeap<Reverse<(usize, usize)>> = BinaryHeap::new();
    for i in rest {
        let s = &slots[i];
        while let Some(&Reverse((last, j))) = live.peek() {
            if last >= s.first {
                break;
            }
            live.pop();
            let (mut lo, mut hi) = (offsets[&j], offsets[&j].saturating_add(slots[j].size));
            if let Some((&o, &n)) = by_off.range(..lo).next_back()
                && o.saturating_add(n) == lo
            {
                by_off.remove(&o);
                by_size.remove(&(n, o));
                lo = o;
            }
            if let Some(&n) = by_off.get(&hi) {
                by_off.remove(&hi);
                by_size.remove(&(n, hi));
                hi = hi.saturating_add(n);
            }
            if hi >= end {
                end = lo;
            } else {
                by_off.insert(lo, hi - lo);
                by_size.insert((hi - lo, lo));
            }
        }
        let off = match by_size.range((s.size, 0)..).next().copied() {
            Some((n, o)) => {
                by_size.remove(&(n, o));
                by_off.remove(&o);
                if n > s.size {
                    by_off.insert(o + s.size, n - s.size);
                    by_size.insert((n - s.size, o + s.size));
                }
                o
            }
            None => {
                let o = end;
                end = end.saturating_add(s.size);
                o
            }
        };
        offsets.insert(i, off);
        top = top.max(off.saturating_add(s.size));
        live.push(Reverse((s.last, i)));
    }
    (offsets, top)
}
