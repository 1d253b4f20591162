//! Scheduled runs: the logical time of the tick is the run's identity. The same tick delivered
//! twice does the work once, even when the inputs changed in between; another tick (or a
//! backfilled one) is another run.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use support::*;

fn lines(p: &std::path::Path) -> usize {
    std::fs::read_to_string(p).unwrap().lines().count()
}

#[test]
fn a_tick_delivered_twice_runs_once_and_a_backfill_runs_its_own_tick() {
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("in.geojsonl");
    let output = dir.path().join("out.geojsonl");
    write_points(&input, 3);
    let tick = |t: &str| {
        Run::from_output(
            etl_data()
                .env("ETL_LOGICAL_TIME", t)
                .args(["--input", input.to_str().unwrap()])
                .args(["--output", output.to_str().unwrap()])
                .output()
                .unwrap(),
        )
    };
    let first = tick("2026-12-04T02:00:00Z");
    first.assert_code(0);
    assert_eq!(first.status(), "succeeded");
    assert_eq!(first.summary["logical_time"], "2026-12-04T02:00:00Z");
    assert_eq!(lines(&output), 3);

    // The input grows, then the same tick arrives again (EventBridge delivers at least once),
    // this time as the whole rule event: nothing is redone.
    write_points(&input, 5);
    let event = r#"{"version":"0","detail-type":"Scheduled Event","source":"aws.events",
        "time":"2026-12-04T02:00:00Z","resources":["arn:aws:events:us-east-1:1:rule/etl-data"],"detail":{}}"#;
    let again = tick(event);
    again.assert_code(0);
    assert_eq!(again.status(), "skipped", "{}", again.stdout);
    assert_eq!(again.summary["run_key"], first.summary["run_key"]);
    assert_eq!(lines(&output), 3);

    let next = Run::from_output(
        etl_data()
            .args(["--logical-time", "2026-12-04T03:00:00+01:00"])
            .args(["--input", input.to_str().unwrap()])
            .args(["--output", output.to_str().unwrap()])
            .output()
            .unwrap(),
    );
    // 03:00+01:00 is the 02:00Z tick: the same run.
    assert_eq!(next.status(), "skipped");
    // A missed tick backfilled by hand is a run of its own and reads what is there now.
    let backfill = Run::from_output(
        etl_data()
            .args(["--logical-time", "2026-12-03T02:00:00Z"])
            .args(["--input", input.to_str().unwrap()])
            .args(["--output", output.to_str().unwrap()])
            .output()
            .unwrap(),
    );
    backfill.assert_code(0);
    assert_eq!(backfill.status(), "succeeded");
    assert_ne!(backfill.summary["run_key"], first.summary["run_key"]);
    assert_eq!(lines(&output), 5);
}

#[test]
fn a_bad_logical_time_is_a_config_error() {
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("in.geojsonl");
    write_points(&input, 1);
    let r = Run::from_output(
        etl_data()
            .env("ETL_LOGICAL_TIME", "last tuesday")
            .args(["--input", input.to_str().unwrap()])
            .args(["--output", dir.path().join("o.geojsonl").to_str().unwrap()])
            .output()
            .unwrap(),
    );
    r.assert_code(78);
    assert!(r.error().contains("RFC 3339"), "{}", r.error());
    assert!(!dir.path().join("o.geojsonl").exists());
}
