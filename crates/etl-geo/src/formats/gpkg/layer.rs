//! What a feature table is: its geometry column and coordinate system (from the `gpkg_*`
//! tables), its columns and key (from SQLite's schema), and the queries that page through it.

use rusqlite::{Connection, OptionalExtension, types::ValueRef};

use super::{MAX_NAME, bounded, bounded_text, quote, refused, shown, sql_error};
use crate::crs::Crs;
use crate::error::ReadError;
use crate::formats::{ReadOptions, undeclared_crs};

/// Longest `gpkg_spatial_ref_sys.organization` read.
const MAX_ORGANIZATION: usize = 256;
/// Longest `gpkg_spatial_ref_sys.definition` read (what [`Crs::from_definition`] takes).
const MAX_DEFINITION: usize = 64 * 1024;

/// How rows are paged.
#[derive(Debug, Clone, PartialEq)]
pub(super) enum Key {
    /// By this integer key expression (a quoted column or a row id alias), ascending.
    Column(String),
    /// By `LIMIT … OFFSET …` (views, and tables without an integer key).
    Offset,
}

/// A property column.
#[derive(Debug, Clone)]
pub(super) struct Property {
    pub(super) name: String,
    /// Declared `BOOLEAN`: integers read as `true`/`false`.
    pub(super) boolean: bool,
}

/// A feature table ready to read. The queries' result columns are the key (NULL when paging
/// by offset), the geometry, the id (or NULL), then the properties.
#[derive(Debug)]
pub(super) struct Layer {
    /// The table's name as given, for messages.
    pub(super) table: String,
    pub(super) key: Key,
    pub(super) properties: Vec<Property>,
    pub(super) crs: Crs,
    /// The first page (`?1` = page size).
    pub(super) first: String,
    /// The next page (`?1` = page size, `?2` = the last key, or the offset).
    pub(super) next: String,
}

/// One row of `pragma_table_info`.
struct Column {
    name: String,
    declared: String,
    pk: i64,
}

