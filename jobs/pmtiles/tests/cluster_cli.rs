//! `etl-pmtiles --cluster-distance` as a user types it (tippecanoe's README example:
//! `-zg -r1 --cluster-distance=10 --accumulate-attribute=POP_MAX:sum`, here with `-kg`), and
//! its usage errors.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeMap;
use std::io::{Cursor, Read, Write};
use std::path::Path;

use etl_tiles::archive::Archive;
use etl_tiles::geom::TileGeom;
use etl_tiles::mvt::{PropValue, decode_tile};
use etl_tiles::tile::tile_coord;

mod support;
use support::run as etl_pmtiles;

const N: u64 = 3000;

/// `n` populated places around three towns, as a GeoJSON sequence.
fn places(dir: &Path) -> String {
    let path = dir.join("places.geojsonl");
    let mut f = std::fs::File::create(&path).unwrap();
    for i in 0..N {
        let (cx, cy) = [(2.35, 48.85), (-0.12, 51.5), (13.4, 52.5)][(i % 3) as usize];
        let d = (i as f64 * 0.618_034).fract() - 0.5;
        let e = (i as f64 * 0.414_214).fract() - 0.5;
        writeln!(
            f,
            r#"{{"type":"Feature","properties":{{"POP_MAX":{i},"NAME":"n{i}"}},"geometry":{{"type":"Point","coordinates":[{},{}]}}}}"#,
            cx + d,
            cy + e
        )
        .unwrap();
    }
    path.to_str().unwrap().to_owned()
}

/// Per zoom: (points counted by point_count, POP_MAX total, features).
fn per_zoom(archive: &Path) -> BTreeMap<u8, (u64, u64, u64)> {
    let bytes = std::fs::read(archive).unwrap();
    let mut a = Archive::open(Cursor::new(&bytes)).unwrap();
    let entries: Vec<_> = a.entries().map(Result::unwrap).collect();
    let mut out: BTreeMap<u8, (u64, u64, u64)> = BTreeMap::new();
    for e in entries {
        let mut raw = Vec::new();
        flate2::read::GzDecoder::new(&a.read_tile(&e).unwrap()[..])
            .read_to_end(&mut raw)
            .unwrap();
        let z = tile_coord(e.tile_id).unwrap().z;
        for l in decode_tile(&raw).unwrap() {
            for f in l.features {
                assert!(matches!(f.geom, TileGeom::Points(_)));
                let get = |k: &str| {
                    f.props.iter().find(|(n, _)| n == k).map(|(_, v)| match v {
                        PropValue::UInt(u) => *u,
                        other => panic!("{k}: {other:?}"),
                    })
                };
                let t = out.entry(z).or_default();
                let n = u64::from(e.run_length);
                t.0 += get("point_count").unwrap_or(1) * n;
                t.1 += get("POP_MAX").unwrap() * n;
                t.2 += n;
            }
        }
    }
    out
}

#[test]
fn clustered_places_add_up_and_show_every_place_at_the_max_zoom() {
    let dir = tempfile::tempdir().unwrap();
    let input = places(dir.path());
    let out = dir.path().join("places.pmtiles");
    let (code, log) = etl_pmtiles(&[
        "-o",
        out.to_str().unwrap(),
        "-z8",
        "--cluster-distance=10",
        "--cluster-maxzoom=g",
        "--accumulate-attribute=POP_MAX:sum",
        &input,
    ]);
    assert_eq!(code, 0, "{log}");
    assert!(
        log.contains("\"clusters\""),
        "the log reports clusters: {log}"
    );
    let total: u64 = (0..N).sum();
    let by_zoom = per_zoom(&out);
    assert_eq!(by_zoom.len(), 9);
    for (z, (points, pop, feats)) in &by_zoom {
        assert_eq!(*points, N, "z{z}");
        assert_eq!(*pop, total, "z{z}");
        if *z == 8 {
            assert_eq!(*feats, N, "z8: every place on its own");
        } else {
            assert!(*feats < N, "z{z}: clustered");
        }
    }
    let (code, log) = etl_pmtiles(&["verify", out.to_str().unwrap()]);
    assert_eq!(code, 0, "{log}");
}

#[test]
fn cluster_usage_errors_exit_64_and_write_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let input = places(dir.path());
    let out = dir.path().join("o.pmtiles");
    let o = out.to_str().unwrap();
    for (args, says) in [
        (vec!["-E", "POP_MAX:sum"], "needs --cluster-distance"),
        (vec!["-k", "5"], "needs --cluster-distance"),
        (vec!["-K", "0"], "cluster-distance"),
        (vec!["-K", "300"], "cluster-distance"),
        (vec!["-K", "10", "-k", "x"], "--cluster-maxzoom"),
        (vec!["-K", "10", "-E", "POP_MAX:avg"], "avg"),
        (vec!["-K", "10", "-E", "POP_MAX"], "NAME:OPERATION"),
        (vec!["-K", "10", "-E", "point_count:sum"], "point_count"),
    ] {
        let mut all = vec!["-o", o];
        all.extend(&args);
        all.push(&input);
        let (code, log) = etl_pmtiles(&all);
        assert_eq!(code, 64, "{args:?}: {log}");
        assert!(log.contains(says), "{args:?} should say {says:?}: {log}");
        assert!(!out.exists());
    }
}
