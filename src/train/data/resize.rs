//! The resize of the paper's preparation: a square of an RGB image to
//! `size × size`, with a Catmull-Rom filter (fast_image_resize: separable
//! fixed-point convolution, SIMD where the CPU has it).
//!
//! Assumes a square that lies inside the image, with non-zero sides.
//! Guarantees: deterministic on a machine (the same input gives the same
//! pixels on every run and at every thread count); the filter support
//! scales with the shrink factor, so shrinking low-passes.
//! Should the library refuse (it cannot for these inputs), the image
//! crate's own Catmull-Rom resize is used instead.

use fast_image_resize::images::Image;
use fast_image_resize::{FilterType, PixelType, ResizeAlg, ResizeOptions, Resizer};
use image::RgbImage;
use image::imageops;

/// The square `(x0, y0, side)` of `rgb`, resized to `size × size`.
pub fn catmull_rom(rgb: &RgbImage, (x0, y0, side): (u32, u32, u32), size: u32) -> RgbImage {
    // The square is cut out first, so that the filter sees only its pixels
    // (edges clamped), as if the image had been cropped, then resized.
    let square = imageops::crop_imm(rgb, x0, y0, side, side).to_image();
    let fast = || -> Option<RgbImage> {
        let src = Image::from_vec_u8(side, side, square.as_raw().clone(), PixelType::U8x3).ok()?;
        let mut dst = Image::new(size, size, PixelType::U8x3);
        let opts = ResizeOptions::new().resize_alg(ResizeAlg::Convolution(FilterType::CatmullRom));
        Resizer::new().resize(&src, &mut dst, &opts).ok()?;
        RgbImage::from_raw(size, size, dst.into_vec())
    };
    fast()
        .unwrap_or_else(|| imageops::resize(&square, size, size, imageops::FilterType::CatmullRom))
}
