//! Bounded memory for clients that refuse gzip: a tile is decoded only up to the cap (beyond:
//! 406, the gzip representation still served to those who take it), and only so many at once
//! (beyond: 503 with Retry-After, nothing queued).
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use axum::http::StatusCode;
use etl_tiles::archive::{ArchiveMeta, ArchiveWriter};
use etl_tiles::tile::{TileCoord, tile_id};
use etl_tileserver::app::{MAX_DECOMPRESSED_TILE, Settings};
use support::*;

/// An archive `bomb` whose tile 0/0/0 is `gzip(zeros(len))`, and `vec` with ordinary tiles.
fn archives(len: usize) -> (tempfile::TempDir, Vec<u8>) {
    let dir = vec_and_img();
    let zeros = gzip(&vec![0u8; len]);
    let f = std::fs::File::create(dir.path().join("bomb.pmtiles")).unwrap();
    let mut w = ArchiveWriter::new(std::io::BufWriter::new(f)).unwrap();
    w.add_tile(tile_id(TileCoord { z: 0, x: 0, y: 0 }), &zeros)
        .unwrap();
    let meta = ArchiveMeta {
        min_zoom: 0,
        max_zoom: 0,
        bounds: [-10.0, -10.0, 10.0, 10.0],
        center: (0.0, 0.0, 0),
        metadata: serde_json::json!({"vector_layers": []}),
    };
    let out = w.finish(&meta).unwrap();
    out.into_inner().unwrap().sync_all().unwrap();
    (dir, zeros)
}

#[tokio::test]
async fn a_tile_decoding_past_the_cap_is_406_for_identity_clients() {
    let (dir, zeros) = archives(MAX_DECOMPRESSED_TILE as usize + 1);
    let (app, _) = dir_app(dir.path(), dev_settings());
    let r = get(
        &app,
        "/tiles/bomb/0/0/0.pbf",
        &[("accept-encoding", "identity")],
    )
    .await;
    assert_eq!(r.status, StatusCode::NOT_ACCEPTABLE, "{}", r.text());
    let e = r.json()["error"].as_str().unwrap().to_string();
    assert!(
        e.contains(&MAX_DECOMPRESSED_TILE.to_string()) && e.contains("gzip"),
        "{e}"
    );
    assert_eq!(r.header("cache-control"), Some("no-store"));
    // The same tile, gzip-compressed as stored, for a client that takes gzip.
    let r = get(
        &app,
        "/tiles/bomb/0/0/0.pbf",
        &[("accept-encoding", "gzip")],
    )
    .await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(r.header("content-encoding"), Some("gzip"));
    assert_eq!(r.body.as_ref(), zeros.as_slice());
}

#[tokio::test]
async fn a_tile_at_most_the_cap_is_decoded() {
    let (dir, _) = archives(1 << 20);
    let (app, _) = dir_app(dir.path(), dev_settings());
    let r = get(
        &app,
        "/tiles/bomb/0/0/0.pbf",
        &[("accept-encoding", "identity")],
    )
    .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text());
    assert_eq!(r.body.len(), 1 << 20);
    assert!(r.body.iter().all(|b| *b == 0));
}

#[tokio::test]
async fn decompressions_past_the_bound_are_503_with_retry_after() {
    let dir = vec_and_img();
    let settings = Settings {
        inflate_limit: 2,
        ..dev_settings()
    };
    let (app, state) = dir_app(dir.path(), settings);
    let identity = [("accept-encoding", "identity")];
    // Two decompressions in flight (their permits held here, as a slow one would hold them).
    let first = state.inflate.try_acquire().unwrap();
    let r = get(&app, "/tiles/vec/0/0/0.pbf", &identity).await;
    assert_eq!(r.status, StatusCode::OK, "one permit is still free");
    assert_eq!(r.body.as_ref(), payload("vec", 0, 0, 0).as_slice());
    let second = state.inflate.try_acquire().unwrap();
    let r = get(&app, "/tiles/vec/0/0/0.pbf", &identity).await;
    assert_eq!(r.status, StatusCode::SERVICE_UNAVAILABLE, "{}", r.text());
    assert_eq!(r.header("retry-after"), Some("1"));
    assert_eq!(r.header("cache-control"), Some("no-store"));
    assert!(r.json()["error"].as_str().unwrap().contains("limit 2"));
    // Clients that take gzip need no decompression and are not held up.
    let r = get(&app, "/tiles/vec/0/0/0.pbf", &[("accept-encoding", "gzip")]).await;
    assert_eq!(r.status, StatusCode::OK);
    // A 304 for the decoded representation needs no decompression either.
    drop(second);
    let plain = get(&app, "/tiles/vec/0/0/0.pbf", &identity).await;
    assert_eq!(plain.status, StatusCode::OK);
    let second = state.inflate.try_acquire().unwrap();
    let r = get(
        &app,
        "/tiles/vec/0/0/0.pbf",
        &[
            ("accept-encoding", "identity"),
            ("if-none-match", plain.header("etag").unwrap()),
        ],
    )
    .await;
    assert_eq!(r.status, StatusCode::NOT_MODIFIED);
    drop((first, second));
    // The permits of answered requests are given back.
    assert_eq!(state.inflate.available_permits(), 2);
    let r = get(&app, "/tiles/vec/0/0/0.pbf", &identity).await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(state.inflate.available_permits(), 2);
}
