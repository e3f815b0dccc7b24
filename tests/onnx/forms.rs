//! The forms PyTorch's default (dynamo) exporter writes, each built by
//! editing a model netc already reads into that form: the import must give
//! the same `.net` text and the same weights as the original's (whose
//! logits the foreign-model test compares with onnxruntime's), or a clear
//! refusal. Weights in an external file beside the model; a `Reshape` to
//! `[B, K]` with the batch written out; `ReduceMean` over H and W (a
//! global average pool, axes as an attribute or, from opset 18, an
//! input); the `Shape`/`Gather`/`Unsqueeze`/`Concat` arithmetic of a
//! dynamic batch's flatten; `ceil_mode` 1 where it rounds as floor mode;
//! `Clip(0, 6)` refused by name. Constant folding of the operators the
//! exporters compute shapes and pads with, the batch a symbol; PyTorch's
//! decomposed `LocalResponseNorm` (made node for node by
//! `make_lrn_forms.py`, and by PyTorch itself through
//! `make_torch_lrn.py` where it is installed) as `lrn`.

use std::path::Path;

use netc::onnx::import::{Imported, import, import_from};
use netc::onnx::proto::{
    AttributeProto, DimValue, ModelProto, NodeProto, StringStringEntryProto, TensorProto,
};
use prost::Message;

fn model(file: &str) -> ModelProto {
    let bytes = std::fs::read(
        Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("tests/onnx")
            .join(file),
    )
    .unwrap();
    ModelProto::decode(bytes.as_slice()).unwrap()
}

fn imported(m: &ModelProto) -> Imported {
    import(&m.encode_to_vec(), "model.onnx").unwrap_or_else(|e| panic!("{e}"))
}

/// The edited model imports as the original does.
fn same_as_original(file: &str, edit: impl Fn(&mut ModelProto)) {
    let base = model(file);
    let mut m = base.clone();
    edit(&mut m);
    let (a, b) = (imported(&base), imported(&m));
    assert_eq!(a.source, b.source);
    assert_eq!(a.weights, b.weights);
}

fn refused(file: &str, edit: impl Fn(&mut ModelProto)) -> String {
    let mut m = model(file);
    edit(&mut m);
    match import(&m.encode_to_vec(), "model.onnx") {
        Ok(i) => panic!("accepted:\n{}", i.source),
        Err(e) => e.to_string(),
    }
}

fn set_batch(m: &mut ModelProto, b: i64) {
    let g = m.graph.as_mut().unwrap();
    let t = g.input[0].r#type.as_mut().unwrap();
    let s = t.tensor_type.as_mut().unwrap().shape.as_mut().unwrap();
    s.dim[0].value = Some(DimValue::DimValue(b));
}

fn set_opset(m: &mut ModelProto, v: i64) {
    m.opset_import[0].version = v;
}

/// The alexnet-small `Flatten` replaced by a `Reshape` to `shape` (an
/// INT64 initializer), or to the value `from` computed by `extra` nodes.
fn flatten_to_reshape(
    m: &mut ModelProto,
    shape: Option<&[i64]>,
    extra: Vec<NodeProto>,
    from: &str,
) {
    let g = m.graph.as_mut().unwrap();
    let k = g.node.iter().position(|n| n.op_type == "Flatten").unwrap();
    let n = &mut g.node[k];
    n.op_type = "Reshape".into();
    n.attribute.clear();
    n.input.push(from.into());
    if let Some(s) = shape {
        g.initializer
            .push(TensorProto::int64s(from, &[s.len() as i64], s));
    }
    for (i, e) in extra.into_iter().enumerate() {
        g.node.insert(k + i, e);
    }
}

fn node(op: &str, ins: &[&str], out: &str, attrs: Vec<AttributeProto>) -> NodeProto {
    NodeProto {
        op_type: op.into(),
        name: format!("/{out}"),
        input: ins.iter().map(|s| s.to_string()).collect(),
        output: vec![out.into()],
        attribute: attrs,
        ..Default::default()
    }
}

