//! File and S3 outputs of etl-data appear whole or not at all: the process killed before the
//! local rename, before and after the multipart Complete and between parts; S3 requests failed,
//! cut, or answered after they took effect (through the fault proxy). After each fault the
//! output is absent or complete (every input line once), and a rerun writes it complete.
//! (PostGIS loads have their own kill -9 tests in postgres_resume.rs and postgres_append.rs.)
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::path::Path;

use etl_core::store::Location;
use etl_testkit::FaultProxy;
use support::*;

fn killed(r: &Run) -> bool {
    r.code == -1 && r.stderr.contains("fault injected at")
}

/// Whether `bytes` is the complete GeoJSON sequence of `n` points (ids 0..n once each).
#[track_caller]
fn complete(bytes: &[u8], n: u64, what: &str) {
    let text = std::str::from_utf8(bytes).unwrap();
    let mut ids: Vec<u64> = text
        .lines()
        .map(|l| {
            let v: serde_json::Value = serde_json::from_str(l).unwrap();
            v["id"].as_u64().unwrap()
        })
        .collect();
    ids.sort_unstable();
    assert_eq!(
        ids,
        (0..n).collect::<Vec<_>>(),
        "{what}: every feature once"
    );
}

fn run_to(input: &Path, output: &str, extra: &[(&str, String)]) -> Run {
    let mut cmd = etl_data();
    // A killed run's S3 lease outlives it by this much.
    cmd.args([
        "--input",
        input.to_str().unwrap(),
        "--output",
        output,
        "--lease-ttl",
        "2s",
    ]);
    for (k, v) in extra {
        cmd.env(k, v);
    }
    Run::from_output(cmd.output().unwrap())
}

#[test]
fn a_local_output_is_absent_or_complete() {
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("in.geojsonl");
    write_points(&input, 20_000);
    let out = dir.path().join("out.geojsonl");
    let target = out.to_str().unwrap();
    let r = run_to(
        &input,
        target,
        &[("ETL_FAULT", "store.file.before_rename".into())],
    );
    assert!(killed(&r), "{}", r.stderr);
    assert!(!out.exists(), "a killed run published a file");
    run_to(&input, target, &[]).assert_code(0);
    complete(&std::fs::read(&out).unwrap(), 20_000, "rerun");
}

#[test]
fn an_s3_output_is_absent_or_complete() {
    let rt = rt();
    let (store, bucket) = rt.block_on(etl_testkit::store_with_bucket(
        &s3_endpoint(),
        &unique("data-faults"),
    ));
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("in.geojsonl");
    // About 12 MB of output: three 5 MiB parts.
    let n = 90_000;
    write_points(&input, n);
    let proxy = FaultProxy::start(&s3_endpoint()).unwrap();
    let cases = etl_testkit::multipart_faults();
    let count = cases.len();
    let mut covered = 0;
    for (i, (what, rules, fault)) in cases.into_iter().enumerate() {
        let url = format!("s3://{bucket}/case{i}.geojsonl");
        let mut env = vec![
            ("ETL_S3_ENDPOINT", proxy.endpoint()),
            ("ETL_S3_PART_SIZE", (5 << 20).to_string()),
        ];
        if let Some(f) = fault {
            env.push(("ETL_FAULT", f.to_owned()));
        }
        proxy.arm(rules.clone());
        let r = run_to(&input, &url, &env);
        let matched: Vec<u32> = (0..rules.len()).map(|k| proxy.matched(k)).collect();
        proxy.disarm();
        if fault.is_some() {
            assert!(killed(&r), "{what}: {}", r.stderr);
        }
        assert!(
            matched.iter().all(|m| *m > 0),
            "{what}: a rule never matched"
        );
        let now = rt
            .block_on(store.get(&Location::parse(&url).unwrap()))
            .unwrap();
        match now {
            None => assert_ne!(r.code, 0, "{what}: no output but success"),
            Some((bytes, _)) => complete(&bytes, n, what),
        }
        // The rerun: exit 75 while the killed run's lease is live, then it runs.
        let start = std::time::Instant::now();
        let again = loop {
            let r = run_to(&input, &url, &[("ETL_S3_PART_SIZE", (5 << 20).to_string())]);
            if r.code == 75 && r.error().contains("is being processed by") {
                assert!(
                    start.elapsed() < std::time::Duration::from_secs(60),
                    "{what}: the lease never expired"
                );
                continue;
            }
            break r;
        };
        again.assert_code(0);
        let (bytes, _) = rt
            .block_on(store.get(&Location::parse(&url).unwrap()))
            .unwrap()
            .unwrap();
        complete(&bytes, n, &format!("{what}, rerun"));
        covered += 1;
    }
    assert_eq!(covered, count);
}
