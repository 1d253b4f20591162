//! Synchronous PMTiles v3 reader over any `Read + Seek`. Every length read from the file is
//! checked against the file and section sizes before anything is allocated, so a corrupt
//! archive gives an error, never a panic or a huge allocation.

use std::io::{Read, Seek, SeekFrom};

use super::{
    ArchiveError, Entry, HEADER_LEN, Header, MAX_DIRECTORY_BYTES, MAX_DIRECTORY_DEPTH,
    MAX_METADATA_BYTES, MAX_TILE_BYTES, decode_directory, decompress,
};
use crate::tile::{TileCoord, tile_id};

/// An open PMTiles v3 archive.
pub struct Archive<R: Read + Seek> {
    r: R,
    file_len: u64,
    header: Header,
    root: Vec<Entry>,
    metadata: serde_json::Value,
    /// The last leaf directory read (its offset in the leaf section and entries): lookups in
    /// tile-id order hit the same leaf thousands of times in a row.
    leaf_cache: Option<(u64, Vec<Entry>)>,
}

impl<R: Read + Seek> Archive<R> {
    /// Opens an archive that spans the whole stream.
    pub fn open(mut r: R) -> Result<Self, ArchiveError> {
        let file_len = r.seek(SeekFrom::End(0))?;
        Self::open_with_len(r, file_len)
    }

    /// Opens an archive of `file_len` bytes starting at position 0 of the stream.
    pub fn open_with_len(mut r: R, file_len: u64) -> Result<Self, ArchiveError> {
        let head_len = file_len.min(HEADER_LEN as u64);
        let head = read_at(&mut r, file_len, 0, head_len, "header")?;
        let header = Header::from_bytes(&head)?;
        for (name, offset, length) in [
            ("root directory", header.root_offset, header.root_length),
            ("metadata", header.metadata_offset, header.metadata_length),
            ("leaf directories", header.leaf_offset, header.leaf_length),
            ("tile data", header.data_offset, header.data_length),
        ] {
            check_within(name, offset, length, file_len)?;
        }
        if header.root_length > MAX_DIRECTORY_BYTES {
            return Err(ArchiveError::Directory(format!(
                "root directory is {} bytes, over {MAX_DIRECTORY_BYTES}",
                header.root_length
            )));
        }
        let raw = read_at(
            &mut r,
            file_len,
            header.root_offset,
            header.root_length,
            "root",
        )?;
        let root = decode_directory(&decompress(
            &raw,
            header.internal_compression,
            MAX_DIRECTORY_BYTES,
            "root directory",
        )?)?;
        if header.metadata_length > MAX_METADATA_BYTES {
            return Err(ArchiveError::Metadata(format!(
                "{} bytes, over {MAX_METADATA_BYTES}",
                header.metadata_length
            )));
        }
        let raw = read_at(
            &mut r,
            file_len,
            header.metadata_offset,
            header.metadata_length,
            "metadata",
        )?;
        let json = decompress(
            &raw,
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
        Ok(Self {
            r,
            file_len,
            header,
            root,
            metadata,
            leaf_cache: None,
        })
    }

    pub fn header(&self) -> &Header {
        &self.header
    }

    pub fn metadata(&self) -> &serde_json::Value {
        &self.metadata
    }

    /// The length of the archive in bytes.
    pub fn file_len(&self) -> u64 {
        self.file_len
    }

    pub fn into_inner(self) -> R {
        self.r
    }

    /// The (still compressed) bytes of a tile, or `None` when the archive does not have it.
    pub fn get_tile(&mut self, c: TileCoord) -> Result<Option<Vec<u8>>, ArchiveError> {
        self.get_tile_by_id(tile_id(c))
    }

    pub fn get_tile_by_id(&mut self, id: u64) -> Result<Option<Vec<u8>>, ArchiveError> {
        let Some(mut entry) = find_entry(&self.root, id) else {
            return Ok(None);
        };
        let mut depth = 0;
        while entry.is_leaf() {
            depth += 1;
            if depth > MAX_DIRECTORY_DEPTH {
                return Err(ArchiveError::Directory(format!(
                    "leaf directories nested deeper than {MAX_DIRECTORY_DEPTH}"
                )));
            }
            let cached = matches!(&self.leaf_cache, Some((off, _)) if *off == entry.offset);
            if !cached {
                let leaf = self.read_leaf(&entry)?;
                self.leaf_cache = Some((entry.offset, leaf));
            }
            let leaf = self
                .leaf_cache
                .as_ref()
                .map(|(_, l)| l.as_slice())
                .unwrap_or(&[]);
            match find_entry(leaf, id) {
                Some(e) => entry = e,
                None => return Ok(None),
            }
        }
        if id - entry.tile_id >= u64::from(entry.run_length) {
            return Ok(None);
        }
        self.read_tile(&entry).map(Some)
    }

    /// The bytes a tile entry points to, checked against the data section.
    pub fn read_tile(&mut self, e: &Entry) -> Result<Vec<u8>, ArchiveError> {
        let end = e.offset.checked_add(u64::from(e.length));
        if end.is_none_or(|end| end > self.header.data_length) {
            return Err(ArchiveError::Entry(format!(
                "tile id {}: offset {} + length {} beyond data section end {}",
                e.tile_id, e.offset, e.length, self.header.data_length
            )));
        }
        if u64::from(e.length) > MAX_TILE_BYTES {
            return Err(ArchiveError::Entry(format!(
                "tile id {}: length {} over {MAX_TILE_BYTES}",
                e.tile_id, e.length
            )));
        }
        let abs = self.header.data_offset + e.offset;
        read_at(&mut self.r, self.file_len, abs, u64::from(e.length), "tile")
    }

    fn read_leaf(&mut self, e: &Entry) -> Result<Vec<Entry>, ArchiveError> {
        let end = e.offset.checked_add(u64::from(e.length));
        if end.is_none_or(|end| end > self.header.leaf_length) {
            return Err(ArchiveError::Directory(format!(
                "leaf directory for tile id {}: offset {} + length {} beyond leaf section end {}",
                e.tile_id, e.offset, e.length, self.header.leaf_length
            )));
        }
        if u64::from(e.length) > MAX_DIRECTORY_BYTES {
            return Err(ArchiveError::Directory(format!(
                "leaf directory for tile id {}: {} bytes, over {MAX_DIRECTORY_BYTES}",
                e.tile_id, e.length
            )));
        }
        let abs = self.header.leaf_offset + e.offset;
        let raw = read_at(&mut self.r, self.file_len, abs, u64::from(e.length), "leaf")?;
        decode_directory(&decompress(
            &raw,
            self.header.internal_compression,
            MAX_DIRECTORY_BYTES,
            "leaf directory",
        )?)
    }

    /// All tile entries in directory order, walking leaf directories depth-first. Each leaf is
    /// read once; memory is one directory per nesting level.
    pub fn entries(&mut self) -> Entries<'_, R> {
        let root = self.root.clone();
        let leaf_budget = self.header.leaf_length;
        Entries {
            archive: self,
            stack: vec![(root, 0)],
            leaf_budget,
            failed: false,
        }
    }
}

