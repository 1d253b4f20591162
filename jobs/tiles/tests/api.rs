//! Every route, status code and header of the tile API, in-process over archives in a temp dir.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use axum::http::StatusCode;
use etl_tiles::archive::TileType;
use etl_tileserver::app::Settings;
use etl_tileserver::archives::CacheSettings;
use etl_tileserver::source::{DirSource, Source};
use support::*;

/// `vec` (vector, z0-3, tiles at z0, z1 and a z3 block) and `img` (png, z2-4).
fn archives() -> tempfile::TempDir {
    vec_and_img()
}

#[tokio::test]
async fn health_and_unknown_routes() {
    let dir = archives();
    let (app, _) = dir_app(dir.path(), dev_settings());
    let r = get(&app, "/health", &[]).await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(r.json()["status"], "ok");
    assert_eq!(r.json()["auth"], false);
    let r = get(&app, "/nope", &[]).await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);
    assert!(r.json()["error"].as_str().unwrap().contains("/nope"));
}

#[tokio::test]
async fn tilejson() {
    let dir = archives();
    let (app, _) = dir_app(dir.path(), dev_settings());
    let r = get(&app, "/tiles/vec", &[]).await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(r.header("content-type"), Some("application/json"));
    let tj = r.json();
    assert_eq!(tj["tilejson"], "3.0.0");
    assert_eq!(
        tj["tiles"][0],
        "http://tiles.test:8080/tiles/vec/{z}/{x}/{y}.pbf"
    );
    assert_eq!(tj["minzoom"], 0);
    assert_eq!(tj["maxzoom"], 3);
    assert_eq!(tj["bounds"], serde_json::json!([-10.0, -10.0, 10.0, 10.0]));
    assert_eq!(tj["center"], serde_json::json!([0.0, 0.0, 0]));
    assert_eq!(tj["vector_layers"][0]["id"], "things");
    assert_eq!(tj["attribution"], "test data");
    assert_eq!(tj["format"], "pbf");
    // ETag and 304.
    let etag = r.header("etag").unwrap().to_string();
    let r = get(&app, "/tiles/vec", &[("if-none-match", &etag)]).await;
    assert_eq!(r.status, StatusCode::NOT_MODIFIED);
    assert!(r.body.is_empty());

    // With a token in the query that the tile URLs must carry on.
    let r = get(&app, "/tiles/vec?token=a.b.c", &[]).await;
    assert_eq!(
        r.json()["tiles"][0],
        "http://tiles.test:8080/tiles/vec/{z}/{x}/{y}.pbf?token=a.b.c"
    );

    let r = get(&app, "/tiles/img", &[]).await;
    let tj = r.json();
    assert_eq!(
        tj["tiles"][0],
        "http://tiles.test:8080/tiles/img/{z}/{x}/{y}.png"
    );
    assert_eq!(tj["format"], "png");
    assert!(tj.get("vector_layers").is_none());

    let settings = Settings {
        public_url: "https://cdn.example.com/tiles-api/".into(),
        ..dev_settings()
    };
    let (app, _) = dir_app(dir.path(), settings);
    assert_eq!(
        get(&app, "/tiles/vec", &[]).await.json()["tiles"][0],
        "https://cdn.example.com/tiles-api/tiles/vec/{z}/{x}/{y}.pbf"
    );
    // The pages link through the public URL's path too.
    let html = get(&app, "/view/vec", &[]).await.text();
    assert!(html.contains("/tiles-api/assets/preview.js"), "{html}");
}

