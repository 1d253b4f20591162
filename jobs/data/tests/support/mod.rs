//! Shared helpers for etl-data's integration tests: the binary, the services scripts/test.sh
//! starts, unique names, and generated inputs.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use serde_json::Value;

pub fn database_url() -> String {
    std::env::var("DATABASE_URL")
        .expect("DATABASE_URL not set: run the tests through scripts/test.sh (it starts PostGIS)")
}

/// A store on the test S3 server and a new bucket on it named from `prefix`.
pub fn s3_bucket(rt: &tokio::runtime::Runtime, prefix: &str) -> (etl_core::store::Store, String) {
    let store = etl_core::store::Store::new(etl_core::store::S3Config {
        endpoint: Some(s3_endpoint()),
        ..Default::default()
    });
    let bucket = unique(prefix).replace('_', "-").to_lowercase();
    rt.block_on(async {
        store
            .s3()
            .await
            .unwrap()
            .client()
            .create_bucket()
            .bucket(&bucket)
            .send()
            .await
            .unwrap();
    });
    (store, bucket)
}

pub fn s3_endpoint() -> String {
    std::env::var("S3_ENDPOINT").expect(
        "S3_ENDPOINT not set: run the tests through scripts/test.sh (it starts the S3 server)",
    )
}

/// A name unique to this test process and call: `prefix_<pid>_<n>`.
pub fn unique(prefix: &str) -> String {
    static N: AtomicU32 = AtomicU32::new(0);
    format!(
        "{prefix}_{}_{}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    )
}

pub fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(name)
}

pub fn repo_fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../fixtures")
        .join(name)
}

pub fn etl_data() -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_etl-data"));
    cmd.env("LOG_FORMAT", "json")
        .env("RUST_LOG", "info")
        .env_remove("ETL_CHECKPOINT")
        .env_remove("ETL_LOGICAL_TIME")
        .env_remove("AWS_BATCH_JOB_ARRAY_INDEX")
        .env_remove("AWS_BATCH_JOB_ARRAY_SIZE");
    if let Ok(ep) = std::env::var("S3_ENDPOINT") {
        cmd.env("ETL_S3_ENDPOINT", ep);
    }
    cmd
}

pub struct Run {
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
    pub summary: Value,
}

impl Run {
    pub fn from_output(out: Output) -> Run {
        let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
        let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
        let summary = stdout
            .lines()
            .last()
            .and_then(|l| serde_json::from_str(l).ok())
            .unwrap_or(Value::Null);
        Run {
            code: out.status.code().unwrap_or(-1),
            stdout,
            stderr,
            summary,
        }
    }

    pub fn status(&self) -> &str {
        self.summary["status"].as_str().unwrap_or("")
    }

    pub fn count(&self, name: &str) -> u64 {
        self.summary["counts"][name].as_u64().unwrap_or(u64::MAX)
    }

    pub fn error(&self) -> &str {
        self.summary["error"].as_str().unwrap_or("")
    }

    #[track_caller]
    pub fn assert_code(&self, code: i32) -> &Run {
        assert_eq!(
            self.code, code,
            "exit code\n--- stdout\n{}\n--- stderr\n{}",
            self.stdout, self.stderr
        );
        self
    }
}

