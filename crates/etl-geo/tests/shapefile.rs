//! Shapefile reader: small shapefiles written here by a test-only writer, read through
//! [`Upload`] as a zipped upload and compared with the GeoJSON checked in under
//! `fixtures/formats/shapefile/`; the peer countries.shp against countries.geojson;
//! refusals (CRS, code page), truncated and inconsistent sets, and random mutations.
//!
//! Set `UPDATE_GOLDEN=1` to (re)write the expected files.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};

use etl_geo::{ReadError, Record, Upload, UploadOptions, feature_to_json};
use serde_json::{Value, json};

// ---------------------------------------------------------------------------
// A test-only shapefile writer.
// ---------------------------------------------------------------------------

type Ring = Vec<(f64, f64)>;

enum Shape {
    Null,
    Point(f64, f64),
    PointZ(f64, f64, f64),
    MultiPoint(Vec<(f64, f64)>),
    /// Shape type 3/13/23 (PolyLine) or 5/15/25 (Polygon), with Z and M arrays
    /// appended for the Z types.
    Parts(i32, Vec<Ring>),
}

fn le_i32(out: &mut Vec<u8>, v: i32) {
    out.extend_from_slice(&v.to_le_bytes());
}

fn le_f64(out: &mut Vec<u8>, v: f64) {
    out.extend_from_slice(&v.to_le_bytes());
}

fn bbox(points: &[(f64, f64)]) -> [f64; 4] {
    let mut b = [f64::MAX, f64::MAX, f64::MIN, f64::MIN];
    for &(x, y) in points {
        b = [b[0].min(x), b[1].min(y), b[2].max(x), b[3].max(y)];
    }
    if points.is_empty() { [0.0; 4] } else { b }
}

fn content(shape: &Shape) -> Vec<u8> {
    let mut c = Vec::new();
    match shape {
        Shape::Null => le_i32(&mut c, 0),
        Shape::Point(x, y) => {
            le_i32(&mut c, 1);
            le_f64(&mut c, *x);
            le_f64(&mut c, *y);
        }
        Shape::PointZ(x, y, z) => {
            le_i32(&mut c, 11);
            for v in [*x, *y, *z, 0.0] {
                le_f64(&mut c, v);
            }
        }
        Shape::MultiPoint(points) => {
            le_i32(&mut c, 8);
            for v in bbox(points) {
                le_f64(&mut c, v);
            }
            le_i32(&mut c, points.len() as i32);
            for &(x, y) in points {
                le_f64(&mut c, x);
                le_f64(&mut c, y);
            }
        }
        Shape::Parts(t, rings) => {
            le_i32(&mut c, *t);
            let all: Vec<(f64, f64)> = rings.iter().flatten().copied().collect();
            for v in bbox(&all) {
                le_f64(&mut c, v);
            }
            le_i32(&mut c, rings.len() as i32);
            le_i32(&mut c, all.len() as i32);
            let mut start = 0;
            for r in rings {
                le_i32(&mut c, start);
                start += r.len() as i32;
            }
            for &(x, y) in &all {
                le_f64(&mut c, x);
                le_f64(&mut c, y);
            }
            if matches!(t, 13 | 15) {
                // Z range and values, then M range and values.
                for _ in 0..2 {
                    le_f64(&mut c, 0.0);
                    le_f64(&mut c, 100.0);
                    for i in 0..all.len() {
                        le_f64(&mut c, i as f64);
                    }
                }
            }
        }
    }
    c
}

