//! Tile quality of PMTiles archives, per zoom, for comparing tilers on the same input:
//!
//! ```text
//! cargo run --release -p etl-tiles --example quality -- [--sample N] A.pmtiles [B.pmtiles …]
//! ```
//!
//! For each archive and zoom: tiles (a run of identical tiles counts each), compressed bytes,
//! features, line, polygon and point features (copies in neighbouring tiles' buffers included) and distinct point
//! ids, the share of point ids shown at zoom z that are still shown at
//! z+1 (1.0 is a monotone map: nothing a user saw disappears when zooming in), and the share of
//! polygon features that are not OGC-valid by the `geo` crate's validity test (checked on the
//! tiles whose id is a multiple of `--sample`, default 10, the same tiles in every archive).
//! Tiles are decoded by this crate's MVT decoder; validity is judged by `geo`, not by our code.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::print_stdout)]

use std::collections::{BTreeMap, HashSet};
use std::fs::File;
use std::io::BufReader;

use etl_tiles::archive::{Archive, decompress};
use etl_tiles::geom::TileGeom;
use etl_tiles::mvt::decode_tile;
use etl_tiles::tile::tile_coord;
use geo::algorithm::Validation;

#[derive(Default)]
struct Zoom {
    tiles: u64,
    bytes: u64,
    features: u64,
    points: u64,
    lines: u64,
    polygons: u64,
    point_ids: HashSet<u64>,
    polygons_checked: u64,
    polygons_invalid: u64,
    largest: u64,
}

fn main() {
    let mut args: Vec<String> = std::env::args().skip(1).collect();
    let mut sample = 10u64;
    if let Some(i) = args.iter().position(|a| a == "--sample") {
        sample = args
            .get(i + 1)
            .and_then(|s| s.parse().ok())
            .filter(|n| *n > 0)
            .expect("--sample takes a positive number");
        args.drain(i..=i + 1);
    }
    assert!(
        !args.is_empty(),
        "usage: quality [--sample N] A.pmtiles [B.pmtiles …]"
    );
    for path in &args {
        report(path, sample);
    }
}

fn report(path: &str, sample: u64) {
    let file = File::open(path).unwrap_or_else(|e| panic!("{path}: {e}"));
    let mut a = Archive::open(BufReader::new(file)).unwrap_or_else(|e| panic!("{path}: {e}"));
    let compression = a.header().tile_compression;
    let entries: Vec<_> = a.entries().map(|e| e.expect("directory")).collect();
    let mut zooms: BTreeMap<u8, Zoom> = BTreeMap::new();
    for e in entries {
        let c = tile_coord(e.tile_id).expect("tile id");
        let run = u64::from(e.run_length);
        let data = a.read_tile(&e).expect("tile");
        let raw = decompress(&data, compression, 64 << 20, "tile").expect("decompress");
        let layers = decode_tile(&raw).unwrap_or_else(|err| panic!("{c}: {err}"));
        let z = zooms.entry(c.z).or_default();
        z.tiles += run;
        z.bytes += data.len() as u64 * run;
        z.largest = z.largest.max(data.len() as u64);
        // A run's tiles are the first one's copies: checked once, counted `run` times.
        let checked = (e.tile_id..e.tile_id + run).any(|id| id % sample == 0);
        for l in &layers {
            z.features += l.features.len() as u64 * run;
            for f in &l.features {
                match &f.geom {
                    TileGeom::Points(_) => {
                        z.points += run;
                        if let Some(id) = f.id {
                            z.point_ids.insert(id);
                        }
                    }
                    TileGeom::Lines(_) => z.lines += run,
                    TileGeom::Polygons(_) if !checked => z.polygons += run,
                    TileGeom::Polygons(p) => {
                        z.polygons += run;
                        z.polygons_checked += 1;
                        let errors = to_geo(p).validation_errors();
                        if !errors.is_empty() {
                            z.polygons_invalid += 1;
                            // QUALITY_SHOW=1: the first invalid polygons of each zoom, and why.
                            if std::env::var_os("QUALITY_SHOW").is_some() && z.polygons_invalid <= 2
                            {
                                println!("{c} {:?}: {}: {p:?}", f.id, errors[0]);
                            }
                        }
                    }
                }
            }
        }
    }
    println!("\n{path}");
    println!(
        "  {:>4} {:>10} {:>13} {:>11} {:>10} {:>10} {:>10} {:>10} {:>9} {:>12} {:>10} {:>12}",
        "zoom",
        "tiles",
        "bytes",
        "features",
        "lines",
        "polygons",
        "points",
        "point_ids",
        "kept_z+1",
        "polys_chk",
        "invalid%",
        "largest_b"
    );
    let (mut chk, mut bad, mut kept_num, mut kept_den) = (0u64, 0u64, 0u64, 0u64);
    for (z, s) in &zooms {
        let up = zooms.get(&(z + 1));
        let kept = up.map(|u| {
            s.point_ids
                .iter()
                .filter(|id| u.point_ids.contains(id))
                .count()
        });
        let share = match (kept, s.point_ids.len()) {
            (Some(k), n) if n > 0 => {
                kept_num += k as u64;
                kept_den += n as u64;
                format!("{:.4}", k as f64 / n as f64)
            }
            _ => "-".to_owned(),
        };
        chk += s.polygons_checked;
        bad += s.polygons_invalid;
        println!(
            "  {:>4} {:>10} {:>13} {:>11} {:>10} {:>10} {:>10} {:>10} {:>9} {:>12} {:>10} {:>12}",
            z,
            s.tiles,
            s.bytes,
            s.features,
            s.lines,
            s.polygons,
            s.points,
            s.point_ids.len(),
            share,
            s.polygons_checked,
            percent(s.polygons_invalid, s.polygons_checked),
            s.largest
        );
    }
    let total = |f: fn(&Zoom) -> u64| zooms.values().map(f).sum::<u64>();
    println!(
        "  {:>4} {:>10} {:>13} {:>11} {:>10} {:>10} {:>10} {:>10} {:>9} {:>12} {:>10} {:>12}",
        "all",
        total(|s| s.tiles),
        total(|s| s.bytes),
        total(|s| s.features),
        total(|s| s.lines),
        total(|s| s.polygons),
        total(|s| s.points),
        "",
        if kept_den > 0 {
            format!("{:.4}", kept_num as f64 / kept_den as f64)
        } else {
            "-".to_owned()
        },
        chk,
        percent(bad, chk),
        zooms.values().map(|s| s.largest).max().unwrap_or(0)
    );
}

fn percent(n: u64, of: u64) -> String {
    if of == 0 {
        "-".to_owned()
    } else {
        format!("{:.3}", n as f64 * 100.0 / of as f64)
    }
}

#[path = "../tests/common/geo_polygons.rs"]
mod geo_polygons;
use geo_polygons::to_geo;
