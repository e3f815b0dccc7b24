//! ONNX: `netc export` checked by onnx's checker and onnxruntime against
//! netc's own logits (the CPU executor's evaluation), for the Fashion-MNIST
//! network trained a few steps (64 real test images) and for the paper's
//! network with its initial weights (64 deterministic synthetic images,
//! since CI has no ImageNet photos).
//!
//! Round trip: `netc export` then `netc import` gives a network with the
//! same parameter count and MACs, and the same logits; so for the
//! networks of the newer layers (batchnorm, residual `add`, every conv
//! form, tanh, pooling with padding, towers of them). Models netc did not
//! write (`tests/onnx/torch-alexnet-small.onnx` and
//! `torch-resnet-small.onnx`, made by `tests/onnx/make_foreign.py` and
//! `make_foreign_resnet.py`) are imported and their logits compared with
//! onnxruntime's on the same file. Where the Python has PyTorch,
//! `bench/netc_to_torch.py` reproduces netc's logits from the checkpoint.
//!
//! The Python side is `tests/onnx/check.py`, run by `$NETC_PYTHON` (default
//! `python3`). Without onnx, onnxruntime and numpy there the tests print
//! why and skip; `NETC_REQUIRE_ONNX=1` makes that a failure.

use std::path::{Path, PathBuf};
use std::process::Command;

use netc::model::weights;

#[path = "onnx/forms.rs"]
mod forms;
#[path = "onnx/hostile.rs"]
mod hostile;

const NETC: &str = env!("CARGO_BIN_EXE_netc");

/// The Python that has onnx and onnxruntime, or `None` (skip) with the reason printed.
fn python() -> Option<String> {
    let py = std::env::var("NETC_PYTHON").unwrap_or_else(|_| "python3".into());
    let ok = Command::new(&py)
        .args(["-c", "import onnx, onnxruntime, numpy"])
        .output()
        .is_ok_and(|o| o.status.success());
    if ok {
        return Some(py);
    }
    let why = format!(
        "`{py}` cannot import onnx, onnxruntime and numpy (`python3 -m pip install onnx onnxruntime numpy`, or set NETC_PYTHON)"
    );
    assert!(
        std::env::var("NETC_REQUIRE_ONNX").as_deref() != Ok("1"),
        "NETC_REQUIRE_ONNX=1 but {why}"
    );
    eprintln!("skipping: {why}");
    None
}

