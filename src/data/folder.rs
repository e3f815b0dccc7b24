//! Image folders: `root/<class>/<image>.{jpg,jpeg,png}`, prepared as in
//! Krizhevsky et al. (2012).
//!
//! Assumes one sub-folder per class; class ids are the indices of the
//! sub-folder names in sorted (byte-wise) order. Hidden entries (names
//! starting with `.`) and files without a `.jpg`, `.jpeg` or `.png`
//! extension (any case) are ignored; files inside a class are taken in
//! sorted name order, so the result does not depend on directory order or on
//! thread count (decoding runs in parallel on the rayon pool). A symbolic
//! link with an image extension that leads nowhere (dangling, or a loop)
//! is listed like a file, so that reading it fails naming it (`netc
//! prepare --skip-bad` skips and lists it) instead of leaving it out
//! unseen. An image whose header gives more than [`MAX_PIXELS`] pixels is
//! refused, with its dimensions, before it is decoded.
//!
//! Guarantees: every image comes out `3 × size × size` `u8` CHW, prepared as
//! the paper did: the whole image rescaled so that the **shorter** side is
//! `size` and the longer keeps the aspect ratio (Catmull-Rom filter, which
//! also low-passes when shrinking; [`super::resize`]), then the central
//! `size × size` square is kept. (Cutting the square first and resizing
//! it alone would be cheaper, but its edge pixels would see clamped edges
//! instead of their neighbours, 0.17 levels apart on average; the paper,
//! and the book (docs/src/data.md), rescale first.)
//! Grayscale (and any other colour type) is converted to RGB, a grayscale
//! image giving three identical channels; alpha is dropped. An undecodable
//! file, an empty class folder, or a root without class folders is a
//! [`DataError`] naming the path.

use std::path::{Path, PathBuf};

use image::imageops;
use rayon::prelude::*;

use super::{DataError, Shape, Split};

fn is_image_file(path: &Path) -> bool {
    path.extension()
        .and_then(|e| e.to_str())
        .map(|e| {
            let e = e.to_ascii_lowercase();
            e == "jpg" || e == "jpeg" || e == "png"
        })
        .unwrap_or(false)
}

fn is_hidden(path: &Path) -> bool {
    path.file_name()
        .and_then(|n| n.to_str())
        .is_some_and(|n| n.starts_with('.'))
}

/// Sorted entries of `dir` that satisfy `keep`.
fn sorted_entries(dir: &Path, keep: impl Fn(&Path) -> bool) -> Result<Vec<PathBuf>, DataError> {
    let rd = std::fs::read_dir(dir).map_err(|e| DataError::io(dir, e))?;
    let mut out = Vec::new();
    for entry in rd {
        let entry = entry.map_err(|e| DataError::io(dir, e))?;
        let path = entry.path();
        if !is_hidden(&path) && keep(&path) {
            out.push(path);
        }
    }
    out.sort();
    Ok(out)
}

/// A symbolic link whose target cannot be reached (dangling or looping).
pub fn leads_nowhere(path: &Path) -> bool {
    path.symlink_metadata().is_ok_and(|m| m.is_symlink()) && path.metadata().is_err()
}

/// The most pixels an image file may have: 2^27, an 11585 × 11585 image
/// (its RGB pixels take 384 MiB; the image library's own limit, 512 MiB
/// of decoded pixels, still applies).
pub const MAX_PIXELS: u64 = 1 << 27;

/// Decodes the JPEG or PNG `bytes` (by their content), refusing before
/// decoding an image of more than [`MAX_PIXELS`] pixels, with its size.
pub fn decode_bytes(bytes: &[u8]) -> Result<image::DynamicImage, String> {
    let reader = || {
        image::ImageReader::new(std::io::Cursor::new(bytes))
            .with_guessed_format()
            .map_err(|e| format!("cannot read: {e}"))
    };
    let (w, h) = reader()?
        .into_dimensions()
        .map_err(|e| format!("cannot decode image: {e}"))?;
    let pixels = w as u64 * h as u64;
    if pixels > MAX_PIXELS {
        return Err(format!(
            "its header says {w}x{h} pixels ({pixels} pixels, {} MiB as RGB), above the {MAX_PIXELS} an image may have",
            (3 * pixels) >> 20
        ));
    }
    reader()?
        .decode()
        .map_err(|e| format!("cannot decode image: {e}"))
}

