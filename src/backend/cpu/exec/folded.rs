//! Evaluation with the batchnorms folded into the layers before them.
//!
//! A batchnorm in evaluation mode is an affine map per channel, so
//! `passes::fold_bn` can fold it into the `conv` or `dense` that feeds it.
//! When the executor's graph has a batchnorm that folds, its first
//! evaluation builds a second executor over the forward graph
//! (`passes::forward::forward_graph`) with the folds applied, and
//! evaluation runs there: one layer instead of a layer and a pass over its
//! output. Before an evaluation, the folded executor takes its parameters
//! from the training executor's state, folding each batchnorm's γ, β and
//! running statistics into the layer's weight and bias in f64, whenever
//! that state has changed since it last did (a version the training
//! executor bumps on every step and every write through `value_mut`).
//!
//! Assumes the training executor's parameters are those of the forward
//! graph by node id and name (`forward_graph` and `fold_batchnorm` keep
//! both; a bias the fold adds is new and starts at zero). Guarantees: a
//! graph with nothing to fold (no batchnorm, or none after an unfused conv
//! or dense it alone reads) evaluates exactly as before, on the training
//! executor; otherwise evaluation equals the unfolded one to float
//! rounding (the folded weight is rounded once from f64). Folding can be
//! turned off ([`CpuExec::set_fold_bn`], or `NETC_FOLD_BN=0` in the
//! environment when the executor is built).

use std::collections::{HashMap, HashSet};

use super::{CpuExec, ExecError};
use crate::backend::cpu::kernels::Float;
use crate::ir::{NodeId, Op, ParamRole};
use crate::passes::fold_bn::{Fold, fold_batchnorm};
use crate::passes::forward::forward_graph;

/// Whether evaluation runs a folded copy of the network.
pub(super) enum Folded<T: Float> {
    /// Not looked at yet (it is on the first evaluation).
    Unknown,
    /// Nothing to fold, or folding is off: evaluation runs the step's own
    /// forward nodes.
    Nothing,
    Ready(Box<FoldedEval<T>>),
}

pub(super) struct FoldedEval<T: Float> {
    pub(super) exec: CpuExec<T>,
    folds: Vec<Fold>,
    /// The training executor's version the values were taken from.
    version: Option<u64>,
}

/// Whether `NETC_FOLD_BN` leaves folding on (anything but `0`, or unset).
pub(super) fn fold_from_env() -> bool {
    std::env::var_os("NETC_FOLD_BN").is_none_or(|v| v != "0")
}

impl<T: Float> CpuExec<T> {
    /// Turns folding batchnorms into the layers before them for evaluation
    /// on or off (on unless `NETC_FOLD_BN=0` was set when the executor was
    /// built); off, evaluation runs the training graph's forward nodes.
    pub fn set_fold_bn(&mut self, on: bool) {
        self.fold_bn = on;
        self.eval_folded = false;
    }

    /// Whether the next evaluation runs a folded network (building it if
    /// it has not been looked at yet).
    pub fn evaluates_folded(&mut self) -> Result<bool, ExecError> {
        Ok(self.fold_bn && self.folded_eval()?.is_some())
    }

    /// The folded evaluation executor with the current state folded in, or
    /// `None` when there is nothing to fold.
    pub(super) fn folded_eval(&mut self) -> Result<Option<&mut CpuExec<T>>, ExecError> {
        if let Folded::Unknown = self.folded {
            self.folded = match self.build_folded()? {
                Some(f) => Folded::Ready(Box::new(f)),
                None => Folded::Nothing,
            };
        }
        let mut state = std::mem::replace(&mut self.folded, Folded::Nothing);
        let r = match &mut state {
            Folded::Ready(f) => self.refresh_folded(f),
            _ => Ok(()),
        };
        self.folded = state;
        r?;
        Ok(match &mut self.folded {
            Folded::Ready(f) => Some(&mut f.exec),
            _ => None,
        })
    }

