//! Publishing into a live PostGIS table: bounded lock waits for the swap, what `replace`
//! keeps from the table it replaces, and checkpoints that cannot be read.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::io::BufRead;
use std::sync::mpsc;
use std::time::Duration;

use serde_json::Value;
use support::*;

fn replace_args<'a>(input: &'a str, url: &'a str, table: &'a str) -> Vec<&'a str> {
    vec![
        "--input", input, "--output", url, "--table", table, "--mode", "replace",
    ]
}

/// A session that opens a transaction and takes ACCESS SHARE on the table, like a long
/// report reading it; the lock goes when the transaction ends.
struct Reader {
    rt: tokio::runtime::Runtime,
    tx: Option<sqlx::Transaction<'static, sqlx::Postgres>>,
}

impl Reader {
    fn lock(table: &str) -> Reader {
        let rt = rt();
        let tx = rt.block_on(async {
            let pool = sqlx::postgres::PgPoolOptions::new()
                .max_connections(1)
                .connect(&database_url())
                .await
                .unwrap();
            let mut tx = pool.begin().await.unwrap();
            sqlx::query("SET LOCAL application_name = 'long-report'")
                .execute(&mut *tx)
                .await
                .unwrap();
            sqlx::query(sqlx::AssertSqlSafe(format!(
                "LOCK TABLE \"{table}\" IN ACCESS SHARE MODE"
            )))
            .execute(&mut *tx)
            .await
            .unwrap();
            tx
        });
        Reader { rt, tx: Some(tx) }
    }

    fn release(&mut self) {
        if let Some(tx) = self.tx.take() {
            self.rt.block_on(tx.rollback()).unwrap();
        }
    }
}

