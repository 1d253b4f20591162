//! Loading into PostGIS, exactly once.
//!
//! Every run writes into its own stage table (named after the run key) in checkpointed
//! transactions: a batch of rows and the checkpoint that says "ordinals below N are in" commit
//! together, so a `kill -9` at any instant followed by a rerun continues from N without gaps or
//! duplicates. Only the final transaction touches the target: `replace` swaps the stage in
//! (readers see the old table or the new one), `append`/`upsert` move the stage rows over. The
//! rejects, the per-input ledger (what version of each input is loaded) and the run's "done"
//! mark commit in that same transaction.

use std::collections::HashMap;

use rustc_hash::FxHashMap;

use etl_core::JobError;
use etl_core::checkpoint::PostgresCheckpoints;
use etl_core::postgres::{PgError, TableName, quote_ident};
use etl_geo::{
    COPY_BINARY_HEADER, COPY_BINARY_TRAILER, ColumnKind, ColumnSource, CopyColumn, CopyEncoder,
    Record,
};
use serde_json::Value;
use sqlx::{AssertSqlSafe, PgConnection, PgPool, Row};

use crate::config::Mode;
use crate::rejects::{Reject, RejectsSink};

/// Column names the loader owns; a property of that name is stored as `<name>_`.
const ID: &str = "id";
const GEOM: &str = "geom";
const SEQ: &str = "_etl_seq";
const SRID: i32 = 4326;
/// Each input's ordinals live in their own range of the stage's sequence column.
const SEQ_INPUT_SHIFT: u32 = 40;

const REJECT_TABLE: &str = r#"
CREATE TABLE IF NOT EXISTS etl_reject (
    run_key text NOT NULL,
    input   text NOT NULL,
    line    bigint NOT NULL,
    ordinal bigint NOT NULL,
    reason  text NOT NULL
);
CREATE INDEX IF NOT EXISTS etl_reject_run_key_idx ON etl_reject (run_key);
"#;
const DDL_LOCK: i64 = 0x7461_6b65_746c_0002;

fn sql_err(context: &str) -> impl Fn(sqlx::Error) -> JobError + '_ {
    move |e| JobError::from(PgError::sql(context, e))
}

/// Whether a value of kind `value` can be stored in a column of kind `column` as it is.
fn fits(column: ColumnKind, value: ColumnKind) -> bool {
    column == value
        || matches!(column, ColumnKind::Jsonb | ColumnKind::Json)
        || matches!(
            (column, value),
            (
                ColumnKind::Double | ColumnKind::Real | ColumnKind::Numeric,
                ColumnKind::BigInt
            )
        )
}

/// The column a property is stored in. Plain names are kept as they are (that is what users
/// query); `id` and `geom` become `id_` and `geom_` beside the loader's own columns. Names
/// PostgreSQL cannot hold as they are (empty, over 63 bytes, with NUL) or that could collide
/// with the above (`id_`, `geom_`, anything starting `_etl`) become `_etl_` + a hash, so the
/// mapping is one-to-one and never truncates two names into one.
pub fn column_for(prop: &str) -> String {
    match prop {
        ID | GEOM => format!("{prop}_"),
        _ if is_plain(prop) => prop.to_string(),
        _ => {
            use sha2::{Digest, Sha256};
            format!(
                "_etl_{}",
                hex::encode(&Sha256::digest(prop.as_bytes())[..8])
            )
        }
    }
}

fn is_plain(prop: &str) -> bool {
    !prop.is_empty()
        && prop.len() <= 63
        && !prop.contains('\0')
        && !prop.starts_with("_etl")
        && prop != "id_"
        && prop != "geom_"
}

/// The property a column holds, when the column name alone tells (hashed names do not).
fn property_of(column: &str) -> Option<String> {
    match column {
        "id_" => Some(ID.into()),
        "geom_" => Some(GEOM.into()),
        c if c.starts_with("_etl") => None,
        c => Some(c.to_string()),
    }
}

