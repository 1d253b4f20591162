//! The ledger of a table: one `etl_checkpoint` row per input (scope `ledger:<hash of the
//! table>`, name = the input's URL) saying which version of the input the table holds or is
//! receiving, from which run, and, until that run is published, the transactions that inserted
//! its rows (their `xmin`), so a run that fails for good or is abandoned can be undone exactly.
//!
//! Appends into an existing table write it in every batch transaction, together with the rows
//! and the run's checkpoint: whatever a kill leaves, the rows, the progress and the ledger agree.

use etl_core::JobError;
use etl_core::checkpoint::PostgresCheckpoints;
use etl_core::postgres::{PgError, TableName, quote_ident};
use sqlx::{AssertSqlSafe, PgConnection};

use super::schema::sql_err;
use crate::state::{self, Claim, LoadedVersion};

/// The ledger of one table, as one run sees it.
pub struct Ledger<'a> {
    pub scope: &'a str,
    pub table: &'a TableName,
    pub run_key: &'a str,
}

/// The version of an input a run loads.
pub struct Version<'a> {
    pub url: &'a str,
    pub etag: Option<&'a str>,
    pub size: u64,
}

impl Ledger<'_> {
    /// The ledger entry of `url`, locked for the rest of the transaction.
    async fn entry(
        &self,
        conn: &mut PgConnection,
        url: &str,
    ) -> Result<Option<LoadedVersion>, JobError> {
        let row: Option<serde_json::Value> = sqlx::query_scalar(
            "SELECT state FROM etl_checkpoint WHERE scope = $1 AND name = $2 FOR UPDATE",
        )
        .bind(self.scope)
        .bind(url)
        .fetch_optional(&mut *conn)
        .await
        .map_err(sql_err("reading the table's ledger"))?;
        row.map(|v| LoadedVersion::decode(self.scope, url, &v).map_err(JobError::from))
            .transpose()
    }

    async fn put(
        &self,
        conn: &mut PgConnection,
        url: &str,
        entry: &LoadedVersion,
    ) -> Result<(), JobError> {
        PostgresCheckpoints::save_in(conn, self.scope, url, &entry.to_value()?)
            .await
            .map_err(JobError::from)
    }

    async fn table_oid(&self, conn: &mut PgConnection) -> Result<Option<i64>, JobError> {
        sqlx::query_scalar("SELECT to_regclass($1)::oid::bigint")
            .bind(self.table.quoted())
            .fetch_one(&mut *conn)
            .await
            .map_err(sql_err("looking up the table"))
    }

    /// Deletes the rows the transactions `xids` inserted into the table.
    async fn delete_rows(&self, conn: &mut PgConnection, xids: &[String]) -> Result<u64, JobError> {
        if xids.is_empty() {
            return Ok(0);
        }
        let sql = format!(
            "DELETE FROM {} WHERE xmin = ANY($1::text[]::xid8[]::xid[])",
            self.table.quoted()
        );
        let done = sqlx::query(AssertSqlSafe(sql))
            .bind(xids)
            .execute(&mut *conn)
            .await
            .map_err(|e| {
                JobError::from(PgError::sql(
                    format!("removing an unfinished load from {}", self.table),
                    e,
                ))
            })?;
        Ok(done.rows_affected())
    }

    /// Decides, in the caller's transaction, what this run does with one input (see
    /// [`state::claim`]) and records the decision: claims the entry for a load (deleting an
    /// abandoned partial load of another run first), or takes over a finished but unpublished
    /// one. Runs deciding about the same input take turns.
    pub async fn claim(
        &self,
        conn: &mut PgConnection,
        v: &Version<'_>,
        progress: bool,
    ) -> Result<Claim, JobError> {
        sqlx::query("SELECT pg_advisory_xact_lock(hashtextextended($1 || chr(10) || $2, 0))")
            .bind(self.scope)
            .bind(v.url)
            .execute(&mut *conn)
            .await
            .map_err(sql_err("locking the ledger entry"))?;
        let Some(oid) = self.table_oid(conn).await? else {
            return Err(JobError::temporary(format!(
                "table {} disappeared while run {} was loading into it; a rerun starts over",
                self.table, self.run_key
            )));
        };
        let entry = self.entry(conn, v.url).await?;
        let alive = match &entry {
            Some(e) if !e.done && e.run.as_deref().is_some_and(|r| r != self.run_key) => {
                let owner = e.run.as_deref().unwrap_or_default();
                PostgresCheckpoints::lease_held(conn, owner)
                    .await
                    .map_err(JobError::from)?
            }
            _ => false,
        };
        let decision = state::claim(
            entry.as_ref(),
            self.run_key,
            progress,
            v.etag,
            v.size,
            oid,
            |_| alive,
        );
        match &decision {
            Claim::Load { undo, .. } => {
                let removed = self.delete_rows(conn, undo).await?;
                if !undo.is_empty() {
                    tracing::warn!(input = v.url, table = %self.table, rows = removed, "removed an abandoned partial load of this input by another run");
                }
                let mine = entry.as_ref().is_some_and(|e| {
                    e.run.as_deref() == Some(self.run_key) && e.table_oid == Some(oid) && !e.done
                });
                if !mine {
                    // What to restore if this run is undone: the entry as it was before any
                    // unfinished load (an undone one restores what it had replaced).
                    let previous = match entry {
                        Some(e) if e.table_oid != Some(oid) => None,
                        Some(e) if e.done => Some(Box::new(LoadedVersion {
                            xids: Vec::new(),
                            previous: None,
                            ..e
                        })),
                        Some(e) => e.previous,
                        None => None,
                    };
                    let claimed = LoadedVersion {
                        etag: v.etag.map(str::to_string),
                        size: v.size,
                        table_oid: Some(oid),
                        run: Some(self.run_key.to_string()),
                        done: false,
                        xids: Vec::new(),
                        previous,
                    };
                    self.put(conn, v.url, &claimed).await?;
                }
            }
            Claim::Skip { adopt: true } => {
                if let Some(mut e) = entry {
                    e.run = Some(self.run_key.to_string());
                    self.put(conn, v.url, &e).await?;
                }
            }
            Claim::Skip { adopt: false } | Claim::Busy { .. } => {}
        }
        Ok(decision)
    }

    /// At the start of a batch transaction, before the table's lock and any row: checks that
    /// this run still owns the input's entry for this very table, and locks it for the
    /// transaction (so everyone takes the entry before the table, and nobody waits in a
    /// circle). A run that lost its claim stops without committing. After the table's lock,
    /// [`Ledger::check_held_table`] makes sure the table did not change meanwhile.
    pub async fn hold(
        &self,
        conn: &mut PgConnection,
        url: &str,
    ) -> Result<LoadedVersion, JobError> {
        let oid = self.table_oid(conn).await?;
        let entry = self.entry(conn, url).await?;
        entry
            .filter(|e| {
                e.run.as_deref() == Some(self.run_key)
                    && oid.is_some()
                    && e.table_oid == oid
                    && !e.done
            })
            .ok_or_else(|| {
                JobError::temporary(format!(
                    "run {}: {url} is no longer this run's to load into {} (another run took it over, or the table was replaced); stopped without committing, a rerun decides again",
                    self.run_key, self.table
                ))
            })
    }

    /// After [`Ledger::hold`]: takes the lock every writer takes on the table (INSERT's) and
    /// checks the table under the name is still the one the entry is for.
    pub async fn lock_held_table(
        &self,
        conn: &mut PgConnection,
        held: &LoadedVersion,
    ) -> Result<(), JobError> {
        let lock = format!("LOCK TABLE {} IN ROW EXCLUSIVE MODE", self.table.quoted());
        match sqlx::query(AssertSqlSafe(lock)).execute(&mut *conn).await {
            Ok(_) => {}
            // Dropped while this run waited: a rerun decides again (and creates it).
            Err(sqlx::Error::Database(db)) if db.code().as_deref() == Some("42P01") => {
                return Err(self.replaced());
            }
            Err(e) => return Err(sql_err("locking the table")(e)),
        }
        self.check_held_table(conn, held).await
    }

    /// With the table locked: the entry [`Ledger::hold`] returned is for the table under the
    /// name now (a swap or replace while this transaction waited for the lock changes it).
    pub async fn check_held_table(
        &self,
        conn: &mut PgConnection,
        held: &LoadedVersion,
    ) -> Result<(), JobError> {
        let oid = self.table_oid(conn).await?;
        if oid.is_some() && oid == held.table_oid {
            Ok(())
        } else {
            Err(self.replaced())
        }
    }

    fn replaced(&self) -> JobError {
        JobError::temporary(format!(
            "run {}: table {} was replaced or dropped while this run waited for it; stopped without committing, a rerun decides again",
            self.run_key, self.table
        ))
    }

    /// At the end of a batch transaction: records the transaction among the input's (and,
    /// with `done`, that the input is complete).
    pub async fn record(
        &self,
        conn: &mut PgConnection,
        url: &str,
        mut held: LoadedVersion,
        done: bool,
    ) -> Result<(), JobError> {
        let xid: String = sqlx::query_scalar("SELECT pg_current_xact_id()::text")
            .fetch_one(&mut *conn)
            .await
            .map_err(sql_err("reading the transaction id"))?;
        if held.xids.last() != Some(&xid) {
            held.xids.push(xid);
        }
        held.done = done;
        self.put(conn, url, &held).await
    }

    /// A staged run publishing into an existing table: what to do with one of its inputs,
    /// given the ledger (the same rules as [`Ledger::claim`]). An abandoned partial load of
    /// another run is deleted first; a finished but unpublished one is taken over.
    pub async fn check_staged(
        &self,
        conn: &mut PgConnection,
        v: &Version<'_>,
    ) -> Result<StagedCheck, JobError> {
        match self.claim(conn, v, false).await? {
            Claim::Load { .. } => Ok(StagedCheck::Publish),
            Claim::Skip { .. } => Ok(StagedCheck::AlreadyThere),
            Claim::Busy { run } => Ok(StagedCheck::Busy { run }),
        }
    }

    /// A staged run's input is in the table `oid`, complete and published.
    pub async fn record_complete(
        &self,
        conn: &mut PgConnection,
        v: &Version<'_>,
        oid: Option<i64>,
    ) -> Result<(), JobError> {
        let entry = LoadedVersion::complete(v.etag.map(str::to_string), v.size, oid, self.run_key);
        self.put(conn, v.url, &entry).await
    }

    /// Forgets every entry: the table is replaced by one holding exactly this run's inputs.
    pub async fn clear(&self, conn: &mut PgConnection) -> Result<(), JobError> {
        sqlx::query("DELETE FROM etl_checkpoint WHERE scope = $1")
            .bind(self.scope)
            .execute(&mut *conn)
            .await
            .map_err(sql_err("clearing the table's ledger"))?;
        Ok(())
    }

    /// In the run's final transaction: the run's entries become permanent (nothing of them is
    /// undone any more).
    pub async fn settle(&self, conn: &mut PgConnection) -> Result<(), JobError> {
        sqlx::query(
            "UPDATE etl_checkpoint SET state = state - 'xids' - 'previous', updated_at = now() \
             WHERE scope = $1 AND state->>'run' = $2",
        )
        .bind(self.scope)
        .bind(self.run_key)
        .execute(&mut *conn)
        .await
        .map_err(sql_err("settling the table's ledger"))?;
        Ok(())
    }

    /// Undoes everything this run put into the table and did not publish: its rows (by the
    /// transactions that inserted them) and its ledger entries (the previous ones come back).
    /// Returns the rows removed.
    pub async fn undo(&self, conn: &mut PgConnection) -> Result<u64, JobError> {
        let Some(oid) = self.table_oid(conn).await? else {
            return Ok(0);
        };
        let rows: Vec<(String, serde_json::Value)> = sqlx::query_as(
            "SELECT name, state FROM etl_checkpoint WHERE scope = $1 AND state->>'run' = $2 ORDER BY name FOR UPDATE",
        )
        .bind(self.scope)
        .bind(self.run_key)
        .fetch_all(&mut *conn)
        .await
        .map_err(sql_err("reading the table's ledger"))?;
        let mut removed = 0;
        for (url, v) in rows {
            let e = LoadedVersion::decode(self.scope, &url, &v)?;
            if e.settled() {
                continue;
            }
            if e.table_oid == Some(oid) {
                removed += self.delete_rows(conn, &e.xids).await?;
            }
            match e.previous {
                Some(p) => self.put(conn, &url, &p).await?,
                None => {
                    sqlx::query("DELETE FROM etl_checkpoint WHERE scope = $1 AND name = $2")
                        .bind(self.scope)
                        .bind(&url)
                        .execute(&mut *conn)
                        .await
                        .map_err(sql_err("undoing a ledger entry"))?;
                }
            }
        }
        Ok(removed)
    }

    /// Drops columns this run added, if no row holds a value in them any more (after
    /// [`Ledger::undo`]). Best effort within the lock timeout: a column that stays is harmless.
    pub async fn drop_added_columns(
        &self,
        conn: &mut PgConnection,
        columns: &[String],
        policy: &super::LockPolicy,
    ) -> Result<Vec<String>, JobError> {
        let mut dropped = Vec::new();
        for col in columns {
            let exists: bool = sqlx::query_scalar(
                "SELECT EXISTS (SELECT 1 FROM pg_attribute WHERE attrelid = to_regclass($1) AND attname = $2 AND NOT attisdropped)",
            )
            .bind(self.table.quoted())
            .bind(col)
            .fetch_one(&mut *conn)
            .await
            .map_err(sql_err("looking up a column"))?;
            if !exists {
                continue;
            }
            sqlx::query("SAVEPOINT etl_drop_column")
                .execute(&mut *conn)
                .await
                .map_err(sql_err("savepoint"))?;
            match self.drop_if_empty(conn, col, policy).await {
                Ok(gone) => {
                    sqlx::query("RELEASE SAVEPOINT etl_drop_column")
                        .execute(&mut *conn)
                        .await
                        .map_err(sql_err("savepoint"))?;
                    if gone {
                        dropped.push(col.clone());
                    }
                }
                Err(e) => {
                    tracing::warn!(table = %self.table, column = %col, error = %e, "could not drop a column this run added; it stays (empty)");
                    sqlx::query("ROLLBACK TO SAVEPOINT etl_drop_column")
                        .execute(&mut *conn)
                        .await
                        .map_err(sql_err("savepoint"))?;
                }
            }
        }
        Ok(dropped)
    }

    /// Drops `col` if no row holds a value in it; whether it did.
    async fn drop_if_empty(
        &self,
        conn: &mut PgConnection,
        col: &str,
        policy: &super::LockPolicy,
    ) -> Result<bool, super::Attempt> {
        let (t, q) = (self.table.quoted(), quote_ident(col));
        super::lock::lock_table(conn, self.table, super::LockMode::AccessExclusive, policy).await?;
        let used: bool = sqlx::query_scalar(AssertSqlSafe(format!(
            "SELECT EXISTS (SELECT 1 FROM {t} WHERE {q} IS NOT NULL)"
        )))
        .fetch_one(&mut *conn)
        .await
        .map_err(sql_err("checking a column"))?;
        if !used {
            sqlx::query(AssertSqlSafe(format!("ALTER TABLE {t} DROP COLUMN {q}")))
                .execute(&mut *conn)
                .await
                .map_err(sql_err("dropping a column"))?;
        }
        Ok(!used)
    }
}

/// What a staged run does with one of its inputs when it publishes into an existing table.
#[derive(Debug, PartialEq, Eq)]
pub enum StagedCheck {
    Publish,
    /// The table holds this version already (loaded by another run).
    AlreadyThere,
    /// Another live run is loading it straight into the table.
    Busy {
        run: String,
    },
}
