//! `etl-data retention` against PostGIS and the S3 server: old imports go with their outputs,
//! running and recent ones stay; a run killed in the middle is finished by the next one; a rerun
//! deletes nothing more; `--dry-run` deletes nothing; a scheduled run measures age from its tick.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::time::Duration;

use aws_sdk_s3::primitives::ByteStream;
use etl_core::store::{S3Config, S3Store};
use sqlx::PgPool;
use support::*;

struct Env {
    pool: PgPool,
    s3: aws_sdk_s3::Client,
    bucket: String,
    table: String,
}

async fn setup() -> Env {
    let pool = sqlx::postgres::PgPoolOptions::new()
        .max_connections(2)
        .connect(&database_url())
        .await
        .unwrap();
    etl_core::imports::migrate(&pool).await.unwrap();
    let table = unique("imports_t");
    sqlx::query(sqlx::AssertSqlSafe(format!(
        "CREATE TABLE {table} (LIKE imports INCLUDING ALL)"
    )))
    .execute(&pool)
    .await
    .unwrap();
    let s3 = S3Store::connect(S3Config {
        endpoint: Some(s3_endpoint()),
        ..Default::default()
    })
    .await
    .unwrap()
    .client()
    .clone();
    let bucket = unique("ret").replace('_', "-");
    s3.create_bucket().bucket(&bucket).send().await.unwrap();
    Env {
        pool,
        s3,
        bucket,
        table,
    }
}

impl Env {
    /// An import `age_days` old with two outputs on S3; returns their keys.
    async fn import(&self, name: &str, age_days: i64, status: &str) -> Vec<String> {
        let keys = vec![
            format!("out/{name}.geojsonl"),
            format!("out/{name}.pmtiles"),
        ];
        for k in &keys {
            self.s3
                .put_object()
                .bucket(&self.bucket)
                .key(k)
                .body(ByteStream::from(b"data".to_vec()))
                .send()
                .await
                .unwrap();
        }
        let outputs: Vec<serde_json::Value> = keys
            .iter()
            .map(|k| serde_json::json!({"url": format!("s3://{}/{k}", self.bucket), "bytes": 4}))
            .collect();
        sqlx::query(sqlx::AssertSqlSafe(format!(
            "INSERT INTO {} (source, status, result, created_at) \
             VALUES ($1, $2, $3::jsonb, now() - make_interval(days => $4::int))",
            self.table
        )))
        .bind(format!("s3://{}/import/{name}.kml", self.bucket))
        .bind(status)
        .bind(serde_json::json!({ "outputs": outputs }).to_string())
        .bind(age_days as i32)
        .execute(&self.pool)
        .await
        .unwrap();
        keys
    }

    async fn rows(&self) -> i64 {
        sqlx::query_scalar(sqlx::AssertSqlSafe(format!(
            "SELECT count(*) FROM {}",
            self.table
        )))
        .fetch_one(&self.pool)
        .await
        .unwrap()
    }

    async fn exists(&self, key: &str) -> bool {
        self.s3
            .head_object()
            .bucket(&self.bucket)
            .key(key)
            .send()
            .await
            .is_ok()
    }
}

