//! The etl-data job: expands inputs, derives the run key, takes the lease, and drives one of the
//! two sinks.

use std::sync::Arc;
use std::sync::atomic::AtomicU64;

use etl_core::checkpoint::{Checkpoints, PostgresCheckpoints};
use etl_core::metrics::Stats;
use etl_core::postgres::{self, TableName};
use etl_core::runkey::run_key;
use etl_core::store::{Location, ObjectMeta};
use etl_core::{Job, JobContext, JobError, Outcome, Profile};
use etl_geo::{CsvOptions, Format, OutputFormat, ReadOptions};
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

use crate::config::{DataConfig, Mode, OutputTarget, redact_url};
use crate::inputs;
use crate::read::{self, READ_BATCH};
use crate::rejects::{Reject, RejectsSink};
use crate::sink::object::{self, ObjectJob};
use crate::sink::postgres::PgTarget;
use crate::state::{self, InputState, LoadedVersion, RUN_STATE};

pub struct DataJob;

/// A config checked for consistency, with its parts parsed.
struct Plan {
    config: DataConfig,
    format: Option<Format>,
    read_options: ReadOptions,
    target: Target,
}

enum Target {
    Postgres {
        url: String,
        table: TableName,
    },
    Object {
        location: Location,
        format: OutputFormat,
    },
}

fn plan(mut config: DataConfig, batch: &etl_core::batch::BatchEnv) -> Result<Plan, JobError> {
    // Upsert needs its key even when --select leaves it out.
    if let Some(k) = &config.key
        && k != "id"
        && !config.select.is_empty()
        && !config.select.contains(k)
    {
        config.select.push(k.clone());
    }
    // Array children share one config: each must not overwrite the others' output.
    if let Some((index, _)) = batch.shard() {
        if config.mode == Mode::Replace {
            return Err(JobError::usage(
                "--mode replace in an array job: every child would replace the others' table (use append or upsert)",
            ));
        }
        if matches!(config.target(), OutputTarget::Object { .. }) {
            if !config.output.contains("{shard}") {
                return Err(JobError::usage(
                    "a file or S3 output in an array job needs {shard} in its name, so each child writes its own",
                ));
            }
            config.output = config.output.replace("{shard}", &index.to_string());
        }
    }
    let format = config
        .format
        .as_deref()
        .map(read::parse_format)
        .transpose()?;
    if config.checkpoint_every == 0 {
        return Err(JobError::usage("--checkpoint-every must be at least 1"));
    }
    let target = match config.target() {
        OutputTarget::Postgres { url } => {
            let table = config
                .table
                .as_deref()
                .ok_or_else(|| JobError::usage("--table is required for a postgres:// output"))?;
            let table = TableName::parse(table).map_err(JobError::usage)?;
            if config.mode == Mode::Upsert && config.key.is_none() {
                return Err(JobError::usage("--mode upsert needs --key PROP"));
            }
            let url = postgres::resolve_url(Some(&url), |k| std::env::var(k).ok())
                .map_err(JobError::from)?;
            Target::Postgres { url, table }
        }
        OutputTarget::Object { url } => {
            if config.table.is_some() || config.mode != Mode::Append || config.key.is_some() {
                return Err(JobError::usage(
                    "--table, --mode and --key apply to postgres:// outputs only",
                ));
            }
            let location = Location::parse(&url).map_err(JobError::from)?;
            let format = OutputFormat::from_path(&url).ok_or_else(|| {
                JobError::usage(format!(
                    "{url}: unknown output extension (use .geojsonl, .ndjson or .geojson)"
                ))
            })?;
            Target::Object { location, format }
        }
    };
    let read_options = ReadOptions {
        csv: CsvOptions {
            lon: config.csv_lon.clone(),
            lat: config.csv_lat.clone(),
            wkt: config.csv_wkt.clone(),
            delimiter: None,
        },
        ..ReadOptions::default()
    };
    Ok(Plan {
        config,
        format,
        read_options,
        target,
    })
}

