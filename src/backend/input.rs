//! Plain input types a backend takes from whoever feeds it: batches before
//! augmentation, the host's per-crop draws, and what a device needs to
//! augment them itself. Data only: how batches are loaded, shuffled and
//! drawn is the training side's business (`data`).

/// The random choices for one crop of one image in one epoch.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Draw {
    /// Crop offset in padded coordinates, `0..=h + 2·pad − crop`.
    pub oy: usize,
    pub ox: usize,
    pub mirror: bool,
    /// Lighting offset per channel, [0,1] units (zero if disabled).
    pub light: [f32; 3],
}

/// One batch of raw images and their augmentation draws.
#[derive(Clone, Debug, PartialEq)]
pub struct RawBatch {
    pub epoch: u64,
    pub index: usize,
    /// `[N, C, H, W]` `u8` images, CHW each (`N` counts crops).
    pub images: Vec<u8>,
    /// The draws for each of the `N` crops.
    pub params: Vec<Draw>,
    /// `[N / crops per image]` labels.
    pub labels: Vec<u32>,
    /// Which images of the split the batch holds, in order.
    pub indices: Vec<usize>,
}

/// What a backend needs to augment raw batches as the host would: the
/// input image shape, the square crop, the padding, the scale, and the
/// mean image subtracted (zeros when the mean is not subtracted).
#[derive(Clone, Debug, PartialEq)]
pub struct AugmentPlan {
    /// Input image `C × H × W`.
    pub c: usize,
    pub h: usize,
    pub w: usize,
    /// Side of the square output crop.
    pub crop: usize,
    /// Zero padding on every side.
    pub pad: usize,
    /// Multiplies the mean-subtracted value.
    pub scale: f32,
    /// `C × H × W` values subtracted before scaling.
    pub mean: Vec<f32>,
}
