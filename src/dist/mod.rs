//! Data-parallel ranks: the collective the training loop calls, behind a
//! small trait ([`Collective`]), with a one-process implementation
//! ([`Single`]) and, with the cargo feature `mpi`, one over the system's
//! MPI (`mpi.rs`).
//!
//! Terms. A *rank* is one process of a job of `size` processes; rank 0
//! writes the run's files. The *global batch* is the `.net` file's batch;
//! each rank takes `batch / size` consecutive examples of every global
//! batch ([`Shard`]), so that the examples of a step, their augmentation
//! and their dropout masks are those of one process training on the whole
//! batch.
//!
//! Guarantees: every method is collective (each rank calls it, in the
//! same order, with buffers of the same length); the reductions leave
//! the same values on every rank; nothing here panics on bad input (a
//! length that differs between ranks is the caller's error and MPI's to
//! report).

#[cfg(feature = "mpi")]
mod mpi;

use std::sync::Arc;

pub use crate::data::loader::Shard;

/// The collective operations data-parallel training needs.
pub trait Collective: Send + Sync {
    /// This process's rank, `0..size`.
    fn rank(&self) -> usize;
    /// Processes in the job.
    fn size(&self) -> usize;
    /// This process's rank among those on its machine.
    fn local_rank(&self) -> usize;
    /// Sums `buf` over the ranks, in place: every rank ends with the sum.
    fn all_reduce_f32(&self, buf: &mut [f32]);
    /// Sums `buf` over the ranks, in place.
    fn all_reduce_f64(&self, buf: &mut [f64]);
    /// Sums `buf` over the ranks, in place (counts: exact).
    fn all_reduce_u64(&self, buf: &mut [u64]);
    /// Replaces `buf` on every rank by rank 0's (lengths may differ).
    fn broadcast_bytes(&self, buf: &mut Vec<u8>);
    /// Returns once every rank has called it.
    fn barrier(&self);
    /// Ends the whole job with exit code `code` (after a rank's error has
    /// been printed: the other ranks may be waiting in a collective).
    fn abort(&self, code: i32) -> !;
}

/// One process: every collective is the identity.
#[derive(Clone, Copy, Debug, Default)]
pub struct Single;

impl Collective for Single {
    fn rank(&self) -> usize {
        0
    }
    fn size(&self) -> usize {
        1
    }
    fn local_rank(&self) -> usize {
        0
    }
    fn all_reduce_f32(&self, _: &mut [f32]) {}
    fn all_reduce_f64(&self, _: &mut [f64]) {}
    fn all_reduce_u64(&self, _: &mut [u64]) {}
    fn broadcast_bytes(&self, _: &mut Vec<u8>) {}
    fn barrier(&self) {}
    fn abort(&self, code: i32) -> ! {
        std::process::exit(code)
    }
}

/// Why a job cannot start as launched.
pub fn launch_error() -> Option<String> {
    let size = launcher_size()?;
    if size > 1 && !cfg!(feature = "mpi") {
        return Some(format!(
            "netc runs under an MPI launcher with {size} processes, but this build has no MPI support: each process would train alone; build with `cargo build --release --features mpi`, or run one process"
        ));
    }
    None
}

/// The world size a launcher (`mpirun`, `srun`) announces, if any.
fn launcher_size() -> Option<usize> {
    [
        "OMPI_COMM_WORLD_SIZE",
        "PMI_SIZE",
        "PMIX_SIZE",
        "MPI_LOCALNRANKS",
    ]
    .iter()
    .find_map(|v| std::env::var(v).ok()?.trim().parse().ok())
}

/// Whether a launcher started this process (PMIx names the rank, not
/// always the size).
#[cfg(feature = "mpi")]
fn under_launcher() -> bool {
    launcher_size().is_some()
        || ["OMPI_COMM_WORLD_RANK", "PMIX_RANK", "PMI_RANK"]
            .iter()
            .any(|v| std::env::var_os(v).is_some())
}

/// The job this process belongs to: MPI's world when a launcher started
/// more than one process (and the build has MPI), else [`Single`]. MPI is
/// initialised only under a launcher, so a plain run is as before.
pub fn world() -> Result<Arc<dyn Collective>, String> {
    if let Some(e) = launch_error() {
        return Err(e);
    }
    #[cfg(feature = "mpi")]
    if under_launcher() {
        let w = mpi::Mpi::init()?;
        if w.size() > 1 {
            return Ok(Arc::new(w));
        }
    }
    Ok(Arc::new(Single))
}

/// Checks that every rank describes its run (`what`: network fingerprint,
/// settings, data, resume point, one item a line) as rank 0 does; a
/// difference is an error on every rank, on those that differ naming the
/// first line that does. Collective.
pub fn agree(c: &dyn Collective, what: &str) -> Result<(), String> {
    if c.size() == 1 {
        return Ok(());
    }
    let mut theirs = what.as_bytes().to_vec();
    c.broadcast_bytes(&mut theirs);
    let mine_differs = u64::from(theirs != what.as_bytes());
    let mut bad = [mine_differs];
    c.all_reduce_u64(&mut bad);
    if bad[0] == 0 {
        return Ok(());
    }
    let theirs = String::from_utf8_lossy(&theirs);
    Err(if mine_differs == 1 {
        format!(
            "rank {} does not run what rank 0 runs: {}",
            c.rank(),
            first_difference(&theirs, what)
        )
    } else {
        format!(
            "{} of {} ranks do not run what rank 0 runs (their network, settings or data differ; each says where)",
            bad[0],
            c.size()
        )
    })
}

/// The first line where rank 0's description and this rank's differ.
fn first_difference(zero: &str, mine: &str) -> String {
    let mut a = zero.lines();
    let mut b = mine.lines();
    loop {
        match (a.next(), b.next()) {
            (Some(x), Some(y)) if x == y => continue,
            (x, y) => {
                return format!(
                    "rank 0 has {}, this rank {}",
                    x.unwrap_or("nothing more"),
                    y.unwrap_or("nothing more")
                );
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn local_batch_divides_or_says_why() {
        let s = Shard { rank: 1, size: 2 };
        assert_eq!(s.local_batch(128), Ok(64));
        assert_eq!(s.offset(64), 64);
        let e = Shard { rank: 0, size: 3 }.local_batch(128).unwrap_err();
        assert!(e.contains("does not divide among 3 ranks"), "{e}");
    }

    #[test]
    fn one_process_agrees_with_itself() {
        assert_eq!(agree(&Single, "x"), Ok(()));
        assert_eq!(
            first_difference("net a\nseed 1", "net a\nseed 2"),
            "rank 0 has seed 1, this rank seed 2"
        );
    }
}
