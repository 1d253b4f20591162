//! FlatGeobuf reader: every peer `.fgb` (flatgeobuf/flatgeobuf `test/data`) either converts
//! or fails with a clear error, countries.fgb matches countries.geojson, and truncated,
//! corrupt and randomly mutated copies give a `ReadError`, never a panic.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::collections::BTreeMap;
use std::io::Cursor;
use std::path::Path;

use etl_geo::{Format, ReadError, ReadOptions, Record, feature_to_json, open};
use flatgeobuf::geozero::{ColumnValue, FeatureProcessor, GeomProcessor, PropertyProcessor};
use flatgeobuf::{ColumnType, FgbCrs, FgbWriter, FgbWriterOptions, GeometryType};
use serde_json::{Value, json};

/// A peer fixture's bytes; a missing one fails the test.
fn peer(name: &str) -> Vec<u8> {
    let path = common::peer_fixtures("flatgeobuf").join(name);
    std::fs::read(&path).unwrap_or_else(|e| panic!("peer fixture {}: {e}", path.display()))
}

/// All records, and the fatal error if reading stopped on one.
fn read(bytes: &[u8]) -> (Vec<Record>, Option<ReadError>) {
    let source = match open(
        Format::FlatGeobuf,
        Box::new(Cursor::new(bytes.to_vec())),
        &ReadOptions::default(),
    ) {
        Ok(s) => s,
        Err(e) => return (Vec::new(), Some(e)),
    };
    let mut records = Vec::new();
    let mut error = None;
    for item in source {
        assert!(error.is_none(), "an item followed an error");
        match item {
            Ok(r) => {
                assert_eq!(r.ordinal, records.len() as u64, "ordinal gap");
                records.push(r);
            }
            Err(e) => {
                let text = e.to_string();
                assert!(!text.contains('\n'), "multi-line message: {text}");
                error = Some(e);
            }
        }
    }
    (records, error)
}

fn accepted(records: &[Record]) -> Vec<Value> {
    records
        .iter()
        .map(|r| match &r.feature {
            Ok(f) => feature_to_json(f),
            Err(rej) => panic!("record {} rejected: {rej}", r.ordinal),
        })
        .collect()
}

/// Polygon → one-member MultiPolygon, so that the two encodings compare equal.
fn as_multipolygon(g: &Value) -> Value {
    match g["type"].as_str() {
        Some("Polygon") => Value::Array(vec![g["coordinates"].clone()]),
        _ => g["coordinates"].clone(),
    }
}

/// Deliberate differences from countries.geojson, as (feature id, reason).
const PEER_DIFFERENCES: &[(&str, &str)] = &[(
    "BMU",
    "countries.fgb stores the ring clockwise, the GeoJSON the other way: compared in either direction",
)];

fn close(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::Array(x), Value::Array(y)) => {
            x.len() == y.len() && x.iter().zip(y).all(|(p, q)| close(p, q))
        }
        (Value::Number(x), Value::Number(y)) => {
            (x.as_f64().unwrap() - y.as_f64().unwrap()).abs() <= 1e-9
        }
        _ => a == b,
    }
}

/// MultiPolygon coordinates equal within 1e-9, each ring also reversed when `either_direction`.
fn rings_close(a: &Value, b: &Value, either_direction: bool) -> bool {
    let (pa, pb) = (a.as_array().unwrap(), b.as_array().unwrap());
    pa.len() == pb.len()
        && pa.iter().zip(pb).all(|(ra, rb)| {
            let (ra, rb) = (ra.as_array().unwrap(), rb.as_array().unwrap());
            ra.len() == rb.len()
                && ra.iter().zip(rb).all(|(x, y)| {
                    let mut reversed = x.as_array().unwrap().clone();
                    reversed.reverse();
                    close(x, y) || either_direction && close(&Value::Array(reversed), y)
                })
        })
}

