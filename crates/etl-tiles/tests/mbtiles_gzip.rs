//! MBTiles → PMTiles: every gzip (and zlib) vector tile is inflated once, bounded, during the
//! conversion. A gzip bomb or corrupt gzip refuses the file naming the tile; valid gzip tiles
//! are stored byte for byte as they were.
//!
//! Its own test binary: the bomb test reads the process's peak RSS, which the other suites'
//! fixtures would blur.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeMap;
use std::io::{Cursor, Read, Write};
use std::path::Path;

use etl_tiles::archive::{Archive, verify};
use etl_tiles::mbtiles::{MbtilesError, MbtilesOptions, MbtilesReport, convert};
use etl_tiles::tile::TileCoord;
use rusqlite::{Connection, params};

/// A small raw MVT: one layer named "x" (version 2, extent 4096) and no features.
const MVT: &[u8] = b"\x1a\x0a\x0a\x01x\x28\x80\x20\x78\x02";

fn tc(z: u8, x: u32, y: u32) -> TileCoord {
    TileCoord::new(z, x, y).unwrap()
}

/// Writes a standard-schema MBTiles with `format = pbf` and the XYZ `tiles`.
fn write_mbtiles(path: &Path, tiles: &BTreeMap<TileCoord, Vec<u8>>) {
    let conn = Connection::open(path).unwrap();
    conn.execute_batch(
        "PRAGMA synchronous = OFF; BEGIN;
         CREATE TABLE metadata (name text, value text);
         CREATE TABLE tiles (zoom_level integer, tile_column integer, tile_row integer, tile_data blob);
         CREATE UNIQUE INDEX tile_index ON tiles (zoom_level, tile_column, tile_row);
         INSERT INTO metadata VALUES ('format', 'pbf');
         INSERT INTO metadata VALUES ('json', '{\"vector_layers\": [{\"id\": \"x\", \"fields\": {}}]}');",
    )
    .unwrap();
    for (c, data) in tiles {
        conn.execute(
            "INSERT INTO tiles VALUES (?1, ?2, ?3, ?4)",
            params![c.z, c.x, (1u32 << c.z) - 1 - c.y, data],
        )
        .unwrap();
    }
    conn.execute_batch("COMMIT;").unwrap();
}

fn run(
    tiles: &BTreeMap<TileCoord, Vec<u8>>,
    opts: &MbtilesOptions,
) -> Result<(Vec<u8>, MbtilesReport), MbtilesError> {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("t.mbtiles");
    write_mbtiles(&path, tiles);
    convert(&path, Cursor::new(Vec::new()), opts).map(|(c, r)| (c.into_inner(), r))
}

fn gzip_with(data: &[u8], level: u32, name: Option<&[u8]>, mtime: u32) -> Vec<u8> {
    let mut b = flate2::GzBuilder::new().mtime(mtime);
    if let Some(n) = name {
        b = b.filename(n);
    }
    let mut e = b.write(Vec::new(), flate2::Compression::new(level));
    e.write_all(data).unwrap();
    e.finish().unwrap()
}

fn gzip(data: &[u8]) -> Vec<u8> {
    gzip_with(data, 6, None, 0)
}

/// A valid single-member gzip of `mib` MiB of zeros (CRC and length right), made without
/// compressing them: one MiB deflated up to a full flush (byte-aligned, nothing referenced
/// before it) is repeated, then an empty final block and the trailer close the stream.
fn gzip_bomb(mib: u32) -> Vec<u8> {
    let zeros = vec![0u8; 1 << 20];
    let mut c = flate2::Compress::new(flate2::Compression::best(), false);
    let mut block = Vec::with_capacity(64 << 10);
    c.compress_vec(&zeros, &mut block, flate2::FlushCompress::Full)
        .unwrap();
    assert_eq!(
        c.total_in(),
        1 << 20,
        "the MiB was not consumed in one call"
    );
    let mut one = flate2::Crc::new();
    one.update(&zeros);
    let mut crc = flate2::Crc::new();
    let mut out = vec![0x1f, 0x8b, 8, 0, 0, 0, 0, 0, 0, 0xff];
    for _ in 0..mib {
        out.extend_from_slice(&block);
        crc.combine(&one);
    }
    // BFINAL=1, stored, LEN=0, NLEN=!0.
    out.extend_from_slice(&[0x01, 0x00, 0x00, 0xff, 0xff]);
    out.extend_from_slice(&crc.sum().to_le_bytes());
    out.extend_from_slice(&crc.amount().to_le_bytes());
    out
}

/// Peak resident set of this process so far, from `/proc/self/status` (Linux).
fn peak_rss_bytes() -> Option<u64> {
    let s = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = s.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kb: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb * 1024)
}

#[test]
fn the_bomb_builder_makes_valid_gzip() {
    // The construction, checked on a bomb small enough to inflate in a test.
    let small = gzip_bomb(3);
    let mut back = Vec::new();
    flate2::read::GzDecoder::new(&small[..])
        .read_to_end(&mut back)
        .unwrap();
    assert_eq!(back.len(), 3 << 20);
    assert!(back.iter().all(|&b| b == 0));
    // And it passes the conversion when the limit allows it.
    let mut tiles = BTreeMap::new();
    tiles.insert(tc(0, 0, 0), small.clone());
    let opts = MbtilesOptions {
        max_inflated_tile_bytes: 3 << 20,
        ..MbtilesOptions::default()
    };
    let (pm, _) = run(&tiles, &opts).unwrap();
    let mut a = Archive::open(Cursor::new(&pm[..])).unwrap();
    assert_eq!(a.get_tile(tc(0, 0, 0)).unwrap(), Some(small));
}

