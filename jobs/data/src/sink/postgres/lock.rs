//! Bounded waits for locks on the live table. A swap or a schema change queues behind every
//! reader of the table, and while it waits every new reader queues behind it: so it waits at
//! most `--lock-timeout`, lets the readers through, and tries again, `--lock-retries` times.

use std::future::Future;
use std::time::Duration;

use etl_core::JobError;
use etl_core::postgres::TableName;
use sqlx::{AssertSqlSafe, PgConnection, PgPool};

/// SQLSTATE lock_not_available: `lock_timeout` expired.
const LOCK_NOT_AVAILABLE: &str = "55P03";

#[derive(Debug, Clone, Copy)]
pub struct LockPolicy {
    pub timeout: Duration,
    pub tries: u32,
}

/// How one attempt at a locked step ended, when it did not succeed.
#[derive(Debug, thiserror::Error)]
pub enum Attempt {
    /// The lock on the table was not granted within the timeout; the attempt rolled back.
    #[error("table {table} could not be locked within the lock timeout")]
    Locked { table: String },
    /// Any other failure: not retried here.
    #[error(transparent)]
    Failed(#[from] JobError),
}

/// Lock modes the loader takes on a live table, weakest first.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum LockMode {
    /// What INSERT takes anyway: only schema changes and explicit locks conflict.
    RowExclusive,
    /// Creating an index: blocks writers, not readers.
    ShareRowExclusive,
    /// Copying the table for a swap: blocks writers (and row locks), not plain readers.
    Exclusive,
    /// Adding a column, dropping or renaming the table: blocks readers too.
    AccessExclusive,
}

impl LockMode {
    fn sql(self) -> &'static str {
        match self {
            LockMode::RowExclusive => "ROW EXCLUSIVE",
            LockMode::ShareRowExclusive => "SHARE ROW EXCLUSIVE",
            LockMode::Exclusive => "EXCLUSIVE",
            LockMode::AccessExclusive => "ACCESS EXCLUSIVE",
        }
    }
}

/// Takes `mode` on `table` in the caller's transaction, waiting at most the policy's timeout.
/// Later statements of the transaction find the lock held and do not wait for it again.
pub async fn lock_table(
    conn: &mut PgConnection,
    table: &TableName,
    mode: LockMode,
    policy: &LockPolicy,
) -> Result<(), Attempt> {
    let err = |e| JobError::from(etl_core::postgres::PgError::sql("locking the table", e));
    let ms = policy.timeout.as_millis().clamp(1, i32::MAX as u128);
    sqlx::query(AssertSqlSafe(format!("SET LOCAL lock_timeout = '{ms}ms'")))
        .execute(&mut *conn)
        .await
        .map_err(err)?;
    let lock = format!("LOCK TABLE {} IN {} MODE", table.quoted(), mode.sql());
    match sqlx::query(AssertSqlSafe(lock)).execute(&mut *conn).await {
        Ok(_) => {}
        Err(sqlx::Error::Database(db)) if db.code().as_deref() == Some(LOCK_NOT_AVAILABLE) => {
            return Err(Attempt::Locked {
                table: table.to_string(),
            });
        }
        Err(e) => return Err(err(e).into()),
    }
    // Other waits of the transaction (a row another writer holds) are not the swap's queue.
    sqlx::query("SET LOCAL lock_timeout TO DEFAULT")
        .execute(&mut *conn)
        .await
        .map_err(err)?;
    Ok(())
}

/// pid, application, state, lock mode, seconds in transaction, last statement.
type Holder = (i32, String, String, String, i64, String);

