//! Merging disjoint PMTiles parts, and archive summaries.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeMap;
use std::io::{Cursor, Write};

use etl_tiles::archive::{
    Archive, ArchiveMeta, ArchiveWriter, Compression, Entry, HEADER_LEN, Header, MergeError,
    MergeReport, Summary, TileType, encode_directory, merge, summarize, verify,
};
use etl_tiles::tile::{TileCoord, tile_coord, tile_id, zoom_first_id};
use proptest::prelude::*;
use serde_json::{Value, json};

type Tiles = Vec<(u64, Vec<u8>)>;

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

fn meta_with(metadata: Value, bounds: [f64; 4]) -> ArchiveMeta {
    ArchiveMeta {
        min_zoom: 0,
        max_zoom: 14,
        bounds,
        center: (
            (bounds[0] + bounds[2]) / 2.0,
            (bounds[1] + bounds[3]) / 2.0,
            3,
        ),
        metadata,
    }
}

fn meta() -> ArchiveMeta {
    meta_with(
        json!({
            "name": "test",
            "vector_layers": [{"id": "roads", "fields": {"name": "String"}}],
        }),
        [-180.0, -85.0511, 180.0, 85.0511],
    )
}

/// About `n` tiles in tile-id order over zooms 0..=14: dense low zooms, sparse high zooms,
/// runs of a shared "ocean" content and scattered repeats of it (dedup), unique contents.
fn tileset(n: usize, seed: u64) -> Tiles {
    let mut rng = Rng(seed | 1);
    let ocean = b"ocean".repeat(9);
    let mut out: Tiles = Vec::new();
    'zooms: for z in 0..=14u8 {
        let first = zoom_first_id(z).unwrap();
        let count = 1u64 << (2 * z);
        let mut local = 0;
        while local < count {
            if out.len() == n {
                break 'zooms;
            }
            let id = first + local;
            if rng.below(4) == 0 {
                out.push((id, ocean.clone()));
            } else {
                let len = 1 + rng.below(400) as usize;
                out.push((id, (0..len).map(|_| rng.next() as u8).collect()));
            }
            // Sparse steps at high zooms; consecutive ids at low zooms (runs).
            local += if count <= 256 {
                1
            } else {
                1 + rng.below(count / 256)
            };
        }
    }
    out
}

fn write(tiles: &[(u64, Vec<u8>)], meta: &ArchiveMeta) -> Vec<u8> {
    let mut w = ArchiveWriter::new(Cursor::new(Vec::new())).unwrap();
    for (id, data) in tiles {
        w.add_tile(*id, data).unwrap();
    }
    w.finish(meta).unwrap().into_inner()
}

fn open(bytes: &[u8]) -> Archive<Cursor<&[u8]>> {
    Archive::open(Cursor::new(bytes)).unwrap()
}

fn merge_bytes(parts: &[Vec<u8>]) -> Result<(Vec<u8>, MergeReport), MergeError> {
    let archives = parts.iter().map(|p| open(p)).collect();
    merge(archives, Cursor::new(Vec::new())).map(|(c, r)| (c.into_inner(), r))
}

fn entries(bytes: &[u8]) -> Vec<Entry> {
    open(bytes).entries().map(Result::unwrap).collect()
}

/// The merged archive holds exactly `tiles`, verifies, is clustered, and has the same
/// directory entries as the archive written from all tiles at once (the writer's dedup and
/// run-lengths are redone over the merged sequence).
fn assert_same_as_whole(merged: &[u8], report: &MergeReport, tiles: &[(u64, Vec<u8>)]) {
    let whole = write(tiles, &meta());
    let v = verify(Cursor::new(merged), merged.len() as u64).unwrap();
    assert!(v.clustered);
    assert_eq!(v.addressed_tiles, tiles.len() as u64);
    assert_eq!(report.tiles, tiles.len() as u64);
    assert_eq!(report.part_tiles.iter().sum::<u64>(), tiles.len() as u64);
    assert_eq!(report.tile_entries, v.tile_entries);
    assert_eq!(report.tile_contents, v.unique_tiles);
    assert_eq!(report.bytes, merged.len() as u64);

    assert_eq!(entries(merged), entries(&whole));
    let (hm, hw) = (
        Header::from_bytes(merged).unwrap(),
        Header::from_bytes(&whole).unwrap(),
    );
    assert_eq!(
        (hm.min_zoom, hm.max_zoom, hm.tile_contents, hm.data_length),
        (hw.min_zoom, hw.max_zoom, hw.tile_contents, hw.data_length)
    );
    let data = |b: &[u8], h: &Header| {
        b[h.data_offset as usize..(h.data_offset + h.data_length) as usize].to_vec()
    };
    assert_eq!(data(merged, &hm), data(&whole, &hw));
    let mut a = open(merged);
    for (id, want) in tiles {
        let c = tile_coord(*id).unwrap();
        assert_eq!(a.get_tile(c).unwrap().as_ref(), Some(want), "{c}");
    }
}

