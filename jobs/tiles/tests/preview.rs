//! The preview page in Debian's headless Chromium, driven by web/test/check-preview.mjs
//! (playwright-core): the map must draw the fixture archive's features (read back as pixels from
//! the WebGL canvas, not only found in the DOM), show the metadata the pmtiles library read from
//! the raw archive, and leave the console free of errors.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::path::Path;
use std::process::Command;

use serde_json::Value;
use support::{fixtures, spawn_server};

fn chromium() -> String {
    let path = std::env::var("CHROMIUM").unwrap_or_else(|_| "/usr/bin/chromium".to_string());
    assert!(
        Path::new(&path).exists(),
        "{path} not found: run the tests through scripts/test.sh (it installs Debian's chromium)"
    );
    path
}

fn check(url: &str, screenshot: Option<&Path>) -> Value {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("web/test/check-preview.mjs");
    let mut cmd = Command::new("node");
    cmd.arg(&script)
        .arg(url)
        .env("CHROMIUM", chromium())
        .env("ETL_TILES_WEB_DIR", env!("ETL_TILES_WEB_DIR"));
    if let Some(p) = screenshot {
        cmd.arg("--screenshot").arg(p);
    }
    let out = cmd.output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "check-preview failed ({}): {stdout}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    let last = stdout.lines().last().unwrap_or("");
    serde_json::from_str(last).unwrap_or_else(|e| panic!("not JSON ({e}): {stdout}"))
}

#[test]
fn preview_draws_the_archive_in_headless_chromium() {
    let (_server, base) = spawn_server(&fixtures().join("tiles"), &["--no-auth"], false);
    let shot = std::env::temp_dir().join(format!("etl-tiles-preview-{}.png", std::process::id()));
    let r = assert_draws(&base, "fixtures", Some(&shot));
    let total = r["totalPixels"].as_u64().unwrap();
    assert!(
        r["drawnPixels"].as_u64().unwrap() < total,
        "not the whole canvas in one colour: {r}"
    );
    assert!(r["renderedFeatures"].as_u64().unwrap() > 0, "{r}");
    assert_eq!(r["metadataShown"], true, "{r}");
    std::fs::remove_file(&shot).unwrap_or_else(|e| panic!("{}: {e}", shot.display()));
}

