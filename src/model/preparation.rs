//! What a trained model needs to classify an image without its training
//! data, as a checkpoint stores it: the class names and the input
//! preparation exactly as evaluation applies it (the side images are
//! prepared at, the crop, the padding, the scale, the mean image
//! subtracted, the test crops), and the training set's colour statistics
//! (channel means and deviations, the PCA the lighting augmentation uses).
//!
//! Assumes the settings of a run (`train.data`), the data it opened and the
//! augmenter it built from them. Guarantees: [`Preparation::augmenter`]
//! rebuilds an augmenter whose centre crop and ten crops are those of the
//! run's evaluation, value for value (the mean image is stored as the exact
//! `f32` values subtracted, in the tensor [`MEAN_TENSOR`]); an image file is
//! turned into the stored image shape by [`Preparation::load_image`], the
//! code the image-folder loader runs (the same pixels for the same file).
//! The metadata is plain JSON (serde), its fields in a fixed order, so the
//! same run writes the same bytes. `Preparation::load` (beside the
//! checkpoint reader, in `checkpoint`) reads it from a checkpoint file.

use std::path::Path;

use crate::data::augment::{AugmentConfig, Augmenter, ConfigError, MeanMode};
use crate::data::sources::Sources;
use crate::data::{DataError, Pca, Shape, folder};
use crate::ir::train::{DataPrep, TestCrop};

/// The tensor holding the mean image, `[C, H, W]` (0..255 units).
pub const MEAN_TENSOR: &str = "preparation/mean_image";

/// The version of this layout; a later netc reads earlier versions.
pub const VERSION: u32 = 1;

/// Which crops evaluation scores.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TestCrops {
    /// The centre crop.
    Center,
    /// The four corners and the centre, and their mirrors; softmax outputs averaged.
    TenCrop,
}

/// The principal components of the training pixels' RGB values ([0, 1]
/// units): `eigvec[row][i]` is component `row` (R, G, B) of eigenvector
/// `i`, whose eigenvalue is `eigval[i]`, in decreasing order.
#[derive(Clone, Copy, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct PcaStats {
    pub eigval: [f32; 3],
    pub eigvec: [[f32; 3]; 3],
}

/// The input preparation and class names of a trained model (see the
/// module documentation). Pixel values are in 0..255 units unless said.
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Preparation {
    /// [`VERSION`] when written.
    pub version: u32,
    /// Class names by class id (the network's logit index).
    pub classes: Vec<String>,
    /// What the training data was: `idx` (Fashion-MNIST IDX files),
    /// `image_folder` or `prepared` (`netc prepare`).
    pub source: String,
    /// The shape of a prepared image, before cropping: channels, rows, columns.
    pub channels: usize,
    pub height: usize,
    pub width: usize,
    /// The side an image file is prepared at: its shorter side rescaled to
    /// it (Catmull-Rom), the central square kept. `None`: the images were
    /// used at their own size (IDX); a file of another size is prepared at
    /// `height` the same way.
    pub rescale: Option<u32>,
    /// Side of the square crop fed to the network.
    pub crop: usize,
    /// Zero padding around each side before cropping.
    pub pad: usize,
    /// Whether the training mean image is subtracted (`train.data.mean`);
    /// the tensor [`MEAN_TENSOR`] holds what is subtracted (zeros if not).
    pub mean: bool,
    /// Factor applied after the mean is subtracted.
    pub scale: f32,
    /// The crops evaluation scores (`test:`).
    pub test: TestCrops,
    /// Training-time augmentation, recorded for completeness (evaluation
    /// uses none of it): random crops, mirrors, the PCA lighting σ.
    pub random_crop: bool,
    pub mirror: bool,
    pub lighting: f32,
    /// Per-channel mean and standard deviation of the training pixels.
    pub channel_mean: Vec<f32>,
    pub channel_std: Vec<f32>,
    /// The PCA of the training pixels' RGB values (3-channel data only).
    pub pca: Option<PcaStats>,
    /// The image subtracted from every input, `channels × height × width`
    /// CHW; stored as the tensor [`MEAN_TENSOR`], not in the JSON.
    #[serde(skip)]
    pub mean_image: Vec<f32>,
}

