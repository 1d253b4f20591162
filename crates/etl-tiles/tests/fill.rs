//! Polygon interiors: tiles a polygon covers whole are made as runs of one stored tile, not cut
//! one by one. Checked against the geometry itself: every tile wholly inside holds exactly the
//! buffered square, every tile wholly outside (or inside a hole) is absent, at every zoom; the
//! work (fragments) follows the outline, not the area; shards and the drop strategies see the
//! same tiles.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::{BTreeMap, BTreeSet};
use std::io::Cursor;

use etl_tiles::archive::{Archive, merge, verify};
use etl_tiles::geom::TileGeom;
use etl_tiles::tile::{TileCoord, lonlat_to_world, tile_bounds};
use etl_tiles::tiler::TilerOptions;
use geo_types::{Geometry, LineString, Polygon};
use serde_json::json;

mod support;
use support::*;

/// The buffered tile square as the tiler writes it (extent 4096, buffer 5 px = 80 units).
fn is_square(g: &TileGeom) -> bool {
    let TileGeom::Polygons(ps) = g else {
        return false;
    };
    let [p] = ps.as_slice() else { return false };
    let [ring] = p.as_slice() else { return false };
    let corners: BTreeSet<[i32; 2]> = ring.iter().copied().collect();
    corners == BTreeSet::from([[-80, -80], [4176, -80], [4176, 4176], [-80, 4176]])
}

/// World-coordinate box `[min_x, min_y, max_x, max_y]` of a lon/lat box.
fn world_box(w: f64, s: f64, e: f64, n: f64) -> [i64; 4] {
    let (x0, y0) = lonlat_to_world(w, n);
    let (x1, y1) = lonlat_to_world(e, s);
    [x0.min(x1), y0.min(y1), x0.max(x1), y0.max(y1)]
}

fn inside(a: [i64; 4], b: [i64; 4]) -> bool {
    a[0] > b[0] && a[1] > b[1] && a[2] < b[2] && a[3] < b[3]
}

fn disjoint(a: [i64; 4], b: [i64; 4]) -> bool {
    a[2] < b[0] || a[0] > b[2] || a[3] < b[1] || a[1] > b[3]
}

fn holed_square() -> Geometry<f64> {
    let ring = |w: f64, s: f64, e: f64, n: f64| {
        LineString::from(vec![(w, s), (e, s), (e, n), (w, n), (w, s)])
    };
    Geometry::Polygon(Polygon::new(
        ring(-60.0, -50.0, 60.0, 50.0),
        vec![ring(-10.0, -10.0, 10.0, 10.0)],
    ))
}

/// A square from 170°W to 170°E and 80°S to 80°N.
fn continent() -> Geometry<f64> {
    Geometry::Polygon(Polygon::new(
        LineString::from(vec![
            (-170.0, -80.0),
            (170.0, -80.0),
            (170.0, 80.0),
            (-170.0, 80.0),
            (-170.0, -80.0),
        ]),
        vec![],
    ))
}

fn entry_count(bytes: &[u8]) -> usize {
    let mut a = Archive::open(Cursor::new(bytes)).unwrap();
    a.entries().count()
}

