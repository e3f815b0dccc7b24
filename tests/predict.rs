//! A trained checkpoint classifies images by itself: `netc predict` on PNG
//! files written here gives the class that `netc eval --predictions` gives
//! the same images (prepared by the same code, centre or ten crops); the
//! predictions file's top-1 error is the one `eval` prints, and its logits
//! are exact in CSV and `.npy`; a checkpoint without the preparation (the
//! format before it was stored) still evaluates, and `predict` says what
//! it lacks, or computes it from `--data`; a bad image names its file.

use std::path::{Path, PathBuf};
use std::process::Command;

use netc::data::Dataset;
use netc::frontend;
use netc::model::predict::Predictor;
use netc::model::predictions::Table;
use netc::model::preparation::Preparation;
use netc::train::run::{EvalReport, TrainOptions, eval_predictions_with, eval_weights, train};

fn tmp(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("netc-predict-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

fn bin() -> Command {
    Command::new(env!("CARGO_BIN_EXE_netc"))
}

/// Runs the binary; returns (success, stdout, stderr).
fn run(args: &[&str]) -> (bool, String, String) {
    let out = bin().args(args).output().unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn eval_rows(m: &netc::lower::Module, weights: &Path, data: &Path) -> (EvalReport, Table) {
    let opts = TrainOptions {
        data: Some(data.to_path_buf()),
        quiet: true,
        ..Default::default()
    };
    eval_predictions_with(m, weights, &opts, |cpu, _, _| {
        Ok::<_, netc::train::run::TrainError>(cpu)
    })
    .unwrap()
}

/// The argmax of `row`'s logits (first on a tie).
fn argmax(v: &[f32]) -> usize {
    let mut best = 0;
    for (k, &x) in v.iter().enumerate() {
        if x > v[best] {
            best = k;
        }
    }
    best
}

/// Rewrites the checkpoint at `from` into `to` in the format written
/// before the preparation was stored (no `preparation` in the metadata, no
/// mean-image tensor, checksums of the others kept).
fn strip_preparation(from: &Path, to: &Path) {
    use safetensors::tensor::{SafeTensors, TensorView};
    let bytes = std::fs::read(from).unwrap();
    let st = SafeTensors::deserialize(&bytes).unwrap();
    let (_, meta) = SafeTensors::read_metadata(&bytes).unwrap();
    let mut header: serde_json::Value =
        serde_json::from_str(&meta.metadata().as_ref().unwrap()["netc"]).unwrap();
    let h = header.as_object_mut().unwrap();
    assert!(
        h.remove("preparation").is_some(),
        "the checkpoint stores one"
    );
    h["crc32"]
        .as_object_mut()
        .unwrap()
        .remove("preparation/mean_image")
        .unwrap();
    // Checkpoints of that time had no header checksum either.
    h.remove("header_crc32").unwrap();
    let views: Vec<(String, TensorView)> = st
        .tensors()
        .into_iter()
        .filter(|(n, _)| n != "preparation/mean_image")
        .collect();
    let meta = std::collections::HashMap::from([("netc".to_string(), header.to_string())]);
    std::fs::write(to, safetensors::serialize(views, Some(meta)).unwrap()).unwrap();
}

#[test]
fn fashion_mnist_predict_agrees_with_eval_predictions() {
    let net = "networks/alexnet-fmnist.net";
    let src = std::fs::read_to_string(net).unwrap();
    let c = frontend::compile(&src).unwrap_or_else(|_| panic!("compiles"));
    let m = &c.module;
    let dir = tmp("fmnist");
    let data = PathBuf::from("data/fmnist-small");
    let opts = TrainOptions {
        data: Some(data.clone()),
        epochs: Some(1),
        batch: Some(32),
        seed: Some(5),
        max_steps: Some(6),
        out_dir: dir.clone(),
        quiet: true,
        ..Default::default()
    };
    train(m, &opts).unwrap();
    let ck = dir.join("checkpoint.safetensors");

    // The checkpoint is self-contained: class names, shape, the mean image.
    let prep = Preparation::load(&ck).unwrap();
    assert_eq!(prep.classes[0], "T-shirt/top");
    assert_eq!(prep.classes[9], "Ankle boot");
    assert_eq!((prep.channels, prep.height, prep.width), (1, 28, 28));
    assert_eq!((prep.crop, prep.pad, prep.rescale), (28, 2, None));
    assert_eq!(prep.mean_image.len(), 784);
    assert!(prep.mean && prep.pca.is_none());
    let ds = Dataset::embedded_fmnist().unwrap();
    let st = netc::data::Stats::compute(&ds.train);
    assert_eq!(prep.mean_image, st.mean_image, "the training mean, exactly");

    // eval --predictions, in the library: the table's error is eval's.
    let (report, table) = eval_rows(m, &ck, &data);
    assert_eq!(table.rows.len(), 500);
    assert_eq!(table.crops, 1);
    assert_eq!(table.top1_error(), report.top1_error);
    let plain = eval_weights(
        m,
        &ck,
        &TrainOptions {
            data: Some(data.clone()),
            quiet: true,
            ..Default::default()
        },
    )
    .unwrap();
    assert_eq!(plain, report, "writing predictions changes nothing");
    for (i, r) in table.rows.iter().enumerate() {
        assert_eq!(r.index, i);
        assert_eq!(r.label, ds.test.labels[i]);
        assert_eq!(r.source, i.to_string(), "IDX rows name their index");
        assert_eq!(r.predicted as usize, argmax(&r.logits));
        let mut sorted = r.logits.clone();
        sorted.sort_by(|a, b| b.total_cmp(a));
        assert!(sorted[0] > sorted[1], "row {i} has a tie for first place");
    }

    // PNGs of some test images, predicted from the checkpoint alone.
    let picks = [0usize, 7, 61, 123, 250, 499];
    let pngs: Vec<PathBuf> = picks
        .iter()
        .map(|&i| {
            let p = dir.join(format!("test-{i}.png"));
            image::GrayImage::from_raw(28, 28, ds.test.image(i).to_vec())
                .unwrap()
                .save(&p)
                .unwrap();
            p
        })
        .collect();
    let mut pred = Predictor::open(m, &ck, None).unwrap();
    assert!(!pred.ten_crop_default());
    for (&i, png) in picks.iter().zip(&pngs) {
        let r = pred.predict(png, false, 5).unwrap();
        let row = &table.rows[i];
        assert_eq!(r.top[0].class, argmax(&row.logits), "image {i}");
        assert_eq!(r.top[0].name, prep.classes[r.top[0].class]);
        assert_eq!(r.top.len(), 5);
        assert!(
            r.top
                .windows(2)
                .all(|w| w[0].probability >= w[1].probability)
        );
        let total: f64 = r.probabilities.iter().sum();
        assert!((total - 1.0).abs() < 1e-9, "{total}");
        // Same pixels, same network: the logits agree (a batch of one
        // against eval's batches of 128, so not necessarily every bit).
        for (a, b) in r.logits.iter().zip(&row.logits) {
            assert!((a - b).abs() <= 1e-4 * (1.0 + b.abs()), "{a} vs {b}");
        }
    }

    // The command line: eval --predictions (CSV and .npy), predict --json.
    let ck_s = ck.to_str().unwrap();
    let csv = dir.join("pred.csv");
    let (ok, out, err) = run(&[
        "eval",
        net,
        "--weights",
        ck_s,
        "--data",
        "data/fmnist-small",
        "--predictions",
        csv.to_str().unwrap(),
    ]);
    assert!(ok, "{err}");
    let printed = format!("top-1 error {:.2}%", 100.0 * report.top1_error);
    assert!(out.contains(&printed), "{out}");
    let text = std::fs::read_to_string(&csv).unwrap();
    let mut lines = text.lines();
    let header: Vec<&str> = lines.next().unwrap().split(',').collect();
    assert_eq!(
        &header[..6],
        &[
            "index",
            "source",
            "label",
            "label_name",
            "predicted",
            "predicted_name"
        ]
    );
    assert_eq!(header.len(), 16);
    let rows: Vec<Vec<String>> = lines
        .map(|l| l.split(',').map(str::to_string).collect())
        .collect();
    assert_eq!(rows.len(), 500);
    // As eval computes it: one minus the fraction right.
    let right = rows.iter().filter(|r| r[2] == r[4]).count();
    assert_eq!(1.0 - right as f64 / 500.0, report.top1_error);
    for (r, t) in rows.iter().zip(&table.rows) {
        let logits: Vec<f32> = r[6..].iter().map(|v| v.parse().unwrap()).collect();
        assert!(logits == t.logits, "CSV logits are exact");
        assert_eq!(r[5], prep.classes[t.predicted as usize]);
    }
    let npy = dir.join("pred.npy");
    let (ok, _, err) = run(&[
        "eval",
        net,
        "--weights",
        ck_s,
        "--data",
        "data/fmnist-small",
        "--predictions",
        npy.to_str().unwrap(),
    ]);
    assert!(ok, "{err}");
    let b = std::fs::read(&npy).unwrap();
    assert_eq!(&b[..8], b"\x93NUMPY\x01\x00");
    let hl = u16::from_le_bytes([b[8], b[9]]) as usize;
    let header = std::str::from_utf8(&b[10..10 + hl]).unwrap();
    assert!(
        header.contains("'shape': (500,)") && header.contains("('logits', '<f4', (10,))"),
        "{header}"
    );
    assert!(header.contains("('source', '<U3')"), "{header}");
    let rec = 8 + 12 + 4 + 4 + 40;
    assert_eq!(b.len(), 10 + hl + 500 * rec);
    for (i, t) in table.rows.iter().enumerate() {
        let r = &b[10 + hl + i * rec..10 + hl + (i + 1) * rec];
        assert_eq!(i64::from_le_bytes(r[..8].try_into().unwrap()), i as i64);
        assert_eq!(
            i32::from_le_bytes(r[20..24].try_into().unwrap()),
            t.label as i32
        );
        assert_eq!(
            i32::from_le_bytes(r[24..28].try_into().unwrap()),
            t.predicted as i32
        );
        let logits: Vec<f32> = r[28..]
            .chunks_exact(4)
            .map(|c| f32::from_le_bytes(c.try_into().unwrap()))
            .collect();
        assert!(logits == t.logits, ".npy logits are exact");
    }
    let mut args = vec!["predict", net, "--weights", ck_s, "--json"];
    let png_s: Vec<&str> = pngs.iter().map(|p| p.to_str().unwrap()).collect();
    args.extend(&png_s);
    let (ok, out, err) = run(&args);
    assert!(ok, "{err}");
    let objs: Vec<serde_json::Value> = out
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(objs.len(), picks.len());
    for ((o, &i), png) in objs.iter().zip(&picks).zip(&png_s) {
        assert_eq!(o["image"], *png);
        let top = o["top"].as_array().unwrap();
        assert_eq!(top.len(), 5);
        assert_eq!(top[0]["class"], table.rows[i].predicted);
        assert_eq!(
            top[0]["name"],
            prep.classes[table.rows[i].predicted as usize]
        );
    }
    let (ok, out, _) = run(&["predict", net, "--weights", ck_s, png_s[0]]);
    assert!(ok);
    assert!(
        out.starts_with(png_s[0]) && out.lines().count() == 6,
        "{out}"
    );

    // A bad image names its file; a missing one too; exit 1, no panic.
    let bad = dir.join("broken.png");
    std::fs::write(&bad, b"\x89PNG\r\n\x1a\nnot really").unwrap();
    for p in [bad.clone(), dir.join("absent.jpg")] {
        let (ok, _, err) = run(&[
            "predict",
            net,
            "--weights",
            ck_s,
            png_s[0],
            p.to_str().unwrap(),
        ]);
        assert!(
            !ok && err.contains(p.to_str().unwrap()) && !err.contains("panicked"),
            "{err}"
        );
    }

    // The format before the preparation was stored: eval still works, with
    // the same figures; predict says what is missing, or takes `--data`.
    let old = dir.join("old.safetensors");
    strip_preparation(&ck, &old);
    let ckpt = netc::model::checkpoint::load(&old).unwrap();
    assert!(ckpt.preparation.is_none());
    let (old_report, old_table) = eval_rows(m, &old, &data);
    assert_eq!(old_report, report);
    assert_eq!(old_table, table);
    let e = Predictor::open(m, &old, None).err().unwrap().to_string();
    assert!(
        e.contains("holds no input preparation") && e.contains("old.safetensors"),
        "{e}"
    );
    let (ok, _, err) = run(&["predict", net, "--weights", old.to_str().unwrap(), png_s[0]]);
    assert!(
        !ok && err.contains("--data") && !err.contains("panicked"),
        "{err}"
    );
    let mut from_data = Predictor::open(m, &old, Some(&data)).unwrap();
    assert_eq!(from_data.preparation(), &prep);
    for png in &pngs {
        assert_eq!(
            from_data.predict(png, false, 3).unwrap(),
            pred.predict(png, false, 3).unwrap()
        );
    }
    let _ = std::fs::remove_dir_all(&dir);
}

/// A small 3-channel network for an image folder: rescaled to 20, 16×16
/// crops, ten-crop testing.
const RGB_NET: &str = "
network tiny_rgb {
  input image: [3, 16, 16]
  input label: class(3)
  c1 = conv(image, filters: 8, size: 3, pad: 1) -> relu -> maxpool(size: 2, stride: 2)
  out = dense(c1, units: 3)
  loss = softmax_xent(out, label)
}
train {
  batch: 4
  epochs: 1
  init { weight: he  bias: 0 }
  data {
    rescale: 20
    crop: 16
    random_crop: true
    mirror: true
    lighting: 0.1
    mean: true
    scale: 0.00392156862745098
    test: ten_crop
  }
}
";

#[test]
fn image_folder_ten_crops_agree_and_rows_name_their_files() {
    let dir = tmp("rgb");
    let root = dir.join("photos");
    // Three classes of coloured images of assorted sizes, one grey.
    let names = ["blue", "green", "red"];
    let mut files = Vec::new();
    for (k, name) in names.iter().enumerate() {
        std::fs::create_dir_all(root.join(name)).unwrap();
        for j in 0..4u32 {
            let (w, h) = (24 + 9 * j, 30 + 5 * (3 - j));
            let p = root.join(name).join(format!("im{j}.png"));
            if k == 0 && j == 3 {
                image::GrayImage::from_fn(w, h, |x, y| {
                    image::Luma([((x * 7 + y * 3) % 256) as u8])
                })
                .save(&p)
                .unwrap();
            } else {
                image::RgbImage::from_fn(w, h, |x, y| {
                    let mut px = [((x + y) * 3 % 90) as u8; 3];
                    px[2 - k] = 150 + ((x * y + j) % 100) as u8;
                    image::Rgb(px)
                })
                .save(&p)
                .unwrap();
            }
            files.push(p);
        }
    }
    let net = dir.join("tiny.net");
    std::fs::write(&net, RGB_NET).unwrap();
    let c = frontend::compile(RGB_NET).unwrap_or_else(|d| panic!("{}", d.message));
    let m = &c.module;
    let opts = TrainOptions {
        data: Some(root.clone()),
        epochs: Some(2),
        out_dir: dir.join("out"),
        quiet: true,
        ..Default::default()
    };
    train(m, &opts).unwrap();
    let ck = dir.join("out/checkpoint.safetensors");
    let prep = Preparation::load(&ck).unwrap();
    assert_eq!(prep.classes, names);
    assert_eq!(
        (prep.channels, prep.height, prep.rescale, prep.crop),
        (3, 20, Some(20), 16)
    );
    assert_eq!(prep.source, "image_folder");
    let pca = prep.pca.expect("RGB data has a PCA");
    assert!(pca.eigval[0] >= pca.eigval[1] && pca.eigval[1] >= pca.eigval[2]);
    assert!((prep.lighting - 0.1).abs() < 1e-7);

    let (report, table) = eval_rows(m, &ck, &root);
    assert_eq!(table.crops, 10);
    assert_eq!(table.rows.len(), 12);
    assert_eq!(table.top1_error(), report.top1_error);
    let mut pred = Predictor::open(m, &ck, None).unwrap();
    assert!(pred.ten_crop_default());
    for (r, f) in table.rows.iter().zip(&files) {
        assert_eq!(r.source, f.to_string_lossy(), "rows name their files");
        assert_eq!(r.logits.len(), 30);
        let p = pred.predict(f, true, 3).unwrap();
        assert_eq!(p.crops, 10);
        assert_eq!(p.top[0].class, r.predicted as usize, "{}", f.display());
        for (a, b) in p.logits.iter().zip(&r.logits) {
            assert!((a - b).abs() <= 1e-4 * (1.0 + b.abs()), "{a} vs {b}");
        }
        let want = netc::model::ten_crop::probabilities(&r.logits, 3);
        for (a, b) in p.probabilities.iter().zip(&want) {
            assert!((a - b).abs() < 1e-5, "{a} vs {b}");
        }
        // The centre crop alone is the fifth of the ten.
        let centre = pred.predict(f, false, 3).unwrap();
        for (a, b) in centre.logits.iter().zip(&p.logits[12..15]) {
            assert!((a - b).abs() <= 1e-4 * (1.0 + b.abs()), "{a} vs {b}");
        }
    }
    // The CLI: CSV sources are the paths, ten crops' columns crop-major.
    let csv = dir.join("p.csv");
    let (ok, out, err) = run(&[
        "eval",
        net.to_str().unwrap(),
        "--weights",
        ck.to_str().unwrap(),
        "--data",
        root.to_str().unwrap(),
        "--predictions",
        csv.to_str().unwrap(),
    ]);
    assert!(ok, "{err}");
    assert!(
        out.contains(&format!("top-1 error {:.2}%", 100.0 * report.top1_error)),
        "{out}"
    );
    let text = std::fs::read_to_string(&csv).unwrap();
    let header = text.lines().next().unwrap();
    assert!(header.ends_with("crop9_logit_1,crop9_logit_2"), "{header}");
    assert!(
        text.lines()
            .nth(1)
            .unwrap()
            .contains(files[0].to_str().unwrap())
    );
    let (ok, out, err) = run(&[
        "predict",
        net.to_str().unwrap(),
        "--weights",
        ck.to_str().unwrap(),
        "--center",
        "--top",
        "2",
        files[5].to_str().unwrap(),
    ]);
    assert!(ok, "{err}");
    assert_eq!(out.lines().count(), 3, "{out}");
    // Data whose classes are not the checkpoint's is refused.
    std::fs::rename(root.join("red"), root.join("zred")).unwrap();
    let opts = TrainOptions {
        data: Some(root.clone()),
        quiet: true,
        ..Default::default()
    };
    let e = eval_predictions_with(m, &ck, &opts, |cpu, _, _| {
        Ok::<_, netc::train::run::TrainError>(cpu)
    })
    .err()
    .unwrap()
    .to_string();
    assert!(
        e.contains("was trained on the classes") && e.contains("zred"),
        "{e}"
    );
    let _ = std::fs::remove_dir_all(&dir);
}

/// `netc eval` takes any number of images, whatever the training batch:
/// a data set whose training split is smaller than the batch evaluates
/// (it used to be refused as a run that would take no step), and
/// `--batch` (images per forward pass) gives the same figures.
#[test]
fn eval_takes_any_number_of_images_in_batches_of_its_choice() {
    use netc::data::idx::write_idx;
    let net = "networks/lenet5.net";
    let src = std::fs::read_to_string(net).unwrap();
    let c = frontend::compile(&src).unwrap_or_else(|_| panic!("compiles"));
    let dir = tmp("eval-batch");
    let opts = TrainOptions {
        data: Some(PathBuf::from("data/fmnist-small")),
        epochs: Some(1),
        seed: Some(5),
        max_steps: Some(2),
        out_dir: dir.clone(),
        quiet: true,
        ..Default::default()
    };
    train(&c.module, &opts).unwrap();
    let ck = dir.join("checkpoint.safetensors");
    // 20 training and 45 test images: both fewer than lenet5's batch of 64.
    let tiny = dir.join("tiny");
    std::fs::create_dir_all(&tiny).unwrap();
    let pixels = |n: usize| -> Vec<u8> { (0..n * 784).map(|i| (i * 131 % 251) as u8).collect() };
    let labels = |n: usize| -> Vec<u8> { (0..n).map(|i| (i * 7 % 10) as u8).collect() };
    for (split, n) in [("train", 20), ("t10k", 45)] {
        let img = tiny.join(format!("{split}-images-idx3-ubyte.gz"));
        write_idx(&img, 0x0803, &[n, 28, 28], &pixels(n), true).unwrap();
        let lab = tiny.join(format!("{split}-labels-idx1-ubyte.gz"));
        write_idx(&lab, 0x0801, &[n], &labels(n), true).unwrap();
    }
    let (ck, tiny) = (ck.to_str().unwrap(), tiny.to_str().unwrap());
    let (ok, whole, err) = run(&["eval", net, "--weights", ck, "--data", tiny]);
    assert!(ok, "{err}");
    assert!(whole.starts_with("45 images: top-1 error"), "{whole}");
    for b in ["1", "7", "45", "1000"] {
        let (ok, out, err) = run(&["eval", net, "--weights", ck, "--data", tiny, "--batch", b]);
        assert!(ok, "--batch {b}: {err}");
        // The errors exactly; the loss to the rounding of another summation order.
        let (head, loss) = out.trim().rsplit_once("loss ").unwrap();
        let (whead, wloss) = whole.trim().rsplit_once("loss ").unwrap();
        assert_eq!(head, whead, "--batch {b}");
        let (l, w): (f64, f64) = (loss.parse().unwrap(), wloss.parse().unwrap());
        assert!((l - w).abs() <= 2e-4, "--batch {b}: loss {l} against {w}");
    }
    let (ok, _, err) = run(&["eval", net, "--weights", ck, "--data", tiny, "--batch", "0"]);
    assert!(!ok && err.contains("--batch"), "{err}");
    let _ = std::fs::remove_dir_all(&dir);
}
