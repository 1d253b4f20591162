//! Sharded tiling: `--shard I/N` runs (or AWS Batch array children) each make a disjoint share
//! of the tile set, and `etl-pmtiles merge` of the N parts gives exactly the tiles (ids and
//! bytes), zooms, bounds and metadata of one unsharded run on the same input.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::io::BufReader;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use etl_tiles::archive::{Archive, Header};
use serde_json::Value;

fn repo(rel: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../..")
        .join(rel)
}

fn etl_pmtiles() -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_etl-pmtiles"));
    cmd.env("LOG_FORMAT", "json")
        .env("RUST_LOG", "info")
        .env_remove("ETL_CHECKPOINT")
        .env_remove("ETL_OUTPUT")
        .env_remove("ETL_INPUT")
        .env_remove("ETL_SHARD")
        .env_remove("AWS_BATCH_JOB_ARRAY_INDEX")
        .env_remove("AWS_BATCH_JOB_ARRAY_SIZE");
    cmd
}

#[track_caller]
fn ok(out: Output, what: &str) -> Output {
    assert_eq!(
        out.status.code(),
        Some(0),
        "{what}\n--- stdout\n{}\n--- stderr\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

/// Every addressed tile id of an archive with its (gzipped) tile bytes, the header and the
/// metadata.
struct Tiles {
    tiles: BTreeMap<u64, Vec<u8>>,
    header: Header,
    metadata: Value,
}

fn read(path: &Path) -> Tiles {
    let f = std::fs::File::open(path).unwrap();
    let mut a = Archive::open(BufReader::new(f)).unwrap();
    let header = a.header().clone();
    let metadata = a.metadata().clone();
    let entries: Vec<_> = a.entries().map(Result::unwrap).collect();
    let mut tiles = BTreeMap::new();
    for e in entries {
        let data = a.read_tile(&e).unwrap();
        for k in 0..u64::from(e.run_length) {
            tiles.insert(e.tile_id + k, data.clone());
        }
    }
    // Random access agrees with the directory walk.
    for (&id, data) in tiles.iter().step_by(7) {
        assert_eq!(a.get_tile_by_id(id).unwrap().as_deref(), Some(&data[..]));
    }
    Tiles {
        tiles,
        header,
        metadata,
    }
}

fn without_layers(meta: &Value) -> Value {
    let mut m = meta.clone();
    m.as_object_mut().unwrap().remove("vector_layers");
    m
}

fn layers_by_id(meta: &Value) -> BTreeMap<String, Value> {
    meta["vector_layers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| (l["id"].as_str().unwrap().to_owned(), l.clone()))
        .collect()
}

/// The "shard written" log line of a run (partition, weights).
fn shard_log(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr)
        .lines()
        .find(|l| l.contains("shard written"))
        .unwrap_or("")
        .to_owned()
}

/// Runs unsharded and with N shards for every N, merges, and compares. Returns a report.
fn check(name: &str, dir: &Path, args: &[&str], counts: &[u32], all_non_empty: bool) -> String {
    let mut report = String::new();
    let single = dir.join(format!("{name}-single.pmtiles"));
    let mut cmd = etl_pmtiles();
    cmd.args(["-o", s(&single), "-n", name]).args(args);
    ok(cmd.output().unwrap(), "unsharded run");
    let want = read(&single);
    assert!(!want.tiles.is_empty());
    writeln!(
        report,
        "{name}: unsharded {} tiles, zooms {}..{}",
        want.tiles.len(),
        want.header.min_zoom,
        want.header.max_zoom
    )
    .unwrap();
    for &n in counts {
        let parts_dir = dir.join(format!("{name}-{n}.parts"));
        std::fs::create_dir_all(&parts_dir).unwrap();
        let pattern = parts_dir.join("{shard}.pmtiles");
        let mut parts = Vec::new();
        let mut line = format!("  N={n}:");
        let mut seen: BTreeMap<u64, u32> = BTreeMap::new();
        for i in 0..n {
            let mut cmd = etl_pmtiles();
            cmd.args([
                "-o",
                s(&pattern),
                "-n",
                name,
                "--shard",
                &format!("{i}/{n}"),
            ])
            .args(args);
            let out = ok(cmd.output().unwrap(), &format!("shard {i}/{n}"));
            let part = parts_dir.join(format!("{i}.pmtiles"));
            let got = read(&part);
            // Staged-data metadata is the same in every part.
            assert_eq!(
                got.header.bounds, want.header.bounds,
                "{name} {i}/{n} bounds"
            );
            for id in got.tiles.keys() {
                assert!(
                    want.tiles.contains_key(id),
                    "{name} {i}/{n}: extra tile {id}"
                );
                if let Some(other) = seen.insert(*id, i) {
                    panic!("{name}: tile {id} in shards {other} and {i} of {n}");
                }
            }
            if all_non_empty {
                assert!(!got.tiles.is_empty(), "{name}: shard {i}/{n} is empty");
            }
            let log: Value = serde_json::from_str(&shard_log(&out)).unwrap_or(Value::Null);
            let fields = if log["fields"].is_object() {
                &log["fields"]
            } else {
                &log
            };
            write!(
                line,
                " [{i}: {} tiles, {} fragments, weight {}]",
                got.tiles.len(),
                fields["fragments"],
                fields["weight"]
            )
            .unwrap();
            parts.push(part);
        }
        writeln!(report, "{line}").unwrap();
        let merged = dir.join(format!("{name}-{n}.pmtiles"));
        let mut cmd = etl_pmtiles();
        cmd.arg("merge").arg(&merged).args(&parts);
        ok(cmd.output().unwrap(), "merge");
        let got = read(&merged);
        assert_eq!(
            got.tiles.keys().collect::<Vec<_>>(),
            want.tiles.keys().collect::<Vec<_>>(),
            "{name} N={n}: tile ids"
        );
        for (id, data) in &want.tiles {
            assert!(
                got.tiles.get(id) == Some(data),
                "{name} N={n}: tile {id} bytes differ"
            );
        }
        assert_eq!(got.header.min_zoom, want.header.min_zoom, "{name} N={n}");
        assert_eq!(got.header.max_zoom, want.header.max_zoom, "{name} N={n}");
        assert_eq!(got.header.bounds, want.header.bounds, "{name} N={n}");
        // The same metadata; `vector_layers` is unioned by merge in the order the parts list
        // the layers (a part lists only the layers of its own tiles), so compare it by id.
        assert_eq!(
            without_layers(&got.metadata),
            without_layers(&want.metadata),
            "{name} N={n}: metadata"
        );
        assert_eq!(
            layers_by_id(&got.metadata),
            layers_by_id(&want.metadata),
            "{name} N={n}: vector_layers"
        );
        let mut cmd = etl_pmtiles();
        cmd.arg("verify").arg(&merged);
        ok(cmd.output().unwrap(), "verify the merged archive");
    }
    report
}

#[test]
fn fixtures_shard_and_merge_to_the_unsharded_archive() {
    let dir = tempfile::tempdir().unwrap();
    let data = repo("fixtures/data");
    let r = check(
        "fixtures",
        dir.path(),
        &["-z10", s(&data)],
        &[1, 2, 3, 7],
        false,
    );
    // -zg: the guess is made from all staged features, the same in every shard.
    let r2 = check("fixtures-zg", dir.path(), &["-zg", s(&data)], &[3], false);
    // Zooms all above the partition zoom.
    let r3 = check(
        "fixtures-deep",
        dir.path(),
        &["-Z11", "-z12", s(&data)],
        &[2, 7],
        false,
    );
    eprintln!("{r}{r2}{r3}");
}

/// A deterministic pseudo-random generator (no dependency needed).
struct Lcg(u64);

impl Lcg {
    fn next(&mut self) -> f64 {
        self.0 = self
            .0
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1_442_695_040_888_963_407);
        (self.0 >> 11) as f64 / (1u64 << 53) as f64
    }
}

/// A few thousand points (clustered and scattered), lines and polygons (some large), three
/// layers.
fn generate(dir: &Path) -> PathBuf {
    let input = dir.join("gen");
    std::fs::create_dir_all(&input).unwrap();
    let mut rng = Lcg(42);
    let feats = |kind: &str, n: usize, rng: &mut Lcg| -> String {
        let mut out = Vec::with_capacity(n);
        for i in 0..n {
            // Half the features in a dense cluster (Colorado), half across the world.
            let (cx, cy, spread) = if i % 2 == 0 {
                (-104.8, 38.8, 2.0)
            } else {
                (0.0, 10.0, 150.0)
            };
            let x = (cx + (rng.next() - 0.5) * spread).clamp(-179.0, 179.0);
            let y = (cy + (rng.next() - 0.5) * spread * 0.5).clamp(-80.0, 80.0);
            let geom = match kind {
                "point" => format!(r#"{{"type":"Point","coordinates":[{x},{y}]}}"#),
                "line" => {
                    let mut pts = vec![format!("[{x},{y}]")];
                    let (mut px, mut py) = (x, y);
                    let step = if i % 50 == 0 { 5.0 } else { 0.05 };
                    for _ in 0..8 {
                        px = (px + (rng.next() - 0.3) * step).clamp(-179.0, 179.0);
                        py = (py + (rng.next() - 0.5) * step).clamp(-80.0, 80.0);
                        pts.push(format!("[{px},{py}]"));
                    }
                    format!(
                        r#"{{"type":"LineString","coordinates":[{}]}}"#,
                        pts.join(",")
                    )
                }
                _ => {
                    let r = if i % 100 == 0 {
                        20.0
                    } else {
                        0.02 + rng.next() * 0.1
                    };
                    let (x0, y0) = ((x - r).max(-179.5), (y - r / 2.0).max(-80.0));
                    let (x1, y1) = ((x + r).min(179.5), (y + r / 2.0).min(80.0));
                    format!(
                        r#"{{"type":"Polygon","coordinates":[[[{x0},{y0}],[{x1},{y0}],[{x1},{y1}],[{x0},{y1}],[{x0},{y0}]]]}}"#
                    )
                }
            };
            out.push(format!(
                r#"{{"type":"Feature","id":{i},"properties":{{"kind":"{kind}","n":{i},"v":{:.3}}},"geometry":{geom}}}"#,
                rng.next() * 100.0
            ));
        }
        format!(
            r#"{{"type":"FeatureCollection","features":[{}]}}"#,
            out.join(",\n")
        )
    };
    for (kind, n) in [("point", 3000), ("line", 1000), ("polygon", 1000)] {
        let text = feats(kind, n, &mut rng);
        std::fs::write(input.join(format!("{kind}s.geojson")), text).unwrap();
    }
    input
}

#[test]
fn generated_input_shards_and_merges_to_the_unsharded_archive() {
    let dir = tempfile::tempdir().unwrap();
    let input = generate(dir.path());
    let r = check(
        "generated",
        dir.path(),
        &["-z9", s(&input)],
        &[1, 2, 3, 7],
        true,
    );
    eprintln!("{r}");
}

#[test]
fn batch_array_children_shard_the_tile_set() {
    let dir = tempfile::tempdir().unwrap();
    let data = repo("fixtures/data");
    let by_flag = dir.path().join("flag-{shard}.pmtiles");
    let by_env = dir.path().join("env-{shard}.pmtiles");
    for i in 0..2 {
        let mut cmd = etl_pmtiles();
        cmd.args(["-o", s(&by_flag), "-n", "x", "-z8", "--shard"])
            .arg(format!("{i}/2"))
            .arg(&data);
        ok(cmd.output().unwrap(), "by flag");
        let mut cmd = etl_pmtiles();
        cmd.args(["-o", s(&by_env), "-n", "x", "-z8"])
            .arg(&data)
            .env("AWS_BATCH_JOB_ARRAY_INDEX", i.to_string())
            .env("AWS_BATCH_JOB_ARRAY_SIZE", "2");
        ok(cmd.output().unwrap(), "by the array env");
        let a = read(&dir.path().join(format!("flag-{i}.pmtiles")));
        let b = read(&dir.path().join(format!("env-{i}.pmtiles")));
        assert_eq!(a.tiles, b.tiles, "shard {i}");
    }
}

#[test]
fn zoom_wide_strategies_and_outputs_without_shard_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let data = repo("fixtures/data");
    let out = dir.path().join("{shard}.pmtiles");
    for flag in [
        "--drop-densest-as-needed",
        "--coalesce-densest-as-needed",
        "--extend-zooms-if-still-dropping",
    ] {
        let r = etl_pmtiles()
            .args(["-o", s(&out), "--shard", "0/2", flag, s(&data)])
            .output()
            .unwrap();
        assert_eq!(r.status.code(), Some(64), "{flag}");
        assert!(String::from_utf8_lossy(&r.stdout).contains(flag), "{flag}");
    }
    let plain = dir.path().join("plain.pmtiles");
    for shard in ["0/2", "2/2", "x"] {
        let r = etl_pmtiles()
            .args(["-o", s(&plain), "--shard", shard, s(&data)])
            .output()
            .unwrap();
        assert_eq!(r.status.code(), Some(64), "{shard}");
    }
    assert!(!plain.exists());
}
