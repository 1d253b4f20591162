//! Making a finished temporary file appear at a location, whole or not at all: a local target
//! gets the file fsynced and renamed over it (copied next to it first when the temporary file
//! sits on another file system), then its directory fsynced; an S3 target gets it through the
//! store's atomic writer (a single PUT, or a multipart upload whose completion is the only
//! moment the object appears).

use std::io;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use tempfile::NamedTempFile;

use super::{Location, ObjectMeta, Store, StoreError};
use crate::error::JobError;

/// Published files are read by servers under other users; temporary files are 0600.
const MODE: u32 = 0o644;

/// Why a publication did not happen.
#[derive(Debug)]
pub enum PublishError {
    /// `publish_new_file` found an object at the location (it was left as it was).
    Exists(String),
    Failed(JobError),
}

impl From<JobError> for PublishError {
    fn from(e: JobError) -> Self {
        PublishError::Failed(e)
    }
}

impl From<PublishError> for JobError {
    fn from(e: PublishError) -> Self {
        match e {
            PublishError::Exists(loc) => JobError::temporary(format!(
                "{loc}: already exists; an immutable output is never replaced"
            )),
            PublishError::Failed(e) => e,
        }
    }
}

/// Publishes `file` at `loc`; returns its size in bytes.
pub async fn publish_file(
    store: &Store,
    file: NamedTempFile,
    loc: &Location,
) -> Result<u64, JobError> {
    publish(store, file, loc, false)
        .await
        .map_err(JobError::from)
}

/// Publishes `file` at `loc` only if nothing is there: an existing object (an immutable
/// output of another run that chose the same name) is never replaced, and the error says so
/// ([`PublishError::Exists`]), so the caller knows the object there is not its own.
pub async fn publish_new_file(
    store: &Store,
    file: NamedTempFile,
    loc: &Location,
) -> Result<u64, PublishError> {
    publish(store, file, loc, true).await
}

async fn publish(
    store: &Store,
    file: NamedTempFile,
    loc: &Location,
    new_only: bool,
) -> Result<u64, PublishError> {
    let size = file
        .as_file()
        .metadata()
        .map_err(|e| JobError::temporary(format!("temporary output: {e}")))?
        .len();
    match loc {
        Location::File(p) => {
            let p = p.clone();
            tokio::task::spawn_blocking(move || persist_local(file, &p, new_only))
                .await
                .map_err(|e| join_error("publish", e))??;
        }
        Location::S3 { .. } => {
            let mut writer = if new_only {
                store.writer_new(loc).await
            } else {
                store.writer(loc).await
            }
            .map_err(JobError::from)?;
            let url = loc.to_string();
            let _: ObjectMeta = tokio::task::spawn_blocking(move || {
                let mut f = file
                    .reopen()
                    .map_err(|e| JobError::temporary(format!("temporary output: {e}")))?;
                io::copy(&mut f, &mut writer)
                    .map_err(|e| JobError::temporary(format!("{url}: upload: {e}")))?;
                writer.commit().map_err(|e| match e {
                    StoreError::PreconditionFailed(_) if new_only => PublishError::Exists(url),
                    e => PublishError::Failed(JobError::from(e)),
                })
            })
            .await
            .map_err(|e| join_error("upload", e))??;
        }
    }
    Ok(size)
}

/// A blocking task that did not finish: a panic is a bug (exit 70), a cancelled task (the
/// runtime shutting down) is worth a retry.
fn join_error(what: &str, e: tokio::task::JoinError) -> JobError {
    if e.is_panic() {
        JobError::panicked(&format!("the {what} task"), e.into_panic().as_ref())
    } else {
        JobError::temporary(format!("{what} task failed: {e}"))
    }
}

