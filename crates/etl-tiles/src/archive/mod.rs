//! PMTiles v3 archives: writing, reading, verifying.
//!
//! The format is small enough to own outright (header, varint directories, gzip), which lets the
//! writer hand the output stream back, compare duplicate tiles by their bytes, refuse
//! out-of-order tiles instead of silently writing an unclustered archive, and lets the reader
//! treat every corrupt input as an error with bounded allocations. The `pmtiles` crate is used in
//! tests as an independent implementation to cross-check against.
//!
//! Layout written: `header | root directory (within the first 16 KiB) | tile data | metadata |
//! leaf directories`. Tile data goes right after the reserved root space so tiles can stream
//! out while the directories, known only at the end, follow them.

mod area;
mod extract;
mod merge;
mod range;
mod read;
mod summary;
mod verify;
mod walk;
mod write;

use std::io::Read;

pub use area::{Area, MAX_REGION_EDGES, Region};
pub use extract::{BATCH_BYTES, ExtractError, ExtractReport, GAP_BYTES, check_area, extract};
pub use merge::{MergeError, MergeReport, merge};
pub use range::{BlockingRangeReader, FileReader, IoReader, RangeReader, ReadError, now};
pub use read::{Archive, Entries};
pub use summary::{Summary, summarize};
pub use verify::{VerifyError, VerifyReport, verify};
pub use walk::{
    ArchiveIndex, LastLeaf, Leaf, LeafCache, NoCache, find_entry, read_leaf, read_tile,
};
pub use write::{ArchiveMeta, ArchiveWriter, DEDUP_CACHE_BYTES};

/// Size of the fixed header.
pub const HEADER_LEN: usize = 127;
/// The header plus the root directory must fit in the first 16 KiB (spec requirement), so a
/// client can fetch both with one request.
pub const ROOT_SPACE: u64 = 16_384;
/// Decompressed directories larger than this are refused: a 16 KiB gzip root can otherwise
/// inflate to gigabytes. Real leaf directories are a few hundred KiB.
pub const MAX_DIRECTORY_BYTES: u64 = 64 << 20;
/// Decompressed metadata larger than this is refused (tippecanoe's largest are a few MiB).
pub const MAX_METADATA_BYTES: u64 = 64 << 20;
/// Tiles larger than this are refused by the reader (PMTiles lengths are u32; MVT tiles are
/// normally under 500 KiB). Guards `get_tile` against allocating 4 GiB for a corrupt entry.
pub const MAX_TILE_BYTES: u64 = 256 << 20;
/// Leaf directories may nest; no real writer goes deeper than one level of leaves.
pub const MAX_DIRECTORY_DEPTH: usize = 4;

const MAGIC: &[u8; 7] = b"PMTiles";

/// Errors reading or writing an archive.
#[derive(Debug, thiserror::Error)]
pub enum ArchiveError {
    #[error("i/o error: {0}")]
    Io(#[from] std::io::Error),
    #[error("not a PMTiles archive (bad magic number)")]
    BadMagic,
    #[error("unsupported PMTiles spec version {0} (only v3 is supported)")]
    UnsupportedVersion(u8),
    #[error("file is truncated: {0}")]
    Truncated(String),
    #[error("unsupported internal compression {0} (only none and gzip are supported)")]
    UnsupportedCompression(u8),
    #[error("corrupt directory: {0}")]
    Directory(String),
    #[error("corrupt metadata: {0}")]
    Metadata(String),
    #[error("corrupt tile entry: {0}")]
    Entry(String),
    #[error("tile id {id} added after tile id {last}: tiles must be added in increasing tile id")]
    OutOfOrder { id: u64, last: u64 },
    #[error("tile id {0} is beyond the largest tile id of zoom 31")]
    InvalidTileId(u64),
    #[error("tile id {0} has empty data: an archive cannot store empty tiles, leave them out")]
    EmptyTile(u64),
    #[error("tile id {id} is {len} bytes, over the 4 GiB PMTiles entry limit")]
    TileTooLarge { id: u64, len: usize },
    #[error("archive metadata: {0}")]
    Meta(String),
}

/// How tiles or directories are compressed (header bytes 97 and 98).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Compression {
    Unknown,
    None,
    Gzip,
    Brotli,
    Zstd,
    Other(u8),
}

