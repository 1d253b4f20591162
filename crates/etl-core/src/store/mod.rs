//! Object storage behind one interface: local files (`file://` or a bare path) and S3
//! (`s3://bucket/key`). Reads stream; writes are atomic (temp file + fsync + rename, or an S3 PUT /
//! multipart upload whose Complete is the only moment the object appears); small objects support
//! conditional create and compare-and-swap for checkpoints and leases.

#[cfg(test)]
mod canned;
mod file;
mod location;
mod publish;
mod range;
mod s3;

use std::io;
use std::path::Path;
use std::sync::Arc;

use tokio::io::AsyncRead;

pub use location::{Location, has_glob};
pub use publish::{PublishError, publish_file, publish_new_file};
pub use s3::{S3Config, S3Store, StaticKeys};

use crate::error::{ExitKind, JobError};

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("{0}")]
    InvalidUrl(String),
    #[error("{0}: not found")]
    NotFound(String),
    #[error("{0}: precondition failed (changed or created concurrently)")]
    PreconditionFailed(String),
    /// The object a ranged read is pinned to was overwritten or deleted since it was listed.
    #[error(
        "{0}: the object changed while it was being read (overwritten since it was listed); a retry reads the new version"
    )]
    Changed(String),
    #[error("{location}: {source}")]
    Io {
        location: String,
        #[source]
        source: io::Error,
    },
    #[error("{location}: S3 {operation} failed: {message}")]
    S3 {
        location: String,
        operation: &'static str,
        message: String,
        /// HTTP status when the service answered at all; None for connection failures.
        status: Option<u16>,
        /// S3 error code (`RequestTimeout`, `AccessDenied`, ...) when the service sent one.
        code: Option<String>,
    },
    #[error("{0}")]
    Config(String),
}

impl StoreError {
    pub(crate) fn io(location: impl ToString, source: io::Error) -> Self {
        StoreError::Io {
            location: location.to_string(),
            source,
        }
    }
}

/// S3 error codes that are worth a retry whatever HTTP status carries them.
const TRANSIENT_S3_CODES: &[&str] = &[
    "RequestTimeout",
    "SlowDown",
    "InternalError",
    "ServiceUnavailable",
    "Throttling",
    "ThrottlingException",
];

impl From<StoreError> for JobError {
    fn from(e: StoreError) -> Self {
        let msg = e.to_string();
        match &e {
            StoreError::InvalidUrl(_) | StoreError::Config(_) => JobError::config(msg),
            // The same code the tools and the tile server give a missing file (EX_NOINPUT).
            StoreError::NotFound(_) => JobError::new(ExitKind::NoInput, msg),
            StoreError::PreconditionFailed(_) | StoreError::Changed(_) => JobError::temporary(msg),
            StoreError::Io { source, .. } => match source.kind() {
                // `a.geojson/x`: a path through a file names nothing that can exist.
                io::ErrorKind::NotFound | io::ErrorKind::NotADirectory => {
                    JobError::new(ExitKind::NoInput, msg)
                }
                io::ErrorKind::PermissionDenied => JobError::config(msg),
                io::ErrorKind::InvalidData => JobError::bad_input(msg),
                _ => JobError::temporary(msg),
            },
            // The upload itself vanished (aborted elsewhere, lifecycle rule): a new attempt
            // starts a new upload and can succeed.
            StoreError::S3 {
                status: Some(404),
                operation: "UploadPart" | "CompleteMultipartUpload",
                ..
            } => JobError::temporary(msg),
            // Throttling and server-side hiccups pass; S3 reports some of them as a 400
            // (`RequestTimeout`: the upload of a request body stalled).
            StoreError::S3 {
                code: Some(code), ..
            } if TRANSIENT_S3_CODES.contains(&code.as_str()) => JobError::temporary(msg),
            StoreError::S3 { status, .. } => match status {
                None => JobError::unavailable(msg),
                Some(408) | Some(429) | Some(500..=599) => JobError::temporary(msg),
                Some(403) | Some(400) | Some(404) | Some(301) => JobError::config(msg),
                Some(_) => JobError::temporary(msg),
            },
        }
    }
}

/// Clean-up work started from `Drop` (aborting a multipart upload, releasing a lease) that must
/// not be lost when the process exits right after: the runner awaits it before shutting down.
static CLEANUPS: std::sync::Mutex<Vec<tokio::task::JoinHandle<()>>> =
    std::sync::Mutex::new(Vec::new());

/// Registers a spawned clean-up task for [`finish_cleanups`].
pub fn register_cleanup(task: tokio::task::JoinHandle<()>) {
    if let Ok(mut list) = CLEANUPS.lock() {
        list.retain(|t| !t.is_finished());
        list.push(task);
    }
}

/// Waits (up to `limit`) for every registered clean-up task.
pub async fn finish_cleanups(limit: std::time::Duration) {
    let tasks: Vec<_> = match CLEANUPS.lock() {
        Ok(mut list) => list.drain(..).collect(),
        Err(_) => return,
    };
    let all = futures::future::join_all(tasks);
    if tokio::time::timeout(limit, all).await.is_err() {
        tracing::warn!("clean-up tasks did not finish in time");
    }
}