fn persist_local(file: NamedTempFile, p: &Path, new_only: bool) -> Result<(), PublishError> {
    let dir = p
        .parent()
        .filter(|d| !d.as_os_str().is_empty())
        .map_or_else(|| PathBuf::from("."), Path::to_path_buf);
    std::fs::create_dir_all(&dir).map_err(|e| {
        JobError::config(format!("{}: cannot create directory: {e}", dir.display()))
    })?;
    let fsync_err = |e: io::Error| JobError::temporary(format!("{}: fsync: {e}", p.display()));
    file.as_file().sync_all().map_err(fsync_err)?;
    readable(file.path())?;
    crate::fault::point("store.publish.before_rename");
    let persisted = if new_only {
        file.persist_noclobber(p)
    } else {
        file.persist(p)
    };
    let tmp = match persisted {
        Ok(_) => None,
        // Another file system (a scratch volume): rename cannot cross it.
        Err(e) if e.error.raw_os_error() == Some(18) => Some(e.file),
        Err(e) if new_only && e.error.kind() == io::ErrorKind::AlreadyExists => {
            return Err(PublishError::Exists(p.display().to_string()));
        }
        Err(e) => {
            return Err(PublishError::Failed(JobError::temporary(format!(
                "{}: cannot move the output in place: {}",
                p.display(),
                e.error
            ))));
        }
    };
    if let Some(tmp) = tmp {
        let mut near = tempfile::Builder::new()
            .prefix(".etl-publish-")
            .tempfile_in(&dir)
            .map_err(|e| JobError::temporary(format!("{}: {e}", dir.display())))?;
        let mut src = tmp
            .reopen()
            .map_err(|e| JobError::temporary(format!("temporary output: {e}")))?;
        io::copy(&mut src, near.as_file_mut())
            .map_err(|e| JobError::temporary(format!("{}: {e}", p.display())))?;
        near.as_file().sync_all().map_err(fsync_err)?;
        readable(near.path())?;
        let placed = if new_only {
            near.persist_noclobber(p)
        } else {
            near.persist(p)
        };
        placed.map_err(|e| {
            if new_only && e.error.kind() == io::ErrorKind::AlreadyExists {
                return PublishError::Exists(p.display().to_string());
            }
            PublishError::Failed(JobError::temporary(format!(
                "{}: cannot move the output in place: {}",
                p.display(),
                e.error
            )))
        })?;
    }
    // The rename is durable once the directory is synced.
    super::file::sync_dir(&dir);
    crate::fault::point("store.publish.after_rename");
    Ok(())
}

/// Gives a finished temporary file the mode of a published one.
fn readable(path: &Path) -> Result<(), JobError> {
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(MODE)).map_err(|e| {
        JobError::temporary(format!("{}: cannot set permissions: {e}", path.display()))
    })
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use super::*;
    use std::io::Write;

    #[tokio::test]
    async fn a_new_only_publish_never_replaces() {
        let dir = tempfile::tempdir().unwrap();
        let target = dir.path().join("a.v1.pmtiles");
        std::fs::write(&target, b"first").unwrap();
        let mut tmp = NamedTempFile::new_in(dir.path()).unwrap();
        tmp.write_all(b"second").unwrap();
        let store = Store::new(super::super::S3Config::default());
        let r = publish_new_file(&store, tmp, &Location::File(target.clone())).await;
        assert!(matches!(r, Err(PublishError::Exists(_))), "{r:?}");
        assert_eq!(std::fs::read(&target).unwrap(), b"first");
        let free = dir.path().join("a.v2.pmtiles");
        let mut tmp = NamedTempFile::new_in(dir.path()).unwrap();
        tmp.write_all(b"second").unwrap();
        publish_new_file(&store, tmp, &Location::File(free.clone()))
            .await
            .unwrap();
        assert_eq!(std::fs::read(&free).unwrap(), b"second");
    }

    #[tokio::test]
    async fn a_local_file_appears_whole_and_readable() {
        let dir = tempfile::tempdir().unwrap();
        let mut tmp = NamedTempFile::new_in(dir.path()).unwrap();
        tmp.write_all(b"hello").unwrap();
        let target = dir.path().join("sub/out.txt");
        let store = Store::new(super::super::S3Config::default());
        let n = publish_file(&store, tmp, &Location::File(target.clone()))
            .await
            .unwrap();
        assert_eq!(n, 5);
        assert_eq!(std::fs::read(&target).unwrap(), b"hello");
        let mode = std::fs::metadata(&target).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, MODE);
    }
}
