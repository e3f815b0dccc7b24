//! ONNX's backend conformance cases through `netc import` and `netc run`.
//!
//! The cases: ONNX's node cases (`tests/onnx/node_cases.py` writes them
//! from the onnx package's definitions, since its wheel does not ship
//! `data/node`) and the `pytorch-converted` and `pytorch-operator` cases
//! the wheel ships. A case is run where every operator of its graph is
//! one netc maps ([`MAPPED`]); each is then passed, refused (the import
//! says why) or failed (imported, but `netc run` fails or its output
//! differs from the case's beyond rtol 1e-3 and 1e-5 of the output's
//! largest magnitude).
//!
//! netc's networks take one N×C×H×W float image and give one value per
//! image, so the harness makes a case's further graph inputs (a weight
//! or a bias given as an input, with its values in the case's data)
//! initializers before the import; an output computed by a `Softmax` is
//! compared after a softmax of `run`'s logits. A case whose input is not
//! N×C×H×W, whose output is not a layer's, or whose attributes netc
//! cannot express is refused with that reason, as the README's table
//! says.
//!
//! Asserts: no mapped case fails; no refusal of a mapped case says its
//! operator has no netc layer; at least [`MIN_PASSED`] pass. Prints the
//! counts per operator (the README's table) and the refusals' reasons.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;

use netc::onnx::proto::{ModelProto, TensorProto};
use prost::Message;

const NETC: &str = env!("CARGO_BIN_EXE_netc");

/// The ONNX operators netc maps to layers (or folds, or reads as nothing).
const MAPPED: &[&str] = &[
    "Conv",
    "Gemm",
    "MatMul",
    "Add",
    "Sum",
    "Relu",
    "Tanh",
    "Sigmoid",
    "LeakyRelu",
    "LRN",
    "MaxPool",
    "AveragePool",
    "GlobalAveragePool",
    "BatchNormalization",
    "Dropout",
    "Identity",
    "Flatten",
    "Reshape",
    "Concat",
    "Softmax",
    "ReduceMean",
    "Constant",
];

/// The fewest cases that must pass (what passes now, less a margin for
/// cases a newer onnx package renames).
const MIN_PASSED: usize = 40;

fn python() -> Option<String> {
    let py = std::env::var("NETC_PYTHON").unwrap_or_else(|_| "python3".into());
    let ok = Command::new(&py)
        .args(["-c", "import onnx, numpy"])
        .output()
        .is_ok_and(|o| o.status.success());
    if ok {
        return Some(py);
    }
    let why = format!("`{py}` cannot import onnx and numpy (`python3 -m pip install onnx numpy`)");
    assert!(
        std::env::var("NETC_REQUIRE_ONNX").as_deref() != Ok("1"),
        "NETC_REQUIRE_ONNX=1 but {why}"
    );
    eprintln!("skipping: {why}");
    None
}

enum Outcome {
    Passed,
    Refused(String),
    Failed(String),
}

fn netc(args: &[&Path]) -> Result<(), String> {
    let out = Command::new(NETC).args(args).output().unwrap();
    if out.status.success() {
        Ok(())
    } else {
        Err(String::from_utf8_lossy(&out.stderr).trim().to_string())
    }
}

fn tensor(path: &Path) -> Option<TensorProto> {
    TensorProto::decode(std::fs::read(path).ok()?.as_slice()).ok()
}

/// A float tensor's values (raw or typed).
fn floats(t: &TensorProto) -> Option<Vec<f32>> {
    if t.data_type != 1 {
        return None;
    }
    if !t.raw_data.is_empty() {
        return Some(
            t.raw_data
                .chunks_exact(4)
                .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
                .collect(),
        );
    }
    Some(t.float_data.clone())
}

