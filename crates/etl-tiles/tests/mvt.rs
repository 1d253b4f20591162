//! MVT encoder/decoder: round trips, the mapbox/mvt-fixtures suite, and garbage input.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::{Path, PathBuf};

use etl_tiles::geom::TileGeom;
use etl_tiles::mvt::{
    DecodedFeature, DecodedLayer, LayerBuilder, MvtError, PropValue, decode_tile, encode_tile,
};
use proptest::prelude::*;
use serde_json::Value;

// ---------------------------------------------------------------- round trips

fn area2(ring: &[[i32; 2]]) -> i128 {
    ring.windows(2)
        .map(|w| {
            i128::from(w[0][0]) * i128::from(w[1][1]) - i128::from(w[1][0]) * i128::from(w[0][1])
        })
        .sum()
}

#[test]
fn every_geometry_kind_and_value_type_round_trips() {
    let mut layer = LayerBuilder::new("all", 4096);
    let props = [
        ("s", PropValue::String("héllo".into())),
        ("f", PropValue::Float(3.5)),
        ("d", PropValue::Double(-1.25e300)),
        ("i", PropValue::Int(-42)),
        ("u", PropValue::UInt(u64::MAX)),
        ("z", PropValue::SInt(i64::MIN)),
        ("b", PropValue::Bool(true)),
    ];
    let points = TileGeom::Points(vec![[25, 17], [-100, 5000], [i32::MIN, i32::MAX]]);
    let lines = TileGeom::Lines(vec![vec![[2, 2], [2, 10], [10, 10]], vec![[1, 1], [3, 5]]]);
    let polys = TileGeom::Polygons(vec![
        vec![
            vec![[0, 0], [10, 0], [10, 10], [0, 10], [0, 0]],
            vec![[2, 2], [2, 8], [8, 8], [8, 2], [2, 2]],
        ],
        vec![vec![[20, 20], [30, 20], [30, 30], [20, 20]]],
    ]);
    layer.add_feature(Some(1), &points, &props);
    layer.add_feature(None, &lines, &props[..2]);
    layer.add_feature(Some(u64::MAX), &polys, &[]);
    assert_eq!(layer.feature_count(), 3);
    let mut other = LayerBuilder::new("other", 512);
    other.add_feature(
        Some(7),
        &TileGeom::Points(vec![[1, 2]]),
        &[("s", PropValue::String("héllo".into()))],
    );
    let empty = LayerBuilder::new("empty", 4096);
    assert!(empty.is_empty());

    let bytes = encode_tile(&[layer, empty, other]);
    let decoded = decode_tile(&bytes).unwrap();
    let own = |ps: &[(&str, PropValue)]| -> Vec<(String, PropValue)> {
        ps.iter()
            .map(|(k, v)| ((*k).to_owned(), v.clone()))
            .collect()
    };
    assert_eq!(
        decoded,
        vec![
            DecodedLayer {
                name: "all".into(),
                extent: 4096,
                version: 2,
                features: vec![
                    DecodedFeature {
                        id: Some(1),
                        geom: points,
                        props: own(&props)
                    },
                    DecodedFeature {
                        id: None,
                        geom: lines,
                        props: own(&props[..2])
                    },
                    DecodedFeature {
                        id: Some(u64::MAX),
                        geom: polys,
                        props: vec![]
                    },
                ],
            },
            DecodedLayer {
                name: "other".into(),
                extent: 512,
                version: 2,
                features: vec![DecodedFeature {
                    id: Some(7),
                    geom: TileGeom::Points(vec![[1, 2]]),
                    props: vec![("s".into(), PropValue::String("héllo".into()))],
                }],
            },
        ]
    );
}

