//! Which column each property goes to, and the schema changes a batch needs first: new stage
//! columns (widened ones for a run's own stage), or new columns of the live table for direct
//! appends (counted against `--max-new-columns`).

use std::collections::HashMap;

use etl_core::JobError;
use etl_core::postgres::quote_ident;
use etl_geo::Record;
use etl_sinks::{ColumnKind, ColumnSource, CopyColumn, CopyEncoder};
use rustc_hash::FxHashMap;
use sqlx::{AssertSqlSafe, PgConnection};

use super::names::{column_for, property_of};
use super::schema::{GEOM, ID, SEQ, discover, fits, sql_err, table_columns};
use super::{PgTarget, Strategy};

impl PgTarget {
    /// Rebuilds the COPY column list from the copy table's columns: every stage column, or for
    /// direct appends `id`, `geom` and the target columns of properties seen in the data.
    pub(super) fn rebuild(&mut self) {
        let mut columns = Vec::new();
        let mut props = FxHashMap::default();
        if let Some(c) = self.copy_columns.iter().find(|c| c.name == ID) {
            columns.push(CopyColumn {
                name: ID.into(),
                kind: c.kind,
                source: ColumnSource::Id,
            });
        }
        for c in &self.copy_columns {
            if c.name == ID || c.name == GEOM || c.name == SEQ {
                continue;
            }
            if self.strategy == Strategy::Direct && !self.written.contains(&c.name) {
                continue;
            }
            // A hashed column is mapped once a feature shows which property it holds.
            let Some(prop) = property_of(&c.name).or_else(|| self.learned.get(&c.name).cloned())
            else {
                continue;
            };
            props.insert(prop.clone(), columns.len());
            columns.push(CopyColumn {
                name: c.name.clone(),
                kind: c.kind,
                source: ColumnSource::Property(prop),
            });
        }
        columns.push(CopyColumn {
            name: GEOM.into(),
            kind: ColumnKind::Geometry,
            source: ColumnSource::Geometry,
        });
        if self.strategy == Strategy::Merge {
            columns.push(CopyColumn {
                name: SEQ.into(),
                kind: ColumnKind::BigInt,
                source: ColumnSource::Ordinal,
            });
        }
        let names: Vec<String> = columns.iter().map(|c| quote_ident(&c.name)).collect();
        self.encoder = CopyEncoder::projecting(columns.clone(), self.srid, self.crs.clone());
        // Binary rows spare the server all text parsing (floats, hex EWKB); a table with a
        // column type we cannot send in binary (numeric, user types) gets text rows.
        self.binary = self.encoder.binary_supported();
        self.copy_sql = format!(
            "COPY {} ({}) FROM STDIN{}",
            self.copy_table().quoted(),
            names.join(", "),
            if self.binary {
                " WITH (FORMAT binary)"
            } else {
                ""
            }
        );
        self.columns = columns;
        self.props = props;
    }

    /// Whether the batch needs a schema change (new columns, or widened ones in a run's own
    /// stage) or, for direct appends, a column of the table mapped, before its rows can be
    /// copied.
    ///
    /// One pass, one hash lookup per property: this runs on every batch of the hot path.
    pub fn needs_ddl(&self, records: &[Record]) -> bool {
        let own = self.strategy.own_types();
        let id_is_text = self
            .columns
            .iter()
            .find(|c| c.source == ColumnSource::Id)
            .is_none_or(|c| matches!(c.kind, ColumnKind::Text | ColumnKind::Jsonb));
        for rec in records {
            let Ok(f) = &rec.feature else { continue };
            if own && !id_is_text && matches!(f.id, Some(etl_geo::FeatureId::Str(_))) {
                return true;
            }
            for (k, v) in &f.properties {
                if !self.select.is_empty() && !self.select.contains(k) {
                    continue;
                }
                let Some(kind) = ColumnKind::infer(v) else {
                    continue;
                };
                match self.props.get(k.as_str()) {
                    None => return true,
                    Some(&i) if own && !fits(self.columns[i].kind, kind) => return true,
                    Some(_) => {}
                }
            }
        }
        false
    }

