//! MBTiles → PMTiles: build MBTiles files with rusqlite (standard, deduplicated and unindexed
//! schemas; vector and raster), convert, read the archive back with the crate's reader and
//! compare every tile; and one test per refusal, none of which may panic.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeMap;
use std::io::{Cursor, Read, Write};
use std::path::{Path, PathBuf};

use etl_tiles::archive::{Archive, Compression, TileType, verify};
use etl_tiles::mbtiles::{
    Lookup, MbtilesError, MbtilesOptions, MbtilesReport, TileFormat, convert,
};
use etl_tiles::tile::{MAX_LAT, TileCoord, tile_coord};
use rusqlite::{Connection, params};

const FIXTURE_PMTILES: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../../fixtures/tiles/fixtures.pmtiles"
);
const FIXTURE_MBTILES: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../../fixtures/formats/mbtiles/vector-small.mbtiles"
);

/// A 1×1 transparent PNG.
const PNG: &[u8] = &[
    0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a, 0x00, 0x00, 0x00, 0x0d, 0x49, 0x48, 0x44, 0x52,
    0x00, 0x00, 0x00, 0x01, 0x00, 0x00, 0x00, 0x01, 0x08, 0x06, 0x00, 0x00, 0x00, 0x1f, 0x15, 0xc4,
    0x89, 0x00, 0x00, 0x00, 0x0a, 0x49, 0x44, 0x41, 0x54, 0x78, 0x9c, 0x63, 0x00, 0x01, 0x00, 0x00,
    0x05, 0x00, 0x01, 0x0d, 0x0a, 0x2d, 0xb4, 0x00, 0x00, 0x00, 0x00, 0x49, 0x45, 0x4e, 0x44, 0xae,
    0x42, 0x60, 0x82,
];

const STANDARD_SCHEMA: &str = "
    CREATE TABLE metadata (name text, value text);
    CREATE UNIQUE INDEX name ON metadata (name);
    CREATE TABLE tiles (zoom_level integer, tile_column integer, tile_row integer, tile_data blob);
    CREATE UNIQUE INDEX tile_index ON tiles (zoom_level, tile_column, tile_row);";

/// mbutil's deduplicated layout: `tiles` is a view over `map` and `images`.
const DEDUP_SCHEMA: &str = "
    CREATE TABLE metadata (name text, value text);
    CREATE TABLE map (zoom_level integer, tile_column integer, tile_row integer, tile_id text);
    CREATE UNIQUE INDEX map_index ON map (zoom_level, tile_column, tile_row);
    CREATE TABLE images (tile_data blob, tile_id text);
    CREATE UNIQUE INDEX images_id ON images (tile_id);
    CREATE VIEW tiles AS SELECT map.zoom_level AS zoom_level, map.tile_column AS tile_column,
        map.tile_row AS tile_row, images.tile_data AS tile_data
        FROM map JOIN images ON images.tile_id = map.tile_id;";

/// No index at all: tiles must be fetched by row id.
const UNINDEXED_SCHEMA: &str = "
    CREATE TABLE metadata (name text, value text);
    CREATE TABLE tiles (zoom_level integer, tile_column integer, tile_row integer, tile_data blob);";

struct Tmp(tempfile::TempDir);
impl Tmp {
    fn new() -> Self {
        Tmp(tempfile::tempdir().unwrap())
    }
    fn path(&self, name: &str) -> PathBuf {
        self.0.path().join(name)
    }
}

/// Every tile of the fixture archive: XYZ coordinate → gzip MVT bytes.
fn fixture_tiles() -> BTreeMap<TileCoord, Vec<u8>> {
    let mut a = Archive::open(std::fs::File::open(FIXTURE_PMTILES).unwrap()).unwrap();
    let entries: Vec<_> = a.entries().collect::<Result<_, _>>().unwrap();
    let mut out = BTreeMap::new();
    for e in entries {
        let data = a.read_tile(&e).unwrap();
        for id in e.tile_id..e.tile_id + u64::from(e.run_length) {
            out.insert(tile_coord(id).unwrap(), data.clone());
        }
    }
    assert!(out.len() > 3, "fixture has {} tiles", out.len());
    out
}

fn fixture_vector_layers() -> serde_json::Value {
    let a = Archive::open(std::fs::File::open(FIXTURE_PMTILES).unwrap()).unwrap();
    a.metadata()["vector_layers"].clone()
}

fn tms_row(c: TileCoord) -> u32 {
    (1u32 << c.z) - 1 - c.y
}

