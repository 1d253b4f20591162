//! Reads the vector feature tables of a GeoPackage (an SQLite file), streamed a page of rows
//! at a time.
//!
//! - **Opening**: only through [`crate::sqlite`]: the file is checked (regular file, SQLite
//!   header, not truncated), then opened read-only, immutable and hardened (untrusted schema,
//!   defensive mode, triggers off). SQL text from the file is never run; table and column
//!   names, which come from the file, are bound as parameters or quoted as identifiers, and
//!   a name holding a NUL is refused. Metadata text (names, CRS definitions) is read only up
//!   to a bounded length, and no single value larger than [`MAX_VALUE_BYTES`] is read.
//! - **Layers** ([`feature_tables`]): the `gpkg_contents` rows of `data_type` `features`, in
//!   their order there, that also have a `gpkg_geometry_columns` row and exist as a table or
//!   view; at most [`MAX_LAYERS`].
//! - **Rows** ([`open_layer`]): a table with an `INTEGER PRIMARY KEY` (as the GeoPackage
//!   standard requires) is read in key order, [`PAGE_ROWS`] rows (or about [`PAGE_BYTES`]) at a
//!   time by `WHERE key > last ORDER BY key LIMIT n`; another table by its row id; a view by
//!   `LIMIT n OFFSET k` (each page re-runs the view up to its offset). `opts.cancel` is polled
//!   between pages and interrupts SQLite inside one.
//! - **Geometry**: the GeoPackage binary header ([`blob`]) and then WKB ([`wkb`]); Z and M are
//!   dropped; an empty geometry or a NULL is a null geometry; a bad blob rejects its row.
//! - **Id and properties**: the single integer primary key column is the feature id (not a
//!   property; views and tables without one give features without an id); every other column
//!   but the geometry is a property: INTEGER and REAL → number
//!   (NaN and infinities → `null`), TEXT → string, NULL → `null`, an integer in a column
//!   declared `BOOLEAN` → `true`/`false`, DATE and DATETIME stay text, **BLOB → standard base64
//!   string (with padding)**.
//! - **Coordinate system**: the layer's `srs_id` in `gpkg_spatial_ref_sys`: organization EPSG
//!   with a positive code → that EPSG CRS (its `definition` when the registry lacks the code),
//!   `srs_id` 0 (undefined geographic) and -1 (undefined Cartesian) → the table's extent in
//!   `gpkg_contents` decides: longitude/latitude → WGS 84, anything else → refused whole (a
//!   local grid is never read as degrees); without an extent 0 → WGS 84 (each position
//!   checked) and -1 → refused; anything else → the `definition` text. `opts.source_crs` overrides all of this. A CRS that
//!   cannot be resolved refuses the layer; a position it cannot transform rejects the row.
//! - **Records**: [`Record::line`](crate::Record) is the 1-based row number in read order,
//!   the ordinal the 0-based one. A corrupt file is a [`ReadError::Refused`] naming the file,
//!   a failing disk a [`ReadError::Io`]; a value over [`MAX_VALUE_BYTES`] ends the read with a
//!   refusal. The blob header's own `srs_id` and envelope are not used.

mod blob;
mod layer;
mod read;

#[cfg(test)]
mod tests;

use std::io;
use std::path::Path;
use std::time::{Duration, Instant};

use rusqlite::{Connection, Row, limits::Limit, types::ValueRef};

use crate::cancel::{Cancel, cancelled};
use crate::error::ReadError;
use crate::formats::{FeatureSource, MAX_RECORD_BYTES, ReadOptions, excerpt};
use crate::sqlite::{self, SqliteOpenError};

/// Most feature tables one file may list.
pub(crate) const MAX_LAYERS: usize = 1000;
/// Most rows read per page.
pub(crate) const PAGE_ROWS: usize = 1000;
/// A page ends early once its rows hold this many bytes of values.
pub(crate) const PAGE_BYTES: usize = 32 * 1024 * 1024;
/// The largest single value (a geometry blob, a text) SQLite is allowed to read.
pub(crate) const MAX_VALUE_BYTES: usize = MAX_RECORD_BYTES;
/// The longest table or column name read.
const MAX_NAME: usize = 4096;
/// The most columns a statement may have (SQLite's own default limit).
const MAX_COLUMNS: i32 = 2000;

/// The `application_id`s of GeoPackage 1.2+ (`GPKG`) and of 1.0 and 1.1 (`GP10`, `GP11`).
const APPLICATION_IDS: [&[u8; 4]; 3] = [b"GPKG", b"GP10", b"GP11"];

/// Whether `prefix` (the start of a file) is an SQLite database whose header carries a
/// GeoPackage `application_id` (big-endian at byte offset 68).
pub(crate) fn is_geopackage(prefix: &[u8]) -> bool {
    prefix.starts_with(sqlite::SQLITE_HEADER)
        && prefix
            .get(68..72)
            .is_some_and(|id| APPLICATION_IDS.iter().any(|a| a.as_slice() == id))
}

