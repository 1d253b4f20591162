//! Appending into a small existing table by copy and swap ([`Strategy::Swap`]).
//!
//! Rows that go straight into a table with indexes are indexed one by one, and with a GIST
//! index that costs more than the COPY itself (a bare COPY of 1M points into an indexed table
//! takes 1.3–1.6× what loading and indexing a new table does). When the table is small beside
//! the input, it is cheaper to do what `replace` does: the run's rows go into a stage shaped
//! like the table (`CREATE TABLE … (LIKE …)`, new properties as new columns at the end), the
//! stage gets the table's indexes built once, and the final transaction copies the table's own
//! rows in, carries over privileges, comments and row-level security, and swaps the stage into
//! place under the table's name and index names.
//!
//! Only a plain table can be swapped without losing something: one this role owns, whose
//! indexes are single-column ones on plain columns, and that nothing else hangs off or depends
//! on (triggers, rules, views, foreign keys, defaults, owned sequences, statistics objects,
//! publications, inheritance). [`shape`] says why not otherwise, and the run appends directly.
//! The final transaction checks again under the table's lock, and appends the staged rows into
//! the table instead of swapping when anything changed meanwhile — when another run has an
//! unpublished direct load in the table (its undo finds its rows by the transactions that
//! inserted them, which a copy would change), or when the swap itself fails (a dependency the
//! check did not know). Both ways publish the same rows exactly once; only the speed differs.

use etl_core::JobError;
use etl_core::postgres::{TableName, quote_ident};
use sqlx::{AssertSqlSafe, PgConnection, PgPool};

mod shape;

use shape::{IndexShape, Shape, shape};

use super::PgTarget;
use super::carry::carry_over;
use super::lock::{Attempt, LockMode, lock_table};
use super::schema::{TableColumn, sql_err, table_columns};
use crate::config::AppendPath;
use crate::state::LoadedVersion;

/// The comment that marks a run's stage as a swap stage, so a resumed run goes on with it.
pub(super) const STAGE_COMMENT: &str = "etl-data: rows of an append by swap";

/// `auto` swaps when the table (heap and TOAST) is at most this share of the input's bytes: copying and
/// indexing the old rows again then costs less than indexing the new ones one by one.
const AUTO_TABLE_SHARE: u64 = 4;

/// Whether a run appending `input_bytes` into the existing `table` goes by swap, by the user's
/// `--append-path` and the table; says why in the log either way.
pub async fn choose_swap(
    pool: &PgPool,
    table: &TableName,
    path: AppendPath,
    input_bytes: u64,
) -> Result<bool, JobError> {
    if path == AppendPath::Direct {
        return Ok(false);
    }
    let mut conn = pool.acquire().await.map_err(sql_err("reading the table"))?;
    if path == AppendPath::Auto {
        // With TOAST: a table of large polygons is not small for its few heap pages.
        let heap: i64 = sqlx::query_scalar("SELECT pg_table_size(to_regclass($1))")
            .bind(table.quoted())
            .fetch_one(&mut *conn)
            .await
            .map_err(sql_err("reading the table's size"))?;
        let heap = heap.max(0) as u64;
        if heap.saturating_mul(AUTO_TABLE_SHARE) > input_bytes {
            tracing::info!(table = %table, table_bytes = heap, input_bytes, "appending directly: the table is not small beside the input");
            return Ok(false);
        }
    }
    match shape(&mut conn, table).await? {
        Shape::Plain(_) => {
            tracing::info!(table = %table, "appending by swap: the rows are staged, indexed once and swapped in with the table's own");
            Ok(true)
        }
        Shape::Not(why) => {
            tracing::info!(table = %table, reason = %why, "appending directly: a copy of the table would lose something");
            Ok(false)
        }
    }
}

/// Whether a run's existing stage is a swap stage (a resumed run goes on with it).
pub async fn is_swap_stage(pool: &PgPool, stage: &TableName) -> Result<bool, JobError> {
    let comment: Option<String> =
        sqlx::query_scalar("SELECT obj_description(to_regclass($1), 'pg_class')")
            .bind(stage.quoted())
            .fetch_one(pool)
            .await
            .map_err(sql_err("reading the stage table"))?;
    Ok(comment.as_deref() == Some(STAGE_COMMENT))
}