/// Writes an MBTiles file with `schema`, `metadata` rows and XYZ `tiles`.
fn write_mbtiles(
    path: &Path,
    schema: &str,
    metadata: &[(&str, &str)],
    tiles: &BTreeMap<TileCoord, Vec<u8>>,
) {
    let conn = Connection::open(path).unwrap();
    // One transaction: a commit (and fsync) per row makes the tests slow.
    conn.execute_batch("PRAGMA synchronous = OFF; BEGIN;")
        .unwrap();
    conn.execute_batch(schema).unwrap();
    for (k, v) in metadata {
        conn.execute(
            "INSERT INTO metadata (name, value) VALUES (?1, ?2)",
            params![k, v],
        )
        .unwrap();
    }
    let dedup = schema.contains("CREATE TABLE map");
    // Insert in reverse so that row order is neither tile id nor (z, x, y) order.
    for (c, data) in tiles.iter().rev() {
        if dedup {
            let key: String = data.iter().map(|b| format!("{b:02x}")).collect();
            conn.execute(
                "INSERT OR IGNORE INTO images (tile_id, tile_data) VALUES (?1, ?2)",
                params![key, data],
            )
            .unwrap();
            conn.execute(
                "INSERT INTO map VALUES (?1, ?2, ?3, ?4)",
                params![c.z, c.x, tms_row(*c), key],
            )
            .unwrap();
        } else {
            insert_tile(
                &conn,
                i64::from(c.z),
                i64::from(c.x),
                i64::from(tms_row(*c)),
                data,
            );
        }
    }
    conn.execute_batch("COMMIT;").unwrap();
}

fn insert_tile(conn: &Connection, z: i64, x: i64, row: i64, data: &[u8]) {
    conn.execute(
        "INSERT INTO tiles (zoom_level, tile_column, tile_row, tile_data) VALUES (?1, ?2, ?3, ?4)",
        params![z, x, row, data],
    )
    .unwrap();
}

fn vector_metadata(json: &str) -> Vec<(&'static str, String)> {
    vec![
        ("name", "fixtures".into()),
        ("format", "pbf".into()),
        ("bounds", "-10.5,-20.25,30,40".into()),
        ("center", "1.5,2.5,3".into()),
        ("minzoom", "0".into()),
        ("maxzoom", "14".into()),
        ("attribution", "© test".into()),
        ("description", "converted in a test".into()),
        ("type", "overlay".into()),
        ("version", "2".into()),
        ("json", json.into()),
    ]
}

fn convert_to_vec(path: &Path) -> Result<(Vec<u8>, MbtilesReport), MbtilesError> {
    convert(path, Cursor::new(Vec::new()), &MbtilesOptions::default())
        .map(|(c, r)| (c.into_inner(), r))
}

/// Reads every tile back and checks the archive holds exactly `expected` (XYZ → bytes).
fn assert_tiles(archive: &[u8], expected: &BTreeMap<TileCoord, Vec<u8>>) {
    let mut a = Archive::open(Cursor::new(archive)).unwrap();
    for (c, data) in expected {
        assert_eq!(
            a.get_tile(*c).unwrap().as_deref(),
            Some(&data[..]),
            "tile {c}"
        );
    }
    let addressed: u64 = a.entries().map(|e| u64::from(e.unwrap().run_length)).sum();
    assert_eq!(addressed, expected.len() as u64);
    // The crate's own verifier accepts the result.
    let v = verify(Cursor::new(archive), archive.len() as u64).unwrap();
    assert_eq!(v.addressed_tiles, expected.len() as u64);
}

