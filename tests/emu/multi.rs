//! The emulated devices of a placed program (`backend::cuda::place::split`):
//! each logical device has its own host memory (`device_bytes` of it,
//! poisoned with NaN by the tests before a step), and a step's pointers
//! are taken in the memory of the device it runs on, at the buffers'
//! addresses, so a step given another device's buffer reads the wrong
//! numbers (or stops at an out-of-range address), and a missing copy
//! leaves NaN where a mirror should hold a value.
//!
//! The step is replayed from `backend::cuda::place::streams::commands`, the list
//! the GPU runtime issues: in program order ([`Order::Program`]), or with
//! the streams run out of step ([`Order::Streams`]: whichever stream comes
//! first in a priority list runs as far as its event waits allow), which
//! shows a missing event as wrong numbers; [`races`] proves the command
//! list orders every conflicting pair of steps on different streams as the
//! program does (a vector-clock race detector).

use std::rc::Rc;

use netc::backend::cuda::place::streams::{Command, commands};
use netc::backend::cuda::program::{Arg, CudaProgram, Step};
use netc::backend::cuda::runtime::RuntimeError;
use netc::backend::cuda::runtime::device::Device;

use super::{Emu, Val};

/// How the streams' commands are interleaved.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Order {
    /// The order they are issued in (the program's).
    Program,
    /// The first stream of the list that can run does, as far as it can.
    Streams(Vec<usize>),
}

/// Every logical device's memory for `p`, filled with `fill`.
pub fn memories(p: &CudaProgram, fill: f32) -> Vec<Vec<f32>> {
    (0..p.devices())
        .map(|d| vec![fill; (p.device_bytes(d) as usize).div_ceil(4).max(1)])
        .collect()
}

/// Buffer `b`'s elements in its device's memory.
pub fn view<'a>(p: &CudaProgram, mems: &'a [Vec<f32>], b: usize) -> &'a [f32] {
    let (d, w) = place(p, b);
    &mems[d][w..w + p.buffers[b].elems]
}

pub fn view_mut<'a>(p: &CudaProgram, mems: &'a mut [Vec<f32>], b: usize) -> &'a mut [f32] {
    let (d, w) = place(p, b);
    &mut mems[d][w..w + p.buffers[b].elems]
}

/// Buffer `b`'s device and word index there.
fn place(p: &CudaProgram, b: usize) -> (usize, usize) {
    let d = p.device_of(b).expect("a buffer of the program");
    (
        d,
        (p.addr(b).expect("a buffer of the program") / 4) as usize,
    )
}

/// Runs step `i` of `p` on the memory of the device it runs on.
fn run(emu: &Emu, p: &CudaProgram, mems: &mut [Vec<f32>], i: usize) {
    let st = &p.steps[i];
    if let Step::Copy { src, dst, .. } = st {
        let v = view(p, mems, *src).to_vec();
        view_mut(p, mems, *dst).copy_from_slice(&v);
        return;
    }
    let dev = p.step_device(st).expect("a step with buffers");
    let mem = &mut mems[dev];
    let len = mem.len();
    let base = mem.as_mut_ptr();
    // The buffer's address taken in *this* device's memory, as a GPU would.
    let ptr = |b: usize, at: usize| {
        let w = (p.addr(b).expect("a buffer") / 4) as usize;
        let end = w + p.buffers[b].elems;
        assert!(
            end <= len,
            "step {i} ({}) on device {dev} reaches word {end} of {len}: `{}` is not in its memory",
            st.node(),
            p.buffers[b].name
        );
        // SAFETY: inside the device's memory (asserted).
        unsafe { base.add(w + at) }
    };
    match st {
        Step::Launch(l) => {
            let vals: Vec<Val> = l
                .args
                .iter()
                .map(|a| match a {
                    Arg::Buf(b) => Val::Ptr(ptr(*b, 0).cast()),
                    Arg::At(b, at) => Val::Ptr(ptr(*b, *at).cast()),
                })
                .collect();
            emu.launch(l.kernel, l.grid, l.block, &vals);
        }
        Step::Gemm(g) => emu.sgemm(g, ptr(g.a, g.a_at), ptr(g.b, g.b_at), ptr(g.c, g.c_at)),
        Step::Copy { .. } => unreachable!(),
    }
}

/// Runs `cmds` (one or more training steps' commands of `p`) over `mems`
/// in `order`. In program order, `at(pos, mems)` sees the memories before
/// the steps of each position of `p.order` (of the first training step).
#[allow(clippy::too_many_arguments)]
pub fn run_commands(
    emu: &Emu,
    p: &CudaProgram,
    mems: &mut [Vec<f32>],
    cmds: &[Command],
    seed: u64,
    lr: f64,
    order: &Order,
    mut at: impl FnMut(usize, &[Vec<f32>]),
) {
    // The step's scalars, where the host writes them before the step.
    view_mut(p, mems, p.scalars)
        .copy_from_slice(&netc::backend::cuda::program::scalar_words(seed, lr));
    let prio = match order {
        Order::Program => {
            let mut pos = 0;
            for c in cmds {
                let Command::Run { step, .. } = *c else {
                    continue;
                };
                while pos <= p.steps[step].pos() && pos < p.order.len() {
                    at(pos, mems);
                    pos += 1;
                }
                run(emu, p, mems, step);
            }
            while pos < p.order.len() {
                at(pos, mems);
                pos += 1;
            }
            return;
        }
        Order::Streams(prio) => prio,
    };
    // Each wait's record: the latest record of its event issued before it.
    let record_of = records(cmds);
    let streams = p.devices();
    let mut queue: Vec<Vec<usize>> = vec![Vec::new(); streams];
    for (i, c) in cmds.iter().enumerate() {
        queue[stream(c)].push(i);
    }
    let mut head = vec![0usize; streams];
    let mut done = vec![false; cmds.len()];
    loop {
        let ready = |s: usize, head: &[usize], done: &[bool]| {
            let Some(&i) = queue[s].get(head[s]) else {
                return false;
            };
            match cmds[i] {
                Command::Wait { .. } => record_of[i].is_none_or(|r| done[r]),
                _ => true,
            }
        };
        let Some(&s) = prio.iter().find(|&&s| ready(s, &head, &done)) else {
            assert!(
                (0..streams).all(|s| head[s] == queue[s].len()),
                "the streams wait for each other forever"
            );
            return;
        };
        let i = queue[s][head[s]];
        if let Command::Run { step, .. } = cmds[i] {
            run(emu, p, mems, step);
        }
        done[i] = true;
        head[s] += 1;
    }
}

