//! What a user's bad input or a fault does: each case exits 1 with a clear
//! message (never a panic, rc 101, nor an abort, rc 134), or runs and
//! reports honest figures. Every test here failed before its fix.

mod common;

use std::path::PathBuf;

use netc::backend::cpu::exec::CpuExec;
use std::process::{Command, Output};

fn netc(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_netc"))
        .args(args)
        .output()
        .unwrap()
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// A fresh directory under the system's temporary directory.
fn tmp(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("netc-faults-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

/// Writes `src` as `name.net` in `dir` and returns its path.
fn net(dir: &std::path::Path, name: &str, src: &str) -> String {
    let p = dir.join(format!("{name}.net"));
    std::fs::write(&p, src).unwrap();
    p.to_str().unwrap().to_string()
}

/// A billion filters: the step's buffers are refused before allocation,
/// with the figure and what the machine has, by train and bench.
#[test]
fn a_step_larger_than_memory_is_refused_with_the_figure() {
    let d = tmp("huge");
    let f = net(
        &d,
        "huge",
        "network huge {
  input image: [1, 28, 28]
  input label: class(10)
  c1 = conv(image, filters: 1000000000, size: 3, pad: 1) -> relu
  out = dense(c1, units: 10)
  loss = softmax_xent(out, label)
}
",
    );
    let out = d.join("out");
    for args in [
        vec![
            "train",
            &f,
            "--data",
            "data/fmnist-small",
            "--out",
            out.to_str().unwrap(),
        ],
        vec!["bench", &f, "--steps", "1"],
    ] {
        let o = netc(&args);
        let e = stderr(&o);
        assert_eq!(o.status.code(), Some(1), "{args:?}: {e}");
        assert!(
            e.contains("needs ") && e.contains(" bytes (") && e.contains("available"),
            "{args:?}: {e}"
        );
    }
    let _ = std::fs::remove_dir_all(&d);
}

/// Zero weights give every class the same score: that is no class's top-1
/// or top-5 answer (it reported 0.00% error), and the loss is ln 10.
#[test]
fn a_network_that_scores_every_class_the_same_is_always_wrong() {
    let g = common::training_graph(
        "network flat {
  input image: [1, 8, 8]
  input label: class(10)
  c = conv(image, filters: 4, size: 3) -> relu
  out = dense(c, units: 10)
  loss = softmax_xent(out, label)
}
train { init { weight: 0  bias: 0 } }
",
    );
    let mut exec = CpuExec::<f32>::new(g, 1).unwrap();
    let (images, labels) = common::batch(&exec, 16, 10, 4);
    let s = exec.eval_batch(&images, &labels).unwrap();
    assert_eq!((s.top1, s.top5, s.n), (0, 0, 16), "{s:?}");
    assert!((s.loss - 10f64.ln()).abs() < 1e-6, "{s:?}");
}

/// An unfed second input, two losses and no loss: `check` refuses each
/// (they passed it), and `train` refuses them the same way before reading
/// any data or writing anything.
#[test]
fn check_refuses_what_train_cannot_run() {
    let d = tmp("untrainable");
    let out = d.join("out");
    for (file, code) in [
        ("tests/bad/unfed_input.net", "N0123"),
        ("tests/bad/two_losses.net", "N0124"),
        ("tests/bad/no_loss.net", "N0124"),
    ] {
        let o = netc(&["check", file]);
        assert_eq!(o.status.code(), Some(1), "{file}: {}", stderr(&o));
        assert!(
            stderr(&o).contains(&format!("error[{code}]")),
            "{file}: {}",
            stderr(&o)
        );
        let o = netc(&[
            "train",
            file,
            "--data",
            "data/fmnist-small",
            "--out",
            out.to_str().unwrap(),
        ]);
        let e = stderr(&o);
        assert_eq!(o.status.code(), Some(1), "{file}: {e}");
        assert!(
            e.contains(&format!("error[{code}]")) && !e.contains("data:"),
            "{file}: {e}"
        );
        assert!(!out.exists(), "{file}: train wrote {}", out.display());
    }
    let _ = std::fs::remove_dir_all(&d);
}

/// A batch larger than the training set, `--max-steps 0` and `--epochs 0`
/// trained nothing and exited 0 with a step-0 checkpoint; now each is
/// refused and nothing is written.
#[test]
fn a_run_that_would_take_no_step_is_refused() {
    let d = tmp("nostep");
    let out = d.join("out");
    for (flag, value, says) in [
        (
            "--batch",
            "4096",
            "larger than the training set (2000 images)",
        ),
        ("--max-steps", "0", "--max-steps 0"),
        ("--epochs", "0", "--epochs 0"),
    ] {
        let o = netc(&[
            "train",
            "networks/alexnet-fmnist.net",
            "--data",
            "data/fmnist-small",
            "--out",
            out.to_str().unwrap(),
            flag,
            value,
        ]);
        let e = stderr(&o);
        assert_eq!(o.status.code(), Some(1), "{flag}: {e}");
        assert!(e.contains(says), "{flag}: {e}");
        assert!(!out.exists(), "{flag}: wrote {}", out.display());
    }
    let _ = std::fs::remove_dir_all(&d);
}

/// `netc train networks/alexnet-fmnist.net` on the embedded subset, batch
/// 16, for `epochs` epochs of `steps` steps into `out`: the short run the
/// tests below start from (they add what they vary).
fn train_args<'a>(out: &'a str, epochs: &'a str, steps: &'a str) -> Vec<&'a str> {
    vec![
        "train",
        "networks/alexnet-fmnist.net",
        "--data",
        "data/fmnist-small",
        "--epochs",
        epochs,
        "--max-steps",
        steps,
        "--batch",
        "16",
        "--out",
        out,
    ]
}

/// Trains `networks/alexnet-fmnist.net` for one epoch of `steps` steps into `out`.
fn short_run(out: &std::path::Path, steps: &str) -> Output {
    netc(&train_args(out.to_str().unwrap(), "1", steps))
}

/// Two identical runs write the same checkpoint bytes (the header's keys
/// came out in a different order); a flipped byte inside a tensor is
/// refused by `eval` and `--resume` with the file and tensor named (it
/// evaluated to a different error).
#[test]
fn checkpoints_repeat_byte_for_byte_and_flipped_bytes_are_refused() {
    let d = tmp("ckpt");
    let (a, b) = (d.join("a"), d.join("b"));
    for o in [&a, &b] {
        let r = short_run(o, "2");
        assert_eq!(r.status.code(), Some(0), "{}", stderr(&r));
    }
    let ca = std::fs::read(a.join("checkpoint.safetensors")).unwrap();
    let cb = std::fs::read(b.join("checkpoint.safetensors")).unwrap();
    assert!(ca == cb, "two identical runs wrote different checkpoints");
    let mut bad = ca.clone();
    let at = bad.len() - bad.len() / 3;
    bad[at] ^= 0x10;
    let path = d.join("flipped.safetensors");
    std::fs::write(&path, &bad).unwrap();
    let p = path.to_str().unwrap();
    let o = netc(&[
        "eval",
        "networks/alexnet-fmnist.net",
        "--weights",
        p,
        "--data",
        "data/fmnist-small",
    ]);
    let e = stderr(&o);
    assert_eq!(o.status.code(), Some(1), "{e}");
    assert!(
        e.contains("flipped.safetensors") && e.contains("checksum"),
        "{e}"
    );
    let _ = std::fs::remove_dir_all(&d);
}

