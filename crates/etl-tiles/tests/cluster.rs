//! `--cluster-distance`: at every clustered zoom the counts add up to the input, clusters nest
//! from zoom to zoom, accumulated attributes add up, and the archive does not depend on the
//! memory budget.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::{BTreeMap, BTreeSet};
use std::io::Cursor;

use etl_tiles::archive::Archive;
use etl_tiles::geom::TileGeom;
use etl_tiles::mvt::PropValue;
use etl_tiles::tiler::{
    AccumOp, ClusterMaxZoom, ClusterOptions, MAX_ACCUMULATED_TEXT, TilerError, TilerOptions,
};
use geo_types::{Geometry, LineString, MultiPoint, Point};
use serde_json::json;

mod support;
use support::*;

const N: u64 = 6000;

/// Points in a few dense blobs over a sparse background; every third carries `pop`, every
/// point a `name`; plus a line and a multi-point, which are never clustered.
fn input() -> Vec<Feat> {
    let mut rng = Rng(4242);
    let centres = [(10.0, 45.0, 0.5), (-73.9, 40.7, 2.0), (139.7, 35.6, 0.05)];
    let mut out: Vec<Feat> = (0..N)
        .map(|i| {
            let (x, y) = if i % 4 == 0 {
                (rng.range(-170.0, 170.0), rng.range(-70.0, 70.0))
            } else {
                let (cx, cy, r) = centres[(rng.next() % 3) as usize];
                (cx + rng.range(-r, r), cy + rng.range(-r, r))
            };
            let props = if i % 3 == 0 {
                json!({"pop": i, "name": format!("p{i}")})
            } else {
                json!({"name": format!("p{i}")})
            };
            feat(0, Some(i), point(x, y), props)
        })
        .collect();
    out.push(feat(
        0,
        Some(N),
        Geometry::LineString(LineString::from(vec![(0.0, 0.0), (20.0, 10.0)])),
        json!({}),
    ));
    out.push(feat(
        0,
        Some(N + 1),
        Geometry::MultiPoint(MultiPoint(vec![
            Point::new(10.01, 45.01),
            Point::new(10.02, 45.02),
        ])),
        json!({}),
    ));
    out
}

fn clustering(max_zoom: ClusterMaxZoom) -> ClusterOptions {
    ClusterOptions {
        distance: 10,
        max_zoom,
        keep_position: false,
        accumulate: vec![
            ("pop".into(), AccumOp::Sum),
            ("name".into(), AccumOp::Count),
        ],
    }
}

fn prop<'a>(props: &'a [(String, PropValue)], key: &str) -> Option<&'a PropValue> {
    props.iter().find(|(k, _)| k == key).map(|(_, v)| v)
}

fn uint(v: Option<&PropValue>) -> u64 {
    match v {
        Some(PropValue::UInt(u)) => *u,
        other => panic!("expected a uint, got {other:?}"),
    }
}

/// Per zoom: (points counted, pop summed, `name` counted, single-point features, ids shown).
type Totals = (u64, u64, u64, u64, BTreeSet<u64>);

fn totals(bytes: &[u8]) -> BTreeMap<u8, Totals> {
    let mut out: BTreeMap<u8, Totals> = BTreeMap::new();
    for (c, layers) in tiles(bytes) {
        let t = out.entry(c.z).or_default();
        for l in layers {
            for f in l.features {
                let TileGeom::Points(p) = &f.geom else {
                    continue;
                };
                if p.len() != 1 {
                    continue;
                }
                // Every feature lies inside its own tile (clusters never leave their cell; a
                // point on the tile's last world unit rounds to the edge).
                assert!(
                    (0..=4096).contains(&p[0][0]) && (0..=4096).contains(&p[0][1]),
                    "{c}: {p:?}"
                );
                let clustered = prop(&f.props, "clustered") == Some(&PropValue::Bool(true));
                let count = if clustered {
                    let n = uint(prop(&f.props, "point_count"));
                    assert!(n >= 2, "{c}: a cluster of {n}");
                    let sqrt = prop(&f.props, "sqrt_point_count");
                    assert_eq!(
                        sqrt,
                        Some(&PropValue::Double(
                            ((n as f64).sqrt() * 100.0).round() / 100.0
                        ))
                    );
                    assert!(prop(&f.props, "point_count_abbreviated").is_some());
                    n
                } else {
                    assert!(prop(&f.props, "point_count").is_none());
                    1
                };
                t.0 += count;
                t.1 += prop(&f.props, "pop").map_or(0, |v| uint(Some(v)));
                t.2 += match prop(&f.props, "name") {
                    Some(PropValue::UInt(n)) if clustered => *n,
                    Some(PropValue::String(_)) if !clustered => 1,
                    other => panic!("{c}: name {other:?} (clustered {clustered})"),
                };
                t.3 += 1;
                t.4.insert(f.id.expect("an id"));
            }
        }
    }
    out
}

