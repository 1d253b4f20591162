//! The tiler through its public API: features in, an archive out, decoded tile by tile and
//! checked against what the features were (ids, attributes, geometry within tile + buffer,
//! MVT winding), plus tile limits, spilling, metadata, `-zg`, clamping and the `pmtiles`
//! crate as an independent reader.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::{BTreeMap, BTreeSet};
use std::io::Cursor;

use etl_tiles::archive::{Archive, HEADER_LEN, Header, decode_directory, verify};
use etl_tiles::geom::TileGeom;
use etl_tiles::mvt::{DecodedLayer, PropValue};
use etl_tiles::tile::{TileCoord, lonlat_to_world, tile_coord, tile_id};
use etl_tiles::tiler::{Added, AttrFilter, Tiler, TilerError, TilerOptions};
use geo::Contains;
use geo_types::{Geometry, LineString, Polygon, coord};
use proptest::prelude::*;
use serde_json::{Map, json};

mod support;
use support::*;

/// Tile entry sizes (compressed, as stored).
fn tile_sizes(bytes: &[u8]) -> Vec<(TileCoord, u32)> {
    let mut a = Archive::open(Cursor::new(bytes)).unwrap();
    a.entries()
        .map(|e| {
            let e = e.unwrap();
            (tile_coord(e.tile_id).unwrap(), e.length)
        })
        .collect()
}

/// Twice the MVT signed area of a closed ring: positive is an exterior ring (clockwise on
/// screen, y down), as MVT 2.1 section 4.3.4.4 defines it.
fn area2(ring: &[[i32; 2]]) -> i64 {
    ring.windows(2)
        .map(|w| i64::from(w[0][0]) * i64::from(w[1][1]) - i64::from(w[1][0]) * i64::from(w[0][1]))
        .sum()
}

/// Checks a decoded geometry: every vertex inside the tile grown by `buffer` units, rings
/// closed with at least 4 points, exteriors positive and holes negative.
fn check_geom(tile: TileCoord, g: &TileGeom, buffer: i32) {
    let (lo, hi) = (-buffer, 4096 + buffer);
    let inside = |p: &[i32; 2]| {
        assert!(
            (lo..=hi).contains(&p[0]) && (lo..=hi).contains(&p[1]),
            "{tile}: vertex {p:?} outside the tile + buffer [{lo}, {hi}]"
        );
    };
    match g {
        TileGeom::Points(ps) => {
            assert!(!ps.is_empty(), "{tile}: empty point feature");
            ps.iter().for_each(inside);
        }
        TileGeom::Lines(ls) => {
            for l in ls {
                assert!(l.len() >= 2, "{tile}: line with {} points", l.len());
                l.iter().for_each(inside);
            }
        }
        TileGeom::Polygons(ps) => {
            for poly in ps {
                assert!(!poly.is_empty(), "{tile}: polygon without rings");
                for (i, ring) in poly.iter().enumerate() {
                    assert!(ring.len() >= 4, "{tile}: ring with {} points", ring.len());
                    assert_eq!(ring.first(), ring.last(), "{tile}: ring not closed");
                    ring.iter().for_each(inside);
                    let a = area2(ring);
                    if i == 0 {
                        assert!(a > 0, "{tile}: exterior ring area {a} not positive");
                    } else {
                        assert!(a < 0, "{tile}: hole area {a} not negative");
                    }
                }
            }
        }
    }
}

/// All point features of a zoom by feature id: how often each id appears.
fn point_ids_at(tiles: &BTreeMap<TileCoord, Vec<DecodedLayer>>, z: u8) -> BTreeMap<u64, usize> {
    let mut seen = BTreeMap::new();
    for (c, layers) in tiles.iter().filter(|(c, _)| c.z == z) {
        for l in layers {
            for f in &l.features {
                let TileGeom::Points(ps) = &f.geom else {
                    panic!("{c}: not a point feature: {:?}", f.geom)
                };
                assert_eq!(ps.len(), 1, "{c}: one point per feature");
                *seen.entry(f.id.expect("feature id")).or_insert(0) += 1;
            }
        }
    }
    seen
}

/// The tile-local position of a lon/lat in tile `c` (extent 4096), rounded down.
fn tile_local(c: TileCoord, lon: f64, lat: f64) -> [i64; 2] {
    let (wx, wy) = lonlat_to_world(lon, lat);
    let size = 1i64 << (32 - u32::from(c.z));
    [
        (wx - i64::from(c.x) * size) * 4096 / size,
        (wy - i64::from(c.y) * size) * 4096 / size,
    ]
}

fn random_points(n: u64, seed: u64, area: [f64; 4]) -> Vec<(f64, f64)> {
    let mut rng = Rng(seed | 1);
    (0..n)
        .map(|_| (rng.range(area[0], area[2]), rng.range(area[1], area[3])))
        .collect()
}

#[test]
fn every_point_once_per_zoom_with_drop_rate_1() {
    let pts = random_points(1500, 7, [-106.0, 37.0, -103.0, 40.0]);
    let feats: Vec<Feat> = pts
        .iter()
        .enumerate()
        .map(|(i, (x, y))| feat(0, Some(i as u64), point(*x, *y), json!({"i": i})))
        .collect();
    let o = TilerOptions {
        drop_rate: 1.0,
        ..opts(0, 9)
    };
    let (bytes, report) = build(o, &["pts"], &feats).unwrap();
    assert_eq!(report.features, 1500);
    let tiles = tiles(&bytes);
    let all: BTreeMap<u64, usize> = (0..1500).map(|i| (i, 1)).collect();
    for z in 0..=9 {
        assert_eq!(
            point_ids_at(&tiles, z),
            all,
            "z{z}: every point exactly once"
        );
    }
    // At z9 the points spread over several tiles, each where its coordinates say.
    let z9: Vec<_> = tiles.keys().filter(|c| c.z == 9).collect();
    assert!(z9.len() > 4, "{} tiles at z9", z9.len());
    for (c, layers) in tiles.iter().filter(|(c, _)| c.z == 9) {
        for f in &layers[0].features {
            let (x, y) = pts[f.id.unwrap() as usize];
            let want = tile_local(*c, x, y);
            let TileGeom::Points(p) = &f.geom else {
                unreachable!()
            };
            let got = [i64::from(p[0][0]), i64::from(p[0][1])];
            assert!(
                (0..4096).contains(&want[0]) && (0..4096).contains(&want[1]),
                "{c}: point {:?} ({x}, {y}) is in another tile",
                f.id
            );
            assert!(
                (got[0] - want[0]).abs() <= 1 && (got[1] - want[1]).abs() <= 1,
                "{c}: point {:?} at {got:?}, expected {want:?}",
                f.id
            );
        }
    }
}

