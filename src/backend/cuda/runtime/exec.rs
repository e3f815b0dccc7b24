//! Runs a [`CudaProgram`] on a GPU through cudarc: PTX loaded once, one
//! device allocation of the program's [`CudaProgram::bytes`] (the memory
//! plan's arenas, then the workspace) with every buffer at its planned
//! address (an [`Arg::At`](crate::backend::cuda::program::Arg::At) argument that address plus its element offset),
//! the launch list issued on one stream, GEMM steps as `cublasSgemm`
//! (with their `beta`: a chunked weight gradient accumulates).
//!
//! Replay. No launch argument changes between steps (the seed and the
//! learning rate are read from the program's scalars buffer), so after
//! [`WARM_STEPS`] steps issued launch by launch (modules load, cuBLAS picks
//! its kernels) the step is captured once as a CUDA graph and every later
//! step replays it: one driver call instead of hundreds. If capture fails
//! the runtime keeps issuing launches and says why in [`CudaExec::replay`].
//! [`CudaExec::set_graph`]`(false)` turns replay off (`--no-graph`).
//!
//! Inputs. [`CudaExec::stage`] uploads a step's inputs through page-locked
//! memory on a copy stream while the previous step runs (`crate::backend::cuda::runtime::staging`);
//! every step's scalars go that way too, so issuing a step never waits for
//! the device. [`CudaExec::upload`] is the plain synchronous copy (weights
//! at start, a checkpoint's state).
//!
//! The driver and cuBLAS are loaded at run time; on a
//! machine without them [`CudaExec::new`] returns [`RuntimeError::NoDevice`]
//! (the loaders' panics are caught), never panics. Before allocating it
//! asks the driver for free memory: a plan that does not fit (or an
//! allocation the driver refuses for want of memory) is
//! [`RuntimeError::OutOfMemory`], naming the bytes needed and free. A
//! program `alias::check` rejects is refused before anything is loaded.

use std::panic::{AssertUnwindSafe, catch_unwind};

use crate::backend::cuda::runtime::libraries_present;
use std::sync::Arc;

use cudarc::cublas::CudaBlas;
use cudarc::driver::{CudaContext, CudaFunction, CudaGraph, CudaSlice, CudaStream, DevicePtr, sys};

use crate::backend::cuda::program::{CudaProgram, Step, scalar_words};
use crate::backend::cuda::runtime::RuntimeError;
use crate::backend::cuda::runtime::device::Device;
use crate::backend::cuda::runtime::staging::Staging;

/// Steps issued launch by launch before the step is captured as a graph.
pub const WARM_STEPS: u32 = 2;

/// cuBLAS's workspace, set explicitly so that a captured GEMM never
/// allocates (32 MiB, NVIDIA's figure for Hopper).
const BLAS_WORKSPACE: usize = 32 << 20;

/// How steps are issued.
enum Replay {
    /// Launch by launch, always (`set_graph(false)`).
    Off,
    /// Launch by launch for this many more steps, then captured.
    Warm(u32),
    /// Replaying the captured step.
    Graph(CudaGraph),
    /// Capture failed (the reason); launch by launch.
    Failed(String),
}

fn driver<E: std::fmt::Debug>(e: E) -> RuntimeError {
    RuntimeError::Driver(format!("{e:?}"))
}

pub struct CudaExec {
    prog: CudaProgram,
    _ctx: Arc<CudaContext>,
    stream: Arc<CudaStream>,
    blas: CudaBlas,
    _blas_ws: CudaSlice<u8>,
    funcs: Vec<CudaFunction>,
    arena: CudaSlice<f32>,
    offsets: Vec<usize>,
    base: u64,
    staging: Staging,
    replay: Replay,
}

