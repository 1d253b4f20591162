//! CloudTAK's tile routes under test: an asset bucket in the S3 server started by
//! scripts/test.sh holding an archive tiled as CloudTAK's worker tiles (one layer `out`, z0-14)
//! at `profile/USER/UUID.pmtiles` and `public/NAME.pmtiles`, the app with the CloudTAK routes
//! over it, CloudTAK tokens, and checks of CloudTAK's answers.

use std::sync::atomic::{AtomicU32, Ordering};

use aws_sdk_s3::primitives::ByteStream;
use axum::Router;
use axum::http::StatusCode;
use etl_core::store::{S3Config, S3Store};
use etl_tiles::archive::TileType;
use etl_tiles::tiler::{Tiler, TilerOptions};
use etl_tileserver::app::{AppState, router};
use etl_tileserver::archives::{Archives, CacheSettings};
use etl_tileserver::cloudtak::{CloudTak, CloudTakArgs};
use etl_tileserver::source::Source;
use serde_json::{Value, json};

use super::{Reply, prod_settings, token, write_archive};

pub const SIGNING: &str = "cloudtak-signing-secret";
pub const PMTILES_URL: &str = "https://tiles.map.example.com";
pub const ALICE: &str = "alice@example.com";
pub const FILE: &str = "6f1c1f0e-58a1-4a53-9f43-0d6f0e3c2a11";

/// Where the test features are (lon, lat).
pub const ALPHA: [f64; 2] = [-105.0, 40.0];
pub const BETA: [f64; 2] = [-104.0, 39.0];

pub fn s3_endpoint() -> String {
    std::env::var("S3_ENDPOINT").expect(
        "S3_ENDPOINT not set: run the tests through scripts/test.sh (it starts the S3 server)",
    )
}

pub fn s3_config() -> S3Config {
    S3Config {
        endpoint: Some(s3_endpoint()),
        ..S3Config::default()
    }
}

pub async fn client() -> aws_sdk_s3::Client {
    S3Store::connect(s3_config())
        .await
        .unwrap()
        .client()
        .clone()
}

