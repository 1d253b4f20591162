//! Tile polygons are valid (OGC, checked by the `geo` crate, not by our own code) whatever the
//! input: self-intersecting rings, spikes, holes crossing their exterior, parts overlapping,
//! and what simplification, clipping and rounding make of them.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use etl_tiles::geom::{TileGeom, WorldGeom, clip, simplify_world, to_tile};
use etl_tiles::tile::{TileCoord, WORLD_BITS, tile_bounds};
use geo::algorithm::Validation;
use geo_types::{Geometry, LineString, MultiPolygon, Polygon};
use proptest::prelude::*;
use support::{Rng, build, feat, opts, tiles};

/// A tile polygon set as a geo multipolygon (y down, as the tile has it: validity does not
/// depend on the axis direction).
#[path = "common/geo_polygons.rs"]
mod geo_polygons;
use geo_polygons::to_geo;

fn problems(polys: &[Vec<Vec<[i32; 2]>>]) -> Vec<String> {
    to_geo(polys)
        .validation_errors()
        .iter()
        .map(ToString::to_string)
        .collect()
}

/// A hostile ring: vertices anywhere in a small square of world space (so it crosses itself,
/// spikes and repeats), around `c`.
fn hostile_ring(c: [i64; 2], spread: i64) -> impl Strategy<Value = Vec<[i64; 2]>> {
    prop::collection::vec((-spread..=spread, -spread..=spread), 3..24).prop_map(move |v| {
        let mut r: Vec<[i64; 2]> = v.into_iter().map(|(x, y)| [c[0] + x, c[1] + y]).collect();
        r.push(r[0]);
        r
    })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(500))]

    /// The cutter's steps for one tile — simplify in world units, clip to the buffered tile,
    /// scale to the tile — on hostile polygons: what comes out is valid.
    #[test]
    fn simplified_clipped_rounded_polygons_are_valid(
        rings in prop::collection::vec(hostile_ring([1 << 31, 1 << 31], 1 << 22), 1..4),
        parts in 1usize..3,
        z in 6u8..=14,
        tol in prop_oneof![Just(0.0), 0.5f64..4.0],
        buffer in prop_oneof![Just(0u32), Just(64u32)],
    ) {
        let polys: Vec<Vec<Vec<[i64; 2]>>> = (0..parts)
            .map(|k| rings.iter().skip(k).cloned().collect::<Vec<_>>())
            .filter(|p| !p.is_empty())
            .collect();
        let g = WorldGeom::Polygons(polys);
        let unit = (1i64 << (WORLD_BITS - u32::from(z))) as f64 / 4096.0;
        let Some(g) = simplify_world(&g, tol * unit) else { return Ok(()) };
        let n = 1u32 << z;
        let mid = n / 2;
        for (x, y) in [(mid, mid), (mid - 1, mid), (mid, mid - 1), (mid - 1, mid - 1)] {
            let tile = TileCoord { z, x, y };
            let Some(c) = clip(&g, tile_bounds(tile, 4096, buffer)) else { continue };
            if let Some(TileGeom::Polygons(p)) = to_tile(&c, tile, 4096) {
                let bad = problems(&p);
                prop_assert!(bad.is_empty(), "{tile}: {bad:?} in {p:?}");
            }
        }
    }
}

/// Every polygon of every tile of an archive made from hostile polygons (star-shaped rings
/// with spikes, self-crossing rings, holes over the exterior's edge, overlapping parts), at
/// every zoom: valid by `geo`.
#[test]
fn every_tile_polygon_of_a_hostile_set_is_valid() {
    let mut rng = Rng(0x5eed_1234);
    let mut feats = Vec::new();
    for i in 0..48u64 {
        let (cx, cy) = (rng.range(-20.0, 20.0), rng.range(-20.0, 20.0));
        let r = rng.range(0.5, 6.0);
        let ring = |rng: &mut Rng, r: f64, n: usize, wild: bool| {
            let mut pts: Vec<(f64, f64)> = (0..n)
                .map(|k| {
                    let a = if wild {
                        rng.range(0.0, std::f64::consts::TAU)
                    } else {
                        k as f64 / n as f64 * std::f64::consts::TAU
                    };
                    let d = r * rng.range(0.05, 1.0);
                    (cx + d * a.cos(), cy + d * a.sin())
                })
                .collect();
            pts.push(pts[0]);
            LineString::from(pts)
        };
        let wild = i % 3 == 0;
        let exterior = ring(&mut rng, r, 60, wild);
        // A hole that pokes out of the exterior half the time.
        let hole = ring(&mut rng, r * if i % 2 == 0 { 0.9 } else { 0.3 }, 12, false);
        let p = Polygon::new(exterior, vec![hole]);
        let g = if i % 4 == 0 {
            // Overlapping parts.
            let q = Polygon::new(ring(&mut rng, r, 40, wild), vec![]);
            Geometry::MultiPolygon(MultiPolygon(vec![p, q]))
        } else {
            Geometry::Polygon(p)
        };
        feats.push(feat(0, Some(i), g, serde_json::json!({})));
    }
    let (bytes, _) = build(opts(0, 5), &["hostile"], &feats).unwrap();
    let all = tiles(&bytes);
    let mut polygons = 0;
    for (tile, layers) in &all {
        for l in layers {
            for f in &l.features {
                if let TileGeom::Polygons(p) = &f.geom {
                    polygons += 1;
                    let bad = problems(p);
                    assert!(bad.is_empty(), "{tile} feature {:?}: {bad:?}", f.id);
                }
            }
        }
    }
    assert!(polygons > 150, "only {polygons} polygons checked");
}
