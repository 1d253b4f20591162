//! The final transaction of a staged run: the stage becomes the table (replace, or append into
//! a missing table) or is merged into it (upsert, or append into a table that appeared while
//! the run built it). The table's lock is taken with a bounded wait ([`super::lock`]); every
//! schema change of the live table happens here, in the transaction that publishes the rows.

use etl_core::JobError;
use etl_core::postgres::{PgError, TableName, quote_ident};
use sqlx::{AssertSqlSafe, PgConnection};

use super::carry::carry_over;
use super::ledger::{Ledger, StagedCheck, Version};
use super::lock::{Attempt, LockMode, lock_table};
use super::names::{derived_name, key_suffix};
use super::schema::{
    GEOM, ID, SEQ, TableColumn, fits, geometry_constraint, sql_err, table_columns,
};
use super::{PgTarget, SEQ_INPUT_SHIFT, Strategy};

/// One input the run staged, as the publish needs it.
pub struct StagedInput {
    /// Position among the run's inputs (its range of the stage's sequence column).
    pub index: u64,
    pub url: String,
    pub etag: Option<String>,
    pub size: u64,
}

/// How the publish ended, when it did not fail.
#[derive(Debug)]
pub enum Published {
    /// The rows are in `table_oid`; the ledger says so.
    Done { rows: u64, table_oid: Option<i64> },
    /// The table appeared while this run built it and the stage cannot join it as it is
    /// (`reason`): the caller drops the stage and the run's progress; a retry appends into the
    /// existing table.
    Restage { reason: String },
}

fn fail(context: String) -> impl Fn(sqlx::Error) -> Attempt {
    move |e| Attempt::Failed(JobError::from(PgError::sql(context.clone(), e)))
}

impl PgTarget {
    /// The stage's index statements: on id (unique first: `replace` makes unique ids the
    /// primary key; an appended table keeps a plain index, as later appends may repeat ids),
    /// the plain fallback, and GIST on geom.
    fn index_sql(&self) -> [String; 3] {
        let stage = &self.stage;
        let unique = if self.strategy == Strategy::Replace {
            "UNIQUE "
        } else {
            ""
        };
        let first = if unique.is_empty() {
            "id_idx"
        } else {
            "id_key"
        };
        [
            format!(
                "CREATE {unique}INDEX IF NOT EXISTS {} ON {} ({})",
                quote_ident(&derived_name(&stage.name, first)),
                stage.quoted(),
                quote_ident(ID)
            ),
            format!(
                "CREATE INDEX IF NOT EXISTS {} ON {} ({})",
                quote_ident(&derived_name(&stage.name, "id_idx")),
                stage.quoted(),
                quote_ident(ID)
            ),
            format!(
                "CREATE INDEX IF NOT EXISTS {} ON {} USING gist ({})",
                quote_ident(&derived_name(&stage.name, "geom_idx")),
                stage.quoted(),
                quote_ident(GEOM)
            ),
        ]
    }

