//! `netc eval --predictions OUT`: one row per test image (its index, where
//! it came from, its label, the predicted class and every logit), as CSV,
//! or as a structured NumPy `.npy` array when `OUT` ends in `.npy`.
//!
//! Assumes rows in test-set order, each with `crops × classes` logits (one
//! crop, or the paper's ten crops in the order of
//! `Augmenter::ten_crop_params`). Guarantees:
//!
//! - **Exact logits.** CSV writes each `f32` in its shortest form that
//!   reads back to the same value; `.npy` stores the little-endian `f32`
//!   bytes themselves.
//! - **The predicted class** is the one of highest probability: of the
//!   logits for a centre crop, of the ten crops' softmax outputs averaged
//!   for ten crops (as evaluation scores them), the lowest class id on a
//!   tie. Evaluation counts a tie for first place against the label, so
//!   the fraction of rows whose `predicted` differs from `label` is the
//!   top-1 error `eval` prints whenever no row has a tie (a trained
//!   network's logits practically never do).
//! - **Atomic.** The file is written whole through a temporary file and a
//!   rename (`fsio::write_atomic`): a failed write leaves any earlier
//!   file as it was.
//!
//! CSV: a header `index,source,label,label_name,predicted,predicted_name,`
//! then `logit_<k>` for each class `k` (ten crops: `crop<c>_logit_<k>`,
//! crop-major), one line per image; a field holding a comma, a quote or
//! a line break is quoted, quotes doubled. `.npy` (format 1.0, no pickle):
//! shape `(images,)`, one record per image with fields `index` (`<i8`),
//! `source` (`<U<n>`, n the longest source), `label` and `predicted`
//! (`<i4`), and `logits` (`<f4`, shape `(classes,)`, or `(10, classes)`
//! for ten crops); class names are not in the array (the checkpoint and
//! the CSV hold them).

use std::path::Path;

use super::error::TrainError;

/// One test image's row.
#[derive(Clone, Debug, PartialEq)]
pub struct Row {
    /// Its index in the test split.
    pub index: usize,
    /// Its file's path, where known, else its index.
    pub source: String,
    pub label: u32,
    pub predicted: u32,
    /// `crops × classes` logits, crop-major.
    pub logits: Vec<f32>,
}

/// The rows of an evaluation and what they need to be read.
#[derive(Clone, Debug, PartialEq)]
pub struct Table {
    /// Class names by class id (`class <k>` where unknown).
    pub classes: Vec<String>,
    /// Crops per image: 1 or 10.
    pub crops: usize,
    pub rows: Vec<Row>,
}

/// The class of highest probability (see the module documentation) from
/// `crops × classes` logits.
pub fn predicted(logits: &[f32], classes: usize) -> u32 {
    let crops = logits.len() / classes.max(1);
    let first_max = |v: &mut dyn Iterator<Item = f64>| {
        let mut best = (0usize, f64::NEG_INFINITY);
        for (k, x) in v.enumerate() {
            if x > best.1 {
                best = (k, x);
            }
        }
        best.0 as u32
    };
    if crops == 1 {
        first_max(&mut logits.iter().map(|&v| v as f64))
    } else {
        first_max(&mut super::ten_crop::probabilities(logits, classes).into_iter())
    }
}

fn csv_field(s: &str) -> String {
    if s.contains([',', '"', '\n', '\r']) {
        format!("\"{}\"", s.replace('"', "\"\""))
    } else {
        s.to_string()
    }
}

impl Table {
    fn width(&self) -> usize {
        self.classes.len()
    }

    fn name(&self, k: u32) -> String {
        self.classes
            .get(k as usize)
            .cloned()
            .unwrap_or_else(|| format!("class {k}"))
    }

    /// The CSV text (see the module documentation).
    pub fn csv(&self) -> String {
        let k = self.width();
        let mut out = String::from("index,source,label,label_name,predicted,predicted_name");
        for c in 0..self.crops {
            for j in 0..k {
                if self.crops == 1 {
                    out.push_str(&format!(",logit_{j}"));
                } else {
                    out.push_str(&format!(",crop{c}_logit_{j}"));
                }
            }
        }
        out.push('\n');
        for r in &self.rows {
            out.push_str(&format!(
                "{},{},{},{},{},{}",
                r.index,
                csv_field(&r.source),
                r.label,
                csv_field(&self.name(r.label)),
                r.predicted,
                csv_field(&self.name(r.predicted))
            ));
            for v in &r.logits {
                // Display prints the shortest text that reads back to `v`.
                out.push(',');
                out.push_str(&v.to_string());
            }
            out.push('\n');
        }
        out
    }

