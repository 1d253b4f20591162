//! GeoJSON: FeatureCollection and single-object documents, newline- or
//! RS-delimited sequences (NDJSON, RFC 8142), and writers for both.

mod coordinates;
mod decode;
mod read;
mod scan;
mod seq;
mod write;

pub(crate) use read::GeoJsonReader;
pub(crate) use seq::GeoJsonSeqReader;
pub use write::GeometryJson;
pub use write::{FeatureWriter, OutputFormat, feature_to_json};