impl CudaExec {
    /// Loads `ptx` (compiled from `prog.source`) on device 0 and allocates
    /// every buffer, zeroed.
    pub fn new(prog: CudaProgram, ptx: String) -> Result<Self, RuntimeError> {
        // Every step's kernel and buffers exist and lie in the allocation.
        crate::backend::cuda::proof::alias::check(&prog)?;
        if prog.devices() > 1 {
            return Err(RuntimeError::Placed(prog.devices()));
        }
        if !libraries_present() {
            return Err(RuntimeError::NoDevice(
                "the CUDA driver (libcuda) or cuBLAS cannot be loaded".into(),
            ));
        }
        let ctx = catch_unwind(|| CudaContext::new(0))
            .map_err(|_| RuntimeError::NoDevice("the CUDA driver panicked on load".into()))?
            .map_err(|e| RuntimeError::NoDevice(format!("{e:?}")))?;
        // The step's order is explicit (one compute stream, the staging
        // copies ordered by events); cudarc's per-slice tracking would
        // make the copy stream wait for whole steps.
        // SAFETY: every cross-stream use below is ordered by an event.
        unsafe { ctx.disable_event_tracking() };
        // Not the legacy default stream: that one cannot be captured.
        let stream = ctx.new_stream().map_err(driver)?;
        let blas = catch_unwind(AssertUnwindSafe(|| CudaBlas::new(stream.clone())))
            .map_err(|_| RuntimeError::NoDevice("cuBLAS panicked on load".into()))?
            .map_err(driver)?;
        let module = ctx
            .load_module(cudarc::nvrtc::Ptx::from_src(ptx))
            .map_err(driver)?;
        let funcs = prog
            .kernels
            .iter()
            .map(|k| module.load_function(&k.name).map_err(driver))
            .collect::<Result<Vec<_>, _>>()?;
        // Element offsets (every planned offset is a multiple of 64 bytes).
        let offsets: Vec<usize> = (0..prog.buffers.len())
            .map(|b| (prog.addr(b).unwrap_or(0) / 4) as usize)
            .collect();
        let need = prog.bytes().saturating_add(BLAS_WORKSPACE as u64);
        let (free, _total) = ctx.mem_get_info().map_err(driver)?;
        if need > free as u64 {
            return Err(RuntimeError::OutOfMemory {
                need,
                free: free as u64,
            });
        }
        let total =
            usize::try_from(need.div_ceil(4).max(1)).map_err(|_| RuntimeError::OutOfMemory {
                need,
                free: free as u64,
            })?;
        let arena = stream.alloc_zeros::<f32>(total).map_err(|e| {
            if e.0 == cudarc::driver::sys::cudaError_enum::CUDA_ERROR_OUT_OF_MEMORY {
                RuntimeError::OutOfMemory {
                    need,
                    free: free as u64,
                }
            } else {
                driver(e)
            }
        })?;
        let base = {
            let (p, _sync) = arena.device_ptr(&stream);
            p
        };
        let blas_ws = stream.alloc_zeros::<u8>(BLAS_WORKSPACE).map_err(driver)?;
        {
            let (p, _sync) = blas_ws.device_ptr(&stream);
            // SAFETY: the workspace lives as long as the handle (both in
            // the returned value) and is used only on the handle's stream.
            unsafe {
                cudarc::cublas::sys::cublasSetWorkspace_v2(
                    *blas.handle(),
                    p as *mut std::ffi::c_void,
                    BLAS_WORKSPACE,
                )
            }
            .result()
            .map_err(driver)?;
        }
        let staging = Staging::new(&ctx)?;
        Ok(CudaExec {
            prog,
            _ctx: ctx,
            stream,
            blas,
            _blas_ws: blas_ws,
            funcs,
            arena,
            offsets,
            base,
            staging,
            replay: Replay::Warm(WARM_STEPS),
        })
    }

    /// Whether steps are captured as a CUDA graph and replayed (the
    /// default); `false` issues every launch of every step.
    pub fn set_graph(&mut self, on: bool) {
        self.replay = if on {
            Replay::Warm(WARM_STEPS)
        } else {
            Replay::Off
        };
    }

    /// How steps are issued now, in words (for reports).
    pub fn replay(&self) -> String {
        match &self.replay {
            Replay::Off => "launch by launch (graph replay off)".into(),
            Replay::Warm(n) => format!("launch by launch, captured after {n} more steps"),
            Replay::Graph(_) => "replaying the captured step (CUDA graph)".into(),
            Replay::Failed(why) => format!("launch by launch: capture failed: {why}"),
        }
    }