/// Who holds a lock on `table` now, for the log and the error: pid, application, state, mode,
/// age of the transaction and its last statement.
pub async fn describe_blockers(pool: &PgPool, table: &TableName) -> String {
    let rows: Result<Vec<Holder>, sqlx::Error> = sqlx::query_as(
        "SELECT l.pid, coalesce(a.application_name, ''), coalesce(a.state, ''), l.mode, \
             coalesce(extract(epoch FROM now() - a.xact_start)::bigint, 0), \
             left(regexp_replace(coalesce(a.query, ''), '\\s+', ' ', 'g'), 100) \
             FROM pg_locks l LEFT JOIN pg_stat_activity a ON a.pid = l.pid \
             WHERE l.locktype = 'relation' AND l.granted AND l.relation = to_regclass($1) \
             AND l.pid <> pg_backend_pid() ORDER BY a.xact_start NULLS LAST LIMIT 5",
    )
    .bind(table.quoted())
    .fetch_all(pool)
    .await;
    match rows {
        Ok(rows) if rows.is_empty() => {
            "no session holds a lock on it now (released meanwhile, or other waiters queued first)"
                .to_string()
        }
        Ok(rows) => rows
            .iter()
            .map(|(pid, app, state, mode, age, query)| {
                let app = if app.is_empty() { "?" } else { app.as_str() };
                format!(
                    "pid {pid} ({app}) holds {mode}, {state} for {age} s, last statement: {query}"
                )
            })
            .collect::<Vec<_>>()
            .join("; "),
        Err(e) => format!("(could not list the sessions holding it: {e})"),
    }
}

/// Pause before try `n + 1`: 250 ms, doubling, at most 4 s.
fn backoff(n: u32) -> Duration {
    Duration::from_millis(250u64.saturating_mul(1 << n.saturating_sub(1).min(4)))
}

/// Counts the lock timeouts of one step: after each it logs who holds the table and waits
/// (backoff) before the next try, or, after the last, fails with exit 75 naming the table and
/// who holds it.
pub struct Retry {
    policy: LockPolicy,
    n: u32,
}

impl Retry {
    pub fn new(policy: LockPolicy) -> Retry {
        Retry { policy, n: 0 }
    }

    /// The step's attempt timed out on the lock (and rolled back): wait for the next try, or
    /// give up.
    pub async fn failed(
        &mut self,
        pool: &PgPool,
        table: &TableName,
        what: &str,
    ) -> Result<(), JobError> {
        self.n += 1;
        let tries = self.policy.tries.max(1);
        let who = describe_blockers(pool, table).await;
        if self.n >= tries {
            return Err(JobError::temporary(format!(
                "{what}: table {table} stayed locked by other sessions through {tries} tries of {} each: {who}; this attempt changed nothing, retry later",
                humantime::format_duration(self.policy.timeout)
            )));
        }
        let pause = backoff(self.n);
        tracing::warn!(
            table = %table,
            attempt = self.n,
            tries,
            retry_in_ms = pause.as_millis() as u64,
            blockers = %who,
            "table is locked by another session; retrying"
        );
        tokio::time::sleep(pause).await;
        Ok(())
    }
}

/// Runs `attempt` until it succeeds or fails for another reason than the lock, retrying lock
/// timeouts as [`Retry`] says. Each attempt must roll back its transaction before reporting
/// `Locked`.
pub async fn with_retries<T, F, Fut>(
    policy: &LockPolicy,
    table: &TableName,
    pool: &PgPool,
    what: &str,
    mut attempt: F,
) -> Result<T, JobError>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, Attempt>>,
{
    let mut retry = Retry::new(*policy);
    loop {
        match attempt().await {
            Ok(v) => return Ok(v),
            Err(Attempt::Failed(e)) => return Err(e),
            Err(Attempt::Locked { .. }) => retry.failed(pool, table, what).await?,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_and_is_capped() {
        assert_eq!(backoff(1), Duration::from_millis(250));
        assert_eq!(backoff(2), Duration::from_millis(500));
        assert_eq!(backoff(3), Duration::from_secs(1));
        assert_eq!(backoff(5), Duration::from_secs(4));
        assert_eq!(backoff(40), Duration::from_secs(4));
    }

    #[test]
    fn lock_modes_are_ordered_by_strength() {
        assert!(LockMode::RowExclusive < LockMode::ShareRowExclusive);
        assert!(LockMode::ShareRowExclusive < LockMode::AccessExclusive);
        assert_eq!(LockMode::AccessExclusive.sql(), "ACCESS EXCLUSIVE");
    }
}