#[test]
fn mbtiles_vector_gzip_tiles_round_trip_with_metadata() {
    let tmp = Tmp::new();
    let tiles = fixture_tiles();
    let layers = fixture_vector_layers();
    let json = serde_json::json!({"vector_layers": layers, "tilestats": {"layerCount": 2}});
    let md = vector_metadata(&json.to_string());
    let md: Vec<(&str, &str)> = md.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let path = tmp.path("v.mbtiles");
    write_mbtiles(&path, STANDARD_SCHEMA, &md, &tiles);

    let (pm, report) = convert_to_vec(&path).unwrap();
    assert_tiles(&pm, &tiles);
    let a = Archive::open(Cursor::new(&pm[..])).unwrap();
    let h = a.header();
    assert_eq!(h.tile_type, TileType::Mvt);
    assert_eq!(h.tile_compression, Compression::Gzip);
    let zmin = tiles.keys().map(|c| c.z).min().unwrap();
    let zmax = tiles.keys().map(|c| c.z).max().unwrap();
    assert_eq!((h.min_zoom, h.max_zoom), (zmin, zmax));
    assert_eq!(h.bounds, [-10.5, -20.25, 30.0, 40.0]);
    assert_eq!(
        (h.center_lon, h.center_lat, h.center_zoom),
        (1.5, 2.5, 3.min(zmax))
    );
    let m = a.metadata();
    assert_eq!(m["vector_layers"], layers);
    assert_eq!(m["tilestats"]["layerCount"], 2);
    assert_eq!(m["name"], "fixtures");
    assert_eq!(m["attribution"], "© test");
    assert_eq!(m["description"], "converted in a test");
    assert_eq!(m["type"], "overlay");
    assert_eq!(m["version"], "2");
    for k in ["json", "bounds", "center", "minzoom", "maxzoom"] {
        assert!(m.get(k).is_none(), "{k} leaked into the JSON metadata");
    }

    assert_eq!(report.tiles_read, tiles.len() as u64);
    assert_eq!(report.tiles_written, tiles.len() as u64);
    assert_eq!(report.format, TileFormat::Pbf);
    assert!(!report.format_sniffed);
    assert_eq!((report.min_zoom, report.max_zoom), (zmin, zmax));
    assert_eq!(report.bounds, [-10.5, -20.25, 30.0, 40.0]);
    assert_eq!(report.lookup, Lookup::Index);
    assert!(report.warnings.is_empty(), "{:?}", report.warnings);
}

#[test]
fn mbtiles_raw_and_zlib_vector_tiles_are_gzipped_and_format_is_sniffed() {
    let tmp = Tmp::new();
    let gz = fixture_tiles();
    let mut raw = BTreeMap::new();
    for (i, (c, data)) in gz.iter().enumerate() {
        let mut plain = Vec::new();
        flate2::read::GzDecoder::new(&data[..])
            .read_to_end(&mut plain)
            .unwrap();
        // Every other tile zlib-wrapped, as some old writers did.
        let stored = if i % 2 == 0 {
            plain.clone()
        } else {
            let mut z = flate2::write::ZlibEncoder::new(Vec::new(), flate2::Compression::fast());
            z.write_all(&plain).unwrap();
            z.finish().unwrap()
        };
        raw.insert(*c, (stored, plain));
    }
    let stored: BTreeMap<_, _> = raw.iter().map(|(c, (s, _))| (*c, s.clone())).collect();
    let path = tmp.path("raw.mbtiles");
    // No format, no bounds, no json: everything from the tiles.
    write_mbtiles(&path, STANDARD_SCHEMA, &[("name", "raw")], &stored);

    let (pm, report) = convert_to_vec(&path).unwrap();
    assert_eq!(report.format, TileFormat::Pbf);
    assert!(report.format_sniffed);
    assert!(report.warnings.iter().any(|w| w.contains("vector_layers")));
    let mut a = Archive::open(Cursor::new(&pm[..])).unwrap();
    assert_eq!(a.header().tile_compression, Compression::Gzip);
    for (c, (_, plain)) in &raw {
        let got = a.get_tile(*c).unwrap().unwrap();
        assert_eq!(&got[..2], &[0x1f, 0x8b], "tile {c} not gzip");
        let mut back = Vec::new();
        flate2::read::GzDecoder::new(&got[..])
            .read_to_end(&mut back)
            .unwrap();
        assert_eq!(&back, plain, "tile {c}");
    }
    // Bounds are the tiles' extent: inside the world, non-empty.
    let [w, s, e, n] = a.header().bounds;
    assert!(
        -180.0 <= w && w < e && e <= 180.0 && -MAX_LAT - 1e-6 <= s && s < n && n <= MAX_LAT + 1e-6
    );
}

fn raster_tiles() -> BTreeMap<TileCoord, Vec<u8>> {
    let mut tiles = BTreeMap::new();
    for z in 0..=3u8 {
        for x in 0..(1u32 << z) {
            for y in 0..(1u32 << z) {
                // Many identical tiles (dedup), and some distinct ones (bytes after IEND).
                let mut png = PNG.to_vec();
                if (x + y) % 3 == 0 {
                    png.extend_from_slice(format!("{z}/{x}/{y}").as_bytes());
                }
                tiles.insert(TileCoord::new(z, x, y).unwrap(), png);
            }
        }
    }
    tiles
}