impl Preparation {
    /// The preparation of a run: its data settings, the data it opened and
    /// the augmenter built from them.
    pub fn of_run(d: &DataPrep, sources: &Sources, aug: &Augmenter) -> Preparation {
        let shape = aug.in_shape();
        let cfg = aug.config();
        Preparation {
            version: VERSION,
            classes: sources.class_names.clone(),
            source: sources.kind.to_string(),
            channels: shape.c,
            height: shape.h,
            width: shape.w,
            rescale: sources.rescale,
            crop: cfg.crop,
            pad: cfg.pad,
            mean: d.mean,
            scale: cfg.scale,
            test: match d.test {
                TestCrop::Center => TestCrops::Center,
                TestCrop::TenCrop => TestCrops::TenCrop,
            },
            random_crop: d.random_crop,
            mirror: d.mirror,
            lighting: cfg.lighting_sigma,
            channel_mean: sources.stats.channel_mean.clone(),
            channel_std: sources.stats.channel_std.clone(),
            pca: sources.stats.pca.map(|p| PcaStats {
                eigval: p.eigval,
                eigvec: p.eigvec,
            }),
            mean_image: aug.mean().to_vec(),
        }
    }

    /// The shape of a prepared image.
    pub fn shape(&self) -> Shape {
        Shape::new(self.channels, self.height, self.width)
    }

    /// An augmenter that prepares test images as the run's evaluation did.
    pub fn augmenter(&self) -> Result<Augmenter, ConfigError> {
        let cfg = AugmentConfig {
            random_crop: self.random_crop,
            crop: self.crop,
            pad: self.pad,
            mirror: self.mirror,
            lighting_sigma: self.lighting,
            mean: MeanMode::Pixel,
            scale: self.scale,
        };
        let pca = self.pca.map(|p| Pca {
            eigval: p.eigval,
            eigvec: p.eigvec,
        });
        Augmenter::from_mean(cfg, self.shape(), self.mean_image.clone(), pca, 0)
    }

    /// Reads a JPEG or PNG file (any size, colour or grey) and prepares it
    /// as the training images were: converted to the stored channel count
    /// (grey to three equal channels; colour to luma for 1-channel data),
    /// the shorter side rescaled to `height` (unless it is that already)
    /// and the central square kept; `u8` CHW. Errors name the file.
    pub fn load_image(&self, path: &Path) -> Result<Vec<u8>, DataError> {
        let size = self.height;
        if self.height != self.width || size == 0 || !matches!(self.channels, 1 | 3) {
            return Err(DataError::BadDims {
                path: path.to_path_buf(),
                dims: vec![self.channels, self.height, self.width],
                reason: "[channels, height, width]: only square 1- or 3-channel inputs can be prepared from an image file",
            });
        }
        if self.channels == 3 {
            return folder::load_image(path, size);
        }
        let img = folder::decode_image(path)?;
        // Luma, then the colour path on three equal channels: one plane of it.
        let rgb = image::DynamicImage::ImageLuma8(img.to_luma8()).to_rgb8();
        let mut chw = folder::prepare(&rgb, size);
        chw.truncate(size * size);
        Ok(chw)
    }

    /// Checks the stored values fit together (a checkpoint read back).
    pub(crate) fn check(&self) -> Result<(), String> {
        if self.mean_image.len() != self.shape().len() {
            return Err(format!(
                "the mean image holds {} values, not the {} of a {}×{}×{} image",
                self.mean_image.len(),
                self.shape().len(),
                self.channels,
                self.height,
                self.width
            ));
        }
        if self.classes.is_empty() {
            return Err("the preparation names no classes".into());
        }
        self.augmenter().map(|_| ()).map_err(|e| e.to_string())
    }
}
