//! `--drop-densest-as-needed` measures spacing across layers and by size: a crowded place is
//! thinned in every layer alike, a long line is never "dense" because it starts in the crowd,
//! and the deepest zoom is thinned only as far as its limits need.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::{BTreeMap, BTreeSet};

use etl_tiles::tiler::TilerOptions;
use geo_types::{Geometry, LineString};
use serde_json::json;

mod support;
use support::*;

const POINTS: u64 = 0;
const BUILDINGS: u64 = 10_000;
const ROADS: u64 = 20_000;
const FAR: u64 = 30_000;

/// A crowd of 600 points and 60 buildings around 10°E 5°N (the buildings sparse in their own
/// layer, crowded among the points), five long roads in the points' layer that start in the
/// crowd, and a few points far from everything.
fn town() -> Vec<Feat> {
    let mut rng = Rng(5);
    let mut feats = Vec::new();
    for i in 0..600 {
        let (x, y) = (rng.range(10.0, 11.0), rng.range(5.0, 6.0));
        feats.push(feat(0, Some(POINTS + i), point(x, y), json!({})));
    }
    for i in 0..60 {
        let (x, y) = (rng.range(10.0, 11.0), rng.range(5.0, 6.0));
        let r = rect(x, y, x + 0.02, y + 0.02);
        feats.push(feat(
            1,
            Some(BUILDINGS + i),
            Geometry::Polygon(r),
            json!({}),
        ));
    }
    for i in 0..5 {
        let y = 5.1 + 0.2 * i as f64;
        let road = LineString::from(vec![(10.5, y), (60.0, y + 20.0), (120.0, y - 30.0)]);
        feats.push(feat(
            0,
            Some(ROADS + i),
            Geometry::LineString(road),
            json!({}),
        ));
    }
    for i in 0..10 {
        let x = -170.0 + 15.0 * i as f64;
        feats.push(feat(0, Some(FAR + i), point(x, -40.0), json!({})));
    }
    feats
}

fn count(ids: &BTreeSet<u64>, lo: u64, n: u64) -> usize {
    ids.range(lo..lo + n).count()
}

#[test]
fn crowds_thin_in_every_layer_and_long_lines_stay() {
    let feats = town();
    let o = TilerOptions {
        max_tile_features: 120,
        drop_densest: true,
        drop_rate: 1.0,
        ..opts(0, 6)
    };
    let (bytes, report) = build(o, &["pts", "bldg"], &feats).unwrap();
    assert!(report.dropped > 0, "{report:?}");
    let by_zoom = ids_by_zoom(&bytes);
    for z in 0..=6u8 {
        let ids = &by_zoom[&z];
        // The roads start among hundreds of points of their own layer, yet none is dropped
        // at any zoom: their length is their spacing.
        assert_eq!(count(ids, ROADS, 5), 5, "z{z}: roads {ids:?}");
        // The far points are far from everything: never thinned.
        assert_eq!(count(ids, FAR, 10), 10, "z{z}: far points");
        // The crowd is thinned in both of its layers alike: the buildings, sparse in their
        // own layer, are crowded among the points (from z4 they are large enough to be drawn
        // as themselves, not as tiny polygons).
        if z < 4 {
            continue;
        }
        let (p, b) = (count(ids, POINTS, 600), count(ids, BUILDINGS, 60));
        assert!(p < 600 && b < 60, "z{z}: {p} points, {b} buildings");
        assert!(p > 0 && b > 0, "z{z}: {p} points, {b} buildings");
        let (pf, bf) = (p as f64 / 600.0, b as f64 / 60.0);
        assert!(
            bf <= 2.0 * pf + 0.1,
            "z{z}: {p} of 600 points, {b} of 60 buildings"
        );
    }
    // Every tile within the limit.
    for (c, layers) in tiles(&bytes) {
        let n: usize = layers.iter().map(|l| l.features.len()).sum();
        assert!(n <= 120, "{c}: {n} features");
    }
}

#[test]
fn the_deepest_zoom_keeps_as_much_as_fits() {
    let feats = town();
    let limit = 120;
    let o = TilerOptions {
        max_tile_features: limit,
        drop_densest: true,
        drop_rate: 1.0,
        ..opts(0, 4)
    };
    let (bytes, _) = build(o, &["pts", "bldg"], &feats).unwrap();
    let mut densest: BTreeMap<u8, usize> = BTreeMap::new();
    for (c, layers) in tiles(&bytes) {
        let n: usize = layers.iter().map(|l| l.features.len()).sum();
        let d = densest.entry(c.z).or_default();
        *d = (*d).max(n);
    }
    // The deepest zoom's densest tile is thinned to within a few percent of its limit (a
    // narrow margin).
    let deepest = densest[&4];
    assert!(
        deepest <= limit && deepest * 100 >= limit * 90,
        "z4 densest tile: {deepest} of {limit}: {densest:?}"
    );
    assert!(densest.values().all(|n| *n <= limit), "{densest:?}");
}