/// The name of an index (or other object) derived from a table's name: `<table>_<suffix>`, or,
/// when that would pass PostgreSQL's 63-byte limit (and be silently truncated into another
/// object's name), the table name shortened and made unique with a hash.
pub fn derived_name(table: &str, suffix: &str) -> String {
    let full = format!("{table}_{suffix}");
    if full.len() <= 63 {
        return full;
    }
    use sha2::{Digest, Sha256};
    let hash = hex::encode(&Sha256::digest(table.as_bytes())[..4]);
    let mut end = 63usize.saturating_sub(suffix.len() + hash.len() + 2);
    while !table.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}_{hash}_{suffix}", &table[..end])
}

/// Suffix of the unique index on an upsert key: the key's name, or its hash when long.
fn key_suffix(key: &str) -> String {
    if key.len() <= 24 && !key.contains('\0') {
        format!("{key}_key")
    } else {
        use sha2::{Digest, Sha256};
        format!("{}_key", hex::encode(&Sha256::digest(key.as_bytes())[..4]))
    }
}

/// The stage table of a run: beside the target, named after it and the run key.
pub fn stage_name(table: &TableName, run_key: &str) -> TableName {
    let mut end = table.name.len().min(45);
    while !table.name.is_char_boundary(end) {
        end -= 1;
    }
    table.sibling(&format!(
        "{}__etl_{}",
        &table.name[..end],
        run_key.get(..12).unwrap_or(run_key)
    ))
}

/// The type constraint of an existing table's `geom` column: None for plain `geometry`,
/// `Some("Point")` for `geometry(Point,…)`. A column with another SRID, or with Z/M dimensions,
/// cannot take what this job writes (2D, SRID 4326): that is a configuration error.
async fn geometry_constraint(
    conn: &mut PgConnection,
    table: &TableName,
) -> Result<Option<String>, JobError> {
    let row: Option<(String, i32)> = sqlx::query_as(
        "SELECT postgis_typmod_type(a.atttypmod)::text, postgis_typmod_srid(a.atttypmod) \
         FROM pg_attribute a WHERE a.attrelid = to_regclass($1) AND a.attname = 'geom' AND a.atttypmod <> -1",
    )
    .bind(table.quoted())
    .fetch_optional(&mut *conn)
    .await
    .map_err(sql_err("reading the geometry column's type"))?;
    let Some((kind, srid)) = row else {
        return Ok(None);
    };
    if srid != 0 && srid != SRID {
        return Err(JobError::config(format!(
            "table {table}: column geom has SRID {srid}; etl-data writes WGS 84 (SRID {SRID})"
        )));
    }
    if kind.ends_with('Z') || kind.ends_with('M') {
        return Err(JobError::config(format!(
            "table {table}: column geom is {kind}; etl-data writes 2D geometries"
        )));
    }
    Ok((!kind.eq_ignore_ascii_case("Geometry")).then_some(kind))
}

/// The PostGIS name of a geometry's type.
fn geometry_type_name(g: &etl_geo::geo_types::Geometry<f64>) -> &'static str {
    use etl_geo::geo_types::Geometry as G;
    match g {
        G::Point(_) => "Point",
        G::Line(_) | G::LineString(_) => "LineString",
        G::Polygon(_) | G::Rect(_) | G::Triangle(_) => "Polygon",
        G::MultiPoint(_) => "MultiPoint",
        G::MultiLineString(_) => "MultiLineString",
        G::MultiPolygon(_) => "MultiPolygon",
        G::GeometryCollection(_) => "GeometryCollection",
    }
}

#[derive(Debug, Clone)]
struct TableColumn {
    name: String,
    kind: ColumnKind,
    sql_type: String,
}

async fn table_columns(
    conn: &mut PgConnection,
    table: &TableName,
) -> Result<Option<Vec<TableColumn>>, JobError> {
    let exists: bool = sqlx::query_scalar("SELECT to_regclass($1) IS NOT NULL")
        .bind(table.quoted())
        .fetch_one(&mut *conn)
        .await
        .map_err(sql_err("looking up the table"))?;
    if !exists {
        return Ok(None);
    }
    let rows = sqlx::query(
        "SELECT a.attname::text AS name, t.typname::text AS udt, \
         format_type(a.atttypid, a.atttypmod) AS sql_type \
         FROM pg_attribute a JOIN pg_type t ON t.oid = a.atttypid \
         WHERE a.attrelid = to_regclass($1) AND a.attnum > 0 AND NOT a.attisdropped \
         ORDER BY a.attnum",
    )
    .bind(table.quoted())
    .fetch_all(&mut *conn)
    .await
    .map_err(sql_err("reading the table's columns"))?;
    let mut out = Vec::with_capacity(rows.len());
    for r in rows {
        let name: String = r.try_get("name").map_err(sql_err("columns"))?;
        let udt: String = r.try_get("udt").map_err(sql_err("columns"))?;
        let sql_type: String = r.try_get("sql_type").map_err(sql_err("columns"))?;
        out.push(TableColumn {
            name,
            kind: ColumnKind::from_pg_type(&udt),
            sql_type,
        });
    }
    Ok(Some(out))
}