impl Compression {
    pub fn from_byte(b: u8) -> Self {
        match b {
            0 => Self::Unknown,
            1 => Self::None,
            2 => Self::Gzip,
            3 => Self::Brotli,
            4 => Self::Zstd,
            o => Self::Other(o),
        }
    }
    pub fn to_byte(self) -> u8 {
        match self {
            Self::Unknown => 0,
            Self::None => 1,
            Self::Gzip => 2,
            Self::Brotli => 3,
            Self::Zstd => 4,
            Self::Other(o) => o,
        }
    }
}

/// What the tiles are (header byte 99).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TileType {
    Unknown,
    Mvt,
    Png,
    Jpeg,
    Webp,
    Avif,
    Mlt,
    Other(u8),
}

impl TileType {
    pub fn from_byte(b: u8) -> Self {
        match b {
            0 => Self::Unknown,
            1 => Self::Mvt,
            2 => Self::Png,
            3 => Self::Jpeg,
            4 => Self::Webp,
            5 => Self::Avif,
            6 => Self::Mlt,
            o => Self::Other(o),
        }
    }
    pub fn to_byte(self) -> u8 {
        match self {
            Self::Unknown => 0,
            Self::Mvt => 1,
            Self::Png => 2,
            Self::Jpeg => 3,
            Self::Webp => 4,
            Self::Avif => 5,
            Self::Mlt => 6,
            Self::Other(o) => o,
        }
    }
}

/// The 127-byte PMTiles v3 header. Offsets are from the start of the archive; positions are
/// stored as degrees (the file holds them as integer 1e-7 degrees).
#[derive(Debug, Clone, PartialEq)]
pub struct Header {
    pub version: u8,
    pub root_offset: u64,
    pub root_length: u64,
    pub metadata_offset: u64,
    pub metadata_length: u64,
    pub leaf_offset: u64,
    pub leaf_length: u64,
    pub data_offset: u64,
    pub data_length: u64,
    pub addressed_tiles: u64,
    pub tile_entries: u64,
    pub tile_contents: u64,
    pub clustered: bool,
    pub internal_compression: Compression,
    pub tile_compression: Compression,
    pub tile_type: TileType,
    pub min_zoom: u8,
    pub max_zoom: u8,
    /// west, south, east, north
    pub bounds: [f64; 4],
    pub center_zoom: u8,
    pub center_lon: f64,
    pub center_lat: f64,
}

impl Header {
    /// Parses a header, checking only what is needed to interpret the rest (magic, version).
    pub fn from_bytes(b: &[u8]) -> Result<Header, ArchiveError> {
        if !b.starts_with(MAGIC) {
            // A prefix of the magic is a truncated archive, anything else is not PMTiles.
            return Err(if MAGIC.starts_with(b) {
                ArchiveError::Truncated(format!("{} bytes, shorter than the header", b.len()))
            } else {
                ArchiveError::BadMagic
            });
        }
        let Some(b) = b.get(..HEADER_LEN) else {
            return Err(ArchiveError::Truncated(format!(
                "{} bytes, shorter than the {HEADER_LEN}-byte header",
                b.len()
            )));
        };
        if b[7] != 3 {
            return Err(ArchiveError::UnsupportedVersion(b[7]));
        }
        let u64_at = |o: usize| {
            let mut a = [0u8; 8];
            a.copy_from_slice(&b[o..o + 8]);
            u64::from_le_bytes(a)
        };
        let deg_at = |o: usize| {
            let mut a = [0u8; 4];
            a.copy_from_slice(&b[o..o + 4]);
            f64::from(i32::from_le_bytes(a)) / 1e7
        };
        Ok(Header {
            version: b[7],
            root_offset: u64_at(8),
            root_length: u64_at(16),
            metadata_offset: u64_at(24),
            metadata_length: u64_at(32),
            leaf_offset: u64_at(40),
            leaf_length: u64_at(48),
            data_offset: u64_at(56),
            data_length: u64_at(64),
            addressed_tiles: u64_at(72),
            tile_entries: u64_at(80),
            tile_contents: u64_at(88),
            clustered: b[96] == 1,
            internal_compression: Compression::from_byte(b[97]),
            tile_compression: Compression::from_byte(b[98]),
            tile_type: TileType::from_byte(b[99]),
            min_zoom: b[100],
            max_zoom: b[101],
            bounds: [deg_at(102), deg_at(106), deg_at(110), deg_at(114)],
            center_zoom: b[118],
            center_lon: deg_at(119),
            center_lat: deg_at(123),
        })
    }

