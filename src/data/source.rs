//! Where a [`Loader`](super::Loader) gets its images: an in-memory
//! [`Split`], or the records of a prepared dataset
//! ([`super::prepared::PreparedSplit`]), behind one trait.
//!
//! Assumes nothing. Guarantees: an [`ImageSource`] gives image `i` of
//! `0..len()` as `shape().len()` `u8` CHW values and its label, the same
//! every time it is asked; a source that decodes does so into the buffer
//! the caller passes (one per worker thread), so reading never allocates
//! per image once the buffers have grown.

use super::{DataError, Shape, Split};

/// Images and labels, read by index from any thread.
pub trait ImageSource: Send + Sync {
    /// The shape of every image.
    fn shape(&self) -> Shape;
    /// Number of images.
    fn len(&self) -> usize;
    fn is_empty(&self) -> bool {
        self.len() == 0
    }
    /// The label of image `i` (`i < len()`).
    fn label(&self, i: usize) -> u32;
    /// The CHW pixels of image `i` (`i < len()`): borrowed from the source,
    /// or decoded into `buf`.
    fn image<'a>(&'a self, i: usize, buf: &'a mut Vec<u8>) -> Result<&'a [u8], DataError>;
    /// Where image `i` came from (its file's path), where the source knows
    /// it; `None` for images read from IDX files.
    fn origin(&self, _i: usize) -> Option<String> {
        None
    }
}

/// An in-memory split that knows the file each of its images was decoded
/// from (an image folder): image `i` is `split`'s, from `paths[i]`.
pub struct FromFiles {
    pub split: Split,
    pub paths: Vec<String>,
}

impl ImageSource for FromFiles {
    fn shape(&self) -> Shape {
        self.split.shape
    }
    fn len(&self) -> usize {
        self.split.labels.len()
    }
    fn label(&self, i: usize) -> u32 {
        self.split.labels[i]
    }
    fn image<'a>(&'a self, i: usize, _buf: &'a mut Vec<u8>) -> Result<&'a [u8], DataError> {
        Ok(Split::image(&self.split, i))
    }
    fn origin(&self, i: usize) -> Option<String> {
        self.paths.get(i).cloned()
    }
}

impl ImageSource for Split {
    fn shape(&self) -> Shape {
        self.shape
    }
    fn len(&self) -> usize {
        self.labels.len()
    }
    fn label(&self, i: usize) -> u32 {
        self.labels[i]
    }
    fn image<'a>(&'a self, i: usize, _buf: &'a mut Vec<u8>) -> Result<&'a [u8], DataError> {
        Ok(Split::image(self, i))
    }
}
