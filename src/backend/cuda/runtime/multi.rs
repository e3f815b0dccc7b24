//! Runs a program placed on several logical devices (`crate::backend::cuda::place::split`)
//! through cudarc: the paper's layout, each tower on its own GPU.
//!
//! Assumes a program that `crate::backend::cuda::proof::alias::check` accepts (checked first:
//! every launch and GEMM touches one device's memory, every mirror is
//! filled by a copy before it is read) and PTX compiled from its source,
//! and `gpus[d]`, the GPU ordinal of logical device `d` (one per logical
//! device; an ordinal may repeat: `--devices 0,0` runs both towers on GPU
//! 0, each on its own stream).
//!
//! What it holds: one context per distinct GPU (the PTX loaded once in
//! each); per logical device one allocation of
//! [`CudaProgram::device_bytes`] (every buffer of the device at its
//! [`CudaProgram::addr`]), one stream and one cuBLAS handle on that
//! stream. A launch or GEMM is issued on the stream of its device.
//!
//! Ordering: the commands of `crate::backend::cuda::place::streams` (each step on its device's
//! stream; a cross-device copy on the reader's stream, after an event its
//! source's stream records right after the source's producer, and before
//! the source's stream next writes over the source it waits for the copy).
//! Downloads wait for every stream.
//!
//! Errors, never panics: without the driver or cuBLAS (the loaders' panics
//! caught), [`RuntimeError::NoDevice`]; a GPU ordinal past the driver's
//! count, [`RuntimeError::BadDevice`]; a GPU without the free memory its
//! devices need together (or an allocation refused for want of memory),
//! [`RuntimeError::OutOfMemory`] wrapped in [`RuntimeError::OnDevice`]
//! naming the device and GPU; a program the checker refuses, or one placed
//! on another number of devices than GPUs given, before anything loads.
//!
//! Not checked on a GPU by the tests here (the machines they run on have
//! none); its logic is the emulated runner's (`tests/emu/multi.rs`).

use std::collections::BTreeMap;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::Arc;

use cudarc::cublas::CudaBlas;
use cudarc::driver::{CudaContext, CudaEvent, CudaFunction, CudaSlice, CudaStream, DevicePtr};

use crate::backend::cuda::place::streams::{Command, Event, commands};
use crate::backend::cuda::program::{CudaProgram, Step, scalar_words};
use crate::backend::cuda::runtime::device::Device;
use crate::backend::cuda::runtime::{RuntimeError, libraries_present};

fn driver<E: std::fmt::Debug>(e: E) -> RuntimeError {
    RuntimeError::Driver(format!("{e:?}"))
}

/// One GPU: its context and the program's kernels loaded there.
struct Gpu {
    ctx: Arc<CudaContext>,
    funcs: Vec<CudaFunction>,
}

/// One logical device.
struct Dev {
    /// Index into [`MultiExec::gpus`].
    gpu: usize,
    stream: Arc<CudaStream>,
    blas: CudaBlas,
    arena: CudaSlice<f32>,
    /// Device address of the arena's first byte.
    base: u64,
}

pub struct MultiExec {
    prog: CudaProgram,
    /// GPU ordinal of each logical device.
    ordinals: Vec<usize>,
    gpus: Vec<Gpu>,
    devs: Vec<Dev>,
    /// For each cross-device copy step: `ready` (source's context) and
    /// `done` (reader's context).
    events: Vec<Option<(CudaEvent, CudaEvent)>>,
    /// One training step's commands (`crate::backend::cuda::place::streams::commands`).
    cmds: Vec<Command>,
}

/// Runs `f`, turning a panic of the driver's loader into `NoDevice`.
fn guarded<T>(what: &str, f: impl FnOnce() -> T) -> Result<T, RuntimeError> {
    catch_unwind(AssertUnwindSafe(f))
        .map_err(|_| RuntimeError::NoDevice(format!("{what} panicked on load")))
}

