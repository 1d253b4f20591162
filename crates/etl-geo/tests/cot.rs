//! CoT reader: golden fixtures under `fixtures/formats/cot/`, the node-CoT peer fixtures, and a
//! no-panic loop over mutated fixtures.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::collections::BTreeMap;
use std::io::Cursor;
use std::path::{Path, PathBuf};

use etl_geo::{Format, ReadOptions, Record, feature_to_json, open};
use serde_json::{Value, json};

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../fixtures/formats/cot")
}

fn read(bytes: &[u8]) -> Result<Vec<Record>, String> {
    let source = open(
        Format::Cot,
        Box::new(Cursor::new(bytes.to_vec())),
        &ReadOptions::default(),
    )
    .map_err(|e| e.to_string())?;
    source
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| e.to_string())
}

fn records_json(records: &[Record]) -> Value {
    Value::Array(
        records
            .iter()
            .map(|r| {
                let mut v = json!({"line": r.line, "ordinal": r.ordinal, "layer": r.layer});
                match &r.feature {
                    Ok(f) => v["feature"] = feature_to_json(f),
                    Err(rej) => v["rejected"] = json!(rej.reason),
                }
                v
            })
            .collect(),
    )
}

/// Each `X.cot` has `X.json` (the records) or `X.err` (the fatal error message).
/// `UPDATE_GOLDEN=1` rewrites them.
#[test]
fn golden_fixtures() {
    let update = std::env::var_os("UPDATE_GOLDEN").is_some();
    let mut entries: Vec<_> = std::fs::read_dir(fixtures())
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "cot"))
        .collect();
    entries.sort();
    assert!(entries.len() >= 8, "golden fixtures missing");
    for path in entries {
        let bytes = std::fs::read(&path).unwrap();
        let json_path = path.with_extension("json");
        let err_path = path.with_extension("err");
        match read(&bytes) {
            Ok(records) => {
                let got = records_json(&records);
                if update {
                    let _ = std::fs::remove_file(&err_path);
                    std::fs::write(
                        &json_path,
                        serde_json::to_string_pretty(&got).unwrap() + "\n",
                    )
                    .unwrap();
                    continue;
                }
                let want: Value = serde_json::from_str(
                    &std::fs::read_to_string(&json_path)
                        .unwrap_or_else(|_| panic!("{} missing", json_path.display())),
                )
                .unwrap();
                assert_eq!(got, want, "{}", path.display());
            }
            Err(message) => {
                assert!(!message.contains('\n'), "{message}");
                if update {
                    let _ = std::fs::remove_file(&json_path);
                    std::fs::write(&err_path, message + "\n").unwrap();
                    continue;
                }
                let want = std::fs::read_to_string(&err_path)
                    .unwrap_or_else(|_| panic!("{}: unexpected error {message}", path.display()));
                assert_eq!(message, want.trim_end(), "{}", path.display());
            }
        }
    }
}

// ---------------------------------------------------------------------------------------
// node-CoT peer fixtures

/// The properties we map the node-CoT way and therefore compare. Other properties (node-CoT's
/// `metadata`, `path`, `fileshare`, `mission`, `video`, `sensor`…, and our generic detail
/// children, `hae`, `ce`, `le`) are not compared.
const COMPARED: &[&str] = &[
    "type",
    "how",
    "time",
    "start",
    "stale",
    "callsign",
    "remarks",
    "center",
    "contact",
    "group",
    "status",
    "takv",
    "precisionlocation",
    "course",
    "speed",
    "slope",
    "droid",
    "links",
    "archived",
    "labels",
    "flow",
    "creator",
    "icon",
    "stroke",
    "stroke-opacity",
    "stroke-width",
    "stroke-style",
    "fill",
    "fill-opacity",
    "marker-color",
    "marker-opacity",
    "shape",
];

/// Deliberate differences from node-CoT: (fixture, aspect, reason). Aspects: `geometry`,
/// `id`, `properties.KEY`.
const DIFFERENCES: &[(&str, &str, &str)] = &[
    (
        "*",
        "properties.callsign",
        "an event without contact@callsign has no callsign (node-CoT invents \"UNKNOWN\")",
    ),
    (
        "xml/cot-shapes-basic-circle.xml",
        "geometry",
        "circles/ellipses stay the center Point plus shape.ellipse (node-CoT draws a 64-vertex polygon)",
    ),
    (
        "xml/cot-user-draw-parse-u-d-c-c-circle-transparent.xml",
        "geometry",
        "circles/ellipses stay the center Point plus shape.ellipse (node-CoT draws a 64-vertex polygon)",
    ),
    (
        "xml/cot-user-draw-parse-u-d-c-c-circle-filled.xml",
        "geometry",
        "circles/ellipses stay the center Point plus shape.ellipse (node-CoT draws a 64-vertex polygon)",
    ),
    (
        "xmljs/cot-range-and-bearing-decode-range-bearing.xml",
        "geometry",
        "u-rb-a range & bearing stays the origin Point (node-CoT computes the far end with turf)",
    ),
];