/// Metadata of one stored object, as listed or HEADed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ObjectMeta {
    pub location: Location,
    pub size: u64,
    /// S3 ETag, or for local files a fingerprint of modification time and size.
    pub etag: Option<String>,
    pub version_id: Option<String>,
}

/// Preconditions for small-object writes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Precondition {
    None,
    /// Create only if no object exists (`If-None-Match: *`).
    IfAbsent,
    /// Replace only if the current object has this ETag (`If-Match`).
    IfMatch(String),
}

/// An atomic writer: bytes are invisible until [`ObjectWriter::commit`]; dropping it without a
/// commit discards them. Used from blocking threads (it may block on network I/O).
pub trait ObjectWriter: io::Write + Send {
    /// Makes the object appear whole; returns its size and ETag.
    fn commit(self: Box<Self>) -> Result<ObjectMeta, StoreError>;
}

/// The store: local files always, S3 once an `s3://` URL is used.
#[derive(Clone)]
pub struct Store {
    s3_config: S3Config,
    s3: Arc<tokio::sync::OnceCell<S3Store>>,
}

impl Store {
    pub fn new(s3_config: S3Config) -> Self {
        Store {
            s3_config,
            s3: Arc::new(tokio::sync::OnceCell::new()),
        }
    }

    /// The S3 settings this store connects with.
    pub fn s3_config(&self) -> &S3Config {
        &self.s3_config
    }

    pub async fn s3(&self) -> Result<&S3Store, StoreError> {
        self.s3
            .get_or_try_init(|| S3Store::connect(self.s3_config.clone()))
            .await
    }

    /// Expands an input URL into the objects it names: a file or key; a local directory or an
    /// `s3://bucket/prefix/` (every object below it); or a glob. Sorted by location.
    pub async fn expand(&self, url: &str) -> Result<Vec<ObjectMeta>, StoreError> {
        let mut found = match Location::parse(url)? {
            Location::File(path) => file::expand(&path)?,
            Location::S3 { bucket, key } => self.s3().await?.expand(&bucket, &key).await?,
        };
        found.sort_by(|a, b| a.location.cmp(&b.location));
        Ok(found)
    }

    pub async fn head(&self, loc: &Location) -> Result<ObjectMeta, StoreError> {
        match loc {
            Location::File(p) => file::head(p),
            Location::S3 { bucket, key } => self.s3().await?.head(bucket, key).await,
        }
    }

    /// Opens a streaming reader for the object version described by `meta` (for S3 the read is
    /// pinned to that ETag, so a concurrent overwrite fails the read instead of mixing versions).
    pub async fn reader(
        &self,
        meta: &ObjectMeta,
    ) -> Result<Box<dyn AsyncRead + Send + Unpin>, StoreError> {
        match &meta.location {
            Location::File(p) => file::reader(p).await,
            Location::S3 { bucket, key } => self.s3().await?.reader(bucket, key, meta).await,
        }
    }

    /// The bytes `start..start + len` of the object version described by `meta`, for readers
    /// that need random access. For S3 one ranged `GetObject` pinned to that version (`If-Match`
    /// its ETag, and its `VersionId` when the listing had one): an object overwritten since is
    /// [`StoreError::Changed`]; a listing or an answer without an ETag is an error; a range
    /// beyond the listed size is refused before any request.
    pub async fn read_range(
        &self,
        meta: &ObjectMeta,
        start: u64,
        len: u64,
    ) -> Result<bytes::Bytes, StoreError> {
        range::checked_end(meta, start, len)?;
        if len == 0 {
            return Ok(bytes::Bytes::new());
        }
        match &meta.location {
            Location::File(p) => range::file_range(p, meta, start, len),
            Location::S3 { bucket, key } => {
                self.s3()
                    .await?
                    .read_range(bucket, key, meta, start, len)
                    .await
            }
        }
    }

    /// Starts an atomic write to `loc`.
    pub async fn writer(&self, loc: &Location) -> Result<Box<dyn ObjectWriter>, StoreError> {
        match loc {
            Location::File(p) => Ok(Box::new(file::AtomicFile::create(p)?)),
            Location::S3 { bucket, key } => Ok(Box::new(self.s3().await?.writer(bucket, key)?)),
        }
    }

    /// Like [`Store::writer`], but the commit fails with [`StoreError::PreconditionFailed`]
    /// instead of replacing an object that exists (for immutable, versioned outputs).
    pub async fn writer_new(&self, loc: &Location) -> Result<Box<dyn ObjectWriter>, StoreError> {
        match loc {
            Location::File(p) => Ok(Box::new(file::AtomicFile::create_new(p)?)),
            Location::S3 { bucket, key } => Ok(Box::new(self.s3().await?.writer_new(bucket, key)?)),
        }
    }

