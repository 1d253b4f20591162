//! MapLibre Tiles: an MLT archive served as it is (and as MVT to clients that ask for `.pbf`),
//! an MVT archive served as MLT on `.mlt` or when `Accept` asks for it, with a cache; TileJSON
//! that tells MapLibre to decode MLT. Over the fixture archive and an MLT copy of it.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use axum::http::StatusCode;
use etl_tiles::archive::{Archive, TileType};
use etl_tiles::mlt::mlt_to_mvt;
use support::*;

/// `fixtures` (MVT) and `fixtures_mlt` (the same tiles as MLT) in a temp dir.
fn both() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    let src = fixtures().join("tiles/fixtures.pmtiles");
    std::fs::copy(&src, dir.path().join("fixtures.pmtiles")).unwrap();
    mlt_copy(&src, &dir.path().join("fixtures_mlt.pmtiles"));
    dir
}

/// Every tile of the fixture archive: (z/x/y path, its MVT).
fn fixture_tiles() -> Vec<(String, Vec<u8>)> {
    let bytes = std::fs::read(fixtures().join("tiles/fixtures.pmtiles")).unwrap();
    let mut a = Archive::open(std::io::Cursor::new(&bytes)).unwrap();
    let entries: Vec<_> = a.entries().map(Result::unwrap).collect();
    entries
        .into_iter()
        .map(|e| {
            let c = etl_tiles::tile::tile_coord(e.tile_id).unwrap();
            (
                format!("{}/{}/{}", c.z, c.x, c.y),
                gunzip(&a.read_tile(&e).unwrap()),
            )
        })
        .collect()
}

const MLT: &str = "application/vnd.maplibre-vector-tile";
const MVT: &str = "application/vnd.mapbox-vector-tile";

#[tokio::test]
async fn an_mvt_archive_is_served_as_mlt_on_request() {
    let dir = both();
    let (app, _) = dir_app(dir.path(), dev_settings());
    let tiles = fixture_tiles();
    assert!(tiles.len() > 10);
    for (path, mvt) in &tiles {
        let r = get(&app, &format!("/tiles/fixtures/{path}.mlt"), &[]).await;
        assert_eq!(r.status, StatusCode::OK, "{path}");
        assert_eq!(r.header("content-type"), Some(MLT));
        assert_eq!(r.header("content-encoding"), Some("gzip"));
        assert_eq!(r.header("vary"), Some("Accept-Encoding"));
        // The reference decoder reads back the features of the MVT tile.
        let back = mlt_to_mvt(&gunzip(&r.body)).unwrap();
        assert_eq!(mvt_features(&back), mvt_features(mvt), "{path}");
        // Again: the cached tile, the same ETag; a conditional request gets 304.
        let etag = r.header("etag").unwrap().to_string();
        let again = get(&app, &format!("/tiles/fixtures/{path}.mlt"), &[]).await;
        assert_eq!(again.body, r.body);
        assert_eq!(again.header("etag"), Some(etag.as_str()));
        let cond = get(
            &app,
            &format!("/tiles/fixtures/{path}.mlt"),
            &[("if-none-match", &etag)],
        )
        .await;
        assert_eq!(cond.status, StatusCode::NOT_MODIFIED);
    }
    let (path, mvt) = &tiles[tiles.len() / 2];
    // `.pbf` with an Accept that prefers MLT: MLT, and Vary says Accept mattered.
    let r = get(
        &app,
        &format!("/tiles/fixtures/{path}.pbf"),
        &[("accept", "application/vnd.maplibre-tile, */*;q=0.1")],
    )
    .await;
    assert_eq!(r.header("content-type"), Some(MLT));
    assert_eq!(r.header("vary"), Some("Accept-Encoding, Accept"));
    assert_eq!(
        mvt_features(&mlt_to_mvt(&gunzip(&r.body)).unwrap()),
        mvt_features(mvt)
    );
    // Without it: the stored MVT, byte for byte, with another ETag.
    let plain = get(&app, &format!("/tiles/fixtures/{path}.pbf"), &[]).await;
    assert_eq!(plain.header("content-type"), Some(MVT));
    assert_eq!(plain.header("vary"), Some("Accept-Encoding, Accept"));
    assert_eq!(gunzip(&plain.body), *mvt);
    assert_ne!(plain.header("etag"), r.header("etag"));
    // A client that takes no gzip gets the MLT decoded.
    let identity = get(
        &app,
        &format!("/tiles/fixtures/{path}.mlt"),
        &[("accept-encoding", "identity")],
    )
    .await;
    assert_eq!(identity.status, StatusCode::OK);
    assert_eq!(identity.header("content-encoding"), None);
    assert_eq!(identity.body, gunzip(&r.body));
    // An empty tile is still 204, whatever the encoding asked for.
    let r = get(&app, "/tiles/fixtures/12/0/0.mlt", &[]).await;
    assert_eq!(r.status, StatusCode::NO_CONTENT);
}

