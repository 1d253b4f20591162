//! etl-data into a real PostGIS: round trips, modes, incremental runs, bad features, rejects,
//! dry runs. (Kills and concurrent runs: postgres_resume.rs; column types and names:
//! postgres_schema.rs; appends into existing tables: postgres_append.rs; locks, what replace
//! keeps, checkpoints: postgres_publish.rs.)
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::collections::BTreeMap;

use serde_json::Value;
use support::*;

fn parse_all(path: &std::path::Path) -> Vec<etl_geo::Feature> {
    let file = std::fs::File::open(path).unwrap();
    let fmt = etl_geo::Format::from_path(&path.to_string_lossy()).unwrap();
    etl_geo::open(
        fmt,
        Box::new(std::io::BufReader::new(file)),
        &Default::default(),
    )
    .unwrap()
    .map(|r| r.unwrap().feature.unwrap())
    .collect()
}

fn id_key(id: &Option<etl_geo::FeatureId>) -> String {
    match id {
        Some(etl_geo::FeatureId::Int(i)) => i.to_string(),
        Some(etl_geo::FeatureId::Str(s)) => s.clone(),
        None => String::new(),
    }
}

fn coords(g: &etl_geo::geo_types::Geometry<f64>, out: &mut Vec<(f64, f64)>) {
    use etl_geo::geo_types::Geometry as G;
    let ring = |l: &etl_geo::geo_types::LineString<f64>, out: &mut Vec<(f64, f64)>| {
        out.extend(l.0.iter().map(|c| (c.x, c.y)))
    };
    match g {
        G::Point(p) => out.push((p.x(), p.y())),
        G::Line(l) => out.extend([(l.start.x, l.start.y), (l.end.x, l.end.y)]),
        G::LineString(l) => ring(l, out),
        G::Polygon(p) => {
            ring(p.exterior(), out);
            p.interiors().iter().for_each(|r| ring(r, out));
        }
        G::MultiPoint(m) => out.extend(m.0.iter().map(|p| (p.x(), p.y()))),
        G::MultiLineString(m) => m.0.iter().for_each(|l| ring(l, out)),
        G::MultiPolygon(m) => m.0.iter().for_each(|p| coords(&G::Polygon(p.clone()), out)),
        G::GeometryCollection(c) => c.0.iter().for_each(|g| coords(g, out)),
        G::Rect(r) => coords(&G::Polygon(r.to_polygon()), out),
        G::Triangle(t) => coords(&G::Polygon(t.to_polygon()), out),
    }
}

fn assert_geom_close(a: &etl_geo::geo_types::Geometry<f64>, b: &etl_geo::geo_types::Geometry<f64>) {
    let (mut ca, mut cb) = (Vec::new(), Vec::new());
    coords(a, &mut ca);
    coords(b, &mut cb);
    assert_eq!(ca.len(), cb.len(), "coordinate count: {a:?} vs {b:?}");
    for (p, q) in ca.iter().zip(&cb) {
        assert!(
            (p.0 - q.0).abs() <= 1e-9 && (p.1 - q.1).abs() <= 1e-9,
            "{p:?} vs {q:?}"
        );
    }
    assert_eq!(
        std::mem::discriminant(a),
        std::mem::discriminant(b),
        "geometry type"
    );
}

