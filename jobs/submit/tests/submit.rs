//! `etl-submit JOB ...` against moto's Batch API (start it with `bash scripts/test.sh`).
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::collections::HashMap;

use aws_sdk_batch::types::JobDetail;
use serde_json::Value;
use support::{Fixture, Moto, fixture, moto, recording_proxy, submit, submit_with, text};

fn stdout_json(out: &std::process::Output) -> Value {
    assert!(
        out.status.success(),
        "etl-submit failed: {:?}\nstdout: {}\nstderr: {}",
        out.status,
        text(&out.stdout),
        text(&out.stderr)
    );
    serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("stdout is not JSON ({e}): {}", text(&out.stdout)))
}

async fn describe(f: &Fixture, ids: &[&str]) -> HashMap<String, JobDetail> {
    let out = f
        .client
        .describe_jobs()
        .set_jobs(Some(ids.iter().map(|s| s.to_string()).collect()))
        .send()
        .await
        .unwrap();
    out.jobs()
        .iter()
        .map(|j| (j.job_id().unwrap().to_owned(), j.clone()))
        .collect()
}

fn strs(v: &[&str]) -> Vec<String> {
    v.iter().map(|s| s.to_string()).collect()
}

/// A job id that exists, to depend on.
async fn some_job(f: &Fixture) -> String {
    let out = f
        .client
        .submit_job()
        .job_name("upstream")
        .job_queue(&f.queue)
        .job_definition(&f.definition)
        .send()
        .await
        .unwrap();
    out.job_id().unwrap().to_owned()
}

#[tokio::test]
async fn every_option_reaches_batch() {
    let f = fixture(&moto()).await;
    let upstream = some_job(&f).await;
    // moto keeps neither retryStrategy nor resourceRequirements overrides on the job: the
    // SubmitJob bodies are recorded on the way to check those.
    let (proxy, log) = recording_proxy(&f.endpoint);
    let out = submit(
        &proxy,
        &[
            "events",
            "--queue",
            &f.queue,
            "--definition",
            &f.definition,
            "--array-size",
            "3",
            "--depends-on",
            &upstream,
            "--param",
            "region=eu=west",
            "--env",
            "ETL_MODE=full",
            "--env",
            "EMPTY=",
            "--vcpus",
            "2",
            "--memory",
            "4096",
            "--attempts",
            "3",
            "--timeout",
            "900",
            "--tag",
            "team=geo",
            "--tag",
            "run=nightly",
            "--name",
            "events-nightly",
            "--",
            "--event",
            "-",
            "--dry-run",
        ],
    );
    let doc = stdout_json(&out);
    let jobs = doc["jobs"].as_array().unwrap();
    assert_eq!(jobs.len(), 1, "{doc}");
    let j = &jobs[0];
    assert_eq!(j["role"], "job");
    assert_eq!(j["jobName"], "events-nightly");
    assert_eq!(j["arraySize"], 3);
    assert_eq!(j["dependsOn"], serde_json::json!([upstream]));
    let id = j["jobId"].as_str().unwrap();

    let d = describe(&f, &[id]).await;
    let job = &d[id];
    assert_eq!(job.job_name(), Some("events-nightly"));
    assert!(
        job.job_queue().unwrap().ends_with(&format!("/{}", f.queue)),
        "{:?}",
        job.job_queue()
    );
    let params = job.parameters().unwrap();
    assert_eq!(params["region"], "eu=west");
    let c = job.container().unwrap();
    assert_eq!(c.command(), strs(&["events", "--event", "-", "--dry-run"]));
    let env: HashMap<_, _> = c
        .environment()
        .iter()
        .map(|kv| (kv.name().unwrap(), kv.value().unwrap_or_default()))
        .collect();
    assert_eq!(env["ETL_MODE"], "full");
    assert_eq!(env["EMPTY"], "");
    assert_eq!(job.timeout().unwrap().attempt_duration_seconds(), Some(900));
    let tags = job.tags().unwrap();
    assert_eq!(
        (tags["team"].as_str(), tags["run"].as_str()),
        ("geo", "nightly")
    );
    assert_eq!(job.array_properties().unwrap().size(), Some(3));
    let deps: Vec<_> = job
        .depends_on()
        .iter()
        .map(|d| d.job_id().unwrap())
        .collect();
    assert_eq!(deps, [upstream.as_str()]);

    let submits: Vec<Value> = log
        .lock()
        .unwrap()
        .iter()
        .filter(|r| r.line.starts_with("POST /v1/submitjob"))
        .map(|r| serde_json::from_str(&r.body).unwrap())
        .collect();
    assert_eq!(submits.len(), 1, "{submits:?}");
    let body = &submits[0];
    assert_eq!(body["retryStrategy"]["attempts"], 3);
    assert_eq!(
        body["containerOverrides"]["resourceRequirements"],
        serde_json::json!([{"type": "VCPU", "value": "2"}, {"type": "MEMORY", "value": "4096"}])
    );
    assert_eq!(body["arrayProperties"]["size"], 3);
}