#[test]
fn a_reshape_with_the_batch_written_out_is_a_flatten() {
    same_as_original("torch-alexnet-small.onnx", |m| {
        set_batch(m, 4);
        flatten_to_reshape(m, Some(&[4, 288]), vec![], "shape");
    });
    // Another batch than the model's is not.
    let e = refused("torch-alexnet-small.onnx", |m| {
        set_batch(m, 4);
        flatten_to_reshape(m, Some(&[5, 288]), vec![], "shape");
    });
    assert!(e.contains("neither a flatten"), "{e}");
}

#[test]
fn reduce_mean_over_h_and_w_is_a_global_average_pool() {
    let to_reduce = |m: &mut ModelProto, axes_input: bool| {
        let g = m.graph.as_mut().unwrap();
        let n = g
            .node
            .iter_mut()
            .find(|n| n.op_type == "GlobalAveragePool")
            .unwrap();
        n.op_type = "ReduceMean".into();
        n.attribute = vec![AttributeProto::int("keepdims", 1)];
        if axes_input {
            n.input.push("axes".into());
            g.initializer
                .push(TensorProto::int64s("axes", &[2], &[2, 3]));
        } else {
            n.attribute.push(AttributeProto::ints("axes", &[-2, -1]));
        }
    };
    same_as_original("torch-resnet-small.onnx", |m| {
        set_opset(m, 18);
        to_reduce(m, true);
    });
    same_as_original("torch-resnet-small.onnx", |m| to_reduce(m, false));
    // Over the channels: not a pool.
    let e = refused("torch-resnet-small.onnx", |m| {
        to_reduce(m, false);
        let n = m
            .graph
            .as_mut()
            .unwrap()
            .node
            .iter_mut()
            .find(|n| n.op_type == "ReduceMean")
            .unwrap();
        n.attribute[1] = AttributeProto::ints("axes", &[1]);
    });
    assert!(e.contains("axes [1]"), "{e}");
}

#[test]
fn a_dynamic_batch_flatten_computed_from_the_shape_is_folded() {
    let dynamic = |m: &mut ModelProto| {
        set_opset(m, 18);
        let x = "/features/features.12/MaxPool_output_0";
        let g = m.graph.as_mut().unwrap();
        g.initializer.push(TensorProto::int64s("zero", &[], &[0]));
        g.initializer.push(TensorProto::int64s("axis0", &[1], &[0]));
        g.initializer
            .push(TensorProto::int64s("minus1", &[1], &[-1]));
        let extra = vec![
            node("Shape", &[x], "shape", vec![]),
            node(
                "Gather",
                &["shape", "zero"],
                "n",
                vec![AttributeProto::int("axis", 0)],
            ),
            node("Unsqueeze", &["n", "axis0"], "n1", vec![]),
            node(
                "Concat",
                &["n1", "minus1"],
                "flat",
                vec![AttributeProto::int("axis", 0)],
            ),
        ];
        flatten_to_reshape(m, None, extra, "flat");
    };
    same_as_original("torch-alexnet-small.onnx", dynamic);
    // The batch size past the first axis: refused.
    let e = refused("torch-alexnet-small.onnx", |m| {
        dynamic(m);
        let g = m.graph.as_mut().unwrap();
        let c = g.node.iter_mut().find(|n| n.op_type == "Concat").unwrap();
        c.input = vec!["minus1".into(), "n1".into()];
    });
    assert!(e.contains("batch size past its first axis"), "{e}");
}

#[test]
fn ceil_mode_is_read_where_it_rounds_as_floor_mode() {
    // Every pool of alexnet-small ends on its input's edge (31, 15, 7 by 3, stride 2).
    let ceil = |m: &mut ModelProto| {
        for n in &mut m.graph.as_mut().unwrap().node {
            if n.op_type == "MaxPool" {
                n.attribute.retain(|a| a.name != "ceil_mode");
                n.attribute.push(AttributeProto::int("ceil_mode", 1));
            }
        }
    };
    same_as_original("torch-alexnet-small.onnx", ceil);
    // Stride 3 over 31: ceil mode gives one more.
    let e = refused("torch-alexnet-small.onnx", |m| {
        ceil(m);
        let n = m
            .graph
            .as_mut()
            .unwrap()
            .node
            .iter_mut()
            .find(|n| n.op_type == "MaxPool")
            .unwrap();
        for a in &mut n.attribute {
            if a.name == "strides" {
                a.ints = vec![3, 3];
            }
        }
    });
    assert!(e.contains("ceil_mode 1"), "{e}");
}

