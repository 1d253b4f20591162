//! `extract`: the tiles of an area (a box or a region of polygons) and zoom range, byte for
//! byte, with runs of interior tiles cut to the area and kept as runs; only the directories
//! and tiles of the area read; damaged sources refused.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeMap;
use std::io::Cursor;

use bytes::Bytes;
use etl_tiles::archive::{
    Archive, ArchiveError, ArchiveIndex, ArchiveMeta, ArchiveWriter, Area, Entry, ExtractError,
    ExtractReport, HEADER_LEN, Header, Region, decode_directory, encode_directory, extract, now,
    verify,
};
use etl_tiles::tile::{TileCoord, lonlat_to_world, tile_coord, world_to_lonlat, zoom_first_id};
use geo::Intersects;
use geo_types::{Coord, Geometry, LineString, MultiPolygon, Point, Polygon, Rect};
use serde_json::json;

mod support;
use support::*;

/// Every tile id with its stored (compressed) bytes, runs expanded.
fn stored(bytes: &[u8]) -> BTreeMap<u64, Vec<u8>> {
    let mut a = Archive::open(Cursor::new(bytes)).unwrap();
    let entries: Vec<_> = a.entries().map(Result::unwrap).collect();
    let mut out = BTreeMap::new();
    for e in entries {
        let data = a.read_tile(&e).unwrap();
        for k in 0..u64::from(e.run_length) {
            out.insert(e.tile_id + k, data.clone());
        }
    }
    out
}

/// Whether tile `c` overlaps the lon/lat box (edges on the box's east or south side excluded).
fn in_box(c: TileCoord, [w, s, e, n]: [f64; 4]) -> bool {
    let shift = 32 - u32::from(c.z);
    let (x0, y0) = lonlat_to_world(w, n);
    let (x1, y1) = lonlat_to_world(e, s);
    let (tx, ty) = (i64::from(c.x), i64::from(c.y));
    tx >= x0 >> shift && tx <= (x1 - 1) >> shift && ty >= y0 >> shift && ty <= (y1 - 1) >> shift
}

fn source() -> Vec<u8> {
    let ring = |w: f64, s: f64, e: f64, n: f64| {
        LineString::from(vec![(w, s), (e, s), (e, n), (w, n), (w, s)])
    };
    let mut feats = vec![feat(
        0,
        Some(1),
        Geometry::Polygon(Polygon::new(ring(-60.0, -50.0, 60.0, 50.0), vec![])),
        json!({"name": "land"}),
    )];
    let mut rng = Rng(8);
    for i in 0..300 {
        let (x, y) = (rng.range(-80.0, 80.0), rng.range(-60.0, 60.0));
        feats.push(feat(
            1,
            Some(10 + i),
            Geometry::Point(Point::new(x, y)),
            json!({}),
        ));
    }
    build(opts(0, 9), &["area", "pts"], &feats).unwrap().0
}

type Extracted = Result<(Cursor<Vec<u8>>, ExtractReport), ExtractError<ArchiveError>>;

/// `extract` over an archive in memory, into memory.
fn run(src: &[u8], area: &Area, zooms: (u8, u8)) -> Extracted {
    now(extract(
        &Bytes::copy_from_slice(src),
        Cursor::new(Vec::new()),
        area,
        zooms,
    ))
}

#[test]
fn an_extract_holds_exactly_the_area_s_tiles_byte_for_byte() {
    let src_bytes = source();
    let bbox = [-20.5, 10.25, 30.0, 40.0];
    let (out, report) = run(&src_bytes, &Area::Bbox(bbox), (2, 8)).unwrap();
    let out = out.into_inner();
    verify(Cursor::new(&out), out.len() as u64).unwrap();
    let (all, got) = (stored(&src_bytes), stored(&out));
    let want: BTreeMap<u64, Vec<u8>> = all
        .into_iter()
        .filter(|(id, _)| {
            let c = tile_coord(*id).unwrap();
            (2..=8).contains(&c.z) && in_box(c, bbox)
        })
        .collect();
    assert!(want.len() > 1000, "{} tiles", want.len());
    assert_eq!(got.len(), want.len());
    assert!(got == want, "the extract's tiles differ from the source's");
    assert_eq!(report.tiles, want.len() as u64);
    // The interior is still runs: far fewer entries than tiles.
    let entries = Archive::open(Cursor::new(&out)).unwrap().entries().count();
    assert!(entries * 4 < want.len(), "{entries} entries");
    // The metadata comes along, its layers' zooms within the extract's; the bounds are the
    // area's.
    let a = Archive::open(Cursor::new(&out)).unwrap();
    let src_meta = Archive::open(Cursor::new(&src_bytes))
        .unwrap()
        .metadata()
        .clone();
    assert_eq!(a.metadata()["name"], src_meta["name"]);
    let layers = a.metadata()["vector_layers"].as_array().unwrap();
    assert_eq!(layers.len(), 2);
    for l in layers {
        let (lo, hi) = (
            l["minzoom"].as_u64().unwrap(),
            l["maxzoom"].as_u64().unwrap(),
        );
        assert!((2..=8).contains(&lo) && (2..=8).contains(&hi), "{l}");
    }
    assert_eq!(a.header().min_zoom, 2);
    assert_eq!(a.header().max_zoom, 8);
    assert!(
        (a.header().bounds[0] - -20.5).abs() < 1e-6,
        "{:?}",
        a.header().bounds
    );
}

