//! The feature model every reader produces and every writer consumes.

use std::fmt;

use serde_json::{Map, Value};

/// A GeoJSON feature id.
#[derive(Debug, Clone, PartialEq)]
pub enum FeatureId {
    /// A JSON integer that fits `i64`.
    Int(i64),
    /// A JSON string, or the exact JSON text of any other number (`1.5`, `1e3`,
    /// `18446744073709551616`) so that no precision is lost.
    Str(String),
}

impl fmt::Display for FeatureId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            FeatureId::Int(i) => write!(f, "{i}"),
            FeatureId::Str(s) => f.write_str(s),
        }
    }
}

/// One geographic feature: an optional id, an optional geometry (GeoJSON `null`
/// geometry is `None`) and properties in input order.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Feature {
    pub id: Option<FeatureId>,
    pub geometry: Option<geo_types::Geometry<f64>>,
    pub properties: Map<String, Value>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn id_display() {
        assert_eq!(FeatureId::Int(-7).to_string(), "-7");
        assert_eq!(FeatureId::Str("a-1".into()).to_string(), "a-1");
    }
}