    /// Builds the stage's indexes before the swap (replace, and append into a missing table):
    /// the index on id and the GIST index on geom at the same time on two connections
    /// (each a single-threaded build, so together they use both cores). Outside the swap
    /// transaction, so readers of the old table are not blocked meanwhile; rerunnable after a
    /// crash (IF NOT EXISTS).
    pub async fn prepare_publish(&self) -> Result<(), JobError> {
        if self.strategy == Strategy::Swap {
            return self.prepare_swap().await;
        }
        if !self.strategy.own_types() {
            return Ok(());
        }
        if self.strategy == Strategy::Build && table_exists(&self.pool, &self.table).await? {
            // The stage will be merged into the table that appeared: its indexes are no use.
            return Ok(());
        }
        let [unique, plain, gist] = self.index_sql();
        let id_index = async {
            let mut conn = self.pool.acquire().await.map_err(sql_err("indexing"))?;
            sqlx::query("SET maintenance_work_mem = '256MB'")
                .execute(&mut *conn)
                .await
                .map_err(sql_err("indexing"))?;
            match sqlx::query(AssertSqlSafe(unique)).execute(&mut *conn).await {
                Ok(_) => Ok(()),
                Err(sqlx::Error::Database(db)) if db.code().as_deref() == Some("23505") => {
                    // Repeated ids: id gets a plain index, and the table no primary key.
                    tracing::warn!(table = %self.table, "feature ids repeat; id gets a plain index, not a primary key");
                    sqlx::query(AssertSqlSafe(plain))
                        .execute(&mut *conn)
                        .await
                        .map(|_| ())
                        .map_err(sql_err("creating the id index"))
                }
                Err(e) => Err(sql_err("creating the id index")(e)),
            }
        };
        let geom_index = async {
            let mut conn = self.pool.acquire().await.map_err(sql_err("indexing"))?;
            sqlx::query("SET maintenance_work_mem = '256MB'")
                .execute(&mut *conn)
                .await
                .map_err(sql_err("indexing"))?;
            sqlx::query(AssertSqlSafe(gist))
                .execute(&mut *conn)
                .await
                .map(|_| ())
                .map_err(sql_err("creating the GIST index"))
        };
        tokio::try_join!(id_index, geom_index)?;
        Ok(())
    }

    /// The final transaction's work on the table and its ledger (the caller holds the ledger's
    /// lock and adds the run's own bookkeeping). Lock timeouts come back as
    /// [`Attempt::Locked`] after everything was rolled back with the transaction.
    pub async fn publish(
        &self,
        conn: &mut PgConnection,
        ledger: &Ledger<'_>,
        inputs: &[StagedInput],
    ) -> Result<Published, Attempt> {
        let existing = table_columns(conn, &self.table).await?;
        match (self.strategy, existing) {
            (Strategy::Replace, existing) => {
                ledger.clear(conn).await?;
                if existing.is_some() {
                    lock_table(
                        conn,
                        &self.table,
                        LockMode::AccessExclusive,
                        &self.limits.lock,
                    )
                    .await?;
                    let carried = carry_over(conn, &self.table, &self.stage).await?;
                    tracing::info!(table = %self.table, ?carried, "kept the old table's privileges, comments and row-level security");
                }
                let oid = self.install(conn, existing.is_some()).await?;
                self.record(conn, ledger, inputs, Some(oid), None).await
            }
            (Strategy::Build, None) => {
                let oid = self.install(conn, false).await?;
                self.record(conn, ledger, inputs, Some(oid), None).await
            }
            (Strategy::Build, Some(cols)) => {
                if let Some(reason) = self.build_conflict(conn, &cols).await? {
                    return Ok(Published::Restage { reason });
                }
                for input in inputs {
                    match ledger.check_staged(conn, &version(input)).await? {
                        StagedCheck::Publish => {}
                        StagedCheck::Busy { run } => {
                            return Err(busy(&input.url, &self.table, &run));
                        }
                        StagedCheck::AlreadyThere => {
                            return Ok(Published::Restage {
                                reason: format!(
                                    "another run loaded {} into {} meanwhile",
                                    input.url, self.table
                                ),
                            });
                        }
                    }
                }
                let rows = self.merge(conn, &cols).await?;
                let oid = table_oid(conn, &self.table).await?;
                self.record(conn, ledger, inputs, oid, Some(rows)).await
            }
            (Strategy::Swap, None) => Ok(Published::Restage {
                reason: format!("{} was dropped while this run staged its rows", self.table),
            }),
            // The swap reads the columns again, under the table's lock.
            (Strategy::Swap, Some(_)) => {
                for input in inputs {
                    match ledger.check_staged(conn, &version(input)).await? {
                        StagedCheck::Publish => {}
                        StagedCheck::Busy { run } => {
                            return Err(busy(&input.url, &self.table, &run));
                        }
                        StagedCheck::AlreadyThere => {
                            return Ok(Published::Restage {
                                reason: format!(
                                    "another run loaded {} into {} meanwhile",
                                    input.url, self.table
                                ),
                            });
                        }
                    }
                }
                let (rows, oid) = self.publish_swap(conn, ledger.scope).await?;
                self.record(conn, ledger, inputs, oid, Some(rows)).await
            }
            (Strategy::Merge, None) => {
                self.create_from_stage(conn).await?;
                let rows = self.merge(conn, &[]).await?;
                let oid = table_oid(conn, &self.table).await?;
                self.record(conn, ledger, inputs, oid, Some(rows)).await
            }
            (Strategy::Merge, Some(cols)) => {
                let mut published = Vec::new();
                for input in inputs {
                    match ledger.check_staged(conn, &version(input)).await? {
                        StagedCheck::Publish => published.push(input),
                        StagedCheck::Busy { run } => {
                            return Err(busy(&input.url, &self.table, &run));
                        }
                        StagedCheck::AlreadyThere => {
                            let removed = self.remove_input(conn, input.index).await?;
                            tracing::warn!(input = %input.url, rows = removed, "already published by another run; its staged rows are dropped");
                        }
                    }
                }
                let rows = self.merge(conn, &cols).await?;
                let oid = table_oid(conn, &self.table).await?;
                let published: Vec<StagedInput> = published
                    .into_iter()
                    .map(|i| StagedInput {
                        index: i.index,
                        url: i.url.clone(),
                        etag: i.etag.clone(),
                        size: i.size,
                    })
                    .collect();
                self.record(conn, ledger, &published, oid, Some(rows)).await
            }
            (Strategy::Direct, _) => Err(Attempt::Failed(JobError::internal(
                "a direct append has no stage to publish",
            ))),
        }
    }

