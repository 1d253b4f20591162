//! Loading one input into PostGIS in checkpointed transactions: each commits a batch of rows,
//! its rejects and the checkpoint that says how far the input is in (and, for appends straight
//! into the table, the table's ledger entry), so whatever instant a run dies at, the rows and
//! the progress agree.

use std::sync::Arc;
use std::sync::atomic::AtomicU64;

use etl_core::checkpoint::PostgresCheckpoints;
use etl_core::metrics::Stats;
use etl_core::postgres::{self as pg, TableName};
use etl_core::store::ObjectMeta;
use etl_core::{JobContext, JobError};
use etl_sinks::ColumnKind;
use serde_json::Value;
use sqlx::PgConnection;

use super::Plan;
use crate::read::{self, READ_BATCH};
use crate::rejects::Reject;
use crate::sink::postgres::{
    self as sink, Attempt, Ledger, LockMode, OpenOptions, PgTarget, Strategy, Version,
};
use crate::state::{self, Claim, InputState, LoadedVersion};

/// Loading one input, in checkpointed transactions.
pub(super) struct LoadStep<'a> {
    /// The input's checkpoint as this run found it: every commit swaps it for the next one
    /// only if nobody else advanced it meanwhile (fencing a worker whose lease silently lapsed).
    pub committed: Option<Value>,
    pub plan: &'a Plan,
    pub key: &'a str,
    pub index: u64,
    pub meta: &'a ObjectMeta,
    pub ctx: &'a JobContext,
    pub pool: &'a sqlx::PgPool,
    pub lease: &'a etl_core::checkpoint::Lease,
    pub table: &'a TableName,
    pub strategy: Strategy,
    pub ledger: Ledger<'a>,
    pub limits: sink::Limits,
    /// Columns earlier attempts of this run added to the table (direct appends).
    pub added_before: Vec<String>,
}

/// What became of an input.
#[derive(Debug, PartialEq, Eq)]
pub(super) enum LoadOutcome {
    Loaded,
    /// The table holds this version of it already (another run loaded it).
    AlreadyThere,
}

/// How one streamed COPY ended.
enum CopyEnd {
    /// The transaction's share of features is in: commit and go on.
    Full,
    /// The input is exhausted.
    InputDone,
    /// SIGTERM: commit what was sent and stop.
    Stopped,
    /// The lease is gone: commit nothing.
    LeaseLost,
    /// This batch needs new or wider columns first.
    NeedsDdl(read::ReadBatch),
}

/// Progress of the transaction being filled.
struct TxProgress {
    since_checkpoint: u64,
    rejects: Vec<Reject>,
    last_bytes: u64,
}

/// Running totals of the run.
pub(super) struct Totals {
    /// Records read, `--where`'s left-out ones included.
    pub read: u64,
    pub rejected: u64,
    /// Of `read`, left out by `--where`.
    pub filtered: u64,
    /// Rows loaded.
    pub written: u64,
}

/// Counts a batch that holds only features `--where` left out: read and filtered, and the
/// checkpoint position moves past them (committed with the next rows or at the end).
fn count_filtered_only(
    batch: &read::ReadBatch,
    st: &mut InputState,
    totals: &mut Totals,
    ctx: &JobContext,
) {
    st.next = st.next.max(batch.next);
    st.read += batch.filtered;
    st.filtered += batch.filtered;
    totals.read += batch.filtered;
    totals.filtered += batch.filtered;
    Stats::add(&ctx.stats.read, batch.filtered);
    Stats::add(&ctx.stats.filtered, batch.filtered);
    ctx.progress.set_bytes(batch.bytes);
}

fn pg_err(what: &'static str) -> impl Fn(sqlx::Error) -> JobError {
    move |e| JobError::from(pg::PgError::sql(what, e))
}

