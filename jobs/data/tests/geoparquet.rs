//! GeoParquet through the etl-data binary: files geopandas wrote (`fixtures/formats/geoparquet/`)
//! load as GeoJSON sequences (the NZTM points where GDAL puts them), a GeoJSON sequence written
//! as `.parquet` reads back as the same features (by our reader, and by pyarrow when there is
//! one), to a local file and to S3.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::io::Write;
use std::path::Path;

use etl_core::store::Location;
use serde_json::{Value, json};
use support::*;

fn geoparquet(name: &str) -> String {
    repo_fixture(&format!("formats/geoparquet/{name}"))
        .to_string_lossy()
        .into_owned()
}

fn lines(path: &Path) -> Vec<Value> {
    std::fs::read_to_string(path)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

#[test]
fn geoparquet_loads_as_a_geojson_sequence() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("nztm.geojsonl");
    run(&[
        "--input",
        &geoparquet("nztm.parquet"),
        "--output",
        out.to_str().unwrap(),
    ])
    .assert_code(0);
    let got = lines(&out);
    let reference = nztm_reference();
    assert_eq!(got.len(), reference.len());
    for f in &got {
        let id = f["properties"]["id"].as_u64().unwrap() as usize;
        let [_, _, lon, lat] = reference[id];
        let c = &f["geometry"]["coordinates"];
        let (x, y) = (c[0].as_f64().unwrap(), c[1].as_f64().unwrap());
        assert!(
            (x - lon).abs() < 1e-7 && (y - lat).abs() < 1e-7,
            "{id}: {x},{y} vs GDAL {lon},{lat}"
        );
        assert_eq!(f["properties"]["name"], format!("p{id}"));
    }

    let out = dir.path().join("points.geojsonl");
    run(&[
        "--input",
        &geoparquet("points_wkb.parquet"),
        "--output",
        out.to_str().unwrap(),
    ])
    .assert_code(0);
    let got = lines(&out);
    assert_eq!(got.len(), 4);
    assert_eq!(
        got[0]["geometry"],
        json!({"type": "Point", "coordinates": [174.77, -41.29]})
    );
    assert_eq!(got[0]["properties"]["seen"], "2024-02-29T12:34:56.789Z");
    assert_eq!(got[0]["properties"]["info"], json!({"k": 1, "v": "x"}));
}

#[test]
fn a_parquet_file_that_is_not_geoparquet_or_has_no_crs_is_refused_by_name() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out.geojsonl");
    let plain = run(&[
        "--input",
        &geoparquet("plain.parquet"),
        "--output",
        out.to_str().unwrap(),
    ]);
    plain.assert_code(65);
    assert!(
        plain
            .error()
            .contains("plain.parquet: a Parquet file without \"geo\" metadata: not GeoParquet"),
        "{}",
        plain.error()
    );
    assert!(!out.exists());
    let unknown = geoparquet("unknown_crs.parquet");
    let refused = run(&["--input", &unknown, "--output", out.to_str().unwrap()]);
    refused.assert_code(65);
    assert!(
        refused
            .error()
            .contains("its crs is null (unknown); name it with --s-srs"),
        "{}",
        refused.error()
    );
    run(&[
        "--input",
        &unknown,
        "--output",
        out.to_str().unwrap(),
        "--s-srs",
        "EPSG:2193",
    ])
    .assert_code(0);
    let [_, _, lon, lat] = nztm_reference()[0];
    let first = &lines(&out)[0]["geometry"]["coordinates"];
    assert!((first[0].as_f64().unwrap() - lon).abs() < 1e-7);
    assert!((first[1].as_f64().unwrap() - lat).abs() < 1e-7);
}

/// Features with every kind of property: the schema is inferred from them.
fn write_input(path: &Path) -> Vec<Value> {
    let mut features = Vec::new();
    for i in 0..300i64 {
        let geometry = match i % 3 {
            0 => json!({"type": "Point", "coordinates": [i as f64 * 0.5 - 70.0, 45.25]}),
            1 => json!({"type": "LineString", "coordinates": [[0.0, 0.0], [i as f64 * 0.25, 1.5]]}),
            _ => {
                json!({"type": "Polygon", "coordinates": [[[0.0, 0.0], [1.0, 0.0], [1.0, 1.0], [0.0, 0.0]]]})
            }
        };
        let mut properties = json!({
            "name": format!("f{i}"),
            "n": i,
            "v": i as f64 + 0.5,
            "ok": i % 2 == 0,
            "tags": ["a", i],
            "maybe": if i % 5 == 0 { Value::Null } else { json!(i * 2) },
        });
        if i == 250 {
            properties["extra"] = json!({"nested": [1, 2, 3]});
        }
        features.push(
            json!({"type": "Feature", "id": i, "geometry": geometry, "properties": properties}),
        );
    }
    let mut f = std::fs::File::create(path).unwrap();
    for feature in &features {
        writeln!(f, "{feature}").unwrap();
    }
    features
}

