//! S3 events end to end against the S3 server scripts/test.sh starts: an upload notified by
//! an S3 notification is imported; the same event again rewrites nothing; a newer version (an
//! EventBridge event in ETL_EVENT) is imported; an older event after it changes nothing;
//! Batch-parameter runs; the size limit is applied from HEAD, before the object is read.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use serde_json::{Value, json};
use support::{PEER, Run, S3, bucket_of, etl_events, layout, sha256_hex};

fn notification(bucket: &str, raw_key: &str, etag: &str, sequencer: &str) -> String {
    json!({"Records": [{
        "eventVersion": "2.1", "eventSource": "aws:s3", "awsRegion": "us-east-1",
        "eventName": "ObjectCreated:Put",
        "s3": {"bucket": {"name": bucket}, "object": {"key": raw_key, "size": 1, "eTag": etag, "sequencer": sequencer}}
    }]})
    .to_string()
}

fn eventbridge(bucket: &str, key: &str, etag: &str, sequencer: &str) -> String {
    json!({
        "version": "0", "detail-type": "Object Created", "source": "aws.s3",
        "time": "2026-12-04T12:00:00Z", "region": "us-east-1",
        "detail": {"bucket": {"name": bucket}, "object": {"key": key, "size": 1, "etag": etag, "sequencer": sequencer}}
    })
    .to_string()
}

fn run_event_file(event: &str, output: &str) -> Run {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("event.json");
    std::fs::write(&path, event).unwrap();
    Run::from_output(
        etl_events()
            .env("ETL_ALLOW_SOURCE", bucket_of(output))
            .args(["--event", path.to_str().unwrap(), "--output", output])
            .output()
            .unwrap(),
    )
}

fn kml(name: &str) -> Vec<u8> {
    format!(
        r#"<?xml version="1.0"?><kml xmlns="http://www.opengis.net/kml/2.2"><Document><Placemark><name>{name}</name><LineString><coordinates>-105.1,39.7 -105.0,39.8 -104.9,39.75</coordinates></LineString></Placemark></Document></kml>"#
    )
    .into_bytes()
}

const KEY: &str = "import/team alpha/route 1.kml";
const RAW_KEY: &str = "import/team+alpha/route+1.kml";
/// The output name of KEY, below `processed/` and the bucket.
fn out_of(s3: &S3) -> String {
    format!("processed/{}/import/team alpha/route 1", s3.bucket)
}

/// The key of the output of `kind` that the manifest `out.json` names.
fn output_key(s3: &S3, out: &str, kind: &str) -> String {
    let (bytes, _) = s3.get(&format!("{out}.json")).unwrap();
    let m: Value = serde_json::from_slice(&bytes).unwrap();
    let url = m["outputs"]
        .as_array()
        .unwrap()
        .iter()
        .find(|o| o["kind"] == kind)
        .unwrap()["url"]
        .as_str()
        .unwrap()
        .to_owned();
    url.strip_prefix(&format!("s3://{}/", s3.bucket))
        .unwrap()
        .to_owned()
}

