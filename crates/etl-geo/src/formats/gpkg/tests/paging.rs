//! Paging (by key, by row id, by offset for views), value types, cancellation, size limits,
//! and randomly damaged files.

use std::time::{Duration, Instant};

use rusqlite::params;
use serde_json::json;

use super::*;
use crate::cancel::Cancel;
use crate::formats::gpkg::{PAGE_ROWS, open_layer_with};

/// 2.5 pages of rows with gaps and negative keys, inserted out of order.
fn keys() -> Vec<i64> {
    let mut keys: Vec<i64> = (0..(PAGE_ROWS as i64 * 5 / 2))
        .map(|i| i * 3 - 1000)
        .collect();
    keys.reverse();
    keys.push(i64::MAX);
    keys.push(i64::MIN + 1);
    keys
}

#[test]
fn every_row_is_read_once_in_order_by_key_rowid_and_offset() {
    let keys = keys();
    let (_dir, path) = write_gpkg(|conn| {
        add_layer(
            conn,
            "keyed",
            "fid INTEGER PRIMARY KEY, geom BLOB, n INTEGER",
            4326,
        );
        // No integer primary key: paged by row id; `code` stays a property.
        add_layer(
            conn,
            "coded",
            "code TEXT PRIMARY KEY, geom BLOB, n INTEGER",
            4326,
        );
        conn.execute_batch("BEGIN").unwrap();
        for (i, k) in (0i64..).zip(&keys) {
            let geom = gp(&wkb_point(i as f64 / 1000.0, 0.0));
            conn.execute("INSERT INTO keyed VALUES (?1, ?2, ?3)", params![k, geom, i])
                .unwrap();
            conn.execute(
                "INSERT INTO coded VALUES (?1, ?2, ?3)",
                params![format!("c{k}"), geom, i],
            )
            .unwrap();
        }
        conn.execute_batch("COMMIT").unwrap();
        // A view: paged by offset, its fid an ordinary property.
        conn.execute_batch("CREATE VIEW viewed AS SELECT fid, geom, n FROM keyed")
            .unwrap();
        register(conn, "viewed", 4326);
    });
    // A view is no layer of an upload unless named (its SQL could run without bound)…
    assert_eq!(feature_tables(&path).unwrap(), ["keyed", "coded"]);
    assert_eq!(super::super::layers(&path).unwrap().1, ["viewed"]);
    let mut sorted = keys.clone();
    sorted.sort_unstable();

    let keyed = features(&path, "keyed");
    let ids: Vec<Option<FeatureId>> = keyed.iter().map(|f| f.id.clone()).collect();
    let expected: Vec<Option<FeatureId>> =
        sorted.iter().map(|k| Some(FeatureId::Int(*k))).collect();
    assert_eq!(ids, expected);

    let coded = features(&path, "coded");
    assert_eq!(coded.len(), keys.len());
    // Row id order is insertion order.
    for (i, f) in coded.iter().enumerate() {
        assert_eq!(f.id, None);
        assert_eq!(f.properties["n"], json!(i));
        assert_eq!(f.properties["code"], json!(format!("c{}", keys[i])));
    }

    // …while the reader itself still pages one by offset.
    let (records, error) = read_all(&path, "viewed", &ReadOptions::default());
    assert!(error.is_none(), "{error:?}");
    assert_eq!(records.len(), keys.len());
    let mut seen: Vec<i64> = records
        .iter()
        .map(|r| {
            let f = r.feature.as_ref().unwrap();
            assert_eq!(f.id, None);
            f.properties["fid"].as_i64().unwrap()
        })
        .collect();
    seen.sort_unstable();
    assert_eq!(seen, sorted);
    for (i, r) in records.iter().enumerate() {
        assert_eq!((r.line, r.ordinal), (i as u64 + 1, i as u64));
    }
}

#[test]
fn value_types() {
    let (_dir, path) = write_gpkg(|conn| {
        add_layer(
            conn,
            "typed",
            "fid INTEGER PRIMARY KEY, geom BLOB, flag boolean, yes BOOLEAN, n BOOLEAN,
             raw BLOB, big REAL, inf REAL, num_text TEXT, day DATE, anything",
            4326,
        );
        conn.execute(
            "INSERT INTO typed VALUES (1, NULL, 0, 5, 'true', x'00ff10', ?1, 9e999,
             '12', '2024-02-29', 2.5)",
            [1.5e300],
        )
        .unwrap();
    });
    let f = &features(&path, "typed")[0];
    assert_eq!(f.geometry, None);
    assert_eq!(
        json!(f.properties),
        json!({"flag": false, "yes": true, "n": "true", "raw": "AP8Q", "big": 1.5e300,
            "inf": null, "num_text": "12", "day": "2024-02-29", "anything": 2.5})
    );
}

