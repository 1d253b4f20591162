//! `etl-submit`: AWS Batch submission (`submit`) and deployment (`deploy`) for the tak-etl jobs.

pub mod deploy;
pub mod submit;