/// A feature as it reads back: a key absent from it is a null property.
fn with_nulls(mut f: Value, keys: &[&str]) -> Value {
    let props = f["properties"].as_object_mut().unwrap();
    for k in keys {
        props.entry(*k).or_insert(Value::Null);
    }
    f
}

fn assert_same(written: &[Value], back: &[Value]) {
    assert_eq!(back.len(), written.len());
    for (w, b) in written.iter().zip(back) {
        let w = with_nulls(w.clone(), &["extra"]);
        let mut b = b.clone();
        // Property order: the overflow column's keys come last; compare as maps.
        let sort = |v: &mut Value| {
            let m: std::collections::BTreeMap<String, Value> =
                serde_json::from_value(v["properties"].take()).unwrap();
            v["properties"] = serde_json::to_value(m).unwrap();
        };
        let mut w = w;
        sort(&mut w);
        sort(&mut b);
        assert_eq!(b, w);
    }
}

/// pyarrow's view of the file, when a Python with pyarrow is there (`TAK_PYARROW_PYTHON`, or
/// `python3`): row count, the `geo` metadata and the first name.
fn pyarrow_view(path: &Path) -> Option<Value> {
    let candidates = [
        std::env::var("TAK_PYARROW_PYTHON").ok(),
        Some("python3".into()),
    ];
    // geopandas, when it is there too, reads the file as GeoParquet: the first geometry as WKT.
    let script = "import json,sys,pyarrow.parquet as pq\nt=pq.read_table(sys.argv[1])\nv={'rows':t.num_rows,'geo':json.loads(t.schema.metadata[b'geo']),'name':t.column('name')[0].as_py(),'columns':t.column_names}\ntry:\n import geopandas\nexcept ImportError:\n geopandas=None\nif geopandas:\n v['wkt']=geopandas.read_parquet(sys.argv[1]).geometry[1].wkt\nprint(json.dumps(v))";
    for python in candidates.into_iter().flatten() {
        let Ok(out) = std::process::Command::new(&python)
            .args(["-c", script])
            .arg(path)
            .output()
        else {
            continue;
        };
        if out.status.success() {
            return Some(serde_json::from_slice(&out.stdout).unwrap());
        }
        if !String::from_utf8_lossy(&out.stderr).contains("No module named") {
            panic!(
                "pyarrow failed on {}: {}",
                path.display(),
                String::from_utf8_lossy(&out.stderr)
            );
        }
    }
    eprintln!("no Python with pyarrow (set TAK_PYARROW_PYTHON): the pyarrow check is skipped");
    None
}

#[test]
fn a_geojson_sequence_written_as_parquet_reads_back_the_same() {
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("in.geojsonl");
    let written = write_input(&input);
    let parquet = dir.path().join("out.parquet");
    let first = run(&[
        "--input",
        input.to_str().unwrap(),
        "--output",
        parquet.to_str().unwrap(),
    ]);
    first.assert_code(0);
    assert_eq!(first.count("written"), 300);
    assert_eq!(&std::fs::read(&parquet).unwrap()[..4], b"PAR1");
    let back = dir.path().join("back.geojsonl");
    run(&[
        "--input",
        parquet.to_str().unwrap(),
        "--output",
        back.to_str().unwrap(),
    ])
    .assert_code(0);
    assert_same(&written, &lines(&back));

    if let Some(view) = pyarrow_view(&parquet) {
        assert_eq!(view["rows"], 300);
        assert_eq!(view["name"], "f0");
        assert_eq!(view["geo"]["version"], "1.1.0");
        assert_eq!(view["geo"]["columns"]["geometry"]["encoding"], "WKB");
        assert_eq!(
            view["geo"]["columns"]["geometry"]["geometry_types"],
            json!(["LineString", "Point", "Polygon"])
        );
        if let Some(wkt) = view.get("wkt") {
            assert_eq!(wkt, "LINESTRING (0 0, 0.25 1.5)");
        }
        assert_eq!(
            view["columns"],
            json!([
                "geometry",
                "id",
                "name",
                "n",
                "v",
                "ok",
                "tags",
                "maybe",
                "extra",
                "properties_extra"
            ])
        );
    }
}

#[test]
fn geoparquet_to_s3_and_back() {
    let rt = rt();
    let (store, bucket) = s3_bucket(&rt, "etl-data-parquet");
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("in.geojsonl");
    let written = write_input(&input);
    let url = format!("s3://{bucket}/exports/out.geoparquet");
    run(&["--input", input.to_str().unwrap(), "--output", &url]).assert_code(0);
    let meta = rt
        .block_on(store.head(&Location::parse(&url).unwrap()))
        .unwrap();
    assert!(meta.size > 0);
    // Read from S3 in place, with ranged GETs (geoparquet_s3.rs tests them further).
    let back = dir.path().join("back.geojsonl");
    run(&["--input", &url, "--output", back.to_str().unwrap()]).assert_code(0);
    assert_same(&written, &lines(&back));
}
