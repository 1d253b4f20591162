//! Where archives live: a local directory or an S3 prefix. A source resolves an archive name to
//! one version of one file (through the import's manifest `NAME.json` when there is one, else the
//! plain `NAME.pmtiles`) and reads byte ranges of exactly that version, so a directory read never
//! mixes two versions of a replaced archive.

mod file;
pub mod manifest;
mod s3;

use std::future::Future;
use std::sync::Arc;

use bytes::Bytes;
use etl_tiles::archive::RangeReader;

pub use file::DirSource;
pub use s3::{ListedObject, S3Source};

use manifest::{MANIFEST_EXT, Manifest};

/// The file extension of archives; the archive name is the file name without it.
pub const ARCHIVE_EXT: &str = ".pmtiles";

/// A manifest that names a missing file is re-read this many times before giving up (it may have
/// been swapped, and the file it named collected, between reading it and opening the file).
const DANGLING_RETRIES: usize = 3;

#[derive(Debug, thiserror::Error)]
pub enum SourceError {
    /// The archive changed since this version was opened (S3 `If-Match` failed, or the
    /// versioned object is gone); resolve it again.
    #[error("archive {0} changed while it was read")]
    Changed(String),
    /// The current manifest names a file that does not exist: the publish order (outputs first,
    /// manifest last, nothing the manifest names deleted) was broken.
    #[error("archive {name}: its manifest {manifest} names {file}, which does not exist")]
    Dangling {
        name: String,
        manifest: String,
        file: String,
    },
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

/// One version of one archive: its identity (strong, changes whenever the bytes may have) and
/// the handle that reads exactly that version.
#[derive(Clone)]
pub struct Version {
    /// The archive name (`NAME`), for messages.
    pub name: Arc<str>,
    /// The file read, relative to the root (`NAME.pmtiles` or `NAME.<VERSION>.pmtiles`).
    pub file: Arc<str>,
    /// S3 ETag, or a fingerprint of device, inode, size and modification time.
    pub etag: Arc<str>,
    pub len: u64,
    /// The object's `Cache-Control`, when the store keeps one (S3 object metadata).
    pub cache_control: Option<Arc<str>>,
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
            .field("file", &self.file)
            .field("etag", &self.etag)
            .field("len", &self.len)
            .finish()
    }
}

/// How a name was resolved, by the identities that decide it: while they stay the same, the
/// name resolves to the same file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Lookup {
    /// Through the manifest `NAME.json` with this identity (its ETag or fingerprint).
    Manifest { manifest: Arc<str> },
    /// To the plain `NAME.pmtiles` with identity `file`; `json` is the identity of a `NAME.json`
    /// that is not a manifest to follow, if there is one (should it become one, it wins).
    Plain {
        json: Option<Arc<str>>,
        file: Arc<str>,
    },
}

impl Lookup {
    pub fn via_manifest(&self) -> bool {
        matches!(self, Lookup::Manifest { .. })
    }
}

/// An archive name resolved to one version of one file.
#[derive(Debug, Clone)]
pub struct Resolved {
    pub version: Version,
    pub lookup: Lookup,
    /// The manifest's `version`, when resolved through a manifest that has one.
    pub manifest_version: Option<String>,
    /// The base of the sprite sheet the manifest names (`NAME.<VERSION>.sprite`).
    pub sprite: Option<String>,
}

/// The archive store the server reads from.
#[derive(Clone)]
pub enum Source {
    Dir(DirSource),
    S3(S3Source),
}

