//! Loading into PostGIS, exactly once.
//!
//! Rows go in batches of `--checkpoint-every` features; each batch's rows commit in one
//! transaction with the checkpoint that says "ordinals below N are in", so a `kill -9` at any
//! instant followed by a rerun continues from N without gaps or duplicates. Where the rows go
//! depends on the [`Strategy`]:
//!
//! - `replace`, and `append` into a missing table ([`Strategy::Replace`], [`Strategy::Build`]):
//!   into a stage table of the run, indexed once loaded and then swapped (or renamed) into place
//!   in one transaction. Readers see the old table (or none) or the new one, never half of one.
//! - `append` into an existing table ([`Strategy::Direct`]): straight into the table. The
//!   table's ledger ([`Ledger`]) records in the same transactions which run loads which input
//!   and which transactions inserted its rows, so a run that fails for good, or that is
//!   abandoned and then superseded by another run, is undone row for row.
//! - `append` into an existing table that is small beside the input ([`Strategy::Swap`], see
//!   [`swap`]): into a stage shaped like the table, indexed once, then in one transaction the
//!   table's rows are copied in and the stage swapped into place, as for `replace`.
//! - `upsert` ([`Strategy::Merge`]): into a stage, merged with `INSERT … ON CONFLICT` at the
//!   end (the last occurrence of a key in input order wins).
//!
//! Schema changes to a live table happen only in a transaction that also publishes rows (the
//! final one, or for direct appends the batch that first needs the column), under a bounded
//! lock wait ([`lock`]), and at most `--max-new-columns` per run.

mod carry;
mod columns;
mod ledger;
mod lock;
mod names;
mod publish;
mod rejects;
mod schema;
mod swap;

use rustc_hash::{FxHashMap, FxHashSet};

use etl_core::JobError;
use etl_core::checkpoint::PostgresCheckpoints;
use etl_core::postgres::{TableName, quote_ident};
use etl_geo::Record;
use etl_sinks::{
    COPY_BINARY_HEADER, COPY_BINARY_TRAILER, ColumnKind, ColumnSource, CopyColumn, CopyEncoder,
};
use serde_json::Value;
use sqlx::{AssertSqlSafe, PgConnection, PgPool};

use crate::config::Mode;
use crate::rejects::Reject;

pub use carry::Carried;
pub use ledger::{Ledger, Version};
pub use lock::{Attempt, LockMode, LockPolicy, Retry, lock_table, with_retries};
pub use names::{column_for, derived_name, stage_name};
pub use publish::{Published, StagedInput};
pub use rejects::{clear_input_rejects, clear_run, ensure_reject_table, write_rejects};
pub use swap::{choose_swap, is_swap_stage};

use schema::{
    GEOM, ID, SEQ, SRID, TableColumn, discover, geometry_constraint, geometry_typmod, id_kind,
    sql_err, table_columns, table_srid, target_crs,
};

const DDL_LOCK: i64 = 0x7461_6b65_746c_0002;
/// Each input's ordinals live in their own range of the stage's sequence column.
const SEQ_INPUT_SHIFT: u32 = 40;

/// How a run's rows reach the table (see the module documentation).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Strategy {
    Replace,
    Build,
    Direct,
    Swap,
    Merge,
}

impl Strategy {
    /// The strategy of a run. A run that has a stage with committed progress (`resumed`: a
    /// swap stage or another) goes on with it, even if the table appeared meanwhile (it is
    /// merged in at the end). `swap`: an append into the existing table goes by swap.
    pub fn choose(
        mode: Mode,
        resumed: Option<Strategy>,
        table_exists: bool,
        swap: bool,
    ) -> Strategy {
        match (mode, resumed) {
            (Mode::Replace, _) => Strategy::Replace,
            (Mode::Upsert, _) => Strategy::Merge,
            (Mode::Append, Some(Strategy::Swap)) => Strategy::Swap,
            (Mode::Append, Some(_)) => Strategy::Build,
            (Mode::Append, None) if !table_exists => Strategy::Build,
            (Mode::Append, None) if swap => Strategy::Swap,
            (Mode::Append, None) => Strategy::Direct,
        }
    }

    /// Whether rows go through a stage table.
    pub fn staged(self) -> bool {
        self != Strategy::Direct
    }

    /// Whether the stage's columns are this run's own guesses from the data (a later value
    /// that does not fit widens the column instead of being rejected).
    fn own_types(self) -> bool {
        matches!(self, Strategy::Replace | Strategy::Build)
    }
}

/// Limits on what a run may do to a live table.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// Columns one run may add to an existing table.
    pub max_new_columns: usize,
    pub lock: LockPolicy,
}

