//! `--sql`: tiling the rows of a PostGIS query. The query's first geometry (or geography)
//! column is the geometry, transformed to WGS 84 when it has another SRID; every other column
//! is an attribute (`to_jsonb` of the row), and an integer `id` column becomes the feature id.
//! Rows stream from a server-side cursor: the result set is never held in memory.
//! The geometry's `ST_AsBinary` is read by `etl_geo::read_ewkb_with_repairs`: Z and M dropped,
//! curves made straight, a row whose geometry is the empty point or unreadable rejected.

use etl_core::JobError;
use etl_core::postgres::{self, quote_ident};
use etl_geo::{Feature, FeatureId, Record, Rejection};
use futures::TryStreamExt;
use serde_json::Value;
use sqlx::{AssertSqlSafe, Column, Executor, Row, SqlSafeStr, TypeInfo};
use tokio::sync::mpsc;

use crate::job::Msg;

fn sql_err(what: &str, e: sqlx::Error) -> JobError {
    match &e {
        sqlx::Error::Database(db) => {
            let code = db.code().map(|c| c.to_string()).unwrap_or_default();
            postgres::classify_sqlstate(&code, format!("{what}: {}", db.message()))
        }
        sqlx::Error::Io(_) | sqlx::Error::PoolTimedOut | sqlx::Error::PoolClosed => {
            JobError::unavailable(format!("{what}: {e}"))
        }
        _ => JobError::temporary(format!("{what}: {e}")),
    }
}

/// Streams the query's rows as records of `layer` into `tx`.
pub async fn stream(
    url: &str,
    sql: &str,
    layer: usize,
    input: u64,
    tx: mpsc::Sender<Result<Msg, JobError>>,
) -> Result<(), JobError> {
    let pool = postgres::connect(url, 1).await?;
    let sql = sql.trim().trim_end_matches(';');
    let probe = format!("SELECT * FROM ({sql}) AS q LIMIT 0");
    let described = pool
        .describe(AssertSqlSafe(probe).into_sql_str())
        .await
        .map_err(|e| sql_err("--sql", e))?;
    let geom_col = described
        .columns()
        .iter()
        .find(|c| {
            matches!(
                c.type_info().name(),
                "geometry" | "geography" | "GEOMETRY" | "GEOGRAPHY"
            )
        })
        .map(|c| c.name().to_owned())
        .ok_or_else(|| {
            JobError::config("--sql: the query returns no geometry or geography column")
        })?;
    let g = quote_ident(&geom_col);
    let lit = format!("'{}'", geom_col.replace('\'', "''"));
    let query = format!(
        "SELECT ST_AsBinary(CASE WHEN ST_SRID(q.{g}::geometry) IN (0, 4326) THEN q.{g}::geometry \
         ELSE ST_Transform(q.{g}::geometry, 4326) END) AS geom, to_jsonb(q) - {lit} AS props \
         FROM ({sql}) AS q"
    );
    let mut rows = sqlx::query(AssertSqlSafe(query)).fetch(&pool);
    let mut batch = Vec::with_capacity(etl_sources::read::READ_BATCH);
    let mut ordinal = 0u64;
    while let Some(row) = rows.try_next().await.map_err(|e| sql_err("--sql", e))? {
        ordinal += 1;
        let wkb: Option<Vec<u8>> = row.try_get(0).map_err(|e| sql_err("--sql", e))?;
        let props: Option<Value> = row.try_get(1).map_err(|e| sql_err("--sql", e))?;
        let mut properties = match props {
            Some(Value::Object(m)) => m,
            _ => serde_json::Map::new(),
        };
        let id = match properties.get("id").and_then(Value::as_i64) {
            Some(i) if i >= 0 => {
                properties.remove("id");
                Some(FeatureId::Int(i))
            }
            _ => None,
        };
        // A ring PostGIS sent unclosed (it stores none) would be closed and counted.
        let mut repairs = etl_geo::Repairs::NONE;
        let feature = match wkb
            .as_deref()
            .map(|b| etl_geo::read_ewkb_with_repairs(b, &mut repairs))
        {
            None => Ok(Feature {
                id,
                geometry: None,
                properties,
            }),
            Some(Ok((_, geometry))) => Ok(Feature {
                id,
                geometry: Some(geometry),
                properties,
            }),
            Some(Err(e)) => Err(Rejection::new(format!("row {ordinal}: bad geometry: {e}"))),
        };
        batch.push(Record {
            line: ordinal,
            ordinal,
            layer: 0,
            feature,
            repairs,
        });
        if batch.len() >= etl_sources::read::READ_BATCH {
            let records = std::mem::take(&mut batch);
            if tx
                .send(Ok(Msg {
                    layer,
                    input,
                    url: "--sql".into(),
                    records,
                }))
                .await
                .is_err()
            {
                return Ok(());
            }
        }
    }
    if !batch.is_empty() {
        let _ = tx
            .send(Ok(Msg {
                layer,
                input,
                url: "--sql".into(),
                records: batch,
            }))
            .await;
    }
    Ok(())
}
