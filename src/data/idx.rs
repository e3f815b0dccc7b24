//! The IDX file format of (Fashion-)MNIST, gzip-compressed or raw.
//!
//! Assumes the unsigned-byte element type (type code 0x08), which is what
//! the image (magic 0x00000803: count × rows × cols) and label (magic
//! 0x00000801: count) files use. Dimensions are big-endian `u32`.
//! Guarantees: a file is accepted only if its magic number is the expected
//! one, no image dimension is zero, and the payload length is exactly the
//! product of the dimensions; anything else (including a truncated or corrupt
//! gzip stream) is a [`DataError`] naming the file. Gzip is recognised by its
//! content (bytes `1f 8b`), not by the file name.

use std::io::{Read, Write};
use std::path::Path;

use super::DataError;

/// Magic number of an IDX file of `u8` images (3 dimensions).
pub const IMAGES_MAGIC: u32 = 0x0000_0803;
/// Magic number of an IDX file of `u8` labels (1 dimension).
pub const LABELS_MAGIC: u32 = 0x0000_0801;

/// Images read from an IDX file: `count` images of `rows × cols` bytes,
/// row-major, one after another.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Images {
    pub count: usize,
    pub rows: usize,
    pub cols: usize,
    pub pixels: Vec<u8>,
}

/// Reads a whole file, decompressing it if it is gzip.
pub fn read_maybe_gz(path: &Path) -> Result<Vec<u8>, DataError> {
    let bytes = std::fs::read(path).map_err(|e| DataError::io(path, e))?;
    gunzip_if_needed(bytes, path)
}

fn gunzip_if_needed(bytes: Vec<u8>, path: &Path) -> Result<Vec<u8>, DataError> {
    if bytes.starts_with(&[0x1f, 0x8b]) {
        let mut out = Vec::with_capacity(bytes.len() * 4);
        flate2::read::GzDecoder::new(&bytes[..])
            .read_to_end(&mut out)
            .map_err(|source| DataError::Gzip {
                path: path.to_path_buf(),
                source,
            })?;
        Ok(out)
    } else {
        Ok(bytes)
    }
}

/// Parses an IDX byte buffer (gzip or raw) whose magic must be `magic`,
/// returning its dimensions and its payload. `path` only names the source in
/// errors.
pub fn parse_idx(
    bytes: &[u8],
    path: &Path,
    magic: u32,
) -> Result<(Vec<usize>, Vec<u8>), DataError> {
    let raw = gunzip_if_needed(bytes.to_vec(), path)?;
    let truncated = |expected: usize| DataError::Truncated {
        path: path.to_path_buf(),
        expected: expected as u64,
        found: raw.len() as u64,
    };
    let be32 = |at: usize| -> Option<u32> {
        let b = raw.get(at..at + 4)?;
        Some(u32::from_be_bytes([b[0], b[1], b[2], b[3]]))
    };
    let found = be32(0).ok_or_else(|| truncated(4))?;
    if found != magic {
        return Err(DataError::BadMagic {
            path: path.to_path_buf(),
            found,
            expected: magic,
        });
    }
    let ndim = (magic & 0xff) as usize;
    let header = 4 + 4 * ndim;
    let mut dims = Vec::with_capacity(ndim);
    for d in 0..ndim {
        dims.push(be32(4 + 4 * d).ok_or_else(|| truncated(header))? as usize);
    }
    if dims.iter().skip(1).any(|&d| d == 0) {
        return Err(DataError::BadDims {
            path: path.to_path_buf(),
            dims,
            reason: "an image dimension is zero",
        });
    }
    let Some(payload) = dims.iter().try_fold(1usize, |acc, &d| acc.checked_mul(d)) else {
        return Err(DataError::BadDims {
            path: path.to_path_buf(),
            dims,
            reason: "the payload size overflows",
        });
    };
    let expected = header + payload;
    if raw.len() < expected {
        return Err(truncated(expected));
    }
    if raw.len() > expected {
        return Err(DataError::TrailingBytes {
            path: path.to_path_buf(),
            expected: expected as u64,
            extra: (raw.len() - expected) as u64,
        });
    }
    let mut raw = raw;
    raw.drain(..header);
    Ok((dims, raw))
}

