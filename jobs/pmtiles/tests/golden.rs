//! Golden test: the bundled fixtures tiled at z0–z10, every tile decoded and written as text
//! (tile, layer, feature id, geometry, properties), compared with the checked-in
//! `fixtures/pmtiles/fixtures-z10.golden.txt`. Decoded tiles are compared, not bytes, so a
//! change of gzip level or protobuf field order does not break it, while any change in what a
//! map shows (a vertex, a dropped feature, a property type) does.
//!
//! After an intended change, regenerate with `UPDATE_GOLDEN=1 cargo test -p etl-pmtiles --test
//! golden` and review the diff.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::fmt::Write as _;
use std::io::{Cursor, Read};
use std::path::{Path, PathBuf};
use std::process::Command;

use etl_tiles::archive::Archive;
use etl_tiles::geom::TileGeom;
use etl_tiles::mvt::{PropValue, decode_tile};
use etl_tiles::tile::tile_coord;

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn ring(out: &mut String, pts: &[[i32; 2]]) {
    out.push('[');
    for (i, p) in pts.iter().enumerate() {
        if i > 0 {
            out.push(' ');
        }
        let _ = write!(out, "{},{}", p[0], p[1]);
    }
    out.push(']');
}

fn geom_text(g: &TileGeom) -> String {
    let mut s = String::new();
    match g {
        TileGeom::Points(p) => {
            s.push_str("POINTS ");
            ring(&mut s, p);
        }
        TileGeom::Lines(ls) => {
            s.push_str("LINES");
            for l in ls {
                s.push(' ');
                ring(&mut s, l);
            }
        }
        TileGeom::Polygons(ps) => {
            s.push_str("POLYGONS");
            for p in ps {
                s.push_str(" (");
                for (i, r) in p.iter().enumerate() {
                    if i > 0 {
                        s.push(' ');
                    }
                    ring(&mut s, r);
                }
                s.push(')');
            }
        }
    }
    s
}

fn value_text(v: &PropValue) -> String {
    match v {
        PropValue::String(s) => format!("string:{s:?}"),
        PropValue::Float(f) => format!("float:{f}"),
        PropValue::Double(f) => format!("double:{f}"),
        PropValue::Int(i) => format!("int:{i}"),
        PropValue::UInt(u) => format!("uint:{u}"),
        PropValue::SInt(i) => format!("sint:{i}"),
        PropValue::Bool(b) => format!("bool:{b}"),
    }
}

/// Every tile of the archive as sorted, readable text.
fn decoded_text(path: &Path) -> String {
    let bytes = std::fs::read(path).unwrap();
    let mut a = Archive::open(Cursor::new(&bytes)).unwrap();
    let entries: Vec<_> = a.entries().map(Result::unwrap).collect();
    let mut out = String::new();
    for e in entries {
        let mut raw = Vec::new();
        flate2::read::GzDecoder::new(&a.read_tile(&e).unwrap()[..])
            .read_to_end(&mut raw)
            .unwrap();
        let layers = decode_tile(&raw).unwrap();
        for k in 0..u64::from(e.run_length) {
            let c = tile_coord(e.tile_id + k).unwrap();
            let _ = writeln!(out, "tile {c}");
            for l in &layers {
                let _ = writeln!(
                    out,
                    "  layer {} extent {} version {}",
                    l.name, l.extent, l.version
                );
                for f in &l.features {
                    let mut props: Vec<String> = f
                        .props
                        .iter()
                        .map(|(k, v)| format!("{k}={}", value_text(v)))
                        .collect();
                    props.sort();
                    let _ = writeln!(
                        out,
                        "    id {:?} {} {{{}}}",
                        f.id,
                        geom_text(&f.geom),
                        props.join(", ")
                    );
                }
            }
        }
    }
    out
}

#[test]
fn fixtures_tile_to_the_golden_tiles() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("fixtures.pmtiles");
    let status = Command::new(env!("CARGO_BIN_EXE_etl-pmtiles"))
        .current_dir(repo())
        .args(["-o", out.to_str().unwrap(), "-z10", "fixtures/data"])
        .output()
        .unwrap();
    assert!(
        status.status.success(),
        "{}",
        String::from_utf8_lossy(&status.stderr)
    );
    let got = decoded_text(&out);
    let golden = repo().join("fixtures/pmtiles/fixtures-z10.golden.txt");
    if std::env::var_os("UPDATE_GOLDEN").is_some() {
        std::fs::create_dir_all(golden.parent().unwrap()).unwrap();
        std::fs::write(&golden, &got).unwrap();
    }
    let want = std::fs::read_to_string(&golden).unwrap_or_else(|e| {
        panic!(
            "{}: {e}; generate it with UPDATE_GOLDEN=1 cargo test -p etl-pmtiles --test golden",
            golden.display()
        )
    });
    if got != want {
        let first = got
            .lines()
            .zip(want.lines())
            .position(|(a, b)| a != b)
            .unwrap_or(got.lines().count().min(want.lines().count()));
        panic!(
            "decoded tiles differ from {} at line {}:\n got: {:?}\nwant: {:?}\n(regenerate with UPDATE_GOLDEN=1 after an intended change)",
            golden.display(),
            first + 1,
            got.lines().nth(first),
            want.lines().nth(first)
        );
    }
}
