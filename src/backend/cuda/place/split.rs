//! Placement of a program on several logical devices (the paper's layout:
//! each tower on its own GPU): a pure transform of a [`CudaProgram`].
//!
//! Assumes a program as `codegen` generates it (optionally with
//! `augment::attach`'s kernel), on one device, that `alias::check` accepts,
//! and a [`Placement`] naming a logical device for each of the program's
//! devices: those of the plan's arenas (`shared`, `t0`, `t1`, ...:
//! [`Region::arena`]) and of the nodes it runs ([`CudaProgram::order`]).
//! Devices are read from these typed fields, never from a name.
//!
//! What it makes:
//! - Every region is tagged with its logical device: an arena with its
//!   placement's; a region outside the plan (the augmentation inputs) with
//!   `shared`'s; the workspace with the lowest device whose steps use it.
//! - Each step runs on the device of the non-scratch buffers it writes
//!   (they must agree), or, writing only scratch (an im2col, a forward
//!   GEMM), on its node's device. Every other device whose steps use
//!   scratch gets its own workspace (`workspace@dev{d}`, the same size and
//!   layout) and its own `scratch.col`/`scratch.tmp` (`scratch.col@dev{d}`),
//!   and its steps are remapped to them.
//! - A buffer a step reads on another device is read through a mirror
//!   (`{name}>dev{d}`, [`BufKind::Mirror`]) in that device's `inbox@dev{d}`
//!   region (one mirror per buffer and reading device, each at a multiple
//!   of 256 bytes, never reused). A [`Step::Copy`] fills it just before
//!   the first step that reads it after the source was written: at the
//!   start of the step, and again after any step that writes memory
//!   overlapping the source (a value rewritten in place, a buffer whose
//!   bytes are reused), so each reader sees what the one-device program's
//!   reader would (positions and order of all other steps are unchanged).
//!   The copy takes the reader's node and position.
//! - Each device's regions get their own compact layout: bases from 0 of
//!   that device's allocation, in region order, each a multiple of
//!   [`REGION_ALIGN`]; buffers keep their offsets in their regions.
//!
//! Guarantees: buffer indices of the original program are unchanged (new
//! buffers are appended), so the image, labels, loss, logits, parameters
//! and velocities are where they were (the loss and logits on the device of
//! the tower that computes them); kernels, source and the order of the
//! original steps are unchanged, so the placed step computes exactly what
//! the original does; a placement that puts everything on one device gives
//! back the original program; the result passes `alias::check` (which
//! refuses a step touching another device's memory or reading a mirror no
//! copy has filled), else an error; never panics.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use crate::backend::cuda::program::{
    Arg, BufKind, BufferDecl, CudaProgram, REGION_ALIGN, Region, Step,
};
use crate::backend::cuda::proof::alias::{self, AliasError};
use crate::ir::Device;

#[derive(Clone, Debug, PartialEq, thiserror::Error)]
pub enum SplitError {
    #[error(
        "`--devices` lists {devices} device{} and the network has {towers} tower{}: list one device, or one per tower",
        if *devices == 1 { "" } else { "s" },
        if *towers == 1 { "" } else { "s" }
    )]
    DeviceCount { towers: usize, devices: usize },
    #[error("the placement does not say which device runs `{0}`")]
    Unplaced(String),
    #[error("the program is already placed on devices")]
    Placed,
    #[error("step {step} ({node}) writes the memory of devices {a} and {b}")]
    MixedWrite {
        step: usize,
        node: String,
        a: usize,
        b: usize,
    },
    #[error("the program cannot be placed: {0}")]
    Alias(#[from] AliasError),
}

/// Which logical device runs each of a program's devices (`shared`, `t0`,
/// ...). Logical devices are numbered from 0; the runtime maps each to a
/// GPU (`--devices 0,1`: logical device `i` is the `i`-th GPU listed).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Placement {
    pub map: BTreeMap<Device, usize>,
}

/// The program's devices: its arenas' and its nodes'.
fn devices(p: &CudaProgram) -> BTreeSet<Device> {
    let arenas = p.regions.iter().filter_map(|r| r.arena);
    arenas.chain(p.order.iter().map(|n| n.device)).collect()
}