impl LoadStep<'_> {
    fn url(&self) -> String {
        self.meta.location.to_string()
    }

    fn direct(&self) -> bool {
        self.strategy == Strategy::Direct
    }

    /// Saves the input's state in the caller's transaction, fenced by what this run last
    /// committed.
    async fn save(
        &self,
        conn: &mut PgConnection,
        committed: &mut Option<Value>,
        st: &InputState,
    ) -> Result<(), JobError> {
        let next = st.to_value();
        let fenced = PostgresCheckpoints::compare_and_save_in(
            conn,
            self.key,
            &self.url(),
            committed.as_ref(),
            &next,
        )
        .await
        .map_err(JobError::from)?;
        if !fenced {
            // Rolls back with the transaction: another worker owns this run now.
            return Err(JobError::temporary(format!(
                "run {}: {} was checkpointed by another worker; stopping without committing",
                self.key,
                self.url()
            )));
        }
        *committed = Some(next);
        Ok(())
    }

    /// Direct appends: claims the input in the table's ledger before reading it.
    async fn claim(
        &self,
        st: &mut InputState,
        committed: &mut Option<Value>,
    ) -> Result<Option<LoadOutcome>, JobError> {
        let url = self.url();
        let mut tx = self
            .pool
            .begin()
            .await
            .map_err(pg_err("claiming an input"))?;
        let version = Version {
            url: &url,
            etag: self.meta.etag.as_deref(),
            size: self.meta.size,
        };
        match self.ledger.claim(&mut tx, &version, st.next > 0).await? {
            Claim::Busy { run } => Err(JobError::temporary(format!(
                "{url} is being loaded into {} by run {run} (alive); retry when it is done",
                self.table
            ))),
            Claim::Skip { .. } => {
                tracing::info!(input = %url, table = %self.table, "this version is in the table already (loaded by another run); skipped");
                *st = InputState {
                    done: true,
                    ..InputState::default()
                };
                sink::clear_input_rejects(&mut tx, self.key, &url).await?;
                self.save(&mut tx, committed, st).await?;
                tx.commit().await.map_err(pg_err("claiming an input"))?;
                Ok(Some(LoadOutcome::AlreadyThere))
            }
            Claim::Load { restart, .. } => {
                if restart {
                    tracing::warn!(input = %url, table = %self.table, dropped_progress = st.next, "this run's rows of the input are no longer in the table; loading it again from the start");
                    *st = InputState::default();
                    sink::clear_input_rejects(&mut tx, self.key, &url).await?;
                    self.save(&mut tx, committed, st).await?;
                }
                tx.commit().await.map_err(pg_err("claiming an input"))?;
                Ok(None)
            }
        }
    }

    pub async fn load(
        &self,
        st: &mut InputState,
        target: &mut Option<PgTarget>,
        totals: &mut Totals,
    ) -> Result<LoadOutcome, JobError> {
        let cfg = &self.plan.config;
        let ctx = self.ctx;
        let url = self.url();
        let mut committed = self.committed.clone();
        if self.direct()
            && !st.done
            && let Some(outcome) = self.claim(st, &mut committed).await?
        {
            Stats::add(&ctx.stats.skipped_inputs, 1);
            return Ok(outcome);
        }
        // Counts of earlier attempts belong to this run too.
        Stats::add(&ctx.stats.read, st.read);
        Stats::add(&ctx.stats.written, st.written);
        Stats::add(&ctx.stats.rejected, st.rejected);
        Stats::add(&ctx.stats.filtered, st.filtered);
        Stats::add(&ctx.stats.repaired, st.repaired);
        totals.read += st.read;
        totals.rejected += st.rejected;
        totals.filtered += st.filtered;
        totals.written += st.written;
        if st.done {
            return Ok(LoadOutcome::Loaded);
        }
        if st.next > 0 {
            tracing::info!(input = %url, resume_at = st.next, "resuming from checkpoint");
        }
        ctx.progress.start(&url, self.meta.size);
        let mut reader = read::spawn(
            ctx.store.clone(),
            self.meta.clone(),
            self.plan.source.clone(),
            self.plan.shaping.clone(),
            st.next,
            Arc::new(AtomicU64::new(0)),
        );
        // The first batch with records decides the columns of a table this run creates; batches
        // of nothing but features --where left out are only counted.
        let mut pending = None;
        while let Some(batch) = reader.recv().await {
            let batch = batch?;
            if batch.records.is_empty() {
                count_filtered_only(&batch, st, totals, ctx);
                continue;
            }
            pending = Some(batch);
            break;
        }
        if pending.is_none() {
            // An empty input (or nothing after the checkpoint): done.
            st.done = true;
            let mut tx = self.pool.begin().await.map_err(pg_err("checkpoint"))?;
            if self.direct() {
                let held = self.ledger.hold(&mut tx, &url).await?;
                self.ledger.record(&mut tx, &url, held, true).await?;
            }
            self.save(&mut tx, &mut committed, st).await?;
            tx.commit().await.map_err(pg_err("checkpoint"))?;
            return Ok(LoadOutcome::Loaded);
        }
        if target.is_none() {
            let sample: &[etl_geo::Record] = match &pending {
                Some(b) => &b.records,
                None => &[],
            };
            *target = Some(
                PgTarget::open(
                    self.pool.clone(),
                    self.table.clone(),
                    OpenOptions {
                        mode: cfg.mode,
                        strategy: self.strategy,
                        key: cfg.key.clone(),
                        select: cfg.select.clone(),
                        run_key: self.key,
                        limits: self.limits,
                        srid: cfg.t_srs_code().map_err(JobError::usage)?,
                        added: self.added_before.clone(),
                    },
                    sample,
                )
                .await?,
            );
        }
        let Some(t) = target.as_mut() else {
            return Err(JobError::internal("the target was not opened"));
        };
        let mut progress = TxProgress {
            since_checkpoint: 0,
            rejects: Vec::new(),
            last_bytes: 0,
        };
        loop {
            let mut tx = self
                .pool
                .begin()
                .await
                .map_err(pg_err("starting a batch"))?;
            // One COPY spans a whole checkpoint's worth of reading; a server-wide
            // statement_timeout must not cut it (and make every retry fail the same way).
            sqlx::query("SET LOCAL statement_timeout = 0")
                .execute(&mut *tx)
                .await
                .map_err(pg_err("starting a batch"))?;
            let held = if self.direct() {
                // The ledger entry, then the table (the order every loader keeps), then a
                // check that the table under the name is still the entry's: a swap or replace
                // may have put another one there while this transaction waited for it.
                let held = self.ledger.hold(&mut tx, &url).await?;
                self.ledger.lock_held_table(&mut tx, &held).await?;
                Some(held)
            } else {
                None
            };
            progress.since_checkpoint = 0;
            let mut new_columns = Vec::new();
            let end = loop {
                if let Some(b) = &pending
                    && t.needs_ddl(&b.records)
                {
                    if self.direct() {
                        new_columns = t.map_table_columns(&mut tx, &b.records).await?;
                        if !new_columns.is_empty() {
                            break None;
                        }
                    } else {
                        t.add_stage_columns(&mut tx, &b.records).await?;
                    }
                    if t.needs_ddl(&b.records) {
                        // Never loop: a schema change that did not take effect is a bug to
                        // report, not a reason to try again forever.
                        return Err(JobError::internal(format!(
                            "{url}: columns for this batch's properties could not be prepared"
                        )));
                    }
                }
                let end = self
                    .stream_copy(
                        &mut tx,
                        t,
                        pending.take(),
                        &mut reader,
                        st,
                        &mut progress,
                        totals,
                        cfg.checkpoint_every,
                    )
                    .await?;
                match end {
                    CopyEnd::NeedsDdl(batch) => pending = Some(batch),
                    other => break Some(other),
                }
            };
            let Some(end) = end else {
                // The live table needs columns: what this transaction holds commits first, the
                // columns come with the one batch that needs them (so readers wait for the
                // table's lock the shortest time).
                if progress.since_checkpoint > 0 {
                    self.commit(tx, t, held, st, &mut committed, &mut progress, false)
                        .await?;
                } else if let Err(e) = tx.rollback().await {
                    return Err(pg_err("ending a batch")(e));
                }
                let batch = pending
                    .take()
                    .ok_or_else(|| JobError::internal("no batch to add columns for"))?;
                self.with_new_columns(
                    t,
                    batch,
                    &new_columns,
                    &mut reader,
                    st,
                    &mut committed,
                    &mut progress,
                    totals,
                )
                .await?;
                continue;
            };
            if matches!(end, CopyEnd::LeaseLost) {
                // Another worker may own the run now: commit nothing more.
                return Err(JobError::temporary(format!(
                    "run {}: lease lost; stopped without committing",
                    self.key
                )));
            }
            let done = matches!(end, CopyEnd::InputDone);
            self.commit(tx, t, held, st, &mut committed, &mut progress, done)
                .await?;
            tracing::debug!(input = %url, next = st.next, "checkpoint");
            // Test builds only: holds the run here until the test lets it go.
            etl_core::fault::point("data.batch_committed");
            etl_core::fault::pause("data.batch_committed").await;
            match end {
                CopyEnd::Full => continue,
                CopyEnd::Stopped => {
                    tracing::warn!(input = %url, next = st.next, "checkpoint committed; stopping");
                    return Err(JobError::stopped());
                }
                _ => return Ok(LoadOutcome::Loaded),
            }
        }
    }

    /// Commits a batch transaction: its rejects, the ledger entry (direct appends), the
    /// checkpoint.
    #[allow(clippy::too_many_arguments)]
    async fn commit(
        &self,
        mut tx: sqlx::Transaction<'_, sqlx::Postgres>,
        t: &PgTarget,
        held: Option<LoadedVersion>,
        st: &mut InputState,
        committed: &mut Option<Value>,
        progress: &mut TxProgress,
        done: bool,
    ) -> Result<(), JobError> {
        t.save_rejects(&mut tx, &progress.rejects).await?;
        progress.rejects.clear();
        st.done = done;
        if let Some(held) = held {
            self.ledger.record(&mut tx, &self.url(), held, done).await?;
        }
        self.save(&mut tx, committed, st).await?;
        tx.commit().await.map_err(pg_err("committing a batch"))
    }

    /// Direct appends: a transaction of its own that takes the table's lock (bounded wait,
    /// retried), adds the columns `batch` needs and commits them with `batch`'s rows.
    #[allow(clippy::too_many_arguments)]
    async fn with_new_columns(
        &self,
        t: &mut PgTarget,
        batch: read::ReadBatch,
        needed: &[(String, ColumnKind)],
        reader: &mut read::InputReader,
        st: &mut InputState,
        committed: &mut Option<Value>,
        progress: &mut TxProgress,
        totals: &mut Totals,
    ) -> Result<(), JobError> {
        let url = self.url();
        let policy = self.limits.lock;
        let names: Vec<&str> = needed.iter().map(|(p, _)| p.as_str()).collect();
        let mut retry = sink::Retry::new(policy);
        let (mut tx, held) = loop {
            let mut tx = self.pool.begin().await.map_err(pg_err("adding columns"))?;
            sqlx::query("SET LOCAL statement_timeout = 0")
                .execute(&mut *tx)
                .await
                .map_err(pg_err("adding columns"))?;
            // The entry, then the table, then the check (see the batch transaction).
            let held = self.ledger.hold(&mut tx, &url).await?;
            match sink::lock_table(&mut tx, self.table, LockMode::AccessExclusive, &policy).await {
                Ok(()) => {
                    self.ledger.check_held_table(&mut tx, &held).await?;
                    break (tx, held);
                }
                Err(Attempt::Failed(e)) => return Err(e),
                Err(Attempt::Locked { .. }) => {
                    if let Err(e) = tx.rollback().await {
                        return Err(pg_err("adding columns")(e));
                    }
                    retry
                        .failed(
                            self.pool,
                            self.table,
                            &format!("adding columns for {names:?}"),
                        )
                        .await?;
                }
            }
        };
        // Under the lock: another run may have added some of them meanwhile.
        let missing = t.map_table_columns(&mut tx, &batch.records).await?;
        let added = t.add_table_columns(&mut tx, &missing).await?;
        st.columns_added.extend(added);
        progress.since_checkpoint = 0;
        let end = self
            .stream_copy(&mut tx, t, Some(batch), reader, st, progress, totals, 1)
            .await?;
        match end {
            CopyEnd::Full | CopyEnd::InputDone => {
                let done = matches!(end, CopyEnd::InputDone);
                self.commit(tx, t, Some(held), st, committed, progress, done)
                    .await
            }
            _ => Err(JobError::internal(format!(
                "{url}: the batch that needed new columns could not be copied"
            ))),
        }
    }

    /// Streams batches into one `COPY` until `limit` features are in, the input ends, a signal
    /// arrives, or a batch needs a schema change. Postgres parses rows while the next batch is
    /// read and encoded: the statement completes only at the end.
    #[allow(clippy::too_many_arguments)]
    async fn stream_copy(
        &self,
        conn: &mut PgConnection,
        t: &PgTarget,
        mut first: Option<read::ReadBatch>,
        reader: &mut read::InputReader,
        st: &mut InputState,
        progress: &mut TxProgress,
        totals: &mut Totals,
        limit: u64,
    ) -> Result<CopyEnd, JobError> {
        let cfg = &self.plan.config;
        let ctx = self.ctx;
        let url = self.url();
        let lost = self.lease.lost();
        let copy_err = |e| JobError::from(pg::PgError::sql("loading rows", e));
        let mut copy = conn.copy_in_raw(t.copy_sql()).await.map_err(copy_err)?;
        // On every early exit the COPY is aborted; the abort's own failure (a broken
        // connection) only matters less than the error being returned.
        macro_rules! abort {
            ($why:expr) => {
                if let Err(e) = copy.abort($why).await {
                    tracing::debug!(error = %e, "aborting the COPY failed");
                }
            };
        }
        if !t.copy_header().is_empty()
            && let Err(e) = copy.send(t.copy_header()).await
        {
            abort!("send failed");
            return Err(copy_err(e));
        }
        let mut buf: Vec<u8> = Vec::with_capacity(READ_BATCH * 256);
        let mut rejects = Vec::new();
        let end = loop {
            let batch = match first.take() {
                Some(b) => b,
                None => {
                    let msg = tokio::select! {
                        m = reader.recv() => m,
                        _ = ctx.shutdown.cancelled() => break CopyEnd::Stopped,
                        _ = lost.cancelled() => break CopyEnd::LeaseLost,
                    };
                    match msg {
                        None => break CopyEnd::InputDone,
                        Some(Ok(b)) => b,
                        Some(Err(e)) => {
                            abort!("input error");
                            return Err(e);
                        }
                    }
                }
            };
            if batch.records.is_empty() {
                count_filtered_only(&batch, st, totals, ctx);
                progress.last_bytes = batch.bytes;
                continue;
            }
            let next = batch.next;
            if t.needs_ddl(&batch.records) {
                break CopyEnd::NeedsDdl(batch);
            }
            buf.clear();
            rejects.clear();
            let written = tokio::task::block_in_place(|| {
                t.encode(self.index, &url, &batch.records, &mut buf, &mut rejects)
            });
            if !buf.is_empty()
                && let Err(e) = copy.send(buf.as_slice()).await
            {
                abort!("send failed");
                return Err(copy_err(e));
            }
            let n = batch.records.len() as u64 + batch.filtered;
            st.next = next;
            st.read += n;
            st.filtered += batch.filtered;
            st.repaired += batch.repaired;
            st.written += written;
            st.rejected += rejects.len() as u64;
            totals.read += n;
            totals.filtered += batch.filtered;
            totals.written += written;
            totals.rejected += rejects.len() as u64;
            Stats::add(&ctx.stats.read, n);
            Stats::add(&ctx.stats.filtered, batch.filtered);
            Stats::add(&ctx.stats.repaired, batch.repaired);
            Stats::add(&ctx.stats.written, written);
            Stats::add(&ctx.stats.rejected, rejects.len() as u64);
            Stats::add(
                &ctx.stats.bytes_in,
                batch.bytes.saturating_sub(progress.last_bytes),
            );
            progress.last_bytes = batch.bytes;
            ctx.progress.set_bytes(batch.bytes);
            progress.rejects.append(&mut rejects);
            if state::over_limit(totals.rejected, cfg.max_rejects) {
                abort!("too many rejects");
                let last = progress
                    .rejects
                    .last()
                    .map(|r| format!("{}: {}", r.line, r.reason))
                    .unwrap_or_default();
                return Err(JobError::bad_input(format!(
                    "{url}: more than {} features rejected (--max-rejects); last at line {last}",
                    cfg.max_rejects.unwrap_or(0)
                )));
            }
            progress.since_checkpoint += n;
            if progress.since_checkpoint >= limit {
                break CopyEnd::Full;
            }
        };
        if matches!(end, CopyEnd::LeaseLost) {
            abort!("lease lost");
        } else {
            if !t.copy_trailer().is_empty() {
                copy.send(t.copy_trailer()).await.map_err(copy_err)?;
            }
            copy.finish().await.map_err(copy_err)?;
        }
        Ok(end)
    }
}