/// Loose equality: numbers by value, numeric strings equal to numbers, "true"/"false" equal to
/// booleans (the xmljs fixtures are re-serialised, so attribute types are lost).
fn json_eq(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::Number(x), Value::Number(y)) => {
            let (x, y) = (x.as_f64().unwrap(), y.as_f64().unwrap());
            x == y || (x - y).abs() <= 1e-9 * x.abs().max(y.abs())
        }
        (Value::String(s), Value::Number(_)) | (Value::Number(_), Value::String(s)) => {
            let n = if a.is_number() { a } else { b };
            s.trim().parse::<f64>().is_ok_and(|x| json_eq(&json!(x), n))
        }
        (Value::String(s), Value::Bool(v)) | (Value::Bool(v), Value::String(s)) => {
            s.eq_ignore_ascii_case(if *v { "true" } else { "false" })
        }
        (Value::Array(x), Value::Array(y)) => {
            x.len() == y.len() && x.iter().zip(y).all(|(a, b)| json_eq(a, b))
        }
        (Value::Object(x), Value::Object(y)) => {
            x.len() == y.len()
                && x.iter()
                    .all(|(k, v)| y.get(k).is_some_and(|w| json_eq(v, w)))
        }
        _ => a == b,
    }
}

fn flatten_2d(v: &Value) -> Value {
    match v {
        Value::Array(items) if items.first().is_some_and(Value::is_number) => {
            Value::Array(items.iter().take(2).cloned().collect())
        }
        Value::Array(items) => Value::Array(items.iter().map(flatten_2d).collect()),
        other => other.clone(),
    }
}

fn peer_differences(got: &Value, want: &Value, flow_deleted: bool) -> BTreeMap<String, String> {
    let mut diffs = BTreeMap::new();
    if got["id"] != want["id"] {
        diffs.insert("id".into(), format!("{} vs {}", got["id"], want["id"]));
    }
    let g = json!({"type": got["geometry"]["type"], "coordinates": flatten_2d(&got["geometry"]["coordinates"])});
    let w = json!({"type": want["geometry"]["type"], "coordinates": flatten_2d(&want["geometry"]["coordinates"])});
    if !json_eq(&g, &w) {
        diffs.insert("geometry".into(), format!("{g} vs {w}"));
    }
    for key in COMPARED {
        if *key == "flow" && flow_deleted {
            continue;
        }
        let (a, b) = (got["properties"].get(*key), want["properties"].get(*key));
        let same = match (a, b) {
            (Some(a), Some(b)) => json_eq(a, b),
            (None, None) => true,
            _ => false,
        };
        if !same {
            diffs.insert(format!("properties.{key}"), format!("{a:?} vs {b:?}"));
        }
    }
    diffs
}

