//! CloudTAK's tile routes (see tests/support/cloudtak.rs for the bucket): TileJSON in CloudTAK's
//! shape, tiles, CloudTAK's tokens, checked paths and `{status, message, messages}` errors, the
//! public listing, and the binary started from CloudTAK's environment alone. `/query` and
//! `/features` are in tests/cloudtak_features.rs.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use axum::http::StatusCode;
use etl_tiles::mvt::{PropValue, decode_tile};
use serde_json::{Value, json};
use sha2::Digest;
use support::cloudtak::*;
use support::*;

#[tokio::test]
async fn tilejson_in_cloudtaks_shape() {
    let f = fixture().await;
    let t = alice();
    for prefix in ["", "/api"] {
        let r = get(&f.app, &format!("{prefix}{P}?token={t}"), &[]).await;
        assert_eq!(r.status, StatusCode::OK, "{}", r.text());
        let tj = r.json();
        assert_eq!(tj["tilejson"], "3.0.0");
        assert_eq!(tj["name"], format!("profile/{ALICE}/{FILE}.pmtiles"));
        assert_eq!(tj["description"], "Hosted by CloudTAK");
        assert_eq!(tj["version"], "1.0.0");
        assert_eq!(tj["scheme"], "xyz");
        assert_eq!(
            tj["tiles"],
            json!([format!(
                "{PMTILES_URL}/tiles/profile/{ALICE}/{FILE}/tiles/{{z}}/{{x}}/{{y}}.mvt?token={t}"
            )])
        );
        assert_eq!(
            (tj["minzoom"].as_u64(), tj["maxzoom"].as_u64()),
            (Some(0), Some(14))
        );
        let b: Vec<f64> = serde_json::from_value(tj["bounds"].clone()).unwrap();
        assert!(
            b[0] <= -105.5 && b[2] >= -104.0 && b[1] <= 39.0 && b[3] >= 40.4,
            "{b:?}"
        );
        assert_eq!(tj["center"].as_array().unwrap().len(), 3);
        assert_eq!(tj["meta"]["tileType"], 1);
        assert_eq!(tj["meta"]["maxZoom"], 14);
        assert_eq!(tj["vector_layers"][0]["id"], "out");
    }
    let any = ct_token(json!({"access": "user", "email": "someone@example.com"}));
    let r = get(&f.app, &format!("/tiles/public/basemap?token={any}"), &[]).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text());
    let tj = r.json();
    assert_eq!(tj["name"], "public/basemap.pmtiles");
    assert_eq!(
        tj["tiles"][0],
        format!("{PMTILES_URL}/tiles/public/basemap/tiles/{{z}}/{{x}}/{{y}}.mvt?token={any}")
    );
    let r = get(&f.app, &format!("/tiles/public/raster?token={any}"), &[]).await;
    assert!(
        r.json()["tiles"][0]
            .as_str()
            .unwrap()
            .contains("/{y}.png?token=")
    );
    assert_error(
        &get(&f.app, &format!("/tiles/public/nothing?token={any}"), &[]).await,
        StatusCode::NOT_FOUND,
        "public/nothing.pmtiles",
    );
}