#[test]
fn every_point_once_at_the_base_zoom_and_thinned_below() {
    let pts = random_points(3000, 11, [-1.0, -1.0, 1.0, 1.0]);
    let feats: Vec<Feat> = pts
        .iter()
        .enumerate()
        .map(|(i, (x, y))| feat(0, Some(i as u64), point(*x, *y), json!({})))
        .collect();
    // Default drop rate 2.5, base zoom = max zoom: all at z8, fewer at each zoom below.
    let (bytes, _) = build(opts(0, 8), &["pts"], &feats).unwrap();
    let tiles = tiles(&bytes);
    let at8 = point_ids_at(&tiles, 8);
    assert_eq!(at8, (0..3000).map(|i| (i, 1)).collect());
    let mut prev: BTreeSet<u64> = at8.keys().copied().collect();
    for z in (0..8).rev() {
        let ids = point_ids_at(&tiles, z);
        assert!(ids.values().all(|n| *n == 1), "z{z}: a point twice");
        let ids: BTreeSet<u64> = ids.keys().copied().collect();
        assert!(ids.is_subset(&prev), "z{z}: a point not kept at z{}", z + 1);
        if z == 7 {
            // 1/2.5 of the points, give or take.
            assert!(
                (900..=1500).contains(&ids.len()),
                "z7 keeps {} of 3000",
                ids.len()
            );
        }
        prev = ids;
    }
    // An explicit base zoom below the max: every point from the base zoom on.
    let o = TilerOptions {
        base_zoom: Some(5),
        ..opts(0, 8)
    };
    let (bytes, _) = build(o, &["pts"], &feats).unwrap();
    let tiles = self::tiles(&bytes);
    for z in 5..=8 {
        assert_eq!(point_ids_at(&tiles, z).len(), 3000, "z{z}");
    }
    assert!(point_ids_at(&tiles, 4).len() < 3000);
}

#[test]
fn polygon_crossing_tiles_at_z2_lands_in_each_and_keeps_its_hole() {
    // ±10° around (0, 0): four z2 tiles meet there. A hole inside the north-east quarter, far
    // enough from lon 0 and lat 0 to stay out of the other tiles' buffers (3.5° at z1).
    let exterior = LineString::from(vec![
        (-10.0, -10.0),
        (10.0, -10.0),
        (10.0, 10.0),
        (-10.0, 10.0),
        (-10.0, -10.0),
    ]);
    let hole = LineString::from(vec![
        (5.0, 5.0),
        (8.0, 5.0),
        (8.0, 8.0),
        (5.0, 8.0),
        (5.0, 5.0),
    ]);
    let poly = Geometry::Polygon(Polygon::new(exterior, vec![hole]));
    let o = TilerOptions {
        buffer: 5,
        ..opts(0, 2)
    };
    let (bytes, _) = build(o, &["area"], &[feat(0, Some(9), poly, json!({}))]).unwrap();
    let tiles = tiles(&bytes);
    let z2: BTreeSet<(u32, u32)> = tiles
        .keys()
        .filter(|c| c.z == 2)
        .map(|c| (c.x, c.y))
        .collect();
    assert_eq!(z2, BTreeSet::from([(1, 1), (2, 1), (1, 2), (2, 2)]));
    assert_eq!(
        tiles.keys().filter(|c| c.z < 2).count(),
        1 + 4,
        "z0 and all of z1 (the polygon is on the corner of all four z1 tiles)"
    );
    for (c, layers) in &tiles {
        assert_eq!(layers.len(), 1);
        assert_eq!(layers[0].name, "area");
        assert_eq!(layers[0].extent, 4096);
        assert_eq!(layers[0].version, 2);
        assert_eq!(layers[0].features.len(), 1, "{c}");
        let f = &layers[0].features[0];
        assert_eq!(f.id, Some(9));
        check_geom(*c, &f.geom, 80);
        let TileGeom::Polygons(ps) = &f.geom else {
            panic!("{c}: {:?}", f.geom)
        };
        assert_eq!(ps.len(), 1, "{c}: one polygon");
        // The hole is only in the tile that holds its centre.
        let holes = ps[0].len() - 1;
        let (hx, hy) = lonlat_to_world(6.5, 6.5);
        let shift = 32 - u32::from(c.z);
        let want_hole = (hx >> shift, hy >> shift) == (i64::from(c.x), i64::from(c.y));
        assert_eq!(holes, usize::from(want_hole), "{c}: holes");
    }
    // At z2 each piece is cut at the buffer: the north-west piece spans from its inner corner
    // at x, y = 4096 - (10° of 90°) to the buffer edge 4096 + 80 on the east and south.
    let nw = &tiles[&TileCoord::new(2, 1, 1).unwrap()][0].features[0].geom;
    let TileGeom::Polygons(ps) = nw else {
        unreachable!()
    };
    let xs: Vec<i32> = ps[0][0].iter().map(|p| p[0]).collect();
    let ys: Vec<i32> = ps[0][0].iter().map(|p| p[1]).collect();
    assert_eq!(*xs.iter().max().unwrap(), 4096 + 80);
    assert_eq!(*ys.iter().max().unwrap(), 4096 + 80);
    let min_x = *xs.iter().min().unwrap();
    assert!((3640..=3642).contains(&min_x), "west edge at {min_x}");
}

