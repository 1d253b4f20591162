//! The router: routes, status codes and headers. One router serves both the HTTP server and
//! the Lambda handler.

use std::sync::Arc;

use axum::Router;
use axum::body::Body;
use axum::extract::{Path, RawQuery, State};
use axum::http::header::{self, HeaderMap, HeaderValue};
use axum::http::{Method, Request, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use bytes::Bytes;
use etl_tiles::archive::{Compression, TileType, decompress};
use etl_tiles::tile::{TileCoord, tile_id};
use tower_http::cors::{AllowOrigin, CorsLayer};

use crate::archives::{Archives, OpenArchive, ServeError};
use crate::auth::{Auth, Denied, Grant};
use crate::negotiate::{self, RangeRequest};
use crate::request::{self, BadRequest, TileRequest};
use crate::source::SourceError;
use crate::{assets, preview};

/// Decompressed tiles larger than this are refused (for clients that cannot take gzip).
const MAX_DECOMPRESSED_TILE: u64 = 64 << 20;
/// Raw archive reads stream in pieces of this size.
const RAW_CHUNK: u64 = 1 << 20;

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
    /// Absolute URL the API is reached at (`https://tiles.example.com/prod`), for TileJSON; when
    /// unset it is taken from `X-Forwarded-Proto/-Host` or `Host`.
    pub public_url: Option<String>,
    pub cors: Cors,
    /// `None`: no authentication (dev-test).
    pub auth: Option<Auth>,
}

pub struct AppState {
    pub archives: Archives,
    pub settings: Settings,
}

/// The path prefix the API is mounted under (an API Gateway stage such as `/prod`), set by the
/// Lambda adapter; empty for the server.
#[derive(Debug, Clone, Default)]
pub struct BasePath(pub String);

type Shared = Arc<AppState>;

pub fn router(state: Shared) -> Router {
    let cors = cors_layer(&state.settings.cors);
    let router = Router::new()
        .route("/", get(index))
        .route("/health", get(health))
        .route("/view/{name}", get(view))
        .route("/assets/{file}", get(asset))
        .route("/tiles/{name}", get(tilejson))
        .route("/tiles/{name}/{z}/{x}/{y}", get(tile))
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

/// The absolute URL of the API root, without a trailing slash.
fn base_url(state: &AppState, headers: &HeaderMap, base: &BasePath) -> String {
    if let Some(u) = &state.settings.public_url {
        return u.trim_end_matches('/').to_string();
    }
    let get = |n: &str| {
        headers
            .get(n)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.split(',').next())
            .map(|v| v.trim().to_string())
            .filter(|v| !v.is_empty())
    };
    let proto = get("x-forwarded-proto").unwrap_or_else(|| "http".to_string());
    let host = get("x-forwarded-host")
        .or_else(|| get("host"))
        .unwrap_or_else(|| "localhost".to_string());
    format!("{proto}://{host}{}", base.0)
}

fn base_of(req_base: Option<axum::Extension<BasePath>>) -> BasePath {
    req_base.map(|b| b.0).unwrap_or_default()
}

async fn health(State(state): State<Shared>) -> Response {
    let body = serde_json::json!({
        "status": "ok",
        "root": state.archives.source().describe(),
        "auth": state.settings.auth.is_some(),
        "caches": state.archives.stats(),
    });
    let mut r = axum::Json(body).into_response();
    r.headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    r
}

/// Anything else under `/tiles/` is a malformed tile path (a name with '/', a coordinate
/// missing or too many); the rest is simply not here.
async fn not_found(req: Request<Body>) -> Failure {
    let path = req.uri().path();
    if path.starts_with("/tiles/") {
        return Failure::new(
            StatusCode::BAD_REQUEST,
            format!(
                "bad tile path {path}: expected /tiles/NAME or /tiles/NAME/Z/X/Y.EXT, with no '/' in NAME"
            ),
        );
    }
    Failure::new(StatusCode::NOT_FOUND, format!("no route for {path}"))
}