#[test]
fn two_zoom_range_parts_merge_to_the_whole() {
    // 5000 tiles need leaf directories, so the parts' entry walks cross leaves.
    let tiles = tileset(5000, 7);
    let split = zoom_first_id(6).unwrap();
    let (low, high): (Tiles, Tiles) = tiles.iter().cloned().partition(|t| t.0 < split);
    assert!(!low.is_empty() && !high.is_empty());
    // Order of the parts does not matter.
    let parts = vec![write(&high, &meta()), write(&low, &meta())];
    let (merged, report) = merge_bytes(&parts).unwrap();
    assert_eq!(report.parts, 2);
    assert_eq!(report.part_tiles, vec![high.len() as u64, low.len() as u64]);
    assert!(Header::from_bytes(&merged).unwrap().leaf_length > 0);
    assert_same_as_whole(&merged, &report, &tiles);
}

#[test]
fn three_interleaved_parts_merge_to_the_whole() {
    // Tiles dealt to three parts at random: runs of ocean are split between parts and must
    // become single run-length entries again.
    let tiles = tileset(3000, 11);
    let mut rng = Rng(5);
    let mut parts: Vec<Tiles> = vec![Vec::new(); 3];
    for t in &tiles {
        parts[rng.below(3) as usize].push(t.clone());
    }
    let parts: Vec<Vec<u8>> = parts.iter().map(|p| write(p, &meta())).collect();
    let (merged, report) = merge_bytes(&parts).unwrap();
    assert_eq!(report.parts, 3);
    let runs: u64 = entries(&merged)
        .iter()
        .filter(|e| e.run_length > 1)
        .map(|e| u64::from(e.run_length))
        .sum();
    assert!(runs > 0, "the test set should contain runs");
    assert_same_as_whole(&merged, &report, &tiles);
    cross_check_with_pmtiles_crate(&merged, tiles.len() as u64);
}

/// The `pmtiles` crate must parse the merged header and root directory.
fn cross_check_with_pmtiles_crate(bytes: &[u8], addressed: u64) {
    let h = pmtiles::Header::try_from_bytes(bytes::Bytes::copy_from_slice(&bytes[..HEADER_LEN]))
        .unwrap();
    assert!(h.clustered());
    assert_eq!(h.tile_type, pmtiles::TileType::Mvt);
    assert_eq!(h.tile_compression, pmtiles::Compression::Gzip);
    assert_eq!(h.n_addressed_tiles().map(|n| n.get()), Some(addressed));
}

#[test]
fn one_part_is_a_copy_and_empty_parts_are_fine() {
    let tiles = tileset(400, 3);
    let part = write(&tiles, &meta());
    let (merged, report) = merge_bytes(std::slice::from_ref(&part)).unwrap();
    assert_same_as_whole(&merged, &report, &tiles);
    assert_eq!(open(&merged).metadata(), open(&part).metadata());

    let empty = write(&[], &meta());
    let (merged, report) = merge_bytes(&[empty.clone(), part, empty.clone()]).unwrap();
    assert_same_as_whole(&merged, &report, &tiles);
    assert_eq!(report.part_tiles, vec![0, tiles.len() as u64, 0]);

    // Only empty parts: a valid empty archive.
    let (merged, report) = merge_bytes(&[empty.clone(), empty]).unwrap();
    assert_eq!(report.tiles, 0);
    let v = verify(Cursor::new(&merged), merged.len() as u64).unwrap();
    assert_eq!(v.addressed_tiles, 0);
}

