//! Checkpoints: every parameter and optimiser buffer of a run, plus where
//! the run stands (epoch, batch, step, schedule state, running sums), in one
//! safetensors file. Written atomically (temporary file, fsync, rename; the
//! temporary file is removed when a write fails), so a crash, a full disk or
//! Ctrl-C never leaves a half-written checkpoint in place of the last good
//! one. The metadata is one `netc` entry (so the header, and the whole file,
//! is the same bytes for the same run) holding the network, its
//! fingerprint, the progress, the input preparation and class names
//! ([`Preparation`], whose mean image is the tensor
//! `preparation/mean_image`), a CRC-32 of every tensor's bytes, and, as
//! its first field, `header_crc32`: a CRC-32 of the whole safetensors
//! header (its length, its JSON text and padding) except those 8 hex
//! digits themselves. So every byte of the file is covered: the header by
//! `header_crc32`, each tensor by its own CRC, and safetensors itself
//! requires the tensors to tile the data exactly.
//! A checkpoint written without a preparation (before netc stored one)
//! loads with `preparation: None`; one written before `header_crc32`
//! existed loads with its tensors checked but its header unchecked.
//! Reading checks the header's checksum, the network fingerprint, every
//! tensor's name, dtype, size and checksum, and that every value is
//! finite; a truncated or corrupt file, a flipped byte anywhere (an edited
//! progress entry included), or a NaN or infinite weight is an error
//! naming the file (and the tensor).

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};

use safetensors::tensor::{Dtype, SafeTensors, TensorView};

use crate::model::preparation::{MEAN_TENSOR, Preparation};

#[derive(Debug, thiserror::Error)]
pub enum CheckpointError {
    #[error("cannot read checkpoint `{path}`: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("cannot write checkpoint `{path}`: {source}")]
    Write {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("`{path}` is not a valid checkpoint: {reason}")]
    Corrupt { path: PathBuf, reason: String },
    #[error("checkpoint `{path}` was written for a different network ({found}), not `{expected}`")]
    Mismatch {
        path: PathBuf,
        expected: String,
        found: String,
    },
    #[error(
        "checkpoint `{path}` holds no input preparation (class names, crop, mean image): it was written before netc stored them; give `--data` with the data it was trained on, or train it again"
    )]
    NoPreparation { path: PathBuf },
}

/// Where a run stands; everything needed to continue it exactly.
#[derive(Clone, Debug, Default, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Progress {
    /// The epoch in progress (0-based).
    pub epoch: u64,
    /// The next batch of that epoch.
    pub batch: u64,
    /// Steps taken since the start of training (keys dropout masks).
    pub step: u64,
    pub seed: u64,
    /// Examples per step: a run resumes only with the batch it was trained
    /// with (0 in a checkpoint written before it was recorded: not checked).
    #[serde(default)]
    pub batch_size: u64,
    /// Plateau schedule state.
    pub plateau_lr: f64,
    /// The best validation error so far; `None` before the first epoch.
    pub plateau_best: Option<f64>,
    pub plateau_since: u64,
    pub plateau_drops: u64,
    /// Running sums of the epoch in progress.
    pub loss_sum: f64,
    pub seen: u64,
    /// Training examples of the epoch in progress that the step classified
    /// correctly (top-1); 0 in a checkpoint written before it was recorded.
    #[serde(default)]
    pub top1_seen: u64,
    /// The settings a resume takes unless told otherwise; `None` in a
    /// checkpoint written before they were recorded.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub settings: Option<RunSettings>,
}

/// What a run was started with beyond the network file and the seed and
/// batch (which [`Progress`] holds): `netc train --resume` continues with
/// them unless the command line gives others.
#[derive(Clone, Debug, Default, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct RunSettings {
    pub epochs: u64,
    /// `--max-steps`: steps per epoch at most.
    pub max_steps: Option<u64>,
    /// `--data`, made absolute; `None`: the default data.
    pub data: Option<String>,
}

/// A fingerprint of the training graph: checkpoints only load into the
/// network that wrote them.
pub fn fingerprint(graph_text: &str) -> String {
    format!("{:016x}", crate::rng::stream_of(graph_text))
}