pub struct PgTarget {
    pool: PgPool,
    pub table: TableName,
    pub stage: TableName,
    pub strategy: Strategy,
    run_key: String,
    select: Vec<String>,
    limits: Limits,
    /// Property name -> index into `columns` (looked up for every property of every feature).
    props: FxHashMap<String, usize>,
    /// Hashed column name -> the property it holds, as seen in this run's features.
    learned: FxHashMap<String, String>,
    columns: Vec<CopyColumn>,
    /// Columns of the table rows are copied into (the stage, or the target for direct
    /// appends), as the database has them.
    copy_columns: Vec<TableColumn>,
    /// Direct appends: the target's columns this run writes (a property seen in the data);
    /// the others keep their defaults.
    written: FxHashSet<String>,
    /// The target's columns when the run opened it (None: no target yet).
    target_columns: Option<Vec<TableColumn>>,
    key_column: Option<String>,
    /// The geometry type the target's `geom` column is constrained to (`Point`, …), if any.
    geom_type: Option<String>,
    /// The SRID geometries are written with, and its CRS (WGS 84 features are moved into it).
    srid: i32,
    crs: etl_geo::Crs,
    encoder: CopyEncoder,
    /// Rows go as binary COPY tuples (else text rows).
    binary: bool,
    copy_sql: String,
    /// Direct appends: columns this run added to the target, earlier attempts included.
    added: Vec<String>,
}

/// What a run needs to open its target.
pub struct OpenOptions<'a> {
    pub mode: Mode,
    pub strategy: Strategy,
    pub key: Option<String>,
    pub select: Vec<String>,
    pub run_key: &'a str,
    pub limits: Limits,
    /// Columns earlier attempts of this run added to the target (direct appends).
    pub added: Vec<String>,
    /// The SRID to write (`--t-srs`); None: an existing table's own SRID for loads into it,
    /// else 4326.
    pub srid: Option<i32>,
}

impl PgTarget {
    /// Prepares the stage (created from `sample` when missing; a resumed stage is reused as it
    /// is), or, for direct appends, reads the target. Never changes the target.
    pub async fn open(
        pool: PgPool,
        table: TableName,
        opts: OpenOptions<'_>,
        sample: &[Record],
    ) -> Result<PgTarget, JobError> {
        let strategy = opts.strategy;
        let stage = stage_name(&table, opts.run_key);
        let mut tx = pool.begin().await.map_err(sql_err("preparing tables"))?;
        sqlx::query("SELECT pg_advisory_xact_lock($1)")
            .bind(DDL_LOCK)
            .execute(&mut *tx)
            .await
            .map_err(sql_err("preparing tables"))?;
        let key_column = opts.key.as_deref().map(|k| {
            if k == ID {
                ID.to_string()
            } else {
                column_for(k)
            }
        });
        let target_columns = table_columns(&mut tx, &table).await?;
        if matches!(strategy, Strategy::Direct | Strategy::Swap) && target_columns.is_none() {
            return Err(JobError::temporary(format!(
                "table {table} disappeared before run {} could load into it; a rerun creates it",
                opts.run_key
            )));
        }
        if let (Mode::Upsert, Some(k)) = (opts.mode, &key_column) {
            let in_target = target_columns
                .as_ref()
                .is_some_and(|cols| cols.iter().any(|c| &c.name == k));
            let in_sample = k == ID
                || discover(sample, &FxHashMap::default(), &[])
                    .iter()
                    .any(|(p, _)| &column_for(p) == k);
            let in_stage = table_columns(&mut tx, &stage).await?.is_some();
            if !in_target && !in_sample && !in_stage {
                return Err(JobError::bad_input(format!(
                    "--key {k}: no feature in the first batch has this property"
                )));
            }
        }
        // Loads into the table write its own SRID (its column type's, or its stored
        // geometries'); --t-srs naming another is refused. A new or replaced table gets
        // --t-srs or 4326.
        let has_geom = target_columns.as_deref().is_some_and(|cols| {
            cols.iter()
                .any(|c| c.name == GEOM && c.kind == ColumnKind::Geometry)
        });
        let table_srid = match strategy {
            Strategy::Direct | Strategy::Swap | Strategy::Merge if has_geom => {
                table_srid(&mut tx, &table).await?
            }
            _ => None,
        };
        let srid = opts.srid.or(table_srid).unwrap_or(SRID);
        if let Some(stored) = table_srid
            && stored != srid
        {
            return Err(JobError::config(format!(
                "table {table}: its geometries are SRID {stored}; this run writes SRID {srid} (--t-srs EPSG:{stored} loads into it)"
            )));
        }
        // A stage kept from an earlier attempt was made for one SRID: the table's may have
        // changed since.
        if strategy != Strategy::Direct
            && let Some((_, staged)) = geometry_typmod(&mut tx, &stage).await?
            && staged != 0
            && staged != srid
        {
            return Err(JobError::config(format!(
                "stage {stage} of an earlier attempt holds SRID {staged}, but this run writes SRID {srid}; drop the stage table to start over"
            )));
        }
        let crs = target_crs(&mut tx, srid).await?;
        let copy_columns = match strategy {
            Strategy::Direct => target_columns.clone().unwrap_or_default(),
            _ => match table_columns(&mut tx, &stage).await? {
                Some(cols) => cols,
                None => {
                    if strategy == Strategy::Swap {
                        swap::create_stage(&mut tx, &stage, &table).await?;
                    } else {
                        create_stage(
                            &mut tx,
                            &stage,
                            strategy,
                            target_columns.as_deref(),
                            &opts.select,
                            sample,
                            srid,
                        )
                        .await?;
                    }
                    table_columns(&mut tx, &stage).await?.unwrap_or_default()
                }
            },
        };
        // The table whose geometry column decides what fits: the target when there is one.
        let defining = match (&target_columns, strategy) {
            (Some(_), Strategy::Direct | Strategy::Swap | Strategy::Merge) => &table,
            _ => &stage,
        };
        let defining_cols = if defining == &table {
            target_columns.as_deref().unwrap_or_default()
        } else {
            copy_columns.as_slice()
        };
        if !defining_cols
            .iter()
            .any(|c| c.name == GEOM && c.kind == ColumnKind::Geometry)
        {
            return Err(JobError::config(format!(
                "table {defining} has no geometry column \"geom\""
            )));
        }
        let geom_type = geometry_constraint(&mut tx, defining, srid).await?;
        tx.commit().await.map_err(sql_err("preparing tables"))?;

        let mut target = PgTarget {
            pool,
            table,
            stage,
            strategy,
            run_key: opts.run_key.to_string(),
            select: opts.select,
            limits: opts.limits,
            props: FxHashMap::default(),
            learned: FxHashMap::default(),
            columns: Vec::new(),
            copy_columns,
            written: FxHashSet::default(),
            target_columns,
            key_column,
            geom_type,
            encoder: CopyEncoder::new(Vec::new(), srid),
            srid,
            crs,
            binary: false,
            copy_sql: String::new(),
            added: opts.added,
        };
        target.rebuild();
        Ok(target)
    }

