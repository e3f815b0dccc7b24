//! Buffer assignment from the memory plan (`passes::memplan`): one buffer
//! per value-producing node and one per side value a forward op keeps for
//! its backward, each at its planned arena and offset, and two scratch
//! buffers shared by every GEMM-based layer (`col`, `tmp`) in a workspace
//! region after the arenas (the plan does not model them), followed there
//! by the step's scalars (dropout seed, learning rate). The scratch
//! buffers are sized for one chunk of images of each convolution
//! (`crate::backend::cuda::generate::chunk`, under the codegen's workspace budget), not the whole
//! batch; the chunk of each convolution is kept for `layers`.
//!
//! Assumes a plan made by `memplan::plan` for this graph and batch (so it
//! passes `memplan::check`). [`Layout::Separate`] instead gives every
//! planned buffer its own range (the plan's *no reuse* layout), so every
//! value survives the step; the plan's order and lifetimes are kept.
//!
//! Guarantees: buffers come in the plan's order (a node's output, then
//! its side buffers); each one's size in elements times 4 is the plan's
//! size (an error names the buffer otherwise, or one the plan lacks); the
//! regions are the plan's arenas in the plan's order, then the workspace,
//! each based at a multiple of 256 bytes, laid end to end.

use std::collections::HashMap;

use crate::backend::cuda::generate::CodegenError;
use crate::backend::cuda::program::{
    BufKind, BufferDecl, DType, NodeRef, REGION_ALIGN, Region, SCALAR_WORDS,
};
pub use crate::backend::layout::Layout;
use crate::ir::{Graph, InputKind, NodeId, Op, ParamRole, Ty};
pub use crate::passes::memplan::Side;
use crate::passes::memplan::{self, Plan};

#[derive(Clone, Debug, Default)]
pub struct Buffers {
    pub decls: Vec<BufferDecl>,
    pub regions: Vec<Region>,
    pub node: HashMap<NodeId, usize>,
    pub side: HashMap<(NodeId, Side), usize>,
    /// im2col matrices (and their gradients) of one chunk of images:
    /// `C·K·K × c·OH·OW`, the largest.
    pub col: Option<usize>,
    /// GEMM outputs before the epilogue, and transposed output gradients
    /// (a convolution's for one chunk, a dense layer's for the batch).
    pub tmp: Option<usize>,
    /// Images per chunk of each convolution (`crate::backend::cuda::generate::chunk::images`).
    pub chunk: HashMap<NodeId, usize>,
    /// The step's scalars (`program::scalar_words`), last in the workspace.
    pub scalars: usize,
}

/// Elements of a node's value at `batch`.
pub fn elems(ty: &Ty, batch: usize) -> usize {
    match ty {
        Ty::Act { dims } => dims.iter().product::<u64>() as usize * batch,
        Ty::Param { dims } => dims.iter().product::<u64>() as usize,
        Ty::Labels { .. } => batch,
        Ty::Scalar => 1,
        Ty::Effect => 0,
    }
}

/// `name@device`: how buffers, kernels' comments and the manifest name a node.
pub fn node_key(g: &Graph, n: NodeId) -> String {
    crate::backend::params::key(g, n)
}

/// Node `n` as the program names it.
pub fn node_ref(g: &Graph, n: NodeId) -> NodeRef {
    let node = g.node(n);
    NodeRef {
        name: node.name.clone(),
        layer: node.layer.clone(),
        device: node.device,
    }
}

fn round(n: u64, to: u64) -> u64 {
    n.div_ceil(to).saturating_mul(to)
}

/// The planned buffer as a declaration, checked against the size codegen
/// indexes it with.
fn decl(
    b: &memplan::Buffer,
    name: String,
    node: NodeRef,
    dtype: DType,
    elems: usize,
    kind: BufKind,
    region: usize,
) -> Result<BufferDecl, CodegenError> {
    if (elems as u64).checked_mul(4) != Some(b.size) {
        return Err(CodegenError::Unplanned {
            name,
            why: format!("planned {} bytes, codegen needs {elems} × 4", b.size),
        });
    }
    Ok(BufferDecl {
        name,
        node: Some(node),
        dtype,
        elems,
        kind,
        region,
        offset: b.offset,
        first: b.first,
        last: b.last,
    })
}