#[test]
fn clip_to_0_6_is_refused_as_relu6() {
    let e = refused("torch-alexnet-small.onnx", |m| {
        let g = m.graph.as_mut().unwrap();
        g.initializer.push(TensorProto::floats("lo", &[], &[0.0]));
        g.initializer.push(TensorProto::floats("hi", &[], &[6.0]));
        let n = g.node.iter_mut().find(|n| n.op_type == "Relu").unwrap();
        n.op_type = "Clip".into();
        n.input.extend(["lo".to_string(), "hi".to_string()]);
    });
    assert!(
        e.contains("ReLU6") && e.contains("/features/features.1/Relu"),
        "{e}"
    );
}

/// A model whose first conv weight lies in `MODEL.onnx.data` (at offset
/// 16), written into a fresh folder; the folder.
fn with_external(
    location: &str,
    offset: &str,
    length: Option<&str>,
) -> (ModelProto, std::path::PathBuf) {
    static NEXT: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
    let dir = std::env::temp_dir().join(format!(
        "netc-onnx-external-{}-{}",
        std::process::id(),
        NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
    ));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let mut m = model("torch-alexnet-small.onnx");
    let t = m
        .graph
        .as_mut()
        .unwrap()
        .initializer
        .iter_mut()
        .find(|t| t.name == "features.0.weight")
        .unwrap();
    let mut data = vec![7u8; 16];
    data.extend(std::mem::take(&mut t.raw_data));
    std::fs::write(dir.join("model.onnx.data"), &data).unwrap();
    t.data_location = 1;
    let e = |k: &str, v: &str| StringStringEntryProto {
        key: k.into(),
        value: v.into(),
    };
    t.external_data = vec![e("location", location), e("offset", offset)];
    if let Some(l) = length {
        t.external_data.push(e("length", l));
    }
    (m, dir)
}