/// What the preview drew of `/view/{path}`: ready, no errors, sites and tracks on the canvas
/// (a screenshot of it at `screenshot`).
fn assert_draws(base: &str, path: &str, screenshot: Option<&Path>) -> Value {
    let r = check(&format!("{base}/view/{path}"), screenshot);
    assert_eq!(r["state"], "ready", "{path}: {r}");
    assert_eq!(r["consoleErrors"], serde_json::json!([]), "{path}: {r}");
    assert_eq!(r["pageErrors"], serde_json::json!([]), "{path}: {r}");
    assert_eq!(r["failedRequests"], serde_json::json!([]), "{path}: {r}");
    assert!(r["drawnPixels"].as_u64().unwrap() > 500, "{path}: {r}");
    let layers: Vec<&str> = r["layers"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(Value::as_str)
        .collect();
    for source_layer in ["sites", "tracks"] {
        assert!(
            layers.iter().any(|l| l.contains(source_layer)),
            "{path}: {source_layer} drawn: {layers:?}"
        );
    }
    r
}

#[test]
fn the_preview_draws_mlt_tiles() {
    // An MLT archive as it is, and the MVT archive through the server's transcoding: MapLibre GL
    // JS decodes the MLT and draws the same layers as from the MVT.
    let dir = tempfile::tempdir().unwrap();
    let src = fixtures().join("tiles/fixtures.pmtiles");
    std::fs::copy(&src, dir.path().join("fixtures.pmtiles")).unwrap();
    support::mlt_copy(&src, &dir.path().join("fixtures_mlt.pmtiles"));
    let (_server, base) = spawn_server(dir.path(), &["--no-auth"], false);
    let mvt = assert_draws(&base, "fixtures", None);
    let mlt = assert_draws(&base, "fixtures_mlt", None);
    let transcoded = assert_draws(&base, "fixtures?encoding=mlt", None);
    for r in [&mlt, &transcoded] {
        assert_eq!(r["layers"], mvt["layers"], "the same layers drawn: {r}");
        assert_eq!(
            r["renderedFeatures"], mvt["renderedFeatures"],
            "the same features drawn: {r}"
        );
    }
}

#[test]
fn the_preview_draws_mlt_tiles_with_many_distinct_strings() {
    // Thousands of distinct names in one tile: the kind of string column MLT encoders compress
    // hardest (dictionaries, FSST). MapLibre GL JS must decode every encoding we write.
    use etl_tiles::tiler::{TileFormat, Tiler, TilerOptions};
    let dir = tempfile::tempdir().unwrap();
    let opts = TilerOptions {
        max_zoom: Some(3),
        tile_format: TileFormat::Mlt,
        name: "names".into(),
        ..TilerOptions::default()
    };
    let mut t = Tiler::new(opts, vec!["poi".into()]).unwrap();
    for i in 0..5000u64 {
        let lon = -100.0 + (i % 100) as f64 * 0.5;
        let lat = 30.0 + (i / 100) as f64 * 0.3;
        let street = ["main", "oak", "pine", "elm"][(i % 4) as usize];
        let kind = ["cafe", "shop", "school"][(i % 3) as usize];
        let props =
            serde_json::json!({"name": format!("poi {i} on {street} street"), "kind": kind});
        t.add(
            0,
            i,
            Some(i),
            Some(&geo_types::Geometry::Point(geo_types::Point::new(lon, lat))),
            props.as_object().unwrap(),
        )
        .unwrap();
    }
    let file = std::fs::File::create(dir.path().join("names.pmtiles")).unwrap();
    t.finish(std::io::BufWriter::new(file), &|| false).unwrap();
    let (_server, base) = spawn_server(dir.path(), &["--no-auth"], false);
    let r = check(&format!("{base}/view/names"), None);
    assert_eq!(r["state"], "ready", "{r}");
    assert_eq!(r["consoleErrors"], serde_json::json!([]), "{r}");
    assert_eq!(r["pageErrors"], serde_json::json!([]), "{r}");
    assert!(r["drawnPixels"].as_u64().unwrap() > 500, "{r}");
}

#[test]
fn the_preview_draws_a_kmzs_icons_from_its_sprite_sheet() {
    // What etl-events publishes for a KMZ with icons: the archive, a sprite sheet indexed by the
    // placemarks' `icon` values, and the manifest naming all three.
    use etl_tiles::tiler::{Tiler, TilerOptions};
    const V: &str = "v20261208T000000Z-0000000a";
    let dir = tempfile::tempdir().unwrap();
    let opts = TilerOptions {
        max_zoom: Some(10),
        name: "camp".into(),
        ..TilerOptions::default()
    };
    let mut t = Tiler::new(opts, vec!["camp".into()]).unwrap();
    for (i, (lon, lat)) in [(-105.2, 39.7), (-105.0, 39.9), (-104.8, 39.8)]
        .iter()
        .enumerate()
    {
        let props = serde_json::json!({"name": format!("tent {i}"), "icon": "files/tent.png"});
        t.add(
            0,
            i as u64,
            None,
            Some(&geo_types::Geometry::Point(geo_types::Point::new(
                *lon, *lat,
            ))),
            props.as_object().unwrap(),
        )
        .unwrap();
    }
    let file = std::fs::File::create(dir.path().join(format!("camp.{V}.pmtiles"))).unwrap();
    t.finish(std::io::BufWriter::new(file), &|| false).unwrap();
    let img = image::RgbaImage::from_pixel(32, 32, image::Rgba([220, 20, 20, 255]));
    let mut png = Vec::new();
    image::DynamicImage::ImageRgba8(img)
        .write_to(&mut std::io::Cursor::new(&mut png), image::ImageFormat::Png)
        .unwrap();
    std::fs::write(dir.path().join(format!("camp.{V}.sprite.png")), png).unwrap();
    std::fs::write(
        dir.path().join(format!("camp.{V}.sprite.json")),
        r#"{"files/tent.png":{"x":0,"y":0,"width":32,"height":32,"pixelRatio":1}}"#,
    )
    .unwrap();
    std::fs::write(
        dir.path().join("camp.json"),
        serde_json::json!({"version": V, "outputs": [
            {"kind": "pmtiles", "file": format!("camp.{V}.pmtiles")},
            {"kind": "sprite.png", "file": format!("camp.{V}.sprite.png")},
            {"kind": "sprite.json", "file": format!("camp.{V}.sprite.json")},
        ]})
        .to_string(),
    )
    .unwrap();
    let (_server, base) = spawn_server(dir.path(), &["--no-auth"], false);
    let r = check(&format!("{base}/view/camp"), None);
    assert_eq!(r["state"], "ready", "{r}");
    assert_eq!(r["consoleErrors"], serde_json::json!([]), "{r}");
    assert_eq!(r["pageErrors"], serde_json::json!([]), "{r}");
    assert_eq!(r["failedRequests"], serde_json::json!([]), "{r}");
    let layers: Vec<&str> = r["layers"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(Value::as_str)
        .collect();
    assert!(layers.contains(&"camp:icon"), "the icons are drawn: {r}");
    assert!(r["drawnPixels"].as_u64().unwrap() > 0, "{r}");
}
