//! Files GDAL wrote, or read for us, compared with what tak-etl reads from them:
//! - MultiPatch Shapefiles (`fixtures/formats/shapefile/multipatch/`: one written by ogr2ogr,
//!   one with the triangle strips, fans and ring kinds GDAL's writer does not produce) against
//!   GDAL's reading of them;
//! - curves, surfaces and triangles in a GeoPackage ogr2ogr wrote
//!   (`fixtures/formats/gpkg/curves.gpkg`) against GDAL's own linearisation;
//! - layers without a coordinate system ogr2ogr wrote as Shapefile, FlatGeobuf and GeoPackage
//!   (`fixtures/formats/nocrs/`): a local grid is refused whole, longitudes/latitudes are read;
//! - a KMZ whose document only links to a `.kml` packed beside it, read as LIBKML reads it.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::{Path, PathBuf};

use etl_geo::{ReadError, Record, Repair, Upload, UploadOptions, feature_to_json};
use serde_json::Value;

fn fixture(rel: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../fixtures/formats")
        .join(rel)
}

fn read(path: &Path) -> Result<Vec<Record>, ReadError> {
    let scratch = tempfile::tempdir().unwrap();
    let stem = path.file_stem().unwrap().to_string_lossy().into_owned();
    Upload::open(path, &stem, scratch.path(), &UploadOptions::default())?.collect()
}

fn features(path: &Path) -> Vec<Value> {
    serde_json::from_slice::<Value>(&std::fs::read(path).unwrap()).unwrap()["features"]
        .as_array()
        .unwrap()
        .clone()
}

/// A geometry as GeoJSON, single types promoted to their multi type (as the references are).
fn multi(g: &Value) -> Value {
    let t = g["type"].as_str().unwrap();
    match t {
        "LineString" | "Polygon" | "Point" => serde_json::json!({
            "type": format!("Multi{t}"),
            "coordinates": [g["coordinates"].clone()]
        }),
        _ => g.clone(),
    }
}

/// A ring or line as positions, consecutive duplicates collapsed.
fn positions(v: &Value) -> Vec<(f64, f64)> {
    let mut out: Vec<(f64, f64)> = Vec::new();
    for p in v.as_array().unwrap() {
        let c = (p[0].as_f64().unwrap(), p[1].as_f64().unwrap());
        if out.last() != Some(&c) {
            out.push(c);
        }
    }
    out
}

/// GDAL's MultiPolygon as rings of positions, without the polygons that collapse in two
/// dimensions (fewer than three distinct positions), which tak-etl drops as a repair.
fn polygons_2d(mp: &Value) -> Vec<Vec<Vec<(f64, f64)>>> {
    mp["coordinates"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| {
            p.as_array()
                .unwrap()
                .iter()
                .map(positions)
                .collect::<Vec<_>>()
        })
        .filter(|rings: &Vec<Vec<(f64, f64)>>| rings[0].len() >= 4)
        .collect()
}

#[test]
fn multipatch_reads_as_gdal_does() {
    for name in ["gdal", "parts"] {
        let dir = fixture("shapefile/multipatch");
        let ours = read(&dir.join(format!("{name}.shp"))).unwrap();
        let gdal = features(&dir.join(format!("{name}.geojson")));
        assert_eq!(ours.len(), gdal.len(), "{name}");
        for (record, want) in ours.iter().zip(&gdal) {
            let label = format!("{name}: {}", want["properties"]["name"]);
            let f = record
                .feature
                .as_ref()
                .unwrap_or_else(|r| panic!("{label}: {r}"));
            let got = multi(&feature_to_json(f)["geometry"]);
            assert_eq!(got["type"], "MultiPolygon", "{label}");
            assert_eq!(polygons_2d(&got), polygons_2d(&want["geometry"]), "{label}");
            assert_eq!(f.properties["name"], want["properties"]["name"], "{label}");
        }
    }
    // The wall of the polyhedral surface is a line seen from above: dropped, and said so.
    let ours = read(&fixture("shapefile/multipatch/gdal.shp")).unwrap();
    assert!(ours[1].repairs.contains(Repair::PartsDropped));
    assert!(ours[0].repairs.is_empty());
    // An unclosed first ring is closed, as GDAL closes it.
    let parts = read(&fixture("shapefile/multipatch/parts.shp")).unwrap();
    assert!(parts[3].repairs.contains(Repair::RingClosed));
}

/// Distance from `p` to the polyline `line`.
fn distance(p: (f64, f64), line: &[(f64, f64)]) -> f64 {
    line.windows(2)
        .map(|w| {
            let ((ax, ay), (bx, by)) = (w[0], w[1]);
            let (dx, dy) = (bx - ax, by - ay);
            let len2 = dx * dx + dy * dy;
            let t = if len2 == 0.0 {
                0.0
            } else {
                (((p.0 - ax) * dx + (p.1 - ay) * dy) / len2).clamp(0.0, 1.0)
            };
            ((p.0 - ax - t * dx).powi(2) + (p.1 - ay - t * dy).powi(2)).sqrt()
        })
        .fold(f64::INFINITY, f64::min)
}

