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
//! Vector tiles (`pbf`) are written gzip-compressed: gzip tiles are copied, zlib tiles are
//! re-wrapped as gzip, raw MVT is gzipped. Rasters are copied with tile compression `none`. The
//! crate's writer always writes `tile_type = mvt, tile_compression = gzip`; for rasters the two
//! header bytes are patched after [`ArchiveWriter::finish`] (the header layout is fixed by the
//! spec), see [`convert`].

use std::io::{Read, Seek, Write};
use std::path::Path;
use std::time::{Duration, Instant};

use rusqlite::types::ValueRef;
use rusqlite::{Connection, OpenFlags, config::DbConfig};

use crate::archive::{ArchiveError, ArchiveMeta, ArchiveWriter, Compression, TileType};
use crate::tile::{MAX_LAT, TileCoord, tile_id};

/// The deepest zoom accepted (PMTiles allows 31; MBTiles tiles that deep do not exist).
pub const MAX_MBTILES_ZOOM: u8 = 30;
/// Metadata rows beyond this many are refused (real files have a dozen).
const MAX_METADATA_ROWS: usize = 10_000;
/// One metadata value (the `json` row with tilestats can be a few MiB).
const MAX_METADATA_VALUE_BYTES: i64 = 16 << 20;
/// All metadata values together.
const MAX_METADATA_TOTAL_BYTES: usize = 64 << 20;
/// A zlib-compressed vector tile may inflate to at most this much before re-gzipping.
const MAX_INFLATED_TILE_BYTES: u64 = 64 << 20;
/// SQLite virtual-machine steps between deadline checks.
const PROGRESS_STEPS: i32 = 100_000;

/// Limits for one conversion.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MbtilesOptions {
    /// Tiles (rows of `tiles`) accepted; the id list costs 8 (or 16) bytes per tile.
    pub max_tiles: u64,
    /// Largest `tile_data` accepted, in bytes (checked before the blob is read).
    pub max_tile_bytes: u64,
    /// Stop with [`MbtilesError::TimedOut`] after this long (checked inside SQLite queries
    /// too). `None`: no limit.
    pub max_duration: Option<Duration>,
}

