//! The pass pipeline: an ordered list of named graph passes, parsed from
//! text such as `autodiff,fuse`, run one after the other on a graph.
//!
//! Passes: `autodiff` (`passes::autodiff`), and each fusion rewrite of
//! `passes::fuse` as a pass of its own, named as in [`fuse::REWRITES`]
//! (`conv+relu`, `dense+relu+dropout`, `dense+relu`, `lrn+maxpool`,
//! `grad_chain`, `conv+act`, `dense+act`). `fuse` is shorthand for all
//! seven in that order; run one
//! by one they give the graph `fuse::fuse` gives. Memory planning is an
//! analysis, not a pass: it reads the graph a pipeline produced.
//!
//! Assumes: [`run`] is given a verified graph, and, if the list holds
//! `autodiff`, a forward graph (as lowered from a `.net` file).
//!
//! Guarantees: [`parse`] accepts only known names, at most one `autodiff`,
//! and no fusion rewrite before `autodiff` (autodiff differentiates only
//! unfused ops, so it would drop the gradients of fused ones); fusion
//! rewrites without `autodiff` fuse a forward graph, and a rewrite may be
//! named twice (the second run finds nothing left). [`run`] runs the passes
//! in order, runs `ir::verify::verify` after every pass, and stops at the
//! first pass that fails or leaves a graph that does not verify, with an
//! error naming that pass; it refuses `autodiff` on a graph that is not a
//! forward graph. Nothing here panics on bad input.
//!
//! Cost: the passes' own (each near-linear, stated in its file) plus one
//! `verify` after each, O((V + E) log V).

use std::time::{Duration, Instant};

use crate::ir::train::Sgd;
use crate::ir::verify::{VerifyError, verify};
use crate::ir::{Graph, Op};

use super::autodiff::{AutodiffError, autodiff};
use super::fuse::{self, FuseError, REWRITES};

/// The default pipeline: the passes `netc train` and `netc bench` run
/// (`autodiff`, then every fusion rewrite).
pub const DEFAULT: &str = "autodiff,fuse";

/// One graph pass.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Pass {
    /// The training step: backward pass and SGD updates.
    Autodiff,
    /// One fusion rewrite, by its name in [`fuse::REWRITES`].
    Rewrite(&'static str),
}

impl Pass {
    pub fn name(self) -> &'static str {
        match self {
            Pass::Autodiff => "autodiff",
            Pass::Rewrite(r) => r,
        }
    }
}

impl std::fmt::Display for Pass {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// Every name [`parse`] accepts, `fuse` (the shorthand) included.
pub fn names() -> Vec<&'static str> {
    let mut v = vec!["autodiff", "fuse"];
    v.extend(REWRITES);
    v
}

#[derive(Debug, thiserror::Error)]
pub enum PipelineError {
    #[error("unknown pass `{0}`; the passes are {list}", list = names().join(", "))]
    Unknown(String),
    #[error("empty pass name in `{0}`; separate pass names by single commas")]
    Empty(String),
    #[error("`autodiff` is named twice; a training step is built once")]
    AutodiffTwice,
    #[error(
        "`{0}` comes before `autodiff`, which differentiates only unfused ops; put `autodiff` first"
    )]
    FusedBeforeAutodiff(&'static str),
    #[error(
        "`autodiff` needs a forward graph, but `{node}` is a `{op}` (already a training step or fused)"
    )]
    NotForward { node: String, op: &'static str },
    #[error("pass `autodiff` failed: {0}")]
    Autodiff(AutodiffError),
    #[error("pass `{pass}` failed: {source}")]
    Fuse {
        pass: &'static str,
        source: FuseError,
    },
    #[error("the IR does not verify after pass `{pass}`: {source}")]
    Verify {
        pass: &'static str,
        source: VerifyError,
    },
}

/// Parses a comma-separated list of pass names (spaces around names are
/// ignored; an empty or blank list is the empty pipeline), expanding `fuse`.
pub fn parse(list: &str) -> Result<Vec<Pass>, PipelineError> {
    let mut passes = Vec::new();
    if list.trim().is_empty() {
        return Ok(passes);
    }
    for name in list.split(',').map(str::trim) {
        match name {
            "" => return Err(PipelineError::Empty(list.to_string())),
            "autodiff" => {
                if passes.contains(&Pass::Autodiff) {
                    return Err(PipelineError::AutodiffTwice);
                }
                if let Some(Pass::Rewrite(r)) = passes.first() {
                    return Err(PipelineError::FusedBeforeAutodiff(r));
                }
                passes.push(Pass::Autodiff);
            }
            "fuse" => passes.extend(REWRITES.map(Pass::Rewrite)),
            _ => match REWRITES.iter().find(|r| **r == name) {
                Some(r) => passes.push(Pass::Rewrite(r)),
                None => return Err(PipelineError::Unknown(name.to_string())),
            },
        }
    }
    Ok(passes)
}

/// What one pass did.
#[derive(Clone, Debug, PartialEq)]
pub struct PassTiming {
    pub pass: Pass,
    /// Wall time of the pass itself (the verifier's run not included).
    pub elapsed: Duration,
    pub nodes_before: usize,
    pub nodes_after: usize,
    /// For a fusion rewrite: how often it fired.
    pub fired: Option<usize>,
}