#[test]
fn cancel_stops_between_pages() {
    let (_dir, path) = write_gpkg(|conn| {
        add_layer(conn, "many", "fid INTEGER PRIMARY KEY, geom BLOB", 4326);
        conn.execute_batch("BEGIN").unwrap();
        for i in 0..(PAGE_ROWS * 2) {
            conn.execute(
                "INSERT INTO many (geom) VALUES (?1)",
                [gp(&wkb_point(0.0, i as f64 / 1e4))],
            )
            .unwrap();
        }
        conn.execute_batch("COMMIT").unwrap();
    });
    let cancel = Cancel::new();
    let opts = ReadOptions {
        cancel: cancel.clone(),
        ..ReadOptions::default()
    };
    let mut source = open_layer(&path, "many", &opts).unwrap();
    for _ in 0..PAGE_ROWS {
        assert!(source.next().unwrap().is_ok());
    }
    cancel.cancel();
    let e = source.next().unwrap().unwrap_err();
    assert!(e.is_io(), "{e}");
    assert!(e.to_string().contains("cancelled"), "{e}");
    assert!(source.next().is_none());
}

#[test]
fn a_runaway_view_is_interrupted_by_the_deadline() {
    let (_dir, path) = write_gpkg(|conn| {
        conn.execute_batch(
            "CREATE VIEW forever AS WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c)
             SELECT x AS fid, NULL AS geom FROM c WHERE x < 0",
        )
        .unwrap();
        register(conn, "forever", 4326);
    });
    let started = Instant::now();
    let opts = ReadOptions {
        cancel: Cancel::new().with_deadline(started + Duration::from_millis(300)),
        ..ReadOptions::default()
    };
    let (records, error) = read_all(&path, "forever", &opts);
    assert!(records.is_empty());
    let e = error.unwrap();
    assert!(e.is_io() && e.to_string().contains("cancelled"), "{e}");
    assert!(started.elapsed() < Duration::from_secs(30));
}

#[test]
fn an_oversized_value_stops_reading() {
    let (_dir, path) = write_gpkg(|conn| {
        add_layer(
            conn,
            "big",
            "fid INTEGER PRIMARY KEY, geom BLOB, note TEXT",
            4326,
        );
        conn.execute("INSERT INTO big VALUES (1, NULL, 'small')", [])
            .unwrap();
        conn.execute(
            "INSERT INTO big VALUES (2, NULL, ?1)",
            ["x".repeat(100_000)],
        )
        .unwrap();
    });
    let source = open_layer_with(&path, "big", &ReadOptions::default(), 10_000).unwrap();
    let results: Vec<_> = source.collect();
    assert_eq!(results.len(), 1);
    let m = refusal(results.into_iter().next().unwrap().err());
    assert!(m.contains("too large"), "{m}");
    // Within the limit it reads.
    assert_eq!(features(&path, "big").len(), 2);
}

/// A small xorshift generator: the same mutations on every run.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
}

#[test]
fn damaged_copies_never_panic() {
    let original = std::fs::read(fixture("nztm.gpkg")).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("damaged.gpkg");
    let mut rng = Rng(0x9E37_79B9_7F4A_7C15);
    let (mut refused, mut read) = (0, 0);
    for _ in 0..300 {
        let mut bytes = original.clone();
        for _ in 0..(1 + rng.next() % 8) {
            let at = (rng.next() % bytes.len() as u64) as usize;
            bytes[at] = rng.next() as u8;
        }
        std::fs::write(&path, &bytes).unwrap();
        let tables = match feature_tables(&path) {
            Ok(t) => t,
            Err(ReadError::Refused(m)) => {
                assert!(!m.contains('\n'));
                refused += 1;
                continue;
            }
            Err(e) => panic!("{e}"),
        };
        for table in tables {
            match read_all(&path, &table, &ReadOptions::default()).1 {
                None => read += 1,
                Some(ReadError::Refused(m)) => {
                    assert!(!m.contains('\n'));
                    refused += 1;
                }
                Some(e) => panic!("{e}"),
            }
        }
    }
    assert!(read > 0 && refused > 0, "read {read}, refused {refused}");
}