#[test]
fn writes_at_a_non_zero_stream_position() {
    let tiles = tileset(200, 9);
    let (a, b): (Tiles, Tiles) = tiles.iter().cloned().partition(|t| t.0 % 2 == 0);
    let parts = [write(&a, &meta()), write(&b, &meta())];
    let mut out = Cursor::new(Vec::new());
    out.write_all(b"prefix").unwrap();
    let archives = parts.iter().map(|p| open(p)).collect();
    let (out, report) = merge(archives, out).unwrap();
    let bytes = out.into_inner();
    assert_eq!(&bytes[..6], b"prefix");
    assert_eq!(report.bytes, bytes.len() as u64 - 6);
    assert_same_as_whole(&bytes[6..], &report, &tiles);
}

#[test]
fn overlapping_parts_name_the_tile_and_the_parts() {
    let c = TileCoord::new(3, 5, 2).unwrap();
    let id = tile_id(c);
    let a = write(&[(1, b"a".to_vec()), (id, b"x".to_vec())], &meta());
    let b = write(&[(2, b"b".to_vec())], &meta());
    let c2 = write(&[(id, b"x".to_vec()), (id + 1, b"y".to_vec())], &meta());
    // Even identical contents are an overlap: never pick one silently.
    let err = merge_bytes(&[a.clone(), b.clone(), c2.clone()]).unwrap_err();
    match err {
        MergeError::Overlap {
            z,
            x,
            y,
            first_part,
            second_part,
        } => assert_eq!((z, x, y, first_part, second_part), (3, 5, 2, 0, 2)),
        other => panic!("{other}"),
    }
    let err = merge_bytes(&[c2, b, a]).unwrap_err();
    assert!(matches!(
        err,
        MergeError::Overlap {
            first_part: 0,
            second_part: 2,
            ..
        }
    ));
    let msg = err.to_string();
    assert!(
        msg.contains("not disjoint") && msg.contains("z3/5/2"),
        "{msg}"
    );
}

#[test]
fn a_run_covering_another_parts_tile_is_an_overlap() {
    // Part 0: one entry, a run over 10 consecutive z5 tiles. Part 1: the 7th of them.
    let first = zoom_first_id(5).unwrap();
    let run: Tiles = (0..10).map(|k| (first + k, b"same".to_vec())).collect();
    let a = write(&run, &meta());
    assert_eq!(entries(&a).len(), 1);
    let b = write(&[(first + 6, b"other".to_vec())], &meta());
    let want = tile_coord(first + 6).unwrap();
    for (parts, (p0, p1)) in [(vec![a.clone(), b.clone()], (0, 1)), (vec![b, a], (1, 0))] {
        match merge_bytes(&parts).unwrap_err() {
            MergeError::Overlap {
                z,
                x,
                y,
                first_part,
                second_part,
            } => {
                assert_eq!(TileCoord::new(z, x, y), Some(want));
                assert_eq!((first_part, second_part), (p0, p1));
            }
            other => panic!("{other}"),
        }
    }
}

fn gz(b: &[u8]) -> Vec<u8> {
    let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    e.write_all(b).unwrap();
    e.finish().unwrap()
}

/// A hand-built archive: header, gzip root with `entries`, gzip metadata, `data`.
fn hand_built(entries: &[Entry], data: &[u8], clustered: bool) -> Vec<u8> {
    hand_built_with_leaves(entries, &[], data, clustered)
}

