//! `--s-srs`: a GeoJSON sequence of NZTM2000 (EPSG:2193) numbers loads into a GeoJSON
//! sequence and into PostGIS at the WGS 84 positions GDAL gives (fixtures/crs/2193.csv.gz).
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use support::*;

fn reference() -> Vec<[f64; 4]> {
    nztm_reference()
}

fn projected_input(dir: &std::path::Path) -> std::path::PathBuf {
    let input = dir.join("nztm.geojsonl");
    let mut text = String::new();
    for (id, [x, y, _, _]) in reference().iter().enumerate() {
        text.push_str(&format!(
            "{{\"type\":\"Feature\",\"id\":{id},\"properties\":{{}},\"geometry\":{{\"type\":\"Point\",\"coordinates\":[{x},{y}]}}}}\n"
        ));
    }
    std::fs::write(&input, text).unwrap();
    input
}

fn worst(got: impl Iterator<Item = (u64, f64, f64)>) -> (usize, f64) {
    let reference = reference();
    let mut n = 0;
    let mut worst: f64 = 0.0;
    for (id, lon, lat) in got {
        let [_, _, rl, rb] = reference[id as usize];
        worst = worst.max((lon - rl).abs()).max((lat - rb).abs());
        n += 1;
    }
    (n, worst)
}

#[test]
fn s_srs_reprojects_into_a_file_and_into_postgis() {
    let dir = tempfile::tempdir().unwrap();
    let input = projected_input(dir.path());
    let out = dir.path().join("out.geojsonl");
    run(&[
        "--input",
        input.to_str().unwrap(),
        "--output",
        out.to_str().unwrap(),
        "--s-srs",
        "EPSG:2193",
    ])
    .assert_code(0);
    let text = std::fs::read_to_string(&out).unwrap();
    let (n, off) = worst(text.lines().map(|l| {
        let f: serde_json::Value = serde_json::from_str(l).unwrap();
        let c = &f["geometry"]["coordinates"];
        (
            f["id"].as_u64().unwrap(),
            c[0].as_f64().unwrap(),
            c[1].as_f64().unwrap(),
        )
    }));
    assert_eq!(n, 10_000);
    assert!(off < 1e-7, "{off}° off GDAL");

    let table = unique("nztm");
    run(&[
        "--input",
        input.to_str().unwrap(),
        "--output",
        &database_url(),
        "--table",
        &table,
        "--s-srs",
        "EPSG:2193",
    ])
    .assert_code(0);
    let rows: Vec<(i64, f64, f64)> = rt().block_on(async {
        sqlx::query_as(sqlx::AssertSqlSafe(format!(
            "SELECT id, ST_X(geom), ST_Y(geom) FROM \"{table}\""
        )))
        .fetch_all(&pool().await)
        .await
        .unwrap()
    });
    let (n, off) = worst(rows.into_iter().map(|(id, x, y)| (id as u64, x, y)));
    assert_eq!(n, 10_000);
    assert!(off < 1e-7, "{off}° off GDAL in PostGIS");
}