async fn tilejson(
    State(state): State<Shared>,
    Path(name): Path<String>,
    RawQuery(query): RawQuery,
    base: Option<axum::Extension<BasePath>>,
    headers: HeaderMap,
) -> Answer {
    let name = request::archive_name(&name)?;
    authorize(&state, &headers, query.as_deref(), name)?;
    let a = archive(&state, name).await?;
    let base = base_url(&state, &headers, &base_of(base));
    let ext = match a.header.tile_type {
        TileType::Mvt => "pbf",
        t => request::tile_type_name(t),
    };
    let encoded = percent_encoding::utf8_percent_encode(name, PATH_SEGMENT).to_string();
    // A token that came in the query string has to go out on the tile URLs, or a map client
    // that was handed this TileJSON could not fetch a single tile.
    let token = query_token(query.as_deref())
        .map(|t| {
            format!(
                "?token={}",
                percent_encoding::utf8_percent_encode(&t, PATH_SEGMENT)
            )
        })
        .unwrap_or_default();
    let h = &a.header;
    let mut tj = serde_json::Map::new();
    tj.insert("tilejson".into(), "3.0.0".into());
    tj.insert(
        "tiles".into(),
        serde_json::json!([format!(
            "{base}/tiles/{encoded}/{{z}}/{{x}}/{{y}}.{ext}{token}"
        )]),
    );
    tj.insert("name".into(), name.into());
    for key in ["description", "attribution", "version"] {
        if let Some(v) = a.metadata.get(key).filter(|v| v.is_string()) {
            tj.insert(key.into(), v.clone());
        }
    }
    tj.insert("scheme".into(), "xyz".into());
    tj.insert("format".into(), request::tile_type_name(h.tile_type).into());
    tj.insert("minzoom".into(), h.min_zoom.into());
    tj.insert("maxzoom".into(), h.max_zoom.into());
    tj.insert("bounds".into(), serde_json::json!(h.bounds));
    tj.insert(
        "center".into(),
        serde_json::json!([h.center_lon, h.center_lat, h.center_zoom]),
    );
    if h.tile_type == TileType::Mvt {
        let layers = a
            .metadata
            .get("vector_layers")
            .filter(|v| v.is_array())
            .cloned()
            .unwrap_or_else(|| serde_json::json!([]));
        tj.insert("vector_layers".into(), layers);
    }
    let body = serde_json::Value::Object(tj).to_string();
    Ok(cacheable(
        &headers,
        Bytes::from(body),
        "application/json",
        HeaderValue::from_static("no-cache"),
    ))
}

/// Characters escaped in a path segment or query value we build.
const PATH_SEGMENT: &percent_encoding::AsciiSet = &percent_encoding::NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'_')
    .remove(b'.')
    .remove(b'~');