    /// Bytes of the one device allocation holding every buffer: the planned
    /// arenas and the workspace (cuBLAS's own workspace aside).
    pub fn device_bytes(&self) -> usize {
        self.offsets
            .last()
            .map_or(0, |_| self.arena.len() * std::mem::size_of::<f32>())
    }

    /// Bytes of device memory beside the program's allocation: cuBLAS's
    /// workspace and the staging ranges of the staged inputs.
    pub fn extra_bytes(&self) -> usize {
        BLAS_WORKSPACE + self.staging.device_bytes()
    }

    pub fn program(&self) -> &CudaProgram {
        &self.prog
    }

    fn ptr(&self, b: usize) -> u64 {
        self.base + (self.offsets[b] * 4) as u64
    }

    /// Buffer `b`'s element offset, if `data` fits it exactly.
    fn fits(&self, b: usize, data: &[f32]) -> Result<usize, RuntimeError> {
        crate::backend::cuda::runtime::device::check_fit(&self.prog, b, data)?;
        self.offsets
            .get(b)
            .copied()
            .ok_or_else(|| RuntimeError::NoBuffer(format!("b{b}")))
    }

    /// Copies `data` into buffer `b` (u32 buffers take their values' bits),
    /// in order with the steps issued so far. Not for a buffer staged and
    /// not yet taken by a step.
    pub fn upload(&mut self, b: usize, data: &[f32]) -> Result<(), RuntimeError> {
        let off = self.fits(b, data)?;
        let mut dst = self.arena.slice_mut(off..off + data.len());
        self.stream.memcpy_htod(data, &mut dst).map_err(driver)
    }

    /// Stages `data` for buffer `b`: the next step reads it. Returns without
    /// waiting for the steps issued so far (see `crate::backend::cuda::runtime::staging`).
    pub fn stage(&mut self, b: usize, data: &[f32]) -> Result<(), RuntimeError> {
        self.fits(b, data)?;
        self.staging.stage(b, data)
    }

    pub fn upload_by_name(&mut self, name: &str, data: &[f32]) -> Result<(), RuntimeError> {
        let b = self
            .prog
            .buffer(name)
            .ok_or_else(|| RuntimeError::NoBuffer(name.into()))?;
        self.upload(b, data)
    }

    pub fn download(&self, b: usize) -> Result<Vec<f32>, RuntimeError> {
        let (Some(d), Some(&off)) = (self.prog.buffers.get(b), self.offsets.get(b)) else {
            return Err(RuntimeError::NoBuffer(format!("b{b}")));
        };
        let len = d.elems;
        self.stream
            .clone_dtoh(&self.arena.slice(off..off + len))
            .map_err(driver)
    }

    /// Issues one training step (forward, backward, update) with dropout
    /// seed `seed` and learning rate `lr`: the staged inputs and the
    /// scalars are taken, then the launch list is issued or replayed.
    pub fn step(&mut self, seed: u64, lr: f64) -> Result<(), RuntimeError> {
        self.take_inputs(seed, lr)?;
        match std::mem::replace(&mut self.replay, Replay::Off) {
            Replay::Graph(g) => {
                let r = g.launch().map_err(driver);
                self.replay = Replay::Graph(g);
                r
            }
            Replay::Warm(0) => {
                match self.capture() {
                    Ok(g) => {
                        g.launch().map_err(driver)?;
                        self.replay = Replay::Graph(g);
                    }
                    Err(why) => {
                        self.replay = Replay::Failed(why);
                        self.issue()?;
                    }
                }
                Ok(())
            }
            Replay::Warm(n) => {
                self.replay = Replay::Warm(n - 1);
                self.issue()
            }
            other => {
                self.replay = other;
                self.issue()
            }
        }
    }

    /// Stages the step's scalars and moves every staged input into its
    /// buffer, on the compute stream, ahead of the step's launches.
    fn take_inputs(&mut self, seed: u64, lr: f64) -> Result<(), RuntimeError> {
        self.staging
            .stage(self.prog.scalars, &scalar_words(seed, lr))?;
        let (base, offsets) = (self.base, &self.offsets);
        self.staging
            .take(&self.stream, |b| base + (offsets[b] * 4) as u64)
    }