/// `.shp` and `.shx` bytes.
fn shp(shape_type: i32, shapes: &[Shape]) -> (Vec<u8>, Vec<u8>) {
    let header = |len_bytes: usize| {
        let mut h = Vec::with_capacity(100);
        h.extend_from_slice(&9994i32.to_be_bytes());
        h.extend_from_slice(&[0; 20]);
        h.extend_from_slice(&((len_bytes / 2) as i32).to_be_bytes());
        le_i32(&mut h, 1000);
        le_i32(&mut h, shape_type);
        for _ in 0..8 {
            le_f64(&mut h, 0.0);
        }
        h
    };
    let mut body = Vec::new();
    let mut index = Vec::new();
    for (i, s) in shapes.iter().enumerate() {
        let c = content(s);
        index.extend_from_slice(&(((100 + body.len()) / 2) as i32).to_be_bytes());
        index.extend_from_slice(&((c.len() / 2) as i32).to_be_bytes());
        body.extend_from_slice(&(i as i32 + 1).to_be_bytes());
        body.extend_from_slice(&((c.len() / 2) as i32).to_be_bytes());
        body.extend_from_slice(&c);
    }
    let mut main = header(100 + body.len());
    main.extend_from_slice(&body);
    let mut shx = header(100 + index.len());
    shx.extend_from_slice(&index);
    (main, shx)
}

