//! `etl-events --serve`: the ECS service. Workers take rows of the `imports` queue
//! (Pending → Running → Success | Fail), each under a lease they heartbeat; a row whose lease
//! expired (its worker died) is taken again. On SIGTERM no more rows are claimed, imports in
//! flight stop and their rows go back to Pending, and the process exits 143.
//!
//! The SQL decisions are here; whether a failure is final is [`next_status`], a pure function.

use std::sync::Arc;
use std::time::Duration;

use etl_core::postgres::{self, PgError};
use etl_core::store::Location;
use etl_core::{ExitKind, JobError, Outcome, imports};
use serde_json::{Value, json};
use sqlx::{PgPool, Row};
use tokio_util::sync::CancellationToken;

use crate::config::EventsConfig;
use crate::import::{Imported, Importer, check_source, target_for};
use crate::publish::Source;

/// Claims the oldest row that is Pending, or Running under an expired lease.
const CLAIM_SQL: &str = "UPDATE imports SET status = 'Running', attempts = attempts + 1, \
     lease_owner = $1, lease_expires = now() + make_interval(secs => $2), updated_at = now() \
     WHERE id = (SELECT id FROM imports \
                 WHERE status = 'Pending' OR (status = 'Running' AND lease_expires < now()) \
                 ORDER BY id LIMIT 1 FOR UPDATE SKIP LOCKED) \
     RETURNING id, source, source_etag, sequencer, attempts";

const HEARTBEAT_SQL: &str = "UPDATE imports SET lease_expires = now() + make_interval(secs => $3), \
     updated_at = now() WHERE id = $1 AND lease_owner = $2 AND status = 'Running'";

const FINISH_SQL: &str = "UPDATE imports SET status = $3, error = $4, result = $5, \
     attempts = attempts - $6, lease_owner = NULL, lease_expires = NULL, updated_at = now() \
     WHERE id = $1 AND lease_owner = $2 AND status = 'Running'";

/// What becomes of a row after an attempt.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NextStatus {
    Success,
    /// Back to the queue; `refund` gives the attempt back (stopped by SIGTERM, not a failure).
    Pending {
        refund: bool,
    },
    Fail,
}

/// Pure: SIGTERM returns the row without counting the attempt; a retryable failure returns
/// it while attempts remain; bad data and configuration errors fail it at once.
pub fn next_status(result: Result<(), ExitKind>, attempts: i32, max_attempts: u32) -> NextStatus {
    match result {
        Ok(()) => NextStatus::Success,
        Err(ExitKind::Stopped) => NextStatus::Pending { refund: true },
        Err(kind) if kind.retryable() && i64::from(attempts) < i64::from(max_attempts) => {
            NextStatus::Pending { refund: false }
        }
        Err(_) => NextStatus::Fail,
    }
}

fn sql_err(context: &'static str) -> impl Fn(sqlx::Error) -> JobError {
    move |e| postgres::classify(&PgError::sql(context, e))
}

async fn connect(config: &EventsConfig, workers: usize) -> Result<PgPool, JobError> {
    let url = postgres::resolve_url(config.database.as_deref(), |k| std::env::var(k).ok())?;
    let pool = postgres::connect(&url, u32::try_from(workers * 2 + 1).unwrap_or(8)).await?;
    imports::migrate(&pool)
        .await
        .map_err(|e| JobError::config(format!("migrating the imports table: {e}")))?;
    Ok(pool)
}

fn workers(config: &EventsConfig) -> Result<usize, JobError> {
    let n = config.concurrency.unwrap_or_else(|| {
        std::thread::available_parallelism().map_or(1, std::num::NonZeroUsize::get)
    });
    if n == 0 || n > 256 {
        return Err(JobError::usage("--concurrency must be 1..=256"));
    }
    Ok(n)
}

pub async fn dry_run(config: &EventsConfig) -> Result<Value, JobError> {
    let pool = connect(config, 1).await?;
    let rows = sqlx::query("SELECT status, count(*) AS n FROM imports GROUP BY status")
        .fetch_all(&pool)
        .await
        .map_err(sql_err("counting imports"))?;
    let mut counts = serde_json::Map::new();
    for r in rows {
        let status: String = r.get("status");
        let n: i64 = r.get("n");
        counts.insert(status, json!(n));
    }
    Ok(json!({"mode": "serve", "concurrency": workers(config)?, "queue": counts}))
}

