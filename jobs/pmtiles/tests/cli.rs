//! The whole etl-pmtiles binary: the README run on the fixtures, overwrite rules, bad input
//! (exit codes, `file:line`, --skip-invalid), the archive tools (verify catching corruptions,
//! show, merge of zoom-range parts), schema drift, and outputs that are whole or absent.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeMap;
use std::io::{Cursor, Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use etl_tiles::archive::{Archive, HEADER_LEN};
use etl_tiles::geom::TileGeom;
use etl_tiles::mvt::{DecodedLayer, PropValue, decode_tile};
use etl_tiles::tile::{TileCoord, tile_coord};
use serde_json::Value;

mod support;

fn repo(rel: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../..")
        .join(rel)
}

fn fixtures() -> String {
    repo("fixtures/data").to_str().unwrap().to_owned()
}

fn fixture(name: &str) -> String {
    repo("fixtures/data")
        .join(name)
        .to_str()
        .unwrap()
        .to_owned()
}

fn etl_pmtiles() -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_etl-pmtiles"));
    cmd.env("LOG_FORMAT", "json")
        .env("RUST_LOG", "info")
        .env_remove("ETL_CHECKPOINT")
        .env_remove("ETL_OUTPUT")
        .env_remove("ETL_INPUT")
        .env_remove("AWS_BATCH_JOB_ARRAY_INDEX")
        .env_remove("AWS_BATCH_JOB_ARRAY_SIZE");
    cmd
}

struct Run {
    code: i32,
    stdout: String,
    stderr: String,
    summary: Value,
}

impl Run {
    fn from_output(out: Output) -> Run {
        let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
        let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
        let summary = stdout
            .lines()
            .last()
            .and_then(|l| serde_json::from_str(l).ok())
            .unwrap_or(Value::Null);
        Run {
            code: out.status.code().unwrap_or(-1),
            stdout,
            stderr,
            summary,
        }
    }

    fn count(&self, name: &str) -> u64 {
        self.summary["counts"][name].as_u64().unwrap_or(u64::MAX)
    }

    fn error(&self) -> &str {
        self.summary["error"].as_str().unwrap_or("")
    }

    #[track_caller]
    fn assert_code(&self, code: i32) -> &Run {
        assert_eq!(
            self.code, code,
            "exit code\n--- stdout\n{}\n--- stderr\n{}",
            self.stdout, self.stderr
        );
        self
    }
}

fn run(args: &[&str]) -> Run {
    Run::from_output(
        etl_pmtiles()
            .args(args)
            .output()
            .expect("spawn etl-pmtiles"),
    )
}

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

/// `etl-pmtiles verify FILE`.
fn verify(p: &Path) -> Run {
    run(&["verify", s(p)])
}

fn gunzip(data: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    flate2::read::GzDecoder::new(data)
        .read_to_end(&mut out)
        .unwrap();
    out
}

/// Every addressed tile of an archive file with its gunzipped MVT bytes.
fn raw_tiles(path: &Path) -> BTreeMap<TileCoord, Vec<u8>> {
    let bytes = std::fs::read(path).unwrap();
    let mut a = Archive::open(Cursor::new(&bytes)).unwrap();
    let entries: Vec<_> = a.entries().map(Result::unwrap).collect();
    let mut out = BTreeMap::new();
    for e in entries {
        let data = gunzip(&a.read_tile(&e).unwrap());
        for k in 0..u64::from(e.run_length) {
            out.insert(tile_coord(e.tile_id + k).unwrap(), data.clone());
        }
    }
    out
}

fn tiles(path: &Path) -> BTreeMap<TileCoord, Vec<DecodedLayer>> {
    raw_tiles(path)
        .into_iter()
        .map(|(c, raw)| (c, decode_tile(&raw).unwrap()))
        .collect()
}

fn metadata(path: &Path) -> Value {
    let f = std::fs::File::open(path).unwrap();
    Archive::open(std::io::BufReader::new(f))
        .unwrap()
        .metadata()
        .clone()
}

/// Files in `dir` whose names start with `.etl-pmtiles-` (the temporary archives).
fn temp_files(dir: &Path) -> Vec<String> {
    std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with(".etl-pmtiles-"))
        .collect()
}

#[test]
fn checked_in_schema_matches_the_config() {
    let out = etl_pmtiles().arg("--print-schema").output().unwrap();
    assert!(out.status.success());
    let printed: Value = serde_json::from_slice(&out.stdout).unwrap();
    let path = repo("schemas/etl-pmtiles.json");
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let stored: Value = serde_json::from_str(&text).unwrap();
    assert_eq!(
        printed, stored,
        "schemas/etl-pmtiles.json is out of date: regenerate with `etl-pmtiles --print-schema > schemas/etl-pmtiles.json`"
    );
}