#[tokio::test]
async fn tiles_status_codes() {
    let dir = archives();
    let (app, _) = dir_app(dir.path(), dev_settings());
    let cases: &[(&str, StatusCode)] = &[
        ("/tiles/vec/0/0/0.pbf", StatusCode::OK),
        ("/tiles/vec/0/0/0.mvt", StatusCode::OK),
        ("/tiles/vec/3/3/3.pbf", StatusCode::OK),
        // In range, not in the archive.
        ("/tiles/vec/1/0/1.pbf", StatusCode::NO_CONTENT),
        ("/tiles/vec/3/7/7.pbf", StatusCode::NO_CONTENT),
        ("/tiles/vec/2/0/0.pbf", StatusCode::NO_CONTENT),
        // Outside the archive's zooms, or no such archive.
        ("/tiles/vec/4/0/0.pbf", StatusCode::NOT_FOUND),
        ("/tiles/img/1/0/0.png", StatusCode::NOT_FOUND),
        ("/tiles/nope/0/0/0.pbf", StatusCode::NOT_FOUND),
        ("/tiles/nope", StatusCode::NOT_FOUND),
        // Malformed.
        ("/tiles/vec/0/0/0.gif", StatusCode::BAD_REQUEST),
        ("/tiles/vec/0/0/0", StatusCode::BAD_REQUEST),
        ("/tiles/vec/0/0/0.png", StatusCode::BAD_REQUEST),
        ("/tiles/img/2/1/1.pbf", StatusCode::BAD_REQUEST),
        ("/tiles/vec/1/2/0.pbf", StatusCode::BAD_REQUEST),
        ("/tiles/vec/1/0/2.pbf", StatusCode::BAD_REQUEST),
        ("/tiles/vec/31/0/0.pbf", StatusCode::BAD_REQUEST),
        ("/tiles/vec/-1/0/0.pbf", StatusCode::BAD_REQUEST),
        ("/tiles/vec/a/0/0.pbf", StatusCode::BAD_REQUEST),
        ("/tiles/vec/0/0/0/0.pbf", StatusCode::BAD_REQUEST),
        ("/tiles/a%2Fb", StatusCode::BAD_REQUEST),
        ("/tiles/a%2Fb/0/0/0.pbf", StatusCode::BAD_REQUEST),
        ("/tiles/..", StatusCode::BAD_REQUEST),
        ("/tiles/../0/0/0.pbf", StatusCode::BAD_REQUEST),
        ("/tiles/%2e%2e/0/0/0.pbf", StatusCode::BAD_REQUEST),
        ("/tiles/a%01b", StatusCode::BAD_REQUEST),
        ("/tiles/a%5Cb", StatusCode::BAD_REQUEST),
        ("/tiles/vec/x/y", StatusCode::BAD_REQUEST),
        ("/view/..", StatusCode::BAD_REQUEST),
        ("/archives/..%2Fvec.pmtiles", StatusCode::BAD_REQUEST),
    ];
    for (uri, want) in cases {
        let r = get(&app, uri, &[]).await;
        assert_eq!(r.status, *want, "{uri}: {}", r.text());
        if want.is_client_error() {
            assert!(r.json()["error"].is_string(), "{uri}");
            assert_eq!(r.header("cache-control"), Some("no-store"), "{uri}");
        }
    }
    // 204s are cacheable like tiles: the archive will not grow that tile.
    let r = get(&app, "/tiles/vec/1/0/1.pbf", &[]).await;
    assert_eq!(r.header("cache-control"), Some("public, max-age=86400"));
    assert!(r.body.is_empty());
}

