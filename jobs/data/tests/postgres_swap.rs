//! `--mode append` into an existing table that is small beside the input goes by swap: the
//! rows are staged, indexed once, and swapped in with the table's own rows, privileges,
//! comments, row-level security, index and constraint names. A table a copy would lose
//! something of is appended directly; a swap that finds another run's unpublished direct load
//! in the table appends the staged rows instead. Every way publishes each row exactly once.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::time::Duration;

use support::*;

fn sql_i64(sql: &str) -> i64 {
    rt().block_on(async { scalar_i64(&pool().await, sql).await })
}

fn sql_text(sql: &str) -> String {
    rt().block_on(async {
        sqlx::query_scalar::<_, String>(sqlx::AssertSqlSafe(sql.to_string()))
            .fetch_one(&pool().await)
            .await
            .unwrap_or_else(|e| panic!("{sql}: {e}"))
    })
}

fn exec(sql: &str) {
    rt().block_on(async {
        sqlx::raw_sql(sqlx::AssertSqlSafe(sql.to_string()))
            .execute(&pool().await)
            .await
            .unwrap_or_else(|e| panic!("{sql}: {e}"));
    })
}

fn oid(table: &str) -> i64 {
    sql_i64(&format!("SELECT '\"{table}\"'::regclass::oid::bigint"))
}

/// (rows, distinct ids).
fn counts(table: &str) -> (i64, i64) {
    (
        sql_i64(&format!("SELECT count(*) FROM \"{table}\"")),
        sql_i64(&format!("SELECT count(DISTINCT id) FROM \"{table}\"")),
    )
}

/// Index name -> definition (with the table's name), sorted.
fn indexes(table: &str) -> String {
    sql_text(&format!(
        "SELECT coalesce(string_agg(indexname || ': ' || indexdef, E'\\n' ORDER BY indexname), '') \
         FROM pg_indexes WHERE tablename = '{table}'"
    ))
}

/// Stage tables left in the schema for `table`.
fn stages(table: &str) -> i64 {
    sql_i64(&format!(
        "SELECT count(*) FROM pg_class WHERE relkind = 'r' AND relname LIKE '{}\\_\\_etl\\_%'",
        &table[..table.len().min(45)]
    ))
}

/// The arguments of a load of `input` into `table` (batches of 1000), then `extra`.
fn load_args(input: &std::path::Path, table: &str, extra: &[&str]) -> Vec<String> {
    let mut args: Vec<String> = [
        "--input",
        input.to_str().unwrap(),
        "--output",
        &database_url(),
        "--table",
        table,
        "--checkpoint-every",
        "1000",
    ]
    .map(String::from)
    .to_vec();
    args.extend(extra.iter().map(|a| a.to_string()));
    args
}

fn load(input: &std::path::Path, table: &str, extra: &[&str]) -> Run {
    let args = load_args(input, table, extra);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    run(&args)
}

/// [`load`] with the test-only `ETL_FAULT` set: it dies (or pauses) at that point.
fn load_faulted(input: &std::path::Path, table: &str, fault: &str, extra: &[&str]) -> Run {
    let out = etl_data()
        .env("ETL_FAULT", fault)
        .args(load_args(input, table, extra))
        .output()
        .unwrap();
    Run::from_output(out)
}

