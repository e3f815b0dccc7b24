//! The prepared dataset file that `netc prepare` writes (see [`super::prepare`])
//! and training reads memory-mapped: its layout, and the reader.
//!
//! Assumes a file written by [`super::prepare`] (or one that claims to be:
//! everything is checked). Guarantees:
//!
//! - **Layout.** One file, little-endian throughout:
//!
//!   | bytes | what |
//!   |---|---|
//!   | `0..4096` | the header: magic `NETCDATA`, version, format (`0` raw, `1` JPEG), JPEG quality, channels, image side, train and validation counts, class count, the table of sections (offset, length, CRC-32 of each), and the header's own CRC-32 in its last 4 bytes |
//!   | `4096..` | the records, in order (training images, then validation images), each starting at a multiple of 64: raw `u8` CHW pixels (`3 × size × size` bytes) or one baseline JPEG |
//!   | index | one 24-byte entry per record: offset `u64`, length `u32`, CRC-32 of the record `u32`, label `u32`, `0u32` |
//!   | path offsets, paths | `records + 1` offsets (`u64`) into a blob of UTF-8 source paths (relative to the source root) |
//!   | meta | JSON: class names, source root, preparation settings, skipped-file count |
//!   | stats | the training images' integer sums ([`super::pca`]): count, per-pixel sums, per-channel sums and sums of squares, RGB cross products |
//!
//! - **Checks.** Every byte of the file is covered by a checksum or is a
//!   zero byte of padding that is checked. Opening checks the header's
//!   magic, version and CRC (it covers all 4096 header bytes), that the
//!   image dimensions are those `netc prepare` writes (3 channels, a side
//!   of at most [`MAX_SIZE`]), that the records and the sections follow
//!   one another exactly as they are written (each at the next multiple
//!   of 64, the last section ending the file), that the padding between
//!   sections is zeros, and the CRC of every section (index, path table,
//!   paths, meta, stats). A record's CRC, and that the padding after it is
//!   zeros, is checked every time it is read, and a mismatch names the
//!   file, the record's index and its source path.
//! - **Cost.** Opening reads the header, the meta and the stats (their size
//!   does not depend on the number of images) and checks the index and the
//!   path table (a CRC over a few dozen bytes per image); a record, its
//!   label and its path are then found in O(1).

use std::path::{Path, PathBuf};
use std::sync::Arc;

use super::pca::{Acc, Stats};
use super::source::ImageSource;
use super::{DataError, Shape};

/// The first bytes of every prepared dataset.
pub const MAGIC: &[u8; 8] = b"NETCDATA";
/// The format version this build writes and reads.
pub const VERSION: u32 = 1;
/// Bytes before the first record.
pub const HEADER_LEN: usize = 4096;
/// Records start at multiples of this.
pub const RECORD_ALIGN: u64 = 64;
/// Bytes per index entry.
pub const INDEX_ENTRY: usize = 24;
/// The largest image side a dataset may hold (`netc prepare --size`): a
/// 4096-pixel square is 48 MiB of pixels, and its statistics 384 MiB.
pub const MAX_SIZE: u32 = 4096;

/// How records are stored.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Format {
    /// `u8` CHW pixels, read without decoding.
    Raw,
    /// One JPEG per image (RGB), decoded when read.
    Jpeg,
}

impl Format {
    fn code(self) -> u8 {
        match self {
            Format::Raw => 0,
            Format::Jpeg => 1,
        }
    }
    fn from_code(c: u8) -> Option<Self> {
        match c {
            0 => Some(Format::Raw),
            1 => Some(Format::Jpeg),
            _ => None,
        }
    }
}

/// The sections after the records, in header-table order.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Section {
    Index = 0,
    PathOffsets = 1,
    Paths = 2,
    Meta = 3,
    Stats = 4,
}

pub(crate) const SECTIONS: usize = 5;
/// The sections in header-table (and file) order.
const SECTION_ORDER: [Section; SECTIONS] = [
    Section::Index,
    Section::PathOffsets,
    Section::Paths,
    Section::Meta,
    Section::Stats,
];
const TABLE_AT: usize = 48;
const TABLE_ENTRY: usize = 24;