#[test]
fn bad_areas_are_refused() {
    let src_bytes = source();
    for (bbox, zooms) in [
        ([10.0, 0.0, -10.0, 5.0], (0, 5)),
        ([0.0, 5.0, 10.0, 5.0], (0, 5)),
        ([f64::NAN, 0.0, 1.0, 1.0], (0, 5)),
        ([-190.0, 0.0, 1.0, 1.0], (0, 5)),
        ([0.0, 0.0, 1.0, 1.0], (6, 5)),
        // Beyond Web Mercator's latitudes: no area left.
        ([0.0, 86.0, 10.0, 89.0], (0, 5)),
        // Zooms the archive does not have.
        ([0.0, 0.0, 1.0, 1.0], (12, 14)),
    ] {
        let r = run(&src_bytes, &Area::Bbox(bbox), zooms);
        assert!(
            matches!(r, Err(ExtractError::Area(_))),
            "{bbox:?} {zooms:?}"
        );
    }
    // An area with no tiles at its zooms gives a valid, empty archive.
    let (out, report) = run(&src_bytes, &Area::Bbox([170.0, 80.0, 171.0, 81.0]), (4, 9)).unwrap();
    assert_eq!(report.tiles, 0);
    let out = out.into_inner();
    verify(Cursor::new(&out), out.len() as u64).unwrap();
}

/// Whether tile `c` meets `region`, in world coordinates (where the region's edges are straight
/// lines, as the extract draws them), by the `geo` crate's test.
fn meets_region(c: TileCoord, region: &MultiPolygon<f64>) -> bool {
    let world = MultiPolygon(
        region
            .iter()
            .map(|p| {
                let ring = |l: &LineString<f64>| {
                    LineString::from(
                        l.coords()
                            .map(|c| {
                                let (x, y) = lonlat_to_world(c.x, c.y);
                                (x as f64, y as f64)
                            })
                            .collect::<Vec<_>>(),
                    )
                };
                Polygon::new(ring(p.exterior()), p.interiors().iter().map(ring).collect())
            })
            .collect(),
    );
    let side = (1u64 << (32 - c.z)) as f64;
    let (x, y) = (f64::from(c.x) * side, f64::from(c.y) * side);
    world.intersects(&Rect::new(
        Coord { x, y },
        Coord {
            x: x + side,
            y: y + side,
        },
    ))
}

#[test]
fn a_region_extract_holds_the_tiles_the_region_meets() {
    let src_bytes = source();
    let all = stored(&src_bytes);
    let mut rng = Rng(31);
    for round in 0..6 {
        // A star-shaped ring around a random centre, with a hole in the middle.
        let (cx, cy) = (rng.range(-50.0, 50.0), rng.range(-40.0, 40.0));
        let n = 5 + (rng.next() % 20) as usize;
        let mut ring: Vec<(f64, f64)> = (0..n)
            .map(|i| {
                let a = i as f64 / n as f64 * std::f64::consts::TAU;
                let r = rng.range(3.0, 25.0);
                (cx + r * a.cos(), cy + r * a.sin())
            })
            .collect();
        ring.push(ring[0]);
        let hole = LineString::from(vec![
            (cx - 1.3, cy - 1.1),
            (cx - 1.3, cy + 1.2),
            (cx + 1.4, cy + 1.2),
            (cx + 1.4, cy - 1.1),
            (cx - 1.3, cy - 1.1),
        ]);
        let region = MultiPolygon(vec![Polygon::new(LineString::from(ring), vec![hole])]);
        let area = Area::Region(Region::new::<()>(&region).unwrap());
        let (out, report) = run(&src_bytes, &area, (0, 9)).unwrap();
        let out = out.into_inner();
        verify(Cursor::new(&out), out.len() as u64).unwrap();
        let got = stored(&out);
        let want: BTreeMap<u64, Vec<u8>> = all
            .iter()
            .filter(|(id, _)| meets_region(tile_coord(**id).unwrap(), &region))
            .map(|(id, d)| (*id, d.clone()))
            .collect();
        let missing: Vec<_> = want
            .keys()
            .filter(|k| !got.contains_key(k))
            .take(5)
            .collect();
        let extra: Vec<_> = got
            .keys()
            .filter(|k| !want.contains_key(k))
            .take(5)
            .collect();
        assert!(
            missing.is_empty() && extra.is_empty(),
            "round {round}: missing {:?}, extra {:?}",
            missing.iter().map(|k| tile_coord(**k)).collect::<Vec<_>>(),
            extra.iter().map(|k| tile_coord(**k)).collect::<Vec<_>>()
        );
        assert!(got == want, "round {round}: bytes differ");
        assert_eq!(report.tiles, want.len() as u64);
        assert!(want.len() > 100, "round {round}: {} tiles", want.len());
    }
}