/// A network through every layer kind (conv, ReLU, LRN, max pooling,
/// dense, dropout, towers and `across`) for the NaN tests.
const EVERY_OP: &str = "
network every_op {
  input image: [2, 9, 9]
  input label: class(3)
  towers 2 {
    c1 = conv(image, filters: 4, size: 3, pad: 1) -> relu -> lrn(size: 3, alpha: 0.1, beta: 0.75, k: 2) -> maxpool(size: 3, stride: 2)
    f = dense(across(c1), units: 8) -> relu -> dropout(rate: 0.5)
  }
  out = dense(across(f), units: 3)
  loss = softmax_xent(out, label)
}
train { init { weight: he  bias: 0.1 } }
";

/// One NaN pixel makes the loss NaN, fused and unfused, at training and
/// at evaluation: ReLU mapped NaN to 0 and max pooling skipped it, so a
/// diverged network looked finite.
#[test]
fn nan_propagates_through_every_op_to_the_loss() {
    for fused in [false, true] {
        let g = if fused {
            common::fused_graph(EVERY_OP).0
        } else {
            common::training_graph(EVERY_OP)
        };
        let mut exec = CpuExec::<f32>::new(g, 2).unwrap();
        let (mut images, labels) = common::batch(&exec, 4, 3, 5);
        let s = exec.eval_batch(&images, &labels).unwrap();
        assert!(s.loss.is_finite(), "fused {fused}: {s:?}");
        // A negative NaN: a ReLU of the old kind returned 0 for it.
        images[40] = -f32::NAN;
        let s = exec.eval_batch(&images, &labels).unwrap();
        assert!(s.loss.is_nan(), "fused {fused}: eval loss {}", s.loss);
        assert!(s.top1 < 4, "fused {fused}: a NaN row counted as correct");
        let s = exec.train_step(&images, &labels, 0.01, 0).unwrap();
        assert!(s.loss.is_nan(), "fused {fused}: train loss {}", s.loss);
    }
}

/// A learning rate of 1e38: the message never calls a finite loss
/// non-finite (it read "the loss became 6.14… at step 0") and says that no
/// checkpoint exists (it said the last good one was kept).
#[test]
fn divergence_names_what_overflowed_and_whether_a_checkpoint_exists() {
    let d = tmp("diverge");
    let src = std::fs::read_to_string("networks/alexnet-fmnist.net")
        .unwrap()
        .replace("lr: 0.01", "lr: 1e38");
    let f = net(&d, "diverge", &src);
    let out = d.join("out");
    let o = netc(&[
        "train",
        &f,
        "--data",
        "data/fmnist-small",
        "--epochs",
        "1",
        "--max-steps",
        "3",
        "--batch",
        "16",
        "--out",
        out.to_str().unwrap(),
    ]);
    let e = stderr(&o);
    assert_eq!(o.status.code(), Some(1), "{e}");
    // Either the overflowed parameter is reported with the finite loss, or
    // the loss that became non-finite (NaN now reaches it) is named as such.
    let honest = e.contains("a parameter became non-finite by step 0 while the loss was still ")
        || e.split("the loss became ").nth(1).is_some_and(|t| {
            let v = t.split_whitespace().next().unwrap_or("");
            v.parse::<f64>().is_ok_and(|v| !v.is_finite())
        });
    assert!(honest, "{e}");
    assert!(e.contains("no checkpoint was written"), "{e}");
    assert!(!out.join("checkpoint.safetensors").exists());
    let _ = std::fs::remove_dir_all(&d);
}

/// A run that fails in a directory holding an earlier run leaves every
/// file of that run as it was (its `metrics.jsonl` was truncated to 0
/// bytes) and no temporary file behind; resuming a finished run writes
/// nothing.
#[test]
fn a_failed_run_never_damages_an_earlier_runs_files() {
    let d = tmp("keep");
    let out = d.join("out");
    let r = short_run(&out, "2");
    assert_eq!(r.status.code(), Some(0), "{}", stderr(&r));
    let snapshot = |dir: &std::path::Path| {
        let mut v: Vec<(String, Vec<u8>)> = std::fs::read_dir(dir)
            .unwrap()
            .map(|e| {
                let e = e.unwrap();
                (
                    e.file_name().to_string_lossy().into_owned(),
                    std::fs::read(e.path()).unwrap(),
                )
            })
            .collect();
        v.sort();
        v
    };
    let before = snapshot(&out);
    let names: Vec<&str> = before.iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(
        names,
        [
            "checkpoint.safetensors",
            "learning-curves.svg",
            "metrics.jsonl"
        ]
    );
    assert!(!before[2].1.is_empty());
    // The same network diverging (learning rate 1e38) into the same directory.
    let src = std::fs::read_to_string("networks/alexnet-fmnist.net")
        .unwrap()
        .replace("lr: 0.01", "lr: 1e38");
    let f = net(&d, "diverge", &src);
    let o = netc(&[
        "train",
        &f,
        "--data",
        "data/fmnist-small",
        "--epochs",
        "1",
        "--max-steps",
        "3",
        "--batch",
        "16",
        "--out",
        out.to_str().unwrap(),
    ]);
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    assert!(
        snapshot(&out) == before,
        "the failed run changed the earlier run's files"
    );
    // Resuming the finished run trains and writes nothing.
    let ck = out.join("checkpoint.safetensors");
    let o = netc(&[
        "train",
        "networks/alexnet-fmnist.net",
        "--data",
        "data/fmnist-small",
        "--epochs",
        "1",
        "--max-steps",
        "2",
        "--batch",
        "16",
        "--out",
        out.to_str().unwrap(),
        "--resume",
        ck.to_str().unwrap(),
    ]);
    let e = stderr(&o);
    assert_eq!(o.status.code(), Some(0), "{e}");
    assert!(
        e.contains("nothing to train") && !e.contains("metrics:"),
        "{e}"
    );
    assert!(snapshot(&out) == before);
    let _ = std::fs::remove_dir_all(&d);
}

/// `--resume` with another `--batch` is refused, as another seed is (it
/// was accepted and gave different results).
#[test]
fn resuming_with_another_batch_is_refused() {
    let d = tmp("rebatch");
    let out = d.join("out");
    let r = short_run(&out, "2");
    assert_eq!(r.status.code(), Some(0), "{}", stderr(&r));
    let ck = out.join("checkpoint.safetensors");
    let o = netc(&[
        "train",
        "networks/alexnet-fmnist.net",
        "--data",
        "data/fmnist-small",
        "--epochs",
        "2",
        "--max-steps",
        "2",
        "--batch",
        "32",
        "--out",
        out.to_str().unwrap(),
        "--resume",
        ck.to_str().unwrap(),
    ]);
    let e = stderr(&o);
    assert_eq!(o.status.code(), Some(1), "{e}");
    assert!(e.contains("trained with batch 16, not 32"), "{e}");
    let _ = std::fs::remove_dir_all(&d);
}

