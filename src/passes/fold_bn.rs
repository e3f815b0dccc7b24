//! Batchnorm folding for evaluation: a batchnorm in evaluation mode is an
//! affine map per channel, `y = s·(x − mean) + β` with `s = γ/sqrt(var +
//! eps)` from its running statistics, so after the `conv` or `dense` that
//! feeds it it can be folded into that layer's weight and bias:
//! `w'[f] = s[f]·w[f]` (every weight of filter or unit `f`) and
//! `b'[f] = s[f]·(b[f] − mean[f]) + β[f]`.
//!
//! [`fold_batchnorm`] rewrites the graph: every batchnorm whose input is an
//! unfused `conv` or `dense` it is the only user of, on the same device,
//! is removed with its four parameters, its users read the layer instead,
//! and a `conv` with `bias: false` gains a bias parameter (named
//! `NAME.bias`, as a conv with a bias has). The values are not in the
//! graph: each [`Fold`] says which parameters to combine, and
//! [`Fold::apply`] computes the folded weight and bias from them.
//!
//! A chain of batchnorms after one layer folds into it one after another:
//! the folds come in graph order, and the later ones name the same layer
//! (and the bias the first one added), so whoever applies them composes
//! them in that order, each starting from the values the one before left.
//!
//! Cost: O(V + E) to order the graph, and for each batchnorm a look at its
//! layer's inputs and users, so near-linear in the size of the graph.
//!
//! Assumes a forward graph (`passes::forward::forward_graph`: no gradients
//! or updates, which would still read the batchnorm). Guarantees: the result
//! verifies; a batchnorm that cannot be folded is left as it is; the folded
//! layer keeps its node id, name and weight parameter, so an evaluation
//! with the folded values equals the unfolded one to float rounding.

use petgraph::Direction;
use petgraph::visit::EdgeRef;

use crate::ir::{Graph, Init, Node, NodeId, Op, ParamRole, Ty};

/// One batchnorm folded into the layer before it.
#[derive(Clone, Debug, PartialEq)]
pub struct Fold {
    /// The `conv` or `dense` that absorbed the batchnorm.
    pub layer: NodeId,
    /// Its weight (rows: filters or units) and bias, to overwrite.
    pub weight: NodeId,
    pub bias: NodeId,
    /// The bias was added by the fold (its old value is zero).
    pub new_bias: bool,
    /// The batchnorm's γ, β, running mean and variance (removed from the
    /// graph; read from the unfolded graph's values).
    pub gamma: NodeId,
    pub beta: NodeId,
    pub mean: NodeId,
    pub var: NodeId,
    pub eps: f64,
}

impl Fold {
    /// Folds the batchnorm's values into `weight` and `bias` in place
    /// (`bias` zero when the fold added it).
    pub fn apply(
        &self,
        weight: &mut [f64],
        bias: &mut [f64],
        gamma: &[f64],
        beta: &[f64],
        mean: &[f64],
        var: &[f64],
    ) {
        let f = bias.len();
        if f == 0 {
            return;
        }
        let per = weight.len() / f;
        for (k, row) in weight.chunks_exact_mut(per.max(1)).enumerate().take(f) {
            let s = gamma[k] / (var[k] + self.eps).sqrt();
            for w in row.iter_mut() {
                *w *= s;
            }
            bias[k] = s * (bias[k] - mean[k]) + beta[k];
        }
    }
}

#[derive(Debug, thiserror::Error)]
#[error("batchnorm folding broke the graph: {0}")]
pub struct FoldError(pub String);

/// Folds every foldable batchnorm of forward graph `g` (see the module doc).
pub fn fold_batchnorm(g: &mut Graph) -> Result<Vec<Fold>, FoldError> {
    // In graph order, so that a chain `layer -> batchnorm -> batchnorm`
    // folds whole: the second batchnorm reads the layer once the first is
    // folded (a cycle, which the verifier refuses, falls back to id order).
    let order = crate::ir::order::topo(g).unwrap_or_else(|_| g.node_ids().collect());
    let bns: Vec<NodeId> = order
        .into_iter()
        .filter(|&n| matches!(g.node(n).op, Op::BatchNorm { .. }))
        .collect();
    let mut folds = Vec::new();
    for bn in bns {
        let Op::BatchNorm { eps, .. } = g.node(bn).op else {
            continue;
        };
        let ins = g.inputs(bn);
        let Some(&layer) = ins.first() else { continue };
        let foldable = matches!(g.node(layer).op, Op::Conv { .. } | Op::Dense { .. })
            && g.users(layer) == vec![bn]
            && g.node(layer).device == g.node(bn).device;
        if !foldable || ins.len() != 5 {
            continue;
        }
        let lins = g.inputs(layer);
        let (bias, new_bias) = match lins.get(2) {
            Some(&b) => (b, false),
            None => {
                let node = g.node(layer).clone();
                let f = node.ty.dims().first().copied().unwrap_or(0);
                let b = g.add(Node {
                    op: Op::Param {
                        role: ParamRole::Bias,
                        init: Init::Constant { value: 0.0 },
                    },
                    name: format!("{}.bias", node.name),
                    layer: node.layer.clone(),
                    device: node.device,
                    ty: Ty::Param { dims: vec![f] },
                    span: node.span,
                    forward: None,
                });
                g.connect(b, layer, 2);
                if let Op::Conv { bias, .. } = &mut g.g[layer].op {
                    *bias = true;
                }
                (b, true)
            }
        };
        // The batchnorm's users read the layer instead.
        let outs: Vec<(NodeId, u32)> =
            g.g.edges_directed(bn, Direction::Outgoing)
                .map(|e| (e.target(), e.weight().port))
                .collect();
        g.g.remove_node(bn);
        for (t, port) in outs {
            g.connect(layer, t, port);
        }
        for &p in &ins[1..] {
            if g.users(p).is_empty() {
                g.g.remove_node(p);
            }
        }
        folds.push(Fold {
            layer,
            weight: lins[1],
            bias,
            new_bias,
            gamma: ins[1],
            beta: ins[2],
            mean: ins[3],
            var: ins[4],
            eps,
        });
    }
    crate::ir::verify::verify(g).map_err(|e| FoldError(e.to_string()))?;
    Ok(folds)
}
