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
        // Every ledger entry of the table, locked before the table (the order every loader
        // keeps): none is claimed, settled or undone until this commits, and a direct batch
        // holding one finishes first.
        let entries: Vec<(String, serde_json::Value)> = sqlx::query_as(
            "SELECT name, state FROM etl_checkpoint WHERE scope = $1 ORDER BY name FOR UPDATE",
        )
        .bind(scope)
        .fetch_all(&mut *conn)
        .await
        .map_err(sql_err("locking the table's ledger"))?;
        let oid = table_oid(conn, &self.table).await?;
        if let Some(reason) = self.unpublished(scope, &entries, oid)? {
            // Known before waiting for the table: append, as a direct run would.
            return self.append_instead(conn, &reason).await;
        }
        // Writers wait from here to the commit; readers only for the swap itself.
        lock_table(conn, &self.table, LockMode::Exclusive, &self.limits.lock).await?;
        let old_oid = table_oid(conn, &self.table)
            .await?
            .ok_or_else(|| Attempt::Failed(JobError::temporary("the table vanished")))?;
        if let Some(reason) = self.unpublished(scope, &entries, Some(old_oid))? {
            return self.append_instead(conn, &reason).await;
        }
        // The columns as they are now that nobody can change them.
        let cols = table_columns(conn, &self.table)
            .await?
            .ok_or_else(|| Attempt::Failed(JobError::temporary("the table vanished")))?;
        let shapes = match self.blocker(conn).await? {
            Blocker::None(shapes) => shapes,
            Blocker::Some(reason) => return self.append_instead(conn, &reason).await,
        };
        savepoint(conn, "SAVEPOINT etl_swap").await?;
        match self.swap_in(conn, &cols, &shapes).await {
            Ok(new_oid) => {
                savepoint(conn, "RELEASE SAVEPOINT etl_swap").await?;
                let names: Vec<&str> = entries.iter().map(|(n, _)| n.as_str()).collect();
                move_ledger(conn, scope, &names, old_oid, new_oid).await?;
                Ok((staged, Some(new_oid)))
            }
            // Lock timeouts, deadlocks, lost connections: the whole attempt goes again.
            Err(SwapFail::Again(a)) => Err(a),
            Err(SwapFail::Fallback(e)) => {
                tracing::warn!(table = %self.table, error = %e, "could not swap the copy in; appending the staged rows into the table instead");
                savepoint(conn, "ROLLBACK TO SAVEPOINT etl_swap").await?;
                let rows = self.merge(conn, &cols).await?;
                Ok((rows, Some(old_oid)))
            }
        }
    }

    /// Appends the staged rows into the table (the merge takes the locks it needs).
    async fn append_instead(
        &self,
        conn: &mut PgConnection,
        reason: &str,
    ) -> Result<(u64, Option<i64>), Attempt> {
        tracing::info!(table = %self.table, %reason, "appending the staged rows into the table instead of swapping");
        let cols = table_columns(conn, &self.table)
            .await?
            .ok_or_else(|| Attempt::Failed(JobError::temporary("the table vanished")))?;
        let rows = self.merge(conn, &cols).await?;
        Ok((rows, table_oid(conn, &self.table).await?))
    }

    /// Another run's unpublished direct load in the table `oid`, if there is one: its undo
    /// deletes its rows by the transactions that inserted them, and copied rows would have
    /// this run's.
    fn unpublished(
        &self,
        scope: &str,
        entries: &[(String, serde_json::Value)],
        oid: Option<i64>,
    ) -> Result<Option<String>, JobError> {
        for (url, v) in entries {
            let e = LoadedVersion::decode(scope, url, v)?;
            if oid.is_some()
                && e.table_oid == oid
                && !e.settled()
                && e.run.as_deref() != Some(self.run_key.as_str())
            {
                return Ok(Some(format!(
                    "run {} has an unpublished load of {url} in it",
                    e.run.as_deref().unwrap_or("?")
                )));
            }
        }
        Ok(None)
    }

    /// Under the table's lock: why not swap, or the indexes to carry.
    async fn blocker(&self, conn: &mut PgConnection) -> Result<Blocker, JobError> {
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
    ) -> Result<i64, SwapFail> {
        // Stage indexes built for an earlier shape of the table (a retry after the user dropped
        // an index) must not come along, nor be kept up during the copy.
        let keep: Vec<String> = shapes.iter().map(|s| s.stage_index(&self.stage)).collect();
        let stale: Vec<String> = sqlx::query_scalar(
            "SELECT c.relname::text FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid \
             WHERE i.indrelid = to_regclass($1) AND NOT (c.relname::text = ANY($2))",
        )
        .bind(self.stage.quoted())
        .bind(&keep)
        .fetch_all(&mut *conn)
        .await
        .map_err(step("listing the stage's indexes"))?;
        // The stage's marker goes too, so the table's own comment, carried over below, stays.
        let mut sql = vec![format!("COMMENT ON TABLE {} IS NULL", self.stage.quoted())];
        for name in &stale {
            sql.push(format!(
                "DROP INDEX {}.{}",
                quote_ident(&self.stage.schema),
                quote_ident(name)
            ));
        }
        // Every row or an error: a policy that would hide rows from the copy makes it fail
        // (and the run append instead) rather than lose them.
        sql.push("SET LOCAL row_security = off".into());
        run_all(conn, &sql).await?;
        let list: Vec<String> = cols.iter().map(|c| quote_ident(&c.name)).collect();
        let list = list.join(", ");
        let copied = sqlx::query(AssertSqlSafe(format!(
            "INSERT INTO {} ({list}) SELECT {list} FROM {}",
            self.stage.quoted(),
            self.table.quoted()
        )))
        .execute(&mut *conn)
        .await
        .map_err(step("copying the table's rows"))?
        .rows_affected();
        etl_core::fault::point("data.swap.after_copy");
        lock_table(
            conn,
            &self.table,
            LockMode::AccessExclusive,
            &self.limits.lock,
        )
        .await
        .map_err(SwapFail::Again)?;
        let carried = carry_over(conn, &self.table, &self.stage)
            .await
            .map_err(|e| {
                if e.kind.retryable() {
                    SwapFail::Again(Attempt::Failed(e))
                } else {
                    SwapFail::Fallback(e)
                }
            })?;
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
        let oid = sqlx::query_scalar::<_, Option<i64>>("SELECT to_regclass($1)::oid::bigint")
            .bind(self.table.quoted())
            .fetch_one(&mut *conn)
            .await
            .map_err(step("looking up the table"))?
            .ok_or_else(|| {
                SwapFail::Fallback(JobError::internal("the swapped-in table vanished"))
            })?;
        Ok(oid)
    }
}