#[test]
fn readme_example_on_the_fixtures_verifies() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("fixtures.pmtiles");
    let r = run(&["-o", s(&out), "-z10", &fixtures()]);
    r.assert_code(0);
    assert_eq!(r.summary["status"], "succeeded");
    // sites.geojson (5) + tracks.geojsonl (4) + observations.csv (3).
    assert_eq!(r.count("read"), 12);
    assert_eq!(r.count("rejected"), 0);
    assert_eq!(r.summary["outputs"][0], s(&out));
    assert_eq!(
        r.summary["bytes"]["out"].as_u64(),
        Some(std::fs::metadata(&out).unwrap().len())
    );
    let v = verify(&out);
    v.assert_code(0);
    assert!(v.stdout.contains("valid"), "{}", v.stdout);
    assert!(v.stdout.contains("z0-z10"), "{}", v.stdout);
    // One layer per input file, named after it.
    let m = metadata(&out);
    let mut names: Vec<&str> = m["vector_layers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| l["id"].as_str().unwrap())
        .collect();
    names.sort_unstable();
    assert_eq!(names, ["observations", "sites", "tracks"]);
    assert_eq!(
        m["name"], "fixtures",
        "default name: the output file's stem"
    );
    assert!(temp_files(dir.path()).is_empty());
}

#[test]
fn named_layers_carry_the_features_ids_and_attributes() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("named.pmtiles");
    let sites = format!("places:{}", fixture("sites.geojson"));
    let tracks = format!("units:{}", fixture("tracks.geojsonl"));
    let r = run(&[
        "-o",
        s(&out),
        "-z10",
        "-L",
        &sites,
        "-L",
        &tracks,
        "-x",
        "tags",
        "-A",
        "test data",
    ]);
    r.assert_code(0);
    verify(&out).assert_code(0);
    let m = metadata(&out);
    assert_eq!(m["attribution"], "test data");
    let layers: BTreeMap<&str, &Value> = m["vector_layers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| (l["id"].as_str().unwrap(), l))
        .collect();
    assert_eq!(
        layers.keys().copied().collect::<Vec<_>>(),
        ["places", "units"]
    );
    let fields = &layers["places"]["fields"];
    assert_eq!(fields["name"], "String");
    assert_eq!(fields["capacity"], "Number");
    assert_eq!(fields["active"], "Boolean");
    assert!(fields.get("tags").is_none(), "-x tags: {fields}");
    assert_eq!(
        layers["units"]["fields"]["meta"], "String",
        "objects as JSON text"
    );

    // At z10 every feature is there: sites keep their integer ids, track ids are strings and
    // are not MVT ids.
    let mut ids = Vec::new();
    let mut unit_names = Vec::new();
    for (c, ls) in tiles(&out).into_iter().filter(|(c, _)| c.z == 10) {
        for l in ls {
            for f in &l.features {
                match l.name.as_str() {
                    "places" => ids.push(f.id.unwrap_or_else(|| panic!("{c}: no id"))),
                    "units" => {
                        assert_eq!(f.id, None, "{c}: string ids are not kept");
                        let cs = f.props.iter().find(|(k, _)| k == "callsign");
                        if let Some((_, PropValue::String(v))) = cs {
                            unit_names.push(v.clone());
                        }
                    }
                    other => panic!("{c}: unexpected layer {other}"),
                }
                if let TileGeom::Polygons(ps) = &f.geom {
                    assert_eq!(ps[0].len(), 2, "{c}: the landing zone keeps its hole");
                }
            }
        }
    }
    ids.sort_unstable();
    ids.dedup();
    assert_eq!(ids, [1, 2, 3, 4, 5]);
    unit_names.sort();
    unit_names.dedup();
    assert_eq!(unit_names.len(), 4, "{unit_names:?}");
}

#[test]
fn existing_output_needs_force() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("o.pmtiles");
    std::fs::write(&out, b"old contents").unwrap();
    let r = run(&["-o", s(&out), "-z5", &fixture("sites.geojson")]);
    r.assert_code(64);
    assert!(r.error().contains("already exists"), "{}", r.error());
    assert_eq!(std::fs::read(&out).unwrap(), b"old contents");
    let r = run(&["-o", s(&out), "-z5", "-f", &fixture("sites.geojson")]);
    r.assert_code(0);
    verify(&out).assert_code(0);
    assert!(temp_files(dir.path()).is_empty());
}

#[test]
fn usage_errors_exit_64() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("o.pmtiles");
    let site = fixture("sites.geojson");
    for args in [
        vec!["-o", s(&out)],
        vec!["-o", s(&out), "-Z", "6", "-z", "5", &site],
        vec!["-o", s(&out), "-z", "25", &site],
        vec![
            "-o",
            s(&out),
            "--drop-densest-as-needed",
            "--coalesce-densest-as-needed",
            &site,
        ],
        vec!["-o", s(&out), "-L", "nocolon", &site],
        vec!["-o", s(&out), "--memory", "lots", &site],
        vec![
            "-o",
            s(&out),
            "--order-smallest-first",
            "--order-largest-first",
            &site,
        ],
    ] {
        run(&args).assert_code(64);
    }
    assert!(!out.exists());
}