fn tmp(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("netc-onnx-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

fn netc(args: &[&str]) -> String {
    let out = Command::new(NETC).args(args).output().unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "netc {args:?} failed:\n{text}");
    text
}

fn write_f32(path: &Path, v: &[f32]) {
    let bytes: Vec<u8> = v.iter().flat_map(|x| x.to_le_bytes()).collect();
    std::fs::write(path, bytes).unwrap();
}

/// Runs check.py on a model, inputs and netc's logits; returns the worst
/// relative error it measured (it fails the test above 1e-4).
pub fn check(py: &str, model: &Path, images: &[f32], logits: &[f32], dir: &Path) -> f64 {
    let (xi, xl) = (dir.join("inputs.f32"), dir.join("logits.f32"));
    write_f32(&xi, images);
    write_f32(&xl, logits);
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/onnx/check.py");
    let out = Command::new(py)
        .arg(&script)
        .args([model, &xi, &xl])
        .output()
        .unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    eprintln!("{}:\n{text}", model.display());
    assert!(out.status.success(), "check.py failed:\n{text}");
    text.lines()
        .find_map(|l| l.strip_prefix("worst relative error "))
        .and_then(|l| l.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .expect("check.py printed no error figure")
}

/// Deterministic synthetic images in the range of mean-subtracted pixels.
fn synthetic(n: usize, len: usize, seed: u64) -> Vec<f32> {
    let mut s = seed
        .wrapping_mul(6364136223846793005)
        .wrapping_add(1442695040888963407);
    (0..n * len)
        .map(|_| {
            s = s
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            ((s >> 40) as f32 / (1u64 << 24) as f32 - 0.5) * 255.0
        })
        .collect()
}

fn module(path: &Path) -> netc::lower::Module {
    netc::frontend::check_file(path).unwrap().0.module
}

/// The largest per-image relative difference of two sets of logits.
fn rel_diff(a: &[f32], b: &[f32], classes: usize) -> f64 {
    assert_eq!(a.len(), b.len());
    a.chunks(classes)
        .zip(b.chunks(classes))
        .map(|(x, y)| {
            let d = x
                .iter()
                .zip(y)
                .map(|(p, q)| (p - q).abs())
                .fold(0f32, f32::max);
            let m = y.iter().map(|q| q.abs()).fold(1e-30f32, f32::max);
            (d / m) as f64
        })
        .fold(0.0, f64::max)
}

/// `netc import MODEL` into `dir`: the new `.net` file and its checkpoint.
fn import(model: &Path, dir: &Path) -> (PathBuf, PathBuf) {
    let net = dir.join("imported.net");
    let ck = dir.join("imported.safetensors");
    netc(&[
        "import",
        model.to_str().unwrap(),
        "-o",
        net.to_str().unwrap(),
        "--weights-out",
        ck.to_str().unwrap(),
    ]);
    (net, ck)
}

/// `netc import` of `model`; the new network must compile to the same
/// parameter count and MACs as `original` (when given) and give the same
/// logits on `images`. Returns the imported network and its weights.
fn round_trip(
    model: &Path,
    dir: &Path,
    original: Option<&netc::lower::Module>,
    images: &[f32],
    want: &[f32],
    classes: usize,
) -> (netc::lower::Module, weights::Weights) {
    let (net, ck) = import(model, dir);
    netc(&["check", net.to_str().unwrap()]);
    let text = std::fs::read_to_string(&net).unwrap();
    eprintln!("{}:\n{text}", net.display());
    let m = module(&net);
    if let Some(o) = original {
        let (a, b) = (
            netc::ir::cost::total(&o.graph),
            netc::ir::cost::total(&m.graph),
        );
        assert_eq!((a.params, a.macs), (b.params, b.macs), "{text}");
    }
    let w = weights::load(&m, &ck).unwrap();
    let got = weights::logits(&m, &w, images, 16).unwrap();
    let d = rel_diff(&got, want, classes);
    eprintln!(
        "{}: imported logits vs reference: worst relative difference {d:.3e}",
        model.display()
    );
    assert!(d <= 1e-4, "{d}");
    (m, w)
}

/// The Python has PyTorch (for `bench/netc_to_torch.py`).
fn has_torch(py: &str) -> bool {
    Command::new(py)
        .args(["-c", "import torch"])
        .output()
        .is_ok_and(|o| o.status.success())
}

#[test]
fn fmnist_trained_a_few_steps_matches_onnxruntime() {
    let Some(py) = python() else { return };
    let dir = tmp("fmnist");
    let run = dir.join("run");
    netc(&[
        "train",
        "networks/alexnet-fmnist.net",
        "--data",
        "data/fmnist-small",
        "--epochs",
        "1",
        "--max-steps",
        "3",
        "--out",
        run.to_str().unwrap(),
    ]);
    let ckpt = run.join("checkpoint.safetensors");
    let model = dir.join("alexnet-fmnist.onnx");
    netc(&[
        "export",
        "networks/alexnet-fmnist.net",
        "--weights",
        ckpt.to_str().unwrap(),
        "-o",
        model.to_str().unwrap(),
    ]);
    let m = module(Path::new("networks/alexnet-fmnist.net"));
    let w = weights::load(&m, &ckpt).unwrap();
    let (images, _) = weights::test_images(&m, Some(Path::new("data/fmnist-small")), 64).unwrap();
    assert_eq!(images.len(), 64 * 28 * 28);
    let logits = weights::logits(&m, &w, &images, 64).unwrap();
    let worst = check(&py, &model, &images, &logits, &dir);
    eprintln!("alexnet-fmnist, trained 3 steps: worst relative error {worst:.3e}");
    assert!(worst <= 1e-4);
    round_trip(&model, &dir, Some(&m), &images, &logits, 10);
    // The checkpoint in PyTorch.
    if has_torch(&py) {
        let ir = dir.join("net.ir");
        let text = netc(&["compile", "networks/alexnet-fmnist.net", "--emit", "ir"]);
        std::fs::write(&ir, text).unwrap();
        let out = Command::new(&py)
            .arg(Path::new(env!("CARGO_MANIFEST_DIR")).join("bench/netc_to_torch.py"))
            .args([&ir, &ckpt])
            .arg("--inputs")
            .arg(dir.join("inputs.f32"))
            .arg("--logits")
            .arg(dir.join("logits.f32"))
            .output()
            .unwrap();
        let text = String::from_utf8_lossy(&out.stdout).to_string()
            + &String::from_utf8_lossy(&out.stderr);
        eprintln!("bench/netc_to_torch.py:\n{text}");
        assert!(out.status.success(), "{text}");
    } else {
        eprintln!("skipping bench/netc_to_torch.py: `{py}` has no PyTorch");
    }
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn alexnet_initial_weights_match_onnxruntime() {
    let Some(py) = python() else { return };
    let dir = tmp("alexnet");
    let model = dir.join("alexnet.onnx");
    netc(&[
        "export",
        "networks/alexnet.net",
        "-o",
        model.to_str().unwrap(),
    ]);
    let m = module(Path::new("networks/alexnet.net"));
    let w = weights::initial(&m);
    let images = synthetic(64, 3 * 227 * 227, 7);
    let logits = weights::logits(&m, &w, &images, 16).unwrap();
    let worst = check(&py, &model, &images, &logits, &dir);
    eprintln!("alexnet, initial weights: worst relative error {worst:.3e}");
    assert!(worst <= 1e-4);
    let few = 8 * 3 * 227 * 227;
    round_trip(
        &model,
        &dir,
        Some(&m),
        &images[..few],
        &logits[..8 * 1000],
        1000,
    );
    let _ = std::fs::remove_dir_all(&dir);
}

/// The issue-15 layers through ONNX: each network trained 2 steps on the
/// embedded subset (so batchnorm's running statistics have moved), then
/// exported, checked in onnxruntime against netc's logits, imported back
/// (same parameters and MACs, same logits) and, for a network of one
/// tower, imported as one tower with its `groups` kept.
#[test]
fn new_layers_export_and_import_and_match_onnxruntime() {
    let Some(py) = python() else { return };
    for net in [
        "networks/lenet5.net",
        "networks/allconv-fmnist.net",
        "networks/resnet-fmnist.net",
        "networks/vgg-fmnist.net",
        "tests/nets/residual-bn.net",
        "tests/nets/towers-mixed.net",
    ] {
        let stem = Path::new(net).file_stem().unwrap().to_str().unwrap();
        let dir = tmp(stem);
        let run = dir.join("run");
        netc(&[
            "train",
            net,
            "--data",
            "data/fmnist-small",
            "--epochs",
            "1",
            "--max-steps",
            "2",
            "--out",
            run.to_str().unwrap(),
        ]);
        let ckpt = run.join("checkpoint.safetensors");
        let model = dir.join(format!("{stem}.onnx"));
        netc(&[
            "export",
            net,
            "--weights",
            ckpt.to_str().unwrap(),
            "-o",
            model.to_str().unwrap(),
        ]);
        let m = module(Path::new(net));
        let w = weights::load(&m, &ckpt).unwrap();
        let (images, _) =
            weights::test_images(&m, Some(Path::new("data/fmnist-small")), 32).unwrap();
        let logits = weights::logits(&m, &w, &images, 32).unwrap();
        let worst = check(&py, &model, &images, &logits, &dir);
        eprintln!("{net}, trained 2 steps: worst relative error {worst:.3e}");
        assert!(worst <= 1e-4, "{net}: {worst}");
        let (back, _) = round_trip(&model, &dir, Some(&m), &images, &logits, 10);
        let text = std::fs::read_to_string(dir.join("imported.net")).unwrap();
        let towers = m
            .graph
            .node_ids()
            .any(|n| matches!(m.graph.node(n).device, netc::ir::Device::Tower(t) if t > 0));
        let back_towers = back
            .graph
            .node_ids()
            .any(|n| matches!(back.graph.node(n).device, netc::ir::Device::Tower(t) if t > 0));
        assert_eq!(
            towers, back_towers,
            "{net}: towers lost or made up:\n{text}"
        );
        // Numbers come back as written (0.1, not 0.100000024).
        assert!(!text.contains("00000") && !text.contains("99999"), "{text}");
        let src = std::fs::read_to_string(net).unwrap();
        for word in [
            "batchnorm",
            "tanh",
            "sigmoid",
            "leaky_relu",
            "avgpool",
            "add(",
            "groups:",
            "bias: false",
            "dilation:",
        ] {
            if src.contains(word) {
                assert!(
                    text.contains(word),
                    "{net}: `{word}` did not come back:\n{text}"
                );
            }
        }
        let _ = std::fs::remove_dir_all(&dir);
    }
}

#[test]
fn a_model_netc_did_not_write_imports_and_matches_onnxruntime() {
    let Some(py) = python() else { return };
    // (file, image size, layers its import must have)
    let models: [(&str, &[usize], &[&str]); 2] = [
        (
            "torch-alexnet-small.onnx",
            &[3, 127, 127],
            &["conv(", "maxpool", "dense"],
        ),
        (
            "torch-resnet-small.onnx",
            &[1, 28, 28],
            &[
                "bias: false",
                "batchnorm(momentum: 0.1, eps: 1e-5)",
                "maxpool(size: 3, stride: 2, pad: 1)",
                "layer1 = add(layer1_conv2, conv1)",
                "global_avgpool",
                "leaky_relu(slope: 0.2)",
                "tanh",
            ],
        ),
    ];
    for (file, dims, want) in models {
        let dir = tmp(file.trim_end_matches(".onnx"));
        let model = Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("tests/onnx")
            .join(file);
        let (net, ck) = import(&model, &dir);
        let text = std::fs::read_to_string(&net).unwrap();
        eprintln!("{text}");
        for w in want {
            assert!(text.contains(w), "{file}: no `{w}` in\n{text}");
        }
        let m = module(&net);
        let w = weights::load(&m, &ck).unwrap();
        let images = synthetic(64, dims.iter().product(), 11);
        let logits = weights::logits(&m, &w, &images, 64).unwrap();
        let worst = check(&py, &model, &images, &logits, &dir);
        eprintln!("{file}: worst relative error {worst:.3e}");
        assert!(worst <= 1e-4);
        let _ = std::fs::remove_dir_all(&dir);
    }
}

#[test]
fn import_refuses_bad_models_with_a_clear_error() {
    let dir = tmp("bad");
    let run = |bytes: &[u8]| {
        let p = dir.join("bad.onnx");
        std::fs::write(&p, bytes).unwrap();
        let out = Command::new(NETC)
            .args(["import", p.to_str().unwrap(), "-o"])
            .arg(dir.join("out.net"))
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(1));
        assert!(!dir.join("out.net").exists());
        String::from_utf8_lossy(&out.stderr).to_string()
    };
    let e = run(b"this is not a protobuf message at all");
    assert!(e.contains("not an ONNX model"), "{e}");
    let e = run(&[]);
    assert!(e.contains("no graph"), "{e}");
    // The foreign model with one node renamed to an operator netc lacks.
    let model = std::fs::read(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/onnx/torch-alexnet-small.onnx"),
    )
    .unwrap();
    let mut m =
        <netc::onnx::proto::ModelProto as prost::Message>::decode(model.as_slice()).unwrap();
    let g = m.graph.as_mut().unwrap();
    g.node[1].op_type = "HardSwish".into();
    let e = run(&prost::Message::encode_to_vec(&m));
    assert!(
        e.contains("operator `HardSwish` (node `/features/features.1/Relu`) has no netc layer"),
        "{e}"
    );
    // The residual model with a batchnorm in training mode, and with a
    // max pool padded more after than before.
    let resnet = std::fs::read(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/onnx/torch-resnet-small.onnx"),
    )
    .unwrap();
    let edit = |f: &dyn Fn(&mut netc::onnx::proto::NodeProto)| {
        let mut m =
            <netc::onnx::proto::ModelProto as prost::Message>::decode(resnet.as_slice()).unwrap();
        let g = m.graph.as_mut().unwrap();
        for n in &mut g.node {
            f(n);
        }
        prost::Message::encode_to_vec(&m)
    };
    let e = run(&edit(&|n| {
        if n.op_type == "BatchNormalization" {
            n.attribute
                .push(netc::onnx::proto::AttributeProto::int("training_mode", 1));
        }
    }));
    assert!(e.contains("is in training mode"), "{e}");
    let e = run(&edit(&|n| {
        if n.op_type == "MaxPool" {
            for a in &mut n.attribute {
                if a.name == "pads" {
                    a.ints = vec![1, 1, 2, 2];
                }
            }
        }
    }));
    assert!(e.contains("differ before and after"), "{e}");
    // Cut short.
    let e = run(&model[..model.len() / 2]);
    assert!(e.contains("not an ONNX model"), "{e}");
    let _ = std::fs::remove_dir_all(&dir);
}

/// The metadata says what the input is: grey for one channel, RGB for
/// three (it said RGB for Fashion-MNIST's grey images).
#[test]
fn the_preparation_metadata_names_grey_or_rgb() {
    use netc::onnx::export::preparation;
    let layout = |file: &str| {
        let src = std::fs::read_to_string(file).unwrap();
        let c = netc::frontend::compile(&src).unwrap_or_else(|d| panic!("{}", d.message));
        let g = &c.module.graph;
        let (image, ..) = g.training_io().unwrap();
        preparation(&c.module.train.data, g.node(image).ty.dims())
            .into_iter()
            .find(|(k, _)| k == "netc.prep.layout")
            .unwrap()
            .1
    };
    assert_eq!(layout("networks/lenet5.net"), "NCHW, grey, pixels 0..255");
    assert_eq!(layout("networks/alexnet.net"), "NCHW, RGB, pixels 0..255");
}
