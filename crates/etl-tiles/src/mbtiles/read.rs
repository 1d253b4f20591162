//! Reading the SQLite file: the checks before opening it, the hardened connection, the
//! `tiles` source and how to look tiles up, the coordinate scan (pass 1) and the point lookups
//! of tile data (pass 2).

use std::path::Path;
use std::time::{Duration, Instant};

use etl_geo::sqlite::SqliteOpenError;
use rusqlite::Connection;
use rusqlite::types::ValueRef;

use super::{Lookup, MAX_MBTILES_ZOOM, MbtilesError, MbtilesOptions, sql};
use crate::tile::{TileCoord, tile_id};

/// Refuses anything but a regular file that starts with the SQLite header and is as long as
/// the header says (a truncated upload would otherwise read as zero-filled pages).
pub(super) fn check_sqlite_file(path: &Path) -> Result<(), MbtilesError> {
    etl_geo::sqlite::check_file(path).map_err(open_error)
}

/// The hardened read-only connection of [`etl_geo::sqlite::open_read_only`].
pub(super) fn open(
    path: &Path,
    deadline: Option<(Instant, Duration)>,
) -> Result<Connection, MbtilesError> {
    etl_geo::sqlite::open_read_only(path, deadline).map_err(open_error)
}

fn open_error(e: SqliteOpenError) -> MbtilesError {
    match e {
        SqliteOpenError::Io(e) => MbtilesError::Io(e),
        SqliteOpenError::NotSqlite(message) => MbtilesError::NotMbtiles(message),
        SqliteOpenError::Truncated(message) => MbtilesError::Corrupt {
            what: "file size",
            message,
        },
        SqliteOpenError::Sqlite { what, source, .. } => sql(what)(source),
    }
}

/// Checks that `tiles` exists with the MBTiles columns and decides how to fetch tiles in
/// tile-id order. Returns the object kind (`table`/`view`) and the lookup.
pub(super) fn tiles_source(conn: &Connection) -> Result<(String, Lookup), MbtilesError> {
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

/// Tile ids in increasing order, without duplicates: 8 bytes a tile for index lookups, 16 with
/// the row id to fetch by.
pub(super) enum Ids {
    Index(Vec<u64>),
    RowId(Vec<(u64, i64)>),
}

impl Ids {
    pub(super) fn len(&self) -> usize {
        match self {
            Ids::Index(v) => v.len(),
            Ids::RowId(v) => v.len(),
        }
    }

    /// The i-th (tile id, row id); the row id is 0 for index lookups.
    pub(super) fn get(&self, i: usize) -> Option<(u64, i64)> {
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

pub(super) struct Scan {
    pub(super) ids: Ids,
    pub(super) rows: u64,
    pub(super) duplicates: u64,
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

pub(super) fn collect_ids(
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
pub(super) struct Fetcher<'c> {
    stmt: rusqlite::Statement<'c>,
    lookup: Lookup,
    max: i64,
}

impl<'c> Fetcher<'c> {
    pub(super) fn new(
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
    pub(super) fn get(
        &mut self,
        c: TileCoord,
        row: u32,
        rowid: i64,
    ) -> Result<Vec<u8>, MbtilesError> {
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
}
