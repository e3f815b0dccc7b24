//! The runtime's error type, and the check that its libraries can be loaded.

use std::panic::catch_unwind;

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
    Layout(#[from] crate::backend::cuda::proof::alias::AliasError),
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
