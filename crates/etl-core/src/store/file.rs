//! Local files: atomic writes by temp file + fsync + rename; conditional create by hard link.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::time::UNIX_EPOCH;

use sha2::{Digest, Sha256};
use tokio::io::AsyncRead;

use super::location::has_glob;
use super::{Location, ObjectMeta, ObjectWriter, Precondition, StoreError};

pub(super) fn head(path: &Path) -> Result<ObjectMeta, StoreError> {
    let md = fs::metadata(path).map_err(|e| not_found_or_io(path, e))?;
    if md.is_dir() {
        return Err(StoreError::io(
            path.display(),
            io::Error::other("is a directory"),
        ));
    }
    let mtime = md
        .modified()
        .ok()
        .and_then(|t| t.duration_since(UNIX_EPOCH).ok())
        .map(|d| d.as_nanos())
        .unwrap_or(0);
    Ok(ObjectMeta {
        location: Location::File(path.to_path_buf()),
        size: md.len(),
        etag: Some(format!("{mtime:x}-{:x}", md.len())),
        version_id: None,
    })
}

fn not_found_or_io(path: &Path, e: io::Error) -> StoreError {
    if e.kind() == io::ErrorKind::NotFound {
        StoreError::NotFound(path.display().to_string())
    } else {
        StoreError::io(path.display(), e)
    }
}

pub(super) fn expand(path: &Path) -> Result<Vec<ObjectMeta>, StoreError> {
    let text = path.to_string_lossy();
    if has_glob(&text) {
        let paths = glob::glob(&text)
            .map_err(|e| StoreError::InvalidUrl(format!("{text}: bad glob pattern: {e}")))?;
        let mut out = Vec::new();
        for p in paths {
            let p =
                p.map_err(|e| StoreError::io(e.path().display(), io::Error::other(e.to_string())))?;
            if p.is_file() {
                out.push(head(&p)?);
            }
        }
        return Ok(out);
    }
    let md = fs::metadata(path).map_err(|e| not_found_or_io(path, e))?;
    if md.is_dir() {
        let mut out = Vec::new();
        walk(path, &mut out)?;
        return Ok(out);
    }
    Ok(vec![head(path)?])
}

fn walk(dir: &Path, out: &mut Vec<ObjectMeta>) -> Result<(), StoreError> {
    for entry in fs::read_dir(dir).map_err(|e| StoreError::io(dir.display(), e))? {
        let entry = entry.map_err(|e| StoreError::io(dir.display(), e))?;
        let p = entry.path();
        let name = entry.file_name();
        // Hidden files include our own temp files and checkpoint folders.
        if name.to_string_lossy().starts_with('.') {
            continue;
        }
        let ft = entry
            .file_type()
            .map_err(|e| StoreError::io(p.display(), e))?;
        if ft.is_dir() {
            walk(&p, out)?;
        } else if ft.is_file() {
            out.push(head(&p)?);
        }
    }
    Ok(())
}

pub(super) async fn reader(path: &Path) -> Result<Box<dyn AsyncRead + Send + Unpin>, StoreError> {
    let f = tokio::fs::File::open(path)
        .await
        .map_err(|e| not_found_or_io(path, e))?;
    Ok(Box::new(f))
}

/// A file written under a temporary name beside its destination and renamed into place on
/// commit, after an fsync of the data and followed by an fsync of the directory.
pub(super) struct AtomicFile {
    dest: PathBuf,
    tmp: Option<PathBuf>,
    file: Option<io::BufWriter<File>>,
    /// Fail instead of replacing an existing file.
    no_clobber: bool,
}

impl AtomicFile {
    /// Like [`AtomicFile::create`], but the commit fails with
    /// [`StoreError::PreconditionFailed`] if `dest` exists by then (a hard link, which cannot
    /// replace, instead of a rename).
    pub(super) fn create_new(dest: &Path) -> Result<Self, StoreError> {
        let mut f = Self::create(dest)?;
        f.no_clobber = true;
        Ok(f)
    }

    pub(super) fn create(dest: &Path) -> Result<Self, StoreError> {
        let dir = parent_dir(dest);
        fs::create_dir_all(&dir).map_err(|e| StoreError::io(dir.display(), e))?;
        let tmp = temp_name(dest);
        let file = OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&tmp)
            .map_err(|e| StoreError::io(tmp.display(), e))?;
        Ok(AtomicFile {
            dest: dest.to_path_buf(),
            tmp: Some(tmp),
            file: Some(io::BufWriter::with_capacity(256 * 1024, file)),
            no_clobber: false,
        })
    }
}

fn parent_dir(p: &Path) -> PathBuf {
    match p.parent() {
        Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
        _ => PathBuf::from("."),
    }
}

fn temp_name(dest: &Path) -> PathBuf {
    let name = dest
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let nonce: u64 = rand_nonce();
    parent_dir(dest).join(format!(".{name}.tmp-{}-{nonce:x}", std::process::id()))
}

