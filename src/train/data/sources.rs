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
use super::source::ImageSource;
use super::{DataError, Dataset, Shape, Stats, folder};

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
            })
        }
        Some(d) if !super::has_any_fmnist_file(d) && d.is_dir() => {
            let size = rescale.unwrap_or(256) as usize;
            let (train, val) = (d.join("train"), d.join("val"));
            let both = train.is_dir() && val.is_dir();
            let mut images = folder::list_image_folder(if both { &train } else { d })?
                .1
                .len();
            if both {
                images += folder::list_image_folder(&val)?.1.len();
            }
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
            Ok(in_memory(ds, !both))
        }
        _ => {
            if let Some(rescale) = rescale {
                return Err(DataError::RescaleIdx { rescale });
            }
            Ok(in_memory(super::resolve_fmnist(data)?.0, false))
        }
    }
}

/// Sources over a dataset held in memory; `own` evaluates on the training
/// images (shared, not copied).
fn in_memory(ds: Dataset, own: bool) -> Sources {
    let stats = Stats::compute(&ds.train);
    let train: Arc<dyn ImageSource> = Arc::new(ds.train);
    let test: Arc<dyn ImageSource> = if own {
        Arc::clone(&train)
    } else {
        Arc::new(ds.test)
    };
    Sources {
        train,
        test,
        stats,
        class_names: ds.class_names,
        description: ds.description,
    }
}