#[tokio::test]
async fn gzip_passthrough_etag_and_decoding() {
    let dir = archives();
    let (app, _) = dir_app(dir.path(), dev_settings());
    let r = get(
        &app,
        "/tiles/vec/1/1/1.pbf",
        &[("accept-encoding", "gzip, deflate, br")],
    )
    .await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(r.header("content-encoding"), Some("gzip"));
    assert_eq!(
        r.header("content-type"),
        Some("application/vnd.mapbox-vector-tile")
    );
    assert_eq!(r.header("cache-control"), Some("public, max-age=86400"));
    // `Accept` may ask for this MVT tile as MLT, so caches must key on it too.
    assert_eq!(r.header("vary"), Some("Accept-Encoding, Accept"));
    assert_eq!(gunzip(&r.body), payload("vec", 1, 1, 1));
    let gz_etag = r.header("etag").unwrap().to_string();
    assert!(gz_etag.starts_with('"') && gz_etag.ends_with('"'));

    // A client that takes no gzip gets the decoded tile under a different ETag.
    let r = get(
        &app,
        "/tiles/vec/1/1/1.pbf",
        &[("accept-encoding", "identity")],
    )
    .await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(r.header("content-encoding"), None);
    assert_eq!(r.body.as_ref(), payload("vec", 1, 1, 1).as_slice());
    let plain_etag = r.header("etag").unwrap().to_string();
    assert_ne!(plain_etag, gz_etag);
    let r = get(
        &app,
        "/tiles/vec/1/1/1.pbf",
        &[("accept-encoding", "gzip;q=0")],
    )
    .await;
    assert_eq!(r.header("content-encoding"), None);

    // Conditional requests, per representation.
    let r = get(
        &app,
        "/tiles/vec/1/1/1.pbf",
        &[("accept-encoding", "gzip"), ("if-none-match", &gz_etag)],
    )
    .await;
    assert_eq!(r.status, StatusCode::NOT_MODIFIED);
    assert_eq!(r.header("etag"), Some(gz_etag.as_str()));
    let r = get(
        &app,
        "/tiles/vec/1/1/1.pbf",
        &[
            ("accept-encoding", "identity"),
            ("if-none-match", &plain_etag),
        ],
    )
    .await;
    assert_eq!(r.status, StatusCode::NOT_MODIFIED);
    let r = get(
        &app,
        "/tiles/vec/1/1/1.pbf",
        &[("accept-encoding", "identity"), ("if-none-match", &gz_etag)],
    )
    .await;
    assert_eq!(r.status, StatusCode::OK);
    let r = get(
        &app,
        "/tiles/vec/0/0/0.pbf",
        &[("accept-encoding", "gzip"), ("if-none-match", &gz_etag)],
    )
    .await;
    assert_eq!(r.status, StatusCode::OK, "another tile has another ETag");

    // Raster tiles are served as stored.
    let r = get(&app, "/tiles/img/2/1/1.png", &[("accept-encoding", "gzip")]).await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(r.header("content-type"), Some("image/png"));
    assert_eq!(r.header("content-encoding"), None);
    assert_eq!(r.body.as_ref(), payload("img", 2, 1, 1).as_slice());

    // HEAD answers like GET, without the body.
    let r = request(
        &app,
        "HEAD",
        "/tiles/vec/1/1/1.pbf",
        &[("accept-encoding", "gzip")],
    )
    .await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(r.header("etag"), Some(gz_etag.as_str()));
    assert!(r.body.is_empty());
}

#[tokio::test]
async fn raw_archive_ranges() {
    let dir = archives();
    let bytes = std::fs::read(dir.path().join("vec.pmtiles")).unwrap();
    let (app, _) = dir_app(dir.path(), dev_settings());
    let r = get(&app, "/archives/vec.pmtiles", &[("range", "bytes=0-126")]).await;
    assert_eq!(r.status, StatusCode::PARTIAL_CONTENT);
    assert_eq!(r.body.as_ref(), &bytes[..127]);
    assert_eq!(
        r.header("content-range"),
        Some(format!("bytes 0-126/{}", bytes.len()).as_str())
    );
    assert_eq!(r.header("accept-ranges"), Some("bytes"));
    let r = get(&app, "/archives/vec.pmtiles", &[("range", "bytes=-10")]).await;
    assert_eq!(r.body.as_ref(), &bytes[bytes.len() - 10..]);
    let r = get(&app, "/archives/vec.pmtiles", &[]).await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(r.body.as_ref(), bytes.as_slice());
    let etag = r.header("etag").unwrap().to_string();
    let r = get(&app, "/archives/vec.pmtiles", &[("if-none-match", &etag)]).await;
    assert_eq!(r.status, StatusCode::NOT_MODIFIED);
    let r = get(
        &app,
        "/archives/vec.pmtiles",
        &[("range", &format!("bytes={}-", bytes.len()))],
    )
    .await;
    assert_eq!(r.status, StatusCode::RANGE_NOT_SATISFIABLE);
    assert_eq!(
        r.header("content-range"),
        Some(format!("bytes */{}", bytes.len()).as_str())
    );
    assert_eq!(
        get(&app, "/archives/vec", &[]).await.status,
        StatusCode::NOT_FOUND
    );
    assert_eq!(
        get(&app, "/archives/nope.pmtiles", &[]).await.status,
        StatusCode::NOT_FOUND
    );
}

