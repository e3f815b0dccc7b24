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
use crate::ir::{Device, FanMode, Graph, Init, NodeId, Op, ParamRole};
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
        Init::KaimingUniform {
            a,
            mode,
            nonlinearity,
        } => {
            let fan = match mode {
                FanMode::FanIn => fan_in,
                FanMode::FanOut => fan_out.max(1),
            };
            let bound = nonlinearity.gain(*a) * (3.0 / fan as f64).sqrt();
            symmetric_uniform(bound, seed, stream, out);
        }
        Init::KaimingNormal {
            a,
            mode,
            nonlinearity,
        } => {
            let fan = match mode {
                FanMode::FanIn => fan_in,
                FanMode::FanOut => fan_out.max(1),
            };
            let std = nonlinearity.gain(*a) / (fan as f64).sqrt();
            for (i, o) in out.iter_mut().enumerate() {
                *o = T::from_f64(std * rng::normal(seed, stream, i as u64));
            }
        }
        Init::XavierUniform { gain } => {
            let bound = gain * (6.0 / (fan_in + fan_out).max(1) as f64).sqrt();
            symmetric_uniform(bound, seed, stream, out);
        }
        Init::XavierNormal { gain } => {
            let std = gain * (2.0 / (fan_in + fan_out).max(1) as f64).sqrt();
            for (i, o) in out.iter_mut().enumerate() {
                *o = T::from_f64(std * rng::normal(seed, stream, i as u64));
            }
        }
    }
}

