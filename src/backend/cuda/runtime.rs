//! Runs a [`CudaProgram`] on a GPU through cudarc: PTX loaded once, one
//! device allocation of the program's [`CudaProgram::bytes`] (the memory
//! plan's arenas, then the workspace) with every buffer at its planned
//! address (an [`Arg::At`] argument that address plus its element offset),
//! the launch list replayed on one stream, GEMM steps as `cublasSgemm`
//! (with their `beta`: a chunked weight gradient accumulates). The driver and cuBLAS are loaded at run time; on a
//! machine without them [`CudaExec::new`] returns [`RuntimeError::NoDevice`]
//! (the loaders' panics are caught), never panics. Before allocating it
//! asks the driver for free memory: a plan that does not fit (or an
//! allocation the driver refuses for want of memory) is
//! [`RuntimeError::OutOfMemory`], naming the bytes needed and free. A
//! program `alias::check` rejects is refused before anything is loaded.

use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::Arc;

use cudarc::cublas::{CudaBlas, sys::cublasOperation_t};
use cudarc::driver::{
    CudaContext, CudaFunction, CudaSlice, CudaStream, DevicePtr, LaunchConfig, PushKernelArg,
};

use super::program::{Arg, CudaProgram, Step};

#[derive(Debug, thiserror::Error)]
pub enum RuntimeError {
    #[error("no CUDA device is usable here: {0}")]
    NoDevice(String),
    #[error("CUDA error: {0}")]
    Driver(String),
    #[error("`{0}` is not a buffer of the program")]
    NoBuffer(String),
    #[error("{what} has {got} elements, the program's buffer {want}")]
    Size {
        what: String,
        got: usize,
        want: usize,
    },
    #[error(
        "out of device memory: the step's memory plan needs {need} bytes ({} MiB), the device has {free} bytes ({} MiB) free",
        need >> 20,
        free >> 20
    )]
    OutOfMemory { need: u64, free: u64 },
    #[error("the program cannot run as laid out: {0}")]
    Layout(#[from] super::alias::AliasError),
    #[error("the program is placed on {0} devices: run it with `multi::MultiExec`")]
    Placed(usize),
    #[error("the program is placed on {devices} device(s) and {gpus} GPU(s) were given for them")]
    Gpus { devices: usize, gpus: usize },
    #[error("GPU {gpu} does not exist: the CUDA driver sees {count} GPU(s), numbered from 0")]
    BadDevice { gpu: usize, count: usize },
    #[error("device {device} (GPU {gpu}): {source}")]
    OnDevice {
        device: usize,
        gpu: usize,
        source: Box<RuntimeError>,
    },
}

fn driver<E: std::fmt::Debug>(e: E) -> RuntimeError {
    RuntimeError::Driver(format!("{e:?}"))
}

pub struct CudaExec {
    prog: CudaProgram,
    _ctx: Arc<CudaContext>,
    stream: Arc<CudaStream>,
    blas: CudaBlas,
    funcs: Vec<CudaFunction>,
    arena: CudaSlice<f32>,
    offsets: Vec<usize>,
    base: u64,
}

/// Whether the CUDA driver and cuBLAS libraries can be loaded.
pub fn libraries_present() -> bool {
    catch_unwind(|| {
        // SAFETY: only loads shared libraries by name.
        unsafe {
            cudarc::driver::sys::is_culib_present() && cudarc::cublas::sys::is_culib_present()
        }
    })
    .unwrap_or(false)
}

impl CudaExec {
    /// Loads `ptx` (compiled from `prog.source`) on device 0 and allocates
    /// every buffer, zeroed.
    pub fn new(prog: CudaProgram, ptx: String) -> Result<Self, RuntimeError> {
        // Every step's kernel and buffers exist and lie in the allocation.
        super::alias::check(&prog)?;
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
        let stream = ctx.default_stream();
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
        let need = prog.bytes();
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
        Ok(CudaExec {
            prog,
            _ctx: ctx,
            stream,
            blas,
            funcs,
            arena,
            offsets,
            base,
        })
    }

    /// Bytes of the one device allocation holding every buffer: the planned
    /// arenas and the workspace (cuBLAS's own workspace aside).
    pub fn device_bytes(&self) -> usize {
        self.offsets
            .last()
            .map_or(0, |_| self.arena.len() * std::mem::size_of::<f32>())
    }

    pub fn program(&self) -> &CudaProgram {
        &self.prog
    }

    fn ptr(&self, b: usize) -> u64 {
        self.base + (self.offsets[b] * 4) as u64
    }

    /// Copies `data` into buffer `b` (u32 buffers take their values' bits).
    pub fn upload(&mut self, b: usize, data: &[f32]) -> Result<(), RuntimeError> {
        let (Some(d), Some(&off)) = (self.prog.buffers.get(b), self.offsets.get(b)) else {
            return Err(RuntimeError::NoBuffer(format!("b{b}")));
        };
        let want = d.elems;
        if data.len() != want {
            return Err(RuntimeError::Size {
                what: d.name.clone(),
                got: data.len(),
                want,
            });
        }
        let mut dst = self.arena.slice_mut(off..off + want);
        self.stream.memcpy_htod(data, &mut dst).map_err(driver)
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

    /// Replays the launch list once: forward, backward, update.
    pub fn step(&mut self, seed: u64, lr: f64) -> Result<(), RuntimeError> {
        let op = |t: bool| {
            if t {
                cublasOperation_t::CUBLAS_OP_T
            } else {
                cublasOperation_t::CUBLAS_OP_N
            }
        };
        for st in &self.prog.steps {
            match st {
                Step::Launch(l) => {
                    let ptrs: Vec<u64> = l
                        .args
                        .iter()
                        .map(|a| match a {
                            Arg::Buf(b) => self.ptr(*b),
                            Arg::At(b, at) => self.ptr(*b) + (*at * 4) as u64,
                            Arg::Seed => seed,
                            Arg::Lr => 0,
                        })
                        .collect();
                    let mut b = self.stream.launch_builder(&self.funcs[l.kernel]);
                    for (a, p) in l.args.iter().zip(&ptrs) {
                        match a {
                            Arg::Lr => b.arg(&lr),
                            _ => b.arg(p),
                        };
                    }
                    let cfg = LaunchConfig {
                        grid_dim: (l.grid, 1, 1),
                        block_dim: (l.block, 1, 1),
                        shared_mem_bytes: 0,
                    };
                    // SAFETY: arguments match the kernel's parameter list
                    // (pointers are 8-byte device addresses inside the arena,
                    // sized by the program).
                    unsafe { b.launch(cfg) }.map_err(driver)?;
                }
                Step::Gemm(g) => {
                    // SAFETY: extents are checked against the buffers by the
                    // launch-list tests; all pointers lie in the arena.
                    unsafe {
                        cudarc::cublas::result::sgemm(
                            *self.blas.handle(),
                            op(g.transa),
                            op(g.transb),
                            g.m as i32,
                            g.n as i32,
                            g.k as i32,
                            &g.alpha,
                            self.ptr(g.a) as *const f32,
                            g.lda as i32,
                            self.ptr(g.b) as *const f32,
                            g.ldb as i32,
                            &g.beta,
                            self.ptr(g.c) as *mut f32,
                            g.ldc as i32,
                        )
                    }
                    .map_err(driver)?;
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
        }
        Ok(())
    }

    pub fn synchronize(&self) -> Result<(), RuntimeError> {
        self.stream.synchronize().map_err(driver)
    }
}
