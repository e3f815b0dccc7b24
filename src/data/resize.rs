//! The resize of the paper's preparation: a whole RGB image to a given
//! size, with a Catmull-Rom filter (fast_image_resize: separable
//! fixed-point convolution, SIMD where the CPU has it).
//!
//! Assumes non-zero sides. Guarantees: deterministic on a machine (the
//! same input gives the same pixels on every run and at every thread
//! count); the filter support scales with the shrink factor, so shrinking
//! low-passes; pixels near an edge see the image's pixels, edges clamped.
//! Should the library refuse (it cannot for these inputs), the image
//! crate's own Catmull-Rom resize is used instead.

use fast_image_resize::images::Image;
use fast_image_resize::{FilterType, PixelType, ResizeAlg, ResizeOptions, Resizer};
use image::RgbImage;
use image::imageops;

/// `rgb` resized to `width × height`.
pub fn catmull_rom(rgb: &RgbImage, width: u32, height: u32) -> RgbImage {
    let fast = || -> Option<RgbImage> {
        let src = Image::from_vec_u8(
            rgb.width(),
            rgb.height(),
            rgb.as_raw().clone(),
            PixelType::U8x3,
        )
        .ok()?;
        let mut dst = Image::new(width, height, PixelType::U8x3);
        let opts = ResizeOptions::new().resize_alg(ResizeAlg::Convolution(FilterType::CatmullRom));
        Resizer::new().resize(&src, &mut dst, &opts).ok()?;
        RgbImage::from_raw(width, height, dst.into_vec())
    };
    fast().unwrap_or_else(|| imageops::resize(rgb, width, height, imageops::FilterType::CatmullRom))
}
