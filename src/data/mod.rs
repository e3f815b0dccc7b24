//! In-memory datasets for training and evaluation.
//!
//! Assumes every image of a dataset has the same shape `(c, h, w)` and fits in
//! memory as `u8`. Guarantees:
//!
//! - **Layout.** Images are stored as `u8`, **CHW** (channel-major, then rows,
//!   then columns), one image after another: image `i` is
//!   `images[i * c*h*w .. (i + 1) * c*h*w]`, and the value of channel `k`,
//!   row `y`, column `x` is at offset `(k * h + y) * w + x` inside it.
//!   Labels are `u32` class ids in `0..class_names.len()`.
//! - **Errors.** Bad input never panics; it gives a [`DataError`] whose every
//!   variant names the file or folder involved.
//! - **Sources.** [`Dataset::fmnist_dir`] reads the Fashion-MNIST IDX files
//!   (gzip or raw) from a directory; [`Dataset::embedded_fmnist`] reads a
//!   class-balanced subset (2000 train / 500 test) compiled into the binary;
//!   [`resolve_fmnist`] picks one for a `--data` option; [`Dataset::image_folders`]
//!   reads class folders of JPEG/PNG photos prepared as in Krizhevsky et al.
//!   (2012) (see [`folder`]).
//!
//! The rest of the pipeline: [`pca`] (mean image, RGB covariance and its
//! eigen-decomposition), [`augment`] (crops, mirrors, PCA lighting, mean
//! subtraction to f32 CHW), [`loader`] (shuffled, prefetched batches).

pub mod augment;
pub mod folder;
pub mod idx;
pub mod jpeg;
pub mod loader;
pub mod pca;
pub mod prepare;
pub mod prepared;
pub mod raw;
pub mod resize;
pub mod source;
pub mod sources;

use std::path::{Path, PathBuf};

pub use augment::{AugmentConfig, Augmenter, ConfigError, MeanMode, Mode, Params};
pub use loader::{Batch, EpochIter, Loader, LoaderConfig, WaitStats};
pub use pca::{Pca, Stats};
pub use raw::RawBatch;
pub use source::ImageSource;

/// Everything that can go wrong reading data. Every variant names the path of
/// the file (or folder) involved, so the message alone says what to fix.
#[derive(Debug, thiserror::Error)]
pub enum DataError {
    #[error("{path}: cannot read: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{path}: corrupt or truncated gzip stream: {source}")]
    Gzip {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{path}: truncated: expected {expected} bytes, found {found}")]
    Truncated {
        path: PathBuf,
        expected: u64,
        found: u64,
    },
    #[error("{path}: {extra} unexpected bytes after the {expected}-byte IDX payload")]
    TrailingBytes {
        path: PathBuf,
        expected: u64,
        extra: u64,
    },
    #[error("{path}: bad magic number {found:#010x}, expected {expected:#010x}")]
    BadMagic {
        path: PathBuf,
        found: u32,
        expected: u32,
    },
    #[error("{path}: bad dimensions {dims:?}: {reason}")]
    BadDims {
        path: PathBuf,
        dims: Vec<usize>,
        reason: &'static str,
    },
    #[error("{images} holds {n_images} images but {labels} holds {n_labels} labels")]
    CountMismatch {
        images: PathBuf,
        labels: PathBuf,
        n_images: usize,
        n_labels: usize,
    },
    #[error("{path}: label {label} at index {index} is not below the class count {classes}")]
    BadLabel {
        path: PathBuf,
        index: usize,
        label: u32,
        classes: usize,
    },
    #[error("{path}: cannot decode image: {source}")]
    Decode {
        path: PathBuf,
        #[source]
        source: image::ImageError,
    },
    #[error("{path}: {reason}")]
    TruncatedImage { path: PathBuf, reason: String },
    /// An image file that cannot be read, decoded, or is too large.
    #[error("{path}: {reason}")]
    Image { path: PathBuf, reason: String },
    #[error(
        "`data.rescale: {rescale}` cannot apply to Fashion-MNIST: its IDX images are used at their own 28×28; remove it, or train on an image folder or a prepared dataset"
    )]
    RescaleIdx { rescale: u64 },
    #[error("{path}: class folder holds no JPEG or PNG files")]
    EmptyClass { path: PathBuf },
    #[error("{path}: no class folders (expected one sub-folder per class)")]
    NoClasses { path: PathBuf },
    #[error(transparent)]
    Prepared(Box<prepared::PreparedError>),
    /// `--data` names nothing, or a file that is not a prepared dataset.
    #[error(
        "--data {path}: {what}; it takes a prepared dataset (`netc prepare`), a folder of images or a folder holding the Fashion-MNIST IDX files"
    )]
    NotData { path: PathBuf, what: &'static str },
    #[error(
        "{path}: {images} images need {mib} MiB decoded, above the {budget_mib} MiB an image folder may take in memory; \
         prepare it once with `netc prepare {path} -o DATASET` and train with `--data DATASET`"
    )]
    TooLarge {
        path: PathBuf,
        images: usize,
        mib: u64,
        budget_mib: u64,
    },
    #[error("{path}: class folders {found:?} differ from the training classes {expected:?}")]
    ClassMismatch {
        path: PathBuf,
        expected: Vec<String>,
        found: Vec<String>,
    },
}

