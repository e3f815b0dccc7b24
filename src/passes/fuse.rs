//! Fusion: rewrites a training step (as built by `passes::autodiff`), or a
//! forward graph, so that layers whose ops each read and write a whole
//! tensor run as one op. Every rewrite has a name (see [`REWRITES`]) and
//! [`fuse`] reports how often each fired; [`fuse_with`] runs only some of
//! them (`fuse` is `fuse_with` of all seven, in one sweep), which is how
//! `passes::pipeline` runs each rewrite as a pass of its own.
//!
//! Assumes a verified graph whose backward nodes are autodiff's: each
//! records the forward node `F` it belongs to ([`Node::forward`]); `F`'s
//! gradient (`F.dx`) is the one of them that is not an `add` (the sum of
//! `F`'s own gradients), a layer's are told apart by
//! [`Op::grad_part`]; a `relu_grad` (`tanh_grad`, `sigmoid_grad`,
//! `leaky_relu_grad`) takes (its forward op, dy), a `dropout_grad`
//! takes (dy), and the gradient ops of a layer take their `dy` from one
//! node. Names are not read.
//!
//! Guarantees: the result verifies; it computes the same values, fused
//! ops being exactly the compositions they name (on the CPU the same
//! kernels run in the same order, so results are bit-for-bit those of the
//! unfused graph); ids, names and recorded forward nodes of the nodes
//! kept are unchanged (a fused op is the first op it absorbs rewritten in
//! place, so a fused forward node keeps its gradients, and a fused
//! gradient its forward node); a node removed is recorded by no node
//! kept; nodes keep their tower; no node is fused across towers. A value
//! with a second user is never fused into its consumer (it must still
//! exist), nor a ReLU or dropout whose gradient `grad_chain` already
//! folded (when it ran first).
//!
//! [`Node::forward`]: crate::ir::Node::forward
//!
//! Rewrites, in the order they run:
//! - `conv+relu`: `relu(conv)` → `conv_relu`; its `relu_grad` is folded into
//!   the three convolution gradients (`conv_relu_grad_*` read `y` and mask dy).
//! - `dense+relu+dropout`: `dropout(relu(dense))` → `dense_relu_dropout`, the
//!   dropout applied in the ReLU's epilogue pass; backward, `dropout_grad` and
//!   `relu_grad` fold into `dense_relu_grad_*`: the output is positive iff the
//!   ReLU passed it and the mask kept it, so `[y > 0]·1/(1−rate)` is both
//!   masks and no mask is regenerated.
//! - `dense+relu`: `relu(dense)` → `dense_relu`, likewise. Without
//!   `dense+relu+dropout` enabled, a `dropout(relu(dense))` becomes a
//!   `dense_relu` followed by the unchanged dropout (and `dropout_grad`);
//!   without `dense+relu` enabled, `dense+relu+dropout` leaves a dense →
//!   ReLU with no dropout after it alone.
//! - `lrn+maxpool`: `maxpool(lrn)` → `lrn_maxpool`, image by image; backward,
//!   `maxpool_grad` folds into `lrn_maxpool_grad`. The LRN output is still
//!   written (the backward pass needs it) but pooling reads it from cache.
//! - `grad_chain`: a chain of `add` → `dropout_grad` → `relu_grad` (any two or
//!   three; at most one of each, dropout and ReLU in either order since their
//!   masks commute) → one `grad_chain` pass.
//! - `conv+act`: `conv+relu` for the other activations whose derivative is
//!   a function of the output y: `tanh(conv)` → `conv_tanh` (gradients
//!   `conv_tanh_grad_*`, dy times `1 − y²`), `sigmoid` → `conv_sigmoid`
//!   (`y·(1 − y)`), `leaky_relu` with `slope ≥ 0` → `conv_leaky_relu`
//!   (`[y > 0]` else `slope`; a negative slope, which lowering refuses
//!   anyway, is not fused: `y > 0` would not tell `x > 0`). The fused op
//!   is the `conv_relu` family with its activation recorded
//!   ([`Activation`]).
//! - `dense+act`: `dense+relu` for the same activations (`dense_tanh`, ...).
//!   A dropout after one stays a dropout: under a mask the output no
//!   longer gives the activation's output (`y = f(x)·scale` where kept, 0
//!   where dropped, and `f(x)` may be 0 too), so the gradient could not
//!   be computed from `y` as for ReLU.
//!
//! The two activation rewrites run after `grad_chain` in [`REWRITES`] (so
//! the rewrites of ReLU networks keep their numbers) but touch nothing
//! `grad_chain` reads or writes (it folds only ReLU and dropout
//! gradients, and they fold only `tanh_grad`, `sigmoid_grad` and
//! `leaky_relu_grad`), so [`fuse_with`] runs them in its first sweep with
//! the other layer rewrites; the graph is the same in either order.
//!
//! Not fused, and why: dropout after a convolution or a pooling (no network
//! has one; the rewrite would mirror `dense+relu+dropout`); `conv+relu+maxpool`
//! (the pooled windows overlap image rows that the convolution's GEMM tiles
//! produce separately, so one pass would need a different conv kernel);
//! `add` into a layer's gradients (the sum is read by three gradient kernels,
//! so summing once is the cheaper pass); `slice` (a copy the consumer's
//! kernels would need strided access to avoid).
//!
//! Cost: two walks in topological order, each rewrite looking only at a
//! node's neighbours: O((V + E) log V).