#[test]
fn the_same_event_twice_and_events_out_of_order() {
    let s3 = S3::new();
    let output = format!("s3://{}/processed/", s3.bucket);
    #[allow(non_snake_case)]
    let OUT = out_of(&s3);
    let etag1 = s3.put(KEY, kml("first"));

    // 1. The notification imports it.
    let r = run_event_file(
        &notification(&s3.bucket, RAW_KEY, &etag1, "0055AED6DCD90281A0"),
        &output,
    );
    r.assert_code(0);
    assert_eq!(r.status(), "succeeded");
    assert_eq!(
        layout(&s3.keys("processed/")),
        [
            format!("{OUT}.V.geojsonl"),
            format!("{OUT}.V.pmtiles"),
            format!("{OUT}.json"),
        ]
    );
    let (manifest_bytes, manifest_etag) = s3.get(&format!("{OUT}.json")).unwrap();
    let manifest: Value = serde_json::from_slice(&manifest_bytes).unwrap();
    assert_eq!(
        manifest["source"]["url"],
        format!("s3://{}/{KEY}", s3.bucket)
    );
    assert_eq!(manifest["source"]["etag"], etag1);
    assert_eq!(manifest["format"], "kml");
    assert_eq!(manifest["features"], 1);
    for o in manifest["outputs"].as_array().unwrap() {
        let url = o["url"].as_str().unwrap();
        let key = url.strip_prefix(&format!("s3://{}/", s3.bucket)).unwrap();
        let (bytes, _) = s3.get(key).unwrap();
        assert_eq!(sha256_hex(&bytes), o["sha256"].as_str().unwrap(), "{url}");
        assert_eq!(bytes.len() as u64, o["bytes"].as_u64().unwrap());
    }
    let pmtiles_key = output_key(&s3, &OUT, "pmtiles");
    let (_, pmtiles_etag) = s3.get(&pmtiles_key).unwrap();

    // 2. Delivered again: nothing is rewritten.
    let again = run_event_file(
        &notification(&s3.bucket, RAW_KEY, &etag1, "0055AED6DCD90281A0"),
        &output,
    );
    again.assert_code(0);
    assert_eq!(again.status(), "skipped");
    assert!(again.stderr.contains("unchanged"), "{}", again.stderr);
    assert_eq!(s3.get(&format!("{OUT}.json")).unwrap().1, manifest_etag);
    assert_eq!(s3.get(&pmtiles_key).unwrap().1, pmtiles_etag);

    // 3. A new version, announced by EventBridge through ETL_EVENT.
    let etag2 = s3.put(KEY, kml("second"));
    let r = Run::from_output(
        etl_events()
            .env("ETL_ALLOW_SOURCE", bucket_of(&output))
            .env(
                "ETL_EVENT",
                eventbridge(&s3.bucket, KEY, &etag2, "0055AED6DCD90281B0"),
            )
            .args(["--output", &output])
            .output()
            .unwrap(),
    );
    r.assert_code(0);
    assert_eq!(r.status(), "succeeded");
    let (bytes, newer_manifest_etag) = s3.get(&format!("{OUT}.json")).unwrap();
    let newer: Value = serde_json::from_slice(&bytes).unwrap();
    assert_eq!(newer["source"]["etag"], etag2);
    let (lines, _) = s3.get(&output_key(&s3, &OUT, "geojsonl")).unwrap();
    assert!(String::from_utf8(lines).unwrap().contains("second"));
    // The first version stays readable for the grace period, listed as superseded.
    assert_eq!(
        newer["superseded"][1]["file"]
            .as_str()
            .map(|f| f.ends_with(".pmtiles")),
        Some(true)
    );
    assert!(
        s3.get(&pmtiles_key).is_some(),
        "the superseded archive was deleted at once"
    );

    // 4. The first event arrives late: older by sequencer, it changes nothing.
    let late = run_event_file(
        &notification(&s3.bucket, RAW_KEY, &etag1, "0055AED6DCD90281A0"),
        &output,
    );
    late.assert_code(0);
    assert_eq!(late.status(), "skipped");
    assert!(late.stderr.contains("stale"), "{}", late.stderr);
    assert_eq!(
        s3.get(&format!("{OUT}.json")).unwrap().1,
        newer_manifest_etag
    );

    // 5. The Batch job definition's parameters name the same object: a no-op.
    let r = Run::from_output(
        etl_events()
            .env("ETL_ALLOW_SOURCE", format!("s3://{}/", s3.bucket))
            .args([
                "--bucket",
                &s3.bucket,
                "--key",
                KEY,
                "--etag",
                &etag2,
                "--sequencer",
                "0055AED6DCD90281B0",
            ])
            .args(["--output", &output])
            .output()
            .unwrap(),
    );
    r.assert_code(0);
    assert_eq!(r.status(), "skipped");
    assert_eq!(
        s3.get(&format!("{OUT}.json")).unwrap().1,
        newer_manifest_etag
    );
}

#[test]
fn several_records_bad_data_and_size_limits() {
    let s3 = S3::new();
    let output = format!("s3://{}/out/", s3.bucket);
    let gpx = std::fs::read(format!("{PEER}/togeojson/data/run.gpx")).unwrap();
    let good = s3.put("import/run.gpx", gpx);
    let bad = s3.put("import/notes.txt", b"just some notes\n".to_vec());
    let event = json!({"Records": [
        {"eventSource": "aws:s3", "eventName": "ObjectCreated:Put",
         "s3": {"bucket": {"name": s3.bucket}, "object": {"key": "import/notes.txt", "eTag": bad, "sequencer": "01"}}},
        {"eventSource": "aws:s3", "eventName": "ObjectCreated:Put",
         "s3": {"bucket": {"name": s3.bucket}, "object": {"key": "import/run.gpx", "eTag": good, "sequencer": "02"}}}
    ]})
    .to_string();
    // The bad upload fails the run (65: no retry), the good one is imported anyway.
    let r = run_event_file(&event, &output);
    r.assert_code(65);
    assert!(
        r.error().contains("notes.txt") && r.error().contains("unsupported input format"),
        "{}",
        r.error()
    );
    let b = &s3.bucket;
    assert_eq!(
        layout(&s3.keys("out/")),
        [
            format!("out/{b}/import/run.V.geojsonl"),
            format!("out/{b}/import/run.V.pmtiles"),
            format!("out/{b}/import/run.json"),
        ]
    );

    // Over the limit: refused from HEAD's size, nothing written.
    let big = s3.put("import/big.kml", kml("big"));
    let r = Run::from_output(
        etl_events()
            .env("ETL_ALLOW_SOURCE", format!("s3://{}/", s3.bucket))
            .args([
                "--bucket",
                &s3.bucket,
                "--key",
                "import/big.kml",
                "--etag",
                &big,
            ])
            .args([
                "--output",
                &format!("s3://{}/limited/", s3.bucket),
                "--max-bytes",
                "64",
            ])
            .output()
            .unwrap(),
    );
    r.assert_code(65);
    assert!(r.error().contains("over the limit of 64"), "{}", r.error());
    assert!(s3.keys("limited/").is_empty());

    // An object overwritten since its event is left to the newer event.
    let r = Run::from_output(
        etl_events()
            .env("ETL_ALLOW_SOURCE", format!("s3://{}/", s3.bucket))
            .args([
                "--bucket",
                &s3.bucket,
                "--key",
                "import/big.kml",
                "--etag",
                "0123456789abcdef",
            ])
            .args(["--output", &format!("s3://{}/changed/", s3.bucket)])
            .output()
            .unwrap(),
    );
    r.assert_code(0);
    assert_eq!(r.status(), "skipped");
    assert!(s3.keys("changed/").is_empty());
}
