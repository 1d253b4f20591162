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
use sqlx::{AssertSqlSafe, PgConnection, PgPool, Row};

use super::PgTarget;
use super::carry::carry_over;
use super::lock::{Attempt, LockMode, lock_table};
use super::names::derived_name;
use super::schema::{TableColumn, sql_err};
use crate::config::AppendPath;
use crate::state::LoadedVersion;

/// The comment that marks a run's stage as a swap stage, so a resumed run goes on with it.
pub(super) const STAGE_COMMENT: &str = "etl-data: rows of an append by swap";

/// `auto` swaps when the table's heap is at most this share of the input's bytes: copying and
/// indexing the old rows again then costs less than indexing the new ones one by one.
const AUTO_TABLE_SHARE: u64 = 4;

/// An index of the table, as the swapped-in copy gets it again.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct IndexShape {
    pub name: String,
    pub column: String,
    pub method: String,
    pub unique: bool,
    /// The constraint the index backs: its name and `p` (primary key) or `u` (unique).
    pub constraint: Option<(String, String)>,
}

impl IndexShape {
    /// The name of the stage's copy of this index: derived from everything that defines it,
    /// so a stage index built for another shape of the table is never taken for this one.
    fn stage_index(&self, stage: &TableName) -> String {
        use sha2::{Digest, Sha256};
        let id = format!(
            "{}\n{}\n{}\n{}\n{:?}",
            self.name, self.column, self.method, self.unique, self.constraint
        );
        let hash = hex::encode(&Sha256::digest(id.as_bytes())[..6]);
        derived_name(&stage.name, &format!("x{hash}"))
    }
}

/// Whether the table can be swapped without losing anything, and its indexes if so.
#[derive(Debug)]
pub(super) enum Shape {
    Plain(Vec<IndexShape>),
    /// Why not, for the log.
    Not(String),
}

/// What a copy of the table would lose, one line each (empty: nothing). `$1` is the table.
const LOSSES: &str = r#"
WITH t AS (SELECT c.oid AS toid, c.* FROM pg_class c WHERE c.oid = to_regclass($1))
SELECT 'it is not a plain permanent table' FROM t
 WHERE relkind <> 'r' OR relpersistence <> 'p' OR relispartition
UNION ALL SELECT 'another role owns it' FROM t
 WHERE relowner <> (SELECT oid FROM pg_roles WHERE rolname = current_user)
UNION ALL SELECT 'it has storage options or its own tablespace' FROM t
 WHERE reloptions IS NOT NULL OR reltablespace <> 0
UNION ALL SELECT 'it has a replica identity' FROM t WHERE relreplident <> 'd'
UNION ALL SELECT 'it forces row-level security (a copy could miss rows)' FROM t
 WHERE relforcerowsecurity
UNION ALL SELECT 'it has triggers' FROM t WHERE relhastriggers
UNION ALL SELECT 'it has rules' FROM t WHERE relhasrules
UNION ALL SELECT 'it inherits or is inherited' FROM t
 WHERE relhassubclass OR EXISTS (SELECT 1 FROM pg_inherits WHERE inhrelid = t.toid OR inhparent = t.toid)
UNION ALL SELECT format('column %I has a default, an identity or generated value, or its own statistics target or options', a.attname)
  FROM t JOIN pg_attribute a ON a.attrelid = t.toid
 WHERE a.attnum > 0 AND NOT a.attisdropped
   AND (a.atthasdef OR a.attidentity <> '' OR a.attgenerated <> '' OR a.attoptions IS NOT NULL
        OR coalesce((to_jsonb(a) ->> 'attstattarget')::int, -1) >= 0)
UNION ALL SELECT format('constraint %I', c.conname)
  FROM t JOIN pg_constraint c ON c.conrelid = t.toid OR c.confrelid = t.toid
 WHERE c.contype NOT IN ('p', 'u') OR c.confrelid = t.toid OR c.condeferrable
    OR cardinality(c.conkey) <> 1
