//! CloudTAK's tippecanoe command line (`../shared/cloudtak-contract.md`, "Transform": `-l out -f
//! --no-feature-limit --no-tile-size-limit --maximum-zoom 14 --minimum-zoom 0 --base-zoom 6 -n
//! NAME -N "Automatically Converted by @tak-ps/etl" --quiet`) run by etl-pmtiles with an input
//! file: one layer `out` at z0–14 with the name and description CloudTAK sets, and the two
//! no-limit flags overriding `-M` and `-O`.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeSet;
use std::path::Path;

use etl_tiles::archive::Archive;
use etl_tiles::mvt::{DecodedLayer, PropValue};

mod support;
use support::{crowd, fixture, run, stored_tiles};

const DESCRIPTION: &str = "Automatically Converted by @tak-ps/etl";

/// Every stored tile as (zoom, decoded layers).
fn tiles(path: &Path) -> Vec<(u8, Vec<DecodedLayer>)> {
    stored_tiles(path)
        .into_iter()
        .map(|(c, layers)| (c.z, layers))
        .collect()
}

fn cloudtak_args<'a>(out: &'a str, name: &'a str) -> Vec<&'a str> {
    vec![
        "-o",
        out,
        "-l",
        "out",
        "-f",
        "--no-feature-limit",
        "--no-tile-size-limit",
        "--maximum-zoom",
        "14",
        "--minimum-zoom",
        "0",
        "--base-zoom",
        "6",
        "-n",
        name,
        "-N",
        DESCRIPTION,
        "--quiet",
    ]
}

#[test]
fn cloudtaks_command_line_gives_one_layer_out_at_z0_to_14() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("upload.pmtiles");
    let mut args = cloudtak_args(out.to_str().unwrap(), "upload.geojson");
    let inputs = [
        fixture("sites.geojson"),
        fixture("tracks.geojsonl"),
        fixture("observations.csv"),
    ];
    args.extend(inputs.iter().map(String::as_str));
    let (code, log) = run(&args);
    assert_eq!(code, 0, "{log}");

    let f = std::fs::File::open(&out).unwrap();
    let a = Archive::open(std::io::BufReader::new(f)).unwrap();
    assert_eq!((a.header().min_zoom, a.header().max_zoom), (0, 14));
    let m = a.metadata().clone();
    assert_eq!(m["name"], "upload.geojson");
    assert_eq!(m["description"], DESCRIPTION);
    let ids: Vec<&str> = m["vector_layers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| l["id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, ["out"]);

    let tiles = tiles(&out);
    let zooms: BTreeSet<u8> = tiles.iter().map(|(z, _)| *z).collect();
    assert_eq!(zooms, (0..=14).collect(), "a tile at every zoom");
    let mut deepest = BTreeSet::new();
    for (z, layers) in &tiles {
        let names: Vec<&str> = layers.iter().map(|l| l.name.as_str()).collect();
        assert_eq!(names, ["out"], "z{z}");
        if *z == 14 {
            for f in &layers[0].features {
                let tag = f
                    .props
                    .iter()
                    .find(|(k, _)| k == "name" || k == "callsign")
                    .map(|(_, v)| match v {
                        PropValue::String(s) => s.clone(),
                        other => format!("{other:?}"),
                    })
                    .unwrap_or_else(|| panic!("a feature with no name or callsign: {f:?}"));
                deepest.insert(tag);
            }
        }
    }
    // The 12 features of the three files (5 sites, 4 tracks, 3 observations), each with a
    // distinct name or callsign, are all in the one layer at z14.
    assert_eq!(deepest.len(), 12, "{deepest:?}");
}