/// Writes `tensors` (name, shape, values), `progress` and the run's
/// `preparation` (its mean image as one more tensor) to `path` atomically.
pub fn save(
    path: &Path,
    network: &str,
    fingerprint: &str,
    progress: &Progress,
    preparation: Option<&Preparation>,
    tensors: &[(String, Vec<usize>, &[f32])],
) -> Result<(), CheckpointError> {
    let data = encode(path, network, fingerprint, progress, preparation, tensors)?;
    let werr = |source| CheckpointError::Write {
        path: path.to_path_buf(),
        source,
    };
    let dir = path
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    std::fs::create_dir_all(dir).map_err(werr)?;
    crate::fsio::write_atomic(path, &data).map_err(werr)
}

/// The bytes [`save`] writes to `path` (named in its errors), for a caller
/// that writes them together with other files (`fsio::Staged`).
pub fn encode(
    path: &Path,
    network: &str,
    fingerprint: &str,
    progress: &Progress,
    preparation: Option<&Preparation>,
    tensors: &[(String, Vec<usize>, &[f32])],
) -> Result<Vec<u8>, CheckpointError> {
    let werr = |source| CheckpointError::Write {
        path: path.to_path_buf(),
        source,
    };
    let mut all: Vec<(String, Vec<usize>, &[f32])> = tensors.to_vec();
    if let Some(p) = preparation {
        all.push((
            MEAN_TENSOR.to_string(),
            vec![p.channels, p.height, p.width],
            &p.mean_image,
        ));
    }
    let tensors = &all[..];
    let bytes: Vec<Vec<u8>> = tensors
        .iter()
        .map(|(_, _, v)| v.iter().flat_map(|x| x.to_le_bytes()).collect())
        .collect();
    let mut views = Vec::with_capacity(tensors.len());
    for ((name, shape, _), b) in tensors.iter().zip(&bytes) {
        let view = TensorView::new(Dtype::F32, shape.clone(), b)
            .map_err(|e| werr(std::io::Error::other(e.to_string())))?;
        views.push((name.clone(), view));
    }
    let header = Header {
        header_crc32: Some(CRC_PLACEHOLDER.to_string()),
        network: network.to_string(),
        fingerprint: fingerprint.to_string(),
        progress: progress.clone(),
        preparation: preparation.cloned(),
        crc32: tensors
            .iter()
            .zip(&bytes)
            .map(|((name, _, _), b)| (name.clone(), crc32fast::hash(b)))
            .collect(),
    };
    let header =
        serde_json::to_string(&header).map_err(|e| werr(std::io::Error::other(e.to_string())))?;
    let meta = HashMap::from([(META_KEY.to_string(), header)]);
    let mut data = safetensors::serialize(views, Some(meta))
        .map_err(|e| werr(std::io::Error::other(e.to_string())))?;
    stamp_header_crc(&mut data).map_err(|e| werr(std::io::Error::other(e)))?;
    Ok(data)
}

/// The one metadata entry of a checkpoint.
const META_KEY: &str = "netc";

/// What the raw header starts with when it carries `header_crc32`: the one
/// metadata entry comes first, and `header_crc32` is its first field.
const CRC_PREFIX: &[u8] = br#"{"__metadata__":{"netc":"{\"header_crc32\":\""#;
/// The value `header_crc32` holds while the checksum is computed.
const CRC_PLACEHOLDER: &str = "00000000";

/// Where the 8 hex digits of `header_crc32` lie in a checkpoint's bytes and
/// where its header ends; `None` if the header does not start with
/// [`CRC_PREFIX`] (or is cut short).
fn crc_digits(data: &[u8]) -> Option<(usize, usize)> {
    let n = u64::from_le_bytes(data.get(..8)?.try_into().ok()?);
    let end = usize::try_from(n).ok()?.checked_add(8)?;
    let at = 8 + CRC_PREFIX.len();
    (end <= data.len() && at + 8 <= end && &data[8..at] == CRC_PREFIX).then_some((at, end))
}

/// CRC-32 of the header bytes `data[..end]` but the digits at `at..at + 8`.
fn header_crc(data: &[u8], at: usize, end: usize) -> String {
    let mut h = crc32fast::Hasher::new();
    h.update(&data[..at]);
    h.update(&data[at + 8..end]);
    format!("{:08x}", h.finalize())
}

/// Writes the header's checksum over [`CRC_PLACEHOLDER`] in serialised bytes.
fn stamp_header_crc(data: &mut [u8]) -> Result<(), String> {
    let (at, end) = crc_digits(data)
        .ok_or("the serialised header does not start with the `header_crc32` entry")?;
    let crc = header_crc(data, at, end);
    data[at..at + 8].copy_from_slice(crc.as_bytes());
    Ok(())
}