#[test]
fn order_flags_order_the_features_of_a_tile() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("o.pmtiles");
    let site = fixture("sites.geojson");
    run(&[
        "-o",
        s(&out),
        "-z2",
        "-r1",
        "--order-descending-by",
        "capacity",
        &site,
    ])
    .assert_code(0);
    let z0 = tiles(&out)
        .remove(&TileCoord::new(0, 0, 0).unwrap())
        .unwrap();
    let capacities: Vec<f64> = z0
        .iter()
        .flat_map(|l| &l.features)
        .filter_map(|f| {
            f.props
                .iter()
                .find(|(k, _)| k == "capacity")
                .map(|(_, v)| match v {
                    PropValue::Int(i) | PropValue::SInt(i) => *i as f64,
                    PropValue::UInt(u) => *u as f64,
                    PropValue::Double(d) => *d,
                    other => panic!("{other:?}"),
                })
        })
        .collect();
    assert!(capacities.len() > 2, "{capacities:?}");
    assert!(
        capacities.windows(2).all(|w| w[0] >= w[1]),
        "{capacities:?}"
    );
}

/// A GeoJSON sequence of `n` features with a broken line 3.
fn with_bad_line(dir: &Path) -> PathBuf {
    let p = dir.join("bad.geojsonl");
    let mut f = std::fs::File::create(&p).unwrap();
    for i in 0..5 {
        if i == 2 {
            writeln!(
                f,
                r#"{{"type":"Feature","properties":{{"i":2}},"geometry":"#
            )
            .unwrap();
        } else {
            writeln!(
                f,
                r#"{{"type":"Feature","id":{i},"properties":{{"i":{i}}},"geometry":{{"type":"Point","coordinates":[{i},{i}.5]}}}}"#
            )
            .unwrap();
        }
    }
    p
}

#[test]
fn invalid_line_is_bad_input_naming_file_and_line() {
    let dir = tempfile::tempdir().unwrap();
    let input = with_bad_line(dir.path());
    let outdir = dir.path().join("out");
    std::fs::create_dir(&outdir).unwrap();
    let out = outdir.join("o.pmtiles");
    let r = run(&["-o", s(&out), "-z5", s(&input)]);
    r.assert_code(65);
    let at = format!("{}:3", s(&input));
    assert!(r.stderr.contains(&at), "stderr names {at}:\n{}", r.stderr);
    assert!(r.error().contains(&at), "{}", r.error());
    // Never half-written: no output and no temporary archive left behind.
    assert!(!out.exists());
    assert_eq!(temp_files(&outdir), Vec::<String>::new());

    let r = run(&["-o", s(&out), "-z5", "--skip-invalid", s(&input)]);
    r.assert_code(0);
    assert_eq!(r.count("rejected"), 1);
    verify(&out).assert_code(0);
    let mut ids: Vec<u64> = tiles(&out)
        .into_iter()
        .filter(|(c, _)| c.z == 5)
        .flat_map(|(_, ls)| ls.into_iter().flat_map(|l| l.features))
        .map(|f| f.id.unwrap())
        .collect();
    ids.sort_unstable();
    assert_eq!(ids, [0, 1, 3, 4]);
}

#[test]
fn empty_input_is_no_features() {
    let dir = tempfile::tempdir().unwrap();
    let empty = dir.path().join("empty.geojsonl");
    std::fs::write(&empty, b"").unwrap();
    let out = dir.path().join("o.pmtiles");
    let r = run(&["-o", s(&out), "-z5", s(&empty)]);
    r.assert_code(65);
    assert!(r.error().contains("no features"), "{}", r.error());
    assert!(!out.exists());
    // Features without geometry only: no features to tile either.
    let nogeom = dir.path().join("nogeom.geojsonl");
    std::fs::write(
        &nogeom,
        b"{\"type\":\"Feature\",\"properties\":{\"a\":1},\"geometry\":null}\n",
    )
    .unwrap();
    let r = run(&["-o", s(&out), "-z5", s(&nogeom)]);
    r.assert_code(65);
    assert!(r.error().contains("no features"), "{}", r.error());
    assert!(!out.exists());
    assert!(temp_files(dir.path()).is_empty());
}

#[test]
fn failing_tile_limit_leaves_nothing_behind() {
    let dir = tempfile::tempdir().unwrap();
    let input = support::crowd(dir.path());
    let outdir = dir.path().join("out");
    let out = outdir.join("o.pmtiles");
    let r = run(&["-o", s(&out), "-z3", "-r1", "-M", "5000", s(&input)]);
    r.assert_code(65);
    assert!(r.error().contains("z0/0/0"), "{}", r.error());
    assert!(!out.exists());
    assert_eq!(temp_files(&outdir), Vec::<String>::new());
    // With a strategy it goes through and every tile is under the limit.
    let r = run(&[
        "-o",
        s(&out),
        "-z3",
        "-r1",
        "-M",
        "5000",
        "--drop-densest-as-needed",
        s(&input),
    ]);
    r.assert_code(0);
    let bytes = std::fs::read(&out).unwrap();
    let mut a = Archive::open(Cursor::new(&bytes)).unwrap();
    for e in a.entries() {
        let e = e.unwrap();
        assert!(e.length <= 5000, "tile {}: {} bytes", e.tile_id, e.length);
    }
}

/// A valid archive of the fixtures, and its bytes.
fn good_archive(dir: &Path) -> (PathBuf, Vec<u8>) {
    let out = dir.join("good.pmtiles");
    run(&["-o", s(&out), "-z8", &fixtures()]).assert_code(0);
    let bytes = std::fs::read(&out).unwrap();
    (out, bytes)
}