/// Iterator over the tile entries of an [`Archive`]; see [`Archive::entries`].
pub struct Entries<'a, R: Read + Seek> {
    archive: &'a mut Archive<R>,
    stack: Vec<(Vec<Entry>, usize)>,
    /// Leaf bytes not yet read. A valid archive reads each leaf once, so the total cannot
    /// exceed the leaf section; a cyclic or repeating directory runs out of budget instead of
    /// walking forever.
    leaf_budget: u64,
    failed: bool,
}

impl<R: Read + Seek> Iterator for Entries<'_, R> {
    type Item = Result<Entry, ArchiveError>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.failed {
            return None;
        }
        loop {
            let depth = self.stack.len();
            let (dir, idx) = self.stack.last_mut()?;
            let Some(&e) = dir.get(*idx) else {
                self.stack.pop();
                continue;
            };
            *idx += 1;
            if !e.is_leaf() {
                return Some(Ok(e));
            }
            let result = if depth > MAX_DIRECTORY_DEPTH {
                Err(ArchiveError::Directory(format!(
                    "leaf directories nested deeper than {MAX_DIRECTORY_DEPTH}"
                )))
            } else if u64::from(e.length) > self.leaf_budget {
                Err(ArchiveError::Directory(format!(
                    "leaf directories for tile id {} repeat or overlap (more bytes than the leaf section)",
                    e.tile_id
                )))
            } else {
                self.leaf_budget -= u64::from(e.length);
                self.archive.read_leaf(&e)
            };
            match result {
                Ok(leaf) => self.stack.push((leaf, 0)),
                Err(err) => {
                    self.failed = true;
                    return Some(Err(err));
                }
            }
        }
    }
}

/// The entry covering `id`: the last entry whose tile id is <= `id` (a leaf pointer or a
/// run that may or may not reach `id`).
/// The entry of a sorted directory that covers tile `id`: the last one with a tile id at or
/// below it. The caller checks the run length (tile) or descends (leaf).
pub fn find_entry(entries: &[Entry], id: u64) -> Option<Entry> {
    let n = entries.partition_point(|e| e.tile_id <= id);
    n.checked_sub(1).and_then(|i| entries.get(i)).copied()
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

/// Reads `len` bytes at `offset`, after checking they lie within the file, so a corrupt length
/// can never allocate more than the file holds.
fn read_at<R: Read + Seek>(
    r: &mut R,
    file_len: u64,
    offset: u64,
    len: u64,
    what: &str,
) -> Result<Vec<u8>, ArchiveError> {
    check_within(what, offset, len, file_len)?;
    let len = usize::try_from(len)
        .map_err(|_| ArchiveError::Truncated(format!("{what}: length {len} too large")))?;
    r.seek(SeekFrom::Start(offset))?;
    let mut buf = vec![0u8; len];
    r.read_exact(&mut buf).map_err(|e| {
        if e.kind() == std::io::ErrorKind::UnexpectedEof {
            ArchiveError::Truncated(format!("{what} at offset {offset}: file ends early"))
        } else {
            ArchiveError::Io(e)
        }
    })?;
    Ok(buf)
}
