//! Streaming PMTiles v3 writer: tiles go straight to the output in tile-id order; only the
//! directory entries (24 bytes per distinct run) and a bounded dedup cache stay in memory.

use std::collections::HashMap;
use std::io::{Seek, SeekFrom, Write};

use super::{
    ArchiveError, Compression, Entry, HEADER_LEN, Header, ROOT_SPACE, TileType, encode_directory,
    gzip,
};
use crate::tile::{TILE_ID_END, tile_zoom};

/// Tiles up to this size are remembered for deduplication. Repeated tiles in real tilesets are
/// small (ocean, land fill, empty-ish edges); large tiles are almost never byte-identical, so
/// remembering them would spend memory for nothing.
const DEDUP_MAX_TILE_BYTES: usize = 4 << 10;
/// Default bytes the dedup cache may hold (tile contents plus [`DEDUP_ENTRY_OVERHEAD`] each);
/// once full, new contents are written without being remembered (correct, just less
/// deduplicated). Bounds memory on huge runs; see [`ArchiveWriter::set_dedup_cache_bytes`].
pub const DEDUP_CACHE_BYTES: usize = 16 << 20;
/// What one remembered content costs besides its bytes: the key's `Vec`, the location and the
/// hash table's slot at its load factor.
const DEDUP_ENTRY_OVERHEAD: usize = 64;

/// What the archive header and metadata say about the tileset.
#[derive(Debug, Clone, PartialEq)]
pub struct ArchiveMeta {
    /// Used only when the archive has no tiles; otherwise the zooms of the tiles are written,
    /// because readers (and `verify`) expect the header to match the entries.
    pub min_zoom: u8,
    pub max_zoom: u8,
    /// west, south, east, north in degrees.
    pub bounds: [f64; 4],
    /// longitude, latitude, zoom.
    pub center: (f64, f64, u8),
    /// The JSON metadata: `vector_layers`, `name`, `attribution`, `generator`...
    pub metadata: serde_json::Value,
}

#[derive(Clone, Copy)]
struct Location {
    offset: u64,
    length: u32,
}

/// Writes a clustered, deduplicated PMTiles v3 archive of gzip-compressed MVT tiles.
pub struct ArchiveWriter<W: Write + Seek> {
    out: W,
    /// Stream position of the archive's first byte, so the archive may be embedded.
    base: u64,
    /// Bytes of tile data written so far (= offset of the next new tile).
    data_len: u64,
    entries: Vec<Entry>,
    /// The previous tile's bytes, to extend runs of identical consecutive tiles regardless of
    /// their size.
    prev: Vec<u8>,
    /// Exact-content dedup: a `HashMap` keyed by the bytes compares the bytes on every hash
    /// match, so a hash collision can never alias two different tiles.
    seen: HashMap<Vec<u8>, Location>,
    seen_bytes: usize,
    seen_limit: usize,
    addressed: u64,
    contents: u64,
    tile_type: TileType,
    tile_compression: Compression,
}

impl<W: Write + Seek> ArchiveWriter<W> {
    /// Starts an archive at the current position of `out`.
    pub fn new(mut out: W) -> Result<Self, ArchiveError> {
        let base = out.stream_position()?;
        // Reserve the header and root directory space; both are written by `finish`.
        out.write_all(&[0u8; ROOT_SPACE as usize])?;
        Ok(Self {
            out,
            base,
            data_len: 0,
            entries: Vec::new(),
            prev: Vec::new(),
            seen: HashMap::new(),
            seen_bytes: 0,
            seen_limit: DEDUP_CACHE_BYTES,
            addressed: 0,
            contents: 0,
            tile_type: TileType::Mvt,
            tile_compression: Compression::Gzip,
        })
    }

    /// Declares what the tiles are (default: gzip-compressed MVT), e.g. PNG tiles stored
    /// without compression when converting a raster tileset.
    pub fn set_tile_format(&mut self, tile_type: TileType, tile_compression: Compression) {
        self.tile_type = tile_type;
        self.tile_compression = tile_compression;
    }

    /// Sets the memory the dedup cache may hold (default [`DEDUP_CACHE_BYTES`]); 0 turns
    /// deduplication of non-consecutive tiles off (runs of identical consecutive tiles are still
    /// one entry). Contents already remembered stay.
    pub fn set_dedup_cache_bytes(&mut self, bytes: usize) {
        self.seen_limit = bytes;
    }

    /// Distinct tile contents stored so far (after deduplication).
    pub fn contents(&self) -> u64 {
        self.contents
    }

