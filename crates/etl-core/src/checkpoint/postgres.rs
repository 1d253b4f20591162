//! Checkpoints in Postgres: `etl_checkpoint (scope, name, state)` and `etl_run` (lease owner and
//! expiry, for operators). The lease itself is a session advisory lock on a dedicated
//! connection: Postgres frees it the moment that connection dies, so a `kill -9` of a worker
//! never blocks the rerun until some expiry, and two live workers can never both hold it.

use std::time::Duration;

use serde_json::Value;
use sha2::{Digest, Sha256};
use sqlx::{Connection, PgConnection, PgPool, Row};
use tokio_util::sync::CancellationToken;

use super::lease::heartbeat_interval;
use super::{CheckpointError, Lease, LeaseInfo, States};
use crate::postgres::PgError;

/// Serialises concurrent first-time creation of the tables.
const MIGRATION_LOCK: i64 = 0x7461_6b65_746c_0001;

const SCHEMA: &str = r#"
CREATE TABLE IF NOT EXISTS etl_run (
    run_key     text PRIMARY KEY,
    owner       text NOT NULL,
    lease_until timestamptz NOT NULL,
    updated_at  timestamptz NOT NULL DEFAULT now()
);
CREATE TABLE IF NOT EXISTS etl_checkpoint (
    scope      text NOT NULL,
    name       text NOT NULL,
    state      jsonb NOT NULL,
    updated_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (scope, name)
);
"#;

#[derive(Clone)]
pub struct PostgresCheckpoints {
    pool: PgPool,
}

fn lock_key(scope: &str) -> i64 {
    let d = Sha256::digest(format!("tak-etl:{scope}").as_bytes());
    let mut b = [0u8; 8];
    b.copy_from_slice(&d[..8]);
    i64::from_be_bytes(b)
}

impl PostgresCheckpoints {
    /// Creates the tables if missing.
    pub async fn open(pool: PgPool) -> Result<Self, CheckpointError> {
        let mut tx = pool
            .begin()
            .await
            .map_err(|e| PgError::sql("checkpoint tables", e))?;
        sqlx::query("SELECT pg_advisory_xact_lock($1)")
            .bind(MIGRATION_LOCK)
            .execute(&mut *tx)
            .await
            .map_err(|e| PgError::sql("checkpoint tables", e))?;
        sqlx::raw_sql(SCHEMA)
            .execute(&mut *tx)
            .await
            .map_err(|e| PgError::sql("creating etl_run / etl_checkpoint", e))?;
        tx.commit()
            .await
            .map_err(|e| PgError::sql("checkpoint tables", e))?;
        Ok(PostgresCheckpoints { pool })
    }

    pub fn pool(&self) -> &PgPool {
        &self.pool
    }

    pub async fn load(&self, scope: &str) -> Result<States, CheckpointError> {
        let rows = sqlx::query("SELECT name, state FROM etl_checkpoint WHERE scope = $1")
            .bind(scope)
            .fetch_all(&self.pool)
            .await
            .map_err(|e| PgError::sql("loading checkpoint", e))?;
        let mut out = States::new();
        for row in rows {
            let name: String = row
                .try_get("name")
                .map_err(|e| PgError::sql("loading checkpoint", e))?;
            let state: Value = row
                .try_get("state")
                .map_err(|e| PgError::sql("loading checkpoint", e))?;
            out.insert(name, state);
        }
        Ok(out)
    }

    pub async fn save(
        &self,
        scope: &str,
        name: &str,
        state: &Value,
    ) -> Result<(), CheckpointError> {
        let mut conn = self
            .pool
            .acquire()
            .await
            .map_err(|e| PgError::sql("saving checkpoint", e))?;
        Self::save_in(&mut conn, scope, name, state).await
    }

    /// Saves a state inside the caller's transaction, so data and checkpoint commit together.
    pub async fn save_in(
        conn: &mut PgConnection,
        scope: &str,
        name: &str,
        state: &Value,
    ) -> Result<(), CheckpointError> {
        sqlx::query(
            "INSERT INTO etl_checkpoint (scope, name, state) VALUES ($1, $2, $3) \
             ON CONFLICT (scope, name) DO UPDATE SET state = EXCLUDED.state, updated_at = now()",
        )
        .bind(scope)
        .bind(name)
        .bind(state)
        .execute(conn)
        .await
        .map_err(|e| PgError::sql("saving checkpoint", e))?;
        Ok(())
    }

    /// Fencing save inside the caller's transaction: writes `state` only if the checkpoint still
    /// holds `expected` (jsonb equality), or, with `expected = None`, only if there is no
    /// checkpoint yet. Returns whether exactly one row was written; `false` means another worker
    /// advanced the checkpoint since this one read it, and the caller must roll back.
    ///
    /// A concurrent writer from the same expected state blocks on the row (or, for `None`, the
    /// primary key) until the first commits, then sees the new state and writes nothing.
    pub async fn compare_and_save_in(
        conn: &mut PgConnection,
        scope: &str,
        name: &str,
        expected: Option<&Value>,
        state: &Value,
    ) -> Result<bool, CheckpointError> {
        let err = |e| PgError::sql("saving checkpoint (compare-and-set)", e);
        let written = match expected {
            Some(expected) => sqlx::query(
                "UPDATE etl_checkpoint SET state = $3, updated_at = now() \
                 WHERE scope = $1 AND name = $2 AND state = $4",
            )
            .bind(scope)
            .bind(name)
            .bind(state)
            .bind(expected)
            .execute(conn)
            .await
            .map_err(err)?,
            None => sqlx::query(
                "INSERT INTO etl_checkpoint (scope, name, state) VALUES ($1, $2, $3) \
                 ON CONFLICT (scope, name) DO NOTHING",
            )
            .bind(scope)
            .bind(name)
            .bind(state)
            .execute(conn)
            .await
            .map_err(err)?,
        };
        Ok(written.rows_affected() == 1)
    }

