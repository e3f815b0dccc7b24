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

/// A sweep with a `target_train_error` reports, per variant, the training
/// top-1 error the step measured and the steps it took to reach the target
/// (`reached` is unit-tested in `train::sweep`); every epoch records its
/// step count and training error, and `train-error.svg` draws them. A
/// second run retrains nothing and reports the same.
#[test]
fn a_sweep_races_its_variants_to_a_training_error() {
    let d = std::env::temp_dir().join(format!("netc-sweep-target-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    let spec = d.join("race.yaml");
    std::fs::write(
        &spec,
        format!(
            "network: {}/networks/fig1-fmnist.net\nout: {}\ntrain: {{ epochs: 3, max_steps: 4, batch: 32, seed: 1 }}\ntarget_train_error: 0.9\nvariants:\n  - name: relu\n  - name: fast\n    changes: [\"train.sgd.lr=0.05\"]\n",
            env!("CARGO_MANIFEST_DIR"),
            d.join("out").display()
        ),
    )
    .unwrap();
    let data = std::path::Path::new("data/fmnist-small");
    let rows = netc::train::sweep::run_with_data(&spec, Some(data)).unwrap();
    assert_eq!(rows.len(), 2);
    for r in &rows {
        let e = r.train_top1_error.expect("training error recorded");
        assert!((0.0..=1.0).contains(&e), "{r:?}");
        let metrics =
            std::fs::read_to_string(d.join("out").join(&r.variant).join("metrics.jsonl")).unwrap();
        let reports: Vec<netc::train::report::EpochReport> = metrics
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        let steps: Vec<u64> = reports.iter().map(|r| r.steps).collect();
        assert_eq!(steps, [4, 8, 12], "{r:?}");
        assert_eq!(
            netc::train::sweep::reached(&reports, 0.9).map(|h| h.1),
            r.steps_to_target,
            "{r:?}"
        );
    }
    let md = std::fs::read_to_string(d.join("out/results.md")).unwrap();
    assert!(md.contains("steps to 90% train error"), "{md}");
    let svg = std::fs::read_to_string(d.join("out/train-error.svg")).unwrap();
    assert!(svg.contains(">relu<") && svg.contains(">fast<"), "{svg}");
    let again = netc::train::sweep::run_with_data(&spec, Some(data)).unwrap();
    assert_eq!(again, rows, "a finished sweep reports the same");
    let _ = std::fs::remove_dir_all(&d);
}
