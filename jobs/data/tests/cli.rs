//! The command-line contract: schema drift, usage errors, config resolution.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use serde_json::Value;
use support::*;

#[test]
fn checked_in_schema_matches_the_config() {
    let out = etl_data().arg("--print-schema").output().unwrap();
    assert!(out.status.success());
    let printed: Value = serde_json::from_slice(&out.stdout).unwrap();
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../schemas/etl-data.json");
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let stored: Value = serde_json::from_str(&text).unwrap();
    assert_eq!(
        printed, stored,
        "schemas/etl-data.json is out of date: regenerate with `etl-data --print-schema > schemas/etl-data.json`"
    );
}

#[test]
fn usage_errors_exit_64() {
    run(&["--output", "x.geojsonl"]).assert_code(64);
    let r = run(&["--input", "a.geojsonl", "--output", &database_url()]);
    r.assert_code(64);
    assert!(r.error().contains("--table"), "{}", r.error());
    run(&["--input", "a.geojsonl", "--output", "out.txt"]).assert_code(64);
    run(&[
        "--input",
        "a",
        "--output",
        "postgres://x/y",
        "--table",
        "t",
        "--mode",
        "upsert",
    ])
    .assert_code(64);
    run(&[
        "--input",
        "a",
        "--output",
        "o.geojsonl",
        "--profile",
        "nope",
    ])
    .assert_code(64);
}

#[test]
fn retention_is_a_clap_subcommand() {
    // Listed in the load's help, with its own help.
    let help = run(&["--help"]);
    help.assert_code(0);
    assert!(help.stdout.contains("retention"), "{}", help.stdout);
    let sub = run(&["retention", "--help"]);
    sub.assert_code(0);
    assert!(sub.stdout.contains("--older-than"), "{}", sub.stdout);
    assert!(!sub.stdout.contains("--where"), "{}", sub.stdout);
    // The load's flags are not retention's, and a load cannot be mixed with a subcommand.
    let r = run(&["retention", "--input", "a.geojsonl"]);
    r.assert_code(64);
    assert!(r.stderr.contains("--input"), "{}", r.stderr);
    let r = run(&[
        "--output",
        "o.geojsonl",
        "retention",
        "--older-than",
        "30d",
        "--output-prefix",
        "/tmp/x",
    ]);
    r.assert_code(64);
    assert!(
        r.stderr.contains("--output is not a flag of `retention`"),
        "{}",
        r.stderr
    );
    // The runner's flags reach the subcommand, before or after its name.
    let args = ["--older-than", "30d", "--output-prefix", "/tmp/x"];
    let mut after = vec!["retention"];
    after.extend(args);
    after.extend(["--profile", "nope"]);
    let r = run(&after);
    r.assert_code(64);
    assert!(r.stderr.contains("nope"), "{}", r.stderr);
    let mut before = vec!["--profile", "nope", "retention"];
    before.extend(args);
    let r = run(&before);
    r.assert_code(64);
    assert!(r.stderr.contains("nope"), "{}", r.stderr);
    // A file called like a subcommand is still an input when given as a flag value.
    let dir = tempfile::tempdir().unwrap();
    let r = run(&[
        "--input",
        "retention",
        "--output",
        dir.path().join("o.geojsonl").to_str().unwrap(),
    ]);
    r.assert_code(66);
    assert_eq!(r.summary["job"], "etl-data", "{}", r.stdout);
    assert!(r.error().contains("retention: not found"), "{}", r.stdout);
}

#[test]
fn flags_come_from_env_and_profile_defaults_apply_below_them() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("o.geojsonl");
    let input = repo_fixture("data/sites.geojson");
    // Everything from the environment.
    let r = Run::from_output(
        etl_data()
            .env("ETL_INPUT", input.to_str().unwrap())
            .env("ETL_OUTPUT", out.to_str().unwrap())
            .output()
            .unwrap(),
    );
    r.assert_code(0);
    assert_eq!(r.count("written"), 5);
    assert!(out.exists());
    // The summary is the last stdout line, with the metrics line (EMF) before it.
    let lines: Vec<&str> = r.stdout.lines().collect();
    let emf: Value = serde_json::from_str(lines[lines.len() - 2]).unwrap();
    assert_eq!(emf["_aws"]["CloudWatchMetrics"][0]["Namespace"], "TakEtl");
    assert_eq!(emf["FeaturesWritten"], 5.0);
    assert_eq!(r.summary["profile"], "dev-test");
}

