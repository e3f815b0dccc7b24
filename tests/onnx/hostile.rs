//! Hostile models: `netc import` reads files a user downloaded from
//! anywhere, so every malformed model is refused with a bounded message,
//! never a panic, and nothing is written where it is refused.
//!
//! The mutation test takes models netc exports (three networks with their
//! initial weights, exported in-process) and the two foreign models, and
//! imports a few thousand seeded mutations of each: byte flips,
//! truncations, and structured edits of the decoded model (wrapped, negative
//! and huge dims, empty and renamed operator inputs, relabelled data types,
//! duplicate names, external-data paths, extreme attributes, trailing
//! `raw_data`, a missing `opset_import`). Each must give `Ok` or `Err`;
//! the test counts panics and fails on any, listing the first few. The
//! targeted tests check each case the hostile-file report named.

use std::cell::Cell;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::path::Path;
use std::process::Command;

use netc::onnx::import::{import, import_from};
use netc::onnx::proto::{
    AttributeProto, ModelProto, NodeProto, StringStringEntryProto, TensorProto, attr_type,
};
use prost::Message;

fn foreign(file: &str) -> Vec<u8> {
    std::fs::read(
        Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("tests/onnx")
            .join(file),
    )
    .unwrap()
}

/// `net` with its initial weights as `netc export` writes it.
fn exported(net: &str) -> Vec<u8> {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join(net);
    let module = netc::frontend::check_file(&path).unwrap().0.module;
    let values = netc::model::weights::initial(&module);
    let step =
        netc::passes::pipeline::training_step(&module.graph, &module.train.sgd, false).unwrap();
    let fwd = netc::passes::forward::forward_graph(&step).unwrap();
    let (image, ..) = fwd.training_io().unwrap();
    let meta = netc::onnx::export::preparation(&module.train.data, fwd.node(image).ty.dims());
    let key = |n: &netc::ir::Node| {
        values
            .get(&netc::backend::params::key_of(&n.name, n.device))
            .map(Vec::as_slice)
    };
    netc::onnx::export::export_bytes(&fwd, &key, &meta).unwrap()
}

fn decode(bytes: &[u8]) -> ModelProto {
    ModelProto::decode(bytes).unwrap()
}

/// A small deterministic generator (SplitMix64).
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }
    fn below(&mut self, n: usize) -> usize {
        if n == 0 {
            0
        } else {
            (self.next() % n as u64) as usize
        }
    }
    fn pick<'a, T>(&mut self, v: &'a [T]) -> &'a T {
        &v[self.below(v.len())]
    }
}

/// Two non-negative i64s whose product overflows and wraps (mod 2⁶⁴)
/// to `a · b`: `(a·x, b·y)` with `x·y ≡ 1`.
fn wrapping_pair(a: i64, b: i64) -> (i64, i64) {
    let mut x: u64 = 3;
    loop {
        // The inverse of odd x modulo 2⁶⁴ (Newton's iteration).
        let mut y = x;
        for _ in 0..6 {
            y = y.wrapping_mul(2u64.wrapping_sub(x.wrapping_mul(y)));
        }
        let (p, q) = ((a as u64).wrapping_mul(x), (b as u64).wrapping_mul(y));
        if (p as i64) > 0 && (q as i64) > 0 && p.checked_mul(q).is_none() {
            assert_eq!(p.wrapping_mul(q), (a as u64).wrapping_mul(b as u64));
            return (p as i64, q as i64);
        }
        x += 2;
    }
}

const EXTREMES: &[i64] = &[
    0,
    -1,
    1,
    2,
    3,
    i64::MAX,
    i64::MIN,
    1 << 31,
    1 << 32,
    (1 << 32) + 1,
    1 << 62,
    -(1 << 40),
    65536,
];

const DTYPES: &[i32] = &[0, 2, 3, 5, 6, 7, 8, 9, 10, 11, 12, 13, 16, 99, -1];

