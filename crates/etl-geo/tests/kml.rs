#![allow(clippy::unwrap_used, clippy::expect_used)]
//! KML reader: golden fixtures (fixtures/formats/kml/X.kml → X.geojson), the togeojson
//! peer fixtures with a table of deliberate differences, hostile inputs, and a
//! random-mutation no-panic loop.

mod common;

use std::io::Cursor;
use std::path::{Path, PathBuf};

use etl_geo::{Format, ReadError, ReadOptions, feature_to_json, open};
use serde_json::{Value, json};

/// Every record as JSON (a rejection as `{"rejected": reason}`) and the fatal error.
fn read(bytes: &[u8]) -> (Vec<Value>, Option<ReadError>) {
    let source = match open(
        Format::Kml,
        Box::new(Cursor::new(bytes.to_vec())),
        &ReadOptions::default(),
    ) {
        Ok(s) => s,
        Err(e) => return (Vec::new(), Some(e)),
    };
    let mut out = Vec::new();
    let mut ordinal = 0;
    let mut line = 1;
    for item in source {
        match item {
            Ok(record) => {
                assert_eq!(record.ordinal, ordinal);
                assert_eq!(record.layer, 0);
                assert!(record.line >= line, "line went back");
                line = record.line;
                ordinal += 1;
                out.push(match record.feature {
                    Ok(f) => feature_to_json(&f),
                    Err(r) => json!({ "rejected": r.reason }),
                });
            }
            Err(e) => return (out, Some(e)),
        }
    }
    (out, None)
}

fn fixtures_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../fixtures/formats/kml")
}

fn kml_files(dir: &Path) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "kml"))
        .collect();
    v.sort();
    v
}

/// Golden fixtures: every `X.kml` has `X.geojson`, a FeatureCollection whose `features`
/// are the records in order (a rejected record is `{"rejected": "reason"}`).
/// `KML_BLESS=1` rewrites the expected files (review the diff!).
#[test]
fn golden_fixtures() {
    let files = kml_files(&fixtures_dir());
    assert!(files.len() >= 8, "golden fixtures missing");
    let bless = std::env::var_os("KML_BLESS").is_some();
    for kml in files {
        let (records, err) = read(&std::fs::read(&kml).unwrap());
        assert!(err.is_none(), "{}: {err:?}", kml.display());
        let got = json!({ "type": "FeatureCollection", "features": records });
        let expected_path = kml.with_extension("geojson");
        if bless {
            std::fs::write(
                &expected_path,
                serde_json::to_string_pretty(&got).unwrap() + "\n",
            )
            .unwrap();
            continue;
        }
        let expected: Value =
            serde_json::from_slice(&std::fs::read(&expected_path).unwrap()).unwrap();
        assert_eq!(
            got,
            expected,
            "{}:\n{}",
            kml.display(),
            serde_json::to_string_pretty(&got).unwrap()
        );
    }
}

// ---------------------------------------------------------------------------------------
// togeojson peer fixtures

#[derive(Clone, Copy, PartialEq, Debug)]
enum Diff {
    /// We emit Multi* for a homogeneous MultiGeometry / gx:MultiTrack (togeojson: a
    /// GeometryCollection of the parts, or the bare part when there is one); and a
    /// MultiTrack's `coordinateProperties.times` is always an array of arrays. Compared
    /// after exploding our Multi* the way togeojson would.
    Multi,
    /// Broken coordinates reject the record; togeojson emits a null geometry. Compared:
    /// each of those expected features is a rejection here.
    Rejected,
    /// No feature here (NetworkLink is not read); togeojson makes one from its Region.
    Skipped,
    /// A gx:Track of exactly two coords is a LineString here; togeojson makes a Point of
    /// the first coord (it needs more than two). Compared as that Point.
    TwoCoordTrack,
}