/// The run key: job, config identity, this shard of the array, and either the versions of the
/// inputs or, for a scheduled run, its logical time: a tick is one run whatever the inputs
/// hold by the time it is delivered (again).
fn key_for(ctx: &JobContext, config: &DataConfig, found: &[ObjectMeta]) -> String {
    let mut identity = config.identity();
    if let (Some(obj), Some((i, n))) = (identity.as_object_mut(), ctx.batch.shard()) {
        obj.insert("shard".into(), json!([i, n]));
    }
    match (&ctx.settings.logical_time, identity.as_object_mut()) {
        (Some(t), Some(obj)) => {
            obj.insert(
                "logical_time".into(),
                json!(etl_core::schedule::canonical(t)),
            );
            run_key(DataJob::NAME, &identity, &[])
        }
        _ => run_key(DataJob::NAME, &identity, &inputs::versions(found)),
    }
}

/// Scope of the per-table ledger of loaded input versions: one ledger per table, whatever the
/// mode or options, because it describes what the table holds.
fn ledger_scope(table: &TableName) -> String {
    let digest = Sha256::digest(table.to_string().as_bytes());
    format!("ledger:{}", hex::encode(&digest[..12]))
}

fn default_checkpoint_dir(output: &Location) -> String {
    match output {
        Location::File(_) => output.parent().join(".etl-checkpoints").to_string(),
        Location::S3 { bucket, .. } => format!("s3://{bucket}/.etl-checkpoints/"),
    }
}

impl Job for DataJob {
    type Config = DataConfig;
    const NAME: &'static str = "etl-data";
    const ABOUT: &'static str = "Load GeoJSON, GeoJSON sequences and CSV into PostGIS, GeoJSON files or S3; resumable and exactly once";

    fn profile_defaults(profile: Profile) -> Value {
        match profile {
            Profile::DevTest => json!({ "checkpoint_every": 50_000 }),
            Profile::Prod => json!({ "checkpoint_every": 200_000 }),
        }
    }

    async fn dry_run(config: DataConfig, ctx: JobContext) -> Result<Value, JobError> {
        let plan = plan(config, &ctx.batch)?;
        let found = inputs::expand(&ctx.store, &plan.config.input, &ctx.batch).await?;
        let key = key_for(&ctx, &plan.config, &found);
        ctx.stats.set_run_key(&key);
        let mut out = json!({
            "run_key": key,
            "inputs": found.iter().map(|m| json!({"url": m.location.to_string(), "size": m.size, "etag": m.etag})).collect::<Vec<_>>(),
            "output": redact_url(&plan.config.output),
            "mode": plan.config.mode,
        });
        match &plan.target {
            Target::Postgres { url, table } => {
                let pool = postgres::connect(url, 1).await.map_err(JobError::from)?;
                let postgis: Option<String> = sqlx::query_scalar(
                    "SELECT extversion FROM pg_extension WHERE extname = 'postgis'",
                )
                .fetch_optional(&pool)
                .await
                .map_err(|e| JobError::from(postgres::PgError::sql("checking PostGIS", e)))?;
                let Some(version) = postgis else {
                    return Err(JobError::config("the database has no postgis extension"));
                };
                let exists: bool = sqlx::query_scalar("SELECT to_regclass($1) IS NOT NULL")
                    .bind(table.quoted())
                    .fetch_one(&pool)
                    .await
                    .map_err(|e| JobError::from(postgres::PgError::sql("checking the table", e)))?;
                out["postgis"] = json!(version);
                out["table"] = json!(table.to_string());
                out["table_exists"] = json!(exists);
                pool.close().await;
            }
            Target::Object { location, .. } => {
                ctx.store.check(location).await.map_err(JobError::from)?;
                let cp = ctx
                    .settings
                    .checkpoint
                    .clone()
                    .unwrap_or_else(|| default_checkpoint_dir(location));
                out["checkpoint"] = json!(cp);
            }
        }
        if let Some(r) = &plan.config.rejects {
            let loc = Location::parse(r).map_err(JobError::from)?;
            ctx.store.check(&loc).await.map_err(JobError::from)?;
        }
        Ok(out)
    }

