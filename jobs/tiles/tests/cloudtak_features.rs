//! CloudTAK's `/query` and `/features` (see tests/support/cloudtak.rs for the bucket): the
//! features under a point and none far from it, the features of the tiles covering a box and of
//! one tile, with their layer and lon/lat geometry, and the 400s for what cannot be answered.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use axum::http::StatusCode;
use serde_json::json;
use support::cloudtak::*;
use support::*;

#[tokio::test]
async fn query_answers_what_is_under_a_point() {
    let f = fixture().await;
    let t = alice();
    let q = |at: [f64; 2], extra: &str| {
        format!(
            "{P}/query?query={},{}&zoom=14{extra}&token={t}",
            at[0], at[1]
        )
    };
    let r = get(&f.app, &q(ALPHA, "&limit=1"), &[]).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text());
    let fc = r.json();
    assert_eq!(fc["type"], "FeatureCollection");
    assert_eq!(names(&fc), ["alpha"]);
    let hit = &fc["features"][0];
    assert_eq!(hit["properties"]["tilequery"]["layer"], "out");
    assert_eq!(hit["properties"]["tilequery"]["geometry"], "point");
    assert!(hit["properties"]["tilequery"]["distance"].as_f64().unwrap() < 5.0);
    let (x, y) = tile_of(ALPHA, 14);
    assert_eq!(fc["meta"], json!({"z": 14, "x": x, "y": y}));
    assert_eq!(fc["query"]["lnglat"], json!(ALPHA));
    assert_eq!(
        (fc["query"]["zoom"].as_u64(), fc["query"]["limit"].as_u64()),
        (Some(14), Some(1))
    );

    // A little off the point (within a few pixels) still finds it; far off finds nothing.
    let near = get(&f.app, &q([ALPHA[0] + 0.00005, ALPHA[1]], ""), &[]).await;
    assert_eq!(names(&near.json()), ["alpha"]);
    let far = get(&f.app, &q([ALPHA[0] + 0.01, ALPHA[1] + 0.01], ""), &[]).await;
    assert_eq!(far.status, StatusCode::OK);
    assert_eq!(names(&far.json()), Vec::<String>::new());
    // Inside the polygon (at z10, on the public copy).
    let any = ct_token(json!({"access": "user"}));
    let park = get(
        &f.app,
        &format!("/tiles/public/basemap/query?query=-105.4,40.3&zoom=10&token={any}"),
        &[],
    )
    .await;
    assert_eq!(names(&park.json()), ["park"]);
    assert_eq!(
        park.json()["features"][0]["properties"]["tilequery"]["geometry"],
        "polygon"
    );

    assert_error(
        &get(
            &f.app,
            &format!("{P}/query?query=1,2&zoom=x&token={t}"),
            &[],
        )
        .await,
        StatusCode::BAD_REQUEST,
        "Invalid Integer Zoom",
    );
    assert_error(
        &get(
            &f.app,
            &format!("{P}/query?query=1,2&zoom=15&token={t}"),
            &[],
        )
        .await,
        StatusCode::BAD_REQUEST,
        "Above Layer MaxZoom",
    );
    assert_error(
        &get(&f.app, &format!("{P}/query?query=1&token={t}"), &[]).await,
        StatusCode::BAD_REQUEST,
        "Invalid LngLat",
    );
    assert_error(
        &get(
            &f.app,
            &format!("/tiles/public/raster/query?query=1,2&token={any}"),
            &[],
        )
        .await,
        StatusCode::BAD_REQUEST,
        "MVT",
    );
}

