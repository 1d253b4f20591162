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
//! [`write_ewkb`] for PostGIS EWKB. PostgreSQL COPY rows are encoded by the `etl-sinks` crate.
//! WKB and EWKB (GeoPackage, GeoParquet, PostGIS rows: [`read_ewkb`]) have one reader.

pub use geo_types;

pub mod archive;
mod cancel;
pub mod crs;
mod curve;
mod error;
mod ewkb;
mod feature;
pub mod filter;
mod format;
mod formats;
pub mod make_valid;
mod repair;
pub mod sqlite;
pub mod upload;
mod validate;
mod wkt;

pub use cancel::Cancel;
pub use crs::{Crs, CrsError, project};
pub use error::ReadError;
pub use ewkb::{write_ewkb, write_ewkb_hex};
pub use feature::{Feature, FeatureId};
pub use format::{Format, GPX_LAYERS, describe_unknown};
pub use formats::geojson::{FeatureWriter, GeometryJson, OutputFormat, feature_to_json};
pub use formats::geoparquet::write::{GeoParquetError, GeoParquetWriter};
pub use formats::geoparquet::{ChunkSource, open_chunks as open_geoparquet};
pub use formats::kml::links::{
    icon_hrefs as kml_icon_hrefs, network_links as kml_network_links, resolve as resolve_kml_link,
};
pub use formats::wkb::{WkbError as EwkbError, read_ewkb, read_ewkb_with_repairs};
pub use formats::{
    CsvOptions, FeatureSource, MAX_RECORD_BYTES, ReadOptions, Record, Rejection, excerpt, open,
};
pub use repair::{Repair, Repairs};
pub use upload::{Asset, LinkedDoc, Upload, UploadFormat, UploadOptions};
pub use validate::validate;