#[test]
fn line_crossing_tiles_is_cut_at_the_buffer() {
    // West to east across the z2 boundary at lon 0, at lat 5 (tile row 1).
    let line = Geometry::LineString(LineString::from(vec![(-30.0, 5.0), (30.0, 5.0)]));
    let o = TilerOptions {
        buffer: 5,
        ..opts(2, 2)
    };
    let (bytes, _) = build(o, &["roads"], &[feat(0, Some(1), line, json!({}))]).unwrap();
    let tiles = tiles(&bytes);
    let keys: Vec<(u8, u32, u32)> = tiles.keys().map(|c| (c.z, c.x, c.y)).collect();
    assert_eq!(keys, vec![(2, 1, 1), (2, 2, 1)]);
    let span = |c: TileCoord| {
        let f = &tiles[&c][0].features[0];
        check_geom(c, &f.geom, 80);
        let TileGeom::Lines(ls) = &f.geom else {
            panic!("{c}: {:?}", f.geom)
        };
        assert_eq!(ls.len(), 1, "{c}: one piece");
        let xs: Vec<i32> = ls[0].iter().map(|p| p[0]).collect();
        (*xs.iter().min().unwrap(), *xs.iter().max().unwrap())
    };
    // -30° is 1/3 of the way into the western tile: x = 4096 * 60 / 90 = 2731.
    let (w0, w1) = span(TileCoord::new(2, 1, 1).unwrap());
    assert!((2730..=2731).contains(&w0), "{w0}");
    assert_eq!(w1, 4096 + 80, "western piece ends at the buffer edge");
    let (e0, e1) = span(TileCoord::new(2, 2, 1).unwrap());
    assert_eq!(e0, -80, "eastern piece starts at the buffer edge");
    assert!((1365..=1366).contains(&e1), "{e1}");
}

type IdProps = (Option<u64>, Vec<(String, PropValue)>);

/// Feature ids and properties of the deepest tile.
fn props_of(bytes: &[u8]) -> Vec<IdProps> {
    let tiles = tiles(bytes);
    let (_, layers) = tiles.iter().next_back().unwrap();
    layers[0]
        .features
        .iter()
        .map(|f| (f.id, f.props.clone()))
        .collect()
}

#[test]
fn properties_are_typed_and_filtered_and_ids_kept() {
    let props = json!({
        "u": 3, "s": -3, "d": 2.5, "str": "x", "b": true,
        "arr": [1, "a"], "obj": {"k": 1}, "n": null, "big": 18446744073709551615u64
    });
    let feats = vec![
        feat(0, Some(42), point(10.0, 10.0), props.clone()),
        feat(
            0,
            None,
            point(10.001, 10.0),
            json!({"u": "now text", "s": -4}),
        ),
    ];
    let (bytes, _) = build(opts(0, 3), &["p"], &feats).unwrap();
    let got = props_of(&bytes);
    assert_eq!(got.len(), 2);
    let by_id: BTreeMap<Option<u64>, BTreeMap<String, PropValue>> = got
        .into_iter()
        .map(|(id, p)| (id, p.into_iter().collect()))
        .collect();
    let first = &by_id[&Some(42)];
    let want: BTreeMap<String, PropValue> = [
        ("u", PropValue::UInt(3)),
        ("s", PropValue::SInt(-3)),
        ("d", PropValue::Double(2.5)),
        ("str", PropValue::String("x".into())),
        ("b", PropValue::Bool(true)),
        ("arr", PropValue::String(r#"[1,"a"]"#.into())),
        ("obj", PropValue::String(r#"{"k":1}"#.into())),
        ("big", PropValue::UInt(u64::MAX)),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v))
    .collect();
    assert_eq!(first, &want, "null is left out, the rest typed");
    let second = &by_id[&None];
    assert_eq!(second["u"], PropValue::String("now text".into()));
    assert_eq!(second["s"], PropValue::SInt(-4));

    // vector_layers: the field types seen over all features of the layer.
    let a = Archive::open(Cursor::new(&bytes)).unwrap();
    let fields = &a.metadata()["vector_layers"][0]["fields"];
    assert_eq!(
        fields,
        &json!({"arr": "String", "b": "Boolean", "big": "Number", "d": "Number", "obj": "String",
                "s": "Number", "str": "String", "u": "Mixed"})
    );

    // -y keeps only the named attributes; -x leaves the named ones out; -X all.
    let keys = |filter: AttrFilter| -> BTreeSet<String> {
        let o = TilerOptions {
            attrs: filter,
            ..opts(0, 3)
        };
        let (bytes, _) = build(o, &["p"], &feats[..1]).unwrap();
        let got = props_of(&bytes);
        assert_eq!(got[0].0, Some(42), "the id stays whatever the filter");
        got[0].1.iter().map(|(k, _)| k.clone()).collect()
    };
    let set = |ks: &[&str]| ks.iter().map(|k| (*k).to_owned()).collect::<BTreeSet<_>>();
    assert_eq!(
        keys(AttrFilter {
            include: vec!["u".into(), "str".into(), "n".into()],
            ..Default::default()
        }),
        set(&["u", "str"])
    );
    assert_eq!(
        keys(AttrFilter {
            exclude: vec!["u".into(), "arr".into(), "obj".into(), "big".into()],
            ..Default::default()
        }),
        set(&["s", "d", "str", "b"])
    );
    assert_eq!(
        keys(AttrFilter {
            exclude_all: true,
            include: vec!["u".into()],
            ..Default::default()
        }),
        set(&[])
    );
}

fn shape_strategy() -> impl Strategy<Value = Geometry<f64>> {
    shapes_in(2.0, 2.0)
}

/// Points, lines and polygons with coordinates in ±`lon` × ±`lat`.
fn shapes_in(lon: f64, lat: f64) -> impl Strategy<Value = Geometry<f64>> {
    let coord = move || (-lon..lon, -lat..lat);
    prop_oneof![
        coord().prop_map(|(x, y)| point(x, y)),
        prop::collection::vec(coord(), 2..12)
            .prop_map(|v| Geometry::LineString(LineString::from(v))),
        // Arbitrary rings: self-intersecting, repeated vertices, collinear, zero area.
        (
            prop::collection::vec(coord(), 3..16),
            prop::collection::vec(coord(), 0..6)
        )
            .prop_map(|(ext, hole)| {
                let close = |mut v: Vec<(f64, f64)>| {
                    if let Some(&f) = v.first() {
                        v.push(f);
                    }
                    LineString::from(v)
                };
                let holes = if hole.len() >= 3 {
                    vec![close(hole)]
                } else {
                    vec![]
                };
                Geometry::Polygon(Polygon::new(close(ext), holes))
            }),
        // Boxes, so that real (valid) polygons are common too.
        (coord(), 0.001f64..lon * 1.5, 0.001f64..lat * 1.5)
            .prop_map(|((x, y), w, h)| Geometry::Polygon(rect(x, y, x + w, y + h))),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 48, ..ProptestConfig::default() })]

    /// Whatever the shapes, the tiler does not panic and every decoded geometry is inside
    /// its tile + buffer, with closed rings of 4+ points and MVT winding.
    #[test]
    fn random_shapes_give_valid_tiles(
        shapes in prop::collection::vec(shape_strategy(), 1..40),
        buffer in 0u32..16,
        max_zoom in 3u8..10,
        simplification in prop_oneof![Just(0.0f64), Just(1.0), 0.0f64..10.0],
    ) {
        let mut feats: Vec<Feat> = shapes
            .into_iter()
            .enumerate()
            .map(|(i, g)| feat(0, Some(i as u64), g, json!({"i": i})))
            .collect();
        // Two corner points keep the bounds from collapsing to a line or a point: that case
        // is a known bug with its own test (`single_point_archive_verifies`).
        let n = feats.len() as u64;
        feats.push(feat(0, Some(n), point(-2.5, -2.5), json!({})));
        feats.push(feat(0, Some(n + 1), point(2.5, 2.5), json!({})));
        let o = TilerOptions { buffer, simplification, ..opts(0, max_zoom) };
        let mut t = Tiler::new(o, layers(&["l"])).unwrap();
        let mut staged = 0;
        for (k, f) in feats.iter().enumerate() {
            if let Added::Staged { clamped } = t.add(0, k as u64, f.id, Some(&f.geom), &f.props).unwrap() {
                prop_assert!(!clamped);
                staged += 1;
            }
        }
        match t.finish(Cursor::new(Vec::new()), &|| false) {
            Ok((out, report)) => {
                let bytes = out.into_inner();
                prop_assert_eq!(report.features, staged);
                verify(Cursor::new(&bytes), bytes.len() as u64).unwrap();
                let b = i32::try_from(buffer * 16).unwrap();
                for (c, layers) in tiles(&bytes) {
                    prop_assert!(c.z <= max_zoom);
                    for l in &layers {
                        for f in &l.features {
                            prop_assert!(f.id.is_some_and(|i| i < feats.len() as u64));
                            check_geom(c, &f.geom, b);
                        }
                    }
                }
            }
            Err(TilerError::NoFeatures) => prop_assert_eq!(staged, 0),
            Err(e) => prop_assert!(false, "tiling failed: {}", e),
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 24, ..ProptestConfig::default() })]

    /// Shapes anywhere on (and past the edges of) the world, at low zooms: clamped where they
    /// leave Web Mercator's range, still valid tiles.
    #[test]
    fn world_spanning_shapes_give_valid_tiles(
        shapes in prop::collection::vec(shapes_in(200.0, 89.0), 1..12),
        max_zoom in 0u8..5,
    ) {
        let mut t = Tiler::new(opts(0, max_zoom), layers(&["l"])).unwrap();
        let corners = [point(-170.0, -60.0), point(170.0, 60.0)];
        for (k, g) in shapes.iter().chain(&corners).enumerate() {
            let _ = t.add(0, k as u64, Some(k as u64), Some(g), &Map::new()).unwrap();
        }
        let (out, _) = t.finish(Cursor::new(Vec::new()), &|| false).unwrap();
        let bytes = out.into_inner();
        verify(Cursor::new(&bytes), bytes.len() as u64).unwrap();
        for (c, layers) in tiles(&bytes) {
            for f in layers.iter().flat_map(|l| &l.features) {
                check_geom(c, &f.geom, 80);
            }
        }
    }
}