    /// Ledger entries for the published inputs, and the row count.
    async fn record(
        &self,
        conn: &mut PgConnection,
        ledger: &Ledger<'_>,
        inputs: &[StagedInput],
        oid: Option<i64>,
        rows: Option<u64>,
    ) -> Result<Published, Attempt> {
        for input in inputs {
            ledger.record_complete(conn, &version(input), oid).await?;
        }
        let rows = match rows {
            Some(n) => n,
            None => {
                let n: i64 = sqlx::query_scalar(AssertSqlSafe(format!(
                    "SELECT count(*) FROM {}",
                    self.table.quoted()
                )))
                .fetch_one(&mut *conn)
                .await
                .map_err(fail("counting rows".into()))?;
                n.max(0) as u64
            }
        };
        Ok(Published::Done {
            rows,
            table_oid: oid,
        })
    }

    /// Why a build stage cannot be merged into the table that appeared, if it cannot: a column
    /// whose values do not fit the table's column, or a constrained geometry column.
    async fn build_conflict(
        &self,
        conn: &mut PgConnection,
        cols: &[TableColumn],
    ) -> Result<Option<String>, JobError> {
        if let Some(kind) = geometry_constraint(conn, &self.table, self.srid).await? {
            return Ok(Some(format!(
                "its geom column only takes {kind} geometries"
            )));
        }
        for c in &self.copy_columns {
            if let Some(t) = cols.iter().find(|t| t.name == c.name)
                && t.sql_type != c.sql_type
                && !fits(t.kind, c.kind)
            {
                return Ok(Some(format!(
                    "its column {} is {}, this run's values are {}",
                    c.name, t.sql_type, c.sql_type
                )));
            }
        }
        Ok(None)
    }