#[test]
fn old_imports_go_with_their_outputs_resumably_and_idempotently() {
    let rt = rt();
    let env = rt.block_on(setup());
    let (old, kept) = rt.block_on(async {
        let mut old = Vec::new();
        for i in 0..40 {
            old.extend(env.import(&format!("old{i}"), 40, "Success").await);
        }
        old.extend(env.import("failed", 45, "Fail").await);
        let mut kept = env.import("recent", 1, "Success").await;
        kept.extend(env.import("running", 90, "Running").await);
        (old, kept)
    });
    assert_eq!(rt.block_on(env.rows()), 43);
    let url = database_url();
    let args = |extra: &[&str]| -> Vec<String> {
        let mut a: Vec<String> = [
            "retention",
            "--older-than",
            "30d",
            "--table",
            &env.table,
            "--database",
            &url,
            "--output-prefix",
            &format!("s3://{}/out/", env.bucket),
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        a.extend(extra.iter().map(|s| s.to_string()));
        a
    };
    let run_with = |extra: &[&str]| {
        let a = args(extra);
        run(&a.iter().map(String::as_str).collect::<Vec<_>>())
    };

    // --dry-run lists the 41 old, not running imports and deletes nothing.
    let r = run_with(&["--dry-run"]);
    r.assert_code(0);
    let plan: serde_json::Value = r
        .stdout
        .lines()
        .find_map(|l| {
            serde_json::from_str::<serde_json::Value>(l)
                .ok()
                .filter(|v| v.get("dry_run").is_some())
        })
        .unwrap();
    assert_eq!(plan["dry_run"]["imports"], 41, "{plan}");
    assert_eq!(rt.block_on(env.rows()), 43);
    assert!(rt.block_on(env.exists(&old[0])));

    // Killed in the middle (one import per batch): some batches are done, the rest is not.
    let a = args(&["--batch", "1"]);
    let mut child = spawn(&a.iter().map(String::as_str).collect::<Vec<_>>());
    wait_for("the first batch", Duration::from_secs(60), || {
        rt.block_on(env.rows()) < 43
    });
    child.kill().unwrap();
    child.wait().unwrap();
    let left = rt.block_on(env.rows());
    assert!(left > 2 && left < 43, "killed mid-run: {left} rows left");

    // The rerun finishes: every old import and its outputs are gone, the recent and the
    // running import and theirs stay.
    let r = run_with(&[]);
    r.assert_code(0);
    assert_eq!(r.status(), "succeeded");
    assert_eq!(rt.block_on(env.rows()), 2);
    for k in &old {
        assert!(!rt.block_on(env.exists(k)), "{k} deleted");
    }
    for k in &kept {
        assert!(rt.block_on(env.exists(k)), "{k} kept");
    }

    // Idempotent: nothing more to do.
    let r = run_with(&[]);
    r.assert_code(0);
    assert_eq!(r.status(), "skipped");
    assert_eq!(rt.block_on(env.rows()), 2);

    // A scheduled run measures age from its logical time: seen from 60 days ahead, the recent
    // import is old too (the running one still stays).
    let ahead = (chrono::Utc::now() + chrono::Duration::days(60)).to_rfc3339();
    let r = run_with(&["--logical-time", &ahead]);
    r.assert_code(0);
    assert_eq!(r.summary["counts"]["written"], 1);
    assert_eq!(rt.block_on(env.rows()), 1);
    assert!(
        rt.block_on(env.exists(&kept[2])),
        "the running import's output stays"
    );
}

impl Env {
    /// `etl-data retention --older-than 30d` on this env's table and bucket, plus `extra`.
    fn retention(&self, extra: &[&str]) -> Run {
        let url = database_url();
        let prefix = format!("s3://{}/out/", self.bucket);
        let mut args = vec![
            "retention",
            "--older-than",
            "30d",
            "--table",
            &self.table,
            "--database",
            &url,
            "--output-prefix",
            &prefix,
        ];
        args.extend_from_slice(extra);
        run(&args)
    }

    async fn put(&self, key: &str, body: &[u8]) {
        self.s3
            .put_object()
            .bucket(&self.bucket)
            .key(key)
            .body(ByteStream::from(body.to_vec()))
            .send()
            .await
            .unwrap();
    }

    /// A row as etl-events --serve records it: the manifest doc with its versioned outputs
    /// and the manifest itself listed last.
    async fn row(&self, age_days: i32, doc: &serde_json::Value) {
        sqlx::query(sqlx::AssertSqlSafe(format!(
            "INSERT INTO {} (source, status, result, created_at) \
             VALUES ($1, 'Success', $2::jsonb, now() - make_interval(days => $3::int))",
            self.table
        )))
        .bind(format!("s3://{}/import/a.kml", self.bucket))
        .bind(doc.to_string())
        .bind(age_days)
        .execute(&self.pool)
        .await
        .unwrap();
    }
}

/// Re-imports of one key: the 40-day-old and 35-day-old rows go, with the versions only they
/// name; the manifest and the current version (named by a 1-day-old row) stay; so does a
/// superseded version the manifest still promises to keep. A row listing an object outside
/// --output-prefix stops the run before anything of its batch is deleted.
#[test]
fn retention_after_reimports_keeps_the_current_outputs() {
    let rt = rt();
    let env = rt.block_on(setup());
    let b = env.bucket.clone();
    let manifest_key = "out/a.json".to_owned();
    let version = |v: &str| {
        let key = format!("out/a.{v}.pmtiles");
        (key.clone(), format!("s3://{b}/{key}"))
    };
    let (k1, u1) = version("v20261001T000000Z-00000001");
    let (k2, u2) = version("v20261101T000000Z-00000002");
    let (k3, u3) = version("v20261205T000000Z-00000003");
    let manifest_url = format!("s3://{b}/{manifest_key}");
    let doc = |v: &str, url: &str, superseded: serde_json::Value| {
        serde_json::json!({
            "version": v,
            "outputs": [
                {"url": url, "file": url.rsplit('/').next().unwrap(), "kind": "pmtiles"},
                {"url": manifest_url, "kind": "manifest"},
            ],
            "superseded": superseded,
        })
    };
    let far = (chrono::Utc::now() + chrono::Duration::hours(1)).to_rfc3339();
    let current = doc(
        "v20261205T000000Z-00000003",
        &u3,
        serde_json::json!([{"file": k2.rsplit('/').next().unwrap(), "until": far}]),
    );
    rt.block_on(async {
        for k in [&k1, &k2, &k3] {
            env.put(k, b"tiles").await;
        }
        env.put(&manifest_key, current.to_string().as_bytes()).await;
        env.row(
            40,
            &doc("v20261001T000000Z-00000001", &u1, serde_json::json!([])),
        )
        .await;
        env.row(
            35,
            &doc("v20261101T000000Z-00000002", &u2, serde_json::json!([])),
        )
        .await;
        env.row(1, &current).await;
    });
    let r = env.retention(&[]);
    r.assert_code(0);
    assert_eq!(rt.block_on(env.rows()), 1);
    assert!(
        !rt.block_on(env.exists(&k1)),
        "a version only an old row names goes"
    );
    assert!(
        rt.block_on(env.exists(&k2)),
        "a superseded version still promised stays"
    );
    assert!(rt.block_on(env.exists(&k3)), "the current version stays");
    assert!(rt.block_on(env.exists(&manifest_key)), "the manifest stays");

    // An old row naming an object outside the prefix: refused, nothing of it deleted.
    let (k4, _) = version("v20260901T000000Z-00000004");
    rt.block_on(async {
        env.put(&k4, b"tiles").await;
        env.put("elsewhere/precious.txt", b"keep").await;
        let bad = serde_json::json!({"outputs": [
            {"url": format!("s3://{b}/{k4}")},
            {"url": format!("s3://{b}/elsewhere/precious.txt")},
        ]});
        env.row(50, &bad).await;
    });
    let r = env.retention(&[]);
    r.assert_code(78);
    assert!(
        r.error().contains("outside --output-prefix"),
        "{}",
        r.error()
    );
    assert!(rt.block_on(env.exists("elsewhere/precious.txt")));
    assert!(
        rt.block_on(env.exists(&k4)),
        "nothing of the batch was deleted"
    );
    assert_eq!(rt.block_on(env.rows()), 2);
}

/// The last import of a key, old now: its manifest goes (by compare-and-swap, under the
/// publish lease) together with the outputs it named. A younger row that only saw the
/// manifest (an unchanged re-delivery) keeps it.
#[test]
fn retention_of_the_last_import_takes_its_manifest_and_outputs() {
    let rt = rt();
    let env = rt.block_on(setup());
    let b = env.bucket.clone();
    let v = "v20261001T000000Z-00000001";
    let (kp, kg) = (format!("out/a.{v}.pmtiles"), format!("out/a.{v}.geojsonl"));
    let manifest_url = format!("s3://{b}/out/a.json");
    let doc = serde_json::json!({
        "version": v,
        "outputs": [
            {"url": format!("s3://{b}/{kp}"), "file": format!("a.{v}.pmtiles"), "kind": "pmtiles"},
            {"url": format!("s3://{b}/{kg}"), "file": format!("a.{v}.geojsonl"), "kind": "geojsonl"},
            {"url": manifest_url, "kind": "manifest"},
        ],
    });
    rt.block_on(async {
        env.put(&kp, b"tiles").await;
        env.put(&kg, b"lines").await;
        env.put("out/a.json", doc.to_string().as_bytes()).await;
        env.row(40, &doc).await;
        // A re-delivery 1 day ago found the same version: its result names only the manifest.
        env.row(
            1,
            &serde_json::json!({"status": "unchanged", "manifest": manifest_url, "version": v}),
        )
        .await;
    });
    env.retention(&[]).assert_code(0);
    assert!(
        rt.block_on(env.exists("out/a.json")),
        "a younger row still names the manifest"
    );
    assert!(
        rt.block_on(env.exists(&kp)),
        "the current manifest names it"
    );
    // The younger row ages too: everything goes.
    let ahead = (chrono::Utc::now() + chrono::Duration::days(60)).to_rfc3339();
    env.retention(&["--logical-time", &ahead]).assert_code(0);
    assert!(!rt.block_on(env.exists("out/a.json")));
    assert!(!rt.block_on(env.exists(&kp)));
    assert!(!rt.block_on(env.exists(&kg)));
    assert_eq!(rt.block_on(env.rows()), 0);
}

#[test]
fn bad_retention_settings_are_usage_errors() {
    let r = run(&[
        "retention",
        "--older-than",
        "a while",
        "--database",
        &database_url(),
        "--output-prefix",
        "s3://b/out/",
    ]);
    r.assert_code(64);
    assert!(r.error().contains("--older-than"), "{}", r.error());
    let r = run(&["retention", "--database", &database_url()]);
    r.assert_code(64);
}

#[test]
fn checked_in_schema_matches_the_retention_config() {
    let out = etl_data()
        .args(["retention", "--print-schema"])
        .output()
        .unwrap();
    assert!(out.status.success());
    let printed: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../schemas/etl-data-retention.json");
    let stored: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
    assert_eq!(
        printed, stored,
        "schemas/etl-data-retention.json is out of date: regenerate with `etl-data retention --print-schema > schemas/etl-data-retention.json`"
    );
}
