//! Augmentation and normalisation: `u8` CHW images in, `f32` CHW crops out,
//! ready for the network.
//!
//! Assumes images of the [`Shape`] the [`Augmenter`] was built for, and
//! [`Stats`] computed on the training split. Every output value is
//!
//! ```text
//! out[k][y][x] = (img[k][sy][sx] + 255 · light[k] − mean[k][sy][sx]) · scale
//! ```
//!
//! where `(sy, sx)` is the source pixel that output `(y, x)` comes from under
//! the crop offset and mirror, `light` is the PCA lighting offset
//! ([`Pca::offset`], [0,1] units, hence the 255), and `mean` is the per-pixel
//! mean image, the per-channel mean, or zero ([`MeanMode`]). With zero
//! padding (`pad > 0`), crops may reach outside the image; those outputs are
//! exactly 0 (i.e. "the mean" after normalisation).
//!
//! Guarantees: training-time randomness (crop offset, mirror, lighting α) is
//! a pure function of `(seed, epoch, image index)` — never of thread count,
//! batch composition or call order — and the same draws are made whatever
//! the options, so turning lighting on does not move the crops.

use crate::rng::{self, Rng};

use super::{Pca, Shape, Stats};

/// What [`Loader`](super::Loader) batches hold.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    /// Random crop, random mirror, PCA lighting.
    Train,
    /// The central crop, no mirror, no lighting.
    Center,
    /// The paper's ten crops per image ([`Augmenter::ten_crops`]).
    TenCrop,
}

/// Which mean is subtracted.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MeanMode {
    /// Nothing is subtracted.
    None,
    /// The per-pixel training mean image (the paper).
    Pixel,
    /// The per-channel training mean.
    Channel,
}

/// Augmentation options.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct AugmentConfig {
    /// Side of the square output crop. Equal to the image size (with
    /// `pad == 0`) means no cropping.
    pub crop: usize,
    /// Zero padding added on every side before cropping (e.g. 4 with
    /// `crop == 28` for Fashion-MNIST's "pad and random-crop"); 0 for none.
    pub pad: usize,
    /// Training-time crops at a random offset; `false` takes the central
    /// crop (the test-time one) while still mirroring and lighting.
    pub random_crop: bool,
    /// Training-time horizontal mirror with probability 0.5.
    pub mirror: bool,
    /// σ of the lighting coefficients αᵢ ~ N(0, σ) (the paper: 0.1); 0
    /// disables. Used only for 3-channel data with a PCA.
    pub lighting_sigma: f32,
    pub mean: MeanMode,
    /// Multiplies the mean-subtracted value (1.0 keeps 0..255 units, as the
    /// paper; 1/255 gives [0,1] units; 1/std standardises).
    pub scale: f32,
}

impl AugmentConfig {
    /// The paper's ImageNet settings for 256×256 images: 227×227 random
    /// crops (the paper says 224, but its layer arithmetic needs 227),
    /// mirror, lighting σ = 0.1, per-pixel mean, 0..255 units.
    pub fn alexnet() -> Self {
        AugmentConfig {
            random_crop: true,
            crop: 227,
            pad: 0,
            mirror: true,
            lighting_sigma: 0.1,
            mean: MeanMode::Pixel,
            scale: 1.0,
        }
    }
    /// No augmentation: full `size × size` image, per-pixel mean subtracted,
    /// values scaled by `scale`.
    pub fn plain(size: usize, scale: f32) -> Self {
        AugmentConfig {
            random_crop: true,
            crop: size,
            pad: 0,
            mirror: false,
            lighting_sigma: 0.0,
            mean: MeanMode::Pixel,
            scale,
        }
    }
}

/// Invalid augmentation settings for a dataset.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ConfigError {
    #[error("crop {crop} does not fit the {h}x{w} image padded by {pad}")]
    CropTooLarge {
        crop: usize,
        h: usize,
        w: usize,
        pad: usize,
    },
    #[error("crop size must be positive")]
    ZeroCrop,
    #[error("statistics are for {stats:?} images but the data is {data:?}")]
    ShapeMismatch { stats: Shape, data: Shape },
    #[error("batch size must be positive")]
    ZeroBatch,
    #[error("the mean image holds {len} values, not the {} of a {shape:?} image", shape.len())]
    MeanSize { len: usize, shape: Shape },
}

