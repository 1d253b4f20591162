//! The binary as a Lambda: started with the Lambda runtime's environment, it must take API
//! Gateway v2 events (fixtures/tiles/lambda/*.json, in the documented payload format 2.0) from
//! the Runtime API and post API Gateway responses back. The Runtime API here is a loopback
//! stand-in that speaks the documented protocol (next / response / error); AWS's emulator is
//! not installable on this machine. The CloudTAK case reads its archive from the S3 server
//! started by scripts/test.sh.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::collections::VecDeque;
use std::path::PathBuf;
use std::process::Stdio;
use std::sync::{Arc, Mutex};

use axum::Router;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::IntoResponse;
use axum::routing::post;
use base64::Engine;
use serde_json::Value;
use support::*;
use tokio::sync::mpsc;

struct Runtime {
    queue: Mutex<VecDeque<(String, Value)>>,
    done: mpsc::UnboundedSender<(String, &'static str, Value)>,
}

async fn next(State(rt): State<Arc<Runtime>>) -> axum::response::Response {
    let item = rt.queue.lock().unwrap().pop_front();
    let Some((id, event)) = item else {
        // No more work: hold the poll open, as Lambda does between invocations.
        std::future::pending::<()>().await;
        unreachable!();
    };
    let mut h = HeaderMap::new();
    h.insert(
        "lambda-runtime-aws-request-id",
        HeaderValue::from_str(&id).unwrap(),
    );
    h.insert(
        "lambda-runtime-deadline-ms",
        HeaderValue::from_static("4102444800000"),
    );
    h.insert(
        "lambda-runtime-invoked-function-arn",
        HeaderValue::from_static("arn:aws:lambda:us-east-1:123456789012:function:tiles"),
    );
    h.insert(
        "lambda-runtime-trace-id",
        HeaderValue::from_static("Root=1-0-0;Sampled=0"),
    );
    (StatusCode::OK, h, event.to_string()).into_response()
}

async fn response(
    State(rt): State<Arc<Runtime>>,
    Path(id): Path<String>,
    body: String,
) -> StatusCode {
    let v = serde_json::from_str(&body).unwrap_or(Value::String(body));
    rt.done.send((id, "response", v)).unwrap();
    StatusCode::ACCEPTED
}

async fn error(State(rt): State<Arc<Runtime>>, Path(id): Path<String>, body: String) -> StatusCode {
    rt.done.send((id, "error", Value::String(body))).unwrap();
    StatusCode::ACCEPTED
}

async fn init_error(State(rt): State<Arc<Runtime>>, body: String) -> StatusCode {
    rt.done
        .send(("init".into(), "error", Value::String(body)))
        .unwrap();
    StatusCode::ACCEPTED
}

fn event(name: &str) -> Value {
    let p = fixtures().join("tiles/lambda").join(format!("{name}.json"));
    serde_json::from_str(&std::fs::read_to_string(&p).unwrap()).unwrap()
}

/// The public URL the Lambda under test is configured with: the API's stage URL. Deliberately
/// not the `Host` the events carry, so a URL built from the request would show.
const PUBLIC_URL: &str = "https://tiles.example.com/prod";

/// The settings of the Lambda under test: fixtures/tiles as the root, auth, CORS.
fn etl_env() -> Vec<(String, String)> {
    let root: PathBuf = fixtures().join("tiles");
    [
        ("ETL_TILES_ROOT", root.to_str().unwrap()),
        ("ETL_PROFILE", "prod"),
        ("ETL_TILES_JWT_SECRET", SECRET),
        ("ETL_TILES_PUBLIC_URL", PUBLIC_URL),
        ("ETL_TILES_CORS_ORIGINS", "https://tak.example.org"),
    ]
    .iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect()
}

/// Runs the events through the binary in Lambda mode (auth on, as it always is there) with
/// the settings `env`; the API Gateway responses by event name.
async fn invoke(events: Vec<(&str, Value)>, env: Vec<(String, String)>) -> Vec<(String, Value)> {
    let (tx, mut rx) = mpsc::unbounded_channel();
    let n = events.len();
    let rt = Arc::new(Runtime {
        queue: Mutex::new(
            events
                .into_iter()
                .map(|(name, e)| (name.to_string(), e))
                .collect(),
        ),
        done: tx,
    });
    let app = Router::new()
        .route(
            "/2018-06-01/runtime/invocation/next",
            axum::routing::get(next),
        )
        .route(
            "/2018-06-01/runtime/invocation/{id}/response",
            post(response),
        )
        .route("/2018-06-01/runtime/invocation/{id}/error", post(error))
        .route("/2018-06-01/runtime/init/error", post(init_error))
        .with_state(rt);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });

    let mut child = tokio::process::Command::new(env!("CARGO_BIN_EXE_etl-tiles"))
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("AWS_LAMBDA_RUNTIME_API", addr.to_string())
        .env("AWS_LAMBDA_FUNCTION_NAME", "tiles")
        .env("AWS_LAMBDA_FUNCTION_MEMORY_SIZE", "512")
        .env("AWS_LAMBDA_FUNCTION_VERSION", "$LATEST")
        .env("AWS_LAMBDA_LOG_STREAM_NAME", "2026/12/04/[$LATEST]0123")
        .env("AWS_LAMBDA_LOG_GROUP_NAME", "/aws/lambda/tiles")
        .env("AWS_REGION", "us-east-1")
        .envs(env)
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let mut out = Vec::new();
    while out.len() < n {
        let (id, kind, v) = tokio::select! {
            got = rx.recv() => got.unwrap(),
            status = child.wait() => panic!("the Lambda process exited: {status:?}"),
        };
        assert_eq!(kind, "response", "{id}: {v}");
        out.push((id, v));
    }
    child.kill().await.unwrap();
    out
}

