//! The typed backend configuration (`backend::config`): every flag either
//! honoured or refused when the command line is parsed, never ignored; and
//! the parameter store every backend starts from (`backend::params`).

use std::process::Command;

use netc::backend::config::{BackendConfig, BackendFlags, BackendKind, ConfigError};
use netc::backend::cpu::exec::CpuExec;
use netc::backend::cuda::step::run::CudaStep;
use netc::backend::layout::Layout;
use netc::backend::params::ParamStore;
use netc::backend::step::Step;
use netc::backend::{BackendError, cuda};

fn cuda_flags() -> BackendFlags {
    BackendFlags {
        backend: BackendKind::Cuda,
        towers: 2,
        ..Default::default()
    }
}

fn training_graph() -> netc::ir::Graph {
    let src = std::fs::read_to_string("networks/alexnet-fmnist.net").unwrap();
    let c = netc::frontend::compile(&src).unwrap_or_else(|_| panic!("compiles"));
    netc::passes::pipeline::training_step(&c.module.graph, &c.module.train.sgd, true).unwrap()
}

/// `train --backend cuda --no-plan` is honoured: the CUDA step is generated
/// with every buffer apart, as the CPU executor lays it out.
#[test]
fn no_plan_lays_the_cuda_step_out_buffer_by_buffer() {
    let cfg = BackendConfig::from_flags(&BackendFlags {
        no_plan: true,
        ..cuda_flags()
    })
    .unwrap();
    assert_eq!(cfg.layout(), Layout::Separate);
    let BackendConfig::Cuda(c) = &cfg else {
        panic!("not the CUDA backend: {cfg:?}")
    };
    let g = training_graph();
    // The program the step is built from, caught before any device opens.
    let built = |layout: Layout| {
        let cpu = CpuExec::with_memory(g.clone(), 1, layout).unwrap();
        let mut seen = None;
        let r = CudaStep::<cuda::runtime::exec::CudaExec>::build(cpu, 8, None, layout, |p| {
            seen = Some(p.clone());
            Err(BackendError::Input("no device here".into()))
        });
        assert!(r.is_err());
        seen.unwrap()
    };
    let separate = built(c.layout);
    let planned = built(Layout::Planned);
    assert_eq!(
        separate.source,
        cuda::generate_with(&g, 8, Layout::Separate).unwrap().source
    );
    assert!(
        separate.planned_bytes() > planned.planned_bytes(),
        "separate {} bytes, planned {}",
        separate.planned_bytes(),
        planned.planned_bytes()
    );
    assert!(separate.planned_bytes() >= separate.no_reuse);
    // And the default is the plan.
    let default = BackendConfig::from_flags(&cuda_flags()).unwrap();
    assert_eq!(default.layout(), Layout::Planned);
}

/// `--no-graph` with `--devices` is refused: the placed runtime never
/// captures the step, so the flag could change nothing.
#[test]
fn no_graph_with_devices_is_refused() {
    let e = BackendConfig::from_flags(&BackendFlags {
        no_graph: true,
        devices: Some(vec![0, 1]),
        ..cuda_flags()
    })
    .unwrap_err();
    assert_eq!(e, ConfigError::NoGraphPlaced);
    // One GPU: replay on unless `--no-graph`.
    for (no_graph, replay) in [(false, true), (true, false)] {
        let cfg = BackendConfig::from_flags(&BackendFlags {
            no_graph,
            ..cuda_flags()
        })
        .unwrap();
        let BackendConfig::Cuda(c) = cfg else {
            panic!("not CUDA")
        };
        assert_eq!(c.replay, replay);
    }
    // The command line says so before it looks for a GPU.
    let out = Command::new(env!("CARGO_BIN_EXE_netc"))
        .args([
            "train",
            "networks/alexnet-fmnist.net",
            "--backend",
            "cuda",
            "--devices",
            "0,1",
            "--no-graph",
            "--out",
        ])
        .arg(std::env::temp_dir().join("netc-no-graph-devices"))
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("`--no-graph` does not apply with `--devices`"),
        "{stderr}"
    );
}

/// Flags of the CUDA backend are refused on the CPU.
#[test]
fn cuda_flags_on_the_cpu_are_refused() {
    let cpu = |f: BackendFlags| BackendConfig::from_flags(&f).unwrap_err();
    let base = BackendFlags {
        towers: 2,
        ..Default::default()
    };
    assert_eq!(
        cpu(BackendFlags {
            device_augment: true,
            ..base.clone()
        }),
        ConfigError::AugmentOnCpu
    );
    assert_eq!(
        cpu(BackendFlags {
            no_graph: true,
            ..base.clone()
        }),
        ConfigError::NoGraphOnCpu
    );
    assert_eq!(
        cpu(BackendFlags {
            devices: Some(vec![0]),
            ..base.clone()
        }),
        ConfigError::DevicesOnCpu
    );
    assert!(matches!(
        BackendConfig::from_flags(&BackendFlags {
            devices: Some(vec![0, 1, 2]),
            ..cuda_flags()
        }),
        Err(ConfigError::Devices(_))
    ));
    assert_eq!(
        BackendConfig::from_flags(&BackendFlags {
            no_plan: true,
            ..base
        })
        .unwrap(),
        BackendConfig::Cpu {
            layout: Layout::Separate
        }
    );
}

/// The parameter store holds exactly what the CPU executor starts from,
/// under the names its state (and every checkpoint) uses.
#[test]
fn the_parameter_store_is_what_every_backend_starts_from() {
    let g = training_graph();
    let store = ParamStore::init(&g, 5);
    let mut cpu = CpuExec::with_memory(g, 5, Layout::Planned).unwrap();
    let state = Step::state(&mut cpu).unwrap();
    assert_eq!(state.len(), store.tensors.len());
    let mut velocities = 0;
    for ((name, dims, values), t) in state.iter().zip(&store.tensors) {
        assert_eq!(name, &t.name);
        assert_eq!(dims, &t.dims);
        assert_eq!(
            values.iter().map(|v| v.to_bits()).collect::<Vec<_>>(),
            t.values.iter().map(|v| v.to_bits()).collect::<Vec<_>>(),
            "{name}"
        );
        if t.role == netc::ir::ParamRole::Velocity {
            velocities += 1;
            assert!(t.values.iter().all(|&v| v == 0.0), "{name}");
        }
    }
    assert!(velocities > 0);
    let other = ParamStore::init(&training_graph(), 6);
    assert_ne!(other, store, "the seed changes nothing");
}
