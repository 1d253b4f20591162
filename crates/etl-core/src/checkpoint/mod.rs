//! Checkpoints: one interface, three stores (local directory, S3 prefix, Postgres tables), each
//! with a lease that stops two workers from running one run key at once.
//!
//! A checkpoint is a set of named JSON states under a scope (usually the run key). Rules the jobs
//! follow: output durable first, checkpoint second; into Postgres, data and checkpoint commit in
//! one transaction ([`PostgresCheckpoints::save_in`]).

mod file;
mod lease;
mod postgres;
mod s3;

use std::collections::BTreeMap;
use std::time::Duration;

use serde_json::Value;

pub use file::FileCheckpoints;
pub use lease::{Lease, LeaseInfo};
pub use postgres::PostgresCheckpoints;
pub use s3::S3Checkpoints;

use crate::error::JobError;
use crate::postgres::PgError;
use crate::store::{Location, Store, StoreError};

#[derive(Debug, thiserror::Error)]
pub enum CheckpointError {
    #[error("checkpoint store: {0}")]
    Store(#[from] StoreError),
    #[error("checkpoint store: {0}")]
    Postgres(#[from] PgError),
    #[error("checkpoint {location}: corrupt state: {message}")]
    Corrupt { location: String, message: String },
    #[error("checkpoint {0}: changed by another writer (lease lost?)")]
    Conflict(String),
}

impl From<CheckpointError> for JobError {
    fn from(e: CheckpointError) -> Self {
        match e {
            CheckpointError::Store(s) => JobError::from(s),
            CheckpointError::Postgres(p) => JobError::from(p),
            CheckpointError::Corrupt { .. } => JobError::config(e.to_string()),
            CheckpointError::Conflict(_) => JobError::temporary(e.to_string()),
        }
    }
}

/// A scope's states by name.
pub type States = BTreeMap<String, Value>;

/// The checkpoint store a run uses.
pub enum Checkpoints {
    File(FileCheckpoints),
    S3(Box<S3Checkpoints>),
    Postgres(PostgresCheckpoints),
}

impl Checkpoints {
    /// A store at a URL: a directory path, `s3://bucket/prefix/`, or a postgres:// URL.
    pub async fn open(
        url: &str,
        store: &Store,
        pool: Option<sqlx::PgPool>,
    ) -> Result<Checkpoints, CheckpointError> {
        if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            let pool = match pool {
                Some(p) => p,
                None => crate::postgres::connect(url, 4).await?,
            };
            return Ok(Checkpoints::Postgres(
                PostgresCheckpoints::open(pool).await?,
            ));
        }
        Ok(match Location::parse(url)? {
            Location::File(dir) => Checkpoints::File(FileCheckpoints::new(dir)),
            loc @ Location::S3 { .. } => {
                Checkpoints::S3(Box::new(S3Checkpoints::new(store.clone(), loc)))
            }
        })
    }

    pub fn describe(&self) -> String {
        match self {
            Checkpoints::File(f) => f.describe(),
            Checkpoints::S3(s) => s.describe(),
            Checkpoints::Postgres(_) => "postgres tables etl_run / etl_checkpoint".into(),
        }
    }

    /// Every state saved under `scope`.
    pub async fn load(&self, scope: &str) -> Result<States, CheckpointError> {
        match self {
            Checkpoints::File(f) => f.load(scope).await,
            Checkpoints::S3(s) => s.load(scope).await,
            Checkpoints::Postgres(p) => p.load(scope).await,
        }
    }

    /// Saves one named state (replacing the previous one of that name).
    pub async fn save(
        &self,
        scope: &str,
        name: &str,
        state: &Value,
    ) -> Result<(), CheckpointError> {
        match self {
            Checkpoints::File(f) => f.save(scope, name, state).await,
            Checkpoints::S3(s) => s.save(scope, name, state).await,
            Checkpoints::Postgres(p) => p.save(scope, name, state).await,
        }
    }

    /// Deletes every state of a scope.
    pub async fn clear(&self, scope: &str) -> Result<(), CheckpointError> {
        match self {
            Checkpoints::File(f) => f.clear(scope).await,
            Checkpoints::S3(s) => s.clear(scope).await,
            Checkpoints::Postgres(p) => p.clear(scope).await,
        }
    }

    /// Takes the lease on `scope` for `owner`. `Ok(Err(info))` when another live owner holds it.
    pub async fn acquire(
        &self,
        scope: &str,
        owner: &str,
        ttl: Duration,
    ) -> Result<Result<Lease, LeaseInfo>, CheckpointError> {
        match self {
            Checkpoints::File(f) => f.acquire(scope, owner).await,
            Checkpoints::S3(s) => s.acquire(scope, owner, ttl).await,
            Checkpoints::Postgres(p) => p.acquire(scope, owner, ttl).await,
        }
    }

    pub fn as_postgres(&self) -> Option<&PostgresCheckpoints> {
        match self {
            Checkpoints::Postgres(p) => Some(p),
            _ => None,
        }
    }
}

/// Decodes a scope document (file and S3 stores keep one JSON object per scope).
fn decode_states(location: &str, bytes: &[u8]) -> Result<States, CheckpointError> {
    serde_json::from_slice(bytes).map_err(|e| CheckpointError::Corrupt {
        location: location.to_string(),
        message: e.to_string(),
    })
}

fn encode_states(states: &States) -> Vec<u8> {
    serde_json::to_vec_pretty(states).unwrap_or_default()
}