#[test]
fn interior_tiles_hold_the_square_and_holes_hold_nothing() {
    let max = 9;
    let (bytes, report) = build(
        opts(0, max),
        &["area"],
        &[feat(0, Some(7), holed_square(), json!({"name": "land"}))],
    )
    .unwrap();
    verify(Cursor::new(&bytes), bytes.len() as u64).unwrap();
    let tiles = tiles(&bytes);
    let outer = world_box(-60.0, -50.0, 60.0, 50.0);
    let hole = world_box(-10.0, -10.0, 10.0, 10.0);
    let (mut filled, mut empty) = (0, 0);
    for z in 0..=max {
        for x in 0..1u32 << z {
            for y in 0..1u32 << z {
                let c = TileCoord::new(z, x, y).unwrap();
                let b = tile_bounds(c, 4096, 80);
                if inside(b, outer) && disjoint(b, hole) {
                    let layers = tiles.get(&c).unwrap_or_else(|| panic!("{c}: missing"));
                    let [f] = layers[0].features.as_slice() else {
                        panic!("{c}: {} features", layers[0].features.len())
                    };
                    assert!(is_square(&f.geom), "{c}: {:?}", f.geom);
                    assert_eq!(f.id, Some(7), "{c}");
                    filled += 1;
                } else if disjoint(b, outer) || inside(b, hole) {
                    assert!(!tiles.contains_key(&c), "{c}: a tile outside the polygon");
                    empty += 1;
                }
            }
        }
    }
    assert!(
        filled > 30_000 && empty > 100_000,
        "{filled} filled, {empty} empty"
    );
    // Every tile counted as written, but the work and the directory follow the outline.
    assert_eq!(report.tiles, tiles.len() as u64);
    assert!(
        report.fragments * 5 < report.tiles,
        "{} fragments for {} tiles",
        report.fragments,
        report.tiles
    );
    assert!(
        entry_count(&bytes) * 5 < tiles.len(),
        "{} entries",
        entry_count(&bytes)
    );
}

#[test]
fn a_continent_sized_polygon_to_z14_costs_its_outline() {
    let land = continent();
    let (bytes, report) = build(
        TilerOptions {
            memory: 8 << 20,
            ..opts(0, 14)
        },
        &["land"],
        &[feat(0, Some(1), land, json!({}))],
    )
    .unwrap();
    verify(Cursor::new(&bytes), bytes.len() as u64).unwrap();
    // About 190 million tiles, from a few hundred thousand fragments and a small archive.
    assert!(report.tiles > 150_000_000, "{report:?}");
    assert!(report.fragments < 2_000_000, "{report:?}");
    assert!(bytes.len() < 20 << 20, "{} bytes", bytes.len());
    assert!(entry_count(&bytes) < 2_000_000);
}

#[test]
fn points_and_other_polygons_over_an_interior_keep_their_order() {
    let big = holed_square();
    let feats = vec![
        feat(0, Some(1), big.clone(), json!({})),
        feat(0, Some(2), big, json!({})),
        feat(
            1,
            Some(3),
            Geometry::Point(geo_types::Point::new(30.0, 20.0)),
            json!({}),
        ),
    ];
    let (bytes, _) = build(opts(6, 6), &["area", "pts"], &feats).unwrap();
    let tiles = tiles(&bytes);
    let (px, py) = lonlat_to_world(30.0, 20.0);
    let shift = 32 - 6;
    let with_point = TileCoord::new(6, (px >> shift) as u32, (py >> shift) as u32).unwrap();
    let outer = world_box(-60.0, -50.0, 60.0, 50.0);
    let hole = world_box(-10.0, -10.0, 10.0, 10.0);
    let mut interior = 0;
    for (c, layers) in &tiles {
        let b = tile_bounds(*c, 4096, 80);
        if !(inside(b, outer) && disjoint(b, hole)) {
            continue;
        }
        interior += 1;
        let ids: Vec<Option<u64>> = layers[0].features.iter().map(|f| f.id).collect();
        assert_eq!(layers[0].name, "area", "{c}");
        assert_eq!(
            ids,
            [Some(1), Some(2)],
            "{c}: both polygons, in input order"
        );
        assert!(layers[0].features.iter().all(|f| is_square(&f.geom)), "{c}");
        if *c == with_point {
            assert_eq!(layers.len(), 2, "{c}: the point's layer too");
            assert_eq!(layers[1].features[0].id, Some(3));
        } else {
            assert_eq!(layers.len(), 1, "{c}");
        }
    }
    assert!(interior > 100, "{interior}");
    assert!(tiles.contains_key(&with_point));
}

