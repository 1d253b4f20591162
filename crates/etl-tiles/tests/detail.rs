//! A tile over the byte limit is made at lower detail (extent 2048 down to 128) before the run
//! gives up, as tippecanoe does: one huge feature is drawn simpler, not fatal; and with a
//! dropping strategy, detail is lowered once nothing more can be dropped.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::io::Cursor;

use etl_tiles::archive::verify;
use etl_tiles::geom::TileGeom;
use etl_tiles::tiler::{TileLimitError, TilerError, TilerOptions};
use geo_types::{Geometry, LineString, Polygon};
use serde_json::json;

mod support;
use support::*;

/// A comb of `n` teeth of random heights across most of the z0 tile: a simple polygon with
/// far more bytes than the limit at full detail (each tooth a few extent units wide), few once
/// its teeth merge on a coarse grid.
fn huge_polygon(n: usize) -> Geometry<f64> {
    let mut rng = Rng(0xc0b);
    let w = 340.0 / n as f64;
    let mut pts: Vec<(f64, f64)> = vec![(-170.0, -10.0)];
    for k in 0..n {
        let x = -170.0 + k as f64 * w;
        let h = rng.range(10.0, 70.0);
        pts.extend([(x, 0.0), (x, h), (x + w / 2.0, h), (x + w / 2.0, 0.0)]);
    }
    pts.extend([(170.0, 0.0), (170.0, -10.0), (-170.0, -10.0)]);
    Geometry::Polygon(Polygon::new(LineString::from(pts), vec![]))
}

fn limited(max_tile_bytes: usize, drop_densest: bool) -> TilerOptions {
    TilerOptions {
        max_tile_bytes,
        drop_densest,
        ..opts(0, 0)
    }
}

#[test]
fn one_huge_polygon_is_drawn_at_lower_detail_not_fatal() {
    let feats = [feat(
        0,
        Some(9),
        huge_polygon(1_000),
        json!({"name": "blob"}),
    )];
    for drop_densest in [false, true] {
        let (bytes, report) = build(limited(2_500, drop_densest), &["l"], &feats).unwrap();
        verify(Cursor::new(&bytes), bytes.len() as u64).unwrap();
        assert_eq!(report.tiles_detail_reduced, 1, "{report:?}");
        assert_eq!(report.dropped, 0, "{report:?}");
        let tiles = tiles(&bytes);
        let layer = &tiles.values().next().unwrap()[0];
        assert!(
            layer.extent < 4096 && layer.extent >= 128,
            "extent {}",
            layer.extent
        );
        let f = &layer.features[0];
        assert_eq!(f.id, Some(9));
        let TileGeom::Polygons(ps) = &f.geom else {
            panic!("{:?}", f.geom)
        };
        // Still the blob: one polygon spanning most of the (coarser) tile.
        assert_eq!(ps.len(), 1);
        let xs: Vec<i32> = ps[0][0].iter().map(|p| p[0]).collect();
        let span = xs.iter().max().unwrap() - xs.iter().min().unwrap();
        assert!(
            span as u32 > layer.extent / 4,
            "span {span} of {}",
            layer.extent
        );
        assert!(report.largest.unwrap().1 <= 2_500);
    }
}

#[test]
fn a_tile_within_the_limit_keeps_full_detail() {
    let feats = [feat(0, Some(1), huge_polygon(100), json!({}))];
    let (bytes, report) = build(opts(0, 0), &["l"], &feats).unwrap();
    assert_eq!(report.tiles_detail_reduced, 0);
    let tiles = tiles(&bytes);
    assert_eq!(tiles.values().next().unwrap()[0].extent, 4096);
}

#[test]
fn what_no_detail_can_fit_still_fails_naming_the_tile() {
    // 100 KB of random hex in an attribute (50 KB gzipped): no grid makes that smaller.
    let mut rng = Rng(3);
    let text: String = (0..12_500)
        .map(|_| format!("{:08x}", rng.next() as u32))
        .collect();
    let feats = [feat(0, Some(1), huge_polygon(100), json!({ "text": text }))];
    let err = build(limited(20_000, false), &["l"], &feats).unwrap_err();
    let TilerError::Tile(TileLimitError::OverLimit { tile, .. }) = &err else {
        panic!("{err:?}")
    };
    assert_eq!(tile.z, 0);
    assert!(err.to_string().contains("at detail 7"), "{err}");
}

#[test]
fn a_tiny_feature_beside_a_huge_one_keeps_its_detail_where_it_still_shows() {
    // Without a dropping strategy: at detail 7 the tiny square rounds to nothing, which does
    // not count as fitting; a finer detail keeps both.
    let tiny = Geometry::Polygon(Polygon::new(
        LineString::from(vec![
            (10.0, 10.0),
            (11.0, 10.0),
            (11.0, 11.0),
            (10.0, 11.0),
            (10.0, 10.0),
        ]),
        vec![],
    ));
    let feats = [
        feat(0, Some(1), huge_polygon(1_000), json!({})),
        feat(0, Some(2), tiny, json!({})),
    ];
    let (bytes, report) = build(limited(2_500, false), &["l"], &feats).unwrap();
    assert_eq!(report.tiles_detail_reduced, 1, "{report:?}");
    assert_eq!(report.dropped, 0, "{report:?}");
    let tiles = tiles(&bytes);
    let layer = &tiles.values().next().unwrap()[0];
    assert!(layer.extent > 128, "extent {}", layer.extent);
    let mut ids: Vec<Option<u64>> = layer.features.iter().map(|f| f.id).collect();
    ids.sort();
    assert_eq!(ids, [Some(1), Some(2)], "both features, in spatial order");
}
