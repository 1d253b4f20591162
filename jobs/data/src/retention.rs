//! `etl-data retention`: the nightly job that deletes imports older than a limit from the
//! `imports` table together with the outputs their manifests list. In batches, each one a
//! transaction that deletes the outputs and then the rows, so a kill at any moment leaves rows
//! whose outputs may be gone already and a rerun finishes them (deleting a missing object is not
//! an error): resumable and idempotent. Rows being imported (`Running`) are never touched. A
//! scheduled run measures the age from its logical time, so a redelivered tick deletes the same
//! set.
//!
//! What it deletes is limited twice over. Only objects under `--output-prefix`: a row that
//! lists anything else stops the run with a configuration error before anything of its batch
//! is deleted. And never an object that a newer row lists or that the current manifest of its
//! output names (re-imports of one key share the manifest `NAME.json`, and a superseded version
//! stays while the manifest lists it as superseded); a manifest itself goes only when it is
//! still this row's version, and then by compare-and-swap, so a concurrent import wins.

use std::time::Duration;

use chrono::{DateTime, Utc};
use etl_core::postgres::{self, PgError, TableName};
use etl_core::store::Location;
use etl_core::{Job, JobContext, JobError, Outcome, imports};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use sqlx::{AssertSqlSafe, Row};

/// Delete imports older than a limit, with their outputs (the nightly retention job).
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema, clap::Args)]
pub struct RetentionConfig {
    /// Age limit: imports created longer ago than this are deleted (e.g. 30d, 12h).
    #[arg(long, env = "ETL_OLDER_THAN")]
    pub older_than: String,

    /// The database (postgres://…; default DATABASE_URL or the ECS secret in ETL_DATABASE_SECRET).
    #[arg(long, env = "ETL_DATABASE")]
    pub database: Option<String>,

    /// The imports table (NAME or SCHEMA.NAME); `imports` is created by the migrations when missing.
    #[arg(long, env = "ETL_IMPORTS_TABLE", default_value = "imports")]
    pub table: String,

    /// Imports per batch (one transaction each).
    #[arg(long, env = "ETL_RETENTION_BATCH", default_value_t = 100)]
    pub batch: u32,

    /// Where import outputs live (a directory or s3://bucket/prefix/; repeatable, or
    /// comma-separated in the env var). Retention deletes nothing outside these; a row listing
    /// anything else is a configuration error.
    #[arg(
        long = "output-prefix",
        env = "ETL_OUTPUT_PREFIX",
        value_delimiter = ',',
        required = true
    )]
    pub output_prefix: Vec<String>,
}

pub struct RetentionJob;

struct Plan {
    url: String,
    table: TableName,
    cutoff: DateTime<Utc>,
    batch: i64,
    prefixes: Vec<Location>,
}

fn plan(config: &RetentionConfig, ctx: &JobContext) -> Result<Plan, JobError> {
    let age: Duration = humantime::parse_duration(&config.older_than)
        .map_err(|e| JobError::usage(format!("--older-than {:?}: {e}", config.older_than)))?;
    let age = chrono::Duration::from_std(age).map_err(|_| {
        JobError::usage(format!("--older-than {:?} is too large", config.older_than))
    })?;
    let now = ctx.settings.logical_time.unwrap_or_else(Utc::now);
    let cutoff = now.checked_sub_signed(age).ok_or_else(|| {
        JobError::usage(format!("--older-than {:?} is too large", config.older_than))
    })?;
    if config.batch == 0 {
        return Err(JobError::usage("--batch must be at least 1"));
    }
    let table = TableName::parse(&config.table)
        .map_err(|e| JobError::usage(format!("--table {:?}: {e}", config.table)))?;
    let url = postgres::resolve_url(config.database.as_deref(), |k| std::env::var(k).ok())?;
    let prefixes = config
        .output_prefix
        .iter()
        .map(|p| p.trim())
        .filter(|p| !p.is_empty())
        .map(|p| {
            let loc = Location::parse(p)
                .map_err(|e| JobError::usage(format!("--output-prefix {p:?}: {e}")))?;
            Ok(folder(loc))
        })
        .collect::<Result<Vec<_>, JobError>>()?;
    if prefixes.is_empty() {
        return Err(JobError::usage(
            "--output-prefix is required: where import outputs live",
        ));
    }
    Ok(Plan {
        url,
        table,
        cutoff,
        batch: i64::from(config.batch),
        prefixes,
    })
}

fn sql_err(context: &str) -> impl Fn(sqlx::Error) -> JobError + '_ {
    move |e| JobError::from(PgError::sql(context, e))
}