#[test]
fn shards_split_runs_of_fills_exactly() {
    let mut rng = Rng(11);
    let mut feats = vec![feat(0, Some(1), holed_square(), json!({"k": 1}))];
    for i in 0..500 {
        let (x, y) = (rng.range(-70.0, 70.0), rng.range(-55.0, 55.0));
        feats.push(feat(
            1,
            Some(100 + i),
            Geometry::Point(geo_types::Point::new(x, y)),
            json!({}),
        ));
    }
    let whole = raw_tiles(&build(opts(0, 8), &["area", "pts"], &feats).unwrap().0);
    let mut joined: BTreeMap<TileCoord, Vec<u8>> = BTreeMap::new();
    for i in 0..3 {
        let o = TilerOptions {
            shard: Some((i, 3)),
            ..opts(0, 8)
        };
        let (bytes, _) = build(o, &["area", "pts"], &feats).unwrap();
        verify(Cursor::new(&bytes), bytes.len() as u64).unwrap();
        for (c, data) in raw_tiles(&bytes) {
            assert!(joined.insert(c, data).is_none(), "{c} in two shards");
        }
    }
    assert_eq!(joined.len(), whole.len());
    assert!(
        joined == whole,
        "the shards' tiles differ from the whole run's"
    );
}

#[test]
fn drop_densest_thins_points_over_an_interior_and_keeps_the_fill() {
    let mut rng = Rng(5);
    let mut feats = vec![feat(0, Some(1), holed_square(), json!({}))];
    for i in 0..4000 {
        let (x, y) = (rng.range(20.0, 22.0), rng.range(20.0, 22.0));
        feats.push(feat(
            1,
            Some(100 + i),
            Geometry::Point(geo_types::Point::new(x, y)),
            json!({"name": format!("point number {i}")}),
        ));
    }
    let o = TilerOptions {
        max_tile_bytes: 6000,
        drop_densest: true,
        drop_rate: 1.0,
        ..opts(4, 6)
    };
    let (bytes, report) = build(o, &["area", "pts"], &feats).unwrap();
    assert!(report.dropped > 0, "{report:?}");
    verify(Cursor::new(&bytes), bytes.len() as u64).unwrap();
    let outer = world_box(-60.0, -50.0, 60.0, 50.0);
    let hole = world_box(-10.0, -10.0, 10.0, 10.0);
    for (c, layers) in tiles(&bytes) {
        let b = tile_bounds(c, 4096, 80);
        if inside(b, outer) && disjoint(b, hole) {
            assert_eq!(layers[0].name, "area", "{c}");
            assert!(is_square(&layers[0].features[0].geom), "{c}");
        }
    }
}

/// Merging shards of a continent at z14 keeps its runs: one call per directory entry, not one
/// per tile (190 million of them).
#[test]
fn merged_shards_of_a_continent_keep_their_runs() {
    let land = continent();
    let feats = [feat(0, Some(1), land, json!({}))];
    let (whole, report) = build(opts(0, 14), &["land"], &feats).unwrap();
    let parts: Vec<Archive<Cursor<Vec<u8>>>> = (0..2)
        .map(|i| {
            let o = TilerOptions {
                shard: Some((i, 2)),
                ..opts(0, 14)
            };
            let (bytes, _) = build(o, &["land"], &feats).unwrap();
            Archive::open(Cursor::new(bytes)).unwrap()
        })
        .collect();
    let (merged, m) = merge(parts, Cursor::new(Vec::new())).unwrap();
    let merged = merged.into_inner();
    verify(Cursor::new(&merged), merged.len() as u64).unwrap();
    assert_eq!(m.tiles, report.tiles, "{m:?}");
    let entries = |bytes: &[u8]| -> Vec<(u64, u32)> {
        let mut a = Archive::open(Cursor::new(bytes)).unwrap();
        a.entries()
            .map(|e| {
                let e = e.unwrap();
                (e.tile_id, e.run_length)
            })
            .collect()
    };
    let (a, b) = (entries(&whole), entries(&merged));
    assert_eq!(a.iter().map(|e| u64::from(e.1)).sum::<u64>(), report.tiles);
    assert_eq!(b.iter().map(|e| u64::from(e.1)).sum::<u64>(), report.tiles);
    assert!(
        b.len() < 2 * a.len() + 10,
        "{} entries merged, {} whole",
        b.len(),
        a.len()
    );
}