#[test]
fn mbtiles_raster_png_tiles_keep_their_bytes_and_type() {
    let tmp = Tmp::new();
    let tiles = raster_tiles();
    for (name, md) in [
        ("declared", vec![("name", "raster"), ("format", "png")]),
        ("sniffed", vec![("name", "raster")]),
    ] {
        let path = tmp.path(&format!("{name}.mbtiles"));
        write_mbtiles(&path, STANDARD_SCHEMA, &md, &tiles);
        let (pm, report) = convert_to_vec(&path).unwrap();
        assert_tiles(&pm, &tiles);
        let a = Archive::open(Cursor::new(&pm[..])).unwrap();
        assert_eq!(a.header().tile_type, TileType::Png, "{name}");
        assert_eq!(a.header().tile_compression, Compression::None, "{name}");
        assert_eq!((a.header().min_zoom, a.header().max_zoom), (0, 3));
        assert_eq!(report.format, TileFormat::Png);
        assert_eq!(report.format_sniffed, name == "sniffed");
        assert_eq!(report.tile_type, TileType::Png);
        assert_eq!(report.tile_compression, Compression::None);
        assert_eq!(report.tiles_written, tiles.len() as u64);
        assert!(report.warnings.is_empty(), "{:?}", report.warnings);
        // Whole world tiles: bounds fall back to the Web Mercator square.
        assert_eq!(a.header().bounds[0], -180.0);
        assert!((a.header().bounds[3] - MAX_LAT).abs() < 1e-6);
    }
}

#[test]
fn mbtiles_archive_can_start_inside_a_stream() {
    let tmp = Tmp::new();
    let tiles = raster_tiles();
    let path = tmp.path("r.mbtiles");
    write_mbtiles(&path, STANDARD_SCHEMA, &[("format", "png")], &tiles);
    let mut cur = Cursor::new(Vec::new());
    cur.write_all(b"prefix-bytes").unwrap();
    let (cur, _) = convert(&path, cur, &MbtilesOptions::default()).unwrap();
    let all = cur.into_inner();
    assert_eq!(&all[..12], b"prefix-bytes");
    let a = Archive::open(Cursor::new(&all[12..])).unwrap();
    assert_eq!(a.header().tile_type, TileType::Png);
    assert_eq!(a.header().tile_compression, Compression::None);
}

#[test]
fn mbtiles_deduplicated_schema_view_is_read_through_its_index() {
    let tmp = Tmp::new();
    let tiles = raster_tiles();
    let path = tmp.path("dedup.mbtiles");
    write_mbtiles(&path, DEDUP_SCHEMA, &[("format", "png")], &tiles);
    let (pm, report) = convert_to_vec(&path).unwrap();
    assert_eq!(report.lookup, Lookup::Index);
    assert_tiles(&pm, &tiles);
}

#[test]
fn mbtiles_unindexed_table_is_read_by_row_id_and_duplicates_are_skipped() {
    let tmp = Tmp::new();
    let tiles = fixture_tiles();
    let path = tmp.path("noindex.mbtiles");
    let layers = serde_json::json!({"vector_layers": fixture_vector_layers()}).to_string();
    write_mbtiles(
        &path,
        UNINDEXED_SCHEMA,
        &[("format", "pbf"), ("json", &layers)],
        &tiles,
    );
    // A repeat of the first tile: the first row (the real tile) is kept.
    let (c, _) = tiles.iter().next().unwrap();
    let conn = Connection::open(&path).unwrap();
    insert_tile(
        &conn,
        c.z.into(),
        c.x.into(),
        tms_row(*c).into(),
        b"\x1f\x8bnot-this-one",
    );
    drop(conn);
    let (pm, report) = convert_to_vec(&path).unwrap();
    assert_eq!(report.lookup, Lookup::RowId);
    assert_eq!(report.duplicates_skipped, 1);
    assert_eq!(report.tiles_read, tiles.len() as u64 + 1);
    assert!(report.warnings.iter().any(|w| w.contains("repeat")));
    assert_tiles(&pm, &tiles);
}

#[test]
fn mbtiles_empty_tiles_are_skipped() {
    let tmp = Tmp::new();
    let mut tiles = raster_tiles();
    let path = tmp.path("empty.mbtiles");
    write_mbtiles(&path, STANDARD_SCHEMA, &[("format", "png")], &tiles);
    let conn = Connection::open(&path).unwrap();
    conn.execute(
        "UPDATE tiles SET tile_data = x'' WHERE zoom_level = 3 AND tile_column = 0 AND tile_row = 0",
        [],
    )
    .unwrap();
    drop(conn);
    tiles.remove(&TileCoord::new(3, 0, 7).unwrap());
    let (pm, report) = convert_to_vec(&path).unwrap();
    assert_eq!(report.empty_skipped, 1);
    assert_tiles(&pm, &tiles);
}