async fn connect(plan: &Plan) -> Result<sqlx::PgPool, JobError> {
    let pool = postgres::connect(&plan.url, 2).await?;
    // The default table is the deployment's queue: make sure it exists (a fresh database has
    // nothing to delete, which is not an error).
    if plan.table.quoted() == postgres::quote_ident("imports") {
        imports::migrate(&pool)
            .await
            .map_err(|e| JobError::config(format!("migrating the imports table: {e}")))?;
    }
    Ok(pool)
}

/// The rows a batch takes: old enough, not being imported, oldest first.
fn select_sql(table: &TableName) -> String {
    format!(
        "SELECT id, result FROM {} WHERE created_at < $1::timestamptz AND status IN ('Success', 'Fail') \
         ORDER BY created_at, id LIMIT $2 FOR UPDATE SKIP LOCKED",
        table.quoted()
    )
}

/// A location taken as a folder: S3 keys end with `/`.
fn folder(loc: Location) -> Location {
    match loc {
        Location::S3 { bucket, key } if !key.is_empty() && !key.ends_with('/') => Location::S3 {
            bucket,
            key: format!("{key}/"),
        },
        other => other,
    }
}

/// Whether `loc` lies below the folder `prefix` (no `..` climbing out of it).
fn under(prefix: &Location, loc: &Location) -> bool {
    match (prefix, loc) {
        (
            Location::S3 {
                bucket: pb,
                key: pk,
            },
            Location::S3 { bucket, key },
        ) => {
            pb == bucket
                && key.starts_with(pk.as_str())
                && !key.split('/').any(|s| s == ".." || s == ".")
        }
        (Location::File(p), Location::File(f)) => {
            !f.components()
                .any(|c| matches!(c, std::path::Component::ParentDir))
                && f.starts_with(p)
                && f != p
        }
        _ => false,
    }
}

/// Pure: whether the current manifest `current` (of the output `manifest_url`) still needs
/// `url` — it names it as an output or as a superseded version not yet past its `until`.
pub fn manifest_needs(current: &serde_json::Value, url: &str, now: DateTime<Utc>) -> bool {
    let file = url.rsplit('/').next().unwrap_or(url);
    let listed = |key: &str, live_only: bool| {
        current
            .get(key)
            .and_then(|v| v.as_array())
            .into_iter()
            .flatten()
            .any(|o| {
                let same = o.get("url").and_then(|u| u.as_str()) == Some(url)
                    || o.get("file").and_then(|f| f.as_str()) == Some(file);
                let live = !live_only
                    || o.get("until")
                        .and_then(|u| u.as_str())
                        .and_then(|u| DateTime::parse_from_rfc3339(u).ok())
                        .is_none_or(|u| u > now);
                same && live
            })
    };
    listed("outputs", false) || listed("superseded", true)
}

/// Deletes what one old row lists and nothing anyone still needs; returns how many objects.
async fn delete_outputs(
    ctx: &JobContext,
    tx: &mut sqlx::PgConnection,
    table: &TableName,
    prefixes: &[Location],
    batch: &[i64],
    id: i64,
    result: &serde_json::Value,
) -> Result<u64, JobError> {
    let now = Utc::now();
    let urls = imports::output_urls(result);
    // The row's manifest (the shared commit point of its output), read once.
    // An imported row lists it among its outputs; a row that found the same version already
    // there (unchanged) names it as `manifest`.
    let manifest_url = result
        .get("outputs")
        .and_then(|o| o.as_array())
        .into_iter()
        .flatten()
        .find(|o| o.get("kind").and_then(|k| k.as_str()) == Some("manifest"))
        .and_then(|o| o.get("url").and_then(|u| u.as_str()))
        .or_else(|| result.get("manifest").and_then(|m| m.as_str()))
        .map(str::to_owned);
    let mut urls = urls;
    if let Some(m) = &manifest_url
        && !urls.contains(m)
    {
        urls.push(m.clone());
    }
    let current = match &manifest_url {
        Some(u) => {
            let loc = Location::parse(u)
                .map_err(|e| JobError::config(format!("import {id}: {u}: {e}")))?;
            match ctx.store.get(&loc).await? {
                Some((bytes, etag)) => {
                    let doc: serde_json::Value = serde_json::from_slice(&bytes).map_err(|e| {
                        JobError::config(format!(
                            "import {id}: the manifest {u} is not JSON ({e}); nothing of it was deleted"
                        ))
                    })?;
                    Some((doc, etag))
                }
                None => None,
            }
        }
        None => None,
    };
    let newer_sql = format!(
        "SELECT EXISTS (SELECT 1 FROM {} WHERE id <> ALL($1) AND (result->'outputs' @> \
         jsonb_build_array(jsonb_build_object('url', $2::text)) OR result->'outputs' ? $2::text \
         OR result->>'manifest' = $2::text))",
        table.quoted()
    );
    let mut deleted = 0u64;
    for url in urls {
        let referenced: bool = sqlx::query_scalar(AssertSqlSafe(newer_sql.clone()))
            .bind(batch)
            .bind(&url)
            .fetch_one(&mut *tx)
            .await
            .map_err(sql_err("looking for newer imports of an output"))?;
        if referenced {
            tracing::info!(import = id, object = %url, "kept: a newer import lists it");
            continue;
        }
        let loc = Location::parse(&url)
            .map_err(|e| JobError::config(format!("import {id}: {url}: {e}")))?;
        if Some(&url) == manifest_url.as_ref() {
            if let Some((doc, etag)) = &current {
                deleted += delete_manifest(ctx, prefixes, id, result, &loc, doc, etag).await?;
            }
            continue;
        }
        if let Some((doc, _)) = &current
            && manifest_needs(doc, &url, now)
        {
            tracing::info!(import = id, object = %url, "kept: the current manifest names it");
            continue;
        }
        ctx.store.delete(&loc).await?;
        deleted += 1;
    }
    Ok(deleted)
}