impl Source {
    /// `DIR` or `s3://bucket/prefix/`.
    pub async fn open(root: &str, s3: etl_core::store::S3Config) -> Result<Source, SourceError> {
        match root.strip_prefix("s3://") {
            Some(rest) => Ok(Source::S3(S3Source::connect(rest, s3).await?)),
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

    /// The names that may be archives: every `X.pmtiles` that is not a versioned output
    /// (`X.<VERSION>.pmtiles`) and every `X.json`, sorted. Which of them are archives is
    /// decided by [`Source::resolve`].
    pub async fn list(&self) -> Result<Vec<String>, SourceError> {
        let files = match self {
            Source::Dir(d) => d.list().await?,
            Source::S3(s) => s.list().await?,
        };
        let mut names: Vec<String> = files
            .iter()
            .filter_map(|f| {
                let name = f
                    .strip_suffix(ARCHIVE_EXT)
                    .or_else(|| f.strip_suffix(MANIFEST_EXT))?;
                let ok = crate::request::archive_name(name).is_ok()
                    && !manifest::is_versioned_name(name);
                ok.then(|| name.to_string())
            })
            .collect();
        names.sort();
        names.dedup();
        Ok(names)
    }

    /// The identity of a file under the root (`None` when it does not exist), without opening it.
    async fn identity(&self, file: &str) -> Result<Option<String>, SourceError> {
        match self {
            Source::Dir(d) => d.identity(file),
            Source::S3(s) => s.head(file).await.map(|v| v.map(|v| v.etag.to_string())),
        }
    }

    /// A whole file of at most `limit` bytes beside the archives (a sprite sheet), `None` when
    /// there is none; empty bytes when it is larger.
    pub async fn read_small(
        &self,
        file: &str,
        limit: u64,
    ) -> Result<Option<(Bytes, String)>, SourceError> {
        match self {
            Source::Dir(d) => d.read_small(file, limit).await,
            Source::S3(s) => s.read_small(file, limit).await,
        }
    }

    /// The bytes and identity of a manifest file, `None` when there is none. A file over
    /// [`manifest::MAX_MANIFEST_BYTES`] comes back empty (it is not a manifest).
    async fn read_manifest(&self, file: &str) -> Result<Option<(Bytes, String)>, SourceError> {
        match self {
            Source::Dir(d) => d.read_small(file, manifest::MAX_MANIFEST_BYTES).await,
            Source::S3(s) => s.read_small(file, manifest::MAX_MANIFEST_BYTES).await,
        }
    }

    /// Opens the current version of a file as archive `name`; `None` when it does not exist.
    async fn open_file(&self, name: &str, file: &str) -> Result<Option<Version>, SourceError> {
        match self {
            Source::Dir(d) => d.open_version(name, file).await,
            Source::S3(s) => s.head(file).await.map(|v| {
                v.map(|mut v| {
                    v.name = name.into();
                    v
                })
            }),
        }
    }

    /// Whether `name` still resolves as `lookup` says (same manifest, or same plain file and
    /// still no manifest to follow).
    pub async fn unchanged(&self, name: &str, lookup: &Lookup) -> Result<bool, SourceError> {
        let json = self.identity(&format!("{name}{MANIFEST_EXT}")).await?;
        Ok(match lookup {
            Lookup::Manifest { manifest } => json.as_deref() == Some(&**manifest),
            Lookup::Plain { json: was, file } => {
                json.as_deref() == was.as_deref()
                    && self
                        .identity(&format!("{name}{ARCHIVE_EXT}"))
                        .await?
                        .as_deref()
                        == Some(&**file)
            }
        })
    }

    /// Resolves archive `name`: the file its manifest `NAME.json` names, or else the plain
    /// `NAME.pmtiles`; `None` when it is neither. A versioned output name (`X.<VERSION>`) is
    /// never an archive of its own.
    pub async fn resolve(&self, name: &str) -> Result<Option<Resolved>, SourceError> {
        if crate::request::archive_name(name).is_err() || manifest::is_versioned_name(name) {
            return Ok(None);
        }
        let json_file = format!("{name}{MANIFEST_EXT}");
        let mut json = self.read_manifest(&json_file).await?;
        let mut tries = 0;
        let json_id = loop {
            let Some((bytes, id)) = &json else {
                break None;
            };
            match manifest::parse(name, bytes) {
                Manifest::Archive {
                    file,
                    version,
                    sprite,
                } => {
                    if let Some(v) = self.open_file(name, &file).await? {
                        return Ok(Some(Resolved {
                            version: v,
                            lookup: Lookup::Manifest {
                                manifest: id.as_str().into(),
                            },
                            manifest_version: version,
                            sprite,
                        }));
                    }
                    // Swapped meanwhile, and the file it named already collected? Read again.
                    let again = self.read_manifest(&json_file).await?;
                    tries += 1;
                    if again.as_ref().map(|(_, i)| i) == Some(id) || tries >= DANGLING_RETRIES {
                        return Err(SourceError::Dangling {
                            name: name.to_string(),
                            manifest: json_file,
                            file,
                        });
                    }
                    json = again;
                }
                Manifest::NotAnArchive => break Some(id.as_str().into()),
                Manifest::Refused(why) => {
                    tracing::warn!(
                        manifest = %json_file,
                        root = %self.describe(),
                        "manifest {json_file} ignored, not followed: {why}"
                    );
                    break Some(id.as_str().into());
                }
            }
        };
        let plain = format!("{name}{ARCHIVE_EXT}");
        Ok(self.open_file(name, &plain).await?.map(|v| Resolved {
            lookup: Lookup::Plain {
                json: json_id,
                file: v.etag.clone(),
            },
            version: v,
            manifest_version: None,
            sprite: None,
        }))
    }

    /// Resolves a nested archive path (`public/NAME`, `profile/USER/FILE`) to the plain file
    /// `PATH.pmtiles` under the root, with no manifest lookup: the CloudTAK layout, where a
    /// `PATH.json` next to an archive is a user's upload, never a manifest. `None` when the path
    /// is malformed (see [`crate::request::archive_path`]) or no such file exists.
    pub async fn resolve_plain(&self, path: &str) -> Result<Option<Resolved>, SourceError> {
        if crate::request::archive_path(path).is_err() {
            return Ok(None);
        }
        let file = format!("{path}{ARCHIVE_EXT}");
        Ok(self.open_file(path, &file).await?.map(|v| Resolved {
            lookup: Lookup::Plain {
                json: None,
                file: v.etag.clone(),
            },
            version: v,
            manifest_version: None,
            sprite: None,
        }))
    }

    /// Whether the plain file of a path resolved by [`Source::resolve_plain`] is still the
    /// version `lookup` names.
    pub async fn unchanged_plain(&self, path: &str, lookup: &Lookup) -> Result<bool, SourceError> {
        let Lookup::Plain { file, .. } = lookup else {
            return Ok(false);
        };
        let now = self.identity(&format!("{path}{ARCHIVE_EXT}")).await?;
        Ok(now.as_deref() == Some(&**file))
    }

    /// A ranged reader of exactly `version`, for the archive walk.
    pub fn reader<'a>(&'a self, version: &'a Version) -> VersionReader<'a> {
        VersionReader {
            source: self,
            version,
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

/// One version of one archive as the archive walk reads it: local files by positioned reads,
/// S3 objects by ranged GETs with `If-Match` on the version's ETag.
pub struct VersionReader<'a> {
    source: &'a Source,
    version: &'a Version,
}

impl RangeReader for VersionReader<'_> {
    type Error = SourceError;

    fn size(&self) -> u64 {
        self.version.len
    }

    fn read_range(
        &self,
        offset: u64,
        len: u64,
    ) -> impl Future<Output = Result<Bytes, SourceError>> {
        self.source.read(self.version, offset, len)
    }
}