fn run_case(case: &Path, work: &Path) -> Outcome {
    let data = case.join("test_data_set_0");
    let mut m = ModelProto::decode(std::fs::read(case.join("model.onnx")).unwrap().as_slice())
        .expect("the case's model decodes");
    let g = m.graph.as_mut().unwrap();
    let inits: Vec<String> = g.initializer.iter().map(|t| t.name.clone()).collect();
    let inputs: Vec<String> = g
        .input
        .iter()
        .map(|i| i.name.clone())
        .filter(|n| !inits.contains(n))
        .collect();
    // Inputs past the first: initializers with the case's values.
    for (j, name) in inputs.iter().enumerate().skip(1) {
        let Some(mut t) = tensor(&data.join(format!("input_{j}.pb"))) else {
            return Outcome::Refused(format!("input `{name}` has no data"));
        };
        t.name = name.clone();
        g.initializer.push(t);
    }
    let softmax_out = g.node.iter().any(|n| {
        n.op_type == "Softmax" && g.output.first().is_some_and(|o| n.output.contains(&o.name))
    });
    let model = work.join("model.onnx");
    std::fs::write(&model, m.encode_to_vec()).unwrap();
    let (net, ck) = (work.join("m.net"), work.join("m.safetensors"));
    if let Err(e) = netc(&[
        Path::new("import"),
        &model,
        Path::new("-o"),
        &net,
        Path::new("--weights-out"),
        &ck,
    ]) {
        return Outcome::Refused(e);
    }
    let Some(x) = tensor(&data.join("input_0.pb")) else {
        return Outcome::Failed("no input_0.pb".into());
    };
    let (Some(xv), Some(want)) = (
        floats(&x),
        tensor(&data.join("output_0.pb")).and_then(|t| floats(&t)),
    ) else {
        return Outcome::Failed("imported, but its data is not float".into());
    };
    let dims: Vec<usize> = x.dims.iter().map(|&d| d as usize).collect();
    let (xin, yout) = (work.join("x.npy"), work.join("y.npy"));
    std::fs::write(&xin, netc::npy::write_f32(&dims, &xv)).unwrap();
    if let Err(e) = netc(&[
        Path::new("run"),
        &net,
        Path::new("--weights"),
        &ck,
        Path::new("--input"),
        &xin,
        Path::new("-o"),
        &yout,
    ]) {
        return Outcome::Failed(format!("imported, but run failed: {e}"));
    }
    let (ydims, mut y) = netc::npy::read_f32(&std::fs::read(&yout).unwrap()).unwrap();
    if y.len() != want.len() {
        return Outcome::Failed(format!(
            "run gave {ydims:?} ({} values) for {} expected",
            y.len(),
            want.len()
        ));
    }
    if softmax_out {
        let k = ydims.last().copied().unwrap_or(1).max(1);
        for row in y.chunks_mut(k) {
            let mx = row.iter().copied().fold(f32::NEG_INFINITY, f32::max);
            let s: f32 = row.iter().map(|v| (v - mx).exp()).sum();
            for v in row.iter_mut() {
                *v = (*v - mx).exp() / s;
            }
        }
    }
    let scale = want.iter().map(|v| v.abs()).fold(0f32, f32::max);
    let bad = y
        .iter()
        .zip(&want)
        .position(|(a, b)| (a - b).abs() > 1e-5 * scale.max(1e-3) + 1e-3 * b.abs());
    match bad {
        None => Outcome::Passed,
        Some(i) => Outcome::Failed(format!(
            "value {i}: netc {} where the case has {}",
            y[i], want[i]
        )),
    }
}

/// A refusal's reason without the file and node names: what the README's
/// table groups by.
fn reason(e: &str) -> String {
    let e = e.strip_prefix("error: ").unwrap_or(e);
    let e = e.split_once("`: ").map_or(e, |(_, r)| r);
    let e = e.split_once("): ").map_or(e, |(_, r)| r);
    let mut r: String = e.chars().take(110).collect();
    if r.len() < e.len() {
        r.push('…');
    }
    // Names of the case's values differ case by case.
    if r.starts_with("the model input") && r.contains("has shape") {
        return "the model's input is not N×C×H×W (netc takes images)".into();
    }
    if r.contains("is not a vector of class scores computed by a layer") {
        return "the model's output is not computed by a layer (the input itself, or a constant)"
            .into();
    }
    r
}