#[test]
fn keys_and_values_are_deduplicated() {
    let mut a = LayerBuilder::new("l", 4096);
    let g = TileGeom::Points(vec![[1, 1]]);
    for _ in 0..100 {
        a.add_feature(
            None,
            &g,
            &[
                ("k", PropValue::Double(1.0)),
                ("k2", PropValue::Double(1.0)),
            ],
        );
    }
    let mut b = LayerBuilder::new("l", 4096);
    b.add_feature(
        None,
        &g,
        &[
            ("k", PropValue::Double(1.0)),
            ("k2", PropValue::Double(1.0)),
        ],
    );
    // 99 more features cost their own bytes only: the tables did not grow.
    let per_feature = encode_tile(&[a]).len() - encode_tile(&[b]).len();
    assert!(per_feature <= 99 * 16, "{per_feature}");
    // Same number, different type or bits: distinct values.
    let mut c = LayerBuilder::new("l", 4096);
    c.add_feature(
        None,
        &g,
        &[
            ("a", PropValue::Double(0.0)),
            ("b", PropValue::Double(-0.0)),
            ("c", PropValue::Float(0.0)),
            ("d", PropValue::Int(0)),
            ("e", PropValue::SInt(0)),
            ("f", PropValue::UInt(0)),
        ],
    );
    let d = decode_tile(&encode_tile(&[c])).unwrap();
    let p = &d[0].features[0].props;
    assert!(matches!(p[1].1, PropValue::Double(v) if v.is_sign_negative()));
    assert_eq!(p[2].1, PropValue::Float(0.0));
    assert_eq!(p[3].1, PropValue::Int(0));
    assert_eq!(p[4].1, PropValue::SInt(0));
    assert_eq!(p[5].1, PropValue::UInt(0));
}

#[test]
fn degenerate_parts_are_not_encoded() {
    let mut l = LayerBuilder::new("l", 4096);
    l.add_feature(None, &TileGeom::Points(vec![]), &[]);
    l.add_feature(None, &TileGeom::Lines(vec![vec![[1, 1]]]), &[]);
    l.add_feature(
        None,
        &TileGeom::Polygons(vec![vec![vec![[0, 0], [1, 1], [0, 0]]]]),
        &[],
    );
    assert!(l.is_empty());
    assert!(encode_tile(&[l]).is_empty());
}

fn coord() -> impl Strategy<Value = i32> {
    prop_oneof![4 => -200i32..4400, 1 => any::<i32>()]
}

fn pt() -> impl Strategy<Value = [i32; 2]> {
    [coord(), coord()]
}

/// A ring that the MVT grammar can carry: ≥ 3 distinct consecutive vertices, non-zero area,
/// closed, oriented as asked.
fn ring(exterior: bool) -> impl Strategy<Value = Vec<[i32; 2]>> {
    prop::collection::vec(pt(), 3..10).prop_filter_map("degenerate ring", move |mut r| {
        r.dedup();
        while r.len() > 1 && r.first() == r.last() {
            r.pop();
        }
        if r.len() < 3 {
            return None;
        }
        r.push(r[0]);
        let a = area2(&r);
        if a == 0 {
            return None;
        }
        if (a > 0) != exterior {
            r.reverse();
        }
        Some(r)
    })
}

fn polygon() -> impl Strategy<Value = Vec<Vec<[i32; 2]>>> {
    (ring(true), prop::collection::vec(ring(false), 0..3)).prop_map(|(e, holes)| {
        let mut p = vec![e];
        p.extend(holes);
        p
    })
}

fn geom() -> impl Strategy<Value = TileGeom> {
    prop_oneof![
        prop::collection::vec(pt(), 1..8).prop_map(TileGeom::Points),
        prop::collection::vec(prop::collection::vec(pt(), 2..8), 1..4).prop_map(TileGeom::Lines),
        prop::collection::vec(polygon(), 1..3).prop_map(TileGeom::Polygons),
    ]
}

fn value() -> impl Strategy<Value = PropValue> {
    prop_oneof![
        ".{0,12}".prop_map(PropValue::String),
        any::<f32>()
            .prop_filter("NaN != NaN", |f| !f.is_nan())
            .prop_map(PropValue::Float),
        any::<f64>()
            .prop_filter("NaN != NaN", |f| !f.is_nan())
            .prop_map(PropValue::Double),
        any::<i64>().prop_map(PropValue::Int),
        any::<u64>().prop_map(PropValue::UInt),
        any::<i64>().prop_map(PropValue::SInt),
        any::<bool>().prop_map(PropValue::Bool),
    ]
}