#[test]
fn no_limit_flags_override_the_byte_and_feature_limits() {
    let dir = tempfile::tempdir().unwrap();
    let input = crowd(dir.path());
    let out = dir.path().join("o.pmtiles");
    let (o, i) = (out.to_str().unwrap(), input.to_str().unwrap());
    for (limit, off) in [
        (["-M", "1000"], "--no-tile-size-limit"),
        (["-O", "100"], "--no-feature-limit"),
    ] {
        let (code, log) = run(&["-o", o, "-f", "-z3", "-r1", limit[0], limit[1], i]);
        assert_eq!(code, 65, "{limit:?} alone fails: {log}");
        assert!(!out.exists());
        let (code, log) = run(&["-o", o, "-f", "-z3", "-r1", limit[0], limit[1], off, i]);
        assert_eq!(code, 0, "{limit:?} {off}: {log}");
        let z0: usize = tiles(&out)
            .iter()
            .filter(|(z, _)| *z == 0)
            .map(|(_, l)| l[0].features.len())
            .sum();
        assert_eq!(z0, 3000, "{off}: every point at z0, nothing dropped");
        std::fs::remove_file(&out).unwrap();
    }
    // A zero limit is refused only while it is in force.
    for (limit, off) in [("-M", "--no-tile-size-limit"), ("-O", "--no-feature-limit")] {
        let (code, log) = run(&["-o", o, "-f", "-z1", limit, "0", i]);
        assert_eq!(code, 64, "{limit} 0: {log}");
        let (code, log) = run(&["-o", o, "-f", "-z1", limit, "0", off, i]);
        assert_eq!(code, 0, "{limit} 0 {off}: {log}");
    }
}

/// CloudTAK pipes its GeoJSON into tippecanoe: with no input named, etl-pmtiles reads stdin,
/// as one layer named by `-l`, and leaves no spooled copy behind. Empty stdin with nothing
/// named is a usage error.
#[test]
fn stdin_is_read_when_no_input_is_named() {
    use std::io::Write as _;
    use std::process::Stdio;
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("piped.pmtiles");
    let spool = dir.path().join("tmp");
    std::fs::create_dir(&spool).unwrap();
    let mut args = cloudtak_args(out.to_str().unwrap(), "piped.geojson");
    args.extend(["-t", spool.to_str().unwrap()]);
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_etl-pmtiles"))
        .args(&args)
        .env("LOG_FORMAT", "json")
        .env_remove("ETL_INPUT")
        .env_remove("ETL_OUTPUT")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let text = std::fs::read(fixture("tracks.geojsonl")).unwrap();
    child.stdin.take().unwrap().write_all(&text).unwrap();
    let done = child.wait_with_output().unwrap();
    assert!(
        done.status.success(),
        "{}",
        String::from_utf8_lossy(&done.stderr)
    );
    let m = Archive::open(std::io::BufReader::new(std::fs::File::open(&out).unwrap()))
        .unwrap()
        .metadata()
        .clone();
    assert_eq!(m["vector_layers"][0]["id"], "out");
    let callsigns: BTreeSet<String> = tiles(&out)
        .iter()
        .filter(|(z, _)| *z == 14)
        .flat_map(|(_, l)| &l[0].features)
        .filter_map(|f| {
            f.props.iter().find_map(|(k, v)| match v {
                PropValue::String(s) if k == "callsign" => Some(s.clone()),
                _ => None,
            })
        })
        .collect();
    assert_eq!(
        callsigns.len(),
        4,
        "the four units of the piped file: {callsigns:?}"
    );
    assert_eq!(
        std::fs::read_dir(&spool).unwrap().count(),
        0,
        "the spooled copy is removed"
    );

    // A dry run says it would read stdin, into which layer, and reads nothing.
    std::fs::remove_file(&out).unwrap();
    let (code, log) = run(&["-o", out.to_str().unwrap(), "-l", "out", "--dry-run"]);
    assert_eq!(code, 0, "{log}");
    let plan: serde_json::Value = log
        .lines()
        .find_map(|l| {
            serde_json::from_str::<serde_json::Value>(l)
                .ok()?
                .get("dry_run")
                .cloned()
        })
        .unwrap_or_else(|| panic!("no plan in {log}"));
    assert_eq!(plan["stdin"], true, "{plan}");
    assert_eq!(plan["layers"], serde_json::json!(["out"]), "{plan}");
    assert!(!out.exists());

    // Nothing named, nothing piped: exit 64, no archive.
    let (code, log) = run(&["-o", out.to_str().unwrap()]);
    assert_eq!(code, 64, "{log}");
    assert!(log.contains("stdin was empty"), "{log}");
    assert!(!out.exists());
}