/// `n` points packed into a small patch (one z0..z4 tile), with some attributes each.
fn crowd(n: u64) -> Vec<Feat> {
    random_points(n, 3, [10.0, 10.0, 12.0, 12.0])
        .into_iter()
        .enumerate()
        .map(|(i, (x, y))| {
            feat(
                0,
                Some(i as u64),
                point(x, y),
                json!({"name": format!("point number {i}"), "v": i * 7}),
            )
        })
        .collect()
}

#[test]
fn tile_over_the_byte_limit_fails_naming_the_tile() {
    let o = TilerOptions {
        max_tile_bytes: 4000,
        ..opts(0, 2)
    };
    let err = build(o, &["crowd"], &crowd(3000)).unwrap_err();
    let TilerError::Tile(e) = &err else {
        panic!("expected a tile error, got {err}")
    };
    let msg = e.to_string();
    // The first tile in tile-id order is z0/0/0.
    assert!(msg.contains("z0/0/0"), "{msg}");
    assert!(msg.contains("4000"), "{msg}");
    // The feature limit fails the same way.
    let o = TilerOptions {
        max_tile_features: 100,
        ..opts(0, 2)
    };
    let err = build(o, &["crowd"], &crowd(3000)).unwrap_err();
    assert!(matches!(err, TilerError::Tile(_)), "{err}");
    assert!(err.to_string().contains("z0/0/0"), "{err}");
}