#[test]
fn counts_and_accumulated_sums_add_up_at_every_zoom() {
    let feats = input();
    let o = TilerOptions {
        cluster: Some(clustering(ClusterMaxZoom::Every)),
        ..opts(0, 10)
    };
    let (bytes, report) = build(o, &["pts"], &feats).unwrap();
    let pop: u64 = (0..N).filter(|i| i % 3 == 0).sum();
    let by_zoom = totals(&bytes);
    assert_eq!(by_zoom.len(), 11);
    let mut absorbed = 0;
    for (z, (points, pops, names, shown, _)) in &by_zoom {
        assert_eq!(*points, N, "z{z}: every point counted once");
        assert_eq!(*pops, pop, "z{z}: pop sums to the input's");
        assert_eq!(*names, N, "z{z}: name counted once per point");
        absorbed += points - shown;
    }
    assert_eq!(report.clustered_points, absorbed);
    assert!(report.clusters > 0);
    // Fewer features at lower zooms; at z0 a handful of cells hold everything.
    let shown: Vec<u64> = by_zoom.values().map(|t| t.3).collect();
    assert!(shown.windows(2).all(|w| w[0] <= w[1]), "{shown:?}");
    assert!(shown[0] < 700, "{shown:?}");
    // The line and the multi-point are still there at the max zoom (not clustered).
    let ids = ids_by_zoom(&bytes);
    assert!(ids[&10].contains(&N) && ids[&10].contains(&(N + 1)));
    // The clusters' attributes are in the metadata.
    let a = Archive::open(Cursor::new(&bytes)).unwrap();
    let layers = a.metadata()["vector_layers"].as_array().unwrap().clone();
    let fields = &layers[0]["fields"];
    assert_eq!(fields["point_count"], "Number");
    assert_eq!(fields["sqrt_point_count"], "Number");
    assert_eq!(fields["clustered"], "Boolean");
    assert_eq!(fields["point_count_abbreviated"], "String");
    assert_eq!(fields["name"], "Mixed", "strings, and counts on clusters");
}

#[test]
fn clusters_nest_so_a_point_shown_at_z_is_shown_at_z_plus_1() {
    // A cluster stands as its first point (input order), and a cell at z is four cells at
    // z + 1: the first point of the union is the first point of one of them.
    let feats = input();
    let o = TilerOptions {
        cluster: Some(clustering(ClusterMaxZoom::Every)),
        ..opts(0, 10)
    };
    let (bytes, _) = build(o, &["pts"], &feats).unwrap();
    let by_zoom = totals(&bytes);
    for z in 0..10u8 {
        let lost: Vec<_> = by_zoom[&z].4.difference(&by_zoom[&(z + 1)].4).collect();
        assert_eq!(lost, Vec::<&u64>::new(), "z{z}");
    }
}

#[test]
fn the_tiles_do_not_depend_on_the_memory_budget() {
    let feats = input();
    let build_with = |memory: usize| {
        let o = TilerOptions {
            cluster: Some(clustering(ClusterMaxZoom::Every)),
            memory,
            ..opts(0, 12)
        };
        build(o, &["pts"], &feats).unwrap()
    };
    let (small, r) = build_with(1 << 20);
    assert!(r.spilled_bytes > 0, "the small budget spills: {r:?}");
    let (large, r) = build_with(256 << 20);
    assert_eq!(r.spilled_bytes, 0);
    // The same tiles (the archive's layout may differ: the dedup cache follows the budget).
    assert!(
        raw_tiles(&small) == raw_tiles(&large),
        "same tiles whatever the budget"
    );
}