#[tokio::test]
async fn listing_view_and_assets() {
    let dir = archives();
    std::fs::write(dir.path().join("notes.txt"), "not an archive").unwrap();
    let (app, _) = dir_app(dir.path(), dev_settings());
    let r = get(&app, "/", &[("accept", "application/json")]).await;
    assert_eq!(r.status, StatusCode::OK);
    let list = r.json()["archives"].as_array().unwrap().clone();
    assert_eq!(list.len(), 2);
    assert_eq!(list[0]["name"], "img");
    assert_eq!(list[0]["format"], "png");
    assert_eq!(list[1]["name"], "vec");
    assert_eq!(list[1]["maxzoom"], 3);
    let r = get(&app, "/", &[("accept", "text/html")]).await;
    assert_eq!(r.header("content-type"), Some("text/html; charset=utf-8"));
    let html = r.text();
    assert!(
        html.contains("/view/vec") && html.contains("/view/img"),
        "{html}"
    );
    assert!(!html.contains("notes"));

    let r = get(&app, "/view/vec", &[]).await;
    assert_eq!(r.status, StatusCode::OK);
    let html = r.text();
    assert!(
        html.contains("/assets/preview.js") && html.contains("/tiles/vec"),
        "{html}"
    );
    assert_eq!(
        get(&app, "/view/nope", &[]).await.status,
        StatusCode::NOT_FOUND
    );

    let r = get(&app, "/assets/preview.js", &[]).await;
    assert_eq!(r.status, StatusCode::OK);
    assert!(r.header("content-type").unwrap().contains("javascript"));
    assert!(r.body.len() > 100_000, "the bundle holds maplibre-gl");
    let etag = r.header("etag").unwrap().to_string();
    let r = get(&app, "/assets/preview.js", &[("if-none-match", &etag)]).await;
    assert_eq!(r.status, StatusCode::NOT_MODIFIED);
    assert_eq!(
        get(&app, "/assets/preview.css", &[]).await.status,
        StatusCode::OK
    );
    assert_eq!(
        get(&app, "/assets/nope.js", &[]).await.status,
        StatusCode::NOT_FOUND
    );
}

#[tokio::test]
async fn archive_replaced_while_serving() {
    let dir = archives();
    let path = dir.path().join("vec.pmtiles");
    let (app, _) = dir_app(dir.path(), dev_settings());
    let gz = [("accept-encoding", "gzip")];
    let before = get(&app, "/tiles/vec/0/0/0.pbf", &gz).await;
    assert_eq!(gunzip(&before.body), payload("vec", 0, 0, 0));
    assert_eq!(get(&app, "/tiles/vec", &[]).await.json()["maxzoom"], 3);

    // Replaced by rename (as the jobs write): new tiles, new zooms, new ETags, at once.
    let mut tiles = vec![(0, 0, 0)];
    tiles.extend(block(5, 3));
    write_archive(&path, "v2", &tiles, 0, 5, TileType::Mvt);
    let after = get(&app, "/tiles/vec/0/0/0.pbf", &gz).await;
    assert_eq!(gunzip(&after.body), payload("v2", 0, 0, 0));
    assert_ne!(after.header("etag"), before.header("etag"));
    let r = get(
        &app,
        "/tiles/vec/0/0/0.pbf",
        &[
            ("accept-encoding", "gzip"),
            ("if-none-match", before.header("etag").unwrap()),
        ],
    )
    .await;
    assert_eq!(r.status, StatusCode::OK, "the old ETag no longer matches");
    assert_eq!(get(&app, "/tiles/vec", &[]).await.json()["maxzoom"], 5);
    assert_eq!(
        get(&app, "/tiles/vec/5/2/2.pbf", &gz).await.status,
        StatusCode::OK
    );
    assert_eq!(
        get(&app, "/tiles/vec/3/0/0.pbf", &gz).await.status,
        StatusCode::NO_CONTENT
    );

    std::fs::remove_file(&path).unwrap();
    assert_eq!(
        get(&app, "/tiles/vec/0/0/0.pbf", &gz).await.status,
        StatusCode::NOT_FOUND
    );
}

