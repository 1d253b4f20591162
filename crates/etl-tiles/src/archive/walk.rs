//! The one PMTiles v3 read path: header → root directory → leaf directories → tile entry →
//! tile bytes, over any [`RangeReader`]. The synchronous [`super::Archive`] (merge, verify,
//! summary, the jobs) and the tile server both read through it; each plugs in its own reader and
//! its own leaf-directory cache ([`LeafCache`]).
//!
//! Every offset and length read from the archive is checked against the file, its section and
//! the limits in [`super`] before anything is read or allocated, so a corrupt or hostile
//! archive gives an error, never a panic, a huge allocation or an endless walk.

use std::cell::RefCell;
use std::future::Future;
use std::sync::Arc;

use bytes::Bytes;

use super::range::{RangeReader, ReadError};
use super::{
    ArchiveError, Entry, HEADER_LEN, Header, MAX_DIRECTORY_BYTES, MAX_DIRECTORY_DEPTH,
    MAX_METADATA_BYTES, MAX_TILE_BYTES, ROOT_SPACE, decode_directory, decompress,
};

/// A decoded leaf directory, shared between a cache and the lookups using it.
pub type Leaf = Arc<Vec<Entry>>;

/// Where a walk keeps the leaf directories it reads. The walk checks a leaf pointer before it
/// asks, and `load` reads and decodes the leaf with every check; a cache only decides whether
/// to run `load`.
///
/// A cache must belong to one version of one archive (or key its entries by that version, as
/// the tile server's does): the key here is only the leaf's place in that archive.
pub trait LeafCache {
    /// The leaf directory of `length` bytes at `offset` in the leaf section: a kept one, or the
    /// result of `load` (kept when it succeeds).
    fn get_or_load<E>(
        &self,
        offset: u64,
        length: u32,
        load: impl Future<Output = Result<Leaf, E>>,
    ) -> impl Future<Output = Result<Leaf, E>>;
}

/// Keeps nothing: every lookup reads its leaves.
pub struct NoCache;

impl LeafCache for NoCache {
    async fn get_or_load<E>(
        &self,
        _offset: u64,
        _length: u32,
        load: impl Future<Output = Result<Leaf, E>>,
    ) -> Result<Leaf, E> {
        load.await
    }
}

/// Keeps the last leaf read: lookups in tile-id order hit the same leaf thousands of times in a
/// row. Single-threaded.
#[derive(Default)]
pub struct LastLeaf(RefCell<Option<((u64, u32), Leaf)>>);

impl LeafCache for LastLeaf {
    async fn get_or_load<E>(
        &self,
        offset: u64,
        length: u32,
        load: impl Future<Output = Result<Leaf, E>>,
    ) -> Result<Leaf, E> {
        let kept = match &*self.0.borrow() {
            Some((key, leaf)) if *key == (offset, length) => Some(leaf.clone()),
            _ => None,
        };
        if let Some(leaf) = kept {
            return Ok(leaf);
        }
        let leaf = load.await?;
        *self.0.borrow_mut() = Some(((offset, length), leaf.clone()));
        Ok(leaf)
    }
}

/// What opening an archive reads: its header, metadata and root directory. Tiles are then
/// looked up through the same reader (or another reader of the same version).
#[derive(Debug, Clone)]
pub struct ArchiveIndex {
    header: Header,
    metadata: serde_json::Value,
    root: Vec<Entry>,
}

