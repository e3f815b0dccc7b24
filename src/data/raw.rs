//! Batches before augmentation, for augmenting on the device
//! (a backend whose step takes `Feed::Raw`): the raw `u8` images of a [`Loader`] batch
//! and the per-crop draws the loader would apply to them.
//!
//! Assumes nothing beyond a built [`Loader`]. Guarantees (an image the
//! loader's source cannot give ends the batches: `None`, with the error in
//! [`Loader::take_error`]): batch `b` of
//! epoch `e` holds the images, labels and order of [`Loader::batch`]`(e,
//! b)`, one entry per output crop (ten per image under
//! [`Mode::TenCrop`](super::Mode::TenCrop), the image repeated), and
//! applying `params[i]` to image `i` with [`Augmenter::crop_into`] gives
//! exactly that batch's `images`.

use super::{Augmenter, Loader};

pub use crate::backend::input::RawBatch;

impl Loader {
    /// Batch `index` of `epoch` before augmentation; `None` past the end
    /// of the epoch.
    pub fn raw_batch(&self, epoch: u64, index: usize) -> Option<RawBatch> {
        if index >= self.len() {
            return None;
        }
        let order = self.order(epoch);
        let n = self.config().batch_size;
        let lo = index.saturating_mul(n).min(order.len());
        let hi = lo.saturating_add(n).min(order.len());
        let indices = order[lo..hi].to_vec();
        let (split, aug, mode) = (self.source(), self.augmenter(), self.config().mode);
        let per = Augmenter::crops_per_image(mode);
        let mut images = Vec::with_capacity(indices.len() * per * split.shape().len());
        let mut params = Vec::with_capacity(indices.len() * per);
        let mut buf = Vec::new();
        for &i in &indices {
            let img = match split.image(i, &mut buf) {
                Ok(img) => img,
                Err(e) => {
                    self.set_error(e);
                    return None;
                }
            };
            for p in aug.params_for(mode, epoch, i) {
                images.extend_from_slice(img);
                params.push(p);
            }
        }
        Some(RawBatch {
            epoch,
            index,
            images,
            params,
            labels: indices.iter().map(|&i| split.label(i)).collect(),
            indices,
        })
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::super::{AugmentConfig, LoaderConfig, MeanMode, Mode, Shape, Split, Stats};
    use super::*;

    #[test]
    fn raw_batches_augment_to_the_loaders_batches() {
        let shape = Shape::new(3, 6, 7);
        let n = 11;
        let images: Vec<u8> = (0..n * shape.len()).map(|i| (i * 37 % 251) as u8).collect();
        let split = Arc::new(Split {
            shape,
            images,
            labels: (0..n as u32).map(|i| i % 3).collect(),
        });
        let stats = Stats::compute(&split);
        let cfg = AugmentConfig {
            random_crop: true,
            crop: 5,
            pad: 1,
            mirror: true,
            lighting_sigma: 0.1,
            mean: MeanMode::Pixel,
            scale: 0.5,
        };
        for mode in [Mode::Train, Mode::Center, Mode::TenCrop] {
            let aug = Augmenter::new(cfg, &stats, 3).expect("config");
            let lc = LoaderConfig {
                mode,
                ..LoaderConfig::train(4, 9)
            };
            let loader = Loader::new(Arc::clone(&split), aug, lc).expect("loader");
            let aug = loader.augmenter().clone();
            let out = aug.out_shape().len();
            for epoch in 0..2 {
                for b in 0..loader.len() {
                    let want = loader.batch(epoch, b).expect("batch");
                    let raw = loader.raw_batch(epoch, b).expect("raw");
                    assert_eq!(raw.labels, want.labels);
                    assert_eq!(raw.indices, want.indices);
                    let mut got = vec![0.0; raw.params.len() * out];
                    for ((img, p), o) in raw
                        .images
                        .chunks(shape.len())
                        .zip(&raw.params)
                        .zip(got.chunks_mut(out))
                    {
                        aug.crop_into(img, p, o);
                    }
                    assert_eq!(got, want.images, "{mode:?} {epoch} {b}");
                }
                assert!(loader.raw_batch(epoch, loader.len()).is_none());
            }
        }
    }
}