#[test]
fn mbtiles_checked_in_fixture_converts() {
    let (pm, report) = convert_to_vec(Path::new(FIXTURE_MBTILES)).unwrap();
    assert_eq!(report.format, TileFormat::Pbf);
    assert!(report.warnings.is_empty(), "{:?}", report.warnings);
    let tiles = fixture_tiles();
    let small: BTreeMap<_, _> = tiles.into_iter().filter(|(c, _)| c.z <= 6).collect();
    assert_tiles(&pm, &small);
    let a = Archive::open(Cursor::new(&pm[..])).unwrap();
    assert_eq!(a.metadata()["vector_layers"], fixture_vector_layers());
    assert_eq!(a.metadata()["name"], "tak-etl mbtiles fixture");
}

/// Regenerates `fixtures/formats/mbtiles/vector-small.mbtiles` (zooms 0..=6 of the PMTiles
/// fixture): `cargo test -p etl-tiles --test mbtiles -- --ignored mbtiles_regenerate`.
#[test]
#[ignore = "writes the checked-in fixture"]
fn mbtiles_regenerate_fixture() {
    let tiles: BTreeMap<_, _> = fixture_tiles()
        .into_iter()
        .filter(|(c, _)| c.z <= 6)
        .collect();
    let json = serde_json::json!({"vector_layers": fixture_vector_layers()}).to_string();
    let path = Path::new(FIXTURE_MBTILES);
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    let _ = std::fs::remove_file(path);
    let md = [
        ("name", "tak-etl mbtiles fixture"),
        ("format", "pbf"),
        ("bounds", "-180,-85.0511,180,85.0511"),
        ("center", "0,0,2"),
        ("minzoom", "0"),
        ("maxzoom", "6"),
        ("json", json.as_str()),
    ];
    write_mbtiles(path, STANDARD_SCHEMA, &md, &tiles);
    Connection::open(path)
        .unwrap()
        .execute_batch("PRAGMA page_size = 1024; VACUUM;")
        .unwrap();
}

// ---- refusals: each an error with a clear message, never a panic ----

fn err(path: &Path) -> MbtilesError {
    match convert_to_vec(path) {
        Ok((_, r)) => panic!("converted: {r:?}"),
        Err(e) => e,
    }
}

#[test]
fn mbtiles_not_sqlite_files_are_refused() {
    let tmp = Tmp::new();
    let text = tmp.path("text.mbtiles");
    std::fs::write(&text, b"hello, this is not a database at all").unwrap();
    let e = err(&text);
    assert!(matches!(e, MbtilesError::NotMbtiles(_)), "{e}");
    assert!(e.to_string().starts_with("not an MBTiles file: "), "{e}");

    let empty = tmp.path("empty.mbtiles");
    std::fs::write(&empty, b"").unwrap();
    assert!(matches!(err(&empty), MbtilesError::NotMbtiles(_)));

    let pm = Path::new(FIXTURE_PMTILES);
    assert!(matches!(err(pm), MbtilesError::NotMbtiles(_)));

    assert!(matches!(
        err(&tmp.path("missing.mbtiles")),
        MbtilesError::Io(_)
    ));
    assert!(matches!(err(tmp.0.path()), MbtilesError::NotMbtiles(_)));
}

#[cfg(unix)]
#[test]
fn mbtiles_symlinks_are_refused() {
    let tmp = Tmp::new();
    let real = tmp.path("real.mbtiles");
    write_mbtiles(
        &real,
        STANDARD_SCHEMA,
        &[("format", "png")],
        &raster_tiles(),
    );
    let link = tmp.path("link.mbtiles");
    std::os::unix::fs::symlink(&real, &link).unwrap();
    let e = err(&link);
    assert!(matches!(e, MbtilesError::NotMbtiles(_)), "{e}");
}

#[test]
fn mbtiles_sqlite_without_tiles_is_refused() {
    let tmp = Tmp::new();
    let path = tmp.path("notiles.mbtiles");
    let conn = Connection::open(&path).unwrap();
    conn.execute_batch("CREATE TABLE metadata (name text, value text); CREATE TABLE other (a);")
        .unwrap();
    drop(conn);
    let e = err(&path);
    assert!(matches!(e, MbtilesError::NotMbtiles(_)), "{e}");
    assert!(e.to_string().contains("tiles"), "{e}");

    let path = tmp.path("badcols.mbtiles");
    Connection::open(&path)
        .unwrap()
        .execute_batch("CREATE TABLE tiles (z, x, y, data);")
        .unwrap();
    let e = err(&path);
    assert!(matches!(e, MbtilesError::NotMbtiles(_)), "{e}");
}

