//! Where the executor keeps every buffer of a step: element ranges ([`Loc`])
//! in arenas (`Vec<T>`), laid out from a memory plan (`passes::memplan`).
//!
//! Two layouts of the same plan: [`Arenas::planned`] puts each device's
//! buffers at their planned offsets in one arena per device (reuse and in
//! place as planned); [`Arenas::separate`] gives every buffer an arena of
//! its own, so every value survives the step (for inspection and as the
//! reference the planned layout is compared with).
//!
//! Assumes a plan that `memplan::check` accepts. Offsets and sizes are the
//! plan's bytes of 4-byte elements, so element `i` of a buffer is element
//! `offset/4 + i` of its arena whatever `T` is (`f64` arenas hold twice the
//! bytes, in the same places). A plan for batch `B` serves every batch up
//! to `B`: every size grows with the batch, so the first `numel(b)`
//! elements of each planned range are the value at batch `b`.
//!
//! Guarantees: [`carve`] hands out the slices one op touches without
//! `unsafe`: the ranges it writes as `&mut`, disjoint, and the ranges it
//! reads as shared slices; a read range equal to a written one (an op
//! working in place) comes back as `None`; any other overlap is an error,
//! never aliasing.

use std::collections::HashMap;

use crate::ir::NodeId;
use crate::passes::memplan::{Plan, Side};

/// A range of elements of one arena.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Loc {
    pub arena: usize,
    pub start: usize,
    pub len: usize,
}

impl Loc {
    /// The first `len` elements of this range (`len` is clamped to it).
    pub fn take(self, len: usize) -> Loc {
        Loc {
            len: len.min(self.len),
            ..self
        }
    }
    fn end(self) -> usize {
        self.start + self.len
    }
}

/// Every buffer's range, and the arenas' lengths in elements.
#[derive(Clone, Debug, Default)]
pub struct Arenas {
    pub arena_len: Vec<usize>,
    pub out: HashMap<NodeId, Loc>,
    pub side: HashMap<(NodeId, Side), Loc>,
    /// Parameters and optimiser state (kept across steps and re-layouts).
    pub persistent: Vec<NodeId>,
    /// Outputs whose range no later write of the step touches: they still
    /// hold their value when the step ends.
    pub kept: HashMap<NodeId, bool>,
    /// The batch the plan was made for.
    pub batch: usize,
}

const ELEM: u64 = 4;

fn elems(bytes: u64) -> usize {
    bytes.div_ceil(ELEM) as usize
}

impl Arenas {
    /// One arena per device, buffers at their planned offsets.
    pub fn planned(plan: &Plan) -> Arenas {
        let mut l = Arenas {
            batch: plan.batch as usize,
            ..Arenas::default()
        };
        let index: HashMap<_, usize> = plan
            .arenas
            .iter()
            .enumerate()
            .map(|(i, a)| (a.device, i))
            .collect();
        l.arena_len = plan.arenas.iter().map(|a| elems(a.size)).collect();
        for b in &plan.buffers {
            let loc = Loc {
                arena: index.get(&b.device).copied().unwrap_or(0),
                start: (b.offset / ELEM) as usize,
                len: elems(b.size),
            };
            l.insert(b.node, b.side, loc, b.persistent());
        }
        // A buffer is kept unless a buffer written later overlaps it.
        for (i, b) in plan.buffers.iter().enumerate() {
            if b.side.is_some() {
                continue;
            }
            let clobbered = plan.buffers.iter().enumerate().any(|(j, c)| {
                j != i
                    && c.device == b.device
                    && (c.first > b.first || c.in_place_of == Some(i))
                    && c.offset < b.offset + b.size
                    && b.offset < c.offset + c.size
            });
            l.kept.insert(b.node, !clobbered);
        }
        l
    }

    /// Every buffer in an arena of its own.
    pub fn separate(plan: &Plan) -> Arenas {
        let mut l = Arenas {
            batch: plan.batch as usize,
            ..Arenas::default()
        };
        for b in &plan.buffers {
            let loc = Loc {
                arena: l.arena_len.len(),
                start: 0,
                len: elems(b.size),
            };
            l.arena_len.push(loc.len);
            l.insert(b.node, b.side, loc, b.persistent());
            if b.side.is_none() {
                l.kept.insert(b.node, true);
            }
        }
        l
    }

    fn insert(&mut self, n: NodeId, side: Option<Side>, loc: Loc, persistent: bool) {
        match side {
            None => {
                self.out.insert(n, loc);
                if persistent {
                    self.persistent.push(n);
                }
            }
            Some(s) => {
                self.side.insert((n, s), loc);
            }
        }
    }
}

/// `arenas[loc]` as a shared slice (empty if out of range).
pub fn view<T>(arenas: &[Vec<T>], loc: Loc) -> &[T] {
    arenas
        .get(loc.arena)
        .and_then(|a| a.get(loc.start..loc.end()))
        .unwrap_or(&[])
}