pub async fn run(config: &EventsConfig, importer: Importer) -> Result<Outcome, JobError> {
    let output = config.output.clone().ok_or_else(|| {
        JobError::usage("--serve needs --output DIR|s3://bucket/prefix/ (or ETL_OUTPUT)")
    })?;
    let n = workers(config)?;
    let allowed = Arc::new(config.allowed_sources()?);
    if allowed.is_empty() {
        return Err(JobError::config(
            "--serve needs --allow-source s3://bucket/prefix/ (ETL_ALLOW_SOURCE): the buckets queued imports may read",
        ));
    }
    let pool = connect(config, n).await?;
    let shutdown = importer.ctx.shutdown.clone();
    let importer = Arc::new(importer);
    tracing::info!(workers = n, output = %output, "serving the imports queue");
    let mut tasks = tokio::task::JoinSet::new();
    for i in 0..n {
        let w = Worker {
            pool: pool.clone(),
            importer: importer.clone(),
            owner: format!("{}/{i}", importer.ctx.settings.owner),
            output: output.clone(),
            poll: config.poll_interval()?,
            max_attempts: config.max_attempts,
            ttl: importer.ctx.settings.lease_ttl,
            allowed: allowed.clone(),
        };
        tasks.spawn(async move { w.run().await });
    }
    let mut first_error = None;
    while let Some(r) = tasks.join_next().await {
        let r = r.unwrap_or_else(|e| Err(JobError::temporary(format!("worker task failed: {e}"))));
        if let Err(e) = r
            && first_error.is_none()
        {
            // A worker that cannot reach the database ends the service: ECS restarts it.
            shutdown.cancel();
            first_error = Some(e);
        }
    }
    match first_error {
        Some(e) => Err(e),
        None => Err(JobError::new(
            ExitKind::Stopped,
            "stopped by SIGTERM; imports in flight went back to Pending",
        )),
    }
}

struct Worker {
    pool: PgPool,
    importer: Arc<Importer>,
    owner: String,
    output: String,
    poll: Duration,
    max_attempts: u32,
    ttl: Duration,
    allowed: Arc<Vec<(String, String)>>,
}

struct Claimed {
    id: i64,
    source: String,
    etag: Option<String>,
    sequencer: Option<String>,
    attempts: i32,
}

impl Worker {
    async fn run(self) -> Result<(), JobError> {
        let shutdown = self.importer.ctx.shutdown.clone();
        loop {
            if shutdown.is_cancelled() {
                return Ok(());
            }
            match self.claim().await? {
                Some(row) => self.process(row).await?,
                None => {
                    tokio::select! {
                        _ = tokio::time::sleep(self.poll) => {}
                        _ = shutdown.cancelled() => return Ok(()),
                    }
                }
            }
        }
    }

    async fn claim(&self) -> Result<Option<Claimed>, JobError> {
        let row = sqlx::query(CLAIM_SQL)
            .bind(&self.owner)
            .bind(self.ttl.as_secs_f64())
            .fetch_optional(&self.pool)
            .await
            .map_err(sql_err("claiming an import"))?;
        Ok(row.map(|r| Claimed {
            id: r.get("id"),
            source: r.get("source"),
            etag: r.get("source_etag"),
            sequencer: r.get("sequencer"),
            attempts: r.get("attempts"),
        }))
    }

