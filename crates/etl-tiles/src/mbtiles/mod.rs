//! MBTiles (spec 1.3) → PMTiles v3 conversion, streaming and bounded in memory.
//!
//! An MBTiles file is an untrusted upload, so it is opened read-only through an
//! `immutable=1` URI (no locks, no `-wal`/`-journal` side files are read), symbolic links are
//! refused, `trusted_schema` is off and defensive mode on (views cannot call functions with side
//! effects), extension loading stays disabled (rusqlite is built without `load_extension`), and
//! an optional deadline interrupts any query (a malicious `tiles` view can loop forever).
//!
//! # Ordering
//! PMTiles wants tiles in Hilbert tile-id order, which no SQLite index gives. The conversion
//! makes two passes:
//! 1. scan `SELECT zoom_level, tile_column, tile_row FROM tiles` (the standard `tile_index`
//!    covers it, so no tile data is read), validate every coordinate, and collect the tile ids
//!    (8 bytes per tile; 16 with the row id when rows must be fetched by row id), then sort;
//! 2. fetch every tile's data in tile-id order with a point lookup and stream it to the
//!    [`ArchiveWriter`].
//!
//! The point lookup is by `(zoom_level, tile_column, tile_row)` when the query plan shows an
//! index for it (every real MBTiles writer creates one, also for the deduplicated
//! `map`/`images` schema behind a `tiles` view); otherwise, for an ordinary row-id table, by
//! row id; a `tiles` view with no usable index is refused ([`MbtilesError::Unindexed`]) rather
//! than converted in quadratic time. Memory is therefore the id list ([`MbtilesOptions::max_tiles`]
//! bounds it: 20M tiles = 160 MB, 320 MB by row id), one tile, and the writer's directory.
//!
//! # Tiles
//! Vector tiles (`pbf`) are written gzip-compressed: gzip tiles are copied byte for byte once
//! they inflate cleanly within [`MbtilesOptions::max_inflated_tile_bytes`] (a corrupt tile or a
//! gzip bomb would otherwise reach every client of the tile server), zlib tiles are re-wrapped
//! as gzip, raw MVT is gzipped. Tiles are read and checked one at a time, so a bomb costs at
//! most the limit's worth of inflating and no memory beyond the decoder's window. Rasters are
//! copied with tile compression `none`. The crate's writer always writes `tile_type = mvt,
//! tile_compression = gzip`; for rasters the two header bytes are patched after
//! [`ArchiveWriter::finish`] (the header layout is fixed by the spec), see [`convert`].
//!
//! # Layout
//! `read` opens the file and reads `tiles` (pass 1 and the lookups of pass 2), `metadata` the
//! `metadata` table and the header values, `tiles` checks and normalises tile bytes.

mod metadata;
mod read;
mod tiles;

use std::io::{Seek, Write};
use std::path::Path;
use std::time::{Duration, Instant};

use rusqlite::Connection;

use crate::archive::{ArchiveError, ArchiveMeta, ArchiveWriter, Compression, TileType};

use metadata::{LonLatBox, parse_bounds, parse_center, read_metadata};
use read::{Fetcher, check_sqlite_file, collect_ids, open, tiles_source};
use tiles::is_zlib;

/// The deepest zoom accepted (PMTiles allows 31; MBTiles tiles that deep do not exist).
pub const MAX_MBTILES_ZOOM: u8 = 30;

/// Limits for one conversion.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MbtilesOptions {
    /// Tiles (rows of `tiles`) accepted; the id list costs 8 (or 16) bytes per tile.
    pub max_tiles: u64,
    /// Largest `tile_data` accepted, in bytes (checked before the blob is read).
    pub max_tile_bytes: u64,
    /// Most bytes a gzip or zlib vector tile may inflate to. Every gzip tile is inflated once
    /// into nothing (only counted; its bytes are stored as they are), a zlib tile into memory
    /// to be gzipped; the file is refused when one is corrupt ([`MbtilesError::BadTile`]) or
    /// inflates past this ([`MbtilesError::InflatesTooLarge`]).
    pub max_inflated_tile_bytes: u64,
    /// Stop with [`MbtilesError::TimedOut`] after this long (checked inside SQLite queries
    /// too). `None`: no limit.
    pub max_duration: Option<Duration>,
}