use std::collections::BTreeMap;

use petgraph::Direction;
use petgraph::visit::EdgeRef;

use crate::ir::{Activation, Graph, NodeId, Op, infer, order};

/// The rewrites, in the order they run.
pub const REWRITES: [&str; 7] = [
    "conv+relu",
    "dense+relu+dropout",
    "dense+relu",
    "lrn+maxpool",
    "grad_chain",
    "conv+act",
    "dense+act",
];

#[derive(Clone, Debug, PartialEq, thiserror::Error)]
pub enum FuseError {
    #[error("the graph has a cycle")]
    Cycle,
    #[error("unknown fusion rewrite `{0}`; the rewrites are {list}", list = REWRITES.join(", "))]
    UnknownRewrite(String),
    #[error("internal error: fusion built an ill-typed `{name}`: {source}")]
    IllTyped {
        name: String,
        source: infer::ShapeError,
    },
}

/// How often each rewrite fired (every name of [`REWRITES`] is present).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct FuseReport {
    pub fired: BTreeMap<&'static str, usize>,
}

impl std::fmt::Display for FuseReport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let parts: Vec<String> = REWRITES
            .iter()
            .map(|r| format!("{r}×{}", self.fired.get(r).copied().unwrap_or(0)))
            .collect();
        write!(f, "{}", parts.join(" "))
    }
}

/// Rewrites `g` in place with every rewrite; see the module documentation.
pub fn fuse(g: &mut Graph) -> Result<FuseReport, FuseError> {
    fuse_with(g, &REWRITES)
}

/// Rewrites `g` in place with the rewrites named in `enabled` only (names
/// of [`REWRITES`], in any order; they still run in the order of
/// [`REWRITES`]). The report lists every rewrite, those not enabled at 0.
/// An unknown name is an error, and then `g` is untouched.
pub fn fuse_with(g: &mut Graph, enabled: &[&str]) -> Result<FuseReport, FuseError> {
    if let Some(bad) = enabled.iter().find(|e| !REWRITES.contains(e)) {
        return Err(FuseError::UnknownRewrite(bad.to_string()));
    }
    let on = |r: &str| enabled.contains(&r);
    let dense = DenseRewrites {
        dropout: on("dense+relu+dropout"),
        plain: on("dense+relu"),
        act: on("dense+act"),
    };
    let conv = ConvRewrites {
        relu: on("conv+relu"),
        act: on("conv+act"),
    };
    let mut report = FuseReport::default();
    for r in REWRITES {
        report.fired.insert(r, 0);
    }
    let nodes = order::topo(g).map_err(|_| FuseError::Cycle)?;
    for &n in &nodes {
        if !g.g.contains_node(n) {
            continue;
        }
        let fired = match g.node(n).op {
            Op::Conv { .. } if conv.relu || conv.act => conv_relu(g, n, conv)?,
            Op::Dense { .. } if dense.dropout || dense.plain || dense.act => {
                dense_relu(g, n, dense)?
            }
            Op::Lrn { .. } if on("lrn+maxpool") => lrn_maxpool(g, n)?,
            _ => None,
        };
        if let Some(name) = fired {
            *report.fired.entry(name).or_default() += 1;
        }
    }
    if on("grad_chain") {
        let nodes = order::topo(g).map_err(|_| FuseError::Cycle)?;
        for &n in nodes.iter().rev() {
            if g.g.contains_node(n) && grad_chain(g, n)? {
                *report.fired.entry("grad_chain").or_default() += 1;
            }
        }
    }
    Ok(report)
}