impl DataError {
    pub(crate) fn io(path: &Path, source: std::io::Error) -> Self {
        DataError::Io {
            path: path.to_path_buf(),
            source,
        }
    }
}

/// The shape of one image: channels, height, width.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Shape {
    pub c: usize,
    pub h: usize,
    pub w: usize,
}

impl Shape {
    pub fn new(c: usize, h: usize, w: usize) -> Self {
        Shape { c, h, w }
    }
    /// Number of `u8` values in one image, `c * h * w`.
    pub fn len(&self) -> usize {
        self.c * self.h * self.w
    }
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// One split (train or test): `images.len() == labels.len() * shape.len()`,
/// images in CHW `u8` (see the module documentation).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Split {
    pub shape: Shape,
    pub images: Vec<u8>,
    pub labels: Vec<u32>,
}

impl Split {
    /// An empty split of the given image shape.
    pub fn empty(shape: Shape) -> Self {
        Split {
            shape,
            images: Vec::new(),
            labels: Vec::new(),
        }
    }
    /// Number of images.
    pub fn len(&self) -> usize {
        self.labels.len()
    }
    pub fn is_empty(&self) -> bool {
        self.labels.is_empty()
    }
    /// The CHW bytes of image `i`; panics if `i >= len()` (a caller bug).
    pub fn image(&self, i: usize) -> &[u8] {
        let n = self.shape.len();
        &self.images[i * n..(i + 1) * n]
    }
    /// How many images carry each label, for `classes` classes (labels out of
    /// range are not counted).
    pub fn class_counts(&self, classes: usize) -> Vec<usize> {
        let mut counts = vec![0; classes];
        for &l in &self.labels {
            if let Some(c) = counts.get_mut(l as usize) {
                *c += 1;
            }
        }
        counts
    }
}

/// A dataset held in memory: a train and a test split sharing one image
/// shape and one list of class names (class id = index into it).
#[derive(Clone, Debug)]
pub struct Dataset {
    pub class_names: Vec<String>,
    pub train: Split,
    pub test: Split,
    /// Where the data came from, for logs ("Fashion-MNIST from /path", ...).
    pub description: String,
}

/// Fashion-MNIST's ten classes, in label order.
pub const FMNIST_CLASSES: [&str; 10] = [
    "T-shirt/top",
    "Trouser",
    "Pullover",
    "Dress",
    "Coat",
    "Sandal",
    "Shirt",
    "Sneaker",
    "Bag",
    "Ankle boot",
];

/// Where the full Fashion-MNIST set is installed on a prepared machine.
pub const SYSTEM_FMNIST_DIR: &str = "/usr/share/datasets/fashion-mnist";

/// The four Fashion-MNIST file names, gzip form: train images, train labels,
/// test images, test labels. [`Dataset::fmnist_dir`] also accepts them
/// without the `.gz` suffix (raw IDX).
pub const FMNIST_FILES: [&str; 4] = [
    "train-images-idx3-ubyte.gz",
    "train-labels-idx1-ubyte.gz",
    "t10k-images-idx3-ubyte.gz",
    "t10k-labels-idx1-ubyte.gz",
];