/// `/dev/zero` is refused after a bounded read (it was read without end),
/// and a usage error exits 1 like every other error (it exited 2).
#[test]
fn an_endless_source_is_refused_and_usage_errors_exit_1() {
    let t = std::time::Instant::now();
    let o = netc(&["check", "/dev/zero"]);
    let e = stderr(&o);
    assert_eq!(o.status.code(), Some(1), "{e}");
    assert!(e.contains("/dev/zero") && e.contains("larger than"), "{e}");
    assert!(t.elapsed().as_secs() < 20);
    let o = netc(&["train", "--no-such-flag"]);
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    let o = netc(&["--help"]);
    assert_eq!(o.status.code(), Some(0));
}

/// Data with fewer classes than the network's label input trains with a
/// warning (a 100-class folder was taken by the 1,000-class network
/// silently); data with more is refused.
#[test]
fn a_class_count_that_differs_from_the_data_is_reported() {
    let d = tmp("classes");
    let base = std::fs::read_to_string("networks/alexnet-fmnist.net").unwrap();
    for (k, ok) in [(12, true), (8, false)] {
        let src = base
            .replace("class(10)", &format!("class({k})"))
            .replace("units: 10)", &format!("units: {k})"));
        let f = net(&d, &format!("c{k}"), &src);
        let out = d.join(format!("out{k}"));
        let o = netc(&[
            "train",
            &f,
            "--data",
            "data/fmnist-small",
            "--epochs",
            "1",
            "--max-steps",
            "1",
            "--batch",
            "16",
            "--out",
            out.to_str().unwrap(),
        ]);
        let e = stderr(&o);
        if ok {
            assert_eq!(o.status.code(), Some(0), "{e}");
            assert!(
                e.contains("warning: the data has 10 classes")
                    && e.contains("2 of them are never trained"),
                "{e}"
            );
        } else {
            assert_eq!(o.status.code(), Some(1), "{e}");
            assert!(
                e.contains("the data has 10 classes but the network's `label` input takes 8"),
                "{e}"
            );
        }
    }
    let _ = std::fs::remove_dir_all(&d);
}

/// What a user meant is said back: an IDX folder missing one file names
/// it (not "no class folders"); a sweep of a network that is not there
/// says it cannot read it (not "cannot write"); `rescale` on IDX data is
/// refused (it would be ignored); a data shape that does not fit names the
/// network's input as C×H×W; a JPEG cut short is refused with its path.
#[test]
fn messages_say_what_is_wrong() {
    let d = tmp("messages");
    // An IDX folder without its test images.
    let idx = d.join("idx");
    std::fs::create_dir_all(&idx).unwrap();
    for f in ["train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz"] {
        std::fs::copy(PathBuf::from("data/fmnist-small").join(f), idx.join(f)).unwrap();
    }
    let out = d.join("out");
    let o = netc(&[
        "train",
        "networks/alexnet-fmnist.net",
        "--data",
        idx.to_str().unwrap(),
        "--out",
        out.to_str().unwrap(),
    ]);
    let e = stderr(&o);
    assert_eq!(o.status.code(), Some(1), "{e}");
    assert!(e.contains("t10k-images"), "{e}");
    assert!(!e.contains("class folders"), "{e}");
    // A sweep of a network that does not exist.
    let spec = d.join("sweep.yaml");
    std::fs::write(
        &spec,
        "network: missing.net\nvariants:\n  - name: a\n    changes: []\n",
    )
    .unwrap();
    let o = netc(&["sweep", spec.to_str().unwrap()]);
    let e = stderr(&o);
    assert_eq!(o.status.code(), Some(1), "{e}");
    assert!(e.contains("cannot read the network `missing.net`"), "{e}");
    // `rescale` on IDX data.
    let src = std::fs::read_to_string("networks/alexnet-fmnist.net").unwrap();
    let rescaled = net(
        &d,
        "rescaled",
        &src.replace("    pad: 2", "    pad: 2\n    rescale: 20"),
    );
    let o = netc(&[
        "train",
        &rescaled,
        "--data",
        "data/fmnist-small",
        "--out",
        out.to_str().unwrap(),
    ]);
    let e = stderr(&o);
    assert_eq!(o.status.code(), Some(1), "{e}");
    assert!(
        e.contains("`data.rescale: 20` cannot apply to Fashion-MNIST"),
        "{e}"
    );
    // A network whose input does not fit the data.
    let small = net(
        &d,
        "small",
        "network small {
  input image: [1, 20, 20]
  input label: class(10)
  out = dense(image, units: 10)
  loss = softmax_xent(out, label)
}
",
    );
    let o = netc(&[
        "train",
        &small,
        "--data",
        "data/fmnist-small",
        "--out",
        out.to_str().unwrap(),
    ]);
    let e = stderr(&o);
    assert_eq!(o.status.code(), Some(1), "{e}");
    assert!(e.contains("takes 1×20×20 images (400 values)"), "{e}");
    // A JPEG cut short, in a folder of classes.
    let sample = PathBuf::from("../shared/data/imagenet-sample");
    let first_photo = || {
        let mut classes: Vec<PathBuf> = std::fs::read_dir(&sample)
            .ok()?
            .filter_map(|e| Some(e.ok()?.path()))
            .filter(|p| p.is_dir())
            .collect();
        classes.sort();
        let mut files: Vec<PathBuf> = std::fs::read_dir(classes.first()?)
            .ok()?
            .filter_map(|e| Some(e.ok()?.path()))
            .collect();
        files.sort();
        files.into_iter().next()
    };
    let Some(jpeg) = first_photo() else {
        assert!(
            std::env::var_os("NETC_REQUIRE_DATA").is_none(),
            "{} is missing",
            sample.display()
        );
        eprintln!(
            "skipped the truncated JPEG: {} is missing",
            sample.display()
        );
        return;
    };
    let bytes = std::fs::read(&jpeg).unwrap();
    let folder = d.join("images");
    for class in ["a", "b"] {
        std::fs::create_dir_all(folder.join(class)).unwrap();
        std::fs::write(folder.join(class).join("whole.JPEG"), &bytes).unwrap();
    }
    let cut = folder.join("b").join("cut.JPEG");
    std::fs::write(&cut, &bytes[..2000]).unwrap();
    let e = netc::data::folder::load_image(&cut, 64).unwrap_err();
    assert!(e.to_string().contains("cut.JPEG"), "{e}");
    assert!(e.to_string().contains("truncated JPEG"), "{e}");
    assert!(netc::data::folder::load_image(&folder.join("a").join("whole.JPEG"), 64).is_ok());
    // Training on that folder names the file; without the cut one, it runs
    // and says that it evaluates on its own images (no train/ and val/).
    let tiny = net(
        &d,
        "tiny",
        "network tiny {
  input image: [3, 32, 32]
  input label: class(2)
  out = dense(image, units: 2)
  loss = softmax_xent(out, label)
}
train {
  batch: 2
  epochs: 1
  data { rescale: 32 }
}
",
    );
    let run = |out: &str| {
        netc(&[
            "train",
            &tiny,
            "--data",
            folder.to_str().unwrap(),
            "--out",
            d.join(out).to_str().unwrap(),
        ])
    };
    let o = run("cut");
    let e = stderr(&o);
    assert_eq!(o.status.code(), Some(1), "{e}");
    assert!(
        e.contains("cut.JPEG") && e.contains("truncated JPEG"),
        "{e}"
    );
    std::fs::remove_file(&cut).unwrap();
    let o = run("whole");
    let e = stderr(&o);
    assert_eq!(o.status.code(), Some(0), "{e}");
    assert!(e.contains("so it is evaluated on its own images"), "{e}");
    let _ = std::fs::remove_dir_all(&d);
}