fn rand_nonce() -> u64 {
    use std::hash::{BuildHasher, RandomState};
    RandomState::new().hash_one(std::time::SystemTime::now())
}

/// Makes a rename in `dir` durable. Some file systems refuse to fsync a directory (EINVAL);
/// that is logged, not fatal, because the rename itself already happened.
pub(super) fn sync_dir(dir: &Path) {
    let result = File::open(dir).and_then(|d| d.sync_all());
    if let Err(e) = result {
        tracing::warn!(dir = %dir.display(), error = %e, "cannot fsync the directory after a rename");
    }
}

/// The files directly in a directory whose names start with `prefix` (hidden ones skipped).
pub(super) fn list_prefix(dir: &Path, prefix: &str) -> Result<Vec<ObjectMeta>, StoreError> {
    let entries = match fs::read_dir(dir) {
        Ok(e) => e,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(StoreError::io(dir.display(), e)),
    };
    let mut out = Vec::new();
    for entry in entries {
        let entry = entry.map_err(|e| StoreError::io(dir.display(), e))?;
        let name = entry.file_name();
        let name = name.to_string_lossy();
        if name.starts_with('.') || !name.starts_with(prefix) {
            continue;
        }
        let p = entry.path();
        let ft = entry
            .file_type()
            .map_err(|e| StoreError::io(p.display(), e))?;
        if ft.is_file() {
            match head(&p) {
                Ok(meta) => out.push(meta),
                // Deleted between the listing and the stat: not there any more.
                Err(StoreError::NotFound(_)) => {}
                Err(e) => return Err(e),
            }
        }
    }
    Ok(out)
}

impl Write for AtomicFile {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match self.file.as_mut() {
            Some(f) => f.write(buf),
            None => Err(io::Error::other("write after commit")),
        }
    }
    fn flush(&mut self) -> io::Result<()> {
        match self.file.as_mut() {
            Some(f) => f.flush(),
            None => Ok(()),
        }
    }
}

impl ObjectWriter for AtomicFile {
    fn commit(mut self: Box<Self>) -> Result<ObjectMeta, StoreError> {
        let (Some(buf), Some(tmp)) = (self.file.take(), self.tmp.take()) else {
            return Err(StoreError::io(
                self.dest.display(),
                io::Error::other("already committed"),
            ));
        };
        let file = buf
            .into_inner()
            .map_err(|e| StoreError::io(tmp.display(), e.into_error()))?;
        file.sync_all()
            .map_err(|e| StoreError::io(tmp.display(), e))?;
        drop(file);
        crate::fault::point("store.file.before_rename");
        let placed = if self.no_clobber {
            match fs::hard_link(&tmp, &self.dest) {
                Err(e) if e.kind() == io::ErrorKind::AlreadyExists => Err(
                    StoreError::PreconditionFailed(self.dest.display().to_string()),
                ),
                other => other
                    .and_then(|()| fs::remove_file(&tmp))
                    .map_err(|e| StoreError::io(self.dest.display(), e)),
            }
        } else {
            fs::rename(&tmp, &self.dest).map_err(|e| StoreError::io(self.dest.display(), e))
        };
        if let Err(e) = placed {
            if let Err(rm) = fs::remove_file(&tmp)
                && rm.kind() != io::ErrorKind::NotFound
            {
                tracing::warn!(file = %tmp.display(), error = %rm, "cannot remove a temporary file");
            }
            return Err(e);
        }
        sync_dir(&parent_dir(&self.dest));
        head(&self.dest)
    }
}

impl Drop for AtomicFile {
    fn drop(&mut self) {
        if let Some(tmp) = self.tmp.take() {
            self.file.take();
            let _ = fs::remove_file(tmp);
        }
    }
}

fn content_etag(bytes: &[u8]) -> String {
    hex::encode(&Sha256::digest(bytes)[..16])
}

pub(super) fn get(path: &Path) -> Result<Option<(Vec<u8>, String)>, StoreError> {
    match fs::read(path) {
        Ok(bytes) => {
            let etag = content_etag(&bytes);
            Ok(Some((bytes, etag)))
        }
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(StoreError::io(path.display(), e)),
    }
}

