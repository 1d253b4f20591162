//! `extract`: the tiles of an area and zoom range, byte for byte, with runs of interior tiles
//! cut to the area and kept as runs.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeMap;
use std::io::Cursor;

use etl_tiles::archive::{Archive, ExtractError, extract, verify};
use etl_tiles::tile::{TileCoord, lonlat_to_world, tile_coord};
use geo_types::{Geometry, LineString, Point, Polygon};
use serde_json::json;

mod support;
use support::*;

/// Every tile id with its stored (compressed) bytes, runs expanded.
fn stored(bytes: &[u8]) -> BTreeMap<u64, Vec<u8>> {
    let mut a = Archive::open(Cursor::new(bytes)).unwrap();
    let entries: Vec<_> = a.entries().map(Result::unwrap).collect();
    let mut out = BTreeMap::new();
    for e in entries {
        let data = a.read_tile(&e).unwrap();
        for k in 0..u64::from(e.run_length) {
            out.insert(e.tile_id + k, data.clone());
        }
    }
    out
}

/// Whether tile `c` overlaps the lon/lat box (edges on the box's east or south side excluded).
fn in_box(c: TileCoord, [w, s, e, n]: [f64; 4]) -> bool {
    let shift = 32 - u32::from(c.z);
    let (x0, y0) = lonlat_to_world(w, n);
    let (x1, y1) = lonlat_to_world(e, s);
    let (tx, ty) = (i64::from(c.x), i64::from(c.y));
    tx >= x0 >> shift && tx <= (x1 - 1) >> shift && ty >= y0 >> shift && ty <= (y1 - 1) >> shift
}

fn source() -> Vec<u8> {
    let ring = |w: f64, s: f64, e: f64, n: f64| {
        LineString::from(vec![(w, s), (e, s), (e, n), (w, n), (w, s)])
    };
    let mut feats = vec![feat(
        0,
        Some(1),
        Geometry::Polygon(Polygon::new(ring(-60.0, -50.0, 60.0, 50.0), vec![])),
        json!({"name": "land"}),
    )];
    let mut rng = Rng(8);
    for i in 0..300 {
        let (x, y) = (rng.range(-80.0, 80.0), rng.range(-60.0, 60.0));
        feats.push(feat(
            1,
            Some(10 + i),
            Geometry::Point(Point::new(x, y)),
            json!({}),
        ));
    }
    build(opts(0, 9), &["area", "pts"], &feats).unwrap().0
}

#[test]
fn an_extract_holds_exactly_the_area_s_tiles_byte_for_byte() {
    let src_bytes = source();
    let src = Archive::open(Cursor::new(&src_bytes)).unwrap();
    let bbox = [-20.5, 10.25, 30.0, 40.0];
    let (out, report) = extract(&src, Cursor::new(Vec::new()), bbox, (2, 8)).unwrap();
    let out = out.into_inner();
    verify(Cursor::new(&out), out.len() as u64).unwrap();
    let (all, got) = (stored(&src_bytes), stored(&out));
    let want: BTreeMap<u64, Vec<u8>> = all
        .into_iter()
        .filter(|(id, _)| {
            let c = tile_coord(*id).unwrap();
            (2..=8).contains(&c.z) && in_box(c, bbox)
        })
        .collect();
    assert!(want.len() > 1000, "{} tiles", want.len());
    assert_eq!(got.len(), want.len());
    assert!(got == want, "the extract's tiles differ from the source's");
    assert_eq!(report.tiles, want.len() as u64);
    // The interior is still runs: far fewer entries than tiles.
    let entries = Archive::open(Cursor::new(&out)).unwrap().entries().count();
    assert!(entries * 4 < want.len(), "{entries} entries");
    // The metadata comes along, its layers' zooms within the extract's; the bounds are the
    // area's.
    let a = Archive::open(Cursor::new(&out)).unwrap();
    let src_meta = Archive::open(Cursor::new(&src_bytes))
        .unwrap()
        .metadata()
        .clone();
    assert_eq!(a.metadata()["name"], src_meta["name"]);
    let layers = a.metadata()["vector_layers"].as_array().unwrap();
    assert_eq!(layers.len(), 2);
    for l in layers {
        let (lo, hi) = (
            l["minzoom"].as_u64().unwrap(),
            l["maxzoom"].as_u64().unwrap(),
        );
        assert!((2..=8).contains(&lo) && (2..=8).contains(&hi), "{l}");
    }
    assert_eq!(a.header().min_zoom, 2);
    assert_eq!(a.header().max_zoom, 8);
    assert!(
        (a.header().bounds[0] - -20.5).abs() < 1e-6,
        "{:?}",
        a.header().bounds
    );
}

#[test]
fn bad_areas_are_refused() {
    let src_bytes = source();
    let src = Archive::open(Cursor::new(&src_bytes)).unwrap();
    for (bbox, zooms) in [
        ([10.0, 0.0, -10.0, 5.0], (0, 5)),
        ([0.0, 5.0, 10.0, 5.0], (0, 5)),
        ([f64::NAN, 0.0, 1.0, 1.0], (0, 5)),
        ([-190.0, 0.0, 1.0, 1.0], (0, 5)),
        ([0.0, 0.0, 1.0, 1.0], (6, 5)),
        // Beyond Web Mercator's latitudes: no area left.
        ([0.0, 86.0, 10.0, 89.0], (0, 5)),
        // Zooms the archive does not have.
        ([0.0, 0.0, 1.0, 1.0], (12, 14)),
    ] {
        let r = extract(&src, Cursor::new(Vec::new()), bbox, zooms);
        assert!(
            matches!(r, Err(ExtractError::Area(_))),
            "{bbox:?} {zooms:?}"
        );
    }
    // An area with no tiles at its zooms gives a valid, empty archive.
    let (out, report) = extract(
        &src,
        Cursor::new(Vec::new()),
        [170.0, 80.0, 171.0, 81.0],
        (4, 9),
    )
    .unwrap();
    assert_eq!(report.tiles, 0);
    let out = out.into_inner();
    verify(Cursor::new(&out), out.len() as u64).unwrap();
}