    /// Moves the stage's rows into the table: new columns first (at most `--max-new-columns`),
    /// then, for upsert, the unique index on the key, then `INSERT`; the stage is dropped.
    pub(super) async fn merge(
        &self,
        conn: &mut PgConnection,
        target: &[TableColumn],
    ) -> Result<u64, Attempt> {
        let stage_cols: Vec<&TableColumn> =
            self.copy_columns.iter().filter(|c| c.name != SEQ).collect();
        let adds: Vec<&TableColumn> = stage_cols
            .iter()
            .copied()
            .filter(|c| !target.is_empty() && !target.iter().any(|t| t.name == c.name))
            .collect();
        let key_index = self
            .key_column
            .as_ref()
            .map(|k| (k, derived_name(&self.table.name, &key_suffix(k))));
        let needs_key_index = match &key_index {
            Some((_, name)) => !index_exists(conn, &self.table.schema, name).await?,
            None => false,
        };
        if !target.is_empty() {
            let names: Vec<String> = adds.iter().map(|c| c.name.clone()).collect();
            self.check_new_columns(0, &names)?;
            let mode = if !adds.is_empty() {
                LockMode::AccessExclusive
            } else if needs_key_index {
                LockMode::ShareRowExclusive
            } else {
                LockMode::RowExclusive
            };
            lock_table(conn, &self.table, mode, &self.limits.lock).await?;
        }
        for c in &adds {
            let add = format!(
                "ALTER TABLE {} ADD COLUMN IF NOT EXISTS {} {}",
                self.table.quoted(),
                quote_ident(&c.name),
                c.sql_type
            );
            sqlx::query(AssertSqlSafe(add))
                .execute(&mut *conn)
                .await
                .map_err(fail("adding a column".into()))?;
        }
        if !adds.is_empty() {
            let names: Vec<&str> = adds.iter().map(|c| c.name.as_str()).collect();
            tracing::info!(table = %self.table, columns = ?names, "added columns for new properties");
        }
        if let (Some((k, name)), true) = (&key_index, needs_key_index) {
            let uniq = format!(
                "CREATE UNIQUE INDEX IF NOT EXISTS {} ON {} ({})",
                quote_ident(name),
                self.table.quoted(),
                quote_ident(k)
            );
            sqlx::query(AssertSqlSafe(uniq))
                .execute(&mut *conn)
                .await
                .map_err(fail(format!(
                    "--key {k}: cannot make it unique in {}",
                    self.table
                )))?;
        }
        let cols: Vec<String> = stage_cols.iter().map(|c| quote_ident(&c.name)).collect();
        let list = cols.join(", ");
        let sql = match (self.strategy, &self.key_column) {
            (Strategy::Merge, Some(k)) => {
                let key = quote_ident(k);
                let updates: Vec<String> = cols
                    .iter()
                    .filter(|c| **c != key)
                    .map(|c| format!("{c} = EXCLUDED.{c}"))
                    .collect();
                let action = if updates.is_empty() {
                    "DO NOTHING".to_string()
                } else {
                    format!("DO UPDATE SET {}", updates.join(", "))
                };
                // The last occurrence of a key in input order wins.
                format!(
                    "INSERT INTO {t} ({list}) SELECT {list} FROM (SELECT DISTINCT ON ({key}) * FROM {s} ORDER BY {key}, {seq} DESC) AS latest ON CONFLICT ({key}) {action}",
                    t = self.table.quoted(),
                    s = self.stage.quoted(),
                    seq = quote_ident(SEQ),
                )
            }
            _ => format!(
                "INSERT INTO {} ({list}) SELECT {list} FROM {}",
                self.table.quoted(),
                self.stage.quoted(),
            ),
        };
        let done = sqlx::query(AssertSqlSafe(sql.as_str()))
            .execute(&mut *conn)
            .await
            .map_err(fail(format!("moving rows into {}", self.table)))?;
        sqlx::query(AssertSqlSafe(format!("DROP TABLE {}", self.stage.quoted())))
            .execute(&mut *conn)
            .await
            .map_err(fail("dropping the stage table".into()))?;
        Ok(done.rows_affected())
    }

