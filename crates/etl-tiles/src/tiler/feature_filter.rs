//! tippecanoe's `-j` / `-J` feature filters: a JSON object from layer name (or `"*"` for every
//! layer without its own) to a filter in the Mapbox GL legacy filter syntax, which tippecanoe
//! takes:
//!
//! - `["all", f…]`, `["any", f…]`, `["none", f…]`;
//! - `["==", key, v]`, `["!=", key, v]`, `["<", key, v]` (and `<=`, `>`, `>=`);
//! - `["in", key, v…]`, `["!in", key, v…]`, `["has", key]`, `["!has", key]`.
//!
//! Keys are property names, or `$type` (`"Point"`, `"LineString"`, `"Polygon"`), `$id` (the
//! feature id) and `$zoom` (the zoom being made: a feature can be kept at some zooms only).
//! Values compare only with values of their own kind: numbers with numbers, strings with
//! strings, booleans with booleans, as in the GL filters. A missing property fails every test
//! but `!=`, `!in` and `!has`. A property whose value is null counts as missing: the tiler
//! writes no null attributes (as tippecanoe), so a filter sees what the tiles will hold.
//!
//! A filter is evaluated once per feature while it is staged, for every zoom when it mentions
//! `$zoom`: the result is a mask of the zooms the feature is kept at.

use std::collections::HashMap;

use serde_json::{Map, Value};

/// What a feature is, for `$type`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GeomType {
    Point,
    LineString,
    Polygon,
}

impl GeomType {
    fn name(self) -> &'static str {
        match self {
            GeomType::Point => "Point",
            GeomType::LineString => "LineString",
            GeomType::Polygon => "Polygon",
        }
    }
}

/// Deepest nesting of `all`/`any`/`none` accepted (a hostile filter cannot recurse forever).
const MAX_DEPTH: usize = 64;

#[derive(Debug, Clone)]
enum Key {
    Prop(String),
    Type,
    Id,
    Zoom,
}

#[derive(Debug, Clone, Copy)]
enum Op {
    Eq,
    Ne,
    Lt,
    Le,
    Gt,
    Ge,
}

#[derive(Debug, Clone)]
enum Expr {
    All(Vec<Expr>),
    Any(Vec<Expr>),
    None(Vec<Expr>),
    Cmp(Op, Key, Value),
    In(Key, Vec<Value>, bool),
    Has(Key, bool),
}

/// One layer's filter, and whether it reads `$zoom` (decided once, at parse time).
#[derive(Debug, Clone)]
struct Compiled {
    expr: Expr,
    by_zoom: bool,
}

/// Compiled `-j` filters.
#[derive(Debug, Clone, Default)]
pub struct FeatureFilter {
    layers: HashMap<String, Compiled>,
    any_layer: Option<Compiled>,
}

/// The deepest zoom a mask needs (the tiler's own limit).
const DEEPEST: u32 = super::MAX_TILER_ZOOM as u32;

/// At most this many characters of an offending value go into an error.
fn brief(v: &Value) -> String {
    let s = v.to_string();
    match s.char_indices().nth(80) {
        Some((i, _)) => format!("{}…", &s[..i]),
        None => s,
    }
}

/// What a feature looks like to a filter.
pub(crate) struct Subject<'a> {
    pub props: &'a Map<String, Value>,
    pub id: Option<u64>,
    pub kind: GeomType,
}

impl FeatureFilter {
    /// Parses `-j`'s JSON. The error says what is wrong and where, in one line.
    pub fn parse(json: &str) -> Result<FeatureFilter, String> {
        let v: Value =
            serde_json::from_str(json).map_err(|e| format!("feature filter is not JSON: {e}"))?;
        let Value::Object(m) = v else {
            return Err(
                "feature filter must be an object of layer name to filter, e.g. {\"*\": [\"has\", \"name\"]}"
                    .into(),
            );
        };
        let mut out = FeatureFilter::default();
        for (layer, f) in m {
            let expr = expr(&f, 0).map_err(|e| {
                let mut layer = layer.clone();
                layer.truncate(layer.char_indices().nth(80).map_or(layer.len(), |(i, _)| i));
                format!("feature filter for layer {layer:?}: {e}")
            })?;
            let c = Compiled {
                by_zoom: uses_zoom(&expr),
                expr,
            };
            if layer == "*" {
                out.any_layer = Some(c);
            } else {
                out.layers.insert(layer, c);
            }
        }
        Ok(out)
    }

    /// The zooms (bit z for zoom z) at which a feature of `layer` is kept: every bit, or
    /// none, unless its filter reads `$zoom`; then bits 0..=24, the zooms the tiler makes.
    pub(crate) fn zoom_mask(&self, layer: &str, s: &Subject<'_>) -> u32 {
        let Some(c) = self.layers.get(layer).or(self.any_layer.as_ref()) else {
            return u32::MAX;
        };
        if !c.by_zoom {
            return if eval(&c.expr, s, 0) { u32::MAX } else { 0 };
        }
        (0..=DEEPEST)
            .filter(|z| eval(&c.expr, s, *z))
            .fold(0, |m, z| m | (1 << z))
    }
}

