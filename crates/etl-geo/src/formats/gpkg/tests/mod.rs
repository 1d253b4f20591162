//! The GeoPackage reader against GDAL-made fixtures (`fixtures/formats/gpkg/`), and helpers
//! that write small GeoPackages with rusqlite for the hostile cases in [`hostile`].

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod hostile;
mod paging;

use std::path::{Path, PathBuf};

use geo_types::Geometry;
use serde_json::{Value, json};

use super::{feature_tables, is_geopackage, open_layer};
use crate::error::ReadError;
use crate::feature::FeatureId;
use crate::formats::geojson::feature_to_json;
use crate::formats::{ReadOptions, Record};

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../fixtures/formats/gpkg")
        .join(name)
}

/// Every record of a layer, and the fatal error reading stopped on.
fn read_all(path: &Path, table: &str, opts: &ReadOptions) -> (Vec<Record>, Option<ReadError>) {
    let source = match open_layer(path, table, opts) {
        Ok(s) => s,
        Err(e) => return (Vec::new(), Some(e)),
    };
    let mut records = Vec::new();
    for r in source {
        match r {
            Ok(r) => records.push(r),
            Err(e) => return (records, Some(e)),
        }
    }
    (records, None)
}

/// Every feature of a layer that must read without a fatal error or a rejection.
fn features(path: &Path, table: &str) -> Vec<crate::feature::Feature> {
    let (records, error) = read_all(path, table, &ReadOptions::default());
    assert!(error.is_none(), "{table}: {error:?}");
    records
        .into_iter()
        .map(|r| {
            r.feature
                .unwrap_or_else(|e| panic!("{table}: rejected: {e}"))
        })
        .collect()
}

/// The message of a refusal; anything else fails the test.
fn refusal(e: Option<ReadError>) -> String {
    match e {
        Some(ReadError::Refused(m)) => {
            assert!(!m.contains('\n'), "not one line: {m:?}");
            m
        }
        other => panic!("expected a refusal, got {other:?}"),
    }
}

fn prefix(path: &Path) -> Vec<u8> {
    let mut bytes = std::fs::read(path).unwrap();
    bytes.truncate(100);
    bytes
}

#[test]
fn points_with_typed_attributes() {
    let path = fixture("points.gpkg");
    assert!(is_geopackage(&prefix(&path)));
    assert_eq!(feature_tables(&path).unwrap(), ["points"]);
    let (records, error) = read_all(&path, "points", &ReadOptions::default());
    assert!(error.is_none(), "{error:?}");
    assert_eq!(
        records
            .iter()
            .map(|r| (r.line, r.ordinal, r.layer))
            .collect::<Vec<_>>(),
        [(1, 0, 0), (2, 1, 0), (3, 2, 0)]
    );
    let features: Vec<Value> = records
        .iter()
        .map(|r| feature_to_json(r.feature.as_ref().unwrap()))
        .collect();
    assert_eq!(
        features,
        [
            json!({"type": "Feature", "id": 1,
                "geometry": {"type": "Point", "coordinates": [174.7762, -41.2865]},
                "properties": {"count": 42, "big": 9007199254740993i64, "ratio": 0.25,
                    "name": "Wellington", "active": true, "day": "2024-05-01",
                    "seen": "2024-05-01T12:30:00.000Z", "note": "first"}}),
            json!({"type": "Feature", "id": 2,
                "geometry": {"type": "Point", "coordinates": [172.6362, -43.5321]},
                "properties": {"count": -7, "big": -1, "ratio": 0.001,
                    "name": "Ōtautahi \"Christchurch\"", "active": false, "day": "1999-12-31",
                    "seen": "1999-12-31T23:59:59.500Z", "note": null}}),
            json!({"type": "Feature", "id": 3, "geometry": null,
                "properties": {"count": null, "big": null, "ratio": null, "name": null,
                    "active": null, "day": null, "seen": null, "note": null}}),
        ]
    );
    // Property order is column order (serde_json keeps insertion order).
    let keys: Vec<&String> = features[0]["properties"]
        .as_object()
        .unwrap()
        .keys()
        .collect();
    assert_eq!(
        keys,
        [
            "count", "big", "ratio", "name", "active", "day", "seen", "note"
        ]
    );
    let first = records[0].feature.as_ref().unwrap();
    assert_eq!(first.id, Some(FeatureId::Int(1)));
}