    /// Upsert into a missing table: creates it with the stage's columns (without the input
    /// order), a GIST index on geom and the unique index on the key.
    async fn create_from_stage(&self, conn: &mut PgConnection) -> Result<(), Attempt> {
        let defs: Vec<String> = self
            .copy_columns
            .iter()
            .filter(|c| c.name != SEQ)
            .map(|c| format!("{} {}", quote_ident(&c.name), c.sql_type))
            .collect();
        let mut sql = vec![
            format!("CREATE TABLE {} ({})", self.table.quoted(), defs.join(", ")),
            format!(
                "CREATE INDEX {} ON {} USING gist ({})",
                quote_ident(&derived_name(&self.table.name, "geom_idx")),
                self.table.quoted(),
                quote_ident(GEOM)
            ),
        ];
        if let Some(k) = &self.key_column {
            sql.push(format!(
                "CREATE UNIQUE INDEX {} ON {} ({})",
                quote_ident(&derived_name(&self.table.name, &key_suffix(k))),
                self.table.quoted(),
                quote_ident(k)
            ));
        }
        for s in sql {
            sqlx::query(AssertSqlSafe(s))
                .execute(&mut *conn)
                .await
                .map_err(fail(format!("creating {}", self.table)))?;
        }
        Ok(())
    }

    /// The stage becomes the table: indexes checked, id made the primary key when it can be,
    /// the old table dropped (`drop_old`), the stage and its indexes renamed. Returns the new
    /// table's oid.
    async fn install(&self, conn: &mut PgConnection, drop_old: bool) -> Result<i64, Attempt> {
        let stage = &self.stage;
        let schema = &stage.schema;
        let [unique, plain, gist] = self.index_sql();
        let gist_name = derived_name(&stage.name, "geom_idx");
        let unique_name = derived_name(&stage.name, "id_key");
        let plain_name = derived_name(&stage.name, "id_idx");
        if !index_exists(conn, schema, &gist_name).await? {
            // prepare_publish skipped them (the table existed then, and is gone now).
            sqlx::query("SAVEPOINT etl_unique")
                .execute(&mut *conn)
                .await
                .map_err(fail("savepoint".into()))?;
            let made = sqlx::query(AssertSqlSafe(unique)).execute(&mut *conn).await;
            if let Err(e) = made {
                let repeated = matches!(&e, sqlx::Error::Database(db) if db.code().as_deref() == Some("23505"));
                if !repeated {
                    return Err(fail("creating the id index".into())(e));
                }
                sqlx::query("ROLLBACK TO SAVEPOINT etl_unique")
                    .execute(&mut *conn)
                    .await
                    .map_err(fail("savepoint".into()))?;
                sqlx::query(AssertSqlSafe(plain))
                    .execute(&mut *conn)
                    .await
                    .map_err(fail("creating the id index".into()))?;
            }
            sqlx::query(AssertSqlSafe(gist))
                .execute(&mut *conn)
                .await
                .map_err(fail("creating the GIST index".into()))?;
        }
        let pkey = derived_name(&stage.name, "pkey");
        let id_index = if index_exists(conn, schema, &unique_name).await? {
            sqlx::query("SAVEPOINT etl_pk")
                .execute(&mut *conn)
                .await
                .map_err(fail("savepoint".into()))?;
            let add_pk = format!(
                "ALTER TABLE {} ADD CONSTRAINT {} PRIMARY KEY USING INDEX {}",
                stage.quoted(),
                quote_ident(&pkey),
                quote_ident(&unique_name)
            );
            match sqlx::query(AssertSqlSafe(add_pk)).execute(&mut *conn).await {
                Ok(_) => Some((pkey, "pkey")),
                Err(e) => {
                    // Some features have no id: the unique index stays, without a key.
                    tracing::warn!(table = %self.table, error = %e, "some features have no id; id gets a unique index, not a primary key");
                    sqlx::query("ROLLBACK TO SAVEPOINT etl_pk")
                        .execute(&mut *conn)
                        .await
                        .map_err(fail("savepoint".into()))?;
                    Some((unique_name, "id_key"))
                }
            }
        } else if index_exists(conn, schema, &plain_name).await? {
            Some((plain_name, "id_idx"))
        } else {
            None
        };
        if drop_old {
            // No CASCADE: a view on the old table must stop the swap, not vanish with it.
            sqlx::query(AssertSqlSafe(format!("DROP TABLE {}", self.table.quoted())))
                .execute(&mut *conn)
                .await
                .map_err(fail(
                    "dropping the old table (do views depend on it?)".into(),
                ))?;
        }
        sqlx::query(AssertSqlSafe(format!(
            "ALTER TABLE {} RENAME TO {}",
            stage.quoted(),
            quote_ident(&self.table.name)
        )))
        .execute(&mut *conn)
        .await
        .map_err(fail("renaming the new table into place".into()))?;
        let mut renames = vec![(gist_name, derived_name(&self.table.name, "geom_idx"))];
        if let Some((from, suffix)) = id_index {
            renames.push((from, derived_name(&self.table.name, suffix)));
        }
        for (from, to) in renames {
            let sql = format!(
                "ALTER INDEX {}.{} RENAME TO {}",
                quote_ident(schema),
                quote_ident(&from),
                quote_ident(&to)
            );
            sqlx::query(AssertSqlSafe(sql.as_str()))
                .execute(&mut *conn)
                .await
                .map_err(fail("renaming an index".into()))?;
        }
        table_oid(conn, &self.table)
            .await?
            .ok_or_else(|| Attempt::Failed(JobError::internal("the new table vanished")))
    }