    /// Adds one tile. Tiles MUST come in increasing tile id (that is what makes the archive
    /// clustered); an out-of-order or repeated id is an error. `data` is the already
    /// gzip-compressed MVT and must not be empty.
    pub fn add_tile(&mut self, id: u64, data: &[u8]) -> Result<(), ArchiveError> {
        if id >= TILE_ID_END {
            return Err(ArchiveError::InvalidTileId(id));
        }
        if data.is_empty() {
            return Err(ArchiveError::EmptyTile(id));
        }
        let length = u32::try_from(data.len()).map_err(|_| ArchiveError::TileTooLarge {
            id,
            len: data.len(),
        })?;
        if let Some(last) = self.entries.last_mut() {
            // Last tile id covered so far; run_length >= 1 for tile entries.
            let last_id = last.tile_id + u64::from(last.run_length) - 1;
            if id <= last_id {
                return Err(ArchiveError::OutOfOrder { id, last: last_id });
            }
            if id == last_id + 1 && last.run_length < u32::MAX && self.prev == data {
                last.run_length += 1;
                self.addressed += 1;
                return Ok(());
            }
        }
        let loc = match self.seen.get(data) {
            Some(loc) => *loc,
            None => {
                let loc = Location {
                    offset: self.data_len,
                    length,
                };
                self.out.write_all(data)?;
                self.data_len += u64::from(length);
                self.contents += 1;
                let cost = data.len() + DEDUP_ENTRY_OVERHEAD;
                if data.len() <= DEDUP_MAX_TILE_BYTES && self.seen_bytes + cost <= self.seen_limit {
                    self.seen.insert(data.to_vec(), loc);
                    self.seen_bytes += cost;
                }
                loc
            }
        };
        self.entries.push(Entry {
            tile_id: id,
            offset: loc.offset,
            length: loc.length,
            run_length: 1,
        });
        self.prev.clear();
        self.prev.extend_from_slice(data);
        self.addressed += 1;
        Ok(())
    }

    /// Adds `run` consecutive tiles from `id` on, all holding `data` (the interior of a large
    /// polygon): written once, addressed by one directory entry (more only past `u32::MAX`
    /// tiles). The same rules as [`ArchiveWriter::add_tile`]; a `run` of 0 adds nothing.
    pub fn add_tile_run(&mut self, id: u64, run: u64, data: &[u8]) -> Result<(), ArchiveError> {
        if run == 0 {
            return Ok(());
        }
        let last_id = id
            .checked_add(run - 1)
            .filter(|l| *l < TILE_ID_END)
            .ok_or(ArchiveError::InvalidTileId(id.saturating_add(run - 1)))?;
        self.add_tile(id, data)?;
        let mut left = last_id - id;
        while left > 0 {
            let Some(last) = self.entries.last_mut() else {
                return Err(ArchiveError::InvalidTileId(id));
            };
            let room = u64::from(u32::MAX - last.run_length);
            if room == 0 {
                let next = Entry {
                    tile_id: last.tile_id + u64::from(last.run_length),
                    offset: last.offset,
                    length: last.length,
                    run_length: 1,
                };
                self.entries.push(next);
                self.addressed += 1;
                left -= 1;
                continue;
            }
            let take = room.min(left);
            // `take <= room`, which fits the u32 run length.
            last.run_length += u32::try_from(take).map_err(|_| ArchiveError::InvalidTileId(id))?;
            self.addressed += take;
            left -= take;
        }
        Ok(())
    }

    /// Writes metadata, directories and header, and returns the output positioned at the end
    /// of the archive.
    pub fn finish(mut self, meta: &ArchiveMeta) -> Result<W, ArchiveError> {
        // Free the dedup cache before building directories, which may need memory.
        self.seen = HashMap::new();
        self.prev = Vec::new();

        let data_offset = ROOT_SPACE;
        let metadata_offset = data_offset + self.data_len;
        let metadata_json = serde_json::to_vec(&meta.metadata)
            .map_err(|e| ArchiveError::Meta(format!("cannot serialise metadata: {e}")))?;
        let metadata = gzip(&metadata_json)?;
        self.out.write_all(&metadata)?;
        let leaf_offset = metadata_offset + metadata.len() as u64;

        let (root, leaves) = build_directories(&self.entries)?;
        let mut leaf_length = 0u64;
        for leaf in &leaves {
            self.out.write_all(leaf)?;
            leaf_length += leaf.len() as u64;
        }
        let end = self.out.stream_position()?;

        let (min_zoom, max_zoom) = match (self.entries.first(), self.entries.last()) {
            (Some(first), Some(last)) => {
                let last_id = last.tile_id + u64::from(last.run_length) - 1;
                (
                    tile_zoom(first.tile_id).unwrap_or(meta.min_zoom),
                    tile_zoom(last_id).unwrap_or(meta.max_zoom),
                )
            }
            _ => (meta.min_zoom, meta.max_zoom),
        };
        let header = Header {
            version: 3,
            root_offset: HEADER_LEN as u64,
            root_length: root.len() as u64,
            metadata_offset,
            metadata_length: metadata.len() as u64,
            leaf_offset: if leaves.is_empty() { 0 } else { leaf_offset },
            leaf_length,
            data_offset,
            data_length: self.data_len,
            addressed_tiles: self.addressed,
            tile_entries: self.entries.len() as u64,
            tile_contents: self.contents,
            clustered: true,
            internal_compression: Compression::Gzip,
            tile_compression: self.tile_compression,
            tile_type: self.tile_type,
            min_zoom,
            max_zoom,
            bounds: meta.bounds,
            center_zoom: meta.center.2,
            center_lon: meta.center.0,
            center_lat: meta.center.1,
        };
        self.out.seek(SeekFrom::Start(self.base))?;
        self.out.write_all(&header.to_bytes())?;
        self.out.write_all(&root)?;
        self.out.seek(SeekFrom::Start(end))?;
        self.out.flush()?;
        Ok(self.out)
    }
}