#[test]
fn countries_match_the_geojson() {
    let (fgb, geojson) = (peer("countries.fgb"), peer("countries.geojson"));
    let (records, error) = read(&fgb);
    assert!(error.is_none(), "{error:?}");
    let ours = accepted(&records);
    let want: Value = serde_json::from_slice(&geojson).unwrap();
    let want = want["features"].as_array().unwrap();
    assert_eq!(ours.len(), 179);
    assert_eq!(ours.len(), want.len());
    // Hilbert-sorted: the first feature is Antarctica.
    assert_eq!(ours[0]["properties"]["name"], "Antarctica");
    let by_id: BTreeMap<&str, &Value> = want
        .iter()
        .map(|f| (f["id"].as_str().unwrap(), f))
        .collect();
    for f in &ours {
        let id = f["properties"]["id"].as_str().unwrap();
        let w = by_id[id];
        assert_eq!(f["properties"]["name"], w["properties"]["name"], "{id}");
        assert_eq!(
            f["properties"]
                .as_object()
                .unwrap()
                .keys()
                .collect::<Vec<_>>(),
            ["id", "name"]
        );
        assert_eq!(f["geometry"]["type"], "MultiPolygon");
        let (ours, theirs) = (
            as_multipolygon(&f["geometry"]),
            as_multipolygon(&w["geometry"]),
        );
        let known = PEER_DIFFERENCES.iter().any(|(fid, _)| *fid == id);
        assert!(
            rings_close(&ours, &theirs, false) || known && rings_close(&ours, &theirs, true),
            "{id}: geometry differs"
        );
    }
}

/// What each peer `.fgb` gives: `Ok(count)` accepted features, or the start of the
/// fatal error. Deliberate outcomes are explained beside each.
const PEER_OUTCOMES: &[(&str, Result<usize, &str>)] = &[
    ("countries.fgb", Ok(179)),
    // Attributes only: 179 features with null geometry.
    ("countries_nogeo.fgb", Ok(179)),
    // A header without features.
    ("empty.fgb", Ok(0)),
    // Header count 0 means "unknown": read to the end.
    ("unknown_feature_count.fgb", Ok(1)),
    ("no_properties.fgb", Ok(1)),
    ("alldatatypes.fgb", Ok(1)),
    ("heterogeneous.fgb", Ok(3)),
    ("mp_overlapping.fgb", Ok(2)),
    ("binary_wkb.fgb", Ok(1)),
    // British National Grid, reprojected (crates/etl-geo/tests/crs_accuracy.rs).
    ("poly00.fgb", Ok(10)),
    ("poly01.fgb", Ok(10)),
    // A Triangle, read as a Polygon.
    ("surface_triangle.fgb", Ok(1)),
];

#[test]
fn every_peer_file_converts_or_fails_clearly() {
    let mut report = Vec::new();
    for (name, expected) in PEER_OUTCOMES {
        let bytes = peer(name);
        let (records, error) = read(&bytes);
        let rejected: Vec<String> = records
            .iter()
            .filter_map(|r| r.feature.as_ref().err().map(|e| e.reason.clone()))
            .collect();
        let outcome = match &error {
            Some(e) => Err(e.to_string()),
            None => Ok(records.len() - rejected.len()),
        };
        report.push(format!("{name}: {outcome:?} rejected {rejected:?}"));
        match (expected, &outcome) {
            (Ok(n), Ok(m)) if n == m => {}
            (Err(start), Err(text)) => assert!(text.starts_with(start), "{name}: {text}"),
            _ => panic!("{name}: expected {expected:?}, got {outcome:?}"),
        }
    }
    eprintln!("{}", report.join("\n"));
}

/// Records as a FeatureCollection; a rejected record becomes `{"rejected": reason}`.
fn collection(records: &[Record]) -> Value {
    let features: Vec<Value> = records
        .iter()
        .map(|r| match &r.feature {
            Ok(f) => feature_to_json(f),
            Err(rej) => json!({ "rejected": rej.reason, "line": r.line }),
        })
        .collect();
    json!({ "type": "FeatureCollection", "features": features })
}

/// Rounds every float to 9 decimals, so golden files do not depend on the last bits
/// of the projection arithmetic.
fn round(v: &Value) -> Value {
    match v {
        Value::Array(a) => Value::Array(a.iter().map(round).collect()),
        Value::Object(o) => Value::Object(o.iter().map(|(k, v)| (k.clone(), round(v))).collect()),
        Value::Number(n) if n.is_f64() => json!((n.as_f64().unwrap() * 1e9).round() / 1e9),
        other => other.clone(),
    }
}

/// Compares with `fixtures/formats/flatgeobuf/NAME.geojson`; `UPDATE_GOLDEN=1` rewrites it.
fn golden(name: &str, got: &Value) {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../fixtures/formats/flatgeobuf")
        .join(format!("{name}.geojson"));
    if std::env::var_os("UPDATE_GOLDEN").is_some() {
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        let mut text = serde_json::to_string_pretty(got).unwrap();
        text.push('\n');
        std::fs::write(&path, text).unwrap();
    }
    let want: Value = serde_json::from_slice(
        &std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display())),
    )
    .unwrap();
    assert_eq!(got, &want, "{name}: differs from {}", path.display());
}