#[test]
fn mbtiles_empty_tileset_is_refused() {
    let tmp = Tmp::new();
    let path = tmp.path("none.mbtiles");
    write_mbtiles(
        &path,
        STANDARD_SCHEMA,
        &[("format", "pbf")],
        &BTreeMap::new(),
    );
    let e = err(&path);
    assert!(matches!(e, MbtilesError::NoTiles(_)), "{e}");
    assert!(e.to_string().starts_with("no tiles found"), "{e}");

    // Only empty blobs: nothing to write either.
    let conn = Connection::open(&path).unwrap();
    insert_tile(&conn, 0, 0, 0, b"");
    drop(conn);
    assert!(matches!(err(&path), MbtilesError::NoTiles(_)));
}

fn one_bad_row(tmp: &Tmp, name: &str, z: i64, x: i64, row: i64) -> MbtilesError {
    let path = tmp.path(name);
    write_mbtiles(
        &path,
        STANDARD_SCHEMA,
        &[("format", "png")],
        &raster_tiles(),
    );
    let conn = Connection::open(&path).unwrap();
    insert_tile(&conn, z, x, row, PNG);
    drop(conn);
    err(&path)
}

#[test]
fn mbtiles_coordinates_out_of_range_are_refused() {
    let tmp = Tmp::new();
    let e = one_bad_row(&tmp, "col.mbtiles", 2, 4, 0);
    assert!(matches!(e, MbtilesError::OutOfRange { .. }), "{e}");
    assert!(e.to_string().contains("z2/4/0"), "{e}");
    let e = one_bad_row(&tmp, "row.mbtiles", 3, 0, 8);
    assert!(matches!(e, MbtilesError::OutOfRange { .. }), "{e}");
    let e = one_bad_row(&tmp, "neg.mbtiles", 3, -1, 0);
    assert!(matches!(e, MbtilesError::OutOfRange { .. }), "{e}");
    let e = one_bad_row(&tmp, "deep.mbtiles", 31, 0, 0);
    assert!(matches!(e, MbtilesError::ZoomTooDeep { .. }), "{e}");
    let e = one_bad_row(&tmp, "negz.mbtiles", -1, 0, 0);
    assert!(matches!(e, MbtilesError::ZoomTooDeep { .. }), "{e}");
    // Zoom 30 is the deepest accepted.
    let path = tmp.path("z30.mbtiles");
    write_mbtiles(
        &path,
        STANDARD_SCHEMA,
        &[("format", "png")],
        &BTreeMap::new(),
    );
    let conn = Connection::open(&path).unwrap();
    insert_tile(&conn, 30, (1 << 30) - 1, 0, PNG);
    drop(conn);
    let (pm, r) = convert_to_vec(&path).unwrap();
    assert_eq!((r.min_zoom, r.max_zoom), (30, 30));
    let mut a = Archive::open(Cursor::new(&pm[..])).unwrap();
    let c = TileCoord::new(30, (1 << 30) - 1, (1 << 30) - 1).unwrap();
    assert_eq!(a.get_tile(c).unwrap().as_deref(), Some(PNG));
}

#[test]
fn mbtiles_bad_column_types_and_null_data_are_refused() {
    let tmp = Tmp::new();
    let path = tmp.path("text.mbtiles");
    write_mbtiles(
        &path,
        UNINDEXED_SCHEMA,
        &[("format", "png")],
        &raster_tiles(),
    );
    let conn = Connection::open(&path).unwrap();
    conn.execute("INSERT INTO tiles VALUES (1, 'a', 0, x'00')", [])
        .unwrap();
    drop(conn);
    let e = err(&path);
    assert!(
        matches!(
            e,
            MbtilesError::BadCoordinate {
                column: "tile_column",
                ..
            }
        ),
        "{e}"
    );

    let path = tmp.path("null.mbtiles");
    write_mbtiles(
        &path,
        STANDARD_SCHEMA,
        &[("format", "png")],
        &raster_tiles(),
    );
    let conn = Connection::open(&path).unwrap();
    conn.execute(
        "UPDATE tiles SET tile_data = NULL WHERE zoom_level = 2 AND tile_column = 1 AND tile_row = 2",
        [],
    )
    .unwrap();
    drop(conn);
    let e = err(&path);
    assert!(
        matches!(
            e,
            MbtilesError::NullTile {
                zoom: 2,
                column: 1,
                row: 2
            }
        ),
        "{e}"
    );
    assert!(e.to_string().contains("NULL"), "{e}");

    let path = tmp.path("int.mbtiles");
    write_mbtiles(
        &path,
        STANDARD_SCHEMA,
        &[("format", "png")],
        &BTreeMap::new(),
    );
    let conn = Connection::open(&path).unwrap();
    conn.execute("INSERT INTO tiles VALUES (0, 0, 0, 42)", [])
        .unwrap();
    drop(conn);
    assert!(matches!(err(&path), MbtilesError::BadTileData { .. }));
}

