//! Data-parallel training under `mpirun`: two ranks, and three, train
//! the same model as one process with the same global batch and seed (same
//! top-1 counts, losses within 1e-4 relative, weights within a stated
//! tolerance); a checkpoint written by two ranks resumes on one process
//! and on three; a batch the ranks do not divide, and ranks that run
//! different settings, are errors on every rank, not hangs; a rank killed
//! with `kill -9` ends the whole job non-zero within a bounded time, and
//! the last checkpoint resumes.
//!
//! Needs the `mpi` feature and `mpirun` (Open MPI). Without either, each
//! test says why it does not run, and fails instead when
//! `NETC_REQUIRE_MPI=1` (CI).

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use netc::train::run::load_weights;

const NET: &str = "networks/alexnet-fmnist.net";
const DATA: &str = "data/fmnist-small";
/// No run here takes a minute; a hang is a failure, not a stuck test.
const LIMIT: Duration = Duration::from_secs(300);

/// Why the multi-rank tests cannot run here, if they cannot.
fn unavailable() -> Option<String> {
    if !cfg!(feature = "mpi") {
        return Some("netc was built without the `mpi` feature (`--features mpi`)".into());
    }
    let found = Command::new("mpirun")
        .arg("--version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if !found {
        return Some("`mpirun` is not on the PATH (Debian: `openmpi-bin`)".into());
    }
    if !Path::new(DATA).join("train-images-idx3-ubyte.gz").exists() {
        return Some(format!("{DATA} is missing"));
    }
    None
}

/// Whether the test may run; says why not, and fails when MPI is required.
fn ready(test: &str) -> bool {
    match unavailable() {
        None => true,
        Some(why) => {
            if std::env::var("NETC_REQUIRE_MPI").as_deref() == Ok("1") {
                panic!("{test}: NETC_REQUIRE_MPI=1 but {why}");
            }
            eprintln!("skipping {test}: {why}");
            false
        }
    }
}