fn body_bytes(resp: &Value) -> Vec<u8> {
    let body = resp["body"].as_str().unwrap_or("");
    if resp["isBase64Encoded"].as_bool() == Some(true) {
        base64::engine::general_purpose::STANDARD
            .decode(body)
            .unwrap()
    } else {
        body.as_bytes().to_vec()
    }
}

fn header<'a>(resp: &'a Value, name: &str) -> Option<&'a str> {
    resp["headers"][name]
        .as_str()
        .or_else(|| resp["multiValueHeaders"][name][0].as_str())
}

/// An event carrying `Authorization: Bearer TOKEN`.
fn with_bearer(mut e: Value, token: &str) -> Value {
    e["headers"]["authorization"] = Value::String(format!("Bearer {token}"));
    e
}

/// An event carrying `?token=TOKEN` (instead of whatever query it had).
fn with_query_token(mut e: Value, token: &str) -> Value {
    e["rawQueryString"] = Value::String(format!("token={token}"));
    e["queryStringParameters"] = serde_json::json!({ "token": token });
    e
}

#[tokio::test]
async fn api_gateway_v2_events_in_responses_out() {
    let t = token(
        SECRET,
        serde_json::json!({"exp": now() + 600, "archives": ["fixtures"]}),
    );
    let early = token(
        SECRET,
        serde_json::json!({"exp": now() + 7200, "nbf": now() + 3600, "archives": "*"}),
    );
    let mut spoofed = event("tilejson-default-stage");
    spoofed["headers"]["host"] = Value::String("evil.example".into());
    spoofed["headers"]["x-forwarded-host"] = Value::String("attacker.example".into());
    let events: Vec<(&str, Value)> = vec![
        ("health", event("health")),
        (
            "tilejson-default-stage",
            with_bearer(event("tilejson-default-stage"), &t),
        ),
        (
            "tilejson-named-stage",
            with_query_token(event("tilejson-named-stage"), &t),
        ),
        ("tilejson-spoofed-host", with_bearer(spoofed, &t)),
        ("tile-gzip", with_bearer(event("tile-gzip"), &t)),
        ("tile-identity", with_bearer(event("tile-identity"), &t)),
        ("tile-missing", with_bearer(event("tile-missing"), &t)),
        (
            "tile-outside-zooms",
            with_bearer(event("tile-outside-zooms"), &t),
        ),
        ("tile-bad-name", with_bearer(event("tile-bad-name"), &t)),
        ("tile-no-token", event("tile-gzip")),
        (
            "tile-not-yet-valid",
            with_bearer(event("tile-gzip"), &early),
        ),
        (
            "view-named-stage",
            with_query_token(event("view-named-stage"), &t),
        ),
        ("cors-preflight", event("cors-preflight")),
    ];
    let responses = invoke(events, etl_env()).await;
    let by = |name: &str| -> &Value { &responses.iter().find(|(id, _)| id == name).unwrap().1 };

    assert_eq!(by("health")["statusCode"], 200);

    // Every TileJSON points at the public URL, whatever the stage or Host of the request.
    for name in ["tilejson-default-stage", "tilejson-spoofed-host"] {
        let r = by(name);
        assert_eq!(r["statusCode"], 200, "{name}: {r}");
        let tj: Value = serde_json::from_slice(&body_bytes(r)).unwrap();
        assert_eq!(
            tj["tiles"][0],
            format!("{PUBLIC_URL}/tiles/fixtures/{{z}}/{{x}}/{{y}}.pbf"),
            "{name}"
        );
        assert_eq!(tj["maxzoom"], 12);
    }
    // A token that came in the query goes out on the tile URLs.
    let r = by("tilejson-named-stage");
    assert_eq!(r["statusCode"], 200, "{r}");
    let tj: Value = serde_json::from_slice(&body_bytes(r)).unwrap();
    assert_eq!(
        tj["tiles"][0],
        format!("{PUBLIC_URL}/tiles/fixtures/{{z}}/{{x}}/{{y}}.pbf?token={t}")
    );
    let local = std::fs::read(fixtures().join("tiles/fixtures.pmtiles")).unwrap();
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("fixtures.pmtiles"), &local).unwrap();
    let (app, _) = dir_app(dir.path(), dev_settings());
    let direct = support::get(
        &app,
        "/tiles/fixtures/0/0/0.pbf",
        &[("accept-encoding", "gzip")],
    )
    .await;

    let r = by("tile-gzip");
    assert_eq!(r["statusCode"], 200, "{r}");
    assert_eq!(r["isBase64Encoded"], true);
    assert_eq!(header(r, "content-encoding"), Some("gzip"));
    assert_eq!(header(r, "etag"), direct.header("etag"));
    assert_eq!(
        body_bytes(r),
        direct.body.to_vec(),
        "the same bytes as the server"
    );

    let r = by("tile-identity");
    assert_eq!(r["statusCode"], 200);
    assert_eq!(header(r, "content-encoding"), None);
    assert_eq!(body_bytes(r), gunzip(&direct.body));

    assert_eq!(by("tile-missing")["statusCode"], 204);
    assert_eq!(by("tile-outside-zooms")["statusCode"], 404);
    assert_eq!(by("tile-bad-name")["statusCode"], 400);
    assert_eq!(by("tile-no-token")["statusCode"], 401);
    assert_eq!(by("tile-not-yet-valid")["statusCode"], 401);

    let r = by("view-named-stage");
    assert_eq!(r["statusCode"], 200);
    let html = String::from_utf8(body_bytes(r)).unwrap();
    assert!(html.contains("/prod/assets/preview.js"), "{html}");

    let r = by("cors-preflight");
    assert!(r["statusCode"].as_u64().unwrap() < 300, "{r}");
    assert_eq!(
        header(r, "access-control-allow-origin"),
        Some("https://tak.example.org")
    );
}