/// A DBF field: name, type, length, decimals.
type Field = (&'static str, u8, u8, u8);

/// `.dbf` bytes; each row is (deleted, values as raw bytes, padded to the field length).
fn dbf(ldid: u8, fields: &[Field], rows: &[(bool, Vec<&[u8]>)]) -> Vec<u8> {
    let record_len: usize = 1 + fields.iter().map(|f| usize::from(f.2)).sum::<usize>();
    let header_len = 32 + 32 * fields.len() + 1;
    let mut d = vec![0x03, 124, 1, 1];
    d.extend_from_slice(&(rows.len() as u32).to_le_bytes());
    d.extend_from_slice(&(header_len as u16).to_le_bytes());
    d.extend_from_slice(&(record_len as u16).to_le_bytes());
    d.extend_from_slice(&[0; 17]);
    d.push(ldid);
    d.extend_from_slice(&[0; 2]);
    for (name, kind, len, dec) in fields {
        let mut desc = [0u8; 32];
        desc[..name.len()].copy_from_slice(name.as_bytes());
        desc[11] = *kind;
        desc[16] = *len;
        desc[17] = *dec;
        d.extend_from_slice(&desc);
    }
    d.push(0x0D);
    for (deleted, values) in rows {
        d.push(if *deleted { b'*' } else { b' ' });
        for ((_, kind, len, _), v) in fields.iter().zip(values) {
            let len = usize::from(*len);
            let mut cell = vec![b' '; len];
            if *kind == b'N' || *kind == b'F' {
                cell[len - v.len()..].copy_from_slice(v); // right-aligned
            } else {
                cell[..v.len()].copy_from_slice(v);
            }
            d.extend_from_slice(&cell);
        }
    }
    d.push(0x1A);
    d
}

const WGS84_PRJ: &str = r#"GEOGCS["GCS_WGS_1984",DATUM["D_WGS_1984",SPHEROID["WGS_1984",6378137.0,298.257223563]],PRIMEM["Greenwich",0.0],UNIT["Degree",0.0174532925199433]]"#;
const WEB_MERCATOR_PRJ: &str = r#"PROJCS["WGS_1984_Web_Mercator_Auxiliary_Sphere",GEOGCS["GCS_WGS_1984",DATUM["D_WGS_1984",SPHEROID["WGS_1984",6378137.0,298.257223563]],PRIMEM["Greenwich",0.0],UNIT["Degree",0.0174532925199433]],PROJECTION["Mercator_Auxiliary_Sphere"],PARAMETER["False_Easting",0.0],PARAMETER["False_Northing",0.0],PARAMETER["Central_Meridian",0.0],PARAMETER["Standard_Parallel_1",0.0],PARAMETER["Auxiliary_Sphere_Type",0.0],UNIT["Meter",1.0]]"#;
const UTM_PRJ: &str = r#"PROJCS["WGS_1984_UTM_Zone_33N",GEOGCS["GCS_WGS_1984",DATUM["D_WGS_1984",SPHEROID["WGS_1984",6378137.0,298.257223563]],PRIMEM["Greenwich",0.0],UNIT["Degree",0.0174532925199433]],PROJECTION["Transverse_Mercator"],PARAMETER["False_Easting",500000.0],PARAMETER["False_Northing",0.0],PARAMETER["Central_Meridian",15.0],PARAMETER["Scale_Factor",0.9996],PARAMETER["Latitude_Of_Origin",0.0],UNIT["Meter",1.0]]"#;

// ---------------------------------------------------------------------------
// Reading through a zipped upload.
// ---------------------------------------------------------------------------

fn zip(files: &[(&str, &[u8])], dir: &Path) -> PathBuf {
    let path = dir.join("upload.zip");
    let mut z = zip::ZipWriter::new(std::fs::File::create(&path).unwrap());
    let opts =
        zip::write::SimpleFileOptions::default().compression_method(zip::CompressionMethod::Stored);
    for (name, bytes) in files {
        z.start_file(*name, opts).unwrap();
        z.write_all(bytes).unwrap();
    }
    z.finish().unwrap();
    path
}

/// All records of a zipped shapefile set, and the fatal error if reading stopped on one.
fn read(files: &[(&str, &[u8])]) -> (Vec<Record>, Option<ReadError>) {
    let dir = tempfile::tempdir().unwrap();
    let path = zip(files, dir.path());
    let mut upload = match Upload::open(&path, "upload", dir.path(), &UploadOptions::default()) {
        Ok(u) => u,
        Err(e) => return (Vec::new(), Some(e)),
    };
    let mut records = Vec::new();
    let mut error = None;
    for item in &mut upload {
        assert!(error.is_none(), "an item followed an error");
        match item {
            Ok(r) => {
                assert_eq!(r.ordinal, records.len() as u64, "ordinal gap");
                records.push(r);
            }
            Err(e) => {
                let text = e.to_string();
                assert!(!text.contains(['\n', '\r']), "multi-line message: {text}");
                error = Some(e);
            }
        }
    }
    (records, error)
}

/// Records as a FeatureCollection; a rejected record becomes `{"rejected": reason}`, a
/// repaired feature carries `"repairs"`.
fn collection(records: &[Record]) -> Value {
    let features: Vec<Value> = records
        .iter()
        .map(|r| match &r.feature {
            Ok(f) => {
                let mut v = feature_to_json(f);
                if !r.repairs.is_empty() {
                    v["repairs"] = json!(r.repairs.iter().map(|k| k.name()).collect::<Vec<_>>());
                }
                v
            }
            Err(rej) => json!({ "rejected": rej.reason, "line": r.line }),
        })
        .collect();
    json!({ "type": "FeatureCollection", "features": features })
}

fn golden(name: &str, got: &Value) {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../fixtures/formats/shapefile")
        .join(format!("{name}.geojson"));
    if std::env::var_os("UPDATE_GOLDEN").is_some() {
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        let mut text = serde_json::to_string_pretty(got).unwrap();
        text.push('\n');
        std::fs::write(&path, text).unwrap();
    }
    let want: Value = serde_json::from_slice(
        &std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display())),
    )
    .unwrap();
    assert_eq!(got, &want, "{name}: differs from {}", path.display());
}

fn assert_close(a: &Value, b: &Value, eps: f64, at: &str) {
    match (a, b) {
        (Value::Array(x), Value::Array(y)) => {
            assert_eq!(x.len(), y.len(), "{at}: lengths differ");
            for (i, (p, q)) in x.iter().zip(y).enumerate() {
                assert_close(p, q, eps, &format!("{at}/{i}"));
            }
        }
        (Value::Number(x), Value::Number(y)) => {
            let (x, y) = (x.as_f64().unwrap(), y.as_f64().unwrap());
            assert!((x - y).abs() <= eps, "{at}: {x} != {y}");
        }
        _ => assert_eq!(a, b, "{at}"),
    }
}

// ---------------------------------------------------------------------------
// The fixtures.
// ---------------------------------------------------------------------------