/// One structured edit of `m`, named.
fn structured(m: &mut ModelProto, r: &mut Rng) -> &'static str {
    let Some(g) = m.graph.as_mut() else {
        return "none";
    };
    let ops = [
        "Conv",
        "Gemm",
        "MatMul",
        "Add",
        "Sum",
        "Concat",
        "Reshape",
        "Flatten",
        "Identity",
        "Softmax",
        "Dropout",
        "BatchNormalization",
        "LRN",
        "MaxPool",
        "Constant",
        "Relu",
    ];
    let names: Vec<String> = g
        .node
        .iter()
        .flat_map(|n| n.input.iter().chain(&n.output).cloned())
        .chain(g.initializer.iter().map(|t| t.name.clone()))
        .collect();
    match r.below(16) {
        0 if !g.initializer.is_empty() => {
            let k = r.below(g.initializer.len());
            let t = &mut g.initializer[k];
            if t.dims.len() >= 2 && r.below(2) == 0 {
                let (a, b) = wrapping_pair(t.dims[0], t.dims[1]);
                t.dims[0] = a;
                t.dims[1] = b;
                "wrapped dims"
            } else if !t.dims.is_empty() {
                let i = r.below(t.dims.len());
                t.dims[i] = *r.pick(EXTREMES);
                "extreme dim"
            } else {
                t.dims.push(*r.pick(EXTREMES));
                "added dim"
            }
        }
        1 if !g.node.is_empty() => {
            let k = r.below(g.node.len());
            let n = &mut g.node[k];
            if n.input.is_empty() || r.below(3) == 0 {
                n.input.clear();
                "no inputs"
            } else {
                let i = r.below(n.input.len());
                n.input[i] = String::new();
                "empty input"
            }
        }
        2 if !g.initializer.is_empty() => {
            let k = r.below(g.initializer.len());
            g.initializer[k].data_type = *r.pick(DTYPES);
            "relabelled data type"
        }
        3 if !g.node.is_empty() && !names.is_empty() => {
            let k = r.below(g.node.len());
            let name = r.pick(&names).clone();
            if let Some(o) = g.node[k].output.first_mut() {
                *o = name;
            }
            "output renamed to an existing value"
        }
        4 if !g.initializer.is_empty() => {
            let k = r.below(g.initializer.len());
            let t = g.initializer[k].clone();
            g.initializer.push(t);
            "duplicate initializer"
        }
        5 if !g.initializer.is_empty() => {
            let k = r.below(g.initializer.len());
            let t = &mut g.initializer[k];
            let loc = *r.pick(&["../../etc/passwd", "/etc/passwd", "w.bin", "", "a\nb"]);
            t.external_data = vec![
                StringStringEntryProto {
                    key: "location".into(),
                    value: loc.into(),
                },
                StringStringEntryProto {
                    key: "offset".into(),
                    value: r
                        .pick(&["0", "16", "4000", "-1", "99999999999999999999", "x"])
                        .to_string(),
                },
            ];
            t.data_location = 1;
            if r.below(2) == 0 {
                t.raw_data.clear();
            }
            "external data"
        }
        6 if !g.node.is_empty() => {
            let k = r.below(g.node.len());
            let n = &mut g.node[k];
            if n.attribute.is_empty() {
                n.attribute
                    .push(AttributeProto::int("group", *r.pick(EXTREMES)));
                return "added attribute";
            }
            let i = r.below(n.attribute.len());
            let a = &mut n.attribute[i];
            match r.below(4) {
                0 => a.i = *r.pick(EXTREMES),
                1 => {
                    let len = r.below(6);
                    a.ints = (0..len).map(|_| *r.pick(EXTREMES)).collect();
                }
                2 => a.r#type = r.below(12) as i32,
                _ => a.f = *r.pick(&[f32::NAN, f32::INFINITY, -1.0, 0.0, 1e30]),
            }
            "extreme attribute"
        }
        7 if !g.initializer.is_empty() => {
            let k = r.below(g.initializer.len());
            let t = &mut g.initializer[k];
            match r.below(3) {
                0 => t.raw_data.extend(std::iter::repeat_n(0u8, 1 + r.below(8))),
                1 => {
                    let cut = r.below(t.raw_data.len() + 1);
                    t.raw_data.truncate(cut)
                }
                _ => t.float_data.push(1.0),
            }
            "raw_data length"
        }
        8 => {
            m.opset_import.clear();
            "no opset_import"
        }
        9 if !g.node.is_empty() => {
            let k = r.below(g.node.len());
            g.node[k].op_type = r.pick(&ops).to_string();
            "operator changed"
        }
        10 if g.node.len() > 1 => {
            let (a, b) = (r.below(g.node.len()), r.below(g.node.len()));
            g.node.swap(a, b);
            "nodes swapped"
        }
        11 if !g.node.is_empty() => {
            let k = r.below(g.node.len());
            g.node.remove(k);
            "node removed"
        }
        12 if !g.node.is_empty() && !names.is_empty() => {
            let k = r.below(g.node.len());
            let name = r.pick(&names).clone();
            let n = &mut g.node[k];
            if n.input.is_empty() {
                n.input.push(name);
            } else {
                let i = r.below(n.input.len());
                n.input[i] = name;
            }
            "input renamed"
        }
        13 if !g.input.is_empty() => {
            let dims = g.input[0]
                .r#type
                .as_mut()
                .and_then(|t| t.tensor_type.as_mut())
                .and_then(|t| t.shape.as_mut());
            if let Some(s) = dims
                && !s.dim.is_empty()
            {
                let i = r.below(s.dim.len());
                s.dim[i].value = Some(netc::onnx::proto::DimValue::DimValue(*r.pick(EXTREMES)));
            }
            "input dims"
        }
        14 if !g.node.is_empty() => {
            let k = r.below(g.node.len());
            let n = &mut g.node[k];
            n.name = "x\n".repeat(3000);
            n.op_type = "Nope\u{202e}".repeat(1000);
            "hostile names"
        }
        _ => {
            // A Concat or Sum of nothing, or a Constant without a value.
            let op = *r.pick(&["Concat", "Sum", "Constant", "Reshape", "Add"]);
            let at = r.below(g.node.len() + 1);
            g.node.insert(
                at,
                NodeProto {
                    op_type: op.into(),
                    name: "inserted".into(),
                    output: vec![format!("inserted_{at}")],
                    ..Default::default()
                },
            );
            "inserted node without inputs"
        }
    }
}