#[test]
fn onnx_conformance_cases_of_the_mapped_operators_pass_or_are_refused_with_a_reason() {
    let Some(py) = python() else { return };
    let root = std::env::temp_dir().join(format!("netc-conformance-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&root);
    std::fs::create_dir_all(&root).unwrap();
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/onnx/node_cases.py");
    let out = Command::new(&py).arg(&script).arg(&root).output().unwrap();
    assert!(
        out.status.success(),
        "node_cases.py failed:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    eprintln!("{}", String::from_utf8_lossy(&out.stdout).trim());
    let out = Command::new(&py)
        .args([
            "-c",
            "import onnx, os; print(os.path.join(os.path.dirname(onnx.__file__), 'backend', 'test', 'data'))",
        ])
        .output()
        .unwrap();
    let shipped = PathBuf::from(String::from_utf8_lossy(&out.stdout).trim());
    let collections = [
        ("node", root.join("node")),
        ("pytorch-converted", shipped.join("pytorch-converted")),
        ("pytorch-operator", shipped.join("pytorch-operator")),
    ];
    // operator -> (passed, refused, failed)
    let mut table: BTreeMap<String, [usize; 3]> = BTreeMap::new();
    let mut reasons: BTreeMap<String, usize> = BTreeMap::new();
    let (mut failures, mut wrong_refusals) = (Vec::new(), Vec::new());
    let (mut total, mut other) = (0, 0);
    let work = root.join("work");
    std::fs::create_dir_all(&work).unwrap();
    for (coll, dir) in &collections {
        let Ok(rd) = std::fs::read_dir(dir) else {
            panic!("no cases in {}", dir.display());
        };
        let mut cases: Vec<PathBuf> = rd.filter_map(|e| e.ok().map(|e| e.path())).collect();
        cases.sort();
        for case in cases {
            let Ok(bytes) = std::fs::read(case.join("model.onnx")) else {
                continue;
            };
            let Ok(m) = ModelProto::decode(bytes.as_slice()) else {
                continue;
            };
            total += 1;
            let g = m.graph.unwrap_or_default();
            let mut ops: Vec<&str> = g.node.iter().map(|n| n.op_type.as_str()).collect();
            ops.sort_unstable();
            ops.dedup();
            if ops.is_empty() || !ops.iter().all(|o| MAPPED.contains(o)) {
                other += 1;
                continue;
            }
            let main: Vec<&str> = ops
                .iter()
                .copied()
                .filter(|o| ops.len() == 1 || !matches!(*o, "Constant" | "Identity"))
                .collect();
            let key = main.join("+");
            let name = format!("{coll}/{}", case.file_name().unwrap().to_string_lossy());
            let row = table.entry(key.clone()).or_default();
            match run_case(&case, &work) {
                Outcome::Passed => row[0] += 1,
                Outcome::Refused(e) => {
                    row[1] += 1;
                    if e.contains("has no netc layer") {
                        wrong_refusals.push(format!("{name}: {e}"));
                    }
                    *reasons.entry(format!("{key}: {}", reason(&e))).or_default() += 1;
                }
                Outcome::Failed(e) => {
                    row[2] += 1;
                    failures.push(format!("{name}: {e}"));
                }
            }
        }
    }
    let _ = std::fs::remove_dir_all(&root);
    let passed: usize = table.values().map(|r| r[0]).sum();
    let refused: usize = table.values().map(|r| r[1]).sum();
    println!("| operator | passed | refused | failed |");
    println!("|---|---:|---:|---:|");
    for (op, r) in &table {
        println!("| {op} | {} | {} | {} |", r[0], r[1], r[2]);
    }
    println!(
        "{total} cases; {} of mapped operators only: {passed} passed, {refused} refused, {} failed; {other} use an operator netc does not map",
        total - other,
        failures.len()
    );
    println!("\nrefusals by reason:");
    for (r, n) in &reasons {
        println!("  {n:>3}  {r}");
    }
    assert!(failures.is_empty(), "failed:\n{}", failures.join("\n"));
    assert!(
        wrong_refusals.is_empty(),
        "refused as if unmapped:\n{}",
        wrong_refusals.join("\n")
    );
    assert!(passed >= MIN_PASSED, "only {passed} cases passed");
}