#[test]
fn node_cot_peer_fixtures() {
    let dir = common::peer_fixtures("node-cot");
    let dir = dir.as_path();
    let index = std::fs::read_to_string(dir.join("index.json"))
        .unwrap_or_else(|e| panic!("peer fixture {}/index.json: {e}", dir.display()));
    let index: Vec<Value> = serde_json::from_str(&index).unwrap();
    assert!(index.len() >= 40);
    let mut failures = Vec::new();
    let mut used = vec![false; DIFFERENCES.len()];
    let mut compared = 0;
    for case in &index {
        let xml = case["xml"].as_str().unwrap();
        let bytes = std::fs::read(dir.join(xml)).unwrap();
        let result = read(&bytes);
        let checks = case["checks"].as_str().unwrap_or("");
        if xml.contains("from-xml-invalid") {
            let refused = match &result {
                Err(_) => true,
                Ok(records) => records.iter().all(|r| r.feature.is_err()),
            };
            if !refused {
                failures.push(format!("{xml}: should be refused"));
            }
            continue;
        }
        let records = match result {
            Ok(records) => records,
            Err(e) => {
                failures.push(format!("{xml}: fatal error {e}"));
                continue;
            }
        };
        if records.len() != 1 {
            failures.push(format!("{xml}: {} records", records.len()));
            continue;
        }
        let got = match &records[0].feature {
            Ok(f) => feature_to_json(f),
            Err(r) => {
                failures.push(format!("{xml}: rejected: {}", r.reason));
                continue;
            }
        };
        // The partial assertions node-CoT makes for the XML-only cases.
        if checks.contains("course == 137.23542786")
            && (got["properties"]["course"] != json!(137.23542786)
                || got["properties"].get("speed").is_some())
        {
            failures.push(format!("{xml}: course/speed check failed"));
        }
        if checks.contains("properties.center ==")
            && (!json_eq(
                &got["properties"]["center"],
                &json!([-102.7876738, 39.9127697, 1287.178]),
            ) || !got["properties"]["shape"]["ellipse"].is_object())
        {
            failures.push(format!("{xml}: center/ellipse check failed"));
        }
        if checks.contains("properties.labels == false")
            && got["properties"]["labels"] != json!(false)
        {
            failures.push(format!("{xml}: labels check failed"));
        }
        if checks.contains("hae) is NaN")
            && !json_eq(
                &got["geometry"],
                &json!({"type": "Point", "coordinates": [0, 0]}),
            )
        {
            failures.push(format!("{xml}: NaN hae check failed"));
        }
        let Some(expected) = case["expected"].as_str() else {
            continue;
        };
        compared += 1;
        let want: Value =
            serde_json::from_str(&std::fs::read_to_string(dir.join(expected)).unwrap()).unwrap();
        let flow_deleted = case["expected_note"]
            .as_str()
            .is_some_and(|n| n.contains("flow"));
        for (aspect, detail) in peer_differences(&got, &want, flow_deleted) {
            match DIFFERENCES
                .iter()
                .position(|(f, a, _)| (*f == xml || *f == "*") && *a == aspect)
            {
                Some(i) => used[i] = true,
                None => failures.push(format!("{xml}: {aspect}: {detail}")),
            }
        }
    }
    for (i, used) in used.iter().enumerate() {
        if !used {
            failures.push(format!("stale difference entry {:?}", DIFFERENCES[i]));
        }
    }
    assert!(compared >= 20, "only {compared} expected outputs compared");
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

// ---------------------------------------------------------------------------------------
// robustness

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
    b"/",
    b"\"",
    b"'",
    b"=",
    b"&amp;",
    b"&#0;",
    b"<![CDATA[",
    b"]]>",
    b"<event>",
    b"</event>",
    b"<events>",
    b"</events>",
    b"<detail>",
    b"<point lat=\"1\" lon=\"2\"/>",
    b"<link point=\"1,2\"/>",
    b"<?xml version=\"1.0\"?>",
    b"<!DOCTYPE x>",
    b"\xff",
    b"\n",
    b"type=\"u-d-r\"",
];

fn mutate(rng: &mut Rng, input: &[u8]) -> Vec<u8> {
    let mut out = input.to_vec();
    for _ in 0..1 + rng.below(4) {
        let at = rng.below(out.len() + 1);
        match rng.below(4) {
            0 => out.truncate(at),
            1 if at < out.len() => out[at] = rng.next() as u8,
            2 => {
                let token = TOKENS[rng.below(TOKENS.len())];
                out.splice(at..at, token.iter().copied());
            }
            _ => {
                let end = (at + rng.below(16)).min(out.len());
                out.drain(at..end);
            }
        }
    }
    out
}

fn drain(bytes: &[u8]) {
    let Ok(source) = open(
        Format::Cot,
        Box::new(Cursor::new(bytes.to_vec())),
        &ReadOptions::default(),
    ) else {
        return;
    };
    let mut failed = false;
    let mut ordinal = 0;
    let mut line = 0;
    for item in source {
        assert!(!failed, "an item followed an error");
        match item {
            Ok(record) => {
                assert_eq!(record.ordinal, ordinal);
                assert!(record.line >= line.max(1));
                assert_eq!(record.layer, 0);
                ordinal += 1;
                line = record.line;
            }
            Err(e) => {
                failed = true;
                assert!(!e.to_string().contains('\n'));
            }
        }
    }
}

#[test]
fn mutated_fixtures_never_panic() {
    let mut inputs: Vec<Vec<u8>> = Vec::new();
    let peer = common::peer_fixtures("node-cot");
    for dir in [fixtures(), peer.join("xml"), peer.join("xmljs")] {
        let entries = std::fs::read_dir(&dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display()));
        for e in entries {
            let p = e.unwrap().path();
            if p.extension().is_some_and(|e| e == "cot" || e == "xml") {
                inputs.push(std::fs::read(p).unwrap());
            }
        }
    }
    let mut rng = Rng(0x2545_F491_4F6C_DD1D);
    for input in &inputs {
        drain(input);
        for _ in 0..150 {
            drain(&mutate(&mut rng, input));
        }
    }
}
