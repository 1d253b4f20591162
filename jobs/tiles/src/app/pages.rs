//! The pages (listing, preview, assets), `/health`, and the raw archive for PMTiles clients.

use std::sync::Arc;

use axum::body::Body;
use axum::extract::{Path, RawQuery, State};
use axum::http::header::{self, HeaderMap, HeaderValue};
use axum::http::{Request, StatusCode};
use axum::response::{IntoResponse, Response};
use bytes::Bytes;

use super::{
    Answer, Failure, Shared, archive, authorize, base_path, base_url, cacheable, grant,
    if_none_match, not_modified, query_token, strong_etag,
};
use crate::archives::{OpenArchive, ServeError};
use crate::negotiate::{self, RangeRequest};
use crate::{assets, preview, request};

/// Raw archive reads stream in pieces of this size.
const RAW_CHUNK: u64 = 1 << 20;

pub(super) async fn health(State(state): State<Shared>) -> Response {
    let body = serde_json::json!({
        "status": "ok",
        "root": state.archives.source().describe(),
        "auth": state.settings.auth.is_some(),
        "public_url": base_url(&state),
        "caches": state.archives.stats(),
    });
    let mut r = axum::Json(body).into_response();
    r.headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    r
}

/// Anything else under `/tiles/` is a malformed tile path (a name with '/', a coordinate
/// missing or too many); the rest is simply not here.
pub(super) async fn not_found(State(state): State<Shared>, req: Request<Body>) -> Response {
    let path = req.uri().path();
    if let Some(r) = super::cloudtak::fallback(&state, path) {
        return r;
    }
    legacy_not_found(path).into_response()
}

fn legacy_not_found(path: &str) -> Failure {
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

pub(super) async fn raw_archive(
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

pub(super) async fn asset(Path(file): Path<String>, headers: HeaderMap) -> Answer {
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

pub(super) async fn index(
    State(state): State<Shared>,
    RawQuery(query): RawQuery,
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
    // The manifest version each listed archive was resolved to (JSON only).
    let mut versions: Vec<Option<String>> = Vec::new();
    // Candidates (every X.pmtiles and X.json); which are archives, and what they hold, is what
    // resolving them says: a manifest-backed archive is listed under its name with the size of
    // the version it names, a JSON file that is not a manifest is not listed at all.
    for name in listed.into_iter().filter(|n| grant.allows(n)) {
        let (bytes, tile_type, min_zoom, max_zoom, error) = match state.archives.get(&name).await {
            Ok(Some(a)) => {
                versions.push(a.manifest_version.clone());
                (
                    a.version.len,
                    request::tile_type_name(a.header().tile_type).to_string(),
                    a.header().min_zoom,
                    a.header().max_zoom,
                    None,
                )
            }
            Ok(None) => continue,
            Err(e) => {
                versions.push(None);
                (0, String::new(), 0, 0, Some(e.to_string()))
            }
        };
        out.push(preview::ListedArchive {
            name,
            bytes,
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
            .zip(&versions)
            .map(|(a, version)| {
                serde_json::json!({
                    "name": a.name, "bytes": a.bytes, "format": a.tile_type,
                    "minzoom": a.min_zoom, "maxzoom": a.max_zoom, "error": a.error,
                    "version": version,
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
    let html = preview::index_page_at(&base_path(&state), &out, token.as_deref());
    Ok(cacheable(
        &headers,
        Bytes::from(html),
        "text/html; charset=utf-8",
        no_cache,
    ))
}

pub(super) async fn view(
    State(state): State<Shared>,
    Path(name): Path<String>,
    RawQuery(query): RawQuery,
    headers: HeaderMap,
) -> Answer {
    let name = request::archive_name(&name)?;
    authorize(&state, &headers, query.as_deref(), name)?;
    archive(&state, name).await?;
    let token = query_token(query.as_deref());
    let html = preview::view_page_at(&base_path(&state), name, token.as_deref());
    Ok(cacheable(
        &headers,
        Bytes::from(html),
        "text/html; charset=utf-8",
        HeaderValue::from_static("no-cache"),
    ))
}