#[test]
fn below_the_max_zoom_every_point_shows_at_the_max_zoom() {
    let feats = input();
    let o = TilerOptions {
        cluster: Some(clustering(ClusterMaxZoom::BelowMax)),
        ..opts(0, 8)
    };
    let (bytes, _) = build(o, &["pts"], &feats).unwrap();
    let by_zoom = totals(&bytes);
    assert_eq!(by_zoom[&8].3, N, "z8: every point on its own");
    assert!(by_zoom[&7].3 < N, "z7 is clustered");
    assert_eq!(by_zoom[&7].0, N);
    // A fixed cluster max zoom: deeper zooms are thinned by the drop rate as usual.
    let o = TilerOptions {
        cluster: Some(clustering(ClusterMaxZoom::Zoom(3))),
        ..opts(0, 8)
    };
    let (bytes, _) = build(o, &["pts"], &feats).unwrap();
    let by_zoom = totals(&bytes);
    assert_eq!(by_zoom[&3].0, N);
    assert!(by_zoom[&4].0 < N, "z4: drop-rate thinning, not clusters");
}

#[test]
fn keep_position_leaves_a_cluster_on_its_first_point() {
    let feats = input();
    let mut c = clustering(ClusterMaxZoom::Every);
    c.keep_position = true;
    let (kept, _) = build(
        TilerOptions {
            cluster: Some(c),
            ..opts(0, 6)
        },
        &["pts"],
        &feats,
    )
    .unwrap();
    // Every point at every zoom, unclustered: where each point is drawn.
    let (all, _) = build(
        TilerOptions {
            drop_rate: 1.0,
            ..opts(0, 6)
        },
        &["pts"],
        &feats,
    )
    .unwrap();
    let mut at: BTreeMap<(u8, u64), TileGeom> = BTreeMap::new();
    for (c, layers) in tiles(&all) {
        for f in layers.into_iter().flat_map(|l| l.features) {
            at.insert((c.z, f.id.unwrap()), f.geom);
        }
    }
    let mut clusters = 0;
    for (c, layers) in tiles(&kept) {
        for f in layers.into_iter().flat_map(|l| l.features) {
            if prop(&f.props, "clustered").is_some() {
                clusters += 1;
                assert_eq!(Some(&f.geom), at.get(&(c.z, f.id.unwrap())), "{c}");
            }
        }
    }
    assert!(clusters > 100);
}

#[test]
fn accumulated_text_is_capped_and_counted() {
    let feats: Vec<Feat> = (0..400u64)
        .map(|i| {
            feat(
                0,
                Some(i),
                point(10.0 + i as f64 * 1e-6, 45.0),
                json!({"note": "x".repeat(50)}),
            )
        })
        .collect();
    let o = TilerOptions {
        cluster: Some(ClusterOptions {
            distance: 10,
            max_zoom: ClusterMaxZoom::Every,
            keep_position: false,
            accumulate: vec![("note".into(), AccumOp::Comma)],
        }),
        ..opts(0, 4)
    };
    let (bytes, report) = build(o, &["pts"], &feats).unwrap();
    assert_eq!(report.accumulate_truncated, 5, "one cluster per zoom");
    for (_, layers) in tiles(&bytes) {
        let f = &layers[0].features[0];
        let Some(PropValue::String(s)) = prop(&f.props, "note") else {
            panic!("a note")
        };
        assert!(s.len() <= MAX_ACCUMULATED_TEXT);
        assert_eq!(uint(prop(&f.props, "point_count")), 400);
    }
}

#[test]
fn bad_options_are_refused() {
    for c in [
        ClusterOptions {
            distance: 0,
            ..clustering(ClusterMaxZoom::Every)
        },
        ClusterOptions {
            accumulate: vec![("clustered".into(), AccumOp::Max)],
            ..clustering(ClusterMaxZoom::Every)
        },
    ] {
        let o = TilerOptions {
            cluster: Some(c),
            ..opts(0, 4)
        };
        let err = build(o, &["pts"], &input()).unwrap_err();
        assert!(matches!(err, TilerError::Options(_)), "{err}");
    }
}