#[test]
fn replace_round_trip_keeps_geometry_and_typed_properties() {
    let table = unique("sites");
    let input = repo_fixture("data/sites.geojson");
    run(&[
        "--input",
        input.to_str().unwrap(),
        "--output",
        &database_url(),
        "--table",
        &table,
        "--mode",
        "replace",
    ])
    .assert_code(0);
    let expected = parse_all(&input);
    rt().block_on(async {
        let pool = pool().await;
        // Column types come from the property values.
        let types = column_types(&pool, &table).await;
        assert_eq!(types["id"], "bigint");
        assert_eq!(types["name"], "text");
        assert_eq!(types["capacity"], "bigint");
        assert_eq!(types["active"], "boolean");
        assert_eq!(types["tags"], "jsonb");
        assert_eq!(types["elevation_m"], "double precision");
        assert_eq!(types["geom"], "USER-DEFINED");
        let has_pk: bool = sqlx::query_scalar(
            "SELECT EXISTS (SELECT 1 FROM pg_index WHERE indrelid = to_regclass($1) AND indisprimary)",
        )
        .bind(&table)
        .fetch_one(&pool)
        .await
        .unwrap();
        assert!(has_pk, "unique ids give a primary key");
        let gist: i64 = scalar_i64(&pool, &format!(
            "SELECT count(*) FROM pg_indexes WHERE tablename = '{table}' AND indexdef LIKE '%USING gist%'"
        )).await;
        assert_eq!(gist, 1);

        let rows: Vec<(i64, Vec<u8>, Value)> = sqlx::query_as(sqlx::AssertSqlSafe(format!(
            "SELECT id, ST_AsEWKB(geom), to_jsonb(t) - 'geom' - 'id' FROM \"{table}\" t ORDER BY id"
        )))
        .fetch_all(&pool)
        .await
        .unwrap();
        assert_eq!(rows.len(), expected.len());
        for ((id, ewkb, props), f) in rows.iter().zip(&expected) {
            assert_eq!(id.to_string(), id_key(&f.id));
            let (srid, geom) = etl_geo::read_ewkb(ewkb).unwrap();
            assert_eq!(srid, Some(4326));
            assert_geom_close(&geom, f.geometry.as_ref().unwrap());
            for (k, v) in &f.properties {
                assert_eq!(&props[k], v, "property {k} of feature {id}");
            }
            // Columns of other features' properties are NULL here, nothing else is invented.
            for (k, v) in props.as_object().unwrap() {
                if !f.properties.contains_key(k) {
                    assert!(v.is_null(), "{k} should be NULL for feature {id}");
                }
            }
        }
    });
}

#[test]
fn file_output_round_trip_is_exact() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out.geojsonl");
    let input = repo_fixture("data/sites.geojson");
    run(&[
        "--input",
        input.to_str().unwrap(),
        "--output",
        out.to_str().unwrap(),
    ])
    .assert_code(0);
    let a = parse_all(&input);
    let b = parse_all(&out);
    assert_eq!(
        a, b,
        "GeoJSON -> GeoJSON sequence keeps every feature exactly"
    );
    // And a FeatureCollection output reads back the same.
    // A finished run is not redone while its output stands; a deleted output is written again.
    let again = run(&[
        "--input",
        input.to_str().unwrap(),
        "--output",
        out.to_str().unwrap(),
    ]);
    assert_eq!(again.status(), "skipped");
    std::fs::remove_file(&out).unwrap();
    let redo = run(&[
        "--input",
        input.to_str().unwrap(),
        "--output",
        out.to_str().unwrap(),
    ]);
    assert_eq!(redo.status(), "succeeded");
    assert_eq!(parse_all(&out), a);
    let out2 = dir.path().join("out.geojson");
    run(&[
        "--input",
        out.to_str().unwrap(),
        "--output",
        out2.to_str().unwrap(),
    ])
    .assert_code(0);
    assert_eq!(parse_all(&out2), a);
}

