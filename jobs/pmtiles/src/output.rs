//! Where the archive is built and how it appears at its destination: whole or not at all.
//!
//! A PMTiles archive is written with seeks (the header and root directory go first but are
//! known last), so it is always built in a temporary file: next to a local output, then
//! fsynced and renamed over it; for an `s3://` output in the temporary directory, then
//! uploaded through the store's atomic writer (multipart, aborted on failure).

use std::io;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use etl_core::JobError;
use etl_core::store::{Location, ObjectMeta, Store, StoreError};
use tempfile::NamedTempFile;

/// Whether something already exists at `loc`.
pub async fn exists(store: &Store, loc: &Location) -> Result<bool, JobError> {
    match store.head(loc).await {
        Ok(_) => Ok(true),
        Err(StoreError::NotFound(_)) => Ok(false),
        Err(StoreError::Io { source, .. }) if source.kind() == io::ErrorKind::NotFound => Ok(false),
        Err(e) => Err(e.into()),
    }
}

/// Creates the temporary file the archive is built in.
pub fn temp_for(loc: &Location, tmp_dir: Option<&Path>) -> Result<NamedTempFile, JobError> {
    let dir: PathBuf = match loc {
        Location::File(p) => {
            let parent = p
                .parent()
                .filter(|d| !d.as_os_str().is_empty())
                .map_or_else(|| PathBuf::from("."), Path::to_path_buf);
            std::fs::create_dir_all(&parent).map_err(|e| {
                JobError::config(format!(
                    "{}: cannot create directory: {e}",
                    parent.display()
                ))
            })?;
            parent
        }
        Location::S3 { .. } => tmp_dir.map_or_else(std::env::temp_dir, Path::to_path_buf),
    };
    tempfile::Builder::new()
        .prefix(".etl-pmtiles-")
        .suffix(".tmp")
        // Temp files are 0600; a published archive is read by servers under other users.
        .permissions(std::fs::Permissions::from_mode(0o644))
        .tempfile_in(&dir)
        .map_err(|e| {
            JobError::temporary(format!(
                "{}: cannot create a temporary file: {e}",
                dir.display()
            ))
        })
}

/// Makes the finished archive appear at `loc`.
pub async fn publish(store: &Store, file: NamedTempFile, loc: &Location) -> Result<u64, JobError> {
    let size = file
        .as_file()
        .metadata()
        .map_err(|e| JobError::temporary(format!("temporary archive: {e}")))?
        .len();
    match loc {
        Location::File(p) => {
            let p = p.clone();
            tokio::task::spawn_blocking(move || -> Result<(), JobError> {
                file.as_file()
                    .sync_all()
                    .map_err(|e| JobError::temporary(format!("{}: fsync: {e}", p.display())))?;
                file.persist(&p).map_err(|e| {
                    JobError::temporary(format!(
                        "{}: cannot move the archive in place: {}",
                        p.display(),
                        e.error
                    ))
                })?;
                // The rename is durable once the directory is synced.
                if let Some(dir) = p.parent().filter(|d| !d.as_os_str().is_empty())
                    && let Ok(d) = std::fs::File::open(dir)
                {
                    let _ = d.sync_all();
                }
                Ok(())
            })
            .await
            .map_err(|e| JobError::temporary(format!("publish task failed: {e}")))??;
        }
        Location::S3 { .. } => {
            let mut writer = store.writer(loc).await.map_err(JobError::from)?;
            let url = loc.to_string();
            let _: ObjectMeta =
                tokio::task::spawn_blocking(move || -> Result<ObjectMeta, JobError> {
                    let mut f = file
                        .reopen()
                        .map_err(|e| JobError::temporary(format!("temporary archive: {e}")))?;
                    io::copy(&mut f, &mut writer)
                        .map_err(|e| JobError::temporary(format!("{url}: upload: {e}")))?;
                    writer.commit().map_err(JobError::from)
                })
                .await
                .map_err(|e| JobError::temporary(format!("upload task failed: {e}")))??;
        }
    }
    Ok(size)
}
