//! etl-data into a real PostGIS: round trips, modes, incremental runs, bad features, kill -9,
//! SIGTERM and concurrent runs.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::collections::BTreeMap;
use std::time::Duration;

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
    assert!(by_line[&4].contains("closed"), "{}", by_line[&4]);
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

/// Starts a load of `n` points with small checkpoints and waits until at least one checkpoint
/// is committed, so a signal lands in the middle of the load.
fn start_big_load(
    dir: &std::path::Path,
    table: &str,
    n: u64,
    mode: &str,
) -> (std::process::Child, String) {
    let input = dir.join("big.geojsonl");
    if !input.exists() {
        write_points(&input, n);
    }
    let input_s = input.to_str().unwrap().to_string();
    let child = spawn(&[
        "--input",
        &input_s,
        "--output",
        &database_url(),
        "--table",
        table,
        "--mode",
        mode,
        "--checkpoint-every",
        "5000",
    ]);
    (child, input_s)
}

fn wait_for_checkpoint(input: &str) {
    let rt = rt();
    rt.block_on(async {
        let pool = pool().await;
        let deadline = std::time::Instant::now() + Duration::from_secs(60);
        while committed_next(&pool, input).await == 0 {
            assert!(
                std::time::Instant::now() < deadline,
                "no checkpoint committed within 60 s"
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    });
}

/// Reruns until the lease of the killed process is gone (Postgres notices the dead connection
/// within moments; a 75 in between is exactly what Batch would retry).
fn rerun_until_not_leased(args: &[&str]) -> Run {
    for _ in 0..50 {
        let r = run(args);
        if r.code != 75 {
            return r;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    panic!("lease never released");
}

#[test]
fn kill_9_mid_load_then_rerun_loads_each_feature_once() {
    let dir = tempfile::tempdir().unwrap();
    for mode in ["append", "replace"] {
        let table = unique(&format!("kill_{mode}"));
        let n = 60_000;
        let (mut child, input) = start_big_load(dir.path(), &table, n, mode);
        wait_for_checkpoint(&input);
        child.kill().unwrap(); // SIGKILL
        child.wait().unwrap();
        let args = [
            "--input",
            input.as_str(),
            "--output",
            &database_url(),
            "--table",
            &table,
            "--mode",
            mode,
            "--checkpoint-every",
            "5000",
        ];
        let r = rerun_until_not_leased(&args);
        r.assert_code(0);
        assert_eq!(
            r.status(),
            "succeeded",
            "the killed run had not finished, so the rerun does work"
        );
        rt().block_on(async {
            let pool = pool().await;
            let total = scalar_i64(&pool, &format!("SELECT count(*) FROM \"{table}\"")).await;
            let distinct = scalar_i64(
                &pool,
                &format!("SELECT count(DISTINCT id) FROM \"{table}\""),
            )
            .await;
            assert_eq!(
                (total, distinct),
                (n as i64, n as i64),
                "{mode}: every feature exactly once"
            );
        });
        // The next run of the same input into the same table is a no-op.
        let again = run(&args);
        again.assert_code(0);
        assert_eq!(again.status(), "skipped");
    }
}

#[cfg(unix)]
#[test]
fn sigterm_commits_a_checkpoint_and_exits_143_then_rerun_finishes() {
    let dir = tempfile::tempdir().unwrap();
    let table = unique("term");
    let n = 60_000;
    let (child, input) = start_big_load(dir.path(), &table, n, "replace");
    wait_for_checkpoint(&input);
    let pid = child.id().to_string();
    let status = std::process::Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .unwrap();
    assert!(status.success());
    let out = child.wait_with_output().unwrap();
    let r = Run::from_output(out);
    r.assert_code(143);
    assert_eq!(r.status(), "stopped");
    let committed = rt().block_on(async { committed_next(&pool().await, &input).await });
    assert!(
        committed > 0 && committed < n as i64,
        "a partial checkpoint was committed: {committed}"
    );
    rt().block_on(async {
        let pool = pool().await;
        assert!(
            !table_exists(&pool, &table).await,
            "replace publishes nothing before the run completes"
        );
    });
    let rerun = run(&[
        "--input",
        &input,
        "--output",
        &database_url(),
        "--table",
        &table,
        "--mode",
        "replace",
        "--checkpoint-every",
        "5000",
    ]);
    rerun.assert_code(0);
    assert_eq!(rerun.status(), "succeeded");
    assert_eq!(
        rerun.count("read"),
        n,
        "counts include the first attempt's committed work"
    );
    rt().block_on(async {
        let pool = pool().await;
        assert_eq!(
            scalar_i64(
                &pool,
                &format!("SELECT count(DISTINCT id) FROM \"{table}\"")
            )
            .await,
            n as i64
        );
        assert_eq!(
            scalar_i64(&pool, &format!("SELECT count(*) FROM \"{table}\"")).await,
            n as i64
        );
    });
}

#[test]
fn two_concurrent_runs_of_one_run_key_never_double_load() {
    let dir = tempfile::tempdir().unwrap();
    let table = unique("conc");
    let n = 60_000;
    let (first, input) = start_big_load(dir.path(), &table, n, "append");
    wait_for_checkpoint(&input);
    // The same run while the first holds the lease: refused with 75 (Batch retries it).
    let second = run(&[
        "--input",
        &input,
        "--output",
        &database_url(),
        "--table",
        &table,
        "--mode",
        "append",
        "--checkpoint-every",
        "5000",
    ]);
    second.assert_code(75);
    assert!(
        second.error().contains("being processed by"),
        "{}",
        second.error()
    );
    let r = Run::from_output(first.wait_with_output().unwrap());
    r.assert_code(0);
    rt().block_on(async {
        let pool = pool().await;
        assert_eq!(
            scalar_i64(&pool, &format!("SELECT count(*) FROM \"{table}\"")).await,
            n as i64
        );
    });
}

#[test]
fn replace_widens_its_own_columns_for_later_values() {
    use std::io::Write;
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("mixed.geojsonl");
    let mut f = std::fs::File::create(&input).unwrap();
    // More than one read batch of integers, then a float, a string and a string id.
    for i in 0..5000 {
        writeln!(f, r#"{{"type":"Feature","id":{i},"properties":{{"v":{i},"w":{i}}},"geometry":{{"type":"Point","coordinates":[1,2]}}}}"#).unwrap();
    }
    writeln!(f, r#"{{"type":"Feature","id":"x-1","properties":{{"v":2.5,"w":"many"}},"geometry":{{"type":"Point","coordinates":[1,2]}}}}"#).unwrap();
    drop(f);
    let table = unique("widen");
    let r = run(&[
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
    assert_eq!(r.count("rejected"), 0);
    assert_eq!(r.count("written"), 5001);
    rt().block_on(async {
        let pool = pool().await;
        let types = column_types(&pool, &table).await;
        assert_eq!(types["id"], "text");
        assert_eq!(types["v"], "double precision");
        assert_eq!(types["w"], "jsonb");
        let v: f64 = sqlx::query_scalar(sqlx::AssertSqlSafe(format!(
            "SELECT v FROM \"{table}\" WHERE id = 'x-1'"
        )))
        .fetch_one(&pool)
        .await
        .unwrap();
        assert_eq!(v, 2.5);
    });
}

#[test]
fn replace_with_repeated_or_missing_ids_indexes_id_without_a_key() {
    let dir = tempfile::tempdir().unwrap();
    let a = dir.path().join("a.geojsonl");
    write_points(&a, 20);
    let b = dir.path().join("b.geojsonl");
    write_points(&b, 10); // ids 0..10 again
    let c = dir.path().join("c.geojsonl");
    std::fs::write(&c, "{\"type\":\"Feature\",\"properties\":{},\"geometry\":{\"type\":\"Point\",\"coordinates\":[1,1]}}\n").unwrap();
    let repeated = unique("rep_ids");
    let missing = unique("null_ids");
    run(&[
        "--input",
        dir.path().join("[ab].geojsonl").to_str().unwrap(),
        "--output",
        &database_url(),
        "--table",
        &repeated,
        "--mode",
        "replace",
    ])
    .assert_code(0);
    run(&[
        "--input",
        &format!("{},{}", a.display(), c.display()),
        "--output",
        &database_url(),
        "--table",
        &missing,
        "--mode",
        "replace",
    ])
    .assert_code(0);
    rt().block_on(async {
        let pool = pool().await;
        for (table, rows, unique_index) in [(&repeated, 30, false), (&missing, 21, true)] {
            assert_eq!(scalar_i64(&pool, &format!("SELECT count(*) FROM \"{table}\"")).await, rows);
            let pk = scalar_i64(&pool, &format!("SELECT count(*) FROM pg_index WHERE indrelid = '\"{table}\"'::regclass AND indisprimary")).await;
            assert_eq!(pk, 0, "{table}: no primary key");
            let uniq = scalar_i64(&pool, &format!("SELECT count(*) FROM pg_index WHERE indrelid = '\"{table}\"'::regclass AND indisunique")).await;
            assert_eq!(uniq == 1, unique_index, "{table}: unique index on id");
            let indexed = scalar_i64(&pool, &format!("SELECT count(*) FROM pg_indexes WHERE tablename = '{table}'")).await;
            assert_eq!(indexed, 2, "{table}: an index on id and the GIST index");
        }
    });
}

#[test]
fn existing_table_with_numeric_and_user_types_loads_through_text_copy() {
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("scores.geojsonl");
    std::fs::write(&input, concat!(
        r#"{"type":"Feature","id":1,"properties":{"score":12.5,"seen":"2026-11-28T10:00:00Z","tag":"a"},"geometry":{"type":"Point","coordinates":[1,2]}}"#, "\n",
        r#"{"type":"Feature","id":2,"properties":{"score":3,"seen":"2026-11-29T11:30:00Z","tag":"b"},"geometry":{"type":"Point","coordinates":[3,4]}}"#, "\n",
    )).unwrap();
    let table = unique("numeric");
    rt().block_on(async {
        let pool = pool().await;
        sqlx::query(sqlx::AssertSqlSafe(format!(
            "CREATE TABLE \"{table}\" (id bigint, score numeric(10,2), seen timestamptz, tag varchar(4), geom geometry(Geometry,4326))"
        )))
        .execute(&pool)
        .await
        .unwrap();
    });
    run(&[
        "--input",
        input.to_str().unwrap(),
        "--output",
        &database_url(),
        "--table",
        &table,
    ])
    .assert_code(0);
    rt().block_on(async {
        let pool = pool().await;
        let rows: Vec<(i64, String, String, String)> = sqlx::query_as(sqlx::AssertSqlSafe(format!(
            "SELECT id, score::text, to_char(seen AT TIME ZONE 'UTC', 'YYYY-MM-DD HH24:MI'), tag FROM \"{table}\" ORDER BY id"
        )))
        .fetch_all(&pool)
        .await
        .unwrap();
        assert_eq!(rows, vec![
            (1, "12.50".into(), "2026-11-28 10:00".into(), "a".into()),
            (2, "3.00".into(), "2026-11-29 11:30".into(), "b".into()),
        ]);
    });
}

#[test]
fn typed_geometry_columns_reject_other_types_and_other_srids_are_config_errors() {
    let input = repo_fixture("data/sites.geojson");
    let points = unique("pts_only");
    let mercator = unique("mercator");
    rt().block_on(async {
        let pool = pool().await;
        for sql in [
            format!("CREATE TABLE \"{points}\" (id bigint, name text, geom geometry(Point,4326))"),
            format!("CREATE TABLE \"{mercator}\" (id bigint, geom geometry(Geometry,3857))"),
        ] {
            sqlx::query(sqlx::AssertSqlSafe(sql))
                .execute(&pool)
                .await
                .unwrap();
        }
    });
    let r = run(&[
        "--input",
        input.to_str().unwrap(),
        "--output",
        &database_url(),
        "--table",
        &points,
        "--select",
        "name",
    ]);
    r.assert_code(0);
    assert_eq!(r.count("written"), 2, "the two points");
    assert_eq!(r.count("rejected"), 3, "line, polygon, multipoint");
    let r = run(&[
        "--input",
        input.to_str().unwrap(),
        "--output",
        &database_url(),
        "--table",
        &mercator,
    ]);
    r.assert_code(78);
    assert!(r.error().contains("SRID 3857"), "{}", r.error());
}

#[test]
fn odd_property_names_and_63_byte_table_names_load_in_every_mode() {
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("odd.geojsonl");
    let long_a = "x".repeat(70);
    let long_b = format!("{}y", "x".repeat(69));
    let mut text = String::new();
    for i in 0..3 {
        let props = serde_json::json!({
            "id": format!("p-{i}"), "id_": i, "": "empty name", "geom": "a property called geom",
            long_a.clone(): 1, long_b.clone(): 2, "_etl_seq": 3, "a\u{0}b": 4, "name": format!("n{i}"),
        });
        let f = serde_json::json!({"type": "Feature", "id": i, "properties": props,
            "geometry": {"type": "Point", "coordinates": [i, 1]}});
        text.push_str(&f.to_string());
        text.push('\n');
    }
    std::fs::write(&input, text).unwrap();
    let url = database_url();
    for mode in ["replace", "append", "upsert"] {
        let base = unique(&format!("long_{mode}"));
        let table = format!("{base}{}", "t".repeat(63 - base.len()));
        assert_eq!(table.len(), 63);
        let mut args = vec![
            "--input",
            input.to_str().unwrap(),
            "--output",
            &url,
            "--table",
            &table,
            "--mode",
            mode,
        ];
        if mode == "upsert" {
            args.extend(["--key", "name"]);
        }
        let r = run(&args);
        r.assert_code(0);
        assert_eq!(r.count("written"), 3, "{mode}");
        assert_eq!(r.count("rejected"), 0, "{mode}");
        rt().block_on(async {
            let pool = pool().await;
            let types = column_types(&pool, &table).await;
            // id, geom and nine property columns, each property in its own column.
            assert_eq!(types.len(), 11, "{mode}: {types:?}");
            let gist = scalar_i64(&pool, &format!(
                "SELECT count(*) FROM pg_indexes WHERE tablename = '{table}' AND indexdef LIKE '%USING gist%'"
            )).await;
            assert_eq!(gist, 1, "{mode}: GIST index exists");
            let named = scalar_i64(&pool, &format!("SELECT count(*) FROM \"{table}\" WHERE \"id_\" LIKE 'p-%' AND \"geom_\" LIKE 'a property%'")).await;
            assert_eq!(named, 3, "{mode}: id and geom properties kept beside the loader's columns");
        });
    }
}

#[test]
fn an_input_published_by_a_concurrent_run_is_not_appended_twice() {
    let dir = tempfile::tempdir().unwrap();
    let table = unique("ledger_race");
    let small = dir.path().join("a.geojsonl");
    write_points(&small, 10);
    let big = dir.path().join("big.geojsonl");
    write_points(&big, 60_000);
    let big = big.to_str().unwrap().to_string();
    let url = database_url();
    // Run X: the whole directory, the small input first (inputs load in name order).
    let x = spawn(&[
        "--input",
        dir.path().to_str().unwrap(),
        "--output",
        &url,
        "--table",
        &table,
        "--mode",
        "append",
        "--checkpoint-every",
        "5000",
    ]);
    wait_for_checkpoint(&big);
    // Run Y (another run key: other inputs) publishes the small input meanwhile.
    let y = run(&[
        "--input",
        small.to_str().unwrap(),
        "--output",
        &url,
        "--table",
        &table,
        "--mode",
        "append",
    ]);
    y.assert_code(0);
    assert_eq!(y.count("written"), 10);
    let x = Run::from_output(x.wait_with_output().unwrap());
    x.assert_code(0);
    rt().block_on(async {
        let pool = pool().await;
        let n = scalar_i64(&pool, &format!("SELECT count(*) FROM \"{table}\"")).await;
        assert_eq!(n, 60_010, "the small input once, not twice");
    });
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
