//! `-j` feature filters through the tiler: features left out everywhere are counted once,
//! `$zoom` filters choose the zooms a feature is in, also past the max zoom when zooms are
//! extended.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use etl_tiles::tiler::{Added, FeatureFilter, Tiler, TilerOptions};
use geo_types::{Geometry, GeometryCollection, Point};
use serde_json::{Map, json};

mod support;
use support::*;

fn filtered(filter: &str) -> TilerOptions {
    TilerOptions {
        feature_filter: Some(FeatureFilter::parse(filter).unwrap()),
        ..opts(0, 4)
    }
}

#[test]
fn a_collection_left_out_is_one_feature_filtered() {
    let mut t = Tiler::new(filtered(r#"{"*": ["==", "keep", true]}"#), vec!["l".into()]).unwrap();
    let gc = Geometry::GeometryCollection(GeometryCollection(vec![
        Geometry::Point(Point::new(1.0, 1.0)),
        Geometry::Point(Point::new(2.0, 2.0)),
    ]));
    let no = Map::new();
    assert_eq!(
        t.add(0, 0, Some(1), Some(&gc), &no).unwrap(),
        Added::Filtered
    );
    let yes = json!({"keep": true}).as_object().cloned().unwrap();
    assert!(matches!(
        t.add(0, 1, Some(2), Some(&gc), &yes).unwrap(),
        Added::Staged { .. }
    ));
    let (_, report) = t
        .finish(std::io::Cursor::new(Vec::new()), &|| false)
        .unwrap();
    assert_eq!(report.filtered, 1, "{report:?}");
}

#[test]
fn zoom_filters_pick_zooms_and_reach_extended_ones() {
    let pts = vec![
        feat(0, Some(1), Geometry::Point(Point::new(1.0, 1.0)), json!({})),
        feat(
            0,
            Some(2),
            Geometry::Point(Point::new(50.0, 20.0)),
            json!({"big": true}),
        ),
    ];
    let f = r#"{"*": ["any", ["==", "big", true], [">=", "$zoom", 3]]}"#;
    let o = TilerOptions {
        drop_rate: 1.0,
        ..filtered(f)
    };
    let (bytes, _) = build(o, &["l"], &pts).unwrap();
    for (c, layers) in tiles(&bytes) {
        for feature in &layers[0].features {
            assert!(feature.id == Some(2) || c.z >= 3, "{c}: {:?}", feature.id);
        }
    }
    // Only at z5, one past -z4: staged, and made when zooms are extended.
    let only_z5 = r#"{"*": ["==", "$zoom", 5]}"#;
    let mut t = Tiler::new(filtered(only_z5), vec!["l".into()]).unwrap();
    assert_eq!(
        t.add(0, 0, Some(1), Some(&pts[0].geom), &Map::new())
            .unwrap(),
        Added::Filtered
    );
    let o = TilerOptions {
        extend_zooms: true,
        ..filtered(only_z5)
    };
    let mut t = Tiler::new(o, vec!["l".into()]).unwrap();
    assert!(matches!(
        t.add(0, 0, Some(1), Some(&pts[0].geom), &Map::new())
            .unwrap(),
        Added::Staged { .. }
    ));
}