#[cfg(test)]
/// The feature tables of the GeoPackage at `path`: `gpkg_contents.data_type = 'features'`,
/// in `gpkg_contents` order, only those also in `gpkg_geometry_columns` and existing as a
/// table or view.
pub(crate) fn feature_tables(path: &Path) -> Result<Vec<String>, ReadError> {
    layers(path).map(|(tables, _)| tables)
}

/// The feature tables (as [`feature_tables`]) and, apart, the feature layers that are views:
/// a view's rows are computed by SQL the file brings, so views are only read when asked for
/// by name — and then refused.
pub(crate) fn layers(path: &Path) -> Result<(Vec<String>, Vec<String>), ReadError> {
    let file = file_name(path);
    let file = file.as_str();
    let conn = connect(path, file)?;
    let err = |what: &'static str| move |e: rusqlite::Error| sql_error(file, what, e, None);
    require_tables(&conn, file)?;
    let mut candidates = Vec::new();
    {
        let mut stmt = conn
            .prepare(&format!(
                "SELECT {} FROM gpkg_contents WHERE data_type = 'features' ORDER BY _rowid_",
                bounded("table_name", MAX_NAME)
            ))
            .map_err(err("reading gpkg_contents"))?;
        let mut rows = stmt.query([]).map_err(err("reading gpkg_contents"))?;
        while let Some(row) = rows.next().map_err(err("reading gpkg_contents"))? {
            let Some(name) = bounded_text(row, 0, MAX_NAME)
                .map_err(|m| refused(file, format!("gpkg_contents: a table_name {m}")))?
            else {
                continue;
            };
            check_name(file, &name)?;
            if candidates
                .iter()
                .any(|c: &String| c.eq_ignore_ascii_case(&name))
            {
                continue;
            }
            if candidates.len() == MAX_LAYERS {
                return Err(refused(
                    file,
                    format!("more than {MAX_LAYERS} feature tables in gpkg_contents"),
                ));
            }
            candidates.push(name);
        }
    }
    let mut geometry = conn
        .prepare("SELECT 1 FROM gpkg_geometry_columns WHERE table_name = ?1 LIMIT 1")
        .map_err(err("reading gpkg_geometry_columns"))?;
    let mut kind = conn
        .prepare("SELECT type FROM pragma_table_list(?1) WHERE schema = 'main'")
        .map_err(err("reading the schema"))?;
    let mut tables = Vec::with_capacity(candidates.len());
    let mut views = Vec::new();
    for name in candidates {
        let has_geometry = geometry
            .exists([&name])
            .map_err(err("reading gpkg_geometry_columns"))?;
        let kind_of = kind
            .query_row([&name], |r| r.get::<_, String>(0))
            .map(Some)
            .or_else(|e| match e {
                rusqlite::Error::QueryReturnedNoRows => Ok(None),
                e => Err(e),
            })
            .map_err(err("reading the schema"))?;
        match kind_of.as_deref() {
            Some("view") if has_geometry => views.push(name),
            Some("table") if has_geometry => tables.push(name),
            _ => {}
        }
    }
    Ok((tables, views))
}

/// Opens one feature table of the GeoPackage at `path` (a name from [`feature_tables`]) as a
/// stream of records.
pub(crate) fn open_layer(
    path: &Path,
    table: &str,
    opts: &ReadOptions,
) -> Result<FeatureSource, ReadError> {
    open_layer_with(path, table, opts, MAX_VALUE_BYTES)
}

/// [`open_layer`] with the largest value SQLite may read set to `max_value` (for tests).
pub(super) fn open_layer_with(
    path: &Path,
    table: &str,
    opts: &ReadOptions,
    max_value: usize,
) -> Result<FeatureSource, ReadError> {
    let file = file_name(path);
    check_name(&file, table)?;
    let conn = connect(path, &file)?;
    conn.set_limit(
        Limit::SQLITE_LIMIT_LENGTH,
        i32::try_from(max_value).unwrap_or(i32::MAX),
    )
    .map_err(|e| sql_error(&file, "configuring SQLite", e, None))?;
    let cancel = opts.cancel.clone();
    conn.progress_handler(sqlite::PROGRESS_STEPS, Some(move || cancel.is_cancelled()))
        .map_err(|e| sql_error(&file, "configuring SQLite", e, None))?;
    require_tables(&conn, &file)?;
    let layer = layer::Layer::describe(&conn, &file, table, opts)?;
    Ok(Box::new(read::LayerReader::new(
        conn,
        layer,
        file,
        opts.cancel.clone(),
    )))
}

/// Checks and opens the file; errors name it.
fn connect(path: &Path, file: &str) -> Result<Connection, ReadError> {
    let open_error = |e: SqliteOpenError| match e {
        SqliteOpenError::Io(e) => ReadError::Io(e),
        SqliteOpenError::NotSqlite(m) => refused(file, format!("not a GeoPackage: {m}")),
        SqliteOpenError::Truncated(m) => refused(file, format!("corrupt GeoPackage: {m}")),
        SqliteOpenError::Sqlite { what, source, .. } => sql_error(file, what, source, None),
    };
    sqlite::check_file(path).map_err(open_error)?;
    // Listing layers and describing one reads a few catalog rows: a minute is plenty, and
    // stops a file whose catalog queries would not end.
    let deadline = Duration::from_secs(60);
    let conn = sqlite::open_read_only(path, Some((Instant::now() + deadline, deadline)))
        .map_err(open_error)?;
    conn.set_limit(Limit::SQLITE_LIMIT_COLUMN, MAX_COLUMNS)
        .map_err(|e| sql_error(file, "configuring SQLite", e, None))?;
    Ok(conn)
}

