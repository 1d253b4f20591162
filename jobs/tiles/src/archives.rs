//! Open archives and their directories, cached and bounded. An open archive is one version of
//! the file or object its name resolved to (header, metadata, root directory); leaf directories
//! sit in a shared LRU keyed by that file and version, so a replaced or swapped archive can never
//! be read through an old directory.

use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use etl_tiles::archive::{ArchiveError, ArchiveIndex, Entry, Header, Leaf, LeafCache, ReadError};
use quick_cache::Weighter;
use quick_cache::sync::Cache;

use crate::source::{Lookup, Resolved, Source, SourceError, Version};

#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    #[error(transparent)]
    Source(#[from] SourceError),
    #[error("archive {name} is corrupt: {error}")]
    Corrupt { name: String, error: ArchiveError },
}

impl ServeError {
    /// A failed read of archive `name`: corrupt bytes, or the source failing.
    fn from_read(name: &str, e: ReadError<SourceError>) -> Self {
        match e {
            ReadError::Corrupt(error) => ServeError::Corrupt {
                name: name.to_string(),
                error,
            },
            ReadError::Source(e) => ServeError::Source(e),
        }
    }
}

/// One version of an archive, ready to answer tile requests.
pub struct OpenArchive {
    pub version: Version,
    /// How the name resolved (manifest or plain file), re-checked to see a swap.
    pub lookup: Lookup,
    /// The manifest's `version` when the name resolved through a manifest that has one.
    pub manifest_version: Option<String>,
    /// The base of the sprite sheet beside the archive, when its manifest names one.
    pub sprite: Option<String>,
    /// Header, metadata and root directory of `version`.
    index: ArchiveIndex,
    /// When the version was last confirmed current.
    checked: Mutex<Instant>,
}

impl Archives {
    /// A small file beside the archives (a sprite sheet), read from the same store.
    pub async fn read_beside(
        &self,
        file: &str,
        limit: u64,
    ) -> Result<Option<(Bytes, String)>, ServeError> {
        self.source
            .read_small(file, limit)
            .await
            .map_err(ServeError::Source)
    }
}

impl OpenArchive {
    pub fn header(&self) -> &Header {
        self.index.header()
    }

    pub fn metadata(&self) -> &serde_json::Value {
        self.index.metadata()
    }
}

impl std::fmt::Debug for OpenArchive {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OpenArchive")
            .field("version", &self.version)
            .field("lookup", &self.lookup)
            .finish()
    }
}

/// A leaf directory: the file read, its version's ETag and the leaf's offset and length in the
/// leaf section.
type DirKey = (Arc<str>, Arc<str>, u64, u32);

#[derive(Clone)]
struct DirWeight;

impl Weighter<DirKey, Leaf> for DirWeight {
    fn weight(&self, key: &DirKey, dir: &Leaf) -> u64 {
        (dir.len() * std::mem::size_of::<Entry>() + key.0.len() + key.1.len() + 64) as u64
    }
}

/// Cache sizes and freshness.
#[derive(Debug, Clone, Copy)]
pub struct CacheSettings {
    /// Bytes of decoded leaf directories kept.
    pub directory_bytes: u64,
    /// Open archives kept (header, metadata, root directory each).
    pub archives: usize,
    /// How long an S3 archive's ETag is trusted before a HEAD checks it again (local files are
    /// checked on every request; a `stat` is cheap).
    pub revalidate: Duration,
    /// How long an S3 manifest's ETag is trusted before a HEAD checks it again; a read of the
    /// versioned object that fails (404/412) checks it at once. Local manifests are checked on
    /// every request.
    pub manifest_recheck: Duration,
}

impl Default for CacheSettings {
    fn default() -> Self {
        CacheSettings {
            directory_bytes: 64 << 20,
            archives: 256,
            revalidate: Duration::from_secs(5),
            manifest_recheck: Duration::from_secs(10),
        }
    }
}

/// What the caches hold, for `/health`.
#[derive(Debug, Clone, Copy, serde::Serialize)]
pub struct CacheStats {
    pub archives: usize,
    pub archives_capacity: usize,
    pub directories: usize,
    pub directory_bytes: u64,
    pub directory_bytes_capacity: u64,
}

pub struct Archives {
    source: Source,
    /// Names are nested paths resolved to plain `PATH.pmtiles` files, with no manifests
    /// ([`Source::resolve_plain`]): the CloudTAK layout.
    plain: bool,
    settings: CacheSettings,
    open: Cache<Arc<str>, Arc<OpenArchive>>,
    dirs: Cache<DirKey, Leaf, DirWeight>,
}

