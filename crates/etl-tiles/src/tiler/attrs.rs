//! Feature attributes: the `-y/-x/-X` filters, JSON → typed MVT values (as tippecanoe types
//! them), the interned key table, and the per-layer field types for `vector_layers`.

use std::collections::{BTreeMap, HashMap, HashSet};

use serde_json::{Map, Value};

use super::codec::{put_value, put_varint};
use crate::mvt::PropValue;

/// Which attributes reach the tiles.
#[derive(Debug, Clone, Default)]
pub struct AttrFilter {
    /// `-y`: keep only these (when non-empty).
    pub include: Vec<String>,
    /// `-x`: drop these.
    pub exclude: Vec<String>,
    /// `-X`: drop all attributes.
    pub exclude_all: bool,
}

pub(crate) struct CompiledFilter {
    include: Option<HashSet<String>>,
    exclude: HashSet<String>,
    exclude_all: bool,
}

impl CompiledFilter {
    pub(crate) fn new(f: &AttrFilter) -> Self {
        CompiledFilter {
            include: (!f.include.is_empty()).then(|| f.include.iter().cloned().collect()),
            exclude: f.exclude.iter().cloned().collect(),
            exclude_all: f.exclude_all,
        }
    }

    fn keeps(&self, key: &str) -> bool {
        !self.exclude_all
            && !self.exclude.contains(key)
            && self.include.as_ref().is_none_or(|i| i.contains(key))
    }
}

/// The MVT value of a JSON attribute, typed the way tippecanoe types it: strings stay strings,
/// non-negative integers are `uint`, negative ones `sint`, other numbers `double`, booleans
/// `bool`; arrays and objects become their JSON text; `null` is left out (MVT has no null).
pub fn mvt_value(v: &Value) -> Option<PropValue> {
    match v {
        Value::Null => None,
        Value::Bool(b) => Some(PropValue::Bool(*b)),
        Value::Number(n) => {
            if let Some(u) = n.as_u64() {
                Some(PropValue::UInt(u))
            } else if let Some(i) = n.as_i64() {
                Some(PropValue::SInt(i))
            } else {
                n.as_f64().filter(|f| f.is_finite()).map(PropValue::Double)
            }
        }
        Value::String(s) => Some(PropValue::String(s.clone())),
        Value::Array(_) | Value::Object(_) => Some(PropValue::String(v.to_string())),
    }
}

/// The `vector_layers` type of a field.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum FieldType {
    Number,
    String,
    Boolean,
    Mixed,
}

impl FieldType {
    pub(crate) fn of(v: &PropValue) -> FieldType {
        match v {
            PropValue::String(_) => FieldType::String,
            PropValue::Bool(_) => FieldType::Boolean,
            _ => FieldType::Number,
        }
    }

    pub(crate) fn name(self) -> &'static str {
        match self {
            FieldType::Number => "Number",
            FieldType::String => "String",
            FieldType::Boolean => "Boolean",
            FieldType::Mixed => "Mixed",
        }
    }

    pub(crate) fn join(self, other: FieldType) -> FieldType {
        if self == other {
            self
        } else {
            FieldType::Mixed
        }
    }
}

/// Interned attribute keys (shared by all layers) and each layer's field types.
#[derive(Default)]
pub(crate) struct Attributes {
    pub keys: Vec<String>,
    index: HashMap<String, u32>,
    /// Per layer: key index → type.
    pub fields: Vec<BTreeMap<String, FieldType>>,
    scratch: Vec<u8>,
}

impl Attributes {
    pub(crate) fn new(layers: usize) -> Self {
        Attributes {
            fields: vec![BTreeMap::new(); layers],
            ..Default::default()
        }
    }

    /// The index of a key some feature carried.
    pub(crate) fn find(&self, k: &str) -> Option<u32> {
        self.index.get(k).copied()
    }

    /// Records that layer `layer` holds values of type `t` under key index `key`.
    pub(crate) fn note(&mut self, layer: usize, key: usize, t: FieldType) {
        let (Some(fields), Some(name)) = (self.fields.get_mut(layer), self.keys.get(key)) else {
            return;
        };
        fields
            .entry(name.clone())
            .and_modify(|e| *e = e.join(t))
            .or_insert(t);
    }

    pub(crate) fn key(&mut self, k: &str) -> Option<u32> {
        if let Some(&i) = self.index.get(k) {
            return Some(i);
        }
        let i = u32::try_from(self.keys.len()).ok()?;
        self.keys.push(k.to_owned());
        self.index.insert(k.to_owned(), i);
        Some(i)
    }

    /// Encodes a feature's kept properties into `out` (count, then key index + value each) and
    /// records their types for the layer.
    pub(crate) fn encode(
        &mut self,
        layer: usize,
        props: &Map<String, Value>,
        filter: &CompiledFilter,
        out: &mut Vec<u8>,
    ) {
        let mut scratch = std::mem::take(&mut self.scratch);
        scratch.clear();
        let mut n = 0u64;
        for (k, v) in props {
            if !filter.keeps(k) {
                continue;
            }
            let Some(val) = mvt_value(v) else { continue };
            let Some(ki) = self.key(k) else { continue };
            put_varint(&mut scratch, u64::from(ki));
            put_value(&mut scratch, &val);
            n += 1;
            if let Some(fields) = self.fields.get_mut(layer) {
                let t = FieldType::of(&val);
                fields
                    .entry(k.clone())
                    .and_modify(|e| *e = e.join(t))
                    .or_insert(t);
            }
        }
        put_varint(out, n);
        out.extend_from_slice(&scratch);
        self.scratch = scratch;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn values_are_typed_like_tippecanoe() {
        assert_eq!(mvt_value(&json!(3)), Some(PropValue::UInt(3)));
        assert_eq!(mvt_value(&json!(-3)), Some(PropValue::SInt(-3)));
        assert_eq!(mvt_value(&json!(2.5)), Some(PropValue::Double(2.5)));
        assert_eq!(mvt_value(&json!(true)), Some(PropValue::Bool(true)));
        assert_eq!(mvt_value(&json!(null)), None);
        assert_eq!(
            mvt_value(&json!([1, "a"])),
            Some(PropValue::String("[1,\"a\"]".into()))
        );
    }

    #[test]
    fn filters_and_field_types() {
        let f = CompiledFilter::new(&AttrFilter {
            include: vec![],
            exclude: vec!["secret".into()],
            exclude_all: false,
        });
        let mut a = Attributes::new(1);
        let mut out = Vec::new();
        let p = json!({"a": 1, "secret": "x", "b": "s"});
        a.encode(0, p.as_object().unwrap(), &f, &mut out);
        let p = json!({"a": "now a string"});
        a.encode(0, p.as_object().unwrap(), &f, &mut out);
        assert_eq!(a.fields[0].get("a"), Some(&FieldType::Mixed));
        assert_eq!(a.fields[0].get("b"), Some(&FieldType::String));
        assert!(!a.fields[0].contains_key("secret"));
        let only = CompiledFilter::new(&AttrFilter {
            include: vec!["b".into()],
            ..Default::default()
        });
        assert!(only.keeps("b") && !only.keeps("a"));
        let none = CompiledFilter::new(&AttrFilter {
            exclude_all: true,
            ..Default::default()
        });
        assert!(!none.keeps("b"));
    }
}