#[test]
fn drop_densest_brings_every_tile_under_the_limits() {
    let limit = 4000;
    let o = TilerOptions {
        max_tile_bytes: limit,
        drop_densest: true,
        ..opts(0, 2)
    };
    let (bytes, report) = build(o, &["crowd"], &crowd(3000)).unwrap();
    assert!(report.dropped > 0, "{report:?}");
    assert!(report.tiles_reduced >= 3, "{report:?}");
    assert_eq!(report.coalesced, 0);
    let sizes = tile_sizes(&bytes);
    assert_eq!(sizes.len(), 3, "one tile per zoom: {sizes:?}");
    for (c, n) in &sizes {
        assert!(*n as usize <= limit, "{c}: {n} bytes");
    }
    verify(Cursor::new(&bytes), bytes.len() as u64).unwrap();
    // Dropped features are gone, not duplicated: ids stay unique in a tile.
    for (c, layers) in tiles(&bytes) {
        let ids: Vec<u64> = layers[0].features.iter().map(|f| f.id.unwrap()).collect();
        let unique: BTreeSet<u64> = ids.iter().copied().collect();
        assert_eq!(unique.len(), ids.len(), "{c}");
        assert!(ids.len() < 3000, "{c}: {} features", ids.len());
    }
    // The feature limit too.
    let o = TilerOptions {
        max_tile_features: 100,
        drop_densest: true,
        ..opts(0, 2)
    };
    let (bytes, report) = build(o, &["crowd"], &crowd(3000)).unwrap();
    assert!(report.dropped > 0);
    for (c, layers) in tiles(&bytes) {
        let n = layers[0].features.len();
        assert!((1..=100).contains(&n), "{c}: {n} features");
    }
}

#[test]
fn coalesce_densest_merges_into_neighbours() {
    let limit = 4000;
    let o = TilerOptions {
        max_tile_bytes: limit,
        coalesce_densest: true,
        ..opts(0, 2)
    };
    let (bytes, report) = build(o, &["crowd"], &crowd(3000)).unwrap();
    assert!(report.coalesced > 0, "{report:?}");
    for (c, n) in tile_sizes(&bytes) {
        assert!(n as usize <= limit, "{c}: {n} bytes");
    }
    // Coalesced points live on as extra points of the features they merged into.
    let tiles = tiles(&bytes);
    let multi = tiles
        .values()
        .flat_map(|l| &l[0].features)
        .any(|f| matches!(&f.geom, TileGeom::Points(p) if p.len() > 1));
    assert!(multi, "some feature carries merged points");
}

#[test]
fn spilling_sort_gives_the_same_tiles() {
    // Lines and points over zooms 0..=10 with drop rate 1: far more than 1 MiB of fragments.
    let mut rng = Rng(5);
    let mut feats = Vec::new();
    for i in 0..4000u64 {
        let (x, y) = (rng.range(-20.0, 20.0), rng.range(-20.0, 20.0));
        let g = if i % 4 == 0 {
            Geometry::LineString(LineString::from(vec![
                (x, y),
                (x + 0.5, y + 0.3),
                (x + 1.0, y),
            ]))
        } else {
            point(x, y)
        };
        feats.push(feat(
            0,
            Some(i),
            g,
            json!({"name": format!("feature {i}"), "i": i}),
        ));
    }
    let base = TilerOptions {
        drop_rate: 1.0,
        ..opts(0, 10)
    };
    let (mem_bytes, mem) = build(base.clone(), &["l"], &feats).unwrap();
    assert_eq!(mem.spilled_bytes, 0, "128 MiB holds it all");
    let dir = tempfile::tempdir().unwrap();
    let tiny = TilerOptions {
        memory: 1,
        tmp_dir: Some(dir.path().to_path_buf()),
        ..base
    };
    let (disk_bytes, disk) = build(tiny, &["l"], &feats).unwrap();
    assert!(disk.spilled_bytes > 0, "{disk:?}");
    assert_eq!(disk.fragments, mem.fragments);
    assert_eq!(disk.tiles, mem.tiles);
    let (a, b) = (raw_tiles(&mem_bytes), raw_tiles(&disk_bytes));
    assert_eq!(
        a.keys().collect::<Vec<_>>(),
        b.keys().collect::<Vec<_>>(),
        "same tiles"
    );
    for (c, data) in &a {
        assert!(b[c] == *data, "{c}: tile differs after spilling");
    }
    // Spill files are removed again.
    assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0);
}