impl ArchiveIndex {
    /// Reads and checks the header, root directory and metadata. A spec-conforming archive
    /// (root directory within the first 16 KiB) takes two reads: the first 16 KiB, then the
    /// metadata.
    pub async fn open<R: RangeReader>(r: &R) -> Result<Self, ReadError<R::Error>> {
        let size = r.size();
        let first = read(r, 0, size.min(ROOT_SPACE), "header").await?;
        let header = Header::from_bytes(&first)?;
        for (name, offset, length) in [
            ("root directory", header.root_offset, header.root_length),
            ("metadata", header.metadata_offset, header.metadata_length),
            ("leaf directories", header.leaf_offset, header.leaf_length),
            ("tile data", header.data_offset, header.data_length),
        ] {
            check_within(name, offset, length, size)?;
        }
        if header.root_length > MAX_DIRECTORY_BYTES {
            return Err(ArchiveError::Directory(format!(
                "root directory is {} bytes, over {MAX_DIRECTORY_BYTES}",
                header.root_length
            ))
            .into());
        }
        if header.metadata_length > MAX_METADATA_BYTES {
            return Err(ArchiveError::Metadata(format!(
                "{} bytes, over {MAX_METADATA_BYTES}",
                header.metadata_length
            ))
            .into());
        }
        // Both lie within the file (checked above), and the file within `first` here.
        let root_end = header.root_offset + header.root_length;
        let raw_root = if header.root_offset >= HEADER_LEN as u64 && root_end <= first.len() as u64
        {
            first.slice(header.root_offset as usize..root_end as usize)
        } else {
            read(r, header.root_offset, header.root_length, "root").await?
        };
        let root = decode_directory(&decompress(
            &raw_root,
            header.internal_compression,
            MAX_DIRECTORY_BYTES,
            "root directory",
        )?)?;
        let raw_meta = read(
            r,
            header.metadata_offset,
            header.metadata_length,
            "metadata",
        )
        .await?;
        let json = decompress(
            &raw_meta,
            header.internal_compression,
            MAX_METADATA_BYTES,
            "metadata",
        )
        .map_err(|e| ArchiveError::Metadata(e.to_string()))?;
        // Some writers leave metadata empty; that means "no metadata", not corruption.
        let metadata = if json.iter().all(u8::is_ascii_whitespace) {
            serde_json::Value::Object(serde_json::Map::new())
        } else {
            serde_json::from_slice(&json)
                .map_err(|e| ArchiveError::Metadata(format!("not valid JSON: {e}")))?
        };
        Ok(ArchiveIndex {
            header,
            metadata,
            root,
        })
    }

    pub fn header(&self) -> &Header {
        &self.header
    }

    pub fn metadata(&self) -> &serde_json::Value {
        &self.metadata
    }

    pub fn root(&self) -> &[Entry] {
        &self.root
    }

    /// The tile-run entry covering tile `id`, `None` when the archive does not have the tile.
    /// Leaf directories come from `leaves` or are read through `r`.
    pub async fn find<R: RangeReader, C: LeafCache>(
        &self,
        r: &R,
        leaves: &C,
        id: u64,
    ) -> Result<Option<Entry>, ReadError<R::Error>> {
        let Some(mut entry) = find_entry(&self.root, id) else {
            return Ok(None);
        };
        let mut depth = 0;
        while entry.is_leaf() {
            depth += 1;
            if depth > MAX_DIRECTORY_DEPTH {
                return Err(ArchiveError::Directory(format!(
                    "leaf directories nested deeper than {MAX_DIRECTORY_DEPTH}"
                ))
                .into());
            }
            check_leaf(&self.header, &entry)?;
            let leaf = leaves
                .get_or_load(entry.offset, entry.length, async {
                    read_leaf(r, &self.header, &entry).await.map(Arc::new)
                })
                .await?;
            match find_entry(&leaf, id) {
                Some(e) => entry = e,
                None => return Ok(None),
            }
        }
        // `find_entry` returns an entry at or below `id`.
        if id - entry.tile_id >= u64::from(entry.run_length) {
            return Ok(None);
        }
        Ok(Some(entry))
    }

    /// The stored (possibly compressed) bytes of tile `id`, `None` when the archive does not
    /// have it.
    pub async fn tile<R: RangeReader, C: LeafCache>(
        &self,
        r: &R,
        leaves: &C,
        id: u64,
    ) -> Result<Option<Bytes>, ReadError<R::Error>> {
        match self.find(r, leaves, id).await? {
            Some(e) => read_tile(r, &self.header, &e).await.map(Some),
            None => Ok(None),
        }
    }
}

