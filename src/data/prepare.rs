//! `netc prepare`: reads an image tree once and writes a prepared dataset
//! (the layout of [`super::prepared`]).
//!
//! Assumes `SRC/train/<class>/*` (and `SRC/val/<class>/*` with the same
//! class folders), or a single folder of classes (`SRC/<class>/*`, with
//! `val_fraction` of each class drawn for validation). Files are listed as
//! [`super::folder`] lists them. Guarantees:
//!
//! - **Pixels.** Every image is prepared exactly as the in-memory folder
//!   loader prepares it ([`super::folder::prepare`]: shorter side
//!   rescaled to `size`, then the central square), so a raw record equals, byte for byte, what
//!   `--data FOLDER` holds in memory; JPEG records hold those pixels
//!   re-encoded at `quality`. The statistics (mean image, RGB covariance)
//!   are summed, exactly in integers, over the prepared training pixels
//!   before any JPEG encoding, in the same pass.
//! - **Streaming.** Images are decoded and encoded on every core (the
//!   rayon pool) a chunk at a time and written in source order, so memory
//!   holds one chunk of images whatever the number of images (plus a few
//!   dozen bytes per image for its path and index entry); a chunk's
//!   images take at most 256 MiB, and `size` is at most
//!   [`prepared::MAX_SIZE`], so no `--size` allocates more than that.
//! - **Resumable.** The output grows in `OUT.partial` (records),
//!   `OUT.partial-index` (index entries) and `OUT.partial-progress` (what
//!   is committed: counts, lengths, the statistics' sums, the skipped
//!   files, and a fingerprint of the sources and settings), committed with
//!   `fsync` at least every second. A run killed at any moment (kill -9)
//!   and started again with the same sources and settings truncates the
//!   files to the last commit and continues: the result is byte-identical
//!   to an uninterrupted run. Only a finished run replaces `OUT` (an atomic
//!   rename), so a failed run leaves an earlier dataset intact.
//! - **One writer.** A run holds `OUT.lock` (`fsio::OutputLock`) for its
//!   whole life; a second run into the same `OUT` is refused at once,
//!   naming the holder's process id. An existing `OUT` that is not a netc
//!   dataset (no `NETCDATA` magic) is never replaced: the run is refused.
//! - **Bad files.** An undecodable file, or a JPEG cut short (no end-of-
//!   image marker in its last 4 KiB), stops the run with its path, unless
//!   `skip_bad`: then it is left out and listed, with the reason, in
//!   `OUT.skipped.txt`. A run that leaves no training image (every one
//!   skipped) is an error, and writes no dataset.

