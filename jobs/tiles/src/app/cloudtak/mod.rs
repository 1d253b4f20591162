//! CloudTAK's tile routes (`tasks/pmtiles`), mounted at `/` and under `/api` when `ASSET_BUCKET`
//! is set. P is `/tiles/profile/{user}/{file}`, U is `/tiles/public/{name}`; every route but
//! `GET /tiles` takes `?token=` (CloudTAK's tokens, see [`crate::auth::SigningAuth`]).
//!
//! - `GET /tiles`: `{name}`; `GET /tiles/public`: `{total, items: [{name, hash, updated, size}]}`.
//! - `GET P`, `GET U`: TileJSON in CloudTAK's shape.
//! - `GET P|U/tiles/{z}/{x}/{y}.{ext}`: the tile (here).
//! - `GET P|U/query`, `GET P|U/features`, `GET P/{z}/{x}/{y}/features`,
//!   `GET U/tiles/{z}/{x}/{y}/features`: features as GeoJSON ([`features`]).
//!
//! Errors are `{status, message, messages: []}`, as CloudTAK's services answer them.

mod features;

use std::collections::HashMap;
use std::sync::Arc;

use axum::Router;
use axum::body::Body;
use axum::extract::{Path, RawQuery, State};
use axum::http::StatusCode;
use axum::http::header::{self, HeaderMap, HeaderValue};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use bytes::Bytes;
use etl_tiles::archive::{Compression, Header, TileType};
use etl_tiles::tile::{TileCoord, tile_id};
use sha2::{Digest, Sha256};

use super::{Failure, Shared, cacheable, if_none_match, not_modified};
use crate::archives::{OpenArchive, ServeError};
use crate::auth::Denied;
use crate::cloudtak::{ArchiveRef, CloudTak};
use crate::request::{self, BadRequest};
use crate::source::{ARCHIVE_EXT, SourceError};

/// An error answer in CloudTAK's shape: `{status, message, messages: []}`, never cached.
pub(super) struct CtFailure(Failure);

impl CtFailure {
    fn new(status: StatusCode, message: impl ToString) -> CtFailure {
        CtFailure(Failure::new(status, message))
    }
}

impl std::fmt::Debug for CtFailure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} {}", self.0.status, self.0.message)
    }
}

impl From<Failure> for CtFailure {
    fn from(f: Failure) -> CtFailure {
        CtFailure(f)
    }
}

impl From<BadRequest> for CtFailure {
    fn from(e: BadRequest) -> CtFailure {
        CtFailure(e.into())
    }
}

impl From<ServeError> for CtFailure {
    fn from(e: ServeError) -> CtFailure {
        CtFailure(e.into())
    }
}

impl From<Denied> for CtFailure {
    fn from(e: Denied) -> CtFailure {
        // CloudTAK answers 401 for every refusal, a valid token that does not open the file too.
        CtFailure::new(StatusCode::UNAUTHORIZED, e)
    }
}

impl IntoResponse for CtFailure {
    fn into_response(self) -> Response {
        let body = serde_json::json!({
            "status": self.0.status.as_u16(),
            "message": self.0.message,
            "messages": [],
        });
        let mut r = self.0.into_response();
        *r.body_mut() = Body::from(body.to_string());
        r
    }
}

type CtAnswer = Result<Response, CtFailure>;

/// The routes, with `state.cloudtak` set (they answer 404 without it).
pub(super) fn routes() -> Router<Shared> {
    use features::{bbox_features, point_query, tile_features};
    const P: &str = "/tiles/profile/{user}/{file}";
    const U: &str = "/tiles/public/{name}";
    Router::new()
        .route("/tiles", get(info))
        .route("/tiles/public", get(list_public))
        .route(U, get(tilejson))
        .route(P, get(tilejson))
        .route(&format!("{U}/tiles/{{z}}/{{x}}/{{y}}"), get(tile))
        .route(&format!("{P}/tiles/{{z}}/{{x}}/{{y}}"), get(tile))
        .route(&format!("{U}/query"), get(point_query))
        .route(&format!("{P}/query"), get(point_query))
        .route(&format!("{U}/features"), get(bbox_features))
        .route(&format!("{P}/features"), get(bbox_features))
        .route(
            &format!("{U}/tiles/{{z}}/{{x}}/{{y}}/features"),
            get(tile_features),
        )
        .route(
            &format!("{P}/{{z}}/{{x}}/{{y}}/features"),
            get(tile_features),
        )
}

