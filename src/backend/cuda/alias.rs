//! Proof that a program's memory layout is safe to run: what
//! [`check`] accepts, a device runs as the CPU executor does.
//!
//! Assumes buffers laid out from a memory plan that `memplan::check`
//! accepts (buffers live at the same time are disjoint unless one is
//! written in place over the other), and checks what the plan cannot see:
//! how the generated steps use it.
//! - Every buffer lies inside its region, and the regions inside the
//!   allocation without overlapping.
//! - Every buffer a step touches is live at that step's position
//!   (`first ≤ pos ≤ last`), so no other buffer sharing its bytes is in use.
//! - A kernel's outputs are pairwise disjoint; an input either lies clear
//!   of every output or is exactly one of them (same address and size),
//!   and then the kernel is marked `in_place` (thread `i` reads element
//!   `i` only to write element `i`; no `__restrict__`). A kernel that reads
//!   neighbours (pooling, LRN, im2col, ...) is never given its output as an
//!   input.
//! - A pointer argument's element offset (one chunk of images) lies
//!   inside its buffer; the whole buffer counts as used (conservative).
//! - A cuBLAS GEMM's `C` lies clear of `A` and `B` (cuBLAS does not
//!   support overlapping operands).
//!
//! Guarantees: never panics; the first violation found is the error.

use super::program::{CudaProgram, Step};

#[derive(Clone, Debug, PartialEq, thiserror::Error)]
#[error("step {step} ({node}): {what}")]
pub struct AliasError {
    pub step: usize,
    pub node: String,
    pub what: String,
}

/// A buffer's byte range in the allocation.
fn range(p: &CudaProgram, b: usize) -> Option<(u64, u64)> {
    let a = p.addr(b)?;
    Some((a, a.saturating_add(p.buffers.get(b)?.bytes())))
}

fn overlap(x: (u64, u64), y: (u64, u64)) -> bool {
    x.0 < y.1 && y.0 < x.1
}

/// Checks the layout and every step of `p` (see the module documentation).
pub fn check(p: &CudaProgram) -> Result<(), AliasError> {
    let whole = |what: String| AliasError {
        step: 0,
        node: "layout".into(),
        what,
    };
    let mut regions: Vec<(u64, u64)> = p
        .regions
        .iter()
        .map(|r| (r.base, r.base.saturating_add(r.size)))
        .collect();
    regions.sort_unstable();
    if regions.windows(2).any(|w| w[0].1 > w[1].0) {
        return Err(whole("two regions overlap".into()));
    }
    for (i, d) in p.buffers.iter().enumerate() {
        let fits = p
            .regions
            .get(d.region)
            .is_some_and(|r| d.offset.checked_add(d.bytes()).is_some_and(|e| e <= r.size));
        if !fits || range(p, i).is_none() {
            return Err(whole(format!(
                "buffer `{}` lies outside its region",
                d.name
            )));
        }
    }
    for (i, st) in p.steps.iter().enumerate() {
        let err = |node: &str, what: String| AliasError {
            step: i,
            node: node.into(),
            what,
        };
        // (buffer, written) pairs the step touches.
        let (node, pos, uses, in_place): (&str, usize, Vec<(usize, bool)>, bool) = match st {
            Step::Launch(l) => {
                let Some(k) = p.kernels.get(l.kernel) else {
                    return Err(err(&l.node, "no such kernel".into()));
                };
                if k.params.len() != l.args.len() {
                    return Err(err(
                        &l.node,
                        format!("`{}` takes {} arguments", k.name, k.params.len()),
                    ));
                }
                let uses = l
                    .args
                    .iter()
                    .zip(&k.params)
                    .filter_map(|(a, (t, _))| a.buffer().map(|(b, at)| (b, at, t.is_output())))
                    .collect::<Vec<_>>();
                for &(b, at, _) in &uses {
                    if at > 0 && p.buffers.get(b).is_none_or(|d| at >= d.elems) {
                        return Err(err(&l.node, format!("offset {at} past buffer b{b}")));
                    }
                }
                let uses = uses.into_iter().map(|(b, _, w)| (b, w)).collect();
                (&l.node, l.pos, uses, k.in_place)
            }
            Step::Gemm(g) => (
                &g.node,
                g.pos,
                vec![(g.a, false), (g.b, false), (g.c, true)],
                false,
            ),
        };
        let mut spans = Vec::with_capacity(uses.len());
        for &(b, w) in &uses {
            let (Some(d), Some(r)) = (p.buffers.get(b), range(p, b)) else {
                return Err(err(node, format!("no buffer b{b}")));
            };
            if pos < d.first || pos > d.last {
                return Err(err(
                    node,
                    format!(
                        "uses `{}` at position {pos}, outside its lifetime {}..={}",
                        d.name, d.first, d.last
                    ),
                ));
            }
            spans.push((b, w, r));
        }
        for (x, &(bx, wx, rx)) in spans.iter().enumerate() {
            for &(by, wy, ry) in &spans[x + 1..] {
                if !(wx || wy) || !overlap(rx, ry) {
                    continue;
                }
                let name = |b: usize| p.buffers.get(b).map_or("?", |d| d.name.as_str());
                let same = rx == ry && wx != wy;
                if !(same && in_place) {
                    return Err(err(
                        node,
                        format!("`{}` and `{}` overlap", name(bx), name(by)),
                    ));
                }
            }
        }
    }
    Ok(())
}
