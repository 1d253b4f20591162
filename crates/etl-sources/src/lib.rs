//! Where the jobs' features come from: `--input` URLs expanded into objects of a [`Store`]
//! (local paths, directories, globs, `s3://` keys and prefixes), and each object read on a
//! blocking thread through format detection, gzip and the etl-geo readers, delivered in
//! batches over a bounded channel.
//!
//! [`Store`]: etl_core::store::Store

pub mod args;
pub mod file;
pub mod inputs;
pub mod ranged;
pub mod read;

pub use args::{CsvArgs, InputArgs, Source};