fn feature() -> impl Strategy<Value = DecodedFeature> {
    (
        prop::option::of(any::<u64>()),
        geom(),
        prop::collection::vec(("[a-c]{1,2}", value()), 0..5),
    )
        .prop_map(|(id, geom, props)| DecodedFeature { id, geom, props })
}

fn tile() -> impl Strategy<Value = Vec<DecodedLayer>> {
    prop::collection::vec(
        (
            prop::sample::select(vec![256u32, 4096, 8192]),
            prop::collection::vec(feature(), 1..6),
        ),
        0..4,
    )
    .prop_map(|layers| {
        layers
            .into_iter()
            .enumerate()
            .map(|(i, (extent, features))| DecodedLayer {
                name: format!("layer{i}"),
                extent,
                version: 2,
                features,
            })
            .collect()
    })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(500))]

    #[test]
    fn random_tiles_round_trip(t in tile()) {
        let builders: Vec<LayerBuilder> = t
            .iter()
            .map(|l| {
                let mut b = LayerBuilder::new(l.name.clone(), l.extent);
                for f in &l.features {
                    let props: Vec<(&str, PropValue)> =
                        f.props.iter().map(|(k, v)| (k.as_str(), v.clone())).collect();
                    b.add_feature(f.id, &f.geom, &props);
                }
                b
            })
            .collect();
        let bytes = encode_tile(&builders);
        let decoded = decode_tile(&bytes).map_err(|e| TestCaseError::fail(e.to_string()))?;
        prop_assert_eq!(decoded, t);
    }

    #[test]
    fn random_bytes_never_panic(bytes in prop::collection::vec(any::<u8>(), 0..400)) {
        let _ = decode_tile(&bytes);
    }

    #[test]
    fn mutated_tiles_never_panic(
        t in tile(),
        edits in prop::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 1..8),
        cut in any::<prop::sample::Index>(),
    ) {
        let builders: Vec<LayerBuilder> = t
            .iter()
            .map(|l| {
                let mut b = LayerBuilder::new(l.name.clone(), l.extent);
                for f in &l.features {
                    b.add_feature(f.id, &f.geom, &[]);
                }
                b
            })
            .collect();
        let mut bytes = encode_tile(&builders);
        if bytes.is_empty() {
            return Ok(());
        }
        for (i, b) in edits {
            let at = i.index(bytes.len());
            bytes[at] = b;
        }
        let _ = decode_tile(&bytes);
        let _ = decode_tile(&bytes[..cut.index(bytes.len())]);
    }
}

// ---------------------------------------------------------------- mvt-fixtures

fn fixtures_dir() -> PathBuf {
    let dir = std::env::var_os("MVT_FIXTURES").map_or_else(
        || PathBuf::from("/work/shared/peer-fixtures/mvt-fixtures/fixtures"),
        PathBuf::from,
    );
    assert!(
        dir.is_dir(),
        "mvt-fixtures not found at {} (set MVT_FIXTURES to mapbox/mvt-fixtures' fixtures/)",
        dir.display()
    );
    dir
}

fn fixtures() -> Vec<(String, PathBuf)> {
    let mut v: Vec<(String, PathBuf)> = std::fs::read_dir(fixtures_dir())
        .unwrap()
        .map(|e| {
            let e = e.unwrap();
            (e.file_name().to_string_lossy().into_owned(), e.path())
        })
        .filter(|(_, p)| p.join("tile.mvt").is_file())
        .collect();
    v.sort();
    assert!(v.len() >= 70, "expected the 74 fixtures, found {}", v.len());
    v
}

fn read_json(p: &Path) -> Value {
    serde_json::from_str(&std::fs::read_to_string(p).unwrap()).unwrap()
}