#[test]
fn archive_reads_back_with_the_pmtiles_crate_and_verifies() {
    let mut feats = crowd(200);
    feats.push(feat(
        1,
        Some(7),
        Geometry::Polygon(rect(10.5, 10.5, 11.5, 11.5)),
        json!({"kind": "box", "n": 1.5, "ok": false}),
    ));
    feats.push(feat(
        1,
        Some(8),
        Geometry::LineString(LineString::from(vec![(10.0, 10.0), (12.0, 12.0)])),
        json!({"kind": 3}),
    ));
    let o = TilerOptions {
        attribution: Some("© test".into()),
        description: "tiler test".into(),
        ..opts(1, 9)
    };
    let (bytes, report) = build(o, &["crowd", "shapes"], &feats).unwrap();
    assert_eq!(report.min_zoom, 1);
    assert_eq!(report.max_zoom, 9);

    let v = verify(Cursor::new(&bytes), bytes.len() as u64).unwrap();
    assert_eq!(v.addressed_tiles, report.tiles);
    assert_eq!(
        v.tiles_per_zoom.keys().copied().collect::<Vec<_>>(),
        (1..=9).collect::<Vec<_>>()
    );
    assert!(v.clustered);

    // The independent reader: header, root directory and (when present) leaves parse, and
    // every tile id we wrote is found.
    let h = pmtiles::Header::try_from_bytes(bytes::Bytes::copy_from_slice(&bytes[..HEADER_LEN]))
        .unwrap();
    assert!(h.clustered());
    assert_eq!(h.tile_type, pmtiles::TileType::Mvt);
    assert_eq!(h.tile_compression, pmtiles::Compression::Gzip);
    assert_eq!((h.min_zoom, h.max_zoom), (1, 9));
    assert_eq!(h.n_addressed_tiles().map(|n| n.get()), Some(report.tiles));
    assert!(h.min_longitude >= 9.99 && h.max_longitude <= 12.01, "{h:?}");
    assert!(h.min_latitude >= 9.99 && h.max_latitude <= 12.01, "{h:?}");
    let ours = Header::from_bytes(&bytes).unwrap();
    let root_raw =
        &bytes[ours.root_offset as usize..(ours.root_offset + ours.root_length) as usize];
    let root = pmtiles::Directory::try_from(bytes::Bytes::from(gunzip(root_raw))).unwrap();
    let leaves: Vec<pmtiles::Directory> = decode_directory(&gunzip(root_raw))
        .unwrap()
        .into_iter()
        .filter(|e| e.is_leaf())
        .map(|l| {
            let start = (ours.leaf_offset + l.offset) as usize;
            let raw = &bytes[start..start + l.length as usize];
            pmtiles::Directory::try_from(bytes::Bytes::from(gunzip(raw))).unwrap()
        })
        .collect();
    let raw = raw_tiles(&bytes);
    assert_eq!(raw.len() as u64, report.tiles);
    for c in raw.keys() {
        let theirs = pmtiles::TileId::from(pmtiles::TileCoord::new(c.z, c.x, c.y).unwrap());
        assert_eq!(theirs.value(), tile_id(*c));
        let found = root.find_tile_id(theirs).is_some()
            && (ours.leaf_length == 0 || leaves.iter().any(|l| l.find_tile_id(theirs).is_some()));
        assert!(found, "{c} not found by the pmtiles crate");
    }

    // Metadata: each layer with typed fields and the zooms it appears in.
    let a = Archive::open(Cursor::new(&bytes)).unwrap();
    let m = a.metadata();
    assert_eq!(m["attribution"], "© test");
    assert_eq!(m["description"], "tiler test");
    assert_eq!(m["name"], "test");
    assert_eq!(m["format"], "pbf");
    let vl = m["vector_layers"].as_array().unwrap();
    assert_eq!(vl.len(), 2);
    assert_eq!(vl[0]["id"], "crowd");
    assert_eq!(vl[0]["fields"], json!({"name": "String", "v": "Number"}));
    assert_eq!(vl[1]["id"], "shapes");
    assert_eq!(
        vl[1]["fields"],
        json!({"kind": "Mixed", "n": "Number", "ok": "Boolean"})
    );
    for l in vl {
        let (lo, hi) = (
            l["minzoom"].as_u64().unwrap(),
            l["maxzoom"].as_u64().unwrap(),
        );
        assert!(lo >= 1 && hi == 9 && lo <= hi, "{l}");
    }
    assert_eq!(vl[1]["minzoom"], 1, "lines and polygons are in every zoom");
    // Every tile decodes with layers in order and only known names.
    for (c, layers) in tiles(&bytes) {
        let names: Vec<&str> = layers.iter().map(|l| l.name.as_str()).collect();
        assert!(
            names == ["crowd", "shapes"] || names == ["crowd"] || names == ["shapes"],
            "{c}: {names:?}"
        );
    }
}

#[test]
fn zoom_guess_picks_a_zoom() {
    // Points about 0.01° apart: a guess in the low teens.
    let feats: Vec<Feat> = (0..400u64)
        .map(|i| {
            let (x, y) = ((i % 20) as f64 * 0.01, (i / 20) as f64 * 0.01);
            feat(0, Some(i), point(x, y), json!({}))
        })
        .collect();
    let o = TilerOptions {
        max_zoom: None,
        ..TilerOptions::default()
    };
    let (bytes, report) = build(o, &["g"], &feats).unwrap();
    let z = report.guessed_zoom.expect("a guess");
    assert!((6..=18).contains(&z), "guessed z{z}");
    assert_eq!(report.max_zoom, z);
    let h = Header::from_bytes(&bytes).unwrap();
    assert_eq!(h.max_zoom, z);
    let tiles = tiles(&bytes);
    assert_eq!(
        point_ids_at(&tiles, z).len(),
        400,
        "all points at the guessed zoom"
    );
    // A fixed zoom makes no guess.
    let (_, fixed) = build(opts(0, 5), &["g"], &feats).unwrap();
    assert_eq!(fixed.guessed_zoom, None);
}

#[test]
fn empty_input_is_no_features() {
    let t = Tiler::new(opts(0, 5), layers(&["l"])).unwrap();
    let err = t.finish(Cursor::new(Vec::new()), &|| false).unwrap_err();
    assert!(matches!(err, TilerError::NoFeatures), "{err}");
    // Features without geometry stage nothing.
    let mut t = Tiler::new(opts(0, 5), layers(&["l"])).unwrap();
    assert_eq!(
        t.add(0, 0, Some(1), None, &Map::new()).unwrap(),
        Added::NoGeometry
    );
    let empty = Geometry::LineString(LineString::<f64>::new(vec![]));
    assert_eq!(
        t.add(0, 1, Some(2), Some(&empty), &Map::new()).unwrap(),
        Added::NoGeometry
    );
    assert_eq!(t.features(), 0);
    let err = t.finish(Cursor::new(Vec::new()), &|| false).unwrap_err();
    assert!(matches!(err, TilerError::NoFeatures), "{err}");
}

#[test]
fn out_of_range_coordinates_are_clamped_and_counted() {
    let o = TilerOptions {
        drop_rate: 1.0,
        ..opts(0, 4)
    };
    let mut t = Tiler::new(o, layers(&["l"])).unwrap();
    let far = point(200.0, 89.0);
    assert_eq!(
        t.add(0, 0, Some(1), Some(&far), &Map::new()).unwrap(),
        Added::Staged { clamped: true }
    );
    let fine = point(-100.0, 40.0);
    assert_eq!(
        t.add(0, 1, Some(2), Some(&fine), &Map::new()).unwrap(),
        Added::Staged { clamped: false }
    );
    let line = Geometry::LineString(LineString::new(vec![
        coord! { x: 170.0, y: 0.0 },
        coord! { x: 190.0, y: 0.0 },
    ]));
    assert_eq!(
        t.add(0, 2, Some(3), Some(&line), &Map::new()).unwrap(),
        Added::Staged { clamped: true }
    );
    assert_eq!(t.clamped(), 2);
    assert_eq!(t.features(), 3);
    let (out, report) = t.finish(Cursor::new(Vec::new()), &|| false).unwrap();
    assert_eq!(report.clamped, 2);
    let bytes = out.into_inner();
    verify(Cursor::new(&bytes), bytes.len() as u64).unwrap();
    // The clamped point sits in the north-east corner tile of the world at every zoom.
    let tiles = tiles(&bytes);
    for z in 0..=4u8 {
        let corner = TileCoord::new(z, (1 << z) - 1, 0).unwrap();
        let has = tiles
            .get(&corner)
            .is_some_and(|ls| ls[0].features.iter().any(|f| f.id == Some(1)));
        assert!(has, "{corner}: the clamped point");
    }
}

