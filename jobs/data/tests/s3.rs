//! etl-data with S3 inputs and outputs against the real S3-protocol server.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::io::Write;

use etl_core::store::{Location, S3Config, Store, StoreError};
use support::*;

fn store() -> Store {
    Store::new(S3Config {
        endpoint: Some(s3_endpoint()),
        ..Default::default()
    })
}

async fn bucket(store: &Store, name: &str) -> String {
    let name = name.replace('_', "-").to_lowercase();
    store
        .s3()
        .await
        .unwrap()
        .client()
        .create_bucket()
        .bucket(&name)
        .send()
        .await
        .unwrap();
    name
}

async fn upload(store: &Store, url: &str, bytes: Vec<u8>) {
    let loc = Location::parse(url).unwrap();
    let mut w = store.writer(&loc).await.unwrap();
    tokio::task::spawn_blocking(move || {
        w.write_all(&bytes).unwrap();
        w.commit().unwrap();
    })
    .await
    .unwrap();
}

fn points_bytes(n: u64) -> Vec<u8> {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("p.geojsonl");
    write_points(&p, n);
    std::fs::read(p).unwrap()
}

#[test]
fn s3_prefix_in_and_multipart_out() {
    let rt = rt();
    let store = store();
    let b = rt.block_on(bucket(&store, &unique("etl-data-s3")));
    // Two inputs under a prefix (one over 5 MiB itself) and a sibling that must not be read.
    let big = points_bytes(60_000);
    assert!(big.len() > 5 * 1024 * 1024, "input is {} bytes", big.len());
    rt.block_on(upload(
        &store,
        &format!("s3://{b}/in/a.geojsonl"),
        big.clone(),
    ));
    rt.block_on(upload(
        &store,
        &format!("s3://{b}/in/b.geojsonl"),
        points_bytes(10),
    ));
    rt.block_on(upload(
        &store,
        &format!("s3://{b}/other/c.geojsonl"),
        points_bytes(10),
    ));
    let out = format!("s3://{b}/out/all.geojsonl");
    let r = run(&[
        "--input",
        &format!("s3://{b}/in/"),
        "--output",
        &out,
        "--s3-part-size",
        "5242880",
    ]);
    r.assert_code(0);
    assert_eq!(r.count("read"), 60_010);
    assert_eq!(r.count("written"), 60_010);
    let (bytes, etag) = rt
        .block_on(store.get(&Location::parse(&out).unwrap()))
        .unwrap()
        .expect("output object exists");
    assert!(bytes.len() > 5 * 1024 * 1024);
    assert!(
        etag.trim_matches('"').contains('-'),
        "multipart ETag has a part count: {etag}"
    );
    let lines = bytes
        .split(|b| *b == b'\n')
        .filter(|l| !l.is_empty())
        .count();
    assert_eq!(lines, 60_010);
    // Checkpoint of the completed run lives beside the output, so a rerun is a no-op.
    let again = run(&["--input", &format!("s3://{b}/in/"), "--output", &out]);
    again.assert_code(0);
    assert_eq!(again.status(), "skipped");
}

#[test]
fn failed_run_leaves_no_s3_object_and_no_upload() {
    let rt = rt();
    let store = store();
    let b = rt.block_on(bucket(&store, &unique("etl-data-fail")));
    // 60k good features (over one part) followed by bad ones past --max-rejects.
    let mut bytes = points_bytes(60_000);
    for _ in 0..5 {
        bytes.extend_from_slice(b"{\"type\":\"Feature\",\"properties\":{},\"geometry\":{\"type\":\"Point\",\"coordinates\":[0,95]}}\n");
    }
    rt.block_on(upload(&store, &format!("s3://{b}/in/bad.geojsonl"), bytes));
    let out = format!("s3://{b}/out/all.geojsonl");
    let r = run(&[
        "--input",
        &format!("s3://{b}/in/bad.geojsonl"),
        "--output",
        &out,
        "--max-rejects",
        "2",
        "--s3-part-size",
        "5242880",
    ]);
    r.assert_code(65);
    let head = rt.block_on(store.head(&Location::parse(&out).unwrap()));
    assert!(
        matches!(head, Err(StoreError::NotFound(_))),
        "no output object: {head:?}"
    );
    let uploads = rt.block_on(async {
        store
            .s3()
            .await
            .unwrap()
            .client()
            .list_multipart_uploads()
            .bucket(&b)
            .send()
            .await
            .unwrap()
    });
    assert!(
        uploads.uploads().is_empty(),
        "multipart upload aborted: {:?}",
        uploads.uploads()
    );
}

#[test]
fn missing_s3_input_is_no_input() {
    let rt = rt();
    let store = store();
    let b = rt.block_on(bucket(&store, &unique("etl-data-missing")));
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("o.geojsonl");
    let r = run(&[
        "--input",
        &format!("s3://{b}/nope.geojsonl"),
        "--output",
        out.to_str().unwrap(),
    ]);
    r.assert_code(66);
    assert!(r.error().contains("nope.geojsonl"), "{}", r.error());
    let r = run(&[
        "--input",
        &format!("s3://{b}/empty-prefix/"),
        "--output",
        out.to_str().unwrap(),
    ]);
    r.assert_code(66);
    assert!(r.error().contains("no input files match"), "{}", r.error());
    assert!(!out.exists());
}
