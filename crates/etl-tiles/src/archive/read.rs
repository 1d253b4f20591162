//! Synchronous PMTiles v3 reader over any `Read + Seek`: the read path of [`super::walk`] over
//! an [`IoReader`], driven to completion on the calling thread, with the last leaf directory
//! kept. Every length read from the file is checked against the file and section sizes before
//! anything is allocated, so a corrupt archive gives an error, never a panic or a huge
//! allocation.

use std::io::{Read, Seek};

use bytes::Bytes;

use super::range::{IoReader, RangeReader, now};
use super::walk::{ArchiveIndex, LastLeaf, read_leaf, read_tile};
use super::{ArchiveError, Entry, Header, MAX_DIRECTORY_DEPTH};
use crate::tile::{TileCoord, tile_id};

/// An open PMTiles v3 archive.
pub struct Archive<R: Read + Seek> {
    r: IoReader<R>,
    index: ArchiveIndex,
    /// The last leaf directory read: lookups in tile-id order hit the same leaf thousands of
    /// times in a row.
    leaves: LastLeaf,
}

impl<R: Read + Seek> Archive<R> {
    /// Opens an archive that spans the whole stream.
    pub fn open(r: R) -> Result<Self, ArchiveError> {
        Self::from_reader(IoReader::whole(r)?)
    }

    /// Opens an archive of `file_len` bytes starting at position 0 of the stream.
    pub fn open_with_len(r: R, file_len: u64) -> Result<Self, ArchiveError> {
        Self::from_reader(IoReader::new(r, file_len))
    }

    fn from_reader(r: IoReader<R>) -> Result<Self, ArchiveError> {
        let index = now(ArchiveIndex::open(&r))?;
        Ok(Self {
            r,
            index,
            leaves: LastLeaf::default(),
        })
    }

    pub fn header(&self) -> &Header {
        self.index.header()
    }

    pub fn metadata(&self) -> &serde_json::Value {
        self.index.metadata()
    }

    /// The length of the archive in bytes.
    pub fn file_len(&self) -> u64 {
        self.r.size()
    }

    pub fn into_inner(self) -> R {
        self.r.into_inner()
    }

    /// The (still compressed) bytes of a tile, or `None` when the archive does not have it.
    pub fn get_tile(&mut self, c: TileCoord) -> Result<Option<Vec<u8>>, ArchiveError> {
        self.get_tile_by_id(tile_id(c))
    }

    pub fn get_tile_by_id(&mut self, id: u64) -> Result<Option<Vec<u8>>, ArchiveError> {
        let tile = now(self.index.tile(&self.r, &self.leaves, id))?;
        Ok(tile.map(Vec::from))
    }

    /// The bytes a tile entry points to, checked against the data section.
    pub fn read_tile(&mut self, e: &Entry) -> Result<Vec<u8>, ArchiveError> {
        self.tile_bytes(e).map(Vec::from)
    }

    /// [`Archive::read_tile`] through a shared borrow, so tiles can be read while
    /// [`Archive::walk_entries`] walks the same archive (the merge does).
    pub(crate) fn tile_bytes(&self, e: &Entry) -> Result<Bytes, ArchiveError> {
        Ok(now(read_tile(&self.r, self.index.header(), e))?)
    }

    fn read_leaf(&self, e: &Entry) -> Result<Vec<Entry>, ArchiveError> {
        Ok(now(read_leaf(&self.r, self.index.header(), e))?)
    }

    /// All tile entries in directory order, walking leaf directories depth-first. Each leaf is
    /// read once; memory is one directory per nesting level.
    pub fn entries(&mut self) -> Entries<'_, R> {
        self.walk_entries()
    }

    /// [`Archive::entries`] through a shared borrow.
    pub(crate) fn walk_entries(&self) -> Entries<'_, R> {
        let root = self.index.root().to_vec();
        let leaf_budget = self.index.header().leaf_length;
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
    archive: &'a Archive<R>,
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
