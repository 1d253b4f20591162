//! Natural Earth's 110m countries (179 polygons, shared/peer-fixtures) as a new user brings them:
//! the Shapefile straight in, default flags. Country interiors are millions of tiles; they must
//! cost runs of one stored tile, not one tile each, and `-zg` must pick a zoom a map can use.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::{Path, PathBuf};

use serde_json::Value;

mod support;
use support::etl_pmtiles;

/// `shared/peer-fixtures/flatgeobuf/countries.shp` beside the repository. Read-only and present
/// locally and in CI: a missing one fails the test, it never skips it.
fn countries() -> PathBuf {
    let p = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../../shared/peer-fixtures/flatgeobuf/countries.shp");
    assert!(
        p.is_file(),
        "peer fixture missing: {} (expected shared/peer-fixtures beside the repository)",
        p.display()
    );
    p
}

fn show(p: &Path) -> Value {
    let (code, stdout, stderr) = etl_pmtiles(&["show", p.to_str().unwrap()]);
    assert_eq!(code, 0, "{stderr}");
    serde_json::from_str(&stdout).unwrap()
}

/// The `archive written` log record.
fn written(stdout: &str, stderr: &str) -> Value {
    stdout
        .lines()
        .chain(stderr.lines())
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .find(|v| v["message"] == "archive written")
        .unwrap_or_else(|| {
            panic!("no 'archive written' record\n--- stderr\n{stderr}\n--- stdout\n{stdout}")
        })
}

#[test]
fn country_interiors_are_runs_not_tiles() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("countries.pmtiles");
    let input = countries();
    let (code, stdout, stderr) =
        etl_pmtiles(&["-o", out.to_str().unwrap(), "-z11", input.to_str().unwrap()]);
    assert_eq!(code, 0, "{stdout}\n{stderr}");
    let (code, _, verify_err) = etl_pmtiles(&["verify", out.to_str().unwrap()]);
    assert_eq!(code, 0, "{verify_err}");
    let v = show(&out);
    let tiles = v["tiles"].as_u64().unwrap();
    let entries = v["tile_entries"].as_u64().unwrap();
    let bytes = std::fs::metadata(&out).unwrap().len();
    // About 2.1 million tiles (countries cover a third of the Mercator world), made from a
    // tenth as many fragments and addressed by a tenth as many entries.
    assert!(tiles > 2_000_000, "{tiles} tiles");
    assert!(entries * 10 < tiles, "{entries} entries for {tiles} tiles");
    let w = written(&stdout, &stderr);
    let fragments = w["fragments"].as_u64().unwrap();
    assert!(
        fragments * 5 < tiles,
        "{fragments} fragments for {tiles} tiles"
    );
    assert!(bytes < 20 << 20, "{bytes} bytes");
    // Every zoom is there, each with the interiors of the largest countries.
    let per_zoom = v["tiles_per_zoom"].as_object().unwrap();
    assert_eq!(per_zoom.len(), 12, "{per_zoom:?}");
    assert!(per_zoom["11"].as_u64().unwrap() > 1_500_000, "{per_zoom:?}");
}

#[test]
fn guessed_zoom_for_countries_is_raised_to_their_size() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("countries.pmtiles");
    let input = countries();
    let (code, stdout, stderr) =
        etl_pmtiles(&["-o", out.to_str().unwrap(), "-zg", input.to_str().unwrap()]);
    assert_eq!(code, 0, "{stdout}\n{stderr}");
    // tippecanoe 2.72 says z0 for these (spacing and detail); the size floor gives z4.
    assert!(stderr.contains("Choosing a maxzoom of -z0"), "{stderr}");
    assert!(stderr.contains("Raising maxzoom to -z4"), "{stderr}");
    assert_eq!(show(&out)["header"]["max_zoom"], 4);
}

/// Every feature's `name` in every tile, with the tile's zoom.
fn names_by_zoom(p: &Path) -> std::collections::BTreeSet<(u8, String)> {
    use etl_tiles::archive::Archive;
    use std::io::Read;
    let bytes = std::fs::read(p).unwrap();
    let mut a = Archive::open(std::io::Cursor::new(&bytes)).unwrap();
    let entries: Vec<_> = a.entries().map(Result::unwrap).collect();
    let mut out = std::collections::BTreeSet::new();
    for e in entries {
        let mut raw = Vec::new();
        flate2::read::GzDecoder::new(&a.read_tile(&e).unwrap()[..])
            .read_to_end(&mut raw)
            .unwrap();
        let z = etl_tiles::tile::tile_coord(e.tile_id).unwrap().z;
        for layer in etl_tiles::mvt::decode_tile(&raw).unwrap() {
            for f in layer.features {
                for (k, v) in f.props {
                    if k == "name" {
                        out.insert((z, format!("{v:?}")));
                    }
                }
            }
        }
    }
    out
}

