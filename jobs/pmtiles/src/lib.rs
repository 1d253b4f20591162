//! etl-pmtiles: tippecanoe-compatible PMTiles generation on the shared runner, plus the
//! `verify`, `show` and `merge` archive tools.

pub mod config;
pub mod flags;
pub mod http_range;
pub mod job;
pub mod output;
pub mod sql;
pub mod stdin;
pub mod tools;

pub use config::PmtilesConfig;
pub use job::PmtilesJob;