/// Image files with their class ids.
pub type LabelledFiles = Vec<(PathBuf, u32)>;

/// Lists the classes under `root` and their image files:
/// `(class names, [(file, class id)])`, both sorted.
pub fn list_image_folder(root: &Path) -> Result<(Vec<String>, LabelledFiles), DataError> {
    let class_dirs = sorted_entries(root, |p| p.is_dir())?;
    if class_dirs.is_empty() {
        return Err(DataError::NoClasses {
            path: root.to_path_buf(),
        });
    }
    let mut names = Vec::with_capacity(class_dirs.len());
    let mut files = Vec::new();
    for (id, dir) in class_dirs.iter().enumerate() {
        let imgs = sorted_entries(dir, |p| {
            is_image_file(p) && (p.is_file() || leads_nowhere(p))
        })?;
        if imgs.is_empty() {
            return Err(DataError::EmptyClass { path: dir.clone() });
        }
        names.push(
            dir.file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default(),
        );
        files.extend(imgs.into_iter().map(|p| (p, id as u32)));
    }
    Ok((names, files))
}

/// A JPEG cut short decodes without an error (the missing rows come out
/// grey), so a file that starts as a JPEG must end with its end-of-image
/// marker (within its last 4 KiB, which allows the trailing bytes some
/// cameras write after it).
pub fn check_complete(bytes: &[u8]) -> Result<(), String> {
    if bytes.starts_with(&[0xff, 0xd8]) {
        let tail = &bytes[bytes.len().saturating_sub(4096)..];
        if !tail.windows(2).any(|w| w == [0xff, 0xd9]) {
            return Err("truncated JPEG: no end-of-image marker".into());
        }
    }
    Ok(())
}

/// Decodes one image file and prepares it: shorter side to `size`, central
/// `size × size` crop, RGB. Returns `3 * size * size` bytes, CHW.
pub fn load_image(path: &Path, size: usize) -> Result<Vec<u8>, DataError> {
    let img = decode_image(path)?;
    if size == 0 {
        return Err(DataError::BadDims {
            path: path.to_path_buf(),
            dims: vec![img.height() as usize, img.width() as usize, size],
            reason: "[height, width, target size]: an image or target side is zero",
        });
    }
    Ok(prepare(&img.to_rgb8(), size))
}

/// Reads and decodes one JPEG or PNG file (by its content, not its name),
/// refusing a JPEG cut short and an image with a zero side; every error
/// names the file.
pub fn decode_image(path: &Path) -> Result<image::DynamicImage, DataError> {
    let bytes = std::fs::read(path).map_err(|e| DataError::io(path, e))?;
    check_complete(&bytes).map_err(|reason| DataError::TruncatedImage {
        path: path.to_path_buf(),
        reason,
    })?;
    let img = decode_bytes(&bytes).map_err(|reason| DataError::Image {
        path: path.to_path_buf(),
        reason,
    })?;
    if img.width() == 0 || img.height() == 0 {
        return Err(DataError::BadDims {
            path: path.to_path_buf(),
            dims: vec![img.height() as usize, img.width() as usize],
            reason: "[height, width]: an image side is zero",
        });
    }
    Ok(img)
}

/// The paper's preparation of an RGB image (see the module documentation).
/// Both image sides and `size` must be non-zero ([`load_image`] checks).
pub fn prepare(rgb: &image::RgbImage, size: usize) -> Vec<u8> {
    let (w, h) = rgb.dimensions();
    let s = size as u32;
    // The shorter side becomes `size`, the longer keeps the aspect ratio
    // (rounded to the nearest pixel, and never below `size`).
    let scaled = |long: u32, short: u32| {
        ((long as u64 * s as u64 + short as u64 / 2) / short as u64).max(s as u64) as u32
    };
    let (nw, nh) = if w <= h {
        (s, scaled(h, w))
    } else {
        (scaled(w, h), s)
    };
    let resized;
    let img = if (nw, nh) == (w, h) {
        rgb
    } else {
        resized = super::resize::catmull_rom(rgb, nw, nh);
        &resized
    };
    let out = imageops::crop_imm(img, (nw - s) / 2, (nh - s) / 2, s, s).to_image();
    let plane = size * size;
    let mut chw = vec![0u8; 3 * plane];
    for (i, px) in out.pixels().enumerate() {
        chw[i] = px[0];
        chw[plane + i] = px[1];
        chw[2 * plane + i] = px[2];
    }
    chw
}

