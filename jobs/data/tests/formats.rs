//! etl-data reads what etl-events reads: a zipped Shapefile, a loose Shapefile set (its
//! `.dbf`/`.prj` beside it, not read as inputs of their own), a GeoPackage (every feature
//! table, each feature saying its layer) and a zip on S3 (copied to a temporary file first),
//! in their own coordinate systems, into WGS 84 where GDAL puts them.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::io::Write;

use etl_core::store::Location;
use serde_json::Value;
use support::*;

/// (lon, lat) of the reference points, by id.
fn reference() -> Vec<(f64, f64)> {
    nztm_reference().iter().map(|p| (p[2], p[3])).collect()
}

fn load(input: &str, out: &std::path::Path) -> Vec<Value> {
    run(&["--input", input, "--output", out.to_str().unwrap()]).assert_code(0);
    features(out)
}

fn assert_nztm_points(what: &str, features: &[Value]) {
    let reference = reference();
    assert_eq!(features.len(), reference.len(), "{what}");
    for f in features {
        let id = f["properties"]["id"]
            .as_u64()
            .or_else(|| f["properties"]["id"].as_str().and_then(|s| s.parse().ok()))
            .unwrap_or_else(|| panic!("{what}: no id in {f}"));
        let (lon, lat) = reference[id as usize];
        let c = &f["geometry"]["coordinates"];
        let (x, y) = (c[0].as_f64().unwrap(), c[1].as_f64().unwrap());
        assert!(
            (x - lon).abs() < 1e-7 && (y - lat).abs() < 1e-7,
            "{what}: feature {id} at {x},{y}, GDAL {lon},{lat}"
        );
        assert_eq!(f["properties"]["name"], format!("p{id}"), "{what}");
    }
}

#[test]
fn zipped_and_loose_shapefiles_and_geopackages_load_in_wgs84() {
    let dir = tempfile::tempdir().unwrap();
    let zip = repo_fixture("crs/nztm/nztm_points.zip");
    let got = load(zip.to_str().unwrap(), &dir.path().join("zip.geojsonl"));
    assert_nztm_points("zipped shapefile", &got);

    // The same set unzipped into a directory: the directory is the input.
    let set = dir.path().join("set");
    std::fs::create_dir(&set).unwrap();
    let mut archive = zip::ZipArchive::new(std::fs::File::open(&zip).unwrap()).unwrap();
    archive.extract(&set).unwrap();
    let got = load(set.to_str().unwrap(), &dir.path().join("loose.geojsonl"));
    assert_nztm_points("loose shapefile", &got);

    let gpkg = repo_fixture("formats/gpkg/nztm.gpkg");
    let got = load(gpkg.to_str().unwrap(), &dir.path().join("gpkg.geojsonl"));
    let layers: Vec<&str> = got
        .iter()
        .map(|f| f["properties"]["layer"].as_str().unwrap())
        .collect();
    assert_eq!(layers, ["roads", "roads", "parcels", "parcels"]);
    let want: Value = serde_json::from_slice(
        &std::fs::read(repo_fixture("formats/gpkg/nztm_parcels.4326.geojson")).unwrap(),
    )
    .unwrap();
    let ring = |f: &Value| f["geometry"]["coordinates"][0][0].clone();
    let (a, b) = (ring(&got[2]), ring(&want["features"][0]));
    assert!(
        (a[0].as_f64().unwrap() - b[0].as_f64().unwrap()).abs() < 1e-7
            && (a[1].as_f64().unwrap() - b[1].as_f64().unwrap()).abs() < 1e-7,
        "{a} vs {b}"
    );
}

