//! `netc kernels` end to end: tiny networks trained a few steps by `netc
//! train`, their kernels drawn, the PNG decoded and checked against the
//! checkpoint's weights (size from the layout formula, every kernel's tile
//! spanning 0–255, each tower's block where it belongs, every pixel the
//! normalised weight), and the errors: an unknown layer, another network's
//! checkpoint, missing files, and a failed run leaving an earlier picture
//! as it was.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use netc::picture::kernels::{GAP, INK, LINE, PAPER, TOWER_GAP};

fn netc(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_netc"))
        .args(args)
        .output()
        .unwrap()
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// A fresh directory under the system's temporary directory.
fn tmp(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("netc-kernels-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

/// Two towers of 1-channel 5×5 kernels on Fashion-MNIST (6 per tower).
const GREY: &str = "network grey {
  input image: [1, 28, 28]
  input label: class(10)
  towers 2 {
    conv1 = conv(image, filters: 12, size: 5, stride: 2) -> relu -> maxpool(size: 3, stride: 2)
  }
  fc = dense(across(conv1), units: 10)
  loss = softmax_xent(fc, label)
}
train {
  batch: 16
  sgd { lr: 0.05, momentum: 0.9, weight_decay: 0.0005 }
  init { weight: he  bias: 0 }
  data { scale: 0.00392156862745098 }
}
";

/// Two towers of RGB 5×5 kernels (20 per tower: two rows of 16), and a
/// tower-local conv2 with 20 input channels (drawn a slice per channel).
const COLOUR: &str = "network colour {
  input image: [3, 12, 12]
  input label: class(2)
  towers 2 {
    conv1 = conv(image, filters: 40, size: 5) -> relu -> maxpool(size: 2, stride: 2)
    conv2 = conv(conv1, filters: 6, size: 3, pad: 1) -> relu
  }
  fc = dense(across(conv2), units: 2)
  loss = softmax_xent(fc, label)
}
train {
  batch: 4
  sgd { lr: 0.01, momentum: 0.9, weight_decay: 0.0005 }
  init { weight: he  bias: 0 }
  data { rescale: 16  crop: 12  random_crop: true  mirror: true  scale: 0.00392156862745098 }
}
";

/// Writes `src` as `name.net` in `dir`.
fn net(dir: &Path, name: &str, src: &str) -> PathBuf {
    let p = dir.join(format!("{name}.net"));
    std::fs::write(&p, src).unwrap();
    p
}

/// `dir/{train,val}/{a,b}/*.png`: small random colour images.
fn colour_folder(dir: &Path) -> PathBuf {
    let root = dir.join("images");
    for (split, n) in [("train", 6), ("val", 2)] {
        for (c, class) in ["a", "b"].iter().enumerate() {
            let d = root.join(split).join(class);
            std::fs::create_dir_all(&d).unwrap();
            for i in 0..n {
                let key = (c * 100 + i + if split == "val" { 50 } else { 0 }) as u64;
                let img = image::RgbImage::from_fn(16, 16, |x, y| {
                    let at = |k: u64| (netc::rng::bits(key, k, (y * 16 + x) as u64) % 256) as u8;
                    // Class `a` is redder, `b` bluer.
                    image::Rgb([
                        at(0) / 2 + 127 * (c == 0) as u8,
                        at(1),
                        at(2) / 2 + 127 * c as u8,
                    ])
                });
                img.save(d.join(format!("{i}.png"))).unwrap();
            }
        }
    }
    root
}

/// Trains `file` a few steps on `data` into `out`; returns the checkpoint.
fn train(file: &Path, data: &Path, out: &Path, extra: &[&str]) -> PathBuf {
    let mut args = vec![
        "train",
        s(file),
        "--data",
        s(data),
        "--epochs",
        "1",
        "--max-steps",
        "3",
        "--out",
        s(out),
    ];
    args.extend_from_slice(extra);
    let o = netc(&args);
    assert!(o.status.success(), "train: {}", stderr(&o));
    out.join("checkpoint.safetensors")
}

/// One tower's kernels `[F, C, K, K]` as the checkpoint holds them.
fn weights(ckpt: &Path, key: &str) -> (Vec<usize>, Vec<f32>) {
    let c = netc::model::checkpoint::load(ckpt).unwrap();
    c.tensors[key].clone()
}

/// The documented display mapping: min–max of the kernel to 0–255.
fn normalised(kernel: &[f32]) -> Vec<u8> {
    let lo = kernel.iter().copied().fold(f32::INFINITY, f32::min) as f64;
    let hi = kernel.iter().copied().fold(f32::NEG_INFINITY, f32::max) as f64;
    assert!(hi > lo, "a constant kernel");
    kernel
        .iter()
        .map(|&w| ((w as f64 - lo) / (hi - lo) * 255.0).round() as u8)
        .collect()
}

/// Checks a picture of one-tile-per-kernel tiles (`cols` to a row) of
/// `towers` against the weights: size, the tower band, each tile's range
/// and every pixel. `pixel(img, x, y)` reads a pixel's channels.
fn check_tiles(
    img: &image::DynamicImage,
    towers: &[(Vec<usize>, Vec<f32>)],
    cols: usize,
    scale: usize,
) {
    let (f, c, k) = (towers[0].0[0], towers[0].0[1], towers[0].0[2]);
    let tile = k * scale;
    let rows = f.div_ceil(cols);
    let block = rows * (tile + GAP) - GAP;
    let width = GAP + cols * (tile + GAP);
    let height = towers.len() * (TOWER_GAP + block + 2 * GAP);
    assert_eq!(
        (img.width() as usize, img.height() as usize),
        (width, height)
    );
    let rgb = img.to_rgb8();
    let px = |x: usize, y: usize| rgb.get_pixel(x as u32, y as u32).0;
    for (t, (_, w)) in towers.iter().enumerate() {
        let top = TOWER_GAP + GAP + t * (block + 2 * GAP + TOWER_GAP);
        // The band above this block is paper with the tower's name in ink.
        let mut ink = 0;
        for y in top - GAP - TOWER_GAP..top - GAP {
            for x in 0..width {
                let p = px(x, y);
                assert!(p == PAPER || p == INK, "band at ({x}, {y}): {p:?}");
                ink += usize::from(p == INK);
            }
        }
        assert!(ink > 20, "tower {t}'s name: {ink} dots");
        let per = c * k * k;
        for kernel in 0..f {
            let n = normalised(&w[kernel * per..(kernel + 1) * per]);
            let x0 = GAP + (kernel % cols) * (tile + GAP);
            let y0 = top + (kernel / cols) * (tile + GAP);
            let (mut lo, mut hi) = (255u8, 0u8);
            for y in 0..tile {
                for x in 0..tile {
                    let p = px(x0 + x, y0 + y);
                    let (ky, kx) = (y / scale, x / scale);
                    let want: [u8; 3] = if c == 3 {
                        [0, 1, 2].map(|ch| n[(ch * k + ky) * k + kx])
                    } else {
                        [n[ky * k + kx]; 3]
                    };
                    assert_eq!(p, want, "tower {t} kernel {kernel} at ({kx}, {ky})");
                    lo = lo.min(*p.iter().min().unwrap());
                    hi = hi.max(*p.iter().max().unwrap());
                }
            }
            assert_eq!((lo, hi), (0, 255), "tower {t} kernel {kernel}");
            // The lines left of and above the tile are the line colour.
            assert_eq!(px(x0 - 1, y0), LINE);
            assert_eq!(px(x0 - GAP, y0), LINE);
            assert_eq!(px(x0, y0 - 1), LINE);
        }
    }
}

#[test]
fn greyscale_kernels_of_two_towers() {
    let d = tmp("grey");
    let file = net(&d, "grey", GREY);
    let ckpt = train(&file, Path::new("data/fmnist-small"), &d.join("out"), &[]);
    let png = d.join("k.png");
    let o = netc(&[
        "kernels",
        s(&file),
        "--weights",
        s(&ckpt),
        "-o",
        s(&png),
        "--scale",
        "3",
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let said = String::from_utf8_lossy(&o.stdout);
    assert!(
        said.contains("`conv1`, 2 towers × 6/6 kernels 5×5×1 (greyscale), scale 3"),
        "{said}"
    );
    let img = image::open(&png).unwrap();
    assert_eq!(img.color(), image::ColorType::Rgb8);
    let towers: Vec<_> = (0..2)
        .map(|t| weights(&ckpt, &format!("conv1/conv.weight@t{t}")))
        .collect();
    assert_eq!(towers[0].0, [6, 1, 5, 5]);
    check_tiles(&img, &towers, 6, 3);
    // The default scale makes tiles of about 40 pixels: 8 for 5×5.
    let o = netc(&["kernels", s(&file), "--weights", s(&ckpt), "-o", s(&png)]);
    assert!(o.status.success(), "{}", stderr(&o));
    check_tiles(&image::open(&png).unwrap(), &towers, 6, 8);

    // A run with the unfused step writes another fingerprint; its
    // checkpoint is drawn too.
    let ckpt = train(
        &file,
        Path::new("data/fmnist-small"),
        &d.join("unfused"),
        &["--no-fuse"],
    );
    let o = netc(&["kernels", s(&file), "--weights", s(&ckpt), "-o", s(&png)]);
    assert!(o.status.success(), "{}", stderr(&o));
    let towers: Vec<_> = (0..2)
        .map(|t| weights(&ckpt, &format!("conv1/conv.weight@t{t}")))
        .collect();
    check_tiles(&image::open(&png).unwrap(), &towers, 6, 8);
    let _ = std::fs::remove_dir_all(&d);
}

#[test]
fn colour_kernels_slices_and_errors() {
    let d = tmp("colour");
    let file = net(&d, "colour", COLOUR);
    let data = colour_folder(&d);
    let ckpt = train(&file, &data, &d.join("out"), &[]);
    let png = d.join("k.png");
    let o = netc(&[
        "kernels",
        s(&file),
        "--weights",
        s(&ckpt),
        "-o",
        s(&png),
        "--layer",
        "conv1",
        "--scale",
        "2",
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let img = image::open(&png).unwrap();
    assert_eq!(img.color(), image::ColorType::Rgb8);
    let towers: Vec<_> = (0..2)
        .map(|t| weights(&ckpt, &format!("conv1/conv.weight@t{t}")))
        .collect();
    assert_eq!(towers[0].0, [20, 3, 5, 5]);
    // 20 kernels a tower: 16 to a row, two rows, the second part empty.
    check_tiles(&img, &towers, 16, 2);
    let rgb = img.to_rgb8();
    let (x, y) = (GAP + 4 * (10 + GAP), TOWER_GAP + GAP + (10 + GAP));
    assert_eq!(rgb.get_pixel(x as u32 + 3, y as u32 + 3).0, PAPER);

    // conv2 sees 20 channels (its own tower's): a row per kernel, a grey
    // tile per input channel, all of a kernel normalised together.
    let o = netc(&[
        "kernels",
        s(&file),
        "--weights",
        s(&ckpt),
        "-o",
        s(&png),
        "--layer",
        "conv2",
        "--scale",
        "4",
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let img = image::open(&png).unwrap();
    assert_eq!(img.color(), image::ColorType::Rgb8);
    let grey = img.to_rgb8();
    let (tile, cols, rows) = (12, 20, 3);
    let block = rows * (tile + GAP) - GAP;
    assert_eq!(
        (grey.width() as usize, grey.height() as usize),
        (GAP + cols * (tile + GAP), 2 * (TOWER_GAP + block + 2 * GAP))
    );
    for t in 0..2 {
        let (shape, w) = weights(&ckpt, &format!("conv2/conv.weight@t{t}"));
        assert_eq!(shape, [3, 20, 3, 3]);
        for f in 0..3 {
            let n = normalised(&w[f * 180..(f + 1) * 180]);
            let mut seen = Vec::new();
            for c in 0..20 {
                let x0 = GAP + c * (tile + GAP);
                let y0 = TOWER_GAP + GAP + t * (block + 2 * GAP + TOWER_GAP) + f * (tile + GAP);
                for (ky, kx) in [(0, 0), (1, 2), (2, 1)] {
                    let p = grey
                        .get_pixel((x0 + kx * 4 + 3) as u32, (y0 + ky * 4) as u32)
                        .0[0];
                    assert_eq!(p, n[(c * 3 + ky) * 3 + kx], "t{t} kernel {f} channel {c}");
                }
                for y in 0..tile {
                    for x in 0..tile {
                        seen.push(grey.get_pixel((x0 + x) as u32, (y0 + y) as u32).0[0]);
                    }
                }
            }
            assert_eq!(
                (*seen.iter().min().unwrap(), *seen.iter().max().unwrap()),
                (0, 255)
            );
        }
    }

    // Errors exit 1 with a message and leave the earlier picture alone.
    let before = std::fs::read(&png).unwrap();
    let grey = net(&d, "grey", GREY);
    let missing = d.join("nowhere.safetensors");
    let cases: Vec<(Vec<&str>, &str)> = vec![
        (
            vec!["--layer", "fc"],
            "no convolution `fc` (it is a `dense` layer); its convolutions: conv1, conv2",
        ),
        (
            vec!["--layer", "conv9"],
            "no convolution `conv9`; its convolutions: conv1, conv2",
        ),
        (vec!["--scale", "0"], "--scale"),
        (vec!["--scale", "60000"], "`--scale "),
    ];
    for (extra, want) in cases {
        let mut args = vec!["kernels", s(&file), "--weights", s(&ckpt), "-o", s(&png)];
        args.extend_from_slice(&extra);
        let o = netc(&args);
        assert_eq!(o.status.code(), Some(1), "{extra:?}: {}", stderr(&o));
        assert!(stderr(&o).contains(want), "{extra:?}: {}", stderr(&o));
    }
    let wrong = [
        (
            vec!["kernels", s(&grey), "--weights", s(&ckpt)],
            "was written for a different network",
        ),
        (
            vec!["kernels", s(&file), "--weights", s(&missing)],
            "nowhere.safetensors",
        ),
        (
            vec!["kernels", "missing.net", "--weights", s(&ckpt)],
            "cannot read `missing.net`",
        ),
        (
            vec!["kernels", s(&file), "--weights", s(&file)],
            "is not a valid checkpoint",
        ),
    ];
    for (mut args, want) in wrong {
        args.extend_from_slice(&["-o", s(&png)]);
        let o = netc(&args);
        assert_eq!(o.status.code(), Some(1), "{args:?}: {}", stderr(&o));
        assert!(stderr(&o).contains(want), "{args:?}: {}", stderr(&o));
    }
    let o = netc(&[
        "kernels",
        s(&file),
        "--weights",
        s(&ckpt),
        "-o",
        s(&d.join("no/such/dir/k.png")),
    ]);
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    assert!(stderr(&o).contains("cannot write"), "{}", stderr(&o));
    assert_eq!(std::fs::read(&png).unwrap(), before);
    let left: Vec<_> = std::fs::read_dir(&d)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.ends_with(".tmp"))
        .collect();
    assert!(left.is_empty(), "{left:?}");
    let _ = std::fs::remove_dir_all(&d);
}