    /// Removes one input's rows from a merge stage (the input was published by another run).
    /// Returns the rows removed.
    async fn remove_input(&self, conn: &mut PgConnection, index: u64) -> Result<u64, Attempt> {
        let low = (index << SEQ_INPUT_SHIFT) as i64;
        let high = ((index + 1) << SEQ_INPUT_SHIFT) as i64;
        let sql = format!(
            "DELETE FROM {} WHERE {seq} >= $1 AND {seq} < $2",
            self.stage.quoted(),
            seq = quote_ident(SEQ)
        );
        let done = sqlx::query(AssertSqlSafe(sql))
            .bind(low)
            .bind(high)
            .execute(&mut *conn)
            .await
            .map_err(fail("removing an input from the stage".into()))?;
        Ok(done.rows_affected())
    }
}

fn version(input: &StagedInput) -> Version<'_> {
    Version {
        url: &input.url,
        etag: input.etag.as_deref(),
        size: input.size,
    }
}

fn busy(url: &str, table: &TableName, run: &str) -> Attempt {
    Attempt::Failed(JobError::temporary(format!(
        "{url} is being loaded into {table} by run {run}; this run published nothing, retry when that one is done"
    )))
}

async fn table_oid(conn: &mut PgConnection, table: &TableName) -> Result<Option<i64>, JobError> {
    sqlx::query_scalar("SELECT to_regclass($1)::oid::bigint")
        .bind(table.quoted())
        .fetch_one(&mut *conn)
        .await
        .map_err(sql_err("looking up the table"))
}

async fn table_exists(pool: &sqlx::PgPool, table: &TableName) -> Result<bool, JobError> {
    sqlx::query_scalar("SELECT to_regclass($1) IS NOT NULL")
        .bind(table.quoted())
        .fetch_one(pool)
        .await
        .map_err(sql_err("looking up the table"))
}

async fn index_exists(conn: &mut PgConnection, schema: &str, name: &str) -> Result<bool, JobError> {
    sqlx::query_scalar("SELECT to_regclass($1) IS NOT NULL")
        .bind(format!("{}.{}", quote_ident(schema), quote_ident(name)))
        .fetch_one(&mut *conn)
        .await
        .map_err(sql_err("looking up indexes"))
}