/// The random choices for one image in one epoch (a backend input type).
pub use crate::backend::input::Draw as Params;

/// Turns `u8` CHW images into normalised `f32` CHW crops.
#[derive(Clone, Debug)]
pub struct Augmenter {
    cfg: AugmentConfig,
    shape: Shape,
    mean: Vec<f32>,
    pca: Option<Pca>,
    seed: u64,
}

impl Augmenter {
    /// Checks `cfg` against the image shape of `stats` and captures the mean
    /// and PCA it needs. `seed` keys all training-time randomness.
    pub fn new(cfg: AugmentConfig, stats: &Stats, seed: u64) -> Result<Self, ConfigError> {
        let shape = stats.shape;
        if cfg.crop == 0 {
            return Err(ConfigError::ZeroCrop);
        }
        if cfg.crop > shape.h + 2 * cfg.pad || cfg.crop > shape.w + 2 * cfg.pad {
            return Err(ConfigError::CropTooLarge {
                crop: cfg.crop,
                h: shape.h,
                w: shape.w,
                pad: cfg.pad,
            });
        }
        let plane = shape.h * shape.w;
        let mean = match cfg.mean {
            MeanMode::None => vec![0.0; shape.len()],
            MeanMode::Pixel => stats.mean_image.clone(),
            MeanMode::Channel => (0..shape.len())
                .map(|i| {
                    stats
                        .channel_mean
                        .get(i / plane.max(1))
                        .copied()
                        .unwrap_or(0.0)
                })
                .collect(),
        };
        let pca = if shape.c == 3 { stats.pca } else { None };
        Ok(Augmenter {
            cfg,
            shape,
            mean,
            pca,
            seed,
        })
    }

    /// An augmenter for images of `shape` that subtracts exactly `mean`
    /// (`shape.len()` values, 0..255 units) and lights with `pca`: how a
    /// checkpoint's stored preparation is replayed without the training
    /// data (`model::preparation`). `cfg.mean` is not consulted.
    pub fn from_mean(
        cfg: AugmentConfig,
        shape: Shape,
        mean: Vec<f32>,
        pca: Option<Pca>,
        seed: u64,
    ) -> Result<Self, ConfigError> {
        if mean.len() != shape.len() {
            return Err(ConfigError::MeanSize {
                len: mean.len(),
                shape,
            });
        }
        let stats = Stats {
            shape,
            mean_image: mean,
            channel_mean: Vec::new(),
            channel_std: Vec::new(),
            covariance: None,
            pca,
        };
        Augmenter::new(
            AugmentConfig {
                mean: MeanMode::Pixel,
                ..cfg
            },
            &stats,
            seed,
        )
    }

    /// What a backend needs to augment raw batches as this augmenter does.
    pub fn plan(&self) -> crate::backend::input::AugmentPlan {
        let s = self.in_shape();
        crate::backend::input::AugmentPlan {
            c: s.c,
            h: s.h,
            w: s.w,
            crop: self.cfg.crop,
            pad: self.cfg.pad,
            scale: self.cfg.scale,
            mean: self.mean().to_vec(),
        }
    }

    pub fn config(&self) -> &AugmentConfig {
        &self.cfg
    }
    /// The input image shape.
    pub fn in_shape(&self) -> Shape {
        self.shape
    }
    /// The mean image subtracted (`in_shape().len()` values): the
    /// per-pixel mean, the channel means spread over their planes, or zeros.
    pub fn mean(&self) -> &[f32] {
        &self.mean
    }
    /// The output crop shape `(c, crop, crop)`.
    pub fn out_shape(&self) -> Shape {
        Shape::new(self.shape.c, self.cfg.crop, self.cfg.crop)
    }

    fn max_offsets(&self) -> (usize, usize) {
        let p = 2 * self.cfg.pad;
        (
            self.shape.h + p - self.cfg.crop,
            self.shape.w + p - self.cfg.crop,
        )
    }