/// Which of the three dense rewrites are enabled.
#[derive(Clone, Copy)]
struct DenseRewrites {
    /// `dense+relu+dropout`.
    dropout: bool,
    /// `dense+relu`.
    plain: bool,
    /// `dense+act`.
    act: bool,
}

/// Which of the two conv rewrites are enabled.
#[derive(Clone, Copy)]
struct ConvRewrites {
    /// `conv+relu`.
    relu: bool,
    /// `conv+act`.
    act: bool,
}

/// The activation `n` applies, if it is one a fused layer can apply and
/// the rewrite that would fuse it (ReLU's, or the others') is enabled.
fn fusable_act(g: &Graph, n: NodeId, relu: bool, act: bool) -> Option<Activation> {
    Activation::of(&g.node(n).op).filter(|a| if a.is_relu() { relu } else { act })
}

/// The single user of `n` apart from `except` (the gradient ops being
/// fused with it), if it has exactly one such edge out, on the same tower.
fn sole_user(g: &Graph, n: NodeId, except: &[Option<NodeId>]) -> Option<NodeId> {
    let users: Vec<NodeId> = g
        .users(n)
        .into_iter()
        .filter(|u| !except.contains(&Some(*u)))
        .collect();
    match users.as_slice() {
        [u] if g.node(*u).device == g.node(n).device => Some(*u),
        _ => None,
    }
}

/// The gradient (`F.dx`) of ReLU, dropout, LRN or pooling `f`: the node
/// that records `f` as its forward node and is not an `add`.
fn dx_of(g: &Graph, f: NodeId) -> Option<NodeId> {
    g.backward_of(f, |op| (*op != Op::Add).then_some(()))
        .map(|(n, ())| n)
}

/// Whether gradient `n` is the unfused `relu_grad` or `dropout_grad`
/// autodiff made (not yet folded into a `grad_chain`, which the ReLU and
/// dropout rewrites do not unpick), or the unfused gradient of one of the
/// other activations.
fn plain(g: &Graph, n: NodeId) -> bool {
    matches!(
        g.node(n).op,
        Op::ReluGrad
            | Op::DropoutGrad { .. }
            | Op::TanhGrad
            | Op::SigmoidGrad
            | Op::LeakyReluGrad { .. }
    )
}

/// Moves every use of `old` to `new` (same ports), except uses by `keep`.
fn replace_uses(g: &mut Graph, old: NodeId, new: NodeId, keep: &[NodeId]) {
    let edges: Vec<_> =
        g.g.edges_directed(old, Direction::Outgoing)
            .map(|e| (e.id(), e.target(), e.weight().port))
            .filter(|(_, t, _)| !keep.contains(t))
            .collect();
    for (e, target, port) in edges {
        g.g.remove_edge(e);
        g.connect(new, target, port);
    }
}

/// Moves every record of `old` as a forward node to `new`: `old` is about
/// to be removed, `new` computes its value (the sum of `old`'s gradients
/// now sums `new`'s).
fn repoint(g: &mut Graph, old: NodeId, new: NodeId) {
    for n in g.node_ids().collect::<Vec<_>>() {
        if g.g[n].forward == Some(old) {
            g.g[n].forward = Some(new);
        }
    }
}