#[test]
fn a_gzip_bomb_tile_is_refused_by_name_without_inflating_it_in_memory() {
    // 1 GiB of zeros in about 1 MB of gzip, between two ordinary tiles.
    let bomb = gzip_bomb(1024);
    assert!(bomb.len() < 2 << 20, "bomb is {} bytes", bomb.len());
    let mut tiles = BTreeMap::new();
    tiles.insert(tc(1, 0, 0), gzip(MVT));
    tiles.insert(tc(2, 1, 1), bomb);
    tiles.insert(tc(2, 3, 3), gzip(MVT));
    let e = run(&tiles, &MbtilesOptions::default()).unwrap_err();
    // z2, x1, XYZ y1 is TMS row 2.
    assert!(
        matches!(
            e,
            MbtilesError::InflatesTooLarge {
                zoom: 2,
                column: 1,
                row: 2,
                limit
            } if limit == 16 << 20
        ),
        "{e}"
    );
    assert!(e.to_string().starts_with("tile z2/1/2 (TMS row)"), "{e}");
    // Inflating the bomb into memory would have touched 1 GiB; counting it into nothing up to
    // the limit touches the decoder's window.
    if let Some(peak) = peak_rss_bytes() {
        assert!(peak < 256 << 20, "peak RSS {} MiB", peak >> 20);
    }
}

#[test]
fn a_bomb_split_over_gzip_members_is_refused_too() {
    // Each member is small; together they pass the limit.
    let mut tile = Vec::new();
    for _ in 0..20 {
        tile.extend_from_slice(&gzip_bomb(1));
    }
    let mut tiles = BTreeMap::new();
    tiles.insert(tc(0, 0, 0), tile);
    let e = run(&tiles, &MbtilesOptions::default()).unwrap_err();
    assert!(
        matches!(e, MbtilesError::InflatesTooLarge { zoom: 0, .. }),
        "{e}"
    );
}

#[test]
fn corrupt_gzip_tiles_are_refused_by_name() {
    let good = gzip(MVT);
    let mut bad_crc = good.clone();
    let i = bad_crc.len() - 8;
    bad_crc[i] ^= 0x55;
    let truncated = good[..good.len() - 3].to_vec();
    let mut trailing = good.clone();
    trailing.extend_from_slice(b"\0\0\0\0");
    let garbage = vec![
        0x1f, 0x8b, 0x08, 0x00, 0, 0, 0, 0, 0, 0xff, 0xde, 0xad, 0xbe, 0xef,
    ];
    for (what, tile) in [
        ("bad crc", bad_crc),
        ("truncated", truncated),
        ("trailing bytes", trailing),
        ("garbage deflate", garbage),
    ] {
        let mut tiles = BTreeMap::new();
        tiles.insert(tc(3, 5, 1), good.clone());
        tiles.insert(tc(3, 5, 2), tile);
        let e = run(&tiles, &MbtilesOptions::default()).unwrap_err();
        // z3, x5, XYZ y2 is TMS row 5.
        assert!(
            matches!(
                &e,
                MbtilesError::BadTile { zoom: 3, column: 5, row: 5, message }
                    if message.starts_with("corrupt gzip data")
            ),
            "{what}: {e}"
        );
    }
}

#[test]
fn valid_gzip_tiles_are_stored_byte_for_byte() {
    // Different levels, header fields and two members: none is recompressed or normalised.
    let mut two = gzip(&MVT[..4]);
    two.extend_from_slice(&gzip(&MVT[4..]));
    let mut tiles = BTreeMap::new();
    tiles.insert(
        tc(0, 0, 0),
        gzip_with(MVT, 9, Some(b"tile.pbf"), 1_700_000_000),
    );
    tiles.insert(tc(1, 1, 0), gzip_with(MVT, 1, None, 0));
    tiles.insert(tc(1, 0, 1), gzip_with(MVT, 0, None, 42));
    tiles.insert(tc(2, 2, 2), two);
    tiles.insert(tc(2, 0, 3), gzip(&[]));
    let (pm, report) = run(&tiles, &MbtilesOptions::default()).unwrap();
    assert_eq!(report.tiles_written, tiles.len() as u64);
    let mut a = Archive::open(Cursor::new(&pm[..])).unwrap();
    for (c, data) in &tiles {
        assert_eq!(a.get_tile(*c).unwrap().as_ref(), Some(data), "tile {c}");
    }
    verify(Cursor::new(&pm[..]), pm.len() as u64).unwrap();
}

#[test]
fn the_inflated_limit_is_configurable_and_inclusive() {
    let at = |tile: Vec<u8>, limit: u64| {
        let mut tiles = BTreeMap::new();
        tiles.insert(tc(0, 0, 0), tile);
        run(
            &tiles,
            &MbtilesOptions {
                max_inflated_tile_bytes: limit,
                ..MbtilesOptions::default()
            },
        )
    };
    let plain = vec![0x1a; 5000];
    let gz = gzip(&plain);
    assert!(at(gz.clone(), 5000).is_ok());
    let e = at(gz, 4999).unwrap_err();
    assert!(
        matches!(e, MbtilesError::InflatesTooLarge { limit: 4999, .. }),
        "{e}"
    );
    // zlib tiles, re-wrapped as gzip, have the same bound.
    let mut z = flate2::write::ZlibEncoder::new(Vec::new(), flate2::Compression::default());
    z.write_all(&plain).unwrap();
    let z = z.finish().unwrap();
    assert!(at(z.clone(), 5000).is_ok());
    let e = at(z, 4999).unwrap_err();
    assert!(
        matches!(e, MbtilesError::InflatesTooLarge { limit: 4999, .. }),
        "{e}"
    );
}
