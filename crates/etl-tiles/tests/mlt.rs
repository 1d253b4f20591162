//! `--tile-format mlt`: every tile of an MLT archive decodes (with the reference decoder) to the
//! features of the MVT archive the same run makes, in the same order when `--order-*` asks.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::io::Cursor;

use etl_tiles::archive::{Archive, TileType};
use etl_tiles::mlt::mlt_to_mvt;
use etl_tiles::mvt::decode_tile;
use etl_tiles::tiler::{OrderKey, TileFormat, TilerOptions};
use geo_types::{Geometry, LineString, Polygon};
use serde_json::json;

mod support;
use support::*;

/// Points, lines and polygons with typed and mixed attributes.
fn input() -> Vec<Feat> {
    let mut rng = Rng(31);
    let mut out = Vec::new();
    for i in 0..1500u64 {
        let (x, y) = (rng.range(-20.0, 20.0), rng.range(-10.0, 10.0));
        let props = json!({
            "name": format!("p{i}"),
            "rank": i % 7,
            "score": if i % 5 == 0 { json!(1.5) } else { json!(i) },
            "flag": i % 2 == 0,
        });
        out.push(feat(0, Some(i), point(x, y), props));
        if i % 10 == 0 {
            let line = LineString::from(vec![(x, y), (x + 0.3, y + 0.2), (x + 0.5, y - 0.1)]);
            out.push(feat(
                1,
                Some(i),
                Geometry::LineString(line),
                json!({"kind": "road"}),
            ));
            let poly = Polygon::new(
                LineString::from(vec![
                    (x, y),
                    (x + 0.2, y),
                    (x + 0.2, y + 0.2),
                    (x, y + 0.2),
                    (x, y),
                ]),
                vec![],
            );
            out.push(feat(
                2,
                Some(i),
                Geometry::Polygon(poly),
                json!({"levels": i % 9}),
            ));
        }
    }
    out
}

/// One line per feature per layer, in tile order (layer, id, geometry); properties are checked
/// as sets by `same_features`.
fn order_of(mvt: &[u8]) -> Vec<(String, Option<u64>)> {
    decode_tile(mvt)
        .unwrap()
        .into_iter()
        .flat_map(|l| {
            let name = l.name.clone();
            l.features.into_iter().map(move |f| (name.clone(), f.id))
        })
        .collect()
}

fn features(mvt: &[u8]) -> Vec<String> {
    etl_tiles::mvt::feature_lines(mvt).unwrap()
}

#[test]
fn every_mlt_tile_holds_the_mvt_tiles_features() {
    let feats = input();
    let names = ["pts", "lines", "polys"];
    let rank = vec![OrderKey::Attribute {
        name: "rank".into(),
        descending: true,
    }];
    // Plain; with --order-by (order kept); with a dropping strategy (tiles held per zoom and
    // made again before they are written).
    for (order, drop) in [(Vec::new(), false), (rank, false), (Vec::new(), true)] {
        let keep_order = !order.is_empty();
        let mvt_opts = TilerOptions {
            order: order.clone(),
            drop_densest: drop,
            max_tile_features: if drop { 150 } else { 200_000 },
            ..opts(0, 8)
        };
        let (mvt, _) = build(mvt_opts.clone(), &names, &feats).unwrap();
        let (mlt, report) = build(
            TilerOptions {
                tile_format: TileFormat::Mlt,
                ..mvt_opts
            },
            &names,
            &feats,
        )
        .unwrap();
        let a = Archive::open(Cursor::new(&mlt)).unwrap();
        assert_eq!(a.header().tile_type, TileType::Mlt);
        assert_eq!(a.metadata()["format"], "mlt");
        assert_eq!(a.metadata()["vector_layers"].as_array().unwrap().len(), 3);
        let (mvt_tiles, mlt_tiles) = (raw_tiles(&mvt), raw_tiles(&mlt));
        assert_eq!(
            mvt_tiles.keys().collect::<Vec<_>>(),
            mlt_tiles.keys().collect::<Vec<_>>(),
            "the same tiles"
        );
        for (c, m) in &mlt_tiles {
            let back = mlt_to_mvt(m).unwrap();
            let orig = &mvt_tiles[c];
            assert_eq!(features(&back), features(orig), "{c}");
            if keep_order {
                assert_eq!(order_of(&back), order_of(orig), "{c}: --order-by kept");
            }
        }
        assert_eq!(report.tiles as usize, mlt_tiles.len());
        if drop {
            assert!(report.dropped > 0, "the strategy dropped: {report:?}");
        }
    }
}