/// How many towers (`t0`, `t1`, ...) the program has.
pub fn tower_count(p: &CudaProgram) -> usize {
    devices(p)
        .iter()
        .filter(|d| matches!(d, Device::Tower(_)))
        .count()
}

/// Whether `devices` logical devices can hold `towers` towers: one device
/// (everything on it) or one per tower.
pub fn check_count(towers: usize, devices: usize) -> Result<(), SplitError> {
    if devices == 1 || (devices > 1 && devices == towers) {
        Ok(())
    } else {
        Err(SplitError::DeviceCount { towers, devices })
    }
}

impl Placement {
    /// The paper's layout over `devices` logical devices: tower `t{i}` on
    /// device `i`, `shared` (the inputs) on device 0; with one device,
    /// everything on it. Any other count is an error ([`check_count`]).
    pub fn towers(p: &CudaProgram, devices: usize) -> Result<Placement, SplitError> {
        check_count(tower_count(p), devices)?;
        let mut map = BTreeMap::new();
        for n in self::devices(p) {
            let d = match n {
                _ if devices == 1 => 0,
                Device::Shared => 0,
                Device::Tower(t) if (t as usize) < devices => t as usize,
                Device::Tower(_) => return Err(SplitError::Unplaced(n.to_string())),
            };
            map.insert(n, d);
        }
        Ok(Placement { map })
    }

    fn get(&self, device: Device) -> Result<usize, SplitError> {
        self.map
            .get(&device)
            .copied()
            .ok_or_else(|| SplitError::Unplaced(device.to_string()))
    }
}

/// A buffer's byte range in the one-device program's allocation.
fn range(p: &CudaProgram, b: usize) -> (u64, u64) {
    let a = p.addr(b).unwrap_or(0);
    (
        a,
        a.saturating_add(p.buffers.get(b).map_or(0, |d| d.bytes())),
    )
}

