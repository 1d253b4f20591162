//! Uploads in a projected coordinate system come out in WGS 84 where GDAL puts them: 10,000
//! NZTM2000 (EPSG:2193) points as a zipped Shapefile (with GDAL's ESRI `.prj`) and as a
//! FlatGeobuf (CRS in its header), both made with ogr2ogr (fixtures/crs/nztm/README.md), and as
//! a GeoJSON sequence of projected numbers with `--s-srs EPSG:2193`.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::collections::HashMap;
use std::io::Read;
use std::path::Path;

use serde_json::Value;
use support::*;

/// id -> (x, y, lon, lat) of the reference points (the ids are the rows' order).
fn reference() -> Vec<[f64; 4]> {
    let file = std::fs::File::open(repo("fixtures/crs/2193.csv.gz")).unwrap();
    let mut text = String::new();
    flate2::read::GzDecoder::new(file)
        .read_to_string(&mut text)
        .unwrap();
    text.lines()
        .skip(1)
        .map(|l| {
            let v: Vec<f64> = l.split(',').map(|f| f.parse().unwrap()).collect();
            [v[0], v[1], v[2], v[3]]
        })
        .collect()
}

/// Imports `input` into `out` (GeoJSON sequence only) and returns id -> (lon, lat).
fn import(input: &Path, out: &Path, extra: &[&str]) -> HashMap<u64, (f64, f64)> {
    let mut args = vec![
        "--input",
        input.to_str().unwrap(),
        "--output",
        out.to_str().unwrap(),
        "--outputs",
        "geojsonl",
    ];
    args.extend_from_slice(extra);
    let r = run(&args);
    r.assert_code(0);
    let name = input.file_stem().unwrap().to_str().unwrap();
    let text = std::fs::read_to_string(output_path(out, name, "geojsonl")).unwrap();
    text.lines()
        .map(|l| {
            let f: Value = serde_json::from_str(l).unwrap();
            let id = f["properties"]["id"]
                .as_u64()
                .or_else(|| f["properties"]["id"].as_str().and_then(|s| s.parse().ok()))
                .unwrap_or_else(|| panic!("no id in {f}"));
            // Where the input has names (the nztm_points files), they came with the point.
            if let Some(n) = f["properties"].get("name") {
                assert_eq!(n, &Value::from(format!("p{id}")), "{f}");
            }
            let c = &f["geometry"]["coordinates"];
            (id, (c[0].as_f64().unwrap(), c[1].as_f64().unwrap()))
        })
        .collect()
}

fn assert_where_gdal_puts_them(what: &str, got: &HashMap<u64, (f64, f64)>) {
    let reference = reference();
    assert_eq!(got.len(), reference.len(), "{what}: every point");
    let mut worst: f64 = 0.0;
    for (id, &[_, _, lon, lat]) in reference.iter().enumerate() {
        let (l, b) = got[&(id as u64)];
        worst = worst.max((l - lon).abs()).max((b - lat).abs());
    }
    assert!(worst < 1e-7, "{what}: {worst}° off GDAL");
}

#[test]
fn nztm_shapefile_flatgeobuf_geopackage_and_geoparquet_come_out_where_gdal_puts_them() {
    let dir = tempfile::tempdir().unwrap();
    for file in ["nztm_points.zip", "nztm_points.fgb", "nztm_points.gpkg"] {
        let out = dir.path().join(file.replace('.', "_"));
        let got = import(&repo(&format!("fixtures/crs/nztm/{file}")), &out, &[]);
        assert_where_gdal_puts_them(file, &got);
    }
    // GeoParquet (native points, EPSG:2193 as PROJJSON, four row groups), made by geopandas.
    let out = dir.path().join("nztm_parquet");
    let got = import(&repo("fixtures/formats/geoparquet/nztm.parquet"), &out, &[]);
    assert_where_gdal_puts_them("nztm.parquet", &got);
}

#[test]
fn projected_geojson_with_s_srs_comes_out_where_gdal_puts_them() {
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("nztm.geojsonl");
    let mut text = String::new();
    for (id, [x, y, _, _]) in reference().iter().enumerate() {
        text.push_str(&format!(
            "{{\"type\":\"Feature\",\"properties\":{{\"id\":{id}}},\"geometry\":{{\"type\":\"Point\",\"coordinates\":[{x},{y}]}}}}\n"
        ));
    }
    std::fs::write(&input, text).unwrap();
    let got = import(&input, &dir.path().join("out"), &["--s-srs", "EPSG:2193"]);
    assert_where_gdal_puts_them("geojsonl --s-srs EPSG:2193", &got);
    // Without it, projected numbers are not degrees: every feature is rejected.
    let r = run(&[
        "--input",
        input.to_str().unwrap(),
        "--output",
        dir.path().join("plain").to_str().unwrap(),
        "--outputs",
        "geojsonl",
    ]);
    assert_ne!(r.code, 0, "{}", r.stderr);
    // A definition that cannot be used is a usage error naming it.
    let r = run(&[
        "--input",
        input.to_str().unwrap(),
        "--output",
        dir.path().join("bad").to_str().unwrap(),
        "--s-srs",
        "EPSG:999999",
    ]);
    r.assert_code(64);
    assert!(r.stderr.contains("--s-srs EPSG:999999"), "{}", r.stderr);
}

#[test]
fn a_shapefile_in_a_coordinate_system_nobody_knows_is_refused_naming_it() {
    use std::io::Write;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("mystery.zip");
    let source = std::fs::File::open(repo("fixtures/crs/nztm/nztm_points.zip")).unwrap();
    let mut archive = zip::ZipArchive::new(source).unwrap();
    let mut out = zip::ZipWriter::new(std::fs::File::create(&path).unwrap());
    let options = zip::write::SimpleFileOptions::default();
    for i in 0..archive.len() {
        let mut entry = archive.by_index(i).unwrap();
        let name = entry.name().unwrap().to_string();
        let mut bytes = Vec::new();
        entry.read_to_end(&mut bytes).unwrap();
        if name.ends_with(".prj") {
            bytes = br#"PROJCS["Mystery_Grid",GEOGCS["GCS_Mystery",DATUM["D_Mystery",SPHEROID["Mystery",6377000.0,299.0]],PRIMEM["Greenwich",0.0],UNIT["Degree",0.0174532925199433]],PROJECTION["Transverse_Mercator"],PARAMETER["False_Easting",500000.0],PARAMETER["Central_Meridian",15.0],PARAMETER["Scale_Factor",0.9996],UNIT["Meter",1.0]]"#.to_vec();
        }
        out.start_file(name, options).unwrap();
        out.write_all(&bytes).unwrap();
    }
    out.finish().unwrap();
    let r = run(&[
        "--input",
        path.to_str().unwrap(),
        "--output",
        dir.path().join("out").to_str().unwrap(),
    ]);
    r.assert_code(65);
    assert!(
        r.stderr.contains("nztm_points.prj") && r.stderr.contains("Mystery_Grid"),
        "{}",
        r.stderr
    );
    assert!(
        files_in(&dir.path().join("out")).is_empty(),
        "nothing published: {:?}",
        files_in(&dir.path().join("out"))
    );
}