    /// The training-time random choices for image `index` in `epoch`.
    pub fn params(&self, epoch: u64, index: usize) -> Params {
        let stream = rng::bits(epoch, rng::stream_of("data/augment"), index as u64);
        let mut r = Rng::new(self.seed, stream);
        let (my, mx) = self.max_offsets();
        let oy = r.below(my as u64 + 1) as usize;
        let ox = r.below(mx as u64 + 1) as usize;
        let (oy, ox) = if self.cfg.random_crop {
            (oy, ox)
        } else {
            (my / 2, mx / 2)
        };
        let mirror = r.uniform() < 0.5;
        let sigma = self.cfg.lighting_sigma;
        let alpha = [0; 3].map(|_| (r.normal() as f32) * sigma);
        let light = match &self.pca {
            Some(p) if sigma > 0.0 => p.offset(alpha),
            _ => [0.0; 3],
        };
        Params {
            oy,
            ox,
            mirror: mirror && self.cfg.mirror,
            light,
        }
    }

    /// Writes one crop of `img` into `out` (`out_shape().len()` values):
    /// offset `(oy, ox)` in padded coordinates, optionally mirrored, with a
    /// per-channel lighting offset ([0,1] units), normalised.
    pub fn crop_into(&self, img: &[u8], p: &Params, out: &mut [f32]) {
        let Shape { c, h, w } = self.shape;
        let crop = self.cfg.crop;
        let pad = self.cfg.pad;
        let scale = self.cfg.scale;
        for k in 0..c {
            let light = if k < 3 { 255.0 * p.light[k] } else { 0.0 };
            let src = &img[k * h * w..(k + 1) * h * w];
            let mean = &self.mean[k * h * w..(k + 1) * h * w];
            for y in 0..crop {
                let row = &mut out[(k * crop + y) * crop..(k * crop + y + 1) * crop];
                let sy = (p.oy + y).wrapping_sub(pad);
                if sy >= h {
                    row.fill(0.0);
                    continue;
                }
                // Columns x0..x1 of the (unmirrored) row fall inside the
                // image, at source columns ox + x - pad.
                let x0 = pad.saturating_sub(p.ox).min(crop);
                let x1 = (w + pad).saturating_sub(p.ox).clamp(x0, crop);
                let n = x1 - x0;
                if n == 0 {
                    row.fill(0.0);
                    continue;
                }
                let s0 = sy * w + (p.ox + x0 - pad);
                row[..x0].fill(0.0);
                row[x1..].fill(0.0);
                for (o, (&v, &m)) in row[x0..x1]
                    .iter_mut()
                    .zip(src[s0..s0 + n].iter().zip(&mean[s0..s0 + n]))
                {
                    *o = (v as f32 + light - m) * scale;
                }
                if p.mirror {
                    row.reverse();
                }
            }
        }
    }

    /// Training-time augmentation of image `index` in `epoch`.
    pub fn train_into(&self, img: &[u8], epoch: u64, index: usize, out: &mut [f32]) {
        let p = self.params(epoch, index);
        self.crop_into(img, &p, out);
    }

    fn centre_params(&self, mirror: bool) -> Params {
        let (my, mx) = self.max_offsets();
        Params {
            oy: my / 2,
            ox: mx / 2,
            mirror,
            light: [0.0; 3],
        }
    }

    /// Test-time central crop (no mirror, no lighting).
    pub fn center_into(&self, img: &[u8], out: &mut [f32]) {
        self.crop_into(img, &self.centre_params(false), out);
    }

    /// The crop offsets of the paper's ten test crops, in order: top-left,
    /// top-right, bottom-left, bottom-right, centre; then the same five
    /// mirrored.
    pub fn ten_crop_params(&self) -> [Params; 10] {
        let (my, mx) = self.max_offsets();
        let at = |oy, ox, mirror| Params {
            oy,
            ox,
            mirror,
            light: [0.0; 3],
        };
        let c = self.centre_params(false);
        let five = [
            at(0, 0, false),
            at(0, mx, false),
            at(my, 0, false),
            at(my, mx, false),
            c,
        ];
        let mut all = [c; 10];
        for (i, p) in five.iter().enumerate() {
            all[i] = *p;
            all[i + 5] = Params { mirror: true, ..*p };
        }
        all
    }

