//! The runtime every tak-etl job shares: the [`Job`] trait and its runner (config, logs, metrics,
//! signals, exit codes), the [`store::Store`] for local files and S3, the Postgres adapter and
//! checkpoint stores with leases.

pub mod batch;
pub mod checkpoint;
pub mod error;
pub mod fault;
pub mod imports;
pub mod job;
pub mod metrics;
pub mod postgres;
pub mod profile;
pub mod runkey;
pub mod runner;
pub mod schedule;
pub mod scratch;
pub mod store;

pub use error::{ExitKind, JobError};
pub use job::{Job, JobContext, Outcome};
pub use profile::Profile;
