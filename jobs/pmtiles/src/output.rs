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
use etl_core::store::{Location, Store, StoreError};
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
    // Temporary archives of runs killed with -9 (unlocked, and old enough).
    etl_core::scratch::sweep(&dir, TEMP_PREFIX);
    let file = tempfile::Builder::new()
        .prefix(TEMP_PREFIX)
        .suffix(".tmp")
        // Temp files are 0600; a published archive is read by servers under other users.
        .permissions(std::fs::Permissions::from_mode(0o644))
        .tempfile_in(&dir)
        .map_err(|e| {
            JobError::temporary(format!(
                "{}: cannot create a temporary file: {e}",
                dir.display()
            ))
        })?;
    // Held until the file is published or dropped: a later run knows a live one by it.
    etl_core::scratch::lock_file(file.as_file()).map_err(|e| {
        JobError::temporary(format!(
            "{}: cannot lock the temporary archive: {e}",
            file.path().display()
        ))
    })?;
    Ok(file)
}

const TEMP_PREFIX: &str = ".etl-pmtiles-";

/// Makes the finished archive appear at `loc`, whole; returns its size.
pub async fn publish(store: &Store, file: NamedTempFile, loc: &Location) -> Result<u64, JobError> {
    etl_core::store::publish_file(store, file, loc).await
}