impl Layer {
    pub(super) fn describe(
        conn: &Connection,
        file: &str,
        table: &str,
        opts: &ReadOptions,
    ) -> Result<Layer, ReadError> {
        let t = shown(table);
        let cancel = &opts.cancel;
        let err =
            |what: &'static str| move |e: rusqlite::Error| sql_error(file, what, e, Some(cancel));
        let bad = |message: String| refused(file, format!("table {t}: {message}"));

        let (geometry_column, srs_id) = conn
            .query_row(
                &format!(
                    "SELECT {}, srs_id FROM gpkg_geometry_columns WHERE table_name = ?1 LIMIT 1",
                    bounded("column_name", MAX_NAME)
                ),
                [table],
                |r| {
                    Ok((
                        bounded_text(r, 0, MAX_NAME),
                        match r.get_ref(2)? {
                            ValueRef::Integer(i) => Some(i),
                            _ => None,
                        },
                    ))
                },
            )
            .optional()
            .map_err(err("reading gpkg_geometry_columns"))?
            .ok_or_else(|| bad("not in gpkg_geometry_columns".into()))?;
        let geometry_column = geometry_column
            .map_err(|m| bad(format!("its column_name in gpkg_geometry_columns {m}")))?
            .ok_or_else(|| bad("no column_name in gpkg_geometry_columns".into()))?;
        let srs_id = srs_id
            .ok_or_else(|| bad("its srs_id in gpkg_geometry_columns is not an integer".into()))?;

        let crs = match &opts.source_crs {
            Some(given) => given.clone(),
            None => resolve_crs(conn, file, &t, table, srs_id)?,
        };

        let (name, kind, without_rowid) = conn
            .query_row(
                &format!(
                    "SELECT {}, type, wr FROM pragma_table_list(?1) WHERE schema = 'main'",
                    bounded("name", MAX_NAME)
                ),
                [table],
                |r| {
                    Ok((
                        bounded_text(r, 0, MAX_NAME),
                        r.get::<_, String>(2)?,
                        r.get::<_, bool>(3)?,
                    ))
                },
            )
            .optional()
            .map_err(err("reading the schema"))?
            .ok_or_else(|| bad("no such table or view".into()))?;
        let name = name
            .map_err(|m| bad(format!("its name {m}")))?
            .unwrap_or_else(|| table.to_owned());
        if kind != "table" && kind != "view" {
            return Err(bad(format!(
                "it is a {kind} table, not an ordinary table or view"
            )));
        }

        let columns = columns(conn, file, table).map_err(|e| match e {
            ColumnsError::Read(e) => e,
            ColumnsError::Bad(m) => bad(m),
        })?;
        if columns.is_empty() {
            return Err(bad("it has no columns".into()));
        }
        let geometry = columns
            .iter()
            .find(|c| c.name.eq_ignore_ascii_case(&geometry_column))
            .map(|c| c.name.clone())
            .ok_or_else(|| {
                bad(format!(
                    "it has no column {} (its geometry column in gpkg_geometry_columns)",
                    shown(&geometry_column)
                ))
            })?;

        // The feature id: the one primary key column, when of integer type.
        let pks: Vec<&Column> = columns.iter().filter(|c| c.pk > 0).collect();
        let id = match pks.as_slice() {
            [pk] if pk.declared.to_ascii_uppercase().contains("INT") && pk.name != geometry => {
                Some(*pk)
            }
            _ => None,
        };
        let key = match id {
            // A rowid alias, or a WITHOUT ROWID table's unique, non-null key.
            Some(pk) if kind == "table" && pk.declared.trim().eq_ignore_ascii_case("INTEGER") => {
                Key::Column(quote(&pk.name))
            }
            _ if kind == "table" && !without_rowid => ["_rowid_", "rowid", "oid"]
                .into_iter()
                .find(|alias| !columns.iter().any(|c| c.name.eq_ignore_ascii_case(alias)))
                .map_or(Key::Offset, |alias| Key::Column(alias.to_owned())),
            _ => Key::Offset,
        };
        let properties: Vec<Property> = columns
            .iter()
            .filter(|c| c.name != geometry && id.is_none_or(|pk| pk.name != c.name))
            .map(|c| Property {
                name: c.name.clone(),
                boolean: c.declared.trim().eq_ignore_ascii_case("BOOLEAN"),
            })
            .collect();

        let mut list = vec![
            match &key {
                Key::Column(k) => k.clone(),
                Key::Offset => "NULL".into(),
            },
            quote(&geometry),
            id.map_or_else(|| "NULL".into(), |pk| quote(&pk.name)),
        ];
        list.extend(properties.iter().map(|p| quote(&p.name)));
        let list = list.join(", ");
        let from = quote(&name);
        let (first, next) = match &key {
            Key::Column(k) => (
                format!("SELECT {list} FROM {from} ORDER BY {k} LIMIT ?1"),
                format!("SELECT {list} FROM {from} WHERE {k} > ?2 ORDER BY {k} LIMIT ?1"),
            ),
            Key::Offset => (
                format!("SELECT {list} FROM {from} LIMIT ?1"),
                format!("SELECT {list} FROM {from} LIMIT ?1 OFFSET ?2"),
            ),
        };
        // Preparing now turns a broken view or a column SQLite cannot read into a refusal.
        conn.prepare(&next)
            .map_err(err("preparing to read the table"))?;
        Ok(Layer {
            table: table.to_owned(),
            key,
            properties,
            crs,
            first,
            next,
        })
    }
}

enum ColumnsError {
    Read(ReadError),
    Bad(String),
}

fn columns(conn: &Connection, file: &str, table: &str) -> Result<Vec<Column>, ColumnsError> {
    let read =
        |e: rusqlite::Error| ColumnsError::Read(sql_error(file, "reading the columns", e, None));
    let mut stmt = conn
        .prepare(&format!(
            "SELECT {}, {}, pk FROM pragma_table_info(?1)",
            bounded("name", MAX_NAME),
            bounded("type", MAX_NAME)
        ))
        .map_err(read)?;
    let mut rows = stmt.query([table]).map_err(read)?;
    let mut out = Vec::new();
    while let Some(r) = rows.next().map_err(read)? {
        let name = bounded_text(r, 0, MAX_NAME)
            .map_err(|m| ColumnsError::Bad(format!("a column name {m}")))?
            .unwrap_or_default();
        let declared = bounded_text(r, 2, MAX_NAME)
            .map_err(|m| ColumnsError::Bad(format!("the type of column {} {m}", shown(&name))))?
            .unwrap_or_default();
        let pk = r.get::<_, i64>(4).map_err(read)?;
        out.push(Column { name, declared, pk });
    }
    Ok(out)
}

