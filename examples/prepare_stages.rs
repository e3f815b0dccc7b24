//! Where `netc prepare`'s time goes, per image on one thread: read, decode,
//! crop and resize (the folder loader's preparation), JPEG encode.
//!
//! ```sh
//! cargo run --release --example prepare_stages -- FILE.JPEG...
//! ```

use std::time::Instant;

use netc::data::{Shape, folder, jpeg};

fn main() {
    let files: Vec<String> = std::env::args().skip(1).collect();
    if files.is_empty() {
        eprintln!("usage: prepare_stages FILE...");
        std::process::exit(2);
    }
    let mut t = [0f64; 4];
    let mut n = 0;
    for f in &files {
        let s = Instant::now();
        let Ok(bytes) = std::fs::read(f) else {
            eprintln!("cannot read {f}");
            continue;
        };
        t[0] += s.elapsed().as_secs_f64();
        let s = Instant::now();
        let Ok(img) = image::load_from_memory(&bytes) else {
            eprintln!("cannot decode {f}");
            continue;
        };
        let rgb = img.to_rgb8();
        t[1] += s.elapsed().as_secs_f64();
        let s = Instant::now();
        let px = folder::prepare(&rgb, 256);
        t[2] += s.elapsed().as_secs_f64();
        let s = Instant::now();
        let rec = jpeg::encode_chw(&px, Shape::new(3, 256, 256), 90);
        std::hint::black_box(&rec);
        t[3] += s.elapsed().as_secs_f64();
        n += 1;
    }
    let us = |x: f64| x / n.max(1) as f64 * 1e6;
    println!(
        "{n} images, per image: read {:.0} us, decode {:.0} us, crop+resize {:.0} us, JPEG encode {:.0} us",
        us(t[0]),
        us(t[1]),
        us(t[2]),
        us(t[3])
    );
}
