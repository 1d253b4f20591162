//! Two versions of one key imported at once, 50 rounds each way: by two processes (S3 events
//! delivered to two Batch jobs) and by two `--serve` workers of one process. Both importers are
//! held at the publish lease (the test-only `events.before_lease` pause point, after both have
//! checked and converted their version) and released together or one first, in turn. After
//! every round the newest version is the one published, the manifest names only objects that
//! exist with its hashes, and gc with the workers' settings never removes any of them.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::process::Child;
use std::time::{Duration, Instant};

use serde_json::Value;
use sqlx::Row;
use support::{Run, S3, database_url, etl_events, sha256_hex, unique};

const ROUNDS: usize = 50;

fn kml(round: usize, tag: &str) -> Vec<u8> {
    let mut s = String::from(r#"<kml xmlns="http://www.opengis.net/kml/2.2"><Document>"#);
    for i in 0..40 {
        s.push_str(&format!(
            "<Placemark><name>{tag}-{round}-{i}</name><Point><coordinates>{},{}</coordinates></Point></Placemark>",
            170.0 + i as f64 * 0.01,
            -41.0 + round as f64 * 0.01
        ));
    }
    s.push_str("</Document></kml>");
    s.into_bytes()
}

/// The manifest under `prefix`, checked complete against the objects; its source ETag.
#[track_caller]
fn published(s3: &S3, prefix: &str, name: &str, round: usize) -> String {
    let (bytes, _) = s3
        .get(&format!("{prefix}{name}.json"))
        .unwrap_or_else(|| panic!("round {round}: no manifest"));
    let m: Value = serde_json::from_slice(&bytes).unwrap();
    for o in m["outputs"].as_array().unwrap() {
        let key = format!("{prefix}{}", o["file"].as_str().unwrap());
        let (data, _) = s3
            .get(&key)
            .unwrap_or_else(|| panic!("round {round}: {key} named by the manifest is missing"));
        assert_eq!(
            sha256_hex(&data),
            o["sha256"].as_str().unwrap(),
            "round {round}: {key}"
        );
    }
    m["source"]["etag"].as_str().unwrap().to_owned()
}

fn gc(output: &str) {
    Run::from_output(
        etl_events()
            .args(["--gc", "--output", output])
            .output()
            .unwrap(),
    )
    .assert_code(0);
}

fn wait(child: Child) -> Run {
    Run::from_output(child.wait_with_output().unwrap())
}

/// Waits until every gate's point was reached (`GATE.reached` exists).
fn reached(gates: &[std::path::PathBuf], round: usize) {
    let start = Instant::now();
    while !gates
        .iter()
        .all(|g| g.with_extension(format!("{}.reached", ext(g))).exists())
    {
        assert!(
            start.elapsed() < Duration::from_secs(60),
            "round {round}: the importers never reached the lease"
        );
        std::thread::sleep(Duration::from_millis(5));
    }
}

fn ext(g: &std::path::Path) -> String {
    g.extension().unwrap().to_str().unwrap().to_owned()
}

/// Opens the gates in the round's order: both at once, A first, or B first.
fn release(round: usize, a: &std::path::Path, b: &std::path::Path, wait_first: impl FnOnce()) {
    match round % 3 {
        0 => {
            std::fs::write(a, b"").unwrap();
            std::fs::write(b, b"").unwrap();
        }
        1 => {
            std::fs::write(a, b"").unwrap();
            wait_first();
            std::fs::write(b, b"").unwrap();
        }
        _ => {
            std::fs::write(b, b"").unwrap();
            wait_first();
            std::fs::write(a, b"").unwrap();
        }
    }
}

#[test]
fn two_processes_two_versions_newest_wins() {
    let s3 = S3::new();
    let gates = tempfile::tempdir().unwrap();
    let output = format!("s3://{}/out/", s3.bucket);
    let prefix = format!("out/{}/import/", s3.bucket);
    let allow = format!("s3://{}/import/", s3.bucket);
    let spawn = |etag: &str, seq: &str, gate: &std::path::Path| {
        etl_events()
            .env("ETL_ALLOW_SOURCE", &allow)
            .env(
                "ETL_FAULT",
                format!("events.before_lease={}", gate.display()),
            )
            .args([
                "--bucket",
                &s3.bucket,
                "--key",
                "import/k.kml",
                "--etag",
                etag,
                "--sequencer",
                seq,
                "--output",
                &output,
                "-z",
                "5",
            ])
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap()
    };
    let mut a_published = 0;
    for round in 0..ROUNDS {
        let (seq_a, seq_b) = (
            format!("{:018X}", 2 * round + 10),
            format!("{:018X}", 2 * round + 11),
        );
        // Each process's first pause waits for GATE.1.
        let ga = gates.path().join(format!("a{round}"));
        let gb = gates.path().join(format!("b{round}"));
        let (open_a, open_b) = (ga.with_extension("1"), gb.with_extension("1"));
        // A is delivered and gets as far as the lease; then B is written and does too.
        let ea = s3.put("import/k.kml", kml(round, "a"));
        let a = spawn(&ea, &seq_a, &ga);
        reached(std::slice::from_ref(&open_a), round);
        let eb = s3.put("import/k.kml", kml(round, "b"));
        let b = spawn(&eb, &seq_b, &gb);
        reached(std::slice::from_ref(&open_b), round);
        let (mut ra, mut rb) = (None, None);
        let (mut a, mut b) = (Some(a), Some(b));
        release(round, &open_a, &open_b, || match round % 3 {
            1 => ra = Some(wait(a.take().unwrap())),
            _ => rb = Some(wait(b.take().unwrap())),
        });
        let ra = ra.unwrap_or_else(|| wait(a.take().unwrap()));
        let rb = rb.unwrap_or_else(|| wait(b.take().unwrap()));
        ra.assert_code(0);
        rb.assert_code(0);
        if ra.status() == "succeeded" {
            a_published += 1;
        }
        assert_eq!(
            published(&s3, &prefix, "k", round),
            eb,
            "round {round}: B is newest"
        );
        gc(&output);
        assert_eq!(
            published(&s3, &prefix, "k", round),
            eb,
            "round {round}: after gc"
        );
    }
    // A first then B: A publishes its version and B replaces it. B first: A finds it stale.
    assert!(
        a_published >= ROUNDS / 3,
        "A published in {a_published} rounds"
    );
    assert!(a_published < ROUNDS, "A was never stale");
}

#[test]
fn two_serve_workers_of_one_process_newest_wins() {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let s3 = S3::new();
    let (url, pool) = rt.block_on(async {
        let admin = sqlx::postgres::PgPoolOptions::new()
            .max_connections(1)
            .connect(&database_url())
            .await
            .unwrap();
        let name = unique("races").replace('-', "_");
        sqlx::query(sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}")))
            .execute(&admin)
            .await
            .unwrap();
        let base = database_url();
        let url = format!("{}/{name}", &base[..base.rfind('/').unwrap()]);
        let pool = sqlx::postgres::PgPoolOptions::new()
            .max_connections(2)
            .connect(&url)
            .await
            .unwrap();
        etl_core::imports::migrate(&pool).await.unwrap();
        (url, pool)
    });
    let output = format!("s3://{}/out/", s3.bucket);
    let prefix = format!("out/{}/import/", s3.bucket);
    let allow = format!("s3://{}/import/", s3.bucket);
    let gates = tempfile::tempdir().unwrap();
    let gate = gates.path().join("g");
    let mut service = etl_events()
        .env(
            "ETL_FAULT",
            format!("events.before_lease={}", gate.display()),
        )
        .args([
            "--serve",
            "--concurrency",
            "2",
            "--database",
            &url,
            "--output",
            &output,
            "--allow-source",
            &allow,
            "--poll-interval",
            "20ms",
            "-z",
            "5",
        ])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let source = format!("s3://{}/import/k.kml", s3.bucket);
    let queue = |etag: &str, seq: &str| {
        rt.block_on(
            sqlx::query("INSERT INTO imports (source, source_etag, sequencer) VALUES ($1, $2, $3)")
                .bind(&source)
                .bind(etag)
                .bind(seq)
                .execute(&pool),
        )
        .unwrap();
    };
    for round in 0..ROUNDS {
        let (seq_a, seq_b) = (
            format!("{:018X}", 2 * round + 10),
            format!("{:018X}", 2 * round + 11),
        );
        // The service's hits of the pause point count up: this round's are 2r+1 and 2r+2,
        // A's first (B is written only once A is held).
        let (open_a, open_b) = (
            gate.with_extension((2 * round + 1).to_string()),
            gate.with_extension((2 * round + 2).to_string()),
        );
        let ea = s3.put("import/k.kml", kml(round, "a"));
        queue(&ea, &seq_a);
        reached(std::slice::from_ref(&open_a), round);
        let eb = s3.put("import/k.kml", kml(round, "b"));
        queue(&eb, &seq_b);
        reached(std::slice::from_ref(&open_b), round);
        let settled = |n: i64| {
            let start = Instant::now();
            loop {
                let done: i64 = rt
                    .block_on(
                        sqlx::query(
                            "SELECT count(*) AS n FROM imports WHERE status IN ('Success', 'Fail')",
                        )
                        .fetch_one(&pool),
                    )
                    .unwrap()
                    .get("n");
                if done >= n {
                    return;
                }
                assert!(
                    start.elapsed() < Duration::from_secs(60),
                    "round {round}: imports did not finish"
                );
                std::thread::sleep(Duration::from_millis(10));
            }
        };
        let before = 2 * round as i64;
        release(round, &open_a, &open_b, || settled(before + 1));
        let start = Instant::now();
        loop {
            let open: i64 = rt
                .block_on(
                    sqlx::query(
                        "SELECT count(*) AS n FROM imports WHERE status NOT IN ('Success', 'Fail')",
                    )
                    .fetch_one(&pool),
                )
                .unwrap()
                .get("n");
            if open == 0 {
                break;
            }
            assert!(
                start.elapsed() < Duration::from_secs(60),
                "round {round}: imports did not finish"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        let failed: Vec<String> = rt
            .block_on(
                sqlx::query_scalar("SELECT error FROM imports WHERE status = 'Fail'")
                    .fetch_all(&pool),
            )
            .unwrap();
        assert!(failed.is_empty(), "round {round}: {failed:?}");
        assert_eq!(
            published(&s3, &prefix, "k", round),
            eb,
            "round {round}: B is newest"
        );
    }
    let ok = std::process::Command::new("kill")
        .args(["-TERM", &service.id().to_string()])
        .status()
        .unwrap()
        .success();
    assert!(ok);
    let status = service.wait().unwrap();
    assert_eq!(status.code(), Some(143));
    gc(&output);
    let last = published(&s3, &prefix, "k", ROUNDS);
    assert!(!last.is_empty());
}