/// Deliberate differences, per fixture. Besides these, for every fixture:
/// coordinates are compared in 2D (the expected third value is dropped); a togeojson
/// HTML description `{"@type":"html","value":v}` is compared, trimmed, with our plain
/// string description (we always emit a string); our `path` property (Folder names) is
/// not in togeojson's `kml()` output and is ignored; the `bbox` member togeojson adds to
/// GroundOverlay features is ignored (the feature model has no bbox).
const DIFFERENCES: &[(&str, Diff, &str)] = &[
    (
        "bad.kml",
        Diff::Rejected,
        "'no,no' coordinates: a rejection naming the placemark, not a null geometry",
    ),
    (
        "gxmultitrack.kml",
        Diff::Multi,
        "gx:MultiTrack of two tracks → MultiLineString, togeojson: GeometryCollection",
    ),
    (
        "multitrack.kml",
        Diff::Multi,
        "gx:MultiTrack of one track → MultiLineString and times [[…]], togeojson: LineString and times […]",
    ),
    (
        "non_gx_multitrack.kml",
        Diff::Multi,
        "MultiTrack of one track → MultiLineString and times [[…]], togeojson: LineString and times […]",
    ),
    (
        "multigeometry.kml",
        Diff::Multi,
        "MultiGeometry of LineStrings → MultiLineString, togeojson: GeometryCollection",
    ),
    (
        "multigeometry_sibling.kml",
        Diff::Multi,
        "nested MultiGeometry of LineStrings → one flattened MultiLineString, togeojson: GeometryCollection",
    ),
    (
        "addresses.kml",
        Diff::TwoCoordTrack,
        "two-coord gx:Track → LineString, togeojson: Point of the first coord",
    ),
    (
        "networklink.kml",
        Diff::Skipped,
        "NetworkLink is not read (it points at remote content); togeojson makes a Region polygon feature",
    ),
];

fn strip_z(v: &Value) -> Value {
    match v {
        Value::Array(a) if a.iter().all(Value::is_number) && a.len() >= 2 => {
            Value::Array(a[..2].to_vec())
        }
        Value::Array(a) => Value::Array(a.iter().map(strip_z).collect()),
        other => other.clone(),
    }
}

fn strip_geometry_z(g: &Value) -> Value {
    match g {
        Value::Object(m) => {
            let mut m = m.clone();
            if let Some(c) = m.get("coordinates") {
                let c = strip_z(c);
                m.insert("coordinates".into(), c);
            }
            if let Some(Value::Array(gs)) = m.get("geometries") {
                let gs: Vec<Value> = gs.iter().map(strip_geometry_z).collect();
                m.insert("geometries".into(), Value::Array(gs));
            }
            Value::Object(m)
        }
        other => other.clone(),
    }
}

/// Numbers as f64, so that `-126` (togeojson) equals `-126.0` (ours).
fn numbers_as_f64(v: &Value) -> Value {
    match v {
        Value::Number(n) => n
            .as_f64()
            .and_then(serde_json::Number::from_f64)
            .map_or(Value::Null, Value::Number),
        Value::Array(a) => Value::Array(a.iter().map(numbers_as_f64).collect()),
        Value::Object(m) => Value::Object(
            m.iter()
                .map(|(k, v)| (k.clone(), numbers_as_f64(v)))
                .collect(),
        ),
        other => other.clone(),
    }
}

/// Our Multi* as togeojson would emit it: one part → the part, more → a
/// GeometryCollection of the parts; MultiTrack times [[…]] of one track → […].
fn explode_multi(f: &Value) -> Value {
    let mut f = f.clone();
    let g = f["geometry"].clone();
    let single = match g["type"].as_str() {
        Some("MultiPoint") => Some("Point"),
        Some("MultiLineString") => Some("LineString"),
        Some("MultiPolygon") => Some("Polygon"),
        _ => None,
    };
    if let Some(single) = single {
        let parts: Vec<Value> = g["coordinates"]
            .as_array()
            .unwrap()
            .iter()
            .map(|c| json!({"type": single, "coordinates": c}))
            .collect();
        f["geometry"] = if parts.len() == 1 {
            parts[0].clone()
        } else {
            json!({"type": "GeometryCollection", "geometries": parts})
        };
    }
    if let Some(times) = f["properties"]
        .get_mut("coordinateProperties")
        .and_then(|c| c.get_mut("times"))
        && let Some(a) = times.as_array()
        && a.len() == 1
        && a[0].is_array()
    {
        *times = a[0].clone();
    }
    f
}