    pub fn to_bytes(&self) -> [u8; HEADER_LEN] {
        let mut b = Vec::with_capacity(HEADER_LEN);
        b.extend_from_slice(MAGIC);
        b.push(self.version);
        for v in [
            self.root_offset,
            self.root_length,
            self.metadata_offset,
            self.metadata_length,
            self.leaf_offset,
            self.leaf_length,
            self.data_offset,
            self.data_length,
            self.addressed_tiles,
            self.tile_entries,
            self.tile_contents,
        ] {
            b.extend_from_slice(&v.to_le_bytes());
        }
        b.push(u8::from(self.clustered));
        b.push(self.internal_compression.to_byte());
        b.push(self.tile_compression.to_byte());
        b.push(self.tile_type.to_byte());
        b.push(self.min_zoom);
        b.push(self.max_zoom);
        let e7 = |d: f64| ((d * 1e7).round() as i32).to_le_bytes();
        for d in self.bounds {
            b.extend_from_slice(&e7(d));
        }
        b.push(self.center_zoom);
        b.extend_from_slice(&e7(self.center_lon));
        b.extend_from_slice(&e7(self.center_lat));
        let mut out = [0u8; HEADER_LEN];
        out.copy_from_slice(&b);
        out
    }
}

/// A directory entry. `run_length == 0` marks a pointer to a leaf directory (offset/length in
/// the leaf section); otherwise `run_length` consecutive tile ids share the tile at
/// offset/length in the data section.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Entry {
    pub tile_id: u64,
    pub offset: u64,
    pub length: u32,
    pub run_length: u32,
}

impl Entry {
    pub fn is_leaf(&self) -> bool {
        self.run_length == 0
    }
}