#[tokio::test]
async fn tiles_decode_to_layer_out_with_the_features() {
    let f = fixture().await;
    let t = alice();
    let (x, y) = tile_of(ALPHA, 14);
    let url = format!("{P}/tiles/14/{x}/{y}.mvt?token={t}");
    let r = get(&f.app, &url, &[]).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text());
    assert_eq!(r.header("content-type"), Some("application/x-protobuf"));
    assert_eq!(r.header("content-encoding"), Some("gzip"));
    assert_eq!(r.header("cache-control"), Some("private, max-age=86400"));
    let etag = format!("\"{:x}\"", sha2::Sha256::digest(&r.body));
    assert_eq!(r.header("etag"), Some(etag.as_str()));
    let layers = decode_tile(&gunzip(&r.body)).unwrap();
    assert_eq!(layers.len(), 1);
    assert_eq!(layers[0].name, "out");
    let names: Vec<&PropValue> = layers[0]
        .features
        .iter()
        .flat_map(|f| f.props.iter().filter(|(k, _)| k == "name").map(|(_, v)| v))
        .collect();
    assert_eq!(names, [&PropValue::String("alpha".into())]);

    // The same tile as .pbf; a 304 for its ETag.
    let pbf = get(&f.app, &url.replace(".mvt?", ".pbf?"), &[]).await;
    assert_eq!(pbf.body, r.body);
    let again = get(&f.app, &url, &[("if-none-match", etag.as_str())]).await;
    assert_eq!(again.status, StatusCode::NOT_MODIFIED);
    // The object's own Cache-Control wins.
    let any = ct_token(json!({"access": "user"}));
    let cached = get(
        &f.app,
        &format!("/api/tiles/public/cached/tiles/14/{x}/{y}.mvt?token={any}"),
        &[],
    )
    .await;
    assert_eq!(cached.status, StatusCode::OK);
    assert_eq!(cached.header("cache-control"), Some("public, max-age=60"));

    // A tile with nothing in it: 204, no body.
    let empty = get(&f.app, &format!("{P}/tiles/14/0/0.mvt?token={t}"), &[]).await;
    assert_eq!(empty.status, StatusCode::NO_CONTENT);
    assert!(empty.body.is_empty());
    // Wrong extension: 400; beyond the zooms: 404; not a tile: 400.
    assert_error(
        &get(&f.app, &format!("{P}/tiles/14/{x}/{y}.png?token={t}"), &[]).await,
        StatusCode::BAD_REQUEST,
        "archive has type .mvt",
    );
    assert_error(
        &get(&f.app, &format!("{P}/tiles/15/0/0.mvt?token={t}"), &[]).await,
        StatusCode::NOT_FOUND,
        "Tile Not Found",
    );
    assert_error(
        &get(&f.app, &format!("{P}/tiles/1/5/0.mvt?token={t}"), &[]).await,
        StatusCode::BAD_REQUEST,
        "does not exist",
    );
}

#[tokio::test]
async fn cloudtak_tokens_decide_access() {
    let f = fixture().await;
    let tj = |token: &str| format!("{P}?token={token}");
    // No token, a resource token, a forged one, an expired one: 401.
    assert_error(
        &get(&f.app, P, &[]).await,
        StatusCode::UNAUTHORIZED,
        "Invalid Token",
    );
    let etl = format!(
        "etl.{}",
        ct_token(json!({"access": "import", "internal": true}))
    );
    assert_error(
        &get(&f.app, &tj(&etl), &[]).await,
        StatusCode::UNAUTHORIZED,
        "etl.",
    );
    let forged = token(
        "another-secret",
        json!({"access": "profile", "email": ALICE}),
    );
    assert_error(
        &get(&f.app, &tj(&forged), &[]).await,
        StatusCode::UNAUTHORIZED,
        "signature",
    );
    let expired = ct_token(json!({"access": "profile", "email": ALICE, "exp": now() - 3600}));
    assert_error(
        &get(&f.app, &tj(&expired), &[]).await,
        StatusCode::UNAUTHORIZED,
        "expired",
    );
    // A bearer header is not how CloudTAK's tile API takes tokens.
    let bearer = format!("Bearer {}", alice());
    assert_eq!(
        get(&f.app, P, &[("authorization", &bearer)]).await.status,
        StatusCode::UNAUTHORIZED
    );
    // Another user's profile token, or alice's token without profile access: 401.
    let bob = ct_token(json!({"access": "profile", "email": "bob@example.com"}));
    assert_error(
        &get(&f.app, &tj(&bob), &[]).await,
        StatusCode::UNAUTHORIZED,
        "Unauthorized Access",
    );
    let user = ct_token(json!({"access": "user", "email": ALICE}));
    assert_eq!(
        get(&f.app, &tj(&user), &[]).await.status,
        StatusCode::UNAUTHORIZED
    );
    // The owner (no exp needed), and a file grant for another user, open it; on every route.
    let shared = ct_token(
        json!({"access": "profile", "email": "bob@example.com", "file": format!("{ALICE}/{FILE}")}),
    );
    let (x, y) = tile_of(ALPHA, 14);
    for t in [alice(), shared.clone()] {
        assert_eq!(get(&f.app, &tj(&t), &[]).await.status, StatusCode::OK);
        let tile = get(&f.app, &format!("{P}/tiles/14/{x}/{y}.mvt?token={t}"), &[]).await;
        assert_eq!(tile.status, StatusCode::OK);
        let q = get(&f.app, &format!("{P}/query?query=-105,40&token={t}"), &[]).await;
        assert_eq!(q.status, StatusCode::OK);
    }
    let elsewhere = ct_token(
        json!({"access": "profile", "email": "bob@example.com", "file": format!("{ALICE}/other")}),
    );
    assert_eq!(
        get(&f.app, &tj(&elsewhere), &[]).await.status,
        StatusCode::UNAUTHORIZED
    );
    for url in [
        format!("{P}/tiles/14/{x}/{y}.mvt?token={bob}"),
        format!("{P}/features?bbox=-105.1,39.9,-104.9,40.1&token={bob}"),
        format!("{P}/14/{x}/{y}/features?token={bob}"),
        format!("{P}/query?query=-105,40&token={bob}"),
    ] {
        let r = get(&f.app, &url, &[]).await;
        assert_error(&r, StatusCode::UNAUTHORIZED, "Unauthorized Access");
    }
    // Public archives: any valid token, HS512 too.
    let hs512 = jsonwebtoken::encode(
        &jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS512),
        &json!({"access": "user", "email": "x"}),
        &jsonwebtoken::EncodingKey::from_secret(SIGNING.as_bytes()).unwrap(),
    )
    .unwrap();
    for t in [hs512, bob, user] {
        assert_eq!(
            get(&f.app, &format!("/tiles/public/basemap?token={t}"), &[])
                .await
                .status,
            StatusCode::OK
        );
    }
    assert_error(
        &get(&f.app, "/tiles/public/basemap", &[]).await,
        StatusCode::UNAUTHORIZED,
        "Invalid Token",
    );
}