const POINT_FIELDS: &[Field] = &[
    ("name", b'C', 20, 0),
    ("count", b'N', 6, 0),
    ("value", b'N', 10, 3),
    ("flag", b'L', 1, 0),
    ("day", b'D', 8, 0),
];

fn points_set() -> Vec<(&'static str, Vec<u8>)> {
    let (shp_bytes, shx) = shp(
        1,
        &[
            Shape::Point(8.541694, 47.376887),
            Shape::Point(-122.4194, 37.7749),
            Shape::Null,
            Shape::Point(0.0, 0.0),
            Shape::Point(200.0, 0.0),
        ],
    );
    let dbf_bytes = dbf(
        0,
        POINT_FIELDS,
        &[
            (
                false,
                vec!["Zürich".as_bytes(), b"42", b"1.500", b"T", b"20240229"],
            ),
            (false, vec![b"San Francisco  ", b"-7", b"-0.125", b"F", b""]),
            (false, vec![b"no geometry", b"", b"", b"?", b""]),
            (true, vec![b"deleted", b"1", b"1", b"T", b"20000101"]),
            (false, vec![b"out of range", b"******", b"", b" ", b""]),
        ],
    );
    vec![
        ("points.shp", shp_bytes),
        ("points.shx", shx),
        ("points.dbf", dbf_bytes),
        ("points.prj", WGS84_PRJ.as_bytes().to_vec()),
    ]
}