/// Small-object write. `IfAbsent` is atomic (hard link fails on an existing name); `IfMatch`
/// compares content ETags before the rename and is atomic only against writers that hold the
/// run's lease, which is how the checkpoint store uses it.
pub(super) fn put(path: &Path, bytes: &[u8], cond: &Precondition) -> Result<String, StoreError> {
    let dir = parent_dir(path);
    fs::create_dir_all(&dir).map_err(|e| StoreError::io(dir.display(), e))?;
    let tmp = temp_name(path);
    let write_tmp = || -> io::Result<()> {
        let mut f = OpenOptions::new().write(true).create_new(true).open(&tmp)?;
        f.write_all(bytes)?;
        f.sync_all()
    };
    if let Err(e) = write_tmp() {
        let _ = fs::remove_file(&tmp);
        return Err(StoreError::io(tmp.display(), e));
    }
    let result = match cond {
        Precondition::IfAbsent => match fs::hard_link(&tmp, path) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {
                Err(StoreError::PreconditionFailed(path.display().to_string()))
            }
            Err(e) => Err(StoreError::io(path.display(), e)),
        },
        Precondition::IfMatch(expected) => match get(path)? {
            Some((_, etag)) if &etag == expected => {
                fs::rename(&tmp, path).map_err(|e| StoreError::io(path.display(), e))
            }
            _ => Err(StoreError::PreconditionFailed(path.display().to_string())),
        },
        Precondition::None => fs::rename(&tmp, path).map_err(|e| StoreError::io(path.display(), e)),
    };
    let _ = fs::remove_file(&tmp);
    result?;
    sync_dir(&dir);
    Ok(content_etag(bytes))
}

pub(super) fn delete(path: &Path) -> Result<(), StoreError> {
    match fs::remove_file(path) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(StoreError::io(path.display(), e)),
    }
}

/// Deletes only if the content ETag matches; like `put` with `IfMatch`, atomic only against
/// writers that hold the run's lease.
pub(super) fn delete_if_match(path: &Path, expected: &str) -> Result<(), StoreError> {
    match get(path)? {
        None => Ok(()),
        Some((_, etag)) if etag == expected => delete(path),
        Some(_) => Err(StoreError::PreconditionFailed(path.display().to_string())),
    }
}

pub(super) fn check(path: &Path) -> Result<(), StoreError> {
    let mut dir = parent_dir(path);
    if path.is_dir() {
        dir = path.to_path_buf();
    }
    // The directory may not exist yet (it is created on write): find the nearest ancestor.
    loop {
        match fs::metadata(&dir) {
            Ok(md) if md.is_dir() => {
                if md.permissions().readonly() {
                    return Err(StoreError::io(
                        dir.display(),
                        io::Error::new(io::ErrorKind::PermissionDenied, "directory is read-only"),
                    ));
                }
                return Ok(());
            }
            Ok(_) => {
                return Err(StoreError::io(
                    dir.display(),
                    io::Error::other("not a directory"),
                ));
            }
            Err(_) => match dir.parent() {
                Some(p) if !p.as_os_str().is_empty() => dir = p.to_path_buf(),
                _ => return Ok(()),
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn atomic_file_appears_only_on_commit() {
        let dir = tempfile::tempdir().unwrap();
        let dest = dir.path().join("sub/out.txt");
        let mut w = Box::new(AtomicFile::create(&dest).unwrap());
        w.write_all(b"hello").unwrap();
        assert!(!dest.exists());
        let meta = w.commit().unwrap();
        assert_eq!(fs::read(&dest).unwrap(), b"hello");
        assert_eq!(meta.size, 5);
        assert_eq!(fs::read_dir(dest.parent().unwrap()).unwrap().count(), 1);
    }

    #[test]
    fn dropped_writer_leaves_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let dest = dir.path().join("out.txt");
        {
            let mut w = AtomicFile::create(&dest).unwrap();
            w.write_all(b"partial").unwrap();
        }
        assert_eq!(fs::read_dir(dir.path()).unwrap().count(), 0);
    }

    #[test]
    fn conditional_put() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("lease");
        let e1 = put(&p, b"a", &Precondition::IfAbsent).unwrap();
        assert!(matches!(
            put(&p, b"b", &Precondition::IfAbsent),
            Err(StoreError::PreconditionFailed(_))
        ));
        assert!(matches!(
            put(&p, b"b", &Precondition::IfMatch("nope".into())),
            Err(StoreError::PreconditionFailed(_))
        ));
        let e2 = put(&p, b"b", &Precondition::IfMatch(e1)).unwrap();
        assert_eq!(get(&p).unwrap().unwrap(), (b"b".to_vec(), e2));
        assert_eq!(
            fs::read_dir(dir.path()).unwrap().count(),
            1,
            "no temp files left"
        );
    }

    #[test]
    fn expand_dir_and_glob() {
        let dir = tempfile::tempdir().unwrap();
        fs::create_dir(dir.path().join("d")).unwrap();
        fs::write(dir.path().join("a.csv"), "x").unwrap();
        fs::write(dir.path().join("d/b.csv"), "x").unwrap();
        fs::write(dir.path().join(".hidden"), "x").unwrap();
        assert_eq!(expand(dir.path()).unwrap().len(), 2);
        let pat = dir.path().join("*.csv");
        assert_eq!(expand(&pat).unwrap().len(), 1);
        assert!(matches!(
            expand(&dir.path().join("missing")),
            Err(StoreError::NotFound(_))
        ));
    }
}