/// Builds the gzip-compressed root directory and leaf directories. The root must fit in the
/// reserved space after the header; when all entries do not fit, they are split into leaves
/// of growing size until the root of leaf pointers fits (the go-pmtiles/planetiler method).
fn build_directories(entries: &[Entry]) -> Result<(Vec<u8>, Vec<Vec<u8>>), ArchiveError> {
    let max_root = ROOT_SPACE - HEADER_LEN as u64;
    let root = gzip(&encode_directory(entries))?;
    if root.len() as u64 <= max_root {
        return Ok((root, Vec::new()));
    }
    let mut leaf_size = (entries.len() / 3500).max(4096);
    loop {
        let mut leaves = Vec::new();
        let mut pointers = Vec::new();
        let mut offset = 0u64;
        for chunk in entries.chunks(leaf_size) {
            let Some(first) = chunk.first() else { continue };
            let leaf = gzip(&encode_directory(chunk))?;
            let length = u32::try_from(leaf.len())
                .map_err(|_| ArchiveError::Directory("leaf directory over 4 GiB".into()))?;
            pointers.push(Entry {
                tile_id: first.tile_id,
                offset,
                length,
                run_length: 0,
            });
            offset += u64::from(length);
            leaves.push(leaf);
        }
        let root = gzip(&encode_directory(&pointers))?;
        if root.len() as u64 <= max_root {
            return Ok((root, leaves));
        }
        // Each root entry costs a few bytes, so 20% larger leaves converge quickly; the
        // number of leaves shrinks strictly, so this terminates.
        leaf_size += leaf_size / 5;
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use std::io::Cursor;

    use super::*;
    use crate::archive::{Archive, Entry};

    fn meta() -> ArchiveMeta {
        ArchiveMeta {
            min_zoom: 0,
            max_zoom: 15,
            bounds: [-180.0, -85.0, 180.0, 85.0],
            center: (0.0, 0.0, 0),
            metadata: serde_json::json!({}),
        }
    }

    fn entries(bytes: Vec<u8>) -> Vec<Entry> {
        let mut a = Archive::open(Cursor::new(bytes)).unwrap();
        a.entries().map(Result::unwrap).collect()
    }

    #[test]
    fn a_run_is_one_entry_and_joins_the_same_tile_before_it() {
        let mut w = ArchiveWriter::new(Cursor::new(Vec::new())).unwrap();
        w.add_tile(100, b"a").unwrap();
        // The same bytes right after: one entry, run 1 + 50.
        w.add_tile_run(101, 50, b"a").unwrap();
        w.add_tile_run(151, 0, b"b").unwrap();
        w.add_tile_run(160, 3, b"b").unwrap();
        // A run of the first bytes again: its own entry, the data not stored twice.
        w.add_tile_run(163, 2, b"a").unwrap();
        assert_eq!(w.contents(), 2);
        // Overlapping what is written is refused.
        assert!(matches!(
            w.add_tile_run(164, 5, b"c"),
            Err(ArchiveError::OutOfOrder { .. })
        ));
        let out = w.finish(&meta()).unwrap().into_inner();
        let e = entries(out);
        let runs: Vec<(u64, u32)> = e.iter().map(|e| (e.tile_id, e.run_length)).collect();
        assert_eq!(runs, [(100, 51), (160, 3), (163, 2)]);
        assert_eq!(e[0].offset, e[2].offset);
    }

    #[test]
    fn a_run_longer_than_an_entry_holds_is_split() {
        let mut w = ArchiveWriter::new(Cursor::new(Vec::new())).unwrap();
        let n = u64::from(u32::MAX) + 10;
        let start = crate::tile::zoom_first_id(20).unwrap();
        w.add_tile_run(start, n, b"fill").unwrap();
        let out = w.finish(&meta()).unwrap().into_inner();
        let e = entries(out);
        assert_eq!(e.len(), 2);
        assert_eq!((e[0].tile_id, e[0].run_length), (start, u32::MAX));
        assert_eq!(
            (e[1].tile_id, e[1].run_length),
            (start + u64::from(u32::MAX), 10)
        );
        // Past the last tile id: refused whole, nothing written.
        let mut w = ArchiveWriter::new(Cursor::new(Vec::new())).unwrap();
        assert!(matches!(
            w.add_tile_run(crate::tile::TILE_ID_END - 2, 5, b"x"),
            Err(ArchiveError::InvalidTileId(_))
        ));
        assert_eq!(w.contents(), 0);
    }
}