/// Parses an images file (magic 0x00000803).
pub fn parse_images(bytes: &[u8], path: &Path) -> Result<Images, DataError> {
    let (dims, pixels) = parse_idx(bytes, path, IMAGES_MAGIC)?;
    Ok(Images {
        count: dims[0],
        rows: dims[1],
        cols: dims[2],
        pixels,
    })
}

/// Parses a labels file (magic 0x00000801).
pub fn parse_labels(bytes: &[u8], path: &Path) -> Result<Vec<u32>, DataError> {
    let (_, labels) = parse_idx(bytes, path, LABELS_MAGIC)?;
    Ok(labels.into_iter().map(u32::from).collect())
}

/// Reads an images file from disk.
pub fn read_images(path: &Path) -> Result<Images, DataError> {
    let bytes = std::fs::read(path).map_err(|e| DataError::io(path, e))?;
    parse_images(&bytes, path)
}

/// Reads a labels file from disk.
pub fn read_labels(path: &Path) -> Result<Vec<u32>, DataError> {
    let bytes = std::fs::read(path).map_err(|e| DataError::io(path, e))?;
    parse_labels(&bytes, path)
}

/// Encodes an IDX file of `u8` elements: `magic` (whose low byte must equal
/// `dims.len()`), the dimensions, then `data` (whose length must be their
/// product; checked by `debug_assert`, a caller bug otherwise).
pub fn encode_idx(magic: u32, dims: &[usize], data: &[u8]) -> Vec<u8> {
    debug_assert_eq!((magic & 0xff) as usize, dims.len());
    debug_assert_eq!(dims.iter().product::<usize>(), data.len());
    let mut out = Vec::with_capacity(4 + 4 * dims.len() + data.len());
    out.extend_from_slice(&magic.to_be_bytes());
    for &d in dims {
        out.extend_from_slice(&(d as u32).to_be_bytes());
    }
    out.extend_from_slice(data);
    out
}

/// Writes an IDX file, gzip-compressed (at the best level, with a zero
/// timestamp so the bytes are reproducible) if `gzip`.
pub fn write_idx(
    path: &Path,
    magic: u32,
    dims: &[usize],
    data: &[u8],
    gzip: bool,
) -> Result<(), DataError> {
    let raw = encode_idx(magic, dims, data);
    let bytes = if gzip {
        let mut enc = flate2::GzBuilder::new()
            .mtime(0)
            .write(Vec::new(), flate2::Compression::best());
        enc.write_all(&raw).map_err(|e| DataError::io(path, e))?;
        enc.finish().map_err(|e| DataError::io(path, e))?
    } else {
        raw
    };
    crate::fsio::write_atomic(path, &bytes).map_err(|e| DataError::io(path, e))
}

#[cfg(test)]
mod tests {
    use super::super::testutil::temp_dir;
    use super::*;

    fn sample() -> Images {
        let (count, rows, cols) = (3, 4, 5);
        let pixels = (0..count * rows * cols)
            .map(|i| (i * 7 % 256) as u8)
            .collect();
        Images {
            count,
            rows,
            cols,
            pixels,
        }
    }

