//! `etl-events --serve` against PostGIS (scripts/test.sh): three workers take twenty queued
//! imports, each exactly once; SIGTERM mid-run returns the imports in flight to Pending, exits
//! 143 within ECS's 30 s, and a restarted service finishes them; a Fail is retried by setting
//! the row back to Pending. Each test gets a database of its own.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::path::Path;
use std::process::{Child, Command};
use std::time::{Duration, Instant};

use serde_json::Value;
use sqlx::{PgPool, Row};
use support::{S3, database_url, files_in, layout, spawn, unique};

fn rt() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

/// A fresh database; returns its URL and a pool on it.
async fn fresh_database() -> (String, PgPool) {
    let admin = sqlx::postgres::PgPoolOptions::new()
        .max_connections(1)
        .connect(&database_url())
        .await
        .expect("connect to DATABASE_URL");
    let name = unique("events").replace('-', "_");
    sqlx::query(sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}")))
        .execute(&admin)
        .await
        .unwrap();
    let base = database_url();
    let cut = base.rfind('/').unwrap();
    let url = format!("{}/{name}", &base[..cut]);
    let pool = sqlx::postgres::PgPoolOptions::new()
        .max_connections(2)
        .connect(&url)
        .await
        .unwrap();
    (url, pool)
}

/// Creates the queue table the way the service does (its migrations), then queues sources.
async fn queue(pool: &PgPool, sources: &[String]) {
    etl_core::imports::migrate(pool).await.unwrap();
    for s in sources {
        sqlx::query("INSERT INTO imports (source) VALUES ($1)")
            .bind(s)
            .execute(pool)
            .await
            .unwrap();
    }
}

async fn count(pool: &PgPool, status: &str) -> i64 {
    sqlx::query_scalar("SELECT count(*) FROM imports WHERE status = $1")
        .bind(status)
        .fetch_one(pool)
        .await
        .unwrap()
}

