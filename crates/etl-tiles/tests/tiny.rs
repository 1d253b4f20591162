//! Tiny-polygon reduction: below the max zoom, polygons under 4 square tile units are drawn as
//! 2×2 squares with a probability that keeps their total area; a polygon drawn at a zoom is
//! drawn at every deeper zoom; at the max zoom every polygon is itself.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::collections::{BTreeMap, BTreeSet};

use etl_tiles::geom::TileGeom;
use etl_tiles::tiler::TilerOptions;
use geo_types::Geometry;
use serde_json::json;
use support::{Feat, Rng, build, feat, opts, rect, tiles};

const N: u64 = 4000;
/// Side of each input square in degrees: about 1.09 tile units at z5 (1.19 square units, so
/// tiny there), 2.2 at z6 (4.8 square units: drawn as itself).
const SIDE: f64 = 0.003;

fn squares() -> Vec<Feat> {
    let mut rng = Rng(0x7170);
    (0..N)
        .map(|i| {
            let (x, y) = (rng.range(1.0, 9.0), rng.range(-4.0, 4.0));
            let g = Geometry::Polygon(rect(x, y, x + SIDE, y + SIDE));
            feat(0, Some(i), g, json!({"i": i}))
        })
        .collect()
}

/// Per zoom: each drawn polygon feature's id and its area in square tile units.
fn drawn(bytes: &[u8]) -> BTreeMap<u8, BTreeMap<u64, f64>> {
    let mut out: BTreeMap<u8, BTreeMap<u64, f64>> = BTreeMap::new();
    for (c, layers) in tiles(bytes) {
        for f in layers.iter().flat_map(|l| &l.features) {
            let TileGeom::Polygons(p) = &f.geom else {
                panic!("{c}: {:?}", f.geom)
            };
            let twice: i64 = p
                .iter()
                .flatten()
                .map(|r| {
                    r.windows(2)
                        .map(|w| {
                            i64::from(w[0][0]) * i64::from(w[1][1])
                                - i64::from(w[1][0]) * i64::from(w[0][1])
                        })
                        .sum::<i64>()
                })
                .sum();
            // A polygon near a tile edge is also in a neighbour's buffer, clipped: one entry
            // per id, the largest piece.
            let a = out
                .entry(c.z)
                .or_default()
                .entry(f.id.unwrap())
                .or_insert(0.0);
            *a = a.max(twice as f64 / 2.0);
        }
    }
    out
}

#[test]
fn tiny_polygons_become_squares_that_keep_their_total_area() {
    let (bytes, _) = build(opts(3, 8), &["b"], &squares()).unwrap();
    let by_zoom = drawn(&bytes);
    // z5: each input is 1.19 square units; about 30 % are drawn, each as a 2×2 square.
    let unit_deg = 360.0 / 32.0 / 4096.0;
    let input_area = N as f64 * (SIDE / unit_deg).powi(2);
    let z5 = &by_zoom[&5];
    assert!(z5.len() < N as usize / 2, "{} of {N} drawn at z5", z5.len());
    for (id, a) in z5 {
        assert_eq!(*a, 4.0, "feature {id} at z5 is not a 2x2 square");
    }
    let drawn_area = z5.len() as f64 * 4.0;
    // Binomial with n = 4000, p = 0.3: the count's relative standard deviation is 2.4 %, so
    // the bound is about 2σ (the hash is fixed: the outcome is deterministic, not flaky).
    assert!(
        (drawn_area / input_area - 1.0).abs() < 0.05,
        "drawn {drawn_area} of {input_area} square units"
    );
    // z6: no longer tiny, every polygon drawn as itself; z8 (the max zoom) too.
    assert_eq!(by_zoom[&6].len(), N as usize);
    assert_eq!(by_zoom[&8].len(), N as usize);
    assert!(by_zoom[&8].values().all(|a| *a >= 49.0));
    // Monotone: drawn at z3 or z4 means drawn at every deeper zoom.
    for z in 3..8u8 {
        let here: BTreeSet<&u64> = by_zoom
            .get(&z)
            .map(|m| m.keys().collect())
            .unwrap_or_default();
        let up: BTreeSet<&u64> = by_zoom[&(z + 1)].keys().collect();
        assert!(here.is_subset(&up), "z{z}: {:?}", here.difference(&up));
    }
    assert!(by_zoom.get(&4).map_or(0, BTreeMap::len) < z5.len());
}

#[test]
fn without_the_reduction_tiny_polygons_are_simplified_away() {
    let o = TilerOptions {
        tiny_polygon_reduction: false,
        ..opts(5, 8)
    };
    let (bytes, _) = build(o, &["b"], &squares()).unwrap();
    let by_zoom = drawn(&bytes);
    // At z5 a square of 1.09 units is within the one-unit simplification tolerance of a line:
    // (nearly) all vanish, and their area with them. With the reduction, about 30 % are drawn.
    let z5 = by_zoom.get(&5).map_or(0, BTreeMap::len);
    assert!(z5 < N as usize / 10, "{z5} drawn at z5");
    assert_eq!(by_zoom[&6].len(), N as usize);
}

#[test]
fn the_area_of_a_polygon_does_not_depend_on_its_parts_winding() {
    // Two islands of one multipolygon, wound in opposite directions (as merged GeoJSON often
    // is), each large at z5: never tiny, drawn as themselves at every zoom.
    let a = rect(1.0, 1.0, 1.5, 1.5);
    let b = {
        let r = rect(3.0, 1.0, 3.5, 1.5);
        let mut ring = r.exterior().clone();
        ring.0.reverse();
        geo_types::Polygon::new(ring, vec![])
    };
    let mp = Geometry::MultiPolygon(geo_types::MultiPolygon(vec![a, b]));
    let (bytes, _) = build(opts(3, 8), &["b"], &[feat(0, Some(1), mp, json!({}))]).unwrap();
    let by_zoom = drawn(&bytes);
    for z in 3..=8u8 {
        let a = by_zoom[&z][&1];
        assert!(a > 4.0, "z{z}: area {a}");
    }
}