    /// Reads a small object whole: `None` when it does not exist.
    pub async fn get(&self, loc: &Location) -> Result<Option<(Vec<u8>, String)>, StoreError> {
        match loc {
            Location::File(p) => file::get(p),
            Location::S3 { bucket, key } => self.s3().await?.get(bucket, key).await,
        }
    }

    /// Writes a small object whole under a precondition; returns the new ETag.
    pub async fn put(
        &self,
        loc: &Location,
        bytes: Vec<u8>,
        cond: Precondition,
    ) -> Result<String, StoreError> {
        match loc {
            Location::File(p) => file::put(p, &bytes, &cond),
            Location::S3 { bucket, key } => self.s3().await?.put(bucket, key, bytes, &cond).await,
        }
    }

    /// The objects whose location starts with `loc` taken as a raw prefix: for S3 every key that
    /// starts with the key (no delimiter), for a local path the files in its directory whose
    /// names start with its file name. Sorted by location.
    pub async fn list_prefix(&self, loc: &Location) -> Result<Vec<ObjectMeta>, StoreError> {
        let mut found = match loc {
            Location::File(p) => {
                let (dir, prefix) = if p.as_os_str().to_string_lossy().ends_with('/') {
                    (p.clone(), String::new())
                } else {
                    (
                        p.parent()
                            .filter(|d| !d.as_os_str().is_empty())
                            .map_or_else(|| std::path::PathBuf::from("."), Path::to_path_buf),
                        p.file_name()
                            .map(|n| n.to_string_lossy().into_owned())
                            .unwrap_or_default(),
                    )
                };
                file::list_prefix(&dir, &prefix)?
            }
            Location::S3 { bucket, key } => self.s3().await?.list_prefix(bucket, key).await?,
        };
        found.sort_by(|a, b| a.location.cmp(&b.location));
        Ok(found)
    }

    /// Deletes an object; deleting a missing object is not an error.
    pub async fn delete(&self, loc: &Location) -> Result<(), StoreError> {
        match loc {
            Location::File(p) => file::delete(p),
            Location::S3 { bucket, key } => self.s3().await?.delete(bucket, key).await,
        }
    }

    /// Deletes an object only if it still has this ETag (`If-Match`), so a lease or checkpoint
    /// another worker has since rewritten survives. Missing objects are not an error; a
    /// different ETag is [`StoreError::PreconditionFailed`].
    pub async fn delete_if_match(&self, loc: &Location, etag: &str) -> Result<(), StoreError> {
        match loc {
            Location::File(p) => file::delete_if_match(p, etag),
            Location::S3 { bucket, key } => {
                self.s3().await?.delete_if_match(bucket, key, etag).await
            }
        }
    }

    /// Connectivity check for `--dry-run`: the directory (or its nearest existing ancestor) for
    /// local paths, HEAD bucket for S3. Writes nothing.
    pub async fn check(&self, loc: &Location) -> Result<(), StoreError> {
        match loc {
            Location::File(p) => file::check(p),
            Location::S3 { bucket, .. } => self.s3().await?.check_bucket(bucket).await,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::ExitKind;

    fn s3(operation: &'static str, status: Option<u16>, code: Option<&str>) -> StoreError {
        StoreError::S3 {
            location: "s3://b/k".into(),
            operation,
            message: "m".into(),
            status,
            code: code.map(str::to_string),
        }
    }

    fn kind(e: StoreError) -> ExitKind {
        JobError::from(e).kind
    }

    #[test]
    fn s3_errors_map_to_exit_kinds() {
        use ExitKind::*;
        // Transient whatever the status says.
        for code in ["RequestTimeout", "SlowDown", "InternalError"] {
            assert_eq!(
                kind(s3("PutObject", Some(400), Some(code))),
                Temporary,
                "{code}"
            );
        }
        assert_eq!(
            kind(s3("PutObject", Some(503), Some("SlowDown"))),
            Temporary
        );
        for status in [408, 429, 500, 502, 503, 504] {
            assert_eq!(
                kind(s3("GetObject", Some(status), None)),
                Temporary,
                "{status}"
            );
        }
        // Configuration: wrong bucket, credentials, region, request.
        assert_eq!(
            kind(s3("PutObject", Some(400), Some("InvalidArgument"))),
            Config
        );
        assert_eq!(kind(s3("PutObject", Some(400), None)), Config);
        assert_eq!(
            kind(s3("GetObject", Some(403), Some("AccessDenied"))),
            Config
        );
        assert_eq!(
            kind(s3("ListObjectsV2", Some(404), Some("NoSuchBucket"))),
            Config
        );
        assert_eq!(kind(s3("HeadBucket", Some(301), None)), Config);
        // The multipart upload vanished: a new attempt starts a new one.
        assert_eq!(
            kind(s3("UploadPart", Some(404), Some("NoSuchUpload"))),
            Temporary
        );
        // No answer at all.
        assert_eq!(kind(s3("GetObject", None, None)), Unavailable);
        assert_eq!(kind(StoreError::PreconditionFailed("x".into())), Temporary);
        assert_eq!(kind(StoreError::Changed("x".into())), Temporary);
    }
}