/// How a step of the swap failed: a failure the whole attempt may get past by going again (a
/// lock timeout, a deadlock, a lost connection or server), or one that a swap will meet again
/// (a dependency the check did not know, rows that break a key), after which the staged rows
/// are appended instead — and meet it there, if it is about the rows.
enum SwapFail {
    Again(Attempt),
    Fallback(JobError),
}

/// SQLSTATE classes and codes for which the whole attempt goes again.
fn transient(code: &str) -> bool {
    matches!(code.get(..2), Some("08" | "40" | "53" | "57" | "58")) || code == "55P03"
}

fn step(context: impl Into<String> + Clone) -> impl Fn(sqlx::Error) -> SwapFail {
    move |e| {
        let again = match &e {
            sqlx::Error::Database(db) => db.code().as_deref().is_some_and(transient),
            // Not an answer from the server: the connection or the pool.
            _ => true,
        };
        let err = JobError::from(etl_core::postgres::PgError::sql(context.clone(), e));
        if again {
            SwapFail::Again(Attempt::Failed(err))
        } else {
            SwapFail::Fallback(err)
        }
    }
}

/// Runs statements in order, each error naming its statement.
async fn run_all(conn: &mut PgConnection, sql: &[String]) -> Result<(), SwapFail> {
    for s in sql {
        sqlx::query(AssertSqlSafe(s.as_str()))
            .execute(&mut *conn)
            .await
            .map_err(step(format!("swapping the copy in ({s})")))?;
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
/// Only the entries this transaction locked (`names`); an entry claimed since by a direct run
/// is left for that run, which finds the table changed and decides again. The entry an
/// unpublished load would restore (`previous`) moves with it.
async fn move_ledger(
    conn: &mut PgConnection,
    scope: &str,
    names: &[&str],
    old: i64,
    new: i64,
) -> Result<(), JobError> {
    sqlx::query(
        "UPDATE etl_checkpoint SET state = jsonb_set(state, '{table_oid}', to_jsonb($4::bigint)), \
         updated_at = now() WHERE scope = $1 AND name = ANY($2) AND state->>'table_oid' = $3::bigint::text",
    )
    .bind(scope)
    .bind(names)
    .bind(old)
    .bind(new)
    .execute(&mut *conn)
    .await
    .map_err(sql_err("moving the table's ledger to the swapped-in table"))?;
    sqlx::query(
        "UPDATE etl_checkpoint SET state = jsonb_set(state, '{previous,table_oid}', to_jsonb($4::bigint)) \
         WHERE scope = $1 AND name = ANY($2) AND state->'previous'->>'table_oid' = $3::bigint::text",
    )
    .bind(scope)
    .bind(names)
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