#[test]
fn mbtiles_unknown_formats_are_refused() {
    let tmp = Tmp::new();
    let path = tmp.path("tiff.mbtiles");
    write_mbtiles(
        &path,
        STANDARD_SCHEMA,
        &[("format", "tiff")],
        &raster_tiles(),
    );
    let e = err(&path);
    assert!(matches!(e, MbtilesError::UnknownFormat(_)), "{e}");
    assert!(e.to_string().contains("tiff"), "{e}");

    let path = tmp.path("garbage.mbtiles");
    let mut tiles = BTreeMap::new();
    tiles.insert(TileCoord::new(0, 0, 0).unwrap(), b"GIF89a....".to_vec());
    write_mbtiles(&path, STANDARD_SCHEMA, &[], &tiles);
    let e = err(&path);
    assert!(matches!(e, MbtilesError::UnknownFormat(_)), "{e}");
}

#[test]
fn mbtiles_corrupt_zlib_vector_tile_is_refused() {
    let tmp = Tmp::new();
    let path = tmp.path("zlib.mbtiles");
    let mut tiles = BTreeMap::new();
    tiles.insert(
        TileCoord::new(0, 0, 0).unwrap(),
        vec![0x78, 0x9c, 0xff, 0xff, 0xff],
    );
    write_mbtiles(&path, STANDARD_SCHEMA, &[("format", "pbf")], &tiles);
    let e = err(&path);
    assert!(matches!(e, MbtilesError::BadTile { .. }), "{e}");
}

#[test]
fn mbtiles_unindexed_view_is_refused() {
    let tmp = Tmp::new();
    let path = tmp.path("view.mbtiles");
    let conn = Connection::open(&path).unwrap();
    conn.execute_batch(
        "CREATE TABLE t (z, x, y, d);
         INSERT INTO t VALUES (0, 0, 0, x'1a00');
         CREATE VIEW tiles AS SELECT z AS zoom_level, x AS tile_column, y AS tile_row, d AS tile_data FROM t;",
    )
    .unwrap();
    drop(conn);
    let e = err(&path);
    assert!(matches!(e, MbtilesError::Unindexed(_)), "{e}");
}

#[test]
fn mbtiles_limits_are_enforced() {
    let tmp = Tmp::new();
    let path = tmp.path("lim.mbtiles");
    write_mbtiles(
        &path,
        STANDARD_SCHEMA,
        &[("format", "png")],
        &raster_tiles(),
    );
    let run = |opts: MbtilesOptions| convert(&path, Cursor::new(Vec::new()), &opts).map(|_| ());
    let e = run(MbtilesOptions {
        max_tiles: 10,
        ..MbtilesOptions::default()
    })
    .unwrap_err();
    assert!(matches!(e, MbtilesError::TooManyTiles { limit: 10 }), "{e}");
    let e = run(MbtilesOptions {
        max_tile_bytes: 50,
        ..MbtilesOptions::default()
    })
    .unwrap_err();
    assert!(
        matches!(e, MbtilesError::TileTooLarge { limit: 50, .. }),
        "{e}"
    );
    let e = run(MbtilesOptions {
        max_duration: Some(std::time::Duration::ZERO),
        ..MbtilesOptions::default()
    })
    .unwrap_err();
    assert!(matches!(e, MbtilesError::TimedOut(_)), "{e}");
}

#[test]
fn mbtiles_endless_view_is_stopped_by_the_deadline() {
    let tmp = Tmp::new();
    let path = tmp.path("loop.mbtiles");
    let conn = Connection::open(&path).unwrap();
    conn.execute_batch(
        "CREATE TABLE tiles (zoom_level integer, tile_column integer, tile_row integer, tile_data blob);
         CREATE UNIQUE INDEX tile_index ON tiles (zoom_level, tile_column, tile_row);
         INSERT INTO tiles VALUES (0, 0, 0, x'1a00');
         CREATE VIEW metadata AS WITH RECURSIVE n(i) AS (SELECT 0 UNION ALL SELECT i + 1 FROM n)
         SELECT 'name' AS name, 'x' AS value FROM n WHERE i < 0;",
    )
    .unwrap();
    drop(conn);
    let opts = MbtilesOptions {
        max_duration: Some(std::time::Duration::from_millis(300)),
        ..MbtilesOptions::default()
    };
    let started = std::time::Instant::now();
    let e = convert(&path, Cursor::new(Vec::new()), &opts)
        .map(|_| ())
        .unwrap_err();
    assert!(matches!(e, MbtilesError::TimedOut(_)), "{e}");
    assert!(started.elapsed() < std::time::Duration::from_secs(30));
}