#[test]
fn append_skips_unchanged_inputs_and_loads_changed_ones() {
    let dir = tempfile::tempdir().unwrap();
    let a = dir.path().join("a.geojsonl");
    let b = dir.path().join("b.geojsonl");
    write_points(&a, 100);
    write_points(&b, 50);
    let table = unique("inc");
    let url = database_url();
    let dir_s = dir.path().to_str().unwrap();
    let args = [
        "--input", dir_s, "--output", &url, "--table", &table, "--mode", "append",
    ];
    let first = run(&args);
    first.assert_code(0);
    assert_eq!(first.count("written"), 150);
    // Same inputs, same config: the run already happened.
    let again = run(&args);
    again.assert_code(0);
    assert_eq!(again.status(), "skipped");
    // One input changes: only that one is loaded again.
    write_points(&b, 60);
    let third = run(&args);
    third.assert_code(0);
    assert_eq!(third.count("skipped_inputs"), 1, "{}", third.stdout);
    assert_eq!(third.count("written"), 60);
    rt().block_on(async {
        let pool = pool().await;
        assert_eq!(
            scalar_i64(&pool, &format!("SELECT count(*) FROM \"{table}\"")).await,
            210
        );
        sqlx::query(sqlx::AssertSqlSafe(format!("DROP TABLE \"{table}\"")))
            .execute(&pool)
            .await
            .unwrap();
    });
    // The table is gone: neither the finished run nor the ledger may skip anything now.
    let fourth = run(&args);
    fourth.assert_code(0);
    assert_eq!(fourth.status(), "succeeded");
    assert_eq!(fourth.count("written"), 160);
    rt().block_on(async {
        let pool = pool().await;
        let n = scalar_i64(&pool, &format!("SELECT count(*) FROM \"{table}\"")).await;
        assert_eq!(n, 160);
    });
}

#[test]
fn upsert_updates_by_key_and_last_occurrence_wins() {
    let dir = tempfile::tempdir().unwrap();
    let v1 = dir.path().join("v1.geojsonl");
    let v2 = dir.path().join("v2.geojsonl");
    std::fs::write(&v1, concat!(
        r#"{"type":"Feature","properties":{"uid":"a","n":1},"geometry":{"type":"Point","coordinates":[1,1]}}"#, "\n",
        r#"{"type":"Feature","properties":{"uid":"b","n":1},"geometry":{"type":"Point","coordinates":[2,2]}}"#, "\n",
    )).unwrap();
    std::fs::write(&v2, concat!(
        r#"{"type":"Feature","properties":{"uid":"b","n":2},"geometry":{"type":"Point","coordinates":[3,3]}}"#, "\n",
        r#"{"type":"Feature","properties":{"uid":"c","n":1},"geometry":{"type":"Point","coordinates":[4,4]}}"#, "\n",
        r#"{"type":"Feature","properties":{"uid":"b","n":3},"geometry":{"type":"Point","coordinates":[5,5]}}"#, "\n",
        r#"{"type":"Feature","properties":{"n":9},"geometry":{"type":"Point","coordinates":[6,6]}}"#, "\n",
    )).unwrap();
    let table = unique("ups");
    let url = database_url();
    for f in [&v1, &v2] {
        let r = run(&[
            "--input",
            f.to_str().unwrap(),
            "--output",
            &url,
            "--table",
            &table,
            "--mode",
            "upsert",
            "--key",
            "uid",
        ]);
        r.assert_code(0);
    }
    rt().block_on(async {
        let pool = pool().await;
        let rows: Vec<(String, i64, String)> = sqlx::query_as(sqlx::AssertSqlSafe(format!(
            "SELECT uid, n, ST_AsText(geom) FROM \"{table}\" ORDER BY uid"
        )))
        .fetch_all(&pool)
        .await
        .unwrap();
        assert_eq!(
            rows,
            vec![
                ("a".into(), 1, "POINT(1 1)".into()),
                ("b".into(), 3, "POINT(5 5)".into()),
                ("c".into(), 1, "POINT(4 4)".into()),
            ]
        );
    });
}

