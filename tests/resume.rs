//! Interrupt a run mid-epoch, resume it from its checkpoint, and the final
//! weights equal those of an uninterrupted run with the same seed. Also:
//! corrupt and foreign checkpoints are refused with the file's name.

use std::path::{Path, PathBuf};

use netc::frontend;
use netc::train::run::{Outcome, TrainOptions, load_weights, train};

fn opts(out: &Path) -> TrainOptions {
    TrainOptions {
        data: Some(PathBuf::from("data/fmnist-small")),
        epochs: Some(2),
        batch: Some(32),
        seed: Some(3),
        max_steps: Some(5),
        out_dir: out.to_path_buf(),
        quiet: true,
        ..Default::default()
    }
}

fn tmp(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("netc-resume-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    d
}

#[test]
fn interrupted_and_resumed_equals_uninterrupted() {
    let src = std::fs::read_to_string("networks/alexnet-fmnist.net").unwrap();
    let c = frontend::compile(&src).unwrap_or_else(|_| panic!("compiles"));
    let m = &c.module;

    let full = tmp("full");
    assert!(matches!(train(m, &opts(&full)).unwrap(), Outcome::Finished(r) if r.len() == 2));
    let want = load_weights(&full.join("checkpoint.safetensors")).unwrap();

    // Stop mid-epoch 1 (step 3 of 5), then again mid-epoch 2 (step 7), then finish.
    let part = tmp("part");
    for stop in [3, 7] {
        let mut o = opts(&part);
        o.stop_after = Some(stop);
        if stop == 7 {
            o.resume = Some(part.join("checkpoint.safetensors"));
        }
        assert!(matches!(train(m, &o).unwrap(), Outcome::Stopped { step, .. } if step == stop));
    }
    let mut o = opts(&part);
    o.resume = Some(part.join("checkpoint.safetensors"));
    let Outcome::Finished(reports) = train(m, &o).unwrap() else {
        panic!("did not finish")
    };
    assert_eq!(reports.len(), 2, "the metrics of both epochs are kept");
    let got = load_weights(&part.join("checkpoint.safetensors")).unwrap();
    assert_eq!(want.len(), got.len());
    for ((na, a), (nb, b)) in want.iter().zip(&got) {
        assert_eq!(na, nb);
        assert!(a == b, "`{na}` differs after resuming");
    }
    // The metrics of the resumed run equal the uninterrupted run's, images/s aside.
    let metrics = |d: &Path| -> Vec<String> {
        std::fs::read_to_string(d.join("metrics.jsonl"))
            .unwrap()
            .lines()
            .map(|l| l.split(",\"images_per_s\"").next().unwrap().to_string())
            .collect()
    };
    assert_eq!(metrics(&full), metrics(&part));
    assert!(
        std::fs::read_to_string(part.join("learning-curves.svg"))
            .unwrap()
            .contains("<polyline")
    );

    // A corrupt checkpoint is refused, naming the file; so is another network's.
    let bad = part.join("checkpoint.safetensors");
    let bytes = std::fs::read(&bad).unwrap();
    std::fs::write(&bad, &bytes[..bytes.len() / 2]).unwrap();
    let mut o = opts(&part);
    o.resume = Some(bad.clone());
    let e = train(m, &o)
        .expect_err("corrupt checkpoint accepted")
        .to_string();
    assert!(e.contains("checkpoint.safetensors"), "{e}");
    let other = frontend::compile(&src.replace("units: 512", "units: 256"))
        .unwrap_or_else(|_| panic!("compiles"));
    let mut o = opts(&full);
    o.resume = Some(full.join("checkpoint.safetensors"));
    let e = train(&other.module, &o)
        .expect_err("foreign checkpoint accepted")
        .to_string();
    assert!(e.contains("different network"), "{e}");
    let _ = std::fs::remove_dir_all(&full);
    let _ = std::fs::remove_dir_all(&part);
}

#[test]
fn a_non_finite_loss_stops_training_and_keeps_the_last_good_checkpoint() {
    let src = std::fs::read_to_string("networks/alexnet-fmnist.net").unwrap();
    let c = frontend::compile(&src).unwrap_or_else(|_| panic!("compiles"));
    let dir = tmp("nan");
    let mut o = opts(&dir);
    o.epochs = Some(1);
    train(&c.module, &o).unwrap();
    let ckpt = dir.join("checkpoint.safetensors");
    let good = std::fs::read(&ckpt).unwrap();
    // The same network with an absurd learning rate diverges.
    let mut m = c.module.clone();
    m.train.sgd.lr = 1e12;
    let mut o = opts(&dir);
    o.resume = Some(ckpt.clone());
    let e = train(&m, &o)
        .expect_err("a diverging run finished")
        .to_string();
    assert!(e.contains("the first non-finite value is in `"), "{e}");
    assert_eq!(
        std::fs::read(&ckpt).unwrap(),
        good,
        "the last good checkpoint was overwritten"
    );
    let _ = std::fs::remove_dir_all(&dir);
}

/// A checkpoint's network fingerprint is computed from the IR text with
/// the nodes an op names written by name (`of="fc7/dropout"`), the form
/// the text had before relations were ids, so checkpoints written before
/// keep loading; it is otherwise the text form without spans.
#[test]
fn fingerprints_keep_the_text_form_checkpoints_were_written_with() {
    use netc::ir::print::{PrintOptions, print, print_for_fingerprint};
    let src = std::fs::read_to_string("networks/alexnet-fmnist.net").unwrap();
    let c = frontend::compile(&src).unwrap_or_else(|_| panic!("compiles"));
    // Unfused: the fused step folds every dropout gradient away.
    let g =
        netc::passes::pipeline::training_step(&c.module.graph, &c.module.train.sgd, false).unwrap();
    let (named, ids) = (
        print_for_fingerprint(&g),
        print(&g, PrintOptions { spans: false }),
    );
    assert!(named.contains(r#"of="fc7/dropout""#), "{named}");
    assert!(!named.contains("of=%"));
    let mut n = 0;
    for (a, b) in named.lines().zip(ids.lines()) {
        if a != b {
            n += 1;
            let cut = |l: &str| l.split(" of=").next().unwrap().to_string();
            assert_eq!(cut(a), cut(b));
        }
    }
    assert!(n >= 4, "only {n} lines name a node");
    assert_eq!(named.lines().count(), ids.lines().count());
}