#[test]
fn mbtiles_bad_metadata_gives_warnings_not_failures() {
    let tmp = Tmp::new();
    let path = tmp.path("md.mbtiles");
    write_mbtiles(
        &path,
        STANDARD_SCHEMA,
        &[
            ("format", "PNG"),
            ("bounds", "nonsense"),
            ("center", "1,2,3,4,5"),
            ("json", "{not json"),
        ],
        &raster_tiles(),
    );
    let (pm, r) = convert_to_vec(&path).unwrap();
    assert_eq!(r.warnings.len(), 3, "{:?}", r.warnings);
    let a = Archive::open(Cursor::new(&pm[..])).unwrap();
    assert_eq!(a.header().bounds[0], -180.0);
    assert_eq!(a.header().tile_type, TileType::Png);
}

#[test]
fn mbtiles_truncated_and_damaged_files_error_without_panicking() {
    let tmp = Tmp::new();
    let tiles = fixture_tiles();
    let path = tmp.path("full.mbtiles");
    let json = serde_json::json!({"vector_layers": fixture_vector_layers()}).to_string();
    write_mbtiles(
        &path,
        STANDARD_SCHEMA,
        &[("format", "pbf"), ("json", &json)],
        &tiles,
    );
    let full = std::fs::read(&path).unwrap();
    assert!(full.len() > 8192, "{} bytes", full.len());

    for cut in [50, 100, 1000, full.len() / 2, full.len() - 1] {
        let p = tmp.path(&format!("cut{cut}.mbtiles"));
        std::fs::write(&p, &full[..cut]).unwrap();
        let e = err(&p);
        assert!(
            matches!(
                e,
                MbtilesError::NotMbtiles(_) | MbtilesError::Corrupt { .. }
            ),
            "cut at {cut}: {e}"
        );
    }
    // Garbage over every page but the first: errors (or, at worst, a conversion), no panic.
    let page = 4096.min(full.len() / 2);
    for (i, start) in (page..full.len()).step_by(page).enumerate() {
        let mut bad = full.clone();
        for (j, b) in bad[start..(start + page).min(full.len())]
            .iter_mut()
            .enumerate()
        {
            *b = (j as u8).wrapping_mul(31).wrapping_add(i as u8);
        }
        let p = tmp.path(&format!("bad{i}.mbtiles"));
        std::fs::write(&p, &bad).unwrap();
        let _ = convert_to_vec(&p);
    }
}

#[test]
fn mbtiles_wal_mode_file_converts() {
    let tmp = Tmp::new();
    let path = tmp.path("wal.mbtiles");
    let tiles = raster_tiles();
    Connection::open(&path)
        .unwrap()
        .execute_batch("PRAGMA journal_mode = WAL;")
        .unwrap();
    write_mbtiles(&path, STANDARD_SCHEMA, &[("format", "png")], &tiles);
    // Closing the last connection checkpoints and removes the -wal file.
    let (pm, _) = convert_to_vec(&path).unwrap();
    assert_tiles(&pm, &tiles);
}

/// The patched raster header as an independent implementation reads it.
#[test]
fn mbtiles_raster_header_cross_checked_with_pmtiles_crate() {
    let tmp = Tmp::new();
    let path = tmp.path("x.mbtiles");
    write_mbtiles(
        &path,
        STANDARD_SCHEMA,
        &[("format", "jpg")],
        &raster_tiles(),
    );
    let (pm, r) = convert_to_vec(&path).unwrap();
    assert_eq!(r.tile_type, TileType::Jpeg);
    let h = pmtiles::Header::try_from_bytes(bytes::Bytes::copy_from_slice(
        &pm[..etl_tiles::archive::HEADER_LEN],
    ))
    .unwrap();
    assert_eq!(h.tile_type, pmtiles::TileType::Jpeg);
    assert_eq!(h.tile_compression, pmtiles::Compression::None);
    assert_eq!(h.internal_compression(), pmtiles::Compression::Gzip);
    assert_eq!((h.min_zoom, h.max_zoom), (0, 3));
}
