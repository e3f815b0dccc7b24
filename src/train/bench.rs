//! Training-step throughput on synthetic data: the figure `netc bench`
//! prints and `BENCHMARKS.md` compares with the PyTorch peer
//! (`bench/torch_peer.py`). Data loading is excluded on both sides.

use std::time::Instant;

use crate::backend::cpu::exec::{CpuExec, ExecError, Layout};
use crate::ir::Ty;
use crate::lower::Module;
use crate::passes::pipeline::{self, PipelineError};
use crate::rng;

#[derive(Debug, thiserror::Error)]
pub enum BenchError {
    #[error(transparent)]
    Exec(#[from] ExecError),
    #[error(transparent)]
    Passes(#[from] PipelineError),
}

/// What `netc bench` measures.
#[derive(Clone, Debug)]
pub struct BenchReport {
    pub network: String,
    pub batch: usize,
    pub steps: u64,
    pub fused: bool,
    pub layout: Layout,
    pub images_per_s: f64,
    /// Bytes of the executor's arenas (planned, or every buffer apart).
    pub arena_bytes: usize,
    /// Seconds and calls per op over the timed steps, most time first
    /// (empty unless asked for).
    pub profile: Vec<(&'static str, f64, u64)>,
}

/// Times `steps` training steps of `batch` random images (after two
/// untimed warm-up steps), with the fusion pass if `fuse`, buffers laid
/// out as `memory` says, and per-op times if `profile`.
pub fn train_steps(
    module: &Module,
    batch: usize,
    steps: u64,
    fuse: bool,
    memory: Layout,
    profile: bool,
) -> Result<BenchReport, BenchError> {
    let g = pipeline::training_step(&module.graph, &module.train.sgd, fuse)?;
    let classes = g
        .node_ids()
        .find_map(|n| match g.node(n).ty {
            Ty::Labels { classes } => Some(classes),
            _ => None,
        })
        .unwrap_or(1);
    let mut exec = CpuExec::with_memory(g, 0, memory)?;
    let per = exec.image_len();
    // The batch's images and labels, refused with their size before they
    // are allocated when the machine cannot hold them.
    let bytes = (batch as u64)
        .saturating_mul(per as u64 + 1)
        .saturating_mul(4);
    crate::backend::cpu::memory::check_fits(&format!("a batch of {batch} images"), bytes)
        .map_err(ExecError::from)?;
    let images: Vec<f32> = (0..batch * per)
        .map(|i| rng::normal(1, 2, i as u64) as f32)
        .collect();
    let labels: Vec<u32> = (0..batch)
        .map(|i| (rng::bits(1, 3, i as u64) % classes) as u32)
        .collect();
    for s in 0..2 {
        exec.train_step(&images, &labels, 1e-3, s)?;
    }
    exec.set_profile(profile);
    let t = Instant::now();
    for s in 0..steps {
        exec.train_step(&images, &labels, 1e-3, 2 + s)?;
    }
    let secs = t.elapsed().as_secs_f64().max(1e-9);
    Ok(BenchReport {
        network: module.graph.name.clone(),
        batch,
        steps,
        fused: fuse,
        layout: memory,
        images_per_s: (batch as u64 * steps) as f64 / secs,
        arena_bytes: exec.arena_bytes(),
        profile: exec.profile(),
    })
}

impl std::fmt::Display for BenchReport {
    /// The line `netc bench` prints, then with a profile the time per step
    /// spent in each kind of op.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "netc {} batch {}: {:.1} images/s ({}, {}, arenas {:.1} MiB)",
            self.network,
            self.batch,
            self.images_per_s,
            if self.fused { "fused" } else { "unfused" },
            match self.layout {
                Layout::Separate => "every buffer apart",
                Layout::Planned => "planned",
            },
            self.arena_bytes as f64 / (1u64 << 20) as f64
        )?;
        if self.profile.is_empty() {
            return Ok(());
        }
        let steps = self.steps.max(1);
        let total: f64 = self.profile.iter().map(|p| p.1).sum();
        write!(
            f,
            "\n{:<24} {:>10} {:>7} {:>8}",
            "op", "ms/step", "share", "calls"
        )?;
        for (op, secs, calls) in &self.profile {
            write!(
                f,
                "\n{op:<24} {:>10.2} {:>6.1}% {:>8}",
                1e3 * secs / steps as f64,
                100.0 * secs / total.max(1e-12),
                calls / steps
            )?;
        }
        Ok(())
    }
}
