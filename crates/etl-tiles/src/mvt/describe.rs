//! A tile's features as text, one line each and sorted, so that two encodings of the same
//! features (MVT and MLT read back, two tilers, two feature orders) compare equal.

use super::{MvtError, PropValue, decode_tile};

/// The text of a value: numbers as numbers whatever their MVT type (`90` for 90 as uint, sint
/// or double), so that a value widened from integer to double compares equal.
pub fn value_text(v: &PropValue) -> String {
    match v {
        PropValue::String(s) => s.clone(),
        PropValue::Double(d) => d.to_string(),
        PropValue::Float(f) => f.to_string(),
        PropValue::UInt(u) => u.to_string(),
        PropValue::SInt(i) | PropValue::Int(i) => i.to_string(),
        PropValue::Bool(b) => b.to_string(),
    }
}

/// Every feature of an MVT tile as `layer id geometry [key=value, …]` (properties sorted),
/// the lines sorted.
pub fn feature_lines(mvt: &[u8]) -> Result<Vec<String>, MvtError> {
    let mut out: Vec<String> = Vec::new();
    for l in decode_tile(mvt)? {
        for f in l.features {
            let mut props: Vec<String> = f
                .props
                .iter()
                .map(|(k, v)| format!("{k}={}", value_text(v)))
                .collect();
            props.sort();
            out.push(format!("{} {:?} {:?} {props:?}", l.name, f.id, f.geom));
        }
    }
    out.sort();
    Ok(out)
}
