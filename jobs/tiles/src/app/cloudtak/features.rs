//! The features of MVT tiles as GeoJSON: `P|U/query?query=lng,lat&zoom&limit` (what lies under
//! a point), `P|U/features?bbox=minX,minY,maxX,maxY&zoom` (every feature of the tiles covering a
//! box, at most [`MAX_BBOX_TILES`] tiles) and the features of one tile (`P/{z}/{x}/{y}/features`,
//! `U/tiles/{z}/{x}/{y}/features`), each with `layer`, `type` and `multi` filters.
//!
//! Memory stays bounded: a tile is decoded only when it inflates to at most
//! [`MAX_DECOMPRESSED_TILE`] bytes, under one of the `--inflate-limit` permits (none free: 503),
//! one tile at a time per request, and an answer holds at most [`MAX_FEATURES_BYTES`] of GeoJSON
//! (more: 400, asking for a smaller box).

use std::collections::HashMap;

use axum::extract::{Path, RawQuery, State};
use axum::http::StatusCode;
use axum::http::header::{HeaderMap, HeaderValue};
use bytes::Bytes;
use etl_tiles::archive::{Compression, Header, TileType};
use etl_tiles::mvt::{DecodedLayer, decode_tile};

use super::{
    CtAnswer, CtFailure, Params, authorize, check_zoom, cloudtak, json, open, query_map, read_tile,
};
use crate::app::tiles::{Inflate, MAX_DECOMPRESSED_TILE, inflate, take_permit};
use crate::app::{Shared, cacheable};
use crate::archives::OpenArchive;
use crate::cloudtak::cover::{self, MAX_LAT};
use crate::cloudtak::geojson::{self, FeatureFilter, TileFrame};
use crate::cloudtak::query::{self, MAX_LIMIT};
use crate::request::{self, MAX_ZOOM};

/// Most bytes of tag text one decoded tile may copy (each tag copies its key and value).
const MAX_DECODED_TEXT: u64 = 256 << 20;
/// Most tag pairs one decoded tile may hold.
const MAX_DECODED_TAGS: u64 = 8_000_000;

/// The most tiles one `/features?bbox=` reads.
pub const MAX_BBOX_TILES: u64 = 64;

/// The most bytes of GeoJSON one features answer holds.
pub const MAX_FEATURES_BYTES: usize = 32 << 20;

fn bad(message: impl ToString) -> CtFailure {
    CtFailure::new(StatusCode::BAD_REQUEST, message)
}

/// 400 unless the archive holds MVT tiles.
fn require_mvt(a: &OpenArchive, path: &str) -> Result<(), CtFailure> {
    let t = a.header().tile_type;
    if t == TileType::Mvt {
        return Ok(());
    }
    Err(bad(format!(
        "Tile is not MVT: archive {path} holds {} tiles; /query and /features read MVT (vector) archives only",
        request::tile_type_name(t)
    )))
}

/// `?zoom=` (default: the archive's max zoom), inside the archive's zooms.
fn zoom(q: &HashMap<String, String>, h: &Header) -> Result<u8, CtFailure> {
    let z = match q.get("zoom").map(|z| z.trim()).filter(|z| !z.is_empty()) {
        None => h.max_zoom,
        Some(z) => z
            .parse::<u8>()
            .ok()
            .filter(|z| *z <= MAX_ZOOM)
            .ok_or_else(|| bad(format!("Invalid Integer Zoom: {z:?}")))?,
    };
    if z > h.max_zoom {
        return Err(bad(format!("Above Layer MaxZoom ({})", h.max_zoom)));
    }
    // A header may claim zooms no tile can have (its max zoom is the default).
    if z > MAX_ZOOM {
        return Err(bad(format!(
            "Invalid Integer Zoom: {z} is above {MAX_ZOOM}"
        )));
    }
    if z < h.min_zoom {
        return Err(bad(format!("Below Layer MinZoom ({})", h.min_zoom)));
    }
    Ok(z)
}

/// `?layer=`, `?type=` and `?multi=` (true by default).
fn filter(q: &HashMap<String, String>) -> Result<FeatureFilter, CtFailure> {
    let split_multi = match q.get("multi").map(String::as_str) {
        None | Some("true") | Some("") => false,
        Some("false") => true,
        Some(other) => return Err(bad(format!("Invalid multi {other:?}: true or false"))),
    };
    let some = |k: &str| q.get(k).filter(|v| !v.is_empty()).cloned();
    Ok(FeatureFilter {
        layer: some("layer"),
        geometry_type: some("type"),
        split_multi,
    })
}

/// Comma-separated finite numbers, exactly `N` of them.
fn numbers<const N: usize>(raw: &str) -> Option<[f64; N]> {
    let v: Vec<f64> = raw
        .split(',')
        .map(|c| c.trim().parse::<f64>().ok().filter(|f| f.is_finite()))
        .collect::<Option<_>>()?;
    v.try_into().ok()
}