/// The manifest of an old row's output, when no newer row lists it: it goes only while it is
/// still that row's version (both versioned and equal), under the same lease imports take to
/// swap it and by compare-and-swap, and then the objects it still named go too (no later
/// manifest can name them: versions are never reused). Returns how many objects went.
async fn delete_manifest(
    ctx: &JobContext,
    prefixes: &[Location],
    id: i64,
    result: &serde_json::Value,
    loc: &Location,
    doc: &serde_json::Value,
    etag: &str,
) -> Result<u64, JobError> {
    let version = result.get("version").and_then(|v| v.as_str());
    if version.is_none() || doc.get("version").and_then(|v| v.as_str()) != version {
        tracing::info!(import = id, object = %loc, "kept: the manifest is another import's version");
        return Ok(0);
    }
    let (url, scope) = imports::manifest_lease(loc);
    let locks = etl_core::checkpoint::Checkpoints::open(&url, &ctx.store, None)
        .await
        .map_err(JobError::from)?;
    let owner = format!("{}/retention", ctx.settings.owner);
    let lease = match locks
        .acquire(&scope, &owner, ctx.settings.lease_ttl)
        .await
        .map_err(JobError::from)?
    {
        Ok(lease) => lease,
        Err(holder) => {
            return Err(JobError::temporary(format!(
                "import {id}: {loc} is being published by {}; a rerun finishes",
                holder.owner
            )));
        }
    };
    let result = match ctx.store.delete_if_match(loc, etag).await {
        Ok(()) => Ok(true),
        Err(etl_core::store::StoreError::PreconditionFailed(_)) => {
            tracing::info!(import = id, object = %loc, "kept: the manifest changed meanwhile");
            Ok(false)
        }
        Err(e) => Err(JobError::from(e)),
    };
    lease.release().await;
    if !result? {
        return Ok(0);
    }
    let mut deleted = 1;
    let mut named: Vec<String> = Vec::new();
    for key in ["outputs", "superseded"] {
        for o in doc
            .get(key)
            .and_then(|v| v.as_array())
            .into_iter()
            .flatten()
        {
            if let Some(f) = o.get("file").and_then(|f| f.as_str()) {
                named.push(f.to_owned());
            }
        }
    }
    for file in &named {
        if file.contains(['/', '\\']) || file.starts_with('.') {
            continue;
        }
        let obj = loc.parent().join(file);
        if prefixes.iter().any(|p| under(p, &obj)) {
            ctx.store.delete(&obj).await?;
            deleted += 1;
        }
    }
    Ok(deleted)
}

impl Job for RetentionJob {
    type Config = RetentionConfig;
    const NAME: &'static str = "etl-data-retention";
    const ABOUT: &'static str =
        "Delete imports older than a limit from the imports table, with their outputs";

