//! The data a training or evaluation run reads, whatever `--data` names: a
//! prepared dataset file (memory-mapped), a folder of images (decoded into
//! memory, up to a budget), or Fashion-MNIST.
//!
//! Assumes nothing about the path. Guarantees: the training and test
//! sources share one image shape; the statistics are those of the training
//! images ([`Stats::compute`] over them, or the sums a prepared file
//! stores, which are equal); a prepared file of `N` images opens in time
//! and memory that do not depend on `N` beyond checking its index; an image
//! folder whose decoded images would exceed the budget is refused before
//! anything is decoded, with an error that names `netc prepare`.

use std::path::Path;
use std::sync::Arc;

use super::prepared::{Prepared, PreparedError, PreparedSplit};
use super::source::{FromFiles, ImageSource};
use super::{DataError, Dataset, Shape, Split, Stats, folder};

/// Decoded bytes an image folder may take in memory (2 GiB: about 10,900
/// images at 256 × 256); above it, `netc prepare` is the way.
pub const FOLDER_BUDGET: u64 = 2 << 30;

/// A run's training and test images.
pub struct Sources {
    pub train: Arc<dyn ImageSource>,
    pub test: Arc<dyn ImageSource>,
    pub stats: Stats,
    pub class_names: Vec<String>,
    pub description: String,
    /// The side every image was prepared at (shorter side rescaled to it,
    /// central square kept: image folders and prepared datasets); `None`
    /// for IDX images, used at their own size.
    pub rescale: Option<u32>,
    /// What the images are: `idx`, `image_folder` or `prepared`.
    pub kind: &'static str,
}

impl Sources {
    pub fn shape(&self) -> Shape {
        self.train.shape()
    }
}

/// True if `path` is a file that starts like a prepared dataset (complete
/// or not), so that errors about it speak of prepared datasets.
pub fn is_prepared(path: &Path) -> bool {
    use std::io::Read;
    let mut magic = [0u8; 8];
    path.is_file()
        && std::fs::File::open(path)
            .and_then(|mut f| f.read_exact(&mut magic))
            .is_ok()
        && (&magic == super::prepared::MAGIC || magic == [0u8; 8])
}

/// Refuses at once a `--data` that names nothing, or a file that is not a
/// prepared dataset (so it is never read as a Fashion-MNIST folder); cheap,
/// for a run to check before anything expensive.
pub fn check_path(data: &Path) -> Result<(), DataError> {
    let what = if !data.exists() {
        "no such file or folder"
    } else if data.is_dir() || is_prepared(data) {
        return Ok(());
    } else {
        "a file that is not a prepared dataset"
    };
    Err(DataError::NotData {
        path: data.to_path_buf(),
        what,
    })
}

/// Opens the data `data` names (see the module documentation), prepared
/// at `rescale` pixels (256 if `None`), with the default folder budget.
pub fn open(data: Option<&Path>, rescale: Option<u64>) -> Result<Sources, DataError> {
    open_with_budget(data, rescale, FOLDER_BUDGET)
}

