//! PMTiles archives: write → read back (ours and the `pmtiles` crate), verify, and one test
//! per corruption class that `verify` must name.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeMap;
use std::io::{Cursor, Write};
use std::path::Path;

use etl_tiles::archive::{
    Archive, ArchiveError, ArchiveMeta, ArchiveWriter, Compression, Entry, HEADER_LEN, Header,
    TileType, VerifyError, decode_directory, encode_directory, verify,
};
use etl_tiles::tile::{TileCoord, tile_coord, tile_id, zoom_first_id};

/// Deterministic pseudo-random numbers (xorshift), so failures reproduce.
struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

fn meta() -> ArchiveMeta {
    ArchiveMeta {
        min_zoom: 0,
        max_zoom: 14,
        bounds: [-180.0, -85.0511, 180.0, 85.0511],
        center: (0.0, 0.0, 2),
        metadata: serde_json::json!({
            "name": "test",
            "vector_layers": [{"id": "roads", "fields": {}}],
            "generator": "etl-tiles tests",
        }),
    }
}

/// `n` tiles in tile-id order over zooms 0..=14: dense low zooms, random sparse high zooms
/// (so directory entries are incompressible enough to need leaves), with a shared "ocean"
/// content that appears in runs and scattered (dedup), and random unique contents.
fn tileset(n: usize, seed: u64) -> Vec<(u64, Vec<u8>)> {
    let mut rng = Rng(seed | 1);
    let ocean: Vec<u8> = b"ocean-tile-content".repeat(3);
    let mut ids = Vec::new();
    'zooms: for z in 0..=14u8 {
        let first = zoom_first_id(z).unwrap();
        let count = 1u64 << (2 * z);
        let mut picked: Vec<u64> = if count <= 64 {
            (0..count).collect()
        } else {
            let want = (n as u64 / 8).max(1).min(count);
            (0..want).map(|_| rng.below(count)).collect()
        };
        picked.sort_unstable();
        picked.dedup();
        for p in picked {
            ids.push(first + p);
            if ids.len() == n {
                break 'zooms;
            }
        }
    }
    let mut out = Vec::new();
    let mut i = 0;
    while out.len() < n {
        let Some(&id) = ids.get(i) else { break };
        i += 1;
        let kind = rng.below(10);
        if kind < 2 {
            // A run of ocean: this tile and following consecutive ids.
            let run = 1 + rng.below(5);
            for k in 0..run {
                if out.len() == n || ids.get(i - 1 + k as usize).is_some_and(|&x| x != id + k) {
                    break;
                }
                out.push((id + k, ocean.clone()));
            }
            // Skip the ids the run consumed.
            while ids
                .get(i)
                .is_some_and(|&x| x <= out.last().map_or(0, |t| t.0))
            {
                i += 1;
            }
        } else {
            let len = 1 + rng.below(1500) as usize;
            let data: Vec<u8> = (0..len).map(|_| rng.next() as u8).collect();
            out.push((id, data));
        }
    }
    out
}

fn write_archive(tiles: &[(u64, Vec<u8>)]) -> Vec<u8> {
    let mut w = ArchiveWriter::new(Cursor::new(Vec::new())).unwrap();
    for (id, data) in tiles {
        w.add_tile(*id, data).unwrap();
    }
    w.finish(&meta()).unwrap().into_inner()
}

fn verify_bytes(bytes: &[u8]) -> Result<etl_tiles::archive::VerifyReport, VerifyError> {
    verify(Cursor::new(bytes), bytes.len() as u64)
}

fn gzip(data: &[u8]) -> Vec<u8> {
    let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    e.write_all(data).unwrap();
    e.finish().unwrap()
}

fn gunzip(data: &[u8]) -> Vec<u8> {
    use std::io::Read;
    let mut out = Vec::new();
    flate2::read::GzDecoder::new(data)
        .read_to_end(&mut out)
        .unwrap();
    out
}

