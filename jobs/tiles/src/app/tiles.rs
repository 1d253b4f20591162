//! TileJSON and tiles. Tiles stored gzip-compressed pass through to clients that take gzip; for
//! the few that refuse it they are decompressed, at most [`MAX_DECOMPRESSED_TILE`] bytes each and
//! at most [`Settings::inflate_limit`](super::Settings::inflate_limit) at once: past that the
//! answer is 503 with `Retry-After`, so memory stays bounded at limit × cap whatever the load.

use std::io::Read;

use axum::body::Body;
use axum::extract::{Path, RawQuery, State};
use axum::http::StatusCode;
use axum::http::header::{self, HeaderMap, HeaderValue};
use axum::response::Response;
use bytes::Bytes;
use etl_tiles::archive::{Compression, TileType};
use etl_tiles::tile::{TileCoord, tile_id};

use super::{
    Answer, Failure, PATH_SEGMENT, Shared, archive, authorize, base_url, cacheable, if_none_match,
    not_modified, query_token, strong_etag, transcode,
};
use crate::archives::ServeError;
use crate::negotiate;
use crate::request::{self, Serve, TileRequest};
use crate::source::SourceError;

/// Decompressed tiles larger than this are refused (for clients that cannot take gzip): 406,
/// since the gzip representation of the same tile is served to any client that accepts it.
pub const MAX_DECOMPRESSED_TILE: u64 = 64 << 20;