impl MultiExec {
    /// Loads `ptx` (compiled from `prog.source`) on the GPUs `gpus` (logical
    /// device `d` on GPU `gpus[d]`) and allocates every device's buffers,
    /// zeroed.
    pub fn new(prog: CudaProgram, ptx: String, gpus: &[usize]) -> Result<Self, RuntimeError> {
        crate::backend::cuda::proof::alias::check(&prog)?;
        if gpus.len() != prog.devices() {
            return Err(RuntimeError::Gpus {
                devices: prog.devices(),
                gpus: gpus.len(),
            });
        }
        if !libraries_present() {
            return Err(RuntimeError::NoDevice(
                "the CUDA driver (libcuda) or cuBLAS cannot be loaded".into(),
            ));
        }
        let count = guarded("the CUDA driver", CudaContext::device_count)?
            .map_err(|e| RuntimeError::NoDevice(format!("{e:?}")))?;
        let count = usize::try_from(count).unwrap_or(0);
        if let Some(&gpu) = gpus.iter().find(|&&g| g >= count) {
            return Err(RuntimeError::BadDevice { gpu, count });
        }
        // One context per distinct GPU, the kernels loaded in each.
        let mut index: BTreeMap<usize, usize> = BTreeMap::new();
        let mut loaded: Vec<Gpu> = Vec::new();
        for (d, &ordinal) in gpus.iter().enumerate() {
            if index.contains_key(&ordinal) {
                continue;
            }
            let on = |e: RuntimeError| RuntimeError::OnDevice {
                device: d,
                gpu: ordinal,
                source: Box::new(e),
            };
            let ctx = guarded("the CUDA driver", || CudaContext::new(ordinal))?
                .map_err(|e| on(RuntimeError::NoDevice(format!("{e:?}"))))?;
            let module = ctx
                .load_module(cudarc::nvrtc::Ptx::from_src(ptx.clone()))
                .map_err(|e| on(driver(e)))?;
            let funcs = prog
                .kernels
                .iter()
                .map(|k| module.load_function(&k.name).map_err(|e| on(driver(e))))
                .collect::<Result<Vec<_>, _>>()?;
            index.insert(ordinal, loaded.len());
            loaded.push(Gpu { ctx, funcs });
        }
        // Memory: the devices on one GPU must fit its free memory together.
        for (&ordinal, &g) in &index {
            let need = (0..gpus.len())
                .filter(|&d| gpus[d] == ordinal)
                .fold(0u64, |t, d| t.saturating_add(prog.device_bytes(d)));
            let (free, _total) = loaded[g].ctx.mem_get_info().map_err(driver)?;
            if need > free as u64 {
                let device = gpus.iter().position(|&o| o == ordinal).unwrap_or(0);
                return Err(RuntimeError::OnDevice {
                    device,
                    gpu: ordinal,
                    source: Box::new(RuntimeError::OutOfMemory {
                        need,
                        free: free as u64,
                    }),
                });
            }
        }
        let mut devs = Vec::with_capacity(gpus.len());
        for (d, &ordinal) in gpus.iter().enumerate() {
            let on = |e: RuntimeError| RuntimeError::OnDevice {
                device: d,
                gpu: ordinal,
                source: Box::new(e),
            };
            let g = index[&ordinal];
            let ctx = &loaded[g].ctx;
            let stream = ctx.new_stream().map_err(|e| on(driver(e)))?;
            let blas =
                guarded("cuBLAS", || CudaBlas::new(stream.clone()))?.map_err(|e| on(driver(e)))?;
            let need = prog.device_bytes(d);
            let oom = |free: u64| on(RuntimeError::OutOfMemory { need, free });
            let free = ctx.mem_get_info().map_or(0, |m| m.0 as u64);
            let len = usize::try_from(need.div_ceil(4).max(1)).map_err(|_| oom(free))?;
            let arena = stream.alloc_zeros::<f32>(len).map_err(|e| {
                if e.0 == cudarc::driver::sys::cudaError_enum::CUDA_ERROR_OUT_OF_MEMORY {
                    oom(free)
                } else {
                    on(driver(e))
                }
            })?;
            let base = {
                let (p, _sync) = arena.device_ptr(&stream);
                p
            };
            devs.push(Dev {
                gpu: g,
                stream,
                blas,
                arena,
                base,
            });
        }
        let mut events = Vec::with_capacity(prog.steps.len());
        for st in &prog.steps {
            let d = prog.step_device(st).unwrap_or(0);
            let pair = match st {
                Step::Copy { src, .. } => {
                    let s = prog.device_of(*src).unwrap_or(d);
                    if s == d {
                        None
                    } else {
                        let ready = loaded[devs[s].gpu].ctx.new_event(None).map_err(driver)?;
                        let done = loaded[devs[d].gpu].ctx.new_event(None).map_err(driver)?;
                        Some((ready, done))
                    }
                }
                _ => None,
            };
            events.push(pair);
        }
        let cmds = commands(&prog);
        Ok(MultiExec {
            prog,
            ordinals: gpus.to_vec(),
            gpus: loaded,
            devs,
            events,
            cmds,
        })
    }