    async fn dry_run(
        config: RetentionConfig,
        ctx: JobContext,
    ) -> Result<serde_json::Value, JobError> {
        let plan = plan(&config, &ctx)?;
        let pool = connect(&plan).await?;
        let rows = sqlx::query(AssertSqlSafe(format!(
            "SELECT id, result FROM {} WHERE created_at < $1::timestamptz AND status IN ('Success', 'Fail') \
             ORDER BY created_at, id LIMIT 1000",
            plan.table.quoted()
        )))
        .bind(plan.cutoff.to_rfc3339())
        .fetch_all(&pool)
        .await
        .map_err(sql_err("listing old imports"))?;
        let total: i64 = sqlx::query_scalar(AssertSqlSafe(format!(
            "SELECT count(*) FROM {} WHERE created_at < $1::timestamptz AND status IN ('Success', 'Fail')",
            plan.table.quoted()
        )))
        .bind(plan.cutoff.to_rfc3339())
        .fetch_one(&pool)
        .await
        .map_err(sql_err("counting old imports"))?;
        let listed: Vec<serde_json::Value> = rows
            .iter()
            .map(|r| {
                let id: i64 = r.get("id");
                let result: Option<serde_json::Value> = r.get("result");
                serde_json::json!({
                    "id": id,
                    "outputs": result.as_ref().map(imports::output_urls).unwrap_or_default(),
                })
            })
            .collect();
        Ok(serde_json::json!({
            "table": plan.table.quoted(),
            "cutoff": plan.cutoff.to_rfc3339(),
            "imports": total,
            "listed": listed,
        }))
    }

    async fn run(config: RetentionConfig, ctx: JobContext) -> Result<Outcome, JobError> {
        let plan = plan(&config, &ctx)?;
        let pool = connect(&plan).await?;
        tracing::info!(table = %plan.table.quoted(), cutoff = %plan.cutoff.to_rfc3339(), "deleting old imports");
        let select = select_sql(&plan.table);
        let delete = format!("DELETE FROM {} WHERE id = ANY($1)", plan.table.quoted());
        let (mut rows_deleted, mut objects_deleted) = (0u64, 0u64);
        loop {
            if ctx.shutdown.is_cancelled() {
                return Err(JobError::stopped());
            }
            let mut tx = pool.begin().await.map_err(sql_err("starting a batch"))?;
            let rows = sqlx::query(AssertSqlSafe(select.clone()))
                .bind(plan.cutoff.to_rfc3339())
                .bind(plan.batch)
                .fetch_all(&mut *tx)
                .await
                .map_err(sql_err("selecting old imports"))?;
            if rows.is_empty() {
                break;
            }
            let mut ids = Vec::with_capacity(rows.len());
            let mut doomed: Vec<(i64, Option<serde_json::Value>)> = Vec::new();
            for r in &rows {
                let id = r.get::<i64, _>("id");
                ids.push(id);
                doomed.push((id, r.get("result")));
            }
            // Every listed object is checked against the prefixes before any is deleted.
            for (id, result) in &doomed {
                for url in result
                    .as_ref()
                    .map(|r| {
                        let mut urls = imports::output_urls(r);
                        urls.extend(
                            r.get("manifest")
                                .and_then(|m| m.as_str())
                                .map(str::to_owned),
                        );
                        urls
                    })
                    .unwrap_or_default()
                {
                    let loc = Location::parse(&url).map_err(|e| {
                        JobError::config(format!("import {id}: output {url:?} is not a location: {e}; nothing of this batch was deleted"))
                    })?;
                    if !plan.prefixes.iter().any(|p| under(p, &loc)) {
                        return Err(JobError::config(format!(
                            "import {id}: output {url} is outside --output-prefix; nothing of this batch was deleted"
                        )));
                    }
                }
            }
            for (id, result) in &doomed {
                let Some(result) = result else { continue };
                objects_deleted += delete_outputs(
                    &ctx,
                    &mut tx,
                    &plan.table,
                    &plan.prefixes,
                    &ids,
                    *id,
                    result,
                )
                .await?;
            }
            sqlx::query(AssertSqlSafe(delete.clone()))
                .bind(&ids)
                .execute(&mut *tx)
                .await
                .map_err(sql_err("deleting old imports"))?;
            tx.commit().await.map_err(sql_err("committing a batch"))?;
            rows_deleted += ids.len() as u64;
            etl_core::metrics::Stats::add(&ctx.stats.read, ids.len() as u64);
            etl_core::metrics::Stats::add(&ctx.stats.written, ids.len() as u64);
            tracing::info!(
                imports = ids.len(),
                total = rows_deleted,
                objects = objects_deleted,
                "batch deleted"
            );
        }
        tracing::info!(
            imports = rows_deleted,
            objects = objects_deleted,
            "retention done"
        );
        Ok(if rows_deleted == 0 {
            Outcome::Skipped
        } else {
            Outcome::Succeeded
        })
    }
}