#[tokio::test]
async fn paths_cannot_leave_their_prefix() {
    let f = fixture().await;
    let any = ct_token(json!({"access": "user"}));
    let t = alice();
    // A public name that would reach alice's profile file, and other escapes: 400.
    for path in [
        format!("/tiles/public/..%2Fprofile%2F{ALICE}%2F{FILE}?token={any}"),
        format!("/tiles/public/%2E%2E?token={any}"),
        format!("/tiles/public/%2Fetc%2Fpasswd?token={any}"),
        format!("/tiles/public/a%0Ab?token={any}"),
        format!("/tiles/public/a%5Cb?token={any}"),
        format!("/tiles/profile/{ALICE}/..?token={t}"),
        format!("/tiles/profile/{ALICE}/..%2F..%2Fpublic%2Fbasemap/tiles/0/0/0.mvt?token={t}"),
        format!("/api/tiles/profile/{ALICE}/x%00/query?query=1,2&token={t}"),
    ] {
        assert_error(
            &get(&f.app, &path, &[]).await,
            StatusCode::BAD_REQUEST,
            "bad archive name",
        );
    }
    // `..` as a user name: the token must name it, and the path is refused all the same.
    let dots = ct_token(json!({"access": "profile", "email": ".."}));
    let r = get(&f.app, &format!("/tiles/profile/../x?token={dots}"), &[]).await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST, "{}", r.text());
    // Not a route of CloudTAK's: its error shape too.
    assert_error(
        &get(&f.app, "/api/nothing", &[]).await,
        StatusCode::NOT_FOUND,
        "no route",
    );
}