fn uses_zoom(e: &Expr) -> bool {
    match e {
        Expr::All(v) | Expr::Any(v) | Expr::None(v) => v.iter().any(uses_zoom),
        Expr::Cmp(_, k, _) | Expr::In(k, _, _) | Expr::Has(k, _) => matches!(k, Key::Zoom),
    }
}

fn key(v: &Value) -> Result<Key, String> {
    match v.as_str() {
        Some("$type") => Ok(Key::Type),
        Some("$id") => Ok(Key::Id),
        Some("$zoom") => Ok(Key::Zoom),
        Some(s) => Ok(Key::Prop(s.to_owned())),
        None => Err(format!("a key must be a string, not {}", brief(v))),
    }
}

fn expr(v: &Value, depth: usize) -> Result<Expr, String> {
    if depth > MAX_DEPTH {
        return Err(format!("nested deeper than {MAX_DEPTH}"));
    }
    let Some(items) = v.as_array() else {
        return Err(format!(
            "a filter must be an array like [\"==\", key, value], not {v}"
        ));
    };
    let Some((op, args)) = items.split_first() else {
        return Err("an empty filter".into());
    };
    let op = op
        .as_str()
        .ok_or_else(|| format!("a filter starts with its operator, not {}", brief(op)))?;
    let subs = |args: &[Value]| -> Result<Vec<Expr>, String> {
        args.iter().map(|a| expr(a, depth + 1)).collect()
    };
    let cmp = |o: Op| -> Result<Expr, String> {
        match args {
            [k, value] => Ok(Expr::Cmp(o, key(k)?, value.clone())),
            _ => Err(format!("{op:?} takes a key and a value")),
        }
    };
    match op {
        "all" => Ok(Expr::All(subs(args)?)),
        "any" => Ok(Expr::Any(subs(args)?)),
        "none" => Ok(Expr::None(subs(args)?)),
        "==" => cmp(Op::Eq),
        "!=" => cmp(Op::Ne),
        "<" => cmp(Op::Lt),
        "<=" => cmp(Op::Le),
        ">" => cmp(Op::Gt),
        ">=" => cmp(Op::Ge),
        "in" | "!in" => match args.split_first() {
            Some((k, values)) => Ok(Expr::In(key(k)?, values.to_vec(), op == "!in")),
            None => Err(format!("{op:?} takes a key and values")),
        },
        "has" | "!has" => match args {
            [k] => Ok(Expr::Has(key(k)?, op == "!has")),
            _ => Err(format!("{op:?} takes one key")),
        },
        other => Err(format!(
            "unknown operator {:?}",
            other.chars().take(80).collect::<String>()
        )),
    }
}

/// A feature's value for a key, borrowed where it can be.
enum Got<'a> {
    Json(&'a Value),
    Text(&'static str),
    Number(f64),
}

/// The feature's value for `k` at zoom `z`; `None` when it has none.
fn lookup<'a>(k: &Key, s: &Subject<'a>, z: u32) -> Option<Got<'a>> {
    match k {
        Key::Prop(name) => s.props.get(name).filter(|v| !v.is_null()).map(Got::Json),
        Key::Type => Some(Got::Text(s.kind.name())),
        Key::Id => s.id.map(|id| Got::Number(id as f64)),
        Key::Zoom => Some(Got::Number(f64::from(z))),
    }
}

/// Compares values of one kind; `None` across kinds.
fn order(a: &Got<'_>, b: &Value) -> Option<std::cmp::Ordering> {
    match (a, b) {
        (Got::Json(Value::Number(x)), Value::Number(y)) => x.as_f64()?.partial_cmp(&y.as_f64()?),
        (Got::Number(x), Value::Number(y)) => x.partial_cmp(&y.as_f64()?),
        (Got::Json(Value::String(x)), Value::String(y)) => Some(x.as_str().cmp(y.as_str())),
        (Got::Text(x), Value::String(y)) => Some((*x).cmp(y.as_str())),
        (Got::Json(Value::Bool(x)), Value::Bool(y)) => Some(x.cmp(y)),
        _ => None,
    }
}

