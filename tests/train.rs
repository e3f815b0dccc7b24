//! The training step end to end on the CPU executor: the loss falls on the
//! embedded Fashion-MNIST subset, runs are bit-for-bit reproducible from a
//! seed whatever the thread count, and dropout is off at evaluation.

use netc::backend::cpu::exec::CpuExec;
use netc::data::Dataset;
use netc::frontend;
use netc::passes::autodiff::autodiff;

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

// ---- The command line: results on stdout, resume settings, cheap checks first.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

/// `netc ARGS` run in `dir` (the crate's root when `None`).
fn netc_in(dir: Option<&Path>, args: &[&str]) -> Output {
    let mut c = Command::new(env!("CARGO_BIN_EXE_netc"));
    c.args(args);
    if let Some(d) = dir {
        c.current_dir(d);
    }
    c.output().expect("netc runs")
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

/// A fresh directory under the system's temporary directory.
fn fresh(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("netc-train-cli-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

fn root(p: &str) -> String {
    format!("{}/{p}", env!("CARGO_MANIFEST_DIR"))
}

/// `netc train … > log` keeps the epoch lines and the closing line (they
/// went to stderr); the notes stay on stderr. `--json -q` prints one JSON
/// object per epoch and one for the outcome, and nothing on stderr.
#[test]
fn epoch_lines_go_to_stdout_and_notes_to_stderr() {
    let d = fresh("stdout");
    let out = d.join("out");
    let net = root("networks/alexnet-fmnist.net");
    let data = root("data/fmnist-small");
    let args = [
        "train",
        &net,
        "--data",
        &data,
        "--epochs",
        "2",
        "--max-steps",
        "2",
        "--batch",
        "16",
        "--out",
        out.to_str().unwrap(),
    ];
    let o = netc_in(None, &args);
    let (so, se) = (text(&o.stdout), text(&o.stderr));
    assert_eq!(o.status.code(), Some(0), "{se}");
    let lines: Vec<&str> = so.lines().collect();
    assert_eq!(lines.len(), 3, "{so}");
    assert!(
        lines[0].starts_with("epoch   1") && lines[0].contains("top-1 error"),
        "{so}"
    );
    assert!(lines[1].starts_with("epoch   2"), "{so}");
    assert!(lines[2].starts_with("metrics: "), "{so}");
    assert!(se.contains("data: Fashion-MNIST from"), "{se}");
    assert!(
        !se.contains("top-1 error") && !se.contains("metrics:"),
        "{se}"
    );
    assert!(!so.contains("data:"), "{so}");

    let mut json = args.to_vec();
    json.extend(["--json", "-q"]);
    let o = netc_in(None, &json);
    let (so, se) = (text(&o.stdout), text(&o.stderr));
    assert_eq!(o.status.code(), Some(0), "{se}");
    assert!(se.trim().is_empty(), "quiet, yet stderr says: {se}");
    let v: Vec<serde_json::Value> = so
        .lines()
        .map(|l| serde_json::from_str(l).expect("a JSON object per line"))
        .collect();
    assert_eq!(v.len(), 3, "{so}");
    assert_eq!(v[0]["epoch"], 1);
    assert_eq!(v[1]["epoch"], 2);
    assert_eq!(v[1]["steps"], 4);
    assert!(v[1]["top1_error"].as_f64().is_some(), "{so}");
    assert_eq!(v[2]["epochs"], 2);
    assert!(
        v[2]["weights"]
            .as_str()
            .is_some_and(|w| w.ends_with("checkpoint.safetensors")),
        "{so}"
    );
    let _ = std::fs::remove_dir_all(&d);
}

/// `--steps N` counts steps in all (`--max-steps` counts per epoch): the
/// epoch in progress ends at step N with its evaluation and checkpoint,
/// and the run with it. `--max-steps` alone with a file of many epochs
/// says so, and `--steps 0` is refused.
#[test]
fn steps_count_in_all_and_max_steps_says_it_is_per_epoch() {
    let d = fresh("steps");
    let out = d.join("out");
    let net = root("networks/alexnet-fmnist.net");
    let data = root("data/fmnist-small");
    let o = netc_in(
        None,
        &[
            "train",
            &net,
            "--data",
            &data,
            "--epochs",
            "5",
            "--max-steps",
            "2",
            "--steps",
            "3",
            "--batch",
            "16",
            "--out",
            out.to_str().unwrap(),
        ],
    );
    let so = text(&o.stdout);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o.stderr));
    let epochs: Vec<&str> = so.lines().filter(|l| l.starts_with("epoch")).collect();
    assert_eq!(
        epochs.len(),
        2,
        "three steps: one epoch of 2, one of 1\n{so}"
    );
    let metrics = std::fs::read_to_string(out.join("metrics.jsonl")).unwrap();
    let steps: Vec<u64> = metrics
        .lines()
        .map(|l| {
            serde_json::from_str::<netc::train::report::EpochReport>(l)
                .unwrap()
                .steps
        })
        .collect();
    assert_eq!(steps, [2, 3], "{metrics}");
    let p = netc::model::checkpoint::load(&out.join("checkpoint.safetensors"))
        .unwrap()
        .progress;
    assert_eq!((p.epoch, p.batch, p.step), (2, 0, 3));

    // `--max-steps` without `--epochs`: the file's 12 epochs, said on stderr
    // (`--stop-after 0` only writes the initial checkpoint).
    let o = netc_in(
        None,
        &[
            "train",
            &net,
            "--data",
            &data,
            "--max-steps",
            "1",
            "--stop-after",
            "0",
            "--batch",
            "16",
            "--out",
            d.join("note").to_str().unwrap(),
        ],
    );
    let se = text(&o.stderr);
    assert_eq!(o.status.code(), Some(0), "{se}");
    assert!(
        se.contains("`--max-steps 1` limits each of the file's 12 epochs")
            && se.contains("--steps 1"),
        "{se}"
    );
    assert!(text(&o.stdout).contains("stopped at step 0"));

    let o = netc_in(
        None,
        &[
            "train",
            &net,
            "--data",
            &data,
            "--steps",
            "0",
            "--out",
            d.join("zero").to_str().unwrap(),
        ],
    );
    let se = text(&o.stderr);
    assert_eq!(o.status.code(), Some(1), "{se}");
    assert!(
        se.contains("`--steps 0` would take no training step"),
        "{se}"
    );
    let _ = std::fs::remove_dir_all(&d);
}

/// `--resume CHECKPOINT` alone, from another directory: the run goes on in
/// the checkpoint's folder (no `out/` where it was started) with the
/// seed, batch, epochs, `--max-steps` and data the checkpoint records.
#[test]
fn resume_continues_in_its_folder_with_its_settings() {
    let d = fresh("resume");
    let run = d.join("run");
    let net = root("networks/alexnet-fmnist.net");
    let o = netc_in(
        None,
        &[
            "train",
            &net,
            "--data",
            "data/fmnist-small",
            "--epochs",
            "2",
            "--max-steps",
            "2",
            "--batch",
            "16",
            "--seed",
            "5",
            "--stop-after",
            "3",
            "--out",
            run.to_str().unwrap(),
        ],
    );
    assert_eq!(o.status.code(), Some(0), "{}", text(&o.stderr));
    assert!(
        text(&o.stdout).contains("stopped at step 3"),
        "{}",
        text(&o.stdout)
    );
    let elsewhere = d.join("elsewhere");
    std::fs::create_dir_all(&elsewhere).unwrap();
    let ck = run.join("checkpoint.safetensors");
    let o = netc_in(
        Some(&elsewhere),
        &["train", &net, "--resume", ck.to_str().unwrap()],
    );
    let (so, se) = (text(&o.stdout), text(&o.stderr));
    assert_eq!(o.status.code(), Some(0), "{se}");
    assert!(se.contains("the checkpoint's, where not given"), "{se}");
    assert!(
        se.contains("data: Fashion-MNIST from") && se.contains("fmnist-small"),
        "{se}"
    );
    assert!(so.lines().any(|l| l.starts_with("epoch   2")), "{so}");
    assert!(
        !elsewhere.join("out").exists(),
        "wrote to out/ where it was started"
    );
    let metrics = std::fs::read_to_string(run.join("metrics.jsonl")).unwrap();
    let steps: Vec<u64> = metrics
        .lines()
        .map(|l| {
            serde_json::from_str::<netc::train::report::EpochReport>(l)
                .unwrap()
                .steps
        })
        .collect();
    assert_eq!(
        steps,
        [2, 4],
        "2 epochs of 2 steps, not the file's 12 of all\n{metrics}"
    );
    let p = netc::model::checkpoint::load(&ck).unwrap().progress;
    assert_eq!((p.epoch, p.step, p.seed, p.batch_size), (2, 4, 5, 16));
    // Told otherwise, it does otherwise: one more epoch.
    let o = netc_in(
        Some(&elsewhere),
        &[
            "train",
            &net,
            "--resume",
            ck.to_str().unwrap(),
            "--epochs",
            "3",
        ],
    );
    assert_eq!(o.status.code(), Some(0), "{}", text(&o.stderr));
    let p = netc::model::checkpoint::load(&ck).unwrap().progress;
    assert_eq!((p.epoch, p.step), (3, 6));
    let _ = std::fs::remove_dir_all(&d);
}

/// Another network's checkpoint is refused before any data is read (the
/// data here, an empty folder, would fail if it were read); a `--data`
/// that names nothing or a file that is not a dataset says so in one
/// line, naming it (never as a Fashion-MNIST folder), and leaves no `--out`.
#[test]
fn cheap_checks_come_first_and_a_bad_data_path_says_what_it_is() {
    let d = fresh("cheap");
    let other = d.join("other");
    let o = netc_in(
        None,
        &[
            "train",
            "networks/fig1-fmnist.net",
            "--data",
            "data/fmnist-small",
            "--batch",
            "16",
            "--stop-after",
            "0",
            "--out",
            other.to_str().unwrap(),
        ],
    );
    assert_eq!(o.status.code(), Some(0), "{}", text(&o.stderr));
    let empty = d.join("empty");
    std::fs::create_dir_all(&empty).unwrap();
    let ck = other.join("checkpoint.safetensors");
    let o = netc_in(
        None,
        &[
            "train",
            "networks/alexnet-fmnist.net",
            "--data",
            empty.to_str().unwrap(),
            "--resume",
            ck.to_str().unwrap(),
            "--out",
            d.join("o").to_str().unwrap(),
        ],
    );
    let se = text(&o.stderr);
    assert_eq!(o.status.code(), Some(1), "{se}");
    assert!(se.contains("written for a different network"), "{se}");
    assert!(
        !se.contains("class folders") && !se.contains("data:"),
        "{se}"
    );

    let yaml = d.join("spec.yaml");
    std::fs::write(&yaml, "variants: []\n").unwrap();
    let nope = d.join("nope");
    for (path, what) in [
        (&nope, "no such file or folder"),
        (&yaml, "a file that is not a prepared dataset"),
    ] {
        let out = d.join("never");
        for cmd in ["train", "eval"] {
            let mut args = vec![
                cmd,
                "networks/alexnet-fmnist.net",
                "--data",
                path.to_str().unwrap(),
            ];
            if cmd == "train" {
                args.extend(["--out", out.to_str().unwrap()]);
            } else {
                args.extend(["--weights", ck.to_str().unwrap()]);
            }
            let o = netc_in(None, &args);
            let se = text(&o.stderr);
            assert_eq!(o.status.code(), Some(1), "{args:?}: {se}");
            assert_eq!(se.trim_end().lines().count(), 1, "{args:?}: {se}");
            assert!(
                se.contains(&format!("--data {}: {what}", path.display())),
                "{args:?}: {se}"
            );
            assert!(
                !se.contains("idx3-ubyte") && !se.contains("Not a directory"),
                "{se}"
            );
            assert!(!out.exists(), "{args:?} created its --out");
        }
    }
    let _ = std::fs::remove_dir_all(&d);
}

/// Every command is listed by `netc --help`, `cuda-check` included.
#[test]
fn every_command_is_in_help() {
    let o = netc_in(None, &["--help"]);
    let help = text(&o.stdout);
    assert_eq!(o.status.code(), Some(0), "{help}");
    for cmd in [
        "compile",
        "check",
        "train",
        "prepare",
        "eval",
        "predict",
        "kernels",
        "bench",
        "ablate",
        "sweep",
        "cuda-check",
        "fmt",
        "export",
        "import",
    ] {
        assert!(
            help.lines()
                .any(|l| l.trim_start().starts_with(&format!("{cmd} "))),
            "`{cmd}` missing from --help:\n{help}"
        );
        let o = netc_in(None, &[cmd, "--help"]);
        assert_eq!(o.status.code(), Some(0), "{cmd} --help");
    }
    let train = text(&netc_in(None, &["train", "--help"]).stdout);
    for flag in [
        "--steps",
        "--max-steps <STEPS_PER_EPOCH>",
        "--quiet",
        "--json",
    ] {
        assert!(train.contains(flag), "{flag} missing:\n{train}");
    }
}

/// `netc sweep … > log` keeps each variant's header and epoch lines and
/// where the results are (they went to stderr).
#[test]
fn a_sweep_prints_its_results_on_stdout() {
    let d = fresh("sweep");
    let spec = d.join("s.yaml");
    std::fs::write(
        &spec,
        format!(
            "network: {}\nout: {}\ntrain: {{ epochs: 1, max_steps: 2, batch: 16, seed: 1 }}\nvariants:\n  - name: base\n",
            root("networks/fig1-fmnist.net"),
            d.join("out").display()
        ),
    )
    .unwrap();
    let o = netc_in(
        None,
        &[
            "sweep",
            spec.to_str().unwrap(),
            "--data",
            "data/fmnist-small",
        ],
    );
    let (so, se) = (text(&o.stdout), text(&o.stderr));
    assert_eq!(o.status.code(), Some(0), "{se}");
    let lines: Vec<&str> = so.lines().collect();
    assert!(
        lines.first().is_some_and(|l| l.starts_with("== base")),
        "{so}"
    );
    assert!(lines.iter().any(|l| l.starts_with("epoch   1")), "{so}");
    assert!(
        lines.last().is_some_and(|l| l.starts_with("results: ")),
        "{so}"
    );
    assert!(
        !se.contains("epoch   1") && !se.contains("results: "),
        "{se}"
    );
    let _ = std::fs::remove_dir_all(&d);
}

/// A checkpoint written before netc recorded a run's settings still
/// resumes: the resume says the file's and command line's epochs,
/// `--max-steps` and `--data` are used; its seed and batch are still taken
/// from it (given none, the file's 128 would have been refused).
#[test]
fn a_checkpoint_without_settings_resumes_and_says_so() {
    let d = fresh("legacy");
    let run = d.join("run");
    let data = root("data/fmnist-small");
    let o = netc_in(
        None,
        &[
            "train",
            "networks/alexnet-fmnist.net",
            "--data",
            &data,
            "--batch",
            "16",
            "--seed",
            "9",
            "--stop-after",
            "0",
            "--out",
            run.to_str().unwrap(),
        ],
    );
    assert_eq!(o.status.code(), Some(0), "{}", text(&o.stderr));
    let ck = run.join("checkpoint.safetensors");
    let old = netc::model::checkpoint::load(&ck).unwrap();
    assert!(
        old.progress.settings.is_some(),
        "a new checkpoint records them"
    );
    let mut progress = old.progress.clone();
    progress.settings = None;
    let tensors: Vec<(String, Vec<usize>, &[f32])> = old
        .tensors
        .iter()
        .map(|(k, (shape, v))| (k.clone(), shape.clone(), v.as_slice()))
        .collect();
    netc::model::checkpoint::save(
        &ck,
        &old.network,
        &old.fingerprint,
        &progress,
        old.preparation.as_ref(),
        &tensors,
    )
    .unwrap();
    let o = netc_in(
        None,
        &[
            "train",
            "networks/alexnet-fmnist.net",
            "--data",
            &data,
            "--resume",
            ck.to_str().unwrap(),
            "--stop-after",
            "1",
        ],
    );
    let (so, se) = (text(&o.stdout), text(&o.stderr));
    assert_eq!(o.status.code(), Some(0), "{se}");
    assert!(
        se.contains("the checkpoint does not record its epochs"),
        "{se}"
    );
    assert!(so.contains("stopped at step 1"), "{so}");
    let p = netc::model::checkpoint::load(&ck).unwrap().progress;
    assert_eq!((p.seed, p.batch_size, p.step), (9, 16, 1));
    assert!(
        p.settings
            .is_some_and(|s| s.epochs == 12 && s.max_steps.is_none())
    );
    let _ = std::fs::remove_dir_all(&d);
}

/// A resume whose recorded data is gone says so at once, naming the path
/// and where it came from.
#[test]
fn a_resume_whose_recorded_data_is_gone_says_so() {
    let d = fresh("gone");
    let data = d.join("data");
    std::fs::create_dir_all(&data).unwrap();
    for e in std::fs::read_dir("data/fmnist-small").unwrap() {
        let e = e.unwrap();
        std::fs::copy(e.path(), data.join(e.file_name())).unwrap();
    }
    let run = d.join("run");
    let o = netc_in(
        None,
        &[
            "train",
            "networks/alexnet-fmnist.net",
            "--data",
            data.to_str().unwrap(),
            "--batch",
            "16",
            "--stop-after",
            "0",
            "--out",
            run.to_str().unwrap(),
        ],
    );
    assert_eq!(o.status.code(), Some(0), "{}", text(&o.stderr));
    std::fs::remove_dir_all(&data).unwrap();
    let ck = run.join("checkpoint.safetensors");
    let o = netc_in(
        None,
        &[
            "train",
            "networks/alexnet-fmnist.net",
            "--resume",
            ck.to_str().unwrap(),
        ],
    );
    let se = text(&o.stderr);
    assert_eq!(o.status.code(), Some(1), "{se}");
    assert!(
        se.contains(&format!(
            "--data {}: no such file or folder",
            data.display()
        )) && se.contains("the data the checkpoint records"),
        "{se}"
    );
    let _ = std::fs::remove_dir_all(&d);
}