/// Everything that can be wrong with a prepared dataset, or with preparing one.
#[derive(Debug, thiserror::Error)]
pub enum PreparedError {
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{path}: not a prepared dataset (no `NETCDATA` header); make one with `netc prepare`")]
    NotPrepared { path: PathBuf },
    #[error(
        "{path}: a folder, not a prepared dataset; give the file `netc prepare SRC -o FILE` wrote"
    )]
    Folder { path: PathBuf },
    #[error(
        "{path}: incomplete prepared dataset (the header was never written); rerun `netc prepare` to finish it"
    )]
    Incomplete { path: PathBuf },
    #[error("{path}: format version {found}, this netc reads version {expected}; prepare it again")]
    Version {
        path: PathBuf,
        found: u32,
        expected: u32,
    },
    #[error("{path}: corrupt {what}: {reason}")]
    Corrupt {
        path: PathBuf,
        what: &'static str,
        reason: String,
    },
    #[error(
        "{path}: record {index} (from `{source_path}`) fails its checksum: the file is damaged"
    )]
    Checksum {
        path: PathBuf,
        index: usize,
        source_path: String,
    },
    #[error("{path}: record {index} (from `{source_path}`) cannot be decoded: {reason}")]
    Record {
        path: PathBuf,
        index: usize,
        source_path: String,
        reason: String,
    },
    #[error("{path}: cannot prepare: {reason}")]
    Source { path: PathBuf, reason: String },
    #[error(transparent)]
    Data(#[from] Box<DataError>),
    #[error(
        "{path}: prepared at {found}x{found} pixels but the network's data section asks `rescale: {wanted}`; run `netc prepare --size {wanted}`"
    )]
    SizeMismatch {
        path: PathBuf,
        found: u32,
        wanted: u64,
    },
    #[error(
        "{path}: exists and is not a netc dataset; `netc prepare` replaces only a dataset it wrote: move it away or choose another `-o`"
    )]
    NotOurs { path: PathBuf },
    #[error(transparent)]
    Lock(#[from] crate::fsio::LockError),
}

impl PreparedError {
    pub(crate) fn io(path: &Path, source: std::io::Error) -> Self {
        PreparedError::Io {
            path: path.to_path_buf(),
            source,
        }
    }
}

/// The settings a dataset was prepared with, as its meta section holds them.
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Meta {
    pub classes: Vec<String>,
    /// The source tree, as given to `netc prepare`.
    pub source: String,
    pub size: u32,
    pub format: Format,
    pub quality: u8,
    /// `Some(f)`: the validation split was drawn from a single folder.
    pub val_fraction: Option<f64>,
    /// Source files skipped as unreadable (`--skip-bad`).
    pub skipped: u64,
    /// The netc version that wrote the file.
    pub writer: String,
}

/// The fixed fields of the header.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Header {
    pub format: Format,
    pub quality: u8,
    pub channels: u16,
    pub size: u32,
    pub train: u64,
    pub val: u64,
    pub classes: u32,
    /// `(offset, length, crc32)` of each [`Section`].
    pub sections: [(u64, u64, u32); SECTIONS],
}

impl Header {
    pub(crate) fn encode(&self) -> Vec<u8> {
        let mut h = vec![0u8; HEADER_LEN];
        h[0..8].copy_from_slice(MAGIC);
        h[8..12].copy_from_slice(&VERSION.to_le_bytes());
        h[12..16].copy_from_slice(&(HEADER_LEN as u32).to_le_bytes());
        h[16] = self.format.code();
        h[17] = self.quality;
        h[18..20].copy_from_slice(&self.channels.to_le_bytes());
        h[20..24].copy_from_slice(&self.size.to_le_bytes());
        h[24..32].copy_from_slice(&self.train.to_le_bytes());
        h[32..40].copy_from_slice(&self.val.to_le_bytes());
        h[40..44].copy_from_slice(&self.classes.to_le_bytes());
        for (i, (off, len, crc)) in self.sections.iter().enumerate() {
            let at = TABLE_AT + i * TABLE_ENTRY;
            h[at..at + 8].copy_from_slice(&off.to_le_bytes());
            h[at + 8..at + 16].copy_from_slice(&len.to_le_bytes());
            h[at + 16..at + 20].copy_from_slice(&crc.to_le_bytes());
        }
        let crc = crc32fast::hash(&h[..HEADER_LEN - 4]);
        h[HEADER_LEN - 4..].copy_from_slice(&crc.to_le_bytes());
        h
    }