#[test]
fn unknown_input_format_is_bad_input() {
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("blob.bin");
    std::fs::write(&input, b"\x89PNG\r\n\x1a\n not geodata").unwrap();
    let r = run(&[
        "--input",
        input.to_str().unwrap(),
        "--output",
        dir.path().join("o.geojsonl").to_str().unwrap(),
    ]);
    r.assert_code(65);
    assert!(
        r.error().contains("unsupported input format"),
        "{}",
        r.error()
    );
    let empty = dir.path().join("empty.geojsonl");
    std::fs::write(&empty, b"").unwrap();
    let r = run(&[
        "--input",
        empty.to_str().unwrap(),
        "--output",
        dir.path().join("o.geojsonl").to_str().unwrap(),
    ]);
    r.assert_code(65);
    assert!(r.error().contains("no features"), "{}", r.error());
}

#[test]
fn batch_array_children_split_the_inputs_exactly() {
    let dir = tempfile::tempdir().unwrap();
    let inputs = dir.path().join("in");
    std::fs::create_dir(&inputs).unwrap();
    for i in 0..9 {
        let line = format!(
            r#"{{"type":"Feature","id":{i},"properties":{{"file":{i}}},"geometry":{{"type":"Point","coordinates":[{i},1]}}}}"#
        );
        std::fs::write(inputs.join(format!("f{i}.geojsonl")), line + "\n").unwrap();
    }
    // One config for every child; {shard} gives each its own output.
    let pattern = dir.path().join("out-{shard}.geojsonl");
    let child_run = |child: u32, output: &str| {
        Run::from_output(
            etl_data()
                .env("AWS_BATCH_JOB_ID", format!("job:{child}"))
                .env("AWS_BATCH_JOB_ARRAY_INDEX", child.to_string())
                .env("AWS_BATCH_JOB_ARRAY_SIZE", "3")
                .args(["--input", inputs.to_str().unwrap(), "--output", output])
                .output()
                .unwrap(),
        )
    };
    let mut seen = Vec::new();
    for child in 0..3 {
        let r = child_run(child, pattern.to_str().unwrap());
        r.assert_code(0);
        assert_eq!(r.summary["batch"]["array_index"], child);
        let out = dir.path().join(format!("out-{child}.geojsonl"));
        if out.exists() {
            for line in std::fs::read_to_string(&out).unwrap().lines() {
                let v: Value = serde_json::from_str(line).unwrap();
                seen.push(v["id"].as_i64().unwrap());
            }
        } else {
            assert_eq!(
                r.status(),
                "skipped",
                "a child without inputs writes nothing"
            );
        }
    }
    seen.sort();
    assert_eq!(
        seen,
        (0..9).collect::<Vec<i64>>(),
        "every input in exactly one child"
    );
    // Without {shard} the children would overwrite each other's output: refused.
    let r = child_run(0, dir.path().join("same.geojsonl").to_str().unwrap());
    r.assert_code(64);
    assert!(r.error().contains("{shard}"), "{}", r.error());
}

#[test]
fn gzipped_inputs_are_read_and_corrupt_gzip_is_bad_input() {
    use std::io::Write;
    let dir = tempfile::tempdir().unwrap();
    let plain = std::fs::read(repo_fixture("data/tracks.geojsonl")).unwrap();
    let gz = dir.path().join("tracks.geojsonl.gz");
    let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    enc.write_all(&plain).unwrap();
    let bytes = enc.finish().unwrap();
    std::fs::write(&gz, &bytes).unwrap();
    let out = dir.path().join("o.geojsonl");
    let r = run(&[
        "--input",
        gz.to_str().unwrap(),
        "--output",
        out.to_str().unwrap(),
    ]);
    r.assert_code(0);
    assert_eq!(r.count("written"), 4);
    let bad = dir.path().join("broken.geojsonl.gz");
    std::fs::write(&bad, &bytes[..bytes.len() / 2]).unwrap();
    let r = run(&[
        "--input",
        bad.to_str().unwrap(),
        "--output",
        dir.path().join("o2.geojsonl").to_str().unwrap(),
    ]);
    r.assert_code(65);
    assert!(!dir.path().join("o2.geojsonl").exists());
}
