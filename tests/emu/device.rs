//! The emulated device: a [`Device`] over one host allocation laid out as
//! the runtime lays out the device's (the memory plan's arenas, then the
//! workspace and any other region), run as the runtime runs a GPU:
//! - steps are asynchronous: [`Device::step`] only queues the step, which
//!   runs when something waits for the device (a download, an upload), so
//!   staging the next step's inputs while a step is "running" is checked
//!   (inputs written straight into the buffers a queued step reads would
//!   change that step's result);
//! - staged inputs are taken by the next step, at its start;
//! - the first [`WARM`] steps run the program's launch list, later ones
//!   replay the launch list recorded once (`super::record`), as a CUDA
//!   graph would: a step whose launches depended on anything but memory
//!   would go wrong there.

use std::collections::BTreeMap;
use std::rc::Rc;

use netc::backend::cuda::program::CudaProgram;
use netc::backend::cuda::runtime::RuntimeError;
use netc::backend::cuda::runtime::device::{Device, check_fit};

use super::{Emu, Recorded, record, replay, run_step, view, view_mut, write_scalars};

/// Steps run launch by launch before the recorded list is replayed.
pub const WARM: usize = 2;

struct Queued {
    seed: u64,
    lr: f64,
    inputs: BTreeMap<usize, Vec<f32>>,
}

pub struct EmuDevice {
    pub emu: Rc<Emu>,
    pub prog: CudaProgram,
    pub mem: Vec<f32>,
    staged: BTreeMap<usize, Vec<f32>>,
    queue: Vec<Queued>,
    ran: usize,
    recorded: Option<Vec<Recorded>>,
    /// Steps that replayed the recorded launch list.
    pub replayed: usize,
}

impl EmuDevice {
    /// A zeroed allocation for `prog` on `emu` (built from `prog.source`).
    pub fn new(emu: Rc<Emu>, prog: &CudaProgram) -> EmuDevice {
        EmuDevice {
            emu,
            prog: prog.clone(),
            mem: vec![0f32; (prog.bytes() as usize).div_ceil(4)],
            staged: BTreeMap::new(),
            queue: Vec::new(),
            ran: 0,
            recorded: None,
            replayed: 0,
        }
    }

    /// Runs the queued steps, in order.
    fn flush(&mut self) {
        for q in std::mem::take(&mut self.queue) {
            for (b, data) in &q.inputs {
                view_mut(&self.prog, &mut self.mem, *b).copy_from_slice(data);
            }
            if self.ran < WARM {
                run_step(
                    &self.emu,
                    &self.prog,
                    &mut self.mem,
                    q.seed,
                    q.lr,
                    |_, _| {},
                );
            } else {
                write_scalars(&self.prog, &mut self.mem, q.seed, q.lr);
                let rec = self.recorded.get_or_insert_with(|| record(&self.prog));
                replay(&self.emu, rec, &mut self.mem);
                self.replayed += 1;
            }
            self.ran += 1;
        }
    }
}

impl Device for EmuDevice {
    fn program(&self) -> &CudaProgram {
        &self.prog
    }
    fn upload(&mut self, b: usize, data: &[f32]) -> Result<(), RuntimeError> {
        check_fit(&self.prog, b, data)?;
        self.flush();
        view_mut(&self.prog, &mut self.mem, b).copy_from_slice(data);
        Ok(())
    }
    fn stage(&mut self, b: usize, data: &[f32]) -> Result<(), RuntimeError> {
        check_fit(&self.prog, b, data)?;
        self.staged.insert(b, data.to_vec());
        Ok(())
    }
    fn download(&mut self, b: usize) -> Result<Vec<f32>, RuntimeError> {
        if b >= self.prog.buffers.len() {
            return Err(RuntimeError::NoBuffer(b.to_string()));
        }
        self.flush();
        Ok(view(&self.prog, &self.mem, b).to_vec())
    }
    fn step(&mut self, seed: u64, lr: f64) -> Result<(), RuntimeError> {
        self.queue.push(Queued {
            seed,
            lr,
            inputs: std::mem::take(&mut self.staged),
        });
        Ok(())
    }
}