#[test]
fn layer_picks_geopackage_tables_and_format_forces_text_formats() {
    let dir = tempfile::tempdir().unwrap();
    let gpkg = repo_fixture("formats/gpkg/nztm.gpkg");
    let gpkg = gpkg.to_str().unwrap();
    // One layer: its features only, without a `layer` property.
    let out = dir.path().join("parcels.geojsonl");
    run(&[
        "--input",
        gpkg,
        "--output",
        out.to_str().unwrap(),
        "--layer",
        "parcels",
    ])
    .assert_code(0);
    let got: Vec<Value> = features(&out);
    assert_eq!(got.len(), 2);
    assert!(
        got.iter()
            .all(|f| f["geometry"]["type"] == "Polygon" && f["properties"].get("layer").is_none()),
        "{got:?}"
    );
    // A name the file does not have: refused naming those it has, nothing written.
    let none = dir.path().join("none.geojsonl");
    let r = run(&[
        "--input",
        gpkg,
        "--output",
        none.to_str().unwrap(),
        "--layer",
        "rivers",
    ]);
    r.assert_code(65);
    assert!(r.error().contains("roads, parcels"), "{}", r.error());
    assert!(!none.exists());
    // On anything but a GeoPackage --layer would be ignored: it is refused instead.
    let zip = repo_fixture("crs/nztm/nztm_points.zip");
    let r = run(&[
        "--input",
        zip.to_str().unwrap(),
        "--output",
        none.to_str().unwrap(),
        "--layer",
        "parcels",
    ]);
    r.assert_code(65);
    assert!(
        r.error().contains("picks the tables of a GeoPackage"),
        "{}",
        r.error()
    );
    let geojson = repo_fixture("data/sites.geojson");
    let r = run(&[
        "--input",
        geojson.to_str().unwrap(),
        "--output",
        none.to_str().unwrap(),
        "--layer",
        "parcels",
    ]);
    r.assert_code(65);
    assert!(!none.exists());

    // A CSV under a name that says nothing: --format csv reads it, and the CSV column flags
    // come from the shared input flags.
    let odd = dir.path().join("points.dat");
    std::fs::write(&odd, "E,N,name\n174.77,-41.29,wgtn\n").unwrap();
    let out = dir.path().join("csv.geojsonl");
    let r = run(&[
        "--input",
        odd.to_str().unwrap(),
        "--output",
        out.to_str().unwrap(),
        "--format",
        "csv",
        "--csv-lon",
        "E",
        "--csv-lat",
        "N",
    ]);
    r.assert_code(0);
    let line: Value = serde_json::from_str(std::fs::read_to_string(&out).unwrap().trim()).unwrap();
    assert_eq!(line["geometry"]["coordinates"][0], 174.77);
    assert_eq!(line["properties"]["name"], "wgtn");
    let r = run(&[
        "--input",
        odd.to_str().unwrap(),
        "--output",
        out.to_str().unwrap(),
        "--format",
        "dxf",
    ]);
    r.assert_code(64);
    assert!(r.stderr.contains("--format"), "{}", r.stderr);
}

#[test]
fn a_zip_on_s3_is_copied_and_read() {
    let rt = rt();
    let (store, bucket) = s3_bucket(&rt, "etl-data-zip");
    let url = format!("s3://{bucket}/in/nztm_points.zip");
    let bytes = std::fs::read(repo_fixture("crs/nztm/nztm_points.zip")).unwrap();
    rt.block_on(async {
        let mut w = store.writer(&Location::parse(&url).unwrap()).await.unwrap();
        tokio::task::spawn_blocking(move || {
            w.write_all(&bytes).unwrap();
            w.commit().unwrap();
        })
        .await
        .unwrap();
    });
    let dir = tempfile::tempdir().unwrap();
    let got = load(&url, &dir.path().join("s3.geojsonl"));
    assert_nztm_points("zip on S3", &got);
}

#[test]
fn a_loose_shapefile_whose_dbf_changed_is_loaded_again() {
    let dir = tempfile::tempdir().unwrap();
    let set = dir.path().join("set");
    std::fs::create_dir(&set).unwrap();
    let zip = repo_fixture("crs/nztm/nztm_points.zip");
    zip::ZipArchive::new(std::fs::File::open(&zip).unwrap())
        .unwrap()
        .extract(&set)
        .unwrap();
    let shp = set.join("nztm_points.shp");
    let table = unique("loose_shp");
    let args = [
        "--input",
        shp.to_str().unwrap(),
        "--output",
        &database_url(),
        "--table",
        &table,
    ];
    let first = run(&args);
    first.assert_code(0);
    assert_eq!(first.count("written"), 10_000);
    let again = run(&args);
    again.assert_code(0);
    assert_eq!(again.status(), "skipped", "{}", again.stderr);
    // Only the attributes change (a new .dbf, same bytes, newer file): a new version.
    let dbf = set.join("nztm_points.dbf");
    let bytes = std::fs::read(&dbf).unwrap();
    std::fs::write(&dbf, bytes).unwrap();
    std::fs::File::options()
        .write(true)
        .open(&dbf)
        .unwrap()
        .set_modified(std::time::SystemTime::now() + std::time::Duration::from_secs(60))
        .unwrap();
    let changed = run(&args);
    changed.assert_code(0);
    assert_eq!(changed.count("written"), 10_000, "{}", changed.stderr);
}

