//! Rejected features: why each was refused, written as NDJSON (`input`, `line`, `ordinal`, `reason`).

use std::io::Write;

use etl_core::JobError;
use etl_core::store::{Location, Store};
use etl_geo::Record;

#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Reject {
    pub input: String,
    pub line: u64,
    pub ordinal: u64,
    pub reason: String,
}

impl Reject {
    pub fn new(input: &str, rec: &Record, reason: String) -> Reject {
        Reject {
            input: input.to_string(),
            line: rec.line,
            ordinal: rec.ordinal,
            reason,
        }
    }
}

/// Writes the rejects file atomically (it appears whole or not at all).
pub async fn write(store: &Store, url: &str, rejects: &[Reject]) -> Result<(), JobError> {
    let loc = Location::parse(url).map_err(JobError::from)?;
    let mut w = store.writer(&loc).await.map_err(JobError::from)?;
    let rejects = rejects.to_vec();
    tokio::task::spawn_blocking(move || -> Result<(), JobError> {
        for r in &rejects {
            let line = serde_json::to_string(r).unwrap_or_default();
            w.write_all(line.as_bytes())
                .and_then(|_| w.write_all(b"\n"))
                .map_err(|e| JobError::temporary(format!("{loc}: {e}")))?;
        }
        w.commit().map_err(JobError::from)?;
        Ok(())
    })
    .await
    .map_err(|e| JobError::temporary(format!("writing rejects: {e}")))?
}
