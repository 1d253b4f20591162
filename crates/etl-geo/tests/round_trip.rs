//! read → write → read keeps geometries exactly and property types, through both
//! output formats.

#![allow(
    clippy::expect_used,
    clippy::unwrap_used,
    reason = "helpers of these tests: a failure there is the test failing"
)]

use std::io::Cursor;

use etl_geo::geo_types::{
    Coord, Geometry, GeometryCollection, LineString, MultiLineString, MultiPoint, MultiPolygon,
    Point, Polygon,
};
use etl_geo::{
    Feature, FeatureId, FeatureWriter, Format, OutputFormat, ReadOptions, feature_to_json, open,
};
use proptest::prelude::*;
use serde_json::{Map, Value};

fn coord() -> impl Strategy<Value = Coord<f64>> {
    (-180.0..=180.0f64, -90.0..=90.0f64).prop_map(|(x, y)| Coord { x, y })
}

/// A line of at least two distinct positions: what reading keeps as it is (a line of one
/// distinct position is repaired into a point).
fn real_line() -> impl Strategy<Value = LineString<f64>> {
    prop::collection::vec(coord(), 2..6)
        .prop_filter("a line needs two distinct positions", |c| {
            c.windows(2).any(|w| w[0] != w[1])
        })
        .prop_map(LineString)
}

fn line() -> impl Strategy<Value = LineString<f64>> {
    prop_oneof![Just(LineString(vec![])), real_line()]
}

/// A closed ring of at least 4 positions (`Polygon::new` closes it).
fn ring() -> impl Strategy<Value = LineString<f64>> {
    prop::collection::vec(coord(), 3..6)
        .prop_filter("ring needs three distinct corners", |c| {
            c.first() != c.last() && c.windows(2).all(|w| w[0] != w[1])
        })
        .prop_map(LineString)
}

fn real_polygon() -> impl Strategy<Value = Polygon<f64>> {
    (ring(), prop::collection::vec(ring(), 0..3))
        .prop_map(|(exterior, holes)| Polygon::new(exterior, holes))
}

fn polygon() -> impl Strategy<Value = Polygon<f64>> {
    prop_oneof![
        1 => Just(Polygon::new(LineString(vec![]), vec![])),
        6 => real_polygon(),
    ]
}

/// Empty geometries are left out of multi-geometries and collections when read (a repair), so
/// only the top level has them here.
fn is_empty(g: &Geometry<f64>) -> bool {
    match g {
        Geometry::LineString(l) => l.0.is_empty(),
        Geometry::Polygon(p) => p.exterior().0.is_empty() && p.interiors().is_empty(),
        Geometry::MultiPoint(m) => m.0.is_empty(),
        Geometry::MultiLineString(m) => m.0.is_empty(),
        Geometry::MultiPolygon(m) => m.0.is_empty(),
        Geometry::GeometryCollection(c) => c.0.is_empty(),
        _ => false,
    }
}

fn geometry() -> impl Strategy<Value = Geometry<f64>> {
    let leaf = prop_oneof![
        coord().prop_map(|c| Geometry::Point(Point(c))),
        line().prop_map(Geometry::LineString),
        polygon().prop_map(Geometry::Polygon),
        prop::collection::vec(coord().prop_map(Point), 0..5)
            .prop_map(|p| Geometry::MultiPoint(MultiPoint(p))),
        prop::collection::vec(real_line(), 0..4)
            .prop_map(|l| Geometry::MultiLineString(MultiLineString(l))),
        prop::collection::vec(real_polygon(), 0..3)
            .prop_map(|p| Geometry::MultiPolygon(MultiPolygon(p))),
    ];
    leaf.prop_recursive(2, 16, 4, |inner| {
        prop::collection::vec(inner, 0..4).prop_map(|g| {
            Geometry::GeometryCollection(GeometryCollection(
                g.into_iter().filter(|m| !is_empty(m)).collect(),
            ))
        })
    })
}

