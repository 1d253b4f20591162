//! etl-events: the import worker. An upload (a file, an S3 object named by an event, or a row
//! of the `imports` queue) becomes PREFIX/NAME.geojsonl, PREFIX/NAME.pmtiles and a
//! PREFIX/NAME.json manifest, all or nothing.

pub mod cloudtak;
pub mod config;
pub mod convert;
pub mod event;
pub mod gc;
pub mod icons;
pub mod import;
pub mod job;
pub mod links;
pub mod publish;
mod repairs;
pub mod serve;

pub use config::EventsConfig;
pub use job::EventsJob;