#[tokio::test]
async fn definition_command_is_kept_without_job_args() {
    let f = fixture(&moto()).await;
    let out = submit(
        &f.endpoint,
        &["data", "--queue", &f.queue, "--definition", &f.definition],
    );
    let doc = stdout_json(&out);
    let j = &doc["jobs"][0];
    let name = j["jobName"].as_str().unwrap();
    assert!(
        name.starts_with("etl-data-2") && name.ends_with('Z'),
        "{name}"
    );
    let id = j["jobId"].as_str().unwrap();
    let d = describe(&f, &[id]).await;
    assert_eq!(d[id].container().unwrap().command(), strs(&["data"]));
    assert!(d[id].array_properties().is_none());
}

#[tokio::test]
async fn queue_from_environment() {
    let f = fixture(&moto()).await;
    let out = submit_with(
        &f.endpoint,
        &["data", "--definition", &f.definition],
        &[("ETL_BATCH_QUEUE", &f.queue)],
    );
    let doc = stdout_json(&out);
    assert_eq!(doc["jobs"][0]["jobQueue"], f.queue.as_str());
    // Without it the queue is `etl`, which this moto does not have.
    let out = submit(&f.endpoint, &["data", "--definition", &f.definition]);
    assert_eq!(out.status.code(), Some(78), "{}", text(&out.stderr));
    assert!(
        text(&out.stderr).contains("Job queue etl does not exist"),
        "{}",
        text(&out.stderr)
    );
}

#[tokio::test]
async fn pmtiles_shards_then_merge() {
    let f = fixture(&moto()).await;
    let out = submit(
        &f.endpoint,
        &[
            "pmtiles",
            "--shards",
            "3",
            "--queue",
            &f.queue,
            "--definition",
            &f.definition,
            "--env",
            "A=1",
            "--",
            "--input",
            "s3://b/in/",
            "-o",
            "s3://b/tiles/x.pmtiles",
            "--maxzoom",
            "12",
        ],
    );
    let doc = stdout_json(&out);
    let jobs = doc["jobs"].as_array().unwrap();
    assert_eq!(jobs.len(), 2, "{doc}");
    assert_eq!(jobs[0]["role"], "shards");
    assert_eq!(jobs[0]["arraySize"], 3);
    assert_eq!(jobs[1]["role"], "merge");
    let (shards, merge) = (
        jobs[0]["jobId"].as_str().unwrap(),
        jobs[1]["jobId"].as_str().unwrap(),
    );
    assert_eq!(jobs[1]["dependsOn"], serde_json::json!([shards]));

    let d = describe(&f, &[shards, merge]).await;
    let s = &d[shards];
    assert_eq!(s.array_properties().unwrap().size(), Some(3));
    assert_eq!(
        s.container().unwrap().command(),
        strs(&[
            "pmtiles",
            "--input",
            "s3://b/in/",
            "-o",
            "s3://b/tiles/x.pmtiles.parts/{shard}.pmtiles",
            "--maxzoom",
            "12",
        ])
    );
    let m = &d[merge];
    assert_eq!(
        m.container().unwrap().command(),
        strs(&[
            "pmtiles",
            "merge",
            "s3://b/tiles/x.pmtiles",
            "s3://b/tiles/x.pmtiles.parts/0.pmtiles",
            "s3://b/tiles/x.pmtiles.parts/1.pmtiles",
            "s3://b/tiles/x.pmtiles.parts/2.pmtiles",
        ])
    );
    let deps: Vec<_> = m.depends_on().iter().map(|d| d.job_id().unwrap()).collect();
    assert_eq!(deps, [shards]);
    assert!(m.array_properties().is_none());
    assert_eq!(m.job_definition(), s.job_definition());
    let env: Vec<_> = m
        .container()
        .unwrap()
        .environment()
        .iter()
        .filter_map(|kv| kv.name())
        .collect();
    assert!(env.contains(&"A"), "{env:?}");
}

#[tokio::test]
async fn pmtiles_one_shard_is_one_job() {
    let f = fixture(&moto()).await;
    let out = submit(
        &f.endpoint,
        &[
            "pmtiles",
            "--shards",
            "1",
            "--queue",
            &f.queue,
            "--definition",
            &f.definition,
            "--",
            "-o",
            "s3://b/x.pmtiles",
        ],
    );
    let doc = stdout_json(&out);
    let jobs = doc["jobs"].as_array().unwrap();
    assert_eq!(jobs.len(), 1, "{doc}");
    assert_eq!(jobs[0]["role"], "job");
    assert!(jobs[0].get("arraySize").is_none());
    let id = jobs[0]["jobId"].as_str().unwrap();
    let d = describe(&f, &[id]).await;
    assert!(d[id].array_properties().is_none());
    assert_eq!(
        d[id].container().unwrap().command(),
        strs(&["pmtiles", "-o", "s3://b/x.pmtiles"])
    );
}