impl Archives {
    pub fn new(source: Source, settings: CacheSettings) -> Archives {
        let dir_items = (settings.directory_bytes / 4096).max(16) as usize;
        Archives {
            source,
            plain: false,
            settings,
            open: Cache::new(settings.archives.max(1)),
            dirs: Cache::with_weighter(dir_items, settings.directory_bytes.max(1), DirWeight),
        }
    }

    /// Archives named by nested paths (`public/NAME`, `profile/USER/FILE`), each the plain file
    /// `PATH.pmtiles`; no manifest is read (see [`Source::resolve_plain`]).
    pub fn plain_paths(source: Source, settings: CacheSettings) -> Archives {
        Archives {
            plain: true,
            ..Archives::new(source, settings)
        }
    }

    pub fn source(&self) -> &Source {
        &self.source
    }

    pub fn stats(&self) -> CacheStats {
        CacheStats {
            archives: self.open.len(),
            archives_capacity: self.settings.archives,
            directories: self.dirs.len(),
            directory_bytes: self.dirs.weight(),
            directory_bytes_capacity: self.settings.directory_bytes,
        }
    }

    /// The current version of an archive, opened (and cached) if need be; `None` when there
    /// is no archive of that name.
    pub async fn get(&self, name: &str) -> Result<Option<Arc<OpenArchive>>, ServeError> {
        if let Some(a) = self.open.get(name) {
            let interval = if a.lookup.via_manifest() {
                self.settings.manifest_recheck
            } else {
                self.settings.revalidate
            };
            let stale = self.source.cheap_revalidation()
                || a.checked
                    .lock()
                    .map(|t| t.elapsed() >= interval)
                    .unwrap_or(true);
            if !stale {
                return Ok(Some(a));
            }
            let unchanged = if self.plain {
                self.source.unchanged_plain(name, &a.lookup).await?
            } else {
                self.source.unchanged(name, &a.lookup).await?
            };
            if unchanged {
                if let Ok(mut t) = a.checked.lock() {
                    *t = Instant::now();
                }
                return Ok(Some(a));
            }
            self.forget(name);
        }
        let resolved = if self.plain {
            self.source.resolve_plain(name).await?
        } else {
            self.source.resolve(name).await?
        };
        let Some(resolved) = resolved else {
            return Ok(None);
        };
        let archive = Arc::new(self.load(resolved).await?);
        self.open.insert(name.into(), archive.clone());
        Ok(Some(archive))
    }

    /// Drops an archive from the cache (its leaf directories age out of the LRU: they are keyed
    /// by the old ETag and can no longer be hit).
    pub fn forget(&self, name: &str) {
        self.open.remove(name);
    }

    async fn load(&self, resolved: Resolved) -> Result<OpenArchive, ServeError> {
        let Resolved {
            version,
            lookup,
            manifest_version,
            sprite,
        } = resolved;
        let index = ArchiveIndex::open(&self.source.reader(&version))
            .await
            .map_err(|e| ServeError::from_read(&version.name, e))?;
        Ok(OpenArchive {
            version,
            lookup,
            manifest_version,
            sprite,
            index,
            checked: Mutex::new(Instant::now()),
        })
    }

    /// The stored (possibly compressed) bytes of tile `id`, `None` when the archive has no
    /// such tile.
    pub async fn tile(&self, a: &OpenArchive, id: u64) -> Result<Option<Bytes>, ServeError> {
        let leaves = VersionLeaves {
            dirs: &self.dirs,
            version: &a.version,
        };
        a.index
            .tile(&self.source.reader(&a.version), &leaves, id)
            .await
            .map_err(|e| ServeError::from_read(&a.version.name, e))
    }
}

/// The leaf directories of one archive version in the shared LRU.
struct VersionLeaves<'a> {
    dirs: &'a Cache<DirKey, Leaf, DirWeight>,
    version: &'a Version,
}

impl LeafCache for VersionLeaves<'_> {
    async fn get_or_load<E>(
        &self,
        offset: u64,
        length: u32,
        load: impl Future<Output = Result<Leaf, E>>,
    ) -> Result<Leaf, E> {
        let key: DirKey = (
            self.version.file.clone(),
            self.version.etag.clone(),
            offset,
            length,
        );
        self.dirs.get_or_insert_async(&key, load).await
    }
}