fn eval(e: &Expr, s: &Subject<'_>, z: u32) -> bool {
    use std::cmp::Ordering::{Equal, Greater, Less};
    match e {
        Expr::All(v) => v.iter().all(|e| eval(e, s, z)),
        Expr::Any(v) => v.iter().any(|e| eval(e, s, z)),
        Expr::None(v) => !v.iter().any(|e| eval(e, s, z)),
        Expr::Has(k, negate) => lookup(k, s, z).is_some() != *negate,
        Expr::In(k, values, negate) => {
            let found =
                lookup(k, s, z).is_some_and(|v| values.iter().any(|w| order(&v, w) == Some(Equal)));
            found != *negate
        }
        Expr::Cmp(op, k, want) => {
            let o = lookup(k, s, z).and_then(|v| order(&v, want));
            match op {
                Op::Eq => o == Some(Equal),
                Op::Ne => o != Some(Equal),
                Op::Lt => o == Some(Less),
                Op::Le => matches!(o, Some(Less | Equal)),
                Op::Gt => o == Some(Greater),
                Op::Ge => matches!(o, Some(Greater | Equal)),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn mask(filter: &str, layer: &str, props: Value, kind: GeomType) -> u32 {
        let f = FeatureFilter::parse(filter).unwrap();
        let props = props.as_object().cloned().unwrap_or_default();
        f.zoom_mask(
            layer,
            &Subject {
                props: &props,
                id: Some(7),
                kind,
            },
        )
    }

    #[test]
    fn legacy_gl_filters_as_tippecanoe_takes_them() {
        let p = json!({"kind": "road", "lanes": 4, "toll": false, "name": "A1"});
        let pt = GeomType::Point;
        let yes = |f: &str| mask(f, "roads", p.clone(), GeomType::LineString) == u32::MAX;
        assert!(yes(r#"{"*": ["==", "kind", "road"]}"#));
        assert!(
            !yes(r#"{"*": ["==", "lanes", "4"]}"#),
            "a string is not a number"
        );
        assert!(yes(
            r#"{"*": ["all", [">=", "lanes", 4], ["<", "lanes", 4.5], ["!has", "ref"]]}"#
        ));
        assert!(yes(
            r#"{"*": ["any", ["==", "toll", true], ["in", "kind", "road", "path"]]}"#
        ));
        assert!(yes(
            r#"{"*": ["none", ["has", "ref"], ["!in", "kind", "road"]]}"#
        ));
        assert!(
            yes(r#"{"*": ["!=", "missing", 1]}"#),
            "a missing property is not 1"
        );
        assert!(!yes(r#"{"*": ["<", "missing", 1]}"#));
        assert!(yes(r#"{"*": ["==", "$type", "LineString"]}"#));
        assert!(yes(r#"{"*": ["==", "$id", 7]}"#));
        assert!(yes(r#"{"*": ["<", "name", "B"]}"#));
        // A null property is a missing one (the tiles hold no nulls).
        let n = json!({"x": null});
        assert_eq!(mask(r#"{"*": ["has", "x"]}"#, "l", n.clone(), pt), 0);
        assert_eq!(mask(r#"{"*": ["!has", "x"]}"#, "l", n, pt), u32::MAX);
        // A layer's own filter wins over "*"; a layer with neither keeps everything.
        let f = r#"{"roads": ["==", "kind", "path"], "*": ["has", "kind"]}"#;
        assert_eq!(mask(f, "roads", p.clone(), pt), 0);
        assert_eq!(mask(f, "other", p.clone(), pt), u32::MAX);
        assert_eq!(mask(r#"{"roads": ["has", "x"]}"#, "other", p, pt), u32::MAX);
    }

    #[test]
    fn zoom_filters_give_the_zooms_a_feature_is_kept_at() {
        let m = mask(
            r#"{"*": ["any", [">=", "$zoom", 10], ["==", "big", true]]}"#,
            "l",
            json!({"big": false}),
            GeomType::Point,
        );
        // Zooms 10..=24: the tiler makes none deeper.
        assert_eq!(m, (!0u32 << 10) & (u32::MAX >> 7));
        let m = mask(
            r#"{"*": ["all", [">=", "$zoom", 3], ["<=", "$zoom", 5]]}"#,
            "l",
            json!({}),
            GeomType::Polygon,
        );
        assert_eq!(m, 0b11_1000);
    }

    #[test]
    fn bad_filters_are_one_line_errors() {
        for (f, want) in [
            ("[1]", "must be an object"),
            (r#"{"*": "x"}"#, "must be an array"),
            (r#"{"*": []}"#, "empty filter"),
            (r#"{"*": ["~=", "a", 1]}"#, "unknown operator"),
            (r#"{"*": ["==", "a"]}"#, "takes a key and a value"),
            (r#"{"*": ["==", 3, 1]}"#, "key must be a string"),
            ("{", "not JSON"),
        ] {
            let e = FeatureFilter::parse(f).unwrap_err();
            assert!(e.contains(want), "{f}: {e}");
            assert!(!e.contains('\n'), "{e}");
        }
        // An offending value is quoted briefly, whatever its size.
        let huge = format!("{{\"*\": [\"==\", {}, 1]}}", "[1],".repeat(10_000) + "[1]");
        let huge = huge
            .replacen("[\"==\", ", "[\"==\", [", 1)
            .replacen(", 1]}", "], 1]}", 1);
        let e = FeatureFilter::parse(&huge).unwrap_err();
        assert!(e.len() < 300, "{} characters", e.len());
        let deep = format!(
            "{{\"*\": {}[\"has\", \"a\"]{}}}",
            "[\"all\", ".repeat(100),
            "]".repeat(100)
        );
        let e = FeatureFilter::parse(&deep).unwrap_err();
        assert!(e.contains("nested deeper"), "{e}");
    }
}
