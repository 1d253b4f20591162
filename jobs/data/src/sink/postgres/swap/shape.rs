//! Whether a table can be copied and swapped without losing anything: the catalog check
//! ([`LOSSES`]) and the indexes the copy gets again.

use etl_core::JobError;
use etl_core::postgres::TableName;
use sqlx::{PgConnection, Row};

use super::super::names::derived_name;
use super::super::schema::sql_err;

/// An index of the table, as the swapped-in copy gets it again.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(in crate::sink::postgres) struct IndexShape {
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
    pub(super) fn stage_index(&self, stage: &TableName) -> String {
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
pub(in crate::sink::postgres) enum Shape {
    Plain(Vec<IndexShape>),
    /// Why not, for the log.
    Not(String),
}

/// What a copy of the table would lose, one line each (empty: nothing). `$1` is the table.
const LOSSES: &str = r#"
WITH t AS (SELECT c.oid AS toid, c.* FROM pg_class c WHERE c.oid = to_regclass($1))
SELECT 'it is not a plain permanent heap table' FROM t
 WHERE relkind <> 'r' OR relpersistence <> 'p' OR relispartition
    OR relam <> (SELECT oid FROM pg_am WHERE amname = 'heap')
UNION ALL SELECT 'another role owns it' FROM t
 WHERE relowner <> (SELECT oid FROM pg_roles WHERE rolname = current_user)
UNION ALL SELECT 'it has storage options or its own tablespace' FROM t
 WHERE reloptions IS NOT NULL OR reltablespace <> 0
    OR EXISTS (SELECT 1 FROM pg_class tc WHERE tc.oid = t.reltoastrelid AND tc.reloptions IS NOT NULL)
UNION ALL SELECT 'it has a replica identity' FROM t WHERE relreplident <> 'd'
UNION ALL SELECT 'it forces row-level security (a copy could miss rows)' FROM t
 WHERE relforcerowsecurity
UNION ALL SELECT 'it has triggers' FROM t WHERE relhastriggers
UNION ALL SELECT 'it has rules' FROM t WHERE relhasrules
UNION ALL SELECT 'it inherits or is inherited' FROM t
 WHERE relhassubclass OR EXISTS (SELECT 1 FROM pg_inherits WHERE inhrelid = t.toid OR inhparent = t.toid)
UNION ALL SELECT 'it is published or subscribed to (logical replication)' FROM t
 WHERE EXISTS (SELECT 1 FROM pg_publication_tables p
                WHERE p.schemaname = (SELECT nspname FROM pg_namespace WHERE oid = t.relnamespace)
                  AND p.tablename = t.relname)
    OR EXISTS (SELECT 1 FROM pg_subscription_rel r WHERE r.srrelid = t.toid)
UNION ALL SELECT 'it has security labels' FROM t
 WHERE EXISTS (SELECT 1 FROM pg_seclabel l WHERE l.objoid = t.toid AND l.classoid = 'pg_class'::regclass)
UNION ALL SELECT 'its indexes, constraints or policies have comments' FROM t
 WHERE EXISTS (SELECT 1 FROM pg_description d
                WHERE (d.classoid = 'pg_class'::regclass
                       AND d.objoid IN (SELECT indexrelid FROM pg_index WHERE indrelid = t.toid))
                   OR (d.classoid = 'pg_constraint'::regclass
                       AND d.objoid IN (SELECT oid FROM pg_constraint WHERE conrelid = t.toid))
                   OR (d.classoid = 'pg_policy'::regclass
                       AND d.objoid IN (SELECT oid FROM pg_policy WHERE polrelid = t.toid)))
UNION ALL SELECT format('column %I has a default, an identity or generated value, its own storage, compression or statistics target, or options', a.attname)
  FROM t JOIN pg_attribute a ON a.attrelid = t.toid
  JOIN pg_type ty ON ty.oid = a.atttypid
 WHERE a.attnum > 0 AND NOT a.attisdropped
   AND (a.atthasdef OR a.attidentity <> '' OR a.attgenerated <> '' OR a.attoptions IS NOT NULL
        OR a.attstorage <> ty.typstorage
        OR coalesce(to_jsonb(a) ->> 'attcompression', '') <> ''
        OR coalesce((to_jsonb(a) ->> 'attstattarget')::int, -1) >= 0)
UNION ALL SELECT format('constraint %I', c.conname)
  FROM t JOIN pg_constraint c ON c.conrelid = t.toid OR c.confrelid = t.toid
 WHERE c.contype NOT IN ('p', 'u', 'n') OR c.confrelid = t.toid OR c.condeferrable
    OR cardinality(c.conkey) <> 1
UNION ALL SELECT format('index %s is not a plain single-column index', i.indexrelid::regclass)
  FROM t JOIN pg_index i ON i.indrelid = t.toid
  JOIN pg_class ic ON ic.oid = i.indexrelid
 WHERE i.indnatts <> 1 OR i.indkey[0] = 0 OR i.indexprs IS NOT NULL OR i.indpred IS NOT NULL
    OR NOT i.indisvalid OR NOT i.indisready OR NOT i.indimmediate OR i.indisexclusion
    OR i.indisclustered
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
             AND d.objid IN (SELECT oid FROM pg_constraint
                              WHERE conrelid = t.toid AND contype IN ('p', 'u', 'n')))
         OR (d.classid = 'pg_policy'::regclass
             AND d.objid IN (SELECT oid FROM pg_policy WHERE polrelid = t.toid)))
UNION ALL SELECT format('%s uses its row type', pg_describe_object(d.classid, d.objid, d.objsubid))
  FROM t JOIN pg_type rt ON rt.oid = t.reltype
  JOIN pg_depend d ON d.refclassid = 'pg_type'::regclass
   AND (d.refobjid = t.reltype OR (rt.typarray <> 0 AND d.refobjid = rt.typarray))
 WHERE NOT (d.classid = 'pg_type'::regclass AND d.objid = rt.typarray)
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
pub(in crate::sink::postgres) async fn shape(
    conn: &mut PgConnection,
    table: &TableName,
) -> Result<Shape, JobError> {
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
