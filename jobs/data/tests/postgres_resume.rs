//! etl-data into a real PostGIS, interrupted: kill -9 and SIGTERM mid-load, then a rerun;
//! concurrent runs of one run key, and of two run keys sharing an input.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::time::Duration;

use support::*;

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

/// Run X loads a directory (a small input, then a big one); while X loads the big one, run Y
/// (another run key: other inputs) loads the small input alone. The small input ends up in
/// the table once, whichever way the rows travel.
fn concurrent_runs_sharing_an_input(table_exists: bool) {
    let dir = tempfile::tempdir().unwrap();
    let table = unique("ledger_race");
    let small = dir.path().join("a.geojsonl");
    write_points(&small, 10);
    let big = dir.path().join("big.geojsonl");
    write_points(&big, 60_000);
    let big = big.to_str().unwrap().to_string();
    let url = database_url();
    if table_exists {
        create_points_table(&table);
    }
    let x_args = [
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
        "--append-path",
        "direct",
    ];
    // Run X: the whole directory, the small input first (inputs load in name order).
    let x = spawn(&x_args);
    wait_for_checkpoint(&big);
    let y = run(&[
        "--input",
        small.to_str().unwrap(),
        "--output",
        &url,
        "--table",
        &table,
        "--mode",
        "append",
        "--append-path",
        "direct",
    ]);
    y.assert_code(0);
    let x = Run::from_output(x.wait_with_output().unwrap());
    if table_exists {
        // Straight into the table: X committed the small input before Y started, so Y finds
        // it in the ledger, takes it over and loads nothing.
        x.assert_code(0);
        assert_eq!(y.count("written"), 0, "{}", y.stdout);
        assert_eq!(y.count("skipped_inputs"), 1);
    } else {
        // Both built the table; Y published first with the small input, so X's stage (which
        // cannot give the small input back) is dropped: exit 75, and the retry appends the
        // rest into the table Y created.
        assert_eq!(y.count("written"), 10);
        x.assert_code(75);
        assert!(
            x.error().contains("created by another run"),
            "{}",
            x.error()
        );
        let retry = run(&x_args);
        retry.assert_code(0);
        assert_eq!(retry.count("skipped_inputs"), 1, "{}", retry.stdout);
    }
    rt().block_on(async {
        let pool = pool().await;
        let n = scalar_i64(&pool, &format!("SELECT count(*) FROM \"{table}\"")).await;
        assert_eq!(n, 60_010, "the small input once, not twice");
    });
}

#[test]
fn an_input_published_by_a_concurrent_run_is_not_appended_twice() {
    concurrent_runs_sharing_an_input(false);
}

#[test]
fn an_input_loaded_straight_into_the_table_by_a_concurrent_run_is_not_appended_twice() {
    concurrent_runs_sharing_an_input(true);
}