/// `compile --emit memplan` writes its picture beside `-o`, or into the
/// current directory, and says where on stderr (never silently).
#[test]
fn memplan_says_where_its_picture_went() {
    let d = tmp("memplan");
    let net = std::fs::canonicalize("networks/alexnet-fmnist.net").unwrap();
    let o = Command::new(env!("CARGO_BIN_EXE_netc"))
        .args(["compile", net.to_str().unwrap(), "--emit", "memplan"])
        .current_dir(&d)
        .output()
        .unwrap();
    let e = stderr(&o);
    assert_eq!(o.status.code(), Some(0), "{e}");
    assert!(e.contains("wrote memplan.svg"), "{e}");
    assert!(d.join("memplan.svg").is_file());
    let plan = d.join("plans").join("plan.txt");
    std::fs::create_dir_all(plan.parent().unwrap()).unwrap();
    let o = Command::new(env!("CARGO_BIN_EXE_netc"))
        .args(["compile", net.to_str().unwrap(), "--emit", "memplan", "-o"])
        .arg(&plan)
        .current_dir(&d)
        .output()
        .unwrap();
    let e = stderr(&o);
    assert_eq!(o.status.code(), Some(0), "{e}");
    assert!(e.contains("plans/memplan.svg"), "{e}");
    assert!(d.join("plans").join("memplan.svg").is_file() && plan.is_file());
    let _ = std::fs::remove_dir_all(&d);
}

// ---------------------------------------------------------------------
// Outputs: one writer at a time, files replaced whole, metrics that agree
// with their checkpoint.

/// Every file under `dir` (recursively, lock files aside), by path
/// relative to `dir`.
fn tree_bytes(dir: &std::path::Path) -> std::collections::BTreeMap<String, Vec<u8>> {
    fn walk(
        root: &std::path::Path,
        dir: &std::path::Path,
        out: &mut std::collections::BTreeMap<String, Vec<u8>>,
    ) {
        for e in std::fs::read_dir(dir).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                walk(root, &p, out);
            } else if !p.to_string_lossy().ends_with(".lock") {
                let rel = p.strip_prefix(root).unwrap().to_string_lossy().into_owned();
                out.insert(rel, std::fs::read(&p).unwrap());
            }
        }
    }
    let mut out = std::collections::BTreeMap::new();
    walk(dir, dir, &mut out);
    out
}

/// The ENOSPC shim (tests/enospc/enospc.c) built with the system's C
/// compiler; `None`, saying why, where there is none (an error under CI).
fn enospc_shim() -> Option<PathBuf> {
    static SHIM: std::sync::OnceLock<Option<PathBuf>> = std::sync::OnceLock::new();
    SHIM.get_or_init(|| {
        let so = std::env::temp_dir().join(format!("netc-enospc-{}.so", std::process::id()));
        for cc in ["cc", "gcc", "clang"] {
            let built = Command::new(cc)
                .args(["-shared", "-fPIC", "-O1", "-o"])
                .arg(&so)
                .arg("tests/enospc/enospc.c")
                .arg("-ldl")
                .status();
            if built.is_ok_and(|s| s.success()) {
                return Some(so);
            }
        }
        let why = "no C compiler (cc, gcc, clang) built tests/enospc/enospc.c";
        assert!(std::env::var_os("CI").is_none(), "{why}");
        eprintln!("skipping the full-disk checks: {why}");
        None
    })
    .clone()
}

/// `netc args` with every write to a file whose name contains `pattern`
/// failing with ENOSPC.
fn netc_full(shim: &std::path::Path, pattern: &str, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_netc"))
        .args(args)
        .env("LD_PRELOAD", shim)
        .env("NETC_ENOSPC", pattern)
        .output()
        .unwrap()
}

/// For each pattern, `args` run on a full disk for the files whose names
/// contain it: the command fails (exit 1, "No space left"), every file
/// under `dir` it found there is byte-identical afterwards, and no
/// temporary file is left.
fn full_disk_keeps(
    shim: &std::path::Path,
    dir: &std::path::Path,
    patterns: &[&str],
    args: &[&str],
) {
    let before = tree_bytes(dir);
    assert!(!before.is_empty(), "{args:?}: nothing to keep in {dir:?}");
    for pat in patterns {
        let o = netc_full(shim, pat, args);
        let e = stderr(&o);
        assert_eq!(o.status.code(), Some(1), "{pat} {args:?}: {e}");
        assert!(e.contains("No space left"), "{pat} {args:?}: {e}");
        let after = tree_bytes(dir);
        for (name, bytes) in &before {
            assert!(
                after.get(name) == Some(bytes),
                "{pat} {args:?}: a full disk changed or removed `{name}`"
            );
        }
        let tmp: Vec<&String> = after.keys().filter(|n| n.ends_with(".tmp")).collect();
        assert!(tmp.is_empty(), "{pat} {args:?}: left {tmp:?}");
    }
}

/// A few small PNG images in `SRC/{train,val}/{a,b}/`, and with `bad` an
/// undecodable one (for `--skip-bad` and its list).
fn image_tree(dir: &std::path::Path, bad: bool) -> PathBuf {
    let src = dir.join("src");
    for split in ["train", "val"] {
        for (k, class) in ["a", "b"].iter().enumerate() {
            let c = src.join(split).join(class);
            std::fs::create_dir_all(&c).unwrap();
            for i in 0..3u8 {
                image::RgbImage::from_pixel(20, 16, image::Rgb([40 * i, 90 * k as u8, 7]))
                    .save(c.join(format!("{i}.png")))
                    .unwrap();
            }
        }
    }
    if bad {
        std::fs::write(src.join("train/a/broken.png"), b"\x89PNG\r\n\x1a\nnope").unwrap();
    }
    src
}

