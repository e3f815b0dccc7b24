//! The backend a command runs on, as one typed value built once from the
//! command line ([`BackendConfig::from_flags`]): a flag the chosen backend
//! cannot honour is an error there, never ignored later.

use crate::backend::cuda::place::split::{self, SplitError};
use crate::backend::layout::Layout;

/// The NVRTC targets netc compiles for.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Arch {
    /// PTX for sm_80, which the driver compiles on to any newer GPU.
    #[default]
    Sm80,
    Sm90,
    Sm100,
}

impl Arch {
    /// The name NVRTC takes (`sm_80`).
    pub fn as_str(self) -> &'static str {
        match self {
            Arch::Sm80 => "sm_80",
            Arch::Sm90 => "sm_90",
            Arch::Sm100 => "sm_100",
        }
    }

    /// Parses `sm_80`, `sm_90` or `sm_100`.
    pub fn parse(s: &str) -> Result<Arch, ConfigError> {
        match s {
            "sm_80" => Ok(Arch::Sm80),
            "sm_90" => Ok(Arch::Sm90),
            "sm_100" => Ok(Arch::Sm100),
            other => Err(ConfigError::Arch(other.to_string())),
        }
    }
}

impl std::fmt::Display for Arch {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// How the CUDA backend runs a step.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct CudaConfig {
    /// `None`: the whole step on GPU 0. `Some(gpus)`: placed, tower `i` on
    /// `gpus[i]` (one GPU listed: every tower on it, on its own stream).
    pub gpus: Option<Vec<usize>>,
    /// The step's buffers at the plan's offsets, or each apart.
    pub layout: Layout,
    /// Replay the step captured as a CUDA graph after the warm-up steps
    /// (one GPU only: the placed runtime issues every launch).
    pub replay: bool,
    /// Crop, mirror, light and normalise on the device from raw batches.
    pub device_augment: bool,
    pub arch: Arch,
}

/// Where the training step runs.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum BackendConfig {
    /// The CPU executor (the reference).
    Cpu { layout: Layout },
    /// The generated CUDA program.
    Cuda(CudaConfig),
}

impl Default for BackendConfig {
    fn default() -> Self {
        BackendConfig::Cpu {
            layout: Layout::Planned,
        }
    }
}

/// Which backend a command line names.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum BackendKind {
    #[default]
    Cpu,
    Cuda,
}

/// The backend flags of `netc train` (and `eval`) as given.
#[derive(Clone, Debug, Default)]
pub struct BackendFlags {
    pub backend: BackendKind,
    /// `--no-plan`.
    pub no_plan: bool,
    /// `--no-graph`.
    pub no_graph: bool,
    /// `--device-augment`.
    pub device_augment: bool,
    /// `--devices`, parsed.
    pub devices: Option<Vec<usize>>,
    /// The network's towers (`--devices` lists one GPU or one per tower).
    pub towers: usize,
}

#[derive(Clone, Debug, PartialEq, thiserror::Error)]
pub enum ConfigError {
    #[error("augmenting on the device needs `--backend cuda`")]
    AugmentOnCpu,
    #[error("`--no-graph` is for `--backend cuda`")]
    NoGraphOnCpu,
    #[error("`--devices` places the step on GPUs: it needs `--backend cuda`")]
    DevicesOnCpu,
    #[error(
        "`--no-graph` does not apply with `--devices`: the placed runtime always issues every launch (it never captures the step as a CUDA graph)"
    )]
    NoGraphPlaced,
    #[error(transparent)]
    Devices(#[from] SplitError),
    #[error("unsupported `--arch {0}`: use sm_80, sm_90 or sm_100")]
    Arch(String),
}

impl BackendConfig {
    /// The backend `f` asks for, or why the flags do not go together.
    pub fn from_flags(f: &BackendFlags) -> Result<BackendConfig, ConfigError> {
        let layout = if f.no_plan {
            Layout::Separate
        } else {
            Layout::Planned
        };
        match f.backend {
            BackendKind::Cpu if f.device_augment => Err(ConfigError::AugmentOnCpu),
            BackendKind::Cpu if f.no_graph => Err(ConfigError::NoGraphOnCpu),
            BackendKind::Cpu if f.devices.is_some() => Err(ConfigError::DevicesOnCpu),
            BackendKind::Cpu => Ok(BackendConfig::Cpu { layout }),
            BackendKind::Cuda => {
                if let Some(d) = &f.devices {
                    split::check_count(f.towers, d.len())?;
                    if f.no_graph {
                        return Err(ConfigError::NoGraphPlaced);
                    }
                }
                Ok(BackendConfig::Cuda(CudaConfig {
                    gpus: f.devices.clone(),
                    layout,
                    replay: !f.no_graph && f.devices.is_none(),
                    device_augment: f.device_augment,
                    arch: Arch::default(),
                }))
            }
        }
    }

    /// The buffer layout of the step.
    pub fn layout(&self) -> Layout {
        match self {
            BackendConfig::Cpu { layout } => *layout,
            BackendConfig::Cuda(c) => c.layout,
        }
    }
}
