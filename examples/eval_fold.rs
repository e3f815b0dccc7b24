//! Evaluation throughput on the CPU with the batchnorms folded into the
//! layers before them and without, on random images (no data loading).
//!
//! ```sh
//! cargo run --release --example eval_fold -- NETWORK.net [--batch 128] [--batches 10] [--rounds 3]
//! ```
//!
//! Trains three steps (so the running statistics move), then times
//! `--batches` evaluation batches unfolded and folded, alternately, for
//! `--rounds` rounds; prints one line per measurement
//! (`unfolded: R images/s`, `folded: R images/s`) and the largest
//! relative difference of the logits.

use std::time::Instant;

use netc::backend::cpu::exec::{CpuExec, Layout};

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let Some(path) = args.first() else {
        eprintln!("usage: eval_fold NETWORK.net [--batch B] [--batches K] [--rounds R]");
        std::process::exit(2);
    };
    let opt = |name: &str, default: usize| {
        args.iter()
            .position(|a| a == name)
            .and_then(|i| args.get(i + 1))
            .and_then(|v| v.parse().ok())
            .unwrap_or(default)
    };
    let (batch, batches, rounds) = (
        opt("--batch", 128),
        opt("--batches", 10),
        opt("--rounds", 3),
    );
    let src = std::fs::read_to_string(path).unwrap_or_else(|e| {
        eprintln!("{path}: {e}");
        std::process::exit(1);
    });
    let c = netc::frontend::compile(&src).unwrap_or_else(|d| {
        eprintln!("{}", netc::diag::render(path, &src, &[d]));
        std::process::exit(1);
    });
    let m = &c.module;
    let g = netc::train::run::training_graph(m, &m.train, true).expect("training graph");
    let mut exec = CpuExec::<f32>::with_memory(g, 1, Layout::Planned).expect("executor");
    let per = exec.image_len();
    let images: Vec<f32> = (0..batch * per)
        .map(|i| netc::rng::normal(1, 2, i as u64) as f32)
        .collect();
    let classes = exec.logits_width() as u32;
    let labels: Vec<u32> = (0..batch as u32).map(|i| i % classes.max(1)).collect();
    for s in 0..3 {
        exec.train_step(&images, &labels, 1e-2, s).expect("step");
    }
    let mut run = |fold: bool| {
        exec.set_fold_bn(fold);
        exec.eval_batch(&images, &labels).expect("eval");
        let t = Instant::now();
        for _ in 0..batches {
            exec.eval_batch(&images, &labels).expect("eval");
        }
        let rate = (batch * batches) as f64 / t.elapsed().as_secs_f64().max(1e-9);
        (rate, exec.logits().to_vec())
    };
    let mut diff = 0.0f64;
    for _ in 0..rounds {
        let (a, la) = run(false);
        let (b, lb) = run(true);
        println!("unfolded: {a:.1} images/s");
        println!("folded: {b:.1} images/s");
        let scale = la.iter().fold(1.0f64, |s, v| s.max(v.abs() as f64));
        for (x, y) in la.iter().zip(&lb) {
            diff = diff.max((*x as f64 - *y as f64).abs() / scale);
        }
    }
    println!("largest relative difference of the logits: {diff:.2e}");
}