/// Polls `cond` until it holds or `limit` passes (then panics naming `what`).
fn wait_until(
    rt: &tokio::runtime::Runtime,
    what: &str,
    limit: Duration,
    mut cond: impl FnMut(&tokio::runtime::Runtime) -> bool,
) {
    let start = Instant::now();
    while start.elapsed() < limit {
        if cond(rt) {
            return;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    panic!("timed out waiting for {what}");
}

fn sigterm(child: &Child) {
    let ok = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap()
        .success();
    assert!(ok, "kill -TERM failed");
}

/// Waits for exit; a service still running after `limit` is killed and the test fails.
fn exit_within(mut child: Child, limit: Duration) -> (i32, String) {
    let start = Instant::now();
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            let out = child.wait_with_output().unwrap();
            return (
                status.code().unwrap_or(-1),
                String::from_utf8_lossy(&out.stderr).into_owned(),
            );
        }
        if start.elapsed() > limit {
            let _ = child.kill();
            panic!("the service did not exit within {limit:?} of SIGTERM");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn serve(url: &str, out: &Path, workers: &str, s3: &S3) -> Child {
    serve_with(url, out, workers, s3, &[])
}

/// The service, allowed to read the test bucket only.
fn serve_with(url: &str, out: &Path, workers: &str, s3: &S3, extra: &[&str]) -> Child {
    let allow = format!("s3://{}/import/", s3.bucket);
    let mut args = vec![
        "--allow-source",
        allow.as_str(),
        "--serve",
        "--concurrency",
        workers,
        "--database",
        url,
        "--output",
        out.to_str().unwrap(),
        "--poll-interval",
        "50ms",
        "--lease-ttl",
        "10s",
    ];
    args.extend_from_slice(extra);
    spawn(&args)
}

fn kml(i: usize) -> Vec<u8> {
    format!(
        r#"<kml xmlns="http://www.opengis.net/kml/2.2"><Placemark><name>p{i}</name><Point><coordinates>{},{}</coordinates></Point></Placemark></kml>"#,
        -100.0 + i as f64,
        40.0 + i as f64 / 10.0
    )
    .into_bytes()
}

/// Where the service puts the outputs of `s3://BUCKET/import/…` below `out`.
fn out_dir(out: &Path, s3: &S3) -> std::path::PathBuf {
    out.join(&s3.bucket).join("import")
}

#[test]
fn three_workers_take_twenty_imports_each_exactly_once() {
    let rt = rt();
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("out");
    let s3 = S3::new();
    let sources: Vec<String> = (0..20)
        .map(|i| {
            let key = format!("import/upload-{i:02}.kml");
            s3.put(&key, kml(i));
            format!("s3://{}/{key}", s3.bucket)
        })
        .collect();
    let (url, pool) = rt.block_on(fresh_database());
    rt.block_on(queue(&pool, &sources));
    let child = serve(&url, &out, "3", &s3);
    wait_until(
        &rt,
        "20 imports to succeed",
        Duration::from_secs(120),
        |rt| rt.block_on(count(&pool, "Success")) == 20,
    );
    sigterm(&child);
    let (code, stderr) = exit_within(child, Duration::from_secs(30));
    assert_eq!(code, 143, "{stderr}");
    // Exactly once: one attempt each, one claim each in the log, three outputs each.
    let rows = rt
        .block_on(
            sqlx::query("SELECT source, attempts, result, lease_owner FROM imports ORDER BY id")
                .fetch_all(&pool),
        )
        .unwrap();
    for r in &rows {
        let source: String = r.get("source");
        let attempts: i32 = r.get("attempts");
        let result: Value = r.get("result");
        let owner: Option<String> = r.get("lease_owner");
        assert_eq!(attempts, 1, "{source}");
        assert!(owner.is_none(), "{source}: lease kept");
        let urls = etl_core::imports::output_urls(&result);
        assert_eq!(urls.len(), 3, "{source}: {result}");
        for u in urls {
            assert!(Path::new(&u).exists(), "{u}");
        }
    }
    let claims = stderr
        .lines()
        .filter(|l| l.contains("import claimed"))
        .count();
    assert_eq!(claims, 20, "{stderr}");
    assert_eq!(files_in(&out_dir(&out, &s3)).len(), 60);
    // A claim is made by one of the three workers, and more than one of them worked.
    let owners: std::collections::BTreeSet<String> = stderr
        .lines()
        .filter(|l| l.contains("import claimed"))
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .filter_map(|v| v["worker"].as_str().map(str::to_owned))
        .collect();
    assert!(!owners.is_empty() && owners.len() <= 3, "{owners:?}");
}

/// Big enough that a debug build takes a while to convert it.
fn slow_input(n: usize, seed: usize) -> Vec<u8> {
    use std::io::Write;
    let mut f = Vec::new();
    for i in 0..n {
        writeln!(
            f,
            r#"{{"type":"Feature","properties":{{"i":{i},"s":{seed}}},"geometry":{{"type":"Point","coordinates":[{},{}]}}}}"#,
            -120.0 + (i % 1000) as f64 * 0.05,
            30.0 + (i / 1000) as f64 * 0.05
        )
        .unwrap();
    }
    f
}

#[test]
fn sigterm_returns_imports_in_flight_to_pending() {
    let rt = rt();
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("out");
    let s3 = S3::new();
    let sources: Vec<String> = (0..5)
        .map(|i| {
            let key = format!("import/big-{i}.geojsonl");
            s3.put(&key, slow_input(40_000, i));
            format!("s3://{}/{key}", s3.bucket)
        })
        .collect();
    let (url, pool) = rt.block_on(fresh_database());
    rt.block_on(queue(&pool, &sources));
    let child = serve_with(&url, &out, "2", &s3, &["-z", "8"]);
    wait_until(&rt, "two imports running", Duration::from_secs(60), |rt| {
        rt.block_on(count(&pool, "Running")) == 2
    });
    sigterm(&child);
    let (code, stderr) = exit_within(child, Duration::from_secs(30));
    assert_eq!(code, 143, "{stderr}");
    assert_eq!(rt.block_on(count(&pool, "Running")), 0);
    let rows = rt
        .block_on(
            sqlx::query("SELECT source, status, attempts, lease_owner FROM imports ORDER BY id")
                .fetch_all(&pool),
        )
        .unwrap();
    let mut done = 0;
    for r in &rows {
        let source: String = r.get("source");
        let status: String = r.get("status");
        let attempts: i32 = r.get("attempts");
        let owner: Option<String> = r.get("lease_owner");
        assert!(owner.is_none(), "{source}");
        let stem = Path::new(&source)
            .file_stem()
            .unwrap()
            .to_str()
            .unwrap()
            .to_owned();
        let outputs: Vec<String> = files_in(&out_dir(&out, &s3))
            .into_iter()
            .filter(|f| f.starts_with(&format!("{stem}.")))
            .collect();
        match status.as_str() {
            // Returned without counting the attempt, and nothing half-written.
            "Pending" => {
                assert_eq!(attempts, 0, "{source}");
                assert!(outputs.is_empty(), "{source}: {outputs:?}");
            }
            "Success" => {
                done += 1;
                assert_eq!(outputs.len(), 3, "{source}: {outputs:?}");
            }
            other => panic!("{source}: {other}"),
        }
    }
    assert!(done < 5, "SIGTERM came after everything was done");
    // A restarted service finishes the rest.
    let child = serve_with(&url, &out, "2", &s3, &["-z", "8"]);
    wait_until(
        &rt,
        "all imports to succeed",
        Duration::from_secs(300),
        |rt| rt.block_on(count(&pool, "Success")) == 5,
    );
    sigterm(&child);
    let (code, stderr) = exit_within(child, Duration::from_secs(30));
    assert_eq!(code, 143, "{stderr}");
    assert_eq!(files_in(&out_dir(&out, &s3)).len(), 15);
}

#[test]
fn a_failed_import_is_retried_by_setting_it_back_to_pending() {
    let rt = rt();
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("out");
    let s3 = S3::new();
    s3.put("import/later.kml", b"not a geodata file\n".to_vec());
    let (url, pool) = rt.block_on(fresh_database());
    rt.block_on(queue(
        &pool,
        &[format!("s3://{}/import/later.kml", s3.bucket)],
    ));
    let child = serve(&url, &out, "1", &s3);
    wait_until(&rt, "the import to fail", Duration::from_secs(60), |rt| {
        rt.block_on(count(&pool, "Fail")) == 1
    });
    let error: String = rt
        .block_on(sqlx::query_scalar("SELECT error FROM imports").fetch_one(&pool))
        .unwrap();
    assert!(error.contains("unsupported input format"), "{error}");
    assert!(files_in(&out_dir(&out, &s3)).is_empty());
    // Fixed upload, row set back to Pending: the running service picks it up.
    s3.put("import/later.kml", kml(1));
    rt.block_on(sqlx::query("UPDATE imports SET status = 'Pending'").execute(&pool))
        .unwrap();
    wait_until(
        &rt,
        "the retried import to succeed",
        Duration::from_secs(60),
        |rt| rt.block_on(count(&pool, "Success")) == 1,
    );
    sigterm(&child);
    let (code, _) = exit_within(child, Duration::from_secs(30));
    assert_eq!(code, 143);
    let (error, attempts): (Option<String>, i32) = rt
        .block_on(sqlx::query_as("SELECT error, attempts FROM imports").fetch_one(&pool))
        .unwrap();
    assert_eq!(error, None);
    assert_eq!(attempts, 2);
    assert_eq!(
        layout(&files_in(&out_dir(&out, &s3))),
        ["later.V.geojsonl", "later.V.pmtiles", "later.json"]
    );
}

/// An import that hangs (held at the test-only `events.before_lease` point) stops being
/// heartbeated once past --import-timeout plus a lease: another service takes the row over and
/// finishes it, and the hung one, released, does not publish after its deadline.
#[test]
fn a_hung_import_is_taken_over_after_its_deadline() {
    let rt = rt();
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("out");
    let s3 = S3::new();
    s3.put("import/hung.kml", kml(7));
    let (url, pool) = rt.block_on(fresh_database());
    rt.block_on(queue(
        &pool,
        &[format!("s3://{}/import/hung.kml", s3.bucket)],
    ));
    let gate = tmp.path().join("gate");
    let allow = format!("s3://{}/import/", s3.bucket);
    let args = |extra: &[&str]| -> Vec<String> {
        let mut a: Vec<String> = [
            "--allow-source",
            allow.as_str(),
            "--serve",
            "--concurrency",
            "1",
            "--database",
            url.as_str(),
            "--output",
            out.to_str().unwrap(),
            "--poll-interval",
            "50ms",
            "--lease-ttl",
            "1s",
            "--import-timeout",
            "2s",
            "--gc-grace",
            "4s",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        a.extend(extra.iter().map(|s| s.to_string()));
        a
    };
    let hung = support::etl_events()
        .env(
            "ETL_FAULT",
            format!("events.before_lease={}", gate.display()),
        )
        .args(args(&[]))
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let reached = gate.with_extension("1.reached");
    wait_until(&rt, "the import to hang", Duration::from_secs(60), |_| {
        reached.exists()
    });
    // A second service takes the row once its lease is no longer renewed.
    let rescuer = support::etl_events()
        .args(args(&[]))
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    wait_until(
        &rt,
        "the other service to finish the import",
        Duration::from_secs(60),
        |rt| rt.block_on(count(&pool, "Success")) == 1,
    );
    let attempts: i32 = rt
        .block_on(sqlx::query_scalar("SELECT attempts FROM imports").fetch_one(&pool))
        .unwrap();
    assert_eq!(attempts, 2, "claimed again after the lease expired");
    let manifest_path = out_dir(&out, &s3).join("hung.json");
    let before = std::fs::read(&manifest_path).unwrap();
    // Released now, the hung import is past its deadline: it must not swap anything.
    std::fs::write(gate.with_extension("1"), b"").unwrap();
    for child in [&hung, &rescuer] {
        sigterm(child);
    }
    let (code, stderr) = exit_within(hung, Duration::from_secs(30));
    assert_eq!(code, 143, "{stderr}");
    assert!(
        stderr.contains("no longer renewed"),
        "the hung import's lease was still renewed: {stderr}"
    );
    let (code, _) = exit_within(rescuer, Duration::from_secs(30));
    assert_eq!(code, 143);
    assert_eq!(std::fs::read(&manifest_path).unwrap(), before);
    let status: String = rt
        .block_on(sqlx::query_scalar("SELECT status FROM imports").fetch_one(&pool))
        .unwrap();
    assert_eq!(status, "Success");
}

/// Queue rows are untrusted: a local path, another bucket and a key climbing out of its
/// folder all end Fail with a one-line reason, nothing is read or written for them, and the
/// allowed row beside them imports.
#[test]
fn queued_sources_outside_the_allow_list_fail_and_read_nothing() {
    let rt = rt();
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("out");
    let s3 = S3::new();
    s3.put("import/ok.kml", kml(3));
    let secret = tmp.path().join("secret.kml");
    std::fs::write(&secret, kml(4)).unwrap();
    let (url, pool) = rt.block_on(fresh_database());
    let b = &s3.bucket;
    rt.block_on(queue(
        &pool,
        &[
            secret.to_str().unwrap().to_owned(),
            format!("s3://{b}-other/import/x.kml"),
            format!("s3://{b}/import/../private/x.kml"),
            format!("s3://{b}/private/x.kml"),
            format!("s3://{b}/import/ok.kml"),
        ],
    ));
    let child = serve(&url, &out, "1", &s3);
    wait_until(&rt, "every row to end", Duration::from_secs(60), |rt| {
        rt.block_on(count(&pool, "Fail")) + rt.block_on(count(&pool, "Success")) == 5
    });
    sigterm(&child);
    let (code, _) = exit_within(child, Duration::from_secs(30));
    assert_eq!(code, 143);
    let rows: Vec<(String, String, Option<String>)> = rt
        .block_on(
            sqlx::query_as("SELECT source, status, error FROM imports ORDER BY id")
                .fetch_all(&pool),
        )
        .unwrap();
    for (source, status, error) in &rows[..4] {
        assert_eq!(status, "Fail", "{source}");
        let error = error.as_deref().unwrap();
        assert!(!error.contains('\n'), "{error}");
        assert!(
            error.contains("never local paths")
                || error.contains("outside the allowed sources")
                || error.contains("starting with '.'"),
            "{source}: {error}"
        );
    }
    assert_eq!(rows[4].1, "Success");
    // Only the allowed upload has outputs; nothing else under the output root.
    assert_eq!(
        layout(&files_in(&out_dir(&out, &s3))),
        ["ok.V.geojsonl", "ok.V.pmtiles", "ok.json"]
    );
    assert_eq!(files_in(&out), std::slice::from_ref(&s3.bucket));
}