    async fn process(&self, row: Claimed) -> Result<(), JobError> {
        // This import stops on SIGTERM and when its lease is lost.
        let cancel = self.importer.ctx.shutdown.child_token();
        // Past its deadline (plus a lease of slack for the timeout to take effect) a row's lease
        // is no longer renewed, so a hung import is reclaimed by another worker.
        let deadline = tokio::time::Instant::now() + self.importer.timeout + self.ttl;
        let heartbeat = self.heartbeat(row.id, cancel.clone(), deadline);
        let mut ctx = self.importer.ctx.clone();
        ctx.shutdown = cancel.clone();
        let importer = Importer {
            ctx,
            convert: self.importer.convert.clone(),
            max_bytes: self.importer.max_bytes,
            owner: self.owner.clone(),
            gc_grace: self.importer.gc_grace,
            timeout: self.importer.timeout,
        };
        tracing::info!(id = row.id, source = %row.source, attempt = row.attempts, worker = %self.owner, "import claimed");
        let result = self.import(&importer, &row).await;
        heartbeat.abort();
        let (status, error, manifest) = match &result {
            Ok((imported, manifest_url)) => {
                let result = match imported {
                    Imported::Done(m) => {
                        crate::job::count(&importer.ctx.stats, m);
                        let mut m = m.clone();
                        // Retention deletes what `outputs` lists: the manifest is an output too.
                        if let Some(outputs) = m.get_mut("outputs").and_then(Value::as_array_mut) {
                            outputs.push(json!({"url": manifest_url, "kind": "manifest"}));
                        }
                        m
                    }
                    // Retention reads `manifest` and `version` to know whether the manifest is
                    // still the one this row saw.
                    Imported::Unchanged(version) => {
                        json!({"status": "unchanged", "manifest": manifest_url, "version": version})
                    }
                    other => json!({"status": other.status(), "manifest": manifest_url}),
                };
                (
                    next_status(Ok(()), row.attempts, self.max_attempts),
                    None,
                    Some(result),
                )
            }
            Err(e) => (
                next_status(Err(e.kind), row.attempts, self.max_attempts),
                Some(e.message.clone()),
                None,
            ),
        };
        let (status_text, refund) = match status {
            NextStatus::Success => ("Success", 0),
            NextStatus::Pending { refund } => ("Pending", i32::from(refund)),
            NextStatus::Fail => ("Fail", 0),
        };
        let done = sqlx::query(FINISH_SQL)
            .bind(row.id)
            .bind(&self.owner)
            .bind(status_text)
            .bind(error.as_deref())
            .bind(manifest)
            .bind(refund)
            .execute(&self.pool)
            .await
            .map_err(sql_err("recording an import's result"))?;
        if done.rows_affected() == 0 {
            tracing::warn!(
                id = row.id,
                "the lease on this import was lost; its result was not recorded"
            );
        }
        match &result {
            Ok((i, _)) => tracing::info!(
                id = row.id,
                status = status_text,
                outcome = i.status(),
                "import finished"
            ),
            Err(e) => {
                tracing::warn!(id = row.id, status = status_text, error = %e.message, "import failed")
            }
        }
        Ok(())
    }

    async fn import(
        &self,
        importer: &Importer,
        row: &Claimed,
    ) -> Result<(Imported, String), JobError> {
        let loc = Location::parse(&row.source).map_err(|e| {
            JobError::bad_input(format!(
                "imports row {}: source {:?}: {e}",
                row.id, row.source
            ))
        })?;
        check_source(&self.allowed, &loc)
            .map_err(|e| e.context(format!("imports row {}", row.id)))?;
        let target = target_for(&self.output, &loc, None)?;
        let source = Source {
            url: row.source.clone(),
            etag: row.etag.clone().filter(|e| !e.is_empty()),
            version_id: None,
            sequencer: row.sequencer.clone().filter(|s| !s.is_empty()),
            bytes: None,
            // Set by the importer from its profile.
            tiles: None,
        };
        let imported = importer.import(source, &target).await?;
        Ok((imported, target.manifest().to_string()))
    }

    /// Renews the row's lease until aborted; cancels the import if the lease is gone.
    fn heartbeat(
        &self,
        id: i64,
        cancel: CancellationToken,
        deadline: tokio::time::Instant,
    ) -> tokio::task::AbortHandle {
        let pool = self.pool.clone();
        let owner = self.owner.clone();
        let ttl = self.ttl;
        // Three chances to renew before the lease expires.
        let every = (ttl / 3).max(Duration::from_millis(100));
        tokio::spawn(async move {
            loop {
                tokio::time::sleep(every).await;
                if tokio::time::Instant::now() >= deadline {
                    tracing::warn!(
                        id,
                        "import past its deadline: its lease is no longer renewed"
                    );
                    cancel.cancel();
                    return;
                }
                let r = sqlx::query(HEARTBEAT_SQL)
                    .bind(id)
                    .bind(&owner)
                    .bind(ttl.as_secs_f64())
                    .execute(&pool)
                    .await;
                match r {
                    Ok(done) if done.rows_affected() == 1 => {}
                    Ok(_) => {
                        tracing::warn!(
                            id,
                            "import lease lost (taken over after expiry); stopping it"
                        );
                        cancel.cancel();
                        return;
                    }
                    Err(e) => tracing::warn!(id, error = %e, "import lease heartbeat failed"),
                }
            }
        })
        .abort_handle()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statuses_after_an_attempt() {
        assert_eq!(next_status(Ok(()), 1, 3), NextStatus::Success);
        assert_eq!(
            next_status(Err(ExitKind::Stopped), 3, 3),
            NextStatus::Pending { refund: true }
        );
        assert_eq!(
            next_status(Err(ExitKind::Temporary), 1, 3),
            NextStatus::Pending { refund: false }
        );
        assert_eq!(
            next_status(Err(ExitKind::Unavailable), 3, 3),
            NextStatus::Fail
        );
        assert_eq!(next_status(Err(ExitKind::BadInput), 1, 3), NextStatus::Fail);
        assert_eq!(next_status(Err(ExitKind::Config), 1, 3), NextStatus::Fail);
    }
}