async fn tile(
    State(state): State<Shared>,
    Path((name, z, x, y)): Path<(String, String, String, String)>,
    RawQuery(query): RawQuery,
    headers: HeaderMap,
) -> Answer {
    let name = request::archive_name(&name)?;
    let t = TileRequest::parse(&z, &x, &y)?;
    authorize(&state, &headers, query.as_deref(), name)?;
    let id = tile_id(TileCoord {
        z: t.z,
        x: t.x,
        y: t.y,
    });
    // A replaced S3 archive shows up as `Changed` on the first read of the new version; open
    // it again once and answer from that.
    let mut retried = false;
    let (a, data) = loop {
        let a = archive(&state, name).await?;
        t.ext.check(a.header.tile_type)?;
        if t.z < a.header.min_zoom || t.z > a.header.max_zoom {
            return Err(Failure::new(
                StatusCode::NOT_FOUND,
                format!(
                    "zoom {} is outside archive {name:?}'s zooms {}-{}",
                    t.z, a.header.min_zoom, a.header.max_zoom
                ),
            ));
        }
        match state.archives.tile(&a, id).await {
            Ok(data) => break (a, data),
            Err(ServeError::Source(SourceError::Changed(_))) if !retried => {
                retried = true;
                state.archives.forget(name);
            }
            Err(e) => return Err(e.into()),
        }
    };
    let cache_control = state.settings.cache_control.clone();
    let Some(data) = data else {
        let mut r = Response::new(Body::empty());
        *r.status_mut() = StatusCode::NO_CONTENT;
        r.headers_mut().insert(header::CACHE_CONTROL, cache_control);
        return Ok(r);
    };
    let accept = headers
        .get(header::ACCEPT_ENCODING)
        .and_then(|v| v.to_str().ok());
    let coding = match a.header.tile_compression {
        Compression::Gzip => Some("gzip"),
        Compression::Brotli => Some("br"),
        Compression::Zstd => Some("zstd"),
        _ => None,
    };
    let (body, encoding, etag) = match coding {
        None => {
            let etag = strong_etag(&data, "");
            (data, None, etag)
        }
        Some(c) if negotiate::accepts(accept, c) => {
            let etag = strong_etag(&data, "");
            (data, Some(c), etag)
        }
        Some("gzip") => {
            // The client cannot take gzip: the ETag names the decoded representation, which is
            // a different one, so it must not match the gzip ETag.
            let etag = strong_etag(&data, "-identity");
            if if_none_match(&headers, &etag) {
                return Ok(with_vary(not_modified(etag, cache_control)));
            }
            let plain = decompress(&data, Compression::Gzip, MAX_DECOMPRESSED_TILE, "tile")
                .map_err(|e| {
                    Failure::from(ServeError::Corrupt {
                        name: name.to_string(),
                        error: e,
                    })
                })?;
            (Bytes::from(plain), None, etag)
        }
        Some(c) => {
            return Err(Failure::new(
                StatusCode::NOT_ACCEPTABLE,
                format!("tiles of {name:?} are {c}-compressed and the client does not accept {c}"),
            ));
        }
    };
    if if_none_match(&headers, &etag) {
        return Ok(with_vary(not_modified(etag, cache_control)));
    }
    let mut r = Response::new(Body::from(body));
    let h = r.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static(request::content_type(a.header.tile_type)),
    );
    if let Some(c) = encoding {
        h.insert(header::CONTENT_ENCODING, HeaderValue::from_static(c));
    }
    h.insert(header::ETAG, etag);
    h.insert(header::CACHE_CONTROL, cache_control);
    Ok(with_vary(r))
}

fn with_vary(mut r: Response) -> Response {
    r.headers_mut()
        .insert(header::VARY, HeaderValue::from_static("Accept-Encoding"));
    r
}

async fn raw_archive(
    State(state): State<Shared>,
    Path(file): Path<String>,
    RawQuery(query): RawQuery,
    headers: HeaderMap,
) -> Answer {
    let Some(name) = file.strip_suffix(crate::source::ARCHIVE_EXT) else {
        return Err(Failure::new(
            StatusCode::NOT_FOUND,
            format!("no archive file {file:?} (archive files end in .pmtiles)"),
        ));
    };
    let name = request::archive_name(name)?;
    authorize(&state, &headers, query.as_deref(), name)?;
    let a = archive(&state, name).await?;
    let total = a.version.len;
    let etag = strong_etag(a.version.etag.as_bytes(), "");
    let cache_control = HeaderValue::from_static("no-cache");
    if if_none_match(&headers, &etag) {
        return Ok(not_modified(etag, cache_control));
    }
    let range = headers.get(header::RANGE).and_then(|v| v.to_str().ok());
    let (status, start, len) = match negotiate::range(range, total) {
        RangeRequest::Whole => (StatusCode::OK, 0, total),
        RangeRequest::Part { start, len } => (StatusCode::PARTIAL_CONTENT, start, len),
        RangeRequest::Unsatisfiable => {
            let mut r = Failure::new(
                StatusCode::RANGE_NOT_SATISFIABLE,
                format!("archive {name:?} is {total} bytes"),
            )
            .into_response();
            if let Ok(v) = HeaderValue::from_str(&format!("bytes */{total}")) {
                r.headers_mut().insert(header::CONTENT_RANGE, v);
            }
            return Ok(r);
        }
    };
    let body = raw_body(state.clone(), a.clone(), start, len);
    let mut r = Response::new(body);
    *r.status_mut() = status;
    let h = r.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/vnd.pmtiles"),
    );
    h.insert(header::ACCEPT_RANGES, HeaderValue::from_static("bytes"));
    h.insert(header::CONTENT_LENGTH, HeaderValue::from(len));
    h.insert(header::ETAG, etag);
    h.insert(header::CACHE_CONTROL, cache_control);
    if status == StatusCode::PARTIAL_CONTENT
        && let Ok(v) = HeaderValue::from_str(&format!("bytes {start}-{}/{total}", start + len - 1))
    {
        h.insert(header::CONTENT_RANGE, v);
    }
    Ok(r)
}