#[test]
fn verify_catches_corruptions() {
    let dir = tempfile::tempdir().unwrap();
    let (good, bytes) = good_archive(dir.path());
    verify(&good).assert_code(0);

    let corrupt = |name: &str, data: &[u8]| -> Run {
        let p = dir.path().join(name);
        std::fs::write(&p, data).unwrap();
        verify(&p)
    };
    // Truncated: the tail (metadata or tile data) is missing.
    let r = corrupt("truncated.pmtiles", &bytes[..bytes.len() - 100]);
    r.assert_code(65);
    assert!(r.stderr.contains("truncated.pmtiles"), "{}", r.stderr);
    // Cut inside the header.
    corrupt("stub.pmtiles", &bytes[..60]).assert_code(65);
    // A flipped byte in the magic "PMTiles".
    let mut b = bytes.clone();
    b[1] ^= 0x20;
    let r = corrupt("magic.pmtiles", &b);
    r.assert_code(65);
    assert!(r.stderr.contains("magic.pmtiles"), "{}", r.stderr);
    // Root directory offset (header bytes 8..16) pointing past the end of the file.
    let mut b = bytes.clone();
    let past = (bytes.len() as u64 + 10).to_le_bytes();
    b[8..16].copy_from_slice(&past);
    corrupt("root-past-end.pmtiles", &b).assert_code(65);
    // Root directory offset moved one byte on: gzip garbage instead of the directory.
    let mut b = bytes.clone();
    let root = u64::from_le_bytes(b[8..16].try_into().unwrap());
    assert_eq!(root, HEADER_LEN as u64);
    b[8..16].copy_from_slice(&(root + 1).to_le_bytes());
    corrupt("root-shifted.pmtiles", &b).assert_code(65);
    // Not a file at all: 66 (EX_NOINPUT), distinct from an invalid archive.
    verify(&dir.path().join("missing.pmtiles")).assert_code(66);
    // The good file is still good (nothing above touched it).
    verify(&good).assert_code(0);
}

#[test]
fn show_prints_json_with_tiles_per_zoom() {
    let dir = tempfile::tempdir().unwrap();
    let (good, _) = good_archive(dir.path());
    let r = run(&["show", s(&good)]);
    r.assert_code(0);
    let v: Value = serde_json::from_str(&r.stdout).unwrap();
    let per_zoom = v["tiles_per_zoom"].as_object().unwrap();
    let zooms: Vec<u8> = per_zoom.keys().map(|k| k.parse().unwrap()).collect();
    assert_eq!(zooms, (0..=8).collect::<Vec<u8>>());
    let total: u64 = per_zoom.values().map(|n| n.as_u64().unwrap()).sum();
    assert_eq!(Some(total), v["header"]["addressed_tiles"].as_u64());
    assert_eq!(Some(total), v["tiles"].as_u64());
    assert_eq!(total as usize, raw_tiles(&good).len());
    assert_eq!(v["header"]["tile_type"], "mvt");
    assert_eq!(v["header"]["tile_compression"], "gzip");
    assert_eq!(v["header"]["max_zoom"], 8);
    assert!(v["largest_tile"]["bytes"].as_u64().unwrap() > 0);
    assert_eq!(v["metadata"]["name"], "good");
    let r = run(&["show", s(&dir.path().join("nope.pmtiles"))]);
    r.assert_code(66);
}

#[test]
fn a_result_that_cannot_be_written_is_not_a_success() {
    // `show > /dev/full`: the JSON is lost, so the exit code must not say it was printed.
    let dir = tempfile::tempdir().unwrap();
    let (good, _) = good_archive(dir.path());
    let full = std::fs::OpenOptions::new()
        .write(true)
        .open("/dev/full")
        .unwrap();
    let out = etl_pmtiles()
        .args(["show", s(&good)])
        .stdout(full)
        .output()
        .unwrap();
    assert_eq!(
        out.status.code(),
        Some(74),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stderr).contains("writing to stdout"));
}