/// Creates a swap stage: the table's columns as they are, marked as such.
pub(super) async fn create_stage(
    conn: &mut PgConnection,
    stage: &TableName,
    table: &TableName,
) -> Result<(), JobError> {
    for sql in [
        // Where the table is (the database's default), whatever this session's default.
        "SET LOCAL default_tablespace = ''".to_string(),
        format!("CREATE TABLE {} (LIKE {})", stage.quoted(), table.quoted()),
        format!(
            "COMMENT ON TABLE {} IS '{}'",
            stage.quoted(),
            STAGE_COMMENT.replace('\'', "''")
        ),
    ] {
        sqlx::query(AssertSqlSafe(sql))
            .execute(&mut *conn)
            .await
            .map_err(sql_err("creating the stage table"))?;
    }
    Ok(())
}

/// Why the final transaction appends the staged rows instead of swapping, if it does.
enum Blocker {
    None(Vec<IndexShape>),
    Some(String),
}

impl PgTarget {
    /// Before the final transaction: the stage gets a copy of each of the table's indexes
    /// (built once over the run's rows, two at a time; rerunnable after a crash). A table that
    /// can no longer be swapped gets none: its rows will be appended.
    pub(super) async fn prepare_swap(&self) -> Result<(), JobError> {
        let mut conn = self.pool.acquire().await.map_err(sql_err("indexing"))?;
        let shapes = match shape(&mut conn, &self.table).await? {
            Shape::Plain(s) => s,
            Shape::Not(_) => return Ok(()),
        };
        drop(conn);
        let builds: Vec<(String, String)> = shapes
            .iter()
            .map(|s| {
                let sql = format!(
                    "CREATE {}INDEX IF NOT EXISTS {} ON {} USING {} ({})",
                    if s.unique { "UNIQUE " } else { "" },
                    quote_ident(&s.stage_index(&self.stage)),
                    self.stage.quoted(),
                    quote_ident(&s.method),
                    quote_ident(&s.column)
                );
                let what = format!("building the copy of index {} of {}", s.name, self.table);
                (sql, what)
            })
            .collect();
        // Two builds at a time: each is single-threaded, and the machine has cores to spare
        // for no more than that beside the server's other work.
        use futures::StreamExt;
        let results: Vec<Result<(), JobError>> = futures::stream::iter(builds)
            .map(|(sql, what)| build_index(self.pool.clone(), sql, what))
            .buffer_unordered(2)
            .collect()
            .await;
        results.into_iter().collect()
    }

    /// The final transaction of a swap run, after the ledger allowed every input: swaps the
    /// stage in with the table's rows, or appends the staged rows into the table when it
    /// cannot (see the module documentation). Returns the rows the table gained and its oid.
    pub(super) async fn publish_swap(
        &self,
        conn: &mut PgConnection,
        scope: &str,
    ) -> Result<(u64, Option<i64>), Attempt> {
        // The run's own rows, counted before any lock on the table is held.
        let staged: i64 = sqlx::query_scalar(AssertSqlSafe(format!(
            "SELECT count(*) FROM {}",
            self.stage.quoted()
        )))
        .fetch_one(&mut *conn)
        .await
        .map_err(sql_err("counting the staged rows"))?;
        let staged = staged.max(0) as u64;
        etl_core::fault::pause("data.swap.before_lock").await;
        // Writers wait from here to the commit; readers only for the swap itself.
        lock_table(conn, &self.table, LockMode::Exclusive, &self.limits.lock).await?;
        let old_oid = table_oid(conn, &self.table)
            .await?
            .ok_or_else(|| Attempt::Failed(JobError::temporary("the table vanished")))?;
        // The columns as they are now that nobody can change them.
        let cols = table_columns(conn, &self.table)
            .await?
            .ok_or_else(|| Attempt::Failed(JobError::temporary("the table vanished")))?;
        let shapes = match self.blocker(conn, scope, old_oid).await? {
            Blocker::None(shapes) => shapes,
            Blocker::Some(reason) => {
                tracing::info!(table = %self.table, %reason, "appending the staged rows into the table instead of swapping");
                let rows = self.merge(conn, &cols).await?;
                return Ok((rows, Some(old_oid)));
            }
        };
        savepoint(conn, "SAVEPOINT etl_swap").await?;
        match self.swap_in(conn, &cols, &shapes).await {
            Ok(new_oid) => {
                savepoint(conn, "RELEASE SAVEPOINT etl_swap").await?;
                move_ledger(conn, scope, old_oid, new_oid).await?;
                Ok((staged, Some(new_oid)))
            }
            // Lock timeouts, deadlocks, lost connections: the whole attempt goes again.
            Err(Attempt::Locked { table }) => Err(Attempt::Locked { table }),
            Err(Attempt::Failed(e)) if e.kind.retryable() => Err(Attempt::Failed(e)),
            Err(Attempt::Failed(e)) => {
                tracing::warn!(table = %self.table, error = %e, "could not swap the copy in; appending the staged rows into the table instead");
                savepoint(conn, "ROLLBACK TO SAVEPOINT etl_swap").await?;
                let rows = self.merge(conn, &cols).await?;
                Ok((rows, Some(old_oid)))
            }
        }
    }

