//! The S3 source against the S3 server started by scripts/test.sh: TileJSON, tiles, 204s,
//! listing and ranged archive reads out of a bucket prefix, and an object replaced while
//! serving (noticed by the `If-Match` on the next ranged read, not by waiting for a HEAD);
//! archives resolved through manifests, a manifest swapped by PUT (seen at the next re-check)
//! and a collected version (seen at the failed read).
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use aws_sdk_s3::primitives::ByteStream;
use axum::http::StatusCode;
use etl_core::store::{S3Config, S3Store};
use etl_tiles::archive::TileType;
use etl_tileserver::archives::CacheSettings;
use etl_tileserver::source::Source;
use support::*;

fn s3_config() -> etl_core::store::S3Config {
    etl_core::store::S3Config {
        endpoint: Some(s3_endpoint()),
        ..etl_core::store::S3Config::default()
    }
}

fn s3_endpoint() -> String {
    std::env::var("S3_ENDPOINT").expect(
        "S3_ENDPOINT not set: run the tests through scripts/test.sh (it starts the S3 server)",
    )
}

async fn client() -> aws_sdk_s3::Client {
    S3Store::connect(S3Config {
        endpoint: Some(s3_endpoint()),
        ..Default::default()
    })
    .await
    .unwrap()
    .client()
    .clone()
}

