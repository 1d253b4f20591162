//! The router: routes, status codes and headers. One router serves both the HTTP server and
//! the Lambda handler. The tile routes are in [`tiles`], the pages and the raw archive in
//! [`pages`].

mod cloudtak;
mod pages;
mod sprites;
mod tiles;
mod transcode;

use std::sync::Arc;

use axum::Router;
use axum::body::Body;
use axum::http::header::{self, HeaderMap, HeaderValue};
use axum::http::{Method, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use bytes::Bytes;
use tokio::sync::Semaphore;
use tower_http::cors::{AllowOrigin, CorsLayer};

use crate::archives::{Archives, OpenArchive, ServeError};
use crate::auth::{Auth, Denied, Grant};
use crate::cloudtak::CloudTak;
use crate::negotiate;
use crate::request::BadRequest;
use crate::source::SourceError;

pub use tiles::MAX_DECOMPRESSED_TILE;

/// Which origins may read the API from a browser.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Cors {
    /// No CORS headers: same-origin only.
    Off,
    /// `Access-Control-Allow-Origin: *`.
    Any,
    /// These origins (exact match).
    Origins(Vec<String>),
}

/// How responses are made, beyond what the archives hold.
pub struct Settings {
    /// `Cache-Control` of tiles and 204s.
    pub cache_control: HeaderValue,
    /// Absolute URL the API is reached at (`https://tiles.example.com/prod`). Every URL the API
    /// hands out (TileJSON `tiles`, the pages' links) is built from it, never from the request's
    /// `Host` or `X-Forwarded-*` headers, which a client chooses.
    pub public_url: String,
    pub cors: Cors,
    /// `None`: no authentication (only ever on a loopback listener).
    pub auth: Option<Auth>,
    /// Tiles decompressed at once for clients that refuse gzip; more get 503 + `Retry-After`.
    pub inflate_limit: usize,
}

pub struct AppState {
    pub archives: Archives,
    pub settings: Settings,
    /// One permit per decompression or transcoding in flight (see [`Settings::inflate_limit`]).
    pub inflate: Arc<Semaphore>,
    /// Tiles served in the other vector encoding (MVT as MLT and back), cached.
    pub transcoded: transcode::Transcoded,
    /// CloudTAK's tile routes, when `ASSET_BUCKET` is set.
    pub cloudtak: Option<CloudTak>,
}

impl AppState {
    pub fn new(archives: Archives, settings: Settings) -> AppState {
        AppState {
            archives,
            inflate: Arc::new(Semaphore::new(settings.inflate_limit)),
            transcoded: transcode::Transcoded::new(transcode::TRANSCODE_CACHE_BYTES),
            settings,
            cloudtak: None,
        }
    }

    /// Turns on CloudTAK's tile routes (`/tiles`, `/tiles/public…`, `/tiles/profile…`, also
    /// under `/api`) over the given archives.
    pub fn with_cloudtak(mut self, cloudtak: Option<CloudTak>) -> AppState {
        self.cloudtak = cloudtak;
        self
    }
}

/// The path prefix the request came in under (an API Gateway stage such as `/prod`), set by the
/// Lambda adapter and taken off before routing; the URLs handed out come from the public URL.
#[derive(Debug, Clone, Default)]
pub struct BasePath(pub String);

type Shared = Arc<AppState>;

pub fn router(state: Shared) -> Router {
    use pages::{asset, health, index, not_found, raw_archive, view};
    let cors = cors_layer(&state.settings.cors);
    let mut router = Router::new();
    if state.cloudtak.is_some() {
        router = router
            .merge(cloudtak::routes())
            .nest("/api", cloudtak::routes());
    }
    let router = router
        .route("/", get(index))
        .route("/health", get(health))
        .route("/view/{name}", get(view))
        .route("/assets/{file}", get(asset))
        .route("/tiles/{name}", get(tiles::tilejson))
        .route("/sprites/{file}", get(sprites::sprite))
        .route("/tiles/{name}/{z}/{x}/{y}", get(tiles::tile))
        .route("/archives/{file}", get(raw_archive))
        .fallback(not_found)
        .with_state(state);
    match cors {
        Some(layer) => router.layer(layer),
        None => router,
    }
}

fn cors_layer(cors: &Cors) -> Option<CorsLayer> {
    let origin = match cors {
        Cors::Off => return None,
        Cors::Any => AllowOrigin::any(),
        Cors::Origins(list) => AllowOrigin::list(
            list.iter()
                .filter_map(|o| HeaderValue::from_str(o).ok())
                .collect::<Vec<_>>(),
        ),
    };
    Some(
        CorsLayer::new()
            .allow_origin(origin)
            .allow_methods([Method::GET, Method::HEAD, Method::OPTIONS])
            .allow_headers([
                header::AUTHORIZATION,
                header::RANGE,
                header::IF_NONE_MATCH,
                header::IF_MATCH,
                header::ACCEPT_ENCODING,
                header::ACCEPT,
            ])
            .expose_headers([
                header::ETAG,
                header::CONTENT_RANGE,
                header::CONTENT_LENGTH,
                header::CONTENT_ENCODING,
                header::ACCEPT_RANGES,
            ])
            .max_age(std::time::Duration::from_secs(86_400)),
    )
}

/// An error answer: status, one-line JSON body, never cached.
struct Failure {
    status: StatusCode,
    message: String,
}

impl Failure {
    fn new(status: StatusCode, message: impl ToString) -> Failure {
        Failure {
            status,
            message: message.to_string(),
        }
    }
}

impl From<BadRequest> for Failure {
    fn from(e: BadRequest) -> Failure {
        Failure::new(StatusCode::BAD_REQUEST, e)
    }
}