/// `p` placed as `at` says (see the module documentation).
pub fn place(p: &CudaProgram, at: &Placement) -> Result<CudaProgram, SplitError> {
    alias::check(p)?;
    let placed = p.devices() > 1
        || p.buffers.iter().any(|b| b.kind == BufKind::Mirror)
        || p.steps.iter().any(|s| matches!(s, Step::Copy { .. }));
    if placed {
        return Err(SplitError::Placed);
    }
    let shared = at.map.get(&Device::Shared).copied().unwrap_or(0);
    let scratch = |b: usize| p.buffers[b].kind == BufKind::Scratch;
    let mut region_dev: Vec<usize> = Vec::with_capacity(p.regions.len());
    for r in &p.regions {
        region_dev.push(match (r.planned, r.arena) {
            (true, Some(d)) => at.get(d)?,
            (true, None) => return Err(SplitError::Unplaced(r.name.clone())),
            (false, _) => shared,
        });
    }
    let dev_of = |b: usize, region_dev: &[usize]| region_dev[p.buffers[b].region];

    // The device of every step.
    let mut step_dev = Vec::with_capacity(p.steps.len());
    for (i, st) in p.steps.iter().enumerate() {
        let mut dev = None;
        for (b, w) in p.touches(st) {
            if !w || scratch(b) {
                continue;
            }
            let d = dev_of(b, &region_dev);
            match dev {
                Some(a) if a != d => {
                    return Err(SplitError::MixedWrite {
                        step: i,
                        node: st.node().to_string(),
                        a,
                        b: d,
                    });
                }
                _ => dev = Some(d),
            }
        }
        step_dev.push(match dev {
            Some(d) => d,
            None => match p.order.get(st.pos()) {
                Some(n) => at.get(n.device)?,
                None => return Err(SplitError::Unplaced(st.node().to_string())),
            },
        });
    }

    let mut out = p.clone();
    out.steps = Vec::with_capacity(p.steps.len());

    // Scratch: the workspace on its lowest user, a copy for every other.
    let mut scratch_on: HashMap<(usize, usize), usize> = HashMap::new();
    for (r, region) in p.regions.iter().enumerate() {
        let held: Vec<usize> = (0..p.buffers.len())
            .filter(|&b| p.buffers[b].region == r && scratch(b))
            .collect();
        if held.is_empty() {
            continue;
        }
        let users: BTreeSet<usize> = p
            .steps
            .iter()
            .zip(&step_dev)
            .filter(|(st, _)| p.touches(st).iter().any(|(b, _)| held.contains(b)))
            .map(|(_, &d)| d)
            .collect();
        let mut users = users.into_iter();
        let home = users.next().unwrap_or(shared);
        region_dev[r] = home;
        for &b in &held {
            scratch_on.insert((b, home), b);
        }
        for d in users {
            let copy = out.regions.len();
            out.regions.push(Region {
                name: format!("{}@dev{d}", region.name),
                device: d,
                ..region.clone()
            });
            for &b in &held {
                out.buffers.push(BufferDecl {
                    name: format!("{}@dev{d}", p.buffers[b].name),
                    region: copy,
                    ..p.buffers[b].clone()
                });
                scratch_on.insert((b, d), out.buffers.len() - 1);
            }
        }
    }
    for (r, d) in out.regions.iter_mut().zip(&region_dev) {
        r.device = *d;
    }

    // Mirrors, filled by copies before their readers.
    let mut inbox: HashMap<usize, usize> = HashMap::new();
    let mut mirror: HashMap<(usize, usize), usize> = HashMap::new();
    // Mirrors holding their source's value: mirror -> source.
    let mut fresh: HashMap<usize, usize> = HashMap::new();
    for (i, st) in p.steps.iter().enumerate() {
        let d = step_dev[i];
        let pos = st.pos();
        let mut local = |b: usize, out: &mut CudaProgram| -> usize {
            if scratch(b) {
                return scratch_on.get(&(b, d)).copied().unwrap_or(b);
            }
            if dev_of(b, &region_dev) == d {
                return b;
            }
            // A read of another device's buffer (writes are the step's own
            // device's, or `MixedWrite` above).
            let m = *mirror.entry((b, d)).or_insert_with(|| {
                let r = *inbox.entry(d).or_insert_with(|| {
                    out.regions.push(Region {
                        name: format!("inbox@dev{d}"),
                        arena: None,
                        base: 0,
                        size: 0,
                        planned: false,
                        device: d,
                    });
                    out.regions.len() - 1
                });
                let src = &p.buffers[b];
                let offset = out.regions[r].size;
                out.regions[r].size = offset
                    .saturating_add(src.bytes())
                    .next_multiple_of(REGION_ALIGN);
                out.buffers.push(BufferDecl {
                    name: format!("{}>dev{d}", src.name),
                    kind: BufKind::Mirror,
                    region: r,
                    offset,
                    first: pos,
                    last: pos,
                    ..src.clone()
                });
                out.buffers.len() - 1
            });
            let md = &mut out.buffers[m];
            md.first = md.first.min(pos);
            md.last = md.last.max(pos);
            if fresh.insert(m, b).is_none() {
                out.steps.push(Step::Copy {
                    src: b,
                    dst: m,
                    node: st.node().to_string(),
                    pos,
                });
            }
            m
        };
        let placed = match st {
            Step::Launch(l) => {
                let mut l = l.clone();
                for a in &mut l.args {
                    *a = match *a {
                        Arg::Buf(b) => Arg::Buf(local(b, &mut out)),
                        Arg::At(b, off) => Arg::At(local(b, &mut out), off),
                    };
                }
                Step::Launch(l)
            }
            Step::Gemm(g) => {
                let mut g = g.clone();
                g.a = local(g.a, &mut out);
                g.b = local(g.b, &mut out);
                g.c = local(g.c, &mut out);
                Step::Gemm(g)
            }
            Step::Copy { .. } => return Err(SplitError::Placed),
        };
        out.steps.push(placed);
        // What the step wrote on its device: mirrors of sources it overlaps
        // no longer hold their source's value.
        for (b, w) in p.touches(st) {
            if !w || scratch(b) {
                continue;
            }
            let (r, dev) = (range(p, b), dev_of(b, &region_dev));
            fresh.retain(|_, src| {
                let (x, y) = range(p, *src);
                dev_of(*src, &region_dev) != dev || !(x < r.1 && r.0 < y)
            });
        }
    }

    // Each device's regions from byte 0 of its own allocation.
    let mut top: BTreeMap<usize, u64> = BTreeMap::new();
    for r in &mut out.regions {
        let t = top.entry(r.device).or_insert(0);
        r.base = t.next_multiple_of(REGION_ALIGN);
        *t = r.base.saturating_add(r.size);
    }
    alias::check(&out)?;
    Ok(out)
}
