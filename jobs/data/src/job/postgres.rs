//! A run into PostGIS: the run's checkpoint and strategy, each input loaded (see [`super::load`]),
//! then the final transaction that publishes and marks the run done.

use std::collections::BTreeMap;

use etl_core::checkpoint::{Checkpoints, PostgresCheckpoints};
use etl_core::metrics::Stats;
use etl_core::postgres::{self as pg, TableName};
use etl_core::store::ObjectMeta;
use etl_core::{ExitKind, JobContext, JobError, Outcome};
use serde_json::json;

use super::load::{LoadOutcome, LoadStep, Totals};
use super::{Plan, ledger_scope, take_lease};
use crate::config::{AppendPath, Mode};
use crate::rejects::RejectsSink;
use crate::sink::postgres::{
    self as sink, Attempt, Ledger, Limits, OpenOptions, PgTarget, Published, StagedInput, Strategy,
};
use crate::state::{self, InputState, LoadedVersion, RUN_STATE};

fn pg_err(what: &'static str) -> impl Fn(sqlx::Error) -> JobError {
    move |e| JobError::from(pg::PgError::sql(what, e))
}

/// The pg_class oid of a table, None if it does not exist.
async fn table_oid(pool: &sqlx::PgPool, table: &TableName) -> Result<Option<i64>, JobError> {
    sqlx::query_scalar("SELECT to_regclass($1)::oid::bigint")
        .bind(table.quoted())
        .fetch_one(pool)
        .await
        .map_err(pg_err("looking up the table"))
}

/// Drops the stage table of a run, if there is one (left by a failed clean-up).
async fn drop_stage(pool: &sqlx::PgPool, table: &TableName, key: &str) {
    let stage = sink::stage_name(table, key);
    let sql = format!("DROP TABLE IF EXISTS {}", stage.quoted());
    if let Err(e) = sqlx::query(sqlx::AssertSqlSafe(sql)).execute(pool).await {
        tracing::warn!(stage = %stage, error = %e, "could not drop the stage table");
    }
}

/// Everything the run needs after its inputs are loaded.
struct Finish<'a> {
    plan: &'a Plan,
    key: &'a str,
    table: &'a TableName,
    ctx: &'a JobContext,
    pool: &'a sqlx::PgPool,
    lease: &'a etl_core::checkpoint::Lease,
    ledger: Ledger<'a>,
    limits: Limits,
}