    pub fn program(&self) -> &CudaProgram {
        &self.prog
    }

    /// The GPU ordinal of each logical device.
    pub fn gpus(&self) -> &[usize] {
        &self.ordinals
    }

    /// Bytes of each logical device's allocation.
    pub fn device_bytes(&self) -> Vec<usize> {
        self.devs
            .iter()
            .map(|d| d.arena.len() * std::mem::size_of::<f32>())
            .collect()
    }

    /// Logical device of buffer `b` and its element offset there.
    fn at(&self, b: usize) -> Result<(usize, usize), RuntimeError> {
        let (Some(d), Some(a)) = (self.prog.device_of(b), self.prog.addr(b)) else {
            return Err(RuntimeError::NoBuffer(format!("b{b}")));
        };
        Ok((d, (a / 4) as usize))
    }

    /// Device address of buffer `b` (on its own device).
    fn ptr(&self, b: usize) -> u64 {
        let (d, off) = self.at(b).unwrap_or((0, 0));
        self.devs[d].base + (off * 4) as u64
    }

    pub fn upload(&mut self, b: usize, data: &[f32]) -> Result<(), RuntimeError> {
        crate::backend::cuda::runtime::device::check_fit(&self.prog, b, data)?;
        let (d, off) = self.at(b)?;
        let dev = &mut self.devs[d];
        let mut dst = dev.arena.slice_mut(off..off + data.len());
        dev.stream.memcpy_htod(data, &mut dst).map_err(driver)
    }

    /// Buffer `b` once every stream's work issued so far is done.
    pub fn download(&mut self, b: usize) -> Result<Vec<f32>, RuntimeError> {
        let (d, off) = self.at(b)?;
        self.synchronize()?;
        let len = self.prog.buffers[b].elems;
        let dev = &self.devs[d];
        dev.stream
            .clone_dtoh(&dev.arena.slice(off..off + len))
            .map_err(driver)
    }

    pub fn synchronize(&self) -> Result<(), RuntimeError> {
        for d in &self.devs {
            d.stream.synchronize().map_err(driver)?;
        }
        Ok(())
    }

    /// Issues one training step: the program's commands
    /// (`crate::backend::cuda::place::streams`), each step on its device's stream.
    pub fn step(&mut self, seed: u64, lr: f64) -> Result<(), RuntimeError> {
        // The scalars first, on their device's stream, ahead of the step.
        self.upload(self.prog.scalars, &scalar_words(seed, lr))?;
        for cmd in &self.cmds {
            match *cmd {
                Command::Run { step, stream } => self.run(step, stream)?,
                Command::Record { event, stream } => self
                    .event(event)?
                    .record(&self.devs[stream].stream)
                    .map_err(driver)?,
                Command::Wait { event, stream } => {
                    let e = self.event(event)?;
                    self.devs[stream].stream.wait(e).map_err(driver)?
                }
            }
        }
        Ok(())
    }