/// `len` bytes from `start`, streamed in pieces so a whole-archive download holds one piece in
/// memory at a time.
fn raw_body(state: Shared, a: Arc<OpenArchive>, start: u64, len: u64) -> Body {
    let end = start + len;
    let stream = futures::stream::unfold(start, move |pos| {
        let state = state.clone();
        let a = a.clone();
        async move {
            if pos >= end {
                return None;
            }
            let n = RAW_CHUNK.min(end - pos);
            let piece = state.archives.source().read(&a.version, pos, n).await;
            Some((piece.map_err(std::io::Error::other), pos + n))
        }
    });
    Body::from_stream(stream)
}

async fn asset(Path(file): Path<String>, headers: HeaderMap) -> Answer {
    let Some(a) = assets::asset(&file) else {
        return Err(Failure::new(
            StatusCode::NOT_FOUND,
            format!("no asset {file:?}"),
        ));
    };
    let etag = HeaderValue::from_str(&a.etag).unwrap_or_else(|_| HeaderValue::from_static("\"0\""));
    let cache_control = HeaderValue::from_static("public, max-age=3600");
    if if_none_match(&headers, &etag) {
        return Ok(not_modified(etag, cache_control));
    }
    let mut r = Response::new(Body::from(Bytes::from_static(a.body)));
    let h = r.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static(a.content_type),
    );
    h.insert(header::ETAG, etag);
    h.insert(header::CACHE_CONTROL, cache_control);
    Ok(r)
}

fn wants_json(headers: &HeaderMap) -> bool {
    headers
        .get(header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.contains("application/json") && !v.contains("text/html"))
}

async fn index(
    State(state): State<Shared>,
    RawQuery(query): RawQuery,
    base: Option<axum::Extension<BasePath>>,
    headers: HeaderMap,
) -> Answer {
    let grant = grant(&state, &headers, query.as_deref())?;
    let listed = state
        .archives
        .source()
        .list()
        .await
        .map_err(|e| Failure::from(ServeError::from(e)))?;
    let mut out = Vec::new();
    for l in listed.into_iter().filter(|l| grant.allows(&l.name)) {
        let (tile_type, min_zoom, max_zoom, error) = match state.archives.get(&l.name).await {
            Ok(Some(a)) => (
                request::tile_type_name(a.header.tile_type).to_string(),
                a.header.min_zoom,
                a.header.max_zoom,
                None,
            ),
            Ok(None) => continue,
            Err(e) => (String::new(), 0, 0, Some(e.to_string())),
        };
        out.push(preview::ListedArchive {
            name: l.name,
            bytes: l.bytes,
            tile_type,
            min_zoom,
            max_zoom,
            error,
        });
    }
    let token = query_token(query.as_deref());
    let no_cache = HeaderValue::from_static("no-cache");
    if wants_json(&headers) {
        let list: Vec<serde_json::Value> = out
            .iter()
            .map(|a| {
                serde_json::json!({
                    "name": a.name, "bytes": a.bytes, "format": a.tile_type,
                    "minzoom": a.min_zoom, "maxzoom": a.max_zoom, "error": a.error,
                })
            })
            .collect();
        let body = serde_json::json!({ "archives": list }).to_string();
        return Ok(cacheable(
            &headers,
            Bytes::from(body),
            "application/json",
            no_cache,
        ));
    }
    let html = preview::index_page_at(&base_of(base).0, &out, token.as_deref());
    Ok(cacheable(
        &headers,
        Bytes::from(html),
        "text/html; charset=utf-8",
        no_cache,
    ))
}

async fn view(
    State(state): State<Shared>,
    Path(name): Path<String>,
    RawQuery(query): RawQuery,
    base: Option<axum::Extension<BasePath>>,
    headers: HeaderMap,
) -> Answer {
    let name = request::archive_name(&name)?;
    authorize(&state, &headers, query.as_deref(), name)?;
    archive(&state, name).await?;
    let token = query_token(query.as_deref());
    let html = preview::view_page_at(&base_of(base).0, name, token.as_deref());
    Ok(cacheable(
        &headers,
        Bytes::from(html),
        "text/html; charset=utf-8",
        HeaderValue::from_static("no-cache"),
    ))
}