/// An event for `GET path?query` (the default stage).
fn get_event(path: &str, query: &str) -> Value {
    let mut e = event("tile-gzip");
    e["rawPath"] = Value::String(path.into());
    e["requestContext"]["http"]["path"] = Value::String(path.into());
    e["rawQueryString"] = Value::String(query.into());
    e
}

#[tokio::test]
async fn a_lambda_on_cloudtaks_environment_alone() {
    use support::cloudtak::{ALICE, FILE, P, PMTILES_URL, SIGNING, alice, bucket, client, put};
    let c = client().await;
    let b = bucket(&c).await;
    let bytes = support::cloudtak::cloudtak_archive();
    put(
        &c,
        &b,
        &format!("profile/{ALICE}/{FILE}.pmtiles"),
        bytes,
        None,
    )
    .await;
    // CloudTAK's variables, and the S3 server's (its endpoint and keys).
    let mut env: Vec<(String, String)> = std::env::vars()
        .filter(|(k, _)| k.starts_with("AWS_") && !k.starts_with("AWS_LAMBDA"))
        .collect();
    env.extend(
        [
            ("SigningSecret", SIGNING.to_string()),
            ("ASSET_BUCKET", b.clone()),
            ("PMTILES_URL", PMTILES_URL.to_string()),
            ("ETL_S3_ENDPOINT", support::cloudtak::s3_endpoint()),
        ]
        .map(|(k, v)| (k.to_string(), v)),
    );
    let t = alice();
    let (x, y) = support::cloudtak::tile_of(support::cloudtak::ALPHA, 14);
    let events = vec![
        (
            "tilejson",
            get_event(&format!("/api{P}"), &format!("token={t}")),
        ),
        (
            "tile",
            get_event(&format!("{P}/tiles/14/{x}/{y}.mvt"), &format!("token={t}")),
        ),
        (
            "no-token",
            get_event(&format!("{P}/tiles/14/{x}/{y}.mvt"), ""),
        ),
    ];
    let responses = invoke(events, env).await;
    let by = |name: &str| -> &Value { &responses.iter().find(|(id, _)| id == name).unwrap().1 };
    let r = by("tilejson");
    assert_eq!(r["statusCode"], 200, "{r}");
    let tj: Value = serde_json::from_slice(&body_bytes(r)).unwrap();
    assert_eq!(
        tj["tiles"][0],
        format!("{PMTILES_URL}/tiles/profile/{ALICE}/{FILE}/tiles/{{z}}/{{x}}/{{y}}.mvt?token={t}")
    );
    let r = by("tile");
    assert_eq!(r["statusCode"], 200, "{r}");
    assert_eq!(r["isBase64Encoded"], true);
    assert_eq!(header(r, "content-encoding"), Some("gzip"));
    let layers = etl_tiles::mvt::decode_tile(&gunzip(&body_bytes(r))).unwrap();
    assert_eq!(layers[0].name, "out");
    let r = by("no-token");
    assert_eq!(r["statusCode"], 401, "{r}");
    let err: Value = serde_json::from_slice(&body_bytes(r)).unwrap();
    assert_eq!(err["status"], 401);
    assert_eq!(err["messages"], serde_json::json!([]));
}