/// The small peer files, converted, against the GeoJSON checked in for them: every
/// column type (Binary as base64, the Json column's `X` kept as a string since it is
/// not JSON), mixed geometry types, a Triangle as a Polygon, overlapping multipolygons.
#[test]
fn small_peer_files_match_golden() {
    for name in [
        "alldatatypes",
        "heterogeneous",
        "surface_triangle",
        "mp_overlapping",
        "unknown_feature_count",
        "no_properties",
        "binary_wkb",
    ] {
        let bytes = peer(&format!("{name}.fgb"));
        let (records, error) = read(&bytes);
        assert!(error.is_none(), "{name}: {error:?}");
        golden(name, &collection(&records));
    }
}

/// A FlatGeobuf written with the flatgeobuf crate's own writer.
fn write_fgb(crs: FgbCrs<'_>, build: impl FnOnce(&mut FgbWriter<'_>)) -> Vec<u8> {
    let mut w = FgbWriter::create_with_options(
        "test",
        GeometryType::Unknown,
        FgbWriterOptions {
            crs,
            write_index: false,
            detect_type: false,
            promote_to_multi: false,
            ..Default::default()
        },
    )
    .unwrap();
    build(&mut w);
    let mut out = Vec::new();
    w.write(&mut out).unwrap();
    out
}

fn ring(w: &mut FgbWriter<'_>, points: &[(f64, f64)], idx: usize) {
    w.linestring_begin(false, points.len(), idx).unwrap();
    for (i, &(x, y)) in points.iter().enumerate() {
        w.xy(x, y, i).unwrap();
    }
    w.linestring_end(false, idx).unwrap();
}

/// Web Mercator metres of a longitude/latitude.
fn merc(lon: f64, lat: f64) -> (f64, f64) {
    const R: f64 = 6_378_137.0;
    (
        R * lon.to_radians(),
        R * (std::f64::consts::FRAC_PI_4 + lat.to_radians() / 2.0)
            .tan()
            .ln(),
    )
}

fn square(x0: f64, y0: f64, size: f64) -> Vec<(f64, f64)> {
    [
        (x0, y0),
        (x0 + size, y0),
        (x0 + size, y0 + size),
        (x0, y0 + size),
        (x0, y0),
    ]
    .into_iter()
    .map(|(x, y)| merc(x, y))
    .collect()
}

