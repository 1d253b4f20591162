//! Every rejection class and the fatal errors, read from the fixture files the way
//! a job reads its inputs: format from the extension, then `open`.

#![allow(
    clippy::expect_used,
    clippy::unwrap_used,
    reason = "helpers of these tests: a failure there is the test failing"
)]

use std::fs::File;
use std::io::BufReader;
use std::path::Path;

use etl_geo::{Feature, Format, ReadOptions, Record, open};
use serde_json::json;

/// A record as (line, ordinal, `Ok(id)` or `Err(reason)`); a fatal error as text.
type Outcome = Result<(u64, u64, Result<String, String>), String>;

fn read_fixture(name: &str) -> Vec<Outcome> {
    read_records(name)
        .into_iter()
        .map(|r| {
            r.map(|rec| {
                let what = rec
                    .feature
                    .map(|f| f.id.map(|id| id.to_string()).unwrap_or_default())
                    .map_err(|rej| rej.reason);
                (rec.line, rec.ordinal, what)
            })
        })
        .collect()
}

fn read_records(name: &str) -> Vec<Result<Record, String>> {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(name);
    let format = Format::from_path(name).expect("fixture extension is known");
    let file = File::open(&path).expect("fixture exists");
    match open(
        format,
        Box::new(BufReader::new(file)),
        &ReadOptions::default(),
    ) {
        Ok(source) => source.map(|r| r.map_err(|e| e.to_string())).collect(),
        Err(e) => vec![Err(e.to_string())],
    }
}

fn accepted(line: u64, ordinal: u64, id: &str) -> Outcome {
    Ok((line, ordinal, Ok(id.to_owned())))
}

fn rejected(line: u64, ordinal: u64, reason: &str) -> Outcome {
    Ok((line, ordinal, Err(reason.to_owned())))
}

#[test]
fn non_finite_coordinates() {
    assert_eq!(
        read_fixture("non_finite.geojson"),
        [
            rejected(
                4,
                0,
                "number out of range of a 64-bit float at line 4 column 102"
            ),
            rejected(
                5,
                1,
                "number out of range of a 64-bit float at line 5 column 117"
            ),
            accepted(6, 2, "3"),
        ]
    );
    let csv: Vec<Outcome> = read_fixture("non_finite.csv");
    assert_eq!(
        csv,
        [
            rejected(2, 0, "coordinate (NaN, 10) is not finite"),
            rejected(3, 1, "coordinate (inf, 10) is not finite"),
            rejected(4, 2, "coordinate (5, -inf) is not finite"),
            accepted(5, 3, ""),
        ]
    );
}

#[test]
fn out_of_range_coordinates() {
    assert_eq!(
        read_fixture("out_of_range.geojsonl"),
        [
            rejected(1, 0, "longitude 181 out of range [-180, 180]"),
            rejected(2, 1, "latitude -91.5 out of range [-90, 90]"),
            rejected(
                3,
                2,
                "polygon ring 0 (exterior) position 2: latitude 90.1 out of range [-90, 90]"
            ),
            rejected(
                4,
                3,
                "multipoint part 1: longitude -180.000001 out of range [-180, 180]"
            ),
            accepted(5, 4, "5"),
        ]
    );
}

/// A record as (line, id, the geometry as WKT-like debug text, the repairs made).
fn read_repaired(name: &str) -> Vec<(u64, String, String, Vec<&'static str>)> {
    read_records(name)
        .into_iter()
        .map(|r| {
            let rec = r.expect("no fatal error");
            let f = rec.feature.expect("accepted");
            (
                rec.line,
                f.id.map(|id| id.to_string()).unwrap_or_default(),
                format!("{:?}", f.geometry.expect("a geometry")),
                rec.repairs.iter().map(|k| k.name()).collect(),
            )
        })
        .collect()
}