/// The embedded subset, as `(pseudo-path, bytes)` in [`FMNIST_FILES`] order.
/// The pseudo-paths only serve error messages.
const EMBEDDED_FMNIST: [(&str, &[u8]); 4] = [
    (
        "<embedded>/data/fmnist-small/train-images-idx3-ubyte.gz",
        include_bytes!(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/data/fmnist-small/train-images-idx3-ubyte.gz"
        )),
    ),
    (
        "<embedded>/data/fmnist-small/train-labels-idx1-ubyte.gz",
        include_bytes!(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/data/fmnist-small/train-labels-idx1-ubyte.gz"
        )),
    ),
    (
        "<embedded>/data/fmnist-small/t10k-images-idx3-ubyte.gz",
        include_bytes!(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/data/fmnist-small/t10k-images-idx3-ubyte.gz"
        )),
    ),
    (
        "<embedded>/data/fmnist-small/t10k-labels-idx1-ubyte.gz",
        include_bytes!(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/data/fmnist-small/t10k-labels-idx1-ubyte.gz"
        )),
    ),
];

/// The path of a Fashion-MNIST file in `dir`: the `.gz` name if it exists,
/// else the raw name if that exists, else the `.gz` name (so that the
/// resulting "not found" error names the expected file).
fn fmnist_file(dir: &Path, gz_name: &str) -> PathBuf {
    let gz = dir.join(gz_name);
    if gz.is_file() {
        return gz;
    }
    let raw = dir.join(gz_name.trim_end_matches(".gz"));
    if raw.is_file() { raw } else { gz }
}

/// Builds a split from images and labels already read, checking counts and
/// label range.
fn fmnist_split(
    images: (PathBuf, idx::Images),
    labels: (PathBuf, Vec<u32>),
) -> Result<Split, DataError> {
    let (ipath, im) = images;
    let (lpath, labels) = labels;
    if im.count != labels.len() {
        return Err(DataError::CountMismatch {
            images: ipath,
            labels: lpath,
            n_images: im.count,
            n_labels: labels.len(),
        });
    }
    if let Some((index, &label)) = labels
        .iter()
        .enumerate()
        .find(|(_, l)| **l as usize >= FMNIST_CLASSES.len())
    {
        return Err(DataError::BadLabel {
            path: lpath,
            index,
            label,
            classes: FMNIST_CLASSES.len(),
        });
    }
    Ok(Split {
        shape: Shape::new(1, im.rows, im.cols),
        images: im.pixels,
        labels,
    })
}

fn fmnist_from_bytes(
    files: [(PathBuf, Vec<u8>); 4],
    description: String,
) -> Result<Dataset, DataError> {
    let [(p0, b0), (p1, b1), (p2, b2), (p3, b3)] = files;
    let ti = idx::parse_images(&b0, &p0)?;
    let tl = idx::parse_labels(&b1, &p1)?;
    let si = idx::parse_images(&b2, &p2)?;
    let sl = idx::parse_labels(&b3, &p3)?;
    let train = fmnist_split((p0, ti), (p1, tl))?;
    let test = fmnist_split((p2.clone(), si), (p3, sl))?;
    if test.shape != train.shape && !test.is_empty() {
        return Err(DataError::BadDims {
            path: p2,
            dims: vec![test.shape.h, test.shape.w],
            reason: "test images differ in size from training images",
        });
    }
    Ok(Dataset {
        class_names: FMNIST_CLASSES.iter().map(|s| s.to_string()).collect(),
        train,
        test,
        description,
    })
}

impl Dataset {
    /// Reads Fashion-MNIST (or any IDX set with ten classes and the same file
    /// names) from `dir`. Images come out as `1 × rows × cols` `u8`.
    pub fn fmnist_dir(dir: impl AsRef<Path>) -> Result<Dataset, DataError> {
        let dir = dir.as_ref();
        let read = |name: &str| -> Result<(PathBuf, Vec<u8>), DataError> {
            let path = fmnist_file(dir, name);
            let bytes = std::fs::read(&path).map_err(|e| DataError::io(&path, e))?;
            Ok((path, bytes))
        };
        let files = [
            read(FMNIST_FILES[0])?,
            read(FMNIST_FILES[1])?,
            read(FMNIST_FILES[2])?,
            read(FMNIST_FILES[3])?,
        ];
        let mut ds = fmnist_from_bytes(files, String::new())?;
        ds.description = format!(
            "Fashion-MNIST from {} ({} train / {} test)",
            dir.display(),
            ds.train.len(),
            ds.test.len()
        );
        Ok(ds)
    }

