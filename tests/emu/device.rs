//! The emulated device: a [`Device`] over one host allocation laid out as
//! the runtime lays out the device's (the memory plan's arenas, then the
//! workspace and any other region), each step replayed on the emulator.

use std::rc::Rc;

use netc::backend::cuda::device::Device;
use netc::backend::cuda::program::CudaProgram;
use netc::backend::cuda::runtime::RuntimeError;

use super::{Emu, run_step, view, view_mut};

pub struct EmuDevice {
    pub emu: Rc<Emu>,
    pub prog: CudaProgram,
    pub mem: Vec<f32>,
}

impl EmuDevice {
    /// A zeroed allocation for `prog` on `emu` (built from `prog.source`).
    pub fn new(emu: Rc<Emu>, prog: &CudaProgram) -> EmuDevice {
        EmuDevice {
            emu,
            prog: prog.clone(),
            mem: vec![0f32; (prog.bytes() as usize).div_ceil(4)],
        }
    }
}

impl Device for EmuDevice {
    fn program(&self) -> &CudaProgram {
        &self.prog
    }
    fn upload(&mut self, b: usize, data: &[f32]) -> Result<(), RuntimeError> {
        let Some(decl) = self.prog.buffers.get(b) else {
            return Err(RuntimeError::NoBuffer(b.to_string()));
        };
        if decl.elems != data.len() {
            return Err(RuntimeError::Size {
                what: decl.name.clone(),
                got: data.len(),
                want: decl.elems,
            });
        }
        view_mut(&self.prog, &mut self.mem, b).copy_from_slice(data);
        Ok(())
    }
    fn download(&mut self, b: usize) -> Result<Vec<f32>, RuntimeError> {
        if b >= self.prog.buffers.len() {
            return Err(RuntimeError::NoBuffer(b.to_string()));
        }
        Ok(view(&self.prog, &self.mem, b).to_vec())
    }
    fn step(&mut self, seed: u64, lr: f64) -> Result<(), RuntimeError> {
        run_step(&self.emu, &self.prog, &mut self.mem, seed, lr, |_, _| {});
        Ok(())
    }
}
