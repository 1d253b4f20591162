//! Names the loader gives things: property columns, derived index names, stage tables.

use etl_core::postgres::TableName;

use super::schema::{GEOM, ID};

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
pub(super) fn property_of(column: &str) -> Option<String> {
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
pub(super) fn key_suffix(key: &str) -> String {
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

#[cfg(test)]
mod tests {
    use super::super::schema::SEQ;
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