/// Points, lines and polygons spread over a few degrees: many tiles by z6.
fn spread_input(dir: &Path) -> PathBuf {
    let p = dir.join("spread.geojsonl");
    let mut f = std::fs::File::create(&p).unwrap();
    for i in 0..600u32 {
        let x = -110.0 + f64::from(i % 30) * 0.37;
        let y = 30.0 + f64::from(i / 30) * 0.41;
        let geom = match i % 5 {
            0 => format!(
                r#"{{"type":"LineString","coordinates":[[{x},{y}],[{},{}],[{},{y}]]}}"#,
                x + 0.3,
                y + 0.2,
                x + 0.6
            ),
            1 => format!(
                r#"{{"type":"Polygon","coordinates":[[[{x},{y}],[{},{y}],[{},{}],[{x},{}],[{x},{y}]]]}}"#,
                x + 0.25,
                x + 0.25,
                y + 0.25,
                y + 0.25
            ),
            _ => format!(r#"{{"type":"Point","coordinates":[{x},{y}]}}"#),
        };
        writeln!(
            f,
            r#"{{"type":"Feature","id":{i},"properties":{{"k":{},"name":"f{i}"}},"geometry":{geom}}}"#,
            i % 7
        )
        .unwrap();
    }
    // Detailed shapes, so that simplification has work at every zoom: wavy lines of 3000
    // vertices and wobbly rings of 2000.
    for k in 0..6u32 {
        let y0 = 30.5 + f64::from(k) * 0.9;
        let line: Vec<String> = (0..3000)
            .map(|i| {
                let i = f64::from(i);
                format!("[{},{}]", -110.0 + i * 0.003, y0 + 0.2 * (i * 0.07).sin())
            })
            .collect();
        let mut ring: Vec<String> = (0..2000)
            .map(|t| {
                let a = f64::from(t) * std::f64::consts::TAU / 2000.0;
                let r = 1.0 + 0.1 * (f64::from(t) * 0.3).sin();
                format!(
                    "[{},{}]",
                    -104.0 + 0.5 * r * a.cos(),
                    y0 + 0.3 * r * a.sin()
                )
            })
            .collect();
        ring.push(ring[0].clone());
        writeln!(
            f,
            r#"{{"type":"Feature","id":{},"properties":{{}},"geometry":{{"type":"LineString","coordinates":[{}]}}}}"#,
            1000 + k,
            line.join(",")
        )
        .unwrap();
        writeln!(
            f,
            r#"{{"type":"Feature","id":{},"properties":{{}},"geometry":{{"type":"Polygon","coordinates":[[{}]]}}}}"#,
            2000 + k,
            ring.join(",")
        )
        .unwrap();
    }
    p
}

#[test]
fn merge_of_zoom_range_parts_equals_one_run() {
    let dir = tempfile::tempdir().unwrap();
    let input = spread_input(dir.path());
    let part = |name: &str, zooms: &[&str]| {
        let out = dir.path().join(name);
        let mut args = vec!["-o", s(&out), "-B6", "-n", "spread"];
        args.extend_from_slice(zooms);
        args.push(s(&input));
        run(&args).assert_code(0);
        out
    };
    let low = part("low.pmtiles", &["-Z0", "-z3"]);
    let high = part("high.pmtiles", &["-Z4", "-z6"]);
    let whole = part("whole.pmtiles", &["-Z0", "-z6"]);

    let merged = dir.path().join("merged.pmtiles");
    // The runner's --dry-run reaches the tool: the plan is printed, nothing is written.
    let r = run(&["merge", s(&merged), s(&low), s(&high), "--dry-run"]);
    r.assert_code(0);
    assert!(r.stdout.contains("\"dry_run\""), "{}", r.stdout);
    assert!(!merged.exists());
    let r = run(&["merge", s(&merged), s(&low), s(&high)]);
    r.assert_code(0);
    assert!(r.stdout.contains("merged 2 parts"), "{}", r.stdout);
    verify(&merged).assert_code(0);

    let (m, w) = (raw_tiles(&merged), raw_tiles(&whole));
    assert!(w.len() > 12, "{} tiles", w.len());
    assert_eq!(
        m.keys().collect::<Vec<_>>(),
        w.keys().collect::<Vec<_>>(),
        "same tiles"
    );
    for (c, data) in &w {
        assert!(
            m[c] == *data,
            "{c}: merged tile differs from the single run's"
        );
    }
    // The detailed shapes are there, simplified less at z6 than at z3.
    let most_vertices = |z: u8| {
        tiles(&merged)
            .into_iter()
            .filter(|(c, _)| c.z == z)
            .flat_map(|(_, ls)| ls.into_iter().flat_map(|l| l.features))
            .filter_map(|f| match f.geom {
                TileGeom::Lines(ls) => ls.iter().map(Vec::len).max(),
                _ => None,
            })
            .max()
            .unwrap_or(0)
    };
    let (at3, at6) = (most_vertices(3), most_vertices(6));
    assert!(at6 >= 100 && at6 > at3, "z3: {at3} vertices, z6: {at6}");
    let meta = metadata(&merged);
    let vl = &meta["vector_layers"][0];
    assert_eq!(
        (vl["minzoom"].as_u64(), vl["maxzoom"].as_u64()),
        (Some(0), Some(6))
    );

    // Overlapping parts (z3 in both) are refused, and leave nothing behind.
    let overlap = part("overlap.pmtiles", &["-Z3", "-z4"]);
    let bad = dir.path().join("bad-merge.pmtiles");
    let r = run(&["merge", s(&bad), s(&low), s(&overlap)]);
    r.assert_code(65);
    assert!(r.stderr.contains("not disjoint"), "{}", r.stderr);
    assert!(!bad.exists());
    assert!(temp_files(dir.path()).is_empty());
    // An existing merge output needs -f.
    let r = run(&["merge", s(&merged), s(&low), s(&high)]);
    r.assert_code(64);
    run(&["merge", "-f", s(&merged), s(&low), s(&high)]).assert_code(0);
    // A part that is not an archive: 65.
    let junk = dir.path().join("junk.pmtiles");
    std::fs::write(&junk, b"not an archive at all").unwrap();
    run(&["merge", s(&bad), s(&low), s(&junk)]).assert_code(65);
    assert!(!bad.exists());
}

#[test]
fn guessed_zoom_is_reported() {
    let dir = tempfile::tempdir().unwrap();
    let input = spread_input(dir.path());
    let out = dir.path().join("g.pmtiles");
    let r = run(&["-o", s(&out), "-zg", s(&input)]);
    r.assert_code(0);
    assert!(
        r.stderr.contains("Choosing a maxzoom of -z"),
        "{}",
        r.stderr
    );
    let v: Value = serde_json::from_str(&run(&["show", s(&out)]).stdout).unwrap();
    let z = v["header"]["max_zoom"].as_u64().unwrap();
    assert!(r.stderr.contains(&format!("-z{z}")), "{}", r.stderr);
    verify(&out).assert_code(0);
}

#[test]
fn single_point_input_verifies() {
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("one.geojsonl");
    std::fs::write(
        &input,
        b"{\"type\":\"Feature\",\"id\":1,\"properties\":{},\"geometry\":{\"type\":\"Point\",\"coordinates\":[10,20]}}\n",
    )
    .unwrap();
    let out = dir.path().join("one.pmtiles");
    run(&["-o", s(&out), "-z5", s(&input)]).assert_code(0);
    verify(&out).assert_code(0);
}

#[cfg(unix)]
#[test]
fn output_permissions_follow_the_umask() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let plain = dir.path().join("plain.txt");
    std::fs::write(&plain, b"x").unwrap();
    let want = std::fs::metadata(&plain).unwrap().permissions().mode() & 0o777;
    let out = dir.path().join("o.pmtiles");
    run(&["-o", s(&out), "-z3", &fixture("sites.geojson")]).assert_code(0);
    let got = std::fs::metadata(&out).unwrap().permissions().mode() & 0o777;
    assert_eq!(
        got, want,
        "archive mode {got:o}, a plain new file gets {want:o}"
    );
    let merged = dir.path().join("m.pmtiles");
    run(&["merge", s(&merged), s(&out)]).assert_code(0);
    let got = std::fs::metadata(&merged).unwrap().permissions().mode() & 0o777;
    assert_eq!(got, want, "merged archive mode {got:o}");
}