thread_local! {
    static QUIET: Cell<bool> = const { Cell::new(false) };
}

/// A folder with a 4 KiB `w.bin`, the mutated models' folder (so their
/// external-data locations are looked up in it).
fn model_dir() -> &'static Path {
    static DIR: std::sync::OnceLock<std::path::PathBuf> = std::sync::OnceLock::new();
    DIR.get_or_init(|| {
        let d = std::env::temp_dir().join(format!("netc-onnx-mutated-{}", std::process::id()));
        std::fs::create_dir_all(&d).unwrap();
        std::fs::write(d.join("w.bin"), vec![0x3fu8; 4096]).unwrap();
        d
    })
}

/// Imports `bytes` and, where that succeeds, checks the network (as
/// `netc import` does before it writes); `Err(message)` on a panic.
fn import_no_panic(bytes: &[u8]) -> Result<bool, String> {
    QUIET.with(|q| q.set(true));
    let r = catch_unwind(AssertUnwindSafe(|| {
        match import_from(bytes, "mutated.onnx", Some(model_dir())) {
            Ok(m) => {
                if let Ok(c) = netc::frontend::check(&m.source) {
                    let _ = netc::ir::cost::total(&c.module.graph);
                }
                true
            }
            Err(e) => {
                let text = e.to_string();
                assert!(
                    text.chars().count() <= 1200 && !text.contains('\n'),
                    "unbounded error: {}…",
                    text.chars().take(300).collect::<String>()
                );
                false
            }
        }
    }));
    QUIET.with(|q| q.set(false));
    r.map_err(|p| {
        p.downcast_ref::<String>()
            .cloned()
            .or_else(|| p.downcast_ref::<&str>().map(|s| s.to_string()))
            .unwrap_or_else(|| "a panic".into())
    })
}