fn tmp(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("netc-dist-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    d
}

/// `netc train` on the test network and data, global batch 32, with
/// `extra` arguments.
fn train_args(out: &Path, extra: &[&str]) -> Vec<String> {
    batch_args(out, 32, extra)
}

/// [`train_args`] with global batch `batch`.
fn batch_args(out: &Path, batch: u64, extra: &[&str]) -> Vec<String> {
    let batch = batch.to_string();
    let mut a: Vec<String> = [
        "train",
        NET,
        "--data",
        DATA,
        "--batch",
        &batch,
        "--seed",
        "3",
        "--epochs",
        "2",
        "--max-steps",
        "5",
        "--quiet",
        "--out",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    a.push(out.display().to_string());
    a.extend(extra.iter().map(|s| s.to_string()));
    a
}

/// Runs `cmd` to the end or [`LIMIT`] (then kills it and fails).
fn run(mut cmd: Command) -> Output {
    let what = format!("{cmd:?}");
    // One thread per process: ranks share the machine's cores.
    cmd.env("RAYON_NUM_THREADS", "1")
        .env("OMPI_MCA_rmaps_base_oversubscribe", "1")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = cmd.spawn().unwrap_or_else(|e| panic!("{what}: {e}"));
    let t0 = Instant::now();
    loop {
        if child.try_wait().unwrap().is_some() {
            return child.wait_with_output().unwrap();
        }
        if t0.elapsed() > LIMIT {
            let _ = child.kill();
            let out = child.wait_with_output().unwrap();
            panic!(
                "{what} did not finish within {LIMIT:?}: {}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn one_process(args: &[String]) -> Output {
    let mut c = Command::new(env!("CARGO_BIN_EXE_netc"));
    c.args(args);
    run(c)
}

fn ranks(n: usize, args: &[String]) -> Output {
    let mut c = Command::new("mpirun");
    c.args(["--oversubscribe", "-np", &n.to_string()])
        .arg(env!("CARGO_BIN_EXE_netc"))
        .args(args);
    run(c)
}

fn ok(o: &Output, what: &str) {
    assert!(
        o.status.success(),
        "{what} failed: {}\n{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    );
}

/// The epochs of a run's `metrics.jsonl`.
fn metrics(out: &Path) -> Vec<serde_json::Value> {
    std::fs::read_to_string(out.join("metrics.jsonl"))
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

fn close(a: f64, b: f64, rel: f64) -> bool {
    (a - b).abs() <= rel * a.abs().max(b.abs()).max(1e-12)
}

/// The per-epoch figures agree: the same top-1 and top-5 counts (errors
/// equal to the last bit: they are counts over the same images), losses
/// within 1e-4 relative.
fn same_epochs(want: &[serde_json::Value], got: &[serde_json::Value]) {
    assert_eq!(want.len(), got.len(), "epochs");
    for (w, g) in want.iter().zip(got) {
        for k in ["top1_error", "top5_error", "steps"] {
            assert_eq!(w[k], g[k], "`{k}` differs: {w} vs {g}");
        }
        for k in ["train_loss", "test_loss"] {
            let (a, b) = (w[k].as_f64().unwrap(), g[k].as_f64().unwrap());
            assert!(close(a, b, 1e-4), "`{k}`: {a} vs {b}");
        }
    }
}

/// Final weights agree within `tol` relative to each tensor's largest
/// value (the ranks sum their gradients in another order than one
/// process: the rounding differs, and momentum carries it on).
fn same_weights(a: &Path, b: &Path, tol: f32) {
    let want = load_weights(&a.join("checkpoint.safetensors")).unwrap();
    let got = load_weights(&b.join("checkpoint.safetensors")).unwrap();
    assert_eq!(want.len(), got.len());
    let mut worst = 0f32;
    for ((na, x), (nb, y)) in want.iter().zip(&got) {
        assert_eq!(na, nb);
        assert_eq!(x.len(), y.len(), "`{na}`");
        let scale = x.iter().fold(0f32, |m, v| m.max(v.abs())).max(1e-6);
        let d = x.iter().zip(y).fold(0f32, |m, (p, q)| m.max((p - q).abs()));
        worst = worst.max(d / scale);
        assert!(
            d <= tol * scale,
            "`{na}`: differs by {d} (largest value {scale})"
        );
    }
    eprintln!("largest weight difference: {worst:e} of the tensor's largest value");
}

/// The stated tolerance of the final weights: 1e-4 of each tensor's
/// largest value, after 10 steps of momentum SGD.
const WEIGHT_TOL: f32 = 1e-4;

#[test]
fn two_ranks_train_the_model_one_process_trains() {
    if !ready("two_ranks_train_the_model_one_process_trains") {
        return;
    }
    let one = tmp("one");
    ok(&one_process(&train_args(&one, &[])), "one process");
    let two = tmp("two");
    let o = ranks(2, &train_args(&two, &[]));
    ok(&o, "two ranks");
    same_epochs(&metrics(&one), &metrics(&two));
    same_weights(&one, &two, WEIGHT_TOL);
    let _ = std::fs::remove_dir_all(&one);
    let _ = std::fs::remove_dir_all(&two);
}

#[test]
fn three_ranks_train_the_model_one_process_trains() {
    if !ready("three_ranks_train_the_model_one_process_trains") {
        return;
    }
    // Three ranks: a ring whose sums are not the same expression on every
    // rank; the broadcast before each evaluation keeps them one model.
    let one = tmp("one48");
    ok(&one_process(&batch_args(&one, 48, &[])), "one process");
    let three = tmp("three48");
    ok(&ranks(3, &batch_args(&three, 48, &[])), "three ranks");
    same_epochs(&metrics(&one), &metrics(&three));
    same_weights(&one, &three, WEIGHT_TOL);
    // Two ranks stop at step 3; three ranks resume and finish the run.
    let part = tmp("part48");
    ok(
        &ranks(2, &batch_args(&part, 48, &["--stop-after", "3"])),
        "two ranks, stopped",
    );
    let ck = part.join("checkpoint.safetensors");
    let resume = [
        "train".to_string(),
        NET.into(),
        "--quiet".into(),
        "--resume".into(),
        ck.display().to_string(),
    ];
    ok(&ranks(3, &resume), "three ranks, resumed");
    same_epochs(&metrics(&one), &metrics(&part));
    same_weights(&one, &part, WEIGHT_TOL);
    for d in [one, three, part] {
        let _ = std::fs::remove_dir_all(d);
    }
}

#[test]
fn a_two_rank_checkpoint_resumes_on_one_process() {
    if !ready("a_two_rank_checkpoint_resumes_on_one_process") {
        return;
    }
    let one = tmp("whole");
    ok(&one_process(&train_args(&one, &[])), "one process");
    // Two ranks stop mid-epoch 1 (step 3 of 5); one process finishes.
    let part = tmp("part");
    ok(
        &ranks(2, &train_args(&part, &["--stop-after", "3"])),
        "two ranks, stopped",
    );
    let ck = part.join("checkpoint.safetensors");
    let resume = [
        "train".to_string(),
        NET.into(),
        "--quiet".into(),
        "--resume".into(),
        ck.display().to_string(),
    ];
    ok(&one_process(&resume), "one process, resumed");
    same_epochs(&metrics(&one), &metrics(&part));
    same_weights(&one, &part, WEIGHT_TOL);
    let _ = std::fs::remove_dir_all(&one);
    let _ = std::fs::remove_dir_all(&part);
}

#[test]
fn a_batch_the_ranks_do_not_divide_is_refused_on_every_rank() {
    if !ready("a_batch_the_ranks_do_not_divide_is_refused_on_every_rank") {
        return;
    }
    let out = tmp("three");
    let o = ranks(3, &train_args(&out, &[]));
    assert!(!o.status.success(), "3 ranks took a batch of 32");
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        err.contains("the global batch 32 does not divide among 3 ranks"),
        "{err}"
    );
    assert!(
        !out.join("checkpoint.safetensors").exists(),
        "nothing is written"
    );
    let _ = std::fs::remove_dir_all(&out);
}

#[test]
fn ranks_that_run_different_settings_stop_with_an_error() {
    if !ready("ranks_that_run_different_settings_stop_with_an_error") {
        return;
    }
    let out = tmp("mismatch");
    // Rank 0 with seed 3, rank 1 with seed 4 (MPMD launch).
    let mut other = train_args(&out, &[]);
    let at = other.iter().position(|a| a == "--seed").unwrap();
    other[at + 1] = "4".into();
    let mut c = Command::new("mpirun");
    c.args(["--oversubscribe", "-np", "1"])
        .arg(env!("CARGO_BIN_EXE_netc"))
        .args(train_args(&out, &[]))
        .args([":", "-np", "1"])
        .arg(env!("CARGO_BIN_EXE_netc"))
        .args(&other);
    let o = run(c);
    assert!(!o.status.success(), "ranks with different seeds trained");
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains("what rank 0 runs"), "{err}");
    let _ = std::fs::remove_dir_all(&out);
}

/// The processes whose parent is `parent` (from `/proc`).
fn children(parent: u32) -> Vec<u32> {
    let mut out = Vec::new();
    for e in std::fs::read_dir("/proc").unwrap().flatten() {
        let Ok(pid) = e.file_name().to_string_lossy().parse::<u32>() else {
            continue;
        };
        let Ok(stat) = std::fs::read_to_string(e.path().join("stat")) else {
            continue;
        };
        // `pid (comm) state ppid …`: the fields after the last `)`.
        let ppid = stat
            .rsplit_once(')')
            .and_then(|(_, rest)| rest.split_whitespace().nth(1)?.parse::<u32>().ok());
        if ppid == Some(parent) {
            out.push(pid);
        }
    }
    out
}

#[test]
fn a_rank_killed_mid_run_ends_the_job_and_the_checkpoint_resumes() {
    if !ready("a_rank_killed_mid_run_ends_the_job_and_the_checkpoint_resumes") {
        return;
    }
    let out = tmp("killed");
    let mut args = batch_args(&out, 32, &["--checkpoint-every", "2"]);
    let at = args.iter().position(|a| a == "--epochs").unwrap();
    args[at + 1] = "40".into();
    let mut c = Command::new("mpirun");
    c.args(["--oversubscribe", "-np", "2"])
        .arg(env!("CARGO_BIN_EXE_netc"))
        .args(&args)
        .env("RAYON_NUM_THREADS", "1")
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    let mut job = c.spawn().unwrap();
    let ck = out.join("checkpoint.safetensors");
    let t0 = Instant::now();
    while !ck.exists() {
        assert!(t0.elapsed() < LIMIT, "no checkpoint within {LIMIT:?}");
        if job.try_wait().unwrap().is_some() {
            let mut err = String::new();
            use std::io::Read;
            let _ = job.stderr.take().unwrap().read_to_string(&mut err);
            panic!("the job ended early: {err}");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    // Rank processes are mpirun's children running netc; kill one with -9.
    let ranks_now: Vec<u32> = children(job.id())
        .into_iter()
        .filter(|p| {
            std::fs::read_to_string(format!("/proc/{p}/comm")).is_ok_and(|c| c.trim() == "netc")
        })
        .collect();
    assert_eq!(ranks_now.len(), 2, "two rank processes under mpirun");
    let killed = Command::new("kill")
        .args(["-9", &ranks_now[1].to_string()])
        .status()
        .unwrap();
    assert!(killed.success());
    let t1 = Instant::now();
    let status = loop {
        if let Some(s) = job.try_wait().unwrap() {
            break s;
        }
        assert!(
            t1.elapsed() < Duration::from_secs(60),
            "the job did not end within 60 s of a rank's death"
        );
        std::thread::sleep(Duration::from_millis(50));
    };
    assert!(!status.success(), "a job with a killed rank exited 0");
    // The surviving rank is gone too, not left waiting in a collective.
    let alive = |p: u32| {
        std::fs::read_to_string(format!("/proc/{p}/stat")).is_ok_and(|s| {
            s.rsplit_once(')')
                .is_some_and(|(_, r)| !r.trim_start().starts_with('Z'))
        })
    };
    let t2 = Instant::now();
    while alive(ranks_now[0]) {
        assert!(
            t2.elapsed() < Duration::from_secs(30),
            "rank 0 still runs after the job ended"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    // The last checkpoint is intact, and resuming it twice (on 2 ranks)
    // continues the same run: the same weights both times.
    let weights = load_weights(&ck).expect("the last checkpoint loads");
    assert!(!weights.is_empty());
    let mut finals = Vec::new();
    for k in 0..2 {
        let dir = tmp(&format!("killed-resume{k}"));
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::copy(&ck, dir.join("checkpoint.safetensors")).unwrap();
        let resume = [
            "train".to_string(),
            NET.into(),
            "--quiet".into(),
            "--steps".into(),
            "30".into(),
            "--resume".into(),
            dir.join("checkpoint.safetensors").display().to_string(),
        ];
        ok(&ranks(2, &resume), "resumed");
        finals.push(load_weights(&dir.join("checkpoint.safetensors")).unwrap());
        let _ = std::fs::remove_dir_all(&dir);
    }
    assert!(
        finals[0] == finals[1],
        "two resumes of one checkpoint differ"
    );
    let _ = std::fs::remove_dir_all(&out);
}

#[test]
fn batchnorm_ranks_evaluate_with_rank_0s_running_statistics() {
    if !ready("batchnorm_ranks_evaluate_with_rank_0s_running_statistics") {
        return;
    }
    // Batch normalisation on 2 ranks: per-rank batch statistics in the
    // steps; before the evaluation rank 0's running statistics go to every
    // rank, so the sharded evaluation equals one process evaluating the
    // checkpoint rank 0 wrote.
    let net = "tests/nets/residual-bn.net";
    let out = tmp("bn");
    let mut args = train_args(&out, &[]);
    args[1] = net.into();
    ok(&ranks(2, &args), "two ranks, batchnorm");
    let m = metrics(&out);
    let last = m.last().unwrap();
    let mut c = Command::new(env!("CARGO_BIN_EXE_netc"));
    c.args(["eval", net, "--data", DATA, "--batch", "16", "--weights"])
        .arg(out.join("checkpoint.safetensors"));
    let o = run(c);
    ok(&o, "eval");
    let said = String::from_utf8_lossy(&o.stdout);
    let want = format!(
        "top-1 error {:.2}%, top-5 error {:.2}%, loss {:.4}",
        100.0 * last["top1_error"].as_f64().unwrap(),
        100.0 * last["top5_error"].as_f64().unwrap(),
        last["test_loss"].as_f64().unwrap()
    );
    assert!(
        said.contains(&want),
        "eval says {said}, training said {want}"
    );
    let _ = std::fs::remove_dir_all(&out);
}