fn status_lines(stderr: &[u8]) -> Vec<Value> {
    text(stderr)
        .lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .collect()
}

#[tokio::test]
async fn wait_until_succeeded() {
    let f = fixture(&moto()).await;
    let out = submit(
        &f.endpoint,
        &[
            "pmtiles",
            "--shards",
            "2",
            "--queue",
            &f.queue,
            "--definition",
            &f.definition,
            "--wait",
            "--",
            "-o",
            "s3://b/x.pmtiles",
        ],
    );
    let doc = stdout_json(&out);
    let lines = status_lines(&out.stderr);
    for j in doc["jobs"].as_array().unwrap() {
        let id = &j["jobId"];
        assert!(
            lines
                .iter()
                .any(|l| &l["jobId"] == id && l["status"] == "SUCCEEDED"),
            "no SUCCEEDED line for {id}: {}",
            text(&out.stderr)
        );
    }
    let parent = &doc["jobs"][0]["jobId"];
    let summary = lines
        .iter()
        .find(|l| &l["jobId"] == parent && l.get("statusSummary").is_some())
        .unwrap_or_else(|| panic!("no statusSummary for the array: {}", text(&out.stderr)));
    assert_eq!(summary["statusSummary"]["SUCCEEDED"], 2);
}

#[tokio::test]
async fn wait_reports_a_failed_job() {
    let _ = moto(); // the shared services must be up too (and the venv they install)
    let server = Moto::start(&[("MOTO_SIMPLE_BATCH_FAIL_AFTER", "0")]);
    let f = fixture(&server.endpoint).await;
    let out = submit(
        &f.endpoint,
        &[
            "data",
            "--queue",
            &f.queue,
            "--definition",
            &f.definition,
            "--wait",
            "--",
            "--x",
        ],
    );
    let stderr = text(&out.stderr);
    assert_eq!(
        out.status.code(),
        Some(1),
        "stdout: {}\nstderr: {stderr}",
        text(&out.stdout)
    );
    let doc: Value = serde_json::from_slice(&out.stdout).unwrap();
    let id = &doc["jobs"][0]["jobId"];
    let lines = status_lines(&out.stderr);
    let failed = lines
        .iter()
        .find(|l| &l["jobId"] == id && l["status"] == "FAILED")
        .unwrap_or_else(|| panic!("no FAILED line: {stderr}"));
    // moto gives no statusReason for these: the line says so rather than leaving it out.
    assert!(
        failed["statusReason"]
            .as_str()
            .is_some_and(|r| !r.is_empty()),
        "{failed}"
    );
    assert!(stderr.contains("job failed"), "{stderr}");
}

#[test]
fn bad_usage_is_64() {
    // Parsed before any AWS call: no service needed.
    for args in [
        &[][..],
        &["data", "--array-size", "1"],
        &["data", "--shards", "2"],
        &["pmtiles", "--shards", "2", "--", "--input", "x"],
        &["data", "--env", "NOEQUALS"],
        &["data", "--bogus"],
        &["data", "--timeout", "10"],
    ] {
        let out = submit("http://127.0.0.1:9", args);
        assert_eq!(
            out.status.code(),
            Some(64),
            "{args:?}: {}",
            text(&out.stderr)
        );
        assert!(out.stdout.is_empty());
    }
}

#[tokio::test]
async fn unknown_queue_or_definition_is_78() {
    let f = fixture(&moto()).await;
    let out = submit(
        &f.endpoint,
        &[
            "data",
            "--queue",
            "no-such-queue",
            "--definition",
            &f.definition,
        ],
    );
    assert_eq!(out.status.code(), Some(78), "{}", text(&out.stderr));
    assert!(
        text(&out.stderr).contains("no-such-queue"),
        "{}",
        text(&out.stderr)
    );
    let out = submit(
        &f.endpoint,
        &["data", "--queue", &f.queue, "--definition", "no-such-def"],
    );
    assert_eq!(out.status.code(), Some(78), "{}", text(&out.stderr));
}

#[test]
fn unreachable_api_is_69() {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let out = submit(
        &format!("http://127.0.0.1:{port}"),
        &["data", "--queue", "q"],
    );
    assert_eq!(out.status.code(), Some(69), "{}", text(&out.stderr));
}