    async fn run(config: DataConfig, ctx: JobContext) -> Result<Outcome, JobError> {
        let plan = plan(config, &ctx.batch)?;
        let found = inputs::expand(&ctx.store, &plan.config.input, &ctx.batch).await?;
        if found.is_empty() {
            tracing::info!("this array shard has no inputs");
            return Ok(Outcome::Skipped);
        }
        let key = key_for(&ctx, &plan.config, &found);
        ctx.stats.set_run_key(&key);
        tracing::info!(run_key = %key, inputs = found.len(), output = %redact_url(&plan.config.output), "run");
        match &plan.target {
            Target::Postgres { url, table } => {
                run_postgres(&plan, url, table, found, &key, &ctx).await
            }
            Target::Object { location, format } => {
                run_object(&plan, location, *format, found, &key, &ctx).await
            }
        }
    }
}

/// The pg_class oid of a table, None if it does not exist.
async fn table_oid(pool: &sqlx::PgPool, table: &TableName) -> Result<Option<i64>, JobError> {
    let mut conn = pool
        .acquire()
        .await
        .map_err(|e| JobError::from(postgres::PgError::sql("looking up the table", e)))?;
    table_oid_in(&mut conn, table).await
}

async fn table_oid_in(
    conn: &mut sqlx::PgConnection,
    table: &TableName,
) -> Result<Option<i64>, JobError> {
    sqlx::query_scalar("SELECT to_regclass($1)::oid::bigint")
        .bind(table.quoted())
        .fetch_one(conn)
        .await
        .map_err(|e| JobError::from(postgres::PgError::sql("looking up the table", e)))
}

/// Drops the stage table of a run, if there is one (after a permanent failure).
async fn drop_stage(pool: &sqlx::PgPool, table: &TableName, key: &str) {
    let stage = crate::sink::postgres::stage_name(table, key);
    let sql = format!("DROP TABLE IF EXISTS {}", stage.quoted());
    if let Err(e) = sqlx::query(sqlx::AssertSqlSafe(sql)).execute(pool).await {
        tracing::warn!(stage = %stage, error = %e, "could not drop the stage table");
    }
}

/// Takes the run's lease, or explains who holds it (exit 75: Batch retries later).
async fn take_lease(
    cps: &Checkpoints,
    key: &str,
    ctx: &JobContext,
) -> Result<etl_core::checkpoint::Lease, JobError> {
    match cps
        .acquire(key, &ctx.settings.owner, ctx.settings.lease_ttl)
        .await
        .map_err(JobError::from)?
    {
        Ok(lease) => Ok(lease),
        Err(info) => Err(lease_taken(key, info)),
    }
}

fn lease_taken(key: &str, info: etl_core::checkpoint::LeaseInfo) -> JobError {
    let until = info
        .until
        .and_then(chrono::DateTime::from_timestamp_millis)
        .map(|t| format!(" until {}", t.to_rfc3339()))
        .unwrap_or_default();
    JobError::temporary(format!(
        "run {key} is being processed by {}{until}; retry later",
        info.owner
    ))
}

