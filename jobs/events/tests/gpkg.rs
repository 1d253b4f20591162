//! A GeoPackage upload: every feature table is a layer (or those `--layer` names), its rows
//! in WGS 84 where GDAL puts them, in the GeoJSON sequence and the tiles.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use serde_json::Value;
use support::*;

fn lines(dir: &std::path::Path, name: &str) -> Vec<Value> {
    std::fs::read_to_string(output_path(dir, name, "geojsonl"))
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

/// Every position of a GeoJSON geometry, flattened to (lon, lat).
fn positions(g: &Value, out: &mut Vec<(f64, f64)>) {
    match g {
        Value::Array(a) if a.first().is_some_and(Value::is_number) => {
            out.push((a[0].as_f64().unwrap(), a[1].as_f64().unwrap()))
        }
        Value::Array(a) => a.iter().for_each(|v| positions(v, out)),
        _ => {}
    }
}

#[test]
fn a_geopackage_imports_every_feature_table_where_gdal_puts_it() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out");
    let r = run(&[
        "--input",
        repo("fixtures/formats/gpkg/nztm.gpkg").to_str().unwrap(),
        "--output",
        out.to_str().unwrap(),
    ]);
    r.assert_code(0);
    let manifest = check_outputs(&out, "nztm");
    assert_eq!(manifest["format"], "gpkg", "{manifest}");
    let got = lines(&out, "nztm");
    for layer in ["roads", "parcels"] {
        let want: Value = serde_json::from_slice(
            &std::fs::read(repo(&format!(
                "fixtures/formats/gpkg/nztm_{layer}.4326.geojson"
            )))
            .unwrap(),
        )
        .unwrap();
        let mine: Vec<&Value> = got
            .iter()
            .filter(|f| f["properties"]["layer"] == layer)
            .collect();
        let want = want["features"].as_array().unwrap();
        assert_eq!(mine.len(), want.len(), "{layer}: {got:?}");
        for (m, w) in mine.iter().zip(want) {
            let (mut a, mut b) = (Vec::new(), Vec::new());
            positions(&m["geometry"]["coordinates"], &mut a);
            positions(&w["geometry"]["coordinates"], &mut b);
            assert_eq!(a.len(), b.len(), "{layer}");
            for ((x, y), (u, v)) in a.iter().zip(&b) {
                assert!(
                    (x - u).abs() < 1e-7 && (y - v).abs() < 1e-7,
                    "{layer}: {x},{y} vs {u},{v}"
                );
            }
        }
    }
    // --layer picks; a name the file does not have is refused naming what it has.
    let one = dir.path().join("one");
    run(&[
        "--input",
        repo("fixtures/formats/gpkg/nztm.gpkg").to_str().unwrap(),
        "--output",
        one.to_str().unwrap(),
        "--layer",
        "parcels",
    ])
    .assert_code(0);
    let parcels = lines(&one, "nztm");
    assert_eq!(parcels.len(), 2);
    // One layer: the features are the parcels (polygons), without a layer property.
    assert!(
        parcels.iter().all(|f| f["geometry"]["type"] == "Polygon"),
        "{parcels:?}"
    );
    let r = run(&[
        "--input",
        repo("fixtures/formats/gpkg/nztm.gpkg").to_str().unwrap(),
        "--output",
        dir.path().join("none").to_str().unwrap(),
        "--layer",
        "rivers",
    ]);
    r.assert_code(65);
    assert!(r.stderr.contains("roads, parcels"), "{}", r.stderr);
}

/// The input flags are the same as etl-data's and etl-pmtiles': `--format` reads an upload
/// whose content does not say what it is, with the CSV column flags.
#[test]
fn format_and_csv_flags_read_an_unnamed_csv() {
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("upload.bin");
    std::fs::write(&input, "E,N,name\n174.77,-41.29,wgtn\n").unwrap();
    let out = dir.path().join("out");
    let (input, out_s) = (input.to_str().unwrap(), out.to_str().unwrap());
    // Without --format the bytes do not say what they are.
    let r = run(&["--input", input, "--output", out_s]);
    assert_eq!(r.code, 65, "{}", r.stderr);
    run(&[
        "--input",
        input,
        "--output",
        out_s,
        "--format",
        "csv",
        "--csv-lon",
        "E",
        "--csv-lat",
        "N",
    ])
    .assert_code(0);
    let got = lines(&out, "upload");
    assert_eq!(got.len(), 1, "{got:?}");
    assert_eq!(got[0]["geometry"]["coordinates"][0], 174.77);
    assert_eq!(got[0]["properties"]["name"], "wgtn");
}