impl Default for MbtilesOptions {
    fn default() -> Self {
        Self {
            max_tiles: 20_000_000,
            max_tile_bytes: 16 << 20,
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
            let gz = to_gzip(&data).map_err(|message| MbtilesError::BadTile {
                zoom: c.z,
                column: c.x,
                row,
                message,
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

/// Refuses anything but a regular file that starts with the SQLite header and is as long as
/// the header says (a truncated upload would otherwise read as zero-filled pages).
fn check_sqlite_file(path: &Path) -> Result<(), MbtilesError> {
    let md = std::fs::symlink_metadata(path)?;
    if md.file_type().is_symlink() {
        return Err(MbtilesError::NotMbtiles(
            "the path is a symbolic link".into(),
        ));
    }
    if !md.is_file() {
        return Err(MbtilesError::NotMbtiles("not a regular file".into()));
    }
    let mut head = Vec::with_capacity(100);
    std::fs::File::open(path)?
        .take(100)
        .read_to_end(&mut head)?;
    if !head.starts_with(b"SQLite format 3\0") {
        return Err(MbtilesError::NotMbtiles(
            "not an SQLite database (bad header)".into(),
        ));
    }
    if head.len() < 100 {
        return Err(MbtilesError::NotMbtiles(format!(
            "truncated SQLite file ({} bytes)",
            head.len()
        )));
    }
    let be32 = |o: usize| u32::from_be_bytes([head[o], head[o + 1], head[o + 2], head[o + 3]]);
    let page_size = match u16::from_be_bytes([head[16], head[17]]) {
        1 => 65_536u64,
        p if p >= 512 && p.is_power_of_two() => u64::from(p),
        p => {
            return Err(MbtilesError::NotMbtiles(format!(
                "invalid SQLite page size {p}"
            )));
        }
    };
    // The in-header page count is valid when the change counter matches version-valid-for.
    let pages = u64::from(be32(28));
    if pages > 0 && be32(24) == be32(92) && md.len() < pages * page_size {
        return Err(MbtilesError::Corrupt {
            what: "file size",
            message: format!(
                "truncated: the header says {pages} pages of {page_size} bytes, the file has {} bytes",
                md.len()
            ),
        });
    }
    if md.len() < page_size {
        return Err(MbtilesError::Corrupt {
            what: "file size",
            message: format!(
                "truncated: {} bytes, less than one {page_size}-byte page",
                md.len()
            ),
        });
    }
    Ok(())
}

/// `file:` URI for `path` with everything but unreserved characters percent-encoded.
fn file_uri(path: &Path) -> Result<String, MbtilesError> {
    let abs = std::path::absolute(path)?;
    let mut uri = String::from("file:");
    for &b in abs.as_os_str().as_encoded_bytes() {
        if b.is_ascii_alphanumeric() || b"-._~/".contains(&b) {
            uri.push(char::from(b));
        } else {
            uri.push_str(&format!("%{b:02X}"));
        }
    }
    if !uri.starts_with("file:/") {
        // Windows drive paths: file:/C:/...
        uri.insert(5, '/');
    }
    uri.push_str("?mode=ro&immutable=1");
    Ok(uri)
}

fn open(path: &Path, deadline: Option<(Instant, Duration)>) -> Result<Connection, MbtilesError> {
    let flags = OpenFlags::SQLITE_OPEN_READ_ONLY
        | OpenFlags::SQLITE_OPEN_URI
        | OpenFlags::SQLITE_OPEN_NO_MUTEX
        | OpenFlags::SQLITE_OPEN_NOFOLLOW
        | OpenFlags::SQLITE_OPEN_PRIVATE_CACHE;
    let uri = file_uri(path)?;
    let conn = Connection::open_with_flags(Path::new(&uri), flags).map_err(sql("opening"))?;
    conn.set_db_config(DbConfig::SQLITE_DBCONFIG_TRUSTED_SCHEMA, false)
        .map_err(sql("configuring SQLite"))?;
    conn.set_db_config(DbConfig::SQLITE_DBCONFIG_DEFENSIVE, true)
        .map_err(sql("configuring SQLite"))?;
    conn.set_db_config(DbConfig::SQLITE_DBCONFIG_ENABLE_TRIGGER, false)
        .map_err(sql("configuring SQLite"))?;
    conn.pragma_update(None, "trusted_schema", false)
        .map_err(sql("configuring SQLite"))?;
    // Catch more corruption while reading b-tree cells; memory-map nothing.
    conn.pragma_update(None, "cell_size_check", true)
        .map_err(sql("configuring SQLite"))?;
    conn.pragma_update(None, "mmap_size", 0)
        .map_err(sql("configuring SQLite"))?;
    conn.pragma_update(None, "temp_store", "FILE")
        .map_err(sql("configuring SQLite"))?;
    if let Some((at, _)) = deadline {
        conn.progress_handler(PROGRESS_STEPS, Some(move || Instant::now() >= at))
            .map_err(sql("configuring SQLite"))?;
    }
    // Reading the schema is the first real access: a damaged file fails here.
    conn.query_row("SELECT count(*) FROM sqlite_schema", [], |_| Ok(()))
        .map_err(sql("reading the schema"))?;
    Ok(conn)
}

/// Checks that `tiles` exists with the MBTiles columns and decides how to fetch tiles in
/// tile-id order. Returns the object kind (`table`/`view`) and the lookup.
fn tiles_source(conn: &Connection) -> Result<(String, Lookup), MbtilesError> {
    let kind: Option<String> = conn
        .prepare("SELECT type FROM sqlite_schema WHERE name = 'tiles' COLLATE NOCASE AND type IN ('table', 'view')")
        .and_then(|mut s| {
            let mut rows = s.query([])?;
            rows.next()?.map(|r| r.get(0)).transpose()
        })
        .map_err(sql("reading the schema"))?;
    let Some(kind) = kind else {
        return Err(MbtilesError::NotMbtiles("no `tiles` table".into()));
    };
    if let Err(e) = conn.prepare("SELECT zoom_level, tile_column, tile_row, tile_data FROM tiles") {
        return Err(match sql("reading the `tiles` table")(e) {
            MbtilesError::Sqlite { message, .. } => {
                MbtilesError::NotMbtiles(format!("the `tiles` {kind} is unusable: {message}"))
            }
            other => other,
        });
    }
    let plan = {
        let mut s = conn
            .prepare(
                "EXPLAIN QUERY PLAN SELECT tile_data FROM tiles \
                 WHERE zoom_level = ?1 AND tile_column = ?2 AND tile_row = ?3",
            )
            .map_err(sql("planning tile lookups"))?;
        s.query_map([0, 0, 0], |r| r.get::<_, String>(3))
            .and_then(|rows| rows.collect::<Result<Vec<_>, _>>())
            .map_err(sql("planning tile lookups"))?
    };
    let indexed = !plan.iter().any(|d| d.starts_with("SCAN"))
        && plan.iter().any(|d| d.contains("tile_column=?"));
    if indexed {
        return Ok((kind, Lookup::Index));
    }
    // An ordinary table (with a row id not shadowed by a column) can be read by row id.
    let rowid_table = kind == "table"
        && conn
            .query_row(
                "SELECT (SELECT wr FROM pragma_table_list WHERE schema = 'main' AND name = 'tiles' COLLATE NOCASE) = 0 \
                 AND NOT EXISTS (SELECT 1 FROM pragma_table_info('tiles') WHERE lower(name) IN ('rowid', '_rowid_', 'oid'))",
                [],
                |r| r.get::<_, Option<bool>>(0),
            )
            .map_err(sql("reading the schema"))?
            .unwrap_or(false);
    if rowid_table {
        Ok((kind, Lookup::RowId))
    } else {
        Err(MbtilesError::Unindexed(kind))
    }
}

struct Metadata {
    format: Option<String>,
    bounds: Option<String>,
    center: Option<String>,
    /// Everything for the PMTiles JSON metadata.
    json: serde_json::Map<String, serde_json::Value>,
}

fn value_string(v: ValueRef<'_>) -> Option<String> {
    match v {
        ValueRef::Null => None,
        ValueRef::Integer(i) => Some(i.to_string()),
        ValueRef::Real(f) => Some(f.to_string()),
        ValueRef::Text(t) | ValueRef::Blob(t) => Some(String::from_utf8_lossy(t).into_owned()),
    }
}

fn read_metadata(conn: &Connection, warnings: &mut Vec<String>) -> Result<Metadata, MbtilesError> {
    let mut meta = Metadata {
        format: None,
        bounds: None,
        center: None,
        json: serde_json::Map::new(),
    };
    let exists: bool = conn
        .query_row(
            "SELECT EXISTS (SELECT 1 FROM sqlite_schema WHERE name = 'metadata' COLLATE NOCASE AND type IN ('table', 'view'))",
            [],
            |r| r.get(0),
        )
        .map_err(sql("reading the schema"))?;
    if !exists {
        warnings.push("no `metadata` table".into());
        return Ok(meta);
    }
    let mut stmt = match conn.prepare(
        "SELECT name, CASE WHEN octet_length(value) <= ?1 THEN value END, octet_length(value) FROM metadata",
    ) {
        Ok(s) => s,
        Err(e) => {
            warnings.push(format!(
                "`metadata` table unusable: {}",
                e.to_string().replace('\n', " ")
            ));
            return Ok(meta);
        }
    };
    let mut rows = stmt
        .query([MAX_METADATA_VALUE_BYTES])
        .map_err(sql("reading metadata"))?;
    let mut pairs: Vec<(String, String)> = Vec::new();
    let mut total = 0usize;
    while let Some(r) = rows.next().map_err(sql("reading metadata"))? {
        if pairs.len() >= MAX_METADATA_ROWS {
            return Err(MbtilesError::NotMbtiles(format!(
                "more than {MAX_METADATA_ROWS} metadata rows"
            )));
        }
        let name = r.get_ref(0).ok().and_then(value_string);
        let len = r.get_ref(2).ok().and_then(|v| v.as_i64().ok()).unwrap_or(0);
        let Some(name) = name else { continue };
        if len > MAX_METADATA_VALUE_BYTES {
            warnings.push(format!(
                "metadata {name:?} ignored: {len} bytes, over {MAX_METADATA_VALUE_BYTES}"
            ));
            continue;
        }
        let Some(value) = r.get_ref(1).ok().and_then(value_string) else {
            continue;
        };
        total += name.len() + value.len();
        if total > MAX_METADATA_TOTAL_BYTES {
            return Err(MbtilesError::NotMbtiles(format!(
                "metadata over {MAX_METADATA_TOTAL_BYTES} bytes"
            )));
        }
        if pairs.iter().any(|(n, _)| *n == name) {
            warnings.push(format!("metadata {name:?} repeated; the first kept"));
            continue;
        }
        pairs.push((name, value));
    }
    let mut json_extra = None;
    for (name, value) in pairs {
        match name.as_str() {
            "format" => {
                meta.format = Some(value.clone());
                meta.json.insert(name, value.into());
            }
            "bounds" => meta.bounds = Some(value),
            "center" => meta.center = Some(value),
            "minzoom" | "maxzoom" => {}
            "json" => match serde_json::from_str::<serde_json::Value>(&value) {
                Ok(serde_json::Value::Object(o)) => json_extra = Some(o),
                Ok(_) => warnings.push("metadata json ignored: not a JSON object".into()),
                Err(e) => warnings.push(format!("metadata json ignored: {e}")),
            },
            _ => {
                meta.json.insert(name, value.into());
            }
        }
    }
    for (k, v) in json_extra.into_iter().flatten() {
        meta.json.entry(k).or_insert(v);
    }
    Ok(meta)
}

fn parse_numbers(s: &str) -> Result<Vec<f64>, String> {
    s.split(',')
        .map(|p| {
            p.trim()
                .parse::<f64>()
                .ok()
                .filter(|v| v.is_finite())
                .ok_or_else(|| format!("{:?} is not a number", p.trim()))
        })
        .collect()
}

/// `west,south,east,north` in degrees.
fn parse_bounds(s: &str) -> Result<[f64; 4], String> {
    let v = parse_numbers(s)?;
    let [w, so, e, n] = v[..] else {
        return Err(format!("{s:?} does not have 4 numbers"));
    };
    if !((-180.0..=180.0).contains(&w)
        && (-180.0..=180.0).contains(&e)
        && (-90.0..=90.0).contains(&so)
        && (-90.0..=90.0).contains(&n)
        && w <= e
        && so <= n)
    {
        return Err(format!(
            "{s:?} is not a west,south,east,north box in degrees"
        ));
    }
    // Web Mercator stops at ±85.05°; writers often say ±90.
    Ok([w, so.max(-MAX_LAT), e, n.min(MAX_LAT)])
}

/// `longitude,latitude[,zoom]`; a zoom outside the tiles' zooms is clamped to them.
fn parse_center(s: &str, min_zoom: u8, max_zoom: u8) -> Result<(f64, f64, u8), String> {
    let v = parse_numbers(s)?;
    let (lon, lat, zoom) = match v[..] {
        [lon, lat] => (lon, lat, f64::from(min_zoom)),
        [lon, lat, z] => (lon, lat, z),
        _ => return Err(format!("{s:?} does not have 2 or 3 numbers")),
    };
    if !((-180.0..=180.0).contains(&lon) && (-90.0..=90.0).contains(&lat)) {
        return Err(format!("{s:?} is not a longitude,latitude in degrees"));
    }
    let lat = lat.clamp(-MAX_LAT, MAX_LAT);
    let zoom = zoom.round().clamp(f64::from(min_zoom), f64::from(max_zoom)) as u8;
    Ok((lon, lat, zoom))
}

/// Tile ids in increasing order, without duplicates: 8 bytes a tile for index lookups, 16 with
/// the row id to fetch by.
enum Ids {
    Index(Vec<u64>),
    RowId(Vec<(u64, i64)>),
}

impl Ids {
    fn len(&self) -> usize {
        match self {
            Ids::Index(v) => v.len(),
            Ids::RowId(v) => v.len(),
        }
    }

    /// The i-th (tile id, row id); the row id is 0 for index lookups.
    fn get(&self, i: usize) -> Option<(u64, i64)> {
        match self {
            Ids::Index(v) => v.get(i).map(|id| (*id, 0)),
            Ids::RowId(v) => v.get(i).copied(),
        }
    }

    fn push(&mut self, id: u64, rowid: i64) {
        match self {
            Ids::Index(v) => v.push(id),
            Ids::RowId(v) => v.push((id, rowid)),
        }
    }

    /// Sorts and removes repeated tile ids (keeping the smallest row id); returns how many
    /// were removed.
    fn sort_dedup(&mut self) -> u64 {
        let before = self.len();
        match self {
            Ids::Index(v) => {
                v.sort_unstable();
                v.dedup();
                v.shrink_to_fit();
            }
            Ids::RowId(v) => {
                v.sort_unstable();
                v.dedup_by_key(|(id, _)| *id);
                v.shrink_to_fit();
            }
        }
        (before - self.len()) as u64
    }
}

struct Scan {
    ids: Ids,
    rows: u64,
    duplicates: u64,
}

fn integer(v: ValueRef<'_>, column: &'static str) -> Result<i64, MbtilesError> {
    match v {
        ValueRef::Integer(i) => Ok(i),
        other => Err(MbtilesError::BadCoordinate {
            column,
            value: match other {
                ValueRef::Null => "NULL".into(),
                ValueRef::Real(f) => f.to_string(),
                ValueRef::Text(t) => format!("{:?}", String::from_utf8_lossy(t)),
                ValueRef::Blob(b) => format!("a {}-byte blob", b.len()),
                ValueRef::Integer(i) => i.to_string(),
            },
        }),
    }
}

/// Validates an MBTiles (TMS) address and returns the XYZ tile.
fn xyz(zoom: i64, column: i64, row: i64) -> Result<TileCoord, MbtilesError> {
    let z = u8::try_from(zoom)
        .ok()
        .filter(|z| *z <= MAX_MBTILES_ZOOM)
        .ok_or(MbtilesError::ZoomTooDeep { zoom, column, row })?;
    let size = 1u64 << z;
    let in_range = |v: i64| u64::try_from(v).is_ok_and(|v| v < size);
    if !(in_range(column) && in_range(row)) {
        return Err(MbtilesError::OutOfRange {
            zoom,
            column,
            row,
            size,
        });
    }
    // In range, so both fit in u32 and the flip cannot underflow.
    let (x, row) = (column as u32, row as u32);
    let y = (size as u32).wrapping_sub(1).wrapping_sub(row);
    TileCoord::new(z, x, y).ok_or(MbtilesError::OutOfRange {
        zoom,
        column,
        row: i64::from(row),
        size,
    })
}

fn collect_ids(
    conn: &Connection,
    lookup: Lookup,
    opts: &MbtilesOptions,
    check_deadline: &dyn Fn() -> Result<(), MbtilesError>,
) -> Result<Scan, MbtilesError> {
    let query = match lookup {
        Lookup::Index => "SELECT zoom_level, tile_column, tile_row, 0 FROM tiles",
        Lookup::RowId => "SELECT zoom_level, tile_column, tile_row, _rowid_ FROM tiles",
    };
    let mut stmt = conn.prepare(query).map_err(sql("listing tiles"))?;
    let mut rows = stmt.query([]).map_err(sql("listing tiles"))?;
    // With an index, counting reads only the index; reserving exactly avoids the doubling
    // growth of a large id list (and a failed reservation is an error, not an abort).
    let expected = match lookup {
        Lookup::Index => conn
            .query_row("SELECT count(*) FROM tiles", [], |r| r.get::<_, i64>(0))
            .map_err(sql("counting tiles"))?,
        Lookup::RowId => 0,
    };
    let expected = u64::try_from(expected).unwrap_or(0);
    if expected > opts.max_tiles {
        return Err(MbtilesError::TooManyTiles {
            limit: opts.max_tiles,
        });
    }
    let reserve = usize::try_from(expected).unwrap_or(0);
    let mut ids = match lookup {
        Lookup::Index => {
            let mut v = Vec::new();
            v.try_reserve_exact(reserve)
                .map_err(|_| MbtilesError::TooManyTiles { limit: expected })?;
            Ids::Index(v)
        }
        Lookup::RowId => Ids::RowId(Vec::new()),
    };
    let mut count = 0u64;
    while let Some(r) = rows.next().map_err(sql("listing tiles"))? {
        count += 1;
        if count > opts.max_tiles {
            return Err(MbtilesError::TooManyTiles {
                limit: opts.max_tiles,
            });
        }
        if count.is_multiple_of(65_536) {
            check_deadline()?;
        }
        let get = |i: usize, name: &'static str| {
            r.get_ref(i)
                .map_err(sql("listing tiles"))
                .and_then(|v| integer(v, name))
        };
        let (zoom, column, row) = (
            get(0, "zoom_level")?,
            get(1, "tile_column")?,
            get(2, "tile_row")?,
        );
        let rowid = get(3, "rowid")?;
        let c = xyz(zoom, column, row)?;
        ids.push(tile_id(c), rowid);
    }
    let duplicates = ids.sort_dedup();
    Ok(Scan {
        duplicates,
        ids,
        rows: count,
    })
}

/// Point lookups of tile data; the blob is only read when within the size limit.
struct Fetcher<'c> {
    stmt: rusqlite::Statement<'c>,
    lookup: Lookup,
    max: i64,
}

impl<'c> Fetcher<'c> {
    fn new(
        conn: &'c Connection,
        lookup: Lookup,
        max_tile_bytes: u64,
    ) -> Result<Self, MbtilesError> {
        const COLS: &str = "typeof(tile_data), octet_length(tile_data), \
            CASE WHEN octet_length(tile_data) <= ?1 THEN tile_data END";
        let sql_text = match lookup {
            Lookup::Index => format!(
                "SELECT {COLS} FROM tiles WHERE zoom_level = ?2 AND tile_column = ?3 AND tile_row = ?4 LIMIT 1"
            ),
            Lookup::RowId => format!("SELECT {COLS} FROM tiles WHERE _rowid_ = ?2"),
        };
        let stmt = conn.prepare(&sql_text).map_err(sql("reading tiles"))?;
        Ok(Self {
            stmt,
            lookup,
            max: i64::try_from(max_tile_bytes).unwrap_or(i64::MAX),
        })
    }

    /// The data of tile `c` (TMS row `row`, or row id `rowid`).
    fn get(&mut self, c: TileCoord, row: u32, rowid: i64) -> Result<Vec<u8>, MbtilesError> {
        let (zoom, column) = (c.z, c.x);
        let mut rows = match self.lookup {
            Lookup::Index => self
                .stmt
                .query(rusqlite::params![self.max, zoom, column, row]),
            Lookup::RowId => self.stmt.query(rusqlite::params![self.max, rowid]),
        }
        .map_err(sql("reading tiles"))?;
        let Some(r) = rows.next().map_err(sql("reading tiles"))? else {
            return Err(MbtilesError::TileVanished { zoom, column, row });
        };
        let kind: String = r.get(0).map_err(sql("reading tiles"))?;
        match kind.as_str() {
            "blob" | "text" => {}
            "null" => return Err(MbtilesError::NullTile { zoom, column, row }),
            other => {
                return Err(MbtilesError::BadTileData {
                    zoom,
                    column,
                    row,
                    kind: other.into(),
                });
            }
        }
        let len: i64 = r.get(1).map_err(sql("reading tiles"))?;
        if len > self.max {
            return Err(MbtilesError::TileTooLarge {
                zoom,
                column,
                row,
                len: u64::try_from(len).unwrap_or(0),
                limit: u64::try_from(self.max).unwrap_or(0),
            });
        }
        match r.get_ref(2).map_err(sql("reading tiles"))? {
            ValueRef::Blob(b) | ValueRef::Text(b) => Ok(b.to_vec()),
            ValueRef::Null if len == 0 => Ok(Vec::new()),
            _ => Err(MbtilesError::TileVanished { zoom, column, row }),
        }
    }
}

fn is_zlib(d: &[u8]) -> bool {
    matches!(d, [cmf, flg, ..] if cmf & 0x0f == 8 && cmf >> 4 <= 7 && (u16::from(*cmf) * 256 + u16::from(*flg)) % 31 == 0)
}

/// A vector tile as gzip: gzip as is, zlib re-wrapped, raw MVT compressed.
fn to_gzip(data: &[u8]) -> Result<Vec<u8>, String> {
    if data.starts_with(&[0x1f, 0x8b]) {
        return Ok(data.to_vec());
    }
    let raw;
    let plain: &[u8] = if is_zlib(data) {
        let mut out = Vec::new();
        flate2::read::ZlibDecoder::new(data)
            .take(MAX_INFLATED_TILE_BYTES + 1)
            .read_to_end(&mut out)
            .map_err(|e| format!("bad zlib data: {e}"))?;
        if out.len() as u64 > MAX_INFLATED_TILE_BYTES {
            return Err(format!(
                "zlib data inflates to over {MAX_INFLATED_TILE_BYTES} bytes"
            ));
        }
        raw = out;
        &raw
    } else {
        data
    };
    let mut enc = flate2::write::GzEncoder::new(
        Vec::with_capacity(plain.len() / 2 + 32),
        flate2::Compression::default(),
    );
    enc.write_all(plain)
        .and_then(|()| enc.finish())
        .map_err(|e| format!("gzip: {e}"))
}

/// The union of tile extents, in degrees.
#[derive(Default)]
struct LonLatBox(Option<[f64; 4]>);

impl LonLatBox {
    fn add_tile(&mut self, c: TileCoord) {
        let n = f64::from(1u32 << c.z);
        let lon = |x: f64| x / n * 360.0 - 180.0;
        let lat = |y: f64| {
            (std::f64::consts::PI * (1.0 - 2.0 * y / n))
                .sinh()
                .atan()
                .to_degrees()
        };
        let (x, y) = (f64::from(c.x), f64::from(c.y));
        let t = [lon(x), lat(y + 1.0), lon(x + 1.0), lat(y)];
        self.0 = Some(match self.0 {
            None => t,
            Some(b) => [
                b[0].min(t[0]),
                b[1].min(t[1]),
                b[2].max(t[2]),
                b[3].max(t[3]),
            ],
        });
    }

    fn bounds(&self) -> [f64; 4] {
        // Tile edges at ±85.0511287798° round just past MAX_LAT.
        let [w, s, e, n] = self.0.unwrap_or([-180.0, -MAX_LAT, 180.0, MAX_LAT]);
        [w, s.max(-MAX_LAT), e, n.min(MAX_LAT)]
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    #[test]
    fn tms_flip_and_ranges() {
        assert_eq!(xyz(0, 0, 0).unwrap(), TileCoord { z: 0, x: 0, y: 0 });
        assert_eq!(xyz(3, 2, 0).unwrap(), TileCoord { z: 3, x: 2, y: 7 });
        assert_eq!(xyz(30, 0, (1 << 30) - 1).unwrap().y, 0);
        assert!(matches!(
            xyz(31, 0, 0),
            Err(MbtilesError::ZoomTooDeep { .. })
        ));
        assert!(matches!(
            xyz(-1, 0, 0),
            Err(MbtilesError::ZoomTooDeep { .. })
        ));
        assert!(matches!(xyz(2, 4, 0), Err(MbtilesError::OutOfRange { .. })));
        assert!(matches!(
            xyz(2, 0, -1),
            Err(MbtilesError::OutOfRange { .. })
        ));
    }

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

    #[test]
    fn bounds_and_center_parsing() {
        assert_eq!(
            parse_bounds("-10, -5,10,5").unwrap(),
            [-10.0, -5.0, 10.0, 5.0]
        );
        assert_eq!(
            parse_bounds("-180,-90,180,90").unwrap(),
            [-180.0, -MAX_LAT, 180.0, MAX_LAT]
        );
        assert!(parse_bounds("1,2,3").is_err());
        assert!(parse_bounds("10,0,-10,5").is_err());
        assert!(parse_bounds("a,b,c,d").is_err());
        assert!(parse_bounds("0,0,200,5").is_err());
        assert_eq!(parse_center("1,2,9", 0, 5).unwrap(), (1.0, 2.0, 5));
        assert_eq!(parse_center("1,2", 3, 5).unwrap(), (1.0, 2.0, 3));
        assert!(parse_center("1", 0, 5).is_err());
    }

    #[test]
    fn uri_escapes_reserved_characters() {
        let u = file_uri(Path::new("/tmp/a b?c#d%e.mbtiles")).unwrap();
        assert_eq!(u, "file:/tmp/a%20b%3Fc%23d%25e.mbtiles?mode=ro&immutable=1");
    }

    #[test]
    fn gzip_normalisation() {
        let raw = b"\x1a\x02\x78\x02".to_vec();
        let gz = to_gzip(&raw).unwrap();
        assert!(gz.starts_with(&[0x1f, 0x8b]));
        assert_eq!(to_gzip(&gz).unwrap(), gz);
        let mut z = flate2::write::ZlibEncoder::new(Vec::new(), flate2::Compression::default());
        z.write_all(&raw).unwrap();
        let z = z.finish().unwrap();
        let gz2 = to_gzip(&z).unwrap();
        let mut back = Vec::new();
        flate2::read::GzDecoder::new(&gz2[..])
            .read_to_end(&mut back)
            .unwrap();
        assert_eq!(back, raw);
    }
}