UNION ALL SELECT format('index %s is not a plain single-column index', i.indexrelid::regclass)
  FROM t JOIN pg_index i ON i.indrelid = t.toid
  JOIN pg_class ic ON ic.oid = i.indexrelid
 WHERE i.indnatts <> 1 OR i.indkey[0] = 0 OR i.indexprs IS NOT NULL OR i.indpred IS NOT NULL
    OR NOT i.indisvalid OR NOT i.indisready OR NOT i.indimmediate OR i.indisexclusion
    OR i.indoption[0] <> 0 OR ic.reloptions IS NOT NULL OR ic.reltablespace <> 0
    OR coalesce((to_jsonb(i) ->> 'indnullsnotdistinct')::boolean, false)
    OR NOT EXISTS (SELECT 1 FROM pg_opclass o WHERE o.oid = i.indclass[0] AND o.opcdefault)
    OR i.indcollation[0] <> (SELECT a.attcollation FROM pg_attribute a
                              WHERE a.attrelid = t.toid AND a.attnum = i.indkey[0])
UNION ALL SELECT format('%s depends on it', pg_describe_object(d.classid, d.objid, d.objsubid))
  FROM t JOIN pg_depend d ON d.refclassid = 'pg_class'::regclass AND d.refobjid = t.toid
 WHERE NOT ((d.classid = 'pg_type'::regclass AND d.objid = t.reltype)
         OR (d.classid = 'pg_class'::regclass AND d.objid = t.reltoastrelid)
         OR (d.classid = 'pg_class'::regclass
             AND d.objid IN (SELECT indexrelid FROM pg_index WHERE indrelid = t.toid))
         OR (d.classid = 'pg_constraint'::regclass
             AND d.objid IN (SELECT oid FROM pg_constraint WHERE conrelid = t.toid AND contype IN ('p', 'u')))
         OR d.classid = 'pg_policy'::regclass)
UNION ALL SELECT format('%s uses its row type', pg_describe_object(d.classid, d.objid, d.objsubid))
  FROM t JOIN pg_type rt ON rt.oid = t.reltype
  JOIN pg_depend d ON d.refclassid = 'pg_type'::regclass
   AND (d.refobjid = t.reltype OR (rt.typarray <> 0 AND d.refobjid = rt.typarray))
 WHERE NOT (d.classid = 'pg_type'::regclass AND d.objid = rt.typarray)
UNION ALL SELECT 'it is in a publication' FROM t
 WHERE EXISTS (SELECT 1 FROM pg_publication_rel p WHERE p.prrelid = t.toid)
"#;

/// The table's indexes: name, column, access method, unique, and the constraint each backs.
const INDEXES: &str = r#"
SELECT ic.relname::text AS name, a.attname::text AS col, am.amname::text AS method,
       i.indisunique AS is_unique, c.conname::text AS con_name, c.contype::text AS con_kind
  FROM pg_index i
  JOIN pg_class ic ON ic.oid = i.indexrelid
  JOIN pg_am am ON am.oid = ic.relam
  JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = i.indkey[0]
  LEFT JOIN pg_constraint c ON c.conindid = i.indexrelid AND c.conrelid = i.indrelid
 WHERE i.indrelid = to_regclass($1)
 ORDER BY ic.relname
"#;

