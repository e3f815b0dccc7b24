//! Whether `netc train` can run a network, decided from the compiled
//! module alone (no data): the rule that `netc check` accepts exactly the
//! networks `train` runs.
//!
//! Assumes a verified forward graph (`frontend::compile`'s result).
//! Guarantees, when it returns `Ok`: the network has exactly one tensor
//! input (the one the data feeds) and one label input, every other input
//! would be left unfed and is refused at its span; it has exactly one
//! `softmax_xent`; the training-step passes (`autodiff`, then the default
//! fusion pipeline, and also the unfused step) build and verify; and the
//! memory plan of each step exists at the `train` section's batch. Nothing
//! here depends on the machine, so the answer is the same everywhere.
//!
//! Cost: that of the passes it runs and of the memory plan, each near-linear
//! (stated in its own file); a 100,000-layer network checks in seconds.

use crate::ir::train::TrainConfig;
use crate::ir::{Graph, InputKind, NodeId, Op};
use crate::passes::{memplan, pipeline};
use crate::span::Span;

#[derive(Clone, Debug, PartialEq, thiserror::Error)]
pub enum TrainableError {
    #[error("input `{name}` is never fed: `train` feeds the data to one {what} input, `{fed}`")]
    Unfed {
        name: String,
        what: &'static str,
        fed: String,
        span: Span,
        fed_span: Span,
    },
    #[error("the network has no {what} input; `train` needs one")]
    NoInput { what: &'static str, span: Span },
    #[error("the network has no loss; `train` needs one `softmax_xent`")]
    NoLoss { span: Span },
    #[error("the network has {count} `softmax_xent` losses; `train` needs exactly one")]
    ManyLosses {
        count: usize,
        span: Span,
        first: Span,
    },
    #[error("the training step cannot be built: {reason}")]
    Step { reason: String, span: Span },
}

impl TrainableError {
    pub fn span(&self) -> Span {
        match self {
            TrainableError::Unfed { span, .. }
            | TrainableError::NoInput { span, .. }
            | TrainableError::NoLoss { span }
            | TrainableError::ManyLosses { span, .. }
            | TrainableError::Step { span, .. } => *span,
        }
    }
}

fn nodes(g: &Graph, f: impl Fn(&Op) -> bool) -> Vec<NodeId> {
    let mut v: Vec<NodeId> = g.node_ids().filter(|&n| f(&g.node(n).op)).collect();
    v.sort_by_key(|n| n.index());
    v
}

/// Checks the network `g` with its `train` section as `train` will run
/// it; `network` is the span errors that concern the whole network point
/// at (its name).
pub fn check(g: &Graph, train: &TrainConfig, network: Span) -> Result<(), TrainableError> {
    for (kind, what) in [(InputKind::Tensor, "image"), (InputKind::Labels, "label")] {
        let ins = nodes(g, |op| matches!(op, Op::Input { kind: k } if *k == kind));
        let Some(&fed) = ins.first() else {
            return Err(TrainableError::NoInput {
                what,
                span: network,
            });
        };
        if let Some(&extra) = ins.get(1) {
            return Err(TrainableError::Unfed {
                name: g.node(extra).name.clone(),
                what,
                fed: g.node(fed).name.clone(),
                span: g.node(extra).span,
                fed_span: g.node(fed).span,
            });
        }
    }
    let losses = nodes(g, |op| *op == Op::SoftmaxXent);
    match losses[..] {
        [] => return Err(TrainableError::NoLoss { span: network }),
        [_] => {}
        [first, second, ..] => {
            return Err(TrainableError::ManyLosses {
                count: losses.len(),
                span: g.node(second).span,
                first: g.node(first).span,
            });
        }
    }
    let span = g.node(losses[0]).span;
    let step = |reason: String| TrainableError::Step { reason, span };
    for fuse in [true, false] {
        let t = pipeline::training_step(g, &train.sgd, fuse).map_err(|e| step(e.to_string()))?;
        t.training_io()
            .map_err(|what| step(format!("no `{what}` in the step")))?;
        memplan::plan(&t, train.batch.max(1)).map_err(|e| step(e.to_string()))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(src: &str) -> Result<(), TrainableError> {
        let c = crate::frontend::compile(src).unwrap_or_else(|d| panic!("{}", d.message));
        check(&c.module.graph, &c.module.train, c.ast.network.name.span)
    }

    const HEAD: &str = "network n {\n  input image: [1, 6, 6]\n  input label: class(3)\n";

    #[test]
    fn a_plain_network_is_trainable() {
        run(&format!(
            "{HEAD}  out = dense(image, units: 3)\n  loss = softmax_xent(out, label)\n}}\n"
        ))
        .unwrap();
    }

    #[test]
    fn a_second_tensor_input_is_unfed() {
        let e = run(&format!(
            "{HEAD}  input extra: [36]\n  out = dense(extra, units: 3)\n  loss = softmax_xent(out, label)\n  d = dense(image, units: 3)\n}}\n"
        ))
        .unwrap_err();
        assert!(
            matches!(&e, TrainableError::Unfed { name, fed, .. } if name == "extra" && fed == "image"),
            "{e:?}"
        );
    }

    #[test]
    fn no_loss_and_two_losses_are_refused() {
        let e = run(&format!("{HEAD}  out = dense(image, units: 3)\n}}\n")).unwrap_err();
        assert!(matches!(e, TrainableError::NoLoss { .. }), "{e:?}");
        let e = run(&format!(
            "{HEAD}  out = dense(image, units: 3)\n  a = softmax_xent(out, label)\n  b = softmax_xent(out, label)\n}}\n"
        ))
        .unwrap_err();
        assert!(
            matches!(e, TrainableError::ManyLosses { count: 2, .. }),
            "{e:?}"
        );
    }
}
