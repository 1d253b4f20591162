//! `--order-by`, `--order-descending-by`, `--order-smallest-first`, `--order-largest-first`:
//! the order features are written in within each layer of a tile; which features are kept
//! does not change.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeSet;

use etl_tiles::mvt::PropValue;
use etl_tiles::tile::TileCoord;
use etl_tiles::tiler::{OrderKey, TilerOptions};
use geo_types::Geometry;
use serde_json::{Value, json};

mod support;
use support::*;

fn by(name: &str, descending: bool) -> OrderKey {
    OrderKey::Attribute {
        name: name.into(),
        descending,
    }
}

/// Points with a `rank` of mixed types (and some without), a `group`, and two layers.
fn features() -> Vec<Feat> {
    let ranks: Vec<Value> = vec![
        json!(5),
        json!("b"),
        json!(-2.5),
        Value::Null,
        json!(true),
        json!(10),
        json!("a"),
        json!(false),
        json!(0),
        json!(5),
    ];
    let mut rng = Rng(3);
    let mut feats = Vec::new();
    for (i, r) in ranks.into_iter().enumerate() {
        let mut props = json!({"group": (i % 3) as i64});
        if !r.is_null() {
            props["rank"] = r;
        }
        let (x, y) = (rng.range(-100.0, 100.0), rng.range(-60.0, 60.0));
        feats.push(feat(0, Some(i as u64), point(x, y), props));
        feats.push(feat(1, Some(100 + i as u64), point(y, x / 2.0), json!({})));
    }
    feats
}

/// The features of layer `name` at z0, in written order: (id, rank, group).
fn written(bytes: &[u8], name: &str) -> Vec<(u64, Option<PropValue>, Option<PropValue>)> {
    let tiles = tiles(bytes);
    let layers = &tiles[&TileCoord::new(0, 0, 0).unwrap()];
    let layer = layers.iter().find(|l| l.name == name).unwrap();
    layer
        .features
        .iter()
        .map(|f| {
            let get = |k: &str| f.props.iter().find(|(n, _)| n == k).map(|(_, v)| v.clone());
            (f.id.unwrap(), get("rank"), get("group"))
        })
        .collect()
}

fn ids(w: &[(u64, Option<PropValue>, Option<PropValue>)]) -> Vec<u64> {
    w.iter().map(|f| f.0).collect()
}

#[test]
fn attributes_order_each_layer_missing_then_bools_numbers_strings() {
    let feats = features();
    let plain = build(opts(0, 0), &["a", "b"], &feats).unwrap().0;
    let asc = build(
        TilerOptions {
            order: vec![by("rank", false)],
            ..opts(0, 0)
        },
        &["a", "b"],
        &feats,
    )
    .unwrap()
    .0;
    // Missing (3), false (7), true (4), -2.5 (2), 0 (8), 5 (0, 9 in spatial order), 10 (5),
    // "a" (6), "b" (1).
    let got = ids(&written(&asc, "a"));
    assert_eq!(&got[..5], [3, 7, 4, 2, 8]);
    assert_eq!(
        got[5..7].iter().copied().collect::<BTreeSet<_>>(),
        BTreeSet::from([0, 9])
    );
    assert_eq!(&got[7..], [5, 6, 1]);
    // The ties keep the spatial order of the unordered tile.
    let spatial = ids(&written(&plain, "a"));
    let pos = |id| spatial.iter().position(|&x| x == id).unwrap();
    assert_eq!(got[5..7].to_vec(), {
        let mut t = vec![0, 9];
        t.sort_by_key(|&id| pos(id));
        t
    });
    // The same features, and the other layer untouched.
    let set = |v: Vec<u64>| v.into_iter().collect::<BTreeSet<_>>();
    assert_eq!(set(got.clone()), set(spatial));
    assert_eq!(ids(&written(&asc, "b")), ids(&written(&plain, "b")));
    // Descending is the reverse of ascending, ties (in spatial order) aside.
    let desc = build(
        TilerOptions {
            order: vec![by("rank", true)],
            ..opts(0, 0)
        },
        &["a", "b"],
        &feats,
    )
    .unwrap()
    .0;
    let d = ids(&written(&desc, "a"));
    assert_eq!(&d[..3], [1, 6, 5]);
    assert_eq!(&d[d.len() - 5..], [8, 2, 4, 7, 3]);
    // Two keys: group first, rank descending within it.
    let two = build(
        TilerOptions {
            order: vec![by("group", false), by("rank", true)],
            ..opts(0, 0)
        },
        &["a", "b"],
        &feats,
    )
    .unwrap()
    .0;
    let w = written(&two, "a");
    let groups: Vec<i64> = w
        .iter()
        .map(|f| match &f.2 {
            Some(PropValue::Int(g) | PropValue::SInt(g)) => *g,
            Some(PropValue::UInt(g)) => *g as i64,
            other => panic!("{other:?}"),
        })
        .collect();
    let mut sorted = groups.clone();
    sorted.sort();
    assert_eq!(groups, sorted);
    // Group 0 holds 0, 3, 6, 9: "a" (6) first, then 5 and 5 (0, 9), missing (3) last.
    assert_eq!(ids(&w[..4]).first(), Some(&6));
    assert_eq!(ids(&w[..4]).last(), Some(&3));
    // An attribute no feature has leaves the spatial order.
    let none = build(
        TilerOptions {
            order: vec![by("nothing", false)],
            ..opts(0, 0)
        },
        &["a", "b"],
        &feats,
    )
    .unwrap()
    .0;
    assert_eq!(ids(&written(&none, "a")), ids(&written(&plain, "a")));
}

#[test]
fn size_orders_polygons_smallest_or_largest_first() {
    let mut feats = Vec::new();
    for (i, side) in [3.0, 20.0, 1.0, 8.0, 40.0].into_iter().enumerate() {
        let x = -150.0 + 60.0 * i as f64;
        feats.push(feat(
            0,
            Some(i as u64),
            Geometry::Polygon(rect(x, -10.0, x + side, -10.0 + side)),
            json!({}),
        ));
    }
    for (largest, want) in [(false, [2, 0, 3, 1, 4]), (true, [4, 1, 3, 0, 2])] {
        let o = TilerOptions {
            order: vec![OrderKey::Size {
                largest_first: largest,
            }],
            ..opts(0, 0)
        };
        let bytes = build(o, &["p"], &feats).unwrap().0;
        assert_eq!(ids(&written(&bytes, "p")), want, "largest first: {largest}");
    }
}