/// The CloudTAK error answer for a path no route took, when the path is one of CloudTAK's.
pub(super) fn fallback(state: &Shared, path: &str) -> Option<Response> {
    state.cloudtak.as_ref()?;
    let ours = ["/api/", "/tiles/public/", "/tiles/profile/"]
        .iter()
        .any(|p| path.starts_with(p));
    ours.then(|| {
        CtFailure::new(StatusCode::NOT_FOUND, format!("no route for {path}")).into_response()
    })
}

/// The path parameters of the routes: an archive (`name`, or `user` and `file`) and maybe a tile.
#[derive(Debug, serde::Deserialize)]
pub(super) struct Params {
    name: Option<String>,
    user: Option<String>,
    file: Option<String>,
    z: Option<String>,
    x: Option<String>,
    y: Option<String>,
}

impl Params {
    fn archive(&self) -> Result<ArchiveRef, BadRequest> {
        match (&self.name, &self.user, &self.file) {
            (Some(name), _, _) => ArchiveRef::public(name),
            (None, Some(user), Some(file)) => ArchiveRef::profile(user, file),
            _ => Err(BadRequest::Name(String::new())),
        }
    }

    fn tile(&self) -> (&str, &str, &str) {
        fn s(v: &Option<String>) -> &str {
            v.as_deref().unwrap_or("")
        }
        (s(&self.z), s(&self.x), s(&self.y))
    }
}

/// The query string as a map (first occurrence of a key wins; `+` is a space).
pub(super) fn query_map(query: Option<&str>) -> HashMap<String, String> {
    let mut out = HashMap::new();
    for pair in query.unwrap_or("").split('&').filter(|p| !p.is_empty()) {
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        let decode = |s: &str| {
            percent_encoding::percent_decode_str(&s.replace('+', " "))
                .decode_utf8_lossy()
                .into_owned()
        };
        out.entry(decode(k)).or_insert_with(|| decode(v));
    }
    out
}

fn cloudtak(state: &Shared) -> Result<&CloudTak, CtFailure> {
    state.cloudtak.as_ref().ok_or_else(|| {
        CtFailure::new(
            StatusCode::NOT_FOUND,
            "the CloudTAK tile routes are off (ASSET_BUCKET is not set)",
        )
    })
}

/// Checks the token (401), then the path (400), then that the token opens the archive (401):
/// nothing is read before all three pass.
pub(super) fn authorize(
    ct: &CloudTak,
    params: &Params,
    query: &HashMap<String, String>,
) -> Result<ArchiveRef, CtFailure> {
    let claims = ct
        .settings
        .auth
        .verify(query.get("token").map(String::as_str))?;
    let archive = params.archive()?;
    archive.check(&claims)?;
    Ok(archive)
}

/// The archive, opened (404 when the bucket has no such key).
pub(super) async fn open(
    ct: &CloudTak,
    archive: &ArchiveRef,
) -> Result<Arc<OpenArchive>, CtFailure> {
    let path = archive.path();
    match ct.archives.get(&path).await? {
        Some(a) => Ok(a),
        None => Err(CtFailure::new(
            StatusCode::NOT_FOUND,
            format!("Key not found: {path}{ARCHIVE_EXT}"),
        )),
    }
}

/// The stored bytes of tile `z/x/y` of `archive`, and the version they were read from. A
/// replaced object (`If-Match` failed) is opened again once.
pub(super) async fn read_tile(
    ct: &CloudTak,
    archive: &ArchiveRef,
    (z, x, y): (u8, u32, u32),
) -> Result<(Arc<OpenArchive>, Option<Bytes>), CtFailure> {
    let id = tile_id(TileCoord { z, x, y });
    let mut retried = false;
    loop {
        let a = open(ct, archive).await?;
        match ct.archives.tile(&a, id).await {
            Ok(data) => return Ok((a, data)),
            Err(ServeError::Source(SourceError::Changed(_))) if !retried => {
                retried = true;
                ct.archives.forget(&archive.path());
            }
            Err(e) => return Err(e.into()),
        }
    }
}

/// 404 outside the archive's zooms, as CloudTAK answers.
pub(super) fn check_zoom(h: &Header, z: u8) -> Result<(), CtFailure> {
    if z < h.min_zoom || z > h.max_zoom {
        return Err(CtFailure::new(
            StatusCode::NOT_FOUND,
            format!(
                "Tile Not Found: zoom {z} is outside {}-{}",
                h.min_zoom, h.max_zoom
            ),
        ));
    }
    Ok(())
}