/// Refuses a file without the GeoPackage tables a feature layer needs.
fn require_tables(conn: &Connection, file: &str) -> Result<(), ReadError> {
    let mut stmt = conn
        // Tables only: a view could compute without end (a recursive CTE) or without bound.
        .prepare("SELECT 1 FROM sqlite_schema WHERE type = 'table' AND name = ?1 COLLATE NOCASE")
        .map_err(|e| sql_error(file, "reading the schema", e, None))?;
    for table in [
        "gpkg_contents",
        "gpkg_geometry_columns",
        "gpkg_spatial_ref_sys",
    ] {
        let found = stmt
            .exists([table])
            .map_err(|e| sql_error(file, "reading the schema", e, None))?;
        if !found {
            return Err(refused(
                file,
                format!("not a GeoPackage: it has no {table} table"),
            ));
        }
    }
    Ok(())
}

/// A table name is used only bound or quoted, but SQLite cannot take one holding NUL.
fn check_name(file: &str, name: &str) -> Result<(), ReadError> {
    if name.contains('\0') {
        return Err(refused(
            file,
            format!("table name {} contains a NUL character", shown(name)),
        ));
    }
    Ok(())
}

/// `name` as an SQL identifier: in double quotes, quotes inside doubled.
pub(super) fn quote(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

/// A name from the file for a one-line message: quoted and escaped, long ones cut short.
pub(super) fn shown(name: &str) -> String {
    let cut = excerpt(name);
    if cut.len() < name.len() {
        format!("{cut:?}…")
    } else {
        format!("{cut:?}")
    }
}

/// Two result columns for the text expression `expr`: its value when at most `max` bytes
/// long (else NULL), and its length. Read them with [`bounded_text`].
pub(super) fn bounded(expr: &str, max: usize) -> String {
    format!("CASE WHEN octet_length({expr}) <= {max} THEN {expr} END, octet_length({expr})")
}

/// The text of a [`bounded`] pair starting at column `i`: `None` for NULL, an error (to
/// complete "a table_name …") when it is longer than `max` or a blob.
pub(super) fn bounded_text(row: &Row<'_>, i: usize, max: usize) -> Result<Option<String>, String> {
    let value = row.get_ref(i).map_err(|e| e.to_string())?;
    let len = row
        .get_ref(i + 1)
        .map_err(|e| e.to_string())?
        .as_i64_or_null()
        .map_err(|e| e.to_string())?;
    match value {
        ValueRef::Null => match len {
            Some(len) => Err(format!("of {len} bytes is longer than the {max} allowed")),
            None => Ok(None),
        },
        ValueRef::Text(t) => Ok(Some(String::from_utf8_lossy(t).into_owned())),
        ValueRef::Integer(i) => Ok(Some(i.to_string())),
        ValueRef::Real(f) => Ok(Some(f.to_string())),
        ValueRef::Blob(_) => Err("is a blob, not text".into()),
    }
}

pub(super) fn refused(file: &str, message: impl std::fmt::Display) -> ReadError {
    ReadError::Refused(format!("{file}: {message}").replace(['\n', '\r'], " "))
}

/// Maps an SQLite error while doing `what` to a [`ReadError`] naming the file. An interrupt
/// asked for by `cancel` is the cancellation error.
pub(super) fn sql_error(
    file: &str,
    what: &str,
    e: rusqlite::Error,
    cancel: Option<&Cancel>,
) -> ReadError {
    let message = e.to_string();
    match e.sqlite_error_code() {
        Some(rusqlite::ErrorCode::OperationInterrupted)
            if cancel.is_some_and(Cancel::is_cancelled) =>
        {
            cancelled()
        }
        Some(
            rusqlite::ErrorCode::SystemIoFailure
            | rusqlite::ErrorCode::DiskFull
            | rusqlite::ErrorCode::OutOfMemory
            | rusqlite::ErrorCode::CannotOpen,
        ) => ReadError::Io(io::Error::other(
            format!("{file}: {what}: {message}").replace(['\n', '\r'], " "),
        )),
        Some(rusqlite::ErrorCode::DatabaseCorrupt | rusqlite::ErrorCode::NotADatabase) => {
            refused(file, format!("corrupt GeoPackage ({what}): {message}"))
        }
        Some(rusqlite::ErrorCode::TooBig) => refused(
            file,
            format!("{what}: a value is too large to read ({message})"),
        ),
        _ => refused(file, format!("{what}: {message}")),
    }
}

fn file_name(path: &Path) -> String {
    path.file_name().map_or_else(
        || path.display().to_string(),
        |n| n.to_string_lossy().into_owned(),
    )
}