    /// The table rows are copied into.
    pub fn copy_table(&self) -> &TableName {
        if self.strategy == Strategy::Direct {
            &self.table
        } else {
            &self.stage
        }
    }

    pub fn pool(&self) -> &PgPool {
        &self.pool
    }

    pub fn limits(&self) -> &Limits {
        &self.limits
    }

    /// Columns this run added to the table (direct appends), earlier attempts included.
    pub fn added(&self) -> &[String] {
        &self.added
    }

    /// Encodes the accepted features of a batch as COPY rows; features that do not fit their
    /// columns, or lack the upsert key, become rejects.
    pub fn encode(
        &self,
        input_index: u64,
        input: &str,
        records: &[Record],
        out: &mut Vec<u8>,
        rejects: &mut Vec<Reject>,
    ) -> u64 {
        let mut written = 0;
        for rec in records {
            let f = match &rec.feature {
                Ok(f) => f,
                Err(r) => {
                    rejects.push(Reject::new(input, rec, r.reason.clone()));
                    continue;
                }
            };
            if let Some(k) = &self.key_column {
                let missing = if k == ID {
                    f.id.is_none()
                } else {
                    let prop =
                        self.columns
                            .iter()
                            .find(|c| &c.name == k)
                            .and_then(|c| match &c.source {
                                ColumnSource::Property(p) => Some(p.as_str()),
                                _ => None,
                            });
                    prop.is_none_or(|p| f.properties.get(p).is_none_or(Value::is_null))
                };
                if missing {
                    rejects.push(Reject::new(
                        input,
                        rec,
                        format!("upsert key {k:?} is missing"),
                    ));
                    continue;
                }
            }
            if let (Some(want), Some(g)) = (&self.geom_type, &f.geometry) {
                let got = schema::geometry_type_name(g);
                if !got.eq_ignore_ascii_case(want) {
                    rejects.push(Reject::new(
                        input,
                        rec,
                        format!("geometry type {got} does not fit column geom of type {want}"),
                    ));
                    continue;
                }
            }
            let seq = ((input_index << SEQ_INPUT_SHIFT) | rec.ordinal) as i64;
            let encoded = if self.binary {
                self.encoder.encode_binary(f, seq, out)
            } else {
                self.encoder.encode(f, seq, out)
            };
            match encoded {
                Ok(()) => written += 1,
                Err(conflict) => rejects.push(Reject::new(input, rec, conflict.to_string())),
            }
        }
        written
    }

