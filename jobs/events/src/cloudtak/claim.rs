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

    /// Takes the lease of a row this worker just locked (or may take over); `None` when
    /// another worker holds it. Counts the attempt.
    pub async fn take(&self, id: &str) -> Result<Option<Held>, JobError> {
        let scope = Self::scope(id);
        let lease = match self
            .cp
            .acquire(&scope, &self.owner, self.ttl)
            .await
            .map_err(JobError::from)?
        {
            Ok(lease) => lease,
            Err(_) => return Ok(None),
        };
        let (attempts, _) = self.read(&scope).await?;
        let attempt = attempts + 1;
        self.cp
            .save(&scope, "state", &state(attempt, false))
            .await
            .map_err(JobError::from)?;
        Ok(Some(Held {
            lease,
            attempt,
            scope,
        }))
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
        let stale = row
            .updated
            .as_deref()
            .and_then(|u| chrono::DateTime::parse_from_rfc3339(u).ok())
            .is_some_and(|u| {
                let age = chrono::Utc::now().signed_duration_since(u);
                age.to_std().is_ok_and(|age| age >= self.reclaim_after)
            });
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
