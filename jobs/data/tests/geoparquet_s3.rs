//! GeoParquet from S3 read in place with ranged GETs against the real S3-protocol server: the
//! same output as the local file, no temporary copy, hostile or truncated objects refused by
//! URL, and an object overwritten between its listing and its reading failing with 75 rather
//! than mixing two versions.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::io::Write;
use std::path::Path;
use std::time::Duration;

use etl_core::store::{Location, Store};
use support::*;

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

/// `n` points written as GeoParquet by etl-data (row groups of 65,536 rows).
fn parquet_points(dir: &Path, n: u64) -> Vec<u8> {
    let input = dir.join(format!("points-{n}.geojsonl"));
    write_points(&input, n);
    let out = dir.join(format!("points-{n}.parquet"));
    run(&[
        "--input",
        input.to_str().unwrap(),
        "--output",
        out.to_str().unwrap(),
    ])
    .assert_code(0);
    std::fs::read(out).unwrap()
}

fn to_file(input: &str, out: &Path, env: &[(&str, &Path)]) -> Run {
    let mut cmd = etl_data();
    cmd.args(["--input", input, "--output", out.to_str().unwrap()]);
    for (k, v) in env {
        cmd.env(k, v);
    }
    Run::from_output(cmd.output().unwrap())
}

#[test]
fn geoparquet_on_s3_reads_in_place_as_the_local_file_reads() {
    let rt = rt();
    let (store, bucket) = s3_bucket(&rt, "pq-ranged");
    let dir = tempfile::tempdir().unwrap();
    let n = 70_000;
    let bytes = parquet_points(dir.path(), n);
    let local = dir.path().join("local.parquet");
    std::fs::write(&local, &bytes).unwrap();
    let url = format!("s3://{bucket}/in/points.parquet");
    rt.block_on(upload(&store, &url, bytes.clone()));

    let from_file = dir.path().join("from-file.geojsonl");
    to_file(local.to_str().unwrap(), &from_file, &[]).assert_code(0);
    // No temporary file can be made: the S3 object must be read where it is.
    let no_tmp = dir.path().join("no-such-dir");
    let from_s3 = dir.path().join("from-s3.geojsonl");
    let r = to_file(&url, &from_s3, &[("TMPDIR", &no_tmp)]);
    r.assert_code(0);
    assert_eq!(r.count("written"), n);
    let (a, b) = (
        std::fs::read(&from_file).unwrap(),
        std::fs::read(&from_s3).unwrap(),
    );
    assert_eq!(a.iter().filter(|&&c| c == b'\n').count() as u64, n);
    assert!(a == b, "the S3 read differs from the local read");
    assert!(!no_tmp.exists());

    // The same object gzipped still goes through a temporary copy: without a TMPDIR to
    // write to it fails, which is what makes the check above mean something.
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    gz.write_all(&bytes).unwrap();
    let gz_url = format!("s3://{bucket}/in/points.parquet.gz");
    rt.block_on(upload(&store, &gz_url, gz.finish().unwrap()));
    let copied = to_file(
        &gz_url,
        &dir.path().join("gz.geojsonl"),
        &[("TMPDIR", &no_tmp)],
    );
    assert_ne!(copied.code, 0, "{}", copied.stdout);
    assert!(
        copied.error().contains("temporary file"),
        "{}",
        copied.error()
    );
    let gz_out = dir.path().join("gz-ok.geojsonl");
    to_file(&gz_url, &gz_out, &[]).assert_code(0);
    assert!(std::fs::read(&gz_out).unwrap() == a);
}

#[track_caller]
fn assert_refused(r: &Run, url: &str, expected: &str, out: &Path) {
    r.assert_code(65);
    let e = r.error();
    assert!(e.starts_with(url), "{e}");
    assert!(e.contains(expected), "{e}");
    assert!(!e.contains('\n'), "{e}");
    assert!(!out.exists(), "an output was written");
}

