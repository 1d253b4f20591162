//! `--mode append` (the default) into PostGIS: a missing table is built like `replace` builds
//! it; an existing table receives the rows straight away (`--append-path direct`, which `auto`
//! picks for a table that is not small beside the input; the swap is in postgres_swap.rs), in
//! checkpointed transactions that also record them in the table's ledger, so kills, abandoned
//! runs and failures never leave a row twice or half an input.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::time::Duration;

use support::*;

fn count(table: &str) -> i64 {
    rt().block_on(async {
        let pool = pool().await;
        scalar_i64(&pool, &format!("SELECT count(*) FROM \"{table}\"")).await
    })
}

fn distinct_ids(table: &str) -> i64 {
    rt().block_on(async {
        let pool = pool().await;
        scalar_i64(
            &pool,
            &format!("SELECT count(DISTINCT id) FROM \"{table}\""),
        )
        .await
    })
}

fn columns(table: &str) -> Vec<String> {
    column_types_sync(table).into_keys().collect()
}

fn column_types_sync(table: &str) -> std::collections::BTreeMap<String, String> {
    rt().block_on(async { column_types(&pool().await, table).await })
}

/// Waits until rows of a running load are visible in the table (so at least one batch
/// transaction committed), then kills the loader with SIGKILL. Returns the rows it left.
fn kill_once_rows_show(child: &mut std::process::Child, table: &str, more_than: i64) -> i64 {
    wait_for("a committed batch", Duration::from_secs(120), || {
        count(table) > more_than
    });
    child.kill().unwrap(); // SIGKILL
    child.wait().unwrap();
    count(table)
}

fn load_args<'a>(input: &'a str, url: &'a str, table: &'a str) -> Vec<&'a str> {
    vec![
        "--input",
        input,
        "--output",
        url,
        "--table",
        table,
        "--checkpoint-every",
        "5000",
        "--append-path",
        "direct",
    ]
}