/// Every line (or ring) of a multi-geometry.
fn lines(g: &Value) -> Vec<Vec<(f64, f64)>> {
    let c = g["coordinates"].as_array().unwrap();
    match g["type"].as_str().unwrap() {
        "MultiLineString" => c.iter().map(positions).collect(),
        "MultiPolygon" => c
            .iter()
            .flat_map(|p| p.as_array().unwrap().iter().map(positions))
            .collect(),
        other => panic!("{other}"),
    }
}

/// Our linearisation and GDAL's are both within a 4° step's chord of the true arc (a sagitta of
/// 0.06 % of the radius; the radii here are at most a degree), so each lies within 0.002° of the
/// other, with the same parts and the same ends.
#[test]
fn gpkg_curves_are_linearised_like_gdal() {
    let ours = read(&fixture("gpkg/curves.gpkg")).unwrap();
    let gdal = features(&fixture("gpkg/curves.linear.geojson"));
    assert_eq!(ours.len(), gdal.len());
    for (record, want) in ours.iter().zip(&gdal) {
        let label = want["properties"]["name"].to_string();
        let f = record
            .feature
            .as_ref()
            .unwrap_or_else(|r| panic!("{label}: {r}"));
        let got = multi(&feature_to_json(f)["geometry"]);
        assert_eq!(got["type"], want["geometry"]["type"], "{label}");
        let (ours, theirs) = (lines(&got), lines(&want["geometry"]));
        assert_eq!(ours.len(), theirs.len(), "{label}: parts");
        for (a, b) in ours.iter().zip(&theirs) {
            let close = |p: &(f64, f64), q: &(f64, f64)| {
                (p.0 - q.0).abs() < 1e-9 && (p.1 - q.1).abs() < 1e-9
            };
            assert!(close(&a[0], &b[0]), "{label}: starts {:?} {:?}", a[0], b[0]);
            assert!(
                close(a.last().unwrap(), b.last().unwrap()),
                "{label}: ends differ"
            );
            for p in a {
                assert!(distance(*p, b) < 2e-3, "{label}: {p:?} is off GDAL's line");
            }
            for p in b {
                assert!(distance(*p, a) < 2e-3, "{label}: GDAL's {p:?} is off ours");
            }
        }
    }
}

#[test]
fn layers_without_crs_are_decided_by_their_extent() {
    for ext in ["shp", "fgb", "gpkg"] {
        let grid = fixture(&format!("nocrs/grid.{ext}"));
        let err = read(&grid).unwrap_err();
        let text = err.to_string();
        assert!(matches!(err, ReadError::Refused(_)), "{ext}: {text}");
        assert!(
            text.contains("(100.5, 50.25) – (2500.75, 300) is not longitude/latitude")
                && text.ends_with("give its coordinate system (--s-srs)"),
            "{ext}: {text}"
        );
        let lonlat = read(&fixture(&format!("nocrs/lonlat.{ext}"))).unwrap();
        assert_eq!(lonlat.len(), 2, "{ext}");
        let f = lonlat[0].feature.as_ref().unwrap();
        assert_eq!(
            feature_to_json(f)["geometry"]["coordinates"],
            serde_json::json!([174.776, -41.289]),
            "{ext}"
        );
    }
}

/// The OGC's super-overlay KMZ: `doc.kml` holds only a NetworkLink to `0/0/0.kml` in the
/// archive. LIBKML makes the linked file a layer (one GroundOverlay); so do we, and the linked
/// file is no longer listed as an asset.
#[test]
fn kmz_network_links_to_packed_files_are_layers() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../fixtures/fidelity/ogc-kml/small_world.kmz");
    let scratch = tempfile::tempdir().unwrap();
    let upload = Upload::open(
        &path,
        "small_world",
        scratch.path(),
        &UploadOptions::default(),
    )
    .unwrap();
    assert_eq!(upload.layers, ["small_world", "0"]);
    let assets: Vec<String> = upload.assets.iter().map(|a| a.name.clone()).collect();
    assert!(!assets.iter().any(|a| a.ends_with(".kml")), "{assets:?}");
    assert!(assets.contains(&"0/0/0.jpg".to_owned()), "{assets:?}");
    let records: Vec<Record> = upload.collect::<Result<_, _>>().unwrap();
    assert_eq!(records.len(), 1);
    assert_eq!(records[0].layer, 1);
    let f = records[0].feature.as_ref().unwrap();
    assert_eq!(f.properties["@geometry-type"], "groundoverlay");
    assert_eq!(f.properties["icon"], "0.jpg");
}