/// Whether `table` can be swapped without losing anything (see the module documentation).
pub(super) async fn shape(conn: &mut PgConnection, table: &TableName) -> Result<Shape, JobError> {
    let losses: Vec<String> = sqlx::query_scalar(LOSSES)
        .bind(table.quoted())
        .fetch_all(&mut *conn)
        .await
        .map_err(sql_err("reading what the table has besides its rows"))?;
    if !losses.is_empty() {
        let shown: Vec<&str> = losses.iter().take(3).map(String::as_str).collect();
        let more = losses.len() - shown.len();
        let tail = if more > 0 {
            format!(" (and {more} more)")
        } else {
            String::new()
        };
        return Ok(Shape::Not(format!("{}{tail}", shown.join("; "))));
    }
    let rows = sqlx::query(INDEXES)
        .bind(table.quoted())
        .fetch_all(&mut *conn)
        .await
        .map_err(sql_err("reading the table's indexes"))?;
    let mut out = Vec::with_capacity(rows.len());
    for r in rows {
        let get = |c: &str| -> Result<Option<String>, JobError> {
            r.try_get(c).map_err(sql_err("reading the table's indexes"))
        };
        let constraint = match (get("con_name")?, get("con_kind")?) {
            (Some(n), Some(k)) => Some((n, k)),
            _ => None,
        };
        out.push(IndexShape {
            name: get("name")?.unwrap_or_default(),
            column: get("col")?.unwrap_or_default(),
            method: get("method")?.unwrap_or_default(),
            unique: r
                .try_get("is_unique")
                .map_err(sql_err("reading the table's indexes"))?,
            constraint,
        });
    }
    Ok(Shape::Plain(out))
}

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
        let heap: i64 = sqlx::query_scalar("SELECT pg_relation_size(to_regclass($1))")
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
        cols: &[TableColumn],
    ) -> Result<(u64, Option<i64>), Attempt> {
        lock_table(conn, &self.table, LockMode::Exclusive, &self.limits.lock).await?;
        let old_oid = table_oid(conn, &self.table)
            .await?
            .ok_or_else(|| Attempt::Failed(JobError::temporary("the table vanished")))?;
        let shapes = match self.blocker(conn, scope, cols, old_oid).await? {
            Blocker::None(shapes) => shapes,
            Blocker::Some(reason) => {
                tracing::info!(table = %self.table, %reason, "appending the staged rows into the table instead of swapping");
                let rows = self.merge(conn, cols).await?;
                return Ok((rows, Some(old_oid)));
            }
        };
        // Before the savepoint: a lock timeout rolls back the whole attempt, to be retried.
        lock_table(
            conn,
            &self.table,
            LockMode::AccessExclusive,
            &self.limits.lock,
        )
        .await?;
        savepoint(conn, "SAVEPOINT etl_swap").await?;
        match self.swap_in(conn, cols, &shapes).await {
            Ok((rows, new_oid)) => {
                savepoint(conn, "RELEASE SAVEPOINT etl_swap").await?;
                move_ledger(conn, scope, old_oid, new_oid).await?;
                Ok((rows, Some(new_oid)))
            }
            Err(e) => {
                tracing::warn!(table = %self.table, error = %e, "could not swap the copy in; appending the staged rows into the table instead");
                savepoint(conn, "ROLLBACK TO SAVEPOINT etl_swap").await?;
                let rows = self.merge(conn, cols).await?;
                Ok((rows, Some(old_oid)))
            }
        }
    }

    /// Under the table's lock: why not swap, or the indexes to carry.
    async fn blocker(
        &self,
        conn: &mut PgConnection,
        scope: &str,
        cols: &[TableColumn],
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
        let stage_cols = &self.copy_columns;
        let same_columns = stage_cols.len() >= cols.len()
            && cols
                .iter()
                .zip(stage_cols)
                .all(|(t, s)| t.name == s.name && t.sql_type == s.sql_type);
        if !same_columns {
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

    /// Copies the table's rows into the stage, carries over what `replace` carries, and puts
    /// the stage in the table's place under its index and constraint names.
    async fn swap_in(
        &self,
        conn: &mut PgConnection,
        cols: &[TableColumn],
        shapes: &[IndexShape],
    ) -> Result<(u64, i64), JobError> {
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
        // The stage's marker goes first, so the table's own comment, carried over next, stays.
        sqlx::query(AssertSqlSafe(format!(
            "COMMENT ON TABLE {} IS NULL",
            self.stage.quoted()
        )))
        .execute(&mut *conn)
        .await
        .map_err(sql_err("swapping the copy in"))?;
        let carried = carry_over(conn, &self.table, &self.stage).await?;
        tracing::info!(table = %self.table, rows = copied, ?carried, "copied the table's rows and kept its privileges, comments and row-level security");
        let total: i64 = sqlx::query_scalar(AssertSqlSafe(format!(
            "SELECT count(*) FROM {}",
            self.stage.quoted()
        )))
        .fetch_one(&mut *conn)
        .await
        .map_err(sql_err("counting rows"))?;
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
        let oid = table_oid(conn, &self.table)
            .await?
            .ok_or_else(|| JobError::internal("the swapped-in table vanished"))?;
        let added = (total.max(0) as u64).saturating_sub(copied);
        Ok((added, oid))
    }
}

/// Runs one index build on its own connection.
async fn build_index(pool: PgPool, sql: String, what: String) -> Result<(), JobError> {
    let mut conn = pool.acquire().await.map_err(sql_err("indexing"))?;
    sqlx::query("SET maintenance_work_mem = '256MB'")
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
