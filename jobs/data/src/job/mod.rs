//! The etl-data job: expands inputs, derives the run key, takes the lease, and drives one of the
//! two sinks (PostGIS in [`postgres`] and [`load`], files and S3 in [`crate::sink::object`]).

mod load;
mod postgres;

use std::time::Duration;

use etl_core::checkpoint::Checkpoints;
use etl_core::postgres::{self as pg, TableName};
use etl_core::runkey::run_key;
use etl_core::store::{Location, ObjectMeta};
use etl_core::{Job, JobContext, JobError, Outcome, Profile};
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

use crate::config::{DataConfig, Mode, OutputTarget, redact_url};
use crate::inputs;
use crate::rejects::RejectsSink;
use crate::sink::object::{self, ObjectFormat, ObjectJob};
use crate::sink::postgres::{Limits, LockPolicy};
use crate::state::{self, RUN_STATE};

pub struct DataJob;

/// A config checked for consistency, with its parts parsed.
struct Plan {
    config: DataConfig,
    source: etl_sources::Source,
    shaping: etl_sources::read::Shaping,
    target: Target,
}

enum Target {
    Postgres {
        url: String,
        table: TableName,
        limits: Limits,
    },
    Object {
        location: Location,
        format: ObjectFormat,
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
    let source = config.input_args.source(&config.layer)?;
    if config.checkpoint_every == 0 {
        return Err(JobError::usage("--checkpoint-every must be at least 1"));
    }
    let t_srs = config.t_srs_code().map_err(JobError::usage)?;
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
            let url =
                pg::resolve_url(Some(&url), |k| std::env::var(k).ok()).map_err(JobError::from)?;
            let timeout = humantime::parse_duration(&config.lock_timeout).map_err(|e| {
                JobError::usage(format!("--lock-timeout {:?}: {e}", config.lock_timeout))
            })?;
            if timeout < Duration::from_millis(1) || config.lock_retries == 0 {
                return Err(JobError::usage(
                    "--lock-timeout must be at least 1ms and --lock-retries at least 1",
                ));
            }
            let limits = Limits {
                max_new_columns: config.max_new_columns,
                lock: LockPolicy {
                    timeout,
                    tries: config.lock_retries,
                },
            };
            Target::Postgres { url, table, limits }
        }
        OutputTarget::Object { url } => {
            if config.table.is_some() || config.mode != Mode::Append || config.key.is_some() {
                return Err(JobError::usage(
                    "--table, --mode and --key apply to postgres:// outputs only",
                ));
            }
            if t_srs.is_some() {
                return Err(JobError::usage(
                    "--t-srs applies to postgres:// outputs only (GeoJSON is WGS 84)",
                ));
            }
            let location = Location::parse(&url).map_err(JobError::from)?;
            let format = ObjectFormat::from_path(&url).ok_or_else(|| {
                JobError::usage(format!(
                    "{url}: unknown output extension (use .geojsonl, .ndjson, .geojson or .parquet)"
                ))
            })?;
            Target::Object { location, format }
        }
    };
    let filter = config
        .where_
        .as_deref()
        .map(|text| {
            etl_geo::filter::Filter::parse(text)
                .map(std::sync::Arc::new)
                .map_err(|e| JobError::usage(format!("--where {text:?}: {e}")))
        })
        .transpose()?;
    let shaping = etl_sources::read::Shaping {
        limit: config.limit,
        promote_to_multi: config.promote_to_multi,
        filter,
        make_valid: config.make_valid,
    };
    Ok(Plan {
        config,
        source,
        shaping,
        target,
    })
}

/// The run key: job, config identity, this shard of the array, and either the versions of the
/// inputs or, for a scheduled run, its logical time: a tick is one run whatever the inputs
/// hold by the time it is delivered (again).
fn key_for(
    ctx: &JobContext,
    config: &DataConfig,
    found: &[ObjectMeta],
) -> Result<String, JobError> {
    let mut identity = config.identity().map_err(JobError::internal)?;
    if let (Some(obj), Some((i, n))) = (identity.as_object_mut(), ctx.batch.shard()) {
        obj.insert("shard".into(), json!([i, n]));
    }
    match (&ctx.settings.logical_time, identity.as_object_mut()) {
        (Some(t), Some(obj)) => {
            obj.insert(
                "logical_time".into(),
                json!(etl_core::schedule::canonical(t)),
            );
            Ok(run_key(DataJob::NAME, &identity, &[]))
        }
        _ => Ok(run_key(DataJob::NAME, &identity, &inputs::versions(found))),
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
        let key = key_for(&ctx, &plan.config, &found)?;
        ctx.stats.set_run_key(&key);
        let mut out = json!({
            "run_key": key,
            "inputs": found.iter().map(|m| json!({"url": m.location.to_string(), "size": m.size, "etag": m.etag})).collect::<Vec<_>>(),
            "output": redact_url(&plan.config.output),
            "mode": plan.config.mode,
        });
        match &plan.target {
            Target::Postgres { url, table, .. } => {
                let pool = pg::connect(url, 1).await.map_err(JobError::from)?;
                let postgis: Option<String> = sqlx::query_scalar(
                    "SELECT extversion FROM pg_extension WHERE extname = 'postgis'",
                )
                .fetch_optional(&pool)
                .await
                .map_err(|e| JobError::from(pg::PgError::sql("checking PostGIS", e)))?;
                let Some(version) = postgis else {
                    return Err(JobError::config("the database has no postgis extension"));
                };
                let exists: bool = sqlx::query_scalar("SELECT to_regclass($1) IS NOT NULL")
                    .bind(table.quoted())
                    .fetch_one(&pool)
                    .await
                    .map_err(|e| JobError::from(pg::PgError::sql("checking the table", e)))?;
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
        let key = key_for(&ctx, &plan.config, &found)?;
        ctx.stats.set_run_key(&key);
        tracing::info!(run_key = %key, inputs = found.len(), output = %redact_url(&plan.config.output), "run");
        match &plan.target {
            Target::Postgres { url, table, limits } => {
                postgres::run(&plan, url, table, *limits, found, &key, &ctx).await
            }
            Target::Object { location, format } => {
                run_object(&plan, location, *format, found, &key, &ctx).await
            }
        }
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
    format: ObjectFormat,
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
    if state::run_done(key, states.get(RUN_STATE))? {
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
        source: plan.source.clone(),
        shaping: plan.shaping.clone(),
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