/// Sets `n`'s op and inputs, and re-infers its type.
fn rebuild(g: &mut Graph, n: NodeId, op: Op, inputs: &[NodeId]) -> Result<(), FuseError> {
    let tys: Vec<_> = inputs.iter().map(|i| &g.node(*i).ty).collect();
    let ty = infer::infer(&op, &tys).map_err(|source| FuseError::IllTyped {
        name: g.node(n).name.clone(),
        source,
    })?;
    let old: Vec<_> =
        g.g.edges_directed(n, Direction::Incoming)
            .map(|e| e.id())
            .collect();
    for e in old {
        g.g.remove_edge(e);
    }
    for (port, i) in inputs.iter().enumerate() {
        g.connect(*i, n, port as u32);
    }
    let node = &mut g.g[n];
    node.op = op;
    node.ty = ty;
    Ok(())
}

/// The `dy` of a `relu_grad` or a `dropout_grad` (its last input).
fn grad_input(g: &Graph, n: NodeId) -> NodeId {
    *g.inputs(n).last().expect("gradient ops have inputs")
}

/// The gradient nodes `dx` (optional), `dw`, `db` of layer `n`, if they
/// all read `dy` from `expect`.
fn layer_grads(
    g: &Graph,
    n: NodeId,
    expect: Option<NodeId>,
) -> Option<(Option<NodeId>, NodeId, NodeId)> {
    let grads = g.layer_grads(n);
    let (dw, db, dx) = (grads.dw?, grads.db?, grads.dx);
    let dy = g.inputs(dw).get(1).copied();
    if dy != expect || g.inputs(db).first().copied() != expect {
        return None;
    }
    if let Some(dx) = dx
        && g.inputs(dx).first().copied() != expect
    {
        return None;
    }
    Some((dx, dw, db))
}

fn conv_relu(
    g: &mut Graph,
    c: NodeId,
    enabled: ConvRewrites,
) -> Result<Option<&'static str>, FuseError> {
    // A conv without a bias stays unfused (the fused gradients include one).
    let Op::Conv {
        filters,
        size,
        stride,
        pad,
        dilation,
        groups,
        bias: true,
    } = g.node(c).op
    else {
        return Ok(None);
    };
    let Some((r, act)) =
        sole_user(g, c, &[]).and_then(|r| Some((r, fusable_act(g, r, enabled.relu, enabled.act)?)))
    else {
        return Ok(None);
    };
    let rg = dx_of(g, r);
    if rg.is_some_and(|rg| g.node(rg).op != act.grad_op()) {
        return Ok(None);
    }
    let grads = match rg {
        Some(rg) => match layer_grads(g, c, Some(rg)) {
            Some((dx, dw, db)) => {
                // The input gradient with the size of x it restores.
                let dx = match dx.map(|dx| (dx, &g.node(dx).op)) {
                    None => None,
                    Some((dx, Op::ConvGradInput { in_h, in_w, .. })) => Some((dx, *in_h, *in_w)),
                    Some(_) => return Ok(None),
                };
                Some((rg, (dx, dw, db)))
            }
            None => return Ok(None),
        },
        None => None,
    };
    let ins = g.inputs(c);
    let op = Op::ConvRelu {
        filters,
        size,
        stride,
        pad,
        dilation,
        groups,
        bias: true,
        act,
    };
    rebuild(g, c, op, &ins)?;
    let keep: Vec<NodeId> = rg.into_iter().collect();
    replace_uses(g, r, c, &keep);
    if let Some((rg, (dx, dw, db))) = grads {
        let dy = grad_input(g, rg);
        if let Some((dx, in_h, in_w)) = dx {
            let op = Op::ConvReluGradInput {
                size,
                stride,
                pad,
                in_h,
                in_w,
                dilation,
                groups,
                act,
            };
            rebuild(g, dx, op, &[dy, ins[1], c])?;
        }
        let op = Op::ConvReluGradWeight {
            size,
            stride,
            pad,
            dilation,
            groups,
            act,
        };
        rebuild(g, dw, op, &[ins[0], dy, c])?;
        rebuild(g, db, Op::ConvReluGradBias { act }, &[dy, c])?;
        g.g.remove_node(rg);
    }
    g.g.remove_node(r);
    repoint(g, r, c);
    Ok(Some(if act.is_relu() {
        "conv+relu"
    } else {
        "conv+act"
    }))
}

