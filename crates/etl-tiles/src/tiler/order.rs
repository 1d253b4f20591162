//! The order features are written in within each layer of a tile (tippecanoe's
//! `--order-by`, `--order-descending-by`, `--order-smallest-first`, `--order-largest-first`):
//! a renderer draws them in that order, so the last is on top.
//!
//! Without an order, features stay in spatial (Hilbert) order. With one, each layer's kept
//! features are sorted stably by the keys in turn, ties staying in spatial order. Attribute
//! values compare as: missing first, then booleans (false before true), then numbers by value,
//! then strings by their bytes; descending reverses all of it. Only the written order changes:
//! which features a dropping strategy keeps does not depend on it.

use std::cmp::Ordering;

use super::assemble::Feat;
use super::codec::{Truncated, decode_value, props_iter};
use crate::mvt::PropValue;

/// One key of the order, primary first.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum OrderKey {
    /// By the value of an attribute.
    Attribute { name: String, descending: bool },
    /// By the whole feature's size (the same in every tile, so neighbouring tiles agree): a
    /// line's length, the square root of a polygon's area; points have none.
    Size { largest_first: bool },
}

/// An order key with its attribute resolved to the run's key index (`None`: no feature has
/// the attribute, so every value is missing).
#[derive(Debug, Clone, Copy)]
pub(crate) enum Resolved {
    Attribute {
        key: Option<usize>,
        descending: bool,
    },
    Size {
        largest_first: bool,
    },
}

/// Resolves `order` against the run's attribute names.
pub(crate) fn resolve(order: &[OrderKey], keys: &[String]) -> Vec<Resolved> {
    order
        .iter()
        .map(|k| match k {
            OrderKey::Attribute { name, descending } => Resolved::Attribute {
                key: keys.iter().position(|k| k == name),
                descending: *descending,
            },
            OrderKey::Size { largest_first } => Resolved::Size {
                largest_first: *largest_first,
            },
        })
        .collect()
}

/// A value to sort by, in the order of the variants.
#[derive(Debug, Clone, PartialEq)]
enum SortValue {
    Missing,
    Bool(bool),
    Number(f64),
    Text(String),
}

impl SortValue {
    fn cmp(&self, other: &SortValue) -> Ordering {
        match (self, other) {
            (SortValue::Bool(a), SortValue::Bool(b)) => a.cmp(b),
            (SortValue::Number(a), SortValue::Number(b)) => a.total_cmp(b),
            (SortValue::Text(a), SortValue::Text(b)) => a.as_bytes().cmp(b.as_bytes()),
            _ => self.rank().cmp(&other.rank()),
        }
    }

    fn rank(&self) -> u8 {
        match self {
            SortValue::Missing => 0,
            SortValue::Bool(_) => 1,
            SortValue::Number(_) => 2,
            SortValue::Text(_) => 3,
        }
    }
}

fn sort_value(v: PropValue) -> SortValue {
    match v {
        PropValue::String(s) => SortValue::Text(s),
        PropValue::Float(f) => SortValue::Number(f64::from(f)),
        PropValue::Double(f) => SortValue::Number(f),
        PropValue::Int(i) | PropValue::SInt(i) => SortValue::Number(i as f64),
        PropValue::UInt(u) => SortValue::Number(u as f64),
        PropValue::Bool(b) => SortValue::Bool(b),
    }
}

/// The value of attribute `key` of a feature.
fn attribute(props: &[u8], key: Option<usize>) -> Result<SortValue, Truncated> {
    let Some(key) = key else {
        return Ok(SortValue::Missing);
    };
    for p in props_iter(props) {
        let (k, raw) = p?;
        if k == key {
            return Ok(sort_value(decode_value(raw)?));
        }
    }
    Ok(SortValue::Missing)
}

/// The kept features' indices in the order they are written: by layer (as sorted), and
/// within a layer by `order` (spatial order when it is empty or for ties).
pub(crate) fn written_order(
    feats: &[Feat<'_>],
    keep: &[bool],
    order: &[Resolved],
) -> Result<Vec<usize>, Truncated> {
    let mut idx: Vec<usize> = (0..feats.len())
        .filter(|&i| keep.get(i).copied().unwrap_or(false))
        .collect();
    if order.is_empty() {
        return Ok(idx);
    }
    // The keys of every kept feature, once (features dropped are not looked at).
    let mut values: Vec<Vec<SortValue>> = vec![Vec::new(); feats.len()];
    for &i in &idx {
        let (Some(f), Some(v)) = (feats.get(i), values.get_mut(i)) else {
            continue;
        };
        for k in order {
            v.push(match k {
                Resolved::Attribute { key, .. } => attribute(f.props, *key)?,
                Resolved::Size { .. } => SortValue::Number(f.size as f64),
            });
        }
    }
    let cmp = |a: usize, b: usize| {
        for (i, k) in order.iter().enumerate() {
            let (Some(va), Some(vb)) = (
                values.get(a).and_then(|v| v.get(i)),
                values.get(b).and_then(|v| v.get(i)),
            ) else {
                continue;
            };
            let o = va.cmp(vb);
            let o = match k {
                Resolved::Attribute {
                    descending: true, ..
                }
                | Resolved::Size {
                    largest_first: true,
                } => o.reverse(),
                _ => o,
            };
            if o != Ordering::Equal {
                return o;
            }
        }
        Ordering::Equal
    };
    // Layers are contiguous (features are sorted by layer first); each is sorted on its own.
    let mut start = 0;
    while start < idx.len() {
        let layer = feats.get(idx[start]).map(|f| f.layer);
        let end = start
            + idx[start..]
                .iter()
                .take_while(|&&i| feats.get(i).map(|f| f.layer) == layer)
                .count();
        idx[start..end].sort_by(|&a, &b| cmp(a, b));
        start = end;
    }
    Ok(idx)
}