/// Decodes a stored tile on the blocking pool under a decompression permit, and runs `then` on
/// its layers there.
async fn with_layers<T: Send + 'static>(
    state: &Shared,
    path: &str,
    compression: Compression,
    data: Bytes,
    then: impl FnOnce(Vec<DecodedLayer>) -> Result<T, CtFailure> + Send + 'static,
) -> Result<T, CtFailure> {
    let permit = take_permit(state, path, "decoded for /query and /features", "; retry")?;
    let path = path.to_string();
    let done = tokio::task::spawn_blocking(move || {
        let _held = permit;
        let plain: std::borrow::Cow<'_, [u8]> = match compression {
            Compression::Gzip => match inflate(&data, MAX_DECOMPRESSED_TILE) {
                Ok(p) => p.into(),
                Err(Inflate::TooLarge) => {
                    return Err(bad(format!(
                        "a tile of {path} decodes to more than {MAX_DECOMPRESSED_TILE} bytes; it is not decoded"
                    )));
                }
                Err(Inflate::Bad(e)) => {
                    return Err(CtFailure::new(
                        StatusCode::INTERNAL_SERVER_ERROR,
                        format!("archive {path} is corrupt: a tile is not gzip: {e}"),
                    ));
                }
            },
            Compression::None | Compression::Unknown => (&data[..]).into(),
            other => {
                return Err(bad(format!(
                    "the tiles of {path} are compressed with {other:?}, which /query and /features do not read"
                )));
            }
        };
        // What decoding would cost, before decoding: every tag copies its key and value, so
        // a small tile can ask for terabytes.
        let stats = etl_tiles::mvt::tile_stats(&plain).map_err(|e| {
            CtFailure::new(
                StatusCode::INTERNAL_SERVER_ERROR,
                format!("archive {path} is corrupt: a tile is not valid MVT: {e}"),
            )
        })?;
        let text: u64 = stats.iter().map(|l| l.tag_text_bytes).sum();
        let tags: u64 = stats.iter().map(|l| l.tags).sum();
        if text > MAX_DECODED_TEXT || tags > MAX_DECODED_TAGS {
            return Err(bad(format!(
                "a tile of {path} would decode to {tags} tags and {text} bytes of text, over what /query and /features decode"
            )));
        }
        let layers = decode_tile(&plain).map_err(|e| {
            CtFailure::new(
                StatusCode::INTERNAL_SERVER_ERROR,
                format!("archive {path} is corrupt: a tile is not valid MVT: {e}"),
            )
        })?;
        drop(plain);
        then(layers)
    })
    .await;
    done.unwrap_or_else(|e| {
        Err(CtFailure::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            format!("decoding a tile failed: {e}"),
        ))
    })
}

/// The features of a decoded tile as GeoJSON text joined by `,`, failing past `budget` bytes.
fn encode(
    layers: &[DecodedLayer],
    (z, x, y): (u8, u32, u32),
    filter: &FeatureFilter,
    budget: usize,
) -> Result<String, CtFailure> {
    let mut out = String::new();
    for layer in layers {
        if filter.layer.as_deref().is_some_and(|l| l != layer.name) {
            continue;
        }
        let frame = TileFrame {
            z,
            x,
            y,
            extent: layer.extent,
        };
        for f in &layer.features {
            for feature in geojson::features(&layer.name, f, &frame, filter) {
                if !out.is_empty() {
                    out.push(',');
                }
                out.push_str(&feature.to_string());
                if out.len() > budget {
                    return Err(bad(format!(
                        "the features asked for are more than {MAX_FEATURES_BYTES} bytes of GeoJSON: use a smaller bbox, a lower zoom or ?layer="
                    )));
                }
            }
        }
    }
    Ok(out)
}

/// A FeatureCollection of already-encoded features.
fn collection(headers: &HeaderMap, features: &str) -> CtAnswer {
    let body = format!("{{\"type\":\"FeatureCollection\",\"features\":[{features}]}}");
    Ok(cacheable(
        headers,
        Bytes::from(body),
        "application/json",
        HeaderValue::from_static("private, no-cache"),
    ))
}