/// What that entry holds (fields in a fixed order, the checksums sorted).
/// Unknown fields are refused, so that no damaged field name passes for a
/// field of an older checkpoint.
#[derive(serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct Header {
    /// The header's own checksum, as 8 lowercase hex digits (see the
    /// module documentation); absent in checkpoints written before it was
    /// stored. Must stay the first field.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    header_crc32: Option<String>,
    network: String,
    fingerprint: String,
    progress: Progress,
    /// Absent in checkpoints written before it was stored.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    preparation: Option<Preparation>,
    /// CRC-32 of each tensor's little-endian bytes.
    crc32: BTreeMap<String, u32>,
}

/// A loaded checkpoint.
pub struct Checkpoint {
    pub network: String,
    pub fingerprint: String,
    pub progress: Progress,
    /// The input preparation and class names; `None` in a checkpoint
    /// written before they were stored.
    pub preparation: Option<Preparation>,
    /// Every parameter and optimiser buffer (the mean image is in
    /// `preparation`, not here).
    pub tensors: HashMap<String, (Vec<usize>, Vec<f32>)>,
}

pub fn load(path: &Path) -> Result<Checkpoint, CheckpointError> {
    let bytes = std::fs::read(path).map_err(|source| CheckpointError::Read {
        path: path.to_path_buf(),
        source,
    })?;
    from_bytes(path, &bytes)
}

/// [`load`] of the bytes `bytes` read from `path`.
fn from_bytes(path: &Path, bytes: &[u8]) -> Result<Checkpoint, CheckpointError> {
    let corrupt = |reason: String| CheckpointError::Corrupt {
        path: path.to_path_buf(),
        reason,
    };
    // The header's checksum first: nothing in it is trusted before.
    let crc_at = crc_digits(bytes);
    if let Some((at, end)) = crc_at
        && bytes[at..at + 8] != *header_crc(bytes, at, end).as_bytes()
    {
        return Err(corrupt(
            "the header does not match its checksum (its bytes changed after it was written)"
                .into(),
        ));
    }
    let st = SafeTensors::deserialize(bytes).map_err(|e| corrupt(e.to_string()))?;
    let (_, meta) = SafeTensors::read_metadata(bytes).map_err(|e| corrupt(e.to_string()))?;
    let meta = meta.metadata().clone().unwrap_or_default();
    let (network, fingerprint, progress, mut preparation, crc32) = match meta.get(META_KEY) {
        Some(header) => {
            let h: Header = serde_json::from_str(header)
                .map_err(|e| corrupt(format!("bad `{META_KEY}` entry: {e}")))?;
            if h.header_crc32.is_some() != crc_at.is_some() {
                return Err(corrupt(
                    "the header's checksum is not where netc writes it".into(),
                ));
            }
            (
                h.network,
                h.fingerprint,
                h.progress,
                h.preparation,
                Some(h.crc32),
            )
        }
        // A checkpoint written before the checksums: `network`,
        // `fingerprint` and `progress` entries, no checksum to verify (its
        // tensors are still checked for size and finite values), and no
        // batch size recorded (0: not checked on resume).
        None => {
            let get = |k: &str| {
                meta.get(k)
                    .cloned()
                    .ok_or_else(|| corrupt(format!("no `{META_KEY}` entry (nor `{k}`)")))
            };
            let progress: Progress = serde_json::from_str(&get("progress")?)
                .map_err(|e| corrupt(format!("bad progress entry: {e}")))?;
            (get("network")?, get("fingerprint")?, progress, None, None)
        }
    };
    let mut tensors = HashMap::new();
    for (name, view) in st.tensors() {
        if view.dtype() != Dtype::F32 {
            return Err(corrupt(format!(
                "tensor `{name}` is {:?}, not F32",
                view.dtype()
            )));
        }
        match crc32.as_ref().map(|c| c.get(&name)) {
            None => {}
            Some(None) => return Err(corrupt(format!("tensor `{name}` has no checksum"))),
            Some(Some(&want)) if crc32fast::hash(view.data()) != want => {
                return Err(corrupt(format!(
                    "tensor `{name}` does not match its checksum (its bytes changed after it was written)"
                )));
            }
            Some(Some(_)) => {}
        }
        let values: Vec<f32> = view
            .data()
            .chunks_exact(4)
            .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
            .collect();
        if let Some(i) = values.iter().position(|v| !v.is_finite()) {
            return Err(corrupt(format!(
                "tensor `{name}` holds {} at index {i}",
                values[i]
            )));
        }
        tensors.insert(name, (view.shape().to_vec(), values));
    }
    if let Some(name) = crc32
        .iter()
        .flat_map(|c| c.keys())
        .find(|n| !tensors.contains_key(*n))
    {
        return Err(corrupt(format!("tensor `{name}` is missing")));
    }
    let mean = tensors.remove(MEAN_TENSOR);
    if let Some(p) = preparation.as_mut() {
        let Some((_, mean)) = mean else {
            return Err(corrupt(format!("tensor `{MEAN_TENSOR}` is missing")));
        };
        p.mean_image = mean;
        p.check()
            .map_err(|e| corrupt(format!("bad input preparation: {e}")))?;
    }
    Ok(Checkpoint {
        network,
        fingerprint,
        progress,
        preparation,
        tensors,
    })
}

