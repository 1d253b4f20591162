//! Regressions found in review: each test names the input that used to go wrong.

#![allow(
    clippy::expect_used,
    clippy::unwrap_used,
    reason = "helpers of these tests: a failure there is the test failing"
)]

use std::io::Cursor;

use etl_geo::geo_types::{Coord, Geometry, Point};
use etl_geo::{
    EwkbError, Feature, FeatureWriter, Format, OutputFormat, ReadOptions, Record, open, read_ewkb,
    write_ewkb,
};
use serde_json::{Value, json};

fn read(format: Format, text: &[u8]) -> Vec<Result<Record, String>> {
    open(
        format,
        Box::new(Cursor::new(text.to_vec())),
        &ReadOptions::default(),
    )
    .unwrap()
    .map(|r| r.map_err(|e| e.to_string()))
    .collect()
}

fn only(format: Format, text: &[u8]) -> Result<Feature, String> {
    let mut records = read(format, text);
    assert_eq!(records.len(), 1, "{records:?}");
    records.remove(0)?.feature.map_err(|r| r.reason)
}

#[test]
fn huge_top_level_key_after_the_type_is_streamed() {
    // Once "type" says FeatureCollection nothing is captured any more; a 4 MB key
    // must be checked, not collected (the scanner keeps at most 1 KiB of it).
    let text = format!(
        r#"{{"type":"FeatureCollection","{}":1,"features":[{{"type":"Feature","id":1,"geometry":null}}]}}"#,
        "k".repeat(4 << 20)
    );
    let records = read(Format::GeoJson, text.as_bytes());
    assert_eq!(records.len(), 1);
    assert!(records[0].as_ref().unwrap().feature.is_ok());
}

#[test]
fn coordinates_as_strings_are_a_rejection() {
    let f = only(
        Format::GeoJsonSeq,
        br#"{"type":"Feature","geometry":{"type":"Point","coordinates":["1","2"]}}"#,
    );
    assert!(f.unwrap_err().contains("invalid type: string"));
}

#[test]
fn hole_without_shell_is_a_rejection() {
    let f = only(
        Format::GeoJsonSeq,
        br#"{"type":"Feature","geometry":{"type":"Polygon","coordinates":[[],[[0,0],[1,0],[1,1],[0,0]]]}}"#,
    );
    assert_eq!(
        f.unwrap_err(),
        "polygon ring 0 (exterior) is empty but the polygon has holes"
    );
    // An empty hole beside a shell is dropped (a repair), so PostGIS never sees it.
    let f = only(
        Format::GeoJsonSeq,
        br#"{"type":"Feature","geometry":{"type":"MultiPolygon","coordinates":[[[[0,0],[1,0],[1,1],[0,0]],[]]]}}"#,
    );
    let Some(Geometry::MultiPolygon(mp)) = f.unwrap().geometry else {
        panic!("not a multipolygon");
    };
    assert!(mp.0[0].interiors().is_empty());
}

/// Coordinates read from GeoJSON are written back and read again bit for bit,
/// including negative zero and the extremes of the double range.
#[test]
fn coordinates_round_trip_bit_exact() {
    let xs = [
        "-0",
        "-0.0",
        "0.1",
        "1e-300",
        "5e-324",
        "-179.99999999999997",
        "89.99999999999999",
        "12.345678901234567",
    ];
    for x in xs {
        let text =
            format!(r#"{{"type":"Feature","geometry":{{"type":"Point","coordinates":[{x},0]}}}}"#);
        let expected: f64 = x.parse().unwrap();
        let f = only(Format::GeoJsonSeq, text.as_bytes()).unwrap();
        let Some(Geometry::Point(p)) = &f.geometry else {
            panic!("{x}: {f:?}")
        };
        assert_eq!(p.x().to_bits(), expected.to_bits(), "read {x}");
        let mut w = FeatureWriter::new(OutputFormat::GeoJsonSeq, Vec::new());
        w.write(&f).unwrap();
        let out = w.finish().unwrap();
        let again = only(Format::GeoJsonSeq, &out).unwrap();
        assert_eq!(again, f, "{x}: {}", String::from_utf8_lossy(&out));
        let Some(Geometry::Point(q)) = again.geometry else {
            panic!()
        };
        assert_eq!(q.x().to_bits(), expected.to_bits(), "rewritten {x}");
        let mut ewkb = Vec::new();
        write_ewkb(&Geometry::Point(q), Some(4326), &mut ewkb);
        let (_, back) = read_ewkb(&ewkb).unwrap();
        let Geometry::Point(r) = back else { panic!() };
        assert_eq!(r.x().to_bits(), expected.to_bits(), "ewkb {x}");
    }
}

#[test]
fn csv_typing_never_changes_a_value() {
    let text = "lon,lat,a,b,c,d,e,f,g,h\n\
                1,2,99999999999999999999,0.1000000000000000055511151231257827,1e5,-0,+1, 12 ,NaN,1e-999\n";
    let f = only(Format::Csv, text.as_bytes()).unwrap();
    assert_eq!(
        Value::Object(f.properties),
        json!({
            "a": "99999999999999999999",
            "b": "0.1000000000000000055511151231257827",
            "c": 100000.0,
            "d": "-0",
            "e": "+1",
            "f": " 12 ",
            "g": "NaN",
            "h": "1e-999",
        })
    );
}

#[test]
fn csv_non_finite_coordinates_are_rejections() {
    let text = "lon,lat\nnan,1\ninf,1\n1e999,1\n-infinity,1\n1,2\n";
    let reasons: Vec<Result<(u64, u64), String>> = read(Format::Csv, text.as_bytes())
        .into_iter()
        .map(|r| {
            let r = r.unwrap();
            r.feature.map(|_| (r.line, r.ordinal)).map_err(|e| e.reason)
        })
        .collect();
    assert_eq!(
        reasons,
        [
            Err("coordinate (NaN, 1) is not finite".to_owned()),
            Err("coordinate (inf, 1) is not finite".to_owned()),
            Err("coordinate (inf, 1) is not finite".to_owned()),
            Err("coordinate (-inf, 1) is not finite".to_owned()),
            Ok((6, 4)),
        ]
    );
}

#[test]
fn ewkb_point_round_trip_keeps_negative_zero() {
    let p = Geometry::Point(Point(Coord { x: -0.0, y: 0.0 }));
    let mut out = Vec::new();
    write_ewkb(&p, None, &mut out);
    let (_, back) = read_ewkb(&out).unwrap();
    let Geometry::Point(q) = back else { panic!() };
    assert!(q.x().is_sign_negative());
    assert!(matches!(
        read_ewkb(&out[..out.len() - 1]),
        Err(EwkbError::UnexpectedEnd { .. })
    ));
}
