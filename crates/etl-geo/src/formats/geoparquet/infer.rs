//! The columns [`super::write::GeoParquetWriter`] gives the properties, inferred from the
//! first features it buffers, and whether a later value fits them.
//!
//! A key's column type comes from the non-null values it has in the sample:
//!
//! | values seen              | column                                   |
//! |--------------------------|------------------------------------------|
//! | booleans only            | boolean                                  |
//! | integers (`i64`) only    | int64                                    |
//! | numbers, some not `i64`  | double (integers written exactly when within ±2^53) |
//! | strings only             | string                                   |
//! | anything else, or only nulls | string with Parquet's JSON logical type (the value as JSON text) |
//!
//! Keys are in the order they are first seen; at most [`MAX_COLUMNS`] become columns.

use serde_json::Value;

/// Most property columns a file gets; later keys go to the overflow column.
pub(crate) const MAX_COLUMNS: usize = 1000;
/// The largest integer magnitude a double holds exactly.
const EXACT_IN_DOUBLE: u64 = 1 << 53;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Kind {
    Bool,
    Int,
    Float,
    Text,
    Json,
}

#[derive(Debug, Clone)]
pub(crate) struct Column {
    pub(crate) name: String,
    pub(crate) kind: Kind,
}

/// What values a key had in the sample.
#[derive(Debug, Default, Clone, Copy)]
struct Seen {
    bool: bool,
    int: bool,
    float: bool,
    text: bool,
    other: bool,
}

impl Seen {
    fn add(&mut self, v: &Value) {
        match v {
            Value::Null => {}
            Value::Bool(_) => self.bool = true,
            Value::Number(n) if n.is_i64() => self.int = true,
            Value::Number(n) if n.is_f64() => self.float = true,
            // A u64 beyond i64: neither column holds it exactly.
            Value::Number(_) => self.other = true,
            Value::String(_) => self.text = true,
            Value::Array(_) | Value::Object(_) => self.other = true,
        }
    }

    fn kind(self) -> Kind {
        match (self.bool, self.int, self.float, self.text, self.other) {
            (true, false, false, false, false) => Kind::Bool,
            (false, true, false, false, false) => Kind::Int,
            (false, _, true, false, false) => Kind::Float,
            (false, false, false, true, false) => Kind::Text,
            _ => Kind::Json,
        }
    }
}

/// The property columns for `sample`, leaving out the `reserved` names (the geometry, id and
/// overflow columns), which then go to the overflow column.
pub(crate) fn columns<'a>(
    sample: impl Iterator<Item = &'a serde_json::Map<String, Value>>,
    reserved: &[&str],
) -> Vec<Column> {
    let mut keys: Vec<(String, Seen)> = Vec::new();
    let mut index: std::collections::HashMap<String, usize> = std::collections::HashMap::new();
    for properties in sample {
        for (k, v) in properties {
            if reserved.contains(&k.as_str()) {
                continue;
            }
            let i = match index.get(k) {
                Some(&i) => i,
                None if keys.len() < MAX_COLUMNS => {
                    index.insert(k.clone(), keys.len());
                    keys.push((k.clone(), Seen::default()));
                    keys.len() - 1
                }
                None => continue,
            };
            if let Some((_, seen)) = keys.get_mut(i) {
                seen.add(v);
            }
        }
    }
    keys.into_iter()
        .map(|(name, seen)| Column {
            name,
            kind: seen.kind(),
        })
        .collect()
}

/// Whether `v` (not null) is stored exactly in a column of `kind`.
pub(crate) fn fits(kind: Kind, v: &Value) -> bool {
    match (kind, v) {
        (Kind::Json, _) => true,
        (Kind::Bool, Value::Bool(_)) => true,
        (Kind::Int, Value::Number(n)) => n.is_i64(),
        (Kind::Float, Value::Number(n)) => {
            n.is_f64()
                || n.as_i64()
                    .is_some_and(|i| i.unsigned_abs() <= EXACT_IN_DOUBLE)
                || n.as_u64().is_some_and(|u| u <= EXACT_IN_DOUBLE)
        }
        (Kind::Text, Value::String(_)) => true,
        _ => false,
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;
    use serde_json::json;

    fn kinds(rows: &[Value]) -> Vec<(String, Kind)> {
        let maps: Vec<_> = rows
            .iter()
            .map(|r| r.as_object().unwrap().clone())
            .collect();
        columns(maps.iter(), &["geometry"])
            .into_iter()
            .map(|c| (c.name, c.kind))
            .collect()
    }

    #[test]
    fn kinds_follow_the_sample() {
        let got = kinds(&[
            json!({"b": true, "i": 1, "f": 1.5, "s": "x", "n": null, "m": 1, "o": {"a": 1}, "geometry": 1}),
            json!({"b": false, "i": -2, "f": 2, "s": "y", "n": null, "m": "one", "o": null}),
        ]);
        assert_eq!(
            got,
            [
                ("b".to_owned(), Kind::Bool),
                ("i".to_owned(), Kind::Int),
                ("f".to_owned(), Kind::Float),
                ("s".to_owned(), Kind::Text),
                ("n".to_owned(), Kind::Json),
                ("m".to_owned(), Kind::Json),
                ("o".to_owned(), Kind::Json),
            ]
        );
    }

    #[test]
    fn what_fits() {
        assert!(fits(Kind::Float, &json!(3)));
        assert!(fits(Kind::Float, &json!(9_007_199_254_740_992_i64)));
        assert!(!fits(Kind::Float, &json!(9_007_199_254_740_993_i64)));
        assert!(!fits(Kind::Int, &json!(1.5)));
        assert!(!fits(Kind::Int, &json!(u64::MAX)));
        assert!(!fits(Kind::Text, &json!(1)));
        assert!(!fits(Kind::Bool, &json!("true")));
        assert!(fits(Kind::Json, &json!([1, {"a": null}])));
    }
}
