//! PostGIS loads killed at named points (test-only `ETL_FAULT`): after a batch commit, just
//! before and just after the final commit. For `replace`, and for `append` by swap, the table
//! is the old one or the new one, whole; for `append` straight into an existing table it holds
//! the old rows plus a committed prefix of the input, never a row twice. The rerun ends with exactly the rows of
//! one clean run, and a third run is a no-op.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use support::*;

const OLD: i64 = 300;
const NEW: i64 = 5000;

/// (rows, distinct ids) of `table`.
fn counts(rt: &tokio::runtime::Runtime, table: &str) -> (i64, i64) {
    rt.block_on(async {
        let pool = pool().await;
        (
            scalar_i64(&pool, &format!("SELECT count(*) FROM {table}")).await,
            scalar_i64(&pool, &format!("SELECT count(DISTINCT id) FROM {table}")).await,
        )
    })
}

/// `mode` is `replace`, `append` (by swap: the table is small) or `direct` (append with
/// `--append-path direct`).
fn load(input: &std::path::Path, table: &str, mode: &str, fault: Option<&str>) -> Run {
    let mut cmd = etl_data();
    let (mode, path) = match mode {
        "direct" => ("append", "direct"),
        m => (m, "auto"),
    };
    cmd.args([
        "--input",
        input.to_str().unwrap(),
        "--output",
        &database_url(),
        "--table",
        table,
        "--mode",
        mode,
        "--checkpoint-every",
        "1000",
        "--append-path",
        path,
    ]);
    if let Some(f) = fault {
        cmd.env("ETL_FAULT", f);
    }
    Run::from_output(cmd.output().unwrap())
}

fn killed(r: &Run) -> bool {
    r.code == -1 && r.stderr.contains("fault injected at")
}

#[test]
fn a_killed_load_leaves_the_old_or_the_new_table_and_the_rerun_finishes() {
    let rt = rt();
    let dir = tempfile::tempdir().unwrap();
    let old_in = dir.path().join("old.geojsonl");
    let new_in = dir.path().join("new.geojsonl");
    write_points(&old_in, OLD as u64);
    write_points(&new_in, NEW as u64);
    let points = [
        "data.batch_committed@2",
        "data.publish.before_commit",
        "data.publish.after_commit",
    ];
    let mut covered = 0;
    for mode in ["replace", "append", "direct"] {
        for point in points {
            let table = unique(&format!("faults_{mode}")).replace('-', "_");
            // Built by the same mode (append into a missing table builds it, with a plain
            // index on id, so the new input's ids may repeat the old ones).
            load(&old_in, &table, mode, None).assert_code(0);
            assert_eq!(counts(&rt, &table), (OLD, OLD));
            let r = load(&new_in, &table, mode, Some(point));
            assert!(killed(&r), "{mode} {point}: {}", r.stderr);
            let (rows, distinct) = counts(&rt, &table);
            match mode {
                // One transaction swaps the table: old or new, whole.
                "replace" if point == "data.publish.after_commit" => {
                    assert_eq!((rows, distinct), (NEW, NEW), "{mode} {point}")
                }
                "replace" => assert_eq!((rows, distinct), (OLD, OLD), "{mode} {point}"),
                "append" if point == "data.publish.after_commit" => {
                    assert_eq!((rows, distinct), (OLD + NEW, NEW), "{mode} {point}")
                }
                "append" => assert_eq!((rows, distinct), (OLD, OLD), "{mode} {point}"),
                // Committed batches are visible; none twice.
                _ => {
                    assert!((OLD..=OLD + NEW).contains(&rows), "{mode} {point}: {rows}");
                    let new_rows = rows - OLD;
                    assert!(
                        new_rows % 1000 == 0 || new_rows == NEW,
                        "{mode} {point}: {new_rows} new rows is not a committed prefix"
                    );
                }
            }
            let r = load(&new_in, &table, mode, None);
            r.assert_code(0);
            let want = if mode == "replace" {
                (NEW, NEW)
            } else {
                (OLD + NEW, NEW)
            };
            assert_eq!(counts(&rt, &table), want, "{mode} {point}: after the rerun");
            let again = load(&new_in, &table, mode, None);
            again.assert_code(0);
            assert_eq!(again.status(), "skipped", "{mode} {point}: a third run");
            assert_eq!(
                counts(&rt, &table),
                want,
                "{mode} {point}: after the third run"
            );
            covered += 1;
        }
    }
    assert_eq!(covered, 9);
}
