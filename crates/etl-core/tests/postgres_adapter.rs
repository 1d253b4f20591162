//! The Postgres adapter against the PostGIS server scripts/test.sh starts: connecting, COPY of
//! text rows (with EWKB geometry), and the exit code each kind of database failure maps to.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use etl_core::ExitKind;
use etl_core::postgres::{self, PgError, classify, copy_in};
use sqlx::{AssertSqlSafe, Connection, PgConnection};

use common::{database_url, unique};

/// POINT(1 2) in SRID 4326 as hex EWKB, the text COPY format the loaders use for geometry.
const EWKB_POINT_1_2: &str = "0101000020E6100000000000000000F03F0000000000000040";

async fn pool() -> sqlx::PgPool {
    postgres::connect(&database_url(), 2)
        .await
        .unwrap_or_else(|e| panic!("connecting to DATABASE_URL: {e}"))
}

async fn error_of(sql: &str) -> PgError {
    let pool = pool().await;
    let err = sqlx::query(AssertSqlSafe(sql.to_string()))
        .execute(&pool)
        .await
        .expect_err("the statement must fail");
    PgError::sql(format!("running {sql}"), err)
}

fn closed_port() -> u16 {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    l.local_addr().unwrap().port()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn copy_in_text_rows_with_ewkb() {
    let pool = pool().await;
    let mut conn = pool.acquire().await.unwrap();
    let table = unique("copy_text").replace('-', "_");
    sqlx::query(AssertSqlSafe(format!(
        "CREATE TEMP TABLE {table} (id int PRIMARY KEY, name text, geom geometry(Geometry,4326))"
    )))
    .execute(&mut *conn)
    .await
    .unwrap();

    let rows = format!(
        "1\tplain\t{EWKB_POINT_1_2}\n\
         2\twith\\ttab and \\\\ backslash\t\\N\n\
         3\t\\N\tSRID=4326;LINESTRING(0 0,1 1)\n"
    );
    let copied = copy_in(
        &mut conn,
        &format!("COPY {table} (id, name, geom) FROM STDIN"),
        rows.as_bytes(),
    )
    .await
    .unwrap();
    assert_eq!(copied, 3);

    let count: i64 = sqlx::query_scalar(AssertSqlSafe(format!("SELECT count(*) FROM {table}")))
        .fetch_one(&mut *conn)
        .await
        .unwrap();
    assert_eq!(count, 3);
    let (name, wkt, srid): (String, String, i32) = sqlx::query_as(AssertSqlSafe(format!(
        "SELECT name, ST_AsText(geom), ST_SRID(geom) FROM {table} WHERE id = 1"
    )))
    .fetch_one(&mut *conn)
    .await
    .unwrap();
    assert_eq!(
        (name.as_str(), wkt.as_str(), srid),
        ("plain", "POINT(1 2)", 4326)
    );
    let (name, geom_null): (String, bool) = sqlx::query_as(AssertSqlSafe(format!(
        "SELECT name, geom IS NULL FROM {table} WHERE id = 2"
    )))
    .fetch_one(&mut *conn)
    .await
    .unwrap();
    assert_eq!(
        name, "with\ttab and \\ backslash",
        "COPY text escapes decoded"
    );
    assert!(geom_null);
    let name_null: bool = sqlx::query_scalar(AssertSqlSafe(format!(
        "SELECT name IS NULL FROM {table} WHERE id = 3"
    )))
    .fetch_one(&mut *conn)
    .await
    .unwrap();
    assert!(name_null);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn copy_in_streams_more_than_one_chunk() {
    let pool = pool().await;
    let mut conn = pool.acquire().await.unwrap();
    let table = unique("copy_big").replace('-', "_");
    sqlx::query(AssertSqlSafe(format!(
        "CREATE TEMP TABLE {table} (id int, name text)"
    )))
    .execute(&mut *conn)
    .await
    .unwrap();
    // About 3 MiB: several of copy_in's 1 MiB chunks, with rows split across chunk borders.
    let n = 100_000;
    let mut data = String::new();
    for i in 0..n {
        data.push_str(&format!("{i}\tfeature number {i:>10}\n"));
    }
    assert!(data.len() > 2 * 1024 * 1024);
    let copied = copy_in(
        &mut conn,
        &format!("COPY {table} FROM STDIN"),
        data.as_bytes(),
    )
    .await
    .unwrap();
    assert_eq!(copied, n);
    let (count, sum): (i64, i64) = sqlx::query_as(AssertSqlSafe(format!(
        "SELECT count(*), sum(id)::bigint FROM {table}"
    )))
    .fetch_one(&mut *conn)
    .await
    .unwrap();
    assert_eq!(count, n as i64);
    assert_eq!(sum, (n as i64 - 1) * n as i64 / 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn copy_in_of_bad_rows_is_bad_input_and_loads_nothing() {
    let pool = pool().await;
    let mut conn = pool.acquire().await.unwrap();
    let table = unique("copy_bad").replace('-', "_");
    sqlx::query(AssertSqlSafe(format!(
        "CREATE TEMP TABLE {table} (id int, name text)"
    )))
    .execute(&mut *conn)
    .await
    .unwrap();
    let err = copy_in(
        &mut conn,
        &format!("COPY {table} FROM STDIN"),
        b"1\tok\nnot-a-number\tbad\n",
    )
    .await
    .expect_err("a row with a non-integer id must fail the COPY");
    let job = classify(&err);
    assert_eq!(job.kind, ExitKind::BadInput, "{job}");
    assert_eq!(job.kind.code(), 65);
    let count: i64 = sqlx::query_scalar(AssertSqlSafe(format!("SELECT count(*) FROM {table}")))
        .fetch_one(&mut *conn)
        .await
        .unwrap();
    assert_eq!(count, 0, "a failed COPY loads no row");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refused_connection_is_unavailable() {
    database_url();
    let url = format!("postgres://postgres@127.0.0.1:{}/postgres", closed_port());
    let err = PgConnection::connect(&url)
        .await
        .expect_err("nothing listens on a closed port");
    let job = classify(&PgError::sql("connecting", err));
    assert_eq!(job.kind, ExitKind::Unavailable, "{job}");
    assert_eq!(job.kind.code(), 69);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pool_connect_to_a_closed_port_is_unavailable() {
    database_url();
    let url = format!("postgres://postgres@127.0.0.1:{}/postgres", closed_port());
    // The pool retries a refused connection until its acquire timeout, then gives up.
    let err = postgres::connect(&url, 1)
        .await
        .expect_err("nothing listens on a closed port");
    let job = classify(&err);
    assert_eq!(job.kind, ExitKind::Unavailable, "{job}");
    assert_eq!(job.kind.code(), 69);
    assert!(
        !job.message.contains("postgres@"),
        "no URL in the message: {job}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn syntax_error_is_config() {
    let job = classify(&error_of("SELEC 1").await);
    assert_eq!(job.kind, ExitKind::Config, "{job}");
    assert_eq!(job.kind.code(), 78);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn undefined_table_is_config() {
    let table = unique("missing").replace('-', "_");
    let job = classify(&error_of(&format!("SELECT * FROM {table}")).await);
    assert_eq!(job.kind, ExitKind::Config, "{job}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn data_error_is_bad_input() {
    let job = classify(&error_of("SELECT 'x'::int").await);
    assert_eq!(job.kind, ExitKind::BadInput, "{job}");
    assert_eq!(job.kind.code(), 65);
    assert!(!job.kind.retryable());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn missing_database_is_config() {
    let base = database_url();
    let (base, query) = base.split_once('?').unwrap_or((&base, ""));
    let (server, _) = base.rsplit_once('/').expect("DATABASE_URL ends in /DBNAME");
    let mut url = format!("{server}/{}", unique("nodb").replace('-', "_"));
    if !query.is_empty() {
        url = format!("{url}?{query}");
    }
    let err = postgres::connect(&url, 1)
        .await
        .expect_err("connecting to a database that does not exist");
    let job = classify(&err);
    assert_eq!(job.kind, ExitKind::Config, "{job}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_url_is_config() {
    let err = postgres::connect("postgres://[not-a-host/db", 1)
        .await
        .expect_err("an unparsable URL");
    assert!(matches!(err, PgError::BadUrl(_)), "{err:?}");
    assert_eq!(classify(&err).kind, ExitKind::Config);
}

/// Runs a multi-statement script on one connection (one implicit transaction: nothing is left
/// behind when it fails) and returns the failure.
async fn script_error_of(sql: &str) -> PgError {
    let mut conn = PgConnection::connect(&database_url()).await.unwrap();
    let err = sqlx::raw_sql(AssertSqlSafe(sql.to_string()))
        .execute(&mut conn)
        .await
        .expect_err("the script must fail");
    let _ = conn.close().await;
    PgError::sql("running a script", err)
}

fn sqlstate(err: &PgError) -> String {
    match err {
        PgError::Sql {
            source: sqlx::Error::Database(db),
            ..
        } => db.code().map(|c| c.to_string()).unwrap_or_default(),
        other => panic!("not a database error: {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dropping_a_table_with_dependent_views_is_config() {
    let t = unique("dep_t").replace('-', "_");
    let v = unique("dep_v").replace('-', "_");
    let err = script_error_of(&format!(
        "CREATE TABLE {t} (); CREATE VIEW {v} AS SELECT * FROM {t}; DROP TABLE {t}"
    ))
    .await;
    assert_eq!(sqlstate(&err), "2BP01");
    let job = classify(&err);
    assert_eq!(job.kind, ExitKind::Config, "{job}");
    assert_eq!(job.kind.code(), 78);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn too_many_columns_is_bad_input() {
    let t = unique("wide").replace('-', "_");
    let cols: Vec<String> = (0..1700).map(|i| format!("c{i} int")).collect();
    let err = script_error_of(&format!("CREATE TABLE {t} ({})", cols.join(", "))).await;
    assert_eq!(sqlstate(&err), "54011");
    let job = classify(&err);
    assert_eq!(job.kind, ExitKind::BadInput, "{job}");
    assert_eq!(job.kind.code(), 65);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unsupported_feature_is_config() {
    // 0A000: row locking cannot be combined with an aggregate.
    let err = script_error_of("SELECT count(*) FROM pg_class FOR UPDATE").await;
    assert_eq!(sqlstate(&err), "0A000");
    let job = classify(&err);
    assert_eq!(job.kind, ExitKind::Config, "{job}");
}
