//! `netc run`: the forward pass on tensors in a `.npy` file. On a model
//! netc imported (`tests/onnx/torch-resnet-small.onnx`, 1×28×28): the
//! logits it writes are `train::weights::logits` on the same tensors, bit
//! for bit, N×C×H×W giving N×classes and one C×H×W giving `classes`;
//! where the Python has numpy and onnxruntime, they are onnxruntime's on
//! the model file. A tensor of another shape, a file that is not `.npy`
//! and an integer array are refused with what they hold.

use std::path::{Path, PathBuf};
use std::process::Command;

const NETC: &str = env!("CARGO_BIN_EXE_netc");

fn tmp(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("netc-run-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

fn netc(args: &[&Path]) -> (bool, String) {
    let out = Command::new(NETC).args(args).output().unwrap();
    (
        out.status.success(),
        format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ),
    )
}

fn p(s: &str) -> &Path {
    Path::new(s)
}

/// Deterministic values in about [-2, 2].
fn values(n: usize, seed: u64) -> Vec<f32> {
    let mut s = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    (0..n)
        .map(|_| {
            s ^= s << 13;
            s ^= s >> 7;
            s ^= s << 17;
            ((s >> 40) as f32 / (1u64 << 24) as f32 - 0.5) * 4.0
        })
        .collect()
}

#[test]
fn run_gives_the_logits_of_npy_tensors() {
    let dir = tmp("resnet");
    let model = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/onnx/torch-resnet-small.onnx");
    let (net, ck) = (dir.join("m.net"), dir.join("m.safetensors"));
    let (ok, text) = netc(&[p("import"), &model, p("-o"), &net, p("--weights-out"), &ck]);
    assert!(ok, "{text}");
    let x = values(5 * 28 * 28, 3);
    let (xin, yout) = (dir.join("x.npy"), dir.join("y.npy"));
    std::fs::write(&xin, netc::npy::write_f32(&[5, 1, 28, 28], &x)).unwrap();
    let (ok, text) = netc(&[
        p("run"),
        &net,
        p("--weights"),
        &ck,
        p("--input"),
        &xin,
        p("-o"),
        &yout,
        p("--batch"),
        p("2"),
    ]);
    assert!(ok, "{text}");
    let (dims, y) = netc::npy::read_f32(&std::fs::read(&yout).unwrap()).unwrap();
    let m = netc::frontend::check_file(&net).unwrap().0.module;
    let w = netc::model::weights::load(&m, &ck).unwrap();
    let want = netc::model::weights::logits(&m, &w, &x, 5).unwrap();
    let classes = want.len() / 5;
    assert_eq!(dims, vec![5, classes]);
    assert_eq!(y, want);
    // One C×H×W tensor: a vector of classes, the first row.
    let one = dir.join("one.npy");
    std::fs::write(&one, netc::npy::write_f32(&[1, 28, 28], &x[..28 * 28])).unwrap();
    let (ok, text) = netc(&[
        p("run"),
        &net,
        p("--weights"),
        &ck,
        p("--input"),
        &one,
        p("-o"),
        &yout,
    ]);
    assert!(ok, "{text}");
    let (dims, y1) = netc::npy::read_f32(&std::fs::read(&yout).unwrap()).unwrap();
    assert_eq!(dims, vec![classes]);
    assert_eq!(y1, want[..classes]);
    // Refusals: another shape, not .npy, integers.
    let refused = |bytes: Vec<u8>, want: &str| {
        let bad = dir.join("bad.npy");
        std::fs::write(&bad, bytes).unwrap();
        let (ok, text) = netc(&[
            p("run"),
            &net,
            p("--weights"),
            &ck,
            p("--input"),
            &bad,
            p("-o"),
            &dir.join("never.npy"),
        ]);
        assert!(!ok && text.contains(want), "{text}");
        assert!(!dir.join("never.npy").exists());
    };
    refused(
        netc::npy::write_f32(&[2, 3, 28, 28], &values(2 * 3 * 784, 1)),
        "[2, 3, 28, 28]",
    );
    refused(b"not an npy file".to_vec(), "magic");
    let mut ints = netc::npy::write_f32(&[1, 28, 28], &x[..784]);
    let at = ints.windows(3).position(|w| w == b"<f4").unwrap();
    ints[at + 1] = b'i';
    refused(ints, "'<i4'");
    // onnxruntime on the model file, where the Python has it.
    let py = std::env::var("NETC_PYTHON").unwrap_or_else(|_| "python3".into());
    let script = "import sys, numpy as np, onnxruntime as ort\n\
        s = ort.InferenceSession(sys.argv[1])\n\
        r = s.run(None, {s.get_inputs()[0].name: np.load(sys.argv[2])})[0]\n\
        y = np.load(sys.argv[3])\n\
        print(float(np.abs(r - y).max() / np.abs(r).max()))\n";
    std::fs::write(
        dir.join("y5.npy"),
        netc::npy::write_f32(&[5, classes], &want),
    )
    .unwrap();
    let out = Command::new(&py)
        .args(["-c", script])
        .arg(&model)
        .arg(&xin)
        .arg(dir.join("y5.npy"))
        .output()
        .ok()
        .filter(|o| o.status.success());
    match out {
        Some(o) => {
            let rel: f64 = String::from_utf8_lossy(&o.stdout).trim().parse().unwrap();
            eprintln!("netc run against onnxruntime: worst relative difference {rel:.3e}");
            assert!(rel <= 1e-5, "{rel}");
        }
        None => {
            assert!(
                std::env::var("NETC_REQUIRE_ONNX").as_deref() != Ok("1"),
                "NETC_REQUIRE_ONNX=1 but `{py}` cannot run numpy and onnxruntime"
            );
            eprintln!(
                "skipping the onnxruntime comparison: `{py}` cannot import numpy and onnxruntime"
            );
        }
    }
    let _ = std::fs::remove_dir_all(&dir);
}