pub(super) async fn run(
    plan: &Plan,
    url: &str,
    table: &TableName,
    limits: Limits,
    found: Vec<ObjectMeta>,
    key: &str,
    ctx: &JobContext,
) -> Result<Outcome, JobError> {
    let cfg = &plan.config;
    let pool = pg::connect(url, 4).await.map_err(JobError::from)?;
    let cps = Checkpoints::Postgres(
        PostgresCheckpoints::open(pool.clone())
            .await
            .map_err(JobError::from)?,
    );
    let lease = take_lease(&cps, key, ctx).await?;
    sink::ensure_reject_table(&pool).await?;
    let mut states = cps.load(key).await.map_err(JobError::from)?;
    // What the checkpoints remember holds only while the table does: someone may have dropped it.
    let table_oid = table_oid(&pool, table).await?;
    let table_exists = table_oid.is_some();
    if state::run_done(key, states.get(RUN_STATE))? {
        if table_exists {
            tracing::info!(run_key = key, table = %table, "this run already completed; nothing to do");
            lease.release().await;
            return Ok(Outcome::Skipped);
        }
        tracing::info!(run_key = key, table = %table, "the table of a completed run is gone; loading again");
        cps.clear(key).await.map_err(JobError::from)?;
        states.clear();
    }
    // Every input state is read before anything is done: one that cannot be decoded stops the
    // run (exit 78), it never restarts the input (that would load its rows twice).
    let mut decoded: BTreeMap<String, InputState> = BTreeMap::new();
    for (name, v) in states.iter().filter(|(name, _)| *name != RUN_STATE) {
        decoded.insert(name.clone(), InputState::decode(key, name, Some(v))?);
    }
    // The stage and the checkpoint must describe the same rows: a stage without progress
    // (left by a failed clean-up) is dropped; progress without its stage (dropped by hand) is
    // forgotten, so the run starts over instead of missing rows.
    let stage = sink::stage_name(table, key);
    let stage_exists: bool = sqlx::query_scalar("SELECT to_regclass($1) IS NOT NULL")
        .bind(stage.quoted())
        .fetch_one(&pool)
        .await
        .map_err(pg_err("looking up the stage table"))?;
    let progress = decoded.values().any(|s| s.next > 0);
    let mut resumed = if stage_exists && progress {
        Some(if sink::is_swap_stage(&pool, &stage).await? {
            Strategy::Swap
        } else {
            Strategy::Build
        })
    } else {
        None
    };
    if resumed == Some(Strategy::Swap) && !table_exists {
        // A copy of a table that is gone: nothing to swap it into. Start over (building it).
        tracing::warn!(run_key = key, stage = %stage, "the table this run's stage was to replace is gone; starting over");
        sink::discard_stage(&pool, &stage, key).await?;
        states.clear();
        decoded.clear();
        resumed = None;
    }
    let scope = ledger_scope(table);
    let mut ledger: BTreeMap<String, LoadedVersion> = BTreeMap::new();
    if cfg.mode != Mode::Replace && table_exists {
        for (name, v) in cps.load(&scope).await.map_err(JobError::from)? {
            let entry = LoadedVersion::decode(&scope, &name, &v)?;
            ledger.insert(name, entry);
        }
    }
    let unchanged = |meta: &ObjectMeta| {
        let url = meta.location.to_string();
        state::unchanged(ledger.get(&url), meta.etag.as_deref(), meta.size, table_oid)
    };
    // What this run will read: the inputs the table does not hold already.
    let input_bytes: u64 = found.iter().filter(|m| !unchanged(m)).map(|m| m.size).sum();
    // A swap needs a clean start: no rows of this run in the table from a direct attempt
    // (progress), and no load of any run in it that is not settled (which direct appends undo
    // or take over, by the transactions that inserted their rows).
    let unsettled = ledger
        .values()
        .any(|e| e.table_oid == table_oid && !e.settled());
    let may_swap = cfg.mode == Mode::Append
        && table_exists
        && resumed.is_none()
        && cfg.append_path != AppendPath::Direct;
    let swap = if !may_swap {
        false
    } else if !decoded.is_empty() {
        tracing::info!(table = %table, "appending directly: an earlier attempt of this run has loaded inputs");
        false
    } else if unsettled {
        tracing::info!(table = %table, "appending directly: the table holds loads not yet published (a running or abandoned direct append), which only a direct append may undo or take over");
        false
    } else {
        sink::choose_swap(&pool, table, cfg.append_path, input_bytes).await?
    };
    let strategy = Strategy::choose(cfg.mode, resumed, table_exists, swap);
    if stage_exists && !progress {
        drop_stage(&pool, table, key).await;
    } else if strategy.staged() && !stage_exists && progress {
        tracing::warn!(run_key = key, stage = %stage, "the stage table of this run is gone; starting over");
        cps.clear(key).await.map_err(JobError::from)?;
        states.clear();
        decoded.clear();
    }
    tracing::info!(run_key = key, table = %table, ?strategy, "loading");
    let added_before: Vec<String> = decoded
        .values()
        .flat_map(|s| s.columns_added.iter().cloned())
        .collect();

    let mut target: Option<PgTarget> = None;
    let mut staged: Vec<StagedInput> = Vec::new();
    let mut totals = Totals {
        read: 0,
        rejected: 0,
        filtered: 0,
        written: 0,
    };
    let mut already_there = 0usize;
    let mut failed: Option<JobError> = None;
    for (index, meta) in found.iter().enumerate() {
        let url = meta.location.to_string();
        if unchanged(meta) {
            tracing::info!(input = %url, "unchanged since the last successful load; skipped");
            Stats::add(&ctx.stats.skipped_inputs, 1);
            continue;
        }
        staged.push(StagedInput {
            index: index as u64,
            url: url.clone(),
            etag: meta.etag.clone(),
            size: meta.size,
        });
        let mut st = match decoded.get(&url) {
            Some(s) => s.clone(),
            None => InputState::default(),
        };
        let step = LoadStep {
            committed: states.get(&url).cloned(),
            plan,
            key,
            index: index as u64,
            meta,
            ctx,
            pool: &pool,
            lease: &lease,
            table,
            strategy,
            ledger: Ledger {
                scope: &scope,
                table,
                run_key: key,
            },
            limits,
            added_before: added_before.clone(),
        };
        match step.load(&mut st, &mut target, &mut totals).await {
            Ok(LoadOutcome::Loaded) => {}
            Ok(LoadOutcome::AlreadyThere) => already_there += 1,
            Err(e) => {
                failed = Some(e);
                break;
            }
        }
    }
    if failed.is_none() && totals.filtered > 0 && totals.written == 0 && already_there == 0 {
        // Nothing matched: a replace must not publish an empty table, an append adds nothing.
        failed = Some(JobError::bad_input(format!(
            "none of the {} features read matched --where; nothing was loaded",
            totals.filtered
        )));
    }
    if let Some(e) = failed {
        let added = match &target {
            Some(t) => t.added().to_vec(),
            None => added_before,
        };
        undo_after(
            &e,
            strategy,
            target.as_ref(),
            &pool,
            table,
            &scope,
            key,
            &added,
            &limits,
            &cps,
        )
        .await;
        return Err(e);
    }
    if staged.is_empty() {
        tracing::info!("every input is unchanged since the last successful load");
        lease.release().await;
        return Ok(Outcome::Skipped);
    }
    if totals.read == 0 && target.is_none() && already_there == 0 {
        if let Err(e) = cps.clear(key).await {
            tracing::warn!(error = %e, "could not clear the checkpoint of a run without features");
        }
        let urls: Vec<&str> = staged.iter().map(|s| s.url.as_str()).collect();
        return Err(JobError::bad_input(format!(
            "{}: no features found",
            urls.join(", ")
        )));
    }
    let finish = Finish {
        plan,
        key,
        table,
        ctx,
        pool: &pool,
        lease: &lease,
        ledger: Ledger {
            scope: &scope,
            table,
            run_key: key,
        },
        limits,
    };
    let added = match &target {
        Some(t) => t.added().to_vec(),
        None => added_before.clone(),
    };
    let result = if strategy == Strategy::Direct {
        finish.direct(already_there == staged.len()).await
    } else {
        finish.staged(target, strategy, &staged).await
    };
    match &result {
        Ok(_) => lease.release().await,
        // A publish that cannot succeed by retrying (a key the rows break) leaves nothing
        // either: a rerun would only fail the same way.
        Err(e) => {
            undo_after(
                e, strategy, None, &pool, table, &scope, key, &added, &limits, &cps,
            )
            .await
        }
    }
    result
}

