//! Where archives live: a local directory or an S3 prefix. A source lists archives, opens one
//! version of an archive and reads byte ranges of exactly that version, so a directory read
//! never mixes two versions of a replaced archive.

mod file;
mod s3;

use std::sync::Arc;

use bytes::Bytes;

pub use file::DirSource;
pub use s3::S3Source;

/// The file extension of archives; the archive name is the file name without it.
pub const ARCHIVE_EXT: &str = ".pmtiles";

#[derive(Debug, thiserror::Error)]
pub enum SourceError {
    /// The archive changed since this version was opened (S3 `If-Match` failed); reopen it.
    #[error("archive {0} changed while it was read")]
    Changed(String),
    #[error("archive {name}: {source}")]
    Io {
        name: String,
        #[source]
        source: std::io::Error,
    },
    #[error("archive {name}: S3 {operation} failed: {message}")]
    S3 {
        name: String,
        operation: &'static str,
        message: String,
    },
    #[error("archive {name}: range {offset}+{length} is beyond its end ({len} bytes)")]
    Range {
        name: String,
        offset: u64,
        length: u64,
        len: u64,
    },
}

/// One archive as listed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Listed {
    pub name: String,
    pub bytes: u64,
}

/// One version of one archive: its identity (strong, changes whenever the bytes may have) and
/// the handle that reads exactly that version.
#[derive(Clone)]
pub struct Version {
    pub name: Arc<str>,
    /// S3 ETag, or a fingerprint of device, inode, size and modification time.
    pub etag: Arc<str>,
    pub len: u64,
    handle: Handle,
}

#[derive(Clone)]
enum Handle {
    File(Arc<std::fs::File>),
    S3 { key: Arc<str> },
}

impl std::fmt::Debug for Version {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Version")
            .field("name", &self.name)
            .field("etag", &self.etag)
            .field("len", &self.len)
            .finish()
    }
}

/// The archive store the server reads from.
#[derive(Clone)]
pub enum Source {
    Dir(DirSource),
    S3(S3Source),
}

impl Source {
    /// `DIR` or `s3://bucket/prefix/`.
    pub async fn open(root: &str, s3_endpoint: Option<&str>) -> Result<Source, SourceError> {
        match root.strip_prefix("s3://") {
            Some(rest) => Ok(Source::S3(S3Source::connect(rest, s3_endpoint).await?)),
            None => Ok(Source::Dir(DirSource::new(root)?)),
        }
    }

    /// What `--root` points at, for logs.
    pub fn describe(&self) -> String {
        match self {
            Source::Dir(d) => d.describe(),
            Source::S3(s) => s.describe(),
        }
    }

    /// Whether checking an archive's identity costs next to nothing (a `stat`), so it can be
    /// done on every request; S3 needs a HEAD and is revalidated on an interval instead.
    pub fn cheap_revalidation(&self) -> bool {
        matches!(self, Source::Dir(_))
    }

    /// The archives under the root, by name.
    pub async fn list(&self) -> Result<Vec<Listed>, SourceError> {
        let mut all = match self {
            Source::Dir(d) => d.list().await?,
            Source::S3(s) => s.list().await?,
        };
        all.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(all)
    }

    /// The current identity of an archive (`None` when it does not exist), without opening it.
    pub async fn etag(&self, name: &str) -> Result<Option<String>, SourceError> {
        match self {
            Source::Dir(d) => d.etag(name).await,
            Source::S3(s) => s.head(name).await.map(|v| v.map(|v| v.etag.to_string())),
        }
    }

    /// Opens the current version of an archive; `None` when it does not exist.
    pub async fn open_version(&self, name: &str) -> Result<Option<Version>, SourceError> {
        match self {
            Source::Dir(d) => d.open_version(name).await,
            Source::S3(s) => s.head(name).await,
        }
    }

    /// `length` bytes at `offset` of exactly `version`.
    pub async fn read(
        &self,
        version: &Version,
        offset: u64,
        length: u64,
    ) -> Result<Bytes, SourceError> {
        if offset
            .checked_add(length)
            .is_none_or(|end| end > version.len)
        {
            return Err(SourceError::Range {
                name: version.name.to_string(),
                offset,
                length,
                len: version.len,
            });
        }
        if length == 0 {
            return Ok(Bytes::new());
        }
        match (&version.handle, self) {
            (Handle::File(f), _) => file::read_at(&version.name, f.clone(), offset, length).await,
            (Handle::S3 { key }, Source::S3(s)) => {
                s.read(&version.name, key, &version.etag, offset, length)
                    .await
            }
            (Handle::S3 { .. }, Source::Dir(_)) => {
                Err(SourceError::Changed(version.name.to_string()))
            }
        }
    }
}