    /// The class-balanced Fashion-MNIST subset compiled into the binary:
    /// 2000 training images (the first 200 of each class in the official
    /// training file) and 500 test images (the first 50 of each class in the
    /// official test file), in file order.
    pub fn embedded_fmnist() -> Result<Dataset, DataError> {
        let files = EMBEDDED_FMNIST.map(|(p, b)| (PathBuf::from(p), b.to_vec()));
        let mut ds = fmnist_from_bytes(files, String::new())?;
        ds.description = format!(
            "embedded Fashion-MNIST subset ({} train / {} test)",
            ds.train.len(),
            ds.test.len()
        );
        Ok(ds)
    }

    /// Reads image folders (one sub-folder per class, see [`folder`]) prepared
    /// at `size × size`: the training split from `train_dir`, the test split
    /// from `test_dir` if given (empty otherwise). Class names come from the
    /// training folder; a test folder must have the same class folders.
    pub fn image_folders(
        train_dir: impl AsRef<Path>,
        test_dir: Option<&Path>,
        size: usize,
    ) -> Result<Dataset, DataError> {
        let train_dir = train_dir.as_ref();
        let (train, class_names) = folder::load_image_folder(train_dir, size)?;
        let test = match test_dir {
            None => Split::empty(train.shape),
            Some(dir) => {
                let (test, test_classes) = folder::load_image_folder(dir, size)?;
                if test_classes != class_names {
                    return Err(DataError::ClassMismatch {
                        path: dir.to_path_buf(),
                        expected: class_names,
                        found: test_classes,
                    });
                }
                test
            }
        };
        let description = match test_dir {
            None => format!(
                "image folder {} ({} images, {} classes, {size}x{size})",
                train_dir.display(),
                train.len(),
                class_names.len()
            ),
            Some(d) => format!(
                "image folders {} / {} ({} train / {} test, {} classes, {size}x{size})",
                train_dir.display(),
                d.display(),
                train.len(),
                test.len(),
                class_names.len()
            ),
        };
        Ok(Dataset {
            class_names,
            train,
            test,
            description,
        })
    }

    /// The shape of every image.
    pub fn shape(&self) -> Shape {
        self.train.shape
    }

    pub fn num_classes(&self) -> usize {
        self.class_names.len()
    }
}

/// True if `dir` holds the four Fashion-MNIST files (gzip or raw).
/// Whether `dir` holds any of the Fashion-MNIST IDX files (then it is
/// meant as Fashion-MNIST, and a missing one is named, not taken for a
/// folder of images).
pub fn has_any_fmnist_file(dir: &Path) -> bool {
    FMNIST_FILES
        .iter()
        .any(|name| fmnist_file(dir, name).is_file())
}

pub fn has_fmnist_files(dir: &Path) -> bool {
    FMNIST_FILES
        .iter()
        .all(|name| fmnist_file(dir, name).is_file())
}

/// Chooses the Fashion-MNIST data for a `--data` option:
///
/// - `Some(dir)`: the IDX files in `dir` (an error naming the missing or bad
///   file if they are not there; never a silent fallback);
/// - `None`: the full set at [`SYSTEM_FMNIST_DIR`] if it is installed, else
///   the embedded subset.
///
/// Returns the dataset and a one-line description of the choice, for logs.
pub fn resolve_fmnist(data: Option<&Path>) -> Result<(Dataset, String), DataError> {
    let ds = match data {
        Some(dir) => Dataset::fmnist_dir(dir)?,
        None => {
            let sys = Path::new(SYSTEM_FMNIST_DIR);
            if has_fmnist_files(sys) {
                Dataset::fmnist_dir(sys)?
            } else {
                let mut ds = Dataset::embedded_fmnist()?;
                ds.description = format!(
                    "{} (no --data given and {} not installed)",
                    ds.description, SYSTEM_FMNIST_DIR
                );
                ds
            }
        }
    };
    let description = ds.description.clone();
    Ok((ds, description))
}

