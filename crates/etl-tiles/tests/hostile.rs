//! The hostile archives of fixtures/pmtiles/hostile/ through the synchronous readers
//! (`Archive` over a `Read + Seek`, and `ArchiveIndex` over a `FileReader`), held to the
//! expectations in its expect.json. The tile server is held to the same file in
//! jobs/tiles/tests/hostile.rs.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::io::{BufReader, Read};
use std::path::PathBuf;

use etl_tiles::archive::{Archive, ArchiveIndex, FileReader, LastLeaf, now, verify};
use etl_tiles::tile::{TileCoord, tile_id};

fn dir() -> PathBuf {
    PathBuf::from(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../fixtures/pmtiles/hostile"
    ))
}

struct Case {
    name: String,
    id: u64,
    open_error: Option<String>,
    tile_error: Option<String>,
    tile_text: Option<String>,
}

fn cases() -> Vec<Case> {
    let json: serde_json::Value =
        serde_json::from_slice(&std::fs::read(dir().join("expect.json")).unwrap()).unwrap();
    let text = |v: &serde_json::Value| v.as_str().map(str::to_string);
    let cases: Vec<Case> = json
        .as_object()
        .unwrap()
        .iter()
        .map(|(name, c)| {
            let t = c["tile"].as_array().unwrap();
            let n = |i: usize| t[i].as_u64().unwrap();
            Case {
                name: name.clone(),
                id: tile_id(TileCoord {
                    z: n(0) as u8,
                    x: n(1) as u32,
                    y: n(2) as u32,
                }),
                open_error: text(&c["open_error"]),
                tile_error: text(&c["tile_error"]),
                tile_text: text(&c["tile_text"]),
            }
        })
        .collect();
    assert!(cases.len() >= 10, "expect.json lists {} cases", cases.len());
    cases
}

fn gunzip(b: &[u8]) -> String {
    let mut s = String::new();
    flate2::read::GzDecoder::new(b)
        .read_to_string(&mut s)
        .unwrap();
    s
}

/// What a reader answered for a case, in the terms of expect.json.
fn check(
    case: &Case,
    opened: Result<(), String>,
    tile: impl FnOnce() -> Result<Option<Vec<u8>>, String>,
) {
    let name = &case.name;
    match (&case.open_error, opened) {
        (Some(want), Err(got)) => {
            assert!(
                got.contains(want.as_str()),
                "{name}: open failed with {got:?}, expected {want:?}"
            );
            return;
        }
        (Some(want), Ok(())) => panic!("{name}: opened, expected {want:?}"),
        (None, Err(got)) => panic!("{name}: open failed with {got:?}"),
        (None, Ok(())) => {}
    }
    match (&case.tile_error, &case.tile_text, tile()) {
        (Some(want), _, Err(got)) => {
            assert!(
                got.contains(want.as_str()),
                "{name}: tile failed with {got:?}, expected {want:?}"
            )
        }
        (None, Some(text), Ok(Some(bytes))) => assert_eq!(&gunzip(&bytes), text, "{name}"),
        (_, _, other) => panic!("{name}: tile answered {other:?}"),
    }
}

#[test]
fn hostile_archives_through_the_synchronous_archive() {
    for case in cases() {
        let f = std::fs::File::open(dir().join(format!("{}.pmtiles", case.name))).unwrap();
        match Archive::open(BufReader::new(f)) {
            Ok(mut a) => check(&case, Ok(()), || {
                a.get_tile_by_id(case.id).map_err(|e| e.to_string())
            }),
            Err(e) => check(&case, Err(e.to_string()), || Err("not opened".into())),
        }
    }
}

#[test]
fn hostile_archives_through_a_file_reader() {
    for case in cases() {
        let r = FileReader::open(&dir().join(format!("{}.pmtiles", case.name))).unwrap();
        match now(ArchiveIndex::open(&r)) {
            Ok(index) => check(&case, Ok(()), || {
                now(index.tile(&r, &LastLeaf::default(), case.id))
                    .map(|t| t.map(Vec::from))
                    .map_err(|e| e.to_string())
            }),
            Err(e) => check(&case, Err(e.to_string()), || Err("not opened".into())),
        }
    }
}

#[test]
fn verify_rejects_every_hostile_archive() {
    for case in cases() {
        let bytes = std::fs::read(dir().join(format!("{}.pmtiles", case.name))).unwrap();
        let len = bytes.len() as u64;
        let report = verify(std::io::Cursor::new(bytes), len);
        let hostile = case.open_error.is_some() || case.tile_error.is_some();
        assert_eq!(report.is_err(), hostile, "{}: {report:?}", case.name);
    }
}