#[test]
fn bad_options_are_refused() {
    let bad = [
        TilerOptions {
            min_zoom: 6,
            ..opts(0, 5)
        },
        TilerOptions {
            max_zoom: Some(25),
            ..TilerOptions::default()
        },
        TilerOptions {
            max_tile_bytes: 0,
            ..opts(0, 5)
        },
        TilerOptions {
            drop_rate: f64::NAN,
            ..opts(0, 5)
        },
    ];
    for o in bad {
        let err = Tiler::new(o.clone(), layers(&["l"])).err();
        assert!(matches!(err, Some(TilerError::Options(_))), "{o:?}");
    }
    assert!(matches!(
        Tiler::new(opts(0, 5), vec![]).err(),
        Some(TilerError::Options(_))
    ));
    let mut t = Tiler::new(opts(0, 5), layers(&["l"])).unwrap();
    assert!(matches!(
        t.add(1, 0, None, Some(&point(0.0, 0.0)), &Map::new()),
        Err(TilerError::Options(_))
    ));
}

#[test]
fn cancel_stops_the_run() {
    let mut t = Tiler::new(opts(0, 5), layers(&["l"])).unwrap();
    t.add(0, 0, None, Some(&point(1.0, 1.0)), &Map::new())
        .unwrap();
    let err = t.finish(Cursor::new(Vec::new()), &|| true).unwrap_err();
    assert!(matches!(err, TilerError::Cancelled), "{err}");
}

#[test]
fn single_point_archive_verifies() {
    for geom in [
        point(10.0, 20.0),
        Geometry::LineString(LineString::from(vec![(10.0, 20.0), (10.0, 21.0)])),
    ] {
        let (bytes, _) = build(opts(0, 5), &["l"], &[feat(0, Some(1), geom, json!({}))]).unwrap();
        let h = Header::from_bytes(&bytes).unwrap();
        verify(Cursor::new(&bytes), bytes.len() as u64)
            .unwrap_or_else(|e| panic!("bounds {:?}: {e}", h.bounds));
    }
}

#[test]
fn extend_zooms_adds_zooms_while_tiles_still_drop() {
    let o = TilerOptions {
        max_tile_features: 500,
        drop_densest: true,
        extend_zooms: true,
        ..opts(0, 2)
    };
    let (bytes, report) = build(o, &["crowd"], &crowd(3000)).unwrap();
    let z = report.max_zoom;
    assert!(z > 2, "{report:?}");
    assert!(report.dropped > 0);
    verify(Cursor::new(&bytes), bytes.len() as u64).unwrap();
    let h = Header::from_bytes(&bytes).unwrap();
    assert_eq!(h.max_zoom, z);
    let a = Archive::open(Cursor::new(&bytes)).unwrap();
    assert_eq!(a.metadata()["vector_layers"][0]["maxzoom"], z);
    let tiles = tiles(&bytes);
    // The last zoom added needed no dropping: every point is there, once.
    assert_eq!(
        point_ids_at(&tiles, z),
        (0..3000).map(|i| (i, 1)).collect::<BTreeMap<u64, usize>>()
    );
    for (c, layers) in tiles.iter().filter(|(c, _)| c.z == z) {
        assert!(layers[0].features.len() <= 500, "{c}");
    }
    // Every zoom in between is there.
    let zooms: BTreeSet<u8> = tiles.keys().map(|c| c.z).collect();
    assert_eq!(zooms, (0..=z).collect());
    // Without the flag the run stops at -z.
    let o = TilerOptions {
        max_tile_features: 500,
        drop_densest: true,
        ..opts(0, 2)
    };
    let (_, report) = build(o, &["crowd"], &crowd(3000)).unwrap();
    assert_eq!(report.max_zoom, 2);
}

#[test]
fn geometry_collection_becomes_one_feature_per_member() {
    let gc = Geometry::GeometryCollection(geo_types::GeometryCollection(vec![
        point(1.0, 1.0),
        Geometry::LineString(LineString::from(vec![(1.0, 1.5), (1.5, 1.5)])),
        Geometry::Polygon(rect(1.2, 1.2, 1.4, 1.4)),
    ]));
    let o = TilerOptions {
        drop_rate: 1.0,
        ..opts(0, 6)
    };
    let (bytes, report) = build(o, &["gc"], &[feat(0, Some(5), gc, json!({"k": "v"}))]).unwrap();
    assert_eq!(report.features, 3, "one staged feature per member");
    let tiles = tiles(&bytes);
    for z in 0..=6u8 {
        // The home tile of the members (all within one tile at z6) holds all three, with
        // the collection's id and attributes; neighbours see at most the buffered line and
        // polygon, never the point.
        let (wx, wy) = lonlat_to_world(1.2, 1.2);
        let shift = 32 - u32::from(z);
        let home = TileCoord::new(z, (wx >> shift) as u32, (wy >> shift) as u32).unwrap();
        for (c, layers) in tiles.iter().filter(|(c, _)| c.z == z) {
            let mut kinds: Vec<&str> = layers[0]
                .features
                .iter()
                .map(|f| {
                    assert_eq!(f.id, Some(5), "{c}");
                    assert_eq!(
                        f.props,
                        vec![("k".to_owned(), PropValue::String("v".into()))]
                    );
                    check_geom(*c, &f.geom, 80);
                    match f.geom {
                        TileGeom::Points(_) => "point",
                        TileGeom::Lines(_) => "line",
                        TileGeom::Polygons(_) => "polygon",
                    }
                })
                .collect();
            kinds.sort_unstable();
            if *c == home {
                assert_eq!(kinds, ["line", "point", "polygon"], "{c}");
            } else {
                assert!(!kinds.contains(&"point"), "{c}: {kinds:?}");
            }
        }
        assert!(tiles.contains_key(&home), "z{z}: no home tile {home}");
    }
}