/// Column kinds for properties seen in `records` that have no column yet, unified over the
/// batch; properties only ever null get no column until a value shows up.
fn discover(
    records: &[Record],
    known: &FxHashMap<String, usize>,
    select: &[String],
) -> Vec<(String, ColumnKind)> {
    let mut found: Vec<(String, ColumnKind)> = Vec::new();
    let mut index: HashMap<&str, usize> = HashMap::new();
    for rec in records {
        let Ok(f) = &rec.feature else { continue };
        for (k, v) in &f.properties {
            if known.contains_key(k.as_str()) || (!select.is_empty() && !select.contains(k)) {
                continue;
            }
            let Some(kind) = ColumnKind::infer(v) else {
                continue;
            };
            match index.get(k.as_str()) {
                Some(&i) => found[i].1 = ColumnKind::unify(found[i].1, kind),
                None => {
                    index.insert(k.as_str(), found.len());
                    found.push((k.clone(), kind));
                }
            }
        }
    }
    found
}

fn id_kind(records: &[Record]) -> ColumnKind {
    let mut any_str = false;
    for rec in records {
        if let Ok(f) = &rec.feature
            && let Some(etl_geo::FeatureId::Str(_)) = f.id
        {
            any_str = true;
        }
    }
    if any_str {
        ColumnKind::Text
    } else {
        ColumnKind::BigInt
    }
}

pub struct PgTarget {
    pool: PgPool,
    pub table: TableName,
    pub stage: TableName,
    mode: Mode,
    run_key: String,
    select: Vec<String>,
    /// Property name -> index into `columns` (looked up for every property of every feature).
    props: FxHashMap<String, usize>,
    /// Hashed column name -> the property it holds, as seen in this run's features.
    learned: FxHashMap<String, String>,
    columns: Vec<CopyColumn>,
    /// Target (append/upsert) or stage (replace) columns as the database has them.
    table_columns: Vec<TableColumn>,
    key_column: Option<String>,
    /// The geometry type the target's `geom` column is constrained to (`Point`, …), if any.
    geom_type: Option<String>,
    encoder: CopyEncoder,
    /// Rows go as binary COPY tuples (else text rows).
    binary: bool,
    copy_sql: String,
}