    /// Writes the ten crops of `img` into `out`, `[10, C, crop, crop]`, in
    /// the order of [`ten_crop_params`](Self::ten_crop_params).
    pub fn ten_crops_into(&self, img: &[u8], out: &mut [f32]) {
        let n = self.out_shape().len();
        for (p, o) in self.ten_crop_params().iter().zip(out.chunks_exact_mut(n)) {
            self.crop_into(img, p, o);
        }
    }

    /// The ten crops of `img` as one `[10, C, crop, crop]` vector.
    pub fn ten_crops(&self, img: &[u8]) -> Vec<f32> {
        let mut out = vec![0.0; 10 * self.out_shape().len()];
        self.ten_crops_into(img, &mut out);
        out
    }

    /// Writes the output for `mode` (one crop, or ten for [`Mode::TenCrop`]).
    pub fn apply_into(&self, mode: Mode, img: &[u8], epoch: u64, index: usize, out: &mut [f32]) {
        match mode {
            Mode::Train => self.train_into(img, epoch, index, out),
            Mode::Center => self.center_into(img, out),
            Mode::TenCrop => self.ten_crops_into(img, out),
        }
    }

    /// The draws [`apply_into`](Self::apply_into) uses for image `index`
    /// under `mode`, one per output crop: the training draw, the centre
    /// crop, or the ten crops.
    pub fn params_for(&self, mode: Mode, epoch: u64, index: usize) -> Vec<Params> {
        match mode {
            Mode::Train => vec![self.params(epoch, index)],
            Mode::Center => vec![self.centre_params(false)],
            Mode::TenCrop => self.ten_crop_params().to_vec(),
        }
    }

    /// Output crops per input image under `mode`.
    pub fn crops_per_image(mode: Mode) -> usize {
        if mode == Mode::TenCrop { 10 } else { 1 }
    }
}

#[cfg(test)]
mod tests {
    use super::super::Split;
    use super::*;

    /// A 2×4×5 image: channel k, row y, column x holds 100k + 10y + x.
    fn tiny() -> (Split, Stats) {
        let shape = Shape::new(2, 4, 5);
        let images: Vec<u8> = (0..2)
            .flat_map(|k| {
                (0..4).flat_map(move |y| (0..5).map(move |x| (100 * k + 10 * y + x) as u8))
            })
            .collect();
        let split = Split {
            shape,
            images,
            labels: vec![0],
        };
        let stats = Stats::compute(&split);
        (split, stats)
    }

    fn raw(crop: usize, pad: usize) -> AugmentConfig {
        AugmentConfig {
            random_crop: true,
            crop,
            pad,
            mirror: false,
            lighting_sigma: 0.0,
            mean: MeanMode::None,
            scale: 1.0,
        }
    }

    fn at(oy: usize, ox: usize, mirror: bool) -> Params {
        Params {
            oy,
            ox,
            mirror,
            light: [0.0; 3],
        }
    }

    /// `random_crop: false` with `mirror: true` keeps the central crop and
    /// still mirrors about half the images; with `random_crop: true` the
    /// offsets cover their whole range.
    #[test]
    fn random_crop_off_keeps_the_centre_and_still_mirrors() {
        let (_, stats) = tiny();
        let cfg = AugmentConfig {
            mirror: true,
            ..raw(3, 1)
        };
        let fixed = Augmenter::new(
            AugmentConfig {
                random_crop: false,
                ..cfg
            },
            &stats,
            1,
        )
        .expect("config");
        let random = Augmenter::new(cfg, &stats, 1).expect("config");
        let centre = fixed.centre_params(false);
        let (mut mirrored, mut offsets) = (0, std::collections::HashSet::new());
        for i in 0..200 {
            let p = fixed.params(0, i);
            assert_eq!((p.oy, p.ox), (centre.oy, centre.ox), "image {i}");
            mirrored += usize::from(p.mirror);
            let q = random.params(0, i);
            assert_eq!(q.mirror, p.mirror, "image {i}: same draws for the mirror");
            offsets.insert((q.oy, q.ox));
        }
        assert!((60..140).contains(&mirrored), "{mirrored} of 200 mirrored");
        // 4+2-3 = 3 and 5+2-3 = 4: offsets 0..=3 by 0..=4.
        assert_eq!(offsets.len(), 4 * 5);
    }

