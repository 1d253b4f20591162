//! Open archives and their directories, cached and bounded. An open archive is one version of
//! the file or object its name resolved to (header, metadata, root directory); leaf directories
//! sit in a shared LRU keyed by that file and version, so a replaced or swapped archive can never
//! be read through an old directory.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use etl_tiles::archive::{
    ArchiveError, Entry, HEADER_LEN, Header, MAX_DIRECTORY_BYTES, MAX_DIRECTORY_DEPTH,
    MAX_METADATA_BYTES, MAX_TILE_BYTES, ROOT_SPACE, decode_directory, decompress, find_entry,
};
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
    fn corrupt(name: &str, error: ArchiveError) -> Self {
        ServeError::Corrupt {
            name: name.to_string(),
            error,
        }
    }
}

/// One version of an archive, ready to answer tile requests.
pub struct OpenArchive {
    pub version: Version,
    pub header: Header,
    pub metadata: serde_json::Value,
    /// How the name resolved (manifest or plain file), re-checked to see a swap.
    pub lookup: Lookup,
    /// The manifest's `version` when the name resolved through a manifest that has one.
    pub manifest_version: Option<String>,
    root: Vec<Entry>,
    /// When the version was last confirmed current.
    checked: Mutex<Instant>,
}

impl std::fmt::Debug for OpenArchive {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OpenArchive")
            .field("version", &self.version)
            .field("lookup", &self.lookup)
            .finish()
    }
}

/// A leaf directory: the file read, its version's ETag and the leaf's offset in the file.
type DirKey = (Arc<str>, Arc<str>, u64);

#[derive(Clone)]
struct DirWeight;

impl Weighter<DirKey, Arc<Vec<Entry>>> for DirWeight {
    fn weight(&self, key: &DirKey, dir: &Arc<Vec<Entry>>) -> u64 {
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
    settings: CacheSettings,
    open: Cache<Arc<str>, Arc<OpenArchive>>,
    dirs: Cache<DirKey, Arc<Vec<Entry>>, DirWeight>,
}

impl Archives {
    pub fn new(source: Source, settings: CacheSettings) -> Archives {
        let dir_items = (settings.directory_bytes / 4096).max(16) as usize;
        Archives {
            source,
            settings,
            open: Cache::new(settings.archives.max(1)),
            dirs: Cache::with_weighter(dir_items, settings.directory_bytes.max(1), DirWeight),
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
            if self.source.unchanged(name, &a.lookup).await? {
                if let Ok(mut t) = a.checked.lock() {
                    *t = Instant::now();
                }
                return Ok(Some(a));
            }
            self.forget(name);
        }
        let Some(resolved) = self.source.resolve(name).await? else {
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
        } = resolved;
        let name = version.name.clone();
        let corrupt = |e| ServeError::corrupt(&name, e);
        // Header and root directory share the first 16 KiB: one read gets both when the root
        // lies there, as the spec asks writers to do.
        let first = self
            .source
            .read(&version, 0, version.len.min(ROOT_SPACE))
            .await?;
        let header = Header::from_bytes(&first).map_err(corrupt)?;
        for (what, offset, length) in [
            ("root directory", header.root_offset, header.root_length),
            ("metadata", header.metadata_offset, header.metadata_length),
            ("leaf directories", header.leaf_offset, header.leaf_length),
            ("tile data", header.data_offset, header.data_length),
        ] {
            if offset
                .checked_add(length)
                .is_none_or(|end| end > version.len)
            {
                return Err(corrupt(ArchiveError::Truncated(format!(
                    "{what} at {offset}+{length} ends beyond the file ({} bytes)",
                    version.len
                ))));
            }
        }
        if header.root_length > MAX_DIRECTORY_BYTES {
            return Err(corrupt(ArchiveError::Directory(format!(
                "root directory is {} bytes",
                header.root_length
            ))));
        }
        if header.metadata_length > MAX_METADATA_BYTES {
            return Err(corrupt(ArchiveError::Metadata(format!(
                "{} bytes",
                header.metadata_length
            ))));
        }
        let root_end = header.root_offset + header.root_length;
        let raw_root = if root_end <= first.len() as u64 && header.root_offset >= HEADER_LEN as u64
        {
            first.slice(header.root_offset as usize..root_end as usize)
        } else {
            self.source
                .read(&version, header.root_offset, header.root_length)
                .await?
        };
        let root = decode_directory(
            &decompress(
                &raw_root,
                header.internal_compression,
                MAX_DIRECTORY_BYTES,
                "root directory",
            )
            .map_err(corrupt)?,
        )
        .map_err(corrupt)?;
        let raw_meta = self
            .source
            .read(&version, header.metadata_offset, header.metadata_length)
            .await?;
        let json = decompress(
            &raw_meta,
            header.internal_compression,
            MAX_METADATA_BYTES,
            "metadata",
        )
        .map_err(corrupt)?;
        let metadata = if json.iter().all(u8::is_ascii_whitespace) {
            serde_json::Value::Object(serde_json::Map::new())
        } else {
            serde_json::from_slice(&json)
                .map_err(|e| corrupt(ArchiveError::Metadata(format!("not valid JSON: {e}"))))?
        };
        Ok(OpenArchive {
            version,
            header,
            metadata,
            lookup,
            manifest_version,
            root,
            checked: Mutex::new(Instant::now()),
        })
    }

