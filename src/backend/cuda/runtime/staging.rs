//! Inputs staged while the previous step runs: the per-step uploads (the
//! image batch, the labels, the augmentation kernel's raw batch and
//! draws, the step's scalars) go through page-locked host memory and a
//! copy stream into a staging copy on the device, so neither the host nor
//! the compute stream waits for them.
//!
//! Per staged buffer: two page-locked host slots used in turn, one device
//! staging range, and three events. [`Staging::stage`] waits (on the host)
//! until the slot's copy of two stages ago has finished, fills the slot,
//! makes the copy stream wait until the previous step has taken the
//! staging range (`taken`), copies host → staging on the copy stream and
//! records `ready`. [`Staging::take`], issued on the compute stream before
//! a step's launches, waits for `ready`, copies staging → the program's
//! buffer (device to device, microseconds) and records `taken`.
//!
//! Assumes one thread drives the runtime, the compute stream is the one
//! the step's launches use, and event tracking is off in the context (the
//! ordering here is explicit). Guarantees: a step issued after
//! [`Staging::take`] reads exactly the data of the latest
//! [`Staging::stage`] of each buffer; a host slot is never written while a
//! copy from it may still run; the copy into the staging range never
//! overlaps the copy out of it.

use std::collections::BTreeMap;
use std::sync::Arc;

use cudarc::driver::{
    CudaContext, CudaEvent, CudaSlice, CudaStream, DevicePtr, PinnedHostSlice, result, sys,
};

fn driver<E: std::fmt::Debug>(e: E) -> crate::backend::cuda::runtime::RuntimeError {
    crate::backend::cuda::runtime::RuntimeError::Driver(format!("{e:?}"))
}

struct Slot {
    host: [PinnedHostSlice<f32>; 2],
    /// The copy out of `host[i]` has finished once this is reached.
    copied: [CudaEvent; 2],
    next: usize,
    device: CudaSlice<f32>,
    device_ptr: u64,
    /// The staging range holds data not yet taken.
    pending: bool,
    ready: CudaEvent,
    taken: CudaEvent,
}

/// The staged inputs of one program on one device.
pub struct Staging {
    ctx: Arc<CudaContext>,
    copy: Arc<CudaStream>,
    slots: BTreeMap<usize, Slot>,
}

impl Staging {
    pub fn new(
        ctx: &Arc<CudaContext>,
    ) -> Result<Self, crate::backend::cuda::runtime::RuntimeError> {
        Ok(Staging {
            ctx: ctx.clone(),
            copy: ctx.new_stream().map_err(driver)?,
            slots: BTreeMap::new(),
        })
    }

    /// Bytes of device memory the staging ranges take.
    pub fn device_bytes(&self) -> usize {
        self.slots.values().map(|s| s.device.len() * 4).sum()
    }

    fn slot(
        &mut self,
        buffer: usize,
        len: usize,
    ) -> Result<&mut Slot, crate::backend::cuda::runtime::RuntimeError> {
        if !self.slots.contains_key(&buffer) {
            let ev = || {
                self.ctx
                    .new_event(Some(sys::CUevent_flags::CU_EVENT_BLOCKING_SYNC))
                    .map_err(driver)
            };
            // SAFETY: the slots are written in full before any copy reads them.
            let host = unsafe {
                [
                    self.ctx.alloc_pinned::<f32>(len).map_err(driver)?,
                    self.ctx.alloc_pinned::<f32>(len).map_err(driver)?,
                ]
            };
            let device = self.copy.alloc_zeros::<f32>(len).map_err(driver)?;
            let device_ptr = {
                let (p, _sync) = device.device_ptr(&self.copy);
                p
            };
            let slot = Slot {
                host,
                copied: [ev()?, ev()?],
                next: 0,
                device,
                device_ptr,
                pending: false,
                ready: ev()?,
                taken: ev()?,
            };
            // Nothing to wait for yet: record the events on the idle stream.
            for e in slot.copied.iter().chain([&slot.taken, &slot.ready]) {
                e.record(&self.copy).map_err(driver)?;
            }
            self.slots.insert(buffer, slot);
        }
        let slot = self
            .slots
            .get_mut(&buffer)
            .ok_or_else(|| driver("no staging slot"))?;
        if slot.device.len() != len {
            return Err(driver(format!("staged buffer b{buffer} changed length")));
        }
        Ok(slot)
    }

    /// Stages `data` for buffer `buffer`: the next [`take`](Self::take)
    /// delivers it. Returns without waiting for the device, unless the
    /// host slot's copy of two stages ago is still running.
    pub fn stage(
        &mut self,
        buffer: usize,
        data: &[f32],
    ) -> Result<(), crate::backend::cuda::runtime::RuntimeError> {
        let copy = self.copy.clone();
        let slot = self.slot(buffer, data.len())?;
        let i = slot.next;
        slot.next ^= 1;
        slot.copied[i].synchronize().map_err(driver)?;
        let host = slot.host[i].as_mut_slice().map_err(driver)?;
        host.copy_from_slice(data);
        copy.wait(&slot.taken).map_err(driver)?;
        // SAFETY: the destination is this slot's staging range (`data.len()`
        // floats), the source a page-locked slot no other copy uses now.
        unsafe { result::memcpy_htod_async(slot.device_ptr, &*host, copy.cu_stream()) }
            .map_err(driver)?;
        slot.copied[i].record(&copy).map_err(driver)?;
        slot.ready.record(&copy).map_err(driver)?;
        slot.pending = true;
        Ok(())
    }

    /// On `stream` (the compute stream): for every buffer staged since the
    /// last take, waits for its copy and moves it to `dst(buffer)` (a
    /// device address of at least the staged length).
    pub fn take(
        &mut self,
        stream: &CudaStream,
        dst: impl Fn(usize) -> u64,
    ) -> Result<(), crate::backend::cuda::runtime::RuntimeError> {
        for (&b, slot) in self.slots.iter_mut().filter(|(_, s)| s.pending) {
            stream.wait(&slot.ready).map_err(driver)?;
            // SAFETY: both ranges are `slot.device.len()` floats: the
            // staging range, and the program's buffer `b` of that length
            // (checked by the caller before staging).
            unsafe {
                result::memcpy_dtod_async(
                    dst(b),
                    slot.device_ptr,
                    slot.device.len() * 4,
                    stream.cu_stream(),
                )
            }
            .map_err(driver)?;
            slot.taken.record(stream).map_err(driver)?;
            slot.pending = false;
        }
        Ok(())
    }
}

impl Drop for Staging {
    /// The host slots are freed after their last copy has finished.
    fn drop(&mut self) {
        let _ = self.copy.synchronize();
    }
}
