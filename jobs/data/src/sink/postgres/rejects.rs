//! Rejected features of a run: kept in `etl_reject` in the batch transactions (so they are
//! exactly once too), written to `--rejects` at the end, cleared with the run's bookkeeping.

use etl_core::JobError;
use sqlx::{PgConnection, PgPool};

use super::PgTarget;
use super::schema::sql_err;
use crate::rejects::{Reject, RejectsSink};

pub(super) const REJECT_TABLE: &str = r#"
CREATE TABLE IF NOT EXISTS etl_reject (
    run_key text NOT NULL,
    input   text NOT NULL,
    line    bigint NOT NULL,
    ordinal bigint NOT NULL,
    reason  text NOT NULL
);
CREATE INDEX IF NOT EXISTS etl_reject_run_key_idx ON etl_reject (run_key);
"#;

/// Creates `etl_reject` if missing (concurrent first runs take turns).
pub async fn ensure_reject_table(pool: &sqlx::PgPool) -> Result<(), JobError> {
    let mut tx = pool.begin().await.map_err(sql_err("creating etl_reject"))?;
    sqlx::query("SELECT pg_advisory_xact_lock($1)")
        .bind(super::DDL_LOCK)
        .execute(&mut *tx)
        .await
        .map_err(sql_err("creating etl_reject"))?;
    sqlx::raw_sql(REJECT_TABLE)
        .execute(&mut *tx)
        .await
        .map_err(sql_err("creating etl_reject"))?;
    tx.commit().await.map_err(sql_err("creating etl_reject"))
}

/// The run's bookkeeping, removed in its final transaction: rejects and input checkpoints
/// (the run's own `_run` state stays, to say it is done).
pub async fn clear_run(conn: &mut PgConnection, run_key: &str) -> Result<(), JobError> {
    sqlx::query("DELETE FROM etl_reject WHERE run_key = $1")
        .bind(run_key)
        .execute(&mut *conn)
        .await
        .map_err(sql_err("clearing rejects"))?;
    sqlx::query("DELETE FROM etl_checkpoint WHERE scope = $1 AND name <> '_run'")
        .bind(run_key)
        .execute(&mut *conn)
        .await
        .map_err(sql_err("clearing the checkpoint"))?;
    Ok(())
}

/// Forgets the rejects a run recorded for one input (its progress there no longer counts).
pub async fn clear_input_rejects(
    conn: &mut PgConnection,
    run_key: &str,
    input: &str,
) -> Result<(), JobError> {
    sqlx::query("DELETE FROM etl_reject WHERE run_key = $1 AND input = $2")
        .bind(run_key)
        .bind(input)
        .execute(&mut *conn)
        .await
        .map_err(sql_err("clearing rejects"))?;
    Ok(())
}

impl PgTarget {
    /// Records rejects in the run's transaction, so they survive a resume exactly once too.
    pub async fn save_rejects(
        &self,
        conn: &mut PgConnection,
        rejects: &[Reject],
    ) -> Result<(), JobError> {
        if rejects.is_empty() {
            return Ok(());
        }
        let inputs: Vec<&str> = rejects.iter().map(|r| r.input.as_str()).collect();
        let lines: Vec<i64> = rejects.iter().map(|r| r.line as i64).collect();
        let ordinals: Vec<i64> = rejects.iter().map(|r| r.ordinal as i64).collect();
        let reasons: Vec<&str> = rejects.iter().map(|r| r.reason.as_str()).collect();
        sqlx::query(
            "INSERT INTO etl_reject (run_key, input, line, ordinal, reason) \
             SELECT $1, * FROM unnest($2::text[], $3::bigint[], $4::bigint[], $5::text[])",
        )
        .bind(&self.run_key)
        .bind(&inputs)
        .bind(&lines)
        .bind(&ordinals)
        .bind(&reasons)
        .execute(conn)
        .await
        .map_err(sql_err("recording rejects"))?;
        Ok(())
    }
}

/// Streams every reject of this run, in input order, into `sink` and commits it, a page at
/// a time (memory stays flat whatever the count). Returns the rejects object's location.
pub async fn write_rejects(
    pool: &PgPool,
    run_key: &str,
    mut sink: RejectsSink,
) -> Result<Option<String>, JobError> {
    const PAGE: i64 = 10_000;
    let mut after: (String, i64) = (String::new(), -1);
    loop {
        let rows: Vec<(String, i64, i64, String)> = sqlx::query_as(
            "SELECT input, line, ordinal, reason FROM etl_reject \
             WHERE run_key = $1 AND (input, ordinal) > ($2, $3) \
             ORDER BY input, ordinal LIMIT $4",
        )
        .bind(run_key)
        .bind(&after.0)
        .bind(after.1)
        .bind(PAGE)
        .fetch_all(pool)
        .await
        .map_err(sql_err("reading rejects"))?;
        let Some(last) = rows.last() else { break };
        after = (last.0.clone(), last.2);
        let full = rows.len() as i64 == PAGE;
        // The sink may block on an S3 part upload: write on a blocking thread.
        sink = tokio::task::spawn_blocking(move || -> Result<RejectsSink, JobError> {
            for (input, line, ordinal, reason) in rows {
                sink.push(&Reject {
                    input,
                    line: line.max(0) as u64,
                    ordinal: ordinal.max(0) as u64,
                    reason,
                })?;
            }
            Ok(sink)
        })
        .await
        .map_err(|e| JobError::temporary(format!("writing rejects: {e}")))??;
        if !full {
            break;
        }
    }
    tokio::task::spawn_blocking(move || sink.commit())
        .await
        .map_err(|e| JobError::temporary(format!("writing rejects: {e}")))?
}
