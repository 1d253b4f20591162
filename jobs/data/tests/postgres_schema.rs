//! etl-data into a real PostGIS: column types (widened, existing, numeric and user types),
//! typed geometry columns, ids that repeat, odd property names and 63-byte table names.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use support::*;

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
fn typed_geometry_columns_reject_other_types_and_take_their_own_srid() {
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
    // Asking for WGS 84 in a Web Mercator column is a configuration error naming both.
    let r = run(&[
        "--input",
        input.to_str().unwrap(),
        "--output",
        &database_url(),
        "--table",
        &mercator,
        "--t-srs",
        "EPSG:4326",
    ]);
    r.assert_code(78);
    assert!(
        r.error().contains("SRID 3857") && r.error().contains("SRID 4326"),
        "{}",
        r.error()
    );
    // Without --t-srs the column's own SRID is written: positions are moved into Web Mercator.
    let r = run(&[
        "--input",
        input.to_str().unwrap(),
        "--output",
        &database_url(),
        "--table",
        &mercator,
    ]);
    r.assert_code(0);
    let srids: Vec<(i32, i64)> = rows(&format!(
        "SELECT ST_SRID(geom), count(*) FROM \"{mercator}\" GROUP BY 1"
    ));
    assert_eq!(srids, [(3857, 5)]);
    let far: Vec<(f64,)> = rows(&format!(
        "SELECT max(abs(ST_XMax(geom)))::float8 FROM \"{mercator}\""
    ));
    assert!(far[0].0 > 1000.0, "metres, not degrees: {far:?}");
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