async fn bucket(c: &aws_sdk_s3::Client) -> String {
    static N: AtomicU32 = AtomicU32::new(0);
    let name = format!(
        "tiles-{}-{}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    );
    c.create_bucket().bucket(&name).send().await.unwrap();
    name
}

async fn put(c: &aws_sdk_s3::Client, bucket: &str, key: &str, bytes: Vec<u8>) {
    c.put_object()
        .bucket(bucket)
        .key(key)
        .body(ByteStream::from(bytes))
        .send()
        .await
        .unwrap();
}

fn archive_bytes(tag: &str, tiles: &[(u8, u32, u32)], maxz: u8) -> Vec<u8> {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("a.pmtiles");
    write_archive(&p, tag, tiles, 0, maxz, TileType::Mvt);
    std::fs::read(p).unwrap()
}

#[tokio::test]
async fn serves_from_an_s3_prefix() {
    let c = client().await;
    let b = bucket(&c).await;
    let mut tiles = vec![(0, 0, 0), (1, 1, 0)];
    // Scattered tiles need leaf directories, so those are read from S3 too.
    let scattered = scatter(12, 20_000);
    tiles.extend(scattered.iter().copied());
    let bytes = archive_bytes("s3a", &tiles, 12);
    put(&c, &b, "outputs/roads.pmtiles", bytes.clone()).await;
    put(&c, &b, "outputs/readme.txt", b"not an archive".to_vec()).await;
    put(&c, &b, "outputs/deeper/other.pmtiles", bytes.clone()).await;
    put(&c, &b, "elsewhere.pmtiles", bytes.clone()).await;

    let source = Source::open(&format!("s3://{b}/outputs"), s3_config())
        .await
        .unwrap();
    // An hour between HEADs: anything fresh below comes from If-Match, not revalidation.
    let cache = CacheSettings {
        revalidate: Duration::from_secs(3600),
        ..CacheSettings::default()
    };
    let (app, state) = app_with(source, dev_settings(), cache);
    let gz = [("accept-encoding", "gzip")];

    let r = get(&app, "/", &[("accept", "application/json")]).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text());
    let names: Vec<String> = r.json()["archives"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["name"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(names, ["roads"], "only archives directly under the prefix");

    let tj = get(&app, "/tiles/roads", &[]).await;
    assert_eq!(tj.status, StatusCode::OK, "{}", tj.text());
    assert_eq!(tj.json()["maxzoom"], 12);
    let r = get(&app, "/tiles/roads/1/1/0.pbf", &gz).await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(gunzip(&r.body), payload("s3a", 1, 1, 0));
    let old_etag = r.header("etag").unwrap().to_string();
    let (z, x, y) = scattered[12_345];
    let r = get(&app, &format!("/tiles/roads/{z}/{x}/{y}.pbf"), &gz).await;
    assert_eq!(gunzip(&r.body), payload("s3a", z, x, y));
    assert!(
        state.archives.stats().directories > 0,
        "a leaf directory came from S3"
    );
    assert_eq!(
        get(&app, "/tiles/roads/1/0/0.pbf", &gz).await.status,
        StatusCode::NO_CONTENT
    );
    assert_eq!(
        get(&app, "/tiles/roads/13/0/0.pbf", &gz).await.status,
        StatusCode::NOT_FOUND
    );
    assert_eq!(
        get(&app, "/tiles/nope/0/0/0.pbf", &gz).await.status,
        StatusCode::NOT_FOUND
    );
    assert_eq!(
        get(&app, "/tiles/readme", &[]).await.status,
        StatusCode::NOT_FOUND
    );

    let r = get(
        &app,
        "/archives/roads.pmtiles",
        &[("range", "bytes=100-299")],
    )
    .await;
    assert_eq!(r.status, StatusCode::PARTIAL_CONTENT);
    assert_eq!(r.body.as_ref(), &bytes[100..300]);
    let r = get(&app, "/archives/roads.pmtiles", &[]).await;
    assert_eq!(r.body.as_ref(), bytes.as_slice());

    // Replaced under the same key: the next tile read sees the new version.
    let v2 = archive_bytes("s3b", &[(0, 0, 0), (1, 1, 0), (2, 3, 3)], 2);
    put(&c, &b, "outputs/roads.pmtiles", v2).await;
    let r = get(&app, "/tiles/roads/1/1/0.pbf", &gz).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text());
    assert_eq!(
        gunzip(&r.body),
        payload("s3b", 1, 1, 0),
        "no stale directory or tile"
    );
    assert_ne!(r.header("etag"), Some(old_etag.as_str()));
    assert_eq!(get(&app, "/tiles/roads", &[]).await.json()["maxzoom"], 2);
    assert_eq!(
        get(&app, "/tiles/roads/2/3/3.pbf", &gz).await.status,
        StatusCode::OK
    );

    // Deleted: gone at the next read.
    c.delete_object()
        .bucket(&b)
        .key("outputs/roads.pmtiles")
        .send()
        .await
        .unwrap();
    assert_eq!(
        get(&app, "/tiles/roads/1/1/0.pbf", &gz).await.status,
        StatusCode::NOT_FOUND
    );
}

/// The hostile archives of fixtures/pmtiles/hostile/ read by ranged GETs: the same answers as
/// from a directory (tests/hostile.rs) and as the synchronous reader's (etl-tiles).
#[tokio::test]
async fn hostile_archives_on_s3_are_named_errors() {
    let c = client().await;
    let b = bucket(&c).await;
    let dir = fixtures().join("pmtiles/hostile");
    for (name, _, _) in hostile_cases() {
        let bytes = std::fs::read(dir.join(format!("{name}.pmtiles"))).unwrap();
        put(&c, &b, &format!("hostile/{name}.pmtiles"), bytes).await;
    }
    let source = Source::open(&format!("s3://{b}/hostile"), s3_config())
        .await
        .unwrap();
    let (app, _) = app_with(source, dev_settings(), CacheSettings::default());
    assert_hostile_answers(&app).await;
}

#[tokio::test]
async fn unreachable_bucket_is_a_gateway_error() {
    let source = Source::open("s3://no-such-bucket-here/x/", s3_config())
        .await
        .unwrap();
    let (app, _) = app_with(source, dev_settings(), CacheSettings::default());
    let r = get(&app, "/", &[("accept", "application/json")]).await;
    assert_eq!(r.status, StatusCode::BAD_GATEWAY, "{}", r.text());
    assert!(
        r.json()["error"]
            .as_str()
            .unwrap()
            .contains("ListObjectsV2")
    );
    // A missing object in a missing bucket is simply not there.
    let r = get(&app, "/tiles/a/0/0/0.pbf", &[]).await;
    assert_eq!(r.status, StatusCode::NOT_FOUND, "{}", r.text());
}

async fn put_json(c: &aws_sdk_s3::Client, bucket: &str, key: &str, doc: &serde_json::Value) {
    put(c, bucket, key, doc.to_string().into_bytes()).await;
}

async fn listed_names(app: &axum::Router) -> Vec<String> {
    listed(app, &[]).await
}

const V1: &str = "v20261206T221500Z-1a2b3c4d";
const V2: &str = "v20261207T080000Z-00ff00ff";
const V3: &str = "v20261208T093000Z-0123abcd";

#[tokio::test]
async fn manifests_on_s3_resolve_and_swap() {
    let c = client().await;
    let b = bucket(&c).await;
    let gz = [("accept-encoding", "gzip")];
    let v1 = format!("roads.{V1}.pmtiles");
    put(
        &c,
        &b,
        &format!("out/{v1}"),
        archive_bytes("v1", &[(0, 0, 0), (1, 1, 1)], 1),
    )
    .await;
    put_json(&c, &b, "out/roads.json", &manifest("roads", V1, &v1)).await;
    // Loses to the manifest; an orphan and other JSON are not archives; a plain archive is.
    put(
        &c,
        &b,
        "out/roads.pmtiles",
        archive_bytes("plain", &[(0, 0, 0)], 0),
    )
    .await;
    put(
        &c,
        &b,
        &format!("out/roads.{V3}.pmtiles"),
        archive_bytes("orphan", &[(0, 0, 0)], 0),
    )
    .await;
    put(&c, &b, "out/settings.json", br#"{"zoom": 3}"#.to_vec()).await;
    put(
        &c,
        &b,
        "out/rivers.pmtiles",
        archive_bytes("rivers", &[(0, 0, 0)], 0),
    )
    .await;
    // Manifests pointing outside the folder or at another archive: ignored.
    for (name, bad) in [
        ("up", "../x.pmtiles"),
        ("abs", "/etc/passwd"),
        ("other", "rivers.pmtiles"),
    ] {
        put_json(
            &c,
            &b,
            &format!("out/{name}.json"),
            &manifest(name, V1, bad),
        )
        .await;
    }
    put(
        &c,
        &b,
        "x.pmtiles",
        archive_bytes("outside", &[(0, 0, 0)], 0),
    )
    .await;
    // A manifest whose file was never written.
    put_json(
        &c,
        &b,
        "out/lost.json",
        &manifest("lost", V1, &format!("lost.{V1}.pmtiles")),
    )
    .await;

    let source = Source::open(&format!("s3://{b}/out/"), s3_config())
        .await
        .unwrap();
    // Plain archives revalidated hourly; manifests re-checked on every request.
    let cache = CacheSettings {
        revalidate: Duration::from_secs(3600),
        manifest_recheck: Duration::ZERO,
        ..CacheSettings::default()
    };
    let (app, _) = app_with(source, dev_settings(), cache);
    assert_eq!(listed_names(&app).await, ["lost", "rivers", "roads"]);
    let r = get(&app, "/", &[("accept", "application/json")]).await;
    assert!(
        r.json()["archives"][0]["error"]
            .as_str()
            .unwrap()
            .contains("lost.json")
    );
    let r = get(&app, "/tiles/roads/1/1/1.pbf", &gz).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text());
    assert_eq!(gunzip(&r.body), payload("v1", 1, 1, 1));
    for uri in [
        format!("/tiles/roads.{V1}/0/0/0.pbf"),
        format!("/archives/roads.{V3}.pmtiles"),
        "/tiles/settings".to_string(),
        "/tiles/up/0/0/0.pbf".to_string(),
        "/tiles/abs".to_string(),
        "/tiles/other".to_string(),
    ] {
        assert_eq!(
            get(&app, &uri, &gz).await.status,
            StatusCode::NOT_FOUND,
            "{uri}"
        );
    }
    let r = get(&app, "/tiles/lost/0/0/0.pbf", &gz).await;
    assert_eq!(r.status, StatusCode::INTERNAL_SERVER_ERROR, "{}", r.text());
    assert!(
        r.json()["error"]
            .as_str()
            .unwrap()
            .contains(&format!("lost.{V1}.pmtiles"))
    );

    // Swap: the new version first, then the manifest replaced by PUT; seen on the next request.
    let v2 = format!("roads.{V2}.pmtiles");
    put(
        &c,
        &b,
        &format!("out/{v2}"),
        archive_bytes("v2", &[(0, 0, 0), (2, 3, 3)], 2),
    )
    .await;
    put_json(&c, &b, "out/roads.json", &manifest("roads", V2, &v2)).await;
    let r = get(&app, "/tiles/roads/0/0/0.pbf", &gz).await;
    assert_eq!(gunzip(&r.body), payload("v2", 0, 0, 0));
    assert_eq!(get(&app, "/tiles/roads", &[]).await.json()["maxzoom"], 2);
    assert_eq!(listed_names(&app).await, ["lost", "rivers", "roads"]);
}

#[tokio::test]
async fn a_collected_version_makes_s3_recheck_the_manifest_at_once() {
    let c = client().await;
    let b = bucket(&c).await;
    let gz = [("accept-encoding", "gzip")];
    let (v1, v2) = (format!("roads.{V1}.pmtiles"), format!("roads.{V2}.pmtiles"));
    put(&c, &b, &v1, archive_bytes("v1", &[(0, 0, 0), (1, 1, 1)], 1)).await;
    put_json(&c, &b, "roads.json", &manifest("roads", V1, &v1)).await;
    let source = Source::open(&format!("s3://{b}"), s3_config())
        .await
        .unwrap();
    // An hour between manifest checks: what is seen below comes from the failed read.
    let cache = CacheSettings {
        manifest_recheck: Duration::from_secs(3600),
        ..CacheSettings::default()
    };
    let (app, _) = app_with(source, dev_settings(), cache);
    let r = get(&app, "/tiles/roads/1/1/1.pbf", &gz).await;
    assert_eq!(gunzip(&r.body), payload("v1", 1, 1, 1));

    put(&c, &b, &v2, archive_bytes("v2", &[(0, 0, 0), (1, 1, 1)], 1)).await;
    put_json(&c, &b, "roads.json", &manifest("roads", V2, &v2)).await;
    // Within the interval the version opened is still served: it still exists, unchanged.
    let r = get(&app, "/tiles/roads/1/1/1.pbf", &gz).await;
    assert_eq!(gunzip(&r.body), payload("v1", 1, 1, 1));
    // Collected: the read answers 404, the manifest is read again, the new version served.
    c.delete_object().bucket(&b).key(&v1).send().await.unwrap();
    let r = get(&app, "/tiles/roads/1/1/1.pbf", &gz).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text());
    assert_eq!(gunzip(&r.body), payload("v2", 1, 1, 1));
    assert_eq!(
        get(&app, "/tiles/roads/0/0/0.pbf", &gz).await.status,
        StatusCode::OK
    );
}