/// The expected decoding of a fixture's `tile.json` (raw protobuf content), interpreted here
/// independently of the decoder under test.
fn expected_layers(j: &Value) -> Vec<DecodedLayer> {
    let Some(layers) = j["layers"].as_array() else {
        return vec![];
    };
    layers
        .iter()
        .map(|l| {
            let keys: Vec<String> = l["keys"]
                .as_array()
                .unwrap()
                .iter()
                .map(|k| k.as_str().unwrap().to_owned())
                .collect();
            let values: Vec<PropValue> = l["values"]
                .as_array()
                .unwrap()
                .iter()
                .map(json_value)
                .collect();
            let features = l["features"]
                .as_array()
                .unwrap()
                .iter()
                // Deliberate: UNKNOWN (0) or missing types are skipped by our decoder.
                .filter(|f| f["type"].as_u64().is_some_and(|t| t != 0))
                .map(|f| {
                    let tags: Vec<usize> = f["tags"]
                        .as_array()
                        .unwrap()
                        .iter()
                        .map(|t| t.as_u64().unwrap() as usize)
                        .collect();
                    let props = tags
                        .chunks(2)
                        .map(|kv| (keys[kv[0]].clone(), values[kv[1]].clone()))
                        .collect();
                    let cmds: Vec<u32> = f["geometry"]
                        .as_array()
                        .unwrap()
                        .iter()
                        .map(|c| u32::try_from(c.as_u64().unwrap()).unwrap())
                        .collect();
                    DecodedFeature {
                        id: f["id"].as_u64(),
                        geom: interpret(f["type"].as_u64().unwrap(), &cmds),
                        props,
                    }
                })
                .collect();
            DecodedLayer {
                name: l["name"].as_str().unwrap().to_owned(),
                extent: l["extent"]
                    .as_u64()
                    .map_or(4096, |e| u32::try_from(e).unwrap()),
                version: u32::try_from(l["version"].as_u64().unwrap()).unwrap(),
                features,
            }
        })
        .collect()
}

fn json_value(v: &Value) -> PropValue {
    let (k, x) = v.as_object().unwrap().iter().next().unwrap();
    match k.as_str() {
        // Fixture 076's JSON shows the string "613" as the number 613 (its tile.mvt holds the
        // string), so a number here stands for its decimal text.
        "string_value" => {
            PropValue::String(x.as_str().map_or_else(|| x.to_string(), str::to_owned))
        }
        "float_value" => PropValue::Float(x.as_f64().unwrap() as f32),
        "double_value" => PropValue::Double(x.as_f64().unwrap()),
        "int_value" => PropValue::Int(x.as_i64().unwrap()),
        "uint_value" => PropValue::UInt(x.as_u64().unwrap()),
        "sint_value" => PropValue::SInt(x.as_i64().unwrap()),
        "bool_value" => PropValue::Bool(x.as_bool().unwrap()),
        other => panic!("unexpected value type {other}"),
    }
}

/// A plain reading of the command stream of a valid fixture. The cursor wraps modulo 2^32 like
/// the decoder's (fixtures 049/050 overflow i32 on purpose; the JSON holds only raw integers, so
/// wrapping is our documented choice there, not something the fixture prescribes).
fn interpret(kind: u64, cmds: &[u32]) -> TileGeom {
    let mut parts: Vec<Vec<[i32; 2]>> = Vec::new();
    let (mut x, mut y) = (0i32, 0i32);
    let mut i = 0;
    while i < cmds.len() {
        let (id, count) = (cmds[i] & 7, cmds[i] >> 3);
        i += 1;
        if id == 7 {
            let first = parts.last().unwrap()[0];
            parts.last_mut().unwrap().push(first);
            continue;
        }
        for _ in 0..count {
            let dz = |v: u32| ((v >> 1) as i32) ^ -((v & 1) as i32);
            x = x.wrapping_add(dz(cmds[i]));
            y = y.wrapping_add(dz(cmds[i + 1]));
            i += 2;
            if id == 1 {
                parts.push(vec![[x, y]]);
            } else {
                parts.last_mut().unwrap().push([x, y]);
            }
        }
    }
    match kind {
        1 => TileGeom::Points(parts.concat()),
        2 => TileGeom::Lines(parts),
        // Grouping into polygons is checked separately; here one ring per "polygon".
        _ => TileGeom::Polygons(parts.into_iter().map(|r| vec![r]).collect()),
    }
}

/// Flattens polygons to their rings after checking the grouping (exterior positive, holes
/// negative), so that the comparison with `interpret` does not depend on grouping.
fn flatten_checked(layers: &mut [DecodedLayer]) {
    for l in layers {
        for f in &mut l.features {
            if let TileGeom::Polygons(ps) = &f.geom {
                for p in ps {
                    for (i, r) in p.iter().enumerate() {
                        assert_eq!(area2(r) > 0, i == 0, "winding of ring {i} in {}", l.name);
                    }
                }
                f.geom = TileGeom::Polygons(ps.iter().flatten().map(|r| vec![r.clone()]).collect());
            }
        }
    }
}

