//! What `netc cuda-check` prints, as `Display` implementations: the device
//! memory of a loaded program, one step's parity against the CPU
//! executor, graph replay against launch-by-launch issue, throughput, the
//! placement of a program on several GPUs, and where a step's time goes.
//! The lines are those `scripts/gpu-check.sh` reads (`PASS`/`FAIL`).

use std::fmt;

use crate::backend::cuda::program::CudaProgram;
use crate::backend::cuda::step::check::{Parity, Profile};

fn mib(b: u64) -> f64 {
    b as f64 / (1u64 << 20) as f64
}

fn verdict(ok: bool) -> &'static str {
    if ok { "PASS" } else { "FAIL" }
}

/// The device memory of a loaded program.
pub struct MemoryReport {
    pub separate: bool,
    pub devices: usize,
    pub total: u64,
    pub planned: u64,
    pub no_reuse: u64,
    pub workspace: u64,
}

impl MemoryReport {
    pub fn of(p: &CudaProgram, separate: bool) -> MemoryReport {
        MemoryReport {
            separate,
            devices: p.devices(),
            total: (0..p.devices()).map(|d| p.device_bytes(d)).sum(),
            planned: p.planned_bytes(),
            no_reuse: p.no_reuse,
            workspace: p.workspace_bytes(),
        }
    }
}

impl fmt::Display for MemoryReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "device memory ({}{}): {} bytes ({:.1} MiB): arenas {:.1} MiB (no reuse {:.1} MiB), workspace {:.1} MiB",
            if self.separate { "separate" } else { "planned" },
            if self.devices > 1 {
                format!(", {} devices", self.devices)
            } else {
                String::new()
            },
            self.total,
            mib(self.total),
            mib(self.planned),
            mib(self.no_reuse),
            mib(self.workspace)
        )
    }
}

/// One step on the GPU against the CPU executor.
pub struct ParityReport {
    pub network: String,
    pub fused: bool,
    pub gpu_loss: f64,
    pub cpu_loss: f64,
    /// Per buffer, worst first.
    pub errs: Vec<Parity>,
}

impl ParityReport {
    /// The largest relative difference of any buffer.
    pub fn worst(&self) -> f64 {
        self.errs.first().map_or(0.0, |p| p.rel_err)
    }

    /// Every buffer within 1e-3 of the CPU's magnitude and the loss within 1e-4.
    pub fn passed(&self) -> bool {
        self.worst() <= 1e-3
            && (self.gpu_loss - self.cpu_loss).abs() <= 1e-4 * self.cpu_loss.abs().max(1.0)
    }
}

impl fmt::Display for ParityReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "{} ({}): loss gpu {:.6} cpu {:.6}",
            self.network,
            if self.fused { "fused" } else { "unfused" },
            self.gpu_loss,
            self.cpu_loss
        )?;
        for p in self.errs.iter().take(12) {
            writeln!(
                f,
                "  {:>10.3e}  {:>9} of {:>9} off  {}",
                p.rel_err, p.off, p.total, p.name
            )?;
        }
        write!(
            f,
            "parity: {} buffers, worst {:.3e}: {}",
            self.errs.len(),
            self.worst(),
            verdict(self.passed())
        )
    }
}

/// Graph replay against launch by launch.
pub struct ReplayReport {
    pub steps: u64,
    pub diff: f64,
    /// How the replaying program issued its last step.
    pub how: String,
}

impl ReplayReport {
    /// The step was replayed and equals launch-by-launch issue to 1e-6.
    pub fn passed(&self) -> bool {
        self.how.starts_with("replaying") && self.diff <= 1e-6
    }
}

impl fmt::Display for ReplayReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "graph replay: {} staged steps against launch by launch: largest difference {:.3e} ({}): {}",
            self.steps,
            self.diff,
            self.how,
            verdict(self.passed())
        )
    }
}

/// Training throughput on synthetic data.
pub struct ThroughputReport {
    pub network: String,
    pub fused: bool,
    pub batch: usize,
    pub images_per_s: f64,
    pub device_bytes: usize,
    pub staged: bool,
    /// The convolution workspace budget, in bytes.
    pub workspace: u64,
}

impl fmt::Display for ThroughputReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "netc-cuda {}{} batch {}: {:.1} images/s, device memory {:.1} MiB{}{}",
            self.network,
            if self.fused { "" } else { " (unfused)" },
            self.batch,
            self.images_per_s,
            self.device_bytes as f64 / (1u64 << 20) as f64,
            if self.staged { ", batches staged" } else { "" },
            if self.workspace != 64 << 20 {
                format!(", convolution workspace {} MiB", self.workspace >> 20)
            } else {
                String::new()
            }
        )
    }
}

/// A placed program's devices, mirrors and copies.
pub struct PlacementReport<'a> {
    pub program: &'a CudaProgram,
    pub gpus: &'a [usize],
}

impl fmt::Display for PlacementReport<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let p = self.program;
        for (d, gpu) in self.gpus.iter().enumerate() {
            writeln!(f, "device {d} (GPU {gpu}): {} bytes", p.device_bytes(d))?;
        }
        write!(
            f,
            "mirrors {} bytes; copies move {} bytes per step",
            p.mirror_bytes(),
            p.copy_bytes()
        )
    }
}

impl fmt::Display for Profile {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "profile (5 steps launch by launch, averaged): {:.3} ms a step, {} launches and GEMMs",
            self.total_ms, self.launches
        )?;
        for (title, rows) in [("kernel", &self.by_kernel), ("layer", &self.by_layer)] {
            write!(f, "\n  by {title}:")?;
            for (name, ms, n) in rows.iter().take(16) {
                write!(
                    f,
                    "\n    {:>9.3} ms {:>5.1}% {:>5}x  {name}",
                    ms,
                    100.0 * ms / self.total_ms.max(1e-12),
                    n
                )?;
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parity(rel_err: f64, name: &str) -> Parity {
        Parity {
            name: name.into(),
            rel_err,
            off: usize::from(rel_err > 1e-3),
            total: 10,
        }
    }

    #[test]
    fn parity_passes_within_tolerance_and_fails_beyond() {
        let mut r = ParityReport {
            network: "net".into(),
            fused: true,
            gpu_loss: 2.302_600,
            cpu_loss: 2.302_601,
            errs: vec![parity(2e-4, "conv1/conv@t0"), parity(1e-6, "fc8/dense@t0")],
        };
        assert!(r.passed());
        let text = r.to_string();
        assert!(
            text.starts_with("net (fused): loss gpu 2.302600 cpu 2.302601\n"),
            "{text}"
        );
        assert!(
            text.ends_with("parity: 2 buffers, worst 2.000e-4: PASS"),
            "{text}"
        );
        r.errs.insert(0, parity(5e-3, "conv2/conv@t1"));
        assert!(!r.passed());
        assert!(r.to_string().ends_with(": FAIL"));
        r.errs.remove(0);
        r.gpu_loss = 2.31;
        assert!(!r.passed(), "a loss off by 3e-3 passed");
    }

    #[test]
    fn replay_needs_a_replayed_step() {
        let r = ReplayReport {
            steps: 6,
            diff: 0.0,
            how: "launch by launch (capture failed)".into(),
        };
        assert!(!r.passed());
        let r = ReplayReport {
            how: "replaying the captured step".into(),
            ..r
        };
        assert!(r.passed());
        assert!(r.to_string().starts_with("graph replay: 6 staged steps"));
    }
}