    /// Staged runs: adds stage columns for properties first seen in this batch (typed as the
    /// target's column of that name when there is one), in the batch's transaction. A run's
    /// own stage also widens columns a later value does not fit.
    pub async fn add_stage_columns(
        &mut self,
        conn: &mut PgConnection,
        records: &[Record],
    ) -> Result<(), JobError> {
        if self.strategy.own_types() {
            self.widen(conn, records).await?;
        }
        let new = discover(records, &self.props, &self.select);
        if new.is_empty() {
            return Ok(());
        }
        if matches!(self.strategy, Strategy::Merge | Strategy::Swap)
            && let Some(target) = &self.target_columns
        {
            // Columns the merge will add to the live table: at most --max-new-columns.
            let mut missing: Vec<String> = self
                .copy_columns
                .iter()
                .filter(|c| c.name != SEQ && !target.iter().any(|t| t.name == c.name))
                .map(|c| c.name.clone())
                .collect();
            for (prop, _) in &new {
                let col = column_for(prop);
                if !target.iter().any(|t| t.name == col) && !missing.contains(&col) {
                    missing.push(col);
                }
            }
            self.check_new_columns(0, &missing)?;
        }
        for (prop, kind) in &new {
            let col = column_for(prop);
            if property_of(&col).is_none() {
                self.learned.insert(col.clone(), prop.clone());
            }
            let sql_type = self
                .target_columns
                .as_ref()
                .filter(|_| matches!(self.strategy, Strategy::Merge | Strategy::Swap))
                .and_then(|t| t.iter().find(|c| c.name == col))
                .map(|c| c.sql_type.clone())
                .unwrap_or_else(|| kind.sql_type().to_string());
            let add = format!(
                "ALTER TABLE {} ADD COLUMN IF NOT EXISTS {} {}",
                self.stage.quoted(),
                quote_ident(&col),
                sql_type
            );
            sqlx::query(AssertSqlSafe(add.as_str()))
                .execute(&mut *conn)
                .await
                .map_err(sql_err("adding a stage column"))?;
        }
        self.copy_columns = table_columns(conn, &self.stage).await?.unwrap_or_default();
        self.rebuild();
        Ok(())
    }

    /// Fails with exit 65, naming the count, when adding `new` to what this run added before
    /// would pass `--max-new-columns`.
    pub(super) fn check_new_columns(&self, before: usize, new: &[String]) -> Result<(), JobError> {
        let cap = self.limits.max_new_columns;
        if before + new.len() <= cap {
            return Ok(());
        }
        let shown: Vec<&str> = new.iter().take(8).map(String::as_str).collect();
        Err(JobError::bad_input(format!(
            "{} properties have no column in table {} ({}{}){}; that is more than --max-new-columns {cap} for one run: nothing of this run was published",
            new.len(),
            self.table,
            shown.join(", "),
            if new.len() > shown.len() { ", …" } else { "" },
            if before > 0 {
                format!(" beside the {before} columns this run added already")
            } else {
                String::new()
            }
        )))
    }

    /// Direct appends: maps the batch's new properties to columns the table has (another run
    /// may have added them since this run looked); returns the properties that still have no
    /// column. Needs no lock beyond reading the catalog.
    pub async fn map_table_columns(
        &mut self,
        conn: &mut PgConnection,
        records: &[Record],
    ) -> Result<Vec<(String, ColumnKind)>, JobError> {
        self.copy_columns = table_columns(conn, &self.table).await?.ok_or_else(|| {
            JobError::temporary(format!(
                "table {} disappeared during the load; a rerun starts over",
                self.table
            ))
        })?;
        let new = discover(records, &self.props, &self.select);
        let mut missing = Vec::new();
        for (prop, kind) in new {
            let col = column_for(&prop);
            if self.copy_columns.iter().any(|c| c.name == col) {
                if property_of(&col).is_none() {
                    self.learned.insert(col.clone(), prop.clone());
                }
                self.written.insert(col);
            } else {
                missing.push((prop, kind));
            }
        }
        self.rebuild();
        Ok(missing)
    }