    #[test]
    fn crop_and_mirror_pick_the_right_pixels() {
        let (split, stats) = tiny();
        let img = split.image(0);
        let a = Augmenter::new(raw(3, 0), &stats, 1).expect("config");
        assert_eq!(a.out_shape(), Shape::new(2, 3, 3));
        let mut out = vec![0.0; 18];
        a.crop_into(img, &at(1, 2, false), &mut out);
        let want: Vec<f32> = [
            12, 13, 14, 22, 23, 24, 32, 33, 34, 112, 113, 114, 122, 123, 124, 132, 133, 134,
        ]
        .iter()
        .map(|&v| v as f32)
        .collect();
        assert_eq!(out, want);
        a.crop_into(img, &at(1, 2, true), &mut out);
        let mirrored: Vec<f32> = want
            .chunks(3)
            .flat_map(|r| r.iter().rev().copied())
            .collect();
        assert_eq!(out, mirrored);
        // Centre crop of a 4×5 image with crop 3: offsets (0, 1) (floor).
        a.center_into(img, &mut out);
        assert_eq!(&out[..3], &[1.0, 2.0, 3.0]);
        assert_eq!(&out[6..9], &[21.0, 22.0, 23.0]);
        // Zero padding: offset (0, 0) with pad 1 reads one row/column outside.
        let p = Augmenter::new(raw(3, 1), &stats, 1).expect("config");
        p.crop_into(img, &at(0, 0, false), &mut out);
        assert_eq!(&out[..9], &[0.0, 0.0, 0.0, 0.0, 0.0, 1.0, 0.0, 10.0, 11.0]);
        // Padding wider than the crop: crops wholly outside are all zero,
        // and every offset/mirror agrees with a naive per-pixel reference.
        let wide = Augmenter::new(raw(3, 4), &stats, 1).expect("config");
        wide.crop_into(img, &at(0, 0, false), &mut out);
        assert!(out.iter().all(|&v| v == 0.0));
        for oy in 0..=6 {
            for ox in 0..=7 {
                for mirror in [false, true] {
                    wide.crop_into(img, &at(oy, ox, mirror), &mut out);
                    for k in 0..2usize {
                        for y in 0..3usize {
                            for x in 0..3usize {
                                let xx = if mirror { 2 - x } else { x };
                                let (sy, sx) =
                                    (oy as i64 + y as i64 - 4, ox as i64 + xx as i64 - 4);
                                let want = if (0..4).contains(&sy) && (0..5).contains(&sx) {
                                    (100 * k as i64 + 10 * sy + sx) as f32
                                } else {
                                    0.0
                                };
                                assert_eq!(out[(k * 3 + y) * 3 + x], want, "{oy} {ox} {mirror}");
                            }
                        }
                    }
                }
            }
        }
        // Mean subtraction and scaling: a one-image set minus its own mean is 0.
        let cfg = AugmentConfig {
            random_crop: true,
            mean: MeanMode::Pixel,
            scale: 0.5,
            ..raw(3, 0)
        };
        let m = Augmenter::new(cfg, &stats, 1).expect("config");
        m.crop_into(img, &at(1, 1, true), &mut out);
        assert!(out.iter().all(|&v| v == 0.0));
        let cfg = AugmentConfig {
            random_crop: true,
            mean: MeanMode::Channel,
            scale: 0.5,
            ..raw(3, 0)
        };
        let m = Augmenter::new(cfg, &stats, 1).expect("config");
        m.crop_into(img, &at(0, 0, false), &mut out);
        // Channel 0 mean is 17 (rows 0..40 step 10 → 15, + columns 0..4 → 2).
        assert_eq!(out[0], (0.0 - 17.0) * 0.5);
        // Bad settings.
        assert!(matches!(
            Augmenter::new(raw(5, 0), &stats, 1),
            Err(ConfigError::CropTooLarge { .. })
        ));
        assert!(Augmenter::new(raw(5, 1), &stats, 1).is_ok());
        assert_eq!(
            Augmenter::new(raw(0, 0), &stats, 1).err(),
            Some(ConfigError::ZeroCrop)
        );
    }