pub(super) async fn point_query(
    State(state): State<Shared>,
    Path(params): Path<Params>,
    RawQuery(query): RawQuery,
    headers: HeaderMap,
) -> CtAnswer {
    let ct = cloudtak(&state)?;
    let q = query_map(query.as_deref());
    let archive = authorize(ct, &params, &q)?;
    let [lng, lat] = q
        .get("query")
        .and_then(|raw| numbers::<2>(raw))
        .ok_or_else(|| bad("Invalid LngLat: expected ?query=lng,lat (two numbers)"))?;
    let limit = match q.get("limit").filter(|l| !l.is_empty()) {
        None => 1,
        Some(l) => l
            .parse::<u32>()
            .ok()
            .filter(|l| (1..=MAX_LIMIT).contains(l))
            .ok_or_else(|| bad(format!("Invalid Integer Limit: 1 to {MAX_LIMIT}")))?,
    };
    let path = archive.path();
    let a = open(ct, &archive).await?;
    require_mvt(&a, &path)?;
    let z = zoom(&q, a.header())?;
    let lat = lat.clamp(-MAX_LAT, MAX_LAT);
    let (x, y) = cover::point_tile(lng, lat, z);
    let (a, data) = read_tile(ct, &archive, (z, x, y)).await?;
    let features = match data {
        None => Vec::new(),
        Some(data) => {
            with_layers(
                &state,
                &path,
                a.header().tile_compression,
                data,
                move |layers| Ok(query::query(&layers, (z, x, y), [lng, lat], limit as usize)),
            )
            .await?
        }
    };
    Ok(json(
        &headers,
        serde_json::json!({
            "type": "FeatureCollection",
            "features": features,
            "query": {"lnglat": [lng, lat], "zoom": z, "limit": limit},
            "meta": {"z": z, "x": x, "y": y},
        }),
    ))
}

pub(super) async fn bbox_features(
    State(state): State<Shared>,
    Path(params): Path<Params>,
    RawQuery(query): RawQuery,
    headers: HeaderMap,
) -> CtAnswer {
    let ct = cloudtak(&state)?;
    let q = query_map(query.as_deref());
    let archive = authorize(ct, &params, &q)?;
    let bbox = q
        .get("bbox")
        .and_then(|raw| numbers::<4>(raw))
        .ok_or_else(|| bad("Invalid BBOX: expected ?bbox=minX,minY,maxX,maxY"))?;
    let filter = filter(&q)?;
    let path = archive.path();
    let a = open(ct, &archive).await?;
    require_mvt(&a, &path)?;
    let z = zoom(&q, a.header())?;
    let tiles = cover::bbox_tiles(bbox, z, MAX_BBOX_TILES).map_err(bad)?;
    let mut out = String::new();
    for (x, y) in tiles {
        let (a, data) = read_tile(ct, &archive, (z, x, y)).await?;
        let Some(data) = data else { continue };
        let (filter, budget) = (filter.clone(), MAX_FEATURES_BYTES.saturating_sub(out.len()));
        let chunk = with_layers(&state, &path, a.header().tile_compression, data, move |l| {
            encode(&l, (z, x, y), &filter, budget)
        })
        .await?;
        if !chunk.is_empty() {
            if !out.is_empty() {
                out.push(',');
            }
            out.push_str(&chunk);
        }
    }
    collection(&headers, &out)
}

pub(super) async fn tile_features(
    State(state): State<Shared>,
    Path(params): Path<Params>,
    RawQuery(query): RawQuery,
    headers: HeaderMap,
) -> CtAnswer {
    let ct = cloudtak(&state)?;
    let q = query_map(query.as_deref());
    let archive = authorize(ct, &params, &q)?;
    let (z, x, y) = params.tile();
    let zxy = request::tile_coordinates(z, x, y)?;
    let filter = filter(&q)?;
    let path = archive.path();
    let a = open(ct, &archive).await?;
    require_mvt(&a, &path)?;
    check_zoom(a.header(), zxy.0)?;
    let (a, data) = read_tile(ct, &archive, zxy).await?;
    let features = match data {
        None => String::new(),
        Some(data) => {
            with_layers(&state, &path, a.header().tile_compression, data, move |l| {
                encode(&l, zxy, &filter, MAX_FEATURES_BYTES)
            })
            .await?
        }
    };
    collection(&headers, &features)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;

    #[test]
    fn number_lists() {
        assert_eq!(numbers::<2>("-105.5, 40"), Some([-105.5, 40.0]));
        assert_eq!(numbers::<2>("1,2,3"), None);
        assert_eq!(numbers::<2>("1,x"), None);
        assert_eq!(numbers::<2>("1,NaN"), None);
        assert_eq!(numbers::<4>("1,2,3,4"), Some([1.0, 2.0, 3.0, 4.0]));
        assert_eq!(numbers::<4>(""), None);
    }

    #[test]
    fn filters() {
        let q = |s: &str| query_map(Some(s));
        assert!(!filter(&q("")).unwrap().split_multi);
        assert!(filter(&q("multi=false")).unwrap().split_multi);
        assert!(filter(&q("multi=maybe")).is_err());
        let f = filter(&q("layer=out&type=Point")).unwrap();
        assert_eq!(f.layer.as_deref(), Some("out"));
        assert_eq!(f.geometry_type.as_deref(), Some("Point"));
    }
}