#[test]
fn same_inputs_give_byte_identical_archives() {
    // Several inputs read in parallel: the archive must not depend on their interleaving.
    let dir = tempfile::tempdir().unwrap();
    let inputs = dir.path().join("in");
    std::fs::create_dir(&inputs).unwrap();
    spread_input(&inputs);
    for name in ["sites.geojson", "tracks.geojsonl", "observations.csv"] {
        std::fs::copy(fixture(name), inputs.join(name)).unwrap();
    }
    let runs: Vec<Vec<u8>> = (0..3)
        .map(|i| {
            let out = dir.path().join(format!("run{i}.pmtiles"));
            run(&["-o", s(&out), "-z9", "-n", "same", s(&inputs)]).assert_code(0);
            std::fs::read(&out).unwrap()
        })
        .collect();
    assert!(
        runs[0] == runs[1] && runs[1] == runs[2],
        "archives differ between runs"
    );
    // -l puts every input into one layer.
    let out = dir.path().join("one.pmtiles");
    run(&["-o", s(&out), "-z9", "-l", "all", s(&inputs)]).assert_code(0);
    let m = metadata(&out);
    let vl = m["vector_layers"].as_array().unwrap();
    assert_eq!(vl.len(), 1);
    assert_eq!(vl[0]["id"], "all");
    for (c, ls) in tiles(&out) {
        assert_eq!(ls.len(), 1, "{c}");
        assert_eq!(ls[0].name, "all");
    }
}