fn dense_relu(
    g: &mut Graph,
    d: NodeId,
    enabled: DenseRewrites,
) -> Result<Option<&'static str>, FuseError> {
    let Op::Dense { units } = g.node(d).op else {
        return Ok(None);
    };
    let relu_on = enabled.dropout || enabled.plain;
    let Some((r, act)) =
        sole_user(g, d, &[]).and_then(|r| Some((r, fusable_act(g, r, relu_on, enabled.act)?)))
    else {
        return Ok(None);
    };
    let rg = dx_of(g, r);
    if rg.is_some_and(|rg| g.node(rg).op != act.grad_op()) {
        return Ok(None);
    }
    // Forward ops to absorb (the activation, then maybe dropout after a
    // ReLU) and their gradients. With `dense+relu+dropout` off, a dropout
    // after the ReLU is left as it is (it then reads the `dense_relu`, its
    // gradient feeds the layer's gradients); with `dense+relu` off, a ReLU
    // without one is. A dropout after another activation always stays.
    let dropout = sole_user(g, r, &[rg])
        .and_then(|p| match g.node(p).op {
            Op::Dropout { rate } => Some((p, rate)),
            _ => None,
        })
        .filter(|_| enabled.dropout && act.is_relu());
    if dropout.is_none() && act.is_relu() && !enabled.plain {
        return Ok(None);
    }
    let last = dropout.map_or(r, |(p, _)| p);
    let pg = dropout.and_then(|(p, _)| dx_of(g, p));
    if [rg, pg].into_iter().flatten().any(|n| !plain(g, n)) {
        return Ok(None);
    }
    if rg.is_some() != pg.is_some() && dropout.is_some() {
        return Ok(None);
    }
    if let (Some(rg), Some(pg)) = (rg, pg)
        && g.inputs(rg).last() != Some(&pg)
    {
        return Ok(None);
    }
    let grads = match rg {
        Some(rg) => match layer_grads(g, d, Some(rg)) {
            Some(gr) => Some(gr),
            None => return Ok(None),
        },
        None => None,
    };
    let ins = g.inputs(d);
    let (op, rate, name) = match dropout {
        Some((p, rate)) => (
            Op::DenseReluDropout {
                units,
                rate,
                of: g.node(p).name.clone(),
            },
            rate,
            "dense+relu+dropout",
        ),
        None if act.is_relu() => (Op::DenseRelu { units, act }, 0.0, "dense+relu"),
        None => (Op::DenseRelu { units, act }, 0.0, "dense+act"),
    };
    rebuild(g, d, op, &ins)?;
    // The gradient reaching the last absorbed op.
    let top = pg.or(rg);
    let keep: Vec<NodeId> = top.into_iter().collect();
    replace_uses(g, last, d, &keep);
    if let (Some(top), Some((dx, dw, db))) = (top, grads) {
        let dy = grad_input(g, top);
        if let Some(dx) = dx {
            let in_dims = g.node(ins[0]).ty.dims().to_vec();
            let op = Op::DenseReluGradInput {
                in_dims,
                dropout: rate,
                act,
            };
            rebuild(g, dx, op, &[dy, ins[1], d])?;
        }
        let op = Op::DenseReluGradWeight { dropout: rate, act };
        rebuild(g, dw, op, &[ins[0], dy, d])?;
        let op = Op::DenseReluGradBias { dropout: rate, act };
        rebuild(g, db, op, &[dy, d])?;
        for n in [rg, pg].into_iter().flatten() {
            g.g.remove_node(n);
        }
    }
    if let Some((p, _)) = dropout {
        g.g.remove_node(p);
        repoint(g, p, d);
    }
    g.g.remove_node(r);
    repoint(g, r, d);
    Ok(Some(name))
}

