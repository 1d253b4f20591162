//! A reader that panics mid-input (the test-only `sources.read_panic` fault point) is a
//! failure with exit 70 that publishes nothing: no file output appears, and a PostGIS load
//! neither creates nor changes its table.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use support::*;

#[test]
fn a_panicking_reader_publishes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("points.geojsonl");
    write_points(&input, 5000);
    let out = dir.path().join("out.geojsonl");
    let r = Run::from_output(
        etl_data()
            .env("ETL_FAULT", "sources.read_panic@3000")
            .args([
                "--input",
                input.to_str().unwrap(),
                "--output",
                out.to_str().unwrap(),
            ])
            .output()
            .unwrap(),
    );
    r.assert_code(70);
    assert!(r.error().contains("panicked"), "{}", r.error());
    assert!(!out.exists(), "a truncated output was published");

    let table = unique("panicked");
    for mode in ["replace", "append"] {
        let r = Run::from_output(
            etl_data()
                .env("ETL_FAULT", "sources.read_panic@3000")
                .args([
                    "--input",
                    input.to_str().unwrap(),
                    "--output",
                    &database_url(),
                    "--table",
                    &table,
                    "--mode",
                    mode,
                ])
                .output()
                .unwrap(),
        );
        r.assert_code(70);
        let rt = rt();
        let exists: bool = rt.block_on(async {
            let pool = sqlx::postgres::PgPoolOptions::new()
                .max_connections(1)
                .connect(&database_url())
                .await
                .unwrap();
            sqlx::query_scalar("SELECT to_regclass($1) IS NOT NULL")
                .bind(&table)
                .fetch_one(&pool)
                .await
                .unwrap()
        });
        assert!(
            !exists,
            "{mode}: the table was published from a truncated input"
        );
    }
}
