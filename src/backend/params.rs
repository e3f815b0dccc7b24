//! Parameters as every backend sees them: the one naming rule
//! ([`key`]: `name@device`, what checkpoints and the CUDA program's buffers
//! are keyed by), the one initialisation rule ([`init_param`]: draws that
//! depend only on the seed, the parameter's name and tower and the element
//! index, so every backend starts from the same values), and the store of
//! a graph's initial parameters and velocities ([`ParamStore`]) a backend
//! loads them from.
//!
//! Guarantees: deterministic for a seed whatever the thread count or
//! backend; velocities start at zero.

use crate::backend::cpu::kernels::Float;
use crate::ir::{Device, Graph, Init, NodeId, Op, ParamRole};
use crate::rng;

/// The name a parameter or velocity is stored under: `name@device`.
pub fn key(g: &Graph, n: NodeId) -> String {
    let node = g.node(n);
    key_of(&node.name, node.device)
}

/// [`key`] from a node's name and device.
pub fn key_of(name: &str, device: Device) -> String {
    format!("{name}@{device}")
}

/// Fills a parameter per its initialisation rule; draws depend only on
/// (seed, parameter name, tower, element index).
pub fn init_param<T: Float>(
    init: &Init,
    name: &str,
    device: Device,
    dims: &[u64],
    seed: u64,
    out: &mut [T],
) {
    let stream = rng::stream_of(&format!("init/{}", key_of(name, device)));
    let fan_in: u64 = dims.iter().skip(1).product::<u64>().max(1);
    let fan_out: u64 = dims.first().copied().unwrap_or(1) * dims.iter().skip(2).product::<u64>();
    match init {
        Init::Constant { value } => out.fill(T::from_f64(*value)),
        Init::Normal { mean, std } => {
            for (i, o) in out.iter_mut().enumerate() {
                *o = T::from_f64(mean + std * rng::normal(seed, stream, i as u64));
            }
        }
        Init::He => {
            let std = (2.0 / fan_in as f64).sqrt();
            for (i, o) in out.iter_mut().enumerate() {
                *o = T::from_f64(std * rng::normal(seed, stream, i as u64));
            }
        }
        Init::Uniform { low, high } => {
            for (i, o) in out.iter_mut().enumerate() {
                *o = T::from_f64(low + (high - low) * rng::uniform(seed, stream, i as u64));
            }
        }
        Init::Xavier => {
            let a = (6.0 / (fan_in + fan_out) as f64).sqrt();
            for (i, o) in out.iter_mut().enumerate() {
                *o = T::from_f64(a * (2.0 * rng::uniform(seed, stream, i as u64) - 1.0));
            }
        }
    }
}

/// One parameter or velocity of a graph.
#[derive(Clone, Debug, PartialEq)]
pub struct ParamTensor {
    /// Its node in the graph the store was built for.
    pub node: NodeId,
    /// Its [`key`].
    pub name: String,
    pub role: ParamRole,
    pub dims: Vec<usize>,
    pub values: Vec<f32>,
}

/// Every parameter and velocity of a graph, sorted by name.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct ParamStore {
    pub tensors: Vec<ParamTensor>,
}

impl ParamStore {
    /// The initial parameters of `g` for `seed` (velocities zero).
    pub fn init(g: &Graph, seed: u64) -> ParamStore {
        let mut tensors: Vec<ParamTensor> = g
            .node_ids()
            .filter_map(|n| {
                let node = g.node(n);
                let Op::Param { init, role } = &node.op else {
                    return None;
                };
                let dims: Vec<usize> = node.ty.dims().iter().map(|&d| d as usize).collect();
                let mut values = vec![0f32; dims.iter().product()];
                if *role != ParamRole::Velocity {
                    init_param(
                        init,
                        &node.name,
                        node.device,
                        node.ty.dims(),
                        seed,
                        &mut values,
                    );
                }
                Some(ParamTensor {
                    node: n,
                    name: key(g, n),
                    role: *role,
                    dims,
                    values,
                })
            })
            .collect();
        tensors.sort_by(|a, b| a.name.cmp(&b.name));
        ParamStore { tensors }
    }
}
