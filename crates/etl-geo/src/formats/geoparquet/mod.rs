//! GeoParquet 1.0 and 1.1: read ([`open`]) and written ([`write::GeoParquetWriter`]).
//!
//! - **Bytes** ([`chunks`]): read through any Parquet
//!   [`ChunkReader`](parquet::file::reader::ChunkReader) — a local `File`, or a
//!   ranged reader over object storage ([`open_chunks`], [`ChunkSource`]) — the same way: the footer first,
//!   then each column chunk read ahead in bounded windows (one read per column chunk when it
//!   fits; all windows together bounded), every page header read to its end and checked
//!   against [`MAX_PAGE_BYTES`] and its column chunk before the library reads it.
//! - **Opening** ([`layout`]): the file must start and end with `PAR1`, and its footer must
//!   fit the file and [`MAX_FOOTER_BYTES`] before the Parquet library reads it; an encrypted
//!   footer (`PARE`) is refused. The `geo` key-value metadata ([`metadata`]) names the primary
//!   geometry column, its encoding and CRS; a Parquet file without it is refused as "not
//!   GeoParquet". A row group over [`MAX_ROW_GROUP_BYTES`] uncompressed is refused, and so
//!   is a column chunk read whose bytes lie outside the file.
//! - **Geometry** ([`geometry`]): WKB (ISO Z/M type codes and EWKB flags read, Z and M
//!   dropped) or GeoArrow's native point, linestring, polygon, multipoint, multilinestring
//!   and multipolygon, with separated (`{x, y}` struct) or interleaved coordinates. A null
//!   or empty geometry is a null geometry; one that cannot be read rejects its row. Other
//!   geometry columns the metadata lists are not read (noted in [`describe`]).
//! - **Coordinate system**: the column's `crs`; absent means OGC:CRS84, PROJJSON is resolved
//!   (an EPSG `id` through the registry), explicit `null` (unknown) is refused unless
//!   `--s-srs` names one; `--s-srs` always wins. Positions are x = easting/longitude first,
//!   whatever axis order the CRS declares, as the specification says.
//! - **Properties** ([`values`]): every other column, typed as JSON the way that module
//!   says; a column of a type not read refuses the file at open, naming it.
//! - **Files this crate wrote**: a `tak-etl` metadata entry names the column holding feature
//!   ids (read back as the feature id, not a property) and the `properties_extra` JSON column
//!   (its object is merged into the properties): see [`write`].
//! - **Streaming** ([`read`]): one row group at a time, a record batch of at most
//!   [`BATCH_ROWS`] rows (about [`BATCH_BYTES`]) at a time; `opts.cancel` is polled between
//!   batches. The Parquet library runs behind `catch_unwind`: a panic on corrupt data becomes
//!   an error naming the file.
//! - **Records**: [`Record::line`](crate::Record) is the 1-based row number, the ordinal the
//!   0-based one. Every fatal error is one line naming the file.

mod chunks;
pub use chunks::ChunkSource;
mod geometry;
mod header;
mod infer;
mod layout;
pub(crate) mod metadata;
mod read;
mod values;
pub mod write;

#[cfg(test)]
mod tests;

use std::fs::File;
use std::path::Path;

use crate::error::ReadError;
use crate::formats::{FeatureSource, ReadOptions};

/// The first and last four bytes of a Parquet file.
pub(crate) const MAGIC: &[u8; 4] = b"PAR1";
/// The largest footer (file metadata) read.
const MAX_FOOTER_BYTES: u64 = 64 << 20;
/// The largest row group (uncompressed bytes, as its footer says) read.
const MAX_ROW_GROUP_BYTES: i64 = 2 << 30;
/// The largest page read (its stated size, compressed or not): what the Parquet library
/// allocates for it before reading it.
const MAX_PAGE_BYTES: i64 = 256 << 20;
/// Most rows of one record batch.
const BATCH_ROWS: usize = 8192;
/// About the most bytes (uncompressed) of one record batch.
const BATCH_BYTES: u64 = 32 << 20;

/// Whether a file starting with `prefix` is a Parquet file.
pub(crate) fn is_parquet(prefix: &[u8]) -> bool {
    prefix.starts_with(MAGIC)
}

/// Checks the GeoParquet file at `path` as [`open`] does, and returns what it will not read
/// (other geometry columns), for the log.
pub(crate) fn describe(path: &Path, opts: &ReadOptions) -> Result<Vec<String>, ReadError> {
    let chunks = chunks::Chunks::new(File::open(path)?);
    layout::Layout::open(&chunks, &file_name(path), opts).map(|l| l.skipped)
}

/// Opens the GeoParquet file at `path` as a stream of records.
pub(crate) fn open(path: &Path, opts: &ReadOptions) -> Result<FeatureSource, ReadError> {
    open_chunks(File::open(path)?, &file_name(path), opts).map(|(source, _)| source)
}

/// Opens GeoParquet read through `reader` (a local `File`, a ranged reader over object
/// storage) as a stream of records, and says what it will not read (other geometry columns),
/// for the log. `name` names the file in every error. Nothing but the footer is read before
/// the first record is asked for.
pub fn open_chunks<R: ChunkSource + 'static>(
    reader: R,
    name: &str,
    opts: &ReadOptions,
) -> Result<(FeatureSource, Vec<String>), ReadError> {
    let chunks = chunks::Chunks::new(reader);
    let layout = layout::Layout::open(&chunks, name, opts)?;
    let skipped = layout.skipped.clone();
    let reader = read::Reader::new(chunks, name.to_owned(), layout, opts.cancel.clone());
    Ok((Box::new(reader), skipped))
}

/// Runs a call into the Parquet library, turning a panic on corrupt data into an error that
/// keeps the panic's message.
fn guarded<T, E: std::fmt::Display>(f: impl FnOnce() -> Result<T, E>) -> Result<T, String> {
    match std::panic::catch_unwind(std::panic::AssertUnwindSafe(f)) {
        Ok(Ok(v)) => Ok(v),
        Ok(Err(e)) => Err(e.to_string()),
        Err(panic) => {
            let message = panic
                .downcast_ref::<&str>()
                .copied()
                .or_else(|| panic.downcast_ref::<String>().map(String::as_str));
            Err(match message {
                Some(m) => format!("the Parquet decoder failed on this data: {m}"),
                None => "the Parquet decoder failed on this data".into(),
            })
        }
    }
}

fn refused(file: &str, message: impl std::fmt::Display) -> ReadError {
    ReadError::Refused(format!("{file}: {message}").replace(['\n', '\r'], " "))
}

fn file_name(path: &Path) -> String {
    path.file_name().map_or_else(
        || path.display().to_string(),
        |n| n.to_string_lossy().into_owned(),
    )
}
