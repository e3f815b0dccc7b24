//! JPEG records of a prepared dataset: `u8` CHW pixels to one baseline
//! JPEG and back.
//!
//! Assumes images of a known [`Shape`] with 3 channels. Guarantees:
//! encoding (jpeg-encoder, AVX2 where the CPU has it; 4:2:0 chroma, as
//! libjpeg's default and FFCV's) is deterministic (the same pixels and
//! quality always give the same bytes); decoding (zune-jpeg, SIMD where the CPU has it) gives RGB
//! whatever colour space the JPEG holds, and fails with a message, never
//! a panic, on bytes that are not a JPEG of exactly the expected size.

use std::cell::RefCell;

use zune_core::bytestream::ZCursor;
use zune_core::colorspace::ColorSpace;
use zune_core::options::DecoderOptions;

use super::Shape;

thread_local! {
    /// Interleaved RGB scratch, one per worker thread.
    static HWC: RefCell<Vec<u8>> = const { RefCell::new(Vec::new()) };
}

/// Encodes `chw` (`shape.len()` bytes, 3 channels) as a JPEG of `quality`
/// (1..=100).
pub fn encode_chw(chw: &[u8], shape: Shape, quality: u8) -> Result<Vec<u8>, String> {
    if shape.c != 3 || chw.len() != shape.len() {
        return Err(format!("cannot encode {shape:?} pixels as an RGB JPEG"));
    }
    let plane = shape.h * shape.w;
    let mut hwc = vec![0u8; chw.len()];
    for (i, px) in hwc.chunks_exact_mut(3).enumerate() {
        px[0] = chw[i];
        px[1] = chw[plane + i];
        px[2] = chw[2 * plane + i];
    }
    let (w, h) = match (u16::try_from(shape.w), u16::try_from(shape.h)) {
        (Ok(w), Ok(h)) => (w, h),
        _ => return Err(format!("{shape:?} is too large for a JPEG")),
    };
    let mut out = Vec::with_capacity(plane / 2);
    let mut enc = jpeg_encoder::Encoder::new(&mut out, quality.clamp(1, 100));
    enc.set_sampling_factor(jpeg_encoder::SamplingFactor::F_2_2);
    enc.encode(&hwc, w, h, jpeg_encoder::ColorType::Rgb)
        .map_err(|e| e.to_string())?;
    Ok(out)
}

/// Decodes a JPEG of exactly `shape` (3 channels) into `out` as CHW.
pub fn decode_chw(bytes: &[u8], shape: Shape, out: &mut [u8]) -> Result<(), String> {
    if shape.c != 3 || out.len() != shape.len() {
        return Err(format!("cannot decode into {shape:?} pixels"));
    }
    let options = DecoderOptions::default()
        .set_strict_mode(false)
        .jpeg_set_out_colorspace(ColorSpace::RGB);
    let mut dec = zune_jpeg::JpegDecoder::new_with_options(ZCursor::new(bytes), options);
    dec.decode_headers().map_err(|e| e.to_string())?;
    let (w, h) = dec.dimensions().ok_or("no dimensions in the JPEG header")?;
    if (h, w) != (shape.h, shape.w) {
        return Err(format!(
            "the JPEG is {w}x{h}, the dataset's images {}x{}",
            shape.w, shape.h
        ));
    }
    let plane = shape.h * shape.w;
    HWC.with(|cell| {
        let mut hwc = cell.borrow_mut();
        hwc.resize(3 * plane, 0);
        dec.decode_into(&mut hwc).map_err(|e| e.to_string())?;
        let (r, rest) = out.split_at_mut(plane);
        let (g, b) = rest.split_at_mut(plane);
        for (i, px) in hwc.chunks_exact(3).enumerate() {
            r[i] = px[0];
            g[i] = px[1];
            b[i] = px[2];
        }
        Ok(())
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_is_close_and_deterministic() {
        let shape = Shape::new(3, 32, 40);
        let chw: Vec<u8> = (0..shape.len())
            .map(|i| {
                let (k, p) = (i / (32 * 40), i % (32 * 40));
                ((p % 40) * 4 + (p / 40) * 2 + k * 30) as u8
            })
            .collect();
        let a = encode_chw(&chw, shape, 95).expect("encode");
        assert_eq!(a, encode_chw(&chw, shape, 95).expect("encode"));
        assert!(a[..2] == [0xff, 0xd8], "a JPEG");
        let mut back = vec![0u8; shape.len()];
        decode_chw(&a, shape, &mut back).expect("decode");
        let err: f64 = chw
            .iter()
            .zip(&back)
            .map(|(&x, &y)| (x as f64 - y as f64).abs())
            .sum::<f64>()
            / chw.len() as f64;
        assert!(err < 3.0, "mean abs error {err}");
        // Wrong size, garbage, truncation: errors, not panics.
        let wrong = Shape::new(3, 40, 32);
        assert!(decode_chw(&a, wrong, &mut back).is_err());
        assert!(decode_chw(b"not a jpeg", shape, &mut back).is_err());
        // A truncated stream may decode (grey tail) or fail; it must not panic.
        let _ = decode_chw(&a[..a.len() / 3], shape, &mut back);
    }
}
