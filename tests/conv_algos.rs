//! The per-layer convolution algorithms (`passes::conv_algo`) in whole
//! training steps: Winograd wherever it applies computes the same loss,
//! logits and gradients as im2col and GEMM everywhere (f64 to 1e-10; f32
//! on the ResNet and VGG of `networks/` to 1e-4 of each gradient's
//! largest value), the choice lands only on the layers it applies to, and
//! the steps are bit-identical for 1 and 2 threads.

mod common;

use netc::backend::cpu::exec::CpuExec;
use netc::backend::cpu::kernels::Float;
use netc::passes::conv_algo::{Algo, Policy};

/// Every 3×3 stride-1 padding (0, 1, 2) with and without a bias and a
/// fused ReLU, one channel in the first layer, a stride-2 3×3 and a 1×1
/// (never Winograd), a grouped 3×3 (never Winograd), odd sizes.
const NET: &str = "
network algos {
  input image: [1, 11, 9]
  input label: class(3)
  c1 = conv(image, filters: 4, size: 3, pad: 1) -> relu
  c2 = conv(c1, filters: 5, size: 3, pad: 0, bias: false) -> batchnorm -> relu
  c3 = conv(c2, filters: 3, size: 3, pad: 2) -> tanh
  c4 = conv(c3, filters: 6, size: 3, stride: 2, pad: 1) -> relu
  c5 = conv(c4, filters: 4, size: 1)
  g = conv(c5, filters: 6, size: 3, pad: 1, groups: 2) -> relu
  f = dense(g, units: 3)
  loss = softmax_xent(f, label)
}
train { init { weight: he  bias: 0.1 } }
";

/// Losses then logits, and each parameter's name, value and gradient.
type Run = (Vec<f64>, Vec<(String, Vec<f64>, Vec<f64>)>);

fn step_values<T: Float>(src: &str, policy: Policy, n: usize, steps: u64) -> Run {
    let (g, _) = common::fused_graph(src);
    let pg = common::param_grads(&g);
    let mut e = CpuExec::<T>::new(g, 3).unwrap();
    e.set_conv_policy(policy);
    let (images, labels) = common::batch(&e, n, 3, 5);
    let mut losses = Vec::new();
    for s in 0..steps {
        losses.push(e.train_step(&images, &labels, 0.01, s).unwrap().loss);
    }
    let up = |v: &[T]| v.iter().map(|x| x.to_f64()).collect::<Vec<f64>>();
    losses.extend(up(e.logits()));
    let params = pg
        .iter()
        .map(|(name, p, d)| (name.clone(), up(e.value(*p)), up(e.value(*d))))
        .collect();
    (losses, params)
}

/// Largest |a − b| over the largest |b| (0 when both are all zero).
fn max_rel(a: &[f64], b: &[f64]) -> f64 {
    assert_eq!(a.len(), b.len());
    let m = b.iter().fold(0.0f64, |m, v| m.max(v.abs()));
    let d = a
        .iter()
        .zip(b)
        .fold(0.0f64, |e, (x, y)| e.max((x - y).abs()));
    if m == 0.0 { d } else { d / m }
}

fn compare(a: &Run, b: &Run, tol: f64) {
    let e = max_rel(&a.0, &b.0);
    assert!(e < tol, "losses and logits: {e}");
    for (pa, pb) in a.1.iter().zip(&b.1) {
        assert_eq!(pa.0, pb.0);
        let e = max_rel(&pa.1, &pb.1);
        assert!(e < tol, "{}: {e}", pa.0);
        let e = max_rel(&pa.2, &pb.2);
        assert!(e < tol, "gradient of {}: {e}", pa.0);
    }
}

#[test]
fn winograd_lands_only_where_it_applies() {
    let (g, _) = common::fused_graph(NET);
    let mut e = CpuExec::<f64>::new(g, 3).unwrap();
    e.set_conv_policy(Policy::Winograd);
    let algos = e.conv_algos();
    assert_eq!(algos.len(), 6, "{algos:?}");
    for (name, a) in &algos {
        let layer = name.split('/').next().unwrap_or_default();
        let wino = matches!(layer, "c1" | "c2" | "c3");
        assert_eq!(a.forward == Algo::Winograd, wino, "{name}: {a:?}");
        assert_eq!(a.input_grad == Algo::Winograd, wino, "{name}: {a:?}");
        if layer == "g" {
            assert_eq!(a.forward, Algo::General, "{name}: {a:?}");
        }
    }
    e.set_conv_policy(Policy::Gemm);
    assert!(
        e.conv_algos()
            .iter()
            .all(|(_, a)| a.forward != Algo::Winograd && a.weight_grad != Algo::Winograd)
    );
}

#[test]
fn winograd_steps_match_gemm_steps_f64() {
    for n in [1, 6] {
        let a = step_values::<f64>(NET, Policy::Gemm, n, 3);
        let b = step_values::<f64>(NET, Policy::Winograd, n, 3);
        compare(&b, &a, 1e-10);
        let c = step_values::<f64>(NET, Policy::Auto, n, 3);
        compare(&c, &a, 1e-10);
    }
}

#[test]
fn winograd_steps_match_gemm_steps_f32_networks() {
    for file in ["resnet-fmnist.net", "vgg-fmnist.net"] {
        let src = std::fs::read_to_string(format!("networks/{file}")).unwrap();
        let a = step_values::<f32>(&src, Policy::Gemm, 4, 1);
        let b = step_values::<f32>(&src, Policy::Winograd, 4, 1);
        compare(&b, &a, 1e-4);
    }
}

#[test]
fn winograd_steps_are_deterministic_across_threads() {
    let src = std::fs::read_to_string("networks/resnet-fmnist.net").unwrap();
    let run = |threads: usize| {
        rayon::ThreadPoolBuilder::new()
            .num_threads(threads)
            .build()
            .unwrap()
            .install(|| step_values::<f32>(&src, Policy::Winograd, 9, 2))
    };
    let (a, b) = (run(1), run(2));
    let bits = |v: &Run| {
        let mut all: Vec<u64> = v.0.iter().map(|x| x.to_bits()).collect();
        for p in &v.1 {
            all.extend(p.1.iter().chain(&p.2).map(|x| x.to_bits()));
        }
        all
    };
    assert_eq!(bits(&a), bits(&b));
}