pub async fn bucket(c: &aws_sdk_s3::Client) -> String {
    static N: AtomicU32 = AtomicU32::new(0);
    let name = format!(
        "cloudtak-{}-{}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    );
    c.create_bucket().bucket(&name).send().await.unwrap();
    name
}

pub async fn put(
    c: &aws_sdk_s3::Client,
    bucket: &str,
    key: &str,
    bytes: Vec<u8>,
    cache: Option<&str>,
) {
    c.put_object()
        .bucket(bucket)
        .key(key)
        .set_cache_control(cache.map(str::to_string))
        .body(ByteStream::from(bytes))
        .send()
        .await
        .unwrap();
}

/// An archive as CloudTAK's worker makes one (tippecanoe `-l out -z14 -Z0 -B6
/// --no-feature-limit --no-tile-size-limit`): two points, a line and a polygon.
pub fn cloudtak_archive() -> Vec<u8> {
    let opts = TilerOptions {
        min_zoom: 0,
        max_zoom: Some(14),
        base_zoom: Some(6),
        max_tile_bytes: usize::MAX,
        max_tile_features: usize::MAX,
        name: "upload.geojson".into(),
        description: "Automatically Converted by @tak-ps/etl".into(),
        ..TilerOptions::default()
    };
    let mut t = Tiler::new(opts, vec!["out".into()]).unwrap();
    use geo_types::{Geometry, LineString, Point, Polygon};
    let park = Polygon::new(
        LineString::from(vec![
            (-105.5, 40.2),
            (-105.3, 40.2),
            (-105.3, 40.4),
            (-105.5, 40.4),
            (-105.5, 40.2),
        ]),
        vec![],
    );
    let features: Vec<(&str, Geometry<f64>)> = vec![
        ("alpha", Point::new(ALPHA[0], ALPHA[1]).into()),
        ("beta", Point::new(BETA[0], BETA[1]).into()),
        (
            "road",
            LineString::from(vec![(-105.2, 39.5), (-104.8, 39.5)]).into(),
        ),
        ("park", park.into()),
    ];
    for (i, (name, g)) in features.iter().enumerate() {
        let props = json!({"name": name, "rank": i});
        t.add(0, i as u64, None, Some(g), props.as_object().unwrap())
            .unwrap();
    }
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("a.pmtiles");
    t.finish(
        std::io::BufWriter::new(std::fs::File::create(&p).unwrap()),
        &|| false,
    )
    .unwrap();
    std::fs::read(p).unwrap()
}

pub struct Fixture {
    pub app: Router,
    pub archive_len: usize,
    /// The bucket, for tests that add archives of their own.
    pub bucket: String,
}

/// A bucket with the archive at `profile/ALICE/FILE.pmtiles` and `public/basemap.pmtiles`, a
/// copy with an S3 Cache-Control, a raster archive and a file that is no archive; the app
/// with the CloudTAK routes over it.
pub async fn fixture() -> Fixture {
    let c = client().await;
    let b = bucket(&c).await;
    let bytes = cloudtak_archive();
    put(
        &c,
        &b,
        &format!("profile/{ALICE}/{FILE}.pmtiles"),
        bytes.clone(),
        None,
    )
    .await;
    put(&c, &b, "public/basemap.pmtiles", bytes.clone(), None).await;
    put(
        &c,
        &b,
        "public/cached.pmtiles",
        bytes.clone(),
        Some("public, max-age=60"),
    )
    .await;
    put(&c, &b, "public/notes.txt", b"not an archive".to_vec(), None).await;
    let dir = tempfile::tempdir().unwrap();
    let raster = dir.path().join("r.pmtiles");
    write_archive(&raster, "img", &[(2, 1, 1)], 0, 4, TileType::Png);
    put(
        &c,
        &b,
        "public/raster.pmtiles",
        std::fs::read(raster).unwrap(),
        None,
    )
    .await;

    let args = CloudTakArgs {
        signing_secret: Some(SIGNING.into()),
        asset_bucket: Some(b.clone()),
        pmtiles_url: Some(PMTILES_URL.into()),
        stack_name: Some("test-stack".into()),
    };
    let settings = args.settings(None).unwrap().unwrap();
    let bucket_source = Source::open(&format!("s3://{b}/"), s3_config())
        .await
        .unwrap();
    let public_source = Source::open(&format!("s3://{b}/public/"), s3_config())
        .await
        .unwrap();
    let ct = CloudTak {
        archives: Archives::plain_paths(bucket_source, CacheSettings::default()),
        settings,
    };
    let state = AppState::new(
        Archives::new(public_source, CacheSettings::default()),
        prod_settings(),
    )
    .with_cloudtak(Some(ct));
    Fixture {
        app: router(std::sync::Arc::new(state)),
        archive_len: bytes.len(),
        bucket: b,
    }
}

pub fn ct_token(claims: Value) -> String {
    token(SIGNING, claims)
}

pub fn alice() -> String {
    ct_token(json!({"access": "profile", "email": ALICE}))
}

/// Tile `(x, y)` of a point at zoom `z`.
pub fn tile_of([lon, lat]: [f64; 2], z: u8) -> (u32, u32) {
    let n = f64::from(1u32 << z);
    let x = ((lon + 180.0) / 360.0 * n).floor() as u32;
    let r = lat.to_radians();
    let y =
        ((1.0 - (r.tan() + 1.0 / r.cos()).ln() / std::f64::consts::PI) / 2.0 * n).floor() as u32;
    (x, y)
}

/// The `name`s of a FeatureCollection's features, sorted.
pub fn names(fc: &Value) -> Vec<String> {
    let mut v: Vec<String> = fc["features"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["properties"]["name"].as_str().unwrap().to_string())
        .collect();
    v.sort();
    v
}

/// A CloudTAK error answer: the status, and `{status, message, messages: []}` saying so.
pub fn assert_error(r: &Reply, status: StatusCode, holds: &str) {
    assert_eq!(r.status, status, "{}", r.text());
    let j = r.json();
    assert_eq!(j["status"], status.as_u16(), "{j}");
    assert_eq!(j["messages"], json!([]), "{j}");
    let m = j["message"].as_str().unwrap();
    assert!(m.contains(holds), "{m:?} should hold {holds:?}");
    assert_eq!(j.as_object().unwrap().len(), 3, "{j}");
}

pub const P: &str = "/tiles/profile/alice@example.com/6f1c1f0e-58a1-4a53-9f43-0d6f0e3c2a11";