/// The entry of a sorted directory that covers tile `id`: the last one with a tile id at or
/// below it. The caller checks the run length (tile) or descends (leaf).
pub fn find_entry(entries: &[Entry], id: u64) -> Option<Entry> {
    let n = entries.partition_point(|e| e.tile_id <= id);
    n.checked_sub(1).and_then(|i| entries.get(i)).copied()
}

/// The bytes a tile entry points to, checked against the data section.
pub async fn read_tile<R: RangeReader>(
    r: &R,
    h: &Header,
    e: &Entry,
) -> Result<Bytes, ReadError<R::Error>> {
    check_entry(e, "data", h.data_length, MAX_TILE_BYTES)
        .map_err(|m| ArchiveError::Entry(format!("tile id {}: {m}", e.tile_id)))?;
    let abs = absolute(h.data_offset, e.offset, "tile")?;
    read(r, abs, u64::from(e.length), "tile").await
}

/// Checks a leaf pointer against the leaf section and the directory limit.
fn check_leaf(h: &Header, e: &Entry) -> Result<(), ArchiveError> {
    check_entry(e, "leaf", h.leaf_length, MAX_DIRECTORY_BYTES).map_err(|m| {
        ArchiveError::Directory(format!("leaf directory for tile id {}: {m}", e.tile_id))
    })
}

/// Checks that what entry `e` points to lies within its section (`section_len` bytes) and is
/// at most `limit` bytes; the problem, if any, in words (only then is a message built: this
/// runs on every lookup).
pub(super) fn check_entry(
    e: &Entry,
    section: &str,
    section_len: u64,
    limit: u64,
) -> Result<(), String> {
    let end = e.offset.checked_add(u64::from(e.length));
    if end.is_none_or(|end| end > section_len) {
        return Err(format!(
            "offset {} + length {} beyond {section} section end {section_len}",
            e.offset, e.length
        ));
    }
    if u64::from(e.length) > limit {
        return Err(format!("{} bytes, over {limit}", e.length));
    }
    Ok(())
}

/// Reads and decodes the leaf directory a leaf entry points to.
pub async fn read_leaf<R: RangeReader>(
    r: &R,
    h: &Header,
    e: &Entry,
) -> Result<Vec<Entry>, ReadError<R::Error>> {
    check_leaf(h, e)?;
    let abs = absolute(h.leaf_offset, e.offset, "leaf")?;
    let raw = read(r, abs, u64::from(e.length), "leaf").await?;
    Ok(decode_directory(&decompress(
        &raw,
        h.internal_compression,
        MAX_DIRECTORY_BYTES,
        "leaf directory",
    )?)?)
}

pub(super) fn absolute(section: u64, offset: u64, what: &str) -> Result<u64, ArchiveError> {
    section.checked_add(offset).ok_or_else(|| {
        ArchiveError::Truncated(format!("{what} at offset {section} + {offset}: past 2^64"))
    })
}

pub(crate) fn check_within(
    name: &str,
    offset: u64,
    length: u64,
    file_len: u64,
) -> Result<(), ArchiveError> {
    match offset.checked_add(length) {
        Some(end) if end <= file_len => Ok(()),
        _ => Err(ArchiveError::Truncated(format!(
            "{name} at offset {offset} + length {length} ends beyond the file length {file_len}"
        ))),
    }
}

/// Reads `len` bytes at `offset`, after checking they lie within the archive, so a corrupt
/// length never reaches the reader (nor its allocation).
pub(super) async fn read<R: RangeReader>(
    r: &R,
    offset: u64,
    len: u64,
    what: &str,
) -> Result<Bytes, ReadError<R::Error>> {
    check_within(what, offset, len, r.size())?;
    r.read_range(offset, len).await.map_err(ReadError::Source)
}