/// A JSON answer that is not cached by shared caches (it may carry a token).
fn json(headers: &HeaderMap, body: serde_json::Value) -> Response {
    cacheable(
        headers,
        Bytes::from(body.to_string()),
        "application/json",
        HeaderValue::from_static("private, no-cache"),
    )
}

async fn info(State(state): State<Shared>, headers: HeaderMap) -> CtAnswer {
    let ct = cloudtak(&state)?;
    Ok(json(
        &headers,
        serde_json::json!({ "name": ct.settings.stack_name }),
    ))
}

async fn list_public(
    State(state): State<Shared>,
    RawQuery(query): RawQuery,
    headers: HeaderMap,
) -> CtAnswer {
    let ct = cloudtak(&state)?;
    let q = query_map(query.as_deref());
    ct.settings
        .auth
        .verify(q.get("token").map(String::as_str))?;
    let crate::source::Source::S3(s3) = ct.archives.source() else {
        return Err(CtFailure::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "the asset bucket is not an S3 source",
        ));
    };
    let objects = s3
        .list_detailed("public/", ARCHIVE_EXT)
        .await
        .map_err(ServeError::from)?;
    let items: Vec<serde_json::Value> = objects
        .iter()
        .map(|o| {
            let updated = o.modified.unwrap_or_else(std::time::SystemTime::now);
            serde_json::json!({
                "name": o.key,
                "hash": o.etag,
                "updated": humantime::format_rfc3339_millis(updated).to_string(),
                "size": o.size,
            })
        })
        .collect();
    Ok(json(
        &headers,
        serde_json::json!({ "total": items.len(), "items": items }),
    ))
}

/// The extension of tile URLs for a tile type (CloudTAK's; MVT archives' are `.mvt`).
fn tile_ext(t: TileType) -> &'static str {
    match t {
        TileType::Png => "png",
        TileType::Jpeg => "jpg",
        TileType::Webp => "webp",
        TileType::Avif => "avif",
        TileType::Mlt => "mlt",
        TileType::Mvt | TileType::Unknown | TileType::Other(_) => "mvt",
    }
}

/// Whether a URL's extension asks for the archive's tiles (`pbf` is also taken for MVT).
fn ext_matches(t: TileType, ext: &str) -> bool {
    ext == tile_ext(t)
        || (t == TileType::Mvt && ext == "pbf")
        || (t == TileType::Jpeg && ext == "jpeg")
}

/// Path segments as they go into a URL: `@` stays (an email is a CloudTAK user name).
const URL_SEGMENT: &percent_encoding::AsciiSet = &super::PATH_SEGMENT.remove(b'@');

/// The PMTiles header as CloudTAK's TileJSON `meta` has it (the `pmtiles` library's names).
fn header_json(h: &Header) -> serde_json::Value {
    serde_json::json!({
        "specVersion": h.version,
        "rootDirectoryOffset": h.root_offset,
        "rootDirectoryLength": h.root_length,
        "jsonMetadataOffset": h.metadata_offset,
        "jsonMetadataLength": h.metadata_length,
        "leafDirectoryOffset": h.leaf_offset,
        "leafDirectoryLength": h.leaf_length,
        "tileDataOffset": h.data_offset,
        "tileDataLength": h.data_length,
        "numAddressedTiles": h.addressed_tiles,
        "numTileEntries": h.tile_entries,
        "numTileContents": h.tile_contents,
        "clustered": h.clustered,
        "internalCompression": h.internal_compression.to_byte(),
        "tileCompression": h.tile_compression.to_byte(),
        "tileType": h.tile_type.to_byte(),
        "minZoom": h.min_zoom,
        "maxZoom": h.max_zoom,
        "minLon": h.bounds[0],
        "minLat": h.bounds[1],
        "maxLon": h.bounds[2],
        "maxLat": h.bounds[3],
        "centerZoom": h.center_zoom,
        "centerLon": h.center_lon,
        "centerLat": h.center_lat,
    })
}