    /// Under the table's lock: why not swap, or the indexes to carry.
    async fn blocker(
        &self,
        conn: &mut PgConnection,
        scope: &str,
        oid: i64,
    ) -> Result<Blocker, JobError> {
        // Another run's unpublished direct load: its undo deletes its rows by the transactions
        // that inserted them, and copied rows would have this run's.
        let entries: Vec<(String, serde_json::Value)> =
            sqlx::query_as("SELECT name, state FROM etl_checkpoint WHERE scope = $1")
                .bind(scope)
                .fetch_all(&mut *conn)
                .await
                .map_err(sql_err("reading the table's ledger"))?;
        for (url, v) in &entries {
            let e = LoadedVersion::decode(scope, url, v)?;
            if e.table_oid == Some(oid)
                && !e.settled()
                && e.run.as_deref() != Some(self.run_key.as_str())
            {
                return Ok(Blocker::Some(format!(
                    "run {} has an unpublished load of {url} in it",
                    e.run.as_deref().unwrap_or("?")
                )));
            }
        }
        let shapes = match shape(conn, &self.table).await? {
            Shape::Plain(s) => s,
            Shape::Not(why) => return Ok(Blocker::Some(why)),
        };
        // Every column of the table, as the stage has it first: name, type, NOT NULL, collation.
        let table_cols = column_signature(conn, &self.table).await?;
        let stage_cols = column_signature(conn, &self.stage).await?;
        if stage_cols.len() < table_cols.len() || stage_cols[..table_cols.len()] != table_cols[..] {
            return Ok(Blocker::Some(
                "its columns changed while this run staged its rows".into(),
            ));
        }
        for s in &shapes {
            let name = s.stage_index(&self.stage);
            let built: bool = sqlx::query_scalar("SELECT to_regclass($1) IS NOT NULL")
                .bind(format!(
                    "{}.{}",
                    quote_ident(&self.stage.schema),
                    quote_ident(&name)
                ))
                .fetch_one(&mut *conn)
                .await
                .map_err(sql_err("looking up the stage's indexes"))?;
            if !built {
                return Ok(Blocker::Some(format!(
                    "its index {} appeared or changed while this run staged its rows",
                    s.name
                )));
            }
        }
        Ok(Blocker::None(shapes))
    }

    /// Copies the table's rows into the stage (under the lock that keeps writers out), then,
    /// with readers kept out too, carries over what `replace` carries and puts the stage in the
    /// table's place under its index and constraint names. Returns the new table's oid.
    async fn swap_in(
        &self,
        conn: &mut PgConnection,
        cols: &[TableColumn],
        shapes: &[IndexShape],
    ) -> Result<i64, Attempt> {
        let list: Vec<String> = cols.iter().map(|c| quote_ident(&c.name)).collect();
        let list = list.join(", ");
        // Every row or an error: a policy that would hide rows from the copy makes it fail
        // (and the run append instead) rather than lose them.
        sqlx::query("SET LOCAL row_security = off")
            .execute(&mut *conn)
            .await
            .map_err(sql_err("copying the table's rows"))?;
        let copied = sqlx::query(AssertSqlSafe(format!(
            "INSERT INTO {} ({list}) SELECT {list} FROM {}",
            self.stage.quoted(),
            self.table.quoted()
        )))
        .execute(&mut *conn)
        .await
        .map_err(sql_err("copying the table's rows"))?
        .rows_affected();
        etl_core::fault::point("data.swap.after_copy");
        // Stage indexes built for an earlier shape of the table (a retry after the user dropped
        // an index) must not come along.
        let keep: Vec<String> = shapes.iter().map(|s| s.stage_index(&self.stage)).collect();
        let stale: Vec<String> = sqlx::query_scalar(
            "SELECT c.relname::text FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid \
             WHERE i.indrelid = to_regclass($1) AND NOT (c.relname::text = ANY($2))",
        )
        .bind(self.stage.quoted())
        .bind(&keep)
        .fetch_all(&mut *conn)
        .await
        .map_err(sql_err("listing the stage's indexes"))?;
        lock_table(
            conn,
            &self.table,
            LockMode::AccessExclusive,
            &self.limits.lock,
        )
        .await?;
        // The stage's marker goes first, so the table's own comment, carried over next, stays.
        let mut sql = vec![format!("COMMENT ON TABLE {} IS NULL", self.stage.quoted())];
        for name in &stale {
            sql.push(format!(
                "DROP INDEX {}.{}",
                quote_ident(&self.stage.schema),
                quote_ident(name)
            ));
        }
        run_all(conn, &sql).await?;
        let carried = carry_over(conn, &self.table, &self.stage).await?;
        tracing::info!(table = %self.table, rows = copied, ?carried, "copied the table's rows and kept its privileges, comments and row-level security");
        let mut sql = vec![
            // No CASCADE: anything that still depends on the table stops the swap.
            format!("DROP TABLE {}", self.table.quoted()),
            format!(
                "ALTER TABLE {} RENAME TO {}",
                self.stage.quoted(),
                quote_ident(&self.table.name)
            ),
        ];
        for s in shapes {
            let index = quote_ident(&s.stage_index(&self.stage));
            sql.push(match &s.constraint {
                Some((name, kind)) => format!(
                    "ALTER TABLE {} ADD CONSTRAINT {} {} USING INDEX {index}",
                    self.table.quoted(),
                    quote_ident(name),
                    if kind == "p" { "PRIMARY KEY" } else { "UNIQUE" },
                ),
                None => format!(
                    "ALTER INDEX {}.{index} RENAME TO {}",
                    quote_ident(&self.table.schema),
                    quote_ident(&s.name)
                ),
            });
        }
        run_all(conn, &sql).await?;
        let oid = table_oid(conn, &self.table)
            .await?
            .ok_or_else(|| JobError::internal("the swapped-in table vanished"))?;
        Ok(oid)
    }
}

