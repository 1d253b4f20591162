//! Archives read over HTTP by ranged GETs (`HttpReader`), from the S3 server scripts/test.sh
//! starts (its objects are plain HTTP resources with Range, ETag and If-Match): the same tiles
//! as the synchronous reader of the same file, corruption and reader failures kept apart, and a
//! replaced archive noticed at the next read.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::io::Cursor;
use std::path::PathBuf;

use etl_core::store::{S3Config, Store};
use etl_pmtiles::http_range::{HttpError, HttpReader};
use etl_tiles::archive::{Archive, ArchiveIndex, LastLeaf, ReadError};
use etl_tiles::tile::{TileCoord, tile_id};

fn s3_endpoint() -> String {
    std::env::var("S3_ENDPOINT").expect(
        "S3_ENDPOINT not set: run the tests through scripts/test.sh (it starts the S3 server)",
    )
}

fn fixture(rel: &str) -> Vec<u8> {
    let path = PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/../../fixtures")).join(rel);
    std::fs::read(path).unwrap()
}

/// Puts `bytes` at `key` in `bucket` on the S3 server, readable without credentials.
async fn put(store: &Store, bucket: &str, key: &str, bytes: Vec<u8>) {
    let s3 = store.s3().await.unwrap();
    s3.client()
        .put_object()
        .bucket(bucket)
        .key(key)
        .acl("public-read".into())
        .body(bytes.into())
        .send()
        .await
        .unwrap();
}

/// A new bucket holding `objects`; the HTTP URL of the bucket.
async fn bucket(store: &Store, name: &str, objects: Vec<(&str, Vec<u8>)>) -> String {
    let bucket = format!("{name}-{}", std::process::id());
    let s3 = store.s3().await.unwrap();
    s3.client()
        .create_bucket()
        .bucket(&bucket)
        .send()
        .await
        .unwrap();
    for (key, bytes) in objects {
        put(store, &bucket, key, bytes).await;
    }
    format!("{}/{bucket}", s3_endpoint())
}

fn store() -> Store {
    Store::new(S3Config {
        endpoint: Some(s3_endpoint()),
        ..Default::default()
    })
}

#[tokio::test]
async fn tiles_over_http_are_the_tiles_of_the_file() {
    let store = store();
    let fixtures = fixture("tiles/fixtures.pmtiles");
    let leafy = fixture("pmtiles/hostile/good-with-leaf.pmtiles");
    let looped = fixture("pmtiles/hostile/leaf-loop.pmtiles");
    let base = bucket(
        &store,
        "http-range",
        vec![
            ("fixtures.pmtiles", fixtures.clone()),
            ("leafy.pmtiles", leafy),
            ("loop.pmtiles", looped),
        ],
    )
    .await;

    // Every tile of a real archive (etl-pmtiles' own fixtures output), as the synchronous
    // reader of the same bytes has it.
    let r = HttpReader::open(&format!("{base}/fixtures.pmtiles"))
        .await
        .unwrap();
    let index = ArchiveIndex::open(&r).await.unwrap();
    let mut sync = Archive::open(Cursor::new(&fixtures)).unwrap();
    assert_eq!(index.header(), sync.header());
    assert_eq!(index.metadata(), sync.metadata());
    let entries: Vec<_> = sync.entries().collect::<Result<_, _>>().unwrap();
    assert!(entries.len() > 10, "{} entries", entries.len());
    let leaves = LastLeaf::default();
    for e in &entries {
        let ours = index.tile(&r, &leaves, e.tile_id).await.unwrap().unwrap();
        assert_eq!(ours.to_vec(), sync.read_tile(e).unwrap());
    }
    assert_eq!(index.tile(&r, &leaves, u64::MAX >> 8).await.unwrap(), None);

    // Through a leaf directory; and a leaf loop is corruption, not a failed read.
    let r = HttpReader::open(&format!("{base}/leafy.pmtiles"))
        .await
        .unwrap();
    let index = ArchiveIndex::open(&r).await.unwrap();
    let z0 = tile_id(TileCoord { z: 0, x: 0, y: 0 });
    assert!(index.tile(&r, &leaves, z0).await.unwrap().is_some());
    let r = HttpReader::open(&format!("{base}/loop.pmtiles"))
        .await
        .unwrap();
    let index = ArchiveIndex::open(&r).await.unwrap();
    match index.tile(&r, &LastLeaf::default(), z0).await {
        Err(ReadError::Corrupt(e)) => assert!(e.to_string().contains("nested deeper"), "{e}"),
        other => panic!("expected a corrupt archive, got {other:?}"),
    }
}

#[tokio::test]
async fn a_replaced_archive_fails_the_next_read() {
    let store = store();
    let fixtures = fixture("tiles/fixtures.pmtiles");
    let base = bucket(
        &store,
        "http-replaced",
        vec![("a.pmtiles", fixtures.clone())],
    )
    .await;
    let url = format!("{base}/a.pmtiles");
    let r = HttpReader::open(&url).await.unwrap();
    let index = ArchiveIndex::open(&r).await.unwrap();

    // Same length, other bytes (in the first tile): only the ETag tells the versions apart.
    let mut sync = Archive::open(Cursor::new(&fixtures)).unwrap();
    let data_offset = sync.header().data_offset;
    let first = sync.entries().next().unwrap().unwrap();
    let mut other = fixtures.clone();
    other[(data_offset + first.offset) as usize] ^= 0xff;
    let bucket_name = base.rsplit('/').next().unwrap().to_string();
    put(&store, &bucket_name, "a.pmtiles", other).await;
    match index.tile(&r, &LastLeaf::default(), first.tile_id).await {
        Err(ReadError::Source(HttpError::Changed { url: u })) => assert_eq!(u, url),
        other => panic!("expected the change to be noticed, got {other:?}"),
    }
    // Opened again, the new version reads.
    let r = HttpReader::open(&url).await.unwrap();
    let index = ArchiveIndex::open(&r).await.unwrap();
    let tile = index.tile(&r, &LastLeaf::default(), first.tile_id).await;
    assert_ne!(
        tile.unwrap().unwrap().to_vec(),
        sync.read_tile(&first).unwrap()
    );

    // An empty object opens (its length is 0) and is a truncated archive, not a failed read.
    put(&store, &bucket_name, "empty.pmtiles", Vec::new()).await;
    let r = HttpReader::open(&format!("{base}/empty.pmtiles"))
        .await
        .unwrap();
    match ArchiveIndex::open(&r).await {
        Err(ReadError::Corrupt(e)) => assert!(e.to_string().contains("truncated"), "{e}"),
        other => panic!("expected a truncated archive, got {:?}", other.map(|_| ())),
    }

    // A missing archive and a URL that is not HTTP are errors naming them.
    match HttpReader::open(&format!("{base}/missing.pmtiles")).await {
        Err(e @ HttpError::Status { .. }) => {
            assert!(e.to_string().contains("missing.pmtiles"), "{e}");
            assert!(e.to_string().contains("404"), "{e}");
        }
        other => panic!("expected 404, got {:?}", other.map(|_| ())),
    }
    assert!(matches!(
        HttpReader::open("ftp://example.invalid/a.pmtiles").await,
        Err(HttpError::BadUrl { .. })
    ));
}
