//! `etl-data retention`: the nightly job that deletes imports older than a limit from the
//! `imports` table together with the outputs their manifests list. In batches, each one a
//! transaction that deletes the outputs and then the rows, so a kill at any moment leaves rows
//! whose outputs may be gone already and a rerun finishes them (deleting a missing object is not
//! an error): resumable and idempotent. Rows being imported (`Running`) are never touched. A
//! scheduled run measures the age from its logical time, so a redelivered tick deletes the same
//! set.

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
}

pub struct RetentionJob;

struct Plan {
    url: String,
    table: TableName,
    cutoff: DateTime<Utc>,
    batch: i64,
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
    Ok(Plan {
        url,
        table,
        cutoff,
        batch: i64::from(config.batch),
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
        "SELECT id, result FROM {} WHERE created_at < $1::timestamptz AND status <> 'Running' \
         ORDER BY created_at, id LIMIT $2 FOR UPDATE SKIP LOCKED",
        table.quoted()
    )
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
            "SELECT id, result FROM {} WHERE created_at < $1::timestamptz AND status <> 'Running' \
             ORDER BY created_at, id LIMIT 1000",
            plan.table.quoted()
        )))
        .bind(plan.cutoff.to_rfc3339())
        .fetch_all(&pool)
        .await
        .map_err(sql_err("listing old imports"))?;
        let total: i64 = sqlx::query_scalar(AssertSqlSafe(format!(
            "SELECT count(*) FROM {} WHERE created_at < $1::timestamptz AND status <> 'Running'",
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
            for r in &rows {
                ids.push(r.get::<i64, _>("id"));
                let result: Option<serde_json::Value> = r.get("result");
                for url in result
                    .as_ref()
                    .map(imports::output_urls)
                    .unwrap_or_default()
                {
                    let loc = Location::parse(&url).map_err(|e| {
                        JobError::bad_input(format!(
                            "import {}: output {url:?} is not a location: {e}",
                            r.get::<i64, _>("id")
                        ))
                    })?;
                    ctx.store.delete(&loc).await?;
                    objects_deleted += 1;
                }
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