/// Spawns etl-data and returns its log lines (stderr) as they come, and the process.
fn spawn_watched(args: &[&str]) -> (std::process::Child, mpsc::Receiver<String>) {
    let mut child = spawn(args);
    let stderr = child.stderr.take().unwrap();
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in std::io::BufReader::new(stderr).lines() {
            let Ok(line) = line else { break };
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    (child, rx)
}

fn is_retry(line: &str) -> bool {
    serde_json::from_str::<Value>(line)
        .is_ok_and(|v| v["message"] == "table is locked by another session; retrying")
}

#[test]
fn replace_behind_a_long_reader_retries_then_exits_75_without_publishing() {
    let dir = tempfile::tempdir().unwrap();
    let (old, new) = (
        dir.path().join("old.geojsonl"),
        dir.path().join("new.geojsonl"),
    );
    write_points(&old, 10);
    write_points(&new, 25);
    let table = unique("locked");
    let url = database_url();
    run(&replace_args(old.to_str().unwrap(), &url, &table)).assert_code(0);
    let mut reader = Reader::lock(&table);
    let mut args = replace_args(new.to_str().unwrap(), &url, &table);
    args.extend(["--lock-timeout", "200ms", "--lock-retries", "3"]);
    let r = run(&args);
    r.assert_code(75);
    assert!(r.error().contains(&table), "names the table: {}", r.error());
    assert!(
        r.error().contains("long-report") && r.error().contains("AccessShareLock"),
        "names who holds it: {}",
        r.error()
    );
    let retries = r.stderr.lines().filter(|l| is_retry(l)).count();
    assert_eq!(retries, 2, "three tries, two retries\n{}", r.stderr);
    reader.release();
    rt().block_on(async {
        let pool = pool().await;
        let n = scalar_i64(&pool, &format!("SELECT count(*) FROM \"{table}\"")).await;
        assert_eq!(n, 10, "the old table is untouched");
    });
    // Nothing lost either: the rerun only publishes what the first attempt staged.
    let again = run(&replace_args(new.to_str().unwrap(), &url, &table));
    again.assert_code(0);
    assert_eq!(again.count("read"), 25);
    rt().block_on(async {
        let pool = pool().await;
        let n = scalar_i64(&pool, &format!("SELECT count(*) FROM \"{table}\"")).await;
        assert_eq!(n, 25);
    });
}

#[test]
fn replace_succeeds_once_the_reader_lets_go_before_the_retries_run_out() {
    let dir = tempfile::tempdir().unwrap();
    let (old, new) = (
        dir.path().join("old.geojsonl"),
        dir.path().join("new.geojsonl"),
    );
    write_points(&old, 10);
    write_points(&new, 25);
    let table = unique("unlocked");
    let url = database_url();
    run(&replace_args(old.to_str().unwrap(), &url, &table)).assert_code(0);
    let mut reader = Reader::lock(&table);
    let mut args = replace_args(new.to_str().unwrap(), &url, &table);
    args.extend(["--lock-timeout", "200ms", "--lock-retries", "50"]);
    let (child, lines) = spawn_watched(&args);
    // The reader ends its transaction when the loader reports its first retry: the swap has
    // certainly waited for it once, and has retries left.
    let mut seen = Vec::new();
    loop {
        let line = lines
            .recv_timeout(Duration::from_secs(120))
            .expect("no retry logged");
        let retry = is_retry(&line);
        seen.push(line);
        if retry {
            break;
        }
    }
    reader.release();
    let r = Run::from_output(child.wait_with_output().unwrap());
    seen.extend(lines.iter());
    r.assert_code(0);
    assert_eq!(r.status(), "succeeded", "{}", seen.join("\n"));
    rt().block_on(async {
        let pool = pool().await;
        let n = scalar_i64(&pool, &format!("SELECT count(*) FROM \"{table}\"")).await;
        assert_eq!(n, 25, "the new table is in place");
    });
}

#[test]
fn replace_keeps_grants_comments_and_row_level_security() {
    let dir = tempfile::tempdir().unwrap();
    let (old, new) = (
        dir.path().join("old.geojsonl"),
        dir.path().join("new.geojsonl"),
    );
    write_points(&old, 10);
    write_points(&new, 1000);
    let table = unique("kept");
    let reader = unique("Reader Role");
    let writer = unique("writer");
    let url = database_url();
    run(&replace_args(old.to_str().unwrap(), &url, &table)).assert_code(0);
    let t = format!("\"{table}\"");
    let setup = format!(
        r#"
        CREATE ROLE "{reader}"; CREATE ROLE "{writer}";
        GRANT SELECT ON {t} TO "{reader}";
        GRANT INSERT, UPDATE ON {t} TO "{writer}" WITH GRANT OPTION;
        GRANT UPDATE (name) ON {t} TO "{reader}";
        COMMENT ON TABLE {t} IS 'points of interest; don''t drop';
        COMMENT ON COLUMN {t}.name IS 'display name';
        ALTER TABLE {t} ENABLE ROW LEVEL SECURITY;
        ALTER TABLE {t} FORCE ROW LEVEL SECURITY;
        CREATE POLICY "small n" ON {t} AS PERMISSIVE FOR SELECT TO "{reader}" USING (n < 100);
        CREATE POLICY writers ON {t} FOR INSERT TO "{writer}" WITH CHECK (ok);
        "#
    );
    rt().block_on(async {
        let pool = pool().await;
        sqlx::raw_sql(sqlx::AssertSqlSafe(setup))
            .execute(&pool)
            .await
            .unwrap();
    });
    run(&replace_args(new.to_str().unwrap(), &url, &table)).assert_code(0);
    rt().block_on(async {
        let pool = pool().await;
        let privilege = |role: &str, what: &str| {
            let sql = format!("SELECT has_table_privilege('{role}', '{t}', '{what}')");
            let pool = pool.clone();
            async move {
                sqlx::query_scalar::<_, bool>(sqlx::AssertSqlSafe(sql))
                    .fetch_one(&pool)
                    .await
                    .unwrap()
            }
        };
        assert!(privilege(&reader, "SELECT").await);
        assert!(!privilege(&reader, "INSERT").await);
        assert!(privilege(&writer, "INSERT WITH GRANT OPTION").await);
        assert!(privilege(&writer, "UPDATE WITH GRANT OPTION").await);
        assert!(!privilege(&writer, "SELECT").await);
        let column: bool = sqlx::query_scalar(sqlx::AssertSqlSafe(format!(
            "SELECT has_column_privilege('{reader}', '{t}', 'name', 'UPDATE')"
        )))
        .fetch_one(&pool)
        .await
        .unwrap();
        assert!(column, "column privilege kept");
        let (table_comment, column_comment): (String, String) = sqlx::query_as(sqlx::AssertSqlSafe(format!(
            "SELECT obj_description('{t}'::regclass, 'pg_class'), col_description('{t}'::regclass, \
             (SELECT attnum FROM pg_attribute WHERE attrelid = '{t}'::regclass AND attname = 'name')::int)"
        )))
        .fetch_one(&pool)
        .await
        .unwrap();
        assert_eq!(table_comment, "points of interest; don't drop");
        assert_eq!(column_comment, "display name");
        let (enabled, forced): (bool, bool) = sqlx::query_as(sqlx::AssertSqlSafe(format!(
            "SELECT relrowsecurity, relforcerowsecurity FROM pg_class WHERE oid = '{t}'::regclass"
        )))
        .fetch_one(&pool)
        .await
        .unwrap();
        assert!(enabled && forced, "row-level security enabled and forced");
        let policies: Vec<(String, String, String)> = sqlx::query_as(
            "SELECT policyname::text, cmd, coalesce(qual, with_check) FROM pg_policies WHERE tablename = $1 ORDER BY policyname",
        )
        .bind(&table)
        .fetch_all(&pool)
        .await
        .unwrap();
        assert_eq!(
            policies,
            vec![
                ("small n".into(), "SELECT".into(), "(n < 100)".into()),
                ("writers".into(), "INSERT".into(), "ok".into()),
            ]
        );
        // And the policy works on the new rows: the reader sees only n < 100.
        let mut conn = pool.acquire().await.unwrap();
        sqlx::query(sqlx::AssertSqlSafe(format!("SET ROLE \"{reader}\"")))
            .execute(&mut *conn)
            .await
            .unwrap();
        let visible: i64 = sqlx::query_scalar(sqlx::AssertSqlSafe(format!("SELECT count(*) FROM {t}")))
            .fetch_one(&mut *conn)
            .await
            .unwrap();
        sqlx::query("RESET ROLE").execute(&mut *conn).await.unwrap();
        drop(conn);
        assert_eq!(visible, 100, "ids 0..1000 have n = id % 1000");
        let all = scalar_i64(&pool, &format!("SELECT count(*) FROM {t}")).await;
        assert_eq!(all, 1000, "the tests' superuser sees every row");
        sqlx::raw_sql(sqlx::AssertSqlSafe(format!(
            "DROP TABLE {t}; DROP ROLE \"{reader}\"; DROP ROLE \"{writer}\";"
        )))
        .execute(&pool)
        .await
        .unwrap();
    });
}

/// The run key a config resolves to, from a dry run.
fn run_key(args: &[&str]) -> String {
    let mut dry = vec!["--dry-run"];
    dry.extend_from_slice(args);
    let r = run(&dry);
    r.assert_code(0);
    r.summary["run_key"].as_str().unwrap().to_string()
}

#[test]
fn an_undecodable_checkpoint_stops_the_run_with_78_and_never_restarts_it() {
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("points.geojsonl");
    write_points(&input, 100);
    let input_s = input.to_str().unwrap();
    let url = database_url();
    for mode in ["replace", "append"] {
        let table = unique(&format!("undecodable_{mode}"));
        let args = [
            "--input", input_s, "--output", &url, "--table", &table, "--mode", mode,
        ];
        let key = run_key(&args);
        rt().block_on(async {
            let pool = pool().await;
            // A checkpoint of this run that this version cannot read (another writer, a bug,
            // a hand edit): it says something about committed rows, so guessing is not an option.
            sqlx::query("INSERT INTO etl_checkpoint (scope, name, state) VALUES ($1, $2, $3)")
                .bind(&key)
                .bind(input_s)
                .bind(serde_json::json!({"next": "far", "done": "maybe"}))
                .execute(&pool)
                .await
                .unwrap();
        });
        let r = run(&args);
        r.assert_code(78);
        assert!(
            r.error().contains(&key),
            "{mode}: names the run key: {}",
            r.error()
        );
        rt().block_on(async {
            let pool = pool().await;
            assert!(
                !table_exists(&pool, &table).await,
                "{mode}: nothing was loaded"
            );
            let kept: i64 =
                sqlx::query_scalar("SELECT count(*) FROM etl_checkpoint WHERE scope = $1")
                    .bind(&key)
                    .fetch_one(&pool)
                    .await
                    .unwrap();
            assert_eq!(
                kept, 1,
                "{mode}: the checkpoint is left for a person to look at"
            );
        });
    }
}

#[test]
fn an_undecodable_ledger_entry_stops_an_append_with_78() {
    use sha2::{Digest, Sha256};
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("points.geojsonl");
    write_points(&input, 10);
    let input_s = input.to_str().unwrap();
    let url = database_url();
    let table = unique("bad_ledger");
    create_points_table(&table);
    let scope = format!(
        "ledger:{}",
        hex::encode(&Sha256::digest(format!("public.{table}").as_bytes())[..12])
    );
    rt().block_on(async {
        let pool = pool().await;
        sqlx::query("INSERT INTO etl_checkpoint (scope, name, state) VALUES ($1, $2, $3)")
            .bind(&scope)
            .bind(input_s)
            .bind(serde_json::json!(["not", "an", "entry"]))
            .execute(&pool)
            .await
            .unwrap();
    });
    let r = run(&["--input", input_s, "--output", &url, "--table", &table]);
    r.assert_code(78);
    assert!(r.error().contains(&scope), "{}", r.error());
    rt().block_on(async {
        let pool = pool().await;
        let n = scalar_i64(&pool, &format!("SELECT count(*) FROM \"{table}\"")).await;
        assert_eq!(n, 0, "nothing appended on a guess");
    });
}