fn stream(c: &Command) -> usize {
    match *c {
        Command::Run { stream, .. }
        | Command::Record { stream, .. }
        | Command::Wait { stream, .. } => stream,
    }
}

/// For each wait of `cmds`, the index of the record it waits for.
fn records(cmds: &[Command]) -> Vec<Option<usize>> {
    let mut last = std::collections::HashMap::new();
    cmds.iter()
        .enumerate()
        .map(|(i, c)| match *c {
            Command::Record { event, .. } => {
                last.insert(event, i);
                None
            }
            Command::Wait { event, .. } => last.get(&event).copied(),
            Command::Run { .. } => None,
        })
        .collect()
}

/// The first pair of steps of `cmds` on different streams that touch
/// overlapping memory of one device (one writing) and that no chain of
/// stream order and events orders as the program does: `(earlier step,
/// later step, device)`. `None`: race-free.
pub fn races(p: &CudaProgram, cmds: &[Command]) -> Option<(usize, usize, usize)> {
    let streams = p.devices();
    let record_of = records(cmds);
    let mut clock = vec![vec![0u64; streams]; streams];
    let mut stamp: Vec<Vec<u64>> = Vec::with_capacity(cmds.len());
    // Runs so far: (command, stream, own tick, memory it touches).
    type Touch = (usize, u64, u64, bool);
    let mut runs: Vec<(usize, usize, u64, Vec<Touch>)> = Vec::new();
    for (i, c) in cmds.iter().enumerate() {
        let s = stream(c);
        if let (Command::Wait { .. }, Some(r)) = (c, record_of[i]) {
            let rec = stamp[r].clone();
            for (x, y) in clock[s].iter_mut().zip(rec) {
                *x = (*x).max(y);
            }
        }
        clock[s][s] += 1;
        stamp.push(clock[s].clone());
        let Command::Run { step, .. } = *c else {
            continue;
        };
        let touch: Vec<Touch> = p
            .touches(&p.steps[step])
            .into_iter()
            .map(|(b, w)| {
                let a = p.addr(b).unwrap();
                (p.device_of(b).unwrap(), a, a + p.buffers[b].bytes(), w)
            })
            .collect();
        for (j, sj, tick, other) in &runs {
            if *sj == s || clock[s][*sj] >= *tick {
                continue;
            }
            for &(d, a0, a1, aw) in other {
                for &(e, b0, b1, bw) in &touch {
                    if d == e && (aw || bw) && a0 < b1 && b0 < a1 {
                        let Command::Run { step: sa, .. } = cmds[*j] else {
                            unreachable!()
                        };
                        return Some((sa, step, d));
                    }
                }
            }
        }
        runs.push((i, s, clock[s][s], touch));
    }
    None
}

/// Two (or more) emulated devices as one [`Device`]: a placed program,
/// each device's memory apart, steps replayed from the runtime's commands
/// in `order`.
pub struct MultiEmu {
    pub emu: Rc<Emu>,
    pub prog: CudaProgram,
    pub mems: Vec<Vec<f32>>,
    pub order: Order,
    cmds: Vec<Command>,
}

impl MultiEmu {
    /// Zeroed memories for placed program `prog` on `emu` (built from its source).
    pub fn new(emu: Rc<Emu>, prog: &CudaProgram, order: Order) -> MultiEmu {
        MultiEmu {
            emu,
            prog: prog.clone(),
            mems: memories(prog, 0.0),
            order,
            cmds: commands(prog),
        }
    }
}

impl Device for MultiEmu {
    fn program(&self) -> &CudaProgram {
        &self.prog
    }
    fn upload(&mut self, b: usize, data: &[f32]) -> Result<(), RuntimeError> {
        netc::backend::cuda::runtime::device::check_fit(&self.prog, b, data)?;
        view_mut(&self.prog, &mut self.mems, b).copy_from_slice(data);
        Ok(())
    }
    fn download(&mut self, b: usize) -> Result<Vec<f32>, RuntimeError> {
        if b >= self.prog.buffers.len() {
            return Err(RuntimeError::NoBuffer(b.to_string()));
        }
        Ok(view(&self.prog, &self.mems, b).to_vec())
    }
    fn step(&mut self, seed: u64, lr: f64) -> Result<(), RuntimeError> {
        let (emu, prog, cmds, order) = (&self.emu, &self.prog, &self.cmds, &self.order);
        run_commands(emu, prog, &mut self.mems, cmds, seed, lr, order, |_, _| {});
        Ok(())
    }
}