    #[test]
    fn ten_crops_are_the_corners_centre_and_mirrors() {
        let (split, stats) = tiny();
        let img = split.image(0);
        let a = Augmenter::new(raw(3, 0), &stats, 1).expect("config");
        let out = a.ten_crops(img);
        assert_eq!(out.len(), 10 * 18);
        // First value (channel 0, row 0, column 0) of each crop, and the
        // last value of its first row.
        let first: Vec<f32> = out.chunks(18).map(|c| c[0]).collect();
        assert_eq!(
            first,
            vec![0.0, 2.0, 10.0, 12.0, 1.0, 2.0, 4.0, 12.0, 14.0, 3.0]
        );
        let row_end: Vec<f32> = out.chunks(18).map(|c| c[2]).collect();
        assert_eq!(
            row_end,
            vec![2.0, 4.0, 12.0, 14.0, 3.0, 0.0, 2.0, 10.0, 12.0, 1.0]
        );
        // Each mirrored crop is its partner reversed row by row.
        for i in 0..5 {
            let plain = &out[i * 18..(i + 1) * 18];
            let mirror = &out[(i + 5) * 18..(i + 6) * 18];
            for (r, m) in plain.chunks(3).zip(mirror.chunks(3)) {
                assert_eq!(r.iter().rev().copied().collect::<Vec<_>>(), m);
            }
        }
    }

    #[test]
    fn training_crops_are_reproducible_and_cover_offsets() {
        let (split, stats) = tiny();
        let cfg = AugmentConfig {
            random_crop: true,
            mirror: true,
            ..raw(3, 0)
        };
        let a = Augmenter::new(cfg, &stats, 42).expect("config");
        let mut seen = std::collections::HashSet::new();
        let mut mirrors = 0;
        for epoch in 0..50u64 {
            for index in 0..4 {
                let p = a.params(epoch, index);
                assert_eq!(p, a.params(epoch, index));
                assert!(p.oy <= 1 && p.ox <= 2);
                seen.insert((p.oy, p.ox));
                mirrors += p.mirror as usize;
                let mut x = vec![0.0; 18];
                let mut y = vec![0.0; 18];
                a.train_into(split.image(0), epoch, index, &mut x);
                a.crop_into(split.image(0), &p, &mut y);
                assert_eq!(x, y);
            }
        }
        assert_eq!(seen.len(), 6, "all 2×3 offsets occur");
        assert!((70..130).contains(&mirrors), "mirrors {mirrors} of 200");
        // A different seed gives different choices.
        let b = Augmenter::new(cfg, &stats, 43).expect("config");
        assert!((0..20).any(|i| a.params(0, i) != b.params(0, i)));
        // crop == size: always the whole image; mirror off: never mirrored.
        let whole = Augmenter::new(raw(4, 0), &square_stats(), 42).expect("config");
        assert!((0..50).all(|i| {
            let p = whole.params(3, i);
            p.oy == 0 && p.ox == 0 && !p.mirror
        }));
    }

    fn square_stats() -> Stats {
        Stats::compute(&Split {
            shape: Shape::new(1, 4, 4),
            images: vec![9; 16],
            labels: vec![0],
        })
    }