#[test]
fn points_on_tile_edges_appear_once_per_zoom() {
    // Tile corners and edges at several zooms, the antimeridian and the Mercator limits.
    let (_, lat_z2_edge) = etl_tiles::tile::world_to_lonlat(0, 1 << 30);
    let pts = [
        (0.0, 0.0),
        (-90.0, 0.0),
        (90.0, 0.0),
        (0.0, lat_z2_edge),
        (-45.0, -lat_z2_edge),
        (-180.0, 0.0),
        (180.0, 0.0),
        (0.0, 85.051_128_78),
        (0.0, -85.051_128_78),
        (-180.0, -85.051_128_78),
        (180.0, 85.051_128_78),
    ];
    let feats: Vec<Feat> = pts
        .iter()
        .enumerate()
        .map(|(i, (x, y))| feat(0, Some(i as u64), point(*x, *y), json!({})))
        .collect();
    let o = TilerOptions {
        drop_rate: 1.0,
        ..opts(0, 12)
    };
    let (bytes, report) = build(o, &["edges"], &feats).unwrap();
    assert_eq!(report.clamped, 0, "on the limits is not beyond them");
    let tiles = tiles(&bytes);
    let all: BTreeMap<u64, usize> = (0..pts.len() as u64).map(|i| (i, 1)).collect();
    for z in 0..=12 {
        assert_eq!(point_ids_at(&tiles, z), all, "z{z}");
    }
    for (c, layers) in &tiles {
        for f in &layers[0].features {
            // Points are never put in a neighbour's buffer.
            check_geom(*c, &f.geom, 0);
        }
    }
}

#[test]
fn holes_crossing_tile_edges_stay_holes_in_each_tile() {
    // A square hole around (0, 0) where four z2 tiles meet, inside a bigger square; and a
    // second polygon of the same multipolygon further east.
    let outer = |d: f64| LineString::from(vec![(-d, -d), (d, -d), (d, d), (-d, d), (-d, -d)]);
    let mp = Geometry::MultiPolygon(geo_types::MultiPolygon(vec![
        Polygon::new(outer(20.0), vec![outer(5.0)]),
        rect(30.0, -5.0, 40.0, 5.0),
    ]));
    let (bytes, _) = build(opts(2, 2), &["mp"], &[feat(0, Some(3), mp, json!({}))]).unwrap();
    let tiles = tiles(&bytes);
    let keys: BTreeSet<(u32, u32)> = tiles.keys().map(|c| (c.x, c.y)).collect();
    assert_eq!(keys, BTreeSet::from([(1, 1), (2, 1), (1, 2), (2, 2)]));
    for (c, layers) in &tiles {
        let f = &layers[0].features[0];
        check_geom(*c, &f.geom, 80);
        let TileGeom::Polygons(ps) = &f.geom else {
            panic!("{c}: {:?}", f.geom)
        };
        // Western tiles: the holed square's piece; eastern: that and the second square.
        let want = if c.x == 2 { 2 } else { 1 };
        assert_eq!(ps.len(), want, "{c}: polygons");
        // The hole's quarter reaches the buffered tile's edge: in a valid polygon it is a
        // notch of the exterior, not a hole touching it along a line.
        assert_eq!(ps[0].len(), 1, "{c}: the hole's quarter is a notch");
        let ring = geo_types::LineString(
            ps[0][0]
                .iter()
                .map(|p| geo_types::Coord {
                    x: f64::from(p[0]),
                    y: f64::from(p[1]),
                })
                .collect(),
        );
        let notched = Polygon::new(ring, vec![]);
        // Toward the tile's inner corner (where the four tiles meet) by `d` units each way.
        let at = |d: f64| {
            let x = if c.x == 1 { 4096.0 - d } else { d };
            let y = if c.y == 1 { 4096.0 - d } else { d };
            geo_types::Point::new(x, y)
        };
        assert!(!notched.contains(&at(40.0)), "{c}: inside the hole");
        assert!(notched.contains(&at(600.0)), "{c}: beyond the hole");
    }
}

/// tippecanoe's "the discovered spacing applies to the entire zoom level": a tile that is under
/// the limit on its own is still thinned to the spacing another tile of its zoom needed, so
/// density does not jump at tile edges.
#[test]
fn drop_densest_spacing_applies_to_the_whole_zoom() {
    // A: 3000 points with attributes over 2°×2° (one z3 tile, far over 4000 bytes).
    // B: 300 bare points packed into 0.3°×0.3° in another z3 tile: denser, but small.
    let a = crowd(3000);
    let b: Vec<Feat> = random_points(300, 9, [100.0, 10.0, 100.3, 10.3])
        .into_iter()
        .enumerate()
        .map(|(i, (x, y))| feat(0, Some(10_000 + i as u64), point(x, y), json!({})))
        .collect();
    let o = |limit: usize| TilerOptions {
        max_tile_bytes: limit,
        drop_densest: true,
        drop_rate: 1.0,
        ..opts(3, 3)
    };
    let count_b = |bytes: &[u8]| -> usize {
        tiles(bytes)
            .values()
            .flat_map(|l| &l[0].features)
            .filter(|f| f.id.is_some_and(|id| id >= 10_000))
            .count()
    };
    // B alone fits the limit: nothing of it is dropped.
    let (alone, report) = build(o(4000), &["p"], &b).unwrap();
    assert_eq!(count_b(&alone), 300);
    assert_eq!(
        (report.dropped, report.zooms_respaced),
        (0, 0),
        "{report:?}"
    );
    // Together, A's spacing thins B too, and every tile is within the limit.
    let both: Vec<Feat> = a.into_iter().chain(b).collect();
    let (bytes, report) = build(o(4000), &["p"], &both).unwrap();
    assert_eq!(report.zooms_respaced, 1, "{report:?}");
    let kept_b = count_b(&bytes);
    assert!(kept_b < 300, "B kept {kept_b} of 300");
    assert!(kept_b > 0, "B's first feature always stays");
    for (c, n) in tile_sizes(&bytes) {
        assert!(n as usize <= 4000, "{c}: {n} bytes");
    }
    verify(Cursor::new(&bytes), bytes.len() as u64).unwrap();
}