#[test]
fn round_trip_many_sizes() {
    for n in [1usize, 2, 17, 300, 5000] {
        let tiles = tileset(n, n as u64 * 7919);
        assert_eq!(tiles.len(), n);
        let bytes = write_archive(&tiles);

        let report = verify_bytes(&bytes).unwrap_or_else(|e| panic!("n={n}: {e}"));
        assert_eq!(report.addressed_tiles, n as u64);
        assert!(report.tile_entries <= n as u64);
        assert_eq!(report.tiles_per_zoom.values().sum::<u64>(), n as u64);
        assert_eq!(report.total_size, bytes.len() as u64);

        let mut a = Archive::open(Cursor::new(&bytes)).unwrap();
        assert_eq!(a.metadata()["name"], "test");
        assert!(a.header().clustered);
        if n == 5000 {
            assert!(
                a.header().leaf_length > 0,
                "5000 tiles should need leaf directories"
            );
        }
        for (id, data) in &tiles {
            let c = tile_coord(*id).unwrap();
            assert_eq!(
                a.get_tile(c).unwrap().as_deref(),
                Some(&data[..]),
                "n={n} {c}"
            );
        }
        // Ids between and after tiles are absent.
        let present: std::collections::HashSet<u64> = tiles.iter().map(|t| t.0).collect();
        let last = tiles.last().unwrap().0;
        for probe in [last + 1, last + 1000, 0, 1, 2, 3, 4, 100, 5000] {
            if !present.contains(&probe) {
                assert_eq!(a.get_tile(tile_coord(probe).unwrap()).unwrap(), None);
            }
        }
        // entries() expands to exactly the tiles written.
        let mut expanded = Vec::new();
        for e in a.entries() {
            let e = e.unwrap();
            for k in 0..u64::from(e.run_length) {
                expanded.push(e.tile_id + k);
            }
        }
        assert_eq!(expanded, tiles.iter().map(|t| t.0).collect::<Vec<_>>());

        cross_check_with_pmtiles_crate(&bytes, &tiles);
    }
}

/// The `pmtiles` crate (an independent implementation) must parse our header and directories
/// and find every tile id we wrote.
fn cross_check_with_pmtiles_crate(bytes: &[u8], tiles: &[(u64, Vec<u8>)]) {
    let h = pmtiles::Header::try_from_bytes(bytes::Bytes::copy_from_slice(&bytes[..HEADER_LEN]))
        .unwrap();
    assert!(h.clustered());
    assert_eq!(h.tile_type, pmtiles::TileType::Mvt);
    assert_eq!(h.tile_compression, pmtiles::Compression::Gzip);
    assert_eq!(
        h.n_addressed_tiles().map(|n| n.get()),
        Some(tiles.len() as u64)
    );
    let ours = Header::from_bytes(bytes).unwrap();
    let root_raw =
        &bytes[ours.root_offset as usize..(ours.root_offset + ours.root_length) as usize];
    let root = pmtiles::Directory::try_from(bytes::Bytes::from(gunzip(root_raw))).unwrap();
    if ours.leaf_length == 0 {
        for (id, _) in tiles {
            assert!(
                root.find_tile_id(pmtiles::TileId::new(*id).unwrap())
                    .is_some()
            );
        }
    } else {
        // Every leaf must parse with the other implementation too.
        let leaves = decode_directory(&gunzip(root_raw)).unwrap();
        for l in leaves {
            let start = (ours.leaf_offset + l.offset) as usize;
            let raw = &bytes[start..start + l.length as usize];
            let leaf = pmtiles::Directory::try_from(bytes::Bytes::from(gunzip(raw))).unwrap();
            assert!(
                leaf.find_tile_id(pmtiles::TileId::new(l.tile_id).unwrap())
                    .is_some()
            );
        }
    }
    for (id, _) in tiles.iter().take(200) {
        let c = tile_coord(*id).unwrap();
        let theirs = pmtiles::TileId::from(pmtiles::TileCoord::new(c.z, c.x, c.y).unwrap());
        assert_eq!(theirs.value(), *id);
    }
}