#[test]
fn thousands_of_mutated_models_never_panic() {
    let hook = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        if !QUIET.with(Cell::get) {
            hook(info);
        }
    }));
    let corpus: Vec<(&str, Vec<u8>)> = vec![
        ("torch-alexnet-small", foreign("torch-alexnet-small.onnx")),
        ("torch-resnet-small", foreign("torch-resnet-small.onnx")),
        ("lenet5", exported("networks/lenet5.net")),
        ("towers-mixed", exported("tests/nets/towers-mixed.net")),
        ("residual-bn", exported("tests/nets/residual-bn.net")),
    ];
    for (name, bytes) in &corpus {
        assert!(
            import_no_panic(bytes) == Ok(true),
            "{name}: the unmutated model does not import"
        );
    }
    let start = std::time::Instant::now();
    let mut r = Rng(0x5eed_0026);
    let mut panics: Vec<String> = Vec::new();
    let mut tally: std::collections::BTreeMap<&str, (usize, usize)> = Default::default();
    const PER_MODEL: usize = 1000;
    for (name, bytes) in &corpus {
        for i in 0..PER_MODEL {
            let (kind, mutated) = match i % 4 {
                0 => {
                    let mut b = bytes.clone();
                    for _ in 0..1 + r.below(4) {
                        let at = r.below(b.len());
                        b[at] = if r.below(2) == 0 {
                            b[at] ^ (1 << r.below(8))
                        } else {
                            r.next() as u8
                        };
                    }
                    ("byte flips", b)
                }
                1 => {
                    let cut = r.below(bytes.len());
                    ("truncation", bytes[..cut].to_vec())
                }
                _ => {
                    let mut m = decode(bytes);
                    let mut kind = structured(&mut m, &mut r);
                    if r.below(3) == 0 {
                        structured(&mut m, &mut r);
                        kind = "two edits";
                    }
                    (kind, m.encode_to_vec())
                }
            };
            let t = tally.entry(kind).or_default();
            match import_no_panic(&mutated) {
                Ok(true) => t.0 += 1,
                Ok(false) => t.1 += 1,
                Err(p) => panics.push(format!("{name} #{i} ({kind}): {p}")),
            }
        }
    }
    for (kind, (ok, err)) in &tally {
        eprintln!("{kind:>40}: {ok:>5} imported, {err:>5} refused");
    }
    eprintln!(
        "{} mutated models in {:.1} s, {} panics",
        corpus.len() * PER_MODEL,
        start.elapsed().as_secs_f64(),
        panics.len()
    );
    assert!(
        panics.is_empty(),
        "{} of {} mutated models panicked; the first:\n{}",
        panics.len(),
        corpus.len() * PER_MODEL,
        panics[..panics.len().min(10)].join("\n")
    );
    // The mutations reach the checks: most kinds are refused somewhere.
    let refused: usize = tally.values().map(|t| t.1).sum();
    assert!(refused > corpus.len() * PER_MODEL / 3, "{tally:?}");
    let _ = std::fs::remove_dir_all(model_dir());
}

/// The alexnet-small model edited by `f`, imported: its error's text.
fn refused(f: impl Fn(&mut ModelProto)) -> String {
    let mut m = decode(&foreign("torch-alexnet-small.onnx"));
    f(&mut m);
    match import(&m.encode_to_vec(), "edited.onnx") {
        Ok(_) => panic!("the edited model was accepted"),
        Err(e) => e.to_string(),
    }
}

fn init<'a>(m: &'a mut ModelProto, name: &str) -> &'a mut TensorProto {
    m.graph
        .as_mut()
        .unwrap()
        .initializer
        .iter_mut()
        .find(|t| t.name == name)
        .unwrap()
}

fn node<'a>(m: &'a mut ModelProto, op: &str) -> &'a mut NodeProto {
    m.graph
        .as_mut()
        .unwrap()
        .node
        .iter_mut()
        .find(|n| n.op_type == op)
        .unwrap()
}