impl From<Denied> for Failure {
    fn from(e: Denied) -> Failure {
        match e {
            Denied::Unauthorized(m) => Failure::new(StatusCode::UNAUTHORIZED, m),
            Denied::Forbidden(_) => Failure::new(StatusCode::FORBIDDEN, e),
        }
    }
}

impl From<ServeError> for Failure {
    fn from(e: ServeError) -> Failure {
        let status = match &e {
            ServeError::Source(SourceError::S3 { .. }) => StatusCode::BAD_GATEWAY,
            ServeError::Source(SourceError::Changed(_)) => StatusCode::SERVICE_UNAVAILABLE,
            // Corrupt archives, local I/O, and a manifest naming a missing file (`Dangling`: the
            // publish order was broken, a fault on our side, not an archive that does not
            // exist; a 404 would be cached by clients and hide it).
            _ => StatusCode::INTERNAL_SERVER_ERROR,
        };
        tracing::warn!(error = %e, "request failed");
        Failure::new(status, e)
    }
}

impl IntoResponse for Failure {
    fn into_response(self) -> Response {
        let body = serde_json::json!({ "error": self.message }).to_string();
        let mut r = Response::new(Body::from(body));
        *r.status_mut() = self.status;
        let h = r.headers_mut();
        h.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        );
        h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
        if self.status == StatusCode::UNAUTHORIZED {
            h.insert(
                header::WWW_AUTHENTICATE,
                HeaderValue::from_static("Bearer realm=\"tiles\""),
            );
        }
        // Every 503 is momentary (a replaced archive, all decompression permits taken).
        if self.status == StatusCode::SERVICE_UNAVAILABLE {
            h.insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
        }
        r
    }
}

type Answer = Result<Response, Failure>;

/// The token of a request: `Authorization: Bearer` first, then `?token=`.
fn token(headers: &HeaderMap, query: Option<&str>) -> Option<String> {
    if let Some(v) = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
    {
        let v = v.trim();
        if let Some(t) = v
            .strip_prefix("Bearer ")
            .or_else(|| v.strip_prefix("bearer "))
        {
            return Some(t.trim().to_string());
        }
    }
    query_token(query)
}

fn query_token(query: Option<&str>) -> Option<String> {
    query?.split('&').find_map(|pair| {
        let (k, v) = pair.split_once('=')?;
        (k == "token").then(|| {
            percent_encoding::percent_decode_str(v)
                .decode_utf8_lossy()
                .into_owned()
        })
    })
}

fn grant(state: &AppState, headers: &HeaderMap, query: Option<&str>) -> Result<Grant, Denied> {
    match &state.settings.auth {
        None => Ok(Grant::all()),
        Some(auth) => auth.verify(token(headers, query).as_deref()),
    }
}

/// Auth for one archive: 401 before 403, and both before anything is read.
fn authorize(
    state: &AppState,
    headers: &HeaderMap,
    query: Option<&str>,
    name: &str,
) -> Result<(), Denied> {
    grant(state, headers, query)?.check(name)
}

async fn archive(state: &AppState, name: &str) -> Result<Arc<OpenArchive>, Failure> {
    match state.archives.get(name).await? {
        Some(a) => Ok(a),
        None => Err(Failure::new(
            StatusCode::NOT_FOUND,
            format!("no archive named {name:?}"),
        )),
    }
}

fn strong_etag(bytes: &[u8], variant: &str) -> HeaderValue {
    let h = xxhash_rust::xxh3::xxh3_128(bytes);
    HeaderValue::from_str(&format!("\"{h:032x}{variant}\""))
        .unwrap_or_else(|_| HeaderValue::from_static("\"0\""))
}

fn if_none_match(headers: &HeaderMap, etag: &HeaderValue) -> bool {
    match (
        headers
            .get(header::IF_NONE_MATCH)
            .and_then(|v| v.to_str().ok()),
        etag.to_str(),
    ) {
        (Some(h), Ok(e)) => negotiate::none_match(h, e),
        _ => false,
    }
}

fn not_modified(etag: HeaderValue, cache_control: HeaderValue) -> Response {
    let mut r = Response::new(Body::empty());
    *r.status_mut() = StatusCode::NOT_MODIFIED;
    r.headers_mut().insert(header::ETAG, etag);
    r.headers_mut().insert(header::CACHE_CONTROL, cache_control);
    r
}

/// A body with ETag and `If-None-Match` handling.
fn cacheable(
    headers: &HeaderMap,
    body: Bytes,
    content_type: &'static str,
    cache_control: HeaderValue,
) -> Response {
    let etag = strong_etag(&body, "");
    if if_none_match(headers, &etag) {
        return not_modified(etag, cache_control);
    }
    let mut r = Response::new(Body::from(body));
    let h = r.headers_mut();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    h.insert(header::ETAG, etag);
    h.insert(header::CACHE_CONTROL, cache_control);
    r
}

/// The absolute URL of the API root, without a trailing slash: the public URL, whatever the
/// request's `Host` or `X-Forwarded-Host` say.
fn base_url(state: &AppState) -> &str {
    state.settings.public_url.trim_end_matches('/')
}

/// The path of the public URL (`/prod` for `https://x.example/prod/`; empty for none), decoded:
/// the pages put it before the links they hand out.
fn base_path(state: &AppState) -> String {
    let url = base_url(state);
    let after_scheme = url.split_once("://").map_or(url, |(_, rest)| rest);
    let path = after_scheme.find('/').map_or("", |i| &after_scheme[i..]);
    percent_encoding::percent_decode_str(path)
        .decode_utf8_lossy()
        .into_owned()
}

/// Characters escaped in a path segment or query value we build.
const PATH_SEGMENT: &percent_encoding::AsciiSet = &percent_encoding::NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'_')
    .remove(b'.')
    .remove(b'~');