async fn run_object(
    plan: &Plan,
    location: &Location,
    format: OutputFormat,
    found: Vec<ObjectMeta>,
    key: &str,
    ctx: &JobContext,
) -> Result<Outcome, JobError> {
    let cp_url = ctx
        .settings
        .checkpoint
        .clone()
        .unwrap_or_else(|| default_checkpoint_dir(location));
    let cps = Checkpoints::open(&cp_url, &ctx.store, None)
        .await
        .map_err(JobError::from)?;
    let lease = take_lease(&cps, key, ctx).await?;
    let states = cps.load(key).await.map_err(JobError::from)?;
    if state::run_done(states.get(RUN_STATE)) {
        // Done means done only while the output it produced is still there, unchanged.
        let recorded = states
            .get(RUN_STATE)
            .and_then(|s| s.get("etag"))
            .and_then(Value::as_str);
        match ctx.store.head(location).await {
            Ok(meta) if meta.etag.as_deref() == recorded => {
                tracing::info!(run_key = key, output = %location, "this run already completed; nothing to do");
                lease.release().await;
                return Ok(Outcome::Skipped);
            }
            _ => {
                tracing::info!(run_key = key, output = %location, "output missing or changed since the run completed; writing it again")
            }
        }
    }
    let writer = ctx.store.writer(location).await.map_err(JobError::from)?;
    let job = ObjectJob {
        inputs: found,
        format: plan.format,
        read_options: plan.read_options.clone(),
        select: plan.config.select.clone(),
        max_rejects: plan.config.max_rejects,
        output_format: format,
    };
    let lost = lease.lost();
    // The writer checks the lease and the stop signal itself, between batches and right
    // before it commits, so nothing is committed once either fires.
    let rejects = RejectsSink::open(&ctx.store, plan.config.rejects.as_deref()).await?;
    let result = object::write(job, writer, rejects, ctx, lost).await?;
    if let Some(r) = result.rejects {
        ctx.stats.add_output(r);
    }
    ctx.stats.add_output(result.meta.location.to_string());
    cps.save(
        key,
        RUN_STATE,
        &json!({"status": "done", "output": location.to_string(), "etag": result.meta.etag}),
    )
    .await
    .map_err(JobError::from)?;
    lease.release().await;
    Ok(Outcome::Succeeded)
}