/// The expected feature reduced to what we compare.
fn normalize_expected(f: &Value) -> Value {
    let mut f = f.clone();
    let obj = f.as_object_mut().unwrap();
    obj.remove("bbox");
    let g = strip_geometry_z(&obj["geometry"]);
    obj.insert("geometry".into(), g);
    if let Some(d) = obj
        .get_mut("properties")
        .and_then(|p| p.get_mut("description"))
        && let Some(v) = d.get("value").and_then(Value::as_str)
    {
        *d = Value::String(v.trim().to_owned());
    }
    f
}

fn normalize_ours(f: &Value, expected: &Value) -> Value {
    let mut f = f.clone();
    let props = f["properties"].as_object_mut().unwrap();
    props.remove("path");
    // An HTML description is compared trimmed.
    if expected["properties"]["description"].is_object()
        && let Some(Value::String(d)) = props.get_mut("description")
    {
        *d = d.trim().to_owned();
    }
    f
}

#[test]
fn togeojson_peer_fixtures() {
    let dir = common::peer_fixtures("togeojson/data");
    let dir = dir.as_path();
    let files = kml_files(dir);
    assert!(files.len() >= 30);
    let mut failures = Vec::new();
    let mut used = Vec::new();
    for kml in &files {
        let name = kml.file_name().unwrap().to_str().unwrap().to_owned();
        let diff = DIFFERENCES
            .iter()
            .find(|(f, _, _)| *f == name)
            .map(|(_, d, _)| *d);
        let expected: Value =
            serde_json::from_slice(&std::fs::read(dir.join(format!("{name}.geojson"))).unwrap())
                .unwrap();
        let raw: Vec<Value> = expected["features"].as_array().unwrap().clone();
        let expected: Vec<Value> = raw.iter().map(normalize_expected).collect();
        let (records, err) = read(&std::fs::read(kml).unwrap());
        if let Some(e) = err {
            failures.push(format!("{name}: fatal error {e}"));
            continue;
        }
        let compare = |records: &[Value], diff: Option<Diff>| -> Result<(), String> {
            if diff == Some(Diff::Skipped) {
                return if records.is_empty() {
                    Ok(())
                } else {
                    Err(format!("{} records, expected none", records.len()))
                };
            }
            if records.len() != expected.len() {
                return Err(format!(
                    "{} records, togeojson has {} features",
                    records.len(),
                    expected.len()
                ));
            }
            for (i, ((got, want), raw)) in records.iter().zip(&expected).zip(&raw).enumerate() {
                if diff == Some(Diff::Rejected) && want["geometry"].is_null() {
                    if got.get("rejected").is_none() {
                        return Err(format!("feature {i}: expected a rejection, got {got}"));
                    }
                    continue;
                }
                if got.get("rejected").is_some() {
                    return Err(format!("feature {i}: rejected: {got}"));
                }
                let mut got = normalize_ours(got, raw);
                if diff == Some(Diff::Multi) {
                    got = explode_multi(&got);
                }
                if diff == Some(Diff::TwoCoordTrack)
                    && got["geometry"]["type"] == "LineString"
                    && got["geometry"]["coordinates"].as_array().map(Vec::len) == Some(2)
                {
                    let first = got["geometry"]["coordinates"][0].clone();
                    got["geometry"] = json!({"type": "Point", "coordinates": first});
                }
                let got = numbers_as_f64(&got);
                if got != numbers_as_f64(want) {
                    return Err(format!(
                        "feature {i}:\n  ours:     {got}\n  togeojson {want}"
                    ));
                }
            }
            Ok(())
        };
        match compare(&records, diff) {
            Ok(()) => {
                if diff.is_some() {
                    used.push(name.clone());
                    if compare(&records, None).is_ok() {
                        failures.push(format!("{name}: listed difference no longer occurs"));
                    }
                }
            }
            Err(e) => failures.push(format!("{name}: {e}")),
        }
    }
    for (f, _, _) in DIFFERENCES {
        assert!(
            files.iter().any(|p| p.ends_with(f)),
            "difference listed for missing fixture {f}"
        );
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

// ---------------------------------------------------------------------------------------
// errors and hostile inputs

fn fatal(bytes: &[u8]) -> String {
    let (_, err) = read(bytes);
    let e = err.unwrap_or_else(|| panic!("no error for {}", String::from_utf8_lossy(bytes)));
    let msg = e.to_string();
    assert!(!msg.contains('\n'), "multi-line message: {msg}");
    msg
}

#[test]
fn not_kml_root() {
    let msg = fatal(b"<?xml version=\"1.0\"?><gpx><wpt lat=\"1\" lon=\"2\"/></gpx>");
    assert!(
        msg.contains("not a KML document: root element <gpx>"),
        "{msg}"
    );
    assert!(fatal(b"").contains("not a KML document"));
    assert!(fatal(b"garbage here").contains("not a KML document"));
    fatal(b"\x00\x01\x02\xff\xfe");
}

#[test]
fn billion_laughs_is_refused() {
    let doc = br#"<?xml version="1.0"?>
<!DOCTYPE kml [
 <!ENTITY lol "lol">
 <!ENTITY lol1 "&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;">
 <!ENTITY lol2 "&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;">
 <!ENTITY lol3 "&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;">
]>
<kml><Placemark><name>&lol3;</name></Placemark></kml>"#;
    let msg = fatal(doc);
    assert!(msg.contains("DTD"), "{msg}");
}

#[test]
fn external_entity_is_refused() {
    let doc = br#"<?xml version="1.0"?>
<!DOCTYPE kml [<!ENTITY x SYSTEM "file:///etc/passwd">]>
<kml><Placemark><name>&x;</name></Placemark></kml>"#;
    let msg = fatal(doc);
    assert!(msg.contains("DTD"), "{msg}");
    assert!(!msg.contains("root:"), "{msg}");
}

#[test]
fn undefined_entity_is_refused() {
    let (records, err) = read(b"<kml><Placemark><name>a &x; b</name></Placemark></kml>");
    assert!(records.is_empty());
    let msg = err.unwrap().to_string();
    assert!(msg.contains("undefined entity &x;"), "{msg}");
    // in an attribute, and at container level (a Document description)
    let msg = fatal(b"<kml><Placemark id=\"&x;\"><name>a</name></Placemark></kml>");
    assert!(msg.contains("x"), "{msg}");
    let msg = fatal(b"<kml><Document><description>&x;</description></Document></kml>");
    assert!(msg.contains("undefined entity &x;"), "{msg}");
}

#[test]
fn deep_nesting_is_refused() {
    let mut doc = String::from("<kml>");
    for _ in 0..10_000 {
        doc.push_str("<Folder>");
    }
    doc.push_str("<Placemark><Point><coordinates>1,2</coordinates></Point></Placemark>");
    for _ in 0..10_000 {
        doc.push_str("</Folder>");
    }
    doc.push_str("</kml>");
    let msg = fatal(doc.as_bytes());
    assert!(msg.contains("nested deeper"), "{msg}");
    // ...also inside a placemark.
    let mut doc = String::from("<kml><Placemark><ExtendedData>");
    for _ in 0..10_000 {
        doc.push_str("<x>");
    }
    let msg = fatal(doc.as_bytes());
    assert!(msg.contains("nested deeper"), "{msg}");
}

#[test]
fn truncated_document_is_an_error() {
    let full = std::fs::read(fixtures_dir().join("nested_folders.kml")).unwrap();
    let (all, err) = read(&full);
    assert!(err.is_none());
    for cut in [full.len() / 3, full.len() / 2, full.len() - 8] {
        let (records, err) = read(&full[..cut]);
        let msg = err
            .unwrap_or_else(|| panic!("no error when cut at {cut}"))
            .to_string();
        assert!(
            msg.contains("truncated") || msg.contains("XML"),
            "cut at {cut}: {msg}"
        );
        assert!(records.len() <= all.len());
    }
    let msg = fatal(b"<kml><Document><Placemark><name>x</name>");
    assert!(msg.contains("truncated"), "{msg}");
    let msg = fatal(b"<kml><Document>");
    assert!(msg.contains("truncated"), "{msg}");
}

#[test]
fn mismatched_tags_are_an_error() {
    let msg = fatal(b"<kml><Placemark><name>x</nome></Placemark></kml>");
    assert!(msg.contains("XML"), "{msg}");
}

/// Broken coordinates reject their placemark; degenerate ones (a line of one position, a
/// ring of two) are repaired into a point or a line instead.
#[test]
fn broken_coordinates_reject_one_record_and_reading_continues() {
    let doc = br#"<kml><Document>
<Placemark><name>bad point</name><Point><coordinates>1,x</coordinates></Point></Placemark>
<Placemark id="p2"><LineString><coordinates>1,2</coordinates></LineString></Placemark>
<Placemark><Polygon><outerBoundaryIs><LinearRing><coordinates>1,2 3,4 1,2</coordinates></LinearRing></outerBoundaryIs></Polygon></Placemark>
<Placemark><name>lonely</name><Point><coordinates>7</coordinates></Point></Placemark>
<Placemark><name>ok</name><Point><coordinates>1,2</coordinates></Point></Placemark>
</Document></kml>"#;
    let (records, err) = read(doc);
    assert!(err.is_none(), "{err:?}");
    assert_eq!(records.len(), 5);
    let reason = |i: usize| records[i]["rejected"].as_str().unwrap().to_owned();
    assert!(
        reason(0).starts_with("placemark 'bad point': "),
        "{}",
        reason(0)
    );
    assert!(reason(0).contains("'x'"), "{}", reason(0));
    assert_eq!(
        records[1]["geometry"],
        json!({"type": "Point", "coordinates": [1.0, 2.0]})
    );
    assert_eq!(
        records[2]["geometry"],
        json!({"type": "LineString", "coordinates": [[1.0, 2.0], [3.0, 4.0]]})
    );
    assert!(reason(3).contains("one value"), "{}", reason(3));
    assert_eq!(records[4]["geometry"]["coordinates"], json!([1.0, 2.0]));
}

// ---------------------------------------------------------------------------------------
// no panics on random mutations

struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }
}