    /// Direct appends: adds columns to the live table for `new` properties, in the caller's
    /// transaction, which must hold the table's ACCESS EXCLUSIVE lock and commits with the
    /// rows that need them. Returns the columns added.
    pub async fn add_table_columns(
        &mut self,
        conn: &mut PgConnection,
        new: &[(String, ColumnKind)],
    ) -> Result<Vec<String>, JobError> {
        let cols: Vec<String> = new.iter().map(|(p, _)| column_for(p)).collect();
        self.check_new_columns(self.added.len(), &cols)?;
        let mut added = Vec::new();
        for ((prop, kind), col) in new.iter().zip(&cols) {
            let add = format!(
                "ALTER TABLE {} ADD COLUMN IF NOT EXISTS {} {}",
                self.table.quoted(),
                quote_ident(col),
                kind.sql_type()
            );
            sqlx::query(AssertSqlSafe(add.as_str()))
                .execute(&mut *conn)
                .await
                .map_err(sql_err("adding a column"))?;
            if property_of(col).is_none() {
                self.learned.insert(col.clone(), prop.clone());
            }
            self.written.insert(col.clone());
            added.push(col.clone());
        }
        tracing::info!(table = %self.table, columns = ?added, "added columns for new properties");
        self.added.extend(added.iter().cloned());
        self.copy_columns = table_columns(conn, &self.table).await?.unwrap_or_default();
        self.rebuild();
        Ok(added)
    }

    /// Widens stage columns whose type the batch's values do not fit (a run's own stage).
    async fn widen(&mut self, conn: &mut PgConnection, records: &[Record]) -> Result<(), JobError> {
        let wanted = self.widen_plan(records);
        if wanted.is_empty() {
            return Ok(());
        }
        for (col, kind) in &wanted {
            let q = quote_ident(col);
            let using = if *kind == ColumnKind::Jsonb {
                format!("to_jsonb({q})")
            } else {
                format!("{q}::{}", kind.sql_type())
            };
            let sql = format!(
                "ALTER TABLE {} ALTER COLUMN {q} TYPE {} USING {using}",
                self.stage.quoted(),
                kind.sql_type()
            );
            tracing::info!(column = %col, to = kind.sql_type(), "widening a column to fit later values");
            sqlx::query(AssertSqlSafe(sql))
                .execute(&mut *conn)
                .await
                .map_err(sql_err("widening a column"))?;
        }
        self.copy_columns = table_columns(conn, &self.stage).await?.unwrap_or_default();
        self.rebuild();
        Ok(())
    }

    /// Columns the batch's values do not fit, with the kind that fits them all.
    fn widen_plan(&self, records: &[Record]) -> HashMap<String, ColumnKind> {
        let mut wanted: HashMap<String, ColumnKind> = HashMap::new();
        for rec in records {
            let Ok(f) = &rec.feature else { continue };
            if let Some(etl_geo::FeatureId::Str(_)) = &f.id
                && let Some(c) = self.columns.iter().find(|c| c.source == ColumnSource::Id)
                && !matches!(c.kind, ColumnKind::Text | ColumnKind::Jsonb)
            {
                wanted.insert(ID.to_string(), ColumnKind::Text);
            }
            for (prop, v) in &f.properties {
                let Some(&i) = self.props.get(prop) else {
                    continue;
                };
                let Some(kind) = ColumnKind::infer(v) else {
                    continue;
                };
                let col = &self.columns[i];
                let current = wanted.get(&col.name).copied().unwrap_or(col.kind);
                if fits(current, kind) {
                    continue;
                }
                wanted.insert(col.name.clone(), ColumnKind::unify(current, kind));
            }
        }
        wanted
    }
}
