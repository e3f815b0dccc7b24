//! Compiling generated source to PTX with NVRTC, loaded dynamically at run
//! time (no CUDA toolkit at build time). A missing library is an error
//! value, never a panic: the loader's panic is caught at the first load.

use std::panic::{AssertUnwindSafe, catch_unwind};

#[derive(Clone, Debug, PartialEq, thiserror::Error)]
pub enum NvrtcError {
    #[error(
        "NVRTC cannot be loaded (no libnvrtc on the library path; install `nvidia-cuda-nvrtc` and add its `lib` folder to `LD_LIBRARY_PATH`)"
    )]
    Unavailable,
    #[error("NVRTC failed to compile the generated source for `{arch}`:\n{log}")]
    Compile { arch: String, log: String },
}

/// Whether libnvrtc can be loaded here (cached after the first call).
pub fn available() -> bool {
    static OK: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    *OK.get_or_init(|| {
        catch_unwind(|| {
            // SAFETY: loading a shared library by name; cudarc caches it.
            unsafe {
                cudarc::nvrtc::sys::is_culib_present() && {
                    cudarc::nvrtc::sys::culib();
                    true
                }
            }
        })
        .unwrap_or(false)
    })
}

/// Compiles `source` for `arch` (e.g. `sm_80`) and returns the PTX text.
pub fn compile(source: &str, arch: &'static str) -> Result<String, NvrtcError> {
    if !available() {
        return Err(NvrtcError::Unavailable);
    }
    let opts = cudarc::nvrtc::CompileOptions {
        arch: Some(arch),
        options: vec!["--std=c++17".into()],
        ..Default::default()
    };
    let res = catch_unwind(AssertUnwindSafe(|| {
        cudarc::nvrtc::compile_ptx_with_opts(source, opts)
    }));
    match res {
        Ok(Ok(ptx)) => Ok(ptx.to_src()),
        Ok(Err(e)) => Err(NvrtcError::Compile {
            arch: arch.to_string(),
            log: e.to_string(),
        }),
        Err(_) => Err(NvrtcError::Unavailable),
    }
}