/// `arenas[loc]` as a mutable slice (empty if out of range).
pub fn view_mut<T>(arenas: &mut [Vec<T>], loc: Loc) -> &mut [T] {
    arenas
        .get_mut(loc.arena)
        .and_then(|a| a.get_mut(loc.start..loc.end()))
        .unwrap_or(&mut [])
}

/// Two ranges an op was handed that overlap (and are not one in-place pair).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Overlap(pub Loc, pub Loc);

/// Mutable slices for `writes` and shared slices for `reads`, carved from
/// `arenas`. `writes` must be pairwise disjoint and in range; a read equal
/// to a write gives `None`; a read must otherwise lie clear of every write.
#[allow(clippy::type_complexity)]
pub fn carve<'a, T>(
    arenas: &'a mut [Vec<T>],
    writes: &[Loc],
    reads: &[Loc],
) -> Result<(Vec<&'a mut [T]>, Vec<Option<&'a [T]>>), Overlap> {
    let mut w_out: Vec<Option<&'a mut [T]>> = writes.iter().map(|_| None).collect();
    let mut r_out: Vec<Option<&'a [T]>> = vec![None; reads.len()];
    for (a, arena) in arenas.iter_mut().enumerate() {
        let mut ws: Vec<(usize, Loc)> = writes
            .iter()
            .copied()
            .enumerate()
            .filter(|(_, l)| l.arena == a)
            .collect();
        let rs: Vec<(usize, Loc)> = reads
            .iter()
            .copied()
            .enumerate()
            .filter(|(_, l)| l.arena == a)
            .collect();
        if ws.is_empty() && rs.is_empty() {
            continue;
        }
        ws.sort_by_key(|(i, l)| (l.start, l.len, *i));
        for pair in ws.windows(2) {
            if pair[0].1.end() > pair[1].1.start {
                return Err(Overlap(pair[0].1, pair[1].1));
            }
        }
        if let Some((_, l)) = ws.last()
            && l.end() > arena.len()
        {
            return Err(Overlap(*l, *l));
        }
        // Alternate gaps (shared) and written ranges (mutable).
        let mut gaps: Vec<(usize, &'a [T])> = Vec::new();
        let mut rest: &'a mut [T] = arena.as_mut_slice();
        let mut at = 0;
        for (i, l) in &ws {
            let (gap, tail) = std::mem::take(&mut rest).split_at_mut(l.start - at);
            let (mine, tail) = tail.split_at_mut(l.len);
            gaps.push((at, gap));
            w_out[*i] = Some(mine);
            rest = tail;
            at = l.end();
        }
        gaps.push((at, rest));
        for (i, r) in rs {
            if ws.iter().any(|(_, w)| *w == r) {
                continue; // in place: the op reads its own output range
            }
            let found = gaps
                .iter()
                .find(|(g0, g)| r.start >= *g0 && r.end() <= g0 + g.len())
                .map(|(g0, g)| &g[r.start - g0..r.end() - g0]);
            match found {
                Some(s) => r_out[i] = Some(s),
                None => {
                    let w = ws
                        .iter()
                        .map(|(_, w)| *w)
                        .find(|w| w.start < r.end() && r.start < w.end())
                        .unwrap_or(r);
                    return Err(Overlap(w, r));
                }
            }
        }
    }
    let mut w = Vec::with_capacity(writes.len());
    for (i, s) in w_out.into_iter().enumerate() {
        match s {
            Some(s) => w.push(s),
            None => return Err(Overlap(writes[i], writes[i])),
        }
    }
    Ok((w, r_out))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn loc(arena: usize, start: usize, len: usize) -> Loc {
        Loc { arena, start, len }
    }

    #[test]
    fn carve_gives_disjoint_writes_and_shared_reads() {
        let mut arenas = vec![(0..10).map(|i| i as f32).collect::<Vec<_>>(), vec![7.0; 4]];
        let (mut w, r) = carve(
            &mut arenas,
            &[loc(0, 6, 2), loc(0, 0, 2)],
            &[loc(0, 2, 3), loc(1, 0, 4), loc(0, 0, 2), loc(0, 2, 3)],
        )
        .unwrap();
        assert_eq!(r[0], Some(&[2.0, 3.0, 4.0][..]));
        assert_eq!(r[1], Some(&[7.0; 4][..]));
        assert_eq!(r[2], None, "in place");
        assert_eq!(r[3], r[0]);
        w[0][0] = -1.0;
        w[1][1] = -2.0;
        assert_eq!(arenas[0][6], -1.0);
        assert_eq!(arenas[0][1], -2.0);
    }

    #[test]
    fn overlaps_are_errors() {
        let mut arenas = vec![vec![0.0f32; 10]];
        assert!(carve(&mut arenas, &[loc(0, 0, 4), loc(0, 3, 2)], &[]).is_err());
        assert!(carve(&mut arenas, &[loc(0, 0, 4)], &[loc(0, 2, 4)]).is_err());
        assert!(carve(&mut arenas, &[loc(0, 8, 4)], &[]).is_err());
        assert!(carve(&mut arenas, &[loc(0, 0, 4)], &[loc(0, 4, 6)]).is_ok());
    }
}
