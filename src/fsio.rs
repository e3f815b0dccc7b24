//! How every command writes its files: whole and atomically, and never two
//! writers at once. The bottom of the crate: it imports nothing of netc.
//!
//! Assumes a POSIX file system on which `rename` within a folder is atomic
//! and `flock` works (local file systems; NFS without lock support is not).
//!
//! Guarantees:
//!
//! - **Whole files.** [`write_atomic`] writes a temporary file beside the
//!   target (named after it, the process id and a per-process counter, so
//!   two processes, or two threads, never share one), `fsync`s it and
//!   renames it over the target. A failure at any point (a full disk, a
//!   crash, kill -9) leaves the earlier file byte-identical, and a failed
//!   write removes its temporary file.
//! - **Files that belong together.** [`Staged`] writes several files to
//!   temporary files first and renames them only once every one is written,
//!   in the order they were staged: a write that fails (the disk full at the
//!   third file) replaces none of them.
//! - **One writer.** [`OutputLock`] holds an exclusive `flock` on a lock
//!   file (`DIR/.netc.lock` for a folder, `FILE.lock` beside a file) for as
//!   long as it lives, with the holder's process id written in it; a second
//!   writer is refused at once with that id ([`LockError::Busy`]). The
//!   kernel releases the lock when its holder dies, so a lock file left by a
//!   killed run never blocks the next one; a lock dropped normally removes
//!   its file.

use std::fs::File;
use std::io::{Read, Seek, Write};
use std::os::fd::AsRawFd;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

/// A temporary name beside `path`, unique to this process and call:
/// `.NAME.PID.N.tmp`. It contains `path`'s file name.
pub fn temp_path(path: &Path) -> PathBuf {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    let name = path
        .file_name()
        .map_or("out".into(), |n| n.to_string_lossy());
    parent(path).join(format!(".{name}.{}.{n}.tmp", std::process::id()))
}

/// The folder `path` is in (`.` for a bare file name).
fn parent(path: &Path) -> &Path {
    path.parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."))
}

/// Writes `bytes` to a fresh temporary file and fsyncs it; the file is
/// removed if that fails.
fn write_temp(tmp: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let written = (|| {
        let mut f = File::create(tmp)?;
        f.write_all(bytes)?;
        f.sync_all()
    })();
    if written.is_err() {
        let _ = std::fs::remove_file(tmp);
    }
    written
}

/// Makes the renames into `dir` durable (best effort: the rename has
/// happened whatever this says).
fn sync_dir(dir: &Path) {
    if let Ok(d) = File::open(dir) {
        let _ = d.sync_all();
    }
}

/// Replaces `path` with `bytes` through a temporary file and a rename (see
/// the module documentation). The error is the operating system's; the
/// caller names the file.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let mut s = Staged::new();
    s.stage(path, bytes)?;
    s.commit()
}

/// Files written to temporary files, renamed into place together by
/// [`Staged::commit`]; dropped uncommitted, the temporary files are removed.
#[derive(Debug, Default)]
pub struct Staged {
    /// (temporary file, target), in staging order.
    files: Vec<(PathBuf, PathBuf)>,
}

impl Staged {
    pub fn new() -> Self {
        Staged::default()
    }

    /// Writes `bytes` to a temporary file for `path`. On an error the
    /// caller names `path`.
    pub fn stage(&mut self, path: &Path, bytes: &[u8]) -> std::io::Result<()> {
        let tmp = temp_path(path);
        write_temp(&tmp, bytes)?;
        self.files.push((tmp, path.to_path_buf()));
        Ok(())
    }

    /// Renames every staged file into place, in staging order. A rename
    /// that fails leaves the later files' targets as they were and removes
    /// their temporary files.
    pub fn commit(mut self) -> std::io::Result<()> {
        let files = std::mem::take(&mut self.files);
        let mut dirs: Vec<PathBuf> = Vec::new();
        for (i, (tmp, path)) in files.iter().enumerate() {
            if let Err(e) = std::fs::rename(tmp, path) {
                for (t, _) in &files[i..] {
                    let _ = std::fs::remove_file(t);
                }
                return Err(e);
            }
            let d = parent(path).to_path_buf();
            if !dirs.contains(&d) {
                dirs.push(d);
            }
        }
        for d in &dirs {
            sync_dir(d);
        }
        Ok(())
    }
}

impl Drop for Staged {
    fn drop(&mut self) {
        for (tmp, _) in &self.files {
            let _ = std::fs::remove_file(tmp);
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum LockError {
    #[error(
        "`{output}` is being written by another netc run{holder}; wait for it to finish or write elsewhere",
        holder = pid.map_or(String::new(), |p| format!(" (pid {p})"))
    )]
    Busy { output: PathBuf, pid: Option<u32> },
    #[error("cannot lock `{lock}`: {source}")]
    Io {
        lock: PathBuf,
        source: std::io::Error,
    },
}

/// An exclusive lock on an output (a folder or a file), held until dropped.
#[derive(Debug)]
pub struct OutputLock {
    file: File,
    path: PathBuf,
}

impl OutputLock {
    /// Locks the folder `dir` (which must exist): `DIR/.netc.lock`.
    pub fn folder(dir: &Path) -> Result<OutputLock, LockError> {
        Self::acquire(dir, &dir.join(".netc.lock"))
    }

    /// Locks the file `path` (which need not exist): `PATH.lock` beside it.
    pub fn file(path: &Path) -> Result<OutputLock, LockError> {
        let mut s = path.as_os_str().to_os_string();
        s.push(".lock");
        Self::acquire(path, Path::new(&s))
    }