fn as_refs<'a>(set: &'a [(&'a str, Vec<u8>)]) -> Vec<(&'a str, &'a [u8])> {
    set.iter().map(|(n, b)| (*n, b.as_slice())).collect()
}

#[test]
fn points_wgs84() {
    let set = points_set();
    let (records, error) = read(&as_refs(&set));
    assert!(error.is_none(), "{error:?}");
    // The deleted record is skipped; lines are .shp record numbers.
    let lines: Vec<u64> = records.iter().map(|r| r.line).collect();
    assert_eq!(lines, [1, 2, 3, 5]);
    golden("points", &collection(&records));
}

/// Web Mercator metres of a longitude/latitude.
fn merc(lon: f64, lat: f64) -> (f64, f64) {
    const R: f64 = 6_378_137.0;
    (
        R * lon.to_radians(),
        R * (std::f64::consts::FRAC_PI_4 + lat.to_radians() / 2.0)
            .tan()
            .ln(),
    )
}

/// A clockwise (shell) or counter-clockwise (hole) square in Web Mercator.
fn square(x0: f64, y0: f64, size: f64, clockwise: bool) -> Ring {
    let mut r = vec![
        (x0, y0),
        (x0, y0 + size),
        (x0 + size, y0 + size),
        (x0 + size, y0),
        (x0, y0),
    ];
    if !clockwise {
        r.reverse();
    }
    r.into_iter().map(|(x, y)| merc(x, y)).collect()
}

#[test]
fn polygons_with_holes_in_web_mercator() {
    let (shp_bytes, shx) = shp(
        5,
        &[
            // A square with a hole.
            Shape::Parts(
                5,
                vec![square(0.0, 0.0, 10.0, true), square(2.0, 2.0, 2.0, false)],
            ),
            // Two shells, the hole listed first, belonging to the second shell.
            Shape::Parts(
                5,
                vec![
                    square(21.0, 1.0, 1.0, false),
                    square(0.0, 20.0, 5.0, true),
                    square(20.0, 0.0, 5.0, true),
                ],
            ),
            // A shell in a hole in a shell: three rings, two polygons.
            Shape::Parts(
                15,
                vec![
                    square(-50.0, -50.0, 30.0, true),
                    square(-45.0, -45.0, 20.0, false),
                    square(-40.0, -40.0, 10.0, true),
                ],
            ),
            // An unclosed ring: rejected.
            Shape::Parts(
                5,
                vec![vec![(0.0, 0.0), (0.0, 1.0), (1.0, 1.0), (1.0, 0.0)]],
            ),
        ],
    );
    let dbf_bytes = dbf(
        0x57,
        &[("kind", b'C', 16, 0)],
        &[
            (false, vec![b"holed square"]),
            (false, vec![b"two squares"]),
            (false, vec![b"nested"]),
            (false, vec![b"open ring"]),
        ],
    );
    let (records, error) = read(&[
        ("areas.shp", &shp_bytes),
        ("areas.shx", &shx),
        ("areas.dbf", &dbf_bytes),
        ("areas.prj", WEB_MERCATOR_PRJ.as_bytes()),
        ("areas.cpg", b"UTF-8"),
    ]);
    assert!(error.is_none(), "{error:?}");
    let got = collection(&records);
    // Back in degrees to within 1e-9 of the squares drawn.
    let first = &got["features"][0]["geometry"]["coordinates"];
    assert_close(
        first,
        &json!([
            [[0, 0], [0, 10], [10, 10], [10, 0], [0, 0]],
            [[2, 2], [4, 2], [4, 4], [2, 4], [2, 2]]
        ]),
        1e-9,
        "holed square",
    );
    golden("polygons_mercator", &round(&got));
}

/// Rounds every number to 9 decimals, so golden files do not depend on the last bits
/// of the projection arithmetic.
fn round(v: &Value) -> Value {
    match v {
        Value::Array(a) => Value::Array(a.iter().map(round).collect()),
        Value::Object(o) => Value::Object(o.iter().map(|(k, v)| (k.clone(), round(v))).collect()),
        Value::Number(n) if n.is_f64() => {
            let f = (n.as_f64().unwrap() * 1e9).round() / 1e9;
            json!(f)
        }
        other => other.clone(),
    }
}

#[test]
fn lines_without_prj_or_dbf() {
    let (shp_bytes, shx) = shp(
        13,
        &[
            Shape::Parts(13, vec![vec![(1.0, 2.0), (3.0, 4.0), (5.0, 6.5)]]),
            Shape::Parts(
                13,
                vec![vec![(0.0, 0.0), (1.0, 1.0)], vec![(2.0, 2.0), (3.0, 3.0)]],
            ),
            Shape::Parts(13, vec![vec![(9.0, 9.0)]]),
            Shape::Parts(13, vec![]),
        ],
    );
    let (records, error) = read(&[("LINES.SHP", &shp_bytes), ("LINES.SHX", &shx)]);
    assert!(error.is_none(), "{error:?}");
    golden("lines", &collection(&records));
}

#[test]
fn multipoints_and_point_z() {
    let (mp, mp_shx) = shp(
        8,
        &[
            Shape::MultiPoint(vec![(1.0, 1.0), (2.0, 2.0)]),
            Shape::MultiPoint(vec![]),
        ],
    );
    let (pz, pz_shx) = shp(11, &[Shape::PointZ(10.0, 20.0, 300.0)]);
    let (records, error) = read(&[
        ("mp.shp", &mp),
        ("mp.shx", &mp_shx),
        ("pz.shp", &pz),
        ("pz.shx", &pz_shx),
    ]);
    assert!(error.is_none(), "{error:?}");
    golden("multipoints_pointz", &collection(&records));
}

#[test]
fn latin1_dbf_with_cpg() {
    let (shp_bytes, shx) = shp(1, &[Shape::Point(-5.55, 7.54), Shape::Point(2.35, 48.85)]);
    let dbf_bytes = dbf(
        0,
        &[("name", b'C', 24, 0), ("note", b'C', 10, 0)],
        &[
            (false, vec![b"C\xf4te d'Ivoire", b"\x80 5"]),
            (false, vec![b"\xcele-de-France", b""]),
        ],
    );
    let (records, error) = read(&[
        ("latin.shp", &shp_bytes),
        ("latin.shx", &shx),
        ("latin.DBF", &dbf_bytes),
        ("latin.CPG", b"ISO-8859-1\r\n"),
    ]);
    assert!(error.is_none(), "{error:?}");
    let got = collection(&records);
    assert_eq!(got["features"][0]["properties"]["name"], "Côte d'Ivoire");
    assert_eq!(got["features"][1]["properties"]["name"], "Île-de-France");
    golden("latin1", &got);
}

#[test]
fn a_projected_prj_is_reprojected_and_an_unknown_one_refused_naming_it() {
    // On UTM 33N's central meridian (15°E), and far outside anything the zone covers.
    let (shp_bytes, shx) = shp(
        1,
        &[
            Shape::Point(500_000.0, 5_246_000.0),
            Shape::Point(1e12, 1e12),
        ],
    );
    let (records, error) = read(&[
        ("utm.shp", &shp_bytes),
        ("utm.shx", &shx),
        ("utm.prj", UTM_PRJ.as_bytes()),
    ]);
    assert!(error.is_none(), "{error:?}");
    assert_eq!(records.len(), 2);
    let Some(geo_types::Geometry::Point(p)) = &records[0].feature.as_ref().unwrap().geometry else {
        panic!("{:?}", records[0].feature);
    };
    assert!((p.x() - 15.0).abs() < 1e-9, "{p:?}");
    assert!((p.y() - 47.3675).abs() < 1e-3, "{p:?}");
    let reason = &records[1].feature.as_ref().unwrap_err().reason;
    assert!(reason.contains("is outside"), "{reason}");

    let mystery = r#"PROJCS["Mystery_Grid",GEOGCS["GCS_Mystery",DATUM["D_Mystery",SPHEROID["Mystery",6377000.0,299.0]],PRIMEM["Greenwich",0.0],UNIT["Degree",0.0174532925199433]],PROJECTION["Transverse_Mercator"],PARAMETER["False_Easting",500000.0],PARAMETER["Central_Meridian",15.0],PARAMETER["Scale_Factor",0.9996],UNIT["Meter",1.0]]"#;
    let mut set = points_set();
    set.retain(|(n, _)| *n != "points.prj");
    set.push(("points.prj", mystery.as_bytes().to_vec()));
    let (records, error) = read(&as_refs(&set));
    assert!(records.is_empty());
    let text = error.unwrap().to_string();
    assert!(
        text.starts_with(
            "points.shp: unsupported coordinate system in points.prj: \"Mystery_Grid\""
        ),
        "{text}"
    );
}

#[test]
fn unsupported_code_page_is_refused_naming_it() {
    let mut set = points_set();
    set.push(("points.cpg", b"CP936".to_vec()));
    let (_, error) = read(&as_refs(&set));
    assert_eq!(
        error.unwrap().to_string(),
        "points.shp: unsupported code page in points.cpg: CP936 (supported: UTF-8, ISO-8859-1, Windows-1252)"
    );
}

#[test]
fn truncated_files_are_fatal() {
    let set = points_set();
    let full = as_refs(&set);
    let shp_len = set[0].1.len();
    let dbf_len = set[2].1.len();
    for cut in 0..shp_len {
        let mut files = full.clone();
        files[0].1 = &set[0].1[..cut];
        let (_, error) = read(&files);
        let text = error
            .unwrap_or_else(|| panic!("shp cut at {cut}: no error"))
            .to_string();
        assert!(
            text.contains("truncated") || text.contains("shorter"),
            "shp cut at {cut}: {text}"
        );
    }
    // The last byte of a DBF is the optional 0x1A end marker.
    for cut in (0..dbf_len - 1).step_by(3) {
        let mut files = full.clone();
        files[2].1 = &set[2].1[..cut];
        let (_, error) = read(&files);
        let text = error
            .unwrap_or_else(|| panic!("dbf cut at {cut}: no error"))
            .to_string();
        assert!(text.contains("points.dbf"), "dbf cut at {cut}: {text}");
    }
    let (_, error) = read(&full);
    assert!(error.is_none());
}

#[test]
fn truncation_messages_say_where() {
    let set = points_set();
    let message = |file: usize, cut: usize| {
        let mut files = as_refs(&set);
        files[file].1 = &set[file].1[..cut];
        read(&files).1.unwrap().to_string()
    };
    // Records of 28 bytes from byte 100: record 2 starts at byte 128.
    assert_eq!(
        message(0, 140),
        "points.shp:2:1: the .shp file is truncated inside the record at byte 128 (4 of 20 bytes)"
    );
    assert_eq!(
        message(0, 128),
        "points.shp:2:1: the .shp file is truncated: it ends at byte 128 but its header says 224 bytes"
    );
    assert_eq!(
        message(0, 50),
        "points.shp: the .shp file is shorter than the 100-byte shapefile header"
    );
    // A 193-byte header, then records of 46 bytes.
    assert_eq!(
        message(2, 193 + 46 + 10),
        "points.shp:2:1: points.dbf: record 2 of 5: the file is truncated"
    );
    assert_eq!(
        message(2, 100),
        "points.shp: points.dbf: cannot read the field descriptors: the file is truncated"
    );
}

#[test]
fn record_counts_must_agree() {
    let set = points_set();
    let (fewer, _) = shp(1, &[Shape::Point(1.0, 1.0)]);
    let mut files = as_refs(&set);
    files[0].1 = &fewer;
    let (records, error) = read(&files);
    assert_eq!(records.len(), 1);
    assert_eq!(
        error.unwrap().to_string(),
        "points.shp:2:1: the .dbf has 5 records but the .shp only 1"
    );
}

#[test]
fn countries_match_the_peer_geojson() {
    let dir = common::peer_fixtures("flatgeobuf");
    let dir = dir.as_path();
    assert!(
        dir.join("countries.shp").is_file(),
        "peer fixture {}/countries.shp missing",
        dir.display()
    );
    let names = [
        "countries.shp",
        "countries.shx",
        "countries.dbf",
        "countries.prj",
    ];
    let bytes: Vec<Vec<u8>> = names
        .iter()
        .map(|n| std::fs::read(dir.join(n)).unwrap())
        .collect();
    let files: Vec<(&str, &[u8])> = names
        .iter()
        .copied()
        .zip(bytes.iter().map(Vec::as_slice))
        .collect();
    let (records, error) = read(&files);
    assert!(error.is_none(), "{error:?}");
    let ours = collection(&records);
    let ours = ours["features"].as_array().unwrap();
    let want: Value =
        serde_json::from_slice(&std::fs::read(dir.join("countries.geojson")).unwrap()).unwrap();
    let want = want["features"].as_array().unwrap();
    assert_eq!(ours.len(), 179);
    assert_eq!(ours.len(), want.len());
    let by_id: BTreeMap<&str, &Value> = want
        .iter()
        .map(|f| (f["id"].as_str().unwrap(), f))
        .collect();
    let mut min = [f64::MAX; 2];
    let mut max = [f64::MIN; 2];
    let mut differences = Vec::new();
    for f in ours {
        let id = f["properties"]["id"].as_str().unwrap();
        let w = by_id[id];
        assert_eq!(f["properties"]["name"], w["properties"]["name"], "{id}");
        let same_type = f["geometry"]["type"] == w["geometry"]["type"];
        let known = PEER_DIFFERENCES.iter().any(|(fid, _)| *fid == id);
        let same = same_type
            && (rings_close(&f["geometry"], &w["geometry"], false)
                || known && rings_close(&f["geometry"], &w["geometry"], true));
        if !same {
            differences.push(id.to_owned());
        }
        collect_bounds(&f["geometry"]["coordinates"], &mut min, &mut max);
    }
    assert!(
        differences.is_empty(),
        "geometry differs for {differences:?}"
    );
    let (mut want_min, mut want_max) = ([f64::MAX; 2], [f64::MIN; 2]);
    for w in want {
        collect_bounds(&w["geometry"]["coordinates"], &mut want_min, &mut want_max);
    }
    assert_close(
        &json!([min, max]),
        &json!([want_min, want_max]),
        1e-9,
        "bounds",
    );
    // The first feature, in file order, is Afghanistan in both.
    assert_eq!(ours[0]["properties"]["id"], want[0]["id"]);
    assert!(close(&ours[0]["geometry"], &want[0]["geometry"]));
}

/// Deliberate differences from countries.geojson, as (fixture, reason).
/// (feature id in countries.shp, reason).
const PEER_DIFFERENCES: &[(&str, &str)] = &[(
    "BMU",
    "the .shp ring runs clockwise (shapefile shells do), the GeoJSON's the other way: rings compare in either direction",
)];

/// Polygon or MultiPolygon coordinates equal within 1e-9, each ring also reversed
/// when `either_direction`.
fn rings_close(a: &Value, b: &Value, either_direction: bool) -> bool {
    let polygons = |g: &Value| -> Vec<Value> {
        match g["type"].as_str() {
            Some("Polygon") => vec![g["coordinates"].clone()],
            _ => g["coordinates"].as_array().cloned().unwrap_or_default(),
        }
    };
    let (pa, pb) = (polygons(a), polygons(b));
    pa.len() == pb.len()
        && pa.iter().zip(&pb).all(|(ra, rb)| {
            let (ra, rb) = (ra.as_array().unwrap(), rb.as_array().unwrap());
            ra.len() == rb.len()
                && ra.iter().zip(rb).all(|(x, y)| {
                    let mut reversed = x.as_array().unwrap().clone();
                    reversed.reverse();
                    close(x, y) || either_direction && close(&Value::Array(reversed), y)
                })
        })
}

fn close(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::Array(x), Value::Array(y)) => {
            x.len() == y.len() && x.iter().zip(y).all(|(p, q)| close(p, q))
        }
        (Value::Number(x), Value::Number(y)) => {
            (x.as_f64().unwrap() - y.as_f64().unwrap()).abs() <= 1e-9
        }
        _ => a == b,
    }
}