/// Reads a whole image folder into a [`Split`] of `3 × size × size` images,
/// decoding in parallel; returns it with the class names.
pub fn load_image_folder(root: &Path, size: usize) -> Result<(Split, Vec<String>), DataError> {
    let (names, files) = list_image_folder(root)?;
    let decoded: Vec<Vec<u8>> = files
        .par_iter()
        .map(|(p, _)| load_image(p, size))
        .collect::<Result<_, _>>()?;
    let shape = Shape::new(3, size, size);
    let mut images = Vec::with_capacity(files.len() * shape.len());
    for d in &decoded {
        images.extend_from_slice(d);
    }
    let labels = files.iter().map(|(_, l)| *l).collect();
    Ok((
        Split {
            shape,
            images,
            labels,
        },
        names,
    ))
}

#[cfg(test)]
#[allow(clippy::needless_range_loop)]
mod tests {
    use super::super::Dataset;
    use super::super::testutil::{data_present, temp_dir};
    use super::*;

    /// `shared/` sits beside the checkout (a CI clone gets its own copy).
    const SAMPLE: &str = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../shared/data/imagenet-sample"
    );

    #[test]
    fn imagenet_sample_is_prepared_like_the_paper() {
        // Beside the checkout first, then the workspace's own copy.
        let fallback = Path::new("/work/shared/data/imagenet-sample");
        let root = if Path::new(SAMPLE).is_dir() {
            Path::new(SAMPLE)
        } else {
            fallback
        };
        if !data_present(root, "image-folder test") {
            return;
        }
        let folders = std::fs::read_dir(root)
            .expect("read sample")
            .filter_map(|e| e.ok())
            .filter(|e| e.path().is_dir())
            .count();
        let ds = Dataset::image_folders(root, None, 256).expect("load sample");
        let split = &ds.train;
        assert_eq!(split.len(), 100);
        assert_eq!(split.shape, Shape::new(3, 256, 256));
        assert_eq!(split.images.len(), 100 * 3 * 256 * 256);
        assert_eq!(ds.num_classes(), folders);
        assert_eq!(split.class_counts(folders), vec![1; folders]);
        assert!(ds.class_names.windows(2).all(|w| w[0] < w[1]));
        assert!(ds.test.is_empty());
        // Exactly the grayscale sources became three equal channels; colour
        // photos did not.
        let plane = 256 * 256;
        let mut gray = 0;
        let (names, files) = list_image_folder(root).expect("list");
        assert_eq!(names, ds.class_names);
        for i in 0..split.len() {
            let im = split.image(i);
            let (r, g, b) = (&im[..plane], &im[plane..2 * plane], &im[2 * plane..]);
            let equal = r == g && g == b;
            let src = image::open(&files[i].0).expect("decode");
            let src_gray = matches!(
                src.color(),
                image::ColorType::L8 | image::ColorType::L16 | image::ColorType::La8
            );
            assert_eq!(equal, src_gray, "image {i}: {}", files[i].0.display());
            gray += equal as usize;
        }
        assert!(gray >= 1, "the sample holds a grayscale image");
        // Colour statistics of real photos: the first principal component is
        // luminance-like (all components positive) and dominates.
        let st = super::super::Stats::compute(split);
        let pca = st.pca.expect("rgb");
        eprintln!(
            "imagenet-sample PCA: λ = {:?}, V = {:?}",
            pca.eigval, pca.eigvec
        );
        assert!((0.02..0.5).contains(&pca.eigval[0]), "{pca:?}");
        assert!(
            pca.eigval[0] > 5.0 * pca.eigval[1] && pca.eigval[2] > 0.0,
            "{pca:?}"
        );
        assert!((0..3).all(|k| pca.eigvec[k][0] > 0.4), "{pca:?}");
        assert!(
            st.channel_mean.iter().all(|m| (60.0..200.0).contains(m)),
            "{:?}",
            st.channel_mean
        );
    }

    /// The whole image is rescaled, then the central square kept (as the
    /// paper and the book say; the square was cut first, so its edge
    /// pixels never saw their neighbours outside it).
    #[test]
    fn prepare_scales_short_side_and_centres() {
        // 40×20 image: left quarter red, middle half green, right quarter
        // blue. Short side to 10 then central 10×10 is the green half,
        // its edge columns filtered with the red and blue beside it.
        let img = image::RgbImage::from_fn(40, 20, |x, _| match x {
            0..10 => image::Rgb([255, 0, 0]),
            10..30 => image::Rgb([0, 255, 0]),
            _ => image::Rgb([0, 0, 255]),
        });
        let out = prepare(&img, 10);
        assert_eq!(out.len(), 300);
        let (r, g, b) = (&out[..100], &out[100..200], &out[200..]);
        for row in 0..10 {
            let at = |c: usize| row * 10 + c;
            for c in 2..8 {
                assert_eq!((r[at(c)], g[at(c)], b[at(c)]), (0, 255, 0), "{row} {c}");
            }
            assert!(
                r[at(0)] > 5 && b[at(0)] == 0,
                "{row}: red beside the left edge"
            );
            assert!(
                b[at(9)] > 5 && r[at(9)] == 0,
                "{row}: blue beside the right edge"
            );
        }
        // Tall image, no resize needed: the central rows are kept.
        let img = image::RgbImage::from_fn(4, 8, |x, y| image::Rgb([y as u8, x as u8, 7]));
        let out = prepare(&img, 4);
        assert_eq!(&out[..4], &[2, 2, 2, 2], "first row is source row 2");
        assert_eq!(&out[16..20], &[0, 1, 2, 3], "green plane holds x");
    }

    #[test]
    fn folder_errors_name_the_path() {
        let root = temp_dir("folder-errors");
        let err = load_image_folder(&root, 8).expect_err("no classes");
        assert!(matches!(err, DataError::NoClasses { .. }), "{err}");
        let cls = root.join("a_class");
        std::fs::create_dir_all(&cls).expect("mkdir");
        std::fs::write(cls.join("notes.txt"), "not an image").expect("write");
        let err = load_image_folder(&root, 8).expect_err("empty class");
        assert!(matches!(err, DataError::EmptyClass { .. }) && err.to_string().contains("a_class"));
        std::fs::write(cls.join("broken.png"), b"\x89PNG\r\n\x1a\nnope").expect("write");
        let err = load_image_folder(&root, 8).expect_err("undecodable");
        assert!(err.to_string().contains("broken.png"), "{err}");
        std::fs::remove_file(cls.join("broken.png")).expect("rm");
        image::GrayImage::from_pixel(16, 12, image::Luma([77]))
            .save(cls.join("ok.PNG"))
            .expect("save");
        let (split, names) = load_image_folder(&root, 8).expect("one image");
        assert_eq!(names, vec!["a_class".to_string()]);
        assert_eq!(split.shape, Shape::new(3, 8, 8));
        assert!(split.images.iter().all(|&v| v == 77));
        // A test folder with other classes is rejected, naming it.
        let other = temp_dir("folder-errors-test");
        std::fs::create_dir_all(other.join("b_class")).expect("mkdir");
        image::GrayImage::from_pixel(8, 8, image::Luma([1]))
            .save(other.join("b_class/x.png"))
            .expect("save");
        let err = Dataset::image_folders(&root, Some(&other), 8).expect_err("classes differ");
        assert!(matches!(err, DataError::ClassMismatch { .. }), "{err}");
        assert!(err.to_string().contains("folder-errors-test"), "{err}");
        std::fs::rename(other.join("b_class"), other.join("a_class")).expect("rename");
        let ds = Dataset::image_folders(&root, Some(&other), 8).expect("same classes");
        assert_eq!((ds.train.len(), ds.test.len()), (1, 1));
        let _ = std::fs::remove_dir_all(&root);
        let _ = std::fs::remove_dir_all(&other);
    }
}