#[tokio::test]
async fn leaf_directories_are_cached_and_bounded() {
    let dir = tempfile::tempdir().unwrap();
    // 20,000 tiles scattered over z12: the root directory needs leaves.
    let tiles = scatter(12, 20_000);
    write_archive(
        &dir.path().join("big.pmtiles"),
        "big",
        &tiles,
        0,
        12,
        TileType::Mvt,
    );
    let source = Source::Dir(DirSource::new(dir.path().to_str().unwrap()).unwrap());
    let cache = CacheSettings {
        directory_bytes: 256 << 10,
        ..CacheSettings::default()
    };
    let (app, state) = app_with(source, dev_settings(), cache);
    let gz = [("accept-encoding", "gzip")];
    for &(z, x, y) in tiles.iter().step_by(997) {
        let r = get(&app, &format!("/tiles/big/{z}/{x}/{y}.pbf"), &gz).await;
        assert_eq!(r.status, StatusCode::OK);
        assert_eq!(gunzip(&r.body), payload("big", z, x, y));
    }
    assert!(
        state.archives.stats().directories > 0,
        "leaves were read and cached"
    );

    // 10,000 distinct missing tiles spread over every leaf, and malformed paths: all answered,
    // and the caches stay within their bounds.
    let mut missing = 0;
    let present: std::collections::HashSet<(u8, u32, u32)> = tiles.iter().copied().collect();
    let mut i = 0u32;
    while missing < 10_000 {
        i += 1;
        let (x, y) = ((i * 7919) % 4096, (i * 104_729) % 4096);
        if present.contains(&(12, x, y)) {
            continue;
        }
        let r = get(&app, &format!("/tiles/big/12/{x}/{y}.pbf"), &gz).await;
        assert_eq!(r.status, StatusCode::NO_CONTENT, "12/{x}/{y}");
        missing += 1;
        if i.is_multiple_of(5) {
            let r = get(&app, &format!("/tiles/big%2F{i}/12/{x}/{y}.pbf"), &[]).await;
            assert_eq!(r.status, StatusCode::BAD_REQUEST);
            let r = get(&app, &format!("/tiles/nope{i}/12/{x}/{y}.pbf"), &[]).await;
            assert_eq!(r.status, StatusCode::NOT_FOUND);
        }
    }
    assert_eq!(missing, 10_000);
    let stats = get(&app, "/health", &[]).await.json()["caches"].clone();
    assert!(
        stats["directory_bytes"].as_u64().unwrap() <= 256 << 10,
        "{stats}"
    );
    assert!(
        stats["archives"].as_u64().unwrap() <= 1,
        "unknown names are not cached: {stats}"
    );
}

#[tokio::test]
async fn corrupt_archives_are_errors_not_panics() {
    let dir = archives();
    std::fs::write(dir.path().join("junk.pmtiles"), b"this is not an archive").unwrap();
    let mut truncated = std::fs::read(dir.path().join("vec.pmtiles")).unwrap();
    truncated.truncate(200);
    std::fs::write(dir.path().join("cut.pmtiles"), &truncated).unwrap();
    let (app, _) = dir_app(dir.path(), dev_settings());
    for uri in [
        "/tiles/junk",
        "/tiles/junk/0/0/0.pbf",
        "/tiles/cut/0/0/0.pbf",
    ] {
        let r = get(&app, uri, &[]).await;
        assert_eq!(r.status, StatusCode::INTERNAL_SERVER_ERROR, "{uri}");
        assert!(
            r.json()["error"].as_str().unwrap().contains("corrupt"),
            "{}",
            r.text()
        );
    }
    let r = get(&app, "/", &[("accept", "application/json")]).await;
    assert_eq!(r.status, StatusCode::OK);
    let list = r.json()["archives"].as_array().unwrap().clone();
    let junk = list.iter().find(|a| a["name"] == "junk").unwrap();
    assert!(junk["error"].as_str().unwrap().contains("corrupt"));
    assert_eq!(
        get(&app, "/tiles/vec/0/0/0.pbf", &[]).await.status,
        StatusCode::OK
    );
}