    pub fn copy_sql(&self) -> &str {
        &self.copy_sql
    }

    /// Bytes that open a COPY stream of this target's format (the binary header, or nothing).
    pub fn copy_header(&self) -> &'static [u8] {
        if self.binary { COPY_BINARY_HEADER } else { b"" }
    }

    /// Bytes that close a COPY stream of this target's format.
    pub fn copy_trailer(&self) -> &'static [u8] {
        if self.binary {
            COPY_BINARY_TRAILER
        } else {
            b""
        }
    }

    /// After a permanent failure of a staged run: drop the stage and the run's checkpoint,
    /// leaving nothing.
    pub async fn discard(&self) -> Result<(), JobError> {
        discard_stage(&self.pool, &self.stage, &self.run_key).await
    }

    pub async fn analyze(&self) {
        if let Err(e) = sqlx::query(AssertSqlSafe(format!("ANALYZE {}", self.table.quoted())))
            .execute(&self.pool)
            .await
        {
            tracing::warn!(table = %self.table, error = %e, "ANALYZE failed");
        }
    }

    pub async fn save_state(
        conn: &mut PgConnection,
        scope: &str,
        name: &str,
        state: &Value,
    ) -> Result<(), JobError> {
        PostgresCheckpoints::save_in(conn, scope, name, state)
            .await
            .map_err(JobError::from)
    }
}

/// Drops a run's stage table and its checkpoint in one transaction.
pub async fn discard_stage(
    pool: &PgPool,
    stage: &TableName,
    run_key: &str,
) -> Result<(), JobError> {
    let mut tx = pool
        .begin()
        .await
        .map_err(sql_err("discarding the stage"))?;
    sqlx::query(AssertSqlSafe(format!(
        "DROP TABLE IF EXISTS {}",
        stage.quoted()
    )))
    .execute(&mut *tx)
    .await
    .map_err(sql_err("dropping the stage table"))?;
    clear_run(&mut tx, run_key).await?;
    sqlx::query("DELETE FROM etl_checkpoint WHERE scope = $1")
        .bind(run_key)
        .execute(&mut *tx)
        .await
        .map_err(sql_err("clearing the checkpoint"))?;
    tx.commit().await.map_err(sql_err("discarding the stage"))?;
    Ok(())
}

/// Creates a run's stage table. Replace and build stages are the future table: `id` and the
/// properties of the sample typed from the data, `geom`. A merge stage holds the columns to
/// write typed as the target's (new properties from the data) plus the input order.
async fn create_stage(
    conn: &mut PgConnection,
    stage: &TableName,
    strategy: Strategy,
    target: Option<&[TableColumn]>,
    select: &[String],
    sample: &[Record],
    srid: i32,
) -> Result<(), JobError> {
    let mut defs = Vec::new();
    let target_type = |name: &str| {
        target.and_then(|cols| {
            cols.iter()
                .find(|c| c.name == name)
                .map(|c| c.sql_type.clone())
        })
    };
    match (strategy, target) {
        (Strategy::Merge, Some(_)) => {
            defs.push(format!("{} bigint NOT NULL", quote_ident(SEQ)));
            for name in [ID, GEOM] {
                if let Some(t) = target_type(name) {
                    defs.push(format!("{} {t}", quote_ident(name)));
                }
            }
        }
        _ => {
            if strategy == Strategy::Merge {
                defs.push(format!("{} bigint NOT NULL", quote_ident(SEQ)));
            }
            defs.push(format!(
                "{} {}",
                quote_ident(ID),
                id_kind(sample).sql_type()
            ));
            for (prop, kind) in discover(sample, &FxHashMap::default(), select) {
                defs.push(format!(
                    "{} {}",
                    quote_ident(&column_for(&prop)),
                    kind.sql_type()
                ));
            }
            defs.push(format!(
                "{} {}",
                quote_ident(GEOM),
                ColumnKind::geometry_sql_type(srid)
            ));
        }
    }
    let create = format!("CREATE TABLE {} ({})", stage.quoted(), defs.join(", "));
    sqlx::query(AssertSqlSafe(create.as_str()))
        .execute(&mut *conn)
        .await
        .map_err(sql_err("creating the stage table"))?;
    Ok(())
}