    fn decode(path: &Path, h: &[u8], file_len: u64) -> Result<Header, PreparedError> {
        let corrupt = |reason: String| PreparedError::Corrupt {
            path: path.to_path_buf(),
            what: "header",
            reason,
        };
        if h.len() < HEADER_LEN || &h[0..8] != MAGIC {
            if h.len() >= 8 && h[0..8].iter().all(|&b| b == 0) {
                return Err(PreparedError::Incomplete {
                    path: path.to_path_buf(),
                });
            }
            return Err(PreparedError::NotPrepared {
                path: path.to_path_buf(),
            });
        }
        let version = u32_at(h, 8);
        if version != VERSION {
            return Err(PreparedError::Version {
                path: path.to_path_buf(),
                found: version,
                expected: VERSION,
            });
        }
        let crc = u32_at(h, HEADER_LEN - 4);
        if crc != crc32fast::hash(&h[..HEADER_LEN - 4]) {
            return Err(corrupt("checksum mismatch".into()));
        }
        let format =
            Format::from_code(h[16]).ok_or_else(|| corrupt(format!("format code {}", h[16])))?;
        let mut sections = [(0u64, 0u64, 0u32); SECTIONS];
        for (i, s) in sections.iter_mut().enumerate() {
            let at = TABLE_AT + i * TABLE_ENTRY;
            *s = (u64_at(h, at), u64_at(h, at + 8), u32_at(h, at + 16));
            let end = s.0.checked_add(s.1);
            if s.0 < HEADER_LEN as u64 || end.is_none_or(|e| e > file_len) {
                return Err(corrupt(format!(
                    "section {i} at {}+{} lies outside the {file_len}-byte file",
                    s.0, s.1
                )));
            }
        }
        let (channels, size) = (u16::from_le_bytes([h[18], h[19]]), u32_at(h, 20));
        if channels != 3 || size == 0 || size > MAX_SIZE {
            return Err(corrupt(format!(
                "{channels} channels of {size}x{size} pixels; prepared datasets hold 3 channels of at most {MAX_SIZE}x{MAX_SIZE}"
            )));
        }
        Ok(Header {
            format,
            quality: h[17],
            channels,
            size,
            train: u64_at(h, 24),
            val: u64_at(h, 32),
            classes: u32_at(h, 40),
            sections,
        })
    }
}

pub(crate) fn u32_at(b: &[u8], at: usize) -> u32 {
    let mut a = [0u8; 4];
    a.copy_from_slice(&b[at..at + 4]);
    u32::from_le_bytes(a)
}

pub(crate) fn u64_at(b: &[u8], at: usize) -> u64 {
    let mut a = [0u8; 8];
    a.copy_from_slice(&b[at..at + 8]);
    u64::from_le_bytes(a)
}

/// Serialises the integer sums of the training images (the stats section).
pub(crate) fn encode_stats(n: u64, shape: Shape, acc: &Acc) -> Vec<u8> {
    let mut out = Vec::with_capacity(8 * (5 + acc.pixel_sum.len() + 2 * shape.c + 9));
    out.extend_from_slice(&n.to_le_bytes());
    for d in [shape.c, shape.h, shape.w] {
        out.extend_from_slice(&(d as u64).to_le_bytes());
    }
    for v in acc
        .pixel_sum
        .iter()
        .chain(&acc.chan_sum)
        .chain(&acc.chan_sq)
        .chain(acc.cross.iter().flatten())
    {
        out.extend_from_slice(&v.to_le_bytes());
    }
    out
}

/// The inverse of [`encode_stats`]; `None` if the bytes do not fit `shape`.
pub(crate) fn decode_stats(b: &[u8], shape: Shape) -> Option<(u64, Acc)> {
    let words = b.len() / 8;
    if !b.len().is_multiple_of(8) || words < 4 {
        return None;
    }
    let w = |i: usize| u64_at(b, 8 * i);
    if (w(1), w(2), w(3)) != (shape.c as u64, shape.h as u64, shape.w as u64) {
        return None;
    }
    let (len, c) = (shape.len(), shape.c);
    if words != 4 + len + 2 * c + 9 {
        return None;
    }
    let mut acc = Acc::new(shape);
    let mut i = 4;
    for s in acc.pixel_sum.iter_mut() {
        *s = w(i);
        i += 1;
    }
    for k in 0..c {
        acc.chan_sum[k] = w(i + k);
        acc.chan_sq[k] = w(i + c + k);
    }
    i += 2 * c;
    for k in 0..9 {
        acc.cross[k / 3][k % 3] = w(i + k);
    }
    Some((w(0), acc))
}