/// Polls `cond` every 20 ms for up to `limit`; panics with `what` if it never holds.
fn wait_for(what: &str, limit: std::time::Duration, mut cond: impl FnMut() -> bool) {
    let start = std::time::Instant::now();
    while start.elapsed() < limit {
        if cond() {
            return;
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    panic!("timed out waiting for {what}");
}

#[cfg(unix)]
#[test]
fn sigterm_stops_with_143_and_leaves_nothing() {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicU64, Ordering};
    // The input is a FIFO fed without end, so the run cannot finish before the signal: it is
    // reading when SIGTERM comes, whatever the machine's speed.
    let dir = tempfile::tempdir().unwrap();
    let fifo = dir.path().join("endless.geojsonl");
    let made = Command::new("mkfifo").arg(&fifo).status().unwrap();
    assert!(made.success());
    let written = Arc::new(AtomicU64::new(0));
    let writer = {
        let (fifo, written) = (fifo.clone(), written.clone());
        std::thread::spawn(move || {
            let f = std::fs::OpenOptions::new().write(true).open(&fifo).unwrap();
            let mut w = std::io::BufWriter::with_capacity(4096, f);
            for i in 0u64.. {
                let line = format!(
                    r#"{{"type":"Feature","id":{i},"properties":{{}},"geometry":{{"type":"Point","coordinates":[{},{}]}}}}"#,
                    (i % 3000) as f64 * 0.01,
                    (i / 3000 % 1000) as f64 * 0.01
                );
                // The job closing its end (it exited) ends the feed.
                if writeln!(w, "{line}").is_err() {
                    return;
                }
                written.store(i + 1, Ordering::Relaxed);
            }
        })
    };
    let outdir = dir.path().join("out");
    std::fs::create_dir(&outdir).unwrap();
    let out = outdir.join("o.pmtiles");
    let child = etl_pmtiles()
        .args(["-o", s(&out), "-z5", s(&fifo)])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    // Reading: features consumed well past the pipe's buffer, the archive's temp file made.
    wait_for(
        "the job to read features",
        std::time::Duration::from_secs(60),
        || written.load(Ordering::Relaxed) > 20_000 && !temp_files(&outdir).is_empty(),
    );
    let status = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    let r = Run::from_output(child.wait_with_output().unwrap());
    r.assert_code(143);
    assert_eq!(r.summary["status"], "stopped");
    assert!(!out.exists());
    assert_eq!(temp_files(&outdir), Vec::<String>::new());
    writer.join().unwrap();
}

#[test]
fn feature_ids_are_kept_when_non_negative_integers() {
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("ids.geojsonl");
    let ids = ["5", "-3", "\"abc\"", "2.5", "18446744073709551615", "0"];
    let mut f = std::fs::File::create(&input).unwrap();
    for (n, id) in ids.iter().enumerate() {
        writeln!(
            f,
            r#"{{"type":"Feature","id":{id},"properties":{{"n":{n}}},"geometry":{{"type":"Point","coordinates":[{n},{n}]}}}}"#
        )
        .unwrap();
    }
    drop(f);
    let out = dir.path().join("ids.pmtiles");
    run(&["-o", s(&out), "-z3", "-r1", s(&input)]).assert_code(0);
    let mut got = BTreeMap::new();
    for (_, ls) in tiles(&out).into_iter().filter(|(c, _)| c.z == 3) {
        for f in ls.into_iter().flat_map(|l| l.features) {
            let Some((_, PropValue::UInt(n))) = f.props.iter().find(|(k, _)| k == "n") else {
                panic!("no n: {f:?}")
            };
            got.insert(*n, f.id);
        }
    }
    let want: BTreeMap<u64, Option<u64>> = [
        (0, Some(5)),
        (1, None),
        (2, None),
        (3, None),
        (4, Some(u64::MAX)),
        (5, Some(0)),
    ]
    .into_iter()
    .collect();
    assert_eq!(got, want);
}

/// A reader that panics mid-input (a test-only fault point) ends the run with exit 70 and
/// publishes nothing: an existing archive stays as it was, no temporary file is left.
#[test]
fn a_panicking_reader_publishes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("points.geojsonl");
    let mut text = String::new();
    for i in 0..5000 {
        text.push_str(&format!(
            "{{\"type\":\"Feature\",\"properties\":{{\"i\":{i}}},\"geometry\":{{\"type\":\"Point\",\"coordinates\":[{},{}]}}}}\n",
            (i % 100) as f64 * 0.1,
            (i / 100) as f64 * 0.1
        ));
    }
    std::fs::write(&input, text).unwrap();
    let out = dir.path().join("o.pmtiles");
    std::fs::write(&out, b"old contents").unwrap();
    let r = Run::from_output(
        etl_pmtiles()
            .env("ETL_FAULT", "sources.read_panic@3000")
            .args(["-o", s(&out), "-z5", "-f", s(&input)])
            .output()
            .unwrap(),
    );
    r.assert_code(70);
    assert!(r.error().contains("panicked"), "{}", r.error());
    assert_eq!(std::fs::read(&out).unwrap(), b"old contents");
    assert!(
        temp_files(dir.path()).is_empty(),
        "{:?}",
        temp_files(dir.path())
    );
}

#[test]
fn s_srs_tiles_projected_numbers_where_they_are() {
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("nztm.geojsonl");
    // Wellington and Auckland in NZTM2000 (EPSG:2193), metres.
    std::fs::write(
        &input,
        concat!(
            "{\"type\":\"Feature\",\"properties\":{\"n\":1},\"geometry\":{\"type\":\"Point\",\"coordinates\":[1748735.5,5427916.5]}}\n",
            "{\"type\":\"Feature\",\"properties\":{\"n\":2},\"geometry\":{\"type\":\"Point\",\"coordinates\":[1757327.9,5921196.7]}}\n",
        ),
    )
    .unwrap();
    let out = dir.path().join("nz.pmtiles");
    run(&["-o", s(&out), "-z8", "--s-srs", "EPSG:2193", s(&input)]).assert_code(0);
    let f = std::fs::File::open(&out).unwrap();
    let a = Archive::open(std::io::BufReader::new(f)).unwrap();
    let [w, south, e, north] = a.header().bounds;
    assert!(
        (174.0..176.0).contains(&w) && (174.0..176.0).contains(&e),
        "{:?}",
        a.header().bounds
    );
    assert!(
        (-42.0..-36.0).contains(&south) && (-42.0..-36.0).contains(&north),
        "{:?}",
        a.header().bounds
    );
    // Without it the metres are not degrees: nothing to tile.
    let r = run(&["-o", s(&dir.path().join("no.pmtiles")), "-z8", s(&input)]);
    assert_ne!(r.code, 0, "{}", r.stderr);
}

#[test]
fn a_geopackage_a_zipped_shapefile_and_geoparquet_are_tiled_where_they_are() {
    let dir = tempfile::tempdir().unwrap();
    for input in [
        "formats/gpkg/nztm.gpkg",
        "crs/nztm/nztm_points.zip",
        "formats/geoparquet/nztm.parquet",
    ] {
        let out = dir.path().join("nz.pmtiles");
        run(&["-o", s(&out), "-f", "-z6", s(&repo("fixtures").join(input))]).assert_code(0);
        let f = std::fs::File::open(&out).unwrap();
        let a = Archive::open(std::io::BufReader::new(f)).unwrap();
        let [w, south, e, north] = a.header().bounds;
        assert!(
            w > 165.0 && e < 179.0 && south > -48.0 && north < -34.0,
            "{input}: {:?}",
            a.header().bounds
        );
    }
}