/// After a failure: a run that cannot succeed by retrying leaves nothing behind. A staged run
/// drops its stage after bad input (as before: other failures keep it for the rerun); a
/// direct append undoes every row and ledger entry it committed and the columns it added.
#[allow(clippy::too_many_arguments)]
async fn undo_after(
    e: &JobError,
    strategy: Strategy,
    target: Option<&PgTarget>,
    pool: &sqlx::PgPool,
    table: &TableName,
    scope: &str,
    key: &str,
    added: &[String],
    limits: &Limits,
    cps: &Checkpoints,
) {
    if strategy == Strategy::Direct {
        if e.kind.retryable() || e.kind == ExitKind::Stopped {
            return;
        }
        let ledger = Ledger {
            scope,
            table,
            run_key: key,
        };
        match undo_direct(pool, &ledger, added, limits).await {
            Ok(rows) => {
                tracing::warn!(table = %table, rows, "run failed for good: removed every row it had added")
            }
            Err(u) => {
                tracing::error!(table = %table, error = %u, "run failed for good and could not remove its rows; the next run that loads these inputs removes them")
            }
        }
        return;
    }
    if e.kind != ExitKind::BadInput {
        return;
    }
    // Permanent: nothing of this run may remain, and a retry cannot help.
    let discarded = match target {
        Some(t) => t.discard().await,
        None => sink::discard_stage(pool, &sink::stage_name(table, key), key).await,
    };
    if let Err(d) = discarded {
        tracing::warn!(error = %d, "could not discard the stage table");
        if let Err(c) = cps.clear(key).await {
            tracing::warn!(error = %c, "could not clear the checkpoint");
        }
    }
}