/// Writes a class-balanced subset of the Fashion-MNIST files in `src_dir` to
/// `dst_dir` (gzip IDX, same four file names): the first `train_per_class`
/// images of each class from the training files and the first
/// `test_per_class` of each class from the test files, kept in file order.
/// The output is byte-for-byte reproducible (gzip header time is zero).
pub fn write_subset(
    src_dir: &Path,
    dst_dir: &Path,
    train_per_class: usize,
    test_per_class: usize,
) -> Result<(), DataError> {
    let ds = Dataset::fmnist_dir(src_dir)?;
    std::fs::create_dir_all(dst_dir).map_err(|e| DataError::io(dst_dir, e))?;
    let classes = ds.num_classes();
    for (split, per_class, names) in [
        (&ds.train, train_per_class, &FMNIST_FILES[0..2]),
        (&ds.test, test_per_class, &FMNIST_FILES[2..4]),
    ] {
        let mut taken = vec![0usize; classes];
        let mut pixels = Vec::new();
        let mut labels = Vec::new();
        for i in 0..split.len() {
            let l = split.labels[i];
            let t = &mut taken[l as usize];
            if *t < per_class {
                *t += 1;
                pixels.extend_from_slice(split.image(i));
                labels.push(l as u8);
            }
        }
        if let Some((class, _)) = taken.iter().enumerate().find(|(_, t)| **t < per_class) {
            let path = fmnist_file(src_dir, names[1]);
            return Err(DataError::BadDims {
                path,
                dims: vec![class, taken[class], per_class],
                reason: "[class, available, requested]: too few images of a class",
            });
        }
        let n = labels.len();
        let (h, w) = (split.shape.h, split.shape.w);
        let ipath = dst_dir.join(names[0]);
        idx::write_idx(&ipath, idx::IMAGES_MAGIC, &[n, h, w], &pixels, true)?;
        let lpath = dst_dir.join(names[1]);
        idx::write_idx(&lpath, idx::LABELS_MAGIC, &[n], &labels, true)?;
    }
    Ok(())
}

#[cfg(test)]
pub(crate) mod testutil {
    use std::path::Path;

    /// True if the data at `path` is present. If absent, prints why the
    /// calling test is skipped and returns false, unless `NETC_REQUIRE_DATA=1`
    /// in which case it panics (the test fails).
    pub fn data_present(path: &Path, what: &str) -> bool {
        if path.exists() {
            return true;
        }
        let required = std::env::var("NETC_REQUIRE_DATA").is_ok_and(|v| v == "1");
        assert!(
            !required,
            "{what}: {} is absent and NETC_REQUIRE_DATA=1",
            path.display()
        );
        eprintln!(
            "skipping: {what} needs {}, which is absent (set NETC_REQUIRE_DATA=1 to fail instead)",
            path.display()
        );
        false
    }