fn json_value() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(Value::from),
        any::<u64>().prop_map(Value::from),
        any::<f64>()
            .prop_filter("JSON numbers are finite", |f| f.is_finite())
            .prop_map(Value::from),
        any::<String>().prop_map(Value::String),
    ];
    leaf.prop_recursive(3, 20, 4, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..4).prop_map(Value::Array),
            prop::collection::vec((any::<String>(), inner), 0..4)
                .prop_map(|kv| Value::Object(kv.into_iter().collect())),
        ]
    })
}

fn feature() -> impl Strategy<Value = Feature> {
    (
        prop::option::of(prop_oneof![
            any::<i64>().prop_map(FeatureId::Int),
            any::<String>().prop_map(FeatureId::Str),
        ]),
        prop::option::of(geometry()),
        prop::collection::vec(("[a-z_]{1,8}|\\PC{0,6}", json_value()), 0..6),
    )
        .prop_map(|(id, geometry, properties)| Feature {
            id,
            geometry,
            properties: properties.into_iter().collect::<Map<String, Value>>(),
        })
}

fn write(format: OutputFormat, features: &[Feature]) -> Vec<u8> {
    let mut w = FeatureWriter::new(format, Vec::new());
    for f in features {
        w.write(f).expect("writing to a Vec succeeds");
    }
    w.finish().expect("writing to a Vec succeeds")
}

fn read(format: Format, bytes: Vec<u8>) -> Vec<Feature> {
    open(
        format,
        Box::new(Cursor::new(bytes)),
        &ReadOptions::default(),
    )
    .expect("output opens")
    .map(|r| {
        let record = r.expect("output reads");
        record.feature.expect("output features are valid")
    })
    .collect()
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(200))]

    #[test]
    fn features_survive_both_output_formats(features in prop::collection::vec(feature(), 0..5)) {
        let seq = read(Format::GeoJsonSeq, write(OutputFormat::GeoJsonSeq, &features));
        prop_assert_eq!(&seq, &features);
        let collection = read(Format::GeoJson, write(OutputFormat::GeoJson, &features));
        prop_assert_eq!(&collection, &features);
    }

    #[test]
    fn feature_to_json_matches_the_writer(f in feature()) {
        let written = write(OutputFormat::GeoJsonSeq, std::slice::from_ref(&f));
        let parsed: Value = serde_json::from_slice(&written).expect("writer output is JSON");
        prop_assert_eq!(parsed, feature_to_json(&f));
    }
}

#[test]
fn csv_properties_keep_their_types_through_geojson() {
    let csv = "lon,lat,n,x,b,s,z\n1.5,2.5,42,0.25,true,007,\n";
    let features = read(Format::Csv, csv.as_bytes().to_vec());
    let again = read(
        Format::GeoJsonSeq,
        write(OutputFormat::GeoJsonSeq, &features),
    );
    assert_eq!(again, features);
    assert_eq!(
        Value::Object(again[0].properties.clone()),
        serde_json::json!({"n": 42, "x": 0.25, "b": true, "s": "007"})
    );
}

#[test]
fn through_files_on_disk() {
    use std::fs::File;
    use std::io::{BufReader, BufWriter};

    let dir = tempfile::tempdir().unwrap();
    let features = read(
        Format::GeoJsonSeq,
        br#"{"type":"Feature","id":1,"properties":{"a":[1,"x"]},"geometry":{"type":"Point","coordinates":[-64.123456,43.654321]}}
{"type":"Feature","id":"b","properties":{},"geometry":{"type":"Polygon","coordinates":[[[0,0],[1,0],[1,1],[0,0]]]}}
"#
        .to_vec(),
    );
    assert_eq!(features.len(), 2);
    for name in ["out.geojson", "out.geojsonl"] {
        let path = dir.path().join(name);
        let format = OutputFormat::from_path(name).unwrap();
        let mut w = FeatureWriter::new(format, BufWriter::new(File::create(&path).unwrap()));
        for f in &features {
            w.write(f).unwrap();
        }
        w.finish().unwrap();
        let input = BufReader::new(File::open(&path).unwrap());
        let back: Vec<Feature> = open(
            Format::from_path(name).unwrap(),
            Box::new(input),
            &ReadOptions::default(),
        )
        .unwrap()
        .map(|r| r.unwrap().feature.unwrap())
        .collect();
        assert_eq!(back, features, "{name}");
    }
}