/// Reruns until the lease of a killed process is gone (a 75 in between is what Batch retries).
fn rerun(args: &[&str]) -> Run {
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
fn append_into_a_missing_table_builds_it_like_replace() {
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("points.geojsonl");
    write_points(&input, 3000);
    let table = unique("built");
    let url = database_url();
    let args = [
        "--input",
        input.to_str().unwrap(),
        "--output",
        &url,
        "--table",
        &table,
    ];
    let r = run(&args);
    r.assert_code(0);
    assert_eq!(r.count("written"), 3000);
    rt().block_on(async {
        let pool = pool().await;
        // Indexed after the bulk load, as replace does; id gets a plain index (later appends
        // may repeat ids), not a key.
        let id_index = scalar_i64(
            &pool,
            &format!(
                "SELECT count(*) FROM pg_index i JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = i.indkey[0] \
                 WHERE i.indrelid = '\"{table}\"'::regclass AND a.attname = 'id' AND NOT i.indisunique"
            ),
        )
        .await;
        assert_eq!(id_index, 1, "a plain index on id");
        let gist = scalar_i64(&pool, &format!(
            "SELECT count(*) FROM pg_indexes WHERE tablename = '{table}' AND indexdef LIKE '%USING gist%'"
        )).await;
        assert_eq!(gist, 1);
        let stages = scalar_i64(&pool, &format!(
            "SELECT count(*) FROM pg_tables WHERE tablename LIKE '{table}__etl_%'"
        )).await;
        assert_eq!(stages, 0, "the stage became the table");
    });
    // The table's ledger knows the input: a run with other options skips it.
    let again = run(&[
        "--input",
        input.to_str().unwrap(),
        "--output",
        &url,
        "--table",
        &table,
        "--format",
        "geojsonseq",
    ]);
    again.assert_code(0);
    assert_eq!(again.count("skipped_inputs"), 1, "{}", again.stdout);
    assert_eq!(count(&table), 3000);
}

#[test]
fn kill_9_mid_append_into_an_existing_table_then_rerun_loads_each_feature_once() {
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("big.geojsonl");
    let n = 100_000i64;
    write_points(&input, n as u64);
    let input = input.to_str().unwrap().to_string();
    let table = unique("kill_direct");
    create_points_table(&table);
    rt().block_on(async {
        let pool = pool().await;
        sqlx::query(sqlx::AssertSqlSafe(format!(
            "INSERT INTO \"{table}\" (id, name, geom) SELECT 1000000 + g, 'old', ST_SetSRID(ST_MakePoint(g, 1), 4326) FROM generate_series(1, 5) g"
        )))
        .execute(&pool)
        .await
        .unwrap();
    });
    let url = database_url();
    let args = load_args(&input, &url, &table);
    let mut child = spawn(&args);
    let left = kill_once_rows_show(&mut child, &table, 5);
    assert!(left > 5 && left < n + 5, "killed mid-load: {left} rows");
    let committed = rt().block_on(async { committed_next(&pool().await, &input).await });
    assert_eq!(
        left - 5,
        committed,
        "the rows in the table are exactly the checkpointed ones"
    );
    let r = rerun(&args);
    r.assert_code(0);
    assert_eq!(r.status(), "succeeded");
    assert_eq!(
        r.count("read"),
        n as u64,
        "counts include the killed attempt's committed work"
    );
    assert_eq!(
        (count(&table), distinct_ids(&table)),
        (n + 5, n + 5),
        "every feature once, the old rows kept"
    );
    let again = run(&args);
    again.assert_code(0);
    assert_eq!(again.status(), "skipped");
    assert_eq!(count(&table), n + 5);
}

#[test]
fn an_abandoned_partial_append_is_removed_by_the_next_run_that_loads_the_input() {
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("big.geojsonl");
    let n = 60_000i64;
    write_points(&input, n as u64);
    let input = input.to_str().unwrap().to_string();
    let table = unique("abandoned");
    create_points_table(&table);
    let url = database_url();
    let first = load_args(&input, &url, &table);
    let mut child = spawn(&first);
    let left = kill_once_rows_show(&mut child, &table, 0);
    assert!(left > 0 && left < n, "killed mid-load: {left} rows");
    // Another run (another run key: the format is spelled out) loads the same input: the
    // killed run's rows go, and the input is loaded whole, once.
    let mut other = load_args(&input, &url, &table);
    other.extend(["--format", "geojsonseq"]);
    let r = rerun(&other);
    r.assert_code(0);
    assert_eq!(r.count("written"), n as u64);
    assert_eq!((count(&table), distinct_ids(&table)), (n, n));
    // The killed run, rerun later, finds the input in the table and adds nothing.
    let late = rerun(&first);
    late.assert_code(0);
    assert_eq!(late.count("written"), 0, "{}", late.stdout);
    assert_eq!((count(&table), distinct_ids(&table)), (n, n));
}

/// 10,000 good features with a property the table has no column for, then 100 with
/// coordinates out of range.
fn good_then_bad(path: &std::path::Path) {
    use std::io::Write;
    let mut f = std::io::BufWriter::new(std::fs::File::create(path).unwrap());
    for i in 0..10_100 {
        let lat = if i < 10_000 { 10 } else { 95 };
        writeln!(f, r#"{{"type":"Feature","id":{i},"properties":{{"extra":{i}}},"geometry":{{"type":"Point","coordinates":[1,{lat}]}}}}"#).unwrap();
    }
    f.flush().unwrap();
}

#[test]
fn an_append_that_fails_for_good_leaves_no_rows_and_no_columns() {
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("good_then_bad.geojsonl");
    good_then_bad(&input);
    let table = unique("undone");
    rt().block_on(async {
        let pool = pool().await;
        sqlx::raw_sql(sqlx::AssertSqlSafe(format!(
            "CREATE TABLE \"{table}\" (id bigint, geom geometry(Geometry,4326));
             INSERT INTO \"{table}\" VALUES (-1, 'SRID=4326;POINT(0 0)'), (-2, 'SRID=4326;POINT(0 1)');"
        )))
        .execute(&pool)
        .await
        .unwrap();
    });
    let url = database_url();
    let r = run(&[
        "--input",
        input.to_str().unwrap(),
        "--output",
        &url,
        "--table",
        &table,
        "--checkpoint-every",
        "1000",
        "--max-rejects",
        "10",
        "--append-path",
        "direct",
    ]);
    r.assert_code(65);
    assert!(r.error().contains("--max-rejects"), "{}", r.error());
    // Batches with the new column had committed before the rejects piled up (the log says
    // so); the failure took all of it back.
    assert!(
        r.stderr.contains("added columns for new properties"),
        "{}",
        r.stderr
    );
    let undone: u64 = r
        .stderr
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .find(|v| v["message"] == "run failed for good: removed every row it had added")
        .and_then(|v| v["rows"].as_u64())
        .expect("the undo is logged with its row count");
    assert_eq!(undone, 8192, "two read batches had committed");
    assert_eq!(count(&table), 2, "only the rows that were there before");
    assert_eq!(
        columns(&table),
        vec!["geom".to_string(), "id".to_string()],
        "the added column is gone"
    );
}

#[test]
fn new_properties_past_max_new_columns_fail_with_65_before_changing_anything() {
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("wide.geojsonl");
    let props: serde_json::Map<String, serde_json::Value> = (0..70)
        .map(|i| (format!("p{i}"), serde_json::json!(i)))
        .collect();
    let mut text = String::new();
    for i in 0..5 {
        let f = serde_json::json!({"type": "Feature", "id": i, "properties": props,
            "geometry": {"type": "Point", "coordinates": [i, 1]}});
        text.push_str(&f.to_string());
        text.push('\n');
    }
    std::fs::write(&input, text).unwrap();
    let url = database_url();
    for mode in ["append", "upsert"] {
        let table = unique(&format!("wide_{mode}"));
        rt().block_on(async {
            let pool = pool().await;
            sqlx::raw_sql(sqlx::AssertSqlSafe(format!(
                "CREATE TABLE \"{table}\" (id bigint UNIQUE, geom geometry(Geometry,4326))"
            )))
            .execute(&pool)
            .await
            .unwrap();
        });
        let args = [
            "--input",
            input.to_str().unwrap(),
            "--output",
            &url,
            "--table",
            &table,
            "--mode",
            mode,
            "--key",
            "id",
        ];
        let args = if mode == "append" {
            &args[..8]
        } else {
            &args[..]
        };
        let r = run(args);
        r.assert_code(65);
        assert!(r.error().contains("70 properties"), "{mode}: {}", r.error());
        assert!(
            r.error().contains("--max-new-columns 64"),
            "{mode}: {}",
            r.error()
        );
        assert_eq!(columns(&table).len(), 2, "{mode}: no column added");
        assert_eq!(count(&table), 0, "{mode}: no row");
        let mut wider = args.to_vec();
        wider.extend(["--max-new-columns", "70"]);
        run(&wider).assert_code(0);
        assert_eq!(columns(&table).len(), 72, "{mode}");
        assert_eq!(count(&table), 5, "{mode}");
    }
}

#[test]
fn a_new_column_behind_a_long_reader_waits_boundedly_and_commits_nothing_without_it() {
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("points.geojsonl");
    write_points(&input, 100);
    let table = unique("col_locked");
    rt().block_on(async {
        let pool = pool().await;
        sqlx::raw_sql(sqlx::AssertSqlSafe(format!(
            "CREATE TABLE \"{table}\" (id bigint, geom geometry(Geometry,4326))"
        )))
        .execute(&pool)
        .await
        .unwrap();
    });
    let url = database_url();
    let rt = rt();
    let reader = rt.block_on(async {
        let pool = sqlx::postgres::PgPoolOptions::new()
            .max_connections(1)
            .connect(&database_url())
            .await
            .unwrap();
        let mut tx = pool.begin().await.unwrap();
        sqlx::query(sqlx::AssertSqlSafe(format!(
            "LOCK TABLE \"{table}\" IN ACCESS SHARE MODE"
        )))
        .execute(&mut *tx)
        .await
        .unwrap();
        tx
    });
    let args = [
        "--input",
        input.to_str().unwrap(),
        "--output",
        &url,
        "--table",
        &table,
        "--lock-timeout",
        "150ms",
        "--lock-retries",
        "2",
    ];
    let r = run(&args);
    r.assert_code(75);
    assert!(
        r.error().contains(&table) && r.error().contains("AccessShareLock"),
        "{}",
        r.error()
    );
    rt.block_on(reader.rollback()).unwrap();
    assert_eq!(
        columns(&table).len(),
        2,
        "no column without the rows that need it"
    );
    assert_eq!(count(&table), 0);
    // The retry, with the reader gone, adds the columns and the rows together.
    let again = run(&args);
    again.assert_code(0);
    assert_eq!(count(&table), 100);
    assert_eq!(column_types_sync(&table)["name"], "text");
}

#[test]
fn a_run_finding_its_input_half_loaded_by_a_live_run_waits_for_it_with_75() {
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("big.geojsonl");
    let n = 60_000i64;
    write_points(&input, n as u64);
    let input = input.to_str().unwrap().to_string();
    let table = unique("busy");
    create_points_table(&table);
    let url = database_url();
    // X stops after its first committed batch until the test opens the gate.
    let gate = dir.path().join("gate");
    let x = etl_data()
        .env(
            "ETL_FAULT",
            format!("data.batch_committed={}", gate.display()),
        )
        .args(load_args(&input, &url, &table))
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let reached = dir.path().join("gate.1.reached");
    wait_for("X's first batch", Duration::from_secs(120), || {
        reached.exists()
    });
    let held = count(&table);
    assert!(held > 0 && held < n, "X is half way: {held} rows");
    // Another run key, the same input, while X holds half of it: refused, nothing loaded.
    let mut other = load_args(&input, &url, &table);
    other.extend(["--format", "geojsonseq"]);
    let y = run(&other);
    y.assert_code(75);
    assert!(y.error().contains("is being loaded into"), "{}", y.error());
    assert_eq!(count(&table), held, "Y added nothing");
    // Every later stop of X opens at once.
    for i in 1..=100 {
        std::fs::write(dir.path().join(format!("gate.{i}")), b"").unwrap();
    }
    let x = Run::from_output(x.wait_with_output().unwrap());
    x.assert_code(0);
    // Y's retry, once X is done, finds the input in the table.
    let retry = run(&other);
    retry.assert_code(0);
    assert_eq!(retry.count("written"), 0, "{}", retry.stdout);
    assert_eq!(retry.count("skipped_inputs"), 1);
    assert_eq!((count(&table), distinct_ids(&table)), (n, n));
}
