//! Which worker has an import. CloudTAK's own lock is `PATCH {"status":"Running"}` (a 400 for
//! the second worker), and its rows have nothing more: nothing says a Running row's worker is
//! alive, and the API will not set a row back to Pending. So each import a worker runs is also
//! held under a lease in the asset bucket (`<prefix>import-<id>.lease`, taken with a
//! conditional write and heartbeated), beside a small state document counting attempts.
//!
//! A Running row is taken over when nobody holds its lease and either its worker gave it back
//! (SIGTERM: `returned`) or the row has not been touched (`updated`) for `reclaim_after` — its
//! worker died. Live workers of ours touch their rows every minute.

use std::time::Duration;

use etl_core::checkpoint::{Checkpoints, Lease};
use etl_core::{JobError, store::Store};
use serde_json::{Value, json};

use super::api::{ImportRow, segment};

/// The leases and states of one deployment's imports.
pub struct Claims {
    cp: Checkpoints,
    owner: String,
    ttl: Duration,
    reclaim_after: Duration,
}

/// An import this worker holds.
pub struct Held {
    pub lease: Lease,
    /// Which attempt this is (1 for the first), counting attempts cut short by a dead worker
    /// but not those given back on SIGTERM.
    pub attempt: u64,
    scope: String,
}

/// A row's `updated`: RFC 3339 (`2026-12-08T03:07:22.123Z`), or PostgreSQL's text form of a
/// `timestamptz`, which CloudTAK's API passes through (`2026-12-08 03:07:22.123+00`).
pub fn parse_time(s: &str) -> Option<chrono::DateTime<chrono::FixedOffset>> {
    let s = s.trim();
    chrono::DateTime::parse_from_rfc3339(s)
        .or_else(|_| chrono::DateTime::parse_from_str(s, "%Y-%m-%d %H:%M:%S%.f%#z"))
        .ok()
}

/// The state document of one import.
fn state(attempts: u64, returned: bool) -> Value {
    json!({"attempts": attempts, "returned": returned})
}

impl Claims {
    /// Leases under `prefix` (`s3://bucket/.etl-events/cloudtak/`).
    pub async fn open(
        store: &Store,
        prefix: &str,
        owner: String,
        ttl: Duration,
        reclaim_after: Duration,
    ) -> Result<Claims, JobError> {
        let cp = Checkpoints::open(prefix, store, None)
            .await
            .map_err(JobError::from)?;
        Ok(Claims {
            cp,
            owner,
            ttl,
            reclaim_after,
        })
    }

    pub fn describe(&self) -> String {
        self.cp.describe()
    }

    fn scope(id: &str) -> String {
        format!("import-{}", segment(id))
    }

    /// Takes the lease of import `id`: `None` when another worker holds it. Each call holds
    /// it as a new owner, so two slots of one process exclude each other too.
    pub async fn lease(&self, id: &str) -> Result<Option<Lease>, JobError> {
        static HOLDERS: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
        let n = HOLDERS.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let owner = format!("{}/{n}", self.owner);
        Ok(self
            .cp
            .acquire(&Self::scope(id), &owner, self.ttl)
            .await
            .map_err(JobError::from)?
            .ok())
    }

    /// Starts an attempt under `lease`. A row taken from Pending starts counting afresh (a
    /// first run, or the user's retry); one taken over counts the attempts before it.
    pub async fn begin(&self, id: &str, lease: Lease, fresh: bool) -> Result<Held, JobError> {
        let scope = Self::scope(id);
        let attempts = if fresh { 0 } else { self.read(&scope).await?.0 };
        let attempt = attempts + 1;
        self.cp
            .save(&scope, "state", &state(attempt, false))
            .await
            .map_err(JobError::from)?;
        Ok(Held {
            lease,
            attempt,
            scope,
        })
    }

    /// Attempts so far and whether the last was given back.
    async fn read(&self, scope: &str) -> Result<(u64, bool), JobError> {
        let states = self.cp.load(scope).await.map_err(JobError::from)?;
        let s = states.get("state");
        Ok((
            s.and_then(|s| s.get("attempts"))
                .and_then(Value::as_u64)
                .unwrap_or(0),
            s.and_then(|s| s.get("returned"))
                .and_then(Value::as_bool)
                .unwrap_or(false),
        ))
    }

    /// Whether a Running row may be taken over now: its worker gave it back, or it has not
    /// been touched for `reclaim_after`. Whether its lease is free is for [`Claims::take`].
    pub async fn abandoned(&self, row: &ImportRow) -> Result<bool, JobError> {
        let stale = match row.updated.as_deref().map(parse_time) {
            Some(Some(u)) => {
                let age = chrono::Utc::now().signed_duration_since(u);
                age.to_std().is_ok_and(|age| age >= self.reclaim_after)
            }
            Some(None) => {
                tracing::warn!(id = %row.id, updated = ?row.updated, "the import's `updated` is not a time this worker reads; it is not taken over unless given back");
                false
            }
            None => false,
        };
        if stale {
            return Ok(true);
        }
        Ok(self.read(&Self::scope(&row.id)).await?.1)
    }

    /// Gives a held import back (SIGTERM): the attempt is not counted, and the next worker
    /// that looks takes it at once.
    pub async fn give_back(&self, held: Held) -> Result<(), JobError> {
        let saved = self
            .cp
            .save(
                &held.scope,
                "state",
                &state(held.attempt.saturating_sub(1), true),
            )
            .await
            .map_err(JobError::from);
        held.lease.release().await;
        saved
    }

    /// The import is finished (its row says Success or Fail): its state goes, then the lease.
    pub async fn finish(&self, held: Held) -> Result<(), JobError> {
        let cleared = self.cp.clear(&held.scope).await.map_err(JobError::from);
        held.lease.release().await;
        cleared
    }

    /// Lets go of the lease and keeps the state (an attempt that failed before its row could be
    /// finished: the next worker counts it).
    pub async fn drop_lease(&self, held: Held) {
        held.lease.release().await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn updated_times_in_both_forms() {
        let a = parse_time("2026-12-08T03:07:22.123Z").unwrap();
        let b = parse_time("2026-12-08 03:07:22.123+00").unwrap();
        let c = parse_time("2026-12-08 05:07:22.123+02:00").unwrap();
        let d = parse_time("2026-12-08 03:07:22+00").unwrap();
        assert_eq!(a, b);
        assert_eq!(a, c);
        assert_eq!(d.timestamp(), a.timestamp());
        assert_eq!(parse_time("yesterday"), None);
    }
}