/// [`open`] with an explicit folder budget in bytes.
pub fn open_with_budget(
    data: Option<&Path>,
    rescale: Option<u64>,
    budget: u64,
) -> Result<Sources, DataError> {
    let boxed = |e: PreparedError| DataError::Prepared(Box::new(e));
    if let Some(p) = data {
        check_path(p)?;
    }
    match data {
        Some(p) if is_prepared(p) => {
            let file = Arc::new(Prepared::open(p).map_err(boxed)?);
            if let Some(want) = rescale
                && want != file.meta().size as u64
            {
                return Err(boxed(PreparedError::SizeMismatch {
                    path: p.to_path_buf(),
                    found: file.meta().size,
                    wanted: want,
                }));
            }
            let train: Arc<dyn ImageSource> = Arc::new(PreparedSplit::train(&file));
            let (test, own): (Arc<dyn ImageSource>, bool) = if file.val_len() > 0 {
                (Arc::new(PreparedSplit::val(&file)), false)
            } else {
                (Arc::clone(&train), true)
            };
            let description = format!(
                "prepared dataset {} ({} train / {} val, {} classes, {}x{} {:?}){}",
                p.display(),
                file.train_len(),
                file.val_len(),
                file.meta().classes.len(),
                file.meta().size,
                file.meta().size,
                file.format(),
                if own {
                    "; no validation images, so it is evaluated on its own images"
                } else {
                    ""
                }
            );
            Ok(Sources {
                train,
                test,
                stats: file.stats(),
                class_names: file.meta().classes.clone(),
                description,
                rescale: Some(file.meta().size),
                kind: "prepared",
            })
        }
        Some(d) if !super::has_any_fmnist_file(d) && d.is_dir() => {
            let size = rescale.unwrap_or(256) as usize;
            let (train, val) = (d.join("train"), d.join("val"));
            let both = train.is_dir() && val.is_dir();
            let train_files = folder::list_image_folder(if both { &train } else { d })?.1;
            let val_files = if both {
                folder::list_image_folder(&val)?.1
            } else {
                Vec::new()
            };
            let images = train_files.len() + val_files.len();
            let need = images as u64 * (3 * size * size) as u64;
            if need > budget {
                return Err(DataError::TooLarge {
                    path: d.to_path_buf(),
                    images,
                    mib: need >> 20,
                    budget_mib: budget >> 20,
                });
            }
            let ds = if both {
                Dataset::image_folders(&train, Some(&val), size)?
            } else {
                let mut ds = Dataset::image_folders(d, None, size)?;
                ds.description
                    .push_str("; no train/ and val/ inside, so it is evaluated on its own images");
                ds
            };
            let names = |files: Vec<(std::path::PathBuf, u32)>| -> Vec<String> {
                files
                    .into_iter()
                    .map(|(p, _)| p.to_string_lossy().into_owned())
                    .collect()
            };
            let paths = (names(train_files), names(val_files));
            let mut s = in_memory(ds, !both, Some(paths));
            s.rescale = Some(size as u32);
            s.kind = "image_folder";
            Ok(s)
        }
        // A file that is no prepared dataset (empty, too short, or other
        // bytes), or nothing at all: an error naming it, whatever the
        // network's data section asks.
        Some(p) if p.is_file() => Err(boxed(PreparedError::NotPrepared {
            path: p.to_path_buf(),
        })),
        Some(p) if !p.exists() => Err(DataError::io(
            p,
            std::io::Error::new(
                std::io::ErrorKind::NotFound,
                "no such file or folder (`--data` takes a prepared dataset, an image folder or a Fashion-MNIST folder)",
            ),
        )),
        _ => {
            if let Some(rescale) = rescale {
                return Err(DataError::RescaleIdx { rescale });
            }
            Ok(in_memory(super::resolve_fmnist(data)?.0, false, None))
        }
    }
}

/// Sources over a dataset held in memory; `own` evaluates on the training
/// images (shared, not copied). `paths`: the files the train and test
/// images were decoded from, where known (kept only if they match the
/// splits image for image).
fn in_memory(ds: Dataset, own: bool, paths: Option<(Vec<String>, Vec<String>)>) -> Sources {
    let stats = Stats::compute(&ds.train);
    let wrap = |split: Split, paths: Option<Vec<String>>| -> Arc<dyn ImageSource> {
        match paths {
            Some(paths) if paths.len() == split.len() => Arc::new(FromFiles { split, paths }),
            _ => Arc::new(split),
        }
    };
    let (train_paths, test_paths) = match paths {
        Some((a, b)) => (Some(a), Some(b)),
        None => (None, None),
    };
    let train = wrap(ds.train, train_paths);
    let test: Arc<dyn ImageSource> = if own {
        Arc::clone(&train)
    } else {
        wrap(ds.test, test_paths)
    };
    Sources {
        train,
        test,
        stats,
        class_names: ds.class_names,
        description: ds.description,
        rescale: None,
        kind: "idx",
    }
}