#[test]
fn a_truncated_or_hostile_geoparquet_object_is_refused_naming_its_url() {
    let rt = rt();
    let (store, bucket) = s3_bucket(&rt, "pq-hostile");
    let dir = tempfile::tempdir().unwrap();
    let good = parquet_points(dir.path(), 100);
    let out = dir.path().join("out.geojsonl");

    let truncated = format!("s3://{bucket}/truncated.parquet");
    rt.block_on(upload(&store, &truncated, good[..good.len() / 2].to_vec()));
    let r = to_file(&truncated, &out, &[]);
    assert_refused(&r, &truncated, "does not end with PAR1", &out);

    // A footer length past the object: refused before anything is read for it.
    let mut footer = good.clone();
    let at = footer.len() - 8;
    footer[at..at + 4].copy_from_slice(&0x7fff_ffffu32.to_le_bytes());
    let hostile = format!("s3://{bucket}/footer.parquet");
    rt.block_on(upload(&store, &hostile, footer));
    let r = to_file(&hostile, &out, &[]);
    assert_refused(
        &r,
        &hostile,
        &format!(
            "its footer says 2147483647 bytes, the file has {}",
            good.len()
        ),
        &out,
    );

    // The footer intact but the column chunks' bytes gone.
    let at = good.len() - 8;
    let footer_len = u32::from_le_bytes(good[at..at + 4].try_into().unwrap()) as usize;
    let mut cut = good[..4].to_vec();
    cut.extend_from_slice(&good[good.len() - 8 - footer_len..]);
    let short = format!("s3://{bucket}/short.parquet");
    rt.block_on(upload(&store, &short, cut));
    let r = to_file(&short, &out, &[]);
    assert_refused(&r, &short, "lies outside the file's", &out);
}

#[test]
fn an_object_overwritten_between_its_listing_and_its_reading_fails_with_75() {
    let rt = rt();
    let (store, bucket) = s3_bucket(&rt, "pq-changed");
    let dir = tempfile::tempdir().unwrap();
    let url = format!("s3://{bucket}/points.parquet");
    rt.block_on(upload(&store, &url, parquet_points(dir.path(), 1000)));
    let out = dir.path().join("out.geojsonl");
    // The reader stops after the object was listed and sniffed, before its first ranged read.
    let gate = dir.path().join("gate");
    let child = etl_data()
        .env(
            "ETL_FAULT",
            format!("sources.ranged.open={}", gate.display()),
        )
        .args(["--input", &url, "--output", out.to_str().unwrap()])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let reached = dir.path().join("gate.1.reached");
    wait_for(
        "the reader at its first ranged read",
        Duration::from_secs(120),
        || reached.exists(),
    );
    rt.block_on(upload(&store, &url, parquet_points(dir.path(), 10)));
    std::fs::write(dir.path().join("gate.1"), b"").unwrap();
    let r = Run::from_output(child.wait_with_output().unwrap());
    r.assert_code(75);
    assert!(
        r.error().contains(&url) && r.error().contains("changed while it was being read"),
        "{}",
        r.error()
    );
    assert!(!out.exists(), "an output was written");
    // The retry lists the object again and reads the new version whole.
    let retry = to_file(&url, &out, &[]);
    retry.assert_code(0);
    assert_eq!(retry.count("written"), 10);
}

#[test]
fn an_object_deleted_between_its_listing_and_its_reading_is_not_found() {
    let rt = rt();
    let (store, bucket) = s3_bucket(&rt, "pq-deleted");
    let dir = tempfile::tempdir().unwrap();
    let url = format!("s3://{bucket}/points.parquet");
    rt.block_on(upload(&store, &url, parquet_points(dir.path(), 100)));
    let out = dir.path().join("out.geojsonl");
    let gate = dir.path().join("gate");
    let child = etl_data()
        .env(
            "ETL_FAULT",
            format!("sources.ranged.open={}", gate.display()),
        )
        .args(["--input", &url, "--output", out.to_str().unwrap()])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let reached = dir.path().join("gate.1.reached");
    wait_for(
        "the reader at its first ranged read",
        Duration::from_secs(120),
        || reached.exists(),
    );
    rt.block_on(store.delete(&Location::parse(&url).unwrap()))
        .unwrap();
    std::fs::write(dir.path().join("gate.1"), b"").unwrap();
    let r = Run::from_output(child.wait_with_output().unwrap());
    // As a missing input is anywhere else (StoreError::NotFound): no input, 66.
    r.assert_code(66);
    assert!(
        r.error().starts_with(&url) && r.error().contains("not found"),
        "{}",
        r.error()
    );
    assert!(!out.exists(), "an output was written");
}