/// An archive of `n` distinct tiles at zoom `z`, big enough to have leaf directories.
fn many_tiles(z: u8, n: u64) -> (Vec<u8>, u64) {
    let mut w = ArchiveWriter::new(Cursor::new(Vec::new())).unwrap();
    // Ids with gaps and tiles of varied length, so the directory does not compress away.
    let mut id = zoom_first_id(z).unwrap();
    let mut rng = Rng(5);
    for k in 0..n {
        let data = format!("tile {k:08} {}", ".".repeat((rng.next() % 40) as usize));
        w.add_tile(id, data.as_bytes()).unwrap();
        id += 1 + rng.next() % 3;
    }
    let meta = ArchiveMeta {
        min_zoom: z,
        max_zoom: z,
        bounds: [-180.0, -85.0, 180.0, 85.0],
        center: (0.0, 0.0, z),
        metadata: json!({"name": "many"}),
    };
    (w.finish(&meta).unwrap().into_inner(), n)
}

#[test]
fn a_small_area_reads_its_own_leaves_and_tiles_only() {
    let (src, n) = many_tiles(10, 1 << 18);
    let leaves = {
        let index = now(ArchiveIndex::open(&Bytes::copy_from_slice(&src))).unwrap();
        index.root().iter().filter(|e| e.is_leaf()).count()
    };
    assert!(leaves > 20, "{leaves} leaves");
    let bbox = [10.0, 40.0, 12.0, 42.0];
    let (out, report) = run(&src, &Area::Bbox(bbox), (0, 10)).unwrap();
    let out = out.into_inner();
    let got = stored(&out);
    let want: Vec<u64> = stored(&src)
        .into_keys()
        .filter(|id| in_box(tile_coord(*id).unwrap(), bbox))
        .collect();
    assert_eq!(got.keys().copied().collect::<Vec<_>>(), want);
    assert!(report.leaves_read <= 2, "{report:?}");
    assert!(report.tile_reads <= 2, "{report:?}");
    assert!(
        report.bytes_read * 20 < src.len() as u64,
        "{report:?} of {} bytes ({n} tiles)",
        src.len()
    );
    // The whole world reads every leaf, in batches of joined ranges.
    let (_, all) = run(&src, &Area::Bbox([-180.0, -90.0, 180.0, 90.0]), (0, 10)).unwrap();
    assert_eq!(all.tiles, n);
    assert_eq!(all.leaves_read, leaves as u64);
    assert!(all.tile_reads < 10, "{all:?}");
}

#[test]
fn damaged_sources_are_errors_not_panics() {
    let dir = std::path::Path::new(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../fixtures/pmtiles/hostile"
    ));
    let world = Area::Bbox([-180.0, -90.0, 180.0, 90.0]);
    let mut refused = 0;
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_none_or(|e| e != "pmtiles") {
            continue;
        }
        let bytes = std::fs::read(&path).unwrap();
        let name = path.file_name().unwrap().to_string_lossy().into_owned();
        match run(&bytes, &world, (0, 31)) {
            Ok(_) => assert_eq!(name, "good-with-leaf.pmtiles", "{name} was extracted"),
            Err(ExtractError::Area(m)) => panic!("{name}: {m}"),
            Err(e) => {
                assert!(!e.to_string().is_empty());
                refused += 1;
            }
        }
    }
    assert!(refused >= 10, "{refused} refused");
    // Directories a writer would never make: each is refused with what is wrong.
    let (good, _) = many_tiles(6, 200);
    // (Directories hold id deltas, so only overlapping runs can be out of order.)
    let cases: [(&str, Edit); 3] = [
        ("out of order", |e| e[10].run_length = 5),
        ("zero length", |e| e[10].length = 0),
        ("beyond data section", |e| e[10].offset = 1 << 40),
    ];
    for (want, edit) in cases {
        let bad = with_root(&good, edit);
        match run(&bad, &world, (0, 31)) {
            Err(e) => assert!(e.to_string().contains(want), "{want}: {e}"),
            Ok(_) => panic!("{want}: extracted"),
        }
    }
    // An area that does not reach the damage still extracts.
    let bad = with_root(&good, |e| e[200 - 1].offset = 1 << 40);
    let c = tile_coord(zoom_first_id(6).unwrap()).unwrap();
    let side = 1i64 << 26;
    let (w, n) = world_to_lonlat(i64::from(c.x) * side + 1000, i64::from(c.y) * side + 1000);
    let (e, s) = world_to_lonlat(
        i64::from(c.x + 1) * side - 1000,
        i64::from(c.y + 1) * side - 1000,
    );
    let (out, report) = run(&bad, &Area::Bbox([w, s, e, n]), (6, 6)).unwrap();
    assert_eq!(report.tiles, 1);
    assert_eq!(
        stored(&out.into_inner()).into_keys().collect::<Vec<_>>(),
        [zoom_first_id(6).unwrap()]
    );
}