    /// The `.npy` bytes (see the module documentation).
    pub fn npy(&self) -> Vec<u8> {
        let k = self.width();
        let n = self
            .rows
            .iter()
            .map(|r| r.source.chars().count())
            .max()
            .unwrap_or(0)
            .max(1);
        let logits = if self.crops == 1 {
            format!("({k},)")
        } else {
            format!("({}, {k})", self.crops)
        };
        let mut header = format!(
            "{{'descr': [('index', '<i8'), ('source', '<U{n}'), ('label', '<i4'), ('predicted', '<i4'), ('logits', '<f4', {logits})], 'fortran_order': False, 'shape': ({},), }}",
            self.rows.len()
        );
        // Magic (6) + version (2) + length (2) + header + '\n', padded to 64.
        let unpadded = 10 + header.len() + 1;
        header.push_str(&" ".repeat((64 - unpadded % 64) % 64));
        header.push('\n');
        let mut out = Vec::new();
        out.extend_from_slice(b"\x93NUMPY\x01\x00");
        out.extend_from_slice(&(header.len() as u16).to_le_bytes());
        out.extend_from_slice(header.as_bytes());
        for r in &self.rows {
            out.extend_from_slice(&(r.index as i64).to_le_bytes());
            let mut chars = r.source.chars();
            for _ in 0..n {
                let c = chars.next().map_or(0, |c| c as u32);
                out.extend_from_slice(&c.to_le_bytes());
            }
            out.extend_from_slice(&(r.label as i32).to_le_bytes());
            out.extend_from_slice(&(r.predicted as i32).to_le_bytes());
            for v in &r.logits {
                out.extend_from_slice(&v.to_le_bytes());
            }
        }
        out
    }

    /// The fraction of rows whose predicted class is not their label,
    /// computed as evaluation computes its top-1 error (one minus the
    /// fraction right), so the two are the same `f64` when no row has a tie.
    pub fn top1_error(&self) -> f64 {
        let right = self.rows.iter().filter(|r| r.predicted == r.label).count();
        1.0 - right as f64 / self.rows.len().max(1) as f64
    }

    /// Writes the table to `path` atomically: `.npy` if its name ends so,
    /// CSV otherwise.
    pub fn write(&self, path: &Path) -> Result<(), TrainError> {
        let npy = path
            .extension()
            .is_some_and(|e| e.eq_ignore_ascii_case("npy"));
        let bytes = if npy {
            self.npy()
        } else {
            self.csv().into_bytes()
        };
        crate::fsio::write_atomic(path, &bytes).map_err(|source| TrainError::Io {
            path: path.to_path_buf(),
            source,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn table(crops: usize) -> Table {
        let classes = vec!["a".to_string(), "b, \"c\"".to_string(), "d".to_string()];
        let logits: Vec<f32> = (0..3 * crops)
            .map(|i| (i as f32 * 0.37).sin() / 3.0)
            .collect();
        Table {
            classes,
            crops,
            rows: vec![Row {
                index: 4,
                source: "dir/x,y.png".into(),
                label: 1,
                predicted: predicted(&logits, 3),
                logits,
            }],
        }
    }

    #[test]
    fn csv_reads_back_exactly_and_quotes_what_needs_it() {
        let t = table(1);
        let text = t.csv();
        let mut lines = text.lines();
        assert_eq!(
            lines.next().unwrap(),
            "index,source,label,label_name,predicted,predicted_name,logit_0,logit_1,logit_2"
        );
        let row = lines.next().unwrap();
        assert!(
            row.starts_with("4,\"dir/x,y.png\",1,\"b, \"\"c\"\"\","),
            "{row}"
        );
        let back: Vec<f32> = row
            .rsplitn(4, ',')
            .take(3)
            .map(|v| v.parse().unwrap())
            .collect::<Vec<_>>()
            .into_iter()
            .rev()
            .collect();
        assert_eq!(back, t.rows[0].logits);
        assert!(table(10).csv().starts_with(
            "index,source,label,label_name,predicted,predicted_name,crop0_logit_0,crop0_logit_1"
        ));
    }

    #[test]
    fn npy_header_is_aligned_and_records_hold_the_bytes() {
        for crops in [1, 10] {
            let t = table(crops);
            let b = t.npy();
            assert_eq!(&b[..8], b"\x93NUMPY\x01\x00");
            let hl = u16::from_le_bytes([b[8], b[9]]) as usize;
            assert_eq!((10 + hl) % 64, 0);
            let header = std::str::from_utf8(&b[10..10 + hl]).unwrap();
            assert!(
                header.ends_with('\n') && header.contains("'<U11'"),
                "{header}"
            );
            let rec = 8 + 4 * 11 + 4 + 4 + 4 * 3 * crops;
            assert_eq!(b.len(), 10 + hl + rec);
            let logits = &b[b.len() - 4 * 3 * crops..];
            let back: Vec<f32> = logits
                .chunks_exact(4)
                .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
                .collect();
            assert_eq!(back, t.rows[0].logits);
        }
    }

    #[test]
    fn the_predicted_class_follows_the_averaged_probabilities() {
        assert_eq!(predicted(&[0.0, 2.0, 2.0], 3), 1, "first of a tie");
        // Ten crops: one crop strongly for class 0, nine mildly for class 1.
        let mut z = vec![0f32; 30];
        z[0] = 50.0;
        for c in 1..10 {
            z[3 * c + 1] = 0.5;
        }
        assert_eq!(predicted(&z, 3), 1);
        z[0] = 0.0;
        z[1] = 0.0;
        assert_eq!(predicted(&z, 3), 1);
    }
}