/// A prepared dataset, memory-mapped. Cheap to share through an [`Arc`].
pub struct Prepared {
    path: PathBuf,
    map: memmap2::Mmap,
    header: Header,
    meta: Meta,
    stats_n: u64,
    acc: Acc,
}

/// One entry of the index.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Entry {
    pub offset: u64,
    pub len: u32,
    pub crc: u32,
    pub label: u32,
}

impl Prepared {
    /// Opens and checks the file at `path` (see the module documentation).
    pub fn open(path: impl AsRef<Path>) -> Result<Prepared, PreparedError> {
        let path = path.as_ref();
        if path.is_dir() {
            return Err(PreparedError::Folder {
                path: path.to_path_buf(),
            });
        }
        let file = std::fs::File::open(path).map_err(|e| PreparedError::io(path, e))?;
        // SAFETY: the map is read-only and every access is bounds-checked
        // against its length; a file truncated by another process while
        // mapped is outside what any reader can defend against (as with
        // every memory-mapped format).
        let map = unsafe { memmap2::Mmap::map(&file) }.map_err(|e| PreparedError::io(path, e))?;
        let header = Header::decode(path, &map[..map.len().min(HEADER_LEN)], map.len() as u64)?;
        let corrupt = |what: &'static str, reason: String| PreparedError::Corrupt {
            path: path.to_path_buf(),
            what,
            reason,
        };
        let section = |s: Section, check: bool| -> Result<&[u8], PreparedError> {
            let (off, len, crc) = header.sections[s as usize];
            let bytes = &map[off as usize..(off + len) as usize];
            if check && crc32fast::hash(bytes) != crc {
                return Err(corrupt(section_name(s), "checksum mismatch".into()));
            }
            Ok(bytes)
        };
        let n = header.train.saturating_add(header.val);
        let index = section(Section::Index, true)?;
        if index.len() as u64 != n.saturating_mul(INDEX_ENTRY as u64) {
            return Err(corrupt(
                "index",
                format!("{} bytes for {n} records", index.len()),
            ));
        }
        let offsets = section(Section::PathOffsets, true)?;
        if offsets.len() as u64 != n.saturating_add(1).saturating_mul(8) {
            return Err(corrupt(
                "path table",
                format!("{} bytes for {n} records", offsets.len()),
            ));
        }
        section(Section::Paths, true)?;
        // The sections follow the records and one another at multiples of
        // 64, with zeros between them, and the last one ends the file.
        let mut at = header.sections[Section::Index as usize].0;
        for (i, &(off, len, _)) in header.sections.iter().enumerate() {
            if i > 0 && off != at.next_multiple_of(RECORD_ALIGN) {
                return Err(corrupt(
                    section_name(SECTION_ORDER[i]),
                    format!(
                        "starts at byte {off}, not {}",
                        at.next_multiple_of(RECORD_ALIGN)
                    ),
                ));
            }
            if map[at as usize..off as usize].iter().any(|&b| b != 0) {
                return Err(corrupt(
                    section_name(SECTION_ORDER[i]),
                    "the padding before it is not zeros".into(),
                ));
            }
            at = off + len;
        }
        if at != map.len() as u64 {
            return Err(corrupt(
                "stats",
                format!("ends at byte {at} of a {}-byte file", map.len()),
            ));
        }
        let meta: Meta = serde_json::from_slice(section(Section::Meta, true)?)
            .map_err(|e| corrupt("meta", e.to_string()))?;
        if meta.classes.len() != header.classes as usize || meta.size != header.size {
            return Err(corrupt(
                "meta",
                "its classes or size differ from the header's".into(),
            ));
        }
        let shape = Shape::new(
            header.channels as usize,
            header.size as usize,
            header.size as usize,
        );
        let (stats_n, acc) = decode_stats(section(Section::Stats, true)?, shape)
            .ok_or_else(|| corrupt("stats", format!("does not fit {shape:?} images")))?;
        let records_end = header.sections[Section::Index as usize].0;
        let ds = Prepared {
            path: path.to_path_buf(),
            map,
            header,
            meta,
            stats_n,
            acc,
        };
        // Every entry must point inside the records region with a label in
        // range: checked once here (a few ns per record), so reads need not.
        // Each record starts where the one before ends, at the next multiple
        // of 64, so that nothing but checked padding lies between them.
        let mut next = HEADER_LEN as u64;
        for i in 0..n as usize {
            let e = ds.entry(i);
            let end = e.offset.saturating_add(e.len as u64);
            if e.offset < HEADER_LEN as u64 || end > records_end {
                return Err(corrupt(
                    "index",
                    format!(
                        "record {i} at {}+{} lies outside the records",
                        e.offset, e.len
                    ),
                ));
            }
            if e.offset != next {
                return Err(corrupt(
                    "index",
                    format!("record {i} starts at byte {}, not {next}", e.offset),
                ));
            }
            next = end.next_multiple_of(RECORD_ALIGN);
            if e.label >= header.classes {
                return Err(corrupt(
                    "index",
                    format!(
                        "record {i} has label {} of {} classes",
                        e.label, header.classes
                    ),
                ));
            }
            if header.format == Format::Raw && e.len as usize != shape.len() {
                return Err(corrupt(
                    "index",
                    format!("raw record {i} holds {} bytes, not {}", e.len, shape.len()),
                ));
            }
        }
        if next != records_end {
            return Err(corrupt(
                "index",
                format!("the records end at byte {next}, the index starts at {records_end}"),
            ));
        }
        Ok(ds)
    }

    pub fn path(&self) -> &Path {
        &self.path
    }
    pub fn meta(&self) -> &Meta {
        &self.meta
    }
    pub fn format(&self) -> Format {
        self.header.format
    }
    /// The shape of every image, `3 × size × size`.
    pub fn shape(&self) -> Shape {
        let s = self.header.size as usize;
        Shape::new(self.header.channels as usize, s, s)
    }
    pub fn train_len(&self) -> usize {
        self.header.train as usize
    }
    pub fn val_len(&self) -> usize {
        self.header.val as usize
    }
    /// Records in the file (training, then validation).
    pub fn len(&self) -> usize {
        self.train_len() + self.val_len()
    }
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
    /// Size of the file in bytes.
    pub fn file_len(&self) -> u64 {
        self.map.len() as u64
    }
    /// Bytes taken by the records (with their alignment).
    pub fn record_bytes(&self) -> u64 {
        self.header.sections[Section::Index as usize].0 - HEADER_LEN as u64
    }

    /// Index entry `i` (`i < len()`, a caller bug otherwise).
    pub fn entry(&self, i: usize) -> Entry {
        let at = self.header.sections[Section::Index as usize].0 as usize + i * INDEX_ENTRY;
        let b = &self.map[at..at + INDEX_ENTRY];
        Entry {
            offset: u64_at(b, 0),
            len: u32_at(b, 8),
            crc: u32_at(b, 12),
            label: u32_at(b, 16),
        }
    }

    /// The source path of record `i`, relative to the source root (or a
    /// placeholder if the path table is damaged).
    pub fn source_path(&self, i: usize) -> String {
        let (off, _, _) = self.header.sections[Section::PathOffsets as usize];
        let (blob, blen, _) = self.header.sections[Section::Paths as usize];
        let at = off as usize + i * 8;
        if i >= self.len() {
            return format!("<no record {i}>");
        }
        let (a, b) = (u64_at(&self.map, at), u64_at(&self.map, at + 8));
        if a > b || b > blen {
            return "<damaged path table>".into();
        }
        String::from_utf8_lossy(&self.map[(blob + a) as usize..(blob + b) as usize]).into_owned()
    }

    /// The stored bytes of record `i`, their checksum verified (and that
    /// the padding after them is zeros).
    pub fn record(&self, i: usize) -> Result<&[u8], PreparedError> {
        let e = self.entry(i);
        let end = e.offset + e.len as u64;
        let bytes = &self.map[e.offset as usize..end as usize];
        let pad = &self.map[end as usize..end.next_multiple_of(RECORD_ALIGN) as usize];
        if crc32fast::hash(bytes) != e.crc || pad.iter().any(|&b| b != 0) {
            return Err(PreparedError::Checksum {
                path: self.path.clone(),
                index: i,
                source_path: self.source_path(i),
            });
        }
        Ok(bytes)
    }

    /// The `u8` CHW pixels of record `i`: the record itself for raw
    /// records, decoded into `buf` for JPEG ones.
    pub fn image<'a>(&'a self, i: usize, buf: &'a mut Vec<u8>) -> Result<&'a [u8], PreparedError> {
        let bytes = self.record(i)?;
        match self.header.format {
            Format::Raw => Ok(bytes),
            Format::Jpeg => {
                let shape = self.shape();
                buf.resize(shape.len(), 0);
                super::jpeg::decode_chw(bytes, shape, buf).map_err(|reason| {
                    PreparedError::Record {
                        path: self.path.clone(),
                        index: i,
                        source_path: self.source_path(i),
                        reason,
                    }
                })?;
                Ok(&buf[..])
            }
        }
    }

    /// The label of record `i`.
    pub fn label(&self, i: usize) -> u32 {
        self.entry(i).label
    }

    /// The training images' statistics, from the sums stored when preparing
    /// (equal to [`Stats::compute`] over the same images).
    pub fn stats(&self) -> Stats {
        Stats::from_acc(self.shape(), self.stats_n as usize, &self.acc)
    }

    /// What `netc prepare --info` prints.
    pub fn info(&self) -> String {
        let m = &self.meta;
        let quality = match m.format {
            Format::Jpeg => format!(" quality {}", m.quality),
            Format::Raw => String::new(),
        };
        let val = match m.val_fraction {
            Some(f) => format!(" (val drawn as {f} of each class)"),
            None => String::new(),
        };
        let st = self.stats();
        let mean = st
            .channel_mean
            .iter()
            .map(|v| format!("{v:.1}"))
            .collect::<Vec<_>>()
            .join(", ");
        let eig = st.pca.map_or("-".into(), |p| {
            format!("{:.4}, {:.4}, {:.4}", p.eigval[0], p.eigval[1], p.eigval[2])
        });
        format!(
            "{}: netc prepared dataset, version {VERSION}\n\
             images:   {} train / {} val{val}\n\
             classes:  {} ({}{})\n\
             records:  {}{quality}, {}x{} pixels, {} channels\n\
             bytes:    {} ({} of records, {:.1} KB per image)\n\
             source:   {} ({} files skipped)\n\
             mean RGB: {mean} (0..255); PCA eigenvalues {eig}\n\
             written by netc {}",
            self.path.display(),
            self.train_len(),
            self.val_len(),
            m.classes.len(),
            m.classes
                .iter()
                .take(3)
                .cloned()
                .collect::<Vec<_>>()
                .join(", "),
            if m.classes.len() > 3 { ", ..." } else { "" },
            match m.format {
                Format::Raw => "raw",
                Format::Jpeg => "JPEG",
            },
            m.size,
            m.size,
            self.header.channels,
            self.file_len(),
            self.record_bytes(),
            self.record_bytes() as f64 / self.len().max(1) as f64 / 1e3,
            m.source,
            m.skipped,
            m.writer,
        )
    }
}