#[tokio::test]
async fn an_mlt_archive_is_served_as_it_is_and_as_mvt_to_old_clients() {
    let dir = both();
    let (app, _) = dir_app(dir.path(), dev_settings());
    let stored = {
        let bytes = std::fs::read(dir.path().join("fixtures_mlt.pmtiles")).unwrap();
        let mut a = Archive::open(std::io::Cursor::new(bytes)).unwrap();
        assert_eq!(a.header().tile_type, TileType::Mlt);
        let entries: Vec<_> = a.entries().map(Result::unwrap).collect();
        entries
            .into_iter()
            .map(|e| a.read_tile(&e).unwrap())
            .collect::<Vec<_>>()
    };
    let tj = get(&app, "/tiles/fixtures_mlt", &[]).await.json();
    assert_eq!(tj["encoding"], "mlt");
    assert_eq!(tj["format"], "mlt");
    assert!(
        tj["tiles"][0]
            .as_str()
            .unwrap()
            .ends_with("{z}/{x}/{y}.mlt")
    );
    assert_eq!(tj["vector_layers"].as_array().unwrap().len(), 3);
    for (i, (path, mvt)) in fixture_tiles().iter().enumerate() {
        let r = get(&app, &format!("/tiles/fixtures_mlt/{path}.mlt"), &[]).await;
        assert_eq!(r.status, StatusCode::OK);
        assert_eq!(r.header("content-type"), Some(MLT));
        assert_eq!(r.header("vary"), Some("Accept-Encoding"));
        assert_eq!(r.body, stored[i], "{path}: the stored bytes");
        // `.pbf`: the reference decoder's MVT, holding the original features.
        let r = get(&app, &format!("/tiles/fixtures_mlt/{path}.pbf"), &[]).await;
        assert_eq!(r.status, StatusCode::OK);
        assert_eq!(r.header("content-type"), Some(MVT));
        assert_eq!(mvt_features(&gunzip(&r.body)), mvt_features(mvt), "{path}");
    }
    // A raster extension is still refused.
    let r = get(&app, "/tiles/fixtures_mlt/0/0/0.png", &[]).await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
}

#[tokio::test]
async fn tilejson_asks_for_mlt_tiles_of_an_mvt_archive() {
    let dir = both();
    let (app, _) = dir_app(dir.path(), dev_settings());
    let tj = get(&app, "/tiles/fixtures?encoding=mlt", &[]).await.json();
    assert_eq!(tj["encoding"], "mlt");
    assert_eq!(
        tj["tiles"][0],
        "http://tiles.test:8080/tiles/fixtures/{z}/{x}/{y}.mlt"
    );
    let tj = get(&app, "/tiles/fixtures", &[]).await.json();
    assert!(tj.get("encoding").is_none());
    assert_eq!(tj["format"], "pbf");
}

#[tokio::test]
async fn a_tile_that_does_not_transcode_is_a_server_error_not_a_panic() {
    // An "MLT" archive whose tiles are not MLT: `.pbf` cannot be made from them.
    let dir = tempfile::tempdir().unwrap();
    write_archive(
        &dir.path().join("bad.pmtiles"),
        "bad",
        &[(0, 0, 0)],
        0,
        0,
        TileType::Mlt,
    );
    let (app, _) = dir_app(dir.path(), dev_settings());
    let r = get(&app, "/tiles/bad/0/0/0.pbf", &[]).await;
    assert_eq!(r.status, StatusCode::INTERNAL_SERVER_ERROR, "{}", r.text());
    assert!(r.json()["error"].as_str().unwrap().contains("bad"));
    // The stored tile itself is still served.
    let r = get(&app, "/tiles/bad/0/0/0.mlt", &[]).await;
    assert_eq!(r.status, StatusCode::OK);
}

#[tokio::test]
async fn a_tile_too_wide_to_transcode_is_refused_or_served_as_stored() {
    // 20,000 features naming one 10 KB string each: 200 MB of rows for a transcoder, from a
    // tile of a few hundred KB. Refused before decoding; a client whose Accept chose MLT gets
    // the stored MVT instead.
    use etl_tiles::archive::{ArchiveMeta, ArchiveWriter, Compression};
    use etl_tiles::geom::TileGeom;
    use etl_tiles::mvt::{LayerBuilder, PropValue, encode_tile};
    let dir = tempfile::tempdir().unwrap();
    let long = PropValue::String("y".repeat(10_000));
    let mut l = LayerBuilder::new("w", 4096);
    for i in 0..20_000u64 {
        l.add_feature(
            Some(i),
            &TileGeom::Points(vec![[1, 1]]),
            &[("s", long.clone())],
        );
    }
    let mvt = encode_tile(&[l]);
    let mut w = ArchiveWriter::new(std::fs::File::create(dir.path().join("wide.pmtiles")).unwrap())
        .unwrap();
    w.set_tile_format(TileType::Mvt, Compression::Gzip);
    w.add_tile_run(0, 1, &gzip(&mvt)).unwrap();
    w.finish(&ArchiveMeta {
        min_zoom: 0,
        max_zoom: 0,
        bounds: [-10.0, -10.0, 10.0, 10.0],
        center: (0.0, 0.0, 0),
        metadata: serde_json::json!({"vector_layers": [{"id": "w", "fields": {}}]}),
    })
    .unwrap();
    let (app, _) = dir_app(dir.path(), dev_settings());
    let r = get(&app, "/tiles/wide/0/0/0.mlt", &[]).await;
    assert_eq!(r.status, StatusCode::NOT_ACCEPTABLE, "{}", r.text());
    assert!(
        r.json()["error"]
            .as_str()
            .unwrap()
            .contains("too large to transcode")
    );
    let r = get(
        &app,
        "/tiles/wide/0/0/0.pbf",
        &[("accept", "application/vnd.maplibre-vector-tile")],
    )
    .await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(r.header("content-type"), Some(MVT));
    assert_eq!(r.header("vary"), Some("Accept-Encoding, Accept"));
    assert_eq!(gunzip(&r.body), mvt);
}