    /// Whether a worker holds the lease of run `scope` right now, read from `pg_locks` without
    /// taking the lock (so asking can never keep that worker from its own lease). The lease
    /// dies with its connection, so a `kill -9`ed worker stops holding it at once.
    pub async fn lease_held(conn: &mut PgConnection, scope: &str) -> Result<bool, CheckpointError> {
        let key = lock_key(scope);
        // A bigint advisory key shows in pg_locks as classid = high half, objid = low half,
        // objsubid = 1.
        let held: bool = sqlx::query_scalar(
            "SELECT EXISTS (SELECT 1 FROM pg_locks WHERE locktype = 'advisory' AND granted \
             AND objsubid = 1 AND classid = (($1 >> 32) & 4294967295)::oid \
             AND objid = ($1 & 4294967295)::oid \
             AND database = (SELECT oid FROM pg_database WHERE datname = current_database()))",
        )
        .bind(key)
        .fetch_one(conn)
        .await
        .map_err(|e| PgError::sql("checking a run's lease", e))?;
        Ok(held)
    }

    pub async fn clear(&self, scope: &str) -> Result<(), CheckpointError> {
        sqlx::query("DELETE FROM etl_checkpoint WHERE scope = $1")
            .bind(scope)
            .execute(&self.pool)
            .await
            .map_err(|e| PgError::sql("clearing checkpoint", e))?;
        Ok(())
    }

    pub async fn acquire(
        &self,
        scope: &str,
        owner: &str,
        ttl: Duration,
    ) -> Result<Result<Lease, LeaseInfo>, CheckpointError> {
        let err = |e| PgError::sql("taking the run lease", e);
        // Detached: a pooled connection would go back to the pool still holding the lock.
        let mut conn = self.pool.acquire().await.map_err(err)?.detach();
        let key = lock_key(scope);
        let got: bool = sqlx::query_scalar("SELECT pg_try_advisory_lock($1)")
            .bind(key)
            .fetch_one(&mut conn)
            .await
            .map_err(err)?;
        if !got {
            let row = sqlx::query(
                "SELECT owner, (extract(epoch from lease_until) * 1000)::bigint AS until \
                 FROM etl_run WHERE run_key = $1",
            )
            .bind(scope)
            .fetch_optional(&mut conn)
            .await
            .map_err(err)?;
            let _ = conn.close().await;
            let (owner, until) = match row {
                Some(r) => (
                    r.try_get("owner").unwrap_or_default(),
                    r.try_get("until").ok(),
                ),
                None => (String::from("another worker"), None),
            };
            return Ok(Err(LeaseInfo { owner, until }));
        }
        renew(&mut conn, scope, owner, ttl).await.map_err(err)?;
        let lost = CancellationToken::new();
        let stop = CancellationToken::new();
        let (lost_t, stop_t) = (lost.clone(), stop.clone());
        let (scope, owner) = (scope.to_string(), owner.to_string());
        let task = tokio::spawn(async move {
            loop {
                tokio::select! {
                    _ = stop_t.cancelled() => break,
                    _ = tokio::time::sleep(heartbeat_interval(ttl)) => {}
                }
                // A renewal that hangs (a stalled connection) is as bad as one that fails: by
                // the time it returned, the lease might have been taken over.
                let renewed = tokio::time::timeout(
                    heartbeat_interval(ttl),
                    renew(&mut conn, &scope, &owner, ttl),
                )
                .await;
                match renewed {
                    Ok(Ok(())) => {}
                    Ok(Err(e)) => {
                        // The session (and with it the advisory lock) may be gone.
                        tracing::error!(run_key = %scope, error = %e, "lost the lease connection");
                        lost_t.cancel();
                        return;
                    }
                    Err(_) => {
                        tracing::error!(
                            run_key = %scope,
                            timeout_ms = heartbeat_interval(ttl).as_millis() as u64,
                            "lease renewal timed out; treating the lease as lost"
                        );
                        lost_t.cancel();
                        // The connection is mid-query: drop it (the server frees the lock when
                        // it notices the session is gone).
                        return;
                    }
                }
            }
            let _ = sqlx::query("UPDATE etl_run SET lease_until = now() WHERE run_key = $1")
                .bind(&scope)
                .execute(&mut conn)
                .await;
            let _ = sqlx::query("SELECT pg_advisory_unlock($1)")
                .bind(key)
                .execute(&mut conn)
                .await;
            let _ = conn.close().await;
        });
        Ok(Ok(Lease::with_task(lost, stop, task)))
    }
}

async fn renew(
    conn: &mut PgConnection,
    scope: &str,
    owner: &str,
    ttl: Duration,
) -> Result<(), sqlx::Error> {
    sqlx::query(
        "INSERT INTO etl_run (run_key, owner, lease_until) \
         VALUES ($1, $2, now() + make_interval(secs => $3)) \
         ON CONFLICT (run_key) DO UPDATE SET owner = EXCLUDED.owner, \
         lease_until = EXCLUDED.lease_until, updated_at = now()",
    )
    .bind(scope)
    .bind(owner)
    .bind(ttl.as_secs_f64())
    .execute(conn)
    .await?;
    Ok(())
}
