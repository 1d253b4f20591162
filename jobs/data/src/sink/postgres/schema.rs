//! What a table looks like: its columns as the database has them, the column types inferred
//! from features, and what fits where.

use std::collections::HashMap;

use etl_core::JobError;
use etl_core::postgres::{PgError, TableName};
use etl_geo::Record;
use etl_sinks::ColumnKind;
use rustc_hash::FxHashMap;
use sqlx::{PgConnection, Row};

/// Column names the loader owns; a property of that name is stored as `<name>_`.
pub const ID: &str = "id";
pub const GEOM: &str = "geom";
/// Input order of a staged row (upsert: the last occurrence of a key wins).
pub const SEQ: &str = "_etl_seq";
/// The SRID of a new table's geometry column without `--t-srs`.
pub const SRID: i32 = 4326;

pub(super) fn sql_err(context: &str) -> impl Fn(sqlx::Error) -> JobError + '_ {
    move |e| JobError::from(PgError::sql(context, e))
}

/// Whether a value of kind `value` can be stored in a column of kind `column` as it is.
pub(super) fn fits(column: ColumnKind, value: ColumnKind) -> bool {
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

/// The type modifier of a table's `geom` column: its geometry type (`Geometry`, `Point`, …)
/// and SRID (0: any), or None for a plain `geometry` column or no table.
pub(super) async fn geometry_typmod(
    conn: &mut PgConnection,
    table: &TableName,
) -> Result<Option<(String, i32)>, JobError> {
    sqlx::query_as(
        "SELECT postgis_typmod_type(a.atttypmod)::text, postgis_typmod_srid(a.atttypmod) \
         FROM pg_attribute a WHERE a.attrelid = to_regclass($1) AND a.attname = 'geom' AND a.atttypmod <> -1",
    )
    .bind(table.quoted())
    .fetch_optional(&mut *conn)
    .await
    .map_err(sql_err("reading the geometry column's type"))
}

/// The SRID an existing table's geometries are in: its column type's, else (a column of plain
/// `geometry` or SRID 0) the first stored geometry's; None when neither says.
pub(super) async fn table_srid(
    conn: &mut PgConnection,
    table: &TableName,
) -> Result<Option<i32>, JobError> {
    if let Some((_, srid)) = geometry_typmod(conn, table).await?
        && srid != 0
    {
        return Ok(Some(srid));
    }
    let sql = format!(
        "SELECT ST_SRID(geom) FROM {} WHERE geom IS NOT NULL LIMIT 1",
        table.quoted()
    );
    let stored: Option<i32> = sqlx::query_scalar(sqlx::AssertSqlSafe(sql))
        .fetch_optional(&mut *conn)
        .await
        .map_err(sql_err("reading the SRID of the table's geometries"))?;
    Ok(stored.filter(|&srid| srid != 0))
}

/// The type constraint of an existing table's `geom` column: None for plain `geometry`,
/// `Some("Point")` for `geometry(Point,…)`. A column with another SRID than the run writes
/// (`srid`), or with Z/M dimensions, cannot take its geometries: that is a configuration error.
pub(super) async fn geometry_constraint(
    conn: &mut PgConnection,
    table: &TableName,
    srid: i32,
) -> Result<Option<String>, JobError> {
    let Some((kind, column_srid)) = geometry_typmod(conn, table).await? else {
        return Ok(None);
    };
    if column_srid != 0 && column_srid != srid {
        return Err(JobError::config(format!(
            "table {table}: column geom has SRID {column_srid}; this run writes SRID {srid} (--t-srs EPSG:{column_srid} loads into it)"
        )));
    }
    if kind.ends_with('Z') || kind.ends_with('M') {
        return Err(JobError::config(format!(
            "table {table}: column geom is {kind}; etl-data writes 2D geometries"
        )));
    }
    Ok((!kind.eq_ignore_ascii_case("Geometry")).then_some(kind))
}

/// The coordinate system of SRID `srid` for a load: PostGIS must know the SRID (its
/// `spatial_ref_sys`), and etl-data must be able to move WGS 84 positions into it.
pub(super) async fn target_crs(
    conn: &mut PgConnection,
    srid: i32,
) -> Result<etl_geo::Crs, JobError> {
    let known: bool =
        sqlx::query_scalar("SELECT EXISTS (SELECT 1 FROM spatial_ref_sys WHERE srid = $1)")
            .bind(srid)
            .fetch_one(&mut *conn)
            .await
            .map_err(sql_err("looking up the SRID in spatial_ref_sys"))?;
    if !known {
        return Err(JobError::config(format!(
            "SRID {srid} is not in the database's spatial_ref_sys"
        )));
    }
    let code = u32::try_from(srid)
        .map_err(|_| JobError::config(format!("SRID {srid} is not an EPSG code")))?;
    etl_geo::Crs::from_epsg(code)
        .map_err(|e| JobError::config(format!("cannot write SRID {srid}: {e}")))
}

/// The PostGIS name of a geometry's type.
pub(super) fn geometry_type_name(g: &etl_geo::geo_types::Geometry<f64>) -> &'static str {
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
pub(super) struct TableColumn {
    pub name: String,
    pub kind: ColumnKind,
    pub sql_type: String,
}

/// The columns of `table` in order, None if it does not exist.
pub(super) async fn table_columns(
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
pub(super) fn discover(
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

/// The type of the id column of a table this run creates: text if any id is a string.
pub(super) fn id_kind(records: &[Record]) -> ColumnKind {
    let any_str = records.iter().any(|rec| {
        matches!(
            &rec.feature,
            Ok(f) if matches!(f.id, Some(etl_geo::FeatureId::Str(_)))
        )
    });
    if any_str {
        ColumnKind::Text
    } else {
        ColumnKind::BigInt
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn what_fits_without_widening() {
        assert!(fits(ColumnKind::Double, ColumnKind::BigInt));
        assert!(fits(ColumnKind::Jsonb, ColumnKind::Text));
        assert!(!fits(ColumnKind::BigInt, ColumnKind::Double));
        assert!(!fits(ColumnKind::Text, ColumnKind::BigInt));
        assert!(!fits(ColumnKind::Boolean, ColumnKind::Text));
    }
}
