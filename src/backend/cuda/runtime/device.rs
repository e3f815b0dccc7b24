//! The narrow interface through which training drives a device that holds
//! a [`CudaProgram`]'s buffers: copy a buffer in, copy it out, replay the
//! step. [`runtime::CudaExec`](crate::backend::cuda::runtime::exec::CudaExec) implements it on a
//! GPU; the tests implement it with the CPU emulation harness, so training
//! through this interface is checked on machines without a GPU.
//!
//! Assumes buffer indices come from the program the device was built for.
//! Guarantees: [`Device::download`] returns the buffer as every step issued
//! before it left it (it waits for the device).

use crate::backend::cuda::program::CudaProgram;
use crate::backend::cuda::runtime::RuntimeError;

/// Checks that `data` fits buffer `b` of `prog` exactly (what every
/// [`Device::upload`] and [`Device::stage`] requires).
pub fn check_fit(prog: &CudaProgram, b: usize, data: &[f32]) -> Result<(), RuntimeError> {
    let Some(d) = prog.buffers.get(b) else {
        return Err(RuntimeError::NoBuffer(format!("b{b}")));
    };
    if data.len() != d.elems {
        return Err(RuntimeError::Size {
            what: d.name.clone(),
            got: data.len(),
            want: d.elems,
        });
    }
    Ok(())
}

pub trait Device {
    /// The program whose buffers and steps the device holds.
    fn program(&self) -> &CudaProgram;
    /// Copies `data` (exactly the buffer's length) into buffer `buffer`;
    /// a u32 buffer takes the bits of the values.
    fn upload(&mut self, buffer: usize, data: &[f32]) -> Result<(), RuntimeError>;
    /// Copies `data` into buffer `buffer` for the next step to read,
    /// possibly while the steps issued so far still run (a step's inputs:
    /// the batch, the labels, the raw batch and draws). Until that step is
    /// issued, the buffer's contents are unspecified.
    fn stage(&mut self, buffer: usize, data: &[f32]) -> Result<(), RuntimeError> {
        self.upload(buffer, data)
    }
    /// The contents of buffer `buffer` once the steps issued so far are done.
    fn download(&mut self, buffer: usize) -> Result<Vec<f32>, RuntimeError>;
    /// Issues one training step with dropout seed `seed` and rate `lr`.
    fn step(&mut self, seed: u64, lr: f64) -> Result<(), RuntimeError>;
    /// Waits until the steps issued so far are done (a device that runs
    /// them as they are issued has nothing to wait for).
    fn synchronize(&mut self) -> Result<(), RuntimeError> {
        Ok(())
    }
}
