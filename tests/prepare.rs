//! `netc prepare` and the prepared dataset: raw records equal the folder
//! loader's pixels and statistics; a run killed (kill -9) or stopped and
//! resumed is byte-identical to an uninterrupted one; a flipped byte is
//! reported with the record's index and source path; bad files stop the run
//! or are skipped and listed; training and evaluation on a raw prepared
//! dataset give the same metrics and weights, bit for bit, as the same
//! folder loaded in memory; batches do not depend on the worker count.
//!
//! Uses the 100 photos of `../shared/data/imagenet-sample/` (skipped with a
//! message if absent; `NETC_REQUIRE_DATA=1` makes that a failure).

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::time::{Duration, Instant};

use netc::data::prepare::{PrepareOptions, prepare};
use netc::data::prepared::{Format, Prepared, PreparedError, PreparedSplit};
use netc::data::{
    AugmentConfig, Augmenter, Batch, DataError, Dataset, ImageSource, Loader, LoaderConfig, Stats,
    sources,
};

fn sample() -> Option<PathBuf> {
    let beside = Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared/data/imagenet-sample");
    let root = [beside, PathBuf::from("/work/shared/data/imagenet-sample")]
        .into_iter()
        .find(|p| p.is_dir());
    if root.is_none() {
        let required = std::env::var("NETC_REQUIRE_DATA").is_ok_and(|v| v == "1");
        assert!(
            !required,
            "imagenet-sample is absent and NETC_REQUIRE_DATA=1"
        );
        eprintln!(
            "skipping: needs ../shared/data/imagenet-sample, which is absent \
             (set NETC_REQUIRE_DATA=1 to fail instead)"
        );
    }
    root
}

