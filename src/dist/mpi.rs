//! [`Collective`] over the system's MPI (the `mpi` crate, rsmpi), for
//! ranks started by `mpirun` or `srun`.
//!
//! Assumes MPI is initialised once per process, here, and finalised when
//! the [`Mpi`] is dropped. Every call takes one lock, so the collectives
//! of a rank are serialised whatever thread calls them (MPI is asked for
//! `MPI_THREAD_SERIALIZED`; the training loop calls them from one thread).
//! The sums go through a scratch copy: rsmpi's all-reduce is not in place
//! (`MPI_IN_PLACE` is not part of its interface), and a copy of a gradient
//! costs little beside the step that made it.

use std::sync::Mutex;

use mpi::Threading;
use mpi::collective::SystemOperation;
use mpi::environment::Universe;
use mpi::topology::SimpleCommunicator;
use mpi::traits::*;

use super::Collective;

/// The world communicator of an MPI job.
pub struct Mpi {
    /// Held for the process's life: dropping it finalises MPI.
    _universe: Universe,
    world: SimpleCommunicator,
    rank: usize,
    size: usize,
    local_rank: usize,
    /// Serialises calls, and holds the scratch buffers of the sums.
    scratch: Mutex<Scratch>,
}

#[derive(Default)]
struct Scratch {
    f32s: Vec<f32>,
    f64s: Vec<f64>,
    u64s: Vec<u64>,
}

// SAFETY: the communicator and universe are handles that MPI lets any
// thread use when calls are serialised; every call below holds `scratch`'s
// lock (and MPI was initialised with at least serialised threading, or
// the loop calls from the thread that initialised it).
unsafe impl Send for Mpi {}
unsafe impl Sync for Mpi {}

impl Mpi {
    /// Initialises MPI (once per process).
    pub fn init() -> Result<Mpi, String> {
        let (universe, _provided) = mpi::initialize_with_threading(Threading::Serialized)
            .ok_or_else(|| "MPI could not be initialised (or was initialised twice)".to_string())?;
        let world = universe.world();
        let rank = world.rank() as usize;
        let size = world.size() as usize;
        // The ranks on this machine: a shared-memory split of the world.
        let local_rank = world.split_shared(world.rank()).rank() as usize;
        Ok(Mpi {
            _universe: universe,
            world,
            rank,
            size,
            local_rank,
            scratch: Mutex::new(Scratch::default()),
        })
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Scratch> {
        self.scratch.lock().unwrap_or_else(|p| p.into_inner())
    }
}

impl Collective for Mpi {
    fn rank(&self) -> usize {
        self.rank
    }
    fn size(&self) -> usize {
        self.size
    }
    fn local_rank(&self) -> usize {
        self.local_rank
    }
    fn all_reduce_f32(&self, buf: &mut [f32]) {
        let mut s = self.lock();
        s.f32s.clear();
        s.f32s.extend_from_slice(buf);
        self.world
            .all_reduce_into(&s.f32s[..], buf, SystemOperation::sum());
    }
    fn all_reduce_f64(&self, buf: &mut [f64]) {
        let mut s = self.lock();
        s.f64s.clear();
        s.f64s.extend_from_slice(buf);
        self.world
            .all_reduce_into(&s.f64s[..], buf, SystemOperation::sum());
    }
    fn all_reduce_u64(&self, buf: &mut [u64]) {
        let mut s = self.lock();
        s.u64s.clear();
        s.u64s.extend_from_slice(buf);
        self.world
            .all_reduce_into(&s.u64s[..], buf, SystemOperation::sum());
    }
    fn broadcast_bytes(&self, buf: &mut Vec<u8>) {
        let _s = self.lock();
        let root = self.world.process_at_rank(0);
        let mut len = buf.len() as u64;
        root.broadcast_into(&mut len);
        buf.resize(len as usize, 0);
        root.broadcast_into(&mut buf[..]);
    }
    fn barrier(&self) {
        let _s = self.lock();
        self.world.barrier();
    }
    fn abort(&self, code: i32) -> ! {
        self.world.abort(code)
    }
}