#[test]
fn a_feature_filter_keeps_the_countries_it_names_at_the_zooms_it_names() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("some.pmtiles");
    let input = countries();
    // Chile and Peru everywhere; Brazil from z2 on; nothing else.
    let filter = r#"{"*": ["any", ["in", "name", "Chile", "Peru"],
                                  ["all", ["==", "name", "Brazil"], [">=", "$zoom", 2]]]}"#;
    let (code, stdout, stderr) = etl_pmtiles(&[
        "-o",
        out.to_str().unwrap(),
        "-z3",
        "-j",
        filter,
        input.to_str().unwrap(),
    ]);
    assert_eq!(code, 0, "{stdout}\n{stderr}");
    assert_eq!(written(&stdout, &stderr)["filtered"], 176, "{stderr}");
    let names = names_by_zoom(&out);
    let at = |z: u8| -> Vec<String> {
        names
            .iter()
            .filter(|(nz, _)| *nz == z)
            .map(|(_, n)| n.clone())
            .collect()
    };
    for z in 0..=3u8 {
        let n = at(z);
        assert!(n.iter().any(|s| s.contains("Chile")), "z{z}: {n:?}");
        assert!(n.iter().any(|s| s.contains("Peru")), "z{z}: {n:?}");
        assert_eq!(
            n.iter().any(|s| s.contains("Brazil")),
            z >= 2,
            "z{z}: {n:?}"
        );
        assert!(n.len() <= 3, "z{z}: {n:?}");
    }
    // A filter that is not one is a usage error naming the flag, before any work.
    let (code, _, stderr) = etl_pmtiles(&[
        "-o",
        dir.path().join("bad.pmtiles").to_str().unwrap(),
        "-j",
        r#"{"*": ["~", "name", 1]}"#,
        input.to_str().unwrap(),
    ]);
    assert_eq!(code, 64, "{stderr}");
    assert!(
        stderr.contains("-j: feature filter for layer") && stderr.contains("unknown operator"),
        "{stderr}"
    );
    assert!(!dir.path().join("bad.pmtiles").exists());
}

#[test]
fn extract_cuts_new_zealand_out_of_the_world() {
    let dir = tempfile::tempdir().unwrap();
    let world = dir.path().join("world.pmtiles");
    let nz = dir.path().join("nz.pmtiles");
    let input = countries();
    let (code, _, stderr) = etl_pmtiles(&[
        "-o",
        world.to_str().unwrap(),
        "-z7",
        input.to_str().unwrap(),
    ]);
    assert_eq!(code, 0, "{stderr}");
    let (code, stdout, stderr) = etl_pmtiles(&[
        "extract",
        world.to_str().unwrap(),
        nz.to_str().unwrap(),
        "--bbox",
        "165.5,-47.5,179,-34",
        "--minzoom",
        "3",
    ]);
    assert_eq!(code, 0, "{stdout}\n{stderr}");
    let (code, _, stderr) = etl_pmtiles(&["verify", nz.to_str().unwrap()]);
    assert_eq!(code, 0, "{stderr}");
    let names = names_by_zoom(&nz);
    assert!(
        names
            .iter()
            .any(|(z, n)| *z == 7 && n.contains("New Zealand")),
        "{names:?}"
    );
    assert!(
        !names
            .iter()
            .any(|(z, n)| *z == 7 && n.contains("Australia")),
        "{names:?}"
    );
    assert!(names.iter().all(|(z, _)| (3..=7).contains(z)));
    // An existing OUT needs -f; a bad box is a usage error; neither touches OUT.
    let before = std::fs::read(&nz).unwrap();
    let (code, _, _) = etl_pmtiles(&[
        "extract",
        world.to_str().unwrap(),
        nz.to_str().unwrap(),
        "--bbox",
        "0,0,1,1",
    ]);
    assert_eq!(code, 64);
    let (code, _, stderr) = etl_pmtiles(&[
        "extract",
        world.to_str().unwrap(),
        nz.to_str().unwrap(),
        "-f",
        "--bbox",
        "179,-47,166,-34",
    ]);
    assert_eq!(code, 64, "{stderr}");
    assert!(stderr.contains("west < east"), "{stderr}");
    assert_eq!(std::fs::read(&nz).unwrap(), before);
    // A missing input is 66.
    let (code, _, _) = etl_pmtiles(&[
        "extract",
        dir.path().join("nope.pmtiles").to_str().unwrap(),
        dir.path().join("x.pmtiles").to_str().unwrap(),
        "--bbox",
        "0,0,1,1",
    ]);
    assert_eq!(code, 66);
}