fn tmp(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("netc-prepare-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

/// `dir/train/<class>/<file>` and `dir/val/<class>/<file>`: symbolic links
/// to the sample's photos (the first `n` classes), the same photos in both.
fn tree(sample: &Path, dir: &Path, n: usize) -> PathBuf {
    let root = dir.join("tree");
    let mut classes: Vec<PathBuf> = std::fs::read_dir(sample)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.is_dir())
        .collect();
    classes.sort();
    for class in classes.iter().take(n) {
        for split in ["train", "val"] {
            let d = root.join(split).join(class.file_name().unwrap());
            std::fs::create_dir_all(&d).unwrap();
            for f in std::fs::read_dir(class).unwrap() {
                let f = f.unwrap().path();
                std::os::unix::fs::symlink(&f, d.join(f.file_name().unwrap())).unwrap();
            }
        }
    }
    root
}

fn opts(src: &Path, out: &Path, format: Format, size: u32) -> PrepareOptions {
    PrepareOptions {
        size,
        format,
        ..PrepareOptions::new(src, out)
    }
}

#[test]
fn raw_records_equal_the_folder_loader_and_its_statistics() {
    let Some(sample) = sample() else { return };
    let dir = tmp("raw-equal");
    let src = tree(&sample, &dir, 40);
    let out = dir.join("ds.netc");
    let r = prepare(&opts(&src, &out, Format::Raw, 48)).unwrap();
    assert_eq!((r.train, r.val, r.finished), (40, 40, true));
    let file = Arc::new(Prepared::open(&out).unwrap());
    let ds = Dataset::image_folders(src.join("train"), Some(&src.join("val")), 48).unwrap();
    assert_eq!(file.meta().classes, ds.class_names);
    let (train, val) = (PreparedSplit::train(&file), PreparedSplit::val(&file));
    let mut buf = Vec::new();
    for i in 0..40 {
        assert_eq!(
            train.image(i, &mut buf).unwrap(),
            ds.train.image(i),
            "train {i}"
        );
        assert_eq!(val.image(i, &mut buf).unwrap(), ds.test.image(i), "val {i}");
        assert_eq!(train.label(i), ds.train.labels[i]);
        assert!(
            file.source_path(i).starts_with("train/"),
            "{}",
            file.source_path(i)
        );
    }
    assert!(file.source_path(40).starts_with("val/"));
    assert_eq!(
        file.stats(),
        Stats::compute(&ds.train),
        "stored sums give the same stats"
    );
    let info = file.info();
    assert!(
        info.contains("40 train / 40 val") && info.contains("raw"),
        "{info}"
    );
    // JPEG records decode to the same size, close to the raw pixels.
    let jout = dir.join("ds-jpeg.netc");
    prepare(&opts(&src, &jout, Format::Jpeg, 48)).unwrap();
    let jfile = Arc::new(Prepared::open(&jout).unwrap());
    assert!(jfile.file_len() < file.file_len());
    assert_eq!(
        jfile.stats(),
        file.stats(),
        "stats come from the pixels before encoding"
    );
    let jtrain = PreparedSplit::train(&jfile);
    let mut jbuf = Vec::new();
    let (a, b) = (
        train.image(3, &mut buf).unwrap().to_vec(),
        jtrain.image(3, &mut jbuf).unwrap(),
    );
    let err = a
        .iter()
        .zip(b)
        .map(|(&x, &y)| (x as f64 - y as f64).abs())
        .sum::<f64>()
        / a.len() as f64;
    assert!(err < 6.0, "mean abs JPEG error {err}");
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn stopped_then_resumed_is_byte_identical() {
    let Some(sample) = sample() else { return };
    let dir = tmp("stop-resume");
    let src = tree(&sample, &dir, 30);
    for format in [Format::Jpeg, Format::Raw] {
        let want = dir.join("whole.netc");
        prepare(&opts(&src, &want, format, 40)).unwrap();
        let got = dir.join("parts.netc");
        // The first format's result stays in place while the second is
        // prepared over it, until that one finishes.
        let earlier = std::fs::read(&got).ok();
        for stop in [7, 25] {
            let o = PrepareOptions {
                commit_every: 4,
                stop_after: Some(stop),
                ..opts(&src, &got, format, 40)
            };
            let r = prepare(&o).unwrap();
            assert!(!r.finished);
            assert!(
                std::fs::read(&got).ok() == earlier,
                "an unfinished run touched the output"
            );
            // What a killed run leaves after its last commit: bytes that
            // were written but not committed.
            for suffix in [".partial", ".partial-index"] {
                let p = PathBuf::from(format!("{}{suffix}", got.display()));
                let mut b = std::fs::read(&p).unwrap();
                b.extend_from_slice(&[0xab; 777]);
                std::fs::write(&p, b).unwrap();
            }
        }
        let r = prepare(&opts(&src, &got, format, 40)).unwrap();
        assert!(r.finished && r.resumed_at >= 25, "{r:?}");
        assert!(
            std::fs::read(&want).unwrap() == std::fs::read(&got).unwrap(),
            "{format:?}: resumed output differs"
        );
        assert!(!Path::new(&format!("{}.partial", got.display())).exists());
        // Other settings do not resume the old partial files: they start over.
        let o = PrepareOptions {
            stop_after: Some(5),
            commit_every: 5,
            ..opts(&src, &got, format, 40)
        };
        prepare(&o).unwrap();
        let r = prepare(&PrepareOptions {
            quality: 80,
            ..opts(&src, &got, format, 40)
        })
        .unwrap();
        assert_eq!(r.resumed_at, 0);
    }
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn killed_prepare_resumes_byte_identical() {
    let Some(sample) = sample() else { return };
    let dir = tmp("kill");
    let src = tree(&sample, &dir, 100);
    let bin = env!("CARGO_BIN_EXE_netc");
    let run = |out: &Path| {
        let mut c = Command::new(bin);
        c.args([
            "prepare",
            src.to_str().unwrap(),
            "-o",
            out.to_str().unwrap(),
        ])
        .args(["--size", "96", "--commit-every", "1"])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null());
        c
    };
    let want = dir.join("whole.netc");
    assert!(run(&want).status().unwrap().success());
    let got = dir.join("killed.netc");
    let progress = PathBuf::from(format!("{}.partial-progress", got.display()));
    let mut kills = 0;
    for round in 0..2 {
        let mut child = run(&got).spawn().unwrap();
        let t = Instant::now();
        let before = std::fs::read(&progress).ok();
        // Wait for a (new) commit, then kill -9 at once, mid-run.
        while std::fs::read(&progress).ok() == before && t.elapsed() < Duration::from_secs(60) {
            std::thread::sleep(Duration::from_millis(2));
        }
        std::thread::sleep(Duration::from_millis(30 * round));
        child.kill().unwrap();
        let status = child.wait().unwrap();
        if !status.success() && !got.exists() {
            kills += 1;
        }
    }
    assert!(kills >= 1, "no run was killed before it finished");
    let out = run(&got).output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        std::fs::read(&want).unwrap() == std::fs::read(&got).unwrap(),
        "killed and resumed output differs from an uninterrupted run"
    );
    // --info describes it.
    let info = Command::new(bin)
        .args(["prepare", "--info", got.to_str().unwrap()])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&info.stdout);
    assert!(
        info.status.success() && text.contains("100 train / 100 val"),
        "{text}"
    );
    assert!(text.contains("JPEG quality 90, 96x96"), "{text}");
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn a_flipped_byte_names_the_record_and_its_source() {
    let Some(sample) = sample() else { return };
    let dir = tmp("flip");
    let src = tree(&sample, &dir, 10);
    let out = dir.join("ds.netc");
    prepare(&opts(&src, &out, Format::Jpeg, 32)).unwrap();
    let file = Prepared::open(&out).unwrap();
    let e = file.entry(13);
    let path = file.source_path(13);
    drop(file);
    let mut bytes = std::fs::read(&out).unwrap();
    bytes[e.offset as usize + e.len as usize / 2] ^= 0x10;
    std::fs::write(&out, &bytes).unwrap();
    let file = Arc::new(Prepared::open(&out).unwrap());
    assert!(file.record(12).is_ok() && file.record(14).is_ok());
    let err = file.record(13).unwrap_err();
    let msg = err.to_string();
    assert!(
        matches!(err, PreparedError::Checksum { index: 13, .. }),
        "{msg}"
    );
    assert!(
        msg.contains(&path) && msg.contains("ds.netc") && msg.contains("record 13"),
        "{msg}"
    );
    // Through the loader: training stops with that error, not a panic.
    let split = Arc::new(PreparedSplit::val(&file));
    let aug = Augmenter::new(AugmentConfig::plain(32, 1.0), &file.stats(), 0).unwrap();
    let loader = Loader::from_source(split, aug, LoaderConfig::eval(4)).unwrap();
    let got: Vec<Batch> = loader.epoch(0, 0).collect();
    assert_eq!(got.len(), 0, "batch 0 holds val record 3 = record 13");
    let err = loader.take_error().expect("the error is kept");
    assert!(err.to_string().contains("record 13"), "{err}");
    // A damaged header or a cut file is an error naming the file.
    let mut hb = bytes.clone();
    hb[20] ^= 1;
    std::fs::write(&out, &hb).unwrap();
    let msg = Prepared::open(&out).err().unwrap().to_string();
    assert!(msg.contains("corrupt header"), "{msg}");
    std::fs::write(&out, &bytes[..bytes.len() - 100]).unwrap();
    let msg = Prepared::open(&out).err().unwrap().to_string();
    assert!(msg.contains("ds.netc") && msg.contains("outside"), "{msg}");
    std::fs::write(&out, b"hello").unwrap();
    assert!(matches!(
        Prepared::open(&out),
        Err(PreparedError::NotPrepared { .. })
    ));
    let _ = std::fs::remove_dir_all(&dir);
}

/// Every byte of a dataset's metadata (the 4096-byte header, and the
/// index, path table, paths, meta, stats and the padding between them),
/// flipped one at a time in two ways: each is refused on opening, none
/// accepted (a flipped path byte used to be accepted, and showed a wrong
/// source path). A flipped byte of the padding after a record is refused
/// when the record is read.
#[test]
fn every_byte_of_the_metadata_is_covered_by_a_checked_checksum() {
    let Some(sample) = sample() else { return };
    let dir = tmp("flipall");
    let src = tree(&sample, &dir, 2);
    let out = dir.join("ds.netc");
    // 9x9 raw records: 243 bytes, then 13 bytes of padding.
    prepare(&opts(&src, &out, Format::Raw, 9)).unwrap();
    let good = std::fs::read(&out).unwrap();
    let file = Prepared::open(&out).unwrap();
    let (n, first) = (file.len(), file.entry(0));
    let meta_from = file.entry(n - 1).offset as usize + 256;
    drop(file);
    assert!(n >= 4 && first.len == 243, "{n} {first:?}");
    let meta_bytes: Vec<usize> = (0..4096).chain(meta_from..good.len()).collect();
    assert!(meta_bytes.len() > 4096 + 1000, "{}", meta_bytes.len());
    let probe = dir.join("probe.netc");
    let mut accepted = Vec::new();
    for &i in &meta_bytes {
        for flip in [0x01u8, 0xff] {
            let mut bad = good.clone();
            bad[i] ^= flip;
            std::fs::write(&probe, &bad).unwrap();
            if Prepared::open(&probe).is_ok() {
                accepted.push((i, flip));
            }
        }
    }
    assert!(accepted.is_empty(), "accepted flips: {accepted:?}");
    // The padding after record 0: opening succeeds, reading it fails.
    let mut bad = good.clone();
    bad[first.offset as usize + 250] ^= 0x01;
    std::fs::write(&probe, &bad).unwrap();
    let file = Prepared::open(&probe).unwrap();
    assert!(file.record(1).is_ok());
    let e = file.record(0).unwrap_err().to_string();
    assert!(e.contains("record 0") && e.contains("probe.netc"), "{e}");
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn bad_files_stop_prepare_or_are_skipped_and_listed() {
    let Some(sample) = sample() else { return };
    let dir = tmp("bad");
    let src = tree(&sample, &dir, 3);
    let class = std::fs::read_dir(src.join("train"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .min()
        .unwrap();
    let photo = std::fs::read_dir(&class)
        .unwrap()
        .next()
        .unwrap()
        .unwrap()
        .path();
    let bytes = std::fs::read(&photo).unwrap();
    std::fs::write(class.join("cut.JPEG"), &bytes[..bytes.len() / 2]).unwrap();
    // A PNG named .JPEG is decoded by its content.
    image::RgbImage::from_pixel(50, 40, image::Rgb([10, 200, 30]))
        .save_with_format(class.join("png.JPEG"), image::ImageFormat::Png)
        .unwrap();
    let out = dir.join("ds.netc");
    let err = prepare(&opts(&src, &out, Format::Raw, 32))
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("cut.JPEG") && err.contains("truncated"),
        "{err}"
    );
    assert!(!out.exists());
    std::fs::write(class.join("zz-garbage.jpg"), b"\xff\xd8 not really\xff\xd9").unwrap();
    let r = prepare(&PrepareOptions {
        skip_bad: true,
        ..opts(&src, &out, Format::Raw, 32)
    })
    .unwrap();
    assert_eq!(r.skipped.len(), 2, "{:?}", r.skipped);
    assert_eq!(
        (r.train, r.val),
        (4, 3),
        "3 photos and the PNG; 3 val photos"
    );
    let list = std::fs::read_to_string(dir.join("ds.netc.skipped.txt")).unwrap();
    assert!(
        list.contains("cut.JPEG") && list.contains("zz-garbage.jpg"),
        "{list}"
    );
    let file = Arc::new(Prepared::open(&out).unwrap());
    let train = PreparedSplit::train(&file);
    let png = (0..4)
        .find(|&i| file.source_path(i).ends_with("png.JPEG"))
        .unwrap();
    let mut buf = Vec::new();
    let img = train.image(png, &mut buf).unwrap();
    assert_eq!((img[0], img[32 * 32], img[2 * 32 * 32]), (10, 200, 30));
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn batches_do_not_depend_on_workers_and_raw_equals_memory() {
    let Some(sample) = sample() else { return };
    let dir = tmp("workers");
    let src = tree(&sample, &dir, 20);
    let out = dir.join("ds.netc");
    prepare(&opts(&src, &out, Format::Jpeg, 40)).unwrap();
    let raw = dir.join("raw.netc");
    prepare(&opts(&src, &raw, Format::Raw, 40)).unwrap();
    let cfg = AugmentConfig {
        random_crop: true,
        crop: 32,
        ..AugmentConfig::alexnet()
    };
    let batches = |file: &Path, workers| -> Vec<Batch> {
        let f = Arc::new(Prepared::open(file).unwrap());
        let aug = Augmenter::new(cfg, &f.stats(), 9).unwrap();
        let lc = LoaderConfig {
            workers,
            ..LoaderConfig::train(6, 9)
        };
        let l = Loader::from_source(Arc::new(PreparedSplit::train(&f)), aug, lc).unwrap();
        (0..2)
            .flat_map(|e| l.epoch(e, 0).collect::<Vec<_>>())
            .collect()
    };
    let one = batches(&out, 1);
    assert_eq!(one.len(), 6);
    assert_eq!(one, batches(&out, 3), "JPEG: 1 vs 3 workers");
    let ds = Dataset::image_folders(src.join("train"), None, 40).unwrap();
    let aug = Augmenter::new(cfg, &Stats::compute(&ds.train), 9).unwrap();
    let mem = Loader::new(Arc::new(ds.train), aug, LoaderConfig::train(6, 9)).unwrap();
    let want: Vec<Batch> = (0..2)
        .flat_map(|e| mem.epoch(e, 0).collect::<Vec<_>>())
        .collect();
    assert_eq!(
        batches(&raw, 2),
        want,
        "raw records give the in-memory batches"
    );
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn large_folders_are_refused_in_favour_of_prepare() {
    let Some(sample) = sample() else { return };
    let dir = tmp("budget");
    let src = tree(&sample, &dir, 5);
    let err = sources::open_with_budget(Some(&src), Some(256), 1 << 20)
        .err()
        .unwrap();
    let msg = err.to_string();
    assert!(
        matches!(err, DataError::TooLarge { images: 10, .. }),
        "{msg}"
    );
    assert!(
        msg.contains("netc prepare") && msg.contains("tree"),
        "{msg}"
    );
    assert!(sources::open_with_budget(Some(&src), Some(32), 1 << 20).is_ok());
    // A dataset prepared at another size is refused with the fix.
    let out = dir.join("ds.netc");
    prepare(&opts(&src, &out, Format::Jpeg, 32)).unwrap();
    let msg = sources::open(Some(&out), Some(256))
        .err()
        .unwrap()
        .to_string();
    assert!(msg.contains("--size 256"), "{msg}");
    let _ = std::fs::remove_dir_all(&dir);
}

const TINY: &str = "
network tiny {
  input image: [3, 24, 24]
  input label: class(100)
  c1 = conv(image, filters: 8, size: 5, stride: 2) -> relu -> maxpool(size: 3, stride: 2)
  out = dense(c1, units: 100)
  loss = softmax_xent(out, label)
}
train {
  batch: 8
  epochs: 2
  seed: 5
  sgd { lr: 0.01, momentum: 0.9, weight_decay: 0.0005 }
  data {
    rescale: 32
    crop: 24
    random_crop: true
    mirror: true
    lighting: 0.1
    mean: true
    test: ten_crop
  }
}
";

#[test]
fn training_on_raw_prepared_equals_the_folder_in_memory() {
    use netc::train::run::{Outcome, TrainOptions, eval_weights, load_weights, train};
    let Some(sample) = sample() else { return };
    let dir = tmp("train-equal");
    let src = tree(&sample, &dir, 100);
    let out = dir.join("ds.netc");
    prepare(&opts(&src, &out, Format::Raw, 32)).unwrap();
    let c = netc::frontend::compile(TINY).unwrap_or_else(|d| panic!("{}", d.message));
    let run = |data: &Path, name: &str| {
        let o = TrainOptions {
            data: Some(data.to_path_buf()),
            max_steps: Some(4),
            out_dir: dir.join(name),
            quiet: true,
            ..Default::default()
        };
        let Outcome::Finished(r) = train(&c.module, &o).unwrap() else {
            panic!("did not finish")
        };
        let w = load_weights(&dir.join(name).join("checkpoint.safetensors")).unwrap();
        let ev = eval_weights(
            &c.module,
            &dir.join(name).join("checkpoint.safetensors"),
            &o,
        )
        .unwrap();
        (r, w, ev)
    };
    let (ra, wa, ea) = run(&src, "folder");
    let (rb, wb, eb) = run(&out, "prepared");
    assert_eq!(ra.len(), 2);
    // Everything but the speed is equal, bit for bit.
    for (a, b) in ra.iter().zip(&rb) {
        let speedless = |r: &netc::train::run::EpochReport| {
            (
                r.epoch,
                r.lr.to_bits(),
                r.train_loss.to_bits(),
                r.test_loss.to_bits(),
                r.top1_error.to_bits(),
                r.top5_error.to_bits(),
            )
        };
        assert_eq!(speedless(a), speedless(b));
    }
    assert_eq!(ea, eb);
    assert_eq!(ea.images, 100);
    assert!(wa == wb, "weights differ");
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn prepare_command_errors_are_clear() {
    let bin = env!("CARGO_BIN_EXE_netc");
    let dir = tmp("cli");
    let run = |args: &[&str]| Command::new(bin).args(args).output().unwrap();
    let missing = dir.join("nowhere");
    let x = dir.join("x.netc");
    let out = run(&[
        "prepare",
        missing.to_str().unwrap(),
        "-o",
        x.to_str().unwrap(),
    ]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(
        err.contains("nowhere") && err.contains("not a folder"),
        "{err}"
    );
    std::fs::write(dir.join("junk.netc"), b"junk junk junk").unwrap();
    let out = run(&["prepare", "--info", dir.join("junk.netc").to_str().unwrap()]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(
        err.contains("junk.netc") && err.contains("not a prepared dataset"),
        "{err}"
    );
    // A usage error exits 1, as every error does.
    let out = run(&["prepare"]);
    assert_eq!(out.status.code(), Some(1), "a usage error");
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn recycled_batch_buffers_give_the_same_batches() {
    let Some(sample) = sample() else { return };
    let dir = tmp("recycle");
    let src = tree(&sample, &dir, 12);
    let out = dir.join("ds.netc");
    prepare(&opts(&src, &out, Format::Raw, 40)).unwrap();
    let f = Arc::new(Prepared::open(&out).unwrap());
    let cfg = AugmentConfig {
        random_crop: true,
        crop: 32,
        ..AugmentConfig::alexnet()
    };
    let loader = || {
        let aug = Augmenter::new(cfg, &f.stats(), 4).unwrap();
        let split = Arc::new(PreparedSplit::train(&f));
        Loader::from_source(split, aug, LoaderConfig::train(4, 4)).unwrap()
    };
    let (plain, recycling) = (loader(), loader());
    let want: Vec<Batch> = (0..3)
        .flat_map(|e| plain.epoch(e, 0).collect::<Vec<_>>())
        .collect();
    let mut got = Vec::new();
    for e in 0..3 {
        for b in recycling.epoch(e, 0) {
            got.push(b.clone());
            // The buffer goes back dirty; the next batch must not show it.
            let mut b = b;
            b.images.iter_mut().for_each(|v| *v = f32::NAN);
            recycling.recycle(b);
        }
    }
    assert_eq!(want.len(), 9);
    assert_eq!(got, want);
    let _ = std::fs::remove_dir_all(&dir);
}

/// A single folder of classes without `--val-fraction` gives a dataset
/// with no validation images: `prepare` says so on stderr, with the flag
/// that keeps some (it used to write 0 validation images silently).
#[test]
fn a_dataset_without_validation_images_is_said_to_be_one() {
    let Some(sample) = sample() else { return };
    let d = tmp("noval");
    let src = d.join("single");
    let mut classes: Vec<PathBuf> = std::fs::read_dir(&sample)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.is_dir())
        .collect();
    classes.sort();
    // Each class's photos four times over, so that a fraction can split them.
    for class in classes.iter().take(2) {
        let dst = src.join(class.file_name().unwrap());
        std::fs::create_dir_all(&dst).unwrap();
        for f in std::fs::read_dir(class).unwrap() {
            let f = f.unwrap().path();
            let name = f.file_name().unwrap().to_string_lossy().into_owned();
            for k in 0..4 {
                std::os::unix::fs::symlink(&f, dst.join(format!("{k}-{name}"))).unwrap();
            }
        }
    }
    let bin = env!("CARGO_BIN_EXE_netc");
    let run = |out: &str, extra: &[&str]| {
        let o = std::process::Command::new(bin)
            .args(["prepare", src.to_str().unwrap(), "-o"])
            .arg(d.join(out))
            .args(["--size", "16"])
            .args(extra)
            .output()
            .unwrap();
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
        (
            String::from_utf8_lossy(&o.stdout).into_owned(),
            String::from_utf8_lossy(&o.stderr).into_owned(),
        )
    };
    let (out, err) = run("a.netc", &[]);
    assert!(out.contains(" / 0 val"), "{out}");
    assert!(
        err.contains("no validation images") && err.contains("--val-fraction"),
        "{err}"
    );
    let (out, err) = run("b.netc", &["--val-fraction", "0.5"]);
    assert!(!out.contains(" / 0 val"), "{out}");
    assert!(!err.contains("no validation images"), "{err}");
    // A fraction that takes every image is refused for what it is.
    let o = std::process::Command::new(bin)
        .args(["prepare", src.to_str().unwrap(), "-o"])
        .arg(d.join("c.netc"))
        .args(["--size", "16", "--val-fraction", "0.99"])
        .output()
        .unwrap();
    let e = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(1), "{e}");
    assert!(
        e.contains("every image went to validation") && !e.contains("unreadable"),
        "{e}"
    );
    let _ = std::fs::remove_dir_all(&d);
}