    /// Records the launch list as a graph (nothing runs until it is
    /// launched). The stream leaves capture mode whatever happens.
    fn capture(&mut self) -> Result<CudaGraph, String> {
        self.stream
            .begin_capture(sys::CUstreamCaptureMode::CU_STREAM_CAPTURE_MODE_THREAD_LOCAL)
            .map_err(|e| format!("{e:?}"))?;
        let issued = self.issue();
        let graph = self
            .stream
            .end_capture(sys::CUgraphInstantiate_flags(0))
            .map_err(|e| format!("{e:?}"));
        issued.map_err(|e| e.to_string())?;
        graph?.ok_or_else(|| "the capture recorded nothing".to_string())
    }

    /// Issues the launch list once, launch by launch.
    fn issue(&mut self) -> Result<(), RuntimeError> {
        self.issue_with(|_| Ok(()))
    }

    /// Runs one step launch by launch with a timing event after each, and
    /// returns each launch's or GEMM's device time in milliseconds, in the
    /// order of [`CudaProgram::steps`] (graph replay is not used, and the
    /// events add a little time of their own).
    pub fn profile_step(&mut self, seed: u64, lr: f64) -> Result<Vec<f64>, RuntimeError> {
        self.take_inputs(seed, lr)?;
        let timed = Some(sys::CUevent_flags::CU_EVENT_DEFAULT);
        let events = (0..=self.prog.steps.len())
            .map(|_| self._ctx.new_event(timed).map_err(driver))
            .collect::<Result<Vec<_>, _>>()?;
        events[0].record(&self.stream).map_err(driver)?;
        let stream = self.stream.clone();
        self.issue_with(|i| events[i + 1].record(&stream).map_err(driver))?;
        self.synchronize()?;
        events
            .windows(2)
            .map(|w| w[0].elapsed_ms(&w[1]).map(f64::from).map_err(driver))
            .collect()
    }

    /// Issues the launch list once, calling `after(i)` after step `i`.
    fn issue_with(
        &self,
        mut after: impl FnMut(usize) -> Result<(), RuntimeError>,
    ) -> Result<(), RuntimeError> {
        for (i, st) in self.prog.steps.iter().enumerate() {
            match st {
                Step::Launch(l) => crate::backend::cuda::runtime::issue::launch(
                    &self.stream,
                    &self.funcs[l.kernel],
                    l,
                    |b| self.ptr(b),
                )?,
                Step::Gemm(g) => {
                    crate::backend::cuda::runtime::issue::gemm(&self.blas, g, |b| self.ptr(b))?
                }
                Step::Copy { src, dst, .. } => {
                    // A mirror in the same allocation (a one-device placement).
                    let bytes = self.prog.buffers[*src].bytes() as usize;
                    let cu = self.stream.cu_stream();
                    // SAFETY: both buffers lie in the arena, disjoint, of equal size.
                    unsafe {
                        cudarc::driver::result::memcpy_dtod_async(
                            self.ptr(*dst),
                            self.ptr(*src),
                            bytes,
                            cu,
                        )
                    }
                    .map_err(driver)?;
                }
            }
            after(i)?;
        }
        Ok(())
    }

    pub fn synchronize(&self) -> Result<(), RuntimeError> {
        self.stream.synchronize().map_err(driver)
    }
}

impl Drop for CudaExec {
    /// Memory is freed only after the steps issued have finished with it.
    fn drop(&mut self) {
        let _ = self.stream.synchronize();
    }
}

impl Device for CudaExec {
    fn program(&self) -> &CudaProgram {
        CudaExec::program(self)
    }

    fn upload(&mut self, buffer: usize, data: &[f32]) -> Result<(), RuntimeError> {
        CudaExec::upload(self, buffer, data)
    }

    fn stage(&mut self, buffer: usize, data: &[f32]) -> Result<(), RuntimeError> {
        CudaExec::stage(self, buffer, data)
    }

    fn download(&mut self, buffer: usize) -> Result<Vec<f32>, RuntimeError> {
        self.synchronize()?;
        CudaExec::download(self, buffer)
    }

    fn step(&mut self, seed: u64, lr: f64) -> Result<(), RuntimeError> {
        CudaExec::step(self, seed, lr)
    }

    fn synchronize(&mut self) -> Result<(), RuntimeError> {
        CudaExec::synchronize(self)
    }
}
