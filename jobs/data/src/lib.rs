//! etl-data: load geospatial files (GeoJSON, GeoJSON sequences, CSV) from local paths or S3 into
//! PostGIS (append, replace, upsert; exactly once, resumable) or into GeoJSON files on disk or S3.

pub mod config;
pub mod job;
pub mod rejects;
pub mod retention;
pub mod sink;
pub mod state;

pub use etl_sources::{inputs, read};

pub use config::{DataConfig, Mode};
pub use job::DataJob;
pub use retention::RetentionJob;
