//! S3 events end to end against the S3 server scripts/test.sh starts: an upload notified by
//! an S3 notification is imported; the same event again rewrites nothing; a newer version (an
//! EventBridge event in ETL_EVENT) is imported; an older event after it changes nothing;
//! Batch-parameter runs; the size limit is applied from HEAD, before the object is read.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use etl_core::store::{S3Config, S3Store};
use serde_json::{Value, json};
use support::{PEER, Run, etl_events, s3_endpoint, sha256_hex, unique};

struct S3 {
    client: aws_sdk_s3::Client,
    rt: tokio::runtime::Runtime,
    bucket: String,
}

impl S3 {
    fn new() -> S3 {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let client = rt.block_on(async {
            S3Store::connect(S3Config {
                endpoint: Some(s3_endpoint()),
                ..Default::default()
            })
            .await
            .unwrap()
            .client()
            .clone()
        });
        let bucket = unique("uploads");
        rt.block_on(client.create_bucket().bucket(&bucket).send())
            .unwrap();
        S3 { client, rt, bucket }
    }

    /// Puts an object; returns its ETag without quotes.
    fn put(&self, key: &str, bytes: Vec<u8>) -> String {
        let out = self
            .rt
            .block_on(
                self.client
                    .put_object()
                    .bucket(&self.bucket)
                    .key(key)
                    .body(bytes.into())
                    .send(),
            )
            .unwrap();
        out.e_tag().unwrap().trim_matches('"').to_owned()
    }

    fn get(&self, key: &str) -> Option<(Vec<u8>, String)> {
        let out = self
            .rt
            .block_on(
                self.client
                    .get_object()
                    .bucket(&self.bucket)
                    .key(key)
                    .send(),
            )
            .ok()?;
        let etag = out.e_tag().unwrap_or_default().to_owned();
        let bytes = self
            .rt
            .block_on(out.body.collect())
            .unwrap()
            .into_bytes()
            .to_vec();
        Some((bytes, etag))
    }

    fn keys(&self, prefix: &str) -> Vec<String> {
        let out = self
            .rt
            .block_on(
                self.client
                    .list_objects_v2()
                    .bucket(&self.bucket)
                    .prefix(prefix)
                    .send(),
            )
            .unwrap();
        let mut keys: Vec<String> = out
            .contents()
            .iter()
            .filter_map(|o| o.key().map(str::to_owned))
            .collect();
        keys.sort();
        keys
    }
}

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
const OUT: &str = "processed/import/team alpha/route 1";

#[test]
fn the_same_event_twice_and_events_out_of_order() {
    let s3 = S3::new();
    let output = format!("s3://{}/processed/", s3.bucket);
    let etag1 = s3.put(KEY, kml("first"));

    // 1. The notification imports it.
    let r = run_event_file(
        &notification(&s3.bucket, RAW_KEY, &etag1, "0055AED6DCD90281A0"),
        &output,
    );
    r.assert_code(0);
    assert_eq!(r.status(), "succeeded");
    assert_eq!(
        s3.keys("processed/import/"),
        [
            format!("{OUT}.geojsonl"),
            format!("{OUT}.json"),
            format!("{OUT}.pmtiles")
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
    let (_, pmtiles_etag) = s3.get(&format!("{OUT}.pmtiles")).unwrap();

    // 2. Delivered again: nothing is rewritten.
    let again = run_event_file(
        &notification(&s3.bucket, RAW_KEY, &etag1, "0055AED6DCD90281A0"),
        &output,
    );
    again.assert_code(0);
    assert_eq!(again.status(), "skipped");
    assert!(again.stderr.contains("unchanged"), "{}", again.stderr);
    assert_eq!(s3.get(&format!("{OUT}.json")).unwrap().1, manifest_etag);
    assert_eq!(s3.get(&format!("{OUT}.pmtiles")).unwrap().1, pmtiles_etag);

    // 3. A new version, announced by EventBridge through ETL_EVENT.
    let etag2 = s3.put(KEY, kml("second"));
    let r = Run::from_output(
        etl_events()
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
    let (lines, _) = s3.get(&format!("{OUT}.geojsonl")).unwrap();
    assert!(String::from_utf8(lines).unwrap().contains("second"));

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
    assert_eq!(
        s3.keys("out/"),
        [
            "out/import/run.geojsonl",
            "out/import/run.json",
            "out/import/run.pmtiles"
        ]
    );

    // Over the limit: refused from HEAD's size, nothing written.
    let big = s3.put("import/big.kml", kml("big"));
    let r = Run::from_output(
        etl_events()
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