type Edit = fn(&mut Vec<Entry>);

/// `good` with its root directory's entries edited (the new root is appended at the end).
fn with_root(good: &[u8], edit: Edit) -> Vec<u8> {
    let mut h = Header::from_bytes(good).unwrap();
    let at = h.root_offset as usize;
    let mut entries = decode_directory(&gunzip(&good[at..at + h.root_length as usize])).unwrap();
    edit(&mut entries);
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    std::io::Write::write_all(&mut gz, &encode_directory(&entries)).unwrap();
    let root = gz.finish().unwrap();
    let mut out = good.to_vec();
    h.root_offset = out.len() as u64;
    h.root_length = root.len() as u64;
    out.extend_from_slice(&root);
    out[..HEADER_LEN].copy_from_slice(&h.to_bytes());
    out
}

fn gzip(data: &[u8]) -> Vec<u8> {
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    std::io::Write::write_all(&mut gz, data).unwrap();
    gz.finish().unwrap()
}

/// `good` (an archive with leaf directories) with the leaf of root entry `k` replaced by
/// `entries`: leaves and root copied to the end, the header pointed at them.
fn with_leaf(good: &[u8], k: usize, entries: &[Entry]) -> Vec<u8> {
    let mut h = Header::from_bytes(good).unwrap();
    let (ro, rl) = (h.root_offset as usize, h.root_length as usize);
    let mut root = decode_directory(&gunzip(&good[ro..ro + rl])).unwrap();
    let (lo, ll) = (h.leaf_offset as usize, h.leaf_length as usize);
    let leaf = gzip(&encode_directory(entries));
    let mut out = good.to_vec();
    h.leaf_offset = out.len() as u64;
    out.extend_from_slice(&good[lo..lo + ll]);
    out.extend_from_slice(&leaf);
    h.leaf_length = (ll + leaf.len()) as u64;
    root[k].offset = ll as u64;
    root[k].length = leaf.len() as u32;
    let root = gzip(&encode_directory(&root));
    h.root_offset = out.len() as u64;
    h.root_length = root.len() as u64;
    out.extend_from_slice(&root);
    out[..HEADER_LEN].copy_from_slice(&h.to_bytes());
    out
}

#[test]
fn damaged_leaf_directories_are_refused_where_the_walk_meets_them() {
    let (good, _) = many_tiles(10, 1 << 18);
    let h = Header::from_bytes(&good).unwrap();
    let root = decode_directory(&gunzip(
        &good[h.root_offset as usize..(h.root_offset + h.root_length) as usize],
    ))
    .unwrap();
    assert!(root.iter().all(Entry::is_leaf) && root.len() > 20);
    let k = 5;
    let (start, next) = (root[k].tile_id, root[k + 1].tile_id);
    let tile = |tile_id: u64, run_length: u32| Entry {
        tile_id,
        offset: 0,
        length: 10,
        run_length,
    };
    let world = Area::Bbox([-180.0, -90.0, 180.0, 90.0]);
    for (entries, want) in [
        (vec![], "is empty"),
        (vec![tile(start, 1), tile(next + 5, 1)], "out of order"),
        (vec![tile(next - 1, 10)], "beyond its directory's end"),
    ] {
        let bad = with_leaf(&good, k, &entries);
        match run(&bad, &world, (0, 31)) {
            Err(e) => assert!(e.to_string().contains(want), "{want}: {e}"),
            Ok(_) => panic!("{want}: extracted"),
        }
        // An area the damaged leaf does not hold never reads it, and extracts.
        let c = tile_coord(root[k + 3].tile_id).unwrap();
        let side = 1i64 << (32 - c.z);
        let (w, n) = world_to_lonlat(i64::from(c.x) * side + 10, i64::from(c.y) * side + 10);
        let (e, s) = world_to_lonlat(
            i64::from(c.x + 1) * side - 10,
            i64::from(c.y + 1) * side - 10,
        );
        let (_, report) = run(&bad, &Area::Bbox([w, s, e, n]), (c.z, c.z)).unwrap();
        assert_eq!(report.tiles, 1, "{want}");
        assert_eq!(report.leaves_read, 1, "{want}");
    }
}