/// Assigns buffers to the nodes of `g` at `batch` from `plan`, the
/// convolutions in chunks under `budget` bytes of `col` (and of `tmp`).
pub fn assign(
    g: &Graph,
    plan: &Plan,
    batch: usize,
    layout: Layout,
    budget: u64,
) -> Result<Buffers, CodegenError> {
    let mut b = Buffers::default();
    let region: HashMap<_, usize> = plan
        .arenas
        .iter()
        .enumerate()
        .map(|(i, a)| (a.device, i))
        .collect();
    let unplanned = |name: String, why: &str| CodegenError::Unplanned {
        name,
        why: why.into(),
    };
    let (mut col, mut tmp) = (0usize, 0usize);
    for &n in &plan.order {
        let node = g.node(n);
        let key = node_key(g, n);
        let size = elems(&node.ty, batch);
        let (dtype, kind) = match &node.op {
            Op::Input {
                kind: InputKind::Tensor,
            } => (DType::F32, BufKind::Image),
            Op::Input {
                kind: InputKind::Labels,
            } => (DType::U32, BufKind::Labels),
            Op::Param {
                role: ParamRole::Velocity,
                ..
            } => (DType::F32, BufKind::Velocity),
            Op::Param { .. } => (DType::F32, BufKind::Param),
            // Updates write their inputs in place: no buffer of their own.
            Op::SgdUpdate { .. } | Op::RunningUpdate { .. } => continue,
            _ => (DType::F32, BufKind::Value),
        };
        let pb = plan
            .output(n)
            .ok_or_else(|| unplanned(key.clone(), "the plan has no buffer for it"))?;
        let arena = |pb: &memplan::Buffer, name: &str| {
            region
                .get(&pb.device)
                .copied()
                .ok_or_else(|| unplanned(name.into(), "the plan has no arena for its device"))
        };
        let r = arena(pb, &key)?;
        let owner = node_ref(g, n);
        b.decls
            .push(decl(pb, key.clone(), owner.clone(), dtype, size, kind, r)?);
        b.node.insert(n, b.decls.len() - 1);
        for &s in Side::of(&node.op) {
            let name = format!("{key}.{}", s.suffix());
            let pb = plan
                .side(n, s)
                .ok_or_else(|| unplanned(name.clone(), "the plan has no buffer for it"))?;
            let dtype = if s == Side::PoolArgmax {
                DType::U32
            } else {
                DType::F32
            };
            let (len, r) = ((pb.size / 4) as usize, arena(pb, &name)?);
            b.decls
                .push(decl(pb, name, owner.clone(), dtype, len, BufKind::Side, r)?);
            b.side.insert((n, s), b.decls.len() - 1);
        }
        let ins = g.inputs(n);
        match &node.op {
            Op::Conv { filters, size, .. } | Op::ConvRelu { filters, size, .. } => {
                let c = ins
                    .first()
                    .and_then(|&x| g.node(x).ty.dims().first().copied())
                    .unwrap_or(1) as usize;
                let p = node.ty.dims().iter().skip(1).product::<u64>() as usize;
                let kk = (size.h * size.w) as usize;
                let (cols, rows) = (c * kk * p, *filters as usize * p);
                let per = |e: usize| (e as u64).saturating_mul(4);
                let images = crate::backend::cuda::generate::chunk::images(
                    batch,
                    per(cols),
                    per(rows),
                    budget,
                );
                b.chunk.insert(n, images);
                col = col.max(cols * images);
                tmp = tmp.max(rows * images);
            }
            Op::Dense { units }
            | Op::DenseRelu { units, .. }
            | Op::DenseReluDropout { units, .. } => tmp = tmp.max(*units as usize * batch),
            _ => {}
        }
    }
    let mut sizes: Vec<u64> = plan.arenas.iter().map(|a| a.size).collect();
    if layout == Layout::Separate {
        sizes.iter_mut().for_each(|s| *s = 0);
        for d in &mut b.decls {
            if let Some(top) = sizes.get_mut(d.region) {
                d.offset = *top;
                *top = top.saturating_add(memplan::align(d.bytes()));
            }
        }
    }
    let mut base = 0u64;
    for (a, size) in plan.arenas.iter().zip(sizes) {
        b.regions.push(Region {
            name: a.device.to_string(),
            arena: Some(a.device),
            base,
            size,
            planned: true,
            device: 0,
        });
        base = round(base.saturating_add(size), REGION_ALIGN);
    }
    // The workspace: `col`, then `tmp`, each at a multiple of 256 bytes.
    let ws = b.regions.len();
    let end = plan.order.len().saturating_sub(1);
    let mut top = 0u64;
    for (len, name, slot) in [
        (col, "scratch.col", &mut b.col),
        (tmp, "scratch.tmp", &mut b.tmp),
    ] {
        if len == 0 {
            continue;
        }
        b.decls.push(BufferDecl {
            name: name.into(),
            node: None,
            dtype: DType::F32,
            elems: len,
            kind: BufKind::Scratch,
            region: ws,
            offset: top,
            first: 0,
            last: end,
        });
        *slot = Some(b.decls.len() - 1);
        top = round(top.saturating_add(len as u64 * 4), REGION_ALIGN);
    }
    b.decls.push(BufferDecl {
        name: "step.scalars".into(),
        node: None,
        dtype: DType::U32,
        elems: SCALAR_WORDS,
        kind: BufKind::Scalars,
        region: ws,
        offset: top,
        first: 0,
        last: end,
    });
    b.scalars = b.decls.len() - 1;
    top = round(top.saturating_add(SCALAR_WORDS as u64 * 4), REGION_ALIGN);
    b.regions.push(Region {
        name: "workspace".into(),
        arena: None,
        base,
        size: top,
        planned: false,
        device: 0,
    });
    Ok(b)
}