/// Positions of a GeoJSON geometry's `coordinates`, x and y only, flattened in order.
fn positions(coordinates: &Value, out: &mut Vec<(f64, f64)>) {
    let items = coordinates.as_array().expect("coordinates are arrays");
    if items.first().is_some_and(Value::is_number) {
        out.push((items[0].as_f64().unwrap(), items[1].as_f64().unwrap()));
    } else {
        for item in items {
            positions(item, out);
        }
    }
}

/// The shape of nested coordinate arrays (lengths at every level but the positions).
fn shape(coordinates: &Value) -> Value {
    let items = coordinates.as_array().unwrap();
    if items.first().is_some_and(Value::is_number) {
        Value::Null
    } else {
        Value::Array(items.iter().map(shape).collect())
    }
}

#[test]
fn nztm_layers_land_where_gdal_puts_them() {
    let path = fixture("nztm.gpkg");
    assert!(is_geopackage(&prefix(&path)));
    for layer in ["roads", "parcels"] {
        let expected: Value = serde_json::from_str(
            &std::fs::read_to_string(fixture(&format!("nztm_{layer}.4326.geojson"))).unwrap(),
        )
        .unwrap();
        let expected = expected["features"].as_array().unwrap();
        let got = features(&path, layer);
        assert_eq!(got.len(), expected.len(), "{layer}");
        for (i, (g, e)) in got.iter().zip(expected).enumerate() {
            let g = feature_to_json(g);
            assert_eq!(g["id"], json!(i + 1), "{layer} {i}");
            assert_eq!(g["properties"], e["properties"], "{layer} {i}");
            assert_eq!(g["geometry"]["type"], e["geometry"]["type"], "{layer} {i}");
            let (gc, ec) = (&g["geometry"]["coordinates"], &e["geometry"]["coordinates"]);
            assert_eq!(shape(gc), shape(ec), "{layer} {i}: parts and rings");
            let (mut gp, mut ep) = (Vec::new(), Vec::new());
            positions(gc, &mut gp);
            positions(ec, &mut ep);
            assert_eq!(gp.len(), ep.len());
            for (a, b) in gp.iter().zip(&ep) {
                assert!(
                    (a.0 - b.0).abs() < 1e-7 && (a.1 - b.1).abs() < 1e-7,
                    "{layer} {i}: {a:?} vs GDAL {b:?}"
                );
            }
        }
    }
    // The hole survived as a hole.
    let parcels = features(&path, "parcels");
    match &parcels[0].geometry {
        Some(Geometry::Polygon(p)) => assert_eq!(p.interiors().len(), 1),
        other => panic!("{other:?}"),
    }
}

#[test]
fn two_layers_listed_in_contents_order() {
    // `roads` was added before `parcels` (so not alphabetical); `notes` is an attributes
    // table.
    assert_eq!(
        feature_tables(&fixture("nztm.gpkg")).unwrap(),
        ["roads", "parcels"]
    );
}

#[test]
fn a_source_crs_overrides_the_layers() {
    // Read as if the NZTM numbers were degrees: every position is out of range.
    let opts = ReadOptions {
        source_crs: Some(crate::crs::Crs::wgs84()),
        ..ReadOptions::default()
    };
    let (records, error) = read_all(&fixture("nztm.gpkg"), "roads", &opts);
    assert!(error.is_none());
    assert_eq!(records.len(), 2);
    for r in records {
        let reason = r.feature.unwrap_err().reason;
        assert!(reason.contains("out of range"), "{reason}");
    }
}

// ---------------------------------------------------------------------------
// Writing GeoPackages for the hostile tests.
// ---------------------------------------------------------------------------

/// 'GPKG' as the big-endian application_id.
const GPKG_APPLICATION_ID: i32 = 0x4750_4B47;

