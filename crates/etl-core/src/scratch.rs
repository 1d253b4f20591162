//! Scratch space that a killed process cannot leak for ever. Work happens in a directory (or
//! a file) that its owner holds an OS lock on; the kernel drops the lock when the process dies,
//! even by SIGKILL. [`sweep`] removes the entries with a given prefix whose lock nobody holds
//! and that are older than a minimum age (their creator takes the lock right after creating
//! them), so a later run cleans up after a killed one without ever touching a live one's.

use std::fs::File;
use std::io;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// How old an unlocked entry must be before [`sweep`] takes it for abandoned.
pub const ABANDONED_AFTER: Duration = Duration::from_secs(10);

/// The lock file inside a work directory.
const LOCK: &str = ".lock";

/// A locked work directory, removed with everything in it when dropped.
#[derive(Debug)]
pub struct WorkDir {
    dir: tempfile::TempDir,
    _lock: File,
}

impl WorkDir {
    /// Creates `parent/PREFIXxxxxxx/` and locks it.
    pub fn new_in(parent: &Path, prefix: &str) -> io::Result<WorkDir> {
        std::fs::create_dir_all(parent)?;
        let dir = tempfile::Builder::new().prefix(prefix).tempdir_in(parent)?;
        let lock = File::create(dir.path().join(LOCK))?;
        lock.try_lock().map_err(|e| match e {
            std::fs::TryLockError::Error(e) => e,
            std::fs::TryLockError::WouldBlock => io::Error::other("a new work directory is locked"),
        })?;
        Ok(WorkDir { dir, _lock: lock })
    }

    pub fn path(&self) -> &Path {
        self.dir.path()
    }
}

/// Locks a file for as long as it is open, so [`sweep`] leaves it alone.
pub fn lock_file(file: &File) -> io::Result<()> {
    file.try_lock().map_err(|e| match e {
        std::fs::TryLockError::Error(e) => e,
        std::fs::TryLockError::WouldBlock => io::Error::other("the file is locked by another run"),
    })
}

/// Removes the abandoned entries of `dir` whose names start with `prefix`: files whose own
/// lock is free, directories whose `.lock` is free (or missing), each at least
/// [`ABANDONED_AFTER`] old. Returns what it removed; what it cannot check or remove is logged
/// and left (clean-up never fails a run).
pub fn sweep(dir: &Path, prefix: &str) -> Vec<PathBuf> {
    let mut removed = Vec::new();
    let entries = match std::fs::read_dir(dir) {
        Ok(e) => e,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return removed,
        Err(e) => {
            tracing::warn!(dir = %dir.display(), error = %e, "cannot look for abandoned scratch files");
            return removed;
        }
    };
    for entry in entries {
        let entry = match entry {
            Ok(e) => e,
            Err(e) => {
                tracing::warn!(dir = %dir.display(), error = %e, "cannot list scratch files");
                continue;
            }
        };
        if !entry.file_name().to_string_lossy().starts_with(prefix) {
            continue;
        }
        let path = entry.path();
        match abandoned(&path) {
            Ok(false) => {}
            Ok(true) => {
                let gone = if path.is_dir() {
                    std::fs::remove_dir_all(&path)
                } else {
                    std::fs::remove_file(&path)
                };
                match gone {
                    Ok(()) => {
                        tracing::info!(path = %path.display(), "removed what a killed run left in scratch");
                        removed.push(path);
                    }
                    Err(e) => {
                        tracing::warn!(path = %path.display(), error = %e, "cannot remove an abandoned scratch entry")
                    }
                }
            }
            Err(e) => {
                tracing::warn!(path = %path.display(), error = %e, "cannot check a scratch entry")
            }
        }
    }
    removed
}

fn abandoned(path: &Path) -> io::Result<bool> {
    let age = std::fs::symlink_metadata(path)?.modified()?.elapsed();
    if !age.is_ok_and(|a| a >= ABANDONED_AFTER) {
        return Ok(false);
    }
    let lock_path = if path.is_dir() {
        path.join(LOCK)
    } else {
        path.to_path_buf()
    };
    let file = match File::options().write(true).open(&lock_path) {
        Ok(f) => f,
        // A directory whose creator died before it made its lock.
        Err(e) if e.kind() == io::ErrorKind::NotFound && path.is_dir() => return Ok(true),
        Err(e) => return Err(e),
    };
    match file.try_lock() {
        Ok(()) => Ok(true),
        Err(std::fs::TryLockError::WouldBlock) => Ok(false),
        Err(std::fs::TryLockError::Error(e)) => Err(e),
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;
    use std::time::SystemTime;

    fn age(path: &Path) {
        let old = SystemTime::now() - Duration::from_secs(60);
        File::options()
            .write(true)
            .open(path)
            .or_else(|_| File::open(path))
            .unwrap()
            .set_modified(old)
            .unwrap();
    }

    #[test]
    fn sweeps_only_abandoned_entries() {
        let root = tempfile::tempdir().unwrap();
        let live = WorkDir::new_in(root.path(), ".w-").unwrap();
        let dead = WorkDir::new_in(root.path(), ".w-").unwrap();
        let dead_path = dead.path().to_path_buf();
        // What a SIGKILL leaves: the directory stays, its lock is gone.
        let _kept: PathBuf = dead.dir.keep();
        drop(dead._lock);
        let young = root.path().join(".w-young");
        std::fs::create_dir(&young).unwrap();
        let other = root.path().join("keep-me");
        std::fs::create_dir(&other).unwrap();
        for p in [live.path(), dead_path.as_path(), other.as_path()] {
            age(p);
        }
        let removed = sweep(root.path(), ".w-");
        assert_eq!(removed, std::slice::from_ref(&dead_path));
        assert!(live.path().exists() && young.exists() && other.exists());
        assert!(!dead_path.exists());
    }

    #[test]
    fn a_locked_file_is_left_alone() {
        let root = tempfile::tempdir().unwrap();
        let held = root.path().join(".f-held");
        let free = root.path().join(".f-free");
        let f = File::create(&held).unwrap();
        lock_file(&f).unwrap();
        File::create(&free).unwrap();
        age(&held);
        age(&free);
        assert_eq!(sweep(root.path(), ".f-"), std::slice::from_ref(&free));
        assert!(held.exists());
    }
}