/// [`load`] after a kill: a 75 while the killed run's lease is still held is what Batch
/// retries, so this retries it too.
fn load_after_kill(input: &std::path::Path, table: &str, extra: &[&str]) -> Run {
    for _ in 0..50 {
        let r = load(input, table, extra);
        if r.code != 75 {
            return r;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    panic!("the killed run's lease was never released");
}

/// Points with ids from `from` (so two files can hold distinct ids).
fn write_points_from(path: &std::path::Path, from: u64, n: u64) {
    let tmp = path.with_extension("all");
    write_points(&tmp, from + n);
    let text = std::fs::read_to_string(&tmp).unwrap();
    let lines: Vec<&str> = text.lines().skip(from as usize).collect();
    std::fs::write(path, lines.join("\n") + "\n").unwrap();
}

#[test]
fn append_into_a_small_table_swaps_it_in_with_everything_it_had() {
    let dir = tempfile::tempdir().unwrap();
    let (old, new, few) = (
        dir.path().join("old.geojsonl"),
        dir.path().join("new.geojsonl"),
        dir.path().join("few.geojsonl"),
    );
    write_points_from(&old, 0, 200);
    write_points_from(&new, 200, 4000);
    write_points_from(&few, 4200, 10);
    let table = unique("swap_keeps");
    let role = unique("swap_reader");
    load(&old, &table, &[]).assert_code(0);
    exec(&format!(
        "CREATE ROLE {role};
         GRANT SELECT ON \"{table}\" TO {role};
         GRANT UPDATE (name) ON \"{table}\" TO {role};
         COMMENT ON TABLE \"{table}\" IS 'my layer';
         COMMENT ON COLUMN \"{table}\".name IS 'what it is called';
         ALTER TABLE \"{table}\" ENABLE ROW LEVEL SECURITY;
         CREATE POLICY only_named ON \"{table}\" FOR SELECT TO {role} USING (name IS NOT NULL);"
    ));
    let before_oid = oid(&table);
    let before_indexes = indexes(&table);
    assert!(before_indexes.contains("_geom_idx"), "{before_indexes}");

    let r = load(&new, &table, &[]);
    r.assert_code(0);
    assert!(
        r.stderr.contains("appending by swap"),
        "auto picks the swap for a small table: {}",
        r.stderr
    );
    assert_eq!(r.count("written"), 4000);
    assert_ne!(oid(&table), before_oid, "the copy was swapped in");
    assert_eq!(counts(&table), (4200, 4200));
    assert_eq!(indexes(&table), before_indexes, "the same indexes, by name");
    assert_eq!(
        sql_text(&format!(
            "SELECT obj_description('\"{table}\"'::regclass, 'pg_class')"
        )),
        "my layer"
    );
    assert_eq!(
        sql_text(&format!(
            "SELECT col_description('\"{table}\"'::regclass, \
             (SELECT attnum FROM pg_attribute WHERE attrelid = '\"{table}\"'::regclass AND attname = 'name')::int)"
        )),
        "what it is called"
    );
    assert_eq!(
        sql_i64(&format!(
            "SELECT count(*) FROM information_schema.role_table_grants \
             WHERE table_name = '{table}' AND grantee = '{role}' AND privilege_type = 'SELECT'"
        )),
        1
    );
    assert_eq!(
        sql_i64(&format!(
            "SELECT count(*) FROM information_schema.column_privileges \
             WHERE table_name = '{table}' AND grantee = '{role}' AND column_name = 'name' \
             AND privilege_type = 'UPDATE'"
        )),
        1
    );
    assert_eq!(
        sql_i64(&format!(
            "SELECT count(*) FROM pg_policy WHERE polrelid = '\"{table}\"'::regclass AND polname = 'only_named'"
        )),
        1
    );
    assert_eq!(
        sql_i64(&format!(
            "SELECT count(*) FROM pg_class WHERE oid = '\"{table}\"'::regclass AND relrowsecurity"
        )),
        1
    );
    assert_eq!(stages(&table), 0, "no stage left");
    // The ledger followed the table: another run key with the same input skips it.
    let r = run(&[
        "--input",
        &format!("{},{}", new.display(), few.display()),
        "--output",
        &database_url(),
        "--table",
        &table,
    ]);
    r.assert_code(0);
    assert_eq!(r.count("skipped_inputs"), 1, "{}", r.stderr);
    assert_eq!(r.count("written"), 10);
    assert_eq!(counts(&table), (4210, 4210));
    exec(&format!("DROP TABLE \"{table}\"; DROP ROLE {role}; "));
}

#[test]
fn a_key_and_a_unique_index_come_back_and_still_refuse_repeated_ids() {
    let dir = tempfile::tempdir().unwrap();
    let (old, new) = (
        dir.path().join("old.geojsonl"),
        dir.path().join("new.geojsonl"),
    );
    write_points_from(&old, 0, 100);
    write_points_from(&new, 100, 3000);
    let table = unique("swap_key");
    // replace makes id the primary key.
    load(&old, &table, &["--mode", "replace"]).assert_code(0);
    exec(&format!(
        "CREATE UNIQUE INDEX \"{table}_name_uq\" ON \"{table}\" (name)"
    ));
    let before = indexes(&table);
    let r = load(&new, &table, &["--append-path", "swap"]);
    r.assert_code(0);
    assert!(r.stderr.contains("appending by swap"), "{}", r.stderr);
    assert_eq!(indexes(&table), before);
    assert_eq!(
        sql_text(&format!(
            "SELECT conname::text FROM pg_constraint WHERE conrelid = '\"{table}\"'::regclass AND contype = 'p'"
        )),
        format!("{table}_pkey")
    );
    assert_eq!(counts(&table), (3100, 3100));
    // Ids the table has already: the key refuses them, nothing is published, no stage stays.
    let oid_before = oid(&table);
    let again = dir.path().join("again.geojsonl");
    write_points_from(&again, 3000, 200);
    let r = load(&again, &table, &["--append-path", "swap"]);
    r.assert_code(65);
    assert_eq!(counts(&table), (3100, 3100));
    assert_eq!(oid(&table), oid_before);
    assert_eq!(stages(&table), 0, "{}", r.stderr);
    exec(&format!("DROP TABLE \"{table}\""));
}

#[test]
fn a_table_a_copy_would_lose_something_of_is_appended_directly() {
    let dir = tempfile::tempdir().unwrap();
    let (old, new) = (
        dir.path().join("old.geojsonl"),
        dir.path().join("new.geojsonl"),
    );
    write_points_from(&old, 0, 50);
    write_points_from(&new, 50, 2000);
    for (what, ddl) in [
        (
            "view",
            "CREATE VIEW \"{t}_v\" AS SELECT id, name FROM \"{t}\"",
        ),
        (
            "trigger",
            "CREATE TABLE \"{t}_log\" (n bigint);
             CREATE FUNCTION \"{t}_f\"() RETURNS trigger LANGUAGE plpgsql AS
               $$ BEGIN INSERT INTO \"{t}_log\" VALUES (NEW.id); RETURN NEW; END $$;
             CREATE TRIGGER tr AFTER INSERT ON \"{t}\" FOR EACH ROW EXECUTE FUNCTION \"{t}_f\"()",
        ),
        (
            "default",
            "ALTER TABLE \"{t}\" ALTER COLUMN n SET DEFAULT 7",
        ),
        (
            "forced row-level security",
            "ALTER TABLE \"{t}\" ENABLE ROW LEVEL SECURITY;
             ALTER TABLE \"{t}\" FORCE ROW LEVEL SECURITY;
             CREATE POLICY everything ON \"{t}\" USING (true)",
        ),
        ("two-column index", "CREATE INDEX ON \"{t}\" (n, v)"),
        (
            "publication",
            "CREATE PUBLICATION \"{t}_pub\" FOR TABLE \"{t}\"",
        ),
        (
            "column storage",
            "ALTER TABLE \"{t}\" ALTER COLUMN name SET STORAGE EXTERNAL",
        ),
        (
            "index comment",
            "COMMENT ON INDEX \"{t}_geom_idx\" IS 'the spatial index'",
        ),
        (
            "cluster index",
            "ALTER TABLE \"{t}\" CLUSTER ON \"{t}_geom_idx\"",
        ),
        (
            "foreign key",
            "ALTER TABLE \"{t}\" ADD PRIMARY KEY (id);
             CREATE TABLE \"{t}_ref\" (x bigint REFERENCES \"{t}\" (id))",
        ),
    ] {
        let table = unique("swap_not");
        load(&old, &table, &[]).assert_code(0);
        exec(&ddl.replace("{t}", &table));
        let before = oid(&table);
        // Even when asked for.
        let r = load(&new, &table, &["--append-path", "swap"]);
        r.assert_code(0);
        assert!(
            r.stderr
                .contains("appending directly: a copy of the table would lose something"),
            "{what}: {}",
            r.stderr
        );
        assert_eq!(oid(&table), before, "{what}: the same table");
        assert_eq!(counts(&table), (2050, 2050), "{what}");
        if what == "trigger" {
            assert_eq!(
                sql_i64(&format!("SELECT count(*) FROM \"{table}_log\"")),
                2000,
                "the trigger saw every new row"
            );
        }
        if what == "view" {
            assert_eq!(
                sql_i64(&format!("SELECT count(*) FROM \"{table}_v\"")),
                2050
            );
        }
    }
}

/// Starts a direct append of `input` that stops after its first committed batch until
/// `gate.N` files appear; returns it once that batch is in.
fn direct_paused_after_a_batch(
    dir: &std::path::Path,
    input: &std::path::Path,
    table: &str,
    gate: &str,
) -> std::process::Child {
    let child = etl_data()
        .env(
            "ETL_FAULT",
            format!("data.batch_committed={}", dir.join(gate).display()),
        )
        .args([
            "--input",
            input.to_str().unwrap(),
            "--output",
            &database_url(),
            "--table",
            table,
            "--checkpoint-every",
            "5000",
            "--append-path",
            "direct",
        ])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    wait_for(
        "the direct run's first batch",
        Duration::from_secs(120),
        || dir.join(format!("{gate}.1.reached")).exists(),
    );
    child
}

fn open_gates(dir: &std::path::Path, gate: &str) {
    for i in 1..=100 {
        std::fs::write(dir.join(format!("{gate}.{i}")), b"").unwrap();
    }
}

#[test]
fn another_runs_unpublished_direct_load_keeps_a_swap_from_copying_its_rows() {
    let dir = tempfile::tempdir().unwrap();
    let (seed, a, b) = (
        dir.path().join("seed.geojsonl"),
        dir.path().join("a.geojsonl"),
        dir.path().join("b.geojsonl"),
    );
    write_points_from(&seed, 0, 10);
    write_points_from(&a, 10, 30_000);
    write_points_from(&b, 30_010, 3000);

    // A is half way when B starts: B appends directly from the start.
    let table = unique("swap_busy");
    load(&seed, &table, &[]).assert_code(0);
    let a_run = direct_paused_after_a_batch(dir.path(), &a, &table, "a1");
    let held = counts(&table).0;
    assert!(held > 10 && held < 30_010, "A is half way: {held}");
    let before = oid(&table);
    let r = load(&b, &table, &["--append-path", "swap"]);
    r.assert_code(0);
    assert!(
        r.stderr
            .contains("appending directly: the table holds loads not yet published"),
        "{}",
        r.stderr
    );
    assert_eq!(oid(&table), before, "not swapped");
    assert_eq!(counts(&table).0, held + 3000);
    open_gates(dir.path(), "a1");
    Run::from_output(a_run.wait_with_output().unwrap()).assert_code(0);
    assert_eq!(counts(&table), (33_010, 33_010));

    // B staged first and A committed a batch before B's final transaction: B finds A's
    // unpublished rows under the lock and appends its staged rows instead of swapping.
    let table = unique("swap_busy");
    load(&seed, &table, &[]).assert_code(0);
    let gate = dir.path().join("b2");
    let b_run = spawn_paused(
        &b,
        &table,
        format!("data.swap.before_lock={}", gate.display()),
    );
    wait_for("B to reach its lock", Duration::from_secs(120), || {
        dir.path().join("b2.1.reached").exists()
    });
    let a_run = direct_paused_after_a_batch(dir.path(), &a, &table, "a2");
    let held = counts(&table).0;
    let before = oid(&table);
    std::fs::write(dir.path().join("b2.1"), b"").unwrap();
    let r = Run::from_output(b_run.wait_with_output().unwrap());
    r.assert_code(0);
    assert!(
        r.stderr
            .contains("appending the staged rows into the table instead of swapping")
            && r.stderr.contains("has an unpublished load of"),
        "{}",
        r.stderr
    );
    assert_eq!(oid(&table), before, "not swapped");
    assert_eq!(counts(&table).0, held + 3000);
    open_gates(dir.path(), "a2");
    Run::from_output(a_run.wait_with_output().unwrap()).assert_code(0);
    assert_eq!(counts(&table), (33_010, 33_010));
}

#[test]
fn a_swap_run_killed_at_any_point_publishes_each_row_once_on_rerun() {
    let dir = tempfile::tempdir().unwrap();
    let (old, new) = (
        dir.path().join("old.geojsonl"),
        dir.path().join("new.geojsonl"),
    );
    write_points_from(&old, 0, 100);
    write_points_from(&new, 100, 5000);
    let mut covered = 0;
    for point in [
        "data.batch_committed@2",
        "data.swap.after_copy",
        "data.publish.before_commit",
        "data.publish.after_commit",
    ] {
        let table = unique("swap_kill");
        load(&old, &table, &[]).assert_code(0);
        let before = oid(&table);
        let r = load_faulted(&new, &table, point, &[]);
        assert!(
            r.code == -1 && r.stderr.contains("fault injected at"),
            "{point}: {}",
            r.stderr
        );
        if point == "data.publish.after_commit" {
            assert_eq!(counts(&table), (5100, 5100), "{point}");
            assert_ne!(oid(&table), before);
        } else {
            // Nothing of the run is visible before its one commit.
            assert_eq!(counts(&table), (100, 100), "{point}");
            assert_eq!(oid(&table), before, "{point}");
        }
        let r = load_after_kill(&new, &table, &[]);
        r.assert_code(0);
        if point == "data.batch_committed@2" {
            assert!(
                r.stderr.contains("\"strategy\":\"Swap\""),
                "the rerun goes on with its swap stage: {}",
                r.stderr
            );
        }
        assert_eq!(counts(&table), (5100, 5100), "{point}: after the rerun");
        let again = load(&new, &table, &[]);
        again.assert_code(0);
        assert_eq!(again.status(), "skipped", "{point}");
        assert_eq!(counts(&table), (5100, 5100), "{point}: after a third run");
        assert_eq!(stages(&table), 0, "{point}");
        covered += 1;
    }
    assert_eq!(covered, 4);
}

#[test]
fn auto_appends_directly_into_a_table_that_is_not_small_beside_the_input() {
    let dir = tempfile::tempdir().unwrap();
    let (old, new) = (
        dir.path().join("old.geojsonl"),
        dir.path().join("new.geojsonl"),
    );
    write_points_from(&old, 0, 5000);
    write_points_from(&new, 5000, 1000);
    let table = unique("swap_big");
    load(&old, &table, &[]).assert_code(0);
    let before = oid(&table);
    let r = load(&new, &table, &[]);
    r.assert_code(0);
    assert!(
        r.stderr
            .contains("appending directly: the table is not small beside the input"),
        "{}",
        r.stderr
    );
    assert!(r.stderr.contains("\"strategy\":\"Direct\""), "{}", r.stderr);
    assert_eq!(oid(&table), before);
    assert_eq!(counts(&table), (6000, 6000));
}

/// Runs etl-data in the background with a pause point; returns the child.
fn spawn_paused(input: &std::path::Path, table: &str, fault: String) -> std::process::Child {
    etl_data()
        .env("ETL_FAULT", fault)
        .args(load_args(input, table, &[]))
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap()
}

#[test]
fn changes_to_the_table_while_a_swap_run_stages_are_kept() {
    let dir = tempfile::tempdir().unwrap();
    let (old, new) = (
        dir.path().join("old.geojsonl"),
        dir.path().join("new.geojsonl"),
    );
    write_points_from(&old, 0, 100);
    write_points_from(&new, 100, 3000);
    // A column added and filled meanwhile: the swap would lose it, so the rows are appended.
    let table = unique("swap_col");
    load(&old, &table, &[]).assert_code(0);
    let gate = dir.path().join("col");
    let child = spawn_paused(
        &new,
        &table,
        format!("data.swap.before_lock={}", gate.display()),
    );
    wait_for(
        "the swap to reach its lock",
        Duration::from_secs(120),
        || dir.path().join("col.1.reached").exists(),
    );
    exec(&format!(
        "ALTER TABLE \"{table}\" ADD COLUMN note text; UPDATE \"{table}\" SET note = 'kept'"
    ));
    std::fs::write(dir.path().join("col.1"), b"").unwrap();
    let r = Run::from_output(child.wait_with_output().unwrap());
    r.assert_code(0);
    assert!(
        r.stderr
            .contains("its columns changed while this run staged its rows"),
        "{}",
        r.stderr
    );
    assert_eq!(counts(&table), (3100, 3100));
    assert_eq!(
        sql_i64(&format!(
            "SELECT count(*) FROM \"{table}\" WHERE note = 'kept'"
        )),
        100
    );
    // An index dropped meanwhile: the copy built for it does not come back.
    let table = unique("swap_idx");
    load(&old, &table, &[]).assert_code(0);
    let gate = dir.path().join("idx");
    let child = spawn_paused(
        &new,
        &table,
        format!("data.swap.before_lock={}", gate.display()),
    );
    wait_for(
        "the swap to reach its lock",
        Duration::from_secs(120),
        || dir.path().join("idx.1.reached").exists(),
    );
    exec(&format!("DROP INDEX \"{table}_id_idx\""));
    let without = indexes(&table);
    std::fs::write(dir.path().join("idx.1"), b"").unwrap();
    let r = Run::from_output(child.wait_with_output().unwrap());
    r.assert_code(0);
    assert!(r.stderr.contains("copied the table's rows"), "{}", r.stderr);
    assert_eq!(
        indexes(&table),
        without,
        "only the indexes the table has now"
    );
    assert_eq!(counts(&table), (3100, 3100));
}

#[test]
fn a_swap_stage_whose_table_was_dropped_starts_over() {
    let dir = tempfile::tempdir().unwrap();
    let (old, new) = (
        dir.path().join("old.geojsonl"),
        dir.path().join("new.geojsonl"),
    );
    write_points_from(&old, 0, 100);
    write_points_from(&new, 100, 5000);
    let table = unique("swap_gone");
    load(&old, &table, &[]).assert_code(0);
    let r = load_faulted(&new, &table, "data.batch_committed@2", &[]);
    assert!(r.stderr.contains("fault injected at"), "{}", r.stderr);
    exec(&format!("DROP TABLE \"{table}\""));
    let r = load_after_kill(&new, &table, &[]);
    r.assert_code(0);
    assert!(
        r.stderr
            .contains("the table this run's stage was to replace is gone; starting over"),
        "{}",
        r.stderr
    );
    assert_eq!(counts(&table), (5000, 5000));
    assert_eq!(stages(&table), 0);
}

#[test]
fn a_run_that_began_appending_directly_goes_on_directly() {
    let dir = tempfile::tempdir().unwrap();
    let (old, new) = (
        dir.path().join("old.geojsonl"),
        dir.path().join("new.geojsonl"),
    );
    write_points_from(&old, 0, 100);
    write_points_from(&new, 100, 5000);
    let table = unique("swap_after_direct");
    load(&old, &table, &[]).assert_code(0);
    let r = load_faulted(
        &new,
        &table,
        "data.batch_committed@2",
        &["--append-path", "direct"],
    );
    assert!(r.stderr.contains("fault injected at"), "{}", r.stderr);
    let (rows, _) = counts(&table);
    assert!(rows > 100, "two batches are in the table: {rows}");
    // The rerun with the default path (the same run) would pick the swap for a table this
    // small; it goes on where the direct attempt stopped instead.
    let r = load_after_kill(&new, &table, &[]);
    r.assert_code(0);
    assert!(r.stderr.contains("\"strategy\":\"Direct\""), "{}", r.stderr);
    assert_eq!(counts(&table), (5100, 5100));
}
