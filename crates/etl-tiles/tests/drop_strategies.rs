//! `--drop-smallest-as-needed` and `--drop-fraction-as-needed`: an over-limit tile drops its
//! smallest lines and polygons, or a share of its features; what the tile needed applies to
//! every tile of its zoom (a sparse tile beside a dense one thins alike, no seams); points shown
//! at z stay at z + 1; the strategies are alternatives.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeMap;

use etl_tiles::tile::TileCoord;
use etl_tiles::tiler::{TilerError, TilerOptions};
use geo_types::{Geometry, LineString};
use serde_json::json;

mod support;
use support::*;

fn feature_count(layers: &[etl_tiles::mvt::DecodedLayer]) -> usize {
    layers.iter().map(|l| l.features.len()).sum()
}

/// Squares near the equator (so Web Mercator barely changes their sizes) of sides 3 % apart
/// (each twice), a dense group at 10°E and a sparse one at 100°W; 20 points too.
fn squares() -> (Vec<Feat>, BTreeMap<u64, f64>) {
    let mut feats = Vec::new();
    let mut sides = BTreeMap::new();
    let mut rng = Rng(11);
    for i in 0..400u64 {
        let side = 0.01 * 1.03f64.powi((i * 7 % 200) as i32);
        let (x0, spread) = if i < 360 {
            (10.0, 30.0)
        } else {
            (-100.0, 20.0)
        };
        let (x, y) = (x0 + rng.range(0.0, spread), rng.range(-4.0, 4.0));
        sides.insert(i, side);
        feats.push(feat(
            0,
            Some(i),
            Geometry::Polygon(rect(x, y, x + side, y + side)),
            json!({}),
        ));
    }
    for i in 0..20u64 {
        let (x, y) = (rng.range(-150.0, 150.0), rng.range(-4.0, 4.0));
        feats.push(feat(1, Some(10_000 + i), point(x, y), json!({})));
    }
    (feats, sides)
}

#[test]
fn drop_smallest_keeps_the_largest_and_applies_the_size_to_the_zoom() {
    let (feats, sides) = squares();
    let o = TilerOptions {
        max_tile_features: 80,
        drop_smallest: true,
        drop_rate: 1.0,
        ..opts(0, 4)
    };
    let (bytes, report) = build(o, &["sq", "pts"], &feats).unwrap();
    assert!(report.dropped > 0, "{report:?}");
    for (c, layers) in tiles(&bytes) {
        assert!(feature_count(&layers) <= 80, "{c}");
    }
    let by_zoom = ids_by_zoom(&bytes);
    for (z, ids) in &by_zoom {
        // Every point, at every zoom: points are not dropped by size.
        assert_eq!(ids.iter().filter(|id| **id >= 10_000).count(), 20, "z{z}");
        // The squares shown are the largest: none shown is smaller than one left out, with a
        // margin for the projection (sides differ by 3 %, latitudes by under 4°).
        let shown: Vec<f64> = ids.iter().filter_map(|id| sides.get(id)).copied().collect();
        let hidden: Vec<f64> = sides
            .iter()
            .filter(|(id, _)| !ids.contains(id))
            .map(|(_, s)| *s)
            .collect();
        if let (Some(min_shown), Some(max_hidden)) = (
            shown.iter().copied().reduce(f64::min),
            hidden.iter().copied().reduce(f64::max),
        ) {
            assert!(
                min_shown * 1.03 >= max_hidden,
                "z{z}: a square of side {min_shown} shown, one of {max_hidden} not"
            );
        }
    }
    // Zoom-wide: the sparse group (40 squares, well under the limit in its own tiles) still
    // loses its small squares at the zooms where the dense group had to drop.
    let sparse_at = |z: u8| {
        by_zoom[&z]
            .iter()
            .filter(|id| (360..400).contains(*id))
            .count()
    };
    assert!(sparse_at(2) < 40, "{}", sparse_at(2));
}