/// Valid-v2 fixtures we deliberately reject, with the reason.
const VALID_BUT_REJECTED: &[(&str, &str)] = &[
    // A MoveTo count of 2^29-1 followed by one point: marked valid upstream, yet the identical
    // stream in 051 is "fatal". We follow 051: a count without its parameters is an error.
    ("057", "command count exceeds its parameters"),
];

/// Invalid-v2 fixtures that decode to a defined, tolerant result instead of an error.
const INVALID_BUT_TOLERATED: &[(&str, &str)] = &[
    // Missing type = UNKNOWN (proto2 default): the feature is skipped.
    ("003", "[0]"),
    // Two geometry fields: protobuf concatenates repeated packed fields; the result is a
    // well-formed MultiPoint.
    ("030", "[1]"),
    // A linestring with a zero-length segment: decoded verbatim (the decoder does not judge
    // OGC validity).
    ("046", "[1]"),
];

#[test]
fn mvt_fixtures() {
    let mut valid = 0;
    let mut invalid = 0;
    for (name, dir) in fixtures() {
        let info = read_json(&dir.join("info.json"));
        let bytes = std::fs::read(dir.join("tile.mvt")).unwrap();
        let result = decode_tile(&bytes);
        let is_valid = info["validity"]["v2"].as_bool().unwrap();
        if is_valid {
            valid += 1;
            if let Some((_, why)) = VALID_BUT_REJECTED.iter().find(|(n, _)| *n == name) {
                let err = result.expect_err(&name);
                assert!(err.to_string().contains(why), "{name}: {err}");
                continue;
            }
            let mut got = result.unwrap_or_else(|e| panic!("{name}: {e}"));
            flatten_checked(&mut got);
            let want = expected_layers(&read_json(&dir.join("tile.json")));
            assert_eq!(got, want, "fixture {name}");
        } else {
            invalid += 1;
            match INVALID_BUT_TOLERATED.iter().find(|(n, _)| *n == name) {
                Some((_, counts)) => {
                    let layers = result.unwrap_or_else(|e| panic!("{name}: {e}"));
                    let got: Vec<usize> = layers.iter().map(|l| l.features.len()).collect();
                    assert_eq!(format!("{got:?}"), *counts, "fixture {name}");
                }
                None => assert!(
                    result.is_err(),
                    "fixture {name} must be rejected: {result:?}"
                ),
            }
        }
    }
    assert_eq!((valid, invalid), (46, 28));
}

#[test]
fn fixture_error_kinds() {
    let dir = fixtures_dir();
    let err =
        |n: &str| decode_tile(&std::fs::read(dir.join(n).join("tile.mvt")).unwrap()).unwrap_err();
    assert_eq!(err("005"), MvtError::OddTags);
    assert_eq!(err("006"), MvtError::GeomType(8));
    assert_eq!(err("014"), MvtError::MissingName);
    assert_eq!(err("015"), MvtError::DuplicateLayer("hello".into()));
    assert!(matches!(
        err("012"),
        MvtError::UnsupportedVersion { version: 99, .. }
    ));
    assert!(matches!(
        err("042"),
        MvtError::TagIndex { kind: "value", .. }
    ));
    assert!(matches!(err("047"), MvtError::Geometry(_)));
    assert!(matches!(err("051"), MvtError::Geometry(_)));
}

/// Corrupting every byte of every fixture in turn: no panic, whatever the outcome.
#[test]
fn corrupted_fixtures_never_panic() {
    for (_, dir) in fixtures() {
        let bytes = std::fs::read(dir.join("tile.mvt")).unwrap();
        for i in 0..bytes.len() {
            for v in [0x00, 0x7f, 0x80, 0xff, bytes[i] ^ 0x08] {
                let mut b = bytes.clone();
                b[i] = v;
                let _ = decode_tile(&b);
            }
            let _ = decode_tile(&bytes[..i]);
        }
    }
}
