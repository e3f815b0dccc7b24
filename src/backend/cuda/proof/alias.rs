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
//! - A cuBLAS GEMM's operands, from their element offsets, lie inside
//!   their buffers (the column-major extent its sizes and leading
//!   dimensions give).
//! - A cuBLAS GEMM's `C` lies clear of `A` and `B` (cuBLAS does not
//!   support overlapping operands).
//! - Steps come in the order of their positions.
//!
//! And of a program placed on several devices (`crate::backend::cuda::place::split`), what the
//! devices' separate memories need:
//! - Regions of one device do not overlap (each device's addresses start
//!   at 0 of its own allocation); buffers of different devices never share
//!   memory.
//! - A launch or GEMM touches the memory of one device only.
//! - A [`Step::Copy`] copies a buffer into a [`BufKind::Mirror`] of the
//!   same type and length, both live at its position; nothing else writes
//!   a mirror.
//! - A step that reads a mirror reads what its source holds there: a copy
//!   filled the mirror earlier in the step, and no step since wrote memory
//!   of the source's device that overlaps the source (a copy is needed
//!   after every write of a value that another device reads again).
//!
//! Guarantees: never panics; the first violation found is the error.

use std::collections::HashMap;

use crate::backend::cuda::program::{BufKind, CudaProgram, Step};

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
    let mut regions: Vec<(usize, u64, u64)> = p
        .regions
        .iter()
        .map(|r| (r.device, r.base, r.base.saturating_add(r.size)))
        .collect();
    regions.sort_unstable();
    if let Some(w) = regions
        .windows(2)
        .find(|w| w[0].0 == w[1].0 && w[0].2 > w[1].1)
    {
        return Err(whole(if p.devices() > 1 {
            format!("two regions of device {} overlap", w[0].0)
        } else {
            "two regions overlap".into()
        }));
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
    let name = |b: usize| p.buffers.get(b).map_or("?", |d| d.name.as_str());
    let is_mirror = |b: usize| p.buffers.get(b).is_some_and(|d| d.kind == BufKind::Mirror);
    // Mirrors filled by a copy and still equal to their source: mirror -> source.
    let mut fresh: HashMap<usize, usize> = HashMap::new();
    // A write of `b` on its device: mirrors of sources it overlaps go stale.
    let wrote = |fresh: &mut HashMap<usize, usize>, b: usize| {
        let (dev, r) = (p.device_of(b), range(p, b));
        fresh.retain(|_, src| {
            p.device_of(*src) != dev
                || !matches!((r, range(p, *src)), (Some(x), Some(y)) if overlap(x, y))
        });
    };
    let mut at = 0;
    for (i, st) in p.steps.iter().enumerate() {
        let err = |node: &str, what: String| AliasError {
            step: i,
            node: node.into(),
            what,
        };
        if st.pos() < at {
            return Err(err(
                st.node(),
                format!("runs at position {} after a step at {at}", st.pos()),
            ));
        }
        at = st.pos();
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
            Step::Gemm(g) => {
                for (b, at, len, _) in g.extents() {
                    let elems = p.buffers.get(b).map_or(0, |d| d.elems);
                    if at.checked_add(len).is_none_or(|end| end > elems) {
                        return Err(err(
                            &g.node,
                            format!(
                                "GEMM operand b{b} from {at} for {len} past its {elems} elements"
                            ),
                        ));
                    }
                }
                (
                    &g.node,
                    g.pos,
                    vec![(g.a, false), (g.b, false), (g.c, true)],
                    false,
                )
            }
            Step::Copy {
                src,
                dst,
                node,
                pos,
            } => {
                copy(p, (*src, *dst), *pos).map_err(|what| err(node, what))?;
                if is_mirror(*src) && !fresh.contains_key(src) {
                    return Err(err(node, stale(name(*src))));
                }
                wrote(&mut fresh, *dst);
                fresh.insert(*dst, *src);
                continue;
            }
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
        // One device's memory only.
        let devs: Vec<(usize, Option<usize>)> =
            uses.iter().map(|&(b, _)| (b, p.device_of(b))).collect();
        if let Some(&(a, da)) = devs.first()
            && let Some(&(b, db)) = devs.iter().find(|(_, d)| *d != da)
        {
            let dev = |d: Option<usize>| d.map_or("?".into(), |d| d.to_string());
            return Err(err(
                node,
                format!(
                    "touches the memory of device {} (`{}`) and of device {} (`{}`)",
                    dev(da),
                    name(a),
                    dev(db),
                    name(b)
                ),
            ));
        }
        for (x, &(bx, wx, rx)) in spans.iter().enumerate() {
            for &(by, wy, ry) in &spans[x + 1..] {
                if !(wx || wy) || !overlap(rx, ry) {
                    continue;
                }
                let same = rx == ry && wx != wy;
                if !(same && in_place) {
                    return Err(err(
                        node,
                        format!("`{}` and `{}` overlap", name(bx), name(by)),
                    ));
                }
            }
        }
        for &(b, w) in &uses {
            if is_mirror(b) {
                if w {
                    return Err(err(
                        node,
                        format!("writes `{}`, a mirror only a copy may fill", name(b)),
                    ));
                }
                if !fresh.contains_key(&b) {
                    return Err(err(node, stale(name(b))));
                }
            }
        }
        for &(b, w) in &uses {
            if w {
                wrote(&mut fresh, b);
            }
        }
    }
    Ok(())
}

fn stale(mirror: &str) -> String {
    format!(
        "reads `{mirror}` while no copy since its source was last written has filled it (a copy from another device is missing or too early)"
    )
}

/// A copy `src -> dst` at position `pos`: both exist and are live there,
/// `dst` is a mirror of the same type and length, clear of `src`.
fn copy(p: &CudaProgram, (src, dst): (usize, usize), pos: usize) -> Result<(), String> {
    let (Some(s), Some(d)) = (p.buffers.get(src), p.buffers.get(dst)) else {
        return Err(format!("copies b{src} into b{dst}: no such buffer"));
    };
    if d.kind != BufKind::Mirror {
        return Err(format!("copies into `{}`, which is not a mirror", d.name));
    }
    if (s.dtype, s.elems) != (d.dtype, d.elems) {
        return Err(format!(
            "copies `{}` into `{}` of another type or length",
            s.name, d.name
        ));
    }
    for b in [s, d] {
        if pos < b.first || pos > b.last {
            return Err(format!(
                "uses `{}` at position {pos}, outside its lifetime {}..={}",
                b.name, b.first, b.last
            ));
        }
    }
    let same = p.device_of(src) == p.device_of(dst);
    if let (true, Some(x), Some(y)) = (same, range(p, src), range(p, dst))
        && overlap(x, y)
    {
        return Err(format!("`{}` and `{}` overlap", s.name, d.name));
    }
    Ok(())
}