impl Default for MbtilesOptions {
    fn default() -> Self {
        Self {
            max_tiles: 20_000_000,
            max_tile_bytes: 16 << 20,
            max_inflated_tile_bytes: 16 << 20,
            max_duration: None,
        }
    }
}

/// The tile format of an MBTiles tileset (`format` in `metadata`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TileFormat {
    /// Mapbox Vector Tiles (`pbf`).
    Pbf,
    Png,
    Jpeg,
    Webp,
}

impl TileFormat {
    /// Parses the MBTiles `format` value (case-insensitive; `mvt` is taken as `pbf`).
    pub fn from_metadata(s: &str) -> Option<Self> {
        match s.trim().to_ascii_lowercase().as_str() {
            "pbf" | "mvt" => Some(Self::Pbf),
            "png" => Some(Self::Png),
            "jpg" | "jpeg" => Some(Self::Jpeg),
            "webp" => Some(Self::Webp),
            _ => None,
        }
    }

    /// Recognises a tile by its first bytes: PNG, JPEG, WebP magic numbers; gzip or zlib
    /// (compressed vector tiles); a raw MVT starting with a layer field (`0x1a`).
    pub fn sniff(data: &[u8]) -> Option<Self> {
        if data.starts_with(b"\x89PNG\r\n\x1a\n") {
            Some(Self::Png)
        } else if data.starts_with(&[0xff, 0xd8, 0xff]) {
            Some(Self::Jpeg)
        } else if data.len() >= 12 && data.starts_with(b"RIFF") && &data[8..12] == b"WEBP" {
            Some(Self::Webp)
        } else if data.starts_with(&[0x1f, 0x8b]) || is_zlib(data) || data.first() == Some(&0x1a) {
            Some(Self::Pbf)
        } else {
            None
        }
    }

    /// The MBTiles name of the format.
    pub fn name(self) -> &'static str {
        match self {
            Self::Pbf => "pbf",
            Self::Png => "png",
            Self::Jpeg => "jpg",
            Self::Webp => "webp",
        }
    }

    /// The PMTiles tile type.
    pub fn tile_type(self) -> TileType {
        match self {
            Self::Pbf => TileType::Mvt,
            Self::Png => TileType::Png,
            Self::Jpeg => TileType::Jpeg,
            Self::Webp => TileType::Webp,
        }
    }

    /// The PMTiles tile compression written: gzip for vector tiles, none for rasters.
    pub fn tile_compression(self) -> Compression {
        match self {
            Self::Pbf => Compression::Gzip,
            _ => Compression::None,
        }
    }
}

/// How tiles were fetched in tile-id order.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Lookup {
    /// Point lookups by `(zoom_level, tile_column, tile_row)` through an index.
    Index,
    /// Point lookups by row id (a `tiles` table without a usable index).
    RowId,
}

/// What a conversion did.
#[derive(Debug, Clone, PartialEq)]
pub struct MbtilesReport {
    /// Rows of `tiles` read.
    pub tiles_read: u64,
    /// Tiles written to the archive (addressed tiles; the writer additionally stores
    /// byte-identical contents once, which this count does not reflect).
    pub tiles_written: u64,
    /// Rows for a tile already seen (a `tiles` table without a unique index); the first kept.
    pub duplicates_skipped: u64,
    /// Rows with empty `tile_data` (PMTiles cannot store empty tiles; they mean "no tile").
    pub empty_skipped: u64,
    pub format: TileFormat,
    /// The format came from the first tile's bytes, not from `metadata`.
    pub format_sniffed: bool,
    pub tile_type: TileType,
    pub tile_compression: Compression,
    /// Zooms of the tiles written.
    pub min_zoom: u8,
    pub max_zoom: u8,
    /// west, south, east, north written to the header.
    pub bounds: [f64; 4],
    /// longitude, latitude, zoom written to the header.
    pub center: (f64, f64, u8),
    pub lookup: Lookup,
    /// Problems that did not stop the conversion (bad bounds, unparsable `json`...).
    pub warnings: Vec<String>,
}