fn sweep_spec(dir: &std::path::Path, max_steps: u64) -> PathBuf {
    let spec = dir.join("sweep.yaml");
    std::fs::write(
        &spec,
        format!(
            "network: networks/alexnet-fmnist.net
out: {}
train:
  epochs: 1
  max_steps: {max_steps}
  batch: 16
  seed: 3
  data: data/fmnist-small
variants:
  - name: base
  - name: nolrn
    changes: [\"no-lrn\"]
",
            dir.join("sweep").display()
        ),
    )
    .unwrap();
    spec
}

/// A full disk on each file of each command leaves every earlier file
/// byte-identical and no temporary file (`sweep` wrote its tables, plots,
/// `.net` files and `done.json` in place: the earlier table was left at 0
/// bytes; `train` replaced its checkpoint before its metrics).
#[test]
fn a_full_disk_on_any_output_leaves_every_earlier_file_as_it_was() {
    let Some(shim) = enospc_shim() else { return };
    let d = tmp("enospc");
    let s = |p: &std::path::Path| p.to_str().unwrap().to_string();
    // train
    let out = d.join("train");
    let r = short_run(&out, "2");
    assert_eq!(r.status.code(), Some(0), "{}", stderr(&r));
    let out_s = s(&out);
    let mut train = train_args(&out_s, "1", "2");
    train.extend_from_slice(&["--seed", "5"]);
    // Another seed: every file the rerun would write differs from the
    // earlier one.
    full_disk_keeps(
        &shim,
        &out,
        &[
            "checkpoint.safetensors",
            "metrics.jsonl",
            "learning-curves.svg",
        ],
        &train,
    );
    // prepare, with a skipped file and its list
    let src = image_tree(&d, true);
    let ds = d.join("data").join("ds.netcdata");
    std::fs::create_dir_all(ds.parent().unwrap()).unwrap();
    let prepare = [
        "prepare",
        &s(&src),
        "-o",
        &s(&ds),
        "--size",
        "12",
        "--skip-bad",
    ];
    let o = netc(&[
        "prepare",
        &s(&src),
        "-o",
        &s(&ds),
        "--size",
        "8",
        "--skip-bad",
    ]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    assert!(d.join("data/ds.netcdata.skipped.txt").is_file());
    full_disk_keeps(
        &shim,
        &d.join("data"),
        &["ds.netcdata", "skipped.txt"],
        &prepare,
    );
    // sweep: the same spec again rewrites the `.net` files and the tables;
    // another `max_steps` retrains, writing `done.json`.
    let spec = sweep_spec(&d, 1);
    let o = netc(&["sweep", &s(&spec)]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let sweep = d.join("sweep");
    full_disk_keeps(
        &shim,
        &sweep,
        &[
            "results.md",
            "results.csv",
            "curves.svg",
            "base.net",
            "nolrn.net",
        ],
        &["sweep", &s(&spec)],
    );
    let before = tree_bytes(&sweep);
    let spec2 = sweep_spec(&d, 2);
    let o = netc_full(&shim, "done.json", &["sweep", &s(&spec2)]);
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    let after = tree_bytes(&sweep);
    for name in ["results.md", "results.csv", "curves.svg", "base/done.json"] {
        assert!(after[name] == before[name], "a full disk changed `{name}`");
    }
    // compile, kernels, export, import, ablate, eval --predictions
    let files = d.join("files");
    std::fs::create_dir_all(&files).unwrap();
    let ck = s(&out.join("checkpoint.safetensors"));
    let f = |n: &str| s(&files.join(n));
    let (ir, plan, svg, png, onnx, imported, weights, variants, preds) = (
        f("ir.txt"),
        f("plan.txt"),
        f("plan.svg"),
        f("k.png"),
        f("m.onnx"),
        f("imported.net"),
        f("imported.safetensors"),
        f("variants"),
        f("preds.csv"),
    );
    let net = "networks/alexnet-fmnist.net";
    let commands: Vec<(Vec<&str>, Vec<&str>)> = vec![
        (
            vec!["compile", net, "--emit", "ir", "-o", &ir],
            vec!["ir.txt"],
        ),
        (
            vec![
                "compile",
                net,
                "--emit",
                "memplan",
                "-o",
                &plan,
                "--picture",
                &svg,
            ],
            vec!["plan.txt", "plan.svg"],
        ),
        (
            vec!["kernels", net, "--weights", &ck, "-o", &png],
            vec!["k.png"],
        ),
        (
            vec!["export", net, "--weights", &ck, "-o", &onnx],
            vec!["m.onnx"],
        ),
        (
            vec!["import", &onnx, "-o", &imported, "--weights-out", &weights],
            vec!["imported.net", "imported.safetensors"],
        ),
        (
            vec!["ablate", net, "--no-lrn", "-o", &variants],
            vec![".net"],
        ),
        (
            vec![
                "eval",
                net,
                "--weights",
                &ck,
                "--data",
                "data/fmnist-small",
                "--predictions",
                &preds,
            ],
            vec!["preds.csv"],
        ),
    ];
    for (args, _) in &commands {
        let o = netc(args);
        assert_eq!(o.status.code(), Some(0), "{args:?}: {}", stderr(&o));
    }
    for (args, patterns) in &commands {
        full_disk_keeps(&shim, &files, patterns, args);
    }
    let _ = std::fs::remove_dir_all(&d);
}

/// `netc train` into `out` for `steps` steps of one epoch, with `seed`,
/// started (not waited for).
fn spawn_train(out: &std::path::Path, steps: &str) -> std::process::Child {
    Command::new(env!("CARGO_BIN_EXE_netc"))
        .args(train_args(out.to_str().unwrap(), "1", steps))
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap()
}

/// Waits (up to a minute) until `lock` names a process.
fn wait_for_lock(lock: &std::path::Path) -> u32 {
    let t = std::time::Instant::now();
    loop {
        if let Some(pid) = std::fs::read_to_string(lock)
            .ok()
            .and_then(|t| t.trim().parse().ok())
        {
            return pid;
        }
        assert!(t.elapsed().as_secs() < 60, "no lock appeared at {lock:?}");
        std::thread::sleep(std::time::Duration::from_millis(5));
    }
}

/// Two runs of `train`, `prepare` or `sweep` into one output: the second is
/// refused at once, naming the first's process id, and the first's files
/// (and an earlier run's) come out whole. Two trains shared a temporary
/// name (the loser failed with "No such file or directory"); two prepares
/// into one `-o` left a corrupt dataset that `--info` called fine.
#[test]
fn a_second_writer_of_an_output_is_refused_naming_the_first() {
    let d = tmp("lock");
    let s = |p: &std::path::Path| p.to_str().unwrap().to_string();
    // train: a real second process while the first runs.
    let out = d.join("train");
    let r = short_run(&out, "1");
    assert_eq!(r.status.code(), Some(0), "{}", stderr(&r));
    let mut first = spawn_train(&out, "30");
    let pid = wait_for_lock(&out.join(".netc.lock"));
    assert_eq!(pid, first.id());
    let t = std::time::Instant::now();
    let o = short_run(&out, "1");
    let e = stderr(&o);
    assert_eq!(o.status.code(), Some(1), "{e}");
    assert!(
        e.contains(&format!("is being written by another netc run (pid {pid})")),
        "{e}"
    );
    assert!(t.elapsed().as_secs() < 20, "not refused at once");
    let status = first.wait().unwrap();
    assert!(status.success(), "the first run failed");
    let metrics = std::fs::read_to_string(out.join("metrics.jsonl")).unwrap();
    assert_eq!(metrics.lines().count(), 1, "{metrics}");
    assert!(metrics.contains("\"steps\":30}"), "{metrics}");
    assert!(!out.join(".netc.lock").exists(), "the lock file stayed");
    netc::train::run::load_weights(&out.join("checkpoint.safetensors")).unwrap();
    // The same for a sweep folder.
    let spec = sweep_spec(&d, 1);
    let o = netc(&["sweep", &s(&spec)]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let sweep = d.join("sweep");
    let before = tree_bytes(&sweep);
    let spec2 = sweep_spec(&d, 20);
    let mut first = Command::new(env!("CARGO_BIN_EXE_netc"))
        .args(["sweep", &s(&spec2)])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let pid = wait_for_lock(&sweep.join(".netc.lock"));
    let o = netc(&["sweep", &s(&spec)]);
    let e = stderr(&o);
    assert_eq!(o.status.code(), Some(1), "{e}");
    assert!(e.contains(&format!("(pid {pid})")), "{e}");
    assert!(first.wait().unwrap().success());
    let after = tree_bytes(&sweep);
    assert!(after["results.md"] != before["results.md"]);
    assert!(String::from_utf8_lossy(&after["base/done.json"]).contains("\"trained_from\""));
    // prepare: the lock held (as a running prepare holds it) refuses a
    // second run at once and leaves the earlier dataset as it was.
    let src = image_tree(&d, false);
    let ds = d.join("ds.netcdata");
    let o = netc(&["prepare", &s(&src), "-o", &s(&ds), "--size", "8"]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let earlier = std::fs::read(&ds).unwrap();
    let held = netc::fsio::OutputLock::file(&ds).unwrap();
    let o = netc(&["prepare", &s(&src), "-o", &s(&ds), "--size", "12"]);
    let e = stderr(&o);
    assert_eq!(o.status.code(), Some(1), "{e}");
    assert!(e.contains(&format!("(pid {})", std::process::id())), "{e}");
    assert_eq!(std::fs::read(&ds).unwrap(), earlier);
    drop(held);
    // Two prepares with different settings at once: each finishes or is
    // refused, and what is left is a whole dataset.
    for _ in 0..4 {
        let kids: Vec<_> = ["8", "12"]
            .iter()
            .map(|size| {
                Command::new(env!("CARGO_BIN_EXE_netc"))
                    .args(["prepare", &s(&src), "-o", &s(&ds), "--size", size])
                    .stdout(std::process::Stdio::null())
                    .stderr(std::process::Stdio::piped())
                    .spawn()
                    .unwrap()
            })
            .collect();
        for k in kids {
            let k = k.wait_with_output().unwrap();
            let e = stderr(&k);
            assert!(
                k.status.success() || e.contains("is being written by another netc run"),
                "{e}"
            );
        }
        let p = netc::data::prepared::Prepared::open(&ds).unwrap();
        assert_eq!(p.len(), 12);
        let mut buf = Vec::new();
        for i in 0..p.len() {
            let px = p.image(i, &mut buf).unwrap().len();
            assert_eq!(px, p.shape().len(), "record {i}");
        }
    }
    let _ = std::fs::remove_dir_all(&d);
}

/// `metrics.jsonl`'s lines as JSON, without the speed (which differs
/// between runs).
fn metrics_lines(dir: &std::path::Path) -> Vec<serde_json::Value> {
    std::fs::read_to_string(dir.join("metrics.jsonl"))
        .unwrap_or_default()
        .lines()
        .map(|l| {
            let mut v: serde_json::Value = serde_json::from_str(l).unwrap();
            v.as_object_mut().unwrap().remove("images_per_s");
            v
        })
        .collect()
}

/// `train` for `epochs` epochs of 2 steps with `seed` into `out`, with
/// `extra` arguments, on a full disk for `full` when given.
fn train_run(
    out: &std::path::Path,
    seed: &str,
    epochs: &str,
    extra: &[&str],
    full: Option<&str>,
) -> Output {
    let mut args = train_args(out.to_str().unwrap(), epochs, "2");
    args.extend_from_slice(&["--seed", seed]);
    args.extend_from_slice(extra);
    match (full, enospc_shim()) {
        (Some(pat), Some(shim)) => netc_full(&shim, pat, &args),
        _ => netc(&args),
    }
}

/// The checkpoint and the metrics never disagree: a run whose metrics
/// could not be written after an epoch replaced its checkpoint anyway, and
/// the resumed run then lacked that epoch's line for good; a run into the
/// folder of an earlier, different run, resumed after such a failure,
/// reported the earlier run's epoch as its own.
#[test]
fn metrics_always_agree_with_the_checkpoint_and_belong_to_the_run() {
    if enospc_shim().is_none() {
        return;
    }
    let d = tmp("metrics");
    let whole = d.join("whole");
    let r = train_run(&whole, "2", "2", &[], None);
    assert_eq!(r.status.code(), Some(0), "{}", stderr(&r));
    let want = metrics_lines(&whole);
    assert_eq!(want.len(), 2);
    assert!(
        want.iter()
            .all(|l| l["run"] == want[0]["run"] && l["run"].is_string())
    );
    // One epoch, then a resume whose metrics cannot be written, then the
    // same resume on a disk with room.
    let out = d.join("resumed");
    let ck = out.join("checkpoint.safetensors");
    let ck = ck.to_str().unwrap();
    let r = train_run(&out, "2", "2", &["--stop-after", "2"], None);
    assert_eq!(r.status.code(), Some(0), "{}", stderr(&r));
    assert_eq!(metrics_lines(&out).len(), 1);
    let r = train_run(&out, "2", "2", &["--resume", ck], Some("metrics.jsonl"));
    assert_eq!(r.status.code(), Some(1), "{}", stderr(&r));
    assert_eq!(metrics_lines(&out).len(), 1);
    let r = train_run(&out, "2", "2", &["--resume", ck], None);
    assert_eq!(r.status.code(), Some(0), "{}", stderr(&r));
    assert_eq!(metrics_lines(&out), want);
    // An earlier run (seed 1) in the folder; this run (seed 2) fails to
    // write its metrics after its first epoch, then is continued.
    let out = d.join("shared");
    let r = train_run(&out, "1", "1", &[], None);
    assert_eq!(r.status.code(), Some(0), "{}", stderr(&r));
    let earlier = tree_bytes(&out);
    let r = train_run(&out, "2", "2", &[], Some("metrics.jsonl"));
    assert_eq!(r.status.code(), Some(1), "{}", stderr(&r));
    let now = tree_bytes(&out);
    assert_eq!(
        now["checkpoint.safetensors"] == earlier["checkpoint.safetensors"],
        now["metrics.jsonl"] == earlier["metrics.jsonl"],
        "the checkpoint and the metrics disagree"
    );
    let ck = out.join("checkpoint.safetensors");
    let r = train_run(&out, "2", "2", &["--resume", ck.to_str().unwrap()], None);
    if r.status.code() != Some(0) {
        // The checkpoint is still the earlier run's: it is refused, and
        // the run starts afresh.
        assert!(stderr(&r).contains("seed 1"), "{}", stderr(&r));
        let r = train_run(&out, "2", "2", &[], None);
        assert_eq!(r.status.code(), Some(0), "{}", stderr(&r));
    }
    assert_eq!(metrics_lines(&out), want);
    let _ = std::fs::remove_dir_all(&d);
}

/// Rerunning a sweep after changing its settings retrains the variants
/// (it said "not retrained" and kept the old figures beside the new
/// `.net`), and says which; unchanged, they are reused.
#[test]
fn a_sweep_retrains_the_variants_whose_network_or_settings_changed() {
    let d = tmp("sweep-again");
    let s = |p: &std::path::Path| p.to_str().unwrap().to_string();
    let o = netc(&["sweep", &s(&sweep_spec(&d, 1))]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let steps = |v: &str| metrics_lines(&d.join("sweep").join(v))[0]["steps"].clone();
    assert_eq!(steps("base"), 1);
    let o = netc(&["sweep", &s(&sweep_spec(&d, 2))]);
    let e = stderr(&o);
    assert_eq!(o.status.code(), Some(0), "{e}");
    assert!(
        e.contains("base: retrained") && e.contains("nolrn: retrained"),
        "{e}"
    );
    assert!(
        e.contains("retrained (network or settings changed since they finished): base, nolrn"),
        "{e}"
    );
    assert_eq!((steps("base"), steps("nolrn")), (2.into(), 2.into()));
    let results = std::fs::read(d.join("sweep/results.md")).unwrap();
    let o = netc(&["sweep", &s(&sweep_spec(&d, 2))]);
    let e = stderr(&o);
    assert_eq!(o.status.code(), Some(0), "{e}");
    assert!(
        e.contains("base: finished earlier") && !e.contains(": retrained"),
        "{e}"
    );
    assert_eq!(std::fs::read(d.join("sweep/results.md")).unwrap(), results);
    let _ = std::fs::remove_dir_all(&d);
}

/// `prepare -o` never replaces a file that is not a netc dataset (it
/// overwrote it), and a run stopped just before its final rename keeps the
/// earlier dataset's list of skipped files (it had deleted it).
#[test]
fn prepare_replaces_only_its_own_dataset_and_keeps_it_whole() {
    let d = tmp("prepare-own");
    let s = |p: &std::path::Path| p.to_str().unwrap().to_string();
    let src = image_tree(&d, true);
    let precious = d.join("notes.txt");
    std::fs::write(&precious, "not a dataset").unwrap();
    for target in [&precious, &d] {
        let o = netc(&["prepare", &s(&src), "-o", &s(target), "--size", "8"]);
        let e = stderr(&o);
        assert_eq!(o.status.code(), Some(1), "{e}");
        assert!(e.contains("is not a netc dataset"), "{e}");
    }
    assert_eq!(std::fs::read_to_string(&precious).unwrap(), "not a dataset");
    let Some(shim) = enospc_shim() else { return };
    let ds = d.join("ds.netcdata");
    let o = netc(&[
        "prepare",
        &s(&src),
        "-o",
        &s(&ds),
        "--size",
        "8",
        "--skip-bad",
    ]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let list = d.join("ds.netcdata.skipped.txt");
    let (data, skipped) = (std::fs::read(&ds).unwrap(), std::fs::read(&list).unwrap());
    std::fs::remove_file(src.join("train/a/broken.png")).unwrap();
    let o = Command::new(env!("CARGO_BIN_EXE_netc"))
        .args(["prepare", &s(&src), "-o", &s(&ds), "--size", "8"])
        .env("LD_PRELOAD", &shim)
        .env("NETC_FAIL_RENAME", "ds.netcdata")
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    assert_eq!(std::fs::read(&ds).unwrap(), data);
    assert_eq!(
        std::fs::read(&list).ok(),
        Some(skipped),
        "the list was lost"
    );
    let o = netc(&["prepare", &s(&src), "-o", &s(&ds), "--size", "8"]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    assert!(!list.exists(), "a stale list of skipped files stayed");
    let _ = std::fs::remove_dir_all(&d);
}

/// `dir/train/<class>/i.png` for classes `a` and `b`: `n` small PNGs each.
fn tiny_tree(dir: &std::path::Path, n: usize) -> PathBuf {
    let root = dir.join("src");
    for (k, class) in ["a", "b"].iter().enumerate() {
        let c = root.join("train").join(class);
        std::fs::create_dir_all(&c).unwrap();
        for i in 0..n {
            let v = (40 * k + 10 * i) as u8;
            image::RgbImage::from_pixel(12, 10, image::Rgb([v, 255 - v, 90]))
                .save(c.join(format!("{i}.png")))
                .unwrap();
        }
    }
    root
}

/// A PNG whose header says `w × h` pixels (valid chunks, but no pixels).
fn png_header(w: u32, h: u32) -> Vec<u8> {
    let mut ihdr = b"IHDR".to_vec();
    ihdr.extend_from_slice(&w.to_be_bytes());
    ihdr.extend_from_slice(&h.to_be_bytes());
    ihdr.extend_from_slice(&[8, 2, 0, 0, 0]);
    let mut png = b"\x89PNG\r\n\x1a\n".to_vec();
    png.extend_from_slice(&13u32.to_be_bytes());
    png.extend_from_slice(&ihdr);
    png.extend_from_slice(&crc32fast::hash(&ihdr).to_be_bytes());
    let idat = b"IDAT\x78\x9c\x03\x00\x00\x00\x00\x01";
    png.extend_from_slice(&8u32.to_be_bytes());
    png.extend_from_slice(idat);
    png.extend_from_slice(&crc32fast::hash(idat).to_be_bytes());
    png.extend_from_slice(&[0, 0, 0, 0]);
    png.extend_from_slice(b"IEND");
    png.extend_from_slice(&crc32fast::hash(b"IEND").to_be_bytes());
    png
}

/// Every size a user gives is bounded before it allocates, with the figure
/// in the error: `prepare --size 100000` (it aborted allocating
/// 240,000,000,000 bytes), an image whose header claims 100000×100000
/// pixels, a dataset whose stored side is 100000 (checksum intact), and a
/// batch of a trillion images for `train`, `bench` and `compile --target
/// cuda`. Each exits 1, not 134 (nor runs out of memory).
#[test]
fn sizes_a_user_gives_are_bounded_with_the_figure() {
    let d = tmp("bounds");
    let src = tiny_tree(&d, 2);
    let ds = d.join("ds.netc");
    let (s, o) = (src.to_str().unwrap(), ds.to_str().unwrap());
    let r = netc(&["prepare", s, "-o", o, "--size", "100000"]);
    let e = stderr(&r);
    assert_eq!(r.status.code(), Some(1), "{e}");
    assert!(
        e.contains("--size 100000") && e.contains("30000000000 bytes") && e.contains("4096"),
        "{e}"
    );
    // A prepared dataset whose header says 100000 pixels, its CRC redone.
    let r = netc(&["prepare", s, "-o", o, "--size", "8", "--format", "raw"]);
    assert_eq!(r.status.code(), Some(0), "{}", stderr(&r));
    let mut bytes = std::fs::read(&ds).unwrap();
    bytes[20..24].copy_from_slice(&100_000u32.to_le_bytes());
    let crc = crc32fast::hash(&bytes[..4092]);
    bytes[4092..4096].copy_from_slice(&crc.to_le_bytes());
    let big = d.join("big.netc");
    std::fs::write(&big, &bytes).unwrap();
    let r = netc(&["prepare", "--info", big.to_str().unwrap()]);
    let e = stderr(&r);
    assert_eq!(r.status.code(), Some(1), "{e}");
    assert!(
        e.contains("big.netc") && e.contains("100000x100000") && e.contains("4096"),
        "{e}"
    );
    // An image whose header claims 100000 × 100000 pixels.
    std::fs::write(src.join("train/a/huge.png"), png_header(100_000, 100_000)).unwrap();
    let r = netc(&["prepare", s, "-o", o, "--size", "8"]);
    let e = stderr(&r);
    assert_eq!(r.status.code(), Some(1), "{e}");
    assert!(
        e.contains("huge.png") && e.contains("100000x100000") && e.contains("pixels"),
        "{e}"
    );
    // A batch of a trillion images.
    let out = d.join("out");
    let r = netc(&[
        "train",
        "networks/alexnet-fmnist.net",
        "--data",
        "data/fmnist-small",
        "--batch",
        "1000000000000",
        "--out",
        out.to_str().unwrap(),
    ]);
    let e = stderr(&r);
    assert_eq!(r.status.code(), Some(1), "{e}");
    assert!(e.contains("batch of 1000000000000"), "{e}");
    // `bench` allocates its synthetic batch: refused with the figure (it
    // aborted allocating 3,136,000,000,000,000 bytes).
    let r = netc(&[
        "bench",
        "networks/alexnet-fmnist.net",
        "--batch",
        "1000000000000",
        "--steps",
        "1",
    ]);
    let e = stderr(&r);
    assert_eq!(r.status.code(), Some(1), "{e}");
    assert!(
        e.contains("a batch of 1000000000000 images needs ") && e.contains("available"),
        "{e}"
    );
    // CUDA code for a step no GPU could hold: refused with its size (it
    // generated launches until the machine ran out of memory).
    let t = std::time::Instant::now();
    let r = netc(&[
        "compile",
        "networks/alexnet-fmnist.net",
        "--target",
        "cuda",
        "--batch",
        "1000000000000",
        "-o",
        d.join("cu").to_str().unwrap(),
    ]);
    let e = stderr(&r);
    assert_eq!(r.status.code(), Some(1), "{e}");
    assert!(
        e.contains("the step at batch 1000000000000 needs ") && e.contains("1 TiB"),
        "{e}"
    );
    assert!(t.elapsed().as_secs() < 20, "{:?}", t.elapsed());
    let _ = std::fs::remove_dir_all(&d);
}

/// Messages that named nothing, or the wrong cause: `--data` an empty,
/// short or foreign file on a network with `data.rescale` (it blamed
/// Fashion-MNIST); `prepare --info` a folder (it said "No such device");
/// `--skip-bad` with every image bad (it wrote an empty dataset and exited
/// 0); dangling and looping symbolic links (left out unseen); an output
/// folder that cannot be written (a whole epoch was trained first).
#[test]
fn messages_name_the_file_and_the_cause() {
    let d = tmp("messages-cause");
    let out = d.join("out");
    for (name, bytes) in [
        ("empty.netc", &b""[..]),
        ("short.netc", &b"NETC"[..]),
        ("other.netc", &b"neither a dataset nor anything else"[..]),
    ] {
        let f = d.join(name);
        std::fs::write(&f, bytes).unwrap();
        let r = netc(&[
            "train",
            "networks/alexnet.net",
            "--data",
            f.to_str().unwrap(),
            "--out",
            out.to_str().unwrap(),
        ]);
        let e = stderr(&r);
        assert_eq!(r.status.code(), Some(1), "{name}: {e}");
        assert!(
            e.contains(name)
                && e.contains("not a prepared dataset")
                && !e.contains("cannot apply to Fashion"),
            "{name}: {e}"
        );
    }
    let r = netc(&["prepare", "--info", d.to_str().unwrap()]);
    let e = stderr(&r);
    assert_eq!(r.status.code(), Some(1), "{e}");
    assert!(e.contains("a folder, not a prepared dataset"), "{e}");
    // Every image bad: an error, and no dataset.
    let src = tiny_tree(&d, 1);
    for class in ["a", "b"] {
        std::fs::write(src.join(format!("train/{class}/0.png")), b"not a png").unwrap();
    }
    let ds = d.join("ds.netc");
    let (s, o) = (src.to_str().unwrap(), ds.to_str().unwrap());
    let r = netc(&["prepare", s, "-o", o, "--skip-bad"]);
    let e = stderr(&r);
    assert_eq!(r.status.code(), Some(1), "{e}");
    assert!(e.contains("no training image could be prepared"), "{e}");
    assert!(!ds.exists());
    // Dangling and looping links: listed with the skipped files.
    let src = tiny_tree(&d.join("links"), 2);
    let a = src.join("train/a");
    std::os::unix::fs::symlink(d.join("gone.png"), a.join("dangling.png")).unwrap();
    std::os::unix::fs::symlink(a.join("loop.png"), a.join("loop.png")).unwrap();
    let s = src.to_str().unwrap();
    let r = netc(&["prepare", s, "-o", o, "--skip-bad", "--size", "8"]);
    let e = stderr(&r);
    assert_eq!(r.status.code(), Some(0), "{e}");
    let list = std::fs::read_to_string(d.join("ds.netc.skipped.txt")).unwrap();
    assert!(
        list.contains("dangling.png")
            && list.contains("loop.png")
            && list.contains("leads nowhere"),
        "{list}"
    );
    let r = netc(&["prepare", s, "-o", o, "--size", "8"]);
    let e = stderr(&r);
    assert_eq!(r.status.code(), Some(1), "{e}");
    assert!(
        e.contains("dangling.png") && e.contains("leads nowhere"),
        "{e}"
    );
    // An output folder that exists but cannot be written: refused before
    // the first step (it trained an epoch, then failed to checkpoint).
    let r = netc(&[
        "train",
        "networks/alexnet-fmnist.net",
        "--data",
        "data/fmnist-small",
        "--out",
        "/sys",
    ]);
    let e = stderr(&r);
    assert_eq!(r.status.code(), Some(1), "{e}");
    assert!(
        e.contains("/sys: cannot write into the output folder")
            && e.contains("nothing was trained"),
        "{e}"
    );
    let _ = std::fs::remove_dir_all(&d);
}