#[test]
fn input_layer_picks_geopackage_tables() {
    let dir = tempfile::tempdir().unwrap();
    let gpkg = repo("fixtures/formats/gpkg/nztm.gpkg");
    let out = dir.path().join("parcels.pmtiles");
    // -l names the tile layer (tippecanoe's flag); --input-layer picks the table.
    run(&[
        "-o",
        s(&out),
        "-z6",
        "-l",
        "nz",
        "--input-layer",
        "parcels",
        s(&gpkg),
    ])
    .assert_code(0);
    let features: Vec<_> = tiles(&out)
        .into_values()
        .flatten()
        .filter(|l| l.name == "nz")
        .flat_map(|l| l.features)
        .collect();
    assert!(!features.is_empty());
    assert!(
        features
            .iter()
            .all(|f| matches!(f.geom, etl_tiles::geom::TileGeom::Polygons(_))),
        "{features:?}"
    );
    let r = run(&[
        "-o",
        s(&dir.path().join("none.pmtiles")),
        "-z6",
        "--input-layer",
        "rivers",
        s(&gpkg),
    ]);
    r.assert_code(65);
    assert!(
        r.stderr.contains("roads, parcels") || r.error().contains("roads, parcels"),
        "{}",
        r.stderr
    );
    assert!(!dir.path().join("none.pmtiles").exists());
}

/// The same 10,000 NZTM2000 points as a zipped Shapefile, a FlatGeobuf, a GeoPackage and a
/// GeoParquet file are
/// tiled alike: every point once at z10, within a tile pixel of where GDAL puts it, with its
/// attributes.
#[test]
fn the_same_points_in_every_format_are_tiled_alike() {
    let text = {
        let mut text = String::new();
        let file = std::fs::File::open(repo("fixtures/crs/2193.csv.gz")).unwrap();
        flate2::read::GzDecoder::new(file)
            .read_to_string(&mut text)
            .unwrap();
        text
    };
    let reference: Vec<(f64, f64)> = text
        .lines()
        .skip(1)
        .map(|l| {
            let v: Vec<f64> = l.split(',').map(|f| f.parse().unwrap()).collect();
            (v[2], v[3])
        })
        .collect();
    let dir = tempfile::tempdir().unwrap();
    for input in [
        "crs/nztm/nztm_points.zip",
        "crs/nztm/nztm_points.fgb",
        "crs/nztm/nztm_points.gpkg",
        "formats/geoparquet/nztm.parquet",
    ] {
        let out = dir.path().join("points.pmtiles");
        run(&[
            "-o",
            s(&out),
            "-f",
            "-Z10",
            "-z10",
            s(&repo("fixtures").join(input)),
        ])
        .assert_code(0);
        let mut seen = std::collections::BTreeSet::new();
        for (c, layers) in tiles(&out) {
            let n = f64::from(1u32 << c.z);
            for layer in layers {
                let extent = f64::from(layer.extent);
                for f in layer.features {
                    let TileGeom::Points(points) = &f.geom else {
                        panic!("{input}: {:?}", f.geom)
                    };
                    let name = f
                        .props
                        .iter()
                        .find_map(|(k, v)| match (k.as_str(), v) {
                            ("name", PropValue::String(s)) => Some(s.clone()),
                            _ => None,
                        })
                        .unwrap_or_else(|| panic!("{input}: no name in {:?}", f.props));
                    let id: usize = name.trim_start_matches('p').parse().unwrap();
                    let [px, py] = points[0];
                    let e = layer.extent as i32;
                    if px < 0 || py < 0 || px > e || py > e {
                        continue; // in the buffer: the neighbouring tile holds it
                    }
                    // A point rounded onto the tile's right or bottom edge may be in the next
                    // tile's buffer at 0 as well.
                    let on_edge = px == 0 || py == 0 || px == e || py == e;
                    let x = (f64::from(c.x) + f64::from(px) / extent) / n;
                    let y = (f64::from(c.y) + f64::from(py) / extent) / n;
                    let lon = x * 360.0 - 180.0;
                    let lat = (std::f64::consts::PI * (1.0 - 2.0 * y))
                        .sinh()
                        .atan()
                        .to_degrees();
                    let (rl, rb) = reference[id];
                    // One pixel at z10 is 360 / 2^10 / 4096 = 8.6e-5 degrees of longitude.
                    assert!(
                        (lon - rl).abs() < 1e-4 && (lat - rb).abs() < 1e-4,
                        "{input}: {name} at {lon},{lat}, GDAL {rl},{rb}"
                    );
                    assert!(seen.insert(id) || on_edge, "{input}: {name} twice");
                }
            }
        }
        let missing: Vec<usize> = (0..10_000).filter(|i| !seen.contains(i)).collect();
        assert!(missing.is_empty(), "{input}: missing {missing:?}");
    }
}