/// The extent `gpkg_contents` gives for `table`, when it gives all four numbers.
fn contents_extent(
    conn: &Connection,
    file: &str,
    table: &str,
) -> Result<Option<[f64; 4]>, ReadError> {
    let row = conn
        .query_row(
            "SELECT min_x, min_y, max_x, max_y FROM gpkg_contents WHERE table_name = ?1",
            [table],
            |r| {
                let mut e = [0f64; 4];
                for (i, v) in e.iter_mut().enumerate() {
                    *v = match r.get_ref(i)? {
                        ValueRef::Real(f) => f,
                        #[allow(clippy::cast_precision_loss)]
                        ValueRef::Integer(n) => n as f64,
                        _ => return Ok(None),
                    };
                }
                Ok(Some(e))
            },
        )
        .optional()
        .map_err(|e| sql_error(file, "reading gpkg_contents", e, None))?;
    Ok(row.flatten())
}

/// The coordinate system of `srs_id` (`t` is the table, shown, for messages). The undefined
/// systems 0 and -1 are decided by the table's extent in `gpkg_contents` (see
/// [`undeclared_crs`]): longitude/latitude → WGS 84, anything else refused; without an extent
/// 0 (undefined geographic) is WGS 84 and -1 (undefined Cartesian) is refused.
fn resolve_crs(
    conn: &Connection,
    file: &str,
    t: &str,
    table: &str,
    srs_id: i64,
) -> Result<Crs, ReadError> {
    match srs_id {
        -1 | 0 => {
            let extent = contents_extent(conn, file, table)?;
            let kind = if srs_id == 0 {
                "0, undefined geographic"
            } else {
                "-1, undefined Cartesian"
            };
            if extent.is_none() && srs_id == -1 {
                return Err(refused(
                    file,
                    format!(
                        "table {t} has no coordinate system (srs_id {kind}) and no extent in \
                         gpkg_contents: give the source coordinate system (--s-srs)"
                    ),
                ));
            }
            return undeclared_crs(
                &format!("{file}: table {t} has no coordinate system (srs_id {kind})"),
                extent,
            );
        }
        _ => {}
    }
    let row = conn
        .query_row(
            &format!(
                "SELECT {}, organization_coordsys_id, {} FROM gpkg_spatial_ref_sys WHERE srs_id = ?1",
                bounded("organization", MAX_ORGANIZATION),
                bounded("definition", MAX_DEFINITION)
            ),
            [srs_id],
            |r| {
                Ok((
                    bounded_text(r, 0, MAX_ORGANIZATION),
                    match r.get_ref(2)? {
                        ValueRef::Integer(i) => Some(i),
                        _ => None,
                    },
                    bounded_text(r, 3, MAX_DEFINITION),
                ))
            },
        )
        .optional()
        .map_err(|e| sql_error(file, "reading gpkg_spatial_ref_sys", e, None))?;
    let bad = |message: String| {
        refused(
            file,
            format!("table {t}: unsupported coordinate system {message}"),
        )
    };
    let Some((organization, code, definition)) = row else {
        return Err(bad(format!(
            "(srs_id {srs_id} is not in gpkg_spatial_ref_sys)"
        )));
    };
    let organization = organization
        .map_err(|m| bad(format!("(srs_id {srs_id}: an organization {m})")))?
        .unwrap_or_default();
    let definition = definition
        .map_err(|m| bad(format!("(srs_id {srs_id}: a definition {m})")))?
        .unwrap_or_default();
    let label = match code {
        Some(code) => format!("{}:{code}", crate::formats::excerpt(&organization)),
        None => crate::formats::excerpt(&organization).to_owned(),
    };
    let usable_definition = || {
        let d = definition.trim();
        !d.is_empty() && !d.eq_ignore_ascii_case("undefined")
    };
    let epsg = code
        .and_then(|c| u32::try_from(c).ok())
        .filter(|c| *c > 0 && organization.trim().eq_ignore_ascii_case("EPSG"));
    let resolved = match epsg {
        Some(code) => Crs::from_epsg(code).or_else(|e| {
            if usable_definition() {
                Crs::from_definition(&definition).map_err(|_| e)
            } else {
                Err(e)
            }
        }),
        None => Crs::from_definition(&definition),
    };
    resolved.map_err(|e| bad(format!("{label} (srs_id {srs_id}): {e}")))
}