impl PgTarget {
    /// Prepares the stage (and for append/upsert the target) for a run; on a resumed run the
    /// existing stage is reused as it is.
    pub async fn open(
        pool: PgPool,
        table: TableName,
        mode: Mode,
        key: Option<String>,
        select: Vec<String>,
        run_key: &str,
        sample: &[Record],
    ) -> Result<PgTarget, JobError> {
        let stage = stage_name(&table, run_key);
        let mut tx = pool.begin().await.map_err(sql_err("preparing tables"))?;
        sqlx::query("SELECT pg_advisory_xact_lock($1)")
            .bind(DDL_LOCK)
            .execute(&mut *tx)
            .await
            .map_err(sql_err("preparing tables"))?;
        sqlx::raw_sql(REJECT_TABLE)
            .execute(&mut *tx)
            .await
            .map_err(sql_err("creating etl_reject"))?;

        let key_column = key.as_deref().map(|k| {
            if k == ID {
                ID.to_string()
            } else {
                column_for(k)
            }
        });
        // The table whose columns define what we write.
        let defining = if mode == Mode::Replace {
            &stage
        } else {
            &table
        };
        let mut cols = table_columns(&mut tx, defining).await?;
        if cols.is_none() {
            let mut defs = vec![format!(
                "{} {}",
                quote_ident(ID),
                id_kind(sample).sql_type()
            )];
            for (prop, kind) in discover(sample, &FxHashMap::default(), &select) {
                defs.push(format!(
                    "{} {}",
                    quote_ident(&column_for(&prop)),
                    kind.sql_type()
                ));
            }
            defs.push(format!(
                "{} {}",
                quote_ident(GEOM),
                ColumnKind::Geometry.sql_type()
            ));
            let create = format!("CREATE TABLE {} ({})", defining.quoted(), defs.join(", "));
            sqlx::query(AssertSqlSafe(create.as_str()))
                .execute(&mut *tx)
                .await
                .map_err(sql_err("creating the table"))?;
            if mode != Mode::Replace {
                // A table we create for append/upsert gets its indexes now; replace builds them
                // after the bulk load, which is much faster.
                let gist = format!(
                    "CREATE INDEX IF NOT EXISTS {} ON {} USING gist ({})",
                    quote_ident(&derived_name(&table.name, "geom_idx")),
                    table.quoted(),
                    quote_ident(GEOM)
                );
                sqlx::query(AssertSqlSafe(gist.as_str()))
                    .execute(&mut *tx)
                    .await
                    .map_err(sql_err("creating the GIST index"))?;
                if mode == Mode::Append {
                    let idx = format!(
                        "CREATE INDEX IF NOT EXISTS {} ON {} ({})",
                        quote_ident(&derived_name(&table.name, "id_idx")),
                        table.quoted(),
                        quote_ident(ID)
                    );
                    sqlx::query(AssertSqlSafe(idx.as_str()))
                        .execute(&mut *tx)
                        .await
                        .map_err(sql_err("creating the id index"))?;
                }
            }
            cols = table_columns(&mut tx, defining).await?;
        }
        let table_cols = cols.unwrap_or_default();
        if !table_cols
            .iter()
            .any(|c| c.name == GEOM && c.kind == ColumnKind::Geometry)
        {
            return Err(JobError::config(format!(
                "table {defining} has no geometry column \"geom\""
            )));
        }
        let geom_type = geometry_constraint(&mut tx, defining).await?;
        if let (Mode::Upsert, Some(k)) = (mode, &key_column) {
            if !table_cols.iter().any(|c| &c.name == k) {
                // The key property may simply not have been in the sample; add it as text only
                // if it is never seen is wrong, so ask for data that has it.
                let kind = discover(sample, &FxHashMap::default(), &[])
                    .into_iter()
                    .find(|(p, _)| &column_for(p) == k)
                    .map(|(_, kind)| kind)
                    .ok_or_else(|| {
                        JobError::bad_input(format!(
                            "--key {k}: no feature in the first batch has this property"
                        ))
                    })?;
                let add = format!(
                    "ALTER TABLE {} ADD COLUMN IF NOT EXISTS {} {}",
                    table.quoted(),
                    quote_ident(k),
                    kind.sql_type()
                );
                sqlx::query(AssertSqlSafe(add.as_str()))
                    .execute(&mut *tx)
                    .await
                    .map_err(sql_err("adding the key column"))?;
            }
            let uniq = format!(
                "CREATE UNIQUE INDEX IF NOT EXISTS {} ON {} ({})",
                quote_ident(&derived_name(&table.name, &key_suffix(k))),
                table.quoted(),
                quote_ident(k)
            );
            sqlx::query(AssertSqlSafe(uniq.as_str()))
                .execute(&mut *tx)
                .await
                .map_err(|e| {
                    JobError::from(PgError::sql(
                        format!("--key {k}: cannot make it unique in {table}"),
                        e,
                    ))
                })?;
        }
        let table_cols = table_columns(&mut tx, defining).await?.unwrap_or_default();

        if mode != Mode::Replace && table_columns(&mut tx, &stage).await?.is_none() {
            // The stage holds only the columns we write, typed as the target's, plus the
            // sequence that orders rows for upsert.
            let mut defs = vec![format!("{} bigint NOT NULL", quote_ident(SEQ))];
            for c in table_cols.iter().filter(|c| c.name == ID || c.name == GEOM) {
                defs.push(format!("{} {}", quote_ident(&c.name), c.sql_type));
            }
            let create = format!("CREATE TABLE {} ({})", stage.quoted(), defs.join(", "));
            sqlx::query(AssertSqlSafe(create.as_str()))
                .execute(&mut *tx)
                .await
                .map_err(sql_err("creating the stage table"))?;
        }
        tx.commit().await.map_err(sql_err("preparing tables"))?;

        let mut target = PgTarget {
            pool,
            table,
            stage,
            mode,
            run_key: run_key.to_string(),
            select,
            props: FxHashMap::default(),
            learned: FxHashMap::default(),
            columns: Vec::new(),
            table_columns: table_cols,
            key_column,
            geom_type,
            encoder: CopyEncoder::new(Vec::new(), SRID),
            binary: false,
            copy_sql: String::new(),
        };
        // A resumed stage may already have property columns: map them again.
        let stage_cols = if mode == Mode::Replace {
            target.table_columns.clone()
        } else {
            let mut conn = target.pool.acquire().await.map_err(sql_err("stage"))?;
            table_columns(&mut conn, &target.stage)
                .await?
                .unwrap_or_default()
        };
        target.rebuild(&stage_cols);
        Ok(target)
    }