#[test]
fn wrapped_int64_dims_are_refused_in_gemm_and_matmul() {
    // Gemm's B is [128, 288]; dims whose product wraps to 128·288.
    let e = refused(|m| {
        let (a, b) = wrapping_pair(128, 288);
        init(m, "classifier.1.weight").dims = vec![a, b];
    });
    assert!(
        e.contains("classifier.1.weight") && e.contains("dims"),
        "{e}"
    );
    // The same weight read by a MatMul (as [in, units]).
    let e = refused(|m| {
        let (a, b) = wrapping_pair(288, 128);
        init(m, "classifier.1.weight").dims = vec![a, b];
        let n = node(m, "Gemm");
        n.op_type = "MatMul".into();
        n.input.truncate(2);
        n.attribute.clear();
    });
    assert!(
        e.contains("classifier.1.weight") && e.contains("dims"),
        "{e}"
    );
    // Negative dims whose product is the count.
    let e = refused(|m| init(m, "classifier.1.weight").dims = vec![-128, -288]);
    assert!(e.contains("negative"), "{e}");
}

#[test]
fn a_concat_without_inputs_is_refused() {
    let e = refused(|m| {
        let n = node(m, "Relu");
        n.op_type = "Concat".into();
        n.input.clear();
    });
    assert!(
        e.contains("operator `Concat`") && e.contains("has no inputs"),
        "{e}"
    );
}

#[test]
fn a_float_weight_relabelled_int32_is_refused() {
    let e = refused(|m| init(m, "features.0.weight").data_type = 6);
    assert!(
        e.contains("features.0.weight") && e.contains("INT32") && e.contains("FLOAT"),
        "{e}"
    );
    // A Reshape's shape that is not INT64.
    let e = refused(|m| {
        let n = node(m, "Flatten");
        n.op_type = "Reshape".into();
        n.attribute.clear();
        n.input.push("shape".into());
        let g = m.graph.as_mut().unwrap();
        g.initializer
            .push(TensorProto::floats("shape", &[2], &[-1.0, 288.0]));
    });
    assert!(
        e.contains("shape `shape` has data type FLOAT, not INT64"),
        "{e}"
    );
    // And with INT64 it imports.
    let mut m = decode(&foreign("torch-alexnet-small.onnx"));
    let n = node(&mut m, "Flatten");
    n.op_type = "Reshape".into();
    n.attribute.clear();
    n.input.push("shape".into());
    let g = m.graph.as_mut().unwrap();
    g.initializer
        .push(TensorProto::int64s("shape", &[2], &[-1, 288]));
    assert!(import(&m.encode_to_vec(), "x.onnx").is_ok());
}

#[test]
fn a_value_defined_twice_is_refused() {
    // Two nodes write one value.
    let e = refused(|m| {
        let g = m.graph.as_mut().unwrap();
        g.node[3].output[0] = g.node[1].output[0].clone();
    });
    assert!(
        e.contains("defines the value `/features/features.1/Relu_output_0` more than once"),
        "{e}"
    );
    // Two initializers of one name.
    let e = refused(|m| {
        let g = m.graph.as_mut().unwrap();
        let t = g.initializer[0].clone();
        g.initializer.push(t);
    });
    assert!(e.contains("more than once"), "{e}");
    // A node writes the image input.
    let e = refused(|m| m.graph.as_mut().unwrap().node[0].output[0] = "input".into());
    assert!(e.contains("`input` more than once"), "{e}");
}

#[test]
fn group_zero_and_groups_that_do_not_divide_are_refused() {
    for (g, want) in [(0, "group 0 is not a positive number"), (-2, "group -2")] {
        let e = refused(|m| {
            for a in &mut node(m, "Conv").attribute {
                if a.name == "group" {
                    a.i = g;
                }
            }
        });
        assert!(e.contains(want), "{e}");
    }
    // group 2 on the second conv: 8 input channels divide, but the
    // weight's 8 channels per group do not fit.
    let e = refused(|m| {
        let n = &mut m.graph.as_mut().unwrap().node[3];
        for a in &mut n.attribute {
            if a.name == "group" {
                a.i = 3;
            }
        }
    });
    assert!(e.contains("3-group convolution"), "{e}");
    // An INT attribute written as a FLOAT.
    let e = refused(|m| {
        for a in &mut node(m, "Conv").attribute {
            if a.name == "group" {
                a.r#type = attr_type::FLOAT;
            }
        }
    });
    assert!(e.contains("attribute `group` is not an integer"), "{e}");
}