/// A dense cluster of points in one quadrant and a sparse one in the opposite quadrant.
fn clusters() -> Vec<Feat> {
    let mut rng = Rng(23);
    let mut feats = Vec::new();
    for i in 0..2400u64 {
        let (x, y) = (rng.range(40.0, 80.0), rng.range(20.0, 50.0));
        feats.push(feat(0, Some(i), point(x, y), json!({})));
    }
    for i in 2400..2550u64 {
        let (x, y) = (rng.range(-120.0, -60.0), rng.range(-50.0, -20.0));
        feats.push(feat(0, Some(i), point(x, y), json!({})));
    }
    feats
}

#[test]
fn drop_fraction_thins_every_tile_of_the_zoom_alike() {
    let feats = clusters();
    let o = TilerOptions {
        max_tile_features: 200,
        drop_fraction: true,
        drop_rate: 1.0,
        ..opts(0, 7)
    };
    let (bytes, report) = build(o, &["pts"], &feats).unwrap();
    assert!(report.dropped > 0, "{report:?}");
    let all = tiles(&bytes);
    for (c, layers) in &all {
        assert!(feature_count(layers) <= 200, "{c}");
    }
    let by_zoom = ids_by_zoom(&bytes);
    // The sparse cluster's tile at z1 holds 150 points, under the limit, yet keeps about the
    // share the dense tile could (200 of 2400), not all of them.
    let sparse = |z: u8| by_zoom[&z].iter().filter(|id| **id >= 2400).count();
    assert!(sparse(1) < 50, "z1 sparse kept {}", sparse(1));
    let sparse_tile = all
        .iter()
        .find(|(c, _)| **c == TileCoord::new(1, 0, 1).unwrap())
        .map(|(_, l)| feature_count(l))
        .unwrap();
    assert!(sparse_tile < 50, "{sparse_tile}");
    // Points shown at z stay at z + 1.
    for (z, ids) in &by_zoom {
        if let Some(up) = by_zoom.get(&(z + 1)) {
            assert!(
                ids.is_subset(up),
                "z{z}: {} not kept",
                ids.difference(up).count()
            );
        }
    }
    // Deep enough, everything is back.
    assert_eq!(by_zoom[&7].len(), 2550);
}

#[test]
fn strategies_are_alternatives_and_refused_with_a_shard() {
    let pairs = [
        (true, false, true, false),
        (false, true, false, true),
        (false, false, true, true),
    ];
    for (densest, coalesce, smallest, fraction) in pairs {
        let o = TilerOptions {
            drop_densest: densest,
            coalesce_densest: coalesce,
            drop_smallest: smallest,
            drop_fraction: fraction,
            ..opts(0, 3)
        };
        let e = build(o, &["pts"], &clusters()).unwrap_err();
        assert!(
            matches!(&e, TilerError::Options(m) if m.contains("alternatives")),
            "{e}"
        );
    }
    for (smallest, fraction) in [(true, false), (false, true)] {
        let o = TilerOptions {
            drop_smallest: smallest,
            drop_fraction: fraction,
            shard: Some((0, 2)),
            ..opts(0, 3)
        };
        let e = build(o, &["pts"], &clusters()).unwrap_err();
        assert!(
            matches!(&e, TilerError::Options(m) if m.contains("shard")),
            "{e}"
        );
    }
}

#[test]
fn drop_smallest_splits_a_run_of_equal_sizes() {
    // 200 lines along the equator of exactly one length (their ends fall on whole world
    // units: 360 / 512 degrees is 2^23 units): the limit is reached inside one size.
    let feats: Vec<Feat> = (0..200u64)
        .map(|i| {
            let x = -180.0 + i as f64 * 1.40625;
            let line = LineString::from(vec![(x, 0.0), (x + 0.703125, 0.0)]);
            feat(0, Some(i), Geometry::LineString(line), json!({}))
        })
        .collect();
    let o = TilerOptions {
        max_tile_features: 80,
        drop_smallest: true,
        ..opts(0, 0)
    };
    let (bytes, report) = build(o, &["sq"], &feats).unwrap();
    let shown = ids_by_zoom(&bytes).remove(&0).unwrap_or_default().len();
    assert!((40..=80).contains(&shown), "{shown} shown; {report:?}");
}
