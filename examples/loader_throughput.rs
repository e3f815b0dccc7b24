//! The training loader's throughput on a prepared dataset: decoding and the
//! paper's augmentation (random 227 crop, mirror, PCA lighting, mean
//! subtraction, to `f32`), no training step.
//!
//! ```sh
//! cargo run --release --example loader_throughput -- DATASET --workers 2 --batches 40
//! ```
//!
//! Prints one line `netc loader: W workers: N images in S s = R images/s`,
//! then the time per image of each stage on one thread (read and checksum,
//! decode, augment).

use std::sync::Arc;
use std::time::Instant;

use netc::data::prepared::{Prepared, PreparedSplit};
use netc::data::{AugmentConfig, Augmenter, ImageSource, Loader, LoaderConfig, Mode};

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let Some(path) = args.first() else {
        eprintln!("usage: loader_throughput DATASET [--workers N] [--batches K] [--batch B]");
        std::process::exit(2);
    };
    let opt = |name: &str, default: usize| {
        args.iter()
            .position(|a| a == name)
            .and_then(|i| args.get(i + 1))
            .and_then(|v| v.parse().ok())
            .unwrap_or(default)
    };
    let (workers, batches, batch) = (
        opt("--workers", 1),
        opt("--batches", 40),
        opt("--batch", 128),
    );
    let file = match Prepared::open(path) {
        Ok(f) => Arc::new(f),
        Err(e) => {
            eprintln!("error: {e}");
            std::process::exit(1);
        }
    };
    let stats = file.stats();
    let aug = Augmenter::new(AugmentConfig::alexnet(), &stats, 1).unwrap_or_else(|e| {
        eprintln!("error: {e}");
        std::process::exit(1)
    });
    let split = Arc::new(PreparedSplit::train(&file));
    let cfg = LoaderConfig {
        workers,
        prefetch: 4,
        mode: Mode::Train,
        ..LoaderConfig::train(batch, 1)
    };
    let loader = Loader::from_source(split.clone(), aug.clone(), cfg).unwrap_or_else(|e| {
        eprintln!("error: {e}");
        std::process::exit(1)
    });
    // One batch to warm up (thread start, first page faults).
    let _ = loader.batch(99, 0);
    let t = Instant::now();
    let mut n = 0usize;
    let mut epoch = 0;
    while n < batches * batch {
        for b in loader.epoch(epoch, 0).take(batches - n / batch) {
            n += b.labels.len();
            std::hint::black_box(&b.images);
            loader.recycle(b);
        }
        if let Some(e) = loader.take_error() {
            eprintln!("error: {e}");
            std::process::exit(1);
        }
        epoch += 1;
    }
    let secs = t.elapsed().as_secs_f64();
    println!(
        "netc loader: {workers} workers: {n} images in {secs:.2} s = {:.0} images/s",
        n as f64 / secs
    );
    // Stages, one thread.
    let m = 300.min(split.len());
    let mut buf = Vec::new();
    let mut out = vec![0f32; aug.out_shape().len()];
    let t = Instant::now();
    for i in 0..m {
        std::hint::black_box(file.record(i).map(|r| r.len()).unwrap_or(0));
    }
    let read = t.elapsed().as_secs_f64() / m as f64;
    let t = Instant::now();
    for i in 0..m {
        let _ = std::hint::black_box(split.image(i, &mut buf).map(|b| b.len()));
    }
    let decode = t.elapsed().as_secs_f64() / m as f64 - read;
    let img = split
        .image(0, &mut buf)
        .map(|b| b.to_vec())
        .unwrap_or_default();
    let t = Instant::now();
    for i in 0..m {
        aug.train_into(&img, 0, i, &mut out);
        std::hint::black_box(&out);
    }
    let augment = t.elapsed().as_secs_f64() / m as f64;
    println!(
        "stages per image, one thread: read+checksum {:.1} us, decode {:.1} us, crop+mirror+lighting+mean {:.1} us",
        read * 1e6,
        decode * 1e6,
        augment * 1e6
    );
}