#[test]
fn raw_data_of_the_wrong_length_is_refused() {
    for extra in [1usize, 4] {
        let e = refused(|m| {
            init(m, "features.0.bias")
                .raw_data
                .extend(std::iter::repeat_n(0, extra))
        });
        assert!(
            e.contains(&format!("{} bytes of raw_data", 32 + extra)),
            "{e}"
        );
    }
    let e = refused(|m| init(m, "features.0.bias").raw_data.truncate(31));
    assert!(e.contains("31 bytes of raw_data"), "{e}");
}

#[test]
fn a_missing_opset_import_is_refused() {
    let e = refused(|m| m.opset_import.clear());
    assert!(e.contains("no opset_import"), "{e}");
}

#[test]
fn hostile_names_are_shown_bounded_and_escaped() {
    let e = refused(|m| {
        let n = node(m, "Relu");
        n.op_type = "X".repeat(5000);
        n.name = "evil\nerror: forged line\u{202e}".repeat(300);
    });
    assert!(!e.contains('\n') && !e.contains('\u{202e}'), "{e}");
    assert!(e.contains("XXXX…") && e.contains("evil\\u{a}error"), "{e}");
    assert!(e.chars().count() < 400, "{} characters: {e}", e.len());
    // A tensor's name in a message about its data.
    let e = refused(|m| {
        let t = init(m, "features.0.bias");
        t.raw_data.push(0);
        t.name = "b\r".repeat(2000);
        let n = node(m, "Conv");
        n.input[2] = "b\r".repeat(2000);
    });
    assert!(!e.contains('\r') && e.chars().count() < 400, "{e}");
}

#[test]
fn external_data_outside_netc_is_refused_without_panic() {
    let e = refused(|m| {
        let t = init(m, "features.0.weight");
        t.raw_data.clear();
        t.data_location = 1;
        t.external_data = vec![StringStringEntryProto {
            key: "location".into(),
            value: "../../../etc/passwd".into(),
        }];
    });
    assert!(e.contains("features.0.weight"), "{e}");
}

/// `netc import` with `-o` unwritable, or `-o` and `--weights-out` the
/// same file: exit 1 and nothing written (an existing file left as it was).
#[test]
fn import_writes_nothing_unless_both_outputs_can_be_written() {
    let dir = std::env::temp_dir().join(format!("netc-onnx-outputs-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let model = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/onnx/torch-alexnet-small.onnx");
    let run = |out: &Path, ck: &Path| {
        let o = Command::new(env!("CARGO_BIN_EXE_netc"))
            .arg("import")
            .arg(&model)
            .arg("-o")
            .arg(out)
            .arg("--weights-out")
            .arg(ck)
            .output()
            .unwrap();
        (
            o.status.code(),
            String::from_utf8_lossy(&o.stderr).to_string(),
        )
    };
    // `-o` in a folder that does not exist: no checkpoint either.
    let ck = dir.join("w.safetensors");
    let (code, e) = run(&dir.join("missing/out.net"), &ck);
    assert_eq!(code, Some(1), "{e}");
    assert!(
        e.contains("cannot write") && e.contains("missing/out.net"),
        "{e}"
    );
    assert!(!ck.exists(), "the checkpoint was written: {e}");
    // The same file twice (spelt two ways): refused, the file kept.
    let same = dir.join("same");
    std::fs::write(&same, b"keep me").unwrap();
    let (code, e) = run(&same, &dir.join(".").join("same"));
    assert_eq!(code, Some(1), "{e}");
    assert!(e.contains("name the same file"), "{e}");
    assert_eq!(std::fs::read(&same).unwrap(), b"keep me");
    // The model itself as an output.
    let (code, e) = run(&dir.join("a.net"), &model);
    assert_eq!(code, Some(1), "{e}");
    assert!(e.contains("is the model being imported"), "{e}");
    assert!(!dir.join("a.net").exists());
    // Both fine: both written, no temporary files left.
    let (code, e) = run(&dir.join("ok.net"), &ck);
    assert_eq!(code, Some(0), "{e}");
    assert!(dir.join("ok.net").exists() && ck.exists());
    let left: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().to_string())
        .filter(|n| n.ends_with(".tmp"))
        .collect();
    assert!(left.is_empty(), "{left:?}");
    let _ = std::fs::remove_dir_all(&dir);
}
