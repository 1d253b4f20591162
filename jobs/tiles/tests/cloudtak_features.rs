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