    /// A fresh empty directory under the system temp dir.
    pub fn temp_dir(name: &str) -> std::path::PathBuf {
        let d = std::env::temp_dir().join(format!("netc-data-{}-{name}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        std::fs::create_dir_all(&d).expect("create temp dir");
        d
    }
}

#[cfg(test)]
mod tests {
    use super::testutil::data_present;
    use super::*;

    #[test]
    fn errors_are_thread_safe_values() {
        fn check<T: Send + Sync + std::error::Error + 'static>() {}
        check::<DataError>();
        check::<ConfigError>();
    }

    #[test]
    fn embedded_subset_loads_balanced() {
        let ds = Dataset::embedded_fmnist().expect("embedded subset");
        assert_eq!(ds.train.len(), 2000);
        assert_eq!(ds.test.len(), 500);
        assert_eq!(ds.shape(), Shape::new(1, 28, 28));
        assert_eq!(ds.num_classes(), 10);
        assert_eq!(ds.class_names[9], "Ankle boot");
        assert_eq!(ds.train.images.len(), 2000 * 784);
        assert_eq!(ds.test.images.len(), 500 * 784);
        assert_eq!(ds.train.class_counts(10), vec![200; 10]);
        assert_eq!(ds.test.class_counts(10), vec![50; 10]);
        assert!(
            ds.train
                .labels
                .iter()
                .chain(&ds.test.labels)
                .all(|&l| l < 10)
        );
        // Real images, not zeros: a mean intensity in a plausible range.
        let mean =
            ds.train.images.iter().map(|&p| p as f64).sum::<f64>() / ds.train.images.len() as f64;
        assert!((40.0..120.0).contains(&mean), "mean {mean}");
    }

    #[test]
    fn full_fmnist_loads_when_installed() {
        let dir = Path::new(SYSTEM_FMNIST_DIR);
        if !data_present(dir, "full Fashion-MNIST") {
            return;
        }
        let ds = Dataset::fmnist_dir(dir).expect("full Fashion-MNIST");
        assert_eq!(ds.train.len(), 60000);
        assert_eq!(ds.test.len(), 10000);
        assert_eq!(ds.shape(), Shape::new(1, 28, 28));
        assert_eq!(ds.train.class_counts(10), vec![6000; 10]);
        assert_eq!(ds.test.class_counts(10), vec![1000; 10]);
        // The embedded subset is the first images of each class, so the
        // first training image of the full set is the first of the subset.
        let small = Dataset::embedded_fmnist().expect("embedded subset");
        assert_eq!(small.train.image(0), ds.train.image(0));
        assert_eq!(small.test.image(0), ds.test.image(0));
    }

    #[test]
    fn resolver_picks_a_source() {
        let (ds, desc) = resolve_fmnist(None).expect("resolve");
        if has_fmnist_files(Path::new(SYSTEM_FMNIST_DIR)) {
            assert_eq!(ds.train.len(), 60000);
            assert!(desc.contains(SYSTEM_FMNIST_DIR), "{desc}");
        } else {
            assert_eq!(ds.train.len(), 2000);
            assert!(desc.contains("embedded"), "{desc}");
        }
        // An explicit directory without the files is an error naming a file.
        let empty = testutil::temp_dir("resolver-empty");
        let err = resolve_fmnist(Some(&empty)).expect_err("no files there");
        assert!(err.to_string().contains("train-images-idx3-ubyte"), "{err}");
        let _ = std::fs::remove_dir_all(&empty);
    }

    #[test]
    fn count_mismatch_names_both_files() {
        let dir = testutil::temp_dir("mismatch");
        let px = vec![0u8; 3 * 4];
        let lab = vec![1u8; 2];
        idx::write_idx(
            &dir.join(FMNIST_FILES[0]),
            idx::IMAGES_MAGIC,
            &[3, 2, 2],
            &px,
            true,
        )
        .expect("write");
        idx::write_idx(
            &dir.join(FMNIST_FILES[1]),
            idx::LABELS_MAGIC,
            &[2],
            &lab,
            true,
        )
        .expect("write");
        idx::write_idx(
            &dir.join(FMNIST_FILES[2]),
            idx::IMAGES_MAGIC,
            &[2, 2, 2],
            &px[..8],
            false,
        )
        .expect("write");
        // Raw (uncompressed) form under the name without ".gz".
        idx::write_idx(
            &dir.join("t10k-labels-idx1-ubyte"),
            idx::LABELS_MAGIC,
            &[2],
            &lab,
            false,
        )
        .expect("write");
        let err = Dataset::fmnist_dir(&dir).expect_err("3 images, 2 labels");
        let msg = err.to_string();
        assert!(
            matches!(
                err,
                DataError::CountMismatch {
                    n_images: 3,
                    n_labels: 2,
                    ..
                }
            ),
            "{msg}"
        );
        assert!(msg.contains("train-images-idx3-ubyte.gz"), "{msg}");
        assert!(msg.contains("train-labels-idx1-ubyte.gz"), "{msg}");
        // Fix the training images; then the set loads, test read from raw.
        idx::write_idx(
            &dir.join(FMNIST_FILES[0]),
            idx::IMAGES_MAGIC,
            &[2, 2, 2],
            &px[..8],
            true,
        )
        .expect("write");
        let ds = Dataset::fmnist_dir(&dir).expect("consistent now");
        assert_eq!((ds.train.len(), ds.test.len()), (2, 2));
        // A label out of range is an error naming the labels file.
        idx::write_idx(
            &dir.join(FMNIST_FILES[1]),
            idx::LABELS_MAGIC,
            &[2],
            &[0, 10],
            true,
        )
        .expect("write");
        let err = Dataset::fmnist_dir(&dir).expect_err("label 10");
        assert!(
            matches!(
                err,
                DataError::BadLabel {
                    index: 1,
                    label: 10,
                    ..
                }
            ),
            "{err}"
        );
        assert!(
            err.to_string().contains("train-labels-idx1-ubyte.gz"),
            "{err}"
        );
        let _ = std::fs::remove_dir_all(&dir);
    }

    /// Regenerates `data/fmnist-small/` from the installed full set:
    /// `cargo test --lib make_fmnist_subset -- --ignored`.
    #[test]
    #[ignore = "writes data/fmnist-small/ from the installed full set"]
    fn make_fmnist_subset() {
        let dst = Path::new(env!("CARGO_MANIFEST_DIR")).join("data/fmnist-small");
        write_subset(Path::new(SYSTEM_FMNIST_DIR), &dst, 200, 50).expect("write subset");
    }
}