    /// The stored (possibly compressed) bytes of tile `id`, `None` when the archive has no
    /// such tile.
    pub async fn tile(&self, a: &OpenArchive, id: u64) -> Result<Option<Bytes>, ServeError> {
        let name = &a.version.name;
        let Some(mut entry) = find_entry(&a.root, id) else {
            return Ok(None);
        };
        let mut depth = 0;
        while entry.is_leaf() {
            depth += 1;
            if depth > MAX_DIRECTORY_DEPTH {
                return Err(ServeError::corrupt(
                    name,
                    ArchiveError::Directory(format!(
                        "leaf directories nested deeper than {MAX_DIRECTORY_DEPTH}"
                    )),
                ));
            }
            let leaf = self.leaf(a, &entry).await?;
            match find_entry(&leaf, id) {
                Some(e) => entry = e,
                None => return Ok(None),
            }
        }
        if id - entry.tile_id >= u64::from(entry.run_length) {
            return Ok(None);
        }
        if entry
            .offset
            .checked_add(u64::from(entry.length))
            .is_none_or(|end| end > a.header.data_length)
            || u64::from(entry.length) > MAX_TILE_BYTES
        {
            return Err(ServeError::corrupt(
                name,
                ArchiveError::Entry(format!(
                    "tile id {id}: {}+{} is outside the tile data",
                    entry.offset, entry.length
                )),
            ));
        }
        let bytes = self
            .source
            .read(
                &a.version,
                a.header.data_offset + entry.offset,
                u64::from(entry.length),
            )
            .await?;
        Ok(Some(bytes))
    }

    async fn leaf(&self, a: &OpenArchive, e: &Entry) -> Result<Arc<Vec<Entry>>, ServeError> {
        let h = &a.header;
        let name = &a.version.name;
        if e.offset
            .checked_add(u64::from(e.length))
            .is_none_or(|end| end > h.leaf_length)
        {
            return Err(ServeError::corrupt(
                name,
                ArchiveError::Directory(format!(
                    "leaf directory {}+{} is outside the leaf section",
                    e.offset, e.length
                )),
            ));
        }
        let key: DirKey = (a.version.file.clone(), a.version.etag.clone(), e.offset);
        self.dirs
            .get_or_insert_async(&key, async {
                let raw = self
                    .source
                    .read(&a.version, h.leaf_offset + e.offset, u64::from(e.length))
                    .await?;
                let entries = decode_directory(
                    &decompress(
                        &raw,
                        h.internal_compression,
                        MAX_DIRECTORY_BYTES,
                        "leaf directory",
                    )
                    .map_err(|err| ServeError::corrupt(name, err))?,
                )
                .map_err(|err| ServeError::corrupt(name, err))?;
                Ok::<_, ServeError>(Arc::new(entries))
            })
            .await
    }
}
