//! `etl-pmtiles --tile-format mlt` on the bundled fixtures: an archive `verify` accepts, of tile
//! type MLT, whose every tile the reference decoder reads back to the MVT run's features.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeMap;
use std::io::{Cursor, Read};
use std::path::{Path, PathBuf};

use etl_tiles::archive::{Archive, TileType};
use etl_tiles::mvt::feature_lines;
use etl_tiles::tile::tile_coord;

mod support;
use support::run;

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../fixtures/data")
}

/// Tile -> its features as sorted lines (`etl_tiles::mvt::feature_lines`), tiles decoded as
/// MVT (MLT through the reference decoder first).
fn features(path: &Path) -> (TileType, BTreeMap<String, Vec<String>>) {
    let bytes = std::fs::read(path).unwrap();
    let mut a = Archive::open(Cursor::new(&bytes)).unwrap();
    let t = a.header().tile_type;
    let entries: Vec<_> = a.entries().map(Result::unwrap).collect();
    let mut out = BTreeMap::new();
    for e in entries {
        let mut raw = Vec::new();
        flate2::read::GzDecoder::new(&a.read_tile(&e).unwrap()[..])
            .read_to_end(&mut raw)
            .unwrap();
        let mvt = match t {
            TileType::Mlt => etl_tiles::mlt::mlt_to_mvt(&raw).unwrap(),
            _ => raw,
        };
        let c = tile_coord(e.tile_id).unwrap();
        out.insert(
            format!("{}/{}/{}", c.z, c.x, c.y),
            feature_lines(&mvt).unwrap(),
        );
    }
    (t, out)
}

#[test]
fn mlt_archives_hold_the_features_of_the_mvt_ones() {
    let dir = tempfile::tempdir().unwrap();
    let data = fixtures();
    let inputs: Vec<String> = ["sites.geojson", "tracks.geojsonl"]
        .iter()
        .map(|f| data.join(f).to_str().unwrap().to_owned())
        .collect();
    let mut made = Vec::new();
    for format in ["mvt", "mlt"] {
        let out = dir.path().join(format!("fixtures.{format}.pmtiles"));
        let mut args = vec!["-o", out.to_str().unwrap(), "-z12", "--tile-format", format];
        args.extend(inputs.iter().map(String::as_str));
        let (code, log) = run(&args);
        assert_eq!(code, 0, "{log}");
        let (code, log) = run(&["verify", out.to_str().unwrap()]);
        assert_eq!(code, 0, "{log}");
        made.push(features(&out));
    }
    let (mvt_type, mvt) = &made[0];
    let (mlt_type, mlt) = &made[1];
    assert_eq!((*mvt_type, *mlt_type), (TileType::Mvt, TileType::Mlt));
    assert!(mvt.len() > 10);
    assert_eq!(mlt, mvt);
}

#[test]
fn an_unknown_tile_format_is_a_usage_error() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("o.pmtiles");
    let site = fixtures().join("sites.geojson");
    let (code, log) = run(&[
        "-o",
        out.to_str().unwrap(),
        "--tile-format",
        "webp",
        site.to_str().unwrap(),
    ]);
    assert_eq!(code, 64, "{log}");
    assert!(log.contains("tile-format"), "{log}");
    assert!(!out.exists());
    // MLT layers need names.
    let (code, log) = run(&[
        "-o",
        out.to_str().unwrap(),
        "--tile-format",
        "mlt",
        "-l",
        "",
        site.to_str().unwrap(),
    ]);
    assert_eq!(code, 64, "{log}");
    assert!(log.contains("MLT layer needs a name"), "{log}");
    assert!(!out.exists());
}