#[test]
fn bad_features_are_rejected_one_by_one_with_reasons() {
    let dir = tempfile::tempdir().unwrap();
    let rejects = dir.path().join("rejects.ndjson");
    let table = unique("bad");
    let input = fixture("bad_features.geojsonl");
    rt().block_on(async {
        let pool = pool().await;
        sqlx::query(sqlx::AssertSqlSafe(format!(
            "CREATE TABLE \"{table}\" (id bigint, name text, capacity integer, geom geometry(Geometry,4326))"
        )))
        .execute(&pool)
        .await
        .unwrap();
    });
    let r = run(&[
        "--input",
        input.to_str().unwrap(),
        "--output",
        &database_url(),
        "--table",
        &table,
        "--rejects",
        rejects.to_str().unwrap(),
    ]);
    r.assert_code(0);
    assert_eq!(r.count("read"), 9);
    assert_eq!(r.count("rejected"), 7);
    assert_eq!(r.count("written"), 2);
    let lines: Vec<Value> = std::fs::read_to_string(&rejects)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let by_line: BTreeMap<u64, String> = lines
        .iter()
        .map(|v| {
            (
                v["line"].as_u64().unwrap(),
                v["reason"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    assert_eq!(
        by_line.keys().copied().collect::<Vec<_>>(),
        vec![2, 3, 4, 5, 6, 7, 8]
    );
    for v in &lines {
        assert_eq!(v["input"].as_str().unwrap(), input.to_str().unwrap());
    }
    assert!(by_line[&2].contains("91.5"), "{}", by_line[&2]);
    assert!(by_line[&3].contains("180.5"), "{}", by_line[&3]);
    assert!(by_line[&4].contains("has holes"), "{}", by_line[&4]);
    assert!(
        by_line[&5].to_lowercase().contains("blob"),
        "{}",
        by_line[&5]
    );
    assert!(by_line[&7].contains("capacity"), "{}", by_line[&7]);
    rt().block_on(async {
        let pool = pool().await;
        let ids: Vec<i64> = sqlx::query_scalar(sqlx::AssertSqlSafe(format!(
            "SELECT id FROM \"{table}\" ORDER BY id"
        )))
        .fetch_all(&pool)
        .await
        .unwrap();
        assert_eq!(ids, vec![1, 3]);
    });
}

#[test]
fn non_finite_csv_coordinates_are_rejected() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out.geojsonl");
    let rejects = dir.path().join("rejects.ndjson");
    let input = fixture("bad_coords.csv");
    let r = run(&[
        "--input",
        input.to_str().unwrap(),
        "--output",
        out.to_str().unwrap(),
        "--rejects",
        rejects.to_str().unwrap(),
    ]);
    r.assert_code(0);
    assert_eq!(r.count("written"), 2);
    assert_eq!(r.count("rejected"), 3);
    let text = std::fs::read_to_string(&rejects).unwrap();
    let lines: Vec<u64> = text
        .lines()
        .map(|l| {
            serde_json::from_str::<Value>(l).unwrap()["line"]
                .as_u64()
                .unwrap()
        })
        .collect();
    assert_eq!(lines, vec![3, 4, 5]);
}

#[test]
fn past_max_rejects_the_run_aborts_and_commits_nothing() {
    let table = unique("maxrej");
    let input = fixture("bad_features.geojsonl");
    let r = run(&[
        "--input",
        input.to_str().unwrap(),
        "--output",
        &database_url(),
        "--table",
        &table,
        "--mode",
        "replace",
        "--max-rejects",
        "2",
    ]);
    r.assert_code(65);
    assert!(r.error().contains("--max-rejects"), "{}", r.error());
    rt().block_on(async {
        let pool = pool().await;
        assert!(!table_exists(&pool, &table).await, "no table");
        let stages = scalar_i64(
            &pool,
            &format!("SELECT count(*) FROM pg_tables WHERE tablename LIKE '{table}__etl_%'"),
        )
        .await;
        assert_eq!(stages, 0, "no stage table left behind");
    });
}

#[test]
fn unparseable_file_exits_65_with_position_and_commits_nothing() {
    let table = unique("syntax");
    let input = fixture("syntax_error.geojson");
    let r = run(&[
        "--input",
        input.to_str().unwrap(),
        "--output",
        &database_url(),
        "--table",
        &table,
    ]);
    r.assert_code(65);
    let expected_prefix = format!("{}:3:", input.display());
    assert!(
        r.error().starts_with(&expected_prefix),
        "error should name file:line:column, got {:?}",
        r.error()
    );
    rt().block_on(async {
        let pool = pool().await;
        // append creates the target up front, but no row of the broken file may be in it.
        if table_exists(&pool, &table).await {
            assert_eq!(
                scalar_i64(&pool, &format!("SELECT count(*) FROM \"{table}\"")).await,
                0
            );
        }
        let stages = scalar_i64(
            &pool,
            &format!("SELECT count(*) FROM pg_tables WHERE tablename LIKE '{table}__etl_%'"),
        )
        .await;
        assert_eq!(stages, 0);
    });
}

#[test]
fn dry_run_writes_nothing_anywhere() {
    let dir = tempfile::tempdir().unwrap();
    let table = unique("dry");
    let input = repo_fixture("data/sites.geojson");
    let r = run(&[
        "--dry-run",
        "--input",
        input.to_str().unwrap(),
        "--output",
        &database_url(),
        "--table",
        &table,
        "--mode",
        "replace",
    ]);
    r.assert_code(0);
    assert_eq!(r.status(), "dry_run");
    assert!(r.stdout.contains("\"table_exists\":false"), "{}", r.stdout);
    let out = dir.path().join("sub/out.geojsonl");
    let rejects = dir.path().join("rejects.ndjson");
    run(&[
        "--dry-run",
        "--input",
        input.to_str().unwrap(),
        "--output",
        out.to_str().unwrap(),
        "--rejects",
        rejects.to_str().unwrap(),
    ])
    .assert_code(0);
    assert_eq!(
        std::fs::read_dir(dir.path()).unwrap().count(),
        0,
        "nothing created in the output dir"
    );
    rt().block_on(async {
        let pool = pool().await;
        assert!(!table_exists(&pool, &table).await);
        let run_key = r.summary["run_key"].as_str().unwrap().to_string();
        let n: i64 = sqlx::query_scalar("SELECT count(*) FROM etl_checkpoint WHERE scope = $1")
            .bind(&run_key)
            .fetch_one(&pool)
            .await
            .unwrap_or(0);
        assert_eq!(n, 0);
    });
    // A dry run that cannot reach the database fails with 69.
    let r = run(&[
        "--dry-run",
        "--input",
        input.to_str().unwrap(),
        "--output",
        "postgres://postgres@127.0.0.1:1/none",
        "--table",
        &table,
    ]);
    r.assert_code(69);
}

#[test]
fn many_rejects_are_streamed_to_the_rejects_file_in_order() {
    use std::io::Write;
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("mostly_bad.geojsonl");
    let mut f = std::io::BufWriter::new(std::fs::File::create(&input).unwrap());
    let n = 25_000u64; // more than two pages of rejects
    for i in 0..n {
        let lat = if i == 7 { 10 } else { 95 };
        writeln!(f, r#"{{"type":"Feature","id":{i},"properties":{{}},"geometry":{{"type":"Point","coordinates":[1,{lat}]}}}}"#).unwrap();
    }
    drop(f);
    let rejects = dir.path().join("rejects.ndjson");
    let table = unique("many_rej");
    let r = run(&[
        "--input",
        input.to_str().unwrap(),
        "--output",
        &database_url(),
        "--table",
        &table,
        "--rejects",
        rejects.to_str().unwrap(),
        "--checkpoint-every",
        "4000",
    ]);
    r.assert_code(0);
    assert_eq!(r.count("rejected"), n - 1);
    let ordinals: Vec<u64> = std::fs::read_to_string(&rejects)
        .unwrap()
        .lines()
        .map(|l| {
            serde_json::from_str::<Value>(l).unwrap()["ordinal"]
                .as_u64()
                .unwrap()
        })
        .collect();
    let expected: Vec<u64> = (0..n).filter(|i| *i != 7).collect();
    assert_eq!(ordinals, expected, "every reject once, in input order");
}