const TOKENS: &[&[u8]] = &[
    b"<",
    b">",
    b"</",
    b"/>",
    b"<![CDATA[",
    b"]]>",
    b"&amp;",
    b"&#x41;",
    b"&#0;",
    b"&",
    b",",
    b" ",
    b"\n",
    b"-",
    b"e",
    b"NaN",
    b"1e999",
    b"<Placemark>",
    b"</Placemark>",
    b"<MultiGeometry>",
    b"<Point><coordinates>1,2</coordinates></Point>",
    b"<coordinates>",
    b"<gx:Track>",
    b"<gx:coord>",
    b"<Folder><name>f</name>",
    b"<styleUrl>#s</styleUrl>",
    b"\xff",
    b"\"",
];

#[test]
fn random_mutations_never_panic() {
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    let mut seeds: Vec<Vec<u8>> = kml_files(&fixtures_dir())
        .iter()
        .map(|p| std::fs::read(p).unwrap())
        .collect();
    let peer = common::peer_fixtures("togeojson/data");
    let peer_seeds = kml_files(&peer);
    assert!(peer_seeds.len() >= 12, "{}: {peer_seeds:?}", peer.display());
    for p in peer_seeds.into_iter().take(12) {
        seeds.push(std::fs::read(p).unwrap());
    }
    for round in 0..3000 {
        let mut doc = seeds[round % seeds.len()].clone();
        for _ in 0..1 + rng.below(6) {
            if doc.is_empty() {
                break;
            }
            let at = rng.below(doc.len());
            match rng.below(4) {
                0 => doc[at] = rng.next() as u8,
                1 => {
                    let end = (at + rng.below(40)).min(doc.len());
                    doc.drain(at..end);
                }
                2 => {
                    let t = TOKENS[rng.below(TOKENS.len())];
                    doc.splice(at..at, t.iter().copied());
                }
                _ => doc.truncate(at),
            }
        }
        let (_, err) = read(&doc);
        if let Some(e) = err {
            assert!(!e.to_string().contains('\n'));
        }
    }
}