/// U(−bound, bound), PyTorch's `uniform_(-bound, bound)`.
fn symmetric_uniform<T: Float>(bound: f64, seed: u64, stream: u64, out: &mut [T]) {
    for (i, o) in out.iter_mut().enumerate() {
        *o = T::from_f64(bound * (2.0 * rng::uniform(seed, stream, i as u64) - 1.0));
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ir::Nonlinearity;

    /// Mean, standard deviation and largest magnitude of `v`.
    fn stats(v: &[f64]) -> (f64, f64, f64) {
        let n = v.len() as f64;
        let mean = v.iter().sum::<f64>() / n;
        let var = v.iter().map(|x| (x - mean) * (x - mean)).sum::<f64>() / n;
        let max = v.iter().fold(0f64, |m, x| m.max(x.abs()));
        (mean, var.sqrt(), max)
    }

    fn draw(init: &Init, dims: &[u64]) -> Vec<f64> {
        let mut out = vec![0f64; dims.iter().product::<u64>() as usize];
        init_param(init, "t/conv", Device::Tower(0), dims, 7, &mut out);
        out
    }

    /// A conv weight `[F=64, C=48, 5, 5]`: fan_in = 48·25 = 1200,
    /// fan_out = 64·25 = 1600, 76,800 draws.
    const CONV: [u64; 4] = [64, 48, 5, 5];
    const FAN_IN: f64 = 1200.0;
    const FAN_OUT: f64 = 1600.0;

    /// Uniform U(±b): std b/√3, every |x| < b, and the largest close to b.
    fn check_uniform(v: &[f64], bound: f64) {
        let (mean, std, max) = stats(v);
        let n = v.len() as f64;
        let sd = bound / 3f64.sqrt();
        assert!(
            mean.abs() < 5.0 * sd / n.sqrt(),
            "mean {mean}, bound {bound}"
        );
        assert!((std / sd - 1.0).abs() < 0.01, "std {std}, want {sd}");
        assert!(
            max < bound && max > 0.999 * bound,
            "max {max}, bound {bound}"
        );
    }

    /// Normal N(0, sd²): the sample std within 1%, a 5-σ mean.
    fn check_normal(v: &[f64], sd: f64) {
        let (mean, std, max) = stats(v);
        let n = v.len() as f64;
        assert!(mean.abs() < 5.0 * sd / n.sqrt(), "mean {mean}, sd {sd}");
        assert!((std / sd - 1.0).abs() < 0.01, "std {std}, want {sd}");
        assert!(max > 3.0 * sd, "max {max}: the tails are missing");
    }

    #[test]
    fn kaiming_uniform_matches_pytorch_formula() {
        // PyTorch defaults: a = 0, fan_in, leaky_relu: gain √2, bound √2·√(3/fan_in).
        let init = Init::KaimingUniform {
            a: 0.0,
            mode: FanMode::FanIn,
            nonlinearity: Nonlinearity::LeakyRelu,
        };
        check_uniform(&draw(&init, &CONV), 2f64.sqrt() * (3.0 / FAN_IN).sqrt());
        // a = √5 (PyTorch's layer default): gain √(2/6), bound 1/√fan_in.
        let init = Init::KaimingUniform {
            a: 5f64.sqrt(),
            mode: FanMode::FanIn,
            nonlinearity: Nonlinearity::LeakyRelu,
        };
        check_uniform(&draw(&init, &CONV), 1.0 / FAN_IN.sqrt());
        // fan_out with tanh: gain 5/3.
        let init = Init::KaimingUniform {
            a: 0.0,
            mode: FanMode::FanOut,
            nonlinearity: Nonlinearity::Tanh,
        };
        check_uniform(&draw(&init, &CONV), 5.0 / 3.0 * (3.0 / FAN_OUT).sqrt());
    }

    #[test]
    fn kaiming_normal_matches_pytorch_formula() {
        let init = Init::KaimingNormal {
            a: 0.0,
            mode: FanMode::FanIn,
            nonlinearity: Nonlinearity::Relu,
        };
        check_normal(&draw(&init, &CONV), 2f64.sqrt() / FAN_IN.sqrt());
        let init = Init::KaimingNormal {
            a: 0.2,
            mode: FanMode::FanOut,
            nonlinearity: Nonlinearity::LeakyRelu,
        };
        check_normal(&draw(&init, &CONV), (2.0 / 1.04f64).sqrt() / FAN_OUT.sqrt());
        // A dense weight `[units, in]`: fan_in = in.
        let init = Init::KaimingNormal {
            a: 0.0,
            mode: FanMode::FanIn,
            nonlinearity: Nonlinearity::Linear,
        };
        check_normal(&draw(&init, &[300, 500]), 1.0 / 500f64.sqrt());
    }

    #[test]
    fn xavier_matches_pytorch_formula() {
        let b = (6.0 / (FAN_IN + FAN_OUT)).sqrt();
        check_uniform(&draw(&Init::XavierUniform { gain: 1.0 }, &CONV), b);
        check_uniform(&draw(&Init::XavierUniform { gain: 2.5 }, &CONV), 2.5 * b);
        let sd = (2.0 / (FAN_IN + FAN_OUT)).sqrt();
        check_normal(&draw(&Init::XavierNormal { gain: 1.0 }, &CONV), sd);
        check_normal(
            &draw(&Init::XavierNormal { gain: 0.5 }, &[300, 500]),
            0.5 * (2.0f64 / 800.0).sqrt(),
        );
    }

    #[test]
    fn gains_are_pytorchs() {
        assert_eq!(Nonlinearity::Linear.gain(0.3), 1.0);
        assert_eq!(Nonlinearity::Sigmoid.gain(0.3), 1.0);
        assert_eq!(Nonlinearity::Tanh.gain(0.0), 5.0 / 3.0);
        assert_eq!(Nonlinearity::Relu.gain(0.3), 2f64.sqrt());
        assert_eq!(Nonlinearity::LeakyRelu.gain(0.0), 2f64.sqrt());
        assert!((Nonlinearity::LeakyRelu.gain(0.01) - (2.0f64 / 1.0001).sqrt()).abs() < 1e-15);
        assert_eq!(Nonlinearity::Selu.gain(0.0), 0.75);
    }

    #[test]
    fn he_and_xavier_keep_their_draws() {
        // The existing forms are unchanged: `he` is N(0, 2/fan_in) from the
        // same stream as `kaiming_normal(nonlinearity: relu)`, element for
        // element, and `xavier` equals `xavier_uniform` (gain 1).
        let he = draw(&Init::He, &CONV);
        let kn = draw(
            &Init::KaimingNormal {
                a: 0.0,
                mode: FanMode::FanIn,
                nonlinearity: Nonlinearity::Relu,
            },
            &CONV,
        );
        let close = |a: &[f64], b: &[f64]| {
            a.iter()
                .zip(b)
                .all(|(x, y)| (x - y).abs() <= 1e-15 * x.abs().max(1e-300))
        };
        assert!(close(&he, &kn));
        let x = draw(&Init::Xavier, &CONV);
        let xu = draw(&Init::XavierUniform { gain: 1.0 }, &CONV);
        assert_eq!(x, xu);
    }
}