fn lrn_maxpool(g: &mut Graph, l: NodeId) -> Result<Option<&'static str>, FuseError> {
    let Op::Lrn {
        size,
        alpha,
        beta,
        k,
    } = g.node(l).op
    else {
        return Ok(None);
    };
    let lg = dx_of(g, l);
    let Some(m) = sole_user(g, l, &[lg]).or_else(|| {
        // In a training step the pool's gradient reads the LRN output too.
        let users = g.users(l);
        users.iter().copied().find(|u| {
            matches!(g.node(*u).op, Op::MaxPool { .. })
                && sole_user(g, l, &[lg, dx_of(g, *u)]) == Some(*u)
        })
    }) else {
        return Ok(None);
    };
    // `lrn_maxpool` pools without padding.
    let Op::MaxPool {
        size: pool,
        stride,
        pad: 0,
    } = g.node(m).op
    else {
        return Ok(None);
    };
    let mg = dx_of(g, m);
    // Backward: maxpool_grad(l, dy) feeding only lrn_grad(x, l, ·).
    let back = match (mg, lg) {
        (Some(mg), Some(lg)) if g.users(mg) == [lg] && g.inputs(lg).get(2) == Some(&mg) => {
            Some((mg, lg))
        }
        (None, None) => None,
        _ => return Ok(None),
    };
    // The pool is the LRN's only user, and the LRN's gradients are fused
    // here, so the LRN output is needed by nothing else.
    let x = g.inputs(l)[0];
    let op = Op::LrnMaxPool {
        size,
        alpha,
        beta,
        k,
        pool,
        stride,
    };
    rebuild(g, l, op.clone(), &[x])?;
    let keep: Vec<NodeId> = mg.into_iter().collect();
    replace_uses(g, m, l, &keep);
    if let Some((mg, lg)) = back {
        let dy = grad_input(g, mg);
        let op = Op::LrnMaxPoolGrad {
            size,
            alpha,
            beta,
            k,
            pool,
            stride,
        };
        rebuild(g, lg, op, &[x, l, dy])?;
        g.g.remove_node(mg);
    }
    g.g.remove_node(m);
    repoint(g, m, l);
    Ok(Some("lrn+maxpool"))
}

/// Folds the chain of elementwise gradient ops that ends at `n` (a
/// `relu_grad` or `dropout_grad`) into one `grad_chain`, if it has two ops
/// or more. Intermediate results must have no other user.
fn grad_chain(g: &mut Graph, n: NodeId) -> Result<bool, FuseError> {
    if !matches!(g.node(n).op, Op::ReluGrad | Op::DropoutGrad { .. }) {
        return Ok(false);
    }
    let mut relu: Option<NodeId> = None;
    let mut dropout: Option<(f64, NodeId)> = None;
    let mut absorbed = Vec::new();
    let mut cur = n;
    let parts = loop {
        match &g.node(cur).op {
            Op::ReluGrad if relu.is_none() => relu = Some(g.inputs(cur)[0]),
            Op::DropoutGrad { rate, of } if dropout.is_none() => {
                dropout = Some((*rate, *of));
            }
            Op::Add => {
                absorbed.push(cur);
                break g.inputs(cur);
            }
            _ => break vec![cur],
        }
        absorbed.push(cur);
        let up = grad_input(g, cur);
        let ok = g.node(up).device == g.node(n).device
            && g.users(up) == [cur]
            && matches!(
                g.node(up).op,
                Op::ReluGrad | Op::DropoutGrad { .. } | Op::Add
            );
        if !ok {
            break vec![up];
        }
        cur = up;
    };
    if absorbed.len() < 2 {
        return Ok(false);
    }
    let mut inputs = parts.clone();
    inputs.extend(relu);
    let op = Op::GradChain {
        parts: parts.len() as u64,
        dropout,
        relu: relu.is_some(),
    };
    rebuild(g, n, op, &inputs)?;
    for a in absorbed.into_iter().filter(|a| *a != n) {
        g.g.remove_node(a);
    }
    Ok(true)
}
