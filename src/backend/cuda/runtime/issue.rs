//! Issuing one step of a program on a stream: a kernel launch with every
//! argument a device address, or a cuBLAS `sgemm` in the GEMM's own
//! column-major terms. Shared by the one-device runtime (`runtime`) and
//! the placed one (`multi`).
//!
//! Assumes `addr(b)` gives buffer `b`'s device address in the memory the
//! stream's device holds, and that the program passed `alias::check`
//! (every pointer and extent inside its buffer). Guarantees: a driver or
//! cuBLAS failure is an error value, never a panic.

use cudarc::cublas::{CudaBlas, sys::cublasOperation_t};
use cudarc::driver::{CudaFunction, CudaStream, LaunchConfig, PushKernelArg};

use crate::backend::cuda::program::{Arg, Gemm, Launch};
use crate::backend::cuda::runtime::RuntimeError;

fn driver<E: std::fmt::Debug>(e: E) -> RuntimeError {
    RuntimeError::Driver(format!("{e:?}"))
}

/// Launches `l` (a kernel of `func`) on `stream`.
pub(super) fn launch(
    stream: &CudaStream,
    func: &CudaFunction,
    l: &Launch,
    addr: impl Fn(usize) -> u64,
) -> Result<(), RuntimeError> {
    let ptrs: Vec<u64> = l
        .args
        .iter()
        .map(|a| match *a {
            Arg::Buf(b) => addr(b),
            Arg::At(b, at) => addr(b) + (at * 4) as u64,
        })
        .collect();
    let mut b = stream.launch_builder(func);
    for p in &ptrs {
        b.arg(p);
    }
    let cfg = LaunchConfig {
        grid_dim: (l.grid, 1, 1),
        block_dim: (l.block, 1, 1),
        shared_mem_bytes: 0,
    };
    // SAFETY: arguments match the kernel's parameter list (8-byte device
    // addresses of the program's buffers, sized by the program).
    unsafe { b.launch(cfg) }.map_err(driver)?;
    Ok(())
}

/// Issues `g` through `blas` (on the stream the handle is bound to).
pub(super) fn gemm(
    blas: &CudaBlas,
    g: &Gemm,
    addr: impl Fn(usize) -> u64,
) -> Result<(), RuntimeError> {
    let op = |t: bool| {
        if t {
            cublasOperation_t::CUBLAS_OP_T
        } else {
            cublasOperation_t::CUBLAS_OP_N
        }
    };
    // SAFETY: all pointers lie in the device's memory, with the extents
    // the checker and the launch-list tests check.
    unsafe {
        cudarc::cublas::result::sgemm(
            *blas.handle(),
            op(g.transa),
            op(g.transb),
            g.m as i32,
            g.n as i32,
            g.k as i32,
            &g.alpha,
            (addr(g.a) + 4 * g.a_at as u64) as *const f32,
            g.lda as i32,
            (addr(g.b) + 4 * g.b_at as u64) as *const f32,
            g.ldb as i32,
            &g.beta,
            (addr(g.c) + 4 * g.c_at as u64) as *mut f32,
            g.ldc as i32,
        )
    }
    .map_err(driver)
}