#[test]
fn limit_and_promote_to_multi_shape_what_is_loaded() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("few.geojsonl");
    let zip = repo_fixture("crs/nztm/nztm_points.zip");
    run(&[
        "--input",
        zip.to_str().unwrap(),
        "--output",
        out.to_str().unwrap(),
        "--limit",
        "25",
        "--promote-to-multi",
    ])
    .assert_code(0);
    let features: Vec<Value> = support::features(&out);
    assert_eq!(features.len(), 25);
    let reference = reference();
    for (i, f) in features.iter().enumerate() {
        assert_eq!(f["geometry"]["type"], "MultiPoint", "{f}");
        let c = &f["geometry"]["coordinates"][0];
        let (lon, lat) = reference[i];
        assert!((c[0].as_f64().unwrap() - lon).abs() < 1e-7, "{f}");
        assert!((c[1].as_f64().unwrap() - lat).abs() < 1e-7, "{f}");
    }

    // With --where, the limit counts the features the filter keeps (ogr2ogr's order): the first
    // five with an id above 100, not the matches among the first five records.
    let out = dir.path().join("filtered.geojsonl");
    let r = run(&[
        "--input",
        zip.to_str().unwrap(),
        "--output",
        out.to_str().unwrap(),
        "--limit",
        "5",
        "--where",
        "id > 100",
    ]);
    r.assert_code(0);
    let ids: Vec<String> = std::fs::read_to_string(&out)
        .unwrap()
        .lines()
        .map(|l| {
            let id = &serde_json::from_str::<Value>(l).unwrap()["properties"]["id"];
            id.as_str().map_or_else(|| id.to_string(), str::to_owned)
        })
        .collect();
    assert_eq!(ids, ["101", "102", "103", "104", "105"], "{}", r.stdout);

    // Nothing after the N-th kept record is read: a truncated FeatureCollection whose damage
    // comes right after it loads (the whole file fails with one more).
    let damaged = dir.path().join("damaged.geojson");
    let point = |i: u32| {
        format!(
            "{{\"type\":\"Feature\",\"properties\":{{\"i\":{i}}},\"geometry\":{{\"type\":\"Point\",\"coordinates\":[1,2]}}}}"
        )
    };
    std::fs::write(
        &damaged,
        format!(
            "{{\"type\":\"FeatureCollection\",\"features\":[{},{},{{\"type\":",
            point(1),
            point(2)
        ),
    )
    .unwrap();
    let out = dir.path().join("two.geojsonl");
    let args = |limit: &'static str| {
        vec![
            "--input".to_owned(),
            damaged.to_str().unwrap().to_owned(),
            "--output".to_owned(),
            out.to_str().unwrap().to_owned(),
            "--limit".to_owned(),
            limit.to_owned(),
        ]
    };
    let r = Run::from_output(etl_data().args(args("2")).output().unwrap());
    r.assert_code(0);
    assert_eq!(support::features(&out).len(), 2);
    Run::from_output(etl_data().args(args("3")).output().unwrap()).assert_code(65);
}