pub(super) async fn tilejson(
    State(state): State<Shared>,
    Path(name): Path<String>,
    RawQuery(query): RawQuery,
    headers: HeaderMap,
) -> Answer {
    let name = request::archive_name(&name)?;
    authorize(&state, &headers, query.as_deref(), name)?;
    let a = archive(&state, name).await?;
    let base = base_url(&state);
    // `?encoding=mlt` on an MVT archive: tile URLs that the server answers in MLT.
    let as_mlt = a.header().tile_type == TileType::Mlt
        || (a.header().tile_type == TileType::Mvt
            && query_encoding(query.as_deref()) == Some("mlt"));
    let ext = match a.header().tile_type {
        _ if as_mlt => "mlt",
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
    let h = a.header();
    let mut tj = serde_json::Map::new();
    tj.insert("tilejson".into(), "3.0.0".into());
    tj.insert(
        "tiles".into(),
        serde_json::json!([format!(
            "{base}/tiles/{encoded}/{{z}}/{{x}}/{{y}}.{ext}{token}"
        )]),
    );
    tj.insert("name".into(), name.into());
    // Not TileJSON's: where the preview (or any MapLibre style) finds the features' icons.
    if a.sprite.is_some() {
        tj.insert(
            "sprite".into(),
            format!("{base}/sprites/{encoded}{token}").into(),
        );
    }
    for key in ["description", "attribution", "version"] {
        if let Some(v) = a.metadata().get(key).filter(|v| v.is_string()) {
            tj.insert(key.into(), v.clone());
        }
    }
    tj.insert("scheme".into(), "xyz".into());
    tj.insert(
        "format".into(),
        if as_mlt {
            "mlt"
        } else {
            request::tile_type_name(h.tile_type)
        }
        .into(),
    );
    if as_mlt {
        // MapLibre GL JS (5.12 and later) reads a vector source's tiles as MLT with this.
        tj.insert("encoding".into(), "mlt".into());
    }
    tj.insert("minzoom".into(), h.min_zoom.into());
    tj.insert("maxzoom".into(), h.max_zoom.into());
    tj.insert("bounds".into(), serde_json::json!(h.bounds));
    tj.insert(
        "center".into(),
        serde_json::json!([h.center_lon, h.center_lat, h.center_zoom]),
    );
    if matches!(h.tile_type, TileType::Mvt | TileType::Mlt) {
        let layers = a
            .metadata()
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

pub(super) async fn tile(
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
    // A replaced S3 archive (or the versioned object of a swapped manifest, collected since)
    // shows up as `Changed` on the first read: resolve the name again once and answer from that.
    let mut retried = false;
    let prefers_mlt =
        request::prefers_mlt(headers.get(header::ACCEPT).and_then(|v| v.to_str().ok()));
    let (a, data, serve) = loop {
        let a = archive(&state, name).await?;
        let serve = t.ext.serve(a.header().tile_type, prefers_mlt)?;
        if t.z < a.header().min_zoom || t.z > a.header().max_zoom {
            return Err(Failure::new(
                StatusCode::NOT_FOUND,
                format!(
                    "zoom {} is outside archive {name:?}'s zooms {}-{}",
                    t.z,
                    a.header().min_zoom,
                    a.header().max_zoom
                ),
            ));
        }
        match state.archives.tile(&a, id).await {
            Ok(data) => break (a, data, serve),
            Err(ServeError::Source(SourceError::Changed(_))) if !retried => {
                retried = true;
                state.archives.forget(name);
            }
            Err(e) => return Err(e.into()),
        }
    };
    let cache_control = state.settings.cache_control.clone();
    // `Accept` decides between MVT and MLT for `.pbf`/`.mvt` tiles of an MVT archive.
    let vary = if t.ext.negotiable() && a.header().tile_type == TileType::Mvt {
        "Accept-Encoding, Accept"
    } else {
        "Accept-Encoding"
    };
    let Some(data) = data else {
        let mut r = Response::new(Body::empty());
        *r.status_mut() = StatusCode::NO_CONTENT;
        r.headers_mut().insert(header::CACHE_CONTROL, cache_control);
        return Ok(with_vary(r, vary));
    };
    let accept = headers
        .get(header::ACCEPT_ENCODING)
        .and_then(|v| v.to_str().ok());
    let (data, tile_type, variant, coding) = match serve {
        Serve::Stored => (data, a.header().tile_type, "", stored_coding(&a)),
        Serve::AsMlt | Serve::AsMvt => {
            let (tile_type, variant) = match serve {
                Serve::AsMlt => (TileType::Mlt, "-mlt"),
                _ => (TileType::Mvt, "-mvt"),
            };
            match transcode::transcode(&state, name, &a, id, data.clone(), serve).await {
                Ok(t) => (t, tile_type, variant, Some("gzip")),
                // Asked for by `Accept` on `.pbf`/`.mvt`: the stored MVT is a fine answer too.
                Err(transcode::TranscodeError::Busy(_) | transcode::TranscodeError::Refused(_))
                    if t.ext.negotiable() && a.header().tile_type == TileType::Mvt =>
                {
                    (data, a.header().tile_type, "", stored_coding(&a))
                }
                Err(transcode::TranscodeError::Busy(f) | transcode::TranscodeError::Refused(f)) => {
                    return Err(f);
                }
            }
        }
    };
    let (body, encoding, etag) = match coding {
        None => {
            let etag = strong_etag(&data, variant);
            (data, None, etag)
        }
        Some(c) if negotiate::accepts(accept, c) => {
            let etag = strong_etag(&data, variant);
            (data, Some(c), etag)
        }
        Some("gzip") => {
            // The client cannot take gzip: the ETag names the decoded representation, which is
            // a different one, so it must not match the gzip ETag.
            let etag = strong_etag(&data, &format!("{variant}-identity"));
            if if_none_match(&headers, &etag) {
                return Ok(with_vary(not_modified(etag, cache_control), vary));
            }
            let plain = inflate_bounded(&state, name, data).await?;
            (plain, None, etag)
        }
        Some(c) => {
            return Err(Failure::new(
                StatusCode::NOT_ACCEPTABLE,
                format!("tiles of {name:?} are {c}-compressed and the client does not accept {c}"),
            ));
        }
    };
    if if_none_match(&headers, &etag) {
        return Ok(with_vary(not_modified(etag, cache_control), vary));
    }
    let mut r = Response::new(Body::from(body));
    let h = r.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static(request::content_type(tile_type)),
    );
    if let Some(c) = encoding {
        h.insert(header::CONTENT_ENCODING, HeaderValue::from_static(c));
    }
    h.insert(header::ETAG, etag);
    h.insert(header::CACHE_CONTROL, cache_control);
    Ok(with_vary(r, vary))
}

fn with_vary(mut r: Response, vary: &'static str) -> Response {
    r.headers_mut()
        .insert(header::VARY, HeaderValue::from_static(vary));
    r
}

/// The content coding of the archive's stored tiles.
fn stored_coding(a: &crate::archives::OpenArchive) -> Option<&'static str> {
    match a.header().tile_compression {
        Compression::Gzip => Some("gzip"),
        Compression::Brotli => Some("br"),
        Compression::Zstd => Some("zstd"),
        _ => None,
    }
}

/// The `encoding` query parameter (`?encoding=mlt`), if any.
fn query_encoding(query: Option<&str>) -> Option<&str> {
    query?
        .split('&')
        .find_map(|kv| kv.strip_prefix("encoding="))
}

/// Why a gzip tile could not be decoded.
#[derive(Debug)]
pub(super) enum Inflate {
    /// It decodes to more than the cap.
    TooLarge,
    /// It is not gzip.
    Bad(std::io::Error),
}

/// Decodes a gzip tile, never holding more than `limit + 1` decoded bytes (the buffer grows by
/// doubling, clamped to that).
pub(super) fn inflate(data: &[u8], limit: u64) -> Result<Vec<u8>, Inflate> {
    let limit = usize::try_from(limit).unwrap_or(usize::MAX - 1);
    let mut decoder = flate2::read::GzDecoder::new(data);
    let mut out: Vec<u8> = Vec::with_capacity(data.len().saturating_mul(4).min(limit + 1));
    let mut buf = vec![0u8; 64 << 10];
    loop {
        let n = match decoder.read(&mut buf) {
            Ok(0) => return Ok(out),
            Ok(n) => n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(Inflate::Bad(e)),
        };
        if out.len() + n > limit {
            return Err(Inflate::TooLarge);
        }
        if out.len() + n > out.capacity() {
            let grown = (out.capacity() * 2).clamp(out.len() + n, limit);
            out.reserve_exact(grown - out.len());
        }
        out.extend_from_slice(&buf[..n]);
    }
}

/// One of the `--inflate-limit` permits for decoding or transcoding a tile of `name`; none
/// free: 503 (`Retry-After` is added to every 503), rather than a queue whose waiting requests
/// would each hold their tile and connection. `doing` and `hint` finish the message.
pub(super) fn take_permit(
    state: &Shared,
    name: &str,
    doing: &str,
    hint: &str,
) -> Result<tokio::sync::OwnedSemaphorePermit, Failure> {
    state.inflate.clone().try_acquire_owned().map_err(|_| {
        tracing::warn!(
            archive = name,
            limit = state.settings.inflate_limit,
            "every decompression permit is taken; answering 503"
        );
        Failure::new(
            StatusCode::SERVICE_UNAVAILABLE,
            format!(
                "too many tiles are being {doing} (limit {}){hint}",
                state.settings.inflate_limit
            ),
        )
    })
}

/// Decodes a gzip tile under a decompression permit, on the blocking pool (a large tile takes
/// a while and must not hold up an async worker). No permit free: 503 with `Retry-After`,
/// rather than a queue whose waiting requests would each hold their tile and connection.
async fn inflate_bounded(state: &Shared, name: &str, data: Bytes) -> Result<Bytes, Failure> {
    let permit = take_permit(
        state,
        name,
        "decompressed for clients that refuse gzip",
        "; retry, or send Accept-Encoding: gzip",
    )?;
    let decoded = tokio::task::spawn_blocking(move || {
        // The permit lives as long as the work, not as long as the request.
        let _held = permit;
        inflate(&data, MAX_DECOMPRESSED_TILE)
    })
    .await;
    match decoded {
        Ok(Ok(plain)) => Ok(Bytes::from(plain)),
        Ok(Err(Inflate::TooLarge)) => Err(Failure::new(
            StatusCode::NOT_ACCEPTABLE,
            format!(
                "a tile of {name:?} decodes to more than {MAX_DECOMPRESSED_TILE} bytes; it is served only gzip-compressed (send Accept-Encoding: gzip)"
            ),
        )),
        Ok(Err(Inflate::Bad(e))) => Err(Failure::from(ServeError::Corrupt {
            name: name.to_string(),
            error: etl_tiles::archive::ArchiveError::Directory(format!("tile: gzip: {e}")),
        })),
        Err(e) => Err(Failure::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            format!("decompressing a tile of {name:?} failed: {e}"),
        )),
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;
    use std::io::Write;

    fn gzip(data: &[u8]) -> Vec<u8> {
        let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
        e.write_all(data).unwrap();
        e.finish().unwrap()
    }

    #[test]
    fn inflate_is_capped() {
        let plain = vec![7u8; 300_000];
        let gz = gzip(&plain);
        assert_eq!(inflate(&gz, 300_000).unwrap(), plain);
        assert!(matches!(inflate(&gz, 299_999), Err(Inflate::TooLarge)));
        assert!(matches!(inflate(b"not gzip", 100), Err(Inflate::Bad(_))));
        assert_eq!(inflate(&gzip(b""), 0).unwrap(), b"");
    }
}