/// The features of a GeoJSON sequence file, one per line.
pub fn features(path: &Path) -> Vec<Value> {
    std::fs::read_to_string(path)
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

pub fn run(args: &[&str]) -> Run {
    let out = etl_data().args(args).output().expect("spawn etl-data");
    Run::from_output(out)
}

pub fn spawn(args: &[&str]) -> Child {
    etl_data()
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn etl-data")
}

/// Polls `cond` every 20 ms for up to `limit`; panics with `what` if it never holds.
pub fn wait_for(what: &str, limit: Duration, mut cond: impl FnMut() -> bool) {
    let start = Instant::now();
    while start.elapsed() < limit {
        if cond() {
            return;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    panic!("timed out waiting for {what}");
}

/// Writes `n` point features as a GeoJSON sequence: id i, a few typed properties, coordinates
/// derived from i (exactly representable in decimal text so comparisons are exact).
pub fn write_points(path: &Path, n: u64) {
    use std::io::Write;
    let mut f = std::io::BufWriter::new(std::fs::File::create(path).unwrap());
    for i in 0..n {
        let lon = -179.0 + (i % 35_000) as f64 * 0.01;
        let lat = -80.0 + (i / 35_000) as f64 * 0.001 + (i % 7) as f64 * 0.000001;
        writeln!(
            f,
            r#"{{"type":"Feature","id":{i},"properties":{{"name":"p{i}","n":{},"v":{},"ok":{}}},"geometry":{{"type":"Point","coordinates":[{lon},{lat}]}}}}"#,
            i % 1000,
            i as f64 / 8.0,
            i % 2 == 0
        )
        .unwrap();
    }
    f.flush().unwrap();
}

/// A Tokio runtime for the async SQL and S3 checks in tests.
pub fn rt() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
}

pub async fn pool() -> sqlx::PgPool {
    sqlx::postgres::PgPoolOptions::new()
        .max_connections(2)
        .connect(&database_url())
        .await
        .expect("connect to DATABASE_URL")
}

/// Every row `sql` returns, on a runtime of its own (for tests that are not async).
pub fn rows<T>(sql: &str) -> Vec<T>
where
    T: for<'r> sqlx::FromRow<'r, sqlx::postgres::PgRow> + Send + Unpin,
{
    rt().block_on(async {
        sqlx::query_as::<_, T>(sqlx::AssertSqlSafe(sql.to_string()))
            .fetch_all(&pool().await)
            .await
            .unwrap_or_else(|e| panic!("{sql}: {e}"))
    })
}

pub async fn scalar_i64(pool: &sqlx::PgPool, sql: &str) -> i64 {
    sqlx::query_scalar::<_, i64>(sqlx::AssertSqlSafe(sql.to_string()))
        .fetch_one(pool)
        .await
        .unwrap_or_else(|e| panic!("{sql}: {e}"))
}

pub async fn table_exists(pool: &sqlx::PgPool, table: &str) -> bool {
    sqlx::query_scalar::<_, bool>("SELECT to_regclass($1) IS NOT NULL")
        .bind(table)
        .fetch_one(pool)
        .await
        .unwrap()
}

/// Committed progress of an input in a run, from the Postgres checkpoint table.
pub async fn committed_next(pool: &sqlx::PgPool, input: &str) -> i64 {
    sqlx::query_scalar::<_, Option<i64>>(
        "SELECT max((state->>'next')::bigint) FROM etl_checkpoint WHERE name = $1 AND scope NOT LIKE 'ledger:%'",
    )
    .bind(input)
    .fetch_one(pool)
    .await
    .ok()
    .flatten()
    .unwrap_or(0)
}

/// Column name -> information_schema data_type of a table.
pub async fn column_types(
    pool: &sqlx::PgPool,
    table: &str,
) -> std::collections::BTreeMap<String, String> {
    sqlx::query_as::<_, (String, String)>(
        "SELECT column_name::text, data_type::text FROM information_schema.columns WHERE table_name = $1",
    )
    .bind(table)
    .fetch_all(pool)
    .await
    .unwrap()
    .into_iter()
    .collect()
}

/// Creates an empty table shaped like what [`write_points`] holds, without a key on id (so a
/// row loaded twice shows as a duplicate instead of failing), with a GIST index on geom.
pub fn create_points_table(table: &str) {
    rt().block_on(async {
        let pool = pool().await;
        sqlx::raw_sql(sqlx::AssertSqlSafe(format!(
            "CREATE TABLE \"{table}\" (id bigint, name text, n bigint, v double precision, ok boolean, geom geometry(Geometry,4326));
             CREATE INDEX ON \"{table}\" USING gist (geom);"
        )))
        .execute(&pool)
        .await
        .unwrap();
    });
}

/// The 10,000 NZTM2000 reference points (`fixtures/crs/2193.csv.gz`, made with gdaltransform):
/// `[x, y, lon, lat]`, by id (row order).
pub fn nztm_reference() -> Vec<[f64; 4]> {
    use std::io::Read;
    let file = std::fs::File::open(repo_fixture("crs/2193.csv.gz")).unwrap();
    let mut text = String::new();
    flate2::read::GzDecoder::new(file)
        .read_to_string(&mut text)
        .unwrap();
    text.lines()
        .skip(1)
        .map(|l| {
            let v: Vec<f64> = l.split(',').map(|f| f.parse().unwrap()).collect();
            [v[0], v[1], v[2], v[3]]
        })
        .collect()
}