mod hostile {
    use super::*;
    use proptest::prelude::*;

    /// Longitudes and latitudes at and past the edges of Web Mercator (clamped), on tile and
    /// cell boundaries, and anywhere.
    fn coord() -> impl Strategy<Value = (f64, f64)> {
        let lon = prop_oneof![
            Just(-180.0),
            Just(180.0),
            Just(0.0),
            Just(-200.0),
            Just(1e-12),
            -180.0f64..180.0,
        ];
        let lat = prop_oneof![
            Just(85.051_128_78),
            Just(-85.051_128_78),
            Just(89.9),
            Just(0.0),
            -85.0f64..85.0,
        ];
        (lon, lat)
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(64))]

        /// Whatever the points and the cell size, every clustered zoom counts each point once
        /// and sums each attribute exactly.
        #[test]
        fn counts_add_up_for_any_points(
            pts in prop::collection::vec(coord(), 1..150),
            distance in 1u8..=255,
            max_zoom in 0u8..=7,
        ) {
            let feats: Vec<Feat> = pts
                .iter()
                .enumerate()
                .map(|(i, (x, y))| {
                    feat(0, Some(i as u64), point(*x, *y), json!({"pop": i, "name": "n"}))
                })
                .collect();
            let o = TilerOptions {
                cluster: Some(ClusterOptions {
                    distance,
                    ..clustering(ClusterMaxZoom::Every)
                }),
                ..opts(0, max_zoom)
            };
            let (bytes, _) = build(o, &["pts"], &feats).unwrap();
            let n = pts.len() as u64;
            let pop: u64 = (0..n).sum();
            let by_zoom = totals(&bytes);
            prop_assert_eq!(by_zoom.len(), usize::from(max_zoom) + 1);
            for (z, t) in &by_zoom {
                prop_assert_eq!(t.0, n, "z{}", z);
                prop_assert_eq!(t.1, pop, "z{}", z);
                prop_assert_eq!(t.2, n, "z{}", z);
            }
        }
    }
}

#[test]
fn deep_zooms_with_one_pixel_cells_still_add_up() {
    // At z18 with 1-pixel cells many cells share one sort key (it keeps 24 bits per axis):
    // they are told apart by their cell, not merged, and not scanned member by member.
    let mut rng = Rng(9);
    let feats: Vec<Feat> = (0..3000u64)
        .map(|i| {
            let (x, y) = (10.0 + rng.range(0.0, 0.002), 45.0 + rng.range(0.0, 0.002));
            feat(0, Some(i), point(x, y), json!({"pop": i, "name": "n"}))
        })
        .collect();
    let o = TilerOptions {
        cluster: Some(ClusterOptions {
            distance: 1,
            ..clustering(ClusterMaxZoom::Every)
        }),
        ..opts(15, 18)
    };
    let (bytes, report) = build(o, &["pts"], &feats).unwrap();
    let by_zoom = totals(&bytes);
    for z in 15..=18u8 {
        assert_eq!(by_zoom[&z].0, 3000, "z{z}");
        assert_eq!(by_zoom[&z].1, (0..3000u64).sum::<u64>(), "z{z}");
    }
    assert!(report.clusters > 0);
    // Deeper zooms split clusters: more features at z18 than at z15.
    assert!(by_zoom[&18].3 > by_zoom[&15].3);
}

#[test]
fn an_accumulated_attribute_no_feature_has_is_refused() {
    let mut c = clustering(ClusterMaxZoom::Every);
    c.accumulate = vec![("popp".into(), AccumOp::Sum)];
    let o = TilerOptions {
        cluster: Some(c),
        ..opts(0, 4)
    };
    let err = build(o, &["pts"], &input()).unwrap_err();
    assert!(
        matches!(&err, TilerError::Options(m) if m.contains("popp")),
        "{err}"
    );
}
