//! NumPy `.npy` files of `float32`, read and written: what `netc run`
//! takes and gives (`np.save` / `np.load` of a C-ordered float32 array).
//!
//! Written by hand: the format is a magic string, a version, a header
//! length and a Python dict literal (`{'descr': '<f4', 'fortran_order':
//! False, 'shape': (2, 3), }`) padded to 64 bytes, then the raw values; a
//! crate would add a dependency for about a hundred lines, and
//! `train::predictions` already writes its own `.npy` this way.
//!
//! Reading assumes nothing of the bytes: versions 1.0, 2.0 and 3.0, `<f4`
//! (or `<f8`, converted), C order, a shape of at most 8 dims whose product
//! is the number of values the file holds; anything else is an error that
//! says what the file has. Writing gives version 1.0, `<f4`, C order.

/// The most values a `.npy` file read here may hold.
pub const MAX_VALUES: u64 = 1 << 31;

/// A `.npy` file's shape and values (as `float32`).
pub fn read_f32(bytes: &[u8]) -> Result<(Vec<usize>, Vec<f32>), String> {
    if bytes.len() < 10 || &bytes[..6] != b"\x93NUMPY" {
        return Err("not a NumPy .npy file (no \\x93NUMPY magic)".into());
    }
    let (len, start) = match bytes[6] {
        1 => (u16::from_le_bytes([bytes[8], bytes[9]]) as usize, 10usize),
        2 | 3 if bytes.len() >= 12 => (
            u32::from_le_bytes([bytes[8], bytes[9], bytes[10], bytes[11]]) as usize,
            12,
        ),
        v => return Err(format!(".npy version {v} is not 1, 2 or 3")),
    };
    let header = bytes
        .get(start..start.saturating_add(len))
        .ok_or("the .npy header is longer than the file")?;
    let header = std::str::from_utf8(header).map_err(|_| "the .npy header is not text")?;
    let field = |key: &str| -> Result<&str, String> {
        let at = header
            .find(&format!("'{key}'"))
            .ok_or_else(|| format!("the .npy header has no '{key}'"))?;
        let rest = header[at + key.len() + 2..].trim_start();
        Ok(rest.strip_prefix(':').unwrap_or(rest).trim_start())
    };
    let descr = field("descr")?;
    let width = if descr.starts_with("'<f4'") || descr.starts_with("'float32'") {
        4
    } else if descr.starts_with("'<f8'") || descr.starts_with("'float64'") {
        8
    } else {
        let end = descr.find([',', '}']).unwrap_or(descr.len()).min(20);
        return Err(format!(
            "the .npy file holds {}, not little-endian float32 ('<f4') or float64",
            &descr[..end]
        ));
    };
    if field("fortran_order")?.starts_with("True") {
        return Err("the .npy file is in Fortran order; save a C-ordered array".into());
    }
    let shape = field("shape")?;
    let inner = shape
        .strip_prefix('(')
        .and_then(|s| s.split(')').next())
        .ok_or("the .npy shape is not a tuple")?;
    let dims: Vec<usize> = inner
        .split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(|s| {
            s.parse::<usize>()
                .map_err(|_| format!("the .npy shape ({inner}) is not a tuple of numbers"))
        })
        .collect::<Result<_, _>>()?;
    if dims.len() > 8 {
        return Err(format!("the .npy shape ({inner}) has more than 8 dims"));
    }
    let count = dims
        .iter()
        .try_fold(1u64, |a, &d| a.checked_mul(d as u64))
        .filter(|&n| n <= MAX_VALUES)
        .ok_or_else(|| format!("the .npy shape ({inner}) holds more than {MAX_VALUES} values"))?;
    let data = &bytes[start + len..];
    if data.len() as u64 != count * width as u64 {
        return Err(format!(
            "the .npy file has {} bytes of data for shape ({inner}) ({count} values of {width} bytes)",
            data.len()
        ));
    }
    let v = if width == 4 {
        data.chunks_exact(4)
            .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
            .collect()
    } else {
        data.chunks_exact(8)
            .map(|c| f64::from_le_bytes(c.try_into().unwrap_or([0; 8])) as f32)
            .collect()
    };
    Ok((dims, v))
}

/// A `.npy` file (version 1.0, `<f4`, C order) of `values` in `dims`.
pub fn write_f32(dims: &[usize], values: &[f32]) -> Vec<u8> {
    let shape = match dims {
        [d] => format!("({d},)"),
        d => format!(
            "({})",
            d.iter()
                .map(|x| x.to_string())
                .collect::<Vec<_>>()
                .join(", ")
        ),
    };
    let mut header = format!("{{'descr': '<f4', 'fortran_order': False, 'shape': {shape}, }}");
    // Magic (6) + version (2) + length (2) + header + newline: a multiple of 64.
    while (10 + header.len() + 1) % 64 != 0 {
        header.push(' ');
    }
    header.push('\n');
    let mut out = Vec::with_capacity(10 + header.len() + 4 * values.len());
    out.extend_from_slice(b"\x93NUMPY\x01\x00");
    out.extend_from_slice(&(header.len() as u16).to_le_bytes());
    out.extend_from_slice(header.as_bytes());
    for v in values {
        out.extend_from_slice(&v.to_le_bytes());
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn written_files_read_back_and_bad_ones_are_refused() {
        for dims in [vec![], vec![3], vec![2, 3], vec![1, 2, 2, 1]] {
            let n: usize = dims.iter().product();
            let v: Vec<f32> = (0..n).map(|i| i as f32 * 0.5 - 1.0).collect();
            let b = write_f32(&dims, &v);
            assert_eq!(b.len() % 64, (4 * n) % 64);
            assert_eq!(read_f32(&b).unwrap(), (dims.clone(), v));
        }
        let good = write_f32(&[2, 2], &[1.0, 2.0, 3.0, 4.0]);
        assert!(
            read_f32(&good[..good.len() - 1])
                .unwrap_err()
                .contains("bytes of data")
        );
        assert!(
            read_f32(b"PK\x03\x04 not npy")
                .unwrap_err()
                .contains("magic")
        );
        let edited = |from: &[u8], to: &[u8]| {
            let mut b = good.clone();
            let at = b.windows(from.len()).position(|w| w == from).unwrap();
            b[at..at + from.len()].copy_from_slice(to);
            b
        };
        assert!(
            read_f32(&edited(b"<f4", b"<i4"))
                .unwrap_err()
                .contains("'<i4'")
        );
        assert!(
            read_f32(&edited(b"False", b"True "))
                .unwrap_err()
                .contains("Fortran")
        );
    }
}