#[test]
fn weights_in_an_external_file_beside_the_model_are_read() {
    let base = imported(&model("torch-alexnet-small.onnx"));
    let (m, dir) = with_external("model.onnx.data", "16", Some("11616"));
    let got = import_from(&m.encode_to_vec(), "model.onnx", Some(&dir)).unwrap();
    assert_eq!(got.weights, base.weights);
    // Without the folder (the library's plain import), refused.
    let e = import(&m.encode_to_vec(), "model.onnx")
        .err()
        .unwrap()
        .to_string();
    assert!(e.contains("external file"), "{e}");
    // Through the CLI, beside the model.
    std::fs::write(dir.join("model.onnx"), m.encode_to_vec()).unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_netc"))
        .arg("import")
        .arg(dir.join("model.onnx"))
        .arg("-o")
        .arg(dir.join("m.net"))
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn external_data_outside_the_folder_or_the_file_is_refused() {
    for (location, offset, length, want) in [
        (
            "../model.onnx.data",
            "16",
            None,
            "not a path inside the model's folder",
        ),
        (
            "/etc/passwd",
            "0",
            None,
            "not a path inside the model's folder",
        ),
        (
            "model.onnx.data",
            "100000",
            None,
            "lie outside `model.onnx.data`",
        ),
        (
            "model.onnx.data",
            "16",
            Some("11620"),
            "11620 bytes in `model.onnx.data`",
        ),
        (
            "model.onnx.data",
            "18446744073709551615",
            None,
            "lie outside",
        ),
        ("missing.data", "0", None, "cannot read `missing.data`"),
    ] {
        let (m, dir) = with_external(location, offset, length);
        let e = import_from(&m.encode_to_vec(), "model.onnx", Some(&dir))
            .err()
            .unwrap_or_else(|| panic!("{location} {offset} accepted"))
            .to_string();
        assert!(
            e.contains("features.0.weight") && e.contains(want),
            "{location}: {e}"
        );
        let _ = std::fs::remove_dir_all(&dir);
    }
}

/// Every form at once, in a model `tests/onnx/make_dynamo_forms.py` builds
/// with onnx's helper API (opset 18, a dynamic batch, the weights in
/// `dynamo-forms.onnx.data`): `netc import` reads it and its logits are
/// onnxruntime's.
#[test]
fn a_model_in_the_dynamo_forms_with_external_weights_matches_onnxruntime() {
    let Some(py) = super::python() else { return };
    let dir = super::tmp("dynamo-forms");
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/onnx/make_dynamo_forms.py");
    let out = std::process::Command::new(&py)
        .arg(&script)
        .arg(&dir)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let model = dir.join("dynamo-forms.onnx");
    assert!(dir.join("dynamo-forms.onnx.data").exists());
    let (net, ck) = super::import(&model, &dir);
    let text = std::fs::read_to_string(&net).unwrap();
    for want in ["maxpool(size: 3, stride: 2)", "global_avgpool", "dense("] {
        assert!(text.contains(want), "no `{want}` in\n{text}");
    }
    let m = super::module(&net);
    let w = netc::model::weights::load(&m, &ck).unwrap();
    let images = super::synthetic(16, 3 * 15 * 15, 5);
    let logits = netc::model::weights::logits(&m, &w, &images, 16).unwrap();
    let worst = super::check(&py, &model, &images, &logits, &dir);
    eprintln!("dynamo forms: worst relative error {worst:.3e}");
    assert!(worst <= 1e-4, "{worst}");
    let _ = std::fs::remove_dir_all(&dir);
}

/// Runs a generator script of `tests/onnx` into `dir`; `None` where it
/// exits 3 (PyTorch missing).
fn generate(py: &str, script: &str, dir: &Path) -> Option<String> {
    let script = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/onnx")
        .join(script);
    let out = std::process::Command::new(py)
        .arg(&script)
        .arg(dir)
        .output()
        .unwrap();
    if out.status.code() == Some(3) {
        return None;
    }
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    Some(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// `netc import` of `model` (in `dir`): the `.net` text holds `want`,
/// and its logits on 8 synthetic N×3×`side`×`side` images are
/// onnxruntime's on the same file.
fn imports_and_matches(py: &str, model: &Path, dir: &Path, side: usize, want: &[&str]) {
    let (net, ck) = super::import(model, dir);
    let text = std::fs::read_to_string(&net).unwrap();
    for w in want {
        assert!(text.contains(w), "no `{w}` in\n{text}");
    }
    let m = super::module(&net);
    let w = netc::model::weights::load(&m, &ck).unwrap();
    let images = super::synthetic(8, 3 * side * side, 11);
    let logits = netc::model::weights::logits(&m, &w, &images, 8).unwrap();
    let worst = super::check(py, model, &images, &logits, dir);
    eprintln!("{}: worst relative error {worst:.3e}", model.display());
    assert!(worst <= 1e-5, "{}: {worst}", model.display());
}

/// PyTorch's `nn.LocalResponseNorm` as its exporters write it (built node
/// for node by `make_lrn_forms.py`): the TorchScript exporter's form
/// (its pads computed by ConstantOfShape/Concat/Reshape/Slice/Transpose/
/// Cast, an If on the shape) and the dynamo exporter's, both with a
/// dynamic batch, come in as one `lrn` with PyTorch's alpha divided by the
/// size, and their logits are onnxruntime's; the dynamo form's flatten
/// shape, computed with Slice, Cast, Mul, Div, Add, Sub, Squeeze,
/// Unsqueeze and ConstantOfShape of the batch symbol, folds. An even size
/// (a window not centred on its channel) is refused with that reason.
#[test]
fn decomposed_local_response_norm_is_lrn_and_matches_onnxruntime() {
    let Some(py) = super::python() else { return };
    let dir = super::tmp("lrn-forms");
    generate(&py, "make_lrn_forms.py", &dir).unwrap();
    let lrn = "lrn(size: 5, alpha: 2e-5, beta: 0.75, k: 2)";
    for f in ["lrn-torchscript.onnx", "lrn-dynamo.onnx"] {
        imports_and_matches(&py, &dir.join(f), &dir, 16, &[lrn, "dense(c1, units: 10)"]);
    }
    let bytes = std::fs::read(dir.join("lrn-even.onnx")).unwrap();
    let e = import(&bytes, "lrn-even.onnx").err().unwrap().to_string();
    assert!(
        e.contains("LocalResponseNorm") && e.contains("not centred") && !e.contains("`Mul`"),
        "{e}"
    );
    let _ = std::fs::remove_dir_all(&dir);
}

/// The same network exported by PyTorch itself (TorchScript exporter at
/// opsets 11 and 17, the default exporter), where the Python has PyTorch:
/// each is one `lrn` and matches onnxruntime. Without PyTorch it says so
/// (CI installs onnx and onnxruntime only; the hand-built forms above are
/// its check).
#[test]
fn local_response_norm_exported_by_pytorch_matches_onnxruntime() {
    let Some(py) = super::python() else { return };
    let dir = super::tmp("torch-lrn");
    let Some(out) = generate(&py, "make_torch_lrn.py", &dir) else {
        // NETC_REQUIRE_TORCH=1 turns the skip into a failure, for a machine
        // that is meant to have PyTorch.
        assert!(
            std::env::var_os("NETC_REQUIRE_TORCH").is_none(),
            "NETC_REQUIRE_TORCH is set but `{py}` cannot import torch"
        );
        eprintln!(
            "skipping PyTorch's own export: `{py}` cannot import torch (NETC_REQUIRE_TORCH=1 fails instead)"
        );
        return;
    };
    let mut n = 0;
    for f in [
        "torch-lrn-ts11.onnx",
        "torch-lrn-ts17.onnx",
        "torch-lrn-dynamo.onnx",
    ] {
        if !out.contains(f) {
            eprintln!("{f} not written:\n{out}");
            continue;
        }
        imports_and_matches(
            &py,
            &dir.join(f),
            &dir,
            32,
            &["lrn(size: 5, alpha: 2e-5, beta: 0.75, k: 2)"],
        );
        n += 1;
    }
    assert!(n >= 2, "{out}");
    let _ = std::fs::remove_dir_all(&dir);
}

/// The folding itself, operator by operator, on values that name the
/// batch as a symbol.
#[test]
fn constant_folding_evaluates_the_exporters_operators() {
    use netc::onnx::fold::{Sym, Tensor, eval};
    let node = |op: &str, attrs: Vec<AttributeProto>| NodeProto {
        op_type: op.into(),
        attribute: attrs,
        ..Default::default()
    };
    let ints = |d: &[usize], v: &[i64]| {
        Some(Tensor {
            dims: d.to_vec(),
            v: v.iter().map(|&x| Sym::N(x as f64)).collect(),
            dtype: 7,
        })
    };
    let run = |n: &NodeProto, ins: &[Option<Tensor>]| {
        let a = |name: &str| {
            Ok(n.attribute
                .iter()
                .find(|a| a.name == name)
                .map(|a| a.ints.clone()))
        };
        let i = |name: &str, d: i64| {
            Ok(n.attribute
                .iter()
                .find(|a| a.name == name)
                .map_or(d, |a| a.i))
        };
        let t = |_: &str| Ok(None);
        eval(n, ins, 18, &a, &i, &t)
    };
    let nums = |t: &Tensor| -> Vec<f64> {
        t.v.iter()
            .map(|s| match s {
                Sym::N(x) => *x,
                Sym::Batch => f64::NAN,
            })
            .collect()
    };
    // Slice with a negative step and the int64 minimum as its end (what
    // the TorchScript exporter writes to reverse the pads).
    let x = ints(&[3, 2], &[1, 2, 3, 4, 5, 6]);
    let r = run(
        &node("Slice", vec![]),
        &[
            x.clone(),
            ints(&[1], &[-1]),
            ints(&[1], &[-9223372036854775807]),
            ints(&[1], &[0]),
            ints(&[1], &[-1]),
        ],
    )
    .unwrap();
    assert_eq!(
        (r.dims.clone(), nums(&r)),
        (vec![3, 2], vec![5., 6., 3., 4., 1., 2.])
    );
    // Transpose, Reshape with -1, Cast to float and back (truncating).
    let r = run(
        &node("Transpose", vec![AttributeProto::ints("perm", &[1, 0])]),
        std::slice::from_ref(&x),
    )
    .unwrap();
    assert_eq!(nums(&r), vec![1., 3., 5., 2., 4., 6.]);
    let r = run(&node("Reshape", vec![]), &[x.clone(), ints(&[1], &[-1])]).unwrap();
    assert_eq!(r.dims, vec![6]);
    let half = Some(Tensor {
        dims: vec![],
        v: vec![Sym::N(2.5)],
        dtype: 1,
    });
    let r = run(
        &node("Cast", vec![AttributeProto::int("to", 7)]),
        std::slice::from_ref(&half),
    )
    .unwrap();
    assert_eq!((nums(&r), r.dtype), (vec![2.0], 7));
    // Arithmetic broadcasts; the batch survives N·1 and N + 0 only.
    let with_batch = Some(Tensor {
        dims: vec![2],
        v: vec![Sym::Batch, Sym::N(4.0)],
        dtype: 7,
    });
    let r = run(&node("Mul", vec![]), &[with_batch.clone(), ints(&[], &[1])]).unwrap();
    assert_eq!(r.v, vec![Sym::Batch, Sym::N(4.0)]);
    let r = run(
        &node("Add", vec![]),
        &[with_batch.clone(), ints(&[2], &[0, 3])],
    )
    .unwrap();
    assert_eq!(r.v, vec![Sym::Batch, Sym::N(7.0)]);
    let e = run(&node("Mul", vec![]), &[with_batch.clone(), ints(&[], &[2])]).unwrap_err();
    assert!(e.contains("batch size"), "{e}");
    let r = run(
        &node("Div", vec![]),
        &[ints(&[2], &[7, -7]), ints(&[], &[2])],
    )
    .unwrap();
    assert_eq!(nums(&r), vec![3.0, -3.0]);
    assert!(run(&node("Div", vec![]), &[ints(&[1], &[7]), ints(&[], &[0])]).is_err());
    // Unsqueeze, Squeeze, Gather, Concat, Equal.
    let r = run(
        &node("Unsqueeze", vec![]),
        &[ints(&[], &[5]), ints(&[1], &[0])],
    )
    .unwrap();
    assert_eq!(r.dims, vec![1]);
    let r = run(&node("Squeeze", vec![]), &[ints(&[1, 1], &[5]), None]).unwrap();
    assert_eq!(r.dims, Vec::<usize>::new());
    assert!(run(&node("Squeeze", vec![]), &[x.clone(), ints(&[1], &[0])]).is_err());
    let r = run(
        &node("Gather", vec![AttributeProto::int("axis", 1)]),
        &[x.clone(), ints(&[1], &[-1])],
    )
    .unwrap();
    assert_eq!((r.dims.clone(), nums(&r)), (vec![3, 1], vec![2., 4., 6.]));
    assert!(run(&node("Gather", vec![]), &[x.clone(), ints(&[], &[3])]).is_err());
    let r = run(
        &node("Concat", vec![AttributeProto::int("axis", 0)]),
        &[with_batch.clone(), ints(&[1], &[9])],
    )
    .unwrap();
    assert_eq!(r.v, vec![Sym::Batch, Sym::N(4.0), Sym::N(9.0)]);
    let r = run(
        &node("Equal", vec![]),
        &[ints(&[2], &[1, 2]), ints(&[], &[2])],
    )
    .unwrap();
    assert_eq!(nums(&r), vec![0.0, 1.0]);
    // A fold that would make too large a tensor is refused, not allocated.
    let r = run(
        &node("ConstantOfShape", vec![]),
        &[ints(&[2], &[1 << 20, 1 << 20])],
    );
    assert!(r.is_err());
}

/// Folding is bounded in all, not only per node: nine `ConstantOfShape`
/// nodes of 2^20 values each are refused, not allocated.
#[test]
fn folding_many_large_constants_is_refused() {
    let mut m = model("torch-alexnet-small.onnx");
    let g = m.graph.as_mut().unwrap();
    g.initializer
        .push(TensorProto::int64s("big_shape", &[1], &[1 << 20]));
    for i in 0..9 {
        g.node.insert(
            0,
            NodeProto {
                op_type: "ConstantOfShape".into(),
                name: format!("big{i}"),
                input: vec!["big_shape".into()],
                output: vec![format!("big{i}_out")],
                ..Default::default()
            },
        );
    }
    let e = import(&m.encode_to_vec(), "model.onnx")
        .err()
        .unwrap()
        .to_string();
    assert!(e.contains("folds more than") && e.contains("big0"), "{e}");
}
