//! `--s-srs`: a GeoJSON sequence of NZTM2000 (EPSG:2193) numbers loads into a GeoJSON
//! sequence and into PostGIS at the WGS 84 positions GDAL gives (fixtures/crs/2193.csv.gz).
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use support::*;

fn reference() -> Vec<[f64; 4]> {
    nztm_reference()
}

fn projected_input(dir: &std::path::Path) -> std::path::PathBuf {
    projected_input_from(dir, "nztm.geojsonl", 0)
}

/// The reference points as NZTM numbers, with ids from `first_id` on.
fn projected_input_from(dir: &std::path::Path, name: &str, first_id: usize) -> std::path::PathBuf {
    let input = dir.join(name);
    let mut text = String::new();
    for (i, [x, y, _, _]) in reference().iter().enumerate() {
        let id = first_id + i;
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
    let rows: Vec<(i64, f64, f64)> = rows(&format!(
        "SELECT id, ST_X(geom), ST_Y(geom) FROM \"{table}\""
    ));
    let (n, off) = worst(rows.into_iter().map(|(id, x, y)| (id as u64, x, y)));
    assert_eq!(n, 10_000);
    assert!(off < 1e-7, "{off}° off GDAL in PostGIS");
}

/// `--t-srs`: the same NZTM numbers, read as NZTM and written into an NZTM2000 column, come back
/// where they were (two transformations, within 1 cm); a later append without the flag writes
/// the table's own SRID, and one asking for another SRID is refused before it loads anything.
#[test]
fn t_srs_writes_the_column_in_its_own_crs() {
    let dir = tempfile::tempdir().unwrap();
    let input = projected_input(dir.path());
    let table = unique("nztm_tsrs");
    let url = database_url();
    // The same points again under new ids (an append of the first file again would be skipped
    // as already loaded).
    let again = projected_input_from(dir.path(), "again.geojsonl", 10_000);
    let load = |input: &std::path::Path, extra: &[&str]| {
        let mut args = vec![
            "--input",
            input.to_str().unwrap(),
            "--output",
            &url,
            "--table",
            &table,
            "--s-srs",
            "EPSG:2193",
        ];
        args.extend_from_slice(extra);
        run(&args)
    };
    load(&input, &["--mode", "replace", "--t-srs", "EPSG:2193"]).assert_code(0);
    let check = |expected_rows: i64| {
        let (srid, rows): (i32, Vec<(i64, f64, f64)>) = rt().block_on(async {
            let pool = pool().await;
            let srid = sqlx::query_scalar(sqlx::AssertSqlSafe(format!(
                "SELECT Find_SRID('public', '{table}', 'geom')"
            )))
            .fetch_one(&pool)
            .await
            .unwrap();
            let rows = sqlx::query_as(sqlx::AssertSqlSafe(format!(
                "SELECT id, ST_X(geom), ST_Y(geom) FROM \"{table}\""
            )))
            .fetch_all(&pool)
            .await
            .unwrap();
            (srid, rows)
        });
        assert_eq!(srid, 2193);
        assert_eq!(rows.len() as i64, expected_rows);
        let reference = reference();
        let worst = rows.iter().fold(0f64, |w, &(id, x, y)| {
            let [rx, ry, _, _] = reference[id as usize % 10_000];
            w.max((x - rx).abs()).max((y - ry).abs())
        });
        assert!(worst < 0.01, "{worst} m from the input");
    };
    check(10_000);

    // Appending without --t-srs keeps to the table's SRID.
    load(&again, &[]).assert_code(0);
    check(20_000);

    // Asking for another SRID is a configuration error, and nothing is added.
    let third = projected_input_from(dir.path(), "third.geojsonl", 20_000);
    let refused = load(&third, &["--t-srs", "EPSG:3857"]);
    refused.assert_code(78);
    assert!(
        refused.stderr.contains("SRID 2193") && refused.stderr.contains("SRID 3857"),
        "{}",
        refused.stderr
    );
    check(20_000);
}

#[test]
fn t_srs_is_refused_for_file_outputs_and_unknown_codes() {
    let dir = tempfile::tempdir().unwrap();
    let input = projected_input(dir.path());
    let out = dir.path().join("out.geojsonl");
    let file = run(&[
        "--input",
        input.to_str().unwrap(),
        "--output",
        out.to_str().unwrap(),
        "--t-srs",
        "EPSG:2193",
    ]);
    file.assert_code(64);
    assert!(file.stderr.contains("--t-srs"), "{}", file.stderr);
    assert!(!out.exists());

    let table = unique("nztm_badsrid");
    let unknown = run(&[
        "--input",
        input.to_str().unwrap(),
        "--output",
        &database_url(),
        "--table",
        &table,
        "--s-srs",
        "EPSG:2193",
        "--t-srs",
        "EPSG:999999",
    ]);
    unknown.assert_code(78);
    assert!(unknown.stderr.contains("SRID 999999"), "{}", unknown.stderr);
    assert!(!rt().block_on(async { table_exists(&pool().await, &table).await }));
}

/// A table whose column type names no SRID (plain `geometry`) holds the SRID of its stored
/// geometries: an append writes that one, and --t-srs naming another is refused, so one column
/// never mixes SRIDs.
#[test]
fn an_unconstrained_column_keeps_the_srid_of_its_rows() {
    let dir = tempfile::tempdir().unwrap();
    let input = projected_input(dir.path());
    let table = unique("nztm_plain");
    rt().block_on(async {
        let pool = pool().await;
        sqlx::raw_sql(sqlx::AssertSqlSafe(format!(
            "CREATE TABLE \"{table}\" (id bigint, name text, geom geometry);
             INSERT INTO \"{table}\" VALUES (-1, 'old', 'SRID=2193;POINT(1748735 5427916)');"
        )))
        .execute(&pool)
        .await
        .unwrap();
    });
    let url = database_url();
    let load = |extra: &[&str]| {
        let mut args = vec![
            "--input",
            input.to_str().unwrap(),
            "--output",
            &url,
            "--table",
            &table,
            "--s-srs",
            "EPSG:2193",
        ];
        args.extend_from_slice(extra);
        run(&args)
    };
    let refused = load(&["--t-srs", "EPSG:3857"]);
    refused.assert_code(78);
    assert!(refused.stderr.contains("SRID 2193"), "{}", refused.stderr);
    load(&[]).assert_code(0);
    let srids: Vec<(i32, i64)> = rows(&format!(
        "SELECT ST_SRID(geom), count(*) FROM \"{table}\" GROUP BY 1"
    ));
    assert_eq!(srids, [(2193, 10_001)]);
}