async fn run_postgres(
    plan: &Plan,
    url: &str,
    table: &TableName,
    found: Vec<ObjectMeta>,
    key: &str,
    ctx: &JobContext,
) -> Result<Outcome, JobError> {
    let cfg = &plan.config;
    let pool = postgres::connect(url, 4).await.map_err(JobError::from)?;
    let cps = Checkpoints::Postgres(
        PostgresCheckpoints::open(pool.clone())
            .await
            .map_err(JobError::from)?,
    );
    let lease = take_lease(&cps, key, ctx).await?;
    let mut states = cps.load(key).await.map_err(JobError::from)?;
    // What the checkpoints remember holds only while the table does: someone may have dropped it.
    let table_oid = table_oid(&pool, table).await?;
    let table_exists = table_oid.is_some();
    if state::run_done(states.get(RUN_STATE)) {
        if table_exists {
            tracing::info!(run_key = key, table = %table, "this run already completed; nothing to do");
            lease.release().await;
            return Ok(Outcome::Skipped);
        }
        tracing::info!(run_key = key, table = %table, "the table of a completed run is gone; loading again");
        cps.clear(key).await.map_err(JobError::from)?;
        states.clear();
    }
    // The stage and the checkpoint must describe the same rows: a stage without progress
    // (left by a failed clean-up) is dropped; progress without its stage (dropped by hand) is
    // forgotten, so the run starts over instead of missing rows.
    let stage = crate::sink::postgres::stage_name(table, key);
    let stage_exists: bool = sqlx::query_scalar("SELECT to_regclass($1) IS NOT NULL")
        .bind(stage.quoted())
        .fetch_one(&pool)
        .await
        .map_err(|e| JobError::from(postgres::PgError::sql("looking up the stage table", e)))?;
    let progress = states
        .iter()
        .any(|(name, v)| name != RUN_STATE && InputState::from_value(Some(v)).next > 0);
    if stage_exists && !progress {
        drop_stage(&pool, table, key).await;
    } else if !stage_exists && progress {
        tracing::warn!(run_key = key, stage = %stage, "the stage table of this run is gone; starting over");
        cps.clear(key).await.map_err(JobError::from)?;
        states.clear();
    }
    let ledger_scope = ledger_scope(table);
    let ledger = if cfg.mode == Mode::Replace || !table_exists {
        Default::default()
    } else {
        cps.load(&ledger_scope).await.map_err(JobError::from)?
    };

    let mut target: Option<PgTarget> = None;
    let mut loaded: Vec<(String, LoadedVersion)> = Vec::new();
    let mut total_read = 0u64;
    let mut total_rejected = 0u64;
    for (index, meta) in found.iter().enumerate() {
        let url = meta.location.to_string();
        if state::unchanged(ledger.get(&url), meta.etag.as_deref(), meta.size, table_oid) {
            tracing::info!(input = %url, "unchanged since the last successful load; skipped");
            Stats::add(&ctx.stats.skipped_inputs, 1);
            continue;
        }
        loaded.push((
            url.clone(),
            LoadedVersion {
                etag: meta.etag.clone(),
                size: meta.size,
                table_oid: None,
            },
        ));
        let mut st = InputState::from_value(states.get(&url));
        // Counts of earlier attempts belong to this run too.
        Stats::add(&ctx.stats.read, st.read);
        Stats::add(&ctx.stats.written, st.written);
        Stats::add(&ctx.stats.rejected, st.rejected);
        total_read += st.read;
        total_rejected += st.rejected;
        if st.done {
            continue;
        }
        if st.next > 0 {
            tracing::info!(input = %url, resume_at = st.next, "resuming from checkpoint");
        }
        let step = LoadStep {
            plan,
            key,
            index: index as u64,
            url: &url,
            committed: states.get(&url).cloned(),
            ctx,
            pool: &pool,
            lease: &lease,
        };
        let result = step
            .load(
                meta,
                &mut st,
                &mut target,
                &mut total_read,
                &mut total_rejected,
            )
            .await;
        if let Err(e) = result {
            if e.kind == etl_core::ExitKind::BadInput {
                // Permanent: nothing of this run may remain, and a retry cannot help.
                if let Some(t) = &target {
                    if let Err(d) = t.discard().await {
                        tracing::warn!(error = %d, "could not discard the stage table");
                    }
                } else {
                    let _ = cps.clear(key).await;
                    drop_stage(&pool, table, key).await;
                }
            }
            return Err(e);
        }
    }
    if total_read == 0 && loaded.is_empty() {
        tracing::info!("every input is unchanged since the last successful load");
        lease.release().await;
        return Ok(Outcome::Skipped);
    }
    let target = match target {
        Some(t) => t,
        None => {
            if total_read == 0 {
                let _ = cps.clear(key).await;
                return Err(JobError::bad_input(format!(
                    "{}: no features found",
                    loaded
                        .iter()
                        .map(|(u, _)| u.as_str())
                        .collect::<Vec<_>>()
                        .join(", ")
                )));
            }
            // Resumed after every input was staged: the stage exists already.
            PgTarget::open(
                pool.clone(),
                table.clone(),
                cfg.mode,
                cfg.key.clone(),
                cfg.select.clone(),
                key,
                &[],
            )
            .await?
        }
    };
    if lease.is_lost() {
        return Err(JobError::temporary(format!(
            "run {key}: lease lost before publishing"
        )));
    }
    // Output durable first: the rejects file is written before the run is marked done.
    if let Some(r) = &cfg.rejects {
        let sink = RejectsSink::open(&ctx.store, Some(r)).await?;
        if let Some(loc) = target.write_rejects(sink).await? {
            ctx.stats.add_output(loc);
        }
    }
    if ctx.shutdown.is_cancelled() {
        // Everything is staged and checkpointed; the rerun only publishes.
        return Err(JobError::stopped());
    }
    target.prepare_publish().await?;
    if lease.is_lost() {
        return Err(JobError::temporary(format!(
            "run {key}: lease lost before publishing"
        )));
    }
    let pg = |e| JobError::from(postgres::PgError::sql("publishing", e));
    let mut tx = pool.begin().await.map_err(pg)?;
    sqlx::query("SET LOCAL statement_timeout = 0")
        .execute(&mut *tx)
        .await
        .map_err(pg)?;
    // Publishers of one table take turns, so two runs that both staged an input cannot both
    // add it: under the lock the ledger is read again and what another run published meanwhile
    // (or before this run resumed) is taken out of the stage.
    sqlx::query("SELECT pg_advisory_xact_lock(hashtextextended($1, 0))")
        .bind(&ledger_scope)
        .execute(&mut *tx)
        .await
        .map_err(pg)?;
    let mut publish_inputs = loaded.clone();
    // The table the rows end up in: the stage itself after a replace's swap.
    let publish_table = if cfg.mode == Mode::Replace {
        &target.stage
    } else {
        table
    };
    let publish_oid = table_oid_in(&mut tx, publish_table).await?;
    if cfg.mode == Mode::Replace {
        // The new table holds exactly this run's inputs.
        sqlx::query("DELETE FROM etl_checkpoint WHERE scope = $1")
            .bind(&ledger_scope)
            .execute(&mut *tx)
            .await
            .map_err(pg)?;
    } else {
        let current: Vec<(String, Value)> =
            sqlx::query_as("SELECT name, state FROM etl_checkpoint WHERE scope = $1")
                .bind(&ledger_scope)
                .fetch_all(&mut *tx)
                .await
                .map_err(pg)?;
        let current: std::collections::HashMap<String, Value> = current.into_iter().collect();
        for (index, meta) in found.iter().enumerate() {
            let url = meta.location.to_string();
            if state::unchanged(
                current.get(&url),
                meta.etag.as_deref(),
                meta.size,
                publish_oid,
            ) {
                let removed = target.remove_input(&mut tx, index as u64).await?;
                if removed > 0 {
                    tracing::warn!(input = %url, rows = removed, "already published by another run; its staged rows are dropped");
                }
                publish_inputs.retain(|(u, _)| u != &url);
            }
        }
    }
    for (url, version) in &mut publish_inputs {
        version.table_oid = publish_oid;
        PgTarget::save_state(
            &mut tx,
            &ledger_scope,
            url,
            &serde_json::to_value(version).unwrap_or_default(),
        )
        .await?;
    }
    target.clear_run(&mut tx).await?;
    // The target is touched last, so its lock is held only for the swap or merge itself.
    let rows = target.publish(&mut tx).await?;
    PgTarget::save_state(
        &mut tx,
        key,
        RUN_STATE,
        &json!({"status": "done", "table": table.to_string(), "rows": rows}),
    )
    .await?;
    tx.commit()
        .await
        .map_err(|e| JobError::from(postgres::PgError::sql("publishing", e)))?;
    tracing::info!(table = %table, rows, mode = ?cfg.mode, "published");
    if cfg.mode == Mode::Replace {
        target.analyze().await;
    }
    ctx.stats.add_output(format!("postgres:{table}"));
    lease.release().await;
    Ok(Outcome::Succeeded)
}