    /// The lock file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    fn acquire(output: &Path, lock: &Path) -> Result<OutputLock, LockError> {
        let ioerr = |source| LockError::Io {
            lock: lock.to_path_buf(),
            source,
        };
        // A holder that is releasing removes the file after we opened it:
        // then the lock we got is on a file no longer there; try again.
        for _ in 0..100 {
            let mut file = std::fs::OpenOptions::new()
                .read(true)
                .write(true)
                .create(true)
                .truncate(false)
                .open(lock)
                .map_err(ioerr)?;
            // SAFETY: flock on a file descriptor this function owns.
            let r = unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) };
            if r != 0 {
                let e = std::io::Error::last_os_error();
                if e.raw_os_error() == Some(libc::EWOULDBLOCK) {
                    let mut text = String::new();
                    let _ = file.read_to_string(&mut text);
                    return Err(LockError::Busy {
                        output: output.to_path_buf(),
                        pid: text.trim().parse().ok(),
                    });
                }
                return Err(ioerr(e));
            }
            let same = match (file.metadata(), std::fs::metadata(lock)) {
                (Ok(a), Ok(b)) => a.dev() == b.dev() && a.ino() == b.ino(),
                _ => false,
            };
            if !same {
                continue;
            }
            let written = (|| {
                file.set_len(0)?;
                file.rewind()?;
                writeln!(file, "{}", std::process::id())?;
                file.flush()
            })();
            written.map_err(ioerr)?;
            return Ok(OutputLock {
                file,
                path: lock.to_path_buf(),
            });
        }
        Err(ioerr(std::io::Error::other(
            "the lock file kept being replaced",
        )))
    }
}

impl Drop for OutputLock {
    fn drop(&mut self) {
        // Removed while still locked, so no one locks the removed file and
        // believes it holds the output (see `acquire`).
        let _ = std::fs::remove_file(&self.path);
        let _ = self.file.set_len(0);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dir(name: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!("netc-fsio-{}-{name}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        std::fs::create_dir_all(&d).unwrap();
        d
    }

    fn names(d: &Path) -> Vec<String> {
        let mut v: Vec<String> = std::fs::read_dir(d)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        v.sort();
        v
    }

    #[test]
    fn a_failed_write_leaves_the_old_file_and_no_temporary() {
        let d = dir("atomic");
        let f = d.join("metrics.jsonl");
        write_atomic(&f, b"old\n").unwrap();
        // A folder in place of the target makes the rename fail.
        let g = d.join("g");
        std::fs::create_dir_all(g.join("x")).unwrap();
        assert!(write_atomic(&g, b"new\n").is_err());
        assert_eq!(std::fs::read(&f).unwrap(), b"old\n");
        write_atomic(&f, b"new\n").unwrap();
        assert_eq!(std::fs::read(&f).unwrap(), b"new\n");
        assert_eq!(names(&d), ["g", "metrics.jsonl"]);
        let _ = std::fs::remove_dir_all(&d);
    }

    #[test]
    fn temporary_names_are_unique_and_name_their_target() {
        let p = Path::new("out/results.md");
        let (a, b) = (temp_path(p), temp_path(p));
        assert_ne!(a, b);
        let s = a.to_string_lossy().into_owned();
        assert!(
            s.starts_with("out/.results.md.")
                && s.contains(&std::process::id().to_string())
                && s.ends_with(".tmp"),
            "{s}"
        );
    }

    #[test]
    fn staged_files_are_replaced_together_or_not_at_all() {
        let d = dir("staged");
        let (a, b) = (d.join("a"), d.join("b"));
        write_atomic(&a, b"a0").unwrap();
        write_atomic(&b, b"b0").unwrap();
        let mut s = Staged::new();
        s.stage(&a, b"a1").unwrap();
        // The second file cannot be written (its folder is missing).
        assert!(s.stage(&d.join("missing/b"), b"b1").is_err());
        drop(s);
        assert_eq!(std::fs::read(&a).unwrap(), b"a0");
        assert_eq!(names(&d), ["a", "b"]);
        let mut s = Staged::new();
        s.stage(&a, b"a1").unwrap();
        s.stage(&b, b"b1").unwrap();
        s.commit().unwrap();
        assert_eq!(std::fs::read(&a).unwrap(), b"a1");
        assert_eq!(std::fs::read(&b).unwrap(), b"b1");
        assert_eq!(names(&d), ["a", "b"]);
        let _ = std::fs::remove_dir_all(&d);
    }

    #[test]
    fn a_second_writer_is_refused_with_the_holders_pid() {
        let d = dir("lock");
        let held = OutputLock::folder(&d).unwrap();
        assert_eq!(
            std::fs::read_to_string(held.path()).unwrap().trim(),
            std::process::id().to_string()
        );
        // flock locks belong to the open file: a second open in this
        // process is refused like another process would be.
        let e = OutputLock::folder(&d).unwrap_err();
        let want = format!("(pid {})", std::process::id());
        assert!(
            matches!(e, LockError::Busy { .. }) && e.to_string().contains(&want),
            "{e}"
        );
        drop(held);
        assert_eq!(names(&d), Vec::<String>::new());
        let again = OutputLock::folder(&d).unwrap();
        // A file's lock sits beside it.
        let f = d.join("ds.netcdata");
        let fl = OutputLock::file(&f).unwrap();
        assert_eq!(fl.path(), d.join("ds.netcdata.lock"));
        assert!(OutputLock::file(&f).is_err());
        drop((again, fl));
        let _ = std::fs::remove_dir_all(&d);
    }
}