fn collect_bounds(v: &Value, min: &mut [f64; 2], max: &mut [f64; 2]) {
    let Some(a) = v.as_array() else { return };
    if let (Some(x), Some(y)) = (
        a.first().and_then(Value::as_f64),
        a.get(1).and_then(Value::as_f64),
    ) {
        min[0] = min[0].min(x);
        min[1] = min[1].min(y);
        max[0] = max[0].max(x);
        max[1] = max[1].max(y);
        return;
    }
    for item in a {
        collect_bounds(item, min, max);
    }
}

/// xorshift64*: deterministic, dependency-free noise.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
}

#[test]
fn random_mutations_never_panic() {
    let mut rng = Rng(0xD1B5_4A32_D192_ED03);
    let (poly, poly_shx) = shp(
        5,
        &[
            Shape::Parts(
                5,
                vec![square(0.0, 0.0, 10.0, true), square(2.0, 2.0, 2.0, false)],
            ),
            Shape::Parts(3, vec![vec![(1.0, 1.0), (2.0, 2.0)]]),
            Shape::MultiPoint(vec![(1.0, 1.0)]),
        ],
    );
    let mut sets = vec![points_set()];
    sets.push(vec![
        ("p.shp", poly),
        ("p.shx", poly_shx),
        ("p.prj", WEB_MERCATOR_PRJ.as_bytes().to_vec()),
    ]);
    for set in &sets {
        for _ in 0..150 {
            let mut mutated = set.clone();
            let target = rng.below(mutated.len().min(3));
            let m = &mut mutated[target].1;
            for _ in 0..1 + rng.below(6) {
                let i = rng.below(m.len());
                match rng.below(4) {
                    0 => m[i] = rng.next() as u8,
                    1 => m[i] ^= 1 << rng.below(8),
                    2 => m[i] = [0, 0xFF, 0x7F, 0x80][rng.below(4)],
                    _ => m.truncate(i.max(1)),
                }
            }
            let _ = read(&as_refs(&mutated));
        }
    }
}