#[test]
fn reads_archives_written_by_the_pmtiles_crate() {
    let tiles = tileset(3000, 42);
    let mut out = Cursor::new(Vec::new());
    let mut w = pmtiles::PmTilesWriter::new(pmtiles::TileType::Mvt)
        .precompressed(pmtiles::Compression::Gzip)
        .min_zoom(0)
        .max_zoom(tiles.last().map(|t| tile_coord(t.0).unwrap().z).unwrap())
        .metadata(r#"{"vector_layers":[]}"#)
        .create(&mut out)
        .unwrap();
    for (id, data) in &tiles {
        let c = tile_coord(*id).unwrap();
        w.add_tile(pmtiles::TileCoord::new(c.z, c.x, c.y).unwrap(), data)
            .unwrap();
    }
    w.finalize().unwrap();
    let bytes = out.into_inner();
    let report = verify_bytes(&bytes).unwrap();
    assert_eq!(report.addressed_tiles, tiles.len() as u64);
    let mut a = Archive::open(Cursor::new(&bytes)).unwrap();
    for (id, data) in &tiles {
        assert_eq!(
            a.get_tile(tile_coord(*id).unwrap()).unwrap().as_deref(),
            Some(&data[..])
        );
    }
}

#[test]
fn dedup_and_runs_reduce_stored_bytes() {
    let blob = vec![7u8; 1000];
    let other = vec![9u8; 1000];
    let mut w = ArchiveWriter::new(Cursor::new(Vec::new())).unwrap();
    // 100 z7 tiles: a run of 50 identical, then alternating (non-consecutive duplicates).
    let first = zoom_first_id(7).unwrap();
    for k in 0..50 {
        w.add_tile(first + k, &blob).unwrap();
    }
    for k in 50..100 {
        w.add_tile(first + k, if k % 2 == 0 { &blob } else { &other })
            .unwrap();
    }
    let bytes = w.finish(&meta()).unwrap().into_inner();
    let r = verify_bytes(&bytes).unwrap();
    assert_eq!(r.addressed_tiles, 100);
    assert_eq!(r.unique_tiles, 2);
    // The first 50 and tile 50 (also `blob`, consecutive) form one run of 51.
    assert_eq!(r.tile_entries, 50, "the run of 51 is one entry");
    let h = Header::from_bytes(&bytes).unwrap();
    assert_eq!(h.data_length, 2000);
    assert_eq!(
        (h.addressed_tiles, h.tile_entries, h.tile_contents),
        (100, 50, 2)
    );
    assert_eq!((h.min_zoom, h.max_zoom), (7, 7));
    let mut a = Archive::open(Cursor::new(&bytes)).unwrap();
    for k in 0..100 {
        let want = if k < 50 || k % 2 == 0 { &blob } else { &other };
        assert_eq!(a.get_tile_by_id(first + k).unwrap().as_ref(), Some(want));
    }
}

#[test]
fn identical_hashes_are_not_enough() {
    // Same length and mostly the same bytes: must be stored separately.
    let a = vec![1u8; 500];
    let mut b = a.clone();
    b[499] = 2;
    let mut w = ArchiveWriter::new(Cursor::new(Vec::new())).unwrap();
    w.add_tile(1, &a).unwrap();
    w.add_tile(3, &b).unwrap();
    w.add_tile(4, &a).unwrap();
    let bytes = w.finish(&meta()).unwrap().into_inner();
    let mut r = Archive::open(Cursor::new(&bytes)).unwrap();
    assert_eq!(r.get_tile_by_id(3).unwrap(), Some(b));
    assert_eq!(r.get_tile_by_id(4).unwrap(), Some(a));
    assert_eq!(verify_bytes(&bytes).unwrap().unique_tiles, 2);
}

#[test]
fn writer_rejects_bad_input() {
    let mut w = ArchiveWriter::new(Cursor::new(Vec::new())).unwrap();
    w.add_tile(10, b"x").unwrap();
    assert!(matches!(
        w.add_tile(10, b"y"),
        Err(ArchiveError::OutOfOrder { id: 10, last: 10 })
    ));
    assert!(matches!(
        w.add_tile(5, b"y"),
        Err(ArchiveError::OutOfOrder { id: 5, .. })
    ));
    assert!(matches!(
        w.add_tile(11, b""),
        Err(ArchiveError::EmptyTile(11))
    ));
    assert!(matches!(
        w.add_tile(u64::MAX, b"z"),
        Err(ArchiveError::InvalidTileId(_))
    ));
    // A run covers ids; adding inside it is out of order too.
    w.add_tile(11, b"x").unwrap();
    w.add_tile(12, b"x").unwrap();
    assert!(matches!(
        w.add_tile(12, b"q"),
        Err(ArchiveError::OutOfOrder { last: 12, .. })
    ));
    // Errors leave the writer usable.
    w.add_tile(13, b"q").unwrap();
    let bytes = w.finish(&meta()).unwrap().into_inner();
    assert_eq!(verify_bytes(&bytes).unwrap().addressed_tiles, 4);
}

#[test]
fn empty_archive_is_valid() {
    let w = ArchiveWriter::new(Cursor::new(Vec::new())).unwrap();
    let bytes = w.finish(&meta()).unwrap().into_inner();
    let r = verify_bytes(&bytes).unwrap();
    assert_eq!(r.addressed_tiles, 0);
    let h = Header::from_bytes(&bytes).unwrap();
    assert_eq!((h.min_zoom, h.max_zoom), (0, 14));
}

#[test]
fn writes_at_a_non_zero_stream_position() {
    let mut cur = Cursor::new(Vec::new());
    cur.write_all(b"prefix").unwrap();
    let mut w = ArchiveWriter::new(cur).unwrap();
    w.add_tile(0, b"tile").unwrap();
    let bytes = w.finish(&meta()).unwrap().into_inner();
    assert!(bytes.starts_with(b"prefixPMTiles"));
    assert!(verify_bytes(&bytes[6..]).is_ok());
}

// ---- corruption classes: one test each -------------------------------------------------

fn small_archive() -> Vec<u8> {
    write_archive(&tileset(40, 5))
}

#[test]
fn corrupt_truncated_file() {
    let bytes = small_archive();
    for cut in [bytes.len() - 1, bytes.len() - 40, 16_500, 16_384, 200] {
        let err = verify_bytes(&bytes[..cut]).unwrap_err();
        assert!(matches!(err, VerifyError::Truncated(_)), "cut {cut}: {err}");
        assert!(err.to_string().contains("beyond the file length"), "{err}");
        assert!(Archive::open(Cursor::new(&bytes[..cut])).is_err());
    }
    let err = verify_bytes(&bytes[..100]).unwrap_err();
    assert!(matches!(err, VerifyError::Truncated(_)), "{err}");
    let err = verify_bytes(&bytes[..3]).unwrap_err();
    assert!(matches!(err, VerifyError::Truncated(_)), "{err}");
}

/// Replaces the root directory of an archive (whose root is in the reserved 16 KiB).
fn with_root(bytes: &[u8], f: impl FnOnce(&mut Vec<Entry>)) -> Vec<u8> {
    let mut h = Header::from_bytes(bytes).unwrap();
    let start = h.root_offset as usize;
    let raw = &bytes[start..start + h.root_length as usize];
    let mut entries = decode_directory(&gunzip(raw)).unwrap();
    f(&mut entries);
    let new_root = gzip(&encode_directory(&entries));
    let mut out = bytes.to_vec();
    h.root_length = new_root.len() as u64;
    out[..HEADER_LEN].copy_from_slice(&h.to_bytes());
    out[start..start + new_root.len()].copy_from_slice(&new_root);
    out
}

#[test]
fn corrupt_bad_offset() {
    let bytes = small_archive();
    let h = Header::from_bytes(&bytes).unwrap();
    let mut victim = None;
    let patched = with_root(&bytes, |entries| {
        let e = &mut entries[5];
        e.offset = h.data_length + 100;
        victim = Some(*e);
    });
    let victim = victim.unwrap();
    let err = verify_bytes(&patched).unwrap_err();
    let want = format!(
        "tile {} ({}): offset {} + length {} beyond data section end {}",
        victim.tile_id,
        tile_coord(victim.tile_id).unwrap(),
        victim.offset,
        victim.length,
        h.data_length
    );
    assert!(matches!(err, VerifyError::Offset(_)), "{err}");
    assert_eq!(err.to_string(), format!("offset: {want}"));
    // The reader refuses the tile instead of reading another section's bytes.
    let mut a = Archive::open(Cursor::new(&patched)).unwrap();
    assert!(a.get_tile_by_id(victim.tile_id).is_err());
}

/// A hand-built archive: header, gzip root with `entries`, gzip metadata, `data`.
fn hand_built(entries: &[Entry], data: &[u8], clustered: bool) -> Vec<u8> {
    let root = gzip(&encode_directory(entries));
    let metadata = gzip(br#"{"vector_layers":[]}"#);
    let root_offset = HEADER_LEN as u64;
    let metadata_offset = root_offset + root.len() as u64;
    let data_offset = metadata_offset + metadata.len() as u64;
    let zooms: Vec<u8> = entries
        .iter()
        .map(|e| tile_coord(e.tile_id).unwrap().z)
        .collect();
    let h = Header {
        version: 3,
        root_offset,
        root_length: root.len() as u64,
        metadata_offset,
        metadata_length: metadata.len() as u64,
        leaf_offset: 0,
        leaf_length: 0,
        data_offset,
        data_length: data.len() as u64,
        addressed_tiles: 0,
        tile_entries: 0,
        tile_contents: 0,
        clustered,
        internal_compression: Compression::Gzip,
        tile_compression: Compression::Gzip,
        tile_type: TileType::Mvt,
        min_zoom: zooms.iter().copied().min().unwrap_or(0),
        max_zoom: zooms.iter().copied().max().unwrap_or(0),
        bounds: [-180.0, -85.0, 180.0, 85.0],
        center_zoom: 0,
        center_lon: 0.0,
        center_lat: 0.0,
    };
    [&h.to_bytes()[..], &root, &metadata, data].concat()
}

#[test]
fn corrupt_unclustered_order_with_clustered_flag() {
    let data: Vec<u8> = (0..30).collect();
    let entries = [
        Entry {
            tile_id: 1,
            offset: 10,
            length: 10,
            run_length: 1,
        },
        Entry {
            tile_id: 2,
            offset: 0,
            length: 10,
            run_length: 1,
        },
        Entry {
            tile_id: 3,
            offset: 20,
            length: 10,
            run_length: 1,
        },
    ];
    let err = verify_bytes(&hand_built(&entries, &data, true)).unwrap_err();
    assert!(matches!(err, VerifyError::Unclustered(_)), "{err}");
    assert!(
        err.to_string().contains("tile 2 (z1/0/1): offset 0"),
        "{err}"
    );
    // The same archive without the clustered claim is valid.
    let ok = verify_bytes(&hand_built(&entries, &data, false)).unwrap();
    assert_eq!((ok.addressed_tiles, ok.unique_tiles), (3, 3));
    // A back-reference to an earlier tile's content is fine in a clustered archive.
    let dedup = [
        Entry {
            tile_id: 1,
            offset: 0,
            length: 10,
            run_length: 1,
        },
        Entry {
            tile_id: 2,
            offset: 10,
            length: 10,
            run_length: 1,
        },
        Entry {
            tile_id: 3,
            offset: 0,
            length: 10,
            run_length: 1,
        },
    ];
    assert_eq!(
        verify_bytes(&hand_built(&dedup, &data[..20], true))
            .unwrap()
            .unique_tiles,
        2
    );
}

#[test]
fn corrupt_entries_out_of_order() {
    let data: Vec<u8> = (0..20).collect();
    // Delta-encoded ids cannot decrease, but they can repeat, and a run can overlap the next.
    let repeated = [
        Entry {
            tile_id: 3,
            offset: 0,
            length: 10,
            run_length: 1,
        },
        Entry {
            tile_id: 3,
            offset: 10,
            length: 10,
            run_length: 1,
        },
    ];
    let err = verify_bytes(&hand_built(&repeated, &data, true)).unwrap_err();
    assert!(matches!(err, VerifyError::Order(_)), "{err}");
    let overlapping = [
        Entry {
            tile_id: 1,
            offset: 0,
            length: 10,
            run_length: 3,
        },
        Entry {
            tile_id: 3,
            offset: 10,
            length: 10,
            run_length: 1,
        },
    ];
    let err = verify_bytes(&hand_built(&overlapping, &data, true)).unwrap_err();
    assert!(matches!(err, VerifyError::Order(_)), "{err}");
    assert!(err.to_string().contains("tile 3 (z1/1/1)"), "{err}");
}

#[test]
fn corrupt_zoom_mismatch() {
    let mut bytes = small_archive();
    let h = Header::from_bytes(&bytes).unwrap();
    bytes[101] = h.max_zoom + 1; // header byte 101 is max_zoom
    let err = verify_bytes(&bytes).unwrap_err();
    match err {
        VerifyError::ZoomMismatch {
            header_max,
            entries_max,
            ..
        } => {
            assert_eq!(header_max, h.max_zoom + 1);
            assert_eq!(entries_max, h.max_zoom);
        }
        other => panic!("expected a zoom mismatch, got {other}"),
    }
}

#[test]
fn corrupt_bytes_never_panic() {
    // Flip random bytes in header, root and metadata: every outcome must be Ok or Err.
    let bytes = write_archive(&tileset(5000, 77));
    let h = Header::from_bytes(&bytes).unwrap();
    let mut rng = Rng(12345);
    let hot = (h.root_offset + h.root_length) as usize;
    for _ in 0..400 {
        let mut b = bytes.clone();
        for _ in 0..1 + rng.below(4) {
            let i = if rng.below(3) == 0 {
                rng.below(bytes.len() as u64) as usize
            } else {
                rng.below(hot as u64) as usize
            };
            b[i] = rng.next() as u8;
        }
        let _ = verify_bytes(&b);
        if let Ok(mut a) = Archive::open(Cursor::new(&b)) {
            for e in a.entries().take(50) {
                let _ = e;
            }
            let _ = a.get_tile(TileCoord::new(10, 3, 3).unwrap());
        }
    }
}

#[test]
fn header_claims_huge_sections() {
    let mut bytes = small_archive();
    // root_length = u64::MAX: must error, not allocate or overflow.
    bytes[16..24].copy_from_slice(&u64::MAX.to_le_bytes());
    assert!(matches!(
        verify_bytes(&bytes).unwrap_err(),
        VerifyError::Truncated(_)
    ));
    assert!(Archive::open(Cursor::new(&bytes)).is_err());
}

// ---- peer fixtures ---------------------------------------------------------------------

const FIXTURES: &str = "/work/shared/peer-fixtures/pmtiles";

fn fixture(rel: &str) -> Vec<u8> {
    std::fs::read(Path::new(FIXTURES).join(rel)).unwrap_or_else(|e| panic!("{rel}: {e}"))
}

#[test]
fn spec_sample_archives_verify_and_read() {
    // stamen: PNG raster z0-3, 85 addressed, 84 entries, 80 contents.
    let bytes = fixture("spec-v3/stamen_toner_raster_CC-BY_ODbL_z3.pmtiles");
    let r = verify_bytes(&bytes).unwrap();
    assert_eq!(r.tile_type, TileType::Png);
    assert_eq!(
        (r.addressed_tiles, r.tile_entries, r.unique_tiles),
        (85, 84, 80)
    );
    assert_eq!(
        r.tiles_per_zoom,
        BTreeMap::from([(0, 1), (1, 4), (2, 16), (3, 64)])
    );
    assert!(r.clustered);
    let mut a = Archive::open(Cursor::new(&bytes)).unwrap();
    for (z, n) in [(0u8, 1u32), (1, 2), (2, 4), (3, 8)] {
        for x in 0..n {
            for y in 0..n {
                let t = a
                    .get_tile(TileCoord::new(z, x, y).unwrap())
                    .unwrap()
                    .unwrap();
                assert!(t.starts_with(b"\x89PNG"), "z{z}/{x}/{y}");
            }
        }
    }
    assert_eq!(a.get_tile(TileCoord::new(4, 0, 0).unwrap()).unwrap(), None);

    let bytes = fixture("spec-v3/usgs-mt-whitney-8-15-webp-512.pmtiles");
    let r = verify_bytes(&bytes).unwrap();
    assert_eq!(r.tile_type, TileType::Webp);
    assert_eq!(r.addressed_tiles, 50);
    assert_eq!(
        r.tiles_per_zoom.keys().copied().collect::<Vec<_>>(),
        (8..=15).collect::<Vec<_>>()
    );
    let mut a = Archive::open(Cursor::new(&bytes)).unwrap();
    let ids: Vec<Entry> = a.entries().map(Result::unwrap).collect();
    for e in ids {
        let t = a.get_tile_by_id(e.tile_id).unwrap().unwrap();
        assert!(t.starts_with(b"RIFF"), "tile {}", e.tile_id);
    }
}

#[test]
fn js_test_fixtures() {
    let bytes = fixture("js-test/test_fixture_1.pmtiles");
    let h = Header::from_bytes(&bytes).unwrap();
    assert_eq!((h.root_offset, h.root_length), (127, 25));
    assert_eq!((h.metadata_offset, h.metadata_length), (152, 247));
    assert_eq!((h.data_offset, h.data_length), (399, 69));
    let r = verify_bytes(&bytes).unwrap();
    assert_eq!(r.addressed_tiles, 1);
    assert_eq!(r.largest_tile, Some((TileCoord::new(0, 0, 0).unwrap(), 69)));
    let mut a = Archive::open(Cursor::new(&bytes)).unwrap();
    assert_eq!(a.metadata()["name"], "test_fixture_1.pmtiles");
    let tile = a
        .get_tile(TileCoord::new(0, 0, 0).unwrap())
        .unwrap()
        .unwrap();
    assert!(tile.starts_with(&[0x1f, 0x8b]), "gzip MVT");

    let bytes = fixture("js-test/test_fixture_2.pmtiles");
    assert_eq!(verify_bytes(&bytes).unwrap().addressed_tiles, 1);

    // MLT with no tiles: not MVT, so no `vector_layers` required.
    let bytes = fixture("js-test/test_fixture_mlt.pmtiles");
    let r = verify_bytes(&bytes).unwrap();
    assert_eq!(r.tile_type, TileType::Mlt);
    assert_eq!(r.addressed_tiles, 0);

    let err = verify_bytes(&fixture("js-test/empty.pmtiles")).unwrap_err();
    assert!(matches!(err, VerifyError::Truncated(_)), "{err}");
    let err = verify_bytes(&fixture("js-test/invalid.pmtiles")).unwrap_err();
    assert!(matches!(err, VerifyError::Header(_)), "{err}");
    let err = verify_bytes(&fixture("js-test/invalid_v4.pmtiles")).unwrap_err();
    assert!(err.to_string().contains("version 4"), "{err}");
    for f in ["empty", "invalid", "invalid_v4"] {
        assert!(Archive::open(Cursor::new(fixture(&format!("js-test/{f}.pmtiles")))).is_err());
    }
}

#[test]
fn tile_ids_match_pmtiles_crate() {
    let mut rng = Rng(99);
    for _ in 0..2000 {
        let z = rng.below(32) as u8;
        let mask = ((1u64 << z) - 1) as u32;
        let c = TileCoord::new(z, rng.next() as u32 & mask, rng.next() as u32 & mask).unwrap();
        let theirs = pmtiles::TileId::from(pmtiles::TileCoord::new(c.z, c.x, c.y).unwrap());
        assert_eq!(tile_id(c), theirs.value(), "{c}");
    }
}