/// A new GeoPackage in a temporary folder: the three gpkg_* tables a feature layer needs,
/// with the standard's srs rows -1, 0 and 4326. `build` adds the rest.
fn write_gpkg(build: impl FnOnce(&rusqlite::Connection)) -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("test.gpkg");
    let conn = rusqlite::Connection::open(&path).unwrap();
    conn.pragma_update(None, "application_id", GPKG_APPLICATION_ID)
        .unwrap();
    conn.execute_batch(
        "CREATE TABLE gpkg_spatial_ref_sys (srs_name TEXT NOT NULL, srs_id INTEGER PRIMARY KEY,
            organization TEXT NOT NULL, organization_coordsys_id INTEGER NOT NULL,
            definition TEXT NOT NULL, description TEXT);
         INSERT INTO gpkg_spatial_ref_sys VALUES
            ('Undefined Cartesian SRS', -1, 'NONE', -1, 'undefined', NULL),
            ('Undefined geographic SRS', 0, 'NONE', 0, 'undefined', NULL),
            ('WGS 84 geodetic', 4326, 'EPSG', 4326, 'GEOGCS[\"WGS 84\"]', NULL);
         CREATE TABLE gpkg_contents (table_name TEXT NOT NULL PRIMARY KEY,
            data_type TEXT NOT NULL, identifier TEXT, description TEXT DEFAULT '',
            last_change DATETIME, min_x DOUBLE, min_y DOUBLE, max_x DOUBLE, max_y DOUBLE,
            srs_id INTEGER);
         CREATE TABLE gpkg_geometry_columns (table_name TEXT NOT NULL,
            column_name TEXT NOT NULL, geometry_type_name TEXT NOT NULL,
            srs_id INTEGER NOT NULL, z TINYINT NOT NULL, m TINYINT NOT NULL,
            CONSTRAINT pk_geom_cols PRIMARY KEY (table_name, column_name));",
    )
    .unwrap();
    build(&conn);
    drop(conn);
    (dir, path)
}

/// Creates a feature table `name` (`columns` is the SQL column list) registered in
/// gpkg_contents and gpkg_geometry_columns with geometry column `geom` in `srs_id`.
fn add_layer(conn: &rusqlite::Connection, name: &str, columns: &str, srs_id: i64) {
    conn.execute_batch(&format!("CREATE TABLE {} ({columns})", ident(name)))
        .unwrap();
    register(conn, name, srs_id);
}

/// `name` as an SQL identifier, written independently of the reader's quoting.
fn ident(name: &str) -> String {
    let mut out = String::from('"');
    for c in name.chars() {
        if c == '"' {
            out.push('"');
        }
        out.push(c);
    }
    out.push('"');
    out
}

/// Registers `name` as a feature table with geometry column `geom`.
fn register(conn: &rusqlite::Connection, name: &str, srs_id: i64) {
    conn.execute(
        "INSERT INTO gpkg_contents (table_name, data_type, srs_id) VALUES (?1, 'features', ?2)",
        rusqlite::params![name, srs_id],
    )
    .unwrap();
    conn.execute(
        "INSERT INTO gpkg_geometry_columns VALUES (?1, 'geom', 'GEOMETRY', ?2, 0, 0)",
        rusqlite::params![name, srs_id],
    )
    .unwrap();
}

/// A little-endian GeoPackage blob header (srs 4326, no envelope) followed by `wkb`.
fn gp(wkb: &[u8]) -> Vec<u8> {
    let mut b = vec![b'G', b'P', 0, 1];
    b.extend_from_slice(&4326i32.to_le_bytes());
    b.extend_from_slice(wkb);
    b
}

/// Little-endian 2D WKB point.
fn wkb_point(x: f64, y: f64) -> Vec<u8> {
    let mut b = vec![1];
    b.extend_from_slice(&1u32.to_le_bytes());
    b.extend_from_slice(&x.to_le_bytes());
    b.extend_from_slice(&y.to_le_bytes());
    b
}

#[test]
fn a_catalog_that_is_a_never_ending_view_is_refused_at_once() {
    let (_dir, path) = write_gpkg(|conn| {
        conn.execute_batch(
            "DROP TABLE gpkg_contents;
             CREATE VIEW gpkg_contents AS
               WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n)
               SELECT 'features' AS data_type, 't' || i AS table_name FROM n;",
        )
        .unwrap();
    });
    let e = feature_tables(&path).unwrap_err();
    assert!(
        matches!(e, ReadError::Refused(_)) && e.to_string().contains("gpkg_contents"),
        "{e}"
    );
}