/// Loading one input into the stage, in checkpointed transactions.
struct LoadStep<'a> {
    /// The input's checkpoint as this run found it: every commit swaps it for the next one
    /// only if nobody else advanced it meanwhile (fencing a worker whose lease silently lapsed).
    committed: Option<Value>,
    plan: &'a Plan,
    key: &'a str,
    index: u64,
    url: &'a str,
    ctx: &'a JobContext,
    pool: &'a sqlx::PgPool,
    lease: &'a etl_core::checkpoint::Lease,
}

/// How one streamed COPY ended.
enum CopyEnd {
    /// `--checkpoint-every` features are in: commit and go on.
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

impl LoadStep<'_> {
    async fn load(
        &self,
        meta: &ObjectMeta,
        st: &mut InputState,
        target: &mut Option<PgTarget>,
        total_read: &mut u64,
        total_rejected: &mut u64,
    ) -> Result<(), JobError> {
        let cfg = &self.plan.config;
        let ctx = self.ctx;
        let pg = |what: &'static str| {
            move |e: sqlx::Error| JobError::from(postgres::PgError::sql(what, e))
        };
        ctx.progress.start(self.url, meta.size);
        let mut reader = read::spawn(
            ctx.store.clone(),
            meta.clone(),
            self.plan.format,
            self.plan.read_options.clone(),
            st.next,
            Arc::new(AtomicU64::new(0)),
        );
        // The first batch decides the columns of a table this run creates.
        let mut pending = match reader.recv().await {
            Some(batch) => Some(batch?),
            None => None,
        };
        if target.is_none() {
            let Some(first) = &pending else {
                st.done = true;
                let mut conn = self.pool.acquire().await.map_err(pg("checkpoint"))?;
                PgTarget::save_state(&mut conn, self.key, self.url, &st.to_value()).await?;
                return Ok(());
            };
            *target = Some(
                PgTarget::open(
                    self.pool.clone(),
                    self.plan_table(),
                    cfg.mode,
                    cfg.key.clone(),
                    cfg.select.clone(),
                    self.key,
                    &first.records,
                )
                .await?,
            );
        }
        let Some(t) = target.as_mut() else {
            return Ok(());
        };
        let mut committed = self.committed.clone();
        let mut progress = TxProgress {
            since_checkpoint: 0,
            rejects: Vec::new(),
            last_bytes: 0,
        };
        loop {
            let mut tx = self.pool.begin().await.map_err(pg("starting a batch"))?;
            // One COPY spans a whole checkpoint's worth of reading; a server-wide
            // statement_timeout must not cut it (and make every retry fail the same way).
            sqlx::query("SET LOCAL statement_timeout = 0")
                .execute(&mut *tx)
                .await
                .map_err(pg("starting a batch"))?;
            progress.since_checkpoint = 0;
            let end = loop {
                if let Some(b) = &pending
                    && t.needs_ddl(&b.records)
                {
                    t.add_columns(&mut tx, &b.records).await?;
                    if t.needs_ddl(&b.records) {
                        // Never loop: a schema change that did not take effect is a bug to
                        // report, not a reason to try again forever.
                        return Err(JobError::bad_input(format!(
                            "{}: internal error: columns for this batch's properties could not be prepared",
                            self.url
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
                        total_read,
                        total_rejected,
                    )
                    .await?;
                match end {
                    CopyEnd::NeedsDdl(batch) => pending = Some(batch),
                    other => break other,
                }
            };
            if matches!(end, CopyEnd::LeaseLost) {
                // Another worker may own the run now: commit nothing more.
                return Err(JobError::temporary(format!(
                    "run {}: lease lost; stopped without committing",
                    self.key
                )));
            }
            t.save_rejects(&mut tx, &progress.rejects).await?;
            progress.rejects.clear();
            st.done = matches!(end, CopyEnd::InputDone);
            let next_state = st.to_value();
            let fenced = PostgresCheckpoints::compare_and_save_in(
                &mut tx,
                self.key,
                self.url,
                committed.as_ref(),
                &next_state,
            )
            .await
            .map_err(JobError::from)?;
            if !fenced {
                // Rolls back with `tx`: another worker owns this run now.
                return Err(JobError::temporary(format!(
                    "run {}: {} was checkpointed by another worker; stopping without committing",
                    self.key, self.url
                )));
            }
            committed = Some(next_state);
            tx.commit().await.map_err(pg("committing a batch"))?;
            tracing::debug!(input = self.url, next = st.next, "checkpoint");
            match end {
                CopyEnd::Full => continue,
                CopyEnd::Stopped => {
                    tracing::warn!(
                        input = self.url,
                        next = st.next,
                        "checkpoint committed; stopping"
                    );
                    return Err(JobError::stopped());
                }
                _ => return Ok(()),
            }
        }
    }

    /// Streams batches into one `COPY` until the transaction is full, the input ends, a signal
    /// arrives, or a batch needs a schema change. Postgres parses rows while the next batch is
    /// read and encoded: the statement completes only at the end.
    #[allow(clippy::too_many_arguments)]
    async fn stream_copy(
        &self,
        conn: &mut sqlx::PgConnection,
        t: &PgTarget,
        mut first: Option<read::ReadBatch>,
        reader: &mut read::InputReader,
        st: &mut InputState,
        progress: &mut TxProgress,
        total_read: &mut u64,
        total_rejected: &mut u64,
    ) -> Result<CopyEnd, JobError> {
        let cfg = &self.plan.config;
        let ctx = self.ctx;
        let lost = self.lease.lost();
        let copy_err = |e| JobError::from(postgres::PgError::sql("loading rows", e));
        let mut copy = conn.copy_in_raw(t.copy_sql()).await.map_err(copy_err)?;
        if !t.copy_header().is_empty()
            && let Err(e) = copy.send(t.copy_header()).await
        {
            let _ = copy.abort("send failed").await;
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
                            let _ = copy.abort("input error").await;
                            return Err(e);
                        }
                    }
                }
            };
            let Some(last) = batch.records.last() else {
                continue;
            };
            let next = last.ordinal + 1;
            if t.needs_ddl(&batch.records) {
                break CopyEnd::NeedsDdl(batch);
            }
            buf.clear();
            rejects.clear();
            let written = tokio::task::block_in_place(|| {
                t.encode(self.index, self.url, &batch.records, &mut buf, &mut rejects)
            });
            if !buf.is_empty()
                && let Err(e) = copy.send(buf.as_slice()).await
            {
                let _ = copy.abort("send failed").await;
                return Err(copy_err(e));
            }
            let n = batch.records.len() as u64;
            st.next = next;
            st.read += n;
            st.written += written;
            st.rejected += rejects.len() as u64;
            *total_read += n;
            *total_rejected += rejects.len() as u64;
            Stats::add(&ctx.stats.read, n);
            Stats::add(&ctx.stats.written, written);
            Stats::add(&ctx.stats.rejected, rejects.len() as u64);
            Stats::add(
                &ctx.stats.bytes_in,
                batch.bytes.saturating_sub(progress.last_bytes),
            );
            progress.last_bytes = batch.bytes;
            ctx.progress.set_bytes(batch.bytes);
            progress.rejects.append(&mut rejects);
            if state::over_limit(*total_rejected, cfg.max_rejects) {
                let _ = copy.abort("too many rejects").await;
                let last = progress
                    .rejects
                    .last()
                    .map(|r| format!("{}: {}", r.line, r.reason))
                    .unwrap_or_default();
                return Err(JobError::bad_input(format!(
                    "{}: more than {} features rejected (--max-rejects); last at line {last}",
                    self.url,
                    cfg.max_rejects.unwrap_or(0)
                )));
            }
            progress.since_checkpoint += n;
            if progress.since_checkpoint >= cfg.checkpoint_every {
                break CopyEnd::Full;
            }
        };
        if matches!(end, CopyEnd::LeaseLost) {
            let _ = copy.abort("lease lost").await;
        } else {
            if !t.copy_trailer().is_empty() {
                copy.send(t.copy_trailer()).await.map_err(copy_err)?;
            }
            copy.finish().await.map_err(copy_err)?;
        }
        Ok(end)
    }

    fn plan_table(&self) -> TableName {
        match &self.plan.target {
            Target::Postgres { table, .. } => table.clone(),
            Target::Object { .. } => TableName {
                schema: "public".into(),
                name: "unused".into(),
            },
        }
    }
}