fn mercator_file(code: i32) -> Vec<u8> {
    write_fgb(
        FgbCrs {
            code,
            ..Default::default()
        },
        |w| {
            w.add_column("name", ColumnType::String, |_, _| {});
            w.add_column("meta", ColumnType::Json, |_, _| {});
            w.add_column("size", ColumnType::Double, |_, _| {});
            w.add_column("when", ColumnType::DateTime, |_, _| {});
            // A polygon with a hole.
            w.property(0, "name", &ColumnValue::String("holed"))
                .unwrap();
            w.property(1, "meta", &ColumnValue::Json(r#"{"tags":["a","b"],"n":1}"#))
                .unwrap();
            w.property(2, "size", &ColumnValue::Double(2.5)).unwrap();
            w.property(3, "when", &ColumnValue::DateTime("2024-02-29T12:00:00Z"))
                .unwrap();
            w.polygon_begin(true, 2, 0).unwrap();
            ring(w, &square(0.0, 0.0, 10.0), 0);
            ring(w, &square(2.0, 2.0, 2.0), 1);
            w.polygon_end(true, 0).unwrap();
            w.feature_end(0).unwrap();
            // A multilinestring, with only some of the columns.
            w.property(0, "name", &ColumnValue::String("lines"))
                .unwrap();
            w.multilinestring_begin(2, 0).unwrap();
            ring(w, &[merc(-10.0, -10.0), merc(-20.0, -20.0)], 0);
            ring(
                w,
                &[merc(30.0, 60.0), merc(40.0, 70.0), merc(50.0, 80.0)],
                1,
            );
            w.multilinestring_end(0).unwrap();
            w.feature_end(1).unwrap();
            // A point at the edge of the projected world.
            w.property(0, "name", &ColumnValue::String("edge")).unwrap();
            w.point_begin(0).unwrap();
            w.xy(20_037_508.342_789_244, 0.0, 0).unwrap();
            w.point_end(0).unwrap();
            w.feature_end(2).unwrap();
        },
    )
}

#[test]
fn web_mercator_is_converted() {
    let (records, error) = read(&mercator_file(3857));
    assert!(error.is_none(), "{error:?}");
    let got = collection(&records);
    assert_eq!(
        got["features"][0]["properties"]["meta"],
        json!({"tags": ["a", "b"], "n": 1})
    );
    golden("web_mercator", &round(&got));
}

#[test]
fn other_crs_is_reprojected_and_an_unknown_one_refused_naming_the_code() {
    let (records, error) = read(&mercator_file(32633));
    assert!(error.is_none(), "{error:?}");
    assert_eq!(records.len(), 3);
    let (records, error) = read(&mercator_file(999_999));
    assert!(records.is_empty());
    let text = error.unwrap().to_string();
    assert!(
        text.starts_with("unsupported coordinate system in the FlatGeobuf header: EPSG:999999"),
        "{text}"
    );
    // No CRS at all: the header's envelope (metres) is not longitude/latitude, so the file is
    // refused whole, not read as degrees with the positions that do not fit rejected.
    let (records, error) = read(&mercator_file(0));
    assert!(records.is_empty());
    let text = error.unwrap().to_string();
    assert!(
        text.starts_with(
            "the FlatGeobuf header has no coordinate system, and its extent (-2226389.8158654715, \
             -2273030.92698769) – (20037508.342789244, 15538711.096309226) is not \
             longitude/latitude"
        ),
        "{text}"
    );
    assert!(
        text.ends_with("give its coordinate system (--s-srs)"),
        "{text}"
    );
}

#[test]
fn truncated_copies_are_read_errors() {
    for (name, step) in [("heterogeneous.fgb", 1), ("countries.fgb", 997)] {
        truncated(name, step);
    }
}

fn truncated(name: &str, step: usize) {
    let bytes = peer(name);
    let (records, error) = read(&bytes);
    assert!(error.is_none());
    let full = records.len();
    for cut in (0..bytes.len()).step_by(step) {
        let (records, error) = read(&bytes[..cut]);
        let error = error.unwrap_or_else(|| panic!("cut at {cut}: no error"));
        assert!(records.len() < full, "cut at {cut}");
        let text = error.to_string();
        assert!(
            text.contains("truncated") || text.contains("signature"),
            "cut at {cut}: {text}"
        );
    }
}

#[test]
fn corrupt_copies_are_read_errors_not_panics() {
    // No index and a feature count of 0 (read to the end).
    let bytes = peer("unknown_feature_count.fgb");
    // A feature size far past the data.
    let mut big = bytes.clone();
    let (_, _) = read(&big);
    let header_size = u32::from_le_bytes(big[8..12].try_into().unwrap()) as usize;
    let first = 12 + header_size;
    big[first..first + 4].copy_from_slice(&u32::MAX.to_le_bytes());
    let (_, error) = read(&big);
    assert!(error.is_some());
    // Garbage in the first feature's body.
    let mut garbage = bytes.clone();
    for b in &mut garbage[first + 4..first + 40] {
        *b = 0xFF;
    }
    let (_, error) = read(&garbage);
    let text = error.expect("corrupt feature is an error").to_string();
    assert!(text.contains("corrupt"), "{text}");
    // Not FlatGeobuf at all.
    let (_, error) = read(b"PK\x03\x04 not fgb");
    assert!(error.unwrap().to_string().contains("fgb signature"));
}

/// xorshift64*: deterministic, dependency-free noise.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
}

#[test]
fn random_mutations_never_panic() {
    let mut rng = Rng(0x9E37_79B9_7F4A_7C15);
    for name in [
        "alldatatypes.fgb",
        "heterogeneous.fgb",
        "unknown_feature_count.fgb",
        "surface_triangle.fgb",
        "poly01.fgb",
        "countries_nogeo.fgb",
    ] {
        let bytes = peer(name);
        for _ in 0..300 {
            let mut m = bytes.clone();
            for _ in 0..1 + rng.below(8) {
                let i = rng.below(m.len());
                match rng.below(4) {
                    0 => m[i] = rng.next() as u8,
                    1 => m[i] ^= 1 << rng.below(8),
                    2 => m[i] = [0, 0xFF, 0x7F, 0x80][rng.below(4)],
                    _ => m.truncate(i.max(1)),
                }
            }
            let _ = read(&m);
        }
    }
}