    /// An RGB image set with a non-trivial colour covariance.
    fn rgb_set() -> (Split, Stats) {
        let shape = Shape::new(3, 6, 6);
        let mut r = Rng::new(5, 0);
        let mut images = Vec::new();
        for _ in 0..8 {
            for _ in 0..36 {
                let base = r.below(200) as u8;
                let px = [base + r.below(40) as u8, base, base / 2 + r.below(20) as u8];
                images.extend_from_slice(&px); // HWC for now
            }
        }
        // HWC -> CHW.
        let mut chw = vec![0u8; images.len()];
        for n in 0..8 {
            for i in 0..36 {
                for k in 0..3 {
                    chw[n * 108 + k * 36 + i] = images[n * 108 + i * 3 + k];
                }
            }
        }
        let split = Split {
            shape,
            images: chw,
            labels: vec![0; 8],
        };
        let stats = Stats::compute(&split);
        (split, stats)
    }

    #[test]
    fn pca_lighting_is_a_per_image_rgb_offset() {
        let (split, stats) = rgb_set();
        let pca = stats.pca.expect("rgb");
        assert!(pca.eigval[0] > 0.0);
        let base = AugmentConfig {
            random_crop: true,
            crop: 4,
            pad: 0,
            mirror: true,
            lighting_sigma: 0.0,
            mean: MeanMode::Pixel,
            scale: 0.25,
        };
        let lit_cfg = AugmentConfig {
            random_crop: true,
            lighting_sigma: 0.1,
            ..base
        };
        let plain = Augmenter::new(base, &stats, 9).expect("config");
        let lit = Augmenter::new(lit_cfg, &stats, 9).expect("config");
        let n = 3 * 16;
        let mut offsets = Vec::new();
        for (epoch, index) in [(0u64, 0usize), (0, 1), (1, 0), (7, 5)] {
            let img = split.image(index);
            let (mut a, mut b) = (vec![0.0; n], vec![0.0; n]);
            plain.train_into(img, epoch, index, &mut a);
            lit.train_into(img, epoch, index, &mut b);
            // σ = 0: exactly the un-lit crop at the same (crop, mirror).
            let p = plain.params(epoch, index);
            assert_eq!(p.light, [0.0; 3]);
            let mut c = vec![0.0; n];
            plain.crop_into(
                img,
                &Params {
                    light: [0.0; 3],
                    ..lit.params(epoch, index)
                },
                &mut c,
            );
            assert_eq!(a, c, "lighting does not move the crop");
            // σ > 0: a constant per channel, equal to 255 · P(α ⊙ λ) · scale.
            let want = lit.params(epoch, index).light;
            let mut per_channel = [0.0f32; 3];
            for k in 0..3 {
                let d: Vec<f32> = (0..16).map(|i| b[k * 16 + i] - a[k * 16 + i]).collect();
                for &x in &d {
                    assert!((x - d[0]).abs() < 1e-3, "channel {k}: {d:?}");
                }
                assert!(
                    (d[0] - 255.0 * want[k] * 0.25).abs() < 1e-3,
                    "{d:?} vs {want:?}"
                );
                per_channel[k] = d[0];
            }
            assert!(
                per_channel.iter().any(|&x| x.abs() > 1e-4),
                "{per_channel:?}"
            );
            offsets.push(per_channel);
        }
        // Drawn afresh per image and per epoch.
        assert!(offsets.windows(2).all(|w| w[0] != w[1]), "{offsets:?}");
        // Lighting is ignored for single-channel data.
        let gray = Augmenter::new(
            AugmentConfig {
                random_crop: true,
                lighting_sigma: 1.0,
                ..raw(4, 0)
            },
            &square_stats(),
            9,
        )
        .expect("config");
        assert_eq!(gray.params(0, 0).light, [0.0; 3]);
    }

    #[test]
    fn pixel_mean_centres_the_training_set() {
        let (split, stats) = rgb_set();
        let a = Augmenter::new(AugmentConfig::plain(6, 1.0), &stats, 0).expect("config");
        let n = a.out_shape().len();
        let mut sum = vec![0.0f64; n];
        let mut out = vec![0.0; n];
        for i in 0..split.len() {
            a.center_into(split.image(i), &mut out);
            for (s, &o) in sum.iter_mut().zip(&out) {
                *s += o as f64;
            }
        }
        assert!(sum.iter().all(|s| s.abs() < 1e-3), "{sum:?}");
        assert!(out.iter().any(|&v| v.abs() > 1.0));
    }
}