#[tokio::test]
async fn features_of_a_box_and_of_a_tile() {
    let f = fixture().await;
    let t = alice();
    let r = get(
        &f.app,
        &format!("{P}/features?bbox=-105.1,39.4,-104.7,40.1&zoom=10&token={t}"),
        &[],
    )
    .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text());
    let fc = r.json();
    assert_eq!(fc["type"], "FeatureCollection");
    let found = names(&fc);
    assert!(
        found.contains(&"alpha".to_string()) && found.contains(&"road".to_string()),
        "{found:?}"
    );
    assert!(!found.contains(&"beta".to_string()), "{found:?}");
    for feature in fc["features"].as_array().unwrap() {
        assert_eq!(feature["layer"], "out", "{feature}");
        assert_eq!(feature["type"], "Feature");
    }
    let alpha = fc["features"]
        .as_array()
        .unwrap()
        .iter()
        .find(|f| f["properties"]["name"] == "alpha")
        .unwrap();
    assert_eq!(alpha["geometry"]["type"], "Point");
    let at: [f64; 2] = serde_json::from_value(alpha["geometry"]["coordinates"].clone()).unwrap();
    assert!(
        (at[0] - ALPHA[0]).abs() < 1e-3 && (at[1] - ALPHA[1]).abs() < 1e-3,
        "{at:?}"
    );
    assert_eq!(alpha["properties"]["rank"], 0);

    // Filters: another layer holds nothing; a geometry type keeps only that type.
    let other = get(
        &f.app,
        &format!("{P}/features?bbox=-105.1,39.4,-104.7,40.1&zoom=10&layer=x&token={t}"),
        &[],
    )
    .await;
    assert_eq!(names(&other.json()), Vec::<String>::new());
    let lines = get(
        &f.app,
        &format!("{P}/features?bbox=-105.1,39.4,-104.7,40.1&zoom=10&type=LineString&token={t}"),
        &[],
    )
    .await;
    let lines = names(&lines.json());
    assert!(
        !lines.is_empty() && lines.iter().all(|n| n == "road"),
        "{lines:?}"
    );

    // Too many tiles, a malformed box, a raster archive: 400.
    assert_error(
        &get(
            &f.app,
            &format!("{P}/features?bbox=-180,-80,180,80&zoom=14&token={t}"),
            &[],
        )
        .await,
        StatusCode::BAD_REQUEST,
        "at most 64",
    );
    assert_error(
        &get(&f.app, &format!("{P}/features?bbox=1,2,3&token={t}"), &[]).await,
        StatusCode::BAD_REQUEST,
        "Invalid BBOX",
    );
    let any = ct_token(json!({"access": "user"}));
    assert_error(
        &get(
            &f.app,
            &format!("/tiles/public/raster/features?bbox=0,0,1,1&zoom=2&token={any}"),
            &[],
        )
        .await,
        StatusCode::BAD_REQUEST,
        "Tile is not MVT",
    );

    // One tile's features: P/{z}/{x}/{y}/features and U/tiles/{z}/{x}/{y}/features.
    let (x, y) = tile_of(BETA, 12);
    let p = get(&f.app, &format!("{P}/12/{x}/{y}/features?token={t}"), &[]).await;
    assert_eq!(p.status, StatusCode::OK, "{}", p.text());
    assert_eq!(names(&p.json()), ["beta"]);
    let u = get(
        &f.app,
        &format!("/api/tiles/public/basemap/tiles/12/{x}/{y}/features?token={any}"),
        &[],
    )
    .await;
    assert_eq!(names(&u.json()), ["beta"]);
    let none = get(&f.app, &format!("{P}/12/0/0/features?token={t}"), &[]).await;
    assert_eq!(
        none.json(),
        json!({"type": "FeatureCollection", "features": []})
    );
    assert_error(
        &get(&f.app, &format!("{P}/15/0/0/features?token={t}"), &[]).await,
        StatusCode::NOT_FOUND,
        "Tile Not Found",
    );
}

/// One length-delimited protobuf field.
fn field(out: &mut Vec<u8>, number: u32, bytes: &[u8]) {
    varint(out, u64::from(number << 3 | 2));
    varint(out, bytes.len() as u64);
    out.extend_from_slice(bytes);
}

fn varint(out: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        out.push((v as u8) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

#[tokio::test]
async fn a_tile_that_would_decode_to_too_much_text_is_refused() {
    // One feature whose 400 tags all name one 1 MiB string: a 1 MiB tile asking a decoder
    // for 400 copies of it.
    let mut value = Vec::new();
    field(&mut value, 1, &vec![b'a'; 1 << 20]);
    let mut tags = Vec::new();
    for _ in 0..800 {
        varint(&mut tags, 0);
    }
    let mut feature = Vec::new();
    field(&mut feature, 2, &tags);
    feature.extend_from_slice(&[3 << 3, 1]); // type = Point
    let mut geom = Vec::new();
    for v in [9u64, 4096, 4096] {
        varint(&mut geom, v);
    }
    field(&mut feature, 4, &geom);
    let mut layer = Vec::new();
    layer.extend_from_slice(&[15 << 3, 2]); // version 2
    field(&mut layer, 1, b"out");
    field(&mut layer, 2, &feature);
    field(&mut layer, 3, b"k");
    field(&mut layer, 4, &value);
    let mut tile = Vec::new();
    field(&mut tile, 3, &layer);
    // Well formed: the decoder would take it, at 400 MiB of copies.
    assert_eq!(etl_tiles::mvt::tile_stats(&tile).unwrap()[0].tags, 400);

    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("bomb.pmtiles");
    {
        use etl_tiles::archive::{ArchiveMeta, ArchiveWriter};
        let mut w = ArchiveWriter::new(std::io::BufWriter::new(
            std::fs::File::create(&path).unwrap(),
        ))
        .unwrap();
        w.add_tile(0, &gzip(&tile)).unwrap();
        let meta = ArchiveMeta {
            min_zoom: 0,
            max_zoom: 0,
            bounds: [-180.0, -85.0, 180.0, 85.0],
            center: (0.0, 0.0, 0),
            metadata: json!({"vector_layers": [{"id": "out", "fields": {}}]}),
        };
        w.finish(&meta).unwrap();
    }
    let f = fixture().await;
    put(
        &client().await,
        &f.bucket,
        "public/bomb.pmtiles",
        std::fs::read(&path).unwrap(),
        None,
    )
    .await;
    let t = alice();
    let r = get(
        &f.app,
        &format!("/tiles/public/bomb/features?bbox=-10,-10,10,10&zoom=0&token={t}"),
        &[],
    )
    .await;
    assert_error(&r, StatusCode::BAD_REQUEST, "would decode to 400 tags");
    let r = get(
        &f.app,
        &format!("/tiles/public/bomb/query?query=0,0&zoom=0&token={t}"),
        &[],
    )
    .await;
    assert_error(&r, StatusCode::BAD_REQUEST, "would decode to");
}