fn repaired(
    line: u64,
    id: &str,
    geometry: &str,
    repairs: &[&'static str],
) -> (u64, String, String, Vec<&'static str>) {
    (line, id.to_owned(), geometry.to_owned(), repairs.to_vec())
}

#[test]
fn unclosed_rings_are_closed() {
    assert_eq!(
        read_repaired("unclosed_ring.geojson"),
        [
            repaired(
                2,
                "1",
                "POLYGON((0.0 0.0,1.0 0.0,1.0 1.0,0.0 1.0,0.0 0.0))",
                &["ring_closed"]
            ),
            repaired(
                3,
                "2",
                "POLYGON((0.0 0.0,10.0 0.0,10.0 10.0,0.0 10.0,0.0 0.0),(1.0 1.0,2.0 1.0,2.0 2.0,1.0 2.0,1.0 1.0))",
                &["ring_closed"]
            ),
            repaired(
                7,
                "3",
                "MULTIPOLYGON(((0.0 0.0,1.0 0.0,1.0 1.0,0.0 0.0)),((5.0 5.0,6.0 5.0,6.0 6.0,5.0 6.0,5.0 5.0)))",
                &["ring_closed"]
            ),
            repaired(11, "4", "POLYGON((0.0 0.0,1.0 0.0,1.0 1.0,0.0 0.0))", &[]),
        ]
    );
}

#[test]
fn short_rings_and_lines_are_repaired() {
    assert_eq!(
        read_repaired("short_ring.geojsonl"),
        [
            repaired(1, "1", "LINESTRING(0.0 0.0,1.0 1.0)", &["ring_to_line"]),
            repaired(
                2,
                "2",
                "POLYGON((0.0 0.0,10.0 0.0,10.0 10.0,0.0 0.0))",
                &["parts_dropped"]
            ),
            repaired(3, "3", "POINT(0.0 0.0)", &["line_to_point"]),
            repaired(
                4,
                "4",
                "MULTILINESTRING((0.0 0.0,1.0 1.0))",
                &["parts_dropped"]
            ),
            repaired(5, "5", "LINESTRING EMPTY", &[]),
        ]
    );
}

#[test]
fn unparseable_geometries() {
    assert_eq!(
        read_fixture("unparseable_geometry.geojsonl"),
        [
            rejected(1, 0, "unknown GeoJSON type \"Circle\""),
            rejected(
                2,
                1,
                "invalid type: string \"0\", expected a coordinate number or array"
            ),
            rejected(3, 2, "Point has no \"coordinates\""),
            rejected(
                4,
                3,
                "invalid type: string \"POINT(0 0)\", expected a GeoJSON geometry object"
            ),
            rejected(5, 4, "geometry has no \"type\""),
            rejected(6, 5, "position has only one number"),
            rejected(
                7,
                6,
                "invalid JSON: EOF while parsing an object at column 71"
            ),
            accepted(8, 7, "8"),
        ]
    );
}

#[test]
fn wrong_shapes() {
    assert_eq!(
        read_fixture("wrong_shape.geojson"),
        [
            rejected(2, 0, "Point coordinates must be a position"),
            rejected(3, 1, "LineString coordinates must be an array of positions"),
            rejected(
                4,
                2,
                "Polygon coordinates must be an array of arrays of positions"
            ),
            rejected(
                5,
                3,
                "MultiPolygon coordinates must be an array of arrays of arrays of positions"
            ),
            rejected(6, 4, "coordinates are not uniformly nested"),
            rejected(7, 5, "coordinates mix numbers and arrays"),
            rejected(8, 6, "invalid type: map, expected an array of coordinates"),
            rejected(9, 7, "expected a Feature, found a Point"),
            accepted(10, 8, "9"),
        ]
    );
}

#[test]
fn collection_members_in_any_order() {
    let records = read_records("collection_members.geojson");
    assert_eq!(records.len(), 2);
    let first: Feature = records[0].clone().unwrap().feature.unwrap();
    assert_eq!(records[0].as_ref().unwrap().line, 5);
    assert_eq!(
        serde_json::Value::Object(first.properties),
        json!({"name": "first", "tags": ["x", "y"], "nested": {"features": []}})
    );
    let second = records[1].clone().unwrap();
    assert_eq!((second.line, second.ordinal), (12, 1));
    assert_eq!(second.feature, Ok(Feature::default()));
}

#[test]
fn syntax_error_is_fatal_with_position() {
    assert_eq!(
        read_fixture("syntax_error.geojson"),
        [
            accepted(4, 0, "1"),
            accepted(5, 1, "2"),
            Err("6:5: expected `,` or `]`".to_owned()),
        ]
    );
}

#[test]
fn nesting_limit() {
    assert_eq!(
        read_fixture("too_deep.geojson"),
        [
            accepted(1, 0, "1"),
            Err("1:186: JSON nested deeper than 64 levels".to_owned()),
        ]
    );
    assert_eq!(
        read_fixture("too_deep.geojsonl"),
        [
            rejected(1, 0, "JSON nested deeper than 64 levels"),
            accepted(2, 1, "2"),
        ]
    );
}

#[test]
fn csv_points_with_semicolons() {
    let records = read_records("points.csv");
    let features: Vec<Feature> = records
        .into_iter()
        .map(|r| r.unwrap().feature.unwrap())
        .collect();
    assert_eq!(features.len(), 3);
    assert_eq!(
        serde_json::Value::Object(features[1].properties.clone()),
        json!({"id": 2, "name": "Hut; upper", "active": false})
    );
    assert_eq!(
        features[0].geometry,
        Some(etl_geo::geo_types::Point::new(7.6586, 45.9763).into())
    );
}

#[test]
fn sniffing_agrees_with_extensions() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures");
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        let name = path.file_name().unwrap().to_str().unwrap().to_owned();
        let bytes = std::fs::read(&path).unwrap();
        let prefix = &bytes[..bytes.len().min(64 * 1024)];
        assert_eq!(Format::sniff(prefix), Format::from_path(&name), "{name}");
    }
}
