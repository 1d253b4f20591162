//! The hardened read-only SQLite open (`etl_geo::sqlite`) that the GeoPackage reader and the
//! MBTiles conversion share, on the GDAL-made GeoPackages of `fixtures/formats/gpkg/`: it
//! reads, cannot write, leaves the file untouched, runs with the schema untrusted, stops at
//! its deadline, and refuses truncated files, symbolic links and non-SQLite files before SQLite
//! sees them.
//!
//! The GeoPackage reader itself is crate-private; its tests (fixtures against GDAL, hostile
//! files) are in `src/formats/gpkg/tests/`.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use etl_geo::sqlite::{SqliteOpenError, check_file, open_read_only};

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../fixtures/formats/gpkg")
        .join(name)
}

/// A copy of a fixture under `name` in a new temporary folder.
fn copy(fixture_name: &str, name: &str) -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join(name);
    std::fs::copy(fixture(fixture_name), &path).unwrap();
    (dir, path)
}

#[test]
fn reads_a_geopackage_and_cannot_change_it() {
    // Characters a `file:` URI would otherwise take as query, fragment or escape.
    let (dir, path) = copy("nztm.gpkg", "a b?c#d%e.gpkg");
    let before = std::fs::read(&path).unwrap();
    check_file(&path).unwrap();
    let conn = open_read_only(&path, None).unwrap();
    let tables: Vec<String> = conn
        .prepare("SELECT table_name FROM gpkg_contents ORDER BY _rowid_")
        .unwrap()
        .query_map([], |r| r.get(0))
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap();
    assert_eq!(tables, ["roads", "parcels", "notes"]);
    for (pragma, expected) in [
        ("trusted_schema", 0i64),
        ("cell_size_check", 1),
        ("mmap_size", 0),
    ] {
        let value: i64 = conn.pragma_query_value(None, pragma, |r| r.get(0)).unwrap();
        assert_eq!(value, expected, "{pragma}");
    }
    for write in [
        "DELETE FROM roads",
        "CREATE TABLE x (a)",
        "UPDATE gpkg_contents SET data_type = 'tiles'",
    ] {
        let e = conn.execute_batch(write).unwrap_err();
        assert_eq!(
            e.sqlite_error_code(),
            Some(rusqlite::ErrorCode::ReadOnly),
            "{write}: {e}"
        );
    }
    drop(conn);
    assert_eq!(std::fs::read(&path).unwrap(), before);
    // No journal, WAL or shared-memory file was left beside it.
    let names: Vec<String> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(names, ["a b?c#d%e.gpkg"]);
}

#[test]
fn a_deadline_interrupts_a_runaway_query() {
    let (_dir, path) = copy("points.gpkg", "points.gpkg");
    let started = Instant::now();
    let conn = open_read_only(
        &path,
        Some((
            started + Duration::from_millis(200),
            Duration::from_millis(200),
        )),
    )
    .unwrap();
    let e = conn
        .query_row(
            "WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c) \
             SELECT x FROM c WHERE x < 0",
            [],
            |r| r.get::<_, i64>(0),
        )
        .unwrap_err();
    assert_eq!(
        e.sqlite_error_code(),
        Some(rusqlite::ErrorCode::OperationInterrupted),
        "{e}"
    );
    assert!(started.elapsed() < Duration::from_secs(30));
}

#[test]
fn refuses_what_is_not_a_whole_sqlite_file() {
    let bytes = std::fs::read(fixture("points.gpkg")).unwrap();
    let dir = tempfile::tempdir().unwrap();

    let cut = dir.path().join("cut.gpkg");
    std::fs::write(&cut, &bytes[..bytes.len() - 4096]).unwrap();
    match check_file(&cut) {
        Err(SqliteOpenError::Truncated(m)) => {
            assert!(m.starts_with("truncated: the header says"), "{m}")
        }
        other => panic!("{other:?}"),
    }
    std::fs::write(&cut, &bytes[..60]).unwrap();
    match check_file(&cut) {
        Err(SqliteOpenError::NotSqlite(m)) => assert_eq!(m, "truncated SQLite file (60 bytes)"),
        other => panic!("{other:?}"),
    }

    let text = dir.path().join("text.gpkg");
    std::fs::write(&text, "not a database at all, just some text that goes on").unwrap();
    match check_file(&text) {
        Err(SqliteOpenError::NotSqlite(m)) => assert_eq!(m, "not an SQLite database (bad header)"),
        other => panic!("{other:?}"),
    }
    // SQLite itself also refuses it.
    assert!(matches!(
        open_read_only(&text, None),
        Err(SqliteOpenError::Sqlite { .. })
    ));

    match check_file(dir.path()) {
        Err(SqliteOpenError::NotSqlite(m)) => assert_eq!(m, "not a regular file"),
        other => panic!("{other:?}"),
    }
    assert!(matches!(
        check_file(&dir.path().join("missing.gpkg")),
        Err(SqliteOpenError::Io(_))
    ));

    #[cfg(unix)]
    {
        let real = dir.path().join("real.gpkg");
        std::fs::write(&real, &bytes).unwrap();
        let link = dir.path().join("link.gpkg");
        std::os::unix::fs::symlink(&real, &link).unwrap();
        check_file(&real).unwrap();
        match check_file(&link) {
            Err(SqliteOpenError::NotSqlite(m)) => assert_eq!(m, "the path is a symbolic link"),
            other => panic!("{other:?}"),
        }
        // SQLITE_OPEN_NOFOLLOW: SQLite refuses the link too.
        assert!(open_read_only(&link, None).is_err());
    }
}

#[test]
fn a_database_with_changes_still_in_its_wal_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("busy.gpkg");
    let conn = rusqlite::Connection::open(&path).unwrap();
    conn.pragma_update(None, "journal_mode", "WAL").unwrap();
    conn.pragma_update(None, "wal_autocheckpoint", 0).unwrap();
    conn.execute_batch("CREATE TABLE t (x); INSERT INTO t VALUES (1);")
        .unwrap();
    // The application still has it open: the table is in the -wal, not the file.
    match check_file(&path) {
        Err(SqliteOpenError::NotSqlite(m)) => assert!(m.contains("-wal"), "{m}"),
        other => panic!("{other:?}"),
    }
    conn.execute_batch("PRAGMA wal_checkpoint(TRUNCATE)")
        .unwrap();
    drop(conn);
    check_file(&path).unwrap();
}