fn section_name(s: Section) -> &'static str {
    match s {
        Section::Index => "index",
        Section::PathOffsets => "path table",
        Section::Paths => "paths",
        Section::Meta => "meta",
        Section::Stats => "stats",
    }
}

/// The training or validation records of a [`Prepared`] file, as an
/// [`ImageSource`] (image `i` is record `start + i`).
#[derive(Clone)]
pub struct PreparedSplit {
    file: Arc<Prepared>,
    start: usize,
    len: usize,
}

impl PreparedSplit {
    pub fn train(file: &Arc<Prepared>) -> Self {
        PreparedSplit {
            file: Arc::clone(file),
            start: 0,
            len: file.train_len(),
        }
    }
    pub fn val(file: &Arc<Prepared>) -> Self {
        PreparedSplit {
            file: Arc::clone(file),
            start: file.train_len(),
            len: file.val_len(),
        }
    }
}

impl ImageSource for PreparedSplit {
    fn shape(&self) -> Shape {
        self.file.shape()
    }
    fn len(&self) -> usize {
        self.len
    }
    fn label(&self, i: usize) -> u32 {
        self.file.label(self.start + i)
    }
    fn image<'a>(&'a self, i: usize, buf: &'a mut Vec<u8>) -> Result<&'a [u8], DataError> {
        self.file
            .image(self.start + i, buf)
            .map_err(|e| DataError::Prepared(Box::new(e)))
    }
    /// The source file the record was prepared from: the tree given to
    /// `netc prepare` joined with the record's relative path.
    fn origin(&self, i: usize) -> Option<String> {
        let rel = self.file.source_path(self.start + i);
        Some(
            Path::new(&self.file.meta().source)
                .join(rel)
                .to_string_lossy()
                .into_owned(),
        )
    }
}