async fn tilejson(
    State(state): State<Shared>,
    Path(params): Path<Params>,
    RawQuery(query): RawQuery,
    headers: HeaderMap,
) -> CtAnswer {
    let ct = cloudtak(&state)?;
    let q = query_map(query.as_deref());
    let archive = authorize(ct, &params, &q)?;
    let a = open(ct, &archive).await?;
    let h = a.header();
    let path = archive.path();
    let prefix: Vec<String> = path
        .split('/')
        .map(|s| percent_encoding::utf8_percent_encode(s, URL_SEGMENT).to_string())
        .collect();
    let token = q.get("token").map(String::as_str).unwrap_or_default();
    let token = percent_encoding::utf8_percent_encode(token, URL_SEGMENT);
    let mut tj = serde_json::json!({
        "tilejson": "3.0.0",
        "name": format!("{path}{ARCHIVE_EXT}"),
        "description": "Hosted by CloudTAK",
        "version": "1.0.0",
        "scheme": "xyz",
        "tiles": [format!(
            "{}/tiles/{}/tiles/{{z}}/{{x}}/{{y}}.{}?token={token}",
            ct.settings.tiles_url,
            prefix.join("/"),
            tile_ext(h.tile_type)
        )],
        "minzoom": h.min_zoom,
        "maxzoom": h.max_zoom,
        "bounds": h.bounds,
        "center": [h.center_lon, h.center_lat, h.center_zoom],
        "meta": header_json(h),
    });
    if let Some(layers) = a.metadata().get("vector_layers").filter(|v| v.is_array()) {
        tj["vector_layers"] = layers.clone();
    }
    Ok(json(&headers, tj))
}

/// The content type of tiles of a type (CloudTAK's for MVT: `application/x-protobuf`).
fn tile_content_type(t: TileType) -> &'static str {
    match t {
        TileType::Mvt => "application/x-protobuf",
        other => request::content_type(other),
    }
}

async fn tile(
    State(state): State<Shared>,
    Path(params): Path<Params>,
    RawQuery(query): RawQuery,
    headers: HeaderMap,
) -> CtAnswer {
    let ct = cloudtak(&state)?;
    let q = query_map(query.as_deref());
    let archive = authorize(ct, &params, &q)?;
    let (z, x, y_ext) = params.tile();
    let (y, ext) = y_ext
        .rsplit_once('.')
        .ok_or_else(|| BadRequest::NoExtension(y_ext.to_string()))?;
    let zxy = request::tile_coordinates(z, x, y)?;
    let a = open(ct, &archive).await?;
    check_zoom(a.header(), zxy.0)?;
    let tile_type = a.header().tile_type;
    if !ext_matches(tile_type, ext) {
        return Err(CtFailure::new(
            StatusCode::BAD_REQUEST,
            format!("Bad request: archive has type .{}", tile_ext(tile_type)),
        ));
    }
    let (a, data) = read_tile(ct, &archive, zxy).await?;
    let Some(data) = data else {
        let mut r = Response::new(Body::empty());
        *r.status_mut() = StatusCode::NO_CONTENT;
        return Ok(r);
    };
    let cache_control = a
        .version
        .cache_control
        .as_deref()
        .and_then(|c| HeaderValue::from_str(c).ok())
        .unwrap_or_else(|| state.settings.cache_control.clone());
    let etag = HeaderValue::from_str(&format!("\"{:x}\"", Sha256::digest(&data)))
        .unwrap_or_else(|_| HeaderValue::from_static("\"0\""));
    if if_none_match(&headers, &etag) {
        return Ok(not_modified(etag, cache_control));
    }
    let coding = match a.header().tile_compression {
        Compression::Gzip => Some("gzip"),
        Compression::Brotli => Some("br"),
        Compression::Zstd => Some("zstd"),
        _ => None,
    };
    let mut r = Response::new(Body::from(data));
    let h = r.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static(tile_content_type(tile_type)),
    );
    if let Some(c) = coding {
        h.insert(header::CONTENT_ENCODING, HeaderValue::from_static(c));
    }
    h.insert(header::ETAG, etag);
    h.insert(header::CACHE_CONTROL, cache_control);
    Ok(r)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;

    #[test]
    fn query_strings() {
        let q = query_map(Some(
            "token=a%2Eb&bbox=1,2,3,4&layer=my+layer&token=second&flag",
        ));
        assert_eq!(q["token"], "a.b");
        assert_eq!(q["bbox"], "1,2,3,4");
        assert_eq!(q["layer"], "my layer");
        assert_eq!(q["flag"], "");
        assert!(query_map(None).is_empty());
    }

    #[test]
    fn extensions() {
        assert!(ext_matches(TileType::Mvt, "mvt") && ext_matches(TileType::Mvt, "pbf"));
        assert!(!ext_matches(TileType::Mvt, "png") && !ext_matches(TileType::Png, "mvt"));
        assert!(ext_matches(TileType::Jpeg, "jpg") && ext_matches(TileType::Mlt, "mlt"));
        assert!(!ext_matches(TileType::Mvt, "mlt"));
    }
}