/// Runs statements in order, each error naming its statement.
async fn run_all(conn: &mut PgConnection, sql: &[String]) -> Result<(), JobError> {
    for s in sql {
        sqlx::query(AssertSqlSafe(s.as_str()))
            .execute(&mut *conn)
            .await
            .map_err(|e| {
                JobError::from(etl_core::postgres::PgError::sql(
                    format!("swapping the copy in ({s})"),
                    e,
                ))
            })?;
    }
    Ok(())
}

/// Name, type (with modifier), NOT NULL and collation of each column, in order.
async fn column_signature(
    conn: &mut PgConnection,
    table: &TableName,
) -> Result<Vec<(String, String, bool, i64)>, JobError> {
    sqlx::query_as(
        "SELECT attname::text, format_type(atttypid, atttypmod), attnotnull, attcollation::oid::bigint \
         FROM pg_attribute WHERE attrelid = to_regclass($1) AND attnum > 0 AND NOT attisdropped \
         ORDER BY attnum",
    )
    .bind(table.quoted())
    .fetch_all(&mut *conn)
    .await
    .map_err(sql_err("reading the columns"))
}

/// Runs one index build on its own connection.
async fn build_index(pool: PgPool, sql: String, what: String) -> Result<(), JobError> {
    let mut conn = pool.acquire().await.map_err(sql_err("indexing"))?;
    sqlx::query("SET maintenance_work_mem = '256MB'")
        .execute(&mut *conn)
        .await
        .map_err(sql_err("indexing"))?;
    sqlx::query("SET default_tablespace = ''")
        .execute(&mut *conn)
        .await
        .map_err(sql_err("indexing"))?;
    sqlx::query(AssertSqlSafe(sql))
        .execute(&mut *conn)
        .await
        .map(|_| ())
        .map_err(|e| JobError::from(etl_core::postgres::PgError::sql(what, e)))
}

async fn savepoint(conn: &mut PgConnection, sql: &'static str) -> Result<(), JobError> {
    sqlx::query(sql)
        .execute(&mut *conn)
        .await
        .map(|_| ())
        .map_err(sql_err("savepoint"))
}

/// The ledger's entries of the old table describe the swapped-in one: the same rows are in it.
async fn move_ledger(
    conn: &mut PgConnection,
    scope: &str,
    old: i64,
    new: i64,
) -> Result<(), JobError> {
    sqlx::query(
        "UPDATE etl_checkpoint SET state = jsonb_set(state, '{table_oid}', to_jsonb($3::bigint)), \
         updated_at = now() WHERE scope = $1 AND state->>'table_oid' = $2::bigint::text",
    )
    .bind(scope)
    .bind(old)
    .bind(new)
    .execute(&mut *conn)
    .await
    .map_err(sql_err("moving the table's ledger to the swapped-in table"))?;
    Ok(())
}

async fn table_oid(conn: &mut PgConnection, table: &TableName) -> Result<Option<i64>, JobError> {
    sqlx::query_scalar("SELECT to_regclass($1)::oid::bigint")
        .bind(table.quoted())
        .fetch_one(&mut *conn)
        .await
        .map_err(sql_err("looking up the table"))
}