/// `--where` keeps the features its filter is true for, into a file and into PostGIS; the others
/// are counted as filtered (not rejected), and a filter nothing matches writes nothing.
#[test]
fn where_filters_features_by_their_properties() {
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("mixed.geojsonl");
    let mut text = String::new();
    for i in 0..100 {
        let kind = if i % 2 == 0 { "\"even\"" } else { "\"odd\"" };
        let name = if i % 10 == 0 {
            "null".to_owned()
        } else {
            format!("\"n{i}\"")
        };
        text.push_str(&format!(
            "{{\"type\":\"Feature\",\"id\":{i},\"properties\":{{\"n\":{i},\"kind\":{kind},\"name\":{name}}},\"geometry\":{{\"type\":\"Point\",\"coordinates\":[{i},1]}}}}\n"
        ));
    }
    // One broken line: a reject whatever the filter says.
    text.push_str("{\"type\":\"Feature\",\"properties\":{\"kind\":\"even\"},\"geometry\":{\"type\":\"Point\",\"coordinates\":[1]}}\n");
    std::fs::write(&input, text).unwrap();
    let filter = "kind = 'even' AND n >= 50 AND name IS NOT NULL";
    // 50..99 even: 25 features, minus 50, 60, 70, 80, 90 (null names): 20.
    let expected: Vec<i64> = (50..100).filter(|i| i % 2 == 0 && i % 10 != 0).collect();

    let out = dir.path().join("kept.geojsonl");
    let file = run(&[
        "--input",
        input.to_str().unwrap(),
        "--output",
        out.to_str().unwrap(),
        "--where",
        filter,
    ]);
    file.assert_code(0);
    let ids: Vec<i64> = std::fs::read_to_string(&out)
        .unwrap()
        .lines()
        .map(|l| {
            serde_json::from_str::<Value>(l).unwrap()["id"]
                .as_i64()
                .unwrap()
        })
        .collect();
    assert_eq!(ids, expected);
    assert_eq!(file.count("written"), 20);
    assert_eq!(file.count("filtered"), 80);
    assert_eq!(file.count("rejected"), 1);
    assert_eq!(file.count("read"), 101);

    let table = unique("where");
    let db = run(&[
        "--input",
        input.to_str().unwrap(),
        "--output",
        &database_url(),
        "--table",
        &table,
        "--where",
        filter,
    ]);
    db.assert_code(0);
    assert_eq!(db.count("filtered"), 80);
    let loaded: Vec<i64> = rt().block_on(async {
        sqlx::query_scalar(sqlx::AssertSqlSafe(format!(
            "SELECT id FROM \"{table}\" ORDER BY id"
        )))
        .fetch_all(&pool().await)
        .await
        .unwrap()
    });
    assert_eq!(loaded, expected);

    let none = dir.path().join("none.geojsonl");
    let nothing = run(&[
        "--input",
        input.to_str().unwrap(),
        "--output",
        none.to_str().unwrap(),
        "--where",
        "n > 1000",
    ]);
    nothing.assert_code(65);
    assert!(
        nothing.stderr.contains("matched --where"),
        "{}",
        nothing.stderr
    );
    assert!(!none.exists());

    // Into PostGIS too, and a replace that nothing matches leaves the table as it was.
    let wiped = run(&[
        "--input",
        input.to_str().unwrap(),
        "--output",
        &database_url(),
        "--table",
        &table,
        "--mode",
        "replace",
        "--where",
        "n > 1000",
    ]);
    wiped.assert_code(65);
    assert!(wiped.stderr.contains("matched --where"), "{}", wiped.stderr);
    assert_eq!(wiped.count("filtered"), 100);
    let kept: Vec<(i64,)> = rows(&format!("SELECT id FROM \"{table}\""));
    assert_eq!(kept.len(), expected.len());

    let bad = run(&[
        "--input",
        input.to_str().unwrap(),
        "--output",
        none.to_str().unwrap(),
        "--where",
        "kind = 'even' AND",
    ]);
    bad.assert_code(64);
    assert!(
        bad.stderr.contains("--where") && bad.stderr.contains("at character 18"),
        "{}",
        bad.stderr
    );
}