/// Why a conversion failed. Each message is one line naming the problem.
#[derive(Debug, thiserror::Error)]
pub enum MbtilesError {
    #[error("not an MBTiles file: {0}")]
    NotMbtiles(String),
    #[error("corrupt MBTiles file ({what}): {message}")]
    Corrupt { what: &'static str, message: String },
    #[error("SQLite error while {what}: {message}")]
    Sqlite { what: &'static str, message: String },
    #[error(
        "tile z{zoom}/{column}/{row} (TMS row): zoom {zoom} is above the maximum {MAX_MBTILES_ZOOM}"
    )]
    ZoomTooDeep { zoom: i64, column: i64, row: i64 },
    #[error(
        "tile z{zoom}/{column}/{row} (TMS row): column or row outside 0..{size} for zoom {zoom}"
    )]
    OutOfRange {
        zoom: i64,
        column: i64,
        row: i64,
        size: u64,
    },
    #[error("a tile row has a non-integer {column}: {value}")]
    BadCoordinate { column: &'static str, value: String },
    #[error("tile z{zoom}/{column}/{row} (TMS row) has no data (tile_data is NULL)")]
    NullTile { zoom: u8, column: u32, row: u32 },
    #[error("tile z{zoom}/{column}/{row} (TMS row): tile_data is {kind}, not a blob")]
    BadTileData {
        zoom: u8,
        column: u32,
        row: u32,
        kind: String,
    },
    #[error("tile z{zoom}/{column}/{row} (TMS row) is {len} bytes, over the {limit}-byte limit")]
    TileTooLarge {
        zoom: u8,
        column: u32,
        row: u32,
        len: u64,
        limit: u64,
    },
    #[error(
        "tile z{zoom}/{column}/{row} (TMS row) inflates to more than {limit} bytes (a compression bomb?)"
    )]
    InflatesTooLarge {
        zoom: u8,
        column: u32,
        row: u32,
        limit: u64,
    },
    #[error("tile z{zoom}/{column}/{row} (TMS row): {message}")]
    BadTile {
        zoom: u8,
        column: u32,
        row: u32,
        message: String,
    },
    #[error("tile z{zoom}/{column}/{row} (TMS row) was listed but could not be read back")]
    TileVanished { zoom: u8, column: u32, row: u32 },
    #[error("no tiles found: {0}")]
    NoTiles(String),
    #[error("more than {limit} tiles: over the conversion limit")]
    TooManyTiles { limit: u64 },
    #[error("unknown tile format {0:?}: expected pbf, png, jpg, jpeg or webp")]
    UnknownFormat(String),
    #[error(
        "`tiles` is a {0} without an index on (zoom_level, tile_column, tile_row): cannot read it in tile order"
    )]
    Unindexed(String),
    #[error("conversion stopped after the {0:?} time limit")]
    TimedOut(Duration),
    #[error("cannot read the MBTiles file: {0}")]
    Io(#[from] std::io::Error),
    #[error("writing the PMTiles archive: {0}")]
    Archive(#[from] ArchiveError),
}

/// Maps a rusqlite error to [`MbtilesError`], naming what was being done.
fn sql(what: &'static str) -> impl Fn(rusqlite::Error) -> MbtilesError {
    move |e| {
        let message = e.to_string().replace('\n', " ");
        match e.sqlite_error_code() {
            Some(rusqlite::ErrorCode::DatabaseCorrupt) => MbtilesError::Corrupt { what, message },
            Some(rusqlite::ErrorCode::NotADatabase) => {
                MbtilesError::NotMbtiles(format!("{what}: {message}"))
            }
            _ => MbtilesError::Sqlite { what, message },
        }
    }
}

/// Converts the MBTiles file at `mbtiles` to a PMTiles v3 archive written to `out` (from its
/// current position), and returns `out` positioned at the end of the archive.
///
/// Vector tiles become `tile_type mvt, tile_compression gzip`; rasters `png`/`jpeg`/`webp`
/// with `tile_compression none`. MBTiles rows are TMS (y up); they are flipped to XYZ.
/// `metadata` goes to the PMTiles JSON metadata (every key but `bounds`, `center`, `minzoom`,
/// `maxzoom`, which are header fields, and `json`, whose object keys such as `vector_layers`
/// and `tilestats` are merged in).
pub fn convert<W: Write + Seek>(
    mbtiles: &Path,
    out: W,
    opts: &MbtilesOptions,
) -> Result<(W, MbtilesReport), MbtilesError> {
    let deadline = opts.max_duration.map(|d| (Instant::now() + d, d));
    check_sqlite_file(mbtiles)?;
    let timed_out = |e: MbtilesError| match (&e, deadline) {
        (MbtilesError::Sqlite { message, .. }, Some((_, d))) if message.contains("interrupt") => {
            MbtilesError::TimedOut(d)
        }
        _ => e,
    };
    open(mbtiles, deadline)
        .and_then(|conn| run(&conn, out, opts, deadline))
        .map_err(timed_out)
}

fn run<W: Write + Seek>(
    conn: &Connection,
    out: W,
    opts: &MbtilesOptions,
    deadline: Option<(Instant, Duration)>,
) -> Result<(W, MbtilesReport), MbtilesError> {
    let check_deadline = || match deadline {
        Some((at, d)) if Instant::now() >= at => Err(MbtilesError::TimedOut(d)),
        _ => Ok(()),
    };
    let mut warnings = Vec::new();
    let (kind, lookup) = tiles_source(conn)?;
    let meta = read_metadata(conn, &mut warnings)?;

    let mut format = match meta.format.as_deref().map(str::trim) {
        None | Some("") => None,
        Some(f) => Some(
            TileFormat::from_metadata(f).ok_or_else(|| MbtilesError::UnknownFormat(f.into()))?,
        ),
    };
    let format_sniffed = format.is_none();

    // Pass 1: coordinates only, validated, as tile ids.
    let scan = collect_ids(conn, lookup, opts, &check_deadline)?;
    if scan.ids.len() == 0 {
        return Err(MbtilesError::NoTiles(format!(
            "the `tiles` {kind} is empty"
        )));
    }

    // Pass 2: tile data in tile-id order, straight to the archive.
    let mut writer = ArchiveWriter::new(out)?;
    let mut fetch = Fetcher::new(conn, lookup, opts.max_tile_bytes)?;
    let mut written = 0u64;
    let mut empty = 0u64;
    let mut zooms: Option<(u8, u8)> = None;
    let mut bbox = LonLatBox::default();
    for i in 0..scan.ids.len() {
        let Some((id, rowid)) = scan.ids.get(i) else {
            break;
        };
        if i.is_multiple_of(4096) {
            check_deadline()?;
        }
        let Some(c) = crate::tile::tile_coord(id) else {
            // Ids come from valid coordinates; unreachable, but not worth a panic.
            continue;
        };
        let row = (1u32 << c.z) - 1 - c.y;
        let data = fetch.get(c, row, rowid)?;
        if data.is_empty() {
            empty += 1;
            continue;
        }
        let f = match format {
            Some(f) => f,
            None => {
                let f = TileFormat::sniff(&data).ok_or_else(|| {
                    MbtilesError::UnknownFormat(format!(
                        "none in metadata, and tile {c} starts with bytes {:02x?}",
                        &data[..data.len().min(8)]
                    ))
                })?;
                format = Some(f);
                f
            }
        };
        if f == TileFormat::Pbf {
            let gz = tiles::to_gzip(&data, opts.max_inflated_tile_bytes).map_err(|e| match e {
                tiles::TileError::TooLarge => MbtilesError::InflatesTooLarge {
                    zoom: c.z,
                    column: c.x,
                    row,
                    limit: opts.max_inflated_tile_bytes,
                },
                tiles::TileError::Bad(message) => MbtilesError::BadTile {
                    zoom: c.z,
                    column: c.x,
                    row,
                    message,
                },
            })?;
            writer.add_tile(id, &gz)?;
        } else {
            writer.add_tile(id, &data)?;
        }
        written += 1;
        zooms = Some(zooms.map_or((c.z, c.z), |(lo, hi)| (lo.min(c.z), hi.max(c.z))));
        bbox.add_tile(c);
    }
    let (Some((min_zoom, max_zoom)), Some(format)) = (zooms, format) else {
        return Err(MbtilesError::NoTiles(format!(
            "all {} tiles have empty tile_data",
            scan.ids.len()
        )));
    };

    let tile_bounds = bbox.bounds();
    let bounds = match meta.bounds.as_deref().map(parse_bounds) {
        Some(Ok(b)) => b,
        Some(Err(why)) => {
            warnings.push(format!(
                "metadata bounds ignored ({why}); using the tiles' extent"
            ));
            tile_bounds
        }
        None => tile_bounds,
    };
    let center = match meta
        .center
        .as_deref()
        .map(|s| parse_center(s, min_zoom, max_zoom))
    {
        Some(Ok(c)) => c,
        other => {
            if let Some(Err(why)) = other {
                warnings.push(format!(
                    "metadata center ignored ({why}); using the middle of the bounds"
                ));
            }
            (
                (bounds[0] + bounds[2]) / 2.0,
                (bounds[1] + bounds[3]) / 2.0,
                min_zoom,
            )
        }
    };
    if format == TileFormat::Pbf && !meta.json.contains_key("vector_layers") {
        warnings.push(
            "vector tiles without `vector_layers` in metadata: clients cannot list the layers"
                .into(),
        );
    }
    let archive_meta = ArchiveMeta {
        min_zoom,
        max_zoom,
        bounds,
        center,
        metadata: serde_json::Value::Object(meta.json),
    };
    let (tile_type, tile_compression) = (format.tile_type(), format.tile_compression());
    writer.set_tile_format(tile_type, tile_compression);
    let out = writer.finish(&archive_meta)?;
    if scan.duplicates > 0 {
        warnings.push(format!(
            "{} rows repeat a tile already read; the first of each was kept",
            scan.duplicates
        ));
    }
    Ok((
        out,
        MbtilesReport {
            tiles_read: scan.rows,
            tiles_written: written,
            duplicates_skipped: scan.duplicates,
            empty_skipped: empty,
            format,
            format_sniffed,
            tile_type,
            tile_compression,
            min_zoom,
            max_zoom,
            bounds,
            center,
            lookup,
            warnings,
        },
    ))
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    #[test]
    fn sniffing() {
        assert_eq!(
            TileFormat::sniff(b"\x89PNG\r\n\x1a\n...."),
            Some(TileFormat::Png)
        );
        assert_eq!(
            TileFormat::sniff(&[0xff, 0xd8, 0xff, 0xe0]),
            Some(TileFormat::Jpeg)
        );
        assert_eq!(
            TileFormat::sniff(b"RIFF\0\0\0\0WEBPVP8 "),
            Some(TileFormat::Webp)
        );
        assert_eq!(TileFormat::sniff(&[0x1f, 0x8b, 8]), Some(TileFormat::Pbf));
        assert_eq!(TileFormat::sniff(&[0x78, 0x9c, 1]), Some(TileFormat::Pbf));
        assert_eq!(TileFormat::sniff(&[0x1a, 0x05]), Some(TileFormat::Pbf));
        assert_eq!(TileFormat::sniff(b"hello"), None);
        assert_eq!(TileFormat::from_metadata(" JPEG"), Some(TileFormat::Jpeg));
        assert_eq!(TileFormat::from_metadata("tiff"), None);
    }
}