    /// Rebuilds the column list from the stage's columns.
    fn rebuild(&mut self, stage_cols: &[TableColumn]) {
        let mut columns = Vec::new();
        let mut props = FxHashMap::default();
        let has = |name: &str| self.table_columns.iter().find(|c| c.name == name);
        if let Some(c) = has(ID) {
            columns.push(CopyColumn {
                name: ID.into(),
                kind: c.kind,
                source: ColumnSource::Id,
            });
        }
        for c in stage_cols {
            if c.name == ID || c.name == GEOM || c.name == SEQ {
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
        if self.mode != Mode::Replace {
            columns.push(CopyColumn {
                name: SEQ.into(),
                kind: ColumnKind::BigInt,
                source: ColumnSource::Ordinal,
            });
        }
        let names: Vec<String> = columns.iter().map(|c| quote_ident(&c.name)).collect();
        self.encoder = CopyEncoder::new(columns.clone(), SRID);
        // Binary rows spare the server all text parsing (floats, hex EWKB); a table with a
        // column type we cannot send in binary (numeric, user types) gets text rows.
        self.binary = self.encoder.binary_supported();
        self.copy_sql = format!(
            "COPY {} ({}) FROM STDIN{}",
            self.stage.quoted(),
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

    /// Adds columns for properties first seen in this batch, inside the batch's transaction.
    /// For append/upsert, a property the target already has a column for is mapped to it.
    /// In replace mode the stage and its column types are this run's own guess from the data,
    /// so a later value that does not fit widens the column instead of being rejected.
    pub async fn add_columns(
        &mut self,
        conn: &mut PgConnection,
        records: &[Record],
    ) -> Result<(), JobError> {
        if self.mode == Mode::Replace {
            self.widen(conn, records).await?;
        }
        let new = discover(records, &self.props, &self.select);
        if new.is_empty() {
            return Ok(());
        }
        for (prop, kind) in &new {
            let col = column_for(prop);
            if property_of(&col).is_none() {
                self.learned.insert(col.clone(), prop.clone());
            }
            let existing = self.table_columns.iter().find(|c| c.name == col).cloned();
            let sql_type = match &existing {
                Some(c) => c.sql_type.clone(),
                None => kind.sql_type().to_string(),
            };
            if existing.is_none() {
                let t = if self.mode == Mode::Replace {
                    &self.stage
                } else {
                    &self.table
                };
                let add = format!(
                    "ALTER TABLE {} ADD COLUMN IF NOT EXISTS {} {}",
                    t.quoted(),
                    quote_ident(&col),
                    sql_type
                );
                let added = if self.mode == Mode::Replace {
                    sqlx::query(AssertSqlSafe(add.as_str()))
                        .execute(&mut *conn)
                        .await
                } else {
                    // The live table's new (nullable) column commits on its own, at once:
                    // inside the batch transaction its exclusive lock would block readers of
                    // the table for the whole batch.
                    sqlx::query(AssertSqlSafe(add.as_str()))
                        .execute(&self.pool)
                        .await
                };
                added.map_err(sql_err("adding a column"))?;
                self.table_columns.push(TableColumn {
                    name: col.clone(),
                    kind: *kind,
                    sql_type: sql_type.clone(),
                });
            }
            if self.mode != Mode::Replace {
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
        }
        let stage_cols = table_columns(conn, &self.stage).await?.unwrap_or_default();
        self.rebuild(&stage_cols);
        Ok(())
    }

    /// Whether the batch needs a schema change (new columns, or widened ones in replace mode)
    /// before its rows can be copied.
    ///
    /// One pass, one hash lookup per property: this runs on every batch of the hot path.
    pub fn needs_ddl(&self, records: &[Record]) -> bool {
        let replace = self.mode == Mode::Replace;
        let id_is_text = self
            .columns
            .iter()
            .find(|c| c.source == ColumnSource::Id)
            .is_none_or(|c| matches!(c.kind, ColumnKind::Text | ColumnKind::Jsonb));
        for rec in records {
            let Ok(f) = &rec.feature else { continue };
            if replace && !id_is_text && matches!(f.id, Some(etl_geo::FeatureId::Str(_))) {
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
                    Some(&i) if replace && !fits(self.columns[i].kind, kind) => return true,
                    Some(_) => {}
                }
            }
        }
        false
    }

    /// Widens stage columns whose type the batch's values do not fit (replace mode only).
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
        let stage_cols = table_columns(conn, &self.stage).await?.unwrap_or_default();
        self.table_columns = stage_cols.clone();
        self.rebuild(&stage_cols);
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
                let got = geometry_type_name(g);
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

    /// Streams every reject of this run, in input order, into `sink` and commits it, a page at
    /// a time (memory stays flat whatever the count). Returns the rejects object's location.
    pub async fn write_rejects(&self, mut sink: RejectsSink) -> Result<Option<String>, JobError> {
        const PAGE: i64 = 10_000;
        let mut after: (String, i64) = (String::new(), -1);
        loop {
            let rows: Vec<(String, i64, i64, String)> = sqlx::query_as(
                "SELECT input, line, ordinal, reason FROM etl_reject \
                 WHERE run_key = $1 AND (input, ordinal) > ($2, $3) \
                 ORDER BY input, ordinal LIMIT $4",
            )
            .bind(&self.run_key)
            .bind(&after.0)
            .bind(after.1)
            .bind(PAGE)
            .fetch_all(&self.pool)
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

    /// The final transaction: the stage becomes (or joins) the target; `finish` adds the run's
    /// own bookkeeping before the commit.
    pub async fn publish(&self, conn: &mut PgConnection) -> Result<u64, JobError> {
        match self.mode {
            Mode::Replace => self.swap(conn).await,
            Mode::Append | Mode::Upsert => self.merge(conn).await,
        }
    }

    /// Replace mode: builds the stage's indexes before the swap, the unique index on id and the
    /// GIST index on geom at the same time on two connections (each a single-threaded build, so
    /// together they use both cores). Outside the swap transaction, so readers of the old table
    /// are not blocked meanwhile; rerunnable after a crash (IF NOT EXISTS).
    pub async fn prepare_publish(&self) -> Result<(), JobError> {
        if self.mode != Mode::Replace {
            return Ok(());
        }
        let stage = &self.stage;
        let unique = format!(
            "CREATE UNIQUE INDEX IF NOT EXISTS {} ON {} ({})",
            quote_ident(&derived_name(&stage.name, "id_key")),
            stage.quoted(),
            quote_ident(ID)
        );
        let plain = format!(
            "CREATE INDEX IF NOT EXISTS {} ON {} ({})",
            quote_ident(&derived_name(&stage.name, "id_idx")),
            stage.quoted(),
            quote_ident(ID)
        );
        let gist = format!(
            "CREATE INDEX IF NOT EXISTS {} ON {} USING gist ({})",
            quote_ident(&derived_name(&stage.name, "geom_idx")),
            stage.quoted(),
            quote_ident(GEOM)
        );
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

    async fn swap(&self, conn: &mut PgConnection) -> Result<u64, JobError> {
        let stage = &self.stage;
        let rows: i64 = sqlx::query_scalar(AssertSqlSafe(format!(
            "SELECT count(*) FROM {}",
            stage.quoted()
        )))
        .fetch_one(&mut *conn)
        .await
        .map_err(sql_err("counting rows"))?;
        let pkey = derived_name(&stage.name, "pkey");
        let unique_name = derived_name(&stage.name, "id_key");
        let has_unique: bool = sqlx::query_scalar("SELECT to_regclass($1) IS NOT NULL")
            .bind(format!(
                "{}.{}",
                quote_ident(&stage.schema),
                quote_ident(&unique_name)
            ))
            .fetch_one(&mut *conn)
            .await
            .map_err(sql_err("looking up indexes"))?;
        let id_index = if has_unique {
            sqlx::query("SAVEPOINT etl_pk")
                .execute(&mut *conn)
                .await
                .map_err(sql_err("savepoint"))?;
            let add_pk = format!(
                "ALTER TABLE {} ADD CONSTRAINT {} PRIMARY KEY USING INDEX {}",
                stage.quoted(),
                quote_ident(&pkey),
                quote_ident(&unique_name)
            );
            match sqlx::query(AssertSqlSafe(add_pk)).execute(&mut *conn).await {
                Ok(_) => pkey.clone(),
                Err(e) => {
                    // Some features have no id: the unique index stays, without a key.
                    tracing::warn!(table = %self.table, error = %e, "some features have no id; id gets a unique index, not a primary key");
                    sqlx::query("ROLLBACK TO SAVEPOINT etl_pk")
                        .execute(&mut *conn)
                        .await
                        .map_err(sql_err("savepoint"))?;
                    unique_name
                }
            }
        } else {
            derived_name(&stage.name, "id_idx")
        };
        let gist_name = derived_name(&stage.name, "geom_idx");
        // No CASCADE: a view on the old table must stop the swap, not vanish with it.
        sqlx::query(AssertSqlSafe(format!(
            "DROP TABLE IF EXISTS {}",
            self.table.quoted()
        )))
        .execute(&mut *conn)
        .await
        .map_err(sql_err("dropping the old table (do views depend on it?)"))?;
        sqlx::query(AssertSqlSafe(format!(
            "ALTER TABLE {} RENAME TO {}",
            stage.quoted(),
            quote_ident(&self.table.name)
        )))
        .execute(&mut *conn)
        .await
        .map_err(sql_err("renaming the new table into place"))?;
        let renames = [
            (
                id_index.clone(),
                if id_index == pkey {
                    derived_name(&self.table.name, "pkey")
                } else if id_index == derived_name(&stage.name, "id_key") {
                    derived_name(&self.table.name, "id_key")
                } else {
                    derived_name(&self.table.name, "id_idx")
                },
            ),
            (gist_name, derived_name(&self.table.name, "geom_idx")),
        ];
        for (from, to) in renames {
            let sql = format!(
                "ALTER INDEX {}.{} RENAME TO {}",
                quote_ident(&self.table.schema),
                quote_ident(&from),
                quote_ident(&to)
            );
            sqlx::query(AssertSqlSafe(sql.as_str()))
                .execute(&mut *conn)
                .await
                .map_err(sql_err("renaming an index"))?;
        }
        Ok(rows.max(0) as u64)
    }

    async fn merge(&self, conn: &mut PgConnection) -> Result<u64, JobError> {
        let cols: Vec<String> = self
            .columns
            .iter()
            .filter(|c| c.name != SEQ)
            .map(|c| quote_ident(&c.name))
            .collect();
        let list = cols.join(", ");
        let sql = match (&self.mode, &self.key_column) {
            (Mode::Upsert, Some(k)) => {
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
                "INSERT INTO {t} ({list}) SELECT {list} FROM {s} ORDER BY {seq}",
                t = self.table.quoted(),
                s = self.stage.quoted(),
                seq = quote_ident(SEQ),
            ),
        };
        let done = sqlx::query(AssertSqlSafe(sql.as_str()))
            .execute(&mut *conn)
            .await
            .map_err(|e| {
                JobError::from(PgError::sql(format!("moving rows into {}", self.table), e))
            })?;
        sqlx::query(AssertSqlSafe(format!("DROP TABLE {}", self.stage.quoted())))
            .execute(&mut *conn)
            .await
            .map_err(sql_err("dropping the stage table"))?;
        Ok(done.rows_affected())
    }

    /// Removes one input's rows from the stage (append/upsert; the input was published by
    /// another run). Returns the rows removed.
    pub async fn remove_input(&self, conn: &mut PgConnection, index: u64) -> Result<u64, JobError> {
        if self.mode == Mode::Replace {
            return Ok(0);
        }
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
            .map_err(sql_err("removing an input from the stage"))?;
        Ok(done.rows_affected())
    }

    /// Run bookkeeping removed in the final transaction.
    pub async fn clear_run(&self, conn: &mut PgConnection) -> Result<(), JobError> {
        sqlx::query("DELETE FROM etl_reject WHERE run_key = $1")
            .bind(&self.run_key)
            .execute(&mut *conn)
            .await
            .map_err(sql_err("clearing rejects"))?;
        sqlx::query("DELETE FROM etl_checkpoint WHERE scope = $1 AND name <> '_run'")
            .bind(&self.run_key)
            .execute(&mut *conn)
            .await
            .map_err(sql_err("clearing the checkpoint"))?;
        Ok(())
    }

    /// After a permanent failure: drop the stage and the run's checkpoint, leaving nothing.
    pub async fn discard(&self) -> Result<(), JobError> {
        let mut tx = self
            .pool
            .begin()
            .await
            .map_err(sql_err("discarding the stage"))?;
        sqlx::query(AssertSqlSafe(format!(
            "DROP TABLE IF EXISTS {}",
            self.stage.quoted()
        )))
        .execute(&mut *tx)
        .await
        .map_err(sql_err("dropping the stage table"))?;
        self.clear_run(&mut tx).await?;
        sqlx::query("DELETE FROM etl_checkpoint WHERE scope = $1")
            .bind(&self.run_key)
            .execute(&mut *tx)
            .await
            .map_err(sql_err("clearing the checkpoint"))?;
        tx.commit().await.map_err(sql_err("discarding the stage"))?;
        Ok(())
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn column_names_are_one_to_one() {
        assert_eq!(column_for("id"), "id_");
        assert_eq!(column_for("geom"), "geom_");
        assert_eq!(column_for("name"), "name");
        let odd = [
            "é".repeat(40),
            format!("{}a", "x".repeat(63)),
            format!("{}b", "x".repeat(63)),
            "id_".into(),
            "geom_".into(),
            "_etl_seq".into(),
            "_etl_id".into(),
            String::new(),
            "a\0b".into(),
            "id".into(),
            "geom".into(),
            "name".into(),
        ];
        let cols: std::collections::HashSet<String> = odd.iter().map(|p| column_for(p)).collect();
        assert_eq!(cols.len(), odd.len(), "no two properties share a column");
        for (p, c) in odd.iter().map(|p| (p, column_for(p))) {
            assert!(!c.is_empty() && c.len() <= 63 && !c.contains('\0'), "{c:?}");
            if let Some(back) = property_of(&c) {
                assert_eq!(&back, p, "reversible where not hashed");
            }
            assert_ne!(c, SEQ);
        }
    }

    #[test]
    fn what_fits_without_widening() {
        assert!(fits(ColumnKind::Double, ColumnKind::BigInt));
        assert!(fits(ColumnKind::Jsonb, ColumnKind::Text));
        assert!(!fits(ColumnKind::BigInt, ColumnKind::Double));
        assert!(!fits(ColumnKind::Text, ColumnKind::BigInt));
        assert!(!fits(ColumnKind::Boolean, ColumnKind::Text));
    }

    #[test]
    fn derived_names_never_collapse_into_the_table_name() {
        let long = "t".repeat(63);
        for suffix in ["geom_idx", "id_idx", "pkey", "id_key"] {
            let n = derived_name(&long, suffix);
            assert!(n.len() <= 63 && n.ends_with(suffix) && n != long, "{n}");
        }
        assert_ne!(
            derived_name(&long, "geom_idx"),
            derived_name(&"t".repeat(62), "geom_idx")
        );
        assert_eq!(derived_name("pts", "geom_idx"), "pts_geom_idx");
        assert!(derived_name(&long, &key_suffix(&"k".repeat(60))).len() <= 63);
    }

    #[test]
    fn stage_names_fit() {
        let t = TableName::parse(&"t".repeat(63)).unwrap();
        let s = stage_name(&t, "0123456789abcdef0123");
        assert!(s.name.len() <= 63);
        assert!(s.name.ends_with("__etl_0123456789ab"));
    }
}