    fn event(&self, e: Event) -> Result<&CudaEvent, RuntimeError> {
        match self.events.get(e.copy) {
            Some(Some((ready, done))) => Ok(if e.done { done } else { ready }),
            _ => Err(RuntimeError::Driver(format!(
                "step {} is no cross-device copy",
                e.copy
            ))),
        }
    }

    /// Issues step `i` on the stream of device `d`.
    fn run(&self, i: usize, d: usize) -> Result<(), RuntimeError> {
        let dev = &self.devs[d];
        match &self.prog.steps[i] {
            Step::Launch(l) => {
                let func = &self.gpus[dev.gpu].funcs[l.kernel];
                // Every pointer lies in this device's arena (the checker
                // proved the step touches only its device's memory).
                crate::backend::cuda::runtime::issue::launch(&dev.stream, func, l, |b| {
                    self.ptr(b)
                })?;
            }
            Step::Gemm(g) => {
                // cuBLAS runs in the current context: the device's.
                dev.stream.context().bind_to_thread().map_err(driver)?;
                crate::backend::cuda::runtime::issue::gemm(&dev.blas, g, |b| self.ptr(b))?;
            }
            Step::Copy { src, dst, .. } => self.copy(*src, *dst)?,
        }
        Ok(())
    }

    /// Buffer `src` into mirror `dst` on the reader's (`dst`'s) stream; the
    /// events around it are the commands'.
    fn copy(&self, src: usize, dst: usize) -> Result<(), RuntimeError> {
        let (s, d) = (self.at(src)?.0, self.at(dst)?.0);
        let bytes = self.prog.buffers[src].bytes() as usize;
        let (from, to) = (&self.devs[s], &self.devs[d]);
        let (sp, dp) = (self.ptr(src), self.ptr(dst));
        to.stream.context().bind_to_thread().map_err(driver)?;
        // SAFETY: `src` lies in its device's arena and `dst` in the
        // reader's, disjoint, both `bytes` long; the source's producer
        // precedes the copy, and nothing writes the source before it has
        // been read (`crate::backend::cuda::place::streams`).
        unsafe {
            if from.gpu == to.gpu {
                cudarc::driver::result::memcpy_dtod_async(dp, sp, bytes, to.stream.cu_stream())
            } else {
                let (sctx, dctx) = (&self.gpus[from.gpu].ctx, &self.gpus[to.gpu].ctx);
                cudarc::driver::result::memcpy_peer_async(
                    dctx.cu_ctx(),
                    dp,
                    sctx.cu_ctx(),
                    sp,
                    bytes,
                    to.stream.cu_stream(),
                )
            }
        }
        .map_err(driver)
    }
}

impl Drop for MultiExec {
    /// Lets every stream finish before the arenas are freed (a copy may
    /// still read another device's arena).
    fn drop(&mut self) {
        let _ = self.synchronize();
    }
}

impl Device for MultiExec {
    fn program(&self) -> &CudaProgram {
        &self.prog
    }

    fn upload(&mut self, buffer: usize, data: &[f32]) -> Result<(), RuntimeError> {
        MultiExec::upload(self, buffer, data)
    }

    fn download(&mut self, buffer: usize) -> Result<Vec<f32>, RuntimeError> {
        MultiExec::download(self, buffer)
    }

    fn step(&mut self, seed: u64, lr: f64) -> Result<(), RuntimeError> {
        MultiExec::step(self, seed, lr)
    }

    fn synchronize(&mut self) -> Result<(), RuntimeError> {
        MultiExec::synchronize(self)
    }
}