#[tokio::test]
async fn listing_and_info() {
    let f = fixture().await;
    let r = get(&f.app, "/tiles", &[]).await;
    assert_eq!(r.json(), json!({"name": "test-stack"}));
    assert_eq!(
        get(&f.app, "/api/tiles", &[]).await.json(),
        json!({"name": "test-stack"})
    );
    let any = ct_token(json!({"access": "user"}));
    let r = get(&f.app, &format!("/tiles/public?token={any}"), &[]).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text());
    let j = r.json();
    let items = j["items"].as_array().unwrap();
    assert_eq!(j["total"], items.len());
    let mut listed: Vec<&str> = items.iter().map(|i| i["name"].as_str().unwrap()).collect();
    listed.sort();
    assert_eq!(
        listed,
        [
            "public/basemap.pmtiles",
            "public/cached.pmtiles",
            "public/raster.pmtiles"
        ]
    );
    let basemap = items
        .iter()
        .find(|i| i["name"] == "public/basemap.pmtiles")
        .unwrap();
    assert_eq!(basemap["size"], f.archive_len);
    let hash = basemap["hash"].as_str().unwrap();
    assert!(!hash.is_empty() && !hash.contains('"'), "{hash}");
    let updated = basemap["updated"].as_str().unwrap();
    assert!(updated.ends_with('Z') && updated.len() == 24, "{updated}");
    assert_error(
        &get(&f.app, "/tiles/public", &[]).await,
        StatusCode::UNAUTHORIZED,
        "Invalid Token",
    );
    // The archive-claim routes still work next to CloudTAK's (here over public/), with their
    // own tokens.
    let claim = token(SECRET, json!({"exp": now() + 600, "archives": ["basemap"]}));
    let r = get(&f.app, &format!("/tiles/basemap?token={claim}"), &[]).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text());
    assert_eq!(r.json()["maxzoom"], 14);
}

/// GET `path` from a running server: status line and body.
fn http_get(base: &str, path: &str) -> (String, String) {
    use std::io::Read;
    let addr = base.strip_prefix("http://").unwrap();
    let mut conn = std::net::TcpStream::connect(addr).unwrap();
    std::io::Write::write_all(
        &mut conn,
        format!("GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").as_bytes(),
    )
    .unwrap();
    let mut reply = String::new();
    conn.read_to_string(&mut reply).unwrap();
    let (head, body) = reply.split_once("\r\n\r\n").unwrap_or((&reply, ""));
    (
        head.lines().next().unwrap_or("").to_string(),
        body.to_string(),
    )
}

#[tokio::test]
async fn the_binary_runs_on_cloudtaks_environment_alone() {
    let c = client().await;
    let b = bucket(&c).await;
    put(&c, &b, "public/basemap.pmtiles", cloudtak_archive(), None).await;
    use std::io::BufRead;
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_etl-tiles"))
        .args(["serve", "--listen", "127.0.0.1:0"])
        .env_remove("AWS_LAMBDA_RUNTIME_API")
        .env_remove("ETL_TILES_ROOT")
        .env_remove("ETL_TILES_JWT_SECRET")
        .env_remove("ETL_TILES_PUBLIC_URL")
        .env_remove("ETL_TILES_NO_AUTH")
        .env("SigningSecret", SIGNING)
        .env("ASSET_BUCKET", &b)
        .env("PMTILES_URL", PMTILES_URL)
        .env("ETL_S3_ENDPOINT", s3_endpoint())
        .env("LOG_FORMAT", "json")
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut line = String::new();
    std::io::BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let _server = Server(child);
    let base = line
        .trim()
        .strip_prefix("listening on ")
        .unwrap()
        .to_string();
    let any = ct_token(json!({"access": "user"}));
    let (status, body) = tokio::task::spawn_blocking({
        let base = base.clone();
        move || http_get(&base, &format!("/api/tiles/public/basemap?token={any}"))
    })
    .await
    .unwrap();
    assert_eq!(status, "HTTP/1.1 200 OK", "{body}");
    let tj: Value = serde_json::from_str(&body).unwrap();
    assert!(
        tj["tiles"][0]
            .as_str()
            .unwrap()
            .starts_with(&format!("{PMTILES_URL}/tiles/public/basemap/tiles/"))
    );
    let (status, _) = tokio::task::spawn_blocking(move || http_get(&base, "/tiles/public/basemap"))
        .await
        .unwrap();
    assert_eq!(
        status, "HTTP/1.1 401 Unauthorized",
        "auth is on with SigningSecret"
    );
}