/// A hand-built archive: header, gzip root with `root`, gzip metadata, the leaf section
/// `leaves`, `data`.
fn hand_built_with_leaves(root: &[Entry], leaves: &[u8], data: &[u8], clustered: bool) -> Vec<u8> {
    let root_dir = gz(&encode_directory(root));
    let metadata = gz(br#"{"vector_layers":[]}"#);
    let root_offset = HEADER_LEN as u64;
    let metadata_offset = root_offset + root_dir.len() as u64;
    let leaf_offset = metadata_offset + metadata.len() as u64;
    let data_offset = leaf_offset + leaves.len() as u64;
    let zooms: Vec<u8> = root
        .iter()
        .map(|e| tile_coord(e.tile_id).unwrap().z)
        .collect();
    let h = Header {
        version: 3,
        root_offset,
        root_length: root_dir.len() as u64,
        metadata_offset,
        metadata_length: metadata.len() as u64,
        leaf_offset: if leaves.is_empty() { 0 } else { leaf_offset },
        leaf_length: leaves.len() as u64,
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
    [&h.to_bytes()[..], &root_dir, &metadata, leaves, data].concat()
}

fn entry(tile_id: u64, offset: u64, length: u32, run_length: u32) -> Entry {
    Entry {
        tile_id,
        offset,
        length,
        run_length,
    }
}

#[test]
fn unclustered_parts_merge_into_a_clustered_archive() {
    // Data stored backwards, one content shared by two non-consecutive tiles.
    let data = b"cccbbbbaa".to_vec();
    let part = hand_built(
        &[
            entry(1, 7, 2, 1),
            entry(2, 3, 4, 2),
            entry(9, 7, 2, 1),
            entry(20, 0, 3, 1),
        ],
        &data,
        false,
    );
    let other = write(&[(5, b"e".to_vec()), (6, b"f".to_vec())], &meta());
    let (merged, report) = merge_bytes(&[part, other]).unwrap();
    let tiles: Tiles = [
        (1, &b"aa"[..]),
        (2, b"bbbb"),
        (3, b"bbbb"),
        (5, b"e"),
        (6, b"f"),
        (9, b"aa"),
        (20, b"ccc"),
    ]
    .iter()
    .map(|(i, d)| (*i, d.to_vec()))
    .collect();
    assert_same_as_whole(&merged, &report, &tiles);
    assert_eq!(report.tile_contents, 5);
}

#[test]
fn a_part_out_of_order_is_that_parts_error_not_an_overlap() {
    // One directory cannot hold decreasing tile ids (they are delta-coded), but two leaves
    // can: the first leaf holds tile 5, the second tile 3.
    let data = b"abc".to_vec();
    let leaf_a = gz(&encode_directory(&[entry(5, 0, 1, 1)]));
    let leaf_b = gz(&encode_directory(&[entry(3, 1, 2, 1)]));
    let (la, lb) = (leaf_a.len() as u32, leaf_b.len() as u32);
    let bad = hand_built_with_leaves(
        &[entry(1, 0, la, 0), entry(2, u64::from(la), lb, 0)],
        &[leaf_a, leaf_b].concat(),
        &data,
        false,
    );
    let good = write(&[(4, b"x".to_vec())], &meta());
    match merge_bytes(&[good, bad]).unwrap_err() {
        MergeError::Part { part: 1, source } => {
            assert!(source.to_string().contains("out of order"), "{source}")
        }
        other => panic!("{other}"),
    }
    // A tile entry pointing beyond the data section.
    let bad = hand_built(&[entry(5, 2, 5, 1)], &data, false);
    assert!(matches!(
        merge_bytes(&[bad]).unwrap_err(),
        MergeError::Part { part: 0, .. }
    ));
}

#[test]
fn parts_must_be_gzip_mvt() {
    assert!(matches!(
        merge(
            Vec::<Archive<Cursor<&[u8]>>>::new(),
            Cursor::new(Vec::new())
        ),
        Err(MergeError::NoParts)
    ));
    let good = write(&[(1, b"x".to_vec())], &meta());
    let with = |byte: usize, value: u8| {
        let mut b = good.clone();
        b[byte] = value;
        b
    };
    let png = with(99, TileType::Png.to_byte());
    let raw = with(98, Compression::None.to_byte());
    let zstd = with(98, Compression::Zstd.to_byte());
    match merge_bytes(&[good.clone(), good.clone(), png]).unwrap_err() {
        MergeError::NotMvt {
            part: 2,
            tile_type: TileType::Png,
        } => {}
        other => panic!("{other}"),
    }
    match merge_bytes(&[good.clone(), raw.clone()]).unwrap_err() {
        e @ MergeError::CompressionMismatch {
            part: 1,
            found: Compression::None,
            expected: Compression::Gzip,
        } => assert!(e.to_string().contains("part 1"), "{e}"),
        other => panic!("{other}"),
    }
    // Agreeing on a compression the writer cannot label is still refused.
    match merge_bytes(&[zstd.clone(), zstd]).unwrap_err() {
        MergeError::UnsupportedCompression {
            part: 0,
            found: Compression::Zstd,
        } => {}
        other => panic!("{other}"),
    }
    assert!(matches!(
        merge_bytes(&[raw, good]).unwrap_err(),
        MergeError::UnsupportedCompression { part: 0, .. }
    ));
}

#[test]
fn metadata_is_unioned() {
    let a_meta = json!({
        "name": "shard a",
        "description": "roads and water",
        "vector_layers": [
            {"id": "roads", "description": "from a", "minzoom": 0, "maxzoom": 5,
             "fields": {"name": "String", "lanes": "Number"}},
            {"id": "water", "minzoom": 0, "maxzoom": 5, "fields": {}},
        ],
        "generator": "etl-tiles",
        "minzoom": "0",
        "bounds": "-10,-10,0,0",
    });
    let b_meta = json!({
        "name": "shard b",
        "attribution": "© contributors",
        "vector_layers": [
            {"id": "pois", "minzoom": 6, "maxzoom": 9, "fields": {"kind": "String"}},
            {"id": "roads", "description": "from b", "minzoom": 6, "maxzoom": 9,
             "fields": {"lanes": "String", "oneway": "Boolean"}},
        ],
        "center": [0, 0, 7],
    });
    let empty_meta = json!({"name": "empty", "vector_layers": [], "format": "pbf"});
    let z5 = zoom_first_id(5).unwrap();
    let z6 = zoom_first_id(6).unwrap();
    let a = write(
        &[(z5, b"a".to_vec())],
        &meta_with(a_meta, [-10.0, -10.0, 0.0, 0.0]),
    );
    let b = write(
        &[
            (z6 + 3, b"b".to_vec()),
            (zoom_first_id(9).unwrap(), b"c".to_vec()),
        ],
        &meta_with(b_meta, [5.0, 5.0, 20.0, 30.0]),
    );
    // An empty part's bounds do not count.
    let empty = write(&[], &meta_with(empty_meta, [-170.0, -80.0, 170.0, 80.0]));
    let (merged, _) = merge_bytes(&[a, empty, b]).unwrap();
    verify(Cursor::new(&merged), merged.len() as u64).unwrap();

    let m = open(&merged);
    let md = m.metadata();
    assert_eq!(md["name"], "shard a");
    assert_eq!(md["description"], "roads and water");
    assert_eq!(md["attribution"], "© contributors");
    assert_eq!(md["generator"], "etl-tiles");
    assert_eq!(md["format"], "pbf");
    // Recomputed, in each key's own shape.
    assert_eq!(md["minzoom"], "5");
    assert_eq!(md["bounds"], "-10,-10,20,30");
    assert_eq!(md["center"], json!([5, 10, 5]));
    assert_eq!(
        md["vector_layers"],
        json!([
            {"id": "roads", "description": "from a", "minzoom": 0, "maxzoom": 9,
             "fields": {"name": "String", "lanes": "Mixed", "oneway": "Boolean"}},
            {"id": "water", "minzoom": 0, "maxzoom": 5, "fields": {}},
            {"id": "pois", "minzoom": 6, "maxzoom": 9, "fields": {"kind": "String"}},
        ])
    );
    let h = m.header();
    assert_eq!((h.min_zoom, h.max_zoom), (5, 9));
    assert_eq!(h.bounds, [-10.0, -10.0, 20.0, 30.0]);
    assert_eq!((h.center_lon, h.center_lat, h.center_zoom), (5.0, 10.0, 5));
}

#[test]
fn merges_archives_written_by_the_pmtiles_crate() {
    let tiles = tileset(600, 21);
    let (a, b): (Tiles, Tiles) = tiles.iter().cloned().partition(|t| (t.0 / 7) % 2 == 0);
    let theirs = |tiles: &Tiles| {
        let mut out = Cursor::new(Vec::new());
        let mut w = pmtiles::PmTilesWriter::new(pmtiles::TileType::Mvt)
            .precompressed(pmtiles::Compression::Gzip)
            .metadata(r#"{"vector_layers":[{"id":"roads","fields":{"name":"String"}}]}"#)
            .create(&mut out)
            .unwrap();
        for (id, data) in tiles {
            let c = tile_coord(*id).unwrap();
            w.add_tile(pmtiles::TileCoord::new(c.z, c.x, c.y).unwrap(), data)
                .unwrap();
        }
        w.finalize().unwrap();
        out.into_inner()
    };
    let (merged, report) = merge_bytes(&[theirs(&a), write(&b, &meta())]).unwrap();
    assert_same_as_whole(&merged, &report, &tiles);
}

/// Deals the tiles of a random tileset to `k` parts by `assign`.
fn partition(tiles: &Tiles, k: usize, assign: &[usize]) -> Vec<Tiles> {
    let mut parts = vec![Vec::new(); k];
    for (t, &p) in tiles.iter().zip(assign.iter().cycle()) {
        parts[p % k].push(t.clone());
    }
    parts
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(48))]

    /// Any partition of a tileset into disjoint parts merges back to the whole.
    #[test]
    fn random_partitions_merge_to_the_whole(
        // Tile ids in z0..=5 with contents from a small palette (runs and repeats).
        picks in proptest::collection::btree_map(0u64..1365, 0u8..6, 1..300),
        k in 1usize..5,
        assign in proptest::collection::vec(0usize..5, 1..64),
    ) {
        let tiles: Tiles = picks
            .iter()
            .map(|(&id, &c)| (id, vec![c; 1 + usize::from(c) * 3]))
            .collect();
        let parts: Vec<Vec<u8>> = partition(&tiles, k, &assign)
            .iter()
            .map(|p| write(p, &meta()))
            .collect();
        let (merged, report) = merge_bytes(&parts).unwrap();
        prop_assert_eq!(report.parts, k);
        assert_same_as_whole(&merged, &report, &tiles);
    }

    /// Adding any tile of one part to another part makes the merge fail with that tile.
    #[test]
    fn any_shared_tile_is_reported(
        picks in proptest::collection::btree_set(0u64..1365, 2..100),
        dup in any::<proptest::sample::Index>(),
    ) {
        let tiles: Tiles = picks.iter().map(|&id| (id, vec![(id % 7) as u8 + 1])).collect();
        let mut parts = partition(&tiles, 2, &[0, 1]);
        let (pick, from, to) = if parts[1].is_empty() { (0, 0, 1) } else {
            (dup.index(parts[1].len()), 1, 0)
        };
        let shared = parts[from][pick].clone();
        parts[to].push(shared.clone());
        parts[to].sort();
        let bytes: Vec<Vec<u8>> = parts.iter().map(|p| write(p, &meta())).collect();
        match merge_bytes(&bytes) {
            Err(MergeError::Overlap { z, x, y, first_part, second_part }) => {
                prop_assert_eq!(TileCoord::new(z, x, y), tile_coord(shared.0));
                prop_assert_eq!((first_part, second_part), (0, 1));
            }
            other => prop_assert!(false, "{:?}", other.map(|r| r.1)),
        }
    }
}

// ---- summary -------------------------------------------------------------------------------

#[test]
fn summary_counts_runs_per_zoom() {
    // ids 3..=7 share one content: one run crossing from z1 (3, 4) into z2 (5, 6, 7).
    let ocean = b"ocean".to_vec();
    let big = vec![42u8; 900];
    let mut tiles: Tiles = vec![(0, b"root".to_vec()), (1, b"one".to_vec())];
    tiles.extend((3..=7).map(|id| (id, ocean.clone())));
    tiles.push((9, big.clone()));
    tiles.push((12, ocean.clone())); // a repeat, not stored again
    tiles.push((30, b"z3".to_vec()));
    let bytes = write(&tiles, &meta());
    let mut a = open(&bytes);
    let s = summarize(&mut a).unwrap();
    assert_eq!(
        s.tiles_per_zoom,
        BTreeMap::from([(0, 1), (1, 3), (2, 5), (3, 1)])
    );
    assert_eq!(s.tiles, 10);
    assert_eq!(s.tile_entries, 6);
    assert_eq!(s.contents, 5);
    assert_eq!(s.total_tile_bytes, 4 + 3 + 5 + 900 + 2);
    assert_eq!(s.largest, Some((tile_coord(9).unwrap(), 900)));

    let v = verify(Cursor::new(&bytes), bytes.len() as u64).unwrap();
    assert_eq!(v.tiles_per_zoom, s.tiles_per_zoom);
    assert_eq!(v.largest_tile, s.largest);

    let j = s.to_json(a.header(), a.metadata());
    assert_eq!(j["tiles"], 10);
    assert_eq!(j["contents"], 5);
    assert_eq!(j["tiles_per_zoom"], json!({"0": 1, "1": 3, "2": 5, "3": 1}));
    let c = tile_coord(9).unwrap();
    assert_eq!(
        j["largest_tile"],
        json!({"z": c.z, "x": c.x, "y": c.y, "bytes": 900})
    );
    let h = &j["header"];
    assert_eq!(h["tile_type"], "mvt");
    assert_eq!(h["tile_compression"], "gzip");
    assert_eq!(h["internal_compression"], "gzip");
    assert_eq!(h["clustered"], true);
    assert_eq!(h["version"], 3);
    assert_eq!(h["addressed_tiles"], 10);
    assert_eq!(h["min_zoom"], 0);
    assert_eq!(h["max_zoom"], 3);
    assert_eq!(h["bounds"], json!([-180.0, -85.0511, 180.0, 85.0511]));
    assert_eq!(h["center"], json!([0.0, 0.0, 3]));
    assert_eq!(h["data_offset"], a.header().data_offset);
    assert_eq!(j["metadata"]["name"], "test");
}

#[test]
fn summary_of_empty_and_unclustered_archives() {
    let empty = write(&[], &meta());
    let mut a = open(&empty);
    let s = summarize(&mut a).unwrap();
    assert_eq!(s, Summary::default());
    let j = s.to_json(a.header(), a.metadata());
    assert_eq!(j["largest_tile"], Value::Null);
    assert_eq!(j["tiles"], 0);
    assert_eq!(j["tiles_per_zoom"], json!({}));

    let data = b"cccbbbbaa".to_vec();
    let bytes = hand_built(
        &[
            entry(1, 7, 2, 1),
            entry(2, 3, 4, 2),
            entry(9, 7, 2, 1),
            entry(20, 0, 3, 1),
        ],
        &data,
        false,
    );
    let s = summarize(&mut open(&bytes)).unwrap();
    assert_eq!(s.tiles, 5);
    assert_eq!(s.contents, 3);
    assert_eq!(s.total_tile_bytes, 9);
    assert_eq!(s.largest, Some((tile_coord(2).unwrap(), 4)));
}

#[test]
fn summary_agrees_with_verify() {
    for n in [1usize, 50, 5000] {
        let bytes = write(&tileset(n, n as u64), &meta());
        let s = summarize(&mut open(&bytes)).unwrap();
        let v = verify(Cursor::new(&bytes), bytes.len() as u64).unwrap();
        assert_eq!(s.tiles_per_zoom, v.tiles_per_zoom);
        assert_eq!(s.tiles, v.addressed_tiles);
        assert_eq!(s.tile_entries, v.tile_entries);
        assert_eq!(s.contents, v.unique_tiles);
        assert_eq!(s.largest, v.largest_tile);
        assert_eq!(
            s.total_tile_bytes,
            Header::from_bytes(&bytes).unwrap().data_length
        );
    }
}

#[test]
fn summary_reports_corrupt_directories() {
    let bytes = write(&tileset(5000, 1), &meta());
    let h = Header::from_bytes(&bytes).unwrap();
    assert!(h.leaf_length > 0);
    // Corrupt the first leaf directory's gzip stream.
    let mut bad = bytes.clone();
    let at = h.leaf_offset as usize + 12;
    bad[at] ^= 0xff;
    bad[at + 1] ^= 0xff;
    let mut a = open(&bad);
    assert!(summarize(&mut a).is_err());
}