fn write_varint(out: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        out.push((v as u8) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

fn read_varint(buf: &mut &[u8]) -> Result<u64, ArchiveError> {
    let mut v: u64 = 0;
    for shift in (0..64).step_by(7) {
        let Some((&byte, rest)) = buf.split_first() else {
            return Err(ArchiveError::Directory(
                "directory ends inside a number".into(),
            ));
        };
        *buf = rest;
        // The 10th byte may only carry the top bit of a u64.
        if shift == 63 && byte > 1 {
            return Err(ArchiveError::Directory("number overflows 64 bits".into()));
        }
        v |= u64::from(byte & 0x7f) << shift;
        if byte & 0x80 == 0 {
            return Ok(v);
        }
    }
    Err(ArchiveError::Directory("number overflows 64 bits".into()))
}

/// Serialises directory entries (uncompressed): count, delta tile ids, run lengths, lengths,
/// offsets (0 meaning "right after the previous entry", else offset + 1).
pub fn encode_directory(entries: &[Entry]) -> Vec<u8> {
    let mut out = Vec::with_capacity(entries.len() * 6 + 4);
    write_varint(&mut out, entries.len() as u64);
    let mut last_id = 0;
    for e in entries {
        write_varint(&mut out, e.tile_id.wrapping_sub(last_id));
        last_id = e.tile_id;
    }
    for e in entries {
        write_varint(&mut out, u64::from(e.run_length));
    }
    for e in entries {
        write_varint(&mut out, u64::from(e.length));
    }
    let mut next: Option<u64> = None;
    for e in entries {
        if next == Some(e.offset) {
            write_varint(&mut out, 0);
        } else {
            write_varint(&mut out, e.offset.saturating_add(1));
        }
        next = e.offset.checked_add(u64::from(e.length));
    }
    out
}

/// Parses an uncompressed directory. Rejects anything malformed rather than guessing; does not
/// check ordering (that is the walker's and `verify`'s job, with better messages).
pub fn decode_directory(mut buf: &[u8]) -> Result<Vec<Entry>, ArchiveError> {
    let n = read_varint(&mut buf)?;
    // Every entry takes at least 4 bytes (one per column), so a count larger than that is
    // corrupt; checking first keeps the allocation proportional to the input.
    if n > (buf.len() / 4) as u64 {
        return Err(ArchiveError::Directory(format!(
            "claims {n} entries in {} bytes",
            buf.len()
        )));
    }
    let n = n as usize;
    let mut entries = vec![
        Entry {
            tile_id: 0,
            offset: 0,
            length: 0,
            run_length: 0
        };
        n
    ];
    let mut id: u64 = 0;
    for (i, e) in entries.iter_mut().enumerate() {
        let delta = read_varint(&mut buf)?;
        id = id.checked_add(delta).ok_or_else(|| {
            ArchiveError::Directory(format!("entry {i}: tile id overflows 64 bits"))
        })?;
        e.tile_id = id;
    }
    for (i, e) in entries.iter_mut().enumerate() {
        e.run_length = u32::try_from(read_varint(&mut buf)?)
            .map_err(|_| ArchiveError::Directory(format!("entry {i}: run length over 2^32")))?;
    }
    for (i, e) in entries.iter_mut().enumerate() {
        e.length = u32::try_from(read_varint(&mut buf)?)
            .map_err(|_| ArchiveError::Directory(format!("entry {i}: length over 2^32")))?;
        if e.length == 0 {
            return Err(ArchiveError::Directory(format!(
                "entry {i} (tile id {}): zero length",
                e.tile_id
            )));
        }
    }
    let mut next: Option<u64> = None;
    for (i, e) in entries.iter_mut().enumerate() {
        let raw = read_varint(&mut buf)?;
        e.offset = if raw == 0 {
            next.ok_or_else(|| {
                ArchiveError::Directory(format!(
                    "entry {i}: relative offset with no previous entry"
                ))
            })?
        } else {
            raw - 1
        };
        next = e.offset.checked_add(u64::from(e.length));
    }
    if !buf.is_empty() {
        return Err(ArchiveError::Directory(format!(
            "{} unexpected bytes after the entries",
            buf.len()
        )));
    }
    Ok(entries)
}

pub(crate) fn gzip(data: &[u8]) -> Result<Vec<u8>, ArchiveError> {
    use std::io::Write;
    let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    enc.write_all(data)?;
    Ok(enc.finish()?)
}

/// Decompresses a directory, metadata or tile, refusing output larger than `limit` bytes.
pub fn decompress(
    data: &[u8],
    compression: Compression,
    limit: u64,
    what: &str,
) -> Result<Vec<u8>, ArchiveError> {
    let corrupt = |m: String| ArchiveError::Directory(format!("{what}: {m}"));
    match compression {
        Compression::None => {
            if data.len() as u64 > limit {
                return Err(corrupt(format!("larger than {limit} bytes")));
            }
            Ok(data.to_vec())
        }
        Compression::Gzip => {
            let mut out = Vec::new();
            // take(limit + 1) bounds memory; reading one byte more detects an oversize blob.
            flate2::read::GzDecoder::new(data)
                .take(limit + 1)
                .read_to_end(&mut out)
                .map_err(|e| corrupt(format!("gzip: {e}")))?;
            if out.len() as u64 > limit {
                return Err(corrupt(format!("decompresses to over {limit} bytes")));
            }
            Ok(out)
        }
        other => Err(ArchiveError::UnsupportedCompression(other.to_byte())),
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    #[test]
    fn varint_round_trip_and_overflow() {
        for v in [0u64, 1, 127, 128, 300, u64::from(u32::MAX), u64::MAX] {
            let mut b = Vec::new();
            write_varint(&mut b, v);
            let mut s = &b[..];
            assert_eq!(read_varint(&mut s).unwrap(), v);
            assert!(s.is_empty());
        }
        let mut s: &[u8] = &[0xff; 11];
        assert!(read_varint(&mut s).is_err());
        let mut s: &[u8] = &[0x80];
        assert!(read_varint(&mut s).is_err());
    }

    #[test]
    fn directory_round_trip() {
        let entries = vec![
            Entry {
                tile_id: 0,
                offset: 0,
                length: 10,
                run_length: 1,
            },
            Entry {
                tile_id: 5,
                offset: 10,
                length: 3,
                run_length: 7,
            },
            Entry {
                tile_id: 20,
                offset: 0,
                length: 10,
                run_length: 1,
            },
            Entry {
                tile_id: 21,
                offset: 13,
                length: 1,
                run_length: 0,
            },
        ];
        let enc = encode_directory(&entries);
        assert_eq!(decode_directory(&enc).unwrap(), entries);
    }

    #[test]
    fn directory_rejects_garbage_without_panicking() {
        assert!(decode_directory(&[]).is_err());
        assert!(decode_directory(&[0xff, 0xff, 0xff, 0xff, 0x0f]).is_err());
        // one entry, zero length
        assert!(decode_directory(&[1, 0, 1, 0, 1]).is_err());
        // relative offset on the first entry
        assert!(decode_directory(&[1, 0, 1, 1, 0]).is_err());
        // trailing bytes
        assert!(decode_directory(&[0, 9]).is_err());
        // every short byte string: errors or entries, never a panic
        for a in 0..=255u8 {
            for b in [0u8, 1, 2, 0x80, 0xff] {
                let _ = decode_directory(&[1, a, b, a, b, 1]);
            }
        }
    }

    #[test]
    fn header_round_trip() {
        let h = Header {
            version: 3,
            root_offset: 127,
            root_length: 25,
            metadata_offset: 152,
            metadata_length: 247,
            leaf_offset: 0,
            leaf_length: 0,
            data_offset: 399,
            data_length: 69,
            addressed_tiles: 1,
            tile_entries: 1,
            tile_contents: 1,
            clustered: true,
            internal_compression: Compression::Gzip,
            tile_compression: Compression::Gzip,
            tile_type: TileType::Mvt,
            min_zoom: 0,
            max_zoom: 0,
            bounds: [0.0, 0.0, 1.0, 1.0],
            center_zoom: 0,
            center_lon: 0.5,
            center_lat: 0.5,
        };
        let b = h.to_bytes();
        assert_eq!(Header::from_bytes(&b).unwrap(), h);
        assert!(matches!(
            Header::from_bytes(b"PMTil"),
            Err(ArchiveError::Truncated(_))
        ));
        assert!(matches!(
            Header::from_bytes(b"PMTiles\x03"),
            Err(ArchiveError::Truncated(_))
        ));
        assert!(matches!(
            Header::from_bytes(b"nope"),
            Err(ArchiveError::BadMagic)
        ));
        let mut v4 = b;
        v4[7] = 4;
        assert!(matches!(
            Header::from_bytes(&v4),
            Err(ArchiveError::UnsupportedVersion(4))
        ));
    }

    #[test]
    fn decompress_is_bounded() {
        let big = vec![0u8; 1 << 20];
        let z = gzip(&big).unwrap();
        assert!(decompress(&z, Compression::Gzip, 1000, "x").is_err());
        assert_eq!(
            decompress(&z, Compression::Gzip, 1 << 20, "x")
                .unwrap()
                .len(),
            1 << 20
        );
        assert!(decompress(b"not gzip", Compression::Gzip, 1000, "x").is_err());
        assert!(matches!(
            decompress(b"", Compression::Zstd, 1000, "x"),
            Err(ArchiveError::UnsupportedCompression(4))
        ));
    }
}