use std::fs::File;
use std::io::{BufWriter, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use rayon::prelude::*;

use super::pca::Acc;
use super::prepared::{
    self, Format, HEADER_LEN, Header, INDEX_ENTRY, Meta, PreparedError, RECORD_ALIGN, SECTIONS,
    Section,
};
use super::{DataError, Shape, folder};
use crate::rng::Rng;

/// Settings of one `netc prepare` run.
#[derive(Clone, Debug)]
pub struct PrepareOptions {
    pub src: PathBuf,
    pub out: PathBuf,
    /// Side of the prepared square images (default 256).
    pub size: u32,
    pub format: Format,
    /// JPEG quality, 1..=100 (default 90).
    pub quality: u8,
    /// For a single folder of classes: the fraction of each class kept for
    /// validation.
    pub val_fraction: Option<f64>,
    /// Leave out unreadable files instead of stopping.
    pub skip_bad: bool,
    /// Show a progress bar on standard error.
    pub progress: bool,
    /// Commit at least every this many source files (and every second).
    pub commit_every: usize,
    /// Stop without finishing once this many source files are committed,
    /// as a killed run would (tests of resuming).
    pub stop_after: Option<usize>,
}

impl PrepareOptions {
    /// The defaults: 256 pixels, JPEG at quality 90, no validation fraction.
    pub fn new(src: impl Into<PathBuf>, out: impl Into<PathBuf>) -> Self {
        PrepareOptions {
            src: src.into(),
            out: out.into(),
            size: 256,
            format: Format::Jpeg,
            quality: 90,
            val_fraction: None,
            skip_bad: false,
            progress: false,
            commit_every: 4096,
            stop_after: None,
        }
    }
}

/// What a run did.
#[derive(Clone, Debug, PartialEq)]
pub struct PrepareReport {
    pub train: usize,
    pub val: usize,
    /// `(source path, reason)` of every file left out.
    pub skipped: Vec<(String, String)>,
    /// Size of the dataset file.
    pub bytes: u64,
    /// Source files already committed by an earlier, interrupted run.
    pub resumed_at: usize,
    /// `false` if the run stopped early (`stop_after`).
    pub finished: bool,
}

/// One source file to prepare.
struct Job {
    path: PathBuf,
    rel: String,
    label: u32,
    val: bool,
}

fn source_err(path: &Path, reason: impl Into<String>) -> PreparedError {
    PreparedError::Source {
        path: path.to_path_buf(),
        reason: reason.into(),
    }
}

fn data_err(e: DataError) -> PreparedError {
    PreparedError::Data(Box::new(e))
}

fn rel(root: &Path, p: &Path) -> String {
    p.strip_prefix(root)
        .unwrap_or(p)
        .to_string_lossy()
        .into_owned()
}

/// The files to prepare, training first, and the class names.
fn plan(opts: &PrepareOptions) -> Result<(Vec<Job>, Vec<String>), PreparedError> {
    let src = &opts.src;
    if !src.is_dir() {
        return Err(source_err(src, "not a folder"));
    }
    let (train_dir, val_dir) = (src.join("train"), src.join("val"));
    let root = if train_dir.is_dir() {
        train_dir.clone()
    } else {
        src.clone()
    };
    let (classes, files) = folder::list_image_folder(&root).map_err(data_err)?;
    let mut jobs: Vec<Job> = Vec::with_capacity(files.len());
    let mut val_jobs = Vec::new();
    match opts.val_fraction {
        Some(f) if !(0.0..1.0).contains(&f) => {
            return Err(source_err(
                src,
                format!("--val-fraction {f} is not in [0, 1)"),
            ));
        }
        Some(_) if train_dir.is_dir() && val_dir.is_dir() => {
            return Err(source_err(
                src,
                "it has train/ and val/ folders; --val-fraction is for a single folder of classes",
            ));
        }
        Some(f) => {
            // Per class, a seeded shuffle picks round(f · n) files for
            // validation; both parts keep file order.
            let mut start = 0;
            while start < files.len() {
                let label = files[start].1;
                let end = start + files[start..].iter().take_while(|x| x.1 == label).count();
                let n = end - start;
                let mut pick: Vec<usize> = (0..n).collect();
                Rng::new(0x7661_6c5f_6672_6163, label as u64).shuffle(&mut pick);
                let mut is_val = vec![false; n];
                for &k in &pick[..((f * n as f64).round() as usize).min(n)] {
                    is_val[k] = true;
                }
                for (k, (p, l)) in files[start..end].iter().enumerate() {
                    let job = Job {
                        rel: rel(src, p),
                        path: p.clone(),
                        label: *l,
                        val: is_val[k],
                    };
                    if is_val[k] {
                        val_jobs.push(job);
                    } else {
                        jobs.push(job);
                    }
                }
                start = end;
            }
        }
        None => {
            jobs.extend(files.into_iter().map(|(p, l)| Job {
                rel: rel(src, &p),
                path: p,
                label: l,
                val: false,
            }));
            if train_dir.is_dir() && val_dir.is_dir() {
                let (vclasses, vfiles) = folder::list_image_folder(&val_dir).map_err(data_err)?;
                if vclasses != classes {
                    return Err(data_err(DataError::ClassMismatch {
                        path: val_dir,
                        expected: classes,
                        found: vclasses,
                    }));
                }
                val_jobs.extend(vfiles.into_iter().map(|(p, l)| Job {
                    rel: rel(src, &p),
                    path: p,
                    label: l,
                    val: true,
                }));
            }
        }
    }
    // Refused before any image is decoded: nothing would be left to train on.
    if jobs.is_empty() && !val_jobs.is_empty() {
        return Err(source_err(
            src,
            "no training image: every image went to validation (a --val-fraction that takes each class whole, or an empty train/ folder); an empty dataset is not written",
        ));
    }
    jobs.extend(val_jobs);
    Ok((jobs, classes))
}

/// FNV-1a, 64-bit: a fingerprint that is the same on every platform and
/// in every build.
#[derive(Clone, Copy)]
struct Fnv(u64);

impl Fnv {
    fn new() -> Self {
        Fnv(0xcbf2_9ce4_8422_2325)
    }
    fn bytes(mut self, b: &[u8]) -> Self {
        for &x in b {
            self.0 ^= x as u64;
            self.0 = self.0.wrapping_mul(0x0000_0100_0000_01b3);
        }
        // A separator, so that ("ab", "c") and ("a", "bc") differ.
        self.0 = self.0.rotate_left(5) ^ 0xff;
        self
    }
}

/// Bumped whenever the code that makes a record's bytes changes (decoder,
/// resize, encoder), so that a rebuilt netc never resumes a run that an
/// older build began.
const PIXELS_REVISION: u32 = 4;

/// The fingerprint of a run: every setting that changes the output, and
/// every source file's relative path, label, split and size.
fn fingerprint(opts: &PrepareOptions, jobs: &[Job], classes: &[String]) -> u64 {
    let mut h = Fnv::new()
        .bytes(&prepared::VERSION.to_le_bytes())
        .bytes(&PIXELS_REVISION.to_le_bytes())
        .bytes(&opts.size.to_le_bytes())
        .bytes(&[opts.format as u8, opts.quality, opts.skip_bad as u8])
        .bytes(
            &opts
                .val_fraction
                .map_or(u64::MAX, f64::to_bits)
                .to_le_bytes(),
        )
        .bytes(opts.src.to_string_lossy().as_bytes());
    for c in classes {
        h = h.bytes(c.as_bytes());
    }
    for j in jobs {
        let len = std::fs::metadata(&j.path).map_or(u64::MAX, |m| m.len());
        h = h
            .bytes(j.rel.as_bytes())
            .bytes(&j.label.to_le_bytes())
            .bytes(&[j.val as u8])
            .bytes(&len.to_le_bytes());
    }
    h.0
}

/// What is committed, as `OUT.partial-progress` holds it.
#[derive(Clone, Debug, PartialEq)]
struct Progress {
    fingerprint: u64,
    /// Source files done (written or skipped).
    next_job: u64,
    records: u64,
    train_records: u64,
    data_len: u64,
    /// `(job index, reason)`.
    skipped: Vec<(u64, String)>,
    acc: Acc,
}

const PROGRESS_MAGIC: &[u8; 8] = b"NETCPROG";

impl Progress {
    fn encode(&self, shape: Shape) -> Vec<u8> {
        let mut b = Vec::new();
        b.extend_from_slice(PROGRESS_MAGIC);
        for v in [
            self.fingerprint,
            self.next_job,
            self.records,
            self.train_records,
            self.data_len,
            self.skipped.len() as u64,
        ] {
            b.extend_from_slice(&v.to_le_bytes());
        }
        for (j, reason) in &self.skipped {
            b.extend_from_slice(&j.to_le_bytes());
            b.extend_from_slice(&(reason.len() as u64).to_le_bytes());
            b.extend_from_slice(reason.as_bytes());
        }
        b.extend_from_slice(&prepared::encode_stats(
            self.train_records,
            shape,
            &self.acc,
        ));
        let crc = crc32fast::hash(&b);
        b.extend_from_slice(&crc.to_le_bytes());
        b
    }

    fn decode(b: &[u8], shape: Shape) -> Option<Progress> {
        if b.len() < 8 + 48 + 4 || &b[..8] != PROGRESS_MAGIC {
            return None;
        }
        let (body, crc) = b.split_at(b.len() - 4);
        if crc32fast::hash(body) != prepared::u32_at(crc, 0) {
            return None;
        }
        let w = |i: usize| prepared::u64_at(body, 8 + 8 * i);
        let mut at = 8 + 48;
        let mut skipped = Vec::new();
        for _ in 0..w(5) {
            if at + 16 > body.len() {
                return None;
            }
            let j = prepared::u64_at(body, at);
            let n = prepared::u64_at(body, at + 8) as usize;
            at += 16;
            let reason = body.get(at..at.checked_add(n)?)?;
            skipped.push((j, String::from_utf8_lossy(reason).into_owned()));
            at += n;
        }
        let (n, acc) = prepared::decode_stats(&body[at..], shape)?;
        (n == w(3)).then_some(Progress {
            fingerprint: w(0),
            next_job: w(1),
            records: w(2),
            train_records: w(3),
            data_len: w(4),
            skipped,
            acc,
        })
    }
}

/// `OUT` with `suffix` appended to its file name.
fn beside(out: &Path, suffix: &str) -> PathBuf {
    let mut s = out.as_os_str().to_os_string();
    s.push(suffix);
    PathBuf::from(s)
}

/// Writes `bytes` to `path` through a temporary file, fsynced, renamed.
fn write_atomic(path: &Path, bytes: &[u8]) -> Result<(), PreparedError> {
    crate::fsio::write_atomic(path, bytes).map_err(|e| PreparedError::io(path, e))
}

/// Reads a source file and prepares its pixels (see the module
/// documentation for what counts as bad).
fn load(path: &Path, size: u32) -> Result<Vec<u8>, String> {
    let mut bytes = Vec::new();
    File::open(path)
        .and_then(|mut f| f.read_to_end(&mut bytes))
        .map_err(|e| {
            if folder::leads_nowhere(path) {
                format!(
                    "cannot read: a symbolic link that leads nowhere (dangling or looping): {e}"
                )
            } else {
                format!("cannot read: {e}")
            }
        })?;
    folder::check_complete(&bytes)?;
    let img = folder::decode_bytes(&bytes)?;
    if img.width() == 0 || img.height() == 0 {
        return Err("the image is empty".into());
    }
    Ok(folder::prepare(&img.to_rgb8(), size as usize))
}

/// The output files of a run in progress, positioned at their ends.
struct Partial {
    data_path: PathBuf,
    index_path: PathBuf,
    progress_path: PathBuf,
    data: BufWriter<File>,
    index: BufWriter<File>,
    pos: u64,
}

impl Partial {
    fn sync(&mut self) -> Result<(), PreparedError> {
        let (dp, ip) = (&self.data_path, &self.index_path);
        self.data.flush().map_err(|e| PreparedError::io(dp, e))?;
        self.data
            .get_ref()
            .sync_data()
            .map_err(|e| PreparedError::io(dp, e))?;
        self.index.flush().map_err(|e| PreparedError::io(ip, e))?;
        self.index
            .get_ref()
            .sync_data()
            .map_err(|e| PreparedError::io(ip, e))
    }
}

/// Opens the partial files: continuing from `progress` if it matches the
/// run, else from nothing. Returns them with the committed progress.
fn open_partial(out: &Path, fp: u64, shape: Shape) -> Result<(Partial, Progress), PreparedError> {
    let data_path = beside(out, ".partial");
    let index_path = beside(out, ".partial-index");
    let progress_path = beside(out, ".partial-progress");
    let fresh = Progress {
        fingerprint: fp,
        next_job: 0,
        records: 0,
        train_records: 0,
        data_len: HEADER_LEN as u64,
        skipped: Vec::new(),
        acc: Acc::new(shape),
    };
    let saved = std::fs::read(&progress_path)
        .ok()
        .and_then(|b| Progress::decode(&b, shape))
        .filter(|p| p.fingerprint == fp);
    let open = |p: &Path| {
        std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(p)
            .map_err(|e| PreparedError::io(p, e))
    };
    let (mut data, mut index) = (open(&data_path)?, open(&index_path)?);
    let len = |f: &File, p: &Path| {
        f.metadata()
            .map(|m| m.len())
            .map_err(|e| PreparedError::io(p, e))
    };
    let progress = match saved {
        Some(p)
            if len(&data, &data_path)? >= p.data_len
                && len(&index, &index_path)? >= p.records * INDEX_ENTRY as u64 =>
        {
            p
        }
        _ => fresh,
    };
    // Drop whatever was written after the commit (or everything).
    let io_d = |e| PreparedError::io(&data_path, e);
    data.set_len(progress.data_len).map_err(io_d)?;
    if progress.records == 0 && progress.next_job == 0 {
        data.seek(SeekFrom::Start(0)).map_err(io_d)?;
        data.write_all(&vec![0u8; HEADER_LEN]).map_err(io_d)?;
    }
    data.seek(SeekFrom::Start(progress.data_len))
        .map_err(io_d)?;
    let io_i = |e| PreparedError::io(&index_path, e);
    index
        .set_len(progress.records * INDEX_ENTRY as u64)
        .map_err(io_i)?;
    index.seek(SeekFrom::End(0)).map_err(io_i)?;
    Ok((
        Partial {
            data_path,
            index_path,
            progress_path,
            data: BufWriter::with_capacity(1 << 20, data),
            index: BufWriter::with_capacity(1 << 16, index),
            pos: progress.data_len,
        },
        progress,
    ))
}

/// A prepared image: its record bytes, and its pixels if they feed the
/// statistics (training images).
type Done = Result<(Vec<u8>, Option<Vec<u8>>), String>;

fn process(job: &Job, opts: &PrepareOptions, shape: Shape) -> Done {
    let px = load(&job.path, opts.size)?;
    match opts.format {
        Format::Raw => Ok((px, None)),
        Format::Jpeg => {
            let rec = super::jpeg::encode_chw(&px, shape, opts.quality)?;
            Ok((rec, (!job.val).then_some(px)))
        }
    }
}

/// The most bytes a chunk of prepared images may take in memory.
const CHUNK_BYTES: usize = 256 << 20;

/// Runs `netc prepare` (see the module documentation).
pub fn prepare(opts: &PrepareOptions) -> Result<PrepareReport, PreparedError> {
    if opts.size == 0 {
        return Err(source_err(&opts.src, "--size must be positive"));
    }
    if opts.size > prepared::MAX_SIZE {
        let px = 3 * opts.size as u64 * opts.size as u64;
        return Err(source_err(
            &opts.src,
            format!(
                "--size {0} makes every image 3x{0}x{0} = {px} bytes, and their statistics {1} bytes; the largest --size is {2}",
                opts.size,
                8 * px,
                prepared::MAX_SIZE
            ),
        ));
    }
    if !(1..=100).contains(&opts.quality) {
        return Err(source_err(&opts.src, "--quality must be in 1..=100"));
    }
    let _lock = crate::fsio::OutputLock::file(&opts.out)?;
    refuse_foreign(&opts.out)?;
    let (jobs, classes) = plan(opts)?;
    let shape = Shape::new(3, opts.size as usize, opts.size as usize);
    let fp = fingerprint(opts, &jobs, &classes);
    let (mut part, mut prog) = open_partial(&opts.out, fp, shape)?;
    let resumed_at = prog.next_job as usize;
    let bar = if opts.progress {
        indicatif::ProgressBar::new(jobs.len() as u64)
    } else {
        indicatif::ProgressBar::hidden()
    };
    bar.set_style(
        indicatif::ProgressStyle::with_template(
            "prepare [{bar:30}] {pos}/{len} {per_sec} eta {eta} {msg}",
        )
        .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
    );
    bar.set_position(prog.next_job);
    bar.reset_eta();
    // A chunk's images (pixels, and a record each) take at most CHUNK_BYTES.
    let per_image = 2 * shape.len();
    let chunk =
        (16 * rayon::current_num_threads().max(1)).clamp(1, (CHUNK_BYTES / per_image).max(1));
    let mut last_commit = (Instant::now(), prog.next_job);
    let mut next = prog.next_job as usize;
    while next < jobs.len() {
        let end = (next + chunk)
            .min(jobs.len())
            .min(last_commit.1 as usize + opts.commit_every.max(1));
        let batch = &jobs[next..end];
        let done: Vec<Done> = batch.par_iter().map(|j| process(j, opts, shape)).collect();
        // Statistics of this chunk's training pixels, exact in integers.
        let acc = done
            .par_iter()
            .zip(batch.par_iter())
            .filter(|(_, j)| !j.val)
            .fold(
                || Acc::new(shape),
                |acc, (d, _)| match d {
                    Ok((rec, px)) => acc.add(shape, px.as_deref().unwrap_or(rec)),
                    Err(_) => acc,
                },
            )
            .reduce(|| Acc::new(shape), Acc::merge);
        prog.acc = std::mem::replace(&mut prog.acc, Acc::new(shape)).merge(acc);
        for (k, (d, job)) in done.into_iter().zip(batch).enumerate() {
            match d {
                Err(reason) if opts.skip_bad => {
                    bar.suspend(|| eprintln!("skipping {}: {reason}", job.path.display()));
                    prog.skipped.push(((next + k) as u64, reason));
                }
                Err(reason) => {
                    bar.finish_and_clear();
                    return Err(source_err(&job.path, reason));
                }
                Ok((rec, _)) => {
                    let io_d = |e| PreparedError::io(&part.data_path, e);
                    let pad = part.pos.next_multiple_of(RECORD_ALIGN) - part.pos;
                    part.data
                        .write_all(&[0u8; RECORD_ALIGN as usize][..pad as usize])
                        .map_err(io_d)?;
                    let offset = part.pos + pad;
                    part.data.write_all(&rec).map_err(io_d)?;
                    part.pos = offset + rec.len() as u64;
                    let mut e = [0u8; INDEX_ENTRY];
                    e[0..8].copy_from_slice(&offset.to_le_bytes());
                    e[8..12].copy_from_slice(&(rec.len() as u32).to_le_bytes());
                    e[12..16].copy_from_slice(&crc32fast::hash(&rec).to_le_bytes());
                    e[16..20].copy_from_slice(&job.label.to_le_bytes());
                    part.index
                        .write_all(&e)
                        .map_err(|e| PreparedError::io(&part.index_path, e))?;
                    prog.records += 1;
                    prog.train_records += u64::from(!job.val);
                }
            }
        }
        next = end;
        prog.next_job = next as u64;
        prog.data_len = part.pos;
        bar.set_position(next as u64);
        let due = next as u64 - last_commit.1 >= opts.commit_every.max(1) as u64
            || last_commit.0.elapsed() >= Duration::from_secs(1)
            || next == jobs.len();
        if due {
            part.sync()?;
            write_atomic(&part.progress_path, &prog.encode(shape))?;
            last_commit = (Instant::now(), prog.next_job);
            if opts.stop_after.is_some_and(|s| next >= s) && next < jobs.len() {
                bar.finish_and_clear();
                return Ok(PrepareReport {
                    train: prog.train_records as usize,
                    val: (prog.records - prog.train_records) as usize,
                    skipped: Vec::new(),
                    bytes: part.pos,
                    resumed_at,
                    finished: false,
                });
            }
        }
    }
    bar.finish_and_clear();
    finish(opts, &jobs, classes, part, prog, shape, resumed_at)
}

/// Refuses an `out` that exists and is not a netc dataset (a folder, or a
/// file without the `NETCDATA` magic).
fn refuse_foreign(out: &Path) -> Result<(), PreparedError> {
    let mut magic = [0u8; 8];
    let ours = match File::open(out) {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(PreparedError::io(out, e)),
        Ok(mut f) => {
            f.metadata().is_ok_and(|m| m.is_file())
                && f.read_exact(&mut magic).is_ok()
                && &magic == prepared::MAGIC
        }
    };
    if ours {
        Ok(())
    } else {
        Err(PreparedError::NotOurs {
            path: out.to_path_buf(),
        })
    }
}

/// Appends the sections after the records, writes the header, and moves
/// the file into place.
fn finish(
    opts: &PrepareOptions,
    jobs: &[Job],
    classes: Vec<String>,
    mut part: Partial,
    prog: Progress,
    shape: Shape,
    resumed_at: usize,
) -> Result<PrepareReport, PreparedError> {
    let skipped_jobs: std::collections::HashSet<u64> = prog.skipped.iter().map(|s| s.0).collect();
    let written: Vec<&Job> = jobs
        .iter()
        .enumerate()
        .filter(|(i, _)| !skipped_jobs.contains(&(*i as u64)))
        .map(|(_, j)| j)
        .collect();
    if written.len() as u64 != prog.records {
        return Err(source_err(
            &part.data_path,
            "the partial files disagree with their progress record; delete them and rerun",
        ));
    }
    let train_jobs = jobs.iter().filter(|j| !j.val).count();
    if prog.train_records == 0 {
        let list = beside(&opts.out, ".skipped.txt");
        let text: String = prog
            .skipped
            .iter()
            .map(|(j, r)| format!("{}\t{r}\n", jobs[*j as usize].path.display()))
            .collect();
        write_atomic(&list, text.as_bytes())?;
        return Err(source_err(
            &opts.src,
            format!(
                "no training image could be prepared: all {} were skipped as unreadable (listed in {}); an empty dataset is not written",
                train_jobs,
                list.display()
            ),
        ));
    }
    let dp = part.data_path.clone();
    let io_d = |e| PreparedError::io(&dp, e);
    let mut sections = [(0u64, 0u64, 0u32); SECTIONS];
    let mut put = |part: &mut Partial, s: Section, bytes: &[u8]| -> Result<(), PreparedError> {
        let pad = part.pos.next_multiple_of(RECORD_ALIGN) - part.pos;
        part.data
            .write_all(&[0u8; RECORD_ALIGN as usize][..pad as usize])
            .map_err(io_d)?;
        part.pos += pad;
        part.data.write_all(bytes).map_err(io_d)?;
        sections[s as usize] = (part.pos, bytes.len() as u64, crc32fast::hash(bytes));
        part.pos += bytes.len() as u64;
        Ok(())
    };
    part.sync()?;
    let index =
        std::fs::read(&part.index_path).map_err(|e| PreparedError::io(&part.index_path, e))?;
    put(&mut part, Section::Index, &index)?;
    drop(index);
    let mut offsets = Vec::with_capacity(8 * (written.len() + 1));
    let mut blob = Vec::new();
    offsets.extend_from_slice(&0u64.to_le_bytes());
    for j in &written {
        blob.extend_from_slice(j.rel.as_bytes());
        offsets.extend_from_slice(&(blob.len() as u64).to_le_bytes());
    }
    put(&mut part, Section::PathOffsets, &offsets)?;
    put(&mut part, Section::Paths, &blob)?;
    let meta = Meta {
        classes,
        source: opts.src.to_string_lossy().into_owned(),
        size: opts.size,
        format: opts.format,
        quality: if opts.format == Format::Jpeg {
            opts.quality
        } else {
            0
        },
        val_fraction: opts.val_fraction,
        skipped: prog.skipped.len() as u64,
        writer: env!("CARGO_PKG_VERSION").to_string(),
    };
    let meta_json = serde_json::to_vec(&meta).map_err(|e| source_err(&opts.out, e.to_string()))?;
    put(&mut part, Section::Meta, &meta_json)?;
    put(
        &mut part,
        Section::Stats,
        &prepared::encode_stats(prog.train_records, shape, &prog.acc),
    )?;
    let header = Header {
        format: opts.format,
        quality: meta.quality,
        channels: 3,
        size: opts.size,
        train: prog.train_records,
        val: prog.records - prog.train_records,
        classes: meta.classes.len() as u32,
        sections,
    };
    part.data.flush().map_err(io_d)?;
    let f = part.data.get_mut();
    f.seek(SeekFrom::Start(0)).map_err(io_d)?;
    f.write_all(&header.encode()).map_err(io_d)?;
    f.sync_all().map_err(io_d)?;
    let bytes = part.pos;
    let skipped: Vec<(String, String)> = prog
        .skipped
        .iter()
        .map(|(j, r)| {
            (
                jobs[*j as usize].path.to_string_lossy().into_owned(),
                r.clone(),
            )
        })
        .collect();
    // The list is written first, but replaces (or removes) the earlier
    // dataset's only once the dataset itself is in place.
    let list = beside(&opts.out, ".skipped.txt");
    let mut staged = crate::fsio::Staged::new();
    if !skipped.is_empty() {
        let text: String = skipped.iter().map(|(p, r)| format!("{p}\t{r}\n")).collect();
        staged
            .stage(&list, text.as_bytes())
            .map_err(|e| PreparedError::io(&list, e))?;
    }
    std::fs::rename(&part.data_path, &opts.out).map_err(|e| PreparedError::io(&opts.out, e))?;
    if skipped.is_empty() {
        if list.exists() {
            std::fs::remove_file(&list).map_err(|e| PreparedError::io(&list, e))?;
        }
    } else {
        staged.commit().map_err(|e| PreparedError::io(&list, e))?;
    }
    let _ = std::fs::remove_file(&part.index_path);
    let _ = std::fs::remove_file(&part.progress_path);
    Ok(PrepareReport {
        train: header.train as usize,
        val: header.val as usize,
        skipped,
        bytes,
        resumed_at,
        finished: true,
    })
}

/// `netc prepare SRC -o OUT`: prepares, then describes the result in a few
/// lines (with the time taken and images per second).
pub fn run(opts: &PrepareOptions) -> Result<String, PreparedError> {
    let t = Instant::now();
    let r = prepare(opts)?;
    let secs = t.elapsed().as_secs_f64();
    let done =
        r.train + r.val + r.skipped.len() - r.resumed_at.min(r.train + r.val + r.skipped.len());
    let mut text = format!(
        "prepared {} train / {} val images in {:.1} s ({:.0} images/s{}); {} skipped",
        r.train,
        r.val,
        secs,
        done as f64 / secs.max(1e-9),
        if r.resumed_at > 0 {
            format!(", resumed after {} files", r.resumed_at)
        } else {
            String::new()
        },
        r.skipped.len()
    );
    if !r.skipped.is_empty() {
        text.push_str(&format!(
            " (listed in {})",
            beside(&opts.out, ".skipped.txt").display()
        ));
    }
    text.push('\n');
    text.push_str(&info(&opts.out)?);
    if r.val == 0 && opts.progress {
        // Said, not refused: a training set alone is a dataset, but a
        // run on it has nothing to evaluate on.
        eprintln!(
            "note: `{}` has no validation images: `{}` has no val/ folder and no --val-fraction was given; `--val-fraction 0.1` keeps a tenth of each class for validation",
            opts.out.display(),
            opts.src.display()
        );
    }
    Ok(text)
}

/// `netc prepare --info DATASET`.
pub fn info(path: &Path) -> Result<String, PreparedError> {
    Ok(prepared::Prepared::open(path)?.info())
}
