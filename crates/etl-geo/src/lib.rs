//! The feature model of tak-etl and streaming readers and writers for
//! geospatial formats.
//!
//! Readers ([`open`]) turn GeoJSON documents, GeoJSON sequences and CSV into an
//! iterator of [`Record`]s: each is a [`Feature`] or a [`Rejection`] saying why that
//! one record was refused, with its line and ordinal. Only problems that make the
//! rest of the input unreadable are a fatal [`ReadError`]. Every geometry read is
//! checked by [`validate`].
//!
//! Writers: [`FeatureWriter`] for GeoJSON, [`GeoParquetWriter`] for GeoParquet 1.1,
//! [`CopyEncoder`] for PostgreSQL
//! `COPY … (FORMAT text)` and `(FORMAT binary)` rows, [`write_ewkb`] for PostGIS EWKB.

pub use geo_types;

pub mod archive;
mod cancel;
pub mod crs;
mod error;
mod ewkb;
mod feature;
mod format;
mod formats;
mod pgcopy;
pub mod sqlite;
pub mod upload;
mod validate;

pub use cancel::Cancel;
pub use crs::{Crs, CrsError};
pub use error::ReadError;
pub use ewkb::{EwkbError, read_ewkb, write_ewkb};
pub use feature::{Feature, FeatureId};
pub use format::{Format, GPX_LAYERS, describe_unknown};
pub use formats::geojson::{FeatureWriter, OutputFormat, feature_to_json};
pub use formats::geoparquet::write::{GeoParquetError, GeoParquetWriter};
pub use formats::{
    CsvOptions, FeatureSource, MAX_RECORD_BYTES, ReadOptions, Record, Rejection, open,
};
pub use pgcopy::{
    COPY_BINARY_HEADER, COPY_BINARY_TRAILER, ColumnKind, ColumnSource, Conflict, CopyColumn,
    CopyEncoder,
};
pub use upload::{Asset, Upload, UploadFormat, UploadOptions};
pub use validate::validate;