    fn build_folded(&self) -> Result<Option<FoldedEval<T>>, ExecError> {
        let g = &self.graph;
        if !g
            .node_ids()
            .any(|n| matches!(g.node(n).op, Op::BatchNorm { .. }))
        {
            return Ok(None);
        }
        let mut fwd = forward_graph(g).map_err(|e| ExecError::Internal(e.to_string()))?;
        let folds = fold_batchnorm(&mut fwd).map_err(|e| ExecError::Internal(e.to_string()))?;
        if folds.is_empty() {
            return Ok(None);
        }
        let mut exec = CpuExec::with_memory(fwd, self.seed, self.memory)?;
        exec.fold_bn = false;
        exec.folded = Folded::Nothing;
        exec.set_conv_policy(self.conv_policy);
        if self.profile.is_some() {
            exec.set_profile(true);
        }
        Ok(Some(FoldedEval {
            exec,
            folds,
            version: None,
        }))
    }

    /// Copies the parameters into `f`'s executor and folds the batchnorms,
    /// unless nothing changed since it last did.
    fn refresh_folded(&self, f: &mut FoldedEval<T>) -> Result<(), ExecError> {
        if f.version == Some(self.version) {
            return Ok(());
        }
        let added: HashSet<NodeId> = f
            .folds
            .iter()
            .filter(|d| d.new_bias)
            .map(|d| d.bias)
            .collect();
        let params: Vec<NodeId> = f
            .exec
            .graph
            .node_ids()
            .filter(|&n| match &f.exec.graph.node(n).op {
                Op::Param { role, .. } => *role != ParamRole::Velocity && !added.contains(&n),
                _ => false,
            })
            .collect();
        for n in params {
            let name = f.exec.graph.node(n).name.clone();
            let same = self
                .graph
                .get(n)
                .is_some_and(|m| m.name == name && m.op.is_param());
            let (src, dst) = (self.value(n), f.exec.value_mut(n));
            if !same || src.len() != dst.len() {
                return Err(ExecError::Internal(format!(
                    "the folded evaluation's `{name}` is not the step's"
                )));
            }
            dst.copy_from_slice(src);
        }
        let wide = |n: NodeId| -> Vec<f64> { self.value(n).iter().map(|v| v.to_f64()).collect() };
        // Folds into one layer compose (`conv -> batchnorm -> batchnorm`):
        // each starts from the layer's values as the folds before it left
        // them, in the order `fold_batchnorm` made them (the graph's).
        let mut folded: HashMap<NodeId, (Vec<f64>, Vec<f64>)> = HashMap::new();
        for d in &f.folds {
            let (mut w, mut b) = folded.remove(&d.layer).unwrap_or_else(|| {
                let b = if added.contains(&d.bias) {
                    vec![0.0; f.exec.value(d.bias).len()]
                } else {
                    wide(d.bias)
                };
                (wide(d.weight), b)
            });
            let (gamma, beta, mean, var) = (wide(d.gamma), wide(d.beta), wide(d.mean), wide(d.var));
            let f_ = b.len();
            if [&gamma, &beta, &mean, &var].iter().any(|v| v.len() != f_)
                || w.len() % f_.max(1) != 0
            {
                return Err(ExecError::Internal(format!(
                    "batchnorm folded into `{}` does not match its channels",
                    f.exec.graph.node(d.layer).name
                )));
            }
            d.apply(&mut w, &mut b, &gamma, &beta, &mean, &var);
            folded.insert(d.layer, (w, b));
        }
        for d in &f.folds {
            let Some((w, b)) = folded.remove(&d.layer) else {
                continue;
            };
            for (o, v) in f.exec.value_mut(d.weight).iter_mut().zip(&w) {
                *o = T::from_f64(*v);
            }
            for (o, v) in f.exec.value_mut(d.bias).iter_mut().zip(&b) {
                *o = T::from_f64(*v);
            }
        }
        f.version = Some(self.version);
        Ok(())
    }
}
