//! `--profile-tiles cloudtak`: the PMTiles output is what CloudTAK's worker makes with its
//! tippecanoe command (`../shared/cloudtak-contract.md`, "Transform"): one layer `out` holding
//! every input layer's features, z0–14, described "Automatically Converted by @tak-ps/etl". The
//! default profile keeps a layer per input layer.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::collections::BTreeSet;
use std::io::{Cursor, Read};
use std::path::Path;

use etl_tiles::archive::Archive;
use etl_tiles::mvt::{PropValue, decode_tile};
use etl_tiles::tile::tile_coord;
use support::{check_outputs, output_path, repo, run};

/// Per stored tile: its zoom, its layer names, and per feature its `name` and `layer` values.
fn tile_layers(path: &Path) -> Vec<(u8, Vec<String>, Vec<String>)> {
    let bytes = std::fs::read(path).unwrap();
    let mut a = Archive::open(Cursor::new(&bytes)).unwrap();
    let entries: Vec<_> = a.entries().map(Result::unwrap).collect();
    entries
        .iter()
        .map(|e| {
            let mut raw = Vec::new();
            flate2::read::GzDecoder::new(&a.read_tile(e).unwrap()[..])
                .read_to_end(&mut raw)
                .unwrap();
            let layers = decode_tile(&raw).unwrap();
            let names = layers.iter().map(|l| l.name.clone()).collect();
            let features = layers
                .iter()
                .flat_map(|l| &l.features)
                .map(|f| {
                    let text = |key: &str| {
                        f.props
                            .iter()
                            .find(|(k, _)| k == key)
                            .map_or_else(String::new, |(_, v)| match v {
                                PropValue::String(s) => s.clone(),
                                other => format!("{other:?}"),
                            })
                    };
                    format!("{}|{}", text("name"), text("layer"))
                })
                .collect();
            (tile_coord(e.tile_id).unwrap().z, names, features)
        })
        .collect()
}

fn header_and_metadata(path: &Path) -> ((u8, u8), serde_json::Value) {
    let f = std::fs::File::open(path).unwrap();
    let a = Archive::open(std::io::BufReader::new(f)).unwrap();
    (
        (a.header().min_zoom, a.header().max_zoom),
        a.metadata().clone(),
    )
}

fn layer_ids(metadata: &serde_json::Value) -> Vec<String> {
    let mut ids: Vec<String> = metadata["vector_layers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| l["id"].as_str().unwrap().to_owned())
        .collect();
    ids.sort();
    ids
}

#[test]
fn cloudtak_profile_puts_every_layer_in_out_at_z0_to_14() {
    // Waypoints, a route and tracks: three layers in the GPX.
    let input = repo("fixtures/formats/gpx/gpx11_all.gpx");
    let tmp = tempfile::tempdir().unwrap();

    let ours = tmp.path().join("etl");
    let r = run(&[
        "--input",
        input.to_str().unwrap(),
        "--output",
        ours.to_str().unwrap(),
        "--maximum-zoom",
        "12",
    ]);
    r.assert_code(0);
    let before = check_outputs(&ours, "gpx11_all");
    assert!(before["source"].get("tiles").is_none(), "{before}");
    let (_, m) = header_and_metadata(&output_path(&ours, "gpx11_all", "pmtiles"));
    assert_eq!(layer_ids(&m).len(), 3, "the default profile: a layer each");
    // The same upload under the other profile is imported again, not found unchanged.
    let r = run(&[
        "--input",
        input.to_str().unwrap(),
        "--output",
        ours.to_str().unwrap(),
        "--profile-tiles",
        "cloudtak",
    ]);
    r.assert_code(0);
    let after = check_outputs(&ours, "gpx11_all");
    assert_eq!(after["source"]["tiles"], "cloudtak", "{after}");
    assert_ne!(after["version"], before["version"], "re-imported");
    let (_, m) = header_and_metadata(&output_path(&ours, "gpx11_all", "pmtiles"));
    assert_eq!(layer_ids(&m), ["out"]);

    let cloudtak = tmp.path().join("cloudtak");
    let r = run(&[
        "--input",
        input.to_str().unwrap(),
        "--output",
        cloudtak.to_str().unwrap(),
        "--profile-tiles",
        "cloudtak",
    ]);
    r.assert_code(0);
    check_outputs(&cloudtak, "gpx11_all");
    let archive = output_path(&cloudtak, "gpx11_all", "pmtiles");
    let (zooms, m) = header_and_metadata(&archive);
    assert_eq!(zooms, (0, 14));
    assert_eq!(layer_ids(&m), ["out"]);
    assert_eq!(m["description"], "Automatically Converted by @tak-ps/etl");
    assert_eq!(m["name"], "gpx11_all");

    let tiles = tile_layers(&archive);
    let stored: BTreeSet<u8> = tiles.iter().map(|(z, _, _)| *z).collect();
    assert_eq!(stored, (0..=14).collect(), "a tile at every zoom");
    let mut deepest = BTreeSet::new();
    for (z, layers, names) in &tiles {
        assert_eq!(layers, &["out"], "z{z}");
        if *z == 14 {
            deepest.extend(names.iter().cloned());
        }
    }
    // The named waypoint, the route and both tracks, from three input layers, in one layer,
    // each with its input layer in `layer` (as in the GeoJSON sequence).
    let in_layer = |name: &str| {
        deepest
            .iter()
            .find_map(|t| t.strip_prefix(&format!("{name}|")))
            .unwrap_or_else(|| panic!("{name} at z14: {deepest:?}"))
            .to_owned()
    };
    let layers: BTreeSet<String> = ["Paris & co", "Route one", "Run", "Single segment"]
        .iter()
        .map(|n| in_layer(n))
        .collect();
    assert_eq!(layers.len(), 3, "three input layers named: {layers:?}");
    assert!(!layers.contains(""), "{layers:?}");
}

#[test]
fn cloudtak_profile_refuses_other_zooms() {
    let input = repo("fixtures/formats/gpx/gpx11_all.gpx");
    let tmp = tempfile::tempdir().unwrap();
    for zoom in [["--maximum-zoom", "10"], ["--minimum-zoom", "2"]] {
        let r = run(&[
            "--input",
            input.to_str().unwrap(),
            "--output",
            tmp.path().to_str().unwrap(),
            "--profile-tiles",
            "cloudtak",
            zoom[0],
            zoom[1],
        ]);
        r.assert_code(64);
        assert!(r.error().contains("z0-14"), "{}", r.error());
        assert!(support::files_in(tmp.path()).is_empty());
    }
}