impl std::fmt::Display for PassTiming {
    /// `conv+relu  0.12 ms  nodes 263 → 243  fired 10`.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{:<20} {:>9.2} ms  nodes {} → {}",
            self.pass.name(),
            self.elapsed.as_secs_f64() * 1e3,
            self.nodes_before,
            self.nodes_after
        )?;
        match self.fired {
            Some(n) => write!(f, "  fired {n}"),
            None => write!(
                f,
                "  {:+} nodes",
                self.nodes_after as i64 - self.nodes_before as i64
            ),
        }
    }
}

/// Runs `passes` in order on `g` (`sgd` configures `autodiff`), verifying
/// after each; `after` sees each pass's record and the verified graph it
/// left. Returns one record per pass. On error, `g` is as the failing
/// pass left it.
pub fn run(
    g: &mut Graph,
    sgd: &Sgd,
    passes: &[Pass],
    after: &mut dyn FnMut(&PassTiming, &Graph),
) -> Result<Vec<PassTiming>, PipelineError> {
    let mut records = Vec::with_capacity(passes.len());
    for &pass in passes {
        let nodes_before = g.g.node_count();
        let start = Instant::now();
        let fired = match pass {
            Pass::Autodiff => {
                forward_only(g)?;
                autodiff(g, sgd).map_err(PipelineError::Autodiff)?;
                None
            }
            Pass::Rewrite(r) => {
                let report = fuse::fuse_with(g, &[r])
                    .map_err(|source| PipelineError::Fuse { pass: r, source })?;
                Some(report.fired.get(r).copied().unwrap_or(0))
            }
        };
        let elapsed = start.elapsed();
        verify(g).map_err(|source| PipelineError::Verify {
            pass: pass.name(),
            source,
        })?;
        let record = PassTiming {
            pass,
            elapsed,
            nodes_before,
            nodes_after: g.g.node_count(),
            fired,
        };
        after(&record, g);
        records.push(record);
    }
    Ok(records)
}

/// Errs on the first node that a forward graph cannot hold.
fn forward_only(g: &Graph) -> Result<(), PipelineError> {
    for n in g.node_ids() {
        let node = g.node(n);
        // Autodiff differentiates only unfused forward ops.
        let forward = node.op.is_forward()
            && !matches!(
                node.op,
                Op::ConvRelu { .. }
                    | Op::DenseRelu { .. }
                    | Op::DenseReluDropout { .. }
                    | Op::LrnMaxPool { .. }
            );
        if !forward {
            return Err(PipelineError::NotForward {
                node: node.name.clone(),
                op: node.op.mnemonic(),
            });
        }
    }
    Ok(())
}

/// The training step `netc train` runs: `forward` (a forward graph) through
/// the default pipeline (`autodiff,fuse`), or `autodiff` alone when `fuse`
/// is false, verified after every pass.
pub fn training_step(forward: &Graph, sgd: &Sgd, fuse: bool) -> Result<Graph, PipelineError> {
    let mut g = forward.clone();
    let list = if fuse { DEFAULT } else { "autodiff" };
    run(&mut g, sgd, &parse(list)?, &mut |_, _| {})?;
    Ok(g)
}

/// The planned arena bytes of a network's training step as `netc train`
/// runs it (autodiff, fusion, then a plan) at `batch`: the figure ablation
/// variants and sweeps compare.
pub fn training_step_bytes(forward: &Graph, sgd: &Sgd, batch: u64) -> Result<u64, String> {
    let g = training_step(forward, sgd, true).map_err(|e| e.to_string())?;
    let p = crate::passes::memplan::plan(&g, batch).map_err(|e| e.to_string())?;
    Ok(p.planned())
}

/// The largest of `batch`, `batch/2`, `batch/4`, … (rounded up; 1 at
/// least) whose training step plans at most `budget` bytes: how many
/// images `netc eval` puts through one pass when not told. The step is
/// built once; only the plan is made again for each batch.
pub fn batch_within(forward: &Graph, sgd: &Sgd, batch: u64, budget: u64) -> u64 {
    let Ok(g) = training_step(forward, sgd, true) else {
        return batch.max(1);
    };
    let mut b = batch.max(1);
    while b > 1 {
        match crate::passes::memplan::plan(&g, b) {
            Ok(p) if p.planned() > budget => b = b.div_ceil(2),
            _ => break,
        }
    }
    b
}

#[cfg(test)]
mod batch_tests {
    use super::*;

    fn module(src: &str) -> crate::lower::Module {
        crate::frontend::compile(src).unwrap().module
    }

    #[test]
    fn the_batch_within_a_budget_halves_until_the_step_fits() {
        let m = module(include_str!("../../networks/alexnet.net"));
        let (g, sgd) = (&m.graph, &m.train.sgd);
        let full = training_step_bytes(g, sgd, 128).unwrap();
        assert!(full > 1 << 30, "{full}");
        let b = batch_within(g, sgd, 128, 1 << 30);
        assert!((1..128).contains(&b), "{b}");
        assert!(training_step_bytes(g, sgd, b).unwrap() <= 1 << 30 || b == 1);
        assert!(training_step_bytes(g, sgd, b * 2).unwrap() > 1 << 30);
        // A step that fits keeps its batch.
        let small = module(include_str!("../../networks/lenet5.net"));
        assert_eq!(
            batch_within(&small.graph, &small.train.sgd, 64, 1 << 30),
            64
        );
    }
}