/// Removes a direct append's rows, its ledger entries and its checkpoint in one transaction,
/// then (best effort) the columns it added.
async fn undo_direct(
    pool: &sqlx::PgPool,
    ledger: &Ledger<'_>,
    added: &[String],
    limits: &Limits,
) -> Result<u64, JobError> {
    let mut tx = pool.begin().await.map_err(pg_err("undoing the run"))?;
    sqlx::query("SET LOCAL statement_timeout = 0")
        .execute(&mut *tx)
        .await
        .map_err(pg_err("undoing the run"))?;
    let rows = ledger.undo(&mut tx).await?;
    let dropped = ledger
        .drop_added_columns(&mut tx, added, &limits.lock)
        .await?;
    if !dropped.is_empty() {
        tracing::info!(columns = ?dropped, "dropped the columns this run had added");
    }
    sink::clear_run(&mut tx, ledger.run_key).await?;
    sqlx::query("DELETE FROM etl_checkpoint WHERE scope = $1")
        .bind(ledger.run_key)
        .execute(&mut *tx)
        .await
        .map_err(pg_err("undoing the run"))?;
    tx.commit().await.map_err(pg_err("undoing the run"))?;
    Ok(rows)
}

impl Finish<'_> {
    /// Writes the rejects file (output durable first: before the run is marked done) and
    /// checks the run may still publish.
    async fn before_publish(&self) -> Result<(), JobError> {
        if self.lease.is_lost() {
            return Err(JobError::temporary(format!(
                "run {}: lease lost before publishing",
                self.key
            )));
        }
        if let Some(r) = &self.plan.config.rejects {
            let sink = RejectsSink::open(&self.ctx.store, Some(r)).await?;
            if let Some(loc) = sink::write_rejects(self.pool, self.key, sink).await? {
                self.ctx.stats.add_output(loc);
            }
        }
        if self.ctx.shutdown.is_cancelled() {
            // Everything is loaded and checkpointed; the rerun only publishes.
            return Err(JobError::stopped());
        }
        Ok(())
    }

    /// Direct appends: the rows are in; the final transaction settles the run's ledger
    /// entries (nothing of them can be undone any more) and marks the run done.
    async fn direct(&self, nothing_loaded: bool) -> Result<Outcome, JobError> {
        self.before_publish().await?;
        let written = Stats::get(&self.ctx.stats.written);
        let mut tx = self.pool.begin().await.map_err(pg_err("publishing"))?;
        self.ledger.settle(&mut tx).await?;
        sink::clear_run(&mut tx, self.key).await?;
        PgTarget::save_state(
            &mut tx,
            self.key,
            RUN_STATE,
            &json!({"status": "done", "table": self.table.to_string(), "rows": written}),
        )
        .await?;
        etl_core::fault::point("data.publish.before_commit");
        tx.commit().await.map_err(pg_err("publishing"))?;
        etl_core::fault::point("data.publish.after_commit");
        tracing::info!(table = %self.table, rows = written, mode = ?self.plan.config.mode, "published");
        self.ctx
            .stats
            .add_output(format!("postgres:{}", self.table));
        Ok(if nothing_loaded {
            Outcome::Skipped
        } else {
            Outcome::Succeeded
        })
    }

    /// Staged runs: indexes, then the publishing transaction, retried while the table's lock
    /// cannot be had within the lock timeout.
    async fn staged(
        &self,
        target: Option<PgTarget>,
        strategy: Strategy,
        inputs: &[StagedInput],
    ) -> Result<Outcome, JobError> {
        let cfg = &self.plan.config;
        let target = match target {
            Some(t) => t,
            // Resumed after every input was staged: the stage exists already.
            None => {
                PgTarget::open(
                    self.pool.clone(),
                    self.table.clone(),
                    OpenOptions {
                        mode: cfg.mode,
                        strategy,
                        key: cfg.key.clone(),
                        select: cfg.select.clone(),
                        run_key: self.key,
                        limits: self.limits,
                        srid: cfg.t_srs_code().map_err(JobError::usage)?,
                        added: Vec::new(),
                    },
                    &[],
                )
                .await?
            }
        };
        self.before_publish().await?;
        target.prepare_publish().await?;
        if self.lease.is_lost() {
            return Err(JobError::temporary(format!(
                "run {}: lease lost before publishing",
                self.key
            )));
        }
        let published = sink::with_retries(
            &self.limits.lock,
            self.table,
            self.pool,
            "publishing",
            || self.publish_once(&target, inputs),
        )
        .await?;
        match published {
            Published::Done { rows, .. } => {
                tracing::info!(table = %self.table, rows, mode = ?cfg.mode, "published");
                if matches!(
                    strategy,
                    Strategy::Replace | Strategy::Build | Strategy::Swap
                ) {
                    target.analyze().await;
                }
                self.ctx
                    .stats
                    .add_output(format!("postgres:{}", self.table));
                Ok(Outcome::Succeeded)
            }
            Published::Restage { reason } => {
                target.discard().await?;
                let text = if strategy == Strategy::Swap {
                    format!(
                        "table {} changed while run {} staged its rows: {reason}; this run's stage was dropped and a retry loads again",
                        self.table, self.key
                    )
                } else {
                    format!(
                        "table {} was created by another run while run {} was building it, and {reason}: this run's stage was dropped; a retry appends into the existing table",
                        self.table, self.key
                    )
                };
                Err(JobError::temporary(text))
            }
        }
    }

    /// One attempt at the publishing transaction. Publishers of one table take turns, so two
    /// runs that both staged an input cannot both add it: under the lock the ledger is read
    /// again and what another run published meanwhile is left out.
    async fn publish_once(
        &self,
        target: &PgTarget,
        inputs: &[StagedInput],
    ) -> Result<Published, Attempt> {
        let mut tx = self.pool.begin().await.map_err(pg_err("publishing"))?;
        sqlx::query("SET LOCAL statement_timeout = 0")
            .execute(&mut *tx)
            .await
            .map_err(pg_err("publishing"))?;
        sqlx::query("SELECT pg_advisory_xact_lock(hashtextextended($1, 0))")
            .bind(self.ledger.scope)
            .execute(&mut *tx)
            .await
            .map_err(pg_err("publishing"))?;
        let published = match target.publish(&mut tx, &self.ledger, inputs).await {
            Ok(p) => p,
            Err(e) => {
                if let Err(r) = tx.rollback().await {
                    tracing::warn!(error = %r, "rolling back the publish failed");
                }
                return Err(e);
            }
        };
        let Published::Done { rows, .. } = &published else {
            tx.rollback().await.map_err(pg_err("publishing"))?;
            return Ok(published);
        };
        sink::clear_run(&mut tx, self.key).await?;
        PgTarget::save_state(
            &mut tx,
            self.key,
            RUN_STATE,
            &json!({"status": "done", "table": self.table.to_string(), "rows": rows}),
        )
        .await?;
        etl_core::fault::point("data.publish.before_commit");
        tx.commit().await.map_err(pg_err("publishing"))?;
        etl_core::fault::point("data.publish.after_commit");
        Ok(published)
    }
}