impl Preparation {
    /// The preparation the checkpoint at `path` stores; an error naming the
    /// file if it stores none (one written before netc stored it).
    pub fn load(path: &Path) -> Result<Preparation, CheckpointError> {
        load(path)?
            .preparation
            .ok_or_else(|| CheckpointError::NoPreparation {
                path: path.to_path_buf(),
            })
    }
}

impl Checkpoint {
    /// Checks the checkpoint belongs to the network with this fingerprint.
    pub fn expect(
        &self,
        path: &Path,
        network: &str,
        fingerprint: &str,
    ) -> Result<(), CheckpointError> {
        if self.fingerprint != fingerprint {
            return Err(CheckpointError::Mismatch {
                path: path.to_path_buf(),
                expected: network.to_string(),
                found: format!("`{}`, fingerprint {}", self.network, self.fingerprint),
            });
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_corruption() {
        let dir = std::env::temp_dir().join(format!("netc-ckpt-{}", std::process::id()));
        let path = dir.join("c.safetensors");
        let w = vec![1.0f32, -2.5, 3.25];
        let p = Progress {
            epoch: 2,
            batch: 7,
            step: 99,
            loss_sum: 1.5,
            ..Default::default()
        };
        save(
            &path,
            "net",
            "abc",
            &p,
            None,
            &[("w@t0".into(), vec![3], &w)],
        )
        .unwrap();
        let c = load(&path).unwrap();
        assert_eq!(c.progress, p);
        assert_eq!(c.tensors["w@t0"], (vec![3], w.clone()));
        assert!(c.expect(&path, "net", "abc").is_ok());
        assert!(matches!(
            c.expect(&path, "net", "xyz"),
            Err(CheckpointError::Mismatch { .. })
        ));
        // Truncated: a clear error naming the file.
        let bytes = std::fs::read(&path).unwrap();
        std::fs::write(&path, &bytes[..bytes.len() - 5]).unwrap();
        let e = load(&path).err().unwrap();
        assert!(matches!(e, CheckpointError::Corrupt { .. }));
        assert!(e.to_string().contains("c.safetensors"), "{e}");
        std::fs::write(&path, b"not a checkpoint").unwrap();
        assert!(matches!(load(&path), Err(CheckpointError::Corrupt { .. })));
        // A flipped bit inside a tensor's data: the checksum refuses it.
        save(
            &path,
            "net",
            "abc",
            &p,
            None,
            &[("w@t0".into(), vec![3], &w)],
        )
        .unwrap();
        let mut bytes = std::fs::read(&path).unwrap();
        let n = bytes.len();
        bytes[n - 3] ^= 0x04;
        std::fs::write(&path, &bytes).unwrap();
        let e = load(&path).err().unwrap();
        assert!(e.to_string().contains("checksum"), "{e}");
        // A NaN weight, written with a valid checksum, is refused too.
        let bad = vec![1.0f32, f32::NAN, 3.0];
        save(
            &path,
            "net",
            "abc",
            &p,
            None,
            &[("w@t0".into(), vec![3], &bad)],
        )
        .unwrap();
        let e = load(&path).err().unwrap();
        assert!(e.to_string().contains("`w@t0` holds NaN at index 1"), "{e}");
        // The same state gives the same bytes (one metadata entry, sorted sums).
        let two: Vec<(String, Vec<usize>, &[f32])> =
            vec![("a".into(), vec![3], &w), ("b".into(), vec![3], &w)];
        save(&path, "net", "abc", &p, None, &two).unwrap();
        let first = std::fs::read(&path).unwrap();
        for _ in 0..3 {
            save(&path, "net", "abc", &p, None, &two).unwrap();
            assert_eq!(std::fs::read(&path).unwrap(), first);
        }
        // A checkpoint in the format written before checksums still loads.
        let mut meta = std::collections::HashMap::new();
        meta.insert("network".to_string(), "net".to_string());
        meta.insert("fingerprint".to_string(), "abc".to_string());
        let mut old = p.clone();
        old.batch_size = 0;
        let mut progress = serde_json::to_value(&old).unwrap();
        progress.as_object_mut().unwrap().remove("batch_size");
        meta.insert("progress".to_string(), progress.to_string());
        let data: Vec<u8> = w.iter().flat_map(|v| v.to_le_bytes()).collect();
        let view = safetensors::tensor::TensorView::new(Dtype::F32, vec![3], &data).unwrap();
        let legacy = safetensors::serialize([("w@t0", view)], Some(meta)).unwrap();
        std::fs::write(&path, &legacy).unwrap();
        let c = load(&path).unwrap();
        assert_eq!(c.progress, old);
        assert_eq!(c.tensors["w@t0"].1, w);
        assert!(c.expect(&path, "net", "abc").is_ok());
        std::fs::write(&path, b"not a checkpoint").unwrap();
        assert!(matches!(load(&path), Err(CheckpointError::Corrupt { .. })));
        assert!(matches!(
            load(&dir.join("missing")),
            Err(CheckpointError::Read { .. })
        ));
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn the_preparation_round_trips_and_its_mean_image_is_checked() {
        use crate::model::preparation::{PcaStats, TestCrops};
        let dir = std::env::temp_dir().join(format!("netc-ckpt-prep-{}", std::process::id()));
        let path = dir.join("c.safetensors");
        let w = vec![0.5f32, 1.5];
        let prep = Preparation {
            version: crate::model::preparation::VERSION,
            classes: vec!["cat".into(), "dog".into()],
            source: "image_folder".into(),
            channels: 3,
            height: 2,
            width: 2,
            rescale: Some(2),
            crop: 2,
            pad: 0,
            mean: true,
            scale: 1.0 / 255.0,
            test: TestCrops::TenCrop,
            random_crop: true,
            mirror: true,
            lighting: 0.1,
            channel_mean: vec![100.0, 110.0, 120.0],
            channel_std: vec![50.0, 51.0, 52.0],
            pca: Some(PcaStats {
                eigval: [0.2, 0.02, 0.004],
                eigvec: [[0.58, -0.7, 0.4], [0.58, 0.0, -0.8], [0.57, 0.7, 0.4]],
            }),
            mean_image: (0..12).map(|i| i as f32 * 10.5).collect(),
        };
        let p = Progress::default();
        let t: Vec<(String, Vec<usize>, &[f32])> = vec![("w@t0".into(), vec![2], &w)];
        save(&path, "net", "abc", &p, Some(&prep), &t).unwrap();
        let first = std::fs::read(&path).unwrap();
        let c = load(&path).unwrap();
        assert_eq!(c.preparation.as_ref(), Some(&prep));
        assert!(
            !c.tensors.contains_key(MEAN_TENSOR),
            "the mean is not a parameter"
        );
        assert_eq!(c.tensors.len(), 1);
        assert_eq!(Preparation::load(&path).unwrap(), prep);
        save(&path, "net", "abc", &p, Some(&prep), &t).unwrap();
        assert_eq!(std::fs::read(&path).unwrap(), first, "same bytes");
        // The mean image's bytes are checksummed like every tensor's.
        let mut bytes = first.clone();
        let n = bytes.len();
        // The data is laid out by name: the mean image, then `w@t0`'s 8 bytes;
        // this byte is the mean image's last.
        bytes[n - 9] ^= 0x10;
        std::fs::write(&path, &bytes).unwrap();
        let e = load(&path).err().unwrap().to_string();
        assert!(e.contains("checksum"), "{e}");
        // A stored shape the mean image does not fit is refused, naming the file.
        let st = SafeTensors::deserialize(&first).unwrap();
        let (_, meta) = SafeTensors::read_metadata(&first).unwrap();
        let header =
            meta.metadata().as_ref().unwrap()[META_KEY].replace("\"width\":2", "\"width\":3");
        let meta = HashMap::from([(META_KEY.to_string(), header)]);
        let mut edited = safetensors::serialize(st.tensors(), Some(meta)).unwrap();
        stamp_header_crc(&mut edited).unwrap();
        std::fs::write(&path, edited).unwrap();
        let e = load(&path).err().unwrap().to_string();
        assert!(
            e.contains("c.safetensors") && e.contains("mean image holds 12 values, not the 18"),
            "{e}"
        );
        // Without a preparation: `None`, and `preparation::load` says so.
        save(&path, "net", "abc", &p, None, &t).unwrap();
        assert!(load(&path).unwrap().preparation.is_none());
        let e = Preparation::load(&path).err().unwrap();
        assert!(matches!(e, CheckpointError::NoPreparation { .. }), "{e}");
        let _ = std::fs::remove_dir_all(&dir);
    }

    /// A checkpoint with a preparation and two tensors, as `save` writes it.
    fn sample_bytes(dir: &Path) -> (PathBuf, Vec<u8>) {
        let path = dir.join("c.safetensors");
        let (w, b) = (vec![0.5f32, -1.5, 2.0], vec![0.25f32]);
        let prep = Preparation {
            version: crate::model::preparation::VERSION,
            classes: vec!["cat".into(), "dog".into()],
            source: "image_folder".into(),
            channels: 1,
            height: 1,
            width: 2,
            rescale: None,
            crop: 1,
            pad: 0,
            mean: true,
            scale: 1.0 / 255.0,
            test: crate::model::preparation::TestCrops::Center,
            random_crop: false,
            mirror: false,
            lighting: 0.0,
            channel_mean: vec![100.0],
            channel_std: vec![50.0],
            pca: None,
            mean_image: vec![3.0, 4.0],
        };
        let p = Progress {
            epoch: 1,
            batch: 4,
            step: 4,
            seed: 3,
            batch_size: 32,
            plateau_lr: 0.01,
            ..Default::default()
        };
        let t: Vec<(String, Vec<usize>, &[f32])> =
            vec![("b@t0".into(), vec![1], &b), ("w@t0".into(), vec![3], &w)];
        save(&path, "net", "abc", &p, Some(&prep), &t).unwrap();
        let bytes = std::fs::read(&path).unwrap();
        (path, bytes)
    }

    /// Every byte of the header (its length, JSON text and padding),
    /// flipped one at a time in three ways: every one is refused on
    /// loading, none accepted. The step edited from 4 to 5 is refused too.
    #[test]
    fn every_byte_of_the_header_is_covered_by_its_checksum() {
        let dir = std::env::temp_dir().join(format!("netc-ckpt-flip-{}", std::process::id()));
        let (path, good) = sample_bytes(&dir);
        assert!(from_bytes(&path, &good).is_ok());
        let end = 8 + u64::from_le_bytes(good[..8].try_into().unwrap()) as usize;
        assert!(end > 200 && end < good.len(), "{end}");
        let mut accepted = Vec::new();
        for i in 0..end {
            for flip in [0x01u8, 0x20, 0xff] {
                let mut bad = good.clone();
                bad[i] ^= flip;
                if from_bytes(&path, &bad).is_ok() {
                    accepted.push((i, flip));
                }
            }
        }
        assert!(accepted.is_empty(), "accepted flips: {accepted:?}");
        // An edited progress entry, the same length: refused, naming the file.
        let step = br#"\"step\":4,"#;
        let at = good.windows(step.len()).position(|w| w == step).unwrap();
        let mut edited = good.clone();
        edited[at + step.len() - 2] = b'5';
        let e = from_bytes(&path, &edited).err().unwrap().to_string();
        assert!(
            e.contains("c.safetensors") && e.contains("does not match its checksum"),
            "{e}"
        );
        let _ = std::fs::remove_dir_all(&dir);
    }

    /// A checkpoint written before `header_crc32` (the one `netc` entry
    /// without it) still loads.
    #[test]
    fn a_checkpoint_without_the_header_checksum_still_loads() {
        let dir = std::env::temp_dir().join(format!("netc-ckpt-old-{}", std::process::id()));
        let (path, good) = sample_bytes(&dir);
        let st = SafeTensors::deserialize(&good).unwrap();
        let (_, meta) = SafeTensors::read_metadata(&good).unwrap();
        let mut h: serde_json::Value =
            serde_json::from_str(&meta.metadata().as_ref().unwrap()[META_KEY]).unwrap();
        h.as_object_mut().unwrap().remove("header_crc32");
        let meta = HashMap::from([(META_KEY.to_string(), h.to_string())]);
        let old = safetensors::serialize(st.tensors(), Some(meta)).unwrap();
        let c = from_bytes(&path, &old).unwrap();
        assert_eq!(c.progress.step, 4);
        assert_eq!(c.tensors["w@t0"].1, vec![0.5, -1.5, 2.0]);
        let _ = std::fs::remove_dir_all(&dir);
    }
}