    #[test]
    fn round_trip_gzip_and_raw() {
        let dir = temp_dir("idx-roundtrip");
        let im = sample();
        let labels: Vec<u8> = vec![9, 0, 4];
        for gzip in [true, false] {
            let ip = dir.join(format!("im-{gzip}"));
            let lp = dir.join(format!("lab-{gzip}"));
            write_idx(
                &ip,
                IMAGES_MAGIC,
                &[im.count, im.rows, im.cols],
                &im.pixels,
                gzip,
            )
            .expect("write");
            write_idx(&lp, LABELS_MAGIC, &[3], &labels, gzip).expect("write");
            let bytes = std::fs::read(&ip).expect("read back");
            assert_eq!(bytes.starts_with(&[0x1f, 0x8b]), gzip);
            assert_eq!(read_images(&ip).expect("images"), im);
            assert_eq!(read_labels(&lp).expect("labels"), vec![9, 0, 4]);
        }
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn truncated_file_names_the_file() {
        let dir = temp_dir("idx-truncated");
        let im = sample();
        // Raw file missing its last byte.
        let raw = encode_idx(IMAGES_MAGIC, &[3, 4, 5], &im.pixels);
        let p = dir.join("short-images-idx3-ubyte");
        std::fs::write(&p, &raw[..raw.len() - 1]).expect("write");
        let err = read_images(&p).expect_err("truncated");
        assert!(
            matches!(
                err,
                DataError::Truncated {
                    expected: 76,
                    found: 75,
                    ..
                }
            ),
            "{err:?}"
        );
        assert!(err.to_string().contains("short-images-idx3-ubyte"), "{err}");
        // Truncated inside the header.
        std::fs::write(&p, &raw[..6]).expect("write");
        let err = read_images(&p).expect_err("truncated header");
        assert!(
            matches!(
                err,
                DataError::Truncated {
                    expected: 16,
                    found: 6,
                    ..
                }
            ),
            "{err:?}"
        );
        // A gzip stream cut in half.
        let gz = dir.join("short-images-idx3-ubyte.gz");
        write_idx(&gz, IMAGES_MAGIC, &[3, 4, 5], &im.pixels, true).expect("write");
        let bytes = std::fs::read(&gz).expect("read");
        std::fs::write(&gz, &bytes[..bytes.len() / 2]).expect("write");
        let err = read_images(&gz).expect_err("truncated gzip");
        assert!(
            err.to_string().contains("short-images-idx3-ubyte.gz"),
            "{err}"
        );
        // Extra bytes after the payload.
        let mut long = raw.clone();
        long.push(0);
        std::fs::write(&p, &long).expect("write");
        let err = read_images(&p).expect_err("trailing byte");
        assert!(
            matches!(err, DataError::TrailingBytes { extra: 1, .. }),
            "{err:?}"
        );
        // A missing file is an I/O error naming it.
        let err = read_images(&dir.join("nope.gz")).expect_err("missing");
        assert!(matches!(err, DataError::Io { .. }) && err.to_string().contains("nope.gz"));
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn bad_magic_is_rejected() {
        let im = sample();
        let p = Path::new("some/labels-file");
        // An images file where labels are expected, and vice versa.
        let raw = encode_idx(IMAGES_MAGIC, &[3, 4, 5], &im.pixels);
        let err = parse_labels(&raw, p).expect_err("wrong magic");
        assert!(
            matches!(
                err,
                DataError::BadMagic {
                    found: 0x803,
                    expected: 0x801,
                    ..
                }
            ),
            "{err:?}"
        );
        assert!(err.to_string().contains("some/labels-file"), "{err}");
        let raw = encode_idx(LABELS_MAGIC, &[3], &[1, 2, 3]);
        assert!(matches!(
            parse_images(&raw, p),
            Err(DataError::BadMagic { .. })
        ));
        // A little-endian magic (a common mistake) is rejected too.
        let mut raw = encode_idx(LABELS_MAGIC, &[3], &[1, 2, 3]);
        raw[..4].copy_from_slice(&LABELS_MAGIC.to_le_bytes());
        assert!(matches!(
            parse_labels(&raw, p),
            Err(DataError::BadMagic { .. })
        ));
        // Zero-sized images.
        let raw = encode_idx(IMAGES_MAGIC, &[2, 0, 5], &[]);
        assert!(matches!(
            parse_images(&raw, p),
            Err(DataError::BadDims { .. })
        ));
    }
}