/// `--make-valid`: invalid polygons are rebuilt (PostGIS's own ST_IsValid is the independent
/// check), valid ones and other geometries are untouched, one with no area left is a reject.
#[test]
fn make_valid_repairs_polygons_postgis_then_finds_valid() {
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("shapes.geojsonl");
    let features = [
        // A bow-tie: two triangles of area 1 each.
        (
            1,
            r#"{"type":"Polygon","coordinates":[[[0,0],[2,2],[2,0],[0,2],[0,0]]]}"#,
        ),
        // Two overlapping squares as one multipolygon: area 1.5 once merged.
        (
            2,
            r#"{"type":"MultiPolygon","coordinates":[[[[0,0],[1,0],[1,1],[0,1],[0,0]]],[[[0.5,0],[1.5,0],[1.5,1],[0.5,1],[0.5,0]]]]}"#,
        ),
        // Valid: left exactly as it is.
        (
            3,
            r#"{"type":"Polygon","coordinates":[[[10,10],[11,10],[11,11],[10,11],[10,10]]]}"#,
        ),
        (
            4,
            r#"{"type":"LineString","coordinates":[[0,0],[1,1],[0,1],[1,0]]}"#,
        ),
        // No area at all: rejected.
        (
            5,
            r#"{"type":"Polygon","coordinates":[[[0,0],[1,0],[2,0],[1,0],[0,0]]]}"#,
        ),
        // Not closed: the reader closes it (a repair counted with or without the flag).
        (
            6,
            r#"{"type":"Polygon","coordinates":[[[20,20],[21,20],[21,21],[20,21]]]}"#,
        ),
    ];
    let text: String = features
        .iter()
        .map(|(id, g)| {
            format!("{{\"type\":\"Feature\",\"id\":{id},\"properties\":{{}},\"geometry\":{g}}}\n")
        })
        .collect();
    std::fs::write(&input, text).unwrap();

    let load = |table: &str, extra: &[&str]| {
        let mut args = vec![
            "--input",
            input.to_str().unwrap(),
            "--output",
            "",
            "--table",
            table,
        ];
        let url = database_url();
        args[3] = &url;
        args.extend_from_slice(extra);
        let run = run(&args);
        (
            run.code,
            run.count("repaired"),
            run.count("rejected"),
            run.stderr,
        )
    };
    let rows = |table: &str| -> Vec<(i64, bool, f64, String)> {
        rows(&format!(
            "SELECT id, ST_IsValid(geom), ST_Area(geom), ST_AsText(geom) FROM \"{table}\" ORDER BY id"
        ))
    };

    let repaired = unique("make_valid");
    let rejects = dir.path().join("rejects.ndjson");
    let (code, n_repaired, n_rejected, stderr) = load(
        &repaired,
        &["--make-valid", "--rejects", rejects.to_str().unwrap()],
    );
    assert_eq!(code, 0, "{stderr}");
    assert_eq!((n_repaired, n_rejected), (3, 1), "{stderr}");
    let got = rows(&repaired);
    assert_eq!(got.iter().map(|r| r.0).collect::<Vec<_>>(), [1, 2, 3, 4, 6]);
    assert!(got.iter().all(|r| r.1), "{got:?}");
    assert!(
        (got[0].2 - 2.0).abs() < 1e-9 && (got[1].2 - 1.5).abs() < 1e-9,
        "{got:?}"
    );
    assert_eq!(got[2].3, "POLYGON((10 10,11 10,11 11,10 11,10 10))");
    assert_eq!(got[3].3, "LINESTRING(0 0,1 1,0 1,1 0)");
    let reasons: Vec<Value> = support::features(&rejects);
    assert_eq!(reasons.len(), 1, "{reasons:?}");
    assert_eq!(reasons[0]["line"], 5);
    assert!(
        reasons[0]["reason"]
            .as_str()
            .unwrap()
            .contains("no area left"),
        "{reasons:?}"
    );

    // Without the flag the bow-tie goes in as it came: invalid.
    let plain = unique("no_make_valid");
    let (code, n_repaired, _, stderr) = load(&plain, &[]);
    assert_eq!(code, 0, "{stderr}");
    assert_eq!(
        n_repaired, 1,
        "only the reader's repair without --make-valid"
    );
    assert!(!rows(&plain)[0].1);
}

/// The inputs holding the same 10,000 NZTM2000 points (`fixtures/crs/nztm/`), one per format.
pub const NZTM_POINTS: [&str; 4] = [
    "crs/nztm/nztm_points.zip",
    "crs/nztm/nztm_points.fgb",
    "crs/nztm/nztm_points.gpkg",
    "formats/geoparquet/nztm.parquet",
];

/// The same points in every format load alike, into a GeoJSON sequence and into PostGIS: at
/// GDAL's WGS 84 positions within 1e-7° and with the same attributes.
#[test]
fn the_same_points_in_every_format_load_alike() {
    let dir = tempfile::tempdir().unwrap();
    let reference = reference();
    for fixture in NZTM_POINTS {
        let input = repo_fixture(fixture);
        let out = dir.path().join("out.geojsonl");
        let got = load(input.to_str().unwrap(), &out);
        assert_nztm_points(fixture, &got);

        let table = unique("nztm_every");
        run(&[
            "--input",
            input.to_str().unwrap(),
            "--output",
            &database_url(),
            "--table",
            &table,
        ])
        .assert_code(0);
        let rows: Vec<(String, String, f64, f64)> = rt().block_on(async {
            sqlx::query_as(sqlx::AssertSqlSafe(format!(
                "SELECT id_::text, name, ST_X(geom), ST_Y(geom) FROM \"{table}\""
            )))
            .fetch_all(&pool().await)
            .await
            .unwrap_or_else(|e| panic!("{fixture}: {e}"))
        });
        assert_eq!(rows.len(), 10_000, "{fixture}");
        for (id, name, x, y) in rows {
            let id: usize = id.parse().unwrap();
            let (lon, lat) = reference[id];
            assert_eq!(name, format!("p{id}"), "{fixture}");
            assert!(
                (x - lon).abs() < 1e-7 && (y - lat).abs() < 1e-7,
                "{fixture} in PostGIS: {id} at {x},{y}, GDAL {lon},{lat}"
            );
        }
    }
}
