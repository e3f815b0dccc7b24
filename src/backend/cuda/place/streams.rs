//! How a placed program (`crate::backend::cuda::place::split`) is issued on streams, one per
//! logical device: a pure list of [`Command`]s that `crate::backend::cuda::runtime::multi` issues
//! on the GPUs one by one and that the emulation tests replay under
//! adversarial interleavings of the streams.
//!
//! Assumes a program `crate::backend::cuda::proof::alias::check` accepts: each launch and GEMM
//! touches one device's memory, each copy reads its source on one device
//! and writes a mirror on another (or the same), and each device's memory
//! is written only by its own steps. Work on one stream runs in order;
//! streams order each other only through events: a [`Command::Wait`]
//! waits for the latest [`Command::Record`] of the same event issued
//! before it.
//!
//! Each cross-device copy `c` of buffer `x` from device `s` to device `d`
//! has two events:
//! - `ready`, recorded on `s` right after the last step before the copy
//!   that runs on `s` and writes memory overlapping `x` (at the start of
//!   the training step if none does: `x` was uploaded, or written by an
//!   earlier step), so that `x`'s producer precedes it and nothing else of
//!   `s` delays `d`; `d` waits for it just before the copy;
//! - `done`, recorded on `d` right after the copy; `s` waits for it just
//!   before the first later step that runs on `s` and writes memory
//!   overlapping `x`, or at the end of the training step if none does (so
//!   work issued on `s` afterwards, such as the next batch's upload, waits
//!   too).
//!
//! Readers of a mirror come after its copy on the reader's stream, and the
//! next copy into it (in the next training step) after them. A copy within
//! one device is an ordinary step of its stream.
//!
//! Guarantees: every step of the program appears once, in program order
//! within each stream; every wait follows the record it waits for; what
//! one stream writes is never read or written by another stream without an
//! event chain ordering the two as the program does (the emulation tests
//! check this with a race detector and by running the streams out of step).

use crate::backend::cuda::program::{CudaProgram, Step};

/// One of the two events of a cross-device copy step.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Event {
    /// Index of the copy step in [`CudaProgram::steps`].
    pub copy: usize,
    /// `false`: `ready` (the source is written); `true`: `done` (the
    /// copy has read it).
    pub done: bool,
}

/// One thing issued on a stream (streams are numbered as logical devices).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Command {
    /// Step `step` of the program.
    Run { step: usize, stream: usize },
    /// Records `event` on `stream` (after everything issued there so far).
    Record { event: Event, stream: usize },
    /// Makes `stream` wait for the latest record of `event`.
    Wait { event: Event, stream: usize },
}

/// A buffer's byte range on its device.
fn range(p: &CudaProgram, b: usize) -> (u64, u64) {
    let a = p.addr(b).unwrap_or(0);
    (
        a,
        a.saturating_add(p.buffers.get(b).map_or(0, |d| d.bytes())),
    )
}

/// The commands of one training step of `p` (see the module documentation).
pub fn commands(p: &CudaProgram) -> Vec<Command> {
    let n = p.steps.len();
    let dev = |st: &Step| p.step_device(st).unwrap_or(0);
    let mut at_start = Vec::new();
    let mut ready_after: Vec<Vec<Command>> = vec![Vec::new(); n];
    let mut done_before: Vec<Vec<Command>> = vec![Vec::new(); n];
    let mut at_end = Vec::new();
    for (c, st) in p.steps.iter().enumerate() {
        let Step::Copy { src, dst, .. } = st else {
            continue;
        };
        let (s, d) = (p.device_of(*src), p.device_of(*dst));
        let (Some(stream), true) = (s, s != d) else {
            continue;
        };
        let x = range(p, *src);
        let writes = |j: usize| {
            p.touches(&p.steps[j]).iter().any(|&(b, w)| {
                let y = range(p, b);
                w && p.device_of(b) == s && y.0 < x.1 && x.0 < y.1
            })
        };
        let ready = Command::Record {
            event: Event {
                copy: c,
                done: false,
            },
            stream,
        };
        match (0..c).rev().find(|&j| writes(j)) {
            Some(j) => ready_after[j].push(ready),
            None => at_start.push(ready),
        }
        let done = Command::Wait {
            event: Event {
                copy: c,
                done: true,
            },
            stream,
        };
        match (c + 1..n).find(|&j| writes(j)) {
            Some(j) => done_before[j].push(done),
            None => at_end.push(done),
        }
    }
    let mut out = at_start;
    for (i, st) in p.steps.iter().enumerate() {
        out.append(&mut done_before[i]);
        let stream = dev(st);
        let cross = match st {
            Step::Copy { src, .. } => p.device_of(*src) != Some(stream),
            _ => false,
        };
        if cross {
            let ready = Event {
                copy: i,
                done: false,
            };
            out.push(Command::Wait {
                event: ready,
                stream,
            });
        }
        out.push(Command::Run { step: i, stream });
        if cross {
            let done = Event {
                copy: i,
                done: true,
            };
            out.push(Command::Record {
                event: done,
                stream,
            });
        }
        out.append(&mut ready_after[i]);
    }
    out.extend(at_end);
    out
}
