//! Host memory for the CPU executor's arenas: how much the system has
//! available, and allocation that is refused instead of aborting.
//!
//! Assumes Linux's `/proc/meminfo` for the available figure (`MemAvailable`,
//! what the kernel estimates can be allocated without swapping); elsewhere
//! the figure is unknown and only a failed reservation refuses.
//!
//! Guarantees: [`zeroed`] never aborts the process. It refuses, with the
//! bytes asked for and the bytes available, any request larger than the
//! available memory before allocating anything, and reports a failed
//! reservation the same way.

/// A buffer the host cannot hold.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error(
    "{what} needs {} of memory, and this machine has {} available",
    bytes_text(*bytes),
    available.map_or_else(|| "less than that".to_string(), bytes_text)
)]
pub struct TooLarge {
    pub what: String,
    pub bytes: u64,
    /// `None` when the system does not say.
    pub available: Option<u64>,
}

/// `bytes` with thousands separators and in binary units:
/// `86,608,000,000,384 bytes (78.8 TiB)`.
pub fn bytes_text(bytes: u64) -> String {
    let digits = bytes.to_string();
    let mut grouped = String::new();
    for (i, ch) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            grouped.push(',');
        }
        grouped.push(ch);
    }
    let units = ["KiB", "MiB", "GiB", "TiB", "PiB", "EiB"];
    let mut v = bytes as f64;
    let mut unit = None;
    for u in units {
        if v < 1024.0 {
            break;
        }
        v /= 1024.0;
        unit = Some(u);
    }
    match unit {
        Some(u) => format!("{grouped} bytes ({v:.1} {u})"),
        None => format!("{grouped} bytes"),
    }
}

/// Bytes the system can allocate now, from `/proc/meminfo`'s `MemAvailable`.
pub fn available() -> Option<u64> {
    let text = std::fs::read_to_string("/proc/meminfo").ok()?;
    parse_meminfo(&text)
}

fn parse_meminfo(text: &str) -> Option<u64> {
    let line = text.lines().find(|l| l.starts_with("MemAvailable:"))?;
    let mut words = line.split_whitespace().skip(1);
    let n: u64 = words.next()?.parse().ok()?;
    match words.next() {
        Some("kB") => n.checked_mul(1024),
        None => Some(n),
        Some(_) => None,
    }
}

/// Refuses `bytes` (of `what`) when it exceeds the available memory.
pub fn check_fits(what: &str, bytes: u64) -> Result<(), TooLarge> {
    let available = available();
    match available {
        Some(a) if bytes > a => Err(TooLarge {
            what: what.to_string(),
            bytes,
            available,
        }),
        _ => Ok(()),
    }
}

/// `len` copies of `zero` in a fresh vector, or [`TooLarge`] when the
/// reservation fails (no abort).
pub fn zeroed<T: Copy>(what: &str, len: usize, zero: T) -> Result<Vec<T>, TooLarge> {
    let mut v = Vec::new();
    if v.try_reserve_exact(len).is_err() {
        return Err(TooLarge {
            what: what.to_string(),
            bytes: (len as u64).saturating_mul(std::mem::size_of::<T>() as u64),
            available: available(),
        });
    }
    v.resize(len, zero);
    Ok(v)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn figures_read_well() {
        assert_eq!(bytes_text(12), "12 bytes");
        assert_eq!(bytes_text(2048), "2,048 bytes (2.0 KiB)");
        assert_eq!(
            bytes_text(86_608_000_000_384),
            "86,608,000,000,384 bytes (78.8 TiB)"
        );
    }

    #[test]
    fn meminfo_is_parsed_in_bytes() {
        let t = "MemTotal:       131072 kB\nMemFree:  100 kB\nMemAvailable:   65536 kB\n";
        assert_eq!(parse_meminfo(t), Some(65536 * 1024));
        assert_eq!(parse_meminfo("MemTotal: 1 kB\n"), None);
    }

    #[test]
    fn an_impossible_reservation_is_refused_not_aborted() {
        let e = zeroed::<f32>("test buffer", usize::MAX / 8, 0.0).unwrap_err();
        assert!(e.to_string().starts_with("test buffer needs "), "{e}");
        assert!(zeroed::<f32>("small", 16, 0.0).unwrap().len() == 16);
    }

    #[test]
    fn more_than_available_is_refused() {
        let e = check_fits("step", u64::MAX).unwrap_err();
        assert!(e.to_string().contains("available"), "{e}");
        assert!(check_fits("step", 1).is_ok());
    }
}
